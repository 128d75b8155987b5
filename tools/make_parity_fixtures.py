#!/usr/bin/env python3
"""Parity fixtures for longroll, produced by the public PyTorch reference implementations.

    python3 tools/make_parity_fixtures.py \
        --reference-self-forcing /path/to/Self-Forcing --reference-longlive /path/to/LongLive \
        --out tests/data/parity

The reference code is imported from the two checkouts given on the command line (nothing of it is
copied here). Tiny configs of the reference CausalWanModel get seeded random weights, and this script
runs the reference model (single forwards) and the reference inference pipelines (whole rollouts) on
CPU in float32. tests/data/parity/README.md documents every file, the exact semantics, and the error
bounds a correct implementation should meet.

What this script changes in the reference at run time (and only in this process):
  * torch.cuda.current_device() returns 0 while the reference modules are imported: some of them call
    it at import time (to build a torch.device), which fails on a machine without a GPU.
  * The packages `wan` and `wan.modules` are created empty instead of running their __init__.py,
    which would import the whole Wan toolkit (CLIP, image2video, ...); the submodules themselves are
    the reference files, imported normally.
  * The attention functions (wan.modules.attention.attention / flash_attention, which need
    flash-attn on CUDA) are replaced with plain softmax(Q K^T / sqrt(d)) V over all keys, in the input
    dtype: the semantics of flash_attn_varlen_func with full lengths, no mask, no dropout.
  * The pipelines hard-code the 1.3B model (30 blocks, 12 heads x 128, 1560 tokens per latent frame)
    in their KV-cache allocation. The caches are allocated here with the same sizing rule and the tiny
    model's shapes: kv_cache_size = local_attn_size * frame_seq_len, or (local_attn_size = -1)
    21 * frame_seq_len for Self-Forcing (its 32760 = 21 * 1560) and T * frame_seq_len for LongLive.
    Self-Forcing's max_attention_size (local_attn_size * 1560) is set to local_attn_size *
    frame_seq_len the way LongLive's pipeline does it (it covers the whole cache in both cases).
  * torch.randn_like, the pipelines' source of fresh noise between denoising steps, returns the
    fixture's `step_noise` slices instead, so that another implementation can replay the run.
"""

import argparse
import contextlib
import hashlib
import io
import json
import math
import os
import sys
import types

try:
    import torch
except ImportError:  # pragma: no cover
    sys.stderr.write("make_parity_fixtures.py needs torch (and safetensors, diffusers, transformers, ftfy, "
                     "regex, einops, omegaconf for the reference code)\n")
    sys.exit(2)
from safetensors.torch import save_file

SEED = 20260401
FRAMES_PER_CHUNK = 3
DENOISING_STEPS = [1000, 750, 500, 250]
TIMESTEP_SHIFT = 5.0
CONTEXT_NOISE = 0

TINY = dict(dim=32, ffn_dim=64, num_heads=2, num_layers=2, in_dim=16, out_dim=16, text_dim=32, text_len=8,
            freq_dim=256, eps=1e-6, patch_size=[1, 2, 2], model_type="t2v", qk_norm=True, cross_attn_norm=True)
# head_dim 128 (the real models' head size: RoPE split 22 + 21 + 21 pairs), kept small on disk.
HD128 = dict(dim=128, ffn_dim=32, num_heads=1, num_layers=1, in_dim=16, out_dim=16, text_dim=32, text_len=8,
             freq_dim=256, eps=1e-6, patch_size=[1, 2, 2], model_type="t2v", qk_norm=True, cross_attn_norm=True)
LATENT_H, LATENT_W = 4, 6          # -> 2 x 3 patches = 6 tokens per latent frame
FRAME_SEQ_LEN = (LATENT_H // 2) * (LATENT_W // 2)

REFERENCE_FILES = {
    "self_forcing": ["wan/modules/causal_model.py", "wan/modules/model.py", "utils/wan_wrapper.py",
                     "utils/scheduler.py", "pipeline/causal_inference.py"],
    "longlive": ["wan/modules/causal_model.py", "wan/modules/causal_model_infinity.py", "wan/modules/model.py",
                 "utils/wan_wrapper.py", "utils/scheduler.py", "pipeline/causal_inference.py",
                 "pipeline/interactive_causal_inference.py"],
}
_REF_TOPLEVEL = ("wan", "utils", "pipeline", "demo_utils")


# ----------------------------------------------------------------------------------------------
# Loading the reference code
# ----------------------------------------------------------------------------------------------

def sdpa_attention(q, k, v, q_lens=None, k_lens=None, dropout_p=0.0, softmax_scale=None, q_scale=None,
                   causal=False, window_size=(-1, -1), deterministic=False, dtype=None, version=None,
                   fa_version=None):
    """Stand-in for the reference's flash attention: q [B, Lq, N, D], k/v [B, Lk, N, D]; every query
    attends every key (no mask), scale 1/sqrt(D) unless given; computed in the input dtype."""
    if q_lens is not None or k_lens is not None or causal or tuple(window_size) != (-1, -1) \
            or dropout_p != 0.0 or q_scale is not None:
        raise NotImplementedError("attention stand-in: unexpected arguments")
    scale = softmax_scale if softmax_scale is not None else 1.0 / math.sqrt(q.shape[-1])
    qh, kh, vh = (t.transpose(1, 2) for t in (q, k.to(q.dtype), v.to(q.dtype)))
    p = torch.softmax(torch.matmul(qh, kh.transpose(-1, -2)) * scale, dim=-1)
    return torch.matmul(p, vh).transpose(1, 2).contiguous().type(q.dtype)


def load_reference(root, modules):
    """Imports `modules` from the checkout at `root`; returns a namespace name -> module."""
    root = os.path.abspath(root)
    for name in list(sys.modules):
        if name.split(".")[0] in _REF_TOPLEVEL:
            del sys.modules[name]
    for pkg in ("wan", "wan.modules"):
        m = types.ModuleType(pkg)
        m.__path__ = [os.path.join(root, *pkg.split("."))]
        sys.modules[pkg] = m
    sys.path.insert(0, root)
    saved_current_device = torch.cuda.current_device
    torch.cuda.current_device = lambda: 0
    ns = types.SimpleNamespace()
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            for short, full in modules.items():
                setattr(ns, short, __import__(full, fromlist=["_"]))
    finally:
        torch.cuda.current_device = saved_current_device
        sys.path.remove(root)
    # attention stand-ins (see module docstring)
    for mod in vars(ns).values():
        if hasattr(mod, "attention"):
            mod.attention = sdpa_attention
        if hasattr(mod, "flash_attention"):
            mod.flash_attention = sdpa_attention
    sys.modules["wan.modules.model"].flash_attention = sdpa_attention
    sys.modules["wan.modules.causal_model"].attention = sdpa_attention
    if "wan.modules.causal_model_infinity" in sys.modules:
        sys.modules["wan.modules.causal_model_infinity"].attention = sdpa_attention
    return ns


def file_digests(root, files):
    out = {}
    for f in files:
        with open(os.path.join(root, f), "rb") as fh:
            out[f] = hashlib.sha256(fh.read()).hexdigest()[:16]
    return out


# ----------------------------------------------------------------------------------------------
# Models, weights, caches
# ----------------------------------------------------------------------------------------------

def make_model(model_cls, cfg, local_attn_size, sink_size, state_dict, dtype):
    torch.manual_seed(0)  # the constructor draws its own init; it is overwritten below
    m = model_cls(model_type=cfg["model_type"], patch_size=tuple(cfg["patch_size"]), text_len=cfg["text_len"],
                  in_dim=cfg["in_dim"], dim=cfg["dim"], ffn_dim=cfg["ffn_dim"], freq_dim=cfg["freq_dim"],
                  text_dim=cfg["text_dim"], out_dim=cfg["out_dim"], num_heads=cfg["num_heads"],
                  num_layers=cfg["num_layers"], local_attn_size=local_attn_size, sink_size=sink_size,
                  qk_norm=cfg["qk_norm"], cross_attn_norm=cfg["cross_attn_norm"], eps=cfg["eps"])
    if state_dict is not None:
        stripped = {k[len("model."):]: v for k, v in state_dict.items()}
        m.load_state_dict(stripped, strict=True)
    return m.to(dtype).eval().requires_grad_(False)


def random_weights(model, seed):
    """Non-trivial seeded weights ("model." keys): nothing zero, norm gains ~1 +- 0.1."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, p in sorted(model.state_dict().items()):
        shape = tuple(p.shape)
        r = torch.randn(shape, generator=g, dtype=torch.float64)
        if name.endswith(("norm_q.weight", "norm_k.weight", "norm3.weight")):
            t = 1.0 + 0.1 * r
        elif name.endswith("modulation"):
            t = 0.1 * r
        elif name.endswith(".bias"):
            t = 0.05 * r
        else:  # Linear [out, in] and Conv3d [out, in, kt, kh, kw]
            fan_in = math.prod(shape[1:])
            t = min(0.2, max(0.05, 1.0 / math.sqrt(fan_in))) * r
        out["model." + name] = t.to(torch.float32).contiguous()
    return out


class DummyTextEncoder(torch.nn.Module):
    """Stands in for UMT5: returns the fixture's context for a prompt name."""

    def __init__(self, contexts):
        super().__init__()
        self.contexts = contexts

    def forward(self, text_prompts):
        assert len(text_prompts) == 1
        return {"prompt_embeds": self.contexts[text_prompts[0]][None]}


class DummyVAE(torch.nn.Module):
    def decode_to_pixel(self, latent, use_cache=False):
        return latent

    def decode_to_pixel_chunk(self, latent, use_cache=False, chunk_size=120):
        return latent


def alloc_kv_cache(cfg, size, dtype):
    n, d = cfg["num_heads"], cfg["dim"] // cfg["num_heads"]
    return [{"k": torch.zeros([1, size, n, d], dtype=dtype), "v": torch.zeros([1, size, n, d], dtype=dtype),
             "global_end_index": torch.tensor([0], dtype=torch.long),
             "local_end_index": torch.tensor([0], dtype=torch.long)} for _ in range(cfg["num_layers"])]


def alloc_crossattn_cache(cfg, dtype):
    n, d = cfg["num_heads"], cfg["dim"] // cfg["num_heads"]
    return [{"k": torch.zeros([1, cfg["text_len"], n, d], dtype=dtype),
             "v": torch.zeros([1, cfg["text_len"], n, d], dtype=dtype), "is_init": False}
            for _ in range(cfg["num_layers"])]


def set_max_attention_size(model, size):
    for mod in model.modules():
        if hasattr(mod, "max_attention_size"):
            mod.max_attention_size = size


def make_wrapper(ref, model, local_attn_size, sink_size, infinite):
    """The reference WanDiffusionWrapper around `model` (its from_pretrained is bypassed)."""
    ww = ref.wan_wrapper
    cls = ww.CausalWanModelInfinity if infinite else ww.CausalWanModel

    def fake_from_pretrained(_cls, _path, **kw):
        assert kw.get("local_attn_size") == local_attn_size and kw.get("sink_size") == sink_size, kw
        return model

    cls.from_pretrained = classmethod(fake_from_pretrained)
    try:
        kw = dict(model_name="tiny", timestep_shift=TIMESTEP_SHIFT, is_causal=True,
                  local_attn_size=local_attn_size, sink_size=sink_size)
        if infinite:
            kw["use_infinite_attention"] = True
        wrapper = ww.WanDiffusionWrapper(**kw)
    finally:
        del cls.from_pretrained
    assert wrapper.model is model
    return wrapper


class CallRecorder:
    """Wraps the generator's forward to keep a trace of every model call of a rollout."""

    def __init__(self, wrapper, contexts):
        self.calls = []
        self.names = {v.data_ptr(): k for k, v in contexts.items()}
        inner = wrapper.forward

        def forward(*args, **kw):
            flow, x0 = inner(*args, **kw)
            x = kw["noisy_image_or_video"]
            fs = FRAME_SEQ_LEN
            self.calls.append({
                "start_frame": kw["current_start"] // fs, "num_frames": x.shape[1],
                "t": float(kw["timestep"].flatten()[0]),
                "prompt": self.names.get(kw["conditional_dict"]["prompt_embeds"].data_ptr(), "?"),
                "x": x[0].detach().clone(), "flow": flow[0].detach().clone(), "x0": x0[0].detach().clone()})
            return flow, x0

        wrapper.forward = forward


@contextlib.contextmanager
def replay_step_noise(step_noise):
    """torch.randn_like -> the next slice of step_noise [S-1, T, C, H, W] (the pipelines call it once
    per (chunk, step < S-1), in order, with a [frames_per_chunk, C, H, W] tensor)."""
    state = {"calls": 0}
    n_steps = step_noise.shape[0]
    saved = torch.randn_like

    def randn_like(like, *args, **kwargs):
        chunk, s = divmod(state["calls"], n_steps)
        f0 = chunk * FRAMES_PER_CHUNK
        out = step_noise[s, f0:f0 + FRAMES_PER_CHUNK]
        if tuple(out.shape) != tuple(like.shape):
            raise RuntimeError(f"randn_like call {state['calls']}: shape {tuple(like.shape)} != {tuple(out.shape)}")
        state["calls"] += 1
        return out.clone().to(like.dtype)

    torch.randn_like = randn_like
    try:
        yield state
    finally:
        torch.randn_like = saved


# ----------------------------------------------------------------------------------------------
# Rollouts through the reference pipelines
# ----------------------------------------------------------------------------------------------

def omegaconf_args(local_attn_size, sink_size, infinite, global_sink=True):
    from omegaconf import OmegaConf
    return OmegaConf.create({
        "denoising_step_list": DENOISING_STEPS, "warp_denoising_step": True,
        "num_frame_per_block": FRAMES_PER_CHUNK, "independent_first_frame": False,
        "context_noise": CONTEXT_NOISE, "global_sink": global_sink,
        "model_kwargs": {"local_attn_size": local_attn_size, "sink_size": sink_size,
                         "timestep_shift": TIMESTEP_SHIFT, "use_infinite_attention": infinite}})


def run_rollout(ref, which, pipe_kind, model_cls, weights, case, dtype):
    """Runs one reference pipeline; returns (latents [T,C,H,W], recorder, pipeline, kv_cache_size)."""
    cfg = TINY
    L, sink, infinite = case["local_attn_size"], case["sink_size"], case["rope_mode"] == "window_relative"
    model = make_model(model_cls, cfg, L, sink, weights, dtype)
    wrapper = make_wrapper(ref, model, L, sink, infinite)
    contexts = {k: v.to(dtype) for k, v in case["contexts"].items()}
    rec = CallRecorder(wrapper, contexts)
    args = omegaconf_args(L, sink, infinite, case.get("global_sink", True))
    pipe_cls = ref.ici.InteractiveCausalInferencePipeline if pipe_kind == "ll_interactive" \
        else ref.ci.CausalInferencePipeline
    kw = dict(generator=wrapper, text_encoder=DummyTextEncoder(contexts), vae=DummyVAE())
    with contextlib.redirect_stdout(io.StringIO()):
        pipe = pipe_cls(args, "cpu", **kw)
    # the 1.3B numbers the pipelines hard-code (see module docstring)
    pipe.num_transformer_blocks = cfg["num_layers"]
    pipe.frame_seq_length = FRAME_SEQ_LEN
    sizes = {}

    def init_kv(self_, batch_size, dtype, device, kv_cache_size_override=None):
        if kv_cache_size_override is not None:
            size = kv_cache_size_override
        elif self_.local_attn_size != -1:
            size = self_.local_attn_size * self_.frame_seq_length
        else:
            size = 21 * self_.frame_seq_length  # Self-Forcing's 32760 = 21 frames of 1560 tokens
        sizes["kv_cache_size"] = size
        self_.kv_cache1 = alloc_kv_cache(cfg, size, dtype)

    def init_xattn(self_, batch_size, dtype, device):
        self_.crossattn_cache = alloc_crossattn_cache(cfg, dtype)

    if case.get("no_recache"):  # a deliberately wrong variant, for the report only
        def only_reset_crossattn(self_, output, current_start_frame, new_conditional_dict):
            for blk in self_.crossattn_cache:
                blk["is_init"] = False
        pipe._recache_after_switch = types.MethodType(only_reset_crossattn, pipe)
    pipe._initialize_kv_cache = types.MethodType(init_kv, pipe)
    pipe._initialize_crossattn_cache = types.MethodType(init_xattn, pipe)
    if which == "self_forcing":
        set_max_attention_size(model, (L if L != -1 else 21) * FRAME_SEQ_LEN)

    noise = case["noise"].to(dtype)[None]
    step_noise = case["step_noise"].to(dtype)
    torch.manual_seed(0)
    with torch.no_grad(), replay_step_noise(step_noise) as st, contextlib.redirect_stdout(io.StringIO()):
        if pipe_kind == "ll_interactive":
            names = ["context"] + [n for _, n in case["prompt_switches"]]
            _, latents = pipe.inference(noise, text_prompts_list=[[n] for n in names],
                                        switch_frame_indices=[f for f, _ in case["prompt_switches"]],
                                        return_latents=True)
        else:
            _, latents = pipe.inference(noise, text_prompts=["context"], return_latents=True)
    n_chunks = noise.shape[1] // FRAMES_PER_CHUNK
    assert st["calls"] == n_chunks * (len(DENOISING_STEPS) - 1), st
    return latents[0], rec, pipe, sizes["kv_cache_size"]


# ----------------------------------------------------------------------------------------------
# Single forwards through the reference model
# ----------------------------------------------------------------------------------------------

def run_forward(ref, model_cls, cfg, weights, fc, dtype, hooks=None):
    """One forward of the reference wrapper on a cache set up as `fc` describes."""
    L, sink, infinite = fc["local_attn_size"], fc["sink_size"], fc["rope_mode"] == "window_relative"
    model = make_model(model_cls, cfg, L, sink, weights, dtype)
    wrapper = make_wrapper(ref, model, L, sink, infinite)
    fs = (LATENT_H // cfg["patch_size"][1]) * (LATENT_W // cfg["patch_size"][2])
    cache_frames = fc["cache_frames"]
    set_max_attention_size(model, cache_frames * fs)
    kv = alloc_kv_cache(cfg, cache_frames * fs, dtype)
    xa = alloc_crossattn_cache(cfg, dtype)
    cond = {"prompt_embeds": fc["context"].to(dtype)[None]}
    prefill_out = []
    with torch.no_grad():
        for call in fc.get("prefill_calls", []):
            f0, f1 = call["frames"]
            x = fc["prefill_x"][f0:f1].to(dtype)[None]
            t = torch.full([1, f1 - f0], call["t"], dtype=torch.float32)
            flow, _ = wrapper(noisy_image_or_video=x, conditional_dict=cond, timestep=t, kv_cache=kv,
                              crossattn_cache=xa, current_start=f0 * fs)
            prefill_out.append(flow[0])
        if fc.get("empty_cache_at_frame") is not None:
            # no keys cached, but the cache's clock is at this frame (see README: forward_hd128_f1021)
            for c in kv:
                c["global_end_index"].fill_(fc["empty_cache_at_frame"] * fs)
        handles = []
        if hooks is not None:
            handles = hooks(model)
        flow, x0 = wrapper(noisy_image_or_video=fc["x"].to(dtype)[None], conditional_dict=cond,
                           timestep=fc["t"][None].to(torch.float32), kv_cache=kv, crossattn_cache=xa,
                           current_start=fc["start_frame"] * fs)
        for h in handles:
            h.remove()
    return flow[0], (torch.cat(prefill_out) if prefill_out else None)


# ----------------------------------------------------------------------------------------------
# Fixture contents
# ----------------------------------------------------------------------------------------------

def rel_err(a, b):
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm()), float((a - b).abs().max())


def canonicalize_header(path):
    """Rewrites a safetensors header with sorted keys (the writer's key order is not stable from run to
    run); offsets and data are unchanged, so the file stays valid and becomes byte-reproducible."""
    with open(path, "rb") as fh:
        blob = fh.read()
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8:8 + n])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as fh:
        fh.write(len(text).to_bytes(8, "little") + text + blob[8 + n:])


def save(path, tensors, metadata):
    tensors = {k: v.detach().contiguous().clone() for k, v in tensors.items()}
    meta = {k: (v if isinstance(v, str) else json.dumps(v, sort_keys=True)) for k, v in metadata.items()}
    save_file(tensors, path + ".tmp", metadata=meta)
    canonicalize_header(path + ".tmp")
    os.chmod(path + ".tmp", 0o644)
    os.replace(path + ".tmp", path)


def make_case_inputs(seed, T, prompts):
    g = torch.Generator().manual_seed(seed)
    S = len(DENOISING_STEPS)
    noise = torch.randn([T, 16, LATENT_H, LATENT_W], generator=g)
    step_noise = torch.randn([S - 1, T, 16, LATENT_H, LATENT_W], generator=g)
    contexts = {}
    for name, length in prompts:
        contexts[name] = torch.randn([length, TINY["text_dim"]], generator=g)
    return noise, step_noise, contexts


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reference-self-forcing", required=True, help="Self-Forcing checkout (work tree)")
    ap.add_argument("--reference-longlive", required=True,
                    help="LongLive v1 checkout (work tree; before 'LongLive 2.0')")
    ap.add_argument("--self-forcing-commit", default="unknown", help="recorded in the metadata")
    ap.add_argument("--longlive-commit", default="unknown", help="recorded in the metadata")
    ap.add_argument("--out", required=True)
    ap.add_argument("--no-f64-check", action="store_true",
                    help="skip the float64 reruns that measure the float32 fixtures' own error")
    a = ap.parse_args()

    try:  # diffusers warns on every ModelMixin.to(dtype)
        from diffusers.utils import logging as diffusers_logging
        diffusers_logging.set_verbosity_error()
    except ImportError:
        pass
    torch.set_default_dtype(torch.float32)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    os.makedirs(a.out, exist_ok=True)
    out = lambda name: os.path.join(a.out, name)  # noqa: E731
    report = {}

    provenance = {
        "generator": "tools/make_parity_fixtures.py", "torch": torch.__version__,
        "self_forcing": {"commit": a.self_forcing_commit,
                         "sha256_16": file_digests(a.reference_self_forcing, REFERENCE_FILES["self_forcing"])},
        "longlive": {"commit": a.longlive_commit,
                     "sha256_16": file_digests(a.reference_longlive, REFERENCE_FILES["longlive"])},
    }

    sf = load_reference(a.reference_self_forcing, {
        "cm": "wan.modules.causal_model", "model": "wan.modules.model", "wan_wrapper": "utils.wan_wrapper",
        "ci": "pipeline.causal_inference"})
    sf_cls = sf.cm.CausalWanModel

    # ---------------- weights ----------------
    tiny_w = random_weights(make_model(sf_cls, TINY, -1, 0, None, torch.float32), SEED)
    hd_w = random_weights(make_model(sf_cls, HD128, -1, 0, None, torch.float32), SEED + 1)
    for name, w, cfg in (("tiny", tiny_w, TINY), ("hd128", hd_w, HD128)):
        cfg_json = {k: cfg[k] for k in ("dim", "ffn_dim", "num_heads", "num_layers", "in_dim", "out_dim",
                                        "text_dim", "text_len", "freq_dim", "eps", "patch_size", "model_type",
                                        "qk_norm", "cross_attn_norm")}
        save(out(f"weights_{name}.safetensors"), w, {"config": cfg_json, "provenance": provenance})

    # ---------------- scheduler ----------------
    probe = make_wrapper(sf, make_model(sf_cls, TINY, -1, 0, tiny_w, torch.float32), -1, 0, False)
    sched = probe.scheduler
    timesteps_ext = torch.cat((sched.timesteps.cpu(), torch.tensor([0], dtype=torch.float32)))
    denoising_t = timesteps_ext[1000 - torch.tensor(DENOISING_STEPS, dtype=torch.long)]
    step_ids = torch.argmin((sched.timesteps[None].double() - denoising_t[:, None].double()).abs(), dim=1)
    sigmas_at = sched.sigmas[step_ids]
    lin64 = torch.linspace(1.0, 0.0, 1001, dtype=torch.float64)[:-1]
    sig64 = TIMESTEP_SHIFT * lin64 / (1 + (TIMESTEP_SHIFT - 1) * lin64)
    save(out("scheduler.safetensors"), {
        "denoising_timesteps": denoising_t, "sigmas_at_steps": sigmas_at,
        "timesteps": sched.timesteps, "sigmas": sched.sigmas,
        "sigmas_f64": sig64, "timesteps_f64": sig64 * 1000.0,
    }, {"scheduler": {"num_train_timesteps": 1000, "shift": TIMESTEP_SHIFT, "sigma_min": 0.0, "sigma_max": 1.0,
                      "extra_one_step": True, "denoising_steps": DENOISING_STEPS, "warp_denoising_step": True,
                      "step_ids": step_ids.tolist()},
        "provenance": provenance})
    report["denoising_timesteps"] = denoising_t.tolist()
    report["sigmas_at_steps"] = sigmas_at.tolist()

    # ---------------- single forwards ----------------
    g = torch.Generator().manual_seed(SEED + 2)
    rnd = lambda *s: torch.randn(list(s), generator=g)  # noqa: E731
    C, H, W = 16, LATENT_H, LATENT_W
    ctx_f = rnd(5, TINY["text_dim"])
    forward_cases = {
        "tiny_empty": dict(weights="tiny", rope_mode="absolute", local_attn_size=-1, sink_size=0, cache_frames=21,
                           context=ctx_f, x=rnd(3, C, H, W), t=torch.tensor([937.5, 500.0, 3.0]), start_frame=0),
        "tiny_prefill": dict(weights="tiny", rope_mode="absolute", local_attn_size=-1, sink_size=0,
                             cache_frames=21, context=ctx_f, prefill_x=rnd(3, C, H, W),
                             prefill_calls=[{"frames": [0, 3], "t": 0.0}],
                             x=rnd(3, C, H, W), t=torch.tensor([833.3333, 833.3333, 833.3333]), start_frame=3),
    }
    px = rnd(12, C, H, W)
    xe = rnd(3, C, H, W)
    for mode in ("absolute", "window_relative"):
        forward_cases["tiny_evict_" + ("absolute" if mode == "absolute" else "relative")] = dict(
            weights="tiny", rope_mode=mode, local_attn_size=9, sink_size=3, cache_frames=9, context=ctx_f,
            prefill_x=px, prefill_calls=[{"frames": [f, f + 3], "t": 0.0} for f in (0, 3, 6, 9)],
            x=xe, t=torch.tensor([625.0, 625.0, 625.0]), start_frame=12)
    ctx_h = torch.randn([6, HD128["text_dim"]], generator=g)
    xh = torch.randn([3, C, H, W], generator=g)
    forward_cases["hd128_f0"] = dict(weights="hd128", rope_mode="absolute", local_attn_size=-1, sink_size=0,
                                     cache_frames=3, context=ctx_h, x=xh, t=torch.tensor([1000.0, 250.0, 0.0]),
                                     start_frame=0)
    forward_cases["hd128_f1021"] = dict(weights="hd128", rope_mode="absolute", local_attn_size=-1, sink_size=0,
                                        cache_frames=3, context=ctx_h, x=xh, t=torch.tensor([1000.0, 250.0, 0.0]),
                                        start_frame=1021, empty_cache_at_frame=1021)

    ll = None
    forward_results = {}
    for name, fc in forward_cases.items():
        cfg, w = (TINY, tiny_w) if fc["weights"] == "tiny" else (HD128, hd_w)
        if fc["rope_mode"] == "window_relative":
            if ll is None:
                ll = load_reference(a.reference_longlive, {
                    "cm": "wan.modules.causal_model", "cmi": "wan.modules.causal_model_infinity",
                    "model": "wan.modules.model", "wan_wrapper": "utils.wan_wrapper",
                    "ci": "pipeline.causal_inference", "ici": "pipeline.interactive_causal_inference"})
            ref, cls, refname = ll, ll.cmi.CausalWanModel, "longlive:wan/modules/causal_model_infinity.py"
        else:
            ref, cls, refname = sf, sf_cls, "self_forcing:wan/modules/causal_model.py"
        fwd, prefill_out = run_forward(ref, cls, cfg, w, fc, torch.float32)
        forward_results[name] = (fc, cfg, w, ref, cls, fwd)
        tensors = {"context": fc["context"], "x": fc["x"], "t": fc["t"].to(torch.float32), "out": fwd}
        meta = {"weights": f"weights_{fc['weights']}.safetensors", "start_frame": fc["start_frame"],
                "rope_mode": fc["rope_mode"], "local_attn_size": fc["local_attn_size"],
                "sink_size": fc["sink_size"], "kv_cache_frames": fc["cache_frames"], "reference_model": refname,
                "cache_prefill": None}
        if "prefill_x" in fc:
            tensors["prefill_x"] = fc["prefill_x"]
            tensors["prefill_out"] = prefill_out
            meta["cache_prefill"] = {"calls": fc["prefill_calls"],
                                     "note": "each call: one forward of prefill_x[f0:f1] (absolute latent frames "
                                             "f0..f1-1) at timestep t, same context, in this order"}
        if fc.get("empty_cache_at_frame") is not None:
            meta["cache_prefill"] = {"calls": [], "empty_cache_at_frame": fc["empty_cache_at_frame"],
                                     "note": "no keys cached; the frames get absolute RoPE positions "
                                             "start_frame..start_frame+F-1 and attend only each other"}
        save(out(f"forward_{name}.safetensors"), tensors, {"case": meta, "provenance": provenance})
    # Self-Forcing's model must be loaded again after LongLive's (module purge); do the f64 checks later.

    # ---------------- rollouts ----------------
    rollout_cases = {
        "sf": dict(reference="self_forcing", pipeline="pipeline/causal_inference.py:CausalInferencePipeline",
                   model="wan/modules/causal_model.py", T=9, local_attn_size=-1, sink_size=0,
                   rope_mode="absolute", prompt_switches=[], seed=SEED + 10),
        "window_absolute": dict(reference="self_forcing",
                                pipeline="pipeline/causal_inference.py:CausalInferencePipeline",
                                model="wan/modules/causal_model.py", T=18, local_attn_size=9, sink_size=3,
                                rope_mode="absolute", prompt_switches=[], seed=SEED + 11),
        "window_relative": dict(reference="longlive", pipeline="pipeline/causal_inference.py:CausalInferencePipeline",
                                model="wan/modules/causal_model_infinity.py", T=18, local_attn_size=9, sink_size=3,
                                rope_mode="window_relative", prompt_switches=[], seed=SEED + 11),
        "switch_relative": dict(reference="longlive",
                                pipeline="pipeline/interactive_causal_inference.py:InteractiveCausalInferencePipeline",
                                model="wan/modules/causal_model_infinity.py", T=21, local_attn_size=9, sink_size=3,
                                rope_mode="window_relative", prompt_switches=[[6, "context_1"], [15, "context_2"]],
                                seed=SEED + 12),
        "switch_absolute": dict(reference="longlive",
                                pipeline="pipeline/interactive_causal_inference.py:InteractiveCausalInferencePipeline",
                                model="wan/modules/causal_model.py", T=21, local_attn_size=9, sink_size=3,
                                rope_mode="absolute", prompt_switches=[[6, "context_1"], [15, "context_2"]],
                                seed=SEED + 12),
    }
    for name, case in rollout_cases.items():
        prompts = [("context", 5)] + [(n, 3 + i * 2) for i, (_, n) in enumerate(case["prompt_switches"])]
        case["noise"], case["step_noise"], case["contexts"] = make_case_inputs(case["seed"], case["T"], prompts)

    results = {}
    debug_calls = None
    for which in ("self_forcing", "longlive"):
        if which == "self_forcing":
            ref = load_reference(a.reference_self_forcing, {
                "cm": "wan.modules.causal_model", "model": "wan.modules.model",
                "wan_wrapper": "utils.wan_wrapper", "ci": "pipeline.causal_inference"})
        else:
            ref = load_reference(a.reference_longlive, {
                "cm": "wan.modules.causal_model", "cmi": "wan.modules.causal_model_infinity",
                "model": "wan.modules.model", "wan_wrapper": "utils.wan_wrapper",
                "ci": "pipeline.causal_inference", "ici": "pipeline.interactive_causal_inference"})
        for name, case in rollout_cases.items():
            if case["reference"] != which:
                continue
            cls = ref.cmi.CausalWanModel if case["model"].endswith("infinity.py") else ref.cm.CausalWanModel
            kind = "sf" if which == "self_forcing" else ("ll_interactive" if case["prompt_switches"] else "ll")
            latents, rec, pipe, kv_size = run_rollout(ref, which, kind, cls, tiny_w, case, torch.float32)
            results[name] = latents
            trace = [[c["start_frame"], c["num_frames"], c["t"], c["prompt"]] for c in rec.calls]
            tensors = {"context": case["contexts"]["context"], "noise": case["noise"],
                       "step_noise": case["step_noise"], "latents": latents}
            for i, (_, n) in enumerate(case["prompt_switches"]):
                tensors[n] = case["contexts"][n]
            meta = {"weights": "weights_tiny.safetensors", "frames_per_chunk": FRAMES_PER_CHUNK,
                    "denoising_steps": DENOISING_STEPS, "warp_denoising_step": True,
                    "timestep_shift": TIMESTEP_SHIFT, "context_noise": CONTEXT_NOISE,
                    "local_attn_size": case["local_attn_size"], "sink_size": case["sink_size"],
                    "rope_mode": case["rope_mode"], "prompt_switches": case["prompt_switches"],
                    "global_sink": True, "num_latent_frames": case["T"], "kv_cache_tokens": kv_size,
                    "frame_seq_len": FRAME_SEQ_LEN,
                    "reference": {"repo": which, "pipeline": case["pipeline"], "model": case["model"]},
                    "calls": trace,
                    "calls_format": "[start_frame, num_frames, t, prompt] of every model forward, in order"}
            save(out(f"rollout_{name}.safetensors"), tensors, {"rollout": meta, "provenance": provenance})
            if name == "sf":
                debug_calls = rec.calls
        if which == "longlive":
            # LongLive's own absolute-RoPE (non-infinity) model through its CausalInferencePipeline,
            # on case (b): must equal Self-Forcing's result.
            lat, _, _, _ = run_rollout(ref, "longlive", "ll", ref.cm.CausalWanModel, tiny_w,
                                       rollout_cases["window_absolute"], torch.float32)
            report["window_absolute: LongLive causal_model.py vs Self-Forcing (rel, maxabs)"] = \
                rel_err(lat, results["window_absolute"])
            for label, change in (("no KV recache on a switch", dict(no_recache=True)),
                                  ("sink recomputed too (global_sink false)", dict(global_sink=False))):
                lat, _, _, _ = run_rollout(ref, which, "ll_interactive", ref.cmi.CausalWanModel, tiny_w,
                                           dict(rollout_cases["switch_relative"], **change), torch.float32)
                report[f"wrong variant vs rollout_switch_relative: {label} (rel, maxabs)"] = \
                    rel_err(lat, results["switch_relative"])
            if not a.no_f64_check:
                for name, case in rollout_cases.items():
                    if case["reference"] != "longlive":
                        continue
                    cls = ref.cmi.CausalWanModel if case["model"].endswith("infinity.py") else ref.cm.CausalWanModel
                    kind = "ll_interactive" if case["prompt_switches"] else "ll"
                    lat64, _, _, _ = run_rollout(ref, which, kind, cls, tiny_w, case, torch.float64)
                    report[f"rollout_{name}: f32 fixture vs f64 rerun (rel, maxabs)"] = rel_err(results[name], lat64)
                fc, cfg, w, _, _, fwd = forward_results["tiny_evict_relative"]
                f64, _ = run_forward(ref, ref.cmi.CausalWanModel, cfg, w, fc, torch.float64)
                report["forward_tiny_evict_relative: f32 vs f64 (rel, maxabs)"] = rel_err(fwd, f64)
        else:
            if not a.no_f64_check:
                for name, case in rollout_cases.items():
                    if case["reference"] != "self_forcing":
                        continue
                    lat64, _, _, _ = run_rollout(ref, which, "sf", ref.cm.CausalWanModel, tiny_w, case,
                                                 torch.float64)
                    report[f"rollout_{name}: f32 fixture vs f64 rerun (rel, maxabs)"] = rel_err(results[name], lat64)
            # deliberately wrong variants: how far typical mistakes land from the fixture
            for label, change in (("no eviction (local_attn_size -1)", dict(local_attn_size=-1, sink_size=0)),
                                  ("no sink (sink_size 0)", dict(sink_size=0))):
                lat, _, _, _ = run_rollout(ref, which, "sf", ref.cm.CausalWanModel, tiny_w,
                                           dict(rollout_cases["window_absolute"], **change), torch.float32)
                report[f"wrong variant vs rollout_window_absolute: {label} (rel, maxabs)"] = \
                    rel_err(lat, results["window_absolute"])
            if not a.no_f64_check:
                for fname, (fc, cfg, w, _, _, fwd) in forward_results.items():
                    if fc["rope_mode"] != "absolute":
                        continue
                    f64, _ = run_forward(ref, ref.cm.CausalWanModel, cfg, w, fc, torch.float64)
                    report[f"forward_{fname}: f32 vs f64 (rel, maxabs)"] = rel_err(fwd, f64)
            # debug intermediates of the first forward of rollout_sf (chunk 0, step 0)
            dbg = {}
            case = rollout_cases["sf"]
            fc = dict(rope_mode="absolute", local_attn_size=-1, sink_size=0, cache_frames=21,
                      context=case["contexts"]["context"], x=case["noise"][0:3],
                      t=torch.full([3], float(debug_calls[0]["t"])), start_frame=0)

            def hooks(model):
                hs = []

                def keep(name, fn):
                    def h(_m, _i, o):
                        dbg[name] = fn(o).detach().clone()
                    return h
                hs.append(model.patch_embedding.register_forward_hook(
                    keep("patch_embedding", lambda o: o[0].flatten(1).transpose(0, 1))))
                hs.append(model.time_embedding.register_forward_hook(keep("time_embedding", lambda o: o)))
                hs.append(model.time_projection.register_forward_hook(keep("time_projection", lambda o: o)))
                hs.append(model.text_embedding.register_forward_hook(keep("text_embedding", lambda o: o[0])))
                for i, blk in enumerate(model.blocks):
                    hs.append(blk.self_attn.register_forward_hook(keep(f"block{i}_self_attn", lambda o: o[0])))
                    hs.append(blk.cross_attn.register_forward_hook(keep(f"block{i}_cross_attn", lambda o: o[0])))
                    hs.append(blk.register_forward_hook(keep(f"block{i}_out", lambda o: o[0])))
                hs.append(model.head.register_forward_hook(keep("head", lambda o: o[0].flatten(0, 1))))
                return hs

            out0, _ = run_forward(ref, ref.cm.CausalWanModel, TINY, tiny_w, fc, torch.float32, hooks=hooks)
            assert torch.equal(out0, debug_calls[0]["flow"]), "debug rerun differs from the rollout's first call"
            per_chunk = len(DENOISING_STEPS) + 1
            for s in range(len(DENOISING_STEPS)):
                c = debug_calls[s]
                dbg[f"chunk0_step{s}_x"] = c["x"]
                dbg[f"chunk0_step{s}_flow"] = c["flow"]
                dbg[f"chunk0_step{s}_x0"] = c["x0"]
            dbg["chunk0_context_pass_x"] = debug_calls[len(DENOISING_STEPS)]["x"]
            dbg["chunk1_step0_flow"] = debug_calls[per_chunk]["flow"]
            dbg["chunk1_step0_x0"] = debug_calls[per_chunk]["x0"]
            save(out("debug_rollout_sf.safetensors"), dbg, {
                "debug": {"rollout": "rollout_sf.safetensors", "weights": "weights_tiny.safetensors",
                          "first_forward": "chunk 0, step 0: x = noise[0:3], t = 1000, start_frame 0, empty cache",
                          "shapes": "token tensors are [tokens, features], tokens in (frame, row, col) order; "
                                    "time_* are per latent frame [F, dim] / [F, 6*dim]; text_embedding is "
                                    "[text_len, dim] (context padded with zeros to text_len first); head is "
                                    "[tokens, 64] before unpatchify; block*_self_attn / block*_cross_attn are "
                                    "the attention outputs after the o projection (before gate / residual)",
                          "chunk0_stepS_*": "input x_t, flow prediction and x0 of denoising step S of chunk 0"},
                "provenance": provenance})

    report["window_absolute vs window_relative, frames 0..8 identical"] = bool(
        torch.equal(results["window_absolute"][:9], results["window_relative"][:9]))
    report["window_absolute vs window_relative, frames 9.. (rel, maxabs)"] = rel_err(
        results["window_relative"][9:], results["window_absolute"][9:])
    report["switch_absolute vs switch_relative, frames 0..8 identical"] = bool(
        torch.equal(results["switch_absolute"][:9], results["switch_relative"][:9]))
    for name, lat in results.items():
        report[f"rollout_{name}: latents rms"] = float(lat.double().pow(2).mean().sqrt())
    with open(out("report.json") + ".tmp", "w") as fh:
        json.dump(report, fh, indent=1, sort_keys=True)
        fh.write("\n")
    os.replace(out("report.json") + ".tmp", out("report.json"))
    json.dump(report, sys.stdout, indent=1, sort_keys=True)
    print()


if __name__ == "__main__":
    main()

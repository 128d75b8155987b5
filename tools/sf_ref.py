"""Self-Forcing's reference modules with torch alone: the shared loader of the GPU reference scripts.

bench/reference/sf_reference.py (the PyTorch yardstick) and tools/wan_reference_forward.py (the 1.3B-shape
oracle) import the public Self-Forcing code (commit 33593df) from a directory given on their command line.
The GPU machine has torch but neither diffusers nor einops, no flash-attn and no internet, so this module:

  * stages the few reference files the scripts need into a directory that travels with the checkout
    (`python3 tools/sf_ref.py --stage /path/to/Self-Forcing .gpu/ref/self-forcing`; .gpu/ is git-ignored
    and carried to the GPU machine): wan/modules/*.py, utils/scheduler.py and the LICENSE, unchanged;
  * installs stand-ins for what those files import at module level and the GPU machine lacks:
      diffusers.configuration_utils.ConfigMixin / register_to_config and diffusers.models.modeling_utils
      .ModelMixin -> an empty mixin and a no-op decorator, so that CausalWanModel / WanModel are plain
      nn.Modules with the same __init__ signature (the config machinery only records the arguments);
      einops -> the real package from a pure-Python wheel under .gpu/wheels when present, else a shim for
      the three patterns the reference uses (rearrange 'b c t h w -> (b t) c h w' and back, repeat
      'n d -> b n d'); any other pattern raises.
    Set LONGROLL_REF_FORCE_STUBS=1 to use the stand-ins even where diffusers / einops are installed (so that
    the GPU path can be tested on a development machine).
  * imports wan.modules.{attention, model, causal_model, vae} and utils.scheduler with the packages `wan`
    and `wan.modules` created empty (their __init__.py would import T5, CLIP, tokenizers, ...), and
    torch.cuda.current_device() answering 0 during the import on machines without a GPU;
  * replaces the reference's attention entry points (causal_model.attention for the self-attention over
    the KV cache, model.flash_attention for the cross-attention) with torch SDPA over [B, L, N, D] inputs:
    exactly the reference's own fallback when flash-attn is missing (transpose to [B, N, L, D],
    F.scaled_dot_product_attention without mask, transpose back), except that it keeps the input dtype,
    where the fallback casts to bf16 (so that an fp32 oracle run stays fp32; bf16 runs are identical).

It also holds the few things both scripts need: the model configs, seeded random weights, the caches laid
out as the reference pipeline allocates them (with the tokens-per-frame of the actual resolution instead of
the hard-coded 1560), and a safetensors reader/writer in pure Python (the GPU machine may lack the
safetensors package; the format is a JSON header plus raw little-endian tensors).
"""

import contextlib
import ctypes
import glob
import hashlib
import io
import json
import math
import os
import shutil
import sys
import types

import torch

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_REF = os.path.join(REPO_ROOT, ".gpu", "ref", "self-forcing")
SELF_FORCING_COMMIT = "33593df"
# What the scripts import, relative to the reference root (staged to the GPU machine).
STAGED_FILES = ["wan/modules/attention.py", "wan/modules/model.py", "wan/modules/causal_model.py",
                "wan/modules/vae.py", "utils/scheduler.py", "LICENSE"]
_REF_TOPLEVEL = ("wan", "utils", "pipeline", "demo_utils")

# Wan2.1 configs (Wan's config.json names); qk_norm / cross_attn_norm are on in both released models.
WAN_1_3B = dict(model_type="t2v", patch_size=[1, 2, 2], text_len=512, in_dim=16, dim=1536, ffn_dim=8960,
                freq_dim=256, text_dim=4096, out_dim=16, num_heads=12, num_layers=30, eps=1e-6, qk_norm=True,
                cross_attn_norm=True)
WAN_14B = dict(WAN_1_3B, dim=5120, ffn_dim=13824, num_heads=40, num_layers=40)
# A tiny config with the real head size (RoPE split 22 + 21 + 21 pairs), for testing the scripts on CPU.
WAN_TINY = dict(WAN_1_3B, dim=256, ffn_dim=64, num_heads=2, num_layers=2, text_len=16, text_dim=32)
CONFIG_KEYS = ("dim", "ffn_dim", "num_heads", "num_layers", "in_dim", "out_dim", "text_dim", "text_len",
               "freq_dim", "eps", "patch_size", "model_type", "qk_norm", "cross_attn_norm")

# The reference's WanVAE_ arguments (wan/modules/vae.py, _video_vae) and WanVAEWrapper's latent statistics.
WAN_VAE = dict(dim=96, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
               temperal_downsample=[False, True, True], dropout=0.0)
VAE_MEAN = [-0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508, 0.4134, -0.0715, 0.5517, -0.3632,
            -0.1922, -0.9497, 0.2503, -0.2921]
VAE_STD = [2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743, 3.2687, 2.1526, 2.8652, 1.5579, 1.6382,
           1.1253, 2.8251, 1.9160]

# Self-Forcing's rollout (configs/self_forcing_dmd.yaml): 3 latent frames per chunk, 4 warped steps, shift 5.
FRAMES_PER_CHUNK = 3
DENOISING_STEPS = [1000, 750, 500, 250]
TIMESTEP_SHIFT = 5.0
CONTEXT_NOISE = 0


def force_stubs():
    return os.environ.get("LONGROLL_REF_FORCE_STUBS", "") not in ("", "0")


# ----------------------------------------------------------------------------------------------
# Stand-ins for diffusers and einops
# ----------------------------------------------------------------------------------------------

def _install_diffusers_stub():
    class ConfigMixin:
        """Stand-in for diffusers' ConfigMixin: the reference only uses it to record __init__ arguments."""

    class ModelMixin(torch.nn.Module):
        """Stand-in for diffusers' ModelMixin: a plain nn.Module."""

    def register_to_config(init):
        return init

    root = types.ModuleType("diffusers")
    root.__path__ = []
    cu = types.ModuleType("diffusers.configuration_utils")
    cu.ConfigMixin, cu.register_to_config = ConfigMixin, register_to_config
    models = types.ModuleType("diffusers.models")
    models.__path__ = []
    mu = types.ModuleType("diffusers.models.modeling_utils")
    mu.ModelMixin = ModelMixin
    root.configuration_utils, root.models, models.modeling_utils = cu, models, mu
    root.LONGROLL_STUB = True
    sys.modules.update({"diffusers": root, "diffusers.configuration_utils": cu, "diffusers.models": models,
                        "diffusers.models.modeling_utils": mu})


def _normalize(pattern):
    return " ".join(pattern.replace("->", " -> ").split())


def einops_shim_rearrange(x, pattern, **sizes):
    p = _normalize(pattern)
    if p == "b c t h w -> (b t) c h w":
        b, c, t, h, w = x.shape
        return x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
    if p == "(b t) c h w -> b c t h w":
        bt, c, h, w = x.shape
        t = sizes["t"]
        return x.reshape(bt // t, t, c, h, w).permute(0, 2, 1, 3, 4)
    raise NotImplementedError(f"einops shim: rearrange pattern {pattern!r}")


def einops_shim_repeat(x, pattern, **sizes):
    if _normalize(pattern) == "n d -> b n d":
        return x.unsqueeze(0).expand(sizes["b"], *x.shape)
    raise NotImplementedError(f"einops shim: repeat pattern {pattern!r}")


def _install_einops():
    """The real einops (installed, or the wheel under .gpu/wheels), else the shim. Returns which."""
    if not force_stubs():
        try:
            import einops  # noqa: F401
            return "einops " + einops.__version__
        except ImportError:
            pass
        for whl in sorted(glob.glob(os.path.join(REPO_ROOT, ".gpu", "wheels", "einops-*.whl"))):
            sys.path.insert(0, whl)  # a pure-Python wheel is a zip that zipimport reads
            try:
                import einops  # noqa: F401
                return f"einops {einops.__version__} ({os.path.basename(whl)})"
            except ImportError:
                sys.path.remove(whl)
    shim = types.ModuleType("einops")
    shim.rearrange, shim.repeat = einops_shim_rearrange, einops_shim_repeat
    shim.__version__ = "shim"
    shim.LONGROLL_STUB = True
    sys.modules["einops"] = shim
    return "einops shim (tools/sf_ref.py)"


def install_stubs():
    """Makes `diffusers` and `einops` importable for the reference; returns a description of what is used."""
    used = {}
    have_diffusers = False
    if not force_stubs():
        try:
            import diffusers.configuration_utils  # noqa: F401
            import diffusers.models.modeling_utils  # noqa: F401
            have_diffusers = True
        except ImportError:
            pass
    if not have_diffusers:
        _install_diffusers_stub()
    used["diffusers"] = "installed" if have_diffusers else "stub (plain nn.Module)"
    used["einops"] = _install_einops()
    return used


# ----------------------------------------------------------------------------------------------
# Loading the reference
# ----------------------------------------------------------------------------------------------

def sdpa_attention(q, k, v, q_lens=None, k_lens=None, dropout_p=0.0, softmax_scale=None, q_scale=None,
                   causal=False, window_size=(-1, -1), deterministic=False, dtype=None, version=None,
                   fa_version=None):
    """The reference's attention without flash-attn: q [B, Lq, N, D], k/v [B, Lk, N, D] -> [B, Lq, N, D] through
    torch.nn.functional.scaled_dot_product_attention (no mask, scale 1/sqrt(D)), in the input dtype."""
    if q_lens is not None or k_lens is not None or causal or tuple(window_size) != (-1, -1) \
            or dropout_p != 0.0 or q_scale is not None or softmax_scale is not None:
        raise NotImplementedError("SDPA stand-in: arguments the Self-Forcing inference path never passes")
    out = torch.nn.functional.scaled_dot_product_attention(
        q.transpose(1, 2), k.to(q.dtype).transpose(1, 2), v.to(q.dtype).transpose(1, 2))
    return out.transpose(1, 2).contiguous()


def load_self_forcing(root):
    """Imports the reference modules from `root` (a Self-Forcing checkout or the staged copy); returns a
    namespace with attention, model, causal_model, vae and scheduler, attention patched to SDPA."""
    root = os.path.abspath(root)
    missing = [f for f in STAGED_FILES if f != "LICENSE" and not os.path.isfile(os.path.join(root, f))]
    if missing:
        raise FileNotFoundError(f"{root}: not a Self-Forcing checkout (missing {', '.join(missing)}); stage it "
                                f"with: python3 tools/sf_ref.py --stage /path/to/Self-Forcing {DEFAULT_REF}")
    stubs = install_stubs()
    for name in list(sys.modules):
        if name.split(".")[0] in _REF_TOPLEVEL:
            del sys.modules[name]
    for pkg in ("wan", "wan.modules", "utils"):
        m = types.ModuleType(pkg)
        m.__path__ = [os.path.join(root, *pkg.split("."))]
        sys.modules[pkg] = m
    sys.path.insert(0, root)
    saved_current_device = torch.cuda.current_device
    if not torch.cuda.is_available():
        torch.cuda.current_device = lambda: 0
    ns = types.SimpleNamespace(root=root, stubs=stubs)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            for short, full in (("attention", "wan.modules.attention"), ("model", "wan.modules.model"),
                                ("causal_model", "wan.modules.causal_model"), ("vae", "wan.modules.vae"),
                                ("scheduler", "utils.scheduler")):
                setattr(ns, short, __import__(full, fromlist=["_"]))
    finally:
        torch.cuda.current_device = saved_current_device
        sys.path.remove(root)
    ns.causal_model.attention = sdpa_attention   # self-attention over the KV cache
    ns.model.flash_attention = sdpa_attention    # cross-attention (WanT2VCrossAttention)
    ns.attention.attention = sdpa_attention
    ns.attention.flash_attention = sdpa_attention
    ns.sha256_16 = file_digests(root, [f for f in STAGED_FILES if os.path.isfile(os.path.join(root, f))])
    return ns


def file_digests(root, files):
    out = {}
    for f in files:
        with open(os.path.join(root, f), "rb") as fh:
            out[f] = hashlib.sha256(fh.read()).hexdigest()[:16]
    return out


def stage(src, dst):
    """Copies the reference files the scripts import from a Self-Forcing checkout to `dst`."""
    for f in STAGED_FILES:
        os.makedirs(os.path.dirname(os.path.join(dst, f)) or dst, exist_ok=True)
        shutil.copyfile(os.path.join(src, f), os.path.join(dst, f))
    with open(os.path.join(dst, "STAGED.json"), "w") as fh:
        json.dump({"source": os.path.abspath(src), "commit": SELF_FORCING_COMMIT,
                   "files": file_digests(dst, STAGED_FILES),
                   "note": "unchanged copies of the public Self-Forcing files (Apache-2.0, see LICENSE), "
                           "staged by tools/sf_ref.py --stage for the GPU machine"}, fh, indent=1, sort_keys=True)
        fh.write("\n")


# ----------------------------------------------------------------------------------------------
# Models, weights, caches
# ----------------------------------------------------------------------------------------------

def make_causal_wan(ns, cfg, local_attn_size, sink_size, device):
    """The reference CausalWanModel for `cfg`, float32 on `device` (its own init; overwrite it)."""
    with torch.device(device):
        m = ns.causal_model.CausalWanModel(
            model_type=cfg["model_type"], patch_size=tuple(cfg["patch_size"]), text_len=cfg["text_len"],
            in_dim=cfg["in_dim"], dim=cfg["dim"], ffn_dim=cfg["ffn_dim"], freq_dim=cfg["freq_dim"],
            text_dim=cfg["text_dim"], out_dim=cfg["out_dim"], num_heads=cfg["num_heads"],
            num_layers=cfg["num_layers"], local_attn_size=local_attn_size, sink_size=sink_size,
            qk_norm=cfg["qk_norm"], cross_attn_norm=cfg["cross_attn_norm"], eps=cfg["eps"])
    return m.eval().requires_grad_(False)


def dit_random_(model, seed, gen_device="cpu", round_bf16=True):
    """Overwrites every DiT parameter with seeded values scaled like a trained network, so that activations
    stay O(1) through all layers: Linear / Conv N(0, 1/fan_in), biases N(0, 0.02^2), norm gains 1 +
    N(0, 0.1^2), modulations N(0, 0.1^2). Values are drawn in sorted name order from one generator on
    `gen_device` and (round_bf16) rounded to bf16 values, so that an fp32 run and a bf16 run use the same
    weights and a BF16 file holds them exactly."""
    g = torch.Generator(device=gen_device).manual_seed(seed)
    params = dict(model.named_parameters())
    for name in sorted(params):
        p = params[name]
        r = torch.randn(tuple(p.shape), generator=g, device=gen_device, dtype=torch.float32)
        if name.endswith(("norm_q.weight", "norm_k.weight", "norm3.weight")):
            r = 1.0 + 0.1 * r
        elif name.endswith("modulation"):
            r = 0.1 * r
        elif name.endswith(".bias"):
            r = 0.02 * r
        else:  # Linear [out, in], Conv3d [out, in, kt, kh, kw]
            r = r / math.sqrt(math.prod(p.shape[1:]))
        if round_bf16:
            r = r.to(torch.bfloat16).to(torch.float32)
        with torch.no_grad():
            p.copy_(r)


def vae_random_(model, seed, gen_device="cpu"):
    """Seeded VAE weights (as tools/make_vae_fixtures.py): conv N(0, 1/fan_in) (0.5x for the RGB head),
    biases N(0, 0.05^2), RMS_norm gains 1 + N(0, 0.1^2)."""
    g = torch.Generator(device=gen_device).manual_seed(seed)
    params = dict(model.named_parameters())
    for name in sorted(params):
        p = params[name]
        r = torch.randn(tuple(p.shape), generator=g, device=gen_device, dtype=torch.float32)
        if name.endswith(".gamma"):
            r = 1.0 + 0.1 * r
        elif name.endswith(".bias"):
            r = 0.05 * r
        else:
            r = (0.5 if name == "decoder.head.2.weight" else 1.0) / math.sqrt(math.prod(p.shape[1:])) * r
        with torch.no_grad():
            p.copy_(r)


def tokens_per_frame(cfg, latent_h, latent_w):
    return (latent_h // cfg["patch_size"][1]) * (latent_w // cfg["patch_size"][2])


def alloc_kv_cache(cfg, size_tokens, dtype, device):
    """Self-Forcing's _initialize_kv_cache with the model's heads instead of the hard-coded 12 x 128."""
    n, d = cfg["num_heads"], cfg["dim"] // cfg["num_heads"]
    return [{"k": torch.zeros([1, size_tokens, n, d], dtype=dtype, device=device),
             "v": torch.zeros([1, size_tokens, n, d], dtype=dtype, device=device),
             "global_end_index": torch.tensor([0], dtype=torch.long, device=device),
             "local_end_index": torch.tensor([0], dtype=torch.long, device=device)} for _ in range(cfg["num_layers"])]


def alloc_crossattn_cache(cfg, dtype, device):
    n, d = cfg["num_heads"], cfg["dim"] // cfg["num_heads"]
    return [{"k": torch.zeros([1, cfg["text_len"], n, d], dtype=dtype, device=device),
             "v": torch.zeros([1, cfg["text_len"], n, d], dtype=dtype, device=device), "is_init": False}
            for _ in range(cfg["num_layers"])]


def set_cache_end(kv_cache, tokens):
    """Sets both end indices of every layer, as if `tokens` tokens had been written (no eviction yet)."""
    for c in kv_cache:
        c["global_end_index"].fill_(tokens)
        c["local_end_index"].fill_(tokens)


def set_max_attention_size(model, tokens):
    """The reference hard-codes 1560 tokens per frame in max_attention_size (local_attn_size * 1560); at any
    other resolution that cuts the window short. Set it to the window in tokens of the actual resolution."""
    for mod in model.modules():
        if hasattr(mod, "max_attention_size"):
            mod.max_attention_size = tokens


def make_scheduler(ns):
    """The scheduler of WanDiffusionWrapper and the warped denoising timesteps of CausalInferencePipeline."""
    s = ns.scheduler.FlowMatchScheduler(shift=TIMESTEP_SHIFT, sigma_min=0.0, extra_one_step=True)
    s.set_timesteps(1000, training=True)
    ext = torch.cat((s.timesteps.cpu(), torch.tensor([0], dtype=torch.float32)))
    steps = ext[1000 - torch.tensor(DENOISING_STEPS, dtype=torch.long)]
    return s, steps


def flow_to_x0(sched, flow, xt, timestep):
    """WanDiffusionWrapper._convert_flow_pred_to_x0: x0 = x_t - sigma_t * flow in float64. flow/xt [N, C, H, W],
    timestep [N]."""
    dtype = flow.dtype
    flow, xt, sigmas, timesteps = (t.double().to(flow.device) for t in (flow, xt, sched.sigmas, sched.timesteps))
    idx = torch.argmin((timesteps.unsqueeze(0) - timestep.double().unsqueeze(1)).abs(), dim=1)
    return (xt - sigmas[idx].reshape(-1, 1, 1, 1) * flow).to(dtype)


def model_call(model, x, t, context, kv_cache, crossattn_cache, start_frame, frame_tokens):
    """One forward as WanDiffusionWrapper.forward makes it: x [1, F, C, H, W], t [1, F] -> flow [1, F, C, H, W]."""
    return model(x.permute(0, 2, 1, 3, 4), t=t, context=context, seq_len=1 << 30, kv_cache=kv_cache,
                 crossattn_cache=crossattn_cache, current_start=start_frame * frame_tokens,
                 cache_start=None).permute(0, 2, 1, 3, 4)


# ----------------------------------------------------------------------------------------------
# safetensors in pure Python
# ----------------------------------------------------------------------------------------------

_ST_DTYPES = {torch.float64: "F64", torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16",
              torch.int64: "I64", torch.int32: "I32", torch.uint8: "U8", torch.int8: "I8", torch.bool: "BOOL"}
_ST_TORCH = {v: k for k, v in _ST_DTYPES.items()}


def save_safetensors(path, tensors, metadata=None):
    """Writes `tensors` (name -> tensor) with string metadata (non-strings are JSON-encoded); keys sorted,
    header padded to 8 bytes, written to a temporary name and renamed."""
    items = [(k, tensors[k].detach().contiguous().cpu()) for k in sorted(tensors)]
    header, offset = {}, 0
    for name, t in items:
        n = t.numel() * t.element_size()
        header[name] = {"dtype": _ST_DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + n]}
        offset += n
    if metadata:
        header["__metadata__"] = {k: (v if isinstance(v, str) else json.dumps(v, sort_keys=True))
                                  for k, v in metadata.items()}
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as fh:
        fh.write(len(text).to_bytes(8, "little"))
        fh.write(text)
        for _, t in items:
            if t.numel():
                fh.write(ctypes.string_at(t.data_ptr(), t.numel() * t.element_size()))
    os.replace(tmp, path)


def load_safetensors(path):
    """Returns (name -> CPU tensor, metadata dict of strings)."""
    with open(path, "rb") as fh:
        blob = fh.read()
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8:8 + n])
    meta = header.pop("__metadata__", {})
    base = 8 + n
    out = {}
    for name, h in header.items():
        b, e = h["data_offsets"]
        dtype = _ST_TORCH[h["dtype"]]
        if e > b:
            t = torch.frombuffer(bytearray(blob[base + b:base + e]), dtype=dtype)
        else:
            t = torch.zeros([0], dtype=dtype)
        out[name] = t.reshape(h["shape"])
    return out, meta


def rel_err(a, b):
    """(||a - b|| / ||b||, max |a - b|) in float64."""
    a, b = a.double().cpu(), b.double().cpu()
    return float((a - b).norm() / b.norm()), float((a - b).abs().max())


def main():
    import argparse
    ap = argparse.ArgumentParser(description="Stage the Self-Forcing reference files for the GPU machine.")
    ap.add_argument("--stage", nargs=2, metavar=("SRC", "DST"), required=True,
                    help=f"copy {', '.join(STAGED_FILES)} from the checkout SRC to DST")
    a = ap.parse_args()
    stage(*a.stage)
    print(f"staged {len(STAGED_FILES)} files to {a.stage[1]}")


if __name__ == "__main__":
    main()

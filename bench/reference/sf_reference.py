#!/usr/bin/env python3
"""The PyTorch yardstick: Self-Forcing's reference DiT chunk step and Wan VAE streaming decode on this GPU.

    python3 bench/reference/sf_reference.py --json out/sf_reference.json          # on the GPU machine
    python3 bench/reference/sf_reference.py --device cpu --config tiny --sizes 64x32 --iters 1 --warmup 0

Runs the public Self-Forcing code (commit 33593df, imported from --ref, staged with tools/sf_ref.py) with
seeded random weights in bf16 (what Self-Forcing's inference.py runs: pipeline.to(torch.bfloat16)), torch
SDPA as the attention (the reference's own fallback without flash-attn; tools/sf_ref.py says what it
replaces), and measures with CUDA events, after warm-up, the median of --iters runs of:

  dit.first_chunk.<size>        one chunk with an empty KV cache: 3 latent frames, 4 denoising forwards at
                                the warped timesteps [1000, 937.5, 833.3, 625] with the scheduler's x0 /
                                add_noise between them (as CausalInferencePipeline.inference), then the
                                clean pass at t = 0 that rewrites the chunk's K/V: 5 forwards
  dit.full_window_chunk.<size>  the same chunk with 18 latent frames already cached (local_attn_size 21: the
                                queries see a full 21-frame window), i.e. a chunk of the steady state
  vae.decode_chunk.<size>       WanVAE_.cached_decode (the reference's streaming decode with feature caches)
                                of 3 latent frames after a first chunk has warmed the caches: 12 frames;
                                `ms` is the decode alone, `ms_to_host_u8` adds decode_to_pixel's clamp,
                                the conversion to uint8 [F, H, W, 3] on the GPU and the copy to the host

with the peak of torch.cuda.max_memory_allocated over each item (weights, caches, activations; the DiT is
freed before the VAE items). Sizes: 480p = 480x832 (latent 60x104, 1560 tokens per frame) and 1088p =
1088x1920 (latent 136x240, 8160 tokens per frame). The cache before the timed full-window chunk is filled
with random K/V (--fill random, the attention cost does not depend on the values) or with the clean passes
of 6 random chunks (--fill clean). The reference's max_attention_size hard-codes 1560 tokens per frame; it
is set to 21 frames of the actual resolution (else 1088p would attend to 4 frames).

Writes --json FILE (torch version, GPU name, settings, per item ms / samples / peak bytes) and prints a
table. Keep the whole run under ~3 minutes on an H100 (defaults: 480p 5 runs, 1088p 2 runs).
"""

import argparse
import json
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "tools"))
import sf_ref  # noqa: E402

SIZES = {"480p": (480, 832), "1088p": (1088, 1920)}
WINDOW_FRAMES = 21
CACHED_FRAMES = 18


def parse_size(s):
    if s in SIZES:
        return s, SIZES[s]
    try:
        w, h = (int(v) for v in s.lower().split("x"))
    except ValueError:
        raise SystemExit(f"--sizes: {s!r} is neither 480p, 1088p nor WxH")
    if w % 16 or h % 16:
        raise SystemExit(f"--sizes: {s}: width and height must be multiples of 16")
    return f"{w}x{h}", (h, w)


class Timer:
    """Median of CUDA-event (or, on CPU, wall-clock) times of fn() after warm-up; setup() runs untimed."""

    def __init__(self, device):
        self.cuda = device.type == "cuda"

    def run(self, fn, iters, warmup, setup=None, marks=1):
        samples = [[] for _ in range(marks)]
        for i in range(warmup + iters):
            if setup is not None:
                setup()
            if self.cuda:
                torch.cuda.synchronize()
                ev = [torch.cuda.Event(enable_timing=True) for _ in range(marks + 1)]
                ev[0].record()
                fn(lambda k: ev[k + 1].record())
                torch.cuda.synchronize()
                times = [ev[0].elapsed_time(ev[k + 1]) for k in range(marks)]
            else:
                t0 = time.perf_counter()
                stamps = [None] * marks

                def mark(k):
                    stamps[k] = time.perf_counter()
                fn(mark)
                times = [(s - t0) * 1e3 for s in stamps]
            if i >= warmup:
                for k in range(marks):
                    samples[k].append(times[k])
        return samples


def peak_reset(device):
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_bytes(device):
    if device.type != "cuda":
        return None
    torch.cuda.synchronize()
    return int(torch.cuda.max_memory_allocated())


def tensor_bytes(tensors):
    return sum(t.numel() * t.element_size() for t in tensors)


# ----------------------------------------------------------------------------------------------
# DiT
# ----------------------------------------------------------------------------------------------

class DitChunk:
    """One chunk of CausalInferencePipeline.inference (batch 1) over the reference model."""

    def __init__(self, ns, model, cfg, latent_hw, dtype, device, seed):
        self.model, self.cfg, self.dtype, self.device = model, cfg, dtype, device
        self.h, self.w = latent_hw
        self.fs = sf_ref.tokens_per_frame(cfg, self.h, self.w)
        self.kv = sf_ref.alloc_kv_cache(cfg, WINDOW_FRAMES * self.fs, dtype, device)
        self.xa = sf_ref.alloc_crossattn_cache(cfg, dtype, device)
        sf_ref.set_max_attention_size(model, WINDOW_FRAMES * self.fs)
        self.sched, self.steps = sf_ref.make_scheduler(ns)
        g = torch.Generator(device=device).manual_seed(seed)
        F = sf_ref.FRAMES_PER_CHUNK
        self.noise = torch.randn([1, F, cfg["in_dim"], self.h, self.w], generator=g, device=device).to(dtype)
        # UMT5 output: 512 positions, the prompt's tokens then zeros (WanTextEncoder zeroes the padding)
        ctx = torch.randn([1, cfg["text_len"], cfg["text_dim"]], generator=g, device=device)
        ctx[:, min(cfg["text_len"], 96):] = 0
        self.context = ctx.to(dtype)
        self.gen = g

    def kv_bytes(self):
        return tensor_bytes([c[k] for c in self.kv for k in ("k", "v")])

    def reset(self, cached_frames, reset_crossattn):
        sf_ref.set_cache_end(self.kv, cached_frames * self.fs)
        if reset_crossattn:
            for c in self.xa:
                c["is_init"] = False

    def fill_random(self, frames):
        for c in self.kv:
            for k in ("k", "v"):
                c[k][:, :frames * self.fs].normal_(generator=self.gen)
        sf_ref.set_cache_end(self.kv, frames * self.fs)

    def fill_clean(self, frames):
        """The clean passes (t = context_noise) of frames // 3 chunks of random latents."""
        F = sf_ref.FRAMES_PER_CHUNK
        self.reset(0, True)
        for f0 in range(0, frames, F):
            x = torch.randn(self.noise.shape, generator=self.gen, device=self.device).to(self.dtype)
            t = torch.full([1, F], float(sf_ref.CONTEXT_NOISE), device=self.device)
            sf_ref.model_call(self.model, x, t, self.context, self.kv, self.xa, f0, self.fs)

    def chunk(self, start_frame):
        """4 denoising forwards + the clean pass; returns the chunk's x0 [1, F, C, h, w]."""
        F, dev = sf_ref.FRAMES_PER_CHUNK, self.device
        x = self.noise
        for i, t_cur in enumerate(self.steps):
            t = torch.ones([1, F], device=dev, dtype=torch.int64) * t_cur.to(dev)
            flow = sf_ref.model_call(self.model, x, t, self.context, self.kv, self.xa, start_frame, self.fs)
            x0 = sf_ref.flow_to_x0(self.sched, flow.flatten(0, 1), x.flatten(0, 1), t.flatten(0, 1)).unflatten(
                0, flow.shape[:2])
            if i < len(self.steps) - 1:
                nxt = self.steps[i + 1].to(dev) * torch.ones([F], device=dev, dtype=torch.long)
                x = self.sched.add_noise(x0.flatten(0, 1), torch.randn_like(x0.flatten(0, 1)), nxt).unflatten(
                    0, x0.shape[:2])
        t0 = torch.ones_like(t) * sf_ref.CONTEXT_NOISE
        sf_ref.model_call(self.model, x0, t0, self.context, self.kv, self.xa, start_frame, self.fs)
        return x0


def bench_dit(a, ns, cfg, cfg_name, sizes, device, dtype, timer, results):
    t_build = time.perf_counter()
    model = sf_ref.make_causal_wan(ns, cfg, WINDOW_FRAMES, 0, device)
    sf_ref.dit_random_(model, a.seed, gen_device=device.type, round_bf16=False)
    model = model.to(dtype)
    weight_bytes = tensor_bytes(list(model.parameters()))
    print(f"[sf_reference] DiT {cfg_name}: {sum(p.numel() for p in model.parameters()) / 1e9:.3f} B parameters, "
          f"built in {time.perf_counter() - t_build:.1f} s", file=sys.stderr)
    prefix = "dit" if cfg_name == "1.3b" else f"dit{cfg_name}"
    for name, (H, W) in sizes:
        iters = a.iters if a.iters is not None else (a.iters_1088 if H * W > 1e6 else a.iters_480)
        warmup = a.warmup
        peak_reset(device)
        st = DitChunk(ns, model, cfg, (H // 8, W // 8), dtype, device, a.seed + 1)
        common = dict(height=H, width=W, latent_frames=sf_ref.FRAMES_PER_CHUNK, forwards=len(st.steps) + 1,
                      tokens_per_frame=st.fs, window_frames=WINDOW_FRAMES, iters=iters, warmup=warmup,
                      weight_bytes=weight_bytes, kv_cache_bytes=st.kv_bytes(), model=cfg_name)
        with torch.no_grad():
            # first chunk: empty cache, the cross-attention K/V computed by its first forward
            s = timer.run(lambda mark: (st.chunk(0), mark(0)), iters, warmup, setup=lambda: st.reset(0, True))[0]
            results[f"{prefix}.first_chunk.{name}"] = dict(
                common, ms=statistics.median(s), samples_ms=s, cached_frames=0, peak_bytes=peak_bytes(device))
            report(f"{prefix}.first_chunk.{name}", results)
            peak_reset(device)
            if a.fill == "clean":
                st.fill_clean(CACHED_FRAMES)
            else:
                st.fill_random(CACHED_FRAMES)
            s = timer.run(lambda mark: (st.chunk(CACHED_FRAMES), mark(0)), iters, warmup,
                          setup=lambda: st.reset(CACHED_FRAMES, False))[0]
            results[f"{prefix}.full_window_chunk.{name}"] = dict(
                common, ms=statistics.median(s), samples_ms=s, cached_frames=CACHED_FRAMES, fill=a.fill,
                peak_bytes=peak_bytes(device))
            report(f"{prefix}.full_window_chunk.{name}", results)
        del st
    del model
    peak_reset(device)


# ----------------------------------------------------------------------------------------------
# VAE
# ----------------------------------------------------------------------------------------------

def bench_vae(a, ns, sizes, device, dtype, timer, results):
    with torch.device(device):
        vae = ns.vae.WanVAE_(**dict(sf_ref.WAN_VAE, dim=a.vae_dim))
    sf_ref.vae_random_(vae, a.seed + 2, gen_device=device.type)
    # Streaming decode uses only conv2 and the decoder (Self-Forcing's demo loads just those); dropping the
    # encoder keeps the peak-memory figure to what a decoder needs. clear_cache() counts its convs: none.
    vae.encoder = torch.nn.Module()
    vae = vae.eval().requires_grad_(False).to(dtype)
    weight_bytes = tensor_bytes(list(vae.parameters()))
    # WanVAEWrapper.decode_to_pixel: scale = [mean, 1 / std] in the latents' dtype
    scale = [torch.tensor(sf_ref.VAE_MEAN, device=device).to(dtype),
             1.0 / torch.tensor(sf_ref.VAE_STD, device=device).to(dtype)]
    F = sf_ref.FRAMES_PER_CHUNK
    for name, (H, W) in sizes:
        iters = a.iters if a.iters is not None else (a.vae_iters_1088 if H * W > 1e6 else a.vae_iters_480)
        peak_reset(device)
        g = torch.Generator(device=device).manual_seed(a.seed + 3)
        z = torch.randn([1, sf_ref.WAN_VAE["z_dim"], F, H // 8, W // 8], generator=g, device=device).to(dtype)
        host = {}

        def decode(mark):
            out = vae.cached_decode(z, scale)  # [1, 3, 4F, H, W]
            mark(0)
            # decode_to_pixel's clamp, the pipeline's (x * 0.5 + 0.5).clamp(0, 1), 8 bits, frames to the host
            v = (out.float().clamp_(-1, 1) * 0.5 + 0.5).clamp_(0, 1)
            u8 = (v * 255.0).to(torch.uint8)[0].permute(1, 2, 3, 0).contiguous()  # [4F, H, W, 3]
            host["frames"] = u8.cpu()
            mark(1)

        with torch.no_grad():
            vae.clear_cache()
            first = vae.cached_decode(z, scale)  # the stream's first chunk: 1 + 4 (F - 1) frames, warm caches
            first_frames = first.shape[2]
            del first
            s_dec, s_all = timer.run(decode, iters, a.warmup, marks=2)
        frames = host["frames"].shape[0]
        key = f"vae.decode_chunk.{name}"
        results[key] = dict(ms=statistics.median(s_dec), samples_ms=s_dec, ms_to_host_u8=statistics.median(s_all),
                            samples_to_host_u8_ms=s_all, height=H, width=W, latent_frames=F, frames=frames,
                            first_chunk_frames=first_frames, vae_dim=a.vae_dim, iters=iters, warmup=a.warmup,
                            weight_bytes=weight_bytes,
                            peak_bytes=peak_bytes(device))
        report(key, results)
        vae.clear_cache()
        del z, host
    del vae
    peak_reset(device)


# ----------------------------------------------------------------------------------------------

def report(key, results):
    r = results[key]
    pk = f"{r['peak_bytes'] / 2**30:7.2f} GiB" if r.get("peak_bytes") is not None else "      -"
    extra = f"  (+u8 to host {r['ms_to_host_u8']:.1f} ms)" if "ms_to_host_u8" in r else ""
    print(f"  {key:36s} {r['ms']:10.1f} ms  peak {pk}{extra}", file=sys.stderr, flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--ref", default=sf_ref.DEFAULT_REF, help="Self-Forcing checkout or staged copy")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--config", default="1.3b", choices=["1.3b", "14b", "tiny"])
    ap.add_argument("--sizes", default="480p,1088p", help="comma list: 480p, 1088p or WxH (pixels)")
    ap.add_argument("--vae-sizes", default=None, help="default: --sizes")
    ap.add_argument("--items", default="dit,vae", help="comma list of dit, vae")
    ap.add_argument("--iters", type=int, default=None, help="timed runs for every item (overrides the below)")
    ap.add_argument("--iters-480", type=int, default=5, help="timed DiT chunks at sizes up to 1 Mpixel")
    ap.add_argument("--iters-1088", type=int, default=2, help="timed DiT chunks above 1 Mpixel")
    ap.add_argument("--vae-iters-480", type=int, default=5)
    ap.add_argument("--vae-iters-1088", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--fill", default="random", choices=["random", "clean"],
                    help="how the 18 cached frames of the full-window chunk are made")
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "fp32"])
    ap.add_argument("--sdpa-backend", default="default", choices=["default", "flash", "cudnn", "efficient", "math"],
                    help="restrict torch SDPA to one backend (default: torch's choice)")
    ap.add_argument("--vae-dim", type=int, default=sf_ref.WAN_VAE["dim"],
                    help="VAE base channels (96: Wan2.1; small values to test the script on CPU)")
    ap.add_argument("--seed", type=int, default=20260501)
    a = ap.parse_args()

    device = torch.device(a.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("sf_reference.py: no CUDA device (use --device cpu with --config tiny to test)")
    dtype = torch.bfloat16 if a.dtype == "bf16" else torch.float32
    cfg = {"1.3b": sf_ref.WAN_1_3B, "14b": sf_ref.WAN_14B, "tiny": sf_ref.WAN_TINY}[a.config]
    sizes = [parse_size(s) for s in a.sizes.split(",") if s]
    vae_sizes = [parse_size(s) for s in (a.vae_sizes or a.sizes).split(",") if s]
    items = set(a.items.split(","))
    ns = sf_ref.load_self_forcing(a.ref)
    torch.manual_seed(a.seed)
    timer = Timer(device)

    ctx = None
    if a.sdpa_backend != "default":
        from torch.nn.attention import SDPBackend, sdpa_kernel
        ctx = sdpa_kernel([{"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION,
                            "efficient": SDPBackend.EFFICIENT_ATTENTION, "math": SDPBackend.MATH}[a.sdpa_backend]])
        ctx.__enter__()

    info = dict(tool="bench/reference/sf_reference.py", implementation=f"Self-Forcing {sf_ref.SELF_FORCING_COMMIT} "
                "PyTorch reference (CausalWanModel, WanVAE_), SDPA attention", torch=torch.__version__,
                cuda=torch.version.cuda, device=str(device), dtype=a.dtype, sdpa_backend=a.sdpa_backend,
                config=a.config, model_config={k: cfg[k] for k in sf_ref.CONFIG_KEYS}, seed=a.seed,
                reference_files=ns.sha256_16, stand_ins=ns.stubs,
                started=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        info.update(gpu=p.name, gpu_memory_bytes=int(p.total_memory), gpu_capability=f"{p.major}.{p.minor}",
                    sdpa_enabled=dict(flash=torch.backends.cuda.flash_sdp_enabled(),
                                      efficient=torch.backends.cuda.mem_efficient_sdp_enabled(),
                                      cudnn=torch.backends.cuda.cudnn_sdp_enabled(),
                                      math=torch.backends.cuda.math_sdp_enabled()))
    else:
        info.update(gpu="none (CPU)")
    print(f"[sf_reference] {info['gpu']}, torch {torch.__version__}, {a.dtype}, stand-ins {ns.stubs}",
          file=sys.stderr)
    results = {}
    t0 = time.perf_counter()
    if "dit" in items:
        bench_dit(a, ns, cfg, a.config, sizes, device, dtype, timer, results)
    if "vae" in items:
        bench_vae(a, ns, vae_sizes, device, dtype, timer, results)
    info["seconds"] = round(time.perf_counter() - t0, 1)
    if ctx is not None:
        ctx.__exit__(None, None, None)

    doc = dict(info, results=results)
    print(f"\n{'item':38s} {'median ms':>10s} {'peak GiB':>9s}   (Self-Forcing PyTorch, {info['gpu']})")
    for k, r in results.items():
        pk = f"{r['peak_bytes'] / 2**30:9.2f}" if r.get("peak_bytes") is not None else f"{'-':>9s}"
        print(f"{k:38s} {r['ms']:10.1f} {pk}")
    if a.json:
        os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
        with open(a.json + ".tmp", "w") as fh:
            json.dump(doc, fh, indent=1)
            fh.write("\n")
        os.replace(a.json + ".tmp", a.json)
        print(f"wrote {a.json}")


if __name__ == "__main__":
    main()

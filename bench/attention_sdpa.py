#!/usr/bin/env python3
"""The yardstick for bench/attention_bench: torch scaled_dot_product_attention on the same shapes.

Wan2.1 1.3B self-attention (12 heads, head_dim 128, bf16), a chunk of 3 latent frames of queries over a
21-frame KV window: 480p (1560 tokens/frame: q 4680, kv 32760) and 1088p (8160 tokens/frame: q 24480,
kv 171360), tensors [1, heads, L, 128] contiguous, dense (no mask, no padding). Times are CUDA-event medians
after warm-up; FLOP = 4 * q * kv * head_dim * heads. Reports the backend torch picks by default (from the
kernel names the profiler sees) and, for reference, each backend forced alone. Also a cuBLAS bf16 GEMM
ceiling (8192^3 matmul).

    python3 bench/attention_sdpa.py [--json FILE] [--runs N] [--quick]
"""
import argparse
import json
import statistics

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

HEADS, HEAD_DIM, Q_FRAMES, KV_FRAMES = 12, 128, 3, 21
SHAPES = [("480p", 1560), ("1088p", 8160)]


def time_ms(fn, runs, warmup=5):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(runs):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop))
    return statistics.median(times)


def default_backend(fn):
    """Names the SDPA backend from the CUDA kernels one call launches."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    names = [e.key for e in prof.key_averages()]
    for needle, backend in (("cudnn", "cudnn"), ("flash", "flash"), ("fmha", "efficient"), ("cutlass", "efficient")):
        if any(needle in n.lower() for n in names):
            return backend, names
    return "unknown", names


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", default="")
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--quick", action="store_true", help="480p only")
    args = ap.parse_args()

    torch.manual_seed(0)
    dev = torch.device("cuda")
    cases = []
    for name, tokens in SHAPES:
        if args.quick and name != "480p":
            continue
        lq, lkv = Q_FRAMES * tokens, KV_FRAMES * tokens
        q = torch.randn(1, HEADS, lq, HEAD_DIM, device=dev, dtype=torch.bfloat16)
        k = torch.randn(1, HEADS, lkv, HEAD_DIM, device=dev, dtype=torch.bfloat16)
        v = torch.randn(1, HEADS, lkv, HEAD_DIM, device=dev, dtype=torch.bfloat16)
        flop = 4.0 * lq * lkv * HEAD_DIM * HEADS

        def call():
            return F.scaled_dot_product_attention(q, k, v)

        ms = time_ms(call, args.runs)
        backend, kernels = default_backend(call)
        forced = {}
        for label, b in (("flash", SDPBackend.FLASH_ATTENTION), ("efficient", SDPBackend.EFFICIENT_ATTENTION),
                         ("cudnn", SDPBackend.CUDNN_ATTENTION)):
            try:
                with sdpa_kernel([b]):
                    t = time_ms(call, max(5, args.runs // 3))
                forced[label] = {"ms": round(t, 4), "tflops": round(flop / (t * 1e-3) / 1e12, 2)}
            except RuntimeError as e:  # backend not available for these inputs
                forced[label] = {"error": str(e).splitlines()[0][:200]}
        case = {"name": name, "q_len": lq, "kv_len": lkv, "gflop": flop / 1e9, "ms": round(ms, 4),
                "tflops": round(flop / (ms * 1e-3) / 1e12, 2), "backend": backend,
                "kernels": [n for n in kernels if not n.startswith(("cuda", "Activity", "Memset", "Memcpy"))][:4],
                "forced": forced}
        cases.append(case)
        print(f"{name:6s} q {lq:6d} kv {lkv:7d}  {ms:8.3f} ms  {case['tflops']:7.1f} TFLOP/s  backend {backend}  "
              + "  ".join(f"{k}: {v.get('ms', 'n/a')} ms" for k, v in forced.items()), flush=True)
        del q, k, v
        torch.cuda.empty_cache()

    n = 8192
    a = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
    gms = time_ms(lambda: a @ b, args.runs)
    gemm = {"m": n, "n": n, "k": n, "ms": round(gms, 4), "tflops": round(2.0 * n ** 3 / (gms * 1e-3) / 1e12, 2)}
    print(f"cuBLAS bf16 GEMM {n}^3: {gms:.3f} ms, {gemm['tflops']:.1f} TFLOP/s")

    doc = {"bench": "attention_sdpa", "gpu": torch.cuda.get_device_name(0), "torch": torch.__version__,
           "heads": HEADS, "head_dim": HEAD_DIM, "runs": args.runs, "cases": cases, "gemm": gemm}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()

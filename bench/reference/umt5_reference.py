#!/usr/bin/env python3
"""The PyTorch yardstick of bench/text_bench.cpp: transformers' UMT5EncoderModel (UMT5-XXL) on this GPU.

    python3 bench/reference/umt5_reference.py --json out/umt5_reference.json         # on the GPU machine
    python3 bench/reference/umt5_reference.py --device cpu --config tiny --iters 1 --warmup 0

Builds UMT5EncoderModel from google/umt5-xxl's configuration written out here (the GPU machine has no internet):
24 layers, d_model 4096, 64 heads of 64, d_ff 10240 gated-GELU, vocab 256384, 32 buckets / max distance 128, with
transformers' own random init, directly on the device in bf16 (every module, `wo` included: transformers would
keep `wo` in fp32 only when loading a pretrained file; Wan's own T5 runs all of it in bf16, as longroll does), and
the attention implementation transformers picks for UMT5 (recorded in the JSON: "sdpa" in transformers 5). Then
encodes one --tokens-token prompt (the ids of text_bench: spread over the vocabulary, </s> last) with its
attention mask, as Wan's pipeline calls the encoder, under torch.inference_mode, timed with CUDA events after
--warmup calls; median of --iters.

Items (the names of text_bench's JSON, so that the two pair up):
  text.umt5_xxl.encode_<tokens>  ms, samples_ms, peak_bytes (torch.cuda.max_memory_allocated from after the
                                 build to the end of the runs: weights + activations), flop, tflops
  text.umt5_xxl.build            ms to construct and initialise the model on the device
"""

import argparse
import json
import os
import statistics
import subprocess
import time

import torch

XXL = dict(vocab_size=256384, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64)
TINY = dict(vocab_size=512, d_model=64, d_kv=16, d_ff=96, num_layers=2, num_heads=4)


def bench_ids(tokens, vocab):
    """text_bench's prompt: tokens - 1 ids spread over the vocabulary, then </s> (1)."""
    return [3 + (i * 7919 + 17) % (vocab - 3) for i in range(tokens - 1)] + [1]


def umt5_config(sizes):
    from transformers import UMT5Config
    return UMT5Config(**sizes, relative_attention_num_buckets=32, relative_attention_max_distance=128,
                      feed_forward_proj="gated-gelu", dropout_rate=0.0, layer_norm_epsilon=1e-6,
                      tie_word_embeddings=False, is_encoder_decoder=False, use_cache=False)


def encode_flop(c, tokens):
    inner = c.num_heads * c.d_kv
    return c.num_layers * (2 * tokens * (4 * c.d_model * inner + 3 * c.d_model * c.d_ff) + 4 * tokens * tokens * inner)


def commit():
    if os.environ.get("LONGROLL_COMMIT"):
        return os.environ["LONGROLL_COMMIT"]
    try:
        return subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--config", choices=["xxl", "tiny"], default="xxl")
    ap.add_argument("--tokens", type=int, default=512)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--seed", type=int, default=20260516)
    args = ap.parse_args()

    import transformers
    from transformers import UMT5EncoderModel

    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    cfg = umt5_config(XXL if args.config == "xxl" else TINY)
    sync(device)
    t0 = time.perf_counter()
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)  # built in bf16: no fp32 copy of the 11 GB on the way
    try:
        with device:
            model = UMT5EncoderModel(cfg)
    finally:
        torch.set_default_dtype(default_dtype)
    model = model.to(device=device, dtype=torch.bfloat16).eval()
    sync(device)
    build_ms = 1e3 * (time.perf_counter() - t0)
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())  # shared tensors once
    attn = getattr(model.config, "_attn_implementation", None)
    print(f"[umt5_reference] built in {build_ms / 1e3:.2f} s on {device} ({weight_bytes / 2**30:.2f} GiB, "
          f"attention {attn})", flush=True)

    ids = torch.tensor([bench_ids(args.tokens, cfg.vocab_size)], device=device)
    mask = torch.ones_like(ids)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    samples = []
    with torch.inference_mode():
        for i in range(args.warmup + args.iters):
            if device.type == "cuda":
                start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                out = model(input_ids=ids, attention_mask=mask).last_hidden_state
                stop.record()
                stop.synchronize()
                ms = start.elapsed_time(stop)
            else:
                t = time.perf_counter()
                out = model(input_ids=ids, attention_mask=mask).last_hidden_state
                ms = 1e3 * (time.perf_counter() - t)
            if i >= args.warmup:
                samples.append(ms)
    assert torch.isfinite(out.float()).all(), "transformers' output holds NaN or Inf"
    peak = int(torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else None
    ms = statistics.median(samples)
    flop = encode_flop(cfg, args.tokens)
    key = f"text.umt5_{args.config}.encode_{args.tokens}"
    results = {
        key: {"ms": ms, "samples_ms": samples, "tokens": args.tokens, "iters": args.iters, "warmup": args.warmup,
              "flop": flop, "tflops": flop / (ms * 1e-3) / 1e12, "weight_bytes": weight_bytes, "peak_bytes": peak,
              "output_rms": float(out.float().pow(2).mean().sqrt()), "attn_implementation": attn,
              "weights": "resident on the device, bf16 (every module)"},
        f"text.umt5_{args.config}.build": {"ms": build_ms,
                                            "what": "UMT5EncoderModel(config) built on the device with its init"},
    }
    gpu = torch.cuda.get_device_properties(device) if device.type == "cuda" else None
    doc = {"tool": "bench/reference/umt5_reference.py", "implementation": "transformers",
           "gpu": gpu.name if gpu else "none", "gpu_memory_bytes": gpu.total_memory if gpu else 0,
           "commit": commit(), "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "torch": torch.__version__, "transformers": transformers.__version__, "dtype": "bf16",
           "attn_implementation": attn, "seed": args.seed, "results": results}
    print(f"\n{'item':34} {'median ms':>12} {'peak GiB':>9}   (transformers {transformers.__version__}, "
          f"{doc['gpu']}, attention {attn})")
    for k, v in results.items():
        p = v.get("peak_bytes")
        print(f"{k:34} {v['ms']:12.2f} {(p or 0) / 2**30:9.2f}" +
              (f"   {v['tflops']:.0f} TFLOP/s" if "tflops" in v else ""))
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json + ".tmp", "w") as fh:
            json.dump(doc, fh, indent=1)
        os.replace(args.json + ".tmp", args.json)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""One forward of the real 1.3B shape through Self-Forcing's CausalWanModel, as an oracle for the CUDA model.

    python3 tools/wan_reference_forward.py --out out/ref_forward              # GPU machine: 1.3B, 480p latents
    python3 tools/wan_reference_forward.py --device cpu --config tiny --height 4 --width 6 --out /tmp/rf

Builds the reference CausalWanModel (commit 33593df, imported from --ref with the stand-ins of
tools/sf_ref.py) with seeded random weights (tools/sf_ref.py dit_random_: scaled like a trained network,
rounded to bf16 values), then replays one sequence of forwards over one KV cache (local_attn_size 21,
sink 0, absolute RoPE; the cache laid out as Self-Forcing's pipeline allocates it), twice: in float32
(TF32 off: the oracle) and in bfloat16 (what Self-Forcing runs; its distance to the fp32 output is the
yardstick for a bf16 engine). The sequence, with F = 3 latent frames per call:

  call 0             "empty"   frames 0..2 at t = 1000 with an empty cache
  call 1             "clean0"  frames 0..2 at t = 0 (the chunk's clean pass rewrites its K/V)
  calls 2..P         "cleanK"  frames 3K..3K+2 at t = 0: the cache fills to 3P frames (P = --prefill-chunks)
  call P+1           "full"    frames 3P..3P+2 at t = 1000 over the 3P cached frames (P = 6: a full window)
  call P+2           "step"    the same frames at t = 937.5 (the next denoising step rewrites them)

Every call's input x is N(0, 1) latents [3, 16, H, W]; every output is kept. The timesteps are the
scheduler's warped values. --out DIR receives:

  weights.safetensors   every DiT tensor under its original Wan name, BF16, __metadata__["config"] (Wan
                        config.json names), what runtime/model/wan_weights.cpp reads
  prompt.safetensors    `context` [L, text_dim] F32 (N(0, 1); the model zero-pads it to text_len)
  forward.safetensors   per call i: `x.<i>` [3, 16, H, W], `t.<i>` [3], `out_fp32.<i>` and `out_bf16.<i>`
                        [3, 16, H, W] (the predicted flow), all F32; __metadata__["case"] lists the calls
                        (label, start_frame, frames, t) and the cache settings
  report.json           bf16 vs fp32 relative error and max abs per call, timings, versions

bench/reference_check.cpp replays the calls through longroll's CUDA model and compares.
"""

import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sf_ref  # noqa: E402


def make_calls(steps, prefill_chunks, latent_shape, seed):
    """The call list (see the module docstring) with seeded inputs."""
    g = torch.Generator().manual_seed(seed)
    F = sf_ref.FRAMES_PER_CHUNK
    t_first, t_second = float(steps[0]), float(steps[1])
    calls = [dict(label="empty", start_frame=0, t=t_first)]
    calls += [dict(label=f"clean{k}", start_frame=F * k, t=float(sf_ref.CONTEXT_NOISE)) for k in range(prefill_chunks)]
    calls += [dict(label="full", start_frame=F * prefill_chunks, t=t_first),
              dict(label="step", start_frame=F * prefill_chunks, t=t_second)]
    for c in calls:
        c["frames"] = F
        c["x"] = torch.randn([F, *latent_shape], generator=g)
        c["t_tensor"] = torch.full([F], c["t"], dtype=torch.float32)
    return calls


def run_sequence(model, cfg, calls, context, latent_hw, window, dtype, device):
    """Runs the calls in order over fresh caches; returns the outputs [3, C, H, W] as F32 on the CPU."""
    fs = sf_ref.tokens_per_frame(cfg, *latent_hw)
    kv = sf_ref.alloc_kv_cache(cfg, window * fs, dtype, device)
    xa = sf_ref.alloc_crossattn_cache(cfg, dtype, device)
    sf_ref.set_max_attention_size(model, window * fs)
    ctx = context.to(device=device, dtype=dtype)[None]
    outs, times = [], []
    with torch.no_grad():
        for c in calls:
            x = c["x"].to(device=device, dtype=dtype)[None]
            t = c["t_tensor"].to(device)[None]
            t0 = time.perf_counter()
            flow = sf_ref.model_call(model, x, t, ctx, kv, xa, c["start_frame"], fs)
            outs.append(flow[0].float().cpu())
            times.append(time.perf_counter() - t0)
    del kv, xa
    return outs, times


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--ref", default=sf_ref.DEFAULT_REF, help="Self-Forcing checkout or staged copy")
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--config", default="1.3b", choices=["1.3b", "14b", "tiny"])
    ap.add_argument("--height", type=int, default=60, help="latent rows (480p: 60)")
    ap.add_argument("--width", type=int, default=104, help="latent columns (832: 104)")
    ap.add_argument("--prefill-chunks", type=int, default=6, help="clean chunks cached before the 'full' call")
    ap.add_argument("--window", type=int, default=21, help="local_attn_size (frames in the KV cache)")
    ap.add_argument("--context-len", type=int, default=120, help="prompt tokens (<= text_len)")
    ap.add_argument("--dtypes", default="fp32,bf16", help="which reference runs: fp32, bf16")
    ap.add_argument("--seed", type=int, default=20260502)
    a = ap.parse_args()

    device = torch.device(a.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("wan_reference_forward.py: no CUDA device (use --device cpu --config tiny to test)")
    cfg = {"1.3b": sf_ref.WAN_1_3B, "14b": sf_ref.WAN_14B, "tiny": sf_ref.WAN_TINY}[a.config]
    F = sf_ref.FRAMES_PER_CHUNK
    if a.window < F:
        raise SystemExit(f"--window must be at least {F} frames")
    if a.window < F * (a.prefill_chunks + 1):
        print(f"note: window {a.window} < {F * (a.prefill_chunks + 1)} frames: the 'full' call evicts", file=sys.stderr)
    if a.height % cfg["patch_size"][1] or a.width % cfg["patch_size"][2]:
        raise SystemExit("--height/--width must be multiples of the patch size (2)")
    if not 0 < a.context_len <= cfg["text_len"]:
        raise SystemExit(f"--context-len must be in 1..{cfg['text_len']}")
    # The fp32 oracle must not fall back to TF32 anywhere (matmuls, the patch-embedding Conv3d).
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    os.makedirs(a.out, exist_ok=True)
    out = lambda name: os.path.join(a.out, name)  # noqa: E731

    ns = sf_ref.load_self_forcing(a.ref)
    t_start = time.perf_counter()
    model = sf_ref.make_causal_wan(ns, cfg, a.window, 0, device)
    sf_ref.dit_random_(model, a.seed, gen_device="cpu", round_bf16=True)
    cfg_json = {k: cfg[k] for k in sf_ref.CONFIG_KEYS}
    provenance = {"generator": "tools/wan_reference_forward.py", "torch": torch.__version__,
                  "self_forcing": {"commit": sf_ref.SELF_FORCING_COMMIT, "sha256_16": ns.sha256_16},
                  "stand_ins": ns.stubs, "seed": a.seed,
                  "weights": "tools/sf_ref.py dit_random_: Linear/Conv N(0, 1/fan_in), biases N(0, 0.02^2), "
                             "norm gains 1 + N(0, 0.1^2), modulation N(0, 0.1^2), rounded to bf16"}
    sf_ref.save_safetensors(out("weights.safetensors"),
                            {k: v.to(torch.bfloat16) for k, v in model.state_dict().items()},
                            {"config": cfg_json, "provenance": provenance})
    t_weights = time.perf_counter() - t_start

    g = torch.Generator().manual_seed(a.seed + 1)
    context = torch.randn([a.context_len, cfg["text_dim"]], generator=g)
    sf_ref.save_safetensors(out("prompt.safetensors"), {"context": context}, {"provenance": provenance})
    _, steps = sf_ref.make_scheduler(ns)
    calls = make_calls(steps, a.prefill_chunks, (cfg["in_dim"], a.height, a.width), a.seed + 2)

    results, timings = {}, {}
    for name in a.dtypes.split(","):
        dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[name]
        model = model.to(dtype)
        outs, times = run_sequence(model, cfg, calls, context, (a.height, a.width), a.window, dtype, device)
        results[name], timings[name] = outs, times
        print(f"[wan_reference_forward] {name}: {len(calls)} forwards, {sum(times):.1f} s", file=sys.stderr)

    tensors, report = {}, {"calls": {}}
    for i, c in enumerate(calls):
        tensors[f"x.{i}"] = c["x"]
        tensors[f"t.{i}"] = c["t_tensor"]
        for name, outs in results.items():
            tensors[f"out_{name}.{i}"] = outs[i]
        entry = {"label": c["label"], "start_frame": c["start_frame"], "t": c["t"]}
        for name, outs in results.items():
            entry[f"{name}_rms"] = float(outs[i].double().pow(2).mean().sqrt())
            entry[f"{name}_seconds"] = round(timings[name][i], 4)
        if "fp32" in results and "bf16" in results:
            entry["bf16_vs_fp32_rel"], entry["bf16_vs_fp32_maxabs"] = sf_ref.rel_err(results["bf16"][i],
                                                                                      results["fp32"][i])
        report["calls"][str(i)] = entry
    case = {"calls": [{k: c[k] for k in ("label", "start_frame", "frames", "t")} for c in calls],
            "latent_height": a.height, "latent_width": a.width, "channels": cfg["in_dim"],
            "local_attn_size": a.window, "sink_size": 0, "rope_mode": "absolute",
            "kv_cache_frames": a.window, "weights": "weights.safetensors", "prompt": "prompt.safetensors",
            "outputs": sorted(results), "config": cfg_json,
            "note": "replay the calls in order over one KV cache; out_<dtype>.<i> is the flow of call i"}
    sf_ref.save_safetensors(out("forward.safetensors"), tensors, {"case": case, "provenance": provenance})
    report.update(case=case, provenance=provenance, weights_seconds=round(t_weights, 1),
                  device=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu")
    with open(out("report.json") + ".tmp", "w") as fh:
        json.dump(report, fh, indent=1)
        fh.write("\n")
    os.replace(out("report.json") + ".tmp", out("report.json"))
    for i, e in report["calls"].items():
        rel = f"bf16 vs fp32 rel {e['bf16_vs_fp32_rel']:.3e}" if "bf16_vs_fp32_rel" in e else ""
        rms = e.get("fp32_rms", e.get("bf16_rms"))
        print(f"call {i:>2} {e['label']:7s} start {e['start_frame']:3d} t {e['t']:7.2f}  out rms {rms:.4f}  {rel}")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()

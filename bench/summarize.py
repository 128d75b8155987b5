#!/usr/bin/env python3
"""Merges one GPU run's benchmark JSON files into bench/results/cuda_<gpu>_<date>.json, with the ratios of longroll
to the PyTorch reference measured in the same run and the issue's targets, and prints a summary table.

    python3 bench/summarize.py --dir OUT [--results-dir bench/results] [--commit SHA]

Reads from --dir whichever of these exist (bench/run_gpu.sh writes them):
  sf_reference.json      bench/reference/sf_reference.py   the yardstick (Self-Forcing PyTorch, same GPU)
  dit_bench.json         bench/dit_bench                   DiT chunk step
  vae_bench.json         bench/vae_bench                   VAE chunk decode
  e2e_bench.json         bench/e2e_bench                   DiT + VAE + encoding at 480p
  reference_check.json   bench/reference_check             1.3B forward vs the PyTorch reference
  attention_bench.json, attention_sdpa.json                paged attention vs torch SDPA (another helper's)
  ctest_gpu.json         bench/run_gpu.sh                  the gpu ctest label's counts

Targets (the CUDA issue): DiT chunk with a full 21-frame window <= 0.75x the reference at 480p and <= 1.0x at 1088p;
VAE chunk decode <= 0.7x at 480p and 1088p (against the reference's decode alone; the ratio against its decode +
uint8 + copy to host, which is the same work as longroll's figure, is listed beside it); end to end at 480p >= 20
video FPS sustained; 1088p with a 21-frame window fits one 80 GB GPU (DiT peak + VAE peak <= 80e9 bytes);
peak GPU memory reported for each. A check whose longroll or reference figure is absent is listed as [missing].
Only standard-library Python.
"""

import argparse
import datetime
import json
import os
import re
import sys

FILES = ["sf_reference", "dit_bench", "vae_bench", "e2e_bench", "reference_check", "attention_bench",
         "attention_sdpa", "ctest_gpu"]
# (longroll item, reference item, reference field, bound); ratio = longroll ms / reference ms
RATIO_TARGETS = [
    ("dit.full_window_chunk.480p", "dit.full_window_chunk.480p", "ms", 0.75),
    ("dit.full_window_chunk.1088p", "dit.full_window_chunk.1088p", "ms", 1.0),
    ("dit.first_chunk.480p", "dit.first_chunk.480p", "ms", None),
    ("dit.first_chunk.1088p", "dit.first_chunk.1088p", "ms", None),
    ("dit14b.full_window_chunk.480p", "dit14b.full_window_chunk.480p", "ms", None),
    ("vae.decode_chunk.480p", "vae.decode_chunk.480p", "ms", 0.7),
    ("vae.decode_chunk.1088p", "vae.decode_chunk.1088p", "ms", 0.7),
]
E2E_FPS_TARGET = 20.0
FIT_BYTES = 80e9


def load(d, name):
    p = os.path.join(d, name + ".json")
    if not os.path.exists(p):
        return None
    with open(p) as fh:
        try:
            return json.load(fh)
        except json.JSONDecodeError as e:
            print(f"summarize: {p}: {e}", file=sys.stderr)
            return None


def slug(name):
    s = re.sub(r"[^a-z0-9]+", "_", name.lower().replace("nvidia", "")).strip("_")
    return s or "unknown"


def gib(b):
    return None if b is None else b / 2**30


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--dir", required=True, help="directory with the run's JSON files")
    ap.add_argument("--results-dir", default=None, help="write cuda_<gpu>_<date>.json here (default: --dir)")
    ap.add_argument("--out", default=None, help="exact output file (overrides --results-dir)")
    ap.add_argument("--commit", default=None, help="default: the benches' commit field, else $LONGROLL_COMMIT")
    ap.add_argument("--date", default=None, help="YYYYMMDD (default: today, UTC)")
    a = ap.parse_args()

    docs = {n: load(a.dir, n) for n in FILES}
    ref = (docs["sf_reference"] or {}).get("results", {})
    ours = {}
    for n in ("dit_bench", "vae_bench", "e2e_bench"):
        ours.update((docs[n] or {}).get("results", {}))
    gpu = next((d["gpu"] for d in docs.values() if isinstance(d, dict) and d.get("gpu") and d["gpu"] != "none"),
               "unknown GPU")
    commits = {d.get("commit") for n, d in docs.items() if isinstance(d, dict) and d.get("commit")
               and n in ("dit_bench", "vae_bench", "e2e_bench", "reference_check")}
    commits.discard("unknown")
    commit = a.commit or (sorted(commits)[0] if len(commits) == 1 else None) or os.environ.get("LONGROLL_COMMIT") \
        or ("mixed: " + ", ".join(sorted(commits)) if commits else "unknown")
    date = a.date or datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d")

    rows, checks = [], []
    for ours_key, ref_key, field, bound in RATIO_TARGETS:
        o, r = ours.get(ours_key), ref.get(ref_key)
        if o is None and r is None:
            continue
        row = {"item": ours_key, "longroll_ms": o and o.get("ms"), "reference_ms": r and r.get(field),
               "longroll_peak_bytes": o and o.get("peak_bytes"), "reference_peak_bytes": r and r.get("peak_bytes")}
        if row["longroll_ms"] and row["reference_ms"]:
            row["ratio"] = row["longroll_ms"] / row["reference_ms"]
        if r and o and "ms_to_host_u8" in r:
            row["reference_ms_to_host_u8"] = r["ms_to_host_u8"]
            row["ratio_vs_to_host_u8"] = o["ms"] / r["ms_to_host_u8"]
        if bound is not None:
            row["target"] = f"<= {bound}x"
            row["pass"] = None if row.get("ratio") is None else row["ratio"] <= bound  # None: a side is missing
            checks.append((f"{ours_key} ratio {row['target']}", row["pass"]))
        rows.append(row)

    e2e = ours.get("e2e.480p")
    e2e_row = None
    if e2e is not None:
        e2e_row = {"item": "e2e.480p", "fps_sustained": e2e.get("fps_sustained"),
                   "fps_median_chunk": e2e.get("fps_median_chunk"), "fps_overall": e2e.get("fps_overall"),
                   "dit_ms_median": e2e.get("dit_ms_median"), "vae_ms_median": e2e.get("vae_ms_median"),
                   "output": e2e.get("output"), "peak_bytes": e2e.get("peak_bytes"),
                   "target": f">= {E2E_FPS_TARGET} fps"}
        ref_dit, ref_vae = ref.get("dit.full_window_chunk.480p"), ref.get("vae.decode_chunk.480p")
        if ref_dit and ref_vae:  # the reference, run serially (no overlap, no encoding): 12 frames per chunk
            e2e_row["reference_fps_dit_plus_vae"] = 12e3 / (ref_dit["ms"] + ref_vae["ms_to_host_u8"])
        e2e_row["pass"] = (e2e.get("fps_sustained") or 0) >= E2E_FPS_TARGET
        checks.append((f"e2e.480p sustained fps >= {E2E_FPS_TARGET}", e2e_row["pass"]))

    fit = None
    dit1088, vae1088 = ours.get("dit.full_window_chunk.1088p"), ours.get("vae.decode_chunk.1088p")
    if dit1088 and vae1088 and dit1088.get("peak_bytes") is not None and vae1088.get("peak_bytes") is not None:
        total = dit1088["peak_bytes"] + vae1088["peak_bytes"]
        fit = {"dit_peak_bytes": dit1088["peak_bytes"], "vae_peak_bytes": vae1088["peak_bytes"], "total_bytes": total,
               "bound_bytes": FIT_BYTES, "pass": total <= FIT_BYTES,
               "note": "the two separate processes' device memory (cudaMemGetInfo deltas, contexts excluded)"}
        checks.append(("1088p DiT + VAE fit in 80 GB", fit["pass"]))

    rc = docs["reference_check"]
    check = None
    if rc is not None:
        check = {k: rc.get(k) for k in ("pass", "worst_rel_err", "max_rel_err", "judged_against", "backend",
                                         "latent_height", "latent_width")}
        check["calls"] = {k: {f: v.get(f) for f in ("label", "rel_err_vs_fp32", "rel_err_vs_bf16",
                                                    "reference_bf16_vs_fp32")}
                          for k, v in rc.get("results", {}).items()}
        checks.append((f"1.3B forward vs PyTorch fp32 (rel err <= {rc.get('max_rel_err')})", bool(rc.get("pass"))))

    attention = []
    ab, sd = docs["attention_bench"], docs["attention_sdpa"]
    if ab and sd:
        sdpa_ms = {c["name"]: c.get("ms") for c in sd.get("cases", [])}
        for c in ab.get("cases", []):
            e = {"name": c.get("name"), "longroll_ms": c.get("ms"), "tflops": c.get("tflops")}
            if c.get("table") == "dense" and sdpa_ms.get(c.get("resolution")):
                e["sdpa_ms"] = sdpa_ms[c["resolution"]]
                e["ratio_vs_sdpa_dense"] = c["ms"] / e["sdpa_ms"]
            attention.append(e)

    tests = docs["ctest_gpu"]
    if tests is not None:
        checks.append((f"ctest -L gpu ({tests.get('passed')}/{tests.get('total')} passed)", tests.get("failed") == 0))

    merged = {
        "gpu": gpu, "commit": commit, "date": date,
        "torch": (docs["sf_reference"] or {}).get("torch"),
        "reference": (docs["sf_reference"] or {}).get("implementation"),
        "ratios": rows, "e2e": e2e_row, "fits_80gb_1088p": fit, "reference_check": check, "attention": attention,
        "tests": tests, "checks": [{"check": c, "pass": p} for c, p in checks],
        "sources": {n: d for n, d in docs.items() if d is not None},
    }
    out = a.out or os.path.join(a.results_dir or a.dir, f"cuda_{slug(gpu)}_{date}.json")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out + ".tmp", "w") as fh:
        json.dump(merged, fh, indent=1)
        fh.write("\n")
    os.replace(out + ".tmp", out)

    def f(v, fmt):
        return format(v, fmt) if isinstance(v, (int, float)) else "-"

    print(f"\n{gpu}, commit {commit}, torch {merged['torch'] or '-'}")
    print(f"{'item':32s} {'longroll ms':>11s} {'ref ms':>10s} {'ratio':>7s} {'target':>8s} {'ok':>4s} "
          f"{'peak GiB lr':>11s} {'peak GiB ref':>12s}")
    for r in rows:
        ok = "-" if r.get("pass") is None else ("yes" if r["pass"] else "NO")
        print(f"{r['item']:32s} {f(r['longroll_ms'], '11.1f')} {f(r['reference_ms'], '10.1f')} "
              f"{f(r.get('ratio'), '7.3f')} {r.get('target', ''):>8s} {ok:>4s} "
              f"{f(gib(r['longroll_peak_bytes']), '11.2f')} {f(gib(r['reference_peak_bytes']), '12.2f')}")
        if "ratio_vs_to_host_u8" in r:
            print(f"{'  (ref decode+u8+to host)':32s} {'':11s} {f(r['reference_ms_to_host_u8'], '10.1f')} "
                  f"{f(r['ratio_vs_to_host_u8'], '7.3f')}")
    if e2e_row:
        print(f"e2e.480p: {f(e2e_row['fps_sustained'], '.1f')} fps sustained (median chunk "
              f"{f(e2e_row['fps_median_chunk'], '.1f')}, overall {f(e2e_row['fps_overall'], '.1f')}; target "
              f">= {E2E_FPS_TARGET}), peak {f(gib(e2e_row['peak_bytes']), '.2f')} GiB, {e2e_row.get('output')}; "
              f"reference DiT+VAE serial {f(e2e_row.get('reference_fps_dit_plus_vae'), '.1f')} fps")
    if fit:
        print(f"1088p fit: DiT {gib(fit['dit_peak_bytes']):.2f} + VAE {gib(fit['vae_peak_bytes']):.2f} = "
              f"{fit['total_bytes'] / 1e9:.1f} GB (<= 80 GB: {'yes' if fit['pass'] else 'NO'})")
    if check:
        print(f"reference check: worst rel err {f(check['worst_rel_err'], '.3e')} vs {check['judged_against']} "
              f"(bound {check['max_rel_err']}): {'PASS' if check['pass'] else 'FAIL'}")
    for e in attention:
        if "ratio_vs_sdpa_dense" in e:
            print(f"attention {e['name']}: {e['longroll_ms']:.2f} ms vs SDPA {e['sdpa_ms']:.2f} ms "
                  f"(ratio {e['ratio_vs_sdpa_dense']:.2f})")
    print("checks:")
    for c, p in checks:
        print(f"  [{'missing' if p is None else 'pass' if p else 'FAIL'}] {c}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""The quality harness: attention policies judged on the trained default model (models/tiny-shapes/).

    python3 bench/quality/run_quality.py --longroll build/launch/longroll --policies DENSE,SINK_WINDOW \
        --seconds 5 --out bench/results/quality_cpu.json
    python3 bench/quality/run_quality.py ... --policies DENSE,SINK_WINDOW,SPARSE_FORCING,LIGHT_FORCING,FORCING_KV,LVSA \
        --seconds 5,60 --device cuda

For every (caption, seed) of a fixed list and every length, runs `longroll generate` on the embedded default
model once per policy (`--set attention.policy=X`, plus any --set / --policy-set given here; FORCING_KV gets a
head profile from `longroll profile-heads` and its own window), on the same noise (same seed), and reports
against the DENSE run of the same inputs:
  * psnr_db / ssim: of the decoded frames' luma (SSIM with an 8x8 box window), averaged over frames;
  * latent_rel_err: ||latents - dense|| / ||dense||;
  * caption: bench/quality/caption_check.py on the video (dominant colour and direction as captioned);
  * drift: the object still there in the last quarter (presence >= 30% of the first quarter's) and still
    moving (>= 0.5 px/frame in the last quarter): no freeze, no colour collapse;
  * kv_bytes: the KV cache the run planned (from generate's summary), wall seconds.
DENSE must come first (it is the reference). Needs numpy. Writes one JSON file and prints a table.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(REPO, "tools", "train"))
import caption_check  # noqa: E402
import caption_embeds  # noqa: E402

CAPTIONS = ["a red square moves right over a checkered floor", "a blue circle moves left over a striped wall",
            "a green triangle moves down over a dotted carpet", "a yellow square moves up over a plain ground"]
SEEDS = [1, 2]


def read_y4m_luma(path):
    """[T, H, W] float32 luma of a Y4M file."""
    with open(path, "rb") as f:
        header = f.readline().decode().split()
        w = int(next(t[1:] for t in header if t[0] == "W"))
        h = int(next(t[1:] for t in header if t[0] == "H"))
        cs = next((t[1:] for t in header if t[0] == "C"), "420jpeg")
        chroma = 2 * w * h if cs.startswith("444") else 2 * (w // 2) * (h // 2)
        frames = []
        while f.readline():
            y = f.read(w * h)
            f.read(chroma)
            if len(y) < w * h:
                break
            frames.append(np.frombuffer(y, dtype=np.uint8).reshape(h, w).astype(np.float32))
    return np.stack(frames)


def psnr(a, b):
    mse = float(np.mean((a - b) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def box(x, k=8):
    """Mean over k x k windows (valid positions), through 2D cumulative sums."""
    c = np.cumsum(np.cumsum(np.pad(x, ((1, 0), (1, 0))), 0), 1)
    return (c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k]) / (k * k)


def ssim(a, b):
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    ma, mb = box(a), box(b)
    va, vb, cov = box(a * a) - ma * ma, box(b * b) - mb * mb, box(a * b) - ma * mb
    s = ((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma * ma + mb * mb + c1) * (va + vb + c2))
    return float(s.mean())


def read_latents(path):
    import struct
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    e = header["latents"]
    b, end = e["data_offsets"]
    return np.frombuffer(data[b:end], dtype=np.float32).reshape(e["shape"])


def kv_bytes(log):
    m = re.search(r"KV cache ([0-9.]+) (KiB|MiB|GiB)", log)
    if not m:
        return None
    return int(float(m.group(1)) * {"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}[m.group(2)])


def run(a, caption, seed, seconds, policy, work):
    key = "_".join(caption.split()[1:5])
    tag = f"{policy}_{key}_s{seed}_{seconds}s"
    prompt = os.path.join(work, f"prompt_{key}.safetensors")
    if not os.path.exists(prompt):
        vocab, table, dim, _ = caption_embeds.read_table(a.model)
        caption_embeds.write_context(prompt, [table[vocab.index(w)] for w in caption.split()], dim)
    video, lat = os.path.join(work, tag + ".y4m"), os.path.join(work, tag + ".safetensors")
    cmd = [a.longroll, "generate", "--prompt-embeds", prompt, "--seed", str(seed), "--seconds", str(seconds),
           "--set", f"attention.policy={policy}", "--out", video, "--save-latents", lat]
    if a.device:
        cmd += ["--device", a.device]
    for s in a.set + policy_sets(a, policy, work):
        cmd += ["--set", s]
    env = dict(os.environ, LONGROLL_DEFAULT_MODEL=a.model)
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.time() - t0
    if p.returncode != 0:
        return {"policy": policy, "error": f"exit {p.returncode}: {p.stderr.strip()[-400:]}"}
    return {"policy": policy, "video": video, "latents": lat, "wall_s": round(wall, 2), "kv_bytes": kv_bytes(p.stderr)}


def policy_sets(a, policy, work):
    """--set values for one policy: --policy-set POLICY:PATH=VALUE given here, and for FORCING_KV (unless given) a
    head profile of the model made once with `longroll profile-heads` and the window it sets itself (-1)."""
    sets = [v.split(":", 1)[1] for v in a.policy_set if v.split(":", 1)[0].upper() == policy]
    if policy == "FORCING_KV":
        if not any(v.startswith("attention.forcing_kv.head_profile=") for v in sets):
            profile = os.path.join(work, "head_profile.json")
            if not os.path.exists(profile):
                env = dict(os.environ, LONGROLL_DEFAULT_MODEL=a.model)
                p = subprocess.run([a.longroll, "profile-heads", "--out", profile], capture_output=True, text=True,
                                   env=env)
                if p.returncode != 0:
                    print(f"profile-heads failed: {p.stderr.strip()[-400:]}", file=sys.stderr)
            sets.append(f"attention.forcing_kv.head_profile={profile}")
        if not any(v.startswith("rollout.local_attn_size=") for v in sets):
            sets.append("rollout.local_attn_size=-1")
    return sets


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--longroll", default=os.path.join(REPO, "build", "launch", "longroll"))
    ap.add_argument("--model", default=os.path.join(REPO, "models", "tiny-shapes"))
    ap.add_argument("--policies", default="DENSE,SINK_WINDOW")
    ap.add_argument("--seconds", default="5", help="comma-separated video lengths")
    ap.add_argument("--captions", type=int, default=len(CAPTIONS), help="how many of the fixed captions")
    ap.add_argument("--seeds", default=",".join(str(s) for s in SEEDS))
    ap.add_argument("--device", default=None, help="cpu or cuda (default: generate's)")
    ap.add_argument("--set", action="append", default=[], help="extra --set for every run (all policies)")
    ap.add_argument("--policy-set", action="append", default=[], metavar="POLICY:PATH=VALUE",
                    help="an extra --set for one policy's runs only (repeatable)")
    ap.add_argument("--work", default=None, help="keep the videos here (default: a temporary directory)")
    ap.add_argument("--out", required=True, help="JSON results")
    a = ap.parse_args()
    policies = [p.strip().upper() for p in a.policies.split(",") if p.strip()]
    if policies[0] != "DENSE":
        policies = ["DENSE"] + [p for p in policies if p != "DENSE"]
    work = a.work or tempfile.mkdtemp(prefix="lr_quality_")
    os.makedirs(work, exist_ok=True)
    rows = []
    for seconds in [float(s) for s in a.seconds.split(",")]:
        secs = int(seconds) if seconds == int(seconds) else seconds
        for caption in CAPTIONS[:a.captions]:
            for seed in [int(s) for s in a.seeds.split(",")]:
                ref = None
                for policy in policies:
                    r = run(a, caption, seed, secs, policy, work)
                    r.update(caption=caption, seed=seed, seconds=secs)
                    if "error" not in r:
                        luma = read_y4m_luma(r["video"])
                        lat = read_latents(r["latents"])
                        if ref is None:
                            ref = (luma, lat)
                        r["psnr_db"] = round(float(np.mean([psnr(x, y) for x, y in zip(luma, ref[0])])), 2)
                        r["ssim"] = round(float(np.mean([ssim(x, y) for x, y in zip(luma, ref[0])])), 4)
                        r["latent_rel_err"] = float(np.linalg.norm(lat - ref[1]) / np.linalg.norm(ref[1]))
                        c = caption_check.check(r["video"], caption)
                        r["caption_ok"] = c["ok"]
                        r["caption"] = {k: c[k] for k in ("dominant_colour", "colour_share", "direction",
                                                          "speed_px_per_frame")}
                        present = c["presence_last_quarter"] >= 0.3 * max(c["presence_first_quarter"], 1e-6)
                        moving = c["speed_last_quarter"] >= 0.5
                        r["drift"] = {"present_at_end": present, "moving_at_end": moving,
                                      "presence_first_quarter": c["presence_first_quarter"],
                                      "presence_last_quarter": c["presence_last_quarter"],
                                      "speed_last_quarter": c["speed_last_quarter"]}
                        r["drift_ok"] = present and moving
                        if not a.work:
                            os.remove(r["video"])
                            os.remove(r["latents"])
                        r.pop("video")
                        r.pop("latents")
                    elif policy == "DENSE":
                        print(f"DENSE failed: {r['error']}", file=sys.stderr)
                        return 1
                    rows.append(r)
                    print(json.dumps(r), flush=True)
    # Summary per (seconds, policy).
    summary = []
    for secs in sorted({r["seconds"] for r in rows}):
        for policy in policies:
            rs = [r for r in rows if r["seconds"] == secs and r["policy"] == policy and "error" not in r]
            errs = [r for r in rows if r["seconds"] == secs and r["policy"] == policy and "error" in r]
            if not rs:
                summary.append({"seconds": secs, "policy": policy, "runs": 0, "errors": len(errs),
                                "error": errs[0]["error"] if errs else None})
                continue
            summary.append({"seconds": secs, "policy": policy, "runs": len(rs), "errors": len(errs),
                            "psnr_db": round(float(np.mean([r["psnr_db"] for r in rs])), 2),
                            "ssim": round(float(np.mean([r["ssim"] for r in rs])), 4),
                            "latent_rel_err": round(float(np.mean([r["latent_rel_err"] for r in rs])), 5),
                            "caption_pass": f"{sum(r['caption_ok'] for r in rs)}/{len(rs)}",
                            "drift_pass": f"{sum(r['drift_ok'] for r in rs)}/{len(rs)}",
                            "kv_mib": round(float(np.mean([r["kv_bytes"] or 0 for r in rs])) / 2 ** 20, 2),
                            "wall_s": round(float(np.mean([r["wall_s"] for r in rs])), 2)})
    out = {"model": a.model, "device": a.device or "default", "extra_set": a.set, "captions": CAPTIONS[:a.captions],
           "seeds": a.seeds, "summary": summary, "runs": rows}
    with open(a.out + ".tmp", "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    os.replace(a.out + ".tmp", a.out)
    cols = ["seconds", "policy", "runs", "psnr_db", "ssim", "latent_rel_err", "caption_pass", "drift_pass", "kv_mib",
            "wall_s"]
    print(" | ".join(cols))
    for s in summary:
        if s["runs"]:
            print(" | ".join(str(s.get(c, "-")) for c in cols))
        else:
            print(f"{s['seconds']} | {s['policy']} | 0 | failed: {(s.get('error') or '?').splitlines()[0][:160]}")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

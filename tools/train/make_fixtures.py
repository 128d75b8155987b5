#!/usr/bin/env python3
"""The parity fixture of the shipped default model: the training code's own sampler (sample.py) on fixed noise,
for tests/cli/test_default_model.sh to replay through `longroll generate --noise ... --save-latents ...`.

    python3 tools/train/make_fixtures.py                 # models/tiny-shapes -> tests/data/tiny_shapes/

Writes replay.safetensors (the model's sampler) and replay_euler.safetensors (the same noise through the Euler
sampler, rollout.sampler EULER), each with: `noise` [T, 16, h, w] and `step_noise` [steps - 1, T, 16, h, w] (BF16: values the
engine and the sampler both read exactly), `latents` [T, 16, h, w] F32 (the sampler's output, fp32 CPU, float64
where the reference has it), `context` (the caption's prompt embedding, F32); __metadata__["case"]: the caption,
frame size, latent frames and the sha256 of the model files it was made from (the test refuses a stale fixture).
T = 12 latent frames (4 chunks: the KV window of 9 frames evicts) at 160x96 (the model runs at any size; a
small one keeps the file and the test small). Needs torch; CI only reads the result.
"""

import argparse
import hashlib
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sample  # noqa: E402
import shipped  # noqa: E402

LATENT_FRAMES, WIDTH, HEIGHT, SEED = 12, 160, 96, 20261207


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=shipped.DEFAULT_DIR)
    ap.add_argument("--out", default=os.path.join(shipped.REPO, "tests", "data", "tiny_shapes"))
    ap.add_argument("--size", default=f"{WIDTH}x{HEIGHT}", help="WxH of the replayed video")
    a = ap.parse_args()
    width, height = (int(v) for v in a.size.split("x"))
    torch.set_grad_enabled(False)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    m = shipped.load(a.model)
    r = m.rollout
    caption = m.default_caption
    ctx = m.context(caption)
    noise, step_noise = sample.make_noise(SEED, r["denoising_steps"], LATENT_FRAMES, (16, height // 8, width // 8))
    noise, step_noise = noise.to(torch.bfloat16), step_noise.to(torch.bfloat16)
    os.makedirs(a.out, exist_ok=True)
    model_sampler = r.get("sampler", "SELF_FORCING")
    for name, kind in (("replay", model_sampler), ("replay_euler", "EULER")):
        lat = sample.rollout(m.dit, ctx, noise.float(), step_noise.float(), r["denoising_steps"], r["timestep_shift"],
                             r["local_attn_size"], r["frames_per_chunk"], sampler=kind)
        case = {"caption": caption, "width": width, "height": height, "latent_frames": LATENT_FRAMES, "seed": SEED,
                "rollout": dict(r, sampler=kind), "sampler": "tools/train/sample.py (fp32 CPU)",
                "torch": torch.__version__,
                "model_sha256": {f: sha256(os.path.join(a.model, f)) for f in
                                 ("dit.safetensors", "tiny-shapes.textproto")}}
        shipped.write_safetensors(os.path.join(a.out, f"{name}.safetensors"),
                                  {"noise": noise, "step_noise": step_noise, "latents": lat, "context": ctx},
                                  {"case": json.dumps(case, sort_keys=True)})
        print(f"wrote {a.out}/{name}.safetensors ({kind}): {LATENT_FRAMES} latent frames at {width}x{height}, "
              f"latent rms {float(lat.pow(2).mean().sqrt()):.4f}")


if __name__ == "__main__":
    main()

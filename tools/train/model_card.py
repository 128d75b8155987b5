#!/usr/bin/env python3
"""Writes the model card (README.md) of an exported model directory from the training run's logs.

    python3 tools/train/model_card.py --run RUN_DIR --model models/tiny-shapes --gpu "NVIDIA H100 80GB HBM3" \
        --command "python3 tools/train/train.py all --dir /tmp/run --vae-minutes 2.5 --dit-minutes 5.0 --out ..."

RUN_DIR holds vae_log.jsonl and dit_log.jsonl (train.py's loss curves; the exported directory may hold copies).
The card states what the model is, the data, the exact command, steps, wall minutes and final losses, read from
the logs and the exported files' provenance, never typed by hand. Standard library only.
"""

import argparse
import json
import os
import struct
import sys


def read_jsonl(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def safetensors_metadata(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    meta = header.get("__metadata__", {})
    out = {}
    for k, v in meta.items():
        try:
            out[k] = json.loads(v)
        except (TypeError, ValueError):
            out[k] = v
    params = sum(
        int(__import__("math").prod(t["shape"])) for name, t in header.items() if name != "__metadata__")
    return out, params


def summary(log, key):
    if not log:
        return "no log"
    first, last = log[0], log[-1]
    return f"{key} {first[key]:.4g} at step {first['step']} -> {last[key]:.4g} at step {last['step']}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", required=True, help="the training run directory (or the model directory with the logs)")
    ap.add_argument("--model", required=True, help="the exported model directory; README.md is written there")
    ap.add_argument("--gpu", required=True, help="the GPU the run trained on")
    ap.add_argument("--command", required=True, help="the training command, as run")
    ap.add_argument("--commit", default="", help="the commit of tools/train the run used")
    a = ap.parse_args()

    vae_log = read_jsonl(os.path.join(a.run, "vae_log.jsonl"))
    dit_log = read_jsonl(os.path.join(a.run, "dit_log.jsonl"))
    if not vae_log or not dit_log:
        sys.exit(f"model_card: {a.run} has no vae_log.jsonl / dit_log.jsonl")
    dit_meta, dit_params = safetensors_metadata(os.path.join(a.model, "dit.safetensors"))
    vae_meta, vae_params = safetensors_metadata(os.path.join(a.model, "vae.safetensors"))
    cfg = dit_meta.get("config", {})
    rollout = dit_meta.get("rollout", {})
    prov = dit_meta.get("provenance", {})
    minutes = (vae_log[-1]["seconds"] + dit_log[-1]["seconds"]) / 60.0

    card = f"""# tiny-shapes: the embedded default model

A Wan2.1-architecture causal DiT ({cfg.get('num_layers')} layers, dim {cfg.get('dim')}, {cfg.get('num_heads')} heads
of 128, FFN {cfg.get('ffn_dim')}; {dit_params / 1e6:.1f} M parameters) and a tiny Wan VAE decoder
({vae_params / 1e6:.2f} M parameters), trained from scratch in this repository (tools/train/) on procedurally
generated video: one coloured shape (square, circle, triangle; red, green, blue, yellow) moving left, right, up
or down over a textured background (checkered floor, striped wall, dotted carpet, plain ground), with its
caption ("a red square moves right over a checkered floor"). The caption encoder is one learned vector per word
of that grammar (text.safetensors), so `--caption` takes only captions of the grammar.

`longroll generate` with no `--config` and no `--weights` runs it (tiny-shapes.textproto: {rollout.get('width')}x{rollout.get('height')},
{rollout.get('fps')} fps, chunks of {rollout.get('frames_per_chunk')} latent frames, a {rollout.get('local_attn_size')}-frame KV window,
denoising steps {rollout.get('denoising_steps')}, shift {rollout.get('timestep_shift')}).

## Training (read from the run's logs)

- command: `{a.command}`{f' (commit {a.commit})' if a.commit else ''}
- GPU: {a.gpu}; wall time of the two stages: {minutes:.1f} minutes
- VAE: {prov.get('steps', {}).get('vae', vae_log[-1]['step'])} steps; {summary(vae_log, 'mse')}; PSNR (of the object-weighted MSE)
  {vae_log[-1].get('psnr', float('nan')):.1f} dB at the end
- DiT (flow matching, teacher forcing under the rollout's KV window, EMA weights exported):
  {prov.get('steps', {}).get('dit', dit_log[-1]['step'])} steps; {summary(dit_log, 'loss')}
- torch {prov.get('torch', '?')}, seed {prov.get('seed', '?')}

The loss curves are vae_log.jsonl and dit_log.jsonl in this directory.

## What it is for

Showing motion out of the box (the demo), and judging the attention policies on a model whose videos have a
right answer: bench/quality/ checks that the dominant colour and the direction of motion match the caption, over
5 s and 60 s, for every policy against DENSE on the same noise. It is not a general text-to-video model.
"""
    with open(os.path.join(a.model, "README.md"), "w") as f:
        f.write(card)
    print(f"wrote {os.path.join(a.model, 'README.md')}")


if __name__ == "__main__":
    main()

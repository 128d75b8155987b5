"""The training code's own sampler: the Self-Forcing rollout of a CausalWanDiT, chunk by chunk over a KV cache,
with the engine's schedule and noise conventions (DESIGN.md section 4), in fp32 with the float64 parts
(timestep sinusoid, RoPE angles, x0 = x_t - sigma * v) where the reference has them. `--sampler EULER` (or a model
whose rollout has sampler EULER) follows the flow-matching ODE between the timesteps instead of re-noising, as
`longroll generate --set rollout.sampler=EULER` does; `--steps` samples with other denoising steps.

    python3 tools/train/sample.py --model models/tiny-shapes --caption "a red square moves left over a \
        checkered floor" --latent-frames 6 --seed 1 --save-noise noise.safetensors --out latents.safetensors

`--noise FILE` / `--save-noise FILE` use the engine's --noise format (`noise` [T, 16, h, w], `step_noise`
[steps - 1, T, 16, h, w]); `--out` writes `latents` [T, 16, h, w] like `longroll generate --save-latents`, so
the two can be compared exactly (tests/data/tiny_shapes/, tests/cli/test_default_model.sh). `--video FILE.y4m`
also decodes with the shipped VAE decoder (tools/train/wan_vae.py).
"""

import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import procgen  # noqa: E402
import shipped  # noqa: E402
from wan_dit import attend, rope_angles  # noqa: E402


def schedule(steps, shift, num_train_timesteps=1000):
    """(timesteps [len(steps)], sigmas [num_train]) exactly as runtime/rollout/scheduler.cpp builds them in fp32:
    sigma = linspace(1, 0, n + 1)[:-1], shifted s sigma / (1 + (s - 1) sigma), t = 1000 sigma; step s -> t[n - s]."""
    sig = torch.linspace(1.0, 0.0, num_train_timesteps + 1, dtype=torch.float32)[:-1]
    s = torch.tensor(shift, dtype=torch.float32)
    shifted = (s * sig) / (1.0 + (s - 1.0) * sig)
    ts = shifted * float(num_train_timesteps)
    warped = torch.stack([ts[num_train_timesteps - k] if k else torch.tensor(0.0) for k in steps])
    return warped, shifted, ts


def sigma_at(t, sigmas, ts):
    return sigmas[int(torch.argmin((ts.double() - float(t)).abs()))]


class KvCache:
    """Per layer, the clean K/V of the frames in the window, frame by frame (lists of [B, n, heads, d])."""

    def __init__(self, layers, local_attn_size, sink_size=0):
        self.k = [[] for _ in range(layers)]
        self.v = [[] for _ in range(layers)]
        self.window, self.sink = local_attn_size, sink_size

    def make_room(self, frames):
        """Evicts the oldest frames after the sink so that `frames` more fit (the current chunk included)."""
        if self.window < 0:
            return
        for lk, lv in zip(self.k, self.v):
            while len(lk) + frames > self.window:
                del lk[self.sink]
                del lv[self.sink]


@torch.no_grad()
def forward_chunk(model, x, start, t, text_kvs, cache, write):
    """One forward of frames start .. start + F - 1 (x [1, F, C, H, W]) at timestep t over the cache; returns the
    flow [1, F, C, H, W]. write: the chunk's K/V replace nothing and are appended to the cache afterwards."""
    _, f, _, hh, ww = x.shape
    h, w = hh // 2, ww // 2
    n = h * w
    tokens = model.patchify(x)
    e, e0 = model.embed_time(torch.full([1, f], float(t)))
    e_tok, e0_tok = e.repeat_interleave(n, 1), e0.repeat_interleave(n, 1)
    cf, ch, cw = model.token_coords(torch.arange(start, start + f), h, w, x.device)
    ang = rope_angles(model.head_dim, cf, ch, cw)
    rope = (torch.cos(ang), torch.sin(ang))  # float64: the exact path
    new_kv = []
    for i, blk in enumerate(model.blocks):
        def self_attention(q, k, v, i=i):
            new_kv.append((k, v))
            ks = torch.cat(cache.k[i] + [k], 1)
            vs = torch.cat(cache.v[i] + [v], 1)
            return attend(q, ks, vs)
        tokens = blk(tokens, e0_tok, rope, text_kvs[i], self_attention)
    if write:
        for i, (k, v) in enumerate(new_kv):
            cache.k[i] += list(k.split(n, 1))
            cache.v[i] += list(v.split(n, 1))
    return model.unpatchify(model.head_out(tokens, e_tok), f, h, w)


@torch.no_grad()
def rollout(model, context, noise, step_noise, steps, shift, local_attn_size, chunk=3, context_noise=0,
            sampler="SELF_FORCING"):
    """noise [T, C, H, W], step_noise [len(steps) - 1, T, C, H, W], context [L, text_dim] -> latents [T, C, H, W].
    sampler SELF_FORCING: x0 re-noised with step_noise to the next timestep; EULER: the flow-matching ODE,
    x += (sigma_next - sigma) * flow in float64 (step_noise unused), as runtime/rollout/scheduler.cpp."""
    if sampler not in ("SELF_FORCING", "EULER"):
        raise ValueError(f"unknown sampler {sampler!r} (SELF_FORCING or EULER)")
    warped, sigmas, ts = schedule(steps, shift)
    ctx = model.embed_text(context[None].float())
    text_kvs = [blk.text_kv(ctx) for blk in model.blocks]
    cache = KvCache(len(model.blocks), local_attn_size)
    out = []
    T = noise.shape[0]
    for start in range(0, T, chunk):
        n = min(chunk, T - start)
        cache.make_room(n)
        x = noise[start:start + n][None].float()
        for i, t in enumerate(warped):
            flow = forward_chunk(model, x, start, t, text_kvs, cache, write=False)
            sig = sigma_at(t, sigmas, ts)
            x0 = (x.double() - float(sig) * flow.double()).float()
            if i + 1 < len(warped):
                sn = sigma_at(warped[i + 1], sigmas, ts)
                if sampler == "EULER":
                    x = (x.double() + (float(sn) - float(sig)) * flow.double()).float()
                else:
                    x = (1.0 - sn) * x0 + sn * step_noise[i, start:start + n][None].float()
        out.append(x0[0])
        forward_chunk(model, x0, start, float(context_noise), text_kvs, cache, write=True)
    return torch.cat(out, 0)


def make_noise(seed, steps, T, shape):
    g = torch.Generator().manual_seed(seed)
    return torch.randn([T, *shape], generator=g), torch.randn([len(steps) - 1, T, *shape], generator=g)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--model", default=shipped.DEFAULT_DIR, help="a shipped model directory")
    ap.add_argument("--caption", default=None, help="default: the model's default caption")
    ap.add_argument("--latent-frames", type=int, default=21)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--noise", help="replay this --noise file instead of drawing from --seed")
    ap.add_argument("--save-noise")
    ap.add_argument("--out", help="latents .safetensors")
    ap.add_argument("--video", help="decode to this .y4m")
    ap.add_argument("--sampler", choices=["SELF_FORCING", "EULER"],
                    help="default: the model's (rollout.sampler; SELF_FORCING when it has none)")
    ap.add_argument("--steps", help="comma-separated denoising steps instead of the model's, e.g. 1000,875,...,125")
    a = ap.parse_args()

    torch.set_grad_enabled(False)
    m = shipped.load(a.model)
    caption = a.caption or m.default_caption
    ctx = m.context(caption)
    r = dict(m.rollout)
    if a.steps:
        r["denoising_steps"] = [int(v) for v in a.steps.split(",")]
    sampler = a.sampler or r.get("sampler", "SELF_FORCING")
    lh, lw = m.height // 8, m.width // 8
    if a.noise:
        t, _ = shipped.read_safetensors(a.noise)
        noise, step_noise = t["noise"].float(), t["step_noise"].float()
    else:
        noise, step_noise = make_noise(a.seed, r["denoising_steps"], a.latent_frames, (16, lh, lw))
    if a.save_noise:
        shipped.write_safetensors(a.save_noise, {"noise": noise, "step_noise": step_noise})
    lat = rollout(m.dit, ctx, noise, step_noise, r["denoising_steps"], r["timestep_shift"], r["local_attn_size"],
                  r["frames_per_chunk"], sampler=sampler)
    if a.out:
        shipped.write_safetensors(a.out, {"latents": lat}, {"caption": caption, "sampler": "tools/train/sample.py"})
    if a.video:
        frames = m.decode(lat)
        procgen.write_y4m(a.video, frames)
    print(json.dumps({"caption": caption, "latent_frames": lat.shape[0], "sampler": sampler,
                      "steps": r["denoising_steps"], "rms": float(lat.pow(2).mean().sqrt())}))


if __name__ == "__main__":
    main()

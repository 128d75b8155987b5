#!/usr/bin/env python3
"""Trains the embedded default model (models/tiny-shapes/) on procedurally generated video, in resumable pieces.

    python3 tools/train/train.py vae    --dir runs/ts --minutes 2.5     # the tiny Wan VAE (autoencoder)
    python3 tools/train/train.py stats  --dir runs/ts                   # latent mean / std per channel
    python3 tools/train/train.py dit    --dir runs/ts --minutes 6       # the causal DiT + the word embeddings
    python3 tools/train/train.py export --dir runs/ts --out models/tiny-shapes
    python3 tools/train/train.py all    --dir runs/ts --vae-minutes 2.5 --dit-minutes 6 --out DIR
    python3 tools/train/train.py pack   --dir runs/ts --out DIR         # small checkpoint copies to move

Every stage stops after --minutes (or --steps) and saves a checkpoint (weights, optimizer, EMA, step, RNG
seed position) to --dir; running it again resumes. Each stage appends its loss curve to <dir>/<stage>_log.jsonl.
Data: procgen.py clips rendered on the fly on the training device from consecutive seeds (VAE: 9-frame clips;
DiT: 57-frame clips = 15 latent frames = 5 chunks, encoded by the frozen VAE encoder). The DiT is trained with
flow matching under teacher forcing (wan_dit.forward_train): per chunk its own noise level, the noisy chunk
attending to the clean chunks inside the KV window, as in the engine's rollout. Runs on a GPU (bf16 autocast)
or, slowly, on a CPU (--small: 64x96 frames, batch 1, for smoke tests).
"""

import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import procgen  # noqa: E402
import shipped  # noqa: E402
import wan_dit  # noqa: E402
import wan_vae  # noqa: E402

# 33 frames = 9 latent frames. On 9-frame clips alone the causal convs learned the zero padding at the clip's start
# as a clock: reconstructions fell from 24 dB to 10 dB past the 9th frame (longer clips, the DiT's 57 and the
# rollout's minute, were garbage). Clips several times the first frames' reach teach the steady state;
# long_clip_psnr() checks it on a clip as long as the DiT's.
VAE_CLIP_FRAMES = 33
CHUNK = 3
DIT_CHUNKS = 5  # 15 latent frames per training clip
WINDOW_CHUNKS = 3  # local_attn_size 9: the chunk itself and the 2 before it
# The sampling settings the model ships with (models/tiny-shapes/tiny-shapes.textproto).
ROLLOUT = dict(frames_per_chunk=CHUNK, denoising_steps=[1000, 750, 500, 250], timestep_shift=2.0, context_noise=0,
               local_attn_size=CHUNK * WINDOW_CHUNKS, sink_size=0, width=procgen.WIDTH, height=procgen.HEIGHT,
               fps=procgen.FPS)
DEFAULT_CAPTION = "a red square moves right over a checkered floor"


def log(path, rec):
    with open(path, "a") as f:
        f.write(json.dumps(rec) + "\n")
    print(json.dumps(rec), flush=True)


def frame_size(a):
    """(height, width) of the training frames: --size WxH, or 64x96 with --small."""
    if a.small:
        return 64, 96
    w, h = (int(v) for v in a.size.split("x"))
    return h, w


def autocast(device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


def load_ckpt(path):
    return torch.load(path, map_location="cpu", weights_only=False) if os.path.exists(path) else None


def save_ckpt(path, obj):
    torch.save(obj, path + ".tmp")
    os.replace(path + ".tmp", path)


def ema_update(ema, model, decay):
    with torch.no_grad():
        for e, p in zip(ema.values(), model.state_dict().values()):
            e.mul_(decay).add_(p.detach().float(), alpha=1 - decay)


# ---------------------------------------------------------------------------------------------------------------
# VAE
# ---------------------------------------------------------------------------------------------------------------

def train_vae(a, device):
    path = os.path.join(a.dir, "vae.pt")
    vae = wan_vae.WanVAE(**wan_vae.TINY)
    wan_vae.init_weights_(vae, a.seed)
    vae.to(device)
    opt = torch.optim.AdamW(vae.parameters(), lr=a.vae_lr, weight_decay=0.0)
    ck = load_ckpt(path)
    step = 0
    if ck:
        vae.load_state_dict(ck["model"])
        if ck.get("opt") is not None:
            opt.load_state_dict(ck["opt"])
            for group in opt.param_groups:
                group["lr"] = a.vae_lr  # this piece's learning rate, not the saved one
        step = ck["step"]
    h, w = frame_size(a)
    t_end = time.time() + a.minutes * 60
    logf = os.path.join(a.dir, "vae_log.jsonl")
    t0, acc = time.time(), []
    while time.time() < t_end and (a.steps is None or step < a.steps):
        seeds = [10_000_000 + step * a.vae_batch + i for i in range(a.vae_batch)]
        x, _ = procgen.render_batch(seeds, a.vae_clip_frames, device=device, height=h, width=w)
        with autocast(device):
            mu, logvar = vae.encode(x)
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
            y = vae.decode(z)
        # The object is a few percent of the pixels and carries the caption: weight its (saturated) pixels up.
        sat = (x.max(1, keepdim=True).values - x.min(1, keepdim=True).values) > 0.6  # [B, 1, T, H, W]
        wgt = 1.0 + a.object_weight * sat.float()
        wgt = wgt / wgt.mean()
        mse = (wgt * (y.float() - x).pow(2)).mean()
        l1 = (wgt * (y.float() - x).abs()).mean()
        kl = 0.5 * (mu.float().pow(2) + logvar.float().exp() - 1 - logvar.float()).mean()
        loss = mse + 0.5 * l1 + a.kl * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        step += 1
        acc.append([mse.item(), l1.item(), kl.item()])
        if step % a.log_every == 0:
            # Means over the logged steps; loss_chunk0 over those whose batch had a clip that starts the scene.
            m = [(lambda vs: sum(vs) / len(vs) if vs else None)([v for v in c if v == v]) for c in zip(*acc)]
            psnr = 10 * math.log10(4.0 / max(m[0], 1e-10))
            log(logf, dict(stage="vae", step=step, mse=m[0], l1=m[1], kl=m[2], psnr=psnr,
                           seconds=round(time.time() - t0, 1)))
            acc = []
    save_ckpt(path, dict(model=vae.state_dict(), opt=opt.state_dict(), step=step,
                         mean=ck.get("mean") if ck else None, std=ck.get("std") if ck else None))
    frames = 1 + 4 * (CHUNK * a.dit_chunks - 1)
    first, last = long_clip_psnr(vae, device, h, w, frames)
    log(logf, dict(stage="vae_long_clip", step=step, frames=frames, psnr_first_9=first, psnr_last_9=last))
    print(f"vae: {step} steps, saved {path}; a DiT-length clip: PSNR {first:.1f} dB (first 9 frames), "
          f"{last:.1f} dB (last 9)")


def long_clip_psnr(vae, device, h, w, frames, seeds=(40_000_000, 40_000_001)):
    """PSNR (dB) of the first and the last 9 frames of `frames`-frame clips (the DiT's length), encoded and decoded
    whole: a VAE that only works near a clip's start shows it here."""
    with torch.no_grad():
        x, _ = procgen.render_batch(list(seeds), frames, device=device, height=h, width=w)
        with autocast(device):
            mu, _ = vae.encode(x)
            y = vae.decode(mu)
        err = (y.float().clamp(-1, 1) - x).pow(2).mean((0, 1, 3, 4))  # per frame
    psnr = lambda e: 10 * math.log10(4.0 / max(float(e.mean()), 1e-10))  # noqa: E731
    return psnr(err[:9]), psnr(err[-9:])


def load_vae(a, device):
    ck = load_ckpt(os.path.join(a.dir, "vae.pt"))
    assert ck, f"no VAE checkpoint in {a.dir}: run the 'vae' stage first"
    vae = wan_vae.WanVAE(**wan_vae.TINY)
    vae.load_state_dict(ck["model"])
    return vae.to(device).eval().requires_grad_(False), ck


def latent_stats(a, device):
    vae, ck = load_vae(a, device)
    h, w = frame_size(a)
    mus = []
    with torch.no_grad():
        for i in range(a.stats_batches):
            x, _ = procgen.render_batch([20_000_000 + i * 4 + j for j in range(4)], 1 + 4 * (CHUNK * a.dit_chunks - 1),
                                        device=device, height=h, width=w)
            with autocast(device):
                mu, _ = vae.encode(x)
            mus.append(mu.float().transpose(0, 1).flatten(1))  # [16, N]
    m = torch.cat(mus, 1)
    ck["mean"], ck["std"] = m.mean(1).cpu(), m.std(1).cpu()
    save_ckpt(os.path.join(a.dir, "vae.pt"), ck)
    print("latent mean", [round(v, 3) for v in ck["mean"].tolist()])
    print("latent std ", [round(v, 3) for v in ck["std"].tolist()])


# ---------------------------------------------------------------------------------------------------------------
# DiT
# ---------------------------------------------------------------------------------------------------------------

class TextTable(torch.nn.Module):
    """The caption encoder: one learned vector per word of the grammar (procgen.VOCAB)."""

    def __init__(self, text_dim, seed):
        super().__init__()
        g = torch.Generator().manual_seed(seed + 7)
        self.word_embeddings = torch.nn.Parameter(torch.randn(len(procgen.VOCAB), text_dim, generator=g))

    def forward(self, captions, device):
        ids = [shipped.caption_ids(procgen.VOCAB, c) for c in captions]
        n = max(len(i) for i in ids)
        out = torch.zeros(len(ids), n, self.word_embeddings.shape[1], device=device)
        for b, i in enumerate(ids):
            out[b, :len(i)] = self.word_embeddings[torch.tensor(i, device=device)]
        return out


def sample_sigma(shape, g, device):
    """Per-chunk noise levels: u ~ U(0, 1) warped toward high noise by shift 3 (where a few-step sampler starts)."""
    u = torch.rand(shape, generator=g, device="cpu").to(device)
    return (3 * u / (1 + 2 * u)).clamp(1e-3, 1.0)


def draw_split(starts, share, batch, g):
    """Pool indices for one batch: round(share * batch) drawn from starts[0] (the clips that start their scene),
    the rest from starts[1]. Chunk 0 from pure noise is what fails, and uniform draws over five start frames give it
    one clip in five."""
    n0 = round(share * batch)
    i0 = torch.randint(len(starts[0]), [n0], generator=g).tolist()
    i1 = torch.randint(len(starts[1]), [batch - n0], generator=g).tolist()
    return [starts[0][i] for i in i0] + [starts[1][i] for i in i1]


def load_dit_ckpt(d):
    """dit.pt, else the packed dit_model.pt + dit_ema.pt (bf16 weights and EMA, no optimizer state: Adam restarts,
    with warmup), else dit_ema.pt alone (the EMA weights become the model's too: a pack kept small), else None."""
    ck = load_ckpt(os.path.join(d, "dit.pt"))
    ema_only = not os.path.exists(os.path.join(d, "dit_model.pt")) and os.path.exists(os.path.join(d, "dit_ema.pt"))
    if ck is None and ema_only:
        ck = load_ckpt(os.path.join(d, "dit_ema.pt"))
        if "step" not in ck:
            sys.exit(f"train.py: {d}/dit_ema.pt has no step (packed before EMA-only resumes); "
                     "keep dit_model.pt with it")
        ck["model"], ck["text"] = dict(ck["ema"]), dict(ck["ema_text"])
    if ck is None and os.path.exists(os.path.join(d, "dit_model.pt")):
        ck = {**load_ckpt(os.path.join(d, "dit_model.pt")), **load_ckpt(os.path.join(d, "dit_ema.pt"))}
    if ck is not None and "opt" not in ck:  # packed: bf16 weights, no optimizer state
        ck["model"] = {k: v.float() for k, v in ck["model"].items()}
        ck["ema"] = {k: v.float() for k, v in ck["ema"].items()}
        ck["opt"] = None
        print(f"resuming from the packed checkpoint at step {ck['step']}")
    return ck


def train_dit(a, device):
    vae, vck = load_vae(a, device)
    assert vck.get("mean") is not None, "run the 'stats' stage first"
    mean = vck["mean"].to(device)[None, None, :, None, None]
    std = vck["std"].to(device)[None, None, :, None, None]
    path = os.path.join(a.dir, "dit.pt")
    cfg = dict(wan_dit.TINY_SHAPES, dim=a.dit_dim, num_heads=a.dit_dim // 128, num_layers=a.dit_layers,
               ffn_dim=a.dit_ffn)
    model = wan_dit.CausalWanDiT(cfg)
    wan_dit.init_weights_(model, a.seed)
    text = TextTable(wan_dit.TINY_SHAPES["text_dim"], a.seed)
    model.to(device)
    text.to(device)
    params = list(model.parameters()) + list(text.parameters())
    opt = torch.optim.AdamW(params, lr=a.dit_lr, betas=(0.9, 0.99), weight_decay=0.01)
    ck = load_dit_ckpt(a.dir)
    step = 0
    warm_from = 0  # the learning-rate warmup counts from here: 0, or the step a fresh optimizer resumes at
    if ck:
        model.load_state_dict(ck["model"])
        text.load_state_dict(ck["text"])
        step = ck["step"]
        if ck["opt"] is not None:
            opt.load_state_dict(ck["opt"])
        else:
            warm_from = step
        ema = {k: v.to(device) for k, v in ck["ema"].items()}
        ema_text = {k: v.to(device) for k, v in ck["ema_text"].items()}
    else:
        ema = {k: v.detach().float().clone() for k, v in model.state_dict().items()}
        ema_text = {k: v.detach().float().clone() for k, v in text.state_dict().items()}
    h, w = frame_size(a)
    chunks = a.dit_chunks
    frames = CHUNK * chunks
    t_end = time.time() + a.minutes * 60
    logf = os.path.join(a.dir, "dit_log.jsonl")
    t0, acc = time.time(), []
    g = torch.Generator().manual_seed(a.seed * 1000 + step)

    def save():
        save_ckpt(path, dict(model=model.state_dict(), text=text.state_dict(), opt=opt.state_dict(), step=step, cfg=cfg,
                             ema={k: v.cpu() for k, v in ema.items()},
                             ema_text={k: v.cpu() for k, v in ema_text.items()}))

    t_save = time.time()
    pool, pool_starts = None, None
    if a.start0_share is not None and not 0.0 <= a.start0_share <= 1.0:
        sys.exit(f"train.py: --start0-share {a.start0_share} is not in [0, 1]")
    if a.dit_data == "scenes":
        # The caption's one scene (procgen.scene_params), from several start frames: chunk 0 of a clip that starts
        # at frame 0 is what the sampler makes from pure noise; the later chunks of every clip teach the motion
        # on from clean context, so a clip that starts later carries no chunk-0 loss (its first chunk is not
        # what a run begins with).
        starts = [int(v) for v in a.scene_starts.split(",")]
        pairs = [(c, st) for st in starts for c in procgen.all_captions()]
        if a.pool and a.pool < len(pairs):
            keep = torch.randperm(len(pairs), generator=torch.Generator().manual_seed(a.seed))[:a.pool]
            pairs = [pairs[i] for i in sorted(keep.tolist())]
        pool_x, group = [], 16 if str(device).startswith("cuda") else 4
        with torch.no_grad():
            for i in range(0, len(pairs), group):
                part = pairs[i:i + group]
                x = procgen.render_scenes([c for c, _ in part], 1 + 4 * (frames - 1), [st for _, st in part],
                                          device=device, height=h, width=w)
                with autocast(device):
                    mu, _ = vae.encode(x)
                pool_x.append(((mu.float().transpose(1, 2) - mean) / std).cpu())
        pool = (torch.cat(pool_x), [c for c, _ in pairs])
        pool_first = torch.tensor([float(st == 0) for _, st in pairs])
        later = [i for i, (_, st) in enumerate(pairs) if st != 0]
        if later:
            pool_starts = ([i for i, (_, st) in enumerate(pairs) if st == 0], later)
        print(f"pool: {len(pairs)} scene clips ({len(starts)} starts) encoded in {time.time() - t0:.0f} s", flush=True)
    elif a.pool:
        # Encode a fixed set of clips once instead of rendering and encoding every step: CPU runs, and GPU runs
        # whose step time is the renderer's and the VAE encoder's rather than the DiT's.
        pool_x, pool_caps = [], []
        group = 16 if str(device).startswith("cuda") else 4
        with torch.no_grad():
            for i in range(0, a.pool, group):
                seeds = [30_000_000 + i + j for j in range(min(group, a.pool - i))]
                x, caps = procgen.render_batch(seeds, 1 + 4 * (frames - 1), device=device, height=h, width=w)
                with autocast(device):
                    mu, _ = vae.encode(x)
                pool_x.append(((mu.float().transpose(1, 2) - mean) / std).cpu())
                pool_caps += caps
        pool = (torch.cat(pool_x), pool_caps)
        pool_first = torch.ones(len(pool_caps))
        print(f"pool: {len(pool_caps)} clips encoded in {time.time() - t0:.0f} s", flush=True)
    t_start, step_start = time.time(), step
    while time.time() < t_end and (a.steps is None or step < a.steps):
        seeds = [step * a.dit_batch + i for i in range(a.dit_batch)]
        with torch.no_grad():
            first = torch.ones(a.dit_batch, device=device)  # 1: chunk 0 of the clip carries loss
            if pool is not None:
                if a.start0_share is not None and pool_starts is not None:
                    idx = draw_split(pool_starts, a.start0_share, a.dit_batch, g)
                else:
                    idx = torch.randint(len(pool[1]), [a.dit_batch], generator=g).tolist()
                x0, caps = pool[0][idx].to(device), [pool[1][i] for i in idx]
                first = pool_first[idx].to(device)
            else:
                x, caps = procgen.render_batch(seeds, 1 + 4 * (frames - 1), device=device, height=h, width=w)
                with autocast(device):
                    mu, _ = vae.encode(x)
                x0 = ((mu.float().transpose(1, 2) - mean) / std)  # [B, F, 16, h, w]
            sig = sample_sigma([a.dit_batch, chunks], g, device).repeat_interleave(CHUNK, 1)  # [B, F]
            eps = torch.randn(x0.shape, generator=g, device="cpu").to(device)
            s5 = sig[:, :, None, None, None]
            noisy = (1 - s5) * x0 + s5 * eps
            clean = x0
            if a.context_aug > 0:
                # The rollout's context is the model's own output, not the data: a little noise on the clean stream
                # (still at t = 0) teaches the model not to trust it to the last digit.
                ca = (torch.rand([a.dit_batch], generator=g) * a.context_aug).to(device)[:, None, None, None, None]
                clean = (1 - ca) * x0 + ca * torch.randn(x0.shape, generator=g, device="cpu").to(device)
        lr = a.dit_lr * min(1.0, (step - warm_from + 1) / a.warmup)
        if a.lr_decay == "cos":
            # Cosine to a tenth over this piece (its minutes, or its --steps when those end it first).
            frac = (time.time() - t_start) / max(1e-9, t_end - t_start)
            if a.steps is not None:
                frac = max(frac, (step - step_start) / max(1, a.steps - step_start))
            lr *= 0.1 + 0.45 * (1 + math.cos(math.pi * min(1.0, frac)))
        for group in opt.param_groups:
            group["lr"] = lr
        with autocast(device):
            ctx = text(caps, device)
            pred = model.forward_train(clean, noisy, sig * 1000.0, ctx, CHUNK, WINDOW_CHUNKS)
        per_chunk = (pred.float() - (eps - x0)).pow(2).mean((2, 3, 4)).unflatten(1, (chunks, CHUNK)).mean(2)
        weight = torch.ones_like(per_chunk)
        weight[:, 0] = first * a.chunk0_weight
        loss = (per_chunk * weight).sum() / weight.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        decay = min(a.ema, (1 + step) / (10 + step))
        ema_update(ema, model, decay)
        ema_update(ema_text, text, decay)
        n_first = float(first.sum())
        chunk0 = float((per_chunk[:, 0].detach() * first).sum()) / n_first if n_first else float("nan")
        acc.append([loss.item(), chunk0, per_chunk[:, 1:].mean().item(), float(gn)])
        if step % a.log_every == 0:
            # Means over the logged steps; loss_chunk0 over those whose batch had a clip that starts the scene.
            m = [(lambda vs: sum(vs) / len(vs) if vs else None)([v for v in c if v == v]) for c in zip(*acc)]
            log(logf, dict(stage="dit", step=step, loss=m[0], loss_chunk0=m[1], loss_later=m[2], grad_norm=m[3],
                           lr=lr, seconds=round(time.time() - t0, 1)))
            acc = []
        if time.time() > t_save + 120:
            save()
            t_save = time.time()
    save()
    print(f"dit: {step} steps, saved {path}")


# ---------------------------------------------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------------------------------------------

def config_textproto(r, c):
    steps = ", ".join(str(s) for s in r["denoising_steps"])
    return f"""# longroll config of the embedded default model (models/tiny-shapes/, see its README.md): a Wan2.1 causal DiT
# trained here on procedurally generated video (tools/train/). `longroll generate` with no --config and no
# --weights runs this config with the weights next to it. Written by tools/train/train.py export.

model {{
  dim: {c["dim"]}
  ffn_dim: {c["ffn_dim"]}
  num_heads: {c["num_heads"]}      # head_dim 128, as the real models (RoPE split 22 + 21 + 21 pairs)
  num_layers: {c["num_layers"]}
  in_dim: 16
  out_dim: 16
  text_dim: {c["text_dim"]}      # one learned vector per caption word (text.safetensors)
  text_len: {c["text_len"]}
  freq_dim: 256
  eps: 1e-6
  patch_size: [1, 2, 2]
  model_type: "t2v"
  qk_norm: true
  cross_attn_norm: true
}}

rollout {{
  frames_per_chunk: {r["frames_per_chunk"]}
  denoising_steps: [{steps}]
  timestep_shift: {r["timestep_shift"]}
  context_noise: {r["context_noise"]}
  local_attn_size: {r["local_attn_size"]}      # trained with this window: the chunk and the 2 before it
  sink_size: {r["sink_size"]}
  rope_mode: ABSOLUTE
  sampler: {r.get("sampler", "SELF_FORCING")}
}}

video {{
  width: {r["width"]}      # {r["width"] // 16} x {r["height"] // 16} patches per latent frame
  height: {r["height"]}
  fps: {r["fps"]}
}}

attention {{
  policy: DENSE
  block_size: 64
}}

monitoring {{
  enabled: false
}}
"""


def bf16(sd):
    return {k: v.detach().float().to(torch.bfloat16).contiguous() for k, v in sd.items()}


def export(a):
    os.makedirs(a.out, exist_ok=True)
    vck = load_ckpt(os.path.join(a.dir, "vae.pt"))
    dck = load_dit_ckpt(a.dir)
    assert vck and dck and vck.get("mean") is not None, "train the vae, stats and dit stages first"
    vae = wan_vae.WanVAE(**wan_vae.TINY)
    vae.load_state_dict(vck["model"])
    steps = {"vae": vck["step"], "dit": dck["step"]}
    prov = {"generator": "tools/train/train.py", "torch": torch.__version__, "steps": steps, "seed": a.seed}
    shipped.write_safetensors(os.path.join(a.out, "vae.safetensors"), bf16(wan_vae.decoder_state_dict(vae)),
                              {"config": wan_vae.config_json(vck["mean"].tolist(), vck["std"].tolist()),
                               "provenance": prov})
    cfg = {k: (dck.get("cfg") or wan_dit.TINY_SHAPES)[k] for k in wan_dit.CONFIG_KEYS}
    h, w = frame_size(a)
    rollout = dict(ROLLOUT, width=w, height=h, timestep_shift=a.timestep_shift,
                   denoising_steps=[int(s) for s in a.denoising_steps.split(",")], sampler=a.sampler)
    shipped.write_safetensors(os.path.join(a.out, "dit.safetensors"), bf16(dck["ema"]),
                              {"config": cfg, "rollout": rollout, "provenance": prov})
    words = dck["ema_text"]["word_embeddings"].float()
    shipped.write_safetensors(os.path.join(a.out, "text.safetensors"), {"word_embeddings": words},
                              {"vocab": list(procgen.VOCAB), "default_caption": DEFAULT_CAPTION,
                               "grammar": "a COLOUR KIND moves DIRECTION over a BACKGROUND", "provenance": prov})
    ctx = words[shipped.caption_ids(procgen.VOCAB, DEFAULT_CAPTION)]
    shipped.write_safetensors(os.path.join(a.out, "prompt.safetensors"), {"context": ctx},
                              {"caption": DEFAULT_CAPTION})
    with open(os.path.join(a.out, "tiny-shapes.textproto"), "w") as f:
        f.write(config_textproto(rollout, cfg))
    print(f"exported to {a.out}: {steps}")


def pack(a):
    """Small copies of the checkpoints for a transfer (each file under 16 MiB): vae.pt without the optimizer,
    dit_model.pt (bf16 weights, the word table, step) and dit_ema.pt (bf16 EMA weights and word table). The
    dit stage resumes from them (with a fresh optimizer) when <dir>/dit.pt is absent."""
    os.makedirs(a.out, exist_ok=True)
    vck = load_ckpt(os.path.join(a.dir, "vae.pt"))
    if vck:
        save_ckpt(os.path.join(a.out, "vae.pt"), {k: v for k, v in vck.items() if k != "opt"} | {"opt": None})
    dck = load_ckpt(os.path.join(a.dir, "dit.pt"))
    if dck:
        half = lambda sd: {k: v.to(torch.bfloat16) for k, v in sd.items()}  # noqa: E731
        save_ckpt(os.path.join(a.out, "dit_model.pt"), dict(model=half(dck["model"]), text=dck["text"],
                                                              step=dck["step"], cfg=dck.get("cfg")))
        save_ckpt(os.path.join(a.out, "dit_ema.pt"), dict(ema=half(dck["ema"]), ema_text=dck["ema_text"],
                                                            step=dck["step"], cfg=dck.get("cfg")))
    print(f"packed to {a.out}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("stage", choices=["vae", "stats", "dit", "export", "pack", "all"])
    ap.add_argument("--dir", required=True, help="checkpoints and logs (resumed from)")
    ap.add_argument("--out", help="export: the model directory to write")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--minutes", type=float, default=9.0, help="time budget of this piece")
    ap.add_argument("--vae-minutes", type=float, default=2.5)
    ap.add_argument("--dit-minutes", type=float, default=6.0)
    ap.add_argument("--steps", type=int, default=None, help="stop at this step count (resumed runs count on)")
    ap.add_argument("--small", action="store_true", help="96x64 frames (CPU smoke tests)")
    ap.add_argument("--size", default=f"{procgen.WIDTH}x{procgen.HEIGHT}",
                    help="WxH of the training frames (the scene scales with the width)")
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--vae-batch", type=int, default=8)
    ap.add_argument("--vae-lr", type=float, default=2e-3)
    ap.add_argument("--vae-clip-frames", type=int, default=VAE_CLIP_FRAMES, help="1 + 4k video frames per VAE clip")
    ap.add_argument("--kl", type=float, default=1e-4)
    ap.add_argument("--object-weight", type=float, default=20.0, help="VAE loss weight of the object's pixels")
    ap.add_argument("--stats-batches", type=int, default=8)
    ap.add_argument("--dit-batch", type=int, default=16)
    ap.add_argument("--dit-lr", type=float, default=5e-4)
    ap.add_argument("--dit-chunks", type=int, default=DIT_CHUNKS, help="chunks of 3 latent frames per training clip")
    ap.add_argument("--dit-dim", type=int, default=wan_dit.TINY_SHAPES["dim"], help="DiT width (heads of 128)")
    ap.add_argument("--dit-layers", type=int, default=wan_dit.TINY_SHAPES["num_layers"])
    ap.add_argument("--dit-ffn", type=int, default=wan_dit.TINY_SHAPES["ffn_dim"])
    ap.add_argument("--pool", type=int, default=0, help="train the DiT on this many clips encoded once (CPU runs)")
    ap.add_argument("--dit-data", choices=["scenes", "clips"], default="scenes",
                    help="scenes: each caption's one scene (procgen.scene_params) from --scene-starts; clips: random "
                         "clips per seed (--pool N of them encoded once, or rendered every step)")
    ap.add_argument("--scene-starts", default="0,45,90,135,180", help="video frames the scene clips start at")
    ap.add_argument("--chunk0-weight", type=float, default=1.0,
                    help="loss weight of chunk 0 (the chunk made from pure noise, no context) against the later chunks")
    ap.add_argument("--start0-share", type=float, default=None,
                    help="scenes: this share of each batch from the clips that start at frame 0 (default: uniform)")
    ap.add_argument("--context-aug", type=float, default=0.05, help="noise up to this sigma on the clean stream")
    ap.add_argument("--lr-decay", choices=["cos", "none"], default="cos", help="DiT learning rate over the piece")
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--ema", type=float, default=0.998)
    ap.add_argument("--log-every", type=int, default=25)
    ap.add_argument("--denoising-steps", default=",".join(str(s) for s in ROLLOUT["denoising_steps"]),
                    help="export: the sampling schedule the model ships with")
    ap.add_argument("--sampler", choices=["SELF_FORCING", "EULER"], default="SELF_FORCING",
                    help="export: the model's rollout.sampler (EULER: the flow-matching ODE, for a DiT not distilled)")
    ap.add_argument("--timestep-shift", type=float, default=ROLLOUT["timestep_shift"], help="export: its shift")
    a = ap.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    torch.manual_seed(a.seed)
    device = torch.device(a.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    if a.stage in ("vae", "all"):
        a.minutes = a.vae_minutes if a.stage == "all" else a.minutes
        train_vae(a, device)
    if a.stage in ("stats", "all"):
        latent_stats(a, device)
    if a.stage in ("dit", "all"):
        a.minutes = a.dit_minutes if a.stage == "all" else a.minutes
        train_dit(a, device)
    if a.stage in ("export", "all") and a.out:
        export(a)
    if a.stage == "pack":
        pack(a)


if __name__ == "__main__":
    main()

"""Seeded procedural video: one coloured shape moving over a textured background, with a caption.

The training data of the embedded default model (models/tiny-shapes/). Every clip is a pure function of its
seed: the caption's words pick the object's colour, its kind and its direction of motion, and the
background's texture; the rest (start position, speed, size, background colours, camera pan, a slow light
change) is drawn from the seed. Motion wraps around the frame edges (the object leaves on one side and comes
back on the other), so a clip of any length, a minute included, keeps matching its caption.

The VAE trains on random clips (render_batch: any seed, any scene). The DiT trains on scenes (render_scenes):
each caption has one scene, scene_params(caption), each of its words setting its own part (the background's
look, the size, the speed and start position). The engine's few-step sampler predicts x0 and re-noises it at every
step, so a first chunk made from pure noise converges only when the caption determines it; with random scenes
per caption the prediction was their grey average (the second training run, tools/train/README.md).

    python3 tools/train/procgen.py --seed 3 --frames 33 --out /tmp/clip.y4m      # look at a clip
    python3 tools/train/procgen.py --scene --caption "a red square moves right over a checkered floor" \
        --frames 81 --out /tmp/scene.y4m                                          # a caption's scene

Frames are float RGB in [-1, 1], [T, 3, H, W]; rendering is vectorised torch, so batches of clips can be made
on the GPU during training (render_batch). The colour and direction tables here are what the caption checks
(tests/cli/caption_check.py, bench/quality/) judge a generated video against.
"""

import argparse
import math
import os
import sys

import torch

# ---- the caption grammar: "a {colour} {kind} moves {direction} over a {background}" --------------------------
COLOURS = {  # RGB in [0, 1]: saturated hues, far from the desaturated backgrounds
    "red": (0.90, 0.12, 0.10),
    "green": (0.12, 0.80, 0.18),
    "blue": (0.12, 0.25, 0.95),
    "yellow": (0.95, 0.85, 0.10),
}
KINDS = ["square", "circle", "triangle"]
DIRECTIONS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}  # (dx, dy) in image coordinates
BACKGROUNDS = ["checkered floor", "striped wall", "dotted carpet", "plain ground"]
VOCAB = sorted({w for phrase in ["a moves over"] + list(COLOURS) + KINDS + list(DIRECTIONS) + BACKGROUNDS
                for w in phrase.split()})

HEIGHT, WIDTH = 192, 320  # video frames: 24 x 40 latents, 12 x 20 patches per latent frame
FPS = 16


def caption_of(colour, kind, direction, background):
    return f"a {colour} {kind} moves {direction} over a {background}"


def parse_caption(text):
    """(colour, kind, direction, background) of a caption of the grammar; ValueError otherwise."""
    words = text.strip().lower().split()
    if len(words) < 8 or words[0] != "a" or words[3] != "moves" or words[5] != "over" or words[6] != "a":
        raise ValueError(f"not a caption of the grammar 'a COLOUR KIND moves DIRECTION over a BACKGROUND': {text!r}")
    colour, kind, direction, background = words[1], words[2], words[4], " ".join(words[7:])
    if colour not in COLOURS or kind not in KINDS or direction not in DIRECTIONS or background not in BACKGROUNDS:
        raise ValueError(f"unknown word in caption {text!r}: colours {list(COLOURS)}, kinds {KINDS}, directions "
                         f"{list(DIRECTIONS)}, backgrounds {BACKGROUNDS}")
    return colour, kind, direction, background


def all_captions():
    return [caption_of(c, k, d, b) for c in COLOURS for k in KINDS for d in DIRECTIONS for b in BACKGROUNDS]


def clip_params(seed, caption=None):
    """The random choices of clip `seed` (a dict of floats and words); `caption` fixes the words."""
    g = torch.Generator().manual_seed(int(seed))
    u = lambda: float(torch.rand([], generator=g))  # noqa: E731
    pick = lambda xs: xs[int(torch.randint(len(xs), [], generator=g))]  # noqa: E731
    colour, kind, direction, background = pick(list(COLOURS)), pick(KINDS), pick(list(DIRECTIONS)), pick(BACKGROUNDS)
    if caption is not None:
        colour, kind, direction, background = parse_caption(caption)
    base = 0.25 + 0.35 * u()  # background grey level
    tint = [0.06 * (u() - 0.5) for _ in range(3)]  # a faint tint: the background stays desaturated
    return dict(colour=colour, kind=kind, direction=direction, background=background,
                x0=u(), y0=u(), size=36.0 + 20.0 * u(), speed=2.0 + 1.5 * u(),
                base=base, contrast=0.10 + 0.12 * u(), tint=tint, cell=16.0 + 16.0 * u(),
                pan=pick([-1.0, 0.0, 0.0, 1.0]) * (0.5 + 0.5 * u()), light_period=48.0 + 64.0 * u(),
                light_phase=2 * math.pi * u(), light_amp=0.08 * u())


SCENE_SEED = 50_000_000  # a word's draws: torch.rand from seed SCENE_SEED + the word's index in VOCAB


def _word_draws(word, n):
    """n uniform draws in [0, 1) that belong to `word` (the same in every caption that has it)."""
    g = torch.Generator().manual_seed(SCENE_SEED + VOCAB.index(word))
    return [float(v) for v in torch.rand([n], generator=g)]


def scene_params(caption):
    """The one scene of `caption` (the DiT's training data). Each word sets its own part of the scene, the same in
    every caption: the background word its grey level, contrast, tint, cell size, pan and light; the kind its
    size; the colour its speed and where along its motion the object starts; the direction where across it
    (clear of the edges, so the wrap never splits the object). So the 192 scenes differ, and a small model learns
    them as four rules rather than 192 memorised pictures. Why one scene per caption: the engine's few-step
    sampler re-noises every x0 prediction, so a first chunk made from pure noise must have one answer per
    caption; with random scenes per caption its prediction was their grey average (tools/train/README.md)."""
    colour, kind, direction, background = parse_caption(caption)
    bg = _word_draws(background.split()[0], 9)
    col = _word_draws(colour, 2)
    along = 0.1 + 0.8 * col[0]
    across = 0.3 + 0.4 * _word_draws(direction, 1)[0]
    x0, y0 = (along, across) if DIRECTIONS[direction][0] else (across, along)
    pan = -1.0 if bg[6] < 0.25 else (1.0 if bg[6] >= 0.75 else 0.0)
    return dict(colour=colour, kind=kind, direction=direction, background=background,
                x0=x0, y0=y0, size=36.0 + 20.0 * _word_draws(kind, 1)[0], speed=2.0 + 1.5 * col[1],
                base=0.25 + 0.35 * bg[0], contrast=0.10 + 0.12 * bg[1], tint=[0.06 * (v - 0.5) for v in bg[2:5]],
                cell=16.0 + 16.0 * bg[5], pan=pan * 0.75, light_period=48.0 + 64.0 * bg[7],
                light_phase=2 * math.pi * bg[8], light_amp=0.04)


def _background(p, t, yy, xx, scale):
    """[T, H, W] luminance-like texture value in [-1, 1], panned horizontally by p['pan'] px per frame."""
    xs = (xx[None] + p["pan"] * scale * t[:, None, None]) / scale  # [T, 1, W], in pixels of a 320-wide frame
    ys = yy[None].expand(t.shape[0], -1, -1) / scale
    c = p["cell"]
    kind = p["background"]
    if kind == "checkered floor":
        v = torch.sign(torch.sin(math.pi * xs / c)) * torch.sign(torch.sin(math.pi * ys / c))
    elif kind == "striped wall":
        v = torch.sign(torch.sin(math.pi * ys / (0.6 * c))) + 0 * xs
    elif kind == "dotted carpet":
        dx = torch.remainder(xs, c) - c / 2
        dy = torch.remainder(ys, c) - c / 2
        v = torch.where(dx * dx + dy * dy < (0.22 * c) ** 2, 1.0, -0.4)
    else:  # plain ground: a smooth, barely visible gradient
        v = 0.3 * torch.sin(2 * math.pi * (xs / WIDTH + ys / (2 * HEIGHT)))
    return v.expand(t.shape[0], yy.shape[0], xx.shape[1])


def _object_mask(p, t, yy, xx, scale):
    """[T, H, W] coverage in [0, 1] of the object at frames t (anti-aliased over about one pixel), drawn on a
    torus: the position wraps around the frame."""
    dx, dy = DIRECTIONS[p["direction"]]
    hh, ww = yy.shape[0], xx.shape[1]
    cx = (p["x0"] * ww + dx * p["speed"] * scale * t)[:, None, None]  # [T, 1, 1]
    cy = (p["y0"] * hh + dy * p["speed"] * scale * t)[:, None, None]
    # Distance on the torus from each pixel to the centre.
    rx = torch.remainder(xx[None] - cx + ww / 2, ww) - ww / 2
    ry = torch.remainder(yy[None] - cy + hh / 2, hh) - hh / 2
    r = p["size"] * scale / 2
    if p["kind"] == "square":
        d = torch.maximum(rx.abs(), ry.abs()) - r
    elif p["kind"] == "circle":
        d = torch.sqrt(rx * rx + ry * ry) - r
    else:  # triangle pointing up: inside the three half-planes
        k = math.sqrt(3.0)
        d = torch.maximum(torch.maximum(ry - r * 0.8, (-k * rx - ry) / 2 - r * 0.5), (k * rx - ry) / 2 - r * 0.5)
    return (0.5 - d).clamp(0.0, 1.0)


def render(p, frames, start=0, device="cpu", height=HEIGHT, width=WIDTH):
    """Frames start .. start + frames - 1 of the clip with parameters p: [frames, 3, H, W] in [-1, 1]. Other
    frame sizes scale the scene (sizes, speeds, textures) by width / WIDTH (small sizes: CPU smoke tests)."""
    scale = width / WIDTH
    t = torch.arange(start, start + frames, dtype=torch.float32, device=device)
    yy = torch.arange(height, dtype=torch.float32, device=device)[:, None] + 0.5  # [H, 1]
    xx = torch.arange(width, dtype=torch.float32, device=device)[None, :] + 0.5  # [1, W]
    light = 1.0 + p["light_amp"] * torch.sin(2 * math.pi * t / p["light_period"] + p["light_phase"])  # [T]
    bg = p["base"] + p["contrast"] * _background(p, t, yy, xx, scale)  # [T, H, W]
    tint = torch.tensor(p["tint"], device=device)[None, :, None, None]
    rgb = bg[:, None] + tint  # [T, 3, H, W]
    m = _object_mask(p, t, yy, xx, scale)[:, None]  # [T, 1, H, W]
    col = torch.tensor(COLOURS[p["colour"]], device=device)[None, :, None, None]
    rgb = rgb * (1 - m) + col * m
    rgb = rgb * light[:, None, None, None]
    return (rgb.clamp(0, 1) * 2 - 1).contiguous()


def render_batch(seeds, frames, device="cpu", height=HEIGHT, width=WIDTH):
    """[B, 3, frames, H, W] clips (the VAE's layout) and their captions."""
    clips, caps = [], []
    for s in seeds:
        p = clip_params(s)
        clips.append(render(p, frames, device=device, height=height, width=width).transpose(0, 1))
        caps.append(caption_of(p["colour"], p["kind"], p["direction"], p["background"]))
    return torch.stack(clips), caps


def render_scenes(captions, frames, starts, device="cpu", height=HEIGHT, width=WIDTH):
    """[B, 3, frames, H, W]: the scenes of `captions` (scene_params), clip b from video frame starts[b] on."""
    clips = [render(scene_params(c), frames, start=s, device=device, height=height, width=width).transpose(0, 1)
             for c, s in zip(captions, starts)]
    return torch.stack(clips)


def write_y4m(path, frames):
    """frames [T, 3, H, W] in [-1, 1] -> a 4:4:4 Y4M file (C444, full range RGB -> BT.601 YCbCr)."""
    x = ((frames.clamp(-1, 1) + 1) * 127.5).float()
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = 128 + (b - y) * 0.564
    cr = 128 + (r - y) * 0.713
    planes = torch.stack([y, cb, cr], 1).round().clamp(0, 255).to(torch.uint8)
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{frames.shape[3]} H{frames.shape[2]} F{FPS}:1 Ip A1:1 C444\n".encode())
        for fr in planes:
            f.write(b"FRAME\n")
            f.write(bytes(fr.contiguous().view(-1).tolist()))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--caption", help="fix the caption's words (the rest still comes from --seed)")
    ap.add_argument("--scene", action="store_true", help="the caption's one scene (scene_params; needs --caption)")
    ap.add_argument("--frames", type=int, default=33)
    ap.add_argument("--out", required=True, help="a .y4m file")
    a = ap.parse_args()
    if a.scene and not a.caption:
        ap.error("--scene needs --caption")
    p = scene_params(a.caption) if a.scene else clip_params(a.seed, a.caption)
    write_y4m(a.out, render(p, a.frames))
    print(caption_of(p["colour"], p["kind"], p["direction"], p["background"]))


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    main()

#!/usr/bin/env python3
"""Does a video show what its caption says? Pixel statistics against the procedural generator's definitions
(tools/train/procgen.py): the dominant saturated colour must be the caption's colour, the object must move in
the caption's direction, and it must be visible (0.4% of the pixels in that colour) in 80% of the frames. Also the drift measures of the quality harness: is the object still there at
the end, and still moving.

    python3 bench/quality/caption_check.py VIDEO.y4m "a red square moves left over a checkered floor" [--json]

Standard library only (CI has no numpy): reads Y4M (4:2:0 as longroll writes it, or 4:4:4), every second
pixel of every second row. Exit 0 when the caption matches, 1 when not, 2 on a bad input.

How: a pixel is "object" when its saturation (max - min of R, G, B) is above 0.3 of full scale (the
backgrounds are desaturated greys); its colour class is the nearest of COLOURS by hue angle. The object's
position per frame is the circular mean of its pixels' coordinates (motion wraps around the frame edges), the
motion the sum of wrapped frame-to-frame displacements; the direction is the dominant axis and sign.
"""

import argparse
import json
import math
import sys

# The same tables as tools/train/procgen.py (tests/tools/test_caption_check.py checks that they agree).
COLOURS = {"red": (0.90, 0.12, 0.10), "green": (0.12, 0.80, 0.18), "blue": (0.12, 0.25, 0.95),
           "yellow": (0.95, 0.85, 0.10)}
DIRECTIONS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
SATURATION = 0.3 * 255
STEP = 2  # pixel subsampling in each direction
# A frame shows the object when this share of its pixels has the video's dominant object colour. The generator's smallest object (a
# triangle of size 36 in a 320 x 192 frame, or the same scaled) covers about 1%; a smear or a stray blob less.
VISIBLE = 0.004
VISIBLE_FRAMES = 0.8  # ... and the object must be visible in this share of the frames


def hue(r, g, b):
    mx, mn = max(r, g, b), min(r, g, b)
    d = mx - mn
    if d <= 0:
        return 0.0
    if mx == r:
        h = ((g - b) / d) % 6
    elif mx == g:
        h = (b - r) / d + 2
    else:
        h = (r - g) / d + 4
    return 60.0 * h


COLOUR_HUES = {name: hue(*[255 * v for v in rgb]) for name, rgb in COLOURS.items()}


def colour_class(r, g, b):
    h = hue(r, g, b)
    return min(COLOUR_HUES, key=lambda n: min(abs(h - COLOUR_HUES[n]), 360 - abs(h - COLOUR_HUES[n])))


def read_y4m(path):
    """Yields (width, height, rgb(x, y) function) per frame."""
    with open(path, "rb") as f:
        header = f.readline().decode().split()
        if not header or header[0] != "YUV4MPEG2":
            raise ValueError(f"{path}: not a Y4M file")
        w = int(next(t[1:] for t in header if t[0] == "W"))
        h = int(next(t[1:] for t in header if t[0] == "H"))
        cs = next((t[1:] for t in header if t[0] == "C"), "420jpeg")
        limited = "XCOLORRANGE=FULL" not in header and not cs.startswith("444")
        sub = 1 if cs.startswith("444") else 2
        cw, ch = w // sub, h // sub
        while True:
            line = f.readline()
            if not line:
                return
            y = f.read(w * h)
            u = f.read(cw * ch)
            v = f.read(cw * ch)
            if len(v) < cw * ch:
                return

            def rgb(x, yy, y=y, u=u, v=v):
                ly = y[yy * w + x]
                cu = u[(yy // sub) * cw + x // sub] - 128.0
                cv = v[(yy // sub) * cw + x // sub] - 128.0
                if limited:
                    ly = (ly - 16) * 255.0 / 219.0
                    cu *= 255.0 / 224.0
                    cv *= 255.0 / 224.0
                return ly + 1.402 * cv, ly - 0.344136 * cu - 0.714136 * cv, ly + 1.772 * cu

            yield w, h, rgb


def frame_stats(w, h, rgb):
    """(object pixel share, colour counts, circular centroid (x, y) or None) of one frame."""
    counts = {n: 0 for n in COLOURS}
    sx = cx = sy = cy = 0.0
    n = total = 0
    for yy in range(0, h, STEP):
        ay = 2 * math.pi * yy / h
        for x in range(0, w, STEP):
            total += 1
            r, g, b = rgb(x, yy)
            if max(r, g, b) - min(r, g, b) < SATURATION:
                continue
            counts[colour_class(r, g, b)] += 1
            ax = 2 * math.pi * x / w
            sx += math.sin(ax)
            cx += math.cos(ax)
            sy += math.sin(ay)
            cy += math.cos(ay)
            n += 1
    centroid = None
    if n:
        centroid = ((math.atan2(sx, cx) / (2 * math.pi)) % 1 * w, (math.atan2(sy, cy) / (2 * math.pi)) % 1 * h)
    return n / max(total, 1), counts, centroid


def wrapped(d, size):
    return (d + size / 2) % size - size / 2


def analyse(path):
    """Per-video statistics: dominant colour, direction, speeds, presence over time."""
    frames = [(w, h, frame_stats(w, h, rgb)) for w, h, rgb in read_y4m(path)]
    if not frames:
        raise ValueError(f"{path}: no frames")
    w, h = frames[0][0], frames[0][1]
    counts = {n: 0 for n in COLOURS}
    for _, _, (_, c, _) in frames:
        for k, v in c.items():
            counts[k] += v
    total = sum(counts.values())
    dom = max(counts, key=counts.get) if total else None
    steps = []  # per-frame displacement (dx, dy) in pixels, None where the object is missing in either frame
    for (_, _, (_, _, a)), (_, _, (_, _, b)) in zip(frames, frames[1:]):
        steps.append(None if a is None or b is None else (wrapped(b[0] - a[0], w), wrapped(b[1] - a[1], h)))
    mx = sum(s[0] for s in steps if s)
    my = sum(s[1] for s in steps if s)
    if abs(mx) >= abs(my):
        direction = "right" if mx > 0 else "left"
    else:
        direction = "down" if my > 0 else "up"
    presence = [f[2][0] for f in frames]
    frame_counts = [f[2][1] for f in frames]
    q = max(1, len(frames) // 4)
    last_steps = [s for s in steps[-q:] if s]
    last_speed = sum(math.hypot(*s) for s in last_steps) / max(len(last_steps), 1)
    return {"frames": len(frames), "dominant_colour": dom, "colour_share": counts[dom] / total if total else 0.0,
            "direction": direction, "motion_px": [round(mx, 1), round(my, 1)],
            "speed_px_per_frame": round(math.hypot(mx, my) / max(len(steps), 1), 3),
            # Frames where the dominant colour's pixels (counts[dom] / sampled = presence * counts[dom] / n) reach
            # VISIBLE: a shape of the caption's colour, not saturated noise of any colour.
            "visible_frames": round(sum(1 for pr, c in zip(presence, frame_counts)
                                        if dom and sum(c.values()) and pr * c[dom] / sum(c.values()) >= VISIBLE)
                                    / len(presence), 4),
            "presence_first_quarter": round(sum(presence[:q]) / q, 4),
            "presence_last_quarter": round(sum(presence[-q:]) / q, 4),
            "speed_last_quarter": round(last_speed, 3)}


def parse_caption(caption):
    words = caption.lower().split()
    colour = next((x for x in words if x in COLOURS), None)
    direction = next((x for x in words if x in DIRECTIONS), None)
    if colour is None or direction is None:
        raise ValueError(f"caption names no colour ({list(COLOURS)}) or no direction ({list(DIRECTIONS)}): {caption!r}")
    return colour, direction


def check(path, caption, min_speed=0.5):
    """analyse() plus the verdict: colour and direction as captioned, the object moving at least min_speed pixels
    per frame on average, and visible (VISIBLE) in at least VISIBLE_FRAMES of the frames: a video that shows its
    object only as a late smear does not pass."""
    colour, direction = parse_caption(caption)
    s = analyse(path)
    s.update(caption=caption, want_colour=colour, want_direction=direction,
             colour_ok=s["dominant_colour"] == colour and s["colour_share"] >= 0.5,
             direction_ok=s["direction"] == direction and s["speed_px_per_frame"] >= min_speed)
    s["visible_ok"] = s["visible_frames"] >= VISIBLE_FRAMES
    s["ok"] = s["colour_ok"] and s["direction_ok"] and s["visible_ok"]
    return s


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("video")
    ap.add_argument("caption")
    ap.add_argument("--json", action="store_true", help="print the statistics as JSON")
    a = ap.parse_args()
    try:
        s = check(a.video, a.caption)
    except (OSError, ValueError) as e:
        print(f"caption_check: {e}", file=sys.stderr)
        return 2
    if a.json:
        print(json.dumps(s, sort_keys=True))
    else:
        print(f"{'ok' if s['ok'] else 'FAIL'}: {a.caption!r}: colour {s['dominant_colour']} "
              f"({s['colour_share']:.0%} of saturated pixels), moves {s['direction']} "
              f"({s['speed_px_per_frame']} px/frame), visible in {s['visible_frames']:.0%} of the frames")
    return 0 if s["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

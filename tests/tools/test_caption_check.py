"""bench/quality/caption_check.py against the generator it judges (tools/train/procgen.py): the same colour and
direction tables, and ground-truth clips pass their own captions and fail others. Skips without torch."""
import os
import sys
import tempfile
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "bench", "quality"))
sys.path.insert(0, os.path.join(ROOT, "tools", "train"))
import caption_check  # noqa: E402

try:
    import torch
    import procgen
except ImportError:  # pragma: no cover
    procgen = None


@unittest.skipIf(procgen is None, "needs torch")
class CaptionCheckTest(unittest.TestCase):
    def test_tables_agree(self):
        self.assertEqual(caption_check.COLOURS, procgen.COLOURS)
        self.assertEqual(caption_check.DIRECTIONS, procgen.DIRECTIONS)

    def test_ground_truth_passes_its_caption_only(self):
        with tempfile.TemporaryDirectory() as d:
            for seed in range(6):
                p = procgen.clip_params(seed)
                cap = procgen.caption_of(p["colour"], p["kind"], p["direction"], p["background"])
                path = os.path.join(d, f"{seed}.y4m")
                procgen.write_y4m(path, procgen.render(p, 21))
                self.assertTrue(caption_check.check(path, cap)["ok"], cap)
                other_dir = {"left": "right", "right": "left", "up": "down", "down": "up"}[p["direction"]]
                other_col = next(c for c in procgen.COLOURS if c != p["colour"])
                self.assertFalse(caption_check.check(path, cap.replace(p["direction"], other_dir))["ok"])
                self.assertFalse(caption_check.check(path, cap.replace(p["colour"], other_col))["ok"])

    def test_an_object_that_shows_late_fails(self):
        # The captioned object from the start passes; the same clip whose first 40% of frames show only the
        # background fails on visibility alone (colour and direction still right), as a model's late smear does.
        p = procgen.clip_params(7)
        cap = procgen.caption_of(p["colour"], p["kind"], p["direction"], p["background"])
        frames = procgen.render(p, 45)
        bare = procgen.render(dict(p, size=0.0), 45)
        late = torch.cat([bare[:18], frames[18:]])
        with tempfile.TemporaryDirectory() as d:
            procgen.write_y4m(os.path.join(d, "a.y4m"), frames)
            procgen.write_y4m(os.path.join(d, "b.y4m"), late)
            a = caption_check.check(os.path.join(d, "a.y4m"), cap)
            b = caption_check.check(os.path.join(d, "b.y4m"), cap)
        self.assertTrue(a["ok"], a)
        self.assertEqual(a["visible_frames"], 1.0)
        self.assertTrue(b["colour_ok"] and b["direction_ok"], b)
        self.assertFalse(b["visible_ok"], b)
        self.assertFalse(b["ok"])
        self.assertAlmostEqual(b["visible_frames"], 27 / 45, places=3)


if __name__ == "__main__":
    unittest.main()

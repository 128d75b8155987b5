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
    import torch  # noqa: F401
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


if __name__ == "__main__":
    unittest.main()

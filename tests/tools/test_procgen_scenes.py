"""tools/train/procgen.py's scenes (the DiT's training data): one scene per caption, each word setting its own
part of it the same way in every caption, the object clear of the edges across its motion, every scene passing
its own caption check; render_scenes is render from a start frame. Skips without torch."""
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

BACKGROUND_KEYS = ["base", "contrast", "tint", "cell", "pan", "light_period", "light_phase", "light_amp"]


@unittest.skipIf(procgen is None, "needs torch")
class SceneTest(unittest.TestCase):
    def test_one_scene_per_caption_and_all_differ(self):
        caps = procgen.all_captions()
        self.assertEqual(len(caps), 192)
        scenes = [procgen.scene_params(c) for c in caps]
        self.assertEqual(scenes[5], procgen.scene_params(caps[5].upper().replace(" ", "  ")))  # same words, same scene
        keys = {(s["colour"], s["kind"], s["direction"], s["background"], round(s["x0"], 6), round(s["y0"], 6),
                 round(s["size"], 6)) for s in scenes}
        self.assertEqual(len(keys), 192)
        for c, s in zip(caps, scenes):
            self.assertEqual(procgen.caption_of(s["colour"], s["kind"], s["direction"], s["background"]), c)

    def test_each_word_sets_its_part_in_every_caption(self):
        by = {}
        for c in procgen.all_captions():
            s = procgen.scene_params(c)
            dx = procgen.DIRECTIONS[s["direction"]][0]
            along, across = (s["x0"], s["y0"]) if dx else (s["y0"], s["x0"])
            parts = {("bg", s["background"]): tuple(str(s[k]) for k in BACKGROUND_KEYS),
                     ("kind", s["kind"]): s["size"],
                     ("colour", s["colour"]): (s["speed"], along),
                     ("direction", s["direction"]): across}
            for k, v in parts.items():
                by.setdefault(k, set()).add(v)
        for k, values in by.items():
            self.assertEqual(len(values), 1, f"{k} sets its part differently in different captions: {values}")
        # ... and different words of a slot set different values (the scenes are not all alike).
        for slot in ["bg", "kind", "colour", "direction"]:
            vals = [next(iter(v)) for (s, _), v in by.items() if s == slot]
            self.assertEqual(len(set(map(str, vals))), len(vals), slot)

    def test_object_clear_of_the_edges_across_its_motion(self):
        for c in procgen.all_captions()[::7]:
            s = procgen.scene_params(c)
            frames = 97
            t = torch.arange(frames, dtype=torch.float32)
            yy = torch.arange(procgen.HEIGHT, dtype=torch.float32)[:, None] + 0.5
            xx = torch.arange(procgen.WIDTH, dtype=torch.float32)[None, :] + 0.5
            m = procgen._object_mask(s, t, yy, xx, 1.0) > 0  # [T, H, W]
            if procgen.DIRECTIONS[s["direction"]][0]:  # horizontal motion: top and bottom rows stay clear
                edge = m[:, 0, :].any() or m[:, -1, :].any()
            else:
                edge = m[:, :, 0].any() or m[:, :, -1].any()
            self.assertFalse(bool(edge), c)

    def test_render_scenes_is_render_from_a_start_and_scenes_pass_their_captions(self):
        caps = procgen.all_captions()[3::24]
        x = procgen.render_scenes(caps, 9, [0, 45] * 4, height=64, width=96)
        for i, c in enumerate(caps):
            want = procgen.render(procgen.scene_params(c), 9, start=[0, 45][i % 2], height=64, width=96)
            self.assertTrue(torch.equal(x[i].transpose(0, 1), want), c)
        with tempfile.TemporaryDirectory() as d:
            for c in caps:
                path = os.path.join(d, "s.y4m")
                procgen.write_y4m(path, procgen.render(procgen.scene_params(c), 41))
                self.assertTrue(caption_check.check(path, c)["ok"], c)


if __name__ == "__main__":
    unittest.main()

"""Consistency checks of tests/data/parity (made by tools/make_parity_fixtures.py).

They do not run the model: they check the files' layout and metadata, and re-derive with numpy the
arithmetic of the rollout loop that the C++ must reproduce (x0 = x_t - sigma * v in float64; the next
input (1 - sigma') * x0 + sigma' * step_noise in float32; the output of a chunk is the last step's x0).
Needs numpy and safetensors only; skips cleanly without them.
"""

import json
import os
import sys
import unittest

try:
    import numpy as np
    from safetensors.numpy import load_file
    from safetensors import safe_open
except ImportError as e:
    print(f"test_parity_fixtures: skipped ({e}; needs numpy and safetensors)", file=sys.stderr)
    raise unittest.SkipTest(f"needs numpy and safetensors: {e}")

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DIR = os.path.join(REPO, "tests", "data", "parity")
STEPS = [1000.0, 937.5, 833.3333129882812, 625.0]
SIGMAS = [1.0, 0.9375, 0.8333333134651184, 0.625]


def meta(name):
    with safe_open(os.path.join(DIR, name), framework="numpy") as f:
        return {k: (json.loads(v) if v[:1] in "{[" else v) for k, v in (f.metadata() or {}).items()}


def load(name):
    return load_file(os.path.join(DIR, name))


class ParityFixturesTest(unittest.TestCase):
    def test_folder_small(self):
        total = sum(os.path.getsize(os.path.join(DIR, f)) for f in os.listdir(DIR))
        self.assertLess(total, 3 * 1024 * 1024)

    def test_scheduler(self):
        s = load("scheduler.safetensors")
        np.testing.assert_array_equal(s["denoising_timesteps"], np.array(STEPS, np.float32))
        np.testing.assert_array_equal(s["sigmas_at_steps"], np.array(SIGMAS, np.float32))
        lin = np.linspace(1.0, 0.0, 1001)[:-1]
        sig = 5.0 * lin / (1.0 + 4.0 * lin)
        np.testing.assert_allclose(s["sigmas_f64"], sig, rtol=0, atol=1e-15)
        np.testing.assert_allclose(s["sigmas"], sig, rtol=0, atol=2e-7)  # float32 in the reference
        np.testing.assert_allclose(s["timesteps"], s["sigmas"] * np.float32(1000), rtol=0, atol=0)
        for t, sg in zip(STEPS, SIGMAS):
            i = int(np.argmin(np.abs(s["timesteps"].astype(np.float64) - t)))
            self.assertEqual(s["sigmas"][i], np.float32(sg))

    def test_weights_config_matches_shapes(self):
        for name in ("weights_tiny.safetensors", "weights_hd128.safetensors"):
            cfg = meta(name)["config"]
            w = load(name)
            d = cfg["dim"]
            self.assertEqual(w["model.patch_embedding.weight"].shape, (d, cfg["in_dim"], *cfg["patch_size"]))
            self.assertEqual(w["model.blocks.0.ffn.0.weight"].shape, (cfg["ffn_dim"], d))
            self.assertEqual(w["model.text_embedding.0.weight"].shape, (d, cfg["text_dim"]))
            self.assertEqual(w["model.time_embedding.0.weight"].shape, (d, cfg["freq_dim"]))
            self.assertEqual(len({k.split(".")[2] for k in w if k.startswith("model.blocks.")}), cfg["num_layers"])
            self.assertTrue(all(v.dtype == np.float32 for v in w.values()))
            self.assertTrue(all(np.abs(v).max() > 0 for v in w.values()), "a weight is all zeros")

    def test_forward_files(self):
        names = [f for f in os.listdir(DIR) if f.startswith("forward_")]
        self.assertEqual(len(names), 6)
        for name in names:
            m = meta(name)["case"]
            t = load(name)
            cfg = meta(m["weights"])["config"]
            F = t["x"].shape[0]
            self.assertEqual(t["out"].shape, t["x"].shape)
            self.assertEqual(t["t"].shape, (F,))
            self.assertLess(t["context"].shape[0], cfg["text_len"])
            self.assertEqual(t["context"].shape[1], cfg["text_dim"])
            if m["cache_prefill"] and m["cache_prefill"]["calls"]:
                last = m["cache_prefill"]["calls"][-1]["frames"][1]
                self.assertEqual(last, m["start_frame"])
                self.assertEqual(t["prefill_x"].shape[0], last)

    def test_rollouts(self):
        for name in [f for f in os.listdir(DIR) if f.startswith("rollout_")]:
            m = meta(name)["rollout"]
            t = load(name)
            T = m["num_latent_frames"]
            self.assertEqual(t["noise"].shape, (T, 16, 4, 6))
            self.assertEqual(t["step_noise"].shape, (3, T, 16, 4, 6))
            self.assertEqual(t["latents"].shape, (T, 16, 4, 6))
            for _, ctx in m["prompt_switches"]:
                self.assertIn(ctx, t)
            # the call trace: 4 denoising steps + 1 context pass per chunk, plus one recache per switch
            calls = m["calls"]
            self.assertEqual(len(calls), 5 * T // 3 + len(m["prompt_switches"]))
            L = m["local_attn_size"]
            for start, ctx in m["prompt_switches"]:
                rec = [c for c in calls if c[3] == ctx][0]
                n = start if L == -1 else min(L, start)
                self.assertEqual(rec[:3], [start - n, n, 0.0])

    def test_rollout_arithmetic(self):
        """The loop around the model, re-derived from the debug set of rollout_sf."""
        d = load("debug_rollout_sf.safetensors")
        r = load("rollout_sf.safetensors")
        sig = np.array(SIGMAS, np.float32)
        np.testing.assert_array_equal(d["chunk0_step0_x"], r["noise"][0:3])
        for s in range(4):
            x0 = (d[f"chunk0_step{s}_x"].astype(np.float64)
                  - np.float64(sig[s]) * d[f"chunk0_step{s}_flow"].astype(np.float64)).astype(np.float32)
            np.testing.assert_array_equal(d[f"chunk0_step{s}_x0"], x0)
            if s < 3:
                nxt = (np.float32(1) - sig[s + 1]) * d[f"chunk0_step{s}_x0"] + sig[s + 1] * r["step_noise"][s, 0:3]
                np.testing.assert_allclose(d[f"chunk0_step{s + 1}_x"], nxt, rtol=0, atol=1e-6)
        np.testing.assert_array_equal(r["latents"][0:3], d["chunk0_step3_x0"])
        np.testing.assert_array_equal(d["chunk0_context_pass_x"], d["chunk0_step3_x0"])

    def test_modes_agree_before_first_eviction(self):
        a = load("rollout_window_absolute.safetensors")["latents"]
        b = load("rollout_window_relative.safetensors")["latents"]
        np.testing.assert_array_equal(a[:9], b[:9])
        self.assertGreater(np.linalg.norm(a[9:] - b[9:]) / np.linalg.norm(a[9:]), 1e-3)


if __name__ == "__main__":
    unittest.main()

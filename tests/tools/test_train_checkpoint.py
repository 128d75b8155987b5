"""tools/train/train.py's checkpoints and batches: the committed work-in-progress checkpoint
(tools/train/checkpoints/tiny-shapes-wip) loads into the code's own DiT and VAE; a pack holding only the DiT's EMA
resumes with the EMA as the model; --start0-share draws its share of each batch from the clips that start their
scene. Skips without torch."""
import os
import sys
import tempfile
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools", "train"))

try:
    import torch
    import train
    import wan_dit
    import wan_vae
except ImportError:  # pragma: no cover
    train = None

WIP = os.path.join(ROOT, "tools", "train", "checkpoints", "tiny-shapes-wip")


@unittest.skipIf(train is None, "needs torch")
class CheckpointTest(unittest.TestCase):
    def test_committed_checkpoint_loads_into_the_models(self):
        ck = train.load_dit_ckpt(WIP)
        self.assertIsNotNone(ck, f"{WIP}: no DiT checkpoint")
        self.assertGreater(ck["step"], 0)
        self.assertIsNone(ck["opt"])
        model = wan_dit.CausalWanDiT(ck["cfg"])
        model.load_state_dict(ck["model"])  # strict: every name and shape of the code's DiT
        for name, t in ck["model"].items():
            self.assertEqual(t.dtype, torch.float32, name)
            self.assertTrue(torch.isfinite(t).all(), name)
            self.assertTrue(torch.equal(t, ck["ema"][name]), f"{name}: the EMA-only pack resumes from the EMA")
        text = train.TextTable(wan_dit.TINY_SHAPES["text_dim"], 0)
        text.load_state_dict(ck["text"])
        vck = train.load_ckpt(os.path.join(WIP, "vae.pt"))
        vae = wan_vae.WanVAE(**wan_vae.TINY)
        vae.load_state_dict(vck["model"])
        self.assertEqual(tuple(vck["mean"].shape), (16,))  # the stats stage ran: the DiT's latents are normalised
        self.assertTrue(bool((vck["std"] > 0).all()))

    def test_ema_only_pack_resumes_from_the_ema(self):
        ema = {"w": torch.tensor([1.0, 2.0], dtype=torch.bfloat16)}
        with tempfile.TemporaryDirectory() as d:
            torch.save(dict(ema=ema, ema_text={"t": torch.ones(2)}, step=7, cfg={"dim": 1}),
                       os.path.join(d, "dit_ema.pt"))
            ck = train.load_dit_ckpt(d)
            self.assertEqual(ck["step"], 7)
            self.assertIsNone(ck["opt"])
            self.assertEqual(ck["model"]["w"].dtype, torch.float32)
            self.assertEqual(ck["model"]["w"].tolist(), [1.0, 2.0])
            self.assertEqual(ck["text"]["t"].tolist(), [1.0, 1.0])
            # An EMA file packed before it carried its step cannot resume alone.
            torch.save(dict(ema=ema, ema_text={}), os.path.join(d, "dit_ema.pt"))
            with self.assertRaises(SystemExit) as e:
                train.load_dit_ckpt(d)
            self.assertIn("dit_ema.pt has no step", str(e.exception.code))
            # With dit_model.pt beside it, the model is dit_model.pt's, not the EMA.
            torch.save(dict(model={"w": torch.tensor([5.0, 6.0])}, text={}, step=9, cfg=None),
                       os.path.join(d, "dit_model.pt"))
            ck = train.load_dit_ckpt(d)
            self.assertEqual((ck["step"], ck["model"]["w"].tolist(), ck["ema"]["w"].tolist()),
                             (9, [5.0, 6.0], [1.0, 2.0]))

    def test_start0_share_draws_its_share_from_the_scene_starts(self):
        starts = ([0, 5, 10], [1, 2, 3, 4, 6, 7, 8, 9, 11])
        g = torch.Generator().manual_seed(3)
        for share, batch in [(0.5, 32), (0.25, 8), (0.0, 4), (1.0, 4), (0.3, 10)]:
            idx = train.draw_split(starts, share, batch, g)
            self.assertEqual(len(idx), batch)
            first = sum(i in starts[0] for i in idx)
            self.assertEqual(first, round(share * batch), (share, batch))
            self.assertTrue(all(i in starts[0] for i in idx[:first]) and all(i in starts[1] for i in idx[first:]))


if __name__ == "__main__":
    unittest.main()

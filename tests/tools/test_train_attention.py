"""tools/train/wan_dit.py: forward_train's per-chunk attention (window_attend, what training runs) equals its
definition, one softmax over all tokens under the chunk-causal window mask (masked=True), in outputs and in
gradients, for windows that evict (more chunks than the window) and for a window of 1. Skips without torch."""
import os
import sys
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools", "train"))

try:
    import torch
    import wan_dit
except ImportError:  # pragma: no cover
    wan_dit = None


def rel(a, b):
    return float((a - b).norm() / b.norm())


@unittest.skipIf(wan_dit is None, "needs torch")
class WindowAttendTest(unittest.TestCase):
    def setUp(self):
        torch.manual_seed(0)
        cfg = dict(wan_dit.TINY_SHAPES, num_layers=2)
        self.model = wan_dit.CausalWanDiT(cfg)
        wan_dit.init_weights_(self.model, 3)

    def run_both(self, frames, window_chunks, chunk=3):
        g = torch.Generator().manual_seed(frames * 10 + window_chunks)
        shape = (2, frames, 16, 4, 6)  # 2 x 3 patches a frame
        clean = torch.randn(shape, generator=g, dtype=torch.float32)
        noisy = torch.randn(shape, generator=g, dtype=torch.float32)
        t = (torch.rand(2, frames // chunk, generator=g, dtype=torch.float32) * 1000).repeat_interleave(chunk, 1)
        ctx = torch.randn(2, 5, wan_dit.TINY_SHAPES["text_dim"], generator=g, dtype=torch.float32)
        outs, grads = [], []
        for masked in (True, False):
            self.model.zero_grad()
            y = self.model.forward_train(clean, noisy, t, ctx, chunk, window_chunks, masked=masked)
            (y * torch.linspace(-1, 1, y.numel(), dtype=torch.float32).view_as(y)).sum().backward()
            outs.append(y.detach())
            grads.append(torch.cat([p.grad.flatten() for p in self.model.parameters()]))
        return outs, grads

    def test_equals_the_masked_definition(self):
        for frames, window in [(12, 3), (9, 2), (6, 1), (3, 3)]:
            (ref, got), (gref, ggot) = self.run_both(frames, window)
            print(f"frames {frames} window {window}: outputs {rel(got, ref):.2e}, gradients {rel(ggot, gref):.2e}")
            self.assertLess(rel(got, ref), 5e-7, (frames, window))
            self.assertLess(rel(ggot, gref), 5e-7, (frames, window))

    def test_the_window_matters(self):
        # The check above can fail: a window of 2 chunks is not one of 3 once a clip has more than 2 chunks.
        g = torch.Generator().manual_seed(5)
        x = [torch.randn(1, 12, 16, 4, 6, generator=g, dtype=torch.float32) for _ in range(2)]
        t = torch.full((1, 12), 500.0, dtype=torch.float32)
        ctx = torch.randn(1, 5, wan_dit.TINY_SHAPES["text_dim"], generator=g, dtype=torch.float32)
        with torch.no_grad():
            a = self.model.forward_train(*x, t, ctx, 3, 3)
            b = self.model.forward_train(*x, t, ctx, 3, 2)
        self.assertEqual(rel(a[:, :6], b[:, :6]), 0.0)  # chunks 0 and 1 see the same keys under both windows
        self.assertGreater(rel(a[:, 6:], b[:, 6:]), 1e-3)


if __name__ == "__main__":
    unittest.main()

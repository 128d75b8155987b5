"""A causal Wan2.1 DiT in PyTorch (Self-Forcing's CausalWanModel semantics, DESIGN.md section 3), for training the
embedded default model and as the sampler the engine's rollout is checked against.

Tensor names and shapes are the original Wan names runtime/model/wan_weights.cpp reads (patch_embedding,
text_embedding.{0,2}, time_embedding.{0,2}, time_projection.1, blocks.<i>.{modulation, self_attn.*, norm3,
cross_attn.*, ffn.{0,2}}, head.{modulation, head}). The math follows DESIGN.md section 3 line by line:
per-frame timestep modulation, RMS q/k norms over the whole dim, 3D RoPE on adjacent pairs (frame / row /
column split of the head), cross-attention over all text_len positions (the prompt zero-padded), the head
modulated by the unprojected time embedding, unpatchify with the channel fastest.

Two ways to run the same blocks:
  * forward_train: teacher forcing. The clean latents of a clip and their noised copies go through at once;
    a token of clean chunk c attends to the clean chunks inside the KV window ending at c, a token of noisy
    chunk c to the clean chunks before c inside the window plus its own noisy chunk: exactly what a token sees
    in the rollout (where the cache holds the clean re-encoded chunks) when the window is `window_chunks`
    chunks, the current one included.
  * Sampler (sample.py): chunk by chunk over a KV cache, as the engine runs it.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

TINY_SHAPES = dict(dim=256, ffn_dim=768, num_heads=2, num_layers=4, in_dim=16, out_dim=16, text_dim=32, text_len=16,
                   freq_dim=256, eps=1e-6, patch_size=[1, 2, 2], model_type="t2v", qk_norm=True, cross_attn_norm=True)
CONFIG_KEYS = ("dim", "ffn_dim", "num_heads", "num_layers", "in_dim", "out_dim", "text_dim", "text_len",
               "freq_dim", "eps", "patch_size", "model_type", "qk_norm", "cross_attn_norm")


def sinusoid(freq_dim, t):
    """[N] timesteps -> [N, freq_dim] float64: [cos, sin] of t * 10000^(-j / half)."""
    half = freq_dim // 2
    t = t.double()
    arg = torch.outer(t, torch.pow(10000.0, -torch.arange(half, dtype=torch.float64, device=t.device) / half))
    return torch.cat([torch.cos(arg), torch.sin(arg)], dim=1)


def rope_angles(head_dim, f, h, w):
    """Rotation angles [N, head_dim / 2] float64 of tokens at latent frame f, patch row h, patch column w ([N]
    each): the first a/2 pairs by frame (freq 10000^(-2j/a)), the next b/2 by row, the last b/2 by column, with
    a = d - 4 (d // 6) and b = 2 (d // 6)."""
    b = 2 * (head_dim // 6)
    a = head_dim - 2 * b

    def freqs(n):
        return 1.0 / torch.pow(10000.0, torch.arange(0, n, 2, dtype=torch.float64, device=f.device) / n)

    return torch.cat([f.double()[:, None] * freqs(a), h.double()[:, None] * freqs(b), w.double()[:, None] * freqs(b)],
                     dim=1)


def apply_rope(x, cos, sin):
    """x [B, N, heads, d]; cos/sin [N, d/2] (float64 for the exact path, float32 in training): rotates adjacent
    pairs (2i, 2i+1). Computed in cos/sin's dtype, returned in x's."""
    dt = x.dtype
    xp = x.to(cos.dtype).unflatten(-1, (-1, 2))  # [B, N, heads, d/2, 2]
    re, im = xp[..., 0], xp[..., 1]
    c, s = cos[None, :, None], sin[None, :, None]
    return torch.stack([re * c - im * s, re * s + im * c], dim=-1).flatten(-2).to(dt)


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype) * self.weight


def layer_norm(x, eps, weight=None, bias=None):
    return F.layer_norm(x.float(), x.shape[-1:], weight, bias, eps).to(x.dtype)


class Attention(nn.Module):
    def __init__(self, dim, heads, eps):
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        self.norm_q, self.norm_k = RMSNorm(dim, eps), RMSNorm(dim, eps)

    def split(self, x):
        return x.unflatten(-1, (self.heads, -1))  # [B, N, heads, d]


def attend(q, k, v, mask=None):
    """q [B, Nq, heads, d], k/v [B, Nk, heads, d] -> [B, Nq, heads * d]; softmax(q k^T / sqrt(d)) v."""
    o = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask)
    return o.transpose(1, 2).flatten(2)


def window_attend(q, k, v, frames, n, chunk, window_chunks):
    """forward_train's self-attention without a mask: tokens are [clean frames 0..F-1 | noisy frames 0..F-1], n per
    frame. A clean chunk attends to the clean chunks of its window (itself and the window_chunks - 1 before it); a
    noisy chunk to the clean chunks before it in the window and to itself. The same as attend() with forward_train's
    mask (masked keys weigh nothing), as one dense call per chunk and stream: no [N, N] mask, and the fused kernels
    that refuse arbitrary masks run."""
    cn, off = chunk * n, frames * n
    clean, noisy = [], []
    for c in range(frames // chunk):
        lo, at = max(0, c - window_chunks + 1) * cn, c * cn
        clean.append(attend(q[:, at:at + cn], k[:, lo:at + cn], v[:, lo:at + cn]))
        kn = torch.cat([k[:, lo:at], k[:, off + at:off + at + cn]], 1)
        vn = torch.cat([v[:, lo:at], v[:, off + at:off + at + cn]], 1)
        noisy.append(attend(q[:, off + at:off + at + cn], kn, vn))
    return torch.cat(clean + noisy, 1)


class Block(nn.Module):
    def __init__(self, dim, ffn_dim, heads, eps):
        super().__init__()
        self.eps = eps
        self.modulation = nn.Parameter(torch.randn(1, 6, dim) / dim ** 0.5)
        self.self_attn = Attention(dim, heads, eps)
        self.norm3 = nn.LayerNorm(dim, eps=eps)
        self.cross_attn = Attention(dim, heads, eps)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.GELU(approximate="tanh"), nn.Linear(ffn_dim, dim))

    def forward(self, x, e0, rope, text_kv, self_attention):
        """x [B, N, dim]; e0 [B, N, 6, dim] (each token its frame's projected time embedding); rope (cos, sin)
        [N, d/2]; text_kv (k, v) [B, L, heads, d]; self_attention(q, k, v) -> [B, N, dim] with q/k/v
        [B, N, heads, d] of these tokens (it adds cached keys and masks as the caller needs)."""
        m = (self.modulation.float() + e0.float()).unbind(2)  # 6 x [B, N, dim] fp32
        sa = self.self_attn
        h = (layer_norm(x, self.eps).float() * (1 + m[1]) + m[0]).to(x.dtype)
        q = apply_rope(sa.split(sa.norm_q(sa.q(h))), *rope)
        k = apply_rope(sa.split(sa.norm_k(sa.k(h))), *rope)
        v = sa.split(sa.v(h))
        x = x + (sa.o(self_attention(q, k, v)).float() * m[2]).to(x.dtype)
        ca = self.cross_attn
        h = layer_norm(x, self.eps, self.norm3.weight, self.norm3.bias)
        x = x + ca.o(attend(ca.split(ca.norm_q(ca.q(h))), *text_kv))
        h = (layer_norm(x, self.eps).float() * (1 + m[4]) + m[3]).to(x.dtype)
        return x + (self.ffn(h).float() * m[5]).to(x.dtype)

    def text_kv(self, ctx):
        """ctx [B, L, dim] (text_embedding's output) -> cross-attention keys and values [B, L, heads, d]."""
        ca = self.cross_attn
        return ca.split(ca.norm_k(ca.k(ctx))), ca.split(ca.v(ctx))


class CausalWanDiT(nn.Module):
    def __init__(self, cfg=TINY_SHAPES):
        super().__init__()
        self.cfg = dict(cfg)
        d = cfg["dim"]
        self.head_dim = d // cfg["num_heads"]
        self.patch_embedding = nn.Conv3d(cfg["in_dim"], d, kernel_size=tuple(cfg["patch_size"]),
                                         stride=tuple(cfg["patch_size"]))
        self.text_embedding = nn.Sequential(nn.Linear(cfg["text_dim"], d), nn.GELU(approximate="tanh"),
                                            nn.Linear(d, d))
        self.time_embedding = nn.Sequential(nn.Linear(cfg["freq_dim"], d), nn.SiLU(), nn.Linear(d, d))
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(d, 6 * d))
        self.blocks = nn.ModuleList(Block(d, cfg["ffn_dim"], cfg["num_heads"], cfg["eps"])
                                    for _ in range(cfg["num_layers"]))
        self.head = nn.Module()
        self.head.modulation = nn.Parameter(torch.randn(1, 2, d) / d ** 0.5)
        self.head.head = nn.Linear(d, cfg["out_dim"] * math.prod(cfg["patch_size"]))

    # ---- pieces shared by training and sampling ----
    def embed_text(self, context):
        """context [B, L <= text_len, text_dim] -> [B, text_len, dim] after zero-padding to text_len."""
        pad = self.cfg["text_len"] - context.shape[1]
        return self.text_embedding(F.pad(context, (0, 0, 0, pad)))

    def embed_time(self, t):
        """t [B, F] -> (e [B, F, dim], e0 [B, F, 6, dim])."""
        b, f = t.shape
        e = self.time_embedding(sinusoid(self.cfg["freq_dim"], t.flatten()).to(self.head.head.weight.dtype))
        e0 = self.time_projection(e).unflatten(1, (6, -1))
        return e.reshape(b, f, -1), e0.reshape(b, f, 6, -1)

    def patchify(self, x):
        """x [B, F, C, H, W] -> tokens [B, F * (H/2) * (W/2), dim] in (frame, row, column) order."""
        y = self.patch_embedding(x.transpose(1, 2))  # [B, dim, F, H/2, W/2]
        return y.flatten(2).transpose(1, 2)

    def unpatchify(self, y, frames, h, w):
        """y [B, F * h * w, 64] -> [B, F, C, 2h, 2w]; the 64 outputs ordered (pt, ph, pw, channel)."""
        b = y.shape[0]
        c = self.cfg["out_dim"]
        y = y.reshape(b, frames, h, w, 2, 2, c).permute(0, 1, 6, 2, 4, 3, 5)
        return y.reshape(b, frames, c, 2 * h, 2 * w)

    def head_out(self, x, e_tok):
        m = (self.head.modulation.float()[:, None] + e_tok.float()[:, :, None]).unbind(2)  # 2 x [B, N, dim]
        h = (layer_norm(x, self.cfg["eps"]).float() * (1 + m[1]) + m[0]).to(x.dtype)
        return self.head.head(h)

    def token_coords(self, frames, h, w, device):
        """(frame, row, column) [N] of the tokens of `frames` (a [F] tensor of latent frame indices)."""
        ff = frames[:, None, None].expand(-1, h, w)
        hh = torch.arange(h, device=device)[None, :, None].expand(len(frames), h, w)
        ww = torch.arange(w, device=device)[None, None, :].expand(len(frames), h, w)
        return ff.flatten(), hh.flatten(), ww.flatten()

    # ---- training: teacher forcing under the rollout's chunk-causal window ----
    def forward_train(self, clean, noisy, t_noisy, context, chunk, window_chunks, masked=False):
        """clean/noisy [B, F, C, H, W] (F a multiple of `chunk`); t_noisy [B, F] (one value per chunk);
        context [B, L, text_dim]. Returns the predicted flow of the noisy frames [B, F, C, H, W]. masked=True
        attends through one [N, N] mask (the definition; slow) instead of window_attend's per-chunk calls."""
        b, f, _, hh, ww = clean.shape
        h, w = hh // 2, ww // 2
        n = h * w
        dev = clean.device
        x = torch.cat([self.patchify(clean), self.patchify(noisy)], 1).float()  # [B, 2 F n, dim], fp32 stream
        t = torch.cat([torch.zeros_like(t_noisy), t_noisy], 1)  # [B, 2F]: the clean stream at t = 0
        e, e0 = self.embed_time(t)
        e_tok, e0_tok = e.repeat_interleave(n, 1), e0.repeat_interleave(n, 1)
        fr = torch.arange(f, device=dev)
        cf, ch, cw = self.token_coords(torch.cat([fr, fr]), h, w, dev)
        ang = rope_angles(self.head_dim, cf, ch, cw).float()
        rope = (torch.cos(ang), torch.sin(ang))
        ctx = self.embed_text(context)
        if masked:
            # Which tokens see which: chunk index and stream (0 clean, 1 noisy) per token.
            tok_chunk = torch.cat([fr, fr]).repeat_interleave(n) // chunk
            tok_noisy = torch.arange(2, device=dev).repeat_interleave(f * n)
            qc, kc = tok_chunk[:, None], tok_chunk[None, :]
            qn, kn = tok_noisy[:, None], tok_noisy[None, :]
            in_window = (kc <= qc) & (kc > qc - window_chunks)
            mask = in_window & (kn == 0) & ~((qn == 1) & (kc == qc))  # clean keys; a noisy chunk not its clean twin
            mask |= (qn == 1) & (kn == 1) & (kc == qc)  # ... but its own noisy chunk
            self_attention = lambda q, k, v: attend(q, k, v, mask)  # noqa: E731
        else:
            self_attention = lambda q, k, v: window_attend(q, k, v, f, n, chunk, window_chunks)  # noqa: E731
        for blk in self.blocks:
            text_kv = blk.text_kv(ctx)
            x = blk(x, e0_tok, rope, text_kv, self_attention)
        out = self.head_out(x[:, f * n:], e_tok[:, f * n:])
        return self.unpatchify(out, f, h, w)


def init_weights_(model, seed):
    """Seeded init: Linear / Conv N(0, 1/fan_in) (xavier-like), biases 0, norm gains 1; the output head and
    the projections that feed the residual stream (self_attn.o, cross_attn.o, ffn.2) scaled by 0.1."""
    g = torch.Generator().manual_seed(seed)
    for name, p in sorted(model.named_parameters()):
        with torch.no_grad():
            if name.endswith("modulation"):
                p.copy_(torch.randn(tuple(p.shape), generator=g) * 0.02)
            elif name.endswith("bias"):
                p.zero_()
            elif p.ndim == 1:
                p.fill_(1.0)
            else:
                s = 1.0 / math.sqrt(math.prod(p.shape[1:]))
                if name.endswith(("o.weight", "ffn.2.weight", "head.head.weight")):
                    s *= 0.1
                p.copy_(torch.randn(tuple(p.shape), generator=g) * s)

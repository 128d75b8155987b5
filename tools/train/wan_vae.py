"""A tiny Wan2.1 VAE in PyTorch: the decoder longroll runs (runtime/vae/, DESIGN.md section 5) and an encoder to
train it with.

The decoder has exactly the tensor names and shapes runtime/vae/wan_vae_weights.cpp reads
(wan_vae_weight_specs: "conv2.*", "decoder.conv1.*", "decoder.middle.{0,1,2}.*", "decoder.upsamples.<k>.*",
"decoder.head.{0,2}.*") and the decode semantics of the engine's streaming decoder, written here for a whole
clip at once: every causal conv pads the past with 2 zero frames; the time conv of an upsample3d skips the
first frame (it passes through as one frame) and turns every later frame into two; the middle attention is
single-head spatial attention per frame; RMS_norm is L2-normalise over channels * sqrt(C) * gamma.

The encoder mirrors the decoder (Wan's Encoder3d layout: conv1, downsamples, middle, head, then conv1 of the
VAE to mean and log-variance); the engine never reads it, so its temporal downsampling is the simplest causal
one: the first frame alone, then strided time convs over the rest. A clip of 1 + 4k frames gives 1 + k latent
frames, each 8x smaller in both directions.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

TINY = dict(dim=8, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, temperal_downsample=[False, True, True])


class CausalConv3d(nn.Conv3d):
    """Conv3d whose time axis sees only the past: 2 * pad_t zero frames in front, none behind."""

    def __init__(self, cin, cout, kernel, stride=1, padding=0):
        super().__init__(cin, cout, kernel, stride=stride, padding=0)
        p = (padding,) * 3 if isinstance(padding, int) else tuple(padding)
        self.pads = (p[2], p[2], p[1], p[1], 2 * p[0], 0)

    def forward(self, x):  # [B, C, T, H, W]
        return super().forward(F.pad(x, self.pads))


class RMSNorm(nn.Module):
    """F.normalize over channels * sqrt(C) * gamma (Wan's RMS_norm without bias)."""

    def __init__(self, dim, images):
        super().__init__()
        self.scale = dim ** 0.5
        self.gamma = nn.Parameter(torch.ones((dim, 1, 1) if images else (dim, 1, 1, 1)))

    def forward(self, x):
        return F.normalize(x, dim=1) * self.scale * self.gamma


class ResidualBlock(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.residual = nn.Sequential(RMSNorm(cin, False), nn.SiLU(), CausalConv3d(cin, cout, 3, padding=1),
                                      RMSNorm(cout, False), nn.SiLU(), nn.Identity(),
                                      CausalConv3d(cout, cout, 3, padding=1))
        self.shortcut = CausalConv3d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x):
        return self.shortcut(x) + self.residual(x)


class AttentionBlock(nn.Module):
    """Single-head attention over the pixels of each frame."""

    def __init__(self, dim):
        super().__init__()
        self.norm = RMSNorm(dim, True)
        self.to_qkv = nn.Conv2d(dim, dim * 3, 1)
        self.proj = nn.Conv2d(dim, dim, 1)

    def forward(self, x):  # [B, C, T, H, W]
        b, c, t, h, w = x.shape
        y = x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
        qkv = self.to_qkv(self.norm(y)).reshape(b * t, 3 * c, h * w).transpose(1, 2)  # [BT, HW, 3C]
        q, k, v = qkv[:, None].chunk(3, dim=-1)  # [BT, 1, HW, C]
        y = F.scaled_dot_product_attention(q, k, v)[:, 0].transpose(1, 2).reshape(b * t, c, h, w)
        y = self.proj(y).reshape(b, t, c, h, w).permute(0, 2, 1, 3, 4)
        return x + y


def _per_frame(fn, x):
    """Applies a 2D module to every frame of [B, C, T, H, W]."""
    b, c, t, h, w = x.shape
    y = fn(x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w))
    return y.reshape(b, t, *y.shape[1:]).permute(0, 2, 1, 3, 4)


class Upsample(nn.Module):
    """Wan's Resample in upsample2d / upsample3d mode, channels halved."""

    def __init__(self, dim, temporal):
        super().__init__()
        self.temporal = temporal
        self.resample = nn.Sequential(nn.Upsample(scale_factor=2.0, mode="nearest"), nn.Conv2d(dim, dim // 2, 3, padding=1))
        if temporal:
            self.time_conv = CausalConv3d(dim, dim * 2, (3, 1, 1), padding=(1, 0, 0))

    def forward(self, x):  # [B, C, T, H, W]
        if self.temporal and x.shape[2] > 1:
            b, c, t, h, w = x.shape
            y = self.time_conv(x[:, :, 1:]).reshape(b, 2, c, t - 1, h, w)  # the first frame skips the time conv
            y = torch.stack((y[:, 0], y[:, 1]), 3).reshape(b, c, 2 * (t - 1), h, w)  # frame pairs interleaved
            x = torch.cat([x[:, :, :1], y], 2)
        return _per_frame(self.resample, x)


class Downsample(nn.Module):
    """Halves H and W (and, temporal, the frames after the first: 1 + 2k -> 1 + k)."""

    def __init__(self, dim, temporal):
        super().__init__()
        self.temporal = temporal
        self.resample = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(dim, dim, 3, stride=2))
        if temporal:
            self.time_conv = nn.Conv3d(dim, dim, (3, 1, 1), stride=(2, 1, 1))

    def forward(self, x):
        x = _per_frame(self.resample, x)
        if self.temporal and x.shape[2] > 1:
            rest = F.pad(x[:, :, 1:], (0, 0, 0, 0, 1, 0))  # one zero frame in front: frames (2j-1, 2j, 2j+1)
            x = torch.cat([x[:, :, :1], self.time_conv(rest)], 2)
        return x


class Decoder3d(nn.Module):
    def __init__(self, dim, z_dim, dim_mult, num_res_blocks, temperal_upsample):
        super().__init__()
        dims = [dim * u for u in [dim_mult[-1]] + dim_mult[::-1]]  # 32 32 32 16 8 for dim 8
        self.conv1 = CausalConv3d(z_dim, dims[0], 3, padding=1)
        self.middle = nn.Sequential(ResidualBlock(dims[0], dims[0]), AttentionBlock(dims[0]),
                                    ResidualBlock(dims[0], dims[0]))
        ups = []
        for i, (cin, cout) in enumerate(zip(dims[:-1], dims[1:])):
            if i > 0:
                cin //= 2  # the previous resample halved the channels
            for _ in range(num_res_blocks + 1):
                ups.append(ResidualBlock(cin, cout))
                cin = cout
            if i != len(dim_mult) - 1:
                ups.append(Upsample(cout, temperal_upsample[i]))
        self.upsamples = nn.Sequential(*ups)
        self.head = nn.Sequential(RMSNorm(dims[-1], False), nn.SiLU(), CausalConv3d(dims[-1], 3, 3, padding=1))

    def forward(self, z):
        return self.head(self.upsamples(self.middle(self.conv1(z))))


class Encoder3d(nn.Module):
    def __init__(self, dim, z_dim, dim_mult, num_res_blocks, temperal_downsample):
        super().__init__()
        dims = [dim * u for u in [1] + dim_mult]  # 8 8 16 32 32
        self.conv1 = CausalConv3d(3, dims[0], 3, padding=1)
        downs = []
        for i, (cin, cout) in enumerate(zip(dims[:-1], dims[1:])):
            for _ in range(num_res_blocks):
                downs.append(ResidualBlock(cin, cout))
                cin = cout
            if i != len(dim_mult) - 1:
                downs.append(Downsample(cout, temperal_downsample[i]))
        self.downsamples = nn.Sequential(*downs)
        self.middle = nn.Sequential(ResidualBlock(dims[-1], dims[-1]), AttentionBlock(dims[-1]),
                                    ResidualBlock(dims[-1], dims[-1]))
        self.head = nn.Sequential(RMSNorm(dims[-1], False), nn.SiLU(), CausalConv3d(dims[-1], z_dim * 2, 3, padding=1))

    def forward(self, x):
        return self.head(self.middle(self.downsamples(self.conv1(x))))


class WanVAE(nn.Module):
    """encode: video [B, 3, 1 + 4k, H, W] in [-1, 1] -> (mu, logvar) [B, 16, 1 + k, H/8, W/8];
    decode: de-normalised z (z * std + mean) -> video, unclamped."""

    def __init__(self, dim=8, z_dim=16, dim_mult=(1, 2, 4, 4), num_res_blocks=2,
                 temperal_downsample=(False, True, True)):
        super().__init__()
        dim_mult, td = list(dim_mult), list(temperal_downsample)
        self.z_dim = z_dim
        self.encoder = Encoder3d(dim, z_dim, dim_mult, num_res_blocks, td)
        self.conv1 = CausalConv3d(z_dim * 2, z_dim * 2, 1)
        self.conv2 = CausalConv3d(z_dim, z_dim, 1)
        self.decoder = Decoder3d(dim, z_dim, dim_mult, num_res_blocks, td[::-1])

    def encode(self, x):
        mu, logvar = self.conv1(self.encoder(x)).chunk(2, dim=1)
        return mu, logvar.clamp(-30.0, 20.0)

    def decode(self, z):
        return self.decoder(self.conv2(z))


def decoder_state_dict(vae):
    """The tensors the engine reads: conv2.* and decoder.*."""
    return {k: v for k, v in vae.state_dict().items() if k.startswith(("conv2.", "decoder."))}


def config_json(mean, std, cfg=TINY):
    """__metadata__["config"] of the shipped decoder (runtime/vae/wan_vae_weights.h wan_vae_config_from_checkpoint)."""
    return {"model_type": "wan2.1_vae", "z_dim": cfg["z_dim"], "dim": cfg["dim"], "dim_mult": cfg["dim_mult"],
            "num_res_blocks": cfg["num_res_blocks"], "temperal_upsample": cfg["temperal_downsample"][::-1],
            "latents_mean": [float(v) for v in mean], "latents_std": [float(v) for v in std]}


def init_weights_(vae, seed):
    """Seeded init: convs N(0, 1/fan_in) (0.5x for the RGB head), biases 0, gains 1; the attention and the
    residual branches' last convs start small so that every block starts near identity."""
    g = torch.Generator().manual_seed(seed)
    for name, p in sorted(vae.named_parameters()):
        with torch.no_grad():
            if name.endswith(".gamma"):
                p.fill_(1.0)
            elif name.endswith(".bias"):
                p.zero_()
            else:
                s = 1.0 / math.sqrt(math.prod(p.shape[1:]))
                if name.endswith(("residual.6.weight", "proj.weight")):
                    s *= 0.1
                p.copy_(torch.randn(tuple(p.shape), generator=g) * s)

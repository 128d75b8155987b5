#!/usr/bin/env python3
"""VAE parity fixtures for longroll, produced by the public PyTorch reference (Self-Forcing's Wan2.1 VAE).

    python3 tools/make_vae_fixtures.py --reference-self-forcing /path/to/Self-Forcing \
        --self-forcing-commit <sha> --out tests/data/vae

The reference code is imported from the checkout given on the command line (nothing of it is copied
here): wan/modules/vae.py (WanVAE_, Decoder3d, the per-latent-frame decode loop with its feature cache)
and utils/wan_wrapper.py (WanVAEWrapper: the latent mean/std and decode_to_pixel's clamp). A tiny VAE of
the real structure (base dim 8 instead of 96: decoder channels 32/32/16/8 instead of 384/384/192/96)
gets seeded random weights, and the script runs the reference decode on CPU in float32.
tests/data/vae/README.md documents every file.

What this script changes in the reference at run time (and only in this process):
  * torch.cuda.current_device() returns 0 while the reference modules are imported, and the packages
    `wan` and `wan.modules` are created empty instead of running their __init__.py (as in
    make_parity_fixtures.py).
  * WanVAEWrapper's constructor loads "wan_models/Wan2.1-T2V-1.3B/Wan2.1_VAE.pth" through
    `_video_vae`; that name returns the seeded tiny WanVAE_ instead.
Nothing else is replaced: the decode loop, the caches, the upsampling and the clamp are the reference's.
"""

import argparse
import contextlib
import io
import json
import math
import os
import sys
import types

try:
    import torch
except ImportError:  # pragma: no cover
    sys.stderr.write("make_vae_fixtures.py needs torch, safetensors and numpy (einops, transformers, diffusers "
                     "for the reference code)\n")
    sys.exit(2)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_parity_fixtures import file_digests, save  # noqa: E402  (same file format and canonical headers)

SEED = 20260404
# The reference's _video_vae config with dim 96 -> 8; everything else as in Wan2.1.
TINY_VAE = dict(dim=8, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                temperal_downsample=[False, True, True], dropout=0.0)
T, LATENT_H, LATENT_W = 7, 4, 6       # 1 + 2 chunks of 3 latent frames
CHUNKS = [[0, 1], [1, 4], [4, 7]]     # the streaming split checked against the whole-clip decode
REFERENCE_FILES = ["wan/modules/vae.py", "utils/wan_wrapper.py", "pipeline/causal_inference.py", "inference.py"]
_REF_TOPLEVEL = ("wan", "utils", "pipeline", "demo_utils")


def load_reference(root):
    """Imports wan.modules.vae and utils.wan_wrapper from the checkout at `root`."""
    root = os.path.abspath(root)
    for name in list(sys.modules):
        if name.split(".")[0] in _REF_TOPLEVEL:
            del sys.modules[name]
    for pkg in ("wan", "wan.modules"):
        m = types.ModuleType(pkg)
        m.__path__ = [os.path.join(root, *pkg.split("."))]
        sys.modules[pkg] = m
    sys.path.insert(0, root)
    saved_current_device = torch.cuda.current_device
    torch.cuda.current_device = lambda: 0
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            vae = __import__("wan.modules.vae", fromlist=["_"])
            wrapper = __import__("utils.wan_wrapper", fromlist=["_"])
    finally:
        torch.cuda.current_device = saved_current_device
        sys.path.remove(root)
    return vae, wrapper


def random_weights(model, seed):
    """Seeded weights for every tensor of WanVAE_ (encoder included, so that the model loads strictly),
    rounded to bfloat16 values: the file stores them as BF16 and the reference runs on the same values in
    float32. Nothing is zero: RMS_norm gains 1 + N(0, 0.1^2), biases N(0, 0.05^2), conv weights
    N(0, s^2) with s = 1/sqrt(fan_in) (0.5/sqrt(fan_in) for the RGB head, so that most output pixels lie
    inside the clamp range)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, p in sorted(model.state_dict().items()):
        shape = tuple(p.shape)
        r = torch.randn(shape, generator=g, dtype=torch.float64)
        if name.endswith(".gamma"):
            t = 1.0 + 0.1 * r
        elif name.endswith(".bias"):
            t = 0.05 * r
        else:  # Conv3d [out, in, kt, kh, kw] / Conv2d [out, in, kh, kw]
            gain = 0.5 if name == "decoder.head.2.weight" else 1.0
            t = gain / math.sqrt(math.prod(shape[1:])) * r
        out[name] = t.to(torch.bfloat16).to(torch.float32).contiguous()
    return out


def is_decoder_tensor(name):
    return name.startswith("decoder.") or name.startswith("conv2.")


def diffusers_check(vae_cfg, weights, z_denorm, want_raw):
    """Loads the weights into diffusers' AutoencoderKLWan through diffusers' own converter (strictly) and
    decodes. Returns (original -> diffusers names of the decoder tensors, rel err vs the reference), or
    (None, reason) without diffusers."""
    try:
        from diffusers import AutoencoderKLWan
        from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers
        from diffusers.utils import logging as diffusers_logging
        diffusers_logging.set_verbosity_error()
    except ImportError as e:
        return None, f"diffusers not available: {e}"
    names = {}
    for name in sorted(weights):
        converted = convert_wan_vae_to_diffusers({name: weights[name]})
        (new,) = converted.keys()
        if is_decoder_tensor(name):
            names[name] = new
    converted = convert_wan_vae_to_diffusers(dict(weights))
    torch.manual_seed(0)
    m = AutoencoderKLWan(base_dim=vae_cfg["dim"], z_dim=vae_cfg["z_dim"], dim_mult=vae_cfg["dim_mult"],
                         num_res_blocks=vae_cfg["num_res_blocks"], attn_scales=vae_cfg["attn_scales"],
                         temperal_downsample=vae_cfg["temperal_downsample"], dropout=0.0)
    m.load_state_dict(converted, strict=True)
    m = m.float().eval()
    with torch.no_grad():
        got = m.decode(z_denorm, return_dict=False)[0]
    return names, rel_err(got, want_raw.clamp(-1, 1))


def rel_err(a, b):
    a, b = a.double(), b.double()
    return [float((a - b).norm() / b.norm()), float((a - b).abs().max())]


def frames_first(x):
    """[1, C, T, H, W] -> [T, C, H, W]"""
    return x[0].permute(1, 0, 2, 3).contiguous()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reference-self-forcing", required=True, help="Self-Forcing checkout (work tree)")
    ap.add_argument("--self-forcing-commit", default="unknown", help="recorded in the metadata")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    torch.set_default_dtype(torch.float32)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    os.makedirs(a.out, exist_ok=True)
    out = lambda name: os.path.join(a.out, name)  # noqa: E731
    report = {}
    provenance = {
        "generator": "tools/make_vae_fixtures.py", "torch": torch.__version__,
        "self_forcing": {"commit": a.self_forcing_commit,
                         "sha256_16": file_digests(a.reference_self_forcing, REFERENCE_FILES)},
    }

    ref_vae, ref_wrapper = load_reference(a.reference_self_forcing)

    # ---------------- the tiny VAE ----------------
    torch.manual_seed(0)  # the constructor draws its own init; it is overwritten below
    model = ref_vae.WanVAE_(**TINY_VAE)
    weights = random_weights(model, SEED)
    model.load_state_dict(weights, strict=True)
    model = model.float().eval().requires_grad_(False)

    # WanVAEWrapper as Self-Forcing builds it, around the tiny model.
    saved = ref_wrapper._video_vae
    ref_wrapper._video_vae = lambda pretrained_path=None, z_dim=None, **kw: model
    try:
        wrapper = ref_wrapper.WanVAEWrapper()
    finally:
        ref_wrapper._video_vae = saved
    assert wrapper.model is model

    cfg_json = {"model_type": "wan2.1_vae", "z_dim": TINY_VAE["z_dim"], "dim": TINY_VAE["dim"],
                "dim_mult": TINY_VAE["dim_mult"], "num_res_blocks": TINY_VAE["num_res_blocks"],
                "temperal_upsample": TINY_VAE["temperal_downsample"][::-1],
                "latents_mean": wrapper.mean.tolist(), "latents_std": wrapper.std.tolist()}
    save(out("weights_tiny_vae.safetensors"),
         {k: v.to(torch.bfloat16) for k, v in weights.items() if is_decoder_tensor(k)},
         {"config": cfg_json, "provenance": provenance})

    # ---------------- decode ----------------
    g = torch.Generator().manual_seed(SEED + 1)
    latents = torch.randn([T, TINY_VAE["z_dim"], LATENT_H, LATENT_W], generator=g)  # [T, 16, h, w]
    z = latents[None]  # [1, T, 16, h, w], the rollout's layout, as decode_to_pixel takes it

    # Intermediates of the reference decode (one decoder call per latent frame).
    inter = {"conv2": [], "middle": [], "upsample0": []}
    hooks = [model.conv2.register_forward_hook(lambda m, i, o: inter["conv2"].append(o.detach().clone())),
             # the decoder runs the middle Sequential layer by layer: its output is the last block's
             model.decoder.middle[2].register_forward_hook(
                 lambda m, i, o: inter["middle"].append(o.detach().clone())),
             model.decoder.upsamples[3].register_forward_hook(
                 lambda m, i, o: inter["upsample0"].append(o.detach().clone()))]
    assert model.decoder.upsamples[3].mode == "upsample3d"
    scale = [wrapper.mean, 1.0 / wrapper.std]  # exactly what decode_to_pixel passes
    with torch.no_grad():
        raw = model.decode(z.permute(0, 2, 1, 3, 4), scale)  # [1, 3, F, H, W], before the clamp
    for h in hooks:
        h.remove()
    with torch.no_grad():
        video = wrapper.decode_to_pixel(z)  # [1, F, 3, H, W], clamped to [-1, 1]
    assert torch.equal(video[0], frames_first(raw).clamp(-1, 1)), "decode_to_pixel != clamp(decode)"
    n_frames = raw.shape[2]
    assert n_frames == 1 + 4 * (T - 1), n_frames

    # pipeline/causal_inference.py: (video * 0.5 + 0.5).clamp(0, 1); inference.py: 255.0 * video in
    # [b, t, h, w, c], then torchvision.io.write_video: torch.as_tensor(video, dtype=torch.uint8), which
    # truncates toward zero.
    pixels = (video * 0.5 + 0.5).clamp(0, 1)
    u8 = torch.as_tensor(255.0 * pixels.permute(0, 1, 3, 4, 2), dtype=torch.uint8)[0]  # [F, H, W, 3]

    conv2 = frames_first(inter["conv2"][0])                                # [T, 16, h, w]
    middle = torch.cat([frames_first(x) for x in inter["middle"]])        # [T, 32, h, w]
    up0 = torch.cat([frames_first(x) for x in inter["upsample0"]])        # [1 + 2 (T-1), 16, 2h, 2w]

    # The reference's own streaming path (cached_decode keeps the feature cache between calls).
    model.clear_cache()
    with torch.no_grad():
        parts = [model.cached_decode(z[:, c0:c1].permute(0, 2, 1, 3, 4), scale) for c0, c1 in CHUNKS]
    model.clear_cache()
    chunked = torch.cat(parts, dim=2)
    report["reference chunked (1, 3, 3) vs whole-clip decode, max abs"] = float((chunked - raw).abs().max())

    # float64 rerun: the fixture's own float32 error.
    m64 = ref_vae.WanVAE_(**TINY_VAE)
    m64.load_state_dict(weights, strict=True)
    m64 = m64.double().eval()
    with torch.no_grad():
        raw64 = m64.decode(z.permute(0, 2, 1, 3, 4).double(), [scale[0].double(), scale[1].double()])
    report["video_raw float32 vs float64 (rel, maxabs)"] = rel_err(raw, raw64)
    report["fraction of output values clamped"] = float((raw.abs() > 1).double().mean())
    report["decoded frames"] = n_frames

    z_denorm = z.permute(0, 2, 1, 3, 4) / scale[1].view(1, -1, 1, 1, 1) + scale[0].view(1, -1, 1, 1, 1)
    names, diff = diffusers_check(TINY_VAE, weights, z_denorm, raw)
    report["diffusers AutoencoderKLWan vs reference (rel, maxabs)"] = diff

    case = {"latent_frames": T, "latent_height": LATENT_H, "latent_width": LATENT_W, "frames": n_frames,
            "height": 8 * LATENT_H, "width": 8 * LATENT_W, "weights": "weights_tiny_vae.safetensors",
            "chunks": CHUNKS}
    meta = {"case": case, "provenance": provenance}
    if names is not None:
        meta["diffusers_names"] = names
    save(out("decode_tiny.safetensors"), {
        "latents": latents, "video_raw": frames_first(raw), "video_u8": u8,
        "conv2": conv2, "middle": middle, "upsample0": up0,
    }, meta)

    with open(out("report.json") + ".tmp", "w") as fh:
        json.dump(report, fh, indent=1, sort_keys=True)
        fh.write("\n")
    os.replace(out("report.json") + ".tmp", out("report.json"))
    json.dump(report, sys.stdout, indent=1, sort_keys=True)
    print()


if __name__ == "__main__":
    main()

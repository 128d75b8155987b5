"""The shipped model directory (models/tiny-shapes/): what train.py's export writes and what the sampler, the
checks and the quality harness load.

    dit.safetensors       the DiT, original Wan names, BF16, __metadata__["config"] (Wan config.json names) and
                          ["rollout"] (the sampling settings, the same as in tiny-shapes.textproto)
    vae.safetensors       the VAE decoder (conv2.*, decoder.*), BF16, __metadata__["config"] with the latent
                          mean / std the engine de-normalises with
    text.safetensors      `word_embeddings` [vocab, text_dim] F32, __metadata__["vocab"] (JSON list): a caption's
                          prompt embedding is the rows of its words, in order ([L, text_dim], L <= text_len)
    prompt.safetensors    `context` of the default caption (what `longroll generate` uses with no --prompt-embeds)
    tiny-shapes.textproto the longroll config the engine runs the model with (frame size, steps, window)
"""

import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import procgen  # noqa: E402
import wan_dit  # noqa: E402
import wan_vae  # noqa: E402
from sf_ref import load_safetensors as read_safetensors  # noqa: E402,F401
from sf_ref import save_safetensors as write_safetensors  # noqa: E402,F401

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_DIR = os.path.join(REPO, "models", "tiny-shapes")


def caption_ids(vocab, caption):
    words = caption.strip().lower().split()
    missing = [w for w in words if w not in vocab]
    if missing:
        raise ValueError(f"words not in the model's vocabulary: {missing} (vocabulary: {' '.join(vocab)})")
    return [vocab.index(w) for w in words]


class Shipped:
    def __init__(self, path):
        dit_t, dit_meta = read_safetensors(os.path.join(path, "dit.safetensors"))
        cfg = json.loads(dit_meta["config"])
        self.rollout = json.loads(dit_meta["rollout"])
        self.width, self.height = self.rollout["width"], self.rollout["height"]
        self.dit = wan_dit.CausalWanDiT({**wan_dit.TINY_SHAPES, **cfg}).float().eval()
        self.dit.load_state_dict({k: v.float() for k, v in dit_t.items()}, strict=True)
        vae_t, vae_meta = read_safetensors(os.path.join(path, "vae.safetensors"))
        vcfg = json.loads(vae_meta["config"])
        self.vae = wan_vae.WanVAE(dim=vcfg["dim"], z_dim=vcfg["z_dim"], dim_mult=vcfg["dim_mult"],
                                  num_res_blocks=vcfg["num_res_blocks"],
                                  temperal_downsample=vcfg["temperal_upsample"][::-1]).float().eval()
        missing = self.vae.load_state_dict({k: v.float() for k, v in vae_t.items()}, strict=False).missing_keys
        assert all(k.startswith(("encoder.", "conv1.")) for k in missing), missing
        self.mean = torch.tensor(vcfg["latents_mean"])
        self.std = torch.tensor(vcfg["latents_std"])
        text_t, text_meta = read_safetensors(os.path.join(path, "text.safetensors"))
        self.words = text_t["word_embeddings"].float()
        self.vocab = json.loads(text_meta["vocab"])
        self.default_caption = text_meta["default_caption"]

    def context(self, caption):
        """[L, text_dim] prompt embedding of a caption."""
        return self.words[caption_ids(self.vocab, caption)]

    @torch.no_grad()
    def decode(self, latents):
        """latents [T, 16, h, w] (normalised, what the DiT makes) -> frames [1 + 4 (T - 1), 3, 8h, 8w] in [-1, 1]."""
        z = latents.float().transpose(0, 1)[None] * self.std[None, :, None, None, None] + \
            self.mean[None, :, None, None, None]
        return self.vae.decode(z).clamp(-1, 1)[0].transpose(0, 1)


def load(path=DEFAULT_DIR):
    return Shipped(path)


def vocab():
    return list(procgen.VOCAB)

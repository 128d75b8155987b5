#!/usr/bin/env python3
"""One full-width UMT5-XXL layer and transformers' outputs for it: the input of `text_bench --layer-check DIR`.

    python3 tests/data/text/make_xxl_layer_fixture.py --out DIR [--device cuda]       # on the GPU machine

UMT5EncoderModel with UMT5-XXL's widths (d_model 4096, 64 heads of 64, d_ff 10240 gated-GELU, 32 buckets / max
distance 128, eps 1e-6) but one layer and a vocabulary of 512 (the layer does not depend on the vocabulary's size;
the 256384-row table would only make the files 2 GB larger). Random weights at the scales of
tests/data/text/make_fixtures.py (projections ~ N(0, 1/in), norm weights 1 + 0.2 N(0, 1), the position bias
N(0, 1)), rounded to bf16 so that the bf16 file and the fp32 reference hold the same values. Writes to DIR:

  umt5_xxl_layer_hf.safetensors        the weights under Hugging Face's names (shared.weight, encoder.block.0...),
                                       bf16 (~0.4 GB)
  umt5_xxl_layer_expected.safetensors  per prompt i: ids_i (I32 [L]), context_i (F32 [L, 4096]: transformers in
                                       fp32 on --device, TF32 off) and context_bf16_i (transformers with the model
                                       in bf16 on the same device, widened: the yardstick for longroll's bf16 error)
  provenance.json                      versions, device, the bf16-vs-fp32 errors of transformers itself and of
                                       an emulation of longroll's bf16 roundings (what text_bench should find)

Prompts, as Wan's pipeline runs the encoder (padded to 512 with an attention mask, the first L outputs kept):
0 = 512 tokens (511 random ids + </s>, mask all ones); 1 = 300 random ids + </s> padded to 512.
"""

import argparse
import json
import math
import os

import torch

PAD_TO = 512


def bucket(rel, num_buckets=32, max_distance=128):
    """T5's bidirectional relative position bucket (transformers' _relative_position_bucket), elementwise."""
    half = num_buckets // 2
    out = (rel > 0).long() * half
    dist = rel.abs()
    exact = half // 2
    large = exact + (torch.log(dist.float().clamp(min=1) / exact) / math.log(max_distance / exact)
                     * (half - exact)).long()
    return out + torch.where(dist < exact, dist, large.clamp(max=half - 1))


def emulate_longroll(sd, ids, heads, eps=1e-6):
    """The layer with longroll's bf16 rounding points (umt5_encoder_cuda.h) in fp32 arithmetic: the norm outputs,
    q/k/v, the attention output, gate, up and their product, the final norm; the residual stream stays fp32."""
    bf = lambda t: t.to(torch.bfloat16).float()  # noqa: E731
    rms = lambda x, g: x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * g  # noqa: E731
    p = "encoder.block.0.layer."
    w = {k: v.float() for k, v in sd.items()}
    L = len(ids)
    x = w["shared.weight"][torch.tensor(ids, device=w["shared.weight"].device)]
    h = bf(rms(x, w[p + "0.layer_norm.weight"]))
    q, k, v = (bf(h @ w[p + f"0.SelfAttention.{n}.weight"].T).view(L, heads, -1).transpose(0, 1) for n in "qkv")
    pos = torch.arange(L, device=x.device)
    bias = w[p + "0.SelfAttention.relative_attention_bias.weight"][bucket(pos[None, :] - pos[:, None])]
    a = bf(torch.softmax(q @ k.transpose(1, 2) + bias.permute(2, 0, 1), -1) @ v).transpose(0, 1).reshape(L, -1)
    x = x + a @ w[p + "0.SelfAttention.o.weight"].T
    h = bf(rms(x, w[p + "1.layer_norm.weight"]))
    g = bf(h @ w[p + "1.DenseReluDense.wi_0.weight"].T)
    u = bf(h @ w[p + "1.DenseReluDense.wi_1.weight"].T)
    x = x + bf(torch.nn.functional.gelu(g, approximate="tanh") * u) @ w[p + "1.DenseReluDense.wo.weight"].T
    return bf(rms(x, w["encoder.final_layer_norm.weight"]))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--seed", type=int, default=16)
    ap.add_argument("--d-model", type=int, default=4096, help="smaller only for a smoke test on the CPU")
    ap.add_argument("--d-ff", type=int, default=10240)
    ap.add_argument("--heads", type=int, default=64)
    args = ap.parse_args()

    import transformers
    from safetensors.torch import save_file
    from transformers import UMT5Config, UMT5EncoderModel

    # The reference must be fp32 throughout: no TF32 in its matmuls.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    vocab = 512
    cfg = UMT5Config(vocab_size=vocab, d_model=args.d_model, d_kv=64, d_ff=args.d_ff, num_layers=1,
                     num_heads=args.heads, relative_attention_num_buckets=32, relative_attention_max_distance=128,
                     feed_forward_proj="gated-gelu", dropout_rate=0.0, layer_norm_epsilon=1e-6,
                     tie_word_embeddings=True)
    model = UMT5EncoderModel(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layer_norm" in name:
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            elif "relative_attention_bias" in name:
                p.copy_(torch.randn_like(p))
            elif name == "shared.weight":
                p.copy_(torch.randn_like(p))
            else:
                p.copy_(torch.randn_like(p) * p.shape[-1] ** -0.5)
            p.copy_(p.to(torch.bfloat16).to(torch.float32))
    os.makedirs(args.out, exist_ok=True)
    sd = {k: v.to(torch.bfloat16).contiguous() for k, v in model.state_dict().items()
          if k != "encoder.embed_tokens.weight"}
    save_file(sd, os.path.join(args.out, "umt5_xxl_layer_hf.safetensors"), metadata={"format": "pt"})

    gen = torch.Generator().manual_seed(args.seed + 1)
    prompts = []
    for n in (PAD_TO - 1, 300):
        ids = torch.randint(3, vocab, (n,), generator=gen).tolist() + [1]
        prompts.append(ids)

    model = model.to(device)
    model_bf16 = UMT5EncoderModel(cfg).eval()
    model_bf16.load_state_dict(model.state_dict())
    model_bf16 = model_bf16.to(device=device, dtype=torch.bfloat16)
    expected, checks = {}, []
    with torch.inference_mode():
        for i, ids in enumerate(prompts):
            padded = torch.zeros(1, PAD_TO, dtype=torch.long)
            padded[0, :len(ids)] = torch.tensor(ids)
            mask = torch.zeros(1, PAD_TO, dtype=torch.long)
            mask[0, :len(ids)] = 1
            padded, mask = padded.to(device), mask.to(device)
            ref = model(input_ids=padded, attention_mask=mask).last_hidden_state[0, :len(ids)].float().cpu()
            b16 = model_bf16(input_ids=padded, attention_mask=mask).last_hidden_state[0, :len(ids)].float().cpu()
            err = float((b16 - ref).norm() / ref.norm())
            emu = emulate_longroll(model.state_dict(), ids, args.heads).cpu()
            emu_err = float((emu - ref).norm() / ref.norm())
            checks.append({"tokens": len(ids), "transformers_bf16_vs_fp32": err,
                           "longroll_rounding_emulation_vs_fp32": emu_err})
            expected[f"ids_{i}"] = torch.tensor(ids, dtype=torch.int32)
            expected[f"context_{i}"] = ref.contiguous()
            expected[f"context_bf16_{i}"] = b16.contiguous()
            print(f"prompt {i}: {len(ids)} tokens, vs transformers fp32: transformers bf16 {err:.3e}, "
                  f"longroll's roundings emulated {emu_err:.3e}", flush=True)
    save_file(expected, os.path.join(args.out, "umt5_xxl_layer_expected.safetensors"))
    with open(os.path.join(args.out, "provenance.json"), "w") as fh:
        json.dump({"script": "tests/data/text/make_xxl_layer_fixture.py", "torch": torch.__version__,
                   "transformers": transformers.__version__, "device": str(device),
                   "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else "none",
                   "attn_implementation": model.config._attn_implementation, "seed": args.seed,
                   "d_model": args.d_model, "d_ff": args.d_ff, "heads": args.heads, "checks": checks}, fh, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

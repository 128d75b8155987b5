#!/usr/bin/env python3
"""Makes the text-encoder fixtures in this folder (run from anywhere; needs torch, transformers, sentencepiece,
safetensors, ftfy, regex):

    python3 tests/data/text/make_fixtures.py --wan-src PATH/TO/Wan2.1

  spiece.model                 a sentencepiece unigram model trained here on a small generated corpus (pad 0, </s> 1,
                               <unk> 2, NFKC normalization: the T5 conventions)
  tokenizer_cases.json         prompts (unicode, HTML entities, curly quotes, control characters, special tokens,
                               empty-ish and over-long ones) with the ids of Wan's tokenizer path: wan/modules/
                               tokenizers.py's HuggingfaceTokenizer(clean='whitespace', seq_len) on transformers'
                               AutoTokenizer over a directory holding spiece.model and a
                               tokenizer_config.json with extra_ids 16 (as google/umt5-xxl's has 384), and the text after Wan's cleaning
  umt5_tiny_hf.safetensors     a tiny random UMT5EncoderModel (d_model 64 = configs/tiny.textproto's text_dim, 2 layers,
                               4 heads of 20, d_ff 96, 32 buckets, max distance 128), Hugging Face names, F32
  umt5_tiny_wan.safetensors    the same weights under Wan's names (wan/modules/t5.py) in BF16, written by
                               tools/convert_checkpoint.py from a Wan-style .pth (the weights are rounded to BF16
                               first, so both files hold the same values)
  umt5_tiny_expected.safetensors  ids_N (I32 [L]) and context_N (F32 [L, 64]): transformers' UMT5EncoderModel in fp32
                               on prompt N's tokens. With --wan-src, Wan's own T5Encoder on the ids padded to 512 with
                               the mask, cut to L as T5EncoderModel.__call__ does, is checked to give the same.

Everything is seeded: a rerun gives the same ids and tensors (spiece.model's bytes may differ; library versions are
recorded in provenance.json). Named HTML entities other than amp, lt, gt, quot, apos and nbsp are left out of the
prompts on purpose: the engine does not decode them (runtime/text/text_clean.h).
"""

import argparse
import importlib.util
import json
import os
import random
import subprocess
import sys
import tempfile
import types

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
EXTRA_IDS = 16  # sentinel rows after the pieces, as UMT5's 384

COLOURS = "red green blue yellow orange purple white black golden silver".split()
THINGS = "fox cat dog horse bird car train boat robot dragon tree flower river mountain city street".split()
ACTIONS = "runs walks flies swims jumps dances spins glides rolls drifts".split()
PLACES = ("through snow", "over a striped wall", "across a neon city at night", "under heavy rain", "along a beach",
          "in a dense forest", "past old buildings", "on a frozen lake", "between tall mountains", "inside a cave")
CAMERA = ("the camera pans slowly to the left", "a close-up shot", "aerial view", "slow motion", "cinematic lighting",
          "handheld camera, shallow depth of field", "wide angle, golden hour")
FOREIGN = ["Ein roter Fuchs läuft durch den Schnee.", "Un renard roux court dans la neige, l'été, au café.",
           "一只红色的狐狸在雪地里奔跑。", "雪の中を走る赤いキツネ。", "Красная лиса бежит по снегу.",
           "Un zorro rojo corre por la nieve.", "빨간 여우가 눈 속을 달린다.", "🦊 a fox 🎥 filmed ✨"]


def corpus(rng, n):
    lines = []
    for _ in range(n):
        s = f"a {rng.choice(COLOURS)} {rng.choice(THINGS)} {rng.choice(ACTIONS)} {rng.choice(PLACES)}"
        if rng.random() < 0.5:
            s += ", " + rng.choice(CAMERA)
        lines.append(s[0].upper() + s[1:] + rng.choice([".", "", "!"]))
    return lines + FOREIGN * 30


def prompts(rng):
    long_text = " ".join(corpus(rng, 60)[:60])  # well over 512 tokens: truncated
    return [
        "a red fox running through snow",
        "  A   red fox\trunning\nthrough snow  ",
        "Ein roter Fuchs läuft durch den Schnee. 一只红色的狐狸在雪地里奔跑。 🦊🎥",
        "“Curly quotes” and ‘single’ ones, it’s fine",
        "ﬁne ligatures ﬂow; ＦＵＬＬＷＩＤＴＨ ｔｅｘｔ　ideographic space",
        "caf\u00e9 vs cafe\u0301 (NFC / NFD)",
        "fish &amp; chips &lt;b&gt; &quot;bold&quot; &#39;x&#39; &#x263A; &nbsp;space &ampx",
        "<b>tags</b> stay &amp; entities too",
        "control\x00chars\x07and\x1b[31mcolour\x1b[0m escapes\u200bzero-width\ufeffbom",
        "C1 \x85 and \x93quoted\x94 and \x80",
        "line\r\nbreaks\u2028and\u2029separators\x0bvt",
        "special </s> tokens <pad> and <unk> and <extra_id_0> <extra_id_15> <extra_id_16> <extra_id_01>",
        "x",
        ".",
        "   \u3000 . \u00a0 ",
        "a" * 300,
        long_text,
    ]


def load_wan_module(wan_src, name):
    """wan/modules/<name>.py loaded as a module of a stub package (wan/__init__.py imports the whole pipeline)."""
    pkg = types.ModuleType("wanmods")
    pkg.__path__ = [os.path.join(wan_src, "wan", "modules")]
    sys.modules.setdefault("wanmods", pkg)
    spec = importlib.util.spec_from_file_location(f"wanmods.{name}", os.path.join(pkg.__path__[0], f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    import torch
    current_device = torch.cuda.current_device
    torch.cuda.current_device = lambda: "cpu"  # some Wan versions call it in a default argument, at import
    try:
        spec.loader.exec_module(mod)
    finally:
        torch.cuda.current_device = current_device
    return mod


def wan_names(hf_sd, layers):
    out = {"token_embedding.weight": hf_sd["shared.weight"], "norm.weight": hf_sd["encoder.final_layer_norm.weight"]}
    for i in range(layers):
        b = f"encoder.block.{i}.layer."
        for ours, theirs in [("norm1", "0.layer_norm"), ("attn.q", "0.SelfAttention.q"), ("attn.k", "0.SelfAttention.k"),
                             ("attn.v", "0.SelfAttention.v"), ("attn.o", "0.SelfAttention.o"),
                             ("pos_embedding.embedding", "0.SelfAttention.relative_attention_bias"),
                             ("norm2", "1.layer_norm"), ("ffn.gate.0", "1.DenseReluDense.wi_0"),
                             ("ffn.fc1", "1.DenseReluDense.wi_1"), ("ffn.fc2", "1.DenseReluDense.wo")]:
            out[f"blocks.{i}.{ours}.weight"] = hf_sd[b + theirs + ".weight"]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--wan-src", help="a checkout of Wan-Video/Wan2.1: check against its tokenizer and T5 code")
    ap.add_argument("--out", default=HERE)
    args = ap.parse_args()

    import sentencepiece as spm
    import torch
    import transformers
    from safetensors.torch import save_file
    from transformers import AutoTokenizer, UMT5Config, UMT5EncoderModel

    rng = random.Random(2026)
    torch.manual_seed(2026)
    out = args.out

    # ---- tokenizer ----
    with tempfile.TemporaryDirectory() as tmp:
        text = os.path.join(tmp, "corpus.txt")
        with open(text, "w") as fh:
            fh.write("\n".join(corpus(rng, 3000)))
        spm.SentencePieceTrainer.train(input=text, model_prefix=os.path.join(tmp, "m"), vocab_size=180,
                                       model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
                                       character_coverage=0.9995, input_sentence_size=0, shuffle_input_sentence=False,
                                       num_threads=1, seed_sentencepiece_size=100000, minloglevel=2)
        with open(os.path.join(tmp, "m.model"), "rb") as fh:
            model_bytes = fh.read()
    with open(os.path.join(out, "spiece.model"), "wb") as fh:
        fh.write(model_bytes)
    hf_tmp = tempfile.TemporaryDirectory()  # transformers reads a tokenizer directory, as google/umt5-xxl is
    hf_dir = hf_tmp.name
    with open(os.path.join(hf_dir, "spiece.model"), "wb") as fh:
        fh.write(model_bytes)
    with open(os.path.join(hf_dir, "tokenizer_config.json"), "w") as fh:
        json.dump({"tokenizer_class": "T5Tokenizer", "extra_ids": EXTRA_IDS, "eos_token": "</s>", "pad_token": "<pad>",
                   "unk_token": "<unk>"}, fh, indent=1)
    pieces = spm.SentencePieceProcessor(model_file=os.path.join(out, "spiece.model")).get_piece_size()
    vocab = pieces + EXTRA_IDS

    if args.wan_src:
        tok_mod = load_wan_module(args.wan_src, "tokenizers")
        make_tok = lambda n: tok_mod.HuggingfaceTokenizer(name=hf_dir, seq_len=n, clean="whitespace")  # noqa: E731
        clean = tok_mod.HuggingfaceTokenizer(name=hf_dir, seq_len=512, clean="whitespace")._clean
    else:  # the same steps, written out (wan/modules/tokenizers.py)
        import html

        import ftfy
        import regex

        def clean(t):
            t = html.unescape(html.unescape(ftfy.fix_text(t))).strip()
            return regex.sub(r"\s+", " ", t).strip()

        class Tok:
            def __init__(self, n):
                self.t, self.n = AutoTokenizer.from_pretrained(hf_dir), n

            def __call__(self, seq, return_mask=False, add_special_tokens=True):
                r = self.t([clean(u) for u in seq], return_tensors="pt", padding="max_length", truncation=True,
                           max_length=self.n, add_special_tokens=add_special_tokens)
                return (r.input_ids, r.attention_mask) if return_mask else r.input_ids
        make_tok = Tok
    cases = []
    for max_len in (512, 16):
        tok = make_tok(max_len)
        for p in prompts(random.Random(7)):
            ids, mask = tok([p], return_mask=True, add_special_tokens=True)
            n = int(mask.sum())
            cases.append({"text": p, "max_len": max_len, "cleaned": clean(p), "ids": ids[0, :n].tolist(),
                          "pad_is_zero": bool((ids[0, n:] == 0).all())})
    with open(os.path.join(out, "tokenizer_cases.json"), "w") as fh:
        json.dump({"pieces": pieces, "encoder_vocab": vocab, "cases": cases}, fh, ensure_ascii=True, indent=0)

    # ---- encoder ----
    cfg = UMT5Config(vocab_size=vocab, d_model=64, d_kv=20, d_ff=96, num_layers=2, num_heads=4,
                     relative_attention_num_buckets=32, relative_attention_max_distance=128,
                     feed_forward_proj="gated-gelu", dropout_rate=0.0, layer_norm_epsilon=1e-6, tie_word_embeddings=True)
    model = UMT5EncoderModel(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            # Norm weights around 1, projections at UMT5's init scale, the bias table wide enough to matter.
            if "layer_norm" in name:
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            elif "relative_attention_bias" in name:
                p.copy_(torch.randn_like(p))
            else:
                p.copy_(torch.randn_like(p) * p.shape[-1] ** -0.5)
            p.copy_(p.to(torch.bfloat16).to(torch.float32))  # both files hold exactly these values
    sd = {k: v.contiguous() for k, v in model.state_dict().items() if k != "encoder.embed_tokens.weight"}
    save_file(sd, os.path.join(out, "umt5_tiny_hf.safetensors"), metadata={"format": "pt"})
    with tempfile.TemporaryDirectory() as tmp:
        pth = os.path.join(tmp, "models_t5_umt5-tiny-enc-bf16.pth")
        torch.save({k: v.to(torch.bfloat16) for k, v in wan_names(sd, cfg.num_layers).items()}, pth)
        wan_file = os.path.join(out, "umt5_tiny_wan.safetensors")
        subprocess.run([sys.executable, os.path.join(ROOT, "tools", "convert_checkpoint.py"), pth, "-o", wan_file,
                        "--force"], check=True)

    wan_encoder = None
    if args.wan_src:
        t5 = load_wan_module(args.wan_src, "t5")
        wan_encoder = t5.T5Encoder(vocab=vocab, dim=64, dim_attn=80, dim_ffn=96, num_heads=4, num_layers=2,
                                   num_buckets=32, shared_pos=False, dropout=0.0).eval()
        wan_encoder.load_state_dict(wan_names(sd, cfg.num_layers))
    expected, checks = {}, []
    picks = [c for c in cases if c["max_len"] == 512]
    picks = [picks[0], picks[2], picks[11], picks[15], picks[16]]  # short, unicode, specials, 'aaa...', 511 tokens
    with torch.no_grad():
        for i, c in enumerate(picks):
            ids = torch.tensor([c["ids"]])
            ctx = model(input_ids=ids).last_hidden_state[0]
            padded = torch.zeros(1, 512, dtype=torch.long)
            padded[0, :ids.shape[1]] = ids
            mask = torch.zeros(1, 512, dtype=torch.long)
            mask[0, :ids.shape[1]] = 1
            hf_padded = model(input_ids=padded, attention_mask=mask).last_hidden_state[0, :ids.shape[1]]
            rel = lambda a: float((a - ctx).norm() / ctx.norm())  # noqa: E731
            check = {"tokens": ids.shape[1], "hf_padded_vs_unpadded": rel(hf_padded)}
            if wan_encoder is not None:
                check["wan_padded_vs_hf"] = rel(wan_encoder(padded, mask)[0, :ids.shape[1]])
            for k, v in check.items():
                assert k == "tokens" or v < 1e-5, (c["text"][:40], check)
            checks.append(check)
            expected[f"ids_{i}"] = ids[0].to(torch.int32).contiguous()
            expected[f"context_{i}"] = ctx.contiguous()
    save_file(expected, os.path.join(out, "umt5_tiny_expected.safetensors"), metadata={"prompts": str(len(picks))})
    with open(os.path.join(out, "provenance.json"), "w") as fh:
        json.dump({"script": "tests/data/text/make_fixtures.py", "torch": torch.__version__,
                   "transformers": transformers.__version__, "sentencepiece": spm.__version__,
                   "wan_checked": bool(args.wan_src), "encoder_checks": checks}, fh, indent=1)
    print(f"wrote fixtures to {out}: {pieces} pieces, {len(cases)} tokenizer cases, {len(picks)} encoder prompts")


if __name__ == "__main__":
    main()

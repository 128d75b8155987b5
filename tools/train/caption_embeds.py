#!/usr/bin/env python3
"""A caption -> a --prompt-embeds file for the embedded default model (models/tiny-shapes/).

    python3 tools/train/caption_embeds.py "a blue circle moves up over a striped wall" prompt.safetensors
    longroll generate --prompt-embeds prompt.safetensors --seconds 5 --out video.mp4

The model's text encoder is a table of one learned vector per word of its caption grammar (text.safetensors:
`word_embeddings` [vocab, text_dim], the vocabulary in its metadata); the prompt embedding of a caption is the
rows of its words in order, [L, text_dim] F32, which the engine zero-pads to text_len. Standard library only.
"""

import argparse
import json
import os
import struct
import sys

MODEL = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "models",
                     "tiny-shapes")


def read_table(model_dir):
    """(vocab list, rows as lists of floats, text_dim, metadata)."""
    with open(os.path.join(model_dir, "text.safetensors"), "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__", {})
    e = header["word_embeddings"]
    assert e["dtype"] == "F32", e
    rows, dim = e["shape"]
    b, end = e["data_offsets"]
    vals = struct.unpack("<%df" % (rows * dim), data[b:end])
    return json.loads(meta["vocab"]), [vals[i * dim:(i + 1) * dim] for i in range(rows)], dim, meta


def write_context(path, rows, dim):
    payload = struct.pack("<%df" % (len(rows) * dim), *[v for r in rows for v in r])
    header = json.dumps({"context": {"dtype": "F32", "shape": [len(rows), dim],
                                     "data_offsets": [0, len(payload)]}}).encode()
    header += b" " * ((8 - len(header) % 8) % 8)
    with open(path + ".tmp", "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header + payload)
    os.replace(path + ".tmp", path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("caption")
    ap.add_argument("out")
    ap.add_argument("--model", default=MODEL)
    a = ap.parse_args()
    vocab, table, dim, meta = read_table(a.model)
    words = a.caption.strip().lower().split()
    unknown = [w for w in words if w not in vocab]
    if unknown or not words:
        print(f"caption_embeds: unknown words {unknown}; the model knows: {' '.join(vocab)} "
              f"(grammar: {meta.get('grammar', '?')})", file=sys.stderr)
        return 2
    write_context(a.out, [table[vocab.index(w)] for w in words], dim)
    return 0


if __name__ == "__main__":
    sys.exit(main())

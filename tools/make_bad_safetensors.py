#!/usr/bin/env python3
"""Writes the safetensors test corpus: tests/data/safetensors/.

  good_*.safetensors   valid files the reader must accept (tests/unit/io/test_safetensors.cpp knows their
                       tensors and values)
  bad_*.safetensors    one malformed file per failure class; the test checks each one's error message
  sharded/             a sharded checkpoint (index + two shards) and bad index files (bad_*.index.json)
  fuzz_regressions/    inputs that once crashed the fuzzer (copied there by hand, not written by this script)

The same folder seeds the fuzzer (tests/fuzz/). Standard library only; the output is deterministic and
checked in, so rerun this script after changing it:

    python3 tools/make_bad_safetensors.py [OUT_DIR]
"""

import json
import os
import struct
import sys

# Tensor values are a simple function of the index, so that the C++ test can recompute them.


def f32_values(n, scale=0.5, shift=-1.25):
    return [(i + 1) * scale + shift for i in range(n)]


def pack(fmt, values):
    return struct.pack("<%d%s" % (len(values), fmt), *values)


def bf16_bytes(values):
    # Truncation is exact for these values (they have few mantissa bits).
    out = b""
    for v in values:
        out += struct.pack("<I", struct.unpack("<I", struct.pack("<f", v))[0])[2:]
    return out


def f16_bytes(values):
    return pack("e", values)


def file_image(header, data=b"", pad=True, length=None):
    """8-byte length + header text (padded with spaces to a multiple of 8) + data."""
    if isinstance(header, (dict, list)):
        header = json.dumps(header, separators=(",", ":"))
    if isinstance(header, str):
        header = header.encode("utf-8")
    if pad:
        header += b" " * (-len(header) % 8)
    n = len(header) if length is None else length
    return struct.pack("<Q", n) + header + data


def tensors_image(tensors, metadata=None, gap=0, trailing=b""):
    """tensors: list of (name, dtype, shape, bytes). Laid out in order, `gap` bytes between them."""
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    data = b""
    for name, dtype, shape, raw in tensors:
        if data:
            data += b"\xee" * gap
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    return file_image(header, data + trailing)


def entry(dtype="F32", shape=(2,), offsets=(0, 8)):
    return '{"dtype":"%s","shape":%s,"data_offsets":%s}' % (
        dtype, json.dumps(list(shape)), json.dumps(list(offsets)))


CONFIG = json.dumps({"dim": 64, "ffn_dim": 128, "num_heads": 2, "num_layers": 2, "in_dim": 16, "out_dim": 16,
                     "text_dim": 32, "text_len": 8, "freq_dim": 32, "eps": 1e-6, "patch_size": [1, 2, 2],
                     "model_type": "t2v"})


def good_files():
    files = {}
    files["good_f32.safetensors"] = tensors_image([("weight", "F32", [2, 3], pack("f", f32_values(6)))])
    files["good_mixed.safetensors"] = tensors_image(
        [
            ("a.bf16", "BF16", [4], bf16_bytes(f32_values(4, 0.25, 0.0))),
            ("b.f16", "F16", [2, 2], f16_bytes(f32_values(4, -0.5, 1.0))),
            ("c.i64", "I64", [3], pack("q", [-(2**40), 7, 2**62 + 1])),
            ("d.empty", "F32", [0, 3], b""),
            ("e.scalar", "F32", [], pack("f", [3.5])),
        ],
        metadata={"format": "pt", "config": CONFIG},
    )
    # Every dtype longroll knows, one small tensor each, offsets deliberately not aligned.
    files["good_all_dtypes.safetensors"] = tensors_image([
        ("f64", "F64", [2], pack("d", [1.5, -2.25])),
        ("f32", "F32", [1], pack("f", [0.125])),
        ("f16", "F16", [1], f16_bytes([2.0])),
        ("bf16", "BF16", [1], bf16_bytes([-4.0])),
        ("f8e4m3", "F8_E4M3", [3], bytes([0x38, 0x40, 0xb8])),
        ("f8e5m2", "F8_E5M2", [3], bytes([0x3c, 0x40, 0xbc])),
        ("i64", "I64", [1], pack("q", [-5])),
        ("i32", "I32", [2], pack("i", [-7, 2**31 - 1])),
        ("i16", "I16", [1], pack("h", [-300])),
        ("i8", "I8", [3], pack("b", [-1, 0, 1])),
        ("u8", "U8", [2], bytes([0, 255])),
        ("bool", "BOOL", [2], bytes([1, 0])),
    ])
    # Real writers pad: gaps between tensors and bytes after the last one are accepted.
    files["good_gaps_and_trailing.safetensors"] = tensors_image(
        [("x", "F32", [2], pack("f", [1.0, 2.0])), ("y", "I32", [1], pack("i", [42]))], gap=8,
        trailing=b"\x00" * 16)
    files["good_no_tensors.safetensors"] = file_image("{}")
    # Escapes and non-ASCII in names: "blocks.0.\u00e9\u00e8" (written escaped) and "tab\tname".
    files["good_unicode_names.safetensors"] = file_image(
        '{"blocks.0.\\u00e9\u00e8":' + entry("U8", [2], [0, 2]) + ',"tab\\tname":' + entry("U8", [1], [2, 3])
        + ',"emoji.\\ud83d\\ude00":' + entry("U8", [0], [3, 3]) + "}", bytes([1, 2, 3]))
    # Header written with whitespace everywhere JSON allows it, tensors listed out of offset order.
    files["good_whitespace_unordered.safetensors"] = file_image(
        ' {\n\t"second" : {"data_offsets" : [ 4 , 8 ] , "shape":[1],"dtype":"F32"} ,\r\n'
        ' "first":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}\n', pack("f", [1.0, 2.0]))
    return files


def bad_files():
    """name -> file image. Each file is wrong in exactly one way."""
    ok8 = pack("f", [1.0, 2.0])
    t = lambda body, data=ok8: file_image(body, data)  # noqa: E731
    one = lambda e, data=ok8: t('{"t":' + e + "}", data)  # noqa: E731
    files = {
        "bad_empty_file": b"",
        "bad_truncated_length": b"\x10\x00\x00",
        "bad_header_length_zero": struct.pack("<Q", 0) + b"{}",
        "bad_header_length_over_limit": struct.pack("<Q", 200_000_000) + b"{}      ",
        "bad_header_length_past_end": file_image('{"t":' + entry() + "}", ok8, length=4096),
        "bad_json_syntax": t('{"t":' + entry() + ",}"),
        "bad_json_trailing_garbage": file_image('{"t":' + entry() + "} x", ok8, pad=False),
        "bad_json_truncated": file_image('{"t":{"dtype":"F32","sha', pad=False),
        "bad_header_not_object": t("[1, 2]"),
        "bad_entry_not_object": t('{"t": 5}'),
        "bad_metadata_not_object": t('{"__metadata__":["a"],"t":' + entry() + "}"),
        "bad_metadata_non_string": t('{"__metadata__":{"config":{"dim":64}},"t":' + entry() + "}"),
        "bad_unknown_dtype": one(entry("F99")),
        "bad_dtype_not_string": one('{"dtype":32,"shape":[2],"data_offsets":[0,8]}'),
        "bad_missing_shape": one('{"dtype":"F32","data_offsets":[0,8]}'),
        "bad_unknown_key": one('{"dtype":"F32","shape":[2],"data_offsets":[0,8],"foo":1}'),
        "bad_shape_not_array": one('{"dtype":"F32","shape":2,"data_offsets":[0,8]}'),
        "bad_negative_dim": one(entry("F32", [-2], [0, 8])),
        "bad_dim_not_integer": one(entry("F32", [2.0], [0, 8])),
        "bad_too_many_dims": one(entry("F32", [1, 1, 1, 1, 1, 1, 2], [0, 8])),
        "bad_shape_overflow": one(entry("F32", [2**32, 2**32], [0, 8])),
        "bad_bytes_overflow": one(entry("F64", [2**61], [0, 8])),
        "bad_size_mismatch": one(entry("F32", [3], [0, 8])),
        "bad_offsets_out_of_range": one(entry("F32", [4], [0, 16])),
        "bad_offsets_reversed": one(entry("F32", [0], [8, 0])),
        "bad_offsets_non_integer": one(entry("F32", [2], [0, 8.0])),
        "bad_offsets_negative": one(entry("F32", [2], [-8, 0])),
        "bad_offsets_huge": one(entry("F32", [2], [0, 2**64])),
        "bad_offsets_one_value": one(entry("F32", [2], [8])),
        "bad_overlap": t('{"a":' + entry("F32", [2], [0, 8]) + ',"b":' + entry("F32", [1], [4, 8]) + "}"),
        "bad_duplicate_key": t('{"t":' + entry() + ',"t":' + entry() + "}"),
        "bad_deep_nesting": t('{"__metadata__":' + "[" * 70 + "]" * 70 + "}"),
        "bad_invalid_utf8": t(b'{"t\xff":' + entry().encode() + b"}"),
        "bad_lone_surrogate": t('{"t\\ud800":' + entry() + "}"),
        "bad_control_char": t('{"t\x01":' + entry() + "}"),
        "bad_leading_zero": one(entry("F32", [2], ["00", 8]).replace('"00"', "00")),
        "bad_empty_name": t('{"":' + entry() + "}"),
    }
    return {name + ".safetensors": image for name, image in files.items()}


def sharded_files():
    files = {}
    a = [("blocks.0.w", "F32", [2, 2], pack("f", f32_values(4))), ("blocks.0.b", "BF16", [2],
                                                                    bf16_bytes([1.0, -1.0]))]
    b = [("blocks.1.w", "F32", [3], pack("f", f32_values(3, 2.0, 0.0))), ("head", "I32", [2], pack("i", [9, -9]))]
    files["model-00001-of-00002.safetensors"] = tensors_image(a, metadata={"format": "pt", "config": CONFIG,
                                                                           "shard": "1"})
    files["model-00002-of-00002.safetensors"] = tensors_image(b, metadata={"format": "pt", "shard": "2"})
    # Holds "extra" and a copy of "head", which the good index maps to shard 2.
    files["dup-shard.safetensors"] = tensors_image([("extra", "U8", [1], bytes([5])),
                                                    ("head", "I32", [2], pack("i", [9, -9]))])

    weight_map = {name: "model-00001-of-00002.safetensors" for name, *_ in a}
    weight_map.update({name: "model-00002-of-00002.safetensors" for name, *_ in b})

    def index(wm, metadata=None):
        total = sum(len(raw) for *_, raw in a + b)
        doc = {"metadata": {"total_size": total, "format": "index-pt"} if metadata is None else metadata,
               "weight_map": wm}
        return json.dumps(doc, indent=2).encode() + b"\n"

    files["model.safetensors.index.json"] = index(weight_map)
    files["bad_missing_tensor.safetensors.index.json"] = index(
        dict(weight_map, **{"blocks.9.w": "model-00001-of-00002.safetensors"}))
    files["bad_missing_shard.safetensors.index.json"] = index(
        dict(weight_map, **{"blocks.9.w": "model-00003-of-00003.safetensors"}))
    files["bad_tensor_in_two_shards.safetensors.index.json"] = index(
        dict(weight_map, **{"extra": "dup-shard.safetensors"}))
    files["bad_shard_not_string.safetensors.index.json"] = index(dict(weight_map, **{"head": 2}))
    files["bad_no_weight_map.safetensors.index.json"] = b'{"metadata": {}}\n'
    files["bad_index_json.safetensors.index.json"] = b'{"weight_map": {"a": "x.safetensors",}}\n'
    return files


def write_all(files, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    for name, image in sorted(files.items()):
        with open(os.path.join(out_dir, name), "wb") as f:
            f.write(image)


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "tests", "data", "safetensors")
    write_all(good_files(), out_dir)
    write_all(bad_files(), out_dir)
    write_all(sharded_files(), os.path.join(out_dir, "sharded"))
    total = 0
    for dirpath, _, names in os.walk(out_dir):
        total += sum(os.path.getsize(os.path.join(dirpath, n)) for n in names)
    print("wrote %s (%d bytes)" % (out_dir, total))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Converts the PyTorch checkpoints users have into the safetensors files longroll reads.

    convert_checkpoint.py self_forcing_dmd.pt -o self_forcing_dmd.safetensors
    convert_checkpoint.py longlive_base.pt --lora lora.pt -o longlive.safetensors
    convert_checkpoint.py Wan2.1-T2V-1.3B/diffusion_pytorch_model.safetensors -o wan_t2v_1.3b.safetensors
    convert_checkpoint.py Wan2.1-T2V-14B/diffusion_pytorch_model.safetensors.index.json -o wan_14b.safetensors
    convert_checkpoint.py Wan2.1-T2V-1.3B/Wan2.1_VAE.pth -o wan2.1_vae.safetensors

Inputs (detected from the file; --format forces one):
  self-forcing  a training checkpoint: a dict with "generator_ema" and/or "generator" (or "model"), each
                the state dict of Self-Forcing's WanDiffusionWrapper: keys "model.<Wan name>", possibly
                with "_fsdp_wrapped_module." / "_orig_mod." / "_checkpoint_wrapped_module." inside.
                Self-Forcing's self_forcing_dmd.pt and LongLive's longlive_base.pt are of this kind.
  wan           a Wan2.1 DiT state dict (.safetensors, a sharded .safetensors.index.json, or .pth/.pt):
                original Wan names ("blocks.0.self_attn.q.weight"), or diffusers names
                ("blocks.0.attn1.to_q.weight"), which are renamed to the original ones.
  vae           Wan2.1_VAE.pth: the VAE state dict; names are kept.
  umt5          the UMT5 text encoder: Wan's models_t5_umt5-xxl-enc-bf16.pth (wan/modules/t5.py names:
                "token_embedding.weight", "blocks.0.attn.q.weight", ...) or a Hugging Face UMT5EncoderModel /
                UMT5Model file ("shared.weight", "encoder.block.0.layer.0.SelfAttention.q.weight", ...; decoder
                tensors are dropped). Names are kept: the engine reads both schemes.
LongLive LoRA (--lora): LongLive's lora.pt, {"generator_lora": peft state dict} or the peft state dict
itself: "base_model.model.<module>.lora_A.weight" [r, in] and ".lora_B.weight" [out, r] for every Linear
of every CausalWanAttentionBlock. Each delta is merged into the base weight: W + (B @ A) * alpha / r,
computed in float32. peft does not store alpha; LongLive's configs use rank 256, alpha 256 (scale 1),
the default here (--lora-alpha; r comes from the tensors).

Output: one .safetensors file, written under a temporary name and renamed when complete, with
__metadata__["config"] (Wan config.json field names) for DiT files, Hugging Face UMT5 config.json names for
text encoders. Names: Self-Forcing/LongLive keys
keep their "model." prefix (FSDP/compile leftovers removed); --names original strips it.

Needs PyTorch for .pt / .pth inputs; safetensors inputs (and safetensors LoRA files) convert with numpy alone,
to the same bytes.

Exit status: 0 ok, 1 runtime failure (I/O, missing torch / numpy), 2 usage or input error (unknown format,
missing key, shape mismatch, bad option).
"""

import argparse
import json
import os
import re
import sys

EXIT_RUNTIME = 1
EXIT_INPUT = 2

KNOWN_NUM_HEADS = {1536: 12, 5120: 40}  # Wan2.1 1.3B and 14B
WRAPPER_JUNK = ("_fsdp_wrapped_module.", "_orig_mod.", "_checkpoint_wrapped_module.")
CONFIG_FIELDS = ("dim", "ffn_dim", "num_heads", "num_layers", "in_dim", "out_dim", "text_dim", "text_len",
                 "freq_dim", "eps", "patch_size", "model_type")

# diffusers WanTransformer3DModel name -> original Wan name (fragments, applied in order)
DIFFUSERS_RENAMES = [
    ("condition_embedder.time_embedder.linear_1", "time_embedding.0"),
    ("condition_embedder.time_embedder.linear_2", "time_embedding.2"),
    ("condition_embedder.text_embedder.linear_1", "text_embedding.0"),
    ("condition_embedder.text_embedder.linear_2", "text_embedding.2"),
    ("condition_embedder.time_proj", "time_projection.1"),
    ("condition_embedder.image_embedder.norm1", "img_emb.proj.0"),
    ("condition_embedder.image_embedder.ff.net.0.proj", "img_emb.proj.1"),
    ("condition_embedder.image_embedder.ff.net.2", "img_emb.proj.3"),
    ("condition_embedder.image_embedder.norm2", "img_emb.proj.4"),
    ("attn1.to_q", "self_attn.q"), ("attn1.to_k", "self_attn.k"), ("attn1.to_v", "self_attn.v"),
    ("attn1.to_out.0", "self_attn.o"), ("attn1.norm_q", "self_attn.norm_q"), ("attn1.norm_k", "self_attn.norm_k"),
    ("attn2.to_q", "cross_attn.q"), ("attn2.to_k", "cross_attn.k"), ("attn2.to_v", "cross_attn.v"),
    ("attn2.to_out.0", "cross_attn.o"), ("attn2.norm_q", "cross_attn.norm_q"), ("attn2.norm_k", "cross_attn.norm_k"),
    ("attn2.add_k_proj", "cross_attn.k_img"), ("attn2.add_v_proj", "cross_attn.v_img"),
    ("attn2.norm_added_k", "cross_attn.norm_k_img"),
    ("ffn.net.0.proj", "ffn.0"), ("ffn.net.2", "ffn.2"),
]


class InputError(Exception):
    """A problem with the user's input or options: exit status 2."""


def fail(msg, code=EXIT_INPUT):
    sys.stderr.write(f"convert_checkpoint: error: {msg}\n")
    sys.exit(code)


try:
    import torch
except ImportError:  # pragma: no cover - exercised on machines without torch
    torch = None
try:
    import numpy as np
except ImportError:  # pragma: no cover
    np = None


# ----------------------------------------------------------------------------------------------
# Without PyTorch: safetensors inputs (and LoRA files) convert through numpy. The few tensor operations the
# conversion uses (dtype changes, the LoRA merge) have a numpy stand-in; .pth / .pt inputs still need PyTorch.
# ----------------------------------------------------------------------------------------------

class NpDType:
    """A safetensors dtype without PyTorch: its code, numpy storage type (bf16 is stored as uint16)."""

    def __init__(self, code, storage, itemsize, floating):
        self.code, self.storage, self.itemsize, self.is_floating_point = code, storage, itemsize, floating

    def __eq__(self, other):
        return isinstance(other, NpDType) and other.code == self.code

    def __hash__(self):
        return hash(self.code)

    def __repr__(self):
        return self.code


_NP_DTYPES = {c: NpDType(c, st, n, fl) for c, st, n, fl in [
    ("F64", "float64", 8, True), ("F32", "float32", 4, True), ("F16", "float16", 2, True), ("BF16", "uint16", 2, True),
    ("I64", "int64", 8, False), ("I32", "int32", 4, False), ("I16", "int16", 2, False), ("I8", "int8", 1, False),
    ("U8", "uint8", 1, False), ("BOOL", "bool", 1, False)]}
_NP_BY_TORCH_NAME = {"float64": "F64", "float32": "F32", "float16": "F16", "bfloat16": "BF16"}


class NpTensor:
    """A tensor held by numpy in its safetensors storage type; float math in fp32."""

    def __init__(self, data, dtype):
        self.data, self.dtype = data, dtype

    @property
    def shape(self):
        return tuple(self.data.shape)

    def dim(self):
        return self.data.ndim

    def float(self):
        return self.to(_NP_DTYPES["F32"])

    def _f32(self):
        if self.dtype.code == "BF16":
            return (self.data.astype(np.uint32) << 16).view(np.float32)
        return self.data.astype(np.float32)

    def to(self, dtype):
        if dtype == self.dtype:
            return self
        if not (dtype.is_floating_point and self.dtype.is_floating_point):
            raise InputError(f"cannot convert {self.dtype} to {dtype}")
        x = self._f32()
        if dtype.code == "BF16":
            u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
            rounded = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)  # round to nearest even
            rounded[np.isnan(x)] = 0x7FC0
            return NpTensor(rounded, dtype)
        return NpTensor(x.astype(dtype.storage), dtype)

    def __matmul__(self, other):
        return NpTensor(self._f32() @ other._f32(), _NP_DTYPES["F32"])

    def __mul__(self, scale):
        return NpTensor(self._f32() * np.float32(scale), _NP_DTYPES["F32"])

    def __add__(self, other):
        return NpTensor(self._f32() + other._f32(), _NP_DTYPES["F32"])

    def raw_bytes(self):
        return np.ascontiguousarray(self.data).tobytes()


def dtype_named(torch_name):
    """The dtype called `torch_name` ("bfloat16", ...) in the backend in use."""
    if torch is not None:
        return getattr(torch, torch_name)
    return _NP_DTYPES[_NP_BY_TORCH_NAME[torch_name]]


def open_safetensors_numpy(path, sources, origin):
    try:
        with open(path, "rb") as fh:
            n = int.from_bytes(fh.read(8), "little")
            if n <= 0 or n > 100 << 20:
                raise ValueError(f"header length {n}")
            header = json.loads(fh.read(n))
        size = os.path.getsize(path)
        data = np.memmap(path, dtype=np.uint8, mode="r") if size > 8 + n else np.zeros(0, np.uint8)
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: not a readable safetensors file ({e})")
    if not isinstance(header, dict):
        raise InputError(f"{path}: not a readable safetensors file (the header is not a JSON object)")
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dt = _NP_DTYPES[info["dtype"]]
            shape = tuple(int(d) for d in info["shape"])
            b, e = (int(o) for o in info["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise InputError(f"{path}: tensor '{name}' has an unsupported dtype or a malformed entry ({info!r}); "
                             f"FP8 and other dtypes need PyTorch")
        count = 1
        for d in shape:
            count *= d
        if e - b != count * dt.itemsize or b < 0 or 8 + n + e > size:
            raise InputError(f"{path}: tensor '{name}' has data_offsets [{b}, {e}] that do not fit its shape "
                             f"{list(shape)} {dt} or the file")
        if name in sources:
            raise InputError(f"{path}: tensor '{name}' also appears in {origin[name]}")
        start = 8 + n + b

        def load(start=start, count=count, dt=dt, shape=shape):
            return NpTensor(np.frombuffer(data, dtype=dt.storage, count=count, offset=start).reshape(shape), dt)
        sources[name] = Source(shape, dt, load)
        origin[name] = path
    meta = header.get("__metadata__") or {}
    return meta if isinstance(meta, dict) else {}


# ----------------------------------------------------------------------------------------------
# Tensor sources: name -> (shape, dtype, load())
# ----------------------------------------------------------------------------------------------

class Source:
    """A lazily loaded tensor."""

    def __init__(self, shape, dtype, load):
        self.shape, self.dtype, self.load = tuple(shape), dtype, load


_ST_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
              "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool",
              "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2"}


def st_dtype_name(dtype):
    if isinstance(dtype, NpDType):
        return dtype.code
    for k, v in _ST_DTYPES.items():
        if getattr(torch, v, None) == dtype:
            return k
    raise InputError(f"dtype {dtype} cannot be stored in safetensors")


def open_safetensors(path, sources, origin):
    if torch is None:
        return open_safetensors_numpy(path, sources, origin)
    from safetensors import safe_open
    try:
        handle = safe_open(path, framework="pt")
    except Exception as e:  # noqa: BLE001 - the library raises several types
        raise InputError(f"{path}: not a readable safetensors file ({e})")
    for name in handle.keys():
        sl = handle.get_slice(name)
        dt = _ST_DTYPES.get(sl.get_dtype())
        if dt is None:
            raise InputError(f"{path}: tensor '{name}' has unsupported dtype {sl.get_dtype()}")
        if name in sources:
            raise InputError(f"{path}: tensor '{name}' also appears in {origin[name]}")
        sources[name] = Source(sl.get_shape(), getattr(torch, dt), lambda n=name, h=handle: h.get_tensor(n))
        origin[name] = path
    return handle.metadata() or {}


def load_safetensors_input(path):
    """A .safetensors file or a sharded .safetensors.index.json -> (sources, metadata)."""
    sources, origin = {}, {}
    if path.endswith(".json"):
        try:
            with open(path) as fh:
                index = json.load(fh)
            weight_map = index["weight_map"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise InputError(f"{path}: not a safetensors index (expected a JSON object with 'weight_map'): {e}")
        base = os.path.dirname(path)
        shards = sorted(set(weight_map.values()))
        for shard in shards:
            shard_path = os.path.join(base, shard)
            if not os.path.exists(shard_path):
                raise InputError(f"{path}: shard '{shard}' is missing")
            open_safetensors(shard_path, sources, origin)
        missing = sorted(set(weight_map) - set(sources))
        if missing:
            raise InputError(f"{path}: tensor '{missing[0]}' is in the index but in no shard")
        return sources, {}
    return sources, open_safetensors(path, sources, origin)


def torch_load(path, unsafe):
    if unsafe:
        return torch.load(path, map_location="cpu", weights_only=False)
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as e:
        if "mmap" not in str(e).lower() and "zip" not in str(e).lower():
            raise
        return torch.load(path, map_location="cpu", weights_only=True)  # legacy (non-zip) format


def load_torch_input(path, unsafe):
    try:
        obj = torch_load(path, unsafe)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file")
    except Exception as e:  # noqa: BLE001 - pickle / zip errors of many kinds
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        hint = ""
        if "weights_only" in str(e) or "Unsupported global" in str(e):
            hint = " (the file holds pickled objects besides tensors; if you trust it, pass --unsafe-load)"
        raise InputError(f"{path}: cannot be read as a PyTorch checkpoint: {msg}{hint}")
    return obj


def tensors_of(obj, what):
    if not isinstance(obj, dict) or not obj:
        raise InputError(f"{what}: expected a non-empty dict of tensors, found {type(obj).__name__}")
    out = {}
    for k, v in obj.items():
        if not isinstance(k, str):
            raise InputError(f"{what}: key {k!r} is not a string")
        if not torch.is_tensor(v):
            raise InputError(f"{what}: entry '{k}' is a {type(v).__name__}, not a tensor")
        out[k] = Source(v.shape, v.dtype, lambda t=v: t)
    return out


# ----------------------------------------------------------------------------------------------
# Names, formats, config
# ----------------------------------------------------------------------------------------------

def strip_junk(name):
    for junk in WRAPPER_JUNK:
        name = name.replace(junk, "")
    return name


def canonical(name):
    """Original Wan name of a (cleaned) key: no "model." prefix."""
    name = strip_junk(name)
    return name[len("model."):] if name.startswith("model.") else name


def is_diffusers(names):
    return any(n.startswith("condition_embedder.") or n == "proj_out.weight" for n in names)


def diffusers_to_original(name):
    if name == "scale_shift_table":
        return "head.modulation"
    if name.startswith("proj_out."):
        return "head.head." + name[len("proj_out."):]
    m = re.match(r"^blocks\.(\d+)\.(.*)$", name)
    if m:
        rest = m.group(2)
        if rest == "scale_shift_table":
            return f"blocks.{m.group(1)}.modulation"
        # diffusers calls the norms in order norm1, norm2 (affine, before cross-attn), norm3;
        # Wan calls the affine one norm3.
        if rest.startswith("norm2."):
            rest = "norm3." + rest[len("norm2."):]
        for a, b in DIFFUSERS_RENAMES:
            if rest.startswith(a + "."):
                rest = b + rest[len(a):]
                break
        return f"blocks.{m.group(1)}.{rest}"
    for a, b in DIFFUSERS_RENAMES:
        if name.startswith(a + "."):
            return b + name[len(a):]
    return name


def classify(names):
    if "blocks.0.attn.q.weight" in names and "token_embedding.weight" in names:
        return "umt5"
    if "encoder.block.0.layer.0.SelfAttention.q.weight" in names:
        return "umt5-hf"
    canon = {canonical(n) for n in names}
    if "patch_embedding.weight" in canon:
        return "dit-diffusers" if is_diffusers(canon) else "dit"
    if any(n.startswith("decoder.") for n in canon) and any(n.startswith("encoder.") for n in canon):
        return "vae"
    return None


def umt5_config(renamed, kind):
    """Hugging Face UMT5 config.json fields of an encoder, from its shapes (T5's bucket distance and epsilon)."""
    wan = kind == "umt5"
    emb = renamed.get("token_embedding.weight" if wan else "shared.weight") or renamed.get("encoder.embed_tokens.weight")
    q = renamed["blocks.0.attn.q.weight" if wan else "encoder.block.0.layer.0.SelfAttention.q.weight"][1]
    bias_name = ("blocks.0.pos_embedding.embedding.weight" if wan
                 else "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight")
    gate_name = "blocks.0.ffn.gate.0.weight" if wan else "encoder.block.0.layer.1.DenseReluDense.wi_0.weight"
    if emb is None or bias_name not in renamed or gate_name not in renamed:
        raise InputError(f"not a UMT5 encoder: no embedding, '{bias_name}' or '{gate_name}' "
                         "(T5 / mT5 share one position bias; T5 v1.0 has no gated FFN)")
    bias = renamed[bias_name][1]
    layer = "blocks.{}.attn.q.weight" if wan else "encoder.block.{}.layer.0.SelfAttention.q.weight"
    layers = 0
    while layer.format(layers) in renamed:
        layers += 1
    heads = bias.shape[1]
    return {"model_type": "umt5", "vocab_size": emb[1].shape[0], "d_model": emb[1].shape[1], "num_heads": heads,
            "d_kv": q.shape[0] // heads, "d_ff": renamed[gate_name][1].shape[0], "num_layers": layers,
            "relative_attention_num_buckets": bias.shape[0], "relative_attention_max_distance": 128,
            "layer_norm_epsilon": 1e-6, "dense_act_fn": "gelu_new", "is_gated_act": True}


def dit_specs(cfg):
    """(original name, shape) of every tensor of the T2V DiT."""
    d, f, p = cfg["dim"], cfg["ffn_dim"], cfg["patch_size"]
    specs = [("patch_embedding.weight", (d, cfg["in_dim"], *p)), ("patch_embedding.bias", (d,))]

    def lin(name, o, i):
        specs.extend([(name + ".weight", (o, i)), (name + ".bias", (o,))])

    lin("text_embedding.0", d, cfg["text_dim"])
    lin("text_embedding.2", d, d)
    lin("time_embedding.0", d, cfg["freq_dim"])
    lin("time_embedding.2", d, d)
    lin("time_projection.1", 6 * d, d)
    for i in range(cfg["num_layers"]):
        b = f"blocks.{i}."
        specs.append((b + "modulation", (1, 6, d)))
        for attn in ("self_attn", "cross_attn"):
            for proj in ("q", "k", "v", "o"):
                lin(b + attn + "." + proj, d, d)
            specs.extend([(b + attn + ".norm_q.weight", (d,)), (b + attn + ".norm_k.weight", (d,))])
        specs.extend([(b + "norm3.weight", (d,)), (b + "norm3.bias", (d,))])
        lin(b + "ffn.0", f, d)
        lin(b + "ffn.2", d, f)
    specs.append(("head.modulation", (1, 2, d)))
    lin("head.head", cfg["out_dim"] * p[0] * p[1] * p[2], d)
    return specs


def infer_config(shapes, args):
    """Wan config from tensor shapes (original names), completed by options."""
    def need(name):
        if name not in shapes:
            raise InputError(f"missing tensor '{name}' (needed to infer the model config)")
        return shapes[name]

    pe = need("patch_embedding.weight")
    if len(pe) != 5:
        raise InputError(f"tensor 'patch_embedding.weight' has shape {list(pe)}, expected [dim, in_dim, pt, ph, pw]")
    dim, in_dim, patch = pe[0], pe[1], list(pe[2:])
    layers = sorted({int(m.group(1)) for n in shapes for m in [re.match(r"^blocks\.(\d+)\.", n)] if m})
    if not layers:
        raise InputError("no 'blocks.N.*' tensors: not a Wan DiT checkpoint")
    if layers != list(range(len(layers))):
        missing = min(set(range(max(layers) + 1)) - set(layers))
        raise InputError(f"missing tensor 'blocks.{missing}.modulation' (blocks are not numbered 0..N-1)")
    num_heads = args.num_heads or KNOWN_NUM_HEADS.get(dim)
    if num_heads is None:
        raise InputError(f"cannot infer num_heads for dim {dim} (known: "
                         f"{', '.join(f'{k}->{v}' for k, v in KNOWN_NUM_HEADS.items())}); pass --num-heads")
    head = need("head.head.weight")
    patch_numel = patch[0] * patch[1] * patch[2]
    return {
        "dim": dim, "ffn_dim": need("blocks.0.ffn.0.weight")[0], "num_heads": num_heads, "num_layers": len(layers),
        "in_dim": in_dim, "out_dim": head[0] // patch_numel, "text_dim": need("text_embedding.0.weight")[1],
        "text_len": args.text_len, "freq_dim": need("time_embedding.0.weight")[1], "eps": args.eps,
        "patch_size": patch, "model_type": "i2v" if any(n.startswith("img_emb.") for n in shapes) else "t2v",
    }


def read_config_option(value):
    """--config: a config.json path or inline JSON -> dict (Wan or diffusers field names)."""
    try:
        if value.lstrip().startswith("{"):
            cfg = json.loads(value)
        else:
            with open(value) as fh:
                cfg = json.load(fh)
    except (OSError, ValueError) as e:
        raise InputError(f"--config {value}: {e}")
    if not isinstance(cfg, dict):
        raise InputError(f"--config {value}: expected a JSON object")
    if "dim" not in cfg and "num_attention_heads" in cfg:  # diffusers transformer config
        cfg = {"dim": cfg["num_attention_heads"] * cfg["attention_head_dim"], "num_heads": cfg["num_attention_heads"],
               "ffn_dim": cfg.get("ffn_dim"), "num_layers": cfg.get("num_layers"),
               "in_dim": cfg.get("in_channels"), "out_dim": cfg.get("out_channels"), "text_dim": cfg.get("text_dim"),
               "freq_dim": cfg.get("freq_dim"), "eps": cfg.get("eps"), "patch_size": cfg.get("patch_size"),
               "model_type": "i2v" if cfg.get("image_dim") else "t2v"}
    return {k: v for k, v in cfg.items() if k in CONFIG_FIELDS and v is not None}


def check_dit(shapes, cfg):
    for name, shape in dit_specs(cfg):
        if name not in shapes:
            raise InputError(f"missing tensor '{name}' (expected shape {list(shape)})")
        if tuple(shapes[name]) != tuple(shape):
            raise InputError(f"tensor '{name}' has shape {list(shapes[name])}, expected {list(shape)} "
                             f"(does the config match the checkpoint?)")


# ----------------------------------------------------------------------------------------------
# LoRA (LongLive)
# ----------------------------------------------------------------------------------------------

_LORA_RE = re.compile(r"^(?P<module>.+)\.lora_(?P<ab>[AB])(?:\.(?P<adapter>[^.]+))?\.weight$")


def load_lora(path, args):
    obj = load_torch_input(path, args.unsafe_load) if not path.endswith(".safetensors") else None
    if obj is None:
        sources, _ = load_safetensors_input(path)
        sd = {k: s.load() for k, s in sources.items()}
    else:
        if isinstance(obj, dict) and "generator_lora" in obj:
            obj = obj["generator_lora"]
        sd = {k: s.load() for k, s in tensors_of(obj, path).items()}
    pairs = {}
    for key, t in sd.items():
        m = _LORA_RE.match(strip_junk(key))
        if not m:
            raise InputError(f"{path}: '{key}' is not a LoRA tensor (expected '<module>.lora_A.weight' / "
                             f"'.lora_B.weight'; DoRA, biases and embeddings are not supported)")
        module = m.group("module")
        for prefix in ("base_model.model.", "model."):
            if module.startswith(prefix):
                module = module[len(prefix):]
        entry = pairs.setdefault(module, {})
        if m.group("ab") in entry:
            raise InputError(f"{path}: two lora_{m.group('ab')} tensors for '{module}' (several adapters?)")
        entry[m.group("ab")] = t
    deltas = {}
    for module, ab in sorted(pairs.items()):
        if set(ab) != {"A", "B"}:
            raise InputError(f"{path}: '{module}' has lora_{''.join(ab)} but not its pair")
        a, b = ab["A"], ab["B"]
        if a.dim() != 2 or b.dim() != 2 or a.shape[0] != b.shape[1]:
            raise InputError(f"{path}: '{module}': lora_A {list(a.shape)} and lora_B {list(b.shape)} do not "
                             f"form W + B @ A")
        rank = a.shape[0]
        alpha = args.lora_alpha if args.lora_alpha is not None else rank
        deltas[module + ".weight"] = (a, b, float(alpha) / rank)
    if not deltas:
        raise InputError(f"{path}: no LoRA tensors")
    return deltas


# ----------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------

def write_safetensors(path, items, metadata):
    """Streams tensors into a safetensors file. items: list of (name, shape, dtype, produce())."""
    header = {"__metadata__": metadata} if metadata else {}
    offset = 0
    for name, shape, dtype, _ in items:
        n = dtype.itemsize
        for s in shape:
            n *= s
        header[name] = {"dtype": st_dtype_name(dtype), "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as fh:
        fh.write(len(text).to_bytes(8, "little"))
        fh.write(text)
        for name, shape, dtype, produce in items:
            t = produce()
            if tuple(t.shape) != tuple(shape) or t.dtype != dtype:
                raise RuntimeError(f"tensor '{name}' changed while writing")
            if isinstance(t, NpTensor):
                fh.write(t.raw_bytes())
                continue
            t = t.detach().to("cpu").contiguous().reshape(-1)
            if t.numel():
                fh.write(t.view(torch.uint8).numpy().tobytes())
        fh.flush()
        os.fsync(fh.fileno())


def parse_bool(v):
    if v.lower() in ("1", "true", "yes", "on"):
        return True
    if v.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got '{v}'")


DTYPES = {"keep": None, "f32": "float32", "fp32": "float32", "float32": "float32", "bf16": "bfloat16",
          "bfloat16": "bfloat16", "f16": "float16", "fp16": "float16", "float16": "float16"}


def parse_args(argv):
    ap = argparse.ArgumentParser(
        prog="convert_checkpoint.py", description=__doc__.split("\n\n")[0],
        epilog="See the module docstring (python3 -m pydoc tools/convert_checkpoint.py) for the formats.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("input", help="checkpoint: .pt/.pth, .safetensors, .safetensors.index.json")
    ap.add_argument("-o", "--output", required=True, help="output .safetensors")
    ap.add_argument("--format", choices=("auto", "self-forcing", "wan", "vae", "umt5"), default="auto")
    ap.add_argument("--use-ema", type=parse_bool, nargs="?", const=True, default=None, metavar="true|false",
                    help="Self-Forcing/LongLive checkpoints: take 'generator_ema' (true) or 'generator' (false). "
                         "Default: true, but false with --lora (LongLive's configs use the non-EMA generator)")
    ap.add_argument("--lora", help="LongLive LoRA checkpoint to merge into the base weights")
    ap.add_argument("--lora-alpha", type=float, default=None,
                    help="LoRA alpha; scale = alpha / rank (default: alpha = rank, scale 1, as LongLive's 256/256)")
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="keep", help="floating tensors' dtype (default keep)")
    ap.add_argument("--config", help="Wan config.json (path or inline JSON) written to __metadata__['config']; "
                                     "default: config.json next to the input, else inferred from the shapes")
    ap.add_argument("--num-heads", type=int, help="when inferring the config (known: 1536->12, 5120->40)")
    ap.add_argument("--text-len", type=int, default=512, help="when inferring the config (default 512)")
    ap.add_argument("--eps", type=float, default=1e-6, help="when inferring the config (default 1e-6)")
    ap.add_argument("--names", choices=("auto", "keep", "original"), default="auto",
                    help="auto: keep Self-Forcing's 'model.' prefix, rename diffusers names to Wan's; keep: only "
                         "drop FSDP/compile leftovers; original: original Wan names (no 'model.' prefix)")
    ap.add_argument("--unsafe-load", action="store_true",
                    help="allow pickled objects besides tensors (torch.load weights_only=False); trusted files only")
    ap.add_argument("--force", action="store_true", help="overwrite an existing output")
    return ap.parse_args(argv)


def convert(args):
    if args.text_len <= 0 or (args.num_heads is not None and args.num_heads <= 0):
        raise InputError("--text-len and --num-heads must be positive")
    if os.path.abspath(args.output) == os.path.abspath(args.input):
        raise InputError("the output must not be the input")
    if os.path.exists(args.output) and not args.force:
        raise InputError(f"{args.output} exists (pass --force to overwrite)")
    if not os.path.exists(args.input):
        raise InputError(f"{args.input}: no such file")
    if os.path.isdir(args.input):
        raise InputError(f"{args.input} is a directory; give the .safetensors, .safetensors.index.json or .pth file")

    # ---- read ----
    src_meta = {}
    picked = None
    if args.input.endswith((".safetensors", ".json")):
        sources, src_meta = load_safetensors_input(args.input)
    else:
        obj = load_torch_input(args.input, args.unsafe_load)
        if isinstance(obj, dict) and any(k in obj for k in ("generator_ema", "generator")):
            use_ema = args.use_ema if args.use_ema is not None else (args.lora is None)
            picked = "generator_ema" if use_ema else "generator"
            if picked not in obj:
                keys = ", ".join(sorted(str(k) for k in obj))
                other = "false" if use_ema else "true"
                raise InputError(f"{args.input}: no '{picked}' entry (the checkpoint has: {keys}); "
                                 f"pass --use-ema {other} to use the other one")
            obj = obj[picked]
        elif isinstance(obj, dict) and isinstance(obj.get("model"), dict):
            picked = "model"
            obj = obj["model"]
        elif isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
            picked = "state_dict"
            obj = obj["state_dict"]
        sources = tensors_of(obj, args.input + (f"['{picked}']" if picked else ""))

    # ---- classify and rename ----
    kind = classify(sources)
    if kind is None:
        sample = ", ".join(sorted(sources)[:4])
        raise InputError(f"{args.input}: unknown checkpoint format (no 'patch_embedding.weight', no VAE "
                         f"'encoder.*'/'decoder.*', no UMT5 'blocks.0.attn.q.weight'; first keys: {sample})")
    if args.format != "auto" and (args.format == "umt5") != kind.startswith("umt5"):
        raise InputError(f"{args.input}: --format {args.format} but the file holds a "
                         f"{'UMT5 text encoder' if kind.startswith('umt5') else 'VAE' if kind == 'vae' else 'DiT'}")
    if kind == "umt5-hf":  # a whole UMT5Model: the engine needs the encoder and the shared embedding only
        sources = {n: s for n, s in sources.items() if n == "shared.weight" or n.startswith("encoder.")}
    if args.format == "vae" and kind != "vae" or args.format in ("wan", "self-forcing") and kind == "vae":
        raise InputError(f"{args.input}: --format {args.format} but the file holds a "
                         f"{'VAE' if kind == 'vae' else 'DiT'}")
    if args.format == "self-forcing" and picked is None:
        raise InputError(f"{args.input}: --format self-forcing needs a dict with 'generator_ema' or 'generator'")

    renamed = {}
    for name, s in sources.items():
        new = strip_junk(name)
        if kind == "dit-diffusers" and args.names != "keep":
            new = diffusers_to_original(new)
        if args.names == "original" and new.startswith("model."):
            new = new[len("model."):]
        if new in renamed:
            raise InputError(f"{args.input}: tensors '{renamed[new][0]}' and '{name}' both become '{new}'")
        renamed[new] = (name, s)

    # ---- config ----
    metadata = {"converted_by": "tools/convert_checkpoint.py", "source": os.path.basename(args.input)}
    if picked:
        metadata["source_entry"] = picked
    if kind.startswith("umt5"):
        if args.lora:
            raise InputError("--lora applies to a DiT checkpoint, not a text encoder")
        metadata["config"] = json.dumps(umt5_config(renamed, kind), sort_keys=True)
    elif kind == "vae":
        if args.lora:
            raise InputError("--lora applies to a DiT checkpoint, not a VAE")
        # conv2 [z, z, 1, 1, 1] (diffusers: post_quant_conv), also behind WanVAEWrapper's "model." prefix.
        conv2 = next((s for n, (_, s) in renamed.items()
                      if canonical(n) in ("conv2.weight", "post_quant_conv.weight")), None)
        cfg = {"model_type": "wan2.1_vae"}
        if conv2 is not None:
            cfg["z_dim"] = conv2.shape[0]
        metadata["config"] = json.dumps(cfg, sort_keys=True)
    else:
        shapes = {canonical(n): s.shape for n, (_, s) in renamed.items()}
        if kind == "dit-diffusers" and args.names == "keep":
            shapes = {diffusers_to_original(n): s for n, s in shapes.items()}
        cfg_given = None
        if args.config:
            cfg_given = read_config_option(args.config)
        else:
            side = os.path.join(os.path.dirname(os.path.abspath(args.input)), "config.json")
            if os.path.exists(side) and not src_meta.get("config"):
                cfg_given = read_config_option(side)
                print(f"convert_checkpoint: using {side}", file=sys.stderr)
            elif src_meta.get("config"):
                cfg_given = read_config_option(src_meta["config"])
        cfg = infer_config(shapes, argparse.Namespace(num_heads=(cfg_given or {}).get("num_heads") or args.num_heads,
                                                      text_len=args.text_len, eps=args.eps))
        if cfg_given:
            for k, v in cfg_given.items():
                if k in ("dim", "ffn_dim", "num_layers", "in_dim", "out_dim", "text_dim", "freq_dim") and v != cfg[k]:
                    raise InputError(f"config says {k} = {v} but the tensors say {cfg[k]}")
                if k == "patch_size" and list(v) != list(cfg[k]):
                    raise InputError(f"config says patch_size = {list(v)} but the tensors say {cfg[k]}")
                cfg[k] = list(v) if k == "patch_size" else v
        if cfg["dim"] % cfg["num_heads"] or (cfg["dim"] // cfg["num_heads"]) % 2:
            raise InputError(f"num_heads {cfg['num_heads']} does not divide dim {cfg['dim']} into even head sizes")
        if cfg["model_type"] == "t2v":
            check_dit(shapes, cfg)
        metadata["config"] = json.dumps(cfg, sort_keys=True)

    # ---- LoRA ----
    deltas = {}
    if args.lora:
        deltas = load_lora(args.lora, args)
        by_canonical = {canonical(n): n for n in renamed}
        for target, (a, b, _) in deltas.items():
            base = by_canonical.get(target)
            if base is None:
                raise InputError(f"{args.lora}: LoRA for '{target[:-len('.weight')]}', which the base checkpoint "
                                 f"does not have")
            shape = renamed[base][1].shape
            if (b.shape[0], a.shape[1]) != tuple(shape):
                raise InputError(f"{args.lora}: LoRA delta for '{target}' is {[b.shape[0], a.shape[1]]}, the weight "
                                 f"is {list(shape)}")
        deltas = {by_canonical[t]: v for t, v in deltas.items()}
        metadata["lora"] = json.dumps({"source": os.path.basename(args.lora), "merged_tensors": len(deltas),
                                       "scale": sorted({d[2] for d in deltas.values()})})

    # ---- write ----
    out_dtype = dtype_named(DTYPES[args.dtype]) if DTYPES[args.dtype] else None
    items = []
    for name in sorted(renamed):
        _, s = renamed[name]
        dtype = out_dtype if (out_dtype is not None and s.dtype.is_floating_point) else s.dtype

        def produce(s=s, name=name, dtype=dtype):
            t = s.load()
            if name in deltas:
                a, b, scale = deltas[name]
                t = (t.float() + (b.float() @ a.float()) * scale)
            return t.to(dtype)
        items.append((name, s.shape, dtype, produce))
    out_dir = os.path.dirname(os.path.abspath(args.output))
    tmp = os.path.join(out_dir, f".{os.path.basename(args.output)}.tmp-{os.getpid()}")
    try:
        write_safetensors(tmp, items, metadata)
        os.replace(tmp, args.output)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    print(f"convert_checkpoint: wrote {args.output}: {len(items)} tensors ({kind}"
          f"{', entry ' + picked if picked else ''}{', LoRA merged into %d' % len(deltas) if deltas else ''})",
          file=sys.stderr)


def main(argv=None):
    args = parse_args(argv)
    st_only = args.input.endswith((".safetensors", ".json")) and (args.lora is None or args.lora.endswith(".safetensors"))
    if torch is None and not st_only:
        fail("reading .pth / .pt checkpoints needs PyTorch (pip install torch); safetensors inputs need only numpy",
             EXIT_RUNTIME)
    if torch is None and np is None:
        fail("this tool needs numpy (pip install numpy) or PyTorch", EXIT_RUNTIME)
    try:
        convert(args)
    except InputError as e:
        fail(str(e), EXIT_INPUT)
    except OSError as e:
        fail(str(e), EXIT_RUNTIME)
    return 0


if __name__ == "__main__":
    sys.exit(main())

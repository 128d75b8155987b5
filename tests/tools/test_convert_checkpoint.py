"""Tests of tools/convert_checkpoint.py on small fake checkpoints of every kind it reads.

Run: python3 -m unittest discover tests/tools   (skips cleanly when torch or safetensors is missing)
"""

import contextlib
import importlib.util
import io
import json
import os
import subprocess
import sys
import tempfile
import unittest

try:
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file
except ImportError as e:  # CI machines may lack torch
    print(f"test_convert_checkpoint: skipped ({e}; needs torch and safetensors)", file=sys.stderr)
    raise unittest.SkipTest(f"needs torch and safetensors: {e}")

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOL = os.path.join(REPO, "tools", "convert_checkpoint.py")

DIM, HEADS, FFN, LAYERS, TEXT_DIM, FREQ = 8, 2, 16, 2, 12, 256

_spec = importlib.util.spec_from_file_location("convert_checkpoint", TOOL)
convert_checkpoint = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(convert_checkpoint)


class Result:
    def __init__(self, returncode, stderr):
        self.returncode, self.stderr = returncode, stderr


def fake_dit(seed=0, layers=LAYERS):
    """A tiny Wan T2V DiT state dict with the original names."""
    g = torch.Generator().manual_seed(seed)
    shapes = {"patch_embedding.weight": (DIM, 16, 1, 2, 2), "patch_embedding.bias": (DIM,)}

    def lin(n, o, i):
        shapes[n + ".weight"] = (o, i)
        shapes[n + ".bias"] = (o,)

    lin("text_embedding.0", DIM, TEXT_DIM)
    lin("text_embedding.2", DIM, DIM)
    lin("time_embedding.0", DIM, FREQ)
    lin("time_embedding.2", DIM, DIM)
    lin("time_projection.1", 6 * DIM, DIM)
    for i in range(layers):
        b = f"blocks.{i}."
        shapes[b + "modulation"] = (1, 6, DIM)
        for a in ("self_attn", "cross_attn"):
            for p in "qkvo":
                lin(f"{b}{a}.{p}", DIM, DIM)
            shapes[f"{b}{a}.norm_q.weight"] = (DIM,)
            shapes[f"{b}{a}.norm_k.weight"] = (DIM,)
        shapes[b + "norm3.weight"] = (DIM,)
        shapes[b + "norm3.bias"] = (DIM,)
        lin(b + "ffn.0", FFN, DIM)
        lin(b + "ffn.2", DIM, FFN)
    shapes["head.modulation"] = (1, 2, DIM)
    lin("head.head", 64, DIM)
    return {k: torch.randn(v, generator=g) for k, v in sorted(shapes.items())}


def fake_vae(seed=0):
    g = torch.Generator().manual_seed(seed)
    shapes = {"encoder.conv1.weight": (4, 3, 3, 3, 3), "encoder.conv1.bias": (4,),
              "conv1.weight": (32, 32, 1, 1, 1), "conv1.bias": (32,), "conv2.weight": (16, 16, 1, 1, 1),
              "conv2.bias": (16,), "decoder.conv1.weight": (8, 16, 3, 3, 3), "decoder.conv1.bias": (8,)}
    return {k: torch.randn(v, generator=g) for k, v in shapes.items()}


def to_diffusers(sd):
    """Original Wan names -> diffusers WanTransformer3DModel names (as diffusers' own converter does)."""
    out = {}
    for k, v in sd.items():
        n = k
        for a, b in (("time_embedding.0", "condition_embedder.time_embedder.linear_1"),
                     ("time_embedding.2", "condition_embedder.time_embedder.linear_2"),
                     ("text_embedding.0", "condition_embedder.text_embedder.linear_1"),
                     ("text_embedding.2", "condition_embedder.text_embedder.linear_2"),
                     ("time_projection.1", "condition_embedder.time_proj"),
                     ("head.modulation", "scale_shift_table"), ("head.head", "proj_out")):
            if n.startswith(a + ".") or n == a:
                n = b + n[len(a):]
        n = n.replace(".modulation", ".scale_shift_table").replace("ffn.0", "ffn.net.0.proj")
        n = n.replace("ffn.2", "ffn.net.2").replace(".norm3.", ".norm2.")
        for a, b in (("self_attn", "attn1"), ("cross_attn", "attn2")):
            for p, q in (("q", "to_q"), ("k", "to_k"), ("v", "to_v"), ("o", "to_out.0"),
                         ("norm_q", "norm_q"), ("norm_k", "norm_k")):
                n = n.replace(f".{a}.{p}.", f".{b}.{q}.")
        out[n] = v
    return out


class ConverterTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name

    def tearDown(self):
        self.tmp.cleanup()

    def path(self, name):
        return os.path.join(self.dir, name)

    def run_tool(self, *args, expect=0):
        """Runs the tool's main() in this process (a subprocess per call would import torch each time)."""
        err = io.StringIO()
        code = 0
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                code = convert_checkpoint.main(list(args)) or 0
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        r = Result(code, err.getvalue())
        self.assertEqual(r.returncode, expect, f"args {args}\nstderr {r.stderr}")
        return r

    def run_subprocess(self, *args, expect=0, hide_torch=False):
        prelude = "import sys, runpy\n"
        if hide_torch:
            prelude += "sys.modules['torch'] = None\n"
        code = prelude + f"sys.argv = {[TOOL, *args]!r}\nrunpy.run_path({TOOL!r}, run_name='__main__')\n"
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        self.assertEqual(r.returncode, expect, f"args {args}\nstdout {r.stdout}\nstderr {r.stderr}")
        return r

    def read(self, path):
        with safe_open(path, framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()

    def assert_same(self, got, want):
        self.assertEqual(sorted(got), sorted(want))
        for k in want:
            self.assertEqual(got[k].dtype, want[k].dtype, k)
            self.assertTrue(torch.equal(got[k], want[k]), k)

    def check_config(self, meta, **expect):
        cfg = json.loads(meta["config"])
        want = dict(dim=DIM, num_heads=HEADS, ffn_dim=FFN, num_layers=LAYERS, in_dim=16, out_dim=16,
                    text_dim=TEXT_DIM, freq_dim=FREQ, patch_size=[1, 2, 2], model_type="t2v", text_len=512, eps=1e-6)
        want.update(expect)
        self.assertEqual(cfg, want)

    # ------------------------------------------------------------------ Self-Forcing
    def self_forcing_ckpt(self, entries=("generator_ema", "generator"), fsdp=True):
        ema, raw = fake_dit(1), fake_dit(2)
        ckpt = {}
        for entry, sd in (("generator_ema", ema), ("generator", raw)):
            if entry in entries:
                junk = "_fsdp_wrapped_module." if fsdp else ""
                ckpt[entry] = {("model." + junk + k if k.startswith("blocks") else "model." + k): v
                               for k, v in sd.items()}
        p = self.path("self_forcing_dmd.pt")
        torch.save(ckpt, p)
        return p, ema, raw

    def test_self_forcing_ema_default(self):
        p, ema, _ = self.self_forcing_ckpt()
        out = self.path("sf.safetensors")
        self.run_tool(p, "-o", out, "--num-heads", "2")
        got, meta = self.read(out)
        self.assert_same(got, {"model." + k: v for k, v in ema.items()})
        self.check_config(meta)
        self.assertEqual(meta["source_entry"], "generator_ema")
        self.assertFalse([f for f in os.listdir(self.dir) if "tmp" in f])

    def test_self_forcing_non_ema_original_names_bf16(self):
        p, _, raw = self.self_forcing_ckpt()
        out = self.path("sf.safetensors")
        self.run_tool(p, "-o", out, "--use-ema", "false", "--names", "original", "--dtype", "bf16",
                      "--num-heads", "2", "--text-len", "77")
        got, meta = self.read(out)
        self.assert_same(got, {k: v.to(torch.bfloat16) for k, v in raw.items()})
        self.check_config(meta, text_len=77)

    def test_self_forcing_missing_entry_is_exit_2(self):
        p, _, _ = self.self_forcing_ckpt(entries=("generator",))
        r = self.run_tool(p, "-o", self.path("x.safetensors"), "--num-heads", "2", expect=2)
        self.assertIn("generator_ema", r.stderr)
        self.assertIn("--use-ema false", r.stderr)
        self.assertFalse(os.path.exists(self.path("x.safetensors")))

    def test_unknown_num_heads_is_exit_2(self):
        p, _, _ = self.self_forcing_ckpt()
        r = self.run_tool(p, "-o", self.path("x.safetensors"), expect=2)
        self.assertIn("--num-heads", r.stderr)

    def test_config_option_and_mismatch(self):
        p, _, _ = self.self_forcing_ckpt()
        cfg = {"dim": DIM, "num_heads": 4, "ffn_dim": FFN, "num_layers": LAYERS, "text_len": 512,
               "_class_name": "WanModel", "eps": 1e-6, "model_type": "t2v"}
        out = self.path("sf.safetensors")
        self.run_tool(p, "-o", out, "--config", json.dumps(cfg))
        self.check_config(self.read(out)[1], num_heads=4)
        cfg["num_layers"] = 3
        r = self.run_tool(p, "-o", self.path("bad.safetensors"), "--config", json.dumps(cfg), expect=2)
        self.assertIn("num_layers", r.stderr)

    def test_missing_tensor_is_exit_2(self):
        sd = fake_dit()
        del sd["blocks.1.ffn.0.weight"]
        p = self.path("wan.pth")
        torch.save(sd, p)
        r = self.run_tool(p, "-o", self.path("x.safetensors"), "--num-heads", "2", expect=2)
        self.assertIn("blocks.1.ffn.0.weight", r.stderr)

    def test_wrong_shape_is_exit_2(self):
        sd = fake_dit()
        sd["blocks.0.cross_attn.k.weight"] = torch.zeros(DIM, DIM + 1)
        p = self.path("wan.pth")
        torch.save(sd, p)
        r = self.run_tool(p, "-o", self.path("x.safetensors"), "--num-heads", "2", expect=2)
        self.assertIn("blocks.0.cross_attn.k.weight", r.stderr)

    # ------------------------------------------------------------------ LongLive base + LoRA
    def lora_ckpt(self, base, rank=3, wrap=True, targets=None):
        g = torch.Generator().manual_seed(7)
        targets = targets or [f"blocks.{i}.{m}" for i in range(LAYERS) for m in
                              ("self_attn.q", "self_attn.k", "self_attn.v", "self_attn.o", "cross_attn.q",
                               "cross_attn.k", "cross_attn.v", "cross_attn.o", "ffn.0", "ffn.2")]
        lora = {}
        for t in targets:
            o, i = base[t + ".weight"].shape
            lora[f"base_model.model.{t}.lora_A.weight"] = torch.randn(rank, i, generator=g).to(torch.bfloat16)
            lora[f"base_model.model.{t}.lora_B.weight"] = torch.randn(o, rank, generator=g).to(torch.bfloat16)
        p = self.path("lora.pt")
        torch.save({"generator_lora": lora} if wrap else lora, p)
        return p, lora

    def test_longlive_lora_merge(self):
        p, _, raw = self.self_forcing_ckpt(entries=("generator",), fsdp=False)  # longlive_base.pt
        lp, lora = self.lora_ckpt(raw, rank=4)
        out = self.path("ll.safetensors")
        self.run_tool(p, "--lora", lp, "--lora-alpha", "8", "-o", out, "--num-heads", "2")
        got, meta = self.read(out)
        self.assertEqual(meta["source_entry"], "generator")  # --use-ema defaults to false with --lora
        want = {}
        for k, v in raw.items():
            mod = k[:-len(".weight")]
            a = lora.get(f"base_model.model.{mod}.lora_A.weight")
            if k.endswith(".weight") and a is not None:
                b = lora[f"base_model.model.{mod}.lora_B.weight"]
                v = v + (b.float() @ a.float()) * (8 / 4)
            want["model." + k] = v
        self.assertEqual(sorted(got), sorted(want))
        for k in want:
            torch.testing.assert_close(got[k], want[k], rtol=1e-6, atol=1e-6, msg=k)
        self.assertFalse(torch.equal(got["model.blocks.1.ffn.2.weight"], raw["blocks.1.ffn.2.weight"]))
        self.assertTrue(torch.equal(got["model.blocks.1.ffn.2.bias"], raw["blocks.1.ffn.2.bias"]))
        self.assertEqual(json.loads(meta["lora"])["merged_tensors"], 2 * 10)

    def test_lora_matches_peft_merge(self):
        try:
            import peft
        except ImportError:
            self.skipTest("peft not installed")

        class Attn(torch.nn.Module):
            def __init__(self):
                super().__init__()
                for p in "qkvo":
                    setattr(self, p, torch.nn.Linear(DIM, DIM))

        class Block(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.self_attn, self.cross_attn = Attn(), Attn()
                self.ffn = torch.nn.Sequential(torch.nn.Linear(DIM, FFN), torch.nn.GELU(), torch.nn.Linear(FFN, DIM))

        class Net(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.blocks = torch.nn.ModuleList([Block() for _ in range(LAYERS)])

        torch.manual_seed(3)
        net = Net()
        base = fake_dit(4)
        net.load_state_dict({k: v for k, v in base.items() if k in net.state_dict()})
        targets = [n for n, m in net.named_modules() if isinstance(m, torch.nn.Linear)]
        pm = peft.get_peft_model(net, peft.LoraConfig(r=4, lora_alpha=6, target_modules=targets))
        for n, prm in pm.named_parameters():
            if "lora_B" in n:
                torch.nn.init.normal_(prm)  # peft starts B at zero
        lora_sd = peft.get_peft_model_state_dict(pm)
        merged = pm.merge_and_unload().state_dict()
        torch.save({"generator": {"model." + k: v for k, v in base.items()}}, self.path("base.pt"))
        torch.save(lora_sd, self.path("lora_raw.pt"))  # a raw peft state dict
        out = self.path("merged.safetensors")
        self.run_tool(self.path("base.pt"), "--lora", self.path("lora_raw.pt"), "--lora-alpha", "6",
                      "-o", out, "--num-heads", "2", "--names", "original")
        got, _ = self.read(out)
        for k, v in merged.items():
            torch.testing.assert_close(got[k], v, rtol=1e-5, atol=1e-5, msg=k)

    def test_lora_for_missing_module_is_exit_2(self):
        p, _, raw = self.self_forcing_ckpt(entries=("generator",))
        raw = dict(raw)
        raw["blocks.5.self_attn.q.weight"] = torch.zeros(DIM, DIM)
        lp, _ = self.lora_ckpt(raw, targets=["blocks.5.self_attn.q"])
        r = self.run_tool(p, "--lora", lp, "-o", self.path("x.safetensors"), "--num-heads", "2", expect=2)
        self.assertIn("blocks.5.self_attn.q", r.stderr)

    # ------------------------------------------------------------------ Wan2.1 files
    def test_wan_safetensors_with_config_json(self):
        sd = fake_dit(5)
        save_file({k: v.to(torch.bfloat16) for k, v in sd.items()}, self.path("diffusion_pytorch_model.safetensors"))
        with open(self.path("config.json"), "w") as f:
            json.dump({"_class_name": "WanModel", "dim": DIM, "num_heads": HEADS, "ffn_dim": FFN, "freq_dim": FREQ,
                       "in_dim": 16, "out_dim": 16, "num_layers": LAYERS, "text_len": 512, "eps": 1e-6,
                       "model_type": "t2v"}, f)
        out = self.path("wan.safetensors")
        self.run_tool(self.path("diffusion_pytorch_model.safetensors"), "-o", out, "--dtype", "f32")
        got, meta = self.read(out)
        self.assert_same(got, {k: v.to(torch.bfloat16).float() for k, v in sd.items()})
        self.check_config(meta)

    def test_wan_sharded_index(self):
        sd = fake_dit(6)
        names = sorted(sd)
        shard_of = {}
        for j, part in enumerate((names[: len(names) // 2], names[len(names) // 2:])):
            fn = f"diffusion_pytorch_model-0000{j + 1}-of-00002.safetensors"
            save_file({k: sd[k] for k in part}, self.path(fn))
            shard_of.update({k: fn for k in part})
        idx = self.path("diffusion_pytorch_model.safetensors.index.json")
        with open(idx, "w") as f:
            json.dump({"metadata": {"total_size": 0}, "weight_map": shard_of}, f)
        out = self.path("wan.safetensors")
        self.run_tool(idx, "-o", out, "--num-heads", "2")
        got, meta = self.read(out)
        self.assert_same(got, sd)
        self.check_config(meta)
        os.remove(self.path("diffusion_pytorch_model-00002-of-00002.safetensors"))
        r = self.run_tool(idx, "-o", self.path("y.safetensors"), "--num-heads", "2", expect=2)
        self.assertIn("00002-of-00002", r.stderr)

    def test_wan_pth(self):
        sd = fake_dit(7)
        torch.save(sd, self.path("wan.pth"))
        out = self.path("wan.safetensors")
        self.run_tool(self.path("wan.pth"), "-o", out, "--num-heads", "2", "--dtype", "f16")
        got, meta = self.read(out)
        self.assert_same(got, {k: v.half() for k, v in sd.items()})

    def test_diffusers_names_become_original(self):
        sd = fake_dit(8)
        save_file(to_diffusers(sd), self.path("diffusers.safetensors"))
        out = self.path("wan.safetensors")
        self.run_tool(self.path("diffusers.safetensors"), "-o", out, "--num-heads", "2")
        got, meta = self.read(out)
        self.assert_same(got, sd)  # norm2 (diffusers) -> norm3 (Wan) included
        self.check_config(meta)

    # ------------------------------------------------------------------ VAE
    def test_vae(self):
        sd = fake_vae()
        torch.save(sd, self.path("Wan2.1_VAE.pth"))
        out = self.path("vae.safetensors")
        self.run_tool(self.path("Wan2.1_VAE.pth"), "-o", out, "--dtype", "bf16")
        got, meta = self.read(out)
        self.assert_same(got, {k: v.to(torch.bfloat16) for k, v in sd.items()})
        self.assertEqual(json.loads(meta["config"]), {"model_type": "wan2.1_vae", "z_dim": 16})

    # ------------------------------------------------------------------ bad inputs
    def test_bad_inputs(self):
        torch.save({"optimizer": {"lr": torch.tensor(1.0)}, "step": torch.tensor(3)}, self.path("odd.pt"))
        r = self.run_tool(self.path("odd.pt"), "-o", self.path("x.safetensors"), expect=2)
        self.assertIn("odd.pt", r.stderr)
        torch.save({"foo.weight": torch.zeros(2)}, self.path("unknown.pt"))
        r = self.run_tool(self.path("unknown.pt"), "-o", self.path("x.safetensors"), expect=2)
        self.assertIn("unknown checkpoint format", r.stderr)
        with open(self.path("garbage.pt"), "w") as f:
            f.write("not a checkpoint")
        self.run_tool(self.path("garbage.pt"), "-o", self.path("x.safetensors"), expect=2)
        with open(self.path("garbage.safetensors"), "wb") as f:
            f.write(b"\xff" * 64)
        self.run_tool(self.path("garbage.safetensors"), "-o", self.path("x.safetensors"), expect=2)
        self.run_subprocess(self.path("nonexistent.pt"), "-o", self.path("x.safetensors"), expect=2)
        self.run_tool(self.path("odd.pt"), expect=2)  # no -o: usage error
        self.run_tool(self.path("odd.pt"), "-o", self.path("x.safetensors"), "--dtype", "f8", expect=2)
        self.assertFalse(os.path.exists(self.path("x.safetensors")))

    def test_pickled_objects_need_unsafe_load(self):
        sd = fake_dit()
        torch.save({"generator_ema": {"model." + k: v for k, v in sd.items()}, "note": Note()},
                   self.path("pickled.pt"))
        r = self.run_tool(self.path("pickled.pt"), "-o", self.path("x.safetensors"), "--num-heads", "2", expect=2)
        self.assertIn("--unsafe-load", r.stderr)

    def test_existing_output_kept_without_force(self):
        torch.save(fake_vae(), self.path("vae.pth"))
        with open(self.path("out.safetensors"), "w") as f:
            f.write("keep me")
        self.run_tool(self.path("vae.pth"), "-o", self.path("out.safetensors"), expect=2)
        with open(self.path("out.safetensors")) as f:
            self.assertEqual(f.read(), "keep me")
        self.run_tool(self.path("vae.pth"), "-o", self.path("out.safetensors"), "--force")
        self.assertEqual(len(self.read(self.path("out.safetensors"))[0]), len(fake_vae()))


    def test_real_process_exit_codes(self):
        torch.save(fake_vae(), self.path("vae.pth"))
        self.run_subprocess(self.path("vae.pth"), "-o", self.path("vae.safetensors"))
        self.assertEqual(len(self.read(self.path("vae.safetensors"))[0]), len(fake_vae()))
        r = self.run_subprocess(self.path("vae.pth"), "-o", self.path("v2.safetensors"), hide_torch=True, expect=1)
        self.assertIn("needs PyTorch", r.stderr)


    # ------------------------------------------------------------------ without PyTorch
    def test_safetensors_inputs_convert_without_torch_byte_for_byte(self):
        """Safetensors inputs go through numpy when torch is missing: the same file as the torch path, byte for
        byte (dtype changes round to nearest even either way), and a LoRA merge to fp32 accuracy."""
        sd = fake_dit(9)
        save_file({k: v.to(torch.bfloat16) for k, v in sd.items()}, self.path("bf16.safetensors"))
        save_file(to_diffusers(sd), self.path("diffusers.safetensors"))
        names = sorted(sd)
        shard_of = {}
        for j, part in enumerate((names[: len(names) // 2], names[len(names) // 2:])):
            fn = f"m-0000{j + 1}-of-00002.safetensors"
            save_file({k: sd[k].half() for k in part}, self.path(fn))
            shard_of.update({k: fn for k in part})
        with open(self.path("m.safetensors.index.json"), "w") as f:
            json.dump({"weight_map": shard_of}, f)
        cases = [("bf16.safetensors", "--dtype", "f32"), ("bf16.safetensors", "--dtype", "f16"),
                 ("diffusers.safetensors", "--dtype", "bf16"), ("diffusers.safetensors",),
                 ("m.safetensors.index.json", "--dtype", "bf16")]
        for i, (src, *extra) in enumerate(cases):
            with_torch, without = self.path(f"t{i}.safetensors"), self.path(f"n{i}.safetensors")
            self.run_tool(self.path(src), "-o", with_torch, "--num-heads", "2", *extra)
            self.run_subprocess(self.path(src), "-o", without, "--num-heads", "2", *extra, hide_torch=True)
            with open(with_torch, "rb") as a, open(without, "rb") as b:
                self.assertEqual(a.read(), b.read(), f"{src} {extra}: numpy and torch outputs differ")
        # A LoRA in safetensors merged into a safetensors base: fp32 math, another summation order.
        lora = {}
        g = torch.Generator().manual_seed(3)
        for t in ("blocks.0.self_attn.q", "blocks.1.ffn.0"):
            o, i = sd[t + ".weight"].shape
            lora[f"{t}.lora_A.weight"] = torch.randn(2, i, generator=g)
            lora[f"{t}.lora_B.weight"] = torch.randn(o, 2, generator=g)
        save_file(lora, self.path("lora.safetensors"))
        args = ("--lora", self.path("lora.safetensors"), "--num-heads", "2", "--dtype", "f32")
        self.run_tool(self.path("bf16.safetensors"), "-o", self.path("lt.safetensors"), *args)
        self.run_subprocess(self.path("bf16.safetensors"), "-o", self.path("ln.safetensors"), *args, hide_torch=True)
        a, b = self.read(self.path("lt.safetensors"))[0], self.read(self.path("ln.safetensors"))[0]
        self.assertEqual(sorted(a), sorted(b))
        for k in a:
            torch.testing.assert_close(b[k], a[k], rtol=1e-6, atol=1e-6, msg=k)
        merged = "blocks.0.self_attn.q.weight"
        self.assertFalse(torch.equal(a[merged], sd[merged].to(torch.bfloat16).float()), "the LoRA was not merged")
        # A broken file is still an input error (exit 2) without torch.
        with open(self.path("garbage.safetensors"), "wb") as f:
            f.write(b"\xff" * 64)
        self.run_subprocess(self.path("garbage.safetensors"), "-o", self.path("g.safetensors"), hide_torch=True,
                            expect=2)


class Note:
    """An arbitrary pickled object (as some training checkpoints carry)."""


if __name__ == "__main__":
    unittest.main()

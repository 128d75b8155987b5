"""Replays the PyTorch reference's rollouts (tests/data/parity/rollout_*.safetensors) through `longroll
generate` exactly as a user would (--weights, --prompt-embeds, --noise, --switch-prompt, --set, --save-latents)
and compares the saved latents with the reference's. Standard library only (CI has no numpy).

usage: replay_reference.py LONGROLL SOURCE_DIR TMPDIR
"""
import json
import math
import os
import struct
import subprocess
import sys


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    return header, data


def tensor_f32(header, data, name):
    e = header[name]
    assert e["dtype"] == "F32", (name, e["dtype"])
    b, end = e["data_offsets"]
    return e["shape"], struct.unpack("<%df" % ((end - b) // 4), data[b:end])


def write_context(path, shape, values):
    """A --prompt-embeds file holding one F32 tensor `context`."""
    payload = struct.pack("<%df" % len(values), *values)
    header = json.dumps({"context": {"dtype": "F32", "shape": shape, "data_offsets": [0, len(payload)]}}).encode()
    header += b" " * ((8 - len(header) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header + payload)


def main():
    longroll, src, tmp = sys.argv[1:4]
    parity = os.path.join(src, "tests", "data", "parity")
    cases = sorted(f for f in os.listdir(parity) if f.startswith("rollout_") and f.endswith(".safetensors"))
    assert cases, "no rollout fixtures in " + parity
    failures = 0
    for case in cases:
        path = os.path.join(parity, case)
        header, data = read_safetensors(path)
        r = json.loads(header["__metadata__"]["rollout"])
        T, C, h, w = header["latents"]["shape"]
        # No --config: the checkpoint carries its model (a config's model block must agree with it); the rollout
        # settings come from the fixture.
        args = [longroll, "generate", "--quiet",
                "--weights", os.path.join(parity, r["weights"]),
                "--prompt-embeds", path, "--noise", path,
                "--size", "%dx%d" % (w * 8, h * 8), "--latent-frames", str(T),
                "--set", "rollout.frames_per_chunk=%d" % r["frames_per_chunk"],
                "--set", "rollout.denoising_steps=" + ",".join(str(s) for s in r["denoising_steps"]),
                "--set", "rollout.timestep_shift=%r" % r["timestep_shift"],
                "--set", "rollout.context_noise=%d" % r["context_noise"],
                "--set", "rollout.local_attn_size=%d" % r["local_attn_size"],
                "--set", "rollout.sink_size=%d" % r["sink_size"],
                "--set", "rollout.rope_mode=" + r["rope_mode"].upper(),
                "--save-latents", os.path.join(tmp, case)]
        for start, name in r.get("prompt_switches", []):
            shape, values = tensor_f32(header, data, name)
            ctx = os.path.join(tmp, "%s.%s.safetensors" % (case, name))
            write_context(ctx, shape, values)
            args += ["--switch-prompt", "%d:%s" % (start, ctx)]
        run = subprocess.run(args, capture_output=True, text=True)
        if run.returncode != 0:
            print("FAIL %s: exit %d\n%s" % (case, run.returncode, run.stderr[-2000:]))
            failures += 1
            continue
        got_h, got_d = read_safetensors(os.path.join(tmp, case))
        _, got = tensor_f32(got_h, got_d, "latents")
        _, ref = tensor_f32(header, data, "latents")
        num = math.sqrt(sum((a - b) ** 2 for a, b in zip(got, ref)))
        den = math.sqrt(sum(b * b for b in ref))
        rel = num / den
        ok = len(got) == len(ref) and rel < 1e-5
        print("%s %s: %d latent frames, relative error %.3g" % ("ok" if ok else "FAIL", case, T, rel))
        failures += 0 if ok else 1
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()

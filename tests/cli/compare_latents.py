"""compare_latents.py GOT REF BOUND: exit 0 when ||got - ref|| / ||ref|| <= BOUND for the F32 `latents` of two
safetensors files (same shape). Standard library only."""
import json
import math
import struct
import sys


def latents(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        e = json.loads(f.read(n))["latents"]
        data = f.read()
    assert e["dtype"] == "F32", (path, e["dtype"])
    b, end = e["data_offsets"]
    return e["shape"], struct.unpack("<%df" % ((end - b) // 4), data[b:end])


(gs, got), (rs, ref) = latents(sys.argv[1]), latents(sys.argv[2])
if gs != rs:
    print(f"shape {gs} != {rs}")
    sys.exit(1)
rel = math.sqrt(sum((a - b) ** 2 for a, b in zip(got, ref))) / math.sqrt(sum(b * b for b in ref))
print(f"relative error {rel:.3g} (bound {sys.argv[3]})")
sys.exit(0 if rel <= float(sys.argv[3]) else 1)

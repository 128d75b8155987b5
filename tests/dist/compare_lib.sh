# Shell helpers for the CLI tests that compare runs (sourced; needs python3, standard library only).

# Relative L2 error of two F32 'latents' tensors of safetensors files.
rel_err() {
  python3 - "$1" "$2" <<'PY'
import json, struct, sys, array, math
def load(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        meta = json.loads(f.read(n))["latents"]
        assert meta["dtype"] == "F32", meta
        f.seek(8 + n + meta["data_offsets"][0])
        a = array.array("f")
        a.frombytes(f.read(meta["data_offsets"][1] - meta["data_offsets"][0]))
        return a
a, b = load(sys.argv[1]), load(sys.argv[2])
assert len(a) == len(b) and len(a) > 0
print(f"{math.sqrt(sum((x - y) ** 2 for x, y in zip(a, b))) / math.sqrt(sum(y * y for y in b)):.3e}")
PY
}

# Frames of a Y4M file (header line, then "FRAME\n" + W*H*3/2 bytes each); -1 when truncated or padded.
y4m_frames() {
  python3 - "$1" <<'PY'
import sys
data = open(sys.argv[1], "rb").read()
end = data.index(b"\n")
fields = data[:end].split()
w = int([f for f in fields if f.startswith(b"W")][0][1:])
h = int([f for f in fields if f.startswith(b"H")][0][1:])
size, pos, n = w * h * 3 // 2, end + 1, 0
while pos < len(data):
    if data[pos:pos + 6] != b"FRAME\n":
        print(-1); sys.exit()
    pos += 6 + size
    n += 1
print(n if pos == len(data) else -1)
PY
}

# le A B: success when the number A is at most B.
le() { python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) <= float(sys.argv[2]) else 1)" "$1" "$2"; }
# lt A B: success when the number A is below B.
lt() { python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) < float(sys.argv[2]) else 1)" "$1" "$2"; }

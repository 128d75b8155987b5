# `longroll generate --device cuda` end to end on a GPU (skipped without one): the tiny embedded model through
# the CUDA DiT and rollout, the VAE on the CPU behind it. The latents must be those of the CPU reference path
# to bf16 accuracy, the video must have every frame, and auto must pick the GPU.
source "$(dirname "$0")/lib.sh"
if "$LONGROLL" version | grep -qE "cuda: no| 0 devices visible"; then echo "no CUDA device"; exit 77; fi
command -v python3 >/dev/null || { echo "python3 not installed"; exit 77; }

args=(generate --latent-frames 9 --seed 7 --metrics-port off)
expect 0 "device   cuda" "$LONGROLL" "${args[@]}" --device cuda --out "$TMP/gpu.y4m" --save-latents "$TMP/gpu.safetensors"
expect 0 "device   cpu" "$LONGROLL" "${args[@]}" --device cpu --save-latents "$TMP/cpu.safetensors"
expect 0 "device   cuda" "$LONGROLL" "${args[@]}" --save-latents "$TMP/auto.safetensors"
# A window with eviction and sink, window-relative RoPE: the paged cache's paths.
win=(--set rollout.local_attn_size=6 --set rollout.sink_size=1 --set rollout.rope_mode=WINDOW_RELATIVE)
expect 0 "done" "$LONGROLL" "${args[@]}" "${win[@]}" --device cuda --save-latents "$TMP/gpu_win.safetensors"
expect 0 "done" "$LONGROLL" "${args[@]}" "${win[@]}" --device cpu --save-latents "$TMP/cpu_win.safetensors"

# 9 latent frames -> 1 + 8 * 4 = 33 frames, walked through the Y4M layout (header line, then "FRAME\n" +
# W*H*3/2 bytes per 4:2:0 frame); a truncated or padded file counts as -1.
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
n_gpu="$(y4m_frames "$TMP/gpu.y4m")"
check "gpu.y4m has 33 frames (found $n_gpu)" test "$n_gpu" = 33

# Relative error of two F32 'latents' tensors (safetensors read with the standard library only).
rel_err() {
  python3 - "$1" "$2" <<'PY'
import json, struct, sys, array, math
def load(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        meta = header["latents"]
        assert meta["dtype"] == "F32", meta
        f.seek(8 + n + meta["data_offsets"][0])
        a = array.array("f")
        a.frombytes(f.read(meta["data_offsets"][1] - meta["data_offsets"][0]))
        return a
a, b = load(sys.argv[1]), load(sys.argv[2])
assert len(a) == len(b) and len(a) > 0
num = math.sqrt(sum((x - y) ** 2 for x, y in zip(a, b)))
den = math.sqrt(sum(y * y for y in b))
print(f"{num / den:.3e}")
PY
}
lt() { python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) < float(sys.argv[2]) else 1)" "$1" "$2"; }
e1="$(rel_err "$TMP/gpu.safetensors" "$TMP/cpu.safetensors")"
e2="$(rel_err "$TMP/gpu_win.safetensors" "$TMP/cpu_win.safetensors")"
e3="$(rel_err "$TMP/auto.safetensors" "$TMP/gpu.safetensors")"
echo "[ measured ] latents gpu vs cpu: $e1; window-relative with eviction: $e2; auto vs cuda: $e3"
check "cuda latents within 5e-2 of the CPU reference ($e1)" lt "$e1" 5e-2
check "cuda window-relative latents within 5e-2 of the CPU reference ($e2)" lt "$e2" 5e-2
check "auto runs the same GPU path ($e3)" lt "$e3" 1e-6
finish

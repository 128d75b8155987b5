#!/usr/bin/env bash
# Ulysses head parallelism on the GPU path: `mpirun -np 2 longroll generate --device cuda --set parallel.ulysses=2`
# with both ranks on one GPU (the exchange staged through pinned host memory over MPI) gives the 1-rank
# `--device cuda` latents to bf16 accuracy (relative error < 1e-2; the token shards run GEMMs of other row counts)
# and a video with every frame; also with a window, a sink and window-relative RoPE. Spatial sharding on the GPU
# is refused at start-up. Exit 77 (skipped) without mpirun, python3 or a GPU.
# Usage: test_generate_ulysses_cuda.sh LONGROLL
set -u
bin=$1
here=$(cd "$(dirname "$0")" && pwd)
command -v mpirun >/dev/null 2>&1 || { echo "mpirun not found: skipping"; exit 77; }
command -v python3 >/dev/null 2>&1 || { echo "python3 not found: skipping"; exit 77; }
if "$bin" version | grep -qE "cuda: no| 0 devices visible"; then echo "no CUDA device: skipping"; exit 77; fi
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
args=(generate --device cuda --latent-frames 9 --seed 7 --metrics-port off)
win=(--set rollout.local_attn_size=6 --set rollout.sink_size=1 --set rollout.rope_mode=WINDOW_RELATIVE)
fails=0

# Relative L2 error of two F32 'latents' tensors (safetensors read with the standard library only).
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
lt() { python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) < float(sys.argv[2]) else 1)" "$1" "$2"; }

# compare NAME EXTRA_ARGS...: the 1-rank and the 2-rank Ulysses runs with the same arguments.
compare() {
  local name=$1
  shift
  mkdir "$dir/$name"
  "$bin" "${args[@]}" "$@" --out "$dir/$name/one.y4m" --save-latents "$dir/$name/one.safetensors" \
      >"$dir/$name/one.log" 2>&1 || { echo "FAIL: $name: 1-rank run failed"; cat "$dir/$name/one.log"; fails=1; return; }
  timeout 300 "$here/mpirun.sh" 2 "$bin" "${args[@]}" "$@" --set parallel.ulysses=2 --out "$dir/$name/two.y4m" \
      --save-latents "$dir/$name/two.safetensors" >"$dir/$name/two.log" 2>&1 \
      || { echo "FAIL: $name: ulysses=2 run failed"; cat "$dir/$name/two.log"; fails=1; return; }
  grep -q "heads split over 2 ranks" "$dir/$name/two.log" \
      || { echo "FAIL: $name: the 2-rank run did not report the GPU head split"; cat "$dir/$name/two.log"; fails=1; }
  local err frames
  err=$(rel_err "$dir/$name/two.safetensors" "$dir/$name/one.safetensors")
  frames=$(y4m_frames "$dir/$name/two.y4m")
  echo "[ measured ] $name: latents of 2 Ulysses ranks on one GPU vs 1 rank: relative error $err (bound 1e-2)"
  if lt "$err" 1e-2; then echo "ok: $name latents within 1e-2 ($err)"; else echo "FAIL: $name latents ($err)"; fails=1; fi
  if [ "$frames" = 33 ]; then echo "ok: $name video has 33 frames"; else echo "FAIL: $name video has $frames frames"; fails=1; fi
}
compare full
compare window "${win[@]}"

# Spatial sharding stays on the CPU path: refused on both ranks with exit 2.
timeout 120 "$here/mpirun.sh" 2 "$bin" "${args[@]}" --set video.width=256 --set video.height=128 \
    --set parallel.spatial=2 --out "$dir/bad.y4m" >"$dir/bad.log" 2>&1
rc=$?
n=$(grep -c "error on rank [01] (host .*spatial sharding" "$dir/bad.log")
if [ $rc -ne 2 ] || [ "$n" -ne 2 ] || [ -e "$dir/bad.y4m" ]; then
  echo "FAIL: --device cuda with parallel.spatial=2: exit $rc, $n rank messages"; cat "$dir/bad.log"; fails=1
else
  echo "ok: --device cuda with parallel.spatial=2 refused on both ranks with exit 2"
fi
exit $fails

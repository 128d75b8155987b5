#!/usr/bin/env bash
# `mpirun -np 2 longroll generate` gives the 1-rank latents byte for byte, rank 0 alone writes the outputs,
# and nothing is left half-written. Usage: test_generate_np2.sh LONGROLL
set -u
bin=$1
here=$(cd "$(dirname "$0")" && pwd)
command -v mpirun >/dev/null 2>&1 || { echo "mpirun not found: skipping"; exit 77; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
args=(generate --device cpu --latent-frames 3 --seed 11 --metrics-port off)

mkdir "$dir/one" "$dir/two"
"$bin" "${args[@]}" --out "$dir/one/v.y4m" --save-latents "$dir/one/l.safetensors" 2>"$dir/one.log" \
    || { echo "FAIL: 1-rank run failed"; cat "$dir/one.log"; exit 1; }
timeout 300 "$here/mpirun.sh" 2 "$bin" "${args[@]}" --out "$dir/two/v.y4m" --save-latents "$dir/two/l.safetensors" \
    >"$dir/two.log" 2>&1 || { echo "FAIL: 2-rank run failed"; cat "$dir/two.log"; exit 1; }

fails=0
cmp "$dir/one/l.safetensors" "$dir/two/l.safetensors" || { echo "FAIL: latents differ"; fails=1; }
cmp "$dir/one/v.y4m" "$dir/two/v.y4m" || { echo "FAIL: videos differ"; fails=1; }
# The same files as the 1-rank run: no temporary left behind by a second writer.
diff <(ls -A "$dir/one") <(ls -A "$dir/two") || { echo "FAIL: the output directories differ"; fails=1; }
[ $fails = 0 ] && echo "ok: 2-rank latents and video equal the 1-rank run ($(stat -c %s "$dir/two/l.safetensors") bytes)"

# Bad layouts are refused at start-up on every rank: exit 2, the same message from each rank, no output.
bad_layout() {  # bad_layout EXPECTED_SUBSTRING SET...
  local want=$1
  shift
  local start=$SECONDS
  timeout 60 "$here/mpirun.sh" 2 "$bin" "${args[@]}" "$@" --out "$dir/bad.y4m" >"$dir/bad.log" 2>&1
  local rc=$?
  local n
  n=$(grep -c "error on rank [01] (host .*$want" "$dir/bad.log")
  if [ $rc -ne 2 ] || [ "$n" -ne 2 ] || [ -e "$dir/bad.y4m" ] || [ $((SECONDS - start)) -gt 30 ]; then
    echo "FAIL: layout $*: exit $rc, $n rank messages with '$want'"; cat "$dir/bad.log"; fails=1
  else
    echo "ok: layout $* refused on both ranks with exit 2"
  fi
}
bad_layout "divisor of model.num_heads" --set parallel.ulysses=3          # the tiny model has 2 heads
bad_layout "every spatial rank needs a block" --set parallel.spatial=2     # a chunk of 128x64 frames: one query block
bad_layout "not a multiple of a group" --set video.width=256 --set video.height=128 --set parallel.ulysses=2 \
  --set parallel.spatial=2

# Head parallel: 2 Ulysses ranks (the tiny model has 2 heads) give the 1-rank latents and video exactly.
mkdir "$dir/u2"
timeout 300 "$here/mpirun.sh" 2 "$bin" "${args[@]}" --set parallel.ulysses=2 --out "$dir/u2/v.y4m" \
    --save-latents "$dir/u2/l.safetensors" >"$dir/u2.log" 2>&1 || { echo "FAIL: ulysses=2 run failed"; cat "$dir/u2.log"; exit 1; }
cmp -s "$dir/one/v.y4m" "$dir/u2/v.y4m" || { echo "FAIL: ulysses=2 video differs"; fails=1; }
python3 - "$dir/one/l.safetensors" "$dir/u2/l.safetensors" <<'PY' || fails=1
import json, struct, sys
def latents(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        h = json.loads(f.read(n))
        b, e = h["latents"]["data_offsets"]
        return f.read()[b:e]
if latents(sys.argv[1]) != latents(sys.argv[2]):
    print("FAIL: ulysses=2 latents differ from the 1-rank run")
    sys.exit(1)
print("ok: ulysses=2 on 2 ranks gives the 1-rank latents and video exactly")
PY

# Spatial parallel: 2 ranks own alternate 64-token blocks of each 256x128 frame (2 blocks) and exchange K/V.
mkdir "$dir/s1" "$dir/s2"
sargs=("${args[@]}" --set video.width=256 --set video.height=128)
"$bin" "${sargs[@]}" --save-latents "$dir/s1/l.safetensors" 2>/dev/null || { echo "FAIL: 1-rank 256x128 run"; fails=1; }
timeout 300 "$here/mpirun.sh" 2 "$bin" "${sargs[@]}" --set parallel.spatial=2 --save-latents "$dir/s2/l.safetensors" \
    >"$dir/s2.log" 2>&1 || { echo "FAIL: spatial=2 run failed"; cat "$dir/s2.log"; fails=1; }
python3 - "$dir/s1/l.safetensors" "$dir/s2/l.safetensors" <<'PY' || fails=1
import json, struct, sys
def latents(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        h = json.loads(f.read(n))
        b, e = h["latents"]["data_offsets"]
        return f.read()[b:e]
if latents(sys.argv[1]) != latents(sys.argv[2]):
    print("FAIL: spatial=2 latents differ from the 1-rank run")
    sys.exit(1)
print("ok: spatial=2 on 2 ranks gives the 1-rank latents exactly")
PY
exit $fails

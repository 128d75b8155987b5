#!/usr/bin/env bash
# `mpirun -np 4 longroll generate --set parallel.ulysses=2 --set parallel.spatial=2` (a 2 x 2 sequence-parallel
# group: the tiny model's 2 heads, a 256x128 frame's 2 blocks) gives the 1-rank latents and Y4M video byte for
# byte, and only the group's first rank writes; with a sparse policy (SPARSE_FORCING, a 6-frame window, 3 chunks)
# the 2 x 2 latents equal the 1-rank ones too. Usage: test_generate_sequence_parallel.sh LONGROLL
set -u
bin=$1
here=$(cd "$(dirname "$0")" && pwd)
command -v mpirun >/dev/null 2>&1 || { echo "mpirun not found: skipping"; exit 77; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
args=(generate --device cpu --seed 5 --metrics-port off --set video.width=256 --set video.height=128)

mkdir "$dir/one" "$dir/four"
"$bin" "${args[@]}" --latent-frames 3 --out "$dir/one/v.y4m" --save-latents "$dir/one/l.safetensors" 2>"$dir/one.log" \
    || { echo "FAIL: 1-rank run failed"; cat "$dir/one.log"; exit 1; }
timeout 300 "$here/mpirun.sh" 4 "$bin" "${args[@]}" --latent-frames 3 --set parallel.ulysses=2 --set parallel.spatial=2 \
    --out "$dir/four/v.y4m" --save-latents "$dir/four/l.safetensors" >"$dir/four.log" 2>&1 \
    || { echo "FAIL: 2 x 2 run failed"; cat "$dir/four.log"; exit 1; }

fails=0
grep -q "ulysses 2 x spatial 2" "$dir/four.log" || { echo "FAIL: the log does not show the 2 x 2 layout"; fails=1; }
same_latents() {  # same_latents A B NAME: the latents tensors are equal byte for byte
python3 - "$1" "$2" "$3" <<'PY'
import json, struct, sys
def latents(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        h = json.loads(f.read(n))
        b, e = h["latents"]["data_offsets"]
        return f.read()[b:e]
a, b = latents(sys.argv[1]), latents(sys.argv[2])
if a != b:
    print(f"FAIL: {sys.argv[3]}: 2 x 2 latents differ from the 1-rank run")
    sys.exit(1)
print(f"ok: {sys.argv[3]}: 2 x 2 latents equal the 1-rank run ({len(a)} bytes)")
PY
}
same_latents "$dir/one/l.safetensors" "$dir/four/l.safetensors" DENSE || fails=1
cmp "$dir/one/v.y4m" "$dir/four/v.y4m" || { echo "FAIL: 2 x 2 video differs from the 1-rank run"; fails=1; }
diff <(ls -A "$dir/one") <(ls -A "$dir/four") || { echo "FAIL: the output directories differ"; fails=1; }
[ $fails = 0 ] && echo "ok: 2 x 2 video equals the 1-rank run ($(stat -c %s "$dir/four/v.y4m") bytes)"

# A sparse policy behind the sharded attention step.
sparse=(--latent-frames 9 --set rollout.local_attn_size=6 --set attention.policy=SPARSE_FORCING)
"$bin" "${args[@]}" "${sparse[@]}" --save-latents "$dir/sf1.safetensors" 2>"$dir/sf1.log" \
    || { echo "FAIL: 1-rank SPARSE_FORCING run failed"; cat "$dir/sf1.log"; exit 1; }
timeout 300 "$here/mpirun.sh" 4 "$bin" "${args[@]}" "${sparse[@]}" --set parallel.ulysses=2 --set parallel.spatial=2 \
    --save-latents "$dir/sf4.safetensors" >"$dir/sf4.log" 2>&1 \
    || { echo "FAIL: 2 x 2 SPARSE_FORCING run failed"; cat "$dir/sf4.log"; exit 1; }
same_latents "$dir/sf1.safetensors" "$dir/sf4.safetensors" SPARSE_FORCING || fails=1
exit $fails

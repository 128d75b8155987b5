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
exit $fails

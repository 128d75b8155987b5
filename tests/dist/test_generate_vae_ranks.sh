#!/usr/bin/env bash
# Dedicated VAE ranks: `mpirun -np 3 longroll generate --set parallel.vae=DEDICATED_RANKS --set parallel.vae_ranks=2`
# (1 DiT rank, 2 VAE ranks splitting every frame by rows with halo exchange) writes the 1-rank video byte for byte,
# and the latents; a layout with more VAE ranks than latent rows is refused with exit 2 on every rank.
# Usage: test_generate_vae_ranks.sh LONGROLL
set -u
bin=$1
here=$(cd "$(dirname "$0")" && pwd)
command -v mpirun >/dev/null 2>&1 || { echo "mpirun not found: skipping"; exit 77; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
# 6 latent frames (2 chunks: the VAE ranks' causal caches carry over), 128x64: 8 latent rows, 4 per VAE rank.
args=(generate --device cpu --latent-frames 6 --seed 9 --metrics-port off)

mkdir "$dir/one" "$dir/three"
"$bin" "${args[@]}" --out "$dir/one/v.y4m" --save-latents "$dir/one/l.safetensors" 2>"$dir/one.log" \
    || { echo "FAIL: 1-rank run failed"; cat "$dir/one.log"; exit 1; }
timeout 300 "$here/mpirun.sh" 3 "$bin" "${args[@]}" --set parallel.vae=DEDICATED_RANKS --set parallel.vae_ranks=2 \
    --out "$dir/three/v.y4m" --save-latents "$dir/three/l.safetensors" >"$dir/three.log" 2>&1 \
    || { echo "FAIL: 1 DiT + 2 VAE ranks run failed"; cat "$dir/three.log"; exit 1; }

fails=0
grep -q "1 data-parallel group x (ulysses 1 x spatial 1 + 2 VAE ranks)" "$dir/three.log" \
    || { echo "FAIL: the log does not show the layout"; cat "$dir/three.log"; fails=1; }
cmp "$dir/one/v.y4m" "$dir/three/v.y4m" || { echo "FAIL: the video differs from the 1-rank run"; fails=1; }
python3 - "$dir/one/l.safetensors" "$dir/three/l.safetensors" <<'PY' || fails=1
import json, struct, sys
def latents(path):  # the tensor's bytes (the metadata holds the config, which names the layout)
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        b, e = json.loads(f.read(n))["latents"]["data_offsets"]
        return f.read()[b:e]
if latents(sys.argv[1]) != latents(sys.argv[2]):
    print("FAIL: the latents differ from the 1-rank run")
    sys.exit(1)
PY
diff <(ls -A "$dir/one") <(ls -A "$dir/three") || { echo "FAIL: the output directories differ"; fails=1; }
[ $fails = 0 ] && echo "ok: 1 DiT + 2 VAE ranks write the 1-rank video ($(stat -c %s "$dir/three/v.y4m") bytes) and latents"

# 3 VAE ranks for a 64x16 video's 2 latent rows: refused at start-up on all 4 ranks, exit 2, nothing written.
start=$SECONDS
timeout 60 "$here/mpirun.sh" 4 "$bin" "${args[@]}" --size 64x16 --set parallel.vae=DEDICATED_RANKS \
    --set parallel.vae_ranks=3 --out "$dir/bad.y4m" >"$dir/bad.log" 2>&1
rc=$?
n=$(grep -c "error on rank [0-3] (host .*parallel.vae_ranks.* 2 rows" "$dir/bad.log")
if [ $rc -ne 2 ] || [ "$n" -ne 4 ] || [ -e "$dir/bad.y4m" ] || [ $((SECONDS - start)) -gt 30 ]; then
  echo "FAIL: 3 VAE ranks for 2 latent rows: exit $rc, $n rank messages"; cat "$dir/bad.log"; fails=1
else
  echo "ok: 3 VAE ranks for 2 latent rows refused on all 4 ranks with exit 2"
fi
exit $fails

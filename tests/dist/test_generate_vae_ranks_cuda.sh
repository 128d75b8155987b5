#!/usr/bin/env bash
# Dedicated VAE ranks on the GPU: `mpirun -np 1+V longroll generate --device cuda --set parallel.vae=DEDICATED_RANKS
# --set parallel.vae_ranks=V` (every rank on the one GPU: the DiT on rank 0, the row-split CudaVaeStream on the V
# VAE ranks, halo rows staged through pinned host memory over MPI) writes the 1-rank `--device cuda` video byte for
# byte (the row split computes each row as the whole-frame decode does), for V = 2 (8 latent rows: 4 + 4) and
# V = 3 (3 + 3 + 2). Exit 77 (skipped) without mpirun or a GPU.
# Usage: test_generate_vae_ranks_cuda.sh LONGROLL
set -u
bin=$1
here=$(cd "$(dirname "$0")" && pwd)
command -v mpirun >/dev/null 2>&1 || { echo "mpirun not found: skipping"; exit 77; }
if "$bin" version | grep -qE "cuda: no| 0 devices visible"; then echo "no CUDA device: skipping"; exit 77; fi
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
args=(generate --device cuda --latent-frames 6 --seed 9 --metrics-port off)
fails=0
"$bin" "${args[@]}" --out "$dir/one.y4m" >"$dir/one.log" 2>&1 \
    || { echo "FAIL: the 1-rank run failed"; cat "$dir/one.log"; exit 1; }
for v in 2 3; do
  timeout 300 "$here/mpirun.sh" $((v + 1)) "$bin" "${args[@]}" --set parallel.vae=DEDICATED_RANKS \
      --set parallel.vae_ranks=$v --out "$dir/v$v.y4m" >"$dir/v$v.log" 2>&1 \
      || { echo "FAIL: $v VAE ranks: the run failed"; cat "$dir/v$v.log"; fails=1; continue; }
  grep -q "VAE on $v dedicated GPU ranks" "$dir/v$v.log" \
      || { echo "FAIL: $v VAE ranks: the summary does not say the VAE runs on the GPU ranks"; cat "$dir/v$v.log"; fails=1; }
  if cmp -s "$dir/one.y4m" "$dir/v$v.y4m"; then
    echo "ok: 1 DiT + $v GPU VAE ranks write the 1-rank GPU video byte for byte"
  else
    echo "FAIL: 1 DiT + $v GPU VAE ranks: the video differs from the 1-rank GPU video"; fails=1
  fi
done
exit $fails

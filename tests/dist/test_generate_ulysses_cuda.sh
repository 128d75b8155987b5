#!/usr/bin/env bash
# Ulysses head parallelism on the GPU path: `mpirun -np 2 longroll generate --device cuda --set parallel.ulysses=2`
# with both ranks on one GPU (the exchange staged through pinned host memory over MPI) gives the 1-rank
# `--device cuda` latents bit for bit (bound 0: measured 0 on an H100 at 96121f9; the token shards' GEMMs of other row
# counts pick the same kernels per row)
# and a video with every frame; also with a window, a sink and window-relative RoPE (spatial sharding on the GPU:
# test_generate_spatial_cuda.sh). Exit 77 (skipped) without mpirun, python3 or a GPU.
# Usage: test_generate_ulysses_cuda.sh LONGROLL
set -u
bin=$1
here=$(cd "$(dirname "$0")" && pwd)
command -v mpirun >/dev/null 2>&1 || { echo "mpirun not found: skipping"; exit 77; }
command -v python3 >/dev/null 2>&1 || { echo "python3 not found: skipping"; exit 77; }
if "$bin" version | grep -qE "cuda: no| 0 devices visible"; then echo "no CUDA device: skipping"; exit 77; fi
source "$here/compare_lib.sh"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
args=(generate --device cuda --latent-frames 9 --seed 7 --metrics-port off)
win=(--set rollout.local_attn_size=6 --set rollout.sink_size=1 --set rollout.rope_mode=WINDOW_RELATIVE)
fails=0

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
  echo "[ measured ] $name: latents of 2 Ulysses ranks on one GPU vs 1 rank: relative error $err (bound 0)"
  if le "$err" 0; then echo "ok: $name latents identical ($err)"; else echo "FAIL: $name latents ($err)"; fails=1; fi
  if [ "$frames" = 33 ]; then echo "ok: $name video has 33 frames"; else echo "FAIL: $name video has $frames frames"; fails=1; fi
}
compare full
compare window "${win[@]}"

exit $fails

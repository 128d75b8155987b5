#!/usr/bin/env bash
# Spatial sharding on the GPU path: `mpirun -np N longroll generate --device cuda --set parallel.spatial=S`
# (every rank on the one GPU; the KV blocks and the head's rows staged through pinned host memory over MPI) gives
# the 1-rank `--device cuda` latents bit for bit (bound 0: measured 0 on an H100 at 96121f9 for every case here; the
# tiles' GEMMs of other row counts pick the same kernels per row) and a video with every frame. Cases: S = 2 over a 368x128 video (184 tokens per latent frame; a chunk's
# 552 rows are 5 query blocks of 128, dealt b % S to the spatial ranks), S = 3, and U = 2 x S = 2 with a window, a
# sink and window-relative RoPE; then SPARSE_FORCING (a 6-frame window) on S = 2 and on U = 2 x S = 2 against its
# own 1-rank GPU run (the sharded step's tables are one GPU's for the same operands), and S = 2 with the exchanges
# overlapped (parallel.overlap_groups = 2), also bit for bit.
# Exit 77 (skipped) without mpirun, python3 or a GPU.
# Usage: test_generate_spatial_cuda.sh LONGROLL
set -u
bin=$1
here=$(cd "$(dirname "$0")" && pwd)
command -v mpirun >/dev/null 2>&1 || { echo "mpirun not found: skipping"; exit 77; }
command -v python3 >/dev/null 2>&1 || { echo "python3 not found: skipping"; exit 77; }
if "$bin" version | grep -qE "cuda: no| 0 devices visible"; then echo "no CUDA device: skipping"; exit 77; fi
source "$here/compare_lib.sh"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
args=(generate --device cuda --latent-frames 9 --seed 7 --metrics-port off --set video.width=368
      --set video.height=128 --set attention.block_size=64)
win=(--set rollout.local_attn_size=6 --set rollout.sink_size=1 --set rollout.rope_mode=WINDOW_RELATIVE)
fails=0

"$bin" "${args[@]}" --out "$dir/one.y4m" --save-latents "$dir/one.safetensors" >"$dir/one.log" 2>&1 \
    || { echo "FAIL: 1-rank run failed"; cat "$dir/one.log"; exit 1; }
"$bin" "${args[@]}" "${win[@]}" --out "$dir/one_win.y4m" --save-latents "$dir/one_win.safetensors" \
    >"$dir/one_win.log" 2>&1 || { echo "FAIL: 1-rank window run failed"; cat "$dir/one_win.log"; exit 1; }
sparse=(--set rollout.local_attn_size=6 --set attention.policy=SPARSE_FORCING)
"$bin" "${args[@]}" "${sparse[@]}" --out "$dir/one_sf.y4m" --save-latents "$dir/one_sf.safetensors" \
    >"$dir/one_sf.log" 2>&1 || { echo "FAIL: 1-rank SPARSE_FORCING run failed"; cat "$dir/one_sf.log"; exit 1; }

# compare NAME RANKS REFERENCE EXTRA_ARGS...: an N-rank run against a 1-rank run's latents (bound $bound).
bound=0
compare() {
  local name=$1 ranks=$2 ref=$3
  shift 3
  timeout 300 "$here/mpirun.sh" "$ranks" "$bin" "${args[@]}" "$@" --out "$dir/$name.y4m" \
      --save-latents "$dir/$name.safetensors" >"$dir/$name.log" 2>&1 \
      || { echo "FAIL: $name: the $ranks-rank run failed"; cat "$dir/$name.log"; fails=1; return; }
  grep -q "frame tiles split over" "$dir/$name.log" \
      || { echo "FAIL: $name: the run did not report the GPU tile split"; cat "$dir/$name.log"; fails=1; }
  local err frames
  err=$(rel_err "$dir/$name.safetensors" "$dir/$ref.safetensors")
  frames=$(y4m_frames "$dir/$name.y4m")
  echo "[ measured ] $name: latents of $ranks ranks on one GPU vs 1 rank: relative error $err (bound $bound)"
  if le "$err" "$bound"; then echo "ok: $name latents within $bound ($err)"; else echo "FAIL: $name latents ($err)"; fails=1; fi
  if [ "$frames" = 33 ]; then echo "ok: $name video has 33 frames"; else echo "FAIL: $name video has $frames frames"; fails=1; fi
}
compare spatial2 2 one --set parallel.spatial=2
compare spatial3 3 one --set parallel.spatial=3
compare u2s2_window 4 one_win "${win[@]}" --set parallel.ulysses=2 --set parallel.spatial=2
compare spatial2_overlap2 2 one --set parallel.spatial=2 --set parallel.overlap_groups=2
compare sf_spatial2 2 one_sf "${sparse[@]}" --set parallel.spatial=2
compare sf_u2s2 4 one_sf "${sparse[@]}" --set parallel.ulysses=2 --set parallel.spatial=2
exit $fails

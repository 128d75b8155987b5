#!/usr/bin/env bash
# The CUDA issue's measurements in one command on the GPU machine: build, the gpu test label, the PyTorch yardstick
# (Self-Forcing on the same GPU), longroll's benchmarks, the paged-attention benchmark pair, the 1.3B-shape forward
# against the PyTorch reference, and a summary with the ratios to the reference and the issue's targets.
#
# HOW TO RUN (the GPU machine has torch 2.11 + CUDA, but no internet, diffusers, einops or flash-attn):
#   1. Here, once (again after a Self-Forcing update): stage the reference files and the einops wheel into .gpu/
#      (git-ignored, carried to the GPU machine):
#        python3 tools/sf_ref.py --stage /work/ref/self-forcing .gpu/ref/self-forcing
#        pip download einops --no-deps -d .gpu/wheels      # optional: without it a built-in einops shim is used
#   2. With the device run tool, carry [".gpu"], from the repository root. A command may run 600 s at most, so
#      split the stages over calls while the machine stays warm (the build dir and the work dir stay on the
#      machine between calls; only $OUT is per call, and each call copies the work dir's results into it):
#        LONGROLL_COMMIT=<sha> bash bench/run_gpu.sh build test
#        LONGROLL_COMMIT=<sha> bash bench/run_gpu.sh reference bench
#        LONGROLL_COMMIT=<sha> bash bench/run_gpu.sh attention check summary
#      (<sha> = `git rev-parse --short=12 HEAD` here: the machine's copy of the tree has no .git.) All stages in
#      one call (no stage names) takes roughly 8-12 minutes on an H100, most of it the build.
#   3. Copy $OUT/results/cuda_<gpu>_<date>.json into bench/results/ and commit it; the per-program JSON files
#      and logs are next to it in $OUT.
#
# Stages (default: all, in this order):
#   build      source .gpu/env.sh; cmake configure (Release, CUDA on) + build everything in --build-dir
#   test       ctest -L gpu (counts in ctest_gpu.json, log in ctest_gpu.log)
#   reference  bench/reference/sf_reference.py -> sf_reference.json (DiT chunk + VAE decode, 480p + 1088p)
#   bench      dit_bench, vae_bench, e2e_bench -> dit_bench.json, vae_bench.json, e2e_bench.json
#   attention  bench/attention_sdpa.py + attention_bench (when both exist) -> attention_{sdpa,bench}.json
#   check      tools/wan_reference_forward.py (1.3B, 480p latents; kept in <work>/ref_forward, made once unless
#              REGEN=1) + bench/reference_check -> reference_check.json
#   summary    bench/summarize.py -> results/cuda_<gpu>_<date>.json and the table
#   policies   the sparse-attention issue's figures (not in the default list): select_bench; policy_bench (1.3B DiT
#              chunk per policy, 480p + 1088p); e2e_bench at 480p per policy (DENSE and the four seed policies)
#              -> select_bench.json, policy_bench.json, e2e_480p_<POLICY>.json (~3-4 minutes on an H100)
#   minute     a minute of 1088p (80 chunks, 240 latent frames) end to end with FORCING_KV (MINUTE_POLICY=...)
#              -> e2e_1088p_minute.json (a few minutes; run it in a call of its own)
#
# Options: --build-dir DIR (default build-gpu), --work DIR (default <build-dir>/bench-run), --out DIR (default
# $OUT, else <work>/out), --commit SHA (default $LONGROLL_COMMIT, else git, else "unknown"), --quick (fewer timed
# iterations: a smoke run). PYTHON=python3 picks the interpreter with torch.
# Exit status: 0 when every stage ran and every check passed, 1 otherwise (the other stages still run).
set -u -o pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here" || exit 2
BUILD=build-gpu
WORK=""
DEST="${OUT:-}"
COMMIT="${LONGROLL_COMMIT:-}"
QUICK=0
PY="${PYTHON:-python3}"
stages=()
while [ $# -gt 0 ]; do
  case "$1" in
    --build-dir) BUILD="$2"; shift 2 ;;
    --work) WORK="$2"; shift 2 ;;
    --out) DEST="$2"; shift 2 ;;
    --commit) COMMIT="$2"; shift 2 ;;
    --quick) QUICK=1; shift ;;
    -h|--help) sed -n '2,40p' "$0"; exit 0 ;;
    build|test|reference|bench|attention|check|summary|policies|minute) stages+=("$1"); shift ;;
    *) echo "run_gpu.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[ ${#stages[@]} -eq 0 ] && stages=(build test reference bench attention check summary)
WORK="${WORK:-$BUILD/bench-run}"
DEST="${DEST:-$WORK/out}"
mkdir -p "$WORK" "$DEST"
WORK="$(cd "$WORK" && pwd)"
if [ -z "$COMMIT" ]; then
  COMMIT="$(git -C "$here" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
fi
export LONGROLL_COMMIT="$COMMIT"
failed=()

log() { echo "[run_gpu $(date +%H:%M:%S)] $*" >&2; }

# Runs "$@" with its output to the terminal and to $WORK/$1-stage log; records a failure.
stage_run() {
  local name="$1"; shift
  log "$name: $*"
  local t0=$SECONDS
  "$@" 2>&1 | tee -a "$WORK/$name.log"
  local rc=${PIPESTATUS[0]}
  log "$name: exit $rc after $((SECONDS - t0)) s"
  [ "$rc" -eq 0 ] || failed+=("$name")
  return "$rc"
}

copy_out() {
  cp -f "$WORK"/*.json "$WORK"/*.log "$DEST"/ 2>/dev/null || true
  [ -f "$WORK/ref_forward/report.json" ] && cp -f "$WORK/ref_forward/report.json" "$DEST/ref_forward_report.json"
  [ -d "$WORK/results" ] && mkdir -p "$DEST/results" && cp -f "$WORK"/results/*.json "$DEST/results/" 2>/dev/null
  true
}
trap copy_out EXIT

if [ -f .gpu/env.sh ]; then
  # shellcheck disable=SC1091
  source .gpu/env.sh
fi
log "commit $COMMIT, build dir $BUILD, work dir $WORK, out $DEST, stages: ${stages[*]}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | tee "$WORK/gpu.txt" >&2

iters_dit=(); iters_vae=(); iters_ref=(); e2e_chunks=20
if [ "$QUICK" = 1 ]; then
  iters_dit=(--iters 2 --iters-1088 1); iters_vae=(--iters 2 --iters-1088 1)
  iters_ref=(--iters-480 2 --iters-1088 1 --vae-iters-480 2 --vae-iters-1088 1); e2e_chunks=9
fi

for st in "${stages[@]}"; do
  case "$st" in
    build)
      rm -f "$WORK/build.log"
      # shellcheck disable=SC2086
      stage_run build cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DLONGROLL_CUDA=ON \
        ${GPU_CMAKE_ARGS:-} && stage_run build cmake --build "$BUILD" -j "$(nproc)"
      ;;
    test)
      rm -f "$WORK/ctest_gpu.log"
      stage_run ctest_gpu ctest --test-dir "$BUILD" -L gpu --output-on-failure
      summary_line=$(grep -E "tests passed, [0-9]+ tests? failed out of" "$WORK/ctest_gpu.log" | tail -1)
      total=$(echo "$summary_line" | sed -nE 's/.*out of ([0-9]+).*/\1/p')
      nfail=$(echo "$summary_line" | sed -nE 's/.*passed, ([0-9]+) tests? failed.*/\1/p')
      total=${total:-0}; nfail=${nfail:-$total}
      printf '{"label": "gpu", "total": %s, "failed": %s, "passed": %s, "commit": "%s", "summary": "%s"}\n' \
        "$total" "$nfail" "$((total - nfail))" "$COMMIT" "$summary_line" > "$WORK/ctest_gpu.json"
      ;;
    reference)
      rm -f "$WORK/sf_reference.log"
      stage_run sf_reference "$PY" bench/reference/sf_reference.py --json "$WORK/sf_reference.json" "${iters_ref[@]}"
      ;;
    bench)
      rm -f "$WORK"/{dit,vae,e2e}_bench.log
      stage_run dit_bench "$BUILD/bench/dit_bench" --json "$WORK/dit_bench.json" "${iters_dit[@]}"
      stage_run vae_bench "$BUILD/bench/vae_bench" --json "$WORK/vae_bench.json" "${iters_vae[@]}"
      stage_run e2e_bench "$BUILD/bench/e2e_bench" --json "$WORK/e2e_bench.json" --chunks "$e2e_chunks"
      ;;
    attention)
      if [ -x "$BUILD/bench/attention_bench" ] && [ -f bench/attention_sdpa.py ]; then
        rm -f "$WORK"/attention_{sdpa,bench}.log
        stage_run attention_sdpa "$PY" bench/attention_sdpa.py --json "$WORK/attention_sdpa.json"
        stage_run attention_bench "$BUILD/bench/attention_bench" --json "$WORK/attention_bench.json" \
          --sdpa-json "$WORK/attention_sdpa.json"
      else
        log "attention: $BUILD/bench/attention_bench or bench/attention_sdpa.py missing; skipped"
      fi
      ;;
    check)
      rm -f "$WORK"/{ref_forward,reference_check}.log
      if [ "${REGEN:-0}" = 1 ] || [ ! -f "$WORK/ref_forward/forward.safetensors" ]; then
        stage_run ref_forward "$PY" tools/wan_reference_forward.py --out "$WORK/ref_forward"
      fi
      stage_run reference_check "$BUILD/bench/reference_check" --dir "$WORK/ref_forward" \
        --json "$WORK/reference_check.json"
      ;;
    policies)
      stage_run select_bench "$BUILD/bench/select_bench" --commit "$COMMIT" --json "$WORK/select_bench.json"
      stage_run policy_bench "$BUILD/bench/policy_bench" --commit "$COMMIT" --json "$WORK/policy_bench.json"
      for p in DENSE SPARSE_FORCING LIGHT_FORCING FORCING_KV LVSA; do
        stage_run "e2e_480p_$p" "$BUILD/bench/e2e_bench" --size 480p --chunks 16 --policy "$p" --commit "$COMMIT" \
          --json "$WORK/e2e_480p_$p.json"
      done
      ;;
    minute)
      stage_run e2e_1088p_minute "$BUILD/bench/e2e_bench" --size 1088p --chunks 80 \
        --policy "${MINUTE_POLICY:-FORCING_KV}" --commit "$COMMIT" --json "$WORK/e2e_1088p_minute.json"
      ;;
    summary)
      rm -f "$WORK/summary.log"
      stage_run summary "$PY" bench/summarize.py --dir "$WORK" --results-dir "$WORK/results" --commit "$COMMIT"
      if [ -f "$WORK/summary.log" ] && grep -qE "\[(FAIL|missing)\]" "$WORK/summary.log"; then failed+=("targets"); fi
      ;;
  esac
done

if [ ${#failed[@]} -gt 0 ]; then
  log "not everything passed: ${failed[*]} (logs in $WORK and $DEST)"
  exit 1
fi
log "done; results in $DEST"

#!/usr/bin/env bash
# The text encoder's GPU measurements (issue 16) in one command on the GPU machine, after a build:
#   1. the TextGpu gpu tests (kernels against the CPU references, the encoder against transformers' tiny fixtures,
#      the resident encoder bit-equal to the streamed one)
#   2. one full-width UMT5-XXL layer: tests/data/text/make_xxl_layer_fixture.py (transformers fp32 and bf16 on this
#      GPU) then `text_bench --layer-check` (longroll's streamed and resident GPU encoder vs the fp32 output;
#      bound 1.5e-2, expected ~7.6e-3; transformers' own bf16 ~1.0e-2)
#   3. the full UMT5-XXL encoder, 512 tokens: bench/reference/umt5_reference.py (transformers) and text_bench
#      (longroll, plus the streamed path from an 11.4 GB random checkpoint written to the work dir), paired by item
#
#   bash bench/run_text_gpu.sh BUILD_DIR OUT_DIR [WORK_DIR]
#
# BUILD_DIR holds bench/text_bench (and tests/gpu_tests when built), e.g. after
#   cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release && cmake --build build-gpu --target text_bench gpu_tests
# OUT_DIR gets the JSON files and logs (small); WORK_DIR (default BUILD_DIR/text-run) the fixture (0.4 GB) and the
# random checkpoint (11.4 GB; STREAMED=0 skips it and the streamed item). REGEN=1 remakes the layer fixture.
# PYTHON=python3 picks the interpreter with torch and transformers; LONGROLL_COMMIT=<sha> goes into the JSON.
# Roughly 3-5 minutes on an H100. Exit status 0 when every step ran and every check passed, else 1.
set -u -o pipefail

[ $# -ge 2 ] || { sed -n '2,20p' "$0"; exit 2; }
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here" || exit 2
BUILD="$(cd "$1" && pwd)" || { echo "run_text_gpu.sh: no build dir '$1'" >&2; exit 2; }
mkdir -p "$2" && DEST="$(cd "$2" && pwd)"
WORK="${3:-$BUILD/text-run}"
mkdir -p "$WORK" && WORK="$(cd "$WORK" && pwd)"
PY="${PYTHON:-python3}"
BENCH="$BUILD/bench/text_bench"
[ -x "$BENCH" ] || { echo "run_text_gpu.sh: $BENCH is not built" >&2; exit 2; }
failed=()

log() { echo "[run_text_gpu $(date +%H:%M:%S)] $*" >&2; }
step() {
  local name="$1"; shift
  log "$name: $*"
  local t0=$SECONDS
  "$@" 2>&1 | tee "$DEST/$name.log"
  local rc=${PIPESTATUS[0]}
  log "$name: exit $rc after $((SECONDS - t0)) s"
  [ "$rc" -eq 0 ] || failed+=("$name")
  return "$rc"
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | tee "$DEST/gpu.txt" >&2
"$PY" -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" \
  | tee "$DEST/python.txt" >&2

if [ -x "$BUILD/tests/gpu_tests" ]; then
  step gpu_tests_text "$BUILD/tests/gpu_tests" --gtest_filter='TextGpu.*'
else
  log "gpu_tests not built: TextGpu tests skipped"
fi

if [ "${REGEN:-0}" = 1 ] || [ ! -f "$WORK/xxl_layer/umt5_xxl_layer_expected.safetensors" ]; then
  step xxl_layer_fixture "$PY" tests/data/text/make_xxl_layer_fixture.py --out "$WORK/xxl_layer"
fi
cp -f "$WORK/xxl_layer/provenance.json" "$DEST/xxl_layer_provenance.json" 2>/dev/null
step text_layer_check "$BENCH" --layer-check "$WORK/xxl_layer" --json "$DEST/text_layer_check.json"

step umt5_reference "$PY" bench/reference/umt5_reference.py --json "$DEST/umt5_reference.json"
streamed=()
[ "${STREAMED:-1}" = 1 ] && streamed=(--streamed "$WORK/umt5_xxl_random.safetensors")
step text_bench "$BENCH" --json "$DEST/text_bench.json" "${streamed[@]}"

# The pairs: longroll / transformers per item.
"$PY" - "$DEST/text_bench.json" "$DEST/umt5_reference.json" <<'PYEOF' | tee "$DEST/text_summary.txt"
import json, sys
try:
    lr, ref = (json.load(open(p)) for p in sys.argv[1:3])
except (OSError, ValueError) as e:
    sys.exit(f"no summary: {e}")
print(f"{'item':34} {'longroll ms':>12} {'transformers ms':>16} {'ratio':>7} {'lr GiB':>8} {'tf GiB':>8}  ({lr['gpu']})")
for k, v in lr["results"].items():
    r = ref["results"].get(k, {})
    g = lambda d: d.get("peak_bytes") and d["peak_bytes"] / 2**30 or float("nan")  # noqa: E731
    ratio = v["ms"] / r["ms"] if r.get("ms") else float("nan")
    print(f"{k:34} {v['ms']:12.2f} {r.get('ms', float('nan')):16.2f} {ratio:7.2f} {g(v):8.2f} {g(r):8.2f}")
PYEOF

if [ ${#failed[@]} -gt 0 ]; then
  log "not everything passed: ${failed[*]} (logs in $DEST)"
  exit 1
fi
log "done; results in $DEST"

#!/usr/bin/env bash
# A/B of paged-attention kernel candidates in one GPU call: the tree's kernel against the tree with a stack of
# patches applied (bench/attention_candidates/), each variant's PagedAttention GPU tests, torch SDPA (cuDNN) on the
# same shapes in the same run, and attention_bench interleaved over the variants for several rounds, so clock or
# thermal drift hits every variant alike.
#
#   bench/attention_ab.sh OUT [--rounds N] [--apply-only | --compile-only] [PATCH ...]
#
# Variant 0 is the tree; variant k is the tree with PATCH 1..k applied in order (a stack: each patch is written
# against the one before it). With no PATCH, the *.patch files of bench/attention_candidates/ in name order.
# --apply-only: check that the stack applies to the tree, nothing else (CI runs this: a kernel edit that breaks a
# candidate shows up at once). --compile-only: apply the patches and compile each variant's kernels/paged_attention.cu with nvcc (ptxas
# register and spill report), no GPU needed; what CI-less machines can check before a GPU call.
#
# Writes OUT/attention_ab.json (per variant and case: the median over rounds of TFLOP/s, the ratio to variant 0
# and to SDPA, whether its tests passed) and OUT/logs.tar (every log and per-run JSON). A variant whose tests fail
# is not timed. Env: LONGROLL_COMMIT (the tree's commit: the device's copy has no usable .git), CUDA_ARCH (90a),
# GPU_CMAKE_ARGS (from .gpu/env.sh on the GPU machine), PYTHON (python3). Exit 2 on bad arguments or a patch that
# does not apply; 1 if a build fails.
set -u -o pipefail
usage() { echo "usage: bench/attention_ab.sh OUT [--rounds N] [--apply-only | --compile-only] [PATCH ...]" >&2; exit 2; }
src=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-}
[ -n "$out" ] && [ "${out#-}" = "$out" ] || usage
shift
rounds=2 compile_only=0 apply_only=0 patches=()
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) [ $# -ge 2 ] && [[ "$2" =~ ^[1-9][0-9]*$ ]] || { echo "attention_ab.sh: --rounds needs a positive integer" >&2; exit 2; }
              rounds=$2; shift 2 ;;
    --compile-only) compile_only=1; shift ;;
    --apply-only) apply_only=1; shift ;;
    -*) usage ;;
    *) [ -f "$1" ] || { echo "attention_ab.sh: patch $1 does not exist" >&2; exit 2; }
       patches+=("$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"); shift ;;
  esac
done
if [ ${#patches[@]} -eq 0 ]; then
  for p in "$src"/bench/attention_candidates/*.patch; do [ -f "$p" ] && patches+=("$p"); done
fi
[ ${#patches[@]} -gt 0 ] || { echo "attention_ab.sh: no patches given and none in bench/attention_candidates/" >&2; exit 2; }
# apply DIR PATCH: checked first (no fuzz: a patch applied where its context does not match would time some other
# kernel), so a patch that does not apply leaves nothing half-applied.
apply() {
  if command -v patch > /dev/null; then
    patch -d "$1" -p1 -s -F0 --dry-run < "$2" && patch -d "$1" -p1 -s -F0 < "$2"
  else
    (cd "$1" && git apply --check -p1 "$2" && git apply -p1 "$2")
  fi
}
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
log=$work/logs
mkdir -p "$log"
nv=${#patches[@]}
t0=$SECONDS

# Variant trees: 0 is the tree itself; k is a copy (no .git, build dirs or .gpu) with patches 1..k.
tree() { [ "$1" -eq 0 ] && echo "$src" || echo "$work/src$1"; }
for k in $(seq 1 "$nv"); do
  mkdir -p "$work/src$k"
  (cd "$src" && tar cf - --exclude=./.git --exclude='./build*' --exclude=./.gpu .) | tar xf - -C "$work/src$k"
  for i in $(seq 0 $((k - 1))); do
    if ! apply "$work/src$k" "${patches[$i]}" > "$log/patch$k.log" 2>&1; then
      echo "attention_ab.sh: ${patches[$i]} does not apply on top of the patches before it:" >&2
      cat "$log/patch$k.log" >&2
      exit 2
    fi
  done
done
names=("tree")
for p in "${patches[@]}"; do names+=("+$(basename "$p" .patch)"); done
if [ "$apply_only" = 1 ]; then
  echo "the $nv patches apply in order: ${names[*]:1}"
  exit 0
fi

if [ "$compile_only" = 1 ]; then
  nvcc=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
  [ -x "$nvcc" ] || { echo "attention_ab.sh: nvcc not found (set NVCC)" >&2; exit 2; }
  rc=0
  for k in $(seq 0 "$nv"); do
    t=$(tree "$k")
    if "$nvcc" -DLONGROLL_HAS_CUDA=1 -I"$t" -O3 -DNDEBUG --generate-code=arch=compute_${CUDA_ARCH:-90a},code=sm_${CUDA_ARCH:-90a} \
        --expt-relaxed-constexpr -std=c++20 -x cu -c "$t/kernels/paged_attention.cu" -o "$work/v$k.o" -Xptxas -v \
        > "$log/compile$k.log" 2>&1; then
      echo "variant $k ${names[$k]}: $(grep -A2 'hd128_kernel' "$log/compile$k.log" | grep -oE '[0-9]+ bytes spill stores|Used [0-9]+ registers' | paste -sd, -)"
    else
      echo "variant $k ${names[$k]}: does not compile"; tail -20 "$log/compile$k.log"; rc=1
    fi
  done
  tar cf "$out/logs.tar" -C "$work" logs
  exit $rc
fi

# Builds, in parallel (16 cores on the GPU machine; each tree builds two targets).
for k in $(seq 0 "$nv"); do
  ( cd "$(tree "$k")" &&
    cmake -S . -B "$work/b$k" -G Ninja ${GPU_CMAKE_ARGS:-} -DCMAKE_BUILD_TYPE=Release -DLONGROLL_MP4=OFF > "$log/configure$k.log" 2>&1 &&
    cmake --build "$work/b$k" --target attention_bench gpu_tests > "$log/build$k.log" 2>&1
    echo $? > "$work/build$k.rc" ) &
done
wait
for k in $(seq 0 "$nv"); do
  if [ "$(cat "$work/build$k.rc")" != 0 ]; then
    echo "attention_ab.sh: variant $k (${names[$k]}) does not build:" >&2; tail -30 "$log/build$k.log" >&2
    tar cf "$out/logs.tar" -C "$work" logs
    exit 1
  fi
done
echo "built $((nv + 1)) variants in $((SECONDS - t0)) s"

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader > "$log/gpu.txt" 2>&1
ok=()
for k in $(seq 0 "$nv"); do
  if "$work/b$k/tests/gpu_tests" --gtest_filter='PagedAttention*' > "$log/tests$k.log" 2>&1; then ok+=(1); else ok+=(0); fi
  echo "variant $k ${names[$k]}: tests $([ "${ok[$k]}" = 1 ] && echo passed || echo FAILED) ($(grep -E '^\[  (PASSED|FAILED)  \]' "$log/tests$k.log" | head -2 | paste -sd' ' -))"
done
py=${PYTHON:-python3}
sdpa_args=()
if "$py" "$src/bench/attention_sdpa.py" --json "$log/attention_sdpa.json" > "$log/attention_sdpa.log" 2>&1; then
  sdpa_args=(--sdpa-json "$log/attention_sdpa.json")
else
  echo "torch SDPA did not run (see attention_sdpa.log); variants are compared among themselves only"
fi
for r in $(seq 1 "$rounds"); do
  for k in $(seq 0 "$nv"); do
    [ "${ok[$k]}" = 1 ] || continue
    cm=${LONGROLL_COMMIT:-unknown}
    [ "$k" -gt 0 ] && cm="$cm${names[$k]}"  # the tree's commit + the patches' names
    LONGROLL_COMMIT="$cm" "$work/b$k/bench/attention_bench" --json "$log/bench_v${k}_r$r.json" "${sdpa_args[@]}" > "$log/bench_v${k}_r$r.log" 2>&1 ||
      echo "variant $k round $r: attention_bench failed (bench_v${k}_r$r.log)"
  done
done
echo "timed in $((SECONDS - t0)) s"
"$py" - "$log" "$out/attention_ab.json" "$rounds" "${LONGROLL_COMMIT:-unknown}" "${ok[*]}" "${names[@]}" <<'EOF'
import json, os, statistics, sys
log, dst, rounds, commit, ok = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5].split()
names = sys.argv[6:]
gpu = open(os.path.join(log, "gpu.txt")).read().strip()
sdpa = {}
p = os.path.join(log, "attention_sdpa.json")
if os.path.exists(p):
    for c in json.load(open(p))["cases"]:
        sdpa[c["name"]] = c["tflops"]
variants = []
for k, name in enumerate(names):
    runs = {}
    for r in range(1, rounds + 1):
        f = os.path.join(log, f"bench_v{k}_r{r}.json")
        if os.path.exists(f):
            for c in json.load(open(f))["cases"]:
                runs.setdefault(c["name"], []).append(c)
    cases = {n: {"tflops_median": statistics.median(c["tflops"] for c in cs),
                 "tflops_runs": [c["tflops"] for c in cs],
                 "max_rel_err": max(c["max_rel_err"] for c in cs)} for n, cs in runs.items()}
    variants.append({"variant": k, "name": name, "tests_passed": ok[k] == "1", "cases": cases})
base = variants[0]["cases"]
for v in variants:
    for n, c in v["cases"].items():
        if n in base:
            c["vs_tree"] = round(c["tflops_median"] / base[n]["tflops_median"], 4)
        res = n.split()[0]
        if n.endswith("dense") and res in sdpa:
            c["vs_sdpa"] = round(c["tflops_median"] / sdpa[res], 4)
doc = {"bench": "attention_ab", "gpu": gpu, "commit": commit, "rounds": rounds, "sdpa_tflops": sdpa,
       "variants": variants}
json.dump(doc, open(dst, "w"), indent=1)
print(f"{'variant':<28} {'case':<16} {'TFLOP/s':>8} {'vs tree':>8} {'vs SDPA':>8}")
for v in variants:
    if not v["cases"]:
        print(f"{v['name']:<28} (not timed: tests {'passed' if v['tests_passed'] else 'FAILED'})")
    for n, c in v["cases"].items():
        vs = f"{c['vs_sdpa']:8.3f}" if "vs_sdpa" in c else f"{'-':>8}"
        print(f"{v['name']:<28} {n:<16} {c['tflops_median']:8.1f} {c.get('vs_tree', 0):8.3f} {vs}")
print(f"wrote {dst}")
EOF
tar cf "$out/logs.tar" -C "$work" logs
echo "done in $((SECONDS - t0)) s: $out"

#!/usr/bin/env bash
# A libFuzzer run of the safetensors header parser under ASan + UBSan.
#
#   tests/fuzz/run_fuzz.sh SOURCE_DIR WORK_DIR [SECONDS=20] [extra libFuzzer flags...]
#
# Builds WORK_DIR/safetensors_header_fuzzer with clang++ (rebuilt only when a source is newer), copies
# tests/data/safetensors into WORK_DIR/corpus (new inputs the fuzzer finds accumulate there across runs)
# and fuzzes for SECONDS. Exit 0: no crash; 77: clang++ or libFuzzer is missing (ctest reports a skip);
# anything else: a crash, with the reproducer in WORK_DIR/artifacts/ (replay it with
# `WORK_DIR/safetensors_header_fuzzer FILE` or the g++ build's safetensors_fuzz_replay FILE).
set -euo pipefail

if [[ $# -lt 2 ]]; then
  echo "usage: $0 SOURCE_DIR WORK_DIR [SECONDS] [libFuzzer flags...]" >&2
  exit 2
fi
src=$(cd "$1" && pwd)
work=$2
seconds=${3:-20}
shift $(( $# < 3 ? $# : 3 ))
cxx=${FUZZ_CXX:-clang++}

if ! command -v "$cxx" >/dev/null 2>&1; then
  echo "SKIP: $cxx not found (set FUZZ_CXX to a clang++ with libFuzzer)"
  exit 77
fi
mkdir -p "$work/corpus" "$work/artifacts"
work=$(cd "$work" && pwd)

# libFuzzer ships with clang's compiler-rt, which some installs lack: probe before building for real.
probe=$work/probe
printf 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }\n' > "$probe.cpp"
if ! "$cxx" -fsanitize=fuzzer "$probe.cpp" -o "$probe" >/dev/null 2>&1; then
  echo "SKIP: $cxx cannot link -fsanitize=fuzzer (libFuzzer missing)"
  exit 77
fi
rm -f "$probe" "$probe.cpp"

sources=(
  "$src/tests/fuzz/safetensors_header_fuzz.cpp"
  "$src/runtime/io/json.cpp"
  "$src/runtime/io/safetensors.cpp"
  "$src/runtime/io/file_io.cpp"
  "$src/runtime/core/check.cpp"
  "$src/runtime/core/dtype.cpp"
  "$src/runtime/core/tensor.cpp"
)
bin=$work/safetensors_header_fuzzer
stale=0
if [[ ! -x $bin ]]; then
  stale=1
else
  for f in "${sources[@]}" "$src"/runtime/io/*.h "$src"/runtime/core/*.h "$0"; do
    if [[ $f -nt $bin ]]; then stale=1; break; fi
  done
fi
if [[ $stale == 1 ]]; then
  echo "building $bin"
  "$cxx" -std=c++20 -g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined \
    -fno-sanitize-recover=undefined -I"$src" "${sources[@]}" -o "$bin.tmp"
  mv "$bin.tmp" "$bin"
fi

# The seed corpus: every checked-in file (good and bad), flattened.
find "$src/tests/data/safetensors" -type f | while read -r f; do
  rel=${f#"$src/tests/data/safetensors/"}
  cp "$f" "$work/corpus/seed_${rel//\//_}"
done

echo "fuzzing for ${seconds}s: $bin $work/corpus"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
"$bin" -max_total_time="$seconds" -max_len=8192 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
  -dict="$src/tests/fuzz/safetensors.dict" -artifact_prefix="$work/artifacts/" "$@" "$work/corpus"

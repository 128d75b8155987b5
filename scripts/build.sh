#!/usr/bin/env bash
# Configures and builds longroll into $LONGROLL_BUILD_DIR (default: build/ in the source tree).
# Extra arguments go to `cmake --build` (e.g. `--target longroll`). CMake options can be passed through
# LONGROLL_CMAKE_ARGS, e.g. LONGROLL_CMAKE_ARGS="-DLONGROLL_CUDA=OFF".
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${LONGROLL_BUILD_DIR:-$root/build}"
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
if [ ! -f "$build/CMakeCache.txt" ]; then
  # shellcheck disable=SC2086
  cmake -S "$root" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo ${LONGROLL_CMAKE_ARGS:-} >/dev/null
fi
cmake --build "$build" -j "$(nproc)" "$@"

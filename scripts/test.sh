#!/usr/bin/env bash
# Builds longroll and runs the whole ctest suite (unit, cli, fuzz smoke; gpu tests skip without a GPU),
# printing ctest's summary. Installs missing Debian packages first. Exit code is ctest's.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/deps.sh"
bash "$root/scripts/build.sh"
build="${LONGROLL_BUILD_DIR:-$root/build}"
ctest --test-dir "$build" -j "$(nproc)" --output-on-failure --timeout 600 "$@"

#!/usr/bin/env bash
# Installs the Debian 12 packages longroll builds and tests with, skipping those already present.
# Used by scripts/demo.sh and scripts/test.sh; safe to run repeatedly. Needs root or sudo to install.
set -euo pipefail

pkgs=(
  build-essential cmake ninja-build pkg-config git python3
  libopenmpi-dev openmpi-bin                                   # MPI bootstrap, multi-rank runs
  libprotobuf-dev protobuf-compiler                            # config schema
  prometheus-cpp-dev                                           # metrics exporter
  prometheus curl                                              # metrics tests: a real server, promtool, its API
  libgtest-dev libgmock-dev libbenchmark-dev                   # tests, micro-benchmarks
  libavcodec-dev libavformat-dev libavutil-dev libswscale-dev  # MP4/H.264 output
  libsentencepiece-dev                                         # the UMT5 tokenizer (--prompt)
  ffmpeg                                                       # ffprobe/ffmpeg: tests read videos back
  clang                                                        # libFuzzer target
)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "longroll: installing ${#missing[@]} missing Debian packages: ${missing[*]}" >&2
sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "longroll: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  sudo_cmd=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

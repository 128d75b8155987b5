#!/usr/bin/env bash
# Builds longroll and generates a short video with the embedded default model (no downloads needed).
# Writes out/demo.mp4 (out/demo.y4m when this build has no MP4 support). Extra arguments go to
# `longroll generate`, e.g. `scripts/demo.sh --seconds 10`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/deps.sh"
bash "$root/scripts/build.sh" --target longroll
build="${LONGROLL_BUILD_DIR:-$root/build}"
mkdir -p "$root/out"
out="$root/out/demo.mp4"
"$build/launch/longroll" version | grep -q '^mp4: yes' || out="$root/out/demo.y4m"
"$build/launch/longroll" generate --seconds 5 --seed 7 --out "$out" "$@"
if command -v ffprobe >/dev/null; then
  ffprobe -v error -count_frames -select_streams v:0 \
    -show_entries stream=codec_name,width,height,r_frame_rate,nb_read_frames -of default=nw=1 "$out"
fi
echo "demo video: $out"

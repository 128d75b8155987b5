#!/usr/bin/env bash
# Builds longroll and generates a short video with the embedded default model (models/tiny-shapes: a tiny Wan2.1
# DiT trained here on procedurally generated video; no downloads needed), then checks that the video shows its
# caption (bench/quality/caption_check.py). Writes out/demo.mp4 (out/demo.y4m when this build has no MP4 support).
#   scripts/demo.sh                                          # "a red square moves right over a checkered floor"
#   scripts/demo.sh --caption "a blue circle moves up over a striped wall" --seconds 10
# Other arguments go to `longroll generate`. Captions: a COLOUR KIND moves DIRECTION over a BACKGROUND, with
# COLOUR red|green|blue|yellow, KIND square|circle|triangle, DIRECTION left|right|up|down and BACKGROUND
# checkered floor|striped wall|dotted carpet|plain ground.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
caption="a red square moves right over a checkered floor"
args=()
while [ $# -gt 0 ]; do
  if [ "$1" = "--caption" ] && [ $# -ge 2 ]; then caption="$2"; shift 2; else args+=("$1"); shift; fi
done
bash "$root/scripts/deps.sh"
bash "$root/scripts/build.sh" --target longroll
build="${LONGROLL_BUILD_DIR:-$root/build}"
mkdir -p "$root/out"
out="$root/out/demo.mp4"
"$build/launch/longroll" version | grep -q '^mp4: yes' || out="$root/out/demo.y4m"
prompt=()
if [ -f "$root/models/tiny-shapes/text.safetensors" ]; then
  prompt=(--prompt "$caption")  # the model's word table: no Python needed
else
  echo "note: no trained model in models/tiny-shapes (see README: Embedded default model): the random-weight" \
       "tiny model runs instead, and its video shows no caption" >&2
  caption=""
fi
"$build/launch/longroll" generate "${prompt[@]}" --seconds 5 --seed 7 --out "$out" "${args[@]}"
if command -v ffprobe >/dev/null; then
  ffprobe -v error -count_frames -select_streams v:0 \
    -show_entries stream=codec_name,width,height,r_frame_rate,nb_read_frames -of default=nw=1 "$out"
fi
# The caption check reads Y4M: re-encode the MP4 when there is one.
check="$out"
if [ "${out##*.}" = mp4 ] && command -v ffmpeg >/dev/null; then
  check="$root/out/demo_check.y4m"
  ffmpeg -loglevel error -y -i "$out" -pix_fmt yuv420p "$check"
fi
if [ -n "$caption" ] && [ "${check##*.}" = y4m ]; then
  python3 "$root/bench/quality/caption_check.py" "$check" "$caption" || true
fi
echo "demo video: $out${caption:+ ($caption)}"

# generate with the embedded default: video files, frame counts, outputs written atomically, bad inputs
# refused with exit code 2 and nothing left on disk.
source "$(dirname "$0")/lib.sh"
command -v ffprobe >/dev/null || { echo "ffprobe not installed"; exit 77; }

frames_of() {  # frames_of FILE -> number of decoded frames
  ffprobe -v error -count_frames -select_streams v:0 -show_entries stream=nb_read_frames -of csv=p=0 "$1"
}
size_of() {
  ffprobe -v error -select_streams v:0 -show_entries stream=width,height -of csv=p=0:s=x "$1"
}

# 5 s at 16 fps = 80 frames -> 21 latent frames (7 chunks of 3) -> 81 frames.
expect 0 "81 video frames (5.06 s of video)" "$LONGROLL" generate --seconds 5 --out "$TMP/a.y4m" --quiet
check "y4m has 81 frames" test "$(frames_of "$TMP/a.y4m")" = 81
check "config saved next to the output" test -s "$TMP/a.y4m.config.textproto"
expect 0 ": ok" "$LONGROLL" validate-config "$TMP/a.y4m.config.textproto"
check "no temporary files left" test -z "$(ls -A "$TMP" | grep -i partial)"

# --latent-frames, --size and --set reach the output.
expect 0 "frames" "$LONGROLL" generate --latent-frames 6 --size 96x64 --set video.fps=8 --out "$TMP/b.y4m" --quiet
check "6 latent frames -> 21 frames" test "$(frames_of "$TMP/b.y4m")" = 21
check "size 96x64" test "$(size_of "$TMP/b.y4m")" = 96x64
check "fps 8" grep -q "F8:1" <(head -c 100 "$TMP/b.y4m")

if "$LONGROLL" version | grep -q '^mp4: yes'; then
  expect 0 "wrote" "$LONGROLL" generate --latent-frames 3 --out "$TMP/c.mp4" --quiet
  check "mp4 has 9 frames" test "$(frames_of "$TMP/c.mp4")" = 9
  check "mp4 is h264" test "$(ffprobe -v error -select_streams v:0 -show_entries stream=codec_name -of csv=p=0 "$TMP/c.mp4")" = h264
fi

# Progress: one plain line per chunk when stderr is not a terminal.
"$LONGROLL" generate --latent-frames 9 --out "$TMP/p.y4m" 2>"$TMP/progress.log" >/dev/null
check "progress lines per chunk" test "$(grep -c '^chunk [0-9]*/3 ' "$TMP/progress.log")" = 3
check "says the output is not a trained model's" grep -q "NOT a trained model" "$TMP/progress.log"

# Bad inputs: exit 2, a message naming the problem, and no output file.
expect 2 "give --out FILE.mp4|FILE.y4m and/or --save-latents FILE" "$LONGROLL" generate --seconds 1
expect 2 "supported" "$LONGROLL" generate --seconds 1 --out "$TMP/x.avi"
expect 2 "/nonexistent-dir" "$LONGROLL" generate --seconds 1 --out /nonexistent-dir/x.y4m
expect 2 "multiple of rollout.frames_per_chunk" "$LONGROLL" generate --latent-frames 4 --out "$TMP/x.y4m"
expect 2 "--size 100x64" "$LONGROLL" generate --size 100x64 --out "$TMP/x.y4m"
expect 2 "--seconds" "$LONGROLL" generate --seconds -3 --out "$TMP/x.y4m"
expect 2 "absolute RoPE" "$LONGROLL" generate --seconds 600 --out "$TMP/x.y4m"
expect 2 "--device 'tpu'" "$LONGROLL" generate --device tpu --out "$TMP/x.y4m"
expect 2 "missing.safetensors" "$LONGROLL" generate --weights "$TMP/missing.safetensors" --save-latents "$TMP/x.st"
printf 'garbage!' >"$TMP/bad.safetensors"
expect 2 "bad.safetensors" "$LONGROLL" generate --weights "$TMP/bad.safetensors" --save-latents "$TMP/x.st"
expect 2 "too large for the embedded default" "$LONGROLL" generate \
  --config "$SRC/configs/wan2.1-t2v-1.3b-480p.textproto" --out "$TMP/x.y4m"
check "no output from refused runs" test ! -e "$TMP/x.y4m" -a ! -e "$TMP/x.avi" -a ! -e "$TMP/x.st"
check "no temporary files left" test -z "$(ls -A "$TMP" | grep -i partial)"

# Latents: saved with the documented name and shape; the same seed gives the same latents, another seed not.
expect 0 "latents in" "$LONGROLL" generate --latent-frames 6 --seed 3 --save-latents "$TMP/l1.safetensors" --quiet
expect 0 "latents" "$LONGROLL" inspect "$TMP/l1.safetensors"
expect 0 "[6, 16, 8, 16]" "$LONGROLL" inspect "$TMP/l1.safetensors"
"$LONGROLL" generate --latent-frames 6 --seed 3 --save-latents "$TMP/l2.safetensors" --quiet 2>/dev/null
"$LONGROLL" generate --latent-frames 6 --seed 4 --save-latents "$TMP/l3.safetensors" --quiet 2>/dev/null
check "same seed, same latents" cmp -s "$TMP/l1.safetensors" "$TMP/l2.safetensors"
check "other seed, other latents" bash -c "! cmp -s '$TMP/l1.safetensors' '$TMP/l3.safetensors'"
# --noise replays a file; a file of the wrong shape is refused by name.
expect 2 "l1.safetensors" "$LONGROLL" generate --latent-frames 6 --noise "$TMP/l1.safetensors" --out "$TMP/x.y4m"
expect 2 "--switch-prompt" "$LONGROLL" generate --latent-frames 6 --switch-prompt 4 --out "$TMP/x.y4m"
expect 2 "not at a chunk start" "$LONGROLL" generate --latent-frames 9 --switch-prompt "4:$TMP/l1.safetensors" \
  --out "$TMP/x.y4m"
expect 2 "no tensor 'context'" "$LONGROLL" generate --latent-frames 9 --prompt-embeds "$TMP/l1.safetensors" \
  --out "$TMP/x.y4m"
if "$LONGROLL" version | grep -qE "cuda: no| 0 devices visible"; then  # no GPU here: refused, nothing written
  expect 2 "--device cuda" "$LONGROLL" generate --device cuda --out "$TMP/x.y4m"
fi
expect 2 "--save-latents" "$LONGROLL" generate --latent-frames 3 --save-latents /nonexistent-dir/l.safetensors

# Real (converted) weights end to end: the reference's tiny DiT and tiny VAE checkpoints, a prompt file.
P="$SRC/tests/data/parity"
expect 0 "done: 6 latent frames, 21 video frames" "$LONGROLL" generate \
  --weights "$P/weights_tiny.safetensors" --prompt-embeds "$P/rollout_sf.safetensors" \
  --vae "$SRC/tests/data/vae/weights_tiny_vae.safetensors" --size 48x32 --latent-frames 6 --out "$TMP/real.y4m"
check "real weights: 21 frames of 48x32" test "$(frames_of "$TMP/real.y4m"),$(size_of "$TMP/real.y4m")" = "21,48x32"
expect 2 "--vae FILE is required" "$LONGROLL" generate \
  --weights "$P/weights_tiny.safetensors" --prompt-embeds "$P/rollout_sf.safetensors" --size 48x32 \
  --latent-frames 3 --out "$TMP/x.y4m"
expect 2 "weights_tiny.safetensors" "$LONGROLL" generate --vae "$P/weights_tiny.safetensors" --latent-frames 3 \
  --out "$TMP/x.y4m"

# An existing output is replaced only by a complete run.
printf 'old' >"$TMP/keep.y4m"
expect 2 "" "$LONGROLL" generate --latent-frames 4 --out "$TMP/keep.y4m"
check "refused run leaves the old file" test "$(cat "$TMP/keep.y4m")" = old
finish

# The embedded default model: `longroll generate` with no --config and no --weights runs a model directory
# (models/tiny-shapes when shipped, LONGROLL_DEFAULT_MODEL=DIR, or the random-weight model with
# LONGROLL_DEFAULT_MODEL=random). Always: the engine's rollout of a model made by tools/train/ (the untrained test
# model in tests/data/tiny_shapes/model) equals the training code's own sampler on the same noise
# (tests/data/tiny_shapes/replay.safetensors, made by tools/train/make_fixtures.py; fp32 CPU, relative error
# <= 1e-4), under the model's sampler and under rollout.sampler=EULER (replay_euler.safetensors, the flow-matching
# ODE). With models/tiny-shapes shipped: its videos show their captions (dominant colour and direction,
# bench/quality/caption_check.py) and the random-weight model's do not.
source "$(dirname "$0")/lib.sh"
command -v python3 >/dev/null || { echo "python3 not installed"; exit 77; }
DATA="$SRC/tests/data/tiny_shapes"
FIX="$DATA/replay.safetensors"
export LONGROLL_DEFAULT_MODEL="$DATA/model"

# The default run says what it runs; a bad LONGROLL_DEFAULT_MODEL is refused by name; "random" is the test model.
expect 0 "embedded default model $DATA/model (a tiny Wan2.1 DiT made by tools/train/" "$LONGROLL" generate --device cpu \
  --latent-frames 3 --size 96x64 --save-latents "$TMP/d.safetensors"
expect 2 "LONGROLL_DEFAULT_MODEL=$TMP/none" env LONGROLL_DEFAULT_MODEL="$TMP/none" "$LONGROLL" generate \
  --latent-frames 3 --save-latents "$TMP/x.safetensors"
expect 0 "NOT a trained model" env LONGROLL_DEFAULT_MODEL=random "$LONGROLL" generate --device cpu \
  --latent-frames 3 --save-latents "$TMP/x.safetensors"

# --prompt TEXT on the default model goes through its word table (text.safetensors), no UMT5, no Python: the
# same latents as --prompt-embeds of tools/train/caption_embeds.py's file, bit for bit; unknown words exit 2.
cap="a blue circle moves up over a striped wall"
python3 "$SRC/tools/train/caption_embeds.py" "$cap" "$TMP/cap.safetensors" --model "$DATA/model"
expect 0 "word table" "$LONGROLL" generate --device cpu --prompt "A Blue circle  moves up over a striped wall" \
  --latent-frames 6 --size 96x64 --save-latents "$TMP/by_text.safetensors"
expect 0 "latents in" "$LONGROLL" generate --device cpu --prompt-embeds "$TMP/cap.safetensors" \
  --latent-frames 6 --size 96x64 --save-latents "$TMP/by_embeds.safetensors"
check "--prompt TEXT == --prompt-embeds of caption_embeds.py (bit for bit)" cmp "$TMP/by_text.safetensors" \
  "$TMP/by_embeds.safetensors"
expect 0 "word table" "$LONGROLL" generate --device cpu --prompt "$cap" --switch-prompt "3:a red square moves left" \
  --latent-frames 6 --size 96x64 --save-latents "$TMP/switch.safetensors"
check "the switched text prompt takes effect" bash -c "! cmp -s '$TMP/switch.safetensors' '$TMP/by_text.safetensors'"
expect 2 'words the model does not know: "purple"' "$LONGROLL" generate --device cpu --prompt "a purple circle" \
  --latent-frames 3 --size 96x64 --save-latents "$TMP/no.safetensors"
check "nothing written for a refused prompt" test ! -e "$TMP/no.safetensors"
expect 2 "a text prompt needs the UMT5 text encoder" env LONGROLL_DEFAULT_MODEL=random "$LONGROLL" generate \
  --device cpu --prompt "$cap" --latent-frames 3 --save-latents "$TMP/no.safetensors"

# Parity with the training code's sampler.
case_json=$(python3 -c "
import json, struct, sys
with open(sys.argv[1], 'rb') as f:
    n = struct.unpack('<Q', f.read(8))[0]; print(json.loads(f.read(n))['__metadata__']['case'])" "$FIX")
field() { python3 -c "import json, sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$case_json" "$1"; }
stale=$(python3 -c "
import hashlib, json, os, sys
want = json.loads(sys.argv[1])['model_sha256']
bad = [f for f, h in want.items() if hashlib.sha256(open(os.path.join(sys.argv[2], f), 'rb').read()).hexdigest() != h]
print(' '.join(bad))" "$case_json" "$LONGROLL_DEFAULT_MODEL")
check "fixture made from this model (else: python3 tools/train/make_fixtures.py)" test -z "$stale"
expect 0 "latents in" "$LONGROLL" generate --device cpu --noise "$FIX" --prompt-embeds "$FIX" \
  --size "$(field width)x$(field height)" --latent-frames "$(field latent_frames)" --save-latents "$TMP/replay.safetensors"
check "rollout == training sampler (rel err <= 1e-4)" python3 "$SRC/tests/cli/compare_latents.py" \
  "$TMP/replay.safetensors" "$FIX" 1e-4
# The Euler sampler: the same noise, the ODE between the timesteps (no step noise read), against the training code's.
expect 0 "(EULER sampler)" "$LONGROLL" generate --device cpu --noise "$FIX" --prompt-embeds "$FIX" \
  --set rollout.sampler=EULER --size "$(field width)x$(field height)" --latent-frames "$(field latent_frames)" \
  --save-latents "$TMP/euler.safetensors"
check "rollout.sampler=EULER == training sampler's EULER (rel err <= 1e-4)" python3 \
  "$SRC/tests/cli/compare_latents.py" "$TMP/euler.safetensors" "$DATA/replay_euler.safetensors" 1e-4
check "rollout.sampler=EULER takes effect (latents differ from the default sampler's)" bash -c \
  "! cmp -s '$TMP/euler.safetensors' '$TMP/replay.safetensors'"

# The shipped trained model follows captions; the random-weight model does not.
MODEL="$SRC/models/tiny-shapes"
if [ ! -f "$MODEL/dit.safetensors" ]; then
  echo "note: no shipped model in $MODEL (tools/train/train.py): caption checks skipped"
  finish
  exit 0
fi
export LONGROLL_DEFAULT_MODEL="$MODEL"
captions=("a red square moves right over a checkered floor" "a blue circle moves left over a striped wall"
          "a yellow triangle moves down over a dotted carpet")
random_passes=0
for i in 0 1 2; do
  cap="${captions[$i]}"
  python3 "$SRC/tools/train/caption_embeds.py" "$cap" "$TMP/p$i.safetensors" --model "$MODEL"
  expect 0 "wrote" "$LONGROLL" generate --device cpu --quiet --prompt-embeds "$TMP/p$i.safetensors" --seed $((i + 1)) \
    --latent-frames 6 --out "$TMP/v$i.y4m"
  check "trained: $cap" python3 "$SRC/bench/quality/caption_check.py" "$TMP/v$i.y4m" "$cap"
done
size=$(sed -n 's/^ *width: *\([0-9]*\).*/\1/p' "$MODEL/tiny-shapes.textproto")x$(sed -n 's/^ *height: *\([0-9]*\).*/\1/p' "$MODEL/tiny-shapes.textproto")
env LONGROLL_DEFAULT_MODEL=random "$LONGROLL" generate --device cpu --quiet --size "$size" --latent-frames 6 \
  --seed 1 --out "$TMP/r.y4m" 2>/dev/null
for i in 0 1 2; do
  python3 "$SRC/bench/quality/caption_check.py" "$TMP/r.y4m" "${captions[$i]}" && random_passes=$((random_passes + 1))
done
check "random weights fail the caption checks ($random_passes of 3 passed)" test "$random_passes" -le 1
finish

#!/bin/bash
# Judges a trained model directory the way CI will (tests/cli/test_default_model.sh), with the training code's own
# sampler (tools/train/sample.py, which the engine matches to 1e-7) so it runs where the engine is not built:
# for each caption, each latent-frame count and each seed, a video and bench/quality/caption_check.py's verdict.
#   check_captions.sh MODEL_DIR OUT_DIR
# Env: [FRAMES="6 12"] [SEEDS="1 2 3"] [SAMPLER: default the model's] [STEPS: e.g. 1000,875,...; default the model's]
#      [CAPTIONS: "all" (default: CI's three and three more), "ci" (CI's three), or captions one per line]
#      [KEEP_VIDEOS=0]
# Writes OUT_DIR/checks.jsonl (one record per video) and prints a table and "passed N of M" per frame count.
set -eu
model=${1:?usage: check_captions.sh MODEL_DIR OUT_DIR}
out=${2:?usage: check_captions.sh MODEL_DIR OUT_DIR}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
[ -f "$model/dit.safetensors" ] || {
  echo "check_captions.sh: $model/dit.safetensors is missing (a model made by train.py export)" >&2
  exit 2
}
mkdir -p "$out"
# CI's three (tests/cli/test_default_model.sh), then three more.
ci_captions="a red square moves right over a checkered floor
a blue circle moves left over a striped wall
a yellow triangle moves down over a dotted carpet"
more_captions="a green square moves up over a plain ground
a red circle moves down over a striped wall
a blue triangle moves right over a plain ground"
case "${CAPTIONS:-all}" in
  all) captions="$ci_captions
$more_captions" ;;
  ci) captions=$ci_captions ;;
  *) captions=$CAPTIONS ;;
esac
args=()
[ -n "${SAMPLER:-}" ] && args+=(--sampler "$SAMPLER")
[ -n "${STEPS:-}" ] && args+=(--steps "$STEPS")
: > "$out/checks.jsonl"
for frames in ${FRAMES:-6 12}; do
  passed=0 total=0
  while IFS= read -r cap; do
    [ -n "$cap" ] || continue
    for seed in ${SEEDS:-1 2 3}; do
      v="$out/f${frames}_s${seed}_$(echo "$cap" | tr ' ' '_').y4m"
      python3 "$here/sample.py" --model "$model" --caption "$cap" --latent-frames "$frames" --seed "$seed" \
        "${args[@]}" --video "$v" > /dev/null
      if stats=$(python3 "$root/bench/quality/caption_check.py" --json "$v" "$cap" 2>&1); then ok=1; else ok=0; fi
      passed=$((passed + ok)) total=$((total + 1))
      printf '%-52s frames %2d seed %d  %s\n' "$cap" "$frames" "$seed" "$([ $ok = 1 ] && echo pass || echo FAIL)"
      python3 - "$cap" "$frames" "$seed" "$ok" "$stats" >> "$out/checks.jsonl" <<'EOF'
import json, sys
cap, frames, seed, ok, stats = sys.argv[1:]
try:
    stats = json.loads(stats)
except ValueError:
    stats = {"output": stats}
print(json.dumps({"caption": cap, "latent_frames": int(frames), "seed": int(seed), "passed": ok == "1",
                  "check": stats}))
EOF
      [ "${KEEP_VIDEOS:-0}" = 1 ] || rm -f "$v"
    done
  done <<< "$captions"
  echo "latent frames $frames: passed $passed of $total"
done

# The attention policies with `longroll generate --device cuda` (skipped without a GPU): each sparse policy's
# latents against the CPU path's to bf16 accuracy (plus the near-ties the selection may break either way), with
# absolute RoPE and, for SPARSE_FORCING (persistent blocks outside the window) and LVSA, window-relative RoPE.
source "$(dirname "$0")/lib.sh"
if "$LONGROLL" version | grep -qE "cuda: no| 0 devices visible"; then echo "no CUDA device"; exit 77; fi
command -v python3 >/dev/null || { echo "python3 not installed"; exit 77; }
export LONGROLL_DEFAULT_MODEL=random

run() { "$LONGROLL" generate --latent-frames 15 --size 256x128 --seed 7 --metrics-port off --set attention.block_size=64 "$@"; }
W=(--set rollout.local_attn_size=9 --set rollout.sink_size=1)
expect 0 "heads static" "$LONGROLL" profile-heads --latent-frames 9 --out "$TMP/heads.json"
policies=(
  "sf|${W[*]} --set attention.policy=SPARSE_FORCING"
  "lf|${W[*]} --set attention.policy=LIGHT_FORCING"
  "lvsa|${W[*]} --set attention.policy=LVSA --set attention.lvsa.window_frames=1 --set attention.lvsa.anchor_interval=3"
  "fkv|--set rollout.sink_size=1 --set attention.policy=FORCING_KV --set attention.forcing_kv.head_profile=$TMP/heads.json"
  "sf_relative|${W[*]} --set rollout.rope_mode=WINDOW_RELATIVE --set attention.policy=SPARSE_FORCING"
  "lvsa_relative|${W[*]} --set rollout.rope_mode=WINDOW_RELATIVE --set attention.policy=LVSA --set attention.lvsa.window_frames=1 --set attention.lvsa.anchor_interval=3"
)
for entry in "${policies[@]}"; do
  name="${entry%%|*}"
  read -r -a opts <<<"${entry#*|}"
  expect 0 "device   cuda" run "${opts[@]}" --device cuda --save-latents "$TMP/$name.gpu.safetensors"
  expect 0 "device   cpu" run "${opts[@]}" --device cpu --save-latents "$TMP/$name.cpu.safetensors"
  check "$name: GPU latents match the CPU's" python3 - "$TMP/$name.gpu.safetensors" "$TMP/$name.cpu.safetensors" <<'PY'
import json, struct, sys
from array import array
def load(p):
    b = open(p, "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n]); e = h["latents"]
    return array("f", b[8 + n + e["data_offsets"][0]:8 + n + e["data_offsets"][1]])
a, c = load(sys.argv[1]), load(sys.argv[2])
num = sum((x - y) ** 2 for x, y in zip(a, c)); den = sum(y * y for y in c)
err = (num / den) ** 0.5
print(sys.argv[1], "relative error vs CPU", err)
sys.exit(0 if err < 5e-2 else 1)
PY
done
finish

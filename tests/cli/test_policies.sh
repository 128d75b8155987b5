# The attention policies from the command line on the embedded tiny model (CPU): each runs and says so, the
# Forcing-KV head profile round trip, and bad policy settings refused with exit code 2 naming the field or file.
source "$(dirname "$0")/lib.sh"
export LONGROLL_DEFAULT_MODEL=random  # the small fixed shapes these checks are written for

run() { "$LONGROLL" generate --latent-frames 15 --size 256x128 --set attention.block_size=64 "$@"; }
W=(--set rollout.local_attn_size=9)

expect 0 "attention  SPARSE_FORCING" run "${W[@]}" --set attention.policy=SPARSE_FORCING --save-latents "$TMP/sf.safetensors"
expect 0 "attention  LIGHT_FORCING" run "${W[@]}" --set attention.policy=LIGHT_FORCING --save-latents "$TMP/lf.safetensors"
expect 0 "attention  LVSA" run "${W[@]}" --set attention.policy=LVSA --set attention.lvsa.window_frames=1 \
  --set attention.lvsa.anchor_interval=3 --save-latents "$TMP/lvsa.safetensors"
expect 0 "attention  SINK_WINDOW" run "${W[@]}" --set rollout.sink_size=3 --set attention.policy=SINK_WINDOW \
  --save-latents "$TMP/sw.safetensors"

# Forcing-KV: profile, then generate with the profile; a missing, malformed or foreign profile is refused.
expect 0 "heads static" "$LONGROLL" profile-heads --latent-frames 9 --out "$TMP/heads.json"
check "profile written" grep -q '"format": "longroll.head_profile.v1"' "$TMP/heads.json"
expect 2 "exists" "$LONGROLL" profile-heads --latent-frames 9 --out "$TMP/heads.json"
expect 0 "attention  FORCING_KV" run --set rollout.sink_size=1 --set attention.policy=FORCING_KV \
  --set attention.forcing_kv.head_profile="$TMP/heads.json" --save-latents "$TMP/fkv.safetensors"
expect 2 "attention.forcing_kv.head_profile" run --set attention.policy=FORCING_KV --save-latents "$TMP/x.safetensors"
echo '{"format": "nope"}' >"$TMP/bad.json"
expect 2 "bad.json: field 'format'" run --set attention.policy=FORCING_KV \
  --set attention.forcing_kv.head_profile="$TMP/bad.json" --save-latents "$TMP/x.safetensors"
sed 's/num_layers=2/num_layers=3/' "$TMP/heads.json" >"$TMP/other.json"
expect 2 "is for the model" run --set attention.policy=FORCING_KV \
  --set attention.forcing_kv.head_profile="$TMP/other.json" --save-latents "$TMP/x.safetensors"
expect 2 "rollout.local_attn_size" run "${W[@]}" --set attention.policy=FORCING_KV \
  --set attention.forcing_kv.head_profile="$TMP/heads.json" --save-latents "$TMP/x.safetensors"

# Budgets: zero, negative, dense-making, and a sparse policy without the window it needs.
expect 2 "attention.sparse_forcing.topk_blocks" run "${W[@]}" --set attention.policy=SPARSE_FORCING \
  --set attention.sparse_forcing.topk_blocks=0 --save-latents "$TMP/x.safetensors"
expect 2 "attention.sparse_forcing.topk_blocks" run "${W[@]}" --set attention.policy=SPARSE_FORCING \
  --set attention.sparse_forcing.topk_blocks=10000 --save-latents "$TMP/x.safetensors"
expect 2 "rollout.local_attn_size" run --set attention.policy=SPARSE_FORCING --save-latents "$TMP/x.safetensors"
expect 2 "attention.lvsa.anchor_interval" run "${W[@]}" --set attention.policy=LVSA \
  --set attention.lvsa.anchor_interval=1 --save-latents "$TMP/x.safetensors"
expect 2 "attention.light_forcing.topk_frames" run "${W[@]}" --set attention.policy=LIGHT_FORCING \
  --set attention.light_forcing.topk_frames=50 --save-latents "$TMP/x.safetensors"
check "nothing written by refused runs" test ! -e "$TMP/x.safetensors"

# The sparse runs differ from dense (a policy that is accepted takes effect).
expect 0 "attention  DENSE" run "${W[@]}" --save-latents "$TMP/dense.safetensors"
if command -v python3 >/dev/null && python3 -c 'import numpy' 2>/dev/null; then
  differs() {
    python3 - "$1" "$2" <<'PY'
import json, struct, sys
import numpy as np
def load(p):
    b = open(p, 'rb').read(); n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8 + n]); e = h['latents']
    return np.frombuffer(b[8 + n + e['data_offsets'][0]:8 + n + e['data_offsets'][1]], dtype=np.float32)
a, d = load(sys.argv[1]), load(sys.argv[2])
err = np.linalg.norm(a - d) / np.linalg.norm(d)
print(sys.argv[1], 'relative difference to dense', err)
sys.exit(0 if 1e-6 < err < 5e-3 else 1)  # measured 0.9e-3 to 1.3e-3 (random weights)
PY
  }
  for p in sf lf lvsa fkv; do check "$p differs from dense, within bounds" differs "$TMP/$p.safetensors" "$TMP/dense.safetensors"; done
fi
finish

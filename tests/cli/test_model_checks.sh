# The model a run uses is checked against what the files say (DESIGN.md section 9): NaN / Inf in the DiT or VAE
# weights refused (exit 2) naming the file, tensor and element; a config model that disagrees with the checkpoint's
# own config refused naming both values; a guessed head count said out loud; the parallel layout checked against the
# model actually loaded.
source "$(dirname "$0")/lib.sh"
P="$SRC/tests/data/parity"
VAE="$SRC/tests/data/vae/weights_tiny_vae.safetensors"
EMB="$P/rollout_sf.safetensors"
# poke SRC DST TENSOR INDEX VALUE [drop-config]: a copy of a safetensors file with one F32 or BF16 element replaced (and
# without its __metadata__ config with drop-config).
poke() {
  python3 - "$@" <<'PY'
import json, struct, sys
src, dst, name, index, value = sys.argv[1:6]
b = bytearray(open(src, 'rb').read())
n = struct.unpack('<Q', b[:8])[0]
h = json.loads(b[8:8 + n])
if name != '-':
    e = h[name]
    f32 = struct.pack('<f', float(value))
    size, raw = {'F32': (4, f32), 'BF16': (2, f32[2:])}[e['dtype']]
    at = 8 + n + e['data_offsets'][0] + size * int(index)
    b[at:at + size] = raw
if len(sys.argv) > 6:
    h.get('__metadata__', {}).pop('config', None)
    head = json.dumps(h).encode()
    head += b' ' * (-len(head) % 8)
    b = struct.pack('<Q', len(head)) + head + b[8 + n:]
open(dst, 'wb').write(bytes(b))
PY
}
TINY=(generate --prompt-embeds "$EMB" --size 48x32 --latent-frames 3)

# ---- NaN / Inf weights: refused while they are converted, nothing written.
poke "$P/weights_tiny.safetensors" "$TMP/nan_dit.safetensors" model.blocks.1.ffn.0.weight 70 nan
expect 2 "nan_dit.safetensors: tensor 'model.blocks.1.ffn.0.weight' [64, 32] holds 1 value that is NaN or Inf (the first, NaN, at [2, 6])" \
  "$LONGROLL" "${TINY[@]}" --weights "$TMP/nan_dit.safetensors" --vae "$VAE" --out "$TMP/x.y4m"
VT=$(python3 -c "
import json, struct, sys
b = open(sys.argv[1], 'rb').read(); n = struct.unpack('<Q', b[:8])[0]
print(sorted(k for k, v in json.loads(b[8:8 + n]).items() if k != '__metadata__' and v['dtype'] == 'BF16')[-1])" "$VAE")
poke "$VAE" "$TMP/inf_vae.safetensors" "$VT" 0 -inf
expect 2 "inf_vae.safetensors: tensor '$VT' [16, 16, 3, 3, 3] holds 1 value that is NaN or Inf (the first, Inf, at [0, 0, 0, 0, 0])" \
  "$LONGROLL" "${TINY[@]}" --weights "$P/weights_tiny.safetensors" --vae "$TMP/inf_vae.safetensors" --out "$TMP/x.y4m"
check "NaN / Inf weights: nothing written" test ! -e "$TMP/x.y4m"
expect 0 "done" "$LONGROLL" "${TINY[@]}" --weights "$P/weights_tiny.safetensors" --vae "$VAE" --out "$TMP/ok.y4m" --quiet

# ---- The config's model against the checkpoint's own config (weights_tiny carries dim 32, 2 heads, text_len 8).
expect 2 "model.dim is 64 in the config but 32 in the checkpoint" \
  "$LONGROLL" "${TINY[@]}" --config "$SRC/configs/tiny.textproto" --weights "$P/weights_tiny.safetensors" \
  --save-latents "$TMP/x.safetensors"
expect 2 "--set model.dim=32 --set model.ffn_dim=64" \
  "$LONGROLL" "${TINY[@]}" --config "$SRC/configs/tiny.textproto" --weights "$P/weights_tiny.safetensors" \
  --save-latents "$TMP/x.safetensors"
expect 2 "model.num_heads is 4 in the config but 2 in the checkpoint" \
  "$LONGROLL" "${TINY[@]}" --weights "$P/weights_tiny.safetensors" --set model.num_heads=4 --save-latents "$TMP/x.safetensors"
check "a refused model wrote nothing" test ! -e "$TMP/x.safetensors"
# Without --config the checkpoint's model is used, and the summary says so.
expect 0 "model config from its metadata" \
  "$LONGROLL" "${TINY[@]}" --weights "$P/weights_tiny.safetensors" --save-latents "$TMP/meta.safetensors"
# Without a config in the file: the sizes come from the shapes, the head count is a guess said out loud; given, it
# is not a guess and the result is the metadata run's.
poke "$P/weights_tiny.safetensors" "$TMP/nometa.safetensors" - 0 0 drop-config
expect 0 "model.num_heads = 1 is a guess from its width 32" \
  "$LONGROLL" "${TINY[@]}" --weights "$TMP/nometa.safetensors" --save-latents "$TMP/guess.safetensors"
out=$("$LONGROLL" "${TINY[@]}" --weights "$TMP/nometa.safetensors" --set model.num_heads=2 --set model.text_len=8 \
  --save-latents "$TMP/given.safetensors" 2>&1)
check "a given head count is not called a guess" bash -c "! grep -q 'is a guess' <<<'$out'"
check "shapes + given heads == the checkpoint's own config" cmp -s <(tail -c 4096 "$TMP/given.safetensors") \
  <(tail -c 4096 "$TMP/meta.safetensors")

finish

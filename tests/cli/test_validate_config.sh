# validate-config on every preset, overrides, and file:line:col errors with exit code 2.
source "$(dirname "$0")/lib.sh"

for f in "$SRC"/configs/*.textproto; do
  expect 0 ": ok" "$LONGROLL" validate-config "$f"
done
expect 0 "window 6 latent frames" "$LONGROLL" validate-config "$SRC/configs/wan2.1-t2v-1.3b-480p.textproto" \
  --set rollout.local_attn_size=6
expect 0 "local_attn_size: 12" "$LONGROLL" validate-config "$SRC/configs/wan2.1-t2v-1.3b-480p.textproto" \
  --set rollout.local_attn_size=12 --print

# The effective config printed by --print is itself a valid config that prints the same.
"$LONGROLL" validate-config "$SRC/configs/wan2.1-t2v-1.3b-1080p.textproto" --print >"$TMP/eff.textproto"
"$LONGROLL" validate-config "$TMP/eff.textproto" --print >"$TMP/eff2.textproto"
check "--print output round-trips" cmp -s "$TMP/eff.textproto" "$TMP/eff2.textproto"

cat >"$TMP/bad_height.textproto" <<'CFG'
model { dim: 64 ffn_dim: 128 num_heads: 2 num_layers: 2 }
video {
  width: 128
  height: 100
}
CFG
expect 2 "bad_height.textproto:4:3: video.height" "$LONGROLL" validate-config "$TMP/bad_height.textproto"

printf 'model { dim: 64 ffn_dim: 128 num_heads: 2 num_layers: 2 }\nrollout { frames_per_chunk: three }\n' >"$TMP/syntax.textproto"
expect 2 "syntax.textproto:2:" "$LONGROLL" validate-config "$TMP/syntax.textproto"
printf 'model { dim: 64 ffn_dim: 128 num_heads: 2 num_layers: 2 }\nrollout { no_such_field: 1 }\n' >"$TMP/unknown.textproto"
expect 2 "no_such_field" "$LONGROLL" validate-config "$TMP/unknown.textproto"
expect 2 "--set rollout.local_attn_sze=6" "$LONGROLL" validate-config "$SRC/configs/tiny.textproto" \
  --set rollout.local_attn_sze=6
expect 2 "parallel.ulysses" "$LONGROLL" validate-config "$SRC/configs/wan2.1-t2v-1.3b-480p.textproto" \
  --set parallel.ulysses=5
expect 2 "$TMP/missing.textproto" "$LONGROLL" validate-config "$TMP/missing.textproto"
# Protobuf text format would read 0x80 as 128 and 064 as 52: refused with the place, decimal asked for.
sed 's/width: 128/width: 0x80/' "$SRC/configs/tiny.textproto" >"$TMP/hex.textproto"
sed 's/height: 64/height: 064/' "$SRC/configs/tiny.textproto" >"$TMP/oct.textproto"
check "the tiny config has the fields the hex/octal checks edit" grep -q "width: 0x80" "$TMP/hex.textproto"
expect 2 "hex.textproto:" "$LONGROLL" validate-config "$TMP/hex.textproto"
expect 2 "integer '0x80' is hexadecimal in protobuf text format; write it in decimal" \
  "$LONGROLL" validate-config "$TMP/hex.textproto"
expect 2 "integer '064' is octal" "$LONGROLL" validate-config "$TMP/oct.textproto"
# --metrics-bind: a literal IPv4/IPv6 address (civetweb took 999.1.1.1 for 231.1.1.1).
expect 2 "monitoring.bind: expected an IPv4 or IPv6 address" "$LONGROLL" generate --latent-frames 3 \
  --metrics-bind 999.1.1.1 --metrics-port 0 --save-latents "$TMP/mb.safetensors"
expect 0 "metrics  http://127.0.0.1:" "$LONGROLL" generate --latent-frames 3 --metrics-bind 127.0.0.1 \
  --metrics-port 0 --save-latents "$TMP/mb.safetensors"
expect 0 "metrics  off" "$LONGROLL" generate --latent-frames 3 --metrics-port off --save-latents "$TMP/mb2.safetensors"
finish

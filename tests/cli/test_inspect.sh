# inspect: tables and JSON for good files and sharded indexes; every malformed corpus file exits 2 with its
# path in the message and nothing on stdout.
source "$(dirname "$0")/lib.sh"
D="$SRC/tests/data/safetensors"

expect 0 "tensors" "$LONGROLL" inspect "$D/good_f32.safetensors"
expect 0 "dtype" "$LONGROLL" inspect "$D/good_mixed.safetensors"
expect 0 "model-00002-of-00002.safetensors" "$LONGROLL" inspect --json "$D/sharded/model.safetensors.index.json"
"$LONGROLL" inspect --json "$D/good_all_dtypes.safetensors" >"$TMP/all.json"
check "--json output is valid JSON" python3 -c "import json,sys; d=json.load(open(sys.argv[1])); assert d['tensors']" "$TMP/all.json"

for f in "$D"/bad_*.safetensors "$D"/sharded/bad_*.index.json; do
  out="$("$LONGROLL" inspect "$f" 2>"$TMP/err")"
  rc=$?
  if [ "$rc" -ne 2 ] || [ -n "$out" ] || ! grep -qF "$(basename "$f")" "$TMP/err"; then
    echo "FAIL: inspect $f: exit $rc, stdout '${out:0:80}', stderr: $(head -c 300 "$TMP/err")"
    failures=$((failures + 1))
  fi
done
echo "checked $(ls "$D"/bad_*.safetensors "$D"/sharded/bad_*.index.json | wc -l) malformed files"
expect 2 "no-such-file.safetensors" "$LONGROLL" inspect "$TMP/no-such-file.safetensors"
finish

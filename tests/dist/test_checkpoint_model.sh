#!/usr/bin/env bash
# The parallel layout is checked against the model actually loaded (issue 17): a 3-head checkpoint carrying its
# config runs with parallel.ulysses=3 and no --config (the default config has 2 heads) and gives the 1-rank latents;
# parallel.ulysses=2 is refused on every rank naming the checkpoint's 3 heads. Usage: test_checkpoint_model.sh LONGROLL
set -u
bin=$1
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
command -v mpirun >/dev/null 2>&1 || { echo "mpirun not found: skipping"; exit 77; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fails=0
python3 "$here/make_3head_checkpoint.py" "$src/tests/data/parity/weights_tiny.safetensors" "$dir/w3.safetensors"
args=(generate --device cpu --weights "$dir/w3.safetensors" --prompt-embeds "$src/tests/data/parity/rollout_sf.safetensors"
      --size 48x32 --latent-frames 3 --metrics-port off --quiet)
"$bin" "${args[@]}" --save-latents "$dir/one.safetensors" 2>"$dir/one.log" || { echo "FAIL: 1 rank"; cat "$dir/one.log"; exit 1; }
timeout 120 "$here/mpirun.sh" 3 "$bin" "${args[@]}" --set parallel.ulysses=3 --save-latents "$dir/u3.safetensors" \
  >"$dir/u3.log" 2>&1 || { echo "FAIL: ulysses=3 on the 3-head checkpoint"; cat "$dir/u3.log"; fails=1; }
python3 - "$dir/one.safetensors" "$dir/u3.safetensors" <<'PY' || { echo "FAIL: ulysses=3 latents differ"; fails=1; }
import json, struct, sys
def tensor(p):
    b = open(p, 'rb').read()
    n = struct.unpack('<Q', b[:8])[0]
    s, e = json.loads(b[8:8 + n])['latents']['data_offsets']
    return b[8 + n + s:8 + n + e]
sys.exit(0 if tensor(sys.argv[1]) == tensor(sys.argv[2]) else 1)
PY
timeout 120 "$here/mpirun.sh" 2 "$bin" "${args[@]}" --set parallel.ulysses=2 --save-latents "$dir/u2.safetensors" \
  >"$dir/u2.log" 2>&1
rc=$?
n=$(grep -c "error on rank [01] .*divisor of model.num_heads (3)" "$dir/u2.log")
if [ $rc -ne 2 ] || [ "$n" != 2 ] || [ -e "$dir/u2.safetensors" ]; then
  echo "FAIL: ulysses=2 on 3 heads: exit $rc, $n rank messages"; cat "$dir/u2.log"; fails=1
fi
[ $fails = 0 ] && echo "ok: a 3-head checkpoint runs with ulysses=3 (== 1 rank), ulysses=2 refused against its 3 heads"
exit $fails

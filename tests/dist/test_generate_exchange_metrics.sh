#!/usr/bin/env bash
# The bytes a 2-rank spatial `longroll generate` exchanges reach longroll_exchanged_bytes_total on each rank's
# exporter, at the values the layout requires (computed here from the tiny config, not read from the engine).
# Extra arguments go to `generate`: with --set parallel.overlap_groups=2 the bytes are the same (the exchange is split
# by heads, not reduced) and the hidden exchange time is exported.
# Usage: test_generate_exchange_metrics.sh LONGROLL [GENERATE ARGS...]
set -u
bin=$1
shift
here=$(cd "$(dirname "$0")" && pwd)
command -v mpirun >/dev/null 2>&1 || { echo "mpirun not found: skipping"; exit 77; }
dir=$(mktemp -d)
pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$dir"
}
trap cleanup EXIT

# The exporters linger after the run so that the final values can be read; the trap ends mpirun once they were.
LONGROLL_METRICS_LINGER_SECONDS=60 timeout 300 "$here/mpirun.sh" 2 -x LONGROLL_METRICS_LINGER_SECONDS "$bin" \
  generate --device cpu --latent-frames 6 --seed 3 --quiet --set video.width=256 --set video.height=128 \
  --set parallel.spatial=2 --metrics-port 0 --metrics-bind 127.0.0.1 --set monitoring.file_sd_path="$dir/sd.json" \
  --save-latents "$dir/l.safetensors" "$@" >"$dir/log" 2>&1 &
pid=$!

python3 - "$dir" <<'PY'
import json, os, re, sys, time, urllib.request
d = sys.argv[1]
# Tiny config (configs/tiny.textproto): dim 64, 2 layers, patch 1x2x2, 16 latent channels, 3-frame chunks,
# 4 denoising steps + 1 clean pass per chunk, no window. 256x128 -> a 32x16 latent -> 16 x 8 = 128 tokens per
# frame; a chunk's 384 rows are 3 query blocks of 128, dealt round-robin: rank 0 owns blocks 0 and 2 (256 rows),
# rank 1 block 1 (128 rows). Per layer and forward a rank sends its rows' K and V to the other (DENSE scores no
# blocks: no mean queries; the cached frames never move: every forward costs the same), and its rows of the DiT
# output, padded to the longest share (256 rows).
dim, layers, head_out, passes, chunks = 64, 2, 1 * 2 * 2 * 16, 5, 2
rows = {0: 256, 1: 128}
expected = {}
for r in (0, 1):
    kv = chunks * passes * layers * 2 * rows[r] * dim * 4
    gather = chunks * passes * max(rows.values()) * head_out * 4
    expected[r] = {"kv_blocks": kv, "all_gather": gather, "all_to_all": 0, "vae_latents": 0, "vae_halo": 0}

def stage(text, name):
    m = re.search(r'^longroll_stage_seconds_total\{[^}]*stage="%s"[^}]*\} (\S+)$' % name, text, re.M)
    return float(m.group(1)) if m else None

def hidden(text):
    m = re.search(r'^longroll_exchange_hidden_seconds_total\{[^}]*\} (\S+)$', text, re.M)
    return float(m.group(1)) if m else None

def value(text, op):
    m = re.search(r'^longroll_exchanged_bytes_total\{[^}]*op="%s"[^}]*\} (\S+)$' % op, text, re.M)
    return float(m.group(1)) if m else None

deadline = time.time() + 240
targets = {}
while time.time() < deadline and len(targets) < 2:
    for r in (0, 1):
        p = os.path.join(d, "sd.rank%d.json" % r)
        if os.path.exists(p):
            targets[r] = json.load(open(p))[0]["targets"][0]
    time.sleep(0.2)
if len(targets) < 2:
    print("FAIL: no file_sd files from both ranks"); print(open(os.path.join(d, "log")).read()); sys.exit(1)
# Until the run is done (rank 0's summary) and both ranks show the expected values (a rank reports its last
# forward's bytes right after it).
got, stages = {}, {}
while time.time() < deadline:
    done = "done:" in open(os.path.join(d, "log")).read()
    for r, t in targets.items():
        try:
            text = urllib.request.urlopen("http://%s/metrics" % t, timeout=5).read().decode()
            got[r] = {op: value(text, op) for op in expected[r]}
            stages[r] = {name: stage(text, name) for name in ("dit", "comm")}
            stages[r]["hidden"] = hidden(text)
        except OSError:
            pass
    if done and all(got.get(r) == expected[r] for r in (0, 1)):
        break
    time.sleep(0.2)
for r in (0, 1):
    if got.get(r) != expected[r]:
        print("FAIL: rank %d exchanged bytes %s, expected %s" % (r, got.get(r), expected[r]))
        print(open(os.path.join(d, "log")).read())
        sys.exit(1)
# The exchange's wall time is the "comm" stage, the rest of the DiT's the "dit" stage: both grow on each rank.
for r in (0, 1):
    st = stages.get(r) or {}
    if not ((st.get("comm") or 0) > 0 and (st.get("dit") or 0) > 0 and st.get("hidden") is not None):
        print("FAIL: rank %d stage seconds %s: expected dit > 0, comm > 0 and a hidden-exchange counter" % (r, st))
        sys.exit(1)
print("ok: stage seconds rank 0 %s, rank 1 %s" % (stages[0], stages[1]))
print("ok: ranks exported kv_blocks %d / %d and all_gather %d bytes, as the layout requires"
      % (expected[0]["kv_blocks"], expected[1]["kv_blocks"], expected[0]["all_gather"]))
PY

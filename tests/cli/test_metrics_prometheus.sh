# End to end with a real Prometheus server: `longroll generate --metrics-port 0` announces its ephemeral port in a
# file_sd JSON, a Prometheus started here from the shipped config (1 s scrapes, its file_sd job pointed at that
# file) scrapes it, and its HTTP API must then return the run's counters with the right labels. Also: a port in
# use is refused with exit code 2; two ranks under mpirun get one file_sd file and one target each.
# Everything runs on 127.0.0.1; every process started here is stopped by the trap.
source "$(dirname "$0")/lib.sh"
for tool in prometheus curl python3; do
  command -v "$tool" >/dev/null || { echo "$tool not installed (scripts/deps.sh installs it)"; exit 77; }
done
MON="$SRC/monitoring"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
  rm -rf "$TMP"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# ---- Prometheus, from the shipped config: the static job (other hosts) dropped, 1 s scrapes, file_sd on $TMP.
mkdir -p "$TMP/sd"
python3 - "$MON/prometheus/prometheus.yml" "$TMP/prom.yml" "$TMP/sd" "$MON/prometheus/alerts.yml" <<'EOF'
import sys
src, dst, sd_dir, alerts = sys.argv[1:]
out, skip = [], False
for line in open(src):
    if line.startswith("  - job_name:"):
        skip = line.strip() == "- job_name: longroll"
    if skip:
        continue
    line = line.replace("scrape_interval: 5s", "scrape_interval: 1s").replace("evaluation_interval: 15s", "evaluation_interval: 1s")
    line = line.replace("/var/lib/prometheus/longroll/*.json", sd_dir + "/*.json")
    line = line.replace("  - alerts.yml", "  - " + alerts)
    out.append(line)
text = "".join(out)
assert "job_name: longroll-sd" in text and sd_dir in text and "scrape_interval: 1s" in text and "'node1:" not in text, text
open(dst, "w").write(text)
EOF
[ -s "$TMP/prom.yml" ] || { echo "FAIL: cannot derive a test config from $MON/prometheus/prometheus.yml"; exit 1; }
PROM_PORT="$(free_port)"
PROM="http://127.0.0.1:$PROM_PORT"
prometheus --config.file="$TMP/prom.yml" --storage.tsdb.path="$TMP/data" --web.listen-address="127.0.0.1:$PROM_PORT" \
  --log.level=warn >"$TMP/prometheus.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 150); do curl -sf "$PROM/-/ready" >/dev/null && break; sleep 0.1; done
curl -sf "$PROM/-/ready" >/dev/null || { echo "FAIL: prometheus did not start"; cat "$TMP/prometheus.log"; exit 1; }

# query PROMQL -> the first sample as JSON {"metric": {...}, "value": "..."} ("" when none).
query() {
  curl -sf -G "$PROM/api/v1/query" --data-urlencode "query=$1" | python3 -c '
import json, sys
r = json.load(sys.stdin)["data"]["result"]
print(json.dumps({"metric": r[0]["metric"], "value": r[0]["value"][1]}) if r else "")'
}
# value_of SAMPLE, label_of SAMPLE NAME: "" for no sample.
value_of() { [ -z "$1" ] || python3 -c 'import json, sys; print(json.loads(sys.argv[1])["value"])' "$1"; }
label_of() { [ -z "$1" ] || python3 -c 'import json, sys; print(json.loads(sys.argv[1])["metric"].get(sys.argv[2], ""))' "$1" "$2"; }

# ---- One rank. 60 latent frames = 20 chunks = 1 + 4 * 59 = 237 video frames, with a 12-frame window (the tiny
# VAE decodes on the CPU, so a longer run would only make the test slow).
# The exporter lingers 30 s after the run, so the final values are scraped and queried even on a loaded
# machine (with 8 s, a busy CI box saw the target go stale before the last queries).
LATENT=60
FRAMES=$((1 + 4 * (LATENT - 1)))
LONGROLL_METRICS_LINGER_SECONDS=30 "$LONGROLL" generate --metrics-port 0 --metrics-bind 127.0.0.1 \
  --set monitoring.file_sd_path="$TMP/sd/run1.json" --latent-frames "$LATENT" --set rollout.rope_mode=WINDOW_RELATIVE \
  --set rollout.local_attn_size=12 --set rollout.sink_size=3 --out "$TMP/v.y4m" --quiet >"$TMP/gen.log" 2>&1 &
GEN=$!
PIDS+=("$GEN")
for _ in $(seq 100); do [ -s "$TMP/sd/run1.json" ] && break; sleep 0.1; done
if [ ! -s "$TMP/sd/run1.json" ]; then
  echo "longroll generate wrote no file_sd file within 10 s: this build does not export metrics yet"
  sed 's/^/    /' "$TMP/gen.log" | head -20
  exit 77
fi
cp "$TMP/sd/run1.json" "$TMP/run1.sd.json"
TARGET="$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[0]["targets"][0])' "$TMP/run1.sd.json")"
check "file_sd target is on loopback ($TARGET)" grep -q '^127\.0\.0\.1:[0-9][0-9]*$' <<<"$TARGET"

# Poll until Prometheus has scraped the final count (the run itself takes a few seconds).
final=""
for _ in $(seq 1200); do
  s="$(query "longroll_frames_generated_total{job=\"longroll-sd\",run=\"run1\"}")"
  if [ -n "$s" ] && [ "$(value_of "$s")" = "$FRAMES" ]; then final="$s"; break; fi
  kill -0 "$GEN" 2>/dev/null || { [ -n "$s" ] && final="$s"; break; }
  sleep 0.1
done
check "prometheus scraped longroll_frames_generated_total = $FRAMES (got: ${final:-nothing})" \
  test "$(value_of "$final")" = "$FRAMES"
if [ -n "$final" ]; then
  for kv in rank=0 local_rank=0 world_size=1 instance="$TARGET" job=longroll-sd run=run1; do
    check "label $kv" test "$(label_of "$final" "${kv%%=*}")" = "${kv#*=}"
  done
  check "label gpu_uuid present" test -n "$(label_of "$final" gpu_uuid)"
fi
s="$(query 'longroll_chunks_completed_total{run="run1"}')"
check "chunks completed = $((LATENT / 3))" test "$(value_of "$s")" = "$((LATENT / 3))"
s="$(query 'longroll_latent_frames_generated_total{run="run1"}')"
check "latent frames = $LATENT" test "$(value_of "$s")" = "$LATENT"
s="$(query 'longroll_run_info{run="run1"}')"
check "run_info has version and git_sha" test -n "$(label_of "$s" version)" -a -n "$(label_of "$s" git_sha)"
check "run_info resolution" test "$(label_of "$s" resolution)" = 128x64
s="$(query 'longroll_chunk_duration_seconds_count{run="run1"}')"
check "chunk duration histogram counted every chunk" test "$(value_of "$s")" = "$((LATENT / 3))"
s="$(query 'longroll_denoise_step_duration_seconds_count{run="run1"}')"
check "one denoising-step sample per DiT forward (4 per chunk)" test "$(value_of "$s")" = "$((LATENT / 3 * 4))"
s="$(query 'longroll_kv_cache_used_bytes{run="run1"} > 0 and longroll_kv_cache_used_bytes{run="run1"} <= longroll_kv_cache_capacity_bytes{run="run1"}')"
check "KV cache used bytes within capacity" test -n "$s"
s="$(query 'longroll_time_to_first_frame_seconds{run="run1"} >= 0')"
check "time to first frame set" test -n "$s"
s="$(query 'up{job="longroll-sd",run="run1"}')"
check "target up" test "$(value_of "$s")" = 1

# The video's end: videos_completed_total{status="ok"} = 1, scraped while the exporter lingers.
ok=""
for _ in $(seq 100); do
  s="$(query 'longroll_videos_completed_total{run="run1",status="ok"} == 1')"
  [ -n "$s" ] && { ok=1; break; }
  kill -0 "$GEN" 2>/dev/null || break
  sleep 0.1
done
check "videos_completed_total{status=\"ok\"} = 1" test -n "$ok"
# The real-time factor as the dashboard computes it.
s="$(query 'sum by (job, run) (rate(longroll_frames_generated_total{run="run1"}[1m])) / max by (job, run) (longroll_video_fps{run="run1"})')"
check "real-time factor query has a value" test -n "$s"

wait "$GEN"
rc=$?
PIDS=("${PIDS[0]}")
check "generate exited 0 (got $rc)" test "$rc" -eq 0
[ "$rc" -eq 0 ] || sed 's/^/    /' "$TMP/gen.log" | tail -20
check "file_sd file removed at the end of the run" test ! -e "$TMP/sd/run1.json"

# ---- A port in use (Prometheus' own) is refused before any work: exit 2, the address named, nothing written.
expect 2 "127.0.0.1:$PROM_PORT" "$LONGROLL" generate --metrics-port "$PROM_PORT" --metrics-bind 127.0.0.1 \
  --latent-frames 3 --out "$TMP/busy.y4m" --quiet
expect 2 "--metrics-port" "$LONGROLL" generate --metrics-port "$PROM_PORT" --metrics-bind 127.0.0.1 \
  --latent-frames 3 --out "$TMP/busy.y4m" --quiet
check "no output from the refused run" test ! -e "$TMP/busy.y4m"

# ---- Two ranks under mpirun: one file_sd file and one target per rank, world_size="2".
if command -v mpirun >/dev/null && OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
    timeout 30 mpirun --oversubscribe -np 2 true >/dev/null 2>&1; then
  OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 LONGROLL_METRICS_LINGER_SECONDS=20 \
    mpirun --oversubscribe -np 2 -x LONGROLL_METRICS_LINGER_SECONDS "$LONGROLL" generate --metrics-port 0 \
    --metrics-bind 127.0.0.1 --set monitoring.file_sd_path="$TMP/sd/run2.json" --latent-frames 30 \
    --out "$TMP/v2.y4m" --quiet >"$TMP/gen2.log" 2>&1 &
  GEN2=$!
  PIDS+=("$GEN2")
  ranks=""
  files=""
  for _ in $(seq 300); do
    [ -e "$TMP/sd/run2.rank0.json" ] && [ -e "$TMP/sd/run2.rank1.json" ] && files=2
    ranks="$(curl -sf -G "$PROM/api/v1/query" --data-urlencode 'query=longroll_run_info{run="run2",world_size="2"}' |
      python3 -c 'import json, sys; print(" ".join(sorted(r["metric"]["rank"] for r in json.load(sys.stdin)["data"]["result"])))')"
    [ "$ranks" = "0 1" ] && break
    kill -0 "$GEN2" 2>/dev/null || break
    sleep 0.1
  done
  check "both ranks scraped with world_size=2 (got: '$ranks')" test "$ranks" = "0 1"
  check "one file_sd file per rank (run2.rank0.json, run2.rank1.json)" test "$files" = 2
  wait "$GEN2"
  rc=$?
  PIDS=("${PIDS[0]}")
  check "mpirun generate exited 0 (got $rc)" test "$rc" -eq 0
  [ "$rc" -eq 0 ] || sed 's/^/    /' "$TMP/gen2.log" | tail -20
  check "rank file_sd files removed" test -z "$(ls "$TMP/sd" | grep run2)"
else
  echo "skip: mpirun cannot start 2 ranks here"
fi
finish

# The shipped monitoring files: the Prometheus config and alert rules pass promtool (syntax, and the rules'
# own unit tests in alerts_test.yml), the Grafana dashboard is valid JSON of the expected shape, and every
# PromQL expression in it is accepted by a real Prometheus server (started on loopback, no targets).
source "$(dirname "$0")/lib.sh"
command -v promtool >/dev/null || { echo "promtool not installed (Debian package prometheus)"; exit 77; }
MON="$SRC/monitoring"
PROM_PID=""
cleanup() {
  if [ -n "$PROM_PID" ]; then kill "$PROM_PID" 2>/dev/null; wait "$PROM_PID" 2>/dev/null; fi
  rm -rf "$TMP"
}
trap cleanup EXIT

expect 0 "SUCCESS" promtool check config "$MON/prometheus/prometheus.yml"
expect 0 "4 rules found" promtool check rules "$MON/prometheus/alerts.yml"
expect 0 "SUCCESS" promtool test rules "$MON/prometheus/alerts_test.yml"

# The dashboard: panels with PromQL targets on a ${datasource} variable, and the job/run/rank variables.
DASH="$MON/grafana/longroll-dashboard.json"
python3 - "$DASH" "$TMP/exprs.txt" <<'EOF' || failures=$((failures + 1))
import json, sys
d = json.load(open(sys.argv[1]))
names = [v["name"] for v in d["templating"]["list"]]
assert names == ["datasource", "job", "run", "rank"], names
assert d["templating"]["list"][0]["type"] == "datasource" and d["templating"]["list"][0]["query"] == "prometheus"
exprs = []
for p in d["panels"]:
    if p["type"] == "row":
        continue
    assert p["datasource"]["uid"] == "${datasource}", p["title"]
    assert p["targets"], p["title"]
    exprs += [t["expr"] for t in p["targets"]]
joined = "\n".join(exprs)
for metric in ["longroll_frames_generated_total", "longroll_video_fps", "longroll_chunk_duration_seconds_bucket",
               "longroll_stage_seconds_total", "longroll_kv_cache_used_bytes", "longroll_attention_sparsity_ratio",
               "longroll_exchanged_bytes_total", "longroll_last_chunk_timestamp_seconds",
               "longroll_exchange_hidden_seconds_total"]:
    assert metric in joined, metric + " is on no panel"
# Grafana's variables, as "All" selects them.
with open(sys.argv[2], "w") as f:
    for e in exprs:
        f.write(e.replace("$job", ".*").replace("$run", ".*").replace("$rank", ".*").replace("$__range", "1h")
                .replace("\n", " ") + "\n")
print("ok: dashboard has", len(exprs), "queries on", sum(p["type"] != "row" for p in d["panels"]), "panels")
EOF

command -v prometheus >/dev/null || { echo "prometheus not installed: dashboard queries not checked"; finish; exit; }
command -v curl >/dev/null || { echo "curl not installed: dashboard queries not checked"; finish; exit; }
PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
cat >"$TMP/prom.yml" <<EOF
global: {scrape_interval: 15s}
rule_files: ['$MON/prometheus/alerts.yml']
EOF
prometheus --config.file="$TMP/prom.yml" --storage.tsdb.path="$TMP/data" --web.listen-address="127.0.0.1:$PORT" \
  --log.level=warn >"$TMP/prometheus.log" 2>&1 &
PROM_PID=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/-/ready" >/dev/null && break; sleep 0.1; done
check "prometheus is ready" curl -sf "http://127.0.0.1:$PORT/-/ready" -o /dev/null
bad=0
while IFS= read -r expr; do
  if ! curl -sf -G "http://127.0.0.1:$PORT/api/v1/query" --data-urlencode "query=$expr" -o /dev/null; then
    echo "FAIL: prometheus rejects a dashboard query: $expr"
    curl -s -G "http://127.0.0.1:$PORT/api/v1/query" --data-urlencode "query=$expr" | head -c 300; echo
    bad=$((bad + 1))
  fi
done <"$TMP/exprs.txt"
check "every dashboard query parses ($(wc -l <"$TMP/exprs.txt") queries)" test "$bad" -eq 0
check "prometheus loaded the alert rules" grep -q LongrollStalled <(curl -sf "http://127.0.0.1:$PORT/api/v1/rules")
finish

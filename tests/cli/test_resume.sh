# Long runs that survive (DESIGN.md section 9): outputs never clobbered, clean stops on SIGINT/SIGTERM/SIGHUP,
# --resume after a stop or a kill -9 equal to an uninterrupted run (latents and frames bit for bit, CPU), checkpoints
# refused when the run differs, two runs on one output, a failing secondary output keeping the video.
source "$(dirname "$0")/lib.sh"

# A run whose DiT takes ~0.3 s a chunk on the CPU, so a signal lands mid-run. Background runs are started as
# `"$LONGROLL" ... &`, never through a function, so that $! is longroll's pid and not a subshell's.
BASE=(--size 192x128 --set output.checkpoint_every=1)
RUN=("${BASE[@]}" --latent-frames 24 --seed 5)
gen() { "$LONGROLL" generate "${RUN[@]}" "$@"; }
same_file() { cmp -s "$1" "$2"; }
wait_for() {  # wait_for FILE: until it exists (at most 60 s)
  for _ in $(seq 600); do [ -e "$1" ] && return 0; sleep 0.1; done
  return 1
}
latents_equal() {  # latents_equal A B: the tensors 'latents' are equal bit for bit (headers may differ)
  python3 - "$1" "$2" <<'PY'
import json, struct, sys
def tensor(p):
    b = open(p, 'rb').read()
    n = struct.unpack('<Q', b[:8])[0]
    h = json.loads(b[8:8 + n])['latents']
    s, e = h['data_offsets']
    return h['shape'], b[8 + n + s:8 + n + e]
sys.exit(0 if tensor(sys.argv[1]) == tensor(sys.argv[2]) else 1)
PY
}

# The uninterrupted reference.
expect 0 "latents in" gen --out "$TMP/ref.y4m" --save-latents "$TMP/ref.safetensors" --quiet
check "no checkpoint left after a complete run" test ! -e "$TMP/ref.y4m.resume.safetensors"

# ---- longroll decode: saved latents to the same video generate made; its output follows the same rules.
expect 0 "decoded 24 latent frames into 93 video frames" "$LONGROLL" decode "$TMP/ref.safetensors" --out "$TMP/dec.y4m"
check "decode gives generate's video byte for byte" same_file "$TMP/dec.y4m" "$TMP/ref.y4m"
expect 2 "the file exists" "$LONGROLL" decode "$TMP/ref.safetensors" --out "$TMP/dec.y4m"
expect 2 "is the run's input LATENTS" "$LONGROLL" decode "$TMP/ref.safetensors" --out "$TMP/ref.safetensors" --overwrite
expect 2 "--out FILE.mp4|FILE.y4m is required" "$LONGROLL" decode "$TMP/ref.safetensors"
expect 2 "not a safetensors file" "$LONGROLL" decode "$TMP/ref.y4m" --out "$TMP/dec2.y4m"

# ---- Outputs never clobbered.
expect 2 "the file exists; add --overwrite" gen --out "$TMP/ref.y4m"
expect 2 "--save-latents $TMP/x.y4m is also --out" gen --out "$TMP/x.y4m" --save-latents "$TMP/x.y4m"
cp "$TMP/ref.safetensors" "$TMP/embeds.safetensors"
expect 2 "is the run's input --noise" gen --noise "$TMP/embeds.safetensors" --save-latents "$TMP/embeds.safetensors" --overwrite
ln -s "$TMP/embeds.safetensors" "$TMP/link.safetensors"
expect 2 "is the run's input --prompt-embeds" "$LONGROLL" generate --prompt-embeds "$TMP/embeds.safetensors" \
  --save-latents "$TMP/link.safetensors" --overwrite
mkdir "$TMP/adir"
expect 2 "it is an existing directory" gen --out "$TMP/y.y4m" --save-latents "$TMP/adir"
expect 2 "directory '/nonexistent' does not exist" gen --out "$TMP/y.y4m" --save-latents /nonexistent/l.safetensors
check "refused runs wrote nothing" test ! -e "$TMP/y.y4m" -a ! -e "$TMP/x.y4m"
cp "$TMP/ref.y4m" "$TMP/old.y4m"
expect 0 "wrote" "$LONGROLL" generate --latent-frames 3 --out "$TMP/old.y4m" --overwrite --quiet
check "--overwrite replaced the file" bash -c "! cmp -s '$TMP/ref.y4m' '$TMP/old.y4m'"
# --quiet: no start-up summary.
check "--quiet prints no summary" bash -c "! '$LONGROLL' generate --latent-frames 3 --out '$TMP/q.y4m' --quiet 2>&1 | grep -q 'model '"

# ---- Two runs on one output: the second is refused while the first runs, and the first's file is intact.
"$LONGROLL" generate "${RUN[@]}" --out "$TMP/two.y4m" --quiet 2>/dev/null &
first=$!
wait_for "$TMP/.two.y4m.lock"
expect 2 "another longroll run is writing it" gen --out "$TMP/two.y4m" --quiet
wait $first
check "the first run's video is the reference" same_file "$TMP/two.y4m" "$TMP/ref.y4m"

# ---- SIGINT / SIGTERM / SIGHUP: stop after the chunk in flight, a playable video, latents and a checkpoint so far;
# exit 128 + signal; --resume then gives the uninterrupted result.
for sig in INT TERM HUP; do
  case $sig in INT) code=130 ;; TERM) code=143 ;; HUP) code=129 ;; esac
  d="$TMP/$sig"; mkdir "$d"
  "$LONGROLL" generate "${RUN[@]}" --out "$d/v.y4m" --save-latents "$d/l.safetensors" 2>"$d/log" &
  pid=$!
  wait_for "$d/v.y4m.resume.safetensors"
  kill -$sig $pid
  wait $pid
  rc=$?
  check "SIG$sig: exit $code (got $rc)" test $rc -eq $code
  check "SIG$sig: says how to resume" grep -q "stopped by SIG$sig after chunk .*run the same command with --resume" "$d/log"
  check "SIG$sig: no temporary file left" test -z "$(ls -A "$d" | grep -e partial -e lock)"
  frames=$(ffprobe -v error -count_frames -select_streams v:0 -show_entries stream=nb_read_frames -of csv=p=0 "$d/v.y4m" 2>/dev/null)
  check "SIG$sig: a playable partial video ($frames frames)" test "${frames:-0}" -gt 0 -a "${frames:-0}" -lt 93
  [ $sig = HUP ] && continue  # resumed after INT and TERM; HUP takes the same path
  expect 0 "resuming after chunk" gen --out "$d/v.y4m" --save-latents "$d/l.safetensors" --resume
  check "SIG$sig then --resume: the video equals the uninterrupted one" same_file "$d/v.y4m" "$TMP/ref.y4m"
  check "SIG$sig then --resume: the latents equal the uninterrupted ones" latents_equal "$d/l.safetensors" "$TMP/ref.safetensors"
  check "SIG$sig: the checkpoint is gone after the resumed run" test ! -e "$d/v.y4m.resume.safetensors"
done

# A prompt of the tiny model's shape (context [4, 64] F32).
python3 - "$TMP/context.safetensors" <<'PY'
import json, struct, sys
data = struct.pack('<256f', *[((i * 37) % 17 - 8) / 8.0 for i in range(256)])
head = json.dumps({'context': {'dtype': 'F32', 'shape': [4, 64], 'data_offsets': [0, len(data)]}}).encode()
head += b' ' * (-len(head) % 8)
open(sys.argv[1], 'wb').write(struct.pack('<Q', len(head)) + head + data)
PY

# NaN / Inf in prompt embeddings: refused (exit 2) naming the tensor, nothing written.
for bad in nan inf; do
  python3 - "$TMP/$bad.safetensors" "$bad" <<'PY'
import json, struct, sys
vals = [0.5] * 256
vals[70] = float(sys.argv[2])
data = struct.pack('<256f', *vals)
head = json.dumps({'context': {'dtype': 'F32', 'shape': [4, 64], 'data_offsets': [0, len(data)]}}).encode()
head += b' ' * (-len(head) % 8)
open(sys.argv[1], 'wb').write(struct.pack('<Q', len(head)) + head + data)
PY
  expect 2 "$bad.safetensors: tensor 'context' holds" "$LONGROLL" generate --latent-frames 3 \
    --prompt-embeds "$TMP/$bad.safetensors" --out "$TMP/$bad.y4m"
  check "$bad embeddings: nothing written" test ! -e "$TMP/$bad.y4m"
done

# ---- kill -9 at a random chunk: the last periodic checkpoint resumes to the same result.
d="$TMP/kill9"; mkdir "$d"
"$LONGROLL" generate "${RUN[@]}" --out "$d/v.y4m" --save-latents "$d/l.safetensors" 2>/dev/null &
pid=$!
wait_for "$d/v.y4m.resume.safetensors"
sleep "0.$((RANDOM % 10))"
kill -9 $pid
wait $pid 2>/dev/null
check "kill -9: no video under the final name" test ! -e "$d/v.y4m"
expect 2 "an interrupted run left" gen --out "$d/v.y4m" --save-latents "$d/l.safetensors"
# The checkpoint must match: another seed, length, config or prompt is refused, naming what differs.
K=(--out "$d/v.y4m" --save-latents "$d/l.safetensors" --resume)
expect 2 "the noise (--seed, --noise) differ" "$LONGROLL" generate "${BASE[@]}" --latent-frames 24 --seed 6 "${K[@]}"
expect 2 "the config (file, --set and flags) differ" gen --out "$d/v.y4m" --save-latents "$d/l.safetensors" --resume \
  --set rollout.local_attn_size=9
expect 2 "resume with the same length" "$LONGROLL" generate "${BASE[@]}" --latent-frames 27 --seed 5 "${K[@]}"
expect 2 "the prompts (--prompt, --prompt-embeds, --switch-prompt) differ" gen --out "$d/v.y4m" \
  --save-latents "$d/l.safetensors" --resume --switch-prompt 6:"$TMP/context.safetensors"
expect 0 "resuming after chunk" gen --out "$d/v.y4m" --save-latents "$d/l.safetensors" --resume
check "kill -9 then --resume: the video equals the uninterrupted one" same_file "$d/v.y4m" "$TMP/ref.y4m"
check "kill -9 then --resume: the latents equal the uninterrupted ones" latents_equal "$d/l.safetensors" "$TMP/ref.safetensors"
check "kill -9 then --resume: the killed run's temporaries are gone" test -z "$(ls -A "$d" | grep -e partial -e lock)"
expect 2 "no checkpoint" gen --out "$d/v.y4m" --save-latents "$d/l.safetensors" --resume

# ---- --prompt-file: an existing output is refused naming its job line; a stop in the second job, then --resume,
# keeps the finished first video, resumes the second, and both equal the uninterrupted run.
d="$TMP/jobs"; mkdir "$d"
printf -- '- %s/a.y4m 5\n- %s/b.y4m 5\n' "$d" "$d" >"$d/jobs.txt"
JOBS=("$LONGROLL" generate "${BASE[@]}" --latent-frames 24 --prompt-file "$d/jobs.txt")
echo old >"$d/b.y4m"
expect 2 "--prompt-file $d/jobs.txt:2 $d/b.y4m: the file exists; add --overwrite" "${JOBS[@]}"
rm "$d/b.y4m"
"${JOBS[@]}" 2>"$d/log" &
pid=$!
wait_for "$d/b.y4m.resume.safetensors"
kill -TERM $pid
wait $pid
rc=$?
check "--prompt-file, SIGTERM in the second job: exit 143 (got $rc)" test $rc -eq 143
check "--prompt-file: the first job's video is complete" same_file "$d/a.y4m" "$TMP/ref.y4m"
expect 0 "video 1/2 (--prompt-file $d/jobs.txt:1): finished before the stop, kept" "${JOBS[@]}" --resume
check "--prompt-file then --resume: the second video equals the uninterrupted one" same_file "$d/b.y4m" "$TMP/ref.y4m"
check "--prompt-file then --resume: no checkpoint left" test ! -e "$d/b.y4m.resume.safetensors"

# ---- A second signal stops at once and removes the temporaries.
d="$TMP/twice"; mkdir "$d"
"$LONGROLL" generate "${RUN[@]}" --out "$d/v.y4m" 2>"$d/log" &
pid=$!
wait_for "$d/v.y4m.resume.safetensors"
kill -INT $pid
for _ in $(seq 100); do grep -q "stopping after the chunk in flight" "$d/log" && break; sleep 0.02; done
kill -INT $pid
wait $pid
rc=$?
check "two signals: exit 130 (got $rc)" test $rc -eq 130
check "two signals: stopped at once" grep -q "stopped at once" "$d/log"
check "two signals: no temporary or lock file left" test -z "$(ls -A "$d" | grep -e partial -e lock)"

# ---- A secondary output failing at the end (the latents' name became a directory) keeps the finished video.
d="$TMP/secondary"; mkdir "$d"
"$LONGROLL" generate "${RUN[@]}" --out "$d/v.y4m" --save-latents "$d/l.safetensors" 2>"$d/log" &
pid=$!
wait_for "$d/v.y4m.resume.safetensors"
mkdir "$d/l.safetensors"
wait $pid
rc=$?
check "secondary failure: exit 1 (got $rc)" test $rc -eq 1
check "secondary failure: the message names the latents and keeps the video" \
  grep -q "save-latents.*the video $d/v.y4m is complete" "$d/log"
check "secondary failure: the video is the complete reference" same_file "$d/v.y4m" "$TMP/ref.y4m"

finish

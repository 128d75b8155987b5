#!/usr/bin/env bash
# Stopping and resuming under mpirun (DESIGN.md section 9): SIGTERM to `mpirun` stops every rank after the same
# chunk; each rank exits 143, rank 0 alone says how to go on, the group's writers leave a playable partial video, the
# latents so far and the checkpoint, and nothing temporary; `mpirun ... --resume` then gives the uninterrupted run's
# video and latents byte for byte. Layouts: 2 Ulysses ranks; 2 Ulysses ranks + 1 dedicated VAE rank; a 2 x 2 mesh
# (heads x query blocks); 2 spatial ranks with the exchanges overlapped (parallel.overlap_groups=2). Usage: test_stop_resume.sh LONGROLL
set -u
bin=$1
here=$(cd "$(dirname "$0")" && pwd)
source "$here/compare_lib.sh"
command -v mpirun >/dev/null 2>&1 || { echo "mpirun not found: skipping"; exit 77; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=1; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# Open MPI's mpirun passes a signal on to the ranks as SIGTERM odls_base_sigkill_timeout seconds after it got it,
# and sends SIGKILL as long again after that (default 1 s). A cluster scheduler (SLURM's scancel, a pre-emption)
# signals every process of the job at once: the test does the same, SIGTERM to mpirun and to the ranks, so the
# ranks start stopping at once and have 10 s (on a loaded CI machine) to finish their chunk, finalise and leave
# MPI (MPI_Finalize alone takes 2 s while mpirun tears the job down) before mpirun's SIGKILL.
mpi=(mpirun --oversubscribe --mca btl_vader_single_copy_mechanism none --mca odls_base_sigkill_timeout 10)
mpirun --version 2>&1 | grep -q "Open MPI" || mpi=(mpirun)
# Each rank's exit code, written by a wrapper that leaves the signals to longroll (an ignored signal is reset by
# longroll's own handlers) and survives them itself.
cat >"$dir/rank.sh" <<'SH'
#!/usr/bin/env bash
trap '' INT TERM HUP
"$@"
echo $? >"$RC_DIR/rc.${OMPI_COMM_WORLD_RANK:-${PMI_RANK:-0}}"
SH
chmod +x "$dir/rank.sh"
latents_equal() {
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

# 40 chunks of 3 latent frames, ~0.25 s each at 128x64 with a 12-frame window: a run lasts ~10 s, longer than
# mpirun's delay. One uninterrupted 1-rank reference (N ranks give the 1-rank result, test_generate_np2.sh).
common=(generate --device cpu --latent-frames 120 --seed 3 --metrics-port off --set rollout.local_attn_size=12)
"$bin" "${common[@]}" --size 128x64 --quiet --out "$dir/ref.y4m" --save-latents "$dir/ref.safetensors" 2>/dev/null \
  || { echo "FAIL: the 1-rank reference failed"; exit 1; }

# case NAME NP WIDTHxHEIGHT SET...: SIGTERM to mpirun -np NP, resume, compare with the reference.
case_() {
  local name=$1 np=$2 size=$3
  shift 3
  local d="$dir/$name" before=$fails
  fails=0
  mkdir -p "$d/rc"
  local ref="$dir/ref"
  if [ "$size" != 128x64 ]; then
    ref="$d/ref"
    "$bin" "${common[@]}" --size "$size" --quiet --out "$ref.y4m" --save-latents "$ref.safetensors" 2>/dev/null \
      || { fail "$name: the 1-rank reference failed"; return; }
  fi
  local run=("$bin" "${common[@]}" --size "$size" --set output.checkpoint_every=5 "$@" --out "$d/v.y4m" --save-latents "$d/l.safetensors")
  RC_DIR="$d/rc" "${mpi[@]}" -x RC_DIR -np "$np" "$dir/rank.sh" "${run[@]}" >"$d/log" 2>&1 &
  local pid=$!
  # Once the outputs are locked the ranks are up; a few chunks later, SIGTERM to mpirun and to every rank.
  for _ in $(seq 600); do [ -e "$d/.v.y4m.lock" ] && break; sleep 0.1; done
  sleep 2
  kill -TERM $pid
  pkill -TERM -f -- "^$bin generate .*--out $d/v.y4m" 2>/dev/null  # the ranks (not mpirun, not the wrappers)
  wait $pid
  local codes
  codes=$(cat "$d"/rc/rc.* 2>/dev/null | sort | uniq -c | tr -s ' ' | tr '\n' ';')
  [ "$codes" = " $np 143;" ] || fail "$name: rank exit codes '$codes', expected $np x 143"
  [ "$(grep -c 'stopped by SIGTERM after chunk .*run the same command with --resume' "$d/log")" = 1 ] \
    || { fail "$name: expected one message saying how to resume"; cat "$d/log"; }
  local chunk
  chunk=$(sed -n 's/.*stopped by SIGTERM after chunk \([0-9]*\)\/40.*/\1/p' "$d/log")
  ls -A "$d" | grep -q -e partial -e lock && fail "$name: temporary files left: $(ls -A "$d")"
  local frames
  frames=$(y4m_frames "$d/v.y4m")
  [ "${chunk:-0}" -gt 0 ] && [ "$frames" = $((chunk * 12 - 3)) ] \
    || fail "$name: the partial video holds $frames frames after chunk ${chunk:-?}"
  RC_DIR="$d/rc" "${mpi[@]}" -np "$np" "${run[@]}" --resume >"$d/resume.log" 2>&1 \
    || { fail "$name: the resumed run failed"; cat "$d/resume.log"; return; }
  cmp -s "$d/v.y4m" "$ref.y4m" || fail "$name: the resumed video differs from the uninterrupted one"
  latents_equal "$d/l.safetensors" "$ref.safetensors" || fail "$name: the resumed latents differ"
  [ -e "$d/v.y4m.resume.safetensors" ] && fail "$name: the checkpoint is left after the resumed run"
  [ $fails = 0 ] && echo "ok: $name: SIGTERM to mpirun -np $np stopped every rank after chunk $chunk/40 (exit 143), resume == uninterrupted"
  [ $before = 0 ] || fails=1
}

case_ ulysses2 2 128x64 --set parallel.ulysses=2
case_ ulysses2_vae1 3 128x64 --set parallel.ulysses=2 --set parallel.vae=DEDICATED_RANKS --set parallel.vae_ranks=1
case_ mesh2x2 4 256x128 --set parallel.ulysses=2 --set parallel.spatial=2
case_ spatial2_overlap2 2 256x128 --set parallel.spatial=2 --set parallel.overlap_groups=2
exit $fails

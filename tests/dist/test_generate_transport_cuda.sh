#!/usr/bin/env bash
# parallel.transport on the GPU path, `mpirun -np 2 longroll generate --device cuda --set parallel.ulysses=2`:
#   - always: the 1-rank run's summary says mpi (nothing to exchange);
#   - one GPU: NCCL is refused on both ranks (exit 2, naming the shared GPU, no output file); AUTO runs over MPI
#     (the summary says the ranks share the GPU) and gives the 1-rank latents bit for bit (as in
#     test_generate_ulysses_cuda.sh: measured 0 on an H100);
#   - two GPUs or more: NCCL and AUTO run over NCCL (the summary says so), give the 1-rank latents bit for bit
#     and every video frame, NCCL's latents are identical to MPI's (same shards, same kernels, only the transport
#     differs), and longroll_exchanged_bytes_total counts the NCCL all-to-alls; MPI still runs.
# Exit 77 (skipped) without mpirun, python3 or a GPU.
# Usage: test_generate_transport_cuda.sh LONGROLL
set -u
bin=$1
here=$(cd "$(dirname "$0")" && pwd)
command -v mpirun >/dev/null 2>&1 || { echo "mpirun not found: skipping"; exit 77; }
command -v python3 >/dev/null 2>&1 || { echo "python3 not found: skipping"; exit 77; }
if "$bin" version | grep -qE "cuda: no| 0 devices visible"; then echo "no CUDA device: skipping"; exit 77; fi
gpus=$("$bin" version | sed -n 's/.*, \([0-9][0-9]*\) devices\{0,1\} visible.*/\1/p')
[ -n "$gpus" ] || gpus=$(nvidia-smi -L 2>/dev/null | wc -l)
echo "GPUs visible: $gpus"
dir=$(mktemp -d)
pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$dir"
}
trap cleanup EXIT
args=(generate --device cuda --latent-frames 9 --seed 7 --metrics-port off)
u2=(--set parallel.ulysses=2)
fails=0

source "$here/compare_lib.sh"
expect_line() {  # expect_line NAME LOG REGEX: the log has a line matching REGEX
  grep -qE "$3" "$2" || { echo "FAIL: $1: no line matching '$3'"; cat "$2"; fails=1; return 1; }
  echo "ok: $1: $(grep -m1 -oE "$3" "$2")"
}

"$bin" "${args[@]}" --save-latents "$dir/one.safetensors" >"$dir/one.log" 2>&1 ||
  { echo "FAIL: 1-rank run failed"; cat "$dir/one.log"; exit 1; }
expect_line one "$dir/one.log" "transport  mpi \(one DiT rank per video: nothing to exchange\)"

# two NAME TRANSPORT [ARGS...]: the 2-rank Ulysses run; its latents against the 1-rank ones.
two() {
  local name=$1 t=$2
  shift 2
  timeout 300 "$here/mpirun.sh" 2 "$bin" "${args[@]}" "${u2[@]}" --set parallel.transport="$t" "$@" \
      --save-latents "$dir/$name.safetensors" --out "$dir/$name.y4m" >"$dir/$name.log" 2>&1 ||
    { echo "FAIL: $name: 2-rank run failed"; cat "$dir/$name.log"; fails=1; return 1; }
  local err
  err=$(rel_err "$dir/$name.safetensors" "$dir/one.safetensors")
  echo "[ measured ] $name: latents of 2 Ulysses ranks vs 1 rank: relative error $err (bound 0)"
  if le "${err%% *}" 0; then echo "ok: $name latents identical"; else echo "FAIL: $name latents ($err)"; fails=1; fi
  [ -s "$dir/$name.y4m" ] || { echo "FAIL: $name: no video"; fails=1; }
}

if [ "$gpus" -lt 2 ]; then
  # NCCL needs a GPU per rank: refused on both ranks before any output exists.
  start=$SECONDS
  timeout 120 "$here/mpirun.sh" 2 "$bin" "${args[@]}" "${u2[@]}" --set parallel.transport=NCCL \
      --out "$dir/nccl.y4m" >"$dir/nccl.log" 2>&1
  rc=$?
  n=$(grep -c "error on rank [01] (host .*parallel.transport=NCCL: 2 ranks on host .* share 1 GPU; NCCL needs one GPU per rank" "$dir/nccl.log")
  if [ $rc -ne 2 ] || [ "$n" -ne 2 ] || [ -e "$dir/nccl.y4m" ] || ls -A "$dir" | grep -q "^\.nccl\.y4m\..*partial$" ||
     [ $((SECONDS - start)) -gt 90 ]; then
    echo "FAIL: NCCL on one GPU: exit $rc, $n rank messages"; cat "$dir/nccl.log"; fails=1
  else
    echo "ok: NCCL on one GPU refused on both ranks with exit 2: $(grep -m1 -o "parallel.transport=NCCL.*" "$dir/nccl.log")"
  fi
  # AUTO: over MPI (host-staged), and says why.
  if two auto AUTO; then
    expect_line auto "$dir/auto.log" "transport  mpi \(2 ranks on host .* share 1 GPU\)"
    expect_line auto "$dir/auto.log" "heads split over 2 ranks \(MPI, host-staged\)"
  fi
  echo "skipped: the NCCL runs need 2 GPUs or more ($gpus visible)"
  exit $fails
fi

# Two GPUs or more: one per rank.
if two mpi MPI; then expect_line mpi "$dir/mpi.log" "transport  mpi \(parallel.transport=MPI\)"; fi
if two auto AUTO; then expect_line auto "$dir/auto.log" "transport  nccl \(one GPU per rank\)"; fi
if two nccl NCCL; then
  expect_line nccl "$dir/nccl.log" "transport  nccl \(one GPU per rank\)"
  expect_line nccl "$dir/nccl.log" "heads split over 2 ranks \(NCCL, device buffers\)"
  # The same shards and the same arithmetic as over MPI: only the transport differs, and it moves the bytes
  # exactly, so the latents must be identical (any difference is a transport bug, not rounding).
  err=$(rel_err "$dir/nccl.safetensors" "$dir/mpi.safetensors" 2>&1)
  echo "[ measured ] NCCL vs MPI latents: relative error $err (bound: 0, identical)"
  if python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) == 0.0 else 1)" "${err%% *}" 2>/dev/null; then
    echo "ok: NCCL latents identical to MPI's"
  else echo "FAIL: NCCL vs MPI latents differ ($err)"; fails=1; fi
fi

# The exchange meter watches the NCCL communicators: every rank exports all-to-all bytes.
LONGROLL_METRICS_LINGER_SECONDS=60 timeout 300 "$here/mpirun.sh" 2 -x LONGROLL_METRICS_LINGER_SECONDS "$bin" \
  generate --device cuda --latent-frames 6 --seed 3 --quiet "${u2[@]}" --set parallel.transport=NCCL \
  --metrics-port 0 --metrics-bind 127.0.0.1 --set monitoring.file_sd_path="$dir/sd.json" \
  --save-latents "$dir/m.safetensors" >"$dir/m.log" 2>&1 &
pid=$!
python3 - "$dir" <<'PY' || fails=1
import json, os, re, sys, time, urllib.request
d = sys.argv[1]
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
got = {}
while time.time() < deadline and len(targets) == 2:
    done = "done:" in open(os.path.join(d, "m.log")).read()
    for r, t in targets.items():
        try:
            text = urllib.request.urlopen("http://%s/metrics" % t, timeout=5).read().decode()
            got[r] = value(text, "all_to_all")
        except OSError:
            pass
    if done and all((got.get(r) or 0) > 0 for r in (0, 1)):
        break
    time.sleep(0.2)
if len(targets) < 2 or not all((got.get(r) or 0) > 0 for r in (0, 1)):
    print("FAIL: all_to_all bytes over NCCL: %s" % got)
    print(open(os.path.join(d, "m.log")).read())
    sys.exit(1)
print("ok: over NCCL each rank exported all_to_all bytes: %s" % got)
PY
exit $fails

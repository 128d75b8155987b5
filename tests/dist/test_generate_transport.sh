#!/usr/bin/env bash
# parallel.transport without a GPU: NCCL asked for where the DiT runs on the CPU is refused at start-up, alone and
# on every rank of `mpirun -np 2 ... --set parallel.ulysses=2` (exit 2, a message that says why, no output file);
# AUTO and MPI run over MPI, the start-up summary says so and why, and the latents equal the 1-rank run's byte
# for byte. Exit 77 (skipped) without mpirun or python3.
# Usage: test_generate_transport.sh LONGROLL
set -u
bin=$1
here=$(cd "$(dirname "$0")" && pwd)
command -v mpirun >/dev/null 2>&1 || { echo "mpirun not found: skipping"; exit 77; }
command -v python3 >/dev/null 2>&1 || { echo "python3 not found: skipping"; exit 77; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
args=(generate --latent-frames 3 --seed 11 --metrics-port off)
fails=0
no_gpu=0
if ! "$bin" version | grep -qE "cuda: yes .*, [1-9][0-9]* devices? visible"; then no_gpu=1; fi

# refused NAME NP EXPECTED_SUBSTRING ARGS...: exit 2, the message from every rank, no output, within 60 s.
refused() {
  local name=$1 np=$2 want=$3
  shift 3
  local start=$SECONDS rc n
  if [ "$np" = 1 ]; then
    timeout 60 "$bin" "${args[@]}" "$@" --out "$dir/$name.y4m" >"$dir/$name.log" 2>&1
    rc=$?
    n=$(grep -c "longroll: error: .*$want" "$dir/$name.log")
  else
    timeout 60 "$here/mpirun.sh" "$np" "$bin" "${args[@]}" "$@" --out "$dir/$name.y4m" >"$dir/$name.log" 2>&1
    rc=$?
    n=$(grep -c "error on rank [0-9]* (host .*$want" "$dir/$name.log")
  fi
  if [ $rc -ne 2 ] || [ "$n" -ne "$np" ] || [ -e "$dir/$name.y4m" ] || ls -A "$dir" | grep -q "^\.$name\.y4m\..*partial$" ||
     [ $((SECONDS - start)) -gt 40 ]; then
    echo "FAIL: $name: exit $rc, $n of $np rank messages with '$want'"; cat "$dir/$name.log"; fails=1
  else
    echo "ok: $name refused with exit 2 on $np rank(s): $(grep -m1 -o "parallel.transport.*" "$dir/$name.log")"
  fi
}
nccl=(--set parallel.transport=NCCL)
refused cpu_np1 1 "parallel.transport=NCCL: expected MPI or AUTO with runtime.device CPU" --device cpu "${nccl[@]}"
refused cpu_np2 2 "parallel.transport=NCCL: expected MPI or AUTO with runtime.device CPU" --device cpu "${nccl[@]}" \
  --set parallel.ulysses=2
# runtime.device AUTO on a machine without a GPU: the DiT lands on the CPU, which start-up finds out (or the build
# has no NCCL at all); either way every rank says why.
if [ $no_gpu = 1 ]; then
  refused auto_device_np1 1 "parallel.transport=NCCL: " "${nccl[@]}"
  refused auto_device_np2 2 "parallel.transport=NCCL: " "${nccl[@]}" --set parallel.ulysses=2
else
  echo "skipped: NCCL with runtime.device AUTO needs a machine without a GPU (tests/dist/test_generate_transport_cuda.sh)"
fi

# AUTO and MPI on the CPU: the exchange goes over MPI, the summary says why, and the latents are the 1-rank run's.
"$bin" "${args[@]}" --device cpu --save-latents "$dir/one.safetensors" >"$dir/one.log" 2>&1 ||
  { echo "FAIL: 1-rank run failed"; cat "$dir/one.log"; exit 1; }
grep -q "transport  mpi (one DiT rank per video: nothing to exchange)" "$dir/one.log" ||
  { echo "FAIL: the 1-rank summary does not name the transport"; cat "$dir/one.log"; fails=1; }
same_latents() {  # same_latents A B: the 'latents' tensors are byte for byte equal (the metadata names the seed)
  python3 - "$1" "$2" <<'PY'
import json, struct, sys
def latents(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        b, e = json.loads(f.read(n))["latents"]["data_offsets"]
        return f.read()[b:e]
sys.exit(0 if latents(sys.argv[1]) == latents(sys.argv[2]) else 1)
PY
}
for t in AUTO MPI; do
  timeout 300 "$here/mpirun.sh" 2 "$bin" "${args[@]}" --device cpu --set parallel.ulysses=2 --set parallel.transport=$t \
      --print-config --save-latents "$dir/$t.safetensors" >"$dir/$t.log" 2>&1 ||
    { echo "FAIL: $t: 2-rank run failed"; cat "$dir/$t.log"; fails=1; continue; }
  case $t in
    AUTO) why="the DiT runs on the CPU|this build has no NCCL" ;;
    MPI) why="parallel.transport=MPI" ;;
  esac
  grep -qE "transport  mpi \(($why)\)" "$dir/$t.log" ||
    { echo "FAIL: $t: the summary does not say 'transport  mpi ($why)'"; cat "$dir/$t.log"; fails=1; }
  grep -q "^  transport: $t$" "$dir/$t.log" ||
    { echo "FAIL: $t: --print-config does not show parallel.transport"; cat "$dir/$t.log"; fails=1; }
  if same_latents "$dir/one.safetensors" "$dir/$t.safetensors"; then
    echo "ok: parallel.transport=$t: 2 Ulysses ranks over MPI give the 1-rank latents byte for byte"
  else
    echo "FAIL: parallel.transport=$t: the latents differ from the 1-rank run"; fails=1
  fi
done
exit $fails

#!/usr/bin/env bash
# Scaling of the DiT over the GPUs of one machine (the multi-GPU issue): scaling_bench under mpirun on 1, 2, 4, 8
# GPUs (up to those visible), every mesh U x S = N with U dividing the heads (or the --meshes given), NCCL between
# the GPUs; for each N the fastest mesh is kept, and the table gives per-chunk time, DiT video FPS, bytes each rank
# sends per chunk, peak memory per GPU and the scaling efficiency t1 / (N tN), for each attention policy of
# --policies (bench/policies.h; the exchanges follow the policy's tables, so its bytes per chunk are its own).
#
#   bash bench/run_scaling.sh BUILD_DIR OUT_DIR [--model 1.3b|14b] [--size 1088p|480p] [--chunks 20]
#                             [--max-gpus N] [--meshes "1x1 2x1 1x2 ..."] [--transport nccl|mpi|auto]
#                             [--policies "DENSE SPARSE_FORCING LIGHT_FORCING FORCING_KV LVSA"] [--overlap-groups G]
# Writes OUT_DIR/scaling_<model>_<size>_<policy>_<U>x<S>.json per run and OUT_DIR/scaling_<model>_<size>.json (the
# table per policy).
# The issue's runs: --model 1.3b --size 1088p --chunks 20, and --model 14b --size 480p.
# On one GPU, --transport mpi --max-gpus 2 runs the 2-rank meshes host-staged on the one GPU (a smoke test).
set -u -o pipefail
build=${1:?usage: run_scaling.sh BUILD_DIR OUT_DIR [options]}
out=${2:?usage: run_scaling.sh BUILD_DIR OUT_DIR [options]}
shift 2
model=1.3b size=1088p chunks=20 max_gpus=0 meshes="" transport=auto policies=DENSE groups=1
while [ $# -gt 0 ]; do
  case "$1" in
    --model) model=$2; shift 2 ;;
    --size) size=$2; shift 2 ;;
    --chunks) chunks=$2; shift 2 ;;
    --max-gpus) max_gpus=$2; shift 2 ;;
    --meshes) meshes=$2; shift 2 ;;
    --transport) transport=$2; shift 2 ;;
    --policies) policies=$2; shift 2 ;;
    --overlap-groups) groups=$2; shift 2 ;;
    *) echo "run_scaling.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
gpus=$(nvidia-smi -L 2>/dev/null | grep -c "^GPU")
[ "$max_gpus" -gt 0 ] && gpus=$max_gpus
[ "$gpus" -ge 1 ] || { echo "run_scaling.sh: no GPU visible" >&2; exit 2; }
heads=12; [ "$model" = 14b ] && heads=40
mkdir -p "$out"
if [ -z "$meshes" ]; then
  for n in 1 2 4 8; do
    [ "$n" -le "$gpus" ] || break
    for u in 1 2 4 8; do
      [ $((n % u)) -eq 0 ] && [ $((heads % u)) -eq 0 ] && meshes="$meshes ${u}x$((n / u))"
    done
  done
fi
fails=0
for policy in $policies; do
  for mesh in $meshes; do
    u=${mesh%x*} s=${mesh#*x} n=$((${mesh%x*} * ${mesh#*x}))
    json="$out/scaling_${model}_${size}_${policy}_${mesh}.json"
    echo "== $model $size $policy on $n GPU(s), ulysses $u x spatial $s"
    timeout 1800 mpirun -np "$n" --bind-to none "$build/bench/scaling_bench" --model "$model" --size "$size" \
        --chunks "$chunks" --policy "$policy" $( [ "$n" -gt 1 ] && echo --overlap-groups "$groups" ) --ulysses "$u" --spatial "$s" --transport "$transport" --json "$json" \
        || { echo "FAIL: $policy mesh $mesh"; fails=1; }
  done
done
python3 - "$out" "$model" "$size" <<'PY'
import glob, json, sys
out, model, size = sys.argv[1:]
runs = []
for p in sorted(glob.glob(f"{out}/scaling_{model}_{size}_*_*x*.json")):
    runs.append(json.load(open(p))["result"])
if not runs:
    sys.exit("no results")
tables = {}
for policy in dict.fromkeys(r.get("policy", "DENSE") for r in runs):
    best = {}
    for r in runs:
        if r.get("policy", "DENSE") != policy:
            continue
        if r["gpus"] not in best or r["steady_chunk_ms"] < best[r["gpus"]]["steady_chunk_ms"]:
            best[r["gpus"]] = r
    t1 = best[1]["steady_chunk_ms"] if 1 in best else None
    print(f"\n{policy}\n{'GPUs':>4} {'mesh':>6} {'comm':>5} {'chunk ms':>10} {'DiT fps':>8} {'sent MB/chunk':>14} "
          f"{'peak GiB':>9} {'efficiency':>10}")
    table = []
    for n in sorted(best):
        r = best[n]
        eff = t1 / (n * r["steady_chunk_ms"]) if t1 else None
        table.append(dict(gpus=n, ulysses=r["ulysses"], spatial=r["spatial"], transport=r["transport"],
                          chunk_ms=r["steady_chunk_ms"], video_fps_dit=r["video_fps_dit"],
                          bytes_sent_per_chunk=r["bytes_sent_per_chunk"], peak_bytes_per_gpu=r["peak_bytes_per_gpu"],
                          efficiency=eff))
        print(f"{n:>4} {r['ulysses']}x{r['spatial']:<4} {r['transport']:>5} {r['steady_chunk_ms']:>10.1f} "
              f"{r['video_fps_dit']:>8.2f} {r['bytes_sent_per_chunk'] / 1e6:>14.1f} "
              f"{r['peak_bytes_per_gpu'] / 2**30:>9.2f} {'' if eff is None else f'{eff:.2f}':>10}")
    tables[policy] = table
json.dump({"model": model, "size": size, "best_per_gpu_count": tables, "runs": runs},
          open(f"{out}/scaling_{model}_{size}.json", "w"), indent=1)
PY
exit $fails

#!/bin/bash
# More DiT training in one GPU call of under 10 minutes (tools/train/README.md): the DiT resumed from PACK's
# dit_model.pt / dit_ema.pt (a fresh optimizer, with warmup) on the same VAE and latent stats (PACK/vae.pt, not
# trained further: a new VAE would change the latents the DiT learned), on a pool of clips encoded once; export to
# OUT/model.tar, pack to OUT (each file under 16 MiB), logs to OUT/logs.tar (the run's log appended to PACK's).
# Usage: [DM=8.6] [POOL=1024] [B=32] tools/train/continue_gpu.sh OUT PACK
set -eu
out=${1:?usage: continue_gpu.sh OUT PACK}
pack=${2:?usage: continue_gpu.sh OUT PACK}
here=$(cd "$(dirname "$0")" && pwd)
run=$(mktemp -d)
t0=$(date +%s)
el() { echo $(( $(date +%s) - t0 )); }
mkdir -p "$out"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
for f in vae.pt dit_model.pt dit_ema.pt; do
  [ -f "$pack/$f" ] || { echo "continue_gpu.sh: $pack/$f is missing (a pack made by train.py pack)" >&2; exit 2; }
  cp "$pack/$f" "$run/"
done
[ -f "$pack/logs.tar" ] && tar xf "$pack/logs.tar" -C "$run" dit_log.jsonl vae_log.jsonl 2>/dev/null || true
export PYTHONUNBUFFERED=1
train() { python3 "$here/train.py" "$@"; }
train dit --dir "$run" --minutes "${DM:-8.6}" --pool "${POOL:-1024}" --dit-batch "${B:-32}" > "$run/dit.out" 2>&1
echo "dit done at $(el) s: $(tail -1 "$run/dit.out")"
tail -1 "$run/dit_log.jsonl"
train export --dir "$run" --out "$run/model" | tail -1
train pack --dir "$run" --out "$out" | tail -1
tar cf "$out/model.tar" -C "$run" model
tar cf "$out/logs.tar" -C "$run" dit_log.jsonl dit.out $( [ -f "$run/vae_log.jsonl" ] && echo vae_log.jsonl )
echo "done at $(el) s: $out"

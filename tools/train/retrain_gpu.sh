#!/bin/bash
# The tiny default model's training in one GPU call of under 10 minutes (tools/train/README.md), three modes:
#   retrain_gpu.sh OUT [PACK]             the VAE resumed from PACK/vae.pt (or from scratch) on 33-frame clips, with
#                                         its long-clip check; its latent stats; the DiT from scratch on a pool of
#                                         clips encoded once by it
#   retrain_gpu.sh --new-dit OUT PACK     a DiT from scratch on PACK's VAE and stats (vae.pt; the VAE not trained)
#   retrain_gpu.sh --continue OUT PACK    the DiT resumed from PACK's [dit_model.pt] / dit_ema.pt (a fresh optimizer,
#                                         re-warmed) on PACK's VAE and stats, not trained further (a new VAE would
#                                         change the latents the DiT learned); PACK/logs.tar's logs are continued
# then export to OUT/model.tar, pack to OUT (each file under 16 MiB), logs to OUT/logs.tar.
# Env: [VM=2.5] [DM=4.3, 8.6 with --continue or --new-dit] [POOL=0: every scene clip] [B=32] [VB=4] [VF=33]
#      [DIT_ARGS: more train.py dit flags, e.g. "--chunk0-weight 4"] [EXPORT_ARGS: train.py export flags, e.g.
#      "--sampler EULER --denoising-steps 1000,875,750,625,500,375,250,125"]
#      [CHECKS="6": after export, CI's caption checks at these latent-frame counts (check_captions.sh), seeds SEEDS]
set -eu
mode=retrain
[ "${1:-}" = --continue ] && { mode=continue; shift; }
[ "${1:-}" = --new-dit ] && { mode=new-dit; shift; }
out=${1:?usage: retrain_gpu.sh [--continue] OUT [PACK]}
pack=${2:-}
here=$(cd "$(dirname "$0")" && pwd)
run=$(mktemp -d)
t0=$(date +%s)
el() { echo $(( $(date +%s) - t0 )); }
mkdir -p "$out"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
export PYTHONUNBUFFERED=1
train() { python3 "$here/train.py" "$@"; }
if [ "$mode" = continue ]; then
  for f in vae.pt dit_ema.pt; do
    [ -f "$pack/$f" ] || { echo "retrain_gpu.sh: $pack/$f is missing (a pack made by train.py pack)" >&2; exit 2; }
    cp "$pack/$f" "$run/"
  done
  # dit_model.pt is optional: without it the DiT resumes from its EMA weights (a pack kept small)
  [ -f "$pack/dit_model.pt" ] && cp "$pack/dit_model.pt" "$run/"
  [ -f "$pack/logs.tar" ] && tar xf "$pack/logs.tar" -C "$run" dit_log.jsonl vae_log.jsonl 2>/dev/null || true
  dit_minutes=${DM:-8.6}
elif [ "$mode" = new-dit ]; then
  [ -f "$pack/vae.pt" ] || { echo "retrain_gpu.sh: $pack/vae.pt is missing (a pack made by train.py pack)" >&2; exit 2; }
  cp "$pack/vae.pt" "$run/"
  [ -f "$pack/logs.tar" ] && tar xf "$pack/logs.tar" -C "$run" vae_log.jsonl 2>/dev/null || true
  dit_minutes=${DM:-8.6}
else
  [ -n "$pack" ] && [ -f "$pack/vae.pt" ] && cp "$pack/vae.pt" "$run/"
  train vae --dir "$run" --minutes "${VM:-2.5}" --vae-clip-frames "${VF:-33}" --vae-batch "${VB:-4}" > "$run/vae.out" 2>&1
  echo "vae done at $(el) s: $(tail -1 "$run/vae.out")"
  train stats --dir "$run" | tail -1
  dit_minutes=${DM:-4.3}
fi
train dit --dir "$run" --minutes "$dit_minutes" --pool "${POOL:-0}" --dit-batch "${B:-32}" ${DIT_ARGS:-} > "$run/dit.out" 2>&1
echo "dit done at $(el) s: $(tail -1 "$run/dit.out")"
tail -1 "$run/dit_log.jsonl"
train export --dir "$run" --out "$run/model" ${EXPORT_ARGS:-} | tail -1
train pack --dir "$run" --out "$out" | tail -1
# One file for the model and one for the logs: the device tool brings back a limited number of files.
tar cf "$out/model.tar" -C "$run" model
logs=$(cd "$run" && ls vae_log.jsonl dit_log.jsonl vae.out dit.out 2>/dev/null || true)
tar cf "$out/logs.tar" -C "$run" $logs
if [ -n "${CHECKS:-}" ]; then
  # CI's caption checks on the exported model (check_captions.sh: the training code's sampler), CI's three captions
  # at these latent-frame counts, seeds 1-3 unless SEEDS says otherwise; the verdicts go to OUT/checks.jsonl.
  CAPTIONS=ci FRAMES="$CHECKS" SEEDS="${SEEDS:-1 2 3}" bash "$here/check_captions.sh" "$run/model" "$run/checks" \
    | grep "passed" || true
  cp "$run/checks/checks.jsonl" "$out/" 2>/dev/null || true
fi
echo "done at $(el) s: $out"

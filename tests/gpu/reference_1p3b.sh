# One forward of the real Wan2.1-1.3B shape (seeded random weights, 480p latents, a 21-frame window) through
# the CUDA model against the public Self-Forcing PyTorch model run on the same GPU: an empty-cache forward,
# six clean passes filling the cache, a full-window forward and a later denoising step, each within 3e-2
# relative error of the reference's fp32 output (measured: 3.7e-3; the reference's own bf16 run is 1.5e-2).
# Usage: reference_1p3b.sh REFERENCE_CHECK SRC. Skips (77) without a GPU, torch or the reference sources
# (LONGROLL_SELF_FORCING, default SRC/.gpu/ref/self-forcing; stage it with tools/sf_ref.py --stage).
set -u
CHECK="$1"
SRC="$2"
REF="${LONGROLL_SELF_FORCING:-$SRC/.gpu/ref/self-forcing}"
command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1 || { echo "no GPU"; exit 77; }
python3 -c "import torch; assert torch.cuda.is_available()" 2>/dev/null || { echo "no torch with CUDA"; exit 77; }
[ -f "$REF/wan/modules/causal_model.py" ] || { echo "no Self-Forcing sources at $REF"; exit 77; }
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
python3 "$SRC/tools/wan_reference_forward.py" --ref "$REF" --out "$TMP/ref" || exit 1
"$CHECK" --dir "$TMP/ref" --backend cuda --max-rel-err 3e-2

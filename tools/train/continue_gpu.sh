#!/bin/bash
# More DiT training in one GPU call: retrain_gpu.sh --continue (see there).
# Usage: [DM=8.6] [POOL=1024] [B=32] tools/train/continue_gpu.sh OUT PACK
exec bash "$(dirname "$0")/retrain_gpu.sh" --continue "${1:?usage: continue_gpu.sh OUT PACK}" "${2:?usage: continue_gpu.sh OUT PACK}"

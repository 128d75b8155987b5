# The engine replays the PyTorch reference's rollouts through the user-facing flags and must reproduce the
# reference's latents (fp32, relative error < 1e-5).
source "$(dirname "$0")/lib.sh"
command -v python3 >/dev/null || { echo "python3 not installed"; exit 77; }
python3 "$SRC/tests/cli/replay_reference.py" "$LONGROLL" "$SRC" "$TMP"

# --prompt TEXT with --device cuda end to end (skipped without a GPU): the UMT5 encoder runs on the GPU (bf16,
# encode_umt5_cuda, as the start-up line says), then the CUDA DiT. Its latents must be those of the CPU run of the
# same prompt to bf16 accuracy (test_generate_cuda.sh's bound), and nearer to them than to the CPU run of another
# prompt: the GPU-encoded text takes effect, and it is the right text.
source "$(dirname "$0")/lib.sh"
if "$LONGROLL" version | grep -qE "cuda: no| 0 devices visible"; then echo "no CUDA device"; exit 77; fi
command -v python3 >/dev/null || { echo "python3 not installed"; exit 77; }
D="$SRC/tests/data/text"
args=(generate --seed 5 --metrics-port off --tokenizer "$D/spiece.model"
      --text-encoder "$D/umt5_tiny_hf.safetensors")
a="a red fox in snow" b="a blue circle moves up"
expect 0 "encoded on GPU 0 (bf16)" "$LONGROLL" "${args[@]}" --latent-frames 3 --device cuda \
  --prompt "$a" --save-latents "$TMP/gpu_a.safetensors"
expect 0 "encoded on the CPU" "$LONGROLL" "${args[@]}" --latent-frames 3 --device cpu \
  --prompt "$a" --save-latents "$TMP/cpu_a.safetensors"
expect 0 "encoded on the CPU" "$LONGROLL" "${args[@]}" --latent-frames 3 --device cpu \
  --prompt "$b" --save-latents "$TMP/cpu_b.safetensors"
# Text in --switch-prompt on the GPU too: both prompts of the run are encoded there, in one pass.
expect 0 "2 prompts" "$LONGROLL" "${args[@]}" --latent-frames 6 --device cuda --prompt "$a" --switch-prompt "3:$b" \
  --save-latents "$TMP/gpu_switch.safetensors"

rel() { python3 "$SRC/tests/cli/compare_latents.py" "$1" "$2" 1e9 | sed -n 's/relative error \([^ ]*\).*/\1/p'; }
e_same="$(rel "$TMP/gpu_a.safetensors" "$TMP/cpu_a.safetensors")"
e_other="$(rel "$TMP/gpu_a.safetensors" "$TMP/cpu_b.safetensors")"
echo "[ measured ] gpu '$a' vs cpu '$a': $e_same; vs cpu '$b': $e_other"
lt() { python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) < float(sys.argv[2]) else 1)" "$1" "$2"; }
check "GPU-encoded prompt: latents within 5e-2 of the CPU run ($e_same)" lt "$e_same" 5e-2
check "GPU-encoded prompt: nearer the CPU run of the same prompt than of another ($e_same < $e_other)" \
  lt "$e_same" "$e_other"
finish

# --prompt TEXT through the UMT5 encoder (tests/data/text: a tiny encoder with d_model = the tiny DiT's text_dim 64,
# under Hugging Face and Wan names, and its sentencepiece model), text in --switch-prompt and --prompt-file, inspect
# recognising the encoder, and every bad input exiting 2 with the flag or file named.
source "$(dirname "$0")/lib.sh"
D="$SRC/tests/data/text"
HF="$D/umt5_tiny_hf.safetensors"
WAN="$D/umt5_tiny_wan.safetensors"
TOK="$D/spiece.model"
run() { "$LONGROLL" generate --quiet --latent-frames 3 --tokenizer "$TOK" "$@"; }

expect 0 "UMT5 text encoder, Wan (wan/modules/t5.py) names: vocab 196, d_model 64, 2 layers" "$LONGROLL" inspect "$WAN"
expect 0 '"type":"umt5_encoder","naming":"huggingface"' "$LONGROLL" inspect --json "$HF"

# The same weights under both namings give the same video latents; another prompt gives others.
expect 0 "then freed before the DiT plans its memory" "$LONGROLL" generate --latent-frames 3 --tokenizer "$TOK" \
  --text-encoder "$HF" --prompt "a red fox in snow" --save-latents "$TMP/hf.safetensors"
expect 0 "" run --text-encoder "$WAN" --prompt "a red fox in snow" --save-latents "$TMP/wan.safetensors"
expect 0 "" run --text-encoder "$HF" --prompt "a blue circle moves up" --save-latents "$TMP/other.safetensors"
check "Wan and Hugging Face names: same latents" python3 "$SRC/tests/cli/compare_latents.py" "$TMP/wan.safetensors" \
  "$TMP/hf.safetensors" 1e-6
check "another prompt: other latents" bash -c "! python3 '$SRC/tests/cli/compare_latents.py' \
  '$TMP/other.safetensors' '$TMP/hf.safetensors' 1e-3 >/dev/null"

# Keeping the encoder in host memory for later prompts is refused, naming the field: a run encodes all its prompts
# in one pass before the DiT plans its memory (the plan line says the encoder was freed). false changes nothing.
expect 2 "text.keep_encoder_in_host_memory" run --text-encoder "$HF" --prompt "a red fox in snow" \
  --set text.keep_encoder_in_host_memory=true --save-latents "$TMP/kept.safetensors"
expect 2 "a run encodes all its prompts" run --text-encoder "$HF" --prompt "a red fox in snow" \
  --set text.keep_encoder_in_host_memory=true --save-latents "$TMP/kept.safetensors"
check "no latents after the refusal" test ! -e "$TMP/kept.safetensors"
expect 0 "then freed before the DiT plans its memory" "$LONGROLL" generate --latent-frames 3 --tokenizer "$TOK" \
  --text-encoder "$HF" --prompt "a red fox in snow" --set text.keep_encoder_in_host_memory=false \
  --save-latents "$TMP/freed.safetensors"
check "keep_encoder_in_host_memory=false: the same latents" python3 "$SRC/tests/cli/compare_latents.py" \
  "$TMP/freed.safetensors" "$TMP/hf.safetensors" 0

# Text in a prompt switch and in --prompt-file lines; the config fields name the files.
expect 0 "from frame 3: \"a cat\"" "$LONGROLL" generate --latent-frames 6 --text-encoder "$HF" --tokenizer "$TOK" \
  --prompt "a dog" --switch-prompt "3:a cat" --save-latents "$TMP/switch.safetensors"
printf '"a red fox # not a comment" %s 3\n%s/hf.safetensors %s  # embeddings line\n' "$TMP/a.y4m" "$TMP" "$TMP/b.y4m" \
  >"$TMP/jobs.txt"
expect 2 "hf.safetensors: no tensor 'context'" "$LONGROLL" generate --quiet --latent-frames 3 \
  --set "text.encoder=$HF" --set "text.tokenizer=$TOK" --prompt-file "$TMP/jobs.txt"
printf '"a red fox # not a comment" %s 3\n"a \\"quoted\\" cat" %s\n' "$TMP/a.y4m" "$TMP/b.y4m" >"$TMP/jobs.txt"
expect 0 "" "$LONGROLL" generate --quiet --latent-frames 3 --set "text.encoder=$HF" --set "text.tokenizer=$TOK" \
  --prompt-file "$TMP/jobs.txt"
check "both prompt-file videos written" test -s "$TMP/a.y4m" -a -s "$TMP/b.y4m"

# A prompt longer than text_len (16 for the tiny model) is cut, with a warning saying how much.
expect 0 "tokens are cut to fit model.text_len = 16 (with </s>)" run --text-encoder "$HF" \
  --prompt "$(printf 'red fox %.0s' {1..10})" --save-latents "$TMP/long.safetensors"

# Bad input: exit 2 naming the flag or the file.
expect 2 "--prompt: the prompt is empty" run --text-encoder "$HF" --prompt "" --save-latents "$TMP/x.safetensors"
expect 2 "--prompt: the prompt is empty after whitespace cleaning" run --text-encoder "$HF" --prompt "  	 " \
  --save-latents "$TMP/x.safetensors"
expect 2 "--prompt: the prompt is not valid UTF-8" run --text-encoder "$HF" --prompt "$(printf 'caf\xe9')" \
  --save-latents "$TMP/x.safetensors"
expect 2 "give --prompt TEXT or --prompt-embeds FILE, not both" run --text-encoder "$HF" --prompt "a" \
  --prompt-embeds "$TMP/hf.safetensors" --save-latents "$TMP/x.safetensors"
expect 2 "--prompt: a text prompt needs the UMT5 text encoder" "$LONGROLL" generate --prompt "a fox" \
  --save-latents "$TMP/x.safetensors"
expect 2 "text.encoder and text.tokenizer go together" "$LONGROLL" generate --prompt "a fox" --text-encoder "$HF" \
  --save-latents "$TMP/x.safetensors"
expect 2 "weights_tiny.safetensors: not a UMT5 text encoder: it is a Wan2.1 DiT checkpoint (give it as --weights)" \
  run --text-encoder "$SRC/tests/data/parity/weights_tiny.safetensors" --prompt "a" --save-latents "$TMP/x.safetensors"
expect 2 "not a UMT5 text encoder: it is a Wan2.1 VAE checkpoint (give it as --vae)" \
  run --text-encoder "$SRC/tests/data/vae/weights_tiny_vae.safetensors" --prompt "a" --save-latents "$TMP/x.safetensors"
expect 2 "--tokenizer $HF: not a sentencepiece model" "$LONGROLL" generate --latent-frames 3 --text-encoder "$HF" \
  --tokenizer "$HF" --prompt "a" --save-latents "$TMP/x.safetensors"
expect 2 "the encoder's d_model is 64 but the DiT takes text_dim 32" run --text-encoder "$HF" --prompt "a" \
  --set model.text_dim=32 --save-latents "$TMP/x.safetensors"
check "no output after the failures" test ! -e "$TMP/x.safetensors"
finish

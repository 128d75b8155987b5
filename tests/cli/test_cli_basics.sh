# Subcommands, help, version, usage errors and exit codes.
source "$(dirname "$0")/lib.sh"

expect 0 "Usage: longroll <command>" "$LONGROLL" --help
expect 2 "Usage: longroll <command>" "$LONGROLL"
expect 2 "unknown command 'frobnicate'" "$LONGROLL" frobnicate
expect 0 "longroll 0." "$LONGROLL" version
expect 0 "mp4:" "$LONGROLL" version
for cmd in generate validate-config inspect version; do
  expect 0 "Usage: longroll $cmd" "$LONGROLL" "$cmd" --help
done
expect 0 "--prompt-embeds FILE" "$LONGROLL" generate --help
expect 2 "unknown flag '--frames'" "$LONGROLL" generate --frames 3
expect 2 "--seed given more than once" "$LONGROLL" generate --seed 1 --seed 2 --out "$TMP/x.y4m"
expect 2 "--seed: expected an integer, found 'abc'" "$LONGROLL" generate --seed abc --out "$TMP/x.y4m"
expect 2 "--config needs a value" "$LONGROLL" generate --config
expect 2 "unexpected argument 'extra'" "$LONGROLL" generate extra
expect 2 "expected one FILE" "$LONGROLL" inspect
expect 2 "expected one FILE" "$LONGROLL" validate-config
finish

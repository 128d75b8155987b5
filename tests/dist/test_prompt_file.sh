#!/usr/bin/env bash
# Data parallel: `--prompt-file` jobs spread over the ranks (one data-parallel group per rank here). Every
# video is written exactly once, by one rank, and equals the same job run alone on one rank; bad prompt files
# are refused before any work. Usage: test_prompt_file.sh LONGROLL
set -u
bin=$1
here=$(cd "$(dirname "$0")" && pwd)
command -v mpirun >/dev/null 2>&1 || { echo "mpirun not found: skipping"; exit 77; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fails=0
args=(generate --device cpu --latent-frames 3 --metrics-port off --quiet)

mkdir "$dir/many" "$dir/one"
printf '# three jobs, embedded default prompt\n- %s/many/a.y4m\n- %s/many/b.y4m 42\n\n- %s/many/c.y4m # seed 7+2\n' \
  "$dir" "$dir" "$dir" >"$dir/jobs.txt"
timeout 300 "$here/mpirun.sh" 2 "$bin" "${args[@]}" --seed 7 --prompt-file "$dir/jobs.txt" >"$dir/many.log" 2>&1 \
  || { echo "FAIL: 2-rank prompt-file run failed"; cat "$dir/many.log"; exit 1; }
# The same jobs one at a time on one rank.
"$bin" "${args[@]}" --seed 7 --out "$dir/one/a.y4m" 2>/dev/null
"$bin" "${args[@]}" --seed 42 --out "$dir/one/b.y4m" 2>/dev/null
"$bin" "${args[@]}" --seed 9 --out "$dir/one/c.y4m" 2>/dev/null
for v in a b c; do
  cmp -s "$dir/one/$v.y4m" "$dir/many/$v.y4m" || { echo "FAIL: job $v differs from its 1-rank run"; fails=1; }
done
cmp -s "$dir/many/a.y4m" "$dir/many/b.y4m" && { echo "FAIL: different seeds gave the same video"; fails=1; }
# Written once each, by ranks 0, 1, 0 (job i on group i mod 2), and nothing else left in the directory.
[ "$(grep -c 'wrote' "$dir/many.log")" = 3 ] || { echo "FAIL: expected 3 'wrote' lines"; cat "$dir/many.log"; fails=1; }
grep -q "video 2/3 on rank 1" "$dir/many.log" || { echo "FAIL: job 2 did not run on rank 1"; fails=1; }
[ "$(ls -A "$dir/many" | grep -vc 'config.textproto$')" = 3 ] || { echo "FAIL: stray files"; ls -A "$dir/many"; fails=1; }

# Bad prompt files: exit 2 with file:line, nothing written.
printf -- '- %s/x.y4m\nlonely\n' "$dir" >"$dir/bad1.txt"
printf -- '- %s/x.y4m\n- %s/x.y4m\n' "$dir" "$dir" >"$dir/bad2.txt"
for f in bad1 bad2; do
  timeout 60 "$here/mpirun.sh" 2 "$bin" "${args[@]}" --prompt-file "$dir/$f.txt" >"$dir/$f.log" 2>&1
  rc=$?
  if [ $rc -ne 2 ] || ! grep -q "$f.txt:2" "$dir/$f.log" || [ -e "$dir/x.y4m" ]; then
    echo "FAIL: $f: exit $rc"; cat "$dir/$f.log"; fails=1
  fi
done
"$bin" "${args[@]}" --prompt-file "$dir/jobs.txt" --out "$dir/x.y4m" 2>"$dir/both.log"
[ $? -eq 2 ] && grep -q "drop --out" "$dir/both.log" || { echo "FAIL: --prompt-file with --out"; fails=1; }
[ $fails = 0 ] && echo "ok: 3 prompt-file jobs over 2 ranks equal their 1-rank runs; bad files refused"
exit $fails

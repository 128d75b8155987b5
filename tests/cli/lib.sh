# Sourced by the CLI tests: $1 is the longroll binary, $2 the source tree. Each check prints what it ran
# and what it expected when it fails; the test exits non-zero at the end if any check failed.
set -u
LONGROLL="$1"
SRC="$2"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
failures=0

# expect CODE SUBSTRING CMD...: runs CMD, checks the exit code and that stdout+stderr contain SUBSTRING.
expect() {
  local code="$1" want="$2"
  shift 2
  local out rc
  out="$("$@" 2>&1)"
  rc=$?
  if [ "$rc" -ne "$code" ]; then
    echo "FAIL: expected exit $code, got $rc: $*"; echo "$out" | head -20 | sed 's/^/    /'
    failures=$((failures + 1))
  elif [ -n "$want" ] && ! grep -qF -- "$want" <<<"$out"; then
    echo "FAIL: output lacks '$want': $*"; echo "$out" | head -20 | sed 's/^/    /'
    failures=$((failures + 1))
  else
    echo "ok: $*"
  fi
}

check() {  # check DESCRIPTION CONDITION...
  local what="$1"
  shift
  if "$@"; then echo "ok: $what"; else echo "FAIL: $what"; failures=$((failures + 1)); fi
}

finish() {
  if [ "$failures" -ne 0 ]; then echo "$failures check(s) failed"; exit 1; fi
  echo "all checks passed"
}

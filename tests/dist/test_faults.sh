#!/usr/bin/env bash
# A failing rank ends the whole job promptly: non-zero exit, a message naming the rank and the host, in
# under 30 s (DESIGN.md section 9). Usage: test_faults.sh FAULT_PROBE
set -u
probe=$1
here=$(cd "$(dirname "$0")" && pwd)
command -v mpirun >/dev/null 2>&1 || { echo "mpirun not found: skipping"; exit 77; }
host=$(hostname)
fails=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT

# check NAME EXPECTED_CODE(any-nonzero|N) MESSAGE_REGEX PROBE_ARGS...; NO_HOST=1 skips the host check.
check() {
    local name=$1 want=$2 regex=$3; shift 3
    local need_host=${NO_HOST:-0}
    local t0=$(date +%s.%N)
    timeout 60 "$here/mpirun.sh" 3 "$probe" "$@" >"$log" 2>&1
    local rc=$?
    local secs=$(echo "$(date +%s.%N) - $t0" | bc)
    local ok=1
    if [ "$want" = any-nonzero ]; then [ $rc -ne 0 ] || ok=0; else [ $rc -eq "$want" ] || ok=0; fi
    [ $rc -ne 124 ] || ok=0
    grep -Eq "$regex" "$log" || ok=0
    [ "$need_host" = 1 ] || grep -q "$host" "$log" || ok=0
    [ "$(echo "$secs < 30" | bc)" = 1 ] || ok=0
    if [ $ok = 1 ]; then
        printf 'ok   %-24s exit %d in %.2f s\n' "$name" $rc "$secs"
    else
        printf 'FAIL %-24s exit %d in %.2f s (want %s, /%s/, host %s, < 30 s)\n' "$name" $rc "$secs" "$want" "$regex" "$host"
        sed 's/^/    | /' "$log"
        fails=$((fails + 1))
    fi
}

check throw-on-rank-1 any-nonzero "error on rank 1 \\(host [^)]+\\): fault_probe: injected failure" throw-on-rank 1
check throw-on-rank-0 any-nonzero "error on rank 0 \\(host [^)]+\\): fault_probe: injected failure" throw-on-rank 0
check exit-on-rank-2 any-nonzero "error on rank 2 \\(host [^)]+\\): exited without finishing MPI" exit-on-rank 2
# Without the guard, Open MPI itself ends the job when a rank exits with a non-zero code; its report names
# the process ([[job,1],rank]) and the exit code but not the host, which is why the guard exists.
NO_HOST=1 check raw-exit-on-rank-1 3 "Process name: \\[\\[[0-9]+,[0-9]+\\],1\\]" raw-exit-on-rank 1
check bad-layout 2 "rank 0 \\(host [^)]+\\): impossible parallel layout: parallel.ulysses=5 does not divide the 12 attention heads" bad-layout
if [ $fails = 0 ]; then
    # Every rank prints the same layout message.
    timeout 60 "$here/mpirun.sh" 3 "$probe" bad-layout >"$log" 2>&1
    n=$(grep -c "does not divide the 12 attention heads" "$log")
    [ "$n" = 3 ] || { echo "FAIL bad-layout: $n of 3 ranks printed the message"; fails=1; }
fi
exit $((fails > 0))

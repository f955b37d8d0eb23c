#!/usr/bin/env bash
# Runs the test suite K times in a row (default 10) while a CPU hog keeps every core busy, and
# says which tests failed in which runs: the proof that the suite does not flake on a loaded
# machine.
#
#   scripts/stress-tests.sh [K] [--tests-only]
#
# Each run is `scripts/test.sh` (with `--tests-only`: only its tests and examples). The first run
# builds everything on the loaded machine, so in a fresh clone its time is that of a cold run
# under load; the later ones reuse the build (the checks before the tests then take seconds). The
# hog is `stress-ng --cpu N` where stress-ng is installed, otherwise one busy shell loop per
# core, at normal priority, so the tests compete for every core; it stops when the script ends,
# however it ends. Each run's output is kept under the printed directory.
#
# The end prints one line per run (`run 3: 305 passed, 0 failed in 212 s`), one line per test
# that failed in any run with the runs it failed in, and `stress: K runs, F with failures`. The
# exit status is non-zero if any run failed.
set -uo pipefail
cd "$(dirname "$0")/.."

runs=10
mode=()
for arg in "$@"; do
    case $arg in
    --tests-only) mode=(--tests-only) ;;
    *[!0-9]* | "" | 0) echo "usage: $0 [K] [--tests-only]  (K runs, default 10)" >&2; exit 2 ;;
    *) runs=$arg ;;
    esac
done

cores=$(nproc)
logs=$(mktemp -d -t tether-stress.XXXXXX)
hogs=()
stop_hogs() {
    [ ${#hogs[@]} -gt 0 ] && kill "${hogs[@]}" 2>/dev/null
    wait 2>/dev/null
}
trap stop_hogs EXIT

if command -v stress-ng >/dev/null; then
    stress-ng --cpu "$cores" --quiet >/dev/null 2>&1 &
    hogs+=($!)
    echo "hog: stress-ng --cpu $cores"
else
    for ((i = 0; i < cores; i++)); do
        bash -c 'while :; do :; done' &
        hogs+=($!)
    done
    echo "hog: $cores busy loops"
fi
echo "logs: $logs"

declare -A failures=()
bad_runs=0
summary=()
for ((run = 1; run <= runs; run++)); do
    started=$(date +%s)
    scripts/test.sh "${mode[@]}" >"$logs/run-$run.log" 2>&1
    rc=$?
    took=$(($(date +%s) - started))
    line=$(grep -E '^tests: [0-9]+ passed, [0-9]+ failed$' "$logs/run-$run.log" | tail -n 1)
    line=${line#tests: }
    [ -n "$line" ] || line="no test summary"
    names=$(sed -n 's/^failed \(test\|binary\|step\): //p' "$logs/run-$run.log")
    if [ $rc -ne 0 ]; then
        bad_runs=$((bad_runs + 1))
        while IFS= read -r name; do
            [ -n "$name" ] && failures[$name]+=" $run"
        done <<<"$names"
    fi
    summary+=("run $run: $line in $took s$([ $rc -ne 0 ] && echo " (exit $rc)")")
    echo "${summary[-1]}"
done

echo
for line in "${summary[@]}"; do echo "$line"; done
for name in "${!failures[@]}"; do echo "failed: $name in runs${failures[$name]}"; done | sort
echo "stress: $runs runs, $bad_runs with failures"
[ "$bad_runs" -eq 0 ]

#!/usr/bin/env bash
# Every check and every test, as CI runs them. Installs what the tests need on a fresh machine
# (ZooKeeper, etcd, Redis and protoc from Debian's packages, through scripts/registry-servers.sh);
# the registry tests start their own servers on free loopback ports, and every server still
# running is stopped at the end.
#
#   scripts/test.sh                everything
#   scripts/test.sh --quick        skip the per-feature builds
#   scripts/test.sh --tests-only   only the tests and the examples (what scripts/stress-tests.sh repeats)
#
# A failing step does not stop the run: every step and every test binary runs
# (`cargo test --no-fail-fast`), and the end says what failed: one line per failed step and per
# failed test (`failed test: <binary>::<test>`), then `tests: N passed, M failed`. The exit status
# is non-zero if anything failed.
set -uo pipefail
cd "$(dirname "$0")/.."

quick=false
tests_only=false
case "${1:-}" in
--quick) quick=true ;;
--tests-only) tests_only=true ;;
"") ;;
*) echo "usage: $0 [--quick | --tests-only]" >&2; exit 2 ;;
esac

work=$(mktemp -d -t tether-test.XXXXXX)
log=$work/cargo-test.log
# A run directory of its own, so that stopping "every server" stops only this run's servers.
TETHER_RUN_DIR=$work/servers
mkdir -p "$TETHER_RUN_DIR"
export TETHER_RUN_DIR
cleanup() {
    # Stop any process a step started in the background, and every registry server.
    jobs -p | xargs -r kill 2>/dev/null || true
    scripts/registry-servers.sh stop-all >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

started=$(date +%s)
failed_steps=()
step() { printf '\n==> [%4ds] %s\n' "$(($(date +%s) - started))" "$*"; }
# check NAME COMMAND...: runs a step's command and records the step as failed if it fails.
check() {
    local name=$1
    shift
    "$@" || failed_steps+=("$name")
}

step "installing the registry servers and protoc (only what is missing)"
if ! scripts/registry-servers.sh install; then
    echo "cannot install what the tests need; stopping here"
    exit 1
fi

if ! $tests_only; then
    step "formatting"
    check "formatting" cargo fmt --all --check

    step "clippy, every feature"
    check "clippy" cargo clippy --workspace --all-targets --all-features -- -D warnings

    if ! $quick; then
        step "each feature of tether on its own"
        # (`full` is what clippy just checked, with every feature on.) A warning fails the step:
        # a feature alone must build cleanly.
        for feature in "" bincode msgpack cbor postcard zookeeper etcd redis; do
            echo "-- features: ${feature:-none}"
            out=$work/check.log
            if ! cargo check -q -p tether --no-default-features ${feature:+--features "$feature"} 2>&1 | tee "$out"; then
                failed_steps+=("features: ${feature:-none}")
            elif grep -q '^warning' "$out"; then
                failed_steps+=("features: ${feature:-none} (warnings)")
            fi
        done
    fi
fi

step "unit, integration, UI and doc tests"
cargo test --workspace --all-features --no-fail-fast 2>&1 | tee "$log"
[ "${PIPESTATUS[0]}" -eq 0 ] || failed_steps+=("tests")

step "the examples as a newcomer runs them"
examples() {
    cargo build -q --examples || return 1
    ./target/debug/examples/quickstart || return 1
    # Port 0: the provider takes a free port and says which on its first line.
    ./target/debug/examples/provider --addr 127.0.0.1:0 >"$work/provider.log" 2>&1 &
    local provider=$! addr="" i
    for i in $(seq 1 100); do
        addr=$(sed -n 's/^listening on //p' "$work/provider.log")
        [ -n "$addr" ] && break
        sleep 0.1
    done
    if [ -z "$addr" ]; then
        cat "$work/provider.log"
        echo "the provider did not start"
        kill "$provider" 2>/dev/null
        return 1
    fi
    ./target/debug/examples/consumer --addr "$addr" --calls 5 --every 10 | tee "$work/consumer.log"
    kill "$provider"
    wait "$provider" 2>/dev/null
    [ "$(grep -c '^call [0-9]*: add' "$work/consumer.log")" -eq 5 ] || {
        echo "the consumer did not make 5 calls"
        return 1
    }
}
check "examples" examples

# One closing line for the whole run, summed over every test binary, and the name of each test
# that failed, prefixed with its binary (`Running tests/cluster.rs (…)` → `cluster`).
passed=$(grep -Eo '[0-9]+ passed' "$log" | awk '{s += $1} END {print s + 0}')
failed=$(grep -Eo '[0-9]+ failed' "$log" | awk '{s += $1} END {print s + 0}')
failed_tests=$(awk '
    /^ *Running / {
        binary = $NF
        gsub(/[()]/, "", binary)
        sub(/^.*\//, "", binary)
        sub(/-[0-9a-f]+$/, "", binary)
    }
    /^ *Doc-tests / { binary = "doctests:" $2 }
    /^test .* \.\.\. FAILED$/ { print binary "::" $2 }
' "$log")
# Every binary that failed, as cargo lists them at the end (one that crashed names no test).
failed_binaries=$(awk '
    /^error: [0-9]+ targets? failed:$/ { listing = 1; next }
    listing && /^ +`/ { gsub(/^ +|`/, ""); print; next }
    { listing = 0 }
' "$log")

echo
echo "finished after $(($(date +%s) - started)) s"
for s in "${failed_steps[@]}"; do echo "failed step: $s"; done
[ -n "$failed_tests" ] && printf 'failed test: %s\n' $failed_tests
[ -n "$failed_binaries" ] && while IFS= read -r b; do echo "failed binary: $b"; done <<<"$failed_binaries"
echo "tests: $passed passed, $failed failed"
[ ${#failed_steps[@]} -eq 0 ] && [ "$failed" -eq 0 ]

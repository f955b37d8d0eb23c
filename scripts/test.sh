#!/usr/bin/env bash
# Every check and every test, as CI runs them. Installs what the tests need on a fresh machine
# (ZooKeeper, etcd, Redis and protoc from Debian's packages, through scripts/registry-servers.sh);
# the registry tests start their own servers on free loopback ports, and every server still
# running is stopped at the end.
#
#   scripts/test.sh            everything
#   scripts/test.sh --quick    skip the per-feature builds
set -euo pipefail
cd "$(dirname "$0")/.."

quick=false
[ "${1:-}" = "--quick" ] && quick=true

log=$(mktemp -t tether-test.XXXXXX)
# A run directory of its own, so that stopping "every server" stops only this run's servers.
TETHER_RUN_DIR=$(mktemp -d -t tether-servers.XXXXXX)
export TETHER_RUN_DIR
cleanup() {
    # Stop any process a step started in the background, and every registry server.
    jobs -p | xargs -r kill 2>/dev/null || true
    scripts/registry-servers.sh stop-all >/dev/null 2>&1 || true
    rm -rf "$log" "$TETHER_RUN_DIR"
}
trap cleanup EXIT

started=$(date +%s)
step() { printf '\n==> [%4ds] %s\n' "$(($(date +%s) - started))" "$*"; }

step "installing the registry servers and protoc (only what is missing)"
scripts/registry-servers.sh install

step "formatting"
cargo fmt --all --check

step "clippy, every feature"
cargo clippy --workspace --all-targets --all-features -- -D warnings

if ! $quick; then
    step "each feature of tether on its own"
    for feature in "" bincode msgpack cbor postcard zookeeper etcd redis full; do
        echo "-- features: ${feature:-none}"
        cargo check -q -p tether --no-default-features ${feature:+--features "$feature"}
    done
fi

step "unit, integration, UI and doc tests"
cargo test --workspace --all-features 2>&1 | tee "$log"

step "the examples as a newcomer runs them"
cargo build -q --examples
./target/debug/examples/quickstart
port=$((20000 + RANDOM % 20000))
./target/debug/examples/provider --addr "127.0.0.1:$port" >"$log.provider" 2>&1 &
provider=$!
for _ in $(seq 1 100); do
    grep -q "listening on" "$log.provider" && break
    sleep 0.1
done
grep -q "listening on" "$log.provider" || { cat "$log.provider"; echo "provider did not start"; exit 1; }
./target/debug/examples/consumer --addr "127.0.0.1:$port" --calls 5 --every 10 | tee "$log.consumer"
kill "$provider"
wait "$provider" || true
rm -f "$log.provider"
[ "$(grep -c '^call [0-9]*: add' "$log.consumer")" -eq 5 ] || { echo "consumer did not make 5 calls"; exit 1; }
rm -f "$log.consumer"

# One closing line for the whole run, summed over every test binary.
passed=$(grep -Eo '[0-9]+ passed' "$log" | awk '{s += $1} END {print s + 0}')
failed=$(grep -Eo '[0-9]+ failed' "$log" | awk '{s += $1} END {print s + 0}')
echo
echo "finished after $(($(date +%s) - started)) s"
echo "tests: $passed passed, $failed failed"

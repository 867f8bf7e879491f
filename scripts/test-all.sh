#!/usr/bin/env bash
# Runs every test of the workspace:
#   1. unit, integration and doc tests, and builds every example and benchmark binary (stable,
#      release: the stress tests run with optimisations);
#   2. the loom models of the lock-free pieces (`--cfg loom`, tests named `loom_*`);
#   3. the unsafe cores under miri, when a nightly toolchain with miri is installed.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo test (workspace, release)"
cargo test --workspace --release

echo "== loom models"
RUSTFLAGS="--cfg loom" cargo test --release --target-dir target/loom \
    -p spindle-runtime -p spindle-iobuf -p spindle-rpc --lib loom_ -- --test-threads=1

if cargo +nightly miri --version >/dev/null 2>&1; then
    echo "== miri (unsafe cores: IOBuf blocks and chains, ExecutionQueue, FiberId, sync, SocketId map, write queue)"
    export MIRIFLAGS="-Zmiri-disable-isolation"
    cargo +nightly miri test --target-dir target/miri -p spindle-iobuf --lib
    cargo +nightly miri test --target-dir target/miri -p spindle-runtime --lib
    cargo +nightly miri test --target-dir target/miri -p spindle-rpc --lib -- socket_id write_queue
else
    echo "== miri: no nightly toolchain with miri here, skipped"
fi

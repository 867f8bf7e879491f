#!/usr/bin/env bash
# Runs every test of the workspace: unit, integration, doc tests and examples (stable), then the
# loom models (cfg loom), then the unsafe cores under miri when a nightly toolchain with miri exists.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo test (workspace, release: stress tests run with optimisations)"
cargo test --workspace --release

echo "== loom models"
RUSTFLAGS="--cfg loom" cargo test --release --target-dir target/loom \
    -p spindle-runtime --lib loom_ -- --test-threads=1

if cargo +nightly miri --version >/dev/null 2>&1; then
    echo "== miri (unsafe cores)"
    MIRIFLAGS="-Zmiri-disable-isolation" cargo +nightly miri test --target-dir target/miri \
        -p spindle-iobuf --lib
else
    echo "== miri: no nightly toolchain with miri here, skipped"
fi

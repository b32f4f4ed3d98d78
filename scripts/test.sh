#!/usr/bin/env bash
# Runs Kodiak's whole test suite: formatting, lints, then every test of
# every crate (unit, conformance, REST, CLI and binary tests).
# Usage: scripts/test.sh [extra test-runner arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings

echo "==> tests"
if command -v cargo-nextest >/dev/null 2>&1; then
    cargo nextest run --workspace --no-fail-fast "$@"
else
    echo "(cargo-nextest not found; using cargo test)"
    cargo test --workspace --no-fail-fast "$@"
fi

#!/usr/bin/env bash
# Runs Kodiak's whole test suite: formatting, lints, then every test of
# every crate (unit, conformance, REST, CLI, binary and end-to-end tests
# with real Envoy sidecars). Installs Envoy 1.40 into .tools/ first.
# Usage: scripts/test.sh [extra test-runner arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings

echo "==> Envoy"
ENVOY_BIN="$(scripts/install-envoy.sh | tail -n 1)"
export ENVOY_BIN
echo "$ENVOY_BIN"

echo "==> tests"
if command -v cargo-nextest >/dev/null 2>&1; then
    cargo nextest run --workspace --no-fail-fast "$@"
else
    echo "(cargo-nextest not found; using cargo test)"
    cargo test --workspace --no-fail-fast "$@"
fi

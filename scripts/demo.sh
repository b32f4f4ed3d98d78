#!/usr/bin/env bash
# Runs the Kodiak demo: builds the binaries, starts the control plane on
# the embedded SQLite store, applies examples/quickstart.yaml and shows
# what the control plane holds. The control plane keeps running afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."

DEMO_DIR="${KODIAK_DEMO_DIR:-$PWD/.demo}"
API_PORT="${KODIAK_DEMO_API_PORT:-5681}"
DIAGNOSTICS_PORT="${KODIAK_DEMO_DIAGNOSTICS_PORT:-5680}"
mkdir -p "$DEMO_DIR"

echo "==> building kodiak-cp and kodiakctl"
cargo build --release --quiet -p kodiak-cp -p kodiakctl
BIN="$PWD/target/release"
CTL=("$BIN/kodiakctl" --config-file "$DEMO_DIR/kodiakctl.yaml" --cp-address "http://127.0.0.1:$API_PORT")

if [ -f "$DEMO_DIR/kodiak-cp.pid" ] && kill -0 "$(cat "$DEMO_DIR/kodiak-cp.pid")" 2>/dev/null; then
    echo "==> the demo control plane is already running (pid $(cat "$DEMO_DIR/kodiak-cp.pid"))"
else
    echo "==> starting kodiak-cp (data in $DEMO_DIR/data, log in $DEMO_DIR/kodiak-cp.log)"
    "$BIN/kodiak-cp" run --data-dir "$DEMO_DIR/data" --api-port "$API_PORT" \
        --diagnostics-port "$DIAGNOSTICS_PORT" >"$DEMO_DIR/kodiak-cp.log" 2>&1 &
    echo $! >"$DEMO_DIR/kodiak-cp.pid"
    for _ in $(seq 1 100); do
        curl -fsS "http://127.0.0.1:$DIAGNOSTICS_PORT/ready" >/dev/null 2>&1 && break
        if ! kill -0 "$(cat "$DEMO_DIR/kodiak-cp.pid")" 2>/dev/null; then
            echo "kodiak-cp exited; its log:" >&2
            cat "$DEMO_DIR/kodiak-cp.log" >&2
            exit 1
        fi
        sleep 0.1
    done
fi

echo "==> kodiakctl apply -f examples/quickstart.yaml"
"${CTL[@]}" apply -f examples/quickstart.yaml
echo
echo "==> kodiakctl get meshes"
"${CTL[@]}" get meshes
echo
echo "==> kodiakctl get dataplanes --mesh demo"
"${CTL[@]}" get dataplanes --mesh demo
echo
echo "==> kodiakctl get meshtimeouts --mesh demo"
"${CTL[@]}" get meshtimeouts --mesh demo
echo
echo "==> kodiakctl inspect dataplanes --mesh demo"
"${CTL[@]}" inspect dataplanes --mesh demo
echo
echo "The control plane is still running: REST API on http://127.0.0.1:$API_PORT."
echo "Try: $BIN/kodiakctl get meshtrafficpermissions --mesh demo -o yaml"
echo "Stop it with: kill \$(cat $DEMO_DIR/kodiak-cp.pid)"

#!/usr/bin/env bash
# Runs the Kodiak demo mesh on this machine, on loopback addresses:
#
#   web (127.0.0.2)  --->  backend-1 (127.0.0.3)
#                    \-->  backend-2 (127.0.0.4)
#
# It builds the binaries, installs Envoy 1.40 into .tools/, starts the
# control plane on the embedded SQLite store, starts each service (the
# kodiak-test-service echo server) with its own kodiak-dp and Envoy, sends
# requests from web through the mesh, prints which instance answered, and
# leaves everything running.
#
# Usage: scripts/demo.sh         start (or restart) the demo
#        scripts/demo.sh stop    stop everything the demo started
set -euo pipefail
cd "$(dirname "$0")/.."

DEMO_DIR="${KODIAK_DEMO_DIR:-$PWD/.demo}"
API_PORT="${KODIAK_DEMO_API_PORT:-5681}"
HTTPS_API_PORT="${KODIAK_DEMO_HTTPS_API_PORT:-5682}"
DIAGNOSTICS_PORT="${KODIAK_DEMO_DIAGNOSTICS_PORT:-5680}"
DP_SERVER_PORT="${KODIAK_DEMO_DP_SERVER_PORT:-5678}"
BIN="$PWD/target/release"

stop_all() {
    [ -d "$DEMO_DIR/pids" ] || return 0
    local pids=()
    # Sidecars first (they tell the control plane and drain), then the rest.
    for pid_file in "$DEMO_DIR"/pids/dp-*.pid "$DEMO_DIR"/pids/*.pid; do
        [ -f "$pid_file" ] || continue
        pids+=("$(cat "$pid_file")")
        kill "${pids[-1]}" 2>/dev/null || true
        rm -f "$pid_file"
    done
    [ ${#pids[@]} -gt 0 ] || return 0
    echo "==> waiting for the demo's processes to stop (sidecars drain for up to 5 s)"
    for _ in $(seq 1 150); do
        local alive=0
        for pid in "${pids[@]}"; do
            # A stopped process may linger as a zombie until its parent reaps it.
            ps -o stat= -p "$pid" 2>/dev/null | grep -qv Z && alive=1
        done
        [ $alive -eq 0 ] && return 0
        sleep 0.1
    done
    echo "some demo processes are still running: ${pids[*]}" >&2
}

if [ "${1:-}" = "stop" ]; then
    stop_all
    echo "The demo is stopped (its data stays in $DEMO_DIR; delete the folder to start over)."
    exit 0
fi

echo "==> building kodiak-cp, kodiakctl, kodiak-dp and kodiak-test-service (release)"
cargo build --release --quiet -p kodiak-cp -p kodiakctl -p kodiak-dp -p kodiak-test-service
echo "==> installing Envoy 1.40 (scripts/install-envoy.sh)"
ENVOY_BIN="$(scripts/install-envoy.sh | tail -n 1)"
export ENVOY_BIN

stop_all
mkdir -p "$DEMO_DIR/pids" "$DEMO_DIR/logs"
CTL=("$BIN/kodiakctl" --config-file "$DEMO_DIR/kodiakctl.yaml" --cp-address "http://127.0.0.1:$API_PORT")

# start NAME COMMAND...: runs a program in the background with its log and pid in .demo/.
start() {
    local name=$1
    shift
    "$@" >"$DEMO_DIR/logs/$name.log" 2>&1 &
    echo $! >"$DEMO_DIR/pids/$name.pid"
}

# wait_for WHAT COMMAND...: retries COMMAND for up to 20 s.
wait_for() {
    local what=$1
    shift
    for _ in $(seq 1 200); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "timed out waiting for $what; logs are in $DEMO_DIR/logs" >&2
    exit 1
}

echo "==> starting kodiak-cp (REST API :$API_PORT and HTTPS :$HTTPS_API_PORT, dp-server over TLS :$DP_SERVER_PORT, data in $DEMO_DIR/data)"
start kodiak-cp "$BIN/kodiak-cp" run --data-dir "$DEMO_DIR/data" --api-port "$API_PORT" \
    --api-https-port "$HTTPS_API_PORT" --diagnostics-port "$DIAGNOSTICS_PORT" --dp-server-port "$DP_SERVER_PORT"
wait_for "the control plane" curl -fsS "http://127.0.0.1:$DIAGNOSTICS_PORT/ready"
# The control plane's TLS certificate, generated on its first start: sidecars trust it.
CP_CERT="$DEMO_DIR/data/kodiak-cp.crt"

# service NAME ADDRESS TEMPLATE: the application and its sidecar.
service() {
    local name=$1 address=$2 template=$3
    echo "==> starting $name on $address: kodiak-test-service, then kodiak-dp with Envoy"
    start "$name" "$BIN/kodiak-test-service" --name "$name" --http "$address:18080" --tcp "$address:19000"
    # The control plane admits a sidecar only with a dataplane token for its Dataplane.
    "${CTL[@]}" generate dataplane-token --mesh default --name "$name" --valid-for 24h >"$DEMO_DIR/$name.token"
    start "dp-$name" "$BIN/kodiak-dp" run --cp-address "https://127.0.0.1:$DP_SERVER_PORT" --ca-cert-file "$CP_CERT" \
        --dataplane-file "$template" -v "name=$name" -v "address=$address" --concurrency 1 \
        --dataplane-token-file "$DEMO_DIR/$name.token"
}
service backend-1 127.0.0.3 examples/demo/backend.yaml
service backend-2 127.0.0.4 examples/demo/backend.yaml
service web 127.0.0.2 examples/demo/web.yaml

wait_for "web to reach backend through the mesh" curl -fsS http://127.0.0.2:30001/
wait_for "both backend instances" bash -c '
    seen=""
    for _ in $(seq 1 20); do
        seen="$seen $(curl -fsS -o /dev/null -D - http://127.0.0.2:30001/ | tr -d "\r" | sed -n "s/^x-kodiak-instance: //p")"
    done
    [[ $seen == *backend-1* && $seen == *backend-2* ]]'

echo
echo "==> 10 HTTP requests from web to backend (web's sidecar: http://127.0.0.2:30001)"
for i in $(seq 1 10); do
    curl -sS -o /dev/null -D - "http://127.0.0.2:30001/request/$i" | tr -d '\r' |
        awk -v i="$i" '/^HTTP/ {status=$2} /^x-kodiak-instance:/ {instance=$2} END {printf "  request %2d -> %s (HTTP %s)\n", i, instance, status}'
done

echo
echo "==> 4 TCP connections from web to backend-tcp (web's sidecar: 127.0.0.2:30002)"
for i in $(seq 1 4); do
    exec 3<>/dev/tcp/127.0.0.2/30002
    read -r -t 5 greeting <&3
    echo "hello over TCP" >&3
    read -r -t 5 echoed <&3
    exec 3>&-
    echo "  connection $i -> $greeting (echoed: \"$echoed\")"
done

echo
echo "==> turning on mTLS (examples/demo/mesh-mtls.yaml): a built-in CA, STRICT inbounds"
"${CTL[@]}" apply -f examples/demo/mesh-mtls.yaml
wait_for "every sidecar to serve STRICT mTLS" bash -c '[[ $("$0" "${@}" inspect dataplanes | grep -c " STRICT ") == 3 ]]' "${CTL[@]}"
status=$(curl -sS -o /dev/null -w '%{http_code}' http://127.0.0.2:30001/)
echo "  web -> backend over mTLS: HTTP $status"

echo
echo "==> denying web -> backend (examples/demo/no-web-to-backend.yaml)"
"${CTL[@]}" apply -f examples/demo/no-web-to-backend.yaml
wait_for "the permission to take effect" bash -c '[[ $(curl -sS -o /dev/null -w "%{http_code}" http://127.0.0.2:30001/) == 403 ]]'
curl -sS -o /dev/null -D - http://127.0.0.2:30001/ | tr -d '\r' | grep -i -e '^HTTP' -e '^x-kodiak-denied-by' | sed 's/^/  /'
"${CTL[@]}" delete meshtrafficpermission no-web-to-backend --mesh default >/dev/null
wait_for "web to be allowed again" curl -fsS http://127.0.0.2:30001/
echo "  deleted it: web -> backend is allowed again by allow-all-default"

echo
echo "==> a 1 s request timeout from web to backend (examples/demo/backend-timeout.yaml)"
"${CTL[@]}" apply -f examples/demo/backend-timeout.yaml
wait_for "the timeout to take effect" bash -c '[[ $(curl -sS -o /dev/null -w "%{http_code}" http://127.0.0.2:30001/delay/1500) == 504 ]]'
curl -sS -o /dev/null -w '  GET /delay/1500 (backend answers after 1.5 s): HTTP %{http_code} after %{time_total} s\n' http://127.0.0.2:30001/delay/1500
curl -sS -o /dev/null -w '  GET /delay/200: HTTP %{http_code}\n' http://127.0.0.2:30001/delay/200

echo
echo "==> which policies shape web's sidecar: kodiakctl inspect dataplane web --type rules"
"${CTL[@]}" inspect dataplane web --type rules
echo
echo "==> which sidecars the timeout shapes: kodiakctl inspect meshtimeout web-to-backend-timeout"
"${CTL[@]}" inspect meshtimeout web-to-backend-timeout

echo
echo "==> kodiakctl inspect dataplanes"
"${CTL[@]}" inspect dataplanes
echo
echo "The demo is running. Logs: $DEMO_DIR/logs. Try:"
echo "  curl -i http://127.0.0.2:30001/          # web -> backend through the mesh"
echo "  $BIN/kodiakctl inspect dataplanes"
echo "  $BIN/kodiakctl inspect dataplane web --type config | less   # the Envoy configuration web's sidecar was sent"
echo "  curl --cacert $CP_CERT https://127.0.0.1:$HTTPS_API_PORT/meshes   # the API over TLS"
echo "  kill \$(cat $DEMO_DIR/pids/dp-backend-2.pid)   # backend-2 leaves; web stops choosing it at once"
echo "Stop it with: scripts/demo.sh stop"

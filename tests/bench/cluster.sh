#!/bin/bash
# tests/bench/cluster.sh -- channels across servers: two httpd (event MPM,
# mod_websocket + mod_ws_chat, WebSocketBroker) and one redis-server on
# 127.0.0.1, receivers spread over both servers, one publisher on the first:
# deliveries/s, fan-out latency, order violations, messages lost.  Then the
# same shape with the peer people would use: two Node.js `ws` servers
# fanning out over Redis pub/sub with `ioredis` (node/cluster.js).
#
#   tests/bench/cluster.sh [builddir]
#
# Environment (defaults in brackets): CLUSTER_RECEIVERS [2000] (half on each
# server), CLUSTER_MESSAGES [200], CLUSTER_WINDOW [1] (messages in flight),
# CLUSTER_SERVER_LIMIT [4], CLUSTER_TPC [25], HTTPD [/usr/sbin/apache2],
# HTTPD_MODULES [/usr/lib/apache2/modules].  Bounded: every wait has a
# limit; every process started here is stopped on exit, by its own pid.
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$(cd "$HERE/../.." && pwd)
BUILD=$(cd "${1:-$SRC}" && pwd)
HTTPD=${HTTPD:-/usr/sbin/apache2}
MODULES=${HTTPD_MODULES:-/usr/lib/apache2/modules}
RECEIVERS=${CLUSTER_RECEIVERS:-2000}
MESSAGES=${CLUSTER_MESSAGES:-200}
WINDOW=${CLUSTER_WINDOW:-1}
SL=${CLUSTER_SERVER_LIMIT:-4}
TPC=${CLUSTER_TPC:-25}
MOD_WS=$BUILD/.libs/mod_websocket.so
MOD_CHAT=$BUILD/handlers/.libs/mod_ws_chat.so
WSLOAD=$BUILD/tests/bench/wsload

fail() { echo "cluster.sh: $*" >&2; exit 1; }
for f in "$MOD_WS" "$MOD_CHAT"; do [ -f "$f" ] || fail "$f is missing: run make"; done
command -v redis-server >/dev/null || fail "redis-server is not installed"
${CC:-gcc} -O2 -Wall -Wextra -o "$WSLOAD" "$HERE/wsload.c" -lz -lssl -lcrypto -pthread \
    || fail "wsload did not build (needs zlib1g-dev, libssl-dev)"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

ROOT=$(mktemp -d /tmp/mws-cluster-XXXXXX)
chmod 755 "$ROOT"
REDIS_PID=""
NODE_PIDS=()
cleanup() {
    local n
    for n in "${NODE_PIDS[@]}"; do kill "$n" 2>/dev/null; done
    for n in a b; do
        if [ -f "$ROOT/$n/run/httpd.pid" ]; then
            "$HTTPD" -f "$ROOT/$n/httpd.conf" -k stop 2>/dev/null
        fi
    done
    sleep 1
    [ -n "$REDIS_PID" ] && kill "$REDIS_PID" 2>/dev/null
    rm -rf "$ROOT"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_port() {   # wait_port PORT SECONDS
    local i
    for i in $(seq 1 $(( $2 * 10 ))); do
        (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

RPORT=$(free_port)
redis-server --port "$RPORT" --bind 127.0.0.1 --save "" --appendonly no \
    --dir "$ROOT" > "$ROOT/redis.log" 2>&1 &
REDIS_PID=$!
wait_port "$RPORT" 10 || fail "redis-server did not listen"

declare -A PORT
for n in a b; do
    PORT[$n]=$(free_port)
    mkdir -p "$ROOT/$n/run" "$ROOT/$n/logs"
    cat > "$ROOT/$n/httpd.conf" <<EOF
ServerRoot "$ROOT/$n"
DefaultRuntimeDir "$ROOT/$n/run"
PidFile "$ROOT/$n/run/httpd.pid"
ServerName localhost
User www-data
Group www-data
Listen 127.0.0.1:${PORT[$n]}
Timeout 120
LoadModule mpm_event_module $MODULES/mod_mpm_event.so
LoadModule authz_core_module $MODULES/mod_authz_core.so
ErrorLog "$ROOT/$n/logs/error_log"
LogLevel warn
StartServers $SL
ServerLimit $SL
ThreadLimit $TPC
ThreadsPerChild $TPC
MinSpareThreads 25
MaxSpareThreads $(( SL * TPC ))
MaxRequestWorkers $(( SL * TPC ))
AsyncRequestWorkerFactor 200
ListenBacklog 4096
LoadModule websocket_module $MOD_WS
WebSocketBroker redis://127.0.0.1:$RPORT
WebSocketBrokerNamespace bench
<Location /chat>
    SetHandler websocket
    WebSocketHandler $MOD_CHAT
    WebSocketChannelScope chat
    Require all granted
</Location>
EOF
    chmod -R a+rX "$ROOT/$n"
    chown www-data "$ROOT/$n/logs"
    "$HTTPD" -f "$ROOT/$n/httpd.conf" -k start || fail "httpd $n did not start"
    wait_port "${PORT[$n]}" 20 || fail "httpd $n did not listen"
done
sleep 1

measure() {   # measure TAG PORT1 PORT2
    local line lost
    line=$(timeout 300 "$WSLOAD" broadcast -q -p "$2" --port2 "$3" \
        -P "/chat?room=bench" -r "$RECEIVERS" -m "$MESSAGES" -w "$WINDOW" \
        --conn-rate 1000 --inflight 200 --msg-timeout 5 --settle 2 \
        --tag "$1 servers=2 window=$WINDOW")
    echo "$line"
    lost=$(echo "$line" | sed -n 's/.*expected=\([0-9]*\) delivered=\([0-9]*\).*/\1 \2/p')
    [ -n "$lost" ] && echo "# $1: messages lost: $(( ${lost% *} - ${lost#* } ))"
}

measure peer=mws-cluster "${PORT[a]}" "${PORT[b]}"
for n in a b; do
    echo "# error log $n: $(grep -c '\[error\]\|\[crit\]' "$ROOT/$n/logs/error_log") errors," \
         "$(grep -c '\[warn\]' "$ROOT/$n/logs/error_log") warnings"
    "$HTTPD" -f "$ROOT/$n/httpd.conf" -k stop 2>/dev/null
done
sleep 2

if [ -f "$HERE/node/node_modules/ioredis/package.json" ]; then
    for n in a b; do
        PORT[$n]=$(free_port)
        node "$HERE/node/cluster.js" "${PORT[$n]}" "$RPORT" > "$ROOT/node-$n.log" 2>&1 &
        NODE_PIDS+=($!)
        wait_port "${PORT[$n]}" 20 || fail "node cluster.js did not listen"
    done
    sleep 1
    measure peer=node-cluster "${PORT[a]}" "${PORT[b]}"
else
    echo "# node peer skipped: (cd tests/bench/node && npm install)"
fi

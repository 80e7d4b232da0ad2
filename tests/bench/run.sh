#!/bin/bash
# tests/bench/run.sh -- the `make bench` entry: mod_websocket against its
# peers, in one run, interleaved.
#
#   tests/bench/run.sh [builddir]        (default: the repository root)
#
# Peers (all on 127.0.0.1, each server pinned to CPU $BENCH_CPU_SERVER, the
# load generator to CPU $BENCH_CPU_LOAD):
#   mws    httpd (event MPM) + mod_websocket: /echo (mod_ws_echo) and
#          /chat (mod_ws_chat, ?room=bench)
#   node   Node.js `ws`: node/echo.js, and node/fanout.js for broadcast
#   proxy  httpd (event MPM) + mod_proxy_wstunnel: ProxyPass /echo
#          ws://127.0.0.1:<node echo port>/ (the Node server above)
#
# Standard set: echo 64 B with 1, 10 and 100 connections at depth 1 and 100
# at pipeline depth 10, echo 16 KiB with 10 connections, repeated $BENCH_REPEAT times
# with the peers interleaved (medians reported); hold $BENCH_HOLD idle
# connections (plus 10,000 and 15,000 with BENCH_FULL=1); broadcast to 1,000
# receivers
# (mws chat vs node fanout.js); user-space instructions per echoed 64-byte
# message from callgrind (httpd -X, and node).
#
# Fan-out at capacity (fanoutcap, fanouttls, fanout10k): the offered publish
# rate is stepped up until deliveries fall behind, a message is lost or the
# fan-out p99 passes BENCH_CAP_P99_MS; the highest rate each peer sustained
# is its capacity.  fanoutcap: 1,000 receivers in the clear; fanouttls: wss://
# to $BENCH_TLS_RECEIVERS receivers, httpd's TLS virtual host (mod_ssl) vs
# node/fanout.js over `https` with the same self-signed EC certificate (made
# here, in the temp dir); fanout10k: $BENCH_10K_RECEIVERS receivers in the
# clear.  fanouttls and fanout10k run $BENCH_REPEAT interleaved rounds, and
# say whether the server or the load generator (wsload at 100% of the CPUs
# it may use) ended each peer's stepping (limit=server|wsload|rates).
#
# Environment (defaults in brackets):
#   BENCH_FULL=1             also hold 10,000 and 15,000 connections
#   BENCH_SETS               which parts run ["echo hold overcap fanoutcap
#                            fanouttls fanout10k deflate broadcast instr"]
#   BENCH_DEFLATE_IDLE [2000] deflate: idle connections per compression mode
#   BENCH_CAP_RATES          fanoutcap: offered publishes/s, stepped up
#                            ["100 200 400 800 1600 3200"]
#   BENCH_CAP_P99_MS [100]   fanoutcap/tls/10k: a rate whose fan-out p99 is
#                            above this is not sustained
#   BENCH_TLS_RECEIVERS [1000]  fanouttls: wss:// receivers
#   BENCH_TLS_RATES          fanouttls: offered publishes/s, stepped up
#                            ["25 50 100 200 400 800 1600 3200"]
#   BENCH_10K_RECEIVERS [10000] fanout10k: receivers
#   BENCH_10K_RATES          fanout10k: offered publishes/s, stepped up
#                            ["2 4 8 16 32 64 128 256"]
#   BENCH_10K_CONN_RATE [2000]  fanout10k: new connections per second
#   BENCH_10K_P99_MS [1000]  fanout10k's p99 bound: ten times the receivers
#                            of fanoutcap, ten times its bound (one message
#                            reaching 10,000 parked connections on one CPU
#                            takes ~100-200 ms on this machine by itself)
#   BENCH_WSLOAD_THREADS     wsload --threads for the fan-out sets [the
#                            number of CPUs in BENCH_CPU_LOAD]: threads on
#                            one CPU add nothing
#   BENCH_CAP [1000]         overcap: WebSocketMaxConnections of
#                            /echo-capped; 1.5 x as many clients try
#   BENCH_REPEAT [3]         repetitions of the timed runs
#   BENCH_DURATION [5]       measured seconds per echo run (after 1 s warm-up)
#   BENCH_HOLD [1000]        idle connections in the hold test
#   BENCH_HOLD_SECS [10]     how long they are held
#   BENCH_RECEIVERS [1000]   broadcast receivers
#   BENCH_MESSAGES [200]     broadcast messages (closed loop)
#   BENCH_BC_WINDOW [1]      broadcast: messages not yet fully fanned out at
#                            most (1: one at a time)
#   BENCH_SERVER_LIMIT [4]   httpd ServerLimit (= StartServers), both httpds
#   BENCH_TPC [25]           ThreadsPerChild of the mod_websocket httpd: the
#                            parked driver needs no thread per idle
#                            WebSocket (a build whose event-MPM driver
#                            blocks needs ~300 for the 1,000 tests)
#   BENCH_PROXY_TPC [300]    ThreadsPerChild of the mod_proxy_wstunnel httpd,
#                            which holds a thread per tunnel on 2.4.x
#   BENCH_ARWF [200]         AsyncRequestWorkerFactor, both httpds: each
#                            child takes at most about ThreadsPerChild +
#                            idle threads x this many connections; 200
#                            gives 4 x (25 + 25 x 200) = 20,100
#   BENCH_CALLGRIND [1]      0 skips the instruction counts
#   BENCH_CG_NODE [1]        0 skips callgrind on node (slow: ~1 min)
#   BENCH_CPU_SERVER [0], BENCH_CPU_LOAD [1]
#   BENCH_OUT                results file [tests/bench/results/<date>.txt,
#                            or <date>-<HHMM>.txt if that exists]
#   BENCH_KEEP=1             keep the temporary server root
#   HTTPD [/usr/sbin/apache2], HTTPD_MODULES [/usr/lib/apache2/modules]
#
# Servers get their own config in a world-readable temp dir (children run
# as www-data).  Every wait is bounded; every server started here is
# stopped on exit, by its own pid.
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$(cd "$HERE/../.." && pwd)
BUILD=$(cd "${1:-${MWS_BUILD_DIR:-$SRC}}" && pwd)
HTTPD=${HTTPD:-/usr/sbin/apache2}
MODULES=${HTTPD_MODULES:-/usr/lib/apache2/modules}

FULL=${BENCH_FULL:-0}
REPEAT=${BENCH_REPEAT:-3}
DURATION=${BENCH_DURATION:-5}
HOLD_N=${BENCH_HOLD:-1000}
HOLD_SECS=${BENCH_HOLD_SECS:-10}
RECEIVERS=${BENCH_RECEIVERS:-1000}
MESSAGES=${BENCH_MESSAGES:-200}
SERVER_LIMIT=${BENCH_SERVER_LIMIT:-4}
TPC=${BENCH_TPC:-25}
PROXY_TPC=${BENCH_PROXY_TPC:-300}
ARWF=${BENCH_ARWF:-200}
DO_CG=${BENCH_CALLGRIND:-1}
SETS=" ${BENCH_SETS:-echo hold overcap fanoutcap fanouttls fanout10k deflate broadcast instr} "
CAP=${BENCH_CAP:-1000}
want() { case $SETS in *" $1 "*) return 0 ;; esac; return 1; }
DO_CG_NODE=${BENCH_CG_NODE:-1}
CPU_SERVER=${BENCH_CPU_SERVER:-0}
CPU_LOAD=${BENCH_CPU_LOAD:-1}
DATE=$(date +%Y-%m-%d)
OUT=${BENCH_OUT:-$HERE/results/$DATE.txt}
if [ -z "${BENCH_OUT:-}" ] && [ -e "$OUT" ]; then
    # never overwrite a day's earlier results: they may be committed
    OUT=$HERE/results/$DATE-$(date -u +%H%M).txt
fi

MOD_WS=$BUILD/.libs/mod_websocket.so
MOD_ECHO=$BUILD/handlers/.libs/mod_ws_echo.so
MOD_CHAT=$BUILD/handlers/.libs/mod_ws_chat.so
WSLOAD=$BUILD/tests/bench/wsload

log() { echo "bench: $*" >&2; }
fail() { echo "bench: $*" >&2; exit 1; }

for f in "$MOD_WS" "$MOD_ECHO"; do
    [ -f "$f" ] || fail "$f is missing: run make first"
done
HAVE_CHAT=0
[ -f "$MOD_CHAT" ] && HAVE_CHAT=1
HAVE_CAP=0   # a build with WebSocketMaxConnections (503 past the cap)
grep -qa WebSocketMaxConnections "$MOD_WS" && HAVE_CAP=1
command -v node >/dev/null || fail "node is not installed (apt-get install nodejs npm)"
command -v taskset >/dev/null || fail "taskset is missing (util-linux)"
[ -x "$HTTPD" ] || fail "$HTTPD is missing"
NCPU=$(nproc)
if [ "$NCPU" -lt 2 ]; then
    log "only $NCPU CPU: server and load share it (no pinning)"
    PIN_SERVER=""
    PIN_LOAD=""
else
    PIN_SERVER="taskset -c $CPU_SERVER"
    PIN_LOAD="taskset -c $CPU_LOAD"
fi

# ---- build the load generator and the node peers --------------------------
mkdir -p "$BUILD/tests/bench"
${CC:-gcc} -O2 -Wall -Wextra -o "$WSLOAD" "$HERE/wsload.c" -lz -lssl -lcrypto -pthread \
    || fail "wsload did not build (needs zlib1g-dev, libssl-dev)"
if [ ! -f "$HERE/node/node_modules/ws/package.json" ]; then
    log "npm install (ws) in $HERE/node"
    (cd "$HERE/node" && timeout 300 npm install --no-audit --no-fund --loglevel=error) \
        || fail "npm install failed in $HERE/node"
fi
WS_VERSION=$(node -e "console.log(require('$HERE/node/node_modules/ws/package.json').version)")

# every file descriptor the machine allows, for us and for the servers
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# ---- temp server root ------------------------------------------------------
ROOT=$(mktemp -d /tmp/mws-bench-XXXXXX)
chmod 755 "$ROOT"
mkdir -p "$ROOT/mws/logs" "$ROOT/mws/run" "$ROOT/proxy/logs" "$ROOT/proxy/run" \
         "$ROOT/cg/logs" "$ROOT/cg/run" "$ROOT/cg/out" "$ROOT/node"
chmod -R 755 "$ROOT"
chmod 1777 "$ROOT/cg/out"
RAW=$ROOT/raw.txt
: > "$RAW"

PIDS_TO_STOP=()
HTTPD_CONFS=()
cleanup() {
    local conf pid
    for conf in "${HTTPD_CONFS[@]}"; do
        stop_httpd "$conf"
    done
    for pid in "${PIDS_TO_STOP[@]}"; do
        kill "$pid" 2>/dev/null
    done
    sleep 0.3
    for pid in "${PIDS_TO_STOP[@]}"; do
        kill -9 "$pid" 2>/dev/null
    done
    if [ "${BENCH_KEEP:-0}" = 1 ]; then
        log "server root kept: $ROOT"
    else
        rm -rf "$ROOT"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# a pid we have waited for is not ours any more: never signal it again
forget_pid() {
    local keep=() p
    for p in "${PIDS_TO_STOP[@]}"; do
        [ "$p" = "$1" ] || keep+=("$p")
    done
    PIDS_TO_STOP=("${keep[@]}")
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# wait_port PORT SECONDS
wait_port() {
    local i n=$(( $2 * 10 ))
    for i in $(seq 1 "$n"); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

MWS_PORT=$(free_port)
NODE_PORT=$(free_port)
FAN_PORT=$(free_port)
PROXY_PORT=$(free_port)
CG_PORT=$(free_port)
MWS_TLS_PORT=$(free_port)
FAN_TLS_PORT=$(free_port)

# ---- fanouttls: one throw-away certificate for both peers ---------------------
# EC P-256: a handshake costs the server far less than with RSA, for both
# peers alike; made in the temp dir, removed with it, never committed
WANT_TLS=0
want fanouttls && WANT_TLS=1
if [ "$WANT_TLS" = 1 ]; then
    [ -f "$MODULES/mod_ssl.so" ] || fail "$MODULES/mod_ssl.so is missing (fanouttls)"
    mkdir -p "$ROOT/tls"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$ROOT/tls/key.pem" -out "$ROOT/tls/cert.pem" -days 2 \
        -subj /CN=localhost -addext basicConstraints=critical,CA:FALSE \
        -addext subjectAltName=IP:127.0.0.1,DNS:localhost \
        >/dev/null 2>"$ROOT/tls/openssl.err" \
        || { cat "$ROOT/tls/openssl.err" >&2; fail "openssl req failed"; }
    chmod 600 "$ROOT/tls/key.pem"
fi

# ---- httpd configs -----------------------------------------------------------
mpm_conf() {   # mpm_conf SERVERLIMIT THREADSPERCHILD
    local sl=$1 tpc=$2
    cat <<EOF
# all children started and kept: StartServers = ServerLimit and spare
# threads wide enough that none is stopped between runs
StartServers $sl
ServerLimit $sl
ThreadLimit $tpc
ThreadsPerChild $tpc
MinSpareThreads 25
MaxSpareThreads $(( sl * tpc ))
MaxRequestWorkers $(( sl * tpc ))
MaxConnectionsPerChild 0
# connections per child are capped near ThreadsPerChild + idle workers x
# this factor (event.c); the default 2 stalls parked WebSockets at ~73 per
# child
AsyncRequestWorkerFactor $ARWF
ListenBacklog 4096
EOF
}

common_conf() {   # common_conf NAME PORT
    local name=$1 port=$2
    cat <<EOF
# generated by tests/bench/run.sh
ServerRoot "$ROOT/$name"
DefaultRuntimeDir "$ROOT/$name/run"
PidFile "$ROOT/$name/run/httpd.pid"
ServerName localhost
User www-data
Group www-data
Listen 127.0.0.1:$port
Timeout 120
KeepAlive On
KeepAliveTimeout 5
LoadModule mpm_event_module $MODULES/mod_mpm_event.so
LoadModule authz_core_module $MODULES/mod_authz_core.so
ErrorLog "$ROOT/$name/logs/error_log"
LogLevel warn
# no access log: the Node peer writes none either
<Directory />
    AllowOverride None
    Require all denied
</Directory>
EOF
}

write_mws_conf() {
    {
        common_conf mws "$MWS_PORT"
        mpm_conf "$SERVER_LIMIT" "$TPC"
        cat <<EOF
LoadModule websocket_module $MOD_WS
<Location /echo>
    SetHandler websocket
    WebSocketHandler $MOD_ECHO
    Require all granted
</Location>
EOF
        if [ "$HAVE_CAP" = 1 ]; then
            cat <<EOF
<Location /echo-capped>
    SetHandler websocket
    WebSocketHandler $MOD_ECHO
    WebSocketMaxConnections $CAP
    Require all granted
</Location>
EOF
        fi
        if [ "$WANT_TLS" = 1 ]; then
            # the same /chat over wss:// (the <Location>s below apply to
            # this virtual host too); httpd reads the key as root
            cat <<EOF
LoadModule ssl_module $MODULES/mod_ssl.so
LoadModule socache_shmcb_module $MODULES/mod_socache_shmcb.so
Listen 127.0.0.1:$MWS_TLS_PORT
SSLSessionCache "shmcb:$ROOT/mws/run/ssl_scache(512000)"
<VirtualHost 127.0.0.1:$MWS_TLS_PORT>
    SSLEngine on
    SSLCertificateFile "$ROOT/tls/cert.pem"
    SSLCertificateKeyFile "$ROOT/tls/key.pem"
</VirtualHost>
EOF
        fi
        if [ "$HAVE_CHAT" = 1 ]; then
            # fanout10k needs 10,001 WebSockets on /chat: with the MPM
            # settings above WebSocketMaxConnections auto admits
            # (ThreadsPerChild 25 - 5 kept for HTTP) x (1 + ARWF 200) x 4
            # children = 16,080, so /chat keeps the default; run.sh checks
            # the MWS00120 figure against the receivers before fanout10k
            # presence off: no join/leave notices (fanout.js sends none);
            # with them, opening N receivers costs N x N / 2 deliveries
            # (50 million for fanout10k) and closing them as many again
            cat <<EOF
<Location /chat>
    SetHandler websocket
    WebSocketHandler $MOD_CHAT
    WebSocketHandlerOption presence off
    Require all granted
</Location>
<Location /chatz>
    SetHandler websocket
    WebSocketHandler $MOD_CHAT
    WebSocketCompression on
    Require all granted
</Location>
EOF
        fi
    } > "$ROOT/mws/httpd.conf"
    chmod 644 "$ROOT/mws/httpd.conf"
}

write_proxy_conf() {
    {
        common_conf proxy "$PROXY_PORT"
        mpm_conf "$SERVER_LIMIT" "$PROXY_TPC"
        cat <<EOF
LoadModule proxy_module $MODULES/mod_proxy.so
LoadModule proxy_wstunnel_module $MODULES/mod_proxy_wstunnel.so
# mod_proxy_wstunnel itself does the tunnel (mod_proxy_http is not loaded)
ProxyWebsocketFallbackToProxyHttp Off
ProxyPass /echo ws://127.0.0.1:$NODE_PORT/
<Location /echo>
    Require all granted
</Location>
EOF
    } > "$ROOT/proxy/httpd.conf"
    chmod 644 "$ROOT/proxy/httpd.conf"
}

# httpd -X under callgrind: one process; the blocking driver needs one
# worker for the one connection, the event MPM a few more
write_cg_conf() {
    {
        common_conf cg "$CG_PORT"
        cat <<EOF
ThreadsPerChild 4
ThreadLimit 4
MaxRequestWorkers 4
LoadModule websocket_module $MOD_WS
<Location /echo>
    SetHandler websocket
    WebSocketHandler $MOD_ECHO
    Require all granted
</Location>
EOF
    } > "$ROOT/cg/httpd.conf"
    chmod 644 "$ROOT/cg/httpd.conf"
}

start_httpd() {   # start_httpd NAME PORT
    local conf=$ROOT/$1/httpd.conf
    "$HTTPD" -f "$conf" -t >/dev/null 2>"$ROOT/$1/configtest.err" \
        || { cat "$ROOT/$1/configtest.err" >&2; fail "$1: apache2 -t failed"; }
    $PIN_SERVER "$HTTPD" -f "$conf" -k start || fail "$1: apache2 -k start failed"
    HTTPD_CONFS+=("$conf")
    wait_port "$2" 30 || { tail -20 "$ROOT/$1/logs/error_log" >&2; fail "$1: httpd did not listen on $2"; }
    local i
    for i in $(seq 1 100); do
        [ -s "$ROOT/$1/run/httpd.pid" ] && break
        sleep 0.1
    done
}

httpd_pid() { cat "$ROOT/$1/run/httpd.pid" 2>/dev/null; }

stop_httpd() {   # stop_httpd CONF
    local conf=$1 dir pid i
    dir=$(dirname "$conf")
    pid=$(cat "$dir/run/httpd.pid" 2>/dev/null) || return 0
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
    "$HTTPD" -f "$conf" -k stop 2>/dev/null
    for i in $(seq 1 150); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null
}

start_node() {   # start_node SCRIPT PORT [ARGS...] -> sets NODE_STARTED_PID
    local script=$1 port=$2
    shift 2
    $PIN_SERVER node "$HERE/node/$script" "$port" "$@" > "$ROOT/node/$script.$port.log" 2>&1 &
    NODE_STARTED_PID=$!
    PIDS_TO_STOP+=("$NODE_STARTED_PID")
    wait_port "$port" 30 || { cat "$ROOT/node/$script.$port.log" >&2; fail "node $script did not listen on $port"; }
}

# ---- one run: wsload with a tag; the summary line goes to $RAW ---------------
run() {   # run TAGS MODE ARGS...
    local tags=$1 mode=$2 line
    shift 2
    line=$(timeout 900 $PIN_LOAD "$WSLOAD" "$mode" -q --tag "$tags" "$@" 2>>"$ROOT/wsload.err")
    [ -n "$line" ] || line="$tags mode=$mode ok=0 error=no_output"
    echo "$line" >> "$RAW"
    echo "$line" | cut -c1-220 >&2
}

port_of() {
    case $1 in
        mws) echo "$MWS_PORT" ;;
        node) echo "$NODE_PORT" ;;
        proxy) echo "$PROXY_PORT" ;;
    esac
}

T_START=$(date +%s)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
log "server root $ROOT; results to $OUT"
write_mws_conf
write_proxy_conf
start_peers() {
    start_node echo.js "$NODE_PORT"; NODE_PID=$NODE_STARTED_PID
    start_httpd mws "$MWS_PORT"
    start_httpd proxy "$PROXY_PORT"
    MWS_PID=$(httpd_pid mws)
    PROXY_PID=$(httpd_pid proxy)
    log "mws :$MWS_PORT (pid $MWS_PID)  node :$NODE_PORT (pid $NODE_PID)  proxy :$PROXY_PORT (pid $PROXY_PID)"
}

stop_peers() {
    local i
    stop_httpd "$ROOT/mws/httpd.conf"
    stop_httpd "$ROOT/proxy/httpd.conf"
    kill "$NODE_PID" 2>/dev/null
    for i in $(seq 1 100); do
        kill -0 "$NODE_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$NODE_PID" 2>/dev/null
    wait "$NODE_PID" 2>/dev/null
    forget_pid "$NODE_PID"
}

start_peers
start_node fanout.js "$FAN_PORT"; FAN_PID=$NODE_STARTED_PID
log "fanout :$FAN_PORT (pid $FAN_PID)"
if [ "$WANT_TLS" = 1 ]; then
    start_node fanout.js "$FAN_TLS_PORT" --tls "$ROOT/tls/cert.pem" "$ROOT/tls/key.pem"
    FAN_TLS_PID=$NODE_STARTED_PID
    log "fanout https :$FAN_TLS_PORT (pid $FAN_TLS_PID); mws wss :$MWS_TLS_PORT"
fi

# a short warm-up of every peer (JIT, page faults, thread start)
for peer in mws node proxy; do
    timeout 60 $PIN_LOAD "$WSLOAD" echo -q -p "$(port_of $peer)" -P /echo -c 10 \
        -t 1 --warmup 0 >/dev/null 2>>"$ROOT/wsload.err" \
        || log "warm-up of $peer failed (see the run lines)"
done

# ---- echo: interleaved, repeated ----------------------------------------------
ECHO_TESTS=(
    "echo64_c1:-s 64 -c 1 -d 1"
    "echo64_c10:-s 64 -c 10 -d 1"
    "echo64_c100:-s 64 -c 100 -d 1"
    "echo64_c100_d10:-s 64 -c 100 -d 10"
    "echo16k_c10:-s 16384 -c 10 -d 1"
)
want echo || ECHO_TESTS=()
for rep in $(seq 1 "$REPEAT"); do
    for t in "${ECHO_TESTS[@]}"; do
        name=${t%%:*}
        args=${t#*:}
        for peer in mws node proxy; do
            # shellcheck disable=SC2086
            run "peer=$peer test=$name rep=$rep" echo -p "$(port_of $peer)" \
                -P /echo $args -t "$DURATION" --warmup 1
        done
    done
done

# ---- hold: RSS and threads of the whole server (proxy: httpd + node) ----------
# on freshly started servers, so that "before" is an idle server and not
# one whose heap (Node's GC) or free lists (APR) still hold the echo runs
HOLDS=("$HOLD_N")
[ "$FULL" = 1 ] && HOLDS+=(10000 15000)
want hold || HOLDS=()
for n in "${HOLDS[@]}"; do
    for peer in mws node proxy; do
        # proxy's figure includes the Node server behind it: restart all
        stop_peers
        start_peers
        sleep 2
        case $peer in
            mws) pids=(--server-pid "$MWS_PID") ;;
            node) pids=(--server-pid "$NODE_PID") ;;
            proxy) pids=(--server-pid "$PROXY_PID" --server-pid "$NODE_PID") ;;
        esac
        run "peer=$peer test=hold$n rep=1" hold -p "$(port_of $peer)" -P /echo \
            -c "$n" --conn-rate 1000 --inflight 200 --hold "$HOLD_SECS" \
            --connect-timeout 10 --pong-timeout 10 "${pids[@]}"
    done
done

# ---- overcap: past WebSocketMaxConnections, upgrades get 503 at once -----------
if want overcap; then
    if [ "$HAVE_CAP" = 1 ]; then
        run "peer=mws test=overcap rep=1 cap=$CAP" hold -p "$MWS_PORT" \
            -P /echo-capped -c $(( CAP + CAP / 2 )) --conn-rate 2000 \
            --inflight 200 --hold 2 --connect-timeout 10 --pong-timeout 10 \
            --server-pid "$MWS_PID"
    else
        echo "peer=mws test=overcap rep=1 mode=hold ok=0 skipped=no_WebSocketMaxConnections" >> "$RAW"
    fi
fi

# ---- fan-out capacity: step the offered publish rate until deliveries fall
# behind (< 90 % of rate x receivers), a message is lost, or the fan-out p99
# passes BENCH_CAP_P99_MS; report the highest rate each peer sustained ------
CAP_P99_US=$(( ${BENCH_CAP_P99_MS:-100} * 1000 ))
CAP_RATES=${BENCH_CAP_RATES:-"100 200 400 800 1600 3200"}
# wsload's threads for the fan-out sets: one per CPU it may use (threads
# sharing one CPU add nothing; the publisher keeps the main thread)
LOAD_NCPU=1
[ -n "$PIN_LOAD" ] && LOAD_NCPU=$($PIN_LOAD nproc 2>/dev/null || echo 1)
[ -z "$PIN_LOAD" ] && LOAD_NCPU=$(nproc)
WSLOAD_THREADS=${BENCH_WSLOAD_THREADS:-$LOAD_NCPU}
# fanout_cap PEER PORT PID SET STEP NRECV RATES REP [WSLOAD ARGS...]: step
# the offered rate; the line "test=SET mode=fanoutcap" gives the highest rate
# sustained and what ended the stepping: limit=server (the server fell
# behind, lost a message or passed the p99 bound), limit=wsload (wsload was
# at 100% of the CPUs it may use in that step: the load generator, not the
# server, was the limit), limit=rates (every offered rate was sustained)
fanout_cap() {
    local peer=$1 port=$2 pid=$3 set=$4 step=$5 nrecv=$6 rates=$7 rep=$8
    local r m line best="" dps p99 ok lim limit=rates bound=$CAP_P99_US
    shift 8
    [ "$set" = fanout10k ] && bound=$K10_P99_US
    for r in $rates; do
        # 3 s of messages, but at least 100 (a p99 of fewer is their
        # maximum: one hiccup of the machine decides it), at most 10 s
        m=$(( r * 3 ))
        [ "$m" -lt 100 ] && m=100
        [ "$m" -gt $(( r * 10 )) ] && m=$(( r * 10 ))
        run "peer=$peer test=${step}_r$r rep=$rep" broadcast -p "$port" \
            -P "/chat?room=bench" -r "$nrecv" -m "$m" -w 1 \
            --rate "$r" --inflight 200 --msg-timeout 5 \
            --settle 1 --server-pid "$pid" "$@"
        line=$(tail -n 1 "$RAW")
        ok=$(echo "$line" | grep -o ' ok=[01]' | cut -d= -f2)
        dps=$(echo "$line" | grep -o 'deliveries_per_s=[0-9]*' | cut -d= -f2)
        p99=$(echo "$line" | grep -o 'fanout_p99_us=[0-9]*' | cut -d= -f2)
        lim=$(echo "$line" | grep -o 'load_limited=[01]' | cut -d= -f2)
        sleep 2
        if [ "$ok" != 1 ] || [ -z "$dps" ] || [ -z "$p99" ] \
           || [ "$p99" -gt "$bound" ] \
           || [ $(( dps * 10 )) -lt $(( r * nrecv * 9 )) ]; then
            limit=server
            [ "$lim" = 1 ] && limit=wsload
            break
        fi
        best="max_rate=$r deliveries_per_s=$dps fanout_p99_us=$p99"
        [ "$lim" = 1 ] && best="$best load_limited_at_max=1"
    done
    echo "peer=$peer test=$set rep=$rep mode=fanoutcap receivers=$nrecv p99_bound_us=$bound ${best:-max_rate=0 deliveries_per_s=0} limit=$limit ok=1" | tee -a "$RAW" >&2
}
if want fanoutcap; then
    [ "$HAVE_CHAT" = 1 ] && fanout_cap mws "$MWS_PORT" "$MWS_PID" fanoutcap fanstep \
        "$RECEIVERS" "$CAP_RATES" 1 --conn-rate 1000
    fanout_cap node "$FAN_PORT" "$FAN_PID" fanoutcap fanstep "$RECEIVERS" "$CAP_RATES" 1 \
        --conn-rate 1000
fi

# ---- fan-out at capacity over TLS and to 10,000: interleaved rounds, the
# peers' order alternating -----------------------------------------------------
TLS_RECEIVERS=${BENCH_TLS_RECEIVERS:-1000}
TLS_RATES=${BENCH_TLS_RATES:-"25 50 100 200 400 800 1600 3200"}
K10_RECEIVERS=${BENCH_10K_RECEIVERS:-10000}
K10_RATES=${BENCH_10K_RATES:-"2 4 8 16 32 64 128 256"}
K10_CONN_RATE=${BENCH_10K_CONN_RATE:-2000}
K10_P99_US=$(( ${BENCH_10K_P99_MS:-1000} * 1000 ))
fan_rounds() {   # fan_rounds SET: BENCH_REPEAT rounds of both peers
    local set=$1 rep peers peer
    for rep in $(seq 1 "$REPEAT"); do
        peers="mws node"
        [ $(( rep % 2 )) = 0 ] && peers="node mws"
        for peer in $peers; do
            case $set:$peer in
                fanouttls:mws)
                    fanout_cap mws "$MWS_TLS_PORT" "$MWS_PID" fanouttls fantls_step \
                        "$TLS_RECEIVERS" "$TLS_RATES" "$rep" --tls --conn-rate 1000 \
                        --threads "$WSLOAD_THREADS" ;;
                fanouttls:node)
                    fanout_cap node "$FAN_TLS_PORT" "$FAN_TLS_PID" fanouttls fantls_step \
                        "$TLS_RECEIVERS" "$TLS_RATES" "$rep" --tls --conn-rate 1000 \
                        --threads "$WSLOAD_THREADS" ;;
                fanout10k:mws)
                    fanout_cap mws "$MWS_PORT" "$MWS_PID" fanout10k fan10k_step \
                        "$K10_RECEIVERS" "$K10_RATES" "$rep" --conn-rate "$K10_CONN_RATE" \
                        --threads "$WSLOAD_THREADS" ;;
                fanout10k:node)
                    fanout_cap node "$FAN_PORT" "$FAN_PID" fanout10k fan10k_step \
                        "$K10_RECEIVERS" "$K10_RATES" "$rep" --conn-rate "$K10_CONN_RATE" \
                        --threads "$WSLOAD_THREADS" ;;
            esac
        done
    done
}
if want fanouttls; then
    if [ "$HAVE_CHAT" = 1 ]; then
        fan_rounds fanouttls
    else
        echo "peer=mws test=fanouttls rep=1 mode=fanoutcap ok=0 skipped=no_chat_handler" >> "$RAW"
    fi
fi
if want fanout10k; then
    # WebSocketMaxConnections auto must admit every receiver and the
    # publisher (the start-up line MWS00120 gives the server's figure)
    k10_cap=$(grep -o 'MWS00120: WebSocket capacity: [0-9]* per child, [0-9]* per server' \
                  "$ROOT/mws/logs/error_log" | tail -1 | awk '{print $(NF-2)}')
    if [ -n "$k10_cap" ] && [ "$k10_cap" -le "$K10_RECEIVERS" ]; then
        log "fanout10k: WebSocketMaxConnections auto is $k10_cap, below $K10_RECEIVERS + 1 (raise BENCH_ARWF)"
    fi
    if [ "$HAVE_CHAT" = 1 ]; then
        fan_rounds fanout10k
    else
        echo "peer=mws test=fanout10k rep=1 mode=fanoutcap ok=0 skipped=no_chat_handler" >> "$RAW"
    fi
fi

# ---- permessage-deflate: a compressed broadcast's server CPU per delivery
# beside the uncompressed one (1 KiB messages, highly compressible padding),
# then the separate scripts: RSS per idle connection for each mode, callgrind
# per compressed 1 KiB JSON echo, CPU time per echo beside Node ws ----------
if want deflate && [ "$HAVE_CHAT" = 1 ]; then
    for z in plain deflate; do
        path=/chat; zopt=()
        [ "$z" = deflate ] && { path=/chatz; zopt=(--deflate); }
        run "peer=mws test=bcast_1k_$z rep=1" broadcast -p "$MWS_PORT" \
            -P "$path?room=benchz" -r "$RECEIVERS" -m 300 -w 1 --rate 100 \
            -s 1024 --conn-rate 1000 --inflight 200 --msg-timeout 5 \
            --settle 1 --server-pid "$MWS_PID" "${zopt[@]}"
        sleep 2
    done
    for script in "deflate_idle.py ${BENCH_DEFLATE_IDLE:-2000}" "deflate_cpu.py 500" \
                  "deflate_time.py 3000"; do
        log "deflate: $script"
        # shellcheck disable=SC2086
        MWS_BUILD_DIR=$BUILD timeout 900 /usr/bin/python3 "$HERE"/$script \
            2>>"$ROOT/deflate.err" | sed 's/^/test=deflate_script /' >> "$RAW"
    done
fi

# ---- broadcast: mws chat vs node fanout.js -------------------------------------
BC_REPEAT=$REPEAT
want broadcast || BC_REPEAT=0
for rep in $(seq 1 "$BC_REPEAT"); do
    for peer in mws node; do
        if [ "$peer" = mws ]; then
            if [ "$HAVE_CHAT" != 1 ]; then
                [ "$rep" = 1 ] && echo "peer=mws test=bcast$RECEIVERS rep=1 mode=broadcast ok=0 skipped=no_chat_handler" >> "$RAW"
                continue
            fi
            port=$MWS_PORT; pid=$MWS_PID
        else
            port=$FAN_PORT; pid=$FAN_PID
        fi
        run "peer=$peer test=bcast$RECEIVERS rep=$rep" broadcast -p "$port" \
            -P "/chat?room=bench" -r "$RECEIVERS" -m "$MESSAGES" -w "${BENCH_BC_WINDOW:-1}" \
            --conn-rate 1000 --inflight 200 --msg-timeout 5 --settle 1 \
            --server-pid "$pid"
        sleep 2
    done
done

# ---- instructions per echo: callgrind, 5,000 minus 1,000 messages / 4,000 ------
cg_total() { grep -E '^(summary|totals):' "$1" 2>/dev/null | head -1 | awk '{print $2}'; }

cg_httpd() {   # cg_httpd N -> prints the Ir total
    local n=$1 out=$ROOT/cg/out/httpd.$1.out vpid i
    rm -f "$ROOT/cg/run/httpd.pid"
    $PIN_SERVER valgrind --tool=callgrind --vgdb=no --callgrind-out-file="$out" \
        "$HTTPD" -X -f "$ROOT/cg/httpd.conf" > "$ROOT/cg/valgrind.$n.log" 2>&1 &
    vpid=$!
    PIDS_TO_STOP+=("$vpid")
    if ! wait_port "$CG_PORT" 120; then
        kill "$vpid" 2>/dev/null
        return 1
    fi
    # valgrind created the file as root; httpd -X writes it at exit as
    # www-data, after dropping privileges
    chown www-data:www-data "$out" 2>/dev/null
    timeout 600 $PIN_LOAD "$WSLOAD" echo -q -p "$CG_PORT" -P /echo -c 1 -d 1 \
        -s 64 -n "$n" --max-time 500 >> "$ROOT/cg/wsload.log" 2>&1
    kill -TERM "$vpid" 2>/dev/null
    for i in $(seq 1 600); do
        kill -0 "$vpid" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$vpid" 2>/dev/null
    wait "$vpid" 2>/dev/null
    forget_pid "$vpid"
    cg_total "$out"
}

cg_node() {   # cg_node N -> prints the Ir total
    local n=$1 out=$ROOT/cg/out/node.$1.out port vpid i
    port=$(free_port)
    $PIN_SERVER valgrind --tool=callgrind --vgdb=no --callgrind-out-file="$out" \
        node "$HERE/node/echo.js" "$port" > "$ROOT/cg/valgrind-node.$n.log" 2>&1 &
    vpid=$!
    PIDS_TO_STOP+=("$vpid")
    if ! wait_port "$port" 180; then
        kill "$vpid" 2>/dev/null
        return 1
    fi
    timeout 900 $PIN_LOAD "$WSLOAD" echo -q -p "$port" -P /echo -c 1 -d 1 \
        -s 64 -n "$n" --max-time 800 >> "$ROOT/cg/wsload-node.log" 2>&1
    kill -INT "$vpid" 2>/dev/null
    for i in $(seq 1 600); do
        kill -0 "$vpid" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$vpid" 2>/dev/null
    wait "$vpid" 2>/dev/null
    forget_pid "$vpid"
    cg_total "$out"
}

instr_line() {   # instr_line PEER IR1000 IR5000
    local peer=$1 a=$2 b=$3
    if [ -n "$a" ] && [ -n "$b" ]; then
        echo "peer=$peer test=instr rep=1 mode=instr n1=1000 n2=5000 ir1=$a ir2=$b instr_per_msg=$(( (b - a) / 4000 )) ok=1"
    else
        echo "peer=$peer test=instr rep=1 mode=instr ok=0 error=callgrind_failed"
    fi
}

if ! want instr; then
    :
elif [ "$DO_CG" = 1 ] && command -v valgrind >/dev/null; then
    write_cg_conf
    log "callgrind: httpd -X, 1,000 and 5,000 messages"
    a=$(cg_httpd 1000); b=$(cg_httpd 5000)
    instr_line mws "$a" "$b" | tee -a "$RAW" >&2
    if [ "$DO_CG_NODE" = 1 ]; then
        log "callgrind: node echo.js, 1,000 and 5,000 messages (slow)"
        a=$(cg_node 1000); b=$(cg_node 5000)
        instr_line node "$a" "$b" | tee -a "$RAW" >&2
    fi
else
    echo "peer=mws test=instr rep=1 mode=instr ok=0 skipped=callgrind" >> "$RAW"
fi

# ---- errors the servers logged ----------------------------------------------
for name in mws proxy; do
    f=$ROOT/$name/logs/error_log
    n=$(grep -cE '\[([a-z_]+:)?(error|crit|alert|emerg)\]' "$f" 2>/dev/null)
    w=$(grep -cE '\[([a-z_]+:)?warn\]' "$f" 2>/dev/null)
    tags=$(grep -E '\[([a-z_]+:)?(warn|error|crit|alert|emerg)\]' "$f" 2>/dev/null \
           | grep -oE '\] (AH|MWS)[0-9]+:' | tr -d '] :' | sort | uniq -c \
           | awk '{printf "%s%s:%s", (NR > 1 ? "," : ""), $2, $1}')
    echo "peer=$name test=errorlog rep=1 mode=errorlog error_lines=${n:-0} warn_lines=${w:-0} tags=${tags:-none}" >> "$RAW"
done

# ---- results ---------------------------------------------------------------------
T_END=$(date +%s)
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
mkdir -p "$(dirname "$OUT")"
{
    echo "# mod_websocket benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'), $(( T_END - T_START )) s"
    echo "# machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $NCPU CPUs, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)"
    echo "# httpd: $("$HTTPD" -v | head -1 | cut -d: -f2 | sed 's/^ //'); node $(node --version), ws $WS_VERSION; wsload: gcc -O2"
    echo "# module: $(cd "$SRC" && git rev-parse --short HEAD 2>/dev/null)$(cd "$SRC" && git diff --quiet HEAD -- '*.c' '*.h' 2>/dev/null || echo '+local changes')"
    echo "# httpd: event MPM, ServerLimit=StartServers=$SERVER_LIMIT, ThreadsPerChild=$TPC (proxy: $PROXY_TPC), AsyncRequestWorkerFactor=$ARWF, LogLevel warn, no access log"
    echo "# load average (1/5/15 min) at start: $LOAD_START, at end: $LOAD_END (other work on the machine skews absolute figures; compare ratios)"
    echo "# pinning: servers on CPU $CPU_SERVER, wsload on CPU $CPU_LOAD; echo runs ${DURATION} s after 1 s warm-up, $REPEAT repetitions, medians"
    echo
    python3 "$HERE/summarize.py" "$RAW"
    echo
    echo "## raw lines"
    cat "$RAW"
} > "$OUT"
log "done in $(( T_END - T_START )) s; results: $OUT"
sed -n '1,/^## raw lines/p' "$OUT"

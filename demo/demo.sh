#!/bin/bash
# demo.sh -- run httpd with mod_websocket and the bundled handlers from a
# build tree, on 127.0.0.1:<port>, with the demo pages of demo/htdocs.
#
#   demo.sh start <builddir> <srcdir> <port>   (make demo [DEMO_PORT=8080])
#   demo.sh stop  <builddir> <srcdir> <port>   (make demo-stop)
#
# DEMO_FOREGROUND=1 runs httpd in the foreground instead (Ctrl-C stops it).
# HTTPD overrides the httpd binary (default /usr/sbin/apache2).
#
# Every start makes a fresh server root with `mktemp -d`
# (${TMPDIR:-/tmp}/mod_websocket-demo-<port>.XXXXXXXXXX), owned by the
# caller and writable by nobody else; only its folders the children need
# (they run as www-data under root and may not be able to read the source
# tree) can be entered by others.  Its path is remembered per port in
# ${XDG_CACHE_HOME:-$HOME/.cache}/mod_websocket-demo/port-<port>, so that
# stop finds it.  A state file, server root or file in it that is a
# symbolic link, or that the caller does not own, is refused: httpd runs as
# root here and loads what the configuration names.
set -eu
umask 077

HTTPD=${HTTPD:-/usr/sbin/apache2}
MODULES=${HTTPD_MODULES:-/usr/lib/apache2/modules}

usage() {
    echo "usage: $0 start|stop <builddir> <srcdir> <port>" >&2
    exit 2
}

die() {
    echo "$0: $*" >&2
    exit 1
}

[ $# -eq 4 ] || usage
cmd=$1
builddir=$(cd "$2" && pwd)
srcdir=$(cd "$3" && pwd)
port=$4
case $port in
    ''|*[!0-9]*) echo "$0: port '$port' is not a number" >&2; exit 2 ;;
esac
if [ ${#port} -gt 5 ] || [ "$port" -lt 1 ] || [ "$port" -gt 65535 ]; then
    echo "$0: port '$port' is not from 1 to 65535" >&2
    exit 2
fi

uid=$(id -u)
url=http://127.0.0.1:$port/

# Every directory of the physical path of $1 (an existing directory) up to
# / must belong to root or to the caller and, unless sticky (/tmp), must not
# be writable by group or others: else someone else could swap what we
# read or write there.
secure_parents() {
    local d owner mode
    d=$(cd -P -- "$1" && pwd -P) || die "cannot enter $1"
    while :; do
        read -r owner mode < <(stat -c '%u %a' -- "$d") || die "cannot stat $d"
        if [ "$owner" != 0 ] && [ "$owner" != "$uid" ]; then
            die "$d belongs to uid $owner, neither root nor you (uid $uid): refusing it"
        fi
        if (( (8#$mode & 8#022) && !(8#$mode & 8#1000) )); then
            die "$d is writable by others (mode $mode) and not sticky: refusing it"
        fi
        [ "$d" = / ] && break
        d=$(dirname -- "$d")
    done
}

# $1 is a directory (d) or regular file (f) of the caller, not a symbolic
# link, not writable by group or others; else print why and return 1.
check_own() {
    local path=$1 kind=$2 owner mode
    if [ -L "$path" ]; then
        echo "$path is a symbolic link"; return 1
    fi
    if [ "$kind" = d ] && [ ! -d "$path" ]; then
        echo "$path is not a directory"; return 1
    fi
    if [ "$kind" = f ] && [ ! -f "$path" ]; then
        echo "$path is not a regular file"; return 1
    fi
    read -r owner mode < <(stat -c '%u %a' -- "$path") || {
        echo "cannot stat $path"; return 1; }
    if [ "$owner" != "$uid" ]; then
        echo "$path belongs to uid $owner, not to you (uid $uid)"; return 1
    fi
    if (( 8#$mode & 8#022 )); then
        echo "$path is writable by others (mode $mode)"; return 1
    fi
    return 0
}

# The folder of the state files, private to the caller (made if missing).
state_dir() {
    local base=${XDG_CACHE_HOME:-${HOME:?HOME is not set}/.cache} why
    case $base in
        /*) ;;
        *) die "the cache folder '$base' is not an absolute path" ;;
    esac
    mkdir -p -- "$base/mod_websocket-demo"     # 0700 (umask 077)
    secure_parents "$base"
    why=$(check_own "$base/mod_websocket-demo" d) ||
        die "$why: refusing it (set XDG_CACHE_HOME to a folder of yours)"
    echo "$base/mod_websocket-demo"
}

statefile=$(state_dir)/port-$port
root=""                 # the server root of this port, once known

# The server root recorded for this port: sets root to it when the state
# file and the folder check out, to "" when there is none.  A state file
# that does not check out is an error; a folder that does not is reported
# (it is not ours any more: never used) and forgotten.
load_root() {
    local why recorded
    root=""
    [ -e "$statefile" ] || [ -L "$statefile" ] || return 0
    why=$(check_own "$statefile" f) ||
        die "state file: $why: refusing it (remove it if it is yours)"
    IFS= read -r recorded < "$statefile" || true
    case $recorded in
        /*/mod_websocket-demo-"$port".??????????) ;;
        *) die "state file $statefile does not name a server root: refusing it" ;;
    esac
    if [ ! -e "$recorded" ] && [ ! -L "$recorded" ]; then
        return 0                # gone (a tmp cleaner): nothing runs from it
    fi
    if ! why=$(check_own "$recorded" d); then
        echo "$0: the recorded server root $why: not using it" >&2
        return 0
    fi
    secure_parents "$(dirname -- "$recorded")"
    root=$recorded
}

# pid of the demo's httpd parent, if one runs from $root
running_pid() {
    local pid pidfile=$root/run/httpd.pid
    [ -n "$root" ] || return 1
    check_own "$pidfile" f >/dev/null || return 1
    IFS= read -r pid < "$pidfile" || return 1
    case $pid in ''|*[!0-9]*) return 1 ;; esac
    kill -0 "$pid" 2>/dev/null || return 1
    # the pid is that httpd (not a process that got the number later)
    tr '\0' '\n' < "/proc/$pid/cmdline" 2>/dev/null \
        | grep -qxF -- "$root/httpd.conf" || return 1
    echo "$pid"
}

# The commented event-MPM block of debian-conf/websocket.conf, uncommented.
event_settings() {
    sed -n '/^# BEGIN event MPM/,/^# END event MPM/p' \
        "$srcdir/debian-conf/websocket.conf" \
        | sed -e '/^# BEGIN/d' -e '/^# END/d' -e 's/^# \{0,1\}//'
}

write_conf() {
    local conf=$1 user_lines=""
    if [ "$uid" -eq 0 ]; then
        # httpd starts as root and its children drop to www-data
        user_lines="User www-data
Group www-data"
    fi
    # noclobber: the file is new, in a folder nobody else can write
    set -o noclobber
    cat > "$conf" <<CONF
# generated by $srcdir/demo/demo.sh
ServerRoot "$root"
DefaultRuntimeDir "$root/run"
PidFile "$root/run/httpd.pid"
ServerName localhost
$user_lines
Listen 127.0.0.1:$port

LoadModule mpm_event_module $MODULES/mod_mpm_event.so
LoadModule authz_core_module $MODULES/mod_authz_core.so
LoadModule mime_module $MODULES/mod_mime.so
LoadModule dir_module $MODULES/mod_dir.so
LoadModule websocket_module $builddir/.libs/mod_websocket.so

# the event MPM settings for many idle WebSockets of websocket.conf
$(event_settings)

# as Debian's default configuration (mods-available/reqtimeout.conf): a
# client must send its request (the WebSocket handshake too) within 20 s,
# 40 s at most if it keeps sending 500 bytes a second; mod_websocket takes
# the limit off a connection once it is upgraded
LoadModule reqtimeout_module $MODULES/mod_reqtimeout.so
RequestReadTimeout header=20-40,MinRate=500
RequestReadTimeout body=10,MinRate=500

ErrorLog "$root/logs/error_log"
LogLevel info
LogFormat "%h %t \"%r\" %>s %b" demo
CustomLog "$root/logs/access_log" demo
TypesConfig /etc/mime.types
AddDefaultCharset utf-8

DocumentRoot "$root/htdocs"
DirectoryIndex index.html
<Directory />
    AllowOverride None
    Require all denied
</Directory>
<Directory "$root/htdocs">
    Require all granted
</Directory>

<Location /echo>
    SetHandler websocket
    WebSocketHandler $builddir/handlers/.libs/mod_ws_echo.so
</Location>
<Location /chat>
    SetHandler websocket
    WebSocketHandler $builddir/handlers/.libs/mod_ws_chat.so
    WebSocketHandlerOption welcome "Welcome to the mod_websocket demo chat."
</Location>
<Location /increment>
    SetHandler websocket
    WebSocketHandler $builddir/handlers/.libs/mod_ws_increment.so
</Location>
<Location /auction>
    SetHandler websocket
    WebSocketHandler $builddir/handlers/.libs/mod_ws_auction.so
    WebSocketHandlerOption StartPrice 100
    WebSocketHandlerOption MinIncrement 5
</Location>
# the live view (status.html): the figures mod_status shows, every second
<Location /status-live>
    SetHandler websocket
    WebSocketHandler websocket-status
</Location>
CONF
    set +o noclobber
    chmod 644 "$conf"
}

# Remember $root for this port: a new file renamed over the old one (a
# rename replaces a link, it does not follow it).
save_root() {
    local tmp
    tmp=$(mktemp "$statefile.XXXXXX")
    printf '%s\n' "$root" > "$tmp"
    mv -f -- "$tmp" "$statefile"
}

start() {
    local f pid old why traverse=700
    for f in "$builddir/.libs/mod_websocket.so" \
             "$builddir"/handlers/.libs/mod_ws_{echo,chat,increment,auction}.so; do
        if [ ! -f "$f" ]; then
            echo "$0: $f is missing: run make first" >&2
            exit 1
        fi
    done
    load_root
    if pid=$(running_pid); then
        echo "The demo already runs (pid $pid): $url"
        echo "Stop it with: make demo-stop DEMO_PORT=$port"
        exit 0
    fi
    old=$root
    # a fresh root: mktemp -d makes it 0700 and ours, with a name nobody
    # can guess or take first; nothing in it can be a link we did not make
    root=$(mktemp -d "${TMPDIR:-/tmp}/mod_websocket-demo-$port.XXXXXXXXXX")
    why=$(check_own "$root" d) || die "new server root: $why"
    secure_parents "$root"
    if [ "$uid" -eq 0 ]; then
        traverse=711    # www-data (the children) may enter, not list
    fi
    mkdir -m 755 "$root/htdocs"
    mkdir -m 700 "$root/logs"
    mkdir -m "$traverse" "$root/run"
    chmod "$traverse" "$root"
    install -m 644 "$srcdir"/demo/htdocs/*.html "$root/htdocs/"
    write_conf "$root/httpd.conf"
    save_root
    if [ -n "$old" ]; then
        rm -rf -- "$old"        # the previous run's root, checked to be ours
    fi
    "$HTTPD" -f "$root/httpd.conf" -t
    if [ "${DEMO_FOREGROUND:-0}" = 1 ]; then
        echo "mod_websocket demo on $url (foreground; Ctrl-C stops it)"
        echo "error log: $root/logs/error_log"
        exec "$HTTPD" -f "$root/httpd.conf" -DFOREGROUND
    fi
    "$HTTPD" -f "$root/httpd.conf" -k start
    for _ in $(seq 1 100); do
        if curl -s -o /dev/null --max-time 1 "$url"; then
            echo "mod_websocket demo on $url"
            echo "  pages: ${url}index.html, echo.html, chat.html, increment.html, auction.html, plain.html"
            echo "  server root: $root"
            echo "  error log: $root/logs/error_log"
            echo "  stop it with: make demo-stop DEMO_PORT=$port"
            echo "               (or $0 stop $builddir $srcdir $port)"
            return 0
        fi
        sleep 0.1
    done
    echo "$0: httpd did not answer on $url within 10 s; its error log:" >&2
    tail -n 20 "$root/logs/error_log" >&2 || true
    exit 1
}

stop() {
    local pid why
    load_root
    if ! pid=$(running_pid); then
        echo "The demo on port $port is not running."
        return 0
    fi
    why=$(check_own "$root/httpd.conf" f) || die "$why: refusing to use it"
    "$HTTPD" -f "$root/httpd.conf" -k stop
    for _ in $(seq 1 300); do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "The demo on port $port stopped (server root $root kept until the next start)."
            return 0
        fi
        sleep 0.1
    done
    echo "$0: httpd (pid $pid) did not stop within 30 s" >&2
    exit 1
}

case $cmd in
    start) start ;;
    stop) stop ;;
    *) usage ;;
esac

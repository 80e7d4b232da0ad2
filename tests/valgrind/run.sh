#!/bin/sh
# tests/valgrind/run.sh -- a valgrind memcheck pass: httpd runs as one
# process (`apache2 -X`) under memcheck with the module and the handlers of
# the build, once per MPM; a representative part of the integration suite
# drives it; the server is stopped (SIGTERM, a clean exit, so memcheck's leak
# check runs) and the reports are summed up:
#   - memory errors (invalid reads/writes, uninitialised values, bad frees)
#     anywhere in the process, and those with a frame in our code;
#   - definite leaks whose allocation stack passes through our code
#     (mod_websocket.so, mod_ws_*.so).
#
#   tests/valgrind/run.sh [pytest arguments...]
#
# Environment:
#   MWS_BUILD_DIR  the build to test (default: the source tree)
#   MWS_MPMS       MPMs, comma separated (default: event,prefork)
#   MWS_VG_DIR     where the reports go (default: /tmp/mws-valgrind)
# Without pytest arguments the subset is VG_TESTS below (VG_TESTS_ONE for
# prefork, whose single process serves one connection at a time).
# Exit status 0: no memory error at all and no definite leak from our code.
set -eu

SRC=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${MWS_BUILD_DIR:-$SRC}
OUT=${MWS_VG_DIR:-/tmp/mws-valgrind}
MPMS=${MWS_MPMS:-event,prefork}
PYTHON=${PYTHON:-/usr/bin/python3}
# prefork -X serves one connection at a time: only tests that use one
VG_TESTS_ONE="tests/integration/test_200_echo.py tests/integration/test_400_close.py
tests/integration/test_500_utf8.py tests/integration/test_600_limits.py"
VG_TESTS="$VG_TESTS_ONE tests/integration/test_1000_api.py"

command -v valgrind >/dev/null || { echo "valgrind is not installed" >&2; exit 2; }
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
chmod 755 "$OUT"

# The wrapper the conftest runs instead of apache2 (MWS_HTTPD): `-k start`
# becomes `valgrind apache2 -X` in the background; everything else (-t,
# -k stop) goes to apache2 itself.
WRAP="$OUT/apache2-vg"
cat > "$WRAP" <<'EOF'
#!/bin/sh
# written by tests/valgrind/run.sh
conf=
start=
prev=
for a in "$@"; do
    [ "$prev" = "-f" ] && conf=$a
    [ "$prev" = "-k" ] && [ "$a" = "start" ] && start=1
    prev=$a
done
if [ -z "$start" ]; then
    exec /usr/sbin/apache2 "$@"
fi
# sh waits for valgrind, so that its exit is reaped even where init does not
# reap orphans (some containers)
setsid sh -c '"$@"; exit $?' sh valgrind --tool=memcheck --leak-check=full --show-leak-kinds=definite \
    --errors-for-leak-kinds=definite --keep-debuginfo=yes --num-callers=40 \
    --trace-children=no --error-exitcode=99 \
    --log-file="$MWS_VG_LOGDIR/vg.%p.log" \
    /usr/sbin/apache2 -X -f "$conf" </dev/null >>"$MWS_VG_LOGDIR/stdout.log" 2>&1 &
exit 0
EOF
chmod 755 "$WRAP"

given=$#

status=0
cd "$SRC"
for mpm in $(echo "$MPMS" | tr ',' ' '); do
    logdir="$OUT/$mpm"
    rm -rf "$logdir"
    mkdir -p "$logdir"
    chmod 777 "$logdir"
    if [ "$given" -eq 0 ]; then
        if [ "$mpm" = prefork ]; then tests=$VG_TESTS_ONE; else tests=$VG_TESTS; fi
        # shellcheck disable=SC2086
        set -- $tests
    fi
    echo "== $mpm: apache2 -X under memcheck; pytest" "$@"
    MWS_MPMS=$mpm MWS_HTTPD="$WRAP" MWS_VG_LOGDIR="$logdir" MWS_START_TIMEOUT=120 \
        MWS_BUILD_DIR="$BUILD" "$PYTHON" -m pytest -q -p no:cacheprovider "$@" \
        > "$logdir/pytest.log" 2>&1 || { echo "pytest failed ($mpm), see $logdir/pytest.log"; status=1; }
    tail -1 "$logdir/pytest.log"
    # the server has stopped; wait (bounded) for memcheck to finish its report
    i=0
    while [ $i -lt 120 ] && [ -n "$(grep -Ls "ERROR SUMMARY" "$logdir"/vg.*.log)" ]; do
        sleep 1
        i=$((i + 1))
    done
    "$PYTHON" "$SRC/tests/valgrind/summary.py" "$logdir"/vg.*.log || status=1
done
exit $status

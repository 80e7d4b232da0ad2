#!/bin/sh
# tests/asan/run.sh -- `make check-asan`: build the module, the bundled
# handlers and the test handlers with AddressSanitizer + UndefinedBehavior-
# Sanitizer in a separate build directory, then run the whole integration
# suite against the system's apache2 with the sanitizer runtimes preloaded
# into httpd (only httpd: pytest and its helpers run without them).
#
#   tests/asan/run.sh [pytest arguments...]
#
# Without arguments the whole tests/integration directory runs; arguments
# (relative to the source tree) replace it, e.g.
#   tests/asan/run.sh -x tests/integration/test_200_echo.py
#
# Environment:
#   MWS_ASAN_DIR   build directory (default: <source>/build-asan)
#   MWS_MPMS       MPMs to run (default: all three)
#   CC             compiler (default gcc: its runtimes are preloaded)
#   JOBS           make -j (default: number of CPUs)
#
# Layout: the working tree's files (tracked and untracked, not ignored) are
# copied to $MWS_ASAN_DIR/src and configured there with a VPATH build in
# $MWS_ASAN_DIR/obj, so the source tree's own in-tree build is untouched.
# Sanitizer reports go to $MWS_ASAN_DIR/reports/{asan,ubsan}.<pid>; the
# integration conftest (MWS_SANITIZER_LOG_DIR) fails every test during which
# a report appears, and the run if any report exists at the end.  Leak
# checking is off: httpd frees its pools at exit only partly by design, so
# LeakSanitizer would report httpd's own allocations (see the valgrind pass,
# tests/valgrind/run.sh, for leaks attributed to our code).
# Exit status: 0 when the build and every test passed and no report exists.
set -eu

SRC=$(cd "$(dirname "$0")/../.." && pwd)
DIR=${MWS_ASAN_DIR:-$SRC/build-asan}
CC=${CC:-gcc}
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
PYTHON=${PYTHON:-/usr/bin/python3}
SAN_CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer"
SAN_LDFLAGS="-fsanitize=address,undefined"

mkdir -p "$DIR/src" "$DIR/obj" "$DIR/reports"
DIR=$(cd "$DIR" && pwd)

echo "== copying the working tree to $DIR/src"
# tar keeps the modification times, so an unchanged file is not rebuilt
(cd "$SRC" && git ls-files -co --exclude-standard -z \
    | grep -zv -e '^build-' \
    | xargs -0 tar cf -) | (cd "$DIR/src" && tar xf -)

if [ ! -x "$DIR/src/configure" ] || [ "$DIR/src/configure.ac" -nt "$DIR/src/configure" ] \
   || [ "$DIR/src/Makefile.am" -nt "$DIR/src/Makefile.in" ]; then
    echo "== autoreconf"
    (cd "$DIR/src" && autoreconf -fi >/dev/null 2>&1) || {
        echo "autoreconf failed in $DIR/src" >&2; exit 1; }
fi

cd "$DIR/obj"
if [ ! -f config.status ] || [ "$DIR/src/configure" -nt config.status ]; then
    echo "== configure (VPATH) with $SAN_CFLAGS"
    "$DIR/src/configure" -q CC="$CC" CFLAGS="$SAN_CFLAGS" LDFLAGS="$SAN_LDFLAGS"
fi
echo "== make"
make -s -j"$JOBS" >/dev/null

for so in .libs/mod_websocket.so handlers/.libs/mod_ws_echo.so \
          tests/handlers/.libs/mod_ws_test.so; do
    if ! ldd "$so" | grep -q libasan; then
        echo "$so is not linked with the ASan runtime" >&2
        exit 1
    fi
done

ASAN_LIB=$(readlink -f "$($CC -print-file-name=libasan.so)")
UBSAN_LIB=$(readlink -f "$($CC -print-file-name=libubsan.so)")
for lib in "$ASAN_LIB" "$UBSAN_LIB"; do
    [ -f "$lib" ] || { echo "sanitizer runtime $lib not found" >&2; exit 1; }
done

REPORTS="$DIR/reports"
rm -f "$REPORTS"/asan.* "$REPORTS"/ubsan.*

# httpd's own SIGSEGV handler is allowed (it logs "exit signal", which the
# conftest reports too); verify_asan_link_order=0 lets a control command
# that a test runs without the wrapper (apache2 -k graceful) load the module.
ASAN_OPTIONS="detect_leaks=0:abort_on_error=0:halt_on_error=1:allow_user_segv_handler=1"
ASAN_OPTIONS="$ASAN_OPTIONS:verify_asan_link_order=0:log_path=$REPORTS/asan"
UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=0:log_path=$REPORTS/ubsan"
# Python is not instrumented: the options do nothing there; exported so that
# every apache2 the tests start sees them
export ASAN_OPTIONS UBSAN_OPTIONS

export MWS_BUILD_DIR="$DIR/obj"
export MWS_SRC_DIR="$SRC"
export MWS_HTTPD_PRELOAD="$ASAN_LIB $UBSAN_LIB"
export MWS_HTTPD_ENV="ASAN_OPTIONS=$ASAN_OPTIONS UBSAN_OPTIONS=$UBSAN_OPTIONS"
export MWS_SANITIZER_LOG_DIR="$REPORTS"

echo "== pytest (MPMs: ${MWS_MPMS:-event,worker,prefork}), httpd preloads $ASAN_LIB $UBSAN_LIB"
status=0
cd "$SRC"       # pytest arguments are relative to the source tree
if [ "$#" -eq 0 ]; then
    set -- "$SRC/tests/integration"
fi
"$PYTHON" -m pytest -q -p no:cacheprovider "$@" || status=$?

n=$(find "$REPORTS" -type f \( -name 'asan.*' -o -name 'ubsan.*' \) | wc -l)
echo "== sanitizer reports: $n (in $REPORTS)"
if [ "$n" -ne 0 ]; then
    find "$REPORTS" -type f \( -name 'asan.*' -o -name 'ubsan.*' \) -exec sh -c \
        'for f; do echo "--- $f"; head -60 "$f"; done' sh {} +
    status=1
fi
exit $status

"""Hardening (issue 4), policy before the upgrade and input limits:
WebSocketOrigin (403 before the handler's on_open), WebSocketMaxFrameSize
(1009 before the payload is read), a frame header declaring 2^62 bytes
(1009 at once, the server's memory does not move), WebSocketMaxConnections
and WebSocketMaxConnectionsPerAddress (503 + Retry-After, capacity given
back when a connection ends, counted across child processes), and a
handler error in the middle of a connection (1011, logged with the
handler's name).
"""
import os
import time

import pytest

import hardutil
from apiutil import (OP_BINARY, OP_TEXT, Events, api_locations, cmd, events_path, ident,
                     prepare_events, require_test_handlers, wait_until)
from conftest import MOD_ECHO
from wsclient import OP_CLOSE, build_frame

LOCATIONS = """
<Location /echo>
    SetHandler websocket
    WebSocketHandler {echo}
</Location>
<Location /o-same>
    SetHandler websocket
    WebSocketHandler {so}
    WebSocketHandlerOption LogFile {log}
</Location>
<Location /o-list>
    SetHandler websocket
    WebSocketHandler {so}
    WebSocketHandlerOption LogFile {log}
    WebSocketOrigin https://app.example.com http://*.example.com:8080
</Location>
<Location /o-list/same>
    WebSocketOrigin same
</Location>
<Location /o-any>
    SetHandler websocket
    WebSocketHandler {so}
    WebSocketHandlerOption LogFile {log}
    WebSocketOrigin any
</Location>
<Location /frame>
    SetHandler websocket
    WebSocketHandler {echo}
    WebSocketMaxFrameSize 1000
</Location>
<Location /frame2k>
    SetHandler websocket
    WebSocketHandler {echo}
    WebSocketMaxFrameSize 2K
</Location>
<Location /cap>
    SetHandler websocket
    WebSocketHandler {so}
    WebSocketHandlerOption LogFile {log}
    WebSocketMaxConnections 3
</Location>
<Location /peraddr>
    SetHandler websocket
    WebSocketHandler {so}
    WebSocketHandlerOption LogFile {log}
    WebSocketMaxConnectionsPerAddress 2
</Location>
"""

CAP = 3
PER_ADDR = 2


@pytest.fixture(scope="module")
def hard(env):
    require_test_handlers()
    prepare_events(env)
    more = LOCATIONS.format(echo=MOD_ECHO, so=hardutil_test_so(), log=events_path(env))
    env.restart(locations=api_locations(env, more))
    yield Events(events_path(env))
    env.restart()


def hardutil_test_so():
    from apiutil import TEST_SO
    return TEST_SO


# ---- WebSocketOrigin ------------------------------------------------------------------

ORIGIN_CASES = [
    # path, Origin (None: no header), Host, expected status; {P} is the
    # server's port: same origin is the server's scheme, name and port,
    # whatever the Host header says (see test_1150_origin_same)
    ("/o-same", None, "localhost", 101),                       # not a browser
    ("/o-same", "http://localhost:{P}", "localhost", 101),     # same origin
    ("/o-same", "HTTP://LocalHost:{P}", "localhost", 101),     # case-insensitive
    ("/o-same", "http://localhost:8123", "localhost:8123", 403),  # Host is no proof
    ("/o-same", "http://evil.example", "localhost", 403),      # foreign page
    ("/o-same", "http://localhost:81", "localhost", 403),      # other port
    ("/o-same", "http://localhost", "localhost:81", 403),
    ("/o-same", "null", "localhost", 403),                     # opaque origin
    ("/o-same", "http://localhost.evil.example", "localhost", 403),
    ("/o-list", "https://app.example.com", "localhost", 101),  # exact
    ("/o-list", "HTTPS://APP.EXAMPLE.COM", "localhost", 101),
    ("/o-list", "http://app.example.com", "localhost", 403),   # scheme differs
    ("/o-list", "https://app.example.com:8443", "localhost", 403),  # port differs
    ("/o-list", "https://www.app.example.com", "localhost", 403),
    ("/o-list", "http://a.example.com:8080", "localhost", 101),     # *.example.com
    ("/o-list", "http://x.y.example.com:8080", "localhost", 101),   # any depth
    ("/o-list", "http://example.com:8080", "localhost", 403),       # not the domain
    ("/o-list", "http://evilexample.com:8080", "localhost", 403),
    ("/o-list", "http://a.example.com", "localhost", 403),          # port missing
    ("/o-list", "http://a.example.com:80800", "localhost", 403),
    ("/o-list", "http://a.example.com.evil:8080", "localhost", 403),
    ("/o-list", "https://a.example.com:8080", "localhost", 403),    # scheme
    ("/o-list", "http://localhost:{P}", "localhost", 101),  # same-origin still passes
    ("/o-list", None, "localhost", 101),
    ("/o-list/same", "https://app.example.com", "localhost", 403),  # inner override
    ("/o-list/same", "http://localhost:{P}", "localhost", 101),
    ("/o-any", "http://evil.example", "localhost", 101),
    ("/o-any", "null", "localhost", 101),
    ("/o-any", None, "localhost", 101),
]


@pytest.mark.parametrize("path,origin,host,status", ORIGIN_CASES)
def test_mws_1100_01_origin(env, hard, path, origin, host, status):
    since = hard.mark()
    if origin is not None:
        origin = origin.replace("{P}", str(env.http_port))
    hdrs = [("Origin", origin)] if origin is not None else []
    r = hardutil.upgrade(env, path, hdrs, host=host)
    assert r.status == status, (path, origin, host, r)
    if status == 403:
        # refused before the upgrade: no 101 headers, the handler never ran
        assert r.header("Sec-WebSocket-Accept") is None, r
        time.sleep(0.2)
        assert hard.of("open", since=since) == [], hard.all(since)
    else:
        assert r.header("Sec-WebSocket-Accept") is not None, r


def test_mws_1100_02_origin_refusal_logged(env, hard):
    off = os.path.getsize(env.error_log)
    r = hardutil.upgrade(env, "/o-same", [("Origin", "http://attacker.example")])
    assert r.status == 403
    assert wait_until(lambda: hardutil.error_lines(
        env, off, r"MWS00018.*attacker\.example.*WebSocketOrigin"), timeout=5)


def test_mws_1100_03_origin_same_then_echo(env, hard):
    """A same-origin browser request gets a working WebSocket."""
    ws = env.ws("/o-same", headers=[("Origin", "http://%s:%d" % (env.host, env.http_port))])
    assert ws.echo(OP_TEXT, "hello") == (OP_TEXT, b"hello")
    ws.send_close(1000)
    ws.expect_close(1000, reply=False)
    ws.close()


# ---- WebSocketMaxFrameSize --------------------------------------------------------------

@pytest.mark.parametrize("path,limit", [("/frame", 1000), ("/frame2k", 2048)])
def test_mws_1100_10_frame_at_limit_passes(env, hard, path, limit):
    ws = env.ws(path)
    assert ws.echo(OP_BINARY, b"a" * limit) == (OP_BINARY, b"a" * limit)
    # a message of several frames, each at the limit, is larger than it
    assert ws.echo(OP_BINARY, b"b" * (3 * limit), fragments=3) == (OP_BINARY, b"b" * (3 * limit))
    ws.close()


@pytest.mark.parametrize("path,limit", [("/frame", 1000), ("/frame2k", 2048)])
@pytest.mark.parametrize("fragmented", [False, True])
def test_mws_1100_11_frame_over_limit_1009(env, hard, path, limit, fragmented):
    ws = env.ws(path)
    if fragmented:
        # the first fragment is fine, the second one too large
        ws.send_frame(OP_BINARY, b"x" * 10, fin=False)
        ws.send_frame(0, b"y" * (limit + 1), fin=True)
    else:
        ws.send_frame(OP_TEXT, b"x" * (limit + 1))
    ws.expect_close(1009, timeout=5)
    ws.close()


def test_mws_1100_12_frame_limit_before_payload(env, hard):
    """Only the header of an oversized frame is sent: 1009 comes at once,
    the server does not wait for the payload."""
    ws = env.ws("/frame")
    frame = build_frame(OP_BINARY, b"z" * 5000)
    ws.send_raw(frame[:8])  # 2 + 2 length bytes + 4 mask bytes
    t0 = time.monotonic()
    code, _ = ws.expect_close(1009, timeout=3, reply=True)
    assert time.monotonic() - t0 < 2.0
    ws.close()


# ---- a frame header declaring 2^62 bytes ------------------------------------------------

def test_mws_1100_20_huge_length_1009_no_memory(env, hard):
    pids = hardutil.httpd_pids(env)
    # warm up every child a little so that first-use allocations do not count
    for _ in range(2 * len(pids)):
        ws = env.ws("/echo")
        ws.echo(OP_BINARY, b"w" * 70000)
        ws.close()
    time.sleep(0.5)
    before = hardutil.rss_kib(pids)
    for i in range(30):
        ws = env.ws("/echo")
        hdr = build_frame(OP_BINARY, b"", length=2 ** 62, len_bytes=8)
        t0 = time.monotonic()
        ws.send_raw(hdr)
        code, _ = ws.expect_close(1009, timeout=3)
        assert time.monotonic() - t0 < 1.5, "1009 took %.2fs" % (time.monotonic() - t0)
        ws.close()
    # the declared length with payload following it: still refused
    ws = env.ws("/echo")
    ws.send_raw(build_frame(OP_BINARY, b"", length=2 ** 62, len_bytes=8) + b"q" * 65536)
    ws.expect_close(1009, timeout=3)
    ws.close()
    time.sleep(0.5)
    after = hardutil.rss_kib(hardutil.httpd_pids(env))
    assert after - before < 2048, "server RSS grew from %d to %d KiB" % (before, after)


@pytest.mark.parametrize("length,code", [(2 ** 63, 1002), (2 ** 64 - 1, 1002),
                                         (2 ** 62, 1009), (2 ** 32, 1009)])
def test_mws_1100_21_64bit_lengths(env, hard, length, code):
    """The most significant bit of a 64-bit length must be 0 (RFC 6455
    5.2): 1002; other huge lengths are over the message limit: 1009."""
    ws = env.ws("/frame")
    ws.send_raw(build_frame(OP_BINARY, b"", length=length, len_bytes=8))
    ws.expect_close(code, timeout=3)
    ws.close()


# ---- WebSocketMaxConnections / PerAddress -------------------------------------------------

_close_all = hardutil.close_all


def _wait_admitted(env, path, timeout=10.0):
    """Capacity comes back when the server has finished the connection:
    poll until an upgrade succeeds; returns the client."""
    deadline = time.monotonic() + timeout
    while True:
        r = hardutil.upgrade(env, path)
        if r.status == 101:
            return True
        assert r.status == 503, r
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


def test_mws_1100_30_max_connections_503(env, hard):
    since = hard.mark()
    clients = [env.ws("/cap") for _ in range(CAP)]
    try:
        pids = {ident(ws)[0] for ws in clients}
        if env.mpm == "prefork":
            # one process per connection: the count holds across children
            assert len(pids) == CAP, pids
        for _ in range(3):
            r = hardutil.upgrade(env, "/cap")
            assert r.status == 503, r
            assert r.header("Retry-After") == "5", r
            assert r.header("Sec-WebSocket-Accept") is None
        # the open ones keep working
        for ws in clients:
            assert cmd(ws, "note still-here") == "noted"
        # refused upgrades never reached on_open
        assert len(hard.of("open", since=since)) == CAP
        # capacity comes back after a close
        ws = clients.pop()
        _close_all([ws])
        assert _wait_admitted(env, "/cap"), "capacity not given back after close"
        # and after an abrupt end (TCP reset) too
        ws = clients.pop()
        hardutil_abort(ws)
        assert _wait_admitted(env, "/cap"), "capacity not given back after a reset"
        # CAP - 2 held now; the probes above hold a slot until the server
        # has seen them go: fill up again, retrying while they drain
        clients += [_ws_retry(env, "/cap") for _ in range(2)]
        r = hardutil.upgrade(env, "/cap")
        assert r.status == 503, r
    finally:
        _close_all(clients)
    env.allow_error(r"MWS00024")


def _ws_retry(env, path, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return env.ws(path)
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def hardutil_abort(ws):
    import socket
    import struct
    ws.conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    ws.close()


def test_mws_1100_31_max_connections_many_rounds(env, hard):
    """Open to the cap and close, repeatedly: no count is lost or kept."""
    for _ in range(5):
        clients = [env.ws("/cap") for _ in range(CAP)]
        assert hardutil.upgrade(env, "/cap").status == 503
        _close_all(clients)
        assert _wait_admitted(env, "/cap")
    # all slots are free again: CAP at once
    assert wait_until(lambda: _try_fill(env, CAP), timeout=10)


def _try_fill(env, n):
    got = []
    try:
        for _ in range(n):
            got.append(env.ws("/cap"))
        return True
    except Exception:
        return False
    finally:
        _close_all(got)


def test_mws_1100_32_per_address(env, hard):
    a = [hardutil.ws_from(env, "/peraddr", "127.0.0.1") for _ in range(PER_ADDR)]
    try:
        r = hardutil.upgrade_from(env, "/peraddr", "127.0.0.1")
        assert r.status == 503, r
        assert r.header("Retry-After") == "5", r
        # another client address is not affected
        b = [hardutil.ws_from(env, "/peraddr", "127.0.0.2") for _ in range(PER_ADDR)]
        a += b
        assert hardutil.upgrade_from(env, "/peraddr", "127.0.0.2").status == 503
        assert cmd(b[0], "ip").endswith("127.0.0.2")
        # locations without the cap do not count and are not limited
        extra = [hardutil.ws_from(env, "/echo", "127.0.0.1") for _ in range(3)]
        _close_all(extra)
        # one closes: that address may open one again
        ws = a.pop(0)
        _close_all([ws])
        deadline = time.monotonic() + 10
        while hardutil.upgrade_from(env, "/peraddr", "127.0.0.1").status != 101:
            assert time.monotonic() < deadline, "per-address capacity not given back"
            time.sleep(0.1)
    finally:
        _close_all(a)


# ---- a handler error in the middle of a connection ---------------------------------------

@pytest.mark.allow_errors(r"MWS00007")
def test_mws_1100_40_handler_error_1011(env, hard):
    since = hard.mark()
    off = os.path.getsize(env.error_log)
    ws = env.ws("/o-same")
    key = ident(ws)
    assert ws.echo(OP_TEXT, "before") == (OP_TEXT, b"before")
    ws.send_message(OP_TEXT, "fail")
    ws.expect_close(1011, timeout=5)
    ws.close()
    closes = hard.wait_close(key)
    assert len(closes) == 1, closes
    assert closes[0].code == 1011, closes
    lines = wait_until(lambda: hardutil.error_lines(
        env, off, r"\[(?:websocket:)?error\].*MWS00007.*handler test \(.*\) returned an error"),
        timeout=5)
    assert lines, env.error_log_since(off)
    # the other connections are not affected
    ws2 = env.ws("/o-same")
    assert ws2.echo(OP_TEXT, "after") == (OP_TEXT, b"after")
    ws2.close()

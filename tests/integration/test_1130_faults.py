"""Hardening (issue 4), faults, on a server with `Timeout 3` and without
mod_reqtimeout:

* a handshake that stops part way is cut off at `Timeout` (a client that
  dribbles a byte more often than every `Timeout` seconds is not: that
  takes mod_reqtimeout, see test_1120);
* abrupt TCP reset (SO_LINGER 0) at rest, in the middle of a frame and
  while the server writes; half-close (shutdown(SHUT_WR)) after a message;
  a client that never answers the server's close: each connection ends,
  the handler's on_close runs exactly once, and the server's descriptors
  and threads come back to where they were.
"""
import socket
import struct
import time

import pytest

import hardutil
import wsclient
from apiutil import (OP_BINARY, OP_TEXT, Events, api_locations, events_path, ident,
                     prepare_events, require_test_handlers, wait_until, TEST_SO)
from conftest import MOD_ECHO
from wsclient import build_frame

TIMEOUT = 3

LOCATIONS = """
<Location /echo>
    SetHandler websocket
    WebSocketHandler {echo}
</Location>
<Location /closeto>
    SetHandler websocket
    WebSocketHandler {so}
    WebSocketHandlerOption LogFile {log}
    WebSocketCloseTimeout 1
</Location>
"""


@pytest.fixture(scope="module")
def flt(env):
    require_test_handlers()
    prepare_events(env)
    more = LOCATIONS.format(echo=MOD_ECHO, so=TEST_SO, log=events_path(env))
    env.restart(extra="Timeout %d\n" % TIMEOUT, locations=api_locations(env, more))
    yield Events(events_path(env))
    env.restart()


def rst(ws):
    ws.conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    ws.close()


# ---- a handshake that stops --------------------------------------------------------------

@pytest.mark.parametrize("partial", [b"G", b"GET /echo HTTP/1.1\r\n",
                                     b"GET /echo HTTP/1.1\r\nHost: localhost\r\nUpgr"])
def test_mws_1130_01_stalled_handshake_cut_at_timeout(env, flt, partial):
    s = socket.create_connection((env.host, env.http_port), timeout=TIMEOUT + 10)
    try:
        s.sendall(partial)
        t0 = time.monotonic()
        got = b""
        for _ in range(1000):
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                break
            got += chunk
        took = time.monotonic() - t0
    finally:
        s.close()
    assert TIMEOUT - 0.5 <= took <= TIMEOUT + 2.0, "cut off after %.2fs" % took
    if got:
        assert got.startswith(b"HTTP/1.1 408 ") or got.startswith(b"HTTP/1.1 400 "), got[:80]


# ---- faults during a WebSocket -------------------------------------------------------------

def fault_reset_idle(env):
    ws = env.ws("/t")
    key = ident(ws)
    rst(ws)
    return key


def fault_reset_mid_frame(env):
    ws = env.ws("/t")
    key = ident(ws)
    ws.send_raw(build_frame(OP_BINARY, b"r" * 20000)[:7000])
    time.sleep(0.05)
    rst(ws)
    return key


def fault_reset_while_writing(env):
    ws = env.ws("/t")
    key = ident(ws)
    ws.send_message(OP_TEXT, "flood 100 65536")
    ws.recv_frame(timeout=5)      # writing has begun
    rst(ws)
    return key


def fault_half_close(env):
    ws = env.ws("/t")
    key = ident(ws)
    ws.send_message(OP_TEXT, "last words")
    ws.conn.sock.shutdown(socket.SHUT_WR)
    # the server ends the connection (it may or may not echo first)
    took, frames = hardutil.wait_eof(ws, 10)
    assert all(f.opcode == OP_TEXT and f.payload == b"last words" for f in frames), frames
    ws.close()
    return key


def fault_never_answers_close(env):
    ws = env.ws("/closeto")
    key = ident(ws)
    ws.send_message(OP_TEXT, "close 1000 bye")
    before, f = ws.read_until_close(timeout=5)
    assert f is not None and f.close_info() == (1000, b"bye")
    took, frames = hardutil.wait_eof(ws, 10)     # never answered
    assert took <= 2.5, took
    ws.close()
    return key


FAULTS = {
    "reset": (fault_reset_idle, 1006),
    "reset-mid-frame": (fault_reset_mid_frame, 1006),
    "reset-while-writing": (fault_reset_while_writing, 1006),
    "half-close": (fault_half_close, 1006),
    "never-answers-close": (fault_never_answers_close, 1006),
}


def warm_up(env):
    for _ in range(6):
        ws = env.ws("/t")
        ident(ws)
        ws.send_close(1000)
        ws.expect_close(1000, reply=False)
        ws.close()


@pytest.mark.parametrize("kind", list(FAULTS))
def test_mws_1130_10_fault_ends_once_nothing_leaks(env, flt, kind):
    fn, code = FAULTS[kind]
    warm_up(env)
    time.sleep(0.5)
    base = hardutil.snapshot(env)
    since = flt.mark()
    keys = [fn(env) for _ in range(8)]
    for k in keys:
        closes = flt.wait_close(k, timeout=15, settle=0.0)
        assert len(closes) == 1, (k, closes)
    time.sleep(0.5)
    for k in keys:
        closes = flt.of("close", k, since=since)
        assert [e.code for e in closes] == [code], (kind, k, closes)
    assert flt.violations(since) == []
    # every connection's descriptors are given back
    over = hardutil.fds_back(env, base["fds"], margin=1, timeout=15)
    assert not over, "descriptors not back (pid: (before, now)): %r" % over
    # and the threads (handler threads, drivers)
    assert wait_until(lambda: hardutil.threads(
        [p for p in base["pids"] if hardutil.fd_count(p)]) <= base["threads"] + 1, timeout=15), \
        (base["threads"], hardutil.threads(base["pids"]))
    # the server still serves
    ws = env.ws("/echo")
    assert ws.echo(OP_TEXT, "after %s" % kind) == (OP_TEXT, b"after " + kind.encode())
    ws.close()

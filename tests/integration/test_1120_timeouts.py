"""Hardening (issue 4), time limits, on a server with `Timeout 3` and
mod_reqtimeout (`RequestReadTimeout header=2`):

* WebSocketIdleTimeout: the server pings ("idle?") a silent client and
  closes with 1001 "idle timeout" when no pong comes within
  WebSocketCloseTimeout; a client that pongs (or talks) stays.
* WebSocketPingInterval: pings come at the interval.
* WebSocketCloseTimeout: after the server's close, a client that never
  answers is disconnected within the timeout; on_close runs once (1006:
  the close handshake did not complete).  On the event MPM the parked
  connection is subject to `Timeout` too, so there the shorter one applies.
* A slowloris handshake (a byte every 250 ms) is cut off by mod_reqtimeout
  after header=2 seconds with 408.
* A client that stops in the middle of a frame: with WebSocketIdleTimeout
  it is pinged and closed with 1001 on every MPM.  Without it, httpd's
  `Timeout` bounds it: the event MPM closes the parked connection (the
  keep-alive pings need client input, which a stalled client does not
  send); the blocking driver (prefork, worker) closes with 1001 "timeout".
"""
import socket
import time

import pytest

import hardutil
import wsclient
from apiutil import (OP_BINARY, OP_TEXT, Events, api_locations, cmd, events_path, ident,
                     prepare_events, require_test_handlers, TEST_SO)
from conftest import HTTPD_MODULES, MOD_ECHO
from wsclient import OP_CLOSE, OP_PING, build_frame

TIMEOUT = 3
HEADER_TIMEOUT = 2

EXTRA = """
Timeout {timeout}
LoadModule reqtimeout_module {modules}/mod_reqtimeout.so
RequestReadTimeout header={header} body=5
"""

LOCATIONS = """
<Location /echo>
    SetHandler websocket
    WebSocketHandler {echo}
</Location>
<Location /idle>
    SetHandler websocket
    WebSocketHandler {so}
    WebSocketHandlerOption LogFile {log}
    WebSocketIdleTimeout 1
    WebSocketCloseTimeout 1
</Location>
<Location /pingint>
    SetHandler websocket
    WebSocketHandler {echo}
    WebSocketPingInterval 500ms
</Location>
<Location /closeto>
    SetHandler websocket
    WebSocketHandler {so}
    WebSocketHandlerOption LogFile {log}
    WebSocketCloseTimeout 1
</Location>
"""


@pytest.fixture(scope="module")
def tmo(env):
    require_test_handlers()
    prepare_events(env)
    more = LOCATIONS.format(echo=MOD_ECHO, so=TEST_SO, log=events_path(env))
    env.restart(extra=EXTRA.format(timeout=TIMEOUT, modules=HTTPD_MODULES,
                                   header=HEADER_TIMEOUT),
                locations=api_locations(env, more))
    yield Events(events_path(env))
    env.restart()


def next_frame_skipping_keepalive(ws, deadline):
    """Next frame, skipping the empty keep-alive pings of the parked driver."""
    while True:
        f = ws.recv_frame(max(0.05, deadline - time.monotonic()))
        if f is not None and f.opcode == OP_PING and f.payload == b"":
            continue
        return f


# ---- WebSocketIdleTimeout -----------------------------------------------------------------

def test_mws_1120_01_idle_no_pong_1001(env, tmo):
    ws = env.ws("/idle")
    key = ident(ws)
    t0 = time.monotonic()
    f = next_frame_skipping_keepalive(ws, t0 + 5)
    t_ping = time.monotonic() - t0
    assert f is not None and f.opcode == OP_PING and f.payload == b"idle?", f
    assert 0.7 <= t_ping <= 2.5, "idle ping after %.2fs (WebSocketIdleTimeout 1)" % t_ping
    # no pong: close 1001 one WebSocketCloseTimeout later
    f = next_frame_skipping_keepalive(ws, time.monotonic() + 5)
    t_close = time.monotonic() - t0
    assert f is not None and f.opcode == OP_CLOSE, f
    assert f.close_info() == (1001, b"idle timeout"), f.close_info()
    assert 1.5 <= t_close <= 4.0, "closed after %.2fs" % t_close
    ws.send_close(1001)
    ws.expect_eof(timeout=5)
    ws.close()
    closes = tmo.wait_close(key)
    assert [(e.code, e.reason) for e in closes] == [(1001, b"idle timeout")], closes


def test_mws_1120_02_idle_client_that_pongs_stays(env, tmo):
    ws = env.ws("/idle")
    key = ident(ws)
    t0 = time.monotonic()
    pings = 0
    while time.monotonic() - t0 < 4.5:
        f = ws.recv_frame(timeout=3)
        assert f is not None and f.opcode == OP_PING, f
        if f.payload == b"idle?":
            pings += 1
        ws.send_frame(wsclient.OP_PONG, f.payload)
    assert pings >= 2, pings
    assert ws.echo(OP_TEXT, "alive") == (OP_TEXT, b"alive")
    assert tmo.of("close", key) == []
    ws.send_close(1000)
    ws.expect_close(1000, reply=False)
    ws.close()


def echo_skipping_pings(ws, payload, timeout=5):
    """Echo a text message, answering any ping that comes first."""
    ws.send_message(OP_TEXT, payload)
    deadline = time.monotonic() + timeout
    while True:
        f = ws.recv_frame(max(0.05, deadline - time.monotonic()))
        assert f is not None
        if f.opcode == OP_PING:
            ws.send_frame(wsclient.OP_PONG, f.payload)
            continue
        assert (f.opcode, f.payload) == (OP_TEXT, payload.encode()), f
        return


def test_mws_1120_03_idle_client_that_talks_stays(env, tmo):
    ws = env.ws("/idle")
    for i in range(15):         # 4.5 s, a message every 300 ms
        echo_skipping_pings(ws, "m%d" % i)
        time.sleep(0.3)
    ws.close()


# ---- WebSocketPingInterval -----------------------------------------------------------------

def test_mws_1120_10_ping_interval(env, tmo):
    ws = env.ws("/pingint")
    t0 = time.monotonic()
    times = []
    while time.monotonic() - t0 < 3.3:
        f = ws.recv_frame(timeout=2)
        assert f is not None and f.opcode == OP_PING, f
        times.append(time.monotonic() - t0)
        ws.send_frame(wsclient.OP_PONG, f.payload)   # a good client
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert 5 <= len(times) <= 8, times
    assert all(0.3 <= g <= 0.9 for g in gaps), gaps
    assert ws.echo(OP_TEXT, "still there") == (OP_TEXT, b"still there")
    ws.close()


# ---- WebSocketCloseTimeout -----------------------------------------------------------------

@pytest.mark.parametrize("path,limit", [("/closeto", 1.0), ("/t", 5.0)])
def test_mws_1120_20_close_timeout(env, tmo, path, limit):
    ws = env.ws(path)
    key = ident(ws)
    ws.send_message(OP_TEXT, "close 4000 bye")
    before, f = ws.read_until_close(timeout=5)
    t0 = time.monotonic()
    assert f is not None and f.close_info() == (4000, b"bye"), f
    # never answer: the server ends TCP after WebSocketCloseTimeout; on the
    # event MPM the parked connection is also subject to Timeout (client
    # input resets it), so the shorter of the two applies there
    if env.mpm == "event":
        limit = min(limit, TIMEOUT)
    took, frames = hardutil.wait_eof(ws, limit + 5)
    assert frames == [], frames
    assert limit - 0.5 <= took <= limit + 1.5, "TCP closed %.2fs after our close" % took
    ws.close()
    closes = tmo.wait_close(key, settle=0.5)
    assert len(closes) == 1, closes
    assert closes[0].code == 1006, closes


# ---- slowloris -----------------------------------------------------------------------------

def dribble(env, data, step=0.25, limit=20.0):
    """Send data one byte every step seconds until the server answers or
    closes; returns (seconds, response bytes, bytes sent)."""
    s = socket.create_connection((env.host, env.http_port), timeout=5)
    t0 = time.monotonic()
    got = b""
    sent = 0
    try:
        for i in range(int(limit / step) + 1):
            if i < len(data):
                try:
                    s.send(data[i:i + 1])
                    sent += 1
                except OSError:
                    break
            s.settimeout(step)
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                break
            if not chunk:
                break
            got += chunk
            s.settimeout(5)
            while True:       # the rest of the answer, up to EOF
                try:
                    chunk = s.recv(65536)
                except OSError:
                    break
                if not chunk:
                    break
                got += chunk
            break
        return time.monotonic() - t0, got, sent
    finally:
        s.close()


def test_mws_1120_30_slowloris_reqtimeout(env, tmo):
    req = wsclient.build_request("GET", "/echo", host="localhost",
                                 headers=wsclient.upgrade_headers())
    took, got, sent = dribble(env, req)
    assert sent < len(req), "the whole handshake went through"
    assert HEADER_TIMEOUT - 0.5 <= took <= HEADER_TIMEOUT + 2.0, \
        "cut off after %.2fs (header=%d)" % (took, HEADER_TIMEOUT)
    if got:
        assert got.startswith(b"HTTP/1.1 408 "), got[:100]


# ---- a client that stops in the middle of a frame ------------------------------------------

def test_mws_1120_31_stop_mid_frame_default(env, tmo):
    """Without WebSocketIdleTimeout, httpd's Timeout bounds a silent client:
    the event MPM closes the parked connection (EOF, on_close 1006); the
    blocking driver (prefork, worker) closes with 1001 "timeout" and ends
    TCP after WebSocketCloseTimeout (5 s) when the client does not answer."""
    ws = env.ws("/t")
    key = ident(ws)
    frame = build_frame(OP_BINARY, b"m" * 10000)
    ws.send_raw(frame[:5000])
    t0 = time.monotonic()
    if env.mpm == "event":
        took, frames = hardutil.wait_eof(ws, TIMEOUT + 10)
        assert TIMEOUT - 0.5 <= took <= TIMEOUT + 2.0, \
            "stalled client dropped after %.2fs (Timeout %d)" % (took, TIMEOUT)
        assert all(f.opcode == OP_PING for f in frames), frames
        code = 1006
    else:
        before, f = ws.read_until_close(timeout=TIMEOUT + 5)
        took = time.monotonic() - t0
        assert f is not None and f.close_info() == (1001, b"timeout"), (before, f)
        assert TIMEOUT - 0.5 <= took <= TIMEOUT + 2.0, "1001 after %.2fs" % took
        assert all(b.opcode == OP_PING for b in before), before
        took, frames = hardutil.wait_eof(ws, 5 + 5)       # never answered
        assert took <= 5 + 1.5, "TCP closed %.2fs after the 1001" % took
        code = 1001
    ws.close()
    closes = tmo.wait_close(key)
    assert [e.code for e in closes] == [code], closes


def test_mws_1120_32_stop_mid_frame_idle_timeout(env, tmo):
    ws = env.ws("/idle")
    key = ident(ws)
    frame = build_frame(OP_BINARY, b"m" * 10000)
    ws.send_raw(frame[:5000])
    t0 = time.monotonic()
    before, f = ws.read_until_close(timeout=6)
    assert f is not None and f.close_info() == (1001, b"idle timeout"), (before, f)
    assert any(b.opcode == OP_PING and b.payload == b"idle?" for b in before), before
    took, _ = hardutil.wait_eof(ws, 5)
    assert time.monotonic() - t0 <= 4.5
    ws.close()
    closes = tmo.wait_close(key)
    assert [e.code for e in closes] == [1001], closes

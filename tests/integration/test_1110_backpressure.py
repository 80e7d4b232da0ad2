"""Hardening (issue 4), back-pressure: WebSocketMaxQueuedBytes closes a
client that does not read with 1008 while the sending thread and the other
connections go on unhindered; at a graceful restart everything queued
before the 1001 reaches the client first.
"""
import socket
import struct
import subprocess
import threading
import time

import pytest

import hardutil
import wsclient
from apiutil import (OP_BINARY, OP_TEXT, Events, api_locations, cmd, events_path, ident,
                     prepare_events, recv_text, require_test_handlers, wait_until, TEST_SO)
from conftest import HTTPD, MOD_ECHO

QCAP = 256 * 1024

LOCATIONS = """
<Location /echo>
    SetHandler websocket
    WebSocketHandler {echo}
</Location>
<Location /q>
    SetHandler websocket
    WebSocketHandler {so}
    WebSocketHandlerOption LogFile {log}
    WebSocketMaxQueuedBytes {qcap}
</Location>
"""


@pytest.fixture(scope="module")
def bp(env):
    require_test_handlers()
    prepare_events(env)
    more = LOCATIONS.format(echo=MOD_ECHO, so=TEST_SO, log=events_path(env), qcap=QCAP)
    env.restart(locations=api_locations(env, more))
    yield Events(events_path(env))
    env.restart()


def slow_ws(env, path, rcvbuf=32768):
    """A client with a small receive buffer (so that the server's socket
    fills up soon when it does not read)."""
    return hardutil.ws_rcvbuf(env, path, rcvbuf)


def flood_line(ev, key, timeout=20):
    evs = ev.wait("flood", key, 1, timeout)
    assert evs, "no flood line for %r: %r" % (key, ev.all())
    return evs[0]


class Pinger(threading.Thread):
    """Echoes on another connection every 50 ms and records the worst
    round trip."""

    def __init__(self, env, path="/echo"):
        super().__init__(daemon=True)
        self.ws = env.ws(path)
        self.stop = threading.Event()
        self.worst = 0.0
        self.count = 0
        self.error = None

    def run(self):
        try:
            for i in range(2000):  # bounded
                if self.stop.is_set():
                    break
                t0 = time.monotonic()
                msg = b"ping %d" % i
                assert self.ws.echo(OP_BINARY, msg, timeout=10) == (OP_BINARY, msg)
                self.worst = max(self.worst, time.monotonic() - t0)
                self.count += 1
                time.sleep(0.05)
        except Exception as e:  # reported by the test
            self.error = e

    def finish(self):
        self.stop.set()
        self.join(20)
        self.ws.close()


def test_mws_1110_01_slow_reader_1008(env, bp):
    since = bp.mark()
    pinger = Pinger(env)
    pinger.start()
    slow = slow_ws(env, "/q")
    key = ident(slow)
    # a reader on another connection of the same location, flooded too
    fast = env.ws("/q")
    fkey = ident(fast)
    t0 = time.monotonic()
    slow.send_message(OP_TEXT, "flood 400 65536")   # 25 MiB, the client reads nothing
    fast.send_message(OP_TEXT, "flood 200 1000")    # 200 KB, read as it comes
    for j in range(200):
        op, payload = fast.recv_message(timeout=10)
        assert op == OP_BINARY and struct.unpack("!Q", payload[:8])[0] == j
    assert recv_text(fast, timeout=10) == "flood done 200 0"
    fast_time = time.monotonic() - t0
    # the sending thread of the slow reader was never blocked
    fl = flood_line(bp, key)
    assert int(fl.get("toobig")) >= 1, fl
    assert int(fl.get("toobig")) + int(fl.get("closed")) + int(fl.get("ok")) == 400, fl
    assert int(fl.get("other")) == 0, fl
    assert int(fl.get("ms")) < 3000, "sends blocked for %s ms" % fl.get("ms")
    time.sleep(1.0)
    pinger.finish()
    assert pinger.error is None, pinger.error
    assert pinger.count >= 5
    assert pinger.worst < 1.0, "another connection stalled for %.2fs" % pinger.worst
    assert fast_time < 10
    # now read: a prefix of the messages, in order, then 1008
    got = 0
    deadline = time.monotonic() + 20
    while True:
        f = slow.recv_frame(max(0.1, deadline - time.monotonic()))
        assert f is not None, "EOF without a close after %d messages" % got
        if f.opcode == wsclient.OP_CLOSE:
            code, reason = f.close_info()
            break
        assert f.opcode == OP_BINARY, f
        num = struct.unpack("!Q", f.payload[:8])[0]
        assert num == got, ("message %d arrived where %d was due: frames were dropped for "
                            "the overflow and a later send slipped in before the 1008"
                            % (num, got))
        got += 1
    assert code == 1008, (code, reason)
    assert reason == b"send queue limit exceeded", reason
    assert got < 400
    slow.send_close(1008)
    slow.expect_eof(timeout=10)
    slow.close()
    closes = bp.wait_close(key)
    assert [e.code for e in closes] == [1008], closes
    fast.close()
    assert len(bp.wait_close(fkey)) == 1


def test_mws_1110_02_one_big_message_fits_empty_queue(env, bp):
    """One message larger than the limit is accepted into an empty queue
    (documented): a 2 x cap message is echoed whole."""
    ws = env.ws("/q")
    big = bytes(range(256)) * (QCAP * 2 // 256)
    assert ws.echo(OP_BINARY, big, timeout=20) == (OP_BINARY, big)
    assert ws.echo(OP_TEXT, "still open") == (OP_TEXT, b"still open")
    ws.close()


def test_mws_1110_02b_second_send_behind_big_one_1008(env, bp):
    """A second send while more than the cap waits fails, and the
    connection is closed with 1008 after the waiting frames are dropped
    (documented): "queued N" sends N bytes and then its reply in the same
    callback, so the client sees only the close."""
    ws = env.ws("/q")
    key = ident(ws)
    ws.send_message(OP_TEXT, "queued %d" % (QCAP * 2))
    before, f = ws.read_until_close(timeout=10)
    assert f is not None and f.close_info() == (1008, b"send queue limit exceeded"), (before, f)
    ws.send_close(1008)
    ws.expect_eof(timeout=10)
    ws.close()
    assert [e.code for e in bp.wait_close(key)] == [1008]


def test_mws_1110_03_reader_below_cap_gets_everything(env, bp):
    """A client that reads gets every message even when the total is far
    above the cap: the cap is on what waits, not on what is sent."""
    ws = env.ws("/q")
    n, size = 300, 16384        # 4.9 MB through a 256 KiB queue
    ws.send_message(OP_TEXT, "flood %d %d" % (n, size))
    # read as fast as possible; the sender may still overrun the cap if it
    # is faster than loopback, so only check what the server promised:
    # whatever arrives is in order, and it ends with "flood done" or 1008
    got = 0
    while True:
        f = ws.recv_frame(timeout=20)
        assert f is not None
        if f.opcode == OP_TEXT:
            ok, toobig = map(int, f.payload.split()[2:4])
            assert ok == got and ok + toobig == n
            break
        if f.opcode == wsclient.OP_CLOSE:
            assert f.close_info()[0] == 1008
            break
        assert struct.unpack("!Q", f.payload[:8])[0] == got
        got += 1
    ws.close()


def test_mws_1110_10_graceful_writes_queue_before_1001(env, bp):
    """Queue a burst while the client reads nothing, restart gracefully:
    the client gets the whole burst, then 1001; on_close once."""
    since = bp.mark()
    ws = slow_ws(env, "/t")
    key = ident(ws)
    n, size = 100, 20000     # 2 MB, below the default 16 MiB cap
    ws.send_message(OP_TEXT, "flood %d %d" % (n, size))
    fl = flood_line(bp, key)
    assert fl.get("ok") == str(n), fl
    time.sleep(0.3)           # the "flood done" reply is queued after the line
    r = subprocess.run([HTTPD, "-f", env.conf_path, "-k", "graceful"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    for j in range(n):
        op, payload = ws.recv_message(timeout=20)
        assert op == OP_BINARY and len(payload) == size, (j, op, len(payload))
        assert struct.unpack("!Q", payload[:8])[0] == j
    assert recv_text(ws, timeout=10) == "flood done %d 0" % n
    code, reason = ws.expect_close(1001, timeout=20)
    ws.close()
    closes = bp.wait_close(key, timeout=20)
    assert [e.code for e in closes] == [1001], closes
    # the new generation serves at once
    deadline = time.monotonic() + 20
    while True:
        try:
            ws2 = env.ws("/echo")
            break
        except Exception:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    assert ws2.echo(OP_TEXT, "new generation") == (OP_TEXT, b"new generation")
    ws2.close()

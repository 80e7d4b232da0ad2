"""mod_logio's byte counts stay right on both I/O paths: on the plain-socket
path the module counts for mod_logio what the core filters would have
counted.  The access-log line written when a WebSocket ends carries %I and
%O, the bytes on the wire since the 101's line: on plain HTTP exactly the
client's frames in and the server's frames out; over TLS (filter path) the
encrypted bytes, so a little more than the frames.  The counts of the same
exchange must agree with the module's own (%{websocket-bytes-*}n: frame
bytes) on plain HTTP, and be at least them over TLS.  Under the blocking
driver (prefork, worker) the 101's line is written after the end's, so the
end's line also counts the handshake."""
import os
import time

import pytest

import wsclient
from wsclient import OP_BINARY, OP_TEXT

LOGS = """
LogFormat "%{{websocket-bytes-in}}n %{{websocket-bytes-out}}n %I %O %q" wsio
CustomLog "{root}/logs/ws_io_log" wsio env=websocket-close
"""


@pytest.fixture(scope="module")
def io_env(env):
    env.restart(extra=LOGS.format(root=env.root))
    yield env
    env.restart()


class CountingSock:
    """Wraps the client's socket: the bytes it writes after the handshake."""

    def __init__(self, sock):
        self._sock = sock
        self.sent = 0

    def sendall(self, data):
        self._sock.sendall(data)
        self.sent += len(data)

    def __getattr__(self, name):
        return getattr(self._sock, name)


def frame_len(n, masked):
    return 2 + (2 if 126 <= n <= 65535 else 8 if n > 65535 else 0) + (4 if masked else 0) + n


def exchange(env, tls, tag):
    ws = env.ws("/echo?io=" + tag, tls=tls)
    time.sleep(0.3)     # the 101's line is written: its counts are reset
    counting = CountingSock(ws.conn.sock)
    ws.conn.sock = counting
    sizes = (0, 5, 125, 126, 4000, 70000, 200000)
    out_bytes = 0
    for i, n in enumerate(sizes):
        payload = bytes((i + k) % 256 for k in range(n))
        op = OP_BINARY if i % 2 else OP_TEXT
        if op == OP_TEXT:
            payload = b"a" * n
        assert ws.echo(op, payload) == (op, payload)
        out_bytes += frame_len(n, False)
    ws.send_close(1000)
    f = ws.recv_frame(5)
    assert f is not None and f.opcode == wsclient.OP_CLOSE
    out_bytes += frame_len(len(f.payload), False)
    ws.conn.sock = counting._sock
    ws.close()
    return counting.sent, out_bytes


def io_line(env, tag, timeout=10):
    path = os.path.join(env.root, "logs", "ws_io_log")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path):
            with open(path) as f:
                for ln in f:
                    if ln.rstrip().endswith("io=" + tag):
                        return [int(x) for x in ln.split()[:4]]
        time.sleep(0.05)
    raise AssertionError("no line for %s" % tag)


def test_mws_1211_01_plain_counts_exact(io_env):
    sent, out_bytes = exchange(io_env, False, "plain")
    ws_in, ws_out, logio_in, logio_out = io_line(io_env, "plain")
    assert (ws_in, ws_out) == (sent, out_bytes)
    if io_env.mpm == "event":
        assert (logio_in, logio_out) == (sent, out_bytes)
    else:
        # the blocking driver runs the WebSocket inside the handler: the
        # 101's line is written after the end's, so the end's also counts
        # the handshake (the request in, the 101 out)
        assert 100 <= logio_in - sent <= 1000, (logio_in, sent)
        assert 100 <= logio_out - out_bytes <= 400, (logio_out, out_bytes)


def test_mws_1211_02_tls_counts_the_wire(io_env):
    sent, out_bytes = exchange(io_env, True, "tls")
    ws_in, ws_out, logio_in, logio_out = io_line(io_env, "tls")
    assert (ws_in, ws_out) == (sent, out_bytes)
    # TLS records: headers and MACs on top of the frames, ~1-5 %
    assert sent <= logio_in <= sent * 1.2 + 2000, (logio_in, sent)
    assert out_bytes <= logio_out <= out_bytes * 1.2 + 2000, (logio_out, out_bytes)

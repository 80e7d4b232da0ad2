"""WebSocketMaxMessageSize: 1009 when a message exceeds the limit, the
limit itself passes, and per-location merging."""
import socket

import pytest

import conftest
from wsclient import OP_BINARY, OP_CONT, OP_TEXT, build_frame, utf8_text

LIMIT = conftest.SMALL_LIMIT
KINDS = {"text": OP_TEXT, "binary": OP_BINARY}


def payload(kind, n):
    return utf8_text(n) if kind == "text" else bytes(i & 0xFF for i in range(n))


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("fragments", [None, 2, 4])
def test_mws_600_01_at_limit_passes(env, kind, fragments):
    ws = env.ws("/echo-small")
    try:
        p = payload(kind, LIMIT)
        assert ws.echo(KINDS[kind], p, fragments=fragments) == (KINDS[kind], p)
        # and the connection keeps working after a message at the limit
        assert ws.echo(KINDS[kind], b"0123456789") == (KINDS[kind], b"0123456789")
    finally:
        ws.close()


@pytest.mark.parametrize("kind", list(KINDS))
def test_mws_600_02_whole_over_limit_1009(env, kind):
    ws = env.ws("/echo-small")
    try:
        ws.send_message(KINDS[kind], payload(kind, LIMIT + 1))
        ws.expect_close(1009)
    finally:
        ws.close()


@pytest.mark.parametrize("kind", list(KINDS))
def test_mws_600_03_fragmented_over_limit_1009(env, kind):
    # two fragments of 600 bytes, FIN on the second
    ws = env.ws("/echo-small")
    try:
        p = payload(kind, 1200)
        ws.send_message(KINDS[kind], p, fragments=[600, 600])
        ws.expect_close(1009)
    finally:
        ws.close()


@pytest.mark.parametrize("kind", list(KINDS))
def test_mws_600_04_fragmented_over_limit_before_fin_1009(env, kind):
    # the limit is exceeded by the second fragment and no FIN is sent: the
    # server must not keep buffering until the end of the message
    ws = env.ws("/echo-small")
    try:
        p = payload(kind, 1200)
        assert ws.send_frame(KINDS[kind], p[:600], fin=False)
        assert ws.send_frame(OP_CONT, p[600:], fin=False)
        ws.expect_close(1009)
    finally:
        ws.close()


def test_mws_600_05_many_small_fragments_over_limit_1009(env):
    ws = env.ws("/echo-small")
    try:
        data = build_frame(OP_BINARY, b"a" * 100, fin=False) + \
            b"".join(build_frame(OP_CONT, b"b" * 100, fin=False) for _ in range(10))
        ws.send_raw(data)
        ws.expect_close(1009)
    finally:
        ws.close()


def test_mws_600_06_limit_is_per_message(env):
    # 3 messages of LIMIT bytes: each passes, the limit does not add up
    ws = env.ws("/echo-small")
    try:
        for i in range(3):
            p = bytes([i]) * LIMIT
            assert ws.echo(OP_BINARY, p, fragments=3) == (OP_BINARY, p)
    finally:
        ws.close()


def test_mws_600_07_default_location_allows_1mib(env):
    ws = env.ws("/echo")
    try:
        p = b"\x07" * (1 << 20) + b"\x08" * 5
        assert ws.echo(OP_BINARY, p, fragments=5, timeout=20) == (OP_BINARY, p)
    finally:
        ws.close()


@pytest.mark.parametrize("path, limit", [("/lim", 2048), ("/lim/inner", 512),
                                          ("/lim/inherit", 2048)])
def test_mws_600_08_merge(env, path, limit):
    # /lim sets 2048; /lim/inner overrides it with 512; /lim/inherit has no
    # section of its own and inherits 2048 (and SetHandler/WebSocketHandler)
    ws = env.ws(path)
    try:
        p = b"m" * limit
        assert ws.echo(OP_BINARY, p) == (OP_BINARY, p)
    finally:
        ws.close()
    ws = env.ws(path)
    try:
        ws.send_message(OP_BINARY, b"m" * (limit + 1))
        ws.expect_close(1009)
    finally:
        ws.close()


def test_mws_600_09_default_limit_16mib(env):
    # default WebSocketMaxMessageSize is 16 MiB: 16 MiB + 1 fails with 1009.
    # Announced in the frame header; the server may fail before reading the
    # payload, so the payload is sent in pieces and send errors are ignored.
    ws = env.ws("/echo")
    try:
        n = 16 * 1024 * 1024 + 1
        ws.conn.sock.settimeout(10)
        hdr = build_frame(OP_BINARY, b"", len_bytes=8, length=n)
        # build_frame masks an empty payload: header + mask key only
        ws.send_raw(hdr)
        chunk = b"\0" * 65536  # masked with key... any bytes are fine
        sent = 0
        while sent < n and ws.send_raw(chunk[:min(len(chunk), n - sent)]):
            sent += min(len(chunk), n - sent)
            if sent % (1 << 20) == 0 and _readable(ws.conn.sock):
                break
        ws.expect_close(1009, timeout=15)
    finally:
        ws.close()


def _readable(sock):
    import select
    r, _, _ = select.select([sock], [], [], 0)
    return bool(r)


def test_mws_600_10_exactly_16mib_passes(env):
    ws = env.ws("/echo")
    try:
        p = (bytes(range(256)) * (1 << 16))
        assert len(p) == 16 * 1024 * 1024
        assert ws.echo(OP_BINARY, p, fragments=4, timeout=30) == (OP_BINARY, p)
    finally:
        ws.close()


def test_mws_600_11_restart_with_small_global_limit(env):
    # a server-wide WebSocketMaxMessageSize (outside any <Location>) is
    # inherited by a location that sets none; a location value overrides it
    locs = conftest.WS_LOCATIONS.format(echo=conftest.MOD_ECHO, small=conftest.SMALL_LIMIT,
                                        htpasswd=env.htpasswd)
    try:
        env.restart(extra="WebSocketMaxMessageSize 300\n", locations=locs)
        ws = env.ws("/echo")
        try:
            assert ws.echo(OP_BINARY, b"g" * 300) == (OP_BINARY, b"g" * 300)
            ws.send_message(OP_BINARY, b"g" * 301)
            ws.expect_close(1009)
        finally:
            ws.close()
        ws = env.ws("/echo-small")
        try:
            assert ws.echo(OP_BINARY, b"s" * LIMIT) == (OP_BINARY, b"s" * LIMIT)
        finally:
            ws.close()
    finally:
        env.restart()

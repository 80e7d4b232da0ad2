"""Conformance, group 9 (Autobahn "Limits/Performance"), light: messages
up to 1 MiB, fragmented and chopped, and 1000 small messages in a row."""
import pytest

from wsclient import OP_BINARY, OP_TEXT, build_frame, utf8_text

KINDS = {"text": OP_TEXT, "binary": OP_BINARY}


def _p(kind, n):
    return utf8_text(n, 3) if kind == "text" else (bytes(range(256)) * (n // 256 + 1))[:n]


@pytest.fixture
def ws(env):
    c = env.ws()
    yield c
    c.close()


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("n", [64 * 1024, 256 * 1024, 1024 * 1024])
def test_mws_990_01_large_message(ws, kind, n):  # 9.1 / 9.2
    p = _p(kind, n)
    assert ws.echo(KINDS[kind], p, timeout=20) == (KINDS[kind], p)


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("frag", [64, 1024, 4096, 65536, 262144])
def test_mws_990_03_1mib_fragmented(ws, kind, frag):  # 9.3 / 9.4
    n = 1024 * 1024
    p = _p(kind, n)
    assert ws.echo(KINDS[kind], p, fragments=[frag] * (n // frag), timeout=30) == (KINDS[kind], p)


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("chop", [64, 1024, 65536])
def test_mws_990_05_1mib_chopped(ws, kind, chop):  # 9.5 / 9.6
    n = 1024 * 1024
    p = _p(kind, n)
    assert ws.send_message(KINDS[kind], p, chop=chop)
    assert ws.recv_message(timeout=30) == (KINDS[kind], p)


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("n", [0, 16, 1024])
def test_mws_990_07_1000_messages_in_sequence(ws, kind, n):  # 9.7 / 9.8
    for i in range(1000):
        p = _p(kind, n)
        assert ws.echo(KINDS[kind], p) == (KINDS[kind], p), i
    ws.send_close(1000)
    ws.expect_close(1000, reply=False)


@pytest.mark.parametrize("kind", list(KINDS))
def test_mws_990_09_1000_messages_pipelined(ws, kind):
    msgs = [_p(kind, i % 200) for i in range(1000)]
    assert ws.send_raw(b"".join(build_frame(KINDS[kind], m) for m in msgs))
    for i, m in enumerate(msgs):
        assert ws.recv_message(timeout=10) == (KINDS[kind], m), i


def test_mws_990_10_bidirectional_backpressure(ws):
    # the client writes 3 x 4 MiB without reading (from a thread) while the
    # server echoes: the server must keep reading while its writes block
    import threading
    msgs = [bytes([i]) * (4 * 1024 * 1024) for i in range(3)]
    errors = []

    def sender():
        for m in msgs:
            if not ws.send_message(OP_BINARY, m, fragments=4):
                errors.append(ws.conn.send_failed)
                return

    ws.conn.sock.settimeout(30)
    t = threading.Thread(target=sender, daemon=True)
    t.start()
    try:
        for m in msgs:
            assert ws.recv_message(timeout=30) == (OP_BINARY, m)
    finally:
        t.join(30)
    assert not errors, errors
    ws.send_close(1000)
    ws.expect_close(1000, reply=False)

"""Conformance, group 2 (Autobahn "Pings/Pongs")."""
import pytest

from wsclient import OP_PING, OP_PONG, OP_TEXT, build_frame


@pytest.fixture
def ws(env):
    c = env.ws()
    yield c
    c.close()


def _finish(ws):
    ws.send_close(1000)
    ws.expect_close(1000, reply=False)


def test_mws_920_01_ping_no_payload(ws):  # 2.1
    assert ws.send_frame(OP_PING, b"")
    ws.expect_pong(b"")
    _finish(ws)


def test_mws_920_02_ping_small_text(ws):  # 2.2
    assert ws.send_frame(OP_PING, b"Hello, world!")
    ws.expect_pong(b"Hello, world!")
    _finish(ws)


def test_mws_920_03_ping_binary(ws):  # 2.3
    p = b"\x00\xff\xfe\xfd\xfc\xfb\x00\xff"
    assert ws.send_frame(OP_PING, p)
    ws.expect_pong(p)
    _finish(ws)


def test_mws_920_04_ping_125(ws):  # 2.4
    p = bytes(range(125))
    assert ws.send_frame(OP_PING, p)
    ws.expect_pong(p)
    _finish(ws)


def test_mws_920_05_ping_126_fails(ws):  # 2.5
    assert ws.send_frame(OP_PING, b"\xfe" * 126)
    ws.expect_close(1002)


def test_mws_920_06_ping_125_chopped(ws):  # 2.6
    p = b"\xfe" * 125
    assert ws.send_chopped(build_frame(OP_PING, p), chop=1)
    ws.expect_pong(p)
    _finish(ws)


def test_mws_920_07_unsolicited_pong_empty(ws):  # 2.7
    assert ws.send_frame(OP_PONG, b"")
    _finish(ws)  # the close answer must be the first frame


def test_mws_920_08_unsolicited_pong_payload(ws):  # 2.8
    assert ws.send_frame(OP_PONG, b"unsolicited pong payload")
    _finish(ws)


def test_mws_920_09_unsolicited_pong_then_ping(ws):  # 2.9
    assert ws.send_frame(OP_PONG, b"unsolicited pong payload")
    assert ws.send_frame(OP_PING, b"ping payload")
    ws.expect_pong(b"ping payload")
    _finish(ws)


def test_mws_920_10_ten_pings(ws):  # 2.10
    for i in range(10):
        assert ws.send_frame(OP_PING, b"payload-%d" % i)
    for i in range(10):
        ws.expect_pong(b"payload-%d" % i)
    _finish(ws)


def test_mws_920_11_ten_pings_chopped(ws):  # 2.11
    data = b"".join(build_frame(OP_PING, b"payload-%d" % i) for i in range(10))
    assert ws.send_chopped(data, chop=1)
    for i in range(10):
        ws.expect_pong(b"payload-%d" % i)
    _finish(ws)


def test_mws_920_12_ping_after_text(ws):
    assert ws.echo(OP_TEXT, b"t") == (OP_TEXT, b"t")
    assert ws.send_frame(OP_PING, b"p")
    ws.expect_pong(b"p")
    _finish(ws)

"""Conformance, group 3 (Autobahn "Reserved Bits"): no extension is
negotiated, so any RSV bit fails the connection with 1002 - after the
frames before it were processed, and before the frames after it."""
import pytest

from wsclient import OP_BINARY, OP_CLOSE, OP_PING, OP_TEXT, build_frame, close_payload


@pytest.fixture
def ws(env):
    c = env.ws()
    yield c
    c.close()


def test_mws_930_01_rsv1_text(ws):  # 3.1
    assert ws.send_frame(OP_TEXT, b"Hello, world!", rsv=4)
    ws.expect_close(1002)


def test_mws_930_02_rsv2_after_text(ws):  # 3.2
    assert ws.send_frame(OP_TEXT, b"Hello, world!")
    assert ws.send_frame(OP_TEXT, b"Hello, world!", rsv=2)
    assert ws.send_frame(OP_PING, b"")
    assert ws.recv_message() == (OP_TEXT, b"Hello, world!")
    ws.expect_close(1002)  # and no pong before it


@pytest.mark.parametrize("chop", [None, 1])
def test_mws_930_03_rsv3_all_in_one_write(ws, chop):  # 3.3 / 3.4
    data = build_frame(OP_TEXT, b"Hello, world!") + \
        build_frame(OP_TEXT, b"Hello, world!", rsv=3) + build_frame(OP_PING, b"")
    assert ws.send_chopped(data, chop)
    assert ws.recv_message() == (OP_TEXT, b"Hello, world!")
    ws.expect_close(1002)


def test_mws_930_05_rsv4_binary(ws):  # 3.5 (RSV1|RSV3)
    assert ws.send_frame(OP_BINARY, bytes(range(8)), rsv=5)
    ws.expect_close(1002)


def test_mws_930_06_rsv6_ping(ws):  # 3.6
    assert ws.send_frame(OP_PING, b"ping", rsv=6)
    ws.expect_close(1002)


def test_mws_930_07_rsv7_close(ws):  # 3.7
    assert ws.send_frame(OP_CLOSE, close_payload(1000), rsv=7)
    ws.expect_close(1002)

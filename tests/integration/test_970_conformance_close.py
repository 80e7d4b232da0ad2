"""Conformance, group 7 (Autobahn "Close Handling")."""
import pytest

from wsclient import OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_TEXT, build_frame, close_payload

VALID = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999]
INVALID = [0, 999, 1004, 1005, 1006, 1012, 1013, 1014, 1015, 1016, 1100, 2000, 2999]


@pytest.fixture
def ws(env):
    c = env.ws()
    yield c
    c.close()


def test_mws_970_01_echo_then_close(ws):  # 7.1.1
    assert ws.echo(OP_TEXT, b"Hello World!") == (OP_TEXT, b"Hello World!")
    assert ws.send_close(1000)
    ws.expect_close(1000, reply=False)


def test_mws_970_02_close_twice(ws):  # 7.1.2
    assert ws.send_raw(build_frame(OP_CLOSE, close_payload(1000)) +
                       build_frame(OP_CLOSE, close_payload(1000)))
    ws.expect_close(1000, reply=False)  # one close, then EOF


def test_mws_970_03_ping_after_close(ws):  # 7.1.3
    assert ws.send_raw(build_frame(OP_CLOSE, close_payload(1000)) + build_frame(OP_PING, b"x"))
    ws.expect_close(1000, reply=False)  # no pong


def test_mws_970_04_text_after_close(ws):  # 7.1.4
    assert ws.send_raw(build_frame(OP_CLOSE, close_payload(1000)) + build_frame(OP_TEXT, b"x"))
    ws.expect_close(1000, reply=False)  # no echo


def test_mws_970_05_close_between_fragments(ws):  # 7.1.5
    assert ws.send_raw(build_frame(OP_TEXT, b"fragment1", fin=False) +
                       build_frame(OP_CLOSE, close_payload(1000)) +
                       build_frame(OP_CONT, b"fragment2"))
    ws.expect_close(1000, reply=False)


def test_mws_970_06_big_message_close_ping(ws):  # 7.1.6
    p = b"BAsd7&jh23" * 26214  # 256K - 4
    assert ws.send_raw(build_frame(OP_BINARY, p) + build_frame(OP_CLOSE, close_payload(1000)) +
                       build_frame(OP_PING, b"x"))
    assert ws.recv_message(timeout=10) == (OP_BINARY, p)
    ws.expect_close(1000, reply=False)


def test_mws_970_07_empty_close(ws):  # 7.3.1
    assert ws.send_close()
    ws.expect_close((None, 1000), reply=False)


def test_mws_970_08_one_byte_close(ws):  # 7.3.2
    assert ws.send_frame(OP_CLOSE, b"\x03")
    ws.expect_close(1002, reply=False)


def test_mws_970_09_close_code_only(ws):  # 7.3.3
    assert ws.send_close(1000)
    ws.expect_close(1000, reply=False)


def test_mws_970_10_close_with_reason(ws):  # 7.3.4
    assert ws.send_close(1000, b"Hello World!")
    ws.expect_close(1000, reply=False)


def test_mws_970_11_close_123_reason(ws):  # 7.3.5
    assert ws.send_close(1000, b"*" * 123)
    ws.expect_close(1000, reply=False)


def test_mws_970_12_close_124_reason(ws):  # 7.3.6: payload 126 > 125
    assert ws.send_close(1000, b"*" * 124)
    ws.expect_close(1002, reply=False)


def test_mws_970_13_close_invalid_utf8_reason(ws):  # 7.5.1
    assert ws.send_close(1000, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64\x69\x74\x65\x64")
    ws.expect_close(1007, reply=False)


@pytest.mark.parametrize("code", VALID)
def test_mws_970_14_valid_codes(ws, code):  # 7.7.x
    assert ws.send_close(code)
    ws.expect_close(code, reply=False)


@pytest.mark.parametrize("code", INVALID)
def test_mws_970_15_invalid_codes(ws, code):  # 7.9.x
    assert ws.send_close(code)
    ws.expect_close(1002, reply=False)


@pytest.mark.parametrize("code", [5000, 65535])
def test_mws_970_16_out_of_range_codes(ws, code):  # 7.13.x
    assert ws.send_close(code)
    ws.expect_close(1002, reply=False)

"""Closing handshake (RFC 6455 sections 5.5.1, 7)."""
import pytest

from wsclient import OP_BINARY, OP_CLOSE, OP_PING, OP_TEXT, build_frame, close_payload

VALID = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999]
INVALID = [0, 1, 999, 1004, 1005, 1006, 1012, 1013, 1014, 1015, 1016, 1100, 2000, 2999,
           5000, 65535]


@pytest.fixture
def ws(env):
    c = env.ws()
    yield c
    c.close()


@pytest.mark.parametrize("code", VALID)
def test_mws_400_01_valid_code_echoed(ws, code):
    assert ws.send_close(code)
    got, _ = ws.expect_close(code, reply=False)
    assert got == code


@pytest.mark.parametrize("code", INVALID)
def test_mws_400_02_invalid_code_1002(ws, code):
    assert ws.send_close(code)
    ws.expect_close(1002, reply=False)


def test_mws_400_03_empty_close(ws):
    assert ws.send_close()
    got, reason = ws.expect_close((None, 1000), reply=False)
    assert got in (None, 1000)


def test_mws_400_04_one_byte_payload_1002(ws):
    assert ws.send_frame(OP_CLOSE, b"\x03")
    ws.expect_close(1002, reply=False)


@pytest.mark.parametrize("reason", [b"bye", "Grüße, κόσμε 𝄞".encode(), b"r" * 123])
def test_mws_400_05_valid_reason(ws, reason):
    assert ws.send_close(1000, reason)
    got, _ = ws.expect_close(1000, reply=False)
    assert got == 1000


@pytest.mark.parametrize("reason", [b"\xff", b"ok\xc0\xafok", b"\xed\xa0\x80", b"abc\xce"])
def test_mws_400_06_invalid_utf8_reason_1007(ws, reason):
    assert ws.send_close(1000, reason)
    ws.expect_close(1007, reply=False)


def test_mws_400_07_server_ends_tcp(ws):
    assert ws.echo(OP_TEXT, b"before") == (OP_TEXT, b"before")
    assert ws.send_close(1000)
    before, f = ws.read_until_close()
    assert before == [] and f is not None and f.close_info()[0] == 1000
    # no reply needed from us: the server has sent and received a close,
    # so it must end TCP now
    ws.expect_eof()


def test_mws_400_08_data_after_close_ignored(ws):
    # close, then text and ping in the same write: the server must answer
    # the close only (it must not process frames after a close)
    data = build_frame(OP_CLOSE, close_payload(1000)) + build_frame(OP_TEXT, b"late") + \
        build_frame(OP_PING, b"late")
    ws.send_raw(data)
    ws.expect_close(1000, reply=False)


def test_mws_400_09_close_between_fragments(ws):
    assert ws.send_frame(OP_TEXT, b"frag1", fin=False)
    assert ws.send_close(1000)
    ws.expect_close(1000, reply=False)


def test_mws_400_10_close_after_big_message(ws):
    p = b"\x01" * 300000
    assert ws.send_message(OP_BINARY, p)
    assert ws.send_close(1001)
    assert ws.recv_message(timeout=10) == (OP_BINARY, p)
    ws.expect_close(1001, reply=False)


def test_mws_400_11_close_125_byte_payload(ws):
    payload = close_payload(4321, b"q" * 123)
    assert len(payload) == 125
    assert ws.send_frame(OP_CLOSE, payload)
    ws.expect_close(4321, reply=False)


def test_mws_400_12_close_chopped(ws):
    assert ws.send_chopped(build_frame(OP_CLOSE, close_payload(1000, b"slow")), chop=1)
    ws.expect_close(1000, reply=False)


def test_mws_400_13_lib_close_codes(env):
    import asyncio
    import websockets

    async def go(code):
        ws = await websockets.connect(env.ws_url(), ping_interval=None, open_timeout=5,
                                      close_timeout=5)
        await ws.send(b"x")
        assert await asyncio.wait_for(ws.recv(), 5) == b"x"
        await ws.close(code, "lib close")
        return ws.close_code

    for code in (1000, 1001, 4000):
        assert asyncio.run(go(code)) == code


def test_mws_400_14_tcp_close_without_close_frame(env):
    # a client that just drops TCP must not produce errors or crashes
    # (the error-log check after the test catches them); the server still
    # serves others
    for _ in range(5):
        ws = env.ws()
        ws.send_frame(OP_TEXT, b"half", fin=False)
        ws.close()
    ws = env.ws()
    try:
        assert ws.echo(OP_BINARY, b"alive") == (OP_BINARY, b"alive")
    finally:
        ws.close()


def test_mws_400_15_close_mid_frame(env):
    # TCP dropped in the middle of a frame's payload
    ws = env.ws()
    ws.send_raw(build_frame(OP_BINARY, b"y" * 1000)[:500])
    ws.close()
    ws = env.ws()
    try:
        assert ws.echo(OP_TEXT, b"still alive") == (OP_TEXT, b"still alive")
    finally:
        ws.close()

"""Conformance, group 4 (Autobahn "Opcodes"): reserved non-control
(3-7) and control (11-15) opcodes fail the connection with 1002."""
import pytest

from wsclient import OP_PING, OP_TEXT, build_frame

NONCONTROL = [3, 4, 5, 6, 7]
CONTROL = [0xB, 0xC, 0xD, 0xE, 0xF]


@pytest.fixture
def ws(env):
    c = env.ws()
    yield c
    c.close()


@pytest.mark.parametrize("op", NONCONTROL + CONTROL)
def test_mws_940_01_reserved_opcode_empty(ws, op):  # 4.1.1 / 4.2.1
    assert ws.send_frame(op, b"")
    ws.expect_close(1002)


@pytest.mark.parametrize("op", NONCONTROL + CONTROL)
def test_mws_940_02_reserved_opcode_payload(ws, op):  # 4.1.2 / 4.2.2
    assert ws.send_frame(op, b"reserved opcode payload")
    ws.expect_close(1002)


@pytest.mark.parametrize("op", [5, 0xD])
@pytest.mark.parametrize("chop", [None, 1])
def test_mws_940_03_text_reserved_ping(ws, op, chop):  # 4.1.3-5 / 4.2.3-5
    data = build_frame(OP_TEXT, b"Hello, world!") + build_frame(op, b"") + \
        build_frame(OP_PING, b"")
    assert ws.send_chopped(data, chop)
    assert ws.recv_message() == (OP_TEXT, b"Hello, world!")
    ws.expect_close(1002)  # no pong

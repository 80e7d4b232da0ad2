"""Conformance, group 1 (Autobahn "Framing"): text and binary messages of
the length-encoding boundary sizes, written whole or in TCP chops."""
import pytest

from wsclient import OP_BINARY, OP_TEXT

LENGTHS = [0, 125, 126, 127, 128, 65535, 65536]


@pytest.fixture
def ws(env):
    c = env.ws()
    yield c
    c.close()


@pytest.mark.parametrize("n", LENGTHS)
def test_mws_910_01_text(ws, n):
    # 1.1.1 - 1.1.7
    p = b"*" * n
    assert ws.echo(OP_TEXT, p) == (OP_TEXT, p)


def test_mws_910_02_text_chops_997(ws):
    # 1.1.8: 65535 bytes written in chops of 997 octets
    p = b"*" * 65535
    assert ws.send_message(OP_TEXT, p, chop=997)
    assert ws.recv_message() == (OP_TEXT, p)


@pytest.mark.parametrize("n", LENGTHS)
def test_mws_910_03_binary(ws, n):
    # 1.2.1 - 1.2.7
    p = b"\xfe" * n
    assert ws.echo(OP_BINARY, p) == (OP_BINARY, p)


def test_mws_910_04_binary_chops_997(ws):
    # 1.2.8
    p = b"\xfe" * 65535
    assert ws.send_message(OP_BINARY, p, chop=997)
    assert ws.recv_message() == (OP_BINARY, p)

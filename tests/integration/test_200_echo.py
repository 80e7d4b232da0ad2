"""Echo of text and binary messages of the boundary sizes, whole and
fragmented, with the raw client and with the websockets library."""
import os

import pytest

import libclient
from wsclient import OP_BINARY, OP_TEXT, utf8_text

SIZES = [0, 125, 126, 65535, 65536, 1 << 20]
SMALL = [0, 1, 125, 126]
KINDS = {"text": OP_TEXT, "binary": OP_BINARY}


def payload_for(kind, n, seed=0):
    if kind == "text":
        return utf8_text(n, seed)
    return bytes((i * 31 + seed) & 0xFF for i in range(n)) if n < 4096 else \
        (os.urandom(64) * (n // 64 + 1))[:n]


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("n", SIZES)
def test_mws_200_01_raw_whole(env, kind, n):
    ws = env.ws()
    try:
        p = payload_for(kind, n)
        assert ws.echo(KINDS[kind], p, timeout=20) == (KINDS[kind], p)
    finally:
        ws.close()


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("n", SIZES)
def test_mws_200_02_raw_three_fragments(env, kind, n):
    # text split at n//3 and 2n//3: usually inside a multi-byte character
    ws = env.ws()
    try:
        p = payload_for(kind, n, 1)
        assert ws.echo(KINDS[kind], p, fragments=3, timeout=20) == (KINDS[kind], p)
    finally:
        ws.close()


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("n", [1, 2, 125, 126])
def test_mws_200_03_raw_one_byte_fragments(env, kind, n):
    ws = env.ws()
    try:
        p = payload_for(kind, n, 2)
        assert ws.echo(KINDS[kind], p, fragments=[1] * n) == (KINDS[kind], p)
    finally:
        ws.close()


@pytest.mark.parametrize("kind", list(KINDS))
def test_mws_200_04_raw_empty_fragments(env, kind):
    # empty first, middle and last fragments are legal
    ws = env.ws()
    try:
        p = payload_for(kind, 10, 3)
        assert ws.echo(KINDS[kind], p, fragments=[0, 5, 0, 5, 0]) == (KINDS[kind], p)
        assert ws.echo(KINDS[kind], b"", fragments=[0, 0, 0]) == (KINDS[kind], b"")
    finally:
        ws.close()


def test_mws_200_05_raw_many_messages_one_connection(env):
    ws = env.ws()
    try:
        for i, n in enumerate([0, 1, 125, 126, 127, 65535, 65536, 3, 70000]):
            for kind in KINDS:
                p = payload_for(kind, n, i)
                assert ws.echo(KINDS[kind], p, fragments=(i % 3) + 1) == (KINDS[kind], p)
        ws.send_close(1000)
        ws.expect_close(1000, reply=False)
    finally:
        ws.close()


def test_mws_200_06_raw_zero_mask_key(env):
    ws = env.ws()
    try:
        assert ws.echo(OP_BINARY, b"\x00\xffzero", mask_key=b"\0\0\0\0") == (OP_BINARY, b"\x00\xffzero")
        assert ws.echo(OP_TEXT, b"ones", mask_key=b"\xff\xff\xff\xff") == (OP_TEXT, b"ones")
    finally:
        ws.close()


def test_mws_200_07_raw_pipelined(env):
    # many messages in a single TCP write, all echoed in order
    ws = env.ws()
    try:
        msgs = [(OP_TEXT if i % 2 else OP_BINARY, payload_for("text" if i % 2 else "binary", i * 37, i))
                for i in range(60)]
        from wsclient import build_frame
        assert ws.send_raw(b"".join(build_frame(op, p) for op, p in msgs))
        for op, p in msgs:
            assert ws.recv_message() == (op, p)
    finally:
        ws.close()


def test_mws_200_08_raw_byte_by_byte(env):
    # every byte of a frame in its own TCP segment: server must cope with
    # partial headers, partial masks and partial payloads
    ws = env.ws()
    try:
        for op, p in ((OP_TEXT, utf8_text(130)), (OP_BINARY, b"\x01" * 5)):
            assert ws.send_message(op, p, chop=1)
            assert ws.recv_message() == (op, p)
    finally:
        ws.close()


def _lib_payload(kind, n):
    if kind == "text":
        return utf8_text(n).decode("utf-8")
    return payload_for("binary", n)


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("n", SIZES)
def test_mws_200_10_lib_whole(env, kind, n):
    p = _lib_payload(kind, n)
    echoes, code = libclient.echo_all(env.ws_url(), [p])
    assert echoes == [p]
    assert code == 1000


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("n", SIZES)
def test_mws_200_11_lib_fragmented(env, kind, n):
    p = _lib_payload(kind, n)
    frags = libclient.text_fragments(p, 3) if kind == "text" else libclient.fragments(p, 3)
    echoes, code = libclient.echo_all(env.ws_url(), [frags])
    assert echoes == [p]
    assert code == 1000


def test_mws_200_12_lib_no_compression_many(env):
    msgs = [_lib_payload("text" if i % 2 else "binary", n) for i, n in
            enumerate([0, 125, 126, 65535, 65536, 200000])]
    echoes, code = libclient.echo_all(env.ws_url(), msgs, compression=None)
    assert echoes == msgs
    assert code == 1000

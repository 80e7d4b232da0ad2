"""Frame-level rules (RFC 6455 section 5): lengths, masking, RSV bits,
opcodes, control frames, fragmentation errors, ping/pong."""
import struct

import pytest

from wsclient import (OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, build_frame,
                      close_payload)


@pytest.fixture
def ws(env):
    c = env.ws()
    yield c
    c.close()


@pytest.mark.parametrize("n, len_bytes", [(125, 0), (126, 2), (65535, 2), (65536, 8)])
def test_mws_300_01_length_encodings(ws, n, len_bytes):
    p = bytes(i & 0xFF for i in range(n))
    assert ws.send_frame(OP_BINARY, p)
    op, got = ws.recv_message()
    assert (op, got) == (OP_BINARY, p)
    assert ws.frames[-1].len_bytes == len_bytes  # server also encodes minimally


def test_mws_300_02_64bit_length_top_bit_1002(ws):
    assert ws.send_raw(build_frame(OP_BINARY, b"", len_bytes=8, length=(1 << 63) | 16)[:10])
    ws.expect_close(1002)


def test_mws_300_03_64bit_length_all_ones_1002(ws):
    assert ws.send_raw(build_frame(OP_BINARY, b"", len_bytes=8, length=(1 << 64) - 1)[:10])
    ws.expect_close(1002)


@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY, OP_PING, OP_CLOSE])
def test_mws_300_04_unmasked_1002(ws, opcode):
    payload = close_payload(1000) if opcode == OP_CLOSE else b"unmasked"
    assert ws.send_frame(opcode, payload, masked=False)
    ws.expect_close(1002)


@pytest.mark.parametrize("rsv", [1, 2, 4, 3, 7])
@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY, OP_PING])
def test_mws_300_05_rsv_bits_1002(ws, rsv, opcode):
    assert ws.send_frame(opcode, b"rsv", rsv=rsv)
    ws.expect_close(1002)


def test_mws_300_06_rsv_on_continuation_1002(ws):
    assert ws.send_frame(OP_TEXT, b"ab", fin=False)
    assert ws.send_frame(OP_CONT, b"cd", rsv=4)
    ws.expect_close(1002)


@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])
def test_mws_300_07_reserved_opcode_1002(ws, opcode):
    assert ws.send_frame(opcode, b"op")
    ws.expect_close(1002)


@pytest.mark.parametrize("opcode", [OP_PING, OP_PONG, OP_CLOSE])
def test_mws_300_08_fragmented_control_1002(ws, opcode):
    payload = close_payload(1000) if opcode == OP_CLOSE else b"frag"
    assert ws.send_frame(opcode, payload, fin=False)
    ws.expect_close(1002)


@pytest.mark.parametrize("opcode", [OP_PING, OP_PONG, OP_CLOSE])
def test_mws_300_09_control_over_125_1002(ws, opcode):
    payload = close_payload(1000, b"r" * 124) if opcode == OP_CLOSE else b"x" * 126
    assert len(payload) == 126
    assert ws.send_frame(opcode, payload)
    ws.expect_close(1002)


def test_mws_300_10_long_ping_inside_fragmented_message_1002(ws):
    # 125 bytes is the largest legal control payload, also between fragments;
    # 126 is a protocol error there as anywhere
    assert ws.send_frame(OP_TEXT, b"start", fin=False)
    assert ws.send_frame(OP_PING, b"y" * 125)
    ws.expect_pong(b"y" * 125)
    assert ws.send_frame(OP_PING, b"y" * 126)
    ws.expect_close(1002)


@pytest.mark.parametrize("fin", [True, False])
def test_mws_300_11_continuation_without_start_1002(ws, fin):
    assert ws.send_frame(OP_CONT, b"orphan", fin=fin)
    ws.expect_close(1002)


@pytest.mark.parametrize("first, second", [(OP_TEXT, OP_TEXT), (OP_TEXT, OP_BINARY),
                                           (OP_BINARY, OP_TEXT), (OP_BINARY, OP_BINARY)])
def test_mws_300_12_new_message_inside_fragmented_1002(ws, first, second):
    assert ws.send_frame(first, b"part1", fin=False)
    assert ws.send_frame(second, b"other", fin=True)
    ws.expect_close(1002)


@pytest.mark.parametrize("payload", [b"", b"p", b"\x00\xff\x80binary", b"z" * 125])
def test_mws_300_13_ping_pong_same_payload(ws, payload):
    assert ws.send_frame(OP_PING, payload)
    ws.expect_pong(payload)


def test_mws_300_14_ping_between_fragments(ws):
    assert ws.send_frame(OP_TEXT, b"Hello, ", fin=False)
    assert ws.send_frame(OP_PING, b"mid")
    ws.expect_pong(b"mid")
    assert ws.send_frame(OP_CONT, b"World", fin=False)
    assert ws.send_frame(OP_PING, b"mid2")
    ws.expect_pong(b"mid2")
    assert ws.send_frame(OP_CONT, b"!", fin=True)
    assert ws.recv_message() == (OP_TEXT, b"Hello, World!")


def test_mws_300_15_unsolicited_pong_ignored(ws):
    assert ws.send_frame(OP_PONG, b"unsolicited")
    assert ws.send_frame(OP_PONG, b"")
    # the next thing the server sends is the echo, nothing for the pongs
    assert ws.echo(OP_TEXT, b"after pong") == (OP_TEXT, b"after pong")
    # pong between fragments is ignored too
    assert ws.send_frame(OP_BINARY, b"a", fin=False)
    assert ws.send_frame(OP_PONG, b"x")
    assert ws.send_frame(OP_CONT, b"b")
    assert ws.recv_message() == (OP_BINARY, b"ab")


def test_mws_300_16_ping_in_pieces(ws):
    # a ping written one byte at a time
    assert ws.send_chopped(build_frame(OP_PING, b"chopped ping"), chop=1)
    ws.expect_pong(b"chopped ping")


def test_mws_300_17_many_pings_in_one_write(ws):
    data = b"".join(build_frame(OP_PING, b"%d" % i) for i in range(10))
    assert ws.send_raw(data)
    for i in range(10):
        ws.expect_pong(b"%d" % i)


def test_mws_300_18_non_minimal_length_accepted_or_1002(ws):
    # RFC 6455 5.2 says the minimal length encoding MUST be used; a server
    # may either accept a non-minimal one or fail with 1002, but it must not
    # misparse it (e.g. echo garbage or hang).
    assert ws.send_frame(OP_TEXT, b"abc", len_bytes=8)
    f = ws.recv_frame()
    assert f is not None
    if f.opcode == OP_CLOSE:
        assert f.close_info()[0] == 1002
    else:
        assert (f.opcode, f.payload, f.fin) == (OP_TEXT, b"abc", True)


def test_mws_300_19_error_after_valid_traffic(ws):
    assert ws.echo(OP_TEXT, b"ok") == (OP_TEXT, b"ok")
    assert ws.send_frame(OP_TEXT, b"bad", rsv=2)
    code, _ = ws.expect_close(1002)
    assert code == 1002


def test_mws_300_20_close_reply_masked_check(ws):
    # all frames the server sent in this connection were checked by the
    # client (unmasked, RSV 0, minimal length): a longer exchange
    for n in (0, 125, 126, 65536):
        assert ws.echo(OP_BINARY, b"\x5a" * n) == (OP_BINARY, b"\x5a" * n)
    ws.send_close(1000, b"done")
    assert ws.expect_close(1000, reply=False)[0] == 1000
    for f in ws.frames:
        assert not f.masked and f.rsv == 0
    assert struct.unpack("!H", ws.frames[-1].payload[:2])[0] == 1000

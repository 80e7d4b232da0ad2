"""Tests of the test helpers themselves (no server needed).

httpd's test/pyhttpd/ws_util.py:70 encodes a 126-byte payload with the
invalid 7-bit length 126 because it tests `> 126`; our frame builder must
get the boundaries 125/126/65535/65536 right.
"""
import struct

import pytest

import wsclient
from wsclient import (OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_TEXT, Frame, WsError,
                      accept_value, build_frame, check_server_frame, mask_payload,
                      parse_frame, split_sizes, utf8_first_invalid, utf8_text)


@pytest.mark.parametrize("n, second, ext", [
    (0, 0, b""),
    (1, 1, b""),
    (125, 125, b""),
    (126, 126, struct.pack("!H", 126)),
    (127, 126, struct.pack("!H", 127)),
    (65535, 126, struct.pack("!H", 65535)),
    (65536, 127, struct.pack("!Q", 65536)),
    (65537, 127, struct.pack("!Q", 65537)),
])
def test_mws_000_01_length_encoding_unmasked(n, second, ext):
    payload = bytes(i & 0xFF for i in range(n))
    data = build_frame(OP_BINARY, payload, masked=False)
    assert data[0] == 0x82
    assert data[1] == second  # mask bit clear, minimal length field
    assert data[2:2 + len(ext)] == ext
    assert data[2 + len(ext):] == payload
    assert len(data) == 2 + len(ext) + n


@pytest.mark.parametrize("n", [0, 125, 126, 65535, 65536])
def test_mws_000_02_length_encoding_masked_roundtrip(n):
    payload = bytes((i * 7) & 0xFF for i in range(n))
    key = b"\x01\x80\xfe\x33"
    data = build_frame(OP_TEXT, payload, mask_key=key)
    hdr = 2 + (0 if n <= 125 else 2 if n <= 65535 else 8)
    assert data[1] & 0x80
    assert data[hdr:hdr + 4] == key
    assert data[hdr + 4:] == bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    f, used = parse_frame(data)
    assert used == len(data)
    assert (f.fin, f.rsv, f.opcode, f.masked, f.payload) == (True, 0, OP_TEXT, True, payload)
    assert f.len_bytes == {2: 0, 4: 2, 10: 8}[hdr]


def test_mws_000_03_forced_and_wrong_lengths():
    assert build_frame(OP_TEXT, b"abc", masked=False, len_bytes=2) == b"\x81\x7e\x00\x03abc"
    assert build_frame(OP_TEXT, b"abc", masked=False, len_bytes=8) == \
        b"\x81\x7f" + struct.pack("!Q", 3) + b"abc"
    # 64-bit length with the most significant bit set
    d = build_frame(OP_BINARY, b"", masked=False, len_bytes=8, length=(1 << 63) | 5)
    assert d == b"\x82\x7f\x80\x00\x00\x00\x00\x00\x00\x05"
    # deliberately broken 7-bit field
    assert build_frame(OP_TEXT, b"", masked=False, len_bytes=0, length=127) == b"\x81\x7f"
    with pytest.raises(ValueError):
        build_frame(OP_TEXT, b"", len_bytes=0, length=128)


def test_mws_000_04_header_bits():
    assert build_frame(OP_CONT, b"", fin=False, masked=False) == b"\x00\x00"
    assert build_frame(OP_TEXT, b"", rsv=4, masked=False) == b"\xc1\x00"
    assert build_frame(OP_TEXT, b"", rsv=2, masked=False) == b"\xa1\x00"
    assert build_frame(OP_TEXT, b"", rsv=1, masked=False) == b"\x91\x00"
    assert build_frame(0xF, b"", fin=False, rsv=7, masked=False) == b"\x7f\x00"
    assert build_frame(OP_PING, b"x", mask_key=b"\0\0\0\0") == b"\x89\x81\0\0\0\0x"


def test_mws_000_05_parse_partial():
    data = build_frame(OP_BINARY, b"z" * 300, masked=False) + build_frame(OP_PING, b"p", masked=False)
    for i in range(len(data) - 3):
        r = parse_frame(data[:i])
        assert r is None or r[1] == 304
    f, used = parse_frame(data)
    assert used == 304 and f.payload == b"z" * 300 and f.len_bytes == 2
    f2, used2 = parse_frame(data[used:])
    assert f2.opcode == OP_PING and f2.payload == b"p"


def test_mws_000_06_server_frame_checks():
    good, _ = parse_frame(build_frame(OP_TEXT, b"a" * 126, masked=False))
    check_server_frame(good)
    for bad in (build_frame(OP_TEXT, b"a", masked=True),
                build_frame(OP_TEXT, b"a", masked=False, rsv=1),
                build_frame(OP_TEXT, b"a", masked=False, len_bytes=2),
                build_frame(OP_PING, b"a", masked=False, fin=False),
                build_frame(OP_PING, b"a" * 126, masked=False),
                build_frame(0x3, b"", masked=False)):
        f, _ = parse_frame(bad)
        with pytest.raises(WsError):
            check_server_frame(f)


def test_mws_000_07_accept_rfc_example():
    # RFC 6455 section 1.3
    assert accept_value("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_mws_000_08_mask_and_split():
    assert mask_payload(b"", b"abcd") == b""
    assert mask_payload(mask_payload(b"hello world", b"\x12\x34\x56\x78"), b"\x12\x34\x56\x78") \
        == b"hello world"
    assert split_sizes(10, 3) == [3, 3, 4]
    assert split_sizes(0, 3) == [0, 0, 0]
    assert split_sizes(5, 1) == [5]


@pytest.mark.parametrize("data, expect", [
    (b"", None), (b"abc", None), ("κόσμε".encode(), None),
    (b"\xf4\x8f\xbf\xbf", None), (b"\xed\x9f\xbf", None), (b"\xef\xbf\xbf", None),
    (b"\x80", 0), (b"\xc0\xaf", 0), (b"\xc1\xbf", 0), (b"\xf5", 0), (b"\xff", 0),
    (b"\xe0\x80\xaf", 1), (b"\xed\xa0\x80", 1), (b"\xf0\x8f\xbf\xbf", 1),
    (b"\xf4\x90\x80\x80", 1), (b"a\xce\xceX", 2), (b"a\xce\xbaX", None), (b"\xdf", 1), (b"\xf0\x9f\xbf", 3),
    (b"\xce\xba\xf8\x88\x80\x80\x80", 2),
])
def test_mws_000_09_utf8_first_invalid(data, expect):
    assert utf8_first_invalid(data) == expect
    if expect is None:
        data.decode("utf-8")
    else:
        with pytest.raises(UnicodeDecodeError):
            data.decode("utf-8")


def test_mws_000_10_utf8_first_invalid_agrees_with_python():
    # every 1- and 2-byte string and a sample of 3/4-byte ones: validity agrees
    import itertools
    import random
    rnd = random.Random(6455)
    samples = [bytes([a]) for a in range(256)]
    samples += [bytes([a, b]) for a in range(0xC0, 0x100) for b in range(0x70, 0xC8)]
    samples += [bytes([a] + [rnd.randrange(0x70, 0xC8) for _ in range(rnd.choice((2, 3)))])
                for a in itertools.chain(range(0xE0, 0xF8)) for _ in range(200)]
    for s in samples:
        try:
            s.decode("utf-8")
            valid = True
        except UnicodeDecodeError:
            valid = False
        assert (utf8_first_invalid(s) is None) == valid, s


@pytest.mark.parametrize("n", [0, 1, 2, 3, 125, 126, 65535, 65536, 1 << 20])
def test_mws_000_11_utf8_text(n):
    for seed in range(12):
        t = utf8_text(n, seed)
        assert len(t) == n
        t.decode("utf-8")
    if n > 100:
        assert len(t.decode("utf-8")) < n  # really has multi-byte characters


def test_mws_000_12_close_info():
    f = Frame(True, 0, OP_CLOSE, False, struct.pack("!H", 1000) + b"bye", 0)
    assert f.close_info() == (1000, b"bye")
    assert Frame(True, 0, OP_CLOSE, False, b"", 0).close_info() == (None, b"")
    with pytest.raises(WsError):
        Frame(True, 0, OP_CLOSE, False, b"\x03", 0).close_info()
    assert wsclient.close_payload(1001, "ü") == b"\x03\xe9\xc3\xbc"


def _fake(server_bytes):
    """A WsClient whose 'server' is the other end of a socketpair that has
    already written server_bytes and closed."""
    import socket
    a, b = socket.socketpair()
    b.sendall(server_bytes)
    b.close()
    return wsclient.WsClient(wsclient.Conn(a, timeout=2))


def test_mws_000_13_client_assertions_can_fail():
    srv = lambda op, p, **kw: build_frame(op, p, masked=False, **kw)  # noqa: E731
    # right code passes, wrong code fails
    c = _fake(srv(OP_CLOSE, wsclient.close_payload(1002)))
    c.conn.send = lambda data: True
    assert c.expect_close(1002) == (1002, b"")
    c = _fake(srv(OP_CLOSE, wsclient.close_payload(1000)))
    c.conn.send = lambda data: True
    with pytest.raises(WsError):
        c.expect_close(1002)
    # frames before the close are not allowed by default
    c = _fake(srv(OP_TEXT, b"x") + srv(OP_CLOSE, wsclient.close_payload(1002)))
    with pytest.raises(WsError):
        c.expect_close(1002)
    # EOF without a close frame
    with pytest.raises(WsError):
        _fake(b"").expect_close(1002)
    # masked server frame, RSV bit, invalid UTF-8 text
    for bad in (build_frame(OP_TEXT, b"x"), srv(OP_TEXT, b"x", rsv=1), srv(OP_TEXT, b"\xff")):
        with pytest.raises(WsError):
            _fake(bad).recv_message()
    # fragmented echo is reassembled; a pong is not a message
    c = _fake(srv(OP_TEXT, b"ab", fin=False) + srv(OP_CONT, b"c"))
    assert c.recv_message() == (OP_TEXT, b"abc")
    with pytest.raises(WsError):
        _fake(srv(wsclient.OP_PONG, b"")).recv_message()
    # pong payload must match
    with pytest.raises(WsError):
        _fake(srv(wsclient.OP_PONG, b"a")).expect_pong(b"b")
    # a frame after the close where EOF is expected
    c = _fake(srv(OP_CLOSE, wsclient.close_payload(1000)) + srv(OP_TEXT, b"late"))
    c.conn.send = lambda data: True
    with pytest.raises(WsError):
        c.expect_close(1000)


def _fake_open(server_bytes):
    """Like _fake, but the 'server' end stays open (returned) to read what
    the client sent; then close it to end the client's reads."""
    import socket
    a, b = socket.socketpair()
    b.sendall(server_bytes)
    return wsclient.WsClient(wsclient.Conn(a, timeout=2)), b


def _client_frames(b, ws):
    """The frames the client wrote so far (unmasked), read from b."""
    ws.conn.sock.shutdown(2)
    data = bytearray()
    b.settimeout(2)
    while True:
        chunk = b.recv(65536)
        if not chunk:
            break
        data += chunk
    out = []
    while data:
        f, used = parse_frame(data)
        assert f.masked
        del data[:used]
        out.append(f)
    return out


def test_mws_000_14_readers_answer_server_pings():
    """A server may ping at any time, also between the fragments of a
    message: recv_message and expect_pong answer with a pong of the same
    payload and go on; expect_close lets pings pass before the close."""
    srv = lambda op, p, **kw: build_frame(op, p, masked=False, **kw)  # noqa: E731
    ws, b = _fake_open(srv(OP_PING, b"") + srv(OP_TEXT, b"ab", fin=False) +
                       srv(OP_PING, b"mid") + srv(OP_CONT, b"c") +
                       srv(OP_PING, b"p2") + srv(wsclient.OP_PONG, b"mine"))
    try:
        assert ws.recv_message() == (OP_TEXT, b"abc")
        ws.expect_pong(b"mine")
        assert ws.pings_answered == 3
        sent = _client_frames(b, ws)
        assert [(f.opcode, f.payload) for f in sent] == \
            [(wsclient.OP_PONG, b""), (wsclient.OP_PONG, b"mid"), (wsclient.OP_PONG, b"p2")]
    finally:
        b.close()
        ws.close()
    c = _fake(srv(OP_PING, b"") + srv(OP_CLOSE, wsclient.close_payload(1001)))
    c.conn.send = lambda data: True
    assert c.expect_close(1001) == (1001, b"")


def test_mws_000_15_pong_waits_for_a_frame_being_sent():
    """A pong due while another thread writes a frame goes out after that
    frame, never inside it."""
    import threading
    ws, b = _fake_open(build_frame(OP_PING, b"x", masked=False))
    try:
        started, release = threading.Event(), threading.Event()
        real_send = ws.conn.send

        def slow_send(data):
            if len(data) > 100:      # the big frame: half, wait, the rest
                real_send(data[:50])
                started.set()
                release.wait(5)
                return real_send(data[50:])
            return real_send(data)
        ws.conn.send = slow_send
        t = threading.Thread(target=ws.send_frame, args=(OP_BINARY, b"z" * 1000))
        t.start()
        assert started.wait(5)
        f = ws.recv_frame()
        ws._answer_ping(f)           # as recv_message does
        release.set()
        t.join(5)
        sent = _client_frames(b, ws)
        assert [(f.opcode, len(f.payload)) for f in sent] == \
            [(OP_BINARY, 1000), (wsclient.OP_PONG, 1)]
    finally:
        b.close()
        ws.close()

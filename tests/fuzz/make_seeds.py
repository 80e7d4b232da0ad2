#!/usr/bin/python3
"""Write the seed corpora for the libFuzzer targets in tests/fuzz/corpus/.

Run from anywhere: python3 tests/fuzz/make_seeds.py
Each seed is small; fuzz_frame seeds start with the two configuration
bytes that fuzz_frame.c reads (0x00 0x00 = server: masks required, UTF-8
checked, no RSV bits, no limits).
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")
KEY = bytes([0x37, 0xFA, 0x21, 0x3D])


def frame(op, payload=b"", fin=True, rsv=0, mask=KEY, length=None):
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | (rsv << 4) | op
    mbit = 0x80 if mask else 0
    if n < 126:
        hdr = bytes([b0, mbit | n])
    elif n < 65536:
        hdr = bytes([b0, mbit | 126]) + struct.pack(">H", n)
    else:
        hdr = bytes([b0, mbit | 127]) + struct.pack(">Q", n)
    if mask:
        body = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
        return hdr + mask + body
    return hdr + payload


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def frame_seeds():
    srv = b"\x00\x00"
    write("fuzz_frame", "text_hello", srv + frame(1, b"Hello"))
    write("fuzz_frame", "fragmented_ping",
          srv + frame(1, b"Hel", fin=False) + frame(9, b"p")
          + frame(0, b"lo \xe2\x82", fin=False) + frame(0, b"\xac"))
    write("fuzz_frame", "binary_300", srv + frame(2, bytes(range(256)) * 1
                                                  + bytes(44)))
    write("fuzz_frame", "close_reason", srv + frame(8, b"\x03\xe8bye"))
    write("fuzz_frame", "close_empty", srv + frame(8) + b"trailing")
    write("fuzz_frame", "pong_empty_text",
          srv + frame(10) + frame(1) + frame(2, b"", fin=False) + frame(0))
    write("fuzz_frame", "bad_utf8_2nd_fragment",
          srv + frame(1, b"abc", fin=False) + frame(0, b"d\xffe"))
    write("fuzz_frame", "unmasked_client_mode",
          b"\x01\x00" + frame(1, b"Hello", mask=None))
    # RSV1 allowed (bits 2..4 of byte 0 = 4 -> 0x10)
    write("fuzz_frame", "rsv1_deflate",
          b"\x10\x00" + frame(1, b"\xf2\x48\xcd", rsv=4, fin=False)
          + frame(0, b"\xc9\xc9\x07\x00"))
    # limits: max_message = data[1] * 3
    write("fuzz_frame", "max_message",
          b"\x40\x10" + frame(2, b"x" * 40, fin=False) + frame(0, b"y" * 20))
    write("fuzz_frame", "huge_length",
          b"\x60\x01" + frame(2, b"", length=1 << 62))
    write("fuzz_frame", "non_minimal",
          srv + b"\x82\xfe\x00\x05" + KEY + b"abcde")


def utf8_seeds():
    for name, data in [
        ("ascii", b"Hello, world"),
        ("kosme", "κόσμε".encode()),
        ("all_lengths", "a\u00e9\u20ac\U0001d11e".encode()),
        ("surrogate", b"\xed\xa0\x80"),
        ("overlong", b"\xc0\xaf\xe0\x80\xaf"),
        ("above_max", b"\xf4\x90\x80\x80"),
        ("truncated", b"ab\xf0\x9d\x84"),
        ("long_ascii_then_bad", b"x" * 70 + b"\xff"),
    ]:
        write("fuzz_utf8", name, data)


def close_seeds():
    for name, data in [
        ("empty", b""),
        ("one_byte", b"\x03"),
        ("normal", b"\x03\xe8"),
        ("reason", b"\x03\xe9going away"),
        ("bad_code", b"\x03\xed"),
        ("bad_reason", b"\x0f\xa0\xc0\x80"),
        ("long_utf8", b"\x0b\xb8" + "\u20ac".encode() * 45),
        ("too_long", b"\x03\xe8" + b"r" * 124),
    ]:
        write("fuzz_close", name, data)


def handshake_seeds():
    for name, data in [
        ("rfc_key", b"dGhlIHNhbXBsZSBub25jZQ=="),
        ("bad_bits", b"dGhlIHNhbXBsZSBub25jZR=="),
        ("short", b"dGhlIHNhbXBsZSBub25jZQ="),
        ("connection", b"keep-alive, Upgrade"),
        ("tokens", b" upgrade ,,\tWebSocket\t,"),
        ("extensions", b"permessage-deflate; client_max_window_bits, x"),
        ("base64", b"Zm9vYmFy"),
    ]:
        write("fuzz_handshake", name, data)


def origin_seeds():
    for name, data in [
        ("same", b"http://localhost:8080"),
        ("ipv6", b"https://[2001:db8::1]"),
        ("wildcard", b"http://*.example.com:8080"),
        ("null", b"null"),
        ("userinfo_path", b"http://u@a/x"),
    ]:
        write("fuzz_origin", name, data)


def pmd(data, wbits=15, cobj=None):
    """data compressed as one permessage-deflate message: the tail off."""
    import zlib
    c = cobj or zlib.compressobj(9, zlib.DEFLATED, -wbits)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def deflate_seeds():
    """fuzz_deflate: mode byte, limit byte, then data (see fuzz_deflate.c)."""
    import zlib
    hello = bytes([0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00])
    write("fuzz_deflate", "rfc_hello", b"\x04\x00" + hello)
    write("fuzz_deflate", "rfc_hello_twice_ctx",
          b"\x06\x00" + hello + b"\xfe\xfc" + bytes([0xf2, 0x00, 0x11, 0x00, 0x00]))
    write("fuzz_deflate", "rfc_fragmented",
          b"\x0c\x00" + hello[:3] + b"\xfe\xfd" + hello[3:])
    write("fuzz_deflate", "stored_block",
          b"\x00\x00" + bytes([0x00, 0x05, 0x00, 0xfa, 0xff]) + b"Hello\x00")
    write("fuzz_deflate", "bfinal", b"\x04\x00" + bytes([0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]))
    write("fuzz_deflate", "bomb_limit",
          b"\x10\x10" + pmd(bytes(1 << 20)))
    json = b'{"sym":"ACME","price":12.5,"t":"\xc3\xa9t\xc3\xa9"}' * 20
    write("fuzz_deflate", "json_text", b"\x24\x00" + pmd(json))
    c = zlib.compressobj(6, zlib.DEFLATED, -10)
    write("fuzz_deflate", "json_ctx_3msgs",
          b"\x06\x00" + pmd(json, cobj=c) + b"\xfe\xfc" + pmd(json, cobj=c)
          + b"\xfe\xfc" + pmd(b"", cobj=c))
    write("fuzz_deflate", "bad_utf8", b"\x04\x00" + pmd(b"abc\xff"))
    for name, hdr in [
        ("chrome", b"permessage-deflate; client_max_window_bits"),
        ("full", b"permessage-deflate; server_no_context_takeover; "
                 b"client_no_context_takeover; server_max_window_bits=10; "
                 b"client_max_window_bits=\"9\""),
        ("several", b"x-webkit-deflate-frame, permessage-deflate; foo, "
                    b"permessage-deflate; server_max_window_bits=8, "
                    b"permessage-deflate"),
        ("quoted_comma", b'permessage-deflate; a="b,c", permessage-deflate'),
        ("dup", b"permessage-deflate; server_no_context_takeover; "
                b"server_no_context_takeover"),
    ]:
        write("fuzz_deflate", "nego_" + name, b"\x01\x00" + hdr)


if __name__ == "__main__":
    deflate_seeds()
    frame_seeds()
    utf8_seeds()
    close_seeds()
    handshake_seeds()
    origin_seeds()

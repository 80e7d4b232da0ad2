"""Conformance, group 6 (Autobahn "UTF-8 Handling"), vectors after Markus
Kuhn's UTF-8 decoder capability and stress test as Autobahn uses them.

Each vector is sent as one frame and in 1-byte fragments.  A valid text
must be echoed; an invalid one must fail with 1007.  In the 1-byte mode the
client stops sending after the fragment with the first invalid byte (as a
strict incremental validator finds it, wsclient.utf8_first_invalid): the
server must fail there, without waiting for the rest of the message."""
import pytest

from wsclient import OP_CONT, OP_TEXT, utf8_first_invalid

KOSME = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"


def _vectors():
    v = []

    def add(case, data, valid):
        assert (utf8_first_invalid(data) is None) == valid, (case, data)
        v.append(pytest.param(data, valid, id=case))

    add("6.2-hello", "Hello-µ@ßöäüàá-UTF-8!!".encode(), True)
    add("6.3-kosme-surrogate", KOSME + b"\xed\xa0\x80edited", False)
    add("6.5-kosme", KOSME, True)
    # 6.6: all prefixes of kosme: valid exactly on code point boundaries
    for i in range(1, len(KOSME) + 1):
        add("6.6.%d" % i, KOSME[:i], i in (2, 5, 7, 9, 11))
    # 6.7 first possible sequence of each length
    for i, s in enumerate([b"\x00", b"\xc2\x80", b"\xe0\xa0\x80", b"\xf0\x90\x80\x80"], 1):
        add("6.7.%d" % i, s, True)
    for i, s in enumerate([b"\xf8\x88\x80\x80\x80", b"\xfc\x84\x80\x80\x80\x80"], 1):
        add("6.8.%d" % i, s, False)
    # 6.9 last possible sequence of each length
    for i, s in enumerate([b"\x7f", b"\xdf\xbf", b"\xef\xbf\xbf", b"\xf4\x8f\xbf\xbf"], 1):
        add("6.9.%d" % i, s, True)
    for i, s in enumerate([b"\xf7\xbf\xbf\xbf", b"\xfb\xbf\xbf\xbf\xbf",
                           b"\xfd\xbf\xbf\xbf\xbf\xbf"], 1):
        add("6.10.%d" % i, s, False)
    # 6.11 other boundary conditions
    for i, (s, ok) in enumerate([(b"\xed\x9f\xbf", True), (b"\xee\x80\x80", True),
                                 (b"\xef\xbf\xbd", True), (b"\xf4\x8f\xbf\xbf", True),
                                 (b"\xf4\x90\x80\x80", False)], 1):
        add("6.11.%d" % i, s, ok)
    # 6.12 unexpected continuation bytes
    for i, s in enumerate([b"\x80", b"\xbf", b"\x80\xbf", b"\x80\xbf\x80", b"\x80\xbf\x80\xbf",
                           b"\x80\xbf\x80\xbf\x80", b"\x80\xbf\x80\xbf\x80\xbf",
                           bytes(range(0x80, 0xC0))], 1):
        add("6.12.%d" % i, s, False)
    # 6.13 lonely start characters, each followed by a space
    for i, (lo, hi) in enumerate([(0xC0, 0xDF), (0xE0, 0xEF), (0xF0, 0xF7), (0xF8, 0xFB),
                                  (0xFC, 0xFD)], 1):
        add("6.13.%d" % i, b"".join(bytes([c, 0x20]) for c in range(lo, hi + 1)), False)
    # 6.14 sequences with the last continuation byte missing
    missing = [b"\xc0", b"\xe0\x80", b"\xf0\x80\x80", b"\xf8\x80\x80\x80", b"\xfc\x80\x80\x80\x80",
               b"\xdf", b"\xef\xbf", b"\xf7\xbf\xbf", b"\xfb\xbf\xbf\xbf", b"\xfd\xbf\xbf\xbf\xbf"]
    for i, s in enumerate(missing, 1):
        add("6.14.%d" % i, s, False)
    add("6.15.1", b"".join(missing), False)
    for i, s in enumerate([b"\xfe", b"\xff", b"\xfe\xfe\xff\xff"], 1):
        add("6.16.%d" % i, s, False)
    # 6.17 overlong ASCII '/', 6.18 maximum overlong, 6.19 overlong NUL
    for i, s in enumerate([b"\xc0\xaf", b"\xe0\x80\xaf", b"\xf0\x80\x80\xaf",
                           b"\xf8\x80\x80\x80\xaf", b"\xfc\x80\x80\x80\x80\xaf"], 1):
        add("6.17.%d" % i, s, False)
    for i, s in enumerate([b"\xc1\xbf", b"\xe0\x9f\xbf", b"\xf0\x8f\xbf\xbf",
                           b"\xf8\x87\xbf\xbf\xbf", b"\xfc\x83\xbf\xbf\xbf\xbf"], 1):
        add("6.18.%d" % i, s, False)
    for i, s in enumerate([b"\xc0\x80", b"\xe0\x80\x80", b"\xf0\x80\x80\x80",
                           b"\xf8\x80\x80\x80\x80", b"\xfc\x80\x80\x80\x80\x80"], 1):
        add("6.19.%d" % i, s, False)
    # 6.20 single UTF-16 surrogates, 6.21 paired surrogates
    singles = [b"\xed\xa0\x80", b"\xed\xad\xbf", b"\xed\xae\x80", b"\xed\xaf\xbf",
               b"\xed\xb0\x80", b"\xed\xbe\x80", b"\xed\xbf\xbf"]
    for i, s in enumerate(singles, 1):
        add("6.20.%d" % i, s, False)
    pairs = [(a, b) for a in (b"\xed\xa0\x80", b"\xed\xad\xbf", b"\xed\xae\x80", b"\xed\xaf\xbf")
             for b in (b"\xed\xb0\x80", b"\xed\xbf\xbf")]
    for i, (a, b) in enumerate(pairs, 1):
        add("6.21.%d" % i, a + b, False)
    # 6.22 noncharacters are valid UTF-8
    nonchars = [0xFFFE, 0xFFFF] + [p * 0x10000 + k for p in range(1, 17) for k in (0xFFFE, 0xFFFF)]
    nonchars += list(range(0xFDD0, 0xFDF0, 8))
    for i, cp in enumerate(nonchars, 1):
        add("6.22.%d" % i, chr(cp).encode("utf-8"), True)
    # 6.23 specials
    for i, cp in enumerate([0xFFF9, 0xFFFA, 0xFFFB, 0xFFFC, 0xFFFD, 0xFFFE, 0xFFFF], 1):
        add("6.23.%d" % i, chr(cp).encode("utf-8"), True)
    return v


VECTORS = _vectors()


@pytest.fixture
def ws(env):
    c = env.ws()
    yield c
    c.close()


@pytest.mark.parametrize("data, valid", VECTORS)
def test_mws_960_01_whole(ws, data, valid):
    assert ws.send_frame(OP_TEXT, data)
    if valid:
        assert ws.recv_message() == (OP_TEXT, data)
    else:
        ws.expect_close(1007)


@pytest.mark.parametrize("data, valid", VECTORS)
def test_mws_960_02_octet_fragments(ws, data, valid):
    n = len(data)
    stop = n if valid else min(n, utf8_first_invalid(data) + 1)
    frames = []
    for i in range(stop):
        frames.append((OP_TEXT if i == 0 else OP_CONT, data[i:i + 1], i == n - 1))
    for op, p, fin in frames:
        assert ws.send_frame(op, p, fin=fin)
    if valid:
        assert ws.recv_message() == (OP_TEXT, data)
    else:
        ws.expect_close(1007)


def test_mws_960_03_valid_fragmented_on_code_points(ws):  # 6.2.2
    t = "Hello-µ@ßöäüàá-UTF-8!!".encode()
    sizes = [len(c.encode()) for c in "Hello-µ@ßöäüàá-UTF-8!!"]
    assert ws.echo(OP_TEXT, t, fragments=sizes) == (OP_TEXT, t)


def test_mws_960_04_empty_fragments(ws):  # 6.1.x
    assert ws.echo(OP_TEXT, b"", fragments=[0, 0, 0]) == (OP_TEXT, b"")
    assert ws.echo(OP_TEXT, b"middle", fragments=[0, 6, 0]) == (OP_TEXT, b"middle")


def test_mws_960_05_fail_fast_three_fragments(ws):  # 6.4.1
    assert ws.send_frame(OP_TEXT, KOSME, fin=False)
    assert ws.send_frame(OP_CONT, b"\xf4\x90\x80\x80", fin=False)
    ws.expect_close(1007)  # before "edited" is sent


def test_mws_960_06_fail_fast_split_sequence(ws):  # 6.4.2
    assert ws.send_frame(OP_TEXT, KOSME + b"\xf4", fin=False)
    assert ws.send_frame(OP_CONT, b"\x90", fin=False)
    ws.expect_close(1007)  # before "\x80\x80edited" is sent

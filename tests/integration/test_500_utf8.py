"""UTF-8 validation of text messages (RFC 6455 section 8.1): incremental
across fragments, failing at the first invalid byte with 1007."""
import pytest

from wsclient import OP_BINARY, OP_CONT, OP_TEXT, utf8_text

CHARS = ["\u00e9", "\u20ac", "\U0001D11E", "\u4e2d", "\U0010FFFF", "\ud7ff", "\ue000"]


@pytest.fixture
def ws(env):
    c = env.ws()
    yield c
    c.close()


def test_mws_500_01_valid_multibyte(ws):
    t = "Hello-µ@ßöäüàá-UTF-8!! κόσμε 中文 𝄞 \u0000 \U0010FFFF".encode()
    assert ws.echo(OP_TEXT, t) == (OP_TEXT, t)


@pytest.mark.parametrize("ch", CHARS)
def test_mws_500_02_char_split_at_every_point(ws, ch):
    b = ("a" + ch + "b").encode()
    for cut in range(1, len(b)):
        assert ws.echo(OP_TEXT, b, fragments=[cut, len(b) - cut]) == (OP_TEXT, b)
    assert ws.echo(OP_TEXT, b, fragments=[1] * len(b)) == (OP_TEXT, b)


def test_mws_500_03_first_fragment_invalid_fails_fast(ws):
    # invalid byte in the first fragment, FIN not sent: the close must come
    # without the client sending anything more
    assert ws.send_frame(OP_TEXT, b"valid start \xff more", fin=False)
    ws.expect_close(1007, timeout=5)


@pytest.mark.parametrize("bad", [b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x80",
                                 b"\xf8\x88\x80\x80\x80", b"\xfe"])
def test_mws_500_04_fail_fast_vectors(ws, bad):
    assert ws.send_frame(OP_TEXT, b"ok " + bad + b" tail", fin=False)
    ws.expect_close(1007, timeout=5)


def test_mws_500_05_invalid_in_later_fragment_fails_fast(ws):
    assert ws.send_frame(OP_TEXT, "κόσμε".encode(), fin=False)
    assert ws.send_frame(OP_CONT, b"\xce\xba\xed\xa0\x80edited", fin=False)
    ws.expect_close(1007, timeout=5)


def test_mws_500_06_invalid_split_across_fragments(ws):
    # surrogate ED A0 80 split: the error is the A0 in the second fragment
    assert ws.send_frame(OP_TEXT, b"abc\xed", fin=False)
    assert ws.send_frame(OP_CONT, b"\xa0", fin=False)
    ws.expect_close(1007, timeout=5)


@pytest.mark.parametrize("trunc", [b"\xce", b"\xe2\x82", b"\xf0\x9d\x84"])
def test_mws_500_07_truncated_at_message_end_1007(ws, trunc):
    assert ws.send_frame(OP_TEXT, b"abc" + trunc, fin=False)
    assert ws.send_frame(OP_CONT, b"", fin=True)
    ws.expect_close(1007)


@pytest.mark.parametrize("trunc", [b"\xce", b"\xe2\x82", b"\xf0\x9d\x84"])
def test_mws_500_08_truncated_single_frame_1007(ws, trunc):
    assert ws.send_frame(OP_TEXT, b"abc" + trunc)
    ws.expect_close(1007)


def test_mws_500_09_binary_not_validated(ws):
    p = b"\xff\xfe\xc0\xaf\xed\xa0\x80\xce"
    assert ws.echo(OP_BINARY, p) == (OP_BINARY, p)
    assert ws.echo(OP_BINARY, p, fragments=[1] * len(p)) == (OP_BINARY, p)


def test_mws_500_10_state_reset_between_messages(ws):
    # a message that ends cleanly must not leave decoder state behind
    a = "€".encode()
    assert ws.echo(OP_TEXT, a, fragments=[1, 2]) == (OP_TEXT, a)
    assert ws.echo(OP_TEXT, b"plain") == (OP_TEXT, b"plain")
    # a binary message in between must not disturb the next text message
    assert ws.echo(OP_BINARY, b"\xe2\x82") == (OP_BINARY, b"\xe2\x82")
    # ... and a lone continuation byte starting a new message is invalid
    assert ws.send_frame(OP_TEXT, b"\xac")
    ws.expect_close(1007)


def test_mws_500_11_large_valid_text_fragmented(ws):
    t = utf8_text(200000, 5)
    assert ws.echo(OP_TEXT, t, fragments=7, timeout=10) == (OP_TEXT, t)


def test_mws_500_12_lib_unicode(env):
    import libclient
    msgs = ["κόσμε", "𝄞" * 1000, "\u0000\U0010FFFF", ["€", "𝄞", "中"]]
    echoes, code = libclient.echo_all(env.ws_url(), msgs)
    assert echoes == ["κόσμε", "𝄞" * 1000, "\u0000\U0010FFFF", "€𝄞中"]
    assert code == 1000

"""Conformance, group 5 (Autobahn "Fragmentation")."""
import pytest

from wsclient import OP_BINARY, OP_CONT, OP_PING, OP_PONG, OP_TEXT, build_frame


@pytest.fixture
def ws(env):
    c = env.ws()
    yield c
    c.close()


@pytest.mark.parametrize("op", [OP_PING, OP_PONG])
def test_mws_950_01_fragmented_control(ws, op):  # 5.1 / 5.2
    assert ws.send_frame(op, b"fragment1", fin=False)
    assert ws.send_frame(OP_CONT, b"fragment2")
    ws.expect_close(1002)


@pytest.mark.parametrize("chop", [None, 1])
def test_mws_950_03_text_two_fragments(ws, chop):  # 5.3 / 5.4 / 5.5
    data = build_frame(OP_TEXT, b"fragment1", fin=False) + build_frame(OP_CONT, b"fragment2")
    assert ws.send_chopped(data, chop)
    assert ws.recv_message() == (OP_TEXT, b"fragment1fragment2")


@pytest.mark.parametrize("chop", [None, 1])
def test_mws_950_06_ping_between_fragments(ws, chop):  # 5.6 / 5.7 / 5.8
    data = build_frame(OP_TEXT, b"fragment1", fin=False) + build_frame(OP_PING, b"ping payload") + \
        build_frame(OP_CONT, b"fragment2")
    assert ws.send_chopped(data, chop)
    ws.expect_pong(b"ping payload")
    assert ws.recv_message() == (OP_TEXT, b"fragment1fragment2")


@pytest.mark.parametrize("chop", [None, 1])
def test_mws_950_09_continuation_fin_without_start(ws, chop):  # 5.9 / 5.10 / 5.11
    data = build_frame(OP_CONT, b"non-continuation payload") + build_frame(OP_TEXT, b"Hello, world!")
    assert ws.send_chopped(data, chop)
    ws.expect_close(1002)  # and no echo of the text


@pytest.mark.parametrize("chop", [None, 1])
def test_mws_950_12_continuation_nofin_without_start(ws, chop):  # 5.12 / 5.13 / 5.14
    data = build_frame(OP_CONT, b"non-continuation payload", fin=False) + \
        build_frame(OP_TEXT, b"Hello, world!")
    assert ws.send_chopped(data, chop)
    ws.expect_close(1002)


def test_mws_950_15_orphan_after_complete_message(ws):  # 5.15
    data = build_frame(OP_TEXT, b"fragment1", fin=False) + build_frame(OP_CONT, b"fragment2") + \
        build_frame(OP_CONT, b"fragment3", fin=False) + build_frame(OP_TEXT, b"fragment4")
    assert ws.send_raw(data)
    assert ws.recv_message() == (OP_TEXT, b"fragment1fragment2")
    ws.expect_close(1002)


@pytest.mark.parametrize("first_fin", [False, True])
def test_mws_950_16_repeated_orphans(ws, first_fin):  # 5.16 / 5.17
    data = b""
    for _ in range(2):
        data += build_frame(OP_CONT, b"fragment1", fin=first_fin) + \
            build_frame(OP_TEXT, b"fragment2", fin=False) + build_frame(OP_CONT, b"fragment3")
    assert ws.send_raw(data)
    ws.expect_close(1002)


def test_mws_950_18_text_inside_fragmented_text(ws):  # 5.18
    assert ws.send_frame(OP_TEXT, b"fragment1", fin=False)
    assert ws.send_frame(OP_TEXT, b"fragment2")
    ws.expect_close(1002)


def test_mws_950_19_five_fragments_with_pings(ws):  # 5.19 / 5.20
    frags = [b"fragment%d" % i for i in range(1, 6)]
    for i, f in enumerate(frags):
        assert ws.send_frame(OP_TEXT if i == 0 else OP_CONT, f, fin=(i == 4))
        if i in (1, 3):
            assert ws.send_frame(OP_PING, b"pongme %d!" % i)
            ws.expect_pong(b"pongme %d!" % i)
    assert ws.recv_message() == (OP_TEXT, b"".join(frags))


def test_mws_950_21_binary_many_fragments(ws):
    p = bytes(range(256)) * 40
    assert ws.echo(OP_BINARY, p, fragments=[1, 0, 255] + [512] * 19 + [256]) == (OP_BINARY, p)

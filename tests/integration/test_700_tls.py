"""The same WebSocket service over TLS (mod_ssl, wss://)."""
import pytest

import libclient
from wsclient import OP_BINARY, OP_PING, OP_TEXT, utf8_text

SIZES = [0, 125, 126, 65535, 65536, 1 << 20]


def _p(kind, n):
    return utf8_text(n).decode() if kind == "text" else bytes((i * 13) & 0xFF for i in range(n))


@pytest.mark.parametrize("kind", ["text", "binary"])
@pytest.mark.parametrize("n", SIZES)
def test_mws_700_01_lib_wss_echo(env, kind, n):
    p = _p(kind, n)
    frag = libclient.text_fragments(p, 3) if kind == "text" else libclient.fragments(p, 3)
    echoes, code = libclient.echo_all(env.wss_url(), [p, frag], ssl_ctx=env.client_ssl_ctx())
    assert echoes == [p, p]
    assert code == 1000


@pytest.mark.parametrize("n", SIZES)
def test_mws_700_02_raw_tls_echo(env, n):
    ws = env.ws(tls=True)
    try:
        assert ws.conn.sock.version() is not None  # really TLS
        b = bytes((i * 7) & 0xFF for i in range(n))
        t = utf8_text(n)
        assert ws.echo(OP_BINARY, b, timeout=20) == (OP_BINARY, b)
        assert ws.echo(OP_TEXT, t, fragments=3, timeout=20) == (OP_TEXT, t)
        ws.send_close(1000)
        ws.expect_close(1000, reply=False)
    finally:
        ws.close()


def test_mws_700_03_raw_tls_ping_and_errors(env):
    ws = env.ws(tls=True)
    try:
        assert ws.send_frame(OP_PING, b"tls ping")
        ws.expect_pong(b"tls ping")
        assert ws.send_frame(OP_TEXT, b"x", masked=False)
        ws.expect_close(1002)
    finally:
        ws.close()


def test_mws_700_04_raw_tls_byte_by_byte(env):
    ws = env.ws(tls=True)
    try:
        p = utf8_text(300)
        assert ws.send_message(OP_TEXT, p, fragments=2, chop=1)
        assert ws.recv_message() == (OP_TEXT, p)
    finally:
        ws.close()


def test_mws_700_05_tls_handshake_refusals(env):
    assert env.upgrade(tls=True, version="8").status == 426
    assert env.upgrade(tls=True, key="short").status == 400
    from wsclient import build_request
    assert env.http(build_request("GET", "/echo"), tls=True).status == 426


def test_mws_700_06_tls_utf8_and_limit(env):
    ws = env.ws("/echo-small", tls=True)
    try:
        ws.send_message(OP_BINARY, b"z" * 1025)
        ws.expect_close(1009)
    finally:
        ws.close()
    ws = env.ws(tls=True)
    try:
        assert ws.send_frame(OP_TEXT, b"\xc0\xaf", fin=False)
        ws.expect_close(1007)
    finally:
        ws.close()


def test_mws_700_07_tls_static_get(env):
    import conftest
    from wsclient import build_request
    resp = env.http(build_request("GET", "/index.html"), tls=True)
    assert resp.status == 200
    assert resp.body == conftest.INDEX_HTML

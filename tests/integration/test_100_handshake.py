"""Opening handshake (RFC 6455 section 4) and its HTTP status codes."""
import base64
import os
import uuid

import pytest

import conftest
import wsclient
from wsclient import OP_TEXT, accept_value, build_request, check_101, upgrade_headers


def _no_101(resp):
    assert resp.header("Sec-WebSocket-Accept") is None, resp


def test_mws_100_01_valid_handshake(env):
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    c = env.conn()
    try:
        c.send(build_request("GET", "/echo", headers=upgrade_headers(key=key)))
        resp = c.read_response()
        assert resp.status == 101, resp
        check_101(resp, key)
        assert resp.header("Sec-WebSocket-Accept") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        # no subprotocol or extension was asked for, none may be answered
        assert resp.header("Sec-WebSocket-Protocol") is None, resp
        assert resp.header("Sec-WebSocket-Extensions") is None, resp
        assert resp.body == b"" and not c.buf, "data after the 101 head: %r" % bytes(c.buf)
        ws = wsclient.WsClient(c, resp, key)
        assert ws.echo(OP_TEXT, b"hello") == (OP_TEXT, b"hello")
        ws.send_close(1000)
        assert ws.expect_close(1000, reply=False) == (1000, b"")
    finally:
        c.close()


@pytest.mark.parametrize("upgrade, connection", [
    ("websocket", "Upgrade"),
    ("WebSocket", "upgrade"),
    ("WEBSOCKET", "UPGRADE"),
    ("websocket", "keep-alive, Upgrade"),
    ("websocket", "Upgrade, keep-alive"),
    ("websocket", "keep-alive,upgrade"),
    ("websocket", "keep-alive ,  Upgrade ,foo"),
])
def test_mws_100_02_token_case_and_lists(env, upgrade, connection):
    key = wsclient.new_key()
    c = env.conn()
    try:
        c.send(build_request("GET", "/echo", headers=upgrade_headers(
            key=key, upgrade=upgrade, connection=connection)))
        resp = c.read_response()
        check_101(resp, key)
        ws = wsclient.WsClient(c, resp, key)
        assert ws.echo(OP_TEXT, b"x") == (OP_TEXT, b"x")
    finally:
        c.close()


@pytest.mark.parametrize("version", ["8", "7", "12", "14", "0", "abc", "", None])
def test_mws_100_03_wrong_or_missing_version_426(env, version):
    if version is None:
        resp = env.upgrade(omit=("Sec-WebSocket-Version",))
    else:
        resp = env.upgrade(version=version)
    assert resp.status == 426, resp
    assert resp.header("Sec-WebSocket-Version") == "13", resp
    _no_101(resp)


@pytest.mark.parametrize("key", [
    "not base64 at all!",
    base64.b64encode(os.urandom(15)).decode(),
    base64.b64encode(os.urandom(17)).decode(),
    base64.b64encode(os.urandom(32)).decode(),
    "",
    "====",
    base64.b64encode(os.urandom(16)).decode()[:-3] + "!==",
], ids=["garbage", "15bytes", "17bytes", "32bytes", "empty", "padding-only", "bad-char"])
def test_mws_100_04_bad_key_400(env, key):
    resp = env.upgrade(key=key)
    assert resp.status == 400, resp
    _no_101(resp)


def test_mws_100_05_missing_key_400(env):
    resp = env.upgrade(omit=("Sec-WebSocket-Key",))
    assert resp.status == 400, resp
    _no_101(resp)


@pytest.mark.parametrize("method", ["POST", "PUT", "OPTIONS"])
def test_mws_100_06_not_get_400(env, method):
    raw = build_request(method, "/echo", headers=upgrade_headers(
        extra=[("Content-Length", "0")]))
    resp = env.http(raw)
    assert resp.status == 400, resp
    _no_101(resp)


def test_mws_100_07_http10_400(env):
    resp = env.upgrade(http_version="HTTP/1.0")
    assert resp.status == 400, resp
    _no_101(resp)


def test_mws_100_08_connection_upgrade_without_upgrade_header_400(env):
    resp = env.upgrade(omit=("Upgrade",))
    assert resp.status == 400, resp
    _no_101(resp)


@pytest.mark.parametrize("upgrade", ["foo", "h2c", "websocket2", "web socket"])
def test_mws_100_09_other_upgrade_token_refused(env, upgrade):
    # an Upgrade to something else than websocket: either a malformed
    # WebSocket upgrade (400) or an HTTP upgrade the server ignores, making
    # it a plain GET to a WebSocket location (426).  Never a 101 or a 2xx.
    resp = env.upgrade(upgrade=upgrade)
    assert resp.status in (400, 426), resp
    _no_101(resp)


def test_mws_100_10_upgrade_without_connection_token(env):
    # Upgrade: websocket + key + version, but Connection lacks "upgrade":
    # not a valid upgrade request.  Either refusal status is acceptable:
    # 400 (malformed upgrade) or 426 (treated as a plain GET).
    resp = env.upgrade(connection="keep-alive")
    assert resp.status in (400, 426), resp
    _no_101(resp)


def test_mws_100_11_plain_get_426(env):
    resp = env.http(build_request("GET", "/echo"))
    assert resp.status == 426, resp
    assert resp.header("Upgrade") is not None, resp
    assert resp.header("Upgrade").strip().lower() == "websocket", resp
    _no_101(resp)


def test_mws_100_12_denied_403(env):
    env.allow_error(r"AH01630")  # mod_authz_core: client denied by server configuration
    resp = env.upgrade(path="/denied")
    assert resp.status == 403, resp
    _no_101(resp)


def test_mws_100_13_basic_auth(env):
    # no credentials: 401 with a Basic challenge, no upgrade
    resp = env.upgrade(path="/auth")
    assert resp.status == 401, resp
    assert (resp.header("WWW-Authenticate") or "").lower().startswith("basic"), resp
    _no_101(resp)
    # wrong password: 401
    env.allow_error(r"AH01617|Password Mismatch")
    bad = base64.b64encode(b"%s:wrong" % conftest.AUTH_USER.encode()).decode()
    resp = env.upgrade(path="/auth", extra=[("Authorization", "Basic " + bad)])
    assert resp.status == 401, resp
    _no_101(resp)
    # right credentials: 101 and a working echo
    good = base64.b64encode(("%s:%s" % (conftest.AUTH_USER, conftest.AUTH_PASS)).encode()).decode()
    ws = env.ws("/auth", headers=[("Authorization", "Basic " + good)])
    try:
        assert ws.echo(OP_TEXT, b"authorized") == (OP_TEXT, b"authorized")
        ws.send_close(1000)
        ws.expect_close(1000, reply=False)
    finally:
        ws.close()


def upgrade_and_end_lines(env, tag):
    """The access log's lines of one WebSocket: the 101's (written when the
    handshake's request ends: it has the Upgrade header) and the one written
    when the WebSocket ends (test_1420 checks its content)."""
    lines = env.wait_access_lines(tag, count=2)
    at_101 = [ln for ln in lines if ln.endswith('"websocket"')]
    at_end = [ln for ln in lines if not ln.endswith('"websocket"')]
    assert len(at_101) == 1 and len(at_end) == 1, lines
    return at_101[0], at_end[0]


def test_mws_100_14_access_log_one_101_line(env):
    tag = uuid.uuid4().hex
    ws = env.ws("/echo?t=" + tag)
    try:
        assert ws.echo(OP_TEXT, b"log me") == (OP_TEXT, b"log me")
        ws.send_close(1000)
        ws.expect_close(1000, reply=False)
    finally:
        ws.close()
    at_101, at_end = upgrade_and_end_lines(env, tag)
    assert '"GET /echo?t=%s HTTP/1.1" 101 ' % tag in at_101
    assert '"GET /echo?t=%s HTTP/1.1" 101 ' % tag in at_end
    # a connection that ends in a protocol error is logged the same way
    tag2 = uuid.uuid4().hex
    ws = env.ws("/echo?t=" + tag2)
    try:
        ws.send_frame(OP_TEXT, b"x", masked=False)
        ws.expect_close(1002)
    finally:
        ws.close()
    at_101, at_end = upgrade_and_end_lines(env, tag2)
    assert '"GET /echo?t=%s HTTP/1.1" 101 ' % tag2 in at_101


def test_mws_100_15_access_log_refused(env):
    tag = uuid.uuid4().hex
    resp = env.http(build_request("GET", "/echo?t=" + tag))
    assert resp.status == 426
    lines = env.wait_access_lines(tag)
    assert len(lines) == 1 and '" 426 ' in lines[0], lines


def test_mws_100_16_subprotocol_not_selected(env):
    # the echo handler selects no subprotocol: the 101 must not name one
    ws = env.ws(headers=[("Sec-WebSocket-Protocol", "chat, superchat")])
    try:
        assert ws.response.header("Sec-WebSocket-Protocol") is None, ws.response
        assert ws.echo(OP_TEXT, b"p") == (OP_TEXT, b"p")
    finally:
        ws.close()


def test_mws_100_17_unknown_extension_not_accepted(env):
    ws = env.ws(headers=[("Sec-WebSocket-Extensions", "x-foo-unknown; bar=1")])
    try:
        assert ws.response.header("Sec-WebSocket-Extensions") is None, ws.response
        assert ws.echo(OP_TEXT, b"e") == (OP_TEXT, b"e")
    finally:
        ws.close()


def test_mws_100_18_key_accept_many(env):
    # a few random keys, Accept computed independently each time
    for _ in range(5):
        key = base64.b64encode(os.urandom(16)).decode()
        ws = env.ws(key=key)
        try:
            assert ws.response.header("Sec-WebSocket-Accept") == accept_value(key)
        finally:
            ws.close()


def test_mws_100_19_websockets_library_handshake(env):
    import asyncio
    import websockets

    async def go():
        async with websockets.connect(env.ws_url("/echo"), ping_interval=None,
                                      open_timeout=5, close_timeout=5) as ws:
            await ws.send("lib")
            return await asyncio.wait_for(ws.recv(), 5), ws

    got, ws = asyncio.run(go())
    assert got == "lib"
    assert ws.close_code == 1000


def test_mws_100_20_unknown_location_404(env):
    resp = env.upgrade(path="/no-such-ws-location")
    assert resp.status == 404, resp
    _no_101(resp)


def test_mws_100_21_duplicate_key_400(env):
    # two Sec-WebSocket-Key headers: httpd joins them ("a, b"), not a key
    resp = env.upgrade(extra=[("Sec-WebSocket-Key", wsclient.new_key())])
    assert resp.status == 400, resp
    _no_101(resp)


def test_mws_100_22_upgrade_with_body_400(env):
    raw = build_request("GET", "/echo", headers=upgrade_headers(
        extra=[("Content-Length", "5")])) + b"hello"
    resp = env.http(raw)
    assert resp.status == 400, resp
    _no_101(resp)


def test_mws_100_23_tls_access_log(env):
    tag = uuid.uuid4().hex
    ws = env.ws("/echo?t=" + tag, tls=True)
    try:
        assert ws.echo(OP_TEXT, b"tls log") == (OP_TEXT, b"tls log")
        ws.send_close(1000)
        ws.expect_close(1000, reply=False)
    finally:
        ws.close()
    at_101, at_end = upgrade_and_end_lines(env, tag)
    assert '" 101 ' in at_101


def test_mws_100_24_connection_on_two_header_lines(env):
    # "Connection: keep-alive" and "Connection: Upgrade" as separate lines
    key = wsclient.new_key()
    hdrs = upgrade_headers(key=key, connection="keep-alive") + [("Connection", "Upgrade")]
    c = env.conn()
    try:
        c.send(build_request("GET", "/echo", headers=hdrs))
        resp = c.read_response()
        check_101(resp, key)
        ws = wsclient.WsClient(c, resp, key)
        assert ws.echo(OP_TEXT, b"two lines") == (OP_TEXT, b"two lines")
    finally:
        c.close()

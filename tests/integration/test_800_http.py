"""Plain HTTP served beside the WebSocket locations, on the same port."""
import asyncio

import websockets

import conftest
import wsclient
from wsclient import OP_TEXT, build_request, check_101, upgrade_headers


def test_mws_800_01_static_get(env):
    resp = env.http(build_request("GET", "/index.html"))
    assert resp.status == 200, resp
    assert resp.body == conftest.INDEX_HTML
    assert (resp.header("Content-Type") or "").startswith("text/html")


def test_mws_800_02_head_and_404(env):
    resp = env.http(build_request("HEAD", "/index.html"), head=True)
    assert resp.status == 200
    assert resp.header("Content-Length") == str(len(conftest.INDEX_HTML))
    resp = env.http(build_request("GET", "/missing.html"))
    assert resp.status == 404


def test_mws_800_03_keepalive_then_upgrade(env):
    # two plain requests, then an upgrade, on one connection
    c = env.conn()
    try:
        for _ in range(2):
            c.send(build_request("GET", "/index.html"))
            resp = c.read_response()
            assert resp.status == 200 and resp.body == conftest.INDEX_HTML
        key = wsclient.new_key()
        c.send(build_request("GET", "/echo", headers=upgrade_headers(key=key)))
        resp = c.read_response()
        check_101(resp, key)
        ws = wsclient.WsClient(c, resp, key)
        assert ws.echo(OP_TEXT, b"after keep-alive") == (OP_TEXT, b"after keep-alive")
        ws.send_close(1000)
        ws.expect_close(1000, reply=False)
    finally:
        c.close()


def test_mws_800_04_refused_upgrade_then_get_same_connection(env):
    # a 426 (plain GET to the ws location) keeps HTTP working
    c = env.conn()
    try:
        c.send(build_request("GET", "/echo"))
        r1 = c.read_response()
        assert r1.status == 426
        if (r1.header("Connection") or "").lower() != "close":
            c.send(build_request("GET", "/index.html"))
            r2 = c.read_response()
            assert r2.status == 200 and r2.body == conftest.INDEX_HTML
    finally:
        c.close()


def test_mws_800_05_http_while_websockets_open(env):
    # 12 open WebSockets do not prevent plain HTTP, and each still echoes
    socks = [env.ws() for _ in range(12)]
    try:
        resp = env.http(build_request("GET", "/index.html"))
        assert resp.status == 200 and resp.body == conftest.INDEX_HTML
        for i, ws in enumerate(socks):
            assert ws.echo(OP_TEXT, b"conn %d" % i) == (OP_TEXT, b"conn %d" % i)
    finally:
        for ws in socks:
            ws.close()


def test_mws_800_06_concurrent_lib_clients(env):
    async def one(i):
        async with websockets.connect(env.ws_url(), ping_interval=None, max_size=None,
                                      open_timeout=10, close_timeout=5) as ws:
            for j in range(20):
                msg = "client %d msg %d " % (i, j) + "x" * (j * 50)
                await ws.send(msg)
                assert await ws.recv() == msg
        return ws.close_code

    async def main():
        return await asyncio.gather(*(one(i) for i in range(16)))

    codes = asyncio.run(asyncio.wait_for(main(), 60))
    assert codes == [1000] * 16


def test_mws_800_07_server_status_after_traffic(env):
    # after all of that the static file and a new WebSocket still work
    resp = env.http(build_request("GET", "/index.html"))
    assert resp.status == 200
    ws = env.ws()
    try:
        assert ws.echo(OP_TEXT, b"end") == (OP_TEXT, b"end")
    finally:
        ws.close()


def test_mws_800_08_error_log_check_works(env):
    # the per-test error-log check sees a real [error] line (AH01630 from a
    # denied request) and the allow-list then accepts it
    resp = env.upgrade(path="/denied")
    assert resp.status == 403
    import time
    deadline = time.monotonic() + 5
    while True:
        bad = env.new_log_errors(reset=False)
        if bad or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert any("AH01630" in line for line in bad), bad
    env.allow_error(r"AH01630")
    assert env.new_log_errors(reset=False) == []


def test_mws_800_09_event_idle_websockets_beyond_threads(env):
    # with the event MPM idle WebSockets hold no worker thread: more open
    # connections than MaxRequestWorkers (40) all work, and so does HTTP
    import pytest
    if env.mpm != "event":
        pytest.skip("only the event MPM parks idle connections")
    socks = []
    try:
        for _ in range(60):
            socks.append(env.ws(timeout=10))
        resp = env.http(build_request("GET", "/index.html"), timeout=10)
        assert resp.status == 200 and resp.body == conftest.INDEX_HTML
        for i, ws in enumerate(socks):
            assert ws.echo(OP_TEXT, b"idle %d" % i) == (OP_TEXT, b"idle %d" % i)
    finally:
        for ws in socks:
            ws.close()

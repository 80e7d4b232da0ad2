"""An access-log line when a WebSocket ends (issue 14), through httpd's own
mod_log_config (a CustomLog with a LogFormat), for each way a WebSocket
can end: client close, server close, abort, timeout, graceful restart.
The line at the 101 stays (env websocket-upgrade picks it).
"""
import os
import socket
import subprocess
import time

import pytest

import conftest
import wsclient
from wsclient import OP_TEXT, OP_BINARY
from test_1800_handlers import MOD_INC, PROTO

FIELDS = ["handler", "subprotocol", "duration", "bytes_in", "bytes_out", "msgs_in",
          "msgs_out", "close", "closed_by", "status", "request", "user", "client", "path",
          "query", "method", "user_agent"]

LOGS = """
LogFormat "%{{websocket-handler}}n|%{{websocket-subprotocol}}n|%{{websocket-duration-ms}}n|\
%{{websocket-bytes-in}}n|%{{websocket-bytes-out}}n|%{{websocket-msgs-in}}n|\
%{{websocket-msgs-out}}n|%{{websocket-close}}n|%{{websocket-closed-by}}n|%>s|%r|%u|%a|%U|%q|%m|\
%{{User-Agent}}i" wsclose
CustomLog "{root}/logs/ws_close_log" wsclose env=websocket-close
CustomLog "{root}/logs/ws_upgrade_log" "%r %>s" env=websocket-upgrade
"""

LOCATIONS = conftest.WS_LOCATIONS + """
<Location /idle>
    SetHandler websocket
    WebSocketHandler {echo}
    WebSocketIdleTimeout 1
    WebSocketCloseTimeout 1
</Location>
<Location /increment>
    SetHandler websocket
    WebSocketHandler {inc}
</Location>
"""


@pytest.fixture(scope="module")
def log_env(env):
    env.restart(extra=LOGS.format(root=env.root),
                locations=LOCATIONS.format(echo=conftest.MOD_ECHO, small=conftest.SMALL_LIMIT,
                                           htpasswd=env.htpasswd, inc=MOD_INC))
    yield env
    env.restart()


def close_lines(env, tag, timeout=10):
    path = os.path.join(env.root, "logs", "ws_close_log")
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(path) as f:
                found = [dict(zip(FIELDS, ln.rstrip("\n").split("|")))
                         for ln in f if tag in ln]
        except OSError:
            found = []
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def one_line(env, tag):
    lines = close_lines(env, tag)
    assert len(lines) == 1, lines
    return lines[0]


def test_1420_01_client_close(log_env):
    env = log_env
    ws = env.ws("/echo?t=client", headers=[("User-Agent", "mws-test/1.0")])
    t0 = time.monotonic()
    assert ws.echo(OP_TEXT, b"hello") == (OP_TEXT, b"hello")
    assert ws.echo(OP_BINARY, b"x" * 300) == (OP_BINARY, b"x" * 300)
    time.sleep(0.3)
    ws.send_close(1000)
    ws.expect_close("any", timeout=5, reply=False)
    ws.close()
    took = (time.monotonic() - t0) * 1000
    ln = one_line(env, "t=client")
    assert ln["status"] == "101"
    assert ln["request"] == "GET /echo?t=client HTTP/1.1"
    assert ln["client"] == "127.0.0.1"
    assert (ln["path"], ln["query"], ln["method"]) == ("/echo", "?t=client", "GET")
    assert ln["user_agent"] == "mws-test/1.0"
    assert ln["handler"].endswith("mod_ws_echo.so") or "echo" in ln["handler"]
    assert ln["msgs_in"] == "2" and ln["msgs_out"] == "2"
    # wire bytes: two data frames + the close, masked (client) / not (server)
    assert int(ln["bytes_in"]) == (2 + 4 + 5) + (4 + 4 + 300) + (2 + 4 + 2)
    assert int(ln["bytes_out"]) == (2 + 5) + (4 + 300) + (2 + 2)
    assert ln["close"] == "1000" and ln["closed_by"] == "client"
    assert 300 <= int(ln["duration"]) <= took + 1000
    # the 101's own line is there too, for those who want it
    with open(os.path.join(env.root, "logs", "ws_upgrade_log")) as f:
        assert "GET /echo?t=client HTTP/1.1 101" in f.read()


def test_1420_02_server_close(log_env):
    env = log_env
    ws = env.ws("/echo-small?t=server")
    ws.send_frame(OP_TEXT, b"y" * (conftest.SMALL_LIMIT + 1))
    ws.expect_close(1009, timeout=5)
    ws.close()
    ln = one_line(env, "t=server")
    assert ln["close"] == "1009" and ln["closed_by"] == "server", ln


def test_1420_03_abort(log_env):
    env = log_env
    ws = env.ws("/echo?t=abort")
    assert ws.echo(OP_TEXT, b"a") == (OP_TEXT, b"a")
    ws.conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    ws.conn.sock.close()
    ln = one_line(env, "t=abort")
    assert ln["close"] == "1006" and ln["closed_by"] == "abort", ln
    assert ln["msgs_in"] == "1"


def test_1420_04_timeout(log_env):
    """WebSocketIdleTimeout 1: a ping, no pong within the close timeout,
    close 1001 'idle timeout'."""
    env = log_env
    c = wsclient.Conn.open(env.host, env.http_port, timeout=10)
    key = wsclient.new_key()
    c.send(wsclient.build_request("GET", "/idle?t=timeout", host="localhost",
                                  headers=wsclient.upgrade_headers(key=key)))
    assert c.read_response().status == 101
    # never read nor answer: the server gives up
    ln = close_lines(env, "t=timeout", timeout=15)
    c.close()
    assert len(ln) == 1, ln
    assert ln[0]["close"] == "1001" and ln[0]["closed_by"] == "timeout", ln


def test_1420_05_graceful_restart(log_env):
    env = log_env
    ws = env.ws("/echo?t=graceful")
    assert ws.echo(OP_TEXT, b"g") == (OP_TEXT, b"g")
    r = subprocess.run([conftest.HTTPD, "-f", env.conf_path, "-k", "graceful"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    code, _ = ws.expect_close(1001, timeout=10)
    ws.close()
    ln = one_line(env, "t=graceful")
    assert ln["close"] == "1001" and ln["closed_by"] == "server", ln
    assert ln["msgs_in"] == "1" and ln["msgs_out"] == "1"


def test_1420_06_user(log_env):
    env = log_env
    import base64
    auth = base64.b64encode(("%s:%s" % (conftest.AUTH_USER, conftest.AUTH_PASS)).encode()).decode()
    ws = env.ws("/auth?t=user", headers=[("Authorization", "Basic " + auth)])
    ws.send_close(1000)
    ws.expect_close("any", timeout=5, reply=False)
    ws.close()
    ln = one_line(env, "t=user")
    assert ln["user"] == conftest.AUTH_USER, ln


def test_1420_07_httpd_timeout(log_env):
    """httpd's Timeout: a client that sends nothing (not even pongs) is
    dropped, by the MPM for a parked connection (1006), by the module with
    1001 for a blocking one; either way the line says timeout."""
    env = log_env
    locations = LOCATIONS.format(echo=conftest.MOD_ECHO, small=conftest.SMALL_LIMIT,
                                 htpasswd=env.htpasswd, inc=MOD_INC)
    env.restart(extra=LOGS.format(root=env.root) + "\nTimeout 2\n", locations=locations)
    try:
        c = wsclient.Conn.open(env.host, env.http_port, timeout=10)
        key = wsclient.new_key()
        c.send(wsclient.build_request("GET", "/echo?t=httpdtimeout", host="localhost",
                                      headers=wsclient.upgrade_headers(key=key)))
        assert c.read_response().status == 101
        ln = close_lines(env, "t=httpdtimeout", timeout=15)
        c.close()
        assert len(ln) == 1, ln
        assert ln[0]["closed_by"] == "timeout", ln
        assert ln[0]["close"] in ("1001", "1006"), ln
        assert 1500 <= int(ln[0]["duration"]) <= 12000, ln
    finally:
        env.restart(extra=LOGS.format(root=env.root), locations=locations)


def test_1420_08_handler_and_subprotocol(log_env):
    """The increment handler chooses its subprotocol and sends on a timer:
    the line names both and counts what it sent."""
    env = log_env
    ws = env.ws("/increment?t=subproto", headers=[("Sec-WebSocket-Protocol", PROTO)])
    got = [ws.recv_message(5) for _ in range(3)]
    assert all(op == OP_TEXT for op, _ in got)
    ws.send_close(1000)
    ws.expect_close("any", timeout=5, reply=False, allow_frames=True)
    ws.close()
    ln = one_line(env, "t=subproto")
    assert ln["subprotocol"] == PROTO, ln
    assert "increment" in ln["handler"], ln
    assert int(ln["msgs_out"]) >= 3 and ln["msgs_in"] == "0", ln
    assert ln["close"] == "1000" and ln["closed_by"] == "client", ln

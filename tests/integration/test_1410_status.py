"""mod_status shows WebSockets (issue 14): /server-status gets a WebSocket
section and ?auto `WebSocket...: value` lines, summed over all children.

Each test reads the figures before and after what it does, so that the
totals (kept across restarts, as mod_status keeps its own) only need to
grow by what the test did.
"""
import re
import subprocess
import time

import pytest

import conftest
import wsclient
from wsclient import OP_TEXT

STATUS = """
LoadModule status_module {modules}/mod_status.so
<Location /server-status>
    SetHandler server-status
    Require ip 127.0.0.1
</Location>
"""

LOCATIONS = conftest.WS_LOCATIONS + """
<Location /one>
    SetHandler websocket
    WebSocketHandler {echo}
    WebSocketMaxConnections 1
</Location>
"""


@pytest.fixture(scope="module")
def status_env(env):
    env.restart(extra=STATUS.format(modules=conftest.HTTPD_MODULES),
                locations=LOCATIONS.format(echo=conftest.MOD_ECHO, small=conftest.SMALL_LIMIT,
                                           htpasswd=env.htpasswd))
    yield env
    env.restart()


def auto(env):
    r = env.http(wsclient.build_request("GET", "/server-status?auto", host="localhost",
                                        headers=[("Connection", "close")]), timeout=10)
    assert r.status == 200
    out = {}
    for line in r.body.decode().splitlines():
        if line.startswith("WebSocket"):
            k, _, v = line.partition(": ")
            out[k] = int(v)
    return out


def wait_for(env, pred, timeout=10):
    deadline = time.monotonic() + timeout
    while True:
        a = auto(env)
        if pred(a) or time.monotonic() > deadline:
            return a
        time.sleep(0.1)


def test_1410_01_open_messages_closes(status_env):
    env = status_env
    a0 = wait_for(env, lambda a: a["WebSocketOpen"] == 0)
    assert a0["WebSocketOpen"] == 0, a0
    n = 12
    clients = [env.ws("/echo") for _ in range(n)]
    try:
        for i, ws in enumerate(clients):
            for j in range(3):
                msg = b"m%d-%d" % (i, j)
                assert ws.echo(OP_TEXT, msg) == (OP_TEXT, msg)
        want_parked = n if env.mpm == "event" else 0
        # a child counts what it wrote after the write: the client may have
        # read the echo, and another child may answer this page, first
        a1 = wait_for(env, lambda a: a["WebSocketOpen"] == n
                      and a["WebSocketParked"] == want_parked
                      and a["WebSocketMessagesOut"] - a0["WebSocketMessagesOut"] >= 3 * n
                      and a["WebSocketBytesOut"] - a0["WebSocketBytesOut"] >= 3 * n * (2 + 4))
        assert a1["WebSocketOpen"] == n, a1
        assert a1["WebSocketOpened"] - a0["WebSocketOpened"] == n
        assert a1["WebSocketMessagesIn"] - a0["WebSocketMessagesIn"] == 3 * n
        assert a1["WebSocketMessagesOut"] - a0["WebSocketMessagesOut"] == 3 * n
        assert a1["WebSocketBytesIn"] - a0["WebSocketBytesIn"] >= 3 * n * (2 + 4 + 4)
        assert a1["WebSocketBytesOut"] - a0["WebSocketBytesOut"] >= 3 * n * (2 + 4)
        assert a1["WebSocketQueuedBytes"] == 0
        if env.mpm == "event":
            assert a1["WebSocketOpenParkedDriver"] == n and a1["WebSocketParked"] == n
            assert a1["WebSocketRunning"] == 0
        else:
            assert a1["WebSocketOpenBlockingDriver"] == n and a1["WebSocketParked"] == 0
            assert a1["WebSocketRunning"] == n
        # summed over children: prefork has a process per WebSocket
        assert a1["WebSocketChildren"] >= (n if env.mpm == "prefork" else 2)
        per_line = {k: v for k, v in a1.items() if k.startswith("WebSocketOpen(")}
        assert n in per_line.values(), per_line
        assert a1["WebSocketCapacityUsed"] >= n
        # 8 close with 1000, 4 with 4000 (an "other" code)
        for ws in clients[:8]:
            ws.send_close(1000)
            ws.expect_close("any", timeout=5, reply=False)
        for ws in clients[8:]:
            ws.send_close(4000)
            ws.expect_close("any", timeout=5, reply=False)
        a2 = wait_for(env, lambda a: a["WebSocketOpen"] == 0)
        assert a2["WebSocketOpen"] == 0 and a2["WebSocketParked"] == 0, a2
        assert a2["WebSocketClosed"] - a0["WebSocketClosed"] == n
        assert a2["WebSocketClose1000"] - a0["WebSocketClose1000"] == 8
        assert a2["WebSocketCloseOther"] - a0["WebSocketCloseOther"] == 4
    finally:
        for ws in clients:
            ws.close()


def test_1410_02_refusals(status_env):
    env = status_env
    a0 = auto(env)
    r = env.upgrade("/echo", extra=[("Origin", "http://evil.example")])
    assert r.status == 403
    keep = env.ws("/one")
    try:
        r = env.upgrade("/one")
        assert r.status == 503
    finally:
        keep.close()
    a1 = auto(env)
    assert a1["WebSocketRefused403"] - a0["WebSocketRefused403"] == 1
    assert a1["WebSocketRefused503"] - a0["WebSocketRefused503"] == 1


def test_1410_03_html_section(status_env):
    env = status_env
    ws = env.ws("/echo")
    try:
        # the child counts the WebSocket open right after its 101: the
        # client may ask before that (prefork: another child answers)
        deadline = time.monotonic() + 5
        while True:
            r = env.http(wsclient.build_request("GET", "/server-status", host="localhost",
                                                headers=[("Connection", "close")]), timeout=10)
            body = r.body.decode()
            if re.search(r"<p>1 open \(", body) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert r.status == 200
        assert "<h2><a name=\"websocket\">WebSockets</a></h2>" in body
        assert re.search(r"<p>1 open \(", body), body[-2000:]
        assert "httpd.conf:" in body      # the WebSocketHandler lines
    finally:
        ws.close()


def test_1410_04_totals_survive_graceful_restart(status_env):
    """The segment is the parent's for its whole life: a graceful restart's
    new children read what the old ones counted, and old children that
    still drain write into the same figures."""
    env = status_env
    for _ in range(3):
        ws = env.ws("/echo")
        ws.echo(OP_TEXT, b"x")
        ws.close()
    a0 = wait_for(env, lambda a: a["WebSocketOpen"] == 0)
    r = subprocess.run([conftest.HTTPD, "-f", env.conf_path, "-k", "graceful"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    time.sleep(1.5)
    a1 = wait_for(env, lambda a: a["WebSocketOpened"] >= a0["WebSocketOpened"])
    assert a1["WebSocketOpened"] >= a0["WebSocketOpened"] >= 3
    assert a1["WebSocketMessagesIn"] >= a0["WebSocketMessagesIn"]
    ws = env.ws("/echo")
    try:
        a2 = wait_for(env, lambda a: a["WebSocketOpen"] == 1)
        assert a2["WebSocketOpen"] == 1
        assert a2["WebSocketOpened"] == a1["WebSocketOpened"] + 1
    finally:
        ws.close()

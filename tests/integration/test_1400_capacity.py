"""Capacity that never hangs (issue 14): WebSocketMaxConnections auto.

At httpd's default MPM settings (no MPM directive at all) the module
computes what the MPM accepts, keeps a margin for plain HTTP, and answers
upgrades past it with 503 + Retry-After at once, while a page on the same
server keeps getting 200 promptly.  Before, the event MPM stopped accepting
at ~75 connections per child and clients hung in the listen queue.

The figures at httpd's defaults (MWS00120 at start-up):
  event   (25 - 5) x (1 + AsyncRequestWorkerFactor 2) = 60 per child,
          x 16 children (MaxRequestWorkers 400 / ThreadsPerChild 25) = 960
  worker  (25 - 5) threads per child x 16 = 320
  prefork MaxRequestWorkers 256 - 51 = 205
"""
import re
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

import conftest
import wsclient

EXPECTED = {  # mpm: (per child, per server) at httpd's defaults
    "event": (60, 960),
    "worker": (20, 320),
    "prefork": (1, 205),
}

LOCATIONS = """
<Location /echo>
    SetHandler websocket
    WebSocketHandler {echo}
</Location>
<Location /explicit>
    SetHandler websocket
    WebSocketHandler {echo}
    WebSocketMaxConnections 3
</Location>
"""


def _startup_line(env, offset):
    text = env.error_log_since(offset)
    lines = [ln for ln in text.splitlines() if "MWS00120" in ln]
    assert lines, text[-3000:]
    return lines[-1]


@pytest.fixture(scope="module")
def defaults(env):
    """The server with httpd's compiled-in MPM defaults."""
    saved = conftest.MPM_CONF[env.mpm]
    conftest.MPM_CONF[env.mpm] = "# httpd's defaults\n"
    offset = env._log_size()
    env.restart(locations=LOCATIONS.format(echo=conftest.MOD_ECHO))
    yield _startup_line(env, offset)
    conftest.MPM_CONF[env.mpm] = saved
    env.restart()


def _open(env, path="/echo", timeout=30):
    """(status, WsClient or None, Retry-After, seconds)."""
    t0 = time.monotonic()
    key = wsclient.new_key()
    c = wsclient.Conn.open(env.host, env.http_port, timeout=timeout)
    c.send(wsclient.build_request("GET", path, host="localhost",
                                  headers=wsclient.upgrade_headers(key=key)))
    resp = c.read_response()
    took = time.monotonic() - t0
    if resp.status == 101:
        return 101, wsclient.WsClient(c, resp, key), None, took
    c.close()
    return resp.status, None, resp.header("Retry-After"), took


def _get_index(env, timeout):
    t0 = time.monotonic()
    r = env.http(wsclient.build_request("GET", "/index.html", host="localhost",
                                        headers=[("Connection", "close")]),
                 timeout=timeout)
    return r.status, time.monotonic() - t0


def _close(clients):
    for ws in clients:
        try:
            ws.conn.close()
        except Exception:
            pass


def test_1400_01_startup_line(env, defaults):
    per_child, per_server = EXPECTED[env.mpm]
    assert "WebSocket capacity: %d per child, %d per server" % (per_child, per_server) \
        in defaults, defaults
    assert "[websocket:notice]" in defaults
    if env.mpm == "event":
        assert "AsyncRequestWorkerFactor 2 [default]" in defaults
    else:
        assert "MaxRequestWorkers" in defaults


def test_1400_02_full_then_503_and_http_answered(env, defaults):
    """Fill the capacity; the next upgrade gets 503 + Retry-After at once,
    a page gets 200 promptly; after some close, upgrades succeed again."""
    per_server = EXPECTED[env.mpm][1]
    clients = []
    try:
        with ThreadPoolExecutor(max_workers=24) as pool:
            results = list(pool.map(lambda _: _open(env), range(per_server)))
        statuses = [r[0] for r in results]
        clients = [r[1] for r in results if r[1] is not None]
        # every one of the capacity is admitted (none refused, none hung)
        assert statuses.count(101) == per_server, \
            {s: statuses.count(s) for s in set(statuses)}
        for _ in range(5):
            status, ws, retry, took = _open(env, timeout=10)
            assert status == 503 and ws is None, status
            assert retry == "5"
            assert took < 2.0, took
        for _ in range(5):
            status, took = _get_index(env, timeout=10)
            assert status == 200
            assert took < 2.0, took
        # give some back: new upgrades are admitted again
        _close(clients[:10])
        clients = clients[10:]
        deadline = time.monotonic() + 10
        while True:
            status, ws, _, _ = _open(env, timeout=10)
            if status == 101:
                clients.append(ws)
                break
            assert time.monotonic() < deadline, "capacity not given back"
            time.sleep(0.1)
    finally:
        _close(clients)
        # let the server take in so many EOFs before the next restart
        time.sleep(2)


def test_1400_03_explicit_number_wins(env, defaults):
    clients = []
    try:
        for _ in range(3):
            status, ws, _, _ = _open(env, "/explicit", timeout=10)
            assert status == 101
            clients.append(ws)
        status, _, retry, _ = _open(env, "/explicit", timeout=10)
        assert status == 503 and retry == "5"
    finally:
        _close(clients)


def test_1400_04_factor_read_as_the_mpm_does(env, defaults):
    """AsyncRequestWorkerFactor is read from the configuration the way the
    event MPM reads it: the one in a section that applies, in whole units."""
    if env.mpm != "event":
        pytest.skip("AsyncRequestWorkerFactor is the event MPM's")
    extra = """
<IfModule mpm_prefork_module>
    AsyncRequestWorkerFactor 100
</IfModule>
<IfModule !mpm_event_module>
    AsyncRequestWorkerFactor 50
</IfModule>
<IfModule mpm_event_module>
    AsyncRequestWorkerFactor 4.7
</IfModule>
"""
    offset = env._log_size()
    locations = LOCATIONS.format(echo=conftest.MOD_ECHO)
    env.restart(extra=extra, locations=locations)
    try:
        line = _startup_line(env, offset)
        # 4.7 counts as 4 (event.c: worker_factor / 16 in whole numbers):
        # (25 - 5) x (1 + 4) per child, 16 children
        assert re.search(r"AsyncRequestWorkerFactor 4 \[[^\]]*httpd.conf:\d+\]", line), line
        assert "WebSocket capacity: 100 per child, 1600 per server" in line, line
    finally:
        env.restart(locations=locations)


def test_1400_05_config_values(env):
    bad = env.conf_text(locations=LOCATIONS.format(echo=conftest.MOD_ECHO)
                        + "<Location /x>\nWebSocketMaxConnections lots\n</Location>\n")
    path = env.root + "/bad.conf"
    with open(path, "w") as f:
        f.write(bad)
    r = env.check_conf(path)
    assert r.returncode != 0
    assert "'lots' is not a number of connections" in r.stderr and "auto" in r.stderr
    ok = env.conf_text(locations=LOCATIONS.format(echo=conftest.MOD_ECHO)
                       + "<Location /x>\nWebSocketMaxConnections AUTO\n</Location>\n")
    with open(path, "w") as f:
        f.write(ok)
    r = env.check_conf(path)
    assert r.returncode == 0, r.stderr

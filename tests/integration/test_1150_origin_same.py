"""WebSocketOrigin same and origin lists (security review, item 3).

`same` compares the Origin's scheme with the connection's (ap_http_scheme),
its host with the ServerName / ServerAlias names of the virtual host that
answered (or the server's own address literal, or "localhost" on a loopback
connection) and its port with the port the connection came in on or the
port of ServerName.  The client's Host header is never trusted: an attacker
page reached through DNS rebinding sends `Origin: http://evil.example:P`
and `Host: evil.example:P`, which the old check (Origin's host[:port] ==
Host) let through, and a page on https:// or on another port of the same
name passed too.  Listed origins get the same parsing: a default port
given or not is the same origin.
"""
import os

import pytest

import hardutil
import wsclient
from apiutil import wait_until
from conftest import MOD_ECHO

LOCATIONS = """
<Location /o-same>
    SetHandler websocket
    WebSocketHandler {echo}
</Location>
<Location /o-list>
    SetHandler websocket
    WebSocketHandler {echo}
    WebSocketOrigin https://app.example.com http://*.example.com:8080 http://[::1]:9000
</Location>
"""

# Name-based virtual hosts on the plain-HTTP address.  The first one is the
# default for requests whose Host names none of them.
VHOSTS = """
<VirtualHost 127.0.0.1:{port}>
    ServerName localhost
</VirtualHost>
<VirtualHost 127.0.0.1:{port}>
    ServerName app.test
    ServerAlias alias.test *.wild.test
</VirtualHost>
<VirtualHost 127.0.0.1:{port}>
    ServerName public.test:8443
</VirtualHost>
<VirtualHost 127.0.0.1:{port}>
    ServerName https://proxied.test
</VirtualHost>
"""


@pytest.fixture(scope="module")
def origin_env(env):
    env.restart(extra=VHOSTS.format(port=env.http_port),
                locations=LOCATIONS.format(echo=MOD_ECHO))
    yield env
    env.restart()


def _status(env, path, origin, host, tls=False):
    hdrs = [("Origin", origin)] if origin is not None else []
    raw = wsclient.build_request("GET", path, host=host,
                                          headers=wsclient.upgrade_headers() + hdrs)
    r = env.http(raw, tls=tls)
    if r.status == 101:
        assert r.header("Sec-WebSocket-Accept") is not None, r
    else:
        assert r.header("Sec-WebSocket-Accept") is None, r
    return r.status


# {P}: the plain-HTTP port the request goes to
SAME_CASES = [
    # -- the attacks of the review: all passed before (101) ------------------------------
    ("https://127.0.0.1:{P}", "127.0.0.1:{P}", 403),   # https page, plain endpoint
    ("https://localhost:{P}", "localhost:{P}", 403),
    ("https://evil.example", "evil.example", 403),      # DNS rebinding, Host follows
    ("http://evil.example:{P}", "evil.example:{P}", 403),
    ("http://evil.example", "evil.example", 403),
    ("http://localhost:9999", "localhost:9999", 403),   # another port, Host follows
    ("http://127.0.0.2:{P}", "127.0.0.2:{P}", 403),     # not our address
    ("http://[::1]:{P}", "[::1]:{P}", 403),
    ("http://app.test:{P}", "localhost:{P}", 403),      # a name of another vhost
    ("http://public.test:9999", "public.test:9999", 403),
    # -- same origin --------------------------------------------------------------------
    (None, "localhost", 101),                           # not a browser
    ("http://localhost:{P}", "localhost:{P}", 101),     # ServerName, local port
    ("HTTP://LOCALHOST:{P}", "localhost:{P}", 101),
    ("http://127.0.0.1:{P}", "127.0.0.1:{P}", 101),     # our own address literal
    ("http://127.0.0.1:{P}", "evil.example:{P}", 101),  # (whatever the Host says)
    ("http://localhost:{P}", "localhost:81", 101),
    ("http://app.test:{P}", "app.test:{P}", 101),       # ServerName of the vhost
    ("http://App.Test:{P}", "app.test", 101),
    ("http://alias.test:{P}", "alias.test:{P}", 101),   # ServerAlias
    ("http://x.wild.test:{P}", "x.wild.test:{P}", 101), # ServerAlias *.wild.test
    ("http://a.b.wild.test:{P}", "a.b.wild.test", 101),
    ("http://public.test:8443", "public.test:8443", 101),   # port of ServerName
    ("http://public.test:{P}", "public.test", 101),         # local port
    ("https://proxied.test", "proxied.test", 101),      # ServerName https://...
    ("https://proxied.test:443", "proxied.test", 101),
    # -- refused -------------------------------------------------------------------------
    ("http://wild.test:{P}", "wild.test:{P}", 403),     # *.wild.test: not wild.test
    ("http://evil.wild.test.evil.example:{P}", "x.wild.test", 403),
    ("http://proxied.test:{P}", "proxied.test:{P}", 403),   # scheme is https there
    ("http://localhost", "localhost", 403),             # port 80 is not ours
    ("null", "localhost", 403),                         # opaque origin
    ("http://localhost:{P}/", "localhost:{P}", 403),    # a path
    ("http://x@localhost:{P}", "localhost:{P}", 403),   # userinfo
    ("http://localhost:{P}@evil.example", "localhost:{P}", 403),
    ("http://localhost.:{P}", "localhost:{P}", 403),
    ("ws://localhost:{P}", "localhost:{P}", 403),
    ("http://localhost:0{P}", "localhost:{P}", 403),    # not how browsers write it
    ("", "localhost", 403),
]


@pytest.mark.parametrize("origin,host,status", SAME_CASES)
def test_mws_1150_01_same(origin_env, origin, host, status):
    env = origin_env
    fill = lambda s: None if s is None else s.replace("{P}", str(env.http_port))  # noqa: E731
    assert _status(env, "/o-same", fill(origin), fill(host)) == status, (origin, host)


# the https virtual host of the test server: ServerName localhost on {H}
TLS_CASES = [
    ("https://localhost:{H}", 101),
    ("https://127.0.0.1:{H}", 101),
    ("http://localhost:{H}", 403),      # passed before: the Host matched
    ("http://127.0.0.1:{H}", 403),
    ("https://localhost", 403),
    ("https://evil.example:{H}", 403),
]


@pytest.mark.parametrize("origin,status", TLS_CASES)
def test_mws_1150_02_same_tls(origin_env, origin, status):
    env = origin_env
    o = origin.replace("{H}", str(env.https_port))
    host = o.split("://", 1)[1]
    assert _status(env, "/o-same", o, host, tls=True) == status, o


LIST_CASES = [
    ("https://app.example.com", 101),
    ("https://app.example.com:443", 101),   # the default port, written out
    ("HTTPS://APP.EXAMPLE.COM:443", 101),
    ("https://app.example.com:8443", 403),
    ("http://app.example.com", 403),
    ("http://a.example.com:8080", 101),
    ("http://a.example.com", 403),
    ("http://a.example.com:80", 403),
    ("http://[::1]:9000", 101),
    ("http://[0:0::1]:9000", 101),          # the same IPv6 address
    ("http://[::2]:9000", 403),
    ("http://[::1]", 403),
    ("https://app.example.com/", 403),
    ("https://u@app.example.com", 403),
    ("null", 403),
    ("http://localhost:{P}", 101),          # same origin still passes
]


@pytest.mark.parametrize("origin,status", LIST_CASES)
def test_mws_1150_03_list(origin_env, origin, status):
    env = origin_env
    o = origin.replace("{P}", str(env.http_port))
    assert _status(env, "/o-list", o, "localhost:%d" % env.http_port) == status, o


@pytest.mark.parametrize("value", ["https://a.example/", "http://u@a.example", "null",
                                   "http://a.example:0", "ftp://a.example",
                                   "http://[::1", "http://[1:::2]", "http://*.a.example/x"])
def test_mws_1150_04_bad_listed_origin_config(env, value):
    """A listed origin that no browser could send fails the configuration,
    naming the value."""
    path = env.write_conf(path=env.root + "/badorigin.conf",
                          extra="WebSocketOrigin %s\n" % value)
    r = env.check_conf(path)
    assert r.returncode != 0, r.stdout + r.stderr
    assert "WebSocketOrigin" in r.stderr and value in r.stderr, r.stderr


def test_mws_1150_05_refusal_logged_with_reason(origin_env):
    env = origin_env
    off = os.path.getsize(env.error_log)
    o = "https://127.0.0.1:%d" % env.http_port
    assert _status(env, "/o-same", o, "127.0.0.1:%d" % env.http_port) == 403
    assert wait_until(lambda: hardutil.error_lines(
        env, off, r"MWS00018.*https://127\.0\.0\.1:%d.*WebSocketOrigin.*scheme"
        % env.http_port), timeout=5), env.error_log_since(off)


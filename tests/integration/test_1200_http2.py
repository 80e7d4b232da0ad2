"""WebSockets over HTTP/2 (RFC 8441) through mod_http2's `H2WebSockets on`:
mod_http2 turns the extended CONNECT into an upgrade request, our 101 into
200, and carries the frames in the stream; every byte goes through the
connection's filters.  Driven by h2ws_client.mjs (Node's http2 module),
over h2c and over h2 with TLS."""
import os
import shutil
import subprocess

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
CLIENT = os.path.join(HERE, "h2ws_client.mjs")
NODE = shutil.which("node")
MOD_HTTP2 = "/usr/lib/apache2/modules/mod_http2.so"

H2_EXTRA = """
LoadModule http2_module %s
Protocols h2 h2c http/1.1
H2WebSockets on
""" % MOD_HTTP2


@pytest.fixture(scope="module")
def h2env(env):
    if not NODE:
        pytest.skip("node is not installed (the HTTP/2 client is a Node script)")
    if not os.path.exists(MOD_HTTP2):
        pytest.skip("mod_http2 is not installed")
    if env.mpm == "prefork":
        pytest.skip("mod_http2 does not serve HTTP/2 under the prefork MPM")
    env.restart(extra=H2_EXTRA)
    yield env
    env.restart()


def run_client(base, path="/echo"):
    r = subprocess.run([NODE, CLIENT, base, path], capture_output=True,
                       text=True, timeout=60)
    return r.returncode, r.stdout + r.stderr


@pytest.mark.parametrize("scheme", ["h2c", "h2"])
def test_mws_1200_01_echo_over_http2(h2env, scheme):
    if scheme == "h2c":
        base = "http://127.0.0.1:%d" % h2env.http_port
    else:
        base = "https://127.0.0.1:%d" % h2env.https_port
    rc, out = run_client(base)
    assert rc == 0, out
    for what in ("200 to the extended CONNECT", "echo binary 65536",
                 "echo text 200000", "pong", "close 1007 on bad UTF-8"):
        assert ("OK " + what) in out, out
    # one access-log line per WebSocket, as HTTP/2.0 with status 101
    with open(h2env.access_log) as f:
        lines = [l for l in f if '"GET /echo HTTP/2.0" 101' in l]
    assert lines, "no HTTP/2.0 101 line in the access log"


def test_mws_1200_02_refusal_over_http2(h2env):
    """httpd's access control answers an extended CONNECT like a GET."""
    h2env.allow_error(r"AH01630")  # mod_authz_core: client denied
    rc, out = run_client("http://127.0.0.1:%d" % h2env.http_port, "/denied")
    assert rc == 1 and "FAIL status 403" in out, out

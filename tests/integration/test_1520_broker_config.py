"""The broker's and the channel scope's directives: every bad value is a
configuration error naming the file and line (httpd -t), the password of a
redis:// URL never reaches the log, and httpd starts when the broker is not
there (tests/integration/test_1510_broker.py has the running cases)."""
import os
import re

import pytest

import conftest
from apiutil import BUILD_DIR, wait_until

BUS_SO = os.path.join(BUILD_DIR, "tests", "handlers", ".libs", "mod_ws_bustest.so")

LOC = """
<Location /bus>
    SetHandler websocket
    WebSocketHandler {so}
{inner}
</Location>
"""


def check(env, extra="", inner=""):
    """httpd -t on the test config plus extra (server level) and inner (in
    the /bus location): (ok, output)."""
    path = os.path.join(env.root, "httpd-1520.conf")
    text = env.conf_text(extra=extra, locations=LOC.format(so=BUS_SO, inner=inner))
    with open(path, "w") as f:
        f.write(text)
    r = env.check_conf(path)
    return r.returncode == 0, r.stdout + r.stderr, text, path


def line_of(text, needle):
    return next(i for i, l in enumerate(text.splitlines(), 1) if needle in l)


@pytest.mark.parametrize("value,why", [
    ("http://127.0.0.1:6379", "is not redis://"),
    ("redis://127.0.0.1:99999", "bad port"),
    ("redis://127.0.0.1:6379/1x", "database must be a number"),
    ("unix:relative.sock", "absolute path"),
])
def test_mws_1520_01_bad_broker_url(env, value, why):
    ok, out, text, path = check(env, extra="WebSocketBroker %s\n" % value)
    assert not ok, out
    n = line_of(text, "WebSocketBroker %s" % value)
    assert "line %d of %s" % (n, path) in out, out
    assert "WebSocketBroker" in out and why in out, out


def test_mws_1520_02_broker_only_in_the_main_server(env):
    ok, out, text, path = check(env, extra="<VirtualHost 127.0.0.1:1>\n"
                                "WebSocketBroker redis://127.0.0.1\n</VirtualHost>\n")
    assert not ok and "WebSocketBroker" in out and "VirtualHost" in out, out
    ok, out, _, _ = check(env, extra="WebSocketBroker redis://127.0.0.1\n"
                          "WebSocketBroker redis://127.0.0.2\n")
    assert not ok and "set already" in out, out


@pytest.mark.parametrize("name", ["", "has space", "x" * 65, "semi;colon"])
def test_mws_1520_03_bad_names(env, name):
    ok, out, _, _ = check(env, extra='WebSocketBrokerNamespace "%s"\n' % name)
    assert not ok and "WebSocketBrokerNamespace" in out, out
    ok, out, _, _ = check(env, inner='    WebSocketChannelScope "%s"\n' % name)
    assert not ok and "WebSocketChannelScope" in out, out


def test_mws_1520_04_scope_needs_a_handler_before_it(env):
    path_text = """
<Location /noscope>
    WebSocketChannelScope room
</Location>
"""
    ok, out, text, path = check(env, extra=path_text)
    assert not ok and "must follow a WebSocketHandler" in out, out
    assert "line %d of" % line_of(text, "WebSocketChannelScope room") in out, out
    ok, out, _, _ = check(env, inner="    WebSocketChannelScope room\n")
    assert ok, out


@pytest.mark.allow_errors(r"MWS0015\d")
def test_mws_1520_05_starts_without_the_broker_and_hides_the_password(env):
    port = conftest.free_port()     # nothing listens there
    offset = env._log_size()
    env.restart(locations=LOC.format(so=BUS_SO, inner=""),
                extra="WebSocketBroker redis://alice:s3cr3t-pw@127.0.0.1:%d/3\n" % port)
    try:
        assert wait_until(lambda: "MWS00159" in env.error_log_since(offset), timeout=10)
        log = env.error_log_since(offset)
        assert "s3cr3t-pw" not in log
        assert re.search(r"MWS00159: broker: cannot reach redis://\*\*\*@127\.0\.0\.1:%d/3"
                         % port, log), log[-2000:]
        ws = env.ws("/bus")
        try:
            ws.send_message(1, "pub x y")
            op, payload = ws.recv_message(5)
            assert payload == b"pub -7"
        finally:
            ws.close()
    finally:
        env.restart()

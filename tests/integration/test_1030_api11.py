"""Handler API 1.1: what is new, and that a handler built against the
released 1.0 header still loads and behaves as before.

- the instance and line accessors, line_publish from a handler's thread;
- check_options: `apache2 -t` fails naming the WebSocketHandlerOption line;
- a refusal with a reason phrase, a body and Retry-After instead of httpd's
  HTML error page;
- send_flags and compressed();
- mod_ws_test10.so (testhandler.c built with tests/handlers/abi-1.0) passes
  the whole API suite (test_1000_api.py) and says it is 1.0.
"""
import os
import re
import subprocess
import sys

import pytest

from apiutil import (HERE, TEST10_SO, TEST_SO, api_locations, cmd,
                     events_path, prepare_events, require_test_handlers)

T10 = """
<Location /t10>
    SetHandler websocket
    WebSocketHandler {so10}
    WebSocketHandlerOption LogFile {log}
    WebSocketHandlerOption Reject "1.0 has no check_options"
</Location>
"""


@pytest.fixture(scope="module")
def apienv(env):
    require_test_handlers()
    prepare_events(env)
    env.restart(locations=api_locations(env, T10.format(so10=TEST10_SO,
                                                        log=events_path(env))))
    yield env
    env.restart()


def test_mws_1030_01_instance_and_line(apienv):
    ws = apienv.ws("/t")
    assert cmd(ws, "abi") == "abi 1.1"
    assert cmd(ws, "instance") == "instance 1 1 1"
    ws.close()


def test_mws_1030_02_line_publish_from_own_thread(apienv):
    sub = apienv.ws("/t")
    assert cmd(sub, "sub room") .startswith("sub ")
    pub = apienv.ws("/t")
    # publish() from a thread of its own has no line: MWS_ERR_STATE (-5);
    # line_publish reaches the subscriber (1 receiver here or elsewhere)
    rv = cmd(pub, "linepub room hello-from-thread")
    m = re.match(r"linepub (-?\d+) (-?\d+)$", rv)
    assert m and int(m.group(1)) == -5 and int(m.group(2)) >= 0, rv
    op, payload = sub.recv_message(5)
    assert payload == b"hello-from-thread"
    sub.close()
    pub.close()


def test_mws_1030_03_send_flags_and_compressed(apienv):
    ws = apienv.ws("/t")
    assert cmd(ws, "sendflags 1 raw") == "raw"
    op, payload = ws.recv_message(5)
    assert payload == b"sendflags 0"
    assert cmd(ws, "sendflags 8 x") == "sendflags -2"      # unknown flag
    assert cmd(ws, "compressed") == "compressed 0"          # nothing negotiated
    ws.close()


def test_mws_1030_04_refusal_with_reason_body_retry_after(apienv):
    r = apienv.upgrade("/t?refuse=503&reason=Auction%20closed&retry=30"
                       "&body=come%20back%20at%209")
    assert r.status == 503
    assert r.reason == "Auction closed"
    assert r.header("Retry-After") == "30"
    assert r.header("X-Mws-Test") == "refused"
    assert r.header("Content-Type").startswith("text/plain")
    assert r.body == b"come back at 9"
    assert r.header("X-Mws-Rv") == "0"


def test_mws_1030_05_refusal_json_and_reason_only(apienv):
    r = apienv.upgrade("/t?refuse=429&ctype=application/json"
                       "&body=%7B%22error%22%3A%22slow%20down%22%7D")
    assert r.status == 429
    assert r.header("Content-Type") == "application/json"
    assert r.body == b'{"error":"slow down"}'
    r = apienv.upgrade("/t?refuse=403&reason=Members%20only")
    assert (r.status, r.reason, r.body) == (403, "Members only", b"Members only\n")


def test_mws_1030_06_refusal_bad_reason_keeps_httpd_page(apienv):
    # a reason with a control character (here a tab) is refused (-2);
    # the client gets httpd's own page for the status
    r = apienv.upgrade("/t?refuse=400&reason=bad%09reason")
    assert r.status == 400
    assert r.header("X-Mws-Rv") == "-2"
    assert b"<html" in r.body.lower() or b"<!doctype" in r.body.lower()
    assert r.reason != "bad\treason"


def test_mws_1030_07_check_options_names_the_option_line(env):
    require_test_handlers()
    loc = """
<Location /tcheck>
    SetHandler websocket
    WebSocketHandler {so}
    WebSocketHandlerOption color red
    WebSocketHandlerOption Reject "size must be a number"
</Location>
""".format(so=TEST_SO)
    path = os.path.join(env.root, "check-options.conf")
    env.write_conf(locations=loc, path=path)
    r = env.check_conf(path)
    assert r.returncode != 0, r.stdout + r.stderr
    line = [n for n, ln in enumerate(open(path), 1) if "Reject" in ln][0]
    assert re.search(r"MWS00086: %s:%d: WebSocketHandlerOption Reject: handler test "
                     r"refuses its options: size must be a number"
                     % (re.escape(path), line), r.stderr), r.stderr
    assert "Syntax OK" not in r.stdout + r.stderr


def test_mws_1030_08_check_options_without_an_option_names_the_handler(env):
    require_test_handlers()
    loc = """
<Location /tcheck>
    SetHandler websocket
    WebSocketHandler {so}
    WebSocketHandlerOption RejectAll "needs a channel option"
</Location>
""".format(so=TEST_SO)
    path = os.path.join(env.root, "check-options2.conf")
    env.write_conf(locations=loc, path=path)
    r = env.check_conf(path)
    assert r.returncode != 0
    line = [n for n, ln in enumerate(open(path), 1) if "WebSocketHandler " in ln][0]
    assert re.search(r"%s:%d: WebSocketHandler: handler test refuses its options: "
                     r"needs a channel option" % (re.escape(path), line), r.stderr), r.stderr


def test_mws_1030_09_handler_built_for_1_0_loads(apienv):
    # its struct has no check_options: its Reject option is not looked at
    ws = apienv.ws("/t10")
    assert cmd(ws, "abi") == "abi 1.0"
    assert cmd(ws, "echo-me") == "echo-me"
    # 1.1 commands are unknown to it: echoed
    assert cmd(ws, "instance") == "instance"
    ws.close()


@pytest.mark.skipif(os.environ.get("MWS_TEST_SO") is not None,
                    reason="already running against another test handler")
def test_mws_1030_10_api_suite_passes_with_the_1_0_handler():
    require_test_handlers()
    environ = dict(os.environ, MWS_TEST_SO=TEST10_SO,
                   MWS_MPMS=os.environ.get("MWS_MPMS", "event").split(",")[0])
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        os.path.join(HERE, "test_1000_api.py")],
                       capture_output=True, text=True, timeout=600, env=environ,
                       cwd=HERE)
    tail = (r.stdout + r.stderr)[-3000:]
    assert r.returncode == 0, tail
    m = re.search(r"(\d+) passed", r.stdout)
    assert m and int(m.group(1)) >= 20, tail
    assert " failed" not in r.stdout, tail

"""A handler that crashes names itself in the error log.  Before, a child
that died inside a handler's init only showed as httpd's "AH00052: child
pid N exit signal Segmentation fault (11)", once a second, and nothing
named the handler.  Now a line written before the signal takes its course
names the handler, its WebSocketHandler line and the callback
(MWS00081), for every crash, so that repeated init crashes show as such.
"""
import os
import re
import subprocess
import time

import pytest

import conftest
from apiutil import (api_locations, events_path, prepare_events, require_test_handlers,
                     TEST_SO)

CRASH_INIT = """
<Location /tcrash>
    SetHandler websocket
    WebSocketHandler {so}
    WebSocketHandlerOption LogFile {log}
    WebSocketHandlerOption CrashInit yes
</Location>
"""

# Under the sanitizers a crash is theirs to report (and a report fails the
# run): these tests crash children on purpose.
pytestmark = pytest.mark.skipif(
    bool(conftest.SANITIZER_LOG_DIR or os.environ.get("MWS_HTTPD")),
    reason="crashes children on purpose: not under ASan or valgrind")

LINE_RX = (r"\[websocket:crit\] \[pid \d+\] MWS00081: the child dies of signal 11 "
           r"in the %s callback of handler test \(.*httpd\.conf:(\d+)\)")


def conf_line_of(env, needle):
    with open(env.conf_path) as f:
        for n, line in enumerate(f, 1):
            if needle in line:
                return n
    raise AssertionError("%r not in httpd.conf" % needle)


def test_mws_1026_01_init_crash_names_the_handler(env):
    require_test_handlers()
    prepare_events(env)
    env.stop()
    env.write_conf(locations=api_locations(env, CRASH_INIT.format(
        so=TEST_SO, log=events_path(env))))
    log_start = env._log_size()
    try:
        r = subprocess.run([conftest.HTTPD, "-f", env.conf_path, "-k", "start"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        deadline = time.monotonic() + 15
        text = ""
        while time.monotonic() < deadline:
            text = env.error_log_since(log_start)
            if len(re.findall(LINE_RX % "init", text)) >= 2 \
                    and "exit signal Segmentation fault" in text:
                break
            time.sleep(0.2)
        lines = re.findall(LINE_RX % "init", text)
        assert len(lines) >= 2, "no repeated MWS00081 for init:\n%s" % text[-3000:]
        # the WebSocketHandler line of /tcrash
        want = conf_line_of(env, "<Location /tcrash>") + 2
        assert all(int(n) == want for n in lines), (lines, want)
        assert "exit signal Segmentation fault" in text
        # the crashes are counted across children: "in a row" grows
        rows = [int(k) for k in re.findall(r"init crashed (\d+) time\(s\) in a row", text)]
        assert rows and max(rows) >= 2, text[-3000:]
        # after 3 in a row, new children stop calling init: the server
        # serves its pages again and the handler's location answers 500
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if "MWS00088" in env.error_log_since(log_start):
                break
            time.sleep(0.2)
        text = env.error_log_since(log_start)
        assert re.search(r"MWS00088: handler test \(.*httpd\.conf:%d\): init "
                         r"crashed 3 times in a row" % want, text), text[-3000:]
        time.sleep(1.5)     # the last crashed children are replaced
        for _ in range(5):
            page = env.http(b"GET / HTTP/1.1\r\nHost: localhost\r\n"
                            b"Connection: close\r\n\r\n", timeout=5)
            assert page.status in (200, 403, 404), page.status
        assert env.upgrade("/tcrash").status == 500
    finally:
        subprocess.run([conftest.HTTPD, "-f", env.conf_path, "-k", "stop"],
                       capture_output=True, text=True, timeout=60)
        deadline = time.monotonic() + 30
        while env._answers(env.http_port) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
        env.log_offset = env._log_size()
        env.pid = None
        env.write_conf()
        env.start()


@pytest.mark.allow_errors(r"MWS00081|exit signal Segmentation fault")
def test_mws_1026_02_message_crash_names_the_handler(env):
    require_test_handlers()
    prepare_events(env)
    env.restart(locations=api_locations(env))
    log_start = env._log_size()
    ws = env.ws("/t")
    ws.send_message(1, b"crash")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        text = env.error_log_since(log_start)
        if re.search(LINE_RX % "on_message", text):
            break
        time.sleep(0.2)
    ws.close()
    assert re.search(LINE_RX % "on_message", text), text[-3000:]
    env.restart()

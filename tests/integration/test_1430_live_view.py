"""The live view (issue 14): the module's own handler `websocket-status`
sends the figures mod_status shows as JSON, at once when asked and then
every second; the demo's status.html draws them (headless Chromium,
tests/browser/live_status.mjs)."""
import json
import os
import shutil
import subprocess
import time

import pytest

import conftest
from wsclient import OP_TEXT
from test_1900_browser import BROWSER_DIR, PAGES, NODE, _skip_reason

LIVE = """
<Location /status-live>
    SetHandler websocket
    WebSocketHandler websocket-status
</Location>
"""

FIELDS = {"time", "open", "parked", "running", "opened", "closed", "messagesIn",
          "messagesOut", "bytesIn", "bytesOut", "queuedBytes", "refused403",
          "refused503", "capacity", "children"}


@pytest.fixture(scope="module")
def live_env(env):
    dest = os.path.join(env.docroot, "demo")
    os.makedirs(dest, exist_ok=True)
    os.chmod(dest, 0o755)
    for name in os.listdir(PAGES):
        if name.endswith(".html"):
            shutil.copy(os.path.join(PAGES, name), dest)
            os.chmod(os.path.join(dest, name), 0o644)
    locations = conftest.WS_LOCATIONS.format(echo=conftest.MOD_ECHO, small=conftest.SMALL_LIMIT,
                                             htpasswd=env.htpasswd) + LIVE
    env.restart(locations=locations)
    yield env
    env.restart()
    shutil.rmtree(dest, ignore_errors=True)


def figures(ws, timeout=5):
    op, payload = ws.recv_message(timeout)
    assert op == OP_TEXT
    return json.loads(payload)


def test_1430_01_figures_on_request_and_every_second(live_env):
    env = live_env
    live = env.ws("/status-live")
    try:
        live.send_frame(OP_TEXT, b"now")
        f0 = figures(live, timeout=2)
        assert FIELDS <= set(f0), f0
        assert f0["open"] >= 1 and f0["capacity"] > 0 and f0["children"] >= 1
        echo = env.ws("/echo")
        for i in range(4):
            assert echo.echo(OP_TEXT, b"e%d" % i) == (OP_TEXT, b"e%d" % i)
        # the next periodic message comes within about a second
        t0 = time.monotonic()
        f1 = figures(live, timeout=3)
        assert time.monotonic() - t0 < 2.0
        assert f1["open"] >= 2, f1
        assert f1["messagesIn"] - f0["messagesIn"] >= 4 + 0, (f0, f1)
        assert f1["messagesOut"] - f0["messagesOut"] >= 4
        assert f1["time"] > f0["time"]
        echo.close()
    finally:
        live.close()


def test_1430_02_status_page_in_chromium(live_env):
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    run_env = {k: v for k, v in os.environ.items()
               if k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")}
    r = subprocess.run([NODE, os.path.join(BROWSER_DIR, "live_status.mjs"),
                        live_env.http_url + "/demo/"], cwd=BROWSER_DIR,
                       capture_output=True, text=True, timeout=120, env=run_env)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    for want in ("OK live view connected", "OK the live view counts itself",
                 "OK figures update (messages in, open)", "OK chart drawn", "RESULT PASS"):
        assert want in r.stdout, "missing %r in:\n%s" % (want, out)
    assert "pageerror" not in out, out

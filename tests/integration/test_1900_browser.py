"""The demo pages in headless Chromium (tests/browser/chat_and_increment.mjs):
two chat pages in one room, the increment counter and its reset, two
auction bidders, the echo
box of index.html and a plain HTTP page, against this test server."""
import os
import shutil
import subprocess

import pytest

import conftest
from test_1800_handlers import handler_locations
from test_1810_auction import LOCATIONS as AUCTION_LOCATIONS, MOD_AUCTION

BROWSER_DIR = os.path.join(conftest.REPO, "tests", "browser")
SCRIPT = os.path.join(BROWSER_DIR, "chat_and_increment.mjs")
PAGES = os.path.join(conftest.REPO, "demo", "htdocs")
CHROMIUM = "/usr/bin/chromium"
NODE = shutil.which("node")

EXPECTED = [
    "OK chromium launched",
    "OK alice sees the join notice of bob",
    "OK bob receives alice's message",
    "OK alice receives her own message",
    "OK alice receives bob's message",
    "OK alice sees the leave notice of bob",
    "OK increment subprotocol chosen",
    "OK counter advances",
    "OK counter reset",
    "OK counter advances after reset",
    "OK auction: ben sees ann's bid",
    "OK auction: ben sees ann lead",
    "OK auction: ben's low bid refused to ben",
    "OK auction: ann does not see ben's refusal",
    "OK index echo answered",
    "OK plain.html served over HTTP",
    "RESULT PASS",
]


def _skip_reason():
    if not os.path.exists(CHROMIUM):
        return "%s is not installed" % CHROMIUM
    if NODE is None:
        return "node is not installed"
    if not os.path.isdir(os.path.join(BROWSER_DIR, "node_modules", "playwright-core")):
        return ("playwright-core is not installed: run `npm ci` (or `npm install`) "
                "in tests/browser")
    return None


@pytest.fixture(scope="module")
def demo_env(env):
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    dest = os.path.join(env.docroot, "demo")
    os.makedirs(dest, exist_ok=True)
    os.chmod(dest, 0o755)
    for name in os.listdir(PAGES):
        if name.endswith(".html"):
            shutil.copy(os.path.join(PAGES, name), dest)
            os.chmod(os.path.join(dest, name), 0o644)
    env.restart(locations=handler_locations(env)
                + AUCTION_LOCATIONS.format(so=MOD_AUCTION))
    yield env
    env.restart()
    shutil.rmtree(dest, ignore_errors=True)


def test_mws_1900_01_demo_pages_in_chromium(demo_env):
    run_env = {k: v for k, v in os.environ.items()
               if k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")}
    r = subprocess.run([NODE, SCRIPT, demo_env.http_url + "/demo/"], cwd=BROWSER_DIR,
                       capture_output=True, text=True, timeout=180, env=run_env)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    lines = r.stdout.splitlines()
    for want in EXPECTED:
        assert any(ln.startswith(want) for ln in lines), "missing %r in:\n%s" % (want, out)
    # the pages load no resource that fails (a 404 would show in the console)
    assert "console] Failed to load" not in out, out

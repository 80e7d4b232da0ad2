"""`make demo` (demo/demo.sh) run as root.

The demo used to put its server root at the predictable
/tmp/mod_websocket-demo-<port>: another local user who made that folder
first (httpd.conf a symbolic link to a root-owned file) got that file
overwritten and made world-readable, and could swap the configuration root
then loads (LoadModule: code as root).  Now every start makes a private
folder with mktemp -d, remembered per port in a state file under
$XDG_CACHE_HOME, and refuses a state file or folder that is a link or not
the caller's.

Test 01 plants the old folder as `nobody`, starts the demo as root and
checks that nothing planted was followed, that the demo runs from a fresh
private folder, that its httpd serves the page, echo and chat (the children
run as www-data), and, meanwhile, that its mod_reqtimeout cuts off a
handshake trickled a byte a second within 20 s while an open WebSocket
lives on.  Test 02 checks the refusals.  Both need root (setuid, User
www-data).
"""
import os
import select
import shutil
import socket
import stat
import subprocess
import tempfile
import threading
import time

import pytest

import conftest
import wsclient
from wsclient import OP_TEXT

SRC_DIR = os.path.abspath(os.environ.get("MWS_SRC_DIR") or conftest.REPO)
DEMO = os.path.join(SRC_DIR, "demo", "demo.sh")
NOBODY = 65534
PRECIOUS = b"a root-only file the demo must never touch\n"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (setuid, User www-data)")


def as_nobody(fn):
    """Run fn() in a child process as uid/gid nobody; fail if it fails."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            fn()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the step as nobody failed"


def demo(action, port, cache, timeout=60):
    env = dict(os.environ, XDG_CACHE_HOME=cache, HTTPD=conftest.HTTPD)
    env.pop("TMPDIR", None)
    return subprocess.run([DEMO, action, conftest.BUILD_DIR, SRC_DIR, str(port)],
                          capture_output=True, text=True, timeout=timeout, env=env)


def snapshot(top):
    """{path: (mode, uid, link target or content)} of a tree, links not followed."""
    out = {}
    for d, dirs, files in os.walk(top):
        for n in [d] + [os.path.join(d, x) for x in dirs + files]:
            st = os.lstat(n)
            if stat.S_ISLNK(st.st_mode):
                what = os.readlink(n)
            elif stat.S_ISREG(st.st_mode):
                with open(n, "rb") as f:
                    what = f.read()
            else:
                what = None
            out[n] = (st.st_mode, st.st_uid, what)
    return out


def pid_of(root):
    with open(os.path.join(root, "run", "httpd.pid")) as f:
        return int(f.read().strip())


def trickle(port, out, max_bytes=30):
    """Send a WebSocket handshake a byte a second; out["cut"] = seconds from
    the first byte until the server answered (408) or ended the connection
    (None: never); out["got"] = what it sent."""
    req = wsclient.build_request("GET", "/echo", host="127.0.0.1",
                                 headers=wsclient.upgrade_headers())
    out["cut"], out["got"] = None, b""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    t0 = time.monotonic()
    try:
        for i in range(min(max_bytes, len(req) - 1)):      # never the whole request
            try:
                s.send(req[i:i + 1])
            except OSError:
                out["cut"] = time.monotonic() - t0
                return
            end = time.monotonic() + 1.0
            while True:
                r, _, _ = select.select([s], [], [], max(0.0, end - time.monotonic()))
                if not r:
                    break
                try:
                    data = s.recv(4096)
                except OSError:
                    data = b""
                if out["cut"] is None:    # the 408, or EOF
                    out["cut"] = time.monotonic() - t0
                if not data:
                    return
                out["got"] += data
    finally:
        s.close()


@pytest.fixture
def area():
    """A root-only scratch folder (cache, the file to protect); removed after."""
    conftest._require_build()
    d = tempfile.mkdtemp(prefix="mws-demo-test-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _state(cache, port):
    return os.path.join(cache, "mod_websocket-demo", "port-%d" % port)


def _stop_and_clean(port, cache, roots):
    r = demo("stop", port, cache)
    for root in roots:
        if root and os.path.isdir(root):
            shutil.rmtree(root, ignore_errors=True)
    return r


def test_mws_1190_01_demo_as_root_ignores_planted_folder(area):
    port = conftest.free_port()
    cache = os.path.join(area, "cache")
    os.mkdir(cache, 0o700)
    precious = os.path.join(area, "precious")
    with open(precious, "wb") as f:
        f.write(PRECIOUS)
    os.chmod(precious, 0o600)
    planted = "/tmp/mod_websocket-demo-%d" % port
    shutil.rmtree(planted, ignore_errors=True)

    def plant():
        # what the old demo.sh wrote to, taken first by another user
        os.mkdir(planted, 0o777)
        os.chmod(planted, 0o777)
        for sub in ("htdocs", "logs", "run"):
            os.mkdir(os.path.join(planted, sub), 0o777)
        os.symlink(precious, os.path.join(planted, "httpd.conf"))
        os.symlink(precious, os.path.join(planted, "htdocs", "index.html"))
    root = None
    try:
        as_nobody(plant)
        before = snapshot(planted)
        assert os.lstat(planted).st_uid == NOBODY
        r = demo("start", port, cache)
        # nothing planted was followed or changed
        st = os.stat(precious)
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o600), st
        with open(precious, "rb") as f:
            assert f.read() == PRECIOUS
        assert snapshot(planted) == before
        assert r.returncode == 0, r.stdout + r.stderr
        with open(_state(cache, port)) as f:
            root = f.read().strip()
        # a fresh private folder, not the planted one
        assert root.startswith(planted + "."), root
        st = os.lstat(root)
        assert stat.S_ISDIR(st.st_mode) and st.st_uid == 0, st
        assert st.st_mode & 0o022 == 0, oct(st.st_mode)
        conf = os.path.join(root, "httpd.conf")
        st = os.lstat(conf)
        assert stat.S_ISREG(st.st_mode) and st.st_uid == 0, st
        assert "LoadModule reqtimeout_module" in open(conf).read()
        state = os.lstat(_state(cache, port))
        assert stat.S_ISREG(state.st_mode) and state.st_uid == 0, state
        # the httpd that answers runs root's new configuration
        pid = pid_of(root)
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            assert conf.encode() in f.read().split(b"\0")

        # mod_reqtimeout: a trickled handshake is cut off within 20 s; the
        # other checks run meanwhile, and a WebSocket opened now must live
        # on past RequestReadTimeout body=10 (the module takes it off)
        slow = {}
        t = threading.Thread(target=trickle, args=(port, slow), daemon=True)
        t.start()
        ws = wsclient.WsClient.connect("127.0.0.1", port, "/echo")
        try:
            assert ws.echo(OP_TEXT, "early") == (OP_TEXT, b"early")
            page = wsclient.http_exchange("127.0.0.1", port,
                                          b"GET / HTTP/1.1\r\nHost: localhost\r\n"
                                          b"Connection: close\r\n\r\n")
            assert page.status == 200 and b"mod_websocket demo" in page.body, page
            chat = wsclient.WsClient.connect("127.0.0.1", port, "/chat")
            try:
                op, payload = chat.recv_message()
                assert op == OP_TEXT and b"welcome" in payload, payload
            finally:
                chat.close()
            t.join(35)
            assert not t.is_alive()
            print("trickled handshake: %r" % slow)
            assert slow["cut"] is not None, "a trickled handshake was never cut off: %r" % slow
            # header=20: 20 s, and mod_reqtimeout looks at its clock when a
            # read returns, a byte later (up to 1 s): about 21 s here
            assert 19.0 <= slow["cut"] <= 22.0, "cut off after %.1f s" % slow["cut"]
            assert slow["got"] == b"" or slow["got"].startswith(b"HTTP/1.1 408"), slow
            assert ws.echo(OP_TEXT, "after %.0f s" % slow["cut"]) == \
                (OP_TEXT, b"after %.0f s" % slow["cut"])
        finally:
            ws.close()

        r = demo("stop", port, cache)
        assert r.returncode == 0 and "stopped" in r.stdout, r.stdout + r.stderr
        assert not conftest._alive(pid)
        with open(os.path.join(root, "logs", "error_log")) as f:
            bad = [ln for ln in f if any(p.search(ln) for p in conftest.ERROR_PATTERNS)]
        assert bad == [], bad
    finally:
        _stop_and_clean(port, cache, [root])
        shutil.rmtree(planted, ignore_errors=True)


def test_mws_1190_02_refuses_what_is_not_the_callers(area):
    port = conftest.free_port()
    cache = os.path.join(area, "cache")
    os.mkdir(cache, 0o700)
    statedir = os.path.join(cache, "mod_websocket-demo")
    os.mkdir(statedir, 0o700)
    state = _state(cache, port)
    elsewhere = os.path.join(area, "elsewhere")
    with open(elsewhere, "w") as f:
        f.write("/tmp/mod_websocket-demo-%d.AAAAAAAAAA\n" % port)
    roots = []
    try:
        # a state file that is a link
        os.symlink(elsewhere, state)
        for action in ("start", "stop"):
            r = demo(action, port, cache)
            assert r.returncode != 0 and "symbolic link" in r.stderr, (action, r.stderr)
        os.unlink(state)
        # a state file of another user
        shutil.copy(elsewhere, state)
        os.chown(state, NOBODY, NOBODY)
        r = demo("stop", port, cache)
        assert r.returncode != 0 and "not to you" in r.stderr, r.stderr
        os.unlink(state)
        # a state folder of another user
        os.chown(statedir, NOBODY, NOBODY)
        r = demo("start", port, cache)
        assert r.returncode != 0 and "not to you" in r.stderr, r.stderr
        os.chown(statedir, 0, 0)
        # a recorded server root that another user made (with a pid file
        # and a configuration): never used, neither to stop nor to start
        theirs = "/tmp/mod_websocket-demo-%d.BBBBBBBBBB" % port
        roots.append(theirs)

        def plant():
            os.mkdir(theirs, 0o755)
            os.mkdir(os.path.join(theirs, "run"), 0o755)
            with open(os.path.join(theirs, "httpd.conf"), "w") as f:
                f.write("LoadModule evil_module /tmp/evil.so\n")
            with open(os.path.join(theirs, "run", "httpd.pid"), "w") as f:
                f.write("1\n")
        as_nobody(plant)
        before = snapshot(theirs)
        with open(state, "w") as f:
            f.write(theirs + "\n")
        r = demo("stop", port, cache)
        assert r.returncode == 0 and "not running" in r.stdout, r.stdout + r.stderr
        assert "not using it" in r.stderr, r.stderr
        r = demo("start", port, cache)
        assert r.returncode == 0, r.stdout + r.stderr
        with open(state) as f:
            mine = f.read().strip()
        roots.append(mine)
        assert mine != theirs and os.lstat(mine).st_uid == 0
        assert snapshot(theirs) == before
        r = demo("stop", port, cache)
        assert r.returncode == 0 and "stopped" in r.stdout, r.stdout + r.stderr
    finally:
        os.chown(statedir, 0, 0)
        if os.path.lexists(state):
            os.unlink(state)
        if len(roots) > 1:              # ours may still run: stop it
            with open(state, "w") as f:
                f.write(roots[1] + "\n")
            demo("stop", port, cache)
        for root in roots:
            shutil.rmtree(root, ignore_errors=True)

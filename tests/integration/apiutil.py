"""Helpers of the handler-API tests (test_10xx_*.py): where the test-only
handlers are, the locations that use them, the testhandler's LogFile, and
small client conveniences.  See tests/handlers/testhandler.c for the knobs.
"""
import os
import re
import time
import urllib.parse

import wsclient
from wsclient import OP_BINARY, OP_TEXT

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
BUILD_DIR = os.path.abspath(os.environ.get("MWS_BUILD_DIR") or REPO)
SRC_DIR = os.path.abspath(os.environ.get("MWS_SRC_DIR") or REPO)
# MWS_TEST_SO: run the API tests against another build of the test handler
# (test_1030 runs them against the one built with the 1.0 header)
TEST_SO = os.environ.get("MWS_TEST_SO") or os.path.join(
    BUILD_DIR, "tests", "handlers", ".libs", "mod_ws_test.so")
TEST10_SO = os.path.join(BUILD_DIR, "tests", "handlers", ".libs", "mod_ws_test10.so")
BADABI_SO = os.path.join(BUILD_DIR, "tests", "handlers", ".libs", "mod_ws_badabi.so")
INCLUDE_DIR = os.path.join(SRC_DIR, "include")

SMALL_LIMIT = 1024

API_LOCATIONS = """
<Location /t>
    SetHandler websocket
    WebSocketHandler {so}
    WebSocketHandlerOption LogFile {log}
    WebSocketHandlerOption color red
    WebSocketHandlerOption size 1
</Location>
# nested sections: an inner override and an inner addition
<Location /t/inner>
    WebSocketHandlerOption color blue
    WebSocketHandlerOption inneronly yes
</Location>
<Location /t/inner/deeper>
    WebSocketHandlerOption size 3
</Location>
<Location /tsmall>
    SetHandler websocket
    WebSocketHandler {so}
    WebSocketHandlerOption LogFile {log}
    WebSocketMaxMessageSize {small}
</Location>
<Location /tauth>
    SetHandler websocket
    WebSocketHandler {so}
    WebSocketHandlerOption LogFile {log}
    AuthType Basic
    AuthName "mws api test"
    AuthBasicProvider file
    AuthUserFile {htpasswd}
    Require valid-user
</Location>
<Location /s>
    SetHandler websocket
    WebSocketHandler {so} mws_test_stream_entry
    WebSocketHandlerOption LogFile {log}
    WebSocketHandlerOption Stream on
</Location>
<Location /srelay>
    SetHandler websocket
    WebSocketHandler {so} mws_test_stream_entry
    WebSocketHandlerOption LogFile {log}
    WebSocketHandlerOption Stream relay
</Location>
"""


def events_path(env):
    return os.path.join(env.root, "mws-test-events.log")


def prepare_events(env):
    """Create the LogFile so that the children (User www-data) can append."""
    path = events_path(env)
    with open(path, "a"):
        pass
    os.chmod(path, 0o666)
    return path


def api_locations(env, more=""):
    return API_LOCATIONS.format(so=TEST_SO, log=events_path(env), small=SMALL_LIMIT,
                                htpasswd=env.htpasswd) + more


def require_test_handlers():
    import pytest
    missing = [p for p in (TEST_SO, BADABI_SO) if not os.path.exists(p)]
    if missing:
        pytest.fail("test handlers not built (run make): %s" % ", ".join(missing),
                    pytrace=False)


# ---- the LogFile -------------------------------------------------------------

class Event:
    def __init__(self, line):
        self.line = line
        parts = line.split(" ")
        self.kind = parts[0]
        self.fields = {}
        self.words = []
        for p in parts[1:]:
            k, eq, v = p.partition("=")
            if eq:
                self.fields[k] = v
            else:
                self.words.append(p)

    def get(self, key, default=None):
        return self.fields.get(key, default)

    @property
    def key(self):
        """(pid, id) of a connection event."""
        return int(self.fields.get("pid", 0)), int(self.fields.get("id", 0))

    @property
    def code(self):
        return int(self.fields["code"])

    @property
    def reason(self):
        return urllib.parse.unquote_to_bytes(self.fields.get("reason", ""))

    def __repr__(self):
        return "Event(%r)" % self.line


class Events:
    """The testhandler's LogFile, read from a mark on."""

    def __init__(self, path):
        self.path = path
        self.start = self.size()

    def size(self):
        try:
            return os.path.getsize(self.path)
        except OSError:
            return 0

    def mark(self):
        self.start = self.size()
        return self.start

    def all(self, since=None):
        try:
            with open(self.path, "rb") as f:
                f.seek(self.start if since is None else since)
                data = f.read().decode("utf-8", "replace")
        except OSError:
            return []
        return [Event(ln) for ln in data.splitlines() if ln.strip()]

    def of(self, kind, key=None, since=None):
        return [e for e in self.all(since) if e.kind == kind and (key is None or e.key == key)]

    def wait(self, kind, key=None, count=1, timeout=10.0, since=None):
        deadline = time.monotonic() + timeout
        while True:
            evs = self.of(kind, key, since)
            if len(evs) >= count or time.monotonic() > deadline:
                return evs
            time.sleep(0.02)

    def wait_close(self, key, timeout=10.0, settle=0.3):
        """The on_close lines of connection key: waits for the first, then a
        little longer so that a second one would show up too."""
        evs = self.wait("close", key, 1, timeout)
        if evs:
            time.sleep(settle)
            evs = self.of("close", key)
        return evs

    def violations(self, since=None):
        return [e for e in self.all(since) if e.kind in ("doubleclose", "overlap", "late")]


# ---- the client --------------------------------------------------------------

def cmd(ws, text, timeout=None):
    """Send a text command, return the text of the next message."""
    assert ws.send_message(OP_TEXT, text), ws.conn.send_failed
    op, payload = ws.recv_message(timeout)
    assert op == OP_TEXT, (op, payload[:80])
    return payload.decode("utf-8")


def ident(ws):
    """(pid, id) of the connection as the handler sees it."""
    r = cmd(ws, "id").split()
    assert r[0] == "id", r
    return int(r[1]), int(r[2])


def recv_text(ws, timeout=None):
    op, payload = ws.recv_message(timeout)
    assert op == OP_TEXT, (op, payload[:80])
    return payload.decode("utf-8")


def numbered_msg(tag, t, j):
    """The message "TAG T J PAD" the testhandler's threads send."""
    padlen = (t * 31 + j * 7) % 97
    pad = "".join(chr(ord("a") + (t + j + k) % 26) for k in range(padlen))
    return "%s %d %d %s" % (tag, t, j, pad)


def check_numbered(msgs, tag, nthreads, count):
    """Every thread's count messages arrive exactly once, in order, intact.
    Returns the number of payload bytes checked."""
    nxt = [0] * nthreads
    total = 0
    for m in msgs:
        parts = m.split(" ", 3)
        assert parts[0] == tag, m[:80]
        t, j = int(parts[1]), int(parts[2])
        assert 0 <= t < nthreads, m[:80]
        assert j == nxt[t], "thread %d: message %d arrived where %d was due" % (t, j, nxt[t])
        assert m == numbered_msg(tag, t, j), "message %r corrupted" % m[:80]
        nxt[t] += 1
        total += len(m)
    assert nxt == [count] * nthreads, "per-thread counts %r, expected %d each" % (nxt, count)
    return total


def fnv1a(data, h=2166136261):
    for b in data:
        h ^= b
        h = (h * 16777619) & 0xFFFFFFFF
    return h


def wait_until(pred, timeout=10.0, step=0.05):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(step)


def pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def child_pids(parent):
    """The pids of parent's children (from /proc)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                st = f.read()
        except OSError:
            continue
        m = re.match(r"\d+ \(.*\) \S (\d+)", st)
        if m and int(m.group(1)) == parent:
            out.append(int(d))
    return out


"""Security of the channels across child processes (mws_bus.c, mws_channels.c).

- Only this server's own processes can use the channels: they travel
  through a log in anonymous shared memory mapped by the parent before it
  forks (no file, no socket, no name).  A local process of the server's
  user (a CGI or PHP script) can neither read nor write it (/proc mem,
  map_files, ptrace), nor stall delivery between the other children by
  stopping one child, nor by starving a child of descriptors.
- Channel names are scoped to their WebSocketHandler line; "server:" names
  are server-wide; a publish outside a callback needs "server:".
- A handler that unsubscribes in on_close on the child's exit path.

The attacks run as www-data (runuser) with tests/integration/pubsub_attacker.py.
"""
import base64
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time

import pytest

import conftest
from apiutil import (TEST_SO, Events, child_pids, cmd, events_path, prepare_events,
                     require_test_handlers, wait_until)
from wsclient import OP_TEXT

HERE = os.path.dirname(os.path.abspath(__file__))
MOD_CHAT = os.path.join(conftest.BUILD_DIR, "handlers", ".libs", "mod_ws_chat.so")
ATTACKER = os.path.join(HERE, "pubsub_attacker.py")
AUTH = "Basic " + base64.b64encode(("%s:%s" % (conftest.AUTH_USER,
                                                conftest.AUTH_PASS)).encode()).decode()

PS_LOCATIONS = """
<Location /psa>
    SetHandler websocket
    WebSocketHandler {so}
    WebSocketHandlerOption LogFile {log}
    WebSocketHandlerOption PublishInit initch
    WebSocketHandlerOption PublishShutdown shutch
</Location>
<Location /psb>
    SetHandler websocket
    WebSocketHandler {so}
    WebSocketHandlerOption LogFile {log}
</Location>
<Location /public>
    SetHandler websocket
    WebSocketHandler {chat}
</Location>
<Location /chat>
    SetHandler websocket
    WebSocketHandler {chat}
    AuthType Basic
    AuthName "mws pubsub test"
    AuthBasicProvider file
    AuthUserFile {htpasswd}
    Require valid-user
</Location>
"""

def ps_locations(env):
    return PS_LOCATIONS.format(so=TEST_SO, log=events_path(env), chat=MOD_CHAT,
                               htpasswd=env.htpasswd)


def fresh(env):
    """(Re)start with the test locations; wait until a child runs."""
    env.restart(locations=ps_locations(env))
    wait_until(lambda: child_pids(env.pid), timeout=10)


@pytest.fixture(scope="module")
def ps(env):
    require_test_handlers()
    if not os.path.exists(MOD_CHAT):
        pytest.fail("chat handler not built: %s" % MOD_CHAT, pytrace=False)
    prepare_events(env)
    env.restart(locations=ps_locations(env))
    yield Events(events_path(env))
    env.restart()


# ---- helpers ------------------------------------------------------------------

def attacker(env, mode, args, user="www-data", timeout=60, background=False):
    """Run pubsub_attacker.py as user; its JSON result (or the Popen)."""
    script = os.path.join(env.root, "pubsub_attacker.py")
    shutil.copy(ATTACKER, script)
    os.chmod(script, 0o644)
    argv = ["runuser", "-u", user, "--", "/usr/bin/python3", script, mode,
            json.dumps(args)]
    if background:
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def finish(p, timeout=60):
    out, err = p.communicate(timeout=timeout)
    assert p.returncode == 0, err
    return json.loads(out)


def silent(ws, seconds):
    """The frames that arrive within seconds (none expected)."""
    got = []
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return got
        try:
            f = ws.recv_frame(left)
        except (socket.timeout, TimeoutError):
            return got
        if f is None:
            return got + ["EOF"]
        got.append(f.payload)


def pub(ws, channel, text):
    """Publish from ws's handler; the result of publish() (ws may get the
    message itself first, when it is subscribed)."""
    ws.send_message(OP_TEXT, "pub %s %s" % (channel, text))
    while True:
        op, payload = ws.recv_message(5)
        t = payload.decode("utf-8", "replace")
        if re.match(r"pub -?\d+$", t):
            return int(t.split()[1])


def t_pid(ws):
    r = cmd(ws, "id").split()
    return int(r[1])


def spread(env, path, want=2, tries=12, headers=()):
    """Clients on at least `want` different children: [(ws, pid)], one per
    child (extra connections on a child already seen are closed)."""
    by_pid = {}
    extra = []
    for _ in range(tries):
        batch = [None] * 4
        def one(i):
            try:
                batch[i] = env.ws(path, headers=headers)
            except Exception:  # counted below
                batch[i] = None
        ts = [threading.Thread(target=one, args=(i,)) for i in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        for ws in batch:
            if ws is None:
                continue
            pid = t_pid(ws) if path.startswith("/ps") else None
            if pid not in by_pid:
                by_pid[pid] = ws
            else:
                extra.append(ws)
        if len(by_pid) >= want:
            break
    if len(by_pid) < want:
        for ws in list(by_pid.values()) + extra:
            ws.close()
        pytest.fail("could not get clients on %d children (got %r)" % (want, list(by_pid)))
    return [(ws, pid) for pid, ws in by_pid.items()], extra


def read_texts(ws, want, timeout):
    """Collect text messages until every text in want arrived or timeout;
    returns the set of texts that arrived (others are ignored)."""
    got = set()
    deadline = time.monotonic() + timeout
    while not want <= got:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            f = ws.recv_frame(left)
        except (socket.timeout, TimeoutError):
            break
        if f is None:
            break
        if f.opcode == OP_TEXT:
            t = f.payload.decode("utf-8", "replace")
            if t in want:
                got.add(t)
    return got


def close_all(wss):
    for ws in wss:
        try:
            ws.close()
        except Exception:
            pass


# ---- item 7: nothing but the server's own processes -------------------------------

# the channel log: an anonymous shared mapping of about 21 MB (glue/mws_bus.c)
LOG_MIN_BYTES = 20 * 1024 * 1024


def channel_log_mapping(pid):
    """(start, end) of the channel log in pid's address space (read as
    root): a shared, anonymous mapping (the kernel names those
    "/dev/zero (deleted)")."""
    found = []
    with open("/proc/%d/maps" % pid) as f:
        for line in f:
            parts = line.split()
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            if parts[1] == "rw-s" and hi - lo >= LOG_MIN_BYTES \
                    and line.rstrip().endswith("/dev/zero (deleted)"):
                found.append((lo, hi))
    return found


def unix_socket_paths(pid):
    """Paths of the named Unix sockets pid holds."""
    inodes = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        m = re.match(r"socket:\[(\d+)\]$", target)
        if m:
            inodes.add(m.group(1))
    paths = []
    with open("/proc/net/unix") as f:
        next(f)
        for line in f:
            parts = line.split()
            if len(parts) >= 8 and parts[6] in inodes:
                paths.append(parts[7])
    return paths


def test_mws_1155_01_no_file_and_no_socket_to_open(env, ps):
    """The channels have no name in the file system: no socket folder, no
    named socket in any child; the log is an anonymous shared mapping."""
    fresh(env)
    wss = []
    try:
        subs, extra = spread(env, "/psa", want=2 if env.mpm == "prefork" else 1)
        wss = [ws for ws, _ in subs] + extra
        assert cmd(subs[0][0], "sub server:n") == "sub server:n 0"
        assert pub(subs[-1][0], "server:n", "named?") >= 0
        assert not os.path.exists(os.path.join(env.root, "run", "mod_websocket"))
        for pid in child_pids(env.pid):
            assert unix_socket_paths(pid) == [], (pid, unix_socket_paths(pid))
            maps = channel_log_mapping(pid)
            assert len(maps) == 1, maps
    finally:
        close_all(wss)


def test_mws_1155_10_foreign_process_can_neither_read_nor_write(env, ps):
    """A process of the server's user tries the only ways into another
    process's memory: /proc/<pid>/maps, mem (read and write), map_files
    and ptrace.  The children are not dumpable (they switched from root
    to User), so the kernel refuses every one."""
    fresh(env)
    wss = []
    try:
        subs, extra = spread(env, "/psa", want=2 if env.mpm == "prefork" else 1)
        wss = [ws for ws, _ in subs] + extra
        for ws, _ in subs:
            assert cmd(ws, "sub server:secret") == "sub server:secret 0"
        pid = subs[0][1]
        (lo, hi), = channel_log_mapping(pid)
        r = attacker(env, "peek", {"pid": pid, "start": lo, "end": hi})
        print("\n%s: attacker on child %d's log %x-%x: %r" % (env.mpm, pid, lo, hi, r))
        for what in ("maps", "mem_read", "mem_write", "map_files", "ptrace"):
            assert not r[what]["ok"], (what, r)
        assert r["mem_read"]["errno"] in ("EACCES", "EPERM"), r
        # the channels still work for the server itself
        ws0 = subs[0][0]
        assert pub(ws0, "server:secret", "genuine") >= 1
        for ws, _ in subs[1:]:
            assert read_texts(ws, {"genuine"}, 5) == {"genuine"}
    finally:
        close_all(wss)


def test_mws_1155_11_stopping_a_child_does_not_stall_the_others(env, ps):
    """A process of the server's user may stop a child (SIGSTOP): the other
    children keep delivering at once, publish does not wait, and the
    stopped child's subscriber gets everything when it runs again (40
    messages are far below the log's bound)."""
    fresh(env)
    wss = []
    try:
        subs, extra = spread(env, "/psa", want=2)
        wss = [ws for ws, _ in subs] + extra
        (publisher, _), (victim, vpid) = subs[0], subs[1]
        near = None
        for _ in range(20):     # a subscriber on a child that runs on
            ws = env.ws("/psa")
            wss.append(ws)
            if t_pid(ws) != vpid:
                near = ws
                break
        assert near is not None
        for ws in (publisher, victim, near):
            assert cmd(ws, "sub st") == "sub st 0"
        p = attacker(env, "stop", {"pid": vpid, "seconds": 3}, background=True)
        time.sleep(0.5)
        texts = ["m%03d" % i for i in range(40)]
        t0 = time.monotonic()
        for t in texts:
            assert pub(publisher, "st", t) >= 1
        took = time.monotonic() - t0
        got_near = read_texts(near, set(texts), 2)
        stopped_meanwhile = os.path.exists("/proc/%d" % vpid) and \
            open("/proc/%d/stat" % vpid).read().rsplit(")", 1)[1].split()[0] == "T"
        r = finish(p)
        got_victim = read_texts(victim, set(texts), 10)
        print("\n%s: child %d stopped: 40 publishes in %.0f ms (round trips included), "
              "%d/40 delivered elsewhere meanwhile, %d/40 to the stopped child after"
              % (env.mpm, vpid, took * 1000, len(got_near), len(got_victim)))
        assert r == {"stopped": vpid}
        assert stopped_meanwhile, "the child was not stopped during the publishes"
        assert got_near == set(texts)
        assert got_victim == set(texts)
    finally:
        close_all(wss)


def test_mws_1155_12_a_child_without_descriptors_still_gets_messages(env, ps):
    """A process of the same user may lower a child's RLIMIT_NOFILE: the
    channels need no descriptor, so delivery to its connection goes on."""
    fresh(env)
    wss = []
    try:
        subs, extra = spread(env, "/psa", want=2)
        wss = [ws for ws, _ in subs] + extra
        (publisher, _), (rcv, pid) = subs[0], subs[1]
        assert cmd(rcv, "sub nf") == "sub nf 0"
        used = {int(n) for n in os.listdir("/proc/%d/fd" % pid)}
        lowest_free = next(i for i in range(1 << 20) if i not in used)
        old = attacker(env, "nofile", {"pid": pid, "soft": lowest_free})["old"]
        try:
            assert pub(publisher, "nf", "still") >= 0
            assert read_texts(rcv, {"still"}, 5) == {"still"}
        finally:
            attacker(env, "nofile", {"pid": pid, "soft": old[0]})
    finally:
        close_all(wss)


# ---- item 8: channel scope ---------------------------------------------------------

def test_mws_1155_20_public_and_chat_rooms_do_not_cross(env, ps):
    fresh(env)
    auth = [("Authorization", AUTH)]
    pub_clients, chat_clients = [], []
    try:
        for i in range(3):
            pub_clients.append(env.ws("/public?room=lobby&name=anon%d" % i))
            chat_clients.append(env.ws("/chat?room=lobby&name=user%d" % i, headers=auth))
        time.sleep(0.5)
        for i, ws in enumerate(pub_clients):
            ws.send_message(OP_TEXT, "from-public-%d" % i)
        for i, ws in enumerate(chat_clients):
            ws.send_message(OP_TEXT, "from-chat-%d" % i)

        def texts(ws):
            out = []
            while True:
                try:
                    op, payload = ws.recv_message(1.5)
                except (socket.timeout, TimeoutError):
                    return out
                out.append(json.loads(payload))
        pids = set()
        for side, mine, other in (("public", pub_clients, "chat"), ("chat", chat_clients, "public")):
            for ws in mine:
                msgs = texts(ws)
                pids.add(msgs[0]["user"].split("-")[0])
                said = {m["text"] for m in msgs if m["type"] == "message"}
                names = {m.get("name", "") for m in msgs if m["type"] in ("join", "message")}
                assert said == {"from-%s-%d" % (side, i) for i in range(3)}, (side, said)
                assert not any(n.startswith("anon" if side == "chat" else "user")
                               for n in names), (side, names)
        if env.mpm == "prefork":
            assert len(pids) > 1, pids      # the rooms span children
    finally:
        close_all(pub_clients + chat_clients)


def test_mws_1155_21_server_prefix_crosses_handlers_others_do_not(env, ps):
    fresh(env)
    wss = []
    try:
        a1, a2, b = env.ws("/psa"), env.ws("/psa"), env.ws("/psb")
        wss = [a1, a2, b]
        for ws in wss:
            assert cmd(ws, "sub room") == "sub room 0"
            assert cmd(ws, "sub server:room") == "sub server:room 0"
        # /psb's "room" is not /psa's
        assert pub(b, "room", "from-b") == 1
        assert read_texts(a1, {"from-b"}, 1.0) == set()
        assert read_texts(a2, {"from-b"}, 0.2) == set()
        # /psa's reaches /psa only
        a1.send_message(OP_TEXT, "pub room from-a")
        assert read_texts(a2, {"from-a"}, 5) == {"from-a"}
        assert read_texts(b, {"from-a"}, 1.0) == set()
        # server: reaches both handlers
        a1.send_message(OP_TEXT, "pub server:room everyone")
        for ws in (a2, b):
            assert read_texts(ws, {"everyone"}, 5) == {"everyone"}
        # unsubscribe is scoped the same way
        assert cmd(b, "unsub room") == "unsub room 0"
        assert read_texts(a2, {"x"}, 0.3) == set()
        a2.send_message(OP_TEXT, "pub room still-a")
        assert read_texts(a1, {"still-a"}, 5) == {"still-a"}
    finally:
        close_all(wss)


def test_mws_1155_22_publish_outside_a_callback(env, ps):
    fresh(env)
    wss = []
    try:
        a1, a2 = env.ws("/psa"), env.ws("/psa")
        wss = [a1, a2]
        for ch in ("room", "server:room"):
            assert cmd(a2, "sub %s" % ch) == "sub %s 0" % ch
        # the handler's own thread: only server-wide channels
        assert cmd(a1, "threadpub room t1") == "threadpub -5"
        assert read_texts(a2, {"t1"}, 0.5) == set()
        assert re.match(r"threadpub \d+$", cmd(a1, "threadpub server:room t2"))
        assert read_texts(a2, {"t2"}, 5) == {"t2"}
        # a timer is a callback of its connection's handler
        a1.send_message(OP_TEXT, "timerpub 20 room t3")
        got = read_texts(a2, {"t3"}, 5)
        assert got == {"t3"}
        assert re.match(r"timerpub \d+$", wsclient_text(a1)), "timer publish failed"
    finally:
        close_all(wss)
    # init() published in every child (not MWS_ERR_STATE)
    evs = ps.of("initpub", since=0)
    assert evs and all(e.get("rv") == "0" for e in evs), evs


def wsclient_text(ws):
    while True:
        op, payload = ws.recv_message(5)
        t = payload.decode()
        if t.startswith("timerpub"):
            return t


# ---- the child's exit path ------------------------------------------------------------

def test_mws_1155_30_unsubscribe_in_on_close_at_exit(env, ps):
    """A connection still open when the server stops: its on_close runs on
    the child's exit path, where the handler unsubscribes (and shutdown()
    publishes); the child must not crash there."""
    fresh(env)
    start = ps.mark()
    wss = [env.ws("/psa") for _ in range(2)]
    pids = set()
    for ws in wss:
        assert cmd(ws, "sub x") == "sub x 0"
        assert cmd(ws, "sub server:y") == "sub server:y 0"
        pids.add(t_pid(ws))
    try:
        env.stop()
    finally:
        close_all(wss)
        env.start()
    evs = ps.all(since=start)
    for pid in pids:
        key_evs = [e for e in evs if e.get("pid") == str(pid)]
        kinds = [e.kind for e in key_evs]
        conns = {e.key for e in key_evs if e.kind == "open"}
        assert conns and conns == {e.key for e in key_evs if e.kind == "close"}, kinds
        unsubs = [e for e in key_evs if e.kind == "unsub"]
        assert len(unsubs) == 2 * len(conns), key_evs
        assert all(e.get("rv") in ("0", "-6") for e in unsubs), unsubs
        assert "shutdown" in kinds, "child %d did not get to shutdown: %r" % (pid, kinds)
        shut = [e for e in key_evs if e.kind == "shutdownpub"]
        assert shut and all(int(e.get("rv")) >= 0 for e in shut), shut

"""Channels across child processes through the channel log (mws_bus.c).

- One order: publishes made one after the other from different children
  arrive in that order everywhere; concurrent bursts from several children
  arrive in one order that every subscriber and every child's on_publish
  agree on.  Order violations are counted (must be 0).
- on_publish: in every child, once per message of the line's channels,
  named without the scope, whether or not a connection subscribes.
- Never blocking: a child stopped with SIGSTOP does not slow publish();
  when it runs again its loss is reported through on_gap and logged
  (MWS00153), and its subscribers get what follows.
- A graceful restart keeps channels working (the log outlives it).

Uses the test-only handler tests/handlers/bushandler.c.
"""
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time

import pytest

import conftest
from apiutil import BUILD_DIR, child_pids, cmd, wait_until
from wsclient import OP_TEXT

BUS_SO = os.path.join(BUILD_DIR, "tests", "handlers", ".libs", "mod_ws_bustest.so")
# the log's length in messages (MWS_BUS_SLOTS, glue/mws_private.h)
BUS_SLOTS = 16384

BUS_LOCATIONS = """
<Location /bus>
    SetHandler websocket
    WebSocketHandler {so}
</Location>
<Location /bus2>
    SetHandler websocket
    WebSocketHandler {so}
</Location>
"""


def bus_locations():
    return BUS_LOCATIONS.format(so=BUS_SO)


@pytest.fixture(scope="module")
def bus(env):
    if not os.path.exists(BUS_SO):
        pytest.fail("test handler not built: %s" % BUS_SO, pytrace=False)
    env.restart(locations=bus_locations(), extra=os.environ.get("MWS_EXTRA_CONF", ""))
    yield env
    env.restart()


def pid_of(ws):
    r = cmd(ws, "id").split()
    assert r[0] == "id", r
    return int(r[1])


def stats(ws):
    """This child's on_publish/on_gap figures; channel messages that
    arrive before the reply are skipped."""
    ws.send_message(OP_TEXT, "stats")
    deadline = time.monotonic() + 30
    while True:
        t = read_texts(ws, 1, deadline - time.monotonic())
        assert t, "no reply to stats"
        if t[0].startswith('{"pid"'):
            return json.loads(t[0])


def spread(env, path, want, tries=15):
    """Connections on at least `want` different children: {pid: ws}; the
    extra connections are closed."""
    by_pid = {}
    extra = []
    for _ in range(tries):
        batch = []
        lock = threading.Lock()

        def one():
            try:
                ws = env.ws(path)
            except Exception:
                return
            with lock:
                batch.append(ws)
        ts = [threading.Thread(target=one) for _ in range(6)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        for ws in batch:
            p = pid_of(ws)
            if p in by_pid:
                extra.append(ws)
            else:
                by_pid[p] = ws
        if len(by_pid) >= want:
            break
    for ws in extra:
        ws.close()
    if len(by_pid) < want:
        for ws in by_pid.values():
            ws.close()
        pytest.fail("could not get connections on %d children (got %r)" % (want, list(by_pid)))
    return by_pid


def read_texts(ws, n, timeout):
    """The next n text messages (fewer if timeout passes first)."""
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n:
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
            out.append(f.payload.decode())
    return out


def close_all(wss):
    for ws in wss:
        try:
            ws.close()
        except Exception:
            pass


def violations(seq):
    """Messages "<tag> <i>" whose i is not above the tag's last one."""
    last = {}
    bad = 0
    for t in seq:
        tag, i = t.split()
        i = int(i)
        if tag in last and i <= last[tag]:
            bad += 1
        last[tag] = i
    return bad


def want_children(env):
    return 3 if env.mpm == "prefork" else 2


# ---- order --------------------------------------------------------------------------

def test_mws_1500_01_one_after_the_other_across_children(env, bus):
    """Publishes from alternating children, each after the previous one
    returned: every subscriber gets them in that order."""
    conns = spread(env, "/bus", want_children(env))
    pubs = list(conns.values())
    subs = pubs[:]
    try:
        subs = [env.ws("/bus") for _ in range(2)] + pubs
        for ws in subs[:2]:
            assert cmd(ws, "sub seq") == "sub seq 0"
        for ws in pubs:
            assert cmd(ws, "sub seq") == "sub seq 0"
        n = 60
        for k in range(n):
            ws = pubs[k % len(pubs)]
            ws.send_message(OP_TEXT, "pub seq s %d" % k)
            # the reply comes after the messages queued before it; what
            # arrives on ws before "pub N" is channel traffic, kept
            got = []
            while True:
                t = read_texts(ws, 1, 10)
                assert t, "no reply to pub %d" % k
                if re.match(r"pub -?\d+$", t[0]):
                    assert int(t[0].split()[1]) >= 0, t
                    break
                got.append(t[0])
            ws.pending = getattr(ws, "pending", []) + got
        bad = 0
        for ws in subs:
            seq = getattr(ws, "pending", []) + read_texts(ws, n - len(getattr(ws, "pending", [])), 10)
            assert len(seq) == n, (len(seq), seq[-5:])
            bad += violations(seq)
        print("\n%s: %d publishes from %d children, %d subscribers: %d order violations"
              % (env.mpm, n, len(pubs), len(subs), bad))
        assert bad == 0
    finally:
        close_all(subs)


def test_mws_1500_02_concurrent_bursts_one_order(env, bus):
    """Bursts published at once from several children: every subscriber, in
    every child, and every child's on_publish see one order (the same
    sequence), and each publisher's messages in the order it sent them."""
    conns = spread(env, "/bus", want_children(env))
    extra = []
    try:
        for ws in conns.values():
            assert cmd(ws, "reset") == "reset"
        subs = []
        for ws in conns.values():
            s = env.ws("/bus")
            extra.append(s)
            assert cmd(s, "sub ord") == "sub ord 0"
            subs.append(s)
        n = 500
        pubs = list(conns.values())
        for i, ws in enumerate(pubs):
            ws.send_message(OP_TEXT, "burst ord %d p%d" % (n, i))
        total = n * len(pubs)
        for ws in pubs:
            r = read_texts(ws, 1, 30)
            assert r and r[0].startswith("burst %d 0 " % n), r
        seqs = [read_texts(s, total, 30) for s in subs]
        bad = sum(violations(s) for s in seqs)
        differ = sum(1 for s in seqs[1:] if s != seqs[0])
        print("\n%s: %d children published %d each; %d subscribers got %r messages; "
              "%d order violations; %d subscribers saw another order than the first"
              % (env.mpm, len(pubs), n, len(subs), [len(s) for s in seqs], bad, differ))
        st = [stats(ws) for ws in pubs]
        chains = {s["channels"].get("ord", [0, None])[1] for s in st}
        counts = [s["channels"].get("ord", [0])[0] for s in st]
        print("%s: on_publish counts %r, %d distinct orders, %d on_publish order violations"
              % (env.mpm, counts, len(chains), sum(s["order_bad"] for s in st)))
        assert all(len(s) == total for s in seqs), [len(s) for s in seqs]
        assert bad == 0 and differ == 0
        assert counts == [total] * len(pubs)
        assert len(chains) == 1
        assert all(s["order_bad"] == 0 and s["gaps"] == 0 and not s["overlap"] for s in st), st
    finally:
        close_all(list(conns.values()) + extra)


# ---- on_publish ----------------------------------------------------------------------

def test_mws_1500_10_on_publish_in_every_child(env, bus):
    conns = spread(env, "/bus", want_children(env))
    other = None
    try:
        for ws in conns.values():
            assert cmd(ws, "reset") == "reset"
        pubs = list(conns.values())
        # nobody subscribes: on_publish still runs in every child
        assert cmd(pubs[0], "pub room hello") == "pub 0"
        # another line's channel of the same name, and a server-wide one
        other = env.ws("/bus2")
        assert cmd(other, "pub room elsewhere") == "pub 0"
        assert cmd(pubs[0], "pub server:all x") == "pub 0"
        assert cmd(pubs[-1], "pub room again") == "pub 0"

        def seen():
            return [stats(ws) for ws in pubs]
        wait_until(lambda: all(s["channels"].get("room", [0])[0] == 2 for s in seen()),
                   timeout=10)
        for s in seen():
            assert set(s["channels"]) == {"room"}, s
            assert s["published"] == 2, s
    finally:
        close_all(list(conns.values()) + ([other] if other else []))


# ---- never blocking: a stopped child -------------------------------------------------

@pytest.mark.allow_errors(r"MWS00153")
def test_mws_1500_20_stopped_child_never_blocks_publish(env, bus):
    conns = spread(env, "/bus", 2)
    (ppid, pub), (spid, stuck) = list(conns.items())[:2]
    offset = env._log_size()
    try:
        assert cmd(stuck, "sub st") == "sub st 0"
        assert cmd(stuck, "reset") == "reset"
        os.kill(spid, signal.SIGSTOP)
        try:
            n = BUS_SLOTS + 4000
            pub.send_message(OP_TEXT, "burst st %d b" % n)
            r = read_texts(pub, 1, 60)
            assert r, "no reply to the burst"
            _, ok, failed, usec, worst = r[0].split()
            print("\n%s: %d publishes with child %d stopped: %.0f ms, %.1f us each, "
                  "longest %d us" % (env.mpm, n, spid, int(usec) / 1000.0,
                                     int(usec) / float(n), int(worst)))
            assert int(ok) == n and int(failed) == 0
            # had publish() waited for the stopped child, the burst would
            # not have ended before SIGCONT (the reply above); the longest
            # single publish is scheduling on a busy machine (the old
            # transport waited 50 ms for a child that did not read)
            assert int(worst) < 250000, worst
        finally:
            os.kill(spid, signal.SIGCONT)
        # the stopped child reports its loss ...
        wait_until(lambda: stats(stuck)["gaps"] >= 1, timeout=10)
        s = stats(stuck)
        print("%s: stopped child: %r" % (env.mpm, {k: s[k] for k in ("gaps", "lost",
                                                                      "gap_channels")}))
        assert s["lost"] >= n - BUS_SLOTS, s
        assert "*" in s["gap_channels"].split(","), s
        assert s["order_bad"] == 0, s
        # ... logs it, numbered ...
        wait_until(lambda: "MWS00153" in env.error_log_since(offset), timeout=5)
        assert re.search(r"MWS00153: channels: this child lost \d+ message",
                         env.error_log_since(offset))
        # ... and its subscriber gets what comes after (after the backlog it
        # has in its queue)
        assert cmd(pub, "pub st after") == "pub 0"
        deadline = time.monotonic() + 30
        got = None
        while time.monotonic() < deadline:
            t = read_texts(stuck, 1, deadline - time.monotonic())
            if not t:
                break
            if t[0] == "after":
                got = t[0]
                break
        assert got == "after"
    finally:
        close_all(conns.values())


@pytest.mark.allow_errors(r"MWS00153")
def test_mws_1500_21_overwritten_payloads_are_gaps_of_their_channel(env, bus):
    """Large messages overrun the log's payload ring (16 MiB) long before
    its slots: the stopped child still knows which channel each lost
    message had, and on_gap names it; what it did not lose, on_publish got
    (count + lost = published)."""
    conns = spread(env, "/bus", 2)
    (ppid, pub), (spid, stuck) = list(conns.items())[:2]
    try:
        assert cmd(stuck, "reset") == "reset"
        n, size = 300, 60000          # 18 MB of payload, 300 slots
        os.kill(spid, signal.SIGSTOP)
        try:
            pub.send_message(OP_TEXT, "burst big %d g %d" % (n, size))
            r = read_texts(pub, 1, 60)
            assert r and r[0].startswith("burst %d 0 " % n), r
        finally:
            os.kill(spid, signal.SIGCONT)
        wait_until(lambda: stats(stuck)["channels"].get("big", [0])[0] + stats(stuck)["lost"]
                   >= n, timeout=15)
        s = stats(stuck)
        got = s["channels"].get("big", [0])[0]
        print("\n%s: stopped child: %d of %d large messages, %d lost in %d gap(s) (%s)"
              % (env.mpm, got, n, s["lost"], s["gaps"], s["gap_channels"][:40]))
        assert s["lost"] >= n - (16 << 20) // size, s
        assert got + s["lost"] == n, s
        assert s["gap_channels"] == "big" and s["gaps"] == 1, s
        assert s["order_bad"] == 0, s
    finally:
        close_all(conns.values())


# ---- graceful restart -----------------------------------------------------------------

def test_mws_1500_30_graceful_restart_keeps_channels(env, bus):
    old = spread(env, "/bus", 2)
    for ws in old.values():
        assert cmd(ws, "sub gr") == "sub gr 0"
    try:
        for round_ in range(2):
            r = subprocess.run([conftest.HTTPD, "-f", env.conf_path, "-k", "graceful"],
                               capture_output=True, text=True, timeout=60)
            assert r.returncode == 0, r.stderr
            time.sleep(1.0)
            new = spread(env, "/bus", want_children(env))
            try:
                for ws in new.values():
                    assert cmd(ws, "sub gr") == "sub gr 0"
                pubs = list(new.values())
                pubs[0].send_message(OP_TEXT, "burst gr 50 r%d" % round_)
                for ws in pubs:
                    got = [t for t in read_texts(ws, 51, 10) if not t.startswith("burst")]
                    assert got == ["r%d %d" % (round_, i) for i in range(50)], got[:5]
            finally:
                close_all(new.values())
    finally:
        close_all(old.values())

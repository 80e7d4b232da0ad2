"""on_close exactly once when the server goes away: `apache2 -k stop`,
`-k graceful` (restart) and `-k graceful-stop`.  The clients should see a
close frame 1001 (going away); the handler's LogFile must show exactly one
on_close per opened connection, and the child's shutdown() after all of
them, with no connection left ("after every on_close").
"""
import os
import subprocess
import time

import pytest

from apiutil import (OP_BINARY, OP_TEXT, Events, api_locations, events_path, ident,
                     pid_alive, prepare_events, recv_text, require_test_handlers,
                     wait_until)
from wsclient import build_frame

HTTPD = "/usr/sbin/apache2"
GRACEFUL_TIMEOUT = 5


@pytest.fixture(scope="module")
def api(env):
    require_test_handlers()
    prepare_events(env)
    env.restart(extra="GracefulShutdownTimeout %d\n" % GRACEFUL_TIMEOUT,
                locations=api_locations(env))
    yield Events(events_path(env))
    env.restart()


def ensure_started(env):
    if env.pid is None:
        env.start()


def open_mix(env):
    """Connections in different states: idle, a running timer, a message
    half received (streaming and buffered), a client that reads nothing."""
    conns = {}
    conns["idle"] = env.ws("/t")
    conns["timer"] = env.ws("/t")
    conns["timer"].send_message(OP_TEXT, "timerflood 5")
    assert recv_text(conns["timer"]) == "tick"
    conns["stream"] = env.ws("/s")
    frame = build_frame(OP_BINARY, b"s" * 500000)
    conns["stream"].send_raw(frame[:200000])
    conns["stream"].rest = frame[200000:]
    assert recv_text(conns["stream"], timeout=10) == "begin 2"
    conns["partial"] = env.ws("/t")
    frame = build_frame(OP_BINARY, b"p" * 100000)
    conns["partial"].send_raw(frame[:50000])
    conns["partial"].rest = frame[50000:]
    return conns


def client_outcome(ws, timeout=15):
    """What the client saw at the end: ("close", code) or ("eof", None).
    A client in the middle of a frame finishes it before it answers."""
    try:
        before, f = ws.read_until_close(timeout)
    except Exception as e:  # a reset, a timeout
        return ("error", repr(e))
    if f is None:
        return ("eof", None)
    code, _ = f.close_info()
    try:
        if getattr(ws, "rest", None):
            ws.send_raw(ws.rest)
        ws.send_close(code if code is not None else None)
    except Exception:
        pass
    return ("close", code)


def check_exactly_once(api, keys, since):
    for k in keys:
        closes = api.of("close", k, since=since)
        assert len(closes) == 1, "connection %r: %d on_close calls: %r" % (k, len(closes), closes)
    return {k: api.of("close", k, since=since)[0] for k in keys}


def check_shutdown_after_closes(api, keys, since):
    """Each child that had a connection ran shutdown() with no connection
    left, after their on_close lines."""
    evs = api.all(since=since)
    for pid in {k[0] for k in keys}:
        downs = [i for i, e in enumerate(evs) if e.kind == "shutdown" and e.get("pid") == str(pid)]
        assert downs, "child %d never ran the handler's shutdown(): %r" % (pid, evs)
        last_close = max(i for i, e in enumerate(evs)
                         if e.kind == "close" and e.get("pid") == str(pid))
        assert downs[0] > last_close, "shutdown() before an on_close in %d: %r" % (pid, evs)
        for i in downs:
            assert evs[i].get("live") == "0", "shutdown() with live connections: %r" % evs[i]


def stop_problems(env, log_offset):
    text = env.error_log_since(log_offset)
    return [ln for ln in text.splitlines()
            if "exit signal" in ln or "SIGKILL" in ln or "still did not exit" in ln
            or "[error]" in ln or "[crit]" in ln or "[emerg]" in ln]


def run_shutdown(env, api, action):
    ensure_started(env)
    since = api.mark()
    conns = open_mix(env)
    ids = {}
    for name in ("idle", "timer"):
        ids[name] = ident_skip_ticks(conns[name])
    opens = wait_until(lambda: len(api.of("open", since=since)) >= 4 and
                       api.of("open", since=since), timeout=10)
    keys = [e.key for e in opens]
    assert len(keys) == 4, opens
    # opened one after the other (on_open runs before the 101): same order
    names = list(conns)
    assert set(ids.values()) <= set(keys)
    log_offset = os.path.getsize(env.error_log)
    parent = env.pid
    if action == "stop":
        env.stop()
    else:
        r = subprocess.run([HTTPD, "-f", env.conf_path, "-k", action],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
    outcomes = {name: client_outcome(ws) for name, ws in conns.items()}
    for ws in conns.values():
        ws.close()
    if action == "graceful-stop":
        assert wait_until(lambda: not pid_alive(parent), timeout=GRACEFUL_TIMEOUT + 20), \
            "httpd did not stop"
        env.pid = None
    # every connection's on_close, exactly once
    wait_until(lambda: all(api.of("close", k, since=since) for k in keys), timeout=20)
    if action == "graceful":
        # the old children end once their connections are gone
        wait_until(lambda: {str(k[0]) for k in keys} <=
                   {e.get("pid") for e in api.of("shutdown", since=since)}, timeout=20)
    time.sleep(0.5)
    closes = check_exactly_once(api, keys, since)
    check_shutdown_after_closes(api, keys, since)
    problems = stop_problems(env, log_offset)
    seen = {name: (outcomes[name], closes[keys[i]].code) for i, name in enumerate(names)}
    return seen, problems


def ident_skip_ticks(ws):
    ws.send_message(OP_TEXT, "id")
    while True:
        t = recv_text(ws)
        if t.startswith("id "):
            p = t.split()
            return int(p[1]), int(p[2])


@pytest.fixture(params=["stop", "graceful-stop", "graceful"])
def shutdown(request, env, api):
    """Run one shutdown with a mix of connections; start the server again."""
    try:
        yield request.param, run_shutdown(env, api, request.param)
    finally:
        if request.param == "graceful":
            env.new_log_errors(reset=True)
        ensure_started(env)


def test_mws_1010_01_on_close_once_at_shutdown(shutdown):
    """Exactly one on_close per connection (checked in run_shutdown), all
    before the child's shutdown(), and children that end by themselves."""
    action, (seen, problems) = shutdown
    assert not problems, "the children did not end cleanly:\n" + "\n".join(problems)
    codes = {name: code for name, (_, code) in seen.items()}
    assert set(codes.values()) <= {1001, 1006}, codes


def test_mws_1010_02_going_away_seen_by_both_sides(env, shutdown):
    """On a graceful stop or restart the clients are told with a close frame
    1001 (going away), and on_close hears the same code.  On a hard stop
    (`-k stop`) a client may only see EOF where the MPM shut the socket
    before the module could write (worker always; prefork when the signal
    does not find the connection waiting in poll): then on_close must say
    1006, never a code the client was not sent."""
    action, (seen, problems) = shutdown
    if action != "stop":
        expected = {name: (("close", 1001), 1001) for name in seen}
    else:
        expected = {name: (("close", 1001), 1001) if client == ("close", 1001)
                    else (("eof", None), 1006)
                    for name, (client, _) in seen.items()}
        if env.mpm == "event":
            # parked connections are written to before the MPM closes them
            expected = {name: (("close", 1001), 1001) for name in seen}
    assert seen == expected, "%s: name: (client saw, on_close code)" % action


def test_mws_1010_03_serves_after_graceful(env, api):
    ensure_started(env)
    r = subprocess.run([HTTPD, "-f", env.conf_path, "-k", "graceful"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    # a connection the old generation still accepted may be told 1001
    # (going away) at any point of the session, even after it answered
    # (a slow, sanitized child stops late): the whole session is retried
    # until one runs on the new generation from start to end
    deadline = time.monotonic() + 20
    while True:
        ws = None
        try:
            ws = env.ws("/t")
            assert ws.echo(OP_TEXT, "probe") == (OP_TEXT, b"probe")
            assert ws.echo(OP_TEXT, "after graceful") == (OP_TEXT, b"after graceful")
            key = ident(ws)
            ws.send_close(1000)
            ws.expect_close(1000, reply=False)
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
        finally:
            if ws is not None:
                ws.close()
    assert len(api.wait_close(key)) == 1

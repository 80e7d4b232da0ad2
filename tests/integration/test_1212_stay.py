"""Hot connections stay on their workers and are served together
(glue/mws_stay.c, event MPM only): while a client keeps talking, its
worker keeps the connection instead of handing it back to the MPM after
each message, and one of the staying workers (the leader) serves every
staying connection that has input.  The leader writes at the end of its
term at LogLevel trace2: "led the hot set: N passes with input, M for
other workers' connections".

What must hold: several clients in conversation are served together (M >
0) and every echo is right; a TLS connection never stays (the poll would
not see what mod_ssl keeps); a client that stops reading, or a handler
that blocks, does not delay the others beyond a fraction of a second (the
leader's writes never wait for a client, and a slow pass sends its
connection back to the MPM)."""
import re
import socket
import threading
import time

import pytest

import conftest
import wsclient
from apiutil import api_locations, require_test_handlers

LED_RX = re.compile(r"led the hot set: (\d+) passes with input, (\d+) for other"
                    r".*, up to (\d+) staying")

# one child with 20 threads: up to 5 connections stay at once
ONE_CHILD = """
ServerLimit 1
StartServers 1
ThreadLimit 20
ThreadsPerChild 20
MinSpareThreads 1
MaxSpareThreads 20
MaxRequestWorkers 20
"""


@pytest.fixture(scope="module")
def stayenv(env):
    if env.mpm != "event":
        pytest.skip("staying for input is the event MPM's parked driver")
    require_test_handlers()
    saved = conftest.MPM_CONF[env.mpm]
    conftest.MPM_CONF[env.mpm] = ONE_CHILD
    env.restart(extra="LogLevel websocket:trace2\n", locations=conftest.WS_LOCATIONS.format(
        echo=conftest.MOD_ECHO, small=1024, htpasswd=env.htpasswd) + api_locations(env))
    yield env
    conftest.MPM_CONF[env.mpm] = saved
    env.restart()


def led_since(env, offset):
    """(passes, for others) summed over the leaders' lines since offset;
    led_since.most: the most connections that stayed at once."""
    total = others = led_since.most = 0
    for m in LED_RX.finditer(env.error_log_since(offset)):
        total += int(m.group(1))
        others += int(m.group(2))
        led_since.most = max(led_since.most, int(m.group(3)))
    return total, others


def converse(env, n_clients, seconds, tls=False, path="/echo"):
    """n_clients echo 64-byte messages one at a time for `seconds`;
    returns (echoes, worst round trip in s, errors); converse.slow counts
    the round trips over 0.25 s."""
    results = []
    lock = threading.Lock()

    def client(k):
        done, worst, err, slow = 0, 0.0, None, 0
        try:
            ws = env.ws(path, tls=tls)
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                payload = ("%d:%d:" % (k, done)).encode().ljust(64, b"x")
                t0 = time.monotonic()
                got = ws.echo(2, payload, timeout=10)
                took = time.monotonic() - t0
                worst = max(worst, took)
                slow += took > 0.25
                if got != (2, payload):
                    err = "bad echo %r" % (got,)
                    break
                done += 1
            ws.close()
        except Exception as e:      # reported below
            err = repr(e)
        with lock:
            results.append((done, worst, err))
            converse.slow += slow

    converse.slow = 0
    threads = [threading.Thread(target=client, args=(k,)) for k in range(n_clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 30)
    errors = [r[2] for r in results if r[2]]
    return sum(r[0] for r in results), max(r[1] for r in results), errors


def test_mws_1212_01_clients_in_conversation_are_served_together(stayenv):
    off = stayenv._log_size()
    echoes, worst, errors = converse(stayenv, 4, 1.5)
    assert not errors, errors
    assert echoes > 400
    # the last leader writes its line when its connection goes
    deadline = time.monotonic() + 5
    while True:
        total, others = led_since(stayenv, off)
        if others > 0 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert total > 0, "no connection stayed"
    assert others > 0, "no leader served another worker's connection (%d passes)" % total


def test_mws_1212_02_tls_never_stays(stayenv):
    off = stayenv._log_size()
    echoes, worst, errors = converse(stayenv, 3, 1.0, tls=True)
    assert not errors, errors
    assert echoes > 100
    time.sleep(0.5)
    assert led_since(stayenv, off) == (0, 0)


def converse_beside(env, disturber, settle):
    """3 clients converse for 2 s while disturber(stop) runs on a thread of
    its own (started `settle` seconds before them)."""
    stop = threading.Event()
    t = threading.Thread(target=disturber, args=(stop,))
    t.start()
    try:
        time.sleep(settle)
        return converse(env, 3, 2.0)
    finally:
        stop.set()
        t.join(10)


def _flooder(env, stop):
    """A client in conversation (so that its connection stays) that then
    sends 60 KiB messages and never reads a reply: its socket's buffers
    fill up both ways."""
    ws = env.ws("/echo")
    sock = ws.conn.sock
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    # made first: masking 60 KiB in Python takes longer than a stay lasts
    frame = wsclient.build_frame(2, b"z" * 60000)
    for i in range(300):
        ws.echo(2, b"warming up %d" % i, timeout=10)
    try:
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                sock.sendall(frame)
            except socket.timeout:
                pass
    except OSError:
        pass
    finally:
        sock.close()


def test_mws_1212_03_a_client_that_does_not_read_stalls_nobody(stayenv):
    # the flooder's queue passes its cap: the echo handler's send fails
    stayenv.allow_error(r"MWS00007: .*handler echo .*returned an error, closing with 1011")
    echoes, worst, errors = converse_beside(
        stayenv, lambda stop: _flooder(stayenv, stop), 0.3)
    assert not errors, errors
    assert echoes > 300
    # a leader that waited for the flooder would stall the others until
    # Timeout (30 s here)
    assert worst < 1.0, "an echo took %.3f s" % worst


def test_mws_1212_04_a_blocking_handler_leaves_the_hot_set(stayenv):
    """A handler that blocks 300 ms in on_message, in a conversation of its
    own, while others echo.  The leader cannot know beforehand that a
    callback will block: the first slow pass delays the connections served
    with it, and sends its connection out of the set for 10 s.  So the
    others' round trips stay well below 300 ms, but for at most one each
    (without the 10 s, every sleep in the set delays all three: 15 in 2 s)."""

    def sleeper(stop):
        # in conversation (its connection stays), then a message whose
        # callback blocks, again and again
        ws = stayenv.ws("/t")
        try:
            while not stop.is_set():
                for _ in range(30):
                    ws.send_frame(1, b"sleep 0")
                    ws.recv_frame(timeout=10)
                ws.send_frame(1, b"sleep 300")
                ws.recv_frame(timeout=10)
        except Exception:
            pass
        finally:
            ws.conn.sock.close()

    echoes, worst, errors = converse_beside(stayenv, sleeper, 0.2)
    assert not errors, errors
    assert echoes > 300
    assert converse.slow <= 3, "%d echoes over 0.25 s" % converse.slow


def test_mws_1212_05_more_stay_while_workers_are_idle_and_http_is_served(stayenv):
    """20 threads: 5 connections may always stay, up to 16 while 4 workers
    stay idle.  12 clients in conversation: more than 5 stay at once, and
    a page asked for meanwhile is answered at once."""
    off = stayenv._log_size()
    got = {}

    def pages():
        worst = 0.0
        for _ in range(10):
            time.sleep(0.1)
            t0 = time.monotonic()
            resp = stayenv.http(b"GET /index.html HTTP/1.1\r\nHost: localhost\r\n"
                                b"Connection: close\r\n\r\n")
            worst = max(worst, time.monotonic() - t0)
            assert resp.status == 200
        got["worst"] = worst

    t = threading.Thread(target=pages)
    t.start()
    echoes, worst, errors = converse(stayenv, 12, 2.0)
    t.join(30)
    assert not errors, errors
    assert got.get("worst") is not None and got["worst"] < 0.5, got
    deadline = time.monotonic() + 5
    while True:
        total, others = led_since(stayenv, off)
        if led_since.most > 5 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert 5 < led_since.most <= 16, led_since.most

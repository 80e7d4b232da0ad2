"""The bundled chat and increment handlers (handlers/chat.c,
handlers/increment.c): rooms, notices, JSON, delivery across child
processes; the dumb-increment-protocol subprotocol, timer and reset."""
import json
import os
import socket
import threading
import time

import pytest

import conftest
import wsclient
from wsclient import OP_BINARY, OP_TEXT

MOD_CHAT = os.path.join(conftest.BUILD_DIR, "handlers", ".libs", "mod_ws_chat.so")
MOD_INC = os.path.join(conftest.BUILD_DIR, "handlers", ".libs", "mod_ws_increment.so")
WELCOME = 'Hello, "chat" \u00e9'
PROTO = "dumb-increment-protocol"

HANDLER_LOCATIONS = """
<Location /chat>
    SetHandler websocket
    WebSocketHandler {chat}
    WebSocketHandlerOption welcome "{welcome}"
</Location>
<Location /chat-nobin>
    SetHandler websocket
    WebSocketHandler {chat}
    WebSocketHandlerOption binary refuse
</Location>
<Location /chat-big>
    SetHandler websocket
    WebSocketHandler {chat}
    WebSocketMaxQueuedBytes 64M
</Location>
# keep-alive pings between the messages, as the server sends every
# Timeout/2 (test 12)
<Location /chat-ping>
    SetHandler websocket
    WebSocketHandler {chat}
    WebSocketPingInterval 50ms
</Location>
<Location /increment>
    SetHandler websocket
    WebSocketHandler {inc}
</Location>
<Location /increment-slow>
    SetHandler websocket
    WebSocketHandler {inc}
    WebSocketHandlerOption interval 200
</Location>
"""


def handler_locations(env):
    """The default test locations plus chat and increment ones."""
    base = conftest.WS_LOCATIONS.format(echo=conftest.MOD_ECHO, small=conftest.SMALL_LIMIT,
                                        htpasswd=env.htpasswd)
    return base + HANDLER_LOCATIONS.format(chat=MOD_CHAT, inc=MOD_INC,
                                           welcome=WELCOME.replace('"', '\\"'))


@pytest.fixture(scope="module")
def henv(env):
    missing = [p for p in (MOD_CHAT, MOD_INC) if not os.path.exists(p)]
    if missing:
        pytest.fail("handlers not built: %s" % ", ".join(missing), pytrace=False)
    env.restart(locations=handler_locations(env))
    yield env
    env.restart()


# ---- helpers ----------------------------------------------------------------

def recv_json(ws, timeout=5.0):
    op, payload = ws.recv_message(timeout)
    assert op == OP_TEXT, (op, payload)
    return json.loads(payload.decode("utf-8"))


def recv_until(ws, pred, timeout=5.0):
    """Read messages until pred(msg) holds; return (msg, skipped)."""
    deadline = time.monotonic() + timeout
    skipped = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("no matching message within %.1fs; got %r" % (timeout, skipped))
        m = recv_json(ws, left)
        if pred(m):
            return m, skipped
        skipped.append(m)


def expect_silence(ws, seconds=0.5):
    """Nothing but server pings (answered) may arrive for `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            f = ws.recv_frame(max(0.0, deadline - time.monotonic()))
        except (socket.timeout, TimeoutError):
            return
        if f is None or f.opcode != wsclient.OP_PING:
            raise AssertionError("unexpected frame %r" % f)
        ws._answer_ping(f)


def chat_join(env, path, timeout=5.0):
    """Connect to the chat; return (ws, my user id) after the welcome and
    my own join notice."""
    ws = env.ws(path)
    w = recv_json(ws, timeout)
    assert w["type"] == "welcome", w
    j = recv_json(ws, timeout)
    assert (j["type"], j["user"], j["room"]) == ("join", w["user"], w["room"]), j
    return ws, w


def close_ws(ws):
    try:
        ws.send_close(1000)
        ws.expect_close("any", reply=False, allow_frames=True)
    except Exception:
        pass
    ws.close()


# ---- chat ---------------------------------------------------------------------

def test_mws_1800_01_chat_two_clients(henv):
    a, wa = chat_join(henv, "/chat?room=r01")
    b = None
    try:
        assert wa["room"] == "r01"
        assert wa["text"] == WELCOME  # the welcome option (read in init)
        b, wb = chat_join(henv, "/chat?room=r01&name=bob")
        assert wb["user"] != wa["user"]
        # a sees b join (with b's nickname)
        j = recv_json(a)
        assert j == {"type": "join", "user": wb["user"], "room": "r01", "name": "bob"}, j
        # both see a's message, the sender too
        a.send_message(OP_TEXT, "hello room")
        want = {"type": "message", "from": wa["user"], "room": "r01", "text": "hello room"}
        assert recv_json(a) == want
        assert recv_json(b) == want
        b.send_message(OP_TEXT, "hi a")
        want = {"type": "message", "from": wb["user"], "room": "r01", "name": "bob",
                "text": "hi a"}
        assert recv_json(b) == want
        assert recv_json(a) == want
        # b leaves with a close handshake: a gets the leave notice
        b.send_close(1000)
        b.expect_close(1000, reply=False)
        b.close()
        b = None
        assert recv_json(a) == {"type": "leave", "user": wb["user"], "room": "r01",
                                "name": "bob"}
    finally:
        close_ws(a)
        if b:
            close_ws(b)


def test_mws_1800_02_chat_leave_on_abrupt_close(henv):
    a, wa = chat_join(henv, "/chat?room=r02")
    try:
        b, wb = chat_join(henv, "/chat?room=r02")
        recv_json(a)  # b's join
        b.conn.sock.shutdown(socket.SHUT_RDWR)  # no close handshake
        b.close()
        m = recv_json(a, 10)
        assert m == {"type": "leave", "user": wb["user"], "room": "r02"}, m
    finally:
        close_ws(a)


def test_mws_1800_03_chat_json_escaping(henv):
    a, wa = chat_join(henv, "/chat?room=r03")
    try:
        text = 'q"uote b\\ack nl\n tab\t cr\r bell\x07 nul\x00 \u00e9\u20ac\U0001F600 </script>'
        a.send_message(OP_TEXT, text)
        m = recv_json(a)
        assert m["type"] == "message" and m["text"] == text, m
        op, raw = a.echo(OP_TEXT, "\x1f")
        assert b"\\u001f" in raw, raw
    finally:
        close_ws(a)


def test_mws_1800_04_rooms_do_not_leak(henv):
    a, wa = chat_join(henv, "/chat?room=r04x")
    b, wb = chat_join(henv, "/chat?room=r04y")
    c, wc = chat_join(henv, "/chat/lobby")      # room = the path
    d, wd = chat_join(henv, "/chat/lobby")
    try:
        assert wc["room"] == "/chat/lobby" and wd["room"] == "/chat/lobby"
        assert recv_json(c)["user"] == wd["user"]  # d's join
        a.send_message(OP_TEXT, "only x")
        assert recv_json(a)["text"] == "only x"
        c.send_message(OP_TEXT, "only lobby")
        assert recv_json(c)["text"] == "only lobby"
        assert recv_json(d)["text"] == "only lobby"
        expect_silence(b)
        expect_silence(a, 0.2)
    finally:
        for ws in (a, b, c, d):
            close_ws(ws)


@pytest.mark.parametrize("query", [
    "room=", "room", "room=a%20b", "room=a.b", "room=" + "r" * 65, "room=%C3%A9",
    "room=ok&name=", "room=ok&name=x/y",
])
def test_mws_1800_05_bad_room_refused(henv, query):
    resp = henv.upgrade("/chat?" + query)
    assert resp.status == 400, resp
    assert resp.header("Sec-WebSocket-Accept") is None


def test_mws_1800_06_longest_room_accepted(henv):
    name = "R-_9" * 16
    a, wa = chat_join(henv, "/chat?room=" + name)
    try:
        assert wa["room"] == name and len(name) == 64
    finally:
        close_ws(a)


def test_mws_1800_07_binary_relayed_unchanged(henv):
    a, wa = chat_join(henv, "/chat?room=r07")
    b, wb = chat_join(henv, "/chat?room=r07")
    try:
        recv_json(a)  # b's join
        blob = bytes(range(256)) * 4
        a.send_message(OP_BINARY, blob)
        assert a.recv_message() == (OP_BINARY, blob)
        assert b.recv_message() == (OP_BINARY, blob)
    finally:
        close_ws(a)
        close_ws(b)


def test_mws_1800_08_binary_refused_by_option(henv):
    a, wa = chat_join(henv, "/chat-nobin?room=r08")
    try:
        assert "text" not in wa  # no welcome option in this location
        a.send_message(OP_BINARY, b"\x00\x01")
        a.expect_close(1003)
    finally:
        a.close()


def test_mws_1800_09_too_long_message_is_an_error_to_the_sender(henv):
    a, wa = chat_join(henv, "/chat?room=r09")
    try:
        a.send_message(OP_TEXT, "x" * (200 * 1024))
        m = recv_json(a, 10)
        assert m["type"] == "error", m
        a.send_message(OP_TEXT, "still here")
        assert recv_json(a)["text"] == "still here"
    finally:
        close_ws(a)


def _connect_many(env, path, n, timeout=30):
    """Open n clients at once (so that they spread over the children);
    returns [(ws, first JSON message)].  path: one for all, or path(i)."""
    out = [None] * n
    errs = []

    def one(i):
        try:
            ws = wsclient.WsClient.connect(env.host, env.http_port,
                                           path(i) if callable(path) else path,
                                           timeout=timeout)
            out[i] = (ws, recv_json(ws, timeout))
        except Exception as e:  # reported below
            errs.append(e)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errs:
        for o in out:
            if o:
                o[0].close()
        raise errs[0]
    return out


def test_mws_1800_10_every_child_gets_every_message(henv):
    n = 12
    clients = _connect_many(henv, "/chat?room=many", n)
    try:
        pids = {w["user"].split("-")[0] for _, w in clients}
        if henv.mpm == "prefork":
            # one connection per process: the room spans many children
            assert len(pids) == n, pids
        # every client is subscribed once its handshake is done
        for i, (ws, w) in enumerate(clients):
            ws.send_message(OP_TEXT, "m%d" % i)
        want = {"m%d" % i for i in range(n)}
        for ws, w in clients:
            got = set()
            deadline = time.monotonic() + 15
            while got != want:
                m = recv_json(ws, max(0.1, deadline - time.monotonic()))
                if m["type"] == "message":
                    assert m["text"] not in got, "duplicate %r" % m
                    got.add(m["text"])
            # senders: the message's from is the id of its sender
        senders = {}
        for ws, w in clients:
            senders[w["user"]] = True
        assert len(senders) == n
    finally:
        for ws, _ in clients:
            ws.close()


def _paused_chat_join(env, path, rcvbuf, tls):
    """chat_join with a small receive buffer: the server's socket to this
    client fills up as soon as it stops reading."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(10)
    port = env.https_port if tls else env.http_port
    s.connect((env.host, port))
    if tls:
        s = env.client_ssl_ctx().wrap_socket(s, server_hostname="localhost")
    ws = wsclient.WsClient.connect(env.host, port, path, conn=wsclient.Conn(s, 10))
    w = recv_json(ws)
    assert w["type"] == "welcome", w
    return ws, w


class _Reader(threading.Thread):
    """Reads chat messages as they come; records the texts and how late
    each one arrived after it was sent (sent times by text)."""

    def __init__(self, ws, sent, count):
        super().__init__(daemon=True)
        self.ws, self.sent, self.count = ws, sent, count
        self.texts, self.worst, self.error = [], 0.0, None

    def run(self):
        try:
            deadline = time.monotonic() + 60
            while len(self.texts) < self.count:
                m = recv_json(self.ws, max(0.1, deadline - time.monotonic()))
                if m["type"] != "message":
                    continue
                self.texts.append(m["text"])
                key = m["text"][:12]
                if key in self.sent:
                    self.worst = max(self.worst, time.monotonic() - self.sent[key])
        except Exception as e:  # reported by the test
            self.error = e


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_mws_1800_11_broadcast_waits_for_no_paused_reader(henv, tls):
    """A room member that stops reading while 10 MB are broadcast (more
    than the sockets buffer) neither slows the other members nor loses
    anything: it gets every message, in order, once it reads again (over
    TLS too, where mod_ssl sits between us and the socket)."""
    room = "/chat-big?room=paused"
    n_msgs, size = 200, 50000
    sent = {}
    # the paused member joins after the others: a room's newest members
    # are served first, so a push that waited for it would hold up the
    # members served after it
    others = [chat_join(henv, room)[0] for _ in range(16)]
    paused, _ = _paused_chat_join(henv, room, 16384, tls)
    pub, _ = chat_join(henv, room)
    readers = [_Reader(ws, sent, n_msgs) for ws in others + [pub]]
    for r in readers:
        r.start()
    try:
        time.sleep(0.5)  # the join notices have gone out
        t0 = time.monotonic()
        for i in range(n_msgs):
            text = "msg %07d " % i
            sent[text[:12]] = time.monotonic()
            pub.send_message(OP_TEXT, text + "x" * (size - len(text)))
        for r in readers:
            r.join(60)
        spent = time.monotonic() - t0
        for r in readers:
            assert r.error is None, r.error
            assert r.texts == [("msg %07d " % i) + "x" * (size - 12) for i in range(n_msgs)]
        # nobody waited for the paused member (10 MB take well under a
        # second here; a worker stuck on its socket would take Timeout)
        worst = max(r.worst for r in readers)
        assert worst < 5.0, "a reading member got a message %.1fs late" % worst
        assert spent < 20, spent
        # the paused member reads now: everything, in order, no close
        got = []
        deadline = time.monotonic() + 30
        while len(got) < n_msgs:
            m = recv_json(paused, max(0.1, deadline - time.monotonic()))
            if m["type"] == "message":
                got.append(m["text"][:12])
        assert got == [("msg %07d " % i)[:12] for i in range(n_msgs)]
    finally:
        for ws in others + [pub, paused]:
            ws.close()


def test_mws_1800_12_readers_answer_keepalive_pings(henv):
    """The server pings a quiet member (every Timeout/2 by default, here
    every 50 ms): the test readers answer and go on reading, as a client
    must (test 11 once failed on a slow machine with "unexpected control
    frame op=0x9" from its readers)."""
    a, _ = chat_join(henv, "/chat-ping?room=pings")
    b, wb = chat_join(henv, "/chat-ping?room=pings")
    try:
        j, _ = recv_until(a, lambda m: m["type"] == "join")
        assert j["user"] == wb["user"], j
        time.sleep(0.3)                 # pings queue up before the message
        b.send_message(OP_TEXT, "after the pings")
        time.sleep(0.3)                 # and behind it
        m, _ = recv_until(a, lambda m: m["type"] == "message")
        assert m["text"] == "after the pings", m
        m, _ = recv_until(b, lambda m: m["type"] == "message")
        assert m["text"] == "after the pings", m
        # the pongs went out between whole frames: the connections are fine
        a.send_message(OP_TEXT, "still here")
        m, _ = recv_until(b, lambda m: m["type"] == "message")
        assert m["text"] == "still here", m
        m, _ = recv_until(a, lambda m: m["type"] == "message")
        assert m["text"] == "still here", m
        expect_silence(a, 0.3)          # pings only, answered
        assert a.pings_answered >= 5 and b.pings_answered >= 5, \
            (a.pings_answered, b.pings_answered)
    finally:
        close_ws(a)
        close_ws(b)


# ---- increment ----------------------------------------------------------------

def inc_connect(env, path="/increment", protocols=PROTO):
    hdrs = [("Sec-WebSocket-Protocol", protocols)] if protocols else []
    return wsclient.WsClient.connect(env.host, env.http_port, path, headers=hdrs)


def recv_counter(ws, timeout=5.0):
    op, payload = ws.recv_message(timeout)
    assert op == OP_TEXT, (op, payload)
    return int(payload.decode("ascii"))


def test_mws_1800_20_increment_counts_every_50ms(henv):
    ws = inc_connect(henv)
    try:
        assert ws.response.header("Sec-WebSocket-Protocol") == PROTO
        assert recv_counter(ws) == 0
        t0 = time.monotonic()
        got = [recv_counter(ws) for _ in range(20)]
        elapsed = time.monotonic() - t0
        assert got == list(range(1, 21)), got
        # 20 ticks of 50 ms: about 1 s
        assert 0.7 < elapsed < 3.0, elapsed
    finally:
        close_ws(ws)


def test_mws_1800_21_increment_subprotocol_choice(henv):
    # ours among others: ours is chosen
    ws = inc_connect(henv, protocols="chat, %s, other" % PROTO)
    try:
        assert ws.response.header_all("Sec-WebSocket-Protocol") == [PROTO]
        assert recv_counter(ws) == 0
    finally:
        close_ws(ws)
    # none offered: served without a subprotocol
    ws = inc_connect(henv, protocols=None)
    try:
        assert ws.response.header("Sec-WebSocket-Protocol") is None
        assert recv_counter(ws) == 0
        assert recv_counter(ws) == 1
    finally:
        close_ws(ws)


@pytest.mark.parametrize("offer", ["chat", "chat, superchat", "dumb-increment"])
def test_mws_1800_22_increment_refuses_other_subprotocols(henv, offer):
    resp = henv.upgrade("/increment", extra=[("Sec-WebSocket-Protocol", offer)])
    assert resp.status == 400, resp
    assert resp.header("Sec-WebSocket-Protocol") is None
    assert resp.header("Sec-WebSocket-Accept") is None


@pytest.mark.parametrize("cmd", ["reset\n", "reset"])
def test_mws_1800_23_increment_reset(henv, cmd):
    ws = inc_connect(henv)
    other = inc_connect(henv)
    try:
        while recv_counter(ws) < 10:
            pass
        ws.send_message(OP_TEXT, cmd)
        # counters in flight may still arrive, then it starts again at 0
        deadline = time.monotonic() + 2
        while recv_counter(ws) != 0:
            assert time.monotonic() < deadline, "no reset"
        assert [recv_counter(ws) for _ in range(3)] == [1, 2, 3]
        # other commands are ignored
        ws.send_message(OP_TEXT, "reset please")
        ws.send_message(OP_BINARY, b"reset\n")
        v = recv_counter(ws)
        assert [recv_counter(ws) for _ in range(5)] == list(range(v + 1, v + 6))
        # the other connection kept counting
        while True:
            v = recv_counter(other)
            if v >= 20:
                break
        assert v >= 20
    finally:
        close_ws(ws)
        close_ws(other)


def test_mws_1800_24_increment_interval_option(henv):
    ws = inc_connect(henv, "/increment-slow")
    try:
        assert recv_counter(ws) == 0
        t0 = time.monotonic()
        assert [recv_counter(ws) for _ in range(3)] == [1, 2, 3]
        elapsed = time.monotonic() - t0
        assert 0.45 < elapsed < 2.0, elapsed  # 3 x 200 ms
    finally:
        close_ws(ws)


def test_mws_1800_25_increment_many_connections_close_cleanly(henv):
    conns = [inc_connect(henv) for _ in range(8)]
    try:
        for ws in conns:
            assert recv_counter(ws) == 0
    finally:
        for ws in conns:
            close_ws(ws)
    # each of them ended with on_close: the access log has the 101s
    lines = henv.wait_access_lines("GET /increment HTTP/1.1\" 101", count=8)
    assert len(lines) >= 8

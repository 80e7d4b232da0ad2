"""The chat handler's `WebSocketHandlerOption presence off` (handlers/chat.c):
no join or leave notices (a broadcast-only room: N clients joining would
otherwise cost N x N / 2 deliveries, which is what the benchmark's 10,000
receivers hit), messages still reach the whole room; `presence on` is the
default; any other value fails the handler's init (500, an error logged)."""
import os

import pytest

import conftest
from wsclient import OP_TEXT
from test_1800_handlers import MOD_CHAT, close_ws, recv_json


LOCATIONS = """
<Location /chat-quiet>
    SetHandler websocket
    WebSocketHandler {chat}
    WebSocketHandlerOption presence off
</Location>
<Location /chat-loud>
    SetHandler websocket
    WebSocketHandler {chat}
    WebSocketHandlerOption presence on
</Location>
"""
BAD_LOCATION = """
<Location /chat-badpresence>
    SetHandler websocket
    WebSocketHandler {chat}
    WebSocketHandlerOption presence maybe
</Location>
"""


def locations(env, extra=""):
    base = conftest.WS_LOCATIONS.format(echo=conftest.MOD_ECHO, small=conftest.SMALL_LIMIT,
                                        htpasswd=env.htpasswd)
    return base + (LOCATIONS + extra).format(chat=MOD_CHAT)


@pytest.fixture(scope="module")
def penv(env):
    if not os.path.exists(MOD_CHAT):
        pytest.fail("handler not built: %s" % MOD_CHAT, pytrace=False)
    env.restart(locations=locations(env))
    yield env
    env.restart()


def test_mws_1600_01_quiet_room_has_no_join_or_leave(penv):
    a = penv.ws("/chat-quiet?room=q1")
    b = c = None
    try:
        wa = recv_json(a)
        assert wa["type"] == "welcome", wa
        b = penv.ws("/chat-quiet?room=q1&name=bob")
        wb = recv_json(b)
        assert wb["type"] == "welcome", wb
        c = penv.ws("/chat-quiet?room=q1")
        assert recv_json(c)["type"] == "welcome"
        close_ws(c)
        c = None
        # the next thing a and b get is a's message: no join of b (nor of
        # a itself), no join or leave of c
        a.send_message(OP_TEXT, "one")
        for ws in (a, b):
            m = recv_json(ws)
            assert (m["type"], m["from"], m["text"]) == ("message", wa["user"], "one"), m
        close_ws(b)
        b = None
        a.send_message(OP_TEXT, "two")
        m = recv_json(a)
        assert (m["type"], m["text"]) == ("message", "two"), m  # no leave of b
    finally:
        for ws in (a, b, c):
            if ws:
                close_ws(ws)


def test_mws_1600_02_presence_on_sends_notices(penv):
    a = penv.ws("/chat-loud?room=q2")
    b = None
    try:
        wa = recv_json(a)
        assert recv_json(a) == {"type": "join", "user": wa["user"], "room": "q2"}
        b = penv.ws("/chat-loud?room=q2")
        wb = recv_json(b)
        assert recv_json(a) == {"type": "join", "user": wb["user"], "room": "q2"}
        close_ws(b)
        b = None
        assert recv_json(a) == {"type": "leave", "user": wb["user"], "room": "q2"}
    finally:
        close_ws(a)
        if b:
            close_ws(b)


def test_mws_1600_03_bad_presence_value_refused(penv):
    # each child's init of that line fails (logged), the location answers
    # 500, the others still serve
    penv.allow_error(r"MWS00012: chat \(.*\): WebSocketHandlerOption presence 'maybe': on or off")
    penv.allow_error(r"MWS00005: handler chat \(.*\): init failed")
    penv.allow_error(r"MWS00003: handler chat \(.*\) failed to initialise in this process")
    penv.restart(locations=locations(penv, BAD_LOCATION))
    try:
        r = penv.upgrade("/chat-badpresence?room=q3")
        assert r.status == 500, r
        ws = penv.ws("/chat-quiet?room=q3")
        assert recv_json(ws)["type"] == "welcome"
        close_ws(ws)
    finally:
        penv.restart(locations=locations(penv))

"""A connection's memory in two pieces (glue/mws_private.h): the small
malloc'd handle handlers hold (struct mws_conn) and the rest in the
connection's pool (struct mws_conn_body).  What that must not change:

- a refused handshake leaves its body for the next upgrade on the same
  keep-alive connection, with nothing of the refused one in it (its
  greeting, its timer);
- handler options are the configuration's lines, looked up as a table
  would (the last line of a key wins, keys are not case-sensitive, none
  when the location has none);
- a handle used after its connection's pool is gone answers "closed"
  (test_1000_38 checks every host function on it; here a late timer
  cancel and unsubscribe from the handler's own thread while many
  connections come and go).
"""
import time

import pytest

import wsclient
from apiutil import (OP_TEXT, TEST_SO, Events, api_locations, cmd, events_path, ident,
                     prepare_events, recv_text, require_test_handlers)

MORE = """
<Location /tcase>
    SetHandler websocket
    WebSocketHandler {so}
    WebSocketHandlerOption LogFile {log}
    WebSocketHandlerOption Color red
    WebSocketHandlerOption size 1
    WebSocketHandlerOption COLOR green
</Location>
<Location /tnone>
    SetHandler websocket
    WebSocketHandler {so}
</Location>
"""


@pytest.fixture(scope="module")
def api(env):
    require_test_handlers()
    prepare_events(env)
    more = MORE.format(so=TEST_SO, log=events_path(env))
    env.restart(locations=api_locations(env, more))
    yield Events(events_path(env))
    env.restart()


def close_clean(ws, code=1000):
    assert ws.send_close(code, b"bye")
    ws.expect_close("any", allow_frames=True, reply=False)
    ws.close()


def test_mws_1610_01_refused_then_open_on_one_connection(env, api):
    """20 refused upgrades, each queueing a greeting and adding a timer in
    on_open, then one accepted upgrade, all on one TCP connection: the
    accepted one gets exactly its own greeting and timer, and works."""
    start = api.mark()
    conn = wsclient.Conn.open(env.host, env.http_port)
    try:
        for i in range(20):
            conn.send(wsclient.build_request(
                "GET", "/t?greet=refused%d&opentimer=5&refuse=403" % i,
                host="localhost", headers=wsclient.upgrade_headers()))
            resp = conn.read_response()
            assert resp.status == 403, resp
            assert (resp.header("Connection") or "").lower() != "close", resp
        ws = wsclient.WsClient.connect(env.host, env.http_port,
                                       "/t?greet=hello&opentimer=30", conn=conn)
    except Exception:
        conn.close()
        raise
    try:
        assert recv_text(ws) == "hello"
        assert recv_text(ws) == "opentimer fired"
        assert cmd(ws, "option color") == "option color red"
        assert cmd(ws, "echo-check") == "echo-check"
        key = ident(ws)
        # nothing of the refused ones comes late (their timers were 5 ms)
        time.sleep(0.1)
        assert cmd(ws, "id").startswith("id ")
        close_clean(ws)
    finally:
        ws.close()
    assert len(api.wait_close(key)) == 1
    refusals = api.of("refuse", since=start)
    assert len(refusals) == 20, refusals
    assert len(api.of("open", since=start)) == 1, api.all(since=start)


def test_mws_1610_02_options_last_line_wins_any_case(env, api):
    ws = env.ws("/tcase")
    try:
        assert cmd(ws, "option color") == "option color green"
        assert cmd(ws, "option CoLoR") == "option CoLoR green"
        assert cmd(ws, "option SIZE") == "option SIZE 1"
        assert cmd(ws, "option nosuch") == "option nosuch (none)"
        close_clean(ws)
    finally:
        ws.close()


def test_mws_1610_03_no_options(env, api):
    ws = env.ws("/tnone")
    try:
        assert cmd(ws, "option color") == "option color (none)"
        assert cmd(ws, "option LogFile") == "option LogFile (none)"
        close_clean(ws)
    finally:
        ws.close()


@pytest.mark.parametrize("how", ["client", "abrupt"])
def test_mws_1610_04_late_calls_while_others_come_and_go(env, api, how):
    """The handler's thread calls into a closed connection while other
    connections open and close, so that the dead one's pool is recycled
    for theirs: every call still answers from the handle."""
    ws = env.ws("/t")
    key = ident(ws)
    try:
        assert ws.send_message(OP_TEXT, "sendafterclose")
        assert recv_text(ws) == "tick"
        if how == "client":
            assert ws.send_close(1000)
            ws.expect_close(1000, allow_frames=True, reply=False)
        else:
            ws.conn.sock.close()
    finally:
        ws.close()
    assert len(api.wait_close(key)) == 1
    # new connections take the freed pools while the thread keeps calling
    for _ in range(10):
        other = env.ws("/t?greet=x")
        try:
            assert recv_text(other) == "x"
            close_clean(other)
        finally:
            other.close()
    verdict = api.wait("afterclose", key, timeout=15)
    assert len(verdict) == 1, api.all()
    assert verdict[0].words[0] == "ok", verdict

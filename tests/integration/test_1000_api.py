"""The handler API v1.0 (include/mod_websocket.h) against a real server,
through the test-only handler tests/handlers/testhandler.c: every callback
and the guarantees the header makes about them.

Per-connection facts come from the handler's LogFile (one line per event,
see apiutil.Events), so that "exactly once" holds across child processes.
"""
import json
import os
import socket
import struct
import time

import pytest

import wsclient
from apiutil import (OP_BINARY, OP_TEXT, Events, api_locations, check_numbered, cmd,
                     events_path, fnv1a, ident, numbered_msg, prepare_events, recv_text,
                     require_test_handlers)
from wsclient import OP_CLOSE, OP_CONT, OP_PING, build_frame


@pytest.fixture(scope="module")
def api(env):
    require_test_handlers()
    prepare_events(env)
    env.restart(locations=api_locations(env))
    yield Events(events_path(env))
    env.restart()


@pytest.fixture(autouse=True)
def _no_violations(api):
    """No callback after on_close, no second on_close, no two callbacks of
    one connection at once -- in whatever the test did."""
    start = api.mark()
    yield
    bad = api.violations(since=start)
    assert not bad, "handler API guarantees violated: %r" % bad


def close_clean(ws, code=1000, reason=b"bye"):
    """Client-initiated close handshake; returns the code the server echoed."""
    assert ws.send_close(code, reason)
    got, _ = ws.expect_close("any", allow_frames=True, reply=False)
    ws.close()
    return got


# ---- on_open: refusal --------------------------------------------------------

@pytest.mark.parametrize("status", [400, 403, 404, 429, 503, 510])
def test_mws_1000_01_refuse_status_and_header(env, api, status):
    r = env.upgrade("/t?refuse=%d" % status)
    assert r.status == status, r
    assert r.header("X-Mws-Test") == "refused", r
    assert r.header("Sec-WebSocket-Accept") is None, r
    refusals = api.wait("refuse", count=1)
    assert len(refusals) == 1 and refusals[0].get("status") == str(status), refusals
    key = refusals[0].key
    time.sleep(0.3)
    assert api.of("open", key) == [] and api.of("close", key) == [], \
        "on_close must not be called for a refused connection: %r" % api.all()


def test_mws_1000_02_refuse_drops_queued_messages_and_timers(env, api):
    # on_open queued a message and a timer before it refused
    r = env.upgrade("/t?greet=hello-refused&opentimer=1&refuse=403")
    assert r.status == 403, r
    assert b"hello-refused" not in r.body
    key = api.wait("refuse")[0].key
    time.sleep(0.3)
    assert api.of("close", key) == []
    assert api.violations() == []


@pytest.mark.allow_errors(r"MWS00004")
@pytest.mark.parametrize("status", [200, 302, 399, 600, -1])
def test_mws_1000_03_refuse_with_invalid_status(env, api, status):
    """on_open may return 0 or 400-599; anything else is the handler's bug
    and becomes 500 (never a 101, never a redirect)."""
    r = env.upgrade("/t?refuse=%d" % status)
    assert r.status == 500, r
    key = api.wait("refuse")[0].key
    time.sleep(0.2)
    assert api.of("close", key) == []


def test_mws_1000_04_on_open_header_in_101(env, api):
    ws = env.ws("/t")
    try:
        assert ws.response.header("X-Mws-Test") == "accepted", ws.response
    finally:
        ws.close()


# ---- on_open: what it may do ---------------------------------------------------

def test_mws_1000_05_on_open_queues_a_message(env, api):
    ws = env.ws("/t?greet=hello%20there")
    try:
        assert recv_text(ws) == "hello there"
        assert cmd(ws, "path") == "path /t"
    finally:
        close_clean(ws)


def test_mws_1000_06_on_open_adds_a_timer(env, api):
    ws = env.ws("/t?opentimer=10")
    try:
        assert recv_text(ws) == "opentimer fired"
    finally:
        close_clean(ws)


def test_mws_1000_07_close_from_on_open(env, api):
    ws = env.ws("/t?greet=first&close=4002")
    key = None
    try:
        # the queued message, then the close, right after the 101
        assert recv_text(ws) == "first"
        got, reason = ws.expect_close(4002)
    finally:
        ws.close()
    opens = api.wait("open")
    assert len(opens) == 1
    key = opens[0].key
    closes = api.wait_close(key)
    assert [e.code for e in closes] == [4002], closes


def test_mws_1000_08_request_accessors(env, api):
    hdrs = [("X-Test", "value-1"), ("Origin", env.http_url)]
    ws = env.ws("/t/inner?a=1&b=%20x&hdr=x-tEsT,X-Missing", headers=hdrs)
    try:
        assert cmd(ws, "path") == "path /t/inner"
        assert cmd(ws, "query") == "query a=1&b=%20x&hdr=x-tEsT,X-Missing"
        assert cmd(ws, "ip") == "ip 127.0.0.1"
        assert cmd(ws, "user") == "user (none)"
        assert cmd(ws, "header X-Test") == "header X-Test value-1"
        # looked up with another case than the client sent it
        assert cmd(ws, "header x-tEsT") == "header x-tEsT value-1"
        assert cmd(ws, "header X-Missing") == "header X-Missing (none)"
        assert cmd(ws, "header Origin") == "header Origin " + env.http_url
        assert cmd(ws, "header Host").startswith("header Host 127.0.0.1:")
        assert cmd(ws, "offered") == "offered (none)"
    finally:
        close_clean(ws)


def test_mws_1000_09_request_no_query(env, api):
    ws = env.ws("/t")
    try:
        assert cmd(ws, "query") == "query (none)"
    finally:
        close_clean(ws)


def test_mws_1000_10_request_user(env, api):
    import base64
    from conftest import AUTH_PASS, AUTH_USER
    auth = base64.b64encode(("%s:%s" % (AUTH_USER, AUTH_PASS)).encode()).decode()
    ws = env.ws("/tauth", headers=[("Authorization", "Basic " + auth)])
    try:
        assert cmd(ws, "user") == "user %s" % AUTH_USER
    finally:
        close_clean(ws)
    r = env.upgrade("/tauth")
    assert r.status == 401, r


# ---- subprotocols -------------------------------------------------------------

def proto_ws(env, query, offer_lines):
    hdrs = [("Sec-WebSocket-Protocol", v) for v in offer_lines]
    return env.ws("/t?" + query, headers=hdrs)


def test_mws_1000_11_subprotocol_chosen(env, api):
    ws = proto_ws(env, "proto=b", ["a, b"])
    try:
        assert ws.response.header_all("Sec-WebSocket-Protocol") == ["b"], ws.response
        assert recv_text(ws) == "proto b 0"
        assert cmd(ws, "subprotocol") == "subprotocol b"
        assert cmd(ws, "offered") == "offered a,b"
    finally:
        close_clean(ws)


def test_mws_1000_12_subprotocol_not_offered_is_refused(env, api):
    ws = proto_ws(env, "proto=c", ["a, b"])
    try:
        assert ws.response.header("Sec-WebSocket-Protocol") is None, ws.response
        assert recv_text(ws) == "proto c -2"      # MWS_ERR_INVALID
        assert cmd(ws, "subprotocol") == "subprotocol (none)"
    finally:
        close_clean(ws)


def test_mws_1000_13_subprotocol_none_offered(env, api):
    ws = env.ws("/t?proto=a")
    try:
        assert ws.response.header("Sec-WebSocket-Protocol") is None, ws.response
        assert recv_text(ws) == "proto a -2"
    finally:
        close_clean(ws)


def test_mws_1000_14_subprotocol_failed_choice_keeps_nothing(env, api):
    # a failed choice after a good one must not change the good one, and a
    # good one after a failed one wins
    ws = proto_ws(env, "proto=x&proto=c&proto=zz", ["a", "b, c"])
    try:
        assert ws.response.header_all("Sec-WebSocket-Protocol") == ["c"], ws.response
        assert [recv_text(ws) for _ in range(3)] == ["proto x -2", "proto c 0", "proto zz -2"]
        assert cmd(ws, "offered") == "offered a,b,c"
        assert cmd(ws, "subprotocol") == "subprotocol c"
    finally:
        close_clean(ws)


def test_mws_1000_15_subprotocol_case_sensitive(env, api):
    # subprotocol tokens compare case-sensitively (RFC 6455 4.1, 11.5)
    ws = proto_ws(env, "proto=CHAT", ["chat"])
    try:
        assert ws.response.header("Sec-WebSocket-Protocol") is None, ws.response
        assert recv_text(ws) == "proto CHAT -2"
    finally:
        close_clean(ws)


def test_mws_1000_15b_subprotocol_outlives_the_request(env, api):
    """host->subprotocol() stays valid for the connection's life, after the
    upgrade request (and its pool) are gone."""
    conns = [proto_ws(env, "proto=chat.v2", ["chat.v1, chat.v2"]) for _ in range(4)]
    try:
        for ws in conns:
            assert recv_text(ws) == "proto chat.v2 0"
        for ws in conns:
            assert ws.echo(OP_BINARY, os.urandom(100000), timeout=10)[0] == OP_BINARY
            assert cmd(ws, "subprotocol") == "subprotocol chat.v2"
    finally:
        for ws in conns:
            close_clean(ws)


# ---- messages and commands ------------------------------------------------------

def test_mws_1000_16_echo(env, api):
    ws = env.ws("/t")
    try:
        assert ws.echo(OP_TEXT, "not a command") == (OP_TEXT, b"not a command")
        assert ws.echo(OP_BINARY, b"id") == (OP_BINARY, b"id")
        assert ws.echo(OP_TEXT, "") == (OP_TEXT, b"")
        big = os.urandom(200000)
        assert ws.echo(OP_BINARY, big, fragments=4, timeout=20) == (OP_BINARY, big)
    finally:
        close_clean(ws)


def test_mws_1000_17_ids_unique(env, api):
    seen = set()
    for _ in range(8):
        ws = env.ws("/t")
        try:
            k = ident(ws)
            assert k[1] != 0
            assert k not in seen
            seen.add(k)
        finally:
            close_clean(ws)


def test_mws_1000_18_ping_from_handler(env, api):
    ws = env.ws("/t")
    try:
        assert ws.send_message(OP_TEXT, "ping")
        f = ws.recv_frame()
        assert f.opcode == OP_PING and f.payload == b"pppp", f
        assert ws.send_message(OP_TEXT, "ping 125")
        f = ws.recv_frame()
        assert f.opcode == OP_PING and f.payload == b"p" * 125, f
        assert cmd(ws, "ping 126") == "ping-rv -2"
        assert cmd(ws, "id").startswith("id ")
    finally:
        close_clean(ws)


def test_mws_1000_19_queued(env, api):
    ws = env.ws("/t")
    try:
        n = 1000000
        assert ws.send_message(OP_TEXT, "queued %d" % n)
        op, blob = ws.recv_message(timeout=20)
        assert op == OP_BINARY and len(blob) == n
        q = recv_text(ws).split()
        # nothing was written while on_message ran
        assert q[0] == "queued" and int(q[1]) >= n, q
        assert cmd(ws, "queued") in ("queued 0",)
    finally:
        close_clean(ws)


def test_mws_1000_20_invalid_calls(env, api):
    ws = env.ws("/t")
    try:
        assert ws.send_message(OP_TEXT, "badcalls")
        f = ws.recv_frame()              # the valid 125-byte ping
        assert f.opcode == OP_PING and len(f.payload) == 125, f
        r = json.loads(recv_text(ws))
        invalid = ["send_type", "send_null", "send_part_type", "ping_126", "close_999",
                   "close_1004", "close_1005", "close_1006", "close_1015", "close_2999",
                   "close_5000", "close_long_reason", "close_bad_utf8"]
        assert {k: r[k] for k in invalid} == {k: -2 for k in invalid}, r
        assert r["ping_125"] == 0, r
        assert r["cancel_unknown"] == -6, r
        assert r["cancel_null"] in (-2, -6), r
        assert r["option_unset"] == 0 and r["timer_null_fn"] == 0, r
        # none of the invalid closes closed anything
        assert ws.echo(OP_TEXT, "still open") == (OP_TEXT, b"still open")
    finally:
        close_clean(ws)


# ---- on_close exactly once ----------------------------------------------------------

def test_mws_1000_21_close_by_client(env, api):
    ws = env.ws("/t")
    key = ident(ws)
    assert close_clean(ws, 1000, b"bye") == 1000
    closes = api.wait_close(key)
    assert len(closes) == 1, closes
    assert closes[0].code == 1000 and closes[0].reason == b"bye", closes


def test_mws_1000_22_close_by_client_without_code(env, api):
    ws = env.ws("/t")
    key = ident(ws)
    assert ws.send_close()
    ws.expect_close("any", reply=False)
    ws.close()
    closes = api.wait_close(key)
    assert [e.code for e in closes] == [1005], closes


def test_mws_1000_23_close_by_client_utf8_reason(env, api):
    ws = env.ws("/t")
    key = ident(ws)
    reason = "d\u00e9j\u00e0 \u20ac".encode("utf-8")
    assert close_clean(ws, 4999, reason) == 4999
    closes = api.wait_close(key)
    assert len(closes) == 1 and closes[0].code == 4999 and closes[0].reason == reason, closes


def test_mws_1000_24_close_by_handler(env, api):
    ws = env.ws("/t")
    key = ident(ws)
    try:
        assert ws.send_message(OP_TEXT, "close 4001 bye")
        got, reason = ws.expect_close(4001)
        assert reason == b"bye"
    finally:
        ws.close()
    closes = api.wait_close(key)
    assert [e.code for e in closes] == [4001], closes


def test_mws_1000_25_close_twice_then_send(env, api):
    ws = env.ws("/t")
    key = ident(ws)
    try:
        assert ws.send_message(OP_TEXT, "close2 4003")
        got, reason = ws.expect_close(4003)
        assert reason == b"first"
    finally:
        ws.close()
    notes = api.wait("note", key)
    # the second close and the send after it: MWS_ERR_CLOSED
    assert notes and notes[0].words == ["close2", "0", "-1", "-1"], notes
    assert [e.code for e in api.wait_close(key)] == [4003]


def test_mws_1000_26_abrupt_disconnect(env, api):
    ws = env.ws("/t")
    key = ident(ws)
    ws.conn.sock.shutdown(socket.SHUT_RDWR)
    ws.close()
    closes = api.wait_close(key)
    assert [e.code for e in closes] == [1006], closes


def test_mws_1000_27_abrupt_disconnect_mid_frame(env, api):
    ws = env.ws("/t")
    key = ident(ws)
    data = build_frame(OP_BINARY, b"x" * 1000)
    ws.send_raw(data[:500])
    time.sleep(0.05)
    ws.close()
    closes = api.wait_close(key)
    assert [e.code for e in closes] == [1006], closes


def test_mws_1000_28_protocol_error_unmasked(env, api):
    ws = env.ws("/t")
    key = ident(ws)
    try:
        ws.send_frame(OP_TEXT, b"unmasked", masked=False)
        ws.expect_close(1002, reply=False)
    finally:
        ws.close()
    closes = api.wait_close(key)
    assert [e.code for e in closes] == [1002], closes


def test_mws_1000_29_invalid_utf8(env, api):
    ws = env.ws("/t")
    key = ident(ws)
    try:
        ws.send_frame(OP_TEXT, b"ok \xc3\x28")
        ws.expect_close(1007, reply=False)
    finally:
        ws.close()
    assert [e.code for e in api.wait_close(key)] == [1007]


def test_mws_1000_30_too_big(env, api):
    ws = env.ws("/tsmall")
    key = ident(ws)
    try:
        ws.send_message(OP_BINARY, b"z" * 2000)
        ws.expect_close(1009, reply=False)
    finally:
        ws.close()
    assert [e.code for e in api.wait_close(key)] == [1009]


@pytest.mark.allow_errors(r"MWS00007")
def test_mws_1000_31_handler_failure_closes_1011(env, api):
    ws = env.ws("/t")
    key = ident(ws)
    try:
        assert ws.send_message(OP_TEXT, "fail")
        ws.expect_close(1011)
    finally:
        ws.close()
    assert [e.code for e in api.wait_close(key)] == [1011]


def test_mws_1000_32_close_races_messages(env, api):
    """Many messages queued behind a close from both sides: one on_close."""
    keys = []
    for i in range(10):
        ws = env.ws("/t")
        keys.append(ident(ws))
        burst = b"".join(build_frame(OP_TEXT, "m%d" % j) for j in range(200))
        ws.send_raw(burst + build_frame(OP_CLOSE, wsclient.close_payload(1000)) + burst)
        try:
            ws.read_until_close(timeout=10)
        finally:
            ws.close()
    for k in keys:
        closes = api.wait_close(k, settle=0.05)
        assert len(closes) == 1, (k, closes)


def test_mws_1000_33_stats(env, api):
    ws = env.ws("/t")
    try:
        s = json.loads(cmd(ws, "stats"))
        assert s["double_closes"] == 0 and s["overlaps"] == 0 and s["late"] == 0, s
        assert s["opens"] >= 1 and s["live"] >= 1, s
        assert s["opens"] == s["closes"] + s["live"], s
    finally:
        close_clean(ws)


# ---- sending from threads ---------------------------------------------------------

@pytest.mark.parametrize("nthreads,count", [(16, 500), (4, 2000)])
def test_mws_1000_34_threads_one_connection(env, api, nthreads, count):
    ws = env.ws("/t")
    try:
        assert ws.send_message(OP_TEXT, "threads %d %d" % (nthreads, count))
        msgs = [recv_text(ws, timeout=30) for _ in range(nthreads * count)]
        assert recv_text(ws, timeout=30) == "threads done 1 0"
        check_numbered(msgs, "t", nthreads, count)
    finally:
        close_clean(ws)


def test_mws_1000_35_threads_fanout(env, api):
    """16 threads send to every registered connection of the child at once."""
    k = 40
    conns = [env.ws("/t") for _ in range(12)]
    try:
        keys = [ident(ws) for ws in conns]
        cmdr = conns[0]
        pid = keys[0][0]
        peers = [ws for ws, kk in zip(conns, keys) if kk[0] == pid]
        assert cmdr.send_message(OP_TEXT, "fanout %d" % k)
        total = 0
        for ws in peers:
            msgs = [recv_text(ws, timeout=30) for _ in range(16 * k)]
            total += check_numbered(msgs, "f", 16, k)
        done = recv_text(cmdr, timeout=30).split()
        assert done[:2] == ["fanout", "done"] and done[3] == "0", done
        assert int(done[2]) >= len(peers), done
        # the others (other children) got nothing
        for ws, kk in zip(conns, keys):
            if kk[0] != pid:
                assert cmd(ws, "id").split()[1] == str(kk[0])
        # every byte of every message checked against what the threads sent
        assert total == len(peers) * sum(len(numbered_msg("f", t, j))
                                         for t in range(16) for j in range(k))
    finally:
        for ws in conns:
            close_clean(ws)


def test_mws_1000_36_partthreads(env, api):
    """Whole messages from other threads wait behind an open send_part
    message: no frame of another message inside the fragmented one."""
    n, m, parts = 8, 100, 60
    ws = env.ws("/t")
    try:
        assert ws.send_message(OP_TEXT, "partthreads %d %d %d" % (n, m, parts))
        msgs, big = [], None
        while True:
            t = recv_text(ws, timeout=30)       # raises on interleaving
            if t.startswith("partthreads done"):
                assert t == "partthreads done 1 0", t
                break
            if t.startswith("p0;"):
                assert big is None
                big = t
            else:
                msgs.append(t)
        assert big == "".join("p%d;" % i for i in range(parts))
        check_numbered(msgs, "t", n, m)
    finally:
        close_clean(ws)


def test_mws_1000_37_find(env, api):
    a = env.ws("/t")
    try:
        ka = ident(a)
        assert cmd(a, "find %d" % ka[1]) in ("found %d" % ka[1],)
        assert recv_text(a) == "find ok 0"
        b = env.ws("/t")
        kb = ident(b)
        close_clean(b)
        api.wait_close(kb, settle=0)
        if kb[0] == ka[0]:
            assert cmd(a, "find %d" % kb[1]) == "find none"
        assert cmd(a, "find 0") == "find none"
    finally:
        close_clean(a)


# ---- calls on a closed connection -----------------------------------------------------

@pytest.mark.parametrize("how", ["client", "server", "abrupt"])
def test_mws_1000_38_send_after_close(env, api, how):
    ws = env.ws("/t")
    key = ident(ws)
    try:
        assert ws.send_message(OP_TEXT, "sendafterclose")
        for _ in range(5):
            assert recv_text(ws) == "tick"
        if how == "client":
            assert ws.send_close(1000)
            ws.expect_close(1000, allow_frames=True, reply=False)
        elif how == "server":
            assert ws.send_message(OP_TEXT, "close 4004")
            ws.expect_close(4004, allow_frames=True)
        else:
            ws.conn.sock.shutdown(socket.SHUT_RDWR)
    finally:
        ws.close()
    assert len(api.wait_close(key)) == 1
    verdict = api.wait("afterclose", key, timeout=15)
    assert len(verdict) == 1, api.all()
    assert verdict[0].words[0] == "ok", verdict


# ---- timers ----------------------------------------------------------------------

def test_mws_1000_39_periodic_timer(env, api):
    ws = env.ws("/t")
    try:
        t0 = time.monotonic()
        assert ws.send_message(OP_TEXT, "timer 50 3")
        stamps = []
        for i in range(1, 4):
            assert recv_text(ws) == "timer %d" % i
            stamps.append(time.monotonic() - t0)
        # it cancels itself from its callback: OK, then NOTFOUND
        assert recv_text(ws) == "timer done 0 -6"
        assert stamps[0] >= 0.04 and stamps[2] >= 0.14, stamps
        time.sleep(0.25)
        assert cmd(ws, "id").startswith("id "), "the timer fired after its cancel"
    finally:
        close_clean(ws)


def test_mws_1000_40_oneshot_timer(env, api):
    ws = env.ws("/t")
    try:
        assert ws.send_message(OP_TEXT, "oneshot 10")
        assert recv_text(ws) == "oneshot fired"
        time.sleep(0.1)
        assert cmd(ws, "id").startswith("id ")
    finally:
        close_clean(ws)


def test_mws_1000_41_oneshot_cancelled(env, api):
    ws = env.ws("/t")
    try:
        assert cmd(ws, "oneshot 50 cancel") == "oneshot cancelled 0 -6"
        time.sleep(0.2)
        assert cmd(ws, "id").startswith("id ")
    finally:
        close_clean(ws)


@pytest.mark.parametrize("how", ["client", "abrupt", "server"])
def test_mws_1000_42_timers_end_before_on_close(env, api, how):
    ws = env.ws("/t")
    key = ident(ws)
    try:
        assert ws.send_message(OP_TEXT, "timerflood 1")
        for _ in range(20):
            assert recv_text(ws) == "tick"
        if how == "client":
            assert ws.send_close(1000)
            ws.expect_close(1000, allow_frames=True, reply=False)
        elif how == "server":
            assert ws.send_message(OP_TEXT, "close 1000")
            ws.expect_close(1000, allow_frames=True)
        else:
            ws.conn.sock.shutdown(socket.SHUT_RDWR)
    finally:
        ws.close()
    assert len(api.wait_close(key)) == 1
    time.sleep(0.2)
    assert api.violations() == []


def test_mws_1000_43_timer_never_overlaps_messages(env, api):
    ws = env.ws("/t")
    key = ident(ws)
    try:
        assert ws.send_message(OP_TEXT, "timerflood 1")
        for _ in range(3):
            assert ws.send_message(OP_TEXT, "sleep 100")
        got = []
        while len([t for t in got if t.startswith("slept")]) < 3:
            got.append(recv_text(ws, timeout=10))
        s = json.loads(cmd_skip_ticks(ws, "stats"))
        assert s["overlaps"] == 0, s
    finally:
        ws.close()
    api.wait_close(key)


def cmd_skip_ticks(ws, text):
    assert ws.send_message(OP_TEXT, text)
    while True:
        t = recv_text(ws, timeout=10)
        if t != "tick":
            return t


# ---- send_part ----------------------------------------------------------------------

def test_mws_1000_44_send_part_frames(env, api):
    ws = env.ws("/t")
    try:
        assert ws.send_message(OP_TEXT, "sendpart")
        frames = [ws.recv_frame() for _ in range(3)]
        assert [(f.opcode, f.fin, f.payload) for f in frames] == [
            (OP_TEXT, False, b"part1-"), (OP_CONT, False, b"part2-"), (OP_CONT, True, b"part3")]
    finally:
        close_clean(ws)


def test_mws_1000_45_send_part_utf8_split(env, api):
    ws = env.ws("/t")
    try:
        assert ws.send_message(OP_TEXT, "sendpart utf8")
        assert ws.recv_message() == (OP_TEXT, "a\u20acb".encode("utf-8"))
        assert len(ws.frames) == 3
    finally:
        close_clean(ws)


def test_mws_1000_46_send_part_empty(env, api):
    ws = env.ws("/t")
    try:
        assert ws.send_message(OP_TEXT, "sendpart empty")
        assert ws.recv_message() == (OP_BINARY, b"")
        assert len(ws.frames) == 3
    finally:
        close_clean(ws)


def test_mws_1000_47_send_part_holds_whole_messages(env, api):
    ws = env.ws("/t")
    try:
        assert ws.send_message(OP_TEXT, "sendpart mix")
        assert ws.recv_message() == (OP_TEXT, b"part1-part2-part3")
        assert recv_text(ws) == "whole"
        # the whole send succeeded (queued behind); another type failed
        assert recv_text(ws) == "sendpart mix 0 -2"
    finally:
        close_clean(ws)


# ---- streaming (on_fragment) ---------------------------------------------------------

def stream_report(ws, timeout=30):
    return json.loads(recv_text(ws, timeout))


def test_mws_1000_48_stream_piece_by_piece(env, api):
    """A 4 MiB frame reaches on_fragment in pieces, the first before the
    client has even sent the rest: the module does not buffer it whole."""
    n = 4 << 20
    payload = os.urandom(n)
    frame = build_frame(OP_BINARY, payload)
    ws = env.ws("/s")
    try:
        ws.send_raw(frame[:100000])
        assert recv_text(ws, timeout=10) == "begin 2"
        ws.send_raw(frame[100000:])
        r = stream_report(ws)
        assert r["bytes"] == n and r["fnv"] == fnv1a(payload), r
        assert r["pieces"] >= 2 and r["max_piece"] < n, r
        assert r["max_piece"] <= 1 << 20, r
        assert r["order_errors"] == 0, r
    finally:
        close_clean(ws)


def test_mws_1000_49_stream_fragments(env, api):
    payload = wsclient.utf8_text(30000, 3)
    ws = env.ws("/s")
    try:
        assert ws.send_message(OP_TEXT, payload, fragments=[1, 0, 7000, 3, 22996])
        assert recv_text(ws) == "begin 1"
        r = stream_report(ws)
        assert r["type"] == 1 and r["bytes"] == len(payload), r
        assert r["fnv"] == fnv1a(payload) and r["pieces"] >= 4, r
        # small single-frame messages: one piece each
        for i in range(3):
            assert ws.send_message(OP_BINARY, b"abc")
            assert recv_text(ws) == "begin 2"
            r = stream_report(ws)
            assert (r["pieces"], r["bytes"], r["order_errors"]) == (1, 3, 0), r
        assert cmd(ws, "path") == "path /s"
    finally:
        close_clean(ws)


def test_mws_1000_50_stream_empty_message(env, api):
    ws = env.ws("/s")
    try:
        assert ws.send_message(OP_BINARY, b"")
        assert recv_text(ws) == "begin 2"
        r = stream_report(ws)
        assert r["bytes"] == 0 and r["pieces"] == 1, r
    finally:
        close_clean(ws)


def test_mws_1000_51_stream_invalid_utf8(env, api):
    ws = env.ws("/s")
    key = ident(ws)
    try:
        ws.send_frame(OP_TEXT, b"abc\xe2\x82", fin=False)
        assert recv_text(ws) == "begin 1"
        ws.send_frame(OP_CONT, b"\x28 bad", fin=True)
        ws.expect_close(1007, allow_frames=True, reply=False)
    finally:
        ws.close()
    assert [e.code for e in api.wait_close(key)] == [1007]


def test_mws_1000_52_stream_relay(env, api):
    """on_fragment pieces relayed with send_part, text split anywhere."""
    payload = wsclient.utf8_text(300000, 5)
    ws = env.ws("/srelay")
    try:
        assert ws.send_message(OP_TEXT, payload, fragments=7)
        assert recv_text(ws) == "begin 1"
        assert ws.recv_message(timeout=30) == (OP_TEXT, payload)
        r = stream_report(ws)
        assert r["bytes"] == len(payload) and r["fnv"] == fnv1a(payload), r
    finally:
        close_clean(ws)


# ---- options ----------------------------------------------------------------------

@pytest.mark.parametrize("path,color,size,inner", [
    ("/t", "red", "1", "(none)"),
    ("/t/inner", "blue", "1", "yes"),
    ("/t/inner/deeper", "blue", "3", "yes"),
])
def test_mws_1000_53_options_merged(env, api, path, color, size, inner):
    ws = env.ws(path)
    try:
        assert cmd(ws, "option color") == "option color " + color
        assert cmd(ws, "option size") == "option size " + size
        assert cmd(ws, "option inneronly") == "option inneronly " + inner
        assert cmd(ws, "option LogFile") == "option LogFile " + events_path(env)
        assert cmd(ws, "option nosuch") == "option nosuch (none)"
        # init() got the options of the WebSocketHandler's own section
        assert cmd(ws, "initopt color") == "initopt color red"
        assert cmd(ws, "initopt inneronly") == "initopt inneronly (none)"
    finally:
        close_clean(ws)


def test_mws_1000_54_init_once_per_child(env, api):
    # init lines come from child_init; every child that served us has one
    ws = env.ws("/t")
    try:
        pid, _ = ident(ws)
    finally:
        close_clean(ws)
    inits = [e for e in api.all(since=0) if e.kind == "init" and e.get("pid") == str(pid)]
    # one per WebSocketHandler line (5 in API_LOCATIONS)
    assert len(inits) == 5, inits


def test_mws_1000_55_no_violations_overall(env, api):
    assert api.violations(since=0) == []
    assert api.of("doubleclose", since=0) == []

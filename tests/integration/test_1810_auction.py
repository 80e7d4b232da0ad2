"""The bundled auction handler (handlers/auction.c), the worked example of
handler API 1.1: shared memory and its lock created by init_server() in the
parent, a bid accepted in one child is broadcast to bidders in every child
in the order the prices were accepted, a lower bid is refused to its bidder
only, a late bidder gets the current price, each child keeps a replica from
on_publish, a refusal with a JSON body, check_options at `apache2 -t`.
"""
import json
import os
import re
import time

import pytest

import conftest
from test_1800_handlers import _connect_many
import wsclient
from wsclient import OP_TEXT

MOD_AUCTION = os.path.join(conftest.BUILD_DIR, "handlers", ".libs", "mod_ws_auction.so")

LOCATIONS = """
<Location /auction>
    SetHandler websocket
    WebSocketHandler {so}
    WebSocketHandlerOption StartPrice 100
    WebSocketHandlerOption MinIncrement 5
</Location>
<Location /auction2>
    SetHandler websocket
    WebSocketHandler {so}
</Location>
"""


@pytest.fixture(scope="module")
def aenv(env):
    if not os.path.exists(MOD_AUCTION):
        pytest.fail("handler not built: %s" % MOD_AUCTION, pytrace=False)
    base = conftest.WS_LOCATIONS.format(echo=conftest.MOD_ECHO, small=conftest.SMALL_LIMIT,
                                        htpasswd=env.htpasswd)
    env.restart(locations=base + LOCATIONS.format(so=MOD_AUCTION))
    yield env
    env.restart()


def recv_json(ws, timeout=10):
    op, payload = ws.recv_message(timeout)
    assert op == OP_TEXT, (op, payload[:80])
    return json.loads(payload)


def bidder(env, name, path="/auction"):
    ws = env.ws("%s?bidder=%s" % (path, name))
    return ws, recv_json(ws)


def connect_many(env, n, path="/auction"):
    return _connect_many(env, lambda i: "%s?bidder=b%d" % (path, i), n)


def test_mws_1810_01_refusal_names_what_is_missing(aenv):
    r = aenv.upgrade("/auction")
    assert r.status == 400
    assert r.reason == "Bidder Name Required"
    assert r.header("Content-Type") == "application/json"
    assert "bidder=NAME" in json.loads(r.body)["error"]
    r = aenv.upgrade("/auction?bidder=%3Cscript%3E")
    assert r.status == 400


def test_mws_1810_02_prices_across_children_in_order(aenv):
    # the second line has its own shared memory: it starts at 0 with
    # steps of 1, whatever /auction did
    n = 12
    clients = connect_many(aenv, n, "/auction2")
    try:
        start = clients[0][1]
        assert start["type"] == "price" and start["price"] == 0, start
        pids = set()
        for ws, _ in clients:
            ws.send_message(OP_TEXT, "local")
        # 3 rounds: every bidder raises by 1 after the one before it; the
        # bids come from every child, one after the other
        price, bids = 0, []
        for rnd in range(3):
            for i, (ws, _) in enumerate(clients):
                price += 1
                ws.send_message(OP_TEXT, "bid %d" % price)
                bids.append(price)
                time.sleep(0.05)  # each bid accepted before the next (another child): 5 ms raced on a loaded CI machine
        # everybody receives every price, in the order they were accepted
        violations = 0
        for ws, _ in clients:
            got, deadline = [], time.monotonic() + 15
            while len(got) < len(bids) and time.monotonic() < deadline:
                m = recv_json(ws, max(0.1, deadline - time.monotonic()))
                if m["type"] == "local":
                    pids.add(m["pid"])
                    continue
                assert m["type"] == "price", m
                got.append((m["seq"], m["price"]))
            assert len(got) == len(bids), (len(got), len(bids))
            violations += sum(1 for a, b in zip(got, got[1:]) if b[0] < a[0])
            assert sorted(p for _, p in got) == bids
        assert violations == 0, violations
        if aenv.mpm == "prefork":
            assert len(pids) == n, pids     # one bidder per child
        # a lower bid is refused to its bidder only
        ws0 = clients[0][0]
        ws0.send_message(OP_TEXT, "bid 3")
        m = recv_json(ws0)
        assert m == {"type": "refused", "price": price, "min": price + 1}, m
        # a late bidder gets the current price and the leader
        late, first = bidder(aenv, "late", "/auction2")
        assert (first["price"], first["seq"], first["leader"]) == \
            (price, len(bids), "b%d" % (n - 1)), first
        late.close()
        # every child's replica (on_publish) holds the last price
        for ws, _ in clients:
            ws.send_message(OP_TEXT, "local")
            m = recv_json(ws)
            while m["type"] != "local":
                m = recv_json(ws)
            assert (m["price"], m["seq"]) == (price, len(bids)), m
        for ws, _ in clients[1:]:
            ws.send_message(OP_TEXT, "local")   # nothing else arrived
            assert recv_json(ws)["type"] == "local"
    finally:
        for ws, _ in clients:
            ws.close()


def test_mws_1810_03_options_checked_at_config_time(env):
    if not os.path.exists(MOD_AUCTION):
        pytest.fail("handler not built", pytrace=False)
    loc = LOCATIONS.format(so=MOD_AUCTION).replace("MinIncrement 5", "MinIncrement five")
    path = os.path.join(env.root, "auction-bad.conf")
    env.write_conf(locations=loc, path=path)
    r = env.check_conf(path)
    assert r.returncode != 0
    line = [n for n, ln in enumerate(open(path), 1) if "MinIncrement five" in ln][0]
    assert re.search(r"%s:%d: WebSocketHandlerOption MinIncrement: handler auction "
                     r"refuses its options: MinIncrement must be a whole number"
                     % (re.escape(path), line), r.stderr), r.stderr


def test_mws_1810_04_start_price_and_increment(aenv):
    ws, first = bidder(aenv, "ann")
    try:
        assert first["price"] >= 100
        price = first["price"]
        ws.send_message(OP_TEXT, "bid %d" % (price + 4))
        assert recv_json(ws) == {"type": "refused", "price": price, "min": price + 5}
        ws.send_message(OP_TEXT, "bid %d" % (price + 5))
        m = recv_json(ws)
        assert (m["type"], m["price"], m["leader"]) == ("price", price + 5, "ann"), m
        ws.send_message(OP_TEXT, "nonsense")
        f = ws.recv_frame(5)
        assert f is not None and f.opcode == wsclient.OP_CLOSE
        assert f.close_info()[0] == 1008, f.close_info()
    finally:
        ws.close()

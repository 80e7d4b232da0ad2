"""WebSocketMaxConnectionsPerAddress counts exact addresses (security
review, item 4).

The old table hashed the address text with a fixed, unkeyed FNV-1a into
8,192 counters: two addresses in one slot shared a count, so an attacker
could pick addresses that lock a victim out with 503s, and every IPv6
address counted alone, so a client with a /64 was not capped at all.  Now
the table holds exact keys (a keyed hash only chooses the slot), IPv4
counts per address and IPv6 per WebSocketIPv6Prefix bits (default 64).

Client addresses come from binding the client socket to other loopback
addresses (127.0.x.y all reach lo) and, for IPv6, from mod_remoteip:
127.0.0.1 is an internal proxy whose X-Forwarded-For sets
r->useragent_ip, the address the module counts.
"""
import os
import time

import pytest

import hardutil
import wsclient
from apiutil import (OP_TEXT, Events, cmd, events_path, prepare_events,
                     require_test_handlers, TEST_SO, wait_until)
from conftest import HTTPD_MODULES

CAP = 2

REMOTEIP = """
LoadModule remoteip_module {modules}/mod_remoteip.so
RemoteIPHeader X-Forwarded-For
RemoteIPInternalProxy 127.0.0.1
"""

LOCATIONS = """
<Location /peraddr>
    SetHandler websocket
    WebSocketHandler {so}
    WebSocketHandlerOption LogFile {log}
    WebSocketMaxConnectionsPerAddress {cap}
    # what is tested is the per-address cap: the server's capacity (auto,
    # 32 WebSockets with the test's worker settings) must not refuse first
    WebSocketMaxConnections 200
</Location>
<Location /free>
    SetHandler websocket
    WebSocketHandler {so}
    WebSocketHandlerOption LogFile {log}
</Location>
"""

# WebSocketIPv6Prefix set for the server, overridden in one virtual host
# and inherited by the other (the default one for the address)
PREFIX_VHOSTS = """
WebSocketIPv6Prefix 56
<VirtualHost 127.0.0.1:{port}>
    ServerName localhost
</VirtualHost>
<VirtualHost 127.0.0.1:{port}>
    ServerName p128.test
    WebSocketIPv6Prefix 128
</VirtualHost>
<Directory "{docroot}/ht">
    AllowOverride All
</Directory>
"""


def _locations(env):
    return LOCATIONS.format(so=TEST_SO, log=events_path(env), cap=CAP)


@pytest.fixture(scope="module")
def lim(env):
    require_test_handlers()
    prepare_events(env)
    env.restart(extra=REMOTEIP.format(modules=HTTPD_MODULES), locations=_locations(env))
    yield Events(events_path(env))
    env.restart()


def fnv1a_slot(ip):
    """The slot of the old table: FNV-1a of the address text, mod 8192."""
    h = 2166136261
    for c in ip.encode():
        h = ((h ^ c) * 16777619) & 0xffffffff
    return h % 8192


def colliding_pair():
    """Two loopback addresses (not 127.0.0.1) in one slot of the old table."""
    seen = {}
    for b in range(256):
        for c in range(1, 255):
            ip = "127.0.%d.%d" % (b, c)
            if ip == "127.0.0.1":
                continue
            s = fnv1a_slot(ip)
            if s in seen:
                return seen[s], ip
            seen[s] = ip
    raise AssertionError("no collision")


def handshake(env, path="/peraddr", src="127.0.0.1", xff=None, host="localhost"):
    """Upgrade from source address src (with an X-Forwarded-For when xff);
    returns (status, WsClient or None)."""
    c = hardutil.conn_from(env, src)
    key = wsclient.new_key()
    hdrs = wsclient.upgrade_headers(key=key)
    if xff:
        hdrs.append(("X-Forwarded-For", xff))
    c.send(wsclient.build_request("GET", path, host=host, headers=hdrs))
    resp = c.read_response()
    if resp.status != 101:
        c.close()
        return resp.status, None
    wsclient.check_101(resp, key)
    return 101, wsclient.WsClient(c, resp, key)


def open_ok(env, **kw):
    st, ws = handshake(env, **kw)
    assert st == 101, (st, kw)
    return ws


def refused(env, **kw):
    st, ws = handshake(env, **kw)
    if ws:
        ws.close()
    return st == 503


close_all = hardutil.close_all


def admitted_again(env, timeout=10.0, **kw):
    """Poll until an upgrade succeeds (the server gives the count back when
    it has finished the connection)."""
    deadline = time.monotonic() + timeout
    while True:
        st, ws = handshake(env, **kw)
        if ws:
            close_all([ws])
            return True
        assert st == 503, st
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


def test_mws_1160_01_old_collision_pair_counts_apart(env, lim):
    """Two addresses that shared a counter in the old table (chosen
    offline, as an attacker would) each get the full cap."""
    env.allow_error(r"MWS00025")
    a, b = colliding_pair()
    assert fnv1a_slot(a) == fnv1a_slot(b)
    held = []
    try:
        held += [open_ok(env, src=a) for _ in range(CAP)]
        assert refused(env, src=a)
        # the victim: before the fix, 503 at once
        held += [open_ok(env, src=b) for _ in range(CAP)]
        assert refused(env, src=b)
        assert cmd(held[-1], "ip").endswith(b)
    finally:
        close_all(held)


def test_mws_1160_02_many_addresses_exact_counts(env, lim):
    """Sixteen addresses at their cap together: each is refused alone, and
    every count is given back when its connections close."""
    srcs = ["127.0.%d.%d" % (5 + i // 4, 10 + i) for i in range(16)]
    held = []
    try:
        for s in srcs:
            held += [open_ok(env, src=s) for _ in range(CAP)]
        for s in srcs:
            assert refused(env, src=s), s
        # addresses without connections are not affected
        assert admitted_again(env, src="127.0.9.9")
    finally:
        close_all(held)
    for s in srcs:
        assert admitted_again(env, src=s), s
    # all back to zero: the cap again for each, at once
    held = []
    try:
        for s in srcs[:8]:
            held += [open_ok(env, src=s) for _ in range(CAP)]
    finally:
        close_all(held)


def test_mws_1160_03_ipv6_counts_per_64(env, lim):
    """Addresses of one /64 share the cap (the default prefix); another /64
    does not; the count follows mod_remoteip's address."""
    held = []
    try:
        ws = open_ok(env, xff="2001:db8:1:2::1")
        assert cmd(ws, "ip") == "ip 2001:db8:1:2::1"
        held.append(ws)
        held.append(open_ok(env, xff="2001:db8:1:2:ffff:ffff:ffff:fffe"))
        assert refused(env, xff="2001:db8:1:2::3")
        assert refused(env, xff="2001:DB8:1:2:0:0:0:1")
        held += [open_ok(env, xff="2001:db8:1:3::1") for _ in range(CAP)]
        # IPv4 through the proxy: per address
        held += [open_ok(env, xff="192.0.2.1") for _ in range(CAP)]
        held += [open_ok(env, xff="192.0.2.2") for _ in range(CAP)]
        assert refused(env, xff="192.0.2.1")
        # without a cap nothing is counted or refused
        for _ in range(3):
            st, ws = handshake(env, path="/free", xff="2001:db8:1:2::9")
            assert st == 101
            held.append(ws)
    finally:
        close_all(held)
    env.allow_error(r"MWS00025")
    assert admitted_again(env, xff="2001:db8:1:2::5")


@pytest.fixture()
def prefix_env(env, lim):
    """The server with WebSocketIPv6Prefix 56, and 128 in vhost p128.test."""
    ht = os.path.join(env.docroot, "ht")
    os.makedirs(ht, exist_ok=True)
    os.chmod(ht, 0o755)
    with open(os.path.join(ht, ".htaccess"), "w") as f:
        f.write("WebSocketIPv6Prefix 48\n")
    os.chmod(os.path.join(ht, ".htaccess"), 0o644)
    env.restart(extra=REMOTEIP.format(modules=HTTPD_MODULES)
                + PREFIX_VHOSTS.format(port=env.http_port, docroot=env.docroot),
                locations=_locations(env))
    yield env
    env.restart(extra=REMOTEIP.format(modules=HTTPD_MODULES), locations=_locations(env))


def test_mws_1160_04_prefix_directive(prefix_env):
    env = prefix_env
    env.allow_error(r"MWS00025")
    held = []
    try:
        # the default vhost inherits 56: 2001:db8:0:a1:: and :b2:: are one client
        held.append(open_ok(env, xff="2001:db8:0:a1::1"))
        held.append(open_ok(env, xff="2001:db8:0:b2::1"))
        assert refused(env, xff="2001:db8:0:ff::1")
        held.append(open_ok(env, xff="2001:db8:0:100::1"))   # the next /56
        # p128.test: every address alone, and its counts are its own
        for a in ("2001:db8:0:a1::1", "2001:db8:0:a1::2", "2001:db8:0:a1::3"):
            held += [open_ok(env, xff=a, host="p128.test") for _ in range(CAP)]
            assert refused(env, xff=a, host="p128.test")
    finally:
        close_all(held)


def test_mws_1160_05_prefix_not_in_htaccess(prefix_env):
    env = prefix_env
    env.allow_error(r"WebSocketIPv6Prefix not allowed here")
    off = os.path.getsize(env.error_log)
    r = env.http(wsclient.build_request("GET", "/ht/", host="localhost"))
    assert r.status == 500, r
    assert wait_until(lambda: hardutil.error_lines(
        env, off, r"WebSocketIPv6Prefix not allowed here"), timeout=5), \
        env.error_log_since(off)


@pytest.mark.parametrize("value", ["0", "129", "-1", "abc", "64x", "", "1e2"])
def test_mws_1160_06_bad_prefix(env, value):
    path = env.write_conf(path=env.root + "/badprefix.conf",
                          extra='WebSocketIPv6Prefix "%s"\n' % value)
    r = env.check_conf(path)
    assert r.returncode != 0, r.stdout + r.stderr
    # an empty value is httpd's own "takes one argument"
    want = "WebSocketIPv6Prefix: '%s'" % value if value else "WebSocketIPv6Prefix takes one"
    assert want in r.stderr, r.stderr


@pytest.mark.parametrize("where", ["<Location /x>\n%s</Location>\n",
                                   "<Directory /tmp>\n%s</Directory>\n"])
def test_mws_1160_07_prefix_server_level_only(env, where):
    path = env.write_conf(path=env.root + "/prefixctx.conf",
                          extra=where % "WebSocketIPv6Prefix 64\n")
    r = env.check_conf(path)
    assert r.returncode != 0, r.stdout + r.stderr
    assert "WebSocketIPv6Prefix not allowed in <" in r.stderr, r.stderr


@pytest.mark.parametrize("value", ["1", "64", "128"])
def test_mws_1160_08_good_prefix(env, value):
    path = env.write_conf(path=env.root + "/goodprefix.conf",
                          extra="WebSocketIPv6Prefix %s\n<VirtualHost 127.0.0.1:1>\n"
                                "WebSocketIPv6Prefix 96\n</VirtualHost>\n" % value)
    r = env.check_conf(path)
    assert r.returncode == 0, r.stderr

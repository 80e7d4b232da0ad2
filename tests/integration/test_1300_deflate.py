"""permessage-deflate (RFC 7692, issue 13) against a real server: what
real clients (Python websockets) negotiate in each WebSocketCompression
mode, raw compressed frames in both directions (RSV1 on the first frame
only, the 00 00 ff ff tail), inflate bombs (1009 against the inflated
size), UTF-8 after inflation (1007), RSV1 where it is not allowed (1002),
context takeover, and the handler API's send_flags(MWS_SEND_NO_COMPRESS)
and compressed()."""
import asyncio
import base64
import os
import socket
import subprocess
import zlib

import pytest

import wsclient
from apiutil import TEST_SO, events_path, prepare_events, require_test_handlers
from conftest import MOD_ECHO
from wsclient import OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_TEXT, build_frame, parse_frame

PMD = "permessage-deflate"
NCT = "; server_no_context_takeover; client_no_context_takeover"

LOCATIONS = """
<Location /z>
    SetHandler websocket
    WebSocketHandler {echo}
    WebSocketCompression on
</Location>
<Location /zctx>
    SetHandler websocket
    WebSocketHandler {echo}
    WebSocketCompression context-takeover
</Location>
<Location /zctx15>
    SetHandler websocket
    WebSocketHandler {echo}
    WebSocketCompression context-takeover
    WebSocketCompressionWindowBits 15
    WebSocketCompressionMemLevel 8
    WebSocketCompressionMinSize 0
</Location>
<Location /zsmall>
    SetHandler websocket
    WebSocketHandler {echo}
    WebSocketCompression on
    WebSocketMaxMessageSize 1000
</Location>
<Location /zframe>
    SetHandler websocket
    WebSocketHandler {echo}
    WebSocketCompression on
    WebSocketMaxFrameSize 1000
</Location>
<Location /zoff>
    SetHandler websocket
    WebSocketHandler {echo}
</Location>
# merge: compression on outside, off in the inner section
<Location /zm>
    SetHandler websocket
    WebSocketHandler {echo}
    WebSocketCompression on
    WebSocketCompressionWindowBits 10
</Location>
<Location /zm/off>
    WebSocketCompression off
</Location>
<Location /zm/inherit>
    WebSocketCompressionMinSize 0
</Location>
<Location /zt>
    SetHandler websocket
    WebSocketHandler {so}
    WebSocketHandlerOption LogFile {log}
    WebSocketCompression on
    WebSocketCompressionMinSize 100
</Location>
<Location /ztctx>
    SetHandler websocket
    WebSocketHandler {so}
    WebSocketHandlerOption LogFile {log}
    WebSocketCompression context-takeover
</Location>
"""


@pytest.fixture(scope="module")
def zenv(env):
    require_test_handlers()
    prepare_events(env)
    env.restart(locations=LOCATIONS.format(echo=MOD_ECHO, so=TEST_SO,
                                           log=events_path(env)))
    yield env
    env.restart()


# ---- a raw client that speaks permessage-deflate ------------------------------

def connect(env, path, offer=PMD):
    extra = [("Sec-WebSocket-Extensions", offer)] if offer else []
    return wsclient.WsClient.connect(env.host, env.http_port, path, headers=extra)


def compress(data, wbits=15, cobj=None):
    """One message's payload: deflate, sync flush, the tail taken off."""
    c = cobj or zlib.compressobj(6, zlib.DEFLATED, -wbits)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def recv_frame(ws, timeout=10):
    """The next frame, RSV bits allowed (wsclient's own reader refuses them)."""
    import time
    deadline = time.monotonic() + timeout
    while True:
        r = parse_frame(ws.conn.buf)
        if r is not None:
            f, used = r
            del ws.conn.buf[:used]
            assert not f.masked
            return f
        if not ws.conn._fill(deadline):
            return None


def recv_msg(ws, dobj=None, timeout=10):
    """(opcode, payload, frames) of the next data message, inflated if its
    first frame has RSV1 (with dobj: the context of earlier messages)."""
    frames = []
    while True:
        f = recv_frame(ws, timeout)
        assert f is not None, "EOF"
        if f.opcode == OP_PING:
            ws.send_frame(0xA, f.payload)
            continue
        assert f.opcode != OP_CLOSE, f.close_info()
        frames.append(f)
        if frames[0].opcode == OP_CONT:
            raise AssertionError("continuation first")
        if f is not frames[0]:
            assert f.opcode == OP_CONT and f.rsv == 0, f
        if f.fin:
            break
    data = b"".join(x.payload for x in frames)
    if frames[0].rsv & 4:
        d = dobj or zlib.decompressobj(-15)
        data = d.decompress(data + b"\x00\x00\xff\xff")
    else:
        assert frames[0].rsv == 0, frames[0]
    return frames[0].opcode, data, frames


def expect_close(ws, code, timeout=10):
    while True:
        f = recv_frame(ws, timeout)
        assert f is not None, "EOF before a close frame"
        if f.opcode == OP_CLOSE:
            got = f.close_info()[0]
            assert got == code, f.close_info()
            ws.send_close(code)
            return
        # data echoed before the error is fine


def send_compressed(ws, opcode, data, cobj=None, frames=1, wbits=15):
    """A compressed message in `frames` frames (RSV1 on the first only)."""
    payload = compress(data, wbits, cobj)
    n = len(payload)
    cuts = [n * i // frames for i in range(frames + 1)]
    raw = b""
    for i in range(frames):
        raw += build_frame(opcode if i == 0 else OP_CONT, payload[cuts[i]:cuts[i + 1]],
                           fin=(i == frames - 1), rsv=4 if i == 0 else 0)
    ws.send_raw(raw)


def text(n, seed=0):
    return wsclient.utf8_text(n, seed).decode("utf-8")


# ---- negotiation --------------------------------------------------------------

@pytest.mark.parametrize("path,offer,want", [
    ("/z", PMD, PMD + NCT),
    ("/z", PMD + "; client_max_window_bits", PMD + NCT),
    ("/zctx", PMD + "; client_max_window_bits",
     PMD + "; server_max_window_bits=11; client_max_window_bits=11"),
    ("/zctx", PMD, PMD + "; server_max_window_bits=11"),
    ("/zctx15", PMD + "; client_max_window_bits", PMD),
    ("/zctx15", PMD + "; server_no_context_takeover", PMD + "; server_no_context_takeover"),
    ("/zm", PMD, PMD + NCT + "; server_max_window_bits=10"),
    ("/zm/inherit", PMD, PMD + NCT + "; server_max_window_bits=10"),
    ("/zm/off", PMD, None),
    ("/zoff", PMD, None),
    # declined offers, then the next one
    ("/z", PMD + "; foo=1", None),
    ("/z", PMD + "; server_max_window_bits=8", None),
    ("/z", "x-webkit-deflate-frame, " + PMD + "; server_max_window_bits=8, " + PMD
     + "; server_max_window_bits=12", PMD + NCT + "; server_max_window_bits=12"),
])
def test_mws_1300_01_negotiation(zenv, path, offer, want):
    ws = connect(zenv, path, offer)
    try:
        assert ws.response.header("Sec-WebSocket-Extensions") == want
        # and a message goes through, compressed or not
        p = text(300, 1).encode()
        if want:
            send_compressed(ws, OP_TEXT, p)
        else:
            ws.send_message(OP_TEXT, p)
        op, data, frames = recv_msg(ws)
        assert (op, data) == (OP_TEXT, p)
        assert bool(frames[0].rsv & 4) == bool(want)
    finally:
        ws.close()


def test_mws_1300_02_split_header_lines(zenv):
    # two Sec-WebSocket-Extensions lines are one list
    ws = wsclient.WsClient.connect(zenv.host, zenv.http_port, "/z", headers=[
        ("Sec-WebSocket-Extensions", "x-foo"),
        ("Sec-WebSocket-Extensions", PMD)])
    try:
        assert ws.response.header("Sec-WebSocket-Extensions") == PMD + NCT
    finally:
        ws.close()


# ---- Python websockets, a real client ------------------------------------------

def run(coro):
    return asyncio.new_event_loop().run_until_complete(coro)


@pytest.mark.parametrize("path", ["/z", "/zctx", "/zctx15", "/zoff"])
def test_mws_1300_03_websockets_client(zenv, path):
    websockets = pytest.importorskip("websockets")

    async def go():
        async with websockets.connect(zenv.ws_url(path), max_size=None,
                                      compression="deflate") as c:
            ext = c.response_headers.get("Sec-WebSocket-Extensions")
            got = []
            for i, n in enumerate([0, 1, 63, 64, 1000, 70000, 1 << 20]):
                t = text(n, i)
                await c.send(t)
                got.append(await c.recv() == t)
                b = os.urandom(n // 2) + bytes(n - n // 2)
                await c.send(b)
                got.append(await c.recv() == b)
            # fragmented by the client
            await c.send(iter([text(100, 1), text(5000, 2), text(1, 3)]))
            got.append(await c.recv() == text(100, 1) + text(5000, 2) + text(1, 3))
            return ext, got

    ext, got = run(go())
    assert all(got), got
    if path == "/zoff":
        assert ext is None
    else:
        assert ext and ext.startswith(PMD), ext


# ---- raw compressed messages ----------------------------------------------------

@pytest.mark.parametrize("frames", [1, 2, 5])
@pytest.mark.parametrize("n", [0, 1, 64, 5000, 300000])
def test_mws_1300_04_raw_echo(zenv, n, frames):
    ws = connect(zenv, "/z")
    try:
        p = text(n, n)
        send_compressed(ws, OP_TEXT, p.encode(), frames=frames)
        op, data, got = recv_msg(ws)
        assert (op, data) == (OP_TEXT, p.encode())
        # at least WebSocketCompressionMinSize (64): compressed
        assert bool(got[0].rsv & 4) == (n >= 64), got[0]
        b = bytes(range(256)) * (n // 256) + bytes(n % 256)
        send_compressed(ws, OP_BINARY, b, frames=frames)
        op, data, got = recv_msg(ws)
        assert (op, data) == (OP_BINARY, b)
        # uncompressed messages on the same connection still work
        ws.send_message(OP_TEXT, p.encode(), fragments=frames)
        assert recv_msg(ws)[:2] == (OP_TEXT, p.encode())
    finally:
        ws.close()


def test_mws_1300_05_no_context_takeover_each_message_alone(zenv):
    # every reply inflates with a fresh inflater: the server keeps no context
    ws = connect(zenv, "/z")
    try:
        p = (b'{"sym":"ACME","price":12.5,"qty":100}' * 30)
        sizes = []
        for _ in range(3):
            send_compressed(ws, OP_TEXT, p)
            op, data, frames = recv_msg(ws, zlib.decompressobj(-15))
            assert data == p
            sizes.append(len(frames[0].payload))
        assert sizes[0] == sizes[1] == sizes[2]
        assert sizes[0] < len(p) // 5, sizes
    finally:
        ws.close()


def test_mws_1300_06_context_takeover(zenv):
    # both directions keep their context: the second identical message is
    # sent by us as a back-reference, and the server's is smaller
    ws = connect(zenv, "/zctx15", PMD + "; client_max_window_bits")
    try:
        assert ws.response.header("Sec-WebSocket-Extensions") == PMD
        cobj = zlib.compressobj(6, zlib.DEFLATED, -15)
        dobj = zlib.decompressobj(-15)
        p = base64.b64encode(os.urandom(1500))      # compresses little alone
        sizes = []
        for _ in range(3):
            send_compressed(ws, OP_TEXT, p, cobj=cobj)
            op, data, frames = recv_msg(ws, dobj)
            assert data == p
            sizes.append(len(frames[0].payload))
        assert sizes[1] < sizes[0] // 4, sizes
        # a message from a fresh context cannot be read with ours, but one
        # sent uncompressed leaves the context alone
        ws.send_message(OP_TEXT, b"plain")
        assert recv_msg(ws, dobj)[1] == b"plain"
        send_compressed(ws, OP_TEXT, p, cobj=cobj)
        assert recv_msg(ws, dobj)[1] == p
    finally:
        ws.close()


# ---- limits against the inflated size -------------------------------------------

def test_mws_1300_07_inflate_bomb(zenv):
    # 16 MiB of zeros is ~16 KiB on the wire; the limit is 1000 inflated bytes
    ws = connect(zenv, "/zsmall")
    try:
        send_compressed(ws, OP_BINARY, bytes(1000))
        assert recv_msg(ws)[1] == bytes(1000)
        bomb = compress(bytes(16 << 20))
        assert len(bomb) < 20000
        ws.send_raw(build_frame(OP_BINARY, bomb, rsv=4))
        expect_close(ws, 1009)
    finally:
        ws.close()


def test_mws_1300_08_limit_exact(zenv):
    ws = connect(zenv, "/zsmall")
    try:
        send_compressed(ws, OP_TEXT, b"a" * 1001, frames=3)
        expect_close(ws, 1009)
    finally:
        ws.close()


def test_mws_1300_09_frame_limit_inflated(zenv):
    # WebSocketMaxFrameSize 1000: two frames of 900 inflated bytes each pass,
    # a frame of 1001 does not, however small on the wire
    ws = connect(zenv, "/zframe")
    try:
        c = zlib.compressobj(6, zlib.DEFLATED, -15)
        f1 = c.compress(b"x" * 900) + c.flush(zlib.Z_SYNC_FLUSH)
        f2 = compress(b"y" * 900, cobj=c)
        ws.send_raw(build_frame(OP_TEXT, f1, fin=False, rsv=4) + build_frame(OP_CONT, f2))
        assert recv_msg(ws)[1] == b"x" * 900 + b"y" * 900
        send_compressed(ws, OP_TEXT, b"z" * 1001)
        expect_close(ws, 1009)
    finally:
        ws.close()


# ---- bad input -------------------------------------------------------------------

def test_mws_1300_10_bad_utf8_after_inflation(zenv):
    ws = connect(zenv, "/z")
    try:
        send_compressed(ws, OP_TEXT, b"good \xc3\xa9")
        assert recv_msg(ws)[1] == b"good \xc3\xa9"
        send_compressed(ws, OP_TEXT, b"a" * 5000 + b"\xff" + b"b" * 10)
        expect_close(ws, 1007)
    finally:
        ws.close()


def test_mws_1300_11_truncated_utf8_after_inflation(zenv):
    ws = connect(zenv, "/z")
    try:
        send_compressed(ws, OP_TEXT, b"caf\xc3", frames=2)
        expect_close(ws, 1007)
    finally:
        ws.close()


def test_mws_1300_12_corrupt_data(zenv):
    ws = connect(zenv, "/z")
    try:
        ws.send_raw(build_frame(OP_BINARY, b"\xff\xff\xff\xff\xff", rsv=4))
        expect_close(ws, 1007)
    finally:
        ws.close()


@pytest.mark.parametrize("case", ["ping", "close", "continuation", "rsv2", "off"])
def test_mws_1300_13_rsv1_not_allowed(zenv, case):
    ws = connect(zenv, "/zoff" if case == "off" else "/z",
                 None if case == "off" else PMD)
    try:
        if case == "ping":
            ws.send_raw(build_frame(OP_PING, b"x", rsv=4))
        elif case == "close":
            ws.send_raw(build_frame(OP_CLOSE, b"\x03\xe8", rsv=4))
        elif case == "continuation":
            c = zlib.compressobj(6, zlib.DEFLATED, -15)
            f1 = c.compress(b"x" * 100) + c.flush(zlib.Z_SYNC_FLUSH)
            f2 = compress(b"y" * 100, cobj=c)
            ws.send_raw(build_frame(OP_TEXT, f1, fin=False, rsv=4)
                        + build_frame(OP_CONT, f2, rsv=4))
        elif case == "rsv2":
            ws.send_raw(build_frame(OP_TEXT, compress(b"hello"), rsv=6))
        else:
            ws.send_raw(build_frame(OP_TEXT, compress(b"hello"), rsv=4))
        expect_close(ws, 1002)
    finally:
        ws.close()


# ---- the handler API: send_flags(MWS_SEND_NO_COMPRESS), compressed() -------------

def test_mws_1300_14_handler_api(zenv):
    ws = connect(zenv, "/zt")
    try:
        ws.send_message(OP_TEXT, b"compressed")
        assert recv_msg(ws)[1] == b"compressed 1"
        # blob: compressed (>= the section's minimum of 100)
        ws.send_message(OP_TEXT, b"blob 5000")
        op, data, frames = recv_msg(ws)
        want = bytes(ord("a") + i % 26 for i in range(5000))
        assert data == want and frames[0].rsv == 4 and len(frames[0].payload) < 500
        # rawblob: MWS_SEND_NO_COMPRESS
        ws.send_message(OP_TEXT, b"rawblob 5000")
        op, data, frames = recv_msg(ws)
        assert data == want and frames[0].rsv == 0 and len(frames[0].payload) == 5000
        # under the minimum: uncompressed
        ws.send_message(OP_TEXT, b"blob 99")
        op, data, frames = recv_msg(ws)
        assert data == want[:99] and frames[0].rsv == 0
        # send_part: one deflate stream over the parts, RSV1 on the first only
        ws.send_message(OP_TEXT, b"partblob 5 3000")
        op, data, frames = recv_msg(ws)
        assert data == want[:3000] * 5 and len(frames) == 5
        assert frames[0].rsv == 4 and all(f.rsv == 0 for f in frames[1:])
    finally:
        ws.close()
    # without an offer the connection does not compress
    ws = connect(zenv, "/zt", None)
    try:
        ws.send_message(OP_TEXT, b"compressed")
        assert recv_msg(ws)[1] == b"compressed 0"
    finally:
        ws.close()


def test_mws_1300_15_handler_context_takeover(zenv):
    ws = connect(zenv, "/ztctx", PMD + "; client_max_window_bits")
    try:
        dobj = zlib.decompressobj(-15)
        want = bytes(ord("a") + i % 26 for i in range(3000))
        ws.send_message(OP_TEXT, b"blob 3000")
        assert recv_msg(ws, dobj)[1] == want
        # parts continue the connection's stream; whole messages after it too
        ws.send_message(OP_TEXT, b"partblob 3 3000")
        assert recv_msg(ws, dobj)[1] == want * 3
        ws.send_message(OP_TEXT, b"rawblob 3000")
        op, data, frames = recv_msg(ws, dobj)
        assert data == want and frames[0].rsv == 0
        ws.send_message(OP_TEXT, b"blob 3000")
        op, data, frames = recv_msg(ws, dobj)
        assert data == want and len(frames[0].payload) < 50
    finally:
        ws.close()


# ---- configuration errors ---------------------------------------------------------

@pytest.mark.parametrize("line,msg", [
    ("WebSocketCompression maybe", "WebSocketCompression: 'maybe' is not"),
    ("WebSocketCompressionWindowBits 8", "WebSocketCompressionWindowBits: '8' is not"),
    ("WebSocketCompressionWindowBits 16", "WebSocketCompressionWindowBits: '16' is not"),
    ("WebSocketCompressionMemLevel 0", "WebSocketCompressionMemLevel: '0' is not"),
    ("WebSocketCompressionMinSize -1", "WebSocketCompressionMinSize: '-1' is not"),
])
def test_mws_1300_16_config_errors(zenv, line, msg):
    locs = "<Location /bad>\n    SetHandler websocket\n    WebSocketHandler %s\n    %s\n</Location>\n" % (
        MOD_ECHO, line)
    path = zenv.write_conf(locations=locs, path=os.path.join(zenv.root, "bad.conf"))
    r = zenv.check_conf(path)
    assert r.returncode != 0
    assert msg in r.stderr, r.stderr
    assert "line 4" in r.stderr or "bad.conf" in r.stderr, r.stderr


# ---- Node's ws, another real client --------------------------------------------

NODE_MODULES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench", "node",
                            "node_modules")


@pytest.mark.parametrize("path,want", [
    ("/z", {"server_no_context_takeover": True, "client_no_context_takeover": True}),
    ("/zctx", {"server_max_window_bits": 11, "client_max_window_bits": 11}),
    ("/zctx15", {}),
    ("/zoff", None),
])
def test_mws_1300_17_node_ws_client(zenv, path, want):
    import json
    import shutil
    if not shutil.which("node") or not os.path.isdir(os.path.join(NODE_MODULES, "ws")):
        pytest.skip("node or ws missing (cd tests/bench/node && npm ci)")
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "deflate_node_client.js")
    r = subprocess.run(["node", script, zenv.ws_url(path)], capture_output=True, text=True,
                       timeout=90, env=dict(os.environ, NODE_PATH=NODE_MODULES))
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out.get("ok"), (out, r.stderr)
    assert out["code"] == 1000, out
    # the parameters ws took from our response
    assert out["extensions"] == ("" if want is None else PMD), out
    assert out["params"] == want, out


# ---- broadcasts -------------------------------------------------------------------

def test_mws_1300_18_broadcast(zenv):
    # receivers without context takeover share one compressed copy per
    # window size; one with context takeover gets its own stream; one
    # without the extension the plain frame -- each reads it right
    import time
    a = connect(zenv, "/zt")
    d = connect(zenv, "/zt", PMD + "; server_max_window_bits=10")
    b = connect(zenv, "/ztctx", PMD + "; client_max_window_bits")
    c = connect(zenv, "/zt", None)
    try:
        for ws in (a, b, c, d):
            ws.send_message(OP_TEXT, b"sub server:zroom")
        bdobj = zlib.decompressobj(-15)
        for ws, dobj in ((a, None), (b, bdobj), (c, None), (d, None)):
            assert recv_msg(ws, dobj)[1] == b"sub server:zroom 0"
        time.sleep(0.3)
        msg = (b'{"sym":"ACME","price":12.5} ' * 30)[:800]
        for round_ in range(2):
            a.send_message(OP_TEXT, b"pub server:zroom " + msg)
            got = {}
            for name, ws, dobj in (("a", a, None), ("b", b, bdobj), ("c", c, None),
                                   ("d", d, zlib.decompressobj(-10))):
                for _ in range(2 if name == "a" else 1):
                    op, data, frames = recv_msg(ws, dobj)
                    if not data.startswith(b"pub "):
                        got[name] = (data, frames[0].rsv, len(frames[0].payload))
            assert all(v[0] == msg for v in got.values()), got
            assert got["a"][1] == got["b"][1] == got["d"][1] == 4, got
            assert got["c"][1] == 0 and got["c"][2] == len(msg), got
            assert got["a"][2] < len(msg) // 4, got
    finally:
        for ws in (a, b, c, d):
            ws.close()


@pytest.mark.parametrize("chop", [1, 7, 100])
def test_mws_1300_19_split_reads(zenv, chop):
    # a compressed frame arriving a few bytes at a time is inflated a chunk
    # at a time, the same as a whole one
    import time
    ws = connect(zenv, "/z")
    try:
        for i in range(3):
            p = text(3000, i).encode()
            c = zlib.compressobj(6, zlib.DEFLATED, -15)
            payload = (c.compress(p) + c.flush(zlib.Z_SYNC_FLUSH))[:-4]
            raw = build_frame(OP_TEXT, payload, rsv=4)
            for k in range(0, len(raw), chop):
                ws.send_raw(raw[k:k + chop])
                if chop > 1:
                    time.sleep(0.002)
            assert recv_msg(ws)[1] == p
    finally:
        ws.close()


# ---- Chromium ----------------------------------------------------------------------

BROWSER_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "browser")


@pytest.mark.parametrize("path,want", [
    ("/z", PMD + NCT),
    ("/zctx", PMD + "; server_max_window_bits=11; client_max_window_bits=11"),
    ("/zctx15", PMD),        # the check: ws.extensions === "permessage-deflate"
    ("/zoff", ""),
])
def test_mws_1300_20_chromium(zenv, path, want):
    import json
    import shutil
    if (not os.path.exists("/usr/bin/chromium") or not shutil.which("node")
            or not os.path.isdir(os.path.join(BROWSER_DIR, "node_modules", "playwright-core"))):
        pytest.skip("chromium, node or playwright-core missing (npm ci in tests/browser)")
    r = subprocess.run(["node", os.path.join(BROWSER_DIR, "deflate.mjs"),
                        "http://%s:%d/index.html" % (zenv.host, zenv.http_port),
                        zenv.ws_url(path)], capture_output=True, text=True, timeout=120)
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out.get("ok") and out["n"] == 10, (out, r.stderr[-2000:])
    assert out["extensions"] == want, out


# ---- TLS and HTTP/2 ------------------------------------------------------------------

def test_mws_1300_21_tls(zenv):
    websockets = pytest.importorskip("websockets")

    async def go():
        async with websockets.connect(zenv.wss_url("/z"), ssl=zenv.client_ssl_ctx(),
                                      max_size=None, compression="deflate") as c:
            res = []
            for n in (10, 5000, 300000):
                t = text(n, n)
                await c.send(t)
                res.append(await c.recv() == t)
            return c.response_headers.get("Sec-WebSocket-Extensions"), res

    ext, res = run(go())
    assert ext == PMD + NCT and all(res), (ext, res)


@pytest.mark.parametrize("scheme", ["h2c", "h2"])
def test_mws_1300_22_http2(zenv, scheme):
    import shutil
    mod_http2 = "/usr/lib/apache2/modules/mod_http2.so"
    if not shutil.which("node") or not os.path.exists(mod_http2):
        pytest.skip("node or mod_http2 missing")
    if zenv.mpm == "prefork":
        pytest.skip("mod_http2 does not serve HTTP/2 under the prefork MPM")
    zenv.restart(extra="LoadModule http2_module %s\nProtocols h2 h2c http/1.1\n"
                       "H2WebSockets on\n" % mod_http2,
                 locations=LOCATIONS.format(echo=MOD_ECHO, so=TEST_SO, log=events_path(zenv)))
    try:
        base = ("http://127.0.0.1:%d" % zenv.http_port if scheme == "h2c"
                else "https://127.0.0.1:%d" % zenv.https_port)
        r = subprocess.run(["node", os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                 "h2ws_deflate_client.mjs"), base, "/z"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "OK echo 200000" in r.stdout, r.stdout
    finally:
        zenv.restart(locations=LOCATIONS.format(echo=MOD_ECHO, so=TEST_SO,
                                                log=events_path(zenv)))


def test_mws_1300_23_unfinished_compressed_message_expires(zenv):
    # the first frame of a compressed message starts zlib's state: a client
    # that then only pings cannot keep it for ever (1008 after Timeout)
    import time
    timeout = 3
    locs = LOCATIONS.format(echo=MOD_ECHO, so=TEST_SO, log=events_path(zenv))
    zenv.restart(extra="Timeout %d\n" % timeout, locations=locs)
    try:
        for path in ("/z", "/zt"):        # reassembled, and by the test handler
            ws = connect(zenv, path)
            c = zlib.compressobj(6, zlib.DEFLATED, -15)
            # two bytes of a stream: zlib starts, nothing inflates yet, so
            # no reassembly buffer holds the message, only the inflater
            part = (c.compress(os.urandom(3000)) + c.flush(zlib.Z_SYNC_FLUSH))[:2]
            t0 = time.monotonic()
            ws.send_raw(build_frame(OP_BINARY, part, fin=False, rsv=4))
            code = None
            while time.monotonic() - t0 < timeout + 5 and code is None:
                ws.send_frame(OP_PING, b"alive")
                end = time.monotonic() + 0.5
                while time.monotonic() < end:
                    try:
                        f = recv_frame(ws, max(0.01, end - time.monotonic()))
                    except socket.timeout:
                        break
                    if f is None or f.opcode == OP_CLOSE:
                        code = f.close_info()[0] if f else "eof"
                        break
            took = time.monotonic() - t0
            assert code == 1008, (path, code, took)
            assert timeout - 0.5 <= took <= timeout + 3, took
            ws.close()
    finally:
        zenv.restart(locations=locs)


# ---- memory pressure: WebSocketCompressionMaxContexts -------------------------------

def test_mws_1300_24_max_contexts(zenv):
    # one connection per child may keep zlib state between messages; more
    # are still compressed, without context takeover, and work
    import time
    locs = LOCATIONS.format(echo=MOD_ECHO, so=TEST_SO, log=events_path(zenv))
    zenv.restart(extra="WebSocketCompressionMaxContexts 1\n", locations=locs)
    conns = []
    try:
        for i in range(6):
            conns.append(connect(zenv, "/zctx15", PMD + "; client_max_window_bits"))
        kept = [ws.response.header("Sec-WebSocket-Extensions") == PMD for ws in conns]
        for ws in conns:
            ext = ws.response.header("Sec-WebSocket-Extensions")
            assert ext in (PMD, PMD + NCT), ext
            nct = ext != PMD
            c = zlib.compressobj(6, zlib.DEFLATED, -15)
            d = zlib.decompressobj(-15)
            for j in range(2):
                p = base64.b64encode(os.urandom(600))
                if nct:
                    c = zlib.compressobj(6, zlib.DEFLATED, -15)
                    d = zlib.decompressobj(-15)
                send_compressed(ws, OP_TEXT, p, cobj=c)
                assert recv_msg(ws, d)[1] == p
        if zenv.mpm == "prefork":
            assert all(kept), kept           # one connection per child
        else:
            assert 1 <= sum(kept) <= 4, kept  # at most one in each of 4 children
            assert not all(kept), kept
        for ws in conns:
            ws.send_close(1000)
            ws.close()
        conns = []
        time.sleep(0.5)
        # the connections that ended gave their places back
        ws = connect(zenv, "/zctx15", PMD + "; client_max_window_bits")
        conns.append(ws)
        assert ws.response.header("Sec-WebSocket-Extensions") == PMD
    finally:
        for ws in conns:
            ws.close()
        zenv.restart(locations=locs)


@pytest.mark.parametrize("where,line,msg", [
    ("global", "WebSocketCompressionMaxContexts x", "'x' is not a number"),
    ("global", "WebSocketCompressionMaxContexts -1", "'-1' is not a number"),
    ("location", "WebSocketCompressionMaxContexts 5", "not allowed"),
])
def test_mws_1300_25_max_contexts_config(zenv, where, line, msg):
    locs = "<Location /bad>\n    SetHandler websocket\n    WebSocketHandler %s\n%s</Location>\n" % (
        MOD_ECHO, ("    " + line + "\n") if where == "location" else "")
    path = zenv.write_conf(locations=locs, extra=line if where == "global" else "",
                           path=os.path.join(zenv.root, "bad2.conf"))
    r = zenv.check_conf(path)
    assert r.returncode != 0
    assert msg in r.stderr and "bad2.conf" in r.stderr, r.stderr

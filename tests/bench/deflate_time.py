#!/usr/bin/python3
"""CPU time per compressed echo of a 1 KiB JSON message: mod_websocket
beside Node's ws with perMessageDeflate, in the same run (issue 13).

Each server runs alone (httpd: event MPM, one child process, the echo
handler; Node: tests/bench/node/echo_deflate.js); one client connection
offers permessage-deflate, warms up with 200 echoes, then echoes N
messages (default 5000) one at a time.  The server's user+system CPU
time (/proc/PID/stat of all its processes) over those N, divided by N,
and the bytes of its replies on the wire, are printed per server and mode.
Messages differ in their numbers, as deflate_cpu.py's.

usage: MWS_BUILD_DIR=$PWD /usr/bin/python3 tests/bench/deflate_time.py [N]
"""
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
os.environ.setdefault("MWS_MPMS", "event")

import conftest  # noqa: E402
import wsclient  # noqa: E402
from deflate_cpu import message, recv_frame  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def cpu_of(pids):
    total = 0
    for p in pids:
        try:
            with open("/proc/%d/stat" % p) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])   # utime, stime
        except OSError:
            pass
    return total / TICK


def tree(pid):
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [pid] + [int(p) for p in out.split()]


def echoes(port, path, n):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    hdrs = wsclient.upgrade_headers() + [
        ("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits")]
    s.sendall(wsclient.build_request("GET", path, headers=hdrs))
    buf = bytearray()
    while b"\r\n\r\n" not in buf:
        buf += s.recv(4096)
    head, rest = bytes(buf).split(b"\r\n\r\n", 1)
    buf = bytearray(rest)
    ext = re.search(rb"Sec-WebSocket-Extensions: *([^\r]*)", head, re.I)
    ext = ext.group(1).decode() if ext else ""
    ctx = "client_no_context_takeover" not in ext
    sctx = "server_no_context_takeover" not in ext
    mw = re.search(r"client_max_window_bits=(\d+)", ext)
    cw = int(mw.group(1)) if mw else 15
    cobj = zlib.compressobj(6, zlib.DEFLATED, -cw)
    dobj = zlib.decompressobj(-15)
    wire = 0

    def one(i):
        nonlocal cobj, dobj, wire
        m = message(i)
        if not ext:
            s.sendall(wsclient.build_frame(wsclient.OP_TEXT, m))
        else:
            if not ctx:
                cobj = zlib.compressobj(6, zlib.DEFLATED, -cw)
            c = cobj.compress(m) + cobj.flush(zlib.Z_SYNC_FLUSH)
            s.sendall(wsclient.build_frame(wsclient.OP_TEXT, c[:-4], rsv=4))
        f = recv_frame(s, buf)
        data = f.payload
        wire += len(data)
        if f.rsv & 4:
            if not sctx:
                dobj = zlib.decompressobj(-15)
            data = dobj.decompress(data + b"\x00\x00\xff\xff")
        assert data == m

    return s, ext, one, lambda: wire


def measure(pids_fn, port, path, n):
    s, ext, one, wire = echoes(port, path, n)
    for i in range(200):
        one(i)
    pids = pids_fn()
    c0, t0 = cpu_of(pids), time.monotonic()
    w0 = wire()
    for i in range(200, 200 + n):
        one(i)
    c1, t1 = cpu_of(pids), time.monotonic()
    s.close()
    return ext, (c1 - c0) / n * 1e6, (wire() - w0) / n, (t1 - t0) / n * 1e6


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    d = tempfile.mkdtemp()
    cert, key = os.path.join(d, "c.pem"), os.path.join(d, "k.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    key, "-out", cert, "-days", "1", "-subj", "/CN=localhost"],
                   capture_output=True, check=True)
    locs = ("<Location /on>\n SetHandler websocket\n WebSocketHandler %s\n"
            " WebSocketCompression on\n</Location>\n"
            "<Location /off>\n SetHandler websocket\n WebSocketHandler %s\n"
            "</Location>\n"
            "<Location /ctx>\n SetHandler websocket\n WebSocketHandler %s\n"
            " WebSocketCompression context-takeover\n</Location>\n"
            "<Location /ctx15>\n SetHandler websocket\n WebSocketHandler %s\n"
            " WebSocketCompression context-takeover\n WebSocketCompressionWindowBits 15\n"
            " WebSocketCompressionMemLevel 8\n</Location>\n"
            % ((conftest.MOD_ECHO,) * 4))
    env = conftest.MwsEnv("event", (cert, key))
    env.write_conf(locations=locs, extra="StartServers 1\nServerLimit 1\n")
    env.start()
    try:
        for path in ("/off", "/on", "/ctx", "/ctx15"):
            ext, us, wire, lat = measure(lambda: tree(env.pid), env.http_port, path, n)
            print("server=mod_websocket path=%s cpu_us_per_echo=%.1f reply_bytes=%.0f "
                  "rtt_us=%.0f ext=%r" % (path, us, wire, lat, ext), flush=True)
    finally:
        env.stop()
        subprocess.run(["rm", "-rf", env.root])
    node_dir = os.path.join(HERE, "node")
    for mode in ("off", "nct", "ctx"):
        port = conftest.free_port()
        p = subprocess.Popen(["node", os.path.join(node_dir, "echo_deflate.js"), str(port), mode],
                             stdout=subprocess.PIPE, text=True,
                             env=dict(os.environ, NODE_PATH=os.path.join(node_dir, "node_modules")))
        try:
            p.stdout.readline()
            ext, us, wire, lat = measure(lambda: [p.pid], port, "/", n)
            print("server=node-ws mode=%s cpu_us_per_echo=%.1f reply_bytes=%.0f rtt_us=%.0f "
                  "ext=%r" % (mode, us, wire, lat, ext), flush=True)
        finally:
            p.terminate()
            p.wait()


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""RSS per idle WebSocket for each WebSocketCompression mode (issue 13).

Starts httpd (event MPM) from the build tree with one location per mode,
then for each mode on a freshly started server: opens N connections that
offer permessage-deflate (as browsers do), sends one 1 KiB JSON message
on each and reads its echo (so every zlib state that stays between
messages exists), holds them idle, and reads the RSS of all httpd
processes at N/2 and at N.  Prints one line per mode: per_conn = (RSS
with N idle - RSS before) / N, which includes what every worker thread
keeps once (its deflater, its inflate buffer), and slope = (RSS at N - RSS
at N/2) / (N/2), what one more idle connection costs once the threads are
warm.  A bounded run (N default 2000): the report extrapolates from it.

usage: MWS_BUILD_DIR=$PWD /usr/bin/python3 tests/bench/deflate_idle.py [N]
"""
import os
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

MODES = [
    ("off", "WebSocketCompression off"),
    ("on", "WebSocketCompression on"),
    ("ctx-default", "WebSocketCompression context-takeover"),
    ("ctx-15-8", "WebSocketCompression context-takeover\n"
                 "    WebSocketCompressionWindowBits 15\n"
                 "    WebSocketCompressionMemLevel 8"),
]
if os.environ.get("MWS_MODES"):
    MODES = [m for m in MODES if m[0] in os.environ["MWS_MODES"].split(",")]
JSON = (b'{"id":12345,"sym":"ACME","price":12.5,"qty":100,"side":"buy",'
        b'"ts":"2026-12-03T15:00:00Z","tags":["a","b","c"]}' * 10)[:1024]


def rss_of_tree(parent):
    pids = [parent]
    out = subprocess.run(["pgrep", "-P", str(parent)], capture_output=True, text=True).stdout
    pids += [int(p) for p in out.split()]
    total = 0
    for p in pids:
        try:
            with open("/proc/%d/status" % p) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def open_conn(env, path, offer):
    s = socket.create_connection(("127.0.0.1", env.http_port), timeout=10)
    key = wsclient.new_key()
    hdrs = wsclient.upgrade_headers(key=key)
    if offer:
        hdrs.append(("Sec-WebSocket-Extensions", offer))
    s.sendall(wsclient.build_request("GET", path, headers=hdrs))
    return s


def read_response(s):
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            raise RuntimeError("EOF in handshake")
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    assert b" 101 " in head.split(b"\r\n")[0], head
    return head, rest


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    d = tempfile.mkdtemp()
    cert, key = os.path.join(d, "c.pem"), os.path.join(d, "k.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    key, "-out", cert, "-days", "1", "-subj", "/CN=localhost"],
                   capture_output=True, check=True)
    locs = "".join("<Location /%s>\n    SetHandler websocket\n    WebSocketHandler %s\n"
                   "    %s\n</Location>\n" % (name, conftest.MOD_ECHO, conf)
                   for name, conf in MODES)
    extra = "AsyncRequestWorkerFactor 400\nMaxRequestWorkers 40\n"
    for name, _ in MODES:
        env = conftest.MwsEnv("event", (cert, key))
        env.write_conf(extra=extra, locations=locs)
        env.start()
        try:
            time.sleep(1.0)
            before = rss_of_tree(env.pid)
            socks = []
            t0 = time.monotonic()
            half = 0
            for i in range(n):
                if i == n // 2:
                    time.sleep(3.0)
                    half = rss_of_tree(env.pid)
                s = open_conn(env, "/" + name, "permessage-deflate; client_max_window_bits")
                head, rest = read_response(s)
                compressed = b"permessage-deflate" in head
                if compressed:
                    c = zlib.compressobj(6, zlib.DEFLATED, -15)
                    payload = c.compress(JSON) + c.flush(zlib.Z_SYNC_FLUSH)
                    s.sendall(wsclient.build_frame(wsclient.OP_TEXT, payload[:-4], rsv=4))
                else:
                    s.sendall(wsclient.build_frame(wsclient.OP_TEXT, JSON))
                got = rest
                while len(got) < 2:
                    got += s.recv(65536)
                socks.append(s)
                if time.monotonic() - t0 > 120:
                    raise RuntimeError("too slow: %d connections in 120 s" % i)
            time.sleep(3.0)
            held = rss_of_tree(env.pid)
            print("mode=%s conns=%d rss_before=%d rss_half=%d rss_held=%d per_conn=%.0f B "
                  "slope=%.0f B compressed=%d"
                  % (name, n, before, half, held, (held - before) / n,
                     (held - half) / (n - n // 2), compressed), flush=True)
            for s in socks:
                s.close()
        finally:
            env.stop()
            subprocess.run(["rm", "-rf", env.root])


if __name__ == "__main__":
    main()

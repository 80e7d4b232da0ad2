#!/usr/bin/python3
"""Instructions per echoed 1 KiB JSON message, compressed and not (issue 13).

Runs `apache2 -X` (event MPM, one process) under callgrind twice per mode:
a client opens one connection (offering permessage-deflate as browsers do)
and echoes 100 messages, then 100 + N (default 1000; a JSON message whose
numbers change every time, so no two are alike), and the server stops.
The difference of the two runs' instruction counts over N is the cost of
one echo, start-up and shut-down cancelled out (callgrind_control cannot
be used: an idle httpd never looks at its commands).  Prints per mode the
server's user-space instructions per echo and the compression ratio of
the server's replies (1024 / payload bytes on the wire).

usage: MWS_BUILD_DIR=$PWD /usr/bin/python3 tests/bench/deflate_cpu.py [N]
"""
import glob
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

MODES = [
    ("off", "WebSocketCompression off", None),
    ("on", "WebSocketCompression on", "permessage-deflate; client_max_window_bits"),
    ("on-m4", "WebSocketCompression on\n    WebSocketCompressionMemLevel 4",
     "permessage-deflate; client_max_window_bits"),
    ("ctx", "WebSocketCompression context-takeover",
     "permessage-deflate; client_max_window_bits"),
]
if os.environ.get("MWS_CG_MODES"):
    MODES = [m for m in MODES if m[0] in os.environ["MWS_CG_MODES"].split(",")]


def message(i):
    body = ('{"seq":%d,"sym":"ACME","bid":%d.%02d,"ask":%d.%02d,"qty":%d,'
            '"venue":"XNAS","flags":["open","regular"],"ts":"2026-12-03T15:%02d:%02d.%03dZ"'
            % (i, 100 + i % 50, i % 100, 101 + i % 50, (i * 7) % 100, 10 * (i % 97),
               i % 60, (i * 13) % 60, i % 1000))
    pad = ',"note":"' + ("trade print %d " % i) * 60
    return (body + pad)[:1022].encode() + b'"}'


def recv_frame(s, buf):
    while True:
        r = wsclient.parse_frame(buf)
        if r:
            f, used = r
            del buf[:used]
            return f
        chunk = s.recv(65536)
        if not chunk:
            raise RuntimeError("EOF")
        buf += chunk


def main():
    import faulthandler
    faulthandler.dump_traceback_later(float(os.environ.get("MWS_CG_WATCHDOG", "1e9")), exit=True)
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    d = tempfile.mkdtemp()
    cert, key = os.path.join(d, "c.pem"), os.path.join(d, "k.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    key, "-out", cert, "-days", "1", "-subj", "/CN=localhost"],
                   capture_output=True, check=True)
    locs = "".join("<Location /%s>\n    SetHandler websocket\n    WebSocketHandler %s\n"
                   "    %s\n</Location>\n" % (name, conftest.MOD_ECHO, conf)
                   for name, conf, _ in MODES)
    env = conftest.MwsEnv("event", (cert, key))
    env.write_conf(locations=locs)
    out_dir = tempfile.mkdtemp(prefix="mws-cg-")
    os.chmod(out_dir, 0o777)
    def run(name, offer, count, tag):
        out = os.path.join(out_dir, "callgrind.out.%s.%s" % (name, tag))
        p = subprocess.Popen(["valgrind", "--tool=callgrind",
                              "--callgrind-out-file=" + out, conftest.HTTPD, "-X",
                              "-f", env.conf_path],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wire = 0
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    s = socket.create_connection(("127.0.0.1", env.http_port), timeout=5)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.5)
            s.settimeout(60)
            # the profile is opened by root at the start, written by the
            # child (User) at the end
            for f in glob.glob(out + "*"):
                os.chmod(f, 0o666)
            hdrs = wsclient.upgrade_headers()
            if offer:
                hdrs.append(("Sec-WebSocket-Extensions", offer))
            s.sendall(wsclient.build_request("GET", "/" + name, headers=hdrs))
            buf = bytearray()
            while b"\r\n\r\n" not in buf:
                buf += s.recv(4096)
            head, rest = bytes(buf).split(b"\r\n\r\n", 1)
            buf = bytearray(rest)
            compressed = b"permessage-deflate" in head
            ctx = b"server_no_context_takeover" not in head
            mw = re.search(rb"client_max_window_bits=(\d+)", head)
            cw = int(mw.group(1)) if mw else 15     # the window we may use
            cobj = zlib.compressobj(6, zlib.DEFLATED, -cw)
            dobj = zlib.decompressobj(-15)
            for i in range(count):
                m = message(i)
                if compressed:
                    if not ctx:
                        cobj = zlib.compressobj(6, zlib.DEFLATED, -cw)
                    c = cobj.compress(m) + cobj.flush(zlib.Z_SYNC_FLUSH)
                    s.sendall(wsclient.build_frame(wsclient.OP_TEXT, c[:-4], rsv=4))
                else:
                    s.sendall(wsclient.build_frame(wsclient.OP_TEXT, m))
                f = recv_frame(s, buf)
                data = f.payload
                wire += len(data)
                if f.rsv & 4:
                    if not ctx:
                        dobj = zlib.decompressobj(-15)
                    data = dobj.decompress(data + b"\x00\x00\xff\xff")
                assert data == m, (i, f.opcode, data[:40], len(m))
            s.sendall(wsclient.build_frame(wsclient.OP_CLOSE, b"\x03\xe8"))
            s.close()
            time.sleep(1)
        finally:
            p.terminate()
            p.wait(timeout=120)
        total = 0
        for f in glob.glob(out + "*"):
            with open(f) as fh:
                for line in fh:
                    m = re.match(r"(?:summary|totals):\s+(\d+)", line)
                    if m:
                        total += int(m.group(1))
                        break
        return total, wire

    for name, _, offer in MODES:
        lo, _ = run(name, offer, 100, "lo")
        hi, wire = run(name, offer, 100 + n, "hi")
        print("mode=%s echoes=%d Ir_per_echo=%.0f reply_bytes=%.0f ratio=%.2f"
              % (name, n, (hi - lo) / n, wire / (100 + n), 1024.0 * (100 + n) / wire),
              flush=True)
    subprocess.run(["rm", "-rf", env.root, out_dir])


if __name__ == "__main__":
    main()

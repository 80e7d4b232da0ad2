#!/usr/bin/python3
"""Churn: N connect-echo-close cycles against mod_websocket, then check
that the server's open descriptors, thread count and resident memory are
back within a small margin of where they started.

    /usr/bin/python3 tests/churn/churn.py                      # 100000 cycles, event
    /usr/bin/python3 tests/churn/churn.py -n 5000 --mpm prefork
    /usr/bin/python3 tests/churn/churn.py --port 8080 --pid $(cat run/httpd.pid) --path /echo

Without --port, a private server is started from the build (MWS_BUILD_DIR,
default the source tree) with the integration suite's configuration
(tests/integration/conftest.py) and stopped at the end.  Each cycle: TCP
connect (from 127.0.0.1..127.0.0.16 in turn), handshake, one masked
message echoed and checked, client close 1000, wait for the server's close
and its end of TCP.  Figures are taken over every httpd process (the
parent and its children, /proc/<pid>/fd, Threads and VmRSS of
/proc/<pid>/status): once after a warm-up, and after the run when they
have settled (polled for up to --settle seconds).  The MPM may start or
stop children during the run: the processes alive at both ends must be
back within the margins, and a child started during the run may hold no
more than the largest child held at the start.

Exit status: 0 when every cycle succeeded and the figures are back within
the margins, 1 otherwise, 2 on a usage or setup error.
"""
import argparse
import base64
import hashlib
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
INTEG = os.path.join(os.path.dirname(HERE), "integration")
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


# ---- /proc ------------------------------------------------------------------------------

def children(parent):
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                st = f.read()
        except OSError:
            continue
        # the command may contain spaces and parentheses: ppid follows the last ')'
        rest = st[st.rfind(")") + 2:].split()
        if len(rest) > 1 and int(rest[1]) == parent:
            out.append(int(d))
    return out


def status_field(pid, name):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(name + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def figures(parent):
    pids = [parent] + sorted(children(parent))
    fds = {}
    for p in pids:
        try:
            fds[p] = len(os.listdir("/proc/%d/fd" % p))
        except OSError:
            pass
    thr = {p: status_field(p, "Threads") for p in fds}
    rss = {p: status_field(p, "VmRSS") for p in fds}
    return {
        "parent": parent,
        "procs": len(fds),
        "fds": sum(fds.values()),
        "fds_per_proc": fds,
        "threads": sum(thr.values()),
        "threads_per_proc": thr,
        "rss_kib": sum(rss.values()),
        "rss_per_proc": rss,
    }


def show(label, fig):
    print("%-7s processes %3d  open fds %5d  threads %4d  RSS %8.1f MiB   fds per process %s" % (
        label, fig["procs"], fig["fds"], fig["threads"], fig["rss_kib"] / 1024.0,
        " ".join("%d:%d" % kv for kv in sorted(fig["fds_per_proc"].items()))))
    sys.stdout.flush()


# ---- the client ---------------------------------------------------------------------------

class Cycler:
    def __init__(self, host, port, path, size, timeout):
        self.host, self.port, self.path = host, port, path
        self.size = size
        self.timeout = timeout
        self.lock = threading.Lock()
        self.done = 0
        self.failures = 0
        self.first_errors = []

    def _recv_exact(self, s, n, buf):
        while len(buf) < n:
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError("EOF after %d of %d bytes" % (len(buf), n))
            buf += chunk
        return buf

    def _read_frame(self, s, buf):
        buf = self._recv_exact(s, 2, buf)
        b0, b1 = buf[0], buf[1]
        n, pos = b1 & 0x7F, 2
        if n == 126:
            buf = self._recv_exact(s, 4, buf)
            n, pos = struct.unpack("!H", buf[2:4])[0], 4
        elif n == 127:
            buf = self._recv_exact(s, 10, buf)
            n, pos = struct.unpack("!Q", buf[2:10])[0], 10
        if b1 & 0x80:
            raise ConnectionError("server frame is masked")
        buf = self._recv_exact(s, pos + n, buf)
        return b0 & 0x0F, bytes(buf[pos:pos + n]), buf[pos + n:]

    @staticmethod
    def _frame(opcode, payload):
        mask = os.urandom(4)
        n = len(payload)
        if n <= 125:
            hdr = bytes([0x80 | opcode, 0x80 | n])
        elif n <= 0xFFFF:
            hdr = bytes([0x80 | opcode, 0x80 | 126]) + struct.pack("!H", n)
        else:
            hdr = bytes([0x80 | opcode, 0x80 | 127]) + struct.pack("!Q", n)
        masked = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
        return hdr + mask + masked

    def cycle(self, i):
        key = base64.b64encode(os.urandom(16))
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
        req = (b"GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
               b"Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
               b"Sec-WebSocket-Version: 13\r\n\r\n") % (
                   self.path.encode(), self.host.encode(), self.port, key)
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.settimeout(self.timeout)
            s.bind(("127.0.0.%d" % (1 + i % 16), 0))
            s.connect((self.host, self.port))
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.sendall(req)
            buf = bytearray()
            while b"\r\n\r\n" not in buf:
                chunk = s.recv(4096)
                if not chunk:
                    raise ConnectionError("EOF in the handshake")
                buf += chunk
            head, _, rest = bytes(buf).partition(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 101 ") or accept not in head:
                raise ConnectionError("handshake: %r" % head[:80])
            payload = (b"churn %d " % i) + b"x" * self.size
            s.sendall(self._frame(0x2, payload))
            op, data, rest = self._read_frame(s, bytearray(rest))
            if op != 0x2 or data != payload:
                raise ConnectionError("bad echo (op %d, %d bytes)" % (op, len(data)))
            s.sendall(self._frame(0x8, struct.pack("!H", 1000)))
            op, data, rest = self._read_frame(s, bytearray(rest))
            if op != 0x8 or data[:2] != struct.pack("!H", 1000):
                raise ConnectionError("bad close reply (op %d, %r)" % (op, data[:20]))
            if rest or s.recv(16):
                raise ConnectionError("data after the close")   # expected EOF
        finally:
            s.close()

    def worker(self, indexes, deadline):
        for i in indexes:
            if time.monotonic() > deadline:
                break
            try:
                self.cycle(i)
                ok = True
            except Exception as e:  # counted and reported
                ok = False
                err = "%s: %s" % (type(e).__name__, e)
            with self.lock:
                if ok:
                    self.done += 1
                else:
                    self.failures += 1
                    if len(self.first_errors) < 10:
                        self.first_errors.append("cycle %d: %s" % (i, err))

    def run(self, start, n, concurrency, deadline, progress=True):
        threads = []
        for t in range(concurrency):
            idx = range(start + t, start + n, concurrency)
            th = threading.Thread(target=self.worker, args=(idx, deadline), daemon=True)
            th.start()
            threads.append(th)
        t0 = time.monotonic()
        last = t0
        while any(th.is_alive() for th in threads):
            time.sleep(0.5)
            if progress and time.monotonic() - last >= 10:
                last = time.monotonic()
                with self.lock:
                    d, f = self.done, self.failures
                print("  ... %d cycles, %d failures, %.0f/s" % (d, f, d / (last - t0)))
                sys.stdout.flush()
        for th in threads:
            th.join(1)


# ---- a private server ----------------------------------------------------------------------

# A fixed number of children: with the suite's settings the MPM starts and
# stops children as the load changes, and a child stopped for being spare
# closes its WebSockets with 1001 (child_stopping), which churn would count
# as failures.  --scaling keeps the suite's settings to see that.
FIXED_MPM = {
    "event": "StartServers 4\nServerLimit 4\nThreadsPerChild 25\nMaxRequestWorkers 100\n"
             "MinSpareThreads 25\nMaxSpareThreads 100\n",
    "worker": "StartServers 4\nServerLimit 4\nThreadsPerChild 25\nMaxRequestWorkers 100\n"
              "MinSpareThreads 25\nMaxSpareThreads 100\n",
    "prefork": "StartServers 80\nServerLimit 80\nMaxRequestWorkers 80\n"
               "MinSpareServers 80\nMaxSpareServers 80\n",
}


def start_server(mpm, scaling=False):
    sys.path.insert(0, INTEG)
    import conftest  # the integration suite's environment (needs python3-pytest)
    d = tempfile.mkdtemp(prefix="mws-churn-tls-")
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    r = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                        "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=localhost"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(r.stderr)
    missing = [p for p in (conftest.MOD_WS, conftest.MOD_ECHO) if not os.path.exists(p)]
    if missing:
        raise RuntimeError("module not built: %s" % ", ".join(missing))
    env = conftest.MwsEnv(mpm, (cert, key))
    extra = "" if scaling else "<IfModule mpm_%s_module>\n%s</IfModule>\n" % (mpm, FIXED_MPM[mpm])
    env.write_conf(extra=extra)
    env.start()
    return env


def within(before, after, abs_margin, rel_margin):
    return after <= before + max(abs_margin, before * rel_margin)


def compare(before, after, a):
    bp, ap_ = before["fds_per_proc"], after["fds_per_proc"]
    common = sorted(set(bp) & set(ap_))
    new = sorted(set(ap_) - set(bp))
    gone = sorted(set(bp) - set(ap_))
    fds = (sum(bp[p] for p in common), sum(ap_[p] for p in common))
    thr = (sum(before["threads_per_proc"][p] for p in common),
           sum(after["threads_per_proc"][p] for p in common))
    rss = (sum(before["rss_per_proc"][p] for p in common),
           sum(after["rss_per_proc"][p] for p in common))
    rss_margin = max(a.rss_margin_mib * 1024, rss[0] * a.rss_margin_pct / 100.0)
    kids = [p for p in bp if p != before["parent"]] or list(bp)
    max_child_fds = max(bp[p] for p in kids)
    max_child_thr = max(before["threads_per_proc"][p] for p in kids)
    v = {
        "common": common, "new": new, "gone": gone, "fds": fds, "thr": thr, "rss": rss,
        "rss_margin": rss_margin, "max_child_fds": max_child_fds,
        "max_child_thr": max_child_thr,
        "ok_fds": fds[1] <= fds[0] + a.fd_margin,
        "ok_thr": thr[1] <= thr[0] + a.thread_margin,
        "ok_rss": rss[1] <= rss[0] + rss_margin,
        "ok_new": all(ap_[p] <= max_child_fds + a.fd_margin and
                      after["threads_per_proc"][p] <= max_child_thr + a.thread_margin
                      for p in new),
    }
    v["ok"] = v["ok_fds"] and v["ok_thr"] and v["ok_rss"] and v["ok_new"]
    return v


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", "--cycles", type=int, default=100000)
    ap.add_argument("-c", "--concurrency", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=50000,
                    help="cycles before the first figures (per-thread malloc arenas and "
                         "allocators of every worker grow to their working size first)")
    ap.add_argument("--size", type=int, default=64, help="echo payload bytes (+ a counter)")
    ap.add_argument("--mpm", default="event", choices=("event", "worker", "prefork"),
                    help="MPM of the private server")
    ap.add_argument("--scaling", action="store_true",
                    help="private server: the suite's MPM settings (children come and go)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, help="use a running server instead of starting one")
    ap.add_argument("--pid", type=int, help="its parent pid (with --port)")
    ap.add_argument("--path", default="/echo")
    ap.add_argument("--max-seconds", type=float, default=3600.0, help="bound of the run")
    ap.add_argument("--settle", type=float, default=30.0,
                    help="seconds to wait for the figures to come back")
    ap.add_argument("--fd-margin", type=int, default=4, help="extra open fds allowed")
    ap.add_argument("--thread-margin", type=int, default=2, help="extra threads allowed")
    ap.add_argument("--rss-margin-mib", type=float, default=8.0,
                    help="extra RSS allowed (MiB, or --rss-margin-pct of the start if larger)")
    ap.add_argument("--rss-margin-pct", type=float, default=10.0)
    ap.add_argument("--timeout", type=float, default=10.0, help="per-socket timeout")
    a = ap.parse_args()
    if a.cycles < 1 or a.concurrency < 1 or a.warmup < a.concurrency or (a.port is None) != (a.pid is None):
        ap.error("give --port and --pid together; cycles and concurrency >= 1")

    env = None
    if a.port is None:
        try:
            env = start_server(a.mpm, a.scaling)
        except Exception as e:
            print("cannot start the server: %s" % e, file=sys.stderr)
            return 2
        port, parent = env.http_port, env.pid
        print("server: %s MPM, root %s, port %d, pid %d" % (a.mpm, env.root, port, parent))
    else:
        port, parent = a.port, a.pid
    rc = 0
    try:
        cy = Cycler(a.host, port, a.path, a.size, a.timeout)
        # warm-up: every thread/child has served and allocated what it keeps
        # (measured on event: +35 MiB over the first 50000 cycles of a fresh
        # server, then +1.0 and +0.5 MiB over the next two rounds of 50000)
        cy.run(10 ** 9, a.warmup, a.concurrency, time.monotonic() + 600, progress=False)
        if cy.failures:
            print("warm-up failed: %s" % "; ".join(cy.first_errors))
            return 1
        time.sleep(2.0)
        before = figures(parent)
        show("before", before)
        cy = Cycler(a.host, port, a.path, a.size, a.timeout)
        t0 = time.monotonic()
        cy.run(0, a.cycles, a.concurrency, t0 + a.max_seconds)
        took = time.monotonic() - t0
        print("cycles: %d of %d done, %d failed, %.1f s, %.0f cycles/s (concurrency %d)" % (
            cy.done, a.cycles, cy.failures, took, cy.done / took if took else 0, a.concurrency))
        for e in cy.first_errors:
            print("  " + e)
        # settle: lingering closes, idle threads going back.  The MPM may
        # have started children during the run (or stopped some): the
        # processes alive before and after must be back to their figures,
        # a new child may hold what the largest child held at the start.
        deadline = time.monotonic() + a.settle
        while True:
            after = figures(parent)
            verdict = compare(before, after, a)
            if verdict["ok"] or time.monotonic() > deadline:
                break
            time.sleep(1.0)
        show("after", after)
        print("same processes (%d): open fds %d -> %d (%+d, margin %d)  threads %d -> %d "
              "(%+d, margin %d)  RSS %.1f -> %.1f MiB (%+.1f, margin %.1f)" % (
                  len(verdict["common"]), verdict["fds"][0], verdict["fds"][1],
                  verdict["fds"][1] - verdict["fds"][0], a.fd_margin,
                  verdict["thr"][0], verdict["thr"][1], verdict["thr"][1] - verdict["thr"][0],
                  a.thread_margin, verdict["rss"][0] / 1024.0, verdict["rss"][1] / 1024.0,
                  (verdict["rss"][1] - verdict["rss"][0]) / 1024.0, verdict["rss_margin"] / 1024.0))
        if verdict["new"] or verdict["gone"]:
            print("children started during the run: %s; ended: %s (a new child is checked "
                  "against the largest child at the start: fds <= %d, threads <= %d)" % (
                      verdict["new"] or "none", verdict["gone"] or "none",
                      verdict["max_child_fds"] + a.fd_margin,
                      verdict["max_child_thr"] + a.thread_margin))
        ok_fds, ok_thr, ok_rss, ok_new = (verdict["ok_fds"], verdict["ok_thr"],
                                          verdict["ok_rss"], verdict["ok_new"])
        problems = []
        if cy.done != a.cycles:
            problems.append("%d of %d cycles did not complete" % (a.cycles - cy.done, a.cycles))
        if not ok_fds:
            problems.append("open fds not back")
        if not ok_thr:
            problems.append("threads not back")
        if not ok_rss:
            problems.append("RSS not back")
        if not ok_new:
            problems.append("a child started during the run holds more than a fresh one")
        print("RESULT: " + ("OK" if not problems else "FAIL: " + "; ".join(problems)))
        rc = 1 if problems else 0
    finally:
        if env is not None:
            bad = env.new_log_errors(reset=True)
            env.stop()
            bad += env.pending_errors
            if bad:
                print("error log:\n" + "\n".join(bad[:20]))
                rc = 1
            if rc == 0 and not os.environ.get("MWS_KEEP"):
                import shutil
                shutil.rmtree(env.root, ignore_errors=True)
            else:
                print("server root kept: %s" % env.root)
    return rc


if __name__ == "__main__":
    sys.exit(main())

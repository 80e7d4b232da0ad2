"""Helpers of the hardening tests (test_11xx_*.py): the server's processes
and what they hold (RSS, descriptors, threads, from /proc), raw upgrade
requests with chosen headers, and clients bound to another loopback
address.
"""
import os
import re
import socket
import time

import wsclient
from apiutil import child_pids


def httpd_pids(env):
    """The parent and its children (the children run as www-data; the tests
    run as root, so /proc of every one is readable)."""
    if env.pid is None:
        return []
    return [env.pid] + sorted(child_pids(env.pid))


def _status_field(pid, field):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def rss_kib(pids):
    """Sum of VmRSS (KiB) over pids."""
    return sum(_status_field(p, "VmRSS") for p in pids)


def threads(pids):
    return sum(_status_field(p, "Threads") for p in pids)


def fd_count(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return 0


def fds(pids):
    """{pid: open descriptors}."""
    return {p: fd_count(p) for p in pids}


def snapshot(env):
    pids = httpd_pids(env)
    return {"pids": pids, "rss": rss_kib(pids), "threads": threads(pids), "fds": fds(pids)}


def fds_back(env, base, margin=0, timeout=10.0):
    """Wait until every process of base has at most its base count of
    descriptors (+margin); returns {pid: (base, now)} of those that do not."""
    deadline = time.monotonic() + timeout
    while True:
        now = fds(list(base))
        over = {p: (base[p], n) for p, n in now.items() if n > base[p] + margin and n}
        if not over or time.monotonic() > deadline:
            return over
        time.sleep(0.1)


def upgrade(env, path, headers=(), host=None, timeout=5.0):
    """A handshake with extra headers (e.g. Origin) and a chosen Host;
    returns the HttpResponse (the connection is closed)."""
    raw = wsclient.build_request("GET", path,
                                 host=host or "localhost",
                                 headers=wsclient.upgrade_headers() + list(headers))
    return env.http(raw, timeout=timeout)


def conn_from(env, src_ip, timeout=wsclient.DEFAULT_TIMEOUT):
    """A connection to the server from src_ip (any 127.x address)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.bind((src_ip, 0))
    s.connect((env.host, env.http_port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return wsclient.Conn(s, timeout)


def ws_rcvbuf(env, path="/echo", rcvbuf=None):
    """A WebSocket whose client socket has a receive buffer of rcvbuf bytes
    (None: the system's), so that the server's socket fills up soon when
    the client does not read."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(10)
    s.connect((env.host, env.http_port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return wsclient.WsClient.connect(env.host, env.http_port, path,
                                     conn=wsclient.Conn(s, 10))


def ws_from(env, path, src_ip):
    return wsclient.WsClient.connect(env.host, env.http_port, path,
                                     conn=conn_from(env, src_ip))


def upgrade_from(env, path, src_ip):
    c = conn_from(env, src_ip)
    try:
        c.send(wsclient.build_request("GET", path, host="localhost",
                                      headers=wsclient.upgrade_headers()))
        return c.read_response()
    finally:
        c.close()


def close_all(clients):
    """Close each WebSocket with 1000 and wait (briefly) for the server's
    close; errors do not stop the others."""
    for ws in clients:
        try:
            ws.send_close(1000)
            ws.expect_close("any", timeout=5, reply=False)
        except Exception:
            pass
        ws.close()


def wait_eof(ws, timeout):
    """Read (and keep) frames until EOF; returns (seconds, frames) or
    raises socket.timeout when the server keeps the connection."""
    t0 = time.monotonic()
    frames = []
    deadline = t0 + timeout
    while True:
        try:
            f = ws.recv_frame(max(0.0, deadline - time.monotonic()))
        except wsclient.WsError:
            # EOF inside a frame counts as EOF
            return time.monotonic() - t0, frames
        if f is None:
            return time.monotonic() - t0, frames
        frames.append(f)


def error_lines(env, offset, pattern):
    rx = re.compile(pattern)
    return [ln for ln in env.error_log_since(offset).splitlines() if rx.search(ln)]

"""A local attacker on the cross-child publish sockets of mod_websocket,
run by test_1155_pubsub_security.py as the server's user (www-data), as a
CGI or PHP script of the same server would run:

    runuser -u www-data -- /usr/bin/python3 pubsub_attacker.py MODE JSON

Modes (JSON: the arguments; the result is one JSON object on stdout):
  forge  {"parent", "dir", "payloads": [hex...]}
         connect to every child's socket and send each payload
  hold   {"parent", "dir", "per_child", "seconds", "payload": hex}
         keep per_child connections open to every child (new children
         too) and send the payload on them as fast as they take it
  squat  {"path", "seconds"}
         replace a child's socket with one of our own and read what
         publishers send there
  connect {"path"}
         only try to connect (as a user outside the server)
  nofile {"pid", "soft"}
         set the soft RLIMIT_NOFILE of a child (a process of the same user
         may); returns the limits it had
"""
import errno
import json
import os
import re
import socket
import sys
import time


def children(parent):
    """Pids of parent's children: /proc/PID/stat is readable by anyone."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                st = f.read()
        except OSError:
            continue
        m = re.match(r"\d+ \(.*\) \S (\d+)", st)
        if m and int(m.group(1)) == parent:
            out.append(int(d))
    return sorted(out)


def sock_connect(path, nonblock=False):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        s.connect(path)
    except OSError:
        s.close()
        raise
    if nonblock:
        s.setblocking(False)
    return s


def forge(a):
    res = {"children": [], "connected": 0, "sent": 0, "errors": []}
    socks = []
    for pid in children(a["parent"]):
        res["children"].append(pid)
        path = os.path.join(a["dir"], "%d.sock" % pid)
        try:
            s = sock_connect(path)
        except OSError as e:
            res["errors"].append("connect %d: %s" % (pid, e))
            continue
        res["connected"] += 1
        socks.append(s)
        for p in a["payloads"]:
            try:
                s.send(bytes.fromhex(p))
                res["sent"] += 1
            except OSError as e:
                res["errors"].append("send %d: %s" % (pid, e))
                break
    time.sleep(0.5)
    for s in socks:
        s.close()
    return res


def hold(a):
    payload = bytes.fromhex(a["payload"])
    per_child = a["per_child"]
    held = {}            # pid -> [sockets]
    res = {"connects": 0, "connect_errors": 0, "sends": 0, "send_errors": 0,
           "max_held": 0, "children": []}
    deadline = time.monotonic() + a["seconds"]
    next_scan = 0
    errs = {}
    while time.monotonic() < deadline:
        if time.monotonic() >= next_scan:
            for pid in children(a["parent"]):
                held.setdefault(pid, [])
                if pid not in res["children"]:
                    res["children"].append(pid)
            next_scan = time.monotonic() + 0.1
        for pid, socks in held.items():
            while len(socks) < per_child:
                try:
                    socks.append(sock_connect(os.path.join(a["dir"], "%d.sock" % pid),
                                              nonblock=True))
                    res["connects"] += 1
                except OSError as e:
                    res["connect_errors"] += 1
                    errs[e.strerror] = errs.get(e.strerror, 0) + 1
                    break
            res["max_held"] = max(res["max_held"], len(socks))
            for s in list(socks):
                try:
                    s.send(payload)
                    res["sends"] += 1
                except BlockingIOError:
                    pass
                except OSError:
                    res["send_errors"] += 1
                    socks.remove(s)
                    s.close()
        time.sleep(0.001)
    res["errors"] = errs
    return res


def squat(a):
    res = {"unlinked": False, "bound": False, "received": [], "accepted": 0}
    path = a["path"]
    try:
        os.unlink(path)
        res["unlinked"] = True
    except OSError as e:
        res["unlink_error"] = e.strerror
    try:
        ls = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ls.bind(path)
        os.chmod(path, 0o777)
        ls.listen(64)
        res["bound"] = True
    except OSError as e:
        res["bind_error"] = e.strerror
        return res
    print("ready", file=sys.stderr, flush=True)
    ls.settimeout(0.1)
    conns = []
    deadline = time.monotonic() + a["seconds"]
    while time.monotonic() < deadline:
        try:
            c, _ = ls.accept()
            c.setblocking(False)
            conns.append(c)
            res["accepted"] += 1
        except socket.timeout:
            pass
        for c in conns:
            try:
                while True:
                    data = c.recv(1 << 17)
                    if not data:
                        break
                    res["received"].append(data.hex())
            except BlockingIOError:
                pass
            except OSError:
                pass
    ls.close()
    try:
        os.unlink(path)
    except OSError:
        pass
    return res


def connect_only(a):
    try:
        s = sock_connect(a["path"])
        s.close()
        return {"connected": True}
    except OSError as e:
        return {"connected": False, "errno": errno.errorcode.get(e.errno, str(e.errno))}


def nofile(a):
    import resource
    old = resource.prlimit(a["pid"], resource.RLIMIT_NOFILE)
    resource.prlimit(a["pid"], resource.RLIMIT_NOFILE, (a["soft"], old[1]))
    return {"old": list(old)}


if __name__ == "__main__":
    mode, args = sys.argv[1], json.loads(sys.argv[2])
    fn = {"forge": forge, "hold": hold, "squat": squat, "connect": connect_only,
          "nofile": nofile}[mode]
    print(json.dumps(fn(args)))

"""A local attacker on the channels of mod_websocket, run by
test_1155_pubsub_security.py as the server's user (www-data), as a CGI or
PHP script of the same server would run:

    runuser -u www-data -- /usr/bin/python3 pubsub_attacker.py MODE JSON

The channels travel through a log in anonymous shared memory that the
parent maps before it forks the children (glue/mws_bus.c): there is no
file or socket to open.  What is left to try:

Modes (JSON: the arguments; the result is one JSON object on stdout):
  peek   {"pid", "start", "end"}
         read or write the log of child pid, mapped at start-end, through
         /proc: maps, mem, map_files; attach with ptrace
  stop   {"pid", "seconds"}
         stop a child with SIGSTOP (a process of the same user may) and
         let it run again after seconds
  nofile {"pid", "soft"}
         set the soft RLIMIT_NOFILE of a child (a process of the same user
         may); returns the limits it had
"""
import ctypes
import errno
import json
import os
import re
import signal
import sys
import time


def _try(fn):
    try:
        return {"ok": True, "value": fn()}
    except OSError as e:
        return {"ok": False, "errno": errno.errorcode.get(e.errno, str(e.errno))}


def peek(a):
    pid, start, end = a["pid"], a["start"], a["end"]
    res = {}

    def maps():
        with open("/proc/%d/maps" % pid) as f:
            return len(f.read())
    res["maps"] = _try(maps)

    def mem_read():
        with open("/proc/%d/mem" % pid, "rb") as f:
            f.seek(start)
            return f.read(64).hex()
    res["mem_read"] = _try(mem_read)

    def mem_write():
        fd = os.open("/proc/%d/mem" % pid, os.O_WRONLY)
        try:
            os.lseek(fd, start + 4096, os.SEEK_SET)
            return os.write(fd, b"forged")
        finally:
            os.close(fd)
    res["mem_write"] = _try(mem_write)

    def map_file():
        path = "/proc/%d/map_files/%x-%x" % (pid, start, end)
        fd = os.open(path, os.O_RDWR)
        os.close(fd)
        return path
    res["map_files"] = _try(map_file)

    libc = ctypes.CDLL(None, use_errno=True)
    PTRACE_ATTACH, PTRACE_DETACH = 16, 17
    rc = libc.ptrace(PTRACE_ATTACH, pid, None, None)
    if rc == 0:
        time.sleep(0.1)
        libc.ptrace(PTRACE_DETACH, pid, None, None)
        res["ptrace"] = {"ok": True}
    else:
        e = ctypes.get_errno()
        res["ptrace"] = {"ok": False, "errno": errno.errorcode.get(e, str(e))}
    return res


def stop(a):
    os.kill(a["pid"], signal.SIGSTOP)
    try:
        time.sleep(a["seconds"])
    finally:
        os.kill(a["pid"], signal.SIGCONT)
    return {"stopped": a["pid"]}


def nofile(a):
    import resource
    old = resource.prlimit(a["pid"], resource.RLIMIT_NOFILE)
    resource.prlimit(a["pid"], resource.RLIMIT_NOFILE, (a["soft"], old[1]))
    return {"old": list(old)}


if __name__ == "__main__":
    mode, args = sys.argv[1], json.loads(sys.argv[2])
    fn = {"peek": peek, "stop": stop, "nofile": nofile}[mode]
    print(json.dumps(fn(args)))

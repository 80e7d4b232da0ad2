#!/usr/bin/env python3
"""The glue's calls go downward only (docs/design.md, "Layers").

Each file of mod_websocket.c + glue/ has a place in LAYERS, top first.  A
function defined in one file and called from a file above it is fine; a
call from a file below it (or a file not listed) fails the check.  Upward
needs go through what the upper file installs (mws_driver_ops,
mws_conn_on_end, callbacks), which this check does not see as calls.
Run by `make check`; prints the offending calls.
"""
import os
import re
import sys

LAYERS = [
    "mod_websocket.c", "glue/mws_status.c",
    "glue/mws_config.c", "glue/mws_instance.c", "glue/mws_origin.c",
    "glue/mws_host.c", "glue/mws_linemem.c", "glue/mws_broker.c",
    "glue/mws_channels.c", "glue/mws_bus.c",
    "glue/mws_registry.c",
    "glue/mws_driver.c", "glue/mws_park.c", "glue/mws_stay.c",
    "glue/mws_wakeq.c",
    "glue/mws_blocking.c",
    "glue/mws_pass.c", "glue/mws_dispatch.c", "glue/mws_write.c",
    "glue/mws_conn.c", "glue/mws_timer.c", "glue/mws_queue.c",
    "glue/mws_handler.c", "glue/mws_limits.c", "glue/mws_accesslog.c",
    "glue/mws_stats.c", "glue/mws_pmd.c",
]

DEF = re.compile(r"^(?!static)[A-Za-z_][\w \*]*?\b(mws_\w+)\s*\(", re.M)
DATA = re.compile(r"^(?!static)(?:const )?[A-Za-z_][\w \*]*?\b(mws_\w+)\s*(?:=|;|\[)", re.M)


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r'"(?:\\.|[^"\\])*"', '""', text)


def main(src):
    texts = {}
    for f in LAYERS:
        with open(os.path.join(src, f)) as fh:
            texts[f] = strip_comments(fh.read())
    listed = set(LAYERS)
    actual = {"mod_websocket.c"} | {"glue/" + n for n in os.listdir(os.path.join(src, "glue"))
                                     if n.endswith(".c")}
    bad = ["%s is not in LAYERS (tests/layers/check_layers.py)" % f
           for f in sorted(actual - listed)]
    owner = {}
    for f, t in texts.items():
        for m in DEF.finditer(t):
            owner.setdefault(m.group(1), f)
        for m in DATA.finditer(t):
            owner.setdefault(m.group(1), f)
    rank = {f: i for i, f in enumerate(LAYERS)}
    for f, t in texts.items():
        for name in sorted(set(re.findall(r"\b(mws_\w+)\b", t))):
            o = owner.get(name)
            if o and o != f and rank[o] < rank[f]:
                bad.append("%s uses %s of %s, a layer above it" % (f, name, o))
    for line in bad:
        print("layers: " + line)
    if bad:
        return 1
    print("layers: %d files, every call goes downward" % len(LAYERS))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "."))

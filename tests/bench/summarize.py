#!/usr/bin/env python3
"""Summarize the raw wsload lines of tests/bench/run.sh.

    summarize.py RAW

Each raw line is key=value pairs; `peer`, `test` and `rep` come from the
run's --tag.  Prints medians per (test, peer), the ratios of mod_websocket
(peer mws) to its peers, and the targets of the scaling issue beside the
figures.  Standard library only.
"""
import statistics
import sys

PEERS = ("mws", "node", "proxy")
ECHO_TESTS = [
    ("echo64_c1", "echo 64 B, 1 conn"),
    ("echo64_c10", "echo 64 B, 10 conns"),
    ("echo64_c100", "echo 64 B, 100 conns"),
    ("echo64_c100_d10", "echo 64 B, 100 conns, depth 10"),
    ("echo16k_c10", "echo 16 KiB, 10 conns"),
]
# the fan-out-at-capacity sets: (set, its step lines' prefix, label)
FANCAP_SETS = [
    ("fanouttls", "fantls_step", "broadcast capacity over TLS (wss://)"),
    ("fanout10k", "fan10k_step", "broadcast capacity"),
]
FANCAP_TARGET = 3.0      # the issue: >= 3x Node ws, p99 below it
RSS_TARGET = 8192        # the 8 KiB
RSS_FLOOR_OK = 8704      # within 3% of the ~8,400 B floor (notes/event-mpm.md)
INSTR_TARGET = 2500


def parse(path):
    rows = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            d = {}
            for tok in line.split():
                if "=" in tok:
                    k, v = tok.split("=", 1)
                    d[k] = v
            if "peer" in d and "test" in d:
                rows.append(d)
    return rows


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def median(rows, key, only_ok=True):
    vals = [num(r.get(key)) for r in rows if r.get("ok") == "1" or not only_ok]
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def fmt(v, unit=""):
    if v is None:
        return "n/a"
    if abs(v) >= 100:
        return "{:,.0f}{}".format(v, unit)
    return "{:.2f}{}".format(v, unit)


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def fmt_ratio(r):
    return "n/a" if r is None else "{:.2f}x".format(r)


def table(header, lines):
    widths = [max(len(str(x)) for x in col) for col in zip(header, *lines)]
    out = ["  ".join(str(h).ljust(w) for h, w in zip(header, widths))]
    out.append("  ".join("-" * w for w in widths))
    for ln in lines:
        out.append("  ".join(str(x).ljust(w) for x, w in zip(ln, widths)))
    return "\n".join(out)


def main():
    rows = parse(sys.argv[1])
    by = {}
    for r in rows:
        by.setdefault((r["test"], r["peer"]), []).append(r)

    def get(test, peer):
        return by.get((test, peer), [])

    def okcount(test, peer):
        rs = get(test, peer)
        return "{}/{}".format(sum(1 for r in rs if r.get("ok") == "1"), len(rs))

    # ---- headline ----------------------------------------------------------
    print("## headline: mod_websocket (mws) vs its peers, medians")
    head = []
    for test, label in ECHO_TESTS:
        m = {p: median(get(test, p), "msgs_per_s") for p in PEERS}
        head.append((label + ", msgs/s", fmt(m["mws"]), fmt(m["node"]), fmt(m["proxy"]),
                     fmt_ratio(ratio(m["mws"], m["node"])),
                     fmt_ratio(ratio(m["mws"], m["proxy"]))))
    hold_tests = sorted({t for (t, p) in by if t.startswith("hold")},
                        key=lambda t: int(t[4:]))
    for test in hold_tests:
        m = {p: median(get(test, p), "rss_per_conn_b", False) for p in PEERS}
        head.append((test.replace("hold", "hold ") + ", RSS B/conn", fmt(m["mws"]),
                     fmt(m["node"]), fmt(m["proxy"]),
                     fmt_ratio(ratio(m["node"], m["mws"])),
                     fmt_ratio(ratio(m["proxy"], m["mws"]))))
    bc_tests = sorted({t for (t, p) in by if t.startswith("bcast")})
    for test in bc_tests:
        m = {p: median(get(test, p), "deliveries_per_s") for p in PEERS}
        head.append((test.replace("bcast", "broadcast to ") + ", deliveries/s",
                     fmt(m["mws"]), fmt(m["node"]), "-",
                     fmt_ratio(ratio(m["mws"], m["node"])), "-"))
    cap = {p: get("fanoutcap", p) for p in PEERS}
    if any(cap.values()):
        m = {p: (median(cap[p], "deliveries_per_s") if cap[p] else None) for p in PEERS}
        head.append(("broadcast capacity to %s (highest sustained), deliveries/s"
                     % (cap["mws"] or cap["node"])[0].get("receivers", "?"),
                     fmt(m["mws"]), fmt(m["node"]), "-",
                     fmt_ratio(ratio(m["mws"], m["node"])), "-"))
    for fset, _step, label in FANCAP_SETS:
        fc = {p: get(fset, p) for p in PEERS}
        if not (fc["mws"] or fc["node"]):
            continue
        m = {p: median(fc[p], "deliveries_per_s") for p in PEERS}
        head.append(("%s to %s (highest sustained, median of %d rounds), deliveries/s"
                     % (label, (fc["mws"] or fc["node"])[0].get("receivers", "?"),
                        max(len(fc["mws"]), len(fc["node"]))),
                     fmt(m["mws"]), fmt(m["node"]), "-",
                     fmt_ratio(ratio(m["mws"], m["node"])), "-"))
    im = {p: median(get("instr", p), "instr_per_msg") for p in PEERS}
    if any(v is not None for v in im.values()):
        head.append(("instructions per 64 B echo", fmt(im["mws"]), fmt(im["node"]), "-",
                     fmt_ratio(ratio(im["node"], im["mws"])), "-"))
    print(table(("figure", "mws", "node", "proxy", "mws vs node", "mws vs proxy"), head))
    print("(ratios: above 1.00x means mws is better -- more msgs/s or deliveries/s,"
          " fewer bytes or instructions)")
    print()

    # ---- echo ----------------------------------------------------------------
    print("## echo (medians; latency in microseconds)")
    lines = []
    for test, label in ECHO_TESTS:
        for p in PEERS:
            rs = get(test, p)
            if not rs:
                continue
            lines.append((label, p, fmt(median(rs, "msgs_per_s")),
                          fmt(median(rs, "mb_per_s")), fmt(median(rs, "p50_us")),
                          fmt(median(rs, "p99_us")), fmt(median(rs, "p999_us")),
                          okcount(test, p)))
    print(table(("test", "peer", "msgs/s", "MB/s", "p50", "p99", "p99.9", "ok runs"), lines))
    print()

    # ---- hold ----------------------------------------------------------------
    if hold_tests:
        print("## hold (RSS of the server's whole process tree; proxy = httpd + node)")
        lines = []
        for test in hold_tests:
            for p in PEERS:
                for r in get(test, p):
                    lines.append((test[4:], p, r.get("held", "?"), r.get("pongs", "?"),
                                  r.get("rss_before_kb", "?"), r.get("rss_held_kb", "?"),
                                  r.get("rss_per_conn_b", "?"),
                                  r.get("threads_before", "?"), r.get("threads_held", "?"),
                                  r.get("procs_held", "?"),
                                  "{}/{}/{}".format(int(num(r.get("hs_timeout")) or 0) +
                                                    int(num(r.get("not_started")) or 0),
                                                    r.get("rejected_503", "?"),
                                                    r.get("dropped", "?"))))
        print(table(("conns", "peer", "held", "pongs", "RSS before KB", "RSS held KB",
                     "B/conn", "threads before", "threads held", "procs",
                     "hung/503/dropped"), lines))
        print("(hung: no answer to the upgrade within 10 s, or never tried because"
              " the open phase ran out of time)")
        print()

    # ---- broadcast -------------------------------------------------------------
    if bc_tests:
        print("## broadcast (one publisher, closed loop; latency in microseconds)")
        lines = []
        for test in bc_tests:
            for p in PEERS:
                rs = get(test, p)
                if not rs:
                    continue
                if all(r.get("skipped") for r in rs):
                    lines.append((test[5:], p, "skipped: " + rs[0]["skipped"],
                                  "", "", "", "", "", "", "", ""))
                    continue
                lines.append((test[5:], p, fmt(median(rs, "deliveries_per_s")),
                              fmt(median(rs, "lat_p50_us")), fmt(median(rs, "lat_p99_us")),
                              fmt(median(rs, "fanout_p50_us")),
                              fmt(median(rs, "fanout_p99_us")),
                              fmt(median(rs, "server_cpu_us_per_delivery")),
                              fmt(median(rs, "load_cpu_pct")),
                              "/".join(r.get("delivered", "?") + ":" + r.get("expected", "?")
                                       for r in rs),
                              okcount(test, p)))
        print(table(("receivers", "peer", "deliveries/s", "lat p50", "lat p99",
                     "all-received p50", "all-received p99",
                     "server CPU us/delivery", "wsload CPU %", "delivered:expected",
                     "ok runs"), lines))
        print("(server CPU: user + system time of the server's processes during the"
              " measured phase / deliveries; wsload CPU near 100% means the load"
              " generator, not the server, sets the pace)")
        print()

    # ---- fan-out at capacity: every round, and the p99 at equal load --------------
    fan_verdicts = []
    for fset, step, label in FANCAP_SETS:
        fc = {p: get(fset, p) for p in ("mws", "node")}
        if not (fc["mws"] or fc["node"]):
            continue
        nrecv = (fc["mws"] or fc["node"])[0].get("receivers", "?")
        print("## %s to %s receivers: each round (rates stepped up; p99 in"
              " microseconds)" % (label, nrecv))
        lines = []
        for p in ("mws", "node"):
            for r in fc[p]:
                if r.get("skipped"):
                    lines.append((r.get("rep", "?"), p, "skipped: " + r["skipped"],
                                  "", "", "", ""))
                    continue
                lines.append((r.get("rep", "?"), p, r.get("max_rate", "?"),
                              fmt(num(r.get("deliveries_per_s"))),
                              fmt(num(r.get("fanout_p99_us"))),
                              r.get("limit", "?") + (" (wsload at 100% at that rate)"
                                                     if r.get("load_limited_at_max") == "1"
                                                     else "")))
        print(table(("round", "peer", "highest rate/s", "deliveries/s",
                     "all-received p99", "what ended the stepping"), lines))
        # p99 at equal offered load: the highest rate both peers sustained
        # in the same round, every step line of that rate (medians)
        steps = {}
        for p in ("mws", "node"):
            for r in rows:
                t = r.get("test", "")
                if r.get("peer") == p and t.startswith(step + "_r") and r.get("ok") == "1":
                    steps.setdefault(int(t[len(step) + 2:]), {}).setdefault(p, []).append(r)
        best = {p: [num(r.get("max_rate")) or 0 for r in fc[p]] for p in ("mws", "node")}
        common = min(statistics.median(best["mws"]) if best["mws"] else 0,
                     statistics.median(best["node"]) if best["node"] else 0)
        both = [k for k in steps if len(steps[k]) == 2]
        cr = max([k for k in both if k <= common] or [0])
        how = "the highest rate both sustained"
        if not cr and both:
            # a peer sustained no offered rate: the lowest rate both
            # delivered in full, whatever its p99
            cr = min(both)
            how = "the lowest rate both delivered in full; a peer sustained none"
        pm = pn = None
        if cr:
            pm = median(steps[cr]["mws"], "fanout_p99_us")
            pn = median(steps[cr]["node"], "fanout_p99_us")
            lm = median(steps[cr]["mws"], "lat_p99_us")
            ln = median(steps[cr]["node"], "lat_p99_us")
            cm = median(steps[cr]["mws"], "server_cpu_us_per_delivery")
            cn = median(steps[cr]["node"], "server_cpu_us_per_delivery")
            print("at %d publishes/s (%s; medians of %d/%d runs): all-received"
                  " p99 mws %s vs node %s us; per-delivery p99 mws %s vs node %s us;"
                  " server CPU per delivery mws %s vs node %s us"
                  % (cr, how, len(steps[cr]["mws"]), len(steps[cr]["node"]),
                     fmt(pm), fmt(pn), fmt(lm), fmt(ln), fmt(cm), fmt(cn)))
        limits = {p: sorted({r.get("limit", "?") for r in fc[p]}) for p in ("mws", "node")}
        print("what ended the stepping: mws %s, node %s (wsload: the load generator, not"
              " the server, was at 100%% of its CPUs; rates: every offered rate was"
              " sustained, capacity is at least that)"
              % ("/".join(limits["mws"]) or "-", "/".join(limits["node"]) or "-"))
        print()
        a = median(fc["mws"], "deliveries_per_s")
        b = median(fc["node"], "deliveries_per_s")
        rr = ratio(a, b)
        lower = " (mws at least: %s)" % "/".join(limits["mws"]) \
            if set(limits["mws"]) & {"wsload", "rates"} else ""
        fan_verdicts.append(("%s to %s >= 3x node (highest sustained)" % (label, nrecv),
                             fmt_ratio(rr) + lower if rr is not None else
                             "mws %s vs node %s deliveries/s" % (fmt(a), fmt(b)),
                             ("n/a (node sustained no offered rate)" if b == 0 and a
                              else "n/a") if rr is None else
                             ("met" if rr >= FANCAP_TARGET else "not met")))
        fan_verdicts.append(("%s to %s: p99 below node at equal load" % (label, nrecv),
                             "{} vs {} us at {}/s".format(fmt(pm), fmt(pn), cr) if cr else "-",
                             "n/a" if pm is None or pn is None else
                             ("met" if pm < pn else "not met")))

    # ---- instructions ----------------------------------------------------------
    irs = get("instr", "mws") + get("instr", "node")
    if irs:
        print("## user-space instructions per echoed 64-byte message"
              " (callgrind, (Ir@5000 - Ir@1000) / 4000)")
        lines = []
        for r in irs:
            lines.append((r["peer"], r.get("ir1", "-"), r.get("ir2", "-"),
                          r.get("instr_per_msg", r.get("error", r.get("skipped", "-")))))
        print(table(("peer", "Ir 1,000 msgs", "Ir 5,000 msgs", "per message"), lines))
        print()

    # ---- targets -----------------------------------------------------------------
    print("## the scaling issue's targets")
    tl = []
    big = hold_tests[-1] if hold_tests else None
    if big:
        r = (get(big, "mws") or [{}])[0]
        held = num(r.get("held"))
        n = int(big[4:])
        per = num(r.get("rss_per_conn_b"))
        node_per = median(get(big, "node"), "rss_per_conn_b", False)
        tl.append(("15,000 idle WebSockets held, <= 4 x 25 threads",
                   "held {} of {} ({} threads)".format(r.get("held", "?"), n,
                                                       r.get("threads_held", "?")),
                   "not measured at 15,000" if n < 15000 else
                   ("met" if held == n else "not met")))
        tl.append(("RSS per idle WebSocket <= 8 KiB (8.5 KiB = within 3% of the floor)",
                   "{} B (node {} B)".format(fmt(per), fmt(node_per)),
                   "n/a" if per is None else
                   ("met" if per <= RSS_TARGET else
                    "met (within floor)" if per <= RSS_FLOOR_OK else
                    "not met ({:.1f}x)".format(per / RSS_TARGET))))
    oc = get("overcap", "mws")
    if oc and not oc[0].get("skipped"):
        r = oc[0]
        cap = int(num(r.get("cap")) or 0)
        tries = int(num(r.get("conns")) or 0)
        hung = int(num(r.get("hs_timeout")) or 0) + int(num(r.get("not_started")) or 0)
        r503 = int(num(r.get("rejected_503")) or 0)
        held = int(num(r.get("held")) or 0)
        tl.append(("past capacity: upgrades refused promptly (503)",
                   "cap {}, {} tried: {} held, {} got 503, {} hung".format(
                       cap, tries, held, r503, hung),
                   "met" if hung == 0 and held == cap and r503 == tries - cap
                   else "not met"))
    else:
        tl.append(("past capacity: upgrades refused promptly (503)", "-",
                   "not exercised" + (" (" + oc[0]["skipped"] + ")" if oc else "")))
    v = im.get("mws")
    tl.append(("<= 2,500 instructions per 64 B echo", fmt(v),
               "n/a" if v is None else ("met" if v <= INSTR_TARGET else
                                        "not met ({:.2f}x)".format(v / INSTR_TARGET))))
    a = median(get("echo64_c100_d10", "mws"), "msgs_per_s")
    b = median(get("echo64_c100_d10", "node"), "msgs_per_s")
    rr = ratio(a, b)
    tl.append(("echo 100 conns depth 10 >= 1.5x node", fmt_ratio(rr),
               "n/a" if rr is None else ("met" if rr >= 1.5 else "not met")))
    for test in bc_tests:
        a = median(get(test, "mws"), "deliveries_per_s")
        b = median(get(test, "node"), "deliveries_per_s")
        rr = ratio(a, b)
        pa = median(get(test, "mws"), "lat_p99_us")
        pb = median(get(test, "node"), "lat_p99_us")
        tl.append(("broadcast >= 3x node deliveries/s", fmt_ratio(rr),
                   "n/a" if rr is None else ("met" if rr >= 3 else "not met")))
        tl.append(("broadcast p99 latency below node", "{} vs {} us".format(fmt(pa), fmt(pb)),
                   "n/a" if pa is None or pb is None else ("met" if pa < pb else "not met")))
    tl.extend(fan_verdicts)
    print(table(("target", "measured", "verdict"), tl))

    errs = [r for r in rows if r.get("mode") == "errorlog"]
    if errs:
        print()
        print("error log during the run ([error] or worse / [warn]; tags): " +
              "; ".join("{} {}/{} ({})".format(r["peer"], r.get("error_lines", "?"),
                                              r.get("warn_lines", "?"), r.get("tags", "?"))
                        for r in errs))
    bad = [r for r in rows if r.get("ok") == "0" and r.get("mode") not in ("errorlog",)
           and not r.get("skipped") and r["test"] != "overcap"
           # a capacity step that failed is how the stepping ends
           and "step_r" not in r["test"]]
    if bad:
        print("runs not ok (excluded from medians): " +
              ", ".join("{}/{}/{}".format(r["test"], r["peer"], r.get("rep", "?")) for r in bad))


if __name__ == "__main__":
    main()

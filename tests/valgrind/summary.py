#!/usr/bin/python3
"""Sum up memcheck logs (tests/valgrind/run.sh): memory errors, those with a
frame in our code, and definite leaks allocated through our code.  Prints
every record that counts against us; exit status 1 if there is any memory
error at all or a definite leak from our code."""
import re
import sys

OURS = re.compile(r"mod_websocket\.so|mod_ws_[\w-]+\.so|\bmws_\w+\.c|mod_websocket\.c|"
                  r"\bws_\w+\.c|testhandler\.c|handlers/\w+\.c")
LEAK = re.compile(r"are definitely lost in loss record")
SUMMARY = re.compile(r"ERROR SUMMARY: (\d+) errors")


def records(text):
    """Split a memcheck log into records (blank-line separated, pid prefix
    removed)."""
    lines = [re.sub(r"^==\d+== ?", "", ln) for ln in text.splitlines()]
    rec = []
    for ln in lines:
        if ln.strip() == "":
            if rec:
                yield rec
            rec = []
        else:
            rec.append(ln)
    if rec:
        yield rec


def main(paths):
    errors = ours_errors = leaks = ours_leaks = 0
    summaries = []
    bad = []
    for path in paths:
        try:
            text = open(path, errors="replace").read()
        except OSError:
            continue
        m = SUMMARY.search(text)
        summaries.append("%s: %s" % (path, m.group(0) if m else "no ERROR SUMMARY (not finished?)"))
        for rec in records(text):
            head = rec[0]
            body = "\n".join(rec)
            if LEAK.search(head):
                leaks += 1
                if OURS.search(body):
                    ours_leaks += 1
                    bad.append(body)
            elif re.match(r"(Invalid (read|write|free)|Conditional jump|Use of uninitialised|"
                          r"Syscall param|Mismatched free|Source and destination overlap|"
                          r"Argument '|Invalid memory pool|.*fishy)", head):
                errors += 1
                if OURS.search(body):
                    ours_errors += 1
                bad.append(body)
    for s in summaries:
        print(s)
    print("memory errors: %d (with a frame in our code: %d); definite leaks: %d "
          "(allocated through our code: %d)" % (errors, ours_errors, leaks, ours_leaks))
    for b in bad:
        print("----\n" + b)
    if not summaries:
        print("no memcheck log found")
        return 1
    return 1 if (errors or ours_leaks) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

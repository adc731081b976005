#!/usr/bin/env python3
"""tests/integration/trace_compare.py - delivered mail against what was sent.

    trace_compare.py [--dups N] MAILDIR_NEW ADD_FINAL_CRLF FILE|MAILDIR...

Every FILE must be in MAILDIR_NEW exactly once, and nothing else may be:
its bytes (a bare LF as CRLF, and with ADD_FINAL_CRLF=1 a final CRLF
added where missing) at the end of a delivered file, with nothing before
them but the trace fields servers put on top (Received, Return-Path,
Delivered-To). The original's own trace fields stay. Prints what differs
(the nearest delivered file and the first differing bytes) on stderr;
exit 1 if anything does. A MAILDIR stands for every message file under it
(cur/ and new/ of every folder). With --dups N, up to N deliveries more
than one of a FILE are allowed (a delivery a crash left unconfirmed and
sent again), and their number is printed. With --fold-cr, bare CRs are
expected as Postfix stores them: CRs before a line end dropped, any other
one a space.
"""
import os, re, sys
args = sys.argv[1:]
allow = None
fold_cr = False
while args and args[0] in ("--dups", "--fold-cr"):
    if args[0] == "--dups":
        allow = int(args[1]); args = args[2:]
    else:
        fold_cr = True; args = args[1:]
new, addcrlf, files = args[0], args[1] == "1", []
for a in args[2:]:
    if os.path.isdir(a):
        for root, ds, fs in os.walk(a):
            if os.path.basename(root) in ("cur", "new"):
                files += [os.path.join(root, f) for f in fs]
    else:
        files.append(a)
TRACE = re.compile(rb"(Received|Return-Path|Delivered-To):", re.I)
def strip(b):
    while True:
        m = TRACE.match(b)
        if not m: return b
        end = b.find(b"\n") + 1
        while end < len(b) and b[end:end + 1] in (b" ", b"\t"):
            end = b.find(b"\n", end) + 1
        b = b[end:]
def expect(b):
    if fold_cr:
        # Postfix's own rewriting of bare CRs: CRs before a line end go,
        # one elsewhere becomes a space
        b = re.sub(rb"\r+\n", b"\n", b).replace(b"\r", b" ")
    b = re.sub(rb"(?<!\r)\n", b"\r\n", b)
    if addcrlf and not b.endswith(b"\r\n"): b += b"\r\n"
    return b
extra = 0
got = {}
for f in os.listdir(new):
    got[f] = open(os.path.join(new, f), "rb").read()
bad = 0
wants = set()
def matches(v, want):
    # the original at the end, only server trace fields before it (the
    # original may carry its own Received/Return-Path: they stay)
    return v.endswith(want) and strip(v[:len(v) - len(want)]) == b""
for f in files:
    want = expect(open(f, "rb").read())
    wants.add(want)
    # one delivery per file (the same content twice in the source is
    # delivered twice)
    hits = [k for k, v in got.items() if matches(v, want)]
    if not hits:
        bad += 1
        # the nearest delivered file, for the message
        best = None
        for k, v in got.items():
            s = strip(v); n = 0
            while n < min(len(s), len(want)) and s[n] == want[n]: n += 1
            if best is None or n > best[0]: best = (n, k, s)
        if best:
            n, k, s = best
            sys.stderr.write("%s: 0 matches; nearest %s differs at byte %d: got %r want %r\n" % (
                os.path.basename(f), k, n, s[max(0, n - 20):n + 20], want[max(0, n - 20):n + 20]))
        else:
            sys.stderr.write("%s: nothing delivered\n" % os.path.basename(f))
    else:
        del got[hits[0]]
for k, v in got.items():
    if allow is not None and any(matches(v, w) for w in wants):
        extra += 1
        continue
    bad += 1
    sys.stderr.write("unexpected delivery %s%s\n" % (k, " (a duplicate)" if any(matches(v, w) for w in wants) else ""))
if allow is not None:
    print("duplicates %d" % extra)
    if extra > allow:
        bad += 1
        sys.stderr.write("%d duplicates, at most %d allowed\n" % (extra, allow))
sys.exit(1 if bad else 0)

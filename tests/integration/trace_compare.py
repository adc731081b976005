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
sent again), and their number is printed. --lf: the server stores LF
line ends and folds CRs its own way (Dovecot without mail_save_crlf):
both sides are compared without any CR. --json FILE: the result as
bench/compare writes it (for bench/report.py). With --fold-cr, bare CRs are
expected as Postfix stores them: CRs before a line end dropped, any other
one a space. --moved-return-path: an original whose first field is its own
Return-Path also matches a delivery that lacks that field where the
original had it but carries a Return-Path with the same address among the
trace fields on top (fetchmail takes the field off when it forwards by
SMTP/LMTP, making it the envelope sender, and the server writes it back);
never the default, and counted in the JSON ("return_path_moved"), as are
the final line ends ADD_FINAL_CRLF=1 had to add ("final_crlf_added").
"""
import os, re, sys
args = sys.argv[1:]
allow = None
fold_cr = False
lf = False
json_out = None
moved_rp = False
while args and args[0] in ("--dups", "--fold-cr", "--lf", "--json", "--moved-return-path"):
    if args[0] == "--dups":
        allow = int(args[1]); args = args[2:]
    elif args[0] == "--json":
        json_out = args[1]; args = args[2:]
    elif args[0] == "--lf":
        lf = True; args = args[1:]
    elif args[0] == "--moved-return-path":
        moved_rp = True; args = args[1:]
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
    if lf:
        b = b.replace(b"\r", b"")
    return b
extra = 0
missing = 0
got = {}
for f in os.listdir(new):
    got[f] = open(os.path.join(new, f), "rb").read()
    if lf:
        got[f] = got[f].replace(b"\r", b"")
bad = 0
wants = set()
# Every way a delivered file can end in an original: itself, then with one,
# two... of its leading trace fields taken off (the original may carry its
# own Received/Return-Path: they stay). An original matches a delivery when
# it is one of these, so an index of them makes the check linear.
def suffixes(v):
    yield v
    while True:
        m = TRACE.match(v)
        if not m: return
        end = v.find(b"\n") + 1
        while end and end < len(v) and v[end:end + 1] in (b" ", b"\t"):
            end = v.find(b"\n", end) + 1
        if end <= 0: return
        v = v[end:]
        yield v
index = {}
for k, v in got.items():
    for s in set(suffixes(v)):
        index.setdefault(s, []).append(k)
def take(want):
    for k in index.get(want, ()):
        if k in got:
            del got[k]
            return True
    return False
ADDR = re.compile(rb"Return-Path:\s*(<[^>\r\n]*>)", re.I)
def first_field(b):
    end = b.find(b"\n") + 1
    while end and end < len(b) and b[end:end + 1] in (b" ", b"\t"):
        end = b.find(b"\n", end) + 1
    return end
def take_moved(want):
    # the original without its leading Return-Path field, delivered under
    # trace fields that hold a Return-Path with the same address
    m = ADDR.match(want)
    end = first_field(want)
    if not m or end <= 0:
        return False
    rest = want[end:]
    for k in index.get(rest, ()):
        if k in got:
            top = got[k][:len(got[k]) - len(rest)]
            if any(a == m.group(1) for a in ADDR.findall(top)):
                del got[k]
                return True
    return False
moved = crlf_added = 0
for f in files:
    raw = open(f, "rb").read()
    want = expect(raw)
    wants.add(want)
    # one delivery per file (the same content twice in the source is
    # delivered twice)
    ok = take(want)
    if not ok and moved_rp and take_moved(want):
        ok = True
        moved += 1
    if ok and addcrlf and not raw.endswith(b"\n"):
        crlf_added += 1
    if not ok:
        bad += 1
        missing += 1
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
def is_dup(v):
    return any(s in wants for s in suffixes(v))
for k, v in got.items():
    if allow is not None and is_dup(v):
        extra += 1
        continue
    bad += 1
    sys.stderr.write("unexpected delivery %s%s\n" % (k, " (a duplicate)" if is_dup(v) else ""))
if json_out:
    import json
    json.dump({"exact": bad == 0, "messages": len(files), "dst_messages": len(os.listdir(new)),
               "missing": missing, "extra": len(got), "duplicate": extra, "flags": 0,
               "internaldate": 0, "folder_missing": 0, "folder_extra": 0, "diffs": [],
               "return_path_moved": moved, "final_crlf_added": crlf_added},
              open(json_out, "w"))
if allow is not None:
    print("duplicates %d" % extra)
    if extra > allow:
        bad += 1
        sys.stderr.write("%d duplicates, at most %d allowed\n" % (extra, allow))
sys.exit(1 if bad else 0)

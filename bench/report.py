#!/usr/bin/env python3
"""bench/report.py — the benchmark's bookkeeping (python3 standard library).

  report.py exec WORKDIR TIMEOUT CMD...
      runs CMD (stdin /dev/null, stdout WORKDIR/out, stderr WORKDIR/err) and
      writes WORKDIR/time: wall seconds from just before the spawn to the
      reap, the client's CPU (user, sys) and peak RSS as GNU time reports
      them (the tool and whatever it ran), its exit status or signal; after
      TIMEOUT seconds its process group is killed (exit 124). Exits with
      CMD's status.

  report.py record RESULTS.jsonl SCENARIO TOOL RUN EXIT WORKDIR [CHECKED]
      appends one run as a JSON line: what WORKDIR/time says, the tool's own
      JSON summary if it printed one (WORKDIR/out), the comparer's verdict
      (WORKDIR/cmp.json, when CHECKED is 1), the delay proxy's counters
      (WORKDIR/proxy.json, when present) and the end of stderr on failure.

  report.py OUTDIR MODE
      turns OUTDIR/results.jsonl into report.md, report.json and ratios.png
      (gnuplot) and prints the Markdown: per scenario and tool the median
      wall time of the runs with min and max, messages/s, MB/s, CPU, peak
      RSS, bytes on the wire, exactness (what differed), mailferry's time
      divided by the other tool's, then the issue's targets, met or missed
      and by how much, and the configuration of every peer.

Never hides a failure: a run that crashed, timed out or copied inexactly
says so in its row; a tool that was not there (mailferry not built yet) is
listed as missing.
"""
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import threading
import time

import scaling


def read(path, default=""):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return default


def execute(argv):
    """Wall time here, from just before the spawn to a blocking reap (no
    polling delay); CPU and peak RSS from GNU time around the tool: Python's
    own rusage would count the interpreter (a forked child carries its RSS
    until exec, and a pyenv shim's children count too)."""
    wd, tmo, cmd = argv[0], float(argv[1]), argv[2:]
    res = dict(wall=0.0, user=0.0, sys=0.0, rss_kb=0, exit=127)
    gtime = os.path.join(wd, "gtime")
    if os.access("/usr/bin/time", os.X_OK):
        cmd = ["/usr/bin/time", "-f", "%U %S %M", "-o", gtime, "--"] + cmd
    with open(os.path.join(wd, "out"), "wb") as out, open(os.path.join(wd, "err"), "wb") as err:
        t0 = time.monotonic()
        try:
            p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                 start_new_session=True)
        except OSError as e:
            err.write(("missing: %s\n" % e).encode())
            p = None
        if p:
            expired = []

            def kill():
                expired.append(1)
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except OSError:
                    pass
            timer = threading.Timer(tmo, kill)
            timer.start()
            rc = p.wait()
            res["wall"] = time.monotonic() - t0
            timer.cancel()
            res["exit"] = rc if rc >= 0 else 128 - rc
            g = read(gtime).strip().splitlines()
            try:
                u, s, m = g[-1].split()
                res.update(user=float(u), sys=float(s), rss_kb=int(m))
            except (IndexError, ValueError):
                pass
            if g and "signal" in g[0]:
                res["signal"] = g[0].strip()
            if expired:
                res.update(exit=124, signal="timed out after %g s" % tmo)
    with open(os.path.join(wd, "time"), "w") as f:
        json.dump(res, f)
    return res["exit"]


def record(argv):
    res, sc, tool, run, rc, wd = argv[:6]
    checked = len(argv) > 6 and argv[6] == "1"
    rec = dict(scenario=sc, tool=tool, run=int(run), exit=int(rc), wall=0.0,
               user=0.0, sys=0.0, rss_kb=0, exact=None, diff="", messages=None, bytes=None,
               wire_in=None, wire_out=None, stderr="")
    try:
        t = json.loads(read(os.path.join(wd, "time")))
        rec.update({k: t[k] for k in ("wall", "user", "sys", "rss_kb", "exit")})
        if t.get("signal"):
            rec["signal"] = t["signal"]
    except (ValueError, KeyError):
        pass
    if rc == "127" and "missing" in read(os.path.join(wd, "err")):
        rec["missing"] = True
    for line in read(os.path.join(wd, "out")).splitlines():
        try:
            d = json.loads(line)
        except ValueError:
            continue
        if isinstance(d, dict) and (d.get("event") == "summary" or d.get("tool") == "ceiling"):
            rec.update(messages=d.get("messages_copied", d.get("messages")), bytes=d.get("bytes"),
                       wire_in=d.get("wire_bytes_in"), wire_out=d.get("wire_bytes_out"))
            for k in ("fetch_seconds", "append_seconds", "messages_failed", "flags_synced", "peak_rss_kb",
                      "bound_seconds", "bound_phase", "append_mode", "fetch_conns", "append_conns",
                      "fetch_trials", "append_trials", "cpu_seconds", "split", "phase_bound_seconds",
                      "cpu_bound_seconds", "machine_cpu_fetch", "machine_cpu_append", "ncpu"):
                if k in d:
                    rec[k] = d[k]
    # bench/ceiling's time is its bound (the slower of its best fetch and
    # best append trials) and its CPU that of those two trials; the
    # process's own, over every trial, is kept beside them
    if "bound_seconds" in rec and rec.get("split") in ("bytes", "folders") and rec["exit"] == 0:
        rec.update(wall_process=rec["wall"], cpu_process=rec["user"] + rec["sys"],
                   wall=rec["bound_seconds"], user=rec.get("cpu_seconds", 0.0), sys=0.0)
    if checked:
        try:
            c = json.loads(read(os.path.join(wd, "cmp.json")))
            rec["exact"] = bool(c["exact"])
            rec["cmp"] = {k: c[k] for k in ("messages", "dst_messages", "missing", "extra", "duplicate",
                                              "flags", "internaldate", "folder_missing", "folder_extra")}
            rec["diff"] = diff_text(rec["cmp"], c.get("diffs", []))
        except (ValueError, KeyError):
            rec["exact"] = False
            rec["diff"] = "compare failed: " + read(os.path.join(wd, "cmp.err"))[-200:].strip()
        note = read(os.path.join(wd, "note")).strip()
        if note:
            rec["diff"] += ("; " if rec["diff"] else "") + note
    p = read(os.path.join(wd, "proxy.json"))
    if p:
        try:
            rec["proxy"] = json.loads(p)
        except ValueError:
            pass
    if rec["exit"]:
        rec["stderr"] = read(os.path.join(wd, "err"))[-400:]
    with open(res, "a") as f:
        f.write(json.dumps(rec) + "\n")
    v = ""
    if rec.get("missing"):
        v = "  MISSING"
    elif rec["exit"]:
        v = "  FAILED (%s)" % why_failed(rec)
    if rec["exact"] is True:
        v += "  exact"
    elif rec["exact"] is False:
        v += "  NOT EXACT: " + rec["diff"]
    w = rec.get("proxy") or {}
    if w:
        v += "  wire %.1f KB, %d round trips" % ((w.get("bytes_client_to_server", 0) +
                                                 w.get("bytes_server_to_client", 0)) / 1e3, w.get("round_trips", 0))
    print("bench: %-16s %-14s run %d: %8.3f s  cpu %6.2f s  rss %6.1f MiB%s" % (
        sc, tool, rec["run"], rec["wall"], rec["user"] + rec["sys"], rec["rss_kb"] / 1024, v), flush=True)
    return rec


def diff_text(c, diffs):
    words = {"missing": "missing", "extra": "extra", "duplicate": "duplicates", "flags": "flags differ",
             "internaldate": "INTERNALDATE differs", "folder_missing": "folder(s) missing",
             "folder_extra": "extra folder(s)"}
    parts = ["%d %s" % (c[k], w) for k, w in words.items() if c.get(k)]
    if diffs:
        d = diffs[0]
        ex = "e.g. %s in %s" % (d["kind"], d["folder"])
        if "src" in d:
            ex += " (%s → %s)" % (d["src"], d["dst"])
        parts.append(ex)
    return ", ".join(parts)


# ---------------------------------------------------------------- the report

ORDER = ["initial", "initial-tls", "rerun", "rerun-50ms", "flags-1pct", "flags-1pct-50ms", "big-30mb",
         "initial-lmtp", "initial-smtp", "initial-courier", "rerun-courier",
         "initial-from-courier", "rerun-from-courier",
         "initial-100k", "rerun-100k", "initial-100k-50ms", "rerun-100k-50ms"]
TOOLS = ["ceiling", "ceiling_tls", "mailferry", "mailferry_tls", "mailferry_prev", "interimap", "interimap_tls",
         "mbsync", "mbsync_tls", "offlineimap"]
NOTES = {
    "initial": "first migration into an empty account, TLS off",
    "initial-tls": "the same through Dovecot's IMAPS port",
    "rerun": "nothing changed since the first migration",
    "rerun-50ms": "the same behind tests/faults/delay_proxy.py, 25 ms each way (a 50 ms round trip): "
                  "round trips as the proxy counts them, summed over the tool's connections",
    "flags-1pct-50ms": "another 1 % of flags changed, synced behind that proxy: round trips",
    "flags-1pct": "1 % of the source's messages changed flags or keywords",
    "big-30mb": "an account holding one 30 MB message: memory",
    "initial-courier": "Dovecot → Courier-IMAP 5.0 (no LITERAL+, MULTIAPPEND, CONDSTORE; folders under "
                       "\"INBOX.\"), its own corpus; exact after fold_maildir.py (Courier's line ends, "
                       "keywords, UTF-8 folder names); the ceiling appends one message per APPEND, "
                       "waiting for each literal's \"+\" (Courier offers neither MULTIAPPEND nor "
                       "LITERAL+), whole folders per connection (Courier locks a folder per APPEND); "
                       "no interimap (it needs QRESYNC on both ends)",
    "rerun-courier": "its no-change re-run; wire: the bytes to and from Courier only, as a proxy without "
                     "delay counts them",
    "initial-from-courier": "Courier → Dovecot, a ~10,000-message Courier account (two crash corpora under "
                            "INBOX.Part1, INBOX.Part2); one run: it makes the destination the re-runs use",
    "rerun-from-courier": "its no-change re-run (no CONDSTORE: a UID FLAGS scan per mailbox); wire: Courier's "
                          "side as the proxy without delay counts it (its own latency adds a little)",
    "initial-lmtp": "IMAP → LMTP into Dovecot (every message to one recipient, 4 connections); "
                    "ceiling: bench/lmtp_ceiling.sh, the same files from disk over 4 bare pipelined "
                    "LMTP/BDAT connections (no IMAP at all); exact: trace_compare.py (bytes after "
                    "Dovecot's trace fields)",
    "initial-smtp": "IMAP → SMTP into a private Postfix (scripts/postfix.sh) that hands every message on "
                    "by LMTP to the same Dovecot, 4 connections, timed until the last message is in the "
                    "Maildir (bench/until_delivered.sh); ceiling: the same bare client in SMTP mode "
                    "(bench/lmtp_ceiling.sh ... DELIVERED_NEW) through the same Postfix; exact: "
                    "trace_compare.py (after Postfix's Received and Dovecot's trace fields; bare CRs folded, "
                    "as Postfix rewrites them)",
    "initial-100k": "100,000 messages in 20 folders, TLS off",
    "rerun-100k": "no-change re-run of the 100,000-message account, loopback",
    "initial-100k-50ms": "first migration of it behind a 25 ms each way delay proxy (50 ms round "
                         "trip; one run: it makes the destination the next re-runs use)",
    "rerun-100k-50ms": "no-change re-run behind that proxy: wire bytes and round trips as counted by it",
}


def med(v):
    return statistics.median(v) if v else 0.0


def base(tool):
    return tool[:-4] if tool.endswith("_tls") else tool


def why_failed(r):
    if r.get("signal"):
        return r["signal"]
    if r["exit"] == 124:
        return "timed out"
    last = (r.get("stderr") or "").strip().splitlines()
    return ("exit %d: " % r["exit"]) + (last[-1][:160] if last else "")


def summarize(rows):
    groups = {}
    for r in rows:
        groups.setdefault((r["scenario"], r["tool"]), []).append(r)
    out = []
    for (sc, tool), rs in groups.items():
        ok = [r for r in rs if not r.get("missing")]
        walls = [r["wall"] for r in ok] or [0.0]
        s = dict(scenario=sc, tool=tool, runs=len(ok), missing=not ok,
                 wall_median=med(walls), wall_min=min(walls), wall_max=max(walls),
                 cpu_median=med([r["user"] + r["sys"] for r in ok]),
                 rss_kb_max=max([r["rss_kb"] for r in ok] or [0]),
                 failures=sum(1 for r in ok if r["exit"]),
                 failure_text=next((why_failed(r) for r in ok if r["exit"]), ""),
                 checked=sum(1 for r in ok if r.get("exact") is not None),
                 inexact=sum(1 for r in ok if r.get("exact") is False),
                 diff=next((r.get("diff", "") for r in ok if r.get("exact") is False), ""),
                 messages=next((r["messages"] for r in ok if r.get("messages")), None),
                 bytes=next((r["bytes"] for r in ok if r.get("bytes")), None))
        prox = [r["proxy"] for r in ok if r.get("proxy")]
        if prox:
            s["wire_bytes"] = med([p.get("bytes_client_to_server", 0) + p.get("bytes_server_to_client", 0)
                                   for p in prox])
            s["round_trips"] = med([p.get("round_trips", 0) for p in prox])
            s["connections"] = med([p.get("connections", 0) for p in prox])
        elif any(r.get("wire_in") is not None for r in ok):
            s["wire_bytes"] = med([(r.get("wire_in") or 0) + (r.get("wire_out") or 0) for r in ok])
        if any("fetch_seconds" in r for r in ok):
            s["fetch_seconds"] = med([r["fetch_seconds"] for r in ok if "fetch_seconds" in r])
            s["append_seconds"] = med([r["append_seconds"] for r in ok if "append_seconds" in r])
        tr = [r for r in ok if isinstance(r.get("fetch_trials"), dict) and r.get("split") in ("bytes", "folders")]
        if tr:
            # the ceiling: seconds per connection count (median over runs),
            # the best counts and the slower phase, as most runs had them
            for ph in ("fetch", "append"):
                keys = sorted({k for r in tr for k in r[ph + "_trials"]}, key=int)
                s[ph + "_trials"] = {k: med([r[ph + "_trials"][k] for r in tr if k in r[ph + "_trials"]])
                                     for k in keys}
                s[ph + "_conns"] = statistics.mode([r.get(ph + "_conns") for r in tr])
            s["bound_phase"] = statistics.mode([r.get("bound_phase") for r in tr])
            for k in ("phase_bound_seconds", "cpu_bound_seconds", "machine_cpu_fetch", "machine_cpu_append"):
                if any(k in r for r in tr):
                    s[k] = med([r[k] for r in tr if k in r])
            s["ncpu"] = tr[0].get("ncpu")
            s["append_mode"] = tr[0].get("append_mode")
            s["wall_process"] = med([r.get("wall_process", 0.0) for r in tr])
        out.append(s)
    out.sort(key=lambda s: (ORDER.index(s["scenario"]) if s["scenario"] in ORDER else 99,
                            TOOLS.index(s["tool"]) if s["tool"] in TOOLS else 99, s["tool"]))
    return out


class Goals:
    """An issue's goals as table rows: each measured value against its limit
    (at most, or with lower=False at least), met or missed and by how much;
    "not measured" when the value is None."""

    def __init__(self):
        self.rows = []

    def add(self, name, value, limit, unit, fmt="%.2f", lower=True):
        bound = "—" if limit is None else ("≤ " if lower else "≥ ") + fmt % limit + unit
        if value is None or value is False or limit is None:
            self.rows.append((name, "not measured", bound, "—"))
            return
        ok = value <= limit if lower else value >= limit
        how = " by %.0f %%" % (100 * abs(value / limit - 1)) if limit > 0 else ""
        self.rows.append((name, fmt % value + unit, bound, "met" if ok else "**missed**" + how))

    def markdown(self, head="target"):
        return ["| %s | measured | limit | |" % head, "|---|---|---|---|"] + \
            ["| %s | %s | %s | %s |" % t for t in self.rows]

    def json(self):
        return [dict(goal=t[0], measured=t[1], target=t[2], verdict=t[3]) for t in self.rows]


def issue17_targets(by, mode, wall, ratio):
    """Issue 17's goals: the bound, CPU per GB, flag sync against mbsync,
    round trips."""
    G = Goals()
    for sc, t, what in (("initial", "mailferry", "quick"), ("initial-tls", "mailferry_tls", "quick, TLS"),
                        ("initial-100k", "mailferry", "100k")):
        if sc != "initial-100k" or mode == "full":
            G.add("initial (%s): mailferry ÷ bound" % what, ratio(wall(sc, t), bound_of(by, sc, t)), 1.05, "×")
    for sc in ("initial", "initial-100k") if mode == "full" else ("initial",):
        s, c = by.get((sc, "mailferry")), by.get((sc, "ceiling"))
        b = (c or {}).get("bytes") or (s or {}).get("bytes")
        G.add("CPU per GB, mailferry, %s, TLS off" % sc,
              s["cpu_median"] / (b / 1e9) if s and s["runs"] and b else None, 1.0, " s/GB")
    G.add("flags-1pct: mailferry ÷ mbsync (time)", ratio(wall("flags-1pct", "mailferry"),
                                                        wall("flags-1pct", "mbsync")), 0.8, "×")
    m, b = round_trips(by, "flags-1pct", "mailferry"), round_trips(by, "flags-1pct", "mbsync")
    G.add("flags-1pct: round trips, mailferry (fewer than mbsync's %s)" % ("?" if b is None else "%d" % b),
          m, None if b is None else b - 1, "", "%d")
    if mode == "full":
        s = by.get(("rerun-100k-50ms", "mailferry"))
        G.add("no-change re-run, 100k, 50 ms: round trips", s and s.get("round_trips"), 3, "", "%d")
        G.add("no-change re-run, 100k, 50 ms: 3 round trips + 10 ms", wall("rerun-100k-50ms", "mailferry"),
              0.16, " s", "%.3f")
    return G


def exact_cell(s):
    """The exact column of a summarized row: checked runs, what differed, failures."""
    if s["checked"] == 0:
        e = "not checked"
    elif s["inexact"] == 0:
        e = "yes" if s["checked"] == s["runs"] else "yes (%d of %d checked)" % (s["checked"], s["runs"])
    else:
        e = "**no** (%d of %d): %s" % (s["inexact"], s["checked"], s["diff"])
    if s["failures"]:
        e = "**%d of %d runs failed**: %s; %s" % (s["failures"], s["runs"], s["failure_text"], e)
    return e


def round_trips(by, sc, tool):
    """The row's round trips, or those of its -50ms twin."""
    for k in ((sc, tool), (sc + "-50ms", tool)):
        s = by.get(k)
        if s and s.get("round_trips") is not None:
            return s["round_trips"]
    return None


def bound_of(by, sc, tool):
    """The ceiling's bound for an initial copy (the TLS one for a TLS tool)."""
    if not sc.startswith("initial"):
        return None
    c = by.get((sc, "ceiling_tls" if tool.endswith("_tls") else "ceiling"))
    return c["wall_median"] if c and c["runs"] and not c["failures"] else None


def trials_text(t):
    return ", ".join("%s: %.3f" % (k, v) for k, v in t.items())


def fmt_s(v):
    return "%.3f" % v if v < 10 else "%.2f" % v if v < 100 else "%.1f" % v


def main(outdir, mode):
    rows = [json.loads(l) for l in open(os.path.join(outdir, "results.jsonl")) if l.strip()]
    summary = summarize(rows)
    by = {(s["scenario"], s["tool"]): s for s in summary}
    corpus = {}
    try:
        corpus = json.load(open(os.path.join(outdir, "corpus.json")))
    except (OSError, ValueError):
        pass

    def size_of(sc):
        c = corpus.get("src100k" if "100k" in sc else "big" if sc == "big-30mb"
                       else "scale" + sc[6:] if sc.startswith("scale-")
                       else "none" if "from-courier" in sc
                       else "csrc" if sc.endswith("-courier") else "src") or {}
        if c:
            return c.get("messages"), c.get("bytes")
        b = by.get((sc, "ceiling")) or by.get((sc, "mailferry")) or {}
        return b.get("messages"), b.get("bytes")

    cpu = "?"
    for l in read("/proc/cpuinfo").splitlines():
        if l.startswith("model name"):
            cpu = l.split(":", 1)[1].strip()
            break
    mem = next((int(l.split()[1]) // 1024 // 1024 for l in read("/proc/meminfo").splitlines()
                if l.startswith("MemTotal")), 0)
    L = []
    L.append("# mailferry benchmark (%s), %s" % (mode, time.strftime("%Y-%m-%d %H:%M %Z")))
    L.append("")
    L.append("Machine: %s, %s, %d cores, %d GiB, Linux %s. Server: private Dovecot %s (Maildir) on "
             "127.0.0.1, every tool against the same instance, one run at a time." % (
                 platform.node(), cpu, os.cpu_count() or 0, mem, platform.release(),
                 corpus.get("dovecot", "2.3")))
    for k, what in (("src", "quick corpus"), ("src100k", "full corpus"), ("big", "memory corpus"),
                    ("csrc", "Courier corpus")):
        c = corpus.get(k)
        if c:
            L.append("- %s: %s message%s, %.1f MB, %s folder%s (`bench/corpus %s`)" % (
                what, format(c["messages"], ","), "s" [:c["messages"] != 1], c["bytes"] / 1e6,
                c.get("folders", "?"), "s"[:c.get("folders") != 1], c.get("args", "")))
    L.append("- wall: median of the runs (min–max), start to exit of the client; CPU: the client's "
             "user + sys; RSS: its peak; exact: bench/compare of the source and destination Maildirs "
             "(bytes with CR runs before LF folded, flags, keywords, INTERNALDATE).")
    L.append("- ratio: mailferry's median wall time ÷ the tool's (below 1: mailferry is faster); "
             "TLS rows compare mailferry over TLS.")
    L.append("- ceiling (bench/ceiling): its time is the **bound**, the slower of its best fetch and its "
             "best append, each measured alone with the bytes split evenly over 1, 2, 4, 8 and 16 "
             "connections, or, when longer, the machine's CPU work (the least busy fetch and append "
             "trials' busy CPU seconds, every process, over the cores: the \"cpu\" bound, for a "
             "server on the client's cores); its CPU is that of those two trials. ÷ bound: the tool's time ÷ the bound "
             "(TLS rows: ÷ the TLS bound); at least 1 unless the server serves fetches and appends "
             "together faster than either alone.")
    L.append("- CPU s/GB: the client's CPU seconds per GB of the account it copied or keeps in sync "
             "(re-runs and flag changes copy nothing: per GB of that account). Round trips: as "
             "tests/faults/delay_proxy.py counts them over all the tool's connections; on a "
             "`rerun` or `flags-1pct` row, the count of its `-50ms` run (marked ‡).")
    L.append("")
    L.append("| scenario | tool | runs | wall s (min–max) | msg/s | MB/s | CPU s | CPU s/GB | peak RSS MiB "
             "| wire | round trips | exact | mailferry ÷ tool | ÷ bound |")
    L.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    ratios = []
    last_sc = None
    for s in summary:
        sc, tool = s["scenario"], s["tool"]
        if sc.startswith("scale-"):
            continue  # the scaling section's
        if s["missing"]:
            L.append("| %s | %s | 0 | missing (not installed or not built) | | | | | | | | | | |" % (sc, tool))
            continue
        mf = by.get((sc, "mailferry_tls" if tool.endswith("_tls") else "mailferry"))
        ratio = ""
        if mf and not mf["missing"] and base(tool) != "mailferry" and s["wall_median"] > 0:
            r = mf["wall_median"] / s["wall_median"]
            ratio = "%.2f" % r
            ratios.append((sc, tool, r))
        if tool == "mailferry_tls":
            plain = by.get(("initial", "mailferry")) if sc == "initial-tls" else None
            if plain and plain["wall_median"]:
                ratio = "TLS: %+.0f %%" % (100 * (s["wall_median"] / plain["wall_median"] - 1))
        n, b = size_of(sc)
        copies = sc.startswith("initial") or sc == "big-30mb"
        mps = "%.0f" % (n / s["wall_median"]) if copies and n and n > 1 and s["wall_median"] else ""
        mbs = "%.1f" % (b / 1e6 / s["wall_median"]) if copies and b and s["wall_median"] else ""
        exact = exact_cell(s)
        wire = ""
        if s.get("wire_bytes") is not None:
            wb = s["wire_bytes"]
            wire = "%.1f KB" % (wb / 1e3) if wb < 1e6 else "%.1f MB" % (wb / 1e6)
        rts = round_trips(by, sc, tool)
        rts = "" if rts is None else "%d%s" % (rts, "" if by[(sc, tool)].get("round_trips") is not None else " ‡")
        gb = b / 1e9 if b else 0
        cpugb = "%.2f" % (s["cpu_median"] / gb) if gb and s["runs"] else ""
        bd = bound_of(by, sc, tool)
        over = "" if not bd or not s["wall_median"] else \
            "bound" if base(tool) == "ceiling" else "%.2f" % (s["wall_median"] / bd)
        L.append("| %s | %s | %d | %s (%s–%s) | %s | %s | %.2f | %s | %.1f | %s | %s | %s | %s | %s |" % (
            sc if sc != last_sc else "", tool, s["runs"], fmt_s(s["wall_median"]), fmt_s(s["wall_min"]),
            fmt_s(s["wall_max"]), mps, mbs, s["cpu_median"], cpugb, s["rss_kb_max"] / 1024, wire, rts,
            exact.replace("|", "/"), ratio, over))
        last_sc = sc
    L.append("")
    for sc in ORDER:
        if any(s["scenario"] == sc for s in summary) and sc in NOTES:
            L.append("- `%s`: %s" % (sc, NOTES[sc]))
    for sc in ("initial", "initial-tls", "initial-courier", "initial-100k"):
        c = by.get((sc, "ceiling_tls" if sc == "initial-tls" else "ceiling"))
        if c and c.get("fetch_trials"):
            L.append("- the ceiling in `%s` (medians; seconds per connection count): fetch %s, best %.3f s "
                     "on %s; append (%s) %s, best %.3f s on %s: the bound is the %s, %.3f s (the whole "
                     "process, every trial and the untimed work around them: %.1f s)." % (
                         sc, trials_text(c["fetch_trials"]), c["fetch_seconds"], c["fetch_conns"],
                         c.get("append_mode"), trials_text(c["append_trials"]), c["append_seconds"],
                         c["append_conns"], c["bound_phase"], c["wall_median"], c["wall_process"]))
            if c.get("cpu_bound_seconds"):
                L.append("  The machine's CPU (%s cores, every process) was busy %.2f s in the least busy "
                         "fetch trial and %.2f s in the least busy append trial: fetch and append on "
                         "the same cores cannot take less than %.3f s (the \"cpu\" bound; the slower "
                         "best phase alone: %.3f s)." % (
                             c.get("ncpu"), c["machine_cpu_fetch"], c["machine_cpu_append"],
                             c["cpu_bound_seconds"], c.get("phase_bound_seconds", 0.0)))
    L.append("")

    # the issue's targets
    G = Goals()
    target = G.add

    def wall(sc, tool):
        s = by.get((sc, tool))
        return s["wall_median"] if s and not s["missing"] and s["runs"] else None

    def ratio(a, b):
        return a / b if a is not None and b else None

    target("initial (quick, TLS off): mailferry ÷ ceiling's bound", ratio(wall("initial", "mailferry"),
                                                                       wall("initial", "ceiling")), 1.1, "×")
    if mode == "full":
        target("initial (100k, TLS off): mailferry ÷ ceiling's bound", ratio(wall("initial-100k", "mailferry"),
                                                                          wall("initial-100k", "ceiling")), 1.1, "×")
    tr = ratio(wall("initial-tls", "mailferry_tls"), wall("initial", "mailferry"))
    target("TLS on costs (mailferry, initial)", tr and 100 * (tr - 1), 20, " %", "%.0f")
    rss = [s["rss_kb_max"] / 1024 for s in summary if s["tool"] == "mailferry" and s["runs"]]
    target("peak RSS of mailferry, every scenario incl. the 30 MB message", max(rss) if rss else None, 16, " MiB", "%.1f")
    m, b = by.get(("initial", "mailferry")), by.get(("initial", "mbsync"))
    target("client CPU, initial: mailferry ÷ mbsync",
           ratio(m and m["runs"] and m["cpu_median"], b and b["runs"] and b["cpu_median"]), 0.5, "×")
    target("Dovecot → Courier (issue 22): mailferry ÷ mbsync", ratio(wall("initial-courier", "mailferry"),
                                                                 wall("initial-courier", "mbsync")), 0.5, "×")
    if mode == "full":
        target("no-change re-run, 100k in 20 folders, loopback", wall("rerun-100k", "mailferry"), 0.1, " s", "%.3f")
        target("the same behind the 50 ms proxy", wall("rerun-100k-50ms", "mailferry"), 0.3, " s", "%.3f")
        s = by.get(("rerun-100k-50ms", "mailferry"))
        target("bytes on the wire there", s and s.get("wire_bytes") is not None and s["wire_bytes"] / 1e3, 4,
               " KB", "%.1f")
    L.append("## Targets (issue 10)")
    L.append("")
    L.extend(G.markdown())
    L.append("")
    if mode == "full":
        s = {t: by.get(("rerun-100k-50ms", t)) for t in ("mailferry", "interimap", "mbsync")}
        rt = ["%s %d" % (t, v["round_trips"]) for t, v in s.items() if v and v.get("round_trips") is not None]
        if rt:
            L.append("Round trips in the no-change re-run behind the proxy: %s." % ", ".join(rt))
            L.append("")
    G17 = issue17_targets(by, mode, wall, ratio)
    scale_lines, scale_goals = scaling.section(summary, corpus, outdir)
    for g in scale_goals:
        G17.add(*g)
    L.append("## Targets (issue 17)")
    L.append("")
    L.extend(G17.markdown())
    L.append("")
    for sc, t in (("initial", "mailferry"), ("initial-tls", "mailferry_tls"), ("initial-100k", "mailferry")):
        s, bd = by.get((sc, t)), bound_of(by, sc, t)
        if s and bd and s["runs"] and s["wall_median"] < bd:
            L.append("- `%s`: %s took %.3f s, under the bound (%.3f s): the server served its fetches and "
                     "appends side by side faster than the ceiling's best phase alone (each phase alone "
                     "leaves one of the server's two kinds of work idle), or the bound's runs were slowed "
                     "by the machine's other load." % (sc, t, s["wall_median"], bd))
    L.append("")
    L.extend(scale_lines)

    # the peers' configurations
    conf_dir = os.path.join(outdir, "peers")
    confs = sorted(os.listdir(conf_dir)) if os.path.isdir(conf_dir) else []
    if confs:
        L.append("## Configurations used (passwords hidden)")
        L.append("")
        for name in confs:
            L.append("`%s`:" % name)
            L.append("```")
            L.append(read(os.path.join(conf_dir, name)).rstrip())
            L.append("```")
        L.append("")
    md = "\n".join(L) + "\n"
    with open(os.path.join(outdir, "report.md"), "w") as f:
        f.write(md)
    with open(os.path.join(outdir, "report.json"), "w") as f:
        json.dump(dict(mode=mode, date=time.strftime("%Y-%m-%dT%H:%M:%S%z"), machine=dict(
            host=platform.node(), cpu=cpu, cores=os.cpu_count(), mem_gib=mem, kernel=platform.release()),
            corpus=corpus, summary=summary,
            targets=[dict(target=t[0], measured=t[1], limit=t[2], verdict=t[3]) for t in G.rows + G17.rows],
            runs=rows), f, indent=1)
    print(md)
    chart(outdir, ratios)


def chart(outdir, ratios):
    """mailferry's wall time ÷ each other tool's, per scenario (log scale)."""
    if not ratios:
        return
    dat = os.path.join(outdir, "ratios.dat")
    with open(dat, "w") as f:
        for i, (sc, tool, r) in enumerate(ratios):
            f.write('%d "%s\\n%s" %.4f\n' % (i, sc, tool, max(r, 1e-3)))
    top = max(2.0, max(r for _, _, r in ratios) * 1.6)
    gp = """set terminal pngcairo size %d,650 font ",10" noenhanced
set output '%s'
set title "mailferry's wall time ÷ the other tool's (median of the runs; below 1: mailferry is faster)"
set style fill solid 0.6
set boxwidth 0.6
set logscale y
set yrange [*:%g]
set xrange [-0.7:%g]
set grid ytics
set xtics rotate by -35 font ",8"
set bmargin 7
set rmargin 6
plot '%s' using 1:3:xtic(2) with boxes notitle, '' using 1:3:(sprintf("%%.2f", $3)) with labels offset 0,0.7 notitle, 1 with lines lt 2 lw 2 title "equal"
""" % (max(900, 48 * len(ratios) + 200), os.path.join(outdir, "ratios.png"), top, len(ratios) - 0.3, dat)
    try:
        subprocess.run(["gnuplot"], input=gp.encode(), check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as e:
        err = getattr(e, "stderr", b"") or b""
        print("report: no chart (%s %s)" % (e, err.decode(errors="replace")[-200:]), file=sys.stderr)


if __name__ == "__main__":
    if len(sys.argv) >= 5 and sys.argv[1] == "exec":
        sys.exit(execute(sys.argv[2:]))
    elif len(sys.argv) >= 8 and sys.argv[1] == "record":
        record(sys.argv[2:])
    elif len(sys.argv) == 3:
        main(sys.argv[1], sys.argv[2])
    else:
        sys.exit("usage: report.py OUTDIR MODE | report.py exec WORKDIR TIMEOUT CMD... | "
                 "report.py record RESULTS SCENARIO TOOL RUN EXIT WORKDIR [CHECKED]")

#!/usr/bin/env python3
"""bench/report.py OUTDIR MODE — turns OUTDIR/results.jsonl (one line per
run of a tool in a scenario) into report.md, report.json and ratios.png
(gnuplot), and prints the Markdown. Medians with min and max; ratios are
mailferry's median wall time over the other tool's, measured in the same
run; a tool whose copy was not exact, or that failed, says so next to its
time."""
import json, os, platform, statistics, subprocess, sys, time

out, mode = sys.argv[1], sys.argv[2]
rows = [json.loads(l) for l in open(os.path.join(out, "results.jsonl"))]
groups = {}
for r in rows:
    groups.setdefault((r["scenario"], r["tool"]), []).append(r)


def med(v):
    return statistics.median(v) if v else 0.0


summary = []
for (sc, tool), rs in groups.items():
    walls = [r["wall"] for r in rs]
    first = min(rs, key=lambda r: r["run"])
    msgs = next((r["messages"] for r in rs if r.get("messages")), None)
    byts = next((r["bytes"] for r in rs if r.get("bytes")), None)
    s = dict(scenario=sc, tool=tool, runs=len(rs), wall_median=med(walls), wall_min=min(walls),
             wall_max=max(walls), cpu_median=med([r["user"] + r["sys"] for r in rs]),
             rss_kb_max=max(r["rss_kb"] for r in rs), failures=sum(1 for r in rs if r["exit"]),
             exact=first.get("exact"), diff=first.get("diff", ""), messages=msgs, bytes=byts)
    wire = [(r.get("proxy") or {}) for r in rs]
    if any(wire):
        s["wire_bytes"] = med([w.get("bytes_client_to_server", 0) + w.get("bytes_server_to_client", 0)
                               for w in wire])
        s["round_trips"] = med([w.get("round_trips", 0) for w in wire])
    elif any(r.get("wire_in") for r in rs):
        s["wire_bytes"] = med([(r.get("wire_in") or 0) + (r.get("wire_out") or 0) for r in rs])
    summary.append(s)

order = ["initial", "initial-tls", "rerun", "flags-1pct", "big-30mb", "rerun-50ms"]
tools = ["ceiling", "mailferry", "mailferry_tls", "interimap", "mbsync", "mbsync_tls", "offlineimap"]
summary.sort(key=lambda s: (order.index(s["scenario"]) if s["scenario"] in order else 99,
                            tools.index(s["tool"]) if s["tool"] in tools else 99))
by = {(s["scenario"], s["tool"]): s for s in summary}

# messages and bytes of the corpus from the first exact initial run
base = by.get(("initial", "ceiling")) or by.get(("initial", "mailferry")) or {}
n_msgs, n_bytes = base.get("messages") or 0, base.get("bytes") or 0

lines = []
lines.append("# mailferry benchmark (%s)" % mode)
lines.append("")
lines.append("%s, %s, %d cores, kernel %s; private Dovecot 2.3 on 127.0.0.1; corpus: %s messages, %.1f MB. "
             "Wall seconds are the median of %s runs (min–max)." % (
                 time.strftime("%Y-%m-%d %H:%M"), platform.node(), os.cpu_count(), platform.release(),
                 n_msgs, n_bytes / 1e6, max((s["runs"] for s in summary), default=0)))
lines.append("")
lines.append("| scenario | tool | wall s (min–max) | msg/s | MB/s | CPU s | peak RSS MiB | wire KB | exact | mailferry ÷ tool |")
lines.append("|---|---|---|---|---|---|---|---|---|---|")
ratios = []
for s in summary:
    sc, tool = s["scenario"], s["tool"]
    mf = by.get((sc, "mailferry_tls" if tool.endswith("_tls") else "mailferry"))
    ratio = ""
    if mf and tool not in ("mailferry", "mailferry_tls") and s["wall_median"] > 0:
        ratio = "%.2f" % (mf["wall_median"] / s["wall_median"])
        ratios.append((sc, tool, mf["wall_median"] / s["wall_median"]))
    if tool == "mailferry_tls" and by.get((sc.replace("-tls", ""), "mailferry")):
        plain = by[(sc.replace("-tls", ""), "mailferry")]["wall_median"]
        ratio = "TLS costs %+.0f %%" % (100 * (s["wall_median"] / plain - 1)) if plain else ""
    n = s["messages"] if sc in ("initial", "initial-tls") else None
    n = n or (n_msgs if sc in ("initial", "initial-tls") else None)
    mps = "%.0f" % (n / s["wall_median"]) if n and s["wall_median"] else ""
    mbs = "%.1f" % (n_bytes / 1e6 / s["wall_median"]) if sc in ("initial", "initial-tls") and s["wall_median"] else ""
    exact = {True: "yes", False: "**no**: " + s["diff"], None: ""}[s["exact"]]
    if s["failures"]:
        exact = ("**%d failed run(s)** " % s["failures"]) + exact
    wire = "%.1f" % (s["wire_bytes"] / 1024) if s.get("wire_bytes") else ""
    if s.get("round_trips"):
        wire += " (%d round trips)" % s["round_trips"]
    lines.append("| %s | %s | %.3f (%.3f–%.3f) | %s | %s | %.2f | %.1f | %s | %s | %s |" % (
        sc, tool, s["wall_median"], s["wall_min"], s["wall_max"], mps, mbs, s["cpu_median"],
        s["rss_kb_max"] / 1024, wire, exact, ratio))
lines.append("")
c = by.get(("initial", "ceiling"))
m = by.get(("initial", "mailferry"))
if c and m:
    lines.append("**mailferry / ceiling (initial, TLS off): %.2f×** (target ≤ 1.1×). Ceiling: %s."
                 % (m["wall_median"] / c["wall_median"],
                    "%.2f s" % c["wall_median"]))
lines.append("")
lines.append("Peers' configurations are in peers/ next to this report (passwords hidden).")
md = "\n".join(lines) + "\n"
open(os.path.join(out, "report.md"), "w").write(md)
json.dump(dict(mode=mode, summary=summary, runs=rows), open(os.path.join(out, "report.json"), "w"), indent=1)
print(md)

# the chart: mailferry's time as a fraction of each other tool's (lower is better)
if ratios:
    dat = os.path.join(out, "ratios.dat")
    with open(dat, "w") as f:
        for i, (sc, tool, r) in enumerate(ratios):
            f.write('%d "%s\\n%s" %.4f\n' % (i, sc, tool, r))
    gp = """set terminal pngcairo size 1200,600 font ",10"
set output '%s'
set title "mailferry wall time ÷ other tool's (below 1: mailferry faster)"
set style fill solid 0.6
set boxwidth 0.6
set yrange [0:*]
set grid ytics
set xtics rotate by -30 font ",8"
plot '%s' using 1:3:xtic(2) with boxes notitle, 1 with lines lt 2 title "equal"
""" % (os.path.join(out, "ratios.png"), dat)
    try:
        subprocess.run(["gnuplot"], input=gp.encode(), check=True, capture_output=True)
    except Exception as e:
        print("report: no chart (%s)" % e, file=sys.stderr)

"""bench/scaling.py — the scaling curves of `make bench-full` (issue 17
item 6): wall time, client CPU and peak RSS of each tool's initial copy at
every size of BENCH_SCALE_SIZES (the `scale-N` scenarios of bench/run.sh),
a check that each curve is linear or flat, and a chart (scaling.png,
gnuplot). Used by bench/report.py.

The check: per message, a step from one size to the next may cost at most
BENCH_SCALE_FACTOR (default 1.5) times the step before it; a step above is
super-linear, a defect to explain. Steps that get cheaper per message
(fixed costs spread thinner) are fine: flat or linear is what is wanted.
A step from under 0.1 s (wall or CPU) is not judged: GNU time counts 10 ms.
"""
import os
import subprocess
import sys

METRICS = (("wall_median", "wall s", "%.3f"), ("cpu_median", "CPU s", "%.2f"),
           ("rss_kb_max", "peak RSS MiB", "%.1f"))


def curves(summary):
    """{tool: [(messages, summary row), ...]} sorted by size, from the scale-N rows."""
    out = {}
    for s in summary:
        if s["scenario"].startswith("scale-") and s["runs"] and not s["failures"]:
            out.setdefault(s["tool"], []).append((int(s["scenario"][6:]), s))
    for v in out.values():
        v.sort(key=lambda p: p[0])
    return out


def value(s, key):
    return s[key] / 1024 if key == "rss_kb_max" else s[key]


def section(summary, corpus, outdir):
    """Markdown lines for the report and goal rows (name, value, limit,
    unit, fmt) for its targets table; nothing without scale-N rows."""
    cv = curves(summary)
    if not cv:
        return [], []
    factor = float(os.environ.get("BENCH_SCALE_FACTOR", "1.5"))
    L = ["## Scaling (issue 17 item 6)", "",
         "Initial copies of the crash profile's small messages (`bench/corpus --profile crash "
         "--messages N`: 3 folders, INBOX 40 %%), one run per size. Per step: the cost per message "
         "÷ the step before's; above %.1f× a step is super-linear (**bold**). Chart: `scaling.png`." % factor,
         "", "| tool | messages | MB | wall s | CPU s | peak RSS MiB | µs/message (wall) | step × (wall, CPU, RSS) | exact |",
         "|---|---|---|---|---|---|---|---|---|"]
    goals = []
    for tool, pts in sorted(cv.items()):
        worst = {}
        for i, (n, s) in enumerate(pts):
            steps = ""
            if i:
                pn, ps = pts[i - 1]
                parts = []
                for key, name, _ in METRICS:
                    if key != "rss_kb_max" and value(ps, key) < 0.1:
                        parts.append("–")  # GNU time counts 10 ms: too coarse a step
                        continue
                    a, b = value(ps, key) / pn, value(s, key) / n
                    r = b / a if a else 0.0
                    worst[name] = max(worst.get(name, 0.0), r)
                    parts.append(("**%.2f**" if r > factor else "%.2f") % r)
                steps = ", ".join(parts)
            c = corpus.get("scale%d" % n) or {}
            exact = "yes" if s["checked"] and not s["inexact"] else "**no**" if s["inexact"] else "not checked"
            L.append("| %s | %s | %.0f | %.3f | %.2f | %.1f | %.1f | %s | %s |" % (
                tool, format(n, ","), (c.get("bytes") or 0) / 1e6, s["wall_median"], s["cpu_median"],
                s["rss_kb_max"] / 1024, 1e6 * s["wall_median"] / n, steps, exact))
        for key, name, _ in METRICS:
            if name in worst:
                goals.append(("%s's %s curve (%s): worst step per message" % (
                    tool, name.split()[0] if name != "peak RSS MiB" else "peak RSS",
                    "–".join(format(n, ",") for n, _ in pts)), worst[name], factor, "×"))
    L.append("")
    chart(outdir, cv)
    return L, goals


def chart(outdir, cv):
    """scaling.png: the three curves per tool against messages, log-log."""
    files = []
    for tool, pts in sorted(cv.items()):
        dat = os.path.join(outdir, "scaling-%s.dat" % tool)
        with open(dat, "w") as f:
            for n, s in pts:
                f.write("%d %.4f %.4f %.2f\n" % (n, max(s["wall_median"], 1e-3), max(s["cpu_median"], 1e-3),
                                                max(s["rss_kb_max"] / 1024, 0.1)))
        files.append((tool, dat))
    plots = []
    for col, (_, name, _) in zip((2, 3, 4), METRICS):
        lines = ", ".join("'%s' using 1:%d with linespoints title '%s'" % (d, col, t) for t, d in files)
        plots.append("set title '%s'\nset ylabel '%s'\nplot %s" % (name, name, lines))
    gp = """set terminal pngcairo size 1500,500 font ",10" noenhanced
set output '%s'
set multiplot layout 1,3 title "initial copy against account size (log-log; a straight line of slope 1 is linear)"
set logscale xy
set grid
set key top left
set xlabel 'messages'
%s
unset multiplot
""" % (os.path.join(outdir, "scaling.png"), "\n".join(plots))
    try:
        subprocess.run(["gnuplot"], input=gp.encode(), check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as e:
        err = getattr(e, "stderr", b"") or b""
        print("report: no scaling chart (%s %s)" % (e, err.decode(errors="replace")[-200:]), file=sys.stderr)

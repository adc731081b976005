#!/usr/bin/env python3
"""bench/backup_report.py OUTDIR — the backup section of the benchmark
(bench/backup.sh): OUTDIR/backup.jsonl (runs recorded by report.py record),
backup-corpus.json, backup-archive.jsonl (the archives' own sizes) and
backup-size.txt (tar | zstd and bench/archive_ratio) become backup.md and
backup.json; backup.md is appended to OUTDIR/report.md when bench/run.sh
wrote one. Prints the Markdown.

Per scenario and tool: median wall time (min–max), messages/s and MB/s of
the corpus, CPU, peak RSS, exactness; then the issue's goals (met or
missed, by how much) and the size variants. A failed or inexact run says
so in its row, never hidden.
"""
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from report import Goals, exact_cell, fmt_s, read, summarize  # noqa: E402

ORDER = ["backup", "backup-rerun", "migrate", "migrate-rerun", "restore", "export-maildir", "export-mbox",
         "backup-30mb"]
TOOLS = ["ceiling", "mailferry", "mailferry_enc", "migrate", "mbsync", "offlineimap"]
NOTES = {
    "backup": "a first backup of the account: mailferry into a fresh archive (`_enc`: with "
              "`--encrypt`), mbsync and OfflineIMAP into a fresh Maildir; ceiling: `bench/ceiling "
              "--fetch-only`, `UID FETCH 1:* (FLAGS INTERNALDATE BODY.PEEK[])` on one connection "
              "per folder, nothing stored. mailferry's exactness: `export --maildir` of the archive "
              "(the export-maildir row) compared with the source by bench/compare",
    "backup-rerun": "nothing changed: mailferry backup `--sync-flags --delete` over the first "
                    "run's archive and state; mbsync over its Maildir",
    "migrate": "one `mailferry migrate` of the account into an empty account of the same Dovecot "
               "(its defaults: 4 connections): what APPENDing this mail costs, next to restore",
    "migrate-rerun": "nothing changed: `mailferry migrate --sync-flags --delete` over the migrate "
                     "row's copy",
    "restore": "the plain archive into an empty account of the same Dovecot, compared with the "
               "source",
    "export-maildir": "the plain archive to a Maildir (compared with the source)",
    "export-mbox": "the plain archive to one mboxrd file (messages counted by their From lines)",
    "backup-30mb": "an account holding one 30 MB message: peak RSS",
}


def main(outdir):
    rows = [json.loads(l) for l in read(os.path.join(outdir, "backup.jsonl")).splitlines() if l.strip()]
    corpus = json.loads(read(os.path.join(outdir, "backup-corpus.json"), "{}") or "{}")
    summary = summarize(rows)
    summary.sort(key=lambda s: (ORDER.index(s["scenario"]) if s["scenario"] in ORDER else 99,
                                TOOLS.index(s["tool"]) if s["tool"] in TOOLS else 99))
    by = {(s["scenario"], s["tool"]): s for s in summary}

    def wall(sc, tool):
        s = by.get((sc, tool))
        return s["wall_median"] if s and not s["missing"] and s["runs"] and not s["failures"] else None

    src, big = corpus.get("src", {}), corpus.get("big", {})
    L = ["", "## Backup, restore, export (issue 19): `bench/backup.sh`", ""]
    if src:
        L.append("Its own private Dovecot; corpus `%s` (seed 1): %s messages, %.1f MB, %s folders, "
                 "random-filled base64 attachments among them; `backup-30mb`: one message of %.1f MB."
                 % (src.get("profile"), format(src["messages"], ","), src["bytes"] / 1e6,
                    src.get("folders"), big.get("bytes", 0) / 1e6))
    L.append("")
    L.append("| scenario | tool | runs | wall s (min–max) | msg/s | MB/s | CPU s | peak RSS MiB | exact | "
             "÷ |")
    L.append("|---|---|---|---|---|---|---|---|---|---|")
    last = None
    for s in summary:
        sc, tool = s["scenario"], s["tool"]
        if s["missing"]:
            L.append("| %s | %s | 0 | missing (not installed or not built) | | | | | | |" % (sc, tool))
            continue
        c = big if sc == "backup-30mb" else src
        copies = "rerun" not in sc
        w = s["wall_median"]
        mps = "%.0f" % (c["messages"] / w) if copies and c and w and c["messages"] > 1 else ""
        mbs = "%.1f" % (c["bytes"] / 1e6 / w) if copies and c and w else ""
        exact = exact_cell(s)
        note = next((r.get("diff") for r in rows if r["scenario"] == sc and r["tool"] == tool
                     and r.get("exact") and r.get("diff")), "")
        if note:
            exact += " (%s)" % note
        ratio = ""
        mf = wall(sc, "mailferry")
        if sc in ("backup", "backup-rerun") and tool != "mailferry" and mf and w:
            ratio = "%.2f ÷ mailferry" % (w / mf) if tool != "ceiling" else "mailferry ÷ %.2f" % (mf / w)
        if sc == "migrate-rerun" and wall("backup-rerun", "mailferry") and w:
            ratio = "backup's %.2f" % (wall("backup-rerun", "mailferry") / w)
        L.append("| %s | %s | %d | %s (%s–%s) | %s | %s | %.2f | %.1f | %s | %s |" % (
            sc if sc != last else "", tool, s["runs"], fmt_s(w), fmt_s(s["wall_min"]), fmt_s(s["wall_max"]),
            mps, mbs, s["cpu_median"], s["rss_kb_max"] / 1024, exact.replace("|", "/"), ratio))
        last = sc
    L.append("")
    for sc in ORDER:
        if any(s["scenario"] == sc for s in summary):
            L.append("- `%s`: %s" % (sc, NOTES[sc]))
    L.append("- ÷: the tool's median wall time over mailferry's (above 1: mailferry is faster), "
             "mailferry's over the ceiling's, the no-change backup's over the no-change migrate's.")
    L.append("")

    # ---- sizes ----
    size = read(os.path.join(outdir, "backup-size.txt"))
    tar = {}
    for m in re.finditer(r"^tar (\w+) (\d+) (\d+) (\d+)$", size, re.M):
        tar[(m.group(1), int(m.group(2)))] = (int(m.group(3)), int(m.group(4)))
    ar = [json.loads(l) for l in read(os.path.join(outdir, "backup-archive.jsonl")).splitlines() if l.strip()]
    text_archive = None
    S = []
    m = re.search(r"^ratio (\d+) messages, (\d+) bytes", size, re.M)
    if m:
        S.append("Mail without base64 parts (the 0.20 goal; %s messages, %.1f MB: the corpus's base64 "
                 "attachments are random bytes, incompressible):" % (format(int(m.group(1)), ","),
                                                                       int(m.group(2)) / 1e6))
        S.append("")
        S.append("| variant | stored ÷ raw |")
        S.append("|---|---|")
        for m in re.finditer(r"^ratio (archive: [^\n]*?|reference: [^\n]*?)\s+ratio ([0-9.]+)(.*)$", size, re.M):
            name = m.group(1).strip()
            if name.startswith("archive: default ("):
                text_archive = float(m.group(2))
                name = "mailferry archive, backup's defaults (" + name[len("archive: default ("):-1] + \
                    "), one message readable alone"
            elif name.startswith("archive: default, "):
                name = "the same, frames compressed on " + name[len("archive: default, "):] + \
                    " (the default on 4 CPUs or more)"
            S.append("| %s | %s%s |" % (name, m.group(2), m.group(3).split("MB/s")[0].rstrip(" 0123456789.")))
        for lv in (3, 19):
            if ("text", lv) in tar:
                raw, z = tar[("text", lv)]
                S.append("| reference: `tar \\| zstd -%d` (the files) | %.3f |" % (lv, z / raw))
        S.append("")
    if ar or tar:
        S.append("All the mail (attachments included):")
        S.append("")
        S.append("| variant | stored ÷ raw |")
        S.append("|---|---|")
        for t in ("mailferry", "mailferry_enc"):
            a = [x for x in ar if x.get("tool") == t and x.get("raw_bytes")]
            if a:
                S.append("| %s backup's archive (%d distinct messages, %.1f of %.1f MB) | %.3f |" % (
                    t, a[0]["objects"], a[0]["stored_bytes"] / 1e6, a[0]["raw_bytes"] / 1e6,
                    a[0]["stored_bytes"] / a[0]["raw_bytes"]))
        for lv in (3, 19):
            if ("all", lv) in tar:
                raw, z = tar[("all", lv)]
                S.append("| reference: `tar \\| zstd -%d` | %.3f |" % (lv, z / raw))
        S.append("")

    # ---- the goals ----
    G = Goals()
    target = G.add

    def ratio(a, b):
        return a / b if a is not None and b else None

    exact_mf = by.get(("backup", "mailferry"))
    exact_ok = exact_mf and exact_mf["checked"] and not exact_mf["inexact"] and not exact_mf["failures"]
    target("backup: mbsync ÷ mailferry%s" % ("" if exact_ok else " (mailferry NOT exact)"),
           ratio(wall("backup", "mbsync"), wall("backup", "mailferry")), 4.5, "×", lower=False)
    target("backup: mailferry ÷ ceiling (bare FETCH)",
           ratio(wall("backup", "mailferry"), wall("backup", "ceiling")), 1.5, "×")
    target("no-change backup ÷ no-change migrate (the same cost)",
           ratio(wall("backup-rerun", "mailferry"), wall("migrate-rerun", "migrate")), 1.2, "×")
    target("size, mail without base64 parts: stored ÷ raw", text_archive, 0.20, "", "%.3f")
    for t, what in (("mailferry", "plain"), ("mailferry_enc", "--encrypt")):
        rss = [s["rss_kb_max"] / 1024 for s in summary if s["tool"] == t and s["runs"]
               and s["scenario"].startswith("backup")]
        target("peak RSS of backup, %s, every scenario incl. 30 MB" % what, max(rss) if rss else None, 32,
               " MiB", "%.1f")
    L.append("Goals of issue 19:")
    L.append("")
    L.extend(G.markdown("goal"))
    L.append("")
    b = wall("backup", "mailferry")
    speeds = []
    for sc, what in (("backup", "backup"), ("restore", "restore"), ("export-maildir", "export Maildir"),
                     ("export-mbox", "export mbox")):
        w = wall(sc, "mailferry")
        if w and src:
            speeds.append("%s %.1f MB/s" % (what, src["bytes"] / 1e6 / w))
    if speeds:
        L.append("Throughput on the corpus (median): " + ", ".join(speeds) + ".")
        L.append("")
    L.extend(S)
    md = "\n".join(L) + "\n"
    with open(os.path.join(outdir, "backup.md"), "w") as f:
        f.write(md)
    with open(os.path.join(outdir, "backup.json"), "w") as f:
        json.dump(dict(corpus=corpus, summary=summary, goals=G.json(),
                       archives=ar, size=size.splitlines()), f, indent=1)
    rep = os.path.join(outdir, "report.md")
    if os.path.exists(rep):
        with open(rep, "a") as f:
            f.write(md)
    sys.stdout.write(md)
    return 0 if b is not None else 1


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.stderr.write("usage: backup_report.py OUTDIR\n")
        sys.exit(2)
    sys.exit(main(sys.argv[1]))

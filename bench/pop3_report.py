#!/usr/bin/env python3
"""bench/pop3_report.py OUTDIR — the POP3 section of the benchmark
(bench/pop3.sh): OUTDIR/pop3.jsonl (runs recorded by report.py record) and
pop3-corpus.json become pop3.md and pop3.json; pop3.md is appended to
OUTDIR/report.md when bench/run.sh wrote one. Prints the Markdown.

Per scenario and tool: median wall time (min–max), messages/s and MB/s,
CPU, peak RSS, exactness, and the fastest peer's time over mailferry's (the
peers writing a local Maildir, and those delivering into the same Dovecot);
then issue 18's POP3 goals (met or missed, by how much), per destination
against the peers doing the same job. A failed or inexact run says so in
its row, never hidden; a peer counts for the same-job goals only when exact.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from report import Goals, exact_cell, fmt_s, read, summarize  # noqa: E402

ORDER = ["pop3", "pop3-30mb"]
TOOLS = ["mailferry", "mailferry_lmtp", "mailferry_archive", "mpop", "fetchmail", "getmail",
         "mpop_lda", "fetchmail_lmtp"]
# the peers writing a plain Maildir no server has indexed (the local store)
PEERS = ["mpop", "fetchmail", "getmail"]
# the peers doing mailferry's job into Dovecot: every message in an empty
# account of the same Dovecot, indexed, visible over IMAP
DV_PEERS = ["mpop_lda", "fetchmail_lmtp"]
NOTES = {
    "pop3": "the maildrop read once from an empty UIDL store, the mail kept on the server. "
            "mailferry: `migrate pop3:// imap://` into an empty account of the same Dovecot, "
            "`_lmtp`: `migrate pop3:// lmtp://` into Dovecot's LMTP, `_archive`: `backup pop3://` "
            "into a fresh archive (checked through `export --maildir`). mpop and getmail6 deliver "
            "into a Maildir themselves, fetchmail through an MDA writing one file per message "
            "(the local store, no server indexes it). Into the same Dovecot, the same job as "
            "mailferry's: `mpop_lda` mpop through dovecot-lda (Dovecot's own MDA, one process per "
            "message, the instance's configuration), `fetchmail_lmtp` fetchmail forwarding by LMTP "
            "to Dovecot's LMTP port, each into an empty account",
    "pop3-30mb": "a maildrop holding one 30 MB message: peak RSS",
}


def main(outdir):
    rows = [json.loads(l) for l in read(os.path.join(outdir, "pop3.jsonl")).splitlines() if l.strip()]
    corpus = json.loads(read(os.path.join(outdir, "pop3-corpus.json"), "{}") or "{}")
    summary = summarize(rows)
    summary.sort(key=lambda s: (ORDER.index(s["scenario"]) if s["scenario"] in ORDER else 99,
                                TOOLS.index(s["tool"]) if s["tool"] in TOOLS else 99))
    by = {(s["scenario"], s["tool"]): s for s in summary}

    def wall(sc, tool):
        s = by.get((sc, tool))
        return s["wall_median"] if s and not s["missing"] and s["runs"] and not s["failures"] else None

    def exact(sc, tool):
        s = by.get((sc, tool))
        return bool(s and s["checked"] and not s["inexact"] and not s["failures"])

    # the fastest peer that copied exactly, else the fastest at all (said so)
    peers = [(wall("pop3", t), t) for t in PEERS if wall("pop3", t)]
    exact_peers = [p for p in peers if exact("pop3", p[1])]
    fastest = min(exact_peers or peers) if peers else None
    # the fastest peer delivering into the same Dovecot: exact ones only
    dv_peers = [(wall("pop3", t), t) for t in DV_PEERS if wall("pop3", t) and exact("pop3", t)]
    dv_fastest = min(dv_peers) if dv_peers else None
    dv_inexact = [t for t in DV_PEERS if wall("pop3", t) and not exact("pop3", t)]

    src, big = corpus.get("src", {}), corpus.get("big", {})
    L = ["", "## POP3 as a source (issue 18): `bench/pop3.sh`", ""]
    if src:
        L.append("Its own private Dovecot; the maildrop is corpus `%s`'s INBOX (seed 1): %s messages, "
                 "%.1f MB, served by Dovecot's POP3 on loopback; `pop3-30mb`: one message of %.1f MB."
                 % (src.get("profile"), format(src["messages"], ","), src["bytes"] / 1e6,
                    big.get("bytes", 0) / 1e6))
    L.append("")
    L.append("| scenario | tool | runs | wall s (min–max) | msg/s | MB/s | CPU s | peak RSS MiB | exact | "
             "fastest peer ÷ tool | fastest peer into Dovecot ÷ tool |")
    L.append("|---|---|---|---|---|---|---|---|---|---|---|")
    last = None
    for s in summary:
        sc, tool = s["scenario"], s["tool"]
        if s["missing"]:
            L.append("| %s | %s | 0 | missing (not installed or not built) | | | | | | | |" % (sc, tool))
            continue
        c = big if sc == "pop3-30mb" else src
        w = s["wall_median"]
        mps = "%.0f" % (c["messages"] / w) if c and w and c["messages"] > 1 else ""
        mbs = "%.1f" % (c["bytes"] / 1e6 / w) if c and w else ""
        ex = exact_cell(s)
        note = next((r.get("diff") for r in rows if r["scenario"] == sc and r["tool"] == tool
                     and r.get("exact") and r.get("diff")), "")
        if note:
            ex += " (%s)" % note
        ratio = "%.2f" % (fastest[0] / w) if sc == "pop3" and fastest and w and not s["failures"] else ""
        dv_ratio = "%.2f" % (dv_fastest[0] / w) if sc == "pop3" and dv_fastest and w and not s["failures"] else ""
        L.append("| %s | %s | %d | %s (%s–%s) | %s | %s | %.2f | %.1f | %s | %s | %s |" % (
            sc if sc != last else "", tool, s["runs"], fmt_s(w), fmt_s(s["wall_min"]), fmt_s(s["wall_max"]),
            mps, mbs, s["cpu_median"], s["rss_kb_max"] / 1024, ex.replace("|", "/"), ratio, dv_ratio))
        last = sc
    L.append("")
    for sc in ORDER:
        if any(s["scenario"] == sc for s in summary):
            L.append("- `%s`: %s" % (sc, NOTES[sc]))
    if fastest:
        L.append("- fastest peer: %s (%s s)%s; its time over the tool's: above 1, the tool is faster."
                 % (fastest[1], fmt_s(fastest[0]), "" if exact_peers else ", NOT exact"))
    if dv_fastest:
        L.append("- fastest peer into Dovecot (the same job as mailferry's → IMAP and → LMTP; exact runs only): "
                 "%s (%s s); its time over the tool's: above 1, the tool is faster." % (
                     dv_fastest[1], fmt_s(dv_fastest[0])))
    if dv_inexact:
        L.append("- not counted as a peer into Dovecot (not exact or failed): %s." % ", ".join(dv_inexact))
    # a peer exact only with its Return-Path moved (fetchmail_lmtp): what
    # the comparison would be without it, so the allowance hides nothing
    moved = [t for w_, t in dv_peers if any("Return-Path" in (r.get("diff") or "") for r in rows
                                             if r["scenario"] == "pop3" and r["tool"] == t)]
    if moved:
        rest = [p for p in dv_peers if p[1] not in moved]
        L.append("- %s counted exact with its own Return-Path field moved (its row says how many); without "
                 "that allowance the fastest peer into Dovecot would be %s." % (
                     ", ".join(moved), "%s (%s s)" % (min(rest)[1], fmt_s(min(rest)[0])) if rest else "none"))
    L.append("- exact: tests/integration/trace_compare.py (every message once, its bytes after the "
             "trace fields a delivery adds, compared without CRs); a row says when a final line end "
             "was added to messages that had none (POP3's terminator hides its absence unless the "
             "client checks the listed size).")
    L.append("")

    # the bounds (pop3.sh bounds()): the server alone, bare clients
    def med(name, key):
        v = sorted(json.loads(l).get(key) or 0 for l in read(os.path.join(outdir, name), "").splitlines()
                   if l.strip())
        v = [x for x in v if x > 0]
        return v[len(v) // 2] if v else None
    b_imap = med("pop3-bound-imap.jsonl", "append_seconds")
    b_lmtp = med("pop3-bound-lmtp.jsonl", "seconds")
    if b_imap or b_lmtp:
        parts = []
        for b, tool, what in ((b_imap, "mailferry", "IMAP APPEND from memory (bench/ceiling, best of 1, 2, 4 "
                               "and 8 connections)"),
                              (b_lmtp, "mailferry_lmtp", "LMTP, 4 pipelined connections (bench/lmtp_ceiling.sh)")):
            if b:
                w = wall("pop3", tool)
                parts.append("%s %s s%s" % (what, fmt_s(b), "; mailferry ÷ it %.2f×" % (w / b) if w else ""))
        L.append("- bounds, what this Dovecot accepts of the same messages from a bare client that fetches "
                 "nothing (median of the runs): " + "; ".join(parts) + ".")
        if fastest:
            need = fastest[0] / 3
            for b, what in ((b_imap, "IMAP"), (b_lmtp, "LMTP")):
                if b:
                    L.append("- 3× the fastest peer means %s s into %s: %s" % (
                        fmt_s(need), what, "below the server's own bound (%s s): out of reach for any "
                        "client on this server" % fmt_s(b) if need < b else "within the bound (%s s)" % fmt_s(b)))
        if dv_fastest:
            need = dv_fastest[0] / 3
            for b, what in ((b_imap, "IMAP"), (b_lmtp, "LMTP")):
                if b:
                    L.append("- 3× the fastest peer into Dovecot (%s) means %s s into %s: %s" % (
                        dv_fastest[1], fmt_s(need), what, "below the server's own bound (%s s): out of reach "
                        "for any client on this server" % fmt_s(b) if need < b else
                        "within the bound (%s s)" % fmt_s(b)))
        L.append("")

    G = Goals()
    notes_after = []
    target = G.add

    for tool, what in (("mailferry", "POP3 → IMAP"), ("mailferry_lmtp", "POP3 → LMTP")):
        w = wall("pop3", tool)
        name = "%s: fastest peer (%s) ÷ mailferry%s" % (what, fastest[1] if fastest else "?",
                                                       "" if exact("pop3", tool) else " (mailferry NOT exact)")
        target(name, fastest[0] / w if fastest and w else None, 3.0, "×", lower=False)
    # per destination, against the peers doing the same job (exact peers only)
    for tool, what in (("mailferry_lmtp", "POP3 → LMTP"), ("mailferry", "POP3 → IMAP")):
        w = wall("pop3", tool)
        name = "%s vs the fastest peer delivering into Dovecot (the same job; %s) ÷ mailferry%s" % (
            what, dv_fastest[1] if dv_fastest else "no exact peer", "" if exact("pop3", tool) else
            " (mailferry NOT exact)")
        target(name, dv_fastest[0] / w if dv_fastest and w else None, 3.0, "×", lower=False)
    exact_local = min(exact_peers) if exact_peers else None
    w = wall("pop3", "mailferry_archive")
    target("POP3 → archive vs the fastest peer writing a local Maildir (%s) ÷ mailferry%s" % (
        exact_local[1] if exact_local else "no exact peer", "" if exact("pop3", "mailferry_archive") else
        " (mailferry NOT exact)"), exact_local[0] / w if exact_local and w else None, 3.0, "×", lower=False)
    # the measure: the 30 MB message (memory bounded whatever a
    # message's size); the maildrop's rows hold 4 source/destination pairs
    # and their buffers, whatever the sizes, and are shown apart
    rss = [s["rss_kb_max"] / 1024 for s in summary if s["tool"] in ("mailferry", "mailferry_lmtp")
           and s["scenario"] == "pop3-30mb" and s["runs"]]
    target("peak RSS of mailferry, POP3 → IMAP and → LMTP, the 30 MB message", max(rss) if rss else None,
           16, " MiB", "%.1f")
    many = ["%s %.1f MiB" % (s["tool"], s["rss_kb_max"] / 1024) for s in summary
            if s["tool"] in ("mailferry", "mailferry_lmtp") and s["scenario"] == "pop3" and s["runs"]]
    if many:
        notes_after.append("- peak RSS on the maildrop (up to 4 sessions, each with its destination "
                           "connection and their buffers): " + ", ".join(many))
    # the archive's own bound (issue 19): its writer thread holds a 4 MiB ring
    rss = [s["rss_kb_max"] / 1024 for s in summary if s["tool"] == "mailferry_archive" and s["runs"]]
    target("peak RSS of mailferry, POP3 → archive (issue 19's bound)", max(rss) if rss else None, 32,
           " MiB", "%.1f")
    L.append("Goals of issue 18 (POP3):")
    L.append("")
    L.extend(G.markdown("goal"))
    L.append("")
    L.extend(notes_after)
    if notes_after:
        L.append("")
    md = "\n".join(L) + "\n"
    with open(os.path.join(outdir, "pop3.md"), "w") as f:
        f.write(md)
    with open(os.path.join(outdir, "pop3.json"), "w") as f:
        json.dump(dict(corpus=corpus, summary=summary, goals=G.json()), f, indent=1)
    rep = os.path.join(outdir, "report.md")
    if os.path.exists(rep):
        with open(rep, "a") as f:
            f.write(md)
    sys.stdout.write(md)
    return 0 if wall("pop3", "mailferry") is not None else 1


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.stderr.write("usage: pop3_report.py OUTDIR\n")
        sys.exit(2)
    sys.exit(main(sys.argv[1]))

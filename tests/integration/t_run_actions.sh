#!/usr/bin/env bash
# mailferry run with an action per accounts-file line (issue 20 item 1)
# against a private Dovecot: two backup lines into ONE archive (a message
# both accounts hold is stored once), a restore line from that archive into
# an empty account (exact), a migrate line (exact), a line with an unknown
# action and a restore from an archive that is not there (each named by
# FILE:LINE, the rest run). The lines naming the archive wait for each
# other (one writer), none fails for it. A re-run copies and stores 0, on
# two threads; verify ARCHIVE is clean; --resume skips the lines done;
# --shard 0/2 and 1/2 take every line once.
. "$(dirname "$0")/lib.sh"

dv_start A --users "s1 s2 m1 r1" || { not_ok dovecot "start failed"; exit 1; }
corpus A s1 tiny 31 || { not_ok corpus "generation failed"; exit 1; }
corpus A s2 tiny 32 || { not_ok corpus "generation failed"; exit 1; }
PW=$A_DIR/pw
P=$A_IMAP_PORT
H=127.0.0.1
MD=$A_DIR/mail
AR=$T_TMP/archive
# the same message in both accounts: one of s1's INBOX messages copied into s2's
shared=$(find "$MD/s1/Maildir/cur" "$MD/s1/Maildir/new" -type f | head -n 1)
cp "$shared" "$MD/s2/Maildir/new/1700000000.M1P1.shared"
"$ROOT/scripts/dovecot.sh" fixperms "$A_DIR"
msgs() { find "$MD/$1/Maildir" -path '*/cur/*' -o -path '*/new/*' | grep -c .; }
n1=$(msgs s1); n2=$(msgs s2)
distinct=$(find "$MD/s1/Maildir" "$MD/s2/Maildir" \( -path '*/cur/*' -o -path '*/new/*' \) -type f \
	-exec sha256sum {} + | cut -d' ' -f1 | sort -u | grep -c .)
[ "$distinct" -lt $((n1 + n2)) ] && ok "corpus-shares-a-message ($distinct distinct of $((n1 + n2)))" ||
	not_ok corpus-shares-a-message "$distinct distinct of $((n1 + n2))"

ACC=$T_TMP/accounts.txt
cat >"$ACC" <<EOF2
# many accounts into one deduplicated archive, and back
backup imap://s1@$H:$P $AR --src-password-file $PW/s1
backup imap://s2@$H:$P '$AR' --src-password-file $PW/s2
restore $AR imap://r1@$H:$P --run 1 --dst-password-file $PW/r1
migrate imap://s1@$H:$P imap://m1@$H:$P --src-password-file $PW/s1 --dst-password-file $PW/m1
bakup imap://s1@$H:$P $AR --src-password-file $PW/s1
restore $T_TMP/no-archive imap://r1@$H:$P --dst-password-file $PW/r1
backup imap://s1@$H:$P $AR --src-password-file $PW/s1 --dedupe
EOF2
chmod 600 "$ACC"
RUN=(mf run "$ACC" --jobs 4 --state "$T_TMP/state" --ca-file "$A_CA_FILE" --json --no-progress
	--report "$T_TMP/report.json")

expect_exit run-exit-2-bad-lines 2 "${RUN[@]}"
cp "$T_TMP/last.out" "$T_TMP/run1.out"; cp "$T_TMP/last.err" "$T_TMP/run1.err"
check restore-line-exact "$BENCH_BIN/compare" "$MD/s1/Maildir" "$MD/r1/Maildir"
check migrate-line-exact "$BENCH_BIN/compare" "$MD/s1/Maildir" "$MD/m1/Maildir"
grep -q "accounts.txt:6: .*\"bakup\" is neither" "$T_TMP/run1.err" && ok bad-action-named ||
	not_ok bad-action-named "$(grep accounts.txt:6 "$T_TMP/run1.err" | head -n 1)"
grep -q "accounts.txt:7: .*no-archive" "$T_TMP/run1.err" && ok missing-archive-named ||
	not_ok missing-archive-named "$(grep accounts.txt:7 "$T_TMP/run1.err" | head -n 1)"
grep -q "accounts.txt:8: backup: --dedupe" "$T_TMP/run1.err" && ok bad-option-named ||
	not_ok bad-option-named "$(grep accounts.txt:8 "$T_TMP/run1.err" | head -n 1)"
python3 - "$T_TMP/run1.out" "$T_TMP/report.json" "$n1" "$n2" <<'PY' && ok run-events-name-actions || not_ok run-events-name-actions "see above"
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
acc = {e["line"]: e for e in ev if e.get("event") == "account"}
want = {2: ("backup", "done"), 3: ("backup", "done"), 4: ("restore", "done"),
        5: ("migrate", "done"), 6: (None, "bad_line"), 7: ("restore", "bad_line"),
        8: ("backup", "bad_line")}
got = {k: (acc[k].get("action"), acc[k]["status"]) for k in acc}
assert got == want, got
n1, n2 = int(sys.argv[3]), int(sys.argv[4])
assert acc[2]["messages_copied"] == n1 and acc[4]["messages_copied"] == n1, acc
assert acc[5]["messages_copied"] == n1, acc[5]
# the archive lines ran one after another: none failed for the lock
s = [e for e in ev if e.get("event") == "run_summary"][0]
assert (s["accounts"], s["ok"], s["bad_lines"]) == (7, 4, 2), s
rep = json.load(open(sys.argv[2]))
acts = sorted((r["line"], r["action"]) for r in rep["accounts"])
assert acts[:4] == [(2, "backup"), (3, "backup"), (4, "restore"), (5, "migrate")], acts
PY
grep '"event":"archive"' "$T_TMP/run1.out" | grep -q '"job":"[^"]*accounts.txt:3","run":2,"committed":true' &&
	ok archive-event-names-line || not_ok archive-event-names-line "$(grep '"event":"archive"' "$T_TMP/run1.out")"
objs=$(sed -n 's/.*"event":"archive".*"objects":\([0-9]*\).*/\1/p' "$T_TMP/run1.out" | sort -n | tail -n 1)
[ "$objs" = "$distinct" ] && ok "archive-stores-shared-once ($objs objects for $((n1 + n2)) messages)" ||
	not_ok archive-stores-shared-once "$objs objects, $distinct distinct"
expect_exit archive-ls 0 mf archive ls "$AR"
grep -q '^run=1 .*account="s1@127.0.0.1" state=complete' "$T_TMP/last.out" &&
	grep -q '^run=2 .*account="s2@127.0.0.1" state=complete' "$T_TMP/last.out" && ok archive-ls-two-accounts ||
	not_ok archive-ls-two-accounts "$(grep '^run=' "$T_TMP/last.out")"

# a re-run (two threads): nothing copied, nothing stored, still exact
expect_exit rerun-exit-2 2 "${RUN[@]}" --threads 2 --jobs 3
python3 - "$T_TMP/last.out" <<'PY' && ok rerun-copies-0 || not_ok rerun-copies-0 "see above"
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
s = [e for e in ev if e.get("event") == "run_summary"][0]
assert s["messages_copied"] == 0 and s["ok"] == 4, s
for e in ev:
    if e.get("event") == "account" and e["status"] == "done":
        assert e["messages_copied"] == 0 and e["messages_skipped"] > 0, e
PY
objs2=$(sed -n 's/.*"event":"archive".*"objects":\([0-9]*\).*/\1/p' "$T_TMP/last.out" | sort -n | tail -n 1)
[ "$objs2" = "$distinct" ] && ok "rerun-stores-0 ($objs2 objects)" || not_ok rerun-stores-0 "$objs2 objects"
check rerun-restore-exact "$BENCH_BIN/compare" "$MD/s1/Maildir" "$MD/r1/Maildir"
expect_exit verify-archive 0 mf verify "$AR"

# --resume: the lines done are not run again
expect_exit resume-exit-2 2 "${RUN[@]}" --resume
python3 - "$T_TMP/last.out" <<'PY' && ok resume-skips-done-lines || not_ok resume-skips-done-lines "see above"
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
st = {e["line"]: (e.get("action"), e["status"]) for e in ev if e.get("event") == "account"}
assert all(st[k][1] == "done_earlier" for k in (2, 3, 4, 5)), st
assert st[4][0] == "restore" and st[2][0] == "backup", st
PY
# --shard: every line in exactly one of two shards
for k in 0 1; do
	mf run "$ACC" --shard "$k/2" --state "$T_TMP/state" --ca-file "$A_CA_FILE" --json --no-progress \
		>"$T_TMP/shard$k.out" 2>"$T_TMP/shard$k.err"
done
python3 - "$T_TMP/shard0.out" "$T_TMP/shard1.out" <<'PY' && ok shards-split-lines || not_ok shards-split-lines "see above"
import json, sys
lines = []
for f in sys.argv[1:]:
    for l in open(f):
        if l.startswith("{"):
            e = json.loads(l)
            if e.get("event") == "account":
                lines.append(e["line"])
                assert e["status"] != "done" or e["messages_copied"] == 0, e
assert sorted(lines) == [2, 3, 4, 5, 6, 7, 8], lines
PY

t_cleanup

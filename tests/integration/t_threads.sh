#!/usr/bin/env bash
# mailferry run --threads (issue 20 item 1): accounts spread over several
# event loops, one per thread, sharing the per-host cap.
#   1. 60 small accounts, --threads 2 --jobs 12 --max-per-host 8 (ASan build):
#      every account exact, both loops got accounts (the run summary says how
#      many each), every JSON line whole, the cap kept on the server side
#      (Dovecot's log: sessions open at once) and on the client's side.
#   2. A re-run with --threads 1 (the single-loop path) and one with
#      --threads 2 copy nothing: the states written on worker threads hold.
#   3. The same under ThreadSanitizer (build/tsan/mailferry, `make tsan`,
#      built here if missing): 20 other accounts, --threads 2, a byte rate
#      and a cap so that hostlimit's cross-thread paths run; no report
#      (tests/integration/tsan.supp: LMDB's per-state writer mutexes only).
. "$(dirname "$0")/lib.sh"

N=60
NT=20
M=$((N + NT))
users=
for i in $(seq 1 $M); do users="$users s$i d$i"; done
dv_start A --users "${users# }" || { not_ok dovecot "start failed"; exit 1; }
P=$A_IMAP_PORT
H=127.0.0.1
PW=$A_DIR/pw
[ -n "${A_MAIL_ROOT:-}" ] || A_MAIL_ROOT=$A_DIR/mail
MAILDIR() { echo "$A_MAIL_ROOT/$1/Maildir"; }
LOG=$A_DIR/dovecot.log

# small mailboxes, each message naming its account (as t_per_host)
python3 - "$A_MAIL_ROOT" $M <<'PY' || { not_ok corpus "generation failed"; exit 1; }
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
folders = [("", 4), (".Sent", 2), (".Archive", 2)]
t0 = 1700000000
for i in range(1, n + 1):
    base = os.path.join(root, "s%d" % i, "Maildir")
    k = 0
    for f, cnt in folders:
        d = os.path.join(base, f) if f else base
        for sub in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(d, sub), exist_ok=True)
        for m in range(cnt):
            k += 1
            body = ("From: s%d@example.org\r\nTo: s%d@example.org\r\nSubject: account s%d message %d\r\n"
                    "Message-ID: <t%d.%d@example.org>\r\nDate: Mon, 02 Jan 2023 10:%02d:00 +0000\r\n\r\n"
                    "Hello s%d, number %d.\r\n%s" % (i, i, i, k, i, k, k, i, k, "y" * (131 * i % 5000)))
            name = os.path.join(d, "cur", "%d.M%dP%d.test:2,%s" % (t0 + k, k, i, "S" if m % 2 else ""))
            with open(name, "w", newline="") as fh:
                fh.write(body)
            os.utime(name, (t0 + 3600 * k, t0 + 3600 * k))
PY
for i in $(seq 1 $M); do mkdir -p "$(MAILDIR "d$i")"; done
"$ROOT/scripts/dovecot.sh" fixperms "$A_DIR" >/dev/null

accounts() { # FROM TO FILE
	: >"$3"
	for i in $(seq "$1" "$2"); do
		echo "imap://s$i@$H:$P?starttls=no imap://d$i@$H:$P?starttls=no --src-password-file $PW/s$i --dst-password-file $PW/d$i" >>"$3"
	done
	chmod 600 "$3"
}
exact() { # FROM TO: prints how many are exact
	local i good=0
	for i in $(seq "$1" "$2"); do
		"$BENCH_BIN/compare" "$(MAILDIR "s$i")" "$(MAILDIR "d$i")" >/dev/null 2>&1 && good=$((good + 1))
	done
	echo "$good"
}
# The most sessions open at once from byte OFF on (lib.sh: dv_log_peak;
# a session whose end is not logged is left out of the peak, as there).
log_peak() { dv_log_peak "$LOG" "$1"; } # OFF

ACC=$T_TMP/accounts.txt
accounts 1 $N "$ACC"
off=$(stat -c %s "$LOG")
expect_exit threads-run-exit-0 0 mf run "$ACC" --threads 2 --jobs 12 --connections 2 --max-per-host 8 \
	--state "$T_TMP/state" --json
cp "$T_TMP/last.out" "$T_TMP/run.out"; cp "$T_TMP/last.err" "$T_TMP/run.err"
good=$(exact 1 $N)
[ "$good" = $N ] && ok "threads-every-account-exact ($good)" || not_ok threads-every-account-exact "$good of $N"
python3 - "$T_TMP/run.out" $N <<'PY' && ok threads-json-whole-lines-and-both-loops || not_ok threads-json-whole-lines-and-both-loops "see above"
import json, sys
n = int(sys.argv[2])
ev = []
for line in open(sys.argv[1]):
    ev.append(json.loads(line))          # a line two threads interleaved fails here
acc = [e for e in ev if e["event"] == "account"]
s = ev[-1]
print("# threads", s.get("threads"), "accounts per thread", s.get("accounts_per_thread"))
assert s["event"] == "run_summary" and s["ok"] == n and s["exit"] == 0, s
assert len(acc) == n and all(e["status"] == "done" for e in acc), len(acc)
assert s["threads"] == 2 and len(s["accounts_per_thread"]) == 2, s
assert sum(s["accounts_per_thread"]) == n and min(s["accounts_per_thread"]) > 0, s
assert sum(1 for e in ev if e["event"] == "mailbox") == 3 * n
PY
for k in 1 2 3 4 5 6 7 8 9 10; do # the last sessions' log lines (a loaded machine)
	read -r lp ll _ <<<"$(log_peak "$off")"
	[ "$ll" -ge $((2 * N)) ] && break
	sleep 0.5
done
[ "$lp" -le 8 ] && [ "$lp" -ge 2 ] && [ "$ll" -ge $((2 * N)) ] &&
	ok "threads-cap-kept-dovecot-log (peak $lp sessions, $ll logins)" ||
	not_ok threads-cap-kept-dovecot-log "peak $lp sessions over $ll logins (cap 8)"
mp=$(sed -n 's/.*at most \([0-9]*\) connections were open to one host.*/\1/p' "$T_TMP/run.err")
[ -n "$mp" ] && [ "$mp" -le 8 ] && ! grep -q "never released\|internal:" "$T_TMP/run.err" &&
	ok "threads-slots-balanced (client peak $mp)" ||
	not_ok threads-slots-balanced "client peak '$mp'; $(grep -m1 'never released\|internal:' "$T_TMP/run.err")"

# 2. re-runs: one loop, then two; nothing to copy
expect_exit threads-rerun-1-exit-0 0 mf run "$ACC" --threads 1 --jobs 12 --state "$T_TMP/state" --json
[ "$(json_field "$T_TMP/last.out" messages_copied)" = 0 ] && [ "$(json_field "$T_TMP/last.out" threads)" = 1 ] &&
	ok threads-rerun-1-copies-0 || not_ok threads-rerun-1-copies-0 "$(tail -n 1 "$T_TMP/last.out")"
expect_exit threads-rerun-2-exit-0 0 mf run "$ACC" --threads 2 --jobs 12 --state "$T_TMP/state" --json
[ "$(json_field "$T_TMP/last.out" messages_copied)" = 0 ] && ok threads-rerun-2-copies-0 ||
	not_ok threads-rerun-2-copies-0 "$(tail -n 1 "$T_TMP/last.out")"
expect_exit threads-zero 2 mf run "$ACC" --threads 0 --state "$T_TMP/state-x"
expect_exit threads-on-line 2 mf run <(echo "imap://a@$H:$P imap://b@$H:$P --threads 2") --state "$T_TMP/state-x"

# 3. ThreadSanitizer
TSAN_BIN=$ROOT/build/tsan/mailferry
if [ ! -x "$TSAN_BIN" ] || [ -n "$(find "$ROOT/engine" "$ROOT/protocols" "$ROOT/store" -name '*.[ch]' -newer "$TSAN_BIN" | head -n 1)" ]; then
	make -s -C "$ROOT" tsan >"$T_TMP/tsan-build.log" 2>&1
fi
if [ -x "$TSAN_BIN" ]; then
	ACC2=$T_TMP/accounts-tsan.txt
	accounts $((N + 1)) $M "$ACC2"
	TSAN_OPTIONS="halt_on_error=0 exitcode=66 second_deadlock_stack=1 suppressions=$ROOT/tests/integration/tsan.supp" \
		"$TSAN_BIN" run "$ACC2" --threads 2 --jobs 6 --connections 2 --max-per-host 6 \
		--max-bytes-per-second 2M --state "$T_TMP/state-tsan" --json \
		>"$T_TMP/tsan.out" 2>"$T_TMP/tsan.err"
	rc=$?
	good=$(exact $((N + 1)) $M)
	nw=$(grep -c "WARNING: ThreadSanitizer" "$T_TMP/tsan.err")
	[ "$rc" = 0 ] && [ "$nw" = 0 ] && [ "$good" = $NT ] &&
		ok "threads-tsan-clean ($good accounts exact, 0 reports)" ||
		not_ok threads-tsan-clean "exit $rc, $nw ThreadSanitizer reports, $good of $NT exact: $(grep -m1 -A6 'WARNING: ThreadSanitizer' "$T_TMP/tsan.err" | tr '\n' ' ' | cut -c1-600)"
else
	not_ok threads-tsan-clean "make tsan failed: $(tail -n 3 "$T_TMP/tsan-build.log")"
fi

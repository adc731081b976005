#!/usr/bin/env bash
# Issue 20 item 3: a first login the server answers with "later" is
# retried, not failed: `mailferry run` starts the account again after a
# backoff (at least the server's hint), and no new connection to that host
# opens before then, for any account. A permanent refusal is not retried.
#  1. IMAP through tests/faults/throttle_proxy.py in front of the private
#     Dovecot: the first two LOGIN/AUTHENTICATE get "NO [UNAVAILABLE]
#     Request is throttled. Suggested Backoff Time: 1500 milliseconds".
#     Two accounts: both finish exact, exit 0, each says when it starts
#     again, and the proxy saw no connection in the 1.5 s after a refusal.
#  2. The same with --retries 0: the account fails (no second try), exit 3;
#     `mailferry migrate` starts again like a run's line.
#  3. A wrong password: failed at once, never started again.
#  4. POP3 (tests/faults/fake_pop3.py --fault sys-temp-login): the first two
#     logins get "-ERR [SYS/TEMP]"; the account is started again until it
#     gets in, and its 3 messages arrive.
. "$(dirname "$0")/lib.sh"

dv_start A --users "s1 s2 d1 d2 d3 d4 d5 d6" || { not_ok dovecot "start failed"; exit 1; }
corpus A s1 tiny 31 || { not_ok corpus "generation failed"; exit 1; }
corpus A s2 tiny 32 || { not_ok corpus "generation failed"; exit 1; }
PW=$A_DIR/pw
P=$A_IMAP_PORT
H=127.0.0.1
MAILDIR() { echo "$A_DIR/mail/$1/Maildir"; }
COMMON=(--ca-file "$A_CA_FILE" --timeout 10 --connections 2 --no-progress)

proxy() { # EVENTS LOGIN_THROTTLES
	t_helper throttle_proxy python3 "$FAULTS/throttle_proxy.py" --target "$P" --throttle 0 \
		--login-throttle "$2" --hint-ms 1500 --events "$1" --max-seconds 120 &&
		PROXY_PORT=$T_HELPER_PORT
}

# ---- 1. two accounts, both refused once, both done ----------------------
EV=$T_TMP/p1.events
proxy "$EV" 2 || { not_ok proxy "did not start"; exit 1; }
ACC=$T_TMP/a1.txt
for i in 1 2; do
	echo "imap://s$i@$H:$PROXY_PORT?starttls=no imap://d$i@$H:$P --src-password-file $PW/s$i --dst-password-file $PW/d$i"
done >"$ACC"
chmod 600 "$ACC"
expect_exit later-exit-0 0 mf run "$ACC" --jobs 2 --state "$T_TMP/st1" "${COMMON[@]}" \
	--report "$T_TMP/r1.json"
cp "$T_TMP/last.err" "$T_TMP/r1.err"
for i in 1 2; do check "later-exact-s$i" "$BENCH_BIN/compare" "$(MAILDIR "s$i")" "$(MAILDIR "d$i")"; done
n=$(grep -c 'login refused for now (.*\[UNAVAILABLE\].*); the account starts again in [0-9.]* s (attempt 1 of 5)' "$T_TMP/r1.err")
[ "$n" = 2 ] && ok "later-announced ($n accounts)" ||
	not_ok later-announced "$n lines: $(grep -m2 'starts again' "$T_TMP/r1.err")"
# the refusal is told once, by the line above, not also as an error: the
# accounts ended well
! grep -q '^mailferry: error' "$T_TMP/r1.err" && ok later-no-error-line ||
	not_ok later-no-error-line "$(grep -m1 '^mailferry: error' "$T_TMP/r1.err")"
grep -q "host $H:$PROXY_PORT throttles" "$T_TMP/r1.err" && ok later-host-throttles ||
	not_ok later-host-throttles "$(grep -m1 throttles "$T_TMP/r1.err")"
# No connection to the proxy in the hint's time after a refusal (the host
# pauses for every account), and both refusals came before any login got in.
python3 - "$EV" <<'PY' && ok later-host-paused-for-the-hint || not_ok later-host-paused-for-the-hint "see above"
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
thr = [e["t"] for e in ev if e["ev"] == "login-throttle"]
acc = [e["t"] for e in ev if e["ev"] == "accept"]
assert len(thr) == 2, ev
last = max(thr)
early = [t for t in acc if last < t < last + 1.4]
assert not early, ("accepted within the hint", last, early)
assert any(t >= last + 1.4 for t in acc), ("never connected again", acc)
PY
python3 - "$T_TMP/r1.json" <<'PY' && ok later-report-done || not_ok later-report-done "$(head -c 400 "$T_TMP/r1.json")"
import json, sys
d = json.load(open(sys.argv[1]))
rows = d["accounts"]
assert len(rows) == 2 and all(r["status"] == "done" and r["exit"] == 0 for r in rows), rows
PY
# a re-run copies nothing (the state of the try that got in holds everything)
expect_exit later-rerun 0 mf run "$ACC" --state "$T_TMP/st1" "${COMMON[@]}" --json
grep -q '"event":"account".*"messages_copied":0,' "$T_TMP/last.out" && ok later-rerun-copies-0 ||
	not_ok later-rerun-copies-0 "$(grep -m1 '"account"' "$T_TMP/last.out")"

# ---- 2. --retries 0: not started again --------------------------------------
proxy "$T_TMP/p2.events" 1 || { not_ok proxy2 "did not start"; exit 1; }
echo "imap://s1@$H:$PROXY_PORT?starttls=no imap://d3@$H:$P --src-password-file $PW/s1 --dst-password-file $PW/d3" >"$T_TMP/a2.txt"
chmod 600 "$T_TMP/a2.txt"
mf run "$T_TMP/a2.txt" --state "$T_TMP/st2" "${COMMON[@]}" --retries 0 >"$T_TMP/r2.out" 2>"$T_TMP/r2.err"
rc=$?
# class 3: a host we could not get into, not a wrong password (4)
[ $rc = 3 ] && ! grep -q 'starts again' "$T_TMP/r2.err" && grep -q 'UNAVAILABLE' "$T_TMP/r2.err" &&
	ok "later-retries-0-fails (exit $rc)" || not_ok later-retries-0-fails "exit $rc: $(tail -n 2 "$T_TMP/r2.err")"

# ---- 2b. migrate: the same, one account ---------------------------------
proxy "$T_TMP/p2b.events" 1 || { not_ok proxy2b "did not start"; exit 1; }
expect_exit later-migrate-exit-0 0 mf migrate "imap://s2@$H:$PROXY_PORT?starttls=no" "imap://d3@$H:$P" \
	--src-password-file "$PW/s2" --dst-password-file "$PW/d3" --state "$T_TMP/st2b" "${COMMON[@]}"
grep -q 'login refused for now (.*UNAVAILABLE.*); starting again in [0-9.]* s (attempt 1 of 5)' "$T_TMP/last.err" &&
	ok later-migrate-started-again || not_ok later-migrate-started-again "$(tail -n 3 "$T_TMP/last.err")"
! grep -q '^mailferry: error' "$T_TMP/last.err" && ok later-migrate-no-error-line ||
	not_ok later-migrate-no-error-line "$(grep -m1 '^mailferry: error' "$T_TMP/last.err")"
check later-migrate-exact "$BENCH_BIN/compare" "$(MAILDIR s2)" "$(MAILDIR d3)"
# and with --status: the job starts again beside the status server
proxy "$T_TMP/p2c.events" 1 || { not_ok proxy2c "did not start"; exit 1; }
expect_exit later-migrate-status-exit-0 0 mf migrate "imap://s2@$H:$PROXY_PORT?starttls=no" "imap://d6@$H:$P" \
	--src-password-file "$PW/s2" --dst-password-file "$PW/d6" --state "$T_TMP/st2c" "${COMMON[@]}" \
	--status 127.0.0.1:0
grep -q 'login refused for now (.*UNAVAILABLE.*); starting again in [0-9.]* s (attempt 1 of 5)' "$T_TMP/last.err" &&
	ok later-migrate-status-started-again || not_ok later-migrate-status-started-again "$(tail -n 3 "$T_TMP/last.err")"
check later-migrate-status-exact "$BENCH_BIN/compare" "$(MAILDIR s2)" "$(MAILDIR d6)"

# ---- 3. a wrong password is final -------------------------------------------
echo "imap://s1@$H:$P imap://d4@$H:$P --src-password-file $PW/s2 --dst-password-file $PW/d4" >"$T_TMP/a3.txt"
chmod 600 "$T_TMP/a3.txt"
t0=$SECONDS
expect_exit later-wrong-password-exit-4 4 mf run "$T_TMP/a3.txt" --state "$T_TMP/st3" "${COMMON[@]}"
! grep -q 'starts again' "$T_TMP/last.err" && [ $((SECONDS - t0)) -lt 20 ] && ok later-wrong-password-not-retried ||
	not_ok later-wrong-password-not-retried "$(grep -m1 'starts again' "$T_TMP/last.err")"

# ---- 4. POP3 [SYS/TEMP] at login --------------------------------------------
t_helper fake_pop3 python3 "$FAULTS/fake_pop3.py" --fault sys-temp-login --max-seconds 60 --linger 30 ||
	{ not_ok pop3-fake "did not start"; exit 1; }
FP=$T_HELPER_PORT
printf 'any-Pw1' >"$T_TMP/fakepw"
echo "pop3://u@$H:$FP?starttls=no imap://d5@$H:$P --src-password-file $T_TMP/fakepw --dst-password-file $PW/d5" >"$T_TMP/a4.txt"
chmod 600 "$T_TMP/a4.txt"
expect_exit later-pop3-exit-0 0 mf run "$T_TMP/a4.txt" --state "$T_TMP/st4" "${COMMON[@]}" --json
n=$(grep -c 'login refused for now (.*\[SYS/TEMP\].*); the account starts again' "$T_TMP/last.err")
[ "$n" = 2 ] && ok "later-pop3-started-again ($n times)" ||
	not_ok later-pop3-started-again "$n: $(tail -n 3 "$T_TMP/last.err")"
grep -q '"event":"account".*"status":"done".*"messages_copied":3,' "$T_TMP/last.out" && ok later-pop3-copied-3 ||
	not_ok later-pop3-copied-3 "$(grep -m1 '"account"' "$T_TMP/last.out")"


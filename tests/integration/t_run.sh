#!/usr/bin/env bash
# mailferry run: several accounts from one accounts file on one event loop
# (--jobs 2), in both line forms (URL pair with options, imapsync's
# host;user;password;... with @file and literal passwords), against a
# private Dovecot. A bad line, a wrong password and a dry-run line sit among
# good accounts: each is reported with its line, the others are copied
# exactly into states of their own, and a re-run copies nothing (no
# account's failure or dry run discarded another's writes).
. "$(dirname "$0")/lib.sh"

dv_start A --users "s1 s2 s3 s4 s5 d1 d2 d3 d4 d5" || { not_ok dovecot "start failed"; exit 1; }
for i in 1 2 3 4 5; do
	corpus A "s$i" tiny "$((40 + i))" || { not_ok corpus "generation failed"; exit 1; }
done
PW=$A_DIR/pw
P=$A_IMAP_PORT
H=127.0.0.1
MAILDIR() { echo "$A_DIR/mail/$1/Maildir"; }
ACC=$T_TMP/accounts.txt
cat >"$ACC" <<EOF2
# the organisation's accounts (blank lines and comments are fine)

imap://s1@$H:$P imap://d1@$H:$P --src-password-file $PW/s1 --dst-password-file '$PW/d1'
$H:$P;s2;@$PW/s2;$H:$P;d2;@$PW/d2;
imap://s3@$H:$P imap://d3@$H:$P --src-password-file $PW/s3 --dst-password-file $PW/d1
this line is not an account
imap://s4@$H:$P imap://d4@$H:$P --src-password-file $PW/s4 --dst-password-file $PW/d4 --dry-run
$H:$P;s5;pw-s5-secret;$H:$P;d5;pw-d5-secret
EOF2
chmod 644 "$ACC"
RUN=(mf run "$ACC" --jobs 2 --state "$T_TMP/state" --ca-file "$A_CA_FILE" --json)

expect_exit run-exit-2-bad-line-worst 2 "${RUN[@]}"
cp "$T_TMP/last.out" "$T_TMP/run1.out"; cp "$T_TMP/last.err" "$T_TMP/run1.err"
for i in 1 2 5; do
	check "run-exact-s$i" "$BENCH_BIN/compare" "$(MAILDIR "s$i")" "$(MAILDIR "d$i")"
done
grep -q "accounts.txt:6: want SRC-URL DST-URL" "$T_TMP/run1.err" && ok run-bad-line-named ||
	not_ok run-bad-line-named "$(grep accounts.txt:6 "$T_TMP/run1.err" | head -n 1)"
grep -q "accounts.txt:5: finished with errors" "$T_TMP/run1.err" &&
	grep -qi "d3@127.0.0.1.*\(authentication\|login\)" "$T_TMP/run1.err" && ok run-wrong-password-named ||
	not_ok run-wrong-password-named "$(grep -i 'd3@\|accounts.txt:5' "$T_TMP/run1.err" | head -n 2)"
n4=$(find "$(MAILDIR d4)" -type f -path '*/cur/*' -o -type f -path '*/new/*' 2>/dev/null | wc -l)
[ "$n4" = 0 ] && grep -q "dry-run" "$T_TMP/run1.err" && ok run-dry-line-copies-nothing ||
	not_ok run-dry-line-copies-nothing "$n4 messages in d4"
grep -q "holds passwords and can be read by others" "$T_TMP/run1.err" && ok run-warns-readable-file ||
	not_ok run-warns-readable-file "no warning for a world-readable file with passwords"
if grep -q 'pw-s5-secret\|pw-d5-secret' "$T_TMP/run1.err" "$T_TMP/run1.out"; then
	not_ok run-no-password-in-output "a password from the file was printed"
else
	ok run-no-password-in-output
fi
s=$(tail -n 1 "$T_TMP/run1.out")
python3 - "$s" <<'PY' && ok run-summary || not_ok run-summary "$s"
import json, sys
d = json.loads(sys.argv[1])
assert d["event"] == "run_summary", d
assert (d["accounts"], d["ok"], d["failed"], d["bad_lines"]) == (6, 4, 1, 1), d
PY
na=$(grep -c '"event":"account"' "$T_TMP/run1.out")  # 5 accounts that ran or were refused, and the bad line
nj=$(grep '"event":"mailbox"' "$T_TMP/run1.out" | grep -c '"job":"[^"]*accounts.txt:[0-9]*"')
[ "$na" = 6 ] && [ "$nj" -gt 0 ] && ok "run-json-per-account ($na accounts, $nj mailbox events with their job)" ||
	not_ok run-json-per-account "$na account events, $nj labelled mailbox events"
ns=$(find "$T_TMP/state" -maxdepth 1 -name 'acct-*' -type d | wc -l)
[ "$ns" -ge 4 ] && ok "run-state-per-account ($ns)" || not_ok run-state-per-account "$ns state directories"

# the re-run: nothing copied again, the file now private (no warning)
chmod 600 "$ACC"
expect_exit rerun-exit-2 2 "${RUN[@]}"
c=$(tail -n 1 "$T_TMP/last.out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["messages_copied"])')
[ "$c" = 0 ] && ok run-rerun-copies-0 || not_ok run-rerun-copies-0 "copied $c"
grep -q "can be read by others" "$T_TMP/last.err" && not_ok run-no-warning-600 "warned for mode 600" ||
	ok run-no-warning-600

# usage errors: exit 2
expect_exit run-missing-file 2 mf run "$T_TMP/nope.txt" --state "$T_TMP/state"
expect_exit run-jobs-on-line 2 mf run <(echo "imap://a@$H:$P imap://b@$H:$P --jobs 3") --state "$T_TMP/state"
grep -q -- "--jobs is an option of" "$T_TMP/last.err" && ok run-jobs-per-line-refused ||
	not_ok run-jobs-per-line-refused "$(tail -n 1 "$T_TMP/last.err")"

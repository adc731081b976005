#!/usr/bin/env bash
# Issue 17 items 3 and 4: round trips, counted (never timed) through
# tests/faults/delay_proxy.py, one proxy per side, so a change that adds a
# round trip fails here.
#  - a no-change re-run: the source's login, NAMESPACE and LIST-STATUS go
#    in one flight behind the greeting (SASL-IR), LOGOUT is not waited for:
#    2 round trips on the source as the proxy counts them (the login with
#    the LIST, and LOGOUT, whose answer the proxy still sees); the
#    destination, opened in parallel and listed behind its login the same
#    way, at most 2 (a far one: its greeting came 10 ms or more after the
#    open);
#  - a near destination (loopback, no proxy: its greeting within 10 ms) is
#    not logged in by a no-change re-run, only told LOGOUT: its login
#    waits for the plan (dst_greeted), and a run with work then logs in and
#    is exact;
#  - a flag sync (a few percent of the flags changed in 6 mailboxes):
#    bounded per side, and the destination is exact after it;
#  - a refused login with commands pipelined behind it fails as a login
#    failure, naming it.
. "$(dirname "$0")/lib.sh"

dv_start A --users "src dst" || { not_ok dovecot "start failed"; exit 1; }
corpus A src demo 5 || { not_ok corpus failed; exit 1; }
PW=$A_DIR/pw

# two proxies (10 ms each way: far servers, whose greeting takes more
# than the 10 ms a near one's login is held for), one per side
delay_proxy "$A_IMAP_PORT" --delay 10 --stats "$T_TMP/src.json" || { not_ok proxy "src proxy"; exit 1; }
SP=$PROXY_PORT
delay_proxy "$A_IMAP_PORT" --delay 10 --stats "$T_TMP/dst.json" || { not_ok proxy "dst proxy"; exit 1; }
DP=$PROXY_PORT
rt() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["round_trips"])' "$T_TMP/$1.json"; }
# the proxies' counters are sums since they started: wait until both have
# written the last run's (they write every second), then take differences
settle() { sleep 1.3; RS=$(rt src); RD=$(rt dst); }
run() {
	mf migrate "imap://src@127.0.0.1:$SP?starttls=no" "imap://dst@127.0.0.1:$DP?starttls=no" \
		--src-password-file "$PW/src" --dst-password-file "$PW/dst" --state "$T_TMP/st" \
		--json --no-progress --sync-flags --delete "$@"
}

expect_exit initial 0 run
settle
expect_exit rerun 0 run
s0=$RS d0=$RD; settle
s=$((RS - s0)) d=$((RD - d0))
[ "$s" -le 2 ] && ok "rerun-source-round-trips ($s)" || not_ok rerun-source-round-trips "$s, wanted <= 2"
[ "$d" -le 2 ] && ok "rerun-destination-round-trips ($d)" || not_ok rerun-destination-round-trips "$d, wanted <= 2"
c=$(json_field "$T_TMP/last.out" messages_copied)
[ "$c" = 0 ] && ok "rerun-copies-nothing" || not_ok rerun-copies-nothing "copied $c"

python3 tests/integration/mutate.py "$A_IMAP_PORT" src "$(cat "$PW/src")" 7 --flags-only --percent 3 >/dev/null
expect_exit flag-sync 0 run
s0=$RS d0=$RD; settle
s=$((RS - s0)) d=$((RD - d0))
f=$(json_field "$T_TMP/last.out" flags_synced)
[ "$f" -gt 0 ] && ok "flag-sync-synced ($f)" || not_ok flag-sync-synced "flags_synced $f"
# 6 mailboxes: one EXAMINE each on the source, one SELECT + UID STOREs
# each on the destination, two session pairs (one per 4 mailboxes with
# only flags to carry), each opened in one round trip and logged out in
# one (measured: 10 and 11; before issue 17, 4 pairs and a destination
# opened after the plan)
[ "$s" -le 10 ] && ok "flag-sync-source-round-trips ($s)" || not_ok flag-sync-source-round-trips "$s, wanted <= 10"
[ "$d" -le 12 ] && ok "flag-sync-destination-round-trips ($d)" || not_ok flag-sync-destination-round-trips "$d, wanted <= 12"
check flag-sync-exact "$BENCH_BIN/compare" "$A_DIR/mail/src/Maildir" "$A_DIR/mail/dst/Maildir"

# a wrong password: the LIST pipelined behind the login fails with it
echo -n wrong >"$T_TMP/badpw"
expect_exit bad-login 4 mf migrate "imap://src@127.0.0.1:$SP?starttls=no" \
	"imap://dst@127.0.0.1:$DP?starttls=no" --src-password-file "$T_TMP/badpw" \
	--dst-password-file "$PW/dst" --state "$T_TMP/st" --json --no-progress
grep -q 'source src@127.0.0.1: login failed' "$T_TMP/last.err" && ok bad-login-named ||
	not_ok bad-login-named "$(tail -n 2 "$T_TMP/last.err" | tr '\n' ' ')"

# A near destination. The trace says how long the greeting took and
# whether the login was held; a loaded machine may take 10 ms or more
# even on loopback, and then the login is rightly sent at once.
near() {
	MAILFERRY_TRACE=1 mf migrate "imap://src@127.0.0.1:$A_IMAP_PORT?starttls=no" \
		"imap://dst@127.0.0.1:$A_IMAP_PORT?starttls=no" --src-password-file "$PW/src" \
		--dst-password-file "$PW/dst" --state "$T_TMP/st" --json --no-progress --sync-flags --delete
}
dst_logins() { sleep 0.5; grep -c 'Login: user=<dst>' "$A_DIR/dovecot.log"; }
choice() { sed -n 's/^trace destination dst@127.0.0.1: greeting after \([0-9]*\) us, login \([a-z]*\)$/\2 \1/p' "$T_TMP/last.err"; }
n0=$(dst_logins)
expect_exit near-rerun 0 near
n1=$(dst_logins)
read -r how us <<<"$(choice)"
if [ "$how" = held ]; then
	[ "$n1" = "$n0" ] && ok "near-rerun-no-destination-login (greeting after $us us)" ||
		not_ok near-rerun-no-destination-login "held, yet $((n1 - n0)) destination logins"
elif [ "$how" = sent ] && [ "$us" -ge 10000 ]; then
	ok "near-rerun-no-destination-login (not applicable: greeting after $us us on a loaded machine)"
else
	not_ok near-rerun-no-destination-login "trace: '${how:-none}' after '${us:-?}' us; $((n1 - n0)) destination logins"
fi
python3 tests/integration/mutate.py "$A_IMAP_PORT" src "$(cat "$PW/src")" 8 --flags-only --percent 3 >/dev/null
expect_exit near-flag-sync 0 near
read -r how us <<<"$(choice)"
f=$(json_field "$T_TMP/last.out" flags_synced)
[ "$f" -gt 0 ] && [ -n "$how" ] && ok "near-flag-sync-synced ($f, login $how after $us us)" ||
	not_ok near-flag-sync-synced "flags_synced $f, login '${how:-none}'"
check near-flag-sync-exact "$BENCH_BIN/compare" "$A_DIR/mail/src/Maildir" "$A_DIR/mail/dst/Maildir"

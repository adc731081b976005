#!/usr/bin/env bash
# mailferry run --max-per-host (issue 20 items 1 and 3): 200 accounts with
# small mailboxes (4 folders, 7 messages, each account's mail its own) on
# one private Dovecot, migrated by one `run --jobs 20 --connections 4
# --max-per-host 10`. Every account must be exact, and the cap is counted
# on the server side: Dovecot's log replayed (+1 per "Login:", -1 per
# session "Disconnected") and `doveadm who` sampled during the run; the
# capped run and the throttled one on two event loops (--threads 2). The same
# accounts without the cap first: the same measures must see more than 10,
# or they could not catch a broken cap.
#
# Then throttling, which a real Dovecot does not do: tests/faults/
# throttle_proxy.py in front of it swallows the first APPENDs and answers
# "NO [THROTTLED] Request is throttled. Suggested Backoff Time: 1500
# milliseconds" (every third as a BYE [UNAVAILABLE], connection dropped).
# The run slows down (no new connection reaches the host for the hint
# after each throttle), reconnects, finishes, nothing lost or duplicated.
. "$(dirname "$0")/lib.sh"

N=200
NT=3 # accounts of the throttling case
users=
M=$((N + NT + 1)) # the account of the migrate case
for i in $(seq 1 $M); do users="$users s$i d$i"; done
dv_start A --users "${users# }" || { not_ok dovecot "start failed"; exit 1; }
P=$A_IMAP_PORT
H=127.0.0.1
PW=$A_DIR/pw
MAILDIR() { echo "$A_MAIL_ROOT/$1/Maildir"; }
[ -n "${A_MAIL_ROOT:-}" ] || A_MAIL_ROOT=$A_DIR/mail

# Small mailboxes written straight into the Maildirs (doveadm save would
# take a process per message): INBOX 3, Sent 2, Archive 1, Lists.dev 1;
# each message names its account, so mail put into the wrong account shows.
python3 - "$A_MAIL_ROOT" $M <<'PY' || { not_ok corpus "generation failed"; exit 1; }
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
folders = [("", 3), (".Sent", 2), (".Archive", 1), (".Lists.dev", 1)]
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
            body = ("From: Sender %d <s%d@example.org>\r\nTo: s%d@example.org\r\n"
                    "Subject: account s%d message %d in %s\r\nMessage-ID: <s%d.%d@example.org>\r\n"
                    "Date: Mon, 02 Jan 2023 10:%02d:00 +0000\r\n\r\nHello s%d, number %d.\r\n%s"
                    % (i, i, i, i, k, f or "INBOX", i, k, k, i, k, "x" * (97 * i % 3000)))
            name = os.path.join(d, "cur", "%d.M%dP%d.test:2,%s" % (t0 + k, k, i, "S" if m % 2 else ""))
            with open(name, "w", newline="") as fh:
                fh.write(body)
            os.utime(name, (t0 + 3600 * k, t0 + 3600 * k))
PY
"$ROOT/scripts/dovecot.sh" fixperms "$A_DIR" >/dev/null
for i in $(seq 1 $M); do mkdir -p "$(MAILDIR "d$i")"; done
"$ROOT/scripts/dovecot.sh" fixperms "$A_DIR" >/dev/null

ACC=$T_TMP/accounts.txt
: >"$ACC"
for i in $(seq 1 $N); do
	echo "imap://s$i@$H:$P?starttls=no imap://d$i@$H:$P?starttls=no --src-password-file $PW/s$i --dst-password-file $PW/d$i" >>"$ACC"
done
chmod 600 "$ACC"
LOG=$A_DIR/dovecot.log

# The most sessions open at once from byte OFF on (lib.sh: dv_log_peak).
log_peak() { dv_log_peak "$LOG" "$1"; } # OFF
who_now() {
	doveadm -c "$A_DOVECOT_CONF" who 2>/dev/null | awk 'NR > 1 { s += $2 } END { print s + 0 }'
}
# Samples `doveadm who` (connections per user, summed) until killed; the
# highest sum seen goes to FILE.
who_sampler() { # FILE
	local max=0 n
	echo 0 >"$1"
	while :; do
		n=$(doveadm -c "$A_DOVECOT_CONF" who 2>/dev/null | awk 'NR > 1 { s += $2 } END { print s + 0 }')
		if [ "${n:-0}" -gt "$max" ]; then max=$n; echo "$max" >"$1"; fi
		sleep 0.05
	done
}
wipe_dst() {
	for i in $(seq 1 $N); do
		rm -rf "$(MAILDIR "d$i")"
		mkdir -p "$(MAILDIR "d$i")"
	done
	"$ROOT/scripts/dovecot.sh" fixperms "$A_DIR" >/dev/null
}
count_exact() { # prints how many of the N accounts are exact
	local i good=0
	for i in $(seq 1 $N); do
		"$BENCH_BIN/compare" "$(MAILDIR "s$i")" "$(MAILDIR "d$i")" >/dev/null 2>&1 && good=$((good + 1))
	done
	echo "$good"
}
# one run with the sampler beside it: "LOGPEAK LOGINS OPEN WHOPEAK"
measured_run() { # NAME ARGS...
	local name=$1 off pid; shift
	off=$(stat -c %s "$LOG")
	who_sampler "$T_TMP/$name.who" &
	pid=$!
	mf run "$ACC" --jobs 20 --connections 4 --state "$T_TMP/state-$name" "$@" \
		>"$T_TMP/$name.out" 2>"$T_TMP/$name.err"
	echo $? >"$T_TMP/$name.rc"
	kill "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	local i
	for i in $(seq 1 20); do # the last sessions' log lines (a loaded machine)
		read -r _ _ left <<<"$(log_peak "$off")"
		[ "$left" = 0 ] && break
		sleep 0.5
	done
	echo "$(log_peak "$off") $(cat "$T_TMP/$name.who") $(who_now)" >"$T_TMP/$name.peak"
	cp "$LOG" "$T_TMP/$name.dovecot.log" # for a failure's post-mortem (KEEP=1)
}

# 1. Without the cap: the measures see it exceeded (they can fail).
measured_run nocap
read -r np nl no nw _ <"$T_TMP/nocap.peak"
[ "$(cat "$T_TMP/nocap.rc")" = 0 ] && [ "$np" -gt 10 ] && [ "$nl" -ge $((2 * N)) ] &&
	ok "per-host-uncapped-exceeds (log peak $np, doveadm who peak $nw, $nl logins)" ||
	not_ok per-host-uncapped-exceeds "exit $(cat "$T_TMP/nocap.rc"), log peak $np, who peak $nw, $nl logins: $(tail -n 2 "$T_TMP/nocap.err")"
good=$(count_exact)
[ "$good" = $N ] && ok "per-host-uncapped-exact ($good accounts)" || not_ok per-host-uncapped-exact "$good of $N"

# 2. --max-per-host 10: the same accounts again, into empty destinations.
wipe_dst
measured_run cap --max-per-host 10 --threads 2
read -r cp cl co cw ca <"$T_TMP/cap.peak"
rc=$(cat "$T_TMP/cap.rc")
[ "$rc" = 0 ] && ok per-host-exit-0 || not_ok per-host-exit-0 "exit $rc: $(tail -n 3 "$T_TMP/cap.err")"
good=$(count_exact)
[ "$good" = $N ] && ok "per-host-every-account-exact ($good)" || not_ok per-host-every-account-exact "$good of $N"
[ "$cl" -ge $((2 * N)) ] && [ "$cp" -le 10 ] && [ "$cp" -ge 2 ] &&
	ok "per-host-cap-kept-dovecot-log (peak $cp sessions, $cl logins, $co without a logged end)" ||
	not_ok per-host-cap-kept-dovecot-log "peak $cp sessions over $cl logins (cap 10)"
[ "$cw" -le 10 ] && ok "per-host-cap-kept-doveadm-who (peak $cw)" ||
	not_ok per-host-cap-kept-doveadm-who "doveadm who saw $cw connections (cap 10)"
[ "$ca" = 0 ] && [ "$co" -le 2 ] && ok "per-host-sessions-all-ended (doveadm who: $ca open)" ||
	not_ok per-host-sessions-all-ended "doveadm who: $ca open after the run; $co sessions without a logged end"
mp=$(sed -n 's/.*at most \([0-9]*\) connections were open to one host.*/\1/p' "$T_TMP/cap.err")
[ -n "$mp" ] && [ "$mp" -le 10 ] && ! grep -q "never released" "$T_TMP/cap.err" &&
	ok "per-host-slots-balanced (client peak $mp)" ||
	not_ok per-host-slots-balanced "client peak '${mp}'; $(grep -m1 'never released' "$T_TMP/cap.err")"

# usage: a cap is for the whole run, not for one account's line
expect_exit per-host-on-line 2 mf run <(echo "imap://a@$H:$P imap://b@$H:$P --max-per-host 3") --state "$T_TMP/state-x"
grep -q -- "--max-per-host is an option of the whole run" "$T_TMP/last.err" && ok per-host-line-refused ||
	not_ok per-host-line-refused "$(tail -n 1 "$T_TMP/last.err")"
expect_exit per-host-zero 2 mf run "$ACC" --max-per-host 0 --state "$T_TMP/state-x"

# migrate takes it too: 4 pairs wanted, 2 connections allowed, one pair at
# a time; a cap of 1 cannot hold a pair on one host and says so.
MIG=(mf migrate "imap://s$M@$H:$P?starttls=no" "imap://d$M@$H:$P?starttls=no"
	--src-password-file "$PW/s$M" --dst-password-file "$PW/d$M" --connections 4)
expect_exit migrate-cap-1-refused 1 "${MIG[@]}" --state "$T_TMP/state-m1" --max-per-host 1
grep -q -- "--max-per-host 1 cannot hold a source and a destination" "$T_TMP/last.err" &&
	ok migrate-cap-1-named || not_ok migrate-cap-1-named "$(tail -n 1 "$T_TMP/last.err")"
off=$(stat -c %s "$LOG")
expect_exit migrate-cap-2-exit-0 0 "${MIG[@]}" --state "$T_TMP/state-m" --max-per-host 2
sleep 1
read -r mp ml _ <<<"$(log_peak "$off")"
check migrate-cap-2-exact "$BENCH_BIN/compare" "$(MAILDIR "s$M")" "$(MAILDIR "d$M")"
[ "$mp" -le 2 ] && [ "$ml" -ge 2 ] && ok "migrate-cap-2-kept (peak $mp, $ml logins)" ||
	not_ok migrate-cap-2-kept "peak $mp sessions over $ml logins (cap 2)"

# 3. Throttling, through the proxy.
t_helper throttle_proxy python3 "$FAULTS/throttle_proxy.py" --target "$P" --throttle 3 \
	--hint-ms 1500 --bye-every 3 --events "$T_TMP/throttle.events" ||
	{ not_ok throttle-proxy "did not start"; exit 1; }
TP=$T_HELPER_PORT
ACC2=$T_TMP/accounts-throttle.txt
: >"$ACC2"
for i in $(seq $((N + 1)) $((N + NT))); do
	echo "imap://s$i@$H:$TP?starttls=no imap://d$i@$H:$TP?starttls=no --src-password-file $PW/s$i --dst-password-file $PW/d$i" >>"$ACC2"
done
chmod 600 "$ACC2"
t0=$(date +%s.%N)
expect_exit throttle-exit-0 0 mf run "$ACC2" --jobs $NT --threads 2 --connections 2 --max-per-host 10 --state "$T_TMP/state-t"
t1=$(date +%s.%N)
cp "$T_TMP/last.err" "$T_TMP/throttle.err"
bad=
for i in $(seq $((N + 1)) $((N + NT))); do
	"$BENCH_BIN/compare" "$(MAILDIR "s$i")" "$(MAILDIR "d$i")" >"$T_TMP/cmp.out" 2>&1 || bad="$bad s$i: $(tail -n 1 "$T_TMP/cmp.out")"
done
[ -z "$bad" ] && ok "throttle-nothing-lost-or-duplicated ($NT accounts)" || not_ok throttle-nothing-lost-or-duplicated "$bad"
python3 - "$T_TMP/throttle.events" "$t0" "$t1" <<'PY' && ok "throttle-host-paused-for-the-hint" || not_ok throttle-host-paused-for-the-hint "see above"
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
thr = [e for e in ev if e["ev"] == "throttle"]
acc = [e["t"] for e in ev if e["ev"] == "accept"]
if len(thr) != 3 or [e["kind"] for e in thr] != ["NO", "NO", "BYE"]:
    print("# throttles:", thr); sys.exit(1)
# No new connection reaches the host while it is paused: a connect already
# on its way when the NO left gets 0.3 s to arrive; the pause lasts 1.5 s.
for e in thr:
    early = [t for t in acc if e["t"] + 0.3 < t < e["t"] + 1.5]
    if early:
        print("# connections %s s after a throttle at %.3f s" % ([round(t - e["t"], 3) for t in early], e["t"]))
        sys.exit(1)
# and the host came back: APPENDs on connections opened after the last
# throttle (sessions already open went on meanwhile: only new ones wait),
# the first 1.5 s or more after it
last = max(e["t"] for e in thr)
opened = {e["conn"]: e["t"] for e in ev if e["ev"] == "accept"}
later = [e["t"] for e in ev if e["ev"] == "append" and opened.get(e["conn"], 0) > last]
if not later or min(later) < last + 1.5:
    print("# first APPEND on a new connection after the last throttle at +%s s" % (round(min(later) - last, 3) if later else None)); sys.exit(1)
PY
n=$(grep -c "host 127.0.0.1:$TP throttles (.*THROTTLED\|host 127.0.0.1:$TP throttles (.*UNAVAILABLE" "$T_TMP/throttle.err")
grep -q "host 127.0.0.1:$TP throttles .*wait 1\.[5-9] s" "$T_TMP/throttle.err" && [ "$n" -ge 1 ] && [ "$n" -le 3 ] &&
	ok "throttle-logged-per-host ($n lines)" ||
	not_ok throttle-logged-per-host "$n lines: $(grep -m2 throttles "$T_TMP/throttle.err")"
grep -q "reconnecting in 1\.[5-9] s" "$T_TMP/throttle.err" && ok throttle-reconnect-after-hint ||
	not_ok throttle-reconnect-after-hint "$(grep -m2 'reconnecting in' "$T_TMP/throttle.err")"

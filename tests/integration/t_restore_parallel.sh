#!/usr/bin/env bash
# mailferry restore over several connections (issue 19): every worker reads
# the archive through a reader of its own (store/archive_iter.h) and
# restores its mailboxes side by side with the others. Counted on the
# server's side (Dovecot's log: logins of the destination user, and the most
# sessions of it open at once): --connections 1 logs in once; the default
# (4, as migrate) logs in 4 times with sessions overlapping; both results
# are exact. SIGKILL mid-way through a 4-connection restore (a delay proxy
# in front of the destination makes it slow), then a re-run on 4: exact,
# nothing twice. The biggest mailbox is split over connections (split.c).
. "$(dirname "$0")/lib.sh"

dv_start A --users "src one par k rk" || { not_ok dovecot "start failed"; exit 1; }
corpus A src demo 4 || { not_ok corpus "generation failed"; exit 1; }
PW=$A_DIR/pw
MD=$A_DIR/mail
LOG=$A_DIR/dovecot.log
AR=$T_TMP/archive
total=$(find "$MD/src/Maildir" -path '*/cur/*' -o -path '*/new/*' | grep -c .)
nbox=$(find "$MD/src/Maildir" -type d -name cur | grep -c .)
[ "$nbox" -ge 4 ] && ok "corpus-has-folders ($nbox, $total messages)" || not_ok corpus-has-folders "$nbox"
expect_exit backup 0 mf backup "imap://src@127.0.0.1:$A_IMAP_PORT" "$AR" --src-password-file "$PW/src" \
	--ca-file "$A_CA_FILE" --json --no-progress --state "$T_TMP/bst"
rs() { # USER STATE: restore options
	echo --dst-password-file "$PW/$1" --ca-file "$A_CA_FILE" --json --no-progress --state "$T_TMP/$2"
}

# Sessions of USER in the log from byte OFF on: "LOGINS PEAK" (+1 per
# login, -1 per "Disconnected" of a session that logged in).
sessions() { # USER OFF
	tail -c +"$(($2 + 1))" "$LOG" | python3 -c '
import re, sys
user = sys.argv[1]
login = re.compile(r"imap-login: (Info: )?Login: user=<" + re.escape(user) + r">.*session=<([^>]+)>")
end = re.compile(r" imap\(" + re.escape(user) + r"\)<[^>]*><([^>]+)>: (Info: )?Disconnected")
cur = peak = logins = 0
for line in sys.stdin:
    if login.search(line):
        logins += 1; cur += 1; peak = max(peak, cur)
    elif end.search(line):
        cur -= 1
print(logins, peak)' "$1"
}

# 1. --connections 1: one login, exact
off=$(stat -c %s "$LOG")
# shellcheck disable=SC2046
expect_exit restore-one 0 mf restore "$AR" "imap://one@127.0.0.1:$A_IMAP_PORT" $(rs one st1) --connections 1
read -r logins peak < <(sessions one "$off")
[ "$logins" = 1 ] && ok "one-connection-logs-in-once" || not_ok one-connection-logs-in-once "$logins logins"
check restore-one-exact "$BENCH_BIN/compare" "$MD/src/Maildir" "$MD/one/Maildir"

# 2. the default (migrate's 4): four logins, open at the same time, the
#    biggest mailbox split over connections by UID range (split.c, the
#    run's counts standing in for STATUS), exact
off=$(stat -c %s "$LOG")
# shellcheck disable=SC2046
expect_exit restore-par 0 mf restore "$AR" "imap://par@127.0.0.1:$A_IMAP_PORT" $(rs par st4) -v
grep -q 'mailbox ".*": about [0-9]* new messages (UIDs [0-9]*:[0-9]*) split into [2-4] parts over 4 connections' "$T_TMP/last.err" &&
	ok "restore-par-splits ($(grep -c 'split into' "$T_TMP/last.err") mailboxes)" ||
	not_ok restore-par-splits "no split line: $(grep -m1 'split\|mailbox' "$T_TMP/last.err")"
read -r logins peak < <(sessions par "$off")
conns=$(json_field "$T_TMP/last.out" connections)
c=$(json_field "$T_TMP/last.out" messages_copied)
[ "$logins" = 4 ] && [ "$peak" -ge 2 ] && ok "default-uses-4-connections (server: $logins logins, $peak at once; report: $conns)" ||
	not_ok default-uses-4-connections "server: $logins logins, $peak at once; report: $conns"
[ "$c" = "$total" ] && ok "restore-par-count ($c)" || not_ok restore-par-count "copied $c of $total"
check restore-par-exact "$BENCH_BIN/compare" "$MD/src/Maildir" "$MD/par/Maildir"
# shellcheck disable=SC2046
expect_exit restore-par-rerun 0 mf restore "$AR" "imap://par@127.0.0.1:$A_IMAP_PORT" $(rs par st4)
[ "$(json_field "$T_TMP/last.out" messages_copied)" = 0 ] && ok restore-par-rerun-copies-0 ||
	not_ok restore-par-rerun-copies-0 "copied $(json_field "$T_TMP/last.out" messages_copied)"

# 3. SIGKILL mid-way through a 4-connection restore, then a re-run on 4
delay_proxy "$A_IMAP_PORT" --delay 20 || { not_ok kill-proxy "did not start"; exit 1; }
off=$(stat -c %s "$LOG")
# shellcheck disable=SC2046
"$MF" restore "$AR" "imap://rk@127.0.0.1:$PROXY_PORT?starttls=no" $(rs rk krst) --connections 4 --batch 4 -v \
	>"$T_TMP/kill-a.out" 2>"$T_TMP/kill-a.err" &
pid=$!
for _ in $(seq 1 1500); do
	n=$(find "$MD/rk/Maildir" -path '*/cur/*' -o -path '*/new/*' 2>/dev/null | grep -c .)
	[ "$n" -gt 400 ] && break
	kill -0 "$pid" 2>/dev/null || break
	sleep 0.02
done
kill -9 "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
read -r logins peak < <(sessions rk "$off")
[ "$peak" -ge 2 ] && grep -q 'split into [2-4] parts' "$T_TMP/kill-a.err" &&
	ok "kill-run-was-parallel ($logins logins, $peak at once, a mailbox split)" ||
	not_ok kill-run-was-parallel "$logins logins, $peak at once, $(grep -c 'split into' "$T_TMP/kill-a.err") split"
# shellcheck disable=SC2046
expect_exit kill-rerun 0 mf restore "$AR" "imap://rk@127.0.0.1:$A_IMAP_PORT" $(rs rk krst) --connections 4
kb=$(json_field "$T_TMP/last.out" messages_copied)
[ "$kb" -gt 0 ] && [ "$kb" -lt "$total" ] && ok "kill-resumed (the re-run copied $kb of $total)" ||
	not_ok kill-resumed "$kb of $total copied by the re-run (the kill came too early or too late)"
check kill-exact-nothing-twice "$BENCH_BIN/compare" "$MD/src/Maildir" "$MD/rk/Maildir"

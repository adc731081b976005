#!/usr/bin/env bash
# A server that allows fewer connections per user than --connections asks
# for (Dovecot's mail_max_userip_connections, Gmail's 15, ...): the
# connections it refuses are a warning, the job finishes with the ones it
# got, exits 0, and everything is copied. A wrong password stays fatal.
# Source: tests/faults/fake_imap.py with 4 mailboxes of 300 messages (work
# worth 4 pairs: one more pair per 200 new messages) and room for 2 sessions
# (a real Dovecot enforces its limit only between logins that do not race,
# and mailferry's workers log in together); destination: Dovecot.
. "$(dirname "$0")/lib.sh"

dv_start L --users "dst dst2" || { not_ok conn-limit-dovecot "start failed"; exit 1; }
fake_imap none --mailboxes 4 --messages 300 --max-sessions 2 --max-seconds 30 --linger 0.5 || { not_ok conn-limit-server "did not start"; exit 1; }
expect_exit conn-limit-run 0 mf migrate "imap://u@127.0.0.1:$FAKE_PORT?starttls=no" \
	"imap://dst@127.0.0.1:$L_IMAP_PORT?starttls=no" --src-password-file "$L_DIR/pw/dst" \
	--dst-password-file "$L_DIR/pw/dst" --state "$T_TMP/st" --connections 4 --json --no-progress
n=$(grep -c 'fewer connections' "$T_TMP/last.err")
[ "$n" -ge 1 ] && ok "conn-limit-warned ($n: $(grep -m1 'fewer connections' "$T_TMP/last.err" | cut -c1-150))" ||
	not_ok conn-limit-warned "no warning: $(head -n 3 "$T_TMP/last.err" | tr '\n' '|')"
c=$(json_field "$T_TMP/last.out" messages_copied)
[ "$c" = 1200 ] && ok "conn-limit-all-copied (1200)" || not_ok conn-limit-all-copied "copied $c of 1200"
wait "$T_LAST_PID" 2>/dev/null
echo wrong >"$T_TMP/badpw"
expect_exit conn-limit-bad-password 4 mf migrate "imap://dst@127.0.0.1:$L_IMAP_PORT?starttls=no" \
	"imap://dst2@127.0.0.1:$L_IMAP_PORT?starttls=no" --src-password-file "$L_DIR/pw/dst" \
	--dst-password-file "$T_TMP/badpw" --state "$T_TMP/st2" --connections 4 --no-progress
grep -q 'dst2@127.0.0.1' "$T_TMP/last.err" && ok conn-limit-bad-password-named || not_ok conn-limit-bad-password-named "$(head -n 2 "$T_TMP/last.err" | tr '\n' '|')"

#!/usr/bin/env bash
# Issue 18 item 2/3: IMAP -> LMTP and IMAP -> SMTP through the one pipeline
# (engine/sync/sink_smtp.c), against the private Dovecot (LMTP by TCP and
# by its UNIX socket) and a private Postfix relaying to it by LMTP.
# Checked: every message of a messy corpus (all folders, dot lines, 8-bit
# and UTF-8 headers, no final CRLF, a large one) delivered once to the one
# recipient, byte-exact after only the servers' trace fields
# (tests/integration/trace_compare.py), by BDAT and by DATA; the envelope
# sender from the message's Return-Path, or --mail-from; the one notice
# about folders and flags; a re-run delivers nothing, a new message then
# exactly one; a 5xx to RCPT fails every message per message without
# recording it, and the next run tries again; a 4xx after the data is tried
# again after a backoff and lands once (tests/faults/fake_smtp.py), or
# fails after --retries passes; options that need folders are refused
# (exit 2); SIGKILL mid-run, then a re-run: nothing lost, and duplicates at
# most the number reported as uncertain (--uncertain resend), none with
# --uncertain skip.
. "$(dirname "$0")/lib.sh"

dv_start D --users "src u1 u2 u3 u4 u5 u6" || { not_ok dovecot "start failed"; exit 1; }
echo "mail_save_crlf = yes" >>"$D_DOVECOT_CONF" # stored as received: only bare LF folds
kill -HUP "$(cat "$D_DIR/run/master.pid")"
sleep 1
pf_start P --lmtp-port "$D_LMTP_PORT" --users "u1 u2 u3 u4 u5 u6" ||
	{ not_ok postfix "start failed"; exit 1; }
corpus D src tiny 41 || { not_ok corpus "generation failed"; exit 1; }
SRC_MD=$D_MAIL_ROOT/src/Maildir
# messy messages of our own in INBOX (t_smtp_client.sh has more of them)
python3 - "$SRC_MD/new" <<'PY'
import os, sys, time
d = sys.argv[1]
os.makedirs(d, exist_ok=True)
def w(n, b):
    open(os.path.join(d, "%d.M%dP1.messy%d" % (int(time.time()), n, n)), "wb").write(b)
w(1, ("Return-Path: <old-bounce@example.net>\n"
      "From: =?utf-8?q?J=C3=BCrgen?= <j@example.org>\nTo: Zoë <zoe@example.org>\n"
      "Subject: Grüße – ça va? 日本語\nMessage-ID: <messy1@example.org>\n\n"
      "Body ñ ü € 😀\n").encode() + b"Latin-1 \xe9\xe8\n")
w(2, b"Subject: dots\nMessage-ID: <messy2@example.org>\n\n.\n..\n...three\n.leading\n.\n\nend\n")
w(3, b"Subject: no final newline\nMessage-ID: <messy3@example.org>\n\nfirst\n.last starts with a dot")
w(4, b"Return-Path: <>\nSubject: null sender\nMessage-ID: <messy4@example.org>\n\nbounce\n")
w(5, b"Return-Path: <a b@bad>\nSubject: unusable return path\nMessage-ID: <messy5@example.org>\n\nx\n")
PY
"$ROOT/scripts/dovecot.sh" fixperms "$D_DIR"
total=$(find "$SRC_MD" -type f \( -path '*/cur/*' -o -path '*/new/*' \) | wc -l)
SRC="imap://src@127.0.0.1:$D_IMAP_PORT?starttls=no"
export MAILFERRY_SRC_PASSWORD=$(cat "$D_DIR/pw/src")
new_of() { echo "$D_MAIL_ROOT/$1/Maildir/new"; }
n_new() { find "$(new_of "$1")" -type f 2>/dev/null | wc -l; }
wait_new() { # USER N: Postfix delivers asynchronously
	local end=$((SECONDS + 60))
	while [ "$(n_new "$1")" -lt "$2" ] && [ $SECONDS -lt $end ]; do sleep 0.2; done
	sleep 0.5
	[ "$(n_new "$1")" -eq "$2" ]
}
cmp_all() { # NAME USER ADD_CRLF [--dups N]: every source message delivered to USER
	local name=$1 user=$2 add=$3; shift 3
	if python3 "$ROOT/tests/integration/trace_compare.py" "$@" "$(new_of "$user")" "$add" "$SRC_MD" \
		>"$T_TMP/$name.cmp.out" 2>"$T_TMP/$name.cmp"; then
		ok "$name-byte-exact ($(n_new "$user") delivered)"
	else
		not_ok "$name-byte-exact" "$(n_new "$user") delivered of $total; $(head -n 2 "$T_TMP/$name.cmp" | tr '\n' '|')"
	fi
}
mig() { # NAME DST [options]: a migrate run, JSON on NAME.out, stderr on NAME.err
	local name=$1 dst=$2; shift 2
	timeout 300 "$MF" migrate "$SRC" "$dst" --ca-file "$D_CA_FILE" --no-progress --json "$@" >"$T_TMP/$name.out" 2>"$T_TMP/$name.err"
}

# 1. IMAP -> LMTP over TCP (BDAT), every folder to u1
mig lmtp "lmtp://127.0.0.1:$D_LMTP_PORT?rcpt=u1" --state "$T_TMP/st1"
rc=$?
[ $rc = 0 ] && [ "$(json_field "$T_TMP/lmtp.out" messages_copied)" = "$total" ] &&
	ok "lmtp-run ($total messages)" ||
	not_ok lmtp-run "exit $rc, copied $(json_field "$T_TMP/lmtp.out" messages_copied) of $total: $(tail -n 2 "$T_TMP/lmtp.err" | tr '\n' '|')"
cmp_all lmtp u1 0
grep -q 'delivered to <u1>; folders, flags and dates are not carried by LMTP' "$T_TMP/lmtp.err" &&
	[ "$(grep -c 'are not carried' "$T_TMP/lmtp.err")" = 1 ] && ok lmtp-one-notice ||
	not_ok lmtp-one-notice "$(grep -c 'not carried' "$T_TMP/lmtp.err") notices"
# the envelope sender: Dovecot writes it as the first Return-Path
f=$(grep -l 'messy1@example.org' "$(new_of u1)"/*)
[ "$(head -n 1 "$f" | tr -d '\r')" = "Return-Path: <old-bounce@example.net>" ] &&
	ok lmtp-sender-from-return-path || not_ok lmtp-sender-from-return-path "$(head -n 1 "$f")"
f=$(grep -l 'messy5@example.org' "$(new_of u1)"/*)
[ "$(head -n 1 "$f" | tr -d '\r')" = "Return-Path: <>" ] &&
	ok lmtp-unusable-return-path-null-sender || not_ok lmtp-unusable-return-path-null-sender "$(head -n 1 "$f")"

# a dry run delivers nothing and says where it would
mig dry "lmtp://127.0.0.1:$D_LMTP_PORT?rcpt=u6" --state "$T_TMP/st0" --dry-run
[ $? = 0 ] && grep -q 'dry-run: mailbox "INBOX": [0-9]* new messages would be delivered to <u6>' "$T_TMP/dry.err" &&
	[ "$(n_new u6)" = 0 ] && ok dry-run-delivers-nothing ||
	not_ok dry-run-delivers-nothing "$(n_new u6) delivered: $(grep -m1 dry-run "$T_TMP/dry.err")"

# 2. a re-run delivers nothing; one new message, then exactly that one
mig lmtp2 "lmtp://127.0.0.1:$D_LMTP_PORT?rcpt=u1" --state "$T_TMP/st1"
[ $? = 0 ] && [ "$(json_field "$T_TMP/lmtp2.out" messages_copied)" = 0 ] && [ "$(n_new u1)" = "$total" ] &&
	ok lmtp-rerun-delivers-nothing || not_ok lmtp-rerun-delivers-nothing "copied $(json_field "$T_TMP/lmtp2.out" messages_copied), $(n_new u1) in the box"
printf 'Subject: later\nMessage-ID: <later@example.org>\n\nnew\n' >"$SRC_MD/new/$(date +%s).M9P1.later"
"$ROOT/scripts/dovecot.sh" fixperms "$D_DIR"
total=$((total + 1))
mig lmtp3 "lmtp://127.0.0.1:$D_LMTP_PORT?rcpt=u1" --state "$T_TMP/st1"
[ $? = 0 ] && [ "$(json_field "$T_TMP/lmtp3.out" messages_copied)" = 1 ] && [ "$(n_new u1)" = "$total" ] &&
	ok lmtp-new-message-once || not_ok lmtp-new-message-once "copied $(json_field "$T_TMP/lmtp3.out" messages_copied), $(n_new u1) of $total"

# 3. LMTP over the UNIX socket with DATA (dot-stuffed), --mail-from
mig unix "lmtp://$D_DIR/run/lmtp?rcpt=u2" --state "$T_TMP/st2" --no-chunking --mail-from migrate@example.org
rc=$?
[ $rc = 0 ] && ok "unix-data-run" || not_ok unix-data-run "exit $rc: $(tail -n 2 "$T_TMP/unix.err" | tr '\n' '|')"
cmp_all unix-data u2 1
n=$(grep -l 'Return-Path: <migrate@example.org>' "$(new_of u2)"/* 2>/dev/null | wc -l)
[ "$n" = "$total" ] && ok "unix-mail-from ($n)" || not_ok unix-mail-from "$n of $total with the given sender"

# 4. IMAP -> SMTP through Postfix (BDAT), relayed by LMTP
mig smtp "smtp://127.0.0.1:$P_SMTP_PORT?rcpt=u3@example.org&starttls=no" --state "$T_TMP/st3"
rc=$?
[ $rc = 0 ] && [ "$(json_field "$T_TMP/smtp.out" messages_copied)" = "$total" ] && ok "smtp-run" ||
	not_ok smtp-run "exit $rc: $(tail -n 2 "$T_TMP/smtp.err" | tr '\n' '|')"
wait_new u3 "$total" || not_ok smtp-delivered "$(n_new u3) of $total arrived"
cmp_all smtp-postfix u3 1 --fold-cr # Postfix rewrites bare CRs
grep -q 'from=<old-bounce@example.net>' "$P_LOG" && ok smtp-envelope-sender ||
	not_ok smtp-envelope-sender "no from=<old-bounce@example.net> in the Postfix log"

# 5. a 5xx to RCPT: every message refused per message, nothing recorded
mig unknown "lmtp://127.0.0.1:$D_LMTP_PORT?rcpt=nobody-here" --state "$T_TMP/st4"
rc=$?
n=$(grep -c 'error: destination .*mailbox ".*" uid [0-9]*: destination refused the message .*550' "$T_TMP/unknown.err")
[ $rc = 1 ] && [ "$n" = "$total" ] && ok "rcpt-5xx-per-message ($n errors)" ||
	not_ok rcpt-5xx-per-message "exit $rc, $n errors of $total: $(grep -m1 error "$T_TMP/unknown.err")"
[ "$(json_field "$T_TMP/unknown.out" messages_failed)" = "$total" ] && ok rcpt-5xx-counted ||
	not_ok rcpt-5xx-counted "failed=$(json_field "$T_TMP/unknown.out" messages_failed)"
mig unknown2 "lmtp://127.0.0.1:$D_LMTP_PORT?rcpt=nobody-here" --state "$T_TMP/st4"
[ "$(json_field "$T_TMP/unknown2.out" messages_failed)" = "$total" ] && ok rcpt-5xx-tried-again ||
	not_ok rcpt-5xx-tried-again "failed=$(json_field "$T_TMP/unknown2.out" messages_failed) on the re-run"

# 6. 4xx after the data (fake server): tried again after a backoff, once
if t_helper fake_smtp python3 "$FAULTS/fake_smtp.py" --lmtp --fault temp-end --fault-on 3 --save "$T_TMP/saved"; then
	mig temp "lmtp://127.0.0.1:$T_HELPER_PORT?rcpt=u5" --state "$T_TMP/st5" --connections 1
	rc=$?
	n=$(ls "$T_TMP/saved" | grep -vc '\.env$')
	[ $rc = 0 ] && [ "$(json_field "$T_TMP/temp.out" messages_copied)" = "$total" ] &&
		grep -q 'refused for now (.*452.*); tried again later' "$T_TMP/temp.err" &&
		grep -q 'messages refused for now; trying again in 1 s (pass 1 of 5)' "$T_TMP/temp.err" &&
		ok "temp-4xx-retried (exit 0, $n transactions taken)" ||
		not_ok temp-4xx-retried "exit $rc, copied $(json_field "$T_TMP/temp.out" messages_copied): $(grep -m2 'refused\|error' "$T_TMP/temp.err" | tr '\n' '|')"
	kill "$T_LAST_PID" 2>/dev/null
else
	not_ok temp-4xx-retried "fake_smtp did not start"
fi
if t_helper fake_smtp python3 "$FAULTS/fake_smtp.py" --lmtp --fault temp-end; then
	mig temp2 "lmtp://127.0.0.1:$T_HELPER_PORT?rcpt=u5" --state "$T_TMP/st6" --connections 1 --retries 1 --folder INBOX
	rc=$?
	[ $rc = 1 ] && grep -q 'pass 1 of 1' "$T_TMP/temp2.err" && ! grep -q 'pass 2 of' "$T_TMP/temp2.err" &&
		[ "$(json_field "$T_TMP/temp2.out" messages_copied)" = 0 ] &&
		[ "$(json_field "$T_TMP/temp2.out" messages_failed)" -ge 1 ] &&
		ok "temp-4xx-gives-up (failed $(json_field "$T_TMP/temp2.out" messages_failed))" ||
		not_ok temp-4xx-gives-up "exit $rc: $(grep -m2 'pass\|error' "$T_TMP/temp2.err" | tr '\n' '|')"
	kill "$T_LAST_PID" 2>/dev/null
else
	not_ok temp-4xx-gives-up "fake_smtp did not start"
fi

# 7. what an SMTP destination cannot do is refused up front
for opt in --sync-flags --delete --dedupe --state-reset "--map INBOX=X" --check; do
	mig refused "lmtp://127.0.0.1:$D_LMTP_PORT?rcpt=u6" --state "$T_TMP/st7" $opt
	rc=$?
	[ $rc = 2 ] && [ "$(wc -l <"$T_TMP/refused.err")" = 1 ] && ok "refuses-${opt%% *}" ||
		not_ok "refuses-${opt%% *}" "exit $rc: $(head -n 2 "$T_TMP/refused.err" | tr '\n' '|')"
done
[ "$(n_new u6)" = 0 ] && ok refused-nothing-delivered || not_ok refused-nothing-delivered "$(n_new u6) delivered"

# 8. SIGKILL mid-run, then a re-run: nothing lost; duplicates at most the
#    deliveries reported uncertain (resend), none with --uncertain skip;
#    at most two uncertain on the one connection (two transactions overlap)
kill_run() { # NAME USER POLICY
	local name=$1 user=$2 policy=$3 pid unc
	# one pair, one message a round trip of 10 ms (a delay proxy in front
	# of LMTP): killed once the first messages are in, still delivering
	delay_proxy "$D_LMTP_PORT" --delay 5 || { not_ok "$name-proxy" "did not start"; return; }
	"$MF" migrate "$SRC" "lmtp://127.0.0.1:$PROXY_PORT?rcpt=$user" --ca-file "$D_CA_FILE" \
		--no-progress --json --state "$T_TMP/st-$name" --connections 1 --uncertain "$policy" \
		>"$T_TMP/$name-a.out" 2>"$T_TMP/$name-a.err" &
	pid=$!
	local end=$((SECONDS + 60))
	while [ "$(n_new "$user")" -lt 5 ] && [ $SECONDS -lt $end ] && kill -0 "$pid" 2>/dev/null; do
		sleep 0.1
	done
	kill -9 "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	mig "$name-b" "lmtp://127.0.0.1:$PROXY_PORT?rcpt=$user" --state "$T_TMP/st-$name" --uncertain "$policy"
	rc=$?
	unc=$(json_field "$T_TMP/$name-b.out" messages_uncertain)
	n=$(json_field "$T_TMP/$name-b.out" messages_copied)
	# one connection, two transactions past their commit point at most
	[ $rc = 0 ] && [ "$n" -gt 0 ] && [ "$n" -lt "$total" ] && [ "${unc:-0}" -le 2 ] &&
		ok "$name-resumed (the kill left $n of $total, $unc uncertain)" ||
		not_ok "$name-resumed" "exit $rc, $n of $total left after the kill: $(tail -n 2 "$T_TMP/$name-b.err" | tr '\n' '|')"
	kill "$T_LAST_PID" 2>/dev/null
	if [ "$policy" = resend ]; then
		cmp_all "$name" "$user" 0 --dups "${unc:-0}"
	else
		# skipped ones may be missing if the kill came before the server
		# took them: at most that many
		python3 "$ROOT/tests/integration/trace_compare.py" --dups 0 "$(new_of "$user")" 0 "$SRC_MD" >/dev/null 2>"$T_TMP/$name.cmp"
		miss=$(grep -c 'nothing delivered\|0 matches' "$T_TMP/$name.cmp")
		other=$(grep -vc 'nothing delivered\|0 matches' "$T_TMP/$name.cmp")
		[ "$other" = 0 ] && [ "$miss" -le "${unc:-0}" ] && ok "$name-no-duplicates ($miss of $unc uncertain not delivered)" ||
			not_ok "$name-no-duplicates" "$miss missing, $unc uncertain, $(head -n 2 "$T_TMP/$name.cmp" | tr '\n' '|')"
	fi
}
kill_run kill-resend u4 resend
kill_run kill-skip u6 skip
if grep -l 'AddressSanitizer\|runtime error:' "$T_TMP"/*.err >/dev/null 2>&1; then
	not_ok sanitizers-clean "$(grep -l 'AddressSanitizer\|runtime error:' "$T_TMP"/*.err | tr '\n' ' ')"
else
	ok sanitizers-clean
fi

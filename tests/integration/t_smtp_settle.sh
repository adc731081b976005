#!/usr/bin/env bash
# Issue 18: LMTP deliveries a lost connection or a crash left unconfirmed,
# settled by searching the mailbox they reach over IMAP (--settle-imap,
# engine/sync/settle_imap.c), against the private Dovecot's LMTP and IMAP.
# A proxy (tests/faults/lmtp_cut.py) makes one delivery uncertain for
# certain: the server stores it, its final reply never reaches us; the
# proxy takes PIPELINING out, so it is the only one. The cut message is
# one of the messy ones: 8-bit header and a Return-Path of its own (BDAT),
# no final newline (DATA, where the server adds one). Checked:
#   - a connection dropped after the data: the pair reconnects in the run,
#     the check finds the delivery, nothing is sent twice, uncertain 0;
#   - SIGKILL while the reply is due, then a re-run with --settle-imap:
#     found, every message exactly once, uncertain 0, the log line;
#   - a check that cannot be made (a wrong password; a folder that does not
#     exist; no --max-per-host slot): one warning naming the account and
#     mailbox, the --uncertain policy applies (resend: at most one
#     duplicate; skip: none), exit 0, uncertain 1;
#   - the options refused (exit 2, one line) where they do not apply;
#   - restore from an archive to LMTP: the same in-run settle.
. "$(dirname "$0")/lib.sh"

dv_start D --users "src u1 u2 u3 u4 u5 u6 u7 u8 u9" || { not_ok dovecot "start failed"; exit 1; }
echo "mail_save_crlf = yes" >>"$D_DOVECOT_CONF" # stored as received: only bare LF folds
kill -HUP "$(cat "$D_DIR/run/master.pid")"
sleep 1
corpus D src tiny 41 || { not_ok corpus "generation failed"; exit 1; }
SRC_MD=$D_MAIL_ROOT/src/Maildir
# the messy messages of t_smtp_migrate.sh
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
# the same bytes twice (scenario 6)
for n in (6, 7):
    w(n, b"Subject: twice\nMessage-ID: <dup6@example.org>\n\nthe same bytes in two places\n")
PY
"$ROOT/scripts/dovecot.sh" fixperms "$D_DIR"
total=$(find "$SRC_MD" -type f \( -path '*/cur/*' -o -path '*/new/*' \) | wc -l)
SRC="imap://src@127.0.0.1:$D_IMAP_PORT?starttls=no"
export MAILFERRY_SRC_PASSWORD=$(cat "$D_DIR/pw/src")
LMTP="lmtp://127.0.0.1:$D_LMTP_PORT"
chk_url() { echo "imap://$1@127.0.0.1:$D_IMAP_PORT${2:-}?starttls=no"; }
new_of() { echo "$D_MAIL_ROOT/$1/Maildir/new"; }
n_new() { find "$(new_of "$1")" -type f 2>/dev/null | wc -l; }
mig() { # NAME DST [options]: a migrate run, JSON on NAME.out, stderr on NAME.err
	local name=$1 dst=$2; shift 2
	timeout 300 "$MF" migrate "$SRC" "$dst" --ca-file "$D_CA_FILE" --no-progress --json "$@" >"$T_TMP/$name.out" 2>"$T_TMP/$name.err"
}
cmp_once() { # NAME USER ADD_CRLF [--dups N]: every source message in USER's box once
	local name=$1 user=$2 add=$3; shift 3
	if python3 "$ROOT/tests/integration/trace_compare.py" "$@" "$(new_of "$user")" "$add" "$SRC_MD" \
		>"$T_TMP/$name.cmp.out" 2>"$T_TMP/$name.cmp"; then
		ok "$name-every-message-${1:+delivered-}once ($(n_new "$user") delivered of $total${1:+, at most $2 again})"
	else
		not_ok "$name-every-message-once" "$(n_new "$user") delivered of $total; $(head -n 2 "$T_TMP/$name.cmp" | tr '\n' '|')"
	fi
}
cut_proxy() { # MATCH MODE [NTH]: the proxy, PROXY_PORT; its cue in $T_TMP/cut
	rm -f "$T_TMP/cut"
	t_helper lmtp_cut python3 "$FAULTS/lmtp_cut.py" --target "$D_LMTP_PORT" --match "$1" \
		--mode "$2" --nth "${3:-1}" --done "$T_TMP/cut" && PROXY_PORT=$T_HELPER_PORT
}
# a run through the cutting proxy, SIGKILLed once the server answered the
# cut delivery (the answer we never get)
killed_run() { # NAME USER MATCH [options]
	local name=$1 user=$2 match=$3 pid end; shift 3
	cut_proxy "$match" "${CUT_MODE:-hang}" "${CUT_NTH:-1}" || { not_ok "$name-proxy" "did not start"; return 1; }
	if [ -n "${KILL_BY_RUN:-}" ]; then # `run`, its accounts file's one line
		printf '%s %s --connections 1\n' "$SRC" "lmtp://127.0.0.1:$PROXY_PORT?rcpt=$user" >"$T_TMP/$name.accounts"
		"$MF" run "$T_TMP/$name.accounts" --ca-file "$D_CA_FILE" --no-progress \
			--state "$T_TMP/st-$name" "$@" >"$T_TMP/$name-a.out" 2>"$T_TMP/$name-a.err" &
	else
		"$MF" migrate "$SRC" "lmtp://127.0.0.1:$PROXY_PORT?rcpt=$user" --ca-file "$D_CA_FILE" \
			--no-progress --json --state "$T_TMP/st-$name" --connections 1 "$@" \
			>"$T_TMP/$name-a.out" 2>"$T_TMP/$name-a.err" &
	fi
	pid=$!
	end=$((SECONDS + 60))
	while [ ! -e "$T_TMP/cut" ] && [ $SECONDS -lt $end ] && kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
	kill -9 "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	kill "$T_LAST_PID" 2>/dev/null
	[ -e "$T_TMP/cut" ] || { not_ok "$name-cut" "the proxy never cut: $(tail -n 2 "$T_TMP/$name-a.err" | tr '\n' '|')"; return 1; }
	grep -q "$match" "$(new_of "$user")"/* || { not_ok "$name-cut" "the cut message was not delivered"; return 1; }
	return 0
}
settled_line() { # FILE N K M: the one line with the counts
	grep -q "mailbox \"INBOX\": $2 deliveries an interrupted run left unconfirmed: $3 found in imap://.*@127.0.0.1:$D_IMAP_PORT/INBOX, $4 " "$1"
}

# 1. a connection dropped right after the data (BDAT): reconnected and
#    settled in the same run, the 8-bit message with its own Return-Path
echo "${MAILFERRY_SRC_PASSWORD}" >/dev/null
cut_proxy messy1@example.org drop || not_ok drop-proxy "did not start"
mig drop "lmtp://127.0.0.1:$PROXY_PORT?rcpt=u1" --state "$T_TMP/st1" --connections 1 \
	--settle-imap "$(chk_url u1 /INBOX)" --settle-password-file "$D_DIR/pw/u1"
rc=$?
kill "$T_LAST_PID" 2>/dev/null
unc=$(json_field "$T_TMP/drop.out" messages_uncertain)
n=$(json_field "$T_TMP/drop.out" messages_copied)
[ -e "$T_TMP/cut" ] && [ $rc = 0 ] && [ "$unc" = 0 ] && [ "$n" = "$total" ] && settled_line "$T_TMP/drop.err" 1 1 0 &&
	grep -q 'reconnecting' "$T_TMP/drop.err" && ok "drop-found-in-run (exit 0, $n copied, uncertain 0)" ||
	not_ok drop-found-in-run "cut $([ -e "$T_TMP/cut" ] && echo yes || echo no), exit $rc, copied $n, uncertain $unc: $(grep -m2 'unconfirmed\|error' "$T_TMP/drop.err" | tr '\n' '|')"
cmp_once drop u1 0

# 2. SIGKILL while the reply to the data (DATA: the server adds the final
#    CRLF the message lacks) is due; the re-run finds it
if killed_run kill u2 messy3@example.org --no-chunking; then
	mig kill-b "$LMTP?rcpt=u2" --state "$T_TMP/st-kill" --no-chunking \
		--settle-imap "$(chk_url u2)" --settle-password-file "$D_DIR/pw/u2"
	rc=$?
	unc=$(json_field "$T_TMP/kill-b.out" messages_uncertain)
	[ $rc = 0 ] && [ "$unc" = 0 ] && settled_line "$T_TMP/kill-b.err" 1 1 0 &&
		ok "kill-found-on-rerun (exit 0, uncertain 0)" ||
		not_ok kill-found-on-rerun "exit $rc, uncertain $unc: $(grep -m2 'unconfirmed\|error' "$T_TMP/kill-b.err" | tr '\n' '|')"
	cmp_once kill u2 1
fi

# 3. the check cannot be made: a wrong password. One warning, then
#    --uncertain resend: sent again (a duplicate, reported), exit 0
if killed_run badpw u3 messy1@example.org; then
	echo wrong-password >"$T_TMP/bad.pw"
	chmod 600 "$T_TMP/bad.pw"
	mig badpw-b "$LMTP?rcpt=u3" --state "$T_TMP/st-badpw" \
		--settle-imap "$(chk_url u3)" --settle-password-file "$T_TMP/bad.pw"
	rc=$?
	unc=$(json_field "$T_TMP/badpw-b.out" messages_uncertain)
	w=$(grep -c "cannot look for the 1 unconfirmed deliveries in imap://u3@127.0.0.1:$D_IMAP_PORT/INBOX: .*; --uncertain resend applies" "$T_TMP/badpw-b.err")
	[ $rc = 0 ] && [ "$unc" = 1 ] && [ "$w" = 1 ] &&
		grep 'cannot look for' "$T_TMP/badpw-b.err" | grep -q 'destination lmtp.*mailbox "INBOX"' &&
		grep -q '1 deliveries an interrupted run left unconfirmed (SMTP cannot be asked): sent again' "$T_TMP/badpw-b.err" &&
		ok "badpw-warns-then-resends (exit 0, uncertain 1)" ||
		not_ok badpw-warns-then-resends "exit $rc, uncertain $unc, $w warnings: $(grep -m2 'unconfirmed\|error' "$T_TMP/badpw-b.err" | tr '\n' '|')"
	cmp_once badpw u3 0 --dups 1
	grep -q 'wrong-password' "$T_TMP"/badpw-b.err && not_ok badpw-no-password-logged "the password is in the log" ||
		ok badpw-no-password-logged
fi

# 4. a folder that does not exist, with --uncertain skip: recorded as
#    delivered (it was), nothing twice
if killed_run nofolder u4 messy3@example.org; then
	mig nofolder-b "$LMTP?rcpt=u4" --state "$T_TMP/st-nofolder" --uncertain skip \
		--settle-imap "$(chk_url u4 /No%20Such)" --settle-password-file "$D_DIR/pw/u4"
	rc=$?
	unc=$(json_field "$T_TMP/nofolder-b.out" messages_uncertain)
	[ $rc = 0 ] && [ "$unc" = 1 ] &&
		grep -q "cannot look for the 1 unconfirmed deliveries in imap://u4@127.0.0.1:$D_IMAP_PORT/No Such: EXAMINE refused: .*; --uncertain skip applies" "$T_TMP/nofolder-b.err" &&
		ok "nofolder-warns-then-skips (exit 0, uncertain 1)" ||
		not_ok nofolder-warns-then-skips "exit $rc, uncertain $unc: $(grep -m2 'unconfirmed\|error' "$T_TMP/nofolder-b.err" | tr '\n' '|')"
	cmp_once nofolder u4 0
fi

# 5. --max-per-host 1: the pair holds the IMAP host's one slot, so the
#    check waits --timeout for it, then gives up; it holds nothing after
if killed_run slot u5 messy2@example.org; then
	mig slot-b "$LMTP?rcpt=u5" --state "$T_TMP/st-slot" --max-per-host 1 --timeout 2 \
		--settle-imap "$(chk_url u5)" --settle-password-file "$D_DIR/pw/u5"
	rc=$?
	unc=$(json_field "$T_TMP/slot-b.out" messages_uncertain)
	[ $rc = 0 ] && [ "$unc" = 1 ] &&
		grep -q "cannot look for the 1 unconfirmed deliveries in .*: no --max-per-host slot for 127.0.0.1:$D_IMAP_PORT within --timeout" "$T_TMP/slot-b.err" &&
		! grep -q 'never released\|slot' <(grep -v 'cannot look for' "$T_TMP/slot-b.err") &&
		ok "slot-gives-up-after-timeout (exit 0, uncertain 1)" ||
		not_ok slot-gives-up-after-timeout "exit $rc, uncertain $unc: $(grep -m2 'unconfirmed\|error\|slot' "$T_TMP/slot-b.err" | tr '\n' '|')"
	cmp_once slot u5 0 --dups 1
fi

# 6. the same bytes twice in the source: the first copy delivered and
#    confirmed, the second's data never reaches the server (the proxy
#    withholds it), SIGKILL. The copy in the mailbox is the first's (the
#    state says so): the second is not taken for delivered but sent again
if CUT_MODE=withhold CUT_NTH=2 killed_run twice u6 dup6@example.org; then
	mig twice-b "$LMTP?rcpt=u6" --state "$T_TMP/st-twice" \
		--settle-imap "$(chk_url u6)" --settle-password-file "$D_DIR/pw/u6"
	rc=$?
	unc=$(json_field "$T_TMP/twice-b.out" messages_uncertain)
	[ $rc = 0 ] && [ "$unc" = 1 ] &&
		grep -q "1 deliveries an interrupted run left unconfirmed: 0 found in imap://u6@127.0.0.1:$D_IMAP_PORT/INBOX, 1 sent again" "$T_TMP/twice-b.err" &&
		ok "twice-not-taken-for-delivered (exit 0, uncertain 1)" ||
		not_ok twice-not-taken-for-delivered "exit $rc, uncertain $unc: $(grep -m2 'unconfirmed\|error' "$T_TMP/twice-b.err" | tr '\n' '|')"
	cmp_once twice u6 0
fi

# 7. refused where it does not apply, or without a password
expect_refused() { # NAME ARGS...: exit 2, one line
	local name=$1; shift
	timeout 60 "$MF" "$@" >"$T_TMP/$name.out" 2>"$T_TMP/$name.err"
	local rc=$?
	[ $rc = 2 ] && [ "$(wc -l <"$T_TMP/$name.err")" = 1 ] && ok "$name ($(head -c 90 "$T_TMP/$name.err"))" ||
		not_ok "$name" "exit $rc: $(head -n 2 "$T_TMP/$name.err" | tr '\n' '|')"
}
expect_refused refuses-imap-destination migrate "$SRC" "$(chk_url u7)" --state "$T_TMP/st6" \
	--settle-imap "$(chk_url u7)" --settle-password-file "$D_DIR/pw/u7"
expect_refused refuses-backup backup "$SRC" "$T_TMP/arc" --state "$T_TMP/st6" \
	--settle-imap "$(chk_url u7)" --settle-password-file "$D_DIR/pw/u7"
expect_refused refuses-password-in-url migrate "$SRC" "$LMTP?rcpt=u7" --state "$T_TMP/st6" \
	--settle-imap "imap://u7:secret@127.0.0.1:$D_IMAP_PORT?starttls=no"
grep -q secret "$T_TMP/refuses-password-in-url.err" && not_ok refused-url-redacted "the password shown" ||
	ok refused-url-redacted
expect_refused refuses-no-password migrate "$SRC" "$LMTP?rcpt=u7" \
	--state "$T_TMP/st6" --settle-imap "$(chk_url u7)"
expect_refused refuses-pop3-url migrate "$SRC" "$LMTP?rcpt=u7" --state "$T_TMP/st6" \
	--settle-imap "pop3://u7@127.0.0.1:$D_POP3_PORT" --settle-password-file "$D_DIR/pw/u7"
# an accounts file's line takes them as migrate does
printf '%s %s --settle-imap %s\n' "$SRC" "$(chk_url u7)" "$(chk_url u7)" >"$T_TMP/accounts"
timeout 60 "$MF" run "$T_TMP/accounts" --state "$T_TMP/st6" --ca-file "$D_CA_FILE" --no-progress \
	>"$T_TMP/run6.out" 2>"$T_TMP/run6.err"
grep -q 'accounts:1: --settle-imap is for smtp:// and lmtp:// destinations' "$T_TMP/run6.err" &&
	ok run-line-refused || not_ok run-line-refused "$(head -n 2 "$T_TMP/run6.err" | tr '\n' '|')"
[ "$(n_new u7)" = 0 ] && ok refused-nothing-delivered || not_ok refused-nothing-delivered "$(n_new u7) delivered"

# 8. an accounts file's line of `run` takes the options as migrate does
if KILL_BY_RUN=1 killed_run runline u8 messy4@example.org; then
	printf '%s %s --settle-imap %s --settle-password-file %s\n' "$SRC" "$LMTP?rcpt=u8" \
		"$(chk_url u8)" "$D_DIR/pw/u8" >"$T_TMP/accounts8"
	timeout 300 "$MF" run "$T_TMP/accounts8" --state "$T_TMP/st-runline" --ca-file "$D_CA_FILE" \
		--no-progress >"$T_TMP/runline-b.out" 2>"$T_TMP/runline-b.err"
	rc=$?
	[ $rc = 0 ] && settled_line "$T_TMP/runline-b.err" 1 1 0 && ok "runline-found (exit 0)" ||
		not_ok runline-found "exit $rc: $(grep -m2 'unconfirmed\|error' "$T_TMP/runline-b.err" | tr '\n' '|')"
	cmp_once runline u8 0
fi
# 9. restore from an archive to LMTP settles the same way: the archive is
#    the source, the delivery cut after its data (BDAT) is found in the
#    run after the reconnect, nothing is sent twice
if timeout 300 "$MF" backup "$SRC" "$T_TMP/arc9" --ca-file "$D_CA_FILE" --no-progress \
	--state "$T_TMP/st-bk9" >"$T_TMP/bk9.out" 2>"$T_TMP/bk9.err"; then
	cut_proxy messy1@example.org drop || not_ok restore-proxy "did not start"
	timeout 300 "$MF" restore "$T_TMP/arc9" "lmtp://127.0.0.1:$PROXY_PORT?rcpt=u9" --ca-file "$D_CA_FILE" \
		--no-progress --json --state "$T_TMP/st9" --connections 1 \
		--settle-imap "$(chk_url u9 /INBOX)" --settle-password-file "$D_DIR/pw/u9" \
		>"$T_TMP/restore.out" 2>"$T_TMP/restore.err"
	rc=$?
	kill "$T_LAST_PID" 2>/dev/null
	unc=$(json_field "$T_TMP/restore.out" messages_uncertain)
	n=$(json_field "$T_TMP/restore.out" messages_copied)
	[ -e "$T_TMP/cut" ] && [ $rc = 0 ] && [ "$unc" = 0 ] && [ "$n" = "$total" ] &&
		settled_line "$T_TMP/restore.err" 1 1 0 && grep -q 'reconnecting' "$T_TMP/restore.err" &&
		ok "restore-found-in-run (exit 0, $n copied, uncertain 0)" ||
		not_ok restore-found-in-run "cut $([ -e "$T_TMP/cut" ] && echo yes || echo no), exit $rc, copied $n, uncertain $unc: $(grep -m2 'unconfirmed\|error' "$T_TMP/restore.err" | tr '\n' '|')"
	cmp_once restore u9 0
else
	not_ok restore-backup "exit $?: $(tail -n 1 "$T_TMP/bk9.err")"
fi
if grep -l 'AddressSanitizer\|runtime error:' "$T_TMP"/*.err >/dev/null 2>&1; then
	not_ok sanitizers-clean "$(grep -l 'AddressSanitizer\|runtime error:' "$T_TMP"/*.err | tr '\n' ' ')"
else
	ok sanitizers-clean
fi

#!/usr/bin/env bash
# The SMTP/LMTP client (protocols/smtp_client, driven by tests/tools/smtp_send)
# against real servers: messy real-looking messages (UTF-8 and 8-bit
# headers, lines starting with '.', no final CRLF, ~10 MiB with long lines,
# bare LF lines) delivered
#   - over LMTP straight into a private Dovecot, by TCP with CHUNKING (BDAT)
#     and by its UNIX socket with DATA (dot-stuffed),
#   - over SMTP into a private Postfix that hands them on by LMTP, with
#     BDAT, and with DATA after STARTTLS and AUTH,
# then read back from the Dovecot Maildir and compared byte for byte after
# taking off only the trace fields the servers put on top (Received,
# Return-Path, Delivered-To). Dovecot stores CRLF here (mail_save_crlf), so
# the one change allowed is its own: a bare LF stored as CRLF; and a message
# without a final CRLF gains one on every path but BDAT straight to Dovecot.
# Also: the SIZE limit refusing one message up front, unknown users (550 to
# RCPT) per recipient, a wrong AUTH password (535), the password never
# shown; and from tests/faults/fake_smtp.py (faults no real server makes on
# demand): 4xx to DATA and BDAT, 4xx/5xx after the data, garbage, a
# disconnect mid-DATA, injection after STARTTLS, reply floods, unsolicited
# replies, the exact bytes a server receives, and the plaintext policy off
# loopback (in a private network namespace, as t_hostile_auth does).
if [ -z "${MF_T_NETNS:-}" ] && unshare -n true 2>/dev/null; then
	exec unshare -n env MF_T_NETNS=1 bash "$0" "$@"
fi
. "$(dirname "$0")/lib.sh"

FAR=
if [ -n "${MF_T_NETNS:-}" ]; then
	ip link set lo up && ip addr add 192.0.2.1/32 dev lo && FAR=192.0.2.1
fi
[ -n "$FAR" ] || ip link set lo up 2>/dev/null

SEND=$ROOT/build/asan/tools/smtp_send
[ -x "$SEND" ] || { not_ok smtp-send-built "no $SEND (make asan)"; exit 1; }
export MAILFERRY_TRACE=1 # the wire in stderr: which commands went, in which order

dv_start D --users "u1 u2" || { not_ok smtp-dovecot "start failed"; exit 1; }
# Store CRLF as received, so the comparison needs no folding but Dovecot's
# own bare LF -> CRLF.
echo "mail_save_crlf = yes" >>"$D_DOVECOT_CONF"
kill -HUP "$(cat "$D_DIR/run/master.pid")"
sleep 1
PW=s3cret-Pass-7
pf_start P --lmtp-port "$D_LMTP_PORT" --users "u1 u2" --auth "sender:$PW" \
	--tls-cert "$D_DIR/tls/server.pem" --tls-key "$D_DIR/tls/server.key" ||
	{ not_ok smtp-postfix "start failed"; exit 1; }
printf '%s' "$PW" >"$T_TMP/pw.good"
printf 'wrong-%s' "$PW" >"$T_TMP/pw.bad"
NEW=$D_MAIL_ROOT/u1/Maildir/new

# ---- the messages ----------------------------------------------------------
M=$T_TMP/msgs
mkdir -p "$M"
python3 - "$M" <<'PY'
import os, random, sys
d = sys.argv[1]
def w(name, b):
    open(os.path.join(d, name), "wb").write(b)
w("01-utf8", (
    "Return-Path: <old-bounce@example.net>\r\n"
    "Received: from mx.old.example (mx.old.example [192.0.2.9])\r\n\tby old; Tue, 1 Jan 2002 00:00:00 +0000\r\n"
    "From: =?utf-8?q?J=C3=BCrgen?= <j@example.org>\r\n"
    "To: Zoë Ünïcödé <zoe@example.org>\r\n"
    "Subject: Grüße aus Köln – ça va? 日本語\r\n"
    "Message-ID: <not valid @@ id>\r\n"
    "Date: Mon, 31 Feb 1899 25:61:61 +9999\r\n"
    "X-Latin1: caf\xe9\r\n"
    "\r\n"
    "Body with UTF-8: ñ ü € 😀\r\n").encode("utf-8").replace(b"caf\xc3\xa9", b"caf\xe9") +
  b"and Latin-1 bytes: \xe9\xe8\xff\xfe\r\n-- \r\n")
w("02-dots", b"Subject: dots\r\nX-Dots: yes\r\n\r\n.\r\n..\r\n...three\r\n.leading\r\n"
  b"middle . dot\r\n. space\r\n.\r\n\r\n.\r\nend\r\n")
w("03-nocrlf", b"Subject: no final CRLF\r\n\r\nfirst\r\n.last line starts with a dot")
w("04-barelf", b"Subject: bare LF\nX-Mixed: yes\r\n\nline one\nline two\r\n.dot after LF\nlast\n")
w("05-headers-only", b"Subject: only headers\r\nX-Empty-Body: yes\r\n")
rnd = random.Random(7)
parts = [b"Subject: big\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"]
size = 0
while size < 10 * 1024 * 1024:
    k = rnd.random()
    if k < 0.01:
        line = b"." * rnd.randint(1, 3) + b"x" * rnd.randint(0, 80) + b"\r\n"
    elif k < 0.02:
        line = b"L" * rnd.randint(999, 20000) + b"\r\n"   # over 998 bytes
    elif k < 0.03:
        line = "ünïcödé ".encode() * 10 + b"\r\n"
    else:
        line = bytes(rnd.choice(b"abcdefghij klmnop") for _ in range(rnd.randint(0, 76))) + b"\r\n"
    parts.append(line)
    size += len(line)
w("06-big", b"".join(parts))
PY
MSGS=("$M"/0*)

# trace_compare.py MAILDIR_NEW ADD_FINAL_CRLF FILE...: every FILE is in
# MAILDIR_NEW exactly once (bare LF -> CRLF) after nothing but server trace
# fields, and nothing else is; prints what differs.
compare() { python3 "$ROOT/tests/integration/trace_compare.py" "$@"; }
# wait_new N: until N messages are in u1's new/ (Postfix delivers async)
wait_new() {
	local end=$((SECONDS + 60))
	while [ "$(n_new)" -lt "$1" ] && [ $SECONDS -lt $end ]; do sleep 0.2; done
	sleep 0.3
	[ "$(n_new)" -eq "$1" ]
}
# (Dovecot makes the Maildir on the first delivery, as the mail user)
n_new() { find "$NEW" -type f 2>/dev/null | wc -l; }
clear_new() { find "$NEW" -type f -delete 2>/dev/null; }
# sent_ok NAME OUT: every message delivered, exit 0
# cmds_before_reply ERR: MAIL, RCPT and DATA/BDAT written before MAIL's reply
pipelined() {
	awk '/ >> MAIL FROM/ { m = 1; next } m && / << / { exit } m && / >> (RCPT|DATA|BDAT)/ { n++ }
	     END { exit !(n >= 2) }' "$1"
}

run_path() { # NAME ADD_CRLF WIRE_WANT WIRE_NOT smtp_send-args...
	local name=$1 add=$2 want=$3 not=$4; shift 4
	"$SEND" "$@" --from "sender@example.org" --rcpt u1@example.org "${MSGS[@]}" \
		>"$T_TMP/$name.out" 2>"$T_TMP/$name.err"
	local rc=$?
	if [ $rc = 0 ] && [ "$(grep -c ': delivered: ' "$T_TMP/$name.out")" = ${#MSGS[@]} ]; then
		ok "$name-sent"
	else
		not_ok "$name-sent" "exit $rc: $(grep -v ': delivered: ' "$T_TMP/$name.out" | head -n 2 | tr '\n' '|') $(grep error "$T_TMP/$name.err" | head -n 1)"
	fi
	if grep -q " >> $want" "$T_TMP/$name.err" && ! grep -q " >> $not" "$T_TMP/$name.err"; then
		ok "$name-uses-${want%% *}"
	else
		not_ok "$name-uses-${want%% *}" "wanted '$want' and no '$not' on the wire"
	fi
	if pipelined "$T_TMP/$name.err"; then ok "$name-pipelined"
	else not_ok "$name-pipelined" "commands waited for replies"; fi
	if [ "$(grep -c ' >> RSET' "$T_TMP/$name.err")" = $((${#MSGS[@]} - 1)) ]; then ok "$name-rset-between"
	else not_ok "$name-rset-between" "$(grep -c ' >> RSET' "$T_TMP/$name.err") RSETs for ${#MSGS[@]} messages"; fi
	if wait_new ${#MSGS[@]} && compare "$NEW" "$add" "${MSGS[@]}" 2>"$T_TMP/$name.cmp"; then
		ok "$name-byte-exact"
	else
		not_ok "$name-byte-exact" "$(n_new) delivered; $(head -n 1 "$T_TMP/$name.cmp" 2>/dev/null)"
	fi
	clear_new
}

# ---- real servers: the four paths ---------------------------------------------
run_path lmtp-tcp-bdat 0 "BDAT" "DATA" --lmtp 127.0.0.1 "$D_LMTP_PORT"
run_path lmtp-unix-data 1 "DATA" "BDAT" --lmtp --no-chunking --unix "$D_DIR/run/lmtp"
run_path postfix-bdat 1 "BDAT" "DATA" 127.0.0.1 "$P_SMTP_PORT"
run_path postfix-tls-auth-data 1 "DATA" "BDAT" --starttls --ca "$D_CA_FILE" --no-chunking \
	--user sender --password-file "$T_TMP/pw.good" 127.0.0.1 "$P_SMTP_PORT"
e=$T_TMP/postfix-tls-auth-data.err
if grep -q ' >> STARTTLS' "$e" && grep -q ' >> AUTH PLAIN \*\*\*' "$e" &&
	awk '/ >> STARTTLS/ { s = 1 } s && / >> EHLO/ { e = 1 } e && / >> AUTH/ { a = 1 } END { exit !a }' "$e" &&
	grep -q 'sasl_method=PLAIN, sasl_username=sender' "$P_LOG"; then
	ok "postfix-starttls-ehlo-again-auth"
else
	not_ok "postfix-starttls-ehlo-again-auth" "no STARTTLS, EHLO, AUTH in that order, or Postfix saw no SASL login"
fi
if grep -q 'MAIL FROM:<sender@example.org> SIZE=[0-9]* BODY=8BITMIME' "$T_TMP/postfix-bdat.err"; then
	ok "postfix-size-and-8bitmime-declared"
else
	not_ok "postfix-size-and-8bitmime-declared" "$(grep -m1 'MAIL FROM' "$T_TMP/postfix-bdat.err")"
fi

# ---- SIZE: refused up front, per message --------------------------------------
pf_start PS --lmtp-port "$D_LMTP_PORT" --users "u1 u2" --size-limit 200000 ||
	not_ok smtp-postfix-size "start failed"
head -c 300000 "$M/06-big" >"$T_TMP/over-size"
"$SEND" 127.0.0.1 "$PS_SMTP_PORT" --from s@example.org --rcpt u1@example.org \
	"$M/02-dots" "$T_TMP/over-size" "$M/03-nocrlf" >"$T_TMP/size.out" 2>"$T_TMP/size.err"
rc=$?
if [ $rc = 1 ] && grep -q "^msg 2 .*: refused: .*message of 300000 bytes exceeds the server's SIZE limit of 200000 bytes" "$T_TMP/size.out" &&
	grep -q '^msg 1 .*: delivered: ' "$T_TMP/size.out" && grep -q '^msg 3 .*: delivered: ' "$T_TMP/size.out"; then
	ok "size-refused-per-message"
else
	not_ok "size-refused-per-message" "exit $rc: $(tr '\n' '|' <"$T_TMP/size.out")"
fi
if [ "$(grep -c ' >> MAIL FROM' "$T_TMP/size.err")" = 2 ]; then ok "size-nothing-sent-for-it"
else not_ok "size-nothing-sent-for-it" "$(grep -c ' >> MAIL FROM' "$T_TMP/size.err") MAIL FROM for 2 messages"; fi
wait_new 2 && compare "$NEW" 1 "$M/02-dots" "$M/03-nocrlf" 2>"$T_TMP/size.cmp" &&
	ok "size-others-delivered" || not_ok "size-others-delivered" "$(head -n 1 "$T_TMP/size.cmp" 2>/dev/null)"
clear_new
pf_stop PS

# ---- unknown users: 550 to RCPT, per recipient ---------------------------------
"$SEND" 127.0.0.1 "$P_SMTP_PORT" --from s@example.org --rcpt nobody@example.org "$M/02-dots" \
	>"$T_TMP/unk.out" 2>"$T_TMP/unk.err"
rc=$?
if [ $rc = 1 ] && grep -q '^msg 1 .*: permfail: RCPT TO: 550 5\.1\.1 .*nobody@example.org' "$T_TMP/unk.out"; then
	ok "postfix-unknown-user-permfail"
else
	not_ok "postfix-unknown-user-permfail" "exit $rc: $(head -n 1 "$T_TMP/unk.out")"
fi
"$SEND" --lmtp 127.0.0.1 "$D_LMTP_PORT" --from s@example.org --rcpt u1@example.org \
	--rcpt nobody@example.org --rcpt u2@example.org "$M/02-dots" >"$T_TMP/unk2.out" 2>"$T_TMP/unk2.err"
rc=$?
if [ $rc = 1 ] && grep -q '^  rcpt <u1@example.org>: delivered: end of data: 250 ' "$T_TMP/unk2.out" &&
	grep -q '^  rcpt <nobody@example.org>: permfail: RCPT TO: 550 5\.1\.1 ' "$T_TMP/unk2.out" &&
	grep -q '^  rcpt <u2@example.org>: delivered: end of data: 250 .*u2@example.org' "$T_TMP/unk2.out" &&
	[ "$(find "$D_MAIL_ROOT/u2/Maildir/new" -type f | wc -l)" = 1 ]; then
	ok "lmtp-per-recipient-replies"
else
	not_ok "lmtp-per-recipient-replies" "exit $rc: $(tr '\n' '|' <"$T_TMP/unk2.out")"
fi
clear_new

fake() { # FAULT [options]: FAKE_PORT
	local fault=$1; shift
	t_helper fake_smtp python3 "$FAULTS/fake_smtp.py" --fault "$fault" --max-seconds 120 "$@" &&
		FAKE_PORT=$T_HELPER_PORT
}
fsend() { # NAME [smtp_send options] -- FILES: to the fake server
	local name=$1; shift
	local opts=()
	while [ "$1" != -- ]; do opts+=("$1"); shift; done
	shift
	"$SEND" "${opts[@]}" 127.0.0.1 "$FAKE_PORT" --from s@example.org --rcpt u1@example.org "$@" \
		>"$T_TMP/$name.out" 2>"$T_TMP/$name.err"
}
# ---- AUTH: a wrong password ------------------------------------------------------
"$SEND" --starttls --ca "$D_CA_FILE" --user sender --password-file "$T_TMP/pw.bad" 127.0.0.1 "$P_SMTP_PORT" \
	--from s@example.org --rcpt u1@example.org "$M/02-dots" >"$T_TMP/auth.out" 2>"$T_TMP/auth.err"
rc=$?
if [ $rc = 3 ] && grep -q 'error: .*authentication failed: 535 5\.7\.8' "$T_TMP/auth.err" &&
	grep -q '^msg 1 .*: not sent' "$T_TMP/auth.out" && ! grep -q ' >> MAIL' "$T_TMP/auth.err"; then
	ok "auth-wrong-password"
else
	not_ok "auth-wrong-password" "exit $rc: $(grep -m1 error "$T_TMP/auth.err")"
fi
# AUTH LOGIN where PLAIN is not offered (the fake server checks both)
for pw in good bad; do
	fake none --auth-mechs "LOGIN CRAM-MD5" --user sender --password "$PW" || true
	fsend "login-$pw" --user sender --password-file "$T_TMP/pw.$pw" -- "$M/02-dots"
	echo $? >"$T_TMP/login-$pw.rc"
done
if [ "$(cat "$T_TMP/login-good.rc")" = 0 ] && grep -q ' >> AUTH LOGIN$' "$T_TMP/login-good.err" &&
	[ "$(grep -c ' >> \*\*\*$' "$T_TMP/login-good.err")" = 2 ] &&
	[ "$(cat "$T_TMP/login-bad.rc")" = 3 ] && grep -q 'authentication failed: 535 5\.7\.8' "$T_TMP/login-bad.err"; then
	ok "auth-login"
else
	not_ok "auth-login" "rc $(cat "$T_TMP/login-good.rc")/$(cat "$T_TMP/login-bad.rc"): $(grep -h -m1 error "$T_TMP"/login-*.err | head -n 1)"
fi
# AUTH LOGIN sends the password base64-encoded: look for that too
b64bad=$(printf 'wrong-%s' "$PW" | base64)
b64good=$(printf '%s' "$PW" | base64)
if grep -qF -e "$PW" -e "$b64bad" -e "$b64good" "$T_TMP"/*.out "$T_TMP"/*.err; then
	not_ok "password-never-shown" "in $(grep -lF -e "$PW" -e "$b64bad" -e "$b64good" "$T_TMP"/*.out "$T_TMP"/*.err | tr '\n' ' ')"
else
	ok "password-never-shown"
fi

# ---- scripted faults (tests/faults/fake_smtp.py) ---------------------------------
# the second has 4 BDAT chunks (SMTP_CHUNK is 128 KiB)
head -c 400000 "$M/06-big" >"$T_TMP/400k"
THREE=("$M/01-utf8" "$T_TMP/400k" "$M/03-nocrlf")
for mode in data bdat; do
	o=()
	[ $mode = data ] && o=(--no-chunking)
	fake temp-data --fault-on 2 || not_ok "fake-$mode" "did not start"
	fsend "temp-$mode" "${o[@]}" -- "${THREE[@]}"
	rc=$?
	want="DATA: 451 4\.3\.0"
	[ $mode = bdat ] && want="BDAT: 451 4\.3\.0"
	if [ $rc = 1 ] && grep -q "^msg 2 .*: tempfail: $want" "$T_TMP/temp-$mode.out" &&
		grep -q '^msg 1 .*: delivered' "$T_TMP/temp-$mode.out" && grep -q '^msg 3 .*: delivered' "$T_TMP/temp-$mode.out"; then
		ok "4xx-to-$mode-is-tempfail-and-next-goes-on"
	else
		not_ok "4xx-to-$mode-is-tempfail-and-next-goes-on" "exit $rc: $(tr '\n' '|' <"$T_TMP/temp-$mode.out")"
	fi
done
fake temp-end --fault-on 1 || true
fsend temp-end -- "$M/02-dots" "$M/03-nocrlf"
grep -q '^msg 1 .*: tempfail: end of data: 452 4\.2\.2' "$T_TMP/temp-end.out" &&
	grep -q '^msg 2 .*: delivered' "$T_TMP/temp-end.out" &&
	ok "4xx-after-data-tempfail" || not_ok "4xx-after-data-tempfail" "$(tr '\n' '|' <"$T_TMP/temp-end.out")"
fake perm-end || true
fsend perm-end --no-chunking -- "$M/02-dots"
grep -q '^msg 1 .*: permfail: end of data: 554 5\.6\.0' "$T_TMP/perm-end.out" &&
	ok "5xx-after-data-permfail" || not_ok "5xx-after-data-permfail" "$(tr '\n' '|' <"$T_TMP/perm-end.out")"

# two transactions in flight (PIPELINING): the next message's RSET, MAIL,
# RCPT and BDAT go while the previous one's final reply is still to come.
# The fake server holds each final reply until the client's next command
# has arrived (--overlap-wait), and logs when it did. Replies are matched
# to their messages: a 4xx to every BDAT chunk of the first (its last
# chunk's reply held while the second is pipelined), a 5xx to RCPT of the
# second, the third and fourth saved as themselves.
fake_logged() { # as fake; FLOG: that server's transcript
	local before
	before=$(ls "$T_TMP"/fake_smtp.*.out.err 2>/dev/null)
	fake "$@" || return 1
	FLOG=$(ls "$T_TMP"/fake_smtp.*.out.err | grep -vxF -e "$before" | head -n 1)
}
FOUR=("$T_TMP/400k" "$M/02-dots" "$M/01-utf8" "$M/03-nocrlf")
rm -rf "$T_TMP/saved-overlap"
fake_logged temp-data --fault-on 1 --also perm-rcpt@2 --overlap-wait 2 --save "$T_TMP/saved-overlap" ||
	not_ok "overlap-fake" "did not start"
fsend overlap -- "${FOUR[@]}"
rc=$?
sleep 0.3
# the 4th "<< 451" (the reply to BDAT ... LAST) comes after the second RSET went
n451=$(awk '/ >> RSET/ { print n + 0; exit } / << 451 / { n++ }' "$T_TMP/overlap.err")
if [ $rc = 1 ] && grep -q '^msg 1 .*400k: tempfail: BDAT: 451 4\.3\.0' "$T_TMP/overlap.out" &&
	grep -q '^msg 2 .*02-dots: permfail: RCPT TO: 550 5\.1\.1' "$T_TMP/overlap.out" &&
	grep -q '^msg 3 .*01-utf8: delivered: end of data: 250 .*FAKE3' "$T_TMP/overlap.out" &&
	grep -q '^msg 4 .*03-nocrlf: delivered: end of data: 250 .*FAKE4' "$T_TMP/overlap.out" &&
	grep -q 'summary: delivered 2 tempfail 1 permfail 1 refused 0 notsent 0' "$T_TMP/overlap.out" &&
	[ "${n451:-4}" -lt 4 ] &&
	grep -q "overlap: transaction 1's final reply held; the next command came first: RSET" "$FLOG" &&
	grep -q "overlap: transaction 3's final reply held; the next command came first: RSET" "$FLOG" &&
	cmp -s "$M/01-utf8" "$T_TMP/saved-overlap/msg-3" && cmp -s "$M/03-nocrlf" "$T_TMP/saved-overlap/msg-4" &&
	[ ! -e "$T_TMP/saved-overlap/msg-1" ] && [ ! -e "$T_TMP/saved-overlap/msg-2" ]; then
	ok "pipelined-transactions-overlap-replies-attributed"
else
	not_ok "pipelined-transactions-overlap-replies-attributed" "exit $rc, $n451 x 451 before RSET: $(tr '\n' '|' <"$T_TMP/overlap.out") $(grep -c 'overlap: transaction' "$FLOG") held"
fi
# LMTP: one reply per accepted recipient after the data, for the right
# message while the next one is in flight (a 452 to both accepted
# recipients of the second; each reply names its recipient)
fake_logged none --lmtp --also temp-end@2 --overlap-wait 2 || not_ok "overlap-lmtp-fake" "did not start"
"$SEND" --lmtp 127.0.0.1 "$FAKE_PORT" --from s@example.org --rcpt u1@example.org \
	--rcpt unknown-x@example.org --rcpt u2@example.org "$M/02-dots" "$M/01-utf8" "$M/03-nocrlf" \
	>"$T_TMP/overlap-lmtp.out" 2>"$T_TMP/overlap-lmtp.err"
rc=$?
sleep 0.3
if [ $rc = 1 ] && python3 - "$T_TMP/overlap-lmtp.out" <<'PY'
import re, sys
out = open(sys.argv[1]).read().split("\n")
want = [r"msg 1 .*02-dots: permfail: RCPT TO: 550 5\.1\.1",
        r"  rcpt <u1@example\.org>: delivered: end of data: 250 2\.0\.0 <u1@example\.org> Ok: .* FAKE1",
        r"  rcpt <unknown-x@example\.org>: permfail: RCPT TO: 550 5\.1\.1",
        r"  rcpt <u2@example\.org>: delivered: end of data: 250 2\.0\.0 <u2@example\.org> Ok: .* FAKE1",
        r"msg 2 .*01-utf8: tempfail: end of data: 452 4\.2\.2",
        r"  rcpt <u1@example\.org>: tempfail: end of data: 452 4\.2\.2",
        r"  rcpt <unknown-x@example\.org>: permfail: RCPT TO: 550 5\.1\.1",
        r"  rcpt <u2@example\.org>: tempfail: end of data: 452 4\.2\.2",
        r"msg 3 .*03-nocrlf: permfail: RCPT TO: 550 5\.1\.1",
        r"  rcpt <u1@example\.org>: delivered: end of data: 250 2\.0\.0 <u1@example\.org> Ok: .* FAKE3",
        r"  rcpt <unknown-x@example\.org>: permfail: RCPT TO: 550 5\.1\.1",
        r"  rcpt <u2@example\.org>: delivered: end of data: 250 2\.0\.0 <u2@example\.org> Ok: .* FAKE3"]
sys.exit(0 if len(out) >= len(want) and all(re.match(w, l) for w, l in zip(want, out)) else 1)
PY
then
	if grep -q "overlap: transaction 1's final reply held; the next command came first: RSET" "$FLOG" &&
		grep -q "overlap: transaction 2's final reply held; the next command came first: RSET" "$FLOG"; then
		ok "lmtp-pipelined-per-recipient-replies-attributed"
	else
		not_ok "lmtp-pipelined-per-recipient-replies-attributed" "no overlap logged: $(grep 'overlap:' "$FLOG" | tr '\n' '|')"
	fi
else
	not_ok "lmtp-pipelined-per-recipient-replies-attributed" "exit $rc: $(tr '\n' '|' <"$T_TMP/overlap-lmtp.out")"
fi
# --no-overlap: one transaction at a time (each final reply waited for)
fake_logged none --overlap-wait 0.3 || true
fsend no-overlap --no-overlap -- "$M/02-dots" "$M/03-nocrlf"
rc=$?
sleep 0.3
if [ $rc = 0 ] && [ "$(grep -c 'overlap: none for transaction' "$FLOG")" = 2 ] && ! grep -q 'the next command came first' "$FLOG"; then
	ok "no-overlap-one-transaction-at-a-time"
else
	not_ok "no-overlap-one-transaction-at-a-time" "exit $rc: $(grep 'overlap:' "$FLOG" | tr '\n' '|')"
fi

fake evil-text || true
fsend evil-text -- "$M/02-dots"
if grep -q '^msg 1 .*: permfail: end of data: 550 5\.7\.1 .*done$' "$T_TMP/evil-text.out" &&
	! LC_ALL=C grep -q $'[\x1b\x07]' "$T_TMP/evil-text.out" && ! grep -q $'\u202e\|\u009b' "$T_TMP/evil-text.out"; then
	ok "server-text-escaped"
else
	not_ok "server-text-escaped" "$(head -n 1 "$T_TMP/evil-text.out" | od -c | head -n 3 | tr '\n' ' ')"
fi

# fatal faults: NAME FAULT ERROR-PATTERN [smtp_send options]
fatal() {
	local name=$1 fault=$2 pat=$3; shift 3
	fake "$fault" ${FAKE_OPTS:-} || { not_ok "$name" "fake server did not start"; return; }
	fsend "$name" "$@" -- "$M/01-utf8" "$M/03-nocrlf"
	local rc=$?
	if [ $rc = 3 ] && grep -q "error: .*$pat" "$T_TMP/$name.err" && ! grep -q '^msg .*: delivered:' "$T_TMP/$name.out" &&
		grep -q 'summary: delivered 0 .* notsent 2' "$T_TMP/$name.out"; then
		ok "$name"
	else
		not_ok "$name" "exit $rc: $(grep -m1 error "$T_TMP/$name.err") $(tail -n 1 "$T_TMP/$name.out")"
	fi
	grep -q 'AddressSanitizer\|runtime error' "$T_TMP/$name.err" && not_ok "$name-sanitizers" "see $name.err"
}
fatal server-closing-421 421 "server is closing the session: 421 4\.3\.2"
fatal garbage-reply garbage "malformed reply: reply line does not start with a 3-digit code"
fatal disconnect-mid-data disconnect-data "connection closed by server" --no-chunking
fatal disconnect-mid-bdat disconnect-data "connection closed by server"
fatal reply-flood flood "malformed reply: reply has too many lines"
fatal reply-long-line long-line "malformed reply: reply line too long"
fatal unsolicited-reply unsolicited "unsolicited reply: .* after the reply to nothing"
FAKE_OPTS="--tls-cert $D_DIR/tls/server.pem --tls-key $D_DIR/tls/server.key" \
	fatal starttls-injection starttls-inject "unexpected bytes after the server's reply" --starttls --ca "$D_CA_FILE"

# the exact bytes a server receives: BDAT as they are, DATA unstuffed to
# the same but for the end (CRLF added, or a final bare LF sent as CRLF);
# every other bare LF kept
for mode in bdat data; do
	o=()
	[ $mode = data ] && o=(--no-chunking)
	rm -rf "$T_TMP/saved-$mode"
	fake none --save "$T_TMP/saved-$mode" --lmtp || true
	"$SEND" --lmtp "${o[@]}" 127.0.0.1 "$FAKE_PORT" --from s@example.org --rcpt u1@example.org "${MSGS[@]}" \
		>"$T_TMP/exact-$mode.out" 2>"$T_TMP/exact-$mode.err"
	bad=
	i=0
	for f in "${MSGS[@]}"; do
		i=$((i + 1))
		want=$T_TMP/want.$i
		cp "$f" "$want"
		# DATA: no line end at the end gains CRLF, a bare LF there goes as CRLF
		if [ $mode = data ]; then
			python3 -c 'import sys; b = open(sys.argv[1], "rb").read()
if not b.endswith(b"\n"): b += b"\r\n"
elif not b.endswith(b"\r\n"): b = b[:-1] + b"\r\n"
open(sys.argv[1], "wb").write(b)' "$want"
		fi
		cmp -s "$want" "$T_TMP/saved-$mode/msg-$i" || bad="$bad $(basename "$f")"
	done
	[ -z "$bad" ] && ok "exact-bytes-$mode" || not_ok "exact-bytes-$mode" "differ:$bad"
done
fake none || true
fsend smtputf8 -- "$M/01-utf8"
grep -q ' >> MAIL FROM:<s@example.org> SIZE=[0-9]* BODY=8BITMIME SMTPUTF8$' "$T_TMP/smtputf8.err" &&
	ok "smtputf8-declared-for-utf8-headers" || not_ok "smtputf8-declared-for-utf8-headers" "$(grep -m1 'MAIL FROM' "$T_TMP/smtputf8.err")"
fake none --capabilities "PIPELINING ENHANCEDSTATUSCODES" || true
"$SEND" 127.0.0.1 "$FAKE_PORT" --from "jürgen@example.org" --rcpt u1@example.org "$M/02-dots" \
	>"$T_TMP/utf8addr.out" 2>"$T_TMP/utf8addr.err"
grep -q '^msg 1 .*: refused: .*non-ASCII address needs SMTPUTF8' "$T_TMP/utf8addr.out" &&
	ok "utf8-address-without-smtputf8-refused" || not_ok "utf8-address-without-smtputf8-refused" "$(head -n 1 "$T_TMP/utf8addr.out")"
fake none --capabilities "ENHANCEDSTATUSCODES" || true
fsend nopipe -- "$M/02-dots" "$M/03-nocrlf"
if grep -q 'summary: delivered 2 ' "$T_TMP/nopipe.out" && ! pipelined "$T_TMP/nopipe.err" && grep -q ' >> DATA' "$T_TMP/nopipe.err"; then
	ok "no-pipelining-one-command-per-reply"
else
	not_ok "no-pipelining-one-command-per-reply" "$(tail -n 1 "$T_TMP/nopipe.out")"
fi

fake none --capabilities "CHUNKING ENHANCEDSTATUSCODES" --save "$T_TMP/saved-nopipe" || true
fsend nopipe-bdat -- "$T_TMP/400k" "$M/03-nocrlf"
if grep -q 'summary: delivered 2 ' "$T_TMP/nopipe-bdat.out" && ! pipelined "$T_TMP/nopipe-bdat.err" &&
	[ "$(grep -c ' >> BDAT' "$T_TMP/nopipe-bdat.err")" = 5 ] &&
	awk '/ >> BDAT/ { if (w) bad = 1; w = 1 } / << / { w = 0 } END { exit bad }' "$T_TMP/nopipe-bdat.err" &&
	cmp -s "$T_TMP/400k" "$T_TMP/saved-nopipe/msg-1"; then
	ok "no-pipelining-one-bdat-per-reply"
else
	not_ok "no-pipelining-one-bdat-per-reply" "$(tail -n 1 "$T_TMP/nopipe-bdat.out"), $(grep -c ' >> BDAT' "$T_TMP/nopipe-bdat.err") BDATs"
fi

# never held whole: the ~10 MiB message costs smtp_send (ASan build) about
# as much memory as a tiny one, with BDAT and with DATA
maxrss() { # smtp_send args...: its peak RSS in KiB
	python3 -c 'import resource, subprocess, sys
subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)' "$SEND" "$@"
}
for mode in bdat data; do
	o=()
	[ $mode = data ] && o=(--no-chunking)
	fake none || true
	small=$(maxrss "${o[@]}" 127.0.0.1 "$FAKE_PORT" --from s@example.org --rcpt u1@example.org "$M/02-dots")
	big=$(maxrss "${o[@]}" 127.0.0.1 "$FAKE_PORT" --from s@example.org --rcpt u1@example.org "$M/06-big")
	if [ $((big - small)) -lt 4096 ]; then ok "streamed-not-held-$mode ($small KiB vs $big KiB)"
	else not_ok "streamed-not-held-$mode" "peak RSS $small KiB for a small message, $big KiB for 10 MiB"; fi
done

# implicit TLS (smtps://): verified against the CA, refused without it
fake none --implicit-tls --tls-cert "$D_DIR/tls/server.pem" --tls-key "$D_DIR/tls/server.key" || true
fsend smtps --tls --ca "$D_CA_FILE" -- "$M/02-dots"
rc=$?
fsend smtps-unknown-ca --tls --ca "$T_TMP/msgs/02-dots" -- "$M/02-dots"
rc2=$?
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$T_TMP/other.key" -out "$T_TMP/other-ca.pem" \
	-subj "/CN=other" -days 1 >/dev/null 2>&1
fsend smtps-other-ca --tls --ca "$T_TMP/other-ca.pem" -- "$M/02-dots"
rc3=$?
if [ $rc = 0 ] && grep -q 'summary: delivered 1 ' "$T_TMP/smtps.out" && [ $rc2 = 3 ] && [ $rc3 = 3 ] &&
	grep -q 'certificate verify failed' "$T_TMP/smtps-other-ca.err" && ! grep -q ' >> MAIL' "$T_TMP/smtps-other-ca.err"; then
	ok "implicit-tls-verified"
else
	not_ok "implicit-tls-verified" "rc $rc/$rc2/$rc3: $(grep -h -m1 error "$T_TMP"/smtps*.err | head -n 2 | tr '\n' '|')"
fi

# ---- plaintext policy off loopback (network namespace) ----------------------------
if [ -n "$FAR" ]; then
	t_helper fake_smtp python3 "$FAULTS/fake_smtp.py" --host "$FAR" --max-seconds 120 &&
		FAKE_PORT=$T_HELPER_PORT
	for m in plain starttls allow; do
		o=()
		[ $m = starttls ] && o=(--starttls)
		[ $m = allow ] && o=(--allow-plaintext)
		"$SEND" "${o[@]}" "$FAR" "$FAKE_PORT" --from s@example.org --rcpt u1@example.org "$M/02-dots" \
			>"$T_TMP/far-$m.out" 2>"$T_TMP/far-$m.err"
		echo $? >"$T_TMP/far-$m.rc"
	done
	if [ "$(cat "$T_TMP/far-plain.rc")" = 3 ] && grep -q 'refusing to send mail unencrypted' "$T_TMP/far-plain.err" &&
		[ "$(cat "$T_TMP/far-starttls.rc")" = 3 ] && grep -q 'server does not offer STARTTLS; refusing' "$T_TMP/far-starttls.err" &&
		! grep -q ' >> MAIL' "$T_TMP/far-plain.err" "$T_TMP/far-starttls.err" &&
		[ "$(cat "$T_TMP/far-allow.rc")" = 0 ]; then
		ok "plaintext-refused-off-loopback"
	else
		not_ok "plaintext-refused-off-loopback" "rc $(cat "$T_TMP"/far-*.rc | tr '\n' ' '): $(grep -h -m1 error "$T_TMP"/far-*.err | head -n 2 | tr '\n' '|')"
	fi
else
	echo "# skipped plaintext-refused-off-loopback: no network namespace (not root?)"
fi

if grep -l 'AddressSanitizer\|runtime error:' "$T_TMP"/*.err >/dev/null 2>&1; then
	not_ok "sanitizers-clean" "$(grep -l 'AddressSanitizer\|runtime error:' "$T_TMP"/*.err | tr '\n' ' ')"
else
	ok "sanitizers-clean"
fi

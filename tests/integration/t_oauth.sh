#!/usr/bin/env bash
# Issue 16 item 1: OAuth2 logins against the real private Dovecot, whose
# passdb oauth2 asks a local introspection endpoint (oauth_introspect.py)
# about every token; the endpoint accepts the tokens listed in a file and
# logs what it was asked.
#  1. a valid token from a file migrates exactly (compare), by OAUTHBEARER
#     when the server offers both mechanisms;
#  2. a refused token: exit 4, one error line naming the account, with the
#     server's challenge (status=...) and without the token;
#  3. a token command that prints an expired token, then (run again after
#     the refusal) a valid one: the login is retried once and succeeds;
#  4. a server offering only XOAUTH2: a valid token migrates, a refused one
#     is exit 4 (the challenge answered with an empty response);
#     Without SASL-IR (the message after the server's "+"), OAUTHBEARER
#     valid and refused (the challenge answered with %x01);
#  5. the token is in neither stderr, --json, MAILFERRY_TRACE=1 output nor
#     any process's argv (ps) while the run goes on;
#  6. reconnects: a token file rewritten mid-run is used after doveadm kick
#     (the old token no longer accepted); a token command runs again before
#     the reconnect;
#  7. an accounts file line (mailferry run) takes the same options; a slow
#     token command of one account does not hold up another (the command
#     runs on the event loop); --check logs in with tokens too;
#  8. off loopback without TLS the token is not sent (a fake server on this
#     machine's own non-loopback address), unless --allow-plaintext.
#  9. hostile servers (a scripted fake): a 20 KB or garbled error challenge,
#     escapes in the refusal, OK after the abort, "+" after the abort.
. "$(dirname "$0")/lib.sh"

TOK=$T_TMP/tokens
: >"$TOK"
for u in src d1 d2 d3 d4 d5 d6 d7 d8 d9; do echo "tok-$u-valid.$RANDOM$RANDOM $u" >>"$TOK"; done
tok() { awk -v u="$1" '$2 == u { print $1; exit }' "$TOK"; }
t_helper introspect python3 "$ROOT/tests/integration/oauth_introspect.py" --tokens "$TOK" \
	--log "$T_TMP/introspect.log" --max-seconds 900 || { not_ok oauth-introspect "did not start"; exit 1; }
IPORT=$T_HELPER_PORT
users="src d1 d2 d3 d4 d5 d6 d7 d8 d9"
dv_start D --users "$users" --oauth2 "http://127.0.0.1:$IPORT/introspect" ||
	{ not_ok oauth-dovecot "start failed"; exit 1; }
corpus D src tiny 3 || { not_ok oauth-corpus failed; exit 1; }
SRC=$D_MAIL_ROOT/src/Maildir
tokfile() { # NAME TOKEN: a mode-600 file holding TOKEN and a newline
	printf '%s\n' "$2" >"$T_TMP/$1"
	chmod 600 "$T_TMP/$1"
	echo "$T_TMP/$1"
}
url() { echo "imap://$1@127.0.0.1:$D_IMAP_PORT"; }
# STARTTLS on every connection to D: the token never goes in the clear
mfd() { "$MF" "$@" --ca-file "$D_CA_FILE"; }
no_secret() { # NAME TOKEN FILES...: TOKEN appears in none of FILES
	local name=$1 t=$2; shift 2
	if grep -qF -- "$t" "$@" 2>/dev/null; then
		not_ok "$name" "the token appears in $(grep -lF -- "$t" "$@" | tr '\n' ' ')"
	else
		ok "$name"
	fi
}
mechs() { # USER: the mechanisms Dovecot logged for USER's logins
	grep -o "Login: user=<$1>, method=[A-Z0-9]*" "$D_DIR/dovecot.log" | sed 's/.*method=//' | sort -u | tr '\n' ' '
}

# 1. a valid token from a file, over STARTTLS (the token is never sent in
# the clear by choice), OAUTHBEARER preferred
fs=$(tokfile src.tok "$(tok src)") fd=$(tokfile d1.tok "$(tok d1)")
expect_exit oauth-file-valid 0 mfd migrate "$(url src)" "$(url d1)" --ca-file "$D_CA_FILE" \
	--src-oauth-token-file "$fs" --dst-oauth-token-file "$fd" --state "$T_TMP/st1" --no-progress --json
cp "$T_TMP/last.out" "$T_TMP/1.out"; cp "$T_TMP/last.err" "$T_TMP/1.err"
check oauth-file-exact "$BENCH_BIN/compare" "$SRC" "$D_MAIL_ROOT/d1/Maildir"
[ "$(mechs d1)" = "OAUTHBEARER " ] && ok oauth-bearer-preferred ||
	not_ok oauth-bearer-preferred "Dovecot logged methods: $(mechs d1)"
grep -q "^$(tok d1) d1$" "$T_TMP/introspect.log" && ok oauth-server-asked ||
	not_ok oauth-server-asked "the introspection endpoint never saw d1's token"
no_secret oauth-file-no-token-in-output "$(tok src)" "$T_TMP/1.out" "$T_TMP/1.err"

# 2. a refused token (the endpoint does not know it): exit 4, one line
bad=tok-expired-$RANDOM$RANDOM
fb=$(tokfile bad.tok "$bad")
expect_exit oauth-refused-exit-4 4 mfd migrate "$(url src)" "$(url d2)" \
	--src-oauth-token-file "$fb" --dst-oauth-token-file "$(tokfile d2.tok "$(tok d2)")" \
	--state "$T_TMP/st2" --no-progress --json
cp "$T_TMP/last.out" "$T_TMP/2.out"; cp "$T_TMP/last.err" "$T_TMP/2.err"
n=$(grep -c 'source src@127.0.0.1: login failed: the OAuth2 token was refused (status=' "$T_TMP/2.err")
[ "$n" = 1 ] && ok oauth-refused-one-line ||
	not_ok oauth-refused-one-line "$n matching lines: $(head -c 400 "$T_TMP/2.err" | tr '\n' '|')"
no_secret oauth-refused-no-token "$bad" "$T_TMP/2.out" "$T_TMP/2.err"
[ "$(json_field "$T_TMP/2.out" class)" = auth ] && ok oauth-refused-json-class ||
	not_ok oauth-refused-json-class "class $(json_field "$T_TMP/2.out" class)"

# 3. a command: expired first, valid when run again after the refusal
cat >"$T_TMP/tokcmd.sh" <<EOF
#!/bin/sh
n=\$(cat "$T_TMP/cmd.count" 2>/dev/null || echo 0); n=\$((n + 1)); echo \$n >"$T_TMP/cmd.count"
echo "ran for \$MAILFERRY_OAUTH_USER" >&2
if [ \$n = 1 ]; then echo "$bad"; else echo "$(tok src)"; fi
EOF
chmod 700 "$T_TMP/tokcmd.sh"
expect_exit oauth-cmd-refresh 0 mfd migrate "$(url src)" "$(url d3)" \
	--src-oauth-token-cmd "$T_TMP/tokcmd.sh" --dst-oauth-token-file "$(tokfile d3.tok "$(tok d3)")" \
	--state "$T_TMP/st3" --no-progress --json
cp "$T_TMP/last.err" "$T_TMP/3.err"
check oauth-cmd-exact "$BENCH_BIN/compare" "$SRC" "$D_MAIL_ROOT/d3/Maildir"
[ "$(cat "$T_TMP/cmd.count")" = 2 ] && ok oauth-cmd-ran-twice ||
	not_ok oauth-cmd-ran-twice "ran $(cat "$T_TMP/cmd.count") times"
grep -q "ran for src" "$T_TMP/3.err" && ok oauth-cmd-stderr-and-user ||
	not_ok oauth-cmd-stderr-and-user "the command's stderr (with MAILFERRY_OAUTH_USER) did not come through"
# a command failing: exit 4 and says so
expect_exit oauth-cmd-fails 4 mfd migrate "$(url src)" "$(url d4)" \
	--src-oauth-token-cmd "exit 3" --dst-oauth-token-file "$T_TMP/d2.tok" --state "$T_TMP/st4" --no-progress
grep -q "token command failed (exit status 3)" "$T_TMP/last.err" && ok oauth-cmd-fails-said ||
	not_ok oauth-cmd-fails-said "$(tail -n 1 "$T_TMP/last.err")"

# 4. XOAUTH2 only
dv_start X --users "src x1 x2" --oauth2 "http://127.0.0.1:$IPORT/introspect" --oauth2-mechanisms xoauth2 ||
	{ not_ok oauth-dovecot-x "start failed"; exit 1; }
echo "tok-x1-valid.$RANDOM x1" >>"$TOK"
corpus X src tiny 4 || not_ok oauth-corpus-x failed
expect_exit oauth-xoauth2-valid 0 "$MF" migrate "imap://src@127.0.0.1:$X_IMAP_PORT" \
	"imaps://x1@127.0.0.1:$X_IMAPS_PORT" --ca-file "$X_CA_FILE" --src-password-file "$X_DIR/pw/src" \
	--dst-oauth-token-file "$(tokfile x1.tok "$(tok x1)")" --state "$T_TMP/stx" --no-progress
check oauth-xoauth2-exact "$BENCH_BIN/compare" "$X_MAIL_ROOT/src/Maildir" "$X_MAIL_ROOT/x1/Maildir"
grep -q "Login: user=<x1>, method=XOAUTH2" "$X_DIR/dovecot.log" && ok oauth-xoauth2-used ||
	not_ok oauth-xoauth2-used "no XOAUTH2 login of x1 in the Dovecot log"
expect_exit oauth-xoauth2-refused 4 "$MF" migrate "imap://src@127.0.0.1:$X_IMAP_PORT" \
	"imap://x2@127.0.0.1:$X_IMAP_PORT" --src-password-file "$X_DIR/pw/src" \
	--dst-oauth-token-file "$fb" --state "$T_TMP/stx2" --no-progress --ca-file "$X_CA_FILE"
grep -q 'destination x2@127.0.0.1: login failed: the OAuth2 token was refused (status=401' "$T_TMP/last.err" &&
	ok oauth-xoauth2-refused-said || not_ok oauth-xoauth2-refused-said "$(tail -n 1 "$T_TMP/last.err")"
no_secret oauth-xoauth2-refused-no-token "$bad" "$T_TMP/last.err" "$T_TMP/last.out"

# 4b. no SASL-IR: the message goes after "+"; OAUTHBEARER only
dv_start N --users "src n1 n2" --oauth2 "http://127.0.0.1:$IPORT/introspect" --oauth2-mechanisms oauthbearer \
	--no-sasl-ir || { not_ok oauth-dovecot-n "start failed"; exit 1; }
imap_session "$N_IMAP_PORT" <<<"a CAPABILITY" | grep -q 'SASL-IR' && not_ok oauth-no-sasl-ir "SASL-IR still offered" ||
	ok oauth-no-sasl-ir
echo "tok-n1-valid.$RANDOM n1" >>"$TOK"
corpus N src tiny 5 || not_ok oauth-corpus-n failed
expect_exit oauth-cont-valid 0 "$MF" migrate "imap://src@127.0.0.1:$N_IMAP_PORT" \
	"imap://n1@127.0.0.1:$N_IMAP_PORT" --ca-file "$N_CA_FILE" --src-password-file "$N_DIR/pw/src" \
	--dst-oauth-token-file "$(tokfile n1.tok "$(tok n1)")" --state "$T_TMP/stn" --no-progress
check oauth-cont-exact "$BENCH_BIN/compare" "$N_MAIL_ROOT/src/Maildir" "$N_MAIL_ROOT/n1/Maildir"
grep -q "Login: user=<n1>, method=OAUTHBEARER" "$N_DIR/dovecot.log" && ok oauth-cont-oauthbearer ||
	not_ok oauth-cont-oauthbearer "no OAUTHBEARER login of n1 in the Dovecot log"
expect_exit oauth-cont-refused 4 "$MF" migrate "imap://src@127.0.0.1:$N_IMAP_PORT" \
	"imap://n2@127.0.0.1:$N_IMAP_PORT" --ca-file "$N_CA_FILE" --src-password-file "$N_DIR/pw/src" \
	--dst-oauth-token-file "$fb" --state "$T_TMP/stn2" --no-progress
grep -q 'destination n2@127.0.0.1: login failed: the OAuth2 token was refused (status=' "$T_TMP/last.err" &&
	ok oauth-cont-refused-said || not_ok oauth-cont-refused-said "$(tail -n 1 "$T_TMP/last.err")"

# 5. trace and argv: a slow token command keeps the run alive while ps looks
cat >"$T_TMP/slowcmd.sh" <<EOF
#!/bin/sh
sleep 1
cat "$T_TMP/d5.tok"
EOF
chmod 700 "$T_TMP/slowcmd.sh"
tokfile d5.tok "$(tok d5)" >/dev/null
MAILFERRY_TRACE=1 mfd migrate "$(url src)" "$(url d5)" --src-oauth-token-file "$fs" \
	--dst-oauth-token-cmd "$T_TMP/slowcmd.sh" --state "$T_TMP/st5" --no-progress --json \
	>"$T_TMP/5.out" 2>"$T_TMP/5.err" &
pid=$!
: >"$T_TMP/ps.txt"
for _ in 1 2 3 4 5 6 7 8; do ps -eo args >>"$T_TMP/ps.txt"; sleep 0.2; done
wait "$pid"; rc=$?
[ $rc = 0 ] && ok oauth-trace-run || not_ok oauth-trace-run "exit $rc: $(tail -n 1 "$T_TMP/5.err")"
grep -q "slowcmd.sh" "$T_TMP/ps.txt" && ok oauth-ps-sampled || not_ok oauth-ps-sampled "the run was not seen in ps"
no_secret oauth-ps-no-token "$(tok d5)" "$T_TMP/ps.txt"
no_secret oauth-ps-no-token-src "$(tok src)" "$T_TMP/ps.txt"
grep -q 'bytes of login hidden' "$T_TMP/5.err" && ok oauth-trace-masked ||
	not_ok oauth-trace-masked "no masked login in the trace"
no_secret oauth-trace-no-token "$(tok d5)" "$T_TMP/5.err" "$T_TMP/5.out"
no_secret oauth-trace-no-token-src "$(tok src)" "$T_TMP/5.err" "$T_TMP/5.out"
# nor its base64 (what AUTHENTICATE carries): any 24-character run of it
b64=$(printf 'n,a=src,\001host=127.0.0.1\001port=%s\001auth=Bearer %s\001\001' "$D_IMAP_PORT" "$(tok src)" | base64 -w0)
no_secret oauth-trace-no-sasl "${b64:8:24}" "$T_TMP/5.err"

# 6. reconnects. A bigger source so that the run is still copying when
# the sessions are kicked.
corpus D d6 crash 7 || not_ok oauth-corpus-big failed
BIG=$D_MAIL_ROOT/d6/Maildir
kick_run() { # NAME DSTUSER SRC-TOKEN-OPTION...: migrate d6 -> DSTUSER, kicking d6
	local name=$1 du=$2 pid rc kicks=0; shift 2
	mfd migrate "$(url d6)" "$(url "$du")" "$@" --dst-oauth-token-file "$(tokfile "$du.tok" "$(tok "$du")")" \
		--connections 2 --batch 8 --state "$T_TMP/st-$name" --no-progress --json \
		>"$T_TMP/$name.out" 2>"$T_TMP/$name.err" &
	pid=$!
	sleep 1.5
	kick_hook
	if kill -0 "$pid" 2>/dev/null && doveadm -c "$D_DOVECOT_CONF" kick d6 >/dev/null 2>&1; then kicks=1; fi
	wait "$pid"; rc=$?
	[ $kicks = 1 ] && ok "$name-kicked" || not_ok "$name-kicked" "the run ended before the kick"
	[ $rc = 0 ] && ok "$name-exit-0" || not_ok "$name-exit-0" "exit $rc: $(grep -v '^[[:space:]]*$' "$T_TMP/$name.err" | tail -n 1)"
	[ "$(json_field "$T_TMP/$name.out" reconnects 2>/dev/null)" -ge 1 ] 2>/dev/null && ok "$name-reconnected" ||
		not_ok "$name-reconnected" "reconnects=$(json_field "$T_TMP/$name.out" reconnects 2>/dev/null)"
	check "$name-exact" "$BENCH_BIN/compare" "$BIG" "$D_MAIL_ROOT/$du/Maildir"
}
# a) the file: rewritten with a new token, the old one withdrawn, then kick
old6=$(tok d6) new6=tok-d6-new.$RANDOM$RANDOM
f6=$(tokfile d6.tok "$old6")
kick_hook() {
	echo "$new6 d6" >>"$TOK"
	sed -i "/^$old6 /d" "$TOK"
	printf '%s\n' "$new6" >"$f6.new" && mv "$f6.new" "$f6"
}
kick_run oauth-reconnect-file d7 --src-oauth-token-file "$f6"
grep -q "^$new6 d6$" "$T_TMP/introspect.log" && ok oauth-reconnect-file-new-token ||
	not_ok oauth-reconnect-file-new-token "the new token was never presented"
# b) the command: a fresh token each run, all accepted; it must run again
# before the reconnect (not only at the first login)
for i in 1 2 3 4 5 6 7 8 9; do echo "tok-d6-run$i.x d6" >>"$TOK"; done
cat >"$T_TMP/runcmd.sh" <<EOF
#!/bin/sh
n=\$(cat "$T_TMP/run.count" 2>/dev/null || echo 0); n=\$((n + 1)); echo \$n >"$T_TMP/run.count"
echo "tok-d6-run\$n.x"
EOF
chmod 700 "$T_TMP/runcmd.sh"
kick_hook() { :; }
kick_run oauth-reconnect-cmd d8 --src-oauth-token-cmd "$T_TMP/runcmd.sh"
runs=$(cat "$T_TMP/run.count")
[ "$runs" -ge 2 ] && grep -q "^tok-d6-run2.x d6$" "$T_TMP/introspect.log" && ok "oauth-reconnect-cmd-reran ($runs runs)" ||
	not_ok oauth-reconnect-cmd-reran "the command ran $runs times"

# 7. an accounts file line with the same options
printf '%s %s --src-oauth-token-file %s --dst-oauth-token-file %s\n' "$(url src)" "$(url d9)" "$fs" \
	"$(tokfile d9.tok "$(tok d9)")" >"$T_TMP/accounts"
chmod 600 "$T_TMP/accounts"
expect_exit oauth-run-accounts 0 mfd run "$T_TMP/accounts" --state "$T_TMP/st9" --no-progress
check oauth-run-exact "$BENCH_BIN/compare" "$SRC" "$D_MAIL_ROOT/d9/Maildir"
# two accounts at once: the first one's command takes 4 s, the second
# account (a token file) must be done long before it
printf '#!/bin/sh\nsleep 4\ncat %s\n' "$fs" >"$T_TMP/slow4.sh"
chmod 700 "$T_TMP/slow4.sh"
{
	printf '%s %s --src-oauth-token-cmd %s --dst-oauth-token-file %s\n' "$(url src)" "$(url d4)" \
		"$T_TMP/slow4.sh" "$(tokfile d4.tok "$(tok d4)")"
	printf '%s %s --src-oauth-token-file %s --dst-oauth-token-file %s\n' "$(url src)" "$(url d2)" "$fs" "$T_TMP/d2.tok"
} >"$T_TMP/accounts2"
chmod 600 "$T_TMP/accounts2"
expect_exit oauth-run-two 0 mfd run "$T_TMP/accounts2" --jobs 2 --state "$T_TMP/st11" --no-progress
order=$(grep -o 'accounts2:[12]: done' "$T_TMP/last.err" | cut -d: -f2 | tr '\n' ' ')
secs=$(sed -n 's/.*accounts2:2: done: .* in \([0-9]*\)\.[0-9]* s$/\1/p' "$T_TMP/last.err")
[ "$order" = "2 1 " ] && [ -n "$secs" ] && [ "$secs" -lt 3 ] && ok "oauth-cmd-not-blocking (${secs}s)" ||
	not_ok oauth-cmd-not-blocking "order '$order', the second account took ${secs:-?} s: the slow command held it up"
check oauth-run-two-exact "$BENCH_BIN/compare" "$SRC" "$D_MAIL_ROOT/d4/Maildir"
expect_exit oauth-check 0 mfd migrate "$(url src)" "$(url d9)" --src-oauth-token-file "$fs" \
	--dst-oauth-token-file "$T_TMP/d9.tok" --check

# 8. the TLS rule, as for passwords
hostip=$(hostname -I 2>/dev/null | tr ' ' '\n' | grep -E '^[0-9.]+$' | grep -v '^127\.' | head -n 1)
if [ -z "$hostip" ]; then
	ok "oauth-plaintext-policy # skip: no non-loopback IPv4 address here"
else
	fake_imap none --host "$hostip" --capabilities "IMAP4rev1 SASL-IR AUTH=XOAUTH2 AUTH=OAUTHBEARER" ||
		not_ok oauth-offloop-fake "did not start"
	expect_exit oauth-offloop-refused 3 "$MF" migrate "imap://src@$hostip:$FAKE_PORT?starttls=no" "$(url d9)" \
		--src-oauth-token-file "$fs" --dst-oauth-token-file "$T_TMP/d9.tok" --state "$T_TMP/st10" \
		--no-progress --timeout 5
	grep -q 'refusing to send the OAuth2 token over an unencrypted connection' "$T_TMP/last.err" &&
		ok oauth-offloop-message || not_ok oauth-offloop-message "$(tail -n 1 "$T_TMP/last.err")"
	fake_imap none --host "$hostip" --capabilities "IMAP4rev1 SASL-IR ID" || not_ok oauth-offloop-fake2 "did not start"
	expect_exit oauth-offloop-allowed-no-mech 4 "$MF" migrate "imap://src@$hostip:$FAKE_PORT?starttls=no" "$(url d9)" \
		--src-oauth-token-file "$fs" --dst-oauth-token-file "$T_TMP/d9.tok" --state "$T_TMP/st10" \
		--no-progress --timeout 5 --allow-plaintext
	grep -q 'needs AUTH=OAUTHBEARER or AUTH=XOAUTH2, and the server offers neither' "$T_TMP/last.err" &&
		ok oauth-offloop-no-mech-message || not_ok oauth-offloop-no-mech-message "$(tail -n 1 "$T_TMP/last.err")"
fi

# 9. hostile servers (a scripted fake: no real server does this): a huge
# or garbled error challenge, a refusal text with terminal escapes, an OK
# after the client aborted, a second "+" after the abort. Each must end in
# one clean line, without the token, and never in a login.
cat >"$T_TMP/hostile_oauth.py" <<'PY'
import socket, sys, threading
mode = sys.argv[1]
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(8)
print("PORT %d" % srv.getsockname()[1], flush=True)
srv.settimeout(30)
def serve(c):
    f = c.makefile("rb")
    c.sendall(b"* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=XOAUTH2 AUTH=OAUTHBEARER] hostile\r\n")
    for line in f:
        parts = line.split(b" ")
        tag = parts[0]
        if len(parts) > 1 and parts[1].upper().startswith(b"AUTHENTICATE"):
            if mode == "huge":
                c.sendall(b"+ " + b"QUFB" * 5000 + b"\r\n")
            elif mode == "garbled":
                c.sendall(b"+ eyJzdGF0dXMiOiJcdTAwMWJbMko=\r\n")
            else:
                c.sendall(b"+ eyJzdGF0dXMiOiI0MDEifQ==\r\n")
            f.readline()
            if mode == "ok-after-abort":
                c.sendall(tag + b" OK welcome anyway\r\n")
            elif mode == "plus-again":
                c.sendall(b"+ again\r\n")
            else:
                c.sendall(tag + b" NO [AUTHENTICATIONFAILED] bad \x1b[31mred\x1b[0m token\r\n")
        elif len(parts) > 1 and parts[1].upper().startswith(b"LOGOUT"):
            c.sendall(b"* BYE\r\n" + tag + b" OK\r\n"); break
        else:
            c.sendall(tag + b" BAD what\r\n")
    c.close()
while True:
    try:
        c, _ = srv.accept()
    except socket.timeout:
        break
    threading.Thread(target=serve, args=(c,), daemon=True).start()
PY
for m in huge garbled ok-after-abort plus-again escapes; do
	t_helper "hostile_$m" python3 "$T_TMP/hostile_oauth.py" "$m" || { not_ok "oauth-hostile-$m" "fake did not start"; continue; }
	"$MF" migrate "imap://src@127.0.0.1:$T_HELPER_PORT?starttls=no" "$(url d9)" --ca-file "$D_CA_FILE" \
		--src-oauth-token-file "$fs" --dst-oauth-token-file "$T_TMP/d9.tok" --state "$T_TMP/st-h$m" \
		--no-progress --timeout 5 --retries 0 >"$T_TMP/h$m.out" 2>"$T_TMP/h$m.err"
	rc=$?
	n=$(grep -c 'error: source src@127.0.0.1: ' "$T_TMP/h$m.err")
	if [ "$rc" -ge 3 ] && [ "$rc" -le 4 ] && [ "$n" = 1 ] && ! grep -qF "$(tok src)" "$T_TMP/h$m.err" &&
		! grep -q $'\x1b' "$T_TMP/h$m.err"; then
		ok "oauth-hostile-$m (exit $rc: $(grep 'error: source' "$T_TMP/h$m.err" | cut -c1-160))"
	else
		not_ok "oauth-hostile-$m" "exit $rc, $n error lines: $(head -c 300 "$T_TMP/h$m.err" | tr '\n' '|')"
	fi
done

#!/usr/bin/env bash
# Issue 15, defects 2, 3 and 8: a hostile server at connection level.
#  - PREAUTH greeting on a connection that must be encrypted (imap:// to a
#    host that is not loopback): refused before any mailbox is touched.
#  - Bytes injected after STARTTLS's OK, before the handshake (RFC 3501
#    §6.2.1): fatal, whether a partial line or a whole one.
#  - LOGIN with synchronizing literals (no AUTH=PLAIN, no LITERAL+,
#    non-ASCII user and password): each literal waits for "+", and no
#    credential ever shows on stderr or in the --json output.
# The faults come from tests/faults/fake_imap.py (no real server misbehaves
# on demand); the destination, where mail lands, is a real Dovecot.
#
# "Not loopback" is real here, with no test hook in mailferry: the script
# re-runs itself in a private network namespace (unshare -n, as root) whose
# lo also carries 192.0.2.1 (TEST-NET-1, RFC 5737), where the fake server
# listens. Without namespaces (not root), the PREAUTH checks that need it
# are skipped and say so.
if [ -z "${MF_T_NETNS:-}" ] && unshare -n true 2>/dev/null; then
	exec unshare -n env MF_T_NETNS=1 bash "$0" "$@"
fi
. "$(dirname "$0")/lib.sh"

FAR=
if [ -n "${MF_T_NETNS:-}" ]; then
	ip link set lo up && ip addr add 192.0.2.1/32 dev lo && FAR=192.0.2.1
fi
[ -n "$FAR" ] || ip link set lo up 2>/dev/null

dv_start D --users "dst" || { not_ok hostile-auth-dovecot "start failed"; exit 1; }
dst_count() {
	imap_session "$D_IMAP_PORT" <<<$'a LOGIN dst pw-dst-secret\nb STATUS INBOX (MESSAGES)' |
		sed -n 's/.*(MESSAGES \([0-9]*\)).*/\1/p'
}
DST="imap://dst@127.0.0.1:$D_IMAP_PORT?starttls=no"
printf 'pw-src-secret\n' >"$T_TMP/src.pw"
run() { # NAME CODE SRC-URL [options]: migrate from SRC into the Dovecot
	local name=$1 code=$2 src=$3; shift 3
	expect_exit "$name" "$code" mf migrate "$src" "$DST" --src-password-file "$T_TMP/src.pw" \
		--dst-password-file "$D_DIR/pw/dst" --state "$T_TMP/st-$name" --timeout 5 --no-progress "$@"
}
fake_log() { cat "$T_TMP"/fake_imap.*.out.err 2>/dev/null; }
fake_reset() { kill "$T_LAST_PID" 2>/dev/null; wait "$T_LAST_PID" 2>/dev/null; rm -f "$T_TMP"/fake_imap.*; }
# NAME PATTERN FILE...: ok if no FILE contains PATTERN (fixed string)
absent() {
	local name=$1 pat=$2; shift 2
	if grep -qF -- "$pat" "$@"; then not_ok "$name" "found in $(grep -lF -- "$pat" "$@" | tr '\n' ' ')"; else ok "$name"; fi
}

# ---- defect 2: PREAUTH --------------------------------------------------
if [ -n "$FAR" ]; then
	fake_imap preauth --host "$FAR" --max-seconds 30 || not_ok preauth-server "did not start"
	run preauth-refused 3 "imap://u@$FAR:$FAKE_PORT" # 3: refused as a TLS failure
	line=$(grep -m1 'error' "$T_TMP/last.err")
	if [[ $line == *"source u@$FAR"*PREAUTH* ]]; then ok "preauth-message (${line#mailferry: error: })"
	else not_ok preauth-message "$(head -n 2 "$T_TMP/last.err" | tr '\n' '|')"; fi
	sleep 0.3
	if fake_log | grep -E '\] C: [^ ]+ (LIST|LSUB|STATUS|SELECT|EXAMINE|FETCH|UID|NAMESPACE|ENABLE)' >/dev/null; then
		not_ok preauth-no-mailbox-touched "$(fake_log | grep -m1 -E '\] C: ')"
	else
		ok preauth-no-mailbox-touched
	fi
	n=$(dst_count)
	[ "$n" = 0 ] && ok preauth-nothing-copied || not_ok preauth-nothing-copied "destination holds $n"
	fake_reset
	# The user may accept cleartext explicitly.
	fake_imap preauth --host "$FAR" --max-seconds 30
	run preauth-allow-plaintext 0 "imap://u@$FAR:$FAKE_PORT" --allow-plaintext
	fake_reset
else
	ok "preauth-refused # SKIP no network namespace (needs root): no non-loopback address to test with"
fi
# On loopback, cleartext is allowed anyway: PREAUTH works (read only, dry run).
fake_imap preauth --max-seconds 30
run preauth-loopback 0 "imap://u@127.0.0.1:$FAKE_PORT" --dry-run
fake_reset

# ---- defect 3: STARTTLS injection --------------------------------------
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
	-subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
	-keyout "$T_TMP/fake.key" -out "$T_TMP/fake.crt" 2>/dev/null || not_ok starttls-cert "openssl failed"
TLS=(--tls-cert "$T_TMP/fake.crt" --tls-key "$T_TMP/fake.key")

# Control: the same server without injection works, over TLS, with
# AUTHENTICATE PLAIN (offered only after TLS).
fake_imap none "${TLS[@]}" --user u --password pw-src-secret --max-seconds 30
run starttls-clean 0 "imap://u@127.0.0.1:$FAKE_PORT" --ca-file "$T_TMP/fake.crt" --dry-run
sleep 0.3
fake_log | grep -q 'TLS up' && fake_log | grep -q 'C: [^ ]* AUTHENTICATE' && ok starttls-clean-auth-plain ||
	not_ok starttls-clean-auth-plain "no TLS, or not AUTHENTICATE PLAIN: $(fake_log | grep -m1 -E 'LOGIN|AUTH')"
fake_reset

inject=1
for payload in '* OK injected partial' '* CAPABILITY IMAP4rev1 LOGINDISABLED\r\n'; do
	name=starttls-inject-$inject
	inject=$((inject + 1))
	fake_imap starttls-inject --inject "$payload" "${TLS[@]}" --max-seconds 30
	run "$name" 3 "imap://u@127.0.0.1:$FAKE_PORT" --ca-file "$T_TMP/fake.crt"
	line=$(grep -m1 'error' "$T_TMP/last.err")
	if [[ $line == *"source u@127.0.0.1"*STARTTLS*unexpected* ]]; then ok "$name-message (${line#mailferry: error: })"
	else not_ok "$name-message" "$(head -n 2 "$T_TMP/last.err" | tr '\n' '|')"; fi
	sleep 0.3
	if fake_log | grep -qE 'C: [^ ]+ (LOGIN|AUTHENTICATE)'; then
		not_ok "$name-no-login" "the client logged in: $(fake_log | grep -m1 -E 'C: [^ ]+ (LOGIN|AUTH)')"
	else
		ok "$name-no-login"
	fi
	fake_reset
done

# ---- defect 8: LOGIN with synchronizing literals -------------------------
user='jürgen' pw='pässwörd-Geheim-42'
printf '%s\n' "$pw" >"$T_TMP/src8.pw"
b64=$(printf '\0%s\0%s' "$user" "$pw" | base64 -w0)
url_user=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1]))' "$user")
login_literal() { # NAME [fake_imap options]
	local name=$1; shift
	fake_imap none --no-auth-plain --capabilities "IMAP4rev1 ID ENABLE NAMESPACE UIDPLUS" \
		--user "$user" --password "$pw" --max-seconds 30 "$@"
	expect_exit "$name" 0 mf migrate "imap://$url_user@127.0.0.1:$FAKE_PORT" "$DST" \
		--src-password-file "$T_TMP/src8.pw" --dst-password-file "$D_DIR/pw/dst" \
		--state "$T_TMP/st-$name" --timeout 5 --no-progress --json --dry-run
	sleep 0.3
	fake_log | grep -q 'LOGIN via literal literal' && ok "$name-sync" ||
		not_ok "$name-sync" "$(fake_log | grep -m1 -E 'LOGIN via|!!' || echo 'no LOGIN seen')"
	absent "$name-no-password-leak" "$pw" "$T_TMP/last.out" "$T_TMP/last.err"
	absent "$name-no-sasl-leak" "$b64" "$T_TMP/last.out" "$T_TMP/last.err"
	absent "$name-no-sasl-leak-prefix" "${b64:0:16}" "$T_TMP/last.out" "$T_TMP/last.err"
}
# Strict: bytes of a synchronizing literal before "+" are refused.
login_literal login-literal-strict --strict-literals
fake_log | grep -q 'literal sent before continuation' &&
	not_ok login-literal-waits-for-continuation "literal bytes sent before the server's +" ||
	ok login-literal-waits-for-continuation
fake_reset
# Lenient, as Dovecot: early bytes are taken as the literal, and a line it
# cannot parse is answered with its first word as the tag (the line that
# carried the credentials, before the fix).
login_literal login-literal-lenient
fake_reset

# AUTHENTICATE PLAIN without SASL-IR: the response goes after "+".
fake_imap none --capabilities "IMAP4rev1 ID ENABLE NAMESPACE UIDPLUS" --user u --password pw-src-secret \
	--max-seconds 30
run auth-plain-no-sasl-ir 0 "imap://u@127.0.0.1:$FAKE_PORT" --dry-run
fake_reset
exit 0

#!/usr/bin/env bash
# The third real server: Courier-IMAP 5.0 (scripts/courier.sh), the one with
# none of the fast paths (no LITERAL+, MULTIAPPEND, CONDSTORE/QRESYNC,
# SPECIAL-USE) and every folder under the personal namespace "INBOX.".
# What passes today: the server starts, STARTTLS and IMAPS work against our
# CA, Courier advertises what the tests are written for, it checks
# passwords, INBOX migrates Dovecot -> Courier exactly (line ends folded as
# Courier rewrites them, keywords read from courierimapkeywords/:
# tests/integration/fold_maildir.py) and a re-run copies nothing, and
# mailferry fails a wrong password cleanly. Pending (pending_courier.sh):
# Courier as the source (its SELECT has no UIDNEXT, and mailferry then walks
# UIDs up to 2^32-1 in UID FETCH ranges of 1000: minutes per mailbox), and
# folders other than INBOX (NAMESPACE support, issue 22 item 2).
. "$(dirname "$0")/lib.sh"

dv_start A --users "src" || { not_ok dovecot "start failed"; exit 1; }
t0=$SECONDS
co_start C --users "dst" || { not_ok courier-start "start failed"; exit 1; }
ok "courier-start ($((SECONDS - t0)) s)"
corpus A src tiny 21 || { not_ok corpus "generation failed"; exit 1; }
# One --ca-file for both servers: the two private CAs in one bundle.
cat "$A_CA_FILE" "$C_CA_FILE" >"$T_TMP/ca.pem"

# 1. The server as the tests expect it: STARTTLS and IMAPS against our CA,
#    real password checks, Courier's capabilities and namespace.
caps() { # --starttls|--tls PORT
	imap_session "$1" --ca "$C_CA_FILE" "$2" <<<$'a LOGIN dst pw-dst-secret\nb CAPABILITY\nc NAMESPACE\nd LOGOUT'
}
for mode in starttls:$C_IMAP_PORT tls:$C_IMAPS_PORT; do
	if caps "--${mode%%:*}" "${mode#*:}" >"$T_TMP/caps.out" 2>&1 && grep -q '^a OK' "$T_TMP/caps.out"; then
		ok "courier-login-${mode%%:*}"
	else
		not_ok "courier-login-${mode%%:*}" "$(tail -n 1 "$T_TMP/caps.out")"
	fi
done
c=$(sed -n 's/^\* CAPABILITY //p' "$T_TMP/caps.out")
echo "# courier capabilities: $c"
bad=
for x in LITERAL+ MULTIAPPEND CONDSTORE QRESYNC SPECIAL-USE; do
	case " $c " in *" $x "*) bad="$bad $x" ;; esac
done
[ -n "$c" ] && [ -z "$bad" ] && ok courier-capabilities || not_ok courier-capabilities "advertises:$bad"
grep -q '^\* NAMESPACE (("INBOX\." "\."))' "$T_TMP/caps.out" && ok courier-namespace ||
	not_ok courier-namespace "$(grep '^\* NAMESPACE' "$T_TMP/caps.out")"
# Courier's quirks that the pending checks are about, pinned so that a
# change of the test bed shows: a folder outside "INBOX." is refused, and
# SELECT sends no UIDNEXT (STATUS does).
imap_session --tls --ca "$C_CA_FILE" "$C_IMAPS_PORT" >"$T_TMP/q.out" 2>&1 \
	<<<$'a LOGIN dst pw-dst-secret\nb CREATE Sent\nc CREATE INBOX.Sent\nd SELECT INBOX\ne STATUS INBOX (UIDNEXT)'
grep -q '^b NO' "$T_TMP/q.out" && grep -q '^c OK' "$T_TMP/q.out" && ok courier-inbox-prefix-only ||
	not_ok courier-inbox-prefix-only "$(grep -E '^[bc] ' "$T_TMP/q.out" | tr '\n' ' ')"
grep -q '^d OK' "$T_TMP/q.out" && ! grep -q 'UIDNEXT [0-9]*\]' "$T_TMP/q.out" &&
	grep -q '^\* STATUS .*UIDNEXT [0-9]' "$T_TMP/q.out" && ok courier-select-without-uidnext ||
	not_ok courier-select-without-uidnext "$(grep -iE 'uidnext|^d ' "$T_TMP/q.out" | tr '\n' ' ')"
imap_session --tls --ca "$C_CA_FILE" "$C_IMAPS_PORT" <<<'a LOGIN dst wrong-secret' >"$T_TMP/bad.out" 2>&1
grep -q '^a NO' "$T_TMP/bad.out" && ok courier-password-checked ||
	not_ok courier-password-checked "$(tail -n 1 "$T_TMP/bad.out")"

# 2. INBOX Dovecot -> Courier over STARTTLS: every message, exact with
#    Courier's line ends folded, flags, keywords and INTERNALDATE as they
#    were; a re-run copies nothing.
SRC="imap://src@127.0.0.1:$A_IMAP_PORT"
CO="imap://dst@127.0.0.1:$C_IMAP_PORT"
COMMON=(--ca-file "$T_TMP/ca.pem" --json --no-progress --folder INBOX)
TO_CO=(--src-password-file "$A_DIR/pw/src" --dst-password-file "$C_DIR/pw/dst" "${COMMON[@]}" --state "$T_TMP/st1")
SRC_MD=$A_MAIL_ROOT/src/Maildir CO_MD=$C_MAIL_ROOT/dst/Maildir
copied() { json_field "$T_TMP/last.out" messages_copied 2>/dev/null; }
exact() {
	local d
	d=$(mktemp -d "$T_TMP/fold.XXXXXX")
	python3 "$ROOT/tests/integration/fold_maildir.py" "$SRC_MD" "$d/src" --inbox-only &&
		python3 "$ROOT/tests/integration/fold_maildir.py" "$CO_MD" "$d/co" --inbox-only --courier &&
		"$BENCH_BIN/compare" "$d/src" "$d/co" >&2
}
n_src=$(find "$SRC_MD/cur" "$SRC_MD/new" -type f | grep -c .)
expect_exit to-courier 0 mf migrate "$SRC" "$CO" "${TO_CO[@]}"
c=$(copied)
[ "$c" = "$n_src" ] && ok "to-courier-count ($c messages)" || not_ok to-courier-count "copied ${c:-?} of $n_src"
check to-courier-exact exact
expect_exit to-courier-rerun 0 mf migrate "$SRC" "$CO" "${TO_CO[@]}"
c=$(copied)
[ "$c" = 0 ] && ok to-courier-rerun-noop || not_ok to-courier-rerun-noop "copied ${c:-?}"
check to-courier-rerun-exact exact

# 3. a wrong password fails as on Dovecot: exit 1, one line naming the
#    account, the password nowhere
echo wrong-pw-courier >"$T_TMP/bad.pw"
expect_exit courier-wrong-password 1 mf migrate "$SRC" "$CO" --src-password-file "$A_DIR/pw/src" \
	--dst-password-file "$T_TMP/bad.pw" "${COMMON[@]}" --state "$T_TMP/st3"
grep -q 'destination dst@127.0.0.1: login failed' "$T_TMP/last.err" && ok courier-wrong-password-message ||
	not_ok courier-wrong-password-message "$(head -n 1 "$T_TMP/last.err")"
grep -q 'wrong-pw-courier' "$T_TMP/last.err" "$T_TMP/last.out" &&
	not_ok courier-password-not-logged "the password appears in the output" || ok courier-password-not-logged

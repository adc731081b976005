#!/usr/bin/env bash
# Admin login (issue 16 item 2) against a private Dovecot with a master
# user: --src-authuser/--dst-authuser send SASL PLAIN with the URL's user as
# the authorization identity and the admin as the authentication identity;
# Dovecot's "user*master" form keeps working; a wrong admin password is an
# authentication failure (exit 4) that names the account.
. "$(dirname "$0")/lib.sh"

dv_start A --users "src dst dst2" --master-user admin || { not_ok dovecot "start failed"; exit 1; }
corpus A src tiny 11 || { not_ok corpus "generation failed"; exit 1; }
PW=$A_DIR/pw
H=127.0.0.1:$A_IMAP_PORT
MAILDIR() { echo "$A_DIR/mail/$1/Maildir"; }

# both sides as the admin: no user password is given at all
expect_exit authuser-migrate 0 mf migrate "imap://src@$H" "imap://dst@$H" --ca-file "$A_CA_FILE" \
	--src-authuser admin --src-password-file "$PW/admin" \
	--dst-authuser admin --dst-password-file "$PW/admin" --state "$T_TMP/st1" --json --no-progress
check authuser-exact "$BENCH_BIN/compare" "$(MAILDIR src)" "$(MAILDIR dst)"
c=$(json_field "$T_TMP/last.out" messages_copied)
[ "$c" -gt 100 ] && ok "authuser-copied ($c)" || not_ok authuser-copied "copied $c"
# the state is the accounts', not the admin's: a re-run as the users copies 0
expect_exit authuser-rerun-as-users 0 mf migrate "imap://src@$H" "imap://dst@$H" --ca-file "$A_CA_FILE" \
	--src-password-file "$PW/src" --dst-password-file "$PW/dst" --state "$T_TMP/st1" --json --no-progress
[ "$(json_field "$T_TMP/last.out" messages_copied)" = 0 ] && ok authuser-rerun-copies-0 ||
	not_ok authuser-rerun-copies-0 "copied $(json_field "$T_TMP/last.out" messages_copied)"

# Dovecot's master-user form in the URL (LOGIN or PLAIN authcid "dst2*admin")
expect_exit master-star-form 0 mf migrate "imap://src@$H" "imap://dst2%2Aadmin@$H" --ca-file "$A_CA_FILE" \
	--src-password-file "$PW/src" --dst-password-file "$PW/admin" --state "$T_TMP/st2" --no-progress
check master-star-exact "$BENCH_BIN/compare" "$(MAILDIR src)" "$(MAILDIR dst2)"

# a wrong admin password: authentication class, the account named, no password shown
printf 'not-the-admin-password' >"$T_TMP/bad.pw"
expect_exit authuser-wrong-password 4 mf migrate "imap://src@$H" "imap://dst@$H" --ca-file "$A_CA_FILE" \
	--src-authuser admin --src-password-file "$T_TMP/bad.pw" --dst-password-file "$PW/dst" \
	--state "$T_TMP/st3" --no-progress
grep -q 'source src@127.0.0.1: login failed' "$T_TMP/last.err" && ok authuser-wrong-password-message ||
	not_ok authuser-wrong-password-message "$(head -n 1 "$T_TMP/last.err")"
grep -q 'not-the-admin-password' "$T_TMP/last.err" && not_ok authuser-password-not-shown "shown" ||
	ok authuser-password-not-shown
# the admin may not act as a user that does not exist
expect_exit authuser-unknown-user 4 mf migrate "imap://nobody@$H" "imap://dst@$H" --ca-file "$A_CA_FILE" \
	--src-authuser admin --src-password-file "$PW/admin" --dst-password-file "$PW/dst" \
	--state "$T_TMP/st4" --no-progress

#!/usr/bin/env bash
# Issue 2 end to end against a private Dovecot: a messy corpus migrated
# exactly (bytes, flags, keywords, INTERNALDATE) over STARTTLS and IMAPS, a
# re-run that copies nothing, separator translation, a 30 MB message in
# bounded memory, and the failures a user meets: wrong password, no server,
# an untrusted certificate, a destination over quota, bad usage.
. "$(dirname "$0")/lib.sh"

dv_start A --users "src dst dst2 big bigdst q" --quota-user q:700000 || { not_ok dovecot "start failed"; exit 1; }
dv_start B --users "dst" --separator / || { not_ok dovecot-b "start failed"; exit 1; }
corpus A src tiny 7 || { not_ok corpus "generation failed"; exit 1; }
PW=$A_DIR/pw
SRC="imap://src@127.0.0.1:$A_IMAP_PORT"
COMMON=(--src-password-file "$PW/src" --ca-file "$A_CA_FILE" --json --no-progress)
MAILDIR() { echo "$1/mail/$2/Maildir"; }

# 1. first migration over STARTTLS, certificate checked against the test CA
out=$T_TMP/first.json
expect_exit migrate-starttls 0 mf migrate "$SRC" "imap://dst@127.0.0.1:$A_IMAP_PORT" \
	"${COMMON[@]}" --dst-password-file "$PW/dst" --state "$T_TMP/st1"
cp "$T_TMP/last.out" "$out"
check migrate-exact "$BENCH_BIN/compare" "$(MAILDIR "$A_DIR" src)" "$(MAILDIR "$A_DIR" dst)"
n=$(json_field "$out" messages_copied)
[ "$n" -gt 100 ] && ok "migrate-count ($n messages)" || not_ok migrate-count "copied $n"
grep -q '"event":"mailbox"' "$out" && ok json-events || not_ok json-events "no mailbox events"

# 2. the re-run copies nothing and opens one pair of sessions (source and
# destination start in parallel; the destination only logs in and out)
expect_exit rerun 0 mf migrate "$SRC" "imap://dst@127.0.0.1:$A_IMAP_PORT" \
	"${COMMON[@]}" --dst-password-file "$PW/dst" --state "$T_TMP/st1"
c=$(json_field "$T_TMP/last.out" messages_copied); k=$(json_field "$T_TMP/last.out" connections)
[ "$c" = 0 ] && [ "$k" = 2 ] && ok "rerun-noop (0 copied, $k connections)" || not_ok rerun-noop "copied $c with $k connections"
check rerun-still-exact "$BENCH_BIN/compare" "$(MAILDIR "$A_DIR" src)" "$(MAILDIR "$A_DIR" dst)"

# 3. implicit TLS on both ends
expect_exit migrate-imaps 0 mf migrate "imaps://src@127.0.0.1:$A_IMAPS_PORT" \
	"imaps://dst2@127.0.0.1:$A_IMAPS_PORT" "${COMMON[@]}" --dst-password-file "$PW/dst2" \
	--state "$T_TMP/st2"
check imaps-exact "$BENCH_BIN/compare" "$(MAILDIR "$A_DIR" src)" "$(MAILDIR "$A_DIR" dst2)"

# 4. '.' to '/' separators, across two servers (B: plain IMAP on loopback)
expect_exit migrate-separator 0 mf migrate "$SRC" "imap://dst@127.0.0.1:$B_IMAP_PORT?starttls=no" \
	--src-password-file "$PW/src" --dst-password-file "$B_DIR/pw/dst" --ca-file "$A_CA_FILE" \
	--json --state "$T_TMP/st3"
check separator-exact "$BENCH_BIN/compare" --dst-sep / "$(MAILDIR "$A_DIR" src)" "$(MAILDIR "$B_DIR" dst)"

# 5. a 30 MB message in bounded memory (release build: ASan inflates RSS)
"$BENCH_BIN/corpus" --out "$(MAILDIR "$A_DIR" big)" --big-mb 30 >/dev/null && scripts/dovecot.sh fixperms "$A_DIR"
expect_exit big-message 0 "$MF_REL" migrate "imap://big@127.0.0.1:$A_IMAP_PORT?starttls=no" \
	"imap://bigdst@127.0.0.1:$A_IMAP_PORT?starttls=no" --src-password-file "$PW/big" \
	--dst-password-file "$PW/bigdst" --json --state "$T_TMP/st4"
rss=$(json_field "$T_TMP/last.out" peak_rss_kb)
[ "$rss" -lt 16384 ] && ok "big-message-rss (${rss} KiB peak for a 30 MB message)" ||
	not_ok big-message-rss "peak RSS ${rss} KiB"
check big-message-exact "$BENCH_BIN/compare" "$(MAILDIR "$A_DIR" big)" "$(MAILDIR "$A_DIR" bigdst)"

# 6. wrong password: exit 4 (authentication), one line naming the account
echo wrong >"$T_TMP/bad.pw"
expect_exit wrong-password 4 mf migrate "$SRC" "imap://dst@127.0.0.1:$A_IMAP_PORT" \
	--src-password-file "$T_TMP/bad.pw" --dst-password-file "$PW/dst" --ca-file "$A_CA_FILE" \
	--state "$T_TMP/st5"
grep -q 'source src@127.0.0.1: login failed: .*AUTHENTICATIONFAILED' "$T_TMP/last.err" &&
	ok wrong-password-message || not_ok wrong-password-message "$(head -n 1 "$T_TMP/last.err")"
grep -q 'wrong' "$T_TMP/last.err" && not_ok password-not-logged "the password appears in the output" || ok password-not-logged

# 7. nothing listening: exit 3 (cannot connect); the JSON error names the account
expect_exit unreachable 3 mf migrate "imap://src@127.0.0.1:1" "imap://dst@127.0.0.1:$A_IMAP_PORT" \
	--src-password-file "$PW/src" --dst-password-file "$PW/dst" --state "$T_TMP/st5" --json
grep -q '"event":"error","account":"source src@127.0.0.1"' "$T_TMP/last.out" &&
	[ "$(json_field "$T_TMP/last.out" class)" = connect ] && ok unreachable-json-account-class ||
	not_ok unreachable-json-account-class "$(grep -m1 '"error"' "$T_TMP/last.out") / $(tail -n 1 "$T_TMP/last.out")"
grep -q 'connect to 127.0.0.1:1: Connection refused' "$T_TMP/last.err" && ok unreachable-message ||
	not_ok unreachable-message "$(head -n 1 "$T_TMP/last.err")"

# 8. the test CA is not trusted without --ca-file: refused before any password (exit 3)
expect_exit untrusted-cert 3 mf migrate "$SRC" "imap://dst@127.0.0.1:$A_IMAP_PORT" \
	--src-password-file "$PW/src" --dst-password-file "$PW/dst" --state "$T_TMP/st5"
grep -q 'certificate verify failed' "$T_TMP/last.err" && ok untrusted-cert-message ||
	not_ok untrusted-cert-message "$(head -n 1 "$T_TMP/last.err")"

# 9. the destination refuses messages (quota): named by mailbox and UID, the
#    rest copied, nothing copied twice on a re-run; exit 5 (over quota)
expect_exit over-quota 5 mf migrate "$SRC" "imap://q@127.0.0.1:$A_IMAP_PORT" \
	"${COMMON[@]}" --dst-password-file "$PW/q" --state "$T_TMP/st6"
cp "$T_TMP/last.out" "$T_TMP/quota1.json"
grep -qE 'destination q@127.0.0.1 mailbox "[^"]+" uid [0-9]+: destination refused the message .*OVERQUOTA' \
	"$T_TMP/last.err" && ok over-quota-message || not_ok over-quota-message "$(grep error "$T_TMP/last.err" | head -n 1)"
[ "$(json_field "$T_TMP/quota1.json" class)" = quota ] && ok over-quota-class ||
	not_ok over-quota-class "$(tail -n 1 "$T_TMP/quota1.json")"
c1=$(json_field "$T_TMP/quota1.json" messages_copied)
[ "$c1" -gt 0 ] && ok "over-quota-partial ($c1 copied)" || not_ok over-quota-partial "nothing copied"
expect_exit over-quota-rerun 5 mf migrate "$SRC" "imap://q@127.0.0.1:$A_IMAP_PORT" \
	"${COMMON[@]}" --dst-password-file "$PW/q" --state "$T_TMP/st6"
c2=$(json_field "$T_TMP/last.out" messages_copied)
[ "$c2" = 0 ] && ok over-quota-no-duplicates || not_ok over-quota-no-duplicates "re-run copied $c2"

# 10. usage errors exit 2
expect_exit usage-bad-url 2 mf migrate "$SRC" "pop5://x" --src-password-file "$PW/src"
expect_exit usage-no-password 2 env -u MAILFERRY_SRC_PASSWORD "$MF" migrate "$SRC" \
	"imap://dst@127.0.0.1:$A_IMAP_PORT" --dst-password-file "$PW/dst"
expect_exit usage-unknown-option 2 mf migrate --frobnicate
expect_exit usage-missing-ca-file 2 mf migrate "$SRC" "imap://dst@127.0.0.1:$A_IMAP_PORT" \
	--src-password-file "$PW/src" --dst-password-file "$PW/dst" --ca-file "$T_TMP/no-such-ca.pem"
grep -q -- "--ca-file $T_TMP/no-such-ca.pem: No such file or directory" "$T_TMP/last.err" &&
	ok usage-missing-ca-file-message || not_ok usage-missing-ca-file-message "$(tail -n 1 "$T_TMP/last.err")"

# 11. --check: both logins at once; a failing side does not hide the other
expect_exit check-ok 0 mf migrate "$SRC" "imap://dst@127.0.0.1:$A_IMAP_PORT" \
	--src-password-file "$PW/src" --dst-password-file "$PW/dst" --ca-file "$A_CA_FILE" --check
[ "$(grep -c 'check: .*: ok: logged in' "$T_TMP/last.err")" = 2 ] && grep -q 'a run can start' "$T_TMP/last.err" &&
	ok check-ok-both-sides || not_ok check-ok-both-sides "$(tr '\n' '|' <"$T_TMP/last.err")"
expect_exit check-bad-source 4 mf migrate "$SRC" "imap://dst@127.0.0.1:$A_IMAP_PORT" \
	--src-password-file "$T_TMP/bad.pw" --dst-password-file "$PW/dst" --ca-file "$A_CA_FILE" --check
grep -q 'check: source src@127.0.0.1: FAILED: .*login failed' "$T_TMP/last.err" &&
	grep -q 'check: destination dst@127.0.0.1: ok: logged in' "$T_TMP/last.err" && ok check-names-both ||
	not_ok check-names-both "$(tr '\n' '|' <"$T_TMP/last.err")"
expect_exit check-unreachable-and-bad 4 mf migrate "imap://src@127.0.0.1:1" "imap://dst@127.0.0.1:$A_IMAP_PORT" \
	--src-password-file "$PW/src" --dst-password-file "$T_TMP/bad.pw" --ca-file "$A_CA_FILE" --check
grep -q 'source src@127.0.0.1: FAILED: .*Connection refused' "$T_TMP/last.err" &&
	grep -q 'destination dst@127.0.0.1: FAILED: .*login failed' "$T_TMP/last.err" && ok check-both-failures ||
	not_ok check-both-failures "$(tr '\n' '|' <"$T_TMP/last.err")"

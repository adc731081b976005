#!/usr/bin/env bash
# The second real server: a generated corpus migrated Dovecot -> Cyrus IMAP
# 3.6 (scripts/cyrus.sh) over STARTTLS and back Cyrus -> Dovecot over
# IMAPS, then the round trip compared Maildir to Maildir (bench/compare
# reads files, and Cyrus's spool is not a Maildir): exact means both
# directions were exact. Re-runs copy nothing, flag changes and expunges
# travel to Cyrus, a wrong password fails as on Dovecot. Behaviour that
# Cyrus is expected to share with Dovecot; Cyrus's own defects in mailferry
# are in pending_cyrus_defects.sh.
. "$(dirname "$0")/lib.sh"

dv_start A --users "src back" || { not_ok dovecot "start failed"; exit 1; }
t0=$SECONDS
cy_start C --users "dst" || { not_ok cyrus-start "start failed"; exit 1; }
ok "cyrus-start ($((SECONDS - t0)) s)"
corpus A src tiny 11 || { not_ok corpus "generation failed"; exit 1; }
# One --ca-file for both servers: the two private CAs in one bundle.
cat "$A_CA_FILE" "$C_CA_FILE" >"$T_TMP/ca.pem"
SRC="imap://src@127.0.0.1:$A_IMAP_PORT"
CY="imap://dst@127.0.0.1:$C_IMAP_PORT"
CYS="imaps://dst@127.0.0.1:$C_IMAPS_PORT"
BACK="imaps://back@127.0.0.1:$A_IMAPS_PORT"
COMMON=(--ca-file "$T_TMP/ca.pem" --json --no-progress)
TO_CY=(--src-password-file "$A_DIR/pw/src" --dst-password-file "$C_DIR/pw/dst" "${COMMON[@]}" --state "$T_TMP/st1")
FROM_CY=(--src-password-file "$C_DIR/pw/dst" --dst-password-file "$A_DIR/pw/back" "${COMMON[@]}" --state "$T_TMP/st2")
MAILDIR() { echo "$A_MAIL_ROOT/$1/Maildir"; }
copied() { json_field "$T_TMP/last.out" messages_copied; }
# Source Maildir against the one filled back from Cyrus. Cyrus has no
# mailbox that exists only as a parent: creating Lists/dev makes a real,
# empty Lists (Dovecot's Maildir++ has .Lists.dev without .Lists), and the
# trip back copies it. That empty folder, and nothing else, may be extra.
round_trip() {
	local out
	out=$("$BENCH_BIN/compare" "$(MAILDIR src)" "$(MAILDIR back)") && return 0
	printf '%s\n' "$out" | grep -qv -e '^folder Lists exists only on destination (0 messages)$' \
		-e '^compare: .*: 1 differences (folder_extra 1)$' || return 0
	printf '%s\n' "$out" >&2
	return 1
}

# 1. Dovecot -> Cyrus over STARTTLS, every message
n_src=$(find "$(MAILDIR src)" \( -path '*/cur/*' -o -path '*/new/*' \) -type f | grep -c .)
expect_exit to-cyrus 0 mf migrate "$SRC" "$CY" "${TO_CY[@]}"
c=$(copied)
[ "$c" = "$n_src" ] && ok "to-cyrus-count ($c messages)" || not_ok to-cyrus-count "copied $c of $n_src"

# 2. Cyrus -> Dovecot over IMAPS (Cyrus as the source: its QRESYNC,
#    LIST-STATUS, literals), then the round trip must be exact
expect_exit from-cyrus 0 mf migrate "$CYS" "$BACK" "${FROM_CY[@]}"
c=$(copied)
[ "$c" = "$n_src" ] && ok "from-cyrus-count ($c messages)" || not_ok from-cyrus-count "copied $c of $n_src"
check round-trip-exact round_trip

# 3. re-runs copy nothing, in both directions, with one pair of sessions
# (the destination's opens with the source's and only logs in and out)
expect_exit to-cyrus-rerun 0 mf migrate "$SRC" "$CY" "${TO_CY[@]}"
c=$(copied); k=$(json_field "$T_TMP/last.out" connections)
[ "$c" = 0 ] && [ "$k" = 2 ] && ok "to-cyrus-rerun-noop ($k connections)" || not_ok to-cyrus-rerun-noop "copied $c with $k connections"
expect_exit from-cyrus-rerun 0 mf migrate "$CYS" "$BACK" "${FROM_CY[@]}"
c=$(copied); k=$(json_field "$T_TMP/last.out" connections)
[ "$c" = 0 ] && [ "$k" = 2 ] && ok "from-cyrus-rerun-noop ($k connections)" || not_ok from-cyrus-rerun-noop "copied $c with $k connections"

# 4. incremental: new mail, flag changes and an expunge on the source
#    travel Dovecot -> Cyrus (--sync-flags --delete) and back; the round
#    trip is still exact
"$BENCH_BIN/corpus" --out "$T_TMP/more" --profile tiny --seed 12 >/dev/null
for f in $(find "$T_TMP/more/cur" -type f | sort | head -n 5); do
	cp -p "$f" "$(MAILDIR src)/cur/new-$(basename "$f")"
done
scripts/dovecot.sh fixperms "$A_DIR"
python3 - "$A_IMAP_PORT" "$A_DIR/pw/src" <<'PY' || not_ok mutate "could not change the source"
import imaplib, sys
m = imaplib.IMAP4("127.0.0.1", int(sys.argv[1]))
m.login("src", open(sys.argv[2]).read())
m.select("INBOX")
typ, data = m.uid("SEARCH", None, "ALL")
uids = data[0].split()
m.uid("STORE", b",".join(uids[:3]), "+FLAGS", r"(\Flagged $Cyrus1)")
m.uid("STORE", uids[3], "-FLAGS", r"(\Seen)")
m.uid("STORE", uids[4], "+FLAGS", r"(\Deleted)")
m.expunge()
m.logout()
PY
expect_exit to-cyrus-incremental 0 mf migrate "$SRC" "$CY" "${TO_CY[@]}" --sync-flags --delete
c=$(copied); fl=$(json_field "$T_TMP/last.out" flags_synced); ex=$(json_field "$T_TMP/last.out" expunged)
[ "$c" = 5 ] && [ "$fl" = 4 ] && [ "$ex" = 1 ] && ok "to-cyrus-incremental-counts" ||
	not_ok to-cyrus-incremental-counts "copied $c (5), flags $fl (4), expunged $ex (1)"
expect_exit from-cyrus-incremental 0 mf migrate "$CYS" "$BACK" "${FROM_CY[@]}" --sync-flags --delete
check incremental-round-trip-exact round_trip

# 5. a wrong password fails the same way as on Dovecot: exit 1, one line
#    naming the account, the password nowhere
echo wrong-pw-cyrus >"$T_TMP/bad.pw"
expect_exit cyrus-wrong-password 4 mf migrate "$SRC" "$CY" --src-password-file "$A_DIR/pw/src" \
	--dst-password-file "$T_TMP/bad.pw" "${COMMON[@]}" --state "$T_TMP/st3"
grep -q 'destination dst@127.0.0.1: login failed' "$T_TMP/last.err" && ok cyrus-wrong-password-message ||
	not_ok cyrus-wrong-password-message "$(head -n 1 "$T_TMP/last.err")"
grep -q 'wrong-pw-cyrus' "$T_TMP/last.err" "$T_TMP/last.out" &&
	not_ok cyrus-password-not-logged "the password appears in the output" || ok cyrus-password-not-logged

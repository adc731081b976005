#!/usr/bin/env bash
# restore of an encrypted archive (issue 19 items 2 and 3) against a private
# Dovecot: `backup --encrypt` of a messy corpus, restored into a second
# account with the passphrase (from the option, then from the
# environment) and compared file by file with the source (bytes, flags,
# keywords, dates, folders); no passphrase and a wrong one: exit 2, one
# line, nothing restored; a flipped byte in a pack: the damaged message
# named as tampered (mailbox and UID), the others restored, exit 1.
. "$(dirname "$0")/lib.sh"

dv_start A --users "src r1 r2 r3 r4" || { not_ok dovecot "start failed"; exit 1; }
corpus A src tiny 7 || { not_ok corpus "generation failed"; exit 1; }
PW=$A_DIR/pw
SRC="imap://src@127.0.0.1:$A_IMAP_PORT"
MD=$A_DIR/mail
AR=$T_TMP/archive
PF=$T_TMP/passphrase
printf 'restore me, said the archive\n' >"$PF"
printf 'not it\n' >"$T_TMP/wrong"
chmod 600 "$PF" "$T_TMP/wrong"
BK=(--src-password-file "$PW/src" --ca-file "$A_CA_FILE" --json --no-progress --state "$T_TMP/bst")
rs() { # USER: restore options for that account
	echo --dst-password-file "$PW/$1" --ca-file "$A_CA_FILE" --json --no-progress --state "$T_TMP/rst-$1"
}
dst() { echo "imap://$1@127.0.0.1:$A_IMAP_PORT"; }
count() { find "$1" -path '*/cur/*' -o -path '*/new/*' 2>/dev/null | grep -c .; }
total=$(count "$MD/src/Maildir")

expect_exit crypt-restore-backup 0 mf backup "$SRC" "$AR" "${BK[@]}" --encrypt --passphrase-file "$PF"

# 1. no passphrase, a wrong one: exit 2, one line, nothing restored
for kind in none wrong; do
	args=()
	want="is encrypted: give its passphrase"
	[ $kind = wrong ] && args=(--passphrase-file "$T_TMP/wrong") && want="wrong passphrase"
	# shellcheck disable=SC2046
	env -u MAILFERRY_ARCHIVE_PASSPHRASE_FILE "$MF" restore "$AR" "$(dst r1)" $(rs r1) "${args[@]}" \
		>"$T_TMP/p.out" 2>"$T_TMP/p.err"
	rc=$?
	lines=$(grep -c . "$T_TMP/p.err")
	if [ $rc = 2 ] && [ "$lines" = 1 ] && grep -q "$want" "$T_TMP/p.err" && [ "$(count "$MD/r1/Maildir")" = 0 ]; then
		ok "crypt-restore-$kind-passphrase-exit-2"
	else
		not_ok "crypt-restore-$kind-passphrase-exit-2" "exit $rc, $lines lines: $(head -n 2 "$T_TMP/p.err" | tr '\n' '|')"
	fi
done

# 2. with the passphrase: exactly the source; a re-run copies nothing
# shellcheck disable=SC2046
expect_exit crypt-restore 0 mf restore "$AR" "$(dst r1)" $(rs r1) --passphrase-file "$PF"
n=$(json_field "$T_TMP/last.out" messages_copied)
[ "$n" = "$total" ] && ok "crypt-restore-count ($n of $total)" || not_ok crypt-restore-count "copied $n of $total"
check crypt-restore-exact "$BENCH_BIN/compare" "$MD/src/Maildir" "$MD/r1/Maildir"
# shellcheck disable=SC2046
expect_exit crypt-restore-rerun 0 env MAILFERRY_ARCHIVE_PASSPHRASE_FILE="$PF" "$MF" restore "$AR" "$(dst r1)" $(rs r1)
c=$(json_field "$T_TMP/last.out" messages_copied)
[ "$c" = 0 ] && ok crypt-restore-rerun-copies-0 || not_ok crypt-restore-rerun-copies-0 "copied $c"

# 3. the passphrase from the environment into another account
# shellcheck disable=SC2046
expect_exit crypt-restore-env 0 env MAILFERRY_ARCHIVE_PASSPHRASE_FILE="$PF" "$MF" restore "$AR" "$(dst r2)" $(rs r2)
check crypt-restore-env-exact "$BENCH_BIN/compare" "$MD/src/Maildir" "$MD/r2/Maildir"

# 4. a flipped byte in the middle of a pack: tampering named (mailbox,
#    UID), the same messages verify names, the others restored, exit 1
CA=$T_TMP/carchive
cp -a "$AR" "$CA"
pack=$(ls "$CA"/packs/pack-*.mfp | head -n 1)
python3 -c "
import os, sys
p = sys.argv[1]; o = os.path.getsize(p) // 2
f = open(p, 'r+b'); f.seek(o); b = f.read(1); f.seek(o); f.write(bytes([b[0] ^ 0x40]))
" "$pack"
mf verify "$CA" --passphrase-file "$PF" 2>/dev/null | sed -n 's/^problem run=1 .* uid=\([0-9]*\) .*/\1/p' |
	sort -n >"$T_TMP/vbad"
# shellcheck disable=SC2046
expect_exit crypt-restore-tampered 1 mf restore "$CA" "$(dst r3)" $(rs r3) --passphrase-file "$PF"
sed -n 's/.* uid \([0-9]*\): archived message damaged.*/\1/p' "$T_TMP/last.err" | sort -n >"$T_TMP/rbad"
nbad=$(grep -c . "$T_TMP/rbad")
copied=$(json_field "$T_TMP/last.out" messages_copied)
[ "$nbad" -gt 0 ] && cmp -s "$T_TMP/rbad" "$T_TMP/vbad" &&
	grep -q 'mailbox ".*" uid [0-9]*: archived message damaged.*tampered' "$T_TMP/last.err" &&
	ok "crypt-restore-tamper-named ($nbad, as verify)" ||
	not_ok crypt-restore-tamper-named "restore named $nbad, verify $(grep -c . "$T_TMP/vbad"): $(grep -m1 damaged "$T_TMP/last.err")"
got=$(count "$MD/r3/Maildir")
[ "$copied" = $((total - nbad)) ] && [ "$got" = "$copied" ] &&
	ok "crypt-restore-tamper-others-restored ($copied of $total)" ||
	not_ok crypt-restore-tamper-others-restored "copied $copied, $got on the server, $total - $nbad wanted"

#!/usr/bin/env bash
# mailferry verify SRC ARCHIVE (issue 19 item 5) against a private Dovecot:
# a backup, then verify is clean (exit 0, cheap and --full); a new
# message, an expunge and a flag change on the source: verify names each
# by mailbox and UID (exit 1), --full the same; a backup with --sync-flags
# --delete makes it clean again; an encrypted archive the same way; a
# wrong password: exit 4; --folder/--exclude (and -regex) select what is
# compared as they select what backup takes; a POP3 source (UIDLs mapped
# through backup's state), cheap and --full; a folder name with '"' and
# one with control characters (a scripted server's literal) escaped in
# the difference lines, which still parse as four keys.
. "$(dirname "$0")/lib.sh"

dv_start A --users "src qsrc" || { not_ok dovecot "start failed"; exit 1; }
corpus A src tiny 3 || { not_ok corpus "generation failed"; exit 1; }
PW=$A_DIR/pw
SRC="imap://src@127.0.0.1:$A_IMAP_PORT"
AR=$T_TMP/archive
SO=(--src-password-file "$PW/src" --ca-file "$A_CA_FILE" --no-progress)
BK=("${SO[@]}" --json --state "$T_TMP/bst")

expect_exit vsrc-backup 0 mf backup "$SRC" "$AR" "${BK[@]}"
expect_exit vsrc-clean 0 mf verify "$SRC" "$AR" "${SO[@]}"
[ ! -s "$T_TMP/last.out" ] && grep -q ' 0 differences' "$T_TMP/last.err" && ok vsrc-clean-says-nothing ||
	not_ok vsrc-clean-says-nothing "$(head -n 2 "$T_TMP/last.out" | tr '\n' '|') $(tail -n 1 "$T_TMP/last.err")"
expect_exit vsrc-clean-full 0 mf verify "$SRC" "$AR" "${SO[@]}" --full
n=$(find "$A_DIR/mail/src/Maildir" -path '*/cur/*' -o -path '*/new/*' | grep -c .)
grep -q " $n messages compared by UID, size and flags and content hash; 0 differences" "$T_TMP/last.err" &&
	ok "vsrc-full-compares-all ($n)" || not_ok vsrc-full-compares-all "$(tail -n 1 "$T_TMP/last.err")"

# three changes on the source
msg=$T_TMP/new.eml
printf 'From: a@example.org\r\nTo: b@example.org\r\nSubject: verify %s\r\nMessage-ID: <vs-%s@example.org>\r\n\r\nnew\r\n' \
	"$RANDOM" "$$" >"$msg"
doveadm -c "$A_DOVECOT_CONF" save -u src -m INBOX <"$msg" || not_ok save-new "doveadm save failed"
newuid=$(doveadm -c "$A_DOVECOT_CONF" -f tab fetch -u src uid mailbox INBOX all | tail -n 1)
doveadm -c "$A_DOVECOT_CONF" flags add -u src '\Flagged $Verify' mailbox INBOX uid 1 ||
	not_ok flag-change "doveadm flags failed"
doveadm -c "$A_DOVECOT_CONF" expunge -u src mailbox Sent uid 2 || not_ok expunge "doveadm expunge failed"

for mode in cheap full; do
	extra=()
	[ $mode = full ] && extra=(--full)
	expect_exit "vsrc-changed-$mode" 1 mf verify "$SRC" "$AR" "${SO[@]}" "${extra[@]}"
	o=$T_TMP/last.out
	grep -q "^differs account=\"src@127.0.0.1\" mailbox=\"INBOX\" uid=$newuid what=\"in the source, not in the archive\"" "$o" &&
		ok "vsrc-$mode-names-new (INBOX $newuid)" || not_ok "vsrc-$mode-names-new" "$(tr '\n' '|' <"$o")"
	grep -q '^differs .* mailbox="INBOX" uid=1 what="flags differ: source .*\\Flagged .*\$verify' "$o" &&
		ok "vsrc-$mode-names-flags (INBOX 1)" || not_ok "vsrc-$mode-names-flags" "$(tr '\n' '|' <"$o")"
	grep -q '^differs .* mailbox="Sent" uid=2 what="in the archive.s run, no longer in the source"' "$o" &&
		ok "vsrc-$mode-names-expunge (Sent 2)" || not_ok "vsrc-$mode-names-expunge" "$(tr '\n' '|' <"$o")"
	[ "$(grep -c '^differs ' "$o")" = 3 ] && ok "vsrc-$mode-three-lines" ||
		not_ok "vsrc-$mode-three-lines" "$(grep -c '^differs ' "$o") lines: $(tr '\n' '|' <"$o")"
done

# a backup carrying flags and expunges: clean again
expect_exit vsrc-backup-2 0 mf backup "$SRC" "$AR" "${BK[@]}" --sync-flags --delete
expect_exit vsrc-clean-again 0 mf verify "$SRC" "$AR" "${SO[@]}" --full
# the older run still differs
expect_exit vsrc-run-1-differs 1 mf verify "$SRC" "$AR" "${SO[@]}" --run 1

# encrypted: needs the passphrase, then the same
PF=$T_TMP/pass
printf 'verify pass\n' >"$PF"
chmod 600 "$PF"
EA=$T_TMP/earchive
expect_exit vsrc-enc-backup 0 mf backup "$SRC" "$EA" "${SO[@]}" --state "$T_TMP/est" --encrypt --passphrase-file "$PF"
expect_exit vsrc-enc-no-passphrase 2 mf verify "$SRC" "$EA" "${SO[@]}"
expect_exit vsrc-enc-clean 0 mf verify "$SRC" "$EA" "${SO[@]}" --full --passphrase-file "$PF"
doveadm -c "$A_DOVECOT_CONF" flags remove -u src '\Flagged' mailbox INBOX uid 1 || not_ok flag-change-2 "doveadm failed"
expect_exit vsrc-enc-flag 1 mf verify "$SRC" "$EA" "${SO[@]}" --passphrase-file "$PF"
grep -q '^differs .* mailbox="INBOX" uid=1 what="flags differ' "$T_TMP/last.out" && ok vsrc-enc-names-flags ||
	not_ok vsrc-enc-names-flags "$(tr '\n' '|' <"$T_TMP/last.out")"

# a wrong password: exit 4; an archive without this account: exit 2
printf 'wrong\n' >"$T_TMP/badpw"
expect_exit vsrc-bad-login 4 mf verify "$SRC" "$AR" --src-password-file "$T_TMP/badpw" --ca-file "$A_CA_FILE"
mkdir -p "$T_TMP/empty"
expect_exit vsrc-no-run 2 mf verify "$SRC" "$T_TMP/nothere" "${SO[@]}"

# folder options: a backup of some folders verifies clean with the same
# options (the others left out, not reported missing on either side);
# without them the folders it left out are named
FA=$T_TMP/farchive
FO=(--folder 'Lists/*' --folder 'Entwürfe')
expect_exit vsrc-folder-backup 0 mf backup "$SRC" "$FA" "${SO[@]}" --state "$T_TMP/fst" "${FO[@]}"
expect_exit vsrc-folder-clean 0 mf verify "$SRC" "$FA" "${SO[@]}" "${FO[@]}" --full
nf=$(find "$A_DIR/mail/src/Maildir/.Lists.dev" "$A_DIR/mail/src/Maildir/.Entw&APw-rfe" -path '*/cur/*' -o -path '*/new/*' | grep -c .)
grep -q " 2 mailboxes, $nf messages compared by UID, size and flags and content hash; 0 differences; 2 mailboxes left out" "$T_TMP/last.err" &&
	ok "vsrc-folder-compares-those ($nf messages)" || not_ok vsrc-folder-compares-those "$(tail -n 1 "$T_TMP/last.err")"
expect_exit vsrc-folder-regex-clean 0 mf verify "$SRC" "$FA" "${SO[@]}" --folder-regex '^(Lists/.*|Entwürfe)$'
expect_exit vsrc-folder-unfiltered 1 mf verify "$SRC" "$FA" "${SO[@]}"
grep -q '^differs .* mailbox="INBOX" uid=0 what="mailbox in the source, not in the archive.s run"' "$T_TMP/last.out" &&
	ok vsrc-folder-unfiltered-names-inbox || not_ok vsrc-folder-unfiltered-names-inbox "$(head -n 3 "$T_TMP/last.out" | tr '\n' '|')"
# the full archive, after a change in INBOX only: clean with INBOX excluded
doveadm -c "$A_DOVECOT_CONF" flags add -u src '\Answered' mailbox INBOX uid 1 || not_ok flag-change-3 "doveadm failed"
expect_exit vsrc-exclude-changed 1 mf verify "$SRC" "$AR" "${SO[@]}"
expect_exit vsrc-exclude-clean 0 mf verify "$SRC" "$AR" "${SO[@]}" --exclude INBOX
expect_exit vsrc-exclude-regex-clean 0 mf verify "$SRC" "$AR" "${SO[@]}" --exclude-regex '^INBOX$'

# a POP3 source: the maildrop (INBOX) backed up as "pop3:src@host", its
# UIDLs mapped to the archive's UIDs through backup's state
PSRC="pop3://src@127.0.0.1:$A_POP3_PORT"
PA=$T_TMP/parchive
PS=("${SO[@]}" --state "$T_TMP/pst")
ninbox=$(find "$A_DIR/mail/src/Maildir/cur" "$A_DIR/mail/src/Maildir/new" -type f | grep -c .)
expect_exit vsrc-pop3-backup 0 mf backup "$PSRC" "$PA" "${PS[@]}"
expect_exit vsrc-pop3-clean 0 mf verify "$PSRC" "$PA" "${PS[@]}"
grep -q "^verify: pop3:src@127.0.0.1 against run 1: 1 mailboxes, $ninbox messages compared by UIDL and size; 0 differences" "$T_TMP/last.err" &&
	ok "vsrc-pop3-compares-all ($ninbox)" || not_ok vsrc-pop3-compares-all "$(tail -n 1 "$T_TMP/last.err")"
expect_exit vsrc-pop3-clean-full 0 mf verify "$PSRC" "$PA" "${PS[@]}" --full
grep -q " $ninbox messages compared by UIDL and size and content hash; 0 differences" "$T_TMP/last.err" &&
	ok "vsrc-pop3-full-compares-all ($ninbox)" || not_ok vsrc-pop3-full-compares-all "$(tail -n 1 "$T_TMP/last.err")"
doveadm -c "$A_DOVECOT_CONF" save -u src -m INBOX <"$msg" || not_ok save-new-2 "doveadm save failed"
doveadm -c "$A_DOVECOT_CONF" expunge -u src mailbox INBOX uid 2 || not_ok expunge-2 "doveadm expunge failed"
for mode in cheap full; do
	extra=()
	[ $mode = full ] && extra=(--full)
	expect_exit "vsrc-pop3-changed-$mode" 1 mf verify "$PSRC" "$PA" "${PS[@]}" "${extra[@]}"
	o=$T_TMP/last.out
	grep -q '^differs account="pop3:src@127.0.0.1" mailbox="INBOX" uid=0 what="UIDL [!-~]*: in the source, not in the archive"' "$o" &&
		grep -q '^differs account="pop3:src@127.0.0.1" mailbox="INBOX" uid=[1-9][0-9]* what="in the archive.s run, no longer in the source"' "$o" &&
		[ "$(grep -c '^differs ' "$o")" = 2 ] && ok "vsrc-pop3-$mode-names-new-and-gone" ||
		not_ok "vsrc-pop3-$mode-names-new-and-gone" "$(tr '\n' '|' <"$o")"
done
expect_exit vsrc-pop3-no-state 2 mf verify "$PSRC" "$PA" "${SO[@]}" --state "$T_TMP/nostate"
grep -q "no backup of pop3:src@127.0.0.1 into this archive" "$T_TMP/last.err" && ok vsrc-pop3-no-state-says-so ||
	not_ok vsrc-pop3-no-state-says-so "$(tail -n 1 "$T_TMP/last.err")"

# a folder name holding '"' (and what looks like the keys after it): the
# difference line escapes it (\x22), so the value cannot end early and
# forge a uid= or what=; the line still parses as four keys
QN='Say "hi" uid=9 what="forged'
QSRC="imap://qsrc@127.0.0.1:$A_IMAP_PORT"
QO=(--src-password-file "$PW/qsrc" --ca-file "$A_CA_FILE" --no-progress)
doveadm -c "$A_DOVECOT_CONF" mailbox create -u qsrc "$QN" || not_ok quote-create "doveadm mailbox create failed"
for i in 1 2; do
	doveadm -c "$A_DOVECOT_CONF" save -u qsrc -m "$QN" <"$msg" || not_ok quote-save "doveadm save failed"
done
expect_exit vsrc-quote-backup 0 mf backup "$QSRC" "$T_TMP/qarchive" "${QO[@]}" --state "$T_TMP/qst"
mf archive ls "$T_TMP/qarchive" >"$T_TMP/qls.out" 2>&1
grep -qx '  mailbox="Say \\x22hi\\x22 uid=9 what=\\x22forged" uidvalidity=[0-9]* messages=2 bytes=[0-9]*' "$T_TMP/qls.out" &&
	ok vsrc-quote-archive-ls-escaped || not_ok vsrc-quote-archive-ls-escaped "$(tr '\n' '|' <"$T_TMP/qls.out")"
expect_exit vsrc-quote-clean 0 mf verify "$QSRC" "$T_TMP/qarchive" "${QO[@]}"
grep -q ' 2 mailboxes, 2 messages compared .*; 0 differences' "$T_TMP/last.err" && ok vsrc-quote-clean-compared ||
	not_ok vsrc-quote-clean-compared "$(tail -n 1 "$T_TMP/last.err")"
doveadm -c "$A_DOVECOT_CONF" flags add -u qsrc '\Seen' mailbox "$QN" uid 2 || not_ok quote-flag "doveadm flags failed"
expect_exit vsrc-quote-changed 1 mf verify "$QSRC" "$T_TMP/qarchive" "${QO[@]}"
o=$T_TMP/last.out
grep -qx 'differs account="qsrc@127.0.0.1" mailbox="Say \\x22hi\\x22 uid=9 what=\\x22forged" uid=2 what="flags differ: source \\Seen, archive (none)"' "$o" &&
	[ "$(grep -c . "$o")" = 1 ] && ok vsrc-quote-escaped || not_ok vsrc-quote-escaped "$(tr '\n' '|' <"$o")"
grep -Eqx 'differs account="[^"]*" mailbox="[^"]*" uid=[0-9]+ what="[^"]*"' "$o" && ok vsrc-quote-line-parses ||
	not_ok vsrc-quote-line-parses "$(tr '\n' '|' <"$o")"

# a mailbox name with a terminal escape, '"' and a C1 control (U+009B,
# CSI), listed as a literal (8-bit) by a scripted server: verify sees it
# (a LIST literal is kept, as backup keeps it) and each line names it
# escaped; no control byte reaches stdout
fake_imap none --mailbox-8bit $'Ctl\x1b[31m"x\xc2\x9b' --max-seconds 300 --linger 120
printf 'any\n' >"$T_TMP/fpw"
chmod 600 "$T_TMP/fpw"
FSRC="imap://any@127.0.0.1:$FAKE_PORT"
FK=(--src-password-file "$T_TMP/fpw" --no-progress)
expect_exit vsrc-ctl-backup 0 mf backup "$FSRC" "$T_TMP/carchive" "${FK[@]}" --state "$T_TMP/cst" --folder INBOX
expect_exit vsrc-ctl-inbox-clean 0 mf verify "$FSRC" "$T_TMP/carchive" "${FK[@]}" --folder INBOX
expect_exit vsrc-ctl-differs 1 mf verify "$FSRC" "$T_TMP/carchive" "${FK[@]}"
o=$T_TMP/last.out
n=$(grep -c '^differs account="any@127.0.0.1" mailbox="Ctl\\x1b\[31m\\x22x\\u009b" uid=[0-3] what="[^"]*"$' "$o")
[ "$n" = 4 ] && [ "$(grep -c . "$o")" = 4 ] && ok vsrc-ctl-escaped ||
	not_ok vsrc-ctl-escaped "$n of $(grep -c . "$o") lines: $(tr '\n' '|' <"$o")"
LC_ALL=C grep -q $'[\x01-\x09\x0b-\x1f\x7f]\|\xc2[\x80-\x9f]' "$o" && not_ok vsrc-ctl-no-control-bytes "$(cat -A "$o" | head -n 2)" ||
	ok vsrc-ctl-no-control-bytes

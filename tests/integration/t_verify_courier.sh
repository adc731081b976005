#!/usr/bin/env bash
# mailferry verify SRC ARCHIVE against Courier-IMAP (scripts/courier.sh),
# whose personal namespace is "INBOX." with separator ".": an account
# filled from Dovecot (every folder under "INBOX."), backed up; the
# archive names its mailboxes as backup took them; verify is clean (exit
# 0, 0 differences, every folder compared, none missing or extra), cheap
# and --full, and with --folder as backup's --folder (prefix-less names);
# then a flag change and an expunge made on Courier: verify names exactly
# those two, each with the mailbox as the archive names it.
. "$(dirname "$0")/lib.sh"

dv_start A --users "src" || { not_ok dovecot "start failed"; exit 1; }
co_start C --users "vsrc" || { not_ok courier-start "start failed"; exit 1; }
corpus A src tiny 41 || { not_ok corpus "generation failed"; exit 1; }
cat "$A_CA_FILE" "$C_CA_FILE" >"$T_TMP/ca.pem"

# Courier filled through IMAP (Courier keeps its UID lists then)
expect_exit vco-fill 0 mf migrate "imap://src@127.0.0.1:$A_IMAP_PORT" "imap://vsrc@127.0.0.1:$C_IMAP_PORT" \
	--src-password-file "$A_DIR/pw/src" --dst-password-file "$C_DIR/pw/vsrc" --ca-file "$T_TMP/ca.pem" \
	--no-progress --state "$T_TMP/fst"
SRC="imaps://vsrc@127.0.0.1:$C_IMAPS_PORT"
AR=$T_TMP/archive
SO=(--src-password-file "$C_DIR/pw/vsrc" --ca-file "$T_TMP/ca.pem" --no-progress)
expect_exit vco-backup 0 mf backup "$SRC" "$AR" "${SO[@]}" --state "$T_TMP/bst"

# how backup named the folders: those the archive's run lists
mf archive ls "$AR" >"$T_TMP/ls.out" 2>/dev/null
sed -n 's/^  mailbox="\([^"]*\)".*/\1/p' "$T_TMP/ls.out" | sort >"$T_TMP/arc.names"
nbox=$(grep -c . "$T_TMP/arc.names")
[ "$nbox" -gt 2 ] && grep -qx INBOX "$T_TMP/arc.names" && ok "vco-archive-lists ($nbox mailboxes)" ||
	not_ok vco-archive-lists "$(tr '\n' '|' <"$T_TMP/ls.out")"
echo "# archive names: $(tr '\n' ' ' <"$T_TMP/arc.names")"

ncur=$(find "$C_MAIL_ROOT/vsrc/Maildir" -path '*/cur/*' -o -path '*/new/*' | grep -c .)
for mode in cheap full; do
	extra=()
	[ $mode = full ] && extra=(--full)
	expect_exit "vco-clean-$mode" 0 mf verify "$SRC" "$AR" "${SO[@]}" "${extra[@]}"
	[ ! -s "$T_TMP/last.out" ] && grep -q " $nbox mailboxes, $ncur messages compared .*; 0 differences" "$T_TMP/last.err" &&
		ok "vco-clean-$mode-all-compared ($nbox mailboxes, $ncur messages)" ||
		not_ok "vco-clean-$mode-all-compared" "$(head -n 3 "$T_TMP/last.out" | tr '\n' '|') $(tail -n 1 "$T_TMP/last.err")"
done

# folder options name folders without the prefix ("Sent", not
# "INBOX.Sent"), as for backup: a backup of some folders verifies clean
# with the same options, the others neither compared nor reported
FA=$T_TMP/farchive
FO=(--folder 'Lists/*' --folder 'Entwürfe')
expect_exit vco-folder-backup 0 mf backup "$SRC" "$FA" "${SO[@]}" --state "$T_TMP/fbst" "${FO[@]}"
mf archive ls "$FA" 2>/dev/null | grep -q '^  mailbox="INBOX\.Lists\.dev"' && ok vco-folder-backup-took-lists ||
	not_ok vco-folder-backup-took-lists "$(mf archive ls "$FA" 2>&1 | tr '\n' '|')"
nf=$(find "$C_MAIL_ROOT/vsrc/Maildir/.Lists.dev" "$C_MAIL_ROOT/vsrc/Maildir/.Entwürfe" -path '*/cur/*' -o -path '*/new/*' | grep -c .)
expect_exit vco-folder-clean 0 mf verify "$SRC" "$FA" "${SO[@]}" "${FO[@]}"
[ ! -s "$T_TMP/last.out" ] && grep -q " 2 mailboxes, $nf messages compared .*; 0 differences; 2 mailboxes left out" "$T_TMP/last.err" &&
	ok "vco-folder-compares-those ($nf messages)" ||
	not_ok vco-folder-compares-those "$(head -n 3 "$T_TMP/last.out" | tr '\n' '|') $(tail -n 1 "$T_TMP/last.err")"
expect_exit vco-folder-regex-clean 0 mf verify "$SRC" "$FA" "${SO[@]}" --folder-regex '^(Lists/.*|Entwürfe)$'
expect_exit vco-exclude-clean 0 mf verify "$SRC" "$AR" "${SO[@]}" --exclude Sent --exclude 'Lists/*'
grep -q " 2 mailboxes, .*; 0 differences; 2 mailboxes left out" "$T_TMP/last.err" && ok vco-exclude-leaves-out-two ||
	not_ok vco-exclude-leaves-out-two "$(tail -n 1 "$T_TMP/last.err")"

# two changes made on Courier: a flag and keyword added in INBOX.Sent, a
# message expunged in INBOX.Lists.dev; verify names exactly those two,
# each mailbox as the archive names it (the wire name, prefix and all)
imap_session --tls --ca "$C_CA_FILE" "$C_IMAPS_PORT" >"$T_TMP/chg.out" 2>&1 \
	<<<$'a LOGIN vsrc pw-vsrc-secret\nb SELECT INBOX.Sent\nc UID STORE 1 +FLAGS (\\Flagged $Verify)\nd SELECT INBOX.Lists.dev\ne UID STORE 2 +FLAGS (\\Deleted)\nf EXPUNGE\ng LOGOUT'
grep -q '^c OK' "$T_TMP/chg.out" && grep -q '^f OK' "$T_TMP/chg.out" && ok vco-change-on-courier ||
	not_ok vco-change-on-courier "$(grep -E '^[a-g] ' "$T_TMP/chg.out" | tr '\n' '|')"
for mode in cheap full; do
	extra=()
	[ $mode = full ] && extra=(--full)
	expect_exit "vco-changed-$mode" 1 mf verify "$SRC" "$AR" "${SO[@]}" "${extra[@]}"
	o=$T_TMP/last.out
	grep -q '^differs account="vsrc@127.0.0.1" mailbox="INBOX.Sent" uid=1 what="flags differ: source .*\\Flagged .*\$verify.*, archive ' "$o" &&
		grep -q '^differs account="vsrc@127.0.0.1" mailbox="INBOX.Lists.dev" uid=2 what="in the archive.s run, no longer in the source"' "$o" &&
		[ "$(grep -c . "$o")" = 2 ] && grep -q " $nbox mailboxes, .*; 2 differences" "$T_TMP/last.err" &&
		ok "vco-changed-$mode-names-both" || not_ok "vco-changed-$mode-names-both" "$(tr '\n' '|' <"$o") $(tail -n 1 "$T_TMP/last.err")"
done
# the folder-option archive: only the expunge is in what it took
expect_exit vco-folder-changed 1 mf verify "$SRC" "$FA" "${SO[@]}" "${FO[@]}"
grep -q '^differs .* mailbox="INBOX.Lists.dev" uid=2 what="in the archive.s run, no longer in the source"' "$T_TMP/last.out" &&
	[ "$(grep -c . "$T_TMP/last.out")" = 1 ] && ok vco-folder-changed-names-expunge ||
	not_ok vco-folder-changed-names-expunge "$(tr '\n' '|' <"$T_TMP/last.out")"

#!/usr/bin/env bash
# Issue 3 folder mapping: SPECIAL-USE automap (the source's \Sent lands in
# the destination's \Sent, here called "Sent Messages"), --map SRC=DST,
# --folder/--exclude, and subscriptions carried over.
. "$(dirname "$0")/lib.sh"

dv_start A --users "src" || { not_ok mapping-dovecot "start failed"; exit 1; }
dv_start B --users "dst dst2 dst3" --sent-name "Sent Messages" || { not_ok mapping-dovecot-b "start failed"; exit 1; }
corpus A src tiny 9
imap_session "$B_IMAP_PORT" <<<$'a LOGIN dst pw-dst-secret\nb CREATE "Sent Messages"' >/dev/null
count() { # PORT USER MAILBOX
	imap_session "$1" <<<"a LOGIN $2 pw-$2-secret"$'\n'"b STATUS \"$3\" (MESSAGES)" | sed -n 's/.*(MESSAGES \([0-9]*\)).*/\1/p'
}
src_sent=$(count "$A_IMAP_PORT" src Sent)
expect_exit automap 0 mf migrate "imap://src@127.0.0.1:$A_IMAP_PORT?starttls=no" \
	"imap://dst@127.0.0.1:$B_IMAP_PORT?starttls=no" --src-password-file "$A_DIR/pw/src" \
	--dst-password-file "$B_DIR/pw/dst" --state "$T_TMP/st1" --json --no-progress \
	--map "Lists/dev=Archive/Lists"
n=$(count "$B_IMAP_PORT" dst "Sent Messages")
[ -n "$src_sent" ] && [ "$n" = "$src_sent" ] && ok "automap-sent ($n messages into \"Sent Messages\")" ||
	not_ok automap-sent "source Sent $src_sent, destination Sent Messages $n"
imap_session "$B_IMAP_PORT" <<<$'a LOGIN dst pw-dst-secret\nb LIST "" "*"' >"$T_TMP/list"
grep -q '"Sent"$' "$T_TMP/list" && not_ok automap-no-extra-sent "a plain Sent was created too" || ok automap-no-extra-sent
[ "$(count "$B_IMAP_PORT" dst Archive.Lists)" = "$(count "$A_IMAP_PORT" src Lists.dev)" ] && ok map-option ||
	not_ok map-option "Archive.Lists has $(count "$B_IMAP_PORT" dst Archive.Lists)"
imap_session "$B_IMAP_PORT" <<<$'a LOGIN dst pw-dst-secret\nb LSUB "" "*"' >"$T_TMP/lsub"
grep -q 'Archive.Lists' "$T_TMP/lsub" && grep -q 'Entw&APw-rfe' "$T_TMP/lsub" && ok subscriptions-copied ||
	not_ok subscriptions-copied "$(grep LSUB "$T_TMP/lsub" | tr '\n' ' ')"

# --folder / --exclude: only what matches
expect_exit folder-glob 0 mf migrate "imap://src@127.0.0.1:$A_IMAP_PORT?starttls=no" \
	"imap://dst2@127.0.0.1:$B_IMAP_PORT?starttls=no" --src-password-file "$A_DIR/pw/src" \
	--dst-password-file "$B_DIR/pw/dst2" --state "$T_TMP/st2" --json --no-progress \
	--folder 'Lists*' --folder 'Entwürfe' --exclude 'Lists/dev'
imap_session "$B_IMAP_PORT" <<<$'a LOGIN dst2 pw-dst2-secret\nb LIST "" "*"' >"$T_TMP/list2"
grep -q 'Entw&APw-rfe' "$T_TMP/list2" && ! grep -q 'Lists' "$T_TMP/list2" && ! grep -q '"Sent' "$T_TMP/list2" &&
	ok folder-glob-selects || not_ok folder-glob-selects "$(grep LIST "$T_TMP/list2" | tr '\n' ' ')"

# --rename and --dst-prefix (issue 16 item 4): every mailbox under
# "Imported", "Lists" renamed "Groups" with its children, Trash left out by
# --exclude-regex; a re-run lands on the same names and copies nothing
RN=(--rename 's#^Lists#Groups#' --dst-prefix Imported --exclude-regex '^(Trash|Junk)$')
expect_exit rename-prefix 0 mf migrate "imap://src@127.0.0.1:$A_IMAP_PORT?starttls=no" \
	"imap://dst3@127.0.0.1:$B_IMAP_PORT?starttls=no" --src-password-file "$A_DIR/pw/src" \
	--dst-password-file "$B_DIR/pw/dst3" --state "$T_TMP/st3" --json --no-progress "${RN[@]}"
imap_session "$B_IMAP_PORT" <<<$'a LOGIN dst3 pw-dst3-secret\nb LIST "" "*"' >"$T_TMP/list3"
[ "$(count "$B_IMAP_PORT" dst3 Imported.Groups.dev)" = "$(count "$A_IMAP_PORT" src Lists.dev)" ] &&
	[ "$(count "$B_IMAP_PORT" dst3 Imported.INBOX)" = "$(count "$A_IMAP_PORT" src INBOX)" ] &&
	! grep -q '"Lists' "$T_TMP/list3" && ok rename-prefix-names ||
	not_ok rename-prefix-names "$(grep LIST "$T_TMP/list3" | tr '\n' ' ')"
expect_exit rename-prefix-rerun 0 mf migrate "imap://src@127.0.0.1:$A_IMAP_PORT?starttls=no" \
	"imap://dst3@127.0.0.1:$B_IMAP_PORT?starttls=no" --src-password-file "$A_DIR/pw/src" \
	--dst-password-file "$B_DIR/pw/dst3" --state "$T_TMP/st3" --json --no-progress "${RN[@]}"
[ "$(json_field "$T_TMP/last.out" messages_copied)" = 0 ] && ok rename-prefix-rerun-copies-0 ||
	not_ok rename-prefix-rerun-copies-0 "copied $(json_field "$T_TMP/last.out" messages_copied)"
expect_exit rename-bad-rule 2 mf migrate "imap://src@127.0.0.1:$A_IMAP_PORT?starttls=no" \
	"imap://dst3@127.0.0.1:$B_IMAP_PORT?starttls=no" --src-password-file "$A_DIR/pw/src" \
	--dst-password-file "$B_DIR/pw/dst3" --state "$T_TMP/st3" --rename 's/(/x/'
grep -q -- "--rename '(': " "$T_TMP/last.err" && ok rename-bad-rule-message ||
	not_ok rename-bad-rule-message "$(tail -n 1 "$T_TMP/last.err")"

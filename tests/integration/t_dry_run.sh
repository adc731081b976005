#!/usr/bin/env bash
# Issue 3 --dry-run: prints what would be done (folders created, messages
# copied, flag changes, expunges), changes nothing on the destination and
# nothing in the state: the real run afterwards does all of it.
. "$(dirname "$0")/lib.sh"

dv_start Y --users "src dst" || { not_ok dry-dovecot "start failed"; exit 1; }
corpus Y src tiny 7 || { not_ok dry-corpus failed; exit 1; }
run() { mf migrate "imap://src@127.0.0.1:$Y_IMAP_PORT?starttls=no" "imap://dst@127.0.0.1:$Y_IMAP_PORT?starttls=no" \
	--src-password-file "$Y_DIR/pw/src" --dst-password-file "$Y_DIR/pw/dst" --state "$Y_DIR/state-mf" \
	--json --no-progress "$@"; }
# messages (their flags are in the file names) and folders; not Dovecot's
# own files, which a login creates
snap() { (cd "$Y_DIR/mail/dst" 2>/dev/null && find . \( -path '*/cur/*' -o -path '*/new/*' -o -name '.?*' -type d \) -printf '%P %s\n' | sort | md5sum); }
sum() { awk '{ s += $1 } END { print s + 0 }'; }
total=$(imap_session "$Y_IMAP_PORT" <<<$'a LOGIN src pw-src-secret\nb STATUS INBOX (MESSAGES)\nc STATUS Sent (MESSAGES)\nd STATUS Lists.dev (MESSAGES)\ne STATUS Entw&APw-rfe (MESSAGES)' |
	sed -n 's/.*(MESSAGES \([0-9]*\)).*/\1/p' | sum)

before=$(snap)
expect_exit dry-first 0 run --dry-run
would=$(sed -n 's/.*: \([0-9]*\) new messages would be copied.*/\1/p' "$T_TMP/last.err" | sum)
[ "$would" = "$total" ] && ok "dry-first-counts ($would messages would be copied)" ||
	not_ok dry-first-counts "would copy $would, the source holds $total"
grep -q 'would be created' "$T_TMP/last.err" && ok dry-first-folders ||
	not_ok dry-first-folders "$(head -n 5 "$T_TMP/last.err" | tr '\n' '|')"
[ "$(snap)" = "$before" ] && ok dry-first-changes-nothing || not_ok dry-first-changes-nothing "the destination changed"
expect_exit dry-then-real 0 run
c=$(json_field "$T_TMP/last.out" messages_copied)
[ "$c" = "$total" ] && ok "dry-left-state-alone ($c copied)" || not_ok dry-left-state-alone "copied $c of $total"

python3 tests/integration/mutate.py "$Y_IMAP_PORT" src pw-src-secret 21 >/dev/null
before=$(snap)
expect_exit dry-changes 0 run --dry-run --sync-flags --delete
f=$(sed -n 's/.*: \([0-9]*\) flag changes, \([0-9]*\) expunges.*/\1/p' "$T_TMP/last.err" | sum)
x=$(sed -n 's/.*: \([0-9]*\) flag changes, \([0-9]*\) expunges.*/\2/p' "$T_TMP/last.err" | sum)
n=$(sed -n 's/.*: \([0-9]*\) new messages would be copied.*/\1/p' "$T_TMP/last.err" | sum)
[ "${f:-0}" -gt 0 ] && [ "${x:-0}" -gt 0 ] && [ "${n:-0}" -gt 0 ] && ok "dry-changes-reported ($f flag changes, $x expunges, $n new)" ||
	not_ok dry-changes-reported "flags $f expunges $x new $n: $(head -n 5 "$T_TMP/last.err" | tr '\n' '|')"
[ "$(snap)" = "$before" ] && ok dry-changes-change-nothing || not_ok dry-changes-change-nothing "the destination changed"
expect_exit dry-changes-real 0 run --sync-flags --delete
c=$(json_field "$T_TMP/last.out" messages_copied); fs=$(json_field "$T_TMP/last.out" flags_synced)
e=$(json_field "$T_TMP/last.out" expunged)
[ "$c" = "$n" ] && [ "$fs" = "$f" ] && [ "$e" = "$x" ] && ok "dry-run-was-right ($c copied, $fs flags, $e expunged)" ||
	not_ok dry-run-was-right "real: $c copied, $fs flags, $e expunged; dry: $n, $f, $x"
check dry-exact "$BENCH_BIN/compare" "$Y_DIR/mail/src/Maildir" "$Y_DIR/mail/dst/Maildir"

# --max-message-size in a dry run: the sizes the source names are checked
# as a real run checks the bytes; each message over it is named (one line
# with its UID), the rest are counted, and the exit is non-zero as a real
# run's would be.
mf migrate "imap://src@127.0.0.1:$Y_IMAP_PORT?starttls=no" "imap://dst@127.0.0.1:$Y_IMAP_PORT?starttls=no" \
	--src-password-file "$Y_DIR/pw/src" --dst-password-file "$Y_DIR/pw/dst" --state "$Y_DIR/state-big" \
	--no-progress --dry-run --max-message-size 6144 >"$T_TMP/big.out" 2>"$T_TMP/big.err"
rc=$?
big=$(grep -c 'uid [0-9]*: .*exceeds --max-message-size 6144' "$T_TMP/big.err")
would=$(sed -n 's/.*: \([0-9]*\) new messages would be copied.*/\1/p' "$T_TMP/big.err" | sum)
total=$(imap_session "$Y_IMAP_PORT" <<<$'a LOGIN src pw-src-secret\nb STATUS INBOX (MESSAGES)\nc STATUS Sent (MESSAGES)\nd STATUS Lists.dev (MESSAGES)\ne STATUS Entw&APw-rfe (MESSAGES)' |
	sed -n 's/.*(MESSAGES \([0-9]*\)).*/\1/p' | sum)
[ "$rc" != 0 ] && [ "$big" -gt 0 ] && [ $((big + would)) = "$total" ] &&
	ok "dry-max-message-size (exit $rc: $big over 6k named, $would would be copied, of $total)" ||
	not_ok dry-max-message-size "exit $rc, $big named over the limit, $would would be copied, of $total: $(head -n 3 "$T_TMP/big.err" | tr '\n' '|')"

#!/usr/bin/env bash
# mailferry restore (issue 19 item 3) against a private Dovecot: a messy
# corpus backed up with `mailferry backup`, restored into a second account
# and compared file by file with the source (bytes, flags, keywords, dates,
# folders); a re-run copies 0; --run 1 after a second backup with changes
# gives the old state; --folder, --since/--before filter; SIGKILL
# mid-restore then a re-run: exact, nothing twice; a corrupt pack byte: the
# damaged message named (mailbox and UID), the others restored, exit 1.
. "$(dirname "$0")/lib.sh"

dv_start A --users "src r1 r2 r3 r4 r5 r6" || { not_ok dovecot "start failed"; exit 1; }
corpus A src tiny 5 || { not_ok corpus "generation failed"; exit 1; }
PW=$A_DIR/pw
SRC="imap://src@127.0.0.1:$A_IMAP_PORT"
MD=$A_DIR/mail
AR=$T_TMP/archive
BK=(--src-password-file "$PW/src" --ca-file "$A_CA_FILE" --json --no-progress --state "$T_TMP/bst")
rs() { # USER: restore options for that account
	echo --dst-password-file "$PW/$1" --ca-file "$A_CA_FILE" --json --no-progress --state "$T_TMP/rst"
}
dst() { echo "imap://$1@127.0.0.1:$A_IMAP_PORT"; }
total=$(find "$MD/src/Maildir" -path '*/cur/*' -o -path '*/new/*' | grep -c .)

expect_exit backup-1 0 mf backup "$SRC" "$AR" "${BK[@]}"
cp -a "$MD/src/Maildir" "$T_TMP/run1"

# 1. restore the latest run into r1: exactly the source
# shellcheck disable=SC2046
expect_exit restore-first 0 mf restore "$AR" "$(dst r1)" $(rs r1)
cp "$T_TMP/last.out" "$T_TMP/first.json"
n=$(json_field "$T_TMP/first.json" messages_copied)
[ "$n" = "$total" ] && ok "restore-count ($n of $total)" || not_ok restore-count "copied $n of $total"
check restore-exact "$BENCH_BIN/compare" "$MD/src/Maildir" "$MD/r1/Maildir"

# 2. a re-run copies nothing
# shellcheck disable=SC2046
expect_exit restore-rerun 0 mf restore "$AR" "$(dst r1)" $(rs r1)
c=$(json_field "$T_TMP/last.out" messages_copied); s=$(json_field "$T_TMP/last.out" messages_skipped)
[ "$c" = 0 ] && [ "$s" = "$total" ] && ok "restore-rerun-copies-0 (skipped $s)" ||
	not_ok restore-rerun-copies-0 "copied $c, skipped $s"
check restore-rerun-exact "$BENCH_BIN/compare" "$MD/src/Maildir" "$MD/r1/Maildir"

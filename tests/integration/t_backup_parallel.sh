#!/usr/bin/env bash
# mailferry backup with several source connections (engine/sync/sink_archive.c):
# each worker gathers its message (in memory up to 1 MiB, past that in an
# unlinked spill file in $TMPDIR) and writes it into the archive whole, so
# messages received at once never interleave. A messy corpus with 1-2 MB
# attachments in several folders plus a 5 MiB message in a folder of its
# own, backed up over 4 connections: the export is exact, nothing is left in
# $TMPDIR; with 1 connection the same mail gives the same objects. An
# unusable $TMPDIR fails only the messages over 1 MiB, each named by
# mailbox and UID, exit 1, and the next run with a good one stores them.
. "$(dirname "$0")/lib.sh"

dv_start A --users "src" || { not_ok dovecot "start failed"; exit 1; }
corpus A src demo 3 || { not_ok corpus "generation failed"; exit 1; }
MD=$A_DIR/mail/src/Maildir
"$BENCH_BIN/corpus" --out "$T_TMP/big" --big-mb 5 --seed 2 >/dev/null || { not_ok corpus-big "generation failed"; exit 1; }
mkdir -p "$MD/.Big/cur" "$MD/.Big/new" "$MD/.Big/tmp"
mv "$T_TMP/big/cur/"* "$MD/.Big/cur/"
echo Big >>"$MD/subscriptions"
"$ROOT/scripts/dovecot.sh" fixperms "$A_DIR"
SRC="imap://src@127.0.0.1:$A_IMAP_PORT"
COMMON=(--src-password-file "$A_DIR/pw/src" --ca-file "$A_CA_FILE" --json --no-progress)
big=$(find "$MD" -path '*/cur/*' -size +1024k | grep -c .)
[ "$big" -ge 2 ] && ok "corpus-has-big-messages ($big over 1 MiB)" || not_ok corpus-has-big-messages "$big"
objects() { sed -n 's/.*"event":"archive".*"objects":\([0-9]*\).*/\1/p' "$1"; }

# 1. four connections: exact, nothing left behind in TMPDIR
mkdir -p "$T_TMP/spill"
TMPDIR=$T_TMP/spill expect_exit par-backup 0 mf backup "$SRC" "$T_TMP/ar4" "${COMMON[@]}" \
	--state "$T_TMP/st4" --connections 4
cp "$T_TMP/last.out" "$T_TMP/par.json"
[ "$(json_field "$T_TMP/par.json" messages_failed)" = 0 ] && ok par-none-failed ||
	not_ok par-none-failed "$(tail -n 1 "$T_TMP/par.json")"
[ -z "$(ls -A "$T_TMP/spill")" ] && ok par-spill-left-nothing || not_ok par-spill-left-nothing "$(ls "$T_TMP/spill" | head -3)"
expect_exit par-export 0 mf export "$T_TMP/ar4" --maildir "$T_TMP/out4"
check par-export-exact "$BENCH_BIN/compare" "$MD" "$T_TMP/out4"
expect_exit par-verify 0 mf verify "$T_TMP/ar4"

# 2. one connection: the same distinct messages
expect_exit one-backup 0 mf backup "$SRC" "$T_TMP/ar1" "${COMMON[@]}" --state "$T_TMP/st1" --connections 1
o1=$(objects "$T_TMP/last.out") o4=$(objects "$T_TMP/par.json")
[ -n "$o1" ] && [ "$o1" = "$o4" ] && ok "same-objects ($o1)" || not_ok same-objects "1 connection $o1, 4 connections $o4"

# 3. no usable TMPDIR: the big messages fail, named; the others are stored
TMPDIR=$T_TMP/no-such-dir expect_exit nospill-backup 1 mf backup "$SRC" "$T_TMP/arx" "${COMMON[@]}" \
	--state "$T_TMP/stx" --connections 4
cp "$T_TMP/last.out" "$T_TMP/nospill.json"
f=$(json_field "$T_TMP/nospill.json" messages_failed)
[ "$f" = "$big" ] && ok "nospill-fails-only-big ($f)" || not_ok nospill-fails-only-big "failed $f, over 1 MiB $big"
grep -q 'spill file in .*no-such-dir' "$T_TMP/last.err" && grep -q 'mailbox "[^"]*" uid [0-9]' "$T_TMP/last.err" &&
	ok nospill-error-named || not_ok nospill-error-named "$(grep -m1 spill "$T_TMP/last.err")"
TMPDIR=$T_TMP/spill expect_exit nospill-rerun 0 mf backup "$SRC" "$T_TMP/arx" "${COMMON[@]}" --state "$T_TMP/stx" \
	--connections 4
[ "$(sed -n 's/.*"messages_copied":\([0-9]*\).*/\1/p' "$T_TMP/last.out")" = "$big" ] && ok nospill-rerun-stores-them ||
	not_ok nospill-rerun-stores-them "$(tail -n 1 "$T_TMP/last.out")"
expect_exit nospill-export 0 mf export "$T_TMP/arx" --maildir "$T_TMP/outx"
check nospill-export-exact "$BENCH_BIN/compare" "$MD" "$T_TMP/outx"

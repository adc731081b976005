#!/usr/bin/env bash
# mailferry restore (issue 19 item 3) against a private Dovecot: a messy
# corpus backed up with `mailferry backup`, restored into a second account
# and compared file by file with the source (bytes, flags, keywords, dates,
# folders); a re-run copies 0; --run 1 after a second backup with changes
# gives the old state; --folder, --since/--before filter; SIGKILL
# mid-restore then a re-run: exact, nothing twice; a corrupt pack byte: the
# damaged message named (mailbox and UID), the others restored, exit 1.
. "$(dirname "$0")/lib.sh"

dv_start A --users "src r1 r2 r3 r4 r5 r6 r7 r8 k rk" || { not_ok dovecot "start failed"; exit 1; }
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

# 3. a dry run lists, copies nothing
# shellcheck disable=SC2046
expect_exit restore-dry-run 0 mf restore "$AR" "$(dst r2)" $(rs r2) --dry-run
[ "$(json_field "$T_TMP/last.out" messages_copied)" = 0 ] &&
	[ -z "$(find "$MD/r2/Maildir" -path '*/cur/*' -type f 2>/dev/null)" ] &&
	grep -q "would be restored" "$T_TMP/last.err" && ok restore-dry-run-copies-nothing ||
	not_ok restore-dry-run-copies-nothing "$(tail -n 1 "$T_TMP/last.err")"

# 4. changes on the source (a new message, a flag, an expunge), backed up
#    as run 2: run 1 (by number, by date) restores the old state, the
#    latest run the new one
sleep 1.1
t_between=$(date +%s)
sleep 1.1
msg=$T_TMP/new.eml
printf 'From: a@example.org\r\nTo: b@example.org\r\nSubject: restore %s\r\nMessage-ID: <rs-%s@example.org>\r\n\r\nnew body\r\n' \
	"$RANDOM" "$$" >"$msg"
doveadm -c "$A_DOVECOT_CONF" save -u src -m INBOX <"$msg" || not_ok save-new "doveadm save failed"
doveadm -c "$A_DOVECOT_CONF" flags add -u src '\Flagged $Restore' mailbox INBOX uid 1 ||
	not_ok flag-change "doveadm flags failed"
doveadm -c "$A_DOVECOT_CONF" expunge -u src mailbox Sent uid 2 || not_ok expunge "doveadm expunge failed"
expect_exit backup-2 0 mf backup "$SRC" "$AR" "${BK[@]}" --sync-flags --delete
# shellcheck disable=SC2046
expect_exit restore-run-1 0 mf restore "$AR" "$(dst r2)" $(rs r2) --run 1
check restore-run-1-is-old-state "$BENCH_BIN/compare" "$T_TMP/run1" "$MD/r2/Maildir"
# shellcheck disable=SC2046
expect_exit restore-as-of-date 0 mf restore "$AR" "$(dst r3)" $(rs r3) --as-of "@$t_between"
grep -q '"event":"restore","run":1' "$T_TMP/last.out" && ok restore-as-of-date-picks-run-1 ||
	not_ok restore-as-of-date-picks-run-1 "$(head -n 1 "$T_TMP/last.out")"
check restore-as-of-date-is-old-state "$BENCH_BIN/compare" "$T_TMP/run1" "$MD/r3/Maildir"
# shellcheck disable=SC2046
expect_exit restore-latest 0 mf restore "$AR" "$(dst r4)" $(rs r4)
check restore-latest-is-new-state "$BENCH_BIN/compare" "$MD/src/Maildir" "$MD/r4/Maildir"
# shellcheck disable=SC2046
expect_exit restore-as-of-before-any 2 mf restore "$AR" "$(dst r5)" $(rs r5) --as-of 2001-01-01

# 5. --folder: that folder only; --since/--before: by INTERNALDATE (mtime)
# shellcheck disable=SC2046
expect_exit restore-folder 0 mf restore "$AR" "$(dst r5)" $(rs r5) --folder 'Lists/*'
want=$(find "$MD/src/Maildir/.Lists.dev" -path '*/cur/*' -o -path '*/new/*' | grep -c .)
got=$(find "$MD/r5/Maildir" -path '*/cur/*' -o -path '*/new/*' | grep -c .)
gotl=$(find "$MD/r5/Maildir/.Lists.dev" -path '*/cur/*' -o -path '*/new/*' 2>/dev/null | grep -c .)
[ "$want" -gt 0 ] && [ "$got" = "$want" ] && [ "$gotl" = "$want" ] &&
	ok "restore-folder-only-that-one ($got messages)" ||
	not_ok restore-folder-only-that-one "$got restored, $gotl in Lists.dev, $want wanted"
# the median mtime of the source's files splits them
mapfile -t mt < <(find "$MD/src/Maildir" \( -path '*/cur/*' -o -path '*/new/*' \) -type f -printf '%T@\n' |
	cut -d. -f1 | sort -n)
lo=${mt[$((${#mt[@]} / 4))]} hi=${mt[$((${#mt[@]} * 3 / 4))]}
[ "$lo" -lt "$hi" ] || not_ok restore-dates "no spread of dates in the corpus ($lo $hi)"
n_in=0
for t in "${mt[@]}"; do [ "$t" -ge "$lo" ] && [ "$t" -lt "$hi" ] && n_in=$((n_in + 1)); done
# shellcheck disable=SC2046
expect_exit restore-since-before 0 mf restore "$AR" "$(dst r6)" $(rs r6) --since "@$lo" --before "@$hi"
got=$(find "$MD/r6/Maildir" \( -path '*/cur/*' -o -path '*/new/*' \) -type f -printf '%T@\n' | cut -d. -f1)
bad=$(for t in $got; do [ "$t" -ge "$lo" ] && [ "$t" -lt "$hi" ] || echo "$t"; done | grep -c .)
cnt=$(printf '%s\n' "$got" | grep -c .)
[ "$n_in" -gt 0 ] && [ "$cnt" = "$n_in" ] && [ "$bad" = 0 ] &&
	ok "restore-since-before ($cnt messages in [$lo, $hi))" ||
	not_ok restore-since-before "$cnt restored ($bad outside), $n_in wanted"
for o in --sync-flags --delete --dedupe "--since 2020-13-01" "--run 0"; do
	# shellcheck disable=SC2046,SC2086
	expect_exit "restore-refuses-${o// /=}" 2 mf restore "$AR" "$(dst r6)" $(rs r6) $o
done

# 6. a corrupt pack byte: each damaged message named (mailbox and UID, one
#    line each, the same ones verify names), the others restored, exit 1
CA=$T_TMP/carchive
cp -a "$AR" "$CA"
pack=$(ls "$CA"/packs/pack-*.mfp | head -n 1)
size=$(stat -c %s "$pack")
off=$((size / 2))
b=$(dd if="$pack" bs=1 skip="$off" count=1 2>/dev/null | od -An -tu1 | tr -d ' ')
printf "$(printf '\\%03o' $(((b + 1) % 256)))" | dd of="$pack" bs=1 seek="$off" conv=notrunc 2>/dev/null
# run 1: verify names a message by the run of its version record
mf verify "$CA" 2>/dev/null | sed -n 's/^problem run=1 .* uid=\([0-9]*\) .*/\1/p' | sort -n >"$T_TMP/vbad"
# shellcheck disable=SC2046
expect_exit restore-corrupt 1 mf restore "$CA" "$(dst r7)" $(rs r7) --state "$T_TMP/cst" --run 1
sed -n 's/.* uid \([0-9]*\): archived message damaged.*/\1/p' "$T_TMP/last.err" | sort -n >"$T_TMP/rbad"
nbad=$(grep -c . "$T_TMP/rbad"); nv=$(grep -c . "$T_TMP/vbad")
failed=$(json_field "$T_TMP/last.out" messages_failed); copied=$(json_field "$T_TMP/last.out" messages_copied)
total2=$(find "$T_TMP/run1" -path '*/cur/*' -o -path '*/new/*' | grep -c .)
[ "$nbad" -gt 0 ] && [ "$nbad" = "$nv" ] && cmp -s "$T_TMP/rbad" "$T_TMP/vbad" && [ "$failed" = "$nbad" ] &&
	grep -q 'mailbox ".*" uid [0-9]*: archived message damaged' "$T_TMP/last.err" &&
	ok "restore-corrupt-names-the-damaged ($nbad, as verify)" ||
	not_ok restore-corrupt-names-the-damaged "restore named $nbad (failed $failed), verify $nv"
got=$(find "$MD/r7/Maildir" -path '*/cur/*' -o -path '*/new/*' | grep -c .)
[ "$copied" = $((total2 - nbad)) ] && [ "$got" = "$copied" ] &&
	ok "restore-corrupt-others-restored ($copied of $total2)" ||
	not_ok restore-corrupt-others-restored "copied $copied, $got on the server, $total2 - $nbad wanted"

# 7. through LMTP (the same pipeline, another sink; Dovecot stores LF, so
#    compared without CRs): every message of the
#    latest run delivered to r8 once, bytes exact; a re-run delivers none
LM="lmtp://127.0.0.1:$A_LMTP_PORT?rcpt=r8"
LO=(--json --no-progress --ca-file "$A_CA_FILE" --state "$T_TMP/lst")
total_now=$(find "$MD/src/Maildir" -path '*/cur/*' -o -path '*/new/*' | grep -c .)
expect_exit restore-lmtp 0 mf restore "$AR" "$LM" "${LO[@]}"
c=$(json_field "$T_TMP/last.out" messages_copied)
if python3 "$ROOT/tests/integration/trace_compare.py" --lf "$MD/r8/Maildir/new" 0 "$MD/src/Maildir" \
	>/dev/null 2>"$T_TMP/lmtp.cmp" && [ "$c" = "$total_now" ]; then
	ok "restore-lmtp-exact ($c delivered)"
else
	not_ok restore-lmtp-exact "copied $c of $total_now: $(head -n 2 "$T_TMP/lmtp.cmp" | tr '\n' '|')"
fi
expect_exit restore-lmtp-rerun 0 mf restore "$AR" "$LM" "${LO[@]}"
[ "$(json_field "$T_TMP/last.out" messages_copied)" = 0 ] && ok restore-lmtp-rerun-delivers-none ||
	not_ok restore-lmtp-rerun-delivers-none "copied $(json_field "$T_TMP/last.out" messages_copied)"

# 8. SIGKILL mid-restore (a delay proxy in front of the destination makes
#    it slow), then a re-run: exact, nothing twice
corpus A k demo 3 || { not_ok corpus-k "generation failed"; exit 1; }
KAR=$T_TMP/karchive
ktotal=$(find "$MD/k/Maildir" -path '*/cur/*' -o -path '*/new/*' | grep -c .)
expect_exit kill-backup 0 mf backup "imap://k@127.0.0.1:$A_IMAP_PORT" "$KAR" \
	--src-password-file "$PW/k" --ca-file "$A_CA_FILE" --json --no-progress --state "$T_TMP/kbst"
delay_proxy "$A_IMAP_PORT" --delay 20 || { not_ok kill-proxy "did not start"; exit 1; }
KR=(--dst-password-file "$PW/rk" --ca-file "$A_CA_FILE" --json --no-progress --state "$T_TMP/krst")
"$MF" restore "$KAR" "imap://rk@127.0.0.1:$PROXY_PORT?starttls=no" "${KR[@]}" --batch 4 \
	>"$T_TMP/kill-a.out" 2>"$T_TMP/kill-a.err" &
pid=$!
for _ in $(seq 1 1500); do
	n=$(find "$MD/rk/Maildir" -path '*/cur/*' -o -path '*/new/*' 2>/dev/null | grep -c .)
	[ "$n" -gt 300 ] && break
	kill -0 "$pid" 2>/dev/null || break
	sleep 0.02
done
kill -9 "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
expect_exit kill-rerun 0 mf restore "$KAR" "imap://rk@127.0.0.1:$A_IMAP_PORT" "${KR[@]}"
kb=$(json_field "$T_TMP/last.out" messages_copied)
[ "$kb" -gt 0 ] && [ "$kb" -lt "$ktotal" ] && ok "kill-resumed (the re-run copied $kb of $ktotal)" ||
	not_ok kill-resumed "$kb of $ktotal copied by the re-run (the kill came too early or too late)"
check kill-exact-nothing-twice "$BENCH_BIN/compare" "$MD/k/Maildir" "$MD/rk/Maildir"

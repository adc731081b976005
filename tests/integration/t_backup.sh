#!/usr/bin/env bash
# mailferry backup (issue 19 item 1) against a private Dovecot: a messy
# corpus backed up into an archive, exported to Maildir and compared with
# the source (bytes, flags, keywords, dates); a re-run stores nothing; one
# new message stores exactly one; the same content in two folders is
# stored once; SIGKILL mid-backup then a re-run: verify clean, the export
# exact; --json summary counts; options backup does not support refused.
. "$(dirname "$0")/lib.sh"

dv_start A --users "src k" || { not_ok dovecot "start failed"; exit 1; }
corpus A src tiny 7 || { not_ok corpus "generation failed"; exit 1; }
corpus A k demo 11 || { not_ok corpus-k "generation failed"; exit 1; }
PW=$A_DIR/pw
SRC="imap://src@127.0.0.1:$A_IMAP_PORT"
SRC_MD=$A_DIR/mail/src/Maildir
AR=$T_TMP/archive
COMMON=(--src-password-file "$PW/src" --ca-file "$A_CA_FILE" --json --no-progress --state "$T_TMP/st")
total=$(find "$SRC_MD" -path '*/cur/*' -o -path '*/new/*' | grep -c .)
objects() { sed -n 's/.*"event":"archive".*"objects":\([0-9]*\).*/\1/p' "$1"; }
run_of() { sed -n 's/.*"event":"archive","run":\([0-9]*\).*/\1/p' "$1"; }
export_cmp() { # NAME SRC_MAILDIR [export options]
	local name=$1 src=$2; shift 2
	rm -rf "$T_TMP/out-$name"
	expect_exit "$name-export" 0 mf export "$AR" --maildir "$T_TMP/out-$name" "$@"
	check "$name-export-exact" "$BENCH_BIN/compare" "$src" "$T_TMP/out-$name"
}

# 1. the first backup: every message stored, the summary counts them
expect_exit backup-first 0 mf backup "$SRC" "$AR" "${COMMON[@]}"
cp "$T_TMP/last.out" "$T_TMP/first.json"
n=$(json_field "$T_TMP/first.json" messages_copied)
[ "$n" = "$total" ] && ok "backup-count ($n of $total messages)" || not_ok backup-count "stored $n of $total"
[ "$(json_field "$T_TMP/first.json" messages_failed)" = 0 ] && ok backup-none-failed ||
	not_ok backup-none-failed "$(tail -n 1 "$T_TMP/first.json")"
obj1=$(objects "$T_TMP/first.json")
[ -n "$obj1" ] && [ "$obj1" -gt 0 ] && [ "$obj1" -le "$total" ] && ok "backup-json-archive-event ($obj1 objects)" ||
	not_ok backup-json-archive-event "$(grep '"archive"' "$T_TMP/first.json")"
expect_exit backup-ls 0 mf archive ls "$AR"
grep -q "^run=1 .*account=\"src@127.0.0.1\" state=complete" "$T_TMP/last.out" &&
	grep -q "^  total messages=$total " "$T_TMP/last.out" && ok backup-ls-run-complete ||
	not_ok backup-ls-run-complete "$(head -n 3 "$T_TMP/last.out" | tr '\n' '|')"
expect_exit backup-verify 0 mf verify "$AR"
export_cmp first "$SRC_MD"

# 2. a re-run stores nothing and still lists every message (carried forward)
expect_exit backup-rerun 0 mf backup "$SRC" "$AR" "${COMMON[@]}"
cp "$T_TMP/last.out" "$T_TMP/rerun.json"
c=$(json_field "$T_TMP/rerun.json" messages_copied)
[ "$c" = 0 ] && [ "$(objects "$T_TMP/rerun.json")" = "$obj1" ] && ok "backup-rerun-stores-nothing" ||
	not_ok backup-rerun-stores-nothing "copied $c, objects $(objects "$T_TMP/rerun.json") (was $obj1)"
r2=$(run_of "$T_TMP/rerun.json")
[ "$r2" = 2 ] && ok backup-rerun-is-run-2 || not_ok backup-rerun-is-run-2 "run $r2"
export_cmp rerun "$SRC_MD" --run 2

# 3. one new message: exactly one more stored; the same content in a
#    second folder: recorded there, stored once
msg=$T_TMP/new.eml
printf 'From: a@example.org\r\nTo: b@example.org\r\nSubject: backup %s\r\nMessage-ID: <bk-%s@example.org>\r\n\r\nnew body\r\n' \
	"$RANDOM" "$$" >"$msg"
doveadm -c "$A_DOVECOT_CONF" save -u src -m INBOX <"$msg" || not_ok save-new "doveadm save failed"
expect_exit backup-new 0 mf backup "$SRC" "$AR" "${COMMON[@]}"
cp "$T_TMP/last.out" "$T_TMP/new.json"
c=$(json_field "$T_TMP/new.json" messages_copied); o=$(objects "$T_TMP/new.json")
[ "$c" = 1 ] && [ "$o" = $((obj1 + 1)) ] && ok "backup-one-new (1 stored, $o objects)" ||
	not_ok backup-one-new "copied $c, objects $o (was $obj1)"
folder=$(cd "$SRC_MD" && ls -d .[A-Za-z]* 2>/dev/null | grep -E '^\.[A-Za-z0-9]+$' | head -n 1)
folder=${folder#.}
doveadm -c "$A_DOVECOT_CONF" save -u src -m "$folder" <"$msg" || not_ok save-dup "doveadm save failed"
expect_exit backup-dup 0 mf backup "$SRC" "$AR" "${COMMON[@]}"
cp "$T_TMP/last.out" "$T_TMP/dup.json"
c=$(json_field "$T_TMP/dup.json" messages_copied); d=$(json_field "$T_TMP/dup.json" messages_deduped)
[ "$c" = 1 ] && [ "$d" = 1 ] && [ "$(objects "$T_TMP/dup.json")" = $((obj1 + 1)) ] &&
	ok "backup-same-content-stored-once (in INBOX and $folder)" ||
	not_ok backup-same-content-stored-once "copied $c, deduped $d, objects $(objects "$T_TMP/dup.json")"
export_cmp dup "$SRC_MD"

# 4. a flag change and an expunge, with --sync-flags --delete: the new
#    run exports as the source is now, the run before as it was
cp -a "$SRC_MD" "$T_TMP/before"
prev=$(run_of "$T_TMP/dup.json")
doveadm -c "$A_DOVECOT_CONF" flags add -u src '\Flagged $Backup' mailbox INBOX uid 1 ||
	not_ok flag-change "doveadm flags failed"
doveadm -c "$A_DOVECOT_CONF" expunge -u src mailbox "$folder" uid 2 || not_ok expunge "doveadm expunge failed"
expect_exit backup-changes 0 mf backup "$SRC" "$AR" "${COMMON[@]}" --sync-flags --delete
cp "$T_TMP/last.out" "$T_TMP/chg.json"
f=$(json_field "$T_TMP/chg.json" flags_synced); x=$(json_field "$T_TMP/chg.json" expunged)
[ "$f" = 1 ] && [ "$x" = 1 ] && ok "backup-changes-counted (1 flag change, 1 expunge)" ||
	not_ok backup-changes-counted "flags_synced $f, expunged $x"
export_cmp changes "$SRC_MD"
export_cmp asof-before "$T_TMP/before" --run "$prev"
expect_exit changes-verify 0 mf verify "$AR"

# 5. a folder renamed on the source: nothing stored again, and the new
#    name lists every message it holds
doveadm -c "$A_DOVECOT_CONF" mailbox rename -u src "$folder" "${folder}Renamed" ||
	not_ok rename "doveadm mailbox rename failed"
expect_exit backup-renamed 0 mf backup "$SRC" "$AR" "${COMMON[@]}"
cp "$T_TMP/last.out" "$T_TMP/ren.json"
c=$(json_field "$T_TMP/ren.json" messages_copied); rn=$(json_field "$T_TMP/ren.json" mailboxes_renamed)
[ "$c" = 0 ] && [ "$rn" = 1 ] && ok "backup-rename-stores-nothing" ||
	not_ok backup-rename-stores-nothing "copied $c, renamed $rn"
export_cmp renamed "$SRC_MD"

# 6. options backup does not carry are refused, nothing written
for opt in --dedupe --dry-run "--map a=b"; do
	# shellcheck disable=SC2086
	mf backup "$SRC" "$T_TMP/refused" "${COMMON[@]}" $opt >/dev/null 2>"$T_TMP/refused.err"
	rc=$?
	[ $rc = 2 ] && [ ! -e "$T_TMP/refused" ] && ok "backup-refuses-${opt%% *}" ||
		not_ok "backup-refuses-${opt%% *}" "exit $rc: $(head -n 1 "$T_TMP/refused.err")"
done

# 7. SIGKILL mid-backup (a delay proxy in front of the source makes it
#    slow), then a re-run: verify clean, every message there exactly once
KMD=$A_DIR/mail/k/Maildir
ktotal=$(find "$KMD" -path '*/cur/*' -o -path '*/new/*' | grep -c .)
KA=$T_TMP/karchive
delay_proxy "$A_IMAP_PORT" --delay 20 || { not_ok kill-proxy "did not start"; exit 1; }
KC=(--src-password-file "$PW/k" --ca-file "$A_CA_FILE" --json --no-progress --state "$T_TMP/kst")
"$MF" backup "imap://k@127.0.0.1:$PROXY_PORT?starttls=no" "$KA" "${KC[@]}" --batch 4 \
	--max-bytes-per-second 4M >"$T_TMP/kill-a.out" 2>"$T_TMP/kill-a.err" &
pid=$!
# killed once some of it is in the packs (batches of 4 messages, each
# committed with an fdatasync: many commit points to land between) and the
# state has recorded some of it (backup commits its state once a second:
# the archive stores nothing twice, so no batch waits for the state; the
# byte rate keeps the run going that long)
for _ in $(seq 1 400); do
	sz=$(cat "$KA"/packs/pack-*.mfp 2>/dev/null | wc -c)
	[ "$sz" -gt 300000 ] && break
	kill -0 "$pid" 2>/dev/null || break
	sleep 0.02
done
sleep 1.2
kill -9 "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
expect_exit kill-rerun 0 mf backup "imap://k@127.0.0.1:$A_IMAP_PORT" "$KA" "${KC[@]}"
cp "$T_TMP/last.out" "$T_TMP/kill-b.json"
kb=$(json_field "$T_TMP/kill-b.json" messages_copied)
[ "$kb" -gt 0 ] && [ "$kb" -lt "$ktotal" ] && ok "kill-resumed (the kill left $kb of $ktotal)" ||
	not_ok kill-resumed "$kb of $ktotal copied by the re-run (the kill came too early or too late)"
expect_exit kill-verify 0 mf verify "$KA"
rm -rf "$T_TMP/out-kill"
expect_exit kill-export 0 mf export "$KA" --maildir "$T_TMP/out-kill"
check kill-export-exact "$BENCH_BIN/compare" "$KMD" "$T_TMP/out-kill"
mf archive ls "$KA" >"$T_TMP/kls"
grep -q "^  total messages=$ktotal " "$T_TMP/kls" && ok kill-ls-total ||
	not_ok kill-ls-total "$(grep total "$T_TMP/kls" | head -n 2 | tr '\n' '|')"


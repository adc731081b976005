#!/usr/bin/env bash
# mailferry backup --prune (issue 19 item 1) against a private Dovecot: a
# backup, then a third of the messages expunged on the source; a backup
# with --prune forgets them in every run (run 1 lists only what is left),
# drops them from the index and rewrites the pack they filled (the old
# pack file gone, fewer stored bytes); verify ARCHIVE is clean, verify SRC
# ARCHIVE too; restore gives the source's current state exactly; a re-run
# with --prune changes nothing. Encrypted: the same, verify clean.
# SIGKILL during backup --prune at several moments: verify stays clean and
# a re-run finishes the job.
. "$(dirname "$0")/lib.sh"

dv_start A --users "src r1 e1" || { not_ok dovecot "start failed"; exit 1; }
corpus A src tiny 6 || { not_ok corpus "generation failed"; exit 1; }
PW=$A_DIR/pw
SRC="imap://src@127.0.0.1:$A_IMAP_PORT"
MD=$A_DIR/mail
AR=$T_TMP/archive
SO=(--src-password-file "$PW/src" --ca-file "$A_CA_FILE" --no-progress)
BK=("${SO[@]}" --json --state "$T_TMP/bst")
count() { find "$1" -path '*/cur/*' -o -path '*/new/*' 2>/dev/null | grep -c .; }
lsfield() { sed -n "s/^archive .*$1=\([0-9]*\).*/\1/p" "$2"; }
total0=$(count "$MD/src/Maildir")

expect_exit prune-backup-1 0 mf backup "$SRC" "$AR" "${BK[@]}"
mf archive ls "$AR" >"$T_TMP/ls1"
s1=$(lsfield stored_bytes "$T_TMP/ls1")
packs1=$(ls "$AR/packs")

# a third of the messages go: INBOX uids 1..half of it, and all of Sent
n_in=$(doveadm -c "$A_DOVECOT_CONF" -f tab fetch -u src uid mailbox INBOX all | tail -n +2 | grep -c .)
doveadm -c "$A_DOVECOT_CONF" expunge -u src mailbox INBOX uid "1:$((n_in / 2))" || not_ok expunge "doveadm failed"
doveadm -c "$A_DOVECOT_CONF" expunge -u src mailbox Sent all || not_ok expunge-sent "doveadm failed"
total=$(count "$MD/src/Maildir")
gone=$((total0 - total))
echo "# $total0 messages, $gone expunged" >&2

expect_exit prune-backup-2 0 mf backup "$SRC" "$AR" "${BK[@]}" --prune
pe=$(grep '"event":"prune"' "$T_TMP/last.out")
uids=$(sed -n 's/.*"uids":\([0-9]*\).*/\1/p' <<<"$pe")
pr=$(sed -n 's/.*"packs_rewritten":\([0-9]*\).*/\1/p' <<<"$pe")
[ "$uids" = "$gone" ] && [ "${pr:-0}" -ge 1 ] && ok "prune-forgets-and-rewrites ($uids forgotten, $pr packs)" ||
	not_ok prune-forgets-and-rewrites "$pe (expected $gone uids)"
mf archive ls "$AR" >"$T_TMP/ls2"
s2=$(lsfield stored_bytes "$T_TMP/ls2")
[ -n "$s2" ] && [ "$s2" -lt "$s1" ] && ok "prune-fewer-bytes ($s1 -> $s2)" || not_ok prune-fewer-bytes "$s1 -> $s2"
gone_packs=0
for p in $packs1; do [ -e "$AR/packs/$p" ] || gone_packs=$((gone_packs + 1)); done
[ "$gone_packs" -ge 1 ] && ok "prune-old-pack-unlinked ($gone_packs)" ||
	not_ok prune-old-pack-unlinked "$(ls "$AR/packs" | tr '\n' ' ')"
grep -A0 '^run=1 ' "$T_TMP/ls2" >/dev/null
r1=$(awk '/^run=1 /{f=1;next} /^run=/{f=0} f&&/total messages=/{print}' "$T_TMP/ls2" | sed -n 's/.*messages=\([0-9]*\).*/\1/p')
[ "$r1" = "$total" ] && ok "prune-every-run-forgets (run 1 lists $r1)" || not_ok prune-every-run-forgets "run 1 lists $r1, $total left"
expect_exit prune-verify-archive 0 mf verify "$AR"
expect_exit prune-verify-src 0 mf verify "$SRC" "$AR" "${SO[@]}" --full

# restore: the source as it is now
expect_exit prune-restore 0 mf restore "$AR" "imap://r1@127.0.0.1:$A_IMAP_PORT" --dst-password-file "$PW/r1" \
	--ca-file "$A_CA_FILE" --json --no-progress --state "$T_TMP/rst"
check prune-restore-exact "$BENCH_BIN/compare" "$MD/src/Maildir" "$MD/r1/Maildir"

# a re-run with --prune: nothing more to forget or rewrite
expect_exit prune-rerun 0 mf backup "$SRC" "$AR" "${BK[@]}" --prune
grep -q '"event":"prune","uids":0,"objects":0,"packs_rewritten":0' "$T_TMP/last.out" && ok prune-rerun-nothing ||
	not_ok prune-rerun-nothing "$(grep '"prune"' "$T_TMP/last.out")"

# encrypted: the same steps, verify clean and restore exact
PF=$T_TMP/pass
printf 'prune pass\n' >"$PF"
chmod 600 "$PF"
EA=$T_TMP/earchive
expect_exit prune-enc-backup 0 mf backup "$SRC" "$EA" "${SO[@]}" --json --state "$T_TMP/est" --encrypt --passphrase-file "$PF"
n_in=$(doveadm -c "$A_DOVECOT_CONF" -f tab fetch -u src uid mailbox INBOX all | tail -n +2 | head -n 20 | tail -n 1)
doveadm -c "$A_DOVECOT_CONF" expunge -u src mailbox INBOX uid "1:$n_in" || not_ok expunge-2 "doveadm failed"
expect_exit prune-enc-prune 0 mf backup "$SRC" "$EA" "${SO[@]}" --json --state "$T_TMP/est" --prune --passphrase-file "$PF"
expect_exit prune-enc-verify 0 mf verify "$EA" --passphrase-file "$PF"
expect_exit prune-enc-verify-src 0 mf verify "$SRC" "$EA" "${SO[@]}" --full --passphrase-file "$PF"
expect_exit prune-enc-export 0 mf export "$EA" --maildir "$T_TMP/eout" --passphrase-file "$PF"
check prune-enc-export-exact "$BENCH_BIN/compare" "$MD/src/Maildir" "$T_TMP/eout"

# SIGKILL during backup --prune, then a re-run: verify clean, nothing lost
KA=$T_TMP/karchive
expect_exit prune-kill-backup 0 mf backup "$SRC" "$KA" "${SO[@]}" --state "$T_TMP/kst"
cp -a "$MD/src/Maildir" "$T_TMP/before-kill"
bad=0
# each round expunges a whole mailbox's worth, so most rounds rewrite a
# pack: the kills land before, during and after the rewrite
for i in 1 2 3 4 5; do
	box=$(doveadm -c "$A_DOVECOT_CONF" mailbox list -u src | sed -n "${i}p")
	[ -n "$box" ] && doveadm -c "$A_DOVECOT_CONF" expunge -u src mailbox "$box" uid 1:20
	"$MF_REL" backup "$SRC" "$KA" "${SO[@]}" --state "$T_TMP/kst" --prune -q >/dev/null 2>&1 &
	pid=$!
	sleep "0.$((RANDOM % 4))$((RANDOM % 10))"
	kill -9 "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	mf verify "$KA" >"$T_TMP/kv.out" 2>&1 || { bad=$((bad + 1)); echo "# kill $i: $(head -n 2 "$T_TMP/kv.out")" >&2; }
done
[ "$bad" = 0 ] && ok prune-kill-verify-clean || not_ok prune-kill-verify-clean "$bad of 5 kills left verify unclean"
expect_exit prune-kill-rerun 0 mf backup "$SRC" "$KA" "${SO[@]}" --state "$T_TMP/kst" --prune
expect_exit prune-kill-verify-src 0 mf verify "$SRC" "$KA" "${SO[@]}" --full
expect_exit prune-kill-verify-after 0 mf verify "$KA"

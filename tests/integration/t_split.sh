#!/usr/bin/env bash
# Issues 17, 18, 22: one big mailbox split by UID range over several
# connections (engine/sync/split.c).
#  1. ~5,200 messages in one INBOX into Dovecot over 4 connections: the
#     plan splits it (the -v line says so), the copy is exact, a re-run
#     copies nothing, a re-run after new mail copies exactly the new mail
#     (the record advanced only once every part was done).
#  2. SIGKILL at several moments of split runs (mid-APPEND included), each
#     into a fresh destination, then a re-run: exact, nothing twice. The
#     re-run settles the parts' unconfirmed APPENDs from the pass before the
#     split (the record's intents say parts wrote side by side).
#  3. The destination's sessions kicked during a split run: the parts that
#     lose their connection are given up, the last part reads the mailbox
#     again; the same run ends exact, every message counted once.
#  4. --connections 1: no split, exact (unchanged behaviour).
#  5. IMAP -> LMTP over 4 connections: split too (into 4 parts), every
#     message delivered exactly once. From a mailbox of 1,600 of the same
#     messages: enough for 4 parts of 400 (split.c), while Dovecot's LMTP
#     delivery into a Maildir slows with every message already there.
. "$(dirname "$0")/lib.sh"

dv_start S --users "src d1 d2 d3 d4 d5 d6 d7 d8 u1 lsrc" || { not_ok split-dovecot "start failed"; exit 1; }
corpus S src crash 7 || { not_ok split-corpus failed; exit 1; }
# One big INBOX: every folder's messages moved into it.
SRC_MD=$S_MAIL_ROOT/src/Maildir
for d in "$SRC_MD"/.[A-Za-z]*; do
	[ -d "$d/cur" ] && mv "$d"/cur/* "$SRC_MD/cur/"
	rm -rf "$d"
done
: >"$SRC_MD/subscriptions"
"$ROOT/scripts/dovecot.sh" fixperms "$S_DIR"
total=$(find "$SRC_MD" -type f \( -path '*/cur/*' -o -path '*/new/*' \) | wc -l)
SRC="imap://src@127.0.0.1:$S_IMAP_PORT?starttls=no"
export MAILFERRY_SRC_PASSWORD=$(cat "$S_DIR/pw/src")
mig() { # NAME USER [options]: a migrate run into USER, JSON on NAME.out, stderr on NAME.err
	local name=$1 user=$2; shift 2
	MAILFERRY_DST_PASSWORD=$(cat "$S_DIR/pw/$user") timeout 300 "$MF_REL" migrate "$SRC" \
		"imap://$user@127.0.0.1:$S_IMAP_PORT?starttls=no" --state "$T_TMP/st-$user" \
		--no-progress --json "$@" >"$T_TMP/$name.out" 2>"$T_TMP/$name.err"
}
copied() { json_field "$T_TMP/$1.out" messages_copied; }
exact() { # NAME USER
	check "$1" "$BENCH_BIN/compare" "$SRC_MD" "$S_MAIL_ROOT/$2/Maildir"
}

# 1. the split copy
mig one d1 --connections 4 -v
rc=$?
parts=$(sed -n 's/.*mailbox "INBOX": .* split into \([0-9]*\) parts.*/\1/p' "$T_TMP/one.err")
[ $rc = 0 ] && [ "$(copied one)" = "$total" ] && ok "split-copy ($total messages)" ||
	not_ok split-copy "exit $rc, copied $(copied one) of $total: $(tail -n 1 "$T_TMP/one.err")"
[ "${parts:-0}" -ge 2 ] && ok "split-planned ($parts parts)" ||
	not_ok split-planned "no split line: $(grep -c . "$T_TMP/one.err") lines of log"
exact split-exact d1
mig one-rerun d1 --connections 4
[ $? = 0 ] && [ "$(copied one-rerun)" = 0 ] &&
	[ "$(json_field "$T_TMP/one-rerun.out" messages_skipped)" = "$total" ] &&
	[ "$(json_field "$T_TMP/one-rerun.out" connections)" = 2 ] &&
	ok "split-rerun-nothing (one session pair, no mailbox opened)" ||
	not_ok split-rerun-nothing "copied $(copied one-rerun), connections $(json_field "$T_TMP/one-rerun.out" connections)"
# new mail since: exactly that is copied, and the mailbox is not read again
for i in 1 2 3; do
	printf 'From: a@example.org\r\nSubject: new %s\r\nMessage-ID: <split-new-%s@example.org>\r\n\r\nnew mail %s\r\n' \
		"$i" "$i" "$i" >"$SRC_MD/new/$(date +%s).M${i}P9.split-new"
done
"$ROOT/scripts/dovecot.sh" fixperms "$S_DIR"
total=$((total + 3))
mig one-new d1 --connections 4
[ $? = 0 ] && [ "$(copied one-new)" = 3 ] && [ "$(json_field "$T_TMP/one-new.out" messages_skipped)" = 0 ] &&
	ok split-rerun-new-only ||
	not_ok split-rerun-new-only "copied $(copied one-new), skipped $(json_field "$T_TMP/one-new.out" messages_skipped)"
exact split-rerun-new-exact d1

# 2. SIGKILL inside split runs, each into a fresh account, then a re-run.
# --batch 8 keeps many APPENDs in flight at every moment.
k=0 killed=0 settled=0
for at in 0.6 1.1 1.7 2.4; do
	k=$((k + 1))
	user=d$((k + 1))
	MAILFERRY_DST_PASSWORD=$(cat "$S_DIR/pw/$user") "$MF_REL" migrate "$SRC" \
		"imap://$user@127.0.0.1:$S_IMAP_PORT?starttls=no" --state "$T_TMP/st-$user" \
		--no-progress -q --connections 4 --batch 8 2>>"$T_TMP/crash.log" &
	pid=$!
	sleep "$at"
	kill -9 "$pid" 2>/dev/null && killed=$((killed + 1))
	wait "$pid" 2>/dev/null
	mig "crash$k" "$user" --connections 4
	rc=$?
	grep -q 'interrupted APPENDs settled' "$T_TMP/crash$k.err" && settled=$((settled + 1))
	[ $rc = 0 ] && ok "split-crash-rerun-$k (killed after $at s)" ||
		not_ok "split-crash-rerun-$k" "exit $rc: $(tail -n 1 "$T_TMP/crash$k.err")"
	exact "split-crash-exact-$k" "$user"
done
[ "$killed" -ge 3 ] && ok "split-crash-kills-landed ($killed of $k; $settled re-runs settled APPENDs)" ||
	not_ok split-crash-kills-landed "only $killed of $k runs were still copying when killed"

# 3. kicks during a split run
MAILFERRY_DST_PASSWORD=$(cat "$S_DIR/pw/d8") timeout 300 "$MF_REL" migrate "$SRC" \
	"imap://d8@127.0.0.1:$S_IMAP_PORT?starttls=no" --state "$T_TMP/st-d8" \
	--no-progress --json --connections 4 --batch 8 >"$T_TMP/kick.out" 2>"$T_TMP/kick.err" &
pid=$!
kicks=0
for at in 1.0 1.0; do
	sleep "$at"
	kill -0 "$pid" 2>/dev/null || break
	doveadm -c "$S_DOVECOT_CONF" kick d8 >/dev/null 2>&1 && kicks=$((kicks + 1))
done
wait "$pid"
rc=$?
n=$(grep -c 'part [0-9]* of [0-9]* (UIDs [0-9]*:[0-9]*) given up (its connection was lost)' "$T_TMP/kick.err")
[ $rc = 0 ] && [ "$kicks" -ge 1 ] && [ "$n" -ge 1 ] && ok "split-kick ($kicks kicks, $n parts given up)" ||
	not_ok split-kick "exit $rc, $kicks kicks, $n parts given up: $(tail -n 1 "$T_TMP/kick.err")"
[ "$(copied kick)" = "$total" ] && ok "split-kick-counted-once ($total)" ||
	not_ok split-kick-counted-once "copied $(copied kick) of $total"
exact split-kick-exact d8

# 4. --connections 1: no split
mig single d6 --connections 1 -v
[ $? = 0 ] && [ "$(copied single)" = "$total" ] && ! grep -q 'split into' "$T_TMP/single.err" &&
	ok "split-none-on-one-connection" ||
	not_ok split-none-on-one-connection "copied $(copied single); $(grep -c 'split into' "$T_TMP/single.err") split lines"
exact split-single-exact d6

# 5. IMAP -> LMTP, from lsrc: the first 1,600 of src's messages
L_MD=$S_MAIL_ROOT/lsrc/Maildir
mkdir -p "$L_MD/new" "$L_MD/tmp" "$L_MD/cur"
cp -a "$SRC_MD/dovecot-keywords" "$L_MD/" 2>/dev/null
find "$SRC_MD/cur" -type f | sort | head -n 1600 | xargs cp -a -t "$L_MD/cur/"
"$ROOT/scripts/dovecot.sh" fixperms "$S_DIR"
ltotal=$(find "$L_MD" -type f \( -path '*/cur/*' -o -path '*/new/*' \) | wc -l)
export MAILFERRY_SRC_PASSWORD=$(cat "$S_DIR/pw/lsrc") MAILFERRY_DST_PASSWORD=unused
timeout 300 "$MF_REL" migrate "imap://lsrc@127.0.0.1:$S_IMAP_PORT?starttls=no" "lmtp://127.0.0.1:$S_LMTP_PORT?rcpt=u1&starttls=no" \
	--state "$T_TMP/st-lmtp" --no-progress --json --connections 4 -v >"$T_TMP/lmtp.out" 2>"$T_TMP/lmtp.err"
rc=$?
parts=$(sed -n 's/.*mailbox "INBOX": .* split into \([0-9]*\) parts.*/\1/p' "$T_TMP/lmtp.err")
[ $rc = 0 ] && [ "$ltotal" = 1600 ] && [ "$(copied lmtp)" = "$ltotal" ] && [ "${parts:-0}" -ge 2 ] &&
	ok "split-lmtp ($ltotal messages, $parts parts)" ||
	not_ok split-lmtp "exit $rc, copied $(copied lmtp) of $ltotal, ${parts:-no} parts: $(tail -n 1 "$T_TMP/lmtp.err")"
check split-lmtp-exact python3 "$ROOT/tests/integration/trace_compare.py" --lf \
	"$S_MAIL_ROOT/u1/Maildir/new" 0 "$L_MD"

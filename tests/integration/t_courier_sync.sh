#!/usr/bin/env bash
# Courier-IMAP (scripts/courier.sh) in the incremental runs Dovecot and
# Cyrus are tested in (t_incremental, t_cyrus, t_rename, t_crash): the
# behaviour should be the same on a server with none of the fast paths
# (no CONDSTORE: a re-run is a UID FLAGS scan; no LITERAL+/MULTIAPPEND).
#   1. Dovecot -> Courier: new mail, flag and keyword changes and expunges
#      on the source travel with --sync-flags --delete; a no-change re-run
#      changes nothing; a folder renamed on the source is renamed on
#      Courier (under "INBOX."), nothing copied again. Exact each time
#      (Courier's line ends folded, keywords from courierimapkeywords/).
#   2. Courier as the source: the same changes made on Courier (no
#      CONDSTORE: found by comparing a scan with the state) travel to
#      Dovecot; exact.
#   3. kill -9 mid-copy into Courier, several times, then a full run:
#      nothing lost, nothing twice (settled by content above the last
#      confirmed APPENDUID). The corpus's messy mail: Courier drops lone
#      CRs and adds a final line end, so an interrupted APPEND of such a
#      message is only recognised by the second look (settle.c: read again
#      from the source, compared line-end-blind); before it, it was copied
#      twice.
#   4. A crash in the keyword flush (engine/sync/kwdefer.c: Courier gets a
#      folder's keywords by UID STORE after its APPENDs): killed at the
#      second STORE's answer (MAILFERRY_TEST_FAIL=kw_flush:2, the STORE
#      applied on Courier, not recorded); the user then changes every
#      message's flags and keywords on the source; then two runs with
#      --sync-flags: every message once, its flags and keywords as the
#      source's now, nothing twice.
. "$(dirname "$0")/lib.sh"

dv_start A --users "src back csrc" || { not_ok dovecot "start failed"; exit 1; }
co_start C --users "dst crash kwcrash" || { not_ok courier-start "start failed"; exit 1; }
corpus A src tiny 31 || { not_ok corpus "generation failed"; exit 1; }
corpus A csrc tiny 32 || { not_ok corpus "generation failed"; exit 1; }

MAILDIR() { echo "$A_MAIL_ROOT/$1/Maildir"; }
CO_MD() { echo "$C_MAIL_ROOT/$1/Maildir"; }
copied() { json_field "$T_TMP/last.out" messages_copied 2>/dev/null; }
field() { json_field "$T_TMP/last.out" "$1" 2>/dev/null; }
# exact DOVECOT_MAILDIR COURIER_MAILDIR: both folded as Courier rewrites
# line ends (tests/integration/fold_maildir.py), then bench/compare, which
# also counts a message that is there twice
exact() {
	local d
	d=$(mktemp -d "$T_TMP/fold.XXXXXX")
	python3 "$ROOT/tests/integration/fold_maildir.py" "$1" "$d/a" &&
		python3 "$ROOT/tests/integration/fold_maildir.py" "$2" "$d/b" --courier &&
		"$BENCH_BIN/compare" "$d/a" "$d/b" >&2
}
SRC="imap://src@127.0.0.1:$A_IMAP_PORT?starttls=no"
CO="imap://dst@127.0.0.1:$C_IMAP_PORT?starttls=no"
BACK="imap://back@127.0.0.1:$A_IMAP_PORT?starttls=no"
TO=(--src-password-file "$A_DIR/pw/src" --dst-password-file "$C_DIR/pw/dst" --json --no-progress
	--state "$T_TMP/st1")
FROM=(--src-password-file "$C_DIR/pw/dst" --dst-password-file "$A_DIR/pw/back" --json --no-progress
	--state "$T_TMP/st2")
SYNC=(--sync-flags --delete)
# changes NAME PORT USER SEED DOVECOT_MAILDIR COURIER_MAILDIR -- RUN...: the
# user changes the account on PORT (mutate.py: new mail, flags, keywords,
# expunges), RUN syncs them (its new mail copied, flags and expunges
# applied), both sides then equal; then RUN again changes nothing.
changes() {
	local name=$1 port=$2 user=$3 seed=$4 a=$5 b=$6 m new c fl ex
	shift 7
	m=$(python3 "$ROOT/tests/integration/mutate.py" "$port" "$user" "pw-$user-secret" "$seed")
	echo "# $name: $m"
	new=$(echo "$m" | sed -n 's/^mutate: \([0-9]*\) new.*/\1/p')
	expect_exit "$name-changes" 0 mf migrate "$@" "${SYNC[@]}"
	c=$(copied) fl=$(field flags_synced) ex=$(field expunged)
	[ "$c" = "$new" ] && [ "${fl:-0}" -gt 0 ] && [ "${ex:-0}" -gt 0 ] &&
		ok "$name-changes-counts ($c new, $fl flag changes, $ex expunged)" ||
		not_ok "$name-changes-counts" "copied ${c:-?} of $new new, flags ${fl:-?}, expunged ${ex:-?} ($m)"
	check "$name-changes-exact" exact "$a" "$b"
	expect_exit "$name-noop" 0 mf migrate "$@" "${SYNC[@]}"
	c=$(copied) fl=$(field flags_synced) ex=$(field expunged)
	[ "$c" = 0 ] && [ "${fl:-0}" = 0 ] && [ "${ex:-0}" = 0 ] && ok "$name-noop-nothing" ||
		not_ok "$name-noop-nothing" "copied ${c:-?}, flags ${fl:-?}, expunged ${ex:-?}"
}

# ---- 1. Dovecot -> Courier ----
expect_exit to-courier 0 mf migrate "$SRC" "$CO" "${TO[@]}" "${SYNC[@]}"
check to-courier-exact exact "$(MAILDIR src)" "$(CO_MD dst)"

changes to-courier "$A_IMAP_PORT" src 7 "$(MAILDIR src)" "$(CO_MD dst)" -- "$SRC" "$CO" "${TO[@]}"

# a folder renamed on the source: renamed on Courier, not copied again
python3 - "$A_IMAP_PORT" <<'PY' || not_ok rename-setup "RENAME on the source failed"
import imaplib, sys
m = imaplib.IMAP4('127.0.0.1', int(sys.argv[1])); m.login('src', 'pw-src-secret')
assert m.rename('Lists.dev', 'Mailing.devel')[0] == 'OK'
m.logout()
PY
expect_exit to-courier-rename 0 mf migrate "$SRC" "$CO" "${TO[@]}" "${SYNC[@]}"
c=$(copied) r=$(field mailboxes_renamed)
[ "$c" = 0 ] && [ "$r" = 1 ] && [ -d "$(CO_MD dst)/.Mailing.devel" ] && [ ! -d "$(CO_MD dst)/.Lists.dev" ] &&
	ok "to-courier-rename-renamed ($r renamed, $c copied)" ||
	not_ok to-courier-rename-renamed "renamed ${r:-?}, copied ${c:-?}: $(ls -a "$(CO_MD dst)" | tr '\n' ' ')"
check to-courier-rename-exact exact "$(MAILDIR src)" "$(CO_MD dst)"

# ---- 2. Courier as the source ----
expect_exit from-courier 0 mf migrate "$CO" "$BACK" "${FROM[@]}" "${SYNC[@]}"
check from-courier-exact exact "$(MAILDIR back)" "$(CO_MD dst)"
changes from-courier "$C_IMAP_PORT" dst 8 "$(MAILDIR back)" "$(CO_MD dst)" -- "$CO" "$BACK" "${FROM[@]}"

# ---- 3. kill -9 mid-copy into Courier ----
# One connection keeps the copy long enough for the kills to land in it.
# A kill is timed by progress, not by the clock (a fast machine copies the
# corpus before any fixed delay is over): each run is killed once a few
# more messages have landed on Courier than before it started. A resumed
# run first waits out the settle grace (3 s after the killed run's last
# intent), then copies; the poll simply waits through it.
args=(migrate "imap://csrc@127.0.0.1:$A_IMAP_PORT?starttls=no" "imap://crash@127.0.0.1:$C_IMAP_PORT?starttls=no"
	--src-password-file "$A_DIR/pw/csrc" --dst-password-file "$C_DIR/pw/crash"
	--state "$T_TMP/st3" --no-progress --connections 1)
on_courier() { find "$(CO_MD crash)" \( -path '*/cur/*' -o -path '*/new/*' \) -type f 2>/dev/null | grep -c .; }
total=$(find "$(MAILDIR csrc)" \( -path '*/cur/*' -o -path '*/new/*' \) -type f | grep -c .)
killed=0
for i in 1 2 3 4 5; do
	"$MF_REL" "${args[@]}" -q 2>>"$T_TMP/crash.log" &
	pid=$!
	target=$(($(on_courier) + 3 + RANDOM % 12))
	[ "$target" -lt "$total" ] || target=$((total - 1))
	for _ in $(seq 1 1500); do # 30 s at most
		kill -0 "$pid" 2>/dev/null || break
		[ "$(on_courier)" -ge "$target" ] && break
		sleep 0.02
	done
	kill -9 "$pid" 2>/dev/null && killed=$((killed + 1))
	wait "$pid" 2>/dev/null
done
n_co=$(find "$(CO_MD crash)" \( -path '*/cur/*' -o -path '*/new/*' \) -type f 2>/dev/null | grep -c .)
expect_exit crash-final-run 0 "$MF_REL" "${args[@]}" --json
echo "# $killed of 5 runs killed mid-way ($n_co messages on Courier then); the final run copied $(copied)" >&2
[ "$killed" -ge 2 ] && ok "crash-kills-landed ($killed)" || not_ok crash-kills-landed "only $killed of 5 runs were still copying when killed"
check "crash-exactly-once ($killed kills)" exact "$(MAILDIR csrc)" "$(CO_MD crash)"

# ---- 4. a crash in the keyword flush ----
# Each message is APPENDed with its system flags only; after a folder's
# last APPEND its keywords go by UID STORE, grouped by keyword set. The
# run dies (SIGKILL) once the second STORE is answered: the messages are
# intents with their destination UIDs, their keywords partly stored; the
# next run settles them by UID and stores the keywords again.
kargs=(migrate "imap://csrc@127.0.0.1:$A_IMAP_PORT?starttls=no" "imap://kwcrash@127.0.0.1:$C_IMAP_PORT?starttls=no"
	--src-password-file "$A_DIR/pw/csrc" --dst-password-file "$C_DIR/pw/kwcrash"
	--state "$T_TMP/st4" --no-progress)
MAILFERRY_TEST_FAIL=kw_flush:2 "$MF_REL" "${kargs[@]}" -q 2>"$T_TMP/kwcrash.log"
rc=$?
[ "$rc" = 137 ] && ok "kw-flush-killed" || not_ok kw-flush-killed "exit $rc, not 137 (SIGKILL): $(tail -n 3 "$T_TMP/kwcrash.log")"
# Before the resume the user changes every message's flags and keywords on
# the source, those whose keywords still wait included: the resumed run
# must not let HIGHESTMODSEQ pass their changes (changes.c reads them
# again the run after, once the records are done).
python3 "$ROOT/tests/integration/mutate.py" "$A_IMAP_PORT" csrc "$(cat "$A_DIR/pw/csrc")" 41 --flags-only --percent 100 >/dev/null
expect_exit kw-flush-resumed 0 "$MF_REL" "${kargs[@]}" "${SYNC[@]}" --json -v
n=$(cat "$T_TMP/last.err" "$T_TMP/last.out" | sed -n 's/.*keywords of \([0-9]*\) settled messages are stored again.*/\1/p' | paste -sd+ | bc)
[ "${n:-0}" -gt 0 ] && ok "kw-flush-restored ($n messages' keywords stored again)" ||
	not_ok kw-flush-restored "the resumed run stored no keywords again"
expect_exit kw-flush-after 0 "$MF_REL" "${kargs[@]}" "${SYNC[@]}" --json
check "kw-flush-exactly-once" exact "$(MAILDIR csrc)" "$(CO_MD kwcrash)"

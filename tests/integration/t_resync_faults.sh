#!/usr/bin/env bash
# Issue 3 "bad input": a source that claims QRESYNC but answers it wrongly
# (VANISHED naming UIDs it never gave, VANISHED that does not parse, a
# refused QRESYNC EXAMINE and CHANGEDSINCE) or whose HIGHESTMODSEQ goes
# backwards. Each time: detected, logged once, the mailbox is read by the
# next method, nothing is deleted on the destination on the strength of the
# bad answer, and the real flag change still arrives.
# Source: tests/faults/fake_imap.py (INBOX, 3 messages); destination: Dovecot.
. "$(dirname "$0")/lib.sh"

dv_start D --users "dst1 dst2 dst3 dst4" || { not_ok resync-dovecot "start failed"; exit 1; }

i=0
for mode in bad-vanished unparsable modseq-back refuse; do
	i=$((i + 1))
	dst=dst$i state=$T_TMP/st-$mode
	run() {
		mf migrate "imap://u@127.0.0.1:$FAKE_PORT?starttls=no" "imap://$dst@127.0.0.1:$D_IMAP_PORT?starttls=no" \
			--src-password-file "$D_DIR/pw/$dst" --dst-password-file "$D_DIR/pw/$dst" --state "$state" \
			--json --no-progress --timeout 10 "$@"
	}
	fake_imap none --qresync good --max-seconds 30 --linger 0.2 || { not_ok "$mode-server" "did not start"; continue; }
	expect_exit "$mode-initial" 0 run
	wait "$T_LAST_PID" 2>/dev/null
	case $mode in
	modseq-back) fake_imap none --qresync good --highestmodseq 5 --flags3 '\Flagged' --max-seconds 30 --linger 0.2 ;;
	*) fake_imap none --qresync "$mode" --highestmodseq 20 --flags3 '\Flagged' --max-seconds 30 --linger 0.2 ;;
	esac
	expect_exit "$mode-rerun" 0 run --sync-flags --delete
	wait "$T_LAST_PID" 2>/dev/null
	case $mode in
	refuse) want=2 pat='refused' ;; # the EXAMINE, then the CHANGEDSINCE
	*) want=1 pat='not usable' ;;
	esac
	n=$(grep -c "$pat" "$T_TMP/last.err")
	[ "$n" = "$want" ] && ok "$mode-logged-once ($(grep -m1 "$pat" "$T_TMP/last.err" | cut -c1-150))" ||
		not_ok "$mode-logged-once" "$n lines match '$pat': $(head -n 4 "$T_TMP/last.err" | tr '\n' '|')"
	m=$(grep -o '"method":"[a-z-]*"' "$T_TMP/last.out" | head -n 1)
	case $mode in
	bad-vanished | unparsable) wm='"method":"condstore"' ;;
	*) wm='"method":"scan"' ;;
	esac
	[ "$m" = "$wm" ] && ok "$mode-next-method ($m)" || not_ok "$mode-next-method" "got $m, want $wm"
	imap_session "$D_IMAP_PORT" <<<"a LOGIN $dst pw-$dst-secret
b SELECT INBOX
c FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])" >"$T_TMP/dst-$mode"
	n=$(grep -c '^\* [0-9]* FETCH' "$T_TMP/dst-$mode")
	[ "$n" = 3 ] && ok "$mode-nothing-deleted" || not_ok "$mode-nothing-deleted" "destination holds $n messages, want 3"
	grep -A1 'FETCH (FLAGS (\\Flagged' "$T_TMP/dst-$mode" | grep -q 'fake three' &&
		ok "$mode-flag-change-arrives" || not_ok "$mode-flag-change-arrives" "$(grep FETCH "$T_TMP/dst-$mode" | tr '\n' '|')"
	e=$(json_field "$T_TMP/last.out" expunged)
	[ "$e" = 0 ] && ok "$mode-no-expunge" || not_ok "$mode-no-expunge" "expunged $e"
done

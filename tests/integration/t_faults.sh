#!/usr/bin/env bash
# Issue 2 "bad input": a scripted source server that misbehaves in ways a
# real one will not on demand (tests/faults/fake_imap.py), a real Dovecot as
# the destination. Each fault: a non-zero exit of its class (README "Exit
# status") with a clear one-line error naming the account; no half message
# on the destination; a later clean run copies everything exactly once.
. "$(dirname "$0")/lib.sh"

dv_start D --users "dst" || { not_ok faults-dovecot "start failed"; exit 1; }
dst_count() { # mailbox message count on the destination
	imap_session "$D_IMAP_PORT" <<<$'a LOGIN dst pw-dst-secret\nb STATUS INBOX (MESSAGES)' |
		sed -n 's/.*(MESSAGES \([0-9]*\)).*/\1/p'
}

i=0
# FAULT:EXIT — 3: the connection could not be kept (the fake server is gone
# when the reconnects come), 4: the login was refused, 1: a protocol error
# that fails the mailbox
for fc in disconnect-mid-literal:3 literal-too-long:1 truncated:3 garbage:3 bad-login:4 slow-loris:3 no-reply:3; do
	fault=${fc%:*} code=${fc#*:}
	i=$((i + 1))
	fake_imap "$fault" --max-seconds 30 || { not_ok "$fault-server" "fake server did not start"; continue; }
	state=$T_TMP/st-$fault
	expect_exit "$fault-exit" "$code" mf migrate "imap://u@127.0.0.1:$FAKE_PORT?starttls=no" \
		"imap://dst@127.0.0.1:$D_IMAP_PORT?starttls=no" --src-password-file "$D_DIR/pw/dst" \
		--dst-password-file "$D_DIR/pw/dst" --state "$state" --timeout 2 --retries 2 --no-progress
	line=$(grep 'error' "$T_TMP/last.err" | head -n 1)
	if [ "$(grep -c 'error' "$T_TMP/last.err")" -ge 1 ] && [[ $line == *"source u@127.0.0.1"* ]]; then
		ok "$fault-message (${line#mailferry: error: })"
	else
		not_ok "$fault-message" "$(head -n 3 "$T_TMP/last.err" | tr '\n' '|')"
	fi
	n=$(dst_count)
	[ "${n:-x}" = 0 ] && ok "$fault-nothing-partial" || not_ok "$fault-nothing-partial" "destination holds $n messages"
done

# After faults, a clean source: everything copied once, and again nothing.
fake_imap none --max-seconds 30
expect_exit clean-after-faults 0 mf migrate "imap://u@127.0.0.1:$FAKE_PORT?starttls=no" \
	"imap://dst@127.0.0.1:$D_IMAP_PORT?starttls=no" --src-password-file "$D_DIR/pw/dst" \
	--dst-password-file "$D_DIR/pw/dst" --state "$T_TMP/st-disconnect-mid-literal" --json --no-progress
n=$(dst_count)
[ "$n" = 3 ] && ok "clean-after-faults-count" || not_ok clean-after-faults-count "destination holds $n messages, want 3"

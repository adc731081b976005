#!/usr/bin/env bash
# bench/until_delivered.sh NEW_DIR COUNT [-- CMD...] — runs CMD (if any),
# then waits until NEW_DIR (a Maildir's new/) holds COUNT files: an SMTP
# relay (Postfix) answers 250 when a message is queued, and hands it on
# later, so an IMAP -> SMTP migration's time runs until the mail is in the
# mailbox. Polls every 20 ms, gives up after BENCH_DELIVER_TIMEOUT seconds
# (default 600). Exit: CMD's status, else 1 if not all arrived.
set -uo pipefail
dnew=$1 want=$2
shift 2
rc=0
if [ "${1:-}" = -- ]; then
	shift
	"$@"
	rc=$?
fi
end=$((SECONDS + ${BENCH_DELIVER_TIMEOUT:-600}))
count() { find "$dnew" -maxdepth 1 -type f 2>/dev/null | wc -l; }
while [ "$(count)" -lt "$want" ]; do
	if [ $SECONDS -ge $end ]; then
		echo "until_delivered: $(count) of $want in $dnew after ${BENCH_DELIVER_TIMEOUT:-600} s" >&2
		exit 1
	fi
	sleep 0.02
done
exit $rc

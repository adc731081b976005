#!/usr/bin/env bash
# Issue 3 crash test: a migration of >= 5,000 messages is killed with
# SIGKILL at 12 random moments (mid-APPEND included) and resumed each time;
# at the end the destination holds exactly the source set: nothing missing,
# nothing twice (compare counts duplicates). CRASH_KILLS / CRASH_PROFILE
# make it bigger (make soak).
. "$(dirname "$0")/lib.sh"

kills=${CRASH_KILLS:-12}
dv_start C --users "src dst" || { not_ok crash-dovecot "start failed"; exit 1; }
corpus C src "${CRASH_PROFILE:-crash}" 5 || { not_ok crash-corpus failed; exit 1; }
run() { "$MF_REL" migrate "imap://src@127.0.0.1:$C_IMAP_PORT?starttls=no" \
	"imap://dst@127.0.0.1:$C_IMAP_PORT?starttls=no" --src-password-file "$C_DIR/pw/src" \
	--dst-password-file "$C_DIR/pw/dst" --state "$C_DIR/state-mf" --no-progress "$@"; }
killed=0
for i in $(seq 1 "$kills"); do
	run -q 2>>"$T_TMP/crash.log" &
	pid=$!
	# Up to 4.5 s: a resumed run first waits out the settle grace (3 s).
	sleep "$(awk -v r=$RANDOM 'BEGIN { printf "%.2f", 0.2 + 4.3 * r / 32768 }')"
	kill -9 "$pid" 2>/dev/null && killed=$((killed + 1))
	wait "$pid" 2>/dev/null
done
expect_exit crash-final-run 0 run --json
n=$(json_field "$T_TMP/last.out" messages_skipped)
echo "# $killed of $kills runs killed mid-way; final run: $(json_field "$T_TMP/last.out" messages_copied) copied" >&2
check "crash-exactly-once ($killed kills)" "$BENCH_BIN/compare" "$C_DIR/mail/src/Maildir" "$C_DIR/mail/dst/Maildir"

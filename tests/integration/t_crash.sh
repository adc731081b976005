#!/usr/bin/env bash
# Issue 3 crash test: a migration of >= 5,000 messages is killed with
# SIGKILL at 12 random moments (mid-APPEND included) and resumed each time;
# at the end the destination holds exactly the source set: nothing missing,
# nothing twice (compare counts duplicates). One connection and small
# batches keep the copy slow enough for the kills to land inside it.
# CRASH_KILLS / CRASH_PROFILE make it bigger (make soak). CRASH_WINDOW
# (seconds, default 0.35; an uninterrupted copy takes ~5.5 s here) is how
# far into a run a kill may come: more kills need a shorter window, or the
# copy is over before the kills are.
. "$(dirname "$0")/lib.sh"

kills=${CRASH_KILLS:-12}
window=${CRASH_WINDOW:-0.35}
dv_start C --users "src dst" || { not_ok crash-dovecot "start failed"; exit 1; }
corpus C src "${CRASH_PROFILE:-crash}" 5 || { not_ok crash-corpus failed; exit 1; }
args=(migrate "imap://src@127.0.0.1:$C_IMAP_PORT?starttls=no" "imap://dst@127.0.0.1:$C_IMAP_PORT?starttls=no"
	--src-password-file "$C_DIR/pw/src" --dst-password-file "$C_DIR/pw/dst"
	--state "$C_DIR/state-mf" --no-progress --connections 1 --batch 4)
killed=0 wait_grace=0
for i in $(seq 1 "$kills"); do
	"$MF_REL" "${args[@]}" -q 2>>"$T_TMP/crash.log" &
	pid=$!
	# A resumed run first waits out the settle grace (3 s after the killed
	# run's last intent), then copies: kill it somewhere in its copying.
	sleep "$(awk -v r=$RANDOM -v g=$wait_grace -v w="$window" 'BEGIN { printf "%.2f", g + 0.05 + w * r / 32768 }')"
	if kill -9 "$pid" 2>/dev/null; then
		killed=$((killed + 1)); wait_grace=3
	else
		wait_grace=0
	fi
	wait "$pid" 2>/dev/null
done
expect_exit crash-final-run 0 "$MF_REL" "${args[@]}" --json
echo "# $killed of $kills runs killed mid-way; the final run copied $(json_field "$T_TMP/last.out" messages_copied)" >&2
[ "$killed" -ge $((kills * 2 / 3)) ] && ok "crash-kills-landed ($killed)" || not_ok crash-kills-landed "only $killed of $kills runs were still copying when killed"
check "crash-exactly-once ($killed kills)" "$BENCH_BIN/compare" "$C_DIR/mail/src/Maildir" "$C_DIR/mail/dst/Maildir"

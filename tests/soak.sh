#!/usr/bin/env bash
# tests/soak.sh — `make soak`: a migration of >= 20,000 messages through
# tests/faults/fault_proxy.py on both sides, interrupted SOAK_KILLS times
# (default 20) by SIGKILL and SOAK_DROPS times (default 20) by the proxy
# dropping every connection of one side (FIN or RST, on cue), in random
# order at random moments, resumed each time on the same state; then one
# clean run. Prints the lost (missing) and duplicated counts from
# bench/compare, which must both be 0, and "ok - ..." / "not ok - ..." lines.
#
# The corpus: bench/corpus's "crash" profile (~5,200 small messages in 3
# folders) four times with different seeds; the copies of seeds 2-4 are
# moved under folders Soak2..Soak4 (each folder keeps its own
# dovecot-keywords), so the account has ~20,800 messages in 12 folders.
# One connection pair and small batches keep the copy slow enough that
# every interruption lands inside it. SOAK_SEED=n replays a run.
. "$(dirname "$0")/integration/lib.sh"

kills=${SOAK_KILLS:-20} drops=${SOAK_DROPS:-20} window=${SOAK_WINDOW:-0.8}
seed=${SOAK_SEED:-$RANDOM}
RANDOM=$seed
echo "# soak seed $seed: $kills kills, $drops drops" >&2
dv_start S --users "src dst" || { not_ok soak-dovecot "start failed"; exit 1; }
md=$S_DIR/mail/src/Maildir
corpus S src crash 1 || { not_ok soak-corpus failed; exit 1; }
for i in 2 3 4; do
	g=$T_TMP/gen$i
	"$BENCH_BIN/corpus" --out "$g" --profile crash --seed "$i" >/dev/null || { not_ok soak-corpus "seed $i"; exit 1; }
	mkdir -p "$md/.Soak$i"
	mv "$g"/cur "$g"/new "$g"/tmp "$g"/dovecot-keywords "$md/.Soak$i/"
	: >"$md/.Soak$i/maildirfolder"
	for d in "$g"/.[!.]*; do mv "$d" "$md/.Soak$i$(basename "$d")"; done
	rm -rf "$g"
done
"$ROOT/scripts/dovecot.sh" fixperms "$S_DIR"
total=$(find "$md" -type f \( -path '*/cur/*' -o -path '*/new/*' \) | wc -l)
echo "# source: $total messages in $(find "$md" -maxdepth 1 -name '.*' -type d | wc -l) folders + INBOX" >&2
[ "$total" -ge 20000 ] || { not_ok soak-corpus "only $total messages"; exit 1; }

declare -A P PID
for k in src dst; do
	t_spawn python3 "$FAULTS/fault_proxy.py" --target "$S_IMAP_PORT" --max-seconds 7200 \
		--events "$T_TMP/events" >"$T_TMP/fp.$k.out" 2>"$T_TMP/fp.$k.err"
	PID[$k]=$T_LAST_PID
done
for k in src dst; do
	l=
	for _ in $(seq 1 400); do
		read -r l p <"$T_TMP/fp.$k.out" 2>/dev/null && [ "$l" = PORT ] && break
		sleep 0.05
	done
	[ "$l" = PORT ] || { not_ok soak-proxy "$k did not start"; exit 1; }
	P[$k]=$p
done
args=(migrate "imap://src@127.0.0.1:${P[src]}?starttls=no" "imap://dst@127.0.0.1:${P[dst]}?starttls=no"
	--src-password-file "$S_DIR/pw/src" --dst-password-file "$S_DIR/pw/dst"
	--state "$S_DIR/state-mf" --no-progress --connections 1 --batch 4 --timeout 10)

# the order of the interruptions: kills and drops shuffled
plan=()
for _ in $(seq 1 "$kills"); do plan+=(kill); done
for _ in $(seq 1 "$drops"); do plan+=(drop); done
for ((i = ${#plan[@]} - 1; i > 0; i--)); do
	j=$((RANDOM % (i + 1))); t=${plan[i]}; plan[i]=${plan[j]}; plan[j]=$t
done

killed=0 dropped=0 bad=0 grace=0
for what in "${plan[@]}"; do
	# mailferry itself must get the SIGKILL, not a `timeout` around it: a
	# watchdog bounds the run instead
	logsz=$(stat -c %s "$T_TMP/soak.log" 2>/dev/null || echo 0)
	"$MF_REL" "${args[@]}" 2>>"$T_TMP/soak.log" &
	pid=$!
	(sleep 120; kill -9 "$pid" 2>/dev/null) &
	dog=$!
	# a resumed run first waits out the settle grace (3 s after the last
	# intent of the interrupted run), then copies: interrupt it in there
	sleep "$(awk -v r=$RANDOM -v g=$grace -v w="$window" 'BEGIN { printf "%.2f", g + 0.1 + w * r / 32768 }')"
	if ! kill -0 "$pid" 2>/dev/null; then
		wait "$pid"; rc=$?
		kill "$dog" 2>/dev/null; wait "$dog" 2>/dev/null
		[ $rc -le 1 ] || { bad=$((bad + 1)); echo "# a run ended with exit $rc" >&2; }
		grace=0; continue # finished before: the interruption missed
	fi
	if [ "$what" = kill ]; then
		kill -9 "$pid" 2>/dev/null && killed=$((killed + 1))
		wait "$pid" 2>/dev/null
	else
		# The run reconnects (--retries) and resumes its mailbox: the drop
		# landed when it says so. Then it is killed a moment later, in the
		# resumed pass, so that it does not run to the end and the
		# interruptions still to come find work left.
		side=src; [ $((RANDOM % 2)) = 0 ] && side=dst
		kill -"$([ $((RANDOM % 2)) = 0 ] && echo USR1 || echo USR2)" "${PID[$side]}"
		for _ in $(seq 1 100); do
			tail -c +"$((logsz + 1))" "$T_TMP/soak.log" | grep -q 'reconnecting in' && break
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if tail -c +"$((logsz + 1))" "$T_TMP/soak.log" | grep -q 'reconnecting in'; then
			dropped=$((dropped + 1))
			sleep "$(awk -v r=$RANDOM 'BEGIN { printf "%.2f", 0.3 + 2.0 * r / 32768 }')"
			kill -9 "$pid" 2>/dev/null
			wait "$pid" 2>/dev/null
		else
			wait "$pid"; rc=$?
			[ $rc -le 1 ] || { bad=$((bad + 1)); echo "# a dropped run ended with exit $rc" >&2; }
		fi
	fi
	kill "$dog" 2>/dev/null; wait "$dog" 2>/dev/null
	grace=3
done
sleep 3
expect_exit soak-final-run 0 timeout 600 "$MF_REL" "${args[@]}" --json
echo "# $killed kills and $dropped drops landed; the final run copied $(json_field "$T_TMP/last.out" messages_copied)" >&2
[ "$bad" = 0 ] && ok soak-runs-end-cleanly || not_ok soak-runs-end-cleanly "$bad runs ended with an exit other than 0 or 1 (see above)"
[ "$killed" -ge $((kills * 3 / 4)) ] && ok "soak-kills-landed ($killed of $kills)" ||
	not_ok soak-kills-landed "only $killed of $kills"
[ "$dropped" -ge $((drops * 3 / 4)) ] && ok "soak-drops-landed ($dropped of $drops)" ||
	not_ok soak-drops-landed "only $dropped of $drops"
"$BENCH_BIN/compare" "$md" "$S_DIR/mail/dst/Maildir" --json >"$T_TMP/cmp.json" 2>"$T_TMP/cmp.err"
read -r lost dup msgs < <(python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
print(d.get("missing", "?"), d.get("duplicate", "?"), d.get("messages", "?"))' "$T_TMP/cmp.json" 2>/dev/null)
echo "soak: $total messages, $killed SIGKILLs, $dropped dropped connections: lost ${lost:-?}, duplicated ${dup:-?}"
[ "${lost:-x}" = 0 ] && [ "${dup:-x}" = 0 ] && ok "soak-exactly-once" ||
	not_ok soak-exactly-once "lost ${lost:-?}, duplicated ${dup:-?} ($(head -c 300 "$T_TMP/cmp.json"))"
check soak-compare-exact "$BENCH_BIN/compare" "$md" "$S_DIR/mail/dst/Maildir"

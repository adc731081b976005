#!/usr/bin/env bash
# tests/run.sh [NAME] — runs unit tests (ASan/UBSan build), short fuzz runs and
# integration tests against private servers; prints "N passed, N failed".
# Every test prints "ok - NAME" or "not ok - NAME: reason"; this script counts.
#
# Tests run MF_TEST_JOBS at a time (default 3): most of an integration
# test's time is spent waiting on servers, and lib.sh gives every test its
# own directory and free ports (handed out under a lock), so they do not
# meet. The longest tests start first, so the run ends when the longest
# one does rather than with it. MF_TEST_JOBS=1 runs them one after another.
set -u
cd "$(dirname "$0")/.."
ROOT=$PWD
ONLY=${*:-} # names of the tests to run (default: all)
JOBS=${MF_TEST_JOBS:-3}
LOG=$ROOT/build/test-logs
mkdir -p "$LOG"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export MF_ROOT=$ROOT

# The slowest integration tests (seconds in a full run, 3 at a time,
# 2026-12-06: build/test-logs/durations), started first; the others follow
# in name order.
SLOW="t_pop3_migrate t_status t_oauth t_per_host t_courier t_split t_status_browser
t_reconnect t_threads t_smtp_client t_smtp_settle t_hostile_bounds t_pop3_client
t_fault_proxy t_crash t_courier_sync t_smtp_migrate t_selective t_dovecot_smoke t_faults
t_incremental t_restore t_rate t_status_prometheus"

# One test: its output to LOG/KIND-NAME.log, then its result lines (and, on
# failure, the end of its stderr) printed in one piece.
run_one() { # kind name cmd...
	local kind=$1 name=$2; shift 2
	local out=$LOG/$kind-$name.log rc msg t=$SECONDS
	"$@" >"$out" 2>"$out.err"; rc=$?
	echo "$((SECONDS - t)) $name" >>"$LOG/durations"
	msg=$(grep -E '^(ok|not ok) - ' "$out")
	if [ $rc -ne 0 ] && ! grep -q '^not ok - ' "$out"; then
		echo "not ok - $name: exited $rc without a result line (see $out.err)" >>"$out"
		msg+=$'\n'"not ok - $name: exited $rc without a result line (see $out.err)"
		msg+=$'\n'$(tail -n 20 "$out.err" | sed 's/^/    /')
	elif grep -q '^not ok - ' "$out"; then
		msg+=$'\n'$(tail -n 20 "$out.err" | sed 's/^/    /')
	fi
	printf '%s\n' "$msg"
}

logs=()
start() { # kind name cmd...
	[ -n "$ONLY" ] && [[ " $ONLY " != *" $2 "* ]] && return
	logs+=("$LOG/$1-$2.log")
	rm -f "$LOG/$1-$2.log"
	while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n; done
	run_one "$@" &
}

t0=$(date +%s)
rm -f "$LOG/durations"
integ=()
for n in $SLOW; do [ -f "tests/integration/$n.sh" ] && integ+=("$n"); done
for s in tests/integration/t_*.sh; do
	n=$(basename "$s" .sh)
	case " $(echo $SLOW) " in *" $n "*) continue ;; esac
	integ+=("$n")
done
for n in "${integ[@]}"; do start integ "$n" bash "tests/integration/$n.sh"; done
for t in build/asan/tests/test_*; do
	[ -x "$t" ] && start unit "$(basename "$t")" "$t"
done
for f in build/fuzz/fuzz_*; do
	[ -x "$f" ] && start fuzz "$(basename "$f")" tests/fuzz/run-short.sh "$f"
done
wait

passed=0; failed=0
for out in "${logs[@]}"; do
	[ -f "$out" ] || { echo "not ok - $(basename "$out" .log): no log"; failed=$((failed + 1)); continue; }
	passed=$((passed + $(grep -c '^ok - ' "$out")))
	failed=$((failed + $(grep -c '^not ok - ' "$out")))
done
# the slowest, to keep the whole run (CI: under 15 minutes) in view
[ -f "$LOG/durations" ] && echo "# slowest: $(sort -rn "$LOG/durations" | head -n 8 | awk '{printf "%s%s %ss", (NR > 1 ? ", " : ""), $2, $1}')"
echo "($((($(date +%s) - t0) / 60)) min $((($(date +%s) - t0) % 60)) s, $JOBS at a time)"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]

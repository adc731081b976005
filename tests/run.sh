#!/usr/bin/env bash
# tests/run.sh [NAME] — runs unit tests (ASan/UBSan build), short fuzz runs and
# integration tests against a private Dovecot; prints "N passed, N failed".
# Every test prints "ok - NAME" or "not ok - NAME: reason"; this script counts.
set -u
cd "$(dirname "$0")/.."
ROOT=$PWD
ONLY=${1:-}
LOG=$ROOT/build/test-logs
mkdir -p "$LOG"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export MF_ROOT=$ROOT

passed=0; failed=0
count() { # file
	local p f
	p=$(grep -c '^ok - ' "$1"); f=$(grep -c '^not ok - ' "$1")
	passed=$((passed + p)); failed=$((failed + f))
}
run_one() { # kind name cmd...
	local kind=$1 name=$2; shift 2
	local out=$LOG/$kind-$name.log rc
	"$@" >"$out" 2>"$out.err"; rc=$?
	grep -E '^(ok|not ok) - ' "$out"
	if [ $rc -ne 0 ] && ! grep -q '^not ok - ' "$out"; then
		echo "not ok - $name: exited $rc without a result line (see $out.err)" | tee -a "$out"
		tail -n 20 "$out.err" | sed 's/^/    /'
	elif grep -q '^not ok - ' "$out"; then
		tail -n 20 "$out.err" | sed 's/^/    /'
	fi
	count "$out"
}

for t in build/asan/tests/test_*; do
	[ -x "$t" ] || continue
	n=$(basename "$t")
	[ -n "$ONLY" ] && [ "$ONLY" != "$n" ] && continue
	run_one unit "$n" "$t"
done

for f in build/fuzz/fuzz_*; do
	[ -x "$f" ] || continue
	n=$(basename "$f")
	[ -n "$ONLY" ] && [ "$ONLY" != "$n" ] && continue
	run_one fuzz "$n" tests/fuzz/run-short.sh "$f"
done

for s in tests/integration/t_*.sh; do
	[ -f "$s" ] || continue
	n=$(basename "$s" .sh)
	[ -n "$ONLY" ] && [ "$ONLY" != "$n" ] && continue
	run_one integ "$n" bash "$s"
done

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]

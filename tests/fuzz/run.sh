#!/usr/bin/env bash
# tests/fuzz/run.sh [BIN...] — `make fuzz`: runs each libFuzzer target (all
# of build/fuzz/fuzz_* when none is named) one after the other, for
# FUZZ_SECONDS each (default 300) or, if FUZZ_RUNS is set, for that many
# executions (inputs up to FUZZ_MAX_LEN bytes, default 65536), and prints per target: executions, exec/s, coverage (cov:
# edges, ft: features, from -print_final_stats=1 and the last status line)
# and the corpus size. One fuzzer at a time, under nice: the machine is
# shared.
#
# The working corpus persists in build/fuzz/corpus/NAME (seeded from the
# checked-in tests/fuzz/corpus/NAME), so a second `make fuzz` goes on where
# the first stopped. A crash is kept in build/fuzz/crashes/ and printed in
# base64; the script then exits 1 (turn it into a seed under
# tests/fuzz/corpus/NAME and a unit test before fixing it).
set -u
cd "$(dirname "$0")/../.."
[ $# -gt 0 ] || set -- build/fuzz/fuzz_*
secs=${FUZZ_SECONDS:-300}
mkdir -p build/fuzz/crashes
failed=0
printf '%-20s %14s %10s %8s %8s %8s %s\n' target executions exec/s cov ft corpus result
for bin in "$@"; do
	[ -x "$bin" ] || continue
	name=$(basename "$bin")
	corp=build/fuzz/corpus/${name#fuzz_}
	seeds=tests/fuzz/corpus/${name#fuzz_}
	log=build/fuzz/$name.log
	mkdir -p "$corp"
	[ -d "$seeds" ] && cp -n "$seeds"/* "$corp"/ 2>/dev/null
	if [ -n "${FUZZ_RUNS:-}" ]; then limit=(-runs="$FUZZ_RUNS"); else limit=(-max_total_time="$secs"); fi
	nice -n 10 "$bin" "${limit[@]}" -print_final_stats=1 -max_len="${FUZZ_MAX_LEN:-65536}" -rss_limit_mb=2048 \
		-timeout=10 -artifact_prefix=build/fuzz/crashes/"$name"- "$corp" >"$log" 2>&1
	rc=$?
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
	eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
	cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | cut -d' ' -f2)
	ft=$(grep -o 'ft: [0-9]*' "$log" | tail -n 1 | cut -d' ' -f2)
	n=$(find "$corp" -type f | wc -l)
	if [ $rc -eq 0 ]; then res=ok; else res="CRASH (exit $rc, see $log)"; failed=1; fi
	printf '%-20s %14s %10s %8s %8s %8s %s\n' "$name" "${runs:-?}" "${eps:-?}" "${cov:-?}" \
		"${ft:-?}" "$n" "$res"
	if [ $rc -ne 0 ]; then
		grep -E '^(==[0-9]+==ERROR|SUMMARY|[a-z_]+: )' "$log" | head -n 5 | sed 's/^/    /'
		for a in build/fuzz/crashes/"$name"-*; do
			[ -f "$a" ] && echo "    $a (base64): $(base64 -w0 "$a" | head -c 2000)"
		done
	fi
done
exit $failed

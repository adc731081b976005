#!/usr/bin/env bash
# run-short.sh BIN — a short libFuzzer run (FUZZ_SECONDS, default 10) from the
# checked-in seed corpus; prints "ok - NAME" or "not ok - NAME".
set -u
bin=$1; name=$(basename "$bin")
seeds=$(dirname "$0")/corpus/${name#fuzz_}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
[ -d "$seeds" ] && cp -r "$seeds"/. "$work"/ 2>/dev/null
if "$bin" -max_total_time="${FUZZ_SECONDS:-10}" -max_len=65536 -rss_limit_mb=2048 \
	-artifact_prefix="$work/" "$work" >"$work/log" 2>&1; then
	echo "ok - $name ($(grep -o "Done [0-9]* runs" "$work/log" | tail -n1))"
	grep -h 'Done [0-9]* runs' "$work/log" >&2
else
	echo "not ok - $name: fuzzer found a crash"
	tail -n 40 "$work/log" >&2
	for a in "$work"/crash-* "$work"/leak-* "$work"/timeout-*; do
		[ -f "$a" ] && { echo "input (base64):" >&2; base64 "$a" >&2; }
	done
	exit 1
fi

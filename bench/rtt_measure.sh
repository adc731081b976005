#!/usr/bin/env bash
# bench/rtt_measure.sh — a private measuring script for issue 17 items 3
# and 4 (not part of make bench): runs commands behind the delay proxy
# (tests/faults/delay_proxy.py, DELAY ms each way) or on loopback, each
# several times, interleaved, and prints per command the median wall time,
# the proxy's round trips and connections.
#
#   bench/rtt_measure.sh [--delay MS] [--runs N] [--before CMD] TARGET_PORT NAME=CMD...
#
# Each CMD is a shell command line in which the word @PORT stands for the
# port to use (the proxy's, or TARGET_PORT with --delay 0). --before CMD
# runs before every measured run, untimed (e.g. mutate.py for flag changes);
# @PORT in it is TARGET_PORT. Output: one line per NAME and run, then
# "NAME median_s=… rt=… conns=…".
set -u
DELAY=25 RUNS=5 BEFORE=
while [ $# -gt 0 ]; do
	case $1 in
	--delay) DELAY=$2; shift 2 ;;
	--runs) RUNS=$2; shift 2 ;;
	--before) BEFORE=$2; shift 2 ;;
	*) break ;;
	esac
done
TARGET=$1; shift
cd "$(dirname "$0")/.." || exit 2
PROXY_PID=
TMP=$(mktemp -d /tmp/mf-rtt-measure.XXXXXX)
trap 'proxy_stop; rm -rf "$TMP"' EXIT

proxy_start() {
	rm -f "$TMP/stats.json" "$TMP/proxy.out"
	python3 tests/faults/delay_proxy.py --target "$TARGET" --delay "$DELAY" --stats "$TMP/stats.json" \
		--max-seconds 600 >"$TMP/proxy.out" 2>"$TMP/proxy.err" &
	PROXY_PID=$!
	for _ in $(seq 1 100); do
		grep -q '^PORT ' "$TMP/proxy.out" 2>/dev/null && break
		sleep 0.05
	done
	PORT=$(awk '/^PORT/{print $2}' "$TMP/proxy.out")
}
proxy_stop() { # the proxy writes its counters on SIGTERM, then exits
	[ -n "$PROXY_PID" ] || return 0
	kill "$PROXY_PID" 2>/dev/null
	wait "$PROXY_PID" 2>/dev/null
	PROXY_PID=
}

declare -A T RT CN
names=()
for spec in "$@"; do names+=("${spec%%=*}"); done
for r in $(seq 1 "$RUNS"); do
	for spec in "$@"; do
		name=${spec%%=*} cmd=${spec#*=}
		[ -n "$BEFORE" ] && bash -c "${BEFORE//@PORT/$TARGET}" >/dev/null 2>&1
		port=$TARGET
		[ "$DELAY" != 0 ] && proxy_start && port=$PORT
		t0=$(date +%s.%N)
		bash -c "${cmd//@PORT/$port}" >"$TMP/out" 2>"$TMP/err" || echo "$name: exit $? $(tail -1 "$TMP/err")" >&2
		t1=$(date +%s.%N)
		rt=- cn=-
		if [ "$DELAY" != 0 ]; then
			sleep 0.3 # the proxy sees the server's last bytes (LOGOUT's answer)
			proxy_stop
			rt=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["round_trips"])' "$TMP/stats.json")
			cn=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["connections"])' "$TMP/stats.json")
		fi
		s=$(echo "$t1 - $t0" | bc)
		echo "$name run $r: ${s}s rt=$rt conns=$cn"
		T[$name]="${T[$name]:-} $s" RT[$name]=$rt CN[$name]=$cn
	done
done
for name in "${names[@]}"; do
	med=$(echo "${T[$name]}" | tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}')
	echo "$name median_s=$med rt=${RT[$name]} conns=${CN[$name]} runs=$RUNS delay_ms=$DELAY"
done

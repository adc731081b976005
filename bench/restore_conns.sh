#!/usr/bin/env bash
# bench/restore_conns.sh — restore's connections (issue 19): one archive of
# the quick corpus restored into empty accounts of one private Dovecot, A
# and B taking turns so both see the same machine load, every restore
# checked with bench/compare before its time counts; medians printed.
#
#   A  BENCH_A_BIN (default: build/release/mailferry) with --connections 1
#   B  BENCH_B_BIN (default: the same binary) with --connections
#      BENCH_CONNS (default 4: restore's default, a big mailbox split)
#
# Setting BENCH_A_BIN to an older build (one that forced one connection)
# measures before against after. Environment: BENCH_RUNS (3),
# BENCH_PROFILE (quick). Uses the test library's private Dovecot
# (tests/integration/lib.sh: own ports, own directory, removed at exit).
# Not for: correctness (tests/integration/t_restore_parallel.sh).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
. tests/integration/lib.sh
RUNS=${BENCH_RUNS:-3}
A_BIN=${BENCH_A_BIN:-$MF_REL}
B_BIN=${BENCH_B_BIN:-$MF_REL}
CONNS=${BENCH_CONNS:-4}
users="src"
for i in $(seq 1 "$RUNS"); do users="$users a$i b$i"; done
dv_start D --users "$users" || { echo "bench: dovecot did not start" >&2; exit 1; }
corpus D src "${BENCH_PROFILE:-quick}" 1 || { echo "bench: corpus failed" >&2; exit 1; }
MD=$D_DIR/mail
AR=$T_TMP/archive
"$B_BIN" backup "imap://src@127.0.0.1:$D_IMAP_PORT?starttls=no" "$AR" --src-password-file "$D_DIR/pw/src" \
	--state "$T_TMP/bst" --no-progress -q || { echo "bench: backup failed" >&2; exit 1; }
files() { find "$MD/src/Maildir" \( -path '*/cur/*' -o -path '*/new/*' \) -type f "$@"; }
bytes=$(files -printf '%s\n' | awk '{ s += $1 } END { print s }')
msgs=$(files | grep -c .)
echo "bench: $msgs messages, $bytes bytes; A: $A_BIN --connections 1, B: $B_BIN --connections $CONNS"
one() { # NAME BIN USER CONNS: prints seconds, or "x" if not exact
	local t0 t1 rc
	t0=$(date +%s.%N)
	"$2" restore "$AR" "imap://$3@127.0.0.1:$D_IMAP_PORT?starttls=no" --dst-password-file "$D_DIR/pw/$3" \
		--state "$T_TMP/st-$3" --no-progress -q --connections "$4"
	rc=$?
	t1=$(date +%s.%N)
	if [ $rc = 0 ] && "$BENCH_BIN/compare" "$MD/src/Maildir" "$MD/$3/Maildir" >/dev/null 2>&1; then
		echo "$t1 - $t0" | bc
	else
		echo x
	fi
}
: >"$T_TMP/A" && : >"$T_TMP/B"
for r in $(seq 1 "$RUNS"); do
	a=$(one A "$A_BIN" "a$r" 1); echo "$a" >>"$T_TMP/A"
	b=$(one B "$B_BIN" "b$r" "$CONNS"); echo "$b" >>"$T_TMP/B"
	echo "bench: run $r: A $a s, B $b s (load $(cut -d' ' -f1 /proc/loadavg))"
done
python3 - "$T_TMP/A" "$T_TMP/B" "$bytes" <<'PY'
import statistics, sys
def med(f):
    v = [l.strip() for l in open(f) if l.strip()]
    return None if not v or "x" in v else statistics.median(map(float, v))
a, b, n = med(sys.argv[1]), med(sys.argv[2]), int(sys.argv[3])
if a is None or b is None:
    print("bench: a restore failed or was not exact: no medians"); sys.exit(1)
print(f"bench: median A {a:.2f} s ({n / a / 1e6:.1f} MB/s), B {b:.2f} s ({n / b / 1e6:.1f} MB/s): B {a / b:.2f}x faster")
PY

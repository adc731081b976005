#!/usr/bin/env bash
# bench/status.sh — what the status server (--status) costs a run.
#   1. throughput: a bulk `mailferry run` of BENCH_STATUS_ACCOUNTS accounts
#      (default 4, corpus profile BENCH_STATUS_PROFILE, default demo:
#      ~2,500 messages each) from a private Dovecot into fresh accounts,
#      without --status, then with --status and a client polling
#      /api/status ten times a second; BENCH_RUNS (default 3) of each,
#      interleaved. Both use the default --threads (online CPUs, at most
#      the accounts): the server reads the workers' snapshots. Medians of
#      the wall time and MB/s, and the difference (the goal: within 2 %).
#      BENCH_STATUS_ONE_LOOP=1 adds a third mode, --status --threads 1
#      (what --status forced before 2026-12-06), for comparison. The CPU
#      time mailferry used (user + system) is shown too: on a loaded
#      machine it tells the server's cost where wall times are noise.
#      BENCH_STATUS_THROUGHPUT_ONLY=1 stops after this part.
#   1b. the server's own cost, which wall times on this machine cannot
#      resolve to 2 %: the same run held nearly idle (--max-bytes-per-
#      second 64K), its CPU read from /proc before and after 2,000
#      /api/status answers as fast as one client asks, less the CPU the
#      same seconds cost without requests. Ten answers a second then take
#      that much of one core: what --status can take from the copy at most.
#   2. /metrics and /api/status with 10,000 accounts in the run (lines
#      whose server refuses the connection: they finish at once and are
#      all listed): the median time to serve each of 20 requests (the goal
#      for /metrics: under 50 ms).
#   3. /metrics while the 10,000 accounts start (--jobs
#      BENCH_STATUS_START_JOBS, default 100; each account opens its LMDB
#      state, and every one that ends starts the next): every answer's
#      time from a client asking each 50 ms until the run is over, median
#      and max (the loop must stay responsive while states are opened).
# BENCH_TMPDIR (default /tmp) holds Dovecot, its mail and the states:
# /dev/shm takes the disk's fsyncs out of the wall times (on this VM's disk
# the same run varied by +-20 %).
# Prints the rows and writes them as JSON lines to bench/results/status-DATE.jsonl.
# Called from bench/run.sh; runs alone too: bench/status.sh.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
ROOT=$PWD
BIN=${BENCH_BIN:-$ROOT/build/release}
RUNS=${BENCH_RUNS:-3}
NA=${BENCH_STATUS_ACCOUNTS:-4}
PROFILE=${BENCH_STATUS_PROFILE:-demo}
mkdir -p bench/results
RES=$ROOT/bench/results/status-$(date +%Y%m%d-%H%M%S).jsonl
say() { echo "bench-status: $*"; }
[ -x "$BIN/mailferry" ] && [ -x "$BIN/bench/corpus" ] || { say "build first (make)"; exit 1; }

W=$(mktemp -d "${BENCH_TMPDIR:-/tmp}/mf-bench-status.XXXXXX")
chmod 711 "$W"
DV=$W/dv
POLL=
cleanup() {
	[ -n "$POLL" ] && kill "$POLL" 2>/dev/null
	scripts/dovecot.sh stop "$DV" >/dev/null 2>&1
	rm -rf "$W"
}
trap cleanup EXIT
users=""
for i in $(seq 1 "$NA"); do users="$users s$i d$i"; done
scripts/dovecot.sh start "$DV" --port-base "${BENCH_STATUS_PORT_BASE:-18500}" --users "$users" \
	--max-conn 200 >"$W/dv.log" 2>&1 || { say "dovecot did not start: $(tail -n 3 "$W/dv.log")"; exit 1; }
# shellcheck disable=SC1091
. "$DV/env"
for i in $(seq 1 "$NA"); do
	"$BIN/bench/corpus" --out "$MAIL_ROOT/s$i/Maildir" --profile "$PROFILE" --seed "$((100 + i))" >/dev/null
done
scripts/dovecot.sh fixperms "$DV"
ACC=$W/accounts.txt
for i in $(seq 1 "$NA"); do
	echo "imap://s$i@127.0.0.1:$IMAP_PORT imap://d$i@127.0.0.1:$IMAP_PORT --src-password-file $DV/pw/s$i --dst-password-file $DV/pw/d$i"
done >"$ACC"
chmod 600 "$ACC"

poller() { # PORT: GET /api/status every 100 ms until killed
	exec python3 - "$1" <<'PY'
import socket, sys, time
port = int(sys.argv[1])
while True:
    t = time.time()
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=2)
        s.sendall(b"GET /api/status HTTP/1.1\r\nHost: x\r\n\r\n")
        while s.recv(65536):
            pass
        s.close()
    except OSError:
        pass
    time.sleep(max(0, 0.1 - (time.time() - t)))
PY
}

# The machine's busy CPU seconds so far (every core: user, nice, system,
# irq, softirq; not steal): with the mail on tmpfs the run is CPU-bound,
# and what --status and its poller add shows here, less noisy than wall.
busy() { awk '/^cpu /{printf "%.2f\n", ($2 + $3 + $4 + $7 + $8) / 100}' /proc/stat; }

one() { # MODE RUN: prints "seconds bytes cpu_seconds machine_busy_seconds"
	local mode=$1 r=$2 t0 t1 port extra=() i b0 b1
	for i in $(seq 1 "$NA"); do rm -rf "$MAIL_ROOT/d$i/Maildir"; done
	rm -rf "$W/state"
	[ "$mode" = status ] && extra=(--status 127.0.0.1:0)
	[ "$mode" = status-1loop ] && extra=(--status 127.0.0.1:0 --threads 1)
	sync
	b0=$(busy)
	t0=$(date +%s.%N)
	/usr/bin/time -f "%U %S" -o "$W/time" "$BIN/mailferry" run "$ACC" --jobs "$NA" --state "$W/state" --ca-file "$CA_FILE" --json --no-progress "${extra[@]}" \
		>"$W/run.out" 2>"$W/run.err" &
	local pid=$!
	if [ "$mode" != plain ]; then
		for i in $(seq 1 200); do
			port=$(sed -n 's|.*status: http://127.0.0.1:\([0-9]*\)/.*|\1|p' "$W/run.err" | head -n 1)
			[ -n "$port" ] && break
			sleep 0.01
		done
		poller "$port" &
		POLL=$!
	fi
	wait "$pid"
	t1=$(date +%s.%N)
	b1=$(busy)
	[ -n "$POLL" ] && { kill "$POLL" 2>/dev/null; wait "$POLL" 2>/dev/null; POLL=; }
	local b
	b=$(grep '"event":"run_summary"' "$W/run.out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["bytes"])' 2>/dev/null)
	local u s
	read -r u s <"$W/time"
	echo "$(python3 -c "print($t1 - $t0, ${b:-0}, $u + $s, round($b1 - $b0, 2))")"
}

declare -a T_OFF T_ON T_ONE C_OFF C_ON C_ONE M_OFF M_ON
MODES="plain status"
[ "${BENCH_STATUS_ONE_LOOP:-0}" = 1 ] && MODES="$MODES status-1loop"
for r in $(seq 1 "$RUNS"); do
	for mode in $MODES; do
		read -r s b c mb < <(one "$mode" "$r")
		say "run $r $mode: $s s, $b bytes, $c s CPU, machine busy $mb CPU-s"
		echo "{\"scenario\":\"status-throughput\",\"mode\":\"$mode\",\"run\":$r,\"seconds\":$s,\"bytes\":$b,\"cpu_seconds\":$c,\"machine_busy_seconds\":$mb}" >>"$RES"
		case $mode in
		plain) T_OFF+=("$s") C_OFF+=("$c") M_OFF+=("$mb") ;;
		status) T_ON+=("$s") C_ON+=("$c") M_ON+=("$mb") ;;
		*) T_ONE+=("$s") C_ONE+=("$c") ;;
		esac
		BYTES=$b
	done
done
python3 - "$BYTES" "${T_OFF[*]}" "${T_ON[*]}" "${T_ONE[*]:-}" "${C_OFF[*]}" "${C_ON[*]}" "${C_ONE[*]:-}" "${M_OFF[*]}" "${M_ON[*]}" <<'PY'
import statistics, sys
b = float(sys.argv[1]); off = [float(x) for x in sys.argv[2].split()]; on = [float(x) for x in sys.argv[3].split()]
one = [float(x) for x in sys.argv[4].split()]
coff, con, cone, moff, mon = ([float(x) for x in a.split()] for a in sys.argv[5:10])
mo, mn = statistics.median(off), statistics.median(on)
# each run's --status time over the plain run just before it
pairs = sorted(n / o for o, n in zip(off, on))
print("bench-status: throughput without --status: median %.2f s, %.1f MB/s" % (mo, b / mo / 1e6))
print("bench-status: with --status + 10 Hz /api/status poller: median %.2f s, %.1f MB/s (%+.1f %% time; per-run ratios %s)" % (mn, b / mn / 1e6, 100 * (mn - mo) / mo, " ".join("%.3f" % x for x in pairs)))
if one:
    m1 = statistics.median(one)
    print("bench-status: with --status --threads 1 (before): median %.2f s, %.1f MB/s (%+.1f %% time)" % (m1, b / m1 / 1e6, 100 * (m1 - mo) / mo))
co, cn = statistics.median(coff), statistics.median(con)
print("bench-status: mailferry CPU (user+sys), medians: without --status %.2f s, with %.2f s (%+.1f %%)%s" % (co, cn, 100 * (cn - co) / co, (", --threads 1 %.2f s" % statistics.median(cone)) if cone else ""))
mo_, mn_ = statistics.median(moff), statistics.median(mon)
print("bench-status: the machine's busy CPU per run (every process: mailferry, Dovecot, the poller; "
      "with the mail on tmpfs the run is CPU-bound and this is its work), medians: without --status "
      "%.2f s, with %.2f s (%+.1f %%; per-run ratios %s)" % (mo_, mn_, 100 * (mn_ - mo_) / mo_,
      " ".join("%.3f" % x for x in sorted(n / o for o, n in zip(moff, mon)))))
PY

# ---- 1b. CPU per /api/status answer ----
# the held run's CPU per second without --status first (what the server's
# timers and snapshots add is the difference)
idle_cpu() { # PID SECONDS: CPU seconds per second
	python3 - "$1" "$2" <<'PY'
import os, sys, time
pid, secs = int(sys.argv[1]), float(sys.argv[2])
hz = os.sysconf("SC_CLK_TCK")
def cpu():
    f = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / hz
c0 = cpu(); time.sleep(secs); print("%.4f" % ((cpu() - c0) / secs))
PY
}
for i in $(seq 1 "$NA"); do rm -rf "$MAIL_ROOT/d$i/Maildir"; done
rm -rf "$W/state"
"$BIN/mailferry" run "$ACC" --jobs "$NA" --state "$W/state" --ca-file "$CA_FILE" --no-progress \
	--max-bytes-per-second 64K >"$W/cost.out" 2>"$W/cost.err" &
CPID=$!
sleep 1
PLAIN_IDLE=$(idle_cpu "$CPID" 5)
kill "$CPID" 2>/dev/null
wait "$CPID" 2>/dev/null
for i in $(seq 1 "$NA"); do rm -rf "$MAIL_ROOT/d$i/Maildir"; done
rm -rf "$W/state"
"$BIN/mailferry" run "$ACC" --jobs "$NA" --state "$W/state" --ca-file "$CA_FILE" --no-progress \
	--status 127.0.0.1:0 --max-bytes-per-second 64K >"$W/cost.out" 2>"$W/cost.err" &
CPID=$!
port=
for i in $(seq 1 200); do
	port=$(sed -n 's|.*status: http://127.0.0.1:\([0-9]*\)/.*|\1|p' "$W/cost.err" | head -n 1)
	[ -n "$port" ] && break
	sleep 0.01
done
sleep 1
python3 - "$CPID" "${port:-0}" "$RES" "$NA" "$PLAIN_IDLE" <<'PY'
import json, os, socket, sys, time
pid, port, res, na = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
plain = float(sys.argv[5])
hz = os.sysconf("SC_CLK_TCK")
def cpu():
    f = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / hz
def get():
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(b"GET /api/status HTTP/1.1\r\nHost: x\r\n\r\n")
    n = 0
    while True:
        d = s.recv(65536)
        if not d:
            break
        n += len(d)
    s.close()
    return n
c0 = cpu(); time.sleep(5); base = (cpu() - c0) / 5
N = 2000
t0, c0 = time.time(), cpu()
size = 0
for _ in range(N):
    size = get()
t, c = time.time() - t0, cpu() - c0
per = max(0.0, c - base * t) / N
fixed = max(0.0, base - plain) * 100  # --status on, nobody asking, in % of one core
share = 10 * per * 100 + fixed  # ten answers a second, in % of one core
print("bench-status: held run's CPU without --status %.4f s/s, with it %.4f s/s; CPU per /api/status answer "
      "(%d bytes, %d accounts): %.3f ms (%d answers in %.1f s, %.2f s CPU); --status with ten answers a "
      "second takes %.2f %% of one core (goal: within 2 %%)"
      % (plain, base, size, na, per * 1000, N, t, c, share))
with open(res, "a") as f:
    f.write(json.dumps(dict(scenario="status-cost", answers=N, bytes=size, cpu_ms_per_answer=per * 1000,
                            idle_cpu_plain=plain, idle_cpu_status=base, core_percent_at_10hz=share)) + "\n")
PY
kill "$CPID" 2>/dev/null
wait "$CPID" 2>/dev/null

[ "${BENCH_STATUS_THROUGHPUT_ONLY:-0}" = 1 ] && { say "results: $RES"; exit 0; }

# ---- /metrics and /api/status with 10,000 accounts ----
for i in $(seq 1 10000); do
	echo "imap://u$i@127.0.0.1:1?starttls=no imap://v$i@127.0.0.1:1?starttls=no"
done >"$W/many.txt"
chmod 600 "$W/many.txt"
MAILFERRY_SRC_PASSWORD=x MAILFERRY_DST_PASSWORD=y "$BIN/mailferry" run "$W/many.txt" --jobs 100 \
	--state "$W/state-many" --no-progress -q --status 127.0.0.1:0 --status-linger 120 \
	>/dev/null 2>"$W/many.err" &
MPID=$!
for i in $(seq 1 200); do
	port=$(sed -n 's|.*status: http://127.0.0.1:\([0-9]*\)/.*|\1|p' "$W/many.err" | head -n 1)
	[ -n "$port" ] && break
	sleep 0.05
done
# -q hides the info line: ask the kernel which port the process listens on
[ -z "$port" ] && port=$(ss -ltnpH 2>/dev/null | grep "pid=$MPID," | sed -n 's/.*127.0.0.1:\([0-9]*\) .*/\1/p' | head -n 1)
for i in $(seq 1 600); do
	curl -s "http://127.0.0.1:$port/metrics" | grep -q '^mailferry_finished 1' && break
	sleep 0.2
done
for path in /metrics /api/status; do
	ts=()
	for k in $(seq 1 20); do
		ts+=("$(curl -s -o "$W/body" -w '%{time_total}' "http://127.0.0.1:$port$path")")
	done
	sz=$(wc -c <"$W/body")
	python3 - "$path" "$sz" "${ts[*]}" "$RES" <<'PY'
import json, statistics, sys
path, sz, ts, res = sys.argv[1], int(sys.argv[2]), [float(x) * 1000 for x in sys.argv[3].split()], sys.argv[4]
m = statistics.median(ts)
print("bench-status: %s with 10,000 accounts: median %.1f ms (max %.1f), %d bytes" % (path, m, max(ts), sz))
open(res, "a").write(json.dumps({"scenario": "status-10k", "path": path, "median_ms": m, "max_ms": max(ts), "bytes": sz}) + "\n")
PY
done
kill "$MPID" 2>/dev/null
wait "$MPID" 2>/dev/null

# ---- /metrics WHILE 10,000 accounts start ----
# A client asks /metrics every 50 ms from the moment the server listens
# until the run is over; each answer's time counts (a request the loop does
# not get to waits in the listen backlog: that wait is what this shows).
SPORT=${BENCH_STATUS_START_PORT:-$(( ${BENCH_STATUS_PORT_BASE:-18500} + 77 ))}
rm -rf "$W/state-start"
SJOBS=${BENCH_STATUS_START_JOBS:-100}
MAILFERRY_SRC_PASSWORD=x MAILFERRY_DST_PASSWORD=y "$BIN/mailferry" run "$W/many.txt" --jobs "$SJOBS" \
	--state "$W/state-start" --no-progress -q --status "127.0.0.1:$SPORT" --status-linger 2 \
	>/dev/null 2>"$W/start.err" &
MPID=$!
python3 - "$SPORT" "$MPID" "$RES" "$SJOBS" <<'PY'
import http.client, json, os, statistics, sys, time
port, pid, res, jobs = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
def alive():
    try:
        os.kill(pid, 0)
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(") ")[1][0] != "Z"
    except OSError:
        return False
ts, fin = [], False
t_start = time.time()
while alive() and not fin and time.time() - t_start < 900:
    t = time.time()
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        c.request("GET", "/metrics")
        body = c.getresponse().read()
        ts.append((time.time() - t) * 1000)
        fin = b"\nmailferry_finished 1" in body
        c.close()
    except OSError:
        pass  # not listening yet
    time.sleep(max(0, 0.05 - (time.time() - t)))
if not ts:
    print("bench-status: /metrics while starting: no answer")
    sys.exit(0)
m = statistics.median(ts)
print("bench-status: /metrics while 10,000 accounts start (--jobs %d): %d requests, median %.1f ms, max %.1f ms, run %.1f s" % (jobs, len(ts), m, max(ts), time.time() - t_start))
open(res, "a").write(json.dumps({"scenario": "status-10k-starting", "path": "/metrics", "jobs": jobs, "requests": len(ts), "median_ms": m, "max_ms": max(ts), "seconds": time.time() - t_start}) + "\n")
PY
kill "$MPID" 2>/dev/null
wait "$MPID" 2>/dev/null
say "results: $RES"

#!/usr/bin/env bash
# bench/bulk.sh [OUT_DIR] — bulk migrations (issue 20): BULK_ACCOUNTS
# accounts (default 1,000) × 100 messages on one private Dovecot, moved in
# the same run by
#   mf-run         one `mailferry run` (default --threads: online CPUs)
#   mf-run-t1      one `mailferry run --threads 1` (one event loop)
#   mf-xargs8      `mailferry migrate` per account, 8 at a time (xargs -P 8)
#   mbsync         `mbsync -a`, one Channel per account in one config
#   ceiling-x8     bench/ceiling --per-folder per account, 8 at a time: the
#                  yardstick (the server's own serve/accept speed, same bytes)
# and, once, `mailferry run` with 200 connections open at once, for its
# peak RSS (mf-200conn, below).
#
# Accounts are made fast: Dovecot's passwd-file holds 2 × BULK_ACCOUNTS
# users (s1.. sources, d1.. destinations), written before it starts; the
# 100 messages are generated once (three folders, sizes of real mail: most
# 2-20 KB, a few 100+ KB) and hard-linked into every source Maildir.
# Between tools the destinations and states are wiped. Every copy is
# checked with bench/compare (each account) before its time counts.
#
# mf-200conn: BULK_CONN_ACCOUNTS (default 100) accounts of their own
# (c1.. into e1..), each holding the 100 messages BULK_CONN_COPIES times
# (default 1), moved by one `mailferry run --jobs ACCOUNTS --connections 1
# --max-bytes-per-second BULK_CONN_RATE` (default 2M): 100 accounts × 1
# pair × 2 sides = 200 connections, all open at once. The byte rate is
# what keeps them open together: Dovecot here logs in 8-20 sessions a
# second (22/s idle, measured with 200 bare logins), so at full speed the
# first accounts end before the last have logged in (111-144 sessions at
# most with these accounts; 63 and 82 with --jobs 50 --connections 2);
# capped, each account moves ~10 KB/s and stays open for the whole run
# (4M was not enough on a loaded machine: 130 sessions at most).
# Every connection still carries mail (src buffers full, dst appending).
# The server's count (log replayed, doveadm who) shows how many were open.
#
# Environment: BULK_ACCOUNTS (default 1000; e.g. 20 for a smoke run),
# BULK_RUNS, BULK_TOOLS (subset, default all), BULK_PORT_BASE (18500),
# BENCH_BIN (build/release), BENCH_BULK=0 skips everything (bench/run.sh
# calls this with one line), BULK_CONN_ACCOUNTS, BULK_CONN_COPIES,
# BULK_CONN_RATE (mf-200conn).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
ROOT=$PWD
[ "${BENCH_BULK:-1}" = 0 ] && { echo "bench: bulk: skipped (BENCH_BULK=0)"; exit 0; }
N=${BULK_ACCOUNTS:-1000}
RUNS=${BULK_RUNS:-1}
BIN=${BENCH_BIN:-$ROOT/build/release}
MF=$BIN/mailferry
OUT=${1:-$ROOT/bench/results/$(date +%Y%m%d-%H%M%S)-bulk}
TOOLS=(${BULK_TOOLS:-mf-run mf-run-t1 mf-xargs8 mbsync ceiling-x8 mf-200conn})
say() { echo "bench: bulk: $*"; }
for t in "$MF" "$BIN/bench/compare" "$BIN/bench/ceiling"; do
	[ -x "$t" ] || { say "$t is not built (make all)" >&2; exit 1; }
done
command -v mbsync >/dev/null || say "mbsync missing (apt-get install isync): left out" >&2
[ -x /usr/bin/time ] || { say "GNU time missing (apt-get install time)" >&2; exit 1; }
mkdir -p "$OUT/bulk"
W=$OUT/bulk
RES=$W/results.jsonl
: >"$RES"

CN=${BULK_CONN_ACCOUNTS:-100}
CCOPIES=${BULK_CONN_COPIES:-1}
CRATE=${BULK_CONN_RATE:-2M}
users=
for i in $(seq 1 "$N"); do users="$users s$i d$i"; done
case " ${TOOLS[*]} " in *" mf-200conn "*) for i in $(seq 1 "$CN"); do users="$users c$i e$i"; done ;; *) CN=0 ;; esac
DV=$(mktemp -d /tmp/mf-bulk.XXXXXX)
SAMPLER=
cleanup() {
	[ -n "$SAMPLER" ] && kill "$SAMPLER" 2>/dev/null
	scripts/dovecot.sh stop "$DV" >/dev/null 2>&1
	[ "${BENCH_KEEP:-0}" = 1 ] && say "kept $DV" || rm -rf "$DV"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# 8 connections per user and IP: migrate's 4 pairs, with room for LOGOUTs
scripts/dovecot.sh start "$DV" --port-base "${BULK_PORT_BASE:-18500}" --users "${users# }" \
	--max-conn 8 >"$DV/start.log" 2>&1 || { cat "$DV/start.log" >&2; say "Dovecot did not start" >&2; exit 1; }
. "$DV/env"
P=$IMAP_PORT
H=127.0.0.1
LOG=$DV/dovecot.log
say "private Dovecot on $H:$P with $((2 * N)) users; $N accounts × 100 messages; results in $W"

# ---- the mail: generated once, hard-linked into every source account ----
python3 - "$DV/tmpl" "$MAIL_ROOT" "$N" "$CN" "$CCOPIES" <<'PY' || { say "corpus failed" >&2; exit 1; }
import os, random, sys
tmpl, root, n, cn, copies = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
rng = random.Random(20)
folders = [("", 60), (".Sent", 25), (".Archive", 15)]
words = ("the meeting report budget invoice please attached regards thanks project "
         "schedule review draft update team customer order shipping").split()
files, total, t0 = [], 0, 1690000000
k = 0
for f, cnt in folders:
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(tmpl, f, sub) if f else os.path.join(tmpl, sub), exist_ok=True)
    for m in range(cnt):
        k += 1
        r = rng.random()
        size = int(rng.uniform(1500, 6000) if r < 0.55 else rng.uniform(6000, 25000) if r < 0.93
                   else rng.uniform(25000, 60000) if r < 0.99 else rng.uniform(100000, 200000))
        hdr = ("Return-Path: <a%d@example.org>\r\nFrom: Person %d <a%d@example.org>\r\n"
               "To: Someone <b@example.org>\r\nSubject: %s %s %d\r\nDate: Mon, %02d Jan 2024 10:%02d:00 +0100\r\n"
               "Message-ID: <bulk.%d@example.org>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
               % (k, k, k, rng.choice(words), rng.choice(words), k, 1 + k % 28, k % 60, k))
        body = []
        left = size - len(hdr)
        while left > 0:
            line = " ".join(rng.choice(words) for _ in range(11))[:76] + "\r\n"
            body.append(line)
            left -= len(line)
        data = (hdr + "".join(body)).encode()
        total += len(data)
        d = os.path.join(tmpl, f) if f else tmpl
        name = os.path.join(d, "cur", "%d.M%dP1.bulk:2,%s" % (t0 + k, k, "S" if k % 3 else ""))
        with open(name, "wb") as fh:
            fh.write(data)
        os.utime(name, (t0 + 3600 * k, t0 + 3600 * k))
        files.append((f, os.path.basename(name)))
for i in range(1, n + 1):
    base = os.path.join(root, "s%d" % i, "Maildir")
    for f, _ in folders:
        for sub in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(base, f, sub) if f else os.path.join(base, sub), exist_ok=True)
    for f, fn in files:
        os.link(os.path.join(tmpl, f, "cur", fn) if f else os.path.join(tmpl, "cur", fn),
                os.path.join(base, f, "cur", fn) if f else os.path.join(base, "cur", fn))
# mf-200conn's accounts: the same files `copies` times under other names
for i in range(1, cn + 1):
    base = os.path.join(root, "c%d" % i, "Maildir")
    for f, _ in folders:
        for sub in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(base, f, sub) if f else os.path.join(base, sub), exist_ok=True)
    for c in range(copies):
        for f, fn in files:
            t, rest = fn.split(".", 1)
            to = "%d.%s" % (int(t) + 100000 * c, rest.replace(".bulk:", ".bulk%d:" % c))
            os.link(os.path.join(tmpl, f, "cur", fn) if f else os.path.join(tmpl, "cur", fn),
                    os.path.join(base, f, "cur", to) if f else os.path.join(base, "cur", to))
open(os.path.join(tmpl, "..", "bytes"), "w").write("%d %d\n" % (total, len(files)))
print("bench: bulk: 100 messages, %d bytes per account; %d accounts, %.1f MB in all" % (total, n, total * n / 1e6))
PY
read -r PER_ACCT NMSG <"$DV/bytes"
TOTAL_BYTES=$((PER_ACCT * N))
scripts/dovecot.sh fixperms "$DV"

wipe_dst() {
	local i
	for i in $(seq 1 "$N"); do rm -rf "$MAIL_ROOT/d$i"; done
	for i in $(seq 1 "$CN"); do rm -rf "$MAIL_ROOT/e$i"; done
	rm -rf "$DV/state" "$DV/mbsync-state"
	mkdir -p "$DV/state" "$DV/mbsync-state"
	scripts/dovecot.sh fixperms "$DV"
}
exact() { # TOOL: mbsync adds an X-TUID header to every message it copies
	local i good=0 ign=() s=s d=d
	[ "$1" = mbsync ] && ign=(--ignore-header X-TUID)
	[ "$1" = mf-200conn ] && s=c d=e
	for i in $(seq 1 "${NA:-$N}"); do
		"$BIN/bench/compare" "$MAIL_ROOT/$s$i/Maildir" "$MAIL_ROOT/$d$i/Maildir" "${ign[@]}" >/dev/null 2>&1 && good=$((good + 1))
	done
	echo "$good"
}
who_sum() { doveadm -c "$DV/dovecot.conf" who 2>/dev/null | awk 'NR > 1 { s += $2 } END { print s + 0 }'; }
# Samples until killed: "MAX_WHO MAX_RSS_KB", the RSS summed over the
# process ROOT and its descendants (not other users' processes of the same
# name: the machine may be shared), GNU time itself left out.
sampler() { # FILE ROOT
	local mw=0 mr=0 w r
	while :; do
		w=$(who_sum)
		r=$(ps -e -o pid=,ppid=,rss= 2>/dev/null | awk -v root="$2" '
			{ par[$1] = $2; rss[$1] = $3 }
			END { for (p in par) { q = p; while (q != "" && q != root && q != 1 && q != 0) q = par[q];
			      if (q == root && p != root) s += rss[p] } print s + 0 }')
		[ "${w:-0}" -gt "$mw" ] && mw=$w
		[ "${r:-0}" -gt "$mr" ] && mr=$r
		echo "$mw $mr" >"$1"
		sleep 0.2
	done
}

# ---- accounts files and configurations ----
ACC=$W/accounts.txt
: >"$ACC"
for i in $(seq 1 "$N"); do
	echo "imap://s$i@$H:$P?starttls=no imap://d$i@$H:$P?starttls=no --src-password-file $DV/pw/s$i --dst-password-file $DV/pw/d$i" >>"$ACC"
done
chmod 600 "$ACC"
CACC=$W/accounts-200conn.txt
: >"$CACC"
for i in $(seq 1 "$CN"); do
	echo "imap://c$i@$H:$P?starttls=no imap://e$i@$H:$P?starttls=no --src-password-file $DV/pw/c$i --dst-password-file $DV/pw/e$i" >>"$CACC"
done
chmod 600 "$CACC"
PAIRS=$W/pairs.txt
for i in $(seq 1 "$N"); do echo "s$i d$i"; done >"$PAIRS"
MBC=$DV/mbsyncrc
{
	echo "# mbsync -a: one Channel per account (isync $(mbsync --version 2>/dev/null | awk '{print $2}')); FSync no, Pull only"
	echo "FSync no"
	for i in $(seq 1 "$N"); do
		for u in "s$i" "d$i"; do
			printf 'IMAPAccount %s\nHost %s\nPort %s\nUser %s\nPassCmd "cat %s/pw/%s"\nSSLType None\n\n' "$u" "$H" "$P" "$u" "$DV" "$u"
			printf 'IMAPStore %s\nAccount %s\n\n' "$u" "$u"
		done
		printf 'Channel c%s\nFar :s%s:\nNear :d%s:\nPatterns *\nCreate Near\nSync Pull\nExpunge None\nCopyArrivalDate yes\nSyncState %s/mbsync-state/d%s/\n\n' \
			"$i" "$i" "$i" "$DV" "$i"
	done
} >"$MBC"
sed "s#$DV#DIR#g" "$MBC" | head -n 30 >"$W/mbsyncrc.head"

# One measured run: NAME RUN CMD...
measure() {
	local name=$1 run=$2 off t0 t1 good rc tp
	shift 2
	wipe_dst
	off=$(stat -c %s "$LOG")
	t0=$(date +%s.%N)
	# stdin passed on explicitly: an asynchronous command would get /dev/null
	/usr/bin/time -f '%e %U %S %M' -o "$W/$name-$run.time" "$@" <&0 >"$W/$name-$run.out" 2>"$W/$name-$run.err" &
	tp=$!
	sampler "$W/$name-$run.sample" "$tp" &
	SAMPLER=$!
	wait "$tp"
	rc=$?
	t1=$(date +%s.%N)
	sleep 0.3
	kill "$SAMPLER" 2>/dev/null
	wait "$SAMPLER" 2>/dev/null
	SAMPLER=
	good=$(exact "$name")
	read -r _ cu cs mrss <"$W/$name-$run.time"
	read -r mwho srss <"$W/$name-$run.sample"
	# logins, and the most sessions open at once replayed from Dovecot's log
	# (+1 per login, -1 per session's "Disconnected"): exact where sampling
	# doveadm who can miss a short peak
	read -r logins lpeak <<<"$(tail -c +"$((off + 1))" "$LOG" | python3 -c '
import re, sys
cur = peak = n = 0
for line in sys.stdin:
    if re.search(r"imap-login: (Info: )?Login: user=", line):
        cur += 1; n += 1
    elif re.search(r" imap\([^)]*\)<[^>]*><[^>]+>: (Info: )?Disconnected", line):
        cur -= 1
    peak = max(peak, cur)
print(n, peak)')"
	python3 - "$name" "$run" "$t0" "$t1" "$cu" "$cs" "$mrss" "$srss" "$mwho" "$logins" "$good" "$lpeak" "${NA:-$N}" "$((PER_ACCT * ${NA:-$N} * ${COPIES:-1}))" "$rc" >>"$RES" <<'PY'
import json, sys
a = sys.argv
wall = float(a[4]) - float(a[3])
print(json.dumps({"tool": a[1], "run": int(a[2]), "wall": round(wall, 3),
                  "cpu": round(float(a[5]) + float(a[6]), 3), "max_rss_kb": int(a[7]),
                  "sum_rss_kb": int(a[8]), "server_max_conn": int(a[9]), "logins": int(a[10]),
                  "exact": int(a[11]), "accounts": int(a[13]), "bytes": int(a[14]), "exit": int(a[15]),
                  "server_peak_log": int(a[12])}))
PY
	say "$name run $run: $(tail -n 1 "$RES")"
}

# Warm-up: Dovecot builds a Maildir's indexes on its first read; every
# source is read once before any tool is timed.
{ cat "$PAIRS"; for i in $(seq 1 "$CN"); do echo "c$i e$i"; done; } |
	xargs -P 8 -L 1 sh -c "exec $BIN/bench/ceiling --port $P --src \$0 --src-pass-file $DV/pw/\$0 --dst \$1 --dst-pass-file $DV/pw/\$1 --per-folder --fetch-only >/dev/null"
say "sources indexed"

for r in $(seq 1 "$RUNS"); do
	for t in "${TOOLS[@]}"; do
		case $t in
		mf-run) measure "$t" "$r" "$MF" run "$ACC" --jobs 32 --connections 4 --state "$DV/state" --json ;;
		mf-run-t1) measure "$t" "$r" "$MF" run "$ACC" --threads 1 --jobs 32 --connections 4 --state "$DV/state" --json ;;
		mf-xargs8)
			measure "$t" "$r" xargs -P 8 -L 1 sh -c \
				"exec $MF migrate imap://\$0@$H:$P?starttls=no imap://\$1@$H:$P?starttls=no --src-password-file $DV/pw/\$0 --dst-password-file $DV/pw/\$1 --state $DV/state/\$0 -q" \
				<"$PAIRS" ;;
		mbsync) command -v mbsync >/dev/null && measure "$t" "$r" mbsync -c "$MBC" -a -q ;;
		mf-200conn)
			# 200 connections at once: CN accounts × 1 pair × 2 sides
			NA=$CN COPIES=$CCOPIES measure "$t" "$r" "$MF" run "$CACC" --jobs "$CN" --connections 1 \
				--max-bytes-per-second "$CRATE" --state "$DV/state" --json ;;
		ceiling-x8)
			measure "$t" "$r" xargs -P 8 -L 1 sh -c \
				"exec $BIN/bench/ceiling --port $P --src \$0 --src-pass-file $DV/pw/\$0 --dst \$1 --dst-pass-file $DV/pw/\$1 --per-folder >/dev/null" \
				<"$PAIRS" ;;
		esac
	done
done

python3 - "$RES" "$W" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
tools = []
for r in rows:
    if r["tool"] not in tools:
        tools.append(r["tool"])
med = {}
for t in tools:
    rs = [r for r in rows if r["tool"] == t]
    m = {k: statistics.median(r[k] for r in rs) for k in ("wall", "cpu", "max_rss_kb", "sum_rss_kb", "server_max_conn", "server_peak_log", "logins")}
    m["exact"] = min(r["exact"] for r in rs)
    m["accounts"] = rs[0]["accounts"]
    m["bytes"] = rs[0]["bytes"]
    m["runs"] = len(rs)
    m["exit"] = max(r["exit"] for r in rs)
    med[t] = m
base = med.get("mf-run")
ceil = med.get("ceiling-x8")
lines = ["# Bulk migrations: %d accounts × 100 messages (%.1f MB), medians of %d run(s)\n" %
         (base["accounts"] if base else 0, (base or next(iter(med.values())))["bytes"] / 1e6, max(m["runs"] for m in med.values())),
         "| tool | wall s | × mf-run | MB/s | × ceiling time | CPU s/GB | peak RSS MiB (largest / sum) | server conns at once (log / doveadm who) | logins | exact | exit |",
         "|---|---|---|---|---|---|---|---|---|---|---|"]
for t, m in med.items():
    gb = m["bytes"] / 1e9
    lines.append("| %s | %.1f | %s | %.1f | %s | %.1f | %.1f / %.1f | %d / %d | %d | %d/%d | %d |" % (
        t, m["wall"], "%.2f" % (m["wall"] / base["wall"]) if base else "-", m["bytes"] / 1e6 / m["wall"],
        "%.2f" % (m["wall"] / ceil["wall"]) if ceil else "-", m["cpu"] / gb if gb else 0,
        m["max_rss_kb"] / 1024, m["sum_rss_kb"] / 1024, m["server_peak_log"], m["server_max_conn"], m["logins"],
        m["exact"], m["accounts"], m["exit"]))
if "mbsync" in med:
    lines.append("\nmbsync: judged with the X-TUID header it adds to every message left out.")
if base and "mbsync" in med:
    lines.append("\nmbsync -a / mailferry run: %.1f× (goal >= 5×)" % (med["mbsync"]["wall"] / base["wall"]))
if base and ceil:
    lines.append("mailferry run / ceiling: %.2f× the ceiling's time (goal <= 1.2×)" % (base["wall"] / ceil["wall"]))
if "mf-200conn" in med:
    c = med["mf-200conn"]
    lines.append("mailferry run with %d connections open at once (server side: log %d, doveadm who %d), %d accounts of %.1f MB: "
                 "peak RSS %.1f MiB (goal <= 64 MiB)" %
                 (max(c["server_peak_log"], c["server_max_conn"]), c["server_peak_log"], c["server_max_conn"],
                  c["accounts"], c["bytes"] / c["accounts"] / 1e6, c["max_rss_kb"] / 1024))
text = "\n".join(lines) + "\n"
open(sys.argv[2] + "/report.md", "w").write(text)
json.dump(med, open(sys.argv[2] + "/report.json", "w"), indent=1)
print(text)
PY

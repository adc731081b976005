#!/usr/bin/env bash
# bench/run.sh quick|full — IMAP → IMAP against the server's ceiling and the
# peers (interimap, mbsync, OfflineIMAP from Debian), in one run, on one
# private Dovecot, on generated messy mail. Every tool's destination is
# compared with the source before its time counts. Results in
# bench/results/DATE/ (report.md, report.json, ratios.png, results.jsonl,
# the peers' configurations). BENCH_RUNS (default 3) runs per scenario.
#
# quick: ~6,000 messages / ~86 MB in 7 folders (one 30 MB message):
#        initial (TLS off and on), no-change re-run, re-run after 1 % flag
#        changes, the 30 MB message alone (memory).
# full:  adds 100,000 messages in 20 folders: initial, no-change re-run on
#        loopback and behind a 25 ms each way delay proxy (wire bytes,
#        round trips).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
MODE=${1:-quick}
RUNS=${BENCH_RUNS:-3}
BIN=$ROOT/build/release
OUT=$ROOT/bench/results/$(date +%Y%m%d-%H%M%S)-$MODE
mkdir -p "$OUT/peers"
RES=$OUT/results.jsonl
: >"$RES"

need=()
for p in isync interimap offlineimap3 gnuplot-nox time; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
	echo "bench: installing ${need[*]}"
	apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		--no-install-recommends "${need[@]}" >/dev/null || { echo "bench: install failed" >&2; exit 1; }
fi

TOOLS=(ceiling mailferry interimap mbsync offlineimap)
# OfflineIMAP copies ~75 messages/s here: 100,000 would take over 20 minutes a run.
[ "$MODE" = full ] && TOOLS=(ceiling mailferry interimap mbsync)
SYNCERS=("${TOOLS[@]:1}")
users="src big"
for t in "${TOOLS[@]}" mailferry_tls mbsync_tls; do
	for r in $(seq 1 "$RUNS"); do users="$users ${t}$r"; done
	users="$users ${t}big"
done
DV=$(mktemp -d /tmp/mf-bench.XXXXXX)
trap 'scripts/dovecot.sh stop "$DV" >/dev/null 2>&1; [ -n "${PROXY_PID:-}" ] && kill "$PROXY_PID" 2>/dev/null; rm -rf "$DV"' EXIT
scripts/dovecot.sh start "$DV" --port-base "${BENCH_PORT_BASE:-18300}" --users "$users" --max-conn 200 >/dev/null || exit 1
. "$DV/env"
P=$IMAP_PORT PS=$IMAPS_PORT
echo "bench: private Dovecot on 127.0.0.1:$P, results in $OUT"

profile=quick
[ "$MODE" = full ] && profile=full
"$BIN/bench/corpus" --out "$MAIL_ROOT/src/Maildir" --profile "$profile" --seed 1
"$BIN/bench/corpus" --out "$MAIL_ROOT/big/Maildir" --big-mb 30 >/dev/null
scripts/dovecot.sh fixperms "$DV"

# ---- peers' configurations (printed in the report) ----
mbsync_conf() { # DSTUSER SRCUSER TLS
	local ssl="SSLType None" port=$P host=127.0.0.1
	# mbsync checks DNS names only, not IP addresses: the certificate has localhost
	[ "$3" = 1 ] && ssl="SSLType IMAPS
CertificateFile $CA_FILE" && port=$PS && host=localhost
	cat <<EOF
# mbsync (isync $(mbsync --version | awk '{print $2}')): documented fast settings:
# one Channel for all boxes, unlimited pipelining (the default), Pull only.
IMAPAccount src
Host $host
Port $port
User $2
PassCmd "cat $DV/pw/$2"
$ssl

IMAPStore src
Account src

IMAPAccount dst
Host $host
Port $port
User $1
PassCmd "cat $DV/pw/$1"
$ssl

IMAPStore dst
Account dst

Channel c
Far :src:
Near :dst:
Patterns *
Create Near
Sync Pull
Expunge None
CopyArrivalDate yes
SyncState $DV/state-$1/
EOF
}
interimap_conf() { # DSTUSER SRCUSER
	cat <<EOF
# interimap $(interimap --version 2>&1 | awk 'NR==1{print $NF}'): QRESYNC + MULTIAPPEND on both ends
database = $DV/state-$1/interimap.db
list-mailbox = *
[local]
type = imap
host = 127.0.0.1
port = $P
username = $1
password = $(cat "$DV/pw/$1")
STARTTLS = NO
[remote]
type = imap
host = 127.0.0.1
port = $P
username = $2
password = $(cat "$DV/pw/$2")
STARTTLS = NO
EOF
}
offlineimap_conf() { # DSTUSER SRCUSER
	cat <<EOF
# offlineimap3 $(offlineimap --version 2>/dev/null): IMAP to IMAP, 4 connections per side
[general]
accounts = a
metadata = $DV/state-$1/offlineimap
ui = quiet
[Account a]
localrepository = dst
remoterepository = src
[Repository src]
type = IMAP
remotehost = 127.0.0.1
remoteport = $P
remoteuser = $2
remotepass = $(cat "$DV/pw/$2")
ssl = no
starttls = no
readonly = True
maxconnections = 4
[Repository dst]
type = IMAP
remotehost = 127.0.0.1
remoteport = $P
remoteuser = $1
remotepass = $(cat "$DV/pw/$1")
ssl = no
starttls = no
createfolders = True
maxconnections = 4
EOF
}

# cmd_for TOOL DSTUSER SRCUSER → the command line in CMD (array)
cmd_for() {
	local tool=$1 dst=$2 src=$3
	mkdir -p "$DV/state-$dst"
	case $tool in
	ceiling) CMD=("$BIN/bench/ceiling" --port "$P" --src "$src" --src-pass-file "$DV/pw/$src" \
		--dst "$dst" --dst-pass-file "$DV/pw/$dst") ;;
	mailferry) CMD=("$BIN/mailferry" migrate "imap://$src@127.0.0.1:$P?starttls=no" \
		"imap://$dst@127.0.0.1:$P?starttls=no" --src-password-file "$DV/pw/$src" \
		--dst-password-file "$DV/pw/$dst" --state "$DV/state-$dst" --json -q ${MF_OPTS:-}) ;;
	mailferry_tls) CMD=("$BIN/mailferry" migrate "imaps://$src@127.0.0.1:$PS" \
		"imaps://$dst@127.0.0.1:$PS" --ca-file "$CA_FILE" --src-password-file "$DV/pw/$src" \
		--dst-password-file "$DV/pw/$dst" --state "$DV/state-$dst" --json -q ${MF_OPTS:-}) ;;
	mbsync | mbsync_tls)
		mbsync_conf "$dst" "$src" "$([ "$tool" = mbsync_tls ] && echo 1 || echo 0)" >"$DV/state-$dst/mbsyncrc"
		CMD=(mbsync -c "$DV/state-$dst/mbsyncrc" -a -q) ;;
	interimap) interimap_conf "$dst" "$src" >"$DV/state-$dst/interimap.conf"
		CMD=(interimap --config "$DV/state-$dst/interimap.conf" --quiet) ;;
	offlineimap) offlineimap_conf "$dst" "$src" >"$DV/state-$dst/offlineimaprc"
		CMD=(offlineimap -c "$DV/state-$dst/offlineimaprc" -o -u quiet) ;;
	esac
}

# measure SCENARIO TOOL RUN DSTUSER SRCUSER [exact-check]
measure() {
	local sc=$1 tool=$2 run=$3 dst=$4 src=$5 check=${6:-} t rc exact=None diff=""
	cmd_for "$tool" "$dst" "$src"
	/usr/bin/time -f '%e %U %S %M' -o "$DV/time" timeout 900 "${CMD[@]}" >"$DV/out" 2>"$DV/err"
	rc=$?
	if [ -n "${PROXY_STATS:-}" ]; then
		kill "$PROXY_PID" 2>/dev/null; wait "$PROXY_PID" 2>/dev/null
	fi
	# GNU time puts "Command exited with non-zero status N" first on failure
	read -r wall usr sys rss < <(tail -n 1 "$DV/time" 2>/dev/null) || { wall=0 usr=0 sys=0 rss=0; }
	if [ -n "$check" ]; then
		if "$BIN/bench/compare" "$MAIL_ROOT/$src/Maildir" "$MAIL_ROOT/$dst/Maildir" >"$DV/cmp" 2>&1; then
			exact=True
		else
			exact=False
			diff=$(grep -v '^compare:' "$DV/cmp" | sed 's/ (Subject:.*//' | sed -E 's/[0-9a-f]{12}//' | sort | uniq -c | sort -rn | head -3 | tr -s ' ' | tr '\n' ';' | sed 's/"/'"'"'/g')
		fi
	fi
	python3 - "$RES" <<PY
import json, sys
out = open("$DV/out").read().strip().splitlines()
mf = {}
for l in out:
    try:
        d = json.loads(l)
        if d.get("event") == "summary" or d.get("tool") == "ceiling": mf = d
    except Exception: pass
rec = dict(scenario="$sc", tool="$tool", run=$run, wall=float("$wall"), user=float("$usr"),
           sys=float("$sys"), rss_kb=int("$rss"), exit=$rc, exact=$exact, diff="$diff",
           messages=mf.get("messages_copied", mf.get("messages")), bytes=mf.get("bytes"),
           wire_in=mf.get("wire_bytes_in"), wire_out=mf.get("wire_bytes_out"),
           stderr=open("$DV/err", errors="replace").read()[-300:] if $rc else "")
if "${PROXY_STATS:-}":
    try: rec["proxy"] = json.load(open("${PROXY_STATS:-/dev/null}"))
    except Exception: pass
open(sys.argv[1], "a").write(json.dumps(rec) + "\n")
PY
	printf 'bench: %-12s %-14s run %s: %6.2f s  rss %6d KB  exit %s%s\n' "$sc" "$tool" "$run" "$wall" "$rss" "$rc" \
		"$([ "$exact" = False ] && echo "  NOT EXACT: $diff" || true)"
}

# Warm up: Dovecot builds its indexes on first access; nobody pays for that.
"$BIN/bench/ceiling" --port "$P" --src src --src-pass-file "$DV/pw/src" --dst ceilingbig \
	--dst-pass-file "$DV/pw/ceilingbig" >/dev/null 2>&1

for r in $(seq 1 "$RUNS"); do
	for t in "${TOOLS[@]}"; do measure initial "$t" "$r" "$t$r" src $([ "$r" = 1 ] && echo check); done
	for t in mailferry_tls mbsync_tls; do measure initial-tls "$t" "$r" "$t$r" src $([ "$r" = 1 ] && echo check); done
done
for r in $(seq 1 "$RUNS"); do
	for t in "${SYNCERS[@]}"; do measure rerun "$t" "$r" "${t}1" src; done
done
for r in $(seq 1 "$RUNS"); do
	python3 tests/integration/mutate.py "$P" src "$(cat "$DV/pw/src")" $((100 + r)) --flags-only --percent 1 >/dev/null
	for t in "${SYNCERS[@]}"; do
		MF_OPTS="--sync-flags --delete" measure flags-1pct "$t" "$r" "${t}1" src
	done
done
for t in "${SYNCERS[@]}"; do measure big-30mb "$t" 1 "${t}big" big check; done

if [ "$MODE" = full ]; then
	# The no-change re-run behind a delay proxy, 25 ms each way (a 50 ms
	# round trip, a server across a continent): wire bytes and round trips.
	PP=$((P + 10)) P_SAVE=$P
	for t in mailferry interimap mbsync; do
		for r in $(seq 1 "$RUNS"); do
			python3 tests/faults/delay_proxy.py --target "$P_SAVE" --listen "$PP" --delay 25 \
				--stats "$DV/proxy.json" --max-seconds 600 >/dev/null 2>&1 &
			PROXY_PID=$!
			sleep 0.5
			P=$PP PROXY_STATS=$DV/proxy.json measure rerun-50ms "$t" "$r" "${t}1" src
			P=$P_SAVE
		done
	done
fi

for f in "$DV"/state-*1/mbsyncrc "$DV"/state-*1/interimap.conf "$DV"/state-*1/offlineimaprc; do
	[ -f "$f" ] && sed 's/^\(password\|remotepass\) = .*/\1 = (hidden)/' "$f" >"$OUT/peers/$(basename "$(dirname "$f")")-$(basename "$f")"
done
python3 bench/report.py "$OUT" "$MODE"

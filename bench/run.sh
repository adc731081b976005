#!/usr/bin/env bash
# bench/run.sh quick|full — IMAP → IMAP: mailferry against the server's own
# ceiling (bench/ceiling) and the peers from Debian (interimap, mbsync,
# OfflineIMAP), in one run, on one private Dovecot, on generated messy mail
# (bench/corpus). Every copy is checked with bench/compare before its time
# counts; a crash, a timeout or an inexact copy is reported, never hidden.
#
# quick (make bench, < 10 minutes on 2 cores): ~6,000 messages / ~65 MB in
#   7 folders with one 30 MB message:
#     initial      first migration into an empty account, TLS off
#     initial-tls  the same through Dovecot's IMAPS port
#     rerun        no-change re-run
#     rerun-50ms   the same behind the delay proxy (25 ms each way): round trips
#     flags-1pct   re-run after 1 % of the messages changed flags (IMAP STORE)
#     flags-1pct-50ms  another 1 %, synced behind the delay proxy: round trips
#     big-30mb     an account holding one 30 MB message (memory)
#     initial-courier  Dovecot -> Courier-IMAP 5.0 (scripts/courier.sh; root):
#                  the server with no fast path (no LITERAL+, MULTIAPPEND,
#                  CONDSTORE), every folder under "INBOX."; its own corpus
#                  (BENCH_COURIER_PROFILE, default demo: ~2,500 messages)
#     rerun-courier    its no-change re-run, with the bytes on the wire
#                  (a counting proxy, no delay, in front of Courier)
#     initial-lmtp  IMAP -> LMTP into Dovecot, next to bench/lmtp_ceiling.sh
#                  (the same files over 4 bare LMTP/BDAT connections)
#     initial-smtp  IMAP -> SMTP into a private Postfix (scripts/postfix.sh;
#                  root) that hands every message on by LMTP to the same
#                  Dovecot; the clock runs until the last one is in the
#                  Maildir (bench/until_delivered.sh); next to the same bare
#                  client in SMTP mode (section "smtp")
#     rerun-from-courier  a ~10,000-message Courier account (no CONDSTORE: a
#                  re-run is a UID FLAGS scan) copied to Dovecot once
#                  (initial-from-courier), then re-run unchanged; bytes and
#                  round trips on the Courier side as the proxy counts them
# full (make bench-full): quick, then 100,000 messages in 20 folders:
#     initial-100k, rerun-100k (loopback), and rerun-100k-50ms: the same
#     no-change re-run behind a delay proxy (25 ms each way), with bytes on
#     the wire and round trips. It reuses the loopback run's destination and
#     state: no tool keys its state by port (mailferry keys it by the two
#     accounts). Then the scaling curves: scale-N, an initial copy of N small
#     messages (bench/corpus --profile crash --messages N) for each N of
#     BENCH_SCALE_SIZES: wall, CPU, peak RSS (bench/scaling.py checks and
#     draws them).
#
# Each scenario runs BENCH_RUNS times (default 3) per tool, interleaved;
# initial migrations go into a fresh destination account each run. Wall
# time (spawn to exit): `report.py exec`; the client's CPU and peak RSS: GNU
# time inside it.
# Results: bench/results/DATE-MODE/ (report.md, report.json, ratios.png,
# results.jsonl, corpus.json, peers/ with each peer's configuration).
#
# Environment: BENCH_TOOLS (a subset of the tools, the ceiling always runs),
# BENCH_RUNS, BENCH_PORT_BASE (default 18300), BENCH_TIMEOUT
# (seconds per tool run, default 1800), BENCH_BIN (default build/release),
# BENCH_KEEP=1 keeps the Dovecot directory; BENCH_TMPDIR (default /tmp)
# holds it, mail and indexes: /dev/shm takes the disk's fsync out of the
# timings (on this VM's disk one copy varied from 2.9 to 10.9 s, on tmpfs
# from 0.68 to 0.76 s) and leaves the CPU bound; BENCH_COURIER=0 leaves Courier
# out, BENCH_COURIER_PROFILE its corpus; BENCH_PROFILE and
# BENCH_FULL_PROFILE (corpus profiles, default quick and full: a smaller one
# such as demo makes a fast smoke test of the bench itself); BENCH_SCENARIOS
# (a subset of the scenarios and sections by name, e.g. "initial rerun
# rerun-50ms scale bulk": see want() below); BENCH_CEILING_CONNS (the
# ceiling's connection counts, default 1,2,4,8,16); BENCH_SCALE_SIZES,
# BENCH_SCALE_TOOLS, BENCH_SCALE_PEER_MAX (the scaling curves, full mode).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
ROOT=$PWD
MODE=${1:-quick}
case $MODE in quick | full) ;; *) echo "usage: bench/run.sh quick|full" >&2; exit 2 ;; esac
RUNS=${BENCH_RUNS:-3}
BIN=${BENCH_BIN:-$ROOT/build/release}
TMO=${BENCH_TIMEOUT:-1800}
OUT=$ROOT/bench/results/$(date +%Y%m%d-%H%M%S)-$MODE
RES=$OUT/results.jsonl
say() { echo "bench: $*"; }

for t in corpus compare ceiling; do
	[ -x "$BIN/bench/$t" ] || { say "$BIN/bench/$t is not built (make tools)" >&2; exit 1; }
done

# ---- the peers, GNU time (CPU, peak RSS) and gnuplot (the chart) from Debian, if missing ----
# shellcheck source=bench/lib.sh
. bench/lib.sh
bench_install isync interimap offlineimap3 gnuplot-nox time

mkdir -p "$OUT/peers"
: >"$RES"

SYNCERS=(mailferry interimap mbsync offlineimap)
# MF_PREV=/path/to/an/older/mailferry: that build too, as "mailferry_prev",
# in the same run (a change measured against the code before it).
[ -n "${MF_PREV:-}" ] && SYNCERS=(mailferry mailferry_prev interimap mbsync offlineimap)
TLS_TOOLS=(ceiling_tls mailferry_tls interimap_tls mbsync_tls)
# BENCH_TOOLS="mailferry mailferry_prev": only these (with the ceiling),
# e.g. to measure a change against the code before it without the peers.
if [ -n "${BENCH_TOOLS:-}" ]; then
	read -r -a SYNCERS <<<"$BENCH_TOOLS"
	TLS_TOOLS=(ceiling_tls)
	for t in "${SYNCERS[@]}"; do [ "$t" = mailferry ] && TLS_TOOLS+=(mailferry_tls); done
fi
INITIAL=(ceiling "${SYNCERS[@]}")
# IMAP -> LMTP: mailferry and a bare LMTP client as its ceiling (no peer
# migrates into LMTP).
LMTP_TOOLS=()
for t in "${SYNCERS[@]}"; do [ "$t" = mailferry ] && LMTP_TOOLS=(ceiling mailferry); done
# Against Courier: no interimap (it needs QRESYNC on both ends; Courier has
# no CONDSTORE/QRESYNC, and interimap refuses to start); the ceiling appends
# there one message per APPEND, waiting for each literal's "+" (Courier has
# neither MULTIAPPEND nor LITERAL+), into "INBOX." folders.
CO_SYNCERS=()
for t in "${SYNCERS[@]}"; do [ "$t" = interimap ] || CO_SYNCERS+=("$t"); done
CO_INITIAL=(ceiling "${CO_SYNCERS[@]}")
# From Courier (10,000 messages): no OfflineIMAP either (~100 messages/s here).
FROMCO=()
for t in "${CO_SYNCERS[@]}"; do [ "$t" = offlineimap ] || FROMCO+=("$t"); done
# want NAME: the scenario (or section: lmtp, courier, from-courier, 100k,
# scale, bulk, status, backup, pop3) is in BENCH_SCENARIOS, or that is unset
want() { [ -z "${BENCH_SCENARIOS:-}" ] || [[ " $BENCH_SCENARIOS " == *" $1 "* ]]; }
COURIER=${BENCH_COURIER:-1}
want courier || want from-courier || COURIER=0
[ "$COURIER" = 1 ] && [ "$(id -u)" -ne 0 ] && {
	say "Courier runs in a private mount namespace and needs root: initial-courier left out" >&2
	COURIER=0
}
# OfflineIMAP copies ~100 messages/s here: 100,000 would take ~17 minutes a run.
K_SYNCERS=(mailferry interimap mbsync)
K_INITIAL=(ceiling "${K_SYNCERS[@]}")
# Scaling curves (full): BENCH_SCALE_SIZES messages (default 1,000, 10,000
# and 100,000; add 1000000 for the 1M step: ~2.7 GB per copy, ~15 minutes
# more), mailferry and mbsync (BENCH_SCALE_TOOLS), the peers up to
# BENCH_SCALE_PEER_MAX messages (10,000: mbsync took 67 s for 10,000 small
# messages here, ~11 minutes for 100,000).
SCALE_SIZES=${BENCH_SCALE_SIZES:-1000 10000 100000}
SCALE_PEER_MAX=${BENCH_SCALE_PEER_MAX:-10000}
SCALE_TOOLS=()
for t in ${BENCH_SCALE_TOOLS:-mailferry mbsync}; do
	[[ " ${SYNCERS[*]} " == *" $t "* ]] && SCALE_TOOLS+=("$t")
done

# Destination account of TOOL for RUN in a scenario family (user names may
# not hold '_').
acct() { local t=${1//_/-}; echo "$t$2"; }
# The ceiling appends once per connection count, each time into an account
# of its own (an emptied one appends slower): ACCOUNT's extra accounts for
# the trials before the last, which goes into ACCOUNT itself.
CEIL_CONNS=${BENCH_CEILING_CONNS:-1,2,4,8,16}
ceil_extra() { # ACCOUNT
	local i n
	n=$(($(tr -cd , <<<"$CEIL_CONNS" | wc -c)))
	for ((i = 1; i <= n; i++)); do echo "${1}t$i"; done
}
with_extra() { # TOOL ACCOUNT → ACCOUNT, and its extra ones for a ceiling
	case $1 in ceiling | ceiling_tls) ceil_extra "$2" | tr '\n' ' ' ;; esac
	echo "$2"
}

users="src big warm"
[ "$COURIER" = 1 ] && users="$users csrc" && for t in "${FROMCO[@]}"; do users="$users $(acct "$t" fromco)"; done
for r in $(seq 1 "$RUNS"); do
	for t in "${INITIAL[@]}" "${TLS_TOOLS[@]}"; do users="$users $(with_extra "$t" "$(acct "$t" "$r")")"; done
	for t in ceiling "${SYNCERS[@]}"; do users="$users $(with_extra "$t" "$(acct "$t" "big$r")")"; done
	for t in "${LMTP_TOOLS[@]}"; do users="$users $(acct "$t" "l$r") $(acct "$t" "s$r")"; done
done
if [ "$MODE" = full ]; then
	users="$users src100k"
	for r in $(seq 1 "$RUNS"); do for t in "${K_INITIAL[@]}"; do users="$users $(with_extra "$t" "$(acct "$t" "k$r")")"; done; done
	for n in $SCALE_SIZES; do
		users="$users scale$n"
		for t in "${SCALE_TOOLS[@]}"; do users="$users $(acct "$t" "x$n")"; done
	done
fi

DV=$(mktemp -d "${BENCH_TMPDIR:-/tmp}/mf-bench.XXXXXX")
PROXY_PID=
cleanup() {
	[ -n "$PROXY_PID" ] && kill "$PROXY_PID" 2>/dev/null
	[ -d "$DV/postfix" ] && scripts/postfix.sh stop "$DV/postfix" >/dev/null 2>&1
	[ -d "$DV/courier" ] && scripts/courier.sh stop "$DV/courier" >/dev/null 2>&1
	scripts/dovecot.sh stop "$DV" >/dev/null 2>&1
	[ "${BENCH_KEEP:-0}" = 1 ] && say "kept $DV" || rm -rf "$DV"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
scripts/dovecot.sh start "$DV" --port-base "${BENCH_PORT_BASE:-18300}" --users "$users" --max-conn 200 >"$DV/start.log" 2>&1 ||
	{ cat "$DV/start.log" >&2; say "Dovecot did not start" >&2; exit 1; }
. "$DV/env"
P=$IMAP_PORT PS=$IMAPS_PORT
say "private Dovecot on 127.0.0.1:$P (IMAPS $PS), $RUNS runs per scenario, results in $OUT"

# ---- the corpora, written straight into the Maildirs ----
corpus_json=
gen() { # USER corpus-args...
	local u=$1 line
	shift
	line=$("$BIN/bench/corpus" --out "$MAIL_ROOT/$u/Maildir" "$@") || { say "corpus failed" >&2; exit 1; }
	say "$u: $line"
	corpus_json="$corpus_json$(echo "$line" | awk -v u="$u" -v s="$*" '{ gsub(",", ""); printf "\"%s\":{\"messages\":%s,\"bytes\":%s,\"folders\":%s,\"args\":\"%s\"},", u, $2, $4, $6, s }')"
}
gen src --profile "${BENCH_PROFILE:-quick}" --seed 1
gen big --big-mb 30 --seed 1
[ "$COURIER" = 1 ] && gen csrc --profile "${BENCH_COURIER_PROFILE:-demo}" --seed 1
[ "$MODE" = full ] && gen src100k --profile "${BENCH_FULL_PROFILE:-full}" --seed 1
echo "{${corpus_json}\"dovecot\":\"$(dovecot --version | awk '{print $1}')\"}" >"$OUT/corpus.json"
scripts/dovecot.sh fixperms "$DV"

# ---- Courier-IMAP beside it (destination accounts only; the source is csrc on Dovecot) ----
CO=$DV/courier
if [ "$COURIER" = 1 ]; then
	co_users=cosrc
	for r in $(seq 1 "$RUNS"); do for t in "${CO_INITIAL[@]}"; do co_users="$co_users $(with_extra "$t" "$(acct "$t" "c$r")")"; done; done
	if scripts/courier.sh start "$CO" --port-base $((${BENCH_PORT_BASE:-18300} + 20)) --users "${co_users# }" \
		--max-conn 200 >"$DV/courier-start.log" 2>&1; then
		CO_PORT=$(sed -n 's/^IMAP_PORT=//p' "$CO/env")
		say "private Courier-IMAP on 127.0.0.1:$CO_PORT"
		# The source account for rerun-from-courier, written straight into
		# Courier's Maildir: the corpus profile (default crash, ~5,200 small
		# messages) for seeds 1 and 2, each tree under "INBOX.PartN";
		# keyword letters dropped from the file names (Courier keeps
		# keywords elsewhere), Dovecot's files left out.
		for sd in 1 2; do
			"$BIN/bench/corpus" --out "$DV/cogen/$sd" --profile "${BENCH_COURIER_SRC_PROFILE:-crash}" --seed "$sd" >/dev/null
		done
		python3 - "$DV/cogen" "$CO/mail/cosrc/Maildir" <<'PY'
import os, re, sys
gen, md = sys.argv[1:3]
n = 0
for sd in sorted(os.listdir(gen)):
    root = os.path.join(gen, sd)
    for d in [""] + sorted(x for x in os.listdir(root) if x.startswith(".")):
        src = os.path.join(root, d)
        if not os.path.isdir(os.path.join(src, "cur")):
            continue
        dst = os.path.join(md, ".Part" + sd + d)
        for sub in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(dst, sub), exist_ok=True)
        open(os.path.join(dst, "maildirfolder"), "w").close()
        for sub in ("cur", "new"):
            for fn in os.listdir(os.path.join(src, sub)) if os.path.isdir(os.path.join(src, sub)) else []:
                os.rename(os.path.join(src, sub, fn), os.path.join(dst, sub, re.sub(r"(:2,[A-Z]*)[a-z]+$", r"\1", fn)))
                n += 1
print("bench: cosrc on Courier: %d messages" % n)
PY
		rm -rf "$DV/cogen"
		scripts/courier.sh fixperms "$CO"
	else
		say "Courier did not start, initial-courier left out: $(tail -n 3 "$DV/courier-start.log" | tr '\n' ' ')" >&2
		COURIER=0
	fi
fi

# ---- the peers' configurations (copied into the report, passwords hidden) ----
mbsync_conf() { # DST SRC PORT TLS [DST_PORT DST_PW_DIR SRC_PORT SRC_PW_DIR]
	local ssl="SSLType None" host=127.0.0.1 dport=${5:-$3} dpw=${6:-$DV/pw} auth= sport=${7:-$3} spw=${8:-$DV/pw} sauth=
	# mbsync checks DNS names only, not IP addresses: the certificate has localhost too
	[ "$4" = 1 ] && ssl="SSLType IMAPS
CertificateFile $CA_FILE" && host=localhost
	# Courier offers AUTH=PLAIN only under TLS; mbsync sends LOGIN in the
	# clear only when told to (loopback)
	[ "$dport" != "$3" ] && auth="AuthMechs LOGIN"
	[ "$sport" != "$3" ] && sauth="AuthMechs LOGIN"
	cat <<EOF
# mbsync (isync $(mbsync --version 2>/dev/null | awk '{print $2}')), documented fast settings: one
# Channel for all mailboxes, unlimited pipelining (PipelineDepth default),
# Pull only, no fsync (FSync no); CopyArrivalDate keeps INTERNALDATE.
FSync no

IMAPAccount src
Host $host
Port $sport
User $2
PassCmd "cat $spw/$2"
$ssl
$sauth

IMAPStore src
Account src

IMAPAccount dst
Host $host
Port $dport
User $1
PassCmd "cat $dpw/$1"
$ssl
$auth

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
interimap_conf() { # DST SRC PORT TLS
	local type=imap tls="STARTTLS = NO"
	[ "$4" = 1 ] && type=imaps tls="SSL_CAfile = $CA_FILE
SSL_verify = YES"
	cat <<EOF
# interimap $(interimap --version 2>&1 | awk 'NR==1{print $NF}'): QRESYNC and MULTIAPPEND on both ends
# (its fast path); no COMPRESS (loopback); [remote] is the source.
database = $DV/state-$1/interimap.db
list-mailbox = *

[local]
type = $type
host = 127.0.0.1
port = $3
username = $1
password = $(cat "$DV/pw/$1")
compress = NO
$tls

[remote]
type = $type
host = 127.0.0.1
port = $3
username = $2
password = $(cat "$DV/pw/$2")
compress = NO
$tls
EOF
}
offlineimap_conf() { # DST SRC PORT [DST_PORT DST_PW_DIR]
	local dport=${4:-$3} dpw=${5:-$DV/pw} snt= dnt=
	# Courier keeps every folder under "INBOX.": names translated both ways
	# (OfflineIMAP's nametrans must be each other's inverse)
	[ "$dport" != "$3" ] && snt="nametrans = lambda f: f if f == 'INBOX' else 'INBOX.' + f" &&
		dnt="nametrans = lambda f: re.sub(r'^INBOX\\.', '', f)"
	cat <<EOF
# offlineimap3 $(offlineimap --version 2>/dev/null): IMAP to IMAP, 4 connections per side (the
# documented sensible maximum is 5), no fsync, quiet UI; the source read-only.
[general]
accounts = a
metadata = $DV/state-$1/offlineimap
ui = quiet
fsync = false

[Account a]
localrepository = dst
remoterepository = src

[Repository src]
type = IMAP
remotehost = 127.0.0.1
remoteport = $3
remoteuser = $2
remotepassfile = $DV/pw/$2
ssl = no
starttls = no
readonly = True
maxconnections = 4
$snt

[Repository dst]
type = IMAP
remotehost = 127.0.0.1
remoteport = $dport
remoteuser = $1
remotepassfile = $dpw/$1
ssl = no
starttls = no
createfolders = True
maxconnections = 4
$dnt
EOF
}

# cmd_for TOOL DST SRC PORT → CMD (array); 1 if the tool is not there
# DPORT / DPW, SPORT / SPW (globals): the destination's or the source's
# port and password directory when it is Courier, not Dovecot.
cmd_for() {
	local tool=$1 dst=$2 src=$3 port=$4 tls=0 sd=$DV/state-$2 dport=${DPORT:-$4} dpw=${DPW:-$DV/pw}
	local sport=${SPORT:-$4} spw=${SPW:-$DV/pw}
	mkdir -p "$sd"
	case $tool in *_tls) tls=1 ;; esac
	if [ -n "${SMTP:-}" ]; then
		# by SMTP into Postfix: timed until every message is in the Maildir
		case $tool in
		ceiling)
			[ -x "$BIN/tools/smtp_send" ] || return 1
			CMD=(bench/lmtp_ceiling.sh "$BIN/tools/smtp_send" "$PF_PORT" "$dst@example.org"
				"$MAIL_ROOT/$src/Maildir" 4 "$MAIL_ROOT/$dst/Maildir/new") ;;
		mailferry)
			CMD=(bench/until_delivered.sh "$MAIL_ROOT/$dst/Maildir/new" "$(n_msgs "$src")" --
				"$BIN/mailferry" migrate "imap://$src@127.0.0.1:$sport?starttls=no"
				"smtp://127.0.0.1:$PF_PORT?rcpt=$dst@example.org&starttls=no" --src-password-file "$spw/$src"
				--connections 4 --state "$sd" --json -q) ;;
		*) return 1 ;;
		esac
		return 0
	fi
	if [ -n "${LMTP:-}" ]; then
		case $tool in
		ceiling)
			[ -x "$BIN/tools/smtp_send" ] || return 1
			CMD=(bench/lmtp_ceiling.sh "$BIN/tools/smtp_send" "$LMTP_PORT" "$dst" "$MAIL_ROOT/$src/Maildir" 4) ;;
		mailferry)
			CMD=("$BIN/mailferry" migrate "imap://$src@127.0.0.1:$sport?starttls=no"
				"lmtp://127.0.0.1:$LMTP_PORT?rcpt=$dst&starttls=no" --src-password-file "$spw/$src"
				--connections 4 --state "$sd" --json -q) ;;
		*) return 1 ;;
		esac
		return 0
	fi
	case $tool in
	ceiling | ceiling_tls)
		[ -n "${SPORT:-}" ] && return 1 # Courier's "INBOX." names as a source: not mapped
		local du dp= u
		du=$(with_extra "$tool" "$dst" | tr ' ' ,)
		for u in ${du//,/ }; do dp=$dp${dp:+,}$dpw/$u; done
		CMD=("$BIN/bench/ceiling" --port "$sport" --src "$src" --src-pass-file "$spw/$src"
			--dst "$du" --dst-pass-file "$dp" --dst-port "$dport" --conns "$CEIL_CONNS")
		[ -n "${DPORT:-}" ] && CMD+=(--dst-prefix INBOX. --split-folders)
		[ $tls = 1 ] && CMD+=(--tls --ca-file "$CA_FILE") ;;
	mailferry)
		[ -x "$BIN/mailferry" ] || return 1
		CMD=("$BIN/mailferry" migrate "imap://$src@127.0.0.1:$sport?starttls=no"
			"imap://$dst@127.0.0.1:$dport?starttls=no" --src-password-file "$spw/$src"
			--dst-password-file "$dpw/$dst" --state "$sd" --json -q ${MF_OPTS:-}) ;;
	mailferry_prev)
		[ -x "${MF_PREV:-}" ] || return 1
		CMD=("$MF_PREV" migrate "imap://$src@127.0.0.1:$sport?starttls=no"
			"imap://$dst@127.0.0.1:$dport?starttls=no" --src-password-file "$spw/$src"
			--dst-password-file "$dpw/$dst" --state "$sd" --json -q ${MF_OPTS:-}) ;;
	mailferry_tls)
		[ -x "$BIN/mailferry" ] || return 1
		CMD=("$BIN/mailferry" migrate "imaps://$src@127.0.0.1:$port" "imaps://$dst@127.0.0.1:$port"
			--ca-file "$CA_FILE" --src-password-file "$DV/pw/$src" --dst-password-file "$DV/pw/$dst"
			--state "$sd" --json -q ${MF_OPTS:-}) ;;
	mbsync | mbsync_tls)
		command -v mbsync >/dev/null || return 1
		mbsync_conf "$dst" "$src" "$port" $tls "$dport" "$dpw" "$sport" "$spw" >"$sd/mbsyncrc"
		CMD=(mbsync -c "$sd/mbsyncrc" -a -q) ;;
	interimap | interimap_tls)
		command -v interimap >/dev/null || return 1
		interimap_conf "$dst" "$src" "$port" $tls >"$sd/interimap.conf"
		chmod 600 "$sd/interimap.conf"
		CMD=(interimap --config "$sd/interimap.conf" --quiet) ;;
	offlineimap)
		command -v offlineimap >/dev/null || return 1
		offlineimap_conf "$dst" "$src" "$port" "$dport" "$dpw" >"$sd/offlineimaprc"
		CMD=(offlineimap -c "$sd/offlineimaprc" -o -u quiet) ;;
	*) return 1 ;;
	esac
	# the configuration, once per tool (and destination server), into the report
	local f tag=$tool${DPORT:+-courier}${SPORT:+-from-courier}
	for f in "$sd/mbsyncrc" "$sd/interimap.conf" "$sd/offlineimaprc"; do
		[ -f "$f" ] && [ ! -f "$OUT/peers/$tag-$(basename "$f")" ] &&
			sed 's/^password = .*/password = (hidden)/' "$f" >"$OUT/peers/$tag-$(basename "$f")"
	done
	return 0
}

# The delay proxy (25 ms each way) in front of Dovecot's IMAP port (or
# TARGET, with DELAY ms); its port in PROXY_PORT, its counters in FILE.
PROXY_PORT=$((P + 10))
proxy_start() { # STATS_FILE [TARGET DELAY]
	local i
	rm -f "$DV/proxy.out"
	python3 tests/faults/delay_proxy.py --target "${2:-$P}" --listen "$PROXY_PORT" --delay "${3:-25}" --stats "$1" \
		--max-seconds "$TMO" >"$DV/proxy.out" 2>"$DV/proxy.err" &
	PROXY_PID=$!
	for i in $(seq 1 100); do
		grep -q "^PORT $PROXY_PORT" "$DV/proxy.out" 2>/dev/null && return 0
		kill -0 "$PROXY_PID" 2>/dev/null || break
		sleep 0.05
	done
	proxy_stop
	say "the delay proxy did not start: $(cat "$DV/proxy.err")" >&2
	return 1
}
proxy_stop() {
	[ -n "$PROXY_PID" ] || return 0
	kill -TERM "$PROXY_PID" 2>/dev/null
	wait "$PROXY_PID" 2>/dev/null
	PROXY_PID=
}

# Courier's Maildir as bench/compare can judge it against the source's
# (tests/integration/fold_maildir.py: Courier's line ends, keywords and
# UTF-8 folder names); the source's fold is made once.
co_fold() { # SRC DST WORKDIR → DV/fold-SRC, WORKDIR/fold
	[ -d "$DV/fold-$1" ] || python3 tests/integration/fold_maildir.py "$MAIL_ROOT/$1/Maildir" "$DV/fold-$1" ||
		return 1
	python3 tests/integration/fold_maildir.py "$CO/mail/$2/Maildir" "$3/fold" --courier
}
# OfflineIMAP creates every parent of a new folder and accepts only
# [ALREADYEXISTS] for one that exists; Courier answers CREATE INBOX with a
# plain NO, so "INBOX.Sent" can never be created by it. The bench creates
# the destination's folders for it before the run (not timed).
co_precreate() { # SRC DST
	python3 - "$P" "$1" "$DV/pw/$1" "$CO_PORT" "$2" "$CO/pw/$2" <<'PY'
import imaplib, re, sys
sport, suser, spw, dport, duser, dpw = sys.argv[1:7]
s = imaplib.IMAP4("127.0.0.1", int(sport))
s.login(suser, open(spw).read())
names = []
for line in s.list()[1]:
    m = re.match(rb'\((.*?)\) (?:NIL|"[^"]*") "?(.*?)"?$', line)
    if m and m.group(2) != b"INBOX" and b"\\Noselect" not in m.group(1):
        names.append(m.group(2).decode())
s.logout()
d = imaplib.IMAP4("127.0.0.1", int(dport))
d.login(duser, open(dpw).read())
for n in names:
    d.create('"INBOX.%s"' % n)
d.logout()
PY
}

# measure SCENARIO TOOL RUN DST SRC CHECK(0|1) [proxy|courier|courier-proxy]
# courier: the destination account is on Courier; courier-proxy: that
# through the proxy without delay (it counts the bytes).
measure() {
	local sc=$1 tool=$2 run=$3 dst=$4 src=$5 check=$6 via=${7:-} W=$DV/w port rc n co=0
	local a b dmd=$MAIL_ROOT/$4/Maildir
	rm -rf "$W"
	mkdir -p "$W"
	port=$P
	case $tool in *_tls) port=$PS ;; esac
	DPORT= DPW= SPORT= SPW= LMTP= SMTP=
	case $via in
	lmtp) LMTP=1 ;;
	smtp) LMTP=1 SMTP=1 ;;
	courier*) co=1 DPORT=$CO_PORT DPW=$CO/pw dmd=$CO/mail/$dst/Maildir ;;
	from-courier*) co=2 SPORT=$CO_PORT SPW=$CO/pw ;;
	esac
	rc=
	if [ "$via" = from-courier-proxy ]; then
		if proxy_start "$W/proxy.json" "$CO_PORT" 0; then
			SPORT=$PROXY_PORT
		else
			echo "the counting proxy did not start" >"$W/err"
			rc=125
		fi
	elif [ "$via" = courier-proxy ]; then
		if proxy_start "$W/proxy.json" "$CO_PORT" 0; then
			DPORT=$PROXY_PORT
		else
			echo "the counting proxy did not start" >"$W/err"
			rc=125
		fi
	elif [ "$via" = proxy ]; then
		if proxy_start "$W/proxy.json"; then
			port=$PROXY_PORT
		else
			echo "the delay proxy did not start" >"$W/err"
			rc=125
		fi
	fi
	# The previous run's dirty pages are written back now, not during this one.
	sync
	if [ -n "$rc" ]; then
		:
	elif cmd_for "$tool" "$dst" "$src" "$port"; then
		python3 bench/report.py exec "$W" "$TMO" "${CMD[@]}"
		rc=$?
	else
		echo "missing: $tool is not installed or not built" >"$W/err"
		rc=127
	fi
	proxy_stop
	if [ "$check" = 1 ] && [ "$rc" != 127 ] && [ "$rc" != 125 ] && [ -n "$LMTP" ]; then
		# delivered: every source message once in new/, after Dovecot's
		# trace fields (it stores LF line ends here)
		# (by SMTP Postfix rewrites bare CRs and ends every message with a
		# line end: folded, and a final CRLF added where missing)
		python3 tests/integration/trace_compare.py --lf ${SMTP:+--fold-cr} --json "$W/cmp.json" "$dmd/new" \
			"$([ -n "${SMTP:-}" ] && echo 1 || echo 0)" \
			"$MAIL_ROOT/$src/Maildir" >/dev/null 2>"$W/cmp.err"
	elif [ "$check" = 1 ] && [ "$rc" != 127 ] && [ "$rc" != 125 ]; then
		a=$MAIL_ROOT/$src/Maildir b=$dmd
		if [ $co = 1 ]; then
			a=$DV/fold-$src b=$W/fold
			co_fold "$src" "$dst" "$W" 2>"$W/cmp.err"
		elif [ $co = 2 ]; then # Courier is the source: both sides folded
			a=$DV/fold-co-$src b=$W/fold
			{ [ -d "$a" ] || python3 tests/integration/fold_maildir.py "$CO/mail/$src/Maildir" "$a" --courier; } 2>"$W/cmp.err"
			python3 tests/integration/fold_maildir.py "$dmd" "$b" 2>>"$W/cmp.err"
		fi
		"$BIN/bench/compare" --json "$a" "$b" >"$W/cmp.json" 2>>"$W/cmp.err"
		# mbsync adds an X-TUID header to what it stores: say so, and
		# whether the copy is right apart from it
		# (once per scenario and tool: it reads every message whole)
		if ! grep -q '"exact":true' "$W/cmp.json" && [ -d "$dmd" ]; then
			if [ -f "$DV/note-$sc-$tool" ]; then
				cp "$DV/note-$sc-$tool" "$W/note"
			else
				n=$(grep -rl -m1 '^X-TUID: ' "$dmd" 2>/dev/null | wc -l)
				if [ "$n" -gt 0 ]; then
					"$BIN/bench/compare" "$a" "$b" --ignore-header X-TUID >"$W/cmp2" 2>&1
					echo "adds an X-TUID header to $n messages; apart from it: $(tail -n 1 "$W/cmp2" | sed 's/^compare: [^:]*: //')" >"$W/note"
				fi
				: >>"$W/note"
				cp "$W/note" "$DV/note-$sc-$tool"
			fi
		fi
	fi
	# the ceiling's extra accounts (its earlier append trials) are not checked: gone
	case $tool in ceiling | ceiling_tls)
		for a in $(ceil_extra "$dst"); do
			if [ $co = 1 ]; then rm -rf "${CO:?}/mail/$a/Maildir"; else drop "$a"; fi
		done ;;
	esac
	DPORT= DPW= SPORT= SPW= LMTP= SMTP=
	python3 bench/report.py record "$RES" "$sc" "$tool" "$run" "$rc" "$W" "$check"
}

# n_msgs USER: the messages in USER's Maildir (every folder)
n_msgs() { find "$MAIL_ROOT/$1/Maildir" -type f \( -path '*/cur/*' -o -path '*/new/*' \) | wc -l; }

# drop a 100k destination once checked (~640 MB each; the rest stays until the end)
drop() { rm -rf "${MAIL_ROOT:?}/$1/Maildir" "$DV/state-$1"; }

# Warm-up: Dovecot builds a Maildir's indexes at its first access; nobody pays for that.
warm() { # SRC
	"$BIN/bench/ceiling" --port "$P" --src "$1" --src-pass-file "$DV/pw/$1" --dst warm \
		--dst-pass-file "$DV/pw/warm" --per-folder --fetch-only >/dev/null 2>&1
	drop warm
}
warm src
warm big

# ---- quick ----
for r in $(seq 1 "$RUNS"); do
	want initial && for t in "${INITIAL[@]}"; do
		measure initial "$t" "$r" "$(acct "$t" "$r")" src 1
	done
	want initial-tls && for t in "${TLS_TOOLS[@]}"; do
		measure initial-tls "$t" "$r" "$(acct "$t" "$r")" src 1
	done
done
# Re-runs go over the first run's destination and state. mailferry gets
# --sync-flags --delete: the peers look at flags on every run, so must it.
# The -50ms variants: the same behind the delay proxy (25 ms each way), for
# the round trips every tool makes (and what they cost on a WAN).
for r in $(seq 1 "$RUNS"); do
	for v in rerun rerun-50ms; do
		want $v || continue
		for t in "${SYNCERS[@]}"; do
			MF_OPTS="--sync-flags --delete" measure $v "$t" "$r" "$(acct "$t" 1)" src \
				"$([ "$r" = "$RUNS" ] && echo 1 || echo 0)" "$([ $v = rerun ] || echo proxy)"
		done
	done
done
for r in $(seq 1 "$RUNS"); do
	for v in flags-1pct flags-1pct-50ms; do
		want $v || continue
		python3 tests/integration/mutate.py "$P" src "$(cat "$DV/pw/src")" \
			$(($([ $v = flags-1pct ] && echo 100 || echo 200) + r)) --flags-only --percent 1 |
			sed 's/^/bench: '"$v"' run '"$r"': /'
		for t in "${SYNCERS[@]}"; do
			MF_OPTS="--sync-flags --delete" measure $v "$t" "$r" "$(acct "$t" 1)" src 1 \
				"$([ $v = flags-1pct ] || echo proxy)"
		done
	done
done
want big-30mb && for r in $(seq 1 "$RUNS"); do
	for t in ceiling "${SYNCERS[@]}"; do
		measure big-30mb "$t" "$r" "$(acct "$t" "big$r")" big 1
	done
done

# ---- IMAP -> LMTP (issue 18): mailferry against a bare LMTP client ----
want lmtp && for r in $(seq 1 "$RUNS"); do
	for t in "${LMTP_TOOLS[@]}"; do
		measure initial-lmtp "$t" "$r" "$(acct "$t" "l$r")" src 1 lmtp
	done
done

# ---- IMAP -> SMTP through a private Postfix (issue 18): the same, by SMTP ----
if want smtp && [ ${#LMTP_TOOLS[@]} -gt 0 ]; then
	if [ "$(id -u)" -ne 0 ]; then
		say "Postfix needs root: initial-smtp left out" >&2
	elif ! command -v postfix >/dev/null; then
		say "Postfix is not installed (scripts/deps.sh): initial-smtp left out" >&2
	else
		s_users=
		for r in $(seq 1 "$RUNS"); do for t in "${LMTP_TOOLS[@]}"; do s_users="$s_users $(acct "$t" "s$r")"; done; done
		if scripts/postfix.sh start "$DV/postfix" --port "$((${BENCH_PORT_BASE:-18300} + 20))" \
			--lmtp-port "$LMTP_PORT" --users "${s_users# }" >"$DV/postfix-start.log" 2>&1; then
			PF_PORT=$(sed -n 's/^SMTP_PORT=//p' "$DV/postfix/env")
			say "private Postfix on 127.0.0.1:$PF_PORT, delivering by LMTP to 127.0.0.1:$LMTP_PORT"
			for r in $(seq 1 "$RUNS"); do
				for t in "${LMTP_TOOLS[@]}"; do
					measure initial-smtp "$t" "$r" "$(acct "$t" "s$r")" src 1 smtp
				done
			done
			scripts/postfix.sh stop "$DV/postfix" >/dev/null 2>&1
		else
			say "Postfix did not start: initial-smtp left out ($(tail -n 1 "$DV/postfix-start.log"))" >&2
		fi
	fi
fi

# ---- Dovecot -> Courier: no LITERAL+, no MULTIAPPEND, folders under "INBOX." ----
if [ "$COURIER" = 1 ] && want courier; then
	warm csrc
	for r in $(seq 1 "$RUNS"); do
		for t in "${CO_INITIAL[@]}"; do
			[ "$t" = offlineimap ] && co_precreate csrc "$(acct "$t" "c$r")"
			measure initial-courier "$t" "$r" "$(acct "$t" "c$r")" csrc 1 courier
		done
	done
	# re-runs over the first run's accounts, through the counting proxy
	for r in $(seq 1 "$RUNS"); do
		for t in "${CO_SYNCERS[@]}"; do
			MF_OPTS="--sync-flags --delete" measure rerun-courier "$t" "$r" "$(acct "$t" c1)" csrc \
				"$([ "$r" = "$RUNS" ] && echo 1 || echo 0)" courier-proxy
		done
	done
fi

if [ "$COURIER" = 1 ] && want from-courier; then
	# Courier as the source: one initial copy per tool (it makes the
	# destination and state), then the no-change re-runs through the
	# counting proxy in front of Courier.
	for t in "${FROMCO[@]}"; do
		measure initial-from-courier "$t" 1 "$(acct "$t" fromco)" cosrc 1 from-courier
	done
	for r in $(seq 1 "$RUNS"); do
		for t in "${FROMCO[@]}"; do
			MF_OPTS="--sync-flags --delete" measure rerun-from-courier "$t" "$r" "$(acct "$t" fromco)" cosrc \
				"$([ "$r" = "$RUNS" ] && echo 1 || echo 0)" from-courier-proxy
		done
	done
fi

# ---- full: 100,000 messages in 20 folders ----
if [ "$MODE" = full ] && want 100k; then
	warm src100k
	for r in $(seq 1 "$RUNS"); do
		for t in "${K_INITIAL[@]}"; do
			measure initial-100k "$t" "$r" "$(acct "$t" "k$r")" src100k 1
			[ "$r" -gt 1 ] && drop "$(acct "$t" "k$r")"
		done
	done
	for r in $(seq 1 "$RUNS"); do
		for t in "${K_SYNCERS[@]}"; do
			MF_OPTS="--sync-flags --delete" measure rerun-100k "$t" "$r" "$(acct "$t" k1)" src100k \
				"$([ "$r" = "$RUNS" ] && echo 1 || echo 0)"
		done
	done
	for r in $(seq 1 "$RUNS"); do
		for t in "${K_SYNCERS[@]}"; do
			MF_OPTS="--sync-flags --delete" measure rerun-100k-50ms "$t" "$r" "$(acct "$t" k1)" src100k \
				"$([ "$r" = "$RUNS" ] && echo 1 || echo 0)" proxy
		done
	done
fi

# ---- full: scaling curves (issue 17 item 6) ----
# An initial copy of the crash profile's small messages (3 folders, INBOX
# 40 %) at each size of BENCH_SCALE_SIZES, one run each: wall, CPU, peak
# RSS per tool; a source and its copies are dropped before the next size.
if [ "$MODE" = full ] && want scale; then
	for n in $SCALE_SIZES; do
		gen "scale$n" --profile crash --messages "$n" --seed 3
		scripts/dovecot.sh fixperms "$DV" >/dev/null
		warm "scale$n"
		for t in "${SCALE_TOOLS[@]}"; do
			[ "$t" != mailferry ] && [ "$n" -gt "$SCALE_PEER_MAX" ] && continue
			measure "scale-$n" "$t" 1 "$(acct "$t" "x$n")" "scale$n" 1
			drop "$(acct "$t" "x$n")"
		done
		drop "scale$n"
	done
	echo "{${corpus_json}\"dovecot\":\"$(dovecot --version | awk '{print $1}')\"}" >"$OUT/corpus.json"
fi

# bulk runs (issue 20): 1,000 accounts in full mode, 200 in quick (its
# tools take ~15 minutes together at 1,000); BULK_ACCOUNTS overrides
want bulk && { BULK_ACCOUNTS=${BULK_ACCOUNTS:-$([ "$MODE" = full ] && echo 1000 || echo 200)} \
	bench/bulk.sh "$OUT" || say "bench/bulk.sh failed (see $OUT/bulk)" >&2; }
want status && bench/status.sh # the status server's cost (--status): throughput, /metrics with 10,000 accounts
say "done; the report:"
python3 bench/report.py "$OUT" "$MODE"
if want backup; then BENCH_OUT=$OUT bench/backup.sh "$MODE"; fi # issue 19: backup, restore, export (its own Dovecot; appends to report.md)
if want pop3; then BENCH_OUT=$OUT bench/pop3.sh; fi # issue 18: POP3 against mpop, fetchmail, getmail6 (local Maildir) and mpop_lda, fetchmail_lmtp (into the same Dovecot) (its own Dovecot; appends to report.md)

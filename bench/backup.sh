#!/usr/bin/env bash
# bench/backup.sh [quick|full] — the archive (issue 19, performance): mailferry
# backup against the peers that keep backups as Maildirs (mbsync and
# OfflineIMAP from Debian) and against the server's ceiling (a bare FETCH of
# everything: bench/ceiling --per-folder --fetch-only, one connection per
# folder), on its own private Dovecot and the quick corpus (BENCH_PROFILE;
# ~6,000 messages, ~69 MB), every copy checked with bench/compare before its time counts.
#
#   backup        a first backup into a fresh archive (mailferry, and
#                 mailferry --encrypt), mbsync -> Maildir, OfflineIMAP ->
#                 Maildir, the ceiling. mailferry's is checked by
#                 `export --maildir` + compare against the source (that
#                 export is the export-maildir row), the peers' Maildirs by
#                 compare directly (mbsync's also modulo the X-TUID header
#                 it adds, said so in the row).
#   backup-rerun  no-change re-run (--sync-flags --delete) of the first
#                 run's archive, next to mbsync's re-run, and
#   migrate-rerun the no-change re-run of `mailferry migrate` into an account
#                 of the same Dovecot (its first copy: the migrate row).
#   restore       the plain archive into an empty account, compared.
#   export-maildir, export-mbox   the archive to a Maildir (compared) and
#                 to one mboxrd file (its "From " lines counted).
#   backup-30mb   an account holding one 30 MB message, plain and encrypted:
#                 peak RSS (goal: at most 32 MiB whatever the sizes).
#   size          stored / raw bytes: the backups' archives (all the mail,
#                 random base64 attachments included), and the mail without
#                 base64 parts (the 0.20 goal) through bench/archive_ratio
#                 (the archive's code with backup's defaults, next to
#                 per-message zstd -3 and with a trained dictionary) and
#                 through `tar | zstd -3` and `tar | zstd -19`.
#
# Results: BENCH_OUT (bench/run.sh passes its own result directory) or
# bench/results/DATE-backup/: backup.jsonl (every run), backup.md (the
# section; appended to report.md when one is there), backup.json.
#
# Environment: BENCH_RUNS (3), BENCH_PROFILE (quick; demo for a smoke run),
# BENCH_BIN (build/release), BENCH_TIMEOUT (1800 s per tool run), BENCH_TMPDIR
# (/tmp; the Dovecot, the archives and the Maildirs: /dev/shm leaves the disk out),
# BENCH_PORT_BASE (18300; this script's Dovecot takes base + 60),
# BENCH_BACKUP_TOOLS (default "mailferry mailferry_enc mbsync offlineimap",
# or what BENCH_TOOLS names of them; the ceiling always runs), BENCH_KEEP=1
# keeps the Dovecot directory.
# Not for: migrations (bench/run.sh), correctness (tests/integration).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
ROOT=$PWD
MODE=${1:-quick} # quick and full alike: the goals are on the quick corpus
case $MODE in quick | full) ;; *) echo "usage: bench/backup.sh [quick|full]" >&2; exit 2 ;; esac
RUNS=${BENCH_RUNS:-3}
BIN=${BENCH_BIN:-$ROOT/build/release}
TMO=${BENCH_TIMEOUT:-1800}
PROFILE=${BENCH_PROFILE:-quick}
OUT=${BENCH_OUT:-$ROOT/bench/results/$(date +%Y%m%d-%H%M%S)-backup}
RES=$OUT/backup.jsonl
read -r -a TOOLS <<<"${BENCH_BACKUP_TOOLS:-mailferry mailferry_enc mbsync offlineimap}"
# BENCH_TOOLS (bench/run.sh's subset), when BENCH_BACKUP_TOOLS is not set:
# the same subset here (mailferry brings mailferry_enc)
if [ -z "${BENCH_BACKUP_TOOLS:-}" ] && [ -n "${BENCH_TOOLS:-}" ]; then
	TOOLS=()
	for t in $BENCH_TOOLS; do
		case $t in
		mailferry) TOOLS+=(mailferry mailferry_enc) ;;
		mbsync | offlineimap) TOOLS+=("$t") ;;
		esac
	done
fi
say() { echo "bench: backup: $*"; }

for t in corpus compare ceiling archive_ratio; do
	[ -x "$BIN/bench/$t" ] || { say "$BIN/bench/$t is not built (make tools)" >&2; exit 1; }
done
[ -x "$BIN/mailferry" ] || { say "$BIN/mailferry is not built (make all)" >&2; exit 1; }
has() { local t; for t in "${TOOLS[@]}"; do [ "$t" = "$1" ] && return 0; done; return 1; }
mkdir -p "$OUT"
: >"$RES"

users="src big warm mig"
for r in $(seq 1 "$RUNS"); do users="$users rs$r"; done
# shellcheck source=bench/lib.sh
. bench/lib.sh
bench_dovecot backup-bench $((${BENCH_PORT_BASE:-18300} + 60)) "$users"
P=$IMAP_PORT
SMD=$MAIL_ROOT/src/Maildir
say "private Dovecot on 127.0.0.1:$P, $RUNS runs per scenario, results in $OUT"

line=$("$BIN/bench/corpus" --out "$SMD" --profile "$PROFILE" --seed 1) || { say "corpus failed" >&2; exit 1; }
say "src: $line"
echo "$line" | awk -v p="$PROFILE" '{ gsub(",", ""); printf "{\"src\":{\"messages\":%s,\"bytes\":%s,\"folders\":%s,\"profile\":\"%s\"}", $2, $4, $6, p }' >"$DV/corpus.json"
line=$("$BIN/bench/corpus" --out "$MAIL_ROOT/big/Maildir" --big-mb 30 --seed 1) || { say "corpus failed" >&2; exit 1; }
say "big: $line"
echo "$line" | awk '{ gsub(",", ""); printf ",\"big\":{\"messages\":%s,\"bytes\":%s}}\n", $2, $4 }' >>"$DV/corpus.json"
cp "$DV/corpus.json" "$OUT/backup-corpus.json"
scripts/dovecot.sh fixperms "$DV"
printf 'a bench passphrase, not a secret' >"$DV/passphrase"
chmod 600 "$DV/passphrase"

# Dovecot builds a Maildir's indexes at its first access: nobody pays for that.
for u in src big; do
	"$BIN/bench/ceiling" --port "$P" --src "$u" --src-pass-file "$DV/pw/$u" --dst warm \
		--dst-pass-file "$DV/pw/warm" --per-folder --fetch-only >/dev/null 2>&1
done

# ---- the peers' configurations ----
mbsync_conf() { # USER MAILDIR STATE
	cat <<EOF
# mbsync (isync $(mbsync --version 2>/dev/null | awk '{print $2}')) -> Maildir, documented fast settings:
# one Channel, unlimited pipelining (the default), Pull only, no fsync;
# Maildir++ layout (as Dovecot's), CopyArrivalDate keeps INTERNALDATE.
FSync no

IMAPAccount src
Host 127.0.0.1
Port $P
User $1
PassCmd "cat $DV/pw/$1"
SSLType None

IMAPStore src
Account src

MaildirStore near
Inbox $2
SubFolders Maildir++

Channel c
Far :src:
Near :near:
Patterns *
Create Near
Sync Pull
Expunge None
CopyArrivalDate yes
SyncState $3/
EOF
}
offlineimap_conf() { # USER MAILDIR STATE
	cat <<EOF
# offlineimap3 $(offlineimap --version 2>/dev/null) -> Maildir: 4 connections (the documented sensible
# maximum is 5), no fsync, quiet UI, the source read-only.
[general]
accounts = a
metadata = $3
ui = quiet
fsync = false

[Account a]
localrepository = local
remoterepository = src

[Repository src]
type = IMAP
remotehost = 127.0.0.1
remoteport = $P
remoteuser = $1
remotepassfile = $DV/pw/$1
ssl = no
starttls = no
readonly = True
maxconnections = 4

[Repository local]
type = Maildir
localfolders = $2
sep = .
EOF
}

SRCURL() { echo "imap://$1@127.0.0.1:$P?starttls=no"; }
# cmd_for SCENARIO TOOL USER DIR → CMD; DIR holds the tool's archive or
# Maildir and its state (kept for the re-runs); 1 if the tool is missing
cmd_for() {
	local sc=$1 tool=$2 u=$3 d=$4
	mkdir -p "$d"
	case $tool in
	ceiling)
		CMD=("$BIN/bench/ceiling" --port "$P" --src "$u" --src-pass-file "$DV/pw/$u" --dst warm
			--dst-pass-file "$DV/pw/warm" --per-folder --fetch-only) ;;
	mailferry | mailferry_enc)
		CMD=("$BIN/mailferry" backup "$(SRCURL "$u")" "$d/archive" --src-password-file "$DV/pw/$u"
			--state "$d/state" --json -q)
		[ "$tool" = mailferry_enc ] && CMD+=(--encrypt --passphrase-file "$DV/passphrase")
		case $sc in *rerun*) CMD+=(--sync-flags --delete) ;; esac ;;
	migrate)
		CMD=("$BIN/mailferry" migrate "$(SRCURL "$u")" "imap://mig@127.0.0.1:$P?starttls=no"
			--src-password-file "$DV/pw/$u" --dst-password-file "$DV/pw/mig" --state "$d/state"
			--json -q --sync-flags --delete) ;;
	mbsync)
		command -v mbsync >/dev/null || return 1
		mkdir -p "$d/md" "$d/state"
		mbsync_conf "$u" "$d/md" "$d/state" >"$d/mbsyncrc"
		[ -f "$OUT/peers/backup-mbsyncrc" ] || { mkdir -p "$OUT/peers"; cp "$d/mbsyncrc" "$OUT/peers/backup-mbsyncrc"; }
		CMD=(mbsync -c "$d/mbsyncrc" -a -q) ;;
	offlineimap)
		command -v offlineimap >/dev/null || return 1
		mkdir -p "$d/md" "$d/state"
		offlineimap_conf "$u" "$d/md" "$d/state" >"$d/offlineimaprc"
		[ -f "$OUT/peers/backup-offlineimaprc" ] || { mkdir -p "$OUT/peers"; cp "$d/offlineimaprc" "$OUT/peers/backup-offlineimaprc"; }
		CMD=(offlineimap -c "$d/offlineimaprc" -o -u quiet) ;;
	*) return 1 ;;
	esac
	return 0
}

# OfflineIMAP's Maildir keeps INBOX as a folder beside the others
# ("INBOX", "Archive.2019"): seen as Dovecot's Maildir++ through symlinks.
oi_view() { # MAILDIR VIEW
	local f
	mkdir -p "$2"
	for f in cur new tmp; do ln -sfn "$1/INBOX/$f" "$2/$f"; done
	for f in "$1"/*; do
		[ -d "$f/cur" ] && [ "$(basename "$f")" != INBOX ] && ln -sfn "$f" "$2/.$(basename "$f")"
	done
}

# run one timed command in WORKDIR; RC
timed() { # WORKDIR CMD...
	local w=$1
	shift
	rm -rf "$w"
	mkdir -p "$w"
	sync
	python3 bench/report.py exec "$w" "$TMO" "$@"
}

# measure SCENARIO TOOL RUN USER DIR CHECK(0|1) [SRC_MAILDIR]
measure() {
	local sc=$1 tool=$2 run=$3 u=$4 d=$5 check=$6 smd=${7:-$SMD} W=$DV/w rc n
	if cmd_for "$sc" "$tool" "$u" "$d"; then
		timed "$W" "${CMD[@]}"
		rc=$?
	else
		rm -rf "$W" && mkdir -p "$W"
		echo "missing: $tool is not installed or not built" >"$W/err"
		rc=127
	fi
	if [ "$check" = 1 ] && [ "$rc" != 127 ]; then
		case $tool in
		mailferry | mailferry_enc)
			# exact: the archive exported to a Maildir and compared; that
			# export is timed as its own row
			local pf=()
			[ "$tool" = mailferry_enc ] && pf=(--passphrase-file "$DV/passphrase")
			timed "$DV/we" "$BIN/mailferry" export "$d/archive" --maildir "$DV/we/md" "${pf[@]}"
			n=$?
			"$BIN/bench/compare" --json "$smd" "$DV/we/md" >"$DV/we/cmp.json" 2>"$DV/we/cmp.err"
			cp "$DV/we/cmp.json" "$DV/we/cmp.err" "$W/"
			[ "$tool" = mailferry ] && [ "$sc" = backup ] &&
				python3 bench/report.py record "$RES" export-maildir mailferry "$run" "$n" "$DV/we" 1
			rm -rf "$DV/we" ;;
		mbsync)
			"$BIN/bench/compare" --json "$smd" "$d/md" >"$W/cmp.json" 2>"$W/cmp.err"
			if ! grep -q '"exact":true' "$W/cmp.json"; then
				n=$(grep -rl -m1 '^X-TUID: ' "$d/md" 2>/dev/null | wc -l)
				"$BIN/bench/compare" "$smd" "$d/md" --ignore-header X-TUID >"$W/cmp2" 2>&1
				echo "adds an X-TUID header to $n messages; apart from it: $(tail -n 1 "$W/cmp2" | sed 's/^compare: [^:]*: //')" >"$W/note"
			fi ;;
		offlineimap)
			oi_view "$d/md" "$d/view"
			"$BIN/bench/compare" --json "$smd" "$d/view" >"$W/cmp.json" 2>"$W/cmp.err" ;;
		esac
	fi
	python3 bench/report.py record "$RES" "$sc" "$tool" "$run" "$rc" "$W" "$check"
	cp "$W/out" "$d/last.out" 2>/dev/null
}

# ---- backup: first run into a fresh archive / Maildir ----
for r in $(seq 1 "$RUNS"); do
	measure backup ceiling "$r" src "$DV/t/ceiling-$r" 0
	for t in "${TOOLS[@]}"; do
		measure backup "$t" "$r" src "$DV/t/$t-$r" 1
		# the sizes the archive reports (all the mail, attachments included)
		case $t in mailferry*) grep -h '"event":"archive"' "$DV/t/$t-$r/last.out" |
			sed "s/^{/{\"tool\":\"$t\",\"run\":$r,/" >>"$OUT/backup-archive.jsonl" ;; esac
		# keep run 1 (the re-runs, restore, export use it), drop the others
		[ "$r" -gt 1 ] && rm -rf "$DV/t/$t-$r"
	done
done

# ---- no-change re-runs: backup (the first run's archive and state),
# mbsync (its Maildir and state), migrate (its first copy untimed) ----
mig=$DV/t/migrate
# (the first copy is a row too: what APPENDing this mail costs, next to restore)
measure migrate migrate 1 src "$mig" 0
for r in $(seq 1 "$RUNS"); do
	last=$([ "$r" = "$RUNS" ] && echo 1 || echo 0)
	for t in mailferry mbsync; do
		has "$t" && measure backup-rerun "$t" "$r" src "$DV/t/$t-1" "$last"
	done
	measure migrate-rerun migrate "$r" src "$mig" 0
done

# ---- restore into an empty account, export to an mbox ----
if has mailferry; then
	AR=$DV/t/mailferry-1/archive
	for r in $(seq 1 "$RUNS"); do
		W=$DV/w
		timed "$W" "$BIN/mailferry" restore "$AR" "imap://rs$r@127.0.0.1:$P?starttls=no" \
			--dst-password-file "$DV/pw/rs$r" --state "$DV/rst-$r" --json -q
		rc=$?
		"$BIN/bench/compare" --json "$SMD" "$MAIL_ROOT/rs$r/Maildir" >"$W/cmp.json" 2>"$W/cmp.err"
		python3 bench/report.py record "$RES" restore mailferry "$r" "$rc" "$W" 1
		rm -rf "$MAIL_ROOT/rs$r/Maildir" "$DV/rst-$r"
		timed "$W" "$BIN/mailferry" export "$AR" --mbox "$W/all.mbox"
		rc=$?
		# mboxrd: every message starts with a "From " line, one in the body is quoted
		n=$(grep -c '^From ' "$W/all.mbox" 2>/dev/null)
		m=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["src"]["messages"])' "$DV/corpus.json")
		[ "$n" = "$m" ] && e=true || e=false
		echo "{\"exact\":$e,\"messages\":$m,\"dst_messages\":${n:-0},\"missing\":$((m - ${n:-0})),\"extra\":0,\"duplicate\":0,\"flags\":0,\"internaldate\":0,\"folder_missing\":0,\"folder_extra\":0,\"diffs\":[]}" >"$W/cmp.json"
		echo "messages counted by their From lines, not compared" >"$W/note"
		python3 bench/report.py record "$RES" export-mbox mailferry "$r" "$rc" "$W" 1
	done
fi

# ---- one 30 MB message: peak RSS, plain and encrypted ----
for r in $(seq 1 "$RUNS"); do
	for t in "${TOOLS[@]}"; do
		case $t in mailferry*)
			measure backup-30mb "$t" "$r" big "$DV/t/big-$t-$r" 1 "$MAIL_ROOT/big/Maildir"
			rm -rf "$DV/t/big-$t-$r" ;;
		esac
	done
done

# ---- size: the mail without base64 parts (the 0.20 goal) ----
SZ=$OUT/backup-size.txt
{
	find "$SMD" -type f \( -path '*/cur/*' -o -path '*/new/*' \) >"$DV/all.list"
	tr '\n' '\0' <"$DV/all.list" | xargs -0 grep -L 'Content-Transfer-Encoding: base64' >"$DV/text.list"
	for set in text all; do
		raw=$(tr '\n' '\0' <"$DV/$set.list" | xargs -0 cat | wc -c)
		for lv in 3 19; do
			z=$(tar -cf - -T "$DV/$set.list" 2>/dev/null | zstd -q -T1 -"$lv" -c | wc -c)
			echo "tar $set $lv $raw $z"
		done
	done
	"$BIN/bench/archive_ratio" "$SMD" --no-attachments --quick | sed 's/^/ratio /'
} >"$SZ" 2>&1

python3 bench/backup_report.py "$OUT"

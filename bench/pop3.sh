#!/usr/bin/env bash
# bench/pop3.sh — POP3 as a source (issue 18, performance): mailferry reading
# a POP3 maildrop next to the POP3 collectors from Debian doing the same job
# (mpop, fetchmail, getmail6), on its own private Dovecot, every copy checked
# before its time counts. The maildrop is the quick corpus's INBOX (~2,400
# messy messages; BENCH_PROFILE), served by Dovecot's POP3 on loopback.
#
#   pop3          mailferry migrate pop3:// → imap:// (an empty account of the
#                 same Dovecot) and → lmtp:// (Dovecot's LMTP), mailferry
#                 backup pop3:// → a fresh archive; mpop → Maildir (its own
#                 delivery), getmail6 → Maildir, fetchmail → an MDA that
#                 writes each message into a Maildir (fetchmail has no
#                 Maildir delivery of its own). Every peer keeps the mail on
#                 the server, adds no Received header where it can be told
#                 not to, and starts from an empty UIDL store.
#                 Those three peers write a plain Maildir no server has
#                 indexed: the "local store" comparison, the like of the
#                 archive. The same job as migrate into Dovecot (every
#                 message in an empty account's INBOX, indexed, visible over
#                 IMAP) is done by two more rows:
#                 fetchmail_lmtp  fetchmail forwarding by LMTP to the same
#                                 Dovecot's LMTP port (`lmtp`, `smtphost
#                                 127.0.0.1/PORT`, `no rewrite`; one
#                                 connection, one transaction per message)
#                 mpop_lda        mpop's `delivery mda` through Dovecot's own
#                                 MDA, dovecot-lda -d USER, one process per
#                                 message, run as root (it takes the mail
#                                 user's uid itself) with the private
#                                 instance's configuration: `-c DV/run/config`,
#                                 the running instance's config socket, by
#                                 default (BENCH_LDA_CONF=file: `-c
#                                 DV/dovecot.conf`, which makes every
#                                 dovecot-lda parse the file through doveconf,
#                                 about twice as slow per message here)
#                 getmail6 into dovecot-lda (MDA_external) is not a row:
#                 getmail 6.18 installs its SIGCHLD handler after fork(), and
#                 under load a dovecot-lda that exits before it is never
#                 reaped (getmail waits out its timeout; seen after 33 of
#                 1,003 messages).
#   pop3-30mb     a maildrop holding one 30 MB message: peak RSS of
#                 mailferry into IMAP and into LMTP (goal: at most 16 MiB).
#
# Exactness: tests/integration/trace_compare.py: every source message
# delivered exactly once, its bytes at the end of the delivered file with
# nothing before them but trace fields (Received, Return-Path,
# Delivered-To), line ends compared without CRs (Dovecot and fetchmail's
# MDA store LF). A tool that adds a final line end to messages that had none
# (the POP3 terminator hides its absence unless the client checks the
# listed size) is exact apart from that, said so in its row. fetchmail_lmtp
# alone is also checked with --moved-return-path: fetchmail, forwarding by
# SMTP/LMTP, takes a message's own Return-Path field off and sends its
# address as the envelope sender (by design, transact.c), and Dovecot writes
# a Return-Path with that address on top; the row says how many messages
# matched only that way (the same address, above Dovecot's Delivered-To and
# Received instead of below them). mailferry's rows get no such allowance.
# The archive is exported to a Maildir and compared the same way.
#
# Results: BENCH_OUT (bench/run.sh passes its own directory) or
# bench/results/DATE-pop3/: pop3.jsonl, pop3.md (appended to report.md when
# one is there), pop3.json.
# Environment: BENCH_RUNS (3), BENCH_PROFILE (quick; demo for a smoke run),
# BENCH_BIN (build/release), BENCH_TIMEOUT (1800 s per tool run),
# BENCH_PORT_BASE (18300; this script's Dovecot takes base + 80),
# BENCH_POP3_TOOLS (default "mailferry mailferry_lmtp mailferry_archive mpop
# fetchmail getmail mpop_lda fetchmail_lmtp"), BENCH_LDA_CONF (socket; file),
# BENCH_KEEP=1 keeps the Dovecot directory.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
ROOT=$PWD
RUNS=${BENCH_RUNS:-3}
BIN=${BENCH_BIN:-$ROOT/build/release}
TMO=${BENCH_TIMEOUT:-1800}
PROFILE=${BENCH_PROFILE:-quick}
OUT=${BENCH_OUT:-$ROOT/bench/results/$(date +%Y%m%d-%H%M%S)-pop3}
RES=$OUT/pop3.jsonl
read -r -a TOOLS <<<"${BENCH_POP3_TOOLS:-mailferry mailferry_lmtp mailferry_archive mpop fetchmail getmail mpop_lda fetchmail_lmtp}"
say() { echo "bench: pop3: $*"; }

[ -x "$BIN/bench/corpus" ] || { say "$BIN/bench/corpus is not built (make tools)" >&2; exit 1; }
[ -x "$BIN/mailferry" ] || { say "$BIN/mailferry is not built (make all)" >&2; exit 1; }
[ -x "$BIN/bench/ceiling" ] && [ -x "$BIN/tools/smtp_send" ] || { say "the ceiling clients are not built (make tools)" >&2; exit 1; }

# the peers and GNU time from Debian, if missing
# shellcheck source=bench/lib.sh
. bench/lib.sh
bench_install mpop fetchmail getmail6 time
mkdir -p "$OUT/peers"
: >"$RES"

users="src big"
for r in $(seq 1 "$RUNS"); do users="$users di$r dl$r bi$r bl$r ca$r cl$r ml$r fl$r"; done
bench_dovecot pop3-bench $((${BENCH_PORT_BASE:-18300} + 80)) "$users"
P=$POP3_PORT
SMD=$MAIL_ROOT/src/Maildir
say "private Dovecot, POP3 on 127.0.0.1:$P, $RUNS runs per tool, results in $OUT"

# the maildrop: the corpus's INBOX (POP3 sees nothing else)
"$BIN/bench/corpus" --out "$SMD" --profile "$PROFILE" --seed 1 >/dev/null || { say "corpus failed" >&2; exit 1; }
find "$SMD" -mindepth 1 -maxdepth 1 -name '.*' -type d -exec rm -rf {} +
n=$(find "$SMD/cur" "$SMD/new" -type f | wc -l)
b=$(find "$SMD/cur" "$SMD/new" -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}')
say "maildrop: $n messages, $b bytes"
"$BIN/bench/corpus" --out "$MAIL_ROOT/big/Maildir" --big-mb 30 --seed 1 >/dev/null || { say "corpus failed" >&2; exit 1; }
bn=$(find "$MAIL_ROOT/big/Maildir" -type f -path '*/cur/*' -printf '%s\n' | awk '{s += $1} END {print s + 0}')
echo "{\"src\":{\"messages\":$n,\"bytes\":$b,\"profile\":\"$PROFILE\"},\"big\":{\"messages\":1,\"bytes\":$bn}}" >"$OUT/pop3-corpus.json"
scripts/dovecot.sh fixperms "$DV"
# Dovecot builds its POP3 UIDL cache at the first session: nobody pays for it
for u in src big; do
	python3 - "$P" "$u" "$DV/pw/$u" <<'PY' >/dev/null 2>&1
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=60)
f = s.makefile("rb")
f.readline()
pw = open(sys.argv[3]).read()
for c in ("USER " + sys.argv[2], "PASS " + pw, "UIDL"):
    s.sendall((c + "\r\n").encode())
    l = f.readline()
while f.readline() not in (b".\r\n", b""):
    pass
s.sendall(b"QUIT\r\n")
PY
done

# Plain POP3 on loopback, as every peer here reads it (mpop "tls off",
# fetchmail sslproto ''): without ?starttls=no mailferry would take STLS,
# which Dovecot offers, and pay TLS that the peers do not.
POP3URL() { echo "pop3://$1@127.0.0.1:$P?starttls=no"; }
LDA=/usr/lib/dovecot/dovecot-lda
# cmd_for SCENARIO TOOL USER RUN DIR → CMD and DELIV (where the messages land,
# a Maildir); 1 if the tool is missing
# mpop_rc DIR DELIVERY_LINE KEPT_NAME WHAT: DIR/mpoprc for the maildrop
# account (user $u), keeping the mail on the server, no Received header,
# an empty UIDL file per run; the first one of its kind is kept in the
# results as KEPT_NAME. WHAT says where it delivers (a comment in it).
mpop_rc() {
	cat >"$1/mpoprc" <<EOF
# mpop $(mpop --version 2>/dev/null | head -n 1 | awk '{print $3}') $4
defaults
tls off
auth user
pipelining auto
account src
host 127.0.0.1
port $P
user $u
passwordeval cat $DV/pw/$u
$2
keep on
only_new on
received_header off
uidls_file $1/uidls
account default : src
EOF
	chmod 600 "$1/mpoprc"
	[ -f "$OUT/peers/$3" ] || cp "$1/mpoprc" "$OUT/peers/$3"
}

cmd_for() {
	local sc=$1 tool=$2 u=$3 r=$4 d=$5 dst
	DELIV=$d/md
	mkdir -p "$d"
	case $tool in
	mailferry)
		dst=$([ "$sc" = pop3-30mb ] && echo "bi$r" || echo "di$r")
		DELIV=$MAIL_ROOT/$dst/Maildir
		CMD=("$BIN/mailferry" migrate "$(POP3URL "$u")" "imap://$dst@127.0.0.1:$IMAP_PORT?starttls=no"
			--src-password-file "$DV/pw/$u" --dst-password-file "$DV/pw/$dst" --ca-file "$CA_FILE" --state "$d/state" --json -q) ;;
	mailferry_lmtp)
		dst=$([ "$sc" = pop3-30mb ] && echo "bl$r" || echo "dl$r")
		DELIV=$MAIL_ROOT/$dst/Maildir
		CMD=("$BIN/mailferry" migrate "$(POP3URL "$u")" "lmtp://127.0.0.1:$LMTP_PORT?rcpt=$dst"
			--src-password-file "$DV/pw/$u" --ca-file "$CA_FILE" --state "$d/state" --json -q) ;;
	mailferry_archive)
		CMD=("$BIN/mailferry" backup "$(POP3URL "$u")" "$d/archive" --src-password-file "$DV/pw/$u"
			--ca-file "$CA_FILE" --state "$d/state" --json -q) ;;
	mpop)
		command -v mpop >/dev/null || return 1
		mkdir -p "$DELIV/cur" "$DELIV/new" "$DELIV/tmp"
		mpop_rc "$d" "delivery maildir $DELIV" "pop3-mpoprc" \
			"-> Maildir (its own delivery): pipelining auto (the default; Dovecot offers PIPELINING), the mail kept on the server, no Received header, an empty UIDL file per run."
		CMD=(mpop -C "$d/mpoprc" -q src) ;;
	getmail)
		command -v getmail >/dev/null || return 1
		mkdir -p "$DELIV/cur" "$DELIV/new" "$DELIV/tmp" "$d/gm"
		# getmail refuses to deliver as root: as root, it delivers as the
		# mail owner, into a Maildir that user owns
		local gmuser=
		if [ "$(id -u)" -eq 0 ]; then
			gmuser="user = ${MAIL_OWNER%%:*}"
			chown -R "$MAIL_OWNER" "$DELIV"
			chmod 711 "$d"
		fi
		cat >"$d/getmailrc" <<EOF
# getmail6 $(getmail --version 2>/dev/null | awk '{print $2}') -> Maildir: the mail kept on the server
# (delete false), every message read, no Delivered-To/Received headers
# added, no log.
[retriever]
type = SimplePOP3Retriever
server = 127.0.0.1
port = $P
username = $u
password_command = ("/bin/cat", "$DV/pw/$u")

[destination]
type = Maildir
path = $DELIV/
$gmuser

[options]
verbose = 0
read_all = true
delete = false
delivered_to = false
received = false
message_log_syslog = false
EOF
		[ -f "$OUT/peers/pop3-getmailrc" ] || cp "$d/getmailrc" "$OUT/peers/pop3-getmailrc"
		CMD=(getmail --rcfile "$d/getmailrc" --getmaildir "$d/gm" -q) ;;
	mpop_lda)
		command -v mpop >/dev/null && [ -x "$LDA" ] || return 1
		DELIV=$MAIL_ROOT/ml$r/Maildir
		local conf=$DV/run/config
		[ "${BENCH_LDA_CONF:-socket}" = file ] && conf=$DV/dovecot.conf
		mpop_rc "$d" "delivery mda \"$LDA -c $conf -d ml$r\"" "pop3-mpoprc-lda" \
			"-> dovecot-lda (Dovecot's own MDA, one process per message) into an empty account of the private Dovecot: pipelining auto, the mail kept on the server, no Received header, an empty UIDL file per run. dovecot-lda runs as root and takes the mail user's uid itself."
		CMD=(mpop -C "$d/mpoprc" -q src) ;;
	fetchmail_lmtp)
		command -v fetchmail >/dev/null || return 1
		DELIV=$MAIL_ROOT/fl$r/Maildir
		{
			echo "# fetchmail $(fetchmail --version 2>/dev/null | head -n 1 | awk '{print $3}') -> LMTP, the private Dovecot's LMTP port, into an empty account;"
			echo "# the mail kept on the server, no Received header (invisible), no address rewriting,"
			echo "# an empty id file per run."
			echo "set no syslog"
			echo "set no bouncemail"
			echo "set invisible"
			echo "poll 127.0.0.1 service $P protocol pop3 auth password uidl"
			echo "  user \"$u\" there password \"$(cat "$DV/pw/$u")\" is \"fl$r\" here"
			echo "  keep fetchall no rewrite sslproto '' lmtp smtphost \"127.0.0.1/$LMTP_PORT\""
		} >"$d/fetchmailrc"
		chmod 600 "$d/fetchmailrc"
		[ -f "$OUT/peers/pop3-fetchmailrc-lmtp" ] ||
			sed 's/password "[^"]*"/password "(hidden)"/' "$d/fetchmailrc" >"$OUT/peers/pop3-fetchmailrc-lmtp"
		CMD=(fetchmail -f "$d/fetchmailrc" --idfile "$d/fetchids" --nosoftbounce -s) ;;
	fetchmail)
		command -v fetchmail >/dev/null || return 1
		mkdir -p "$DELIV/cur" "$DELIV/new" "$DELIV/tmp"
		# the MDA: one file per message into DELIV/new (fetchmail forks it
		# once per message, as it would procmail or maildrop)
		printf '#!/bin/sh\nexec cat >"%s/new/$$.fetchmail"\n' "$DELIV" >"$d/mda"
		chmod 755 "$d/mda"
		{
			echo "# fetchmail $(fetchmail --version 2>/dev/null | head -n 1 | awk '{print $3}') -> an MDA writing each message into a Maildir;"
			echo "# the mail kept on the server, no Received header (invisible), an empty id file per run."
			echo "set no syslog"
			echo "set no bouncemail"
			echo "set invisible"
			echo "poll 127.0.0.1 service $P protocol pop3 auth password uidl"
			echo "  user \"$u\" there password \"$(cat "$DV/pw/$u")\" is \"$(id -un)\" here"
			echo "  keep fetchall sslproto '' mda \"$d/mda\""
		} >"$d/fetchmailrc"
		chmod 600 "$d/fetchmailrc"
		[ -f "$OUT/peers/pop3-fetchmailrc" ] ||
			sed 's/password "[^"]*"/password "(hidden)"/' "$d/fetchmailrc" >"$OUT/peers/pop3-fetchmailrc"
		CMD=(fetchmail -f "$d/fetchmailrc" --idfile "$d/fetchids" --nosoftbounce -s) ;;
	*) return 1 ;;
	esac
	return 0
}

timed() { # WORKDIR CMD...
	local w=$1
	shift
	rm -rf "$w"
	mkdir -p "$w"
	sync
	python3 bench/report.py exec "$w" "$TMO" "$@"
}

# every message file of a Maildir (cur and new, every folder) in one
# directory, for trace_compare.py
flat() { # MAILDIR DIR
	mkdir -p "$2"
	find "$1" -type f \( -path '*/cur/*' -o -path '*/new/*' \) -exec ln -s -t "$2" {} + 2>/dev/null
}

# measure SCENARIO TOOL RUN USER
measure() {
	local sc=$1 tool=$2 run=$3 u=$4 d=$DV/t/$1-$2-$3 W=$DV/w rc
	rm -rf "$d"
	if cmd_for "$sc" "$tool" "$u" "$run" "$d"; then
		timed "$W" "${CMD[@]}"
		rc=$?
	else
		rm -rf "$W" && mkdir -p "$W"
		echo "missing: $tool is not installed or not built" >"$W/err"
		rc=127
	fi
	if [ "$rc" != 127 ]; then
		if [ "$tool" = mailferry_archive ]; then
			"$BIN/mailferry" export "$d/archive" --maildir "$DELIV" >"$W/export.log" 2>&1
		fi
		flat "$DELIV" "$DV/flat"
		# exact: the source's bytes; else, is a final line end added to
		# messages that had none the only difference? (said so in the row)
		if ! python3 tests/integration/trace_compare.py --lf --json "$W/cmp.json" "$DV/flat" 0 \
			"$MAIL_ROOT/$u/Maildir" >/dev/null 2>"$W/cmp.err"; then
			local miss
			miss=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["missing"])' "$W/cmp.json")
			if python3 tests/integration/trace_compare.py --lf --json "$W/cmp2.json" "$DV/flat" 1 \
				"$MAIL_ROOT/$u/Maildir" >/dev/null 2>&1; then
				mv "$W/cmp2.json" "$W/cmp.json"
				echo "exact apart from a final line end added to $miss messages that had none" >"$W/note"
			elif [ "$tool" = fetchmail_lmtp ] &&
				python3 tests/integration/trace_compare.py --lf --moved-return-path --json "$W/cmp2.json" \
					"$DV/flat" 1 "$MAIL_ROOT/$u/Maildir" >/dev/null 2>&1; then
				# fetchmail's own Return-Path handling (see the header),
				# said so in the row with the counts
				mv "$W/cmp2.json" "$W/cmp.json"
				python3 -c 'import json, sys
c = json.load(open(sys.argv[1]))
print("exact apart from its own Return-Path field taken into the envelope and written back by Dovecot "
      "on top, the same address (%d messages), and a final line end added to %d messages that had none"
      % (c["return_path_moved"], c["final_crlf_added"]))' "$W/cmp.json" >"$W/note"
			fi
		fi
		rm -rf "$DV/flat"
	fi
	python3 bench/report.py record "$RES" "$sc" "$tool" "$run" "$rc" "$W" 1
	# the delivered mail goes: the next run starts empty
	rm -rf "$d" "$MAIL_ROOT"/{di,dl,bi,bl,ml,fl}"$run"/Maildir
}

# The bounds: what this Dovecot accepts of the same messages from a bare
# client that fetches nothing, into accounts of their own: IMAP APPEND from
# memory (bench/ceiling's append phase, MULTIAPPEND and LITERAL+, the best of
# 1, 2, 4 and 8 connections; its source is the maildrop's INBOX over IMAP)
# and pipelined LMTP over 4 connections (bench/lmtp_ceiling.sh, the files
# themselves). No POP3 client can deliver into this server faster.
bounds() { # RUN
	local r=$1 t0 t1
	"$BIN/bench/ceiling" --port "$IMAP_PORT" --src src --src-pass-file "$DV/pw/src" --dst "ca$r" \
		--dst-pass-file "$DV/pw/ca$r" --conns 1,2,4,8 >>"$OUT/pop3-bound-imap.jsonl" 2>"$DV/ceiling.err" ||
		say "the IMAP ceiling failed: $(tail -n 1 "$DV/ceiling.err")" >&2
	sync
	t0=$(date +%s.%N)
	if bench/lmtp_ceiling.sh "$BIN/tools/smtp_send" "$LMTP_PORT" "cl$r" "$SMD" 4 >"$DV/lc.json" 2>"$DV/lc.err"; then
		t1=$(date +%s.%N)
		python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); d["seconds"]=float(sys.argv[3])-float(sys.argv[2]); print(json.dumps(d))' \
			"$DV/lc.json" "$t0" "$t1" >>"$OUT/pop3-bound-lmtp.jsonl"
	else
		say "the LMTP ceiling failed: $(tail -n 1 "$DV/lc.err")" >&2
	fi
	rm -rf "$MAIL_ROOT/ca$r/Maildir" "$MAIL_ROOT/cl$r/Maildir"
}

for r in $(seq 1 "$RUNS"); do
	bounds "$r"
	for t in "${TOOLS[@]}"; do
		measure pop3 "$t" "$r" src
	done
	for t in mailferry mailferry_lmtp; do
		measure pop3-30mb "$t" "$r" big
	done
done

python3 bench/pop3_report.py "$OUT"

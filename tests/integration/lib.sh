# shellcheck shell=bash
# tests/integration/lib.sh — sourced by tests/integration/t_*.sh.
#
# Each test runs from the repository root as `bash tests/integration/t_x.sh`,
# prints "ok - NAME" or "not ok - NAME: reason" per check, and cleans up
# (servers and helpers stopped, temp files removed; KEEP=1 keeps the files)
# on any exit, Ctrl-C included.
#
# Paths:  ROOT (repo), T_TMP (private temp dir), MF (ASan mailferry),
#         MF_REL (release mailferry), BENCH_BIN (dir of bench tools:
#         $BENCH_BIN/corpus, $BENCH_BIN/compare), FAULTS (tests/faults).
#
# Servers: each private Dovecot has a NAME (a shell identifier); several may
# run at once, each in $T_TMP/NAME on its own free port range.
#   dv_start NAME [dovecot.sh start options]   start it; then its DIR/env is
#         loaded with the NAME_ prefix: NAME_IMAP_PORT NAME_IMAPS_PORT
#         NAME_POP3_PORT NAME_POP3S_PORT NAME_LMTP_PORT NAME_CA_FILE
#         NAME_MAIL_ROOT NAME_MAIL_OWNER NAME_SEPARATOR NAME_USERS
#         NAME_DOVECOT_CONF, and NAME_DIR (passwords in $NAME_DIR/pw/USER).
#         Example: dv_start A --no-qresync; echo "$A_IMAP_PORT $A_DIR/pw/src"
#   dv_stop NAME                  stop it now (the EXIT trap does it anyway)
#   cy_start NAME [cyrus.sh start options]   the same for a private Cyrus IMAP
#         3.6 (scripts/cyrus.sh; needs root): NAME_IMAP_PORT NAME_IMAPS_PORT
#         NAME_CA_FILE NAME_SEPARATOR (/) NAME_USERS NAME_CYRUS_CONF NAME_DIR
#         (passwords in $NAME_DIR/pw/USER). No Maildir: fill it by IMAP.
#   cy_stop NAME                  stop it now (the EXIT trap does it anyway)
#   co_start NAME [courier.sh start options]   the same for a private
#         Courier-IMAP 5.0 (scripts/courier.sh; needs root): NAME_IMAP_PORT
#         (plain + STARTTLS) NAME_IMAPS_PORT NAME_CA_FILE NAME_SEPARATOR (.)
#         NAME_PREFIX (INBOX.: every folder lives under it) NAME_MAIL_ROOT
#         NAME_MAIL_OWNER NAME_USERS NAME_DIR (passwords in $NAME_DIR/pw/USER).
#         Mail is Maildir++ in $NAME_MAIL_ROOT/USER/Maildir, keywords in
#         its courierimapkeywords/; after writing files there, run
#         scripts/courier.sh fixperms $NAME_DIR.
#   co_stop NAME                  stop it now (the EXIT trap does it anyway)
#   pf_start NAME --lmtp-port P [postfix.sh start options]   a private
#         Postfix 3.7 (scripts/postfix.sh; needs root) on a free port of
#         127.0.0.1, delivering example.org over LMTP to port P (a Dovecot's
#         NAME_LMTP_PORT), headers left alone: NAME_SMTP_PORT NAME_DIR
#         NAME_POSTFIX_CONF NAME_SIZE_LIMIT NAME_LOG (its log). Options:
#         --users "u1 u2" (others refused at RCPT), --size-limit BYTES,
#         --tls-cert F --tls-key F (STARTTLS), --auth USER:PASSWORD.
#         Example: dv_start D; pf_start P --lmtp-port "$D_LMTP_PORT" --users u1
#   pf_stop NAME                  stop it now (the EXIT trap does it anyway)
#   corpus NAME USER PROFILE [SEED]   generated mail into USER's Maildir
#   hostile_mail NAME USER N      N messages (30 KB each) whose Subject and From
#         carry markup, terminal escapes, controls, bad UTF-8 and RFC 2047
#         words: "MF-SUBJ-k <img src=x onerror=alert(1)> ESC[31m...", for
#         the status page's --status-show-subjects
#
# Results:
#   ok NAME / not_ok NAME REASON
#   check NAME CMD...             ok if CMD exits 0, else not_ok with its
#                                 last stderr line
#   expect_exit NAME CODE CMD...  ok if CMD exits CODE; its output stays in
#                                 $T_TMP/last.out and $T_TMP/last.err
#   json_field FILE KEY           KEY of the last JSON line of FILE
#
# Tools:
#   mf ARGS...                    the ASan build of mailferry
#   imap_session [--tls|--starttls] [--ca FILE] PORT  <script
#         sends a raw IMAP script, one command per line ("a LOGIN u p"),
#         each after the previous one's tagged reply; prints everything the
#         server sent (CRLF -> LF); exit 0 if every command got its tagged
#         reply, 1 otherwise. After a line ending in {N} (or {N+}) the
#         next N bytes of the script (lines joined by CRLF) are the literal
#         and the command goes on after them. 10 s timeout per reply.
#         Example: imap_session "$A_IMAP_PORT" <<<$'a LOGIN src pw-src-secret\nb LIST "" "*"' | grep -q 'Sent'
#   fake_imap FAULT [fake_imap.py options]   tests/faults/fake_imap.py in the
#         background, its port in FAKE_PORT (stopped on exit)
#   delay_proxy TARGET_PORT [delay_proxy.py options]  tests/faults/delay_proxy.py
#         to 127.0.0.1:TARGET_PORT, its port in PROXY_PORT (stopped on exit)
#   t_spawn CMD...                run CMD in the background, killed on exit;
#                                 its pid in T_LAST_PID
set -u
cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 2
ROOT=$PWD
# MF_TEST_BIN=build/tsan/mailferry (or any build) runs a test's mailferry
# commands, ASan and release alike, with that binary instead
MF=${MF_TEST_BIN:-$ROOT/build/asan/mailferry}
MF_REL=${MF_TEST_BIN:-$ROOT/build/release/mailferry}
BENCH_BIN=$ROOT/build/release/bench
FAULTS=$ROOT/tests/faults
T_TMP=$(mktemp -d /tmp/mf-test.XXXXXX)
chmod 711 "$T_TMP" # the mail user (mfmail, when root) must reach the mail
T_DV=() T_CY=() T_CO=() T_PF=() T_PIDS=()
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

t_cleanup() {
	local d p w=()
	for p in "${T_PIDS[@]}"; do kill "$p" 2>/dev/null; done
	# in parallel: a Dovecot master takes about a second to stop
	for d in "${T_DV[@]}"; do
		"$ROOT/scripts/dovecot.sh" stop "$d" >/dev/null 2>&1 &
		w+=($!)
	done
	for d in "${T_CY[@]}"; do
		"$ROOT/scripts/cyrus.sh" stop "$d" >/dev/null 2>&1 &
		w+=($!)
	done
	for d in "${T_CO[@]}"; do
		"$ROOT/scripts/courier.sh" stop "$d" >/dev/null 2>&1 &
		w+=($!)
	done
	for d in "${T_PF[@]}"; do
		"$ROOT/scripts/postfix.sh" stop "$d" >/dev/null 2>&1 &
		w+=($!)
	done
	for p in "${T_PIDS[@]}" "${w[@]}"; do wait "$p" 2>/dev/null; done
	if [ "${KEEP:-0}" = 1 ]; then echo "# kept $T_TMP" >&2; else rm -rf "$T_TMP"; fi
}
trap t_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ok() { echo "ok - $1"; }
not_ok() { echo "not ok - $1: $2"; }

check() { # NAME CMD...
	local name=$1 err rc; shift
	err=$("$@" 2>&1 >/dev/null) && { ok "$name"; return 0; }
	rc=$?
	err=$(printf '%s\n' "$err" | grep -v '^[[:space:]]*$' | tail -n 1)
	not_ok "$name" "${err:-exit $rc}"
	return 1
}

expect_exit() { # NAME CODE CMD...
	local name=$1 want=$2 rc; shift 2
	"$@" >"$T_TMP/last.out" 2>"$T_TMP/last.err"; rc=$?
	if [ "$rc" = "$want" ]; then ok "$name"; return 0; fi
	not_ok "$name" "exit $rc, wanted $want: $(grep -v '^[[:space:]]*$' "$T_TMP/last.err" | tail -n 1)"
	return 1
}

# Free port ranges are handed out under a lock, so tests running in
# parallel do not pick the same one. Below 32768: Linux's ephemeral ports.
t_port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
t_free_base() {
	local b i
	for _ in $(seq 1 200); do
		b=$((20000 + (RANDOM % 1200) * 10))
		for i in 0 1 2 3 4; do t_port_free $((b + i)) || continue 2; done
		echo "$b"; return 0
	done
	return 1
}

dv_start() { # NAME [options]
	local name=$1 dir=$T_TMP/$1 base lock rc; shift
	[[ $name =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || { echo "dv_start: bad NAME '$name'" >&2; return 2; }
	exec {lock}>>"/tmp/mailferry-ports.$(id -u).lock"
	flock -w 120 "$lock" || echo "dv_start: port lock busy for 120 s, going on" >&2
	# {lock}>&-: the daemon must not inherit (and hold) the lock
	# P-256 keys: made in milliseconds, where two RSA keys take up to a second
	base=$(t_free_base) && "$ROOT/scripts/dovecot.sh" start "$dir" --port-base "$base" --tls-key-type ec "$@" >/dev/null {lock}>&-
	rc=$?
	exec {lock}>&-
	T_DV+=("$dir") # stopped on exit even when start failed half-way
	[ $rc = 0 ] || { echo "dv_start $name: failed" >&2; return 1; }
	eval "$(sed -n "s/^\([A-Z_0-9]*\)=/${name}_\1=/p" "$dir/env")"
	eval "${name}_DIR=\$dir"
}

dv_stop() { # NAME
	"$ROOT/scripts/dovecot.sh" stop "$T_TMP/$1" >/dev/null
}

cy_start() { # NAME [options]
	local name=$1 dir=$T_TMP/$1 base lock rc; shift
	[[ $name =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || { echo "cy_start: bad NAME '$name'" >&2; return 2; }
	exec {lock}>>"/tmp/mailferry-ports.$(id -u).lock"
	flock -w 120 "$lock" || echo "cy_start: port lock busy for 120 s, going on" >&2
	base=$(t_free_base) && "$ROOT/scripts/cyrus.sh" start "$dir" --port-base "$base" "$@" >/dev/null {lock}>&-
	rc=$?
	exec {lock}>&-
	T_CY+=("$dir")
	[ $rc = 0 ] || { echo "cy_start $name: failed" >&2; return 1; }
	eval "$(sed -n "s/^\([A-Z_0-9]*\)=/${name}_\1=/p" "$dir/env")"
	eval "${name}_DIR=\$dir"
}

cy_stop() { # NAME
	"$ROOT/scripts/cyrus.sh" stop "$T_TMP/$1" >/dev/null
}

co_start() { # NAME [options]
	local name=$1 dir=$T_TMP/$1 base lock rc; shift
	[[ $name =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || { echo "co_start: bad NAME '$name'" >&2; return 2; }
	exec {lock}>>"/tmp/mailferry-ports.$(id -u).lock"
	flock -w 120 "$lock" || echo "co_start: port lock busy for 120 s, going on" >&2
	base=$(t_free_base) && "$ROOT/scripts/courier.sh" start "$dir" --port-base "$base" "$@" >/dev/null {lock}>&-
	rc=$?
	exec {lock}>&-
	T_CO+=("$dir")
	[ $rc = 0 ] || { echo "co_start $name: failed" >&2; return 1; }
	eval "$(sed -n "s/^\([A-Z_0-9]*\)=/${name}_\1=/p" "$dir/env")"
	eval "${name}_DIR=\$dir"
}

co_stop() { # NAME
	"$ROOT/scripts/courier.sh" stop "$T_TMP/$1" >/dev/null
}

pf_start() { # NAME --lmtp-port P [options]
	local name=$1 dir=$T_TMP/$1 base lock rc; shift
	[[ $name =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || { echo "pf_start: bad NAME '$name'" >&2; return 2; }
	exec {lock}>>"/tmp/mailferry-ports.$(id -u).lock"
	flock -w 120 "$lock" || echo "pf_start: port lock busy for 120 s, going on" >&2
	base=$(t_free_base) && "$ROOT/scripts/postfix.sh" start "$dir" --port "$base" "$@" >/dev/null {lock}>&-
	rc=$?
	exec {lock}>&-
	T_PF+=("$dir")
	[ $rc = 0 ] || { echo "pf_start $name: failed" >&2; return 1; }
	eval "$(sed -n "s/^\([A-Z_0-9]*\)=/${name}_\1=/p" "$dir/env")"
	eval "${name}_DIR=\$dir"
}

pf_stop() { # NAME
	"$ROOT/scripts/postfix.sh" stop "$T_TMP/$1" >/dev/null
}

corpus() { # NAME USER PROFILE [SEED]
	local dir=$T_TMP/$1
	"$BENCH_BIN/corpus" --out "$dir/mail/$2/Maildir" --profile "$3" --seed "${4:-1}" >/dev/null &&
		"$ROOT/scripts/dovecot.sh" fixperms "$dir"
}

hostile_mail() { # NAME USER N
	python3 - "$T_TMP/$1/mail/$2/Maildir" "$3" <<'PY' && "$ROOT/scripts/dovecot.sh" fixperms "$T_TMP/$1"
import os, sys
d, n = sys.argv[1], int(sys.argv[2])
for sub in ("cur", "new", "tmp"):
    os.makedirs(os.path.join(d, sub), exist_ok=True)
for k in range(1, n + 1):
    hdr = (b"From: =?utf-8?q?Mall=C3=B8ry_=1B]0;pwned=07?= <mallory@example.org>\r\n"
           b"Subject: MF-SUBJ-%d <img src=x onerror=alert(1)> \x1b[31mred\x1b[0m\x01\x7f "
           b"=?utf-8?q?=C2=9B2J_caf=C3=A9?= caf\xe9 " % k + b"long " * 40 + b"\r\n"
           b"Date: Mon, 1 Dec 2025 10:%02d:00 +0000\r\nMessage-ID: <hostile-%d@example.org>\r\n"
           b"\r\n" % (k % 60, k))
    body = b"".join(b"line %05d of a message whose header is hostile\r\n" % i for i in range(600))
    with open(os.path.join(d, "cur", "1700000000.M%dP1.host:2,S" % k), "wb") as f:
        f.write(hdr + body)
PY
}

mf() { "$MF" "$@"; }

# The most IMAP sessions open at once in Dovecot's log LOG from byte OFF
# on: +1 per login, -1 per session that ended (imap(USER)<pid><session>:
# Disconnected ...), paired by session id. Prints "PEAK LOGINS NO_END":
# NO_END sessions have no end line (yet); they are left out of the peak,
# and the caller asks doveadm who whether they are really still open (seen
# here: one session in ~2,000 whose imap process logged nothing at all,
# while doveadm who counted no session left).
dv_log_peak() { # LOG OFF
	tail -c +"$(($2 + 1))" "$1" | python3 -c '
import re, sys
lines = sys.stdin.read().splitlines()
END = re.compile(r" imap\([^)]*\)<[^>]*><([^>]+)>: (Info: )?Disconnected")
LOGIN = re.compile(r"imap-login: (Info: )?Login: user=<[^>]*>.*session=<([^>]+)>")
ended = {m.group(1) for m in map(END.search, lines) if m}
cur = peak = logins = no_end = 0
for line in lines:
    m = LOGIN.search(line)
    if m:
        logins += 1
        if m.group(2) in ended:
            cur += 1
        else:
            no_end += 1
    elif END.search(line):
        cur -= 1
    peak = max(peak, cur)
print(peak, logins, no_end)'
}

json_field() { # FILE KEY
	tail -n 1 "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$2"
}

t_spawn() { # CMD...
	"$@" &
	T_LAST_PID=$!
	T_PIDS+=("$T_LAST_PID")
}

# Starts a helper that prints "PORT n" as its first line; sets T_HELPER_PORT.
t_helper() { # NAME CMD...
	local name=$1 out i line; shift
	out=$T_TMP/$name.$RANDOM.out
	t_spawn "$@" >"$out" 2>"$out.err"
	for i in $(seq 1 100); do
		IFS= read -r line <"$out" 2>/dev/null
		case $line in "PORT "*) T_HELPER_PORT=${line#PORT }; return 0 ;; esac
		kill -0 "$T_LAST_PID" 2>/dev/null || break
		sleep 0.05
	done
	echo "$name did not start: $(tail -n 1 "$out.err")" >&2
	return 1
}
fake_imap() { # FAULT [options]
	local fault=$1; shift
	t_helper fake_imap python3 "$FAULTS/fake_imap.py" --fault "$fault" "$@" && FAKE_PORT=$T_HELPER_PORT
}
delay_proxy() { # TARGET_PORT [options]
	local target=$1; shift
	t_helper delay_proxy python3 "$FAULTS/delay_proxy.py" --target "$target" "$@" && PROXY_PORT=$T_HELPER_PORT
}

_T_IMAP_PY='
import re, socket, ssl, sys
args = sys.argv[1:]
mode, ca = "plain", None
while args and args[0].startswith("--"):
    a = args.pop(0)
    if a == "--tls": mode = "tls"
    elif a == "--starttls": mode = "starttls"
    elif a == "--ca": ca = args.pop(0)
    else: sys.exit("imap_session: unknown option " + a)
port = int(args[0])
out = sys.stdout
s = socket.create_connection(("127.0.0.1", port), timeout=10)
def wrap(s):
    ctx = ssl.create_default_context(cafile=ca)
    return ctx.wrap_socket(s, server_hostname="127.0.0.1")
if mode == "tls": s = wrap(s)
buf = b""
def line():
    global buf
    while b"\r\n" not in buf:
        d = s.recv(65536)
        if not d: raise EOFError("connection closed")
        buf += d
    l, buf = buf.split(b"\r\n", 1)
    out.write(l.decode("utf-8", "replace") + "\n"); out.flush()
    return l
def until(tag):  # reads to the tagged reply (or "+"), printing all
    while True:
        l = line()
        if l.split(b" ", 1)[0] == tag: return l
try:
    line()  # greeting
    if mode == "starttls":
        s.sendall(b"S0 STARTTLS\r\n")
        if b" OK" not in until(b"S0"): sys.exit(1)
        s = wrap(s); buf = b""
    script = sys.stdin.buffer.read().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if script and not script.endswith(b"\r\n"): script += b"\r\n"
    pos = 0
    while pos < len(script):
        if script.startswith(b"\r\n", pos): pos += 2; continue
        tag = script[pos:].split(b" ", 1)[0]
        while True:  # one command, literals included
            end = script.index(b"\r\n", pos) + 2
            part = script[pos:end]; pos = end
            m = re.search(rb"\{(\d+)(\+?)\}\r\n$", part)
            s.sendall(part)
            if not m: break
            if not m.group(2): until(b"+")
            n = int(m.group(1))
            s.sendall(script[pos:pos + n]); pos += n
        until(tag)
except (EOFError, OSError) as e:
    sys.stderr.write("imap_session: %s\n" % e); sys.exit(1)
'
imap_session() { # [--tls|--starttls] [--ca FILE] PORT <script
	python3 -c "$_T_IMAP_PY" "$@"
}

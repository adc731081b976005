#!/usr/bin/env bash
# protocols/pop3_client against a private Dovecot's POP3 (through
# tests/tools/pop3_fetch), then against tests/faults/fake_pop3.py for what
# Dovecot will not do on demand.
#
# Dovecot: INBOX filled with the corpus's messy mail (bare CRs, 8-bit
# headers, long lines, a message without a final CRLF, a 1 MB one) plus
# messages written here (lines starting with '.', a lone "." line, LF-only
# files, raw 8-bit bodies, a last line that is a lone "." without CRLF,
# ~10 MiB with dot lines all through). Fetched over STLS and over POP3S,
# every message must be byte-exact against its Maildir file as Dovecot's
# POP3 serves it (see pop3_bytes below), named by the UIDL Dovecot reports;
# PIPELINING must be used; a wrong password is one clear line and exit 1;
# --delete must empty the box.
. "$(dirname "$0")/lib.sh"

PF=$ROOT/build/asan/tools/pop3_fetch
[ -x "$PF" ] || { not_ok pop3-tool "build/asan/tools/pop3_fetch missing (make asan)"; exit 1; }
[ -x "$BENCH_BIN/corpus" ] || { not_ok pop3-corpus "$BENCH_BIN/corpus missing (make)"; exit 1; }

dv_start P --users "src" || { not_ok pop3-dovecot "start failed"; exit 1; }
MD=$P_MAIL_ROOT/src/Maildir
corpus P src tiny 3 || { not_ok pop3-corpus "corpus failed"; exit 1; }
# Only INBOX is POP3's: the corpus's other folders stay out of it.
python3 - "$MD/cur" <<'PY' || { not_ok pop3-fixture "writing messages failed"; exit 1; }
import os, sys
cur = sys.argv[1]
H = b"From: Test <t@example.org>\r\nTo: src@example.org\r\nSubject: %s\r\n\r\n"
msgs = {
    "dots": H % b"dots" + b".leading dot\r\n..two dots\r\n.\r\n. space\r\n...\r\nlast\r\n",
    "lf-only": b"From: t@example.org\nSubject: lf only\n\nline one\n.dot line\n.\nline three\n",
    "lf-no-end": b"From: t@example.org\nSubject: lf no end\n\nbody without an end",
    "eightbit": H % "8-bit h\xe9ader \u00fc".encode("utf-8") + bytes(range(0x80, 0x100)) + b"\r\n"
                + "Gr\u00fc\u00dfe, \u65e5\u672c\r\n".encode("utf-8") + b"latin-1 \xe9\xe8\r\n",
    "dot-last": H % b"ends in a dot line" + b"final line\r\n.",
    "dot-cr": H % b"dot cr" + b".\rnot the end\r\n.\r\r\n",
}
big = bytearray(H % b"ten MiB")
i = 0
while len(big) < 10 * 1024 * 1024:
    big += (b"." if i % 50 == 0 else b"") + (b"%07d " % i) + b"0123456789abcdefghij" * 3 + b"\r\n"
    i += 1
msgs["big"] = bytes(big)
t = 1700000000
for k, (name, body) in enumerate(sorted(msgs.items())):
    p = os.path.join(cur, "%d.M%dP99.pop3test-%s:2,S" % (t + k, k, name))
    with open(p, "wb") as f:
        f.write(body)
PY
"$ROOT/scripts/dovecot.sh" fixperms "$P_DIR"

dva() { doveadm -c "$P_DOVECOT_CONF" "$@"; }
NMSG=$(dva mailbox status -u src messages INBOX | sed 's/.*=//')
UIDV=$(dva mailbox status -u src uidvalidity INBOX | sed 's/.*=//')
dva fetch -u src 'uid guid' mailbox INBOX | paste - - - | awk '{ print $2, $4 }' >"$T_TMP/map"
[ "${NMSG:-0}" -gt 60 ] && [ "$(wc -l <"$T_TMP/map")" = "$NMSG" ] ||
	{ not_ok pop3-fixture "INBOX holds ${NMSG:-?} messages, map $(wc -l <"$T_TMP/map")"; exit 1; }

# Compares OUTDIR with the Maildir: every message present once, named by
# its UIDL, with exactly the bytes Dovecot's POP3 serves for the file.
# Dovecot 2.3 serves a Maildir file through a CRLF stream: a LF without a
# CR before it becomes CRLF, everything else (bare CRs, 8-bit bytes, NUL-
# free binary) stays as it is; a message that does not end with a line
# end gets CRLF before the terminator (RFC 1939 §3: "." ends a line of its
# own), and that CRLF is part of what RETR hands out. The client must undo
# the dot-stuffing exactly, so the file holds pop3_bytes(raw) and nothing
# else. (The LF-only messages above check the first rule for real; the
# "dot-last" and "lf-no-end" ones the second.) The UIDL is Dovecot's
# default pop3_uidl_format %08Xu%08Xv: UID and UIDVALIDITY in hex,
# checked against Dovecot's own UIDL listing in uidl-matches-dovecot.
cat >"$T_TMP/compare.py" <<'PY'
import os, re, sys
md, mapf, uidv, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
files = {}
for d in ("cur", "new"):
    for f in os.listdir(os.path.join(md, d)):
        files[f.split(":")[0]] = os.path.join(md, d, f)
def pop3_bytes(raw):
    b = re.sub(rb"(?<!\r)\n", b"\r\n", raw)
    return b if b.endswith(b"\n") else b + b"\r\n"
want, bad = set(), []
for line in open(mapf):
    uid, guid = line.split()
    name = "%08x%08x" % (int(uid), uidv)
    want.add(name)
    p = os.path.join(out, name)
    if not os.path.exists(p):
        bad.append("uid %s: no file %s" % (uid, name)); continue
    got, exp = open(p, "rb").read(), pop3_bytes(open(files[guid], "rb").read())
    if got != exp:
        i = next((k for k in range(min(len(got), len(exp))) if got[k] != exp[k]), min(len(got), len(exp)))
        bad.append("uid %s (%s): %d bytes, want %d, first difference at %d" % (uid, guid, len(got), len(exp), i))
extra = sorted(set(os.listdir(out)) - want)
if extra:
    bad.append("unexpected files: %s" % " ".join(extra[:5]))
if bad:
    sys.exit("%d problems: %s" % (len(bad), "; ".join(bad[:4])))
PY
compare() { python3 "$T_TMP/compare.py" "${CMP_MD:-$MD}" "$T_TMP/map" "$UIDV" "$1"; }
field() { sed -n "s/.*\b$2=\([0-9]*\).*/\1/p" "$1"; }

# ---- STLS on the plain port ----
mkdir -p "$T_TMP/o1" "$T_TMP/o2" "$T_TMP/o3" "$T_TMP/o4"
# --check: STAT, UIDL n, LIST n, NOOP, TOP, DELE + RSET against the listing
if expect_exit starttls-fetch 0 "$PF" --check --starttls --ca "$P_CA_FILE" 127.0.0.1 "$P_POP3_PORT" src "$P_DIR/pw/src" "$T_TMP/o1"; then
	cp "$T_TMP/last.out" "$T_TMP/o1.out"
	grep -q 'checks=9 ' "$T_TMP/o1.out" && ok starttls-commands-agree || not_ok starttls-commands-agree "$(cat "$T_TMP/o1.out")"
	n=$(field "$T_TMP/o1.out" messages)
	[ "$n" = "$NMSG" ] && ok "starttls-count ($n)" || not_ok starttls-count "fetched ${n:-?}, INBOX holds $NMSG"
	check starttls-exact compare "$T_TMP/o1"
	# PIPELINING: offered by Dovecot, so RETRs went in a window, not one
	# round trip each
	p=$(field "$T_TMP/o1.out" pipelining) k=$(field "$T_TMP/o1.out" max_inflight)
	rt=$(field "$T_TMP/o1.out" round_trips)
	if [ "$p" = 1 ] && [ "${k:-0}" -gt 1 ] && [ "${rt:-999999}" -lt $((NMSG / 2)) ]; then
		ok "pipelining-used (up to $k outstanding, $rt round trips for $NMSG messages)"
	else
		not_ok pipelining-used "$(cat "$T_TMP/o1.out")"
	fi
fi

# The UIDLs are the ones Dovecot itself lists (an independent client).
python3 - "$P_POP3_PORT" "$P_DIR/pw/src" "$T_TMP/o1" >"$T_TMP/uidl.err" 2>&1 <<'PY'
import os, poplib, sys
s = poplib.POP3("127.0.0.1", int(sys.argv[1]), timeout=10)
s.user("src"); s.pass_(open(sys.argv[2]).read())
ids = sorted(l.split()[1].decode() for l in s.uidl()[1])
s.quit()
have = sorted(os.listdir(sys.argv[3]))
if ids != have or len(ids) < 60:
    sys.exit("dovecot lists %d UIDLs, files %d, e.g. %s vs %s" % (len(ids), len(have), ids[:1], have[:1]))
PY
[ $? = 0 ] && ok uidl-matches-dovecot || not_ok uidl-matches-dovecot "$(tail -n 1 "$T_TMP/uidl.err")"

# One at a time when the window is 1: the counter is honest.
if expect_exit window-1 0 "$PF" --window 1 127.0.0.1 "$P_POP3_PORT" src "$P_DIR/pw/src" "$T_TMP/o4"; then
	rt=$(field "$T_TMP/last.out" round_trips) k=$(field "$T_TMP/last.out" max_inflight)
	[ "$k" = 1 ] && [ "${rt:-0}" -ge "$NMSG" ] && ok "window-1-serial ($rt round trips)" ||
		not_ok window-1-serial "$(cat "$T_TMP/last.out")"
	check window-1-exact compare "$T_TMP/o4"
fi

# ---- POP3S ----
if expect_exit pop3s-fetch 0 "$PF" --tls --ca "$P_CA_FILE" 127.0.0.1 "$P_POP3S_PORT" src "$P_DIR/pw/src" "$T_TMP/o2"; then
	check pop3s-exact compare "$T_TMP/o2"
	check pop3s-same-as-stls diff -r "$T_TMP/o1" "$T_TMP/o2"
fi

# ---- a slow consumer: input paused every 64 KiB, resumed 1 ms later ----
mkdir -p "$T_TMP/o6"
if expect_exit paused-fetch 0 "$PF" --pause-every 65536 --starttls --ca "$P_CA_FILE" 127.0.0.1 "$P_POP3_PORT" src "$P_DIR/pw/src" "$T_TMP/o6"; then
	pz=$(field "$T_TMP/last.out" pauses)
	[ "${pz:-0}" -ge 100 ] && ok "paused-fetch-paused ($pz pauses)" || not_ok paused-fetch-paused "$(cat "$T_TMP/last.out")"
	check paused-exact compare "$T_TMP/o6"
fi

# ---- wrong password: one clear line, exit 1, the password not in it ----
printf 'wrong-Pa55word-x' >"$T_TMP/badpw"
chmod 600 "$T_TMP/badpw"
if expect_exit wrong-password-exit 1 "$PF" --starttls --ca "$P_CA_FILE" 127.0.0.1 "$P_POP3_PORT" src "$T_TMP/badpw" "$T_TMP/o3"; then
	lines=$(grep -c . "$T_TMP/last.err")
	if [ "$lines" = 1 ] && grep -q 'login failed' "$T_TMP/last.err" && ! grep -q 'Pa55word' "$T_TMP/last.err"; then
		ok "wrong-password-message ($(cat "$T_TMP/last.err"))"
	else
		not_ok wrong-password-message "$lines lines: $(head -c 300 "$T_TMP/last.err")"
	fi
fi

# ---- --delete: each DELE after its file is fsynced; QUIT empties the box ----
rm -rf "$T_TMP/o3" && mkdir -p "$T_TMP/o3"
cp -a "$MD" "$T_TMP/md-before-delete" # the files go with the messages
CMP_MD=$T_TMP/md-before-delete
if expect_exit delete-fetch 0 "$PF" --starttls --ca "$P_CA_FILE" 127.0.0.1 "$P_POP3_PORT" src "$P_DIR/pw/src" "$T_TMP/o3" --delete; then
	d=$(field "$T_TMP/last.out" deleted)
	[ "$d" = "$NMSG" ] && ok "delete-count ($d)" || not_ok delete-count "deleted ${d:-?} of $NMSG"
	check delete-exact compare "$T_TMP/o3"
	left=$(dva mailbox status -u src messages INBOX | sed 's/.*=//')
	[ "$left" = 0 ] && ok delete-empties-box || not_ok delete-empties-box "INBOX still holds $left"
	mkdir -p "$T_TMP/o5"
	expect_exit empty-fetch 0 "$PF" 127.0.0.1 "$P_POP3_PORT" src "$P_DIR/pw/src" "$T_TMP/o5" &&
		{ grep -q 'messages=0 ' "$T_TMP/last.out" && ok empty-fetch-none || not_ok empty-fetch-none "$(cat "$T_TMP/last.out")"; }
fi

# ---- scripted faults (tests/faults/fake_pop3.py) ----
fake_pop3() { # FAULT [options]
	local fault=$1; shift
	t_helper fake_pop3 python3 "$FAULTS/fake_pop3.py" --fault "$fault" --max-seconds 30 "$@" &&
		FAKE_PORT=$T_HELPER_PORT
}
printf 'pw-fake-Secret9' >"$T_TMP/fakepw"
# fault | options for the fake | options for pop3_fetch | what the one error line must say
while IFS='|' read -r fault fopt popt want; do
	[ -n "$fault" ] || continue
	out=$T_TMP/f-$fault
	rm -rf "$out" && mkdir -p "$out"
	# shellcheck disable=SC2086
	fake_pop3 "$fault" $fopt || { not_ok "fake-$fault" "fake server did not start"; continue; }
	# shellcheck disable=SC2086
	expect_exit "fake-$fault-exit" 1 "$PF" --timeout 2 $popt 127.0.0.1 "$FAKE_PORT" u "$T_TMP/fakepw" "$out" || continue
	if [ "$(grep -c . "$T_TMP/last.err")" = 1 ] && grep -q -- "$want" "$T_TMP/last.err"; then
		ok "fake-$fault-message ($(cut -c 1-160 "$T_TMP/last.err"))"
	else
		not_ok "fake-$fault-message" "want '$want': $(head -c 300 "$T_TMP/last.err")"
	fi
	if grep -q 'Secret9' "$T_TMP/last.err" || grep -q $'\x1b' "$T_TMP/last.err"; then
		not_ok "fake-$fault-clean" "password or a raw ESC in the error line"
	fi
	# no file for a message that did not arrive whole
	case $fault in
	disconnect-mid-retr)
		[ ! -e "$out/uid-2" ] && [ -e "$out/uid-1" ] && ok fake-disconnect-no-partial ||
			not_ok fake-disconnect-no-partial "$(ls -a "$out" | tr '\n' ' ')" ;;
	big-body) [ ! -e "$out/uid-1" ] && ok fake-big-body-no-file || not_ok fake-big-body-no-file "uid-1 written" ;;
	esac
done <<EOF
garbage-status|||malformed reply: status line is neither +OK nor -ERR
long-line|||malformed reply: line too long
bad-uidl|||message 2: unique-id "bad uid" refused
long-uidl|||message 2: unique-id .* longer than 70
dup-uidl|||messages 1 and 3 have the same unique-id
disconnect-mid-retr|||connection closed by server
big-body|||message 1: body is larger than its LIST size 1000
no-reply|||no reply from 127.0.0.1:[0-9]* for 2 s
unsolicited|||before the command they would answer
msgno-cap|||UIDL listing names message 1000001, more than 1000000 messages
out-of-order|||UIDL listing out of order at message 1
err-escape|||login failed: \[AUTH\] denied \\\\x1b\[31mred
err-echo|||login failed: \[AUTH\] wrong password: \*\*\*
stls-inject|--tls-cert $P_DIR/tls/server.pem --tls-key $P_DIR/tls/server.key|--starttls --ca $P_CA_FILE|after the server's +OK to STLS
EOF

# The fake behaving, in every login shape: USER/PASS, AUTH PLAIN with an
# initial response, AUTH PLAIN after "+ " (a response too long for one
# 255-octet line), without PIPELINING. Message 2's dot lines, message 3's
# missing CRLF: exact.
head -c 200 /dev/zero | tr '\0' 'k' >"$T_TMP/longpw"
while IFS='|' read -r name fopt pw; do
	out=$T_TMP/g-$name
	mkdir -p "$out"
	# shellcheck disable=SC2086
	fake_pop3 none $fopt || { not_ok "fake-good-$name" "fake server did not start"; continue; }
	expect_exit "fake-good-$name" 0 "$PF" --check --timeout 5 127.0.0.1 "$FAKE_PORT" u "$pw" "$out" || continue
	grep -q 'checks=9 ' "$T_TMP/last.out" || not_ok "fake-good-$name-checks" "$(cat "$T_TMP/last.out")"
	if [ "$name" = no-pipelining ]; then
		grep -q 'max_inflight=1 .*pipelining=0' "$T_TMP/last.out" && ok fake-no-pipelining-serial ||
			not_ok fake-no-pipelining-serial "$(cat "$T_TMP/last.out")"
	fi
	python3 - "$out" <<'PY' && ok "fake-good-$name-exact" || not_ok "fake-good-$name-exact" "bytes differ"
import sys, os
o = sys.argv[1]
m2 = open(os.path.join(o, "uid-2"), "rb").read()
m3 = open(os.path.join(o, "uid-3"), "rb").read()
assert m2.endswith(b"\r\n\r\n.starts with a dot\r\n..two dots\r\n.\r\nend\r\n"), m2
assert m3.endswith(b"\r\n\r\nno final line end\r\n"), m3
assert len(open(os.path.join(o, "uid-1"), "rb").read()) == 1000
assert sorted(os.listdir(o)) == ["uid-1", "uid-2", "uid-3"]
PY
done <<EOF
user-pass||$T_TMP/fakepw
sasl-ir|--sasl|$T_TMP/fakepw
sasl-continuation|--sasl|$T_TMP/longpw
no-pipelining|--no-pipelining|$T_TMP/fakepw
EOF

# ---- the password policy off loopback (this machine's own non-loopback
# address: the peer is then not 127.0.0.0/8) ----
hostip=$(hostname -I 2>/dev/null | tr ' ' '\n' | grep -E '^[0-9.]+$' | grep -v '^127\.' | head -n 1)
if [ -z "$hostip" ]; then
	ok "plaintext-policy # skip: no non-loopback IPv4 address here"
else
	mkdir -p "$T_TMP/h"
	fake_pop3 none --host "$hostip" &&
		expect_exit offloop-starttls-required 1 "$PF" --timeout 5 --starttls "$hostip" "$FAKE_PORT" u "$T_TMP/fakepw" "$T_TMP/h" &&
		{ grep -q 'does not offer STLS; refusing to send the password' "$T_TMP/last.err" && ok offloop-starttls-message ||
			not_ok offloop-starttls-message "$(cat "$T_TMP/last.err")"; }
	fake_pop3 none --host "$hostip" &&
		expect_exit offloop-plain-refused 1 "$PF" --timeout 5 "$hostip" "$FAKE_PORT" u "$T_TMP/fakepw" "$T_TMP/h" &&
		{ grep -q 'refusing to send the password over an unencrypted connection' "$T_TMP/last.err" &&
			ok offloop-plain-message || not_ok offloop-plain-message "$(cat "$T_TMP/last.err")"; }
	fake_pop3 none --host "$hostip" &&
		expect_exit offloop-allow-plaintext 0 "$PF" --timeout 5 --allow-plaintext "$hostip" "$FAKE_PORT" u "$T_TMP/fakepw" "$T_TMP/h"
fi

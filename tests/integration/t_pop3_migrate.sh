#!/usr/bin/env bash
# POP3 as a migration source (issue 18 item 1): mailferry migrate pop3://
# (STLS) and pop3s:// into IMAP on a private Dovecot.
#
# INBOX holds the corpus's messy mail plus messages written here (lines
# starting with '.', LF-only files, raw 8-bit bodies, no final line end, a
# last line that is a lone '.', ~10 MiB with dot lines all through, and
# dates in Received:/Date: of every kind). Every message must arrive once,
# byte-exact against its Maildir file (see expect.py), dated by its newest
# Received: (else Date:, else the time of the run); a re-run copies 0, a
# new message exactly 1; --map INBOX=Imported; pop3s:// with the private
# CA; a wrong password exits 4 naming the source; SIGKILL at random moments
# then resume: nothing lost, nothing twice; --pop3-delete empties the box
# only of what the destination confirmed (a message we refuse stays, and
# so do those a destination over quota refuses: each message ends up in
# exactly one place);
# usage errors exit 2; several POP3 sessions (issue 18 performance): the
# crash corpus's ~2,000 messages split over --connections 4 sessions into
# IMAP and into LMTP, each message RETRieved once over all sessions and
# each session with a part (counted on the server side, Dovecot's session
# log "retr=N"), --pop3-delete with parts DELEs from one session only, a
# Dovecot with pop3_lock_session (the second session held at PASS) and a
# scripted server refusing it ([IN-USE], a plain -ERR, a close) copy
# everything in the same run with one notice, exit 0;
# POP3 -> LMTP (Dovecot's), every message delivered
# once and byte-exact after the trace fields, a re-run delivers 0; a LIST size Dovecot gets wrong (a Maildir file
# whose name says W=... smaller than it is) fails that message only. Then tests/faults/fake_pop3.py for what Dovecot will
# not do: a server that drops the connection mid-RETR (the pair is
# reopened, then the mailbox fails: exit 3), and one that LISTs a message
# without its final CRLF (copied without it).
. "$(dirname "$0")/lib.sh"

[ -x "$BENCH_BIN/corpus" ] || { not_ok pop3m-corpus "$BENCH_BIN/corpus missing (make)"; exit 1; }
dv_start P --users "src dst dst2 src3 dst3 dst4 src5 dst5 fk1 fk2 src6 dst6 src7 lm1 src8 dst8 lm2 src9 dst9 fk3" || { not_ok pop3m-dovecot "start failed"; exit 1; }
MD=$P_MAIL_ROOT/src/Maildir
corpus P src tiny 3 || { not_ok pop3m-corpus "corpus failed"; exit 1; }
python3 - "$MD/cur" <<'PY' || { not_ok pop3m-fixture "writing messages failed"; exit 1; }
import os, sys
cur = sys.argv[1]
H = b"From: Test <t@example.org>\r\nTo: src@example.org\r\nSubject: %s\r\n\r\n"
R = (b"Received: from mx.example.org (mx [192.0.2.1])\r\n\tby mail.example.org; "
     b"Tue, 2 Jan 2024 10:00:00 +0100\r\n"
     b"Received: from relay by mx; Mon, 1 Jan 2024 09:00:00 +0000\r\n"
     b"Date: Sun, 31 Dec 2023 08:00:00 +0000\r\n")
msgs = {
    "dots": H % b"dots" + b".leading dot\r\n..two dots\r\n.\r\n. space\r\n...\r\nlast\r\n",
    "lf-only": b"From: t@example.org\nSubject: lf only\n\nline one\n.dot line\n.\nline three\n",
    "lf-no-end": b"From: t@example.org\nSubject: lf no end\n\nbody without an end",
    "eightbit": H % "8-bit h\xe9ader \u00fc".encode("utf-8") + bytes(range(0x80, 0x100)) + b"\r\n"
                + "Gr\u00fc\u00dfe, \u65e5\u672c\r\n".encode("utf-8") + b"latin-1 \xe9\xe8\r\n",
    "dot-last": H % b"ends in a dot line" + b"final line\r\n.",
    "dot-cr": H % b"dot cr" + b".\rnot the end\r\n.\r\r\n",
    "received": R + b"Subject: received\r\n\r\nbody\r\n",
    "received-bad": b"Received: by x; not a date\r\nDate: 7 Mar 99 01:02:03 PST\r\nSubject: x\r\n\r\nb\r\n",
    "date-only": b"Subject: date only\nDate: Thu, 13 Feb 1969 23:32:54 -0330 (NST)\n\nbody\n",
    "no-date": b"Subject: no date at all\r\n\r\nbody\r\n",
    "long-header": b"Subject: long\r\n" + b"X-Pad: " + b"p" * 70000 + b"\r\nDate: 1 Jan 2020 00:00:00 +0000\r\n\r\nb\r\n",
}
big = bytearray(R + b"Subject: ten MiB\r\n\r\n")
i = 0
while len(big) < 10 * 1024 * 1024:
    big += (b"." if i % 50 == 0 else b"") + (b"%07d " % i) + b"0123456789abcdefghij" * 3 + b"\r\n"
    i += 1
msgs["big"] = bytes(big)
t = 1700000000
for k, (name, body) in enumerate(sorted(msgs.items())):
    with open(os.path.join(cur, "%d.M%dP99.pop3m-%s:2,S" % (t + k, k, name)), "wb") as f:
        f.write(body)
PY
# the same drop for the --pop3-delete users
mkdir -p "$P_MAIL_ROOT/src5" "$P_MAIL_ROOT/src7" && cp -a "$MD" "$P_MAIL_ROOT/src5/" && cp -a "$MD" "$P_MAIL_ROOT/src7/"
"$ROOT/scripts/dovecot.sh" fixperms "$P_DIR"
dva() { doveadm -c "$P_DOVECOT_CONF" "$@"; }
inbox_count() { dva mailbox status -u "$1" messages "${2:-INBOX}" | sed 's/.*=//'; }
NMSG=$(inbox_count src)
[ "${NMSG:-0}" -gt 60 ] || { not_ok pop3m-fixture "INBOX holds ${NMSG:-?} messages"; exit 1; }

# expect.py SRC_MAILDIR DST_DIR T0 T1: the destination folder DST_DIR (cur/
# and new/) holds exactly the source INBOX's messages, each once, and each
# file's mtime (Dovecot's INTERNALDATE) is the message's date.
# Bytes: Dovecot's POP3 serves a Maildir file with LF made CRLF and, when
# it does not end with a line end, a CRLF before the terminating "." that
# LIST does not count; mailferry drops that CRLF (the APPEND is sized by
# LIST), so the copy is the file itself. Dovecot stores LF line ends and
# folds CR runs before LF on APPEND, so both sides are compared with every
# run of CRs before an LF dropped (as bench/compare does) and nothing else.
# Dates, independently of mailferry's parser (Python's email.utils): the
# topmost Received: whose part after its last ';' parses, else Date:, else
# the time of a run (T0..T1). Only the header fields that end within the
# first 64 KiB of the message as served count (README: the date rule);
# a Date: after 70 KB of header is not seen.
cat >"$T_TMP/expect.py" <<'PY'
import collections, email.utils, os, re, sys
src, dst, t0, t1 = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
def files(d):
    for sub in ("cur", "new"):
        p = os.path.join(d, sub)
        for f in sorted(os.listdir(p)) if os.path.isdir(p) else []:
            yield os.path.join(p, f)
norm = lambda b: re.sub(rb"\r*\n", b"\n", b)
def when(raw):
    # (the first 64 KiB as served come from the first 64 KiB of the file)
    served = re.sub(rb"(?<!\r)\n", b"\r\n", raw[:65536])[:65536]
    if b"\r\n\r\n" in served or served.startswith(b"\r\n"):
        fields = re.split(rb"\r\n(?![ \t])", served.split(b"\r\n\r\n", 1)[0])
    else:  # cut short: the last field seen may go on, so it does not count
        fields = re.split(rb"\r\n(?![ \t])", served)[:-1]
    def parse(v):
        t = email.utils.parsedate_tz(v.decode("latin-1"))
        return email.utils.mktime_tz(t) if t else None
    date = None
    for f in fields:
        name, _, v = f.partition(b":")
        name = name.strip().lower()
        if name == b"received" and b";" in v:
            t = parse(v.rsplit(b";", 1)[1])
            if t is not None:
                return t
        elif name == b"date" and date is None:
            date = parse(v)
    return date
want = collections.Counter()
dates = {}
for p in files(src):
    raw = open(p, "rb").read()
    k = norm(raw)
    want[k] += 1
    dates[k] = (when(raw), os.path.basename(p))
got = collections.Counter()
bad = []
for p in files(dst):
    raw = open(p, "rb").read()
    k = norm(raw)
    got[k] += 1
    if k in dates:
        d, name = dates[k]
        m = int(os.stat(p).st_mtime)
        if (d is None and not t0 <= m <= t1) or (d is not None and m != d):
            bad.append("%s: INTERNALDATE %d, want %s" % (name, m, d if d is not None else "%d..%d" % (t0, t1)))
missing = sum((want - got).values())
extra = sum((got - want).values())
dup = sum(n - 1 for k, n in got.items() if n > 1)
if missing or extra or bad:
    sys.exit("%d of %d messages missing, %d unexpected (%d duplicates), %d dates wrong: %s"
             % (missing, sum(want.values()), extra, dup, len(bad), "; ".join(bad[:3])))
print("%d messages exact, dates right" % sum(want.values()))
PY
dst_dir() { # USER [FOLDER]
	local r=$P_MAIL_ROOT/$1/Maildir
	if [ -z "${2:-}" ]; then echo "$r"; elif [ -d "$r/.$2" ]; then echo "$r/.$2"; else echo "$r/$2"; fi
}
exact() { python3 "$T_TMP/expect.py" "${SRC_MD:-$MD}" "$1" "$2" "$3"; }

SRC="pop3://src@127.0.0.1:$P_POP3_PORT"
common=(--src-password-file "$P_DIR/pw/src" --ca-file "$P_CA_FILE" --no-progress --json)
imap_to() { echo "imap://$1@127.0.0.1:$P_IMAP_PORT?starttls=no"; }

# ---- --dry-run: counts, creates and copies nothing ----
if expect_exit dry-run 0 mf migrate "$SRC" "$(imap_to dst)" "${common[@]}" \
	--dst-password-file "$P_DIR/pw/dst" --state "$T_TMP/st1" --dry-run --map INBOX=Dry; then
	grep -q "dry-run: mailbox \"INBOX\": $NMSG new messages would be copied" "$T_TMP/last.err" &&
		ok "dry-run-counts ($NMSG)" || not_ok dry-run-counts "$(grep dry-run "$T_TMP/last.err" | head -n 2)"
	[ "$(inbox_count dst)" = 0 ] && ! dva mailbox status -u dst messages Dry >/dev/null 2>&1 &&
		ok dry-run-changes-nothing || not_ok dry-run-changes-nothing "the destination changed"
fi

# ---- the copy, over STLS on the plain port ----
t0=$(date +%s) T_FIRST=$t0
if expect_exit migrate 0 mf migrate "$SRC" "$(imap_to dst)" "${common[@]}" \
	--dst-password-file "$P_DIR/pw/dst" --state "$T_TMP/st1" --connections 4; then
	t1=$(date +%s)
	c=$(json_field "$T_TMP/last.out" messages_copied)
	[ "$c" = "$NMSG" ] && ok "migrate-count ($c)" || not_ok migrate-count "copied $c of $NMSG"
	check migrate-exact-and-dated exact "$(dst_dir dst)" "$t0" "$t1"
	# fewer than two parts' worth of messages (split.c): one session
	[ "$(json_field "$T_TMP/last.out" connections)" = 2 ] && ok small-maildrop-one-pair ||
		not_ok small-maildrop-one-pair "$(json_field "$T_TMP/last.out" connections) connections"
fi
# the TLS was really used: Dovecot logged a TLS POP3 login for src
grep -q 'pop3-login: Info: Login: user=<src>,.*TLS' "$P_DIR/dovecot.log" && ok stls-used ||
	not_ok stls-used "$(grep 'pop3-login: Info: Login: user=<src>' "$P_DIR/dovecot.log" | tail -n 1)"

# ---- re-run: nothing copied, nothing RETRieved (Dovecot's session log says
# retr=RETRs/bytes), no destination connection needed ----
if expect_exit rerun 0 mf migrate "$SRC" "$(imap_to dst)" "${common[@]}" \
	--dst-password-file "$P_DIR/pw/dst" --state "$T_TMP/st1"; then
	c=$(json_field "$T_TMP/last.out" messages_copied) s=$(json_field "$T_TMP/last.out" messages_skipped)
	[ "$c" = 0 ] && [ "$s" = "$NMSG" ] && ok "rerun-copies-0 (skipped $s)" || not_ok rerun-copies-0 "copied $c, skipped $s"
	[ "$(json_field "$T_TMP/last.out" connections)" = 1 ] && ok rerun-source-only ||
		not_ok rerun-source-only "$(json_field "$T_TMP/last.out" connections) connections"
	l=$(grep 'pop3(src).*Disconnected: Logged out' "$P_DIR/dovecot.log" | tail -n 1)
	case $l in *" retr=0/0, del=0/"*) ok rerun-no-retr ;; *) not_ok rerun-no-retr "$l" ;; esac
fi

# ---- a new message on the source: exactly 1 ----
printf 'Received: by mx; Fri, 5 Jan 2024 12:34:56 -0800\r\nSubject: new\r\n\r\nnew one\r\n' \
	>"$MD/new/1700001000.M1P1.pop3m-new"
"$ROOT/scripts/dovecot.sh" fixperms "$P_DIR"
t0=$(date +%s)
if expect_exit new-one 0 mf migrate "$SRC" "$(imap_to dst)" "${common[@]}" \
	--dst-password-file "$P_DIR/pw/dst" --state "$T_TMP/st1"; then
	c=$(json_field "$T_TMP/last.out" messages_copied)
	[ "$c" = 1 ] && ok new-one-copies-1 || not_ok new-one-copies-1 "copied $c"
	check new-one-exact exact "$(dst_dir dst)" "$T_FIRST" "$(date +%s)"
fi
NMSG=$((NMSG + 1))

# ---- --map INBOX=Imported ----
t0=$(date +%s)
if expect_exit map 0 mf migrate "$SRC" "$(imap_to dst2)" "${common[@]}" \
	--dst-password-file "$P_DIR/pw/dst2" --state "$T_TMP/st2" --map INBOX=Imported; then
	[ "$(inbox_count dst2 Imported)" = "$NMSG" ] && [ "$(inbox_count dst2)" = 0 ] && ok map-into-imported ||
		not_ok map-into-imported "Imported $(inbox_count dst2 Imported), INBOX $(inbox_count dst2)"
	check map-exact exact "$(dst_dir dst2 Imported)" "$t0" "$(date +%s)"
fi

# ---- pop3s:// with the private CA ----
t0=$(date +%s)
if expect_exit pop3s 0 mf migrate "pop3s://src@127.0.0.1:$P_POP3S_PORT" "$(imap_to dst4)" "${common[@]}" \
	--dst-password-file "$P_DIR/pw/dst4" --state "$T_TMP/st4"; then
	check pop3s-exact exact "$(dst_dir dst4)" "$t0" "$(date +%s)"
fi
# and without the CA, the certificate is refused (exit 3, nothing copied)
expect_exit pop3s-untrusted 3 mf migrate "pop3s://src@127.0.0.1:$P_POP3S_PORT" "$(imap_to dst4)" \
	--src-password-file "$P_DIR/pw/src" --dst-password-file "$P_DIR/pw/dst4" --state "$T_TMP/st4b" --no-progress

# ---- wrong password: exit 4, one line naming the source ----
printf 'wrong-Pa55word-x' >"$T_TMP/badpw" && chmod 600 "$T_TMP/badpw"
if expect_exit wrong-password 4 mf migrate "$SRC" "$(imap_to dst)" --src-password-file "$T_TMP/badpw" \
	--dst-password-file "$P_DIR/pw/dst" --ca-file "$P_CA_FILE" --state "$T_TMP/st1" --no-progress -q; then
	if [ "$(grep -c . "$T_TMP/last.err")" = 1 ] && grep -q 'source src@127.0.0.1: login failed' "$T_TMP/last.err" &&
		! grep -q Pa55word "$T_TMP/last.err"; then
		ok "wrong-password-line ($(cat "$T_TMP/last.err"))"
	else
		not_ok wrong-password-line "$(head -c 300 "$T_TMP/last.err")"
	fi
fi

# ---- usage errors ----
expect_exit pop3-destination 2 mf migrate "$(imap_to dst)" "pop3://dst@127.0.0.1:$P_POP3_PORT" \
	--src-password-file "$P_DIR/pw/dst" --dst-password-file "$P_DIR/pw/dst" --state "$T_TMP/stx"
for o in --sync-flags --delete --dedupe; do
	expect_exit "pop3-refuses$o" 2 mf migrate "$SRC" "$(imap_to dst)" "$o" \
		--src-password-file "$P_DIR/pw/src" --dst-password-file "$P_DIR/pw/dst" --state "$T_TMP/stx"
done
expect_exit pop3-delete-needs-pop3 2 mf migrate "$(imap_to src)" "$(imap_to dst)" --pop3-delete \
	--src-password-file "$P_DIR/pw/src" --dst-password-file "$P_DIR/pw/dst" --state "$T_TMP/stx"

# ---- POP3 -> LMTP: delivered once each, exact after the trace fields ----
# lmtp_expect.py: every INBOX message delivered exactly once, its bytes at
# the end of the delivered file with nothing before them but the trace
# fields Dovecot's LMTP puts on top (Return-Path, Delivered-To, Received);
# both sides with CR runs before LF dropped (Dovecot stores LF). Dovecot's
# LMTP offers CHUNKING, so BDAT carries the exact bytes: a message without
# a final line end arrives without one (the POP3 server's CRLF is dropped
# on RETR).
cat >"$T_TMP/lmtp_expect.py" <<'PY'
import collections, os, re, sys
src, dst = sys.argv[1], sys.argv[2]
norm = lambda b: re.sub(rb"\r*\n", b"\n", b)
TRACE = re.compile(rb"((Return-Path|Delivered-To|Received):[^\n]*\n([ \t][^\n]*\n)*)*\Z", re.I)
def files(d):
    for sub in ("cur", "new"):
        p = os.path.join(d, sub)
        for f in os.listdir(p) if os.path.isdir(p) else []:
            yield os.path.join(p, f)
want = collections.Counter()
for p in files(src):
    b = norm(open(p, "rb").read())
    want[b] += 1
bad = []
for p in files(dst):
    d = norm(open(p, "rb").read())
    hit = [w for w in want if want[w] and d.endswith(w) and TRACE.match(d[: len(d) - len(w)])]
    if not hit:
        bad.append(os.path.basename(p))
        continue
    want[max(hit, key=len)] -= 1
left = sum(want.values())
if bad or left:
    sys.exit("%d deliveries match no message (%s), %d messages not delivered" % (len(bad), " ".join(bad[:3]), left))
PY
LMTP_DST="lmtp://127.0.0.1:$P_LMTP_PORT?rcpt=lm1"
if expect_exit lmtp 0 mf migrate "$SRC" "$LMTP_DST" "${common[@]}" --state "$T_TMP/stl"; then
	c=$(json_field "$T_TMP/last.out" messages_copied)
	[ "$c" = "$NMSG" ] && ok "lmtp-count ($c)" || not_ok lmtp-count "delivered $c of $NMSG"
	check lmtp-exact python3 "$T_TMP/lmtp_expect.py" "$MD" "$(dst_dir lm1)"
	expect_exit lmtp-rerun 0 mf migrate "$SRC" "$LMTP_DST" "${common[@]}" --state "$T_TMP/stl" &&
		{ [ "$(json_field "$T_TMP/last.out" messages_copied)" = 0 ] && [ "$(inbox_count lm1)" = "$NMSG" ] &&
			ok lmtp-rerun-delivers-0 || not_ok lmtp-rerun-delivers-0 "copied $(json_field "$T_TMP/last.out" messages_copied), INBOX $(inbox_count lm1)"; }
fi

# ---- several POP3 sessions: the maildrop split into parts ----
# p3_sessions DIR USER FROM: the POP3 sessions of USER that ended after
# line FROM of DIR's Dovecot log, one line each: "RETRS DELES" (Dovecot
# logs "retr=RETRS/bytes, del=DELES/messages" when a session ends).
p3_sessions() {
	tail -n +"$(($3 + 1))" "$1/dovecot.log" |
		sed -n "s/.*pop3($2)<.*Disconnected: .* retr=\([0-9]*\)\/[0-9]*, del=\([0-9]*\)\/.*/\1 \2/p"
}
logpos() { wc -l <"$1/dovecot.log"; }
# sessions_check NAME DIR USER FROM N TOTAL: N sessions ended (waiting
# for Dovecot to log them), each RETRieved something, TOTAL in all.
sessions_check() {
	local name=$1 d=$2 u=$3 from=$4 n=$5 total=$6 i s
	for i in $(seq 1 50); do
		[ "$(p3_sessions "$d" "$u" "$from" | wc -l)" -ge "$n" ] && break
		sleep 0.1
	done
	s=$(p3_sessions "$d" "$u" "$from" | awk '{ n++; t += $1; if ($1 == 0) z++ } END { printf "%d %d %d", n, t, z }')
	[ "$s" = "$n $total 0" ] && ok "$name ($n sessions, $total RETRs in all)" ||
		not_ok "$name" "sessions, RETRs, idle sessions: $s; wanted $n $total 0: $(p3_sessions "$d" "$u" "$from" | tr '\n' ',')"
}
corpus P src3 crash 5 || not_ok kill-corpus "corpus failed"
for u in src8 src9; do mkdir -p "$P_MAIL_ROOT/$u" && cp -a "$P_MAIL_ROOT/src3/Maildir" "$P_MAIL_ROOT/$u/"; done
"$ROOT/scripts/dovecot.sh" fixperms "$P_DIR"
SRC8=$P_MAIL_ROOT/src8/Maildir
N8=$(inbox_count src8)
c8=(--src-password-file "$P_DIR/pw/src8" --ca-file "$P_CA_FILE" --no-progress --json --connections 4)
pos=$(logpos "$P_DIR") t0=$(date +%s)
if expect_exit parts-imap 0 mf migrate "pop3://src8@127.0.0.1:$P_POP3_PORT" "$(imap_to dst8)" "${c8[@]}" \
	--dst-password-file "$P_DIR/pw/dst8" --state "$T_TMP/st8"; then
	c=$(json_field "$T_TMP/last.out" messages_copied)
	[ "$c" = "$N8" ] && ok "parts-imap-count ($c)" || not_ok parts-imap-count "copied $c of $N8"
	SRC_MD=$SRC8 check parts-imap-exact exact "$(dst_dir dst8)" "$t0" "$(date +%s)"
	[ "$(json_field "$T_TMP/last.out" connections)" = 8 ] && ok parts-imap-four-pairs ||
		not_ok parts-imap-four-pairs "$(json_field "$T_TMP/last.out" connections) connections"
	sessions_check parts-imap-each-once "$P_DIR" src8 "$pos" 4 "$N8"
	expect_exit parts-imap-rerun 0 mf migrate "pop3://src8@127.0.0.1:$P_POP3_PORT" "$(imap_to dst8)" "${c8[@]}" \
		--dst-password-file "$P_DIR/pw/dst8" --state "$T_TMP/st8" &&
		{ [ "$(json_field "$T_TMP/last.out" messages_copied)" = 0 ] && [ "$(inbox_count dst8)" = "$N8" ] &&
			ok parts-imap-rerun-copies-0 || not_ok parts-imap-rerun-copies-0 "copied $(json_field "$T_TMP/last.out" messages_copied), INBOX $(inbox_count dst8)"; }
fi
pos=$(logpos "$P_DIR")
if expect_exit parts-lmtp 0 mf migrate "pop3://src8@127.0.0.1:$P_POP3_PORT" "lmtp://127.0.0.1:$P_LMTP_PORT?rcpt=lm2" \
	"${c8[@]}" --state "$T_TMP/st8l"; then
	c=$(json_field "$T_TMP/last.out" messages_copied)
	[ "$c" = "$N8" ] && ok "parts-lmtp-count ($c)" || not_ok parts-lmtp-count "delivered $c of $N8"
	check parts-lmtp-exact python3 "$T_TMP/lmtp_expect.py" "$SRC8" "$(dst_dir lm2)"
	sessions_check parts-lmtp-each-once "$P_DIR" src8 "$pos" 4 "$N8"
fi

# --pop3-delete with parts: every copy confirmed, then DELE from one
# session only (the last part's), the others delete nothing
cp -a "$P_MAIL_ROOT/src9/Maildir" "$T_TMP/src9-before"
N9=$(inbox_count src9) pos=$(logpos "$P_DIR")
if expect_exit parts-delete 0 mf migrate "pop3://src9@127.0.0.1:$P_POP3_PORT" "$(imap_to dst9)" --pop3-delete \
	--src-password-file "$P_DIR/pw/src9" --dst-password-file "$P_DIR/pw/dst9" --ca-file "$P_CA_FILE" \
	--state "$T_TMP/st9" --no-progress --json --connections 4; then
	[ "$(inbox_count src9)" = 0 ] && [ "$(inbox_count dst9)" = "$N9" ] && ok parts-delete-empties ||
		not_ok parts-delete-empties "source holds $(inbox_count src9), destination $(inbox_count dst9) of $N9"
	SRC_MD=$T_TMP/src9-before check parts-delete-exact exact "$(dst_dir dst9)" 1 "$(date +%s)"
	sessions_check parts-delete-each-once "$P_DIR" src9 "$pos" 4 "$N9"
	d=$(p3_sessions "$P_DIR" src9 "$pos" | awk -v n="$N9" '$2 == n { a++ } $2 != 0 && $2 != n { b++ } END { printf "%d %d", a, b }')
	[ "$d" = "1 0" ] && ok "parts-delete-one-session" ||
		not_ok parts-delete-one-session "sessions that deleted all, some: $d ($(p3_sessions "$P_DIR" src9 "$pos" | tr '\n' ','))"
fi

# A Dovecot with pop3_lock_session: a second session's PASS is held until
# the first QUITs. The first session copies every part, in this run.
if dv_start L --users "lsrc ldst" --pop3-lock; then
	mkdir -p "$L_MAIL_ROOT/lsrc" && cp -a "$T_TMP/src9-before" "$L_MAIL_ROOT/lsrc/Maildir"
	"$ROOT/scripts/dovecot.sh" fixperms "$L_DIR"
	NL=$(doveadm -c "$L_DOVECOT_CONF" mailbox status -u lsrc messages INBOX | sed 's/.*=//')
	if expect_exit lock-held 0 mf migrate "pop3://lsrc@127.0.0.1:$L_POP3_PORT" \
		"imap://ldst@127.0.0.1:$L_IMAP_PORT?starttls=no" --pop3-delete --src-password-file "$L_DIR/pw/lsrc" \
		--dst-password-file "$L_DIR/pw/ldst" --ca-file "$L_CA_FILE" --state "$T_TMP/stL" --no-progress --json \
		--connections 4; then
		[ "$(grep -c 'POP3 sessions not let in yet (the server may lock the maildrop): going on with 1' "$T_TMP/last.err")" = 1 ] &&
			! grep -q 'error:' "$T_TMP/last.err" && ok "lock-held-one-notice ($(grep -m1 'not let in' "$T_TMP/last.err" | cut -c 1-120))" ||
			not_ok lock-held-one-notice "$(head -c 400 "$T_TMP/last.err")"
		c=$(json_field "$T_TMP/last.out" messages_copied)
		[ "$c" = "$NL" ] && [ "$(doveadm -c "$L_DOVECOT_CONF" mailbox status -u lsrc messages INBOX | sed 's/.*=//')" = 0 ] &&
			ok "lock-held-all-copied-then-deleted ($c)" || not_ok lock-held-all-copied-then-deleted "copied $c of $NL"
		SRC_MD=$T_TMP/src9-before check lock-held-exact exact "$L_MAIL_ROOT/ldst/Maildir" 1 "$(date +%s)"
		# one session RETRieved and deleted everything; the held ones
		# ended with nothing ("Couldn't lock POP3 session")
		r=$(p3_sessions "$L_DIR" lsrc 0 | awk '$1 > 0' | tr '\n' ',')
		[ "$r" = "$NL $NL," ] && ok "lock-held-one-session-did-all ($(p3_sessions "$L_DIR" lsrc 0 | wc -l) sessions)" ||
			not_ok lock-held-one-session-did-all "sessions with RETRs (retr del): $r"
	fi
else
	not_ok lock-dovecot "start failed"
fi

# ---- SIGKILL at random moments, then resume: 0 lost, 0 twice ----
# src3 holds the crash corpus's INBOX (~1,700 messages), copied through a
# 1 ms delay proxy to the destination with batches of 4, so a run copies
# for a while; a resumed run first waits out the settle grace (3 s after
# the killed run's last intent).
if delay_proxy "$P_IMAP_PORT" --delay 1; then
	args=(migrate "pop3://src3@127.0.0.1:$P_POP3_PORT" "imap://dst3@127.0.0.1:$PROXY_PORT?starttls=no"
		--src-password-file "$P_DIR/pw/src3"
		--dst-password-file "$P_DIR/pw/dst3" --ca-file "$P_CA_FILE" --state "$T_TMP/st3" --no-progress --batch 4)
	# the first run is split over 4 sessions (the default --connections)
	# and killed while its parts copy (once a second session is in); the
	# runs after it settle on one session first (split.c)
	killed=0 grace=0 runpos=()
	for _ in 1 2 3 4 5 6; do
		runpos+=("$(logpos "$P_DIR")")
		"$MF_REL" "${args[@]}" -q 2>>"$T_TMP/kill.log" &
		pid=$!
		for i in $(seq 1 100); do
			[ ${#runpos[@]} -gt 1 ] || [ "$(tail -n +"$((runpos[0] + 1))" "$P_DIR/dovecot.log" |
				grep -c 'pop3-login: Info: Login: user=<src3>')" -ge 2 ] && break
			sleep 0.1
		done
		sleep "$(awk -v r=$RANDOM -v g=$grace 'BEGIN { printf "%.2f", g + 0.05 + 1.0 * r / 32768 }')"
		if kill -9 "$pid" 2>/dev/null; then killed=$((killed + 1)) grace=3; else grace=0; fi
		wait "$pid" 2>/dev/null
	done
	t0=1 # dates of undated messages: any run's
	if expect_exit kill-final-run 0 "$MF_REL" "${args[@]}" --json; then
		[ "$killed" -ge 3 ] && ok "kill-landed ($killed of 6)" || not_ok kill-landed "only $killed of 6 runs were still copying"
		# Dovecot logs each login as it happens: the first run's, before its kill
		ns=$(sed -n "$((runpos[0] + 1)),$((runpos[1]))p" "$P_DIR/dovecot.log" | grep -c 'pop3-login: Info: Login: user=<src3>')
		[ "$ns" -ge 2 ] && ok "kill-first-run-in-parts ($ns sessions)" || not_ok kill-first-run-in-parts "$ns sessions"
		SRC_MD=$P_MAIL_ROOT/src3/Maildir check "kill-exactly-once ($killed kills)" exact "$(dst_dir dst3)" 1 "$(date +%s)"
	fi
else
	not_ok kill-proxy "delay proxy did not start"
fi

# ---- --pop3-delete: a refused message stays, the rest goes; then all ----
SRC_MD=$T_TMP/src5-before
cp -a "$P_MAIL_ROOT/src5/Maildir" "$SRC_MD"
N5=$(inbox_count src5)
d5=(--src-password-file "$P_DIR/pw/src5" --dst-password-file "$P_DIR/pw/dst5" --ca-file "$P_CA_FILE"
	--state "$T_TMP/st5" --no-progress --json --pop3-delete)
if expect_exit delete-refused-exit 1 mf migrate "pop3://src5@127.0.0.1:$P_POP3_PORT" "$(imap_to dst5)" \
	"${d5[@]}" --max-message-size 5000000; then
	grep -q 'uid [0-9]*: UIDL "[0-9a-f]*": message of [0-9]* bytes exceeds --max-message-size 5000000' "$T_TMP/last.err" &&
		ok "delete-refused-named ($(grep -m1 'UIDL' "$T_TMP/last.err" | cut -c 1-150))" ||
		not_ok delete-refused-named "$(head -c 300 "$T_TMP/last.err")"
	left=$(inbox_count src5) got=$(inbox_count dst5)
	[ "$left" = 1 ] && [ "$got" = $((N5 - 1)) ] && ok "delete-keeps-refused ($left left, $got copied)" ||
		not_ok delete-keeps-refused "source holds $left, destination $got of $((N5 - 1))"
	dva fetch -u src5 'hdr.subject' mailbox INBOX | grep -q 'ten MiB' && ok delete-kept-the-big-one ||
		not_ok delete-kept-the-big-one "$(dva fetch -u src5 'hdr.subject' mailbox INBOX | head -c 200)"
fi
t0=$(date +%s)
if expect_exit delete-all 0 mf migrate "pop3://src5@127.0.0.1:$P_POP3_PORT" "$(imap_to dst5)" "${d5[@]}"; then
	[ "$(json_field "$T_TMP/last.out" messages_copied)" = 1 ] && [ "$(inbox_count src5)" = 0 ] &&
		ok delete-empties-box || not_ok delete-empties-box "copied $(json_field "$T_TMP/last.out" messages_copied), source holds $(inbox_count src5)"
	grep -q ": 1 copied messages deleted from the source" "$T_TMP/last.err" && ok delete-logged ||
		not_ok delete-logged "$(grep -i delet "$T_TMP/last.err" | head -n 2)"
	check delete-exact exact "$(dst_dir dst5)" 1 "$(date +%s)"
	expect_exit delete-empty-rerun 0 mf migrate "pop3://src5@127.0.0.1:$P_POP3_PORT" "$(imap_to dst5)" "${d5[@]}"
fi

# ---- scripted servers (tests/faults/fake_pop3.py) ----
printf 'pw-fake-Secret9' >"$T_TMP/fakepw" && chmod 600 "$T_TMP/fakepw"
fake() { t_helper fake_pop3 python3 "$FAULTS/fake_pop3.py" --fault "$1" --max-seconds 60 "${@:2}" && FAKE_PORT=$T_HELPER_PORT; }
if fake none && expect_exit fake-good 0 mf migrate "pop3://u@127.0.0.1:$FAKE_PORT" "$(imap_to fk1)" \
	--src-password-file "$T_TMP/fakepw" --dst-password-file "$P_DIR/pw/fk1" --state "$T_TMP/stf" --no-progress; then
	python3 - "$(dst_dir fk1)" <<'PY' && ok fake-good-exact || not_ok fake-good-exact "see above"
import os, sys
d = sys.argv[1]
got = sorted(open(os.path.join(d, s, f), "rb").read() for s in ("cur", "new") for f in os.listdir(os.path.join(d, s)))
assert len(got) == 3, len(got)
assert any(m.endswith(b"\n\nno final line end") for m in got), [m[-30:] for m in got]
assert any(m.endswith(b"\n\n.starts with a dot\n..two dots\n.\nend\n") for m in got), [m[-60:] for m in got]
PY
fi
if fake disconnect-mid-retr && expect_exit fake-drop 3 mf migrate "pop3://u@127.0.0.1:$FAKE_PORT" "$(imap_to fk2)" \
	--src-password-file "$T_TMP/fakepw" --dst-password-file "$P_DIR/pw/fk2" --state "$T_TMP/stf2" --no-progress \
	--retries 2 --timeout 5; then
	[ "$(grep -c 'reconnecting in' "$T_TMP/last.err")" = 2 ] && grep -q 'giving up after 2 reconnect attempts' "$T_TMP/last.err" &&
		ok fake-drop-reconnects || not_ok fake-drop-reconnects "$(head -c 400 "$T_TMP/last.err")"
	[ "$(inbox_count fk2)" = 0 ] && ok fake-drop-nothing-partial || not_ok fake-drop-nothing-partial "$(inbox_count fk2) stored"
fi

# a maildrop locked to one session: the second one refused at PASS with
# [IN-USE] (RFC 2449 §8.1.1), with a plain -ERR, or by a close. All 300
# messages are copied in the same run, each RETRieved once (the fake's
# transcript), with one notice and exit 0.
for f in lock-in-use lock-err lock-close; do
	before=$(inbox_count fk3)
	fake "$f" --messages 300 || { not_ok "fake-$f" "fake server did not start"; continue; }
	tr=$(ls -t "$T_TMP"/fake_pop3.*.out.err | head -n 1)
	expect_exit "fake-$f" 0 mf migrate "pop3://u@127.0.0.1:$FAKE_PORT" "$(imap_to fk3)" --src-password-file "$T_TMP/fakepw" \
		--dst-password-file "$P_DIR/pw/fk3" --state "$T_TMP/stf-$f" --no-progress --json --connections 4 || continue
	[ "$(grep -c 'going on with fewer POP3 sessions' "$T_TMP/last.err")" = 1 ] && ! grep -q 'error:' "$T_TMP/last.err" &&
		ok "fake-$f-one-notice ($(grep -m1 'fewer POP3' "$T_TMP/last.err" | cut -c 1-110))" ||
		not_ok "fake-$f-one-notice" "$(head -c 400 "$T_TMP/last.err")"
	r=$(grep -o 'C: RETR [0-9]*' "$tr" | sort | uniq -c | awk '{ n++; if ($1 != 1) d++ } END { printf "%d %d", n, d }')
	[ "$r" = "300 0" ] && [ "$(($(inbox_count fk3) - before))" = 300 ] && ok "fake-$f-all-once" ||
		not_ok "fake-$f-all-once" "RETRieved, more than once: $r; stored $(($(inbox_count fk3) - before))"
done

# ---- a LIST size that is wrong: that message fails, the rest is copied ----
# Dovecot takes a Maildir file's size from its name (W=, the size with
# CRLF line ends): 500 bytes less than the truth makes LIST lie, and the
# APPEND sized by it cannot be completed.
M6=$P_MAIL_ROOT/src6/Maildir
mkdir -p "$M6/cur" "$M6/new" "$M6/tmp"
python3 - "$M6/cur" <<'PY'
import os, sys
body = b"Subject: sized wrong\r\nDate: 1 Feb 2024 00:00:00 +0000\r\n\r\n" + b"y" * 98 * 1000 + b"\r\n"
open(os.path.join(sys.argv[1], "1700000000.M1P1.h,S=%d,W=%d:2,S" % (len(body), len(body) - 500)), "wb").write(body)
open(os.path.join(sys.argv[1], "1700000001.M2P1.h:2,S"), "wb").write(b"Subject: fine\r\nDate: 2 Feb 2024 00:00:00 +0000\r\n\r\nok\r\n")
PY
"$ROOT/scripts/dovecot.sh" fixperms "$P_DIR"
for run in 1 2; do
	expect_exit "list-size-wrong-$run" 1 mf migrate "pop3://src6@127.0.0.1:$P_POP3_PORT" "$(imap_to dst6)" \
		--src-password-file "$P_DIR/pw/src6" --dst-password-file "$P_DIR/pw/dst6" --ca-file "$P_CA_FILE" \
		--state "$T_TMP/st6" --no-progress --pop3-delete || continue
	grep -q 'UIDL "[0-9a-f]*": RETR gave [0-9]* or more bytes, LIST said [0-9]* (the server.s sizes are not exact); not copied' "$T_TMP/last.err" &&
		ok "list-size-wrong-$run-named" || not_ok "list-size-wrong-$run-named" "$(head -c 400 "$T_TMP/last.err")"
	[ "$(inbox_count dst6)" = 1 ] && [ "$(inbox_count src6)" = 1 ] && ok "list-size-wrong-$run-rest-copied" ||
		not_ok "list-size-wrong-$run-rest-copied" "destination $(inbox_count dst6), source $(inbox_count src6)"
done

# ---- --pop3-delete into a destination that refuses (over quota) ----
# Each message must end up in exactly one place: still on the source
# (refused) or on the destination (confirmed, then deleted).
if dv_start Q --users "dq" --quota-user dq:700000; then
	cp -a "$P_MAIL_ROOT/src7/Maildir" "$T_TMP/src7-before"
	expect_exit quota-delete 5 mf migrate "pop3://src7@127.0.0.1:$P_POP3_PORT" \
		"imap://dq@127.0.0.1:$Q_IMAP_PORT?starttls=no" --src-password-file "$P_DIR/pw/src7" \
		--dst-password-file "$Q_DIR/pw/dq" --ca-file "$P_CA_FILE" --state "$T_TMP/st7" --no-progress --pop3-delete
	python3 - "$T_TMP/src7-before" "$P_MAIL_ROOT/src7/Maildir" "$Q_MAIL_ROOT/dq/Maildir" <<'PY' &&
import collections, os, re, sys
def msgs(d):
    c = collections.Counter()
    for sub in ("cur", "new"):
        p = os.path.join(d, sub)
        for f in os.listdir(p) if os.path.isdir(p) else []:
            c[re.sub(rb"\r*\n", b"\n", open(os.path.join(p, f), "rb").read())] += 1
    return c
before, left, there = msgs(sys.argv[1]), msgs(sys.argv[2]), msgs(sys.argv[3])
assert left + there == before, "%d before, %d left + %d copied" % (sum(before.values()), sum(left.values()), sum(there.values()))
assert not (left & there), "%d messages both left and copied" % sum((left & there).values())
assert left and there, "%d left, %d copied: the quota did not split them" % (sum(left.values()), sum(there.values()))
print("%d left, %d copied" % (sum(left.values()), sum(there.values())))
PY
		ok "quota-delete-only-confirmed ($(inbox_count src7) left on the source)" ||
		not_ok quota-delete-only-confirmed "see above"
else
	not_ok quota-dovecot "start failed"
fi

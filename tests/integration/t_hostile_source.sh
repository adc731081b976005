#!/usr/bin/env bash
# Issue 15 defects 1 and 10: a hostile SOURCE (tests/faults/hostile_imap.py)
# and a real Dovecot as the destination. Values that cross from the source
# to the destination (INTERNALDATE, flags, mailbox names) must not inject
# commands: a literal date with CRLF + "X DELETE Canary" + an APPEND of its
# own, a quoted date with \", a flag atom x[ ) "y" (z ]. Names with CR/LF,
# ESC, invalid UTF-8 or a NUL must not forge log lines, reach the terminal,
# break the JSON, or merge two mailboxes. Exit 1, one error line each.
. "$(dirname "$0")/lib.sh"

dv_start D --users "dst" || { not_ok hostile-dovecot "start failed"; exit 1; }
dst() { imap_session "$D_IMAP_PORT" <<<"a LOGIN dst pw-dst-secret"$'\n'"$1"; }
dst 'b CREATE Canary' >/dev/null
hostile() { # [hostile_imap.py options]
	t_helper hostile python3 "$FAULTS/hostile_imap.py" --max-seconds 60 "$@" && H_PORT=$T_HELPER_PORT
}
run() { # NAME [mailferry options]
	local name=$1; shift
	expect_exit "$name" 1 mf migrate "imap://u@127.0.0.1:$H_PORT?starttls=no" \
		"imap://dst@127.0.0.1:$D_IMAP_PORT?starttls=no" --src-password-file "$D_DIR/pw/dst" \
		--dst-password-file "$D_DIR/pw/dst" --state "$T_TMP/st" --timeout 10 --no-progress \
		--json "$@"
	cp "$T_TMP/last.err" "$T_TMP/$name.err"
	cp "$T_TMP/last.out" "$T_TMP/$name.out"
}
# One line of $1's stderr contains every further argument (fixed strings).
has_line() { # FILE STRING...
	local f=$1; shift
	python3 - "$f" "$@" <<'PY'
import sys
lines = open(sys.argv[1], "rb").read().split(b"\n")
want = [a.encode() for a in sys.argv[2:]]
n = sum(1 for l in lines if all(w in l for w in want))
sys.exit(0 if n == 1 else 1)
PY
}
line_check() { # NAME FILE STRING...
	local name=$1; shift
	if has_line "$@"; then ok "$name"; else not_ok "$name" "no single stderr line with: ${*:2}"; fi
}

hostile || { not_ok hostile-server "did not start"; exit 1; }
run hostile-exit-1

# Defect 1: nothing injected, the good messages arrived, the bad refused.
listing=$(dst 'b LIST "" "*"')
[[ $listing == *'"." Canary'* ]] && ok canary-still-there ||
	not_ok canary-still-there "an injected DELETE ran: $(echo "$listing" | grep '^\* LIST' | tr '\n' ' ')"
if echo "$listing" | grep -q Injected; then
	not_ok no-injected-folders "message lines were run as commands: $(echo "$listing" | grep -o 'Injected[0-9a-z]*' | tr '\n' ' ')"
else
	ok no-injected-folders
fi
inbox=$(dst $'b SELECT INBOX\nc FETCH 1:* (FLAGS INTERNALDATE BODY.PEEK[HEADER.FIELDS (SUBJECT)])')
n=$(echo "$inbox" | sed -n 's/^\* \([0-9]*\) EXISTS$/\1/p')
[ "$n" = 2 ] && ok inbox-two-good ||
	not_ok inbox-two-good "destination INBOX holds $n messages, want 2 (the good ones): $(echo "$inbox" | grep -a Subject | tr '\n' ' ')"
[[ $inbox == *'FLAGS (\Flagged \Recent $Label1) INTERNALDATE "05-Feb-2024 09:30:00 +0000"'* ]] &&
	ok good-flags-and-date || not_ok good-flags-and-date "$(echo "$inbox" | grep FETCH | tr '\n' ' ')"
line_check literal-date-refused "$T_TMP/hostile-exit-1.err" 'error: source u@127.0.0.1 mailbox "INBOX" uid 2: INTERNALDATE is not an RFC 3501 date-time; message refused'
line_check quoted-date-refused "$T_TMP/hostile-exit-1.err" 'error: source u@127.0.0.1 mailbox "INBOX" uid 3: INTERNALDATE is not an RFC 3501 date-time; message refused'
line_check bad-flag-refused "$T_TMP/hostile-exit-1.err" 'error: source u@127.0.0.1 mailbox "INBOX" uid 4: flag "x[ ) "y" (z ]" is neither'

# Defect 10: names.
dup=$(dst 'b STATUS Dup (MESSAGES)' | sed -n 's/.*(MESSAGES \([0-9]*\)).*/\1/p')
[ "$dup" = 1 ] && ok nul-name-not-merged || not_ok nul-name-not-merged "destination Dup holds $dup messages, want 1"
line_check nul-name-refused "$T_TMP/hostile-exit-1.err" 'mailbox "Dup\x00x": name contains a NUL byte; mailbox refused' '"Dup"'
line_check crlf-name-refused "$T_TMP/hostile-exit-1.err" 'mailbox "Evil\r\nmailferry: done: 999 copied": name contains a CR or LF; mailbox refused'
python3 - "$T_TMP/hostile-exit-1.err" 2>"$T_TMP/py.err" <<'PY' && ok stderr-escaped || not_ok stderr-escaped "$(tail -n 1 "$T_TMP/py.err")"
import sys
raw = open(sys.argv[1], "rb").read()
bad = [c for c in (b"\x1b", b"\r", b"\x00", b"\x9b") if c in raw]
if bad:
    sys.exit("raw control bytes on stderr: %r" % bad)
raw.decode("utf-8")  # strict: invalid bytes must have been escaped
for l in raw.split(b"\n")[:-1]:
    if not l.startswith(b"mailferry: ") or l.startswith(b"mailferry: done:"):
        sys.exit("forged or foreign line: %r" % l[:80])
PY
python3 -c '
import json, sys
lines = sys.stdin.buffer.read().split(b"\n")[:-1]
ev = [json.loads(l.decode("utf-8")) for l in lines]
assert ev[-1]["event"] == "summary" and ev[-1]["exit"] == 1, ev[-1]
' <"$T_TMP/hostile-exit-1.out" 2>/dev/null && ok json-valid || not_ok json-valid "stdout is not valid UTF-8 JSON lines"

# Again: the refused stay refused, nothing is copied twice or injected.
# Message 1's flags now carry the bad atom: --sync-flags must not STORE it.
hostile --flags1 '\Seen x[ ) "y" (z ]' || { not_ok hostile-server-2 "did not start"; exit 1; }
run rerun-exit-1 --sync-flags
line_check bad-flag-not-stored "$T_TMP/rerun-exit-1.err" 'mailbox "INBOX" uid 1: flag "x[ ) "y" (z ]" is neither' 'flag change not applied'
n=$(dst $'b SELECT INBOX' | sed -n 's/^\* \([0-9]*\) EXISTS$/\1/p')
[ "$n" = 2 ] && ok rerun-no-duplicates || not_ok rerun-no-duplicates "destination INBOX holds $n messages, want 2"
[[ $(dst 'b LIST "" "*"') == *'"." Canary'* ]] && ok rerun-canary || not_ok rerun-canary "Canary is gone"
dup=$(dst 'b STATUS Dup (MESSAGES)' | sed -n 's/.*(MESSAGES \([0-9]*\)).*/\1/p')
[ "$dup" = 1 ] && ok rerun-nul-name-not-merged ||
	not_ok rerun-nul-name-not-merged "destination Dup holds $dup messages, want 1"

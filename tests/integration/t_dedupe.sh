#!/usr/bin/env bash
# Issue 3 --dedupe: a message whose content the destination folder already
# holds is not appended again. (1) Another tool already copied part of the
# account: --dedupe copies only the rest and the destination equals the
# source; without --dedupe the same start ends with duplicates (the check
# can fail). (2) Two source folders merged into one with --map: what the
# first brought is not appended again for the second.
. "$(dirname "$0")/lib.sh"

dv_start P --users "src dst dst2 dst3 dst4" || { not_ok dedupe-dovecot "start failed"; exit 1; }
corpus P src tiny 6 || { not_ok dedupe-corpus failed; exit 1; }
# What an earlier tool left behind: every second message of each folder,
# the same bytes, flags and dates, in dst and dst2.
prefill() { # USER
	python3 - "$P_IMAP_PORT" "$1" <<'PY'
import imaplib, re, sys
imaplib.MapCRLF = re.compile(br'\r\n')
port, user = int(sys.argv[1]), sys.argv[2]
s = imaplib.IMAP4('127.0.0.1', port); s.login('src', 'pw-src-secret')
d = imaplib.IMAP4('127.0.0.1', port); d.login(user, 'pw-%s-secret' % user)
n = 0
for line in s.list()[1]:
    name = line.decode().rsplit(' ', 1)[1]
    if '\\Noselect' in line.decode() or '\\NonExistent' in line.decode():
        continue
    s.select(name, readonly=True)
    typ, data = s.uid('FETCH', '1:*', '(FLAGS INTERNALDATE BODY.PEEK[])')
    msgs = [(x[0].decode(), x[1]) for x in data if isinstance(x, tuple)]
    if name.strip('"') != 'INBOX':
        d.create(name)
    for i, (meta, body) in enumerate(msgs):
        if i % 2:
            continue
        fl = re.search(r'FLAGS \(([^)]*)\)', meta).group(1).replace('\\Recent', '').strip()
        dt = re.search(r'INTERNALDATE ("[^"]+")', meta).group(1)
        assert d.append(name, '(%s)' % fl, dt, body)[0] == 'OK'
        n += 1
print(n)
PY
}
pre=$(prefill dst)
prefill dst2 >/dev/null
run() { # DST [options]
	local u=$1; shift
	mf migrate "imap://src@127.0.0.1:$P_IMAP_PORT?starttls=no" "imap://$u@127.0.0.1:$P_IMAP_PORT?starttls=no" \
		--src-password-file "$P_DIR/pw/src" --dst-password-file "$P_DIR/pw/$u" --state "$P_DIR/state-$u" \
		--json --no-progress "$@"
}
expect_exit dedupe-run 0 run dst --dedupe
d=$(json_field "$T_TMP/last.out" messages_deduped); c=$(json_field "$T_TMP/last.out" messages_copied)
[ "$d" = "$pre" ] && [ "$d" -gt 0 ] && ok "dedupe-found ($d already there, $c copied)" ||
	not_ok dedupe-found "deduped $d, the destination held $pre"
check dedupe-exact "$BENCH_BIN/compare" "$P_DIR/mail/src/Maildir" "$P_DIR/mail/dst/Maildir"
expect_exit dedupe-rerun 0 run dst --dedupe --sync-flags --delete
c=$(json_field "$T_TMP/last.out" messages_copied)
[ "$c" = 0 ] && ok dedupe-rerun-copies-nothing || not_ok dedupe-rerun-copies-nothing "copied $c"
# The same start without --dedupe: duplicates, and compare says so.
expect_exit no-dedupe-run 0 run dst2
if "$BENCH_BIN/compare" "$P_DIR/mail/src/Maildir" "$P_DIR/mail/dst2/Maildir" >"$T_TMP/cmp2" 2>&1; then
	not_ok no-dedupe-duplicates "compare found no difference without --dedupe"
else
	ok "no-dedupe-duplicates ($(tail -n 1 "$T_TMP/cmp2" | cut -c1-100))"
fi

# Two source folders into one: Copy holds two of INBOX's messages and one
# of its own; merged into INBOX after INBOX was copied.
python3 - "$P_IMAP_PORT" <<'PY'
import imaplib, sys
imaplib.MapCRLF = __import__('re').compile(br'\r\n')
s = imaplib.IMAP4('127.0.0.1', int(sys.argv[1])); s.login('src', 'pw-src-secret')
s.create('Copy')
s.select('INBOX')
assert s.uid('COPY', '1:2', 'Copy')[0] == 'OK'
s.append('Copy', '()', None, b'Subject: only in Copy\r\nMessage-ID: <only@copy>\r\n\r\nown\r\n')
s.logout()
PY
expect_exit merge-first 0 run dst3 --exclude Copy
inbox=$(imap_session "$P_IMAP_PORT" <<<$'a LOGIN dst3 pw-dst3-secret\nb STATUS INBOX (MESSAGES)' | sed -n 's/.*(MESSAGES \([0-9]*\)).*/\1/p')
expect_exit merge-dedupe-run 0 run dst3 --map Copy=INBOX --dedupe
d=$(json_field "$T_TMP/last.out" messages_deduped); c=$(json_field "$T_TMP/last.out" messages_copied)
after=$(imap_session "$P_IMAP_PORT" <<<$'a LOGIN dst3 pw-dst3-secret\nb STATUS INBOX (MESSAGES)' | sed -n 's/.*(MESSAGES \([0-9]*\)).*/\1/p')
[ "$d" = 2 ] && [ "$c" = 1 ] && [ "$after" = $((inbox + 1)) ] && ok "merge-dedupe (2 already there, 1 copied)" ||
	not_ok merge-dedupe "deduped $d copied $c; INBOX $inbox -> $after"

# The same merge in one run: the two go one after the other, so the second
# sees what the first appended, whichever comes first.
expect_exit merge-one-run 0 run dst4 --map Copy=INBOX --dedupe
d=$(json_field "$T_TMP/last.out" messages_deduped)
n=$(imap_session "$P_IMAP_PORT" <<<$'a LOGIN dst4 pw-dst4-secret\nb STATUS INBOX (MESSAGES)' | sed -n 's/.*(MESSAGES \([0-9]*\)).*/\1/p')
[ "$d" = 2 ] && [ "$n" = $((inbox + 1)) ] && ok "merge-one-run-dedupes (2 already there; INBOX $n)" ||
	not_ok merge-one-run-dedupes "deduped $d; INBOX $n, want $((inbox + 1))"

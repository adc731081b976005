#!/usr/bin/env bash
# Issue 14 item 7: two defects a second IMAP server showed.
#
# 1. Children created before parents. Cyrus IMAP 3.x creates a parent
#    mailbox implicitly with its child, then answers a CREATE of the parent
#    with "NO Mailbox already exists" (no [ALREADYEXISTS]). mailferry used
#    to create largest first, so a source whose "Junk/Older Spam" holds more
#    than "Junk" sent CREATE "Junk/Older Spam" first, and the whole "Junk"
#    mailbox failed. Now: parents before children, and a refused CREATE of
#    a mailbox that LIST then shows is a success (two source folders merged
#    into one new destination folder with --map: the second CREATE is
#    refused that way).
# 2. Flags lost after a UIDVALIDITY change. A source folder recreated with
#    a new UIDVALIDITY whose messages also changed flags or keywords: the
#    content remap matched every message and copied none, but the flag
#    differences were never applied, even with --sync-flags (and the state
#    then held the new modseq, so no later run applied them either). Now
#    the remap diffs and applies flags and keywords of the matched
#    messages. Shown on Dovecot at both ends (the fault needs no second
#    server, and Maildirs compare exactly).
. "$(dirname "$0")/lib.sh"

# --- 1. children before parents (Dovecot -> Cyrus) ---------------------
dv_start A --users "src" || { not_ok dovecot "start failed"; exit 1; }
cy_start C --users "dst dst2" || { not_ok cyrus "start failed"; exit 1; }
cat "$A_CA_FILE" "$C_CA_FILE" >"$T_TMP/ca.pem"
python3 - "$A_IMAP_PORT" "$A_DIR/pw/src" <<'PY' || not_ok junk-setup "could not fill the source"
import imaplib, sys
m = imaplib.IMAP4("127.0.0.1", int(sys.argv[1]))
m.login("src", open(sys.argv[2]).read())
# Dovecot's separator here is "."; the child holds more than its parent.
for box, n in (("Junk", 1), ('"Junk.Older Spam"', 3)):
    m.create(box)
    for i in range(n):
        m.append(box, r"(\Seen)", None,
                 b"From: a@example.org\r\nSubject: %s %d\r\n\r\nbody\r\n" % (box.encode(), i))
m.logout()
PY
expect_exit junk-migrate 0 mf migrate "imap://src@127.0.0.1:$A_IMAP_PORT" "imap://dst@127.0.0.1:$C_IMAP_PORT" \
	--src-password-file "$A_DIR/pw/src" --dst-password-file "$C_DIR/pw/dst" --ca-file "$T_TMP/ca.pem" \
	--json --no-progress --state "$T_TMP/st1"
grep -q 'cannot create mailbox "Junk"' "$T_TMP/last.err" && not_ok junk-created "$(grep -m1 'Junk' "$T_TMP/last.err")" ||
	ok junk-created
counts=$(imap_session "$C_IMAP_PORT" <<EOF | tr -d '\r' | sed -n 's/^\* STATUS \(.*\) (MESSAGES \([0-9]*\))$/\1=\2/p' | tr '\n' ' '
a LOGIN dst $(cat "$C_DIR/pw/dst")
b STATUS Junk (MESSAGES)
c STATUS "Junk/Older Spam" (MESSAGES)
EOF
)
[ "$counts" = 'Junk=1 "Junk/Older Spam"=3 ' ] && ok "junk-contents ($counts)" ||
	not_ok junk-contents "on Cyrus: '$counts', wanted Junk=1 \"Junk/Older Spam\"=3"

# two source folders into one new destination folder: its second CREATE
# is refused ("Mailbox already exists", no [ALREADYEXISTS]), LIST shows it
python3 - "$A_IMAP_PORT" "$A_DIR/pw/src" <<'PY' || not_ok merge-setup "could not fill the source"
import imaplib, sys
m = imaplib.IMAP4("127.0.0.1", int(sys.argv[1]))
m.login("src", open(sys.argv[2]).read())
for box, n in (("Lists", 2), ("Lists2", 3)):
    m.create(box)
    for i in range(n):
        m.append(box, None, None, b"From: a@example.org\r\nSubject: %s %d\r\n\r\nbody\r\n" % (box.encode(), i))
m.logout()
PY
expect_exit merge-migrate 0 mf migrate "imap://src@127.0.0.1:$A_IMAP_PORT" "imap://dst2@127.0.0.1:$C_IMAP_PORT" \
	--src-password-file "$A_DIR/pw/src" --dst-password-file "$C_DIR/pw/dst2" --ca-file "$T_TMP/ca.pem" \
	--folder 'Lists*' --map Lists=Merged --map Lists2=Merged --json --no-progress --state "$T_TMP/st2"
n=$(imap_session "$C_IMAP_PORT" <<<"a LOGIN dst2 $(cat "$C_DIR/pw/dst2")
b STATUS Merged (MESSAGES)" | tr -d '\r' | sed -n 's/^\* STATUS .*(MESSAGES \([0-9]*\))$/\1/p')
[ "$n" = 5 ] && ok "merge-contents (Merged=$n)" || not_ok merge-contents "on Cyrus: Merged='$n', wanted 5"

# --- 2. flags after a UIDVALIDITY change (Dovecot -> Dovecot) -------------
dv_start U --users "src dst" || { not_ok uidvalidity-dovecot "start failed"; exit 1; }
corpus U src tiny 5
runu() { mf migrate "imap://src@127.0.0.1:$U_IMAP_PORT?starttls=no" "imap://dst@127.0.0.1:$U_IMAP_PORT?starttls=no" \
	--src-password-file "$U_DIR/pw/src" --dst-password-file "$U_DIR/pw/dst" --state "$U_DIR/state-mf" \
	--json --no-progress --sync-flags "$@"; }
# compare's verdict on stderr, so check shows it
cmp_md() { "$BENCH_BIN/compare" "$U_DIR/mail/src/Maildir" "$U_DIR/mail/dst/Maildir" >&2; }
expect_exit uvflags-initial 0 runu
# Recreate Sent (new UIDVALIDITY) with the same messages, flags changed on
# three of them: \Flagged and a keyword added, \Seen dropped, a keyword
# dropped where there was one.
python3 - "$U_IMAP_PORT" <<'PY' || not_ok uvflags-setup "could not recreate Sent"
import imaplib, sys, re
imaplib.MapCRLF = re.compile(br'\r\n')  # append bytes as they are (bare CRs too)
m = imaplib.IMAP4('127.0.0.1', int(sys.argv[1])); m.login('src', 'pw-src-secret')
typ, st = m.status('Sent', '(UIDVALIDITY)')
m.select('Sent')
typ, data = m.uid('FETCH', '1:*', '(FLAGS INTERNALDATE BODY.PEEK[])')
msgs = [(d[0], d[1]) for d in data if isinstance(d, tuple)]
m.close(); m.delete('Sent'); m.create('Sent')
changed = 0
for i, (meta, body) in enumerate(msgs):
    meta = meta.decode()
    fl = re.search(r'FLAGS \(([^)]*)\)', meta).group(1).replace('\\Recent', '').split()
    if i == 0:
        fl += ['\\Flagged', '$Changed']
    elif i == 1:
        fl = [f for f in fl if f != '\\Seen'] if '\\Seen' in fl else fl + ['\\Seen']
    elif i == 2:
        kw = [f for f in fl if not f.startswith('\\')]
        fl = [f for f in fl if f not in kw[:1]] if kw else fl + ['Project-Y']
    dt = re.search(r'INTERNALDATE ("[^"]+")', meta).group(1)
    m.append('Sent', '(%s)' % ' '.join(fl), dt, body)
typ, st2 = m.status('Sent', '(UIDVALIDITY)')
if st == st2:
    sys.exit('UIDVALIDITY did not change')
m.logout()
PY
expect_exit uvflags-rerun 0 runu
c=$(json_field "$T_TMP/last.out" messages_copied)
[ "$c" = 0 ] && ok "uvflags-copies-nothing" || not_ok uvflags-copies-nothing "copied $c, wanted 0"
check uvflags-flags-applied cmp_md
# and a later run does not mend it either (the state holds the new modseq)
expect_exit uvflags-third-run 0 runu
check uvflags-flags-applied-later cmp_md

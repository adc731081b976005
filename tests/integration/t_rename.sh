#!/usr/bin/env bash
# Issue 3: folders renamed on the source are not copied again. After a first
# migration the source renames a leaf into another hierarchy (UIDs kept), a
# parent with a child (both move), and "renames" one folder the way some
# clients do, by copying it into a new folder and deleting the old one (a new
# UIDVALIDITY: found by content hash). One incremental run renames the
# destination's folders to match, copies only the new message, and the
# destination equals the source.
. "$(dirname "$0")/lib.sh"

dv_start R --users "src dst" || { not_ok rename-dovecot "start failed"; exit 1; }
corpus R src tiny 5 || { not_ok rename-corpus failed; exit 1; }
src_py() { python3 - "$R_IMAP_PORT" "$@"; }
src_py <<'PY'
import imaplib, sys
m = imaplib.IMAP4('127.0.0.1', int(sys.argv[1])); m.login('src', 'pw-src-secret')
for box in ('Proj', 'Proj.a', 'Old'):
    m.create(box)
    for i in range(3):
        m.append(box, '(\\Seen)', None, ('Subject: %s %d\r\nMessage-ID: <%s.%d@x>\r\n\r\nbody %d\r\n' % (box, i, box, i, i)).encode())
m.logout()
PY
run() { mf migrate "imap://src@127.0.0.1:$R_IMAP_PORT?starttls=no" "imap://dst@127.0.0.1:$R_IMAP_PORT?starttls=no" \
	--src-password-file "$R_DIR/pw/src" --dst-password-file "$R_DIR/pw/dst" --state "$R_DIR/state-mf" \
	--json --no-progress "$@"; }
expect_exit rename-initial 0 run
check rename-initial-exact "$BENCH_BIN/compare" "$R_DIR/mail/src/Maildir" "$R_DIR/mail/dst/Maildir"

src_py <<'PY'
import imaplib, re, sys
imaplib.MapCRLF = re.compile(br'\r\n')  # append bytes as they are (bare CRs too)
m = imaplib.IMAP4('127.0.0.1', int(sys.argv[1])); m.login('src', 'pw-src-secret')
def ok(r):
    assert r[0] == 'OK', r
ok(m.rename('Lists.dev', 'Mailing.devel'))           # a leaf, into another hierarchy
ok(m.rename('Proj', 'Work'))                         # a parent: Proj.a moves too
# copy + delete: a new mailbox, a new UIDVALIDITY, the same messages
m.select('"Entw&APw-rfe"')
typ, data = m.uid('FETCH', '1:*', '(FLAGS INTERNALDATE BODY.PEEK[])')
msgs = [(d[0].decode(), d[1]) for d in data if isinstance(d, tuple)]
m.close()
ok(m.create('Drafts-old'))
for meta, body in msgs:
    fl = re.search(r'FLAGS \(([^)]*)\)', meta).group(1).replace('\\Recent', '').strip()
    dt = re.search(r'INTERNALDATE ("[^"]+")', meta).group(1)
    ok(m.append('Drafts-old', '(%s)' % fl, dt, body))
ok(m.delete('"Entw&APw-rfe"'))
# not a rename: one message taken out of a folder that is then deleted
ok(m.create('Picked'))
m.select('Old')
ok(m.uid('COPY', '1', 'Picked'))
m.close()
ok(m.delete('Old'))
ok(m.append('Mailing.devel', '()', None, b'Subject: after the rename\r\n\r\nnew\r\n'))
m.logout()
PY

expect_exit rename-dry-run 0 run --dry-run
n=$(grep -c 'dry-run: .*renamed on the source' "$T_TMP/last.err")
[ "$n" = 4 ] && ok "rename-dry-run-reports (4 renames)" || not_ok rename-dry-run-reports "$n lines: $(grep dry-run "$T_TMP/last.err" | tr '\n' '|')"

expect_exit rename-rerun 0 run
c=$(json_field "$T_TMP/last.out" messages_copied); r=$(json_field "$T_TMP/last.out" mailboxes_renamed)
[ "$c" = 2 ] && ok "rename-copies-only-new (2 copied: the new message, and Picked's one)" ||
	not_ok rename-copies-only-new "copied $c, wanted 2"
[ "$r" = 4 ] && ok "rename-counted (4 renamed)" || not_ok rename-counted "renamed $r, wanted 4"
# the deleted folder Old stays on the destination: extra folders are fine here
check rename-exact "$BENCH_BIN/compare" "$R_DIR/mail/src/Maildir" "$R_DIR/mail/dst/Maildir" --ignore-extra
imap_session "$R_IMAP_PORT" <<<$'a LOGIN dst pw-dst-secret\nb LIST "" "*"' >"$T_TMP/list"
grep -qE 'Lists.dev|"Proj|Entw' "$T_TMP/list" && not_ok rename-old-names-gone "$(grep LIST "$T_TMP/list" | tr '\n' ' ')" ||
	ok rename-old-names-gone
grep -q 'Old' "$T_TMP/list" && grep -q 'Picked' "$T_TMP/list" && ok "rename-not-fooled (Picked is new, Old stays)" ||
	not_ok rename-not-fooled "$(grep LIST "$T_TMP/list" | tr '\n' ' ')"

expect_exit rename-noop 0 run --sync-flags --delete
c=$(json_field "$T_TMP/last.out" messages_copied); r=$(json_field "$T_TMP/last.out" mailboxes_renamed)
[ "$c" = 0 ] && [ "$r" = 0 ] && ok rename-noop-nothing || not_ok rename-noop-nothing "copied $c renamed $r"

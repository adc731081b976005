#!/usr/bin/env bash
# Issue 3: after a first migration the source changes (new mail, flags set
# and cleared, keywords, expunges); one incremental run makes the
# destination equal again. Run with QRESYNC, with CONDSTORE only, and with
# neither, so all three read methods are exercised. Without --sync-flags /
# --delete only new mail is copied.
. "$(dirname "$0")/lib.sh"

for variant in qresync condstore scan; do
	case $variant in
	qresync) opts=() ;;
	condstore) opts=(--no-qresync) ;;
	scan) opts=(--no-condstore) ;;
	esac
	dv_start "V$variant" --users "src dst" "${opts[@]}" || { not_ok "$variant-dovecot" "start failed"; continue; }
	d=V${variant}_DIR; p=V${variant}_IMAP_PORT; dir=${!d}; port=${!p}
	corpus "V$variant" src tiny 3 || { not_ok "$variant-corpus" failed; continue; }
	run() { mf migrate "imap://src@127.0.0.1:$port?starttls=no" "imap://dst@127.0.0.1:$port?starttls=no" \
		--src-password-file "$dir/pw/src" --dst-password-file "$dir/pw/dst" --state "$dir/state-mf" \
		--json --no-progress "$@"; }
	expect_exit "$variant-initial" 0 run
	python3 tests/integration/mutate.py "$port" src "$(cat "$dir/pw/src")" 11 >/dev/null
	# without the options only the new messages move
	expect_exit "$variant-new-only" 0 run
	f=$(json_field "$T_TMP/last.out" flags_synced); e=$(json_field "$T_TMP/last.out" expunged)
	[ "$f" = 0 ] && [ "$e" = 0 ] && ok "$variant-new-only-leaves-flags" || not_ok "$variant-new-only-leaves-flags" "flags $f expunged $e"
	expect_exit "$variant-sync" 0 run --sync-flags --delete
	cp "$T_TMP/last.out" "$T_TMP/$variant.json"
	grep -q "\"method\":\"$variant\"" "$T_TMP/$variant.json" && ok "$variant-method-reported" ||
		not_ok "$variant-method-reported" "$(grep -o '"method":"[a-z-]*"' "$T_TMP/$variant.json" | sort | uniq -c | tr '\n' ' ')"
	check "$variant-exact" "$BENCH_BIN/compare" "$dir/mail/src/Maildir" "$dir/mail/dst/Maildir"
	# a second round of changes, then a no-change run costs nothing
	python3 tests/integration/mutate.py "$port" src "$(cat "$dir/pw/src")" 12 >/dev/null
	expect_exit "$variant-sync-2" 0 run --sync-flags --delete
	check "$variant-exact-2" "$BENCH_BIN/compare" "$dir/mail/src/Maildir" "$dir/mail/dst/Maildir"
	expect_exit "$variant-noop" 0 run --sync-flags --delete
	c=$(json_field "$T_TMP/last.out" messages_copied); f=$(json_field "$T_TMP/last.out" flags_synced)
	[ "$c" = 0 ] && [ "$f" = 0 ] && ok "$variant-noop-copies-nothing" || not_ok "$variant-noop-copies-nothing" "copied $c, flags $f"
	scripts/dovecot.sh stop "$dir" >/dev/null
done

# A mailbox recreated on the source (new UIDVALIDITY, same messages, one
# more): nothing is copied again; the new one is. Messages are matched by
# content hash (RFC 3501 §2.3.1.1: old UIDs mean nothing now).
dv_start U --users "src dst" || { not_ok uidvalidity-dovecot "start failed"; exit 1; }
corpus U src tiny 4
runu() { mf migrate "imap://src@127.0.0.1:$U_IMAP_PORT?starttls=no" "imap://dst@127.0.0.1:$U_IMAP_PORT?starttls=no" \
	--src-password-file "$U_DIR/pw/src" --dst-password-file "$U_DIR/pw/dst" --state "$U_DIR/state-mf" \
	--json --no-progress "$@"; }
expect_exit uidvalidity-initial 0 runu
python3 - "$U_IMAP_PORT" <<'PY'
import imaplib, sys, re
imaplib.MapCRLF = re.compile(br'\r\n')  # append bytes as they are (bare CRs too)
m = imaplib.IMAP4('127.0.0.1', int(sys.argv[1])); m.login('src', 'pw-src-secret')
m.select('Sent')
typ, data = m.uid('FETCH', '1:*', '(FLAGS INTERNALDATE BODY.PEEK[])')
msgs = [(d[0], d[1]) for d in data if isinstance(d, tuple)]
m.close(); m.delete('Sent'); m.create('Sent')
import re
for meta, body in msgs:
    meta = meta.decode()
    fl = re.search(r'FLAGS \(([^)]*)\)', meta).group(1).replace('\\Recent', '').strip()
    dt = re.search(r'INTERNALDATE ("[^"]+")', meta).group(1)
    m.append('Sent', '(%s)' % fl, dt, body)
m.append('Sent', '()', None, b'Subject: after the reset\r\n\r\nnew\r\n')
m.logout()
PY
expect_exit uidvalidity-rerun 0 runu
c=$(json_field "$T_TMP/last.out" messages_copied)
[ "$c" = 1 ] && ok "uidvalidity-copies-only-new (1 copied)" || not_ok uidvalidity-copies-only-new "copied $c, wanted 1"
check uidvalidity-exact "$BENCH_BIN/compare" "$U_DIR/mail/src/Maildir" "$U_DIR/mail/dst/Maildir"

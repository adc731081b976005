#!/usr/bin/env bash
# Issue 16 items 5 and 3: selective copies and shared namespaces against the
# private Dovecot.
# - --since/--before, --larger/--smaller and --search copy exactly the set a
#   Python check of the corpus's dates, sizes and senders computes, by
#   Message-ID (no duplicates on the destination);
# - a re-run copies 0; widening --since copies exactly the newly included;
#   removing the filter copies the rest; nothing twice;
# - a hostile --search (CRLF, a literal, unbalanced parentheses, 10 KB) exits
#   2 with a clear message before any connection;
# - a shared (public) namespace is skipped by default with one notice, and
#   copied with --include-shared;
# - a personal namespace "INBOX." on one side: INBOX.Work becomes Work and
#   back.
. "$(dirname "$0")/lib.sh"

dv_start A --users "src" --public-ns "Public." || { not_ok selective-dovecot-a "start failed"; exit 1; }
dv_start B --users "d1 d2 d3 d4 d5 d6" || { not_ok selective-dovecot-b "start failed"; exit 1; }
dv_start C --users "p" --inbox-prefix || { not_ok selective-dovecot-c "start failed"; exit 1; }
dv_start E --users "src" --no-esearch || { not_ok selective-dovecot-e "start failed"; exit 1; }

# The corpus: INBOX 40 messages, Work 10 and Sent 3, dated every 20 days from
# 2023-01-01 (noon UTC), sizes spread from ~1 KB to ~40 KB, three senders;
# Public.proj (shared) 5. The manifest says each one's date, size and sender.
python3 - "$("$ROOT/scripts/dovecot.sh" maildir "$A_DIR" src)" "$A_DIR/public" "$T_TMP/manifest.json" \
	"$("$ROOT/scripts/dovecot.sh" maildir "$E_DIR" src)" <<'EOF'
import json, os, shutil, sys, time, calendar
mdir, pub, manifest, emdir = sys.argv[1:5]
t0 = calendar.timegm((2023, 1, 1, 12, 0, 0))
senders = ["alice@example.org", "bob@example.org", "carol@example.net"]
out = []
def put(folder_dir, i, box):
    for d in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(folder_dir, d), exist_ok=True)
    when = t0 + i * 20 * 86400
    frm = senders[i % 3]
    pad = ((i * 7919) % 40) * 1000 + 200
    body = "".join("line %05d %s\n" % (k, "x" * 60) for k in range(pad // 72 + 1))
    msg = ("From: %s\nTo: src@example.org\nSubject: message %d\nMessage-ID: <m%d@sel.test>\n"
           "Date: %s\n\n%s" % (frm, i, i, time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(when)), body))
    fn = os.path.join(folder_dir, "cur", "%d.M%dP1.sel:2,S" % (when, i))
    with open(fn, "w") as f:
        f.write(msg)
    os.utime(fn, (when, when))
    out.append({"id": "<m%d@sel.test>" % i, "box": box, "date": time.strftime("%Y-%m-%d", time.gmtime(when)),
                "size": len(msg.replace("\n", "\r\n").encode()), "from": frm})
for i in range(40):
    put(mdir, i, "INBOX")
for i in range(40, 50):
    put(os.path.join(mdir, ".Work"), i, "Work")
for i in range(50, 55):
    put(os.path.join(pub, ".proj"), i, "Public.proj")
for i in range(55, 58):
    put(os.path.join(mdir, ".Sent"), i, "Sent")
for d in ("cur", "new", "tmp"):
    os.makedirs(os.path.join(pub, d), exist_ok=True)
json.dump(out, open(manifest, "w"))
# the same personal mail for the server without ESEARCH
shutil.rmtree(emdir, ignore_errors=True)
shutil.copytree(mdir, emdir)
EOF
"$ROOT/scripts/dovecot.sh" fixperms "$A_DIR"
"$ROOT/scripts/dovecot.sh" fixperms "$E_DIR"
chown -R "$A_MAIL_OWNER" "$A_DIR/public" 2>/dev/null || true

# expect FILTER...: the Message-IDs of the personal mailboxes the filter
# selects, computed from the manifest (date: YYYY-MM-DD strings compare in
# order; IMAP SINCE is >=, BEFORE <, LARGER >, SMALLER <).
expect() {
	python3 - "$T_TMP/manifest.json" "$@" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1]))
a = sys.argv[2:]
sel = [x for x in m if x["box"] != "Public.proj"]
for k in range(0, len(a), 2):
    key, v = a[k], a[k + 1]
    if key == "since": sel = [x for x in sel if x["date"] >= v]
    if key == "before": sel = [x for x in sel if x["date"] < v]
    if key == "larger": sel = [x for x in sel if x["size"] > int(v)]
    if key == "smaller": sel = [x for x in sel if x["size"] < int(v)]
    if key == "from": sel = [x for x in sel if v in x["from"]]
print("\n".join(sorted(x["id"] for x in sel)))
EOF
}
# ids PORT USER: every Message-ID in every mailbox of USER (duplicates kept)
ids() {
	python3 - "$1" "$2" <<'EOF'
import imaplib, re, sys
port, user = int(sys.argv[1]), sys.argv[2]
c = imaplib.IMAP4("127.0.0.1", port)
c.login(user, "pw-%s-secret" % user)
out = []
for line in c.list()[1]:
    name = line.decode().rsplit(" ", 1)[1]
    if "\\Noselect" in line.decode():
        continue
    c.select(name, readonly=True)
    typ, data = c.uid("FETCH", "1:*", "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
    for d in data:
        if isinstance(d, tuple):
            mid = re.search(rb"<[^>]*>", d[1])
            if mid: out.append(mid.group().decode())
c.logout()
print("\n".join(sorted(out)))
EOF
}
run() { # NAME CODE DSTUSER STATE [options]
	local name=$1 code=$2 u=$3 st=$4
	shift 4
	expect_exit "$name" "$code" mf migrate "imap://src@127.0.0.1:$A_IMAP_PORT?starttls=no" \
		"imap://$u@127.0.0.1:$B_IMAP_PORT?starttls=no" --src-password-file "$A_DIR/pw/src" \
		--dst-password-file "$B_DIR/pw/$u" --state "$T_TMP/$st" --json --no-progress "$@"
}
same() { # NAME EXPECTED_FILE ACTUAL_FILE
	if cmp -s "$2" "$3"; then
		ok "$1 ($(wc -l <"$3") messages)"
	else
		not_ok "$1" "expected $(wc -l <"$2"), got $(wc -l <"$3") (dups $(uniq -d "$3" | wc -l)): $(diff "$2" "$3" | head -n 4 | tr '\n' ' ')"
	fi
}
copied() { json_field "$T_TMP/last.out" messages_copied; }
total=$(expect | wc -l)

# 1. --since: exactly the newer ones; the rest counted as skipped (filtered)
run since 0 d1 s1 --since 2024-01-01
expect since 2024-01-01 >"$T_TMP/e1"
ids "$B_IMAP_PORT" d1 >"$T_TMP/a1"
same since-exact "$T_TMP/e1" "$T_TMP/a1"
n1=$(wc -l <"$T_TMP/e1")
[ "$(copied)" = "$n1" ] && [ "$(json_field "$T_TMP/last.out" messages_filtered)" = $((total - n1)) ] &&
	[ "$(json_field "$T_TMP/last.out" messages_skipped)" = $((total - n1)) ] &&
	[ "$(json_field "$T_TMP/last.out" messages_failed)" = 0 ] && ok "since-counts (copied $n1, filtered $((total - n1)))" ||
	not_ok since-counts "$(tail -n 1 "$T_TMP/last.out")"
grep -Eq "[1-9][0-9]* mailboxes in shared or other users' namespaces skipped" "$T_TMP/last.err" &&
	! grep -q 'Public' "$T_TMP/a1" && ok shared-skipped-by-default ||
	not_ok shared-skipped-by-default "$(grep -i shared "$T_TMP/last.err" | head -n 2)"

# 1b. a dry run counts what the filter would copy, from the search alone
run since-dry-run 0 d5 s8 --dry-run --since 2024-01-01
dn=$(grep -o 'dry-run: mailbox "[^"]*": [0-9]* new messages' "$T_TMP/last.err" | awk '{ s += $(NF-2) } END { print s + 0 }')
[ "$dn" = "$n1" ] && ok "since-dry-run-count ($dn)" || not_ok since-dry-run-count "dry run says $dn, want $n1"

# 2. the same filter again: nothing
run since-rerun 0 d1 s1 --since 2024-01-01
[ "$(copied)" = 0 ] && ok since-rerun-copies-0 || not_ok since-rerun-copies-0 "copied $(copied)"

# 3. the window widens: exactly the newly included, nothing twice
run since-wider 0 d1 s1 --since 2023-06-01
expect since 2023-06-01 >"$T_TMP/e2"
ids "$B_IMAP_PORT" d1 >"$T_TMP/a2"
same since-wider-exact "$T_TMP/e2" "$T_TMP/a2"
n2=$(wc -l <"$T_TMP/e2")
[ "$(copied)" = $((n2 - n1)) ] && ok "since-wider-copies-new-only ($((n2 - n1)))" ||
	not_ok since-wider-copies-new-only "copied $(copied), want $((n2 - n1))"
run since-wider-rerun 0 d1 s1 --since 2023-06-01
[ "$(copied)" = 0 ] && ok since-wider-rerun-copies-0 || not_ok since-wider-rerun-copies-0 "copied $(copied)"

# 4. the filter removed: the rest, then nothing
run unfiltered 0 d1 s1
expect >"$T_TMP/e3"
ids "$B_IMAP_PORT" d1 >"$T_TMP/a3"
same unfiltered-exact "$T_TMP/e3" "$T_TMP/a3"
[ "$(copied)" = $((total - n2)) ] && ok "unfiltered-copies-rest ($((total - n2)))" ||
	not_ok unfiltered-copies-rest "copied $(copied), want $((total - n2))"
run unfiltered-rerun 0 d1 s1
[ "$(copied)" = 0 ] && ok unfiltered-rerun-copies-0 || not_ok unfiltered-rerun-copies-0 "copied $(copied)"

# 5. a window by date on both ends and by size; then --search by sender
run window 0 d2 s2 --since 1-Mar-2023 --before 2024-03-01 --larger 10k --smaller 30000
expect since 2023-03-01 before 2024-03-01 larger 10240 smaller 30000 >"$T_TMP/e4"
ids "$B_IMAP_PORT" d2 >"$T_TMP/a4"
same window-date-size-exact "$T_TMP/e4" "$T_TMP/a4"
run search 0 d3 s3 --search 'FROM "alice" NOT FROM carol'
expect from alice >"$T_TMP/e5"
ids "$B_IMAP_PORT" d3 >"$T_TMP/a5"
same search-exact "$T_TMP/e5" "$T_TMP/a5"
run search-rerun 0 d3 s3 --search 'from alice not from "carol"'
[ "$(copied)" = 0 ] && ok search-same-canonical-rerun-copies-0 || not_ok search-same-canonical-rerun-copies-0 "copied $(copied)"
run search-widened 0 d3 s3 --search 'OR FROM alice FROM bob'
python3 -c 'import sys; a=set(open(sys.argv[1]).read().split()); b=set(open(sys.argv[2]).read().split()); print("\n".join(sorted(a|b)))' \
	<(expect from alice) <(expect from bob) >"$T_TMP/e6"
ids "$B_IMAP_PORT" d3 >"$T_TMP/a6"
same search-widened-exact "$T_TMP/e6" "$T_TMP/a6"

# 5b. a server without ESEARCH (plain SEARCH, the count asked first): the
# same sets, and the same re-run rule
eruns() { # NAME [options]
	local name=$1
	shift
	expect_exit "$name" 0 mf migrate "imap://src@127.0.0.1:$E_IMAP_PORT?starttls=no" \
		"imap://d6@127.0.0.1:$B_IMAP_PORT?starttls=no" --src-password-file "$E_DIR/pw/src" \
		--dst-password-file "$B_DIR/pw/d6" --state "$T_TMP/s7" --json --no-progress "$@"
}
imap_session "$E_IMAP_PORT" <<<$'a LOGIN src pw-src-secret\nb CAPABILITY' | grep -q ESEARCH &&
	not_ok no-esearch-server "ESEARCH still offered" || ok no-esearch-server
eruns plain-search-since --since 2024-01-01
ids "$B_IMAP_PORT" d6 >"$T_TMP/a10"
same plain-search-since-exact "$T_TMP/e1" "$T_TMP/a10"
[ "$(json_field "$T_TMP/last.out" messages_filtered)" = $((total - n1)) ] && ok plain-search-filtered-count ||
	not_ok plain-search-filtered-count "$(tail -n 1 "$T_TMP/last.out")"
eruns plain-search-wider --since 2023-06-01 --larger 5000
expect since 2023-06-01 larger 5000 >"$T_TMP/e11"
sort -u "$T_TMP/e1" "$T_TMP/e11" >"$T_TMP/e12"
ids "$B_IMAP_PORT" d6 >"$T_TMP/a12"
same plain-search-changed-filter-exact "$T_TMP/e12" "$T_TMP/a12"

# 6. hostile --search: exit 2, a clear message, nothing copied
before=$(ids "$B_IMAP_PORT" d3 | wc -l)
big=$(head -c 10240 /dev/zero | tr '\0' 'A')
for h in $'FROM x\r\nA1 DELETE INBOX' 'FROM {5}' '(FROM x' "$big"; do
	case $h in
	*$'\r'*) want='CR or LF' nm=crlf ;;
	*'{5}'*) want='literals' nm=literal ;;
	'(FROM x') want='unbalanced' nm=unbalanced ;;
	*) want='at most 1024' nm=10kb ;;
	esac
	run "hostile-search-$nm-exit-2" 2 d3 s3 --search "$h"
	grep -q -- "--search: .*$want" "$T_TMP/last.err" && [ "$(wc -l <"$T_TMP/last.err")" -le 2 ] &&
		ok "hostile-search-$nm-message" || not_ok "hostile-search-$nm-message" "$(head -c 300 "$T_TMP/last.err")"
done
[ "$(ids "$B_IMAP_PORT" d3 | wc -l)" = "$before" ] && ok hostile-search-copied-nothing ||
	not_ok hostile-search-copied-nothing "destination changed"
expect_exit pop3-filter-refused 2 mf migrate "pop3://src@127.0.0.1:$A_POP3_PORT?starttls=no" \
	"imap://d3@127.0.0.1:$B_IMAP_PORT?starttls=no" --src-password-file "$A_DIR/pw/src" \
	--dst-password-file "$B_DIR/pw/d3" --state "$T_TMP/s9" --larger 1k

# 7. --include-shared: the public namespace's mailbox too
run include-shared 0 d4 s4 --include-shared
ids "$B_IMAP_PORT" d4 | grep -c '@sel.test' >"$T_TMP/n7"
imap_session "$B_IMAP_PORT" <<<$'a LOGIN d4 pw-d4-secret\nb STATUS "Public.proj" (MESSAGES)' >"$T_TMP/st7"
grep -q 'MESSAGES 5)' "$T_TMP/st7" && [ "$(cat "$T_TMP/n7")" = $((total + 5)) ] && ok include-shared-copies ||
	not_ok include-shared-copies "$(cat "$T_TMP/n7") messages; $(grep STATUS "$T_TMP/st7")"
! grep -q "namespaces skipped" "$T_TMP/last.err" && ok include-shared-no-notice || not_ok include-shared-no-notice "notice printed"

# 8. personal namespace "INBOX." on one side: Work -> INBOX.Work -> Work
expect_exit to-prefix 0 mf migrate "imap://src@127.0.0.1:$A_IMAP_PORT?starttls=no" \
	"imap://p@127.0.0.1:$C_IMAP_PORT?starttls=no" --src-password-file "$A_DIR/pw/src" \
	--dst-password-file "$C_DIR/pw/p" --state "$T_TMP/s5" --json --no-progress --folder Work --folder Sent
imap_session "$C_IMAP_PORT" <<<$'a LOGIN p pw-p-secret\nb STATUS "INBOX.Work" (MESSAGES)\nc STATUS "INBOX.Sent" (MESSAGES)\nd LIST "" "*"' >"$T_TMP/st8"
grep -Eq 'Work"? \(MESSAGES 10\)' "$T_TMP/st8" && grep -Eq 'Sent"? \(MESSAGES 3\)' "$T_TMP/st8" &&
	! grep -q 'INBOX.INBOX' "$T_TMP/st8" && ok prefix-Work-Sent-land-as-INBOX.Work-INBOX.Sent ||
	not_ok prefix-Work-Sent-land-as-INBOX.Work-INBOX.Sent "$(grep -E 'STATUS|LIST' "$T_TMP/st8" | tr '\n' ' ')"
expect_exit from-prefix 0 mf migrate "imap://p@127.0.0.1:$C_IMAP_PORT?starttls=no" \
	"imap://d5@127.0.0.1:$B_IMAP_PORT?starttls=no" --src-password-file "$C_DIR/pw/p" \
	--dst-password-file "$B_DIR/pw/d5" --state "$T_TMP/s6" --json --no-progress
imap_session "$B_IMAP_PORT" <<<$'a LOGIN d5 pw-d5-secret\nb STATUS "Work" (MESSAGES)\nc STATUS "Sent" (MESSAGES)\nd LIST "" "*"' >"$T_TMP/st9"
grep -Eq 'Work"? \(MESSAGES 10\)' "$T_TMP/st9" && grep -Eq 'Sent"? \(MESSAGES 3\)' "$T_TMP/st9" &&
	! grep -q '"INBOX\.' "$T_TMP/st9" && ok prefix-INBOX.Work-INBOX.Sent-land-as-Work-Sent ||
	not_ok prefix-INBOX.Work-INBOX.Sent-land-as-Work-Sent "$(grep -E 'STATUS|LIST' "$T_TMP/st9" | tr '\n' ' ')"

#!/usr/bin/env bash
# The archive store without a server (issue 19): a generated corpus is
# filled into an archive as a backup run would (tests/tools/archive_fill),
# listed (mailferry archive ls), exported to Maildir and to mboxrd and
# compared with the source byte for byte, with flags, keywords and dates;
# a second account with the same mail is stored once; bytes flipped in a
# pack and in the index are named by `mailferry verify` (exit 1) while the
# other messages still export; SIGKILLs during a fill leave an archive that
# verifies clean.
. "$(dirname "$0")/lib.sh"

FILL=$ROOT/build/asan/tools/archive_fill
SRC=$T_TMP/src/Maildir
A=$T_TMP/archive
"$BENCH_BIN/corpus" --out "$SRC" --profile demo --seed 7 >"$T_TMP/corpus.out" ||
	{ not_ok archive-corpus "corpus failed"; exit 1; }
total=$(find "$SRC" -path '*/cur/*' -o -path '*/new/*' | grep -c .)

# exact: every folder's multiset of (SHA-256 of the exact bytes, flags and
# keywords by name, mtime) is the same in both trees. Folders by name
# (INBOX = the root). Prints the first differences.
cat >"$T_TMP/exact.py" <<'EOF'
import hashlib, os, sys, collections
def folders(root):
    out = {'INBOX': root}
    for e in os.listdir(root):
        p = os.path.join(root, e)
        if e.startswith('.') and e not in ('.', '..') and os.path.isdir(p):
            out[e[1:]] = p
    return out
def keywords(folder):
    kw = {}
    try:
        for line in open(os.path.join(folder, 'dovecot-keywords'), encoding='utf-8', errors='replace'):
            n, _, name = line.rstrip('\n').partition(' ')
            kw[chr(ord('a') + int(n))] = name
    except FileNotFoundError:
        pass
    return kw
def messages(folder):
    kw = keywords(folder)
    c = collections.Counter()
    for sub in ('cur', 'new'):
        d = os.path.join(folder, sub)
        if not os.path.isdir(d):
            continue
        for f in os.listdir(d):
            p = os.path.join(d, f)
            info = f.split(':2,', 1)[1] if ':2,' in f else ''
            flags = ''.join(sorted(ch for ch in info if ch.isupper()))
            kws = ' '.join(sorted(kw.get(ch, '?' + ch) for ch in info if ch.islower()))
            h = hashlib.sha256(open(p, 'rb').read()).hexdigest()
            c[(h, flags, kws, int(os.stat(p).st_mtime))] += 1
    return c
a, b = folders(sys.argv[1]), folders(sys.argv[2])
diffs = 0
for name in sorted(set(a) | set(b)):
    if name not in a or name not in b:
        print('folder %r only on one side' % name); diffs += 1; continue
    ma, mb = messages(a[name]), messages(b[name])
    for k in (ma - mb):
        print('%s: missing or different in export: %s' % (name, k)); diffs += 1
    for k in (mb - ma):
        print('%s: extra in export: %s' % (name, k)); diffs += 1
print('exact: %d folders, %d differences' % (len(a), diffs))
sys.exit(1 if diffs else 0)
EOF

# mboxrd: every source message (any folder) comes back from the mbox
# exactly, apart from the newline mbox must add after a message without one.
cat >"$T_TMP/mbox.py" <<'EOF'
import hashlib, os, sys, collections, re
src, mbox = sys.argv[1], sys.argv[2]
want = collections.Counter()
for dp, dn, fn in os.walk(src):
    if os.path.basename(dp) in ('cur', 'new'):
        for f in fn:
            b = open(os.path.join(dp, f), 'rb').read()
            if not b.endswith(b'\n'):
                b += b'\n'
            want[hashlib.sha256(b).hexdigest()] += 1
data = open(mbox, 'rb').read()
got = collections.Counter()
msgs, cur, prev_blank = [], None, True
for line in data.splitlines(keepends=True):
    if line.startswith(b'From ') and prev_blank:
        if cur is not None:
            msgs.append(cur)
        cur = []
        prev_blank = False
        continue
    cur.append(line)
    prev_blank = line == b'\n'
if cur is not None:
    msgs.append(cur)
for m in msgs:
    assert m and m[-1] == b'\n', 'no separator line'
    m = m[:-1]
    body = b''.join(re.sub(rb'^>(>*From )', rb'\1', l) for l in m)
    got[hashlib.sha256(body).hexdigest()] += 1
diff = (want - got) + (got - want)
print('mbox: %d messages, %d differences' % (sum(got.values()), sum(diff.values())))
sys.exit(1 if diff else 0)
EOF

# --- fill, list ---
expect_exit archive-fill 0 "$FILL" "$A" "$SRC" --account alice --time 1700000000
grep -q "messages $total " "$T_TMP/last.out" && ok "archive-fill-count ($total messages)" ||
	not_ok archive-fill-count "$(cat "$T_TMP/last.out")"
expect_exit archive-ls 0 mf archive ls "$A"
cp "$T_TMP/last.out" "$T_TMP/ls1"
grep -q "^run=1 .*account=\"alice\" state=complete" "$T_TMP/ls1" &&
	grep -q "^  total messages=$total " "$T_TMP/ls1" && ok archive-ls-lists-run ||
	not_ok archive-ls-lists-run "$(head -n 3 "$T_TMP/ls1")"
ratio=$(sed -n 's/^archive .*ratio=\([0-9.]*\).*/\1/p' "$T_TMP/ls1")
echo "# stored/raw on the demo corpus (attachments included): $ratio" >&2

cp -a "$A" "$T_TMP/a-idx" # alice only, for the index damage below

# --- the same mail as a second account: stored once ---
stored1=$(sed -n 's/^archive .*stored_bytes=\([0-9]*\).*/\1/p' "$T_TMP/ls1")
expect_exit archive-fill-bob 0 "$FILL" "$A" "$SRC" --account bob --time 1700000100
grep -q "stored 0 duplicates $total " "$T_TMP/last.out" && ok archive-dedupe-accounts ||
	not_ok archive-dedupe-accounts "$(cat "$T_TMP/last.out")"
mf archive ls "$A" >"$T_TMP/ls2"
stored2=$(sed -n 's/^archive .*stored_bytes=\([0-9]*\).*/\1/p' "$T_TMP/ls2")
[ "$stored1" = "$stored2" ] && ok archive-dedupe-no-new-bytes ||
	not_ok archive-dedupe-no-new-bytes "$stored1 -> $stored2 bytes"

# --- export and compare ---
expect_exit archive-verify-clean 0 mf verify "$A"
expect_exit archive-export-maildir 0 mf export "$A" --maildir "$T_TMP/out" --run 1
python3 "$T_TMP/exact.py" "$SRC" "$T_TMP/out" >"$T_TMP/exact.out" 2>&1 &&
	ok "archive-export-maildir-exact ($(tail -n 1 "$T_TMP/exact.out"))" ||
	not_ok archive-export-maildir-exact "$(head -n 3 "$T_TMP/exact.out" | tr '\n' ' ')"
"$BENCH_BIN/compare" "$SRC" "$T_TMP/out" >"$T_TMP/cmp.out" 2>&1 &&
	ok archive-export-compare-tool || not_ok archive-export-compare-tool "$(tail -n 1 "$T_TMP/cmp.out")"
expect_exit archive-export-mbox 0 mf export "$A" --mbox "$T_TMP/out.mbox"
python3 "$T_TMP/mbox.py" "$SRC" "$T_TMP/out.mbox" >"$T_TMP/mbox.out" 2>&1 &&
	ok "archive-export-mbox-exact ($(tail -n 1 "$T_TMP/mbox.out"))" ||
	not_ok archive-export-mbox-exact "$(tail -n 1 "$T_TMP/mbox.out")"
expect_exit archive-export-bad-run 2 mf export "$A" --maildir "$T_TMP/none" --run 99
expect_exit archive-export-usage 2 mf export "$A"
expect_exit archive-verify-missing 2 mf verify "$T_TMP/nothing-here"

# --- an incremental run: a new message, a flag change, an expunge; each
# run exports as it was ---
S2=$T_TMP/src2/Maildir
mkdir -p "$T_TMP/src2" && cp -a "$SRC" "$S2"
last=$(ls "$S2/.Sent/cur" | sort -t M -k 2 -n | tail -n 1)
rm "$S2/.Sent/cur/$last" # the highest UID of Sent: expunged
flagme=$(ls "$S2/cur" | grep ':2,S$' | head -n 1)
mv "$S2/cur/$flagme" "$S2/cur/${flagme%:2,S}:2,FS"
newf=$(ls "$S2/.Sent/cur" | head -n 1)
cp -p "$S2/.Sent/cur/$newf" "$S2/.Sent/cur/1700000000.M999999P1.corpus,S=1:2,RS"
expect_exit archive-fill-incremental 0 "$FILL" "$A" "$S2" --account alice --time 1700000200
grep -q "stored 0 duplicates $total " "$T_TMP/last.out" && ok archive-incremental-stores-nothing-new ||
	not_ok archive-incremental-stores-nothing-new "$(cat "$T_TMP/last.out")"
expect_exit archive-export-run3 0 mf export "$A" --maildir "$T_TMP/out-r3" --run 3
python3 "$T_TMP/exact.py" "$S2" "$T_TMP/out-r3" >"$T_TMP/exact-r3.out" 2>&1 && ok archive-as-of-run3-exact ||
	not_ok archive-as-of-run3-exact "$(head -n 2 "$T_TMP/exact-r3.out" | tr '\n' ' ')"
expect_exit archive-export-run1-again 0 mf export "$A" --maildir "$T_TMP/out-r1" --run 1
python3 "$T_TMP/exact.py" "$SRC" "$T_TMP/out-r1" >"$T_TMP/exact-r1.out" 2>&1 && ok archive-as-of-run1-exact ||
	not_ok archive-as-of-run1-exact "$(head -n 2 "$T_TMP/exact-r1.out" | tr '\n' ' ')"

# --- a flipped byte in a pack: named by verify, the rest still exports ---
cp -a "$A" "$T_TMP/a-pack"
pack=$(ls "$T_TMP/a-pack/packs"/pack-*.mfp | head -n 1)
size=$(stat -c %s "$pack")
python3 - "$pack" $((size / 2)) <<'EOF'
import sys
p, off = sys.argv[1], int(sys.argv[2])
with open(p, 'r+b') as f:
    f.seek(off); b = f.read(1); f.seek(off); f.write(bytes([b[0] ^ 0x5a]))
EOF
expect_exit archive-verify-pack-damage 1 mf verify "$T_TMP/a-pack"
grep '^problem ' "$T_TMP/last.out" | sed -n 's/.*run=\([0-9]*\) mailbox="\([^"]*\)" uid=\([0-9]*\).*/\1 \2 \3/p' |
	sort -u >"$T_TMP/named"
n_named=$(grep -c . "$T_TMP/named")
[ "$n_named" -gt 0 ] && ! grep -q ' 0$' "$T_TMP/named" && ok "archive-verify-names-messages ($n_named)" ||
	not_ok archive-verify-names-messages "$(head -n 2 "$T_TMP/last.out")"
expect_exit archive-export-after-damage 1 mf export "$T_TMP/a-pack" --maildir "$T_TMP/out2" --run 1
grep '^not-exported ' "$T_TMP/last.out" | sed -n 's/.*run=\([0-9]*\) mailbox="\([^"]*\)" uid=\([0-9]*\).*/\1 \2 \3/p' |
	sort -u >"$T_TMP/skipped"
exported=$(find "$T_TMP/out2" -path '*/cur/*' | grep -c .)
# run 1's versions: those verify named for run 1 are exactly what export skipped
grep '^1 ' "$T_TMP/named" >"$T_TMP/named1"
cmp -s "$T_TMP/named1" "$T_TMP/skipped" && [ "$exported" = $((total - $(grep -c . "$T_TMP/skipped"))) ] &&
	ok "archive-export-others-intact ($exported exported)" ||
	not_ok archive-export-others-intact "exported $exported of $total; named $(grep -c . "$T_TMP/named1"), skipped $(grep -c . "$T_TMP/skipped")"

# --- a flipped byte in the index: the message that record names is named ---
# a Sent message whose content is nowhere else: its hash is its object's
# key and a field of its version record
python3 - "$T_TMP/a-idx/index/data.mdb" "$SRC" <<'EOF2' || not_ok archive-index-flip "no victim"
import sys, os, hashlib, collections
mdb, src = sys.argv[1], sys.argv[2]
count, sent = collections.Counter(), []
for dp, dn, fn in os.walk(src):
    if os.path.basename(dp) in ('cur', 'new'):
        for f in fn:
            h = hashlib.sha256(open(os.path.join(dp, f), 'rb').read()).digest()
            count[h] += 1
            if dp.endswith('/.Sent/cur'):
                sent.append(h)
h = next(h for h in sorted(sent) if count[h] == 1)
data = bytearray(open(mdb, 'rb').read())
# every copy: LMDB keeps old versions of pages in free pages, and only the
# live ones matter
i, n = data.find(h), 0
while i >= 0:
    data[i + 7] ^= 0x01
    n += 1
    i = data.find(h, i + 32)
assert n, 'hash not in the index'
open(mdb, 'wb').write(data)
EOF2
expect_exit archive-verify-index-damage 1 mf verify "$T_TMP/a-idx"
grep -q "^problem run=1 mailbox=\"Sent\" uid=[1-9]" "$T_TMP/last.out" &&
	ok archive-verify-names-index-victim ||
	not_ok archive-verify-names-index-victim "$(head -n 2 "$T_TMP/last.out")"
expect_exit archive-export-after-index-damage 1 mf export "$T_TMP/a-idx" --maildir "$T_TMP/out3" --run 1
[ "$(find "$T_TMP/out3" -path '*/cur/*' | grep -c .)" = $((total - 1)) ] && ok archive-index-damage-others-export ||
	not_ok archive-index-damage-others-export "$(tail -n 1 "$T_TMP/last.err")"

# --- SIGKILL during fills, then verify clean and a complete fill ---
K=$T_TMP/killed
for i in 1 2 3 4; do
	"$FILL" "$K" "$SRC" --account carol >/dev/null 2>&1 &
	pid=$!
	sleep "0.$((RANDOM % 9 + 1))"
	kill -KILL "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
done
expect_exit archive-kill-verify-clean 0 mf verify "$K"
expect_exit archive-kill-refill 0 "$FILL" "$K" "$SRC" --account carol
expect_exit archive-kill-export 0 mf export "$K" --maildir "$T_TMP/out4"
python3 "$T_TMP/exact.py" "$SRC" "$T_TMP/out4" >"$T_TMP/exact4.out" 2>&1 && ok archive-kill-export-exact ||
	not_ok archive-kill-export-exact "$(head -n 2 "$T_TMP/exact4.out" | tr '\n' ' ')"
expect_exit archive-kill-verify-final 0 mf verify "$K"

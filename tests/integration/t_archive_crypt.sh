#!/usr/bin/env bash
# Encryption at rest (issue 19 item 2) against a private Dovecot: `mailferry
# backup --encrypt` of small messy messages plus a known message (in INBOX and in a
# second folder) and a 700 KiB one; export exact; no plaintext of the
# known body, subject, folder name or account in any archive file; a
# missing and a wrong passphrase exit 2 with one line; dedupe across the
# two folders; the size overhead against a plain backup of the same
# account; a flipped byte in the big message's frame: verify names it as
# tampered (exit 1) and export of the others still works.
. "$(dirname "$0")/lib.sh"

dv_start A --users "src" || { not_ok dovecot "start failed"; exit 1; }
SRC_MD=$A_DIR/mail/src/Maildir
# ~40 small messages (under one 256 KiB frame together, so the big
# message's frames hold nothing else): long lines, a bare CR, 8-bit
# headers, keywords
python3 - "$SRC_MD" <<'EOF'
import os, sys, random
md = sys.argv[1]
random.seed(5)
for f in ('', '.Arbeit', '.Listen'):
    for s in ('cur', 'new', 'tmp'):
        os.makedirs(os.path.join(md, f, s), exist_ok=True)
for i in range(40):
    f = ('', '.Arbeit', '.Listen')[i % 3]
    body = ''.join(random.choice('abcdefgh ijklmnop') for _ in range(random.randint(200, 3000)))
    lines = [body[k:k + 70] for k in range(0, len(body), 70)]
    if i == 7:
        lines.append('x' * 1500)
    msg = ('From: Sender %d <s%d@example.org>\r\nTo: r@example.org\r\n'
           'Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= %d \u00e4\r\nMessage-ID: <m%d@example.org>\r\n\r\n'
           % (i % 5, i % 5, i, i)) + '\r\n'.join(lines) + ('\rbare CR\r\n' if i == 9 else '\r\n')
    flags = ('S', 'FS', 'RS', '')[i % 4]
    p = os.path.join(md, f, 'cur', '%d.M%dP1.mfenc:2,%s' % (1690000000 + i * 3600, i + 10, flags))
    open(p, 'wb').write(msg.encode('utf-8'))
EOF
# the known messages, written into the Maildir before Dovecot indexes it
KNOWN_SUBJ="Zanzibar-Quartalszahlen-$$"
KNOWN_BODY="PLAINTEXT-MARKER-BODY-$$ the treasure is under the third palm"
FOLDER="Geheimprojekt-Okapi"
mkdir -p "$SRC_MD/.$FOLDER/cur" "$SRC_MD/.$FOLDER/new" "$SRC_MD/.$FOLDER/tmp" \
	"$SRC_MD/.Grosse-Anlage/cur" "$SRC_MD/.Grosse-Anlage/new" "$SRC_MD/.Grosse-Anlage/tmp"
known=$(printf 'From: Agent <agent@example.org>\r\nTo: hq@example.org\r\nSubject: %s\r\nMessage-ID: <known-%s@example.org>\r\n\r\n%s\r\n' \
	"$KNOWN_SUBJ" "$$" "$KNOWN_BODY")
printf '%s' "$known" >"$SRC_MD/cur/1700000001.M1P1.mfenc:2,S"
printf '%s' "$known" >"$SRC_MD/.$FOLDER/cur/1700000001.M2P1.mfenc:2,FS"
{
	printf 'From: big@example.org\r\nTo: hq@example.org\r\nSubject: big attachment\r\n\r\n'
	head -c 540000 /dev/urandom | base64 -w 76 | sed 's/$/\r/'
} >"$SRC_MD/.Grosse-Anlage/cur/1700000002.M3P1.mfenc:2,S"
"$ROOT/scripts/dovecot.sh" fixperms "$A_DIR" >/dev/null || not_ok fixperms "failed"
total=$(find "$SRC_MD" -path '*/cur/*' -o -path '*/new/*' | grep -c .)

PW=$A_DIR/pw
SRC="imap://src@127.0.0.1:$A_IMAP_PORT"
AR=$T_TMP/archive
PL=$T_TMP/plain
PF=$T_TMP/passphrase
printf 'a passphrase with spaces and ümlauts\n' >"$PF"
chmod 600 "$PF"
printf 'not the passphrase\n' >"$T_TMP/wrong"
chmod 600 "$T_TMP/wrong"
COMMON=(--src-password-file "$PW/src" --ca-file "$A_CA_FILE" --json --no-progress)
field() { sed -n "s/.*\"event\":\"archive\".*\"$2\":\([0-9a-z]*\).*/\1/p" "$1"; }

# 1. the encrypted backup, and a plain one of the same account to compare
# (one connection each: the messages reach the packs in the same order, so
# the two compress alike and only encryption's own bytes differ; with
# several, the order and so the compressed size varies by some bytes)
expect_exit crypt-backup 0 mf backup "$SRC" "$AR" "${COMMON[@]}" --state "$T_TMP/st1" \
	--encrypt --passphrase-file "$PF" --connections 1
cp "$T_TMP/last.out" "$T_TMP/enc.json"
n=$(json_field "$T_TMP/enc.json" messages_copied)
[ "$n" = "$total" ] && [ "$(field "$T_TMP/enc.json" encrypted)" = true ] &&
	ok "crypt-backup-count ($n of $total, encrypted)" ||
	not_ok crypt-backup-count "copied $n of $total: $(grep '"archive"' "$T_TMP/enc.json")"
expect_exit plain-backup 0 mf backup "$SRC" "$PL" "${COMMON[@]}" --state "$T_TMP/st2" --connections 1
cp "$T_TMP/last.out" "$T_TMP/plain.json"

# 2. dedupe across the two folders: one object fewer than messages, as plain
eo=$(field "$T_TMP/enc.json" objects); po=$(field "$T_TMP/plain.json" objects)
[ "$eo" = $((total - 1)) ] && [ "$eo" = "$po" ] && ok "crypt-dedupe ($eo objects for $total messages)" ||
	not_ok crypt-dedupe "encrypted $eo, plain $po objects for $total messages"
es=$(field "$T_TMP/enc.json" stored_bytes); ps=$(field "$T_TMP/plain.json" stored_bytes)
if [ -n "$es" ] && [ -n "$ps" ] && [ "$ps" -gt 0 ]; then
	echo "# size: encrypted $es bytes, plain $ps bytes in packs; overhead $((es - ps)) bytes" \
		"($(python3 -c "print('%.2f%%' % (100.0 * ($es - $ps) / $ps))"))" \
		"index $(du -b "$AR/index/data.mdb" | cut -f1) vs $(du -b "$PL/index/data.mdb" | cut -f1)" >&2
	# small: under 10 % + 4 KiB more (per frame a nonce and a tag); not
	# "more than plain" (packs cut at other points compress a little
	# differently, by some tens of bytes either way)
	[ "$es" -gt $((ps - ps / 100)) ] && [ "$es" -lt $((ps + ps / 10 + 4096)) ] && ok crypt-overhead-small ||
		not_ok crypt-overhead-small "encrypted $es vs plain $ps bytes"
else
	not_ok crypt-overhead-small "no sizes: '$es' '$ps'"
fi

# 3. verify, ls, export exact (the passphrase from the environment once)
expect_exit crypt-verify 0 mf verify "$AR" --passphrase-file "$PF"
expect_exit crypt-ls 0 env MAILFERRY_ARCHIVE_PASSPHRASE_FILE="$PF" "$MF" archive ls "$AR"
grep -q "mailbox=\"$FOLDER\"" "$T_TMP/last.out" && grep -q "^  total messages=$total " "$T_TMP/last.out" &&
	ok crypt-ls-lists || not_ok crypt-ls-lists "$(head -n 4 "$T_TMP/last.out" | tr '\n' '|')"
expect_exit crypt-export 0 mf export "$AR" --maildir "$T_TMP/out" --passphrase-file "$PF"
check crypt-export-exact "$BENCH_BIN/compare" "$SRC_MD" "$T_TMP/out"

# 4. nothing readable in the archive's files (the plain archive has them:
#    the grep itself can find what it looks for)
grep -rqaF -- "$KNOWN_BODY" "$SRC_MD" && grep -rqaF -- "$FOLDER" "$PL" && grep -rqaF -- "src@127.0.0.1" "$PL" &&
	ok crypt-grep-finds-in-plain || not_ok crypt-grep-finds-in-plain "the grep does not find what it looks for"
for what in "$KNOWN_BODY" "$KNOWN_SUBJ" "$FOLDER" "src@127.0.0.1" "big attachment"; do
	if grep -rlaF -- "$what" "$AR" >"$T_TMP/found"; then
		not_ok "crypt-no-plaintext-${what:0:12}" "found in $(head -n 1 "$T_TMP/found")"
	else
		ok "crypt-no-plaintext-${what:0:12}"
	fi
done

# 5. no passphrase, a wrong one: exit 2, one line, no crash, nothing out
for kind in none wrong; do
	case $kind in
	none) args=() ;;
	wrong) args=(--passphrase-file "$T_TMP/wrong") ;;
	esac
	for cmd in verify ls export backup; do
		case $cmd in
		verify) c=(verify "$AR") ;;
		ls) c=(archive ls "$AR") ;;
		export) c=(export "$AR" --maildir "$T_TMP/out-$kind") ;;
		backup) c=(backup "$SRC" "$AR" "${COMMON[@]}" --state "$T_TMP/st1") ;;
		esac
		env -u MAILFERRY_ARCHIVE_PASSPHRASE_FILE "$MF" "${c[@]}" "${args[@]}" \
			>"$T_TMP/p.out" 2>"$T_TMP/p.err"
		rc=$?
		want="is encrypted: give its passphrase"
		[ $kind = wrong ] && want="wrong passphrase"
		lines=$(grep -c . "$T_TMP/p.err")
		if [ $rc = 2 ] && [ "$lines" = 1 ] && grep -q "$want" "$T_TMP/p.err" &&
			! grep -q '"event":"archive"' "$T_TMP/p.out"; then
			ok "crypt-$kind-passphrase-$cmd"
		else
			not_ok "crypt-$kind-passphrase-$cmd" "exit $rc, $lines lines: $(head -n 2 "$T_TMP/p.err" | tr '\n' '|')"
		fi
	done
done
[ ! -e "$T_TMP/out-none" ] && [ ! -e "$T_TMP/out-wrong" ] && ok crypt-refused-exports-wrote-nothing ||
	not_ok crypt-refused-exports-wrote-nothing "an export directory was created"
# --encrypt on an existing plain archive is refused
expect_exit crypt-encrypt-plain-refused 2 mf backup "$SRC" "$PL" "${COMMON[@]}" --state "$T_TMP/st2" \
	--encrypt --passphrase-file "$PF"

# 6. a re-run with the passphrase stores nothing
expect_exit crypt-rerun 0 mf backup "$SRC" "$AR" "${COMMON[@]}" --state "$T_TMP/st1" --passphrase-file "$PF"
c=$(json_field "$T_TMP/last.out" messages_copied)
[ "$c" = 0 ] && ok crypt-rerun-stores-nothing || not_ok crypt-rerun-stores-nothing "copied $c"

# 7. a flipped byte in the middle of the big message's first frame (the
#    first frame holding a full 256 KiB of raw bytes)
off=$(python3 - "$AR/packs/pack-00000001.mfp" <<'EOF'
import struct, sys
d = open(sys.argv[1], 'rb').read()
o = 16
while o + 32 <= len(d):
    magic, dic, comp, raw, pack, crc, flags, hcrc = struct.unpack('>8I', d[o:o + 32])
    if magic != 0x4d465a31:
        break
    if raw == 256 * 1024:
        print(o + 32 + comp // 2)
        break
    o += 32 + comp
EOF
)
if [ -z "$off" ]; then
	not_ok crypt-find-frame "no full frame in the pack"
else
	python3 -c "
import sys
f = open(sys.argv[1], 'r+b'); f.seek(int(sys.argv[2])); b = f.read(1); f.seek(int(sys.argv[2])); f.write(bytes([b[0] ^ 0x40]))
" "$AR/packs/pack-00000001.mfp" "$off"
	expect_exit crypt-tamper-verify 1 mf verify "$AR" --passphrase-file "$PF"
	cp "$T_TMP/last.out" "$T_TMP/tamper.out"
	np=$(grep -c '^problem ' "$T_TMP/tamper.out")
	grep -q '^problem .*mailbox="Grosse-Anlage" uid=1 .*tampered' "$T_TMP/tamper.out" && [ "$np" = 1 ] &&
		ok "crypt-tamper-named (Grosse-Anlage uid 1)" ||
		not_ok crypt-tamper-named "$np problems: $(head -n 2 "$T_TMP/tamper.out" | tr '\n' '|')"
	expect_exit crypt-tamper-export 1 mf export "$AR" --maildir "$T_TMP/out2" --passphrase-file "$PF"
	grep -q '^not-exported .*mailbox="Grosse-Anlage" uid=1 ' "$T_TMP/last.out" &&
		[ "$(grep -c '^not-exported ' "$T_TMP/last.out")" = 1 ] && ok crypt-tamper-export-names-one ||
		not_ok crypt-tamper-export-names-one "$(head -n 2 "$T_TMP/last.out" | tr '\n' '|')"
	# the others are exact: compare against the source without the big one
	cp -a "$SRC_MD" "$T_TMP/src-nobig"
	rm -f "$T_TMP/src-nobig/.Grosse-Anlage/cur/"*
	check crypt-tamper-others-exact "$BENCH_BIN/compare" "$T_TMP/src-nobig" "$T_TMP/out2"
fi

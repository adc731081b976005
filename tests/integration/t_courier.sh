#!/usr/bin/env bash
# The third real server: Courier-IMAP 5.0 (scripts/courier.sh), the one with
# none of the fast paths (no LITERAL+, MULTIAPPEND, CONDSTORE/QRESYNC,
# SPECIAL-USE) and every folder under the personal namespace "INBOX.".
# Checked: the server starts, STARTTLS and IMAPS work against our CA,
# Courier advertises what the tests are written for and checks passwords;
# INBOX Dovecot -> Courier exact (line ends folded as Courier rewrites
# them, keywords read from courierimapkeywords/:
# tests/integration/fold_maildir.py), without a stall per APPEND (issue 22
# item 3), re-run copies nothing; Courier as the
# source (its SELECT has no UIDNEXT); every folder Dovecot -> Courier under
# "INBOX." and back without it, exact, re-runs copy nothing (NAMESPACE,
# issue 22 item 2); --folder and --map with prefix-less names; Courier's
# INBOX.Gesendet into Dovecot's \Sent folder by name (issue 22 item 5),
# --map overriding that; a wrong password fails cleanly; folders written
# straight into Courier's Maildir (never opened read-write: Courier keeps
# no UID list for them and makes up a new UIDVALIDITY at each EXAMINE)
# copied to Dovecot, then no-change re-runs that read no message bodies;
# an 8-bit (UTF-8) source name lands on Courier in modified UTF-7 and
# comes back to Dovecot as the same name.
. "$(dirname "$0")/lib.sh"

dv_start A --users "src back fsrc fback gback gback2 rback kback kback2" || { not_ok dovecot "start failed"; exit 1; }
t0=$SECONDS
co_start C --users "dst fdst gsrc ndst rsrc kdst" || { not_ok courier-start "start failed"; exit 1; }
ok "courier-start ($((SECONDS - t0)) s)"
corpus A src tiny 21 || { not_ok corpus "generation failed"; exit 1; }
corpus A fsrc tiny 22 || { not_ok corpus "generation failed"; exit 1; }
# One --ca-file for both servers: the two private CAs in one bundle.
cat "$A_CA_FILE" "$C_CA_FILE" >"$T_TMP/ca.pem"

# 1. The server as the tests expect it: STARTTLS and IMAPS against our CA,
#    real password checks, Courier's capabilities and namespace.
caps() { # --starttls|--tls PORT
	imap_session "$1" --ca "$C_CA_FILE" "$2" <<<$'a LOGIN dst pw-dst-secret\nb CAPABILITY\nc NAMESPACE\nd LOGOUT'
}
for mode in starttls:$C_IMAP_PORT tls:$C_IMAPS_PORT; do
	if caps "--${mode%%:*}" "${mode#*:}" >"$T_TMP/caps.out" 2>&1 && grep -q '^a OK' "$T_TMP/caps.out"; then
		ok "courier-login-${mode%%:*}"
	else
		not_ok "courier-login-${mode%%:*}" "$(tail -n 1 "$T_TMP/caps.out")"
	fi
done
c=$(sed -n 's/^\* CAPABILITY //p' "$T_TMP/caps.out")
echo "# courier capabilities: $c"
bad=
for x in LITERAL+ MULTIAPPEND CONDSTORE QRESYNC SPECIAL-USE; do
	case " $c " in *" $x "*) bad="$bad $x" ;; esac
done
[ -n "$c" ] && [ -z "$bad" ] && ok courier-capabilities || not_ok courier-capabilities "advertises:$bad"
grep -q '^\* NAMESPACE (("INBOX\." "\."))' "$T_TMP/caps.out" && ok courier-namespace ||
	not_ok courier-namespace "$(grep '^\* NAMESPACE' "$T_TMP/caps.out")"
# Courier's quirks that the pending checks are about, pinned so that a
# change of the test bed shows: a folder outside "INBOX." is refused, and
# SELECT sends no UIDNEXT (STATUS does).
imap_session --tls --ca "$C_CA_FILE" "$C_IMAPS_PORT" >"$T_TMP/q.out" 2>&1 \
	<<<$'a LOGIN dst pw-dst-secret\nb CREATE Sent\nc CREATE INBOX.Sent\nd SELECT INBOX\ne STATUS INBOX (UIDNEXT)'
grep -q '^b NO' "$T_TMP/q.out" && grep -q '^c OK' "$T_TMP/q.out" && ok courier-inbox-prefix-only ||
	not_ok courier-inbox-prefix-only "$(grep -E '^[bc] ' "$T_TMP/q.out" | tr '\n' ' ')"
grep -q '^d OK' "$T_TMP/q.out" && ! grep -q 'UIDNEXT [0-9]*\]' "$T_TMP/q.out" &&
	grep -q '^\* STATUS .*UIDNEXT [0-9]' "$T_TMP/q.out" && ok courier-select-without-uidnext ||
	not_ok courier-select-without-uidnext "$(grep -iE 'uidnext|^d ' "$T_TMP/q.out" | tr '\n' ' ')"
imap_session --tls --ca "$C_CA_FILE" "$C_IMAPS_PORT" <<<'a LOGIN dst wrong-secret' >"$T_TMP/bad.out" 2>&1
grep -q '^a NO' "$T_TMP/bad.out" && ok courier-password-checked ||
	not_ok courier-password-checked "$(tail -n 1 "$T_TMP/bad.out")"

# 2. INBOX Dovecot -> Courier over STARTTLS: every message, exact with
#    Courier's line ends folded, flags, keywords and INTERNALDATE as they
#    were; a re-run copies nothing.
SRC="imap://src@127.0.0.1:$A_IMAP_PORT"
CO="imap://dst@127.0.0.1:$C_IMAP_PORT"
COMMON=(--ca-file "$T_TMP/ca.pem" --json --no-progress --folder INBOX)
TO_CO=(--src-password-file "$A_DIR/pw/src" --dst-password-file "$C_DIR/pw/dst" "${COMMON[@]}" --state "$T_TMP/st1")
SRC_MD=$A_MAIL_ROOT/src/Maildir CO_MD=$C_MAIL_ROOT/dst/Maildir
copied() { json_field "$T_TMP/last.out" messages_copied 2>/dev/null; }
exact() {
	local d
	d=$(mktemp -d "$T_TMP/fold.XXXXXX")
	python3 "$ROOT/tests/integration/fold_maildir.py" "$SRC_MD" "$d/src" --inbox-only &&
		python3 "$ROOT/tests/integration/fold_maildir.py" "$CO_MD" "$d/co" --inbox-only --courier &&
		"$BENCH_BIN/compare" "$d/src" "$d/co" >&2
}
n_src=$(find "$SRC_MD/cur" "$SRC_MD/new" -type f | grep -c .)
expect_exit to-courier 0 mf migrate "$SRC" "$CO" "${TO_CO[@]}"
c=$(copied)
[ "$c" = "$n_src" ] && ok "to-courier-count ($c messages)" || not_ok to-courier-count "copied ${c:-?} of $n_src"
# No stall per APPEND (issue 22 item 3): Courier answers each synchronizing
# literal's "+" in a second write after the previous APPEND's OK, and holds
# it (Nagle: no TCP_NODELAY there) until that OK is ACKed; a client that
# delays its ACK waits ~40 ms a message. The connection must ACK at once
# while it waits (TCP_QUICKACK): seen here in the system calls, not timed
# (the time per message is the bench's initial-courier row). Without TLS,
# one mailbox on one connection.
expect_exit to-courier-plain 0 env ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 strace -f -qq -e trace=setsockopt -o "$T_TMP/strace.txt" \
	"$MF" migrate "$SRC" "imap://ndst@127.0.0.1:$C_IMAP_PORT?starttls=no" \
	--src-password-file "$A_DIR/pw/src" --dst-password-file "$C_DIR/pw/ndst" "${COMMON[@]}" \
	--state "$T_TMP/st0" --connections 1
c=$(copied) q=$(grep -c 'TCP_QUICKACK, \[1\]' "$T_TMP/strace.txt")
[ "${c:-0}" -gt 0 ] && [ "$q" -ge "$c" ] && ok "to-courier-no-stall ($q quick ACKs for $c messages)" ||
	not_ok to-courier-no-stall "${q} TCP_QUICKACK for ${c:-?} messages (a delayed-ACK stall per APPEND?)"
check to-courier-exact exact
expect_exit to-courier-rerun 0 mf migrate "$SRC" "$CO" "${TO_CO[@]}"
c=$(copied)
[ "$c" = 0 ] && ok to-courier-rerun-noop || not_ok to-courier-rerun-noop "copied ${c:-?}"
check to-courier-rerun-exact exact

# 3. a wrong password fails as on Dovecot: exit 1, one line naming the
#    account, the password nowhere
echo wrong-pw-courier >"$T_TMP/bad.pw"
expect_exit courier-wrong-password 4 mf migrate "$SRC" "$CO" --src-password-file "$A_DIR/pw/src" \
	--dst-password-file "$T_TMP/bad.pw" "${COMMON[@]}" --state "$T_TMP/st3"
grep -q 'destination dst@127.0.0.1: login failed' "$T_TMP/last.err" && ok courier-wrong-password-message ||
	not_ok courier-wrong-password-message "$(head -n 1 "$T_TMP/last.err")"
grep -q 'wrong-pw-courier' "$T_TMP/last.err" "$T_TMP/last.out" &&
	not_ok courier-password-not-logged "the password appears in the output" || ok courier-password-not-logged

# 4. INBOX Courier -> Dovecot over IMAPS (Courier's SELECT has no UIDNEXT:
#    STATUS gives it), exact both ways round, re-run copies nothing
MAILDIR() { echo "$A_MAIL_ROOT/$1/Maildir"; }
round_trip() { # SRC_USER BACK_USER [--inbox-only]
	local d
	d=$(mktemp -d "$T_TMP/fold.XXXXXX")
	python3 "$ROOT/tests/integration/fold_maildir.py" "$(MAILDIR "$1")" "$d/src" ${3:-} &&
		python3 "$ROOT/tests/integration/fold_maildir.py" "$(MAILDIR "$2")" "$d/back" ${3:-} &&
		"$BENCH_BIN/compare" "$d/src" "$d/back" >&2
}
count() { find "$@" \( -path '*/cur/*' -o -path '*/new/*' \) -type f | grep -c .; }
PW() { echo --src-password-file "$1" --dst-password-file "$2"; }
ALL=(--ca-file "$T_TMP/ca.pem" --json --no-progress)
COS="imaps://dst@127.0.0.1:$C_IMAPS_PORT"
BACK="imaps://back@127.0.0.1:$A_IMAPS_PORT"
FROM=($(PW "$C_DIR/pw/dst" "$A_DIR/pw/back") "${COMMON[@]}" --state "$T_TMP/st2")
expect_exit inbox-from-courier 0 mf migrate "$COS" "$BACK" "${FROM[@]}"
c=$(copied)
[ "$c" = "$n_src" ] && ok "inbox-from-courier-count ($c)" || not_ok inbox-from-courier-count "copied ${c:-?} of $n_src"
check inbox-round-trip-exact round_trip src back --inbox-only
expect_exit inbox-from-courier-rerun 0 mf migrate "$COS" "$BACK" "${FROM[@]}"
[ "$(copied)" = 0 ] && ok inbox-from-courier-rerun-noop || not_ok inbox-from-courier-rerun-noop "copied $(copied)"

# 5. every folder: Dovecot's Sent, Lists/dev, Entwürfe land under "INBOX."
#    on Courier (its personal namespace, RFC 2342), and come back without
#    it; exact, re-runs copy nothing
FSRC="imap://fsrc@127.0.0.1:$A_IMAP_PORT"
FCO="imaps://fdst@127.0.0.1:$C_IMAPS_PORT"
FBACK="imap://fback@127.0.0.1:$A_IMAP_PORT"
TO=($(PW "$A_DIR/pw/fsrc" "$C_DIR/pw/fdst") "${ALL[@]}" --state "$T_TMP/st4")
FROM=($(PW "$C_DIR/pw/fdst" "$A_DIR/pw/fback") "${ALL[@]}" --state "$T_TMP/st5")
n_src=$(count "$(MAILDIR fsrc)")
expect_exit folders-to-courier 0 mf migrate "$FSRC" "$FCO" "${TO[@]}"
grep -q 'Invalid mailbox name' "$T_TMP/last.err" &&
	not_ok folders-to-courier-names "$(grep -m1 'Invalid mailbox name' "$T_TMP/last.err")"
imap_session --tls --ca "$C_CA_FILE" "$C_IMAPS_PORT" >"$T_TMP/flist.out" 2>&1 \
	<<<$'a LOGIN fdst pw-fdst-secret\nb LIST "" "*"'
for f in Sent Lists.dev 'Entw&APw-rfe'; do
	grep -q "\"INBOX\\.$f\"\$" "$T_TMP/flist.out" && ok "folders-to-courier-INBOX.$f" ||
		not_ok "folders-to-courier-INBOX.$f" "no INBOX.$f on Courier: $(grep '^\* LIST' "$T_TMP/flist.out" | tr '\n' ' ')"
done
n_co=$(count "$C_MAIL_ROOT/fdst/Maildir")
[ "$n_co" = "$n_src" ] && ok "folders-to-courier-count ($n_co)" || not_ok folders-to-courier-count "$n_co of $n_src on Courier"
expect_exit folders-to-courier-rerun 0 mf migrate "$FSRC" "$FCO" "${TO[@]}"
[ "$(copied)" = 0 ] && ok folders-to-courier-rerun-noop || not_ok folders-to-courier-rerun-noop "copied $(copied)"
expect_exit folders-from-courier 0 mf migrate "$FCO" "$FBACK" "${FROM[@]}"
[ -d "$(MAILDIR fback)/.INBOX" ] && not_ok folders-from-courier-names "folders landed under INBOX/ on Dovecot" ||
	ok folders-from-courier-names
check folders-round-trip-exact round_trip fsrc fback
expect_exit folders-from-courier-rerun 0 mf migrate "$FCO" "$FBACK" "${FROM[@]}"
[ "$(copied)" = 0 ] && ok folders-from-courier-rerun-noop || not_ok folders-from-courier-rerun-noop "copied $(copied)"

# 6. names people write are prefix-less: --folder 'Lists/*' picks Courier's
#    INBOX.Lists.dev; --map 'Lists/dev=Dev' puts it into INBOX.Dev on Courier
expect_exit folders-from-courier-folder 0 mf migrate "$FCO" "imap://gback2@127.0.0.1:$A_IMAP_PORT" \
	$(PW "$C_DIR/pw/fdst" "$A_DIR/pw/gback2") "${ALL[@]}" --state "$T_TMP/st6" --folder 'Lists/*'
c=$(copied) n=$(count "$(MAILDIR fsrc)/.Lists.dev")
[ "$c" = "$n" ] && [ "$(count "$(MAILDIR gback2)/.Lists.dev")" = "$n" ] &&
	ok "folders-from-courier-folder-count ($c)" || not_ok folders-from-courier-folder-count "copied ${c:-?} of $n"
expect_exit folders-to-courier-map 0 mf migrate "$FSRC" "$FCO" $(PW "$A_DIR/pw/fsrc" "$C_DIR/pw/fdst") "${ALL[@]}" --state "$T_TMP/st7" \
	--folder 'Lists/*' --map 'Lists/dev=Dev'
n_dev=$(count "$C_MAIL_ROOT/fdst/Maildir/.Dev")
[ "$n_dev" = "$n" ] && ok "folders-to-courier-map-INBOX.Dev ($n_dev)" ||
	not_ok folders-to-courier-map-INBOX.Dev "${n_dev:-0} of $n in INBOX.Dev on Courier"

# 7. Courier has no SPECIAL-USE: its INBOX.Gesendet goes into the
#    destination's \Sent folder ("Sent" on Dovecot) by its name; --map
#    wins over that
msg=$'From: a@example.org\r\nSubject: gesendet\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\nhallo\r\n'
imap_session --tls --ca "$C_CA_FILE" "$C_IMAPS_PORT" >"$T_TMP/g.out" 2>&1 \
	<<<"a LOGIN gsrc pw-gsrc-secret
b CREATE INBOX.Gesendet
c APPEND INBOX.Gesendet {${#msg}}
$msg"
imap_session "$A_IMAP_PORT" >>"$T_TMP/g.out" 2>&1 <<<$'a LOGIN gback pw-gback-secret\nb CREATE Sent'
GSRC="imaps://gsrc@127.0.0.1:$C_IMAPS_PORT"
G=($(PW "$C_DIR/pw/gsrc" "$A_DIR/pw/gback") "${ALL[@]}")
expect_exit special-by-name 0 mf migrate "$GSRC" "imap://gback@127.0.0.1:$A_IMAP_PORT" "${G[@]}" --state "$T_TMP/st8"
[ "$(count "$(MAILDIR gback)/.Sent")" = 1 ] && [ ! -d "$(MAILDIR gback)/.Gesendet" ] &&
	ok special-by-name-sent || not_ok special-by-name-sent "$(grep -c . "$T_TMP/g.out") lines set up; $(ls -a "$(MAILDIR gback)" | tr '\n' ' ')"
G=($(PW "$C_DIR/pw/gsrc" "$A_DIR/pw/gback2") "${ALL[@]}")
imap_session "$A_IMAP_PORT" >>"$T_TMP/g.out" 2>&1 <<<$'a LOGIN gback2 pw-gback2-secret\nb CREATE Sent'
expect_exit special-by-name-map 0 mf migrate "$GSRC" "imap://gback2@127.0.0.1:$A_IMAP_PORT" "${G[@]}" \
	--state "$T_TMP/st9" --map Gesendet=Gesendet --folder Gesendet
[ "$(count "$(MAILDIR gback2)/.Gesendet")" = 1 ] && [ "$(count "$(MAILDIR gback2)/.Sent")" = 0 ] &&
	ok special-by-name-map-gesendet || not_ok special-by-name-map-gesendet "$(ls -a "$(MAILDIR gback2)" | tr '\n' ' ')"

# 8. Courier as the source, its folders delivered straight into the Maildir
#    and never opened read-write (as mail delivered by maildrop is): Courier
#    then keeps no UID list (courierimapuiddb) and gives every EXAMINE a new
#    UIDVALIDITY, so each re-run used to find every message again by content
#    (all bodies read, each skipped as recorded). Copied once, then three
#    no-change re-runs: no BODY[] read from Courier, nothing copied.
"$BENCH_BIN/corpus" --out "$T_TMP/rgen" --profile tiny --seed 24 >/dev/null &&
	python3 - "$T_TMP/rgen" "$C_MAIL_ROOT/rsrc/Maildir" <<'PY' && "$ROOT/scripts/courier.sh" fixperms "$C_DIR" >/dev/null ||
import os, re, sys, shutil
src, md = sys.argv[1:3]
for d in [""] + sorted(x for x in os.listdir(src) if x.startswith(".")):
    s = os.path.join(src, d)
    if not os.path.isdir(os.path.join(s, "cur")):
        continue
    dst = os.path.join(md, ".Raw" + d)
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(dst, sub), exist_ok=True)
    open(os.path.join(dst, "maildirfolder"), "w").close()
    for sub in ("cur", "new"):
        for fn in os.listdir(os.path.join(s, sub)) if os.path.isdir(os.path.join(s, sub)) else []:
            shutil.copy2(os.path.join(s, sub, fn), os.path.join(dst, sub, re.sub(r"(:2,[A-Z]*)[a-z]+$", r"\1", fn)))
PY
	not_ok raw-courier-setup "could not write the Maildir"
n_raw=$(count "$C_MAIL_ROOT/rsrc/Maildir"/.Raw*)
RAW=($(PW "$C_DIR/pw/rsrc" "$A_DIR/pw/rback") "${ALL[@]}" --state "$T_TMP/st10")
RSRC="imaps://rsrc@127.0.0.1:$C_IMAPS_PORT" RBACK="imap://rback@127.0.0.1:$A_IMAP_PORT"
expect_exit raw-from-courier 0 mf migrate "$RSRC" "$RBACK" "${RAW[@]}"
c=$(copied)
[ "$n_raw" -gt 0 ] && [ "$c" = "$n_raw" ] && ok "raw-from-courier-count ($c)" || not_ok raw-from-courier-count "copied ${c:-?} of $n_raw"
for i in 1 2 3; do
	MAILFERRY_TRACE=1 expect_exit "raw-from-courier-rerun-$i" 0 mf migrate "$RSRC" "$RBACK" "${RAW[@]}"
	b=$(grep -c '^trace source .*<< \* [0-9]* FETCH .*BODY\[\]' "$T_TMP/last.err")
	c=$(copied) w=$(json_field "$T_TMP/last.out" wire_bytes_in 2>/dev/null)
	# (the trace shows the start of each read: BODY[] there at all means
	# bodies were read; the bytes say how many: ~2.5 KB without, 1.8 MB with)
	[ "$b" = 0 ] && [ "$c" = 0 ] && [ "${w:-999999}" -lt 20000 ] && ok "raw-from-courier-rerun-$i-no-bodies ($w bytes in)" ||
		not_ok "raw-from-courier-rerun-$i-no-bodies" "BODY[] in $b trace lines, ${c:-?} copied, ${w:-?} bytes in"
done

# 9. A mailbox name that must travel as a literal (8-bit, as a server with
#    UTF8=ACCEPT or a broken one lists it) to a server without LITERAL+: the
#    name's bytes wait for the server's "+" (RFC 3501 §7.5). Courier takes
#    early bytes silently, so a scripted server that refuses them: STATUS
#    and EXAMINE carry the name as synchronizing literals, the mailbox is
#    read (--dry-run: its count; then copied into Dovecot's "Buecher": Dovecot
#    wants modified UTF-7).
fake_log() { cat "$T_TMP"/fake_imap.*.out.err 2>/dev/null; }
fake_reset() { kill "$T_LAST_PID" 2>/dev/null; wait "$T_LAST_PID" 2>/dev/null; rm -f "$T_TMP"/fake_imap.*; }
fake_imap none --capabilities "IMAP4rev1 ID ENABLE NAMESPACE UIDPLUS" --strict-literals \
	--mailbox-8bit 'Bücher' --max-seconds 300 --linger 120
FK=(--src-password-file "$C_DIR/pw/rsrc" --dst-password-file "$A_DIR/pw/kback" "${ALL[@]}" --folder 'Bücher' --timeout 10)
expect_exit name-literal-dry-run 0 mf migrate "imap://any@127.0.0.1:$FAKE_PORT" "imap://kback@127.0.0.1:$A_IMAP_PORT" \
	"${FK[@]}" --state "$T_TMP/st11" --dry-run
sleep 0.3
grep -q 'dry-run: mailbox "Bücher": 3 new messages' "$T_TMP/last.out" "$T_TMP/last.err" &&
	ok name-literal-dry-run-count || not_ok name-literal-dry-run-count "$(grep -m1 'Bücher' "$T_TMP/last.out" "$T_TMP/last.err")"
fake_log | grep -q 'C: .*\(STATUS\|EXAMINE\) {literal}' && ok name-literal-sent-as-literal ||
	not_ok name-literal-sent-as-literal "no STATUS/EXAMINE with a literal name in the server's log"
fake_log | grep -q 'literal sent before continuation' &&
	not_ok name-literal-waits-for-continuation "$(fake_log | grep -m1 -B1 'literal sent before')" ||
	ok name-literal-waits-for-continuation
expect_exit name-literal-copy 0 mf migrate "imap://any@127.0.0.1:$FAKE_PORT" "imap://kback@127.0.0.1:$A_IMAP_PORT" \
	"${FK[@]}" --state "$T_TMP/st12" --map 'Bücher=Buecher'
[ "$(copied)" = 3 ] && ok name-literal-copy-count || not_ok name-literal-copy-count "copied $(copied) of 3"
fake_log | grep -q 'literal sent before continuation' &&
	not_ok name-literal-copy-waits "$(fake_log | grep -m1 -B1 'literal sent before')" || ok name-literal-copy-waits
# The same name into Courier (no LITERAL+): CREATE and each APPEND carry it
# in modified UTF-7 (RFC 3501 §5.1.3), "INBOX.B&APw-cher" (Courier names the
# directory ".Bücher"): Courier took the
# raw 8-bit name without UTF8=ACCEPT enabled and stored it mangled (each
# byte sign-extended: "B&,8P,vA-cher"). Then back from Courier into Dovecot
# as "Bücher" ("B&APw-cher" there too): the exact name both ways.
expect_exit name-literal-to-courier 0 mf migrate "imap://any@127.0.0.1:$FAKE_PORT" \
	"imaps://kdst@127.0.0.1:$C_IMAPS_PORT" --src-password-file "$C_DIR/pw/kdst" \
	--dst-password-file "$C_DIR/pw/kdst" "${ALL[@]}" --folder 'Bücher' --state "$T_TMP/st13"
n=$(count "$C_MAIL_ROOT/kdst/Maildir"/.B*)
[ "$(copied)" = 3 ] && [ "$n" = 3 ] && ok name-literal-to-courier-count ||
	not_ok name-literal-to-courier-count "copied $(copied), $n in Courier's folder"
imap_session --tls --ca "$C_CA_FILE" "$C_IMAPS_PORT" >"$T_TMP/klist.out" 2>&1 \
	<<<$'a LOGIN kdst pw-kdst-secret\nb LIST "" "*"'
grep -q '"INBOX\.B&APw-cher"' "$T_TMP/klist.out" && [ -d "$C_MAIL_ROOT/kdst/Maildir/.Bücher" ] &&
	ok name-utf7-to-courier || not_ok name-utf7-to-courier "$(grep '^\* LIST' "$T_TMP/klist.out" | tr '\n' ' '); $(ls -a "$C_MAIL_ROOT/kdst/Maildir" | tr '\n' ' ')"
expect_exit name-utf7-from-courier 0 mf migrate "imaps://kdst@127.0.0.1:$C_IMAPS_PORT" \
	"imap://kback2@127.0.0.1:$A_IMAP_PORT" $(PW "$C_DIR/pw/kdst" "$A_DIR/pw/kback2") "${ALL[@]}" \
	--state "$T_TMP/st14"
[ "$(count "$(MAILDIR kback2)/.B&APw-cher")" = 3 ] && ok name-utf7-from-courier-exact ||
	not_ok name-utf7-from-courier-exact "$(ls -a "$(MAILDIR kback2)" | tr '\n' ' ')"
fake_reset

#!/usr/bin/env bash
# Issue 15 defects 6 and 7: a damaged state (data.mdb empty, cut short,
# page headers overwritten, random bytes) is refused with one line and
# exit 2, never mapped (SIGBUS) nor taken for a new state (everything
# copied again); `mailferry state check DIR` says what is wrong;
# --state-reset starts over without copying anything twice. Planted
# symlinks and a state directory others may write to are refused; a
# password file others can read is warned about.
. "$(dirname "$0")/lib.sh"

dv_start D --users "src dst" || { not_ok damage-dovecot "start failed"; exit 1; }
corpus D src tiny 3 || { not_ok damage-corpus failed; exit 1; }
ST=$T_TMP/state
run() { # [options]
	mf migrate "imap://src@127.0.0.1:$D_IMAP_PORT?starttls=no" "imap://dst@127.0.0.1:$D_IMAP_PORT?starttls=no" \
		--src-password-file "$D_DIR/pw/src" --dst-password-file "$D_DIR/pw/dst" \
		--json --no-progress "$@"
}
exact() { "$BENCH_BIN/compare" "$D_DIR/mail/src/Maildir" "$D_DIR/mail/dst/Maildir" >"$T_TMP/cmp" 2>&1; }

expect_exit damage-first-run 0 run --state "$ST"
n=$(json_field "$T_TMP/last.out" messages_copied)
exact && ok "damage-first-run-exact ($n messages)" || not_ok damage-first-run-exact "$(tail -n 1 "$T_TMP/cmp")"
expect_exit state-check-good 0 mf state check "$ST"
grep -q "ok: .* $n messages" "$T_TMP/last.out" && ok state-check-good-says-ok ||
	not_ok state-check-good-says-ok "$(cat "$T_TMP/last.out" "$T_TMP/last.err")"
cp "$ST/data.mdb" "$T_TMP/good.mdb"
size=$(stat -c %s "$T_TMP/good.mdb")

# One damage after another: each is refused by migrate (exit 2, one line
# naming the state, nothing copied) and by state check.
damaged() { # NAME WANT (data.mdb is damaged already)
	local name=$1 want=$2
	expect_exit "damage-$name-refused" 2 run --state "$ST"
	if [ "$(grep -c . "$T_TMP/last.err")" = 1 ] && grep -q "state $ST: damaged: .*$want" "$T_TMP/last.err"; then
		ok "damage-$name-one-line"
	else
		not_ok "damage-$name-one-line" "$(head -c 300 "$T_TMP/last.err")"
	fi
	exact && ok "damage-$name-nothing-copied" || not_ok "damage-$name-nothing-copied" "$(tail -n 1 "$T_TMP/cmp")"
	expect_exit "damage-$name-state-check" 2 mf state check "$ST"
	grep -q "$want" "$T_TMP/last.err" || not_ok "damage-$name-state-check-says" "$(head -c 300 "$T_TMP/last.err")"
}
# The seal (store/state_check.h): a clean close leaves DIR/sealed, and the
# next open skips the page walk while data.mdb is as that close left it.
# Damage written in place, its size and mtime put back, still moves the
# ctime: walked, refused.
[ -s "$ST/sealed" ] && ok state-sealed || not_ok state-sealed "no $ST/sealed after a clean run"
python3 - "$ST/data.mdb" <<'PY'
import os, sys
p = sys.argv[1]
st = os.stat(p)
with open(p, 'r+b') as f:
    for off in range(2 * 4096, st.st_size, 4096):  # every page after the two metas
        f.seek(off)
        f.write(b'\xa5' * 16)
os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
PY
damaged in-place-same-size-mtime "page"
: >"$ST/data.mdb"
damaged empty "data.mdb exists but is empty (0 bytes)"
head -c 8192 "$T_TMP/good.mdb" >"$ST/data.mdb"
damaged 8k "data.mdb is truncated"
head -c 12288 "$T_TMP/good.mdb" >"$ST/data.mdb"
damaged 12k "data.mdb is truncated"
python3 - "$T_TMP/good.mdb" "$ST/data.mdb" <<'PY'
import sys
b = bytearray(open(sys.argv[1], 'rb').read())
for off in range(2 * 4096, len(b), 4096):  # every page after the two metas
    b[off:off + 16] = b'\xa5' * 16
open(sys.argv[2], 'wb').write(b)
PY
damaged page-headers "page"
python3 - "$T_TMP/good.mdb" "$ST/data.mdb" <<'PY'
import sys
b = bytearray(open(sys.argv[1], 'rb').read())
b[0:16] = b[4096:4096 + 16] = b'\x00' * 16  # both meta pages' headers
open(sys.argv[2], 'wb').write(b)
PY
damaged meta-headers "meta page 0 has a bad page header"
head -c "$size" /dev/urandom >"$ST/data.mdb"
damaged random "not an LMDB file"

# --state-reset: the damaged file is kept aside; what is on the destination
# is recognised by content, so nothing is copied twice.
expect_exit state-reset-run 0 run --state "$ST" --state-reset
c=$(json_field "$T_TMP/last.out" messages_copied); d=$(json_field "$T_TMP/last.out" messages_deduped)
[ "$c" = 0 ] && [ "$d" = "$n" ] && ok "state-reset-copies-nothing ($d matched)" ||
	not_ok state-reset-copies-nothing "copied $c, matched $d of $n"
exact && ok state-reset-exact || not_ok state-reset-exact "$(tail -n 1 "$T_TMP/cmp")"
ls "$ST"/data.mdb.damaged-* >/dev/null 2>&1 && ok state-reset-kept-aside || not_ok state-reset-kept-aside "no data.mdb.damaged-*"
expect_exit state-reset-rerun 0 run --state "$ST"
c=$(json_field "$T_TMP/last.out" messages_copied)
[ "$c" = 0 ] && ok state-reset-rerun-copies-nothing || not_ok state-reset-rerun-copies-nothing "copied $c"
expect_exit state-check-after-reset 0 mf state check "$ST"

# Planted symlinks: never followed, the victim stays as it was.
S2=$T_TMP/state2 victim=$T_TMP/victim
mkdir -m 700 "$S2"; : >"$victim"; chmod 644 "$victim"
ln -s "$victim" "$S2/data.mdb"
expect_exit symlink-data-refused 2 run --state "$S2"
grep -q "data.mdb is a symbolic link" "$T_TMP/last.err" || not_ok symlink-data-says "$(head -c 300 "$T_TMP/last.err")"
[ "$(stat -c '%s %a' "$victim")" = "0 644" ] && ok symlink-data-victim-untouched ||
	not_ok symlink-data-victim-untouched "$(stat -c '%s %a' "$victim")"
rm -f "$S2"/*
ln -s "$victim" "$S2/lock"
expect_exit symlink-lock-refused 2 run --state "$S2"
grep -q "lock is a symbolic link" "$T_TMP/last.err" || not_ok symlink-lock-says "$(head -c 300 "$T_TMP/last.err")"
[ ! -e "$S2/data.mdb" ] && ok symlink-lock-no-state-made || not_ok symlink-lock-no-state-made "data.mdb was created"
rm -f "$S2"/*
chmod 777 "$S2"
expect_exit state-dir-0777-refused 2 run --state "$S2"
grep -q "writable by everyone (mode 0777)" "$T_TMP/last.err" || not_ok state-dir-0777-says "$(head -c 300 "$T_TMP/last.err")"

# A password file others can read: warned about, the run goes on.
cp "$D_DIR/pw/dst" "$T_TMP/dst.pw"; chmod 644 "$T_TMP/dst.pw"
expect_exit pwfile-readable-run 0 mf migrate "imap://src@127.0.0.1:$D_IMAP_PORT?starttls=no" \
	"imap://dst@127.0.0.1:$D_IMAP_PORT?starttls=no" --src-password-file "$D_DIR/pw/src" \
	--dst-password-file "$T_TMP/dst.pw" --state "$ST" --no-progress
grep -q "password file $T_TMP/dst.pw can be read by others (mode 0644)" "$T_TMP/last.err" && ok pwfile-readable-warned ||
	not_ok pwfile-readable-warned "no warning: $(head -c 300 "$T_TMP/last.err")"

#!/usr/bin/env bash
# Issue 15 defect 5: the state's disk fills up mid-run. An APPEND whose
# intents could not be committed must not reach its commit point (the final
# CRLF): the run stops with an error (exit 1) instead of copying on without
# a record. Once space is back, a re-run completes the copy and the
# destination holds every message exactly once. The state lives on a small
# tmpfs (root only), filled so that it can grow by a few pages only.
. "$(dirname "$0")/lib.sh"

if [ "$(id -u)" != 0 ]; then
	ok "state-full # SKIP not root (needs mount -t tmpfs)"
	exit 0
fi
MNT=$T_TMP/small
mkdir -p "$MNT"
mount -t tmpfs -o size=4m,mode=0700 tmpfs "$MNT" || { not_ok state-full-mount "mount tmpfs failed"; exit 1; }
trap 'umount "$MNT" 2>/dev/null; t_cleanup' EXIT
ST=$MNT/state

dv_start F --users "src dst" || { not_ok state-full-dovecot "start failed"; exit 1; }
corpus F src demo 7 || { not_ok state-full-corpus failed; exit 1; }
run() { # [options]
	mf migrate "imap://src@127.0.0.1:$F_IMAP_PORT?starttls=no" "imap://dst@127.0.0.1:$F_IMAP_PORT?starttls=no" \
		--src-password-file "$F_DIR/pw/src" --dst-password-file "$F_DIR/pw/dst" --state "$ST" \
		--json --no-progress --batch 8 --connections 2 "$@"
}
# The state exists (a dry run makes it and writes nothing else)...
expect_exit state-full-create 0 run --dry-run
# ...then the disk is filled but for a few pages: the first records fit,
# the run's thousands do not.
dd if=/dev/zero of="$MNT/filler" bs=4k 2>/dev/null
free_kb=${STATE_FULL_FREE_KB:-160}
truncate -s "-${free_kb}K" "$MNT/filler"
df -k "$MNT" | tail -n 1 | sed 's/^/# /' >&2

expect_exit state-full-run-stops 1 run
cp "$T_TMP/last.err" "$T_TMP/full.err"
if grep -q "abandoned before its commit point: the state could not record it" "$T_TMP/last.err"; then
	ok state-full-says-why
else
	not_ok state-full-says-why "$(grep -v '^[[:space:]]*$' "$T_TMP/last.err" | tail -n 2 | head -c 400)"
fi
echo "# full-disk run: $(json_field "$T_TMP/last.out" messages_copied) copied; $(grep -c 'error' "$T_TMP/last.err") error lines" >&2

rm -f "$MNT/filler"
expect_exit state-full-rerun 0 run
echo "# re-run: $(json_field "$T_TMP/last.out" messages_copied) copied" >&2
check state-full-exactly-once "$BENCH_BIN/compare" "$F_DIR/mail/src/Maildir" "$F_DIR/mail/dst/Maildir"

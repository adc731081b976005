#!/usr/bin/env bash
# Issue 15 defects 4 and 9: long mailbox names (a use-after-free and a whole
# job aborted before), and a hostile source server that must not keep a run
# alive or grow its memory without bound: slow drip, endless untagged
# responses, huge partial lines, a literal larger than RFC822.SIZE, and
# 200,000 mailboxes. Every run ends within its limits with an error naming
# the account.
. "$(dirname "$0")/lib.sh"

# ---- long names, against real Dovecot (LAYOUT=fs: 255 bytes per level) ----
dv_start S --users "src dst" --separator / || { not_ok bounds-dovecot "start failed"; exit 1; }
dv_start P --users "dst" || { not_ok bounds-dovecot-p "start failed"; exit 1; }
L200=$(printf 'a%.0s' $(seq 1 200))
LONG="$L200/$L200/$L200/$L200/$L200/$L200/x" # 1,206 bytes
imap_session "$S_IMAP_PORT" >/dev/null <<EOT
a LOGIN src pw-src-secret
b CREATE "$LONG"
c APPEND "$LONG" {19}
Subject: x

hello
d APPEND INBOX {19}
Subject: y

hello
EOT
long_run() { # DST_PORT DST_PW [options]
	local port=$1 pw=$2; shift 2
	mf migrate "imap://src@127.0.0.1:$S_IMAP_PORT?starttls=no" "imap://dst@127.0.0.1:$port?starttls=no" \
		--src-password-file "$S_DIR/pw/src" --dst-password-file "$pw" --timeout 5 --no-progress "$@"
}
expect_exit long-name-copied 0 long_run "$S_IMAP_PORT" "$S_DIR/pw/dst" --state "$T_TMP/st-long" --json
[ "$(json_field "$T_TMP/last.out" messages_copied)" = 2 ] && ok long-name-count ||
	not_ok long-name-count "$(tail -n 1 "$T_TMP/last.out")"
n=$(imap_session "$S_IMAP_PORT" <<<"a LOGIN dst pw-dst-secret
b STATUS \"$LONG\" (MESSAGES)" | sed -n 's/.*(MESSAGES \([0-9]*\)).*/\1/p')
[ "$n" = 1 ] && ok long-name-on-destination || not_ok long-name-on-destination "STATUS says '$n'"
expect_exit long-name-rerun 0 long_run "$S_IMAP_PORT" "$S_DIR/pw/dst" --state "$T_TMP/st-long" --json
[ "$(json_field "$T_TMP/last.out" messages_copied)" = 0 ] && ok long-name-rerun-nothing ||
	not_ok long-name-rerun-nothing "$(tail -n 1 "$T_TMP/last.out")"
# A destination with Maildir++ (one directory per name: 255 bytes) refuses
# the name: that mailbox fails with its reason on the line, INBOX is copied.
expect_exit long-name-refused 1 long_run "$P_IMAP_PORT" "$P_DIR/pw/dst" --state "$T_TMP/st-long-p" --json
line=$(grep 'error' "$T_TMP/last.err" | head -n 1)
[[ $line == *"destination dst@127.0.0.1"*"...\": cannot create mailbox ("*"bytes): "?* ]] && [ ${#line} -lt 512 ] &&
	ok "long-name-refused-message (${line:0:60}...${line: -60})" || not_ok long-name-refused-message "${line:0:300}"
[ "$(json_field "$T_TMP/last.out" messages_copied)" = 1 ] && ok long-name-refused-others-go-on ||
	not_ok long-name-refused-others-go-on "$(tail -n 1 "$T_TMP/last.out")"

# ---- a hostile source (tests/faults/fake_imap.py), a real destination ----
# Each fault would go on until the fake gives up (--max-seconds 60, then
# "connection closed"); the error must name the bound that ended it.
dv_start D --users "dst" || { not_ok bounds-dovecot-d "start failed"; exit 1; }
fake_run() { # STATE [options]
	local st=$1; shift
	mf migrate "imap://u@127.0.0.1:$FAKE_PORT?starttls=no" "imap://dst@127.0.0.1:$D_IMAP_PORT?starttls=no" \
		--src-password-file "$D_DIR/pw/dst" --dst-password-file "$D_DIR/pw/dst" --state "$T_TMP/$st" \
		--timeout 2 --no-progress "$@"
}
# CODE: 3 when the connection could not be kept (README "Exit status"), 1
# when the server's reply was refused and the mailbox failed
while read -r name fault stage code want; do
	fake_imap "$fault" --stage "$stage" --max-seconds 60 || { not_ok "$name-server" "fake server did not start"; continue; }
	expect_exit "$name-exit" "$code" fake_run "st-$name"
	line=$(grep 'error' "$T_TMP/last.err" | grep "$want" | head -n 1)
	if [[ $line == *"source u@127.0.0.1"*"$want"* ]]; then
		ok "$name-message (${line#mailferry: error: })"
	else
		not_ok "$name-message" "no '$want' error: $(grep error "$T_TMP/last.err" | head -n 3 | cut -c1-200 | tr '\n' '|')"
	fi
	kill "$T_LAST_PID" 2>/dev/null
done <<'EOT'
drip-greeting slow-loris greeting 3 greeting and login with
drip-fetch slow-loris fetch 3 too slow
endless-exists endless-exists fetch 1 EXISTS" endlessly
huge-line huge-line fetch 1 line too long
huge-literal huge-literal fetch 1 RFC822.SIZE 1000
EOT

# ---- 200,000 mailboxes: listed in linear time (no timing asserted; the
# fake gives up after 60 s, which the quadratic listing did not survive) ----
fake_imap none --mailboxes 200000 --list-status --max-seconds 60 || not_ok many-server "fake server did not start"
expect_exit many-mailboxes-dry-run 0 fake_run st-many --dry-run --folder INBOX
grep -q 'mailbox "INBOX": 3 new messages would be copied' "$T_TMP/last.err" && ok many-mailboxes-plan ||
	not_ok many-mailboxes-plan "$(tail -n 2 "$T_TMP/last.err" | tr '\n' '|')"

#!/usr/bin/env bash
# bench/lmtp_ceiling.sh — the ceiling of an IMAP -> LMTP (or -> SMTP)
# migration: what the server itself accepts from a bare client, with no
# IMAP fetch at all. Every message file of MAILDIR (cur/ and new/ of every
# folder), split evenly by count over N connections of tests/tools/smtp_send
# (one connection each, LHLO, MAIL/RCPT/BDAT LAST pipelined, the next
# message's transaction behind the previous one's end, as mailferry's
# SMTP/LMTP sink does), all to RCPT.
#   bench/lmtp_ceiling.sh SMTP_SEND PORT RCPT MAILDIR [N [DELIVERED_NEW]]
# With DELIVERED_NEW: SMTP (EHLO, e.g. into Postfix) instead of LMTP, and
# the clock runs until DELIVERED_NEW (the final Maildir's new/) holds every
# message: a relay's 250 means queued, not delivered (bench/until_delivered.sh).
# Prints one JSON line {"tool":"ceiling","messages":n,"bytes":b,...}; exit 0
# when every message was delivered.
set -uo pipefail
send=$1 port=$2 rcpt=$3 md=$4 n=${5:-4} dnew=${6:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
find "$md" -type f \( -path '*/cur/*' -o -path '*/new/*' \) >"$tmp/files"
split -n "r/$n" "$tmp/files" "$tmp/shard."
mode=--lmtp
[ -n "$dnew" ] && mode=
rc=0
for s in "$tmp"/shard.*; do
	xargs -a "$s" -d '\n' "$send" $mode 127.0.0.1 "$port" --from bench@example.org --rcpt "$rcpt" \
		>"$s.out" 2>"$s.err" &
done
for p in $(jobs -p); do wait "$p" || rc=1; done
msgs=$(wc -l <"$tmp/files")
if [ -n "$dnew" ]; then
	"$(dirname "$0")/until_delivered.sh" "$dnew" "$msgs" || rc=1
fi
bytes=$(xargs -a "$tmp/files" -d '\n' cat | wc -c)
ok=$(cat "$tmp"/shard.*.out | grep -c ': delivered: ')
echo "{\"tool\":\"ceiling\",\"messages\":$ok,\"bytes\":$bytes,\"connections\":$n}"
[ "$ok" = "$msgs" ] && exit $rc || exit 1

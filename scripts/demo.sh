#!/usr/bin/env bash
# scripts/demo.sh — what `make demo` runs: a private Dovecot on 127.0.0.1,
# a source account "alice" filled with a few thousand generated realistic
# messages, `mailferry migrate` to "bob" over STARTTLS (certificate checked
# against the demo's own CA), a second run that has nothing to copy, and a
# byte-for-byte comparison of both accounts. Nothing outside DEMO_DIR and
# the private server is touched; the server is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
MF=build/release/mailferry
DEMO=${DEMO_DIR:-$(mktemp -d /tmp/mailferry-demo.XXXXXX)}
DV=$DEMO/dovecot
PROFILE=${DEMO_PROFILE:-demo}

stop() { scripts/dovecot.sh stop "$DV" >/dev/null 2>&1 || true; }
trap stop EXIT

echo "== mailferry demo in $DEMO"
scripts/dovecot.sh start "$DV" --port-base "${DEMO_PORT_BASE:-14400}" --users "alice bob" >/dev/null
# shellcheck disable=SC1091
. "$DV/env"
echo "== private Dovecot on 127.0.0.1:$IMAP_PORT (STARTTLS), CA $CA_FILE"

echo "== generating the source mailbox (profile $PROFILE)"
build/release/bench/corpus --out "$MAIL_ROOT/alice/Maildir" --profile "$PROFILE" --seed 42
scripts/dovecot.sh fixperms "$DV" >/dev/null

run() { # label
	local out=$DEMO/run-$1.json
	$MF migrate "imap://alice@127.0.0.1:$IMAP_PORT" "imap://bob@127.0.0.1:$IMAP_PORT" \
		--src-password-file "$DV/pw/alice" --dst-password-file "$DV/pw/bob" \
		--ca-file "$CA_FILE" --state "$DEMO/state" --json >"$out"
	tail -n 1 "$out"
}

echo "== first run: migrate alice -> bob"
first=$(run first)
echo "== second run: nothing new, nothing copied"
second=$(run second)

echo "== comparing both accounts byte for byte (flags, keywords, INTERNALDATE)"
build/release/bench/compare "$MAIL_ROOT/alice/Maildir" "$MAIL_ROOT/bob/Maildir" | tail -n 1

python3 - "$first" "$second" <<'PY'
import json, sys
a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print()
print("                  first run    second run")
for k, label, fmt in [("messages_copied", "messages copied", "{:>10}"),
                      ("messages_skipped", "already there", "{:>10}"),
                      ("messages_failed", "failed", "{:>10}"),
                      ("bytes", "MB copied", "{:>10.1f}"),
                      ("mailboxes", "mailboxes", "{:>10}"),
                      ("seconds", "seconds", "{:>10.2f}"),
                      ("wire_bytes_in", "KB on the wire in", "{:>10.1f}"),
                      ("peak_rss_kb", "peak RSS MiB", "{:>10.1f}")]:
    f = lambda d: d[k] / 1e6 if k == "bytes" else d[k] / 1024 if k in ("peak_rss_kb", "wire_bytes_in") else d[k]
    print(f"{label:<18}" + fmt.format(f(a)) + "   " + fmt.format(f(b)))
ok = a["exit"] == 0 and b["exit"] == 0 and b["messages_copied"] == 0
print()
print("demo: OK" if ok else "demo: FAILED")
sys.exit(0 if ok else 1)
PY

#!/usr/bin/env bash
# mailferry backup pop3:// (issue 19 item 1, sources: POP3) against a
# private Dovecot: the maildrop (STLS) backed up into an archive as the
# account "pop3:src@host", mailbox INBOX, every message once and
# byte-exact (export compared with the Maildir files); verify ARCHIVE
# clean; a re-run RETRieves nothing (Dovecot's session log: retr=0/0) and
# stores nothing; a new message: exactly one RETR and one new message in
# run 3; restore of the POP3 run into an IMAP account; --pop3-delete and
# a non-mail scheme refused.
. "$(dirname "$0")/lib.sh"

dv_start P --users "src r1" || { not_ok dovecot "start failed"; exit 1; }
corpus P src tiny 4 || { not_ok corpus "generation failed"; exit 1; }
MD=$P_MAIL_ROOT/src/Maildir
SRC="pop3://src@127.0.0.1:$P_POP3_PORT"
AR=$T_TMP/archive
BK=(--src-password-file "$P_DIR/pw/src" --ca-file "$P_CA_FILE" --json --no-progress --state "$T_TMP/bst")
inbox() { find "$1/cur" "$1/new" -type f 2>/dev/null; }
NMSG=$(inbox "$MD" | grep -c .)
retr() { grep 'pop3(src).*Disconnected: Logged out' "$P_DIR/dovecot.log" | tail -n 1 | sed -n 's/.* retr=\([0-9]*\)\/.*/\1/p'; }
sums() { while read -r f; do sha256sum <"$f" | cut -d' ' -f1; done | sort; }
# Dovecot stores what IMAP APPENDs with LF line ends: compared without CRs
lfsums() { while read -r f; do tr -d '\r' <"$f" | sha256sum | cut -d' ' -f1; done | sort; }

expect_exit pop3b-backup 0 mf backup "$SRC" "$AR" "${BK[@]}"
c=$(json_field "$T_TMP/last.out" messages_copied)
[ "$c" = "$NMSG" ] && [ "$(retr)" = "$NMSG" ] && ok "pop3b-count ($c, $NMSG RETRs)" ||
	not_ok pop3b-count "copied $c, $(retr) RETRs, $NMSG in the maildrop"
expect_exit pop3b-ls 0 mf archive ls "$AR"
grep -q '^run=1 .* account="pop3:src@127.0.0.1" state=complete' "$T_TMP/last.out" &&
	grep -q "^  mailbox=\"INBOX\" uidvalidity=[0-9]* messages=$NMSG " "$T_TMP/last.out" &&
	[ "$(grep -c '^  mailbox=' "$T_TMP/last.out")" = 1 ] && ok pop3b-ls-one-inbox ||
	not_ok pop3b-ls-one-inbox "$(head -n 4 "$T_TMP/last.out" | tr '\n' '|')"
expect_exit pop3b-verify 0 mf verify "$AR"
expect_exit pop3b-export 0 mf export "$AR" --maildir "$T_TMP/out"
inbox "$MD" | sums >"$T_TMP/want"
inbox "$T_TMP/out" | sums >"$T_TMP/got"
cmp -s "$T_TMP/want" "$T_TMP/got" && ok "pop3b-export-exact ($NMSG)" ||
	not_ok pop3b-export-exact "$(diff "$T_TMP/want" "$T_TMP/got" | grep -c '^[<>]') hashes differ"

# a re-run: nothing RETRieved, nothing stored, the run complete
expect_exit pop3b-rerun 0 mf backup "$SRC" "$AR" "${BK[@]}"
c=$(json_field "$T_TMP/last.out" messages_copied)
[ "$c" = 0 ] && [ "$(retr)" = 0 ] && ok pop3b-rerun-reads-nothing ||
	not_ok pop3b-rerun-reads-nothing "copied $c, $(retr) RETRs"
grep -q '"event":"archive","run":2,"committed":true' "$T_TMP/last.out" && ok pop3b-rerun-run-2 ||
	not_ok pop3b-rerun-run-2 "$(grep '"archive"' "$T_TMP/last.out")"

# a new message: one RETR, one more message in the run
printf 'Received: by mx; Fri, 5 Jan 2024 12:34:56 -0800\r\nSubject: new %s\r\n\r\nnew one\r\n' "$$" \
	>"$MD/new/1700001000.M1P1.pop3b-new"
"$ROOT/scripts/dovecot.sh" fixperms "$P_DIR" >/dev/null
expect_exit pop3b-new 0 mf backup "$SRC" "$AR" "${BK[@]}"
c=$(json_field "$T_TMP/last.out" messages_copied)
[ "$c" = 1 ] && [ "$(retr)" = 1 ] && ok pop3b-new-one-retr || not_ok pop3b-new-one-retr "copied $c, $(retr) RETRs"
mf archive ls "$AR" >"$T_TMP/ls3"
grep -A1 '^run=3 ' "$T_TMP/ls3" | grep -q "mailbox=\"INBOX\" .* messages=$((NMSG + 1)) " && ok pop3b-run-3-holds-all ||
	not_ok pop3b-run-3-holds-all "$(grep -A2 '^run=3 ' "$T_TMP/ls3" | tr '\n' '|')"

# restore the POP3 run into an IMAP account
expect_exit pop3b-restore 0 mf restore "$AR" "imap://r1@127.0.0.1:$P_IMAP_PORT" \
	--dst-password-file "$P_DIR/pw/r1" --ca-file "$P_CA_FILE" --json --no-progress --state "$T_TMP/rst"
inbox "$MD" | lfsums >"$T_TMP/want2"
inbox "$P_MAIL_ROOT/r1/Maildir" | lfsums >"$T_TMP/got2"
cmp -s "$T_TMP/want2" "$T_TMP/got2" && ok "pop3b-restore-same ($((NMSG + 1)), CRs aside)" ||
	not_ok pop3b-restore-same "$(diff "$T_TMP/want2" "$T_TMP/got2" | grep -c '^[<>]') hashes differ"

expect_exit pop3b-refuses-pop3-delete 2 mf backup "$SRC" "$AR" "${BK[@]}" --pop3-delete
expect_exit pop3b-refuses-smtp 2 mf backup "smtp://127.0.0.1:25?rcpt=a@example.org" "$AR" "${BK[@]}"

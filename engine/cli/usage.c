/*
 * usage — the command line's help text and its password files: what the
 * user reads (mailferry --help) and the one place a secret file is read.
 * Private to engine/cli/ (cli_int.h).
 *
 * Not for: parsing options (cli.c).
 */
#include "engine/cli/cli_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/base/err.h"

int cli_password_file(const char *path, char *out, size_t cap, char *why, size_t whycap)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	ssize_t n;

	if (fd < 0) {
		snprintf(why, whycap, "cannot read password file %s: %s", path, strerror(errno));
		return -1;
	}
	/* Like the state (issue 15): a password others can read is no secret,
	 * and one others can change can send the login elsewhere's way. */
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
		if (st.st_uid != geteuid() && st.st_uid != 0)
			mf_log(MF_LOG_WARN, "password file %s belongs to uid %u, not to this user",
			       path, (unsigned)st.st_uid);
		if (st.st_mode & 0022)
			mf_log(MF_LOG_WARN, "password file %s can be changed by others (mode %04o)",
			       path, (unsigned)(st.st_mode & 07777));
		if (st.st_mode & 0044)
			mf_log(MF_LOG_WARN,
			       "password file %s can be read by others (mode %04o): chmod 600 %s",
			       path, (unsigned)(st.st_mode & 07777), path);
	}
	n = read(fd, out, cap - 1);
	close(fd);
	if (n < 0) {
		snprintf(why, whycap, "cannot read password file %s: %s", path, strerror(errno));
		return -1;
	}
	out[n] = '\0';
	while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == '\r'))
		out[--n] = '\0';
	if (!n) {
		snprintf(why, whycap, "password file %s is empty", path);
		return -1;
	}
	return 0;
}

void cli_usage(FILE *f)
{
	fputs("usage: mailferry migrate SRC DST [options]\n"
	      "\n"
	      "Copies every mailbox of the SRC account to the DST account, byte for byte with\n"
	      "flags and INTERNALDATE; a re-run copies only what is new.\n"
	      "\n"
	      "  SRC, DST   imap://user@host[:port]  (STARTTLS; ?starttls=no to skip it)\n"
	      "             imaps://user@host[:port] (TLS from the first byte)\n"
	      "  SRC also   pop3://user@host[:port]  (STLS; ?starttls=no to skip it),\n"
	      "             pop3s://user@host[:port]: its messages go to the destination's\n"
	      "             INBOX (or --map INBOX=FOLDER), dated by their newest Received:\n"
	      "             a user name with '@' is written %40\n"
	      "  DST also   smtp://[user@]host[:port]?rcpt=ADDR  (STARTTLS; AUTH with a user)\n"
	      "             smtps://[user@]host[:port]?rcpt=ADDR (TLS from the first byte)\n"
	      "             lmtp://host[:port]?rcpt=ADDR, lmtp:///path/to/socket?rcpt=ADDR\n"
	      "             every message is delivered to ADDR, unchanged; folders and\n"
	      "             flags are not carried (one notice)\n"
	      "\n"
	      "Passwords: MAILFERRY_SRC_PASSWORD / MAILFERRY_DST_PASSWORD, or\n"
	      "  --src-password-file F, --dst-password-file F\n"
	      "  --src-authuser ADMIN, --dst-authuser ADMIN  log in as ADMIN (with ADMIN's\n"
	      "                      password) acting as the URL's user (SASL PLAIN)\n"
	      "OAuth2 (AUTHENTICATE OAUTHBEARER, or XOAUTH2; instead of a password):\n"
	      "  --src-oauth-token-file F, --dst-oauth-token-file F  the access token, read\n"
	      "                      again at each login when the file changed\n"
	      "  --src-oauth-token-cmd CMD, --dst-oauth-token-cmd CMD  /bin/sh -c CMD prints\n"
	      "                      the token; run at the first login, when the server\n"
	      "                      refuses it (the login is retried once) and before a\n"
	      "                      reconnect (MAILFERRY_OAUTH_USER = the URL's user)\n"
	      "\n"
	      "Options:\n"
	      "  --state DIR         state directory (default $XDG_STATE_HOME/mailferry)\n"
	      "  --state-reset       start the state over (a damaged data.mdb is moved aside);\n"
	      "                      what the destination holds is matched by content\n"
	      "  --ca-file F         trust this CA (PEM) instead of the system store\n"
	      "  --insecure          do not verify TLS certificates (loudly unsafe)\n"
	      "  --allow-plaintext   allow passwords over unencrypted non-loopback connections\n"
	      "  --folder PAT        only mailboxes matching PAT (repeatable; '*' any\n"
	      "                      characters, '%' any but '/', the rest literal)\n"
	      "  --exclude PAT       skip mailboxes matching PAT (repeatable)\n"
	      "  --folder-regex RE, --exclude-regex RE  the same with POSIX extended regular\n"
	      "                      expressions (repeatable)\n"
	      "  --rename s/RE/REPL/[g]  rewrite destination names (UTF-8, '/' for hierarchy;\n"
	      "                      & and \\1..\\9 in REPL; repeatable, applied in order)\n"
	      "  --dst-prefix P      put every mailbox under P on the destination\n"
	      "  --connections N     parallel connection pairs (default 4)\n"
	      "  --max-per-host N    at most N connections open to each server host\n"
	      "                      (host:port as given, both sides; with run: shared by\n"
	      "                      every account); more wait their turn\n"
	      "  --max-bytes-per-second N  message bytes per second per server host (k, M, G:\n"
	      "                      1024-based; with run: shared by every account); a\n"
	      "                      host that is source and destination counts both ways\n"
	      "  --batch N           messages per MULTIAPPEND (default 256)\n"
	      "  --timeout SECONDS   connect/reply timeout (default 60)\n"
	      "  --login-timeout SECONDS  greeting, TLS and login must be done within this\n"
	      "                      (default twice --timeout)\n"
	      "  --min-progress BYTES  while a reply is due, each --timeout window with input\n"
	      "                      must bring this many bytes (default 1024): a server\n"
	      "                      dripping bytes is dropped like a silent one\n"
	      "  --max-message-size BYTES  larger messages fail (default: the destination's\n"
	      "                      APPENDLIMIT, else 2 GiB)\n"
	      "Selective copies (IMAP sources; combined with AND; the rest is counted as\n"
	      "skipped; a later run with a wider or no filter copies what it now selects):\n"
	      "  --since DATE        INTERNALDATE on or after DATE (YYYY-MM-DD or dd-Mon-yyyy)\n"
	      "  --before DATE       INTERNALDATE before DATE\n"
	      "  --larger N          larger than N bytes (k, M, G suffixes: 1024-based)\n"
	      "  --smaller N         smaller than N bytes\n"
	      "  --search 'KEYS'     IMAP search keys (RFC 3501: UNSEEN FROM x ...), checked\n"
	      "                      and sent with UID SEARCH; no literals, ASCII only\n"
	      "  --include-shared    also copy the mailboxes of the source's shared and other\n"
	      "                      users' namespaces (skipped by default, one notice)\n"
	      "  --retries N         reconnect a dropped connection pair up to N times in a\n"
	      "                      row, resuming its mailbox (default 5; 0 = never); a\n"
	      "                      first login the server says \"later\" to starts the\n"
	      "                      account again, up to N times\n"
	      "  --map SRC=DST       put source mailbox SRC into DST (repeatable; otherwise\n"
	      "                      SPECIAL-USE, then the same name, decides)\n"
	      "  --sync-flags        carry flag and keyword changes to the destination\n"
	      "  --dedupe            do not append a message the destination folder already\n"
	      "                      holds (same content, by SHA-256; reads new mail twice)\n"
	      "  --delete            carry expunges to the destination (UID EXPUNGE)\n"
	      "  --pop3-delete       POP3 source: DELE the messages the destination confirmed\n"
	      "                      (and the state recorded), then QUIT\n"
	      "  --mail-from ADDR    SMTP/LMTP envelope sender (default: the message's\n"
	      "                      Return-Path, else the null sender <>)\n"
	      "  --uncertain resend|skip  SMTP/LMTP: a message whose delivery a crash left\n"
	      "                      unconfirmed is sent again (default) or skipped; counted\n"
	      "  --settle-imap imap[s]://user@host[:port][/FOLDER]  SMTP/LMTP: look for the\n"
	      "                      deliveries a crash left unconfirmed in this mailbox\n"
	      "                      first (password: --settle-password-file F or\n"
	      "                      MAILFERRY_SETTLE_PASSWORD)\n"
	      "  --no-chunking       SMTP/LMTP: DATA even where CHUNKING (BDAT) is offered\n"
	      "  --dry-run           list what would be synced; change nothing\n"
	      "  --check             log in to both accounts and list them, say for each\n"
	      "                      whether a run could start; copy nothing\n"
	      "  --json              JSON-lines events on stdout, the last one the summary\n"
	      "  --progress / --no-progress   progress line (default: on a TTY)\n"
	      "  -q, --quiet / -v, --verbose\n"
	      "\n"
	      "\n"
	      "       mailferry run ACCOUNTS_FILE [--jobs N] [options]\n"
	      "Migrates every account of ACCOUNTS_FILE, N at a time (default 4) on one event\n"
	      "loop. A line is either imapsync's host1;user1;password1;host2;user2;password2\n"
	      "(a password \"@PATH\" is read from that file) or SRC DST [options], the options\n"
	      "of migrate for that account; options given to run apply to every line. Each\n"
	      "account has its own state under --state DIR. '#' starts a comment.\n"
	      "  --report FILE       write the final report as JSON (per account: line,\n"
	      "                      accounts, status, class, counts, bytes, seconds, first\n"
	      "                      error); a table is printed at the end either way (stdout,\n"
	      "                      or stderr with --json)\n"
	      "  --resume            skip the accounts an earlier run under the same --state\n"
	      "                      finished (its journal STATE/run-journal); a line changed\n"
	      "                      since (URLs or options) runs again\n"
	      "  --shard K/N         run only shard K (0..N-1) of the accounts: by a hash of\n"
	      "                      the account pair, so adding lines moves no other account\n"
	      "  --shard auto --shards N   K from $JOB_COMPLETION_INDEX (Kubernetes)\n"
	      "  --threads N         event loops, one per thread (default: online CPUs;\n"
	      "                      1 = one loop); accounts are spread over them\n"
	      "  --progress-interval SECONDS  without a TTY, one progress line this often\n"
	      "                      (default 30; 0 = none). On a TTY: a live display\n"
	      "  --status ADDR:PORT  (run, migrate) serve a live status page (/), JSON\n"
	      "                      (/api/status) and Prometheus metrics (/metrics) from the\n"
	      "                      run's own loop; PORT alone is 127.0.0.1; read-only\n"
	      "  --status-token-file F  require \"Authorization: Bearer <F's first line>\"\n"
	      "                      (needed for a non-loopback address)\n"
	      "  --status-linger SECONDS  keep serving this long after the run (default 0)\n"
	      "  --status-show-subjects  also show the Subject and From of the message each\n"
	      "                      running account copies (not read at all without it)\n"
	      "       mailferry report merge REPORT... [--report FILE] [--json]\n"
	      "Merges the reports of a run's shards: one table (or JSON), sums, worst class.\n"
	      "       mailferry report show REPORT [--html OUT.html]\n"
	      "One report as the table, or as the status page, static, with its data inside.\n"
	      "\n"
	      "       mailferry backup imap[s]|pop3[s]://user@host ARCHIVE_DIR [options]\n"
	      "Backs the account up into an archive directory (created if missing): one\n"
	      "backup run per call, only new messages read (--state), each content stored\n"
	      "once. Takes migrate's source options (--folder, --exclude, --state, --json,\n"
	      "...); one connection. --encrypt --passphrase-file F creates the archive\n"
	      "encrypted (AES-256-GCM, scrypt); an encrypted archive needs --passphrase-file F\n"
	      "(or MAILFERRY_ARCHIVE_PASSPHRASE_FILE) for backup, restore, export, verify, ls.\n"
	      "  --prune             expunges recorded, then what the source deleted is forgotten\n"
	      "                      in every run and packs mostly dead are rewritten\n"
	      "\n"
	      "       mailferry restore ARCHIVE_DIR DST [options]\n"
	      "Writes an archived backup run back to DST (imap[s]://, smtp[s]://, lmtp://)\n"
	      "through the same pipeline: folders recreated, flags, keywords and INTERNALDATE\n"
	      "as recorded; a re-run copies only what is missing (--state). Takes migrate's\n"
	      "destination options (--folder, --exclude, --map, --dst-prefix, --json,\n"
	      "--connections N: mailboxes restored side by side, default 4, ...).\n"
	      "  --run N             restore backup run N (default: the latest complete one)\n"
	      "  --as-of DATE|RUN    the account as it was at that run; a DATE (YYYY-MM-DD\n"
	      "                      [HH:MM[:SS]], UTC) picks the last run at or before it\n"
	      "  --account USER@HOST the archived account (needed when the archive holds more\n"
	      "                      than one)\n"
	      "  --since DATE, --before DATE  only messages whose INTERNALDATE is at or after\n"
	      "                      / before DATE (UTC)\n"
	      "  --separator C       the hierarchy separator of the archived names (default .)\n"
	      "\n"
	      "       mailferry export ARCHIVE --maildir DIR | --mbox FILE [--run N] [--folder NAME]\n"
	      "       mailferry verify ARCHIVE     re-read and re-hash every archived message\n"
	      "       mailferry verify SRC ARCHIVE [--full] [--run N]  the live account against\n"
	      "                      the archive's latest run: per mailbox UID, size, flags\n"
	      "                      (--full: content hash too); one line per difference;\n"
	      "                      --folder/--exclude as for backup; a pop3[s]:// SRC maps\n"
	      "                      its UIDLs through backup's --state\n"
	      "       mailferry archive ls ARCHIVE runs, mailboxes, messages, stored vs raw bytes\n"
	      "\n"
	      "       mailferry state check DIR\n"
	      "Says whether the state in DIR is sound (exit 0) or what is wrong with it (exit 2).\n"
	      "\n"
	      "Exit status: 0 all done; 1 some messages or mailboxes failed (listed); 2 usage\n"
	      "or configuration error; 3 cannot connect or TLS failed; 4 a login was refused;\n"
	      "5 the destination is over quota. run and report merge: the class of the worst\n"
	      "account, worst first: 2 (a bad line) > 3 > 4 > 5 > 1 > 0 (all done).\n",
	      f);
}

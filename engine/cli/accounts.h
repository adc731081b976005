/*
 * accounts — one line of an accounts file (mailferry run), in either of
 * the two forms admins already keep:
 *
 *   host1;user1;password1;host2;user2;password2      imapsync's batch habit
 *   imaps://a@old imaps://a@new --folder 'Archive*'  a URL pair and options
 *
 * The URL form may start with an action word (the imapsync form is always
 * a migration):
 *
 *   migrate imaps://a@old imaps://a@new [options]   (the word optional)
 *   backup imaps://a@old /srv/archive [options]
 *   restore /srv/archive imaps://a@new [options]
 *
 * A password field "@PATH" names a file holding it. In the URL form words
 * are split on blanks, with '…' and "…" quoting and \ escaping as in a
 * shell (no expansion of any kind). Blank lines and lines whose first
 * non-blank character is '#' hold no account.
 *
 * Pure: no I/O, no allocation; the line is split in place. Fuzzed by
 * tests/fuzz/fuzz_accounts.c. Not for: reading files or passwords (run.c).
 */
#ifndef MF_ACCOUNTS_H
#define MF_ACCOUNTS_H

#include <stddef.h>

#define ACCOUNTS_LINE_MAX 8192
#define ACCOUNTS_ARGS_MAX 64

enum account_kind { ACCOUNT_NONE, ACCOUNT_URLS, ACCOUNT_IMAPSYNC };
enum account_action { ACCOUNT_MIGRATE, ACCOUNT_BACKUP, ACCOUNT_RESTORE };

struct account_line {
	enum account_kind kind;
	enum account_action action;
	/* ACCOUNT_URLS: argv[0] the source (a URL, or the archive directory
	 * of a restore), argv[1] the destination (a URL, or the archive
	 * directory of a backup), then options (as on the command line); the
	 * action word is not among them. */
	int argc;
	char *argv[ACCOUNTS_ARGS_MAX];
	/* ACCOUNT_IMAPSYNC: [0] source, [1] destination; host may carry
	 * ":port" and a scheme ("imaps://host"); a password "@PATH" is a file. */
	char *host[2], *user[2], *password[2];
};

/* Splits line[0..len) (len < ACCOUNTS_LINE_MAX, no line end) in place;
 * line[len] must be writable (it may become a NUL). 0, or -1 with a
 * one-line reason in why (which never quotes a password). */
int accounts_parse_line(char *line, size_t len, struct account_line *out, char *why,
                        size_t whycap);

/* Writes "imap://USER@HOST" (or HOST's own scheme) with USER
 * percent-encoded as url_parse expects. 0, or -1 if it does not fit. */
int accounts_url(const char *host, const char *user, char *out, size_t cap);

/* "migrate", "backup", "restore". */
const char *accounts_action_name(enum account_action a);

#endif

/*
 * archive_cmd — the archive commands of the command line:
 *   mailferry export ARCHIVE --maildir DIR | --mbox FILE [--run N] [--folder NAME]
 *   mailferry verify ARCHIVE
 *   mailferry archive ls ARCHIVE
 * each also with [--passphrase-file FILE] for an encrypted archive (or
 * MAILFERRY_ARCHIVE_PASSPHRASE_FILE in the environment).
 * Each returns the exit status: 0 ok, 1 problems found (each listed),
 * 2 usage error or an archive that cannot be read (a missing or wrong
 * passphrase included).
 *
 * cli_archive_take_opts and cli_archive_open are the one way a command
 * (backup, export, verify, archive ls, restore) opens an archive.
 *
 * Not for: backup and restore (the pipeline), the archive format (store/).
 */
#ifndef MF_ARCHIVE_CMD_H
#define MF_ARCHIVE_CMD_H

#include <stddef.h>

struct archive;

struct cli_archive_opts {
	int encrypt;           /* --encrypt: a new archive is created encrypted */
	const char *pass_file; /* --passphrase-file FILE, or NULL */
	/* where errors are told: "FILE:LINE: " after "mailferry: " (an
	 * accounts line) and the line copied to why[whycap] if empty; or NULL.
	 * Set before cli_archive_take_opts, which keeps them. */
	const char *where;
	char *why;
	size_t whycap;
};
/* Takes --passphrase-file FILE (or =FILE) and, with allow_encrypt,
 * --encrypt out of argv (*argc shrinks; stops at "--"). 0, or 2 after one
 * line on stderr. */
int cli_archive_take_opts(int *argc, char **argv, struct cli_archive_opts *o, int allow_encrypt,
                          const char *cmd);
/* Opens dir (ARCHIVE_OPEN_* flags) with the passphrase from
 * o->pass_file or MAILFERRY_ARCHIVE_PASSPHRASE_FILE. 0, or the exit
 * status 2 after one line on stderr ("... is encrypted: give ...",
 * "... wrong passphrase ..."). */
int cli_archive_open(struct archive **a, const char *dir, unsigned flags,
                     const struct cli_archive_opts *o);

struct url;
/* The archive's name for the source's account: "user@host", or
 * "pop3:user@host" for a POP3 maildrop (its own runs: one mailbox, INBOX,
 * UIDs from its UIDLs). 0, or -1 if it does not fit cap. */
int cli_archive_account(const struct url *su, char *out, size_t cap);
/* backup's job key in the state: the account and the archive's real path
 * (verify of a POP3 source looks the UIDL ids up under it). 0 or -1. */
int cli_archive_job_key(const char *account, const char *real, char *out, size_t cap);

/* argv[0] is the command name ("export", "verify", "archive"). */
int archive_cmd_export(int argc, char **argv);
int archive_cmd_verify(int argc, char **argv);
int archive_cmd_archive(int argc, char **argv);
/* One line: is argv (after "verify") an archive verify? (one argument) */
int archive_cmd_is_archive_verify(int argc, char **argv);

#endif

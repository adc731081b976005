/*
 * verify_cmd — `mailferry verify imap[s]|pop3[s]://user@host ARCHIVE
 * [--full] [--run N] [--passphrase-file FILE] [--folder GLOB ...] [source
 * options]`: the live account compared with the archive's latest complete
 * run of that account (or run N) by engine/sync/verify_src.c, over the
 * mailboxes backup's folder options select. A POP3 maildrop is the
 * archive's "pop3:user@host" account; its UIDLs are mapped to the
 * archive's UIDs through backup's state (--state, as for backup). One
 * line on stdout per difference:
 *
 *   differs account="u@h" mailbox="INBOX" uid=7 what="flags differ: ..."
 *
 * uid=0 for a whole mailbox. Exit 0 the same, 1 differences, 2 usage or
 * an archive that cannot be opened, 3 cannot connect, 4 login refused.
 *
 * Not for: `verify ARCHIVE` alone (archive_cmd.c), the comparison itself.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/cli/archive_cmd.h"
#include "engine/cli/cli_int.h"
#include "engine/sync/verify_src.h"
#include "store/archive.h"
#include "store/state.h"

struct vctx {
	const char *account; /* escaped */
	uint64_t lines;
};

static int print_diff(void *ctx, const struct verify_diff *d)
{
	struct vctx *v = ctx;
	char name[1024], what[1024];

	/* a name (and a server's text in what) may hold '"' */
	mf_escape_quoted(d->mailbox, d->mlen, name, sizeof(name));
	mf_escape_quoted(d->what, strlen(d->what), what, sizeof(what));
	printf("differs account=\"%s\" mailbox=\"%s\" uid=%u what=\"%s\"\n", v->account, name,
	       d->uid, what);
	v->lines++;
	return 0;
}

/* Takes --full and --run N out of argv (stops at "--"). 0 or 2. */
static int take_own(int *argc, char **argv, int *full, uint32_t *run)
{
	int i = 1, j = 1;

	while (i < *argc) {
		const char *s = argv[i];

		if (!strcmp(s, "--")) {
			while (i < *argc)
				argv[j++] = argv[i++];
			break;
		}
		if (!strcmp(s, "--full")) {
			*full = 1;
			i++;
		} else if (!strcmp(s, "--run") || !strncmp(s, "--run=", 6)) {
			const char *v = s[5] == '=' ? s + 6 : (i + 1 < *argc ? argv[i + 1] : NULL);
			char *end;
			unsigned long n;

			errno = 0;
			n = v ? strtoul(v, &end, 10) : 0;
			if (!v || !*v || *end || errno || !n || n > UINT32_MAX) {
				fputs("mailferry verify: --run wants a run number\n", stderr);
				return 2;
			}
			*run = (uint32_t)n;
			i += s[5] == '=' ? 1 : 2;
		} else {
			argv[j++] = argv[i++];
		}
	}
	*argc = j;
	argv[j] = NULL;
	return 0;
}

/* A POP3 source: backup's state and its job of this account and archive
 * (the UIDL ids). 0, or 2 after one line. */
static int pop3_state(struct cli *c, const char *account, const char *dir, struct state **st,
                      uint32_t *job)
{
	char real[PATH_MAX], key[sizeof(c->job_key)], esc[AFMT_ACCOUNT_MAX * 4 + 1];
	struct mf_error err = {0};
	int rc;

	if (!realpath(dir, real)) {
		fprintf(stderr, "mailferry: verify: %s: %s\n", dir, strerror(errno));
		return 2;
	}
	if (cli_archive_job_key(account, real, key, sizeof(key)) < 0) {
		fputs("mailferry: verify: the archive's path is too long\n", stderr);
		return 2;
	}
	if (state_open(st, c->state_dir, &err) < 0) {
		mf_print("mailferry: verify: %s", err.msg);
		return 2;
	}
	if ((rc = state_job_find(*st, key, job, &err)) < 0) {
		mf_escape(account, strlen(account), esc, sizeof(esc));
		if (rc == -ENOENT)
			fprintf(stderr,
			        "mailferry: verify: the state in %s has no backup of %s into this "
			        "archive (a POP3 source's UIDLs are mapped through backup's "
			        "state: give its --state)\n",
			        c->state_dir, esc);
		else
			mf_print("mailferry: verify: %s", err.msg);
		state_close(*st);
		*st = NULL;
		return 2;
	}
	return 0;
}

static int verify_src_exit(struct cli *c, struct archive *a, uint32_t run, int full,
                           const char *acct, struct state *state, uint32_t job)
{
	struct verify_src_stats st;
	struct vctx v = {acct, 0};
	struct mf_error err = {0};
	struct job_opts o;
	struct verify_src_in in;
	struct loop loop;
	int rc;
	unsigned cls;

	cli_job_opts(c, &o);
	in = (struct verify_src_in){&o, a, run, full, state, job};
	if ((rc = loop_init(&loop, 64)) < 0) {
		fprintf(stderr, "mailferry: io_uring setup failed: %s\n", strerror(-rc));
		return 2;
	}
	rc = verify_src_run(&loop, &in, print_diff, &v, &st, &err);
	loop_free(&loop);
	fflush(stdout);
	if (rc < 0) {
		mf_print("mailferry: verify: %s", err.msg[0] ? err.msg : strerror(-rc));
		cls = job_class_of(rc);
		return cls & JOB_CLASS_AUTH ? 4 : cls & JOB_CLASS_CONNECT ? 3 : 2;
	}
	fprintf(stderr,
	        "verify: %s against run %u: %llu mailboxes, %llu messages compared by %s%s; %llu "
	        "differences",
	        acct, run, (unsigned long long)st.mailboxes, (unsigned long long)st.messages,
	        o.src_pop3 ? "UIDL and size" : "UID, size and flags",
	        full ? " and content hash" : "", (unsigned long long)st.diffs);
	if (st.filtered)
		fprintf(stderr, "; %llu mailboxes left out by the folder options",
		        (unsigned long long)st.filtered);
	fputc('\n', stderr);
	return st.diffs ? 1 : 0;
}

int cmd_verify_src(int argc, char **argv)
{
	struct cli_archive_opts ao = {0};
	struct mf_error err = {0};
	struct archive *a;
	struct cli c;
	char account[AFMT_ACCOUNT_MAX + 1], esc[AFMT_ACCOUNT_MAX * 4 + 1];
	uint32_t run = 0;
	struct state *state = NULL;
	uint32_t job = 0;
	int rc, full = 0;

	if ((rc = cli_archive_take_opts(&argc, argv, &ao, 0, "verify")) ||
	    (rc = take_own(&argc, argv, &full, &run)))
		return rc;
	cli_defaults(&c);
	if ((rc = cli_parse(&c, argc, argv, 0)))
		return rc == 1 ? 0 : rc;
	if (argc - optind != 2) {
		fputs("usage: mailferry verify imap[s]|pop3[s]://user@host ARCHIVE [--full] "
		      "[--run N] [--passphrase-file FILE] [--folder GLOB] [--exclude GLOB] "
		      "[options]\n",
		      stderr);
		return 2;
	}
	if ((rc = cli_accounts(&c, argv[optind], NULL)))
		return rc;
	if (c.su.kind != URL_IMAP && c.su.kind != URL_POP3) {
		cli_forget(&c);
		fputs("mailferry: verify: the source must be imap[s]:// or pop3[s]://\n", stderr);
		return 2;
	}
	if (cli_archive_account(&c.su, account, sizeof(account)) < 0) {
		cli_forget(&c);
		fputs("mailferry: verify: the account name is too long\n", stderr);
		return 2;
	}
	if ((rc = cli_archive_open(&a, argv[optind + 1], ARCHIVE_OPEN_RDONLY, &ao))) {
		cli_forget(&c);
		return rc;
	}
	if (!run && (rc = archive_run_latest(a, account, &run, &err)) < 0) {
		mf_escape(account, strlen(account), esc, sizeof(esc));
		if (rc == -ENOENT)
			fprintf(stderr,
			        "mailferry: verify: no complete backup run of %s in the archive\n",
			        esc);
		else
			mf_print("mailferry: verify: %s", err.msg);
		archive_close(a);
		cli_forget(&c);
		return 2;
	}
	if (c.su.kind == URL_POP3 &&
	    (rc = pop3_state(&c, account, argv[optind + 1], &state, &job))) {
		archive_close(a);
		cli_forget(&c);
		return rc;
	}
	mf_escape_quoted(account, strlen(account), esc, sizeof(esc));
	rc = verify_src_exit(&c, a, run, full, esc, state, job);
	if (state)
		state_close(state);
	archive_close(a);
	cli_forget(&c);
	return rc;
}

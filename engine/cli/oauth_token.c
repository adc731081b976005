/*
 * oauth_token — an account's OAuth2 access token from a file or a command
 * (see oauth_token.h). Owns the token's one copy for the account; every
 * connection of the account asks it at login.
 */
#include "engine/cli/oauth_token.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/syscall.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

extern char **environ;

static void tok_cancel(void *ctx, struct imap_token_wait *w);

static int tok_get(void *ctx, struct loop *l, int refresh, unsigned *gen, char *out, size_t cap,
                   struct imap_token_wait *w, struct mf_error *err)
{
	return oauth_token_get(ctx, l, refresh, gen, out, cap, w, err);
}

static void tok_lost(void *ctx)
{
	struct oauth_token *t = ctx;

	if (t->cmd)
		t->stale = 1;
}

void oauth_token_init(struct oauth_token *t, const char *label, const char *user, const char *file,
                      const char *cmd)
{
	memset(t, 0, sizeof(*t));
	t->src.get = tok_get;
	t->src.lost = tok_lost;
	t->src.cancel = tok_cancel;
	t->src.ctx = t;
	t->label = label;
	t->user = user;
	t->file = file;
	t->cmd = cmd;
	t->timeout_s = OAUTH_CMD_TIMEOUT_S;
}

ssize_t oauth_token_clean(char *buf, size_t n, char *why, size_t whycap)
{
	while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ' ||
	             buf[n - 1] == '\t'))
		n--;
	buf[n] = '\0';
	if (!n) {
		snprintf(why, whycap, "is empty");
		return -1;
	}
	if (n > SASL_OAUTH_TOKEN_MAX) {
		snprintf(why, whycap, "is longer than %d bytes", SASL_OAUTH_TOKEN_MAX);
		return -1;
	}
	if (!sasl_oauth_token_ok(buf, n)) {
		snprintf(why, whycap,
		         "is not one bearer token (letters, digits and -._~+/ then '=' padding, "
		         "RFC 6750 §2.1; a JSON reply must be reduced to its access_token)");
		return -1;
	}
	return (ssize_t)n;
}

/* Keeps buf[0..n) as the token (a new generation if it differs). */
static void tok_take(struct oauth_token *t, const char *buf, size_t n)
{
	if (n != t->len || memcmp(buf, t->tok, n)) {
		memcpy(t->tok, buf, n);
		t->tok[n] = '\0';
		t->len = n;
		t->gen++;
	}
}

static int64_t mtime_ns(const struct stat *st)
{
	return (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
}

static int file_read(struct oauth_token *t, struct mf_error *err)
{
	char buf[SASL_OAUTH_TOKEN_MAX + 2], why[200];
	struct stat st;
	ssize_t n;
	int fd = open(t->file, O_RDONLY | O_CLOEXEC);

	if (fd < 0 || fstat(fd, &st) < 0) {
		mf_err_set(err, -EACCES, "cannot read the OAuth2 token file %s: %s", t->file,
		           strerror(errno));
		if (fd >= 0)
			close(fd);
		return -EACCES;
	}
	if (t->len && st.st_dev == t->dev && st.st_ino == t->ino && st.st_size == t->size &&
	    mtime_ns(&st) == t->mtime_ns) {
		close(fd); /* unchanged since it was read */
		return 0;
	}
	if (st.st_mode & 0044)
		mf_log(MF_LOG_WARN,
		       "%s OAuth2 token file %s can be read by others (mode %04o): chmod 600 %s",
		       t->label, t->file, (unsigned)(st.st_mode & 07777), t->file);
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n < 0) {
		mf_err_set(err, -EACCES, "cannot read the OAuth2 token file %s: %s", t->file,
		           strerror(errno));
		return -EACCES;
	}
	if (n == (ssize_t)sizeof(buf) - 1) {
		n = -1;
		snprintf(why, sizeof(why), "is longer than %d bytes", SASL_OAUTH_TOKEN_MAX);
	} else {
		n = oauth_token_clean(buf, (size_t)n, why, sizeof(why));
	}
	if (n < 0) {
		OPENSSL_cleanse(buf, sizeof(buf));
		mf_err_set(err, -EACCES, "the OAuth2 token file %s %s", t->file, why);
		return -EACCES;
	}
	tok_take(t, buf, (size_t)n);
	OPENSSL_cleanse(buf, sizeof(buf));
	t->dev = st.st_dev;
	t->ino = st.st_ino;
	t->size = st.st_size;
	t->mtime_ns = mtime_ns(&st);
	return 0;
}

/* The environment with MAILFERRY_OAUTH_USER=user added (replacing one
 * inherited): the command can serve several accounts. */
static char **cmd_env(const char *user, char *var, size_t cap)
{
	size_t n = 0, k = 0;
	char **env;

	while (environ[n])
		n++;
	env = calloc(n + 2, sizeof(*env));
	if (!env)
		return NULL;
	for (size_t i = 0; i < n; i++)
		if (strncmp(environ[i], "MAILFERRY_OAUTH_USER=", 21))
			env[k++] = environ[i];
	snprintf(var, cap, "MAILFERRY_OAUTH_USER=%s", user ? user : "");
	env[k++] = var;
	env[k] = NULL;
	return env;
}

/* One run of the token command, on the loop: a read of its stdout, a poll
 * of its pidfd (it exited) and a timeout, each an op of its own. Freed
 * when none is in flight; the token may have gone away by then
 * (oauth_token_forget detaches and kills it). */
struct run_op {
	struct loop_op op;
	struct oauth_run *run;
};

struct oauth_run {
	struct run_op rd, pl, tm;
	struct __kernel_timespec ts;
	struct loop *l;
	struct oauth_token *t; /* NULL once detached */
	pid_t pid;
	int fd, pidfd;
	int rd_live, pl_live, tm_live, tm_removed;
	int fail;   /* -ETIMEDOUT, -EFBIG, or a read error */
	int status; /* waitpid's */
	int reaped;
	size_t n;
	char buf[SASL_OAUTH_TOKEN_MAX + 2];
};

static void run_kill(struct oauth_run *r)
{
	if (!r->reaped)
		kill(-r->pid, SIGKILL); /* its own process group, started by us */
}

static void run_read_submit(struct oauth_run *r);
static void run_end(struct oauth_run *r);

static void run_check(struct oauth_run *r)
{
	if (!r->rd_live && !r->pl_live && r->tm_live && !r->tm_removed) {
		struct io_uring_sqe *sqe = loop_sqe(r->l);

		io_uring_prep_timeout_remove(sqe, (__u64)(uintptr_t)&r->tm.op, 0);
		loop_bind_ignore(r->l, sqe);
		r->tm_removed = 1;
	}
	if (!r->rd_live && !r->pl_live && !r->tm_live)
		run_end(r);
}

static void on_read(struct loop *l, struct loop_op *op, int res, unsigned flags)
{
	struct oauth_run *r = ((struct run_op *)op)->run;

	(void)l;
	(void)flags;
	r->rd_live = 0;
	if (res > 0 && !r->fail) {
		r->n += (size_t)res;
		if (r->n >= sizeof(r->buf) - 1) {
			r->fail = -EFBIG;
			run_kill(r);
		} else {
			run_read_submit(r);
		}
	} else if ((res == -EINTR || res == -EAGAIN) && !r->fail) {
		run_read_submit(r);
	} else if (res < 0 && !r->fail) {
		r->fail = res == -ECANCELED ? -ETIMEDOUT : res;
		run_kill(r);
	}
	run_check(r);
}

static void on_exit_poll(struct loop *l, struct loop_op *op, int res, unsigned flags)
{
	struct oauth_run *r = ((struct run_op *)op)->run;

	(void)l;
	(void)flags;
	(void)res;
	r->pl_live = 0;
	if (waitpid(r->pid, &r->status, WNOHANG) == r->pid) {
		r->reaped = 1;
	} else { /* not yet reapable (or the poll failed): make sure, then wait */
		run_kill(r);
		while (waitpid(r->pid, &r->status, 0) < 0 && errno == EINTR)
			;
		r->reaped = 1;
	}
	run_check(r);
}

static void on_timeout(struct loop *l, struct loop_op *op, int res, unsigned flags)
{
	struct oauth_run *r = ((struct run_op *)op)->run;

	(void)flags;
	r->tm_live = 0;
	if (res == -ETIME && (r->rd_live || r->pl_live)) {
		if (!r->fail)
			r->fail = -ETIMEDOUT;
		run_kill(r);
		/* a grandchild that left the group may still hold the pipe */
		if (r->rd_live) {
			struct io_uring_sqe *sqe = loop_sqe(l);

			io_uring_prep_cancel(sqe, &r->rd.op, 0);
			loop_bind_ignore(l, sqe);
		}
	}
	run_check(r);
}

static void run_read_submit(struct oauth_run *r)
{
	struct io_uring_sqe *sqe = loop_sqe(r->l);

	io_uring_prep_read(sqe, r->fd, r->buf + r->n, (unsigned)(sizeof(r->buf) - 1 - r->n),
	                   (__u64)-1);
	loop_bind(r->l, sqe, &r->rd.op);
	r->rd_live = 1;
}

static void notify(struct oauth_token *t, unsigned id, int rc, const struct mf_error *err)
{
	for (;;) {
		struct imap_token_wait **pp = &t->waiters, *w;

		while (*pp && (*pp)->run != id)
			pp = &(*pp)->next;
		if (!(w = *pp))
			break;
		*pp = w->next;
		w->queued = 0;
		w->ready(w, rc, err); /* may queue again, on a newer run */
	}
}

/* The run's result into its token, then to the logins waiting for it. */
static void run_end(struct oauth_run *r)
{
	struct oauth_token *t = r->t;
	struct mf_error e;
	char why[200];
	ssize_t n = (ssize_t)r->n;
	int st = r->status;

	close(r->fd);
	close(r->pidfd);
	if (t) {
		t->run = NULL;
		mf_err_clear(&e);
		if (r->fail == -ETIMEDOUT || r->fail == -EFBIG)
			mf_err_set(&e, -EACCES, "the OAuth2 token command %s (killed)",
			           r->fail == -ETIMEDOUT ? "did not finish in time"
			                                 : "printed too much");
		else if (r->fail)
			mf_err_set(&e, -EACCES, "reading the OAuth2 token command's output: %s",
			           strerror(-r->fail));
		else if (WIFSIGNALED(st))
			mf_err_set(&e, -EACCES, "the OAuth2 token command was killed by signal %d",
			           WTERMSIG(st));
		else if (!WIFEXITED(st) || WEXITSTATUS(st))
			mf_err_set(&e, -EACCES, "the OAuth2 token command failed (exit status %d)",
			           WEXITSTATUS(st));
		else if ((n = oauth_token_clean(r->buf, r->n, why, sizeof(why))) < 0)
			mf_err_set(&e, -EACCES, "the output of the OAuth2 token command %s", why);
		if (!e.code) {
			tok_take(t, r->buf, (size_t)n);
			t->stale = 0;
		}
		OPENSSL_cleanse(r->buf, sizeof(r->buf));
		notify(t, t->run_id, e.code, &e);
	}
	OPENSSL_cleanse(r->buf, sizeof(r->buf));
	free(r);
}

/* Starts the command on loop l: 0, or -EACCES with err set. */
static int cmd_start(struct oauth_token *t, struct loop *l, struct mf_error *err)
{
	char var[600];
	char *argv[] = {(char *)"sh", (char *)"-c", (char *)t->cmd, NULL};
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	struct oauth_run *r;
	struct io_uring_sqe *sqe;
	sigset_t def;
	char **env;
	int pfd[2], rc;

	if (!(r = calloc(1, sizeof(*r)))) {
		mf_err_set(err, -EACCES, "cannot run the OAuth2 token command: out of memory");
		return -EACCES;
	}
	if (pipe2(pfd, O_CLOEXEC) < 0) {
		mf_err_set(err, -EACCES, "cannot run the OAuth2 token command: %s",
		           strerror(errno));
		free(r);
		return -EACCES;
	}
	env = cmd_env(t->user, var, sizeof(var));
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, pfd[1], 1);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawnattr_init(&at);
	/* Its own process group, so a timeout kills what it started too;
	 * SIGPIPE back to default (mailferry ignores it). */
	sigemptyset(&def);
	sigaddset(&def, SIGPIPE);
	posix_spawnattr_setsigdefault(&at, &def);
	posix_spawnattr_setpgroup(&at, 0);
	posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF);
	rc = env ? posix_spawn(&r->pid, "/bin/sh", &fa, &at, argv, env) : ENOMEM;
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&at);
	free(env);
	OPENSSL_cleanse(var, sizeof(var));
	close(pfd[1]);
	if (rc) {
		close(pfd[0]);
		free(r);
		mf_err_set(err, -EACCES, "cannot run the OAuth2 token command: %s", strerror(rc));
		return -EACCES;
	}
	/* Linux 5.3: the pidfd is readable once the command exited. */
	r->pidfd = (int)syscall(SYS_pidfd_open, r->pid, 0);
	if (r->pidfd < 0) {
		int e = errno;

		kill(-r->pid, SIGKILL);
		while (waitpid(r->pid, NULL, 0) < 0 && errno == EINTR)
			;
		close(pfd[0]);
		free(r);
		mf_err_set(err, -EACCES, "cannot watch the OAuth2 token command (pidfd_open: %s)",
		           strerror(e));
		return -EACCES;
	}
	t->runs++;
	t->run_id++;
	t->run = r;
	r->t = t;
	r->l = l;
	r->fd = pfd[0];
	r->rd.op.cb = on_read;
	r->pl.op.cb = on_exit_poll;
	r->tm.op.cb = on_timeout;
	r->rd.run = r->pl.run = r->tm.run = r;
	loop_reserve(l, 3);
	run_read_submit(r);
	sqe = loop_sqe(l);
	io_uring_prep_poll_add(sqe, r->pidfd, POLLIN);
	loop_bind(l, sqe, &r->pl.op);
	r->pl_live = 1;
	r->ts.tv_sec = t->timeout_s;
	sqe = loop_sqe(l);
	io_uring_prep_timeout(sqe, &r->ts, 0, 0);
	loop_bind(l, sqe, &r->tm.op);
	r->tm_live = 1;
	return 0;
}

static void queue(struct oauth_token *t, struct imap_token_wait *w)
{
	w->run = t->run_id;
	w->queued = 1;
	w->next = t->waiters;
	t->waiters = w;
}

static void tok_cancel(void *ctx, struct imap_token_wait *w)
{
	struct oauth_token *t = ctx;

	for (struct imap_token_wait **pp = &t->waiters; *pp; pp = &(*pp)->next)
		if (*pp == w) {
			*pp = w->next;
			break;
		}
	w->queued = 0;
}

int oauth_token_get(struct oauth_token *t, struct loop *l, int refresh, unsigned *gen, char *out,
                    size_t cap, struct imap_token_wait *w, struct mf_error *err)
{
	int rc = 0;

	if (t->file) {
		rc = file_read(t, err);
	} else if (t->run) {
		/* a run is under way: its token is the newest */
		queue(t, w);
		return -EINPROGRESS;
	} else if (!t->len || t->stale || (refresh && *gen == t->gen)) {
		/* (a refusal of an older token than ours: ours is already newer) */
		if ((rc = cmd_start(t, l, err)) == 0) {
			queue(t, w);
			return -EINPROGRESS;
		}
	}
	if (rc < 0)
		return rc;
	if (t->len >= cap) {
		mf_err_set(err, -ENOSPC, "the OAuth2 token is too long");
		return -ENOSPC;
	}
	memcpy(out, t->tok, t->len + 1);
	*gen = t->gen;
	return 0;
}

void oauth_token_forget(struct oauth_token *t)
{
	if (t->run) { /* it frees itself when its ops are done */
		t->run->t = NULL;
		run_kill(t->run);
		t->run = NULL;
	}
	t->waiters = NULL;
	OPENSSL_cleanse(t->tok, sizeof(t->tok));
	t->len = 0;
}

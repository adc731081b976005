/*
 * oauth_token — an account's OAuth2 access token from a file or a command
 * (see oauth_token.h). Owns the token's one copy for the account; every
 * connection of the account asks it at login.
 */
#include "engine/cli/oauth_token.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
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

static int tok_get(void *ctx, int refresh, unsigned *gen, char *out, size_t cap,
                   struct mf_error *err)
{
	return oauth_token_get(ctx, refresh, gen, out, cap, err);
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
	t->src.ctx = t;
	t->label = label;
	t->user = user;
	t->file = file;
	t->cmd = cmd;
	t->timeout_s = OAUTH_CMD_TIMEOUT_S;
}

void oauth_token_forget(struct oauth_token *t)
{
	OPENSSL_cleanse(t->tok, sizeof(t->tok));
	t->len = 0;
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

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Reads the child's stdout until EOF, the size bound or the deadline:
 * bytes read, -ETIMEDOUT or -EFBIG. */
static ssize_t cmd_read(int fd, char *buf, size_t cap, unsigned timeout_s)
{
	double end = now_s() + timeout_s;
	size_t n = 0;

	for (;;) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		double left = end - now_s();
		ssize_t r;
		int pr;

		if (left <= 0)
			return -ETIMEDOUT;
		pr = poll(&p, 1, (int)(left * 1000) + 1);
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr < 0)
			return -errno;
		if (!pr)
			continue;
		r = read(fd, buf + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (!r)
			return (ssize_t)n;
		n += (size_t)r;
		if (n == cap)
			return -EFBIG;
	}
}

static int cmd_run(struct oauth_token *t, struct mf_error *err)
{
	char buf[SASL_OAUTH_TOKEN_MAX + 2], why[200], var[600];
	char *argv[] = {(char *)"sh", (char *)"-c", (char *)t->cmd, NULL};
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	sigset_t def;
	char **env;
	int pfd[2], st = 0, rc;
	pid_t pid;
	ssize_t n;

	if (pipe2(pfd, O_CLOEXEC) < 0) {
		mf_err_set(err, -EACCES, "cannot run the OAuth2 token command: %s",
		           strerror(errno));
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
	rc = env ? posix_spawn(&pid, "/bin/sh", &fa, &at, argv, env) : ENOMEM;
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&at);
	free(env);
	OPENSSL_cleanse(var, sizeof(var));
	close(pfd[1]);
	if (rc) {
		close(pfd[0]);
		mf_err_set(err, -EACCES, "cannot run the OAuth2 token command: %s", strerror(rc));
		return -EACCES;
	}
	t->runs++;
	n = cmd_read(pfd[0], buf, sizeof(buf) - 1, t->timeout_s);
	close(pfd[0]);
	if (n < 0)
		kill(-pid, SIGKILL); /* its process group, started above */
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	if (n == -ETIMEDOUT || n == -EFBIG) {
		mf_err_set(err, -EACCES, "the OAuth2 token command %s (killed)",
		           n == -ETIMEDOUT ? "did not finish in time" : "printed too much");
		OPENSSL_cleanse(buf, sizeof(buf));
		return -EACCES;
	}
	if (n < 0 || !WIFEXITED(st) || WEXITSTATUS(st)) {
		if (n >= 0 && WIFSIGNALED(st))
			mf_err_set(err, -EACCES, "the OAuth2 token command was killed by signal %d",
			           WTERMSIG(st));
		else if (n >= 0)
			mf_err_set(err, -EACCES, "the OAuth2 token command failed (exit status %d)",
			           WEXITSTATUS(st));
		else
			mf_err_set(err, -EACCES, "reading the OAuth2 token command's output: %s",
			           strerror((int)-n));
		OPENSSL_cleanse(buf, sizeof(buf));
		return -EACCES;
	}
	n = oauth_token_clean(buf, (size_t)n, why, sizeof(why));
	if (n < 0) {
		OPENSSL_cleanse(buf, sizeof(buf));
		mf_err_set(err, -EACCES, "the output of the OAuth2 token command %s", why);
		return -EACCES;
	}
	tok_take(t, buf, (size_t)n);
	OPENSSL_cleanse(buf, sizeof(buf));
	t->stale = 0;
	return 0;
}

int oauth_token_get(struct oauth_token *t, int refresh, unsigned *gen, char *out, size_t cap,
                    struct mf_error *err)
{
	int rc = 0;

	if (t->file) {
		rc = file_read(t, err);
	} else if (!t->len || t->stale || (refresh && *gen == t->gen)) {
		/* A refusal of an older token than ours: ours is already newer. */
		rc = cmd_run(t, err);
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

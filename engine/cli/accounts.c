/*
 * accounts — splitting one accounts-file line (see accounts.h).
 */
#include "engine/cli/accounts.h"

#include <stdio.h>
#include <string.h>

static int is_blank(char ch)
{
	return ch == ' ' || ch == '\t';
}

/* A host field: an optional imap:// or imaps://, then a name, an IPv4 or
 * [IPv6] address, an optional :port. Nothing that could end the URL's
 * authority early ('@', '/', '?', '#') and so name another account. */
static int host_ok(const char *h)
{
	if (!strncmp(h, "imap://", 7))
		h += 7;
	else if (!strncmp(h, "imaps://", 8))
		h += 8;
	if (!*h)
		return 0;
	for (; *h; h++)
		if (!((*h >= 'a' && *h <= 'z') || (*h >= 'A' && *h <= 'Z') ||
		      (*h >= '0' && *h <= '9') || strchr(".-_:[]", *h)))
			return 0;
	return 1;
}

/* imapsync's form: six ';'-separated fields, a trailing ';' allowed. */
static int parse_imapsync(char *line, size_t len, struct account_line *out, char *why,
                          size_t whycap)
{
	char *f[8];
	size_t n = 0;
	char *p = line, *end = line + len;

	while (n < 8) {
		char *semi = memchr(p, ';', (size_t)(end - p));

		f[n++] = p;
		if (!semi)
			break;
		*semi = '\0';
		p = semi + 1;
	}
	*end = '\0';
	if (n == 7 && !*f[6])
		n = 6;
	if (n != 6) {
		snprintf(why, whycap, "want host1;user1;password1;host2;user2;password2 (%zu fields)",
		         n);
		return -1;
	}
	for (int k = 0; k < 6; k++) {
		/* blanks around a field are the file's, not the value's, except in
		 * a password, which is taken as it is */
		if (k % 3 != 2) {
			while (is_blank(*f[k]))
				f[k]++;
			for (char *e = f[k] + strlen(f[k]); e > f[k] && is_blank(e[-1]);)
				*--e = '\0';
		}
		if (!*f[k]) {
			static const char *const names[] = {"host1", "user1", "password1",
			                                    "host2", "user2", "password2"};
			snprintf(why, whycap, "%s is empty", names[k]);
			return -1;
		}
	}
	for (int s = 0; s < 2; s++) {
		out->host[s] = f[3 * s];
		out->user[s] = f[3 * s + 1];
		out->password[s] = f[3 * s + 2];
		if (!host_ok(out->host[s])) {
			snprintf(why, whycap,
			         "host%d is not [imap://|imaps://]NAME[:PORT] (letters, digits, '.', "
			         "'-', '_', an [IPv6] address)",
			         s + 1);
			return -1;
		}
	}
	out->kind = ACCOUNT_IMAPSYNC;
	return 0;
}

static int words_check(struct account_line *out, char *why, size_t whycap);

/* The URL form: words with shell-like quoting, unquoted in place. */
static int parse_words(char *line, size_t len, struct account_line *out, char *why,
                       size_t whycap)
{
	char *r = line, *w = line, *end = line + len;

	out->argc = 0;
	while (r < end) {
		while (r < end && is_blank(*r))
			r++;
		if (r >= end)
			break;
		if (*r == '#')
			break; /* a comment after the words */
		if (out->argc == ACCOUNTS_ARGS_MAX) {
			snprintf(why, whycap, "more than %d words", ACCOUNTS_ARGS_MAX);
			return -1;
		}
		out->argv[out->argc++] = w;
		while (r < end && !is_blank(*r)) {
			if (*r == '\'' || *r == '"') {
				char q = *r++;

				while (r < end && *r != q) {
					if (q == '"' && *r == '\\' && r + 1 < end &&
					    (r[1] == '"' || r[1] == '\\'))
						r++;
					*w++ = *r++;
				}
				if (r >= end) {
					snprintf(why, whycap, "unterminated %c quote", q);
					return -1;
				}
				r++;
			} else if (*r == '\\') {
				if (++r >= end) {
					snprintf(why, whycap, "a backslash at the end of the line");
					return -1;
				}
				*w++ = *r++;
			} else {
				*w++ = *r++;
			}
		}
		/* r is at a blank or the end; w <= r, so the NUL never overwrites
		 * what is still to be read except that blank */
		if (r < end)
			r++;
		*w++ = '\0';
	}
	return words_check(out, why, whycap);
}

static const char *const action_names[] = {"migrate", "backup", "restore"};

const char *accounts_action_name(enum account_action a)
{
	return (unsigned)a < 3 ? action_names[a] : "?";
}

/* The action word (taken out of argv) and the two places after it: a URL,
 * or an archive directory (a backup's second, a restore's first). */
static int words_check(struct account_line *out, char *why, size_t whycap)
{
	static const char *const usage[] = {
	    ("want SRC-URL DST-URL [options] (the two URLs first) or "
	     "host1;user1;password1;host2;user2;password2"),
	    "want backup SRC-URL ARCHIVE_DIR [options]",
	    "want restore ARCHIVE_DIR DST-URL [options]",
	};
	int act = ACCOUNT_MIGRATE;

	if (out->argc && out->argv[0][0] != '-' && !strstr(out->argv[0], "://")) {
		for (act = 0; act < 3 && strcmp(out->argv[0], action_names[act]); act++)
			;
		if (act == 3) {
			snprintf(why, whycap,
			         "want SRC-URL DST-URL [options], or an action first (migrate, "
			         "backup, restore): \"%.40s\" is neither",
			         out->argv[0]);
			return -1;
		}
		out->argc--;
		memmove(&out->argv[0], &out->argv[1], (size_t)out->argc * sizeof(out->argv[0]));
		out->argv[out->argc] = NULL;
		out->action = (enum account_action)act;
	}
	if (out->argc < 2) {
		snprintf(why, whycap, "%s",
		         act == ACCOUNT_MIGRATE
		             ? "want SRC-URL DST-URL [options] or host1;user1;password1;"
		               "host2;user2;password2"
		             : usage[act]);
		return -1;
	}
	for (int k = 0; k < 2; k++) {
		int dir = (act == ACCOUNT_BACKUP && k == 1) || (act == ACCOUNT_RESTORE && k == 0);

		if (out->argv[k][0] == '-' || !out->argv[k][0] ||
		    (!dir && !strstr(out->argv[k], "://"))) {
			snprintf(why, whycap, "%s", usage[act]);
			return -1;
		}
	}
	out->kind = ACCOUNT_URLS;
	return 0;
}

int accounts_parse_line(char *line, size_t len, struct account_line *out, char *why,
                        size_t whycap)
{
	size_t i = 0;

	memset(out, 0, sizeof(*out));
	if (len >= ACCOUNTS_LINE_MAX) {
		snprintf(why, whycap, "line longer than %d bytes", ACCOUNTS_LINE_MAX - 1);
		return -1;
	}
	if (memchr(line, '\0', len)) {
		snprintf(why, whycap, "a NUL byte in the line");
		return -1;
	}
	for (size_t k = 0; k < len; k++)
		if (((unsigned char)line[k] < 0x20 && line[k] != '\t') || line[k] == 0x7f) {
			snprintf(why, whycap, "a control character in the line (column %zu)", k + 1);
			return -1;
		}
	while (i < len && is_blank(line[i]))
		i++;
	if (i == len || line[i] == '#') {
		out->kind = ACCOUNT_NONE;
		return 0;
	}
	/* imapsync's form has ';' in its first blank-separated word (a host
	 * may be "imaps://host"); a URL line has none there. */
	{
		size_t e = i;

		while (e < len && !is_blank(line[e]))
			e++;
		if (memchr(line + i, ';', e - i))
			return parse_imapsync(line + i, len - i, out, why, whycap);
	}
	return parse_words(line + i, len - i, out, why, whycap);
}

int accounts_url(const char *host, const char *user, char *out, size_t cap)
{
	static const char hex[] = "0123456789ABCDEF";
	const char *scheme = "imap://", *h = host, *sep = strstr(host, "://");
	size_t n;

	if (sep) {
		scheme = NULL;
		h = sep + 3;
	}
	n = (size_t)snprintf(out, cap, "%.*s", sep ? (int)(h - host) : (int)strlen(scheme),
	                     sep ? host : scheme);
	if (n >= cap)
		return -1;
	for (const unsigned char *u = (const unsigned char *)user; *u; u++) {
		int plain = (*u >= 'a' && *u <= 'z') || (*u >= 'A' && *u <= 'Z') ||
		            (*u >= '0' && *u <= '9') || strchr("-._~", *u);

		if (n + 4 >= cap)
			return -1;
		if (plain) {
			out[n++] = (char)*u;
		} else {
			out[n++] = '%';
			out[n++] = hex[*u >> 4];
			out[n++] = hex[*u & 15];
		}
	}
	if (n + strlen(h) + 2 > cap)
		return -1;
	out[n++] = '@';
	strcpy(out + n, h);
	return 0;
}

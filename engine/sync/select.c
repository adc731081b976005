/*
 * select — which source mailboxes a job takes, and the user's rules for
 * their destination names: --folder/--exclude patterns (IMAP LIST's '*'
 * and '%'), --folder-regex/--exclude-regex (POSIX extended), --rename
 * 's/REGEX/REPLACEMENT/[g]' (imapsync's --regextrans2) and --dst-prefix.
 * Names here are the readable UTF-8 ones with '/' for hierarchy; names.c
 * turns a result into the destination's wire form.
 *
 * Not for: --map, special use and separators (names.c), listing (plan.c).
 */
#include "engine/sync/job_int.h"

#include <regex.h>

struct rename_rule {
	regex_t re;
	char *repl;
	int global;
};

/* A --folder / --exclude pattern as IMAP LIST reads one (RFC 3501 §6.3.8):
 * '*' any characters, '/' included; '%' any characters but '/'; every
 * other character itself, so "[Gmail]/All Mail" means just that. A
 * dynamic programme over the name, linear in pattern times name: no
 * pattern makes it backtrack. 1 if name matches. */
int folder_match(const char *pat, const char *name)
{
	size_t n = strlen(name);
	unsigned char stack_rows[2][257], *row = stack_rows[0], *nrow = stack_rows[1];
	unsigned char *heap = NULL;
	int r;

	if (n + 1 > sizeof(stack_rows[0])) {
		if (!(heap = calloc(2, n + 1)))
			return 0;
		row = heap;
		nrow = heap + n + 1;
	}
	memset(row, 0, n + 1);
	row[0] = 1; /* the empty pattern matches the empty name */
	for (const char *p = pat; *p; p++) {
		if (*p == '*') {
			nrow[0] = row[0];
			for (size_t j = 1; j <= n; j++)
				nrow[j] = row[j] || nrow[j - 1];
		} else if (*p == '%') {
			nrow[0] = row[0];
			for (size_t j = 1; j <= n; j++)
				nrow[j] = row[j] || (nrow[j - 1] && name[j - 1] != '/');
		} else {
			nrow[0] = 0;
			for (size_t j = 1; j <= n; j++)
				nrow[j] = row[j - 1] && name[j - 1] == *p;
		}
		unsigned char *t = row;
		row = nrow;
		nrow = t;
	}
	r = row[n];
	free(heap);
	return r;
}

static size_t count(const char *const *v)
{
	size_t n = 0;

	while (v && v[n])
		n++;
	return n;
}

static int re_compile(regex_t *re, const char *src, const char *opt, struct mf_error *err)
{
	int rc = regcomp(re, src, REG_EXTENDED);
	char why[160];

	if (rc) {
		regerror(rc, re, why, sizeof(why));
		mf_err_set(err, -EINVAL, "%s '%s': %s", opt, src, why);
		return -EINVAL;
	}
	return 0;
}

/* "s/REGEX/REPLACEMENT/" or ".../g", any punctuation as the delimiter; a
 * delimiter preceded by a backslash is part of the text. */
static int rule_parse(struct rename_rule *r, const char *spec, struct mf_error *err)
{
	char d, *re = NULL, *w;
	const char *p;
	int part = 0, rc;

	if (spec[0] != 's' || !spec[1] || (spec[1] >= 'a' && spec[1] <= 'z') ||
	    (spec[1] >= 'A' && spec[1] <= 'Z') || (spec[1] >= '0' && spec[1] <= '9') ||
	    spec[1] == '\\') {
		mf_err_set(err, -EINVAL, "--rename '%s': want s/REGEX/REPLACEMENT/ or .../g", spec);
		return -EINVAL;
	}
	d = spec[1];
	if (!(re = malloc(strlen(spec) + 1)) || !(r->repl = malloc(strlen(spec) + 1))) {
		free(re);
		mf_err_set(err, -ENOMEM, "out of memory");
		return -ENOMEM;
	}
	w = re;
	for (p = spec + 2; *p && part < 2; p++) {
		if (*p == '\\' && p[1] == d) {
			*w++ = d;
			p++;
		} else if (*p == d) {
			*w = '\0';
			w = r->repl;
			part++;
		} else {
			*w++ = *p;
		}
	}
	if (part < 2 || (*p && strcmp(p, "g"))) {
		mf_err_set(err, -EINVAL, "--rename '%s': want s/REGEX/REPLACEMENT/ or .../g", spec);
		free(re);
		free(r->repl);
		r->repl = NULL;
		return -EINVAL;
	}
	r->global = *p == 'g';
	rc = re_compile(&r->re, re, "--rename", err);
	free(re);
	if (rc) {
		free(r->repl);
		r->repl = NULL;
	}
	return rc;
}

void rules_free(struct name_rules *r)
{
	for (size_t i = 0; i < r->ninc; i++)
		regfree(&r->inc[i]);
	for (size_t i = 0; i < r->nexc; i++)
		regfree(&r->exc[i]);
	for (size_t i = 0; i < r->nrn; i++) {
		regfree(&r->rn[i].re);
		free(r->rn[i].repl);
	}
	free(r->inc);
	free(r->exc);
	free(r->rn);
	memset(r, 0, sizeof(*r));
}

int rules_compile(struct name_rules *r, const struct job_opts *o, struct mf_error *err)
{
	size_t ni = count(o->folder_res), nx = count(o->exclude_res), nr = count(o->renames);
	int rc = 0;

	memset(r, 0, sizeof(*r));
	if ((ni && !(r->inc = calloc(ni, sizeof(*r->inc)))) ||
	    (nx && !(r->exc = calloc(nx, sizeof(*r->exc)))) ||
	    (nr && !(r->rn = calloc(nr, sizeof(*r->rn))))) {
		rules_free(r);
		mf_err_set(err, -ENOMEM, "out of memory");
		return -ENOMEM;
	}
	for (; r->ninc < ni && !rc; r->ninc += !rc)
		rc = re_compile(&r->inc[r->ninc], o->folder_res[r->ninc], "--folder-regex", err);
	for (; !rc && r->nexc < nx; r->nexc += !rc)
		rc = re_compile(&r->exc[r->nexc], o->exclude_res[r->nexc], "--exclude-regex", err);
	for (; !rc && r->nrn < nr; r->nrn += !rc)
		rc = rule_parse(&r->rn[r->nrn], o->renames[r->nrn], err);
	if (rc)
		rules_free(r);
	return rc;
}

int job_opts_check(const struct job_opts *o, struct mf_error *err)
{
	struct name_rules r;
	int rc;

	/* SMTP and LMTP deliver: no folders, no flags to change later, no
	 * way to look a message up (sink_smtp's capabilities). */
	if (o->dst_mail && (o->sync_flags || o->delete_ || o->dedupe)) {
		mf_err_set(err, -EINVAL, "%s needs a destination that keeps folders (imap://); "
		                         "an %s destination only delivers",
		           o->sync_flags ? "--sync-flags"
		           : o->delete_  ? "--delete"
		                         : "--dedupe (or --state-reset)",
		           o->dst_smtp.lmtp ? "LMTP" : "SMTP");
		return -EINVAL;
	}
	if (o->dst_mail && ((o->maps && o->maps[0]) || (o->renames && o->renames[0]) ||
	                    o->dst_prefix)) {
		mf_err_set(err, -EINVAL, "--map, --rename and --dst-prefix name destination folders; "
		                         "an %s destination has none",
		           o->dst_smtp.lmtp ? "LMTP" : "SMTP");
		return -EINVAL;
	}
	/* The filter's search goes to an IMAP source; --dedupe reads the new
	 * messages by range and would undo the filter's list. */
	if (o->filter && o->filter[0] && o->src_pop3) {
		mf_err_set(err, -EINVAL, "--since, --before, --larger, --smaller and --search "
		                         "need an IMAP source");
		return -EINVAL;
	}
	if (o->filter && o->filter[0] && o->dedupe) {
		mf_err_set(err, -EINVAL, "--dedupe (or --state-reset) cannot be combined with "
		                         "--since, --before, --larger, --smaller or --search");
		return -EINVAL;
	}
	rc = rules_compile(&r, o, err);

	if (!rc)
		rules_free(&r);
	return rc;
}

int folder_selected(const struct job *j, const char *display)
{
	return folder_selected_by(j->o, &j->rules, display);
}

int folder_selected_by(const struct job_opts *o, const struct name_rules *r, const char *display)
{
	int in = (!o->folders || !o->folders[0]) && !r->ninc;

	for (const char *const *g = o->folders; g && *g; g++)
		if (folder_match(*g, display))
			in = 1;
	for (size_t i = 0; !in && i < r->ninc; i++)
		if (!regexec(&r->inc[i], display, 0, NULL, 0))
			in = 1;
	for (const char *const *g = o->excludes; g && *g; g++)
		if (folder_match(*g, display))
			in = 0;
	for (size_t i = 0; in && i < r->nexc; i++)
		if (!regexec(&r->exc[i], display, 0, NULL, 0))
			in = 0;
	return in;
}

/* Appends n bytes to a growing string; -1 out of memory or too long. */
static int put(char **s, size_t *len, size_t *cap, const char *p, size_t n)
{
	if (*len + n + 1 > STATE_NAME_MAX)
		return -1;
	if (*len + n + 1 > *cap) {
		size_t nc = *cap ? *cap * 2 : 64;
		char *ns;

		while (nc < *len + n + 1)
			nc *= 2;
		if (!(ns = realloc(*s, nc)))
			return -1;
		*s = ns;
		*cap = nc;
	}
	memcpy(*s + *len, p, n);
	*len += n;
	(*s)[*len] = '\0';
	return 0;
}

/* One rule on name: the rewritten name (malloc'd), or NULL on failure. */
static char *rule_apply(const struct rename_rule *r, const char *name)
{
	regmatch_t m[10];
	char *out = NULL;
	size_t len = 0, cap = 0;
	const char *at = name;
	int eflags = 0;

	if (put(&out, &len, &cap, "", 0) < 0)
		return NULL;
	while (*at || at == name) {
		if (regexec(&r->re, at, 10, m, eflags)) {
			break;
		}
		if (put(&out, &len, &cap, at, (size_t)m[0].rm_so) < 0)
			goto fail;
		for (const char *p = r->repl; *p; p++) {
			int g = -1;

			if (*p == '&')
				g = 0;
			else if (*p == '\\' && p[1] >= '0' && p[1] <= '9')
				g = *++p - '0';
			else if (*p == '\\' && p[1])
				p++;
			if (g < 0) {
				if (put(&out, &len, &cap, p, 1) < 0)
					goto fail;
			} else if (m[g].rm_so >= 0 &&
			           put(&out, &len, &cap, at + m[g].rm_so,
			               (size_t)(m[g].rm_eo - m[g].rm_so)) < 0) {
				goto fail;
			}
		}
		if (m[0].rm_eo == m[0].rm_so) {
			/* an empty match: take one character on, or stop at the end */
			if (!at[m[0].rm_eo]) {
				at += m[0].rm_eo;
				break;
			}
			if (put(&out, &len, &cap, at + m[0].rm_eo, 1) < 0)
				goto fail;
			at += m[0].rm_eo + 1;
		} else {
			at += m[0].rm_eo;
		}
		eflags = REG_NOTBOL;
		if (!r->global)
			break;
	}
	if (put(&out, &len, &cap, at, strlen(at)) < 0)
		goto fail;
	return out;
fail:
	free(out);
	return NULL;
}

char *rules_dst_display(const struct job *j, const char *display, int *changed)
{
	const struct name_rules *r = &j->rules;
	const char *pre = j->o->dst_prefix;
	char *name = strdup(display), *next;

	*changed = 0;
	for (size_t i = 0; name && i < r->nrn; i++) {
		if (!(next = rule_apply(&r->rn[i], name))) {
			mf_log(MF_LOG_WARN, "--rename: the name of mailbox \"%s\" grew too long; "
			                    "rule %zu not applied",
			       display, i + 1);
			continue;
		}
		*changed |= strcmp(next, name) != 0;
		free(name);
		name = next;
	}
	if (name && pre && *pre) {
		size_t pl = strlen(pre), nl = strlen(name);
		int slash = pre[pl - 1] != '/';

		if ((next = malloc(pl + slash + nl + 1))) {
			memcpy(next, pre, pl);
			if (slash)
				next[pl] = '/';
			memcpy(next + pl + slash, name, nl + 1);
			*changed = 1;
		}
		free(name);
		name = next;
	}
	return name;
}

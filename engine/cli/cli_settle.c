/*
 * cli_settle — `--settle-imap imap[s]://user@host[:port][/FOLDER]` and
 * `--settle-password-file F`: the IMAP account an SMTP or LMTP
 * destination delivers into, where deliveries a crash left unconfirmed
 * are looked for before --uncertain decides (engine/sync/settle_imap.c).
 *
 * The URL is an IMAP URL as the accounts' (TLS, ?starttls=no,
 * --allow-plaintext, --ca-file, --timeout apply alike) with an optional
 * folder after the host: UTF-8, percent-encoded where it must be, in the
 * server's own hierarchy (default INBOX). No password in it: the process
 * list would show it.
 *
 * Not for: the check itself (engine/sync/settle_imap.c).
 */
#include "engine/cli/cli_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocols/utf7.h"

static int hexval(int ch)
{
	return ch >= '0' && ch <= '9'   ? ch - '0'
	       : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
	       : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10
	                                : -1;
}

/* The folder after the URL's authority, percent-decoded into out (UTF-8,
 * NUL-terminated); 0, or -1 for a bad escape, a NUL or no room. */
static int folder_decode(const char *p, size_t n, char *out, size_t cap)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		int ch = (unsigned char)p[i];

		if (ch == '%') {
			int hi = i + 2 < n ? hexval((unsigned char)p[i + 1]) : -1;
			int lo = i + 2 < n ? hexval((unsigned char)p[i + 2]) : -1;

			if (hi < 0 || lo < 0 || (hi | lo) == 0)
				return -1;
			ch = hi << 4 | lo;
			i += 2;
		}
		if (o + 1 >= cap)
			return -1;
		out[o++] = (char)ch;
	}
	out[o] = '\0';
	return 0;
}

int cli_settle_accounts(struct cli *c)
{
	const char *a = c->settle_arg, *p, *end, *at = NULL, *sl = NULL, *env;
	char url[2048], why[512], shown[1024], folder[512];
	ssize_t fl;

	if (!a) {
		if (c->settle_pw_file)
			return cli_bad(c, "--settle-password-file goes with --settle-imap%s%s", "",
			               "");
		return 0;
	}
	if (c->du.kind != URL_SMTP && c->du.kind != URL_LMTP)
		return cli_bad(c,
		               "--settle-imap is for smtp:// and lmtp:// destinations (an IMAP "
		               "destination is searched itself, an archive needs no search)%s%s",
		               "", "");
	url_redact(a, shown, sizeof(shown));
	/* the folder: after the host (past the last '@'), before the query */
	p = strstr(a, "://");
	p = p ? p + 3 : a;
	end = p + strcspn(p, "?");
	for (const char *x = p; x < end; x++)
		if (*x == '@')
			at = x;
	sl = memchr(at ? at : p, '/', (size_t)(end - (at ? at : p)));
	if (strlen(a) >= sizeof(url))
		return cli_bad(c, "--settle-imap %s: too long%s", shown, "");
	snprintf(url, sizeof(url), "%.*s%s", (int)((sl ? sl : end) - a), a, end);
	if (url_parse(url, &c->settle_u, why, sizeof(why)) < 0)
		return cli_bad(c, "--settle-imap %s: %s", shown, why);
	if (c->settle_u.kind != URL_IMAP)
		return cli_bad(c,
		               "--settle-imap %s: an imap:// or imaps:// URL is wanted (the "
		               "account the deliveries reach)%s",
		               shown, "");
	if (c->settle_u.has_password)
		return cli_bad(c,
		               "--settle-imap %s: no password in the URL (the process list shows "
		               "it): use --settle-password-file F or MAILFERRY_SETTLE_PASSWORD%s",
		               shown, "");
	if (folder_decode(sl ? sl + 1 : end, sl ? (size_t)(end - sl - 1) : 0, folder,
	                  sizeof(folder)) < 0)
		return cli_bad(c, "--settle-imap %s: bad folder name%s", shown, "");
	if (!folder[0])
		snprintf(folder, sizeof(folder), "INBOX");
	fl = utf7_encode(folder, strlen(folder), c->settle_folder, sizeof(c->settle_folder) - 1);
	if (fl < 0)
		return cli_bad(c, "--settle-imap %s: the folder name is not UTF-8%s", shown, "");
	c->settle_folder[fl] = '\0';
	snprintf(c->settle_shown, sizeof(c->settle_shown), "%s://%s@%s:%u/%s", c->settle_u.scheme,
	         c->settle_u.user, c->settle_u.host, (unsigned)c->settle_u.port, folder);
	if (c->settle_pw_file) {
		if (cli_password_file(c->settle_pw_file, c->settle_pw, sizeof(c->settle_pw), why,
		                      sizeof(why)) < 0)
			return cli_bad(c, "%s%s", why, "");
	} else if ((env = getenv("MAILFERRY_SETTLE_PASSWORD")) && *env) {
		snprintf(c->settle_pw, sizeof(c->settle_pw), "%s", env);
	} else {
		return cli_bad(c,
		               "no password for the --settle-imap account %s: set "
		               "MAILFERRY_SETTLE_PASSWORD or use --settle-password-file F%s",
		               c->settle_shown, "");
	}
	return 0;
}

void cli_settle_opts(const struct cli *c, struct job_opts *o)
{
	if (!c->settle_arg)
		return;
	cli_endpoint_fill(&o->settle, "settle check", &c->settle_u, c->settle_pw, c);
	o->settle.want_enable = 0; /* one EXAMINE and a search: no CONDSTORE */
	o->settle_folder = c->settle_folder;
	o->settle_shown = c->settle_shown;
}

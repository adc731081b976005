/*
 * sasl_oauth — OAUTHBEARER / XOAUTH2 client messages and the server's
 * error challenge (see sasl_oauth.h).
 */
#include "protocols/sasl_oauth.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

int sasl_oauth_token_ok(const char *tok, size_t n)
{
	size_t i = 0;

	if (!n || n > SASL_OAUTH_TOKEN_MAX)
		return 0;
	for (; i < n; i++) {
		char ch = tok[i];

		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' || ch == '_' ||
		      ch == '~' || ch == '+' || ch == '/'))
			break;
	}
	if (!i)
		return 0;
	for (; i < n; i++)
		if (tok[i] != '=')
			return 0;
	return 1;
}

/* A user name travels inside ^A-separated fields: no control bytes. */
static int user_ok(const char *u, size_t n)
{
	if (!n || n > SASL_OAUTH_USER_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)u[i] < 32 || u[i] == 127)
			return 0;
	return 1;
}

struct raw {
	unsigned char b[SASL_OAUTH_TOKEN_MAX + 3 * SASL_OAUTH_USER_MAX + 400];
	size_t n;
	int over;
};

static void raw_put(struct raw *r, const void *p, size_t n)
{
	if (r->over || n > sizeof(r->b) - r->n) {
		r->over = 1;
		return;
	}
	memcpy(r->b + r->n, p, n);
	r->n += n;
}

static void raw_puts(struct raw *r, const char *s)
{
	raw_put(r, s, strlen(s));
}

static ssize_t raw_finish(struct raw *r, char *out, size_t cap)
{
	ssize_t rc;

	if (r->over || (r->n + 2) / 3 * 4 + 1 > cap) {
		rc = -ENOSPC;
	} else {
		EVP_EncodeBlock((unsigned char *)out, r->b, (int)r->n);
		rc = (ssize_t)((r->n + 2) / 3 * 4);
	}
	OPENSSL_cleanse(r->b, sizeof(r->b));
	if (rc < 0 && cap)
		out[0] = '\0';
	return rc;
}

static int fields_ok(const char *user, const char *token, char *out, size_t cap)
{
	if (cap)
		out[0] = '\0';
	if (!user || !token || !user_ok(user, strlen(user)) ||
	    !sasl_oauth_token_ok(token, strlen(token)))
		return -EINVAL;
	return 0;
}

ssize_t sasl_xoauth2_encode(char *out, size_t cap, const char *user, const char *token)
{
	struct raw r = {.n = 0};

	if (fields_ok(user, token, out, cap) < 0)
		return -EINVAL;
	raw_puts(&r, "user=");
	raw_puts(&r, user);
	raw_puts(&r, "\001auth=Bearer ");
	raw_puts(&r, token);
	raw_puts(&r, "\001\001");
	return raw_finish(&r, out, cap);
}

ssize_t sasl_oauthbearer_encode(char *out, size_t cap, const char *user, const char *host,
                                unsigned port, const char *token)
{
	struct raw r = {.n = 0};
	char num[16];

	if (fields_ok(user, token, out, cap) < 0 || !host || !user_ok(host, strlen(host)))
		return -EINVAL;
	/* RFC 5801 §4: in a saslname, ',' is "=2C" and '=' is "=3D". */
	raw_puts(&r, "n,a=");
	for (const char *p = user; *p; p++)
		raw_puts(&r, *p == ',' ? "=2C" : *p == '=' ? "=3D" : (char[2]){*p, 0});
	raw_puts(&r, ",\001host=");
	raw_puts(&r, host);
	snprintf(num, sizeof(num), "%u", port);
	raw_puts(&r, "\001port=");
	raw_puts(&r, num);
	raw_puts(&r, "\001auth=Bearer ");
	raw_puts(&r, token);
	raw_puts(&r, "\001\001");
	return raw_finish(&r, out, cap);
}

/* ---- the error challenge ------------------------------------------------ */

static int b64_val(unsigned char ch)
{
	if (ch >= 'A' && ch <= 'Z')
		return ch - 'A';
	if (ch >= 'a' && ch <= 'z')
		return ch - 'a' + 26;
	if (ch >= '0' && ch <= '9')
		return ch - '0' + 52;
	if (ch == '+')
		return 62;
	if (ch == '/')
		return 63;
	return -1;
}

ssize_t sasl_b64_decode(const char *in, size_t n, unsigned char *out, size_t cap)
{
	size_t o = 0;

	if (n % 4)
		return -EBADMSG;
	for (size_t i = 0; i < n; i += 4) {
		int v[4], pad = 0;

		for (int k = 0; k < 4; k++) {
			unsigned char ch = (unsigned char)in[i + k];

			if (ch == '=' && i + 4 == n && k >= 2) {
				v[k] = 0;
				pad++;
				continue;
			}
			if (pad || (v[k] = b64_val(ch)) < 0)
				return -EBADMSG;
		}
		if (o + 3 - (size_t)pad > cap)
			return -ENOSPC;
		out[o++] = (unsigned char)(v[0] << 2 | v[1] >> 4);
		if (pad < 2)
			out[o++] = (unsigned char)((v[1] & 15) << 4 | v[2] >> 2);
		if (pad < 1)
			out[o++] = (unsigned char)((v[2] & 3) << 6 | v[3]);
	}
	return (ssize_t)o;
}

struct js {
	const unsigned char *p, *end;
};

static void js_ws(struct js *j)
{
	while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\r' || *j->p == '\n'))
		j->p++;
}

/* A JSON string at j->p (past its quote when done). Its contents go to
 * out (cap > 0) only if every byte is printable ASCII and there is no
 * escape; otherwise out is left empty. -1 if it is not a string. */
static int js_string(struct js *j, char *out, size_t cap)
{
	size_t n = 0;
	int safe = 1;

	if (cap)
		out[0] = '\0';
	if (j->p >= j->end || *j->p != '"')
		return -1;
	for (j->p++; j->p < j->end; j->p++) {
		unsigned char ch = *j->p;

		if (ch == '"') {
			j->p++;
			if (safe && cap)
				out[n] = '\0';
			else if (cap)
				out[0] = '\0';
			return 0;
		}
		if (ch < 32)
			return -1;
		if (ch == '\\') {
			safe = 0;
			if (++j->p >= j->end)
				return -1;
			continue;
		}
		if (ch > 126 || n + 1 >= cap)
			safe = 0;
		else if (safe)
			out[n++] = (char)ch;
	}
	return -1;
}

/* Any JSON value, skipped; scalars that are not strings are copied to out
 * like strings (a numeric "status"). Nesting is bounded. */
static int js_value(struct js *j, char *out, size_t cap, int depth)
{
	js_ws(j);
	if (cap)
		out[0] = '\0';
	if (j->p >= j->end)
		return -1;
	if (*j->p == '"')
		return js_string(j, out, cap);
	if (*j->p == '{' || *j->p == '[') {
		unsigned char close = *j->p == '{' ? '}' : ']';

		if (depth >= 16)
			return -1;
		j->p++;
		js_ws(j);
		if (j->p < j->end && *j->p == close) {
			j->p++;
			return 0;
		}
		for (;;) {
			if (close == '}') {
				js_ws(j);
				if (js_string(j, NULL, 0) < 0)
					return -1;
				js_ws(j);
				if (j->p >= j->end || *j->p++ != ':')
					return -1;
			}
			if (js_value(j, NULL, 0, depth + 1) < 0)
				return -1;
			js_ws(j);
			if (j->p >= j->end)
				return -1;
			if (*j->p == close) {
				j->p++;
				return 0;
			}
			if (*j->p++ != ',')
				return -1;
		}
	}
	{
		size_t n = 0;
		const unsigned char *s = j->p;

		while (j->p < j->end &&
		       ((*j->p >= 'a' && *j->p <= 'z') || (*j->p >= '0' && *j->p <= '9') ||
		        *j->p == '-' || *j->p == '+' || *j->p == '.' || *j->p == 'E'))
			j->p++;
		n = (size_t)(j->p - s);
		if (!n)
			return -1;
		if (cap && n < cap) {
			memcpy(out, s, n);
			out[n] = '\0';
		}
	}
	return 0;
}

/* The first occurrence of a key counts; a value too long for its field is
 * left out rather than cut. */
static void field_set(char *f, size_t cap, const char *val)
{
	size_t n = strlen(val);

	if (!f[0] && n < cap)
		memcpy(f, val, n + 1);
}

int sasl_oauth_error_parse(const char *b64, size_t n, struct sasl_oauth_err *e)
{
	unsigned char buf[SASL_OAUTH_CHALLENGE_MAX / 4 * 3];
	struct js j;
	ssize_t len;

	memset(e, 0, sizeof(*e));
	if (n > SASL_OAUTH_CHALLENGE_MAX)
		return -EBADMSG;
	len = sasl_b64_decode(b64, n, buf, sizeof(buf));
	if (len <= 0)
		return -EBADMSG;
	j.p = buf;
	j.end = buf + len;
	js_ws(&j);
	if (j.p >= j.end || *j.p++ != '{')
		return -EBADMSG;
	js_ws(&j);
	if (j.p < j.end && *j.p == '}') {
		j.p++;
	} else {
		for (;;) {
			char key[24], val[96];

			js_ws(&j);
			if (js_string(&j, key, sizeof(key)) < 0)
				goto bad;
			js_ws(&j);
			if (j.p >= j.end || *j.p++ != ':')
				goto bad;
			if (js_value(&j, val, sizeof(val), 1) < 0)
				goto bad;
			/* the first occurrence of a key counts */
			if (!strcmp(key, "status"))
				field_set(e->status, sizeof(e->status), val);
			else if (!strcmp(key, "scope"))
				field_set(e->scope, sizeof(e->scope), val);
			else if (!strcmp(key, "schemes"))
				field_set(e->schemes, sizeof(e->schemes), val);
			js_ws(&j);
			if (j.p >= j.end)
				goto bad;
			if (*j.p == '}') {
				j.p++;
				break;
			}
			if (*j.p++ != ',')
				goto bad;
		}
	}
	js_ws(&j);
	if (j.p != j.end)
		goto bad;
	return 0;
bad:
	memset(e, 0, sizeof(*e));
	return -EBADMSG;
}

/*
 * hdrdate — a message's delivery date from its header block (see
 * hdrdate.h).
 */
#include "protocols/hdrdate.h"

#include <string.h>
#include <strings.h>

/* Comments nest (RFC 5322 §3.2.2); deeper than this is not mail. */
#define HDRDATE_COMMENT_DEPTH 32

struct cur {
	const char *s;
	size_t n, i;
};

static int is_alpha(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* Skips folding white space and comments; -1 on an unclosed or too
 * deeply nested comment. */
static int cfws(struct cur *c)
{
	unsigned depth = 0;

	while (c->i < c->n) {
		char ch = c->s[c->i];

		if (depth) {
			if (ch == '\\' && c->i + 1 < c->n)
				c->i++;
			else if (ch == '(' && ++depth > HDRDATE_COMMENT_DEPTH)
				return -1;
			else if (ch == ')')
				depth--;
			c->i++;
			continue;
		}
		if (ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n') {
			c->i++;
		} else if (ch == '(') {
			depth = 1;
			c->i++;
		} else {
			break;
		}
	}
	return depth ? -1 : 0;
}

/* Up to max digits (at least one); the count in *nd. */
static int number(struct cur *c, unsigned max, unsigned *v, unsigned *nd)
{
	unsigned k = 0, x = 0;

	while (c->i < c->n && is_digit(c->s[c->i])) {
		if (++k > max)
			return -1;
		x = x * 10 + (unsigned)(c->s[c->i] - '0');
		c->i++;
	}
	if (!k)
		return -1;
	*v = x;
	if (nd)
		*nd = k;
	return 0;
}

/* An alphabetic word; its start and length. */
static size_t word(struct cur *c, const char **w)
{
	size_t st = c->i;

	while (c->i < c->n && is_alpha(c->s[c->i]))
		c->i++;
	*w = c->s + st;
	return c->i - st;
}

static int month_of(const char *w, size_t n)
{
	static const char *const names[] = {"jan", "feb", "mar", "apr", "may", "jun",
	                                    "jul", "aug", "sep", "oct", "nov", "dec"};

	if (n < 3)
		return 0;
	for (int m = 0; m < 12; m++)
		if (!strncasecmp(w, names[m], 3) &&
		    (n == 3 || (n <= 9 && n > 3))) /* "Jan" or a full name */
			return m + 1;
	return 0;
}

static unsigned days_in(unsigned y, unsigned m)
{
	static const unsigned char dm[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

	if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
		return 29;
	return dm[m - 1];
}

/* RFC 5322 §4.3: the zones of obs-zone with known offsets; every other
 * alphabetic zone (military letters included) means -0000. */
static void alpha_zone(const char *w, size_t n, struct imap_date *d)
{
	static const struct {
		const char *name;
		int hours;
	} z[] = {{"UT", 0},   {"UTC", 0},  {"GMT", 0},  {"Z", 0},    {"EST", -5}, {"EDT", -4},
	         {"CST", -6}, {"CDT", -5}, {"MST", -7}, {"MDT", -6}, {"PST", -8}, {"PDT", -7}};

	d->tz_sign = '-';
	d->tz_hour = d->tz_min = 0;
	for (size_t i = 0; i < sizeof(z) / sizeof(z[0]); i++)
		if (strlen(z[i].name) == n && !strncasecmp(w, z[i].name, n)) {
			d->tz_sign = z[i].hours < 0 ? '-' : '+';
			d->tz_hour = (uint8_t)(z[i].hours < 0 ? -z[i].hours : z[i].hours);
			return;
		}
}

/* One separator between date fields: folding white space, comments, and
 * (leniently) one '-' as in "1-Jan-2020". */
static int sep(struct cur *c)
{
	if (cfws(c) < 0)
		return -1;
	if (c->i < c->n && c->s[c->i] == '-') {
		c->i++;
		return cfws(c);
	}
	return 0;
}

int hdrdate_parse(const char *s, size_t n, struct imap_date *d)
{
	struct cur c = {s, n, 0};
	unsigned day, year, hour, min, sec = 0, nd;
	const char *w;
	size_t wl;
	int mon;

	memset(d, 0, sizeof(*d));
	if (cfws(&c) < 0 || c.i >= n)
		return -1;
	if (is_alpha(s[c.i])) { /* day-of-week, with or without its comma */
		wl = word(&c, &w);
		if (wl < 3 || wl > 9 || cfws(&c) < 0)
			return -1;
		if (c.i < n && s[c.i] == ',')
			c.i++;
		if (cfws(&c) < 0)
			return -1;
	}
	if (number(&c, 2, &day, NULL) < 0 || sep(&c) < 0)
		return -1;
	wl = word(&c, &w);
	if (!(mon = month_of(w, wl)) || sep(&c) < 0)
		return -1;
	if (number(&c, 4, &year, &nd) < 0 || nd < 2)
		return -1;
	if (nd == 2) /* RFC 5322 §4.3 */
		year += year < 50 ? 2000 : 1900;
	else if (nd == 3)
		year += 1900;
	if (year < 1 || year > 9999 || day < 1 || day > days_in(year, (unsigned)mon))
		return -1;
	if (cfws(&c) < 0 || number(&c, 2, &hour, NULL) < 0 || cfws(&c) < 0 || c.i >= n ||
	    s[c.i] != ':')
		return -1;
	c.i++;
	if (cfws(&c) < 0 || number(&c, 2, &min, &nd) < 0 || nd != 2)
		return -1;
	{
		size_t save = c.i;

		if (cfws(&c) == 0 && c.i < n && s[c.i] == ':') {
			c.i++;
			if (cfws(&c) < 0 || number(&c, 2, &sec, &nd) < 0 || nd != 2)
				return -1;
		} else {
			c.i = save;
		}
	}
	if (hour > 23 || min > 59 || sec > 60)
		return -1;
	d->year = (uint16_t)year;
	d->mon = (uint8_t)mon;
	d->day = (uint8_t)day;
	d->hour = (uint8_t)hour;
	d->min = (uint8_t)min;
	d->sec = (uint8_t)sec;
	d->tz_sign = '-'; /* no zone: -0000, "unknown" (RFC 5322 §3.3) */
	if (cfws(&c) < 0)
		return 0; /* an unclosed comment after the time: no zone */
	if (c.i < n && (s[c.i] == '+' || s[c.i] == '-')) {
		char sign = s[c.i++];
		unsigned z;

		if (number(&c, 4, &z, &nd) < 0 || nd != 4 || z / 100 > 23 || z % 100 > 59)
			return -1;
		d->tz_sign = sign;
		d->tz_hour = (uint8_t)(z / 100);
		d->tz_min = (uint8_t)(z % 100);
	} else if (c.i < n && is_alpha(s[c.i])) {
		wl = word(&c, &w);
		alpha_zone(w, wl, d);
	}
	return 0;
}

/* Is field p[0..n) named name (case-insensitive, white space allowed
 * before the colon: RFC 5322 §4.5)? Then *v is where its value starts. */
static int field_is(const char *p, size_t n, const char *name, size_t *v)
{
	size_t l = strlen(name), i;

	if (n <= l || strncasecmp(p, name, l))
		return 0;
	for (i = l; i < n && (p[i] == ' ' || p[i] == '\t'); i++)
		;
	if (i >= n || p[i] != ':')
		return 0;
	*v = i + 1;
	return 1;
}

enum hdrdate_from hdrdate_pick(const char *p, size_t n, struct imap_date *d)
{
	struct imap_date dd, date = {0};
	int have_date = 0;
	size_t i = 0;

	while (i < n) {
		size_t fs = i, e = i, v;

		if (p[i] == '\n' || (p[i] == '\r' && i + 1 < n && p[i + 1] == '\n'))
			break; /* the empty line: the header block ends */
		for (;;) {     /* to the end of the field: lines that go on start with WSP */
			const char *lf = memchr(p + e, '\n', n - e);

			if (!lf)
				goto out; /* cut short: the field is incomplete */
			e = (size_t)(lf - p) + 1;
			if (e >= n)
				goto out; /* cannot tell whether it goes on */
			if (p[e] != ' ' && p[e] != '\t')
				break;
		}
		if (field_is(p + fs, e - fs, "Received", &v)) {
			const char *semi = NULL;

			for (size_t k = fs + v; k < e; k++)
				if (p[k] == ';')
					semi = p + k;
			if (semi && hdrdate_parse(semi + 1, (size_t)(p + e - semi - 1), &dd) == 0) {
				*d = dd;
				return HDRDATE_RECEIVED;
			}
		} else if (!have_date && field_is(p + fs, e - fs, "Date", &v) &&
		           hdrdate_parse(p + fs + v, e - fs - v, &dd) == 0) {
			date = dd;
			have_date = 1;
		}
		i = e;
	}
out:
	if (!have_date)
		return HDRDATE_NONE;
	*d = date;
	return HDRDATE_DATE;
}

/* imap_syntax — validation and re-serialisation of values that cross
 * servers (see imap_syntax.h). Pure functions, no allocation. */
#include "protocols/imap_syntax.h"

#include <string.h>
#include <strings.h>

static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

static int is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* n digits at s[*i] → *v */
static int digits(const char *s, size_t len, size_t *i, size_t n, unsigned *v)
{
	*v = 0;
	if (*i + n > len)
		return -1;
	for (size_t k = 0; k < n; k++) {
		if (!is_digit(s[*i + k]))
			return -1;
		*v = *v * 10 + (unsigned)(s[*i + k] - '0');
	}
	*i += n;
	return 0;
}

static int expect(const char *s, size_t len, size_t *i, char c)
{
	if (*i >= len || s[*i] != c)
		return -1;
	(*i)++;
	return 0;
}

static int leap(unsigned y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static unsigned month_days(unsigned y, unsigned m)
{
	static const unsigned char md[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

	return m == 2 && leap(y) ? 29 : md[m - 1];
}

int imap_date_parse(const char *s, size_t n, struct imap_date *d)
{
	unsigned day, year, hh, mm, ss, tzh, tzm;
	size_t i = 0;
	int mon = -1;
	char sign;

	if (!s)
		return -1;
	/* date-day-fixed = (SP DIGIT) / 2DIGIT; one bare DIGIT is taken too */
	if (n >= 2 && s[0] == ' ' && is_digit(s[1])) {
		day = (unsigned)(s[1] - '0');
		i = 2;
	} else if (n >= 2 && is_digit(s[0]) && is_digit(s[1])) {
		day = (unsigned)(s[0] - '0') * 10 + (unsigned)(s[1] - '0');
		i = 2;
	} else if (n >= 1 && is_digit(s[0])) {
		day = (unsigned)(s[0] - '0');
		i = 1;
	} else {
		return -1;
	}
	if (expect(s, n, &i, '-') < 0 || i + 3 > n)
		return -1;
	for (int m = 0; m < 12; m++)
		if (!strncasecmp(s + i, months[m], 3))
			mon = m + 1;
	if (mon < 0)
		return -1;
	i += 3;
	if (expect(s, n, &i, '-') < 0 || digits(s, n, &i, 4, &year) < 0 ||
	    expect(s, n, &i, ' ') < 0 || digits(s, n, &i, 2, &hh) < 0 ||
	    expect(s, n, &i, ':') < 0 || digits(s, n, &i, 2, &mm) < 0 ||
	    expect(s, n, &i, ':') < 0 || digits(s, n, &i, 2, &ss) < 0 ||
	    expect(s, n, &i, ' ') < 0 || i >= n)
		return -1;
	sign = s[i++];
	if ((sign != '+' && sign != '-') || digits(s, n, &i, 2, &tzh) < 0 ||
	    digits(s, n, &i, 2, &tzm) < 0 || i != n)
		return -1;
	if (day < 1 || day > month_days(year, (unsigned)mon) || hh > 23 || mm > 59 || ss > 60 ||
	    tzh > 23 || tzm > 59)
		return -1;
	d->year = (uint16_t)year;
	d->mon = (uint8_t)mon;
	d->day = (uint8_t)day;
	d->hour = (uint8_t)hh;
	d->min = (uint8_t)mm;
	d->sec = (uint8_t)ss;
	d->tz_sign = sign;
	d->tz_hour = (uint8_t)tzh;
	d->tz_min = (uint8_t)tzm;
	return 0;
}

static void put2(char *o, unsigned v)
{
	o[0] = (char)('0' + v / 10 % 10);
	o[1] = (char)('0' + v % 10);
}

size_t imap_date_format(const struct imap_date *d, char out[IMAP_DATE_LEN + 1])
{
	unsigned mon = d->mon >= 1 && d->mon <= 12 ? d->mon : 1;

	/* Built digit by digit from the fields: every byte is known. */
	put2(out, d->day);
	out[2] = '-';
	memcpy(out + 3, months[mon - 1], 3);
	out[6] = '-';
	put2(out + 7, (unsigned)d->year / 100);
	put2(out + 9, (unsigned)d->year % 100);
	out[11] = ' ';
	put2(out + 12, d->hour);
	out[14] = ':';
	put2(out + 15, d->min);
	out[17] = ':';
	put2(out + 18, d->sec);
	out[20] = ' ';
	out[21] = d->tz_sign == '-' ? '-' : '+';
	put2(out + 22, d->tz_hour);
	put2(out + 24, d->tz_min);
	out[IMAP_DATE_LEN] = '\0';
	return IMAP_DATE_LEN;
}

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian; H. Hinnant's
 * days_from_civil). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
	int64_t era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

int64_t imap_date_unix(const struct imap_date *d)
{
	int64_t t = days_from_civil(d->year, d->mon, d->day) * 86400 + d->hour * 3600 +
	            d->min * 60 + d->sec;
	int64_t off = (int64_t)d->tz_hour * 3600 + (int64_t)d->tz_min * 60;

	return d->tz_sign == '-' ? t + off : t - off;
}

int imap_atom_ok(const char *s, size_t n)
{
	if (!n)
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c <= ' ' || c >= 0x7f || strchr("(){%*\"\\]", c))
			return 0;
	}
	return 1;
}

static const char *const system_flags[] = {"\\Answered", "\\Flagged", "\\Deleted", "\\Seen",
                                           "\\Draft"};

enum imap_flag_kind imap_flag_classify(const char *s, size_t n, const char **canon)
{
	if (canon)
		*canon = NULL;
	if (n && s[0] == '\\') {
		for (size_t i = 0; i < sizeof(system_flags) / sizeof(system_flags[0]); i++)
			if (strlen(system_flags[i]) == n && !strncasecmp(s, system_flags[i], n)) {
				if (canon)
					*canon = system_flags[i];
				return IMAP_FLAG_SYSTEM;
			}
		if (n == 7 && !strncasecmp(s, "\\Recent", 7))
			return IMAP_FLAG_RECENT;
		return IMAP_FLAG_INVALID;
	}
	return imap_atom_ok(s, n) ? IMAP_FLAG_KEYWORD : IMAP_FLAG_INVALID;
}

const char *imap_mailbox_name_bad(const char *s, size_t n)
{
	if (!n)
		return "empty name";
	if (memchr(s, '\0', n))
		return "name contains a NUL byte";
	if (memchr(s, '\r', n) || memchr(s, '\n', n))
		return "name contains a CR or LF";
	return NULL;
}

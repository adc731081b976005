/*
 * test_sasl_plain — the PLAIN SASL message (protocols/sasl_plain): base64
 * exact for RFC 4616's examples and small known ones, an empty authzid,
 * a NUL inside a field refused, the bounds of the message and of out.
 */
#include "protocols/sasl_plain.h"

#include <errno.h>
#include <string.h>

#include "tests/unit/unit.h"

#define S(x) x, sizeof(x) - 1

static void t_known(struct unit_ctx *u)
{
	char out[SASL_PLAIN_B64_MAX];
	ssize_t n;

	/* RFC 4616 §4, the two examples */
	n = sasl_plain(out, sizeof(out), S(""), S("tim"), S("tanstaaftanstaaf"));
	UNIT_CHECKF(u, n == 28 && !strcmp(out, "AHRpbQB0YW5zdGFhZnRhbnN0YWFm"), "%zd %s", n, out);
	n = sasl_plain(out, sizeof(out), S("Kurt"), S("Ursel"), S("xipj3plmq"));
	UNIT_CHECKF(u, n == 28 && !strcmp(out, "S3VydABVcnNlbAB4aXBqM3BsbXE="), "%zd %s", n, out);
	/* padding: 4 bytes -> "==", 3 bytes -> none */
	n = sasl_plain(out, sizeof(out), S(""), S("a"), S("b"));
	UNIT_CHECKF(u, n == 8 && !strcmp(out, "AGEAYg=="), "%zd %s", n, out);
	/* an empty password is sent as it is (the server decides) */
	n = sasl_plain(out, sizeof(out), S(""), S("u"), S(""));
	UNIT_CHECKF(u, n == 4 && !strcmp(out, "AHUA"), "%zd %s", n, out);
}

static void t_nul_refused(struct unit_ctx *u)
{
	char out[SASL_PLAIN_B64_MAX];

	memcpy(out, "x", 2);
	UNIT_CHECK(u,
	           sasl_plain(out, sizeof(out), S(""), S("ti\0m"), S("pw")) == -EINVAL && !out[0]);
	UNIT_CHECK(u,
	           sasl_plain(out, sizeof(out), S(""), S("tim"), S("p\0w")) == -EINVAL && !out[0]);
	UNIT_CHECK(u, sasl_plain(out, sizeof(out), S("a\0"), S("tim"), S("pw")) == -EINVAL);
}

static void t_bounds(struct unit_ctx *u)
{
	static char big[SASL_PLAIN_MAX + 1], out[SASL_PLAIN_B64_MAX + 8];
	char small[9];

	memset(big, 'p', sizeof(big));
	/* the longest message fits exactly the documented out */
	UNIT_CHECK(u, sasl_plain(out, SASL_PLAIN_B64_MAX, S(""), S("u"), big, SASL_PLAIN_MAX - 3) ==
	                  SASL_PLAIN_B64_MAX - 1);
	UNIT_CHECK(u, sasl_plain(out, sizeof(out), S(""), S("u"), big, SASL_PLAIN_MAX - 2) ==
	                      -ENOSPC &&
	                  !out[0]);
	UNIT_CHECK(u, sasl_plain(out, sizeof(out), big, sizeof(big), S("u"), S("p")) == -ENOSPC);
	/* "AGEAYg==" needs 9 bytes with its NUL */
	UNIT_CHECK(u, sasl_plain(small, 9, S(""), S("a"), S("b")) == 8);
	UNIT_CHECK(u, sasl_plain(small, 8, S(""), S("a"), S("b")) == -ENOSPC && !small[0]);
	UNIT_CHECK(u, sasl_plain(small, 0, S(""), S("a"), S("b")) == -ENOSPC);
}

int main(void)
{
	struct unit_ctx u = {0};

	UNIT_RUN(&u, t_known);
	UNIT_RUN(&u, t_nul_refused);
	UNIT_RUN(&u, t_bounds);
	return unit_done(&u);
}

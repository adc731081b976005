/*
 * cli_limits — --max-per-host and --max-bytes-per-second for every command
 * that connects (migrate, backup, restore, run): the one place a limiter
 * (engine/sync/hostlimit.h) is made from the options, its end-of-run
 * invariant checked, and its hosts reported (JSON member, stderr lines).
 *
 * Not for: the limiting itself (hostlimit.c), which jobs share a limiter
 * (the commands: one per process, run --threads shares it).
 */
#include "engine/cli/cli_int.h"

#include <stdio.h>
#include <string.h>

#include "engine/base/err.h"
#include "engine/sync/hostlimit.h"

int cli_limits_new(const struct cli *c, struct loop *l, struct hostlimit **out)
{
	if (hostlimit_new(out, l, c->max_per_host) < 0) {
		fprintf(stderr, "mailferry: out of memory\n");
		return 1;
	}
	hostlimit_set_rate(*out, c->max_bps);
	return 0;
}

int cli_limits_check(const struct hostlimit *hl)
{
	if (!hostlimit_count(hl))
		return 0;
	/* hostlimit.h's invariant: every slot granted was released */
	mf_log(MF_LOG_ERROR, "internal: %u connection slots never released", hostlimit_count(hl));
	return 1;
}

void cli_hosts_json(FILE *f, const struct hostlimit *hl)
{
	struct hostlimit_stat hs;
	size_t n = hostlimit_nhosts(hl);

	if (!hl)
		return;
	fprintf(f, ",\"max_bytes_per_second\":%llu,\"hosts\":[",
	        (unsigned long long)hostlimit_rate(hl));
	for (size_t i = 0; i < n; i++) {
		hostlimit_stat(hl, i, &hs);
		fprintf(f, "%s{\"host\":", i ? "," : "");
		mf_json_str(f, hs.key, strlen(hs.key));
		fprintf(f,
		        ",\"bytes\":%llu,\"seconds\":%.3f,\"paused_seconds\":%.3f,"
		        "\"peak_connections\":%u}",
		        (unsigned long long)hs.bytes, (double)hs.ms / 1000.0,
		        (double)hs.paused_ms / 1000.0, hs.peak);
	}
	fputc(']', f);
}

void cli_hosts_log(const struct hostlimit *hl)
{
	struct hostlimit_stat hs;

	if (!hostlimit_rate(hl) || !mf_log_enabled(MF_LOG_INFO))
		return;
	for (size_t i = 0; i < hostlimit_nhosts(hl); i++) {
		hostlimit_stat(hl, i, &hs);
		mf_log(MF_LOG_INFO,
		       "host %s: %.1f MB of messages in %.1f s (%.2f MB/s, limit %.2f MB/s), "
		       "connections waited %.1f s for it",
		       hs.key, (double)hs.bytes / 1e6, (double)hs.ms / 1000.0,
		       hs.ms ? (double)hs.bytes / ((double)hs.ms / 1000.0) / 1e6 : 0.0,
		       (double)hostlimit_rate(hl) / 1e6, (double)hs.paused_ms / 1000.0);
	}
}

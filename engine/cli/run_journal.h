/*
 * run_journal — which accounts of an accounts file a run does:
 *
 *  - the identity of a line (SHA-256 of its line number's content that
 *    matters: both URLs with any password redacted, and the line's options;
 *    never a password), so that a changed line is a new account;
 *  - shard membership (--shard K/N): by a hash of the account pair (the
 *    same job key the account's state directory is named by), so inserting
 *    or removing lines never moves another account to another shard (and
 *    away from the state volume that knows it); lines that name no account
 *    (bad lines) are placed by line number;
 *  - the run journal under --state: one append-only record per finished
 *    account (line, identity, exit class, counts; synced at close), so that
 *    `run --resume` skips what an earlier, killed run finished. A record
 *    torn by a crash is ignored (its account runs again, which the state
 *    makes exact).
 *
 * Not for: running accounts (run.c), reports (run_report.c).
 */
#ifndef MF_RUN_JOURNAL_H
#define MF_RUN_JOURNAL_H

#include <stddef.h>
#include <stdint.h>

#include "engine/base/err.h"

#define RUN_ID_LEN 16 /* bytes of SHA-256 kept as a line's identity */
#define RUN_JOURNAL_NAME "run-journal"

struct run_id {
	unsigned char b[RUN_ID_LEN];
};

/* Identity of words[0..n) (each NUL-terminated): SHA-256 over them with
 * their lengths. 0, or -1 if the digest failed. */
int run_id_of(const char *const *words, size_t n, struct run_id *out);

/* The shard (0..nshards-1) of an account whose job key is key[0..n):
 * the first 8 bytes of SHA-256(key), big-endian, modulo nshards. */
unsigned run_shard_of_key(const char *key, size_t n, unsigned nshards);
/* The shard of a line that names no account. */
unsigned run_shard_of_line(unsigned line, unsigned nshards);
/* Parses "K/N" (0 <= K < N <= 100000): 0, or -1. */
int run_shard_parse(const char *s, unsigned *k, unsigned *n);
/* --shard K/N, or --shard auto with --shards N and $JOB_COMPLETION_INDEX
 * (shard NULL and shards 0 when not given: *n stays 0, every line): 0, or
 * 2 with the reason on stderr. */
int run_shard_select(const char *shard, unsigned shards, unsigned *k, unsigned *n);

/* One finished account, as the journal records it. */
struct run_journal_rec {
	unsigned line;
	struct run_id id;
	int exit;
	uint64_t copied, skipped, failed, bytes;
	uint64_t ms;
	size_t seq; /* reader: its place in the file */
};

/* Formats rec as one journal line (with its newline): its length, or -1. */
int run_journal_format(const struct run_journal_rec *rec, char *out, size_t cap);
/* Parses one journal line (without its newline): 0, or -1 (torn or not
 * a record: ignored by the reader). */
int run_journal_parse_line(const char *p, size_t n, struct run_journal_rec *out);

/* The journal of one state directory. */
struct run_journal {
	int fd;
	struct run_journal_rec *rec; /* what an earlier run recorded, sorted */
	size_t nrec;
};

/* Opens DIR/run-journal: with resume, reads what it holds (last record of
 * a line wins); without, starts it empty. 0, or a negative code with err. */
int run_journal_open(struct run_journal *j, const char *dir, int resume, struct mf_error *err);
/* The record of (line, id) if an earlier run finished it with exit 0. */
const struct run_journal_rec *run_journal_done(const struct run_journal *j, unsigned line,
                                               const struct run_id *id);
/* Appends rec (written, not synced: run_journal_close syncs): 0, or a
 * negative code with err. */
int run_journal_append(struct run_journal *j, const struct run_journal_rec *rec,
                       struct mf_error *err);
void run_journal_close(struct run_journal *j);

#endif

# mailferry — build, test, demo, bench.  See README.md.
#
#   make            release build: build/release/mailferry (and ./mailferry link)
#   make asan       ASan+UBSan build: build/asan/mailferry and unit tests
#   make tsan       ThreadSanitizer build: build/tsan/mailferry (run --threads)
#   make fuzz-build libFuzzer targets (clang): build/fuzz/fuzz_*
#   make fuzz       builds them, runs each for FUZZ_SECONDS (300) or FUZZ_RUNS
#                   executions; prints executions, exec/s and coverage per target
#   make test       deps, builds, unit + fuzz (short) + integration; "N passed, N failed"
#   make test T=name   one test (unit binary or integration script by name);
#                      T="a b" several
#   make demo       deps, build, private Dovecot, migrate a generated account twice
#   make bench / bench-full   see bench/README.md
#   make soak       20,800 messages, 20 SIGKILLs + 20 dropped connections, lost/duplicated
#   make install    PREFIX=/usr/local DESTDIR=: bin/mailferry and share/man/man1/mailferry.1

B       ?= build
JOBS    ?= $(shell nproc 2>/dev/null || echo 2)
CC      ?= cc
CLANG   ?= clang
PKGS     = liburing openssl libzstd lmdb
WARN     = -Wall -Wextra -Wshadow -Wstrict-prototypes -Werror
BASE     = -std=c11 -D_GNU_SOURCE -I. $(WARN) -MMD -MP
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
LIBS     = $(PKG_LIBS) -pthread

REL_CFLAGS  = $(BASE) $(PKG_CFLAGS) -O2 -g
ASAN_CFLAGS = $(BASE) $(PKG_CFLAGS) -O1 -g -fno-omit-frame-pointer \
              -fsanitize=address,undefined -fno-sanitize-recover=undefined
TSAN_CFLAGS = $(BASE) $(PKG_CFLAGS) -O1 -g -fno-omit-frame-pointer -fsanitize=thread
FUZZ_CFLAGS = -std=c11 -D_GNU_SOURCE -I. -Wall -Wextra -Werror $(PKG_CFLAGS) -O1 -g \
              -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined

# Library sources: every module but main.c.  Tools in bench/ are one file each.
LIB_SRC   = $(filter-out engine/cli/main.c,$(wildcard engine/*/*.c protocols/*.c store/*.c))
UNIT_SRC  = $(wildcard tests/unit/test_*.c)
FUZZ_SRC  = $(wildcard tests/fuzz/fuzz_*.c)
BENCH_SRC = $(wildcard bench/*.c)

REL_OBJ  = $(LIB_SRC:%.c=$(B)/release/%.o)
ASAN_OBJ = $(LIB_SRC:%.c=$(B)/asan/%.o)
TSAN_OBJ = $(LIB_SRC:%.c=$(B)/tsan/%.o)

all: $(B)/release/mailferry tools
	@ln -sf $(B)/release/mailferry mailferry

$(B)/release/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(REL_CFLAGS) -c $< -o $@
$(B)/asan/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ASAN_CFLAGS) -c $< -o $@

$(B)/tsan/%.o: %.c
	@mkdir -p $(dir $@)
	$(CLANG) $(TSAN_CFLAGS) -c $< -o $@
$(B)/tsan/libmf.a: $(TSAN_OBJ)
	@rm -f $@; ar rcs $@ $^
# ThreadSanitizer build of the binary (run --threads; t_threads builds it)
$(B)/tsan/mailferry: $(B)/tsan/engine/cli/main.o $(B)/tsan/libmf.a
	$(CLANG) $(TSAN_CFLAGS) -o $@ $^ $(LIBS)
tsan: $(B)/tsan/mailferry
# ThreadSanitizer build of test_archive (t_archive_tsan: the archive's
# compressing helper threads, store/archive_zpool.c)
$(B)/tsan/tests/test_archive: tests/unit/test_archive.c $(B)/tsan/libmf.a
	@mkdir -p $(dir $@)
	$(CLANG) $(TSAN_CFLAGS) -o $@ $< $(B)/tsan/libmf.a $(LIBS)

$(B)/release/libmf.a: $(REL_OBJ)
	@rm -f $@; ar rcs $@ $^
$(B)/asan/libmf.a: $(ASAN_OBJ)
	@rm -f $@; ar rcs $@ $^

$(B)/release/mailferry: $(B)/release/engine/cli/main.o $(B)/release/libmf.a
	$(CC) $(REL_CFLAGS) -o $@ $^ $(LIBS)
$(B)/asan/mailferry: $(B)/asan/engine/cli/main.o $(B)/asan/libmf.a
	$(CC) $(ASAN_CFLAGS) -o $@ $^ $(LIBS)

# bench/ tools (corpus generator, ceiling client, comparer): release build;
# smtp_send too, for the LMTP ceiling (bench/lmtp_ceiling.sh).
TOOLS = $(BENCH_SRC:bench/%.c=$(B)/release/bench/%) $(B)/release/tools/smtp_send
tools: $(TOOLS)
$(B)/release/tools/%: tests/tools/%.c $(B)/release/libmf.a
	@mkdir -p $(dir $@)
	$(CC) $(REL_CFLAGS) -o $@ $< $(B)/release/libmf.a $(LIBS)
$(B)/release/bench/%: bench/%.c $(B)/release/libmf.a
	@mkdir -p $(dir $@)
	$(CC) $(REL_CFLAGS) -o $@ $< $(B)/release/libmf.a $(LIBS) -lm

UNIT_BIN = $(UNIT_SRC:tests/unit/%.c=$(B)/asan/tests/%)
# tests/unit/memsrv.c: the in-memory IMAP peer the job logic's tests share
UNIT_LIB = $(B)/asan/tests/memsrv.o
$(UNIT_LIB): tests/unit/memsrv.c
	@mkdir -p $(dir $@)
	$(CC) $(ASAN_CFLAGS) -c $< -o $@
$(B)/asan/tests/%: tests/unit/%.c $(UNIT_LIB) $(B)/asan/libmf.a
	@mkdir -p $(dir $@)
	$(CC) $(ASAN_CFLAGS) -o $@ $< $(UNIT_LIB) $(B)/asan/libmf.a $(LIBS)

# tests/tools/: one-file test clients (ASan build) that integration tests drive.
TTOOL_SRC = $(wildcard tests/tools/*.c)
TTOOL_BIN = $(TTOOL_SRC:tests/tools/%.c=$(B)/asan/tools/%)
$(B)/asan/tools/%: tests/tools/%.c $(B)/asan/libmf.a
	@mkdir -p $(dir $@)
	$(CC) $(ASAN_CFLAGS) -o $@ $< $(B)/asan/libmf.a $(LIBS)

asan: $(B)/asan/mailferry $(UNIT_BIN) $(TTOOL_BIN)

# The library is compiled once for every fuzz target (instrumented, not
# linked with libFuzzer's main), each target then links against it.
FUZZ_LIB_CFLAGS = $(subst -fsanitize=fuzzer$(comma),-fsanitize=fuzzer-no-link$(comma),$(FUZZ_CFLAGS))
comma := ,
FUZZ_OBJ = $(LIB_SRC:%.c=$(B)/fuzz/obj/%.o)
$(B)/fuzz/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CLANG) $(FUZZ_LIB_CFLAGS) -MMD -MP -c $< -o $@
$(B)/fuzz/libmf.a: $(FUZZ_OBJ)
	@rm -f $@; ar rcs $@ $^
FUZZ_BIN = $(FUZZ_SRC:tests/fuzz/%.c=$(B)/fuzz/%)
$(B)/fuzz/%: tests/fuzz/%.c $(B)/fuzz/libmf.a
	@mkdir -p $(dir $@)
	$(CLANG) $(FUZZ_CFLAGS) -o $@ $< $(B)/fuzz/libmf.a $(LIBS)
fuzz-build: $(FUZZ_BIN)
fuzz: fuzz-build
	@tests/fuzz/run.sh $(FUZZ_BIN)

deps:
	@scripts/deps.sh

test: deps
	@$(MAKE) --no-print-directory -j$(JOBS) all asan fuzz-build tsan $(B)/tsan/tests/test_archive
	@tests/run.sh $(T)

demo: deps
	@$(MAKE) --no-print-directory all
	@scripts/demo.sh

bench: deps
	@$(MAKE) --no-print-directory all
	@bench/run.sh quick

# >= 20,000 messages through the fault proxy: 20 SIGKILLs and 20 dropped
# connections (SOAK_KILLS, SOAK_DROPS), then lost and duplicated counts
soak: deps
	@$(MAKE) --no-print-directory all
	@bash tests/soak.sh

bench-full: deps
	@$(MAKE) --no-print-directory all
	@bench/run.sh full

# make install [PREFIX=/usr/local] [DESTDIR=]: the binary and mailferry(1)
PREFIX  ?= /usr/local
install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 755 $(B)/release/mailferry $(DESTDIR)$(PREFIX)/bin/mailferry
	install -m 644 doc/mailferry.1 $(DESTDIR)$(PREFIX)/share/man/man1/mailferry.1

format:
	clang-format -i $(wildcard engine/*/*.[ch] protocols/*.[ch] store/*.[ch] bench/*.[ch] tests/*/*.[ch])

clean:
	rm -rf build mailferry

.PHONY: all tools asan tsan fuzz fuzz-build deps test demo bench bench-full soak format clean install
-include $(shell find build -name '*.d' 2>/dev/null)

# the status page is built into status_page.o (.incbin)
$(B)/release/engine/cli/status_page.o $(B)/asan/engine/cli/status_page.o $(B)/fuzz/obj/engine/cli/status_page.o: engine/cli/status_page.html

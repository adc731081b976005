#!/usr/bin/env bash
# t_archive_tsan — the archive's compressing helper threads
# (store/archive_zpool.c) under ThreadSanitizer: test_archive, whose every
# case runs once with the writer compressing and once with 2 helpers,
# built with -fsanitize=thread (build/tsan/tests/test_archive, built here
# when older than the sources). Every check passes and TSan reports
# nothing (tests/integration/tsan.supp: LMDB's writer mutexes only).
. "$(dirname "$0")/lib.sh"

BIN=$ROOT/build/tsan/tests/test_archive
if ! make -s -C "$ROOT" build/tsan/tests/test_archive >"$T_TMP/build.log" 2>&1; then
	not_ok archive-tsan-build "$(tail -n 3 "$T_TMP/build.log" | tr '\n' ' ')"
	exit 1
fi
TSAN_OPTIONS="halt_on_error=0 exitcode=66 second_deadlock_stack=1 suppressions=$ROOT/tests/integration/tsan.supp" \
	"$BIN" >"$T_TMP/out" 2>"$T_TMP/err"
rc=$?
sum=$(tail -n 1 "$T_TMP/out")
nw=$(grep -c "WARNING: ThreadSanitizer" "$T_TMP/err")
helpers=$(grep -c "^# frames compressed on 2 helper threads" "$T_TMP/out")
[ "$rc" = 0 ] && [ "$nw" = 0 ] && [ "$helpers" = 1 ] && [[ "$sum" =~ ^[1-9][0-9]*\ passed,\ 0\ failed$ ]] &&
	ok "archive-tsan-clean ($sum, 0 reports)" ||
	not_ok archive-tsan-clean "exit $rc, $nw ThreadSanitizer reports, '$sum': $(grep -m1 -A6 'WARNING: ThreadSanitizer' "$T_TMP/err" | tr '\n' ' ' | cut -c1-600)$(grep -m3 '^not ok' "$T_TMP/out" | tr '\n' ' ')"

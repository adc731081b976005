# tests/integration/lib.sh — sourced by tests/integration/t_*.sh.
#
# Each test runs from the repository root as `bash tests/integration/t_x.sh`,
# prints "ok - NAME" or "not ok - NAME: reason" per check, and cleans up
# (servers stopped, temp files removed; KEEP=1 keeps the files) on any exit.
#
#   dv_start NAME [dovecot.sh start options]  private Dovecot in $T_TMP/NAME on a
#                                             free port range; its env is loaded
#                                             into variables NAME_IMAP_PORT,
#                                             NAME_IMAPS_PORT, NAME_CA_FILE,
#                                             NAME_MAIL_ROOT, NAME_DIR
#   corpus NAME USER PROFILE [SEED]           generated mail into USER's Maildir
#   mf ARGS...                                 the ASan build of mailferry
#   ok NAME / not_ok NAME REASON
#   check NAME CMD...                         ok if CMD exits 0
#   expect_exit NAME CODE CMD...              ok if CMD exits CODE
#   json_field FILE KEY                       a number from the last JSON line
set -u
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT=$PWD
MF=$ROOT/build/asan/mailferry
MF_REL=$ROOT/build/release/mailferry
BENCH_BIN=$ROOT/build/release/bench
T_TMP=$(mktemp -d /tmp/mf-test.XXXXXX)
T_DV=()
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

t_cleanup() {
	local d
	for d in "${T_DV[@]}"; do "$ROOT/scripts/dovecot.sh" stop "$d" >/dev/null 2>&1; done
	[ "${KEEP:-0}" = 1 ] && echo "# kept $T_TMP" >&2 || rm -rf "$T_TMP"
}
trap t_cleanup EXIT

ok() { echo "ok - $1"; }
not_ok() { echo "not ok - $1: $2"; }

check() { # NAME CMD...
	local name=$1 err; shift
	if err=$("$@" 2>&1 >/dev/null); then ok "$name"; else not_ok "$name" "$(printf '%s' "$err" | tail -n 1)"; fi
}

expect_exit() { # NAME CODE CMD...
	local name=$1 want=$2 rc; shift 2
	"$@" >"$T_TMP/last.out" 2>"$T_TMP/last.err"; rc=$?
	if [ "$rc" = "$want" ]; then ok "$name"; else not_ok "$name" "exit $rc, wanted $want: $(tail -n 1 "$T_TMP/last.err")"; fi
}

# A port base with five free ports, different for each instance.
t_free_base() {
	local b
	for b in $(seq $((20000 + (RANDOM % 200) * 50)) 50 45000); do
		(exec 3<>"/dev/tcp/127.0.0.1/$b") 2>/dev/null && continue
		(exec 3<>"/dev/tcp/127.0.0.1/$((b + 1))") 2>/dev/null && continue
		(exec 3<>"/dev/tcp/127.0.0.1/$((b + 4))") 2>/dev/null && continue
		echo "$b"; return 0
	done
	return 1
}

dv_start() { # NAME [options]
	local name=$1 dir=$T_TMP/$1 base k v; shift
	base=$(t_free_base) || { echo "no free ports" >&2; return 1; }
	"$ROOT/scripts/dovecot.sh" start "$dir" --port-base "$base" "$@" >/dev/null || return 1
	T_DV+=("$dir")
	while IFS='=' read -r k v; do
		eval "${name}_${k}=$v"
	done <"$dir/env"
	eval "${name}_DIR=$dir"
}

corpus() { # NAME USER PROFILE [SEED]
	local dir=$T_TMP/$1
	"$BENCH_BIN/corpus" --out "$dir/mail/$2/Maildir" --profile "$3" --seed "${4:-1}" >/dev/null &&
		"$ROOT/scripts/dovecot.sh" fixperms "$dir"
}

mf() { "$MF" "$@"; }

json_field() { # FILE KEY
	tail -n 1 "$1" | python3 -c "import json,sys; print(json.load(sys.stdin)['$2'])"
}

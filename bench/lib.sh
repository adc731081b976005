# bench/lib.sh — what the bench scripts share (sourced; each script defines
# say() first).
#
#   bench_install PKG...     Debian packages not installed yet, installed
#                            quietly (sudo -n when not root); what cannot be
#                            installed is reported as missing by the rows
#   bench_dovecot NAME PORT_BASE USERS [start options]
#                            a private Dovecot in a new DV=/tmp/mf-NAME.XXXXXX
#                            with USERS, stopped and removed at exit (kept
#                            with BENCH_KEEP=1), its env sourced
#                            (IMAP_PORT, POP3_PORT, LMTP_PORT, CA_FILE,
#                            MAIL_ROOT, ...); exits the script if it fails

bench_install() {
	local need=() p
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need+=("$p")
	done
	[ ${#need[@]} -eq 0 ] && return 0
	say "installing ${need[*]} from Debian"
	local sudo=()
	[ "$(id -u)" -ne 0 ] && sudo=(sudo -n)
	{ "${sudo[@]}" apt-get update -qq >/dev/null &&
		"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			"${need[@]}" >/dev/null; } ||
		say "could not install ${need[*]}: what is missing is reported as missing" >&2
}

bench_dovecot() {
	local name=$1 base=$2 users=$3
	shift 3
	DV=$(mktemp -d "${BENCH_TMPDIR:-/tmp}/mf-$name.XXXXXX") # /dev/shm: no disk fsyncs in the timings
	chmod 711 "$DV"
	trap bench_dovecot_cleanup EXIT
	trap 'exit 130' INT TERM
	scripts/dovecot.sh start "$DV" --port-base "$base" --users "$users" --max-conn 200 "$@" \
		>"$DV/start.log" 2>&1 || { cat "$DV/start.log" >&2; say "Dovecot did not start" >&2; exit 1; }
	# shellcheck disable=SC1091
	. "$DV/env"
}

bench_dovecot_cleanup() {
	scripts/dovecot.sh stop "$DV" >/dev/null 2>&1
	[ "${BENCH_KEEP:-0}" = 1 ] && say "kept $DV" || rm -rf "$DV"
}

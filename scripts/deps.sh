#!/usr/bin/env bash
# scripts/deps.sh — installs the Debian 12 packages mailferry needs to build,
# test and demo, and nothing if they are all there (one dpkg-query call).
# Non-interactive: CI runs it as root with no terminal, as the first command
# on a fresh machine. Not root: uses `sudo -n` when that works, otherwise
# names the missing packages and exits 1. Run by `make test|demo|bench`.
#
# The Dovecot packages must not start or enable the system's own Dovecot
# (mailferry runs private instances, scripts/dovecot.sh): a policy-rc.d
# refuses service starts while we install, and if we installed Dovecot the
# system service is stopped and disabled afterwards.
set -euo pipefail

# libclang-rt-14-dev holds libclang_rt.fuzzer and the sanitizer runtimes
# for Debian 12's clang 14 (only a Recommends of clang-14, hence listed).
PKGS=(build-essential pkg-config clang libclang-rt-14-dev
	liburing-dev libssl-dev libzstd-dev liblmdb-dev lmdb-utils openssl
	dovecot-imapd dovecot-pop3d dovecot-lmtpd python3 procps)

say() { echo "deps: $*"; }

command -v dpkg-query >/dev/null && command -v apt-get >/dev/null ||
	{ say "this is not a Debian system (no dpkg-query/apt-get); install by hand: ${PKGS[*]}" >&2; exit 1; }

missing_pkgs() {
	local installed p
	# dpkg-query exits 1 when some package is unknown: that is not an error
	installed=" $({ dpkg-query -W -f='${Package}=${db:Status-Abbrev}\n' "${PKGS[@]}" 2>/dev/null || true; } |
		sed -n 's/=ii *$//p' | tr '\n' ' ') "
	for p in "${PKGS[@]}"; do
		case "$installed" in *" $p "*) ;; *) echo "$p" ;; esac
	done
}

mapfile -t missing < <(missing_pkgs)
if [ ${#missing[@]} -eq 0 ]; then
	say "all ${#PKGS[@]} packages present"
	exit 0
fi
say "missing: ${missing[*]}"

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
	if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
		SUDO=(sudo -n)
	else
		say "not root and no password-less sudo; as root run:" >&2
		echo "  apt-get install --no-install-recommends ${missing[*]}" >&2
		exit 1
	fi
fi
as_root() { "${SUDO[@]}" "$@"; }

dovecot_new=0
for p in "${missing[@]}"; do
	case $p in dovecot-*) dpkg-query -W -f='${db:Status-Abbrev}' dovecot-core 2>/dev/null | grep -q '^ii' ||
		dovecot_new=1 ;;
	esac
done

# No service may start during the installation (Docker images ship such a
# policy-rc.d already; we only add ours when there is none, and remove it).
prc=/usr/sbin/policy-rc.d
made_prc=0
log=$(mktemp /tmp/mailferry-deps.XXXXXX)
cleanup() {
	[ $made_prc = 1 ] && as_root rm -f "$prc"
	rm -f "$log"
}
trap cleanup EXIT
if [ ! -e "$prc" ]; then
	as_root sh -c "printf '#!/bin/sh\nexit 101\n' >$prc && chmod 755 $prc"
	made_prc=1
	say "added $prc (no service starts while installing)"
fi

apt() { # apt-get ARGS..., quiet unless it fails
	if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get -y -q \
		-o DPkg::Lock::Timeout=300 -o Dpkg::Options::=--force-confdef \
		-o Dpkg::Options::=--force-confold "$@" >"$log" 2>&1; then
		tail -n 25 "$log" >&2
		say "apt-get $1 failed" >&2
		exit 1
	fi
}
say "apt-get update"
apt update
say "apt-get install ${missing[*]}"
apt install --no-install-recommends "${missing[@]}"

mapfile -t still < <(missing_pkgs)
[ ${#still[@]} -eq 0 ] || { say "still missing after install: ${still[*]}" >&2; exit 1; }

if [ $dovecot_new = 1 ]; then
	# Our instances use their own ports; the system's service has no business
	# running at all on a test machine.
	if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
		as_root systemctl disable --now dovecot.service dovecot.socket >/dev/null 2>&1 || true
		say "stopped and disabled the system's dovecot service"
	elif [ -s /run/dovecot/master.pid ] && kill -0 "$(cat /run/dovecot/master.pid)" 2>/dev/null; then
		as_root kill "$(cat /run/dovecot/master.pid)" || true
		say "stopped the system's dovecot (it had started despite policy-rc.d)"
	fi
fi
say "done"

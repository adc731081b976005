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
#
# Cyrus IMAP, the test bed's second server (scripts/cyrus.sh): its
# cyrus-imapd package conflicts with dovecot-imapd, so only cyrus-common
# and sasl2-bin are installed (without Recommends: they would pull
# cyrus-imapd in), and cyrus-imapd of the same version is downloaded and
# unpacked under ${MAILFERRY_TESTBED_DIR:-/var/cache/mailferry-testbed}/
# cyrus-imapd-VERSION: outside the worktree so `make clean` and git keep
# away from it, shared by every checkout on the machine, and keyed by the
# version because imapd must match cyrus-common's private libraries (an
# upgrade of cyrus-common makes the next run unpack the matching one).
#
# Courier-IMAP, the third server (scripts/courier.sh): courier-imap
# provides imap-server too and so conflicts with dovecot-imapd, and
# installing courier-base/courier-authlib would create /etc/courier, users
# and services. So only the plain libraries it links against (libltdl7,
# libidn12 for couriertcpd,
# libcourier-unicode4, libgamin0 with gamin's gam_server: no service, no
# conflict) are installed; courier-imap, courier-base, courier-authlib,
# courier-authlib-userdb and courier-authdaemon are downloaded and unpacked
# under $TESTBED/courier-imap-VERSION, which courier.sh lays over /usr in a
# private mount namespace. Nothing when one is unpacked there already.
#
# Postfix, the SMTP server the SMTP client is tested against
# (scripts/postfix.sh runs private instances): debconf is preseeded with
# "No configuration" first, so the package writes no /etc/postfix/main.cf
# and starts nothing; its system service is disabled afterwards like
# Dovecot's. It replaces an installed exim4 (both are the
# mail-transport-agent). libsasl2-modules brings the PLAIN and LOGIN
# mechanisms its AUTH tests use (only a Recommends of libsasl2-2).
#
# prometheus (with promtool) and chromium: the status server's tests
# (t_status*) check /metrics with promtool, scrape a run with a private
# Prometheus and drive the page with headless Chromium. The system's
# prometheus service (and its node exporter) is disabled like Dovecot's.
set -euo pipefail

# libclang-rt-14-dev holds libclang_rt.fuzzer and the sanitizer runtimes
# for Debian 12's clang 14 (only a Recommends of clang-14, hence listed).
PKGS=(build-essential pkg-config clang libclang-rt-14-dev
	liburing-dev libssl-dev libzstd-dev liblmdb-dev lmdb-utils openssl
	dovecot-imapd dovecot-pop3d dovecot-lmtpd python3 procps man-db strace
	cyrus-common sasl2-bin
	libltdl7 libcourier-unicode4 libgamin0 gamin libidn12
	postfix libsasl2-modules
	prometheus chromium)
COURIER_DEBS=(courier-imap courier-base courier-authlib courier-authlib-userdb courier-authdaemon)
TESTBED=${MAILFERRY_TESTBED_DIR:-/var/cache/mailferry-testbed}

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

# cyrus-imapd VERSION unpacked (not installed) under $TESTBED, VERSION being
# the installed cyrus-common's. Nothing when it is there already.
cyrus_imapd() {
	local ver dest tmp R=() d
	ver=$(dpkg-query -W -f='${Version}' cyrus-common 2>/dev/null) || { say "cyrus-common is not installed" >&2; exit 1; }
	dest=$TESTBED/cyrus-imapd-$ver
	[ -x "$dest/usr/lib/cyrus/bin/imapd" ] && return 0
	if [ "$(id -u)" -ne 0 ]; then
		d=$TESTBED
		while [ ! -e "$d" ]; do d=$(dirname "$d"); done
		if [ ! -w "$d" ]; then
			command -v sudo >/dev/null && sudo -n true 2>/dev/null ||
				{ say "cannot write $TESTBED: run scripts/deps.sh as root or set MAILFERRY_TESTBED_DIR" >&2; exit 1; }
			R=(sudo -n)
		fi
	fi
	say "unpacking cyrus-imapd $ver (not installed: it conflicts with dovecot-imapd) into $dest"
	tmp=$(mktemp -d /tmp/mailferry-cyrus.XXXXXX)
	chmod 755 "$tmp" # apt's download sandbox user must write there
	# The exact version: imapd links against cyrus-common's private libraries.
	if ! (cd "$tmp" && apt-get -q download "cyrus-imapd=$ver") >"$tmp/log" 2>&1; then
		# Stale package lists, or the archive moved on (a security update):
		# refresh, and bring cyrus-common up to what can be downloaded.
		"${R[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -y -q -o DPkg::Lock::Timeout=300 update >>"$tmp/log" 2>&1 || true
		if ! (cd "$tmp" && apt-get -q download "cyrus-imapd=$ver") >>"$tmp/log" 2>&1; then
			"${R[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -y -q -o DPkg::Lock::Timeout=300 \
				install --no-install-recommends cyrus-common >>"$tmp/log" 2>&1 || true
			ver=$(dpkg-query -W -f='${Version}' cyrus-common)
			dest=$TESTBED/cyrus-imapd-$ver
			(cd "$tmp" && apt-get -q download "cyrus-imapd=$ver") >>"$tmp/log" 2>&1 ||
				{ tail -n 15 "$tmp/log" >&2; rm -rf "$tmp"; say "cannot download cyrus-imapd $ver" >&2; exit 1; }
		fi
	fi
	"${R[@]}" mkdir -p "$TESTBED"
	"${R[@]}" rm -rf "$dest.new"
	"${R[@]}" dpkg-deb -x "$tmp"/cyrus-imapd_*.deb "$dest.new" &&
		"${R[@]}" rm -rf "$dest" && "${R[@]}" mv -T "$dest.new" "$dest" ||
		{ rm -rf "$tmp"; say "unpacking cyrus-imapd into $dest failed" >&2; exit 1; }
	rm -rf "$tmp"
	[ -x "$dest/usr/lib/cyrus/bin/imapd" ] || { say "no imapd in cyrus-imapd $ver" >&2; exit 1; }
}

# The courier-imap packages unpacked (not installed) under $TESTBED.
courier_imap() {
	local d ver dest tmp R=() p
	for d in "$TESTBED"/courier-imap-*/.complete; do [ -f "$d" ] && return 0; done
	if [ "$(id -u)" -ne 0 ]; then
		d=$TESTBED
		while [ ! -e "$d" ]; do d=$(dirname "$d"); done
		if [ ! -w "$d" ]; then
			command -v sudo >/dev/null && sudo -n true 2>/dev/null ||
				{ say "cannot write $TESTBED: run scripts/deps.sh as root or set MAILFERRY_TESTBED_DIR" >&2; exit 1; }
			R=(sudo -n)
		fi
	fi
	tmp=$(mktemp -d /tmp/mailferry-courier.XXXXXX)
	chmod 755 "$tmp" # apt's download sandbox user must write there
	if ! (cd "$tmp" && apt-get -q download "${COURIER_DEBS[@]}") >"$tmp/log" 2>&1; then
		"${R[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -y -q -o DPkg::Lock::Timeout=300 update >>"$tmp/log" 2>&1 || true
		(cd "$tmp" && apt-get -q download "${COURIER_DEBS[@]}") >>"$tmp/log" 2>&1 ||
			{ tail -n 15 "$tmp/log" >&2; rm -rf "$tmp"; say "cannot download ${COURIER_DEBS[*]}" >&2; exit 1; }
	fi
	ver=$(dpkg-deb -f "$tmp"/courier-imap_*.deb Version)
	dest=$TESTBED/courier-imap-$ver
	say "unpacking courier-imap $ver (not installed: it conflicts with dovecot-imapd) into $dest"
	"${R[@]}" mkdir -p "$TESTBED"
	"${R[@]}" rm -rf "$dest.new"
	for p in "${COURIER_DEBS[@]}"; do
		"${R[@]}" dpkg-deb -x "$tmp/${p}"_*.deb "$dest.new" ||
			{ rm -rf "$tmp"; say "unpacking $p into $dest.new failed" >&2; exit 1; }
	done
	rm -rf "$tmp"
	[ -x "$dest.new/usr/bin/imapd" ] && [ -x "$dest.new/usr/sbin/couriertcpd" ] ||
		{ say "no imapd or couriertcpd in the courier packages" >&2; exit 1; }
	"${R[@]}" touch "$dest.new/.complete"
	"${R[@]}" rm -rf "$dest" && "${R[@]}" mv -T "$dest.new" "$dest" ||
		{ say "moving $dest.new to $dest failed" >&2; exit 1; }
}

mapfile -t missing < <(missing_pkgs)
if [ ${#missing[@]} -eq 0 ]; then
	cyrus_imapd
	courier_imap
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
postfix_new=0
for p in "${missing[@]}"; do [ "$p" = postfix ] && postfix_new=1; done
if [ $postfix_new = 1 ]; then
	echo "postfix postfix/main_mailer_type select No configuration" | as_root debconf-set-selections
fi
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
# Private Postfix instances only (scripts/postfix.sh).
if [ $postfix_new = 1 ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
	as_root systemctl disable --now postfix.service >/dev/null 2>&1 || true
	say "stopped and disabled the system's postfix service"
fi
# Private Prometheus instances only (t_status_prometheus).
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
	as_root systemctl disable --now prometheus.service prometheus-node-exporter.service >/dev/null 2>&1 || true
fi
# cyrus-common enables a cyrus-imapd service (which could not even run
# without imapd): the test bed starts its own instances only.
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
	as_root systemctl disable --now cyrus-imapd.service >/dev/null 2>&1 || true
fi
cyrus_imapd
courier_imap
say "done"

#!/usr/bin/env bash
# scripts/deps.sh — installs the Debian 12 packages mailferry needs to build,
# test and demo, and nothing if they are all there. Non-interactive (CI runs
# it as root with no terminal). Run by `make test`, `make demo`, `make bench`.
set -euo pipefail

PKGS=(build-essential pkg-config clang libclang-rt-14-dev
      liburing-dev libssl-dev libzstd-dev liblmdb-dev lmdb-utils openssl
      dovecot-imapd dovecot-pop3d dovecot-lmtpd python3 procps)

missing=()
for p in "${PKGS[@]}"; do
	st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	[ "$st" = "install ok installed" ] || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps: installing ${missing[*]}"
SUDO=
if [ "$(id -u)" -ne 0 ]; then
	if command -v sudo >/dev/null 2>&1; then
		SUDO="sudo -n"
	else
		echo "deps: missing packages and not root: apt-get install ${missing[*]}" >&2
		exit 1
	fi
fi
# The packages' own Dovecot service must not start and grab ports 143/993:
# a policy-rc.d that refuses service starts, only while we install.
prc=/usr/sbin/policy-rc.d
made_prc=0
if [ ! -e "$prc" ] && [ -z "$SUDO" ]; then
	printf '#!/bin/sh\nexit 101\n' >"$prc" && chmod +x "$prc" && made_prc=1
fi
trap '[ $made_prc = 1 ] && rm -f "$prc"' EXIT
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	"${missing[@]}" >/dev/null
echo "deps: done"

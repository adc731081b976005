#!/usr/bin/env bash
# scripts/cyrus.sh — a private Cyrus IMAP 3.6 for tests: the second real IMAP
# server beside scripts/dovecot.sh. Its own imapd.conf, cyrus.conf, CA,
# password database, mailbox list and spool under DIR, listening on
# 127.0.0.1 only, on unprivileged ports. The system's /etc/imapd.conf and
# its service are never touched.
#
#   scripts/cyrus.sh start DIR [--port-base N] [--users "a b"]
#                              [--no-qresync] [--no-condstore] [--no-literal-plus]
#                              [--max-conn N]
#   scripts/cyrus.sh stop DIR           (idempotent; waits until the ports are free)
#
# Ports: IMAP (plain + STARTTLS) N, IMAPS N+1 (default N = 14400; N+2..N+4
# stay unused, so a range fits lib.sh's five-port blocks). User U's password
# is "pw-U-secret", also in DIR/pw/U (mode 0600, no newline), checked for
# real (SASL auxprop sasldb in DIR/sasldb2), so a wrong password fails as on
# Dovecot. Every user's INBOX exists once start returns (autocreate at the
# first login, which start does). The namespace is Cyrus's alternate one
# (altnamespace, unixhierarchysep): personal folders at the top level, "/"
# as separator, INBOX with no children of its own, like Dovecot's layout.
# The hidden capabilities go through suppress_capabilities: unlike
# Dovecot, Cyrus then refuses nothing else, so again a client must go by
# the CAPABILITY list.
#
# Cyrus's imapd is not installed but unpacked (cyrus-imapd conflicts with
# dovecot-imapd): scripts/deps.sh installs cyrus-common and sasl2-bin and
# unpacks the cyrus-imapd of the same version under
# ${MAILFERRY_TESTBED_DIR:-/var/cache/mailferry-testbed}/cyrus-imapd-VERSION.
# The master runs as the "cyrus" user (so start needs root, or that user).
# After start, DIR/env is a shell file defining CYRUS_DIR CYRUS_CONF
# IMAP_PORT IMAPS_PORT CA_FILE SEPARATOR USERS. Cyrus logs to syslog only;
# there is none here, so DIR/master.log holds just what the master prints.
set -euo pipefail

die() { echo "cyrus.sh: $*" >&2; exit 1; }
usage() { die "usage: cyrus.sh start|stop DIR [options]"; }

cmd=${1:-}; dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || usage
shift 2
case "$cmd" in
start) mkdir -p "$dir" ;;
stop) ;;
*) usage ;;
esac
[ -d "$dir" ] && dir=$(cd "$dir" && pwd -P)

CYBIN=/usr/lib/cyrus/bin
TESTBED=${MAILFERRY_TESTBED_DIR:-/var/cache/mailferry-testbed}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
greets() {
	(
		exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
		IFS= read -r -t 2 line <&3 || exit 1
		[[ $line == "* OK"* ]]
	) 2>/dev/null
}
# PID is alive (not a zombie) and is the master of this instance.
is_our_master() {
	local st cl
	st=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) || return 1
	[ -n "$st" ] && [ "$st" != Z ] || return 1
	cl=$(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null) || return 1
	[[ $cl == *"-C $dir/imapd.conf"* ]]
}
# Any process of this instance (the master's children: imapd, recover):
# the only ones whose command line names DIR/imapd.conf. One grep, not a
# process per /proc entry: a busy machine has hundreds.
our_procs() {
	local f
	for f in $(grep -lsaP -- "-C\\x00\\Q$dir/imapd.conf\\E\\x00" /proc/[0-9]*/cmdline); do
		f=${f#/proc/}
		echo "${f%/cmdline}"
	done
	return 0
}

stop() {
	local pidf=$dir/master.pid pid p ports=
	[ -f "$dir/ports" ] && ports=$(cat "$dir/ports")
	if [ -f "$pidf" ]; then
		pid=$(cat "$pidf")
		# A stale pid file may name an unrelated process by now: check.
		if [ -n "$pid" ] && is_our_master "$pid"; then
			# SIGTERM: the master kills its children and exits.
			kill -TERM "$pid" 2>/dev/null || true
			for _ in $(seq 1 100); do is_our_master "$pid" || break; sleep 0.1; done
			if is_our_master "$pid"; then
				echo "cyrus.sh: master $pid did not stop in 10 s, killing it" >&2
				kill -KILL "$pid" 2>/dev/null || true
				for _ in $(seq 1 50); do is_our_master "$pid" || break; sleep 0.1; done
			fi
		fi
		rm -f "$pidf"
		# imapd children that outlived their master (it was killed) hold
		# connections, not the listeners; end them so DIR can be removed.
		for p in $(our_procs); do kill -TERM "$p" 2>/dev/null || true; done
	fi
	for p in $ports; do
		for _ in $(seq 1 50); do port_busy "$p" || break; sleep 0.1; done
		port_busy "$p" && die "port $p is still in use after stopping $dir"
	done
	return 0
}

case "$cmd" in
stop) [ -d "$dir" ] && stop; exit 0 ;;
esac

base=14400 users="src dst" hide= maxconn=100
while [ $# -gt 0 ]; do
	case "$1" in
	--port-base) base=${2:?}; shift 2 ;;
	--users) users=${2:?}; shift 2 ;;
	--no-qresync) hide="$hide QRESYNC"; shift ;;
	# RFC 7162: QRESYNC needs CONDSTORE
	--no-condstore) hide="$hide CONDSTORE QRESYNC"; shift ;;
	--no-literal-plus) hide="$hide LITERAL+"; shift ;;
	--max-conn) maxconn=${2:?}; shift 2 ;;
	*) die "unknown option $1" ;;
	esac
done
[[ $base =~ ^[0-9]+$ ]] && [ "$base" -ge 1024 ] && [ "$base" -le 65530 ] ||
	die "--port-base must be a number from 1024 to 65530"
[[ $maxconn =~ ^[0-9]+$ ]] && [ "$maxconn" -ge 1 ] || die "--max-conn must be a positive number"
set -f; users_a=($users); set +f
[ ${#users_a[@]} -gt 0 ] || die "--users is empty"
for u in "${users_a[@]}"; do
	[[ $u =~ ^[a-z0-9][a-z0-9._-]*$ ]] || die "bad user name '$u' (Cyrus: lower case, no '+')"
done

# The master and ctl_cyrusdb come from cyrus-common; imapd from the
# unpacked cyrus-imapd of exactly the same version (it links against
# cyrus-common's private libraries).
[ -x "$CYBIN/master" ] || die "cyrus-common is not installed (run scripts/deps.sh)"
ver=$(dpkg-query -W -f='${Version}' cyrus-common 2>/dev/null) || die "cyrus-common is not installed (run scripts/deps.sh)"
imapd=$TESTBED/cyrus-imapd-$ver/usr/lib/cyrus/bin/imapd
[ -x "$imapd" ] || die "no $imapd (run scripts/deps.sh: it unpacks cyrus-imapd $ver there)"
command -v saslpasswd2 >/dev/null || die "saslpasswd2 is missing (sasl2-bin; run scripts/deps.sh)"
id cyrus >/dev/null 2>&1 || die "no cyrus user (cyrus-common makes it)"
if [ "$(id -u)" -eq 0 ]; then
	as_cyrus() { setpriv --reuid=cyrus --regid="$(id -g cyrus)" --init-groups -- "$@"; }
elif [ "$(id -un)" = cyrus ]; then
	as_cyrus() { "$@"; }
else
	die "the Cyrus master runs as the cyrus user: run this as root (or as cyrus)"
fi

stop # a previous instance in the same DIR
ports="$base $((base + 1))"
for p in $ports; do
	port_busy "$p" && die "port $p on 127.0.0.1 is already in use (another instance? pick another --port-base)"
done

# The cyrus user must reach DIR: give the 0700 temp directories above it
# (mktemp -d) search permission, as dovecot.sh does for its mail user.
if [ "$(id -u)" -eq 0 ]; then
	d=$dir
	while [ "$d" != / ]; do
		d=$(dirname "$d")
		if [ "$(stat -c %u "$d")" -eq 0 ] && [ $((0$(stat -c %a "$d") & 1)) -eq 0 ]; then
			case "$d/" in
			/tmp/?*/) chmod o+x "$d"; echo "cyrus.sh: chmod o+x $d (so cyrus reaches DIR)" >&2 ;;
			*) die "cyrus cannot enter $d: make it searchable (chmod o+x) or use a DIR elsewhere" ;;
			esac
		fi
	done
fi

# Unix sockets (configdirectory/socket/...) are limited to 107 bytes.
[ ${#dir} -le 70 ] || die "DIR is too long for Cyrus's unix sockets (at most 70 bytes): $dir"

# Fresh every start: mailbox list, spool and password database.
rm -rf "$dir/conf" "$dir/spool" "$dir/pw" "$dir/sasldb2" "$dir/env"
# What Debian's makedirs creates (it reads only /etc/imapd.conf, so it is
# not used): configdirectory's subdirectories, and the spool's stage area.
mkdir -p "$dir"/conf/{db,proc,socket,log,msg,user,quota,lock,sieve} "$dir/spool/stage." "$dir/tls" "$dir/pw"
echo "$ports" >"$dir/ports"

# A private CA and a server certificate for 127.0.0.1 / localhost (as
# dovecot.sh makes them, with P-256 keys as courier.sh: an RSA key takes
# up to a second to make).
if [ ! -f "$dir/tls/server.pem" ] || [ ! -f "$dir/tls/ca.pem" ]; then
	(
		cd "$dir/tls"
		printf 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\n' >ca.ext
		printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' >server.ext
		openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.csr \
			-subj "/CN=mailferry test CA" &&
			openssl x509 -req -in ca.csr -signkey ca.key -out ca.pem -days 3650 -extfile ca.ext &&
			openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout server.key -out server.csr \
				-subj "/CN=localhost" &&
			openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
				-out server.pem -days 3650 -extfile server.ext
	) >"$dir/tls/openssl.log" 2>&1 || { cat "$dir/tls/openssl.log" >&2; die "making the test certificates failed"; }
	chmod 600 "$dir/tls/ca.key" "$dir/tls/server.key"
fi

# Real passwords in a private sasldb; the realm is the servername.
for u in "${users_a[@]}"; do
	printf 'pw-%s-secret' "$u" >"$dir/pw/$u"
	chmod 600 "$dir/pw/$u"
	printf 'pw-%s-secret' "$u" | saslpasswd2 -f "$dir/sasldb2" -p -c -u 127.0.0.1 "$u" ||
		die "saslpasswd2 failed for $u"
done

supp=
[ -n "$hide" ] && supp="suppress_capabilities:$hide"
cat >"$dir/imapd.conf" <<EOF
# Private test instance written by scripts/cyrus.sh; not the system's.
configdirectory: $dir/conf
partition-default: $dir/spool
defaultpartition: default
servername: 127.0.0.1
sasl_pwcheck_method: auxprop
sasl_auxprop_plugin: sasldb
sasl_sasldb_path: $dir/sasldb2
sasl_mech_list: PLAIN LOGIN
# The client, not the server, enforces the password policy in these tests.
allowplaintext: yes
# Personal folders at the top level with "/" as separator (Dovecot's look).
unixhierarchysep: yes
altnamespace: yes
# 8-bit header bytes are stored as sent, not replaced by "X".
munge8bit: no
reject8bit: no
# INBOX is created at the user's first login.
autocreate_quota: 0
admins: cyrus
tls_server_cert: $dir/tls/server.pem
tls_server_key: $dir/tls/server.key
tls_versions: tls1_2 tls1_3
# Tests look at the mail right away: nothing kept back for cyr_expire.
delete_mode: immediate
expunge_mode: immediate
proc_path: $dir/conf/proc
mboxname_lockpath: $dir/conf/lock
idlesocket: $dir/conf/socket/idle
notifysocket: $dir/conf/socket/notify
lmtpsocket: $dir/conf/socket/lmtp
sievedir: $dir/conf/sieve
temp_path: $dir/conf/msg
syslog_prefix: mailferry-cyrus-$base
$supp
EOF
cat >"$dir/cyrus.conf" <<EOF
# Private test instance written by scripts/cyrus.sh. Every command gets -C:
# the master does not hand its own configuration file down.
START {
  recover cmd="$CYBIN/ctl_cyrusdb -C $dir/imapd.conf -r"
}
SERVICES {
  imap  cmd="$imapd -C $dir/imapd.conf" listen="127.0.0.1:$base" prefork=1 maxchild=$maxconn
  imaps cmd="$imapd -C $dir/imapd.conf -s" listen="127.0.0.1:$((base + 1))" prefork=0 maxchild=$maxconn
}
EVENTS {
  checkpoint cmd="$CYBIN/ctl_cyrusdb -C $dir/imapd.conf -c" period=30
}
EOF
chown -R cyrus:"$(id -gn cyrus)" "$dir"
chmod 755 "$dir"
chmod 600 "$dir/sasldb2"

: >>"$dir/master.log"
fail() { # message
	echo "cyrus.sh: $1; the end of $dir/master.log:" >&2
	tail -n 20 "$dir/master.log" >&2
	stop >/dev/null 2>&1 || true
	exit 1
}
# The daemon must not inherit the caller's descriptors (pipes, lock files).
closefds=
for f in /proc/$$/fd/*; do
	n=${f##*/}
	case $n in 0 | 1 | 2) ;; *) closefds="$closefds $n>&-" ;; esac
done
eval 'as_cyrus "$CYBIN/master" -C "$dir/imapd.conf" -M "$dir/cyrus.conf" -p "$dir/master.pid" -d \
	>>"$dir/master.log" 2>&1 </dev/null' "$closefds" || fail "the Cyrus master failed to start"
end=$((SECONDS + 20))
until greets "$base"; do
	[ $SECONDS -lt $end ] || fail "no IMAP greeting on port $base within 20 s"
	sleep 0.05
done

# Log every user in once (plain and over TLS, verified against our CA):
# that creates the INBOXes, and a broken login or certificate fails here
# and not in a test. Then the hidden capabilities must be gone.
python3 - "$base" "$dir/tls/ca.pem" "$dir/pw" "$hide" "${users_a[@]}" <<'PY' >>"$dir/master.log" 2>&1 ||
import imaplib, ssl, sys
port, ca, pwdir, hide, users = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4].split(), sys.argv[5:]
ctx = ssl.create_default_context(cafile=ca)
for i, u in enumerate(users):
    pw = open(pwdir + "/" + u).read()
    m = imaplib.IMAP4_SSL("127.0.0.1", port + 1, ssl_context=ctx, timeout=10) if i == 0 \
        else imaplib.IMAP4("127.0.0.1", port, timeout=10)
    m.login(u, pw)
    typ, data = m.capability()
    caps = data[0].decode().split()
    for c in hide:
        if c in caps:
            sys.exit("the server still advertises " + c)
    typ, data = m.list('""', "INBOX")
    if typ != "OK" or not data or data[0] is None:
        sys.exit("no INBOX for " + u)
    m.logout()
PY
	fail "logging the users in failed (plain IMAP on $base, IMAPS on $((base + 1)))"

q() { printf "%q" "$1"; }
cat >"$dir/env" <<EOF
CYRUS_DIR=$(q "$dir")
CYRUS_CONF=$(q "$dir/imapd.conf")
IMAP_PORT=$base
IMAPS_PORT=$((base + 1))
CA_FILE=$(q "$dir/tls/ca.pem")
SEPARATOR=/
USERS=$(q "${users_a[*]}")
EOF
echo "cyrus.sh: started Cyrus $ver in $dir: imap $base, imaps $((base + 1))"

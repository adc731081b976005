#!/usr/bin/env bash
# scripts/courier.sh — a private Courier-IMAP 5.0 for tests: the third real
# IMAP server beside scripts/dovecot.sh and scripts/cyrus.sh, and the one
# with none of the fast paths (no LITERAL+, MULTIAPPEND, CONDSTORE/QRESYNC,
# SPECIAL-USE; every folder under the personal namespace "INBOX." with "."
# as separator). Its own configuration, CA, user database and mail under
# DIR, listening on 127.0.0.1 only, on unprivileged ports.
#
#   scripts/courier.sh start DIR [--port-base N] [--users "a b"] [--max-conn N]
#   scripts/courier.sh stop DIR         (idempotent; waits until the ports are free)
#   scripts/courier.sh fixperms DIR     (after writing Maildirs directly)
#
# Ports: IMAP (plain + STARTTLS) N, IMAPS N+1 (default N = 14500; N+2..N+4
# stay unused, so a range fits lib.sh's five-port blocks). User U's password
# is "pw-U-secret", also in DIR/pw/U (mode 0600, no newline), checked for
# real (authdaemond's userdb module, SHA-512 crypt), so a wrong password
# fails as on Dovecot. Mail is DIR/mail/U/Maildir, Maildir++ like Dovecot's
# ("INBOX.a.b" is ".a.b"), owned by the mail user (mfmail when root, as in
# dovecot.sh); keywords live in Courier's own courierimapkeywords/, not in
# the file names. INTERNALDATE is the file's mtime.
#
# Courier is not installed but unpacked (courier-imap conflicts with
# dovecot-imapd): scripts/deps.sh installs only its plain libraries and
# gamin, and unpacks courier-imap, courier-base and courier-authlib under
# ${MAILFERRY_TESTBED_DIR:-/var/cache/mailferry-testbed}/courier-imap-VERSION.
# Those binaries have /usr, /etc/courier and /run/courier compiled in, so
# the whole instance (authdaemond, gam_server, two couriertcpd) runs in a
# private mount namespace (unshare -m, so start needs root) where /usr is
# a read-only overlay of the unpacked tree on the real /usr, and
# /etc/courier and /run/courier are DIR/etc and DIR/run bind-mounted on
# read-only overlays of /etc and /run: nothing on the machine changes, and
# instances do not see each other. gam_server runs for each instance under
# its own GAM_CLIENT_ID (without it every command stalls 1.2 s). Stop ends
# every process in that namespace, and only those.
#
# After start, DIR/env is a shell file defining COURIER_DIR IMAP_PORT
# IMAPS_PORT CA_FILE MAIL_ROOT MAIL_OWNER SEPARATOR (.) PREFIX (INBOX.)
# USERS. DIR/courier.log has what the daemons print (logins, errors).
set -euo pipefail

die() { echo "courier.sh: $*" >&2; exit 1; }
usage() { die "usage: courier.sh start|stop|fixperms DIR [options]"; }

cmd=${1:-}; dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || usage
shift 2
case "$cmd" in
start) mkdir -p "$dir" ;;
stop | fixperms) ;;
*) usage ;;
esac
[ -d "$dir" ] && dir=$(cd "$dir" && pwd -P)

TESTBED=${MAILFERRY_TESTBED_DIR:-/var/cache/mailferry-testbed}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
greets() {
	(
		exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
		IFS= read -r -t 2 line <&3 || exit 1
		[[ $line == "* OK"* ]]
	) 2>/dev/null
}
# The processes of this instance: those in its mount namespace (recorded
# at start as the supervisor's /proc/PID/ns/mnt link).
our_procs() {
	local ns f
	[ -f "$dir/ns.id" ] || return 0
	ns=$(cat "$dir/ns.id")
	[ -n "$ns" ] || return 0
	# One find, not a readlink per process: a busy machine has hundreds.
	# The link reads "mnt:[4026532345]": the brackets are glob characters.
	ns=${ns//[/\\[}; ns=${ns//]/\\]}
	for f in $(find /proc/[0-9]*/ns/mnt -maxdepth 0 -lname "$ns" 2>/dev/null); do
		f=${f#/proc/}
		echo "${f%%/*}"
	done
	return 0
}

stop() {
	local p ports= left
	[ -f "$dir/ports" ] && ports=$(cat "$dir/ports")
	if [ -f "$dir/ns.id" ]; then
		for p in $(our_procs); do kill -TERM "$p" 2>/dev/null || true; done
		for _ in $(seq 1 50); do
			left=$(our_procs)
			[ -z "$left" ] && break
			sleep 0.1
		done
		if [ -n "$left" ]; then
			echo "courier.sh: processes $left did not stop in 5 s, killing them" >&2
			for p in $left; do kill -KILL "$p" 2>/dev/null || true; done
			for _ in $(seq 1 50); do [ -z "$(our_procs)" ] && break; sleep 0.1; done
		fi
		rm -f "$dir/ns.id"
	fi
	for p in $ports; do
		for _ in $(seq 1 50); do port_busy "$p" || break; sleep 0.1; done
		port_busy "$p" && die "port $p is still in use after stopping $dir"
	done
	return 0
}

# Mail files belong to a non-root user, as in dovecot.sh (the same one).
owner() {
	if ! id mfmail >/dev/null 2>&1; then
		useradd -r -M -d /nonexistent -s /usr/sbin/nologin mfmail ||
			die "cannot create the mail user mfmail"
		echo "courier.sh: created system user mfmail for the test mail" >&2
	fi
	echo "mfmail:$(id -gn mfmail)"
}

case "$cmd" in
stop) [ -d "$dir" ] && stop; exit 0 ;;
fixperms)
	[ -d "$dir/mail" ] || die "no $dir/mail"
	chown -R "$(owner)" "$dir/mail"
	exit 0
	;;
esac

base=14500 users="src dst" maxconn=100
while [ $# -gt 0 ]; do
	case "$1" in
	--port-base) base=${2:?}; shift 2 ;;
	--users) users=${2:?}; shift 2 ;;
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
	[[ $u =~ ^[a-z0-9][a-z0-9._-]*$ ]] || die "bad user name '$u'"
done

[ "$(id -u)" -eq 0 ] || die "Courier runs in a private mount namespace: run this as root"
cb=
for d in "$TESTBED"/courier-imap-*/; do [ -f "$d/.complete" ] && cb=${d%/}; done
[ -n "$cb" ] || die "no courier-imap unpacked under $TESTBED (run scripts/deps.sh)"
[ -x /usr/libexec/gam_server ] || die "gamin is not installed (run scripts/deps.sh)"
command -v unshare >/dev/null || die "unshare is missing (util-linux)"

stop # a previous instance in the same DIR
ports="$base $((base + 1))"
for p in $ports; do
	port_busy "$p" && die "port $p on 127.0.0.1 is already in use (another instance? pick another --port-base)"
done

own=$(owner)
uid=$(id -u "${own%%:*}") gid=$(id -g "${own%%:*}")

# The mail user must reach DIR/mail: give the 0700 temp directories above
# it (mktemp -d) search permission, as cyrus.sh does.
d=$dir
while [ "$d" != / ]; do
	d=$(dirname "$d")
	if [ "$(stat -c %u "$d")" -eq 0 ] && [ $((0$(stat -c %a "$d") & 1)) -eq 0 ]; then
		case "$d/" in
		/tmp/?*/) chmod o+x "$d"; echo "courier.sh: chmod o+x $d (so mfmail reaches DIR)" >&2 ;;
		*) die "mfmail cannot enter $d: make it searchable (chmod o+x) or use a DIR elsewhere" ;;
		esac
	fi
done

# Fresh every start: configuration, user database, sockets and mail.
rm -rf "${dir:?}/etc" "$dir/run" "$dir/ovl" "$dir/mail" "$dir/pw" "$dir/env"
mkdir -p "$dir/etc" "$dir/run/authdaemon" "$dir/ovl/etc/courier" "$dir/ovl/run/courier" \
	"$dir/tls" "$dir/pw" "$dir/mail"
chmod 750 "$dir/run/authdaemon"
# imaplogin hands STARTTLS to couriertls as the user "courier", which
# Debian's courier-base postinst would create: inside the namespace it is
# the mail user, in private copies of passwd and group laid over /etc.
if ! getent passwd courier >/dev/null; then
	cp /etc/passwd "$dir/ovl/etc/passwd"
	echo "courier:x:$uid:$gid:Courier (mailferry test bed):/nonexistent:/usr/sbin/nologin" >>"$dir/ovl/etc/passwd"
fi
if ! getent group courier >/dev/null; then
	cp /etc/group "$dir/ovl/etc/group"
	echo "courier:x:$gid:" >>"$dir/ovl/etc/group"
fi
echo "$ports" >"$dir/ports"

# A private CA and a server certificate for 127.0.0.1 / localhost (as
# dovecot.sh makes them, but with P-256 keys: an RSA key takes up to a
# second to make); couriertls wants key and certificate in one file.
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
cat "$dir/tls/server.key" "$dir/tls/server.pem" >"$dir/etc/imapd.pem"
chmod 600 "$dir/etc/imapd.pem" # couriertls reads it as "courier" after STARTTLS

# Users: real passwords (SHA-512 crypt) in a userdb, mail under DIR/mail.
: >"$dir/etc/userdb"
chmod 600 "$dir/etc/userdb"
for u in "${users_a[@]}"; do
	printf 'pw-%s-secret' "$u" >"$dir/pw/$u"
	chmod 600 "$dir/pw/$u"
	hash=$(openssl passwd -6 "pw-$u-secret") || die "openssl passwd failed"
	h=$dir/mail/$u
	mkdir -p "$h/Maildir/cur" "$h/Maildir/new" "$h/Maildir/tmp"
	printf '%s\tuid=%s|gid=%s|home=%s|mail=%s|systempw=%s\n' \
		"$u" "$uid" "$gid" "$h" "$h/Maildir" "$hash" >>"$dir/etc/userdb"
done
chown -R "$own" "$dir/mail"
getent passwd courier >/dev/null && chown courier "$dir/etc/imapd.pem" || chown "$own" "$dir/etc/imapd.pem"

cat >"$dir/etc/authdaemonrc" <<'EOF'
# Private test instance written by scripts/courier.sh; not the system's.
authmodulelist="authuserdb"
daemons=3
authdaemonvar=/run/courier/authdaemon
DEBUG_LOGIN=0
DEFAULTOPTIONS=""
LOGGEROPTS=""
EOF
# imapd's settings travel in its environment (Debian's /etc/courier/imapd
# and imapd-ssl, trimmed to what matters here).
cat >"$dir/etc/imapd" <<EOF
# Private test instance written by scripts/courier.sh; not the system's.
IMAP_CAPABILITY="IMAP4rev1 UIDPLUS CHILDREN NAMESPACE THREAD=ORDEREDSUBJECT THREAD=REFERENCES SORT QUOTA IDLE"
IMAP_CAPABILITY_TLS="\$IMAP_CAPABILITY AUTH=PLAIN"
IMAP_KEYWORDS=1
IMAP_ACL=1
IMAP_PROXY=0
IMAP_IDLE_TIMEOUT=60
IMAP_MAILBOX_SANITY_CHECK=1
IMAP_DISABLETHREADSORT=0
IMAP_CHECK_ALL_FOLDERS=0
IMAP_OBSOLETE_CLIENT=0
IMAP_UMASK=022
IMAP_USELOCKS=1
IMAP_ENHANCEDIDLE=0
IMAP_TRASHFOLDERNAME=Trash
# Debian's Trash:7 would purge Trash messages whose INTERNALDATE (mtime)
# is more than 7 days old: that is most of a test corpus.
IMAP_EMPTYTRASH=
IMAP_MOVE_EXPUNGE_TO_TRASH=0
IMAP_TLS_REQUIRED=0
IMAP_STARTTLS=YES
COURIERTLS=/usr/bin/couriertls
TLS_CERTFILE=/etc/courier/imapd.pem
TLS_VERIFYPEER=NONE
MAILDIRPATH=Maildir
EOF

# Everything below runs inside the private mount namespace, as root.
cat >"$dir/ns.sh" <<EOF
# Written by scripts/courier.sh: the instance's supervisor, run as
# unshare -m bash ns.sh; the processes it starts are this instance.
set -eu
mount -t overlay mf-courier-usr -o lowerdir=$cb/usr:/usr /usr
mount -t overlay mf-courier-etc -o lowerdir=$dir/ovl/etc:/etc /etc
mount --bind $dir/etc /etc/courier
mount -t overlay mf-courier-run -o lowerdir=$dir/ovl/run:/run /run
mount --bind $dir/run /run/courier
/usr/sbin/makeuserdb
set -a
GAM_CLIENT_ID=mailferry-courier-$base
. /etc/courier/authdaemonrc
. /etc/courier/imapd
set +a
setpriv --reuid=$uid --regid=$gid --clear-groups -- /usr/libexec/gam_server --notimeout \$GAM_CLIENT_ID &
/usr/lib/courier/courier-authlib/authdaemond &
for _ in \$(seq 1 100); do [ -S /run/courier/authdaemon/socket ] && break; sleep 0.05; done
umask 022
/usr/sbin/couriertcpd -address=127.0.0.1 -maxprocs=$maxconn -maxperip=$maxconn \\
	-nodnslookup -noidentlookup $base /usr/lib/courier/courier/imaplogin /usr/bin/imapd Maildir &
IMAP_TLS=1 IMAP_STARTTLS=NO /usr/sbin/couriertcpd -address=127.0.0.1 -maxprocs=$maxconn -maxperip=$maxconn \\
	-nodnslookup -noidentlookup $((base + 1)) /usr/bin/couriertls -server -tcpd \\
	/usr/lib/courier/courier/imaplogin /usr/bin/imapd Maildir &
wait
EOF

: >>"$dir/courier.log"
fail() { # message
	echo "courier.sh: $1; the end of $dir/courier.log:" >&2
	tail -n 20 "$dir/courier.log" >&2
	stop >/dev/null 2>&1 || true
	exit 1
}
# The daemons must not inherit the caller's descriptors (pipes, lock files).
closefds=
for f in /proc/$$/fd/*; do
	n=${f##*/}
	case $n in 0 | 1 | 2) ;; *) closefds="$closefds $n>&-" ;; esac
done
eval 'setsid unshare -m --propagation private bash "$dir/ns.sh" >>"$dir/courier.log" 2>&1 </dev/null &' "$closefds"
sup=$!
# The namespace is the supervisor's once unshare has exec'd bash.
for _ in $(seq 1 100); do
	ns=$(readlink "/proc/$sup/ns/mnt" 2>/dev/null) || fail "the supervisor died at once"
	[ "$ns" != "$(readlink /proc/self/ns/mnt)" ] && break
	sleep 0.02
done
[ "$ns" != "$(readlink /proc/self/ns/mnt)" ] || fail "unshare -m did not make a mount namespace"
echo "$ns" >"$dir/ns.id"
end=$((SECONDS + 20))
until greets "$base" && port_busy "$((base + 1))" ||
	{ kill -0 "$sup" 2>/dev/null || fail "the instance exited while starting"; false; }; do
	[ $SECONDS -lt $end ] || fail "no IMAP greeting on ports $base and $((base + 1)) within 20 s"
	sleep 0.05
done

# Log every user in once, over STARTTLS on the plain port and over IMAPS,
# verified against our CA: a broken login, certificate or gam_server fails
# here and not in a test. Courier must also still look like the server the
# tests are written for: no LITERAL+, MULTIAPPEND, CONDSTORE, SPECIAL-USE,
# and the personal namespace "INBOX." with ".".
python3 - "$base" "$dir/tls/ca.pem" "$dir/pw" "${users_a[@]}" <<'PY' >>"$dir/courier.log" 2>&1 ||
import imaplib, ssl, sys, time
port, ca, pwdir, users = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:]
ctx = ssl.create_default_context(cafile=ca)
T0 = time.monotonic()
for u in users:
    pw = open(pwdir + "/" + u).read()
    for tls in (False, True):
        if tls:
            m = imaplib.IMAP4_SSL("127.0.0.1", port + 1, ssl_context=ctx, timeout=10)
        else:
            m = imaplib.IMAP4("127.0.0.1", port, timeout=10)
            m.starttls(ssl_context=ctx)
        m.login(u, pw)
        caps = m.capability()[1][0].decode().split()
        for c in ("LITERAL+", "MULTIAPPEND", "CONDSTORE", "QRESYNC", "SPECIAL-USE"):
            if c in caps:
                sys.exit("the server advertises " + c)
        ns = m.namespace()[1][0]
        if not ns.startswith(b'(("INBOX." "."))'):
            sys.exit("unexpected NAMESPACE " + repr(ns))
        t = time.monotonic()
        m.select("INBOX")
        m.noop()
        if time.monotonic() - t > 0.5:
            sys.exit("SELECT and NOOP took %.1f s: is gam_server running?" % (time.monotonic() - t))
        m.logout()
        print("courier.sh: %s logged in (%s) at %.2f s" % (u, "IMAPS" if tls else "STARTTLS", time.monotonic() - T0))
PY
	fail "logging the users in failed (STARTTLS on $base, IMAPS on $((base + 1)))"

q() { printf "%q" "$1"; }
cat >"$dir/env" <<EOF
COURIER_DIR=$(q "$dir")
IMAP_PORT=$base
IMAPS_PORT=$((base + 1))
CA_FILE=$(q "$dir/tls/ca.pem")
MAIL_ROOT=$(q "$dir/mail")
MAIL_OWNER=$(q "$own")
SEPARATOR=.
PREFIX=INBOX.
USERS=$(q "${users_a[*]}")
EOF
echo "courier.sh: started Courier-IMAP ($(basename "$cb")) in $dir: imap $base, imaps $((base + 1))"

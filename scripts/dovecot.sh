#!/usr/bin/env bash
# scripts/dovecot.sh — a private Dovecot 2.3 for tests, the demo and the
# benchmark: its own configuration, CA, mail and state under DIR, listening
# on 127.0.0.1 only, on unprivileged ports. The system's /etc/dovecot and
# its service are never touched.
#
#   scripts/dovecot.sh start DIR [--port-base N] [--users "a b"] [--separator . | /]
#                                [--no-qresync] [--no-condstore] [--no-literal-plus]
#                                [--no-sasl-ir]  (AUTHENTICATE waits for "+")
#                                [--max-conn N] [--quota-user U:BYTES] [--sent-name NAME]
#                                [--master-user NAME]  (an admin: SASL PLAIN authzid
#                                or "user*NAME" logs in as any user)
#                                [--oauth2 URL [--oauth2-mechanisms "xoauth2 oauthbearer"]]
#                                (OAuth2 logins: a passdb oauth2 asks the RFC 7662
#                                introspection endpoint URL, mode post, for
#                                {"active": true, "username": USER})
#                                [--no-esearch]  (plain SEARCH answers only)
#                                [--inbox-prefix]  (personal namespace "INBOX." with
#                                '.', as Courier: the same Maildir, other names)
#                                [--pop3-lock]  (pop3_lock_session = yes: one POP3
#                                session per user at a time, RFC 1939 §8)
#                                [--tls-key-type rsa|ec]  (the CA's and the server's
#                                keys: RSA 2048, the default, or P-256, made in
#                                milliseconds where an RSA key can take a second;
#                                the tests use ec)
#                                [--public-ns PREFIX]  (a shared namespace, RFC 2342
#                                type public, e.g. "Public.": mail in DIR/public,
#                                Maildir++, every user sees it)
#   scripts/dovecot.sh stop DIR         (idempotent; waits until the ports are free)
#   scripts/dovecot.sh fixperms DIR     (after writing Maildirs directly)
#   scripts/dovecot.sh maildir DIR USER (prints USER's Maildir path)
#
# Ports: IMAP (plain + STARTTLS) N, IMAPS N+1, POP3 (plain + STLS) N+2,
# POP3S N+3, LMTP N+4 (default N = 14300). User U's password is
# "pw-U-secret", also in DIR/pw/U (mode 0600, no newline). Mail is
# DIR/mail/U/Maildir: Maildir++ ('.' separator) or, with --separator /,
# LAYOUT=fs. --no-condstore implies --no-qresync (RFC 7162: QRESYNC needs
# CONDSTORE). The hidden capabilities are only not advertised; Dovecot still
# accepts the commands, so a client must go by the CAPABILITY list.
# After start, DIR/env is a shell file defining DOVECOT_DIR DOVECOT_CONF
# IMAP_PORT IMAPS_PORT POP3_PORT POP3S_PORT LMTP_PORT CA_FILE MAIL_ROOT
# MAIL_OWNER (user:group) SEPARATOR USERS. The log is DIR/dovecot.log.
set -euo pipefail

die() { echo "dovecot.sh: $*" >&2; exit 1; }
usage() { die "usage: dovecot.sh start|stop|fixperms DIR [options] | maildir DIR USER"; }

cmd=${1:-}; dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || usage
shift 2
case "$cmd" in
start) mkdir -p "$dir" ;;
stop | fixperms | maildir) ;;
*) usage ;;
esac
[ -d "$dir" ] && dir=$(cd "$dir" && pwd -P)

# Mail files belong to a non-root user: Dovecot refuses uid 0 for mail.
owner() {
	if [ "$(id -u)" -eq 0 ]; then
		if ! id mfmail >/dev/null 2>&1; then
			useradd -r -M -d /nonexistent -s /usr/sbin/nologin mfmail ||
				die "cannot create the mail user mfmail"
			echo "dovecot.sh: created system user mfmail for the test mail" >&2
		fi
		echo "mfmail:$(id -gn mfmail)"
	else
		echo "$(id -un):$(id -gn)"
	fi
}

# Something accepts connections on 127.0.0.1:PORT.
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# The IMAP greeting ("* OK ...") arrives on PORT within 2 s.
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
	[[ $cl == *"-c $dir/dovecot.conf"* ]]
}

stop() {
	local pidf=$dir/run/master.pid pid p ports=
	if [ -f "$pidf" ]; then
		pid=$(cat "$pidf")
		# A stale pid file may name an unrelated process by now: check.
		if is_our_master "$pid"; then
			ports=$(awk '$1 == "port" { print $3 }' "$dir/dovecot.conf")
			kill -TERM "$pid" 2>/dev/null || true
			for _ in $(seq 1 100); do is_our_master "$pid" || break; sleep 0.1; done
			if is_our_master "$pid"; then
				echo "dovecot.sh: master $pid did not stop in 10 s, killing it" >&2
				kill -KILL "$pid" 2>/dev/null || true
				for _ in $(seq 1 50); do is_our_master "$pid" || break; sleep 0.1; done
			fi
		fi
		rm -f "$pidf"
	fi
	# Login processes hold the listeners a moment longer than the master.
	for p in $ports; do
		for _ in $(seq 1 50); do port_busy "$p" || break; sleep 0.1; done
		port_busy "$p" && die "port $p is still in use after stopping $dir"
	done
	# A short base_dir outside DIR (see below) goes with the instance.
	if [ -L "$dir/run" ]; then
		rm -rf "$(readlink "$dir/run")"
		rm -f "$dir/run"
	fi
	return 0
}

case "$cmd" in
stop) [ -d "$dir" ] && stop; exit 0 ;;
fixperms)
	[ -d "$dir/mail" ] || die "no $dir/mail"
	chown -R "$(owner)" "$dir/mail"
	exit 0
	;;
maildir)
	[ $# -eq 1 ] || usage
	echo "$dir/mail/$1/Maildir"
	exit 0
	;;
esac

base=14300 users="src dst" sep=. noq=0 noc=0 nolp=0 maxconn=100 quota= sent=Sent master=
oauth2= oauth2_mechs="xoauth2 oauthbearer" nosaslir=0 inboxpfx=0 publicns= noes=0 p3lock=no keytype=rsa
while [ $# -gt 0 ]; do
	case "$1" in
	--port-base) base=${2:?}; shift 2 ;;
	--users) users=${2:?}; shift 2 ;;
	--separator) sep=${2:?}; shift 2 ;;
	--no-qresync) noq=1; shift ;;
	--no-condstore) noc=1; noq=1; shift ;;
	--no-literal-plus) nolp=1; shift ;;
	--no-sasl-ir) nosaslir=1; shift ;;
	--max-conn) maxconn=${2:?}; shift 2 ;;
	--quota-user) quota=${2:?}; shift 2 ;;
	--sent-name) sent=${2:?}; shift 2 ;;
	--master-user) master=${2:?}; shift 2 ;;
	--oauth2) oauth2=${2:?}; shift 2 ;;
	--oauth2-mechanisms) oauth2_mechs=${2:?}; shift 2 ;;
	--inbox-prefix) inboxpfx=1; shift ;;
	--no-esearch) noes=1; shift ;;
	--public-ns) publicns=${2:?}; shift 2 ;;
	--pop3-lock) p3lock=yes; shift ;;
	--tls-key-type) keytype=${2:?}; shift 2 ;;
	*) die "unknown option $1" ;;
	esac
done
[ "$sep" = . ] || [ "$sep" = / ] || die "--separator must be . or /"
[[ $base =~ ^[0-9]+$ ]] && [ "$base" -ge 1024 ] && [ "$base" -le 65530 ] ||
	die "--port-base must be a number from 1024 to 65530"
[[ $maxconn =~ ^[0-9]+$ ]] && [ "$maxconn" -ge 1 ] || die "--max-conn must be a positive number"
[ -z "$quota" ] || [[ $quota =~ ^[^:]+:[0-9]+$ ]] || die "--quota-user wants USER:BYTES"
[ -z "$oauth2" ] || [[ $oauth2 =~ ^https?://[A-Za-z0-9.:/_-]+$ ]] || die "--oauth2 wants an http(s) URL"
[[ $oauth2_mechs =~ ^[a-z0-9\ ]+$ ]] || die "bad --oauth2-mechanisms"
[ -z "$publicns" ] || [[ $publicns =~ ^[A-Za-z0-9]+[./]$ ]] || die "--public-ns wants a prefix like Public."
[ "$inboxpfx" = 0 ] || [ "$sep" = . ] || die "--inbox-prefix needs --separator ."
case $keytype in
rsa) newkey=(-newkey rsa:2048) ;;
ec) newkey=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1) ;;
*) die "--tls-key-type must be rsa or ec" ;;
esac
set -f; users_a=($users); set +f
[ ${#users_a[@]} -gt 0 ] || die "--users is empty"
for u in "${users_a[@]}"; do
	[[ $u =~ ^[A-Za-z0-9][A-Za-z0-9._+-]*$ ]] || die "bad user name '$u'"
done
command -v dovecot >/dev/null || die "dovecot is not installed (run scripts/deps.sh)"

stop # a previous instance in the same DIR
ports="$base $((base + 1)) $((base + 2)) $((base + 3)) $((base + 4))"
for p in $ports; do
	port_busy "$p" && die "port $p on 127.0.0.1 is already in use (another instance? pick another --port-base)"
done

own=$(owner)
uid=$(id -u "${own%%:*}")
gid=$(getent group "${own##*:}" | cut -d: -f3)
mkdir -p "$dir"/{state,mail,tls,pw}
chmod 755 "$dir" "$dir/mail"
rm -f "$dir/env"

# As root the mail user must be able to reach DIR/mail. mktemp -d makes
# 0700 directories: give those under /tmp search permission (only x, no
# listing); anything else is the caller's to fix.
if [ "$(id -u)" -eq 0 ]; then
	d=$dir
	while [ "$d" != / ]; do
		d=$(dirname "$d")
		if [ "$(stat -c %u "$d")" -eq 0 ] && [ $((0$(stat -c %a "$d") & 1)) -eq 0 ]; then
			case "$d/" in
			/tmp/?*/) chmod o+x "$d"; echo "dovecot.sh: chmod o+x $d (so ${own%%:*} reaches the mail)" >&2 ;;
			*) die "${own%%:*} cannot enter $d: make it searchable (chmod o+x) or use a DIR elsewhere" ;;
			esac
		fi
	done
fi

# Unix sockets are limited to 107 bytes: with a long DIR, base_dir lives in
# a short directory under /tmp and DIR/run points to it.
rm -rf "$dir/run"
if [ ${#dir} -le 60 ]; then
	rundir=$dir/run
	mkdir -p "$rundir"
else
	rundir=$(mktemp -d /tmp/mfdv.XXXXXX)
	chmod 755 "$rundir"
	ln -s "$rundir" "$dir/run"
fi

# A private CA and a server certificate for 127.0.0.1 / localhost.
if [ ! -f "$dir/tls/server.pem" ] || [ ! -f "$dir/tls/ca.pem" ]; then
	(
		cd "$dir/tls"
		printf 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\n' >ca.ext
		printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' >server.ext
		openssl req -new "${newkey[@]}" -nodes -keyout ca.key -out ca.csr \
			-subj "/CN=mailferry test CA" &&
			openssl x509 -req -in ca.csr -signkey ca.key -out ca.pem -days 3650 -extfile ca.ext &&
			openssl req -new "${newkey[@]}" -nodes -keyout server.key -out server.csr \
				-subj "/CN=localhost" &&
			openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
				-out server.pem -days 3650 -extfile server.ext
	) >"$dir/tls/openssl.log" 2>&1 || { cat "$dir/tls/openssl.log" >&2; die "making the test certificates failed"; }
	chmod 600 "$dir/tls/ca.key" "$dir/tls/server.key"
fi

# Users are written before the server starts: passwd-file is re-read on a
# one-second mtime, so a user added later can briefly fail to log in.
: >"$dir/users.new"
for u in "${users_a[@]}"; do
	extra=
	if [ -n "$quota" ] && [ "${quota%%:*}" = "$u" ]; then
		extra="userdb_quota_rule=*:storage=${quota##*:}B"
	fi
	echo "$u:{PLAIN}pw-$u-secret::::::$extra" >>"$dir/users.new"
	printf 'pw-%s-secret' "$u" >"$dir/pw/$u"
	chmod 600 "$dir/pw/$u"
	mkdir -p "$dir/mail/$u"
done
chmod 644 "$dir/users.new"
mv "$dir/users.new" "$dir/users"
# A master (admin) user: logs in as any user, by SASL PLAIN's authorization
# identity or as "user*MASTER"; its password is pw-MASTER-secret.
: >"$dir/masters"
if [ -n "$master" ]; then
	echo "$master:{PLAIN}pw-$master-secret" >"$dir/masters"
	printf 'pw-%s-secret' "$master" >"$dir/pw/$master"
	chmod 600 "$dir/pw/$master"
fi
chmod 644 "$dir/masters"
chown -R "$own" "$dir/mail"
# OAuth2: a passdb oauth2 before the others (only for its mechanisms),
# asking the introspection endpoint about every token: no cache, so a
# token the endpoint stops accepting fails at the next login.
oauth2_mechs_conf= oauth2_passdb=
if [ -n "$oauth2" ]; then
	cat >"$dir/oauth2.conf.ext" <<EOF
introspection_mode = post
introspection_url = $oauth2
force_introspection = yes
username_attribute = username
active_attribute = active
active_value = true
timeout_msecs = 10000
EOF
	chmod 644 "$dir/oauth2.conf.ext"
	oauth2_mechs_conf=" $oauth2_mechs"
	oauth2_passdb="passdb {
  driver = oauth2
  mechanisms = $oauth2_mechs
  args = $dir/oauth2.conf.ext
}"
fi

layout=
[ "$sep" = / ] && layout=":LAYOUT=fs"
plugins=
[ -n "$quota" ] && plugins="quota"
nonroot=
if [ "$(id -u)" -ne 0 ]; then
	# Not root: every process runs as the caller.
	nonroot="default_internal_user = $(id -un)
default_internal_group = $(id -gn)
default_login_user = $(id -un)"
fi
# imap/pop3 run one process per connection (default limit 1024 each).
procs=$((maxconn * ${#users_a[@]} + 24))
[ $procs -lt 1024 ] && procs=1024

inbox_prefix_conf=
[ "$inboxpfx" = 1 ] && inbox_prefix_conf="  prefix = INBOX."
public_conf=
if [ -n "$publicns" ]; then
	mkdir -p "$dir/public"
	chown "$own" "$dir/public" 2>/dev/null || true
	public_conf="namespace public {
  type = public
  separator = $sep
  prefix = $publicns
  location = maildir:$dir/public$layout
  subscriptions = no
  list = yes
}"
fi
cat >"$dir/dovecot.conf" <<EOF
# Private test instance written by scripts/dovecot.sh; not the system's.
instance_name = mailferry-$base
base_dir = $rundir
state_dir = $dir/state
log_path = $dir/dovecot.log
info_log_path = $dir/dovecot.log
$nonroot
listen = 127.0.0.1
protocols = imap pop3 lmtp
ssl = yes
ssl_cert = <$dir/tls/server.pem
ssl_key = <$dir/tls/server.key
ssl_min_protocol = TLSv1.2
# The client, not the server, enforces the password policy in these tests.
disable_plaintext_auth = no
auth_mechanisms = plain login$oauth2_mechs_conf
# LMTP RCPT TO:<user@example.org> delivers to "user".
auth_username_format = %Ln
# A wrong password fails in ~0.5 s, not 2 s (tests try several).
auth_failure_delay = 0
mail_location = maildir:$dir/mail/%u/Maildir$layout
mail_uid = $uid
mail_gid = $gid
first_valid_uid = $uid
last_valid_uid = $uid
first_valid_gid = $gid
last_valid_gid = $gid
mail_max_userip_connections = $maxconn
# --pop3-lock: a second POP3 session of a maildrop is refused while one
# holds it (Dovecot's default "no" lets them run side by side)
pop3_lock_session = $p3lock
mail_plugins = \$mail_plugins $plugins
# Performance: what a production server would run. mail_fsync stays
# "optimized" (the default: fsync where the mail would otherwise be lost),
# maildir_very_dirty_syncs stays off (tests write Maildirs behind Dovecot's
# back); login processes run in high-performance mode (one process serves
# many connections) so connection set-up does not fork per connection.
mail_fsync = optimized
auth_master_user_separator = *
passdb {
  driver = passwd-file
  args = scheme=PLAIN $dir/masters
  master = yes
  result_success = continue
}
$oauth2_passdb
passdb {
  driver = passwd-file
  args = scheme=PLAIN $dir/users
}
userdb {
  driver = passwd-file
  args = $dir/users
  default_fields = uid=$uid gid=$gid home=$dir/mail/%u
}
namespace inbox {
  inbox = yes
  separator = $sep
$inbox_prefix_conf
  mailbox Drafts {
    auto = no
    special_use = \\Drafts
  }
  mailbox "$sent" {
    auto = no
    special_use = \\Sent
  }
  mailbox Trash {
    auto = no
    special_use = \\Trash
  }
  mailbox Junk {
    auto = no
    special_use = \\Junk
  }
  mailbox Archive {
    auto = no
    special_use = \\Archive
  }
}
$public_conf
plugin {
  quota = maildir:User quota
}
service imap-login {
  chroot =
  service_count = 0
  process_min_avail = 1
  inet_listener imap {
    address = 127.0.0.1
    port = $base
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = $((base + 1))
    ssl = yes
  }
}
service pop3-login {
  chroot =
  service_count = 0
  inet_listener pop3 {
    address = 127.0.0.1
    port = $((base + 2))
  }
  inet_listener pop3s {
    address = 127.0.0.1
    port = $((base + 3))
    ssl = yes
  }
}
service imap {
  process_limit = $procs
}
service pop3 {
  process_limit = $procs
}
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = $((base + 4))
  }
  unix_listener lmtp {
    mode = 0600
  }
}
# No auth penalty: after a wrong password (tests try them) anvil would
# delay every later login from 127.0.0.1 by 2-15 s.
service anvil {
  chroot =
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}
service stats {
  unix_listener stats-writer {
    mode = 0666
  }
}
EOF

: >>"$dir/dovecot.log"
logpos=$(wc -c <"$dir/dovecot.log")
fail() { # message
	echo "dovecot.sh: $1; the end of $dir/dovecot.log:" >&2
	tail -c +$((logpos + 1)) "$dir/dovecot.log" | tail -n 20 >&2
	stop >/dev/null 2>&1 || true
	exit 1
}
wait_greeting() {
	local end=$((SECONDS + 20))
	while [ $SECONDS -lt $end ]; do greets "$base" && return 0; sleep 0.1; done
	return 1
}
# The daemon must not inherit the caller's descriptors (pipes, lock files):
# it would hold them for its whole life.
closefds=
for f in /proc/$$/fd/*; do
	n=${f##*/}
	case $n in 0 | 1 | 2) ;; *) closefds="$closefds $n>&-" ;; esac
done
eval 'dovecot -c "$dir/dovecot.conf" 2>>"$dir/dovecot.log" </dev/null' "$closefds" ||
	fail "dovecot failed to start"
wait_greeting || fail "no IMAP greeting on port $base within 20 s"
# TLS is set up lazily, at the first handshake: try one now, verified
# against our CA, so a broken certificate fails here and not in a test.
python3 - "$((base + 1))" "$dir/tls/ca.pem" <<'PY' 2>>"$dir/dovecot.log" || fail "IMAPS on port $((base + 1)) does not work"
import socket, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[2])
with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10) as s:
    with ctx.wrap_socket(s, server_hostname="127.0.0.1") as t:
        if not t.recv(100).startswith(b"* OK"):
            sys.exit("no greeting over TLS")
PY

# Hiding capabilities: Dovecot 2.3 has no "-CAP" syntax, only a full
# imap_capability list. Take the list this very server advertises after
# LOGIN, drop the hidden ones, and reload; then wait until it shows.
capabilities() { # prints the post-login CAPABILITY list
	python3 - "$base" "${users_a[0]}" "pw-${users_a[0]}-secret" <<'PY'
import imaplib, sys
m = imaplib.IMAP4("127.0.0.1", int(sys.argv[1]), timeout=5)
m.login(sys.argv[2], sys.argv[3])
typ, data = m.capability()
print(data[0].decode())
m.logout()
PY
}
hide=
[ $noq = 1 ] && hide="$hide QRESYNC"
[ $noc = 1 ] && hide="$hide CONDSTORE"
[ $noes = 1 ] && hide="$hide ESEARCH"
[ $nolp = 1 ] && hide="$hide LITERAL+"
[ $nosaslir = 1 ] && hide="$hide SASL-IR"
if [ -n "$hide" ]; then
	full=$(capabilities) || fail "could not read the capabilities"
	keep=
	for c in $full; do
		case " $hide " in *" $c "*) ;; *) keep="$keep $c" ;; esac
	done
	printf '# The capabilities this Dovecot advertises, without%s.\nimap_capability =%s\n' \
		"$hide" "$keep" >>"$dir/dovecot.conf"
	kill -HUP "$(cat "$rundir/master.pid")"
	hidden=0
	for _ in $(seq 1 100); do
		now=$(capabilities 2>/dev/null) || { sleep 0.1; continue; }
		hidden=1
		for c in $hide; do case " $now " in *" $c "*) hidden=0 ;; esac; done
		[ $hidden = 1 ] && break
		sleep 0.1
	done
	[ $hidden = 1 ] || fail "the server still advertises some of:$hide"
fi

q() { printf "%q" "$1"; }
cat >"$dir/env" <<EOF
DOVECOT_DIR=$(q "$dir")
DOVECOT_CONF=$(q "$dir/dovecot.conf")
IMAP_PORT=$base
IMAPS_PORT=$((base + 1))
POP3_PORT=$((base + 2))
POP3S_PORT=$((base + 3))
LMTP_PORT=$((base + 4))
CA_FILE=$(q "$dir/tls/ca.pem")
MAIL_ROOT=$(q "$dir/mail")
MAIL_OWNER=$(q "$own")
SEPARATOR=$(q "$sep")
USERS=$(q "${users_a[*]}")
EOF
echo "dovecot.sh: started in $dir: imap $base, imaps $((base + 1)), pop3 $((base + 2)), pop3s $((base + 3)), lmtp $((base + 4))"

#!/usr/bin/env bash
# scripts/dovecot.sh — a private Dovecot 2.3 for tests, the demo and the
# benchmark: its own configuration, CA, mail and state under DIR, listening
# on 127.0.0.1 only, on unprivileged ports. The system's /etc/dovecot and
# its service are never touched.
#
#   scripts/dovecot.sh start DIR [--port-base N] [--users "a b"] [--separator . | /]
#                                [--no-qresync] [--no-condstore] [--no-literal-plus]
#                                [--max-conn N] [--quota-user U:BYTES]
#   scripts/dovecot.sh stop DIR
#   scripts/dovecot.sh fixperms DIR     (after writing Maildirs directly)
#   scripts/dovecot.sh maildir DIR USER (prints USER's Maildir path)
#
# Ports: IMAP (STARTTLS) N, IMAPS N+1, POP3 N+2, POP3S N+3, LMTP N+4
# (default N = 14300). User U's password is "pw-U-secret", also in DIR/pw/U.
# DIR/env is a shell file with IMAP_PORT IMAPS_PORT POP3_PORT POP3S_PORT
# LMTP_PORT CA_FILE MAIL_ROOT MAIL_OWNER SEPARATOR USERS DOVECOT_DIR.
set -euo pipefail

die() { echo "dovecot.sh: $*" >&2; exit 1; }

cmd=${1:-}; dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || die "usage: dovecot.sh start|stop|fixperms|maildir DIR ..."
shift 2
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

owner() {
	if [ "$(id -u)" -eq 0 ]; then
		# Dovecot refuses to deliver as uid 0: mail belongs to a system user.
		id mfmail >/dev/null 2>&1 || useradd -r -M -d /nonexistent -s /usr/sbin/nologin mfmail
		echo "mfmail:mfmail"
	else
		echo "$(id -un):$(id -gn)"
	fi
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

stop() {
	local pidf=$dir/run/master.pid pid i
	[ -f "$pidf" ] || return 0
	pid=$(cat "$pidf")
	if kill -0 "$pid" 2>/dev/null; then
		kill "$pid" 2>/dev/null || true
		for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$pid" 2>/dev/null || true
		for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	fi
	rm -f "$pidf"
}

case "$cmd" in
stop) stop; exit 0 ;;
fixperms) chown -R "$(owner)" "$dir/mail"; exit 0 ;;
maildir) echo "$dir/mail/$1/Maildir"; exit 0 ;;
start) ;;
*) die "unknown command $cmd" ;;
esac

base=14300 users="src dst" sep=. noq=0 noc=0 nolp=0 maxconn=100 quota=
while [ $# -gt 0 ]; do
	case "$1" in
	--port-base) base=$2; shift 2 ;;
	--users) users=$2; shift 2 ;;
	--separator) sep=$2; shift 2 ;;
	--no-qresync) noq=1; shift ;;
	--no-condstore) noc=1; noq=1; shift ;; # QRESYNC implies CONDSTORE
	--no-literal-plus) nolp=1; shift ;;
	--max-conn) maxconn=$2; shift 2 ;;
	--quota-user) quota=$2; shift 2 ;;
	*) die "unknown option $1" ;;
	esac
done
[ "$sep" = . ] || [ "$sep" = / ] || die "--separator must be . or /"

stop
for p in $base $((base + 1)) $((base + 2)) $((base + 3)) $((base + 4)); do
	port_busy "$p" && die "port $p on 127.0.0.1 is in use (another instance? try --port-base)"
done

own=$(owner); uid=$(id -u "${own%%:*}"); gid=$(getent group "${own##*:}" | cut -d: -f3)
mkdir -p "$dir"/{run,state,mail,tls,pw}
chmod 755 "$dir" "$dir/mail"

# A private CA and a server certificate for 127.0.0.1 / localhost.
if [ ! -f "$dir/tls/server.pem" ]; then
	(cd "$dir/tls" &&
		openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 3650 \
			-subj "/CN=mailferry test CA" >/dev/null 2>&1 &&
		openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr \
			-subj "/CN=127.0.0.1" >/dev/null 2>&1 &&
		printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n' >ext &&
		openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
			-out server.pem -days 3650 -extfile ext >/dev/null 2>&1) ||
		die "making the test certificates failed"
fi

# Users are written before the server starts: passwd-file is re-read on a
# one-second mtime, so a user added later can briefly fail to log in.
: >"$dir/users"
for u in $users; do
	extra=
	if [ -n "$quota" ] && [ "${quota%%:*}" = "$u" ]; then
		extra="userdb_quota_rule=*:storage=${quota##*:}B"
	fi
	echo "$u:{PLAIN}pw-$u-secret::::::$extra" >>"$dir/users"
	printf 'pw-%s-secret' "$u" >"$dir/pw/$u"
	chmod 600 "$dir/pw/$u"
	mkdir -p "$dir/mail/$u"
done
chown -R "$own" "$dir/mail"

# Capabilities are advertised explicitly only when some must be hidden
# (Dovecot 2.3 has no "-CAP" syntax): the full 2.3.19 list minus those.
caps="IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT SORT=DISPLAY THREAD=REFERENCES THREAD=REFS THREAD=ORDEREDSUBJECT MULTIAPPEND URL-PARTIAL CATENATE UNSELECT CHILDREN NAMESPACE UIDPLUS LIST-EXTENDED I18NLEVEL=1 CONDSTORE QRESYNC ESEARCH ESORT SEARCHRES WITHIN CONTEXT=SEARCH LIST-STATUS BINARY MOVE SNIPPET=FUZZY PREVIEW=FUZZY PREVIEW STATUS=SIZE SAVEDATE LITERAL+ NOTIFY SPECIAL-USE"
capline=
if [ $noq = 1 ] || [ $noc = 1 ] || [ $nolp = 1 ]; then
	c=" $caps "
	[ $noq = 1 ] && c=${c// QRESYNC / }
	[ $noc = 1 ] && c=${c// CONDSTORE / }
	[ $nolp = 1 ] && c=${c// LITERAL+ / }
	c=${c# }; c=${c% }
	capline="imap_capability = $c"
fi
layout=
[ "$sep" = / ] && layout=":LAYOUT=fs"
plugins=
[ -n "$quota" ] && plugins="quota"

cat >"$dir/dovecot.conf" <<EOF
# Private test instance written by scripts/dovecot.sh; not the system's.
instance_name = mailferry-$(basename "$dir")-$base
base_dir = $dir/run
state_dir = $dir/state
log_path = $dir/dovecot.log
info_log_path = $dir/dovecot.log
listen = 127.0.0.1
protocols = imap pop3 lmtp
ssl = yes
ssl_cert = <$dir/tls/server.pem
ssl_key = <$dir/tls/server.key
ssl_min_protocol = TLSv1.2
# The client, not the server, enforces the password policy in these tests.
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_username_format = %Ln
mail_location = maildir:$dir/mail/%u/Maildir$layout
mail_uid = $uid
mail_gid = $gid
first_valid_uid = $uid
last_valid_uid = $uid
first_valid_gid = $gid
mail_max_userip_connections = $maxconn
mail_plugins = \$mail_plugins $plugins
# mail_fsync stays at its default (optimized), as on a real server.
$capline
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
  mailbox Drafts {
    special_use = \\Drafts
  }
  mailbox Sent {
    special_use = \\Sent
  }
  mailbox Trash {
    special_use = \\Trash
  }
  mailbox Junk {
    special_use = \\Junk
  }
  mailbox Archive {
    special_use = \\Archive
  }
}
plugin {
  quota = maildir:User quota
}
service imap-login {
  chroot =
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
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = $((base + 4))
  }
  unix_listener lmtp {
    mode = 0600
  }
}
service anvil {
  chroot =
}
service stats {
  unix_listener stats-writer {
    mode = 0666
  }
}
EOF

dovecot -c "$dir/dovecot.conf" || { tail -n 20 "$dir/dovecot.log" >&2 2>/dev/null; die "dovecot failed to start"; }
for i in $(seq 1 200); do
	port_busy "$base" && break
	sleep 0.1
done
port_busy "$base" || { tail -n 20 "$dir/dovecot.log" >&2; die "dovecot did not open port $base"; }

cat >"$dir/env" <<EOF
DOVECOT_DIR=$dir
IMAP_PORT=$base
IMAPS_PORT=$((base + 1))
POP3_PORT=$((base + 2))
POP3S_PORT=$((base + 3))
LMTP_PORT=$((base + 4))
CA_FILE=$dir/tls/ca.pem
MAIL_ROOT=$dir/mail
MAIL_OWNER=$own
SEPARATOR=$sep
USERS="$users"
EOF
echo "dovecot.sh: started on 127.0.0.1:$base (imap) $((base + 1)) (imaps) in $dir"

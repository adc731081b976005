#!/usr/bin/env bash
# scripts/postfix.sh — a private Postfix 3.7 for tests: its own main.cf,
# master.cf, queue, data and log under DIR, SMTP on 127.0.0.1:PORT only,
# every message for the test domain handed over LMTP to a private Dovecot
# (scripts/dovecot.sh, its LMTP port), nothing ever sent off the machine.
# The system's /etc/postfix and its service are never touched. Needs root
# (Postfix's master runs as root and drops to the postfix user).
#
#   scripts/postfix.sh start DIR --port P --lmtp-port P [--domain D]
#                      [--users "u1 u2"] [--size-limit BYTES]
#                      [--tls-cert FILE --tls-key FILE] [--auth USER:PASSWORD]
#   scripts/postfix.sh stop DIR         (idempotent; waits until the port is free)
#   scripts/postfix.sh queue DIR        (prints how many messages are queued)
#
# --users: the domain's only recipients; RCPT TO anyone else is refused with
#   550 5.1.1 at once (otherwise Postfix takes every address and the LMTP
#   server's refusal becomes a bounce). Default domain example.org.
# --size-limit: message_size_limit (default 64 MiB), announced as SIZE.
# --tls-cert/--tls-key: STARTTLS offered (not required).
# --auth: AUTH PLAIN LOGIN offered (Cyrus SASL, a private sasldb); only that
#   user and password pass.
# After start, DIR/env defines POSTFIX_DIR POSTFIX_CONF SMTP_PORT LMTP_PORT
# DOMAIN SIZE_LIMIT LOG. The log is DIR/log/postfix.log.
#
# Postfix changes messages unless told not to; these keep the bytes as the
# client sent them (only its Received: line is prepended):
#   local_header_rewrite_clients =   no From/Date/Message-ID added, no
#                                    address rewriting for 127.0.0.1 clients
#                                    (the default covers inet_interfaces)
#   message_drop_headers =           Return-Path, Bcc, Content-Length kept
#   lmtp_line_length_limit = 0       lines over 998 bytes not folded
#   smtp_line_length_limit = 0
#   header_size_limit = 64 MiB       a long header not cut at 100 KiB
#   disable_mime_output_conversion = yes   no 8bit -> quoted-printable
#   smtputf8_enable = no             Dovecot's LMTP does not offer SMTPUTF8,
#                                    and Postfix bounces a message sent with
#                                    SMTPUTF8 to such a server when a header
#                                    is UTF-8; without it the UTF-8 headers
#                                    go through as 8-bit bytes, unchanged
set -euo pipefail

die() { echo "postfix.sh: $*" >&2; exit 1; }
usage() { die "usage: postfix.sh start DIR --port P --lmtp-port P [options] | stop DIR | queue DIR"; }

cmd=${1:-}; dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || usage
shift 2
case "$cmd" in
start) mkdir -p "$dir" ;;
stop | queue) [ -d "$dir" ] || exit 0 ;;
*) usage ;;
esac
dir=$(cd "$dir" && pwd -P)
etc=$dir/etc

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# The SMTP greeting ("220 ...") arrives on PORT within 2 s.
greets() {
	(
		exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
		IFS= read -r -t 2 line <&3 || exit 1
		printf 'QUIT\r\n' >&3
		[[ $line == "220 "* ]]
	) 2>/dev/null
}
master_pid() { # prints the live master's pid, if any
	local pid
	[ -f "$dir/queue/pid/master.pid" ] || return 1
	pid=$(tr -dc 0-9 <"$dir/queue/pid/master.pid")
	[ -n "$pid" ] && [ -d "/proc/$pid" ] || return 1
	[ "$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null)" != Z ] || return 1
	[[ $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) == *master* ]] || return 1
	echo "$pid"
}

stop() {
	local pid port=
	[ -f "$etc/main.cf" ] || return 0
	[ -f "$dir/env" ] && port=$(sed -n 's/^SMTP_PORT=//p' "$dir/env")
	if pid=$(master_pid); then
		postfix -c "$etc" stop >/dev/null 2>&1 || kill -TERM "$pid" 2>/dev/null || true
		for _ in $(seq 1 100); do master_pid >/dev/null || break; sleep 0.1; done
		if pid=$(master_pid); then
			echo "postfix.sh: master $pid did not stop in 10 s, killing it" >&2
			kill -KILL "$pid" 2>/dev/null || true
			for _ in $(seq 1 50); do master_pid >/dev/null || break; sleep 0.1; done
		fi
	fi
	# Children (smtpd, lmtp...) exit when the master is gone; free the port.
	if [ -n "$port" ]; then
		for _ in $(seq 1 50); do port_busy "$port" || break; sleep 0.1; done
		port_busy "$port" && die "port $port is still in use after stopping $dir"
	fi
	return 0
}

case "$cmd" in
stop) stop; exit 0 ;;
queue)
	n=0
	for q in maildrop incoming active deferred hold; do
		[ -d "$dir/queue/$q" ] && n=$((n + $(find "$dir/queue/$q" -type f | wc -l)))
	done
	echo "$n"
	exit 0
	;;
esac

port= lmtp= domain=example.org users= size=$((64 * 1024 * 1024)) cert= key= auth=
while [ $# -gt 0 ]; do
	case "$1" in
	--port) port=${2:?}; shift 2 ;;
	--lmtp-port) lmtp=${2:?}; shift 2 ;;
	--domain) domain=${2:?}; shift 2 ;;
	--users) users=${2:?}; shift 2 ;;
	--size-limit) size=${2:?}; shift 2 ;;
	--tls-cert) cert=${2:?}; shift 2 ;;
	--tls-key) key=${2:?}; shift 2 ;;
	--auth) auth=${2:?}; shift 2 ;;
	*) die "unknown option $1" ;;
	esac
done
for v in "$port" "$lmtp"; do
	[[ $v =~ ^[0-9]+$ ]] && [ "$v" -ge 1024 ] && [ "$v" -le 65535 ] || die "--port and --lmtp-port must be numbers from 1024 to 65535"
done
[[ $size =~ ^[0-9]+$ ]] || die "--size-limit wants a number of bytes"
[[ $domain =~ ^[A-Za-z0-9.-]+$ ]] || die "bad --domain '$domain'"
[ -z "$auth" ] || [[ $auth =~ ^[A-Za-z0-9._-]+:[^[:space:]]+$ ]] || die "--auth wants USER:PASSWORD"
[ -z "$cert" ] || [ -n "$key" ] || die "--tls-cert needs --tls-key"
set -f; users_a=($users); set +f
for u in "${users_a[@]}"; do [[ $u =~ ^[A-Za-z0-9][A-Za-z0-9._+-]*$ ]] || die "bad user name '$u'"; done
[ "$(id -u)" -eq 0 ] || die "needs root (Postfix's master runs as root)"
command -v postfix >/dev/null || die "postfix is not installed (run scripts/deps.sh)"
id postfix >/dev/null 2>&1 || die "no postfix user (is the postfix package installed?)"

stop # a previous instance in the same DIR
port_busy "$port" && die "port $port on 127.0.0.1 is already in use"
rm -rf "$etc" "$dir/queue" "$dir/data" "$dir/log" "$dir/env"
mkdir -p "$etc/sasl" "$dir/queue" "$dir/data" "$dir/log"
chown postfix: "$dir/data"
chmod 755 "$dir" "$etc"

maps=
if [ ${#users_a[@]} -gt 0 ]; then
	maps="inline:{"
	for u in "${users_a[@]}"; do maps="$maps $u@$domain=$u/,"; done
	maps="${maps%,} }"
fi
tls=
if [ -n "$cert" ]; then
	tls="smtpd_tls_security_level = may
smtpd_tls_cert_file = $cert
smtpd_tls_key_file = $key
smtpd_tls_loglevel = 1"
fi
sasl=
if [ -n "$auth" ]; then
	# A private Cyrus SASL configuration and user database (PLAIN and
	# LOGIN). Debian's Postfix reads smtpd.conf from $config_directory/sasl
	# whatever cyrus_sasl_config_path says.
	cat >"$etc/sasl/smtpd.conf" <<EOF
pwcheck_method: auxprop
auxprop_plugin: sasldb
mech_list: PLAIN LOGIN
sasldb_path: $etc/sasl/sasldb2
EOF
	printf '%s' "${auth#*:}" | saslpasswd2 -p -c -f "$etc/sasl/sasldb2" -u "$domain" "${auth%%:*}" ||
		die "saslpasswd2 failed"
	chown postfix: "$etc/sasl/sasldb2"
	chmod 640 "$etc/sasl/sasldb2"
	sasl="smtpd_sasl_auth_enable = yes
smtpd_sasl_type = cyrus
smtpd_sasl_path = smtpd
cyrus_sasl_config_path = $etc/sasl
smtpd_sasl_local_domain = $domain
smtpd_tls_auth_only = no
broken_sasl_auth_clients = no"
fi

cat >"$etc/main.cf" <<EOF
# Private test instance written by scripts/postfix.sh; not the system's.
compatibility_level = 3.6
queue_directory = $dir/queue
data_directory = $dir/data
mail_owner = postfix
setgid_group = postdrop
myhostname = mailferry-test.localdomain
mydomain = localdomain
myorigin = \$myhostname
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
mydestination =
relay_domains =
smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination
smtpd_recipient_restrictions =
# No syslog here: Postfix logs through postlogd into this file.
maillog_file = $dir/log/postfix.log
maillog_file_prefixes = $dir/log
# Everything for the test domain goes to the private Dovecot by LMTP;
# anything else fails at once instead of leaving the machine.
virtual_mailbox_domains = $domain
virtual_mailbox_maps = $maps
virtual_transport = lmtp:inet:127.0.0.1:$lmtp
default_transport = error:mail for other domains is not delivered by this test instance
relay_transport = error:no relaying from this test instance
local_transport = error:no local delivery in this test instance
message_size_limit = $size
alias_maps =
alias_database =
mailbox_size_limit = 0
virtual_mailbox_limit = 0
# Keep the message bytes (see scripts/postfix.sh's header comment).
local_header_rewrite_clients =
message_drop_headers =
lmtp_line_length_limit = 0
smtp_line_length_limit = 0
header_size_limit = 67108864
disable_mime_output_conversion = yes
smtputf8_enable = no
# Tests inject quickly and expect delivery within seconds.
in_flow_delay = 0
queue_run_delay = 2s
minimal_backoff_time = 2s
maximal_backoff_time = 10s
biff = no
append_dot_mydomain = no
smtpd_banner = \$myhostname ESMTP mailferry test Postfix
$tls
$sasl
EOF

cat >"$etc/master.cf" <<EOF
# service type  private unpriv  chroot  wakeup  maxproc command
127.0.0.1:$port inet n  -       n       -       -       smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOF

: >"$dir/log/postfix.log"
fail() {
	echo "postfix.sh: $1; the end of $dir/log/postfix.log:" >&2
	tail -n 20 "$dir/log/postfix.log" >&2
	stop >/dev/null 2>&1 || true
	exit 1
}
postfix -c "$etc" check >"$dir/log/check.out" 2>&1 || { cat "$dir/log/check.out" >&2; fail "postfix check failed"; }
# The daemon must not inherit the caller's descriptors (pipes, lock files).
closefds=
for f in /proc/$$/fd/*; do
	n=${f##*/}
	case $n in 0 | 1 | 2) ;; *) closefds="$closefds $n>&-" ;; esac
done
# `postfix` prints its errors only to a terminal: they are in the log.
eval 'postfix -c "$etc" start >"$dir/log/start.out" 2>&1 </dev/null' "$closefds" ||
	{ cat "$dir/log/start.out" >&2; fail "postfix start failed"; }
end=$((SECONDS + 20))
until greets "$port"; do
	[ $SECONDS -lt $end ] || fail "no SMTP greeting on port $port within 20 s"
	sleep 0.1
done

q() { printf "%q" "$1"; }
cat >"$dir/env" <<EOF
POSTFIX_DIR=$(q "$dir")
POSTFIX_CONF=$(q "$etc")
SMTP_PORT=$port
LMTP_PORT=$lmtp
DOMAIN=$(q "$domain")
SIZE_LIMIT=$size
LOG=$(q "$dir/log/postfix.log")
EOF
echo "postfix.sh: started in $dir: smtp 127.0.0.1:$port -> lmtp 127.0.0.1:$lmtp"

#!/usr/bin/env bash
# The private Dovecot of scripts/dovecot.sh and the test helpers work:
# IMAP login in clear, with STARTTLS and on IMAPS against the test CA;
# the capabilities each option promises; '/' separators; special-use
# mailboxes; POP3, LMTP, quota, the connection cap, Maildirs written
# directly; two instances at once; a clean stop that frees the ports.
# Probes use python3's imaplib/poplib/smtplib, not mailferry.
. "$(dirname "$0")/lib.sh"

P=$T_TMP/probe.py
cat >"$P" <<'PY'
import imaplib, poplib, smtplib, ssl, sys
what, port = sys.argv[1], int(sys.argv[2])
user = sys.argv[3] if len(sys.argv) > 3 else "src"
ca = sys.argv[4] if len(sys.argv) > 4 else None
pw = "pw-%s-secret" % user
def ctx():
    return ssl.create_default_context(cafile=ca)
def caps(m):
    return m.capability()[1][0].decode()
if what == "plain":       # prints the capabilities after LOGIN
    m = imaplib.IMAP4("127.0.0.1", port, timeout=10); m.login(user, pw); print(caps(m)); m.logout()
elif what == "prelogin":  # the capabilities before LOGIN
    m = imaplib.IMAP4("127.0.0.1", port, timeout=10); print(caps(m)); m.logout()
elif what == "starttls":
    m = imaplib.IMAP4("127.0.0.1", port, timeout=10); m.starttls(ssl_context=ctx())
    m.login(user, pw); print(caps(m)); m.logout()
elif what == "imaps":     # ca None: the system store, which must refuse
    m = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=ctx(), timeout=10)
    m.login(user, pw); print(caps(m)); m.logout()
elif what == "badpw":
    m = imaplib.IMAP4("127.0.0.1", port, timeout=10)
    try:
        m.login(user, "wrong"); sys.exit("logged in with a wrong password")
    except imaplib.IMAP4.error as e:
        print(e)
elif what == "create-list":  # create the mailboxes argv[4:] then LIST
    m = imaplib.IMAP4("127.0.0.1", port, timeout=10); m.login(user, pw)
    for b in sys.argv[4:]:
        typ, d = m.create(b)
        if typ != "OK": sys.exit("CREATE %s: %s" % (b, d))
    for l in m.list()[1]: print(l.decode())
    m.logout()
elif what == "count":     # messages in INBOX
    m = imaplib.IMAP4("127.0.0.1", port, timeout=10); m.login(user, pw)
    print(int(m.select("INBOX", readonly=True)[1][0])); m.logout()
elif what == "append":    # argv[4] bytes into INBOX: prints the reply
    m = imaplib.IMAP4("127.0.0.1", port, timeout=10); m.login(user, pw)
    msg = b"Subject: x\r\n\r\n" + b"y" * (int(sys.argv[4]) - 16) + b"\r\n"
    print(m.append("INBOX", None, None, msg)); m.logout()
elif what == "conns":     # open argv[4] sessions; print how many logged in
    n, ok = int(sys.argv[4]), 0
    ms = []
    for i in range(n):
        m = imaplib.IMAP4("127.0.0.1", port, timeout=10); ms.append(m)
        try:
            m.login(user, pw); ok += 1
        except imaplib.IMAP4.error as e:
            print(e)
    print(ok)
elif what == "pop3":
    p = poplib.POP3("127.0.0.1", port, timeout=10); p.user(user); p.pass_(pw); print(p.stat()); p.quit()
elif what == "pop3s":
    p = poplib.POP3_SSL("127.0.0.1", port, context=ctx(), timeout=10); p.user(user); p.pass_(pw)
    print(p.stat()); p.quit()
elif what == "lmtp":      # deliver one message to user@example.org
    s = smtplib.LMTP("127.0.0.1", port, timeout=10)
    r = s.sendmail("sender@example.net", ["%s@example.org" % user],
                   b"From: sender@example.net\r\nSubject: via lmtp\r\n\r\nhello\r\n")
    s.quit(); print("refused:", r)
PY
probe() { python3 "$P" "$@"; }
has() { case " $1 " in *" $2 "*) return 0 ;; esac; return 1; }
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# --- the default instance ---------------------------------------------------
dv_start S --users "src dst q" --quota-user q:2000 || { not_ok dv-start "scripts/dovecot.sh start failed"; exit 1; }
ok dv-start
[ -f "$S_CA_FILE" ] && [ "$S_IMAPS_PORT" = $((S_IMAP_PORT + 1)) ] && [ "$S_LMTP_PORT" = $((S_IMAP_PORT + 4)) ] &&
	[ "$S_MAIL_ROOT" = "$S_DIR/mail" ] && [ "$S_SEPARATOR" = . ] && [ "$S_USERS" = "src dst q" ] &&
	[ "$(cat "$S_DIR/pw/src")" = pw-src-secret ] && [ "$(stat -c %a "$S_DIR/pw/src")" = 600 ] &&
	ok dv-env || not_ok dv-env "unexpected $S_DIR/env or pw/"
[ "$(scripts/dovecot.sh maildir "$S_DIR" src)" = "$S_DIR/mail/src/Maildir" ] && ok dv-maildir-path ||
	not_ok dv-maildir-path "$(scripts/dovecot.sh maildir "$S_DIR" src)"

check login-plain probe plain "$S_IMAP_PORT"
check login-starttls probe starttls "$S_IMAP_PORT" src "$S_CA_FILE"
check login-imaps probe imaps "$S_IMAPS_PORT" src "$S_CA_FILE"
expect_exit imaps-untrusted-without-ca 1 probe imaps "$S_IMAPS_PORT" src
grep -q 'CERTIFICATE_VERIFY_FAILED' "$T_TMP/last.err" && ok imaps-untrusted-reason ||
	not_ok imaps-untrusted-reason "$(tail -n 1 "$T_TMP/last.err")"
probe badpw "$S_IMAP_PORT" | grep -q AUTHENTICATIONFAILED && ok bad-password ||
	not_ok bad-password "no AUTHENTICATIONFAILED"
# A refused login is answered at once (no timing threshold here: the
# machine may be busy; the configuration says it).
[ "$(doveconf -c "$S_DOVECOT_CONF" -h auth_failure_delay 2>/dev/null)" = 0 ] && ok bad-password-fast ||
	not_ok bad-password-fast "auth_failure_delay is not 0 in $S_DOVECOT_CONF"

caps=$(probe plain "$S_IMAP_PORT")
has "$caps" QRESYNC && has "$caps" CONDSTORE && has "$caps" LITERAL+ && has "$caps" SPECIAL-USE &&
	ok caps-default || not_ok caps-default "$caps"

# special-use mailboxes are configured but not created
out=$(probe create-list "$S_IMAP_PORT" dst)
! grep -q Sent <<<"$out" && ok special-use-not-auto || not_ok special-use-not-auto "$out"
out=$(probe create-list "$S_IMAP_PORT" dst Sent Trash a.b)
grep -q '\\Sent.* "\." Sent' <<<"$out" && grep -q '\\Trash' <<<"$out" && grep -q '"\." a\.b' <<<"$out" &&
	ok special-use-list || not_ok special-use-list "$(tr '\n' '|' <<<"$out")"
[ -d "$S_DIR/mail/dst/Maildir/.a.b" ] && ok maildir++-layout || not_ok maildir++-layout "no .a.b"

# POP3, POP3S, LMTP (user@example.org reaches user)
check pop3 probe pop3 "$S_POP3_PORT" src
check pop3s probe pop3s "$S_POP3S_PORT" src "$S_CA_FILE"
check lmtp-deliver probe lmtp "$S_LMTP_PORT" src
[ "$(probe count "$S_IMAP_PORT" src)" = 1 ] && ok lmtp-arrived || not_ok lmtp-arrived "INBOX count $(probe count "$S_IMAP_PORT" src)"

# a Maildir written directly, then fixperms: Dovecot indexes it
md=$(scripts/dovecot.sh maildir "$S_DIR" dst)
mkdir -p "$md/cur" "$md/new" "$md/tmp"
printf 'Subject: direct\r\n\r\nbody\r\n' >"$md/cur/1700000000.M1P1.test:2,S"
check fixperms scripts/dovecot.sh fixperms "$S_DIR"
[ "$(stat -c %U "$md/cur/1700000000.M1P1.test:2,S")" = "${S_MAIL_OWNER%%:*}" ] && ok fixperms-owner ||
	not_ok fixperms-owner "$(stat -c %U "$md/cur/1700000000.M1P1.test:2,S")"
[ "$(probe count "$S_IMAP_PORT" dst)" = 1 ] && ok direct-maildir-visible || not_ok direct-maildir-visible "not 1 message"

# quota for q only
probe append "$S_IMAP_PORT" q 5000 | grep -q OVERQUOTA && ok quota-refuses || not_ok quota-refuses "no OVERQUOTA"
probe append "$S_IMAP_PORT" src 5000 | grep -q "'OK'" && ok quota-others-unlimited || not_ok quota-others-unlimited "src refused"

# the raw IMAP helper, with a synchronizing literal and over STARTTLS
out=$(imap_session --starttls --ca "$S_CA_FILE" "$S_IMAP_PORT" <<'EOF'
a LOGIN src pw-src-secret
b APPEND INBOX {20}
Subject: raw

body
c STATUS INBOX (MESSAGES)
d LOGOUT
EOF
) && grep -q 'STATUS INBOX (MESSAGES 3)' <<<"$out" && ok imap-session || not_ok imap-session "$(tail -n 3 <<<"$out" | tr '\n' '|')"

# --- two more instances at once: hidden capabilities, '/' separator -------
dv_start N --no-qresync --max-conn 2 || not_ok dv-start-no-qresync "start failed"
caps=$(probe plain "$N_IMAP_PORT")
! has "$caps" QRESYNC && has "$caps" CONDSTORE && has "$caps" LITERAL+ && has "$caps" SPECIAL-USE &&
	ok caps-no-qresync || not_ok caps-no-qresync "$caps"
out=$(probe conns "$N_IMAP_PORT" src 3)
[ "$(tail -n 1 <<<"$out")" = 2 ] && grep -q 'mail_max_userip_connections' <<<"$out" && ok max-conn ||
	not_ok max-conn "$(tr '\n' '|' <<<"$out")"

dv_start F --separator / --no-condstore --no-literal-plus || not_ok dv-start-fs "start failed"
caps=$(probe plain "$F_IMAP_PORT"); pre=$(probe prelogin "$F_IMAP_PORT")
! has "$caps" QRESYNC && ! has "$caps" CONDSTORE && ! has "$caps" LITERAL+ && ! has "$pre" LITERAL+ &&
	has "$caps" UIDPLUS && has "$pre" STARTTLS && ok caps-no-condstore-no-literal-plus ||
	not_ok caps-no-condstore-no-literal-plus "$caps / $pre"
out=$(probe create-list "$F_IMAP_PORT" src a/b)
grep -q '"/" a/b' <<<"$out" && ok separator-slash || not_ok separator-slash "$(tr '\n' '|' <<<"$out")"
[ -d "$F_DIR/mail/src/Maildir/a/b" ] && ok layout-fs || not_ok layout-fs "no Maildir/a/b"
[ "$F_SEPARATOR" = / ] && ok separator-env || not_ok separator-env "$F_SEPARATOR"
check three-at-once probe plain "$S_IMAP_PORT"

expect_exit refuses-busy-ports 1 scripts/dovecot.sh start "$T_TMP/X" --port-base "$S_IMAP_PORT"
grep -q 'already in use' "$T_TMP/last.err" && ok refuses-busy-ports-message ||
	not_ok refuses-busy-ports-message "$(tail -n 1 "$T_TMP/last.err")"

# --- helpers from tests/faults ---------------------------------------------
if delay_proxy "$S_IMAP_PORT" --delay 20 --stats "$T_TMP/proxy.json"; then
	t0=$(date +%s%N)
	imap_session "$PROXY_PORT" <<<$'a LOGIN src pw-src-secret\nb NOOP\nc NOOP\nd LOGOUT' >/dev/null
	ms=$((($(date +%s%N) - t0) / 1000000))
	kill -TERM "$T_LAST_PID"; wait "$T_LAST_PID"
	rt=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["round_trips"])' "$T_TMP/proxy.json")
	[ "$rt" = 4 ] && [ $ms -ge 200 ] && ok "delay-proxy (4 round trips, ${ms} ms)" || not_ok delay-proxy "$rt round trips, $ms ms"
else
	not_ok delay-proxy "did not start"
fi
if fake_imap none --max-seconds 20; then
	out=$(imap_session "$FAKE_PORT" <<<$'a LOGIN x y\nb SELECT INBOX\nc UID FETCH 1:* (UID FLAGS BODY.PEEK[])\nd LOGOUT')
	[ "$(grep -c '^\* [0-9] FETCH' <<<"$out")" = 3 ] && ok fake-imap-serves || not_ok fake-imap-serves "$(tail -n 2 <<<"$out" | tr '\n' '|')"
else
	not_ok fake-imap-serves "did not start"
fi
if fake_imap bad-login --max-seconds 20; then
	imap_session "$FAKE_PORT" <<<'a LOGIN x y' | grep -q '^a NO \[AUTHENTICATIONFAILED\]' && ok fake-imap-bad-login ||
		not_ok fake-imap-bad-login "no AUTHENTICATIONFAILED"
else
	not_ok fake-imap-bad-login "did not start"
fi

# --- stop: ports free, idempotent ------------------------------------------
ports="$S_IMAP_PORT $S_IMAPS_PORT $S_POP3_PORT $S_POP3S_PORT $S_LMTP_PORT"
check stop dv_stop S
busy=
for p in $ports; do port_free "$p" || busy="$busy $p"; done
[ -z "$busy" ] && ok stop-frees-ports || not_ok stop-frees-ports "still listening:$busy"
pgrep -f -- "-c $S_DIR/dovecot.conf|mailferry-$S_IMAP_PORT/" >/dev/null && not_ok stop-no-processes "processes left" || ok stop-no-processes
check stop-idempotent dv_stop S
check stop-never-started scripts/dovecot.sh stop "$T_TMP/never"

#!/usr/bin/env python3
"""tests/faults/fake_imap.py - a scripted IMAP server for faults a real
server will not produce on demand. Python 3 standard library only.

    fake_imap.py [--port N] [--fault F] [--stage S] [--fault-count K]
                 [--max-seconds S] [--linger S] [--seed N] [--capabilities "..."]

Listens on 127.0.0.1:N (N = 0 or absent: a free port) and prints
"PORT n" as the first line of stdout. It speaks enough IMAP for a client to
CAPABILITY, LOGIN / AUTHENTICATE PLAIN (any user and password), ID, ENABLE,
NAMESPACE, LIST, STATUS, SELECT/EXAMINE and (UID) FETCH / UID SEARCH a
fixed INBOX of 3 messages (UIDVALIDITY 1234, UIDs 1-3, message 1 is 1000
bytes), NOOP, LOGOUT. APPEND and anything else is refused (NO/BAD).

Faults (--fault), at stage S (--stage: greeting, login, select or fetch):
  none                    behave (the default)
  disconnect-mid-literal  announce BODY[] {1000}, send 100 bytes, close   (fetch)
  literal-too-long        announce BODY[] {10}, send the whole message,
                          then ")": garbage after the literal             (fetch)
  garbage                 random binary: after LOGIN's OK at stage login,
                          instead of the reply at other stages            (login)
  truncated               close in the middle of a response line          (fetch)
  slow-loris              1 byte per second, forever: the greeting, or a
                          FETCH response whose literal never ends         (fetch)
  bad-login               NO [AUTHENTICATIONFAILED] to every login        (login)
  no-reply                read the command, never answer (connection kept)(fetch)
  preauth                 greet with "* PREAUTH": logged in without a word
                          (no STARTTLS possible after it)              (greeting)
  starttls-inject         answer STARTTLS with its OK and, in the same send,
                          the --inject bytes (default "* OK injected partial",
                          no CRLF), as a man in the middle would; then the
                          handshake (needs --tls-cert)
Resource bounds (issue 15 defect 9), at stage fetch:
  endless-exists          "* 3 EXISTS" forever instead of the FETCH reply
  huge-line               a FETCH response line that never ends (8 MiB of
                          'x' without CRLF, then silence)
  huge-literal            BODY[] {99999999999} after RFC822.SIZE 1000, then
                          bytes without end
--list-status: offer LIST-EXTENDED and LIST-STATUS (one LIST answers every
mailbox's STATUS; LIST replies are sent in one write: fast for --mailboxes
200000).
--fault-count K: only the first K connections misbehave (0 = all, the
default), so retries can be tested.

--mailboxes N: INBOX and Box1..Box(N-1), each holding the same 3 messages.
--messages N: N messages in each (N > 3: short ones "fake 4".. after the
three), UIDs 1..N.
Connection security and login (issue 15):
  --host A                listen on A instead of 127.0.0.1 (e.g. an address
                          of a private network namespace: not loopback)
  --tls-cert F --tls-key F   offer STARTTLS (with LOGINDISABLED and without
                          AUTH=PLAIN before it, as Dovecot does by default)
  --user U --password P   LOGIN / AUTHENTICATE must carry exactly these
                          (UTF-8), else NO [AUTHENTICATIONFAILED]
  --no-auth-plain         no AUTH=PLAIN (so LOGIN is used)
  --strict-literals       a synchronizing literal whose bytes arrive before
                          our "+" is answered "TAG BAD" and logged as
                          "literal sent before continuation"
  Every LOGIN is logged as "LOGIN via atom|quoted|literal+|literal ...".
--mailbox-8bit NAME: one more mailbox, NAME in raw UTF-8 (as a server with
UTF8=ACCEPT or a broken one lists it): LIST sends it as a literal, and
STATUS/SELECT/EXAMINE accept it as a literal (with --strict-literals, its
bytes before our "+" are refused as above).

--max-sessions N: a login while N sessions are logged in gets what Dovecot
sends over mail_max_userip_connections: "* BYE Maximum number of
connections from user+IP exceeded", then the connection closes.

CONDSTORE/QRESYNC (RFC 7162), for the incremental read's fallbacks:
  --qresync MODE          off (default): neither is offered. Otherwise both
                          are, with MODSEQ 10+UID per message, and MODE is
                          good     answers as it should
                          bad-vanished  EXAMINE (QRESYNC ...) adds
                                   VANISHED (EARLIER) 2,50:60: UIDs at or
                                   above UIDNEXT, and message 2 still exists
                          unparsable    VANISHED (EARLIER) 2:zz
                          refuse   EXAMINE (QRESYNC ...) and FETCH
                                   (CHANGEDSINCE ...) answered BAD
  --highestmodseq N       the mailbox's HIGHESTMODSEQ (default 13; lower it
                          to make it go backwards)
  --flags3 F              message 3's flags become F, its MODSEQ the
                          HIGHESTMODSEQ (a flag change since the last run)

Exits LINGER seconds (default 2) after the last client disconnected with
no new one, or after --max-seconds (default 60), whichever comes first:
always bounded. A transcript (C: / S:, literals elided) goes to stderr.
"""
import argparse
import base64
import os
import random
import re
import socket
import ssl
import sys
import threading
import time

UIDVALIDITY = 1234


def make_messages():
    def msg(subject, body, date):
        head = ("From: Alice <alice@example.org>\r\nTo: Bob <bob@example.org>\r\n"
                "Subject: %s\r\nDate: %s\r\nMessage-ID: <%s@fake.example.org>\r\n"
                "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
                % (subject, date, subject.replace(" ", "-")))
        return (head + body).encode()
    m1 = msg("fake one", "", "Mon, 01 Jan 2024 10:00:00 +0000")
    filler = b"".join(b"line %04d of padding text for a 1000 byte message\r\n" % i for i in range(40))
    m1 = (m1 + filler)[:998] + b"\r\n"  # exactly 1000 bytes
    m2 = msg("fake two", "Second message.\r\n", "Tue, 02 Jan 2024 11:00:00 +0100")
    m3 = msg("fake three", "Third message,\r\nwith two lines.\r\n", "Wed, 03 Jan 2024 12:00:00 -0500")
    return [
        {"uid": 1, "flags": r"\Seen", "date": "01-Jan-2024 10:00:00 +0000", "body": m1},
        {"uid": 2, "flags": r"\Seen \Flagged", "date": "02-Jan-2024 11:00:00 +0100", "body": m2},
        {"uid": 3, "flags": "", "date": "03-Jan-2024 12:00:00 -0500", "body": m3},
    ]


MESSAGES = make_messages()
DEFAULT_STAGE = {"disconnect-mid-literal": "fetch", "literal-too-long": "fetch", "garbage": "login",
                 "truncated": "fetch", "slow-loris": "fetch", "bad-login": "login",
                 "no-reply": "fetch", "none": "fetch", "preauth": "greeting",
                 "starttls-inject": "greeting",
                 "endless-exists": "fetch", "huge-line": "fetch", "huge-literal": "fetch"}
BOUNDS_FAULTS = ("endless-exists", "huge-line", "huge-literal")


class Closed(Exception):
    pass


class Server:
    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.active = 0
        self.logged_in = 0
        self.sessions = 0
        self.last_end = None
        self.rng = random.Random(args.seed)

    def log(self, cid, direction, data):
        text = data if isinstance(data, str) else data.decode("latin-1")
        text = text.rstrip("\r\n").replace("\r\n", "\\r\\n")
        if len(text) > 200:
            text = text[:200] + "..."
        sys.stderr.write("[%d] %s %s\n" % (cid, direction, text))
        sys.stderr.flush()


class Session:
    def __init__(self, server, sock, cid):
        self.srv, self.sock, self.cid = server, sock, cid
        self.args = server.args
        self.buf = b""
        self.selected = False
        self.counted = False
        k = self.args.fault_count
        self.fault = self.args.fault if (k == 0 or cid <= k) else "none"
        self.stage = self.args.stage or DEFAULT_STAGE[self.fault]
        self.deadline = server.deadline
        self.tls_up = False
        self.lit_forms = []  # per literal of the last command: "literal" or "literal+"

    # ---- I/O ----
    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.srv.log(self.cid, "S:", data if len(data) < 300 else data[:300])
        # the 0.5 s timeout is for polling reads; a client still parsing a
        # big answer (200,000 LIST replies, an ASan build under load) may
        # take longer to make room, and that is not a reason to hang up
        self.sock.settimeout(60)
        try:
            self.sock.sendall(data)
        finally:
            self.sock.settimeout(0.5)

    def recv_more(self):
        while True:
            if time.monotonic() > self.deadline:
                raise Closed()
            try:
                d = self.sock.recv(65536)
            except socket.timeout:
                continue
            if not d:
                raise Closed()
            self.buf += d
            return

    def read_line(self):
        while b"\r\n" not in self.buf:
            if len(self.buf) > 1 << 20:
                raise Closed()
            self.recv_more()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def read_command(self):
        """One command; literals are read (after "+" if synchronizing) and
        replaced by a placeholder in the returned text, their bytes kept."""
        parts, literals = [], []
        self.lit_forms, early = [], False
        while True:
            line = self.read_line()
            m = re.search(rb"\{(\d+)(\+?)\}$", line)
            if not m:
                parts.append(line)
                break
            parts.append(line[:m.start()] + b"\x00%d\x00" % len(literals))
            self.lit_forms.append("literal+" if m.group(2) else "literal")
            if not m.group(2) and self.args.strict_literals:
                # RFC 3501 §4.3: the client waits for "+" before the bytes.
                time.sleep(0.3)
                try:
                    self.sock.settimeout(0.01)
                    d = self.sock.recv(65536)
                    if d:
                        self.buf += d
                except (socket.timeout, ssl.SSLWantReadError):
                    pass
                finally:
                    self.sock.settimeout(0.5)
                if self.buf:
                    early = True
            if not m.group(2):
                self.send("+ go ahead\r\n")
            n = int(m.group(1))
            while len(self.buf) < n:
                self.recv_more()
            literals.append(self.buf[:n])
            self.buf = self.buf[n:]
        text = b"".join(parts)
        shown = re.sub(rb"\x00(\d+)\x00", b"{literal}", text)
        if re.match(rb"^\S+ (LOGIN|AUTHENTICATE)", shown, re.I):
            shown = shown.split(b" ")[0] + b" " + shown.split(b" ")[1] + b" ***"
        self.srv.log(self.cid, "C:", shown)
        if early:
            self.srv.log(self.cid, "!!", "literal sent before continuation")
            tag = text.split(b" ", 1)[0].decode("latin-1")
            self.send("%s BAD literal sent before continuation\r\n" % tag)
            return b"", []
        return text, literals

    def login_args(self, rest, lits):
        """LOGIN's two astrings -> ([bytes, bytes], [form, form]) or None."""
        vals, forms, i = [], [], 0
        while i < len(rest) and len(vals) < 2:
            if rest[i:i + 1] == b" ":
                i += 1
                continue
            m = re.match(rb"\x00(\d+)\x00", rest[i:])
            if m:
                k = int(m.group(1))
                vals.append(lits[k])
                forms.append(self.lit_forms[k])
                i += m.end()
            elif rest[i:i + 1] == b'"':
                j, v = i + 1, b""
                while j < len(rest) and rest[j:j + 1] != b'"':
                    if rest[j:j + 1] == b"\\":
                        j += 1
                    v += rest[j:j + 1]
                    j += 1
                vals.append(v)
                forms.append("quoted")
                i = j + 1
            else:
                m = re.match(rb"[^ ]+", rest[i:])
                vals.append(m.group(0))
                forms.append("atom")
                i += m.end()
        return (vals, forms) if len(vals) == 2 else None

    def credentials_ok(self, cmd, rest, lits):
        """Checks --user/--password; logs how LOGIN's arguments came."""
        if cmd == "LOGIN":
            got = self.login_args(rest, lits)
            if got is None:
                return False
            (user, pw), forms = got
            self.srv.log(self.cid, "..", "LOGIN via %s %s" % (forms[0], forms[1]))
        else:
            try:
                raw = base64.b64decode(self.sasl_resp, validate=True)
                _, user, pw = raw.split(b"\x00", 2)
            except Exception:
                return False
        want_u = self.args.user.encode() if self.args.user is not None else user
        want_p = self.args.password.encode() if self.args.password is not None else pw
        return user == want_u and pw == want_p

    def starttls(self, tag):
        if not self.args.tls_cert or self.tls_up:
            self.send("%s BAD STARTTLS is not offered\r\n" % tag)
            return
        ok = b"%s OK Begin TLS negotiation now\r\n" % tag.encode()
        if self.fault_here("greeting") and self.fault == "starttls-inject":
            inj = self.args.inject.encode().decode("unicode_escape").encode("latin-1")
            self.srv.log(self.cid, "S:", ok + inj + b" <injected, one send>")
            self.sock.sendall(ok + inj)
        else:
            self.send(ok)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.args.tls_cert, self.args.tls_key)
        self.sock.settimeout(10)
        self.sock = ctx.wrap_socket(self.sock, server_side=True)
        self.sock.settimeout(0.5)
        self.buf = b""
        self.tls_up = True
        self.srv.log(self.cid, "--", "TLS up")

    # ---- faults ----
    def hang(self):
        """Keep the connection, say nothing, until the peer leaves or time is up."""
        while True:
            self.buf = b""
            self.recv_more()

    def dribble(self, data):
        """One byte per second, forever (data, then 'x' bytes)."""
        i = 0
        while time.monotonic() < self.deadline:
            b = data[i:i + 1] if i < len(data) else b"x"
            self.sock.sendall(b)
            i += 1
            time.sleep(1)
        raise Closed()

    def garbage(self):
        junk = bytes(self.srv.rng.getrandbits(8) for _ in range(65536))
        self.srv.log(self.cid, "S:", "<64 KiB of random bytes>")
        self.sock.sendall(junk)

    def fault_here(self, stage):
        return self.fault != "none" and self.stage == stage

    def generic_fault(self, stage):
        """Faults that replace whatever the reply at this stage would be."""
        if not self.fault_here(stage):
            return False
        if self.fault == "no-reply":
            self.srv.log(self.cid, "S:", "<no reply, ever>")
            self.hang()
        if self.fault == "slow-loris":
            self.srv.log(self.cid, "S:", "<1 byte per second, forever>")
            self.dribble(b"* OK slow" if stage == "greeting" else b"* 1 FETCH (UID 1 BODY[] {100000}\r\n")
        if self.fault == "garbage" and stage != "login":
            self.garbage()
            self.hang()
        if self.fault == "truncated":
            line = b"* OK [CAPABILITY IMAP4rev1 LITERAL+ SASL-IR ID ENABLE] fake IMAP ready\r\n"
            self.send(line[:len(line) // 2])
            raise Closed()
        return False

    def bounds_fault(self):
        """Resource-bound faults: each goes on until the client gives up."""
        self.srv.log(self.cid, "S:", "<%s>" % self.fault)
        if self.fault == "endless-exists":
            chunk = b"* 3 EXISTS\r\n" * 4096
            while time.monotonic() < self.deadline:
                self.sock.sendall(chunk)
        elif self.fault == "huge-line":
            self.sock.sendall(b"* 1 FETCH (UID 1 X ")
            for _ in range(128):
                self.sock.sendall(b"x" * 65536)
            self.hang()
        elif self.fault == "huge-literal":
            m = MESSAGES[0]
            self.sock.sendall(b'* 1 FETCH (UID 1 FLAGS (%s) INTERNALDATE "%s" RFC822.SIZE %d BODY[] {99999999999}\r\n'
                              % (m["flags"].encode(), m["date"].encode(), len(m["body"])))
            chunk = b"x" * 65536
            while time.monotonic() < self.deadline:
                self.sock.sendall(chunk)
        raise Closed()

    # ---- protocol ----
    def names(self):
        return (["INBOX"] + ["Box%d" % i for i in range(1, self.args.mailboxes)]
                + ([self.args.mailbox_8bit] if self.args.mailbox_8bit else []))

    @staticmethod
    def list_name(name):
        """A name as LIST/STATUS send it: atom, or a literal if 8-bit."""
        b = name.encode()
        return name if b.isascii() else "{%d}\r\n%s" % (len(b), name)

    @staticmethod
    def box_arg(rest, lits):
        """The mailbox argument at the start of rest (atom, quoted or a
        literal placeholder) as text."""
        first = rest.split(b" ", 1)[0]
        m = re.match(rb"^\x00(\d+)\x00", first)
        if m:
            return lits[int(m.group(1))].decode("utf-8", "replace")
        return first.strip(b'"').decode("latin-1")

    def caps(self, authed):
        c = self.args.capabilities
        if self.args.qresync != "off":
            c += " CONDSTORE QRESYNC"
        if self.args.list_status:
            c += " LIST-EXTENDED LIST-STATUS"
        if self.args.tls_cert and not self.tls_up:
            return c + " STARTTLS LOGINDISABLED"
        if not authed and not self.args.no_auth_plain:
            c += " AUTH=PLAIN"
        return c

    def run(self):
        if self.generic_fault("greeting"):
            return
        authed = False
        if self.fault_here("greeting") and self.fault == "preauth":
            authed = True
            self.send("* PREAUTH [CAPABILITY %s] fake IMAP: logged in as you\r\n" % self.caps(True))
        else:
            self.send("* OK [CAPABILITY %s] fake IMAP ready\r\n" % self.caps(False))
        while True:
            text, lits = self.read_command()
            if not text:
                continue  # refused in read_command
            words = text.split(b" ", 2)
            tag = words[0].decode("latin-1")
            if len(words) < 2:
                self.send("%s BAD missing command\r\n" % tag)
                continue
            cmd = words[1].upper().decode("latin-1")
            rest = words[2] if len(words) > 2 else b""
            if cmd == "UID":
                sub = rest.split(b" ", 1)
                cmd = "UID " + sub[0].upper().decode("latin-1")
                rest = sub[1] if len(sub) > 1 else b""
            if cmd == "CAPABILITY":
                self.send("* CAPABILITY %s\r\n%s OK done\r\n" % (self.caps(authed), tag))
            elif cmd == "NOOP" or cmd == "CHECK":
                self.send("%s OK done\r\n" % tag)
            elif cmd == "LOGOUT":
                self.send("* BYE logging out\r\n%s OK bye\r\n" % tag)
                raise Closed()
            elif cmd == "STARTTLS":
                self.starttls(tag)
            elif cmd in ("LOGIN", "AUTHENTICATE"):
                if self.args.tls_cert and not self.tls_up:
                    self.send("%s NO [PRIVACYREQUIRED] STARTTLS first\r\n" % tag)
                    continue
                self.sasl_resp = rest.split(b" ")[1] if cmd == "AUTHENTICATE" and len(rest.split(b" ")) > 1 else b""
                if cmd == "AUTHENTICATE" and len(rest.split(b" ")) < 2:
                    self.send("+ \r\n")  # no SASL-IR: the response comes on its own line
                    self.srv.log(self.cid, "C:", "<SASL response>")
                    resp = self.read_line()
                    try:
                        base64.b64decode(resp, validate=True)
                    except Exception:
                        self.send("%s BAD bad base64\r\n" % tag)
                        continue
                    self.sasl_resp = resp
                if not self.credentials_ok(cmd, rest, lits):
                    self.send("%s NO [AUTHENTICATIONFAILED] Authentication failed.\r\n" % tag)
                    continue
                if self.fault_here("login") and self.fault == "bad-login":
                    self.send("%s NO [AUTHENTICATIONFAILED] Authentication failed.\r\n" % tag)
                    continue
                if self.generic_fault("login"):
                    continue
                with self.srv.lock:
                    full = self.args.max_sessions and self.srv.logged_in >= self.args.max_sessions
                    if not full and not authed:
                        self.srv.logged_in += 1
                        self.counted = True
                if full:
                    self.send("* BYE Maximum number of connections from user+IP exceeded "
                              "(mail_max_userip_connections=%d)\r\n" % self.args.max_sessions)
                    raise Closed()
                authed = True
                self.send("%s OK [CAPABILITY %s] Logged in\r\n" % (tag, self.caps(True)))
                if self.fault_here("login") and self.fault == "garbage":
                    self.garbage()
                    self.hang()
            elif not authed:
                self.send("%s BAD log in first\r\n" % tag)
            elif cmd == "ID":
                self.send('* ID ("name" "fake_imap")\r\n%s OK done\r\n' % tag)
            elif cmd == "ENABLE":
                on = [x for x in rest.decode("latin-1").upper().split()
                      if x in ("CONDSTORE", "QRESYNC") and self.args.qresync != "off"]
                self.send("* ENABLED%s\r\n%s OK done\r\n" % ("".join(" " + x for x in on), tag))
            elif cmd == "NAMESPACE":
                self.send('* NAMESPACE (("" ".")) NIL NIL\r\n%s OK done\r\n' % tag)
            elif cmd in ("LIST", "LSUB"):
                pat = rest.split(b" ")[-1].strip(b'"')
                if b"RETURN" in rest.upper():
                    pat = rest.split(b" ")[1].strip(b'"')
                if pat != b"":
                    st = self.args.list_status and b"STATUS" in rest.upper()
                    out = []
                    for name in self.names():
                        out.append('* %s (\\HasNoChildren) "." %s\r\n' % (cmd, self.list_name(name)))
                        if st:
                            out.append("* STATUS %s (UIDVALIDITY %d UIDNEXT %d MESSAGES %d)\r\n"
                                       % (self.list_name(name), UIDVALIDITY, MESSAGES[-1]["uid"] + 1, len(MESSAGES)))
                    self.srv.log(self.cid, "S:", "<%d LIST replies>" % len(self.names()))
                    self.sock.settimeout(60)  # sendall's timeout is for all of it
                    self.sock.sendall("".join(out).encode())
                    self.sock.settimeout(0.5)
                else:
                    self.send('* %s (\\Noselect) "." ""\r\n' % cmd)
                self.send("%s OK done\r\n" % tag)
            elif cmd == "STATUS":
                vals = {"MESSAGES": len(MESSAGES), "UIDNEXT": MESSAGES[-1]["uid"] + 1, "UIDVALIDITY": UIDVALIDITY,
                        "UNSEEN": 1, "RECENT": 0, "SIZE": sum(len(m["body"]) for m in MESSAGES)}
                if self.args.qresync != "off":
                    vals["HIGHESTMODSEQ"] = self.args.highestmodseq
                asked = re.findall(rb"[A-Z]+", rest.split(b"(", 1)[-1].upper())
                items = " ".join("%s %d" % (a.decode(), vals[a.decode()]) for a in asked if a.decode() in vals)
                box = self.box_arg(rest, lits)
                self.send("* STATUS %s (%s)\r\n%s OK done\r\n" % (self.list_name(box), items, tag))
            elif cmd in ("SELECT", "EXAMINE"):
                box = self.box_arg(rest, lits)
                if box.upper() != "INBOX" and box not in self.names():
                    self.send("%s NO [NONEXISTENT] Mailbox doesn't exist\r\n" % tag)
                    continue
                if self.generic_fault("select"):
                    continue
                qr = re.search(rb"\(QRESYNC \((\d+) (\d+)", rest, re.I)
                if qr and self.args.qresync == "refuse":
                    self.send("%s BAD QRESYNC parameter not understood\r\n" % tag)
                    continue
                self.selected = True
                self.send("* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n"
                          "* OK [PERMANENTFLAGS ()] Read-only\r\n"
                          "* %d EXISTS\r\n* 0 RECENT\r\n"
                          "* OK [UIDVALIDITY %d] UIDs valid\r\n* OK [UIDNEXT %d] Predicted next UID\r\n"
                          % (len(MESSAGES), UIDVALIDITY, MESSAGES[-1]["uid"] + 1))
                if self.args.qresync != "off":
                    self.send("* OK [HIGHESTMODSEQ %d] Highest\r\n" % self.args.highestmodseq)
                if qr and self.args.qresync == "bad-vanished":
                    self.send("* VANISHED (EARLIER) 2,50:60\r\n")
                elif qr and self.args.qresync == "unparsable":
                    self.send("* VANISHED (EARLIER) 2:zz\r\n")
                elif qr:
                    since = int(qr.group(2))
                    for seq, m in enumerate(MESSAGES, 1):
                        if self.modseq(m) > since:
                            self.send("* %d FETCH (UID %d FLAGS (%s) MODSEQ (%d))\r\n"
                                      % (seq, m["uid"], m["flags"], self.modseq(m)))
                self.send("%s OK [READ-ONLY] done\r\n" % tag)
            elif cmd in ("CLOSE", "UNSELECT"):
                self.selected = False
                self.send("%s OK done\r\n" % tag)
            elif cmd in ("FETCH", "UID FETCH"):
                if not self.selected:
                    self.send("%s BAD no mailbox selected\r\n" % tag)
                    continue
                self.fetch(tag, rest, cmd == "UID FETCH")
            elif cmd in ("SEARCH", "UID SEARCH"):
                if not self.selected:
                    self.send("%s BAD no mailbox selected\r\n" % tag)
                    continue
                m = re.search(rb"UID ([0-9:*,]+)", rest, re.I)
                uids = [x["uid"] for x in MESSAGES]
                if m:
                    wanted = parse_set(m.group(1), max(uids))
                    uids = [u for u in uids if u in wanted]
                self.send("* SEARCH%s\r\n%s OK done\r\n" % ("".join(" %d" % u for u in uids), tag))
            elif cmd == "APPEND":
                self.send("%s NO [CANNOT] this fake server is read-only\r\n" % tag)

            else:
                self.send("%s BAD unknown command\r\n" % tag)

    def modseq(self, m):
        if m["uid"] == 3 and self.args.flags3 is not None:
            return self.args.highestmodseq
        return 10 + m["uid"]

    def fetch(self, tag, rest, by_uid):
        sset, _, items = rest.partition(b" ")
        items = items.upper()
        cs = re.search(rb"CHANGEDSINCE (\d+)", items)
        if cs and self.args.qresync in ("off", "refuse"):
            self.send("%s BAD CHANGEDSINCE not understood\r\n" % tag)
            return
        since = int(cs.group(1)) if cs else -1
        n = len(MESSAGES)
        wanted = parse_set(sset, MESSAGES[-1]["uid"] if by_uid else n)
        if self.fault_here("fetch") and self.fault in ("no-reply", "slow-loris", "garbage"):
            self.generic_fault("fetch")
        if self.fault_here("fetch") and self.fault in BOUNDS_FAULTS and b"BODY" in items:
            self.bounds_fault()
        for seq, m in enumerate(MESSAGES, 1):
            if (m["uid"] if by_uid else seq) not in wanted or self.modseq(m) <= since:
                continue
            attrs = []
            if by_uid or b"UID" in items:
                attrs.append(b"UID %d" % m["uid"])
            if b"FLAGS" in items:
                attrs.append(b"FLAGS (%s)" % m["flags"].encode())
            if b"INTERNALDATE" in items:
                attrs.append(b'INTERNALDATE "%s"' % m["date"].encode())
            if b"RFC822.SIZE" in items:
                attrs.append(b"RFC822.SIZE %d" % len(m["body"]))
            if b"MODSEQ" in items or (self.args.qresync != "off" and b"FLAGS" in items):
                attrs.append(b"MODSEQ (%d)" % self.modseq(m))
            head = b"* %d FETCH (" % seq + b" ".join(attrs)
            body = b"BODY[]" in items or b"BODY.PEEK[]" in items or b"RFC822" in items.replace(b"RFC822.SIZE", b"")
            if self.fault_here("fetch"):
                if self.fault == "truncated":
                    line = head + b")\r\n"
                    self.send(line[:max(5, len(line) // 2)])
                    raise Closed()
                if body and self.fault == "disconnect-mid-literal":
                    self.send(head + b" BODY[] {1000}\r\n" + m["body"][:100])
                    raise Closed()
                if body and self.fault == "literal-too-long":
                    self.send(head + b" BODY[] {10}\r\n" + m["body"] + b")\r\n")
                    continue
            if body:
                sp = b" " if attrs else b""
                self.srv.log(self.cid, "S:", head + sp + b"BODY[] {%d} <%d bytes>)" % (len(m["body"]), len(m["body"])))
                self.sock.sendall(head + sp + b"BODY[] {%d}\r\n" % len(m["body"]) + m["body"] + b")\r\n")
            else:
                self.send(head + b")\r\n")
        self.send("%s OK done\r\n" % tag)


def parse_set(s, star):
    out = set()
    for part in s.split(b","):
        a, _, b = part.partition(b":")
        try:
            lo = star if a == b"*" else int(a)
            hi = lo if not b else (star if b == b"*" else int(b))
        except ValueError:
            continue
        lo, hi = min(lo, hi), max(lo, hi)
        out.update(range(lo, min(hi, star + 100) + 1))
    return out


def main():
    ap = argparse.ArgumentParser(description="scripted fake IMAP server for fault tests")
    ap.add_argument("port", nargs="?", type=int, default=None)
    ap.add_argument("--port", dest="port_opt", type=int, default=0)
    ap.add_argument("--fault", default="none", choices=sorted(DEFAULT_STAGE))
    ap.add_argument("--stage", choices=["greeting", "login", "select", "fetch"], default=None)
    ap.add_argument("--fault-count", type=int, default=0)
    ap.add_argument("--max-seconds", type=float, default=60)
    ap.add_argument("--linger", type=float, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--capabilities", default="IMAP4rev1 LITERAL+ SASL-IR ID ENABLE NAMESPACE UIDPLUS")
    ap.add_argument("--qresync", default="off", choices=["off", "good", "bad-vanished", "unparsable", "refuse"])
    ap.add_argument("--highestmodseq", type=int, default=13)
    ap.add_argument("--flags3", default=None)
    ap.add_argument("--mailboxes", type=int, default=1)
    ap.add_argument("--messages", type=int, default=3)
    ap.add_argument("--max-sessions", type=int, default=0)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--tls-cert", default=None)
    ap.add_argument("--tls-key", default=None)
    ap.add_argument("--inject", default="* OK injected partial")
    ap.add_argument("--user", default=None)
    ap.add_argument("--password", default=None)
    ap.add_argument("--no-auth-plain", action="store_true")
    ap.add_argument("--strict-literals", action="store_true")
    ap.add_argument("--mailbox-8bit", default=None)
    ap.add_argument("--list-status", action="store_true")
    args = ap.parse_args()
    if args.flags3 is not None:
        MESSAGES[2]["flags"] = args.flags3
    for uid in range(4, args.messages + 1):
        body = MESSAGES[1]["body"].replace(b"fake two", b"fake %d" % uid)
        MESSAGES.append({"uid": uid, "flags": "", "date": MESSAGES[1]["date"], "body": body})
    port = args.port if args.port is not None else args.port_opt

    srv = Server(args)
    start = time.monotonic()
    srv.deadline = start + args.max_seconds
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((args.host, port))
    ls.listen(16)
    ls.settimeout(0.2)
    print("PORT %d" % ls.getsockname()[1], flush=True)

    def serve(sock, cid):
        sock.settimeout(0.5)
        sess = None
        try:
            sess = Session(srv, sock, cid)
            sess.run()
        except (Closed, OSError):
            pass
        finally:
            if sess is not None and sess.counted:
                with srv.lock:
                    srv.logged_in -= 1
            try:
                sock.close()
            except OSError:
                pass
            srv.log(cid, "--", "closed")
            with srv.lock:
                srv.active -= 1
                srv.last_end = time.monotonic()

    while True:
        now = time.monotonic()
        if now > srv.deadline:
            sys.stderr.write("fake_imap: --max-seconds reached\n")
            break
        with srv.lock:
            if srv.active == 0 and srv.last_end is not None and now - srv.last_end > args.linger:
                break
        try:
            sock, _ = ls.accept()
        except socket.timeout:
            continue
        with srv.lock:
            srv.active += 1
            srv.sessions += 1
            cid = srv.sessions
        srv.log(cid, "--", "connected")
        threading.Thread(target=serve, args=(sock, cid), daemon=True).start()
    ls.close()
    sys.stdout.flush()
    os._exit(0)  # daemon threads (a hanging session) go with us


if __name__ == "__main__":
    main()

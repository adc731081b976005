#!/usr/bin/env python3
"""tests/faults/fake_smtp.py - a scripted SMTP/LMTP server for faults a real
server will not produce on demand. Python 3 standard library only.

    fake_smtp.py [--port N] [--host A] [--lmtp] [--fault F] [--fault-on K]
                 [--capabilities "PIPELINING CHUNKING ..."] [--save DIR]
                 [--tls-cert F --tls-key F] [--user U --password P]
                 [--auth-mechs "PLAIN LOGIN"] [--implicit-tls]
                 [--max-seconds S] [--linger S]

Listens on 127.0.0.1:N (N = 0 or absent: a free port; --host A: on A, e.g.
an address of a private network namespace, not loopback) and prints
"PORT n" as the first line of stdout. It speaks enough SMTP (or LMTP with
--lmtp: LHLO, one reply per accepted recipient after the data; TLS from
the first byte with --implicit-tls and --tls-cert/--tls-key) for a
client: EHLO/LHLO/HELO, STARTTLS (with --tls-cert/--tls-key), AUTH PLAIN
and LOGIN (any credentials, or exactly --user/--password), MAIL, RCPT (an
address starting with "unknown" gets 550 5.1.1), DATA (unstuffed) and
BDAT (exact bytes), RSET, NOOP, QUIT. --capabilities replaces the EHLO
keywords (AUTH offers --auth-mechs), "_" standing for a space ("SIZE_1000"; default "PIPELINING CHUNKING 8BITMIME SMTPUTF8 ENHANCEDSTATUSCODES
SIZE 67108864", plus STARTTLS and AUTH PLAIN LOGIN when configured).
With --save DIR every message taken is written to DIR/msg-N (N from 1, in
order), exactly the bytes the client meant (DATA unstuffed, its final
CRLF kept; BDAT chunks joined), its envelope to DIR/msg-N.env.

Faults (--fault), for the K-th transaction only with --fault-on K (the
default 0: every transaction); --also F@K (repeatable) adds fault F on
transaction K (0: every one), so that two transactions in flight can each
get their own:
  none              behave (the default)
  temp-data         451 4.3.0 to DATA (instead of 354) or to every BDAT
                    chunk (its bytes read first, RFC 3030 §2)
  perm-rcpt         550 5.1.1 to every RCPT TO
  temp-end          the data taken, then 452 4.2.2 as the final reply
  perm-end          the data taken, then 554 5.6.0 as the final reply
  evil-text         the data taken, then a 550 whose text holds terminal
                    escapes, a C1 CSI and bidi overrides
  garbage           binary garbage instead of the reply to MAIL FROM
  421               421 4.3.2 to MAIL FROM, then close
  disconnect-data   close halfway through the message's bytes
  unsolicited       an extra "250 surprise" with the greeting, one send
  flood             "250-x" lines without end as the reply to EHLO
  long-line         a reply line of 1 MiB without CRLF to EHLO
  starttls-inject   "220 go ahead" to STARTTLS plus "250 injected" in the
                    same send, before the handshake (needs --tls-cert)
  close-on-quit     no 221 to QUIT, just close
--overlap-wait S: before the final reply to a message (or a 4xx to its
last BDAT chunk), wait up to S seconds for the client's next command to
arrive first, and log "overlap: ..." when it did: a client that pipelines
the next transaction behind the previous one's end (RFC 2920 §3.1) shows
it; one that waits for each final reply does not (and costs S a message).
Exits LINGER seconds (default 2) after the last client disconnected with
no new one, or after --max-seconds (default 60): always bounded. A
transcript (C: / S:, message bytes and AUTH elided) goes to stderr.
"""
import argparse
import base64
import os
import socket
import ssl
import sys
import threading
import time


class Conn:
    def __init__(self, sock):
        self.s = sock
        self.buf = b""

    def fill(self):
        d = self.s.recv(65536)
        if not d:
            raise EOFError("closed by client")
        self.buf += d

    def line(self, cap=65536):
        while b"\n" not in self.buf:
            if len(self.buf) > cap:
                raise EOFError("command line too long")
            self.fill()
        line, self.buf = self.buf.split(b"\n", 1)
        return line.rstrip(b"\r")

    def exact(self, n):
        while len(self.buf) < n:
            self.fill()
        d, self.buf = self.buf[:n], self.buf[n:]
        return d

    def send(self, b):
        self.s.sendall(b)


def log(tag, msg):
    sys.stderr.write("[%s] %s\n" % (tag, msg))
    sys.stderr.flush()


class Session:
    def __init__(self, args, sock, tag, counter):
        self.a = args
        self.c = Conn(sock)
        self.tag = tag
        self.counter = counter  # shared transaction counter (list of one int)
        self.reset()

    def reset(self):
        self.mail = None
        self.rcpts = []
        self.ok_rcpts = []
        self.chunks = []
        self.txn = 0

    def say(self, line):
        log(self.tag, "S: " + line)
        self.c.send(line.encode() + b"\r\n")

    def faulty(self, what):
        for f in self.a.also:
            name, _, k = f.partition("@")
            if name == what and (not k or int(k) == 0 or self.txn == int(k)):
                return True
        if self.a.fault != what:
            return False
        return self.a.fault_on == 0 or self.txn == self.a.fault_on

    def hold_for_next(self):
        """--overlap-wait: the client's next command before this reply?"""
        if not self.a.overlap_wait:
            return
        deadline = time.time() + self.a.overlap_wait
        self.c.s.settimeout(0.02)
        try:
            while not self.c.buf and time.time() < deadline:
                try:
                    self.c.fill()
                except (socket.timeout, TimeoutError):
                    pass
        finally:
            self.c.s.settimeout(self.a.max_seconds)
        if self.c.buf:
            first = self.c.buf.split(b"\r\n", 1)[0].decode("utf-8", "replace")
            log(self.tag, "overlap: transaction %d's final reply held; the next command came first: %s"
                % (self.txn, first))
        else:
            log(self.tag, "overlap: none for transaction %d" % self.txn)

    def caps(self):
        caps = (self.a.capabilities.split() if self.a.capabilities is not None else
                ["PIPELINING", "CHUNKING", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES", "SIZE 67108864"])
        if self.a.capabilities is not None:
            caps = [c.replace("_", " ") for c in caps]
        if self.a.tls_cert and not isinstance(self.c.s, ssl.SSLSocket):
            caps.append("STARTTLS")
        caps.append("AUTH " + self.a.auth_mechs)
        return caps

    def save(self, data):
        if not self.a.save:
            return
        n = self.txn
        with open(os.path.join(self.a.save, "msg-%d" % n), "wb") as f:
            f.write(data)
        with open(os.path.join(self.a.save, "msg-%d.env" % n), "w") as f:
            f.write("from %s\n" % self.mail)
            for r in self.ok_rcpts:
                f.write("rcpt %s\n" % r)

    def final(self, data):
        """The reply (LMTP: replies) after the whole message."""
        self.hold_for_next()
        if self.faulty("temp-end"):
            replies = ["452 4.2.2 Mailbox full, try again later"]
        elif self.faulty("perm-end"):
            replies = ["554 5.6.0 Message content rejected"]
        elif self.faulty("evil-text"):
            replies = ["550 5.7.1 \x1b[2J\x1b[31mred\x1b]0;title\x07 \u202eevil\u202c \x9b6n done"]
        else:
            self.save(data)
            replies = ["250 2.0.0 Ok: %d bytes queued as FAKE%d" % (len(data), self.txn)]
        if self.a.lmtp and self.ok_rcpts:
            for r in self.ok_rcpts:
                self.say(replies[0].replace("Ok:", "<%s> Ok:" % r, 1))
        else:
            self.say(replies[0])

    def data(self):
        if self.faulty("temp-data"):
            self.say("451 4.3.0 Queue temporarily unavailable")
            return
        if not self.ok_rcpts:
            self.say("554 5.5.1 Error: no valid recipients")
            return
        self.say("354 End data with <CR><LF>.<CR><LF>")
        out = []
        total = 0
        while True:
            if self.faulty("disconnect-data") and total > 100:
                log(self.tag, "fault: closing mid-DATA")
                raise EOFError("fault")
            while b"\n" not in self.c.buf:
                self.c.fill()
            line, self.c.buf = self.c.buf.split(b"\n", 1)
            line += b"\n"
            total += len(line)
            if line in (b".\r\n", b".\n"):
                break
            if line.startswith(b"."):
                line = line[1:]
            out.append(line)
        log(self.tag, "C: <%d bytes of DATA>" % total)
        self.final(b"".join(out))

    def bdat(self, arg):
        parts = arg.split()
        if not parts or not parts[0].isdigit() or len(parts) > 2 or (len(parts) == 2 and parts[1].upper() != "LAST"):
            self.say("501 5.5.4 Syntax: BDAT count [LAST]")
            return
        n = int(parts[0])
        last = len(parts) == 2
        if self.faulty("disconnect-data"):
            self.c.exact(min(n, 100) if n else 0)
            log(self.tag, "fault: closing mid-BDAT")
            raise EOFError("fault")
        chunk = self.c.exact(n)
        log(self.tag, "C: <BDAT %d%s: %d bytes>" % (n, " LAST" if last else "", len(chunk)))
        if self.mail is None or not self.ok_rcpts:
            self.say("503 5.5.1 Error: need RCPT command")
            return
        if self.faulty("temp-data"):
            if last:
                self.hold_for_next()
            self.say("451 4.3.0 Queue temporarily unavailable")
            return
        self.chunks.append(chunk)
        if not last:
            self.say("250 2.0.0 Ok: %d octets received" % n)
            return
        data = b"".join(self.chunks)
        self.chunks = []
        self.final(data)

    def auth(self, arg):
        parts = arg.split()
        mech = parts[0].upper() if parts else ""
        if mech == "PLAIN":
            resp = parts[1] if len(parts) > 1 else None
            if resp is None:
                self.say("334 ")
                resp = self.c.line().decode("ascii", "replace")
            try:
                _, user, pw = base64.b64decode(resp).split(b"\0")
            except Exception:
                self.say("501 5.5.2 bad response")
                return
        elif mech == "LOGIN":
            self.say("334 VXNlcm5hbWU6")
            user = base64.b64decode(self.c.line())
            self.say("334 UGFzc3dvcmQ6")
            pw = base64.b64decode(self.c.line())
        else:
            self.say("504 5.5.4 Unrecognized authentication type")
            return
        log(self.tag, "C: <AUTH %s as %r>" % (mech, user.decode("utf-8", "replace")))
        if self.a.user is not None and (user.decode("utf-8", "replace") != self.a.user or
                                        pw.decode("utf-8", "replace") != self.a.password):
            self.say("535 5.7.8 Error: authentication failed")
            return
        self.say("235 2.7.0 Authentication successful")

    def run(self):
        if self.a.implicit_tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(self.a.tls_cert, self.a.tls_key)
            self.c.s = ctx.wrap_socket(self.c.s, server_side=True)
        if self.a.fault == "unsolicited":
            # in the greeting's send, so it is there before any EHLO
            log(self.tag, "S: 220 + 250 surprise")
            self.c.send(b"220 fake.example.org ESMTP fake_smtp\r\n250 surprise\r\n")
        else:
            self.say("220 fake.example.org ESMTP fake_smtp")
        while True:
            raw = self.c.line()
            text = raw.decode("utf-8", "replace")
            verb, _, arg = text.partition(" ")
            verb = verb.upper()
            log(self.tag, "C: " + (text if verb != "AUTH" else "AUTH " + arg.split(" ")[0]))
            if verb in ("EHLO", "LHLO"):
                if self.a.fault == "flood":
                    log(self.tag, "fault: flooding")
                    while True:
                        self.c.send(b"250-x\r\n" * 1000)
                if self.a.fault == "long-line":
                    self.c.send(b"250 " + b"x" * (1 << 20))
                    time.sleep(3)
                    raise EOFError("fault")
                lines = ["fake.example.org"] + self.caps()
                for i, l in enumerate(lines):
                    self.say("250%s%s" % (" " if i == len(lines) - 1 else "-", l))
            elif verb == "HELO":
                self.say("250 fake.example.org")
            elif verb == "STARTTLS" and self.a.tls_cert:
                if self.a.fault == "starttls-inject":
                    self.c.send(b"220 2.0.0 go ahead\r\n250 injected\r\n")
                else:
                    self.say("220 2.0.0 Ready to start TLS")
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                ctx.load_cert_chain(self.a.tls_cert, self.a.tls_key)
                try:
                    self.c.s = ctx.wrap_socket(self.c.s, server_side=True)
                except (ssl.SSLError, OSError) as e:
                    log(self.tag, "TLS handshake failed: %s" % e)
                    return
                self.c.buf = b""
            elif verb == "AUTH":
                self.auth(arg)
            elif verb == "MAIL":
                self.counter[0] += 1
                self.reset()
                self.txn = self.counter[0]
                if self.faulty("421"):
                    self.say("421 4.3.2 Service shutting down, closing transmission channel")
                    return
                if self.faulty("garbage"):
                    log(self.tag, "fault: garbage")
                    self.c.send(b"\x00\xff\x1b[2J garbage \x80\x81\r\n")
                    continue
                self.mail = arg[5:].strip() if arg.upper().startswith("FROM:") else arg
                self.say("250 2.1.0 Ok")
            elif verb == "RCPT":
                addr = arg[3:].strip() if arg.upper().startswith("TO:") else arg
                addr = addr.split(" ")[0].strip("<>")
                if self.mail is None:
                    self.say("503 5.5.1 Error: need MAIL command")
                elif addr.startswith("unknown") or self.faulty("perm-rcpt"):
                    self.say("550 5.1.1 <%s>: Recipient address rejected: User unknown" % addr)
                else:
                    self.ok_rcpts.append(addr)
                    self.say("250 2.1.5 Ok")
            elif verb == "DATA":
                self.data()
            elif verb == "BDAT":
                self.bdat(arg)
            elif verb == "RSET":
                self.mail = None
                self.ok_rcpts = []
                self.chunks = []
                self.say("250 2.0.0 Ok")
            elif verb == "NOOP":
                self.say("250 2.0.0 Ok")
            elif verb == "QUIT":
                if self.a.fault != "close-on-quit":
                    self.say("221 2.0.0 Bye")
                return
            else:
                self.say("502 5.5.2 Error: command not recognized")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--lmtp", action="store_true")
    p.add_argument("--fault", default="none")
    p.add_argument("--fault-on", type=int, default=0)
    p.add_argument("--also", action="append", default=[])
    p.add_argument("--overlap-wait", type=float, default=0)
    p.add_argument("--capabilities", default=None)
    p.add_argument("--save", default=None)
    p.add_argument("--tls-cert", default=None)
    p.add_argument("--tls-key", default=None)
    p.add_argument("--auth-mechs", default="PLAIN LOGIN")
    p.add_argument("--implicit-tls", action="store_true")
    p.add_argument("--user", default=None)
    p.add_argument("--password", default=None)
    p.add_argument("--max-seconds", type=float, default=60)
    p.add_argument("--linger", type=float, default=2)
    a = p.parse_args()
    if a.save:
        os.makedirs(a.save, exist_ok=True)
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((a.host, a.port))
    srv.listen(16)
    srv.settimeout(0.2)
    print("PORT %d" % srv.getsockname()[1], flush=True)
    start = time.time()
    last = [time.time()]
    active = [0]
    counter = [0]
    lock = threading.Lock()
    n = 0

    def serve(sock, tag):
        try:
            Session(a, sock, tag, counter).run()
        except (EOFError, OSError, ssl.SSLError) as e:
            log(tag, "end: %s" % e)
        finally:
            try:
                sock.close()
            except OSError:
                pass
            with lock:
                active[0] -= 1
                last[0] = time.time()

    while time.time() - start < a.max_seconds:
        with lock:
            idle = active[0] == 0
        if idle and n and time.time() - last[0] > a.linger:
            break
        try:
            s, _ = srv.accept()
        except socket.timeout:
            continue
        n += 1
        with lock:
            active[0] += 1
        s.settimeout(a.max_seconds)
        threading.Thread(target=serve, args=(s, "c%d" % n), daemon=True).start()
    return 0


if __name__ == "__main__":
    sys.exit(main())

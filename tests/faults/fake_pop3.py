#!/usr/bin/env python3
"""tests/faults/fake_pop3.py - a scripted POP3 server for faults a real
server (Dovecot) will not produce on demand. Python 3 standard library only.

    fake_pop3.py [--port N] [--host A] [--fault F] [--max-seconds S] [--linger S]
                 [--tls-cert F --tls-key F] [--sasl] [--no-pipelining] [--messages N]

Listens on 127.0.0.1:N (--host A: on A instead, e.g. an address of this
machine that is not loopback; N = 0 or absent: a free port) and prints
"PORT n" as the first line of stdout. It speaks enough POP3 (RFC 1939,
2449) for a client to CAPA, STLS (with --tls-cert/--tls-key), USER/PASS
or AUTH PLAIN (--sasl; any user and password), STAT, UIDL, LIST, RETR,
TOP, DELE, RSET, NOOP and QUIT on a fixed mailbox of 3 messages (unique-
ids "uid-1".."uid-3"; message 2 has lines starting with '.', message 3
has no final CRLF); --messages N (N > 3) adds messages 4..N, each a copy
of message 1 with its own Subject and Message-ID.

Faults (--fault):
  none              behave (the default)
  garbage-status    answer UIDL with "HELLO this is not POP3"
  long-line         answer UIDL with 64 KiB of 'x' and no line end, then wait
  bad-uidl          message 2's unique-id is "bad uid" (a space: RFC 1939 §7)
  long-uidl         message 2's unique-id is 71 characters
  dup-uidl          messages 1 and 3 share the unique-id "uid-1"
  disconnect-mid-retr  RETR 2: "+OK", 100 bytes of the body, close
  big-body          RETR 1: 200 KiB of body for a message LIST says is 1000
  no-reply          read RETR, never answer (the connection kept)
  stls-inject       "+OK" to STLS and, in the same send, "+OK injected\\r\\n"
  err-escape        -ERR to PASS/AUTH with an ESC sequence and a bidi override
  err-echo          -ERR to PASS quoting the password back
  msgno-cap         UIDL lists message 1000001 (over the client's cap)
  out-of-order      UIDL lists message 2 before message 1
  unsolicited       after login, an extra "+OK surprise" nobody asked for,
                    in the same send as PASS's +OK
  lock-in-use       the maildrop is locked while a session is logged in (RFC
                    1939 §8): a second one's PASS gets "-ERR [IN-USE] ..."
                    (RFC 2449 §8.1.1)
  lock-err          the same, with a plain "-ERR" (no response code)
  lock-close        the same, but the connection is closed without a word
  sys-temp-login    the first two logins of the server's life get
                    "-ERR [SYS/TEMP] ..." (RFC 3206 §4: try later); the
                    ones after them succeed
Every fault that ends the session makes the client fail; the test checks
how. A transcript (C:/S:, credentials hidden) goes to stderr.

Exits LINGER seconds (default 2) after the last client left with no new
one, or after --max-seconds (default 60): always bounded.
"""
import argparse
import base64
import socket
import ssl
import sys
import threading
import time


def make_messages(n=3):
    head = ("From: Alice <alice@example.org>\r\nTo: Bob <bob@example.org>\r\n"
            "Subject: %s\r\nMessage-ID: <%s@fake.example.org>\r\n\r\n")
    m1 = (head % ("one", "one")).encode()
    m1 = (m1 + b"".join(b"line %04d of padding text for a 1000 byte message\r\n" % i
                        for i in range(40)))[:998] + b"\r\n"
    m2 = (head % ("two", "two")).encode() + b".starts with a dot\r\n..two dots\r\n.\r\nend\r\n"
    m3 = (head % ("three", "three")).encode() + b"no final line end"
    more = [(head % ("pad %d" % i, "pad-%d" % i)).encode() + m1.partition(b"\r\n\r\n")[2]
            for i in range(4, n + 1)]
    return [m1, m2, m3] + more


MESSAGES = make_messages()


class Closed(Exception):
    pass


class Session:
    def __init__(self, srv, sock, cid):
        self.srv, self.sock, self.cid = srv, sock, cid
        self.args = srv.args
        self.fault = self.args.fault
        self.buf = b""
        self.tls = False
        self.user = None
        self.authed = False
        self.deleted = set()

    def log(self, d, data):
        t = data.decode("latin-1") if isinstance(data, bytes) else data
        t = t.rstrip("\r\n").replace("\r\n", "\\r\\n")
        sys.stderr.write("[%d] %s %s\n" % (self.cid, d, t[:200]))
        sys.stderr.flush()

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.log("S:", data[:300])
        # the 0.5 s timeout is for polling reads; a client slow to make
        # room (an ASan build under load) is no reason to hang up
        self.sock.settimeout(60)
        try:
            self.sock.sendall(data)
        finally:
            self.sock.settimeout(0.5)

    def line(self):
        while b"\r\n" not in self.buf:
            if time.monotonic() > self.srv.deadline or len(self.buf) > 65536:
                raise Closed()
            try:
                d = self.sock.recv(65536)
            except socket.timeout:
                continue
            if not d:
                raise Closed()
            self.buf += d
        ln, self.buf = self.buf.split(b"\r\n", 1)
        return ln

    def hang(self):
        while time.monotonic() < self.srv.deadline:
            try:
                if not self.sock.recv(65536):
                    break
            except socket.timeout:
                continue
        raise Closed()

    def uidl(self, i):
        if self.fault == "bad-uidl" and i == 2:
            return "bad uid"
        if self.fault == "long-uidl" and i == 2:
            return "u" * 71
        if self.fault == "dup-uidl" and i == 3:
            return "uid-1"
        return "uid-%d" % i

    def capa(self):
        c = ["CAPA", "TOP", "UIDL", "RESP-CODES", "USER"]
        if not self.args.no_pipelining:
            c.append("PIPELINING")
        if self.args.tls_cert and not self.tls:
            c.append("STLS")
        if self.args.sasl:
            c.append("SASL PLAIN")
        return c

    def stuffed(self, body):
        out = b"".join((b"." + ln if ln.startswith(b".") else ln)
                       for ln in body.splitlines(keepends=True))
        if not out.endswith(b"\r\n"):
            out += b"\r\n"
        return out + b".\r\n"

    def lock_maildrop(self):
        """lock-*: one session at a time holds the maildrop (released when
        it ends); False when another holds it (refused, the way asked)."""
        if not self.fault.startswith("lock-"):
            return True
        with self.srv.lock:
            if self.srv.holder is None:
                self.srv.holder = self.cid
                return True
        if self.fault == "lock-in-use":
            self.send("-ERR [IN-USE] Mailbox is locked by another POP3 session\r\n")
        elif self.fault == "lock-err":
            self.send("-ERR Unable to lock maildrop\r\n")
        else:
            self.log("S:", "<closed: the maildrop is locked>")
            raise Closed()
        return False

    def login_fail(self, pw):
        if self.fault == "sys-temp-login":
            with self.srv.lock:
                self.srv.temp_left = getattr(self.srv, "temp_left", 2) - 1
                refuse = self.srv.temp_left >= 0
            if refuse:
                self.send("-ERR [SYS/TEMP] Service temporarily unavailable, try later\r\n")
                return True
        if self.fault == "err-escape":
            self.send("-ERR [AUTH] denied \x1b[31mred\x1b[0m \u202eevil\r\n")
            return True
        if self.fault == "err-echo":
            self.send(b"-ERR [AUTH] wrong password: " + pw + b"\r\n")
            return True
        return False

    def run(self):
        self.send("+OK fake POP3 ready\r\n")
        while True:
            ln = self.line()
            word = ln.split(b" ", 1)[0].upper().decode("latin-1")
            arg = ln[len(word) + 1:] if b" " in ln else b""
            self.log("C:", ln if word not in ("PASS", "AUTH") else word + " ***")
            if word == "CAPA":
                self.send("+OK\r\n" + "".join(c + "\r\n" for c in self.capa()) + ".\r\n")
            elif word == "STLS" and self.args.tls_cert and not self.tls:
                ok = b"+OK Begin TLS\r\n"
                if self.fault == "stls-inject":
                    self.log("S:", "+OK Begin TLS\\r\\n+OK injected\\r\\n <one send>")
                    self.sock.sendall(ok + b"+OK injected\r\n")
                else:
                    self.send(ok)
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                ctx.load_cert_chain(self.args.tls_cert, self.args.tls_key)
                self.sock.settimeout(10)
                try:
                    self.sock = ctx.wrap_socket(self.sock, server_side=True)
                except (ssl.SSLError, OSError):
                    raise Closed()
                self.sock.settimeout(0.5)
                self.buf = b""
                self.tls = True
            elif word == "USER":
                self.user = arg
                self.send("+OK\r\n")
            elif word == "PASS":
                if self.user is None:
                    self.send("-ERR USER first\r\n")
                elif not self.login_fail(arg) and self.lock_maildrop():
                    self.authed = True
                    if self.fault == "unsolicited":  # one send: it arrives with the +OK
                        self.send("+OK Logged in.\r\n+OK surprise\r\n")
                    else:
                        self.send("+OK Logged in.\r\n")
            elif word == "AUTH":
                parts = arg.split(b" ")
                if len(parts) == 1:
                    self.send("+ \r\n")
                    resp = self.line()
                else:
                    resp = parts[1]
                try:
                    _, _, pw = base64.b64decode(resp, validate=True).split(b"\x00", 2)
                except Exception:
                    self.send("-ERR bad response\r\n")
                    continue
                if not self.login_fail(pw):
                    self.authed = True
                    self.send("+OK Logged in.\r\n")
            elif not self.authed:
                self.send("-ERR not logged in\r\n")
            elif word == "STAT":
                live = [i for i in range(1, len(MESSAGES) + 1) if i not in self.deleted]
                self.send("+OK %d %d\r\n" % (len(live), sum(len(MESSAGES[i - 1]) for i in live)))
            elif word == "UIDL" and not arg:
                if self.fault == "msgno-cap":
                    self.send("+OK\r\n1 uid-1\r\n1000001 uid-x\r\n.\r\n")
                    continue
                if self.fault == "out-of-order":
                    self.send("+OK\r\n2 uid-2\r\n1 uid-1\r\n.\r\n")
                    continue
                if self.fault == "garbage-status":
                    self.send("HELLO this is not POP3\r\n")
                    continue
                if self.fault == "long-line":
                    self.send(b"+OK " + b"x" * 65536)
                    self.hang()
                self.send("+OK\r\n" + "".join("%d %s\r\n" % (i, self.uidl(i)) for i in range(1, len(MESSAGES) + 1)
                                              if i not in self.deleted) + ".\r\n")
            elif word == "UIDL":
                i = int(arg)
                self.send("+OK %d %s\r\n" % (i, self.uidl(i)))
            elif word == "LIST" and not arg:
                self.send("+OK %d messages\r\n" % len(MESSAGES) + "".join("%d %d\r\n" % (i, len(MESSAGES[i - 1]))
                                                         for i in range(1, len(MESSAGES) + 1) if i not in self.deleted) + ".\r\n")
            elif word == "LIST":
                i = int(arg)
                self.send("+OK %d %d\r\n" % (i, len(MESSAGES[i - 1])))
            elif word in ("RETR", "TOP"):
                i = int(arg.split(b" ")[0])
                if self.fault == "no-reply":
                    self.log("S:", "<no reply, ever>")
                    self.hang()
                body = MESSAGES[i - 1]
                if word == "TOP":  # RFC 1939 §7: the header, the blank line, n body lines
                    n = int(arg.split(b" ")[1])
                    head, _, rest = body.partition(b"\r\n\r\n")
                    body = head + b"\r\n\r\n" + b"".join(rest.splitlines(keepends=True)[:n])
                if self.fault == "big-body" and i == 1:
                    body = b"y" * 100 + b"\r\n"
                    body = body * 2000
                data = b"+OK %d octets\r\n" % len(MESSAGES[i - 1]) + self.stuffed(body)
                if self.fault == "disconnect-mid-retr" and i == 2:
                    self.send(data[:100])
                    raise Closed()
                self.send(data)
            elif word == "DELE":
                self.deleted.add(int(arg))
                self.send("+OK deleted\r\n")
            elif word == "RSET":
                self.deleted.clear()
                self.send("+OK\r\n")
            elif word == "NOOP":
                self.send("+OK\r\n")
            elif word == "QUIT":
                self.send("+OK bye\r\n")
                raise Closed()
            else:
                self.send("-ERR unknown command\r\n")


class Server:
    def __init__(self, args):
        self.args = args
        self.deadline = time.monotonic() + args.max_seconds
        self.lock = threading.Lock()
        self.active = 0
        self.last_end = time.monotonic()
        self.holder = None  # lock-*: the session holding the maildrop

    def serve(self, sock, cid):
        s = Session(self, sock, cid)
        try:
            s.run()
        except (Closed, OSError, ValueError, ssl.SSLError):
            pass
        finally:
            try:
                s.sock.close()
            except OSError:
                pass
            with self.lock:
                self.active -= 1
                self.last_end = time.monotonic()
                if self.holder == cid:
                    self.holder = None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--fault", default="none")
    ap.add_argument("--max-seconds", type=float, default=60)
    ap.add_argument("--linger", type=float, default=2)
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--sasl", action="store_true")
    ap.add_argument("--no-pipelining", action="store_true")
    ap.add_argument("--messages", type=int, default=3)
    args = ap.parse_args()
    global MESSAGES
    MESSAGES = make_messages(max(3, args.messages))
    srv = Server(args)
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((args.host, args.port))
    ls.listen(16)
    ls.settimeout(0.2)
    print("PORT %d" % ls.getsockname()[1], flush=True)
    cid, seen = 0, False
    while time.monotonic() < srv.deadline:
        with srv.lock:
            if seen and srv.active == 0 and time.monotonic() - srv.last_end > args.linger:
                break
        try:
            c, _ = ls.accept()
        except socket.timeout:
            continue
        c.settimeout(0.5)
        cid += 1
        seen = True
        with srv.lock:
            srv.active += 1
        threading.Thread(target=srv.serve, args=(c, cid), daemon=True).start()
    ls.close()


if __name__ == "__main__":
    main()

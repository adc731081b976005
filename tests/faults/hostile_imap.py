#!/usr/bin/env python3
"""tests/faults/hostile_imap.py - a hostile SOURCE server for the injection
tests (issue 15 defects 1 and 10). Python 3 standard library only; built on
fake_imap.py's server, sessions and options (same --port, --max-seconds,
--linger, --capabilities; --fault is ignored).

    hostile_imap.py [--port N] [--max-seconds S] [--mailboxes SET]

Prints "PORT n" first. Read-only; LIST, STATUS, EXAMINE/SELECT, UID FETCH,
UID SEARCH, LOGOUT. Every value below comes back exactly as a hostile or
broken server would send it.

INBOX (UIDVALIDITY 777, UIDs 1-5):
  1  good: \\Seen, "01-Jan-2024 10:00:00 +0000"
  2  INTERNALDATE as a literal holding CRLF and two commands: a quote that
     ends the APPEND's date, "X DELETE Canary", and an APPEND into INBOX
     of its own that takes mailferry's literal (the message)
  3  INTERNALDATE quoted with an escaped quote inside: \\" Q CREATE ...
  4  a flag atom that our parser reads as one atom: x[ ) "y" (z ]
  5  good: \\Flagged $Label1, " 5-Feb-2024 08:00:00 -0130" (the SP DIGIT day)
  The bodies of 2-4 hold lines "Q<n> CREATE Injected<n>": a destination
  reading message lines as commands creates those folders.
Mailboxes besides INBOX (each one good message, distinct content):
  Dup                   a plain name
  Dup<NUL>x             differs from Dup only after a NUL byte
  Esc<ESC>[31mRed       an ANSI escape in the name
  Evil<CR><LF>mailferry: done: 999 copied   a forged log line
  Bad<FF><FE>Name       not UTF-8 (nor modified UTF-7)
Names that are not plain atoms go out as literals, as a server may send them.
--mailboxes inbox: INBOX only (for the defect 1 check alone).
--flags1 F: message 1's flags become F (a later run with --sync-flags
carries them with UID STORE).
"""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fake_imap  # noqa: E402
from fake_imap import Closed, parse_set  # noqa: E402

UIDVALIDITY = 777


def body(subject, extra=b""):
    return (b"From: Mallory <mallory@example.org>\r\nTo: Bob <bob@example.org>\r\n"
            b"Subject: " + subject + b"\r\nMessage-ID: <" + subject.replace(b" ", b"-") +
            b"@hostile.example.org>\r\n\r\nHello.\r\n" + extra)


def lit(b):
    return b"{%d}\r\n" % len(b) + b


INBOX = [
    {"uid": 1, "flags": b"\\Seen", "date": b'"01-Jan-2024 10:00:00 +0000"', "body": body(b"good one")},
    {"uid": 2, "flags": b"",
     # under 64 bytes: the length the code before the fix let through
     "date": lit(b'"\r\nX DELETE Canary\r\nY APPEND INBOX "01-Jan-2024 00:00:00 +0000'),
     "body": body(b"literal date", b"Q2 CREATE Injected2\r\n")},
    {"uid": 3, "flags": b"\\Seen", "date": b'"01-Jan-2024 10:00:00 +0000\\" Q3 CREATE Injected3 \\""',
     "body": body(b"quoted date", b"Q3 CREATE Injected3b\r\n")},
    {"uid": 4, "flags": b'\\Seen x[ ) "y" (z ]', "date": b'"01-Jan-2024 10:00:00 +0000"',
     "body": body(b"bad flag", b"Q4 CREATE Injected4\r\n")},
    {"uid": 5, "flags": b"\\Flagged $Label1", "date": b'" 5-Feb-2024 08:00:00 -0130"',
     "body": body(b"good five")},
]


def one(subject):
    return [{"uid": 1, "flags": b"\\Seen", "date": b'"02-Jan-2024 10:00:00 +0000"',
             "body": body(subject)}]


BOXES = {
    b"INBOX": INBOX,
    b"Dup": one(b"dup plain"),
    b"Dup\x00x": one(b"dup after nul"),
    b"Esc\x1b[31mRed": one(b"escape name"),
    b"Evil\r\nmailferry: done: 999 copied": one(b"forged line"),
    b"Bad\xff\xfeName": one(b"bad utf8"),
}


def astring(name):
    if re.fullmatch(rb"[A-Za-z0-9]+", name):
        return name
    return lit(name)


def arg(rest, lits):
    """First astring argument of rest (literal placeholders resolved), and what follows."""
    m = re.match(rb"\x00(\d+)\x00", rest)
    if m:
        return lits[int(m.group(1))], rest[m.end():]
    if rest.startswith(b'"'):
        m = re.match(rb'"((?:[^"\\]|\\.)*)"', rest)
        if m:
            return re.sub(rb"\\(.)", rb"\1", m.group(1)), rest[m.end():]
    a, _, b = rest.partition(b" ")
    return a, b" " + b


class Hostile(fake_imap.Session):
    def names(self):
        if MAILBOXES == "inbox":
            return [b"INBOX"]
        return list(BOXES)

    def run(self):
        self.send("* OK [CAPABILITY %s] hostile IMAP ready\r\n" % self.caps(False))
        box = None
        while True:
            text, lits = self.read_command()
            words = text.split(b" ", 2)
            tag = words[0]
            cmd = words[1].upper() if len(words) > 1 else b""
            rest = words[2] if len(words) > 2 else b""
            if cmd == b"UID":
                sub = rest.split(b" ", 1)
                cmd = b"UID " + sub[0].upper()
                rest = sub[1] if len(sub) > 1 else b""
            if cmd in (b"LOGIN", b"AUTHENTICATE"):
                self.sock.sendall(tag + b" OK [CAPABILITY " + self.caps(True).encode() + b"] Logged in\r\n")
            elif cmd == b"CAPABILITY":
                self.send(b"* CAPABILITY " + self.caps(True).encode() + b"\r\n" + tag + b" OK done\r\n")
            elif cmd in (b"NOOP", b"ID", b"ENABLE", b"CLOSE", b"UNSELECT"):
                self.send(tag + b" OK done\r\n")
            elif cmd == b"LOGOUT":
                self.send(b"* BYE bye\r\n" + tag + b" OK bye\r\n")
                raise Closed()
            elif cmd == b"NAMESPACE":
                self.send(b'* NAMESPACE (("" ".")) NIL NIL\r\n' + tag + b" OK done\r\n")
            elif cmd in (b"LIST", b"LSUB"):
                if rest.endswith(b'""'):
                    self.send(b'* LIST (\\Noselect) "." ""\r\n')
                else:
                    for n in self.names():
                        self.sock.sendall(b'* LIST (\\HasNoChildren) "." ' + astring(n) + b"\r\n")
                self.send(tag + b" OK done\r\n")
            elif cmd == b"STATUS":
                name, _ = arg(rest, lits)
                msgs = BOXES.get(name)
                if msgs is None:
                    self.send(tag + b" NO [NONEXISTENT] no such mailbox\r\n")
                    continue
                self.sock.sendall(b"* STATUS " + astring(name) + b" (MESSAGES %d UIDNEXT %d UIDVALIDITY %d)\r\n"
                                  % (len(msgs), msgs[-1]["uid"] + 1, UIDVALIDITY) + tag + b" OK done\r\n")
            elif cmd in (b"SELECT", b"EXAMINE"):
                name, _ = arg(rest, lits)
                box = BOXES.get(name) if name in self.names() else None
                if box is None:
                    self.send(tag + b" NO [NONEXISTENT] no such mailbox\r\n")
                    continue
                self.send(b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n"
                          b"* %d EXISTS\r\n* OK [UIDVALIDITY %d] ok\r\n* OK [UIDNEXT %d] ok\r\n"
                          % (len(box), UIDVALIDITY, box[-1]["uid"] + 1) + tag + b" OK [READ-ONLY] done\r\n")
            elif cmd in (b"UID FETCH", b"FETCH") and box is not None:
                sset, _, items = rest.partition(b" ")
                items = items.upper()
                wanted = parse_set(sset, box[-1]["uid"] if cmd == b"UID FETCH" else len(box))
                for seq, m in enumerate(box, 1):
                    if (m["uid"] if cmd == b"UID FETCH" else seq) not in wanted:
                        continue
                    out = b"* %d FETCH (UID %d" % (seq, m["uid"])
                    if b"FLAGS" in items:
                        out += b" FLAGS (" + m["flags"] + b")"
                    if b"INTERNALDATE" in items:
                        out += b" INTERNALDATE " + m["date"]
                    if b"RFC822.SIZE" in items:
                        out += b" RFC822.SIZE %d" % len(m["body"])
                    if b"BODY" in items:
                        out += b" BODY[] " + lit(m["body"])
                    self.srv.log(self.cid, "S:", out[:150])
                    self.sock.sendall(out + b")\r\n")
                self.send(tag + b" OK done\r\n")
            elif cmd in (b"UID SEARCH", b"SEARCH") and box is not None:
                self.send(b"* SEARCH" + b"".join(b" %d" % m["uid"] for m in box) + b"\r\n" + tag + b" OK done\r\n")
            else:
                self.send(tag + b" BAD not here\r\n")


MAILBOXES = "all"

if __name__ == "__main__":
    if "--mailboxes" in sys.argv:  # ours, not fake_imap's --mailboxes N
        i = sys.argv.index("--mailboxes")
        MAILBOXES = sys.argv[i + 1]
        del sys.argv[i:i + 2]
    if "--flags1" in sys.argv:
        i = sys.argv.index("--flags1")
        INBOX[0]["flags"] = sys.argv[i + 1].encode()
        del sys.argv[i:i + 2]
    fake_imap.Session = Hostile  # main() starts one of these per connection
    fake_imap.main()

#!/usr/bin/env python3
"""tests/faults/lmtp_cut.py - an LMTP/SMTP proxy that leaves one delivery
unconfirmed: the server has it, the client never hears so.

    lmtp_cut.py --target PORT --match TEXT [--nth N] [--mode drop|hang|withhold]
                [--done FILE] [--max-seconds S]

Listens on 127.0.0.1 (a free port, printed as the first line of stdout,
"PORT n") and forwards every connection to 127.0.0.1:TARGET. PIPELINING
is taken out of the server's LHLO/EHLO answer (renamed XPIPELINING), so a
client has one transaction at a time; STARTTLS too (the proxy reads the
commands; loopback needs no TLS). The N-th (default first) transaction
whose message data holds TEXT is forwarded whole (its final "BDAT n LAST" chunk or the
"." line); the server's final reply to it is read and NOT forwarded; then
  drop: both connections are closed (the client sees a lost connection);
  hang: nothing more is forwarded either way until the client goes.
withhold: its final chunk or "." line is never forwarded (the server never
has the message, the client has sent it all), nor anything after.
Either way FILE (--done) is written once the server has answered, so a
test may SIGKILL the client then. Later connections pass through (still
without PIPELINING). Nothing of the forwarded bytes is logged.

Bounded: exits after --max-seconds (default 300).
"""
import argparse
import os
import socket
import sys
import threading
import time

ap = argparse.ArgumentParser()
ap.add_argument("--target", type=int, required=True)
ap.add_argument("--match", required=True)
ap.add_argument("--mode", choices=("drop", "hang", "withhold"), default="drop")
ap.add_argument("--nth", type=int, default=1)
ap.add_argument("--done")
ap.add_argument("--max-seconds", type=float, default=300)
args = ap.parse_args()
match = args.match.encode()
lock = threading.Lock()
state = {"cut": False, "seen": 0}  # the one cut has been made (or is being made)


def is_cut(data):
    with lock:
        if state["cut"] or match not in data:
            return False
        state["seen"] += 1
        state["cut"] = state["seen"] == args.nth
        return state["cut"]


def withhold(k):
    k.frozen = True
    if args.done:
        open(args.done, "w").write("withheld\n")


class Conn:
    def __init__(self, c, s):
        self.c, self.s = c, s
        self.swallow = False  # the next complete reply is the cut one
        self.frozen = False

    def close(self):
        for x in (self.c, self.s):
            try:
                x.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                x.close()
            except OSError:
                pass


def s2c(k):
    buf = b""
    try:
        while True:
            d = k.s.recv(65536)
            if not d:
                break
            buf += d
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                line += b"\n"
                if line[4:].upper().startswith((b"PIPELINING", b"STARTTLS")):
                    line = line[:4] + b"X" + line[4:]
                if k.swallow:
                    if line[3:4] == b" ":  # the reply's last line
                        k.swallow = False
                        k.frozen = True
                        if args.done:
                            open(args.done, "w").write("cut\n")
                        if args.mode == "drop":
                            k.close()
                            return
                    continue
                if k.frozen:
                    continue
                k.c.sendall(line)
    except OSError:
        pass
    if not k.frozen:
        k.close()


def c2s(k):
    f = k.c.makefile("rb")
    mine = False  # this connection makes the cut
    try:
        while True:
            line = f.readline()
            if not line or k.frozen:
                break
            up = line.upper()
            if up.startswith(b"BDAT"):
                parts = line.split()
                n = int(parts[1])
                last = len(parts) > 2 and parts[2].upper() == b"LAST"
                data = f.read(n)
                mine = mine or is_cut(data)
                if mine and last and args.mode == "withhold":
                    withhold(k)
                    break
                if mine and last:
                    k.swallow = True
                    k.s.sendall(line + data)
                    break
                k.s.sendall(line + data)
                continue
            if up.startswith(b"DATA"):
                k.s.sendall(line)
                body = b""
                while True:
                    dl = f.readline()
                    if not dl:
                        return
                    body += dl
                    if dl == b".\r\n":
                        break
                mine = is_cut(body)
                if mine and args.mode == "withhold":
                    withhold(k)
                    break
                if mine:
                    k.swallow = True
                    k.s.sendall(body)
                    break
                k.s.sendall(body)
                continue
            k.s.sendall(line)
    except (OSError, ValueError, IndexError):
        pass
    if mine:
        # the cut is made by s2c (the reply swallowed); wait for the client
        while True:
            try:
                if not k.c.recv(65536):
                    break
            except OSError:
                break
    k.close()


def main():
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", 0))
    ls.listen(16)
    print("PORT %d" % ls.getsockname()[1], flush=True)
    ls.settimeout(0.5)
    end = time.monotonic() + args.max_seconds
    while time.monotonic() < end:
        try:
            c, _ = ls.accept()
        except socket.timeout:
            continue
        try:
            s = socket.create_connection(("127.0.0.1", args.target))
        except OSError:
            c.close()
            continue
        k = Conn(c, s)
        threading.Thread(target=s2c, args=(k,), daemon=True).start()
        threading.Thread(target=c2s, args=(k,), daemon=True).start()
    os._exit(0)


main()

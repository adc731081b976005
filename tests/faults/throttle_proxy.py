#!/usr/bin/env python3
"""tests/faults/throttle_proxy.py - an IMAP proxy in front of a real server
that throttles like Microsoft 365, for the faults a real Dovecot will not
produce. Python 3 standard library only; plaintext IMAP only.

    throttle_proxy.py --target PORT [--listen PORT] [--throttle K]
                      [--hint-ms MS] [--bye-every M] [--login-throttle L]
                      [--events FILE] [--max-seconds S]

Listens on 127.0.0.1:LISTEN (0 or absent: a free port, printed as the first
line of stdout, "PORT n") and forwards every connection to
127.0.0.1:TARGET. The first K APPEND commands (over all connections) never
reach the server: the proxy swallows each whole (literals included,
answering "+" to a synchronizing one) and answers it itself with

    TAG NO [THROTTLED] Request is throttled. Suggested Backoff Time: MS milliseconds

or, for every M-th of them (--bye-every), with
"* BYE [UNAVAILABLE] Request is throttled. Suggested Backoff Time: MS
milliseconds" and a closed connection, as Exchange Online does.

--login-throttle L: the first L LOGIN or AUTHENTICATE commands (one line
each, as with SASL-IR) never reach the server either; the proxy answers

    TAG NO [UNAVAILABLE] Request is throttled. Suggested Backoff Time: MS milliseconds

(event "login-throttle").

--events FILE gets one JSON line per event, flushed: {"ev": "accept" |
"close" | "throttle" | "append", "t": seconds since start, "conn": n,
"open": connections open after it, "kind": "NO" | "BYE" (throttle)}.
"append" is an APPEND forwarded to the server. The proxy never logs the
bytes it forwards. Bounded: exits after --max-seconds (default 300).
"""
import argparse
import asyncio
import json
import os
import re
import signal
import sys
import time

LIT_RE = re.compile(rb"~?\{(\d{1,20})(\+?)\}\r\n$")
LINE_MAX = 1 << 20


class Proxy:
    def __init__(self, args):
        self.args = args
        self.left = args.throttle
        self.login_left = args.login_throttle
        self.nthrottle = 0
        self.nconn = 0
        self.open = 0
        self.start = time.monotonic()
        self.events = open(args.events, "a") if args.events else None

    def event(self, ev, conn, **kw):
        if not self.events:
            return
        rec = {"ev": ev, "t": round(time.monotonic() - self.start, 4), "conn": conn, "open": self.open}
        rec.update(kw)
        self.events.write(json.dumps(rec) + "\n")
        self.events.flush()

    async def handle(self, creader, cwriter):
        self.nconn += 1
        num = self.nconn
        try:
            sreader, swriter = await asyncio.open_connection("127.0.0.1", self.args.target)
        except OSError as e:
            sys.stderr.write("throttle_proxy: connect to %d: %s\n" % (self.args.target, e))
            cwriter.close()
            return
        self.open += 1
        self.event("accept", num)
        c = Conn(self, num, cwriter, swriter)
        try:
            await asyncio.gather(c.c2s(creader), c.s2c(sreader))
        finally:
            c.close()
            self.open -= 1
            self.event("close", num)


class Conn:
    def __init__(self, proxy, num, cw, sw):
        self.p, self.num, self.cw, self.sw = proxy, num, cw, sw
        self.closed = False
        self.s2c_mid = False  # the last byte sent to the client was not a line end
        self.pending = []     # our own replies, held until the client is at a line start

    def close(self):
        if self.closed:
            return
        self.closed = True
        for w in (self.cw, self.sw):
            try:
                w.close()
            except (ConnectionError, OSError):
                pass

    def reply(self, data, then_close=False):
        self.pending.append((data, then_close))
        self.flush_replies()

    def flush_replies(self):
        while self.pending and not self.s2c_mid and not self.closed:
            data, then_close = self.pending.pop(0)
            self.cw.write(data)
            if then_close:
                self.close()

    async def s2c(self, reader):
        try:
            while not self.closed:
                data = await reader.read(65536)
                if not data:
                    break
                self.cw.write(data)
                self.s2c_mid = not data.endswith(b"\n")
                self.flush_replies()
                await self.cw.drain()
        except (ConnectionError, OSError):
            pass
        self.close()

    def throttle(self, tag):
        p = self.p
        p.nthrottle += 1
        text = b"Request is throttled. Suggested Backoff Time: %d milliseconds" % p.args.hint_ms
        if p.args.bye_every and p.nthrottle % p.args.bye_every == 0:
            p.event("throttle", self.num, kind="BYE")
            self.reply(b"* BYE [UNAVAILABLE] " + text + b"\r\n", then_close=True)
        else:
            p.event("throttle", self.num, kind="NO")
            self.reply(tag + b" NO [THROTTLED] " + text + b"\r\n")

    async def c2s(self, reader):
        buf = b""
        lit_left = 0
        cmd_start = True
        swallow = False
        tag = b""
        try:
            while not self.closed:
                data = await reader.read(65536)
                if not data:
                    break
                buf += data
                out = []
                while buf:
                    if lit_left:
                        n = min(lit_left, len(buf))
                        if not swallow:
                            out.append(buf[:n])
                        buf, lit_left = buf[n:], lit_left - n
                        continue
                    i = buf.find(b"\r\n")
                    if i < 0:
                        if len(buf) > LINE_MAX:  # not ours to judge: pass it on
                            out.append(buf)
                            buf = b""
                        break
                    line, buf = buf[:i + 2], buf[i + 2:]
                    if cmd_start:
                        words = line.split(b" ", 2)
                        tag = words[0]
                        verb = words[1].strip().upper() if len(words) > 1 else b""
                        if verb in (b"LOGIN", b"AUTHENTICATE") and self.p.login_left > 0 \
                                and not LIT_RE.search(line):
                            self.p.login_left -= 1
                            self.p.event("login-throttle", self.num)
                            self.reply(tag + b" NO [UNAVAILABLE] Request is throttled. "
                                       b"Suggested Backoff Time: %d milliseconds\r\n" % self.p.args.hint_ms)
                            continue
                        if verb == b"APPEND" and self.p.left > 0:
                            self.p.left -= 1
                            swallow = True
                        elif verb == b"APPEND":
                            self.p.event("append", self.num)
                    m = LIT_RE.search(line)
                    if not swallow:
                        out.append(line)
                    if m:
                        lit_left = int(m.group(1))
                        cmd_start = False
                        if swallow and not m.group(2):
                            self.reply(b"+ go ahead\r\n")
                    else:
                        cmd_start = True
                        if swallow:
                            swallow = False
                            self.throttle(tag)
                if out and not self.closed:
                    self.sw.write(b"".join(out))
                    await self.sw.drain()
        except (ConnectionError, OSError):
            pass
        self.close()


async def main():
    ap = argparse.ArgumentParser(description="IMAP proxy that throttles APPENDs")
    ap.add_argument("--listen", type=int, default=0)
    ap.add_argument("--target", type=int, required=True)
    ap.add_argument("--throttle", type=int, default=3)
    ap.add_argument("--hint-ms", type=int, default=1500)
    ap.add_argument("--bye-every", type=int, default=0)
    ap.add_argument("--login-throttle", type=int, default=0)
    ap.add_argument("--events", default=None)
    ap.add_argument("--max-seconds", type=float, default=300)
    args = ap.parse_args()
    proxy = Proxy(args)
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", args.listen)
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    print("PORT %d" % server.sockets[0].getsockname()[1], flush=True)
    try:
        await asyncio.wait_for(done.wait(), timeout=args.max_seconds)
    except asyncio.TimeoutError:
        sys.stderr.write("throttle_proxy: --max-seconds reached\n")
    server.close()
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    asyncio.run(main())

#!/usr/bin/env python3
"""tests/integration/http_probe.py - raw HTTP probes for the status server
(t_status.sh). Every probe talks plain sockets, so nothing is normalised on
the way (a path with '..' arrives as written).

    http_probe.py get PORT PATH [TOKEN]   prints the status code, then the body
    http_probe.py raw PORT                sends stdin as is; prints the status line
    http_probe.py bighead PORT            a 100 KiB header; prints the status (or "closed")
    http_probe.py slow PORT               half a request, then silence: prints how
                                          long until the server closed (at most 30 s)
    http_probe.py flood PORT N            N connections at once, each sending half a
                                          request; prints "busy=B open=O" (503s, held)
    http_probe.py poll PORT OUT [SECONDS] GET /api/status every 100 ms into OUT (one
                                          body a line) until it says finished, the
                                          server goes, or SECONDS (60) pass
    http_probe.py events PORT N           GET /api/events: reads N events, prints
                                          "events=N json=J type=CONTENT-TYPE gap=S"
                                          (J: how many parsed as JSON; S: the median
                                          seconds between them)
"""
import resource
import socket
import sys
import time


def connect(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=20)
    return s


def read_all(s):
    out = b""
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            out += b
    except (socket.timeout, ConnectionResetError):
        pass
    return out


def status_of(resp):
    if not resp:
        return "closed"
    line = resp.split(b"\r\n", 1)[0].decode("latin-1")
    parts = line.split(" ")
    return parts[1] if len(parts) > 1 else line


def main():
    cmd, port = sys.argv[1], int(sys.argv[2])
    if cmd == "get":
        path = sys.argv[3]
        tok = sys.argv[4] if len(sys.argv) > 4 else None
        s = connect(port)
        req = "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n" % path
        if tok:
            req += "Authorization: Bearer %s\r\n" % tok
        s.sendall((req + "\r\n").encode())
        resp = read_all(s)
        head, _, body = resp.partition(b"\r\n\r\n")
        print(status_of(resp))
        sys.stdout.flush()
        sys.stdout.buffer.write(body)
    elif cmd == "raw":
        s = connect(port)
        s.sendall(sys.stdin.buffer.read())
        print(status_of(read_all(s)))
    elif cmd == "bighead":
        s = connect(port)
        try:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100000 + b"\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        print(status_of(read_all(s)))
    elif cmd == "slow":
        s = connect(port)
        s.settimeout(30)
        s.sendall(b"GET / HT")
        t0 = time.time()
        try:
            r = s.recv(100)
        except (socket.timeout, ConnectionResetError):
            r = b""
        print("%.1f %s" % (time.time() - t0, status_of(r)))
    elif cmd == "flood":
        n = int(sys.argv[3])
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, n + 100)), hard))
        socks = []
        for _ in range(n):
            try:
                s = connect(port)
                s.sendall(b"GET / HTTP/1.1\r\n")
                socks.append(s)
            except OSError:
                pass
        busy = held = 0
        time.sleep(1)
        for s in socks:
            s.setblocking(False)
            try:
                r = s.recv(200)
                if b" 503 " in r:
                    busy += 1
                elif r == b"":
                    busy += 1
                else:
                    held += 1
            except BlockingIOError:
                held += 1
            except OSError:
                busy += 1
        for s in socks:
            s.close()
        print("busy=%d open=%d" % (busy, held))
    elif cmd == "poll":
        out = open(sys.argv[3], "wb")
        end = time.time() + (float(sys.argv[4]) if len(sys.argv) > 4 else 60)
        seen = False
        while time.time() < end:
            t = time.time()
            try:
                s = connect(port)
                s.sendall(b"GET /api/status HTTP/1.1\r\nHost: x\r\n\r\n")
                body = read_all(s).partition(b"\r\n\r\n")[2]
                s.close()
                if body:
                    seen = True
                    out.write(body.rstrip(b"\n") + b"\n")
                    out.flush()
                    if b'"finished":true' in body:
                        break
            except OSError:
                if seen:
                    break
            time.sleep(max(0, 0.1 - (time.time() - t)))
    elif cmd == "events":
        import json
        n = int(sys.argv[3])
        s = connect(port)
        s.sendall(b"GET /api/events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
        buf, head, events, ok, times = b"", None, 0, 0, []
        while events < n:
            b = s.recv(65536)
            if not b:
                break
            buf += b
            if head is None and b"\r\n\r\n" in buf:
                head, _, buf = buf.partition(b"\r\n\r\n")
            while head is not None and b"\n\n" in buf:
                ev, _, buf = buf.partition(b"\n\n")
                data = b"".join(l[5:].lstrip(b" ") for l in ev.split(b"\n") if l.startswith(b"data:"))
                if not data:
                    continue  # a comment or retry: line
                events += 1
                times.append(time.time())
                try:
                    json.loads(data)
                    ok += 1
                except ValueError:
                    pass
        ctype = "?"
        for l in (head or b"").split(b"\r\n"):
            if l.lower().startswith(b"content-type:"):
                ctype = l.split(b":", 1)[1].strip().decode("latin-1").split(";")[0]
        gaps = sorted(b - a for a, b in zip(times, times[1:]))
        print("events=%d json=%d type=%s gap=%.2f" % (events, ok, ctype, gaps[len(gaps) // 2] if gaps else -1))


main()

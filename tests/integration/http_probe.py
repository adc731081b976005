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


main()

#!/usr/bin/env python3
"""tests/integration/oauth_introspect.py - a tiny OAuth2 token introspection
endpoint (RFC 7662) for the private Dovecot's passdb oauth2 (t_oauth.sh).

    oauth_introspect.py --tokens FILE --log FILE [--max-seconds S]

Listens on a free port of 127.0.0.1, printed as the first line of stdout
("PORT n"). Every POST (introspection_mode = post: body token=...) is
answered with {"active": true, "username": USER} when FILE (re-read at each
request; lines "TOKEN USER") lists the token, else {"active": false}.
Each request is logged to the log FILE as one line "TOKEN USER|-" so a test
can tell which tokens the server was asked about and how often.
Exits after --max-seconds (default 600).
"""
import argparse
import json
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--max-seconds", type=float, default=600)
    args = ap.parse_args()
    lock = threading.Lock()

    def lookup(token):
        try:
            with open(args.tokens) as f:
                for line in f:
                    parts = line.split()
                    if len(parts) == 2 and parts[0] == token:
                        return parts[1]
        except OSError:
            pass
        return None

    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def reply(self, token):
            user = lookup(token) if token else None
            with lock, open(args.log, "a") as f:
                f.write("%s %s\n" % (token or "(none)", user or "-"))
            body = json.dumps({"active": True, "username": user} if user
                              else {"active": False}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            n = min(int(self.headers.get("Content-Length") or 0), 65536)
            form = urllib.parse.parse_qs(self.rfile.read(n).decode("latin-1"))
            self.reply((form.get("token") or [None])[0])

        def do_GET(self):
            q = urllib.parse.urlparse(self.path).query
            tok = (urllib.parse.parse_qs(q).get("access_token") or [None])[0]
            auth = self.headers.get("Authorization") or ""
            if not tok and auth.lower().startswith("bearer "):
                tok = auth[7:]
            self.reply(tok)

        def log_message(self, fmt, *a):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    print("PORT %d" % srv.server_address[1], flush=True)
    threading.Timer(args.max_seconds, srv.shutdown).start()
    srv.serve_forever()
    sys.exit(0)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""contrib/oauth2_google.py - prints an OAuth2 access token for IMAP on
Google Workspace, for mailferry's --src-oauth-token-cmd: a service account
with domain-wide delegation acts as the account's user (the JWT bearer
grant, RFC 7523), scope https://mail.google.com/.

    GOOGLE_SERVICE_ACCOUNT_FILE=/etc/mailferry/sa.json \\
        mailferry migrate imaps://alice%40example.com@imap.gmail.com ... \\
        --src-oauth-token-cmd contrib/oauth2_google.py

Environment:
  GOOGLE_SERVICE_ACCOUNT_FILE  the service account's JSON key (mode 600)
  MAILFERRY_OAUTH_USER         set by mailferry: the user to act as (the
                               JWT's "sub"); GOOGLE_SUBJECT overrides it
The service account's client id must be allowed the scope
https://mail.google.com/ in the Admin console (Security > API controls >
Domain-wide delegation), and IMAP must be on for the users.

Untested against Google here: the test bed has no Workspace domain.
Python standard library plus the openssl command (for the RS256 signature).
"""
import base64
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

SCOPE = "https://mail.google.com/"


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def sign_rs256(data, pem):
    # the key goes to openssl through a private temporary file, removed at once
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "key.pem")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(pem)
        p = subprocess.run(["openssl", "dgst", "-sha256", "-sign", path], input=data,
                           stdout=subprocess.PIPE, check=False)
    if p.returncode:
        sys.exit("oauth2_google: openssl could not sign with the service account key")
    return p.stdout


def main():
    keyfile = os.environ.get("GOOGLE_SERVICE_ACCOUNT_FILE")
    sub = os.environ.get("GOOGLE_SUBJECT") or os.environ.get("MAILFERRY_OAUTH_USER")
    if not keyfile or not sub:
        sys.exit("oauth2_google: set GOOGLE_SERVICE_ACCOUNT_FILE (and run from mailferry, "
                 "or set GOOGLE_SUBJECT)")
    with open(keyfile) as f:
        sa = json.load(f)
    token_uri = sa.get("token_uri") or "https://oauth2.googleapis.com/token"
    now = int(time.time())
    head = b64url(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
    claims = b64url(json.dumps({"iss": sa["client_email"], "sub": sub, "scope": SCOPE,
                                "aud": token_uri, "iat": now, "exp": now + 3600}).encode())
    signing_input = ("%s.%s" % (head, claims)).encode()
    jwt = "%s.%s" % (signing_input.decode(), b64url(sign_rs256(signing_input, sa["private_key"])))
    body = urllib.parse.urlencode({"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                                   "assertion": jwt}).encode()
    try:
        with urllib.request.urlopen(token_uri, data=body, timeout=20) as r:
            reply = json.load(r)
    except urllib.error.HTTPError as e:
        sys.exit("oauth2_google: token endpoint said %s: %s" % (e.code, e.read(500).decode("utf-8", "replace")))
    except (OSError, ValueError) as e:
        sys.exit("oauth2_google: %s" % e)
    if not reply.get("access_token"):
        sys.exit("oauth2_google: no access_token in the reply")
    print(reply["access_token"])


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""contrib/oauth2_m365.py - prints an OAuth2 access token for IMAP on
Microsoft 365 (Exchange Online), by the client credentials grant, for
mailferry's --src-oauth-token-cmd / --dst-oauth-token-cmd.

    M365_TENANT=contoso.onmicrosoft.com M365_CLIENT_ID=... \\
    M365_CLIENT_SECRET_FILE=/etc/mailferry/m365.secret \\
        mailferry migrate imaps://alice%40contoso.com@outlook.office365.com ... \\
        --src-oauth-token-cmd contrib/oauth2_m365.py

Environment:
  M365_TENANT               tenant id or domain
  M365_CLIENT_ID            the app registration's application (client) id
  M365_CLIENT_SECRET_FILE   a file holding its client secret (mode 600)
  M365_TOKEN_CACHE          optional: a file (mode 600) to keep the token in
                            until 5 minutes before it expires, so the many
                            accounts of a `mailferry run` share one request
The app needs the application permission IMAP.AccessAsApp (Office 365
Exchange Online) with admin consent, and an Exchange service principal with
FullAccess on each mailbox (README: "OAuth2"). One app token serves every
mailbox; the IMAP user (the URL's) names the mailbox.

Untested against Microsoft here: the test bed has no Microsoft 365 tenant.
Only the Python standard library is used.
"""
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

SCOPE = "https://outlook.office365.com/.default"


def env(name):
    v = os.environ.get(name)
    if not v:
        sys.exit("oauth2_m365: %s is not set" % name)
    return v


def cached(path):
    try:
        with open(path) as f:
            c = json.load(f)
        if c.get("expires", 0) > time.time() + 300 and c.get("access_token"):
            return c["access_token"]
    except (OSError, ValueError):
        pass
    return None


def main():
    cache = os.environ.get("M365_TOKEN_CACHE")
    if cache:
        tok = cached(cache)
        if tok:
            print(tok)
            return
    tenant = env("M365_TENANT")
    with open(env("M365_CLIENT_SECRET_FILE")) as f:
        secret = f.read().strip()
    body = urllib.parse.urlencode({
        "client_id": env("M365_CLIENT_ID"),
        "client_secret": secret,
        "scope": SCOPE,
        "grant_type": "client_credentials",
    }).encode()
    url = "https://login.microsoftonline.com/%s/oauth2/v2.0/token" % urllib.parse.quote(tenant)
    try:
        with urllib.request.urlopen(url, data=body, timeout=20) as r:
            reply = json.load(r)
    except urllib.error.HTTPError as e:
        # the error JSON names the problem (AADSTS...) and holds no secret
        sys.exit("oauth2_m365: token endpoint said %s: %s" % (e.code, e.read(500).decode("utf-8", "replace")))
    except (OSError, ValueError) as e:
        sys.exit("oauth2_m365: %s" % e)
    tok = reply.get("access_token")
    if not tok:
        sys.exit("oauth2_m365: no access_token in the reply")
    if cache:
        fd = os.open(cache + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"access_token": tok, "expires": time.time() + int(reply.get("expires_in", 3599))}, f)
        os.rename(cache + ".tmp", cache)
    print(tok)


if __name__ == "__main__":
    main()

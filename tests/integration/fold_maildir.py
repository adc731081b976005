#!/usr/bin/env python3
"""fold_maildir.py SRC DST [--inbox-only] [--courier]

Copies the Dovecot Maildir++ tree SRC to DST (which must not exist) with
every message's line ends rewritten the way Courier-IMAP rewrites them, so
that bench/compare can judge a trip through Courier: file names (flags),
mtimes (INTERNALDATE) and dovecot-keywords stay as they are.

Courier 5.0 rewrites line ends on APPEND, and not always the same way
(checked by hand against scripts/courier.sh): a message APPENDed by
Python's imaplib gets each lone CR turned into a line end ("x\ry" ->
"x\r\ny", "x\r\r\ny" -> two line ends), while the same message copied
by mailferry has its lone CRs dropped ("x\ry" -> "xy", "x\r\r\ny" -> one
line end); both add a final line end when there is none. The fold that
judges either fairly: every CR is dropped, and a final LF is added if
missing. It leaves every other byte, and every LF, to compare.

--courier: SRC is Courier's Maildir: its keywords (courierimapkeywords/)
become keyword letters and a dovecot-keywords file in DST, as bench/compare
reads them. Courier keeps them in courierimapkeywords/:list (the names, a
blank line, then "BASENAME:INDEX INDEX...") and in newer per-message files
".N.BASENAME" (one name a line; the highest N wins), BASENAME being the
file name before ":2,". Courier 5 names folder directories in UTF-8
(".Reçus"), Dovecot in modified UTF-7 (".Re&AOc-us", RFC 3501 §5.1.3):
DST uses the latter.

--inbox-only: only INBOX (the root's cur/ and new/), for the runs that
copy INBOX alone.
"""
import base64
import os
import re
import sys


def fold(data):
    data = data.replace(b"\r", b"")
    if data and not data.endswith(b"\n"):
        data += b"\n"
    return data


def mutf7(name):
    """A folder name in modified UTF-7 (RFC 3501 §5.1.3), as Dovecot names
    its directories; ASCII names are unchanged."""
    out, run = [], []

    def flush():
        if run:
            b = "".join(run).encode("utf-16-be")
            out.append("&" + base64.b64encode(b).decode().rstrip("=").replace("/", ",") + "-")
            run.clear()
    for ch in name:
        if 0x20 <= ord(ch) <= 0x7e:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            run.append(ch)
    flush()
    return "".join(out)


def courier_keywords(src):
    """{basename: [keyword, ...]} from SRC/courierimapkeywords."""
    d = os.path.join(src, "courierimapkeywords")
    kw = {}
    if not os.path.isdir(d):
        return kw
    p = os.path.join(d, ":list")
    if os.path.isfile(p):
        with open(p, "rb") as f:
            names, _, rest = f.read().decode().partition("\n\n")
        names = names.split("\n")
        for line in rest.split("\n"):
            base, sep, idx = line.rpartition(":")
            if sep:
                kw[base] = [names[int(i)] for i in idx.split()]
    newest = {}
    for fn in os.listdir(d):
        m = re.match(r"^\.(\d+)\.(.+)$", fn)
        if m and int(m.group(1)) >= newest.get(m.group(2), (-1, ""))[0]:
            newest[m.group(2)] = (int(m.group(1)), fn)
    # a file named by the message itself (no ".N." before it) is Courier's
    # latest word on it (seen after a UID STORE FLAGS that replaced keywords
    # set by an earlier session's +FLAGS: the ".N." file still held the old
    # set); it wins over both
    for fn in os.listdir(d):
        if not fn.startswith(".") and not fn.startswith(":"):
            newest[fn] = (float("inf"), fn)
    for base, (_, fn) in newest.items():
        with open(os.path.join(d, fn), "rb") as f:
            kw[base] = [k for k in f.read().decode().split("\n") if k]
    return kw


def copy_folder(src, dst, courier=False):
    os.makedirs(dst)
    kw = courier_keywords(src) if courier else None
    letters = {}
    for name in ("dovecot-keywords",):
        p = os.path.join(src, name)
        if os.path.isfile(p):
            with open(p, "rb") as f, open(os.path.join(dst, name), "wb") as g:
                g.write(f.read())
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(dst, sub))
        d = os.path.join(src, sub)
        if sub == "tmp" or not os.path.isdir(d):
            continue
        for fn in os.listdir(d):
            p = os.path.join(d, fn)
            st = os.stat(p)
            with open(p, "rb") as f:
                data = fold(f.read())
            if kw is not None:
                base, sep, flags = fn.partition(":2,")
                for k in kw.get(base, []):
                    if k not in letters:
                        letters[k] = chr(ord("a") + len(letters))
                    flags += letters[k]
                fn = base + ":2," + "".join(sorted(flags)) if sep or kw.get(base) else fn
            q = os.path.join(dst, sub, fn)
            with open(q, "wb") as g:
                g.write(data)
            os.utime(q, ns=(st.st_atime_ns, st.st_mtime_ns))
    if letters:
        with open(os.path.join(dst, "dovecot-keywords"), "w") as g:
            for k, c in letters.items():
                g.write("%d %s\n" % (ord(c) - ord("a"), k))


def main():
    args = sys.argv[1:]
    inbox_only = "--inbox-only" in args
    courier = "--courier" in args
    args = [a for a in args if a not in ("--inbox-only", "--courier")]
    if len(args) != 2:
        sys.exit("usage: fold_maildir.py SRC DST [--inbox-only] [--courier]")
    src, dst = args
    copy_folder(src, dst, courier)
    if not inbox_only:
        for fn in os.listdir(src):
            p = os.path.join(src, fn)
            if fn.startswith(".") and fn not in (".", "..") and os.path.isdir(os.path.join(p, "cur")):
                name = mutf7(os.fsdecode(fn)) if courier else fn
                copy_folder(p, os.path.join(dst, name), courier)


if __name__ == "__main__":
    main()

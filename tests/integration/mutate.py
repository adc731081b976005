#!/usr/bin/env python3
"""mutate.py PORT USER PASSWORD SEED — changes a source account the way a
user does between two syncs: new messages, flags set and cleared, keywords
added and removed, messages expunged, in several mailboxes. Deterministic
for a seed; prints a one-line summary."""
import imaplib, random, sys, time

port, user, pw, seed = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
flags_only = '--flags-only' in sys.argv           # no new mail, no expunges
percent = float(sys.argv[sys.argv.index('--percent') + 1]) if '--percent' in sys.argv else 10.0
rnd = random.Random(seed)
m = imaplib.IMAP4('127.0.0.1', port)
m.login(user, pw)
boxes = []
for line in m.list()[1]:
    flags, name = line.decode().split(')', 1)[0], line.decode().rsplit(' ', 1)[1].strip('"')
    if '\\Noselect' not in flags:
        boxes.append(name)
stats = dict(new=0, flags=0, expunged=0)
for box in sorted(boxes):
    typ, data = m.select('"%s"' % box)
    uids = m.uid('SEARCH', 'ALL')[1][0].split()
    for u in rnd.sample(uids, min(len(uids), max(1, int(len(uids) * percent / 100)))):
        op = rnd.choice(['+FLAGS', '-FLAGS'])
        fl = rnd.choice([r'(\Seen)', r'(\Flagged \Answered)', r'($Forwarded)', r'(Project-X $Junk)', r'(\Draft)'])
        m.uid('STORE', u, op, fl)
        stats['flags'] += 1
    if flags_only:
        continue
    for u in rnd.sample(uids, min(len(uids), len(uids) // 20)):
        m.uid('STORE', u, '+FLAGS', r'(\Deleted)')
        stats['expunged'] += 1
    m.expunge()
    for i in range(rnd.randint(1, 4)):
        body = ('From: new@example.org\r\nTo: %s@example.org\r\nSubject: new %d in %s\r\n'
                'Message-ID: <new-%d-%d-%s@example.org>\r\n\r\nhello\r\n' % (user, i, box, seed, i, box)).encode()
        m.append('"%s"' % box, rnd.choice(['()', r'(\Seen)', r'(\Flagged $Label1)']),
                 imaplib.Time2Internaldate(time.time() - rnd.randint(0, 10**8)), body)
        stats['new'] += 1
m.logout()
print('mutate: %(new)d new, %(flags)d flag changes, %(expunged)d expunged' % stats)

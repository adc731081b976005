#!/usr/bin/env bash
# The status page in a real browser: headless Chromium (Debian's) loads
# http://127.0.0.1:PORT/ of a `mailferry run --status` copying twelve
# accounts (behind a delay proxy, so the run lasts) plus one whose login is
# refused. Early in the run and again at its end the DOM is dumped after
# the page's own script has polled /api/status: the table fills with
# every account, the copied count rises between the two, and the refused
# account shows its error. During the run the page polls (#poll: headless
# Chromium's virtual time waits for open requests, and an event stream is
# one); at the end it follows /api/events (server-sent events), which it
# closes once the run is over. With --status-show-subjects, the first
# account's mailbox holds only hostile headers (markup, ESC sequences, controls): its row shows
# the subject as text, and no element or escape byte comes of it. A
# screenshot of the page (and one at a phone's width) is saved under
# build/test-logs/ for a person to look at. The run is held to 1 MB/s, so
# that the first account is still copying when Chromium (slow to start on
# a loaded machine) looks.
# `report show REPORT --html` writes the same page, static, from a re-run's
# report: Chromium shows every account from the file, with no server.
. "$(dirname "$0")/lib.sh"

CHROME=$(command -v chromium || command -v chromium-browser || true)
[ -n "$CHROME" ] || { echo "ok - status-browser # skip chromium not installed (make deps)"; exit 0; }
OUT=$ROOT/build/test-logs
mkdir -p "$OUT"
N=12
users=""
for i in $(seq 1 $N); do users="$users s$i d$i"; done
dv_start A --users "$users" || { not_ok dovecot "start failed"; exit 1; }
for i in $(seq 2 $N); do
	corpus A "s$i" tiny "$((80 + i))" || { not_ok corpus "generation failed"; exit 1; }
done
hostile_mail A s1 300 || { not_ok hostile-mail "generation failed"; exit 1; }
delay_proxy "$A_IMAP_PORT" --delay 15 || { not_ok proxy "start failed"; exit 1; }
PW=$A_DIR/pw
H=127.0.0.1
P=$PROXY_PORT
ACC=$T_TMP/accounts.txt
{
	for i in $(seq 1 $N); do
		echo "imap://s$i@$H:$P imap://d$i@$H:$P --src-password-file $PW/s$i --dst-password-file $PW/d$i"
		[ "$i" = 3 ] && echo "imap://s1@$H:$P imap://nobody@$H:$P --src-password-file $PW/s1 --dst-password-file $PW/d1"
	done
} >"$ACC"
chmod 600 "$ACC"

t_spawn "$MF_REL" run "$ACC" --jobs 2 --state "$T_TMP/state" --ca-file "$A_CA_FILE" --json \
	--no-progress --status 127.0.0.1:0 --status-show-subjects --status-linger 120 --max-bytes-per-second 1M \
	>"$T_TMP/run.out" 2>"$T_TMP/run.err"
RUN_PID=$T_LAST_PID
SP=""
for i in $(seq 1 200); do
	SP=$(sed -n 's|.*status: http://127.0.0.1:\([0-9]*\)/.*|\1|p' "$T_TMP/run.err" | head -n 1)
	[ -n "$SP" ] && break
	sleep 0.05
done
[ -n "$SP" ] && ok "status-listens ($SP)" || { not_ok status-listens "$(tail -n 2 "$T_TMP/run.err")"; exit 1; }

# a private profile; --no-sandbox: the tests run as root
dom() { # FILE [URL suffix]
	timeout 90 "$CHROME" --headless=new --no-sandbox --disable-gpu --no-first-run \
		--user-data-dir="$T_TMP/chrome" --virtual-time-budget=3000 \
		--dump-dom "http://127.0.0.1:$SP/${2:-}" >"$1" 2>"$1.err"
}
num() { # FILE ID: the number in the element with that id
	python3 - "$1" "$2" <<'PY'
import re, sys
s = open(sys.argv[1]).read()
m = re.search(r'id="%s"[^>]*>([^<]*)<' % re.escape(sys.argv[2]), s)
print(re.sub(r"[^0-9]", "", m.group(1)) if m and re.search(r"[0-9]", m.group(1)) else "")
PY
}
rows() { grep -o '<tr data-state="[a-z]*"' "$1" | wc -l; }

dom "$T_TMP/dom1.html" "#poll"
n1=$(num "$T_TMP/dom1.html" c-copied)
r1=$(rows "$T_TMP/dom1.html")
[ "$r1" -gt 0 ] && ok "page-table-fills-live ($r1 rows, $n1 copied)" ||
	not_ok page-table-fills-live "no rows: $(tail -n 2 "$T_TMP/dom1.html.err")"
grep -q 'data-feed="polling"' "$T_TMP/dom1.html" && ok page-polls-when-asked || not_ok page-polls-when-asked "no polling"

# the hostile subjects, while the first account copies
for i in $(seq 1 10); do
	grep -q 'class="subj">MF-SUBJ-' "$T_TMP/dom1.html" && break
	dom "$T_TMP/dom1.html" "#poll"
done
if grep -q 'class="subj">MF-SUBJ-[0-9]* &lt;img src=x onerror=alert(1)&gt; \[31mred \[0m 2J café' "$T_TMP/dom1.html"; then
	ok page-subject-as-text
else
	not_ok page-subject-as-text "$(grep -o 'class="subj">[^<]*' "$T_TMP/dom1.html" | head -n 2 | tr '\n' ' ')"
fi
grep -q 'Malløry ]0;pwned &lt;mallory@example.org&gt;' "$T_TMP/dom1.html" && ok page-sender-as-text ||
	not_ok page-sender-as-text "$(grep -o 'class="subj">[^<]*' "$T_TMP/dom1.html" | head -n 1)"
# no element from a header, no escape or control byte in the page
if grep -q '<img' "$T_TMP/dom1.html" || LC_ALL=C grep -q $'[\x01-\x08\x1b\x7f]' "$T_TMP/dom1.html"; then
	not_ok page-subject-inert "an element or control byte from a header"
else
	ok page-subject-inert
fi

# (JSON parsed only once it says finished: a python3 every 0.2 s for the
# whole run costs more CPU than the run)
fin=""
for i in $(seq 1 900); do
	st=$(curl -s "http://127.0.0.1:$SP/api/status")
	case $st in *'"finished":true'*) fin=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["finished"])' <<<"$st" 2>/dev/null) ;; esac
	[ "$fin" = True ] && break
	kill -0 "$RUN_PID" 2>/dev/null || break
	sleep 0.2
done
[ "$fin" = True ] && ok run-finished || not_ok run-finished "no finished status"
dom "$T_TMP/dom2.html"
n2=$(num "$T_TMP/dom2.html" c-copied)
r2=$(rows "$T_TMP/dom2.html")
[ "$r2" = $((N + 1)) ] && ok "page-table-every-account ($r2)" || not_ok page-table-every-account "$r2 rows, wanted $((N + 1))"
grep -q 'data-feed="events"' "$T_TMP/dom2.html" && grep -q 'id="conn">finished<' "$T_TMP/dom2.html" &&
	ok page-follows-events || not_ok page-follows-events "$(grep -o 'data-feed="[a-z]*"' "$T_TMP/dom2.html")"
[ -n "$n2" ] && [ "${n1:-0}" -lt "$n2" ] && ok "page-counts-rise ($n1 -> $n2)" || not_ok page-counts-rise "copied $n1 then $n2"
grep -q 'data-state="failed"' "$T_TMP/dom2.html" && grep -q 'nobody@127.0.0.1.*\(uthentication\|login\|LOGIN\)' "$T_TMP/dom2.html" &&
	ok page-shows-failed-account-error || not_ok page-shows-failed-account-error "$(grep -o 'nobody@[^<]*' "$T_TMP/dom2.html" | head -n 2 | tr '\n' ' ')"
grep -qE '<(script|link|img)[^>]+(src|href)="https?:' "$T_TMP/dom2.html" && not_ok page-self-contained "an external asset" ||
	ok page-self-contained

rm -f "$OUT/status-page.png" "$OUT/status-page-phone.png"
timeout 90 "$CHROME" --headless=new --no-sandbox --disable-gpu --no-first-run --user-data-dir="$T_TMP/chrome" \
	--virtual-time-budget=3000 --window-size=1280,1400 --screenshot="$OUT/status-page.png" \
	"http://127.0.0.1:$SP/" >/dev/null 2>&1
timeout 90 "$CHROME" --headless=new --no-sandbox --disable-gpu --no-first-run --user-data-dir="$T_TMP/chrome" \
	--virtual-time-budget=3000 --window-size=390,1600 --screenshot="$OUT/status-page-phone.png" \
	"http://127.0.0.1:$SP/" >/dev/null 2>&1
[ -s "$OUT/status-page.png" ] && [ -s "$OUT/status-page-phone.png" ] &&
	ok "page-screenshot (build/test-logs/status-page.png, status-page-phone.png)" || not_ok page-screenshot "no screenshot"
kill "$RUN_PID" 2>/dev/null

# the same page from a report, static
"$MF_REL" run "$ACC" --jobs 4 --state "$T_TMP/state" --ca-file "$A_CA_FILE" --no-progress \
	--report "$T_TMP/report.json" >/dev/null 2>&1
expect_exit report-show-html-exit-4 4 "$MF" report show "$T_TMP/report.json" --html "$OUT/status-report.html"
timeout 90 "$CHROME" --headless=new --no-sandbox --disable-gpu --no-first-run --user-data-dir="$T_TMP/chrome" \
	--virtual-time-budget=2000 --dump-dom "file://$OUT/status-report.html" >"$T_TMP/dom3.html" 2>/dev/null
r3=$(rows "$T_TMP/dom3.html")
[ "$r3" = $((N + 1)) ] && grep -q 'nobody@127.0.0.1' "$T_TMP/dom3.html" && grep -q '>report<' "$T_TMP/dom3.html" &&
	ok "report-show-html-page ($r3 rows, build/test-logs/status-report.html)" ||
	not_ok report-show-html-page "$r3 rows"
grep -q 'api/status' "$T_TMP/dom3.html" && grep -q 'id="mf-data"' "$T_TMP/dom3.html" && ok report-html-data-built-in ||
	not_ok report-html-data-built-in "no built-in data"

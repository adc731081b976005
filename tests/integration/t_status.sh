#!/usr/bin/env bash
# mailferry run --status: the status server on the run's own loop, against
# a private Dovecot (behind a delay proxy, so the run lasts). The accounts
# run on two worker loops (--threads 2; the server reads their snapshots).
# While eight accounts copy, the server is probed with what a hostile or careless
# client sends: a path with "..", a 100 KiB header, POST, a client that
# sends half a request and waits, 1,000 connections at once. Each gets
# its refusal (404, 431, 405, closed, 503), the server still answers
# afterwards, and the copy is exact. /metrics passes `promtool check
# metrics` and its final mailferry_messages_copied_total equals the run's
# summary; /api/status names the failing account's error and no password.
# migrate --status with --status-token-file: 401 without the bearer token
# or with a wrong one, 200 with it; a non-loopback address without a token
# file, and --status on an accounts line, are refused (exit 2).
# /api/events streams the same JSON as server-sent events.
# --status-show-subjects (migrate of a mailbox whose every Subject and From
# is hostile: markup, terminal escapes, controls, bad UTF-8, RFC 2047):
# /api/status shows them decoded, without a control character, cut, with
# '<' escaped, and the copy is exact; the same copy without the option
# serves nothing of them (neither /api/status nor the page). The same
# subjects through `run --threads 2` (copied from the worker's snapshots).
# MF_TEST_BIN=build/tsan/mailferry runs it all under ThreadSanitizer.
. "$(dirname "$0")/lib.sh"

PROBE="python3 $ROOT/tests/integration/http_probe.py"
N=8
users=""
for i in $(seq 1 $N); do users="$users s$i d$i"; done
users="$users hs hd1 hd2 hd3"
dv_start A --users "$users" || { not_ok dovecot "start failed"; exit 1; }
hostile_mail A hs 200 || { not_ok hostile-mail "generation failed"; exit 1; }
for i in $(seq 1 $N); do
	corpus A "s$i" tiny "$((60 + i))" || { not_ok corpus "generation failed"; exit 1; }
done
delay_proxy "$A_IMAP_PORT" --delay 10 || { not_ok proxy "start failed"; exit 1; }
PW=$A_DIR/pw
H=127.0.0.1
P=$PROXY_PORT
MAILDIR() { echo "$A_DIR/mail/$1/Maildir"; }
ACC=$T_TMP/accounts.txt
{
	for i in $(seq 1 $N); do
		echo "imap://s$i@$H:$P imap://d$i@$H:$P --src-password-file $PW/s$i --dst-password-file $PW/d$i"
	done
	# the failing account: a destination user the server does not know
	echo "imap://s2@$H:$P imap://nobody@$H:$P --src-password-file $PW/s2 --dst-password-file $PW/d1"
} >"$ACC"
chmod 600 "$ACC"

# the port: from the "status: http://127.0.0.1:PORT/" line
status_port() { # ERRFILE PID
	local i
	for i in $(seq 1 200); do
		SP=$(sed -n 's|.*status: http://127.0.0.1:\([0-9]*\)/.*|\1|p' "$1" | head -n 1)
		[ -n "$SP" ] && return 0
		kill -0 "$2" 2>/dev/null || return 1
		sleep 0.05
	done
	return 1
}

t_spawn "$MF" run "$ACC" --jobs 3 --threads 2 --state "$T_TMP/state" --ca-file "$A_CA_FILE" --json \
	--no-progress --status 127.0.0.1:0 --status-linger 45 >"$T_TMP/run.out" 2>"$T_TMP/run.err"
RUN_PID=$T_LAST_PID
status_port "$T_TMP/run.err" "$RUN_PID" || { not_ok status-listens "$(tail -n 2 "$T_TMP/run.err")"; exit 1; }
ok "status-listens (port $SP)"
# half a request, then nothing: closed by the server's timer (10 s); in
# the background, while the rest goes on
$PROBE slow "$SP" >"$T_TMP/slow.out" 2>&1 &
SLOW_PID=$!

$PROBE get "$SP" /metrics >"$T_TMP/m1" 2>&1
if head -n 1 "$T_TMP/m1" | grep -qx 200 && tail -n +2 "$T_TMP/m1" | promtool check metrics >"$T_TMP/promtool.out" 2>&1; then
	ok metrics-promtool-check
else
	not_ok metrics-promtool-check "$(head -n 1 "$T_TMP/m1") $(tail -n 3 "$T_TMP/promtool.out" | tr '\n' ' ')"
fi
for m in mailferry_messages_copied_total mailferry_copied_bytes_total 'mailferry_accounts{state="running"}' \
	'mailferry_connections_open{host=' mailferry_throttle_events_total mailferry_retries_total \
	mailferry_state_commit_duration_seconds_bucket mailferry_resident_memory_peak_bytes; do
	grep -qF "$m" "$T_TMP/m1" || { not_ok "metrics-has-$m" "missing"; continue; }
done
ok metrics-families

probe_code() { # NAME WANT CODE
	[ "$3" = "$2" ] && ok "$1" || not_ok "$1" "got $3, wanted $2"
}
probe_code http-dotdot-404 404 "$(printf 'GET /../../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n' | $PROBE raw "$SP")"
probe_code http-dotdot-escaped-404 404 "$(printf 'GET /%%2e%%2e/%%2e%%2e/etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n' | $PROBE raw "$SP")"
probe_code http-metrics-dotdot-404 404 "$(printf 'GET /api/../metrics HTTP/1.1\r\nHost: x\r\n\r\n' | $PROBE raw "$SP")"
probe_code http-post-405 405 "$(printf 'POST /api/status HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi' | $PROBE raw "$SP")"
probe_code http-garbage-400 400 "$(printf 'hello\r\n\r\n' | $PROBE raw "$SP")"
probe_code http-head-200 200 "$(printf 'HEAD / HTTP/1.1\r\nHost: x\r\n\r\n' | $PROBE raw "$SP")"
r=$($PROBE bighead "$SP")
[ "$r" = 431 ] || [ "$r" = closed ] && ok "http-huge-header-refused ($r)" || not_ok http-huge-header-refused "got $r"

# server-sent events: the same JSON, one event a second
ev=$($PROBE events "$SP" 3)
case $ev in
"events=3 json=3 type=text/event-stream "*) ok "api-events-stream ($ev)" ;;
*) not_ok api-events-stream "$ev" ;;
esac
grep -q '"subject"' "$T_TMP/m1" && not_ok metrics-no-subjects "a subject in /metrics" || ok metrics-no-subjects

# 1,000 connections at once while the accounts copy: at most 64 held, the
# rest answered 503; then the server answers as before
f=$($PROBE flood "$SP" 1000)
held=${f##*open=}
[ "$held" -le 64 ] && ok "http-flood-1000 ($f)" || not_ok http-flood-1000 "$f"
probe_code http-after-flood-200 200 "$($PROBE get "$SP" /api/status | head -n 1)"
wait "$SLOW_PID"
r=$(cat "$T_TMP/slow.out")
[ "${r#* }" = closed ] && ok "http-slow-client-closed (after ${r% *} s)" || not_ok http-slow-client-closed "$r"

# the run ends; the server lingers with the final numbers
fin=""
for i in $(seq 1 600); do
	$PROBE get "$SP" /api/status >"$T_TMP/s.json" 2>/dev/null
	fin=$(tail -n +2 "$T_TMP/s.json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["finished"])' 2>/dev/null)
	[ "$fin" = True ] && break
	kill -0 "$RUN_PID" 2>/dev/null || break
	sleep 0.2
done
[ "$fin" = True ] && ok status-finished || not_ok status-finished "no finished status (run $(kill -0 "$RUN_PID" 2>/dev/null && echo alive || echo gone))"
$PROBE get "$SP" /metrics >"$T_TMP/m2" 2>&1
tail -n +2 "$T_TMP/s.json" | python3 -c '
import json, sys
d = json.load(sys.stdin)
rows = d["rows"]
assert len(rows) == 9, len(rows)
bad = [r for r in rows if r["state"] == "failed"]
assert len(bad) == 1 and bad[0]["line"] == 9 and "nobody@" in bad[0]["error"], bad
assert d["accounts"]["done"] == 8 and d["accounts"]["failed"] == 1, d["accounts"]
assert d["hosts"] and d["hosts"][0]["host"].endswith(":'"$P"'"), d["hosts"]
' 2>"$T_TMP/json.err" && ok api-status-rows-and-error || not_ok api-status-rows-and-error "$(tail -n 1 "$T_TMP/json.err")"
grep -q 'pw-\|secret' "$T_TMP/s.json" "$T_TMP/m2" && not_ok status-no-secrets "a password was served" || ok status-no-secrets

# the copy is over (finished): exact, before the token case below copies
# s1 into d1 again
for i in $(seq 1 $N); do
	"$BENCH_BIN/compare" "$(MAILDIR "s$i")" "$(MAILDIR "d$i")" >/dev/null 2>&1 || { not_ok "exact-under-load-s$i" "differs"; continue; }
done
ok exact-under-load
# The run lingers (--status-linger 45) for the probes above on a slow
# machine; it is waited for (its exit status) after the cases below, which
# run meanwhile, so its linger costs no time of its own.
run_end_checks() {
	wait "$RUN_PID"
	rc=$?
	[ "$rc" = 4 ] && ok "run-exit-4 (the refused login)" || not_ok run-exit-4 "exit $rc: $(tail -n 2 "$T_TMP/run.err")"
	want=$(grep '"event":"run_summary"' "$T_TMP/run.out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["messages_copied"])')
	got=$(sed -n 's/^mailferry_messages_copied_total //p' "$T_TMP/m2")
	[ -n "$want" ] && [ "$want" = "$got" ] && [ "$want" -gt 0 ] && ok "metrics-match-summary ($got)" ||
		not_ok metrics-match-summary "metrics $got, summary $want"
	nth=$(grep '"event":"run_summary"' "$T_TMP/run.out" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["threads"], sum(1 for n in d["accounts_per_thread"] if n))')
	[ "$nth" = "2 2" ] && ok "status-with-threads (2 loops ran accounts)" || not_ok status-with-threads "threads, loops used: $nth"
	hist=$(sed -n 's/^mailferry_state_commit_duration_seconds_count //p' "$T_TMP/m2")
	[ "${hist:-0}" -gt 0 ] && ok "metrics-commit-histogram-threads ($hist commits)" ||
		not_ok metrics-commit-histogram-threads "count ${hist:-none}"
}

# --status-show-subjects: the hostile mailbox, slowed so that it is seen
# while it copies; then the same copy without the option
subjects_run() { # DST OUT [options]: starts the copy; its pid in T_LAST_PID
	local dst=$1 out=$2
	shift 2
	t_spawn "$MF" migrate "imap://hs@$H:$A_IMAP_PORT" "imap://$dst@$H:$A_IMAP_PORT" --src-password-file "$PW/hs" \
		--dst-password-file "$PW/$dst" --ca-file "$A_CA_FILE" --state "$T_TMP/state-$dst" --max-bytes-per-second 1M \
		--status 127.0.0.1:0 --status-linger 5 "$@" >"$T_TMP/$out.out" 2>"$T_TMP/$out.err"
}
subjects_poll() { # PID OUT: follows /api/status until the run is over (run in the background)
	local pid=$1 out=$2
	status_port "$T_TMP/$out.err" "$pid" || { not_ok "$out-listens" "$(tail -n 2 "$T_TMP/$out.err")"; return 1; }
	$PROBE poll "$SP" "$T_TMP/$out.jsonl" 120
	$PROBE get "$SP" / >"$T_TMP/$out.page" 2>&1
}
subjects_done() { # POLLER PID: the run's exit status (1 if its status server was not found)
	wait "$1" || return 1
	wait "$2"
}
subjects_check() { # OUT: the subjects /api/status served are the hostile ones, made clean
	python3 - "$T_TMP/$1.jsonl" <<'PY'
import json, sys
raw = open(sys.argv[1], "rb").read()
seen = []
for line in raw.splitlines():
    for r in json.loads(line)["rows"]:
        if "subject" in r:
            seen.append((r["subject"], r["from"]))
assert seen, "no subject was served"
for s, f in seen:
    for t in (s, f):
        assert len(t) <= 123, ("too long", len(t))
        assert not any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in t), ("control", t)
hostile = [s for s, f in seen if s.startswith("MF-SUBJ-")]
assert hostile, ("not the message's subject", seen[:3])
s = hostile[0]
assert "<img src=x onerror=alert(1)> [31mred [0m" in s, s
assert "caf\u00e9" in s and "caf\ufffd" in s and s.endswith("..."), s
f = seen[-1][1]
assert "Mall\u00f8ry" in f and "<mallory@example.org>" in f, f
assert b"<img" not in raw and b"\x1b" not in raw, "raw markup or ESC in the JSON"
print("%d snapshots with a subject" % len(seen), file=sys.stderr)
PY
}
# The three copies (each slowed by its own --max-bytes-per-second) run side
# by side, each followed by its own poller; then each is checked.
subjects_run hd1 subj --status-show-subjects
subjects_poll "$T_LAST_PID" subj &
S1=("$!" "$T_LAST_PID")
# the same through run on a worker loop: the server shows the worker's copy
echo "imap://hs@$H:$A_IMAP_PORT imap://hd3@$H:$A_IMAP_PORT --src-password-file $PW/hs --dst-password-file $PW/hd3" >"$T_TMP/hs.txt"
t_spawn "$MF" run "$T_TMP/hs.txt" --threads 2 --state "$T_TMP/state-hd3" --ca-file "$A_CA_FILE" --no-progress --json \
	--max-bytes-per-second 1M --status 127.0.0.1:0 --status-linger 5 --status-show-subjects \
	>"$T_TMP/rsubj.out" 2>"$T_TMP/rsubj.err"
subjects_poll "$T_LAST_PID" rsubj &
S2=("$!" "$T_LAST_PID")
subjects_run hd2 nosubj
subjects_poll "$T_LAST_PID" nosubj &
S3=("$!" "$T_LAST_PID")
subjects_done "${S1[@]}"
rc=$?
[ "$rc" = 0 ] && "$BENCH_BIN/compare" "$(MAILDIR hs)" "$(MAILDIR hd1)" >/dev/null 2>&1 &&
	ok "subjects-copy-exact" || not_ok subjects-copy-exact "exit $rc: $(tail -n 2 "$T_TMP/subj.err")"
subjects_check subj 2>"$T_TMP/subj.check" && ok "subjects-shown-clean ($(cat "$T_TMP/subj.check"))" ||
	not_ok subjects-shown-clean "$(tail -n 1 "$T_TMP/subj.check")"
subjects_done "${S2[@]}"
rc=$?
[ "$rc" = 0 ] && "$BENCH_BIN/compare" "$(MAILDIR hs)" "$(MAILDIR hd3)" >/dev/null 2>&1 &&
	ok "subjects-run-threads-copy-exact" || not_ok subjects-run-threads-copy-exact "exit $rc: $(tail -n 2 "$T_TMP/rsubj.err")"
subjects_check rsubj 2>"$T_TMP/rsubj.check" && ok "subjects-run-threads-shown-clean ($(cat "$T_TMP/rsubj.check"))" ||
	not_ok subjects-run-threads-shown-clean "$(tail -n 1 "$T_TMP/rsubj.check")"
subjects_done "${S3[@]}"
rc=$?
python3 - "$T_TMP/nosubj.jsonl" <<'PY' 2>"$T_TMP/nosubj.check" && ok "subjects-not-served-without-option" ||
import json, sys
raw = open(sys.argv[1], "rb").read()
busy = [r for line in raw.splitlines() for r in json.loads(line)["rows"]
        if r["state"] == "running" and r["copied"] > 0]
assert busy, "never seen while copying"
assert b'"subject"' not in raw and b'"from"' not in raw and b"MF-SUBJ" not in raw, "served"
PY
	not_ok subjects-not-served-without-option "$(tail -n 1 "$T_TMP/nosubj.check")"
grep -q '^200' "$T_TMP/nosubj.page" && ! grep -q 'MF-SUBJ\|mallory' "$T_TMP/nosubj.page" &&
	ok subjects-not-in-page || not_ok subjects-not-in-page "$(head -n 1 "$T_TMP/nosubj.page")"

# bearer token: migrate --status with a token file (a re-run: nothing to
# copy); it lingers until killed below, so a loaded machine's slow probes
# still find it
TOK=$T_TMP/token
echo "t0ken-$RANDOM$RANDOM" >"$TOK"
chmod 600 "$TOK"
t_spawn "$MF" migrate "imap://s1@$H:$A_IMAP_PORT" "imap://d1@$H:$A_IMAP_PORT" --src-password-file "$PW/s1" \
	--dst-password-file "$PW/d1" --ca-file "$A_CA_FILE" --state "$T_TMP/mstate" --status 127.0.0.1:0 \
	--status-token-file "$TOK" --status-linger 120 >"$T_TMP/mig.out" 2>"$T_TMP/mig.err"
MIG_PID=$T_LAST_PID
if status_port "$T_TMP/mig.err" "$MIG_PID"; then
	probe_code token-missing-401 401 "$($PROBE get "$SP" /metrics | head -n 1)"
	probe_code token-wrong-401 401 "$($PROBE get "$SP" /metrics wrong-token | head -n 1)"
	probe_code token-page-401 401 "$($PROBE get "$SP" / | head -n 1)"
	probe_code token-right-200 200 "$($PROBE get "$SP" /metrics "$(cat "$TOK")" | head -n 1)"
	$PROBE get "$SP" /api/status "$(cat "$TOK")" | tail -n +2 | grep -q '"mode":"migrate"' &&
		ok migrate-status-json || not_ok migrate-status-json "no migrate status"
	grep -qF "$(cat "$TOK")" "$T_TMP/mig.err" && not_ok token-not-logged "the token was printed" || ok token-not-logged
else
	not_ok migrate-status-listens "$(tail -n 2 "$T_TMP/mig.err")"
fi
kill "$MIG_PID" 2>/dev/null

run_end_checks
expect_exit subjects-option-needs-status 2 "$MF" run "$ACC" --state "$T_TMP/state" --status-show-subjects
expect_exit status-non-loopback-needs-token 2 "$MF" run "$ACC" --state "$T_TMP/state" --status 0.0.0.0:0
grep -q "needs --status-token-file" "$T_TMP/last.err" && ok status-non-loopback-says-why ||
	not_ok status-non-loopback-says-why "$(tail -n 1 "$T_TMP/last.err")"
echo "imap://s1@$H:$P imap://d1@$H:$P --status 127.0.0.1:0" >"$T_TMP/line.txt"
expect_exit status-on-a-line-refused 2 "$MF" run "$T_TMP/line.txt" --state "$T_TMP/state"

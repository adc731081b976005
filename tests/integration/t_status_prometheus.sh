#!/usr/bin/env bash
# A real Prometheus (Debian's) scrapes a `mailferry run --status` every
# second: a private instance on a free port of 127.0.0.1 with its own
# configuration and storage under the test's temporary directory. Eight
# accounts copy through a delay proxy (so the run lasts several scrapes);
# afterwards Prometheus' HTTP API must say that
# mailferry_messages_copied_total rose during the run and that its last
# value equals the messages_copied of the run's final summary, and that
# it saw the run finish (mailferry_finished 1, kept by --status-linger).
. "$(dirname "$0")/lib.sh"

command -v prometheus >/dev/null || { echo "ok - status-prometheus # skip prometheus not installed (make deps)"; exit 0; }
N=8
users=""
for i in $(seq 1 $N); do users="$users s$i d$i"; done
dv_start A --users "$users" || { not_ok dovecot "start failed"; exit 1; }
for i in $(seq 1 $N); do
	corpus A "s$i" tiny "$((20 + i))" || { not_ok corpus "generation failed"; exit 1; }
done
delay_proxy "$A_IMAP_PORT" --delay 40 || { not_ok proxy "start failed"; exit 1; }
PW=$A_DIR/pw
H=127.0.0.1
P=$PROXY_PORT
ACC=$T_TMP/accounts.txt
for i in $(seq 1 $N); do
	echo "imap://s$i@$H:$P imap://d$i@$H:$P --src-password-file $PW/s$i --dst-password-file $PW/d$i"
done >"$ACC"

# Prometheus first, ready and scraping the status port before the run
# starts, so that its first scrapes fall inside the run however fast it is
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
SP=$(free_port)
PP=$(free_port)
mkdir -p "$T_TMP/prom"
cat >"$T_TMP/prom/prometheus.yml" <<EOF2
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: mailferry
    static_configs:
      - targets: ['127.0.0.1:$SP']
EOF2
t_spawn prometheus --config.file="$T_TMP/prom/prometheus.yml" --storage.tsdb.path="$T_TMP/prom/data" \
	--web.listen-address="127.0.0.1:$PP" --log.level=warn >"$T_TMP/prom.log" 2>&1
PROM_PID=$T_LAST_PID
for i in $(seq 1 300); do
	curl -sf "http://127.0.0.1:$PP/-/ready" >/dev/null 2>&1 && break
	sleep 0.1
done
# its first (failed) scrape of the target has happened: the next one is 1 s on
for i in $(seq 1 50); do
	curl -s -G "http://127.0.0.1:$PP/api/v1/query" --data-urlencode 'query=up' | grep -q '"result":\[{' && break
	sleep 0.1
done

t_spawn "$MF_REL" run "$ACC" --jobs 2 --state "$T_TMP/state" --ca-file "$A_CA_FILE" --json \
	--no-progress --status "127.0.0.1:$SP" --status-linger 6 >"$T_TMP/run.out" 2>"$T_TMP/run.err"
RUN_PID=$T_LAST_PID
L=""
for i in $(seq 1 200); do
	L=$(sed -n 's|.*status: http://127.0.0.1:\([0-9]*\)/.*|\1|p' "$T_TMP/run.err" | head -n 1)
	[ -n "$L" ] && break
	sleep 0.05
done
[ "$L" = "$SP" ] && ok "status-listens ($SP)" || { not_ok status-listens "$(tail -n 2 "$T_TMP/run.err")"; exit 1; }

wait "$RUN_PID"
rc=$?
[ "$rc" = 0 ] && ok run-exit-0 || not_ok run-exit-0 "exit $rc: $(tail -n 2 "$T_TMP/run.err")"
want=$(grep '"event":"run_summary"' "$T_TMP/run.out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["messages_copied"])')

q() { # PROMQL: the value of the first result, or ""
	curl -s -G "http://127.0.0.1:$PP/api/v1/query" --data-urlencode "query=$1" |
		python3 -c 'import json,sys
d = json.load(sys.stdin)["data"]["result"]
print(d[0]["value"][1] if d else "")' 2>/dev/null
}
last=$(q 'last_over_time(mailferry_messages_copied_total[10m])')
first=$(q 'min_over_time(mailferry_messages_copied_total[10m])')
fin=$(q 'max_over_time(mailferry_finished[10m])')
n=$(q 'count_over_time(mailferry_messages_copied_total[10m])')
[ "$fin" = 1 ] && ok "prometheus-saw-the-end ($n scrapes)" || not_ok prometheus-saw-the-end "mailferry_finished: '$fin', $n scrapes; $(tail -n 2 "$T_TMP/prom.log")"
[ -n "$first" ] && [ -n "$last" ] && python3 -c "import sys; sys.exit(not float('$first') < float('$last'))" &&
	ok "prometheus-copied-rose ($first -> $last)" || not_ok prometheus-copied-rose "first '$first', last '$last'"
[ -n "$want" ] && [ "$last" = "$want" ] && ok "prometheus-matches-summary ($want)" ||
	not_ok prometheus-matches-summary "prometheus '$last', summary '$want'"
h=$(q 'sum(last_over_time(mailferry_state_commit_duration_seconds_count[10m]))')
[ -n "$h" ] && [ "${h%.*}" -gt 0 ] && ok "prometheus-commit-histogram ($h commits)" || not_ok prometheus-commit-histogram "'$h'"
kill "$PROM_PID" 2>/dev/null

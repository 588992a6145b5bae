#!/usr/bin/env bash
# HTTP benchmark: the latency of every dashboard page and every read-only API
# endpoint of a running studywatch whose catalog holds 1,000,000 studies, of
# which 10,000 are unreported, with the overdue ones' alarms raised. Each
# endpoint gets 1,000 requests, one at a time on one keep-alive connection,
# from wrk; the worklist then gets 4,000 more over 8 connections. As a
# baseline in the same run, nginx serves the worklist page and the API's
# worklist JSON as studywatch rendered them, as static files, with the same
# wrk settings: the ratios show what rendering from the catalog costs over
# merely serving the bytes.
#
#   bash bench/http.sh                                      full run (1,000,000 studies)
#   BENCH_HTTP_STUDIES=20000 BENCH_HTTP_UNREPORTED=500 \
#     BENCH_HTTP_REQUESTS=200 bash bench/http.sh            quick try
#
# Environment:
#   BENCH_HTTP_STUDIES       studies in the catalog (default 1000000)
#   BENCH_HTTP_UNREPORTED    of them without a report (default 10000); half
#                            are overdue (and get an alarm), half fall due over
#                            the next 24 h
#   BENCH_HTTP_REQUESTS      timed requests per endpoint on one connection
#                            (default 1000); the run over 8 connections makes
#                            four times as many
#   BENCH_HTTP_WARMUP        untimed requests to each endpoint just before its
#                            timed ones (default 50)
#   BENCH_HTTP_MAX_SECONDS   wrk's -d: the longest one endpoint's requests may
#                            take (default 600); an endpoint that has not
#                            answered them all by then fails the run
#   BENCH_HTTP_CACHE_MINUTES reuse a generated catalog younger than this
#                            (default 60; 0 always generates). Deadlines are
#                            absolute times, so an old catalog has drifted:
#                            more of its studies are overdue than planned.
#   BENCH_DOCS=0             do not write the http section of docs/benchmarks.md
#   BENCH_BUILD=0            skip the cargo build (use the binaries already built)
#   BIN                      the studywatch binary to measure (default
#                            target/release/studywatch)
#   PYTHON                   interpreter for small helpers (free ports, JSON,
#                            wrk's output, bench/write_section.py; default
#                            python3, standard library only)
#
# Tools: wrk, nginx and curl from Debian, installed with apt-get when missing
# (as root, or through sudo otherwise). Where services start on install,
# installing the nginx package also starts Debian's own nginx on port 80; this
# script neither uses nor stops that one, and runs its own nginx on a free
# loopback port with a config in bench/.work/http/nginx.
#
# What it does:
# 1. Builds the release binary and examples/watchdog_bench.rs.
# 2. Writes bench/.work/http/studywatch.toml: DICOM, HL7 and HTTP listeners on
#    free 127.0.0.1 ports, storage.fsync = true, log level warn, the England
#    and Wales calendar (absolute path), and one rule: every study must be
#    reported within 24 h (what `watchdog_bench generate` plans for).
# 3. Generates the catalog (cached in bench/.work/http/cache, keyed by the
#    sizes and by the sources of the generator and of the schema, as
#    bench/watchdog.sh does): `watchdog_bench generate` records the studies
#    (one instance each) and their final reports through the catalog's public
#    API, then has the watchdog compute every deadline. Generation alone runs
#    with synchronous = NORMAL; the server below runs with fsync on.
# 4. Copies the catalog into bench/.work/http/run and starts `studywatch
#    serve` on it. At start its watchdog raises an alarm for every overdue
#    study; the script waits until `studywatch alarms --open --json` lists
#    at least as many overdue alarms as /api/stats/backlog counts overdue
#    studies, so that /alarms, the worklist's escalation marks and
#    /api/alarms read a realistic alarm table.
# 5. Fetches every endpoint once with curl, which must answer 200: a page
#    that is missing (404) stops the run here, naming it, before anything is
#    timed. The study pages use the overdue study whose deadline passed
#    longest ago (the first of /api/studies?state=overdue): it has an alarm
#    and the most history to show.
# 6. For each endpoint: BENCH_HTTP_WARMUP untimed requests, then
#    BENCH_HTTP_REQUESTS timed ones with
#      wrk -t1 -c1 -d${BENCH_HTTP_MAX_SECONDS}s --timeout 60s --latency \
#          -s bench/wrk_requests.lua URL -- REQUESTS 1 FINISH_FILE
#    (wrk runs for a duration; bench/wrk_requests.lua counts the responses
#    and stops wrk at REQUESTS, and counts any status but 200). p50 and p99
#    are wrk's --latency figures; requests/s is wrk's, i.e. one request at a
#    time, so it is about 1000 / mean latency. A run fails unless exactly
#    REQUESTS responses came back, all 200.
#    Right after studywatch's worklist (/) and its first
#    /api/studies?state=unreported page, nginx serves the bytes of those two
#    responses (saved in step 5) as static files and gets the same requests.
# 7. The worklist once more, with `wrk -t2 -c8` and 4 × REQUESTS requests,
#    against studywatch and then against nginx's copy: throughput and
#    latency with 8 clients at once on this 2-core machine.
# 8. Stops both servers, prints the results and verdict, and writes the http
#    section of docs/benchmarks.md.
#
# The baseline is nginx (Debian's package; one worker per core, access log
# off, keep-alive without a request limit) rather than `python3 -m
# http.server`: that one speaks HTTP/1.0, so every request would pay a new
# TCP connection, and its own interpreter time would make studywatch look
# better than it is. nginx is about the least time in which these bytes can
# be served over HTTP here, so the ratio is what studywatch adds to that.
#
# Target (from issue 5): p99 < 200 ms for every endpoint (one connection).
#
# Exit status: 0 when every step completed (whether or not the target was
# met: see the PASS/FAIL lines); 1 when a step failed, an endpoint answered
# anything but 200, wrk came back short, or a server died.

set -euo pipefail
export LC_ALL=C

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STUDIES=${BENCH_HTTP_STUDIES:-1000000}
UNREPORTED=${BENCH_HTTP_UNREPORTED:-10000}
REQUESTS=${BENCH_HTTP_REQUESTS:-1000}
WARMUP=${BENCH_HTTP_WARMUP:-50}
MAX_SECONDS=${BENCH_HTTP_MAX_SECONDS:-600}
CACHE_MINUTES=${BENCH_HTTP_CACHE_MINUTES:-60}
DAYS=60
OVERDUE_PERCENT=50
PYTHON=${PYTHON:-python3}
WORK=$ROOT/bench/.work/http
HELPER=$ROOT/target/release/examples/watchdog_bench
CALENDAR=$ROOT/conf/calendars/england-and-wales.toml
LUA=$ROOT/bench/wrk_requests.lua
TARGET_P99_MS=200
CONC_THREADS=2
CONC_CONNECTIONS=8

SERVERS=()   # process-group ids of servers we started
T_START=$EPOCHREALTIME

source "$ROOT/bench/lib.sh"

cleanup() { stop_servers 100; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for v in STUDIES UNREPORTED REQUESTS MAX_SECONDS; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "BENCH_HTTP_$v must be a positive integer, not '${!v}'"
done
[[ $WARMUP =~ ^[0-9]+$ ]] || die "BENCH_HTTP_WARMUP must be a whole number"
[[ $CACHE_MINUTES =~ ^[0-9]+$ ]] || die "BENCH_HTTP_CACHE_MINUTES must be a whole number"
(( UNREPORTED <= STUDIES )) || die "BENCH_HTTP_UNREPORTED ($UNREPORTED) exceeds BENCH_HTTP_STUDIES ($STUDIES)"
(( UNREPORTED * OVERDUE_PERCENT / 100 >= 1 )) || die "BENCH_HTTP_UNREPORTED ($UNREPORTED) leaves no overdue study"
"$PYTHON" -c 'import json, socket' 2>/dev/null || die "$PYTHON does not run"
[[ -f $CALENDAR ]] || die "$CALENDAR is missing"
[[ -f $LUA ]] || die "$LUA is missing"
[[ $WORK =~ ^[A-Za-z0-9._/+-]+$ ]] \
    || die "$WORK has characters bench/wrk_requests.lua does not take in a path (letters, digits and ._-/+ only)"

elapsed() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", b - a }'; }

# need COMMAND PACKAGE: install PACKAGE from Debian unless COMMAND is on PATH.
need() {
    command -v "$1" >/dev/null 2>&1 && return 0
    local sudo=()
    (( EUID == 0 )) || sudo=(sudo)
    log "installing $2 from Debian (for $1)"
    "${sudo[@]}" apt-get install -y "$2" >"$WORK/apt-$2.log" 2>&1 \
        || { "${sudo[@]}" apt-get update >>"$WORK/apt-$2.log" 2>&1 \
             && "${sudo[@]}" apt-get install -y "$2" >>"$WORK/apt-$2.log" 2>&1; } \
        || { tail -n 20 "$WORK/apt-$2.log" >&2; die "apt-get install $2 failed (log: $WORK/apt-$2.log)"; }
    command -v "$1" >/dev/null 2>&1 || die "$2 is installed but $1 is not on PATH"
}

# Other benchmark scripts (or wrk runs) on this 2-core machine would skew
# every figure here; they are noted, and the run goes on.
others_running() {
    local mine=$$ p cmd found=()
    for p in $(pgrep -f 'bench/[a-z_]+\.sh|(^|/)wrk ' 2>/dev/null || true); do
        [[ $p == "$mine" ]] && continue
        { cmd=$(tr '\0' ' ' <"/proc/$p/cmdline"); } 2>/dev/null || continue
        [[ $cmd == *bench/http.sh* ]] && continue   # this script, in a subshell
        found+=("$p: ${cmd:0:80}")
    done
    (( ${#found[@]} )) && printf '%s\n' "${found[@]}"
    return 0
}

mkdir -p "$WORK"
need wrk wrk
need nginx nginx
need curl curl

# ---------------------------------------------------------------- build

if [[ ${BENCH_BUILD:-1} != 0 ]]; then
    log "cargo build --release --locked --bin studywatch --example watchdog_bench"
    (cd "$ROOT" && cargo build --release --locked --quiet --bin studywatch --example watchdog_bench) \
        || die "cargo build --release failed"
fi
[[ -x $BIN ]] || die "$BIN is missing"
[[ -x $HELPER ]] || die "$HELPER is missing (cargo build --release --example watchdog_bench)"

# ---------------------------------------------------------------- config

RUN=$WORK/run
CONF=$WORK/studywatch.toml
read -r DICOM_PORT HL7_PORT HTTP_PORT STATIC_PORT <<<"$(distinct_ports 4)"
{
    gateway_config bench/http.sh
    cat <<EOF

# Every generated study.
[[watchdog.rules]]
name = "report within 24 hours"
report_within = "24h"
EOF
} >"$CONF"
"$BIN" --config "$CONF" check-config >"$WORK/check-config.out" 2>&1 \
    || { cat "$WORK/check-config.out" >&2; die "studywatch refused the config $CONF"; }

# ---------------------------------------------------------------- the catalog

generated_catalog

rm -rf "$RUN"
mkdir -p "$RUN"
log "catalog: copying it into $RUN"
cp "$CACHE/catalog.sqlite3" "$RUN/catalog.sqlite3"
sync

# ---------------------------------------------------------------- studywatch

BASE=http://127.0.0.1:$HTTP_PORT
log "server: starting studywatch serve (HTTP on $BASE)"
# setsid: the server gets its own process group, which cleanup kills.
setsid "$BIN" --config "$CONF" serve >"$WORK/studywatch.log" 2>&1 &
PID=$!
SERVERS+=("$PID")
ready=0
for _ in $(seq 1200); do
    kill -0 "$PID" 2>/dev/null || { tail -n 20 "$WORK/studywatch.log" >&2; die "studywatch exited at start (log: $WORK/studywatch.log)"; }
    if [[ $(curl -s -o /dev/null -w '%{http_code}' "$BASE/healthz" 2>/dev/null) == 200 ]]; then ready=1; break; fi
    sleep 0.1
done
(( ready )) || die "studywatch's /healthz did not answer 200 within 120 s (log: $WORK/studywatch.log)"
[[ $(</proc/$PID/comm) == studywatch ]] || die "PID $PID is $(</proc/$PID/comm), not studywatch"

alive() {
    kill -0 "$PID" 2>/dev/null || { tail -n 20 "$WORK/studywatch.log" >&2; die "studywatch died $1 (log: $WORK/studywatch.log)"; }
}

# json_field URL KEY: one top-level value of a JSON answer.
json_field() {
    curl -sf "$1" | "$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$2"
}

# open_overdue_alarms: overdue-report alarms the CLI lists as live.
open_overdue_alarms() {
    "$BIN" --config "$CONF" alarms --open --json --limit 100000000 2>>"$WORK/cli.err" \
        | "$PYTHON" -c 'import json, sys; print(sum(a["kind"] == "overdue_report" for a in json.load(sys.stdin)))'
}

OVERDUE=$(json_field "$BASE/api/stats/backlog" overdue) || die "GET /api/stats/backlog failed"
UNREPORTED_NOW=$(json_field "$BASE/api/stats/backlog" unreported) || die "GET /api/stats/backlog failed"
log "alarms: waiting for the watchdog to raise an alarm for each of the $OVERDUE overdue studies"
T_ALARMS=$EPOCHREALTIME
ALARMS=0
for _ in $(seq 300); do
    alive "while raising the overdue alarms"
    ALARMS=$(open_overdue_alarms) || die "studywatch alarms --open --json failed (see $WORK/cli.err)"
    (( ALARMS >= OVERDUE )) && break
    sleep 1
done
(( ALARMS >= OVERDUE )) \
    || die "after 300 s the CLI lists $ALARMS open overdue alarms, fewer than the $OVERDUE overdue studies"
ALARM_SECS=$(elapsed "$T_ALARMS")
log "alarms: $ALARMS open overdue alarms (listed after ${ALARM_SECS} s)"

# The study the study pages show: the one overdue longest.
STUDY_UID=$(curl -sf "$BASE/api/studies?state=overdue&limit=1" \
    | "$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)["studies"][0]["study_uid"])') \
    || die "could not find an overdue study through GET /api/studies?state=overdue&limit=1"

# ---------------------------------------------------------------- endpoints

# id|label|path. The dashboard routes are those of src/http/dashboard/mod.rs,
# the others those of src/http/api.rs and src/http/health.rs. Every one is
# measured: one that is missing fails the run below rather than dropping
# out of the table.
ENDPOINTS=(
    "worklist|dashboard: worklist|/"
    "alarms|dashboard: alarms|/alarms"
    "reports|dashboard: reports|/reports"
    "health|dashboard: ingest health|/health"
    "study|dashboard: one study|/studies/$STUDY_UID"
    "backlog_svg|dashboard: backlog chart|/backlog.svg"
    "api_unreported|API: unreported page|/api/studies?state=unreported&limit=100"
    "api_overdue|API: overdue page|/api/studies?state=overdue&limit=100"
    "api_study|API: one study|/api/studies/$STUDY_UID"
    "api_alarms|API: open alarms|/api/alarms?state=open"
    "api_backlog|API: backlog stats|/api/stats/backlog"
    "metrics|metrics|/metrics"
)
# The two responses nginx serves as static files: id of the endpoint, file.
BASELINES=("worklist|worklist.html" "api_unreported|studies.json")

STATIC=$WORK/static
rm -rf "$STATIC" "$WORK/wrk"
mkdir -p "$STATIC" "$WORK/wrk" "$WORK/bodies"
declare -A BYTES PATHS LABELS
MISSING=()
log "checking that every endpoint answers 200"
for e in "${ENDPOINTS[@]}"; do
    IFS='|' read -r id label path <<<"$e"
    PATHS[$id]=$path
    LABELS[$id]=$label
    out=$(curl -s -o "$WORK/bodies/$id" -w '%{http_code} %{size_download}' "$BASE$path") || out="000 0"
    read -r code size <<<"$out"
    BYTES[$id]=$size
    if [[ $code != 200 ]]; then
        MISSING+=("GET $path answered $code$( [[ $code == 404 ]] && echo ' (no such route yet?)')")
    fi
done
if (( ${#MISSING[@]} )); then
    for m in "${MISSING[@]}"; do log "  $m"; done
    die "${#MISSING[@]} endpoint(s) of ${#ENDPOINTS[@]} did not answer 200; all must exist to be measured (see src/http/dashboard/mod.rs)"
fi
for b in "${BASELINES[@]}"; do
    IFS='|' read -r id file <<<"$b"
    cp "$WORK/bodies/$id" "$STATIC/$file"
done

# ---------------------------------------------------------------- nginx

NGX=$WORK/nginx
rm -rf "$NGX"
mkdir -p "$NGX/tmp"
chmod -R a+rX "$STATIC"
cat >"$NGX/nginx.conf" <<EOF
# Written by bench/http.sh: the static baseline.
daemon off;
worker_processes auto;
pid $NGX/nginx.pid;
error_log $NGX/error.log warn;
events { worker_connections 256; }
http {
    types { text/html html; application/json json; }
    access_log off;
    sendfile on;
    tcp_nodelay on;
    keepalive_timeout 300s;
    keepalive_requests 100000000;
    client_body_temp_path $NGX/tmp/body;
    proxy_temp_path $NGX/tmp/proxy;
    fastcgi_temp_path $NGX/tmp/fastcgi;
    uwsgi_temp_path $NGX/tmp/uwsgi;
    scgi_temp_path $NGX/tmp/scgi;
    server {
        listen 127.0.0.1:$STATIC_PORT;
        root $STATIC;
    }
}
EOF
NGINX_V=$(nginx -v 2>&1 | sed 's|.*nginx/||')
setsid nginx -p "$NGX" -c "$NGX/nginx.conf" >"$NGX/stdout.log" 2>&1 &
NGINX_PID=$!
SERVERS+=("$NGINX_PID")
SBASE=http://127.0.0.1:$STATIC_PORT
ready=0
for _ in $(seq 100); do
    kill -0 "$NGINX_PID" 2>/dev/null || { cat "$NGX/error.log" "$NGX/stdout.log" >&2 || true; die "nginx exited at start"; }
    if [[ $(curl -s -o /dev/null -w '%{http_code}' "$SBASE/worklist.html" 2>/dev/null) == 200 ]]; then ready=1; break; fi
    sleep 0.1
done
(( ready )) || die "nginx did not serve $SBASE/worklist.html within 10 s (log: $NGX/error.log)"
for b in "${BASELINES[@]}"; do
    IFS='|' read -r id file <<<"$b"
    curl -sf "$SBASE/$file" | cmp -s - "$STATIC/$file" || die "nginx does not serve $file as saved"
done

# ---------------------------------------------------------------- measuring

RESULTS=$WORK/results.tsv
printf 'id\tserver\tthreads\tconnections\twanted\trequests\tp50_ms\tp99_ms\tmax_ms\trps\n' >"$RESULTS"

# parse_wrk FILE WANTED EXACT: checks wrk's output and prints
# "requests p50_ms p99_ms max_ms rps", or fails with the reason.
parse_wrk() {
    "$PYTHON" - "$@" <<'PYEOF'
import re, sys
path, wanted, exact = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
text = open(path).read()
UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3600000.0}
def ms(v):
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m|h)", v)
    if not m:
        sys.exit(f"{path}: cannot read the time {v!r}")
    return float(m.group(1)) * UNITS[m.group(2)]
def find(pattern, what):
    m = re.search(pattern, text, re.M)
    if not m:
        sys.exit(f"{path}: wrk's output has no {what}")
    return m
p50 = ms(find(r"^\s+50%\s+(\S+)$", "50% line (was --latency given?)").group(1))
p99 = ms(find(r"^\s+99%\s+(\S+)$", "99% line").group(1))
mx = ms(find(r"^\s+Latency\s+\S+\s+\S+\s+(\S+)", "Latency line").group(1))
done = int(find(r"^\s+(\d+) requests in ", "'N requests in' line").group(1))
rps = float(find(r"^Requests/sec:\s+([0-9.]+)", "Requests/sec line").group(1))
lua = find(r"^wrk_requests: wanted (\d+) counted (\d+) status_200 (\d+) other (\d+) first_other (\S+)$",
           "wrk_requests line (bench/wrk_requests.lua)")
counted, other, first = int(lua.group(2)), int(lua.group(4)), lua.group(5)
problems = []
m = re.search(r"^\s+Non-2xx or 3xx responses: (\d+)", text, re.M)
if m and int(m.group(1)):
    problems.append(f"{m.group(1)} non-2xx/3xx responses")
if other:
    problems.append(f"{other} responses with a status other than 200 (the first: {first})")
m = re.search(r"^\s+Socket errors: (.*)$", text, re.M)
if m:
    problems.append(f"socket errors: {m.group(1)}")
if counted != done:
    problems.append(f"wrk counted {done} requests, the script {counted}")
if done < wanted or (exact and done != wanted):
    problems.append(f"{done} requests answered, not {wanted} (is BENCH_HTTP_MAX_SECONDS too short?)")
if problems:
    sys.exit(f"{path}: " + "; ".join(problems))
print(done, f"{p50:.3f}", f"{p99:.3f}", f"{mx:.3f}", f"{rps:.1f}")
PYEOF
}

# bench_one ID SERVER URL THREADS CONNECTIONS TOTAL: warm up, then the timed
# run; appends a row to $RESULTS.
RUN_N=0
bench_one() {
    local id=$1 server=$2 url=$3 threads=$4 conns=$5 total=$6 out parsed exact=0
    local tag="$id.$server.c$conns"
    (( conns == threads )) && exact=1
    RUN_N=$((RUN_N + 1))
    if (( WARMUP > 0 )); then
        wrk -t1 -c1 -d"${MAX_SECONDS}s" --timeout 60s --latency -s "$LUA" "$url" \
            -- "$WARMUP" 1 "$WORK/wrk/$tag.warm.finish" >"$WORK/wrk/$tag.warm.txt" 2>&1 \
            || { cat "$WORK/wrk/$tag.warm.txt" >&2; die "wrk (warm-up) failed on $url"; }
        parse_wrk "$WORK/wrk/$tag.warm.txt" "$WARMUP" 1 >/dev/null 2>"$WORK/wrk/$tag.warm.err" \
            || die "warm-up of $url: $(cat "$WORK/wrk/$tag.warm.err")"
    fi
    out=$WORK/wrk/$tag.txt
    wrk -t"$threads" -c"$conns" -d"${MAX_SECONDS}s" --timeout 60s --latency -s "$LUA" "$url" \
        -- "$total" "$threads" "$WORK/wrk/$tag.finish" >"$out" 2>&1 \
        || { cat "$out" >&2; die "wrk failed on $url"; }
    parsed=$(parse_wrk "$out" "$total" "$exact" 2>"$WORK/wrk/$tag.err") \
        || die "$(cat "$WORK/wrk/$tag.err")"
    read -r n p50 p99 mx rps <<<"$parsed"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$id" "$server" "$threads" "$conns" "$total" \
        "$n" "$p50" "$p99" "$mx" "$rps" >>"$RESULTS"
    log "$(printf '%-28s %-10s c%-2s %6s req  p50 %9.3f ms  p99 %9.3f ms  %8.1f req/s' \
        "${LABELS[$id]}" "$server" "$conns" "$n" "$p50" "$p99" "$rps")"
}

ODD=()
others=$(others_running)
if [[ -n $others ]]; then
    log "WARNING: other benchmarks are running on this machine:"; log "$others"
    ODD+=("another benchmark was running when the measurements began: $(head -n 1 <<<"$others")")
fi
log "measuring: $REQUESTS requests per endpoint on one connection (after $WARMUP untimed)"
LOAD_BEFORE=$(cut -d' ' -f1 /proc/loadavg)
T_MEASURE=$EPOCHREALTIME
for e in "${ENDPOINTS[@]}"; do
    IFS='|' read -r id _ path <<<"$e"
    bench_one "$id" studywatch "$BASE$path" 1 1 "$REQUESTS"
    alive "while $path was measured"
    for b in "${BASELINES[@]}"; do
        IFS='|' read -r bid file <<<"$b"
        [[ $bid == "$id" ]] && bench_one "$id" nginx "$SBASE/$file" 1 1 "$REQUESTS"
    done
done
CONC_TOTAL=$((REQUESTS * 4))
log "measuring: the worklist with $CONC_CONNECTIONS connections, $CONC_TOTAL requests"
bench_one worklist studywatch "$BASE/" "$CONC_THREADS" "$CONC_CONNECTIONS" "$CONC_TOTAL"
alive "while the worklist was measured with $CONC_CONNECTIONS connections"
bench_one worklist nginx "$SBASE/worklist.html" "$CONC_THREADS" "$CONC_CONNECTIONS" "$CONC_TOTAL"
MEASURE_SECS=$(elapsed "$T_MEASURE")
LOAD_AFTER=$(cut -d' ' -f1 /proc/loadavg)
others=$(others_running)
if [[ -n $others ]]; then
    log "WARNING: other benchmarks are running on this machine:"; log "$others"
    ODD+=("another benchmark was running when the measurements ended: $(head -n 1 <<<"$others")")
fi

# What the catalog held while it was measured.
OVERDUE_END=$(json_field "$BASE/api/stats/backlog" overdue) || OVERDUE_END="?"
ALARMS_END=$(open_overdue_alarms) || ALARMS_END="?"

log "servers: stopping"
kill -TERM -- "-$PID" 2>/dev/null || true
for _ in $(seq 300); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
STOP_RC=0
wait "$PID" 2>/dev/null || STOP_RC=$?
stop_servers 50
SERVERS=()
(( STOP_RC == 0 )) || ODD+=("studywatch exited with status $STOP_RC after SIGTERM")
# The warning about accept_unknown_callers is expected with this config.
unexpected=$(sed 's/\x1b\[[0-9;]*m//g' "$WORK/studywatch.log" \
    | grep -vE 'dicom\.accept_unknown_callers' | grep -cE ' (ERROR|WARN) ' || true)
(( unexpected == 0 )) || ODD+=("studywatch logged $unexpected warning or error line(s) (see bench/.work/http/studywatch.log)")

# ---------------------------------------------------------------- report

SIZES="{"
for id in "${!BYTES[@]}"; do SIZES+="\"$id\": ${BYTES[$id]}, "; done
SIZES="${SIZES%, }}"
TABLES=$(RESULTS="$RESULTS" TARGET_P99_MS="$TARGET_P99_MS" STUDY_UID="$STUDY_UID" SIZES="$SIZES" \
    CONC_CONNECTIONS="$CONC_CONNECTIONS" "$PYTHON" - "${ENDPOINTS[@]}" <<'PYEOF'
import csv, json, os, sys
env = os.environ
rows = list(csv.DictReader(open(env["RESULTS"]), delimiter="\t"))
goal = float(env["TARGET_P99_MS"])
uid = env["STUDY_UID"]
conc = env["CONC_CONNECTIONS"]
endpoints = [e.split("|", 2) for e in sys.argv[1:]]
sizes = json.loads(env["SIZES"])

def get(id, server, conns):
    for r in rows:
        if r["id"] == id and r["server"] == server and r["connections"] == conns:
            return r
    return None

def shown(path):
    return f"`GET {path.replace(uid, '{uid}')}`"

def ms(v):
    v = float(v)
    return f"{v:,.1f}" if v >= 10 else f"{v:,.2f}"

def size(n):
    n = int(n)
    return f"{n / 1024:,.1f} KiB" if n >= 1024 else f"{n} B"

lines = ["| Endpoint | Response | p50 ms | p99 ms | max ms | Requests | Requests/s | p99 < %g ms |" % goal,
         "|---|---:|---:|---:|---:|---:|---:|---|"]
worst, failed = None, []
for id, label, path in endpoints:
    r = get(id, "studywatch", "1")
    ok = float(r["p99_ms"]) < goal
    if not ok:
        failed.append(f"{label} ({shown(path)}, p99 {ms(r['p99_ms'])} ms)")
    if worst is None or float(r["p99_ms"]) > float(worst[1]["p99_ms"]):
        worst = (label, r, path)
    lines.append(f"| {label} {shown(path)} | {size(sizes[id])} | {ms(r['p50_ms'])} | {ms(r['p99_ms'])} "
                 f"| {ms(r['max_ms'])} | {int(r['requests']):,} | {float(r['rps']):,.1f} | {'PASS' if ok else 'FAIL'} |")
results = "\n".join(lines)

lines = ["| Response | Server | p50 ms | p99 ms | Requests/s | studywatch ÷ nginx, p50 | p99 |",
         "|---|---|---:|---:|---:|---:|---:|"]
for id, label, path in endpoints:
    s, n = get(id, "studywatch", "1"), get(id, "nginx", "1")
    if n is None:
        continue
    r50 = float(s["p50_ms"]) / float(n["p50_ms"])
    r99 = float(s["p99_ms"]) / float(n["p99_ms"])
    lines.append(f"| {shown(path)}, {size(sizes[id])} | studywatch | {ms(s['p50_ms'])} | {ms(s['p99_ms'])} | {float(s['rps']):,.1f} | {r50:,.1f}× | {r99:,.1f}× |")
    lines.append(f"| the same bytes as a file | nginx | {ms(n['p50_ms'])} | {ms(n['p99_ms'])} | {float(n['rps']):,.1f} | | |")
s, n = get("worklist", "studywatch", conc), get("worklist", "nginx", conc)
baseline = "\n".join(lines)

lines = [f"| Worklist `GET /`, {conc} connections | Requests | p50 ms | p99 ms | max ms | Requests/s |",
         "|---|---:|---:|---:|---:|---:|"]
for who, r in (("studywatch", s), ("nginx, the same bytes as a file", n)):
    lines.append(f"| {who} | {int(r['requests']):,} | {ms(r['p50_ms'])} | {ms(r['p99_ms'])} | {ms(r['max_ms'])} | {float(r['rps']):,.1f} |")
one = get("worklist", "studywatch", "1")
lines.append("")
lines.append(f"With {conc} clients at once studywatch served {float(s['rps']) / float(one['rps']):.1f}× the worklist "
             f"pages per second it served to one, and {float(s['rps']) / float(n['rps']):.2f}× what nginx served "
             f"of the same bytes; its p99 was {ms(s['p99_ms'])} ms.")
concurrency = "\n".join(lines)

if failed:
    verdict = (f"FAIL: {len(failed)} of {len(endpoints)} endpoints have p99 ≥ {goal:g} ms: "
               + "; ".join(failed) + ".")
else:
    verdict = (f"PASS: every one of the {len(endpoints)} endpoints has p99 < {goal:g} ms; the slowest is "
               f"{worst[0]} ({shown(worst[2])}), p99 {ms(worst[1]['p99_ms'])} ms, "
               f"{float(worst[1]['p99_ms']) / goal:.2f}× the goal.")
r = get("worklist", "studywatch", conc)
verdict += (f" For information: with {conc} connections at once the worklist's p99 was {ms(r['p99_ms'])} ms, "
            + ("within" if float(r["p99_ms"]) < goal else "over")
            + f" the {goal:g} ms that the target sets for one client.")
print(json.dumps({"results": results, "baseline": baseline, "concurrency": concurrency,
                  "verdict": verdict}))
PYEOF
) || die "could not read the results"
field() { "$PYTHON" -c 'import json, sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$TABLES" "$1"; }
RESULT_TABLE=$(field results)
BASELINE_TABLE=$(field baseline)
CONC_TABLE=$(field concurrency)
VERDICT=$(field verdict)
TOOK=$(elapsed "$T_START")
GEN_LINE=$("$PYTHON" - "$GEN_JSON" "$CACHED" <<'PYEOF'
import json, sys
g = json.load(open(sys.argv[1]))
print(f"Catalog generated {g['generated_at'][:19]}Z in {g['seconds_total']:,.0f} s "
      f"({g['catalog_bytes'] / 2**30:.2f} GiB)" + ("; reused from the cache" if sys.argv[2] == "yes" else ""))
PYEOF
) || GEN_LINE="Catalog: $GEN_JSON"

echo
echo "HTTP benchmark: $STUDIES studies, $UNREPORTED_NOW unreported ($OVERDUE overdue, $ALARMS open overdue alarms) ($(date -u '+%Y-%m-%d %H:%M UTC'), $TOOK s)"
echo "$GEN_LINE"
echo
echo "$RESULT_TABLE"
echo
echo "$BASELINE_TABLE"
echo
echo "$CONC_TABLE"
echo
echo "$VERDICT"
if (( ${#ODD[@]} )); then
    echo
    echo "Odd things seen:"
    for o in "${ODD[@]}"; do echo "- $o"; done
fi

if [[ ${BENCH_DOCS:-1} != 0 ]]; then
    mkdir -p "$ROOT/docs"
    machine_facts
    SQLITE_V=$(cd "$ROOT" && awk '/^name = "libsqlite3-sys"/ { getline; gsub(/"/, "", $3); print $3; exit }' Cargo.lock)
    # `wrk -v` prints its version and usage, and exits 1.
    WRK_V=$({ wrk -v 2>&1 || true; } | awk 'NR == 1 { print $2; exit }')
    REV=$(code_rev)
    if [[ $STUDIES == 1000000 && $UNREPORTED == 10000 && $REQUESTS == 1000 ]]; then SIZE_NOTE="a full run"; else
        SIZE_NOTE="a **reduced** run ($STUDIES studies, $UNREPORTED unreported, $REQUESTS requests per endpoint; not the full 1,000,000, 10,000 and 1,000)"; fi
    CMD="bash bench/http.sh"
    if (( REQUESTS >= 200 )); then P99_RANK="$((REQUESTS / 100))th-slowest"; else P99_RANK="slowest or next to slowest"; fi
    [[ $SIZE_NOTE == "a full run" ]] \
        || CMD="BENCH_HTTP_STUDIES=$STUDIES BENCH_HTTP_UNREPORTED=$UNREPORTED BENCH_HTTP_REQUESTS=$REQUESTS bash bench/http.sh"
    {
        echo "## HTTP benchmark"
        echo
        echo "Measured $(date -u '+%Y-%m-%d %H:%M UTC') by \`$CMD\` ($SIZE_NOTE; studywatch $REV),"
        echo "in $TOOK s in all ($MEASURE_SECS s of requests). Regenerate this section by running that command;"
        echo "the figures below are its output."
        echo
        echo "### Machine"
        echo
        echo "- $(nproc) CPU cores: $CPU; $MEM RAM; Linux $(uname -r)"
        echo "- Disk of /work: $DISK"
        echo "- SQLite bundled by libsqlite3-sys ${SQLITE_V:-?}; wrk ${WRK_V:-?} and nginx $NGINX_V (Debian packages)"
        echo
        echo "### Setup"
        echo
        echo "- The catalog: the watchdog benchmark's, built by \`watchdog_bench generate\` through the"
        echo "  catalog's public API: $STUDIES studies of one instance each (CT, MR, CR, DX, US in turn),"
        echo "  first received over the last $DAYS days; all but $UNREPORTED have a final report linked by"
        echo "  accession number. One rule, \`report_within = \"24h\"\`; $OVERDUE_PERCENT% of the unreported"
        echo "  studies were overdue when it was generated, the rest fall due over the next day."
        echo "  $GEN_LINE."
        echo "- The server: \`studywatch serve\` on a copy of that catalog, \`storage.fsync = true\`, log level"
        echo "  warn, HTTP on 127.0.0.1 (no sign-in needed for reads, as on loopback by default). Its"
        echo "  watchdog raised an alarm for every overdue study at start ($ALARMS open overdue alarms,"
        echo "  listed by \`studywatch alarms --open --json\` ${ALARM_SECS} s after /healthz first answered)"
        echo "  before anything was timed. When measured, /api/stats/backlog counted $UNREPORTED_NOW unreported"
        echo "  studies, $OVERDUE overdue at the start and $OVERDUE_END at the end ($ALARMS_END open overdue alarms);"
        echo "  deadlines kept passing during the run and the watchdog woke for each, as in real use."
        echo "- The client: wrk on the same machine, \`wrk -t1 -c1 --timeout 60s --latency -s"
        echo "  bench/wrk_requests.lua\`: one keep-alive connection, one request at a time, $REQUESTS timed"
        echo "  requests per endpoint after $WARMUP untimed ones (wrk runs for a duration;"
        echo "  \`bench/wrk_requests.lua\` stops it after that many responses and checks that every one"
        echo "  was a 200). p50 and p99 are wrk's \`--latency\` percentiles: from writing a request to"
        echo "  reading its whole response. Requests/s on one connection is about 1000 / (mean latency in ms)."
        echo "  The study pages show the study overdue longest (the first of"
        echo "  \`/api/studies?state=overdue\`), which has an alarm. \"Response\" is the body's size."
        echo "- The baseline, in the same run: nginx $NGINX_V (one worker per core, access log off,"
        echo "  keep-alive) serving the worklist page and the API's first unreported page, saved from"
        echo "  studywatch's own responses a moment before, as static files, measured with the same wrk"
        echo "  settings right after studywatch's figure for the same bytes. nginx rather than"
        echo "  \`python3 -m http.server\`, which speaks HTTP/1.0 (a new connection per request) and"
        echo "  adds its interpreter's time: nginx is close to the least time these bytes take to"
        echo "  serve here, so the ratio is what rendering them from the catalog costs."
        echo "- Concurrency: the worklist once more with \`wrk -t$CONC_THREADS -c$CONC_CONNECTIONS\`, $CONC_TOTAL requests, against"
        echo "  studywatch and against nginx's copy. The client shares the 2 cores with the server."
        echo
        echo "### Results"
        echo
        echo "$RESULT_TABLE"
        echo
        echo "### Against the static baseline"
        echo
        echo "$BASELINE_TABLE"
        echo
        echo "### $CONC_CONNECTIONS connections"
        echo
        echo "$CONC_TABLE"
        echo
        echo "### Target"
        echo
        echo "Issue 5: p99 < $TARGET_P99_MS ms for every dashboard page and API endpoint, on this catalog."
        echo
        echo "$VERDICT"
        if (( ${#ODD[@]} )); then
            echo
            echo "Odd things seen during this run:"
            echo
            for o in "${ODD[@]}"; do echo "- $o"; done
        fi
        echo
        echo "### How far to trust these numbers"
        echo
        echo "This is a 2-core virtual machine on shared hardware whose speed drifts by about ±30%"
        echo "between runs, and wrk runs on the same two cores as the server. The 1-minute load"
        echo "average was $LOAD_BEFORE when the timed requests began and $LOAD_AFTER when they ended: other"
        echo "work on the machine (builds, tests) shared the cores and counts in every figure. Latencies of a few"
        echo "milliseconds move by that much from run to run; the ratios to nginx, measured minutes"
        echo "apart in the same run, are steadier. A p99 is the $P99_RANK of $REQUESTS requests, so"
        echo "a single pause of the VM (or a watchdog evaluation the server ran at that moment) can"
        echo "move it: compare it with the p50 and the max before reading much into it."
    } | "$PYTHON" "$ROOT/bench/write_section.py" "$ROOT/docs/benchmarks.md" http \
        || die "could not write the http section of docs/benchmarks.md"
    log "wrote the http section of docs/benchmarks.md"
fi
log "done in $TOOK s"

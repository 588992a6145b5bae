#!/usr/bin/env bash
# Forwarding benchmark: how fast studywatch's forwarder drains a backlog into
# DCMTK storescp, compared in the same run with DCMTK storescu sending the same
# files straight to the same storescp; and how much ingest slows down while the
# forwarder drains.
#
#   bash bench/forward.sh               full run: a 2,000-instance backlog (~1 GB), 3 rounds
#   BENCH_N=200 bash bench/forward.sh   quick try with fewer instances
#
# Environment:
#   BENCH_N        instances in the backlog and in each ingest (default 2000)
#   BENCH_ROUNDS   how many times each measurement is repeated (default 3);
#                  the figures are medians
#   BENCH_QUIET=S  on a shared machine: before each pair of runs (and each
#                  ingest), wait up to S seconds until no rustc, cargo or
#                  cargo-nextest process has been seen for 5 s (default 0: no
#                  wait). Runs that still overlap such work are marked `*`.
#   BENCH_DOCS=0   do not write the forward section of docs/benchmarks.md
#   BENCH_BUILD=0  skip `cargo build --release` (use the binary already built)
#   BIN            the studywatch binary to measure (default
#                  target/release/studywatch). Useful with BENCH_BUILD=0 when the
#                  target directory is shared with other builds: copy the binary
#                  out of it first, so that it is not replaced during the run.
#   PYTHON         interpreter with pydicom and numpy (default python3)
#
# Test data: bench/gen_ct.py generates 2 × BENCH_N CT instances into
# bench/.data/ct (cached, shared with bench/ingest.sh, which uses the first
# BENCH_N). Set A is the first BENCH_N, set B the next BENCH_N: different SOP
# Instance UIDs and studies, the same size and shape. Both are read once
# before the first run, so that every sender reads from the page cache.
#
# Part 1, forwarding against storescu. Each run directory (bench/.work/forward/
# RUN) starts empty after a `sync`.
#
#  a. The backlog. studywatch (storage.fsync = true) runs with 2 × BENCH_ROUNDS
#     [[forward.destinations]] (one1, one2, ..., four1, four2, ...), all at a
#     port where nothing listens, and storescu sends it set A, so that every
#     instance is queued once per destination. `forward status --json` must
#     then show BENCH_N pending for each, none sent or failed. studywatch is
#     stopped and `forward retry`, run on the catalog file while the server is
#     down, makes every row due now: after the failed attempts during ingest
#     the rows would wait 2 s to minutes (with jitter) before their next try.
#     One backlog thus serves every drain below.
#  b. BENCH_ROUNDS rounds, each of these four runs, the two of a pair in
#     turn (odd rounds storescu first, even rounds the forwarder first):
#     - storescu -> storescp: storescu sends set A on one association to a
#       fresh single-process storescp; timed from starting storescu to its exit.
#     - forwarder, 1 association: the config is rewritten to list only the
#       destination oneR, with max_associations = 1, at the port of a fresh
#       single-process storescp, which answers C-ECHO before the clock starts.
#       The clock starts as `studywatch serve` starts: its sender reads the
#       due rows at once. It stops when `forward status --json` shows 0
#       pending and BENCH_N sent for oneR (polled every 100 ms, then every
#       20 ms once storescp holds BENCH_N files; no poll before that touches
#       the catalog). So the time includes the server's start-up (storescu's
#       includes its own start-up and reading the files' headers) and the
#       commit of the last outcomes, which storescu has no equivalent of, and
#       no idle poll or backoff wait, which are not sending. The other
#       destinations' rows stay queued, untouched: a destination no longer
#       configured has no sender. "First instance" is the modification time
#       of the first file storescp wrote, from the same start.
#     - storescu × 4 -> storescp --fork: four storescu processes, each sending
#       a contiguous quarter of set A.
#     - forwarder, 4 associations: as above, destination fourR with
#       max_associations = 4, to storescp --fork.
#     The two runs of a pair are seconds apart, so each round gives a ratio
#     of its own; the tables show medians over the rounds.
#
# Part 2, ingest while the forwarder drains: BENCH_ROUNDS rounds of
#  - ingest alone: a fresh studywatch with no destination; storescu sends it
#    set B (timed, as every ingest here, from starting storescu to its exit);
#  - ingest while draining: a fresh studywatch with one destination (max
#    associations 1) down receives set A (timed: ingest with the destination
#    down, while the sender's connection attempts fail), is stopped, and the
#    rows are made due as in part 1; storescp starts, then studywatch, and as
#    soon as it answers C-ECHO storescu sends it set B. Set B is queued for
#    the destination too, so the forwarder has work for the whole of that
#    ingest (how many it forwarded meanwhile is reported). The round ends when
#    all 2 × BENCH_N are sent.
#
# Senders and storescp get TCP_NODELAY=1 (DCMTK then disables Nagle's
# algorithm; the forwarder sets TCP_NODELAY on its sockets itself). storescp
# runs with the options of bench/ingest.sh (-dhl -pdu 65536; it never fsyncs)
# for both senders, so both send 64 KiB PDUs. Whether the destination fsyncs
# is the destination's business; studywatch runs with fsync on throughout (its
# queue updates are durable commits). "Sender CPU" is user + system time: of
# the storescu processes (bash `time`), or of the whole studywatch process
# from its start to the last commit (start-up and catalog work included).
# RUST_BACKTRACE and RUST_LIB_BACKTRACE are unset, as under systemd (see
# below).
#
# Target (from the issue): the forwarder on one association drains at least
# 0.9 × storescu's rate on one association. The ingest slowdown has no target;
# it is reported. storescp shares the two cores with everything else here.
#
# Exit status: 0 when every run completed and every instance arrived (whether
# or not the target was met: see the PASS/FAIL lines); 1 when a sender failed,
# a server died, a queue did not drain or an instance is missing.

set -euo pipefail
export LC_ALL=C
# As deployed (systemd/studywatch.service sets neither): with RUST_BACKTRACE
# set, dicom-rs captures a backtrace for the end-of-data error that ends
# every command set it decodes, once per C-STORE request and response: about
# 3% of the forwarder's CPU time here (perf). storescu is unaffected.
unset RUST_BACKTRACE RUST_LIB_BACKTRACE

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
N=${BENCH_N:-2000}
ROUNDS=${BENCH_ROUNDS:-3}
QUIET=${BENCH_QUIET:-0}
PYTHON=${PYTHON:-python3}
DATA=$ROOT/bench/.data
WORK=$ROOT/bench/.work/forward
MAX_PDU=65536
TARGET_RATIO=0.9
# Always DCMTK's binaries: a pynetdicom install may put its own `storescu`
# earlier on PATH.
STORESCU=/usr/bin/storescu
STORESCP=/usr/bin/storescp
ECHOSCU=/usr/bin/echoscu

SERVERS=()   # process-group ids of servers we started
SENDERS=()   # pids of senders still running

source "$ROOT/bench/lib.sh"

cleanup() {
    local p
    for p in "${SENDERS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    stop_servers 50
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

[[ $N =~ ^[1-9][0-9]*$ ]] || die "BENCH_N must be a positive integer, not '$N'"
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "BENCH_ROUNDS must be a positive integer, not '$ROUNDS'"
[[ $QUIET =~ ^[0-9]+$ ]] || die "BENCH_QUIET must be a number of seconds, not '$QUIET'"
for tool in "$STORESCU" "$STORESCP" "$ECHOSCU"; do
    [[ -x $tool ]] || die "$tool is missing (apt-get install dcmtk)"
done
"$PYTHON" -c 'import pydicom, numpy' 2>/dev/null \
    || die "$PYTHON lacks pydicom/numpy (pip install pydicom numpy)"
TICKS=$(getconf CLK_TCK)

# other_port: a free loopback port other than studywatch's PORT and HTTP_PORT.
other_port() {
    local p
    p=$(free_port)
    while [[ $p == "$PORT" || $p == "$HTTP_PORT" ]]; do p=$(free_port); done
    echo "$p"
}

# base_config DIR: the part of studywatch's config that every run of DIR
# shares, in DIR/base.toml. Sets PORT (DICOM) and HTTP_PORT.
base_config() {
    local dir=$1
    read -r PORT HTTP_PORT < <(distinct_ports 2)
    cat >"$dir/base.toml" <<EOF
# Written by bench/forward.sh; rewritten on every run.
version = 1
[server]
shutdown_grace = "10s"
[log]
level = "warn"
[dicom]
ae_title = "STUDYWATCH"
listen = "127.0.0.1:$PORT"
accept_unknown_callers = true
max_associations = 16
max_pdu = $MAX_PDU
[storage]
path = "$dir/storage"
fsync = true
min_free_bytes = 0
[catalog]
path = "$dir/catalog.sqlite3"
[watchdog]
calendar = "$ROOT/conf/calendars/england-and-wales.toml"
[http]
listen = "127.0.0.1:$HTTP_PORT"
EOF
}

# set_destinations DIR DEST_PORT ASSOCS NAME...: DIR/studywatch.toml is the
# base config plus one destination per NAME (taking every instance), each at
# DEST_PORT on up to ASSOCS associations.
set_destinations() {
    local dir=$1 dest_port=$2 assocs=$3 name
    shift 3
    {
        cat "$dir/base.toml"
        for name in "$@"; do
            printf '[[forward.destinations]]\nname = "%s"\nae_title = "STORESCP"\nhost = "127.0.0.1"\nport = %s\nmax_associations = %s\n' \
                "$name" "$dest_port" "$assocs"
        done
    } >"$dir/studywatch.toml"
    "$BIN" --config "$dir/studywatch.toml" check-config >"$dir/check-config.out" 2>&1 \
        || { cat "$dir/check-config.out" >&2; die "studywatch refused the config $dir/studywatch.toml"; }
}

# start_studywatch DIR LOG: `serve` in the background; sets PID (not waited for).
start_studywatch() {
    local dir=$1 logfile=$2
    # setsid: the server gets its own process group, which cleanup kills.
    setsid "$BIN" --config "$dir/studywatch.toml" serve >"$logfile" 2>&1 &
    PID=$!
    SERVERS+=("$PID")
}

# start_storescp DIR PORT FORK(1|0): storescp writing into DIR/out; sets SCP_PID
# once it answers C-ECHO.
start_storescp() {
    local dir=$1 port=$2 fork=$3 mode=--single-process
    mkdir -p "$dir/out"
    if (( fork )); then mode=--fork; fi
    setsid env TCP_NODELAY=1 "$STORESCP" "$mode" -dhl -aet STORESCP -pdu "$MAX_PDU" \
        -od "$dir/out" "$port" >"$dir/storescp.log" 2>&1 &
    SCP_PID=$!
    SERVERS+=("$SCP_PID")
    wait_ready STORESCP "$port" "$SCP_PID" "$dir/storescp.log"
}

# stop_server PID: SIGTERM its process group, wait; sets STOP_RC.
stop_server() {
    local pid=$1 rc=0 p
    kill -TERM -- "-$pid" 2>/dev/null || true
    for _ in $(seq 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
        log "WARNING: server $pid still running 20 s after SIGTERM; killing it"
        kill -KILL -- "-$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || rc=$?
    local keep=()
    for p in "${SERVERS[@]}"; do [[ $p == "$pid" ]] || keep+=("$p"); done
    SERVERS=("${keep[@]+"${keep[@]}"}")
    STOP_RC=$rc
}

# stop_studywatch PID RUN: stop_server, noting a non-zero exit.
stop_studywatch() {
    stop_server "$1"
    if (( STOP_RC != 0 )); then
        ODD+=("$2: studywatch exited with status $STOP_RC after SIGTERM")
        log "WARNING: studywatch exited with status $STOP_RC after SIGTERM"
    fi
}

# send DIR AE PORT ASSOCS FILE...: ASSOCS storescu processes, each sending a
# contiguous share of the files. Sets SECONDS_TAKEN and CPU_TAKEN (user +
# system seconds of the storescu processes).
send() {
    local dir=$1 ae=$2 port=$3 assocs=$4
    shift 4
    local files=("$@") n=$# k pids=() failed=0 rc
    local TIMEFORMAT='%U %S'
    rm -f "$dir"/storescu.*.time
    local t0=$EPOCHREALTIME
    for (( k = 0; k < assocs; k++ )); do
        local from=$(( k * n / assocs )) to=$(( (k + 1) * n / assocs ))
        { time env TCP_NODELAY=1 "$STORESCU" -aet BENCH -aec "$ae" 127.0.0.1 "$port" \
            "${files[@]:from:to-from}" >"$dir/storescu.$k.log" 2>&1; } 2>"$dir/storescu.$k.time" &
        pids+=($!)
    done
    SENDERS=("${pids[@]}")
    for (( k = 0; k < assocs; k++ )); do
        rc=0
        wait "${pids[k]}" || rc=$?
        if (( rc != 0 )); then
            failed=1
            log "storescu #$k to $ae exited with status $rc — its output:"
            cat "$dir/storescu.$k.log" >&2
        fi
    done
    local t1=$EPOCHREALTIME
    SENDERS=()
    (( failed == 0 )) || die "a sender failed (logs: $dir/storescu.*.log)"
    SECONDS_TAKEN=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
    CPU_TAKEN=$(cat "$dir"/storescu.*.time | awk '{ s += $1 + $2 } END { printf "%.2f", s }')
}

# queue_status DIR NAME: destination NAME in `forward status --json`; sets
# Q_PENDING, Q_WAITING, Q_SENT and Q_FAILED. Parsed with bash alone (no
# interpreter start per poll): the JSON is pretty-printed, and the text from
# NAME's "destination" key to the next one is NAME's object.
queue_status() {
    local dir=$1 name=$2 out block re
    out=$("$BIN" --config "$dir/studywatch.toml" forward status --json 2>>"$dir/forward-status.err") \
        || die "studywatch forward status failed (see $dir/forward-status.err)"
    [[ $out == *"\"destination\": \"$name\""* ]] || die "forward status does not list $name: $out"
    block=${out#*\"destination\": \"$name\"}
    block=${block%%\"destination\": *}
    Q_PENDING='' Q_WAITING='' Q_SENT='' Q_FAILED=''
    re='"pending": ([0-9]+)'; [[ $block =~ $re ]] && Q_PENDING=${BASH_REMATCH[1]}
    re='"waiting": ([0-9]+)'; [[ $block =~ $re ]] && Q_WAITING=${BASH_REMATCH[1]}
    re='"sent": ([0-9]+)'; [[ $block =~ $re ]] && Q_SENT=${BASH_REMATCH[1]}
    re='"failed": ([0-9]+)'; [[ $block =~ $re ]] && Q_FAILED=${BASH_REMATCH[1]}
    [[ -n $Q_PENDING && -n $Q_WAITING && -n $Q_SENT && -n $Q_FAILED ]] \
        || die "cannot read the forward status of $name in: $out"
}

# cpu_seconds PID: user + system time of a live process so far.
cpu_seconds() {
    awk -v t="$TICKS" '{ sub(/^.*\) /, ""); printf "%.2f", ($12 + $13) / t }' "/proc/$1/stat"
}

# out_count DIR: files storescp has written into DIR/out (no process started).
out_count() {
    local f=("$1"/out/*)
    [[ -e ${f[0]} ]] || { echo 0; return; }
    echo "${#f[@]}"
}

# check_stored DIR EXPECTED: every instance stored by studywatch, as files and
# in the catalog; dies otherwise.
check_stored() {
    local dir=$1 expected=$2 st=$1/storage files odd catalogued
    files=$(find "$st" -mindepth 3 -maxdepth 3 -type f -name '*.dcm' \
        -not -path "$st/quarantine/*" -not -path "$st/rejected/*" -not -path "$st/.tmp/*" | wc -l)
    odd=$(find "$st/quarantine" "$st/rejected" "$st/.tmp" -type f 2>/dev/null | wc -l)
    [[ $files == "$expected" && $odd == 0 ]] \
        || die "studywatch stored $files of $expected instances ($odd rejected/quarantined/temp) in $st"
    catalogued=$("$BIN" --config "$dir/studywatch.toml" studies --json 2>"$dir/studies.err" \
        | "$PYTHON" -c 'import json, sys; print(sum(s["instance_count"] for s in json.load(sys.stdin)))' \
        2>>"$dir/studies.err") || catalogued="?"
    [[ $catalogued == "$expected" ]] \
        || die "the catalog lists $catalogued instances, $expected were stored (see $dir/studies.err)"
}

# check_log RUN LOGFILE ALLOWED: notes warnings and errors other than those
# matching the regex ALLOWED.
check_log() {
    local run=$1 logfile=$2 allowed=$3 unexpected
    unexpected=$(sed 's/\x1b\[[0-9;]*m//g' "$logfile" | grep -E ' (ERROR|WARN) ' \
        | grep -vcE "$allowed" || true)
    if (( unexpected > 0 )); then
        ODD+=("$run: studywatch logged $unexpected unexpected warning(s) or error(s) (${logfile#"$ROOT"/})")
    fi
}
# Always expected: unknown callers accepted (the bench's senders are not peers).
LOG_OK='key=dicom\.accept_unknown_callers'
# Expected while the destination is down.
LOG_DOWN_OK="$LOG_OK|destination unreachable; will retry"

# One timed run: record KEY COUNT SECONDS CPU_SECONDS FIRST_SECONDS appends
# its figures to KEY's lists (one entry per round), with the 1-minute load
# average read when it started (mark_start), marked with `*` when another
# build or test run was going on when it started or when it ended.
declare -A COUNT SECS RATE CPU FIRST LOAD
ODD=()
BUSY=()
record() {
    local key=$1 rate cpu
    rate=$(awk -v n="$2" -v s="$3" 'BEGIN { printf "%.1f", n / s }')
    cpu=$(awk -v n="$2" -v c="$4" 'BEGIN { printf "%.2f", c * 1000 / n }')
    COUNT[$key]=$2
    SECS[$key]+=" $3"
    RATE[$key]+=" $rate"
    CPU[$key]+=" $cpu"
    FIRST[$key]+=" ${5:--}"
    if (( BUSY_AT_START )) || other_work; then
        LOAD[$key]+=" $LOAD_AT_START*"
        BUSY+=("$key")
    else
        LOAD[$key]+=" $LOAD_AT_START"
    fi
    log "$(printf '%-52s %5d in %8.3f s = %8.1f instances/s' "$key" "$2" "$3" "$rate")"
}
# other_work: whether another build or test run is going on on this machine
# (a rustc, cargo or cargo-nextest process).
other_work() {
    pgrep -x rustc >/dev/null || pgrep -x cargo >/dev/null || pgrep -x cargo-nextest >/dev/null
}
# mark_start: the 1-minute load average, and other_work, just before a timed run.
mark_start() {
    LOAD_AT_START=$(cut -d' ' -f1 /proc/loadavg)
    BUSY_AT_START=0
    if other_work; then BUSY_AT_START=1; fi
}
# quiet_gate: with BENCH_QUIET=SECONDS, waits up to that long until no other
# build or test run has been seen for 5 s in a row (polled every second).
quiet_gate() {
    (( QUIET > 0 )) || return 0
    local t0=$SECONDS calm=0
    while (( SECONDS - t0 < QUIET )); do
        if other_work; then calm=0; else calm=$(( calm + 1 )); fi
        (( calm < 5 )) || return 0
        sleep 1
    done
    log "another build or test run is still going on after $QUIET s; going on regardless"
}

# backlog RUN KEY NAME...: a fresh studywatch whose destinations NAME... are
# all at a port where nothing listens; storescu sends it set A (timed as
# KEY); each destination must then have all of it pending. Stops studywatch
# and makes every row due (`forward retry` on the catalog file). Sets DIR.
backlog() {
    local run=$1 key=$2 name down_port
    shift 2
    DIR=$(fresh_dir "$run")
    base_config "$DIR"
    down_port=$(other_port)
    set_destinations "$DIR" "$down_port" 1 "$@"
    start_studywatch "$DIR" "$DIR/studywatch.backlog.log"
    wait_ready STUDYWATCH "$PORT" "$PID" "$DIR/studywatch.backlog.log"
    mark_start
    send "$DIR" STUDYWATCH "$PORT" 1 "${SET_A[@]}"
    record "$key" "$N" "$SECONDS_TAKEN" "$CPU_TAKEN" ""
    check_stored "$DIR" "$N"
    for name in "$@"; do
        queue_status "$DIR" "$name"
        [[ $Q_PENDING == "$N" && $Q_SENT == 0 && $Q_FAILED == 0 ]] \
            || die "$run: with the destination down, $name shows $Q_PENDING pending, $Q_SENT sent, $Q_FAILED failed; expected $N pending"
    done
    log "$run: $N pending for each of $*, none sent"
    stop_studywatch "$PID" "$run"
    check_log "$run" "$DIR/studywatch.backlog.log" "$LOG_DOWN_OK"
    "$BIN" --config "$DIR/studywatch.toml" forward retry --by bench/forward.sh \
        >"$DIR/retry.out" 2>&1 || { cat "$DIR/retry.out" >&2; die "forward retry failed"; }
    for name in "$@"; do
        queue_status "$DIR" "$name"
        [[ $Q_PENDING == "$N" && $Q_WAITING == 0 ]] \
            || die "$run: after forward retry $Q_WAITING of $Q_PENDING pending rows of $name still wait"
    done
    if (: <>"/dev/tcp/127.0.0.1/$down_port") 2>/dev/null; then
        die "$run: something else listens on the destination's port $down_port"
    fi
}

# start_drain NAME ASSOCS FORK: the config of DIR lists destination NAME alone,
# at the port of a fresh storescp (writing into DIR/dest-NAME/out), which is
# started; then the clock starts and studywatch starts. Sets DEST_DIR,
# T_START, PID, SCP_PID.
start_drain() {
    local name=$1 assocs=$2 fork=$3 port
    port=$(other_port)
    set_destinations "$DIR" "$port" "$assocs" "$name"
    DEST_DIR=$DIR/dest-$name
    sync
    start_storescp "$DEST_DIR" "$port" "$fork"
    T_START=$EPOCHREALTIME
    start_studywatch "$DIR" "$DEST_DIR/studywatch.log"
}

# finish_drain RUN NAME EXPECTED: waits until `forward status` shows EXPECTED
# sent to NAME and none pending; sets DRAIN_SECS, DRAIN_CPU and FIRST_SECS.
# Dies when a server exits, an instance fails, or nothing arrives for 60 s.
finish_drain() {
    local run=$1 name=$2 expected=$3 count last=-1 nap=0.1 changed=$EPOCHREALTIME t_done
    while :; do
        kill -0 "$PID" 2>/dev/null || { tail -n 20 "$DEST_DIR/studywatch.log" >&2; die "$run: studywatch exited while draining"; }
        kill -0 "$SCP_PID" 2>/dev/null || { tail -n 20 "$DEST_DIR/storescp.log" >&2 || true; die "$run: storescp exited while receiving"; }
        count=$(out_count "$DEST_DIR")
        if (( count >= expected )); then
            nap=0.02
            queue_status "$DIR" "$name"
            if [[ $Q_PENDING == 0 && $Q_SENT == "$expected" ]]; then
                t_done=$EPOCHREALTIME
                DRAIN_CPU=$(cpu_seconds "$PID")
                break
            fi
            (( Q_FAILED == 0 )) || die "$run: $Q_FAILED instance(s) failed to forward to $name"
        fi
        if (( count != last )); then
            last=$count
            changed=$EPOCHREALTIME
        elif awk -v a="$changed" -v b="$EPOCHREALTIME" 'BEGIN { exit !(b - a > 60) }'; then
            queue_status "$DIR" "$name"
            die "$run: no progress for 60 s at $count of $expected files; $name: $Q_PENDING pending ($Q_WAITING waiting), $Q_SENT sent, $Q_FAILED failed"
        fi
        sleep "$nap"
    done
    DRAIN_SECS=$(awk -v a="$T_START" -v b="$t_done" 'BEGIN { printf "%.3f", b - a }')
    local first
    first=$("$PYTHON" -c 'import os, sys; print(min(e.stat().st_mtime_ns for e in os.scandir(sys.argv[1])) / 1e9)' "$DEST_DIR/out")
    FIRST_SECS=$(awk -v a="$T_START" -v f="$first" 'BEGIN { printf "%.3f", f - a }')
    count=$(out_count "$DEST_DIR")
    [[ $count == "$expected" ]] || die "$run: storescp holds $count files, $expected were sent to $name"
}

# end_drain RUN: stops both servers, checks studywatch's log, frees the disk.
end_drain() {
    stop_studywatch "$PID" "$1"
    stop_server "$SCP_PID"
    check_log "$1" "$DEST_DIR/studywatch.log" "$LOG_OK"
    rm -rf "$DEST_DIR/out"
}

# ---------------------------------------------------------------- build, data

if [[ ${BENCH_BUILD:-1} != 0 ]]; then
    log "cargo build --release"
    (cd "$ROOT" && cargo build --release --quiet) || die "cargo build --release failed"
fi
[[ -x $BIN ]] || die "$BIN is missing"

log "test data: $(( 2 * N )) CT instances of 512x512x16 bit in bench/.data (cached)"
"$PYTHON" "$ROOT/bench/gen_ct.py" ct "$DATA/ct" $(( 2 * N ))
SET_A=() SET_B=()
for (( i = 0; i < N; i++ )); do
    SET_A+=("$(printf '%s/ct/ct_%05d.dcm' "$DATA" "$i")")
    SET_B+=("$(printf '%s/ct/ct_%05d.dcm' "$DATA" $(( N + i )))")
done
DATA_MB=$(du -cm "${SET_A[@]}" | tail -n 1 | cut -f1)
# Into the page cache, so that no sender is the first to read them from disk.
cat "${SET_A[@]}" "${SET_B[@]}" >/dev/null

rm -rf "$WORK"
mkdir -p "$WORK"
sync
T_BEGIN=$EPOCHREALTIME

K_SCU1="storescu -> storescp, 1 assoc"
K_FWD1="forwarder -> storescp, 1 assoc"
K_SCU4="storescu ×4 -> storescp --fork, 4 assoc"
K_FWD4="forwarder -> storescp --fork, 4 assoc"
K_BACKLOG="ingest (set A) queued for $(( 2 * ROUNDS )) destinations, all down"
K_ALONE="ingest (set B), no destination"
K_BUSY="ingest (set B) while the forwarder drains"
K_DOWN="ingest (set A), its one destination down"
K_FWDBUSY="forwarder, 1 assoc, sending A + B during that ingest"

# ---------------------------------------------------------------- part 1

# run_scu RUN KEY ASSOCS FORK: storescu -> storescp, set A.
run_scu() {
    local run=$1 key=$2 assocs=$3 fork=$4 dir port count
    log "run: $run, $key"
    dir=$(fresh_dir "$run")
    port=$(free_port)
    start_storescp "$dir" "$port" "$fork"
    mark_start
    send "$dir" STORESCP "$port" "$assocs" "${SET_A[@]}"
    count=$(out_count "$dir")
    [[ $count == "$N" ]] || die "$run: storescp stored $count of $N instances"
    stop_server "$SCP_PID"
    record "$key" "$N" "$SECONDS_TAKEN" "$CPU_TAKEN" ""
    rm -rf "$dir/out"
}

# run_fwd NAME KEY ASSOCS FORK: drains destination NAME of the backlog in DIR.
run_fwd() {
    local name=$1 key=$2 assocs=$3 fork=$4
    log "run: drain $name, $key"
    mark_start
    start_drain "$name" "$assocs" "$fork"
    finish_drain "backlog/$name" "$name" "$N"
    record "$key" "$N" "$DRAIN_SECS" "$DRAIN_CPU" "$FIRST_SECS"
    end_drain "backlog/$name"
}

NAMES=()
for (( r = 1; r <= ROUNDS; r++ )); do NAMES+=("one$r" "four$r"); done
log "run: backlog of set A for ${NAMES[*]}"
quiet_gate
backlog backlog "$K_BACKLOG" "${NAMES[@]}"
BACKLOG_DIR=$DIR
# Odd rounds run storescu first in each pair, even rounds the forwarder, so
# that a machine growing busier or quieter during a round does not always
# favour the same sender.
for (( r = 1; r <= ROUNDS; r++ )); do
    for assocs in 1 4; do
        if (( assocs == 1 )); then names=("one$r" "$K_FWD1" 1 0); scu=("scu1-$r" "$K_SCU1" 1 0)
        else names=("four$r" "$K_FWD4" 4 1); scu=("scu4-$r" "$K_SCU4" 4 1); fi
        quiet_gate
        if (( r % 2 )); then
            run_scu "${scu[@]}"
            DIR=$BACKLOG_DIR run_fwd "${names[@]}"
        else
            DIR=$BACKLOG_DIR run_fwd "${names[@]}"
            run_scu "${scu[@]}"
        fi
    done
done
rm -rf "$BACKLOG_DIR/storage"

# ---------------------------------------------------------------- part 2

BUSY_NOTES=()
for (( r = 1; r <= ROUNDS; r++ )); do
    log "run: ingest-alone-$r, $K_ALONE"
    quiet_gate
    DIR=$(fresh_dir "ingest-alone-$r")
    base_config "$DIR"
    cp "$DIR/base.toml" "$DIR/studywatch.toml"
    start_studywatch "$DIR" "$DIR/studywatch.log"
    wait_ready STUDYWATCH "$PORT" "$PID" "$DIR/studywatch.log"
    mark_start
    send "$DIR" STUDYWATCH "$PORT" 1 "${SET_B[@]}"
    record "$K_ALONE" "$N" "$SECONDS_TAKEN" "$CPU_TAKEN" ""
    check_stored "$DIR" "$N"
    stop_studywatch "$PID" "ingest-alone-$r"
    check_log "ingest-alone-$r" "$DIR/studywatch.log" "$LOG_OK"
    rm -rf "$DIR/storage"

    run=ingest-drain-$r
    log "run: $run, $K_BUSY"
    quiet_gate
    backlog "$run" "$K_DOWN" pacs
    quiet_gate
    mark_start
    load_fwdbusy=$LOAD_AT_START busy_fwdbusy=$BUSY_AT_START
    start_drain pacs 1 0
    wait_ready STUDYWATCH "$PORT" "$PID" "$DEST_DIR/studywatch.log"
    mark_start
    busy_at=$(out_count "$DEST_DIR")
    send "$DIR" STUDYWATCH "$PORT" 1 "${SET_B[@]}"
    busy_end=$(out_count "$DEST_DIR")
    queue_status "$DIR" pacs
    record "$K_BUSY" "$N" "$SECONDS_TAKEN" "$CPU_TAKEN" ""
    BUSY_NOTES+=("round $r: $busy_at → $busy_end instances at storescp during the ingest; then $Q_PENDING pending")
    log "$run: storescp held $busy_at forwarded instances when the ingest of set B began, $busy_end when it ended; then $Q_PENDING pending, $Q_SENT sent"
    finish_drain "$run" pacs $(( 2 * N ))
    LOAD_AT_START=$load_fwdbusy BUSY_AT_START=$busy_fwdbusy
    record "$K_FWDBUSY" $(( 2 * N )) "$DRAIN_SECS" "$DRAIN_CPU" "$FIRST_SECS"
    check_stored "$DIR" $(( 2 * N ))
    end_drain "$run"
    rm -rf "$DIR/storage"
done
TOTAL_SECS=$(awk -v a="$T_BEGIN" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", b - a }')

# ---------------------------------------------------------------- report

# median FORMAT VALUES...: the median of numbers (the mean of the middle two
# for an even count), printed with FORMAT; "—" when there are none.
median() {
    local fmt=$1
    shift
    printf '%s\n' "$@" | grep -E '^[0-9.]+$' | sort -g | awk -v fmt="$fmt" '
        { v[NR] = $1 }
        END { if (NR == 0) { print "—"; exit }
              printf fmt, (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
# range VALUES...: "min–max" of numbers ("" for fewer than two).
range() {
    printf '%s\n' "$@" | grep -E '^[0-9.]+$' | sort -g | awk '
        { v[NR] = $1 } END { if (NR > 1) printf "%s–%s", v[1], v[NR] }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
drop() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (1 - a / b) * 100 }'; }
verdict() {  # verdict VALUE OP LIMIT
    awk -v v="$1" -v l="$3" -v op="$2" 'BEGIN {
        ok = (op == ">=") ? (v >= l) : (v < l); print ok ? "PASS" : "FAIL" }'
}
# per_round F KEY_A KEY_B SUFFIX: F applied to KEY_A's and KEY_B's rates,
# round by round, as "x, y, z", each with SUFFIX, and `*` after a round in
# which either run overlapped another build or test run.
per_round() {
    local f=$1 suffix=$4 a b la lb i v out=()
    read -r -a a <<<"${RATE[$2]}"
    read -r -a b <<<"${RATE[$3]}"
    read -r -a la <<<"${LOAD[$2]}"
    read -r -a lb <<<"${LOAD[$3]}"
    for (( i = 0; i < ${#a[@]} && i < ${#b[@]}; i++ )); do
        v=$("$f" "${a[i]}" "${b[i]}")$suffix
        if [[ ${la[i]} == *'*' || ${lb[i]} == *'*' ]]; then v+='*'; fi
        out+=("$v")
    done
    local IFS=,
    sed 's/,/, /g' <<<"${out[*]}"
}
# clean_rounds KEY_A KEY_B: how many rounds neither run overlapped another
# build or test run.
clean_rounds() {
    local la lb i n=0
    read -r -a la <<<"${LOAD[$1]}"
    read -r -a lb <<<"${LOAD[$2]}"
    for (( i = 0; i < ${#la[@]} && i < ${#lb[@]}; i++ )); do
        [[ ${la[i]} == *'*' || ${lb[i]} == *'*' ]] || n=$(( n + 1 ))
    done
    echo "$n"
}
# med "LIST" [FORMAT]: the median of a space-separated list (default %.3f).
med() { median "${2:-%.3f}" ${1}; }

row() {  # row KEY: a results table row
    local k=$1 rates first
    read -r -a rates <<<"${RATE[$k]}"
    first=$(med "${FIRST[$k]}")
    [[ $first == "—" ]] || first+=" s"
    echo "| $k | ${#rates[@]} | ${COUNT[$k]} | $(med "${SECS[$k]}") | $(med "${RATE[$k]}" %.1f) | $(range "${rates[@]}") | $first | $(med "${CPU[$k]}" %.2f) ms | $(printf '%s\n' ${LOAD[$k]} | joined '') |"
}

R1=$(ratio "$(med "${RATE[$K_FWD1]}" %.1f)" "$(med "${RATE[$K_SCU1]}" %.1f)")
R4=$(ratio "$(med "${RATE[$K_FWD4]}" %.1f)" "$(med "${RATE[$K_SCU4]}" %.1f)")
# joined: lines to "a, b, c", each with SUFFIX.
joined() { sed "s/\$/$1/" | paste -sd, - | sed 's/,/, /g'; }
R1_ROUNDS=$(per_round ratio "$K_FWD1" "$K_SCU1" ×)
R4_ROUNDS=$(per_round ratio "$K_FWD4" "$K_SCU4" ×)
R1_VERDICT=$(verdict "$R1" ">=" "$TARGET_RATIO")
R1_CLEAN=$(clean_rounds "$K_FWD1" "$K_SCU1")
if (( R1_CLEAN == 0 )); then
    R1_VERDICT+=" (unreliable: every round overlapped other builds or tests)"
elif (( R1_CLEAN < ROUNDS )); then
    R1_VERDICT+=" ($R1_CLEAN of $ROUNDS rounds free of other builds and tests)"
fi
DROP=$(drop "$(med "${RATE[$K_BUSY]}" %.1f)" "$(med "${RATE[$K_ALONE]}" %.1f)")
DROP_ROUNDS=$(per_round drop "$K_BUSY" "$K_ALONE" %)
DROP_DOWN=$(drop "$(med "${RATE[$K_DOWN]}" %.1f)" "$(med "${RATE[$K_ALONE]}" %.1f)")

HEAD="| Run | Rounds | Instances | Seconds (median) | Instances/s (median) | Instances/s (range) | First instance stored after | Sender CPU per instance | Load (1 min) at start |
|---|---:|---:|---:|---:|---:|---:|---:|---|"
FWD_TABLE=$HEAD
for k in "$K_SCU1" "$K_FWD1" "$K_SCU4" "$K_FWD4"; do FWD_TABLE+=$'\n'"$(row "$k")"; done
INGEST_TABLE=$HEAD
for k in "$K_ALONE" "$K_BUSY" "$K_DOWN" "$K_BACKLOG" "$K_FWDBUSY"; do INGEST_TABLE+=$'\n'"$(row "$k")"; done

TARGETS="| Target | Measured (median) | Per round | Goal | Result |
|---|---:|---|---:|---|
| forwarder, 1 assoc, vs storescu, 1 assoc | ${R1}× | $R1_ROUNDS | ≥ ${TARGET_RATIO}× | $R1_VERDICT |
| (for information) forwarder, 4 assoc, vs storescu ×4 | ${R4}× | $R4_ROUNDS | — | — |
| (for information) ingest while the forwarder drains, slower than ingest alone by | ${DROP}% | $DROP_ROUNDS | — | — |
| (for information) ingest with its destination down, slower than ingest alone by | ${DROP_DOWN}% | | — | — |"

echo
echo "Forwarding benchmark: a backlog of $N CT instances of 512x512x16 bit ($DATA_MB MB), $ROUNDS rounds"
echo
echo "$FWD_TABLE"
echo
echo "$INGEST_TABLE"
echo
printf '%s\n' "${BUSY_NOTES[@]}"
echo
echo "$TARGETS"
if (( ${#ODD[@]} )); then
    echo
    echo "Odd things seen:"
    for o in "${ODD[@]}"; do echo "- $o"; done
fi

if [[ ${BENCH_DOCS:-1} != 0 ]]; then
    mkdir -p "$ROOT/docs"
    machine_facts
    DEV=$(basename "$(df /work | awk 'NR == 2 { print $1 }')")
    ROT=$(cat "/sys/block/$DEV/queue/rotational" 2>/dev/null || echo "?")
    DCMTK_V=$("$STORESCU" --version 2>&1 | awk 'NR == 1 { sub(/^v/, "", $3); print $3 }')
    REV=$(code_rev)
    if [[ $N == 2000 && $ROUNDS == 3 ]]; then SIZE_NOTE="a full run"; else
        SIZE_NOTE="a **reduced** run (BENCH_N=$N, BENCH_ROUNDS=$ROUNDS; the full run is 2,000 in 3 rounds)"; fi
    {
        echo "## Forwarding benchmark"
        echo
        CMD="bash bench/forward.sh"
        if (( QUIET > 0 )); then CMD="BENCH_QUIET=$QUIET $CMD"; fi
        echo "Measured $(date -u '+%Y-%m-%d %H:%M UTC') by \`$CMD\` ($SIZE_NOTE; studywatch $REV),"
        echo "in $TOTAL_SECS s in all. Regenerate this section by running that command; the figures below are its output."
        echo
        echo "### Machine"
        echo
        echo "- $(nproc) CPU cores: $CPU; $MEM RAM; Linux $(uname -r)"
        echo "- Disk of /work: $DISK; a virtual disk (the kernel's rotational flag reads $ROT)"
        echo "- DCMTK $DCMTK_V (Debian package): storescu the competitor, storescp the destination"
        echo
        echo "### Setup"
        echo
        echo "- Set A and set B: $N CT instances each, 512×512×16 bit, explicit VR little endian,"
        echo "  $DATA_MB MB per set, generated deterministically by \`bench/gen_ct.py\` (cached in"
        echo "  bench/.data; set B is the next $N files of the same generator, with their own UIDs)."
        echo "- The destination: DCMTK \`storescp\` on 127.0.0.1 (\`-dhl -pdu $MAX_PDU\`, as in the ingest"
        echo "  benchmark; it never fsyncs), on an empty directory for each run: a single process for"
        echo "  one association, \`--fork\` for four, for both senders alike. \`TCP_NODELAY=1\` is in the"
        echo "  environment of storescp and storescu; the forwarder sets it on its sockets."
        echo "- storescu rows: storescu sends set A (four processes, each a contiguous quarter, for four"
        echo "  associations), timed from its start to its exit."
        echo "- Forwarder rows: one backlog serves them all. studywatch (\`storage.fsync = true\`) with"
        echo "  $(( 2 * ROUNDS )) \`[[forward.destinations]]\` at a port where nothing listens receives set A from"
        echo "  storescu, and \`forward status --json\` then shows $N pending for each. studywatch is"
        echo "  stopped, and \`forward retry\` makes every row due (after the failed attempts they"
        echo "  would wait 2 s or more). For each forwarder run the config lists one of those"
        echo "  destinations alone, at a fresh storescp's port (the others' rows stay queued, with no"
        echo "  sender), and the clock starts as \`studywatch serve\` starts: its sender reads the due"
        echo "  rows at once. The clock stops when \`forward status --json\` (polled every 100 ms, then"
        echo "  every 20 ms once storescp holds every file) shows 0 pending and $N sent. The time"
        echo "  thus includes the server's start-up and the commit of the last outcomes, and no idle"
        echo "  poll or backoff wait. *First instance stored after*: the modification time of the first"
        echo "  file storescp wrote, from that start."
        echo "- Rounds: each round runs storescu and the forwarder on 1 association, then storescu ×4 and"
        echo "  the forwarder on 4, one after the other (storescu first in odd rounds, the forwarder first"
        echo "  in even ones); the table gives medians over the rounds and the range, and the targets"
        echo "  table the ratio of medians and each round's own ratio."
        echo "- Sender CPU: user + system time of the storescu processes, or of the whole studywatch"
        echo "  process from its start to the last commit (start-up, catalog reads and writes included)."
        echo "- studywatch runs without \`RUST_BACKTRACE\`, as under systemd: with it set, each command set"
        echo "  decoded costs a backtrace capture inside dicom-rs (about 3% of the forwarder's CPU time)."
        echo "- Ingest rows: storescu sends studywatch (fsync on) a set on one association, timed from"
        echo "  its start to its exit, into an empty storage directory and catalog. *No destination*:"
        echo "  no forward destination configured. *While the forwarder drains*: set A was queued"
        echo "  for one destination (max_associations = 1) while it was down and made due; storescp"
        echo "  is then started, then studywatch, and storescu starts as soon as studywatch answers"
        echo "  C-ECHO. Set B is queued for the destination too, so the forwarder has work for the whole"
        echo "  ingest. *Its destination down*: that ingest of set A, while the sender's connection"
        echo "  attempts fail. Each round runs *no destination*, then the run *while the forwarder drains*."
        echo
        echo "### Results"
        echo
        echo "$FWD_TABLE"
        echo
        echo "$INGEST_TABLE"
        echo
        echo "Forwarded while set B was ingested (out of $(( 2 * N ))):"
        echo
        for b in "${BUSY_NOTES[@]}"; do echo "- $b"; done
        echo
        echo "### Targets"
        echo
        echo "$TARGETS"
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
        echo "between runs, and by much less within a round, so the target is a ratio to storescu"
        echo "measured in the same round, seconds apart, on the same disk, to the same destination; the"
        echo "per-round ratios show how far one round can be trusted. The senders, storescp and, in"
        echo "the ingest rows, studywatch's receiving side all share the two cores. While the forwarder"
        echo "drains during an ingest, storescp's own work (it decodes and writes every instance) is on"
        echo "those cores too, which a PACS on another machine would not be, so that slowdown is an"
        echo "upper bound."
        if (( QUIET > 0 )); then
            echo "Before each pair of runs and each ingest the script waited up to $QUIET s for other builds and"
            echo "tests on the machine to pause (\`BENCH_QUIET\`)."
        fi
        echo "The load column lists the 1-minute load average when each round's run began;"
        if (( ${#BUSY[@]} )); then
            echo "\`*\` marks runs at whose start or end another build or test run (rustc, cargo or"
            echo "cargo-nextest) was going on on the machine, and in the targets table the rounds with such a"
            echo "run: their figures are lower and noisier than an idle machine would give, and such work"
            echo "need not slow both senders alike (storescu is one thread that blocks at each step, the"
            echo "forwarder spreads over several), so a ratio from such rounds is less trustworthy."
        else
            echo "no other build or test run (rustc, cargo, cargo-nextest) was going on at the start or"
            echo "end of any run."
        fi
    } | "$PYTHON" "$ROOT/bench/write_section.py" "$ROOT/docs/benchmarks.md" forward \
        || die "could not write the forward section of docs/benchmarks.md"
    log "wrote the forward section of docs/benchmarks.md"
fi

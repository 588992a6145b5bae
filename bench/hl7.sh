#!/usr/bin/env bash
# HL7 intake benchmark: ORU^R01 reports over MLLP into studywatch with fsync
# on, measuring throughput and acknowledgement latency.
#
#   bash bench/hl7.sh                      full run: 20,000 messages on 4 connections
#   BENCH_HL7_N=2000 bash bench/hl7.sh     quick try with fewer messages
#
# Environment:
#   BENCH_HL7_N            messages to send (default 20000)
#   BENCH_HL7_CONNECTIONS  MLLP connections sending at once (default 4)
#   BENCH_DOCS=0           do not write the hl7 section of docs/benchmarks.md
#   BENCH_BUILD=0          skip `cargo build --release` (use the studywatch and
#                          hl7_load binaries already built)
#   BIN                    the studywatch binary to measure (default
#                          target/release/studywatch)
#   PYTHON                 interpreter for the script's small helpers (free ports,
#                          reading JSON, bench/write_section.py; default python3,
#                          standard library only)
#
# What it does: builds the release binary and the load generator
# examples/hl7_load.rs (target/release/examples/hl7_load), writes a config into
# bench/.work/hl7/ (DICOM and HL7 listeners on free 127.0.0.1 ports, storage
# and catalog in that directory, storage.fsync = true), starts
# `studywatch serve` and waits until the HL7 port accepts. The load generator
# (examples/hl7_load.rs: Rust, tokio on one thread, so that it takes little
# CPU from the gateway on the same machine) then sends the messages: each
# connection sends one ORU^R01, waits for its ACK, checks MSA-1 = AA and
# MSA-2 = the MSH-10 sent, and sends the next. The CPU time the load
# generator used is reported beside the results.
# Afterwards the catalog must list every acknowledged report (none of them
# links to a study, so they are all on the unmatched list), and studywatch
# is stopped with SIGTERM. The run starts from an empty catalog after a
# `sync`.
#
# Targets (from the issue): at least 2,000 messages/s over 4 connections and
# an ACK latency p99 under 20 ms, with fsync on.
#
# Exit status: 0 when the run completed and every message was acknowledged
# with AA (whether or not the targets were met: see the PASS/FAIL lines); 1
# when a message was refused or unanswered, the gateway died, or the catalog
# lacks an acknowledged report.

set -euo pipefail
export LC_ALL=C

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
N=${BENCH_HL7_N:-20000}
CONNECTIONS=${BENCH_HL7_CONNECTIONS:-4}
PYTHON=${PYTHON:-python3}
WORK=$ROOT/bench/.work/hl7
LOAD=$ROOT/target/release/examples/hl7_load
TARGET_RATE=2000
TARGET_P99_MS=20

SERVERS=()   # process-group ids of servers we started

source "$ROOT/bench/lib.sh"

cleanup() { stop_servers 50; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

[[ $N =~ ^[1-9][0-9]*$ ]] || die "BENCH_HL7_N must be a positive integer, not '$N'"
[[ $CONNECTIONS =~ ^[1-9][0-9]*$ ]] || die "BENCH_HL7_CONNECTIONS must be a positive integer, not '$CONNECTIONS'"
"$PYTHON" -c 'import json, socket' 2>/dev/null || die "$PYTHON does not run"


# wait_port PORT PID LOGFILE: until PORT on 127.0.0.1 accepts a connection.
wait_port() {
    local port=$1 pid=$2 logfile=$3
    for _ in $(seq 300); do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 20 "$logfile" >&2 || true
            die "studywatch exited before its HL7 port $port was ready (log: $logfile)"
        fi
        if (: <>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    die "studywatch's HL7 port $port did not accept connections within 30 s (log: $logfile)"
}

# stop_server PID: SIGTERM its process group, wait; sets STOP_RC.
stop_server() {
    local pid=$1 rc=0
    kill -TERM -- "-$pid" 2>/dev/null || true
    for _ in $(seq 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
        log "WARNING: studywatch $pid still running 20 s after SIGTERM; killing it"
        kill -KILL -- "-$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || rc=$?
    SERVERS=()
    STOP_RC=$rc
}

# json FILE KEY: one value from the load generator's JSON line.
json() {
    "$PYTHON" -c 'import json, sys; v = json.load(open(sys.argv[1]))[sys.argv[2]]; print("null" if v is None else v)' "$1" "$2"
}

ODD=()

# ---------------------------------------------------------------- build

if [[ ${BENCH_BUILD:-1} != 0 ]]; then
    log "cargo build --release --locked --bins --example hl7_load"
    (cd "$ROOT" && cargo build --release --locked --quiet --bins --example hl7_load) \
        || die "cargo build --release failed"
fi
[[ -x $BIN ]] || die "$BIN is missing"
[[ -x $LOAD ]] || die "$LOAD is missing (cargo build --release --example hl7_load)"

# ---------------------------------------------------------------- the run

rm -rf "$WORK"
mkdir -p "$WORK"
sync
dir=$WORK
DICOM_PORT=$(free_port)
HL7_PORT=$(free_port)
while [[ $HL7_PORT == "$DICOM_PORT" ]]; do HL7_PORT=$(free_port); done
MAX_CONNECTIONS=$(( CONNECTIONS > 16 ? CONNECTIONS : 16 ))
cat >"$dir/studywatch.toml" <<EOF
version = 1
[server]
shutdown_grace = "10s"
[log]
level = "warn"
[dicom]
ae_title = "STUDYWATCH"
listen = "127.0.0.1:$DICOM_PORT"
accept_unknown_callers = false
[storage]
path = "$dir/storage"
fsync = true
min_free_bytes = 0
[catalog]
path = "$dir/catalog.sqlite3"
[watchdog]
calendar = "$ROOT/conf/calendars/england-and-wales.toml"
[reports.hl7]
listen = "127.0.0.1:$HL7_PORT"
max_connections = $MAX_CONNECTIONS
[http]
listen = "127.0.0.1:$(free_port)"
EOF
"$BIN" check-config --config "$dir/studywatch.toml" >"$dir/check-config.out" 2>&1 \
    || { cat "$dir/check-config.out" >&2; die "studywatch refused the config $dir/studywatch.toml"; }

log "run: $N ORU^R01 over $CONNECTIONS connections into studywatch (fsync=on), HL7 port $HL7_PORT"
# setsid: the server gets its own process group, which cleanup kills.
setsid "$BIN" serve --config "$dir/studywatch.toml" >"$dir/studywatch.log" 2>&1 &
PID=$!
SERVERS+=("$PID")
wait_port "$HL7_PORT" "$PID" "$dir/studywatch.log"

LOAD_RC=0
# bash's `time` writes the load generator's user and system CPU seconds
# (building the messages included) into load.time.
TIMEFORMAT='%U %S'
{ time "$LOAD" --host 127.0.0.1 --port "$HL7_PORT" --connections "$CONNECTIONS" --messages "$N" \
    >"$dir/load.json" 2>"$dir/load.err"; } 2>"$dir/load.time" || LOAD_RC=$?
if ! kill -0 "$PID" 2>/dev/null; then
    tail -n 20 "$dir/studywatch.log" >&2 || true
    die "studywatch died during the run (log: $dir/studywatch.log)"
fi
if (( LOAD_RC != 0 )); then
    cat "$dir/load.json" "$dir/load.err" >&2 || true
    die "the load generator reported errors (exit status $LOAD_RC; $dir/load.err)"
fi

# Every AA promised a committed report: the catalog, read by the CLI beside
# the running server, must list them all.
LISTED=$("$BIN" reports --config "$dir/studywatch.toml" --unmatched --json --limit $(( N + 1 )) \
    2>"$dir/reports.err" | "$PYTHON" -c 'import json, sys; print(len(json.load(sys.stdin)))' \
    2>>"$dir/reports.err") || LISTED="?"
[[ $LISTED == "$N" ]] \
    || die "the catalog lists $LISTED unmatched reports after $N were acknowledged (see $dir/reports.err)"

stop_server "$PID"
if (( STOP_RC != 0 )); then
    ODD+=("studywatch exited with status $STOP_RC after SIGTERM")
    log "WARNING: studywatch exited with status $STOP_RC after SIGTERM"
fi
# The DICOM listener serves nobody in this run (no peers, unknown callers
# refused), and the server warns about that at start; no other warning or
# error is expected.
unexpected=$(sed 's/\x1b\[[0-9;]*m//g' "$dir/studywatch.log" \
    | grep -vE 'key=dicom\.peers' | grep -cE ' (ERROR|WARN) ' || true)
if (( unexpected > 0 )); then
    ODD+=("studywatch logged $unexpected warning(s) or error(s) (see bench/.work/hl7/studywatch.log)")
fi

# ---------------------------------------------------------------- report

SECS=$(json "$dir/load.json" seconds)
RATE=$(json "$dir/load.json" messages_per_s)
P50=$(json "$dir/load.json" p50_ms)
P99=$(json "$dir/load.json" p99_ms)
MAXMS=$(json "$dir/load.json" max_ms)
AVG_BYTES=$("$LOAD" --mean-bytes --messages "$N")
# Load generator CPU in milliseconds per message.
LOAD_CPU_MS=$(awk -v n="$N" 'NF == 2 { printf "%.3f", ($1 + $2) * 1000 / n; ok = 1 }
    END { if (!ok) print "?" }' "$dir/load.time")

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
verdict() {  # verdict VALUE OP LIMIT
    awk -v v="$1" -v l="$3" -v op="$2" 'BEGIN {
        ok = (op == ">=") ? (v >= l) : (v < l); print ok ? "PASS" : "FAIL" }'
}
R_RATE=$(ratio "$RATE" "$TARGET_RATE")
R_P99=$(ratio "$P99" "$TARGET_P99_MS")

RESULTS="| Messages | Connections | Seconds | Messages/s | ACK p50 | ACK p99 | ACK max |
|---:|---:|---:|---:|---:|---:|---:|
| $N | $CONNECTIONS | $SECS | $RATE | $P50 ms | $P99 ms | $MAXMS ms |"

TARGETS="| Target | Measured | Goal | Ratio to goal | Result |
|---|---:|---:|---:|---|
| messages/s, $CONNECTIONS connections, fsync=on | $RATE | ≥ $TARGET_RATE | ${R_RATE}× | $(verdict "$RATE" ">=" "$TARGET_RATE") |
| ACK latency p99, fsync=on | $P99 ms | < $TARGET_P99_MS ms | ${R_P99}× | $(verdict "$P99" "<" "$TARGET_P99_MS") |"

echo
echo "HL7 intake benchmark, $N ORU^R01 (about $AVG_BYTES bytes each) over $CONNECTIONS connections, fsync=on"
echo
echo "$RESULTS"
echo
echo "$TARGETS"
echo
echo "Load generator CPU (user + system, building the messages included): $LOAD_CPU_MS ms per message"
if (( ${#ODD[@]} )); then
    echo
    echo "Odd things seen:"
    for o in "${ODD[@]}"; do echo "- $o"; done
fi

if [[ ${BENCH_DOCS:-1} != 0 ]]; then
    machine_facts
    DEV=$(basename "$(df /work | awk 'NR == 2 { print $1 }')")
    ROT=$(cat "/sys/block/$DEV/queue/rotational" 2>/dev/null || echo "?")
    RUSTC_V=$(rustc --version 2>/dev/null | awk '{ print $2 }')
    REV=$(code_rev)
    if [[ $N == 20000 && $CONNECTIONS == 4 ]]; then SIZE_NOTE="a full run"; else
        SIZE_NOTE="a **reduced** run (BENCH_HL7_N=$N, BENCH_HL7_CONNECTIONS=$CONNECTIONS; the full run is 20,000 on 4)"; fi
    {
        echo "## HL7 intake benchmark"
        echo
        echo "Measured $(date -u '+%Y-%m-%d %H:%M UTC') by \`bash bench/hl7.sh\` ($SIZE_NOTE; studywatch $REV)."
        echo "Regenerate this section by running that command; the figures below are its output."
        echo
        echo "### Machine"
        echo
        echo "- $(nproc) CPU cores: $CPU; $MEM RAM; Linux $(uname -r)"
        echo "- Disk of /work: $DISK; a virtual disk (the kernel's rotational flag reads $ROT)"
        echo "- Load generator: \`examples/hl7_load.rs\` (release build, rustc ${RUSTC_V:-?}; tokio on one"
        echo "  thread), on the same machine; it used $LOAD_CPU_MS ms of CPU per message"
        echo
        echo "### Setup"
        echo
        echo "- $N ORU^R01 reports of about $AVG_BYTES bytes (7–9 OBX text lines each), built"
        echo "  deterministically by \`examples/hl7_load.rs\` before the clock starts. They rotate through"
        echo "  v2.3.1 with a ZDS study UID, v2.4 with the accession in OBR-18, and v2.5.1 with an IPC"
        echo "  segment. Every message has its own MSH-10, accession and order numbers and study UID,"
        echo "  and none matches a study, so each one is stored and put on the unmatched list."
        echo "- $CONNECTIONS MLLP connections to studywatch on 127.0.0.1. Each sends one message, waits for"
        echo "  its ACK, checks MSA-1 = AA and MSA-2 = the MSH-10 sent, and only then sends the next."
        echo "  Latency is from writing a message to reading its whole ACK frame. The time is from"
        echo "  opening the connections to the last ACK."
        echo "- studywatch with \`storage.fsync = true\` (SQLite \`synchronous = FULL\`), starting from"
        echo "  an empty catalog after a \`sync\`. An AA is sent only after the message is committed."
        echo "  After the run, \`studywatch reports --unmatched --json\` must list all $N reports."
        echo
        echo "### Results"
        echo
        echo "$RESULTS"
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
        echo "The targets here are absolute (messages/s and milliseconds), not ratios to a competitor"
        echo "measured in the same run, so the ±30% drift of this 2-core VM between runs (its fsync"
        echo "latency above all) moves them directly. A result within about a third of its goal"
        echo "should be read as \"near\", not as a firm PASS or FAIL. The load generator shares the"
        echo "two cores with the gateway, but takes little of them: $LOAD_CPU_MS ms of CPU per message"
        echo "in this run (the Python client it replaced took about ten times as much). Against a"
        echo "trivial Python MLLP server that only answers AA, it reached about 12,000–18,000"
        echo "messages/s on this VM (measured by hand, not by this script; that server was the limit),"
        echo "so up to about 6× the target rate it is not the bottleneck."
    } | "$PYTHON" "$ROOT/bench/write_section.py" "$ROOT/docs/benchmarks.md" hl7 \
        || die "could not write the hl7 section of docs/benchmarks.md"
    log "wrote the hl7 section of docs/benchmarks.md"
fi

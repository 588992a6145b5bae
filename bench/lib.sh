# Shell functions every benchmark script uses. Sourced, not run:
#   source "$ROOT/bench/lib.sh"
# The script sets ROOT, PYTHON (a python3 for small helpers) and the array
# SERVERS (process-group leaders of the gateways it started). Sourcing sets
# BIN, the studywatch binary to measure: $BIN from the environment, or the
# release build (DEFAULT_BIN).

DEFAULT_BIN=$ROOT/target/release/studywatch
BIN=${BIN:-$DEFAULT_BIN}

# code_rev: which code the figures are of, for the docs: the last commit that
# changed src/ or the manifests (later ones, such as a benchmark's figures, do
# not change what is measured), with a note of uncommitted changes and of a
# binary given as BIN.
code_rev() {
    local rev
    rev=$(cd "$ROOT" && git log -1 --format=%h -- src Cargo.toml Cargo.lock 2>/dev/null || true)
    rev=${rev:-"no commit yet"}
    if [[ -n $(cd "$ROOT" && git status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null) ]]; then
        rev+=" with uncommitted changes in src/"
    fi
    if [[ $BIN != "$DEFAULT_BIN" ]]; then
        rev+="; the binary built from it, run as \`BIN=$BIN\`"
    fi
    echo "$rev"
}

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }

# stop_servers TENTHS: SIGTERM every server's process group, wait up to
# TENTHS tenths of a second for each to exit, then SIGKILL what remains.
stop_servers() {
    local p tenths=$1
    for p in "${SERVERS[@]}"; do kill -TERM -- "-$p" 2>/dev/null || true; done
    for p in "${SERVERS[@]}"; do
        for _ in $(seq "$tenths"); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL -- "-$p" 2>/dev/null || true
    done
}

# A loopback port that was free a moment ago.
free_port() {
    "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Sets CPU, MEM and DISK: the facts about this machine that each results
# section of docs/benchmarks.md states.
machine_facts() {
    CPU=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
    MEM=$(awk '/^MemTotal:/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)
    DISK=$(df -hT /work | awk 'NR == 2 { printf "%s (%s, %s, %s free)", $1, $2, $3, $5 }')
}

# generated_catalog: sets CACHE, GEN_JSON and CACHED (yes|no). Generates a
# catalog with examples/watchdog_bench.rs into $WORK/cache/KEY, or reuses one
# generated less than CACHE_MINUTES ago with the same sizes and the same
# sources of the generator and the schema. Reads WORK, ROOT, HELPER, CONF,
# STUDIES, UNREPORTED, DAYS, OVERDUE_PERCENT and CACHE_MINUTES.
generated_catalog() {
    local src_hash key
    src_hash=$(cat "$ROOT/examples/watchdog_bench.rs" "$ROOT/src/catalog/schema.rs" | sha256sum | cut -c1-12)
    key="s$STUDIES-u$UNREPORTED-d$DAYS-o$OVERDUE_PERCENT-$src_hash"
    CACHE=$WORK/cache/$key
    GEN_JSON=$CACHE/generate.json
    CACHED=no
    if [[ -f $GEN_JSON && -f $CACHE/catalog.sqlite3 ]] && (( CACHE_MINUTES > 0 )) \
        && [[ -n $(find "$GEN_JSON" -mmin "-$CACHE_MINUTES" 2>/dev/null) ]]; then
        CACHED=yes
        log "catalog: reusing $CACHE (generated less than $CACHE_MINUTES min ago)"
    else
        # Other keys' catalogs are large (about 3.5 KB per study): keep one.
        rm -rf "$WORK/cache"
        mkdir -p "$CACHE"
        log "catalog: generating $STUDIES studies, $UNREPORTED unreported, into $CACHE"
        "$HELPER" generate --config "$CONF" --catalog "$CACHE/catalog.sqlite3" \
            --studies "$STUDIES" --unreported "$UNREPORTED" --days "$DAYS" \
            --overdue-percent "$OVERDUE_PERCENT" >"$CACHE/generate.tmp" 2>"$CACHE/generate.log" \
            || { tail -n 20 "$CACHE/generate.log" >&2; die "generating the catalog failed (log: $CACHE/generate.log)"; }
        mv "$CACHE/generate.tmp" "$GEN_JSON"
        grep '^generate:' "$CACHE/generate.log" | tail -n 1 >&2 || true
    fi
    [[ ! -e $CACHE/catalog.sqlite3-wal ]] || die "$CACHE/catalog.sqlite3 has a WAL file: it was not closed cleanly"
}

# distinct_ports N: prints N loopback ports that were free a moment ago, all
# different from each other.
distinct_ports() {
    local -a ports=()
    local p
    while (( ${#ports[@]} < $1 )); do
        p=$(free_port)
        [[ " ${ports[*]} " == *" $p "* ]] || ports+=("$p")
    done
    echo "${ports[@]}"
}

# gateway_config SCRIPT: prints the config every benchmark's gateway shares
# (fsync on, log level warn, unknown callers accepted, the bank-holiday
# CALENDAR) for the run directory RUN and the ports DICOM_PORT, HL7_PORT and
# HTTP_PORT; the caller appends its own rules.
gateway_config() {
    cat <<EOF
# Written by $1; rewritten on every run.
version = 1
[server]
shutdown_grace = "10s"
[log]
level = "warn"
[dicom]
ae_title = "STUDYWATCH"
listen = "127.0.0.1:$DICOM_PORT"
accept_unknown_callers = true
[storage]
path = "$RUN/storage"
fsync = true
[catalog]
path = "$RUN/catalog.sqlite3"
[reports.hl7]
listen = "127.0.0.1:$HL7_PORT"
[http]
listen = "127.0.0.1:$HTTP_PORT"
[watchdog]
calendar = "$CALENDAR"
EOF
}

# fresh_dir NAME: an empty $WORK/NAME, after a `sync` so that the previous
# run's dirty pages are not flushed during the next; prints its path.
fresh_dir() {
    local dir=$WORK/$1
    rm -rf "$dir"
    mkdir -p "$dir"
    sync
    echo "$dir"
}

# wait_ready AE PORT PID LOGFILE: until the server on PORT answers C-ECHO
# (DCMTK's echoscu, $ECHOSCU); dies, showing LOGFILE's tail, if process PID
# exits first or 30 s pass.
wait_ready() {
    local ae=$1 port=$2 pid=$3 logfile=$4
    for _ in $(seq 300); do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 20 "$logfile" >&2 || true
            die "$ae on port $port exited before it was ready (log: $logfile)"
        fi
        if "$ECHOSCU" -aet BENCH -aec "$ae" 127.0.0.1 "$port" >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.1
    done
    die "$ae on port $port did not answer C-ECHO within 30 s (log: $logfile)"
}

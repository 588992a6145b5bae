# Shell functions every benchmark script uses. Sourced, not run:
#   source "$ROOT/bench/lib.sh"
# The script sets ROOT, PYTHON (a python3 for small helpers) and the array
# SERVERS (process-group leaders of the gateways it started).

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

# tests/fleet/lib/common.sh - helpers shared by the fleet scripts (sourced).

fleet_die() { echo "fleet: $*" >&2; exit 1; }

# python3 with PyYAML (Debian's, when a pyenv shim is first on PATH)
fleet_python() {
    local p
    for p in /usr/bin/python3 python3; do
        if "$p" -c 'import yaml' 2>/dev/null; then echo "$p"; return 0; fi
    done
    fleet_die "python3 with PyYAML not found (apt-get install python3-yaml)"
}

# start time of a process in clock ticks since boot (guards against pid reuse)
fleet_starttime() { awk '{print $22}' "/proc/$1/stat" 2>/dev/null; }

# fleet_record DIR PID LABEL: remember a started process
fleet_record() {
    echo "$2" >>"$1/pids"
    echo "$2 $(fleet_starttime "$2") $3" >>"$1/pids.info"
}

# fleet_port_open HOST PORT: 0 when something accepts TCP there
fleet_port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# fleet_wait_ports TIMEOUT_S HOST:PORT... : poll (50 ms) until every port
# accepts; prints the ones still closed and returns 1 on timeout.
fleet_wait_ports() {
    local deadline=$(( $(date +%s%N) / 1000000 + $1 * 1000 )) hp pending=()
    shift
    pending=("$@")
    while :; do
        local still=()
        for hp in "${pending[@]}"; do
            fleet_port_open "${hp%:*}" "${hp##*:}" || still+=("$hp")
        done
        [ ${#still[@]} = 0 ] && return 0
        pending=("${still[@]}")
        if [ $(( $(date +%s%N) / 1000000 )) -ge $deadline ]; then
            printf '%s\n' "${pending[@]}"
            return 1
        fi
        sleep 0.05
    done
}

# fleet_alive PID STARTTIME: 0 when that very process still exists (not a
# zombie, not a reused pid)
fleet_alive() {
    local st
    [ -e "/proc/$1" ] || return 1
    st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
    [ "$st" = Z ] && return 1
    [ -z "${2:-}" ] && return 0
    [ "$(fleet_starttime "$1")" = "$2" ]
}

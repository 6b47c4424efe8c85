# shellcheck shell=bash disable=SC2034
# tests/fleet/lib/common.sh - helpers shared by the fleet scripts (sourced).

FLEET_LIB=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export PYTHONDONTWRITEBYTECODE=1  # no __pycache__ in the tree

fleet_die() { echo "fleet: $*" >&2; exit 1; }

# python3 with PyYAML (Debian's, when a pyenv shim is first on PATH)
fleet_python() {
    local p
    for p in /usr/bin/python3 python3; do
        if "$p" -c 'import yaml' 2>/dev/null; then echo "$p"; return 0; fi
    done
    fleet_die "python3 with PyYAML not found (apt-get install python3-yaml)"
}

# fleet_stat PID: sets FLEET_STATE, FLEET_PGID, FLEET_START (fields 3, 5, 22 of
# /proc/PID/stat; the start time guards against pid reuse) without forking,
# since stop checks hundreds of pids many times.
fleet_stat() {
    local line rest f
    FLEET_STATE='' FLEET_START='' FLEET_PGID=''
    { read -r line <"/proc/$1/stat"; } 2>/dev/null || return 1
    rest=${line##*) }   # the command name may contain spaces and parentheses
    read -r -a f <<<"$rest"
    FLEET_STATE=${f[0]} FLEET_PGID=${f[2]} FLEET_START=${f[19]}
}

# start time of a process in clock ticks since boot
fleet_starttime() { fleet_stat "$1" && echo "$FLEET_START"; }

# fleet_record DIR PID LABEL: remember a started process
fleet_record() {
    echo "$2" >>"$1/pids"
    echo "$2 $(fleet_starttime "$2") $3" >>"$1/pids.info"
}

# fleet_port_open HOST PORT: 0 when something accepts TCP there
fleet_port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# fleet_wait_ports TIMEOUT_S HOST:PORT... : poll (50 ms) until every port
# accepts; prints the ones still closed and returns 1 on timeout.
fleet_wait_ports() { "$(fleet_python)" "$FLEET_LIB/ports.py" wait "$@"; }

# fleet_open_ports HOST:PORT... : prints those that accept TCP now
fleet_open_ports() { "$(fleet_python)" "$FLEET_LIB/ports.py" open "$@"; }

# fleet_alive PID STARTTIME: 0 when that very process still exists (not a
# zombie, not a reused pid)
fleet_alive() {
    fleet_stat "$1" || return 1
    [ "$FLEET_STATE" != Z ] || return 1
    [ -z "${2:-}" ] || [ "$FLEET_START" = "$2" ]
}

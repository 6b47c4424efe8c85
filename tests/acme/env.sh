# shellcheck shell=bash
# tests/acme/env.sh - sourced by tests/integration/40_acme.sh: a private
# pebble + pebble-challtestsrv and two webroot HTTP servers, all on
# loopback (127.0.0.1:14030-14039 and 127.0.30.0/24 only).
#
#   acme_env_start DIR   generate a CA, start everything, export ACME_*
#   pebble_restart DIR [VAR=VALUE...]   restart pebble with extra env
#   acme_env_stop DIR    kill every process recorded in DIR/pids
ACME_PORT=14030         # pebble ACME
ACME_MGMT_PORT=14031    # pebble management (roots, intermediates)
ACME_DNS_PORT=14032     # challtestsrv DNS
ACME_API_PORT=14033     # challtestsrv management API
ACME_FAKE_ADDR=127.0.30.9
ACME_FAKE_PORT=14035    # hostile fake ACME server
ACME_WEB1=127.0.30.1    # h1.fleet.test and every unknown name
ACME_WEB2=127.0.30.2    # h2.fleet.test

_acme_wait_port() { # host port
    for _ in $(seq 1 100); do
        (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "acme env: $1:$2 did not come up" >&2
    return 1
}

_acme_bg() { # dir name cmd... : start in background, record pid
    local dir=$1 name=$2
    shift 2
    "$@" >"$dir/$name.log" 2>&1 &
    echo "$!" >>"$dir/pids"
    eval "ACME_PID_${name//-/_}=$!"
}

acme_env_start() {
    local dir=$1
    mkdir -p "$dir/www1" "$dir/www2"
    : >"$dir/pids"
    # a CA of our own for pebble's HTTPS listener
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj "/CN=certfleet test CA" -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=127.0.0.1" \
        -keyout "$dir/pebble.key" -out "$dir/pebble.csr" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$dir/san.ext"
    openssl x509 -req -in "$dir/pebble.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
        -CAcreateserial -days 2 -extfile "$dir/san.ext" -out "$dir/pebble.pem" 2>/dev/null
    cat >"$dir/pebble.json" <<JSON
{"pebble": {"listenAddress": "127.0.0.1:$ACME_PORT",
  "managementListenAddress": "127.0.0.1:$ACME_MGMT_PORT",
  "certificate": "$dir/pebble.pem", "privateKey": "$dir/pebble.key",
  "httpPort": 5002, "tlsPort": 5001, "ocspResponderURL": "",
  "externalAccountBindingRequired": false}}
JSON
    _acme_bg "$dir" challtestsrv pebble-challtestsrv -management "127.0.0.1:$ACME_API_PORT" \
        -dns01 "127.0.0.1:$ACME_DNS_PORT" -http01 "" -https01 "" -tlsalpn01 "" \
        -defaultIPv4 "$ACME_WEB1" -defaultIPv6 ""
    _acme_bg "$dir" web1 python3 -m http.server 5002 --bind "$ACME_WEB1" --directory "$dir/www1"
    _acme_bg "$dir" web2 python3 -m http.server 5002 --bind "$ACME_WEB2" --directory "$dir/www2"
    # the fake serves $dir/fake-cert.pem as the certificate of its issuing scenarios
    _acme_bg "$dir" fake python3 "$(dirname "${BASH_SOURCE[0]}")/fake_acme.py" \
        "$ACME_FAKE_ADDR" "$ACME_FAKE_PORT" "$dir/fake-cert.pem"
    _acme_wait_port 127.0.0.1 "$ACME_API_PORT" || return 1
    curl -fsS -d "{\"host\":\"h2.fleet.test\",\"addresses\":[\"$ACME_WEB2\"]}" \
        "http://127.0.0.1:$ACME_API_PORT/add-a" >/dev/null || return 1
    pebble_restart "$dir" || return 1
    _acme_wait_port "$ACME_WEB1" 5002 && _acme_wait_port "$ACME_WEB2" 5002 &&
        _acme_wait_port "$ACME_FAKE_ADDR" "$ACME_FAKE_PORT"
}

# (Re)start pebble; arguments are extra environment, e.g. PEBBLE_WFE_NONCEREJECT=90.
pebble_restart() {
    local dir=$1
    shift
    if [ -n "${ACME_PID_pebble:-}" ]; then
        kill "$ACME_PID_pebble" 2>/dev/null
        wait "$ACME_PID_pebble" 2>/dev/null
    fi
    _acme_bg "$dir" pebble env PEBBLE_VA_NOSLEEP=1 PEBBLE_AUTHZREUSE=100 "$@" \
        pebble -config "$dir/pebble.json" -dnsserver "127.0.0.1:$ACME_DNS_PORT"
    _acme_wait_port 127.0.0.1 "$ACME_PORT" && _acme_wait_port 127.0.0.1 "$ACME_MGMT_PORT"
}

acme_env_stop() {
    local dir=$1 pid
    [ -f "$dir/pids" ] || return 0
    while read -r pid; do
        kill "$pid" 2>/dev/null
    done <"$dir/pids"
    while read -r pid; do
        wait "$pid" 2>/dev/null
    done <"$dir/pids"
    : >"$dir/pids"
}

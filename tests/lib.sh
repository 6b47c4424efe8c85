# shellcheck shell=bash
# tests/lib.sh - sourced by integration tests: TAP helpers.
# ok "desc" / not_ok "desc" [detail] / check "desc" cmd... / is "desc" got want
CF_TESTNUM=0
CF_FAILS=0
CERTFLEET=${CERTFLEET:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/certfleet}
ok() { CF_TESTNUM=$((CF_TESTNUM + 1)); echo "ok $CF_TESTNUM - $1"; }
not_ok() {
    CF_TESTNUM=$((CF_TESTNUM + 1)); CF_FAILS=$((CF_FAILS + 1))
    echo "not ok $CF_TESTNUM - $1"
    [ -n "${2:-}" ] && printf '%s\n' "$2" | sed 's/^/#   /'
    return 0
}
# check "desc" command args...: passes when the command exits 0
check() { local d=$1; shift; if "$@" >/tmp/cf-check.$$ 2>&1; then ok "$d"; else not_ok "$d" "$(tail -20 /tmp/cf-check.$$)"; fi; rm -f /tmp/cf-check.$$; }
# is "desc" got want
is() { if [ "$2" = "$3" ]; then ok "$1"; else not_ok "$1" "got:  $2
want: $3"; return 1; fi; }
# like "desc" text regex
like() { if printf '%s' "$2" | grep -qE -- "$3"; then ok "$1"; else not_ok "$1" "text: $(printf '%s' "$2" | head -20)
does not match: $3"; fi; }
finish() { exit $(( CF_FAILS > 0 )); }

# ---- the local fleet -------------------------------------------------
# fleet_up NAME [start options...]: start a fleet in a fresh directory
# (stopped at exit, even when the test fails) and source its env.
# Sets FDIR, STATE, INV; cf ARGS... runs certfleet against it.
CF_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
fleet_up() {
    local name=$1; shift
    FDIR=$(mktemp -d "/tmp/cf-$name.XXXXXX")
    trap 'fleet_down' EXIT
    if ! "$CF_ROOT/tests/fleet/start" --dir "$FDIR" "$@" >"$FDIR/start.log" 2>&1; then
        echo "# fleet did not start:"; sed 's/^/#   /' "$FDIR/start.log"
        not_ok "fleet starts"; finish
    fi
    # shellcheck disable=SC1091
    . "$FDIR/env"
    STATE=$FDIR/state
    INV=$FLEET_INVENTORY
    mkdir -p "$STATE"
}
fleet_down() {
    [ -n "${FDIR:-}" ] && "$CF_ROOT/tests/fleet/stop" "$FDIR" >/dev/null 2>&1
    [ -n "${FDIR:-}" ] && [ -z "${KEEP_FLEET:-}" ] && rm -rf "$FDIR"
    return 0
}
# cf SUBCOMMAND ARGS...: certfleet against the fleet; output in $OUT, exit code in $RC
cf() {
    local sub=$1; shift
    OUT=$("$CERTFLEET" "$sub" -i "$INV" --known-hosts "$FLEET_KNOWN_HOSTS" \
        --state-dir "$STATE" --timeout "${CF_TIMEOUT:-10}" "$@" 2>&1)
    # shellcheck disable=SC2034 # RC is read by the scripts that source this
    RC=$?
    printf '%s\n' "$OUT" >>"${FDIR:-/tmp}/certfleet.log"
}
# root of a fleet host
hroot() { echo "$FLEET_DIR/hosts/$1/root"; }
# serial served by ADDR:5001 for SNI NAME, as openssl prints it
served_serial() {
    echo | timeout 10 openssl s_client -connect "$1:${FLEET_HTTPS_PORT:-5001}" -servername "$2" 2>/dev/null \
        | openssl x509 -noout -serial 2>/dev/null | sed 's/^serial=//'
}
# recap counter for a host: recap_field OUT HOST changed
recap_field() { printf '%s\n' "$1" | sed -n "s/^$2 *: .*$3=\([0-9]*\).*/\1/p" | head -1; }
# served_serial_is ADDR NAME WANT: poll up to 5 s for nginx's workers to
# pick up a reload (a HUP replaces workers gracefully), then print what is
# served
served_serial_is() {
    local s
    for _ in $(seq 1 25); do
        s=$(served_serial "$1" "$2")
        [ "$s" = "$3" ] && break
        sleep 0.2
    done
    echo "$s"
}

# fail_after_swap HOST CERT SCRIPT [MESSAGE]: make HOST's certbot_test_command a
# script that fails (with an nginx-like message, then MESSAGE) once CERT's live link no
# longer points where it points now: a config that breaks only with the
# swapped files, so a push is rolled back.  restore_test_command HOST undoes it.
fail_after_swap() {
    local r t
    r=$(hroot "$1")
    t=$(readlink "$r/etc/letsencrypt/live/$2/cert.pem")
    {
        echo '#!/bin/sh'
        echo "t=\$(readlink '$r/etc/letsencrypt/live/$2/cert.pem')"
        echo "[ \"\$t\" = '$t' ] || { echo \"nginx: [emerg] cannot load \$t (the swapped version)\" >&2; cat '$3.msg' >&2; exit 1; }"
        echo "exec '$r/bin/nginx-ctl' test"
    } >"$3"
    printf '%s\n' "${4:-}" >"$3.msg"
    chmod 755 "$3"
    local hv=$FLEET_DIR/inventory/host_vars/$1.yml
    cp "$hv" "$hv.orig"
    grep -v '^certbot_test_command:' "$hv.orig" >"$hv"
    echo "certbot_test_command: \"$3\"" >>"$hv"
}
restore_test_command() { mv "$FLEET_DIR/inventory/host_vars/$1.yml.orig" "$FLEET_DIR/inventory/host_vars/$1.yml"; }

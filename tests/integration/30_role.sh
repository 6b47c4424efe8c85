#!/bin/bash
# 30_role: the certbot role converges real hosts of the local test fleet
# (OpenSSH sshd + nginx per host) over certfleet's own SSH transport.
#
# No command drives the role on its own yet, so the converge steps live in
# build/unit/test_role (its "real host" group runs when CF_TEST_SSH_ADDR is
# set): first converge changes things, a placeholder certificate is put in
# live/ (the apply pipeline does that for new hosts), the handlers test and
# reload nginx, a second converge reports changed=0, and --check on a
# drifted host (a deleted symlink, an edited snippet) reports exactly those
# two with a diff and writes nothing.  This script starts the fleet, runs
# that for every host, and checks from the outside what nginx now serves.
source "$(dirname "$0")/../lib.sh"
set -u
REPO=$(cd "$(dirname "$0")/../.." && pwd)
FLEET=$REPO/tests/fleet
SUBNET=${ROLE_TEST_SUBNET:-127.0.50}
PB=${ROLE_TEST_PORT_BASE:-14050}
# the role's port-80 server listens here on each host (the fleet's own
# nginx.conf already has a default server on :5002)
REDIRECT_PORT=$((PB + 3))
suffix=; [ "${SANITIZE:-0}" = 1 ] && suffix=-san
BIN=${ROLE_TEST_BIN:-$REPO/build/unit$suffix/test_role}
DIR=$(mktemp -d /tmp/cf-role30.XXXXXX)
trap '"$FLEET/stop" "$DIR" --clean >/dev/null 2>&1' EXIT

[ -x "$BIN" ] || { not_ok "test binary $BIN exists (make unit-bins)"; finish; }

out=$("$FLEET/start" --dir "$DIR" --hosts 3 --subnet "$SUBNET" --port-base "$PB" --no-pebble 2>&1)
rc=$?
echo "# $out" | head -3
is "fleet of 3 hosts starts" "$rc" 0
[ -f "$DIR/env" ] || finish
. "$DIR/env"
# a new host is down: its site points at certificate links that do not exist yet
like "nginx is down on the new hosts before the role ran" "$out" "nginx down on 3 host"

i=0
for h in $FLEET_HOSTS; do
    i=$((i + 1))
    addr=$SUBNET.$i
    root=$DIR/hosts/$h/root
    log=$DIR/role-$h.log
    CF_TEST_SSH_ADDR=$addr CF_TEST_SSH_PORT=$FLEET_SSH_PORT CF_TEST_SSH_USER=root \
    CF_TEST_SSH_KEY=$FLEET_KEY CF_TEST_KNOWN_HOSTS=$FLEET_KNOWN_HOSTS \
    CF_TEST_HOST_NAME=$h CF_TEST_HOST_ROOT=$root \
    CF_TEST_TEST_CMD="$root/bin/nginx-ctl test" CF_TEST_RELOAD_CMD="$root/bin/nginx-ctl reload" \
    CF_TEST_HTTP_LISTEN="$addr:$REDIRECT_PORT" CF_ROLES_DIR=$REPO/roles CMOCKA_MESSAGE_OUTPUT=stdout \
        timeout 120 "$BIN" >"$log" 2>&1
    rc=$?
    grep '^# ' "$log" | sed "s/^# /# $h: /"
    if [ $rc = 0 ] && grep -q 'OK \] test_converge_real_host' "$log"; then
        ok "$h: converge, handlers, changed=0 on re-run, --check sees exactly the drift"
    else
        not_ok "$h: converge on a real host (rc $rc)" "$(grep -vE '^\s+#' "$log" | tail -25)"
    fi

    check "$h: nginx-ctl test passes with the role's snippets included" "$root/bin/nginx-ctl" test
    check "$h: nginx runs after the reload handler" "$root/bin/nginx-ctl" status
    is "$h: key link points into live/" "$(readlink "$root/etc/nginx/certs/$h.key")" \
        "$root/etc/letsencrypt/live/$h/privkey.pem"
    is "$h: deploy hook is executable" "$(stat -c %a "$root/etc/letsencrypt/renewal-hooks/deploy/$h.sh")" 755
    is "$h: archive dir is private" "$(stat -c %a "$root/etc/letsencrypt/archive/$h")" 700

    # the challenge snippet serves tokens from the webroot on the fleet's
    # HTTP server and on the role's port-80 server, which redirects the rest
    tok=role30-$RANDOM$RANDOM
    echo "$tok.keyauth" >"$root/var/www/letsencrypt/.well-known/acme-challenge/$tok"
    is "$h: token served by the challenge snippet" \
        "$(curl -s --max-time 5 "http://$addr:$FLEET_HTTP_PORT/.well-known/acme-challenge/$tok")" "$tok.keyauth"
    is "$h: token served by the role's port-80 server" \
        "$(curl -s --max-time 5 "http://$addr:$REDIRECT_PORT/.well-known/acme-challenge/$tok")" "$tok.keyauth"
    is "$h: port-80 server redirects everything else to https" \
        "$(curl -s --max-time 5 -o /dev/null -w '%{http_code} %{redirect_url}' -H "Host: $h.fleet.test" "http://$addr:$REDIRECT_PORT/x?y=1")" \
        "301 https://$h.fleet.test/x?y=1"
    rm -f "$root/var/www/letsencrypt/.well-known/acme-challenge/$tok"

    # the deploy hook an operator would run by hand: test, then reload
    out=$("$root/etc/letsencrypt/renewal-hooks/deploy/$h.sh" 2>&1)
    is "$h: deploy hook run by hand exits 0 ($out)" "$?" 0
done

# nothing hostile ran anywhere
check "no hostile command ran" test ! -e /tmp/pwned-role
finish

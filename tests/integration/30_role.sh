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
    CF_TEST_HTTP_LISTEN="$addr:$FLEET_HTTP_PORT" CF_ROLES_DIR=$REPO/roles CMOCKA_MESSAGE_OUTPUT=stdout \
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

    # the role's port-80 server (the fleet's HTTP port stands for 80) is the
    # default server: it serves tokens from the webroot through the
    # challenge snippet and redirects the rest; the fleet's own fallback
    # server includes the same snippet
    tok=role30-$RANDOM$RANDOM
    url=http://$addr:$FLEET_HTTP_PORT
    echo "$tok.keyauth" >"$root/var/www/letsencrypt/.well-known/acme-challenge/$tok"
    is "$h: token served by the role's port-80 server" \
        "$(curl -s --max-time 5 -H "Host: $h.fleet.test" "$url/.well-known/acme-challenge/$tok")" "$tok.keyauth"
    is "$h: token served through the snippet in another server" \
        "$(curl -s --max-time 5 -H "Host: fallback.$h.invalid" "$url/.well-known/acme-challenge/$tok")" "$tok.keyauth"
    is "$h: port-80 server redirects everything else to https" \
        "$(curl -s --max-time 5 -o /dev/null -w '%{http_code} %{redirect_url}' -H "Host: $h.fleet.test" "$url/x?y=1")" \
        "301 https://$h.fleet.test/x?y=1"
    rm -f "$root/var/www/letsencrypt/.well-known/acme-challenge/$tok"

    # the deploy hook an operator would run by hand: test, then reload
    out=$("$root/etc/letsencrypt/renewal-hooks/deploy/$h.sh" 2>&1)
    is "$h: deploy hook run by hand exits 0 ($out)" "$?" 0
done

# The role is plain Ansible too: ansible-playbook on the same role and
# variables must produce byte-identical files, the same modes and the same
# link targets as certfleet's own engine renders (templates, filters,
# trim_blocks, loops, defaults).
if command -v ansible-playbook >/dev/null; then
    A=$DIR/ansible
    R=$A/root
    mkdir -p "$A"
    cat >"$A/cf.yml" <<VARS
certfleet_host_root: $R
certbot_hsts: true
certbot_test_command: "true"
certbot_reload_command: "true"
certbot_domains:
  - domains: [foxycart-sandbox.example.com, foxycart-sandbox3.example.com]
    webroot: /var/www/letsencrypt
    cert_name: foxycart-sandbox
  - domains: [other.example.com]
    webroot: /srv/acme
certbot_services:
  - name: foxycart-sandbox
    cert_source: foxycart-sandbox
  - name: other
    cert_source: other.example.com
VARS
    # Ansible has no host root: give it the joined paths instead
    sed -e "s|^certfleet_host_root: .*|certfleet_host_root: ''|" -e "s|webroot: /|webroot: $R/|" "$A/cf.yml" >"$A/ansible.yml"
    cat >>"$A/ansible.yml" <<VARS
certbot_webroot: $R/var/www/letsencrypt
certbot_config_dir: $R/etc/letsencrypt
certbot_deploy_hook_dir: $R/etc/letsencrypt/renewal-hooks/deploy
nginx_conf_dir: $R/etc/nginx
nginx_certs_dir: $R/etc/nginx/certs
nginx_snippets_dir: $R/etc/nginx/snippets
nginx_http_conf: $R/etc/nginx/conf.d/certfleet-http.conf
VARS
    printf -- '- hosts: localhost\n  connection: local\n  gather_facts: false\n  roles: [certbot]\n' >"$A/play.yml"
    (cd "$A" && ANSIBLE_ROLES_PATH=$REPO/roles ANSIBLE_NOCOLOR=1 timeout 300 \
        ansible-playbook -e "@$A/ansible.yml" play.yml) >"$A/ansible.log" 2>&1
    is "ansible-playbook runs the shipped role" "$?" 0
    CF_TEST_PLAN_VARS=$A/cf.yml CF_ROLES_DIR=$REPO/roles CMOCKA_MESSAGE_OUTPUT=stdout "$BIN" >"$A/plan.log" 2>&1
    is "certfleet renders the same vars" "$?" 0
    n=0 bad=()
    while read -r _ kind path mode want; do
        n=$((n + 1))
        case $kind in
        d) got=$(stat -c %a "$path" 2>&1); [ "$got" = "$mode" ] || bad+=("dir $path: mode $got, certfleet $mode") ;;
        l) got=$(readlink "$path" 2>&1); [ "$got" = "$want" ] || bad+=("link $path -> $got, certfleet $want") ;;
        f) got=$(sha256sum "$path" 2>&1 | cut -c1-64); [ "$got" = "$want" ] || bad+=("file $path differs")
           got=$(stat -c %a "$path" 2>&1); [ "$got" = "$mode" ] || bad+=("file $path: mode $got, certfleet $mode") ;;
        esac
    done < <(grep '^plan ' "$A/plan.log")
    check "certfleet's plan has every resource kind ($n resources)" test "$n" -ge 20
    is "ansible-playbook and certfleet agree on every file, mode and link" "${bad[*]:-}" ""
else
    not_ok "ansible-playbook is installed (Debian package ansible)"
fi

# nothing hostile ran anywhere
check "no hostile command ran" test ! -e /tmp/pwned-role
finish

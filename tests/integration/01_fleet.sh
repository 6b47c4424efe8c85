#!/bin/bash
# 01_fleet: the local test fleet starts 3 real hosts (sshd + nginx each) with
# pebble and challtestsrv in under 10 s, every server answers as itself, and
# stop leaves no process and no listening port behind.
source "$(dirname "$0")/../lib.sh"
set -u
REPO=$(cd "$(dirname "$0")/../.." && pwd)
FLEET=$REPO/tests/fleet
SUBNET=${FLEET_TEST_SUBNET:-127.0.1}
PB=${FLEET_TEST_PORT_BASE:-14000}
DIR=$(mktemp -d /tmp/cf-fleet01.XXXXXX)
trap '"$FLEET/stop" "$DIR" --clean >/dev/null 2>&1' EXIT

alive() { # pid: exists and is not a zombie
    [ -e "/proc/$1" ] && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]
}
port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

t0=$(date +%s%N)
out=$("$FLEET/start" --dir "$DIR" --hosts 3 --subnet "$SUBNET" --port-base "$PB" 2>&1)
rc=$?
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
echo "# start: ${ms} ms: $out" | head -3
is "fleet start exits 0" "$rc" 0
check "3 hosts start in under 10 s (took ${ms} ms)" test "$ms" -lt 10000
[ -f "$DIR/env" ] || { not_ok "start wrote $DIR/env"; finish; }
. "$DIR/env"
is "env lists the three hosts" "$FLEET_HOSTS" "h1 h2 h3"
is "env: ACME directory URL" "$FLEET_ACME" "https://127.0.0.1:$PB/dir"
is "pids lists challtestsrv, pebble and 3 sshd" "$(wc -l <"$DIR/pids")" 5

out=$("$FLEET/start" --dir "$DIR" --hosts 3 --subnet "$SUBNET" --port-base "$PB" 2>&1)
rc=$?
like "a second start on a running fleet is refused" "$rc $out" "^1 .*already running"

# every sshd answers with its own host key, checked strictly
SSH=(ssh -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$FLEET_KNOWN_HOSTS"
     -o ConnectTimeout=5 -i "$FLEET_KEY" -p 2222)
fps=()
for i in 1 2 3; do
    a=$SUBNET.$i
    check "ssh root@$a:2222 with strict known_hosts" "${SSH[@]}" "root@$a" true
    served=$(ssh-keyscan -t ed25519 -p 2222 "$a" 2>/dev/null | awk '{print $3}')
    own=$(awk '{print $2}' "$DIR/hosts/h$i/root/etc/ssh/ssh_host_ed25519_key.pub")
    check "h$i's sshd presents h$i's own host key" test -n "$served" -a "$served" = "$own"
    fps+=("$served")
done
is "the three host keys differ" "$(printf '%s\n' "${fps[@]}" | sort -u | wc -l)" 3
# the strict check can fail: h2's key under h1's address is refused
sed -n '2p' "$FLEET_KNOWN_HOSTS" | sed "s/^\[[0-9.]*\]/[$SUBNET.1]/" >"$DIR/wrong_known_hosts"
if ssh -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$DIR/wrong_known_hosts" \
    -o ConnectTimeout=5 -i "$FLEET_KEY" -p 2222 "root@$SUBNET.1" true 2>/dev/null; then
    not_ok "a wrong host key for h1 is refused"
else
    ok "a wrong host key for h1 is refused"
fi

# each host's root and its control script
for i in 1 2 3; do
    r=$DIR/hosts/h$i/root
    check "h$i root has etc/nginx, etc/letsencrypt, var/www/letsencrypt, var/log, run" \
        test -d "$r/etc/nginx/sites-enabled" -a -d "$r/etc/letsencrypt" -a -d "$r/var/www/letsencrypt" \
        -a -d "$r/var/log/nginx" -a -d "$r/run" -a -x "$r/bin/nginx-ctl"
done
R1=$DIR/hosts/h1/root
like "h1's site points at its certificate links" "$(cat "$R1/etc/nginx/sites-enabled/h1.conf")" \
    "ssl_certificate $R1/etc/nginx/certs/h1.fullchain.crt;"
out=$("$R1/bin/nginx-ctl" test 2>&1)
like "a new host's config does not test ok before its certificate exists" "$out" "cannot load certificate"
"$R1/bin/nginx-ctl" status >/dev/null 2>&1
is "so its nginx is down (status exits 3)" "$?" 3

# give h1 a certificate; reload over ssh starts it, and it serves TLS for h1.fleet.test
C=$R1/etc/nginx/certs
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$C/h1.key" \
    -out "$C/h1.fullchain.crt" -subj /CN=h1.fleet.test -addext subjectAltName=DNS:h1.fleet.test \
    -days 2 >/dev/null 2>&1
cp "$C/h1.fullchain.crt" "$C/h1.ca-bundle.crt"
check "nginx-ctl test passes once the certificate exists" "$R1/bin/nginx-ctl" test
check "nginx-ctl reload over ssh starts a stopped nginx" timeout 20 "${SSH[@]}" "root@$SUBNET.1" "$R1/bin/nginx-ctl reload"
body=$(curl -s --max-time 5 --cacert "$C/h1.fullchain.crt" --resolve "h1.fleet.test:5001:$SUBNET.1" https://h1.fleet.test:5001/)
is "h1 serves h1.fleet.test over TLS with its certificate" "$body" "h1 h1"
is "h1 answers HTTP on :5002" "$(curl -s --max-time 5 "http://$SUBNET.1:5002/")" "h1 http"
nginx_pid=$(cat "$R1/run/nginx.pid")
check "the nginx master started by reload is recorded in pids" grep -qx "$nginx_pid" "$DIR/pids"
ngx_before=$(pgrep -P "$nginx_pid" | head -1)
"$R1/bin/nginx-ctl" reload
ngx_after=$ngx_before
for _ in $(seq 1 100); do # HUP is asynchronous: wait (<= 5 s) for the new worker
    ngx_after=$(pgrep -P "$nginx_pid" | grep -vx "$ngx_before" | head -1)
    [ -n "$ngx_after" ] && break
    sleep 0.05
done
check "reload HUPs the running master (new worker, same master)" test -n "$ngx_after" -a "$ngx_after" != "$ngx_before" -a "$(cat "$R1/run/nginx.pid")" = "$nginx_pid"

# pebble over TLS with the fleet CA; its issuing root from the management port
dir_json=$(curl -s --max-time 5 --cacert "$FLEET_CA" "$FLEET_ACME")
like "pebble's directory answers over TLS with the fleet CA" "$dir_json" '"newOrder": *"https://127.0.0.1:'"$PB"'/'
if curl -s --max-time 5 "$FLEET_ACME" >/dev/null 2>&1; then
    not_ok "pebble's certificate is not trusted without the fleet CA"
else
    ok "pebble's certificate is not trusted without the fleet CA"
fi
like "pebble's issuing root was saved from /roots/0" \
    "$(openssl x509 -in "$FLEET_PEBBLE_ROOT" -noout -subject 2>&1)" "Pebble Root CA"

# end to end: pebble resolves h1.fleet.test through challtestsrv, fetches the
# HTTP-01 token from h1's nginx on :5002, and the certificate it issues is
# then served by h1 and verifies against pebble's root
cat >"$R1/etc/nginx/snippets/acme-challenge.conf" <<EOF
location ^~ /.well-known/acme-challenge/ { root $R1/var/www/letsencrypt; default_type text/plain; }
EOF
mkdir -p "$R1/var/www/letsencrypt/.well-known/acme-challenge"
echo probe >"$R1/var/www/letsencrypt/.well-known/acme-challenge/probe"
"$R1/bin/nginx-ctl" reload
got=
for _ in $(seq 1 100); do # HUP is asynchronous: wait (<= 5 s) for the snippet
    got=$(curl -s --max-time 2 "http://$SUBNET.1:5002/.well-known/acme-challenge/probe")
    [ "$got" = probe ] && break
    sleep 0.05
done
is "h1 serves its webroot's acme-challenge directory after reload" "$got" probe
# ...and until the old worker has left: after a HUP, old and new workers
# both accept for a moment, and pebble must not meet the old configuration
for _ in $(seq 1 100); do
    [ "$(pgrep -P "$(cat "$R1/run/nginx.pid")" | wc -l)" = 1 ] && break
    sleep 0.05
done
out=$(/usr/bin/python3 "$FLEET/lib/acme_check.py" "$FLEET_ACME" "$FLEET_CA" "$DIR/h1-issued" \
    "$R1/var/www/letsencrypt" h1.fleet.test 2>&1)
like "pebble validates h1.fleet.test over HTTP-01 against h1 and issues" "$out" "issued"
like "the validation request reached h1's nginx" "$(grep -c 'LetsEncrypt-Pebble-VA' "$R1/var/log/nginx/access.log")" "^[1-9]"
cp "$DIR/h1-issued.fullchain.pem" "$C/h1.fullchain.crt"
cp "$DIR/h1-issued.chain.pem" "$C/h1.ca-bundle.crt"
cp "$DIR/h1-issued.key" "$C/h1.key"
"$R1/bin/nginx-ctl" reload
want=$(openssl x509 -in "$DIR/h1-issued.fullchain.pem" -noout -serial 2>&1)
served=
for _ in $(seq 1 100); do # wait (<= 5 s) for the reloaded worker
    served=$(openssl s_client -connect "$SUBNET.1:5001" -servername h1.fleet.test </dev/null 2>/dev/null |
        openssl x509 -noout -serial 2>/dev/null)
    [ "$served" = "$want" ] && break
    sleep 0.05
done
is "h1 serves the issued certificate after reload" "$served" "$want"
v=$(openssl s_client -connect "$SUBNET.1:5001" -servername h1.fleet.test -CAfile "$FLEET_PEBBLE_ROOT" \
    -verify_return_error -verify_hostname h1.fleet.test </dev/null 2>&1 | grep -E 'Verify return code')
like "its chain verifies against pebble's root for h1.fleet.test" "$v" "Verify return code: 0 \(ok\)"

# challtestsrv: the names pebble will resolve
if command -v dig >/dev/null; then
    ans=$(dig +short -p $((PB + 2)) @127.0.0.1 h1.fleet.test A)
else
    ans=$("$FLEET/dns" "$DIR" query h1.fleet.test)
fi
is "challtestsrv resolves h1.fleet.test to $SUBNET.1" "$ans" "$SUBNET.1"
is "challtestsrv resolves h3.fleet.test to $SUBNET.3" "$("$FLEET/dns" "$DIR" query h3.fleet.test)" "$SUBNET.3"
is "no AAAA/A default: an unknown name has no address" "$("$FLEET/dns" "$DIR" query nothere.fleet.test)" ""
"$FLEET/dns" "$DIR" add app.fleet.test "$SUBNET.2"
is "dns add maps app.fleet.test" "$("$FLEET/dns" "$DIR" query app.fleet.test)" "$SUBNET.2"
"$FLEET/dns" "$DIR" del app.fleet.test "$SUBNET.2"
is "dns del removes it" "$("$FLEET/dns" "$DIR" query app.fleet.test)" ""

# the generated inventory is what Ansible reads
hv=$(ansible-inventory -i "$FLEET_INVENTORY" --host h2 2>/dev/null)
like "ansible-inventory sees h2's address and port" "$(echo "$hv" | tr -d ' \n')" \
    "\"ansible_host\":\"$SUBNET.2\",\"ansible_port\":2222"
like "h2's vars carry its root and its own certificate" "$(echo "$hv" | tr -d ' \n')" \
    "\"cert_name\":\"h2\",\"domains\":\\[\"h2.fleet.test\"\\]"

# stop: every recorded process gone, every port free
mapfile -t pids <"$DIR/pids"
"$FLEET/stop" "$DIR" >/dev/null
is "fleet stop exits 0" "$?" 0
left=()
for p in "${pids[@]}"; do alive "$p" && left+=("$p"); done
is "no pid from DIR/pids is alive after stop (${#pids[@]} recorded)" "${left[*]:-}" ""
open=()
for hp in "127.0.0.1:$PB" "127.0.0.1:$((PB + 1))" "127.0.0.1:$((PB + 3))" \
    "$SUBNET.1:2222" "$SUBNET.2:2222" "$SUBNET.3:2222" "$SUBNET.1:5001" "$SUBNET.1:5002"; do
    port_open "${hp%:*}" "${hp##*:}" && open+=("$hp")
done
is "every fleet port is free after stop" "${open[*]:-}" ""
finish

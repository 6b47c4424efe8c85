#!/bin/bash
# Issue 4 acceptance: central ACME issuance against pebble with the real
# fleet: a two-domain certificate validated through two hosts, chains that
# verify, renewal decisions, a host that cannot serve its token, DNS-01
# wildcard, token cleanup, store modes, locks, and badNonce storms.
source "$(dirname "$0")/../lib.sh"
fleet_up issue --hosts 3 --shared

tokens_left() { # every webroot's challenge dir must be empty after a run
    local n=0 h
    for h in h1 h2 h3; do
        n=$((n + $(find "$(hroot $h)/var/www/letsencrypt/.well-known/acme-challenge" -type f 2>/dev/null | wc -l)))
    done
    echo $n
}
store_version() { readlink "$STATE/live/$1/cert.pem" | sed -n 's/.*cert\([0-9]*\)\.pem$/\1/p'; }

cf apply
is "first apply issues and exits 0" "$RC" 0
like "shared: issued for both domains" "$OUT" '^shared +issue-missing +app.fleet.test,app2.fleet.test'
is "tokens are gone from every webroot" "$(tokens_left)" 0
# each domain resolves to a different host, so the CA validated through both
is "app.fleet.test resolves to h1" "$("$CF_ROOT/tests/fleet/dns" "$FDIR" query app.fleet.test)" 127.0.1.1
is "app2.fleet.test resolves to h2" "$("$CF_ROOT/tests/fleet/dns" "$FDIR" query app2.fleet.test)" 127.0.1.2
for h in h1 h2; do
    n=$(grep -c 'GET /.well-known/acme-challenge/[A-Za-z0-9_-]* HTTP/1.1" 200' "$(hroot $h)/var/log/nginx/access.log")
    if [ "$n" -ge 1 ]; then ok "$h answered the CA's HTTP-01 fetch ($n)"; else not_ok "$h never served a token to the CA"; fi
done
for c in shared h1 h2 h3; do
    check "$c: chain verifies against pebble's root" \
        openssl verify -CAfile "$FLEET_PEBBLE_ROOT" -untrusted "$STATE/live/$c/chain.pem" "$STATE/live/$c/cert.pem"
    is "$c: stored as version 1" "$(store_version $c)" 1
done
is "state dir archive is 0700" "$(stat -c %a "$STATE/archive")" 700
is "stored private key is 0600" "$(stat -c %a "$(readlink -f "$STATE/live/shared/privkey.pem")")" 600
is "live links are relative, certbot style" "$(readlink "$STATE/live/shared/fullchain.pem")" ../../archive/shared/fullchain1.pem
check "renewal conf records the domains" grep -q 'app.fleet.test' "$STATE/renewal/shared.conf"
check "the account key is 0600" bash -c "find '$STATE/accounts' -name '*.pem' -perm 600 | grep -q ."

# a second run issues nothing
cf apply
is "second run exits 0" "$RC" 0
like "second run issues nothing" "$OUT" '^h1 +none '
is "no new version" "$(store_version h1)" 1

# changing the domain list reissues with all domains
"$CF_ROOT/tests/fleet/dns" "$FDIR" add h3-alt.fleet.test 127.0.1.3 >/dev/null
python3 - "$FDIR/inventory/host_vars/h3.yml" <<'PY'
import sys,re
p=sys.argv[1]; s=open(p).read()
s=s.replace('      - "h3.fleet.test"\n','      - "h3.fleet.test"\n      - "h3-alt.fleet.test"\n',1)
open(p,'w').write(s)
PY
"$CF_ROOT/tests/fleet/sites" "$FDIR" >/dev/null 2>&1
cf apply -l h3
is "domain change: exit 0" "$RC" 0
like "domain change: reissue with the reason" "$OUT" '^h3 +reissue-domains'
is "domain change: version 2" "$(store_version h3)" 2
check "domain change: new certificate covers the added name" bash -c "openssl x509 -in '$STATE/live/h3/cert.pem' -noout -ext subjectAltName | grep -q h3-alt.fleet.test"

# --force-renewal reissues (the limit holds every host of 'shared', which
# h1 also serves: the CA may validate either of its names on either host)
s1=$(served_serial 127.0.1.1 h1.fleet.test)
cf apply -l h1,h2 --force-renewal
is "force: exit 0" "$RC" 0
like "force: decision says forced" "$OUT" '^h1 +renew-forced'
is "force: version 2" "$(store_version h1)" 2
s2=$(served_serial 127.0.1.1 h1.fleet.test)
if [ -n "$s2" ] && [ "$s1" != "$s2" ]; then ok "force: a new serial is served ($s1 -> $s2)"; else not_ok "force: served serial $s1 -> $s2"; fi

# a host that cannot serve its token fails its certificate's order, naming
# the host and URL; the other certificates still issue.  A new name makes
# the CA ask for a fresh token (pebble may reuse valid authorizations).
"$CF_ROOT/tests/fleet/dns" "$FDIR" add h3-new.fleet.test 127.0.1.3 >/dev/null
sed -i 's/      - "h3-alt.fleet.test"/      - "h3-alt.fleet.test"\n      - "h3-new.fleet.test"/' "$FDIR/inventory/host_vars/h3.yml"
"$(hroot h3)/bin/nginx-ctl" stop >/dev/null 2>&1
cf apply --force-renewal
is "unservable token: exit 1" "$RC" 1
like "unservable token: names the host and the URL" "$OUT" "host 'h3' cannot serve the token for 'h3[a-z-]*.fleet.test': http://127.0.1.3:5002/.well-known/acme-challenge/"
is "unservable token: h1 still renewed (version 3)" "$(store_version h1)" 3
is "unservable token: shared still renewed (version 3)" "$(store_version shared)" 3
is "unservable token: h2 still renewed (version 3)" "$(store_version h2)" 3
is "unservable token: h3 not renewed" "$(store_version h3)" 2
is "unservable token: tokens cleaned up anyway" "$(tokens_left)" 0
"$(hroot h3)/bin/nginx-ctl" start >/dev/null 2>&1

# DNS-01: a wildcard certificate through the hook and challtestsrv
cat >"$FDIR/wild.yml" <<YML
certbot_dns_hook: $CF_ROOT/tests/hooks/dns-challtestsrv
certbot_domains:
  - domains: ["*.wild.fleet.test"]
    cert_name: wild
    challenge: dns-01
certbot_services: []
YML
cf apply -l h2 -e @"$FDIR/wild.yml"
is "dns-01 wildcard: exit 0" "$RC" 0
like "dns-01 wildcard: issued" "$OUT" '^wild +issue-missing'
check "dns-01 wildcard: certificate names *.wild.fleet.test" bash -c "openssl x509 -in '$STATE/live/wild/cert.pem' -noout -ext subjectAltName | grep -qF '*.wild.fleet.test'"

# a DNS hook that cannot be started: the certificate fails with the hook's
# name and the reason, the run ends cleanly (the valgrind job runs this
# script: the token must outlive its closing process handle)
sed "s|^certbot_dns_hook: .*|certbot_dns_hook: $FDIR/no-such-hook|; s|cert_name: wild|cert_name: wild2|; s|\*\.wild\.|*.wild2.|" "$FDIR/wild.yml" >"$FDIR/wild2.yml"
cf apply -l h2 -e @"$FDIR/wild2.yml"
is "missing dns hook: exit 1" "$RC" 1
like "missing dns hook: names the hook and the reason" "$OUT" "cannot run dns hook '$FDIR/no-such-hook': no such file or directory"

# a certificate locked by another run is reported with its holder
mkdir -p "$STATE/locks"
echo "pid 4242 on otherhost" >"$STATE/locks/h3.lock"
flock "$STATE/locks/h3.lock" sleep 20 &
lockpid=$!
sleep 0.3
cf apply -l h3 --force-renewal --lock-timeout 1
kill $lockpid 2>/dev/null; wait $lockpid 2>/dev/null
is "locked certificate: exit 1" "$RC" 1
like "locked certificate: says who holds it" "$OUT" "certificate 'h3' is locked by pid 4242 on otherhost"

# plan shows each certificate's decision and writes nothing
before=$(find "$STATE" -type f | sort | xargs sha256sum | sha256sum)
cf plan --force-renewal
is "plan with pending renewals exits 3" "$RC" 3
like "plan shows the decision and reason" "$OUT" '^h1 +renew-forced'
is "plan wrote nothing to the store" "$(find "$STATE" -type f | sort | xargs sha256sum | sha256sum)" "$before"

# a limit that leaves out a host of a shared certificate says so
cf plan -l h1
like "a limit leaving out a host of 'shared' names it" "$OUT" "note: certificate 'shared' is also served by h2, outside the limit 'h1'"

# a storm of bad nonces (90%) still issues
fleet_down
PEBBLE_WFE_NONCEREJECT=90 fleet_up nonce --hosts 1
cf apply
is "90% badNonce: apply still succeeds" "$RC" 0
like "90% badNonce: certificate issued" "$OUT" '^h1 +issue-missing'
finish

#!/bin/bash
# Issue 5 acceptance: push, test, reload or roll back, prove it is served.
# Every served serial is checked independently with openssl s_client.
source "$(dirname "$0")/../lib.sh"
fleet_up push --hosts 3 --shared
live_serial() { openssl x509 -in "$STATE/live/$1/cert.pem" -noout -serial | sed 's/^serial=//'; }

cf apply
is "apply exits 0" "$RC" 0
for h in h1 h2 h3; do
    is "$h serves its own certificate (s_client)" "$(served_serial_is 127.0.1.${h#h} $h.fleet.test "$(live_serial $h)")" "$(live_serial $h)"
done
is "h1 serves 'shared' for app.fleet.test" "$(served_serial_is 127.0.1.1 app.fleet.test "$(live_serial shared)")" "$(live_serial shared)"
is "h2 serves 'shared' for app2.fleet.test" "$(served_serial_is 127.0.1.2 app2.fleet.test "$(live_serial shared)")" "$(live_serial shared)"

# files on the host: modes and link targets as design.md says
r=$(hroot h1)
is "host: private key is 0600" "$(stat -c %a "$r/etc/letsencrypt/archive/h1/privkey1.pem")" 600
is "host: archive dir is 0700" "$(stat -c %a "$r/etc/letsencrypt/archive/h1")" 700
is "host: live link points at archive version 1, relative as certbot makes it" "$(readlink "$r/etc/letsencrypt/live/h1/fullchain.pem")" "../../archive/h1/fullchain1.pem"
is "host: service link points at live/" "$(readlink "$r/etc/nginx/certs/app.key")" "$r/etc/letsencrypt/live/shared/privkey.pem"
check "host: served key matches the certificate" bash -c "[ \"\$(openssl pkey -in '$r/etc/nginx/certs/h1.key' -pubout)\" = \"\$(openssl x509 -in '$r/etc/nginx/certs/h1.fullchain.crt' -noout -pubkey)\" ]"

# idempotence: a re-run pushes nothing
cf apply
like "re-run pushes nothing" "$OUT" '^h1 +: ok=[0-9]+ +changed=0 '
if printf '%s' "$OUT" | grep -q '| push certificate'; then not_ok "re-run ran a push task"; else ok "re-run ran no push task"; fi

# the deploy hook the role installed is what certfleet runs: it works by hand
check "deploy hook runs by hand (test, then reload)" "$r/etc/letsencrypt/renewal-hooks/deploy/h1.sh"

# rollback: h2's nginx config is broken on purpose; a forced renewal
# leaves h2 serving its previous certificate, reported failed with nginx's
# own error text; h1 and h3 get the new one
old2=$(served_serial 127.0.1.2 h2.fleet.test)
echo "bogus_directive on;" >"$(hroot h2)/etc/nginx/conf.d/zz-broken.conf"
cf apply --force-renewal --output json
is "rollback: exit code 1" "$RC" 1
check "rollback: JSON names h2's failure with nginx's text" python3 -c '
import json,sys
d=json.loads(sys.argv[1])
t=[t for t in d["hosts"]["h2"]["tasks"] if t["phase"]=="push" and t["status"]=="failed"]
assert t, d["hosts"]["h2"]["tasks"]
assert "unknown directive \"bogus_directive\"" in t[0]["msg"], t[0]["msg"]
assert "rolled back" in t[0]["msg"], t[0]["msg"]
assert d["hosts"]["h1"]["failed"]==0 and d["hosts"]["h3"]["failed"]==0
' "$OUT"
if printf '%s' "$OUT" | grep -q 'PRIVATE KEY'; then not_ok "JSON output holds key material"; else ok "JSON output holds no key material"; fi
is "rollback: h2 still serves its previous certificate" "$(served_serial 127.0.1.2 h2.fleet.test)" "$old2"
is "rollback: h2's live link is back on version 1" "$(readlink "$(hroot h2)/etc/letsencrypt/live/h2/cert.pem")" "../../archive/h2/cert1.pem"
is "renewal: h1 serves the new serial" "$(served_serial_is 127.0.1.1 h1.fleet.test "$(live_serial h1)")" "$(live_serial h1)"
is "renewal: h3 serves the new serial" "$(served_serial_is 127.0.1.3 h3.fleet.test "$(live_serial h3)")" "$(live_serial h3)"
is "renewal: 'shared' new serial on h1" "$(served_serial_is 127.0.1.1 app.fleet.test "$(live_serial shared)")" "$(live_serial shared)"
rm "$(hroot h2)/etc/nginx/conf.d/zz-broken.conf"

# the next run repairs h2 (its live version differs from the store's)
cf apply
is "repair run exits 0" "$RC" 0
is "repair: h2 now serves the store's version" "$(served_serial_is 127.0.1.2 h2.fleet.test "$(live_serial h2)")" "$(live_serial h2)"
is "repair: 'shared' on h2 for app2.fleet.test" "$(served_serial_is 127.0.1.2 app2.fleet.test "$(live_serial shared)")" "$(live_serial shared)"

# every deployment is recorded, without key material
n=$(sqlite3 "$STATE/state.db" "select count(*) from deployments where host='h2' and result='failed'")
if [ "$n" -ge 1 ]; then ok "state db records h2's failed deployment ($n)"; else not_ok "no failed deployment recorded for h2"; fi
n=$(sqlite3 "$STATE/state.db" "select count(*) from deployments where result='changed'")
if [ "$n" -ge 6 ]; then ok "state db records successful deployments ($n)"; else not_ok "only $n deployments recorded"; fi
if sqlite3 "$STATE/state.db" .dump | grep -q 'PRIVATE KEY'; then not_ok "state db holds key material"; else ok "state db holds no key material"; fi

# rolling deploy: --serial 1 --max-fail-percentage 0 stops after the first
# failing host of a certificate and says so
echo "bogus_directive on;" >"$(hroot h1)/etc/nginx/conf.d/zz-broken.conf"
old_shared_h2=$(served_serial 127.0.1.2 app2.fleet.test)
cf apply -l app --force-renewal --serial 1 --max-fail-percentage 0
is "rolling: exit code 1" "$RC" 1
like "rolling: the message says the deploy stopped" "$OUT" "certificate 'shared': stopped after 1 of 2 hosts failed \(max_fail_percentage 0\); 1 host\(s\) not pushed"
like "rolling: h2 reported not pushed" "$OUT" "skipped: \[h2\] push \| push certificate 'shared' => not pushed: max_fail_percentage reached"
is "rolling: h2 still serves the previous 'shared'" "$(served_serial 127.0.1.2 app2.fleet.test)" "$old_shared_h2"
rm "$(hroot h1)/etc/nginx/conf.d/zz-broken.conf"

# a certificate that no longer verifies is never pushed (pre-push checks)
finish

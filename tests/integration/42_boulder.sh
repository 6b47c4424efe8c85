#!/bin/bash
# What Let's Encrypt's server (Boulder) does and pebble does not, through
# tests/acme/boulder_proxy.py in front of the fleet's real pebble:
# `replaces` only for a certificate of the same CA and account, an order
# naming an already replaced certificate retried without it, a 429's
# Retry-After kept for later runs, and a short-lived certificate that is
# not reordered on every run.
source "$(dirname "$0")/../lib.sh"
fleet_up boulder --hosts 2 --subnet 127.0.42 --port-base 14420

PROXY_PORT=14428
B="https://127.0.0.1:$PROXY_PORT/dir"
python3 "$CF_ROOT/tests/acme/boulder_proxy.py" "$PROXY_PORT" "https://127.0.0.1:14420" \
    "$FLEET_CA" "$FDIR/pebble/cert.pem" "$FDIR/pebble/key.pem" 2>"$FDIR/proxy.log" &
PROXY_PID=$!
trap 'kill "$PROXY_PID" 2>/dev/null; fleet_down' EXIT
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$PROXY_PORT") 2>/dev/null && break; sleep 0.1; done
ctl() { curl -sf --max-time 10 --cacert "$FLEET_CA" "https://127.0.0.1:$PROXY_PORT/_ctl/$1"; }
# jq-free look at the proxy's log: python expression over the JSON as `j`
seen() { ctl log | python3 -c "import json,sys; j=json.load(sys.stdin); print($1)"; }
store_version() { readlink "$STATE/live/$1/cert.pem" | sed -n 's/.*cert\([0-9]*\)\.pem$/\1/p'; }

# (b) switching CA: h1 from pebble directly (CA A), then an order to the
# proxy (CA B, with renewalInfo and Boulder's replaces rules): no replaces
cf apply --no-notify
is "CA A: h1 and h2 issued from pebble directly" "$RC" 0
ctl "set?ari=1&replaces=1" >/dev/null
cf renew -l h1 --no-notify --force-renewal --server "$B" --ca-bundle "$FLEET_CA"
is "CA B: the order succeeds" "$RC" 0
is "CA B: one newOrder, without replaces" "$(seen '[(o["identifiers"], o["replaces"], o["status"]) for o in j["orders"]]')" \
    "[(['h1.fleet.test'], None, 201)]"
is "CA B: the store has version 2" "$(store_version h1)" 2
check "the renewal conf records the proxy's directory and account" \
    grep -q "^server = $B" "$STATE/renewal/h1.conf"

# (c) alreadyReplaced: a replacement order whose download is lost after
# finalize leaves the predecessor replaced; the next run's order names it,
# gets 409, and is placed again without replaces
ctl reset >/dev/null
ctl "set?ari=1&replaces=1" >/dev/null
cf renew -l h1 --no-notify --force-renewal --server "$B" --ca-bundle "$FLEET_CA" # the proxy learns h1 v2 + account
ctl "set?dl_fail=5" >/dev/null
r0=$(seen 'len(j["replaced"])')
cf renew -l h1 --no-notify --force-renewal --server "$B" --ca-bundle "$FLEET_CA"
is "lost download: that run fails" "$RC" 1
is "lost download: the order named its predecessor" "$(seen 'j["orders"][-1]["replaces"] is not None')" True
is "lost download: the predecessor is now replaced at the CA" "$(seen 'len(j["replaced"])')" $((r0 + 1))
before=$(store_version h1)
n0=$(seen 'len(j["orders"])')
cf renew -l h1 --no-notify --force-renewal --server "$B" --ca-bundle "$FLEET_CA"
is "alreadyReplaced: the next run succeeds" "$RC" 0
is "alreadyReplaced: 409 with replaces, then 201 without" \
    "$(seen "[(o['replaces'] is not None, o['status']) for o in j['orders'][$n0:]]")" "[(True, 409), (False, 201)]"
is "alreadyReplaced: a new version is stored" "$(store_version h1)" $((before + 1))
if printf '%s' "$OUT" | grep -q alreadyReplaced; then not_ok "no run reports alreadyReplaced" "$OUT"; else ok "no run reports alreadyReplaced"; fi

# (d) rate limit: a 429 with Retry-After of one hour; the next run sends
# no newOrder for that certificate, --force-renewal or not, and says until when
ctl reset >/dev/null
ctl "set?ratelimit=3600" >/dev/null
t0=$(date -u +%s)
cf renew -l h2 --no-notify --force-renewal --server "$B" --ca-bundle "$FLEET_CA"
is "429: the run fails" "$RC" 1
like "429: rateLimited is reported" "$OUT" 'rateLimited'
n1=$(seen 'j["counts"].get("newOrder", 0)')
is "429: one newOrder" "$n1" 1
cf renew -l h2 --no-notify --force-renewal --server "$B" --ca-bundle "$FLEET_CA"
is "after 429: no newOrder, --force-renewal included" "$(seen 'j["counts"].get("newOrder", 0)')" 1
like "after 429: text names the decision" "$OUT" '^h2 +wait-ca-ratelimit'
when=$(printf '%s' "$OUT" | sed -n 's/.*retry after \([0-9T:-]*Z\).*/\1/p' | head -1)
at=$(date -u -d "$when" +%s 2>/dev/null || echo 0)
if [ $((at - t0)) -ge 3540 ] && [ $((at - t0)) -le 3720 ]; then ok "after 429: the text names the time ($when)"; else not_ok "after 429: time named is $when" "$OUT"; fi
cf renew -l h2 --no-notify --force-renewal --server "$B" --ca-bundle "$FLEET_CA" --output json
is "after 429: JSON decision" "$(printf '%s' "$OUT" | python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["certificates"]["h2"]["decision"])' 2>&1)" wait-ca-ratelimit
like "after 429: JSON reason names the time" "$OUT" "retry after $when"
is "after 429, JSON run: still no newOrder" "$(seen 'j["counts"].get("newOrder", 0)')" 1

# (f) ARI: the window's explanationURL is shown, its Retry-After (six
# hours) keeps the next run from asking again, and an expired certificate
# is never asked about (RFC 9773 §4.3)
ctl reset >/dev/null
ctl "set?ari=1&ari_explain=https://ca.example/incident/42" >/dev/null
cf renew -l h1 --no-notify --server "$B" --ca-bundle "$FLEET_CA"
is "ARI: exit 0" "$RC" 0
like "ARI: the window and the CA's explanation in the reason" "$OUT" 'ARI window .*the CA explains: https://ca.example/incident/42'
is "ARI: one renewalInfo query" "$(seen 'j["counts"].get("renewalInfo", 0)')" 1
cf renew -l h1 --no-notify --server "$B" --ca-bundle "$FLEET_CA"
like "ARI, next run: the same window, from the recorded answer" "$OUT" 'ARI window .*the CA explains: https://ca.example/incident/42'
is "ARI, next run: no query before Retry-After" "$(seen 'j["counts"].get("renewalInfo", 0)')" 1
CA=$FDIR/testca
bash "$CF_ROOT/tests/tls_fixture.sh" ca "$CA" >/dev/null
bash "$CF_ROOT/tests/tls_fixture.sh" cert "$CA" h2.fleet.test -1 >/dev/null
cat "$CA/h2.fleet.test.pem" "$CA/ca.pem" >"$CA/h2.full.pem"
check "import an expired certificate for h2" \
    "$CF_ROOT/build/unit/test_store" --import "$STATE" h2 "$CA/h2.full.pem" "$CA/h2.fleet.test.key" h2.fleet.test
cf renew -l h2 --no-notify --server "$B" --ca-bundle "$FLEET_CA"
like "expired: decided without ARI" "$OUT" 'expired [0-9-]+'
is "expired: no renewalInfo query" "$(seen 'j["counts"].get("renewalInfo", 0)')" 1

# (e) a 6-day certificate is not reordered on consecutive runs, and plan
# shows the lifetime rule with a warning (the fleet's certbot_renewal_days
# is 31)
bash "$CF_ROOT/tests/tls_fixture.sh" cert "$CA" h1.fleet.test 6 >/dev/null
cat "$CA/h1.fleet.test.pem" "$CA/ca.pem" >"$CA/h1.full.pem"
check "import a 6-day certificate for h1" \
    "$CF_ROOT/build/unit/test_store" --import "$STATE" h1 "$CA/h1.full.pem" "$CA/h1.fleet.test.key" h1.fleet.test
v6=$(store_version h1)
for run in 1 2; do
    cf renew -l h1 --no-notify --force-push
    like "6-day certificate, run $run: nothing to order" "$OUT" '^h1 +none '
    is "6-day certificate, run $run: no new version" "$(store_version h1)" "$v6"
done
like "6-day certificate: the reason names the lifetime rule" "$OUT" 'renewal due [0-9T:-]*Z, at 1/2 of its 6-day lifetime'
cf plan -l h1
like "plan: the lifetime rule" "$OUT" '1/2 of its 6-day lifetime \(renewal_days [0-9]+ exceeds half of it\)'
like "plan: the warning" "$OUT" "note: certificate 'h1': certbot_renewal_days [0-9]+ is more than half its lifetime"

finish

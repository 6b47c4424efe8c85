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

# a config broken before the run: reported as such, the host is left alone
# (no push, no reload), the other hosts are renewed
old3=$(served_serial 127.0.1.3 h3.fleet.test)
echo "bogus_directive on;" >"$(hroot h3)/etc/nginx/conf.d/zz-broken.conf"
cf apply --force-renewal --output json
is "broken before the run: exit code 1" "$RC" 1
check "broken before the run: JSON says so for h3, with nginx's text" python3 -c '
import json,sys
d=json.loads(sys.argv[1])
h=d["hosts"]["h3"]
t=[t for t in h["tasks"] if t["status"]=="failed"]
assert t, h["tasks"]
assert "already fails before any change of this run" in t[0]["msg"], t[0]["msg"]
assert "unknown directive \"bogus_directive\"" in t[0]["msg"], t[0]["msg"]
assert "rollback" not in t[0]["msg"], t[0]["msg"]
assert not [t for t in h["tasks"] if t["phase"]=="push"], h["tasks"]
assert d["hosts"]["h1"]["failed"]==0 and d["hosts"]["h2"]["failed"]==0
' "$OUT"
is "broken before the run: h3 still serves its certificate" "$(served_serial 127.0.1.3 h3.fleet.test)" "$old3"
rm "$(hroot h3)/etc/nginx/conf.d/zz-broken.conf"
cf apply
is "fixed config: apply exits 0" "$RC" 0

# rollback: h2's config test fails once a new version is live (a config
# that only breaks with the new files); a forced renewal leaves h2 serving
# its previous certificate, reported failed with the test's own text; h1
# and h3 get the new one
r2=$(hroot h2)
before=$(readlink "$r2/etc/letsencrypt/live/h2/cert.pem")
old2=$(served_serial 127.0.1.2 h2.fleet.test)
fail_after_swap h2 h2 "$FDIR/test-h2"
cf apply --force-renewal --output json
is "rollback: exit code 1" "$RC" 1
check "rollback: JSON names h2's push failure with the test's text" python3 -c '
import json,sys
d=json.loads(sys.argv[1])
t=[t for t in d["hosts"]["h2"]["tasks"] if t["phase"]=="push" and t["status"]=="failed"]
assert t, d["hosts"]["h2"]["tasks"]
assert "cannot load ../../archive/h2/cert" in t[0]["msg"], t[0]["msg"]
assert "rolled back to the previous certificate" in t[0]["msg"], t[0]["msg"]
assert "rollback failed" not in t[0]["msg"], t[0]["msg"]
assert d["hosts"]["h1"]["failed"]==0 and d["hosts"]["h3"]["failed"]==0
' "$OUT"
if printf '%s' "$OUT" | grep -q 'PRIVATE KEY'; then not_ok "JSON output holds key material"; else ok "JSON output holds no key material"; fi
is "rollback: h2 still serves its previous certificate" "$(served_serial 127.0.1.2 h2.fleet.test)" "$old2"
is "rollback: h2's live link is back on the version before" "$(readlink "$r2/etc/letsencrypt/live/h2/cert.pem")" "$before"
is "renewal: h1 serves the new serial" "$(served_serial_is 127.0.1.1 h1.fleet.test "$(live_serial h1)")" "$(live_serial h1)"
is "renewal: h3 serves the new serial" "$(served_serial_is 127.0.1.3 h3.fleet.test "$(live_serial h3)")" "$(live_serial h3)"
is "renewal: 'shared' new serial on h1" "$(served_serial_is 127.0.1.1 app.fleet.test "$(live_serial shared)")" "$(live_serial shared)"
restore_test_command h2

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
# failing host of a certificate and says so (h1's test fails once a new
# 'shared' is live)
fail_after_swap h1 shared "$FDIR/test-h1"
old_shared_h2=$(served_serial 127.0.1.2 app2.fleet.test)
cf apply -l app --force-renewal --serial 1 --max-fail-percentage 0
is "rolling: exit code 1" "$RC" 1
like "rolling: the message says the deploy stopped" "$OUT" "certificate 'shared': stopped after 1 of 2 hosts failed \(max_fail_percentage 0\); 1 host\(s\) not pushed"
like "rolling: h2 reported not pushed" "$OUT" "skipped: \[h2\] push \| push certificate 'shared' => not pushed: max_fail_percentage reached"
is "rolling: h2 still serves the previous 'shared'" "$(served_serial 127.0.1.2 app2.fleet.test)" "$old_shared_h2"
restore_test_command h1
cf apply
is "after the rolling stop: apply converges, exit 0" "$RC" 0

# what is served, not only the files: h3's nginx is stopped; apply finds
# it, pushes again, starts serving (nginx-ctl reload starts a stopped nginx)
"$(hroot h3)/bin/nginx-ctl" stop >/dev/null 2>&1
cf apply
is "stopped nginx: apply exits 0 after repairing it" "$RC" 0
like "stopped nginx: the run says h3 served nothing and was pushed again" "$OUT" "host 'h3' had certificate 'h3' version [0-9]+ on disk but served nothing"
is "stopped nginx: h3 serves the store's version again" "$(served_serial_is 127.0.1.3 h3.fleet.test "$(live_serial h3)")" "$(live_serial h3)"

# (2) h1 serves an expired certificate from memory while its files hold the
# store's current version (someone pointed nginx elsewhere, reloaded, and
# put the links back): apply reloads it onto the current version
r1=$(hroot h1)
python3 - "$FDIR/expired" <<'PY'
import datetime, sys
from cryptography import x509
from cryptography.x509.oid import NameOID
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
key = ec.generate_private_key(ec.SECP256R1())
name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "h1.fleet.test")])
now = datetime.datetime.now(datetime.timezone.utc)
cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=100))
        .not_valid_after(now - datetime.timedelta(days=10))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("h1.fleet.test")]), False)
        .sign(key, hashes.SHA256()))
open(sys.argv[1] + ".pem", "wb").write(cert.public_bytes(serialization.Encoding.PEM))
open(sys.argv[1] + ".key", "wb").write(key.private_bytes(serialization.Encoding.PEM,
    serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
PY
expired=$(openssl x509 -in "$FDIR/expired.pem" -noout -serial | sed 's/^serial=//')
crt=$r1/etc/nginx/certs/h1.fullchain.crt
key=$r1/etc/nginx/certs/h1.key
crt_t=$(readlink "$crt")
key_t=$(readlink "$key")
ln -sfn "$FDIR/expired.pem" "$crt"
ln -sfn "$FDIR/expired.key" "$key"
"$r1/bin/nginx-ctl" reload >/dev/null 2>&1
is "expired in memory: setup, h1 serves the expired certificate" "$(served_serial_is 127.0.1.1 h1.fleet.test "$expired")" "$expired"
ln -sfn "$crt_t" "$crt"
ln -sfn "$key_t" "$key"
cf apply -l h1
is "expired in memory: apply exits 0" "$RC" 0
like "expired in memory: the run says what h1 served" "$OUT" "host 'h1' had certificate 'h1' version [0-9]+ on disk but served serial $expired: pushed again, tested and reloaded"
is "expired in memory: h1 serves the store's version" "$(served_serial_is 127.0.1.1 h1.fleet.test "$(live_serial h1)")" "$(live_serial h1)"

# never a downgrade: a host with a newer certificate than the store's (as
# when another store pushed it) is not overwritten without --force-push
cp -a "$STATE" "$FDIR/state-old"
cf apply -l h3 --force-renewal
is "downgrade setup: a newer h3 is pushed" "$RC" 0
new_h3=$(live_serial h3)
STATE_SAVED=$STATE
STATE=$FDIR/state-old
cf apply -l h3
is "downgrade: refused, exit 1" "$RC" 1
like "downgrade: the message names the newer serial and --force-push" "$OUT" "refused: the host has serial [0-9A-Fa-f]+, issued after the store's version [0-9]+ .*--force-push"
is "downgrade: h3 still serves the newer certificate" "$(served_serial 127.0.1.3 h3.fleet.test)" "$new_h3"
cf apply -l h3 --force-push
is "--force-push: exit 0" "$RC" 0
is "--force-push: h3 serves the older store's version" "$(served_serial_is 127.0.1.3 h3.fleet.test "$(live_serial h3)")" "$(live_serial h3)"
STATE=$STATE_SAVED

# a certificate that no longer verifies is never pushed (pre-push checks):
# the store's current key of h3 is replaced by one that does not match its
# certificate; apply refuses before any push and h3 keeps what it serves
v=$(readlink "$STATE/live/h3/privkey.pem" | sed 's/.*privkey\([0-9]*\)\.pem/\1/')
served3=$(served_serial 127.0.1.3 h3.fleet.test)
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$FDIR/other.key" 2>/dev/null
cat "$FDIR/other.key" >"$STATE/archive/h3/privkey$v.pem"
rm -f "$(hroot h3)/etc/letsencrypt/live/h3/cert.pem"
cf apply -l h3
is "mismatched key: exit 1" "$RC" 1
like "mismatched key: refused before any push, naming the certificate" "$OUT" "refusing to push certificate 'h3' version $v: "
if printf '%s' "$OUT" | grep -q "changed: \[h3\] push"; then not_ok "mismatched key: a push ran"; else ok "mismatched key: nothing pushed"; fi
is "mismatched key: h3 still serves what it served" "$(served_serial 127.0.1.3 h3.fleet.test)" "$served3"
finish

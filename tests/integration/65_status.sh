#!/bin/bash
# Issue 6 acceptance: certfleet status against the real fleet: all OK after
# apply, MISMATCH for a host left on an old certificate, UNREACHABLE for a
# stopped nginx, RENEW-SOON and a [WARNING] mail (real SMTP server) for a
# certificate that expires in 5 days, and the json/prometheus/html outputs.
source "$(dirname "$0")/../lib.sh"
fleet_up status --hosts 3 --shared
SINK=127.0.0.1
M=$FDIR/mail
/usr/bin/python3 "$CF_ROOT/tests/smtp_sink.py" $SINK 2535 "$M" 2>>"$FDIR/sink.log" &
sinkpid=$!
trap 'kill $sinkpid 2>/dev/null; fleet_down' EXIT
mails() { find "$M" -name '*.eml' 2>/dev/null | wc -l; }
# status makes no SSH connection: no --known-hosts
st() { OUT=$("$CERTFLEET" status -i "$INV" --state-dir "$STATE" --timeout 15 "$@" 2>&1); RC=$?; }

cf apply --no-notify
is "apply exits 0" "$RC" 0

st
is "status after apply exits 0" "$RC" 0
like "every host x domain is OK (7 endpoints)" "$OUT" '7 endpoints: 7 OK'
like "the table has the columns users read" "$OUT" 'HOST.*DOMAIN.*ISSUER.*SERIAL.*NOT.AFTER.*DAYS.*STATE|GROUP.*HOST.*DOMAIN'
if printf '%s' "$OUT" | grep -q $'\033\['; then not_ok "no colours when stdout is not a terminal"; else ok "no colours when stdout is not a terminal"; fi

st --output json
check "json: one document, 7 rows all OK" python3 -c '
import json,sys
d=json.loads(sys.argv[1])
rows=d.get("rows") or d.get("endpoints")
assert len(rows)==7, rows
assert all(r["state"]=="OK" for r in rows), rows
' "$OUT"

st --output prometheus --output-file "$FDIR/certfleet.prom"
is "prometheus: exit 0" "$RC" 0
check "prometheus: promtool accepts the textfile" bash -c "promtool check metrics < '$FDIR/certfleet.prom'"
check "prometheus: expiry metric per host and domain" grep -q 'certfleet_certificate_expiry_timestamp_seconds{.*host="h2".*domain="app2.fleet.test"' "$FDIR/certfleet.prom"

n=$(sqlite3 "$STATE/state.db" "select count(*) from scans where state='OK'")
if [ "$n" -ge 7 ]; then ok "the scan is recorded in the state database ($n rows)"; else not_ok "scans recorded: $n"; fi
check "prometheus: the last run is the last apply, and it succeeded" grep -q '^certfleet_last_run_success 1' "$FDIR/certfleet.prom"
st --output html --output-file "$FDIR/status.html"
check "html: one self-contained file naming every host" bash -c "grep -q h1.fleet.test '$FDIR/status.html' && grep -q app2.fleet.test '$FDIR/status.html' && ! grep -qE '(src|href)=\"https?://' '$FDIR/status.html'"

# a host still on an old certificate: h2's config test fails once the new
# version is live, so the forced renewal is rolled back there
fail_after_swap h2 h2 "$FDIR/test-h2"
cf apply --force-renewal --no-notify -l h2
restore_test_command h2
st
is "mismatch: exit code 1" "$RC" 1
like "mismatch: h2 shows MISMATCH" "$OUT" 'h2 .*h2\.fleet\.test.*MISMATCH'
like "mismatch: h1 still OK" "$OUT" 'h1 .*h1\.fleet\.test.*OK'
cf apply --no-notify -l h2

# a stopped nginx is UNREACHABLE
"$(hroot h3)/bin/nginx-ctl" stop >/dev/null
st
is "unreachable: exit code 1" "$RC" 1
like "unreachable: h3 shows UNREACHABLE" "$OUT" 'h3 .*UNREACHABLE'
first=$(printf '%s\n' "$OUT" | grep -E 'OK|UNREACHABLE|MISMATCH' | head -1)
like "unreachable rows sort before OK rows" "$first" 'UNREACHABLE'
"$(hroot h3)/bin/nginx-ctl" start >/dev/null

# a certificate that expires in 5 days (from a local test CA), in the store
# and on the host: RENEW-SOON, and one [WARNING] mail
CA=$FDIR/testca
bash "$CF_ROOT/tests/tls_fixture.sh" ca "$CA" >/dev/null
bash "$CF_ROOT/tests/tls_fixture.sh" cert "$CA" h1.fleet.test 5 >/dev/null
cp "$CA/h1.fleet.test.pem" "$CA/h1.pem"; cp "$CA/h1.fleet.test.key" "$CA/h1.key"
cat "$CA/h1.pem" "$CA/ca.pem" >"$CA/h1.full.pem"
check "import the 5-day certificate into the store" \
    "$CF_ROOT/build/unit/test_store" --import "$STATE" h1 "$CA/h1.full.pem" "$CA/h1.key" h1.fleet.test
# older than what h1 serves (pebble issued that one later): only
# --force-push replaces it, pushes never downgrade on their own
cf renew -l h1 --no-notify --force-push -e certbot_renewal_days=1
is "the 5-day certificate is pushed to h1" "$(served_serial_is 127.0.1.1 h1.fleet.test "$(openssl x509 -in "$CA/h1.pem" -noout -serial | sed 's/serial=//')")" "$(openssl x509 -in "$CA/h1.pem" -noout -serial | sed 's/serial=//')"
for _ in $(seq 50); do (exec 3<>/dev/tcp/$SINK/2535) 2>/dev/null && break; sleep 0.1; done
cat >"$FDIR/notify.yml" <<YML
certbot_notify_email: ops@example.com
certbot_notify_from: certfleet@example.com
certbot_smtp_server: $SINK
certbot_smtp_port: 2535
certbot_smtp_starttls: false
certbot_warning_days: 14
YML
m0=$(mails)
st -e @"$FDIR/notify.yml"
is "renew-soon: exit 0 without --warn-days" "$RC" 0 || printf '%s\n' "$OUT" | sed 's/^/#   /'
like "renew-soon: h1 shows RENEW-SOON" "$OUT" 'h1 .*h1\.fleet\.test.*RENEW-SOON'
is "warning: one mail received by the SMTP server" "$(( $(mails) - m0 ))" 1
subj=$(python3 -c 'import email,email.policy,sys,glob
f=sorted(glob.glob(sys.argv[1]+"/*.eml"))[-1]
m=email.message_from_binary_file(open(f,"rb"),policy=email.policy.default)
print(m["subject"])' "$M")
like "warning: seed-format subject" "$subj" '^\[WARNING\] h1 – Certificate expires in [45] days$'
# apply finds it too: a run that does not renew it (renewal_days 1) warns
m0=$(mails)
cf renew -l h1 -e certbot_renewal_days=1 -e @"$FDIR/notify.yml"
is "apply warning: the run itself succeeds" "$RC" 0
is "apply warning: one mail for the run" "$(( $(mails) - m0 ))" 1
subj=$(python3 -c 'import email,email.policy,sys,glob,os
f=max(glob.glob(sys.argv[1]+"/*.eml"),key=os.path.getmtime)
m=email.message_from_binary_file(open(f,"rb"),policy=email.policy.default)
print(m["subject"])' "$M")
like "apply warning: seed-format subject" "$subj" '^\[WARNING\] h1 – Certificate expires in [45] days$'
st -e @"$FDIR/notify.yml" --warn-days 10 --no-notify
is "renew-soon with --warn-days 10: exit 1" "$RC" 1
finish

#!/bin/bash
# An interrupted apply: SIGTERM stops starting work, finishes what is in
# flight, prints the recap and exits 143; tokens a killed run left in a
# webroot (journaled before they were written) are removed by the next run.
source "$(dirname "$0")/../lib.sh"
fleet_up interrupt --hosts 2 --subnet 127.0.38 --port-base 14380
live_serial() { openssl x509 -in "$STATE/live/$1/cert.pem" -noout -serial | sed 's/^serial=//'; }

cf apply
is "first apply exits 0" "$RC" 0

# SIGTERM once the run has started ordering: exit 143, a recap, every host
# still serving a certificate that passes its config test
out=$FDIR/term.out
"$CERTFLEET" apply -i "$INV" --known-hosts "$FLEET_KNOWN_HOSTS" --state-dir "$STATE" \
    --timeout 10 --force-renewal >"$out" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
    [ -n "$(ls "$STATE/journal/orders" 2>/dev/null)" ] && break
    sleep 0.05
done
kill -TERM "$pid"
wait "$pid"
is "SIGTERM: exit code 143" "$?" 143
like "SIGTERM: says what it does" "$(cat "$out")" "SIGTERM received: finishing the hosts in flight, starting nothing new"
like "SIGTERM: the recap is printed" "$(cat "$out")" "PLAY RECAP"
for h in h1 h2; do
    check "SIGTERM: $h passes its config test" "$(hroot $h)/bin/nginx-ctl" test
    s=$(served_serial "127.0.38.${h#h}" "$h.fleet.test")
    if [ -n "$s" ]; then ok "SIGTERM: $h serves a certificate ($s)"; else not_ok "SIGTERM: $h serves nothing"; fi
done

# the next plain run converges
cf apply
is "after SIGTERM: apply exits 0" "$RC" 0
for h in h1 h2; do
    is "after SIGTERM: $h serves the store's serial" "$(served_serial_is "127.0.38.${h#h}" "$h.fleet.test" "$(live_serial $h)")" "$(live_serial $h)"
done
if [ -z "$(ls "$STATE/journal/orders" 2>/dev/null)" ]; then ok "after SIGTERM: no order left in the journal"; else not_ok "orders left in the journal" "$(ls "$STATE/journal/orders")"; fi

# a token a killed run left behind: journaled, present in the webroot
wr=$(hroot h1)/var/www/letsencrypt/.well-known/acme-challenge
[ -d "$wr" ] || wr=$(find "$(hroot h1)" -type d -name acme-challenge | head -1)
tok=$wr/killedrunTOKEN_0123456789abcdef
echo "stale.keyauth" >"$tok"
mkdir -p "$STATE/journal/tokens"
hh=$(printf '%s' h1 | sha256sum | cut -d' ' -f1)
echo "$tok" >"$STATE/journal/tokens/$hh"
other=$wr/not-ours
echo "kept" >"$other"
cf apply
is "stale token: apply exits 0" "$RC" 0
if [ -e "$tok" ]; then not_ok "stale token: still in the webroot"; else ok "stale token: removed from the webroot"; fi
if [ -e "$other" ]; then ok "a file certfleet did not write is kept"; else not_ok "a file certfleet did not write was removed"; fi
like "stale token: the run says so" "$OUT" "remove stale ACME tokens => 1 token\(s\) an interrupted run left in the webroot"
if [ -e "$STATE/journal/tokens/$hh" ]; then not_ok "stale token: still journaled"; else ok "stale token: journal entry gone"; fi
rm -f "$other"

# a command that hangs: the failure names the host, its endpoint, the step
# and the timeout; the other host is still done
hv=$FLEET_DIR/inventory/host_vars/h2.yml
cp "$hv" "$hv.orig"
grep -v '^certbot_test_command:' "$hv.orig" >"$hv"
echo 'certbot_test_command: "sleep 20"' >>"$hv"
CF_TIMEOUT=3 cf apply
is "hung command: exit 1" "$RC" 1
like "hung command: the message says where, what and how long" "$OUT" "failed: \[h2\] => .*command on h2 \(127\.0\.38\.2:2222\) timed out after 3 s while"
is "hung command: h1 is still done" "$(recap_field "$OUT" h1 failed)" 0
mv "$hv.orig" "$hv"
finish

#!/bin/bash
# 32_role_rollback: a role change that breaks nginx's configuration is
# rolled back, and a file the role no longer wants is removed.
#
# (a) A seed host already has a default server on its HTTP port.  The
#     role's port-80 server (also default_server) makes `nginx -t` fail with
#     "duplicate default server": apply must put the host back as it was
#     (the role's file gone), test again, and report the host failed with
#     a message that says so and quotes nginx; the other hosts finish.
# (b) certbot_http_redirect: false after a run with true (the host has a
#     default server of its own now): the port-80 server is removed
#     (changed), nginx -t passes, a re-run changes nothing.
source "$(dirname "$0")/../lib.sh"
fleet_up rollback --hosts 3 --subnet 127.0.32 --port-base 14320

cf apply
is "first apply converges the fleet" "$RC" 0 || printf '%s\n' "$OUT" | grep -E '^(failed|fatal)' | head -5 | sed 's/^/#   /'

# ---- (a) an existing default server on h1's HTTP port
r1=$(hroot h1)
conf=etc/nginx/conf.d/certfleet-http.conf
addr1=$(echo "$FLEET_ADDRS" | cut -d' ' -f1)
rm -f "$r1/$conf"
cat >"$r1/etc/nginx/conf.d/seed-redirect.conf" <<EOF
# the seed's own port-80 server, older than certfleet
server {
    listen $addr1:$FLEET_HTTP_PORT default_server;
    server_name _;
    location / { return 301 https://\$host\$request_uri; }
}
EOF
check "h1: the seed's config passes nginx -t before the run" "$r1/bin/nginx-ctl" test

cf apply --output json
is "duplicate default server: exit code 1" "$RC" 1
JSON=$OUT
herr() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])["hosts"][sys.argv[2]]["error"] or "")' "$JSON" "$1" 2>&1; }
hstat() { python3 -c '
import json,sys
h=json.loads(sys.argv[1])["hosts"][sys.argv[2]]
print("failed=%d unreachable=%s error=%s" % (h["failed"], h["unreachable"], h["error"]))' "$JSON" "$1" 2>&1; }
e1=$(herr h1)
like "h1 failed, quoting nginx's error" "$e1" 'duplicate default server'
like "h1's message says the role change was rolled back" "$e1" 'role change was rolled back \(1 path restored\); the test passes again'
is "h1: certfleet-http.conf is gone again" "$(test -e "$r1/$conf" && echo present || echo gone)" gone
check "h1: nginx -t passes after the rollback" "$r1/bin/nginx-ctl" test
is "h1: the seed's server is untouched" "$(grep -c default_server "$r1/etc/nginx/conf.d/seed-redirect.conf")" 1
for h in h2 h3; do
    is "$h: still done" "$(hstat $h)" "failed=0 unreachable=False error=None"
done

# the same run in text form: the handler failure and the rollback tasks
cf apply -l h1
is "text run: exit code 1" "$RC" 1
like "text run: the failed test is shown" "$OUT" '^failed: \[h1\] handler \| test nginx configuration => .*duplicate default server'
like "text run: the rollback is shown" "$OUT" '^changed: \[h1\] rollback \| roll back the role change => 1 path restored'
like "text run: the test after the rollback passes" "$OUT" '^changed: \[h1\] rollback \| test after the rollback => .* passes'
is "text run: certfleet-http.conf is gone again" "$(test -e "$r1/$conf" && echo present || echo gone)" gone

# the operator drops the seed's server: the role's port-80 server goes in
mv "$r1/etc/nginx/conf.d/seed-redirect.conf" "$FDIR/seed-redirect.conf"
cf apply -l h1
is "without the seed's server h1 converges" "$RC" 0
like "h1: certfleet-http.conf is back" "$(cat "$r1/$conf" 2>&1)" 'default_server'

# ---- (b) the redirect turned off after a run with it on, because the
# operator now has a default port-80 server of their own: a stale
# certfleet-http.conf would make a second default server
r2=$(hroot h2)
addr2=$(echo "$FLEET_ADDRS" | cut -d' ' -f2)
check "h2: the port-80 server exists after runs with the redirect on" test -f "$r2/$conf"
sed "s/$addr1:/$addr2:/" "$FDIR/seed-redirect.conf" >"$r2/etc/nginx/conf.d/seed-redirect.conf"
cf apply -l h2 -e '{"certbot_http_redirect": false}'
is "redirect off: exit code 0" "$RC" 0
like "redirect off: the removal is reported as a change" "$OUT" \
    "^changed: \[h2\] prepare \| install the port-80 server .* => .*certfleet-http.conf: removed \(the task's condition is false\)"
is "redirect off: certfleet-http.conf is removed" "$(test -e "$r2/$conf" && echo present || echo gone)" gone
check "redirect off: nginx -t passes with the host's own default server" "$r2/bin/nginx-ctl" test
like "redirect off: the handlers ran" "$OUT" '^changed: \[h2\] handler \| reload nginx'
cf apply -l h2 -e '{"certbot_http_redirect": false}'
is "redirect off, again: exit code 0" "$RC" 0
is "redirect off, again: changed=0" "$(recap_field "$OUT" h2 changed)" 0
like "redirect off, again: the task is skipped" "$OUT" '^skipped: \[h2\] prepare \| install the port-80 server'
finish

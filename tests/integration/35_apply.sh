#!/bin/bash
# Issue 3 acceptance: host preparation over SSH against a real fleet
# (sshd + nginx per host): converge, idempotence, check/diff on drift,
# wrong host key, a hung host, hostile values, JSON output.
source "$(dirname "$0")/../lib.sh"
fleet_up apply --hosts 3

# 1. the first apply converges every host; nginx -t passes with the snippets
cf apply
is "first apply exits 0" "$RC" 0
for h in h1 h2 h3; do
    r=$(hroot $h)
    check "$h: nginx -t passes with the role's snippets included" "$r/bin/nginx-ctl" test
    is "$h: challenge snippet installed" "$(grep -c 'acme-challenge' "$r/etc/nginx/snippets/acme-challenge.conf")" 1
    is "$h: certificate link points into live/" "$(readlink "$r/etc/nginx/certs/$h.fullchain.crt")" "$r/etc/letsencrypt/live/$h/fullchain.pem"
    is "$h: deploy hook is executable" "$(stat -c %a "$r/etc/letsencrypt/renewal-hooks/deploy/$h.sh")" 755
    is "$h: webroot challenge dir exists" "$(test -d "$r/var/www/letsencrypt/.well-known/acme-challenge" && echo yes)" yes
done
like "recap line per host, Ansible style" "$OUT" '^h1 +: ok=[0-9]+ +changed=[1-9][0-9]* +unreachable=0 +failed=0'

# 2. a second apply changes nothing
cf apply
is "second apply exits 0" "$RC" 0
for h in h1 h2 h3; do is "$h: second apply reports changed=0" "$(recap_field "$OUT" $h changed)" 0; done

# 3. --check on a drifted host reports exactly the drift and changes nothing
r1=$(hroot h1)
rm "$r1/etc/nginx/certs/h1.key"
echo "# local edit" >>"$r1/etc/nginx/snippets/acme-challenge.conf"
before=$(sha256sum "$r1/etc/nginx/snippets/acme-challenge.conf")
cf apply --check --diff -l h1
is "--check with drift exits 3" "$RC" 3
is "--check reports exactly two changed tasks on h1" "$(recap_field "$OUT" h1 changed)" 2
like "--check names the deleted key link" "$OUT" 'would change: \[h1\].*private key'
like "--diff shows the snippet edit" "$OUT" '^-# local edit'
is "--check left the link missing" "$(test -e "$r1/etc/nginx/certs/h1.key" || test -L "$r1/etc/nginx/certs/h1.key" && echo present || echo missing)" missing
is "--check left the snippet as edited" "$(sha256sum "$r1/etc/nginx/snippets/acme-challenge.conf")" "$before"
cf plan -l h1
is "plan exits 3 on the same drift" "$RC" 3
cf apply -l h1
is "apply repairs the drift" "$RC" 0
is "repaired: key link back" "$(readlink "$r1/etc/nginx/certs/h1.key")" "$r1/etc/letsencrypt/live/h1/privkey.pem"

# 4. a wrong host key fails that host alone, with the fingerprint
cp "$FLEET_KNOWN_HOSTS" "$FDIR/kh.good"
ssh-keygen -q -t ed25519 -N '' -f "$FDIR/bogus" >/dev/null
grep -v '^\[127.0.1.2\]:2222' "$FDIR/kh.good" >"$FLEET_KNOWN_HOSTS"
echo "[127.0.1.2]:2222 $(cut -d' ' -f1,2 "$FDIR/bogus.pub")" >>"$FLEET_KNOWN_HOSTS"
echo "# stale" >>"$r1/etc/nginx/snippets/ssl-h1.conf"
cf apply
is "wrong host key: exit code 1" "$RC" 1
like "wrong host key: h2 fails with a host-key message" "$OUT" 'h2.*(host key|hostkey).*(SHA256:|fingerprint)'
is "wrong host key: h1 still converged (drift repaired)" "$(grep -c '# stale' "$r1/etc/nginx/snippets/ssl-h1.conf")" 0
like "wrong host key: h3 done" "$OUT" '^h3 +: ok=[0-9]+ +changed=0 +unreachable=0 +failed=0'
cp "$FDIR/kh.good" "$FLEET_KNOWN_HOSTS"

# 5. a host that accepts TCP but never answers is unreachable after --timeout
pid3=$(pgrep -f "sshd -D -f $FDIR/sshd/sshd-3.conf" | head -1)
kill -STOP "$pid3"
start=$(date +%s)
CF_TIMEOUT=3 cf apply
took=$(( $(date +%s) - start ))
kill -CONT "$pid3"
is "hung host: exit code 1" "$RC" 1
like "hung host: h3 reported unreachable" "$OUT" '^h3 +: .*unreachable=1'
like "hung host: h1 and h2 finish" "$OUT" '^h2 +: ok=[0-9]+ +changed=0 +unreachable=0 +failed=0'
if [ "$took" -lt 20 ]; then ok "hung host: the run ends after its own timeout (${took}s)"; else not_ok "hung host: run took ${took}s"; fi

# 6. hostile values are rejected before anything runs on a host
rm -f /tmp/cf-pwned
for v in '$(touch /tmp/cf-pwned).fleet.test' "a'b.fleet.test" $'a\nb.fleet.test' '../../etc.fleet.test'; do
    cf apply -e "{\"certbot_domains\":[{\"domains\":[$(printf '%s' "$v" | python3 -c 'import json,sys;print(json.dumps(sys.stdin.read()))')],\"cert_name\":\"x\"}],\"certbot_services\":[]}"
    is "hostile domain $(printf %q "$v") exits 2" "$RC" 2
done
cf apply -e '{"certbot_webroot":"/var/www/$(touch /tmp/cf-pwned)"}'
is "hostile webroot exits 2" "$RC" 2
like "hostile webroot: message names the variable" "$OUT" 'certbot_webroot'
cf apply -e '{"certbot_config_dir":"/etc/../../tmp"}'
is "'..' in a path exits 2" "$RC" 2
is "no hostile value ever ran" "$(test -e /tmp/cf-pwned && echo ran || echo never)" never

# 7. JSON for CI: one document, every host and task with status/changed/msg/duration
cf apply --output json
is "json: exit code 0" "$RC" 0 || printf '%s\n' "$OUT" | grep -E '"error": "' | sed 's/^/#   /'
check "json: one valid document with hosts, tasks and stats" python3 -c '
import json,sys
d=json.loads(sys.argv[1])
assert set(d["hosts"])=={"h1","h2","h3"}, d["hosts"].keys()
for h, v in d["hosts"].items():
    assert v["tasks"], (h, v["error"], v["unreachable"])
t=d["hosts"]["h1"]["tasks"][0]
assert {"status","changed","msg","duration_ms","task"} <= set(t), t
assert d["stats"]["changed"]==0 and d["exit_code"]==0
' "$OUT"

# 8. usage errors: exit 2 with one line naming the bad argument
OUT=$("$CERTFLEET" apply --forks lots 2>&1); RC=$?
is "usage error exits 2" "$RC" 2
like "usage error names the argument" "$OUT" "'lots'.*--forks"
OUT=$("$CERTFLEET" apply -i "$INV" -l nosuchhost 2>&1); RC=$?
is "a limit matching nothing exits 2" "$RC" 2
like "a limit matching nothing says so" "$OUT" "nosuchhost"
finish

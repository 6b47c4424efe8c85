#!/bin/bash
# Issue 6 alerts against the real fleet: a renewal sends one SUCCESS mail,
# a failed renewal one ERROR mail carrying the error text, a run with
# several events one grouped mail; the webhook receives the JSON; SMTP AUTH
# with the password from an environment variable; an unreachable SMTP
# server is reported and does not fail the run.  SMTP and webhook sinks are
# real servers (aiosmtpd, python http.server) on 127.0.40.200.  (STARTTLS
# against a real server is covered by tests/unit/test_notify.c.)
source "$(dirname "$0")/../lib.sh"
fleet_up alerts --hosts 2 --subnet 127.0.40 --port-base 14400
SINK=127.0.40.200
sinkpids=()
stop_sinks() { local p; for p in "${sinkpids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done; }
trap 'stop_sinks; fleet_down' EXIT
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && return 0; sleep 0.1; done; return 1; }

M=$FDIR/mail; H=$FDIR/hook; A=$FDIR/authmail
/usr/bin/python3 "$CF_ROOT/tests/smtp_sink.py" $SINK 2525 "$M" 2>>"$FDIR/sink.log" & sinkpids+=($!)
/usr/bin/python3 "$CF_ROOT/tests/smtp_sink.py" $SINK 2526 "$A" --auth alerts 'pw with $pace' \
    2>>"$FDIR/sink.log" & sinkpids+=($!)
/usr/bin/python3 "$CF_ROOT/tests/http_sink.py" $SINK 8088 "$H" & sinkpids+=($!)
check "SMTP sink listens" wait_port $SINK 2525
check "SMTP sink with AUTH listens" wait_port $SINK 2526
check "webhook sink listens" wait_port $SINK 8088

cat >"$FDIR/notify.yml" <<YML
certbot_notify_email: ops@example.com
certbot_notify_from: certfleet@example.com
certbot_smtp_server: $SINK
certbot_smtp_port: 2525
certbot_smtp_starttls: false
certbot_notify_webhook: http://$SINK:8088/certfleet
YML
mails() { find "$1" -name '*.eml' 2>/dev/null | wc -l; }
hooks() { find "$H" -name '*.json' 2>/dev/null | wc -l; }
# subject (decoded) and body of mail N in DIR, as a mail reader shows them
show_mail() {
    /usr/bin/python3 -c 'import email,sys; from email import policy
m=email.message_from_binary_file(open(sys.argv[1],"rb"), policy=policy.default)
print("SUBJECT: "+str(m["subject"])); print(m.get_content())' "$1/$2.eml"
}

# first issuance: certificates appear, no renewal to report yet
cf apply -e @"$FDIR/notify.yml"
is "first apply exits 0" "$RC" 0
m0=$(mails "$M"); h0=$(hooks)

# 1. a renewal sends exactly one SUCCESS mail
cf apply -l h1 --force-renewal -e @"$FDIR/notify.yml"
is "forced renewal of h1 exits 0" "$RC" 0
n=$((m0 + 1))
is "one mail for the run" "$(mails "$M")" $n
mail=$(show_mail "$M" $n)
like "SUCCESS subject, seed format with en dash" "$mail" '^SUBJECT: \[SUCCESS\] h1 – Cert renewed for h1\.fleet\.test$'
like "success body: renewed" "$mail" '^Certificate for h1\.fleet\.test renewed successfully\.$'
like "success body: previous expiry with days remaining" "$mail" '^Previous expiry: [0-9]{4}-[0-9]{2}-[0-9]{2} [0-9:]{8} UTC \([0-9]+ days remaining\)$'
like "success body: new expiry" "$mail" '^New expiry: [0-9]{4}-[0-9]{2}-[0-9]{2} [0-9:]{8} UTC \(~[0-9]+ days\)$'
like "success body: cert name" "$mail" '^Cert name: h1$'
like "success body: time" "$mail" '^Renewed at: [0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z$'
like "success body: nginx reloaded" "$mail" '^Nginx has been reloaded with the new certificate\.$'
like "envelope: to the configured address" "$(cat "$M/$n.env")" '^RCPT TO: ops@example.com$'
like "run report says the alert was sent" "$OUT" 'e-mail to ops@example.com via smtp://127\.0\.40\.200:2525: sent'
is "one webhook POST for the run" "$(hooks)" $((h0 + 1))
ev=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); e=d["events"][0]; print(len(d["events"]), e["type"], e["host"], e["domain"], e["nginx_reloaded"])' "$H/$((h0 + 1)).json")
is "webhook JSON: one SUCCESS event for h1" "$ev" "1 SUCCESS h1 h1.fleet.test True"

# 2. a failed renewal sends one ERROR mail carrying the error text: h2's
# config test fails once the new version is live, so certfleet rolls back
fail_after_swap h2 h2 "$FDIR/test-h2" 'nginx: [emerg] unknown directive "this_is_not_a_directive" in /etc/nginx/conf.d/zz-broken.conf:1'
cf apply -l h2 --force-renewal -e @"$FDIR/notify.yml"
is "failed renewal exits 1" "$RC" 1
n=$((n + 1))
is "one ERROR mail" "$(mails "$M")" $n
mail=$(show_mail "$M" $n)
like "ERROR subject" "$mail" '^SUBJECT: \[ERROR\] h2 – Cert renewal FAILED for h2\.fleet\.test$'
like "error body: failed" "$mail" '^Certificate renewal for h2\.fleet\.test FAILED\.$'
like "error body: current expiry" "$mail" '^Current expiry: .* \([0-9]+ days remaining\)$'
like "error body: nginx's own error text" "$mail" 'unknown directive "this_is_not_a_directive"'
like "error body: a checklist for a failed nginx test" "$mail" 'the previous certificate is still served'
like "error body: troubleshooting command" "$mail" '^ssh h2 sudo nginx -t$'
ev=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); e=d["events"][0]; print(e["type"], e["host"], e["failure"])' "$H/$((h0 + 2)).json")
is "webhook JSON: the ERROR with its failure kind" "$ev" "ERROR h2 nginx_test"

# 3. several events in one run: one grouped mail, the most severe subject
cf apply --force-renewal -e @"$FDIR/notify.yml"
is "mixed run exits 1" "$RC" 1
n=$((n + 1))
is "still one mail for the whole run" "$(mails "$M")" $n
mail=$(show_mail "$M" $n)
like "grouped subject names the counts" "$mail" '^SUBJECT: \[ERROR\] certfleet – 1 renewal FAILED, 1 cert renewed$'
like "grouped mail lists the ERROR" "$mail" '\[ERROR\] h2 – Cert renewal FAILED for h2\.fleet\.test'
like "grouped mail lists the SUCCESS" "$mail" '\[SUCCESS\] h1 – Cert renewed for h1\.fleet\.test'
restore_test_command h2

# 4. SMTP AUTH, the password from an environment variable
cat >"$FDIR/notify-auth.yml" <<YML
certbot_notify_email: ops@example.com
certbot_notify_from: certfleet@example.com
certbot_smtp_server: $SINK
certbot_smtp_port: 2526
certbot_smtp_starttls: false
certbot_smtp_user: alerts
certbot_smtp_password_env: CF_ALERTS_SMTP_PASSWORD
YML
export CF_ALERTS_SMTP_PASSWORD='pw with $pace'
cf apply -l h1 --force-renewal -e @"$FDIR/notify-auth.yml"
unset CF_ALERTS_SMTP_PASSWORD
is "AUTH run exits 0" "$RC" 0
is "AUTH mail delivered" "$(mails "$A")" 1
like "authenticated as the configured user" "$(cat "$A/1.env" 2>/dev/null)" 'AUTH: alerts'
if grep -rq 'pw with' "$FDIR/certfleet.log" "$STATE" 2>/dev/null; then
    not_ok "the password appears nowhere in output or state"
else ok "the password appears nowhere in output or state"; fi
cf apply -l h1 --force-renewal -e @"$FDIR/notify-auth.yml"
is "AUTH without the variable: the run still exits 0" "$RC" 0
like "AUTH without the variable: reported, naming it" "$OUT" "environment variable 'CF_ALERTS_SMTP_PASSWORD'"
is "AUTH without the variable: nothing sent" "$(mails "$A")" 1

# 5. an unreachable SMTP server is reported, not a failed run
sed -i 's/^certbot_smtp_port: .*/certbot_smtp_port: 2599/' "$FDIR/notify.yml"
cf apply -l h1 --force-renewal -e @"$FDIR/notify.yml"
is "unreachable SMTP: the run still exits 0" "$RC" 0
like "unreachable SMTP: reported" "$OUT" 'notification failed: .*e-mail to ops@example.com via smtp://127\.0\.40\.200:2599: failed'
is "unreachable SMTP: the webhook still got its POST" "$(hooks)" $((h0 + 4))
finish

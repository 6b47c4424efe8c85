#!/bin/bash
# certfleet schedule: the systemd service + timer (checked by
# systemd-analyze verify) and the cron alternative.
source "$(dirname "$0")/../lib.sh"
tmp=$(mktemp -d /tmp/cf-61.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp" || exit 1
mkdir -p inv/group_vars
printf '[web]\nh1 ansible_host=127.0.40.9\n' >inv/hosts.ini
self=$(readlink -f "$CERTFLEET")

out=$("$CERTFLEET" schedule --print -i inv/hosts.ini -l 'web:!app4' 2>&1); rc=$?
is "--print exits 0" "$rc" 0
like "timer runs twice daily" "$out" '^OnCalendar=\*-\*-\* 00,12:00:00$'
like "timer has a random delay of an hour" "$out" '^RandomizedDelaySec=3600$'
like "timer is persistent" "$out" '^Persistent=true$'
like "timer is wanted by timers.target" "$out" '^WantedBy=timers.target$'
like "service runs apply with absolute paths and the limit" "$out" \
    "^ExecStart=$self apply -i $tmp/inv/hosts.ini -l \"web:!app4\"\$"

"$CERTFLEET" schedule --install -i inv -l 'web,db%1' --command renew --unit-dir units >inst.out 2>&1
is "--install exits 0" "$?" 0
check "service and timer written" test -f units/certfleet.service -a -f units/certfleet.timer
like "--install says how to enable" "$(cat inst.out)" 'systemctl enable --now certfleet.timer'
like "renew command, % escaped for systemd" "$(cat units/certfleet.service)" \
    "^ExecStart=$self renew -i $tmp/inv -l \"web,db%%1\"\$"
check "systemd-analyze verify accepts the units" \
    bash -c 'cd units && systemd-analyze verify --man=no ./certfleet.service ./certfleet.timer'
next=$(systemd-analyze calendar "$(sed -n 's/^OnCalendar=//p' units/certfleet.timer)" 2>&1)
like "the calendar expression is valid" "$next" 'Next elapse: .* (00|12):00:00'

# the check can fail: a broken timer is refused
mkdir bad && cp units/* bad/ && sed -i 's/^OnCalendar=.*/OnCalendar=whenever/' bad/certfleet.timer
if (cd bad && systemd-analyze verify --man=no ./certfleet.service ./certfleet.timer) >/dev/null 2>&1
then not_ok "systemd-analyze verify rejects a broken timer"; else ok "systemd-analyze verify rejects a broken timer"; fi

"$CERTFLEET" schedule --install -i inv --name fleet-prod --unit-dir units >/dev/null 2>&1
check "--name names the units" test -f units/fleet-prod.service -a -f units/fleet-prod.timer
like "timer points at its service" "$(cat units/fleet-prod.timer)" '^Unit=fleet-prod.service$'
check "named units verify" bash -c 'cd units && systemd-analyze verify --man=no ./fleet-prod.service ./fleet-prod.timer'

cron=$("$CERTFLEET" schedule --print --cron -i inv -l "it's 50%" 2>&1)
line=$(printf '%s\n' "$cron" | grep -v '^#' | grep -v '=' )
like "cron line twice daily as root" "$line" '^0 0,12 \* \* \* root '
like "cron line sleeps a random time up to an hour" "$line" 'sleep \$\(shuf -i 0-3599 -n 1\)'
like "cron line never overlaps runs" "$line" 'flock -n /run/lock/certfleet.lock'
like "cron % is escaped" "$line" "50\\\\%"
cmdpart=$(printf '%s' "$line" | cut -d' ' -f7- | sed 's/\\%/%/g')
check "cron command is valid sh" sh -n -c "$cmdpart"
words=$(eval "set -- $(printf '%s' "$cmdpart" | sed 's/^.*flock -n [^ ]* //; s/ >>.*$//')"; printf '[%s]' "$@")
is "cron command words survive quoting" "$words" "[$self][apply][-i][$tmp/inv][-l][it's 50%]"
"$CERTFLEET" schedule --install --cron -i inv --unit-dir crond >/dev/null 2>&1
check "--cron --install writes the cron.d file" grep -q 'root sleep' crond/certfleet

"$CERTFLEET" schedule --print >/dev/null 2>err.out; rc=$?
is "missing -i is a usage error" "$rc" 2
like "and says why" "$(cat err.out)" 'INVENTORY is required'
"$CERTFLEET" schedule --print -i nowhere >/dev/null 2>err.out; rc=$?
is "a missing inventory is a usage error" "$rc" 2
like "naming it" "$(cat err.out)" "inventory 'nowhere' not found"
"$CERTFLEET" schedule --print --install -i inv >/dev/null 2>&1
is "--print with --install is a usage error" "$?" 2
"$CERTFLEET" schedule --print -i inv --command destroy >/dev/null 2>&1
is "an unknown --command is a usage error" "$?" 2
"$CERTFLEET" schedule --print -i inv --bogus >/dev/null 2>&1
is "an unknown option is a usage error" "$?" 2
"$CERTFLEET" schedule --help | grep -q 'RandomizedDelaySec'
is "--help describes the timer" "$?" 0
finish

#!/bin/bash
# A first apply on a fresh fleet must succeed every time, not most times:
# FIRST_APPLY_TRIALS (default 20) fresh 3-host fleets with a shared
# certificate, each given one `certfleet apply` that must exit 0 and leave
# every host serving the issued serial for every domain.  Each host's nginx
# already runs (without the challenge snippet) with a large configuration,
# and its sites are written but not loaded.  A run whose
# HTTP-01 check let the CA in before every nginx worker served the token
# fails here (pebble fetches each token three times, on new connections).
# On a failure it prints what pebble reported and the logs of the hosts.
source "$(dirname "$0")/../lib.sh"
SUBNET=${FIRST_APPLY_SUBNET:-127.0.36}
PB=${FIRST_APPLY_PORT_BASE:-14360}
TRIALS=${FIRST_APPLY_TRIALS:-20}
MAP_ENTRIES=${FIRST_APPLY_MAP_ENTRIES:-150000}

# cert -> "host:domain ..." that must serve it (tests/fleet/start --shared)
declare -A SERVES=(
    [h1]="h1:h1.fleet.test" [h2]="h2:h2.fleet.test" [h3]="h3:h3.fleet.test"
    [shared]="h1:app.fleet.test h1:app2.fleet.test h2:app.fleet.test h2:app2.fleet.test"
)
addr_of() { echo "$SUBNET.${1#h}"; }

# what went wrong in this trial: certfleet's output, pebble's verdicts, and
# each host's nginx logs (access lines carry the worker pid and connection)
evidence() {
    echo "# --- certfleet apply (exit $RC)"
    printf '%s\n' "$OUT" | grep -vE '^(ok|changed|skipping):' | tail -25 | sed 's/^/#   /'
    echo "# --- pebble: validations and problems"
    grep -E 'Attempting to validate|Validation|problem|invalid|INVALID|detail|did not match' \
        "$FDIR/logs/pebble.log" | tail -30 | sed 's/^/#   /'
    local h
    for h in h1 h2; do
        echo "# --- $h ctl.log / error.log / access.log"
        sed 's/^/#   /' "$(hroot $h)/var/log/nginx/ctl.log" 2>/dev/null
        grep -vE 'using the "epoll"|built by|OS:|getrlimit' "$(hroot $h)/var/log/nginx/error.log" \
            | tail -20 | sed 's/^/#   /'
        tail -25 "$(hroot $h)/var/log/nginx/access.log" | sed 's/^/#   /'
    done
}

failed_trials=0
for t in $(seq 1 "$TRIALS"); do
    if [ "${FIRST_APPLY_NGINX_UP:-1}" = 1 ]; then
        # nginx already runs, without the challenge snippet, and the sites are
        # written but not loaded yet: the first apply's reload replaces it
        fleet_up first-apply --hosts 3 --shared --no-sites --subnet "$SUBNET" --port-base "$PB"
        "$CF_ROOT/tests/fleet/sites" "$FDIR" >/dev/null
        # a large configuration (~0.2 s to parse here): the reload returns
        # well before the new workers exist, as on a host with many sites;
        # the old worker then keeps accepting next to the new one for a
        # while (nginx's master waits 100 ms before it stops the old ones)
        awk -v n="$MAP_ENTRIES" 'BEGIN { print "map $host $first_apply_big {";
            for (i = 0; i < n; i++) printf "    n%d.example.invalid %d;\n", i, i; print "}" }' \
            >"$FDIR/big-map.conf"
        for h in h1 h2 h3; do ln -s "$FDIR/big-map.conf" "$(hroot $h)/etc/nginx/conf.d/big-map.conf"; done
    else
        fleet_up first-apply --hosts 3 --shared --subnet "$SUBNET" --port-base "$PB"
    fi
    cf apply
    bad=''
    [ "$RC" = 0 ] || bad="apply exited $RC"
    if [ -z "$bad" ]; then
        for c in h1 h2 h3 shared; do
            want=$(openssl x509 -noout -serial -in "$STATE/live/$c/cert.pem" 2>/dev/null | sed 's/^serial=//')
            for hd in ${SERVES[$c]}; do
                got=$(served_serial "$(addr_of "${hd%%:*}")" "${hd#*:}")
                [ -n "$want" ] && [ "$got" = "$want" ] ||
                    bad="${bad:+$bad; }${hd%%:*} serves '${got}' for ${hd#*:}, issued '$want'"
            done
        done
    fi
    if [ -z "$bad" ]; then
        ok "trial $t: first apply exits 0, every host serves the issued serials"
    else
        failed_trials=$((failed_trials + 1))
        not_ok "trial $t: first apply on a fresh fleet" "$bad"
        evidence
    fi
    fleet_down
    FDIR=''
done
is "every first apply succeeded ($failed_trials of $TRIALS failed)" "$failed_trials" 0
finish

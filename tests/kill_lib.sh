# shellcheck shell=bash
# tests/kill_lib.sh - one crash-safety trial: SIGKILL a forced
# `certfleet apply` at a random moment, then check what a user would see.
# Sourced by tests/integration/80_kill.sh (20 trials, TAP) and bench/kill
# (100 trials, figures), after tests/lib.sh and fleet_up (which give
# CERTFLEET, FDIR, STATE, INV, CF_TIMEOUT and the FLEET_* variables).
#
#   kill_setup             map hosts/domains/webroots, converge with a plain
#                          apply, time one normal forced run (KILL_RUN_MS)
#   kill_seed [SEED]       seed $RANDOM (default: a new seed), sets KILL_SEED
#   kill_trial I           one trial; fills KILL_FAILS (kind -> detail), sets
#                          KILL_DELAY_MS, KILL_KILLED, KILL_ORDERS,
#                          KILL_NEW_VERSIONS, KILL_EXTRA; prints one summary
#                          line; returns 1 when any check failed.  A trial
#                          that left a host serving the wrong certificate
#                          ends with a forced run to completion (kill_repair)
#                          so the next trial counts only its own failures
#   kill_details           the last trial's failures, "#   kind: detail" lines
#
# The kinds of failure, in the order they are checked:
#   nginx-t    after the kill, a host's `nginx -t` fails
#   tls        after the kill, a host x domain does not serve a certificate
#              that verifies against pebble's root for that name
#   apply-rc   the next plain apply does not exit 0
#   serial     after that apply, a host x domain does not serve the store's
#              current serial
#   orders     pebble saw more than one order beyond the certificates that
#              reached the store in this trial (orders - new store versions > 1)
#   tokens     after that apply, an ACME token this trial wrote is left in a
#              host's webroot (<webroot>/.well-known/acme-challenge/)
#
# Replaying a failure: KILL_SEED=<seed> KILL_RUN_MS=<ms> give the same delays.

KILL_KINDS="nginx-t tls apply-rc serial orders tokens"
declare -A KILL_FAILS=()

# certfleet against the fleet, arguments as cf() in tests/lib.sh
kill_cf_args() {
    KILL_ARGS=(-i "$INV" --known-hosts "$FLEET_KNOWN_HOSTS" --state-dir "$STATE" --timeout "${CF_TIMEOUT:-10}")
}

kill_now_ms() { echo $(($(date +%s%N) / 1000000)); }

# KILL_MAP: one line "host addr root cert domain webroot" per host x
# certificate x domain, from fleet.json and the generated host_vars
kill_map() {
    python3 - "$FDIR/fleet.json" "$FDIR/inventory/host_vars" >"$FDIR/kill-map" <<'PY'
import json, sys, yaml
fleet = json.load(open(sys.argv[1]))
for h in fleet["hosts"]:
    hv = yaml.safe_load(open(f"{sys.argv[2]}/{h['name']}.yml"))
    for c in hv.get("certbot_domains", []):
        for d in c["domains"]:
            print(h["name"], h["addr"], h["root"], c["cert_name"], d, c.get("webroot", "/var/www/letsencrypt"))
PY
}

# pebble logs one "Added order" line per new order
kill_orders() { grep -c 'Added order "' "$FDIR/logs/pebble.log"; }

# "host token" for every entry of every host's challenge directories
kill_tokens() {
    local h r w
    while read -r h r w; do
        find "$r$w/.well-known/acme-challenge" -mindepth 1 -printf "$h %f\n" 2>/dev/null
    done < <(awk '{print $1, $3, $6}' "$FDIR/kill-map" | sort -u)
}

# "name version serial" per certificate in the store
kill_store() {
    "$CERTFLEET" certificates --state-dir "$STATE" --output json | python3 -c '
import json, sys
for c in json.load(sys.stdin)["certificates"]:
    print(c["name"], c["version"], c["serial"])'
}

kill_setup() {
    kill_cf_args
    kill_map || return 1
    export KILL_NCERTS # bench/kill prints it
    KILL_NCERTS=$(awk '{print $4}' "$FDIR/kill-map" | sort -u | wc -l)
    local t0 rc
    "$CERTFLEET" apply "${KILL_ARGS[@]}" >"$FDIR/kill-setup.log" 2>&1 || {
        echo "# first apply failed:"; tail -20 "$FDIR/kill-setup.log" | sed 's/^/#   /'; return 1
    }
    if [ -z "${KILL_RUN_MS:-}" ]; then
        t0=$(kill_now_ms)
        "$CERTFLEET" apply "${KILL_ARGS[@]}" --force-renewal >"$FDIR/kill-forced.log" 2>&1
        rc=$?
        KILL_RUN_MS=$(($(kill_now_ms) - t0))
        if [ "$rc" != 0 ]; then
            echo "# the timed forced run failed (exit $rc):"; tail -20 "$FDIR/kill-forced.log" | sed 's/^/#   /'; return 1
        fi
    fi
    return 0
}

kill_seed() {
    KILL_SEED=${1:-$(( $(date +%s%N) % 32768 ))}
    RANDOM=$KILL_SEED
}

# kill_fail KIND DETAIL: record a failed check (details accumulate)
kill_fail() { KILL_FAILS[$1]+="${KILL_FAILS[$1]:+; }$2"; }

# kill_links ROOT CERT: where a host's live links of CERT point, for a report
kill_links() {
    local f out=
    for f in cert chain fullchain privkey; do
        out+="$f->$(readlink "$1/etc/letsencrypt/live/$2/$f.pem" | sed 's,.*/,,') "
    done
    echo "live/$2: ${out% }"
}

# what ADDR:5001 serves for SNI NAME, verified against pebble's root for
# that name; prints nothing when it verifies, else what was served and why not
kill_tls_problem() {
    local out code
    out=$(timeout 10 openssl s_client -connect "$1:${FLEET_HTTPS_PORT:-5001}" -servername "$2" \
        -CAfile "$FLEET_PEBBLE_ROOT" -verify_hostname "$2" </dev/null 2>&1)
    code=$(printf '%s\n' "$out" | sed -n 's/^ *Verify return code: \([0-9]*\).*/\1/p' | tail -1)
    [ "$code" = 0 ] && return 0
    local served why
    served=$(printf '%s\n' "$out" | openssl x509 -noout -serial -subject 2>/dev/null | tr '\n' ' ')
    why=$(printf '%s\n' "$out" | grep -E 'Verify return code|verify error|alert|errno|error:' | head -2 | tr '\n' ' ')
    echo "served ${served:-no certificate}(${why:-no handshake})"
}

# kill_repair I: a forced run to completion; 0 when it exits 0 and every
# host x domain then serves the store's serial
kill_repair() {
    local h a r c d w s
    "$CERTFLEET" apply "${KILL_ARGS[@]}" --force-renewal >"$FDIR/kill-$1-repair.log" 2>&1 || return 1
    declare -A serial=()
    while read -r c _ s; do serial[$c]=$s; done < <(kill_store)
    while read -r h a r c d w; do
        [ "$(served_serial_is "$a" "$d" "${serial[$c]:-none}")" = "${serial[$c]:-none}" ] || return 1
    done <"$FDIR/kill-map"
}

# kill_details: the failed checks of the last trial, one "#   kind: detail" line each
kill_details() {
    local k
    for k in $KILL_KINDS; do
        [ -n "${KILL_FAILS[$k]:-}" ] && printf '%s\n' "${KILL_FAILS[$k]//; /$'\n'}" | sed "s/^/#   $k: /"
    done
    return 0
}

kill_trial() {
    local t0 i=$1 pid o0 v0 v1 line h a r c d w s problem left out
    KILL_FAILS=()
    t0=$(kill_now_ms)
    o0=$(kill_orders)
    kill_tokens | sort >"$FDIR/kill-tokens-before"
    v0=$(kill_store | awk '{s += $2} END {print s + 0}')
    # 30 random bits: $RANDOM alone stops at 32767 ms
    KILL_DELAY_MS=$(((RANDOM * 32768 + RANDOM) % (KILL_RUN_MS + 1)))

    "$CERTFLEET" apply "${KILL_ARGS[@]}" --force-renewal >"$FDIR/kill-$i.log" 2>&1 &
    pid=$!
    sleep "$(printf '%d.%03d' $((KILL_DELAY_MS / 1000)) $((KILL_DELAY_MS % 1000)))"
    kill -KILL "$pid" 2>/dev/null
    { wait "$pid"; } 2>/dev/null
    if [ $? = 137 ]; then KILL_KILLED=killed; else KILL_KILLED=finished; fi

    # A batch whose data reached a host runs to its end there even when the
    # controller is gone (remote.sh), so that no kill leaves links naming
    # two versions: wait (at most 5 s) for those to finish, then check
    for _ in $(seq 1 50); do
        pgrep -f 'magic" = CF1' >/dev/null || break
        sleep 0.1
    done
    # right after the kill: every nginx config tests, every name verifies
    for r in $(awk '{print $3}' "$FDIR/kill-map" | sort -u); do
        h=$(basename "$(dirname "$r")")
        if ! out=$("$r/bin/nginx-ctl" test 2>&1); then
            kill_fail nginx-t "$h: $(printf '%s\n' "$out" | grep -m1 -E 'emerg|error|fail' || printf '%s' "$out" | tail -1)"
        fi
    done
    while read -r h a r c d w; do
        problem=$(kill_tls_problem "$a" "$d") || true
        [ -n "$problem" ] && kill_fail tls "$h $d: $problem"
    done <"$FDIR/kill-map"

    # the next plain apply repairs everything
    KILL_T_CHECK=$(kill_now_ms)
    "$CERTFLEET" apply "${KILL_ARGS[@]}" >"$FDIR/kill-$i-next.log" 2>&1
    s=$?
    [ "$s" = 0 ] || kill_fail apply-rc "exit $s: $(grep -E '^(failed|fatal|error)|: error|failed=[1-9]' "$FDIR/kill-$i-next.log" | head -2 | tr '\n' ' ')"
    KILL_T_NEXT=$(kill_now_ms)
    declare -A serial=()
    while read -r c _ s; do serial[$c]=$s; done < <(kill_store)
    while read -r h a r c d w; do
        s=$(served_serial_is "$a" "$d" "${serial[$c]:-none}")
        [ "$s" = "${serial[$c]:-none}" ] ||
            kill_fail serial "$h $d: served ${s:-nothing}, store has ${serial[$c]:-nothing} ($(kill_links "$r" "$c"))"
    done <"$FDIR/kill-map"

    v1=$(kill_store | awk '{s += $2} END {print s + 0}')
    KILL_ORDERS=$(($(kill_orders) - o0))
    KILL_NEW_VERSIONS=$((v1 - v0))
    KILL_EXTRA=$((KILL_ORDERS - KILL_NEW_VERSIONS))
    [ "$KILL_EXTRA" -le 1 ] || kill_fail orders "$KILL_ORDERS orders, $KILL_NEW_VERSIONS new store versions: $KILL_EXTRA extra"

    # only what this trial left: an earlier trial's leftovers are its own failure
    left=$(kill_tokens | sort | comm -13 "$FDIR/kill-tokens-before" - |
        awk '{n[$1]++; t[$1] = t[$1] " " $2} END {for (h in n) printf "%s: %d left (%s ); ", h, n[h], t[h]}')
    [ -n "$left" ] && kill_fail tokens "${left%; }"

    KILL_T_END=$(kill_now_ms)
    KILL_TIMES="check $((KILL_T_CHECK - t0 - KILL_DELAY_MS))ms next-apply $((KILL_T_NEXT - KILL_T_CHECK))ms after $((KILL_T_END - KILL_T_NEXT))ms"
    # a host left serving the wrong certificate stays so (a plain apply
    # believes it converged): a completed forced run repairs it, so the
    # next trial starts clean and counts only its own failures
    KILL_REPAIRED=
    if [ -n "${KILL_FAILS[serial]:-}${KILL_FAILS[nginx-t]:-}${KILL_FAILS[apply-rc]:-}" ]; then
        KILL_REPAIRED=" repaired-by-forced-run"
        kill_repair "$i" || KILL_REPAIRED=" NOT-repaired-by-forced-run"
    fi

    line="kill $i seed=$KILL_SEED run=${KILL_RUN_MS}ms delay=${KILL_DELAY_MS}ms $KILL_KILLED orders=$KILL_ORDERS new_versions=$KILL_NEW_VERSIONS extra=$KILL_EXTRA ($KILL_TIMES)$KILL_REPAIRED:"
    if [ ${#KILL_FAILS[@]} = 0 ]; then
        echo "# $line ok"
        return 0
    fi
    local k fails=
    for k in $KILL_KINDS; do [ -n "${KILL_FAILS[$k]:-}" ] && fails+=" $k"; done
    echo "# $line FAIL$fails"
    return 1
}

#!/bin/bash
# Crash safety: a forced `certfleet apply` SIGKILLed at a random moment, 20
# times, on 3 hosts where h1 and h2 share certificate 'shared'.  After each
# kill every host's nginx config tests and every name it serves verifies
# against pebble's root; the next plain apply exits 0, every host serves the
# store's serial, no ACME token is left in a webroot, and pebble saw at most
# one order beyond the certificates that reached the store.  The checks are
# tests/kill_lib.sh, shared with bench/kill.
# Replay: KILL_SEED=<seed> KILL_RUN_MS=<ms> (both printed); KILL_TRIALS=N.
source "$(dirname "$0")/../lib.sh"
source "$(dirname "$0")/../kill_lib.sh"
T0=$(date +%s)
fleet_up kill --hosts 3 --shared --subnet 127.0.80 --port-base 14800

if kill_setup; then ok "setup: the first apply converges and a forced run completes (${KILL_RUN_MS} ms; fleet up and setup in $(($(date +%s) - T0)) s)"; else not_ok "setup"; finish; fi
kill_seed "${KILL_SEED:-}"
TRIALS=${KILL_TRIALS:-20}
echo "# seed $KILL_SEED, $TRIALS kills at random moments in 0..$KILL_RUN_MS ms"
declare -A failed_trials=()
for i in $(seq 1 "$TRIALS"); do
    kill_trial "$i"
    for k in $KILL_KINDS; do
        if [ -n "${KILL_FAILS[$k]:-}" ]; then
            failed_trials[$k]=$((${failed_trials[$k]:-0} + 1))
            not_ok "kill $i ($KILL_DELAY_MS ms): $k" "${KILL_FAILS[$k]//; /$'\n'}"
        else
            ok "kill $i ($KILL_DELAY_MS ms): $k"
        fi
    done
done
summary=
for k in $KILL_KINDS; do summary+=" $k=${failed_trials[$k]:-0}"; done
echo "# seed $KILL_SEED run ${KILL_RUN_MS}ms: trials failing per check (of $TRIALS):$summary; $(($(date +%s) - T0)) s in all"
finish

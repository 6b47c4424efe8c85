#!/bin/bash
# 11_validation.sh - every bad-input case in tests/validation/ stops `plan`
# before any host is touched: exit code 2 and a `file:line:column: message`
# naming the problem.  Each case is a tiny inventory (hosts.ini, group_vars/,
# host_vars/) plus an `expect` file:
#   exit: 2
#   message: EXTENDED-REGEX the output must match
#   limit: PATTERN   (optional; passed as -l)
# Cases expecting exit 0 (00_design_example) are loaded by the unit test
# only: planning them would contact hosts.
source "$(dirname "$0")/../lib.sh"
root=$(cd "$(dirname "$0")/../.." && pwd)
pwned=/tmp/certfleet-pwned-validation   # what case 07's domain would create
rm -f "$pwned"

field() { sed -n "s/^$1: //p" "$2" | head -1; }

n=0
for dir in "$root"/tests/validation/[0-9][0-9]_*/; do
    dir=${dir%/}
    name=$(basename "$dir")
    want_exit=$(field exit "$dir/expect")
    [ "$want_exit" = 0 ] && continue
    want_msg=$(field message "$dir/expect")
    limit=$(field limit "$dir/expect")
    args=(plan -i "$dir/hosts.ini" --check)
    [ -n "$limit" ] && args+=(-l "$limit")
    # from the case directory: group_vars/ of the current directory (the
    # playbook dir) must not leak in from wherever the suite runs
    out=$(cd "$dir" && "$CERTFLEET" "${args[@]}" 2>&1)
    rc=$?
    is "$name: exit code" "$rc" "$want_exit"
    like "$name: message" "$out" "$want_msg"
    n=$((n + 1))
done
if [ "$n" -ge 12 ]; then ok "at least 12 bad-input cases ($n)"; else not_ok "only $n bad-input cases"; fi
if [ -e "$pwned" ]; then not_ok "a hostile domain name was executed ($pwned exists)"; else ok "no hostile value was executed"; fi
finish

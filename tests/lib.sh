# tests/lib.sh - sourced by integration tests: TAP helpers.
# ok "desc" / not_ok "desc" [detail] / check "desc" cmd... / is "desc" got want
CF_TESTNUM=0
CF_FAILS=0
CERTFLEET=${CERTFLEET:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/certfleet}
ok() { CF_TESTNUM=$((CF_TESTNUM + 1)); echo "ok $CF_TESTNUM - $1"; }
not_ok() {
    CF_TESTNUM=$((CF_TESTNUM + 1)); CF_FAILS=$((CF_FAILS + 1))
    echo "not ok $CF_TESTNUM - $1"
    [ -n "${2:-}" ] && printf '%s\n' "$2" | sed 's/^/#   /'
    return 0
}
# check "desc" command args...: passes when the command exits 0
check() { local d=$1; shift; if "$@" >/tmp/cf-check.$$ 2>&1; then ok "$d"; else not_ok "$d" "$(tail -20 /tmp/cf-check.$$)"; fi; rm -f /tmp/cf-check.$$; }
# is "desc" got want
is() { if [ "$2" = "$3" ]; then ok "$1"; else not_ok "$1" "got:  $2
want: $3"; fi; }
# like "desc" text regex
like() { if printf '%s' "$2" | grep -qE -- "$3"; then ok "$1"; else not_ok "$1" "text: $(printf '%s' "$2" | head -20)
does not match: $3"; fi; }
finish() { exit $(( CF_FAILS > 0 )); }

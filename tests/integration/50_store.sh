#!/bin/bash
# 50_store.sh - the central store end to end: certificates made with the
# openssl command line are stored through the real store API (the
# build/unit/test_store driver), then the layout is checked as certbot
# tooling would see it (modes, relative live links on the newest version),
# `certfleet certificates` lists it as text and JSON, and a lock held by
# another process is reported as "locked by pid N on HOST".  No network.
source "$(dirname "$0")/../lib.sh"
root=$(cd "$(dirname "$0")/../.." && pwd)
suffix=; [ "${SANITIZE:-0}" = 1 ] && suffix=-san
DRIVER=${CF_STORE_DRIVER:-$root/build/unit$suffix/test_store}

tmp=$(mktemp -d /tmp/cf-50store.XXXXXX)
holder=
cleanup() {
    [ -n "$holder" ] && kill "$holder" 2>/dev/null && wait "$holder" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT

if [ ! -x "$DRIVER" ] || [ ! -x "$CERTFLEET" ]; then
    not_ok "driver $DRIVER and $CERTFLEET are built (make certfleet unit-bins)"
    finish
fi

S=$tmp/state
pki=$tmp/pki
mkdir -p "$pki/newcerts"
: >"$pki/index.txt"
echo 1000 >"$pki/serial"
cat >"$pki/ca.cnf" <<EOF
[ca]
default_ca = d
[d]
database = $pki/index.txt
new_certs_dir = $pki/newcerts
serial = $pki/serial
default_md = sha256
policy = p
copy_extensions = copy
unique_subject = no
[p]
commonName = supplied
EOF
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
    -subj "/O=certfleet tests/CN=Store Test CA" -keyout "$pki/ca.key" -out "$pki/ca.pem" 2>/dev/null

# leaf NAME KEYALG START END SAN...: $pki/NAME.{key,pem,full}
leaf() {
    local name=$1 alg=$2 start=$3 end=$4; shift 4
    local san; san=$(printf 'DNS:%s,' "$@"); san=${san%,}
    if [ "$alg" = rsa ]; then
        openssl req -newkey rsa:2048 -nodes -subj "/CN=$1" -addext "subjectAltName=$san" \
            -keyout "$pki/$name.key" -out "$pki/$name.csr" 2>/dev/null
    else
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$1" \
            -addext "subjectAltName=$san" -keyout "$pki/$name.key" -out "$pki/$name.csr" 2>/dev/null
    fi
    openssl ca -batch -notext -config "$pki/ca.cnf" -cert "$pki/ca.pem" -keyfile "$pki/ca.key" \
        -in "$pki/$name.csr" -out "$pki/$name.pem" -startdate "$start" -enddate "$end" 2>/dev/null
    cat "$pki/$name.pem" "$pki/ca.pem" >"$pki/$name.full"
}
day() { date -u -d "$1" +%Y%m%d%H%M%SZ; }
leaf alpha1 ec "$(day '-1 hour')" "$(day '+90 days')" alpha.example.com www.alpha.example.com
leaf alpha2 ec "$(day '-1 hour')" "$(day '+90 days')" alpha.example.com www.alpha.example.com
leaf beta rsa "$(day '-1 hour')" "$(day '+10 days')" beta.example.com
leaf gamma ec 20200101000000Z 20200401000000Z gamma.example.com
serial() { openssl x509 -in "$1" -noout -serial | sed 's/serial=//'; }
s_alpha2=$(serial "$pki/alpha2.pem")

# ---- store through the API ----
out=$("$DRIVER" --import "$S" alpha "$pki/alpha1.full" "$pki/alpha1.key" \
    alpha.example.com www.alpha.example.com 2>&1)
is "first alpha is version 1" "$out" "stored alpha version 1"
out=$("$DRIVER" --import "$S" alpha "$pki/alpha2.full" "$pki/alpha2.key" \
    alpha.example.com www.alpha.example.com 2>&1)
is "second alpha is version 2" "$out" "stored alpha version 2"
check "beta (rsa) stored" "$DRIVER" --import "$S" beta "$pki/beta.full" "$pki/beta.key" beta.example.com
check "gamma (expired) stored" "$DRIVER" --import "$S" gamma "$pki/gamma.full" "$pki/gamma.key"
out=$("$DRIVER" --import "$S" delta "$pki/alpha1.full" "$pki/beta.key" alpha.example.com 2>&1); rc=$?
is "mismatched key refused" "$rc" 1
like "mismatch message names both key types" "$out" \
    "private key does not match certificate \(key is rsa-2048, certificate is ecdsa-256\)"
if [ -e "$S/archive/delta" ] || [ -e "$S/live/delta" ]; then
    not_ok "nothing written for a refused certificate"
else ok "nothing written for a refused certificate"; fi

# ---- modes ----
bad=
for d in "$S" "$S/accounts" "$S/archive" "$S/archive/alpha" "$S/live" "$S/live/alpha" \
    "$S/renewal" "$S/locks"; do
    m=$(stat -c %a "$d"); [ "$m" = 700 ] || bad="$bad $d=$m"
done
is "directories are 0700" "$bad" ""
bad=
for k in "$S"/archive/*/privkey*.pem; do
    m=$(stat -c %a "$k"); [ "$m" = 600 ] || bad="$bad $k=$m"
done
is "private keys are 0600" "$bad" ""
is "number of archived keys (alpha 1+2, beta, gamma)" "$(ls "$S"/archive/*/privkey*.pem | wc -l)" 4
is "certificates are 0644" "$(stat -c %a "$S/archive/alpha/fullchain2.pem")" 644
is "renewal conf is 0644" "$(stat -c %a "$S/renewal/alpha.conf")" 644

# ---- live links ----
bad=
for kind in cert chain fullchain privkey; do
    t=$(readlink "$S/live/alpha/$kind.pem")
    [ "$t" = "../../archive/alpha/${kind}2.pem" ] || bad="$bad $kind->$t"
done
is "live links are relative and point at version 2" "$bad" ""
is "live cert is the newest serial" "$(serial "$S/live/alpha/cert.pem")" "$s_alpha2"
is "live key matches live cert" \
    "$(openssl pkey -in "$S/live/alpha/privkey.pem" -pubout 2>&1)" \
    "$(openssl x509 -in "$S/live/alpha/cert.pem" -noout -pubkey 2>&1)"
check "live chain verifies the live cert" \
    openssl verify -CAfile "$S/live/alpha/chain.pem" "$S/live/alpha/cert.pem"
conf=$(cat "$S/renewal/alpha.conf")
like "renewal conf has certbot keys" "$conf" "^version = "
like "renewal conf points at live" "$conf" "fullchain = $S/live/alpha/fullchain.pem"
like "renewal conf records domains" "$conf" "domains = alpha.example.com, www.alpha.example.com"
like "renewal conf records the key type" "$(cat "$S/renewal/beta.conf")" "key_type = rsa"

# ---- certfleet certificates (text) ----
out=$("$CERTFLEET" certificates --state-dir "$S" 2>&1); rc=$?
is "certificates exits 0" "$rc" 0
like "lists alpha" "$out" "Certificate Name: alpha"
like "alpha domains" "$out" "Domains: alpha.example.com www.alpha.example.com"
like "alpha serial is the openssl serial" "$out" "Serial Number: $s_alpha2"
like "alpha valid with days left" "$out" "\(VALID: (89|90) days\)"
like "alpha version 2" "$out" "Version: 2"
like "alpha certificate path" "$out" "Certificate Path: $S/live/alpha/fullchain.pem"
like "alpha private key path" "$out" "Private Key Path: $S/live/alpha/privkey.pem"
like "beta key type" "$out" "Key Type: rsa-2048"
like "gamma expired" "$out" "Expiry Date: 2020-04-01 00:00:00\+00:00 \(EXPIRED\)"
order=$(printf '%s\n' "$out" | sed -n 's/.*Certificate Name: //p' | tr '\n' ' ')
is "sorted by name" "$order" "alpha beta gamma "
out=$(CERTFLEET_STATE_DIR=$S "$CERTFLEET" certificates beta 2>&1)
like "CERTFLEET_STATE_DIR and a NAME filter" "$out" "Certificate Name: beta"
if printf '%s' "$out" | grep -q alpha; then not_ok "filter shows only beta"; else ok "filter shows only beta"; fi
out=$("$CERTFLEET" certificates --state-dir "$S" nope 2>&1); rc=$?
is "unknown NAME exits 1" "$rc" 1
like "unknown NAME is named" "$out" "certificate 'nope' is not in the store"

# ---- JSON ----
json=$("$CERTFLEET" certificates --state-dir "$S" --output json); rc=$?
is "json exits 0" "$rc" 0
is "json names" "$(jq -r '[.certificates[].name] | join(",")' <<<"$json")" "alpha,beta,gamma"
is "json alpha version" "$(jq -r '.certificates[0].version' <<<"$json")" 2
is "json alpha serial" "$(jq -r '.certificates[0].serial' <<<"$json")" "$s_alpha2"
is "json alpha domains" "$(jq -r '.certificates[0].domains | join(",")' <<<"$json")" \
    "alpha.example.com,www.alpha.example.com"
is "json beta key type" "$(jq -r '.certificates[1].key_type' <<<"$json")" "rsa-2048"
like "json beta days left" "$(jq -r '.certificates[1].days_left' <<<"$json")" "^(9|10)$"
is "json gamma invalid" "$(jq -r '.certificates[2].valid' <<<"$json")" "false"
is "json gamma not_after" "$(jq -r '.certificates[2].not_after' <<<"$json")" "2020-04-01T00:00:00Z"
is "json private key path" "$(jq -r '.certificates[0].private_key_path' <<<"$json")" \
    "$S/live/alpha/privkey.pem"
is "json not locked" "$(jq -r '.certificates[0].locked_by' <<<"$json")" "null"

# ---- configured domains that the certificate does not cover yet ----
check "epsilon stored with a wider configured set" "$DRIVER" --import "$S" epsilon \
    "$pki/alpha1.full" "$pki/alpha1.key" alpha.example.com www.alpha.example.com new.example.com
out=$("$CERTFLEET" certificates --state-dir "$S" epsilon 2>&1)
like "configured domains shown when they differ" "$out" \
    "Configured Domains: alpha.example.com www.alpha.example.com new.example.com \(the next run reissues\)"
is "json configured domains" \
    "$("$CERTFLEET" certificates --state-dir "$S" --output json epsilon |
        jq -r '.certificates[0].configured_domains | length')" 3

# ---- empty, usage ----
out=$("$CERTFLEET" certificates --state-dir "$tmp/none" 2>&1); rc=$?
is "missing state dir exits 0" "$rc" 0
like "missing state dir says so" "$out" "No certificates found in $tmp/none"
if [ -e "$tmp/none" ]; then not_ok "listing creates nothing"; else ok "listing creates nothing"; fi
"$CERTFLEET" certificates --output xml >/dev/null 2>&1; rc=$?
is "bad --output is a usage error" "$rc" 2
out=$("$CERTFLEET" certificates --help); rc=$?
is "--help exits 0" "$rc" 0
like "--help has an example" "$out" "example:"

# ---- a lock held by another process ----
"$DRIVER" --hold "$S" alpha 60 >"$tmp/hold.out" 2>&1 &
holder=$!
for _ in $(seq 100); do grep -q held "$tmp/hold.out" 2>/dev/null && break; sleep 0.05; done
host=$(hostname)
out=$("$DRIVER" --trylock "$S" alpha); rc=$?
is "second locker is refused" "$rc" 3
is "lock message names pid and host" "$out" "certificate 'alpha' is locked by pid $holder on $host"
out=$("$DRIVER" --trylock "$S" beta); rc=$?
is "other certificates are not locked" "$rc" 0
out=$("$CERTFLEET" certificates --state-dir "$S" alpha 2>&1)
like "certificates shows the holder" "$out" "Locked: by pid $holder on $host"
is "json shows the holder" \
    "$("$CERTFLEET" certificates --state-dir "$S" --output json | jq -r '.certificates[0].locked_by')" \
    "pid $holder on $host"
kill "$holder"; wait "$holder" 2>/dev/null; holder=
out=$("$DRIVER" --trylock "$S" alpha); rc=$?
is "lock free once the holder is gone" "$out" "acquired"

finish

#!/bin/bash
# tests/tls_fixture.sh - a local CA, leaf certificates with chosen lifetimes
# (including expired ones) and an nginx serving them by SNI, for the probe,
# status and alert tests and bench/status.  Only 127.0.40.0/24 is used.
#
#   tls_fixture.sh ca DIR                          CA in DIR/ca.{key,pem}
#   tls_fixture.sh cert DIR NAME DAYS [SAN...]     DIR/NAME.{key,pem}, signed by the CA
#                                                  (SAN: a DNS name, or IP:1.2.3.4);
#                                                  DAYS may be negative (already expired)
#   tls_fixture.sh selfsigned DIR NAME DAYS        DIR/NAME.{key,pem}, self-signed
#   tls_fixture.sh nginx DIR LISTEN DEFAULT NAME...  write DIR/nginx.conf: one server per
#                                                  NAME (its cert), DEFAULT first; LISTEN
#                                                  is addr:port (repeatable, comma-separated)
#   tls_fixture.sh start DIR                       start nginx, pid in DIR/nginx.pid
#   tls_fixture.sh stop DIR                        stop it (by that pid)
set -eu
cmd=$1; dir=$2; shift 2
mkdir -p "$dir"

ca() {
    [ -f "$dir/ca.pem" ] && return 0
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
        -subj "/CN=certfleet test CA" -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
    mkdir -p "$dir/ca.db"
    : >"$dir/ca.db/index.txt"
    cat >"$dir/ca.cnf" <<EOF
[ca]
default_ca = test
[test]
dir = $dir/ca.db
database = \$dir/index.txt
new_certs_dir = \$dir
certificate = $dir/ca.pem
private_key = $dir/ca.key
default_md = sha256
policy = any
unique_subject = no
rand_serial = yes
copy_extensions = copy
[any]
commonName = supplied
EOF
}

# openssl ca takes explicit dates, so a certificate can be made already
# expired (notAfter in the past) without faking the clock.
cert() {
    local name=$1 days=$2; shift 2
    local sans="DNS:$name" s
    for s in "$@"; do
        case $s in IP:*) sans="$sans,$s" ;; *) sans="$sans,DNS:$s" ;; esac
    done
    ca
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$name" \
        -addext "subjectAltName=$sans" -keyout "$dir/$name.key" -out "$dir/$name.csr" 2>/dev/null
    local start end now
    now=$(date -u +%s)
    if [ "$days" -lt 0 ]; then
        start=$(date -u -d "@$((now + days * 86400 - 30 * 86400))" +%Y%m%d%H%M%SZ)
    else
        start=$(date -u -d "@$((now - 60))" +%Y%m%d%H%M%SZ)
    fi
    end=$(date -u -d "@$((now + days * 86400))" +%Y%m%d%H%M%SZ)
    openssl ca -batch -config "$dir/ca.cnf" -notext -startdate "$start" -enddate "$end" \
        -in "$dir/$name.csr" -out "$dir/$name.pem" 2>/dev/null
    rm -f "$dir/$name.csr"
}

selfsigned() {
    local name=$1 days=$2
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days "$days" \
        -subj "/CN=$name" -addext "subjectAltName=DNS:$name" \
        -keyout "$dir/$name.key" -out "$dir/$name.pem" 2>/dev/null
}

nginx_conf() {
    local listen=$1 default=$2; shift 2
    local l
    mkdir -p "$dir/nginx"
    {
        echo "worker_processes 1;"
        echo "pid $dir/nginx.pid;"
        echo "error_log $dir/nginx/error.log warn;"
        echo "events { worker_connections 4096; }"
        echo "http {"
        echo "  access_log off;"
        echo "  client_body_temp_path $dir/nginx/body; proxy_temp_path $dir/nginx/proxy;"
        echo "  fastcgi_temp_path $dir/nginx/fcgi; uwsgi_temp_path $dir/nginx/uwsgi;"
        echo "  scgi_temp_path $dir/nginx/scgi;"
        echo "  server_names_hash_bucket_size 128; server_names_hash_max_size 65536;"
        for n in "$default" "$@"; do
            echo "  server {"
            for l in ${listen//,/ }; do
                if [ "$n" = "$default" ]; then echo "    listen $l ssl default_server;"
                else echo "    listen $l ssl;"; fi
            done
            echo "    server_name $n;"
            echo "    ssl_certificate $dir/$n.pem; ssl_certificate_key $dir/$n.key;"
            echo "    return 200 '$n';"
            echo "  }"
        done
        echo "}"
    } >"$dir/nginx.conf"
}

start() {
    nginx -e "$dir/nginx/error.log" -p "$dir/nginx" -c "$dir/nginx.conf"
    for _ in $(seq 50); do [ -s "$dir/nginx.pid" ] && return 0; sleep 0.1; done
    echo "nginx did not start" >&2; cat "$dir/nginx/error.log" >&2; return 1
}

stop() {
    [ -s "$dir/nginx.pid" ] || return 0
    local pid; pid=$(cat "$dir/nginx.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    rm -f "$dir/nginx.pid"
}

case $cmd in
ca) ca ;;
cert) cert "$@" ;;
selfsigned) selfsigned "$@" ;;
nginx) nginx_conf "$@" ;;
start) start ;;
stop) stop ;;
*) echo "unknown command $cmd" >&2; exit 2 ;;
esac

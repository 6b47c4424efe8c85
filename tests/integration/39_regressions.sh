#!/bin/bash
# Regressions of the apply pipeline, each reproduced on the old code:
# (1) certbot_reuse_key plus a key-type change reissued on every run (the
#     stored key was reused whatever the decision);
# (2) a failed push on a host given its placeholder earlier in the same run
#     stayed on the version whose test failed (rollback only knew links
#     that existed before the run).
source "$(dirname "$0")/../lib.sh"
fleet_up regress --hosts 2 --subnet 127.0.39 --port-base 14390
version() { readlink "$STATE/live/$1/cert.pem" | sed 's/.*cert\([0-9]*\)\.pem/\1/'; }
keyalg() { openssl x509 -in "$STATE/live/$1/cert.pem" -noout -text | sed -n 's/^ *Public Key Algorithm: //p'; }

# ---- (1) reuse_key and a key-type change
cf apply -l h1 -e certbot_reuse_key=true
is "reuse_key: first apply exits 0" "$RC" 0
is "reuse_key: an ECDSA certificate first" "$(keyalg h1)" id-ecPublicKey
v1=$(version h1)
cf apply -l h1 -e certbot_reuse_key=true -e certbot_key_type=rsa
is "key type changed: exit 0" "$RC" 0
like "key type changed: decided reissue-keytype" "$OUT" '^h1 +reissue-keytype'
is "key type changed: the new certificate has an RSA key" "$(keyalg h1)" rsaEncryption
v2=$(version h1)
is "key type changed: one new version" "$v2" $((v1 + 1))
for run in 3 4; do
    cf apply -l h1 -e certbot_reuse_key=true -e certbot_key_type=rsa
    is "run $run after the change: exit 0" "$RC" 0
    is "run $run after the change: nothing issued (version stays $v2)" "$(version h1)" "$v2"
done
like "the renewal conf records the real key type" "$(cat "$STATE/renewal/h1.conf")" 'key_type = rsa'
cf apply -l h1 -e certbot_reuse_key=true -e certbot_key_type=rsa --force-renewal
is "forced renewal with reuse_key: exit 0" "$RC" 0
is "forced renewal with reuse_key: the RSA key is kept" \
    "$(openssl x509 -in "$STATE/live/h1/cert.pem" -noout -pubkey | sha256sum)" \
    "$(openssl x509 -in "$STATE/archive/h1/cert$v2.pem" -noout -pubkey | sha256sum)"

# ---- (2) a new host: placeholder, then a push whose test fails
r2=$(hroot h2)
cat >"$FDIR/test-h2" <<EOF
#!/bin/sh
# passes with no certificate yet or the placeholder (version 0) only
t=\$(readlink '$r2/etc/letsencrypt/live/h2/cert.pem')
case "\$t" in ""|*/cert0.pem) exec '$r2/bin/nginx-ctl' test ;; esac
echo "nginx: [emerg] cannot load \$t" >&2
exit 1
EOF
chmod 755 "$FDIR/test-h2"
hv=$FLEET_DIR/inventory/host_vars/h2.yml
cp "$hv" "$FDIR/h2.yml.orig"
grep -v '^certbot_test_command:' "$FDIR/h2.yml.orig" >"$hv"
echo "certbot_test_command: \"$FDIR/test-h2\"" >>"$hv"
cf apply -l h2
is "new host, failing push: exit 1" "$RC" 1
like "new host: the placeholder was installed first" "$OUT" "install certificate 'h2' => version 0: self-signed placeholder"
like "new host: the push failed and was rolled back" "$OUT" "failed: \[h2\] push \| push certificate 'h2' => test command .* failed after the swap: .*cannot load ../../archive/h2/cert1.pem; rolled back to the previous certificate"
is "new host: the live link is back on the placeholder" "$(readlink "$r2/etc/letsencrypt/live/h2/cert.pem")" ../../archive/h2/cert0.pem
check "new host: the config test passes after the rollback" "$FDIR/test-h2"
cp "$FDIR/h2.yml.orig" "$hv"
cf apply -l h2
is "new host: the next run pushes the store's version" "$RC" 0
is "new host: live link on version 1" "$(readlink "$r2/etc/letsencrypt/live/h2/cert.pem")" ../../archive/h2/cert1.pem
finish

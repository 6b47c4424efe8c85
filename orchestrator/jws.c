/*
 * jws.c - JWS signing for ACME (see jws.h).
 */
#include "cf.h"
#include "jws.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include "x509.h"

const char *cf_jws_alg(EVP_PKEY *key)
{
    const char *type;
    int bits;
    if (cf_x509_key_describe(key, &type, &bits) != 0)
        return NULL;
    if (!strcmp(type, "rsa"))
        return "RS256";
    return bits == 256 ? "ES256" : bits == 384 ? "ES384" : NULL;
}

/* base64url of a big number, left-padded with zeros to pad bytes (EC
 * coordinates have a fixed width; RSA n and e use their minimal width). */
static char *bn_b64url(const BIGNUM *bn, int pad)
{
    int n = pad > 0 ? pad : BN_num_bytes(bn);
    if (n == 0)
        n = 1;
    unsigned char *buf = cf_xmalloc((size_t)n);
    if (BN_bn2binpad(bn, buf, n) < 0) {
        free(buf);
        return NULL;
    }
    char *s = cf_b64url(buf, (size_t)n);
    free(buf);
    return s;
}

static int set_b64(json_t *o, const char *name, const BIGNUM *bn, int pad)
{
    char *s = bn_b64url(bn, pad);
    if (!s)
        return CF_EINVAL;
    json_object_set_new(o, name, json_string(s));
    free(s);
    return 0;
}

int cf_jws_jwk(EVP_PKEY *key, json_t **out, char *err)
{
    *out = NULL;
    const char *type;
    int bits, rc = CF_EINVAL;
    BIGNUM *a = NULL, *b = NULL;
    if (cf_x509_key_describe(key, &type, &bits) != 0)
        return cf_errf(err, "unsupported account key: use ecdsa P-256/P-384 or rsa");
    json_t *o = json_object();
    if (!strcmp(type, "ecdsa")) {
        if (!EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_EC_PUB_X, &a) ||
            !EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_EC_PUB_Y, &b))
            goto out;
        int w = bits == 256 ? 32 : 48;
        json_object_set_new(o, "crv", json_string(bits == 256 ? "P-256" : "P-384"));
        json_object_set_new(o, "kty", json_string("EC"));
        if (set_b64(o, "x", a, w) || set_b64(o, "y", b, w))
            goto out;
    } else {
        if (!EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_RSA_E, &a) ||
            !EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_RSA_N, &b))
            goto out;
        if (set_b64(o, "e", a, 0))
            goto out;
        json_object_set_new(o, "kty", json_string("RSA"));
        if (set_b64(o, "n", b, 0))
            goto out;
    }
    *out = o;
    o = NULL;
    rc = 0;
out:
    if (rc)
        cf_errf(err, "cannot read the public key parameters");
    json_decref(o);
    BN_free(a);
    BN_free(b);
    return rc;
}

int cf_jws_thumbprint(EVP_PKEY *key, char **out, char *err)
{
    *out = NULL;
    json_t *jwk;
    int rc = cf_jws_jwk(key, &jwk, err);
    if (rc)
        return rc;
    /* the JWK holds exactly the required members; sorted and compact is
     * the canonical form RFC 7638 §3 asks for */
    char *s = json_dumps(jwk, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(jwk);
    if (!s)
        return CF_ENOMEM;
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256((unsigned char *)s, strlen(s), md);
    free(s);
    *out = cf_b64url(md, sizeof md);
    return 0;
}

/* Sign data with key the way JWS wants it: ECDSA as raw r||s with each
 * half padded to the curve size (RFC 7518 §3.4), RSA as PKCS#1 v1.5. */
static int sign_raw(EVP_PKEY *key, const char *data, size_t len, unsigned char **sig,
                    size_t *sig_len, char *err)
{
    *sig = NULL;
    *sig_len = 0;
    const char *type;
    int bits, rc = CF_EINVAL;
    if (cf_x509_key_describe(key, &type, &bits) != 0)
        return cf_errf(err, "unsupported signing key");
    const EVP_MD *md = !strcmp(type, "ecdsa") && bits == 384 ? EVP_sha384() : EVP_sha256();
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char *der = NULL;
    size_t der_len = 0;
    ECDSA_SIG *es = NULL;
    if (!ctx || EVP_DigestSignInit(ctx, NULL, md, NULL, key) != 1 ||
        EVP_DigestSign(ctx, NULL, &der_len, (const unsigned char *)data, len) != 1)
        goto ossl;
    der = cf_xmalloc(der_len);
    if (EVP_DigestSign(ctx, der, &der_len, (const unsigned char *)data, len) != 1)
        goto ossl;
    if (!strcmp(type, "rsa")) {
        *sig = der;
        *sig_len = der_len;
        der = NULL;
        rc = 0;
        goto out;
    }
    const unsigned char *p = der;
    es = d2i_ECDSA_SIG(NULL, &p, (long)der_len);
    if (!es)
        goto ossl;
    int w = bits / 8;
    *sig = cf_xmalloc((size_t)w * 2);
    if (BN_bn2binpad(ECDSA_SIG_get0_r(es), *sig, w) != w ||
        BN_bn2binpad(ECDSA_SIG_get0_s(es), *sig + w, w) != w) {
        free(*sig);
        *sig = NULL;
        goto ossl;
    }
    *sig_len = (size_t)w * 2;
    rc = 0;
    goto out;
ossl:
    cf_errf(err, "signing failed: %s", ERR_reason_error_string(ERR_get_error()));
    ERR_clear_error();
out:
    ECDSA_SIG_free(es);
    free(der);
    EVP_MD_CTX_free(ctx);
    return rc;
}

/* Build {"protected","payload","signature"} from a protected header and
 * a payload, signing "<b64 protected>.<b64 payload>" with sign(). */
static int assemble(json_t *protected_hdr, const char *payload, EVP_PKEY *key,
                    const unsigned char *hmac_key, size_t hmac_len, json_t **out, char *err)
{
    *out = NULL;
    char *ph = json_dumps(protected_hdr, JSON_COMPACT);
    if (!ph)
        return CF_ENOMEM;
    char *ph64 = cf_b64url(ph, strlen(ph));
    char *pl64 = payload ? cf_b64url(payload, strlen(payload)) : cf_strdup("");
    char *input = cf_asprintf("%s.%s", ph64, pl64);
    unsigned char *sig = NULL;
    size_t sig_len = 0;
    int rc = 0;
    if (key) {
        rc = sign_raw(key, input, strlen(input), &sig, &sig_len, err);
    } else {
        unsigned int mlen = 0;
        sig = cf_xmalloc(EVP_MAX_MD_SIZE);
        if (!HMAC(EVP_sha256(), hmac_key, (int)hmac_len, (unsigned char *)input, strlen(input), sig,
                  &mlen))
            rc = cf_errf(err, "hmac failed");
        sig_len = mlen;
    }
    if (rc == 0) {
        char *sig64 = cf_b64url(sig, sig_len);
        json_t *o = json_object();
        json_object_set_new(o, "protected", json_string(ph64));
        json_object_set_new(o, "payload", json_string(pl64));
        json_object_set_new(o, "signature", json_string(sig64));
        free(sig64);
        *out = o;
    }
    free(sig);
    free(input);
    free(pl64);
    free(ph64);
    free(ph);
    return rc;
}

int cf_jws_sign(EVP_PKEY *key, const char *kid, const char *nonce, const char *url,
                const char *payload, char **out, char *err)
{
    *out = NULL;
    const char *alg = cf_jws_alg(key);
    if (!alg)
        return cf_errf(err, "unsupported account key: use ecdsa P-256/P-384 or rsa");
    if (!url)
        return cf_errf(err, "jws: no url");
    json_t *hdr = json_object();
    json_object_set_new(hdr, "alg", json_string(alg));
    if (kid) {
        json_object_set_new(hdr, "kid", json_string(kid));
    } else {
        json_t *jwk;
        int rc = cf_jws_jwk(key, &jwk, err);
        if (rc) {
            json_decref(hdr);
            return rc;
        }
        json_object_set_new(hdr, "jwk", jwk);
    }
    if (nonce)
        json_object_set_new(hdr, "nonce", json_string(nonce));
    json_object_set_new(hdr, "url", json_string(url));
    json_t *jws;
    int rc = assemble(hdr, payload, key, NULL, 0, &jws, err);
    json_decref(hdr);
    if (rc)
        return rc;
    *out = json_dumps(jws, JSON_COMPACT);
    json_decref(jws);
    return *out ? 0 : CF_ENOMEM;
}

char *cf_jws_key_authorization(const char *token, const char *thumbprint)
{
    return cf_asprintf("%s.%s", token, thumbprint);
}

char *cf_jws_dns01_value(const char *key_authorization)
{
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)key_authorization, strlen(key_authorization), md);
    return cf_b64url(md, sizeof md);
}

int cf_jws_b64url_decode(const char *in, unsigned char **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    size_t n = strlen(in);
    while (n && in[n - 1] == '=')
        n--;
    unsigned char *buf = cf_xmalloc(n * 3 / 4 + 3);
    size_t o = 0;
    unsigned acc = 0;
    int nbits = 0;
    for (size_t i = 0; i < n; i++) {
        char c = in[i];
        int v;
        if (c >= 'A' && c <= 'Z')
            v = c - 'A';
        else if (c >= 'a' && c <= 'z')
            v = c - 'a' + 26;
        else if (c >= '0' && c <= '9')
            v = c - '0' + 52;
        else if (c == '-' || c == '+')
            v = 62;
        else if (c == '_' || c == '/')
            v = 63;
        else {
            cf_secure_free(buf, n * 3 / 4 + 3);
            return CF_EINVAL;
        }
        acc = (acc << 6) | (unsigned)v;
        nbits += 6;
        if (nbits >= 8) {
            nbits -= 8;
            buf[o++] = (unsigned char)(acc >> nbits);
            acc &= (1u << nbits) - 1;
        }
    }
    *out = buf;
    *len = o;
    return 0;
}

int cf_jws_eab(EVP_PKEY *account_key, const char *eab_kid, const char *hmac_key_b64,
               const char *new_account_url, json_t **out, char *err)
{
    *out = NULL;
    unsigned char *mac_key = NULL;
    size_t mac_len = 0;
    if (!eab_kid || !*eab_kid || !hmac_key_b64 ||
        cf_jws_b64url_decode(hmac_key_b64, &mac_key, &mac_len) != 0 || mac_len == 0) {
        if (mac_key)
            cf_secure_free(mac_key, mac_len);
        return cf_errf(err, "invalid external account binding: 'certbot_eab_hmac_key' must be "
                            "base64url and 'certbot_eab_kid' set");
    }
    json_t *jwk = NULL, *hdr = NULL;
    char *payload = NULL;
    int rc = cf_jws_jwk(account_key, &jwk, err);
    if (rc)
        goto out;
    payload = json_dumps(jwk, JSON_COMPACT);
    hdr = json_object();
    json_object_set_new(hdr, "alg", json_string("HS256"));
    json_object_set_new(hdr, "kid", json_string(eab_kid));
    json_object_set_new(hdr, "url", json_string(new_account_url));
    rc = assemble(hdr, payload, NULL, mac_key, mac_len, out, err);
out:
    cf_secure_free(mac_key, mac_len);
    free(payload);
    json_decref(jwk);
    json_decref(hdr);
    return rc;
}

int cf_jws_rollover_inner(EVP_PKEY *new_key, EVP_PKEY *old_key, const char *account_url,
                          const char *key_change_url, char **out, char *err)
{
    *out = NULL;
    json_t *new_jwk = NULL, *old_jwk = NULL, *hdr = NULL, *pl = NULL, *jws = NULL;
    char *payload = NULL;
    const char *alg = cf_jws_alg(new_key);
    int rc = CF_EINVAL;
    if (!alg) {
        cf_errf(err, "unsupported new account key: use ecdsa P-256/P-384 or rsa");
        goto out;
    }
    if ((rc = cf_jws_jwk(new_key, &new_jwk, err)) != 0 ||
        (rc = cf_jws_jwk(old_key, &old_jwk, err)) != 0)
        goto out;
    hdr = json_object();
    json_object_set_new(hdr, "alg", json_string(alg));
    json_object_set(hdr, "jwk", new_jwk);
    json_object_set_new(hdr, "url", json_string(key_change_url));
    pl = json_object();
    json_object_set_new(pl, "account", json_string(account_url));
    json_object_set(pl, "oldKey", old_jwk);
    payload = json_dumps(pl, JSON_COMPACT);
    if ((rc = assemble(hdr, payload, new_key, NULL, 0, &jws, err)) != 0)
        goto out;
    *out = json_dumps(jws, JSON_COMPACT);
    rc = *out ? 0 : CF_ENOMEM;
out:
    free(payload);
    json_decref(new_jwk);
    json_decref(old_jwk);
    json_decref(hdr);
    json_decref(pl);
    json_decref(jws);
    return rc;
}

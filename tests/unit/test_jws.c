/*
 * test_jws.c - JWS, JWK, thumbprints, EAB and key rollover (keys and CSRs: test_x509.c).
 * Signatures are verified independently with OpenSSL (ECDSA r||s turned
 * back into DER), the RFC 7638 example key gives the thumbprint vector.
 * The fixed keys below are test keys generated for this file only.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/hmac.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "cf.h"
#include "jws.h"
#include "x509.h"
#include "util.h"

static const char KEY_P256[] = "-----BEGIN PRIVATE KEY-----\n"
                               "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg1G7iXjPpdNpyb/A0\n"
                               "8niPtRd2Hxf+lVgrCPDWv4vPqImhRANCAAQHcuuStFL94RASqy/ELUozN1Y8oiJe\n"
                               "jJMZ8mQsZeOmRX2SSlJB8rx31A+wVaTV58EiEy7NeAEloFYOsY6A4rcx\n"
                               "-----END PRIVATE KEY-----\n";
static const char KEY_P384[] = "-----BEGIN PRIVATE KEY-----\n"
                               "MIG2AgEAMBAGByqGSM49AgEGBSuBBAAiBIGeMIGbAgEBBDDc75v850f+zuqU/4cx\n"
                               "dBy1kTkLQX19lPH78zdrNY8x7Cx/3NrNYI6zMQpA4jutD0GhZANiAASFl9b8HFDF\n"
                               "AU6ozvCn2CBCNnOJ3pRqSuFc1SSyMv0aYgGzinktXTmvjsjh6SwC3yuwEbl+ky7M\n"
                               "oVIATPIp8/XMQd/d6grsoxxKYT/7XVAcDHhkueb+MQIaeksT6ufYMPY=\n"
                               "-----END PRIVATE KEY-----\n";
static const char KEY_RSA[] = "-----BEGIN PRIVATE KEY-----\n"
                              "MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQDszwk2KL730xoQ\n"
                              "UdS1enyU1YI2LjfB0V1dvff9IMuus+o7kc2KOxxFiH06h7uY7oTxSlMmCDPUt65r\n"
                              "Q1G5e5JjWOHNFDVoO1SWGnC0oIzOV0BRyTZmFGZ3UUDI4Bo832p9mp0+UpGXhUSE\n"
                              "sHoLJlGCekhSDqCB/3z3Wj5KveoTNE5kG2S1ZrDGgBkkJSQONJ2mS+hztF5mZTvF\n"
                              "Y5Mw1P0ZC9VpEIQxSANomcRlNHw9bt3jVEEiZwYnzM4qfwoE4KnXNVqUjCMtCT+t\n"
                              "JNgVRdlxTMAsmaJBTkcEvtHcMTARqCuu636jWPGfr//NXsR9y9Zj3/RnrkNjaIEh\n"
                              "RIxYuyuLAgMBAAECggEAIjPG31EkP9P4FDpVb/6oZrCttViYigBMrWDmI+OsN2fZ\n"
                              "4U+uMZRXAX30pFL9V9m/TsBO4RPXNJZw9SIMeC8uVfX86utLyWmkTme0Nopnu9ej\n"
                              "PQzENBsnL32HT1v6vicAkPKXWmx/hbRkUIvSnLCkniU+M8fUC+KUMH+StqXWXH5u\n"
                              "27rQc8a0oea3vqwrigKZ7SzPj8nKxZG3Cax0LgAinAb/luAtaLuUVOlfBgf9eXsr\n"
                              "yasidPYPQBzTJMOcQoQNlWBcU0f0IZcgrJEUTXYZ892ggbeR/jc3eGLiDgxGYtVN\n"
                              "6Wlsf6lkxJPnfqln31rtb/HRiiBzVkgUODPPG09SOQKBgQD9AH4itbfBNOD8Eaxp\n"
                              "pU4oEL8eBTNt5uk1fDsX+b8hNyMe9X8bmQI2p+raUNeUtEPvmq01H456Kwamb+CX\n"
                              "ep9k8FSaqXiehLTZ/Qst9J4Nypk41rlToj9gkkmcXEicFeM0+rTAD8A9Ut5QuD0a\n"
                              "LrRo7Mr674W892OJZhebWnvtqQKBgQDvnWtoaiFoorD8m115WMOEpB8BnZEjXGgd\n"
                              "uUoTbdEv7Ba6RK1hKOK+XVpUv/5rp37RpZjG6DSeKEnR1+OP0EEF5q01d9PUBYkI\n"
                              "x/KWVD9cfqUFq2tXwUdaUjW/g+AS8jCqhjNCCvcReQ+dyPzCuVvpoomKmPOLM+bu\n"
                              "/OHM5clIEwKBgQCQYHKariZxjBKD5jYEh7/lH0FhCUjDA827puw2D2BhvQw+w4vI\n"
                              "nPVlaUedVBriEkjed981/I8a6mi+HAQHjYNeX8N4CxP5KfPmnf9+NyTm6+GqTOav\n"
                              "clxGaNS29Pa+k8L33cW+AH8Mv7h8SdcclOCBK/fdYUhpgKd9phP8pJMqGQKBgQDb\n"
                              "te+vzWkW5d79sYRzaUXWURsxQwa7ctbxMl5PFGo00/k/EQwdw/ytazIR9f5XPj1W\n"
                              "BM7izDa7MtwFczzxOJb2zz7RgS+WAQFXMOgqmdODf4jXewgxbkN7+VfZZRXIqZSg\n"
                              "N++2RhGoTuZX2tyRvJ8fyu7tTDQ81vmQ+AYf+C+pSwKBgD9WXhDaPvsGZjMZUY6b\n"
                              "zJtttPmmu02QMihIfZDn8IZHq6q3WuBW+nVgUA8kV+dF32TtZBiJTY/8Vo/Vr/q1\n"
                              "VKYI0iR5yh7LAMr0Gn8J0LJEKWx98eVplylPfnZ1i8REzMpJhGl6uJGExtke1zOZ\n"
                              "AB1+PamN6NYu0QbxVIsGajgF\n"
                              "-----END PRIVATE KEY-----\n";

static EVP_PKEY *load(const char *pem)
{
    EVP_PKEY *k = NULL;
    char err[CF_ERRLEN];
    assert_int_equal(cf_x509_key_read(pem, strlen(pem), &k, err), 0);
    return k;
}

static char *b64d(const char *s, size_t *len)
{
    unsigned char *out;
    assert_int_equal(cf_jws_b64url_decode(s, &out, len), 0);
    char *z = cf_xmalloc(*len + 1);
    memcpy(z, out, *len);
    z[*len] = '\0';
    free(out);
    return z;
}

/* Verify a flattened JWS with key as a relying party would. */
static int verify_jws(json_t *jws, EVP_PKEY *key)
{
    const char *p = json_string_value(json_object_get(jws, "protected"));
    const char *pl = json_string_value(json_object_get(jws, "payload"));
    const char *s = json_string_value(json_object_get(jws, "signature"));
    assert_non_null(p);
    assert_non_null(pl);
    assert_non_null(s);
    char *input = cf_asprintf("%s.%s", p, pl);
    size_t slen;
    unsigned char *sig;
    assert_int_equal(cf_jws_b64url_decode(s, &sig, &slen), 0);
    unsigned char *der = sig;
    size_t der_len = slen;
    const EVP_MD *md = EVP_sha256();
    if (EVP_PKEY_get_base_id(key) == EVP_PKEY_EC) {
        int w = EVP_PKEY_get_bits(key) / 8;
        assert_int_equal(slen, 2 * (size_t)w); /* raw r||s, not DER */
        if (w == 48)
            md = EVP_sha384();
        ECDSA_SIG *es = ECDSA_SIG_new();
        ECDSA_SIG_set0(es, BN_bin2bn(sig, w, NULL), BN_bin2bn(sig + w, w, NULL));
        der = NULL;
        der_len = (size_t)i2d_ECDSA_SIG(es, &der);
        ECDSA_SIG_free(es);
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = EVP_DigestVerifyInit(ctx, NULL, md, NULL, key) == 1 &&
             EVP_DigestVerify(ctx, der, der_len, (unsigned char *)input, strlen(input)) == 1;
    EVP_MD_CTX_free(ctx);
    if (der != sig)
        OPENSSL_free(der);
    free(sig);
    free(input);
    return ok;
}

static json_t *protected_of(json_t *jws)
{
    size_t len;
    char *p = b64d(json_string_value(json_object_get(jws, "protected")), &len);
    json_t *j = json_loads(p, 0, NULL);
    free(p);
    assert_non_null(j);
    return j;
}

static void check_sign(const char *pem, const char *alg)
{
    EVP_PKEY *k = load(pem);
    char err[CF_ERRLEN], *out;
    assert_string_equal(cf_jws_alg(k), alg);
    /* with jwk (newAccount) */
    assert_int_equal(cf_jws_sign(k, NULL, "nonce-1", "https://ca/new-acct", "{\"a\":1}", &out, err),
                     0);
    json_t *jws = json_loads(out, 0, NULL);
    assert_true(verify_jws(jws, k));
    json_t *ph = protected_of(jws);
    assert_string_equal(json_string_value(json_object_get(ph, "alg")), alg);
    assert_string_equal(json_string_value(json_object_get(ph, "nonce")), "nonce-1");
    assert_string_equal(json_string_value(json_object_get(ph, "url")), "https://ca/new-acct");
    assert_non_null(json_object_get(ph, "jwk"));
    assert_null(json_object_get(ph, "kid"));
    size_t len;
    char *pl = b64d(json_string_value(json_object_get(jws, "payload")), &len);
    assert_string_equal(pl, "{\"a\":1}");
    free(pl);
    /* a tampered payload must not verify (the check can fail) */
    json_object_set_new(jws, "payload", json_string("e30"));
    assert_false(verify_jws(jws, k));
    json_decref(ph);
    json_decref(jws);
    free(out);
    /* with kid, POST-as-GET: empty payload */
    assert_int_equal(
        cf_jws_sign(k, "https://ca/acct/1", "n2", "https://ca/order/1", NULL, &out, err), 0);
    jws = json_loads(out, 0, NULL);
    assert_true(verify_jws(jws, k));
    ph = protected_of(jws);
    assert_string_equal(json_string_value(json_object_get(ph, "kid")), "https://ca/acct/1");
    assert_null(json_object_get(ph, "jwk"));
    assert_string_equal(json_string_value(json_object_get(jws, "payload")), "");
    json_decref(ph);
    json_decref(jws);
    free(out);
    EVP_PKEY_free(k);
}

static void test_sign_es256(void **state)
{
    check_sign(KEY_P256, "ES256");
}

static void test_sign_es384(void **state)
{
    check_sign(KEY_P384, "ES384");
}

static void test_sign_rs256(void **state)
{
    check_sign(KEY_RSA, "RS256");
}

/* RFC 7638 §3.1 example key and thumbprint. */
static void test_thumbprint_rfc7638(void **state)
{
    const char *n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuh"
                    "DR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6"
                    "Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajr"
                    "n1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0"
                    "Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
    unsigned char *nb;
    size_t nlen;
    assert_int_equal(cf_jws_b64url_decode(n, &nb, &nlen), 0);
    BIGNUM *bn = BN_bin2bn(nb, (int)nlen, NULL), *be = BN_new();
    BN_set_word(be, 65537);
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn);
    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be);
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    EVP_PKEY *k = NULL;
    assert_int_equal(EVP_PKEY_fromdata_init(ctx), 1);
    assert_int_equal(EVP_PKEY_fromdata(ctx, &k, EVP_PKEY_PUBLIC_KEY, params), 1);
    char *tp, err[CF_ERRLEN];
    assert_int_equal(cf_jws_thumbprint(k, &tp, err), 0);
    assert_string_equal(tp, "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
    json_t *jwk;
    assert_int_equal(cf_jws_jwk(k, &jwk, err), 0);
    assert_string_equal(json_string_value(json_object_get(jwk, "n")), n);
    assert_string_equal(json_string_value(json_object_get(jwk, "e")), "AQAB");
    json_decref(jwk);
    free(tp);
    EVP_PKEY_free(k);
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(bn);
    BN_free(be);
    free(nb);
}

static void test_ec_jwk_fixed_width(void **state)
{
    EVP_PKEY *k = load(KEY_P384);
    json_t *jwk;
    char err[CF_ERRLEN];
    assert_int_equal(cf_jws_jwk(k, &jwk, err), 0);
    assert_string_equal(json_string_value(json_object_get(jwk, "crv")), "P-384");
    assert_string_equal(json_string_value(json_object_get(jwk, "kty")), "EC");
    size_t len;
    char *x = b64d(json_string_value(json_object_get(jwk, "x")), &len);
    assert_int_equal(len, 48);
    free(x);
    json_decref(jwk);
    EVP_PKEY_free(k);
}

/* Value computed with: printf %s tok...thumbprint123 | openssl dgst -sha256 -binary | base64url */
static void test_key_authorization_dns01(void **state)
{
    char *ka = cf_jws_key_authorization("tok_abcdefghijklmnopqrstuv", "thumbprint123");
    assert_string_equal(ka, "tok_abcdefghijklmnopqrstuv.thumbprint123");
    char *v = cf_jws_dns01_value(ka);
    assert_string_equal(v, "jszOZ6_7qvDtd7kqw_4FyQL-a0HiRE63VGnGgLaFLFU");
    free(v);
    free(ka);
}

static void test_eab(void **state)
{
    EVP_PKEY *k = load(KEY_P256);
    json_t *eab, *jwk;
    char err[CF_ERRLEN];
    const char *hmac_b64 = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W";
    assert_int_equal(cf_jws_eab(k, "kid-1", hmac_b64, "https://ca/new-acct", &eab, err), 0);
    json_t *ph = protected_of(eab);
    assert_string_equal(json_string_value(json_object_get(ph, "alg")), "HS256");
    assert_string_equal(json_string_value(json_object_get(ph, "kid")), "kid-1");
    assert_string_equal(json_string_value(json_object_get(ph, "url")), "https://ca/new-acct");
    assert_null(json_object_get(ph, "nonce"));
    size_t len;
    char *pl = b64d(json_string_value(json_object_get(eab, "payload")), &len);
    assert_int_equal(cf_jws_jwk(k, &jwk, err), 0);
    json_t *plj = json_loads(pl, 0, NULL);
    assert_true(json_equal(plj, jwk));
    /* recompute the MAC independently */
    unsigned char *key;
    size_t klen;
    assert_int_equal(cf_jws_b64url_decode(hmac_b64, &key, &klen), 0);
    assert_int_equal(klen, 48);
    char *input = cf_asprintf("%s.%s", json_string_value(json_object_get(eab, "protected")),
                              json_string_value(json_object_get(eab, "payload")));
    unsigned char mac[32];
    unsigned int mlen;
    HMAC(EVP_sha256(), key, (int)klen, (unsigned char *)input, strlen(input), mac, &mlen);
    char *want = cf_b64url(mac, mlen);
    assert_string_equal(json_string_value(json_object_get(eab, "signature")), want);
    /* a bad key is refused with a message */
    json_t *bad;
    assert_int_not_equal(cf_jws_eab(k, "kid-1", "not base64!", "https://ca/x", &bad, err), 0);
    assert_non_null(strstr(err, "certbot_eab_hmac_key"));
    free(want);
    free(input);
    free(key);
    free(pl);
    json_decref(plj);
    json_decref(jwk);
    json_decref(ph);
    json_decref(eab);
    EVP_PKEY_free(k);
}

static void test_rollover_inner(void **state)
{
    EVP_PKEY *old = load(KEY_P256), *nk = load(KEY_RSA);
    char *out, err[CF_ERRLEN];
    assert_int_equal(
        cf_jws_rollover_inner(nk, old, "https://ca/acct/7", "https://ca/key-change", &out, err), 0);
    json_t *jws = json_loads(out, 0, NULL);
    assert_true(verify_jws(jws, nk));
    json_t *ph = protected_of(jws);
    assert_string_equal(json_string_value(json_object_get(ph, "alg")), "RS256");
    assert_string_equal(json_string_value(json_object_get(ph, "url")), "https://ca/key-change");
    assert_null(json_object_get(ph, "nonce"));
    json_t *nj, *oj;
    cf_jws_jwk(nk, &nj, err);
    cf_jws_jwk(old, &oj, err);
    assert_true(json_equal(json_object_get(ph, "jwk"), nj));
    size_t len;
    char *pl = b64d(json_string_value(json_object_get(jws, "payload")), &len);
    json_t *plj = json_loads(pl, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(plj, "account")), "https://ca/acct/7");
    assert_true(json_equal(json_object_get(plj, "oldKey"), oj));
    json_decref(plj);
    free(pl);
    json_decref(nj);
    json_decref(oj);
    json_decref(ph);
    json_decref(jws);
    free(out);
    EVP_PKEY_free(old);
    EVP_PKEY_free(nk);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sign_es256),
        cmocka_unit_test(test_sign_es384),
        cmocka_unit_test(test_sign_rs256),
        cmocka_unit_test(test_thumbprint_rfc7638),
        cmocka_unit_test(test_ec_jwk_fixed_width),
        cmocka_unit_test(test_key_authorization_dns01),
        cmocka_unit_test(test_eab),
        cmocka_unit_test(test_rollover_inner),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

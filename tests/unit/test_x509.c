/* Unit tests: certificate parsing, chain split, name matching, the
 * pre-push bundle checks and the placeholder certificate (x509.c).
 * Certificates are made with OpenSSL in the test (testcert.h); the serial
 * and fingerprint are cross-checked with the openssl command line. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cf.h"
#include "util.h"
#include "x509.h"
#include "testcert.h"

static struct tc_ca ca;
static int64_t now;
static const char *const two[] = {"a.example.com", "www.a.example.com"};

static int setup(void **state)
{
    now = (int64_t)time(NULL);
    tc_ca_init(&ca, now);
    return 0;
}

static int teardown(void **state)
{
    tc_ca_free(&ca);
    return 0;
}

static char *write_tmp(const char *text)
{
    char *path = strdup("/tmp/cf-x509-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

static void test_parse_fields(void **state)
{
    char *full, *key;
    /* a serial with the high bit set, so the DER needs a leading zero */
    tc_leaf(&ca, "ecdsa-256", 0x8A1B2C3DL, two, 2, now - 3600, now + 90 * 86400, &full, &key);
    struct cf_cert_info ci;
    char err[CF_ERRLEN] = "";
    assert_int_equal(cf_x509_parse(full, 0, &ci, err), 0);
    assert_string_equal(ci.serial_hex, "8A1B2C3D");
    assert_int_equal(ci.serial_len, 4);
    assert_int_equal(ci.serial[0], 0x8A);
    assert_int_equal(ci.not_before, now - 3600);
    assert_int_equal(ci.not_after, now + 90 * 86400);
    assert_string_equal(ci.subject_cn, "a.example.com");
    assert_string_equal(ci.issuer_cn, "CF Test CA");
    assert_string_equal(ci.issuer_o, "certfleet tests");
    assert_int_equal(ci.n_dns, 2);
    assert_string_equal(ci.dns_names[0], "a.example.com");
    assert_string_equal(ci.dns_names[1], "www.a.example.com");
    assert_string_equal(ci.key_type, "ecdsa-256");
    assert_int_equal(strlen(ci.fingerprint_sha256), 64);
    assert_int_equal(ci.aki_len, 20); /* SHA-1 keyid of the CA key */

    /* the same serial and fingerprint as the openssl command line prints */
    char *path = write_tmp(full);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "openssl x509 -in %s -noout -serial", path);
    char want[200];
    snprintf(want, sizeof want, "serial=%s", ci.serial_hex);
    assert_string_equal(tc_sh(cmd), want);
    snprintf(cmd, sizeof cmd,
             "openssl x509 -in %s -noout -fingerprint -sha256 | sed 's/.*=//; s/://g' | tr A-F a-f",
             path);
    assert_string_equal(tc_sh(cmd), ci.fingerprint_sha256);
    /* the AKI equals the CA's subject key identifier */
    char *capath = write_tmp(ca.pem);
    snprintf(cmd, sizeof cmd,
             "openssl x509 -in %s -noout -ext subjectKeyIdentifier | tail -1 | tr -d ' :' | "
             "tr A-F a-f",
             capath);
    char aki[64] = "";
    for (size_t i = 0; i < ci.aki_len; i++)
        sprintf(aki + 2 * i, "%02x", ci.aki[i]);
    assert_string_equal(tc_sh(cmd), aki);
    unlink(capath);
    free(capath);
    unlink(path);
    free(path);

    cf_cert_info_release(&ci);
    assert_null(ci.dns_names);
    free(full);
    free(key);
}

static void test_key_types(void **state)
{
    static const char *const types[] = {"ecdsa-256", "ecdsa-384", "rsa-2048", "rsa-3072"};
    for (size_t i = 0; i < 4; i++) {
        char *full, *key;
        tc_leaf(&ca, types[i], 7, two, 1, now - 60, now + 86400, &full, &key);
        struct cf_cert_info ci;
        char err[CF_ERRLEN], kt[CF_KEYTYPE_LEN];
        assert_int_equal(cf_x509_parse(full, 0, &ci, err), 0);
        assert_string_equal(ci.key_type, types[i]);
        assert_int_equal(cf_x509_key_type(key, kt, err), 0);
        assert_string_equal(kt, types[i]);
        cf_cert_info_release(&ci);
        free(full);
        free(key);
    }
}

static void test_parse_errors(void **state)
{
    struct cf_cert_info ci;
    char err[CF_ERRLEN] = "";
    assert_int_equal(cf_x509_parse("hello", 0, &ci, err), CF_EINVAL);
    assert_non_null(strstr(err, "no PEM certificate found"));
    assert_int_equal(cf_x509_parse(NULL, 0, &ci, err), CF_EINVAL);
    /* a damaged body is reported as such, not as "no certificate" */
    const char *bad = "-----BEGIN CERTIFICATE-----\nMIIBnotbase64!!!\n-----END CERTIFICATE-----\n";
    assert_int_equal(cf_x509_parse(bad, 0, &ci, err), CF_EINVAL);
    assert_non_null(strstr(err, "cannot parse PEM certificate 1"));
    /* an encrypted key is refused without prompting on the terminal */
    EVP_PKEY *k = tc_key("ecdsa-256");
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(b, k, EVP_aes_128_cbc(), (unsigned char *)"pw", 2, NULL, NULL);
    char *p;
    long n = BIO_get_mem_data(b, &p);
    char *enc = strndup(p, (size_t)n);
    char kt[CF_KEYTYPE_LEN];
    assert_int_equal(cf_x509_key_type(enc, kt, err), CF_EINVAL);
    assert_non_null(strstr(err, "cannot parse the private key"));
    free(enc);
    BIO_free(b);
    EVP_PKEY_free(k);
}

static void test_split_chain(void **state)
{
    char *full, *key;
    tc_leaf(&ca, "ecdsa-256", 42, two, 2, now - 60, now + 86400, &full, &key);
    char *leaf, *chain;
    char err[CF_ERRLEN];
    assert_int_equal(cf_x509_split_chain(full, &leaf, &chain, err), 0);
    struct cf_cert_info a, b;
    assert_int_equal(cf_x509_parse(leaf, 0, &a, err), 0);
    assert_string_equal(a.serial_hex, "2A");
    assert_int_equal(cf_x509_parse(chain, 0, &b, err), 0);
    assert_string_equal(b.subject_cn, "CF Test CA");
    /* the leaf PEM holds exactly one certificate */
    assert_null(strstr(strstr(leaf, "END CERTIFICATE") + 1, "BEGIN CERTIFICATE"));
    cf_cert_info_release(&a);
    cf_cert_info_release(&b);
    /* a lone leaf gives an empty chain */
    char *leaf2, *chain2;
    assert_int_equal(cf_x509_split_chain(leaf, &leaf2, &chain2, err), 0);
    assert_string_equal(chain2, "");
    assert_string_equal(leaf2, leaf);
    free(leaf2);
    assert_int_equal(cf_x509_split_chain("junk", &leaf2 /* reset */, NULL, err), CF_EINVAL);
    assert_null(leaf2);
    free(leaf);
    free(chain);
    free(chain2);
    free(full);
    free(key);
}

static void test_name_matching(void **state)
{
    static const struct {
        const char *pattern, *host;
        int want;
    } cases[] = {
        {"a.example.com", "a.example.com", 1},
        {"A.Example.COM", "a.example.com.", 1},
        {"a.example.com", "b.example.com", 0},
        {"*.example.com", "www.example.com", 1},
        {"*.example.com", "WWW.EXAMPLE.COM", 1},
        {"*.example.com", "example.com", 0},     /* not the bare domain */
        {"*.example.com", "a.b.example.com", 0}, /* one label only */
        {"*.example.com", ".example.com", 0},
        {"*.com", "example.com", 0},              /* too broad */
        {"w*.example.com", "www.example.com", 0}, /* partial wildcards refused */
        {"www.*.com", "www.example.com", 0},
        {"*.*.example.com", "a.b.example.com", 0},
        {"*.example.com", "*.example.com", 1}, /* a wildcard request */
        {"a.example.com", "*.example.com", 0},
        {"*.example.com", "*.other.com", 0},
        {"", "a.example.com", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int got = cf_x509_name_matches(cases[i].pattern, cases[i].host);
        if (got != cases[i].want)
            fail_msg("'%s' vs '%s': got %d, want %d", cases[i].pattern, cases[i].host, got,
                     cases[i].want);
    }
}

static void test_covers(void **state)
{
    static const char *const sans[] = {"*.example.com", "example.com"};
    char *full, *key;
    tc_leaf(&ca, "ecdsa-256", 9, sans, 2, now - 60, now + 86400, &full, &key);
    struct cf_cert_info ci;
    char err[CF_ERRLEN] = "";
    assert_int_equal(cf_x509_parse(full, 0, &ci, err), 0);
    const char *ok[] = {"example.com", "www.example.com", "api.example.com"};
    assert_int_equal(cf_x509_covers(&ci, ok, 3, err), 0);
    const char *no[] = {"example.com", "a.b.example.com"};
    assert_int_equal(cf_x509_covers(&ci, no, 2, err), CF_EINVAL);
    assert_string_equal(err, "certificate does not cover 'a.b.example.com' (it covers "
                             "*.example.com, example.com)");
    cf_cert_info_release(&ci);
    free(full);
    free(key);
}

static void test_check_bundle(void **state)
{
    char *full, *key, *full_rsa, *key_rsa, *full2, *key2;
    tc_leaf(&ca, "ecdsa-256", 100, two, 2, now - 3600, now + 30 * 86400, &full, &key);
    tc_leaf(&ca, "rsa-2048", 101, two, 2, now - 3600, now + 30 * 86400, &full_rsa, &key_rsa);
    tc_leaf(&ca, "ecdsa-256", 102, two, 2, now - 3600, now + 30 * 86400, &full2, &key2);
    char err[CF_ERRLEN] = "";

    assert_int_equal(cf_x509_check_bundle(full, key, two, 2, now, err), 0);
    /* the trap from design.md: EC certificate, RSA key */
    assert_int_equal(cf_x509_check_bundle(full, key_rsa, two, 2, now, err), CF_EINVAL);
    assert_string_equal(err, "private key does not match certificate (key is rsa-2048, "
                             "certificate is ecdsa-256)");
    assert_int_equal(cf_x509_check_bundle(full_rsa, key, two, 2, now, err), CF_EINVAL);
    assert_string_equal(err, "private key does not match certificate (key is ecdsa-256, "
                             "certificate is rsa-2048)");
    /* same type, other key */
    assert_int_equal(cf_x509_check_bundle(full, key2, two, 2, now, err), CF_EINVAL);
    assert_non_null(strstr(err, "private key does not match certificate (both ecdsa-256"));
    /* domains */
    const char *more[] = {"a.example.com", "b.example.com"};
    assert_int_equal(cf_x509_check_bundle(full, key, more, 2, now, err), CF_EINVAL);
    assert_non_null(strstr(err, "does not cover 'b.example.com'"));
    /* expiry, at the exact second and before notBefore */
    assert_int_equal(cf_x509_check_bundle(full, key, two, 2, now + 30 * 86400, err), CF_EINVAL);
    assert_non_null(strstr(err, "certificate expired at "));
    assert_non_null(strstr(err, "(serial 64)"));
    assert_int_equal(cf_x509_check_bundle(full, key, two, 2, now + 30 * 86400 - 1, err), 0);
    assert_int_equal(cf_x509_check_bundle(full, key, two, 2, now - 7200, err), CF_EINVAL);
    assert_non_null(strstr(err, "is not valid before"));
    /* a chain from another CA behind the leaf */
    struct tc_ca other;
    tc_ca_init(&other, now);
    char *leaf;
    assert_int_equal(cf_x509_split_chain(full, &leaf, NULL, err), 0);
    char *mixed = tc_cat(leaf, other.pem);
    assert_int_equal(cf_x509_check_bundle(mixed, key, two, 2, now, err), CF_EINVAL);
    assert_non_null(strstr(err, "chain does not belong to the certificate"));
    /* leaf only is fine */
    assert_int_equal(cf_x509_check_bundle(leaf, key, two, 2, now, err), 0);
    /* garbage */
    assert_int_equal(cf_x509_check_bundle("nope", key, two, 2, now, err), CF_EINVAL);
    assert_non_null(strstr(err, "certificate: no PEM certificate found"));
    assert_int_equal(cf_x509_check_bundle(full, "nope", two, 2, now, err), CF_EINVAL);
    assert_non_null(strstr(err, "cannot parse the private key"));
    tc_ca_free(&other);
    free(mixed);
    free(leaf);
    free(full);
    free(key);
    free(full_rsa);
    free(key_rsa);
    free(full2);
    free(key2);
}

static void test_placeholder(void **state)
{
    const char *doms[] = {"new.example.com", "www.new.example.com"};
    char *cert, *key;
    size_t klen;
    char err[CF_ERRLEN] = "";
    assert_int_equal(cf_x509_make_placeholder(doms, 2, now, &cert, &key, &klen, err), 0);
    assert_int_equal(klen, strlen(key));
    struct cf_cert_info ci;
    assert_int_equal(cf_x509_parse(cert, 0, &ci, err), 0);
    assert_string_equal(ci.subject_cn, "certfleet placeholder");
    assert_true(cf_x509_is_placeholder(&ci));
    assert_int_equal(ci.not_after - now, 7 * 86400);
    assert_true(ci.not_before <= now);
    assert_int_equal(ci.n_dns, 2);
    assert_string_equal(ci.dns_names[1], "www.new.example.com");
    assert_string_equal(ci.key_type, "ecdsa-256");
    /* it passes the same checks nginx-bound bundles must pass */
    assert_int_equal(cf_x509_check_bundle(cert, key, doms, 2, now, err), 0);
    /* and openssl verifies its self-signature */
    char *path = write_tmp(cert);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "openssl verify -CAfile %s %s 2>&1", path, path);
    char want[600];
    snprintf(want, sizeof want, "%s: OK", path);
    assert_string_equal(tc_sh(cmd), want);
    unlink(path);
    free(path);
    cf_cert_info_release(&ci);
    free(cert);
    cf_secure_free(key, klen);
    assert_int_equal(cf_x509_make_placeholder(doms, 0, now, &cert, &key, &klen, err), CF_EINVAL);
    assert_null(cert);
}

static void test_ari_certid(void **state)
{
    /* the example of RFC 9773 section 4.1 */
    struct cf_cert_info ci;
    memset(&ci, 0, sizeof ci);
    static const unsigned char aki[] = {0x69, 0x88, 0x5B, 0x6B, 0x87, 0x46, 0x40, 0x41, 0xE1, 0xB3,
                                        0x7B, 0x84, 0x7B, 0xA0, 0xAE, 0x2C, 0xDE, 0x01, 0xC8, 0xD4};
    static const unsigned char serial[] = {0x87, 0x65, 0x43, 0x21};
    memcpy(ci.aki, aki, sizeof aki);
    ci.aki_len = sizeof aki;
    memcpy(ci.serial, serial, sizeof serial);
    ci.serial_len = sizeof serial;
    char *id;
    char err[CF_ERRLEN];
    assert_int_equal(cf_x509_ari_certid(&ci, &id, err), 0);
    assert_string_equal(id, "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE");
    free(id);
    ci.aki_len = 0;
    assert_int_equal(cf_x509_ari_certid(&ci, &id, err), CF_EINVAL);
    assert_non_null(strstr(err, "no authority key identifier"));
}

static void test_key_type_norm(void **state)
{
    static const struct {
        const char *type;
        int size;
        const char *curve, *want; /* NULL want: an error */
    } cases[] = {
        {"ecdsa", 0, NULL, "ecdsa-256"},
        {"ecdsa", 384, NULL, "ecdsa-384"},
        {"ecdsa", 0, "secp384r1", "ecdsa-384"},
        {"ECDSA", 0, "P-256", "ecdsa-256"},
        {"rsa", 0, NULL, "rsa-2048"},
        {"rsa", 4096, NULL, "rsa-4096"},
        {"rsa-3072", 0, NULL, "rsa-3072"},
        {"ecdsa-256", 256, NULL, "ecdsa-256"},
        {NULL, 0, NULL, "ecdsa-256"},
        {"rsa", 1024, NULL, NULL},
        {"ecdsa", 521, NULL, NULL},
        {"dsa", 0, NULL, NULL},
        {"rsa-2048", 4096, NULL, NULL},
        {"ecdsa", 0, "secp521r1", NULL},
        {"ecdsa", 256, "secp384r1", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[CF_KEYTYPE_LEN], err[CF_ERRLEN] = "";
        int rc = cf_x509_key_type_norm(cases[i].type, cases[i].size, cases[i].curve, out, err);
        if (cases[i].want) {
            if (rc != 0 || strcmp(out, cases[i].want) != 0)
                fail_msg("case %zu: rc %d out '%s' err '%s'", i, rc, out, err);
        } else if (rc != CF_EINVAL || !*err) {
            fail_msg("case %zu: expected an error, got '%s'", i, out);
        }
    }
}

static void test_keygen_roundtrip(void **state)
{
    EVP_PKEY *k;
    char err[CF_ERRLEN], kt[CF_KEYTYPE_LEN];
    assert_int_equal(cf_x509_keygen("ecdsa-384", &k, err), 0);
    char *pem;
    size_t len;
    assert_int_equal(cf_x509_key_pem(k, &pem, &len, err), 0);
    assert_non_null(strstr(pem, "BEGIN PRIVATE KEY"));
    assert_int_equal(cf_x509_key_type(pem, kt, err), 0);
    assert_string_equal(kt, "ecdsa-384");
    cf_secure_free(pem, len);
    EVP_PKEY_free(k);
    assert_int_equal(cf_x509_keygen("dsa", &k, err), CF_EINVAL);
    assert_null(k);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_fields),     cmocka_unit_test(test_key_types),
        cmocka_unit_test(test_parse_errors),     cmocka_unit_test(test_split_chain),
        cmocka_unit_test(test_name_matching),    cmocka_unit_test(test_covers),
        cmocka_unit_test(test_check_bundle),     cmocka_unit_test(test_placeholder),
        cmocka_unit_test(test_ari_certid),       cmocka_unit_test(test_key_type_norm),
        cmocka_unit_test(test_keygen_roundtrip),
    };
    return cmocka_run_group_tests_name("x509", tests, setup, teardown);
}

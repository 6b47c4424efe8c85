/* Unit tests: keys, CSRs, certificate parsing, the canonical serial, chain
 * split, the host-name matcher, the ARI certID, the pre-push bundle checks
 * and the placeholder certificate (x509.c).
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
    assert_int_equal(ci.serial_len, 5); /* DER content: 00 8A 1B 2C 3D */
    assert_int_equal(ci.serial[0], 0x00);
    assert_int_equal(ci.serial[1], 0x8A);
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
    assert_non_null(strstr(err, "private key is encrypted"));
    EVP_PKEY *back = NULL;
    assert_int_equal(cf_x509_key_read(enc, 0, &back, err), CF_EINVAL);
    assert_null(back);
    assert_non_null(strstr(err, "private key is encrypted"));
    /* the same for a traditional (Proc-Type: ENCRYPTED) PEM */
    BIO *t = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey_traditional(t, k, EVP_aes_128_cbc(), (unsigned char *)"pw", 2, NULL,
                                         NULL);
    n = BIO_get_mem_data(t, &p);
    char *trad = strndup(p, (size_t)n);
    assert_non_null(strstr(trad, "Proc-Type: 4,ENCRYPTED"));
    assert_int_equal(cf_x509_key_read(trad, 0, &back, err), CF_EINVAL);
    assert_non_null(strstr(err, "private key is encrypted"));
    free(trad);
    BIO_free(t);
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

/* A leaf for key with exactly these dNSNames (raw bytes, no parsing of a
 * config string) and subject CN cn, signed by the test CA. */
static X509 *leaf_with_names(EVP_PKEY *key, const char *const *names, size_t n, const char *cn)
{
    X509 *x = tc_cert(key, 5, cn, NULL, NULL, 0, now - 60, now + 86400, ca.cert, ca.key, 0);
    if (n) {
        GENERAL_NAMES *gens = GENERAL_NAMES_new();
        for (size_t i = 0; i < n; i++) {
            GENERAL_NAME *g = GENERAL_NAME_new();
            ASN1_IA5STRING *s = ASN1_IA5STRING_new();
            ASN1_STRING_set(s, names[i], -1);
            GENERAL_NAME_set0_value(g, GEN_DNS, s);
            sk_GENERAL_NAME_push(gens, g);
        }
        X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, X509V3_ADD_DEFAULT);
        GENERAL_NAMES_free(gens);
    }
    X509_sign(x, ca.key, EVP_sha256());
    return x;
}

/* The cases where the hand-written RFC 6125 matcher certfleet used before
 * for the pre-push check and OpenSSL's X509_check_host (used by status)
 * could answer differently, with the one answer both now give.  Each row is
 * asked of the matcher and of the whole pre-push check. */
static void test_name_matching(void **state)
{
    static const struct {
        const char *san; /* one dNSName; NULL: no subjectAltName at all */
        const char *cn;  /* subject CN */
        const char *name;
        int want;
    } cases[] = {
        /* case and the trailing dot of an absolute name */
        {"a.example.com", NULL, "a.example.com", 1},
        {"A.Example.COM", NULL, "a.example.com", 1},
        {"a.example.com", NULL, "A.EXAMPLE.COM", 1},
        {"a.example.com", NULL, "a.example.com.", 1},
        {"*.example.com", NULL, "WWW.EXAMPLE.COM.", 1},
        {"a.example.com", NULL, "a.example.com..", 0},
        {"a.example.com.", NULL, "a.example.com", 0}, /* a dNSName with a dot is malformed */
        {"a.example.com", NULL, "b.example.com", 0},
        /* wildcard depth: one whole left-most label, never the bare domain */
        {"*.example.com", NULL, "www.example.com", 1},
        {"*.example.com", NULL, "a.b.example.com", 0},
        {"*.example.com", NULL, "example.com", 0},
        {"*.com", NULL, "example.com", 0},
        {"*.co.uk", NULL, "example.co.uk", 1}, /* no public suffix list */
        {"*.*.example.com", NULL, "a.b.example.com", 0},
        {"www.*.com", NULL, "www.example.com", 0},
        /* partial wildcards, which X509_check_host accepts by default */
        {"w*.example.com", NULL, "www.example.com", 0},
        {"*w.example.com", NULL, "www.example.com", 0},
        {"w*w.example.com", NULL, "www.example.com", 0},
        /* OpenSSL reads a leading dot as "any subdomain of" */
        {"www.example.com", NULL, ".example.com", 0},
        {"*.example.com", NULL, ".example.com", 0},
        {"a.example.com", NULL, "", 0},
        /* a configured wildcard is covered by the same wildcard only */
        {"*.example.com", NULL, "*.example.com", 1},
        {"*.EXAMPLE.com", NULL, "*.example.com", 1},
        {"a.example.com", NULL, "*.example.com", 0},
        {"*.example.com", NULL, "*.other.com", 0},
        {"*.example.com", NULL, "*.a.example.com", 0},
        /* IDNA: names are compared as A-labels, never converted */
        {"*.example.com", NULL, "xn--bcher-kva.example.com", 1},
        {"x*.example.com", NULL, "xn--bcher-kva.example.com", 0},
        {"xn--bcher-kva.example.com", NULL, "XN--BCHER-KVA.example.com", 1},
        {"xn--bcher-kva.example.com", NULL,
         "b\xc3\xbc"
         "cher.example.com",
         0},
        {"B\xc3\x9c"
         "CHER.example.com",
         NULL,
         "b\xc3\xbc"
         "cher.example.com",
         0},
        /* the subject CN is never a name (browsers ignore it) */
        {NULL, "a.example.com", "a.example.com", 0},
        {"b.example.com", "a.example.com", "a.example.com", 0},
        /* an IP literal is judged against iPAddress entries, not dNSNames */
        {"127.0.0.1", NULL, "127.0.0.1", 0},
    };
    EVP_PKEY *k = tc_key("ecdsa-256");
    char *key = tc_pem_key(k);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *names[] = {cases[i].san};
        X509 *x = leaf_with_names(k, names, cases[i].san ? 1 : 0, cases[i].cn);
        int got = cf_x509_covers_name(x, cases[i].name);
        if (got != cases[i].want)
            fail_msg("case %zu: '%s' covers '%s': got %d, want %d", i,
                     cases[i].san ? cases[i].san : "(no SAN)", cases[i].name, got, cases[i].want);
        char *pem = tc_pem_cert(x), err[CF_ERRLEN] = "";
        const char *doms[] = {cases[i].name};
        int rc = cf_x509_check_bundle(pem, key, doms, 1, now, err);
        if ((rc == 0) != cases[i].want)
            fail_msg("case %zu: the pre-push check says %d (%s) for '%s'", i, rc, err,
                     cases[i].name);
        if (rc)
            assert_non_null(strstr(err, "certificate does not cover"));
        free(pem);
        X509_free(x);
    }
    free(key);
    EVP_PKEY_free(k);
}

static void test_probe_name(void **state)
{
    char *s = cf_x509_probe_name("*.example.com");
    assert_string_equal(s, "certfleet-probe.example.com");
    free(s);
    s = cf_x509_probe_name("a.example.com");
    assert_string_equal(s, "a.example.com");
    free(s);
}

static void test_covers(void **state)
{
    static const char *const sans[] = {"*.example.com", "example.com"};
    char *full, *key;
    tc_leaf(&ca, "ecdsa-256", 9, sans, 2, now - 60, now + 86400, &full, &key);
    char err[CF_ERRLEN] = "";
    const char *ok[] = {"example.com", "www.example.com", "api.example.com"};
    assert_int_equal(cf_x509_check_bundle(full, key, ok, 3, now, err), 0);
    const char *no[] = {"example.com", "a.b.example.com"};
    assert_int_equal(cf_x509_check_bundle(full, key, no, 2, now, err), CF_EINVAL);
    assert_string_equal(err, "certificate does not cover 'a.b.example.com' (it covers "
                             "*.example.com, example.com)");
    free(full);
    free(key);
}

/* The serial text is the same as `openssl x509 -serial` prints for the
 * forms that differ in a naive rendering: zero, a leading zero nibble, the
 * high bit set (DER adds a zero byte), a negative serial, 20 random bytes
 * as CAs use.  The probe renders served certificates with the same
 * function, so two serials compare with strcmp. */
static void test_serial_hex(void **state)
{
    static const struct {
        const char *hex; /* BN_hex2bn input */
        const char *want;
    } cases[] = {
        {"0", "00"},
        {"A1B", "0A1B"},
        {"2A", "2A"},
        {"8A1B2C3D", "8A1B2C3D"},
        {"-5", "-05"},
        {"7F0102030405060708090A0B0C0D0E0F10111213", "7F0102030405060708090A0B0C0D0E0F10111213"},
        {"00FF", "FF"},
    };
    EVP_PKEY *k = tc_key("ecdsa-256");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        X509 *x = tc_cert(k, 1, "s.example.com", NULL, NULL, 0, now - 60, now + 86400, ca.cert,
                          ca.key, 0);
        BIGNUM *bn = NULL;
        assert_true(BN_hex2bn(&bn, cases[i].hex) > 0);
        assert_non_null(BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)));
        BN_free(bn);
        X509_sign(x, ca.key, EVP_sha256());
        char got[CF_SERIAL_HEX_LEN];
        cf_x509_serial_hex(x, got);
        if (strcmp(got, cases[i].want) != 0)
            fail_msg("serial %s: got '%s', want '%s'", cases[i].hex, got, cases[i].want);
        char *pem = tc_pem_cert(x);
        char *path = write_tmp(pem);
        char cmd[512], want[200];
        snprintf(cmd, sizeof cmd, "openssl x509 -in %s -noout -serial", path);
        snprintf(want, sizeof want, "serial=%s", got);
        assert_string_equal(tc_sh(cmd), want);
        struct cf_cert_info ci;
        char err[CF_ERRLEN];
        assert_int_equal(cf_x509_parse(pem, 0, &ci, err), 0);
        assert_string_equal(ci.serial_hex, got);
        cf_cert_info_release(&ci);
        unlink(path);
        free(path);
        free(pem);
        X509_free(x);
    }
    EVP_PKEY_free(k);
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

/* A certificate with exactly this AKI keyIdentifier (none when NULL) and
 * serial (BN_hex2bn text). */
static char *certid_cert(const unsigned char *aki, size_t aki_len, const char *serial_hex)
{
    EVP_PKEY *k = tc_key("ecdsa-256");
    X509 *x = tc_cert(k, 1, "ari.example.com", NULL, NULL, 0, now - 60, now + 86400, NULL, NULL, 0);
    BIGNUM *bn = NULL;
    BN_hex2bn(&bn, serial_hex);
    BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x));
    BN_free(bn);
    if (aki) {
        AUTHORITY_KEYID *ak = AUTHORITY_KEYID_new();
        ak->keyid = ASN1_OCTET_STRING_new();
        ASN1_OCTET_STRING_set(ak->keyid, aki, (int)aki_len);
        X509_add1_ext_i2d(x, NID_authority_key_identifier, ak, 0, 0);
        AUTHORITY_KEYID_free(ak);
    }
    X509_sign(x, k, EVP_sha256());
    char *pem = tc_pem_cert(x);
    X509_free(x);
    EVP_PKEY_free(k);
    return pem;
}

static void test_ari_certid(void **state)
{
    /* the example of RFC 9773 section 4.1: serial 0x87654321 is DER 00 87 65 43 21 */
    static const unsigned char aki[] = {0x69, 0x88, 0x5B, 0x6B, 0x87, 0x46, 0x40, 0x41, 0xE1, 0xB3,
                                        0x7B, 0x84, 0x7B, 0xA0, 0xAE, 0x2C, 0xDE, 0x01, 0xC8, 0xD4};
    char *id, err[CF_ERRLEN];
    char *pem = certid_cert(aki, sizeof aki, "87654321");
    assert_int_equal(cf_x509_ari_certid_pem(pem, &id, err), 0);
    assert_string_equal(id, "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE");
    free(id);
    /* the same through the parsed fields */
    struct cf_cert_info ci;
    assert_int_equal(cf_x509_parse(pem, 0, &ci, err), 0);
    assert_int_equal(cf_x509_ari_certid(&ci, &id, err), 0);
    assert_string_equal(id, "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE");
    free(id);
    cf_cert_info_release(&ci);
    free(pem);
    /* no high bit: no padding byte; an AKI longer than the usual 20 bytes */
    unsigned char long_aki[40];
    for (size_t i = 0; i < sizeof long_aki; i++)
        long_aki[i] = (unsigned char)i;
    pem = certid_cert(long_aki, sizeof long_aki, "0102");
    assert_int_equal(cf_x509_ari_certid_pem(pem, &id, err), 0);
    char *a = cf_b64url(long_aki, sizeof long_aki);
    char *want = cf_asprintf("%s.AQI", a);
    assert_string_equal(id, want);
    free(want);
    free(a);
    free(id);
    free(pem);
    /* no AKI, or no certificate: an error, no output */
    pem = certid_cert(NULL, 0, "01");
    assert_int_equal(cf_x509_ari_certid_pem(pem, &id, err), CF_EINVAL);
    assert_null(id);
    assert_non_null(strstr(err, "no authority key identifier"));
    free(pem);
    assert_int_equal(cf_x509_ari_certid_pem("junk", &id, err), CF_EINVAL);
    assert_null(id);
    assert_non_null(strstr(err, "cannot parse certificate for renewal info"));
    assert_int_equal(cf_x509_ari_certid_pem(NULL, &id, err), CF_EINVAL);
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
    static const struct {
        const char *type;
        int bits;
        const char *want_type;
        int want_bits;
    } cases[] = {
        {"ecdsa", 0, "ecdsa", 256}, {"ec", 384, "ecdsa", 384},  {"ecdsa-384", 0, "ecdsa", 384},
        {"rsa", 0, "rsa", 2048},    {"rsa", 3072, "rsa", 3072}, {NULL, 0, "ecdsa", 256},
    };
    char err[CF_ERRLEN], kt[CF_KEYTYPE_LEN];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        EVP_PKEY *k, *back;
        assert_int_equal(cf_x509_keygen(cases[i].type, cases[i].bits, &k, err), 0);
        const char *t;
        int b;
        assert_int_equal(cf_x509_key_describe(k, &t, &b), 0);
        assert_string_equal(t, cases[i].want_type);
        assert_int_equal(b, cases[i].want_bits);
        char *pem;
        size_t len;
        assert_int_equal(cf_x509_key_pem(k, &pem, &len, err), 0);
        assert_int_equal(len, strlen(pem));
        assert_non_null(strstr(pem, "-----BEGIN PRIVATE KEY-----")); /* PKCS#8 */
        assert_int_equal(cf_x509_key_read(pem, len, &back, err), 0);
        assert_int_equal(EVP_PKEY_eq(k, back), 1);
        assert_int_equal(cf_x509_key_type(pem, kt, err), 0);
        char want[CF_KEYTYPE_LEN];
        snprintf(want, sizeof want, "%s-%d", cases[i].want_type, cases[i].want_bits);
        assert_string_equal(kt, want);
        cf_secure_free(pem, len);
        EVP_PKEY_free(k);
        EVP_PKEY_free(back);
    }
    EVP_PKEY *k = NULL;
    assert_int_equal(cf_x509_keygen("rsa", 1024, &k, err), CF_EINVAL);
    assert_non_null(strstr(err, "1024"));
    assert_int_equal(cf_x509_keygen("dsa", 0, &k, err), CF_EINVAL);
    assert_non_null(strstr(err, "'dsa'"));
    assert_int_equal(cf_x509_keygen("ecdsa", 521, &k, NULL), CF_EINVAL);
    assert_null(k);
    /* a traditional (certbot) EC key reads too */
    EVP_PKEY *e = tc_key("ecdsa-256");
    BIO *bio = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey_traditional(bio, e, NULL, NULL, 0, NULL, NULL);
    char *p;
    long n = BIO_get_mem_data(bio, &p);
    char *trad = strndup(p, (size_t)n);
    assert_non_null(strstr(trad, "BEGIN EC PRIVATE KEY"));
    assert_int_equal(cf_x509_key_read(trad, 0, &k, err), 0);
    assert_int_equal(EVP_PKEY_eq(k, e), 1);
    EVP_PKEY_free(k);
    free(trad);
    BIO_free(bio);
    EVP_PKEY_free(e);
    /* keys certfleet cannot sign with are refused, naming the type */
    static const char *const refused[] = {"ed25519", "rsa-1024"};
    for (size_t i = 0; i < 2; i++) {
        e = tc_key(refused[i]);
        char *pem = tc_pem_key(e);
        assert_int_equal(cf_x509_key_read(pem, 0, &k, err), CF_EINVAL);
        assert_null(k);
        assert_non_null(strstr(err, "unsupported private key"));
        assert_non_null(strstr(err, refused[i]));
        free(pem);
        EVP_PKEY_free(e);
    }
    assert_int_equal(cf_x509_key_read("garbage", 7, &k, err), CF_EINVAL);
    assert_non_null(strstr(err, "cannot parse the private key"));
}

static void test_csr(void **state)
{
    EVP_PKEY *k = tc_key("ecdsa-256");
    const char *domains[] = {"h1.fleet.test", "h2.fleet.test", "*.w.fleet.test"};
    unsigned char *der;
    size_t len;
    char err[CF_ERRLEN];
    assert_int_equal(cf_x509_csr(k, domains, 3, &der, &len, err), 0);
    const unsigned char *p = der;
    X509_REQ *req = d2i_X509_REQ(NULL, &p, (long)len);
    assert_non_null(req);
    assert_int_equal(X509_REQ_verify(req, k), 1);
    assert_int_equal(X509_REQ_get_signature_nid(req), NID_ecdsa_with_SHA256);
    char cn[256];
    X509_NAME_get_text_by_NID(X509_REQ_get_subject_name(req), NID_commonName, cn, sizeof cn);
    assert_string_equal(cn, "h1.fleet.test");
    STACK_OF(X509_EXTENSION) *exts = X509_REQ_get_extensions(req);
    GENERAL_NAMES *gens = NULL;
    for (int i = 0; i < sk_X509_EXTENSION_num(exts); i++) {
        X509_EXTENSION *e = sk_X509_EXTENSION_value(exts, i);
        if (OBJ_obj2nid(X509_EXTENSION_get_object(e)) == NID_subject_alt_name)
            gens = X509V3_EXT_d2i(e);
    }
    assert_non_null(gens);
    assert_int_equal(sk_GENERAL_NAME_num(gens), 3);
    for (int i = 0; i < 3; i++) {
        GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        assert_int_equal(g->type, GEN_DNS);
        assert_string_equal((const char *)ASN1_STRING_get0_data(g->d.dNSName), domains[i]);
    }
    GENERAL_NAMES_free(gens);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    X509_REQ_free(req);
    free(der);
    /* a CN longer than 64 bytes is left out; the SAN still names it */
    const char *longname[] = {
        "a-very-long-label-that-goes-on-and-on-and-on.and-on-and-on.fleet.test"};
    assert_int_equal(cf_x509_csr(k, longname, 1, &der, &len, err), 0);
    p = der;
    req = d2i_X509_REQ(NULL, &p, (long)len);
    assert_int_equal(X509_NAME_entry_count(X509_REQ_get_subject_name(req)), 0);
    X509_REQ_free(req);
    free(der);
    assert_int_equal(cf_x509_csr(k, domains, 0, &der, &len, err), CF_EINVAL);
    assert_null(der);
    EVP_PKEY_free(k);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_fields),     cmocka_unit_test(test_key_types),
        cmocka_unit_test(test_parse_errors),     cmocka_unit_test(test_split_chain),
        cmocka_unit_test(test_name_matching),    cmocka_unit_test(test_covers),
        cmocka_unit_test(test_check_bundle),     cmocka_unit_test(test_placeholder),
        cmocka_unit_test(test_ari_certid),       cmocka_unit_test(test_key_type_norm),
        cmocka_unit_test(test_keygen_roundtrip), cmocka_unit_test(test_csr),
        cmocka_unit_test(test_serial_hex),       cmocka_unit_test(test_probe_name),
    };
    return cmocka_run_group_tests_name("x509", tests, setup, teardown);
}

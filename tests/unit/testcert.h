/*
 * testcert.h - certificates for unit tests, made with OpenSSL directly (a
 * small CA, leaves with chosen key types, names and validity), plus a
 * temporary directory helper.  Header-only, static: each test binary is
 * one translation unit.  Used by test_x509.c and test_store.c.
 */
#ifndef CF_TESTCERT_H
#define CF_TESTCERT_H

#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

static __attribute__((unused)) EVP_PKEY *tc_key(const char *type)
{
    if (!strcmp(type, "ecdsa-256"))
        return EVP_EC_gen("P-256");
    if (!strcmp(type, "ecdsa-384"))
        return EVP_EC_gen("P-384");
    if (!strcmp(type, "ed25519"))
        return EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    if (!strncmp(type, "rsa-", 4))
        return EVP_RSA_gen((unsigned)atoi(type + 4));
    return NULL;
}

static __attribute__((unused)) void tc_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer ? issuer : x, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (e) {
        X509_add_ext(x, e, -1);
        X509_EXTENSION_free(e);
    }
}

/* A certificate for key, signed by issuer/issuer_key (self-signed when
 * issuer is NULL), with serial, CN, SAN dNSNames and validity.  o is the
 * subject O (may be NULL).  ca=1 makes a CA certificate. */
static __attribute__((unused)) X509 *tc_cert(EVP_PKEY *key, long serial, const char *cn,
                                             const char *o, const char *const *sans, size_t n,
                                             int64_t nb, int64_t na, X509 *issuer,
                                             EVP_PKEY *issuer_key, int ca)
{
    X509 *x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
    ASN1_TIME_set(X509_getm_notBefore(x), (time_t)nb);
    ASN1_TIME_set(X509_getm_notAfter(x), (time_t)na);
    X509_NAME *name = X509_NAME_new();
    if (o)
        X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, (const unsigned char *)o, -1, -1, 0);
    if (cn)
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0);
    X509_set_subject_name(x, name);
    X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name);
    X509_NAME_free(name);
    X509_set_pubkey(x, key);
    tc_ext(x, issuer, NID_subject_key_identifier, "hash");
    if (issuer)
        tc_ext(x, issuer, NID_authority_key_identifier, "keyid:always");
    tc_ext(x, issuer, NID_basic_constraints, ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
    if (n) {
        char san[4096] = "";
        for (size_t i = 0; i < n; i++) {
            strcat(san, i ? ",DNS:" : "DNS:");
            strcat(san, sans[i]);
        }
        tc_ext(x, issuer, NID_subject_alt_name, san);
    }
    X509_sign(x, issuer_key ? issuer_key : key,
              EVP_PKEY_is_a(issuer_key ? issuer_key : key, "ED25519") ? NULL : EVP_sha256());
    return x;
}

static __attribute__((unused)) char *tc_pem_cert(X509 *x)
{
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(b, x);
    char *p;
    long n = BIO_get_mem_data(b, &p);
    char *r = malloc((size_t)n + 1);
    memcpy(r, p, (size_t)n);
    r[n] = '\0';
    BIO_free(b);
    return r;
}

static __attribute__((unused)) char *tc_pem_key(EVP_PKEY *k)
{
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL);
    char *p;
    long n = BIO_get_mem_data(b, &p);
    char *r = malloc((size_t)n + 1);
    memcpy(r, p, (size_t)n);
    r[n] = '\0';
    BIO_free(b);
    return r;
}

static __attribute__((unused)) char *tc_cat(const char *a, const char *b)
{
    char *r = malloc(strlen(a) + strlen(b) + 1);
    strcpy(r, a);
    strcat(r, b);
    return r;
}

/* A CA (rsa-2048, "CF Test CA" / O "certfleet tests") shared per binary. */
struct tc_ca {
    EVP_PKEY *key;
    X509 *cert;
    char *pem;
};

static __attribute__((unused)) void tc_ca_init(struct tc_ca *ca, int64_t now)
{
    ca->key = tc_key("rsa-2048");
    ca->cert = tc_cert(ca->key, 1, "CF Test CA", "certfleet tests", NULL, 0, now - 86400,
                       now + 3650L * 86400, NULL, NULL, 1);
    ca->pem = tc_pem_cert(ca->cert);
}

static __attribute__((unused)) void tc_ca_free(struct tc_ca *ca)
{
    EVP_PKEY_free(ca->key);
    X509_free(ca->cert);
    free(ca->pem);
}

/* A leaf from the CA: *fullchain (leaf + CA) and *key_pem, caller frees. */
static __attribute__((unused)) void tc_leaf(struct tc_ca *ca, const char *key_type, long serial,
                                            const char *const *sans, size_t n, int64_t nb,
                                            int64_t na, char **fullchain, char **key_pem)
{
    EVP_PKEY *k = tc_key(key_type);
    X509 *x = tc_cert(k, serial, n ? sans[0] : "leaf", NULL, sans, n, nb, na, ca->cert, ca->key, 0);
    char *leaf = tc_pem_cert(x);
    *fullchain = tc_cat(leaf, ca->pem);
    *key_pem = tc_pem_key(k);
    free(leaf);
    X509_free(x);
    EVP_PKEY_free(k);
}

static __attribute__((unused)) int tc_rm_cb(const char *p, const struct stat *sb, int flag,
                                            struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static __attribute__((unused)) void tc_rmrf(const char *dir)
{
    nftw(dir, tc_rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* mkdtemp under $TMPDIR or /tmp; caller frees and tc_rmrf's it. */
static __attribute__((unused)) char *tc_tmpdir(void)
{
    const char *t = getenv("TMPDIR");
    char *d = malloc(4096);
    snprintf(d, 4096, "%s/cf-test-XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(d)) {
        free(d);
        return NULL;
    }
    return d;
}

/* Run a shell command, return its first line of stdout (static buffer). */
static __attribute__((unused)) const char *tc_sh(const char *cmd)
{
    static char line[4096];
    line[0] = '\0';
    FILE *f = popen(cmd, "r");
    if (!f)
        return line;
    if (!fgets(line, sizeof line, f))
        line[0] = '\0';
    pclose(f);
    line[strcspn(line, "\n")] = '\0';
    return line;
}

#endif

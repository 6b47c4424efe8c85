/*
 * keys.c - key generation, PEM and CSR (see keys.h).
 */
#include "cf.h"
#include "keys.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

/* The first OpenSSL error as text, for messages. */
static const char *ossl_err(void)
{
    static char buf[256];
    unsigned long e = ERR_get_error();
    ERR_clear_error();
    if (!e)
        return "unknown openssl error";
    ERR_error_string_n(e, buf, sizeof buf);
    return buf;
}

int cf_keys_generate(const char *type, int bits, EVP_PKEY **out, char *err)
{
    *out = NULL;
    if (!type || !*type)
        type = "ecdsa";
    if (!strcmp(type, "ecdsa") || !strcmp(type, "ec")) {
        if (bits == 0)
            bits = 256;
        const char *curve = bits == 256 ? "P-256" : bits == 384 ? "P-384" : NULL;
        if (!curve)
            return cf_errf(err, "unsupported ecdsa key size '%d': use 256 or 384", bits);
        *out = EVP_EC_gen(curve);
    } else if (!strcmp(type, "rsa")) {
        if (bits == 0)
            bits = 2048;
        if (bits != 2048 && bits != 3072 && bits != 4096)
            return cf_errf(err, "unsupported rsa key size '%d': use 2048, 3072 or 4096", bits);
        *out = EVP_RSA_gen((unsigned)bits);
    } else {
        return cf_errf(err, "unsupported key type '%s': use 'ecdsa' or 'rsa'", type);
    }
    if (!*out) {
        cf_errf(err, "key generation failed: %s", ossl_err());
        return CF_ENOMEM;
    }
    return 0;
}

int cf_keys_to_pem(EVP_PKEY *key, char **pem, size_t *len, char *err)
{
    *pem = NULL;
    *len = 0;
    int rc = CF_ENOMEM;
    BIO *b = BIO_new(BIO_s_secmem());
    if (!b)
        b = BIO_new(BIO_s_mem());
    if (!b || !PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL)) {
        cf_errf(err, "cannot encode private key: %s", ossl_err());
        goto out;
    }
    char *data;
    long n = BIO_get_mem_data(b, &data);
    *pem = cf_xmalloc((size_t)n + 1);
    memcpy(*pem, data, (size_t)n);
    (*pem)[n] = '\0';
    *len = (size_t)n;
    rc = 0;
out:
    BIO_free(b); /* secmem/mem BIOs are cleared by OpenSSL on free for secmem */
    return rc;
}

void cf_keys_pem_free(char *pem, size_t len)
{
    if (pem && len == 0)
        len = strlen(pem);
    cf_secure_free(pem, len);
}

int cf_keys_describe(EVP_PKEY *key, const char **type, int *bits)
{
    if (!key)
        return CF_EINVAL;
    int id = EVP_PKEY_get_base_id(key);
    if (id == EVP_PKEY_EC) {
        char group[64];
        size_t glen = 0;
        if (!EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group,
                                            &glen))
            return CF_EINVAL;
        *type = "ecdsa";
        if (!strcmp(group, "prime256v1") || !strcmp(group, "P-256"))
            *bits = 256;
        else if (!strcmp(group, "secp384r1") || !strcmp(group, "P-384"))
            *bits = 384;
        else
            return CF_EINVAL;
        return 0;
    }
    if (id == EVP_PKEY_RSA) {
        *type = "rsa";
        *bits = EVP_PKEY_get_bits(key);
        return *bits >= 2048 ? 0 : CF_EINVAL;
    }
    return CF_EINVAL;
}

int cf_keys_from_pem(const char *pem, size_t len, EVP_PKEY **out, char *err)
{
    *out = NULL;
    BIO *b = BIO_new_mem_buf(pem, (int)len);
    if (!b)
        return CF_ENOMEM;
    EVP_PKEY *k = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
    BIO_free(b);
    if (!k) {
        cf_errf(err, "cannot parse private key: %s", ossl_err());
        return CF_EINVAL;
    }
    const char *type;
    int bits;
    if (cf_keys_describe(k, &type, &bits) != 0) {
        EVP_PKEY_free(k);
        return cf_errf(err, "unsupported private key: use ecdsa P-256/P-384 or rsa >= 2048");
    }
    *out = k;
    return 0;
}

int cf_keys_csr(EVP_PKEY *key, const char *const *domains, size_t n, unsigned char **der,
                size_t *der_len, char *err)
{
    *der = NULL;
    *der_len = 0;
    if (!key || !domains || n == 0)
        return cf_errf(err, "a certificate signing request needs a key and a domain");
    int rc = CF_ENOMEM;
    X509_REQ *req = X509_REQ_new();
    X509_NAME *name = X509_NAME_new();
    STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
    GENERAL_NAMES *gens = GENERAL_NAMES_new();
    X509_EXTENSION *san = NULL;
    if (!req || !name || !exts || !gens)
        goto out;
    if (!X509_REQ_set_version(req, 0))
        goto ossl;
    if (strlen(domains[0]) <= 64 &&
        !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)domains[0],
                                    -1, -1, 0))
        goto ossl;
    if (!X509_REQ_set_subject_name(req, name))
        goto ossl;
    for (size_t i = 0; i < n; i++) {
        GENERAL_NAME *g = GENERAL_NAME_new();
        ASN1_IA5STRING *s = ASN1_IA5STRING_new();
        if (!g || !s || !ASN1_STRING_set(s, domains[i], (int)strlen(domains[i]))) {
            GENERAL_NAME_free(g);
            ASN1_IA5STRING_free(s);
            goto ossl;
        }
        GENERAL_NAME_set0_value(g, GEN_DNS, s);
        if (!sk_GENERAL_NAME_push(gens, g)) {
            GENERAL_NAME_free(g);
            goto ossl;
        }
    }
    san = X509V3_EXT_i2d(NID_subject_alt_name, 0, gens);
    if (!san || !sk_X509_EXTENSION_push(exts, san))
        goto ossl;
    san = NULL; /* owned by exts now */
    if (!X509_REQ_add_extensions(req, exts))
        goto ossl;
    if (!X509_REQ_set_pubkey(req, key))
        goto ossl;
    if (!X509_REQ_sign(req, key, EVP_sha256()))
        goto ossl;
    unsigned char *p = NULL;
    int len = i2d_X509_REQ(req, &p);
    if (len <= 0)
        goto ossl;
    *der = cf_xmalloc((size_t)len);
    memcpy(*der, p, (size_t)len);
    *der_len = (size_t)len;
    OPENSSL_free(p);
    rc = 0;
    goto out;
ossl:
    rc = CF_EINVAL;
    cf_errf(err, "cannot build certificate signing request for '%s': %s", domains[0], ossl_err());
out:
    X509_EXTENSION_free(san);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    GENERAL_NAMES_free(gens);
    X509_NAME_free(name);
    X509_REQ_free(req);
    return rc;
}

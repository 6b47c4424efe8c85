/*
 * x509.c - keys, CSRs, certificates, the host-name matcher and the
 * pre-push checks (see x509.h).
 */
#include "cf.h"
#include "util.h"
#include "x509.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/asn1.h>
#include <openssl/core_names.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

/* The text of the last OpenSSL error, for messages; clears the queue. */
static const char *ossl_reason(char *buf, size_t n)
{
    unsigned long e = ERR_peek_last_error();
    if (!e) {
        snprintf(buf, n, "no detail");
        return buf;
    }
    ERR_error_string_n(e, buf, n);
    ERR_clear_error();
    return buf;
}

/* Never prompt on a terminal for an encrypted key: fail instead.  Without
 * a callback OpenSSL would ask on the controlling terminal and block a
 * run.  The flag tells the caller why the read failed. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    if (u)
        *(int *)u = 1;
    return -1;
}

void cf_x509_iso8601(int64_t t, char out[21])
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(out, 21, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void cf_cert_info_release(struct cf_cert_info *ci)
{
    if (!ci)
        return;
    free(ci->subject_cn);
    free(ci->issuer_cn);
    free(ci->issuer_o);
    for (size_t i = 0; i < ci->n_dns; i++)
        free(ci->dns_names[i]);
    free(ci->dns_names);
    free(ci->aki);
    memset(ci, 0, sizeof *ci);
}

static int asn1_time_epoch(const ASN1_TIME *t, int64_t *out)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    if (!t || ASN1_TIME_to_tm(t, &tm) != 1)
        return CF_EINVAL;
    *out = (int64_t)timegm(&tm);
    return 0;
}

/* The first entry of nid in name as UTF-8; "" when absent. */
static char *name_entry(const X509_NAME *name, int nid)
{
    int idx = name ? X509_NAME_get_index_by_NID(name, nid, -1) : -1;
    if (idx < 0)
        return cf_strdup("");
    const ASN1_STRING *s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, idx));
    unsigned char *utf8 = NULL;
    int n = ASN1_STRING_to_UTF8(&utf8, s);
    if (n < 0)
        return cf_strdup("");
    char *r = cf_xmalloc((size_t)n + 1);
    memcpy(r, utf8, (size_t)n);
    r[n] = '\0';
    OPENSSL_free(utf8);
    return r;
}

void cf_x509_pkey_type(const EVP_PKEY *pkey, char out[CF_KEYTYPE_LEN])
{
    if (!pkey) {
        snprintf(out, CF_KEYTYPE_LEN, "unknown");
        return;
    }
    int bits = EVP_PKEY_get_bits(pkey);
    if (EVP_PKEY_is_a(pkey, "EC"))
        snprintf(out, CF_KEYTYPE_LEN, "ecdsa-%d", bits);
    else if (EVP_PKEY_is_a(pkey, "RSA"))
        snprintf(out, CF_KEYTYPE_LEN, "rsa-%d", bits);
    else if (EVP_PKEY_is_a(pkey, "ED25519"))
        snprintf(out, CF_KEYTYPE_LEN, "ed25519");
    else
        snprintf(out, CF_KEYTYPE_LEN, "unknown");
}

void cf_x509_serial_hex(const X509 *x, char out[CF_SERIAL_HEX_LEN])
{
    out[0] = '\0';
    const ASN1_INTEGER *sn = x ? X509_get0_serialNumber(x) : NULL;
    int n = sn ? ASN1_STRING_length(sn) : 0;
    if (n < 0 || n > 64)
        return;
    /* the string holds the magnitude, minimal (OpenSSL rejects padded
     * DER); an empty one is zero, which openssl prints as "00" */
    const unsigned char *d = ASN1_STRING_get0_data(sn);
    size_t o = 0;
    if (ASN1_STRING_type(sn) == V_ASN1_NEG_INTEGER)
        out[o++] = '-';
    if (n == 0)
        out[o++] = '0', out[o++] = '0';
    for (int i = 0; i < n; i++, o += 2)
        snprintf(out + o, 3, "%02X", d[i]);
    out[o] = '\0';
}

/* The DER content octets of the serial INTEGER (two's complement, minimal:
 * 0x87 becomes 00 87), as RFC 9773 §4.1 puts it in the certID. */
static int serial_der(X509 *x, unsigned char *out, size_t cap, size_t *len)
{
    *len = 0;
    unsigned char *der = NULL;
    int n = i2d_ASN1_INTEGER(X509_get0_serialNumber(x), &der);
    if (n < 3) {
        OPENSSL_free(der);
        return CF_EINVAL;
    }
    /* skip the tag and the length (short or long form) */
    int hdr = (der[1] & 0x80) ? 2 + (der[1] & 0x7f) : 2;
    if (hdr >= n || (size_t)(n - hdr) > cap) {
        OPENSSL_free(der);
        return CF_EINVAL;
    }
    memcpy(out, der + hdr, (size_t)(n - hdr));
    *len = (size_t)(n - hdr);
    OPENSSL_free(der);
    return 0;
}

static int fill_info(X509 *x, struct cf_cert_info *ci, char *err)
{
    cf_x509_serial_hex(x, ci->serial_hex);
    if (!ci->serial_hex[0] || serial_der(x, ci->serial, sizeof ci->serial, &ci->serial_len) != 0)
        return cf_errf(err, "certificate serial number is missing or longer than 64 bytes");

    if (asn1_time_epoch(X509_get0_notBefore(x), &ci->not_before) != 0 ||
        asn1_time_epoch(X509_get0_notAfter(x), &ci->not_after) != 0)
        return cf_errf(err, "certificate has an unreadable validity period");

    ci->subject_cn = name_entry(X509_get_subject_name(x), NID_commonName);
    ci->issuer_cn = name_entry(X509_get_issuer_name(x), NID_commonName);
    ci->issuer_o = name_entry(X509_get_issuer_name(x), NID_organizationName);

    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    if (gens) {
        int n = sk_GENERAL_NAME_num(gens);
        ci->dns_names = cf_xcalloc((size_t)n + 1, sizeof(char *));
        for (int i = 0; i < n; i++) {
            const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
            if (g->type != GEN_DNS)
                continue;
            const unsigned char *d = ASN1_STRING_get0_data(g->d.dNSName);
            int dl = ASN1_STRING_length(g->d.dNSName);
            if (dl <= 0 || memchr(d, '\0', (size_t)dl))
                continue; /* an embedded NUL is an attack, never a name */
            char *s = cf_xmalloc((size_t)dl + 1);
            memcpy(s, d, (size_t)dl);
            s[dl] = '\0';
            ci->dns_names[ci->n_dns++] = s;
        }
        GENERAL_NAMES_free(gens);
    }

    cf_x509_pkey_type(X509_get0_pubkey(x), ci->key_type);

    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (X509_digest(x, EVP_sha256(), md, &mdlen) != 1)
        return cf_errf(err, "cannot compute the certificate fingerprint");
    for (unsigned int i = 0; i < mdlen && i < 32; i++)
        sprintf(ci->fingerprint_sha256 + 2 * i, "%02x", md[i]);

    const ASN1_OCTET_STRING *aki = X509_get0_authority_key_id(x);
    if (aki && ASN1_STRING_length(aki) > 0) {
        ci->aki_len = (size_t)ASN1_STRING_length(aki);
        ci->aki = cf_xmalloc(ci->aki_len);
        memcpy(ci->aki, ASN1_STRING_get0_data(aki), ci->aki_len);
    }
    return 0;
}

/* Read every certificate of a PEM text.  Returns a stack (caller frees with
 * sk_X509_pop_free) holding at least one certificate, or NULL with err. */
static STACK_OF(X509) * read_certs(const char *pem, size_t len, char *err)
{
    if (!pem)
        return cf_errf(err, "no certificate given"), NULL;
    if (!len)
        len = strlen(pem);
    if (len > CF_PEM_MAX)
        return cf_errf(err, "certificate text is larger than %d bytes", CF_PEM_MAX), NULL;
    ERR_clear_error(); /* the end-of-input test below reads the queue */
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    STACK_OF(X509) *sk = sk_X509_new_null();
    if (!bio || !sk) {
        BIO_free(bio);
        sk_X509_free(sk);
        cf_errf(err, "out of memory");
        return NULL;
    }
    X509 *x;
    while ((x = PEM_read_bio_X509(bio, NULL, no_passphrase, NULL)) != NULL)
        sk_X509_push(sk, x);
    BIO_free(bio);
    /* the loop always ends on "no start line"; anything else is damage */
    unsigned long e = ERR_peek_last_error();
    int damaged = e && ERR_GET_REASON(e) != PEM_R_NO_START_LINE;
    if (damaged || sk_X509_num(sk) == 0) {
        char why[256];
        if (damaged)
            cf_errf(err, "cannot parse PEM certificate %d: %s", sk_X509_num(sk) + 1,
                    ossl_reason(why, sizeof why));
        else
            cf_errf(err, "no PEM certificate found (expected '-----BEGIN CERTIFICATE-----')");
        ERR_clear_error();
        sk_X509_pop_free(sk, X509_free);
        return NULL;
    }
    ERR_clear_error();
    return sk;
}

int cf_x509_parse(const char *pem, size_t len, struct cf_cert_info *ci, char *err)
{
    memset(ci, 0, sizeof *ci);
    STACK_OF(X509) *sk = read_certs(pem, len, err);
    if (!sk)
        return CF_EINVAL;
    int rc = fill_info(sk_X509_value(sk, 0), ci, err);
    sk_X509_pop_free(sk, X509_free);
    if (rc)
        cf_cert_info_release(ci);
    return rc;
}

static int append_pem(struct cf_buf *b, X509 *x)
{
    BIO *bio = BIO_new(BIO_s_mem());
    if (!bio || PEM_write_bio_X509(bio, x) != 1) {
        BIO_free(bio);
        return CF_ENOMEM;
    }
    char *p;
    long n = BIO_get_mem_data(bio, &p);
    cf_buf_append(b, p, (size_t)n);
    BIO_free(bio);
    return 0;
}

int cf_x509_split_chain(const char *fullchain_pem, char **leaf_pem, char **chain_pem, char *err)
{
    if (leaf_pem)
        *leaf_pem = NULL;
    if (chain_pem)
        *chain_pem = NULL;
    STACK_OF(X509) *sk = read_certs(fullchain_pem, 0, err);
    if (!sk)
        return CF_EINVAL;
    struct cf_buf leaf = CF_BUF_INIT, chain = CF_BUF_INIT;
    int rc = append_pem(&leaf, sk_X509_value(sk, 0));
    for (int i = 1; rc == 0 && i < sk_X509_num(sk); i++)
        rc = append_pem(&chain, sk_X509_value(sk, i));
    sk_X509_pop_free(sk, X509_free);
    if (rc) {
        cf_buf_release(&leaf);
        cf_buf_release(&chain);
        return cf_errf(err, "out of memory while splitting the chain"), CF_ENOMEM;
    }
    if (leaf_pem)
        *leaf_pem = cf_buf_detach(&leaf, NULL);
    if (chain_pem)
        *chain_pem = cf_buf_detach(&chain, NULL);
    cf_buf_release(&leaf);
    cf_buf_release(&chain);
    return 0;
}

int cf_x509_key_describe(const EVP_PKEY *key, const char **type, int *bits)
{
    if (!key)
        return CF_EINVAL;
    if (EVP_PKEY_is_a(key, "EC")) {
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
    if (EVP_PKEY_is_a(key, "RSA")) {
        *type = "rsa";
        *bits = EVP_PKEY_get_bits(key);
        return *bits >= 2048 ? 0 : CF_EINVAL;
    }
    return CF_EINVAL;
}

int cf_x509_key_read(const char *pem, size_t len, EVP_PKEY **out, char *err)
{
    *out = NULL;
    if (!pem || !*pem)
        return cf_errf(err, "no private key given");
    if (!len)
        len = strlen(pem);
    if (len > CF_PEM_MAX)
        return cf_errf(err, "private key text is larger than %d bytes", CF_PEM_MAX);
    ERR_clear_error();
    int asked = 0;
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    if (!bio)
        return cf_errf(err, "out of memory"), CF_ENOMEM;
    EVP_PKEY *k = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, &asked);
    BIO_free(bio);
    if (!k) {
        char why[256];
        if (asked)
            cf_errf(err, "cannot parse the private key: private key is encrypted (certfleet "
                         "needs it unencrypted)");
        else
            cf_errf(err, "cannot parse the private key (PEM, unencrypted): %s",
                    ossl_reason(why, sizeof why));
        ERR_clear_error();
        return CF_EINVAL;
    }
    ERR_clear_error();
    const char *type;
    int bits;
    if (cf_x509_key_describe(k, &type, &bits) != 0) {
        char kt[CF_KEYTYPE_LEN];
        cf_x509_pkey_type(k, kt);
        EVP_PKEY_free(k);
        return cf_errf(err, "unsupported private key (%s): use ecdsa P-256/P-384 or rsa >= 2048",
                       kt);
    }
    *out = k;
    return 0;
}

int cf_x509_key_type(const char *key_pem, char out[CF_KEYTYPE_LEN], char *err)
{
    snprintf(out, CF_KEYTYPE_LEN, "unknown");
    EVP_PKEY *k;
    int rc = cf_x509_key_read(key_pem, 0, &k, err);
    if (rc)
        return rc;
    cf_x509_pkey_type(k, out);
    EVP_PKEY_free(k);
    return 0;
}

int cf_x509_key_type_norm(const char *type, int size, const char *curve, char out[CF_KEYTYPE_LEN],
                          char *err)
{
    out[0] = '\0';
    if (!type || !*type)
        type = "ecdsa";
    char kind[16];
    int bits = size;
    const char *dash = strchr(type, '-');
    if (dash) {
        size_t kl = (size_t)(dash - type);
        if (kl >= sizeof kind)
            goto bad;
        memcpy(kind, type, kl);
        kind[kl] = '\0';
        char *end;
        long b = strtol(dash + 1, &end, 10);
        if (*end || b <= 0)
            goto bad;
        if (size && size != b)
            return cf_errf(err, "key type '%s' contradicts key size %d", type, size);
        bits = (int)b;
    } else {
        if (strlen(type) >= sizeof kind)
            goto bad;
        snprintf(kind, sizeof kind, "%s", type);
    }
    if (!strcasecmp(kind, "ecdsa") || !strcasecmp(kind, "ec")) {
        if (curve && *curve) {
            int cb = 0;
            if (!strcasecmp(curve, "secp256r1") || !strcasecmp(curve, "P-256") ||
                !strcasecmp(curve, "prime256v1"))
                cb = 256;
            else if (!strcasecmp(curve, "secp384r1") || !strcasecmp(curve, "P-384"))
                cb = 384;
            else
                return cf_errf(err, "unsupported elliptic curve '%s': use secp256r1 or secp384r1",
                               curve);
            if (bits && bits != cb)
                return cf_errf(err, "elliptic curve '%s' contradicts key size %d", curve, bits);
            bits = cb;
        }
        if (!bits)
            bits = 256;
        if (bits != 256 && bits != 384)
            return cf_errf(err, "unsupported ecdsa key size %d: use 256 or 384", bits);
        snprintf(out, CF_KEYTYPE_LEN, "ecdsa-%d", bits);
        return 0;
    }
    if (!strcasecmp(kind, "rsa")) {
        if (!bits)
            bits = 2048;
        if (bits != 2048 && bits != 3072 && bits != 4096)
            return cf_errf(err, "unsupported rsa key size %d: use 2048, 3072 or 4096", bits);
        snprintf(out, CF_KEYTYPE_LEN, "rsa-%d", bits);
        return 0;
    }
bad:
    return cf_errf(err, "unsupported key type '%s': use ecdsa or rsa", type);
}

int cf_x509_keygen(const char *type, int bits, EVP_PKEY **out, char *err)
{
    *out = NULL;
    char norm[CF_KEYTYPE_LEN];
    int rc = cf_x509_key_type_norm(type, bits, NULL, norm, err);
    if (rc)
        return rc;
    EVP_PKEY *k = NULL;
    if (!strcmp(norm, "ecdsa-256"))
        k = EVP_EC_gen("P-256");
    else if (!strcmp(norm, "ecdsa-384"))
        k = EVP_EC_gen("P-384");
    else
        k = EVP_RSA_gen((unsigned int)atoi(norm + 4));
    if (!k) {
        char why[256];
        return cf_errf(err, "cannot generate a %s key: %s", norm, ossl_reason(why, sizeof why));
    }
    *out = k;
    return 0;
}

int cf_x509_key_pem(EVP_PKEY *pkey, char **out, size_t *len, char *err)
{
    *out = NULL;
    *len = 0;
    /* a secure-memory BIO clears its buffer when freed, so the only copy
     * left is the caller's, which it wipes */
    BIO *bio = BIO_new(BIO_s_secmem());
    if (!bio || PEM_write_bio_PrivateKey(bio, pkey, NULL, NULL, 0, NULL, NULL) != 1) {
        char why[256];
        BIO_free(bio);
        return cf_errf(err, "cannot encode the private key: %s", ossl_reason(why, sizeof why));
    }
    char *p;
    long n = BIO_get_mem_data(bio, &p);
    char *r = cf_xmalloc((size_t)n + 1);
    memcpy(r, p, (size_t)n);
    r[n] = '\0';
    BIO_free(bio);
    *out = r;
    *len = (size_t)n;
    return 0;
}

/* One GEN_DNS entry per domain, in order. */
static GENERAL_NAMES *dns_names(const char *const *domains, size_t n)
{
    GENERAL_NAMES *gens = GENERAL_NAMES_new();
    for (size_t i = 0; gens && i < n; i++) {
        GENERAL_NAME *g = GENERAL_NAME_new();
        ASN1_IA5STRING *s = ASN1_IA5STRING_new();
        if (!g || !s || !ASN1_STRING_set(s, domains[i], -1)) {
            GENERAL_NAME_free(g);
            ASN1_IA5STRING_free(s);
            GENERAL_NAMES_free(gens);
            return NULL;
        }
        GENERAL_NAME_set0_value(g, GEN_DNS, s);
        if (!sk_GENERAL_NAME_push(gens, g)) {
            GENERAL_NAME_free(g);
            GENERAL_NAMES_free(gens);
            return NULL;
        }
    }
    return gens;
}

int cf_x509_csr(EVP_PKEY *key, const char *const *domains, size_t n, unsigned char **der,
                size_t *der_len, char *err)
{
    *der = NULL;
    *der_len = 0;
    if (!key || !domains || n == 0)
        return cf_errf(err, "a certificate signing request needs a key and a domain");
    int rc = CF_EINVAL;
    char why[256];
    X509_REQ *req = X509_REQ_new();
    X509_NAME *name = X509_NAME_new();
    STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
    GENERAL_NAMES *gens = dns_names(domains, n);
    X509_EXTENSION *san = NULL;
    unsigned char *p = NULL;
    if (!req || !name || !exts || !gens || !X509_REQ_set_version(req, 0))
        goto ossl;
    if (strlen(domains[0]) <= 64 &&
        !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)domains[0],
                                    -1, -1, 0))
        goto ossl;
    if (!X509_REQ_set_subject_name(req, name))
        goto ossl;
    san = X509V3_EXT_i2d(NID_subject_alt_name, 0, gens);
    if (!san || !sk_X509_EXTENSION_push(exts, san))
        goto ossl;
    san = NULL; /* owned by exts now */
    if (!X509_REQ_add_extensions(req, exts) || !X509_REQ_set_pubkey(req, key) ||
        !X509_REQ_sign(req, key, EVP_sha256()))
        goto ossl;
    int len = i2d_X509_REQ(req, &p);
    if (len <= 0)
        goto ossl;
    *der = cf_xmalloc((size_t)len);
    memcpy(*der, p, (size_t)len);
    *der_len = (size_t)len;
    rc = 0;
    goto out;
ossl:
    cf_errf(err, "cannot build the certificate signing request for '%s': %s", domains[0],
            ossl_reason(why, sizeof why));
out:
    OPENSSL_free(p);
    X509_EXTENSION_free(san);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    GENERAL_NAMES_free(gens);
    X509_NAME_free(name);
    X509_REQ_free(req);
    return rc;
}

static int is_ip_literal(const char *s)
{
    unsigned char buf[16];
    return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

char *cf_x509_probe_name(const char *domain)
{
    if (domain && !strncmp(domain, "*.", 2))
        return cf_asprintf("certfleet-probe.%s", domain + 2);
    return cf_strdup(domain ? domain : "");
}

int cf_x509_covers_name(X509 *x, const char *name)
{
    if (!x || !name || !*name || name[0] == '.')
        return 0; /* OpenSSL reads a leading dot as "any subdomain of" */
    if (is_ip_literal(name))
        return X509_check_ip_asc(x, name, 0) == 1;
    char *probe = cf_x509_probe_name(name);
    size_t n = strlen(probe);
    if (n > 1 && probe[n - 1] == '.')
        probe[--n] = '\0'; /* an absolute name is the same name */
    int hit = X509_check_host(x, probe, n, CF_X509_HOST_FLAGS, NULL) == 1;
    free(probe);
    ERR_clear_error();
    return hit;
}

/* Does the certificate cover every domain?  0, or CF_EINVAL with
 * "certificate does not cover 'x' (it covers a, b)". */
static int covers(X509 *x, const struct cf_cert_info *ci, const char *const *domains, size_t n,
                  char *err)
{
    for (size_t i = 0; i < n; i++) {
        if (cf_x509_covers_name(x, domains[i]))
            continue;
        struct cf_buf have = CF_BUF_INIT;
        for (size_t j = 0; j < ci->n_dns; j++)
            cf_buf_printf(&have, "%s%s", j ? ", " : "", ci->dns_names[j]);
        if (!ci->n_dns)
            cf_buf_printf(&have, "no DNS names; subject CN '%s' is not a name",
                          ci->subject_cn ? ci->subject_cn : "");
        cf_errf(err, "certificate does not cover '%s' (it covers %s)", domains[i], have.data);
        cf_buf_release(&have);
        return CF_EINVAL;
    }
    return 0;
}

int cf_x509_ari_certid(const struct cf_cert_info *ci, char **out, char *err)
{
    *out = NULL;
    if (!ci->aki_len)
        return cf_errf(err, "certificate has no authority key identifier (needed for ARI)");
    if (!ci->serial_len)
        return cf_errf(err, "certificate has no serial number");
    char *a = cf_b64url(ci->aki, ci->aki_len);
    char *s = cf_b64url(ci->serial, ci->serial_len);
    *out = cf_asprintf("%s.%s", a, s);
    free(a);
    free(s);
    return 0;
}

int cf_x509_ari_certid_pem(const char *cert_pem, char **out, char *err)
{
    *out = NULL;
    struct cf_cert_info ci;
    char why[CF_ERRLEN];
    if (cf_x509_parse(cert_pem, 0, &ci, why) != 0)
        return cf_errf(err, "cannot parse certificate for renewal info: %s", why);
    int rc = cf_x509_ari_certid(&ci, out, err);
    cf_cert_info_release(&ci);
    return rc;
}

int cf_x509_check_bundle(const char *fullchain_pem, const char *key_pem, const char *const *domains,
                         size_t n, int64_t now, char *err)
{
    int rc = CF_EINVAL;
    char why[CF_ERRLEN];
    EVP_PKEY *key = NULL;
    struct cf_cert_info ci;
    memset(&ci, 0, sizeof ci);
    STACK_OF(X509) *sk = read_certs(fullchain_pem, 0, why);
    if (!sk) {
        cf_errf(err, "certificate: %s", why);
        goto out;
    }
    X509 *leaf = sk_X509_value(sk, 0);
    if ((rc = fill_info(leaf, &ci, err)) != 0)
        goto out;
    rc = CF_EINVAL;
    if (sk_X509_num(sk) > 1) {
        X509 *issuer = sk_X509_value(sk, 1);
        if (X509_check_issued(issuer, leaf) != X509_V_OK ||
            X509_verify(leaf, X509_get0_pubkey(issuer)) != 1) {
            char *icn = name_entry(X509_get_subject_name(issuer), NID_commonName);
            cf_errf(err,
                    "chain does not belong to the certificate (leaf issued by '%s', chain "
                    "starts with '%s'); the fullchain must list the leaf then its issuer",
                    ci.issuer_cn, icn);
            free(icn);
            ERR_clear_error();
            goto out;
        }
    }
    if (cf_x509_key_read(key_pem, 0, &key, err) != 0)
        goto out;
    if (EVP_PKEY_eq(X509_get0_pubkey(leaf), key) != 1) {
        char kt[CF_KEYTYPE_LEN];
        cf_x509_pkey_type(key, kt);
        if (strcmp(kt, ci.key_type) != 0)
            cf_errf(err, "private key does not match certificate (key is %s, certificate is %s)",
                    kt, ci.key_type);
        else
            cf_errf(err,
                    "private key does not match certificate (both %s, but a different key; "
                    "serial %s)",
                    kt, ci.serial_hex);
        ERR_clear_error();
        goto out;
    }
    if (covers(leaf, &ci, domains, n, err) != 0)
        goto out;
    char when[21];
    if (now < ci.not_before) {
        cf_x509_iso8601(ci.not_before, when);
        cf_errf(err, "certificate is not valid before %s (serial %s); check the clock", when,
                ci.serial_hex);
        goto out;
    }
    if (now >= ci.not_after) {
        cf_x509_iso8601(ci.not_after, when);
        cf_errf(err, "certificate expired at %s (serial %s)", when, ci.serial_hex);
        goto out;
    }
    rc = 0;
out:
    EVP_PKEY_free(key);
    sk_X509_pop_free(sk, X509_free);
    cf_cert_info_release(&ci);
    return rc;
}

int cf_x509_make_placeholder(const char *const *domains, size_t n, int64_t now, char **cert_pem,
                             char **key_pem, size_t *key_len, char *err)
{
    *cert_pem = NULL;
    *key_pem = NULL;
    *key_len = 0;
    int rc = CF_EINVAL;
    EVP_PKEY *key = NULL;
    X509 *x = NULL;
    X509_NAME *name = NULL;
    GENERAL_NAMES *gens = NULL;
    struct cf_buf out = CF_BUF_INIT;
    char why[256];

    if (n == 0) {
        cf_errf(err, "a placeholder certificate needs at least one domain");
        goto out;
    }
    if ((rc = cf_x509_keygen("ecdsa-256", 0, &key, err)) != 0)
        goto out;
    rc = CF_EINVAL;
    unsigned char serial[16];
    if (RAND_bytes(serial, sizeof serial) != 1)
        goto ossl;
    serial[0] &= 0x7f;
    serial[0] |= 0x40; /* positive, full length */
    BIGNUM *bn = BN_bin2bn(serial, sizeof serial, NULL);
    x = X509_new();
    name = X509_NAME_new();
    gens = dns_names(domains, n);
    if (!bn || !x || !name || !gens || X509_set_version(x, 2) != 1 ||
        !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x))) {
        BN_free(bn);
        goto ossl;
    }
    BN_free(bn);
    if (!ASN1_TIME_set(X509_getm_notBefore(x), (time_t)(now - 3600)) ||
        !ASN1_TIME_set(X509_getm_notAfter(x), (time_t)(now + CF_PLACEHOLDER_DAYS * 86400)))
        goto ossl;
    if (X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_UTF8,
                                   (const unsigned char *)CF_PLACEHOLDER_CN, -1, -1, 0) != 1 ||
        X509_set_subject_name(x, name) != 1 || X509_set_issuer_name(x, name) != 1 ||
        X509_set_pubkey(x, key) != 1)
        goto ossl;
    if (X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, X509V3_ADD_DEFAULT) != 1)
        goto ossl;
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
    static const struct {
        int nid;
        const char *value;
    } exts[] = {
        {NID_basic_constraints, "critical,CA:FALSE"},
        {NID_key_usage, "critical,digitalSignature"},
        {NID_ext_key_usage, "serverAuth"},
    };
    for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++) {
        X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, exts[i].nid, exts[i].value);
        if (!e || X509_add_ext(x, e, -1) != 1) {
            X509_EXTENSION_free(e);
            goto ossl;
        }
        X509_EXTENSION_free(e);
    }
    if (X509_sign(x, key, EVP_sha256()) <= 0)
        goto ossl;
    if (append_pem(&out, x) != 0)
        goto ossl;
    if ((rc = cf_x509_key_pem(key, key_pem, key_len, err)) != 0)
        goto out;
    *cert_pem = cf_buf_detach(&out, NULL);
    rc = 0;
    goto out;
ossl:
    cf_errf(err, "cannot build the placeholder certificate: %s", ossl_reason(why, sizeof why));
    rc = CF_EINVAL;
out:
    cf_buf_release(&out);
    GENERAL_NAMES_free(gens);
    X509_NAME_free(name);
    X509_free(x);
    EVP_PKEY_free(key);
    return rc;
}

int cf_x509_is_placeholder(const struct cf_cert_info *ci)
{
    return ci && ci->subject_cn && !strcmp(ci->subject_cn, CF_PLACEHOLDER_CN) && ci->issuer_cn &&
           !strcmp(ci->issuer_cn, CF_PLACEHOLDER_CN);
}

/*
 * x509.c - certificate parsing and the pre-push checks (see x509.h).
 */
#include "cf.h"
#include "util.h"
#include "x509.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/asn1.h>
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

/* Never prompt on a terminal for an encrypted key: fail instead. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
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

static int fill_info(X509 *x, struct cf_cert_info *ci, char *err)
{
    const ASN1_INTEGER *sn = X509_get0_serialNumber(x);
    const unsigned char *sd = ASN1_STRING_get0_data(sn);
    int sl = ASN1_STRING_length(sn);
    if (sl <= 0 || (size_t)sl > sizeof ci->serial)
        return cf_errf(err, "certificate serial number is missing or longer than 64 bytes");
    memcpy(ci->serial, sd, (size_t)sl);
    ci->serial_len = (size_t)sl;
    for (int i = 0; i < sl; i++)
        sprintf(ci->serial_hex + 2 * i, "%02X", sd[i]);

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
    if (aki && ASN1_STRING_length(aki) > 0 && (size_t)ASN1_STRING_length(aki) <= sizeof ci->aki) {
        ci->aki_len = (size_t)ASN1_STRING_length(aki);
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

static EVP_PKEY *read_key(const char *key_pem, char *err)
{
    if (!key_pem || !*key_pem)
        return cf_errf(err, "no private key given"), NULL;
    size_t len = strlen(key_pem);
    if (len > CF_PEM_MAX)
        return cf_errf(err, "private key text is larger than %d bytes", CF_PEM_MAX), NULL;
    ERR_clear_error();
    BIO *bio = BIO_new_mem_buf(key_pem, (int)len);
    EVP_PKEY *k = bio ? PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL) : NULL;
    BIO_free(bio);
    if (!k) {
        char why[256];
        cf_errf(err, "cannot parse the private key (PEM, unencrypted): %s",
                ossl_reason(why, sizeof why));
    }
    ERR_clear_error();
    return k;
}

int cf_x509_key_type(const char *key_pem, char out[CF_KEYTYPE_LEN], char *err)
{
    snprintf(out, CF_KEYTYPE_LEN, "unknown");
    EVP_PKEY *k = read_key(key_pem, err);
    if (!k)
        return CF_EINVAL;
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

int cf_x509_keygen(const char *key_type, EVP_PKEY **out, char *err)
{
    *out = NULL;
    char norm[CF_KEYTYPE_LEN];
    int rc = cf_x509_key_type_norm(key_type, 0, NULL, norm, err);
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
    /* secure memory BIO: the PEM text is wiped when the BIO is freed */
    BIO *bio = BIO_new(BIO_s_secmem());
    if (!bio || PEM_write_bio_PrivateKey(bio, pkey, NULL, NULL, 0, NULL, NULL) != 1) {
        BIO_free(bio);
        return cf_errf(err, "cannot encode the private key");
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

/* Lowercase copy without a trailing dot, into out[256]; 0 when too long. */
static int canon_name(const char *s, char out[256])
{
    size_t n = strlen(s);
    if (n && s[n - 1] == '.')
        n--;
    if (n == 0 || n >= 256)
        return 0;
    for (size_t i = 0; i < n; i++)
        out[i] = (char)tolower((unsigned char)s[i]);
    out[n] = '\0';
    return 1;
}

int cf_x509_name_matches(const char *pattern, const char *host)
{
    char p[256], h[256];
    if (!pattern || !host || !canon_name(pattern, p) || !canon_name(host, h))
        return 0;
    if (!strcmp(p, h))
        return !strchr(p, '*') || (p[0] == '*' && p[1] == '.' && !strchr(p + 1, '*'));
    if (p[0] != '*' || p[1] != '.' || strchr(p + 1, '*'))
        return 0; /* partial wildcards ("a*.x.com") and inner ones are never matched */
    const char *suffix = p + 1; /* ".example.com" */
    if (!strchr(suffix + 1, '.'))
        return 0; /* "*.com": at least two labels must follow the wildcard */
    if (h[0] == '*')
        return 0; /* a wildcard host only matches the same wildcard */
    const char *dot = strchr(h, '.');
    if (!dot || dot == h)
        return 0;
    return strcmp(dot, suffix) == 0; /* exactly one label replaced */
}

int cf_x509_covers(const struct cf_cert_info *ci, const char *const *domains, size_t n, char *err)
{
    for (size_t i = 0; i < n; i++) {
        int hit = 0;
        if (ci->n_dns) {
            for (size_t j = 0; j < ci->n_dns && !hit; j++)
                hit = cf_x509_name_matches(ci->dns_names[j], domains[i]);
        } else if (ci->subject_cn && *ci->subject_cn) {
            hit = cf_x509_name_matches(ci->subject_cn, domains[i]);
        }
        if (hit)
            continue;
        struct cf_buf have = CF_BUF_INIT;
        for (size_t j = 0; j < ci->n_dns; j++)
            cf_buf_printf(&have, "%s%s", j ? ", " : "", ci->dns_names[j]);
        if (!ci->n_dns)
            cf_buf_printf(&have, "no DNS names; subject CN '%s'",
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
    /* DER INTEGER content: a leading zero keeps a high-bit serial positive */
    unsigned char der[sizeof ci->serial + 1];
    size_t dl = 0;
    if (ci->serial[0] & 0x80)
        der[dl++] = 0;
    memcpy(der + dl, ci->serial, ci->serial_len);
    dl += ci->serial_len;
    char *a = cf_b64url(ci->aki, ci->aki_len);
    char *s = cf_b64url(der, dl);
    *out = cf_asprintf("%s.%s", a, s);
    free(a);
    free(s);
    return 0;
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
    if ((key = read_key(key_pem, err)) == NULL)
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
    if (cf_x509_covers(&ci, domains, n, err) != 0)
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
    if ((rc = cf_x509_keygen("ecdsa-256", &key, err)) != 0)
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
    gens = GENERAL_NAMES_new();
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
    for (size_t i = 0; i < n; i++) {
        GENERAL_NAME *g = GENERAL_NAME_new();
        ASN1_IA5STRING *s = ASN1_IA5STRING_new();
        if (!g || !s || !ASN1_STRING_set(s, domains[i], -1)) {
            GENERAL_NAME_free(g);
            ASN1_IA5STRING_free(s);
            goto ossl;
        }
        GENERAL_NAME_set0_value(g, GEN_DNS, s);
        sk_GENERAL_NAME_push(gens, g);
    }
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

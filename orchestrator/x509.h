/*
 * x509.h - certificates and keys as certfleet needs them (OpenSSL 3):
 * parse a PEM certificate or chain into plain C fields, split a fullchain,
 * and the pre-push checks of design.md's first Known trap (the key matches
 * the certificate, the certificate covers the domains, it is in its
 * validity period).  Also the self-signed placeholder a brand-new host gets
 * so that `nginx -t` passes before its first real certificate.
 *
 * Nothing here does I/O beyond memory; every function is safe to call from
 * a loop callback.
 */
#ifndef CF_X509_H
#define CF_X509_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "cf.h"

#define CF_KEYTYPE_LEN 32
/* Upper bound for one PEM certificate chain or key certfleet accepts. */
#define CF_PEM_MAX (1024 * 1024)
/* Subject CN of the placeholder certificate (cf_x509_is_placeholder). */
#define CF_PLACEHOLDER_CN "certfleet placeholder"
/* Validity of the placeholder certificate. */
#define CF_PLACEHOLDER_DAYS 7

/* What certfleet knows about one certificate.  All strings are owned by
 * the struct; release with cf_cert_info_release().  A zeroed struct is a
 * valid "empty" value and may be released. */
struct cf_cert_info {
    char serial_hex[130];     /* uppercase hex, as `openssl x509 -serial` prints */
    unsigned char serial[64]; /* magnitude bytes of the serial, big endian */
    size_t serial_len;
    int64_t not_before; /* epoch seconds */
    int64_t not_after;  /* epoch seconds */
    char *subject_cn;   /* "" when absent, never NULL after a parse */
    char *issuer_cn;    /* "" when absent */
    char *issuer_o;     /* "" when absent */
    char **dns_names;   /* SAN dNSName entries in certificate order */
    size_t n_dns;
    char key_type[CF_KEYTYPE_LEN]; /* "ecdsa-256", "ecdsa-384", "rsa-2048", "ed25519" */
    char fingerprint_sha256[65];   /* lowercase hex of SHA-256 over the DER */
    unsigned char aki[64];         /* authorityKeyIdentifier keyIdentifier (ARI certID) */
    size_t aki_len;                /* 0 when the certificate has none */
};

void cf_cert_info_release(struct cf_cert_info *ci);

/* Parse the first certificate of a PEM text (a lone certificate or a
 * fullchain, whose first entry is the leaf).  len may be 0 for a
 * NUL-terminated string.  On error *ci is left zeroed and err says why
 * (CF_EINVAL: no certificate in the text, or unparsable). */
int cf_x509_parse(const char *pem, size_t len, struct cf_cert_info *ci, char *err);

/* Split a fullchain into the leaf and the rest.  *leaf_pem and *chain_pem
 * are newly allocated PEM texts (caller frees); *chain_pem is "" when the
 * fullchain holds only the leaf.  Either output pointer may be NULL when
 * not wanted.  Outputs are set to NULL on entry.  CF_EINVAL when the text
 * holds no certificate. */
int cf_x509_split_chain(const char *fullchain_pem, char **leaf_pem, char **chain_pem, char *err);

/* The key type of a PEM private key ("ecdsa-256", "rsa-2048"...).  Never
 * prompts for a passphrase: an encrypted key is an error. */
int cf_x509_key_type(const char *key_pem, char out[CF_KEYTYPE_LEN], char *err);

/* The key type of an EVP_PKEY, as above; "unknown" for others. */
void cf_x509_pkey_type(const EVP_PKEY *pkey, char out[CF_KEYTYPE_LEN]);

/* Normalise a configured key type into certfleet's form.  type is
 * "ecdsa", "ec", "rsa", or already "ecdsa-256"/"rsa-3072"; size is
 * certbot_key_size (bits; 0 = default: 256 for ecdsa, 2048 for rsa), or
 * for ecdsa also accepts the curve in curve ("secp256r1", "secp384r1",
 * "P-256", "P-384"; NULL when not given).  Returns CF_EINVAL naming the
 * bad value for anything else (ecdsa 256/384, rsa 2048/3072/4096 only). */
int cf_x509_key_type_norm(const char *type, int size, const char *curve, char out[CF_KEYTYPE_LEN],
                          char *err);

/* Generate a new private key of a normalised key type ("ecdsa-256",
 * "ecdsa-384", "rsa-2048", "rsa-3072", "rsa-4096").  *out is owned by the
 * caller (EVP_PKEY_free). */
int cf_x509_keygen(const char *key_type, EVP_PKEY **out, char *err);

/* The PEM (PKCS#8) text of a private key; *out is owned by the caller and
 * must be wiped (cf_secure_free(*out, *len)). */
int cf_x509_key_pem(EVP_PKEY *pkey, char **out, size_t *len, char *err);

/* RFC 6125 host name matching: pattern is a certificate's dNSName, host
 * the name to check.  A wildcard is accepted only as the whole left-most
 * label ("*.example.com"), matches exactly one label, and never a bare
 * public-suffix-like pattern with fewer than two labels after it ("*.com").
 * A host that is itself a wildcard ("*.example.com") matches only the same
 * wildcard.  Case-insensitive; a trailing dot is ignored.  Returns 1 or 0. */
int cf_x509_name_matches(const char *pattern, const char *host);

/* Does the certificate cover every domain?  Uses the SAN dNSNames (or the
 * subject CN when the certificate has no SAN, per RFC 6125).  Returns 0,
 * or CF_EINVAL with "certificate does not cover 'x' (it covers a, b)". */
int cf_x509_covers(const struct cf_cert_info *ci, const char *const *domains, size_t n, char *err);

/* The ARI certID (RFC 9773 §4.1): base64url(AKI keyIdentifier) "."
 * base64url(DER serial content).  *out is owned by the caller.  CF_EINVAL
 * when the certificate has no AKI. */
int cf_x509_ari_certid(const struct cf_cert_info *ci, char **out, char *err);

/* The pre-push checks (design.md, first Known trap), in this order:
 *  - the fullchain parses and its first certificate is the leaf;
 *  - when a chain follows, its first certificate issued the leaf;
 *  - the private key parses and matches the leaf (EVP_PKEY_eq), else
 *    "private key does not match certificate (key is rsa-2048, certificate
 *    is ecdsa-256)";
 *  - the leaf covers each of the n domains (n may be 0);
 *  - now lies inside [notBefore, notAfter].
 * Returns 0 or CF_EINVAL with one precise message in err. */
int cf_x509_check_bundle(const char *fullchain_pem, const char *key_pem, const char *const *domains,
                         size_t n, int64_t now, char *err);

/* A self-signed placeholder certificate + ECDSA P-256 key for the domains:
 * CN "certfleet placeholder", SAN = the domains, valid from now - 1 hour
 * for CF_PLACEHOLDER_DAYS days.  *cert_pem is owned by the caller;
 * *key_pem too and must be wiped (cf_secure_free(*key_pem, *key_len)). */
int cf_x509_make_placeholder(const char *const *domains, size_t n, int64_t now, char **cert_pem,
                             char **key_pem, size_t *key_len, char *err);

/* 1 when the certificate is a certfleet placeholder (subject CN). */
int cf_x509_is_placeholder(const struct cf_cert_info *ci);

/* Format epoch seconds as "2026-12-01T10:00:00Z" into out[21]. */
void cf_x509_iso8601(int64_t t, char out[21]);

#endif

/*
 * x509.h - the one PKI module of certfleet (OpenSSL 3): private keys
 * (generate, PEM out and in, describe), certificate signing requests,
 * certificates parsed into plain C fields, the canonical serial text, the
 * host-name matcher, the ARI certID, a fullchain split, and the pre-push
 * checks of design.md's first Known trap (the key matches the certificate,
 * the certificate covers the domains, it is in its validity period).  Also
 * the self-signed placeholder a brand-new host gets so that `nginx -t`
 * passes before its first real certificate.
 *
 * Key types follow certbot's variables: "ecdsa" (P-256 default, P-384) or
 * "rsa" (2048 default, 3072, 4096); certfleet's normalised form is
 * "ecdsa-256", "rsa-2048"...  Private keys leave this module only as
 * PKCS#8 PEM in buffers the caller wipes with cf_secure_free().
 *
 * Nothing here does I/O beyond memory; every function is safe to call from
 * a loop callback.
 */
#ifndef CF_X509_H
#define CF_X509_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "cf.h"

#define CF_KEYTYPE_LEN 32
/* Upper bound for one PEM certificate chain or key certfleet accepts. */
#define CF_PEM_MAX (1024 * 1024)
/* Subject CN of the placeholder certificate (cf_x509_is_placeholder). */
#define CF_PLACEHOLDER_CN "certfleet placeholder"
/* Validity of the placeholder certificate. */
#define CF_PLACEHOLDER_DAYS 7
/* Room for the canonical serial text of the longest serial certfleet
 * reads (64 magnitude bytes), a sign and the NUL. */
#define CF_SERIAL_HEX_LEN 132

/* What certfleet knows about one certificate.  All strings are owned by
 * the struct; release with cf_cert_info_release().  A zeroed struct is a
 * valid "empty" value and may be released. */
struct cf_cert_info {
    char serial_hex[CF_SERIAL_HEX_LEN]; /* canonical text, see cf_x509_serial_hex */
    unsigned char serial[66];           /* DER content octets of the serial INTEGER */
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
    unsigned char *aki;            /* authorityKeyIdentifier keyIdentifier (ARI certID) */
    size_t aki_len;                /* aki is NULL and aki_len 0 when the certificate has none */
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

/* ---- private keys ---- */

/* Normalise a configured key type into certfleet's form.  type is
 * "ecdsa", "ec", "rsa" (any case), or already "ecdsa-256"/"rsa-3072"; size
 * is certbot_key_size (bits; 0 = default: 256 for ecdsa, 2048 for rsa), or
 * for ecdsa also accepts the curve in curve ("secp256r1", "secp384r1",
 * "P-256", "P-384"; NULL when not given).  Returns CF_EINVAL naming the
 * bad value for anything else (ecdsa 256/384, rsa 2048/3072/4096 only).
 * This is also how a configured type is validated without the cost of
 * generating a key.  err may be NULL. */
int cf_x509_key_type_norm(const char *type, int size, const char *curve, char out[CF_KEYTYPE_LEN],
                          char *err);

/* Generate a new private key.  type and bits as cf_x509_key_type_norm
 * takes them ("ecdsa" + 384, "rsa" + 0, "rsa-3072" + 0...).  *out is NULL
 * on entry and owned by the caller (EVP_PKEY_free) on success.  CF_EINVAL
 * names a bad type or size in err (which may be NULL). */
int cf_x509_keygen(const char *type, int bits, EVP_PKEY **out, char *err);

/* The PEM (PKCS#8, unencrypted) text of a private key.  *out
 * (NUL-terminated, *len bytes) is owned by the caller and must be wiped
 * with cf_secure_free(*out, *len); the caller writes it with mode 0600.
 * No copy of the text is left behind in OpenSSL's buffers. */
int cf_x509_key_pem(EVP_PKEY *pkey, char **out, size_t *len, char *err);

/* Parse a PEM private key (PKCS#8, or traditional EC/RSA PEM as certbot
 * writes); len may be 0 for a NUL-terminated text.  Never prompts for a
 * passphrase on a terminal: an encrypted key fails with CF_EINVAL and
 * "private key is encrypted".  Only ecdsa P-256/P-384 and rsa >= 2048 are
 * accepted, so a key read here can always sign.  *out owned by the
 * caller. */
int cf_x509_key_read(const char *pem, size_t len, EVP_PKEY **out, char *err);

/* The type ("ecdsa" or "rsa", static string) and size (curve bits or
 * modulus bits) of a key certfleet can sign with; CF_EINVAL for anything
 * else (other curves, rsa < 2048, ed25519...). */
int cf_x509_key_describe(const EVP_PKEY *key, const char **type, int *bits);

/* The key type of a PEM private key ("ecdsa-256", "rsa-2048"...), read
 * with cf_x509_key_read (so: never a prompt, CF_EINVAL for others). */
int cf_x509_key_type(const char *key_pem, char out[CF_KEYTYPE_LEN], char *err);

/* The key type of any public or private key for messages: "ecdsa-256",
 * "rsa-2048", "ed25519", or "unknown". */
void cf_x509_pkey_type(const EVP_PKEY *pkey, char out[CF_KEYTYPE_LEN]);

/* A DER certificate signing request for domains[0..n-1] signed with key
 * (SHA-256): subject CN is domains[0] when it fits the 64-byte limit of a
 * CN, every domain is in subjectAltName.  *der is the caller's (free()). */
int cf_x509_csr(EVP_PKEY *key, const char *const *domains, size_t n, unsigned char **der,
                size_t *der_len, char *err);

/* ---- certificates ---- */

/* The canonical serial text of a certificate, the only form certfleet
 * writes anywhere (store, probe results, database, reports), so that two
 * serials compare with strcmp: uppercase hex of the serial's magnitude,
 * two digits per byte, no leading zero byte - exactly what
 * `openssl x509 -noout -serial` prints after "serial=" ("2A", "0A1B",
 * "8A1B2C3D"; "00" for zero; a "-" before a negative serial).  out has
 * CF_SERIAL_HEX_LEN bytes; "" when the serial is unreadable or longer than
 * 64 bytes. */
void cf_x509_serial_hex(const X509 *x, char out[CF_SERIAL_HEX_LEN]);

/* The one host-name matcher, used by the pre-push check and by status and
 * the push proof (probe): does the certificate x cover name, as a browser
 * would judge it?  OpenSSL's X509_check_host with
 * X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS (a wildcard is a whole left-most
 * label and replaces exactly one label; "*.com" covers nothing) and
 * X509_CHECK_FLAG_NEVER_CHECK_SUBJECT (the subject CN is never a name, only
 * subjectAltName dNSNames are); ASCII case-insensitive, IDNA names compared
 * as their A-labels ("xn--..."), no wildcard inside an A-label.  One
 * trailing dot on name is ignored (an absolute name); a name starting with
 * "." or empty is never covered.  An IP literal is compared with the
 * iPAddress entries instead.  A configured wildcard "*.example.com" is
 * covered when cf_x509_probe_name of it is.  Returns 1 or 0. */
int cf_x509_covers_name(X509 *x, const char *name);

/* The X509_CHECK_FLAG_* cf_x509_covers_name uses, for a TLS verification
 * that must judge names the same way (X509_VERIFY_PARAM_set_hostflags). */
#define CF_X509_HOST_FLAGS                                                                         \
    (X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS | X509_CHECK_FLAG_NEVER_CHECK_SUBJECT)

/* The concrete name a wildcard domain is checked and probed with
 * ("*.example.com" -> "certfleet-probe.example.com"); other domains are
 * returned as they are.  Caller frees. */
char *cf_x509_probe_name(const char *domain);

/* The ARI certID (RFC 9773 §4.1): base64url(AKI keyIdentifier) "."
 * base64url(the DER content octets of the serial INTEGER, so a serial
 * whose top bit is set gains a leading zero byte: 0x87... -> 0x0087...).
 * *out is owned by the caller.  CF_EINVAL when the certificate has no
 * authority key identifier keyIdentifier (or an empty one) or no serial. */
int cf_x509_ari_certid(const struct cf_cert_info *ci, char **out, char *err);

/* The same certID from a PEM certificate (or fullchain: its first
 * certificate), for callers that hold only the text.  CF_EINVAL when the
 * text holds no parsable certificate, or as above. */
int cf_x509_ari_certid_pem(const char *cert_pem, char **out, char *err);

/* The pre-push checks (design.md, first Known trap), in this order:
 *  - the fullchain parses and its first certificate is the leaf;
 *  - when a chain follows, its first certificate issued the leaf;
 *  - the private key parses and matches the leaf (EVP_PKEY_eq), else
 *    "private key does not match certificate (key is rsa-2048, certificate
 *    is ecdsa-256)";
 *  - the leaf covers each of the n domains (cf_x509_covers_name; n may be
 *    0), else "certificate does not cover 'x' (it covers a, b)";
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

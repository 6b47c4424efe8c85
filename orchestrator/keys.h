/*
 * keys.h - private keys and certificate signing requests with OpenSSL 3.
 *
 * Key types follow certbot's variables: "ecdsa" (P-256 default, P-384) or
 * "rsa" (2048 default, 3072, 4096).  Private keys leave this module only
 * as PKCS#8 PEM in buffers the caller wipes with cf_keys_pem_free().
 */
#ifndef CF_KEYS_H
#define CF_KEYS_H

#include <stddef.h>
#include <openssl/evp.h>

#include "cf.h"

/* Generate a key.  type is "ecdsa" (or "ec") with bits 256 or 384, or
 * "rsa" with bits 2048, 3072 or 4096; bits 0 takes the default (256 for
 * ecdsa, 2048 for rsa).  *out is NULL on entry, owned by the caller
 * (EVP_PKEY_free) on success.  CF_EINVAL names the bad value in err. */
int cf_keys_generate(const char *type, int bits, EVP_PKEY **out, char *err);

/* PKCS#8 PEM of the private key.  *pem (NUL-terminated, *len bytes) is
 * the caller's and must be released with cf_keys_pem_free, which wipes
 * it; the caller writes it to disk with mode 0600. */
int cf_keys_to_pem(EVP_PKEY *key, char **pem, size_t *len, char *err);
void cf_keys_pem_free(char *pem, size_t len);

/* Parse a PEM private key (PKCS#8, or traditional EC/RSA PEM as certbot
 * writes).  *out owned by the caller.  Only ecdsa P-256/P-384 and RSA
 * >= 2048 are accepted, so a key from disk can always sign. */
int cf_keys_from_pem(const char *pem, size_t len, EVP_PKEY **out, char *err);

/* The type ("ecdsa" or "rsa", static string) and size (curve bits or
 * modulus bits) of key; returns CF_EINVAL for anything else. */
int cf_keys_describe(EVP_PKEY *key, const char **type, int *bits);

/* A DER CSR for domains[0..n-1] signed with key (SHA-256): subject CN is
 * domains[0] (when it fits the 64-byte limit of a CN), every domain in
 * subjectAltName.  *der is the caller's (free()). */
int cf_keys_csr(EVP_PKEY *key, const char *const *domains, size_t n, unsigned char **der,
                size_t *der_len, char *err);

#endif

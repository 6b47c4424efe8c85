/*
 * keys.h - the former names of the key functions, now in x509.h, kept
 * only for acme.c and its test until they call cf_x509_* directly; no
 * other file includes this header.  Delete it with their last use.
 */
#ifndef CF_KEYS_H
#define CF_KEYS_H

#include <stddef.h>
#include <string.h>

#include "cf.h"
#include "x509.h"

static inline int cf_keys_generate(const char *type, int bits, EVP_PKEY **out, char *err)
{
    return cf_x509_keygen(type, bits, out, err);
}

static inline int cf_keys_to_pem(EVP_PKEY *key, char **pem, size_t *len, char *err)
{
    return cf_x509_key_pem(key, pem, len, err);
}

static inline void cf_keys_pem_free(char *pem, size_t len)
{
    cf_secure_free(pem, pem && !len ? strlen(pem) : len);
}

static inline int cf_keys_from_pem(const char *pem, size_t len, EVP_PKEY **out, char *err)
{
    return cf_x509_key_read(pem, len, out, err);
}

static inline int cf_keys_describe(EVP_PKEY *key, const char **type, int *bits)
{
    return cf_x509_key_describe(key, type, bits);
}

static inline int cf_keys_csr(EVP_PKEY *key, const char *const *domains, size_t n,
                              unsigned char **der, size_t *der_len, char *err)
{
    return cf_x509_csr(key, domains, n, der, der_len, err);
}

#endif

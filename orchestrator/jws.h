/*
 * jws.h - JSON Web Signatures for ACME (RFC 7515 flattened form, RFC 8555
 * §6.2): ES256 / ES384 for P-256 / P-384 account keys, RS256 for RSA;
 * the JWK and its RFC 7638 thumbprint; key authorizations and DNS-01
 * values; external account binding and key-rollover inner JWS.
 *
 * Every char * result is NUL-terminated and owned by the caller (free());
 * keys are borrowed.  Outputs are NULL on entry and on failure.
 */
#ifndef CF_JWS_H
#define CF_JWS_H

#include <stddef.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "cf.h"

/* "ES256", "ES384" or "RS256" for a supported key, else NULL. */
const char *cf_jws_alg(EVP_PKEY *key);

/* The public JWK of key as a new jansson object (caller json_decref()s):
 * {"crv","kty","x","y"} for EC, {"e","kty","n"} for RSA. */
int cf_jws_jwk(EVP_PKEY *key, json_t **out, char *err);

/* RFC 7638 thumbprint: base64url(SHA-256(JWK with the required members
 * in lexicographic order, no whitespace)). */
int cf_jws_thumbprint(EVP_PKEY *key, char **out, char *err);

/* A flattened JWS as compact JSON text: {"protected","payload","signature"}.
 * The protected header has alg, nonce (omitted when NULL), url and either
 * kid (when kid != NULL) or the key's jwk.  payload NULL means
 * POST-as-GET (empty payload, RFC 8555 §6.3). */
int cf_jws_sign(EVP_PKEY *key, const char *kid, const char *nonce, const char *url,
                const char *payload, char **out, char *err);

/* RFC 8555 §8.1 key authorization "token.thumbprint". */
char *cf_jws_key_authorization(const char *token, const char *thumbprint);

/* RFC 8555 §8.4 TXT record value: base64url(SHA-256(key_authorization)). */
char *cf_jws_dns01_value(const char *key_authorization);

/* RFC 8555 §7.3.4 externalAccountBinding: a JWS with alg HS256, kid
 * eab_kid and url new_account_url over the account key's JWK, MACed with
 * the base64url-decoded hmac_key_b64.  *out is a new jansson object. */
int cf_jws_eab(EVP_PKEY *account_key, const char *eab_kid, const char *hmac_key_b64,
               const char *new_account_url, json_t **out, char *err);

/* RFC 8555 §7.3.5 inner JWS of a key change: signed by new_key, protected
 * header {alg, jwk(new_key), url}, payload {account, oldKey: jwk(old_key)}.
 * The caller signs the result again with the old key and its kid. */
int cf_jws_rollover_inner(EVP_PKEY *new_key, EVP_PKEY *old_key, const char *account_url,
                          const char *key_change_url, char **out, char *err);

/* base64url (padding optional, RFC 4648 §5) decode; *out the caller's.
 * Returns CF_EINVAL for characters outside the alphabet. */
int cf_jws_b64url_decode(const char *in, unsigned char **out, size_t *len);

#endif

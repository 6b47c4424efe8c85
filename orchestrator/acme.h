/*
 * acme.h - asynchronous ACME v2 client (RFC 8555, ARI RFC 9773) on the
 * caller's libuv loop, over cf_http.
 *
 * One struct cf_acme per directory URL and account.  Any number of orders
 * run concurrently on it; they share the directory, the account and the
 * nonce pool (everything runs on the loop thread, so no locking).  Each
 * order is one state struct moved forward by small step functions; which
 * step comes next is decided by the pure functions at the end of this
 * header, from the server's response alone.
 *
 * Account key: <state_dir>/accounts/<directory host>/<sha256(directory
 * url)[0..31]>/private_key.pem (0600, directories 0700, atomic writes),
 * the account URL and object in regr.json next to it.  A missing key is
 * generated (account_key_type/bits) and written before it is first used.
 *
 * Callbacks run exactly once, on the loop; a function that returns an
 * error never calls its callback.
 */
#ifndef CF_ACME_H
#define CF_ACME_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <uv.h>

#include "cf.h"
#include "http.h"

/* Strings are copied by cf_acme_new. */
struct cf_acme_config {
    const char *directory_url;    /* required, http:// or https:// */
    const char *ca_bundle;        /* CA file to trust for the ACME server, or NULL */
    const char *state_dir;        /* required: accounts/ lives here */
    const char *email;            /* contact, or NULL */
    const char *eab_kid;          /* external account binding, both or neither */
    const char *eab_hmac_key;     /* base64url */
    const char *account_key_type; /* "ecdsa" (default) or "rsa" for a new account key */
    int account_key_bits;         /* 0 = default (256 / 2048) */
    long timeout_ms;              /* per HTTP request, 0 = 30 s */
};

struct cf_acme;

/* Set up a client; no network I/O until the first operation.  http and
 * loop are borrowed and must outlive the client.  *out is the caller's,
 * released with cf_acme_free. */
int cf_acme_new(uv_loop_t *loop, cf_http *http, const struct cf_acme_config *c,
                struct cf_acme **out, char *err);

/* Cancel every operation (their callbacks run with CF_ECANCELED once
 * their in-flight request or solver call returns; solver cleanups still
 * run) and release the client when the last one is gone.  Keep running
 * the loop (or free the cf_http) afterwards so that happens. */
void cf_acme_free(struct cf_acme *a);

/* The account URL once known (after any successful order or
 * cf_acme_account), else NULL; owned by a. */
const char *cf_acme_account_url(const struct cf_acme *a);

/* What a solver must publish.  Strings are owned by the client and valid
 * until the cleanup call's done has run; copy what you keep longer. */
struct cf_acme_challenge {
    const char *type;              /* "http-01" or "dns-01" */
    const char *identifier;        /* domain, without "*." for wildcards */
    const char *token;             /* checked: ^[A-Za-z0-9_-]{22,}$ */
    const char *key_authorization; /* HTTP-01 file content */
    const char *dns_txt_value;     /* DNS-01 TXT value for _acme-challenge.<identifier> */
};

typedef void (*cf_acme_solver_done)(void *ctx, int status, const char *err);

/* Supplied by the caller.  present() publishes the challenge (HTTP-01: the
 * token on every host of the certificate, checked over HTTP before done
 * is called with 0) and calls done(ctx, 0 or CF_E*, message) exactly
 * once, possibly from inside present().  cleanup() removes it again; the
 * client calls it for every challenge it presented, also when the order
 * failed, and waits for its done before it reports. */
struct cf_acme_solver {
    void (*present)(void *solver_arg, const struct cf_acme_challenge *ch, cf_acme_solver_done done,
                    void *ctx);
    void (*cleanup)(void *solver_arg, const struct cf_acme_challenge *ch, cf_acme_solver_done done,
                    void *ctx);
    void *arg;
};

/* Everything is copied except cert_key (reference-counted, so the caller
 * may free its own reference) and solver->arg (must stay valid until the
 * order's callback). */
struct cf_acme_order_req {
    const char *const *domains; /* first one becomes the CN */
    size_t n_domains;
    const char *challenge_type; /* "http-01" (default) or "dns-01"; wildcards need dns-01 */
    EVP_PKEY *cert_key;         /* the certificate's key, signs the CSR */
    /* ARI certID of the certificate this one replaces, or NULL.  It is
     * sent only when cf_plan_replaces() allows it for this directory and
     * account, given the directory URL and account URL that certificate
     * was issued by (replaces_server, replaces_account; NULL = unknown,
     * which never allows it).  A 409 alreadyReplaced answer to newOrder
     * places the order once more without it. */
    const char *replaces;
    const char *replaces_server;
    const char *replaces_account;
    const char *preferred_chain; /* issuer CN of the top of the preferred chain, or NULL */
    const struct cf_acme_solver *solver;
    /* An order URL journaled by an earlier run against the same account
     * and directory, or NULL.  It is fetched (POST-as-GET) first and
     * carried on from its state: valid -> download (no new order), ready
     * -> finalize with cert_key (the caller guarantees it is the key the
     * earlier run used), processing -> poll, pending -> authorizations.
     * When it cannot be used (404, any other 4xx such as another
     * account's 401/403, invalid, expired, identifiers other than
     * domains, unknown status, or a server that keeps failing) a new order
     * is placed instead; a debug line says why.  The resume alone never
     * fails the order. */
    const char *resume_url;
    /* Called once, with the order callback's arg, as soon as the order
     * URL is known (newOrder answered, or the resumed order is kept):
     * before any challenge is presented and before finalize, so the
     * caller can journal it.  order_url is valid only during the call.
     * May be NULL. */
    void (*created)(void *arg, const char *order_url);
};

/* Owned by the client and freed when the callback returns; the callback
 * may keep a string by taking it and setting the field to NULL. */
struct cf_acme_order_result {
    char *fullchain_pem; /* leaf + intermediates */
    char *cert_pem;      /* leaf only */
    char *chain_pem;     /* intermediates only */
    char *error;         /* with status != 0: "acme: <type> for '<domain>': <detail>" etc. */
    char *cert_url;
    char *order_url; /* also on failure, once the order URL is known */
    /* CF_ELIMIT from newOrder: when the CA's Retry-After says to come
     * back (epoch seconds), 0 when it gave none */
    int64_t retry_at;
};

typedef void (*cf_acme_order_cb)(int status, struct cf_acme_order_result *res, void *arg);

/* Issue a certificate: account (created or looked up on first use), new
 * order (or the resumed one, see resume_url), authorizations (valid ones
 * are skipped), challenges through the solver, polling with backoff
 * honouring Retry-After, finalize with a CSR, polling until valid,
 * download and chain selection.  cb gets 0 and the PEMs, or a CF_E* with
 * res->error naming the domain and the ACME problem (CF_EACME), bad
 * server data (CF_EPROTO), a transport failure, or CF_ELIMIT for
 * rateLimited.
 *
 * Transient failures (HTTP 500, 502, 503, 504, a timeout or a broken
 * connection) of newOrder, of the order and authorization polls, of
 * finalize and of the download are retried up to CF_ACME_TRANSIENT_TRIES
 * attempts in all, waiting cf_acme_retry_delay_ms() in between; the final
 * error then names the URL, the HTTP status and the number of attempts.
 * A 4xx answer to newOrder is final (429 aside, see rateLimited). */
int cf_acme_order(struct cf_acme *a, const struct cf_acme_order_req *r, cf_acme_order_cb cb,
                  void *arg, char *err);

/* Make sure the account exists (create or look up) and call cb. */
int cf_acme_account(struct cf_acme *a, void (*cb)(int status, const char *err, void *arg),
                    void *arg);

/* What a renewalInfo answer said (RFC 9773 §4.2, §4.3).  Valid only
 * during the callback. */
struct cf_acme_ari {
    int64_t start, end;          /* suggestedWindow, Unix seconds (status 0 only) */
    int64_t retry_at;            /* Retry-After as Unix seconds; 0 = none given */
    const char *explanation_url; /* https URL the CA wants shown, or NULL */
};
typedef void (*cf_acme_ari_cb)(int status, const struct cf_acme_ari *ari, const char *err,
                               void *arg);

/* RFC 9773: the suggested renewal window of cert_pem.  cb gets
 * CF_ENOENT when the directory has no renewalInfo, another CF_E* and err
 * saying why when the query failed (ari->retry_at may still be set).
 * The caller must not ask about an expired certificate (§4.3).
 * Returns CF_EINVAL without calling cb when cert_pem has no AKI/serial. */
int cf_acme_renewal_info(struct cf_acme *a, const char *cert_pem, cf_acme_ari_cb cb, void *arg,
                         char *err);

/* RFC 8555 §7.3.5 key rollover: generate a new account key of key_type /
 * bits, have the server switch to it, then replace private_key.pem
 * (the new key is kept in private_key.pem.next while the request is in
 * flight).  Run it without orders in flight. */
int cf_acme_rollover(struct cf_acme *a, const char *key_type, int bits,
                     void (*cb)(int status, const char *err, void *arg), void *arg);

/* ---- pure functions, no I/O (unit-tested) ---- */

/* 1 when token is base64url of at least 128 bits (^[A-Za-z0-9_-]{22,}$,
 * at most 256 characters), so it can become part of a path or URL. */
int cf_acme_token_valid(const char *token);

/* "acme: <type> for '<identifier>': <detail>" for an RFC 7807 problem
 * document, subproblems appended as "; <type> for '<value>': <detail>".
 * identifier is used when the problem names none (may be NULL).  Control
 * characters from the server are replaced.  Caller frees. */
char *cf_acme_problem_message(const json_t *problem, const char *identifier);

/* Parse a Retry-After value (delta seconds or HTTP-date) into a delay in
 * milliseconds from now_ms (never negative).  CF_EINVAL when unparsable. */
int cf_acme_parse_retry_after(const char *value, int64_t now_ms, int64_t *delay_ms);

/* RFC 3339 timestamp ("2025-01-02T03:04:05Z", fractions and offsets
 * allowed) to Unix seconds. */
int cf_acme_parse_time(const char *s, int64_t *out);

/* Delay before poll number attempt (0-based): 250 ms doubling to 5 s, or
 * the server's Retry-After when longer, capped at 60 s. */
int64_t cf_acme_poll_delay_ms(int attempt, int64_t retry_after_ms);

/* Attempts in all for a request that keeps failing transiently. */
#define CF_ACME_TRANSIENT_TRIES 5

/* 1 when a request that ended with transport status (0 = a response
 * arrived) and HTTP status http_status is worth sending again: a timeout
 * or broken connection, or HTTP 500, 502, 503 or 504. */
int cf_acme_transient(int status, long http_status);

/* Delay before resending after failed attempt number attempt (1-based):
 * 1 s doubling, or the server's Retry-After when longer, capped at 60 s. */
int64_t cf_acme_retry_delay_ms(int attempt, int64_t retry_after_ms);

/* Whether an order object fetched from a journaled URL can be carried on
 * for domains (compared as a set, case-insensitively) at now (Unix
 * seconds): 1 = yes; 0 = no, with the reason in why (CF_ERRLEN). */
int cf_acme_resume_usable(const json_t *order, const char *const *domains, size_t n_domains,
                          int64_t now, char *why);

enum cf_acme_step {
    CF_ACME_STEP_AUTHORIZE, /* work through the authorizations */
    CF_ACME_STEP_FINALIZE,  /* send the CSR */
    CF_ACME_STEP_POLL,      /* POST-as-GET the order again after a delay */
    CF_ACME_STEP_DOWNLOAD,  /* fetch the certificate */
    CF_ACME_STEP_FAIL,      /* invalid, or a status we do not know */
};
/* Next step for an order object with status order_status, given whether
 * its authorizations have been worked through and the CSR was sent. */
enum cf_acme_step cf_acme_next_step(const char *order_status, int authorized, int finalized);

enum cf_acme_authz_step {
    CF_ACME_AUTHZ_DONE,  /* valid: nothing to do (also reused authorizations) */
    CF_ACME_AUTHZ_SOLVE, /* present a challenge and tell the server */
    CF_ACME_AUTHZ_POLL,  /* the server is validating: ask again later */
    CF_ACME_AUTHZ_FAIL,  /* invalid, expired, revoked, deactivated or unknown */
};
enum cf_acme_authz_step cf_acme_authz_next(const char *authz_status, int challenge_posted);

/* Index of the chain (PEM, leaf first) whose topmost certificate's issuer
 * CN equals preferred; 0 when preferred is NULL or nothing matches. */
size_t cf_acme_pick_chain(const char *const *chains, size_t n, const char *preferred);

#endif

/*
 * acme.c - asynchronous ACME v2 client (see acme.h).
 *
 * Layers, bottom up:
 *   - requests: one struct acme_req per logical request; signs with a
 *     nonce from the shared pool (HEAD newNonce when empty), keeps the
 *     nonce of every response, retries badNonce with a fresh nonce
 *     (bounded), transient failures (5xx, transport) of the requests
 *     that ask for it with backoff (bounded), and 429/503 after
 *     Retry-After (bounded), then hands the raw response to the step
 *     that asked;
 *   - readiness: the directory and the account are fetched once and
 *     shared; operations wait in a queue until they are ready;
 *   - orders: one struct order, its authorizations each a small state
 *     machine of their own running concurrently; the next step comes from
 *     cf_acme_next_step()/cf_acme_authz_next().
 * Waiting is a uv_timer_t owned by a struct delay that is freed in its
 * close callback.
 */
#include "cf.h"
#include "acme.h"
#include "jws.h"
#include "plan.h"
#include "x509.h"
#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#define ACME_MAX_BODY       (256 * 1024)
#define ACME_MAX_CERT_BODY  (1024 * 1024)
#define ACME_BADNONCE_TRIES 100 /* pebble can reject 90% of good nonces */
#define ACME_BUSY_TRIES     3   /* 429 / 503 retried after Retry-After */
#define ACME_BUSY_MAX_MS    120000
#define ACME_MAX_POLLS      120
#define ACME_NONCE_POOL     32
#define ACME_MAX_ALTERNATES 8
#define ACME_MAX_URL        2048

/* ------------------------------------------------------------------ */
/* pure functions                                                      */

int cf_acme_token_valid(const char *t)
{
    if (!t)
        return 0;
    size_t n = 0;
    for (const char *p = t; *p; p++, n++) {
        unsigned char c = (unsigned char)*p;
        if (!(isalnum(c) && c < 128) && c != '-' && c != '_')
            return 0;
    }
    return n >= 22 && n <= 256;
}

/* Copy server text into b, replacing control characters and capping it,
 * so a hostile detail cannot forge log lines or flood a report. */
static void put_clean(struct cf_buf *b, const char *s, size_t max)
{
    size_t n = 0;
    for (; s && *s && n < max; s++, n++) {
        unsigned char c = (unsigned char)*s;
        char ch = (c < 0x20 || c == 0x7f) ? ' ' : (char)c;
        cf_buf_append(b, &ch, 1);
    }
    if (s && *s)
        cf_buf_puts(b, "...");
}

static const char *jstr(const json_t *o, const char *key)
{
    const json_t *v = json_is_object(o) ? json_object_get(o, key) : NULL;
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static void put_problem(struct cf_buf *b, const json_t *p, const char *identifier)
{
    const char *type = jstr(p, "type");
    const char *detail = jstr(p, "detail");
    const json_t *id = json_object_get(p, "identifier");
    const char *idv = jstr(id, "value");
    if (idv)
        identifier = idv;
    put_clean(b, type ? type : "problem without type", 120);
    if (identifier) {
        cf_buf_puts(b, " for '");
        put_clean(b, identifier, 260);
        cf_buf_puts(b, "'");
    }
    if (detail) {
        cf_buf_puts(b, ": ");
        put_clean(b, detail, 400);
    }
}

char *cf_acme_problem_message(const json_t *problem, const char *identifier)
{
    struct cf_buf b = CF_BUF_INIT;
    cf_buf_puts(&b, "acme: ");
    put_problem(&b, problem, identifier);
    const json_t *subs = json_object_get(problem, "subproblems");
    if (json_is_array(subs)) {
        size_t i;
        const json_t *sp;
        json_array_foreach(subs, i, sp)
        {
            if (i >= 10) {
                cf_buf_puts(&b, "; ...");
                break;
            }
            cf_buf_puts(&b, "; ");
            put_problem(&b, sp, NULL);
        }
    }
    return cf_buf_detach(&b, NULL);
}

int cf_acme_parse_retry_after(const char *value, int64_t now_ms, int64_t *delay_ms)
{
    *delay_ms = 0;
    if (!value)
        return CF_EINVAL;
    while (*value == ' ')
        value++;
    if (isdigit((unsigned char)*value)) {
        char *end;
        errno = 0;
        long long s = strtoll(value, &end, 10);
        while (*end == ' ')
            end++;
        if (*end || errno || s < 0 || s > 86400LL * 365)
            return CF_EINVAL;
        *delay_ms = s * 1000;
        return 0;
    }
    time_t t = curl_getdate(value, NULL);
    if (t == (time_t)-1)
        return CF_EINVAL;
    int64_t d = (int64_t)t * 1000 - now_ms;
    *delay_ms = d > 0 ? d : 0;
    return 0;
}

int cf_acme_parse_time(const char *s, int64_t *out)
{
    *out = 0;
    if (!s)
        return CF_EINVAL;
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!p)
        return CF_EINVAL;
    if (*p == '.')
        for (p++; isdigit((unsigned char)*p); p++)
            ;
    long off = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        /* exactly "hh:mm": a shorter offset must not move p past the end */
        if (!isdigit((unsigned char)p[1]) || !isdigit((unsigned char)p[2]) || p[3] != ':' ||
            !isdigit((unsigned char)p[4]) || !isdigit((unsigned char)p[5]))
            return CF_EINVAL;
        int hh = (p[1] - '0') * 10 + (p[2] - '0'), mm = (p[4] - '0') * 10 + (p[5] - '0');
        if (hh > 23 || mm > 59)
            return CF_EINVAL;
        off = (hh * 3600L + mm * 60L) * (*p == '+' ? 1 : -1);
        p += 6;
    } else {
        return CF_EINVAL;
    }
    if (*p)
        return CF_EINVAL;
    *out = (int64_t)timegm(&tm) - off;
    return 0;
}

int64_t cf_acme_poll_delay_ms(int attempt, int64_t retry_after_ms)
{
    int64_t d = 250;
    for (int i = 0; i < attempt && d < 5000; i++)
        d *= 2;
    if (d > 5000)
        d = 5000;
    if (retry_after_ms > d)
        d = retry_after_ms;
    return d > 60000 ? 60000 : d;
}

int cf_acme_transient(int status, long http_status)
{
    if (status == CF_ETIMEDOUT || status == CF_ECONNECT)
        return 1;
    /* RFC 8555 §6.7 leaves 5xx to HTTP: 500 serverInternal, and the
     * 502/503/504 a load balancer in front of the CA answers with */
    return status == 0 &&
           (http_status == 500 || http_status == 502 || http_status == 503 || http_status == 504);
}

int64_t cf_acme_retry_delay_ms(int attempt, int64_t retry_after_ms)
{
    int64_t d = 1000;
    for (int i = 1; i < attempt && d < 60000; i++)
        d *= 2;
    if (retry_after_ms > d)
        d = retry_after_ms;
    return d > 60000 ? 60000 : d;
}

/* 1 when the order's identifiers are exactly the dns names in domains. */
static int identifiers_match(const json_t *ids, const char *const *domains, size_t n)
{
    if (!json_is_array(ids) || json_array_size(ids) != n)
        return 0;
    size_t i;
    const json_t *id;
    json_array_foreach(ids, i, id)
    {
        const char *t = jstr(id, "type"), *v = jstr(id, "value");
        if (!t || !v || strcmp(t, "dns") != 0)
            return 0;
        size_t k = 0;
        while (k < n && strcasecmp(domains[k], v) != 0)
            k++;
        if (k == n)
            return 0;
    }
    /* and the other way round, so a repeated identifier cannot hide a
     * missing one */
    for (size_t k = 0; k < n; k++) {
        size_t hits = 0;
        json_array_foreach(ids, i, id)
        {
            if (!strcasecmp(domains[k], jstr(id, "value")))
                hits++;
        }
        if (hits == 0)
            return 0;
    }
    return 1;
}

int cf_acme_resume_usable(const json_t *order, const char *const *domains, size_t n_domains,
                          int64_t now, char *why)
{
    const char *st = jstr(order, "status"), *exp = jstr(order, "expires");
    int64_t t;
    if (!st) {
        cf_errf(why, "the order has no status");
        return 0;
    }
    if (!strcmp(st, "invalid")) {
        cf_errf(why, "the order is invalid");
        return 0;
    }
    if (strcmp(st, "pending") != 0 && strcmp(st, "ready") != 0 && strcmp(st, "processing") != 0 &&
        strcmp(st, "valid") != 0) {
        cf_errf(why, "the order has unknown status '%.40s'", st);
        for (char *p = why; *p; p++) /* server text going to a log line */
            if ((unsigned char)*p < 0x20 || *p == 0x7f)
                *p = ' ';
        return 0;
    }
    /* RFC 8555 §7.1.3: after expires the server considers the order invalid */
    if (exp && cf_acme_parse_time(exp, &t) == 0 && t <= now) {
        cf_errf(why, "the order expired at %.40s", exp);
        return 0;
    }
    if (!identifiers_match(json_object_get(order, "identifiers"), domains, n_domains)) {
        cf_errf(why, "the order is for other identifiers than requested");
        return 0;
    }
    return 1;
}

enum cf_acme_step cf_acme_next_step(const char *s, int authorized, int finalized)
{
    if (!s)
        return CF_ACME_STEP_FAIL;
    if (!strcmp(s, "pending"))
        return authorized ? CF_ACME_STEP_POLL : CF_ACME_STEP_AUTHORIZE;
    if (!strcmp(s, "ready"))
        return finalized ? CF_ACME_STEP_POLL : CF_ACME_STEP_FINALIZE;
    if (!strcmp(s, "processing"))
        return CF_ACME_STEP_POLL;
    if (!strcmp(s, "valid"))
        return CF_ACME_STEP_DOWNLOAD;
    return CF_ACME_STEP_FAIL; /* invalid, or something we do not know */
}

enum cf_acme_authz_step cf_acme_authz_next(const char *s, int posted)
{
    if (!s)
        return CF_ACME_AUTHZ_FAIL;
    if (!strcmp(s, "valid"))
        return CF_ACME_AUTHZ_DONE;
    if (!strcmp(s, "pending"))
        return posted ? CF_ACME_AUTHZ_POLL : CF_ACME_AUTHZ_SOLVE;
    return CF_ACME_AUTHZ_FAIL;
}

/* Issuer CN of the last certificate in a PEM chain, into cn. */
static int top_issuer_cn(const char *pem, char *cn, size_t cnlen)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    X509 *last = NULL, *x;
    cn[0] = '\0';
    if (!b)
        return CF_ENOMEM;
    while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL))) {
        X509_free(last);
        last = x;
    }
    BIO_free(b);
    ERR_clear_error(); /* reading past the last PEM leaves an error */
    int rc = CF_EINVAL;
    if (last) {
        X509_NAME *n = X509_get_issuer_name(last);
        if (X509_NAME_get_text_by_NID(n, NID_commonName, cn, (int)cnlen) > 0)
            rc = 0;
        X509_free(last);
    }
    return rc;
}

size_t cf_acme_pick_chain(const char *const *chains, size_t n, const char *preferred)
{
    if (!preferred || !*preferred)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char cn[256];
        if (chains[i] && top_issuer_cn(chains[i], cn, sizeof cn) == 0 && !strcmp(cn, preferred))
            return i;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* client state                                                        */

enum ready_state { RS_NONE, RS_LOADING, RS_READY };

typedef void (*ready_fn)(void *ctx, int status, const char *err);

struct waiter {
    int need_account;
    ready_fn fn;
    void *ctx;
    struct waiter *next;
};

struct delay {
    uv_timer_t timer; /* first: the close callback casts back */
    struct cf_acme *a;
    void (*fn)(void *ctx);
    void *ctx;
    struct delay *prev, *next;
};

struct cf_acme {
    uv_loop_t *loop;
    cf_http *http;
    char *directory_url, *ca_bundle, *state_dir, *email, *eab_kid, *eab_hmac_key, *key_type;
    int key_bits;
    long timeout_ms;
    int allow_http; /* the directory itself is http:// (test servers) */
    char *account_dir;
    /* directory */
    enum ready_state dir_state, acct_state;
    char *new_nonce, *new_account, *new_order, *key_change, *renewal_info;
    int eab_required;
    /* account */
    EVP_PKEY *account_key;
    char *kid;
    char *thumbprint;
    /* nonce pool, newest last */
    char *nonces[ACME_NONCE_POOL];
    int n_nonces;
    struct waiter *waiters;
    struct delay *delays;
    int refs; /* requests, delays and operations outstanding */
    int closing;
};

static void acme_release(struct cf_acme *a)
{
    free(a->directory_url);
    free(a->ca_bundle);
    free(a->state_dir);
    free(a->email);
    free(a->eab_kid);
    if (a->eab_hmac_key)
        cf_secure_free(a->eab_hmac_key, strlen(a->eab_hmac_key));
    free(a->key_type);
    free(a->account_dir);
    free(a->new_nonce);
    free(a->new_account);
    free(a->new_order);
    free(a->key_change);
    free(a->renewal_info);
    EVP_PKEY_free(a->account_key);
    free(a->kid);
    free(a->thumbprint);
    for (int i = 0; i < a->n_nonces; i++)
        free(a->nonces[i]);
    free(a);
}

static void unref(struct cf_acme *a)
{
    a->refs--;
    if (a->closing && a->refs == 0)
        acme_release(a);
}

const char *cf_acme_account_url(const struct cf_acme *a)
{
    return a && a->acct_state == RS_READY ? a->kid : NULL;
}

/* Server-supplied URLs must be https (http only when the directory is),
 * short, and free of whitespace and control characters. */
static int url_ok(const struct cf_acme *a, const char *u)
{
    if (!u || strlen(u) > ACME_MAX_URL)
        return 0;
    if (strncmp(u, "https://", 8) != 0 && !(a->allow_http && strncmp(u, "http://", 7) == 0))
        return 0;
    for (const char *p = u; *p; p++)
        if ((unsigned char)*p <= 0x20 || *p == 0x7f)
            return 0;
    return 1;
}

/* ---- delays ---- */

static void delay_closed(uv_handle_t *h)
{
    struct delay *d = (struct delay *)h;
    struct cf_acme *a = d->a;
    free(d);
    unref(a);
}

static void delay_fire(struct delay *d)
{
    struct cf_acme *a = d->a;
    if (d->prev)
        d->prev->next = d->next;
    else
        a->delays = d->next;
    if (d->next)
        d->next->prev = d->prev;
    uv_timer_stop(&d->timer);
    uv_close((uv_handle_t *)&d->timer, delay_closed);
    d->fn(d->ctx);
}

static void on_delay(uv_timer_t *t)
{
    delay_fire((struct delay *)t);
}

/* Call fn(ctx) after ms on the loop (at once when the client closes). */
static void delay_start(struct cf_acme *a, int64_t ms, void (*fn)(void *), void *ctx)
{
    struct delay *d = cf_xcalloc(1, sizeof *d);
    d->a = a;
    d->fn = fn;
    d->ctx = ctx;
    uv_timer_init(a->loop, &d->timer);
    a->refs++;
    d->next = a->delays;
    if (a->delays)
        a->delays->prev = d;
    a->delays = d;
    uv_timer_start(&d->timer, on_delay, (uint64_t)(ms > 0 ? ms : 0), 0);
}

/* ---- requests ---- */

typedef void (*req_cb)(void *ctx, int status, struct cf_http_response *resp, const char *err);

struct acme_req {
    struct cf_acme *a;
    char *url;
    char *payload; /* NULL = POST-as-GET */
    int is_signed; /* 0 = plain GET */
    int use_jwk;   /* newAccount: jwk instead of kid */
    const char *accept;
    size_t max_body;
    int bad_nonce_tries, busy_tries;
    int retry_transient; /* resend on 5xx / transport failure (idempotent enough) */
    int transient_fails; /* attempts that failed that way so far */
    int *attempts_out;   /* if set, the number of attempts made, set before cb */
    req_cb cb;
    void *ctx;
};

static void req_send(struct acme_req *r);

static void req_done(struct acme_req *r, int status, struct cf_http_response *resp, const char *err)
{
    struct cf_acme *a = r->a;
    if (r->attempts_out)
        *r->attempts_out = r->transient_fails + 1;
    r->cb(r->ctx, status, resp, err);
    free(r->url);
    free(r->payload);
    free(r);
    unref(a);
}

static void nonce_take(struct cf_acme *a, struct cf_http_response *resp)
{
    const char *n = cf_http_header(resp, "Replay-Nonce", 0);
    /* nonces are base64url (RFC 8555 §6.5.1); anything else is dropped */
    if (!n || !*n || strlen(n) > 256 ||
        strspn(n, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") != strlen(n))
        return;
    if (a->n_nonces == ACME_NONCE_POOL) {
        free(a->nonces[0]);
        memmove(a->nonces, a->nonces + 1, (ACME_NONCE_POOL - 1) * sizeof a->nonces[0]);
        a->n_nonces--;
    }
    a->nonces[a->n_nonces++] = cf_strdup(n);
}

static int problem_type_is(struct cf_http_response *resp, const char *suffix)
{
    json_t *j = json_loadb(resp->body, resp->body_len, 0, NULL);
    const char *t = jstr(j, "type");
    int yes = t && strlen(t) >= strlen(suffix) && !strcmp(t + strlen(t) - strlen(suffix), suffix);
    json_decref(j);
    return yes;
}

static void req_resend(void *ctx)
{
    req_send(ctx);
}

static int64_t retry_after_of(struct cf_http_response *resp)
{
    int64_t ms = 0;
    const char *ra = cf_http_header(resp, "Retry-After", 0);
    if (ra && cf_acme_parse_retry_after(ra, cf_now_ms(), &ms) != 0)
        ms = 0;
    return ms;
}

/* A transient failure of a request that may be resent: resend it after a
 * backoff and return 1, or, once CF_ACME_TRANSIENT_TRIES attempts have
 * failed, end it with an error naming the URL, the HTTP status and the
 * attempts and return 1.  0 when the failure is not for this function. */
static int req_transient(struct acme_req *r, int status, struct cf_http_response *resp)
{
    long http = status ? 0 : resp->status;
    if (!r->retry_transient || !cf_acme_transient(status, http))
        return 0;
    r->transient_fails++;
    if (r->transient_fails < CF_ACME_TRANSIENT_TRIES) {
        int64_t ms = cf_acme_retry_delay_ms(r->transient_fails, status ? 0 : retry_after_of(resp));
        if (status)
            cf_info("acme: '%s' failed (%s), attempt %d of %d, retrying in %lld ms", r->url,
                    resp->error, r->transient_fails, CF_ACME_TRANSIENT_TRIES, (long long)ms);
        else
            cf_info("acme: HTTP %ld from '%s', attempt %d of %d, retrying in %lld ms", http, r->url,
                    r->transient_fails, CF_ACME_TRANSIENT_TRIES, (long long)ms);
        delay_start(r->a, ms, req_resend, r);
        return 1;
    }
    struct cf_buf b = CF_BUF_INIT;
    if (status) {
        cf_buf_printf(&b, "'%s' failed %d times, last: ", r->url, r->transient_fails);
        put_clean(&b, resp->error, 200);
        req_done(r, status, NULL, b.data);
    } else {
        cf_buf_printf(&b, "HTTP %ld from '%s' after %d attempts", http, r->url, r->transient_fails);
        json_t *j = json_loadb(resp->body, resp->body_len, 0, NULL);
        if (json_is_object(j) && jstr(j, "type")) {
            cf_buf_puts(&b, ": ");
            put_problem(&b, j, NULL);
        }
        json_decref(j);
        req_done(r, CF_EACME, NULL, b.data);
    }
    cf_buf_release(&b);
    return 1;
}

static void on_req_response(int status, struct cf_http_response *resp, void *arg)
{
    struct acme_req *r = arg;
    struct cf_acme *a = r->a;
    if (status) {
        if (!req_transient(r, status, resp))
            req_done(r, status, NULL, resp->error);
        return;
    }
    nonce_take(a, resp);
    if (r->is_signed && resp->status == 400 && problem_type_is(resp, ":badNonce") &&
        r->bad_nonce_tries < ACME_BADNONCE_TRIES) {
        r->bad_nonce_tries++;
        cf_debug("acme: badNonce from '%s', retry %d", r->url, r->bad_nonce_tries);
        req_send(r);
        return;
    }
    if (req_transient(r, 0, resp))
        return;
    if ((resp->status == 429 || resp->status == 503) && r->busy_tries < ACME_BUSY_TRIES) {
        int64_t ms;
        const char *ra = cf_http_header(resp, "Retry-After", 0);
        if (ra && cf_acme_parse_retry_after(ra, cf_now_ms(), &ms) == 0 && ms <= ACME_BUSY_MAX_MS) {
            r->busy_tries++;
            cf_info("acme: HTTP %ld from '%s', retrying in %lld ms", resp->status, r->url,
                    (long long)ms);
            delay_start(a, ms, req_resend, r);
            return;
        }
    }
    req_done(r, 0, resp, NULL);
}

static void on_nonce(int status, struct cf_http_response *resp, void *arg)
{
    struct acme_req *r = arg;
    if (status) {
        if (!req_transient(r, status, resp))
            req_done(r, status, NULL, resp->error);
        return;
    }
    nonce_take(r->a, resp);
    if (r->a->n_nonces == 0) {
        char msg[CF_ERRLEN];
        snprintf(msg, sizeof msg, "acme: no Replay-Nonce from '%s' (HTTP %ld)", r->a->new_nonce,
                 resp->status);
        req_done(r, CF_EPROTO, NULL, msg);
        return;
    }
    req_send(r);
}

static void req_send(struct acme_req *r)
{
    struct cf_acme *a = r->a;
    char err[CF_ERRLEN] = "";
    if (a->closing) {
        req_done(r, CF_ECANCELED, NULL, "acme: canceled");
        return;
    }
    struct cf_http_request hr = {.url = r->url,
                                 .ca_bundle = a->ca_bundle,
                                 .timeout_ms = a->timeout_ms,
                                 .max_body = r->max_body ? r->max_body : ACME_MAX_BODY};
    char accept[128];
    const char *hdrs[3] = {NULL, NULL, NULL};
    int nh = 0;
    if (r->accept) {
        snprintf(accept, sizeof accept, "Accept: %s", r->accept);
        hdrs[nh++] = accept;
    }
    int rc;
    if (!r->is_signed) {
        hr.method = "GET";
        hr.headers = hdrs;
        rc = cf_http_request(a->http, &hr, on_req_response, r);
    } else if (a->n_nonces == 0) {
        struct cf_http_request nr = hr;
        nr.method = "HEAD";
        nr.url = a->new_nonce;
        rc = cf_http_request(a->http, &nr, on_nonce, r);
    } else {
        char *nonce = a->nonces[--a->n_nonces];
        char *jws = NULL;
        rc = cf_jws_sign(a->account_key, r->use_jwk ? NULL : a->kid, nonce, r->url, r->payload,
                         &jws, err);
        free(nonce);
        if (rc) {
            req_done(r, rc, NULL, err);
            return;
        }
        hdrs[nh++] = "Content-Type: application/jose+json";
        hr.method = "POST";
        hr.body = jws;
        hr.body_len = strlen(jws);
        hr.headers = hdrs;
        rc = cf_http_request(a->http, &hr, on_req_response, r);
        free(jws); /* cf_http copies the body */
    }
    if (rc) {
        snprintf(err, sizeof err, "acme: cannot send request to '%s': %s", r->url, cf_strerror(rc));
        req_done(r, rc, NULL, err);
    }
}

static struct acme_req *req_new(struct cf_acme *a, const char *url, req_cb cb, void *ctx)
{
    struct acme_req *r = cf_xcalloc(1, sizeof *r);
    r->a = a;
    r->url = cf_strdup(url);
    r->cb = cb;
    r->ctx = ctx;
    a->refs++;
    return r;
}

/* Start a signed request (payload NULL = POST-as-GET, copied otherwise);
 * cb runs exactly once (status 0 = a response of any HTTP status).  With
 * retry, transient failures are resent (see req_transient). */
static void post_ex(struct cf_acme *a, const char *url, const char *payload, int retry,
                    int *attempts_out, req_cb cb, void *ctx)
{
    struct acme_req *r = req_new(a, url, cb, ctx);
    r->payload = cf_strdup(payload);
    r->is_signed = 1;
    r->retry_transient = retry;
    r->attempts_out = attempts_out;
    req_send(r);
}

static void post(struct cf_acme *a, const char *url, const char *payload, req_cb cb, void *ctx)
{
    post_ex(a, url, payload, 0, NULL, cb, ctx);
}

static void post_retry(struct cf_acme *a, const char *url, const char *payload, req_cb cb,
                       void *ctx)
{
    post_ex(a, url, payload, 1, NULL, cb, ctx);
}

/* Interpret a response as a JSON object.  HTTP >= 400 becomes the problem
 * message (CF_EACME, CF_ELIMIT for rateLimited); bad JSON or an unexpected
 * status CF_EPROTO.  *msg (caller frees) set on failure. */
static int resp_json(struct cf_http_response *resp, const char *url, const char *identifier,
                     json_t **out, char **msg)
{
    *out = NULL;
    *msg = NULL;
    json_error_t je;
    json_t *j = json_loadb(resp->body, resp->body_len, 0, &je);
    if (resp->status >= 400) {
        if (json_is_object(j) && jstr(j, "type")) {
            *msg = cf_acme_problem_message(j, identifier);
            const char *t = jstr(j, "type");
            int rate = strstr(t, ":rateLimited") != NULL;
            json_decref(j);
            return rate ? CF_ELIMIT : CF_EACME;
        }
        json_decref(j);
        *msg = cf_asprintf("acme: HTTP %ld from '%s'%s%s%s", resp->status, url,
                           identifier ? " for '" : "", identifier ? identifier : "",
                           identifier ? "'" : "");
        return CF_EACME;
    }
    if (resp->status < 200 || resp->status > 299) {
        json_decref(j);
        *msg = cf_asprintf("acme: unexpected HTTP %ld from '%s'", resp->status, url);
        return CF_EPROTO;
    }
    if (!j) {
        *msg = cf_asprintf("acme: invalid JSON from '%s': %s at line %d", url, je.text, je.line);
        return CF_EPROTO;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        *msg = cf_asprintf("acme: response from '%s' is not a JSON object", url);
        return CF_EPROTO;
    }
    *out = j;
    return 0;
}

/* ---- directory and account, shared by every operation ---- */

static void pump(struct cf_acme *a);

static void fail_waiters(struct cf_acme *a, int only_account, int status, const char *err)
{
    struct waiter **pp = &a->waiters, *mine = NULL, **tail = &mine;
    while (*pp) {
        struct waiter *w = *pp;
        if (only_account && !w->need_account) {
            pp = &w->next;
            continue;
        }
        *pp = w->next;
        w->next = NULL;
        *tail = w;
        tail = &w->next;
    }
    while (mine) {
        struct waiter *w = mine;
        mine = w->next;
        w->fn(w->ctx, status, err);
        free(w);
    }
}

static void ensure(struct cf_acme *a, int need_account, ready_fn fn, void *ctx)
{
    struct waiter *w = cf_xcalloc(1, sizeof *w);
    w->need_account = need_account;
    w->fn = fn;
    w->ctx = ctx;
    w->next = a->waiters;
    a->waiters = w;
    pump(a);
}

static void on_directory(void *ctx, int status, struct cf_http_response *resp, const char *err)
{
    struct cf_acme *a = ctx;
    json_t *j = NULL;
    char *msg = NULL;
    if (status) {
        msg = cf_asprintf("acme: cannot fetch directory: %s", err);
        goto fail;
    }
    if ((status = resp_json(resp, a->directory_url, NULL, &j, &msg)) != 0)
        goto fail;
    const char *nn = jstr(j, "newNonce"), *na = jstr(j, "newAccount"), *no = jstr(j, "newOrder");
    const char *kc = jstr(j, "keyChange"), *ri = jstr(j, "renewalInfo");
    if (!url_ok(a, nn) || !url_ok(a, na) || !url_ok(a, no)) {
        status = CF_EPROTO;
        msg = cf_asprintf("acme: directory '%s' lacks valid newNonce/newAccount/newOrder URLs",
                          a->directory_url);
        goto fail;
    }
    a->new_nonce = cf_strdup(nn);
    a->new_account = cf_strdup(na);
    a->new_order = cf_strdup(no);
    a->key_change = url_ok(a, kc) ? cf_strdup(kc) : NULL;
    a->renewal_info = url_ok(a, ri) ? cf_strdup(ri) : NULL;
    a->eab_required =
        json_is_true(json_object_get(json_object_get(j, "meta"), "externalAccountRequired"));
    json_decref(j);
    a->dir_state = RS_READY;
    pump(a);
    return;
fail:
    json_decref(j);
    a->dir_state = RS_NONE; /* a later operation tries again */
    fail_waiters(a, 0, status, msg);
    free(msg);
}

/* Load the account key from disk or create and persist it. */
static int account_key_load(struct cf_acme *a, char *err)
{
    char *path = cf_asprintf("%s/private_key.pem", a->account_dir);
    char *pem = NULL;
    size_t len = 0;
    int rc = cf_read_file(path, 64 * 1024, &pem, &len);
    if (rc == 0) {
        rc = cf_x509_key_read(pem, len, &a->account_key, err);
        cf_secure_free(pem, len);
        if (rc)
            cf_errf(err, "cannot use account key '%s': %s", path, err);
        goto out;
    }
    if (rc != CF_ENOENT) {
        cf_errf(err, "cannot read account key '%s'", path);
        goto out;
    }
    if ((rc = cf_x509_keygen(a->key_type, a->key_bits, &a->account_key, err)) != 0)
        goto out;
    if ((rc = cf_x509_key_pem(a->account_key, &pem, &len, err)) != 0)
        goto out;
    if ((rc = cf_dir_ensure_private(a->account_dir, 0, err)) == 0 &&
        cf_write_file_atomic(path, pem, len, 0600) != 0) {
        rc = CF_EIO;
        cf_errf(err, "cannot write account key '%s': %s", path, strerror(errno));
    }
    cf_secure_free(pem, len);
out:
    if (rc) {
        EVP_PKEY_free(a->account_key);
        a->account_key = NULL;
    }
    free(path);
    return rc;
}

static void on_account(void *ctx, int status, struct cf_http_response *resp, const char *err)
{
    struct cf_acme *a = ctx;
    json_t *j = NULL;
    char *msg = NULL;
    if (status) {
        msg = cf_asprintf("acme: cannot register account: %s", err);
        goto fail;
    }
    if ((status = resp_json(resp, a->new_account, NULL, &j, &msg)) != 0)
        goto fail;
    const char *loc = cf_http_header(resp, "Location", 0);
    if (!url_ok(a, loc)) {
        status = CF_EPROTO;
        msg = cf_asprintf("acme: newAccount response from '%s' has no valid Location",
                          a->new_account);
        goto fail;
    }
    const char *st = jstr(j, "status");
    if (st && strcmp(st, "valid") != 0) {
        status = CF_EACME;
        msg = cf_asprintf("acme: account '%s' is %s", loc, st);
        goto fail;
    }
    free(a->kid);
    a->kid = cf_strdup(loc);
    json_t *regr = json_pack("{s:s, s:O}", "uri", loc, "body", j);
    char *text = regr ? json_dumps(regr, JSON_INDENT(2)) : NULL;
    char *path = cf_asprintf("%s/regr.json", a->account_dir);
    if (!text || cf_write_file_atomic(path, text, strlen(text), 0600) != 0)
        cf_log(0, "warning: cannot write '%s'", path);
    free(path);
    free(text);
    json_decref(regr);
    json_decref(j);
    cf_info("acme: account %s", a->kid);
    a->acct_state = RS_READY;
    pump(a);
    return;
fail:
    json_decref(j);
    a->acct_state = RS_NONE;
    fail_waiters(a, 1, status, msg);
    free(msg);
}

static void account_start(struct cf_acme *a)
{
    char err[CF_ERRLEN] = "";
    int rc = 0;
    a->acct_state = RS_LOADING;
    if (!a->account_key && (rc = account_key_load(a, err)) != 0)
        goto fail;
    free(a->thumbprint);
    if ((rc = cf_jws_thumbprint(a->account_key, &a->thumbprint, err)) != 0)
        goto fail;
    if (a->eab_required && !a->eab_kid) {
        rc = cf_errf(err,
                     "acme: server '%s' requires external account binding: set "
                     "'certbot_eab_kid' and 'certbot_eab_hmac_key'",
                     a->directory_url);
        goto fail;
    }
    json_t *p = json_pack("{s:b}", "termsOfServiceAgreed", 1);
    if (a->email) {
        char *mailto = cf_asprintf("mailto:%s", a->email);
        json_object_set_new(p, "contact", json_pack("[s]", mailto));
        free(mailto);
    }
    if (a->eab_kid) {
        json_t *eab;
        if ((rc = cf_jws_eab(a->account_key, a->eab_kid, a->eab_hmac_key, a->new_account, &eab,
                             err)) != 0) {
            json_decref(p);
            goto fail;
        }
        json_object_set_new(p, "externalAccountBinding", eab);
    }
    char *payload = json_dumps(p, JSON_COMPACT);
    json_decref(p);
    struct acme_req *r = req_new(a, a->new_account, on_account, a);
    r->is_signed = 1;
    r->use_jwk = 1;
    r->payload = payload;
    req_send(r);
    return;
fail:
    a->acct_state = RS_NONE;
    fail_waiters(a, 1, rc, err);
}

/* Move the shared state forward and release the waiters it satisfies. */
static void pump(struct cf_acme *a)
{
    if (a->closing) {
        fail_waiters(a, 0, CF_ECANCELED, "acme: canceled");
        return;
    }
    if (a->dir_state == RS_NONE) {
        a->dir_state = RS_LOADING;
        struct acme_req *r = req_new(a, a->directory_url, on_directory, a);
        req_send(r);
        return;
    }
    if (a->dir_state != RS_READY)
        return;
    int need_account = 0;
    for (;;) {
        struct waiter **pp = &a->waiters, *w = NULL;
        need_account = 0;
        while (*pp) {
            if (!(*pp)->need_account || a->acct_state == RS_READY) {
                w = *pp;
                *pp = w->next;
                break;
            }
            need_account = 1;
            pp = &(*pp)->next;
        }
        if (!w)
            break;
        w->fn(w->ctx, 0, NULL);
        free(w);
    }
    if (need_account && a->acct_state == RS_NONE)
        account_start(a);
}

/* ------------------------------------------------------------------ */
/* public lifecycle                                                    */

/* accounts/<host>/<hash of the directory URL>: one account per server
 * and directory, like certbot's accounts/<server>/directory/. */
static char *account_dir_for(const char *state_dir, const char *url)
{
    char host[256] = "unknown";
    CURLU *u = curl_url();
    char *h = NULL;
    if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &h, 0) == CURLUE_OK && h) {
        size_t j = 0;
        for (const char *p = h; *p && j < sizeof host - 1; p++)
            host[j++] = (isalnum((unsigned char)*p) || *p == '.' || *p == '-') ? *p : '_';
        host[j] = '\0';
    }
    curl_free(h);
    curl_url_cleanup(u);
    char hex[65];
    cf_sha256_hex(url, strlen(url), hex);
    hex[32] = '\0';
    return cf_asprintf("%s/accounts/%s/%s", state_dir, host, hex);
}

int cf_acme_new(uv_loop_t *loop, cf_http *http, const struct cf_acme_config *c,
                struct cf_acme **out, char *err)
{
    *out = NULL;
    if (!loop || !http || !c)
        return cf_errf(err, "acme: missing loop, http or configuration");
    if (!c->directory_url || (strncmp(c->directory_url, "https://", 8) != 0 &&
                              strncmp(c->directory_url, "http://", 7) != 0))
        return cf_errf(err, "invalid ACME directory URL '%s': use https://...",
                       c->directory_url ? c->directory_url : "");
    if (!c->state_dir || !*c->state_dir)
        return cf_errf(err, "acme: no state directory: set --state-dir");
    if (!!c->eab_kid != !!c->eab_hmac_key)
        return cf_errf(err, "external account binding needs both 'certbot_eab_kid' and "
                            "'certbot_eab_hmac_key'");
    if (c->email) {
        for (const char *p = c->email; *p; p++)
            if ((unsigned char)*p <= 0x20 || *p == ',' || *p == 0x7f)
                return cf_errf(err, "invalid contact e-mail '%s'", c->email);
        if (!strchr(c->email, '@'))
            return cf_errf(err, "invalid contact e-mail '%s': no '@'", c->email);
    }
    EVP_PKEY *probe = NULL;
    int rc = cf_x509_keygen(c->account_key_type, c->account_key_bits, &probe, NULL);
    if (rc)
        return cf_errf(err, "invalid account key type '%s' / size %d",
                       c->account_key_type ? c->account_key_type : "", c->account_key_bits);
    EVP_PKEY_free(probe);
    struct cf_acme *a = cf_xcalloc(1, sizeof *a);
    a->loop = loop;
    a->http = http;
    a->directory_url = cf_strdup(c->directory_url);
    a->allow_http = strncmp(c->directory_url, "http://", 7) == 0;
    a->ca_bundle = cf_strdup(c->ca_bundle);
    a->state_dir = cf_strdup(c->state_dir);
    a->email = c->email && *c->email ? cf_strdup(c->email) : NULL;
    a->eab_kid = c->eab_kid && *c->eab_kid ? cf_strdup(c->eab_kid) : NULL;
    a->eab_hmac_key = a->eab_kid ? cf_strdup(c->eab_hmac_key) : NULL;
    a->key_type = cf_strdup(c->account_key_type ? c->account_key_type : "ecdsa");
    a->key_bits = c->account_key_bits;
    a->timeout_ms = c->timeout_ms;
    a->account_dir = account_dir_for(c->state_dir, c->directory_url);
    *out = a;
    return 0;
}

void cf_acme_free(struct cf_acme *a)
{
    if (!a || a->closing)
        return;
    a->closing = 1;
    a->refs++; /* keep a alive while waking everything up */
    while (a->delays)
        delay_fire(a->delays);
    fail_waiters(a, 0, CF_ECANCELED, "acme: canceled");
    unref(a);
}

/* ------------------------------------------------------------------ */
/* orders                                                              */

struct order;

struct authz {
    struct order *o;
    char *url;
    char *identifier;
    int wildcard;
    char *chal_type, *chal_url, *token, *keyauth, *dns_value;
    struct cf_acme_challenge ch;
    int presented, cleaned, posted, polls;
    int64_t retry_after_ms;
};

struct order {
    struct cf_acme *a;
    char **domains;
    size_t n_domains;
    char *challenge_type, *replaces, *preferred_chain, *resume_url;
    char *replaces_server, *replaces_account; /* where the replaced certificate came from */
    EVP_PKEY *cert_key;
    struct cf_acme_solver solver;
    cf_acme_order_cb cb;
    void (*created)(void *arg, const char *order_url);
    void *arg;
    char *order_url, *finalize_url, *cert_url;
    int finalize_attempts; /* of the last finalize request */
    struct authz *authz;
    size_t n_authz, authz_active;
    int authorized, finalized, polls;
    int64_t retry_after_ms;
    int status; /* first failure */
    char *error;
    char *chains[1 + ACME_MAX_ALTERNATES];
    size_t n_chains;
    char *alt_urls[ACME_MAX_ALTERNATES];
    size_t n_alt, alt_next;
    struct cf_acme_order_result res;
};

static void order_free(struct order *o)
{
    for (size_t i = 0; i < o->n_domains; i++)
        free(o->domains[i]);
    free(o->domains);
    free(o->challenge_type);
    free(o->replaces);
    free(o->replaces_server);
    free(o->replaces_account);
    free(o->preferred_chain);
    free(o->resume_url);
    EVP_PKEY_free(o->cert_key);
    free(o->order_url);
    free(o->finalize_url);
    free(o->cert_url);
    for (size_t i = 0; i < o->n_authz; i++) {
        struct authz *z = &o->authz[i];
        free(z->url);
        free(z->identifier);
        free(z->chal_type);
        free(z->chal_url);
        free(z->token);
        if (z->keyauth)
            cf_secure_free(z->keyauth, strlen(z->keyauth));
        free(z->dns_value);
    }
    free(o->authz);
    free(o->error);
    for (size_t i = 0; i < o->n_chains; i++)
        free(o->chains[i]);
    for (size_t i = 0; i < o->n_alt; i++)
        free(o->alt_urls[i]);
    free(o->res.fullchain_pem);
    free(o->res.cert_pem);
    free(o->res.chain_pem);
    free(o->res.error);
    free(o->res.cert_url);
    free(o->res.order_url);
    free(o);
}

/* Report and free: the only way an order ends. */
static void order_finish(struct order *o)
{
    struct cf_acme *a = o->a;
    if (o->status) {
        o->res.error = o->error ? o->error : cf_strdup(cf_strerror(o->status));
        o->error = NULL;
        free(o->res.fullchain_pem);
        free(o->res.cert_pem);
        free(o->res.chain_pem);
        o->res.fullchain_pem = o->res.cert_pem = o->res.chain_pem = NULL;
    }
    o->res.cert_url = cf_strdup(o->cert_url);
    o->res.order_url = cf_strdup(o->order_url);
    cf_info("acme: order for '%s' %s%s%s", o->domains[0], o->status ? "failed: " : "done",
            o->status ? o->res.error : "", "");
    o->cb(o->status, &o->res, o->arg);
    order_free(o);
    unref(a);
}

/* Record the first failure; msg is taken. */
static void order_set_error(struct order *o, int status, char *msg)
{
    if (o->status == 0) {
        o->status = status ? status : CF_EPROTO;
        o->error = msg;
    } else {
        free(msg);
    }
}

static void order_fail(struct order *o, int status, char *msg)
{
    order_set_error(o, status, msg);
    if (o->authz_active == 0)
        order_finish(o);
}

static void order_handle(struct order *o, json_t *obj, int64_t retry_after_ms);

/* The order URL is known and will be kept: let the caller journal it
 * before anything is presented or finalized. */
static void order_created(struct order *o)
{
    if (o->created) {
        void (*created)(void *, const char *) = o->created;
        o->created = NULL; /* once */
        created(o->arg, o->order_url);
    }
}

static void new_order(struct order *o);

static void on_order_object(void *ctx, int status, struct cf_http_response *resp, const char *err)
{
    struct order *o = ctx;
    json_t *j;
    char *msg;
    if (status) {
        order_fail(o, status, cf_asprintf("acme: order for '%s': %s", o->domains[0], err));
        return;
    }
    const char *url = o->order_url ? o->order_url : o->a->new_order;
    if (!o->order_url && o->replaces && resp->status == 409 &&
        problem_type_is(resp, ":alreadyReplaced")) {
        /* RFC 9773 §5 / Boulder: the named certificate already has a
         * replacement order (one finalized by an earlier run whose
         * download or store failed).  The order itself is fine: place it
         * once more without `replaces`. */
        cf_debug("acme: '%s' was already replaced (409 alreadyReplaced): ordering '%s' again "
                 "without replaces",
                 o->replaces, o->domains[0]);
        free(o->replaces);
        o->replaces = NULL;
        new_order(o);
        return;
    }
    if ((status = resp_json(resp, url, o->domains[0], &j, &msg)) != 0) {
        if (status == CF_ELIMIT && !o->order_url) {
            /* keep the CA's Retry-After for the caller's next runs */
            int64_t ms = retry_after_of(resp);
            if (ms > 0)
                o->res.retry_at = (cf_now_ms() + ms + 999) / 1000;
        }
        order_fail(o, status, msg);
        return;
    }
    if (!o->order_url) {
        const char *loc = cf_http_header(resp, "Location", 0);
        if (!url_ok(o->a, loc)) {
            json_decref(j);
            order_fail(
                o, CF_EPROTO,
                cf_asprintf("acme: newOrder for '%s' returned no valid Location", o->domains[0]));
            return;
        }
        o->order_url = cf_strdup(loc);
        order_created(o);
    }
    int64_t ra = retry_after_of(resp);
    order_handle(o, j, ra);
    json_decref(j);
}

static void order_poll(void *ctx)
{
    struct order *o = ctx;
    if (o->a->closing) {
        order_fail(o, CF_ECANCELED, cf_strdup("acme: canceled"));
        return;
    }
    post_retry(o->a, o->order_url, NULL, on_order_object, o);
}

static void authz_fetch(void *ctx);
static void authz_all_done(struct order *o);

static void authorize(struct order *o, const json_t *list)
{
    size_t n = json_array_size(list);
    o->authorized = 1;
    o->authz = cf_xcalloc(n, sizeof *o->authz);
    o->n_authz = n;
    for (size_t i = 0; i < n; i++) {
        o->authz[i].o = o;
        o->authz[i].url = cf_strdup(json_string_value(json_array_get(list, i)));
    }
    /* one extra count while starting, so a synchronous completion cannot
     * finish the order under this loop */
    o->authz_active = n + 1;
    for (size_t i = 0; i < n; i++)
        authz_fetch(&o->authz[i]);
    if (--o->authz_active == 0)
        authz_all_done(o);
}

static void finalize(struct order *o);
static void download(struct order *o);

static void order_handle(struct order *o, json_t *j, int64_t retry_after_ms)
{
    const char *st = jstr(j, "status");
    const char *fin = jstr(j, "finalize");
    const json_t *authzs = json_object_get(j, "authorizations");
    if (!st) {
        order_fail(o, CF_EPROTO, cf_asprintf("acme: order '%s' has no status", o->order_url));
        return;
    }
    if (!url_ok(o->a, fin) || !json_is_array(authzs) || json_array_size(authzs) > 100) {
        order_fail(o, CF_EPROTO,
                   cf_asprintf("acme: order '%s' lacks a valid finalize URL or authorizations",
                               o->order_url));
        return;
    }
    for (size_t i = 0; i < json_array_size(authzs); i++)
        if (!url_ok(o->a, json_string_value(json_array_get(authzs, i)))) {
            order_fail(
                o, CF_EPROTO,
                cf_asprintf("acme: order '%s' has an invalid authorization URL", o->order_url));
            return;
        }
    free(o->finalize_url);
    o->finalize_url = cf_strdup(fin);
    enum cf_acme_step step = cf_acme_next_step(st, o->authorized, o->finalized);
    cf_debug("acme: order '%s' is %s -> step %d", o->order_url, st, (int)step);
    switch (step) {
    case CF_ACME_STEP_AUTHORIZE:
        authorize(o, authzs);
        return;
    case CF_ACME_STEP_FINALIZE:
        finalize(o);
        return;
    case CF_ACME_STEP_POLL:
        if (o->polls >= ACME_MAX_POLLS) {
            order_fail(o, CF_ETIMEDOUT,
                       cf_asprintf("acme: order for '%s' still %s after %d polls; giving up",
                                   o->domains[0], st, o->polls));
            return;
        }
        delay_start(o->a, cf_acme_poll_delay_ms(o->polls++, retry_after_ms), order_poll, o);
        return;
    case CF_ACME_STEP_DOWNLOAD: {
        const char *cert = jstr(j, "certificate");
        if (!url_ok(o->a, cert)) {
            order_fail(
                o, CF_EPROTO,
                cf_asprintf("acme: valid order '%s' has no valid certificate URL", o->order_url));
            return;
        }
        o->cert_url = cf_strdup(cert);
        download(o);
        return;
    }
    case CF_ACME_STEP_FAIL:
    default:
        if (!strcmp(st, "invalid")) {
            const json_t *e = json_object_get(j, "error");
            order_fail(o, CF_EACME,
                       json_is_object(e)
                           ? cf_acme_problem_message(e, o->domains[0])
                           : cf_asprintf("acme: order for '%s' became invalid", o->domains[0]));
        } else {
            struct cf_buf b = CF_BUF_INIT;
            cf_buf_printf(&b, "acme: order for '%s' has unknown status '", o->domains[0]);
            put_clean(&b, st, 40);
            cf_buf_puts(&b, "'");
            order_fail(o, CF_EPROTO, cf_buf_detach(&b, NULL));
        }
        return;
    }
}

/* ---- authorizations ---- */

static void authz_complete(struct authz *z);

static void on_cleaned(void *ctx, int status, const char *err)
{
    struct authz *z = ctx;
    if (status)
        cf_log(0, "warning: cannot remove %s challenge for '%s': %s", z->chal_type, z->identifier,
               err ? err : cf_strerror(status));
    authz_complete(z);
}

/* End of one authorization: clean up what was presented, then count. */
static void authz_finish(struct authz *z)
{
    if (z->presented && !z->cleaned) {
        z->cleaned = 1;
        z->o->solver.cleanup(z->o->solver.arg, &z->ch, on_cleaned, z);
        return;
    }
    authz_complete(z);
}

static void authz_fail(struct authz *z, int status, char *msg)
{
    order_set_error(z->o, status, msg);
    authz_finish(z);
}

static void authz_all_done(struct order *o)
{
    if (o->status) {
        order_finish(o);
        return;
    }
    order_poll(o);
}

static void authz_complete(struct authz *z)
{
    struct order *o = z->o;
    if (--o->authz_active == 0)
        authz_all_done(o);
}

static void authz_poll_later(struct authz *z);

static void on_chal_posted(void *ctx, int status, struct cf_http_response *resp, const char *err)
{
    struct authz *z = ctx;
    json_t *j;
    char *msg;
    if (status) {
        authz_fail(z, status, cf_asprintf("acme: challenge for '%s': %s", z->identifier, err));
        return;
    }
    if ((status = resp_json(resp, z->chal_url, z->identifier, &j, &msg)) != 0) {
        authz_fail(z, status, msg);
        return;
    }
    json_decref(j);
    z->posted = 1;
    z->retry_after_ms = retry_after_of(resp);
    authz_poll_later(z);
}

static void on_presented(void *ctx, int status, const char *err)
{
    struct authz *z = ctx;
    if (status) {
        authz_fail(z, status,
                   cf_asprintf("cannot present %s challenge for '%s': %s", z->chal_type,
                               z->identifier, err ? err : cf_strerror(status)));
        return;
    }
    if (z->o->status || z->o->a->closing) {
        authz_finish(z); /* the order failed elsewhere: do not ask for validation */
        return;
    }
    post(z->o->a, z->chal_url, "{}", on_chal_posted, z);
}

static void authz_solve(struct authz *z, const json_t *j)
{
    struct order *o = z->o;
    const char *want = z->wildcard ? "dns-01" : o->challenge_type;
    const json_t *chs = json_object_get(j, "challenges");
    const json_t *ch = NULL, *c;
    size_t i;
    json_array_foreach(chs, i, c)
    {
        const char *t = jstr(c, "type");
        if (t && !strcmp(t, want)) {
            ch = c;
            break;
        }
    }
    if (!ch) {
        authz_fail(
            z, CF_EACME,
            cf_asprintf("acme: server offers no %s challenge for '%s'", want, z->identifier));
        return;
    }
    const char *token = jstr(ch, "token"), *url = jstr(ch, "url");
    if (!cf_acme_token_valid(token)) {
        authz_fail(z, CF_EPROTO,
                   cf_asprintf("acme: invalid challenge token from server for '%s' (must be "
                               "base64url, at least 22 characters)",
                               z->identifier));
        return;
    }
    if (!url_ok(o->a, url)) {
        authz_fail(z, CF_EPROTO,
                   cf_asprintf("acme: invalid challenge URL from server for '%s'", z->identifier));
        return;
    }
    z->chal_type = cf_strdup(want);
    z->chal_url = cf_strdup(url);
    z->token = cf_strdup(token);
    z->keyauth = cf_jws_key_authorization(token, o->a->thumbprint);
    z->dns_value = cf_jws_dns01_value(z->keyauth);
    z->ch.type = z->chal_type;
    z->ch.identifier = z->identifier;
    z->ch.token = z->token;
    z->ch.key_authorization = z->keyauth;
    z->ch.dns_txt_value = z->dns_value;
    /* mark first: a present() that fails half-way still gets its cleanup */
    z->presented = 1;
    o->solver.present(o->solver.arg, &z->ch, on_presented, z);
}

/* The problem of an invalid authorization: its failed challenge's error. */
static char *authz_problem(const json_t *j, const char *identifier, const char *st)
{
    const json_t *chs = json_object_get(j, "challenges"), *c;
    size_t i;
    json_array_foreach(chs, i, c)
    {
        const json_t *e = json_object_get(c, "error");
        if (json_is_object(e))
            return cf_acme_problem_message(e, identifier);
    }
    struct cf_buf b = CF_BUF_INIT;
    cf_buf_printf(&b, "acme: authorization for '%s' is '", identifier);
    put_clean(&b, st ? st : "(no status)", 40);
    cf_buf_puts(&b, "'");
    return cf_buf_detach(&b, NULL);
}

static int domain_requested(const struct order *o, const char *value, int wildcard)
{
    for (size_t i = 0; i < o->n_domains; i++) {
        const char *d = o->domains[i];
        if (wildcard && strncmp(d, "*.", 2) == 0 && !strcmp(d + 2, value))
            return 1;
        if (!wildcard && !strcmp(d, value))
            return 1;
    }
    return 0;
}

static void on_authz(void *ctx, int status, struct cf_http_response *resp, const char *err)
{
    struct authz *z = ctx;
    struct order *o = z->o;
    json_t *j;
    char *msg;
    const char *who = z->identifier ? z->identifier : o->domains[0];
    if (status) {
        authz_fail(z, status, cf_asprintf("acme: authorization for '%s': %s", who, err));
        return;
    }
    if ((status = resp_json(resp, z->url, z->identifier, &j, &msg)) != 0) {
        authz_fail(z, status, msg);
        return;
    }
    const char *st = jstr(j, "status");
    const json_t *id = json_object_get(j, "identifier");
    const char *value = jstr(id, "value"), *type = jstr(id, "type");
    int wildcard = json_is_true(json_object_get(j, "wildcard"));
    if (!st || !value || !type || strcmp(type, "dns") != 0 ||
        !domain_requested(o, value, wildcard) || !json_is_array(json_object_get(j, "challenges"))) {
        json_decref(j);
        authz_fail(z, CF_EPROTO,
                   cf_asprintf("acme: authorization '%s' for '%s' is malformed or names a "
                               "domain that was not requested",
                               z->url, o->domains[0]));
        return;
    }
    if (!z->identifier) {
        z->identifier = cf_strdup(value);
        z->wildcard = wildcard;
    }
    z->retry_after_ms = retry_after_of(resp);
    switch (cf_acme_authz_next(st, z->posted)) {
    case CF_ACME_AUTHZ_DONE:
        cf_debug("acme: authorization for '%s' is valid", z->identifier);
        json_decref(j);
        authz_finish(z);
        return;
    case CF_ACME_AUTHZ_SOLVE:
        if (z->presented) { /* pending again without our post: just wait */
            json_decref(j);
            authz_poll_later(z);
            return;
        }
        authz_solve(z, j);
        json_decref(j);
        return;
    case CF_ACME_AUTHZ_POLL:
        json_decref(j);
        authz_poll_later(z);
        return;
    case CF_ACME_AUTHZ_FAIL:
    default:
        msg = authz_problem(j, z->identifier, st);
        json_decref(j);
        authz_fail(z, CF_EACME, msg);
        return;
    }
}

static void authz_fetch(void *ctx)
{
    struct authz *z = ctx;
    if (z->o->a->closing) {
        authz_fail(z, CF_ECANCELED, cf_strdup("acme: canceled"));
        return;
    }
    if (z->o->status) { /* another authorization failed: stop here */
        authz_finish(z);
        return;
    }
    post_retry(z->o->a, z->url, NULL, on_authz, z);
}

static void authz_poll_later(struct authz *z)
{
    if (z->polls >= ACME_MAX_POLLS) {
        authz_fail(z, CF_ETIMEDOUT,
                   cf_asprintf("acme: authorization for '%s' still pending after %d polls",
                               z->identifier, z->polls));
        return;
    }
    delay_start(z->o->a, cf_acme_poll_delay_ms(z->polls++, z->retry_after_ms), authz_fetch, z);
}

/* ---- finalize and download ---- */

static void on_finalized(void *ctx, int status, struct cf_http_response *resp, const char *err)
{
    struct order *o = ctx;
    /* a finalize that was resent may have been taken the first time: the
     * order is processing or valid then, and §7.4 makes the server refuse
     * the second one with orderNotReady; the order itself tells */
    if (status == 0 && o->finalize_attempts > 1 && resp->status == 403 &&
        problem_type_is(resp, ":orderNotReady")) {
        cf_debug("acme: resent finalize of '%s' refused as not ready; polling the order",
                 o->order_url);
        order_poll(o);
        return;
    }
    on_order_object(ctx, status, resp, err);
}

static void finalize(struct order *o)
{
    char err[CF_ERRLEN] = "";
    unsigned char *der = NULL;
    size_t len = 0;
    int rc =
        cf_x509_csr(o->cert_key, (const char *const *)o->domains, o->n_domains, &der, &len, err);
    if (rc) {
        order_fail(o, rc, cf_strdup(err));
        return;
    }
    char *csr = cf_b64url(der, len);
    free(der);
    json_t *p = json_pack("{s:s}", "csr", csr);
    char *payload = json_dumps(p, JSON_COMPACT);
    json_decref(p);
    free(csr);
    o->finalized = 1;
    o->polls = 0;
    post_ex(o->a, o->finalize_url, payload, 1, &o->finalize_attempts, on_finalized, o);
    free(payload);
}

/* Parse every certificate of a PEM chain; NULL when there is none or
 * anything but certificates. */
static STACK_OF(X509) * parse_chain(const char *pem)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    STACK_OF(X509) *sk = sk_X509_new_null();
    X509 *x;
    if (!b || !sk) {
        BIO_free(b);
        sk_X509_free(sk);
        return NULL;
    }
    while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)))
        sk_X509_push(sk, x);
    ERR_clear_error();
    BIO_free(b);
    if (sk_X509_num(sk) == 0) {
        sk_X509_free(sk);
        return NULL;
    }
    return sk;
}

static char *pem_of(STACK_OF(X509) * sk, int from, int to)
{
    BIO *b = BIO_new(BIO_s_mem());
    for (int i = from; i < to; i++)
        PEM_write_bio_X509(b, sk_X509_value(sk, i));
    char *data;
    long n = BIO_get_mem_data(b, &data);
    char *s = cf_xmalloc((size_t)n + 1);
    memcpy(s, data, (size_t)n);
    s[n] = '\0';
    BIO_free(b);
    return s;
}

static void deliver(struct order *o)
{
    size_t idx =
        cf_acme_pick_chain((const char *const *)o->chains, o->n_chains, o->preferred_chain);
    STACK_OF(X509) *sk = parse_chain(o->chains[idx]);
    if (!sk) {
        order_fail(o, CF_EPROTO,
                   cf_asprintf("acme: certificate from '%s' is not a PEM chain", o->cert_url));
        return;
    }
    /* a server that returns someone else's certificate must not get it
     * deployed: the leaf has to carry our key */
    EVP_PKEY *pub = X509_get0_pubkey(sk_X509_value(sk, 0));
    if (!pub || EVP_PKEY_eq(pub, o->cert_key) != 1) {
        sk_X509_pop_free(sk, X509_free);
        order_fail(o, CF_EPROTO,
                   cf_asprintf("acme: certificate from '%s' does not match the key of '%s'",
                               o->cert_url, o->domains[0]));
        return;
    }
    int n = sk_X509_num(sk);
    o->res.fullchain_pem = pem_of(sk, 0, n);
    o->res.cert_pem = pem_of(sk, 0, 1);
    o->res.chain_pem = pem_of(sk, 1, n);
    sk_X509_pop_free(sk, X509_free);
    order_finish(o);
}

static void fetch_next_alternate(struct order *o);

static void on_alternate(void *ctx, int status, struct cf_http_response *resp, const char *err)
{
    struct order *o = ctx;
    /* alternates are optional: a bad one is skipped, the default stays */
    if (status == 0 && resp->status == 200 && strstr(resp->body, "-----BEGIN CERTIFICATE-----"))
        o->chains[o->n_chains++] = cf_strdup(resp->body);
    else
        cf_info("acme: skipping alternate chain of '%s'", o->domains[0]);
    fetch_next_alternate(o);
}

static void fetch_next_alternate(struct order *o)
{
    if (o->alt_next >= o->n_alt || o->a->closing) {
        deliver(o);
        return;
    }
    struct acme_req *r = req_new(o->a, o->alt_urls[o->alt_next++], on_alternate, o);
    r->is_signed = 1;
    r->accept = "application/pem-certificate-chain";
    r->max_body = ACME_MAX_CERT_BODY;
    req_send(r);
}

/* The URL inside <...> of a Link value with rel="alternate", or NULL. */
static char *link_alternate(const char *v)
{
    const char *lt = strchr(v, '<'), *gt = lt ? strchr(lt, '>') : NULL;
    if (!gt)
        return NULL;
    const char *rel = strstr(gt, "rel=");
    if (!rel)
        return NULL;
    rel += 4;
    if (*rel == '"')
        rel++;
    if (strncmp(rel, "alternate", 9) != 0 || (rel[9] && rel[9] != '"' && rel[9] != ';'))
        return NULL;
    return strndup(lt + 1, (size_t)(gt - lt - 1));
}

static void on_certificate(void *ctx, int status, struct cf_http_response *resp, const char *err)
{
    struct order *o = ctx;
    if (status) {
        order_fail(o, status,
                   cf_asprintf("acme: certificate download for '%s': %s", o->domains[0], err));
        return;
    }
    if (resp->status != 200) {
        json_t *j;
        char *msg;
        status = resp_json(resp, o->cert_url, o->domains[0], &j, &msg);
        json_decref(j);
        order_fail(
            o, status ? status : CF_EPROTO,
            msg ? msg
                : cf_asprintf("acme: unexpected HTTP %ld from '%s'", resp->status, o->cert_url));
        return;
    }
    if (!strstr(resp->body, "-----BEGIN CERTIFICATE-----")) {
        order_fail(o, CF_EPROTO,
                   cf_asprintf("acme: certificate from '%s' is not PEM", o->cert_url));
        return;
    }
    o->chains[o->n_chains++] = cf_strdup(resp->body);
    const char *v;
    for (size_t i = 0; (v = cf_http_header(resp, "Link", i)) && o->n_alt < ACME_MAX_ALTERNATES;
         i++) {
        char *u = link_alternate(v);
        if (u && url_ok(o->a, u))
            o->alt_urls[o->n_alt++] = u;
        else
            free(u);
    }
    /* alternates only matter when the user prefers a chain */
    if (o->preferred_chain && o->n_alt) {
        fetch_next_alternate(o);
        return;
    }
    deliver(o);
}

static void download(struct order *o)
{
    struct acme_req *r = req_new(o->a, o->cert_url, on_certificate, o);
    r->is_signed = 1;
    r->retry_transient = 1;
    r->accept = "application/pem-certificate-chain";
    r->max_body = ACME_MAX_CERT_BODY;
    req_send(r);
}

static void new_order(struct order *o)
{
    json_t *ids = json_array();
    for (size_t i = 0; i < o->n_domains; i++)
        json_array_append_new(ids, json_pack("{s:s, s:s}", "type", "dns", "value", o->domains[i]));
    json_t *p = json_pack("{s:o}", "identifiers", ids);
    if (o->replaces && !cf_plan_replaces(o->a->renewal_info != NULL, o->replaces_server,
                                         o->a->directory_url, o->replaces_account, o->a->kid)) {
        cf_debug("acme: not naming '%s' in replaces for '%s': %s", o->replaces, o->domains[0],
                 !o->a->renewal_info ? "the directory offers no renewalInfo"
                                     : "it was issued by another directory or account");
        free(o->replaces);
        o->replaces = NULL;
    }
    if (o->replaces)
        json_object_set_new(p, "replaces", json_string(o->replaces));
    char *payload = json_dumps(p, JSON_COMPACT);
    json_decref(p);
    post_retry(o->a, o->a->new_order, payload, on_order_object, o);
    free(payload);
}

static void on_resumed(void *ctx, int status, struct cf_http_response *resp, const char *err)
{
    struct order *o = ctx;
    char why[CF_ERRLEN] = "";
    json_t *j = NULL;
    char *msg = NULL;
    if (status == CF_ECANCELED) {
        order_fail(o, status, cf_strdup(err));
        return;
    }
    if (status) {
        snprintf(why, sizeof why, "%s", err);
    } else if (resp_json(resp, o->resume_url, o->domains[0], &j, &msg) != 0) {
        snprintf(why, sizeof why, "%s", msg);
    } else if (cf_acme_resume_usable(j, (const char *const *)o->domains, o->n_domains,
                                     (int64_t)time(NULL), why)) {
        const char *st = jstr(j, "status");
        o->order_url = cf_strdup(o->resume_url);
        cf_info("acme: resuming order '%s' for '%s' (%s)", o->order_url, o->domains[0],
                st ? st : "");
        order_created(o);
        order_handle(o, j, retry_after_of(resp));
        json_decref(j);
        return;
    }
    cf_debug("acme: not resuming order '%s' for '%s': %s; placing a new order", o->resume_url,
             o->domains[0], why);
    json_decref(j);
    free(msg);
    new_order(o);
}

/* 1 when u is on the same scheme, host and port as base. */
static int same_origin(const char *u, const char *base)
{
    CURLU *a = curl_url(), *b = curl_url();
    char *sa = NULL, *sb = NULL, *ha = NULL, *hb = NULL, *pa = NULL, *pb = NULL;
    int same = a && b && curl_url_set(a, CURLUPART_URL, u, 0) == CURLUE_OK &&
               curl_url_set(b, CURLUPART_URL, base, 0) == CURLUE_OK &&
               curl_url_get(a, CURLUPART_SCHEME, &sa, 0) == CURLUE_OK &&
               curl_url_get(b, CURLUPART_SCHEME, &sb, 0) == CURLUE_OK &&
               curl_url_get(a, CURLUPART_HOST, &ha, 0) == CURLUE_OK &&
               curl_url_get(b, CURLUPART_HOST, &hb, 0) == CURLUE_OK &&
               curl_url_get(a, CURLUPART_PORT, &pa, CURLU_DEFAULT_PORT) == CURLUE_OK &&
               curl_url_get(b, CURLUPART_PORT, &pb, CURLU_DEFAULT_PORT) == CURLUE_OK &&
               !strcmp(sa, sb) && !strcasecmp(ha, hb) && !strcmp(pa, pb);
    curl_free(sa);
    curl_free(sb);
    curl_free(ha);
    curl_free(hb);
    curl_free(pa);
    curl_free(pb);
    curl_url_cleanup(a);
    curl_url_cleanup(b);
    return same;
}

static void order_begin(void *ctx, int status, const char *err)
{
    struct order *o = ctx;
    if (status) {
        order_fail(o, status, cf_strdup(err ? err : cf_strerror(status)));
        return;
    }
    if (o->resume_url) {
        /* a signed request goes only where this CA's orders live */
        if (url_ok(o->a, o->resume_url) && same_origin(o->resume_url, o->a->new_order)) {
            post_retry(o->a, o->resume_url, NULL, on_resumed, o);
            return;
        }
        cf_debug("acme: not resuming order '%s' for '%s': not an order URL of '%s'", o->resume_url,
                 o->domains[0], o->a->directory_url);
    }
    new_order(o);
}

static int domain_ok(const char *d)
{
    size_t n = strlen(d);
    if (n == 0 || n > 253)
        return 0;
    if (!strncmp(d, "*.", 2))
        d += 2;
    for (const char *p = d; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '-' && *p != '.')
            return 0;
    return *d && *d != '.' && *d != '-';
}

int cf_acme_order(struct cf_acme *a, const struct cf_acme_order_req *r, cf_acme_order_cb cb,
                  void *arg, char *err)
{
    if (!a || a->closing)
        return CF_ECANCELED;
    if (!r || !cb || !r->domains || r->n_domains == 0 || r->n_domains > 100)
        return cf_errf(err, "acme: an order needs 1 to 100 domains");
    if (!r->solver || !r->solver->present || !r->solver->cleanup)
        return cf_errf(err, "acme: an order needs a challenge solver");
    const char *ct = r->challenge_type ? r->challenge_type : "http-01";
    if (strcmp(ct, "http-01") != 0 && strcmp(ct, "dns-01") != 0)
        return cf_errf(err, "unsupported challenge type '%s': use 'http-01' or 'dns-01'", ct);
    const char *kt;
    int kb;
    if (!r->cert_key || cf_x509_key_describe(r->cert_key, &kt, &kb) != 0)
        return cf_errf(err, "acme: unsupported certificate key");
    for (size_t i = 0; i < r->n_domains; i++) {
        if (!r->domains[i] || !domain_ok(r->domains[i]))
            return cf_errf(err, "invalid domain name '%s'", r->domains[i] ? r->domains[i] : "");
        if (!strncmp(r->domains[i], "*.", 2) && strcmp(ct, "dns-01") != 0)
            return cf_errf(err,
                           "wildcard '%s' needs the dns-01 challenge: set "
                           "'certbot_challenge_type: dns-01' and a DNS hook",
                           r->domains[i]);
    }
    struct order *o = cf_xcalloc(1, sizeof *o);
    o->a = a;
    o->domains = cf_xcalloc(r->n_domains, sizeof *o->domains);
    for (size_t i = 0; i < r->n_domains; i++)
        o->domains[i] = cf_strdup(r->domains[i]);
    o->n_domains = r->n_domains;
    o->challenge_type = cf_strdup(ct);
    o->replaces = r->replaces && *r->replaces ? cf_strdup(r->replaces) : NULL;
    o->replaces_server = r->replaces_server ? cf_strdup(r->replaces_server) : NULL;
    o->replaces_account = r->replaces_account ? cf_strdup(r->replaces_account) : NULL;
    o->preferred_chain =
        r->preferred_chain && *r->preferred_chain ? cf_strdup(r->preferred_chain) : NULL;
    EVP_PKEY_up_ref(r->cert_key);
    o->cert_key = r->cert_key;
    o->solver = *r->solver;
    o->resume_url = r->resume_url && *r->resume_url ? cf_strdup(r->resume_url) : NULL;
    o->cb = cb;
    o->created = r->created;
    o->arg = arg;
    a->refs++;
    ensure(a, 1, order_begin, o);
    return 0;
}

/* ------------------------------------------------------------------ */
/* account, renewal info, rollover                                     */

struct simple_op {
    struct cf_acme *a;
    void (*cb)(int status, const char *err, void *arg);
    cf_acme_ari_cb ari_cb;
    void *arg;
    char *cert_id;
    char *key_type;
    int bits;
    EVP_PKEY *new_key;
    char *next_path;
};

static void op_done(struct simple_op *op, int status, const char *err)
{
    struct cf_acme *a = op->a;
    if (op->cb)
        op->cb(status, err, op->arg);
    free(op->cert_id);
    free(op->key_type);
    EVP_PKEY_free(op->new_key);
    free(op->next_path);
    free(op);
    unref(a);
}

static void on_account_ready(void *ctx, int status, const char *err)
{
    op_done(ctx, status, err);
}

int cf_acme_account(struct cf_acme *a, void (*cb)(int status, const char *err, void *arg),
                    void *arg)
{
    if (!a || a->closing)
        return CF_ECANCELED;
    if (!cb)
        return CF_EINVAL;
    struct simple_op *op = cf_xcalloc(1, sizeof *op);
    op->a = a;
    op->cb = cb;
    op->arg = arg;
    a->refs++;
    ensure(a, 1, on_account_ready, op);
    return 0;
}

static void ari_done(struct simple_op *op, int status, const struct cf_acme_ari *ari,
                     const char *err)
{
    struct cf_acme_ari none = {0};
    op->ari_cb(status, ari ? ari : &none, err, op->arg);
    op_done(op, status, err);
}

static void on_renewal_info(void *ctx, int status, struct cf_http_response *resp, const char *err)
{
    struct simple_op *op = ctx;
    json_t *j = NULL;
    char *msg = NULL;
    struct cf_acme_ari ari = {0};
    if (status) {
        msg = cf_asprintf("acme: renewal info: %s", err);
        goto out;
    }
    /* RFC 9773 §4.3: ask again no sooner than Retry-After says, on
     * success and on error alike */
    int64_t ra = retry_after_of(resp);
    if (ra > 0)
        ari.retry_at = (cf_now_ms() + ra + 999) / 1000;
    if ((status = resp_json(resp, op->a->renewal_info, NULL, &j, &msg)) != 0)
        goto out;
    const json_t *w = json_object_get(j, "suggestedWindow");
    if (cf_acme_parse_time(jstr(w, "start"), &ari.start) != 0 ||
        cf_acme_parse_time(jstr(w, "end"), &ari.end) != 0 || ari.end <= ari.start) {
        status = CF_EPROTO;
        msg = cf_asprintf("acme: renewal info for '%s' has no valid suggestedWindow", op->cert_id);
        goto out;
    }
    /* §4.2: explanationURL, shown to the operator; only a vetted URL */
    const char *ex = jstr(j, "explanationURL");
    if (ex && strlen(ex) <= ACME_MAX_URL && !strncmp(ex, "https://", 8) &&
        strcspn(ex, " \t\r\n\"'<>") == strlen(ex))
        ari.explanation_url = ex;
out:
    ari_done(op, status, &ari, msg);
    json_decref(j);
    free(msg);
}

static void on_ari_ready(void *ctx, int status, const char *err)
{
    struct simple_op *op = ctx;
    if (status) {
        ari_done(op, status, NULL, err);
        return;
    }
    if (!op->a->renewal_info) {
        char *msg =
            cf_asprintf("acme: server '%s' offers no renewalInfo (ARI)", op->a->directory_url);
        ari_done(op, CF_ENOENT, NULL, msg);
        free(msg);
        return;
    }
    const char *base = op->a->renewal_info;
    size_t bl = strlen(base);
    char *url = cf_asprintf("%s%s%s", base, bl && base[bl - 1] == '/' ? "" : "/", op->cert_id);
    struct acme_req *r = req_new(op->a, url, on_renewal_info, op);
    free(url);
    req_send(r);
}

int cf_acme_renewal_info(struct cf_acme *a, const char *cert_pem, cf_acme_ari_cb cb, void *arg,
                         char *err)
{
    if (!a || a->closing)
        return CF_ECANCELED;
    if (!cb)
        return CF_EINVAL;
    char *id = NULL;
    int rc = cf_x509_ari_certid_pem(cert_pem, &id, err);
    if (rc)
        return rc;
    struct simple_op *op = cf_xcalloc(1, sizeof *op);
    op->a = a;
    op->ari_cb = cb;
    op->arg = arg;
    op->cert_id = id;
    a->refs++;
    ensure(a, 0, on_ari_ready, op);
    return 0;
}

static void on_key_changed(void *ctx, int status, struct cf_http_response *resp, const char *err)
{
    struct simple_op *op = ctx;
    struct cf_acme *a = op->a;
    json_t *j = NULL;
    char *msg = NULL;
    char e2[CF_ERRLEN] = "";
    if (status) {
        /* the server may or may not have switched: keep the new key */
        msg = cf_asprintf("acme: key change: %s; the new key is kept in '%s'", err, op->next_path);
        op_done(op, status, msg);
        free(msg);
        return;
    }
    /* success is any 2xx; pebble answers 200 with an empty body */
    if (resp->status < 200 || resp->status > 299) {
        status = resp_json(resp, a->key_change, NULL, &j, &msg);
        json_decref(j);
        if (!status) {
            status = CF_EPROTO;
            msg = cf_asprintf("acme: unexpected HTTP %ld from '%s'", resp->status, a->key_change);
        }
        goto fail;
    }
    /* the server uses the new key now: make it the one on disk */
    char *pem = NULL;
    size_t len = 0;
    char *path = cf_asprintf("%s/private_key.pem", a->account_dir);
    if ((status = cf_x509_key_pem(op->new_key, &pem, &len, e2)) == 0 &&
        cf_write_file_atomic(path, pem, len, 0600) != 0) {
        status = CF_EIO;
        snprintf(e2, sizeof e2,
                 "the server switched to the new account key but '%s' could not be written; "
                 "the new key is in '%s'",
                 path, op->next_path);
    }
    cf_secure_free(pem, len);
    free(path);
    if (status) {
        op_done(op, status, e2);
        return;
    }
    unlink(op->next_path);
    EVP_PKEY_free(a->account_key);
    a->account_key = op->new_key;
    op->new_key = NULL;
    free(a->thumbprint);
    a->thumbprint = NULL;
    cf_jws_thumbprint(a->account_key, &a->thumbprint, e2);
    op_done(op, 0, NULL);
    return;
fail:
    unlink(op->next_path);
    op_done(op, status, msg);
    free(msg);
}

static void on_rollover_ready(void *ctx, int status, const char *err)
{
    struct simple_op *op = ctx;
    struct cf_acme *a = op->a;
    char e[CF_ERRLEN] = "";
    char *pem = NULL, *inner = NULL;
    size_t len = 0;
    if (status) {
        op_done(op, status, err);
        return;
    }
    if (!a->key_change) {
        snprintf(e, sizeof e, "acme: server '%s' offers no keyChange", a->directory_url);
        op_done(op, CF_EACME, e);
        return;
    }
    if ((status = cf_x509_keygen(op->key_type, op->bits, &op->new_key, e)) != 0)
        goto fail;
    op->next_path = cf_asprintf("%s/private_key.pem.next", a->account_dir);
    if ((status = cf_x509_key_pem(op->new_key, &pem, &len, e)) != 0)
        goto fail;
    if (cf_write_file_atomic(op->next_path, pem, len, 0600) != 0) {
        status = CF_EIO;
        snprintf(e, sizeof e, "cannot write '%s'", op->next_path);
        goto fail;
    }
    if ((status = cf_jws_rollover_inner(op->new_key, a->account_key, a->kid, a->key_change, &inner,
                                        e)) != 0)
        goto fail;
    cf_secure_free(pem, len);
    post(a, a->key_change, inner, on_key_changed, op);
    free(inner);
    return;
fail:
    cf_secure_free(pem, len);
    if (op->next_path)
        unlink(op->next_path);
    op_done(op, status, e);
}

int cf_acme_rollover(struct cf_acme *a, const char *key_type, int bits,
                     void (*cb)(int status, const char *err, void *arg), void *arg)
{
    if (!a || a->closing)
        return CF_ECANCELED;
    if (!cb)
        return CF_EINVAL;
    EVP_PKEY *probe = NULL;
    if (cf_x509_keygen(key_type, bits, &probe, NULL) != 0)
        return CF_EINVAL;
    EVP_PKEY_free(probe);
    struct simple_op *op = cf_xcalloc(1, sizeof *op);
    op->a = a;
    op->cb = cb;
    op->arg = arg;
    op->key_type = cf_strdup(key_type ? key_type : "ecdsa");
    op->bits = bits;
    a->refs++;
    ensure(a, 1, on_rollover_ready, op);
    return 0;
}

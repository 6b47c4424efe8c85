/*
 * http.h - libcurl's multi interface driven by the caller's libuv loop
 * (curl's docs/examples/multi-uv.c pattern, CURL_POLL_INOUT handled).
 * Used by the ACME client, webhooks and SMTP alerts.
 *
 * Every callback runs exactly once; a function that returns an error never
 * calls its callback.
 */
#ifndef CF_HTTP_H
#define CF_HTTP_H

#include <stddef.h>
#include <curl/curl.h>
#include <uv.h>

#include "cf.h"

typedef struct cf_http cf_http;

int cf_http_new(uv_loop_t *loop, cf_http **out);
/* Cancel whatever is still in flight (callbacks run with CF_ECANCELED) and
 * free after the libuv handles have closed. */
void cf_http_free(cf_http *h);

struct cf_http_request {
    const char *method; /* "GET", "POST", "HEAD" */
    const char *url;
    const void *body; /* POST body or NULL */
    size_t body_len;
    const char *const *headers; /* NULL-terminated "Name: value" list, or NULL */
    const char *ca_bundle;      /* CA file to trust instead of the system store, or NULL */
    long timeout_ms;            /* 0 = 30 s */
    size_t max_body;            /* 0 = 1 MiB; larger bodies fail with CF_EPROTO */
    const char *resolve;        /* curl CURLOPT_RESOLVE entry "host:port:addr", or NULL */
    int fresh_connection;       /* a new connection, closed after: never a kept-alive one */
};

struct cf_http_response {
    long status; /* HTTP status, 0 when no response */
    char *body;  /* NUL-terminated */
    size_t body_len;
    char error[CF_ERRLEN]; /* transport failure detail, "" otherwise */
};

/* cb runs with status 0 when a response arrived (any HTTP status), or
 * CF_ETIMEDOUT / CF_ECONNECT / CF_EPROTO / CF_ECANCELED with resp->error
 * set.  resp is freed after cb returns. */
typedef void (*cf_http_cb)(int status, struct cf_http_response *resp, void *arg);

int cf_http_request(cf_http *h, const struct cf_http_request *req, cf_http_cb cb, void *arg);

/* The idx-th response header called name (case-insensitive), or NULL.
 * Link headers come one per value so alternates can be walked. */
const char *cf_http_header(const struct cf_http_response *r, const char *name, size_t idx);

/* Run a prepared easy handle (SMTP and others) on the same multi.  done
 * runs once with 0 or CF_E* and curl's message; the caller still owns easy. */
typedef void (*cf_http_easy_cb)(CURL *easy, int status, const char *msg, void *arg);
int cf_http_add_easy(cf_http *h, CURL *easy, cf_http_easy_cb done, void *arg);

#endif

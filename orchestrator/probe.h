/*
 * probe.h - TLS handshake probes with SNI on the caller's libuv loop.
 *
 * A probe connects (non-blocking TCP, uv_poll_t on the socket), drives
 * SSL_connect by WANT_READ/WANT_WRITE, takes the peer's leaf certificate
 * and closes.  The chain is NOT verified for the scan itself: status must
 * report what a host serves even when it is self-signed or expired.  When
 * the request names a CA file, the result also says whether the served
 * chain verifies against it (and the domain), as a fact, not a failure.
 *
 * Every callback runs exactly once, after all of the probe's handles have
 * closed, so a caller may close its loop from the last callback.  A
 * function that returns an error never calls its callback.  Not
 * thread-safe: one loop thread per process (a process-wide SSL_CTX is made
 * on first use and kept until cf_probe_global_cleanup()).
 */
#ifndef CF_PROBE_H
#define CF_PROBE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "cf.h"

struct cf_probe_req {
    const char *host;    /* inventory name, for messages (may be NULL) */
    const char *address; /* IP literal or DNS name to connect to */
    int port;            /* 0 = 443 */
    const char *sni;     /* server name sent and checked; NULL = none */
    unsigned timeout_ms; /* whole probe (resolve+connect+handshake); 0 = 10 s */
    const char *ca_file; /* optional: report whether the chain verifies */
};

struct cf_probe_result {
    int status;            /* 0, CF_ECONNECT, CF_ETIMEDOUT, CF_EPROTO (or CF_ENOMEM) */
    char error[CF_ERRLEN]; /* names host, address:port and domain; "" on success */
    /* The leaf, valid when status == 0: */
    char serial[132];   /* canonical text (cf_x509_serial_hex), as `openssl x509 -serial` */
    char sha256[65];    /* lowercase hex SHA-256 of the leaf's DER */
    int64_t not_before; /* unix seconds */
    int64_t not_after;
    char issuer_cn[256];    /* issuer CN (or the whole issuer when it has no CN) */
    char subject[512];      /* one-line RFC 2253 subject */
    char sans[1024];        /* DNS SANs joined by ", "; truncated with "..." */
    int covers_sni;         /* 1 when the leaf covers req->sni (cf_x509_covers_name) */
    int verified;           /* 1 verifies against ca_file, 0 does not, -1 not asked */
    char verify_error[256]; /* why it did not verify, "" otherwise */
    char tls_version[16];   /* e.g. "TLSv1.3" */
    uint64_t elapsed_ms;    /* from start to the callback */
};

/* res is only valid during the callback. */
typedef void (*cf_probe_cb)(const struct cf_probe_result *res, void *arg);

/* Start one probe on loop.  The request's strings are copied.  Returns 0
 * (cb will run once) or CF_EINVAL / CF_ENOMEM with the reason in err (cb
 * will not run). */
int cf_probe_start(uv_loop_t *loop, const struct cf_probe_req *r, cf_probe_cb cb, void *arg,
                   char *err);

/*
 * Batch: n probes on loop, at most max_concurrent in flight (--forks), so
 * a scan of 1000 endpoints neither opens 1000 sockets at once nor waits for
 * the slowest host serially.  results[i] is filled for reqs[i]; the caller
 * owns both arrays and keeps them alive until done runs.  each (optional)
 * runs after every probe with its index, e.g. for progress.  done runs once
 * when all n have finished (also for n == 0, from a zero timer).
 */
typedef void (*cf_probe_each_cb)(size_t idx, const struct cf_probe_result *res, void *arg);
typedef void (*cf_probe_done_cb)(void *arg);
int cf_probe_batch(uv_loop_t *loop, const struct cf_probe_req *reqs, size_t n, int max_concurrent,
                   struct cf_probe_result *results, cf_probe_each_cb each, cf_probe_done_cb done,
                   void *arg, char *err);

/* Convenience for commands without a loop of their own: run the batch on a
 * private loop to the end and close it.  Returns 0 (each results[i] has its
 * own status) or CF_EINVAL / CF_ENOMEM with err set. */
int cf_probe_run(const struct cf_probe_req *reqs, size_t n, int max_concurrent,
                 struct cf_probe_result *results, char *err);

/*
 * Prove a deployment (issue 5): probe until the served leaf's serial equals
 * want_serial (canonical text, cf_x509_serial_hex; compared with strcmp)
 * or deadline_ms
 * passes, retrying every retry_ms (0 = 250 ms) because a reload takes a
 * moment to reach every nginx worker.  cb runs once with the last result;
 * its status is 0 when the serial matched, CF_EPROTO ("still serves serial
 * X, expected Y") when the host answered with another certificate until
 * the deadline, or the last probe's error.
 */
int cf_probe_expect_serial(uv_loop_t *loop, const struct cf_probe_req *r, const char *want_serial,
                           unsigned deadline_ms, unsigned retry_ms, cf_probe_cb cb, void *arg,
                           char *err);

/* Free the process-wide TLS context (for leak-checked tests). */
void cf_probe_global_cleanup(void);

#endif

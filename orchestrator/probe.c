/*
 * probe.c - TLS handshake probes on the loop (see probe.h).
 *
 * One probe is a small state machine: RESOLVE (only for names) -> CONNECT
 * (non-blocking connect, wait for POLLOUT, read SO_ERROR) -> HANDSHAKE
 * (SSL_do_handshake, wait for whatever OpenSSL says it wants) -> done.  A
 * uv_timer_t bounds the whole probe.  finish() is the only way to end a
 * probe; the callback runs from the last close callback so the caller sees
 * a probe with no live handles.
 */
#include "probe.h"
#include "util.h"
#include "x509.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#define DEFAULT_TIMEOUT_MS 10000u

enum phase { PH_RESOLVE, PH_CONNECT, PH_HANDSHAKE, PH_DONE };

struct probe {
    uv_loop_t *loop;
    uv_timer_t timer;
    uv_poll_t poll;
    uv_getaddrinfo_t gai;
    int poll_init;
    int gai_pending;
    int closing; /* handles still to close (or gai to come back) */
    int fd;
    SSL *ssl;
    enum phase phase;
    char *host, *address, *sni, *ca_file;
    int port;
    unsigned timeout_ms;
    char where[600]; /* "host 'h' (addr:port, domain 'd')" for messages */
    uint64_t start_ms;
    cf_probe_cb cb;
    void *arg;
    struct cf_probe_result res;
};

static SSL_CTX *g_ctx;
static X509_STORE *g_store; /* cache for the last CA file asked for */
static char *g_store_path;

void cf_probe_global_cleanup(void)
{
    SSL_CTX_free(g_ctx);
    g_ctx = NULL;
    X509_STORE_free(g_store);
    g_store = NULL;
    free(g_store_path);
    g_store_path = NULL;
}

/* One client context for every probe: no verification (status reports what
 * is served, even self-signed), no session cache (every probe must see the
 * real handshake), security level 0 so that even a weak certificate is
 * reported rather than refused. */
static SSL_CTX *client_ctx(void)
{
    if (g_ctx)
        return g_ctx;
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx)
        return NULL;
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_security_level(ctx, 0);
    SSL_CTX_set_min_proto_version(ctx, TLS1_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_TICKET);
    g_ctx = ctx;
    return ctx;
}

static X509_STORE *ca_store(const char *path, char *why, size_t whylen)
{
    if (g_store && g_store_path && !strcmp(g_store_path, path))
        return g_store;
    X509_STORE *st = X509_STORE_new();
    if (!st || X509_STORE_load_file(st, path) != 1) {
        snprintf(why, whylen, "cannot load CA file '%s'", path);
        X509_STORE_free(st);
        ERR_clear_error();
        return NULL;
    }
    X509_STORE_free(g_store);
    free(g_store_path);
    g_store = st;
    g_store_path = cf_strdup(path);
    return st;
}

/* The last OpenSSL error as text, or fallback. */
static void ssl_errtext(char *buf, size_t len, const char *fallback)
{
    unsigned long e = ERR_peek_last_error();
    if (e) {
        const char *reason = ERR_reason_error_string(e);
        snprintf(buf, len, "%s", reason ? reason : "unknown TLS error");
    } else {
        snprintf(buf, len, "%s", fallback);
    }
    ERR_clear_error();
}

static void probe_free(struct probe *p)
{
    if (p->fd >= 0)
        close(p->fd);
    SSL_free(p->ssl);
    free(p->host);
    free(p->address);
    free(p->sni);
    free(p->ca_file);
    free(p);
}

static void maybe_deliver(struct probe *p)
{
    if (p->closing > 0)
        return;
    p->res.elapsed_ms = cf_mono_ms() - p->start_ms;
    if (p->cb)
        p->cb(&p->res, p->arg);
    probe_free(p);
}

static void on_close(uv_handle_t *h)
{
    struct probe *p = h->data;
    p->closing--;
    maybe_deliver(p);
}

/* End the probe: record status and message, close every handle; the
 * callback runs once they are all closed. */
static void finish(struct probe *p, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void finish(struct probe *p, int status, const char *fmt, ...)
{
    if (p->phase == PH_DONE)
        return;
    p->phase = PH_DONE;
    p->res.status = status;
    if (status && fmt) {
        size_t len = sizeof p->res.error;
        int n = snprintf(p->res.error, len, "%s: ", p->where);
        if (n > 0 && (size_t)n < len) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(p->res.error + n, len - (size_t)n, fmt, ap);
            va_end(ap);
        }
    }
    if (p->ssl && status == 0) {
        /* A polite close_notify; its outcome does not matter. */
        SSL_shutdown(p->ssl);
        ERR_clear_error();
    }
    p->closing = 1;
    uv_close((uv_handle_t *)&p->timer, on_close);
    if (p->poll_init) {
        p->closing++;
        uv_close((uv_handle_t *)&p->poll, on_close);
    }
    if (p->gai_pending) {
        /* Either the cancel works (gai_cb sees UV_ECANCELED) or the lookup
         * is running in the thread pool and gai_cb comes later: both end in
         * gai_cb, which drops this count. */
        p->closing++;
        uv_cancel((uv_req_t *)&p->gai);
    }
}

static void copy_utf8(char *dst, size_t len, const ASN1_STRING *s)
{
    unsigned char *u = NULL;
    int n = ASN1_STRING_to_UTF8(&u, s);
    if (n < 0) {
        dst[0] = 0;
        return;
    }
    snprintf(dst, len, "%.*s", n, (const char *)u);
    OPENSSL_free(u);
}

static void name_oneline(char *dst, size_t len, const X509_NAME *name)
{
    BIO *b = BIO_new(BIO_s_mem());
    dst[0] = 0;
    if (!b)
        return;
    if (X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) >= 0) {
        char *data;
        long n = BIO_get_mem_data(b, &data);
        snprintf(dst, len, "%.*s", (int)n, data);
    }
    BIO_free(b);
}

static int64_t asn1_time_unix(const ASN1_TIME *t)
{
    struct tm tm;
    if (!t || ASN1_TIME_to_tm(t, &tm) != 1)
        return 0;
    return (int64_t)timegm(&tm);
}

static void collect_sans(char *dst, size_t len, X509 *x)
{
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    size_t used = 0;
    dst[0] = 0;
    for (int i = 0; gens && i < sk_GENERAL_NAME_num(gens); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        char one[300];
        if (g->type == GEN_DNS) {
            copy_utf8(one, sizeof one, g->d.dNSName);
        } else if (g->type == GEN_IPADD &&
                   (g->d.iPAddress->length == 4 || g->d.iPAddress->length == 16)) {
            inet_ntop(g->d.iPAddress->length == 4 ? AF_INET : AF_INET6, g->d.iPAddress->data, one,
                      sizeof one);
        } else {
            continue;
        }
        size_t need = strlen(one) + (used ? 2 : 0);
        if (used + need + 4 >= len) {
            snprintf(dst + used, len - used, "%s...", used ? ", " : "");
            break;
        }
        used += (size_t)snprintf(dst + used, len - used, "%s%s", used ? ", " : "", one);
    }
    GENERAL_NAMES_free(gens);
}

static int is_ip_literal(const char *s)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return s && (inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1);
}

/* Fill the result from the peer's leaf; the chain itself is only judged
 * when a CA file was given. */
static int take_leaf(struct probe *p)
{
    struct cf_probe_result *r = &p->res;
    X509 *x = SSL_get1_peer_certificate(p->ssl);
    if (!x)
        return -1;
    cf_x509_serial_hex(x, r->serial);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (X509_digest(x, EVP_sha256(), md, &mdlen) == 1)
        for (unsigned i = 0; i < mdlen && i < 32; i++)
            snprintf(r->sha256 + 2 * i, 3, "%02x", md[i]);
    r->not_before = asn1_time_unix(X509_get0_notBefore(x));
    r->not_after = asn1_time_unix(X509_get0_notAfter(x));
    const X509_NAME *issuer = X509_get_issuer_name(x);
    int idx = X509_NAME_get_index_by_NID(issuer, NID_commonName, -1);
    if (idx >= 0)
        copy_utf8(r->issuer_cn, sizeof r->issuer_cn,
                  X509_NAME_ENTRY_get_data(X509_NAME_get_entry(issuer, idx)));
    else
        name_oneline(r->issuer_cn, sizeof r->issuer_cn, issuer);
    name_oneline(r->subject, sizeof r->subject, X509_get_subject_name(x));
    collect_sans(r->sans, sizeof r->sans, x);
    /* the same matcher as the pre-push check, so status and apply agree */
    r->covers_sni = p->sni && *p->sni ? cf_x509_covers_name(x, p->sni) : 1;
    snprintf(r->tls_version, sizeof r->tls_version, "%s", SSL_get_version(p->ssl));

    r->verified = -1;
    if (p->ca_file && *p->ca_file) {
        X509_STORE *st = ca_store(p->ca_file, r->verify_error, sizeof r->verify_error);
        X509_STORE_CTX *vctx = st ? X509_STORE_CTX_new() : NULL;
        r->verified = 0;
        if (vctx && X509_STORE_CTX_init(vctx, st, x, SSL_get_peer_cert_chain(p->ssl)) == 1) {
            if (p->sni && *p->sni && !is_ip_literal(p->sni)) {
                X509_VERIFY_PARAM *vp = X509_STORE_CTX_get0_param(vctx);
                X509_VERIFY_PARAM_set_hostflags(vp, CF_X509_HOST_FLAGS);
                X509_VERIFY_PARAM_set1_host(vp, p->sni, 0);
            }
            if (X509_verify_cert(vctx) == 1)
                r->verified = 1;
            else
                snprintf(r->verify_error, sizeof r->verify_error, "%s",
                         X509_verify_cert_error_string(X509_STORE_CTX_get_error(vctx)));
        }
        X509_STORE_CTX_free(vctx);
        ERR_clear_error();
    }
    X509_free(x);
    return 0;
}

static void on_poll(uv_poll_t *h, int status, int events);

static void want(struct probe *p, int events)
{
    int rc = uv_poll_start(&p->poll, events, on_poll);
    if (rc)
        finish(p, CF_EPROTO, "cannot watch the socket: %s", uv_strerror(rc));
}

static void drive_handshake(struct probe *p)
{
    ERR_clear_error();
    errno = 0;
    int r = SSL_do_handshake(p->ssl);
    if (r == 1) {
        if (take_leaf(p) != 0)
            finish(p, CF_EPROTO, "the server sent no certificate");
        else
            finish(p, 0, NULL);
        return;
    }
    int e = SSL_get_error(p->ssl, r);
    char why[256];
    switch (e) {
    case SSL_ERROR_WANT_READ:
        want(p, UV_READABLE);
        return;
    case SSL_ERROR_WANT_WRITE:
        want(p, UV_WRITABLE);
        return;
    case SSL_ERROR_ZERO_RETURN:
        finish(p, CF_EPROTO,
               "the server closed the connection during the TLS handshake; "
               "check that this port serves TLS");
        return;
    case SSL_ERROR_SYSCALL:
        if (errno && errno != EPIPE && errno != ECONNRESET) {
            finish(p, CF_EPROTO, "TLS handshake failed: %s", strerror(errno));
            return;
        }
        /* EOF or reset, possibly with an OpenSSL reason */
        __attribute__((fallthrough));
    default:
        ssl_errtext(why, sizeof why, "the connection was closed during the TLS handshake");
        finish(p, CF_EPROTO,
               "TLS handshake failed: %s; check that this port serves TLS for "
               "this name",
               why);
        return;
    }
}

static void start_tls(struct probe *p)
{
    SSL_CTX *ctx = client_ctx();
    p->ssl = ctx ? SSL_new(ctx) : NULL;
    if (!p->ssl || SSL_set_fd(p->ssl, p->fd) != 1) {
        ERR_clear_error();
        finish(p, CF_ENOMEM, "cannot set up TLS (out of memory)");
        return;
    }
    /* RFC 6066: no SNI for IP literals. */
    if (p->sni && *p->sni && !is_ip_literal(p->sni) &&
        SSL_set_tlsext_host_name(p->ssl, p->sni) != 1) {
        ERR_clear_error();
        finish(p, CF_EPROTO, "invalid server name for SNI");
        return;
    }
    SSL_set_connect_state(p->ssl);
    p->phase = PH_HANDSHAKE;
    drive_handshake(p);
}

static void fail_connect(struct probe *p, int err)
{
    if (err == ECONNREFUSED)
        finish(p, CF_ECONNECT,
               "connection refused; check that nginx is running and listens "
               "on port %d",
               p->port);
    else
        finish(p, CF_ECONNECT, "cannot connect: %s; check the address and that the host is up",
               strerror(err));
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    struct probe *p = h->data;
    if (p->phase == PH_CONNECT) {
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        if (getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0)
            soerr = errno;
        if (!soerr && status < 0)
            soerr = -status; /* libuv codes are negated errno on Unix */
        if (soerr) {
            fail_connect(p, soerr);
            return;
        }
        start_tls(p);
        return;
    }
    if (p->phase == PH_HANDSHAKE)
        drive_handshake(p);
}

static void connect_addr(struct probe *p, const struct sockaddr *sa, socklen_t salen)
{
    char ip[INET6_ADDRSTRLEN] = "";
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, ip, sizeof ip);
    else
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, ip, sizeof ip);
    p->fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (p->fd < 0) {
        finish(p, CF_ECONNECT, "cannot create a socket: %s", strerror(errno));
        return;
    }
    p->phase = PH_CONNECT;
    if (connect(p->fd, sa, salen) != 0 && errno != EINPROGRESS) {
        fail_connect(p, errno);
        return;
    }
    int rc = uv_poll_init_socket(p->loop, &p->poll, p->fd);
    if (rc) {
        finish(p, CF_ECONNECT, "cannot watch the socket: %s", uv_strerror(rc));
        return;
    }
    p->poll.data = p;
    p->poll_init = 1;
    want(p, UV_WRITABLE);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *ai)
{
    struct probe *p = req->data;
    p->gai_pending = 0;
    if (p->phase == PH_DONE) {
        /* finish() counted this lookup as one more thing to wait for. */
        uv_freeaddrinfo(ai);
        p->closing--;
        maybe_deliver(p);
        return;
    }
    if (status || !ai) {
        finish(p, CF_ECONNECT, "cannot resolve '%s': %s; check ansible_host", p->address,
               uv_strerror(status));
    } else {
        connect_addr(p, ai->ai_addr, ai->ai_addrlen);
    }
    uv_freeaddrinfo(ai);
}

static void on_timeout(uv_timer_t *t)
{
    struct probe *p = t->data;
    const char *stage = p->phase == PH_RESOLVE   ? "resolving the name"
                        : p->phase == PH_CONNECT ? "connecting"
                                                 : "the TLS handshake";
    finish(p, CF_ETIMEDOUT,
           "no answer within %u ms (stuck in %s); check that the host is up "
           "and that nothing filters port %d",
           p->timeout_ms, stage, p->port);
}

static void describe(struct probe *p)
{
    char ap[300];
    if (strchr(p->address, ':'))
        snprintf(ap, sizeof ap, "[%s]:%d", p->address, p->port);
    else
        snprintf(ap, sizeof ap, "%s:%d", p->address, p->port);
    const char *sni = p->sni && *p->sni ? p->sni : "-";
    if (p->host && *p->host)
        snprintf(p->where, sizeof p->where, "host '%s' (%s, domain '%s')", p->host, ap, sni);
    else
        snprintf(p->where, sizeof p->where, "'%s' (domain '%s')", ap, sni);
}

int cf_probe_start(uv_loop_t *loop, const struct cf_probe_req *r, cf_probe_cb cb, void *arg,
                   char *err)
{
    if (!loop || !r || !r->address || !*r->address || !cb)
        return cf_errf(err, "probe needs a loop, an address and a callback");
    if (r->port < 0 || r->port > 65535)
        return cf_errf(err, "invalid port %d for '%s'", r->port, r->address);
    if (!client_ctx())
        return cf_errf(err, "cannot create a TLS context (out of memory)");
    struct probe *p = cf_xcalloc(1, sizeof *p);
    p->loop = loop;
    p->fd = -1;
    p->host = r->host ? cf_strdup(r->host) : NULL;
    p->address = cf_strdup(r->address);
    p->sni = r->sni ? cf_strdup(r->sni) : NULL;
    p->ca_file = r->ca_file ? cf_strdup(r->ca_file) : NULL;
    p->port = r->port ? r->port : 443;
    p->timeout_ms = r->timeout_ms ? r->timeout_ms : DEFAULT_TIMEOUT_MS;
    p->cb = cb;
    p->arg = arg;
    p->start_ms = cf_mono_ms();
    p->res.verified = -1;
    describe(p);

    uv_timer_init(loop, &p->timer);
    p->timer.data = p;
    uv_timer_start(&p->timer, on_timeout, p->timeout_ms, 0);

    union {
        struct sockaddr sa;
        struct sockaddr_in in4;
        struct sockaddr_in6 in6;
    } sa;
    memset(&sa, 0, sizeof sa);
    if (inet_pton(AF_INET, p->address, &sa.in4.sin_addr) == 1) {
        sa.in4.sin_family = AF_INET;
        sa.in4.sin_port = htons((uint16_t)p->port);
        connect_addr(p, &sa.sa, sizeof sa.in4);
        return 0;
    }
    if (inet_pton(AF_INET6, p->address, &sa.in6.sin6_addr) == 1) {
        sa.in6.sin6_family = AF_INET6;
        sa.in6.sin6_port = htons((uint16_t)p->port);
        connect_addr(p, &sa.sa, sizeof sa.in6);
        return 0;
    }
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    char portstr[8];
    snprintf(portstr, sizeof portstr, "%d", p->port);
    p->gai.data = p;
    int rc = uv_getaddrinfo(loop, &p->gai, on_resolved, p->address, portstr, &hints);
    if (rc) {
        /* Contract: an error return never calls cb. */
        p->cb = NULL;
        finish(p, CF_ECONNECT, NULL);
        return cf_errf(err, "cannot resolve '%s': %s", r->address, uv_strerror(rc));
    }
    p->gai_pending = 1;
    return 0;
}

/* ---- batch ---------------------------------------------------------- */

struct batch;
struct slot {
    struct batch *b;
    size_t idx;
};

struct batch {
    uv_loop_t *loop;
    uv_timer_t kick; /* starts the first probes from the loop, never inline */
    const struct cf_probe_req *reqs;
    struct cf_probe_result *results;
    struct slot *slots;
    size_t n, next, finished;
    int inflight, max;
    cf_probe_each_cb each;
    cf_probe_done_cb done;
    void *arg;
};

static void batch_closed(uv_handle_t *h)
{
    struct batch *b = h->data;
    cf_probe_done_cb done = b->done;
    void *arg = b->arg;
    free(b->slots);
    free(b);
    if (done)
        done(arg);
}

static void batch_pump(struct batch *b);

static void batch_one(const struct cf_probe_result *res, void *arg)
{
    struct slot *s = arg;
    struct batch *b = s->b;
    b->results[s->idx] = *res;
    b->inflight--;
    b->finished++;
    if (b->each)
        b->each(s->idx, &b->results[s->idx], b->arg);
    batch_pump(b);
}

static void batch_pump(struct batch *b)
{
    while (b->inflight < b->max && b->next < b->n) {
        size_t i = b->next++;
        char err[CF_ERRLEN];
        b->slots[i] = (struct slot){b, i};
        if (cf_probe_start(b->loop, &b->reqs[i], batch_one, &b->slots[i], err) == 0) {
            b->inflight++;
            continue;
        }
        struct cf_probe_result *r = &b->results[i];
        memset(r, 0, sizeof *r);
        r->status = CF_EINVAL;
        r->verified = -1;
        snprintf(r->error, sizeof r->error, "%s", err);
        b->finished++;
        if (b->each)
            b->each(i, r, b->arg);
    }
    if (b->finished == b->n && !uv_is_closing((uv_handle_t *)&b->kick))
        uv_close((uv_handle_t *)&b->kick, batch_closed);
}

static void batch_kick(uv_timer_t *t)
{
    batch_pump(t->data);
}

int cf_probe_batch(uv_loop_t *loop, const struct cf_probe_req *reqs, size_t n, int max_concurrent,
                   struct cf_probe_result *results, cf_probe_each_cb each, cf_probe_done_cb done,
                   void *arg, char *err)
{
    if (!loop || (n && (!reqs || !results)))
        return cf_errf(err, "probe batch needs a loop, requests and room for results");
    struct batch *b = cf_xcalloc(1, sizeof *b);
    b->loop = loop;
    b->reqs = reqs;
    b->results = results;
    b->slots = cf_xcalloc(n ? n : 1, sizeof *b->slots);
    b->n = n;
    b->max = max_concurrent > 0 ? max_concurrent : 50;
    b->each = each;
    b->done = done;
    b->arg = arg;
    uv_timer_init(loop, &b->kick);
    b->kick.data = b;
    uv_timer_start(&b->kick, batch_kick, 0, 0);
    return 0;
}

int cf_probe_run(const struct cf_probe_req *reqs, size_t n, int max_concurrent,
                 struct cf_probe_result *results, char *err)
{
    uv_loop_t loop;
    int rc = uv_loop_init(&loop);
    if (rc)
        return cf_errf(err, "cannot start an event loop: %s", uv_strerror(rc));
    rc = cf_probe_batch(&loop, reqs, n, max_concurrent, results, NULL, NULL, NULL, err);
    if (rc == 0)
        uv_run(&loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&loop) != 0 && rc == 0)
        rc = cf_errf(err, "event loop still had open handles after the scan");
    return rc;
}

/* ---- expect a serial ------------------------------------------------ */

struct expect {
    uv_loop_t *loop;
    uv_timer_t retry;
    struct cf_probe_req req; /* strings owned below */
    char *host, *address, *sni, *ca_file, *want;
    uint64_t deadline;
    unsigned retry_ms, deadline_ms;
    int attempts;
    cf_probe_cb cb;
    void *arg;
    struct cf_probe_result last;
};

static void expect_closed(uv_handle_t *h)
{
    struct expect *x = h->data;
    x->cb(&x->last, x->arg);
    free(x->host);
    free(x->address);
    free(x->sni);
    free(x->ca_file);
    free(x->want);
    free(x);
}

static void expect_attempt(uv_timer_t *t);

static void expect_result(const struct cf_probe_result *res, void *arg)
{
    struct expect *x = arg;
    x->last = *res;
    if (res->status == 0 && !strcmp(res->serial, x->want)) {
        uv_close((uv_handle_t *)&x->retry, expect_closed);
        return;
    }
    uint64_t now = cf_mono_ms();
    if (now + x->retry_ms < x->deadline) {
        uv_timer_start(&x->retry, expect_attempt, x->retry_ms, 0);
        return;
    }
    if (res->status == 0) {
        x->last.status = CF_EPROTO;
        const char *where = x->host ? x->host : x->address;
        snprintf(x->last.error, sizeof x->last.error,
                 "host '%s' (%s:%d, domain '%s'): still serves serial %s, expected %s after %u "
                 "ms and %d attempts; check that the reload reached nginx and that the server "
                 "block for this name uses the pushed certificate",
                 where, x->address, x->req.port ? x->req.port : 443, x->sni ? x->sni : "-",
                 res->serial, x->want, x->deadline_ms, x->attempts);
    }
    uv_close((uv_handle_t *)&x->retry, expect_closed);
}

static void expect_attempt(uv_timer_t *t)
{
    struct expect *x = t->data;
    char err[CF_ERRLEN];
    struct cf_probe_req r = x->req;
    uint64_t now = cf_mono_ms();
    unsigned left = x->deadline > now ? (unsigned)(x->deadline - now) : 1;
    if (!r.timeout_ms || r.timeout_ms > left)
        r.timeout_ms = left;
    x->attempts++;
    if (cf_probe_start(x->loop, &r, expect_result, x, err) != 0) {
        memset(&x->last, 0, sizeof x->last);
        x->last.status = CF_EINVAL;
        x->last.verified = -1;
        snprintf(x->last.error, sizeof x->last.error, "%s", err);
        uv_close((uv_handle_t *)&x->retry, expect_closed);
    }
}

int cf_probe_expect_serial(uv_loop_t *loop, const struct cf_probe_req *r, const char *want_serial,
                           unsigned deadline_ms, unsigned retry_ms, cf_probe_cb cb, void *arg,
                           char *err)
{
    if (!loop || !r || !r->address || !*r->address || !want_serial || !*want_serial || !cb)
        return cf_errf(err, "expecting a serial needs a loop, an address, a serial and a "
                            "callback");
    struct expect *x = cf_xcalloc(1, sizeof *x);
    x->loop = loop;
    x->host = r->host ? cf_strdup(r->host) : NULL;
    x->address = cf_strdup(r->address);
    x->sni = r->sni ? cf_strdup(r->sni) : NULL;
    x->ca_file = r->ca_file ? cf_strdup(r->ca_file) : NULL;
    x->want = cf_strdup(want_serial);
    x->req = *r;
    x->req.host = x->host;
    x->req.address = x->address;
    x->req.sni = x->sni;
    x->req.ca_file = x->ca_file;
    x->deadline_ms = deadline_ms ? deadline_ms : 20000;
    x->deadline = cf_mono_ms() + x->deadline_ms;
    x->retry_ms = retry_ms ? retry_ms : 250;
    x->cb = cb;
    x->arg = arg;
    uv_timer_init(loop, &x->retry);
    x->retry.data = x;
    uv_timer_start(&x->retry, expect_attempt, 0, 0);
    return 0;
}

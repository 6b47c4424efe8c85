/*
 * http.c - libcurl multi on the caller's libuv loop (see http.h).
 *
 * The structure follows curl's docs/examples/multi-uv.c: libcurl tells us
 * which sockets to watch (CURLMOPT_SOCKETFUNCTION -> one uv_poll_t per
 * socket) and when to call it back (CURLMOPT_TIMERFUNCTION -> one
 * uv_timer_t); every readiness event is handed to curl_multi_socket_action
 * and finished transfers are collected with curl_multi_info_read.
 *
 * Lifetime: every libuv handle is embedded in the struct that owns it and
 * that struct is freed only in the close callback.  The cf_http itself is
 * freed when its last handle (timer and sockets) has closed, so a caller
 * that runs the loop after cf_http_free() sees it end with nothing leaked.
 */
#include "cf.h"
#include "http.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define HTTP_DEFAULT_TIMEOUT_MS 30000L
#define HTTP_DEFAULT_MAX_BODY   (1024 * 1024)
#define HTTP_MAX_HEADERS        200
#define HTTP_MAX_HEADER_BYTES   (64 * 1024)

struct sock_ctx {
    uv_poll_t poll; /* first: the close callback casts back */
    curl_socket_t fd;
    struct cf_http *h;
    struct sock_ctx *prev, *next;
};

struct header {
    char *name;
    char *value;
};

/* A transfer: either a request made here (resp + cb) or a caller's easy
 * handle (easy_cb). */
struct xfer {
    struct cf_http_response resp; /* first: cf_http_header casts back */
    struct header *hdrs;
    size_t n_hdrs;
    size_t hdr_bytes;
    struct cf_buf body;
    size_t max_body;
    int too_large;
    CURL *easy;
    struct curl_slist *req_headers;
    struct curl_slist *resolve;
    char errbuf[CURL_ERROR_SIZE];
    char *method, *url; /* for messages */
    cf_http_cb cb;
    cf_http_easy_cb easy_cb;
    void *arg;
    struct cf_http *h;
    struct xfer *prev, *next;
};

struct cf_http {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;
    int open_handles; /* timer + sockets not yet closed */
    int closing;      /* cf_http_free was called */
    int dispatching;  /* inside a callback to the user */
    struct xfer *xfers;
    struct sock_ctx *socks;
};

static void http_maybe_release(struct cf_http *h)
{
    if (h->closing && h->open_handles == 0)
        free(h);
}

static void on_handle_closed(uv_handle_t *handle)
{
    struct cf_http *h = handle->data;
    h->open_handles--;
    if ((void *)handle != (void *)&h->timer)
        free(handle); /* a sock_ctx, poll is its first member */
    http_maybe_release(h);
}

static void sock_close(struct sock_ctx *s)
{
    struct cf_http *h = s->h;
    if (s->prev)
        s->prev->next = s->next;
    else
        h->socks = s->next;
    if (s->next)
        s->next->prev = s->prev;
    uv_poll_stop(&s->poll);
    s->poll.data = h;
    uv_close((uv_handle_t *)&s->poll, on_handle_closed);
}

/* Map libcurl's result to our codes; the detail goes to err. */
static int translate_curlcode(CURLcode c)
{
    switch (c) {
    case CURLE_OK:
        return 0;
    case CURLE_OPERATION_TIMEDOUT:
        return CF_ETIMEDOUT;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
        return CF_ECONNECT;
    case CURLE_OUT_OF_MEMORY:
        return CF_ENOMEM;
    case CURLE_READ_ERROR:
    case CURLE_FILE_COULDNT_READ_FILE:
        return CF_EIO;
    default:
        return CF_EPROTO;
    }
}

static void xfer_unlink(struct xfer *x)
{
    struct cf_http *h = x->h;
    if (x->prev)
        x->prev->next = x->next;
    else if (h->xfers == x)
        h->xfers = x->next;
    if (x->next)
        x->next->prev = x->prev;
    x->prev = x->next = NULL;
}

static void xfer_free(struct xfer *x)
{
    for (size_t i = 0; i < x->n_hdrs; i++) {
        free(x->hdrs[i].name);
        free(x->hdrs[i].value);
    }
    free(x->hdrs);
    cf_buf_release(&x->body);
    curl_slist_free_all(x->req_headers);
    curl_slist_free_all(x->resolve);
    free(x->method);
    free(x->url);
    free(x);
}

/* A caller's easy handle must not keep pointers into our xfer. */
static void easy_unborrow(CURL *easy)
{
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, NULL);
    curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
}

/* Deliver the result of one transfer: it has been removed from the multi. */
static void xfer_finish(struct xfer *x, CURLcode code)
{
    struct cf_http *h = x->h;
    int status = translate_curlcode(code);
    const char *detail = x->errbuf[0] ? x->errbuf : curl_easy_strerror(code);

    xfer_unlink(x);
    h->dispatching++;
    if (x->easy_cb) {
        /* the caller owns the easy handle; we only borrowed it */
        cf_http_easy_cb cb = x->easy_cb;
        CURL *easy = x->easy;
        void *arg = x->arg;
        char msg[CURL_ERROR_SIZE];
        snprintf(msg, sizeof msg, "%s", status ? detail : "");
        easy_unborrow(easy);
        xfer_free(x);
        cb(easy, status, msg, arg);
        h->dispatching--;
        return;
    }
    if (code == CURLE_WRITE_ERROR && x->too_large) {
        status = CF_EPROTO;
        snprintf(x->resp.error, sizeof x->resp.error,
                 "%s '%s': response body larger than %zu bytes", x->method, x->url, x->max_body);
    } else if (status) {
        snprintf(x->resp.error, sizeof x->resp.error, "%s '%s': %s", x->method, x->url, detail);
    }
    if (status == 0) {
        curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &x->resp.status);
    }
    x->resp.body = x->body.data ? x->body.data : "";
    x->resp.body_len = x->body.len;
    curl_easy_cleanup(x->easy);
    x->easy = NULL;
    x->cb(status, &x->resp, x->arg);
    xfer_free(x);
    h->dispatching--;
}

static void check_multi_info(struct cf_http *h)
{
    CURLMsg *msg;
    int pending;
    while (!h->closing && (msg = curl_multi_info_read(h->multi, &pending))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURL *easy = msg->easy_handle;
        CURLcode code = msg->data.result;
        struct xfer *x = NULL;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&x);
        curl_multi_remove_handle(h->multi, easy);
        xfer_finish(x, code);
    }
}

static void teardown(struct cf_http *h);

/* After any call into libcurl that may finish transfers. */
static void after_action(struct cf_http *h)
{
    check_multi_info(h);
    if (h->closing && h->dispatching == 0 && h->multi)
        teardown(h);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    struct sock_ctx *s = (struct sock_ctx *)p;
    struct cf_http *h = s->h;
    int flags = 0, running;
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    /* s may be closed by the socket callback inside; do not touch it after */
    curl_multi_socket_action(h->multi, s->fd, flags, &running);
    after_action(h);
}

static void on_timer(uv_timer_t *t)
{
    struct cf_http *h = t->data;
    int running;
    curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    after_action(h);
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    struct cf_http *h = userp;
    if (uv_is_closing((uv_handle_t *)&h->timer))
        return 0;
    if (timeout_ms < 0)
        uv_timer_stop(&h->timer);
    else
        uv_timer_start(&h->timer, on_timer, (uint64_t)timeout_ms, 0);
    return 0;
}

static int socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    struct cf_http *h = userp;
    struct sock_ctx *s = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (s) {
            curl_multi_assign(h->multi, fd, NULL);
            sock_close(s);
        }
        return 0;
    }
    if (!s) {
        s = cf_xcalloc(1, sizeof *s);
        s->fd = fd;
        s->h = h;
        if (uv_poll_init_socket(h->loop, &s->poll, fd) != 0) {
            free(s);
            return -1;
        }
        s->poll.data = h;
        h->open_handles++;
        s->next = h->socks;
        if (h->socks)
            h->socks->prev = s;
        h->socks = s;
        curl_multi_assign(h->multi, fd, s);
    }
    int ev = 0;
    if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
        ev |= UV_READABLE;
    if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
        ev |= UV_WRITABLE;
    uv_poll_start(&s->poll, ev, on_poll);
    return 0;
}

int cf_http_new(uv_loop_t *loop, cf_http **out)
{
    *out = NULL;
    static int global_done;
    if (!global_done) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
            return CF_ENOMEM;
        global_done = 1;
    }
    struct cf_http *h = cf_xcalloc(1, sizeof *h);
    h->loop = loop;
    h->multi = curl_multi_init();
    if (!h->multi) {
        free(h);
        return CF_ENOMEM;
    }
    if (uv_timer_init(loop, &h->timer) != 0) {
        curl_multi_cleanup(h->multi);
        free(h);
        return CF_EIO;
    }
    h->timer.data = h;
    h->open_handles = 1;
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
    *out = h;
    return 0;
}

/* Cancel every transfer (callbacks get CF_ECANCELED), drop the multi and
 * close the libuv handles; h is freed by the last close callback. */
static void teardown(struct cf_http *h)
{
    h->dispatching++; /* callbacks below must not re-enter teardown */
    while (h->xfers) {
        struct xfer *x = h->xfers;
        curl_multi_remove_handle(h->multi, x->easy);
        xfer_unlink(x);
        if (x->easy_cb) {
            cf_http_easy_cb cb = x->easy_cb;
            CURL *easy = x->easy;
            void *arg = x->arg;
            easy_unborrow(easy);
            xfer_free(x);
            cb(easy, CF_ECANCELED, "canceled", arg);
        } else {
            x->resp.status = 0;
            x->resp.body = x->body.data ? x->body.data : "";
            x->resp.body_len = x->body.len;
            snprintf(x->resp.error, sizeof x->resp.error, "%s '%s': canceled", x->method, x->url);
            curl_easy_cleanup(x->easy);
            x->easy = NULL;
            x->cb(CF_ECANCELED, &x->resp, x->arg);
            xfer_free(x);
        }
    }
    curl_multi_cleanup(h->multi); /* may call socket_cb with REMOVE */
    h->multi = NULL;
    while (h->socks)
        sock_close(h->socks);
    uv_timer_stop(&h->timer);
    uv_close((uv_handle_t *)&h->timer, on_handle_closed);
    h->dispatching--;
}

void cf_http_free(cf_http *h)
{
    if (!h || h->closing)
        return;
    h->closing = 1;
    /* From inside one of our callbacks the multi is still being walked:
     * after_action() finishes the job when the callback returns. */
    if (h->dispatching == 0)
        teardown(h);
}

static size_t on_write(char *p, size_t size, size_t n, void *userp)
{
    struct xfer *x = userp;
    size_t len = size * n;
    if (x->body.len + len > x->max_body) {
        x->too_large = 1;
        return 0; /* CURLE_WRITE_ERROR */
    }
    cf_buf_append(&x->body, p, len);
    return len;
}

static void headers_reset(struct xfer *x)
{
    for (size_t i = 0; i < x->n_hdrs; i++) {
        free(x->hdrs[i].name);
        free(x->hdrs[i].value);
    }
    x->n_hdrs = 0;
    x->hdr_bytes = 0;
}

static void header_add(struct xfer *x, const char *name, size_t nlen, const char *v, size_t vlen)
{
    while (vlen && (v[0] == ' ' || v[0] == '\t')) {
        v++;
        vlen--;
    }
    while (vlen && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
        vlen--;
    if (x->n_hdrs >= HTTP_MAX_HEADERS)
        return;
    x->hdrs = cf_xrealloc(x->hdrs, (x->n_hdrs + 1) * sizeof *x->hdrs);
    x->hdrs[x->n_hdrs].name = strndup(name, nlen);
    x->hdrs[x->n_hdrs].value = strndup(v, vlen);
    if (!x->hdrs[x->n_hdrs].name || !x->hdrs[x->n_hdrs].value) {
        free(x->hdrs[x->n_hdrs].name);
        free(x->hdrs[x->n_hdrs].value);
        return;
    }
    x->n_hdrs++;
}

/* Split a Link header value on commas that are outside <...> and quotes,
 * so each link becomes its own entry (RFC 8288 allows several per line). */
static void header_add_links(struct xfer *x, const char *name, size_t nlen, const char *v,
                             size_t vlen)
{
    size_t start = 0;
    int in_uri = 0, in_quote = 0;
    for (size_t i = 0; i <= vlen; i++) {
        char c = i < vlen ? v[i] : ',';
        if (in_quote) {
            if (c == '"')
                in_quote = 0;
            continue;
        }
        if (c == '<')
            in_uri = 1;
        else if (c == '>')
            in_uri = 0;
        else if (c == '"' && !in_uri)
            in_quote = 1;
        else if (c == ',' && !in_uri) {
            size_t len = i - start;
            const char *p = v + start;
            while (len && (*p == ' ' || *p == '\t')) {
                p++;
                len--;
            }
            if (len)
                header_add(x, name, nlen, p, len);
            start = i + 1;
        }
    }
}

static size_t on_header(char *p, size_t size, size_t n, void *userp)
{
    struct xfer *x = userp;
    size_t len = size * n;
    x->hdr_bytes += len;
    if (x->hdr_bytes > HTTP_MAX_HEADER_BYTES)
        return 0; /* abort: a server flooding us with headers */
    if (len >= 5 && strncmp(p, "HTTP/", 5) == 0) {
        headers_reset(x); /* a new response (after 1xx): start over */
        x->hdr_bytes = len;
        return len;
    }
    while (len && (p[len - 1] == '\n' || p[len - 1] == '\r'))
        len--;
    const char *colon = memchr(p, ':', len);
    if (!colon || colon == p)
        return size * n;
    size_t nlen = (size_t)(colon - p);
    const char *v = colon + 1;
    size_t vlen = len - nlen - 1;
    if (nlen == 4 && strncasecmp(p, "link", 4) == 0)
        header_add_links(x, p, nlen, v, vlen);
    else
        header_add(x, p, nlen, v, vlen);
    return size * n;
}

const char *cf_http_header(const struct cf_http_response *r, const char *name, size_t idx)
{
    if (!r || !name)
        return NULL;
    const struct xfer *x = (const struct xfer *)r;
    for (size_t i = 0; i < x->n_hdrs; i++) {
        if (strcasecmp(x->hdrs[i].name, name) != 0)
            continue;
        if (idx == 0)
            return x->hdrs[i].value;
        idx--;
    }
    return NULL;
}

static int xfer_add(struct cf_http *h, struct xfer *x)
{
    curl_easy_setopt(x->easy, CURLOPT_PRIVATE, x);
    x->h = h;
    x->next = h->xfers;
    if (h->xfers)
        h->xfers->prev = x;
    h->xfers = x;
    if (curl_multi_add_handle(h->multi, x->easy) != CURLM_OK) {
        xfer_unlink(x);
        return CF_ENOMEM;
    }
    return 0;
}

int cf_http_request(cf_http *h, const struct cf_http_request *req, cf_http_cb cb, void *arg)
{
    if (!h || h->closing)
        return CF_ECANCELED;
    if (!req || !req->url || !cb)
        return CF_EINVAL;
    const char *method = req->method ? req->method : "GET";
    struct xfer *x = cf_xcalloc(1, sizeof *x);
    x->easy = curl_easy_init();
    if (!x->easy) {
        free(x);
        return CF_ENOMEM;
    }
    x->cb = cb;
    x->arg = arg;
    x->max_body = req->max_body ? req->max_body : HTTP_DEFAULT_MAX_BODY;
    x->method = cf_strdup(method);
    x->url = cf_strdup(req->url);
    CURL *e = x->easy;
    curl_easy_setopt(e, CURLOPT_URL, req->url);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "certfleet/0.1 (libcurl)");
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS,
                     req->timeout_ms > 0 ? req->timeout_ms : HTTP_DEFAULT_TIMEOUT_MS);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
    if (req->fresh_connection) {
        curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 1L);
        curl_easy_setopt(e, CURLOPT_FORBID_REUSE, 1L);
    }
    if (req->ca_bundle)
        curl_easy_setopt(e, CURLOPT_CAINFO, req->ca_bundle);
    if (req->resolve) {
        x->resolve = curl_slist_append(NULL, req->resolve);
        curl_easy_setopt(e, CURLOPT_RESOLVE, x->resolve);
    }
    if (strcmp(method, "GET") == 0) {
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    } else if (strcmp(method, "HEAD") == 0) {
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    } else {
        if (strcmp(method, "POST") != 0)
            curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
        curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, req->body ? (const char *)req->body : "");
    }
    for (const char *const *hp = req->headers; hp && *hp; hp++)
        x->req_headers = curl_slist_append(x->req_headers, *hp);
    /* no "Expect: 100-continue" round trip on POST */
    x->req_headers = curl_slist_append(x->req_headers, "Expect:");
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->req_headers);

    int rc = xfer_add(h, x);
    if (rc) {
        curl_easy_cleanup(x->easy);
        xfer_free(x);
    }
    return rc;
}

int cf_http_add_easy(cf_http *h, CURL *easy, cf_http_easy_cb done, void *arg)
{
    if (!h || h->closing)
        return CF_ECANCELED;
    if (!easy || !done)
        return CF_EINVAL;
    struct xfer *x = cf_xcalloc(1, sizeof *x);
    x->easy = easy;
    x->easy_cb = done;
    x->arg = arg;
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, x->errbuf);
    int rc = xfer_add(h, x);
    if (rc)
        xfer_free(x);
    return rc;
}

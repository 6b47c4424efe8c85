/*
 * test_http.c - cf_http against a tiny HTTP server on the same libuv loop
 * (127.0.30.1, ephemeral port): status, body, headers, Link splitting,
 * body cap, timeout, refused connection, POST, CURLOPT_RESOLVE, many
 * requests at once, and cancelation with a loop that closes clean.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cf.h"
#include "http.h"
#include "util.h"

#define SRV_ADDR "127.0.30.1"

struct srv {
    uv_tcp_t tcp;
    int port;
};

struct conn {
    uv_tcp_t tcp;
    struct cf_buf req;
    char *out; /* reply being written */
    int answered;
    struct conn *prev, *next;
};

static struct conn *conns; /* open server-side connections */

static void conn_closed(uv_handle_t *h)
{
    struct conn *c = h->data;
    if (c->prev)
        c->prev->next = c->next;
    else
        conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    cf_buf_release(&c->req);
    free(c->out);
    free(c);
}

static void wrote(uv_write_t *w, int status)
{
    struct conn *c = w->data;
    free(w);
    uv_close((uv_handle_t *)&c->tcp, conn_closed);
}

static void reply(struct conn *c, const char *head, const char *body, size_t body_len)
{
    char *hdr = cf_asprintf("%sContent-Length: %zu\r\nConnection: close\r\n\r\n", head, body_len);
    struct cf_buf out = CF_BUF_INIT;
    cf_buf_puts(&out, hdr);
    cf_buf_append(&out, body, body_len);
    free(hdr);
    uv_write_t *w = malloc(sizeof *w);
    w->data = c;
    size_t len;
    c->out = cf_buf_detach(&out, &len);
    uv_buf_t b = uv_buf_init(c->out, (unsigned)len);
    uv_write(w, (uv_stream_t *)&c->tcp, &b, 1, wrote);
}

static void alloc_cb(uv_handle_t *h, size_t sz, uv_buf_t *b)
{
    b->base = malloc(sz);
    b->len = sz;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    struct conn *c = s->data;
    if (n > 0)
        cf_buf_append(&c->req, b->base, (size_t)n);
    free(b->base);
    if (n < 0) {
        if (!uv_is_closing((uv_handle_t *)s))
            uv_close((uv_handle_t *)s, conn_closed);
        return;
    }
    if (c->answered || !c->req.data)
        return;
    char *end = strstr(c->req.data, "\r\n\r\n");
    if (!end)
        return;
    const char *cl = strcasestr(c->req.data, "content-length:");
    size_t want = cl ? (size_t)atol(cl + 15) : 0;
    if (c->req.len < (size_t)(end + 4 - c->req.data) + want)
        return;
    c->answered = 1;
    uv_read_stop(s);
    const char *r = c->req.data;
    if (strncmp(r, "GET /hello ", 11) == 0) {
        reply(c,
              "HTTP/1.1 200 OK\r\nReplay-Nonce: abc\r\nX-Multi: one\r\nX-Multi: two\r\n"
              "Link: <https://x/a>;rel=\"alternate\", <https://x/b,c>;rel=\"alternate\"\r\n"
              "Link: <https://x/dir>;rel=\"index\"\r\n",
              "hello world", 11);
    } else if (strncmp(r, "GET /big ", 9) == 0) {
        char *big = malloc(100000);
        memset(big, 'x', 100000);
        reply(c, "HTTP/1.1 200 OK\r\n", big, 100000);
        free(big);
    } else if (strncmp(r, "GET /hang ", 10) == 0) {
        /* never answer; the client's timeout must fire */
    } else if (strncmp(r, "POST /echo ", 11) == 0) {
        char *host = strcasestr(r, "\r\nhost:");
        char *hend = host ? strstr(host + 2, "\r\n") : NULL;
        struct cf_buf body = CF_BUF_INIT;
        if (host && hend)
            cf_buf_append(&body, host + 2, (size_t)(hend - host - 2));
        cf_buf_puts(&body, "|");
        cf_buf_puts(&body, end + 4);
        reply(c, "HTTP/1.1 201 Created\r\n", body.data, body.len);
        cf_buf_release(&body);
    } else {
        reply(c, "HTTP/1.1 404 Not Found\r\n", "nope", 4);
    }
}

static void on_conn(uv_stream_t *server, int status)
{
    struct conn *c = calloc(1, sizeof *c);
    uv_tcp_init(server->loop, &c->tcp);
    c->tcp.data = c;
    c->next = conns;
    if (conns)
        conns->prev = c;
    conns = c;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        uv_close((uv_handle_t *)&c->tcp, conn_closed);
        return;
    }
    uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, on_read);
}

static void srv_start(uv_loop_t *loop, struct srv *s)
{
    struct sockaddr_in a;
    uv_ip4_addr(SRV_ADDR, 0, &a);
    assert_int_equal(uv_tcp_init(loop, &s->tcp), 0);
    assert_int_equal(uv_tcp_bind(&s->tcp, (struct sockaddr *)&a, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&s->tcp, 128, on_conn), 0);
    struct sockaddr_in got;
    int len = sizeof got;
    uv_tcp_getsockname(&s->tcp, (struct sockaddr *)&got, &len);
    s->port = ntohs(got.sin_port);
}

/* Close the server and its connections, then check that the loop ends
 * with no handle left: a leaked cf_http handle would fail here. */
static void finish_loop(uv_loop_t *loop, struct srv *s)
{
    uv_close((uv_handle_t *)&s->tcp, NULL);
    for (struct conn *c = conns; c; c = c->next)
        if (!uv_is_closing((uv_handle_t *)&c->tcp))
            uv_close((uv_handle_t *)&c->tcp, conn_closed);
    uv_run(loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(loop), 0);
}

struct result {
    int done;
    int status;
    long http;
    char body[256];
    char error[CF_ERRLEN];
    char nonce[64], multi1[16], multi2[16], link0[64], link1[64], link2[64];
    int has_link3;
    cf_http *free_on_done;
};

static void copy(char *dst, size_t n, const char *src)
{
    snprintf(dst, n, "%s", src ? src : "(null)");
}

static void on_done(int status, struct cf_http_response *r, void *arg)
{
    struct result *res = arg;
    res->done++;
    res->status = status;
    res->http = r->status;
    copy(res->body, sizeof res->body, r->body);
    copy(res->error, sizeof res->error, r->error);
    copy(res->nonce, sizeof res->nonce, cf_http_header(r, "replay-nonce", 0));
    copy(res->multi1, sizeof res->multi1, cf_http_header(r, "X-MULTI", 0));
    copy(res->multi2, sizeof res->multi2, cf_http_header(r, "x-multi", 1));
    copy(res->link0, sizeof res->link0, cf_http_header(r, "Link", 0));
    copy(res->link1, sizeof res->link1, cf_http_header(r, "link", 1));
    copy(res->link2, sizeof res->link2, cf_http_header(r, "link", 2));
    res->has_link3 = cf_http_header(r, "link", 3) != NULL;
    if (res->free_on_done)
        cf_http_free(res->free_on_done);
}

static char *url(struct srv *s, const char *path)
{
    return cf_asprintf("http://" SRV_ADDR ":%d%s", s->port, path);
}

static void test_get_headers_links(void **state)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct srv s;
    srv_start(&loop, &s);
    cf_http *h;
    assert_int_equal(cf_http_new(&loop, &h), 0);
    struct result res = {0};
    res.free_on_done = h; /* freeing from inside the callback must be safe */
    char *u = url(&s, "/hello");
    struct cf_http_request req = {.method = "GET", .url = u};
    assert_int_equal(cf_http_request(h, &req, on_done, &res), 0);
    while (!res.done)
        uv_run(&loop, UV_RUN_ONCE);
    assert_int_equal(res.done, 1);
    assert_int_equal(res.status, 0);
    assert_int_equal(res.http, 200);
    assert_string_equal(res.body, "hello world");
    assert_string_equal(res.nonce, "abc");
    assert_string_equal(res.multi1, "one");
    assert_string_equal(res.multi2, "two");
    assert_string_equal(res.link0, "<https://x/a>;rel=\"alternate\"");
    assert_string_equal(res.link1, "<https://x/b,c>;rel=\"alternate\"");
    assert_string_equal(res.link2, "<https://x/dir>;rel=\"index\"");
    assert_false(res.has_link3);
    free(u);
    finish_loop(&loop, &s);
}

static void test_body_cap_timeout_refused(void **state)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct srv s;
    srv_start(&loop, &s);
    cf_http *h;
    assert_int_equal(cf_http_new(&loop, &h), 0);
    struct result big = {0}, hang = {0}, refused = {0}, notfound = {0};
    char *u1 = url(&s, "/big"), *u2 = url(&s, "/hang"), *u4 = url(&s, "/missing");
    struct cf_http_request r1 = {.url = u1, .max_body = 4096};
    struct cf_http_request r2 = {.url = u2, .timeout_ms = 300};
    /* nothing listens on port 9 of our test address */
    struct cf_http_request r3 = {.url = "http://" SRV_ADDR ":9/x"};
    struct cf_http_request r4 = {.url = u4};
    assert_int_equal(cf_http_request(h, &r1, on_done, &big), 0);
    assert_int_equal(cf_http_request(h, &r2, on_done, &hang), 0);
    assert_int_equal(cf_http_request(h, &r3, on_done, &refused), 0);
    assert_int_equal(cf_http_request(h, &r4, on_done, &notfound), 0);
    while (!(big.done && hang.done && refused.done && notfound.done))
        uv_run(&loop, UV_RUN_ONCE);
    assert_int_equal(big.status, CF_EPROTO);
    assert_non_null(strstr(big.error, "larger than 4096 bytes"));
    assert_non_null(strstr(big.error, "/big"));
    assert_int_equal(hang.status, CF_ETIMEDOUT);
    assert_int_equal(refused.status, CF_ECONNECT);
    assert_int_equal(notfound.status, 0);
    assert_int_equal(notfound.http, 404);
    assert_string_equal(notfound.body, "nope");
    cf_http_free(h);
    free(u1);
    free(u2);
    free(u4);
    finish_loop(&loop, &s);
}

static void test_post_resolve_many(void **state)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct srv s;
    srv_start(&loop, &s);
    cf_http *h;
    assert_int_equal(cf_http_new(&loop, &h), 0);
    struct result res[20];
    memset(res, 0, sizeof res);
    char *u = cf_asprintf("http://acme.invalid:%d/echo", s.port);
    char *resolve = cf_asprintf("acme.invalid:%d:" SRV_ADDR, s.port);
    const char *hdrs[] = {"Content-Type: application/jose+json", NULL};
    for (int i = 0; i < 20; i++) {
        char body[32];
        snprintf(body, sizeof body, "payload-%d", i);
        struct cf_http_request req = {.method = "POST",
                                      .url = u,
                                      .body = body,
                                      .body_len = strlen(body),
                                      .headers = hdrs,
                                      .resolve = resolve};
        assert_int_equal(cf_http_request(h, &req, on_done, &res[i]), 0);
    }
    int all;
    do {
        uv_run(&loop, UV_RUN_ONCE);
        all = 1;
        for (int i = 0; i < 20; i++)
            all &= res[i].done;
    } while (!all);
    for (int i = 0; i < 20; i++) {
        char want[64];
        snprintf(want, sizeof want, "Host: acme.invalid:%d|payload-%d", s.port, i);
        assert_int_equal(res[i].status, 0);
        assert_int_equal(res[i].http, 201);
        assert_string_equal(res[i].body, want);
    }
    cf_http_free(h);
    free(u);
    free(resolve);
    finish_loop(&loop, &s);
}

static void test_free_cancels(void **state)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct srv s;
    srv_start(&loop, &s);
    cf_http *h;
    assert_int_equal(cf_http_new(&loop, &h), 0);
    struct result a = {0}, b = {0};
    char *u = url(&s, "/hang");
    struct cf_http_request req = {.url = u, .timeout_ms = 60000};
    assert_int_equal(cf_http_request(h, &req, on_done, &a), 0);
    assert_int_equal(cf_http_request(h, &req, on_done, &b), 0);
    /* let the connections reach the server */
    for (int i = 0; i < 20; i++)
        uv_run(&loop, UV_RUN_NOWAIT);
    cf_http_free(h);
    assert_int_equal(a.done, 1);
    assert_int_equal(b.done, 1);
    assert_int_equal(a.status, CF_ECANCELED);
    assert_non_null(strstr(a.error, "canceled"));
    free(u);
    finish_loop(&loop, &s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_headers_links),
        cmocka_unit_test(test_body_cap_timeout_refused),
        cmocka_unit_test(test_post_resolve_many),
        cmocka_unit_test(test_free_cancels),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

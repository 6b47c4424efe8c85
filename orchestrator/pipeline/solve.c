/*
 * solve.c - the ACME solver: an HTTP-01 token on every prepared host of
 * the certificate (checked over HTTP before the CA is told), or a DNS-01
 * record through certbot_dns_hook.  A struct tok lives until its last
 * host or process has settled; every handle it embeds is closed before
 * it is freed.
 */
#include "pipeline_int.h"
#include "journal.h"
#include "util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct tok {
    struct rcert *c;
    char *type, *identifier, *token, *keyauth, *dns_value;
    cf_acme_solver_done done;
    void *ctx;
    int cleanup;
    size_t pending;
    int failed;
    char err[CF_ERRLEN];
    uv_process_t proc;
    uv_timer_t timer;
};

struct tokhost {
    struct tok *t;
    struct rhost *h;
    size_t idx; /* host index within the certificate */
    struct cf_hostq *q;
    int misses;       /* fetches that did not get the token */
    int confirmed;    /* consecutive fetches that got it */
    uv_timer_t retry; /* between fetches; closed before th is freed */
};

/* A reload (`nginx -s reload`, a HUP) returns before the master has read
 * the new configuration, and workers of the old one keep accepting new
 * connections until they have been told to stop: one good answer does not
 * prove that the next connection, the CA's, meets a new worker (the CA
 * fetches several times, Let's Encrypt from several places).  So the CA is
 * told only after TOKEN_CONFIRMATIONS good answers in a row, each on a
 * connection of its own, TOKEN_CONFIRM_GAP_MS apart; a wrong answer starts
 * the count again, and TOKEN_FETCH_MISSES of them fail the host. */
#define TOKEN_CONFIRMATIONS  3
#define TOKEN_CONFIRM_GAP_MS 150
#define TOKEN_FETCH_MISSES   10
#define TOKEN_FETCH_RETRY_MS 200

static int token_fetch(struct tokhost *th);

static void tok_free(struct tok *t)
{
    free(t->type);
    free(t->identifier);
    free(t->token);
    free(t->keyauth);
    free(t->dns_value);
    free(t);
}

static void tok_settle(struct tok *t)
{
    if (--t->pending)
        return;
    cf_acme_solver_done done = t->done;
    void *ctx = t->ctx;
    int st = t->failed ? CF_EPROTO : 0;
    char err[CF_ERRLEN];
    snprintf(err, sizeof err, "%s", t->err);
    tok_free(t);
    done(ctx, st, st ? err : NULL);
}

static void tok_fail(struct tok *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void tok_fail(struct tok *t, const char *fmt, ...)
{
    if (t->failed)
        return;
    t->failed = 1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->err, sizeof t->err, fmt, ap);
    va_end(ap);
}

static char *token_path(const struct tokhost *th)
{
    const struct hostcert *hc = th->t->c->hcs[th->idx];
    return cf_asprintf("%s/.well-known/acme-challenge/%s", hc->entry->webroot.path, th->t->token);
}

static char *token_url(const struct tokhost *th)
{
    const struct cf_host_config *cfg = th->h->cfg;
    return cf_asprintf("http://%s:%d/.well-known/acme-challenge/%s", cfg->address, cfg->http_port,
                       th->t->token);
}

static void on_retry_closed(uv_handle_t *hd)
{
    struct tokhost *th = hd->data;
    struct tok *t = th->t;
    free(th);
    tok_settle(t);
}

static void on_retry(uv_timer_t *tm)
{
    struct tokhost *th = tm->data;
    if (token_fetch(th) != 0) {
        tok_fail(th->t, "host '%s': could not start fetching the token", th->h->cfg->name);
        uv_close((uv_handle_t *)&th->retry, on_retry_closed);
    }
}

static void on_token_fetched(int status, struct cf_http_response *resp, void *arg)
{
    struct tokhost *th = arg;
    struct tok *t = th->t;
    size_t klen = strlen(t->keyauth);
    int good = status == 0 && resp->status == 200 && resp->body_len >= klen &&
               memcmp(resp->body, t->keyauth, klen) == 0;
    if (good && ++th->confirmed < TOKEN_CONFIRMATIONS) {
        uv_timer_start(&th->retry, on_retry, TOKEN_CONFIRM_GAP_MS, 0);
        return;
    }
    if (!good) {
        th->confirmed = 0;
        if (++th->misses < TOKEN_FETCH_MISSES) {
            uv_timer_start(&th->retry, on_retry, TOKEN_FETCH_RETRY_MS, 0);
            return;
        }
    }
    if (!good) {
        char *url = token_url(th);
        if (status != 0)
            tok_fail(t,
                     "host '%s' cannot serve the token for '%s': %s (%s); check that nginx "
                     "runs and includes the acme-challenge snippet",
                     th->h->cfg->name, t->identifier, url,
                     resp ? resp->error : cf_strerror(status));
        else
            tok_fail(t,
                     "host '%s' cannot serve the token for '%s': %s answered HTTP %ld%s; check "
                     "that nginx serves /.well-known/acme-challenge/ from '%s'",
                     th->h->cfg->name, t->identifier, url, resp->status,
                     resp->status == 200 ? " with other content" : "",
                     t->c->hcs[th->idx]->entry->webroot.raw);
        free(url);
    }
    uv_close((uv_handle_t *)&th->retry, on_retry_closed);
}

/* Fetch the token back the way the CA will, on a new connection, so a host
 * that cannot serve it fails here with its name and URL instead of as an
 * opaque CA error. */
static int token_fetch(struct tokhost *th)
{
    struct run *r = th->t->c->run;
    char *url = token_url(th);
    char host_hdr[300];
    snprintf(host_hdr, sizeof host_hdr, "Host: %s", th->t->identifier);
    const char *hdrs[] = {host_hdr, NULL};
    struct cf_http_request req = {.method = "GET",
                                  .url = url,
                                  .headers = hdrs,
                                  .timeout_ms = 10000,
                                  .max_body = 64 * 1024,
                                  .fresh_connection = 1};
    int rc = cf_http_request(r->http, &req, on_token_fetched, th);
    free(url);
    return rc;
}

/* One host's part of a token is over (written and fetched, removed, or
 * failed with detail): the only ending of a tokhost without a timer. */
static void tokhost_finish(struct tokhost *th, const char *detail)
{
    struct tok *t = th->t;
    struct cf_hostq *q = th->q;
    if (detail && !t->cleanup)
        tok_fail(t, "%s", detail);
    free(th);
    if (q)
        cf_hostq_done(q);
    tok_settle(t);
}

static void on_token_written(struct cf_rbatch *b, int status, void *arg)
{
    struct tokhost *th = arg;
    struct tok *t = th->t;
    struct run *r = t->c->run;
    const char *step = t->cleanup ? "removing the token" : "writing the token";
    char *e = status ? pl_host_error(th->h, step, status, b) : NULL;
    const char *be = status ? NULL : pl_batch_error(b, 0, cf_rbatch_count(b));
    if (be)
        e = cf_asprintf("host '%s': could not write the token for '%s': %s", th->h->cfg->name,
                        t->identifier, be);
    cf_rbatch_free(b);
    if (t->cleanup && !e) {
        char jerr[CF_ERRLEN];
        char *path = token_path(th);
        cf_journal_token_del(r->o->state_dir, th->h->cfg->name, path, jerr);
        free(path);
    }
    if (t->cleanup || e) {
        tokhost_finish(th, e);
        free(e);
        return;
    }
    cf_hostq_done(th->q);
    th->q = NULL;
    uv_timer_init(&r->loop, &th->retry);
    th->retry.data = th;
    if (token_fetch(th) != 0) {
        tok_fail(t, "host '%s': could not start fetching the token", th->h->cfg->name);
        uv_close((uv_handle_t *)&th->retry, on_retry_closed);
    }
}

static void job_token(struct cf_hostq *q, cf_ssh *s, int status, void *arg)
{
    struct tokhost *th = arg;
    struct tok *t = th->t;
    char err[CF_ERRLEN] = "";
    th->q = q;
    if (status != 0 || !s) {
        char *m = cf_asprintf("host '%s' is unreachable: %s", th->h->cfg->name, cf_hostq_error(q));
        tokhost_finish(th, m);
        free(m);
        return;
    }
    struct cf_rbatch *b = cf_rbatch_new();
    char *path = token_path(th);
    /* journaled before it exists, so a killed run's token is removed by
     * the next run's preparation of this host */
    int rc =
        t->cleanup ? 0 : cf_journal_token_add(t->c->run->o->state_dir, th->h->cfg->name, path, err);
    if (rc != 0) {
        cf_rbatch_free(b);
        free(path);
        char *m = cf_asprintf("host '%s': %s", th->h->cfg->name, err);
        tokhost_finish(th, m);
        free(m);
        return;
    }
    rc = t->cleanup
             ? cf_rbatch_remove(b, path, err)
             : cf_rbatch_write(b, path, t->keyauth, strlen(t->keyauth), 0644, NULL, NULL, err);
    free(path);
    if (rc < 0) {
        cf_rbatch_free(b);
        char *m = cf_asprintf("host '%s': %s", th->h->cfg->name, err);
        tokhost_finish(th, m);
        free(m);
        return;
    }
    if ((rc = cf_hostq_remote(q, b, on_token_written, th)) != 0)
        on_token_written(b, rc, th);
}

static void tok_fanout(struct tok *t)
{
    struct rcert *c = t->c;
    /* hostq never calls a job before cf_hostq_push returns, so the count
     * can be set as the jobs are queued; with no host, settle at once */
    t->pending = 0;
    for (size_t k = 0; k < c->n_hosts; k++) {
        struct rhost *h = c->hosts[k];
        if (!pl_host_ready(h))
            continue;
        struct tokhost *th = cf_xcalloc(1, sizeof *th);
        th->t = t;
        th->h = h;
        th->idx = k;
        t->pending++;
        cf_hostq_push(h->q, job_token, th);
    }
    if (t->pending == 0) {
        t->pending = 1;
        tok_settle(t);
    }
}

static void on_hook_timer_closed(uv_handle_t *hd)
{
    tok_settle(hd->data);
}

static void on_propagated(uv_timer_t *tm)
{
    uv_close((uv_handle_t *)tm, on_hook_timer_closed);
}

static void on_hook_closed(uv_handle_t *hd)
{
    struct tok *t = hd->data;
    struct rcert *c = t->c;
    const struct cf_host_config *cfg = c->fc->hosts[0];
    if (t->cleanup || t->failed || cfg->dns_propagation_seconds <= 0) {
        tok_settle(t);
        return;
    }
    /* Give the DNS servers time to see the record before the CA asks. */
    uv_timer_init(&c->run->loop, &t->timer);
    t->timer.data = t;
    uv_timer_start(&t->timer, on_propagated, (uint64_t)cfg->dns_propagation_seconds * 1000, 0);
}

static void on_hook_exit(uv_process_t *p, int64_t exit_status, int term_signal)
{
    struct tok *t = p->data;
    if ((exit_status != 0 || term_signal) && !t->cleanup)
        tok_fail(t, "dns hook '%s' failed for '%s' (exit status %lld)",
                 t->c->fc->hosts[0]->dns_hook, t->identifier, (long long)exit_status);
    uv_close((uv_handle_t *)p, on_hook_closed);
}

static void on_spawn_failed_closed(uv_handle_t *hd)
{
    tok_settle(hd->data);
}

/* DNS-01: certbot_dns_hook add|del NAME VALUE, run directly (no shell). */
static void tok_dns(struct tok *t)
{
    const char *hook = t->c->fc->hosts[0]->dns_hook;
    char *name = cf_asprintf("_acme-challenge.%s", t->identifier);
    char *args[] = {(char *)hook, t->cleanup ? "del" : "add", name, t->dns_value, NULL};
    uv_process_options_t po = {0};
    uv_stdio_container_t stdio[3] = {{.flags = UV_IGNORE},
                                     {.flags = UV_INHERIT_FD, .data.fd = 2},
                                     {.flags = UV_INHERIT_FD, .data.fd = 2}};
    po.file = hook;
    po.args = args;
    po.exit_cb = on_hook_exit;
    po.stdio = stdio;
    po.stdio_count = 3;
    t->proc.data = t;
    t->pending = 1;
    int rc = uv_spawn(&t->c->run->loop, &t->proc, &po);
    free(name);
    if (rc != 0) {
        if (!t->cleanup)
            tok_fail(t, "cannot run dns hook '%s': %s", hook, uv_strerror(rc));
        /* uv_spawn initialised the handle even though it failed: t may
         * only be freed once the handle has left the loop */
        uv_close((uv_handle_t *)&t->proc, on_spawn_failed_closed);
    }
}

static void tok_begin(void *arg, const struct cf_acme_challenge *ch, cf_acme_solver_done done,
                      void *ctx, int cleanup)
{
    struct rcert *c = arg;
    struct tok *t = cf_xcalloc(1, sizeof *t);
    t->c = c;
    t->type = cf_strdup(ch->type);
    t->identifier = cf_strdup(ch->identifier);
    t->token = cf_strdup(ch->token);
    t->keyauth = cf_strdup(ch->key_authorization);
    t->dns_value = cf_strdup(ch->dns_txt_value ? ch->dns_txt_value : "");
    t->done = done;
    t->ctx = ctx;
    t->cleanup = cleanup;
    /* Tokens become part of paths: only base64url, whatever the CA says. */
    if (!cf_acme_token_valid(t->token)) {
        t->pending = 1;
        if (!cleanup)
            tok_fail(t, "acme server sent an invalid token for '%s'", t->identifier);
        tok_settle(t);
        return;
    }
    if (!strcmp(t->type, "dns-01"))
        tok_dns(t);
    else
        tok_fanout(t);
}

void pl_solver_present(void *arg, const struct cf_acme_challenge *ch, cf_acme_solver_done done,
                       void *ctx)
{
    tok_begin(arg, ch, done, ctx, 0);
}

void pl_solver_cleanup(void *arg, const struct cf_acme_challenge *ch, cf_acme_solver_done done,
                       void *ctx)
{
    tok_begin(arg, ch, done, ctx, 1);
}

/*
 * prove.c - after a reload, TLS handshakes with each domain's SNI until
 * the host serves the new serial, then further rounds to be sure no
 * worker with the previous configuration still answers; else roll back.
 */
#include "pipeline_int.h"
#include "probe.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* After a reload nginx can still answer a handshake or two from a worker
 * with the previous configuration, so one matching handshake is weak
 * proof: the new serial must also be served in this many further rounds. */
#define PROVE_CONFIRM_ROUNDS 3
#define PROVE_CONFIRM_MS     200

static void push_prove_round(struct push *p);

static void prove_failed(struct push *p, const char *detail)
{
    char *why = cf_asprintf("reloaded, but the new certificate is not served: %s", detail);
    pl_push_rollback(p, why, 1);
    free(why);
}

static void prove_next_confirm(struct push *p);

static void on_confirmed(const struct cf_probe_result *res, void *arg)
{
    struct push *p = arg;
    if (res->status != 0 || !pl_crep(p->c)->serial ||
        strcmp(res->serial, pl_crep(p->c)->serial) != 0) {
        if (!p->confirm_bad++)
            snprintf(p->probe_err, sizeof p->probe_err,
                     "host '%s' served serial %s again after serving %s", p->h->cfg->name,
                     res->status ? "none" : res->serial, pl_crep(p->c)->serial);
    }
    if (--p->probes_left)
        return;
    if (p->confirm_bad) {
        /* flapping between configurations: wait again while time is left */
        if (cf_mono_ms() < p->deadline) {
            push_prove_round(p);
            return;
        }
        char detail[CF_ERRLEN];
        snprintf(detail, sizeof detail, "%s", p->probe_err);
        prove_failed(p, detail);
        return;
    }
    if (--p->confirm_left > 0) {
        prove_next_confirm(p);
        return;
    }
    char *msg = cf_asprintf("version %d serial %s served on %s:%d", p->c->pems.version,
                            pl_crep(p->c)->serial ? pl_crep(p->c)->serial : "?", p->h->cfg->address,
                            p->h->cfg->https_port);
    pl_push_finish(p, 1, msg);
    free(msg);
}

static void on_confirm_timer(uv_timer_t *t)
{
    struct push *p = t->data;
    struct run *r = p->c->run;
    size_t n = p->c->fc->n_domains;
    p->confirm_bad = 0;
    p->probes_left = n;
    for (size_t i = 0; i < n; i++) {
        char err[CF_ERRLEN] = "";
        if (cf_probe_start(&r->loop, &p->preqs[i], on_confirmed, p, err) != 0) {
            struct cf_probe_result fake = {.status = CF_EINVAL};
            snprintf(fake.error, sizeof fake.error, "%s", err);
            on_confirmed(&fake, p);
        }
    }
}

static void prove_next_confirm(struct push *p)
{
    uv_timer_start(&p->timer, on_confirm_timer, PROVE_CONFIRM_MS, 0);
}

static void on_probed(const struct cf_probe_result *res, void *arg)
{
    struct push *p = arg;
    if (res->status != 0 && !p->probe_err[0])
        snprintf(p->probe_err, sizeof p->probe_err, "%s", res->error);
    if (--p->probes_left)
        return;
    if (p->probe_err[0]) {
        char detail[CF_ERRLEN];
        snprintf(detail, sizeof detail, "%s", p->probe_err);
        prove_failed(p, detail);
        return;
    }
    p->confirm_left = PROVE_CONFIRM_ROUNDS;
    prove_next_confirm(p);
}

/* Wait (up to the deadline) until every domain serves the new serial. */
static void push_prove_round(struct push *p)
{
    struct run *r = p->c->run;
    size_t n = p->c->fc->n_domains;
    uint64_t now = cf_mono_ms();
    unsigned left = p->deadline > now ? (unsigned)(p->deadline - now) : 1;
    p->probe_err[0] = '\0';
    p->probes_left = n;
    for (size_t i = 0; i < n; i++) {
        char err[CF_ERRLEN] = "";
        if (cf_probe_expect_serial(&r->loop, &p->preqs[i], pl_crep(p->c)->serial, left, 250,
                                   on_probed, p, err) != 0) {
            if (!p->probe_err[0])
                snprintf(p->probe_err, sizeof p->probe_err, "%s", err);
            struct cf_probe_result fake = {.status = CF_EINVAL};
            snprintf(fake.error, sizeof fake.error, "%s", err);
            on_probed(&fake, p);
        }
    }
}

void pl_push_prove(struct push *p)
{
    struct run *r = p->c->run;
    const struct cf_fleet_cert *fc = p->c->fc;
    p->preqs = cf_xcalloc(fc->n_domains, sizeof *p->preqs);
    p->snis = cf_xcalloc(fc->n_domains, sizeof *p->snis);
    for (size_t i = 0; i < fc->n_domains; i++) {
        const char *d = fc->domains[i];
        /* a wildcard is proved with a name it covers */
        p->snis[i] = cf_x509_probe_name(d);
        p->preqs[i] = (struct cf_probe_req){.host = p->h->cfg->name,
                                            .address = p->h->cfg->address,
                                            .port = p->h->cfg->https_port,
                                            .sni = p->snis[i],
                                            .timeout_ms = 5000};
    }
    uv_timer_init(&r->loop, &p->timer);
    p->timer.data = p;
    p->timer_init = 1;
    p->deadline = cf_mono_ms() + (uint64_t)r->o->verify_timeout_s * 1000;
    push_prove_round(p);
}

/* What hosts serve before this run touches them: a host whose files are
 * current but whose nginx never loaded them (stopped, never reloaded, a
 * reload that failed) is found here and pushed again. */
struct served {
    struct rcert *c;
    void (*next)(struct rcert *c);
    struct cf_probe_req *reqs;
    struct cf_probe_result *res;
    size_t *k; /* host index in the certificate, per probe */
    char *sni;
    size_t n;
};

static void on_served(void *arg)
{
    struct served *sv = arg;
    struct rcert *c = sv->c;
    for (size_t i = 0; i < sv->n; i++) {
        struct hostcert *hc = c->hcs[sv->k[i]];
        hc->probed = 1;
        if (sv->res[i].status == 0)
            snprintf(hc->served_serial, sizeof hc->served_serial, "%s", sv->res[i].serial);
        else
            hc->served_error = cf_strdup(sv->res[i].error);
    }
    void (*next)(struct rcert *) = sv->next;
    free(sv->reqs);
    free(sv->res);
    free(sv->k);
    free(sv->sni);
    free(sv);
    next(c);
}

void pl_cert_probe_served(struct rcert *c, void (*next)(struct rcert *c))
{
    struct run *r = c->run;
    struct served *sv = cf_xcalloc(1, sizeof *sv);
    char err[CF_ERRLEN] = "";
    sv->c = c;
    sv->next = next;
    sv->reqs = cf_xcalloc(c->n_hosts ? c->n_hosts : 1, sizeof *sv->reqs);
    sv->res = cf_xcalloc(c->n_hosts ? c->n_hosts : 1, sizeof *sv->res);
    sv->k = cf_xcalloc(c->n_hosts ? c->n_hosts : 1, sizeof *sv->k);
    sv->sni = cf_x509_probe_name(c->fc->domains[0]);
    for (size_t k = 0; k < c->n_hosts; k++) {
        struct rhost *h = c->hosts[k];
        if (!pl_host_ready(h) || !pl_host_serves(h, c->fc->cert_name))
            continue;
        sv->reqs[sv->n] = (struct cf_probe_req){.host = h->cfg->name,
                                                .address = h->cfg->address,
                                                .port = h->cfg->https_port,
                                                .sni = sv->sni,
                                                .timeout_ms = 5000};
        sv->k[sv->n++] = k;
    }
    if (cf_probe_batch(&r->loop, sv->reqs, sv->n, r->o->forks, sv->res, NULL, on_served, sv, err) !=
        0) {
        /* nothing probed: decide on the files alone */
        sv->n = 0;
        on_served(sv);
    }
}

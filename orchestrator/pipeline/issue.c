/*
 * issue.c - per certificate, once all its hosts are prepared: take the
 * store's lock, ask the CA's renewal window, decide, and order; a new
 * version goes to the store and then to push.c.
 */
#include "pipeline_int.h"
#include "journal.h"
#include "util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The ACME directory of the certificate: --server, --staging, or its
 * first host's certbot_acme_server. */
static const char *directory_url(const struct run *r, const struct rcert *c)
{
    return r->o->server ? r->o->server : r->o->staging ? LE_STAGING : c->fc->hosts[0]->acme_server;
}

static struct cf_acme *acme_for(struct run *r, struct rcert *c, char *err)
{
    const struct cf_host_config *hc = c->fc->hosts[0];
    const char *url = directory_url(r, c);
    const char *ca = r->o->ca_bundle                               ? r->o->ca_bundle
                     : (hc->acme_ca_bundle && *hc->acme_ca_bundle) ? hc->acme_ca_bundle
                                                                   : NULL;
    for (size_t i = 0; i < r->n_acmes; i++)
        if (!strcmp(r->acmes[i].url, url)) {
            c->acme_url = r->acmes[i].url;
            return r->acmes[i].acme;
        }
    if (!r->http && cf_http_new(&r->loop, &r->http) != 0) {
        snprintf(err, CF_ERRLEN, "could not start the http client");
        return NULL;
    }
    struct cf_acme_config ac = {
        .directory_url = url,
        .ca_bundle = ca,
        .state_dir = r->o->state_dir,
        .email = hc->email && *hc->email ? hc->email : NULL,
        .eab_kid = hc->eab_kid && *hc->eab_kid ? hc->eab_kid : NULL,
        .eab_hmac_key = hc->eab_hmac_key && *hc->eab_hmac_key ? hc->eab_hmac_key : NULL,
        .timeout_ms = (long)r->o->timeout_s * 1000,
    };
    struct cf_acme *a = NULL;
    if (cf_acme_new(&r->loop, r->http, &ac, &a, err) != 0)
        return NULL;
    r->acmes = cf_xrealloc(r->acmes, (r->n_acmes + 1) * sizeof *r->acmes);
    r->acmes[r->n_acmes].url = cf_strdup(url);
    r->acmes[r->n_acmes].acme = a;
    c->acme_url = r->acmes[r->n_acmes].url;
    r->n_acmes++;
    return a;
}

/* Load the store's current version of the certificate into c->cur; a
 * certificate the store does not have yet leaves have_cur 0. */
void pl_cert_load_current(struct rcert *c)
{
    char err[CF_ERRLEN];
    if (c->have_cur)
        cf_store_cert_release(&c->cur);
    c->have_cur = 0;
    if (cf_store_get(&c->run->store, c->fc->cert_name, &c->cur, err) != 0)
        return;
    if (c->cur.version > 0)
        c->have_cur = 1;
    else
        cf_store_cert_release(&c->cur);
}

void pl_cert_finish(struct rcert *c, const char *detail)
{
    struct run *r = c->run;
    if (c->state == PL_CERT_DONE || c->state == PL_CERT_FAILED)
        return;
    if (detail) {
        struct cf_cert_report *cr = pl_crep(c);
        cr->failed = 1;
        if (!cr->error)
            cr->error = cf_strdup(detail);
        for (size_t k = 0; k < c->n_hosts; k++) {
            if (!c->hosts[k])
                continue;
            cf_notify_add_error(r->events, c->hosts[k]->cfg->name, c->fc->domains[0],
                                c->fc->cert_name, c->have_cur ? c->cur.info.not_after : 0, detail,
                                cf_notify_classify_failure(detail), c->hcs[k]->entry->webroot.raw,
                                cf_now_ms() / 1000);
        }
    }
    pl_cert_to(c, detail || pl_crep(c)->failed ? PL_CERT_FAILED : PL_CERT_DONE);
    if (c->locked)
        cf_store_unlock(&c->lockreq.lock);
    c->locked = 0;
    if (c->have_pems) {
        cf_store_pems_release(&c->pems);
        c->have_pems = 0;
    }
    if (c->key) {
        EVP_PKEY_free(c->key);
        c->key = NULL;
    }
    r->certs_left--;
    pl_progress(r);
    pl_run_maybe_finish(r);
}

void pl_cert_fail(struct rcert *c, const char *fmt, ...)
{
    va_list ap;
    char buf[CF_ERRLEN];
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    pl_cert_finish(c, buf);
}

/* --- the order */

struct ordctx {
    struct rcert *c;
    struct cf_acme_solver solver;
    char *replaces;
    char *resume_url;
};

static void order_start(struct rcert *c);

/* An order slot came free: start the next waiting certificate. */
static void order_slot_free(struct run *r)
{
    r->orders_inflight--;
    while (r->order_queue_head < r->n_order_queue &&
           r->orders_inflight < (size_t)r->o->acme_concurrency) {
        struct rcert *next = r->order_queue[r->order_queue_head++];
        r->orders_inflight++;
        order_start(next);
        if (next->state != PL_CERT_ORDERING)
            r->orders_inflight--; /* failed before ordering: the slot is free */
    }
}

/* All orders are in flight at once on the loop, bounded by
 * --acme-concurrency so a large fleet does not trip the CA's limits. */
static void cert_order(struct rcert *c)
{
    struct run *r = c->run;
    if (r->orders_inflight < (size_t)r->o->acme_concurrency) {
        r->orders_inflight++;
        order_start(c);
        if (c->state != PL_CERT_ORDERING)
            order_slot_free(r);
        return;
    }
    pl_cert_to(c, PL_CERT_QUEUED);
    r->order_queue = cf_xrealloc(r->order_queue, (r->n_order_queue + 1) * sizeof *r->order_queue);
    r->order_queue[r->n_order_queue++] = c;
}

static void on_ordered(int status, struct cf_acme_order_result *res, void *arg)
{
    struct ordctx *oc = arg;
    struct rcert *c = oc->c;
    struct run *r = c->run;
    char err[CF_ERRLEN] = "";
    free(oc->replaces);
    free(oc->resume_url);
    free(oc);
    order_slot_free(r);
    if (status != 0) {
        /* an order the CA refused or invalidated is over; one cut short by
         * the transport may still be finished by the next run */
        if (status == CF_EACME || status == CF_EPROTO || status == CF_ELIMIT)
            cf_journal_order_del(r->o->state_dir, c->fc->cert_name, err);
        if (status == CF_ELIMIT && res && res->retry_at > 0 && r->have_db) {
            /* later runs wait for the CA's Retry-After (renew.h) */
            struct cf_db_wait w = {.until = res->retry_at};
            snprintf(w.detail, sizeof w.detail, "%s", res->error ? res->error : "");
            if (cf_db_wait_put(&r->db, c->fc->cert_name, CF_DB_WAIT_RATELIMIT, &w,
                               cf_now_ms() / 1000, err) != 0)
                cf_report_note(r->report, "%s", err);
        }
        pl_cert_fail(c, "%s", res && res->error ? res->error : cf_strerror(status));
        return;
    }
    char *keypem = NULL;
    size_t keylen = 0;
    if (cf_x509_key_pem(c->key, &keypem, &keylen, err) != 0) {
        pl_cert_fail(c, "%s", err);
        return;
    }
    /* The design's first trap: check the bundle before anything uses it. */
    if (cf_x509_check_bundle(res->fullchain_pem, keypem, (const char *const *)c->fc->domains,
                             c->fc->n_domains, cf_now_ms() / 1000, err) != 0) {
        cf_secure_free(keypem, keylen);
        pl_cert_fail(c, "the issued certificate failed its checks: %s", err);
        return;
    }
    struct cf_store_params sp = {(const char *const *)c->fc->domains, c->fc->n_domains, c->key_type,
                                 c->acme_url, cf_acme_account_url(c->acme)};
    int version = 0;
    int rc =
        cf_store_add(&r->store, c->fc->cert_name, res->fullchain_pem, keypem, &sp, &version, err);
    cf_secure_free(keypem, keylen);
    if (rc != 0) {
        pl_cert_fail(c, "central store: %s", err);
        return;
    }
    if (cf_journal_order_del(r->o->state_dir, c->fc->cert_name, err) != 0)
        cf_report_note(r->report, "%s", err);
    struct cf_cert_info ci = {0};
    cf_x509_parse(res->fullchain_pem, 0, &ci, err);
    struct cf_cert_report *cr = pl_crep(c);
    cr->issued = 1;
    free(cr->serial);
    cr->serial = cf_strdup(ci.serial_hex);
    cr->not_after = ci.not_after;
    if (r->have_db) {
        struct cf_db_issuance is = {c->fc->cert_name, (const char *const *)c->fc->domains,
                                    c->fc->n_domains, ci.serial_hex,
                                    ci.not_before,    ci.not_after,
                                    c->key_type,      version,
                                    c->forced,        cf_now_ms() / 1000};
        cf_db_add_issuance(&r->db, r->run_id, &is, err);
    }
    cf_cert_info_release(&ci);
    c->prev_not_after = c->have_cur && c->cur.have_info ? c->cur.info.not_after : 0;
    c->renewed = 1;
    pl_cert_load_current(c);
    pl_push_plan(c);
}

static void on_order_created(void *arg, const char *order_url)
{
    struct ordctx *oc = arg;
    struct rcert *c = oc->c;
    struct run *r = c->run;
    char err[CF_ERRLEN] = "", *pem = NULL;
    size_t len = 0;
    if (oc->resume_url && !strcmp(oc->resume_url, order_url))
        return;
    if (cf_x509_key_pem(c->key, &pem, &len, err) == 0 &&
        cf_journal_order_put(r->o->state_dir, c->fc->cert_name, c->acme_url, order_url, pem, len,
                             err) == 0) {
        cf_secure_free(pem, len);
        return;
    }
    if (pem)
        cf_secure_free(pem, len);
    cf_report_note(r->report, "certificate '%s': %s", c->fc->cert_name, err);
}

/* An order a killed run left in the journal for this directory: its key
 * and URL, so the CA's work (or certificate) is not thrown away. */
static int order_resume(struct rcert *c, char **url)
{
    struct run *r = c->run;
    struct cf_journal_order jo;
    char err[CF_ERRLEN] = "";
    *url = NULL;
    int rc = cf_journal_order_get(r->o->state_dir, c->fc->cert_name, &jo, err);
    if (rc != 0) {
        if (rc != CF_ENOENT)
            cf_journal_order_del(r->o->state_dir, c->fc->cert_name, err);
        return 0;
    }
    EVP_PKEY *key = NULL;
    char type[CF_KEYTYPE_LEN] = "";
    if (strcmp(jo.directory_url, c->acme_url) != 0 ||
        cf_x509_key_read(jo.key_pem, jo.key_len, &key, err) != 0 ||
        cf_x509_key_type(jo.key_pem, type, err) != 0 || strcmp(type, c->key_type) != 0) {
        /* another CA, or a key this run would not order with */
        EVP_PKEY_free(key);
        cf_journal_order_release(&jo);
        return 0;
    }
    cf_debug("certificate %s: resuming %s from the journal", c->fc->cert_name,
             jo.order_url ? jo.order_url : "an order not yet created");
    c->key = key;
    *url = jo.order_url ? cf_strdup(jo.order_url) : NULL;
    cf_journal_order_release(&jo);
    return 1;
}

/* The key of the order: the stored one when certbot_reuse_key holds and
 * plan.h's rule allows it, else a new key of the configured type.  The
 * stored key is read without any passphrase prompt. */
static int order_key(struct rcert *c, char *err)
{
    struct run *r = c->run;
    const struct cf_host_config *hc0 = c->fc->hosts[0];
    EVP_PKEY *stored = NULL;
    char stored_type[CF_KEYTYPE_LEN] = "";
    if (hc0->reuse_key && c->have_cur) {
        struct cf_store_pems pems = {0};
        char e[CF_ERRLEN];
        if (cf_store_read(&r->store, c->fc->cert_name, 0, &pems, e) == 0 &&
            cf_x509_key_read(pems.privkey, pems.privkey_len, &stored, e) == 0 &&
            cf_x509_key_type(pems.privkey, stored_type, e) != 0)
            stored_type[0] = '\0';
        cf_store_pems_release(&pems);
    }
    if (cf_plan_key_choice(hc0->reuse_key, c->decision, stored ? stored_type : NULL, c->key_type) ==
        CF_PLAN_KEY_REUSE) {
        cf_debug("certificate %s: reusing the stored %s key", c->fc->cert_name, stored_type);
        c->key = stored;
        return 0;
    }
    EVP_PKEY_free(stored);
    return cf_x509_keygen(c->key_type, 0, &c->key, err);
}

static void order_start(struct rcert *c)
{
    struct run *r = c->run;
    char err[CF_ERRLEN] = "";
    const struct cf_host_config *hc0 = c->fc->hosts[0];
    size_t ready = 0;
    for (size_t k = 0; k < c->n_hosts; k++)
        ready += pl_host_ready(c->hosts[k]);
    if (c->fc->challenge == CF_CHALLENGE_HTTP01 && ready == 0) {
        pl_cert_fail(c,
                     "no host of certificate '%s' is reachable and prepared: cannot answer "
                     "http-01",
                     c->fc->cert_name);
        return;
    }
    if (c->fc->challenge == CF_CHALLENGE_DNS01 && (!hc0->dns_hook || !*hc0->dns_hook)) {
        pl_cert_fail(c, "certificate '%s' uses dns-01 but certbot_dns_hook is not set",
                     c->fc->cert_name);
        return;
    }
    if (r->stopping) {
        pl_cert_fail(c, "not ordered: the run was interrupted");
        return;
    }
    char *resume_url = NULL;
    if (!order_resume(c, &resume_url) && order_key(c, err) != 0) {
        pl_cert_fail(c, "%s", err);
        return;
    }
    /* The key goes to the journal before the CA hears of the order. */
    char *pem = NULL;
    size_t len = 0;
    int jrc = cf_x509_key_pem(c->key, &pem, &len, err);
    if (jrc == 0)
        jrc = cf_journal_order_put(r->o->state_dir, c->fc->cert_name, c->acme_url, resume_url, pem,
                                   len, err);
    if (pem)
        cf_secure_free(pem, len);
    if (jrc != 0) {
        free(resume_url);
        pl_cert_fail(c, "certificate '%s': %s", c->fc->cert_name, err);
        return;
    }
    struct ordctx *oc = cf_xcalloc(1, sizeof *oc);
    oc->c = c;
    oc->resume_url = resume_url;
    oc->solver.present = pl_solver_present;
    oc->solver.cleanup = pl_solver_cleanup;
    oc->solver.arg = c;
    if (c->have_cur && c->cur.info.aki_len)
        cf_x509_ari_certid(&c->cur.info, &oc->replaces, err);
    struct cf_acme_order_req req = {
        .domains = (const char *const *)c->fc->domains,
        .n_domains = c->fc->n_domains,
        .challenge_type = cf_challenge_name(c->fc->challenge),
        .cert_key = c->key,
        .replaces = oc->replaces,
        .replaces_server = c->have_cur ? c->cur.server : NULL,
        .replaces_account = c->have_cur ? c->cur.account : NULL,
        .preferred_chain =
            hc0->preferred_chain && *hc0->preferred_chain ? hc0->preferred_chain : NULL,
        .solver = &oc->solver,
        .resume_url = oc->resume_url,
        .created = on_order_created,
    };
    pl_cert_to(c, PL_CERT_ORDERING);
    if (cf_acme_order(c->acme, &req, on_ordered, oc, err) != 0) {
        free(oc->replaces);
        free(oc->resume_url);
        free(oc);
        pl_cert_fail(c, "%s", err);
    }
}

/* Has a killed run left an order of this certificate at this CA (with a
 * URL, so the CA knows it)? */
static int journal_has_order(struct rcert *c)
{
    struct run *r = c->run;
    struct cf_journal_order jo;
    char err[CF_ERRLEN];
    const char *url = c->acme_url ? c->acme_url : directory_url(r, c);
    if (cf_journal_order_get(r->o->state_dir, c->fc->cert_name, &jo, err) != 0)
        return 0;
    int has = jo.order_url && url && !strcmp(jo.directory_url, url);
    cf_journal_order_release(&jo);
    return has;
}

/* ari: the CA's renewal window, NULL when there is none */
static void cert_decide(struct rcert *c, const struct cf_acme_ari *ari)
{
    struct run *r = c->run;
    const struct cf_host_config *hc0 = c->fc->hosts[0];
    char err[CF_ERRLEN] = "";
    int dup_count = 0;
    int64_t dup_next = 0;
    struct cf_db_wait limit = {0};
    if (r->have_db) {
        cf_db_duplicate_check(&r->db, (const char *const *)c->fc->domains, c->fc->n_domains,
                              cf_now_ms() / 1000, &dup_count, &dup_next, err);
        cf_db_wait_get(&r->db, c->fc->cert_name, CF_DB_WAIT_RATELIMIT, cf_now_ms() / 1000, &limit,
                       err);
    }
    struct cf_renew_input in = {
        .cur = c->have_cur && c->cur.have_info ? &c->cur.info : NULL,
        .domains = (const char *const *)c->fc->domains,
        .n_domains = c->fc->n_domains,
        .key_type = c->key_type,
        .renewal_days = hc0->renewal_days,
        .has_ari = ari != NULL,
        .ari_start = ari ? ari->start : 0,
        .ari_end = ari ? ari->end : 0,
        .ari_explanation = ari ? ari->explanation_url : NULL,
        .ca_retry_at = limit.until,
        .ari_fraction = (double)(random() % 1000) / 1000.0,
        .force = r->o->force_renewal,
        .now = cf_now_ms() / 1000,
        .dup_count = dup_count,
        .dup_next_allowed = dup_next,
        .interrupted_order = journal_has_order(c),
    };
    struct cf_renew_result out;
    cf_renew_decide(&in, &out);
    c->decision = out.decision;
    c->forced = out.decision == CF_RENEW_RENEW_FORCED;
    struct cf_cert_report *cr = pl_crep(c);
    free(cr->decision);
    free(cr->reason);
    cr->decision = cf_strdup(cf_renew_decision_name(out.decision));
    cr->reason = cf_strdup(out.reason);
    if (c->have_cur && c->cur.have_info) {
        free(cr->serial);
        cr->serial = cf_strdup(c->cur.info.serial_hex);
        cr->not_after = c->cur.info.not_after;
    }
    if (out.decision == CF_RENEW_REFUSED_RATELIMIT) {
        pl_cert_fail(c, "%s", out.reason);
        return;
    }
    if (out.lifetime_rule && r->check)
        cf_report_note(r->report,
                       "certificate '%s': certbot_renewal_days %d is more than half its lifetime; "
                       "renewal follows the lifetime instead",
                       c->fc->cert_name, hc0->renewal_days);
    if (!cf_renew_issues(out.decision) && !r->check)
        /* an order a killed run left behind is not wanted any more */
        cf_journal_order_del(r->o->state_dir, c->fc->cert_name, err);
    if (!cf_renew_issues(out.decision) || r->check) {
        pl_push_plan(c);
        return;
    }
    cert_order(c);
}

static void on_ari(int status, const struct cf_acme_ari *ari, const char *err, void *arg)
{
    struct rcert *c = arg;
    struct run *r = c->run;
    char e[CF_ERRLEN] = "";
    if (status != 0)
        cf_info("certificate %s: no ARI renewal window (%s); renewal follows the certificate's "
                "dates",
                c->fc->cert_name, err && *err ? err : cf_strerror(status));
    if (ari->retry_at > 0 && r->have_db && c->cur.have_info) {
        /* RFC 9773 §4.3: the next query waits for Retry-After; until then
         * the window given now stands */
        struct cf_db_wait w = {.until = ari->retry_at};
        snprintf(w.serial, sizeof w.serial, "%s", c->cur.info.serial_hex);
        if (status == 0) {
            w.win_start = ari->start;
            w.win_end = ari->end;
            snprintf(w.detail, sizeof w.detail, "%s",
                     ari->explanation_url ? ari->explanation_url : "");
        }
        if (cf_db_wait_put(&r->db, c->fc->cert_name, CF_DB_WAIT_ARI, &w, cf_now_ms() / 1000, e))
            cf_report_note(r->report, "%s", e);
    }
    cert_decide(c, status == 0 ? ari : NULL);
}

/* A window an earlier run's ARI answer asked us to keep (Retry-After not
 * yet passed) for the current certificate: 1 and *ari, else 0. */
static int ari_cached(struct rcert *c, struct cf_db_wait *w, struct cf_acme_ari *ari)
{
    struct run *r = c->run;
    char e[CF_ERRLEN] = "";
    if (!r->have_db ||
        cf_db_wait_get(&r->db, c->fc->cert_name, CF_DB_WAIT_ARI, cf_now_ms() / 1000, w, e) != 0 ||
        strcmp(w->serial, c->cur.info.serial_hex) != 0)
        return 0;
    *ari = (struct cf_acme_ari){w->win_start, w->win_end, w->until, *w->detail ? w->detail : NULL};
    return 1;
}

/* The certificate is ours (or, in check mode, only read): decide on what
 * the store holds now, which another run may have just renewed. */
static void cert_locked(struct rcert *c)
{
    struct run *r = c->run;
    char e[CF_ERRLEN] = "";
    pl_cert_to(c, PL_CERT_DECIDING);
    pl_cert_load_current(c);
    /* Ask the CA's renewal window (ARI) first when it offers one; plan
     * never talks to the CA, nor does anyone about an expired certificate
     * (RFC 9773 §4.3). */
    if (c->have_cur && !r->check && !r->o->force_renewal && c->acme && c->cur.cert_path &&
        c->cur.have_info && c->cur.info.not_after > cf_now_ms() / 1000) {
        struct cf_db_wait w;
        struct cf_acme_ari ari;
        if (ari_cached(c, &w, &ari)) {
            cf_debug("certificate %s: the CA asked not to query ARI again before %lld",
                     c->fc->cert_name, (long long)w.until);
            cert_decide(c, ari.end > ari.start ? &ari : NULL);
            return;
        }
        char *pem = NULL;
        int started = 0;
        if (cf_read_file(c->cur.cert_path, CF_PEM_MAX, &pem, NULL) == 0)
            started = cf_acme_renewal_info(c->acme, pem, on_ari, c, e) == 0;
        free(pem);
        if (started)
            return;
        cf_info("certificate %s: no ARI query (%s); renewal follows the certificate's dates",
                c->fc->cert_name, *e ? e : "cannot read the certificate");
    }
    cert_decide(c, NULL);
}

static void on_locked(struct cf_store_lock_req *req, int status, const char *err)
{
    struct rcert *c = req->data;
    if (status != 0) {
        pl_cert_fail(c, "certificate '%s': %s", c->fc->cert_name,
                     err && *err ? err : cf_strerror(status));
        return;
    }
    c->locked = 1;
    cert_locked(c);
}

static int cert_key_type(struct rcert *c, char *err)
{
    return cf_x509_key_type_norm(cf_key_type_name(c->fc->key_type), c->fc->key_size, NULL,
                                 c->key_type, err);
}

static void cert_lock(struct rcert *c);

/* All hosts of the certificate have finished preparing: go. */
void pl_cert_host_prepared(struct rcert *c)
{
    struct run *r = c->run;
    char err[CF_ERRLEN] = "";
    if (--c->pending)
        return;
    if (cert_key_type(c, err) != 0) {
        pl_cert_fail(c, "%s", err);
        return;
    }
    if (!r->have_store) {
        /* plan without a state dir: everything would be issued */
        struct cf_cert_report *cr = pl_crep(c);
        free(cr->decision);
        cr->decision = cf_strdup(cf_renew_decision_name(CF_RENEW_ISSUE_MISSING));
        free(cr->reason);
        cr->reason = cf_strdup("no central store yet");
        pl_cert_finish(c, NULL);
        return;
    }
    if (!r->check && !c->acme) {
        c->acme = acme_for(r, c, err);
        if (!c->acme) {
            pl_cert_fail(c, "%s", err);
            return;
        }
    }
    pl_cert_probe_served(c, cert_lock);
}

/* Take the store's lock of the certificate (check mode only reads). */
static void cert_lock(struct rcert *c)
{
    struct run *r = c->run;
    char err[CF_ERRLEN] = "";
    if (r->check) {
        cert_locked(c);
        return;
    }
    if (r->stopping) {
        pl_cert_fail(c, "not started: the run was interrupted");
        return;
    }
    pl_cert_to(c, PL_CERT_LOCKING);
    if (cf_store_lock_start(&r->loop, &r->store, c->fc->cert_name, r->o->lock_timeout_s,
                            &c->lockreq, on_locked, c, err) != 0)
        pl_cert_fail(c, "%s", err);
}

/*
 * push.c - the store's current version to every host of a certificate
 * that does not have it: write the archive files, swap the live links by
 * rename, test; then reload, prove (prove.c), or roll back.  Hosts go in
 * batches (--serial, --max-fail-percentage) as plan.h decides.
 */
#include "pipeline_int.h"
#include "probe.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *pl_live_path(const struct rhost *h, const char *cert, const char *file)
{
    return cf_asprintf("%s/live/%s/%s.pem", h->cfg->config_dir.path, cert, file);
}

static char *archive_path(const struct rhost *h, const char *cert, const char *file, int version)
{
    return cf_asprintf("%s/archive/%s/%s%d.pem", h->cfg->config_dir.path, cert, file, version);
}

/* Add writes of one version (archive files, then the live links swapped by
 * rename) to a batch.  The private key goes only through the batch's
 * stdin data, never a command line, and the batch wipes its copy. */
int pl_add_version_writes(struct cf_rbatch *b, const struct rhost *h, const char *cert, int version,
                          const char *certpem, const char *chainpem, const char *fullchain,
                          const char *key, size_t keylen, char *err)
{
    char *adir = cf_asprintf("%s/archive/%s", h->cfg->config_dir.path, cert);
    char *ldir = cf_asprintf("%s/live/%s", h->cfg->config_dir.path, cert);
    int rc = 0;
    if (cf_rbatch_mkdir(b, adir, 0700, NULL, NULL, err) < 0 ||
        cf_rbatch_mkdir(b, ldir, 0755, NULL, NULL, err) < 0)
        rc = CF_EINVAL;
    const char *data[CF_PLAN_LIVE_FILES] = {certpem, chainpem, fullchain, key};
    for (int i = 0; rc == 0 && i < CF_PLAN_LIVE_FILES; i++) {
        char *p = archive_path(h, cert, pl_live_names[i], version);
        int secret = i == 3;
        size_t len = secret ? keylen : strlen(data[i]);
        if (cf_rbatch_write(b, p, data[i], len, secret ? 0600 : 0644,
                            secret ? h->cfg->key_owner : NULL, secret ? h->cfg->key_group : NULL,
                            err) < 0)
            rc = CF_EINVAL;
        free(p);
    }
    for (int i = 0; rc == 0 && i < CF_PLAN_LIVE_FILES; i++) {
        char *p = pl_live_path(h, cert, pl_live_names[i]);
        /* relative, as certbot makes them: the layout stays valid wherever
         * the tree is mounted or copied */
        char *t = cf_asprintf("../../archive/%s/%s%d.pem", cert, pl_live_names[i], version);
        if (cf_rbatch_symlink(b, p, t, err) < 0)
            rc = CF_EINVAL;
        free(p);
        free(t);
    }
    free(adir);
    free(ldir);
    return rc;
}

/* The first error text of a batch (a failed op's message), or NULL. */
const char *pl_batch_error(const struct cf_rbatch *b, size_t from, size_t to)
{
    for (size_t i = from; i < to && i < cf_rbatch_count(b); i++) {
        const struct cf_rop_result *res = cf_rbatch_result(b, i);
        if (res->status != 0 && !res->skipped)
            return res->err_text ? res->err_text : cf_strerror(res->status);
    }
    return NULL;
}

/* stdout + stderr of a RUN op, trimmed, for reports. */
char *pl_run_output(const struct cf_rop_result *res)
{
    struct cf_buf b = CF_BUF_INIT;
    if (res->data && res->len)
        cf_buf_append(&b, res->data, res->len);
    if (res->err_text && *res->err_text) {
        if (b.len && b.data[b.len - 1] != '\n')
            cf_buf_puts(&b, "\n");
        cf_buf_puts(&b, res->err_text);
    }
    char *s = cf_buf_detach(&b, NULL);
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == ' '))
        s[--n] = '\0';
    return s;
}

char *pl_host_error(const struct rhost *h, const char *step, int status, const struct cf_rbatch *b)
{
    const char *detail = NULL;
    /* a batch that failed as a whole carries the session's own message */
    for (size_t i = 0; b && i < cf_rbatch_count(b) && !detail; i++) {
        const struct cf_rop_result *r = cf_rbatch_result(b, i);
        if (r && r->status != 0 && r->err_text && *r->err_text)
            detail = r->err_text;
    }
    if (!detail && h->q && *cf_hostq_error(h->q))
        detail = cf_hostq_error(h->q);
    if (!detail)
        detail = cf_strerror(status);
    /* ssh's messages name the host and its endpoint already */
    if (strstr(detail, h->cfg->name))
        return cf_asprintf("%s failed: %s", step, detail);
    return cf_asprintf("%s on host '%s' (%s:%d) failed: %s", step, h->cfg->name, h->cfg->address,
                       h->cfg->port, detail);
}

static void push_free(struct push *p)
{
    if (p->b)
        cf_rbatch_free(p->b);
    free(p->fail_msg);
    if (p->snis)
        for (size_t i = 0; i < p->c->fc->n_domains; i++)
            free(p->snis[i]);
    free(p->snis);
    free(p->preqs);
    free(p);
}

static void on_rolled_back(struct cf_rbatch *b, int status, void *arg)
{
    struct push *p = arg;
    char *e = status ? pl_host_error(p->h, "rolling back", status, b) : NULL;
    const char *be = status ? NULL : pl_batch_error(b, 0, cf_rbatch_count(b));
    char *msg = cf_asprintf("%s; rolled back to the previous certificate%s%s%s", p->fail_msg,
                            e || be ? " (the rollback failed too: " : "",
                            e    ? e
                            : be ? be
                                 : "",
                            e || be ? ")" : "");
    free(e);
    pl_push_finish(p, 0, msg);
    free(msg);
}

/* Put the links back where they were before this run's push (plan.h
 * decides which), test, and reload when the new version had been loaded
 * already. */
void pl_push_rollback(struct push *p, const char *why, int reload)
{
    struct hostcert *hc = p->c->hcs[p->k];
    const struct cf_host_config *cfg = p->h->cfg;
    char err[CF_ERRLEN] = "";
    free(p->fail_msg);
    p->fail_msg = cf_strdup(why);
    struct cf_plan_link ops[CF_PLAN_LIVE_FILES];
    size_t n = cf_plan_rollback((const char *const *)hc->prev_target, ops);
    if (n == 0) {
        pl_push_finish(p, 0, why);
        return;
    }
    if (p->b)
        cf_rbatch_free(p->b);
    p->b = cf_rbatch_new();
    for (size_t i = 0; i < n; i++) {
        char *lp = pl_live_path(p->h, p->c->fc->cert_name, pl_live_names[ops[i].file]);
        if (ops[i].target)
            cf_rbatch_symlink(p->b, lp, ops[i].target, err);
        else
            cf_rbatch_remove(p->b, lp, err);
        free(lp);
    }
    cf_rbatch_run(p->b, cfg->test_command, 1, err);
    if (reload)
        cf_rbatch_run(p->b, cfg->reload_command, 1, err);
    int rc = cf_hostq_remote(p->q, p->b, on_rolled_back, p);
    if (rc != 0)
        on_rolled_back(p->b, rc, p);
}

int pl_host_serves(const struct rhost *h, const char *cert)
{
    for (size_t i = 0; i < h->cfg->n_services; i++)
        if (!strcmp(h->cfg->services[i].cert_source, cert))
            return 1;
    return 0;
}

static void on_reloaded(struct cf_rbatch *b, int status, void *arg)
{
    struct push *p = arg;
    const struct cf_rop_result *res = cf_rbatch_result(b, 0);
    if (status != 0 || !res || res->status != 0 || res->exit_status != 0) {
        char *out =
            status || !res ? pl_host_error(p->h, "reloading", status, b) : pl_run_output(res);
        char *why = cf_asprintf("reload command failed: %s", out);
        free(out);
        pl_push_rollback(p, why, 1);
        free(why);
        return;
    }
    if (!pl_host_serves(p->h, p->c->fc->cert_name)) {
        char *msg =
            cf_asprintf("version %d serial %s installed; no service of this host uses "
                        "it (certbot_services), so it was not probed over TLS",
                        p->c->pems.version, pl_crep(p->c)->serial ? pl_crep(p->c)->serial : "?");
        pl_push_finish(p, 1, msg);
        free(msg);
        return;
    }
    pl_push_prove(p);
}

static void on_pushed(struct cf_rbatch *b, int status, void *arg)
{
    struct push *p = arg;
    char err[CF_ERRLEN] = "";
    if (status != 0) {
        char *m = pl_host_error(p->h, "pushing the new version", status, b);
        pl_push_finish(p, 0, m);
        free(m);
        return;
    }
    const char *e = pl_batch_error(b, 0, p->test_op);
    if (e) {
        char *why = cf_asprintf("could not write the new version: %s", e);
        pl_push_rollback(p, why, 0);
        free(why);
        return;
    }
    const struct cf_rop_result *t = cf_rbatch_result(b, p->test_op);
    if (!t || t->exit_status != 0) {
        char *out = t ? pl_run_output(t) : cf_strdup("no result");
        char *why = cf_asprintf("test command '%s' failed after the swap: %s",
                                p->h->cfg->test_command, out);
        free(out);
        pl_push_rollback(p, why, 0);
        free(why);
        return;
    }
    cf_rbatch_free(p->b);
    p->b = cf_rbatch_new();
    cf_rbatch_run(p->b, p->h->cfg->reload_command, 1, err);
    int rc = cf_hostq_remote(p->q, p->b, on_reloaded, p);
    if (rc != 0)
        on_reloaded(p->b, rc, p);
}

static void job_push(struct cf_hostq *q, cf_ssh *s, int status, void *arg)
{
    struct push *p = arg;
    struct rcert *c = p->c;
    char err[CF_ERRLEN] = "";
    p->q = q;
    p->s = s;
    if (status != 0 || !s) {
        char *m = pl_host_error(p->h, "connecting", status, NULL);
        pl_push_finish(p, 0, m);
        free(m);
        return;
    }
    p->b = cf_rbatch_new();
    if (pl_add_version_writes(p->b, p->h, c->fc->cert_name, c->pems.version, c->pems.cert,
                              c->pems.chain, c->pems.fullchain, c->pems.privkey,
                              c->pems.privkey_len, err) != 0) {
        pl_push_finish(p, 0, err);
        return;
    }
    p->test_op = cf_rbatch_count(p->b);
    cf_rbatch_run(p->b, p->h->cfg->test_command, 0, err);
    int rc = cf_hostq_remote(q, p->b, on_pushed, p);
    if (rc != 0)
        on_pushed(p->b, rc, p);
}

static void push_start_batch(struct rcert *c);

static void on_push_timer_closed(uv_handle_t *h)
{
    push_free(h->data);
}

void pl_push_finish(struct push *p, int ok, const char *msg)
{
    struct rcert *c = p->c;
    struct run *r = c->run;
    struct rhost *h = p->h;
    char *task = cf_asprintf("push certificate '%s'", c->fc->cert_name);
    uint64_t ms = cf_mono_ms() - p->t0;
    cf_report_task(pl_hrep(h), "push", task, ok ? CF_TASK_CHANGED : CF_TASK_FAILED, msg, NULL, ms);
    free(task);
    struct cf_cert_report *cr = pl_crep(c);
    if (ok) {
        cr->hosts_ok++;
    } else {
        cr->hosts_failed++;
        c->failed_hosts++;
        c->hcs[p->k]->failed = 1;
        cf_notify_add_error(r->events, h->cfg->name, c->fc->domains[0], c->fc->cert_name,
                            c->have_cur ? c->cur.info.not_after : 0, msg,
                            cf_notify_classify_failure(msg), c->hcs[p->k]->entry->webroot.raw,
                            cf_now_ms() / 1000);
    }
    if (r->have_db) {
        char err[CF_ERRLEN];
        cf_db_add_deployment(&r->db, r->run_id, h->cfg->name, c->fc->cert_name, c->pems.version,
                             cr->serial ? cr->serial : "", ok ? "changed" : "failed", msg,
                             cf_now_ms() / 1000, err);
    }
    if (ok && c->renewed)
        cf_notify_add_success(r->events, h->cfg->name, c->fc->domains[0], c->fc->cert_name,
                              c->prev_not_after, c->cur.info.not_after, 1, cf_now_ms() / 1000);
    struct cf_hostq *q = p->q;
    if (p->timer_init)
        uv_close((uv_handle_t *)&p->timer, on_push_timer_closed);
    else
        push_free(p);
    if (q)
        cf_hostq_done(q);
    c->inflight--;
    if (c->inflight == 0)
        push_start_batch(c);
}

static void skip_rest(struct rcert *c, const char *why)
{
    for (; c->next_target < c->n_targets; c->next_target++) {
        struct rhost *h = c->hosts[c->targets[c->next_target]];
        char *task = cf_asprintf("push certificate '%s'", c->fc->cert_name);
        cf_report_task(pl_hrep(h), "push", task, CF_TASK_SKIPPED, why, NULL, 0);
        free(task);
    }
}

/* Ansible's serial + max_fail_percentage: hosts go in batches; once more
 * than P% of the certificate's hosts have failed, no further batch starts. */
static void push_start_batch(struct rcert *c)
{
    struct run *r = c->run;
    size_t start, end;
    enum cf_plan_rollout next =
        cf_plan_rollout_next(c->next_target, c->n_targets, c->n_hosts, c->failed_hosts,
                             r->o->serial, r->o->max_fail_pct, &start, &end);
    if (next == CF_PLAN_ROLLOUT_DONE) {
        pl_cert_finish(c, NULL);
        return;
    }
    if (r->stopping) {
        skip_rest(c, "not pushed: the run was interrupted");
        pl_cert_fail(c, "certificate '%s': the run was interrupted before every host had it",
                     c->fc->cert_name);
        return;
    }
    if (next == CF_PLAN_ROLLOUT_STOPPED) {
        size_t left = c->n_targets - c->next_target;
        cf_report_note(r->report,
                       "certificate '%s': stopped after %zu of %zu hosts failed "
                       "(max_fail_percentage %d); %zu host(s) not pushed",
                       c->fc->cert_name, c->failed_hosts, c->n_hosts, r->o->max_fail_pct, left);
        skip_rest(c, "not pushed: max_fail_percentage reached");
        pl_cert_fail(c, "rolling deploy stopped: %zu of %zu hosts failed (max_fail_percentage %d)",
                     c->failed_hosts, c->n_hosts, r->o->max_fail_pct);
        return;
    }
    c->next_target = end;
    c->inflight = end - start;
    for (size_t i = start; i < end; i++) {
        struct push *p = cf_xcalloc(1, sizeof *p);
        p->c = c;
        p->k = c->targets[i];
        p->h = c->hosts[p->k];
        p->t0 = cf_mono_ms();
        cf_hostq_push(p->h->q, job_push, p);
    }
}

/* Which hosts need the store's current version, then push in batches. */
void pl_push_plan(struct rcert *c)
{
    struct run *r = c->run;
    char err[CF_ERRLEN] = "";
    if (!c->have_cur) {
        pl_cert_finish(c, NULL);
        return;
    }
    pl_cert_to(c, PL_CERT_PUSHING);
    const char *serial = c->cur.info.serial_hex;
    /* A certificate close to expiry that was not renewed (a failed order, a
     * refused one, renewal_days below warning_days) is worth a [WARNING]. */
    int64_t now = cf_now_ms() / 1000;
    int days = (int)((c->cur.info.not_after - now) / 86400);
    if (!r->check && !c->renewed && days < c->fc->hosts[0]->warning_days)
        for (size_t k = 0; k < c->n_hosts; k++)
            if (c->hosts[k])
                cf_notify_add_warning(r->events, c->hosts[k]->cfg->name, c->fc->domains[0],
                                      c->fc->cert_name, days, c->cur.info.not_after, now);
    free(pl_crep(c)->serial);
    pl_crep(c)->serial = cf_strdup(serial);
    pl_crep(c)->not_after = c->cur.info.not_after;
    c->targets = cf_xcalloc(c->n_hosts ? c->n_hosts : 1, sizeof *c->targets);
    for (size_t k = 0; k < c->n_hosts; k++) {
        struct rhost *h = c->hosts[k];
        struct hostcert *hc = c->hcs[k];
        if (!h)
            continue;
        int other = hc->probed && (hc->served_error || !hc->live_serial ||
                                   strcmp(hc->served_serial, hc->live_serial) != 0);
        int mixed =
            hc->live_serial && cf_plan_links_version((const char *const *)hc->prev_target) < 0;
        struct cf_plan_host ph = {pl_host_ready(h),     hc->live_serial, hc->live_not_before,
                                  hc->live_placeholder, other,           mixed};
        enum cf_plan_push what =
            cf_plan_push_target(&ph, serial, c->cur.info.not_before, r->o->force_push);
        if (what == CF_PLAN_PUSH_SKIP)
            continue;
        if (what == CF_PLAN_PUSH_CURRENT) {
            pl_crep(c)->hosts_ok++;
            continue;
        }
        char *task = cf_asprintf("push certificate '%s'", c->fc->cert_name);
        if (what == CF_PLAN_PUSH_DOWNGRADE) {
            char *msg = cf_asprintf(
                "refused: the host has serial %s, issued after the store's version %d (serial "
                "%s); another store may manage it. Use --force-push to replace it",
                hc->live_serial, c->cur.version, serial);
            cf_report_task(pl_hrep(h), "push", task, CF_TASK_FAILED, msg, NULL, 0);
            pl_crep(c)->hosts_failed++;
            c->failed_hosts++;
            hc->failed = 1;
            if (!pl_crep(c)->error)
                pl_crep(c)->error = cf_asprintf("host '%s': %s", h->cfg->name, msg);
            pl_crep(c)->failed = 1;
            free(msg);
        } else if (r->check) {
            if (other)
                cf_report_note(r->report,
                               "host '%s' has certificate '%s' version %d on disk but serves %s%s",
                               h->cfg->name, c->fc->cert_name, c->cur.version,
                               hc->served_error ? "nothing: " : "serial ",
                               hc->served_error ? hc->served_error : hc->served_serial);
            char *msg =
                cf_asprintf("would push version %d (serial %s), host has %s", c->cur.version,
                            serial, hc->live_serial ? hc->live_serial : "none");
            cf_report_task(pl_hrep(h), "push", task, CF_TASK_CHANGED, msg, NULL, 0);
            free(msg);
        } else {
            if (mixed)
                cf_report_note(r->report,
                               "host '%s': the live links of certificate '%s' name different "
                               "versions (a run was interrupted between two swaps): pushed "
                               "version %d again",
                               h->cfg->name, c->fc->cert_name, c->cur.version);
            else if (other && hc->live_serial && !strcmp(hc->live_serial, serial))
                cf_report_note(r->report,
                               "host '%s' had certificate '%s' version %d on disk but served %s%s: "
                               "pushed again, tested and reloaded",
                               h->cfg->name, c->fc->cert_name, c->cur.version,
                               hc->served_error ? "nothing: " : "serial ",
                               hc->served_error ? hc->served_error : hc->served_serial);
            c->targets[c->n_targets++] = k;
        }
        free(task);
    }
    if (c->n_targets == 0) {
        pl_cert_finish(c, NULL);
        return;
    }
    if (cf_store_read(&r->store, c->fc->cert_name, 0, &c->pems, err) != 0) {
        pl_cert_fail(c, "central store: %s", err);
        return;
    }
    c->have_pems = 1;
    if (cf_x509_check_bundle(c->pems.fullchain, c->pems.privkey,
                             (const char *const *)c->fc->domains, c->fc->n_domains,
                             cf_now_ms() / 1000, err) != 0) {
        pl_cert_fail(c, "refusing to push certificate '%s' version %d: %s", c->fc->cert_name,
                     c->pems.version, err);
        return;
    }
    push_start_batch(c);
}

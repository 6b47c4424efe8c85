/*
 * prepare.c - per host: converge the certbot role, inspect what each
 * certificate has live, give a new host its first version, and run the
 * handlers (test, then reload) when something changed.  Every path ends
 * in prep_finish(), which releases the host's queue exactly once.
 */
#include "pipeline_int.h"
#include "journal.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

struct prep {
    struct rhost *h;
    cf_ssh *s;
    struct cf_rbatch *b;
    size_t *first_op;          /* per hostcert: index of its first inspect op */
    int *installed;            /* per hostcert: version installed in this run, -1 = none */
    struct cf_role_undo *undo; /* what the role's converge replaced, or NULL */
    char *fail_msg;            /* the failed config test, while rolling back */
    char **stale;              /* ACME tokens a killed run left on the host (journal) */
    size_t n_stale, stale_op;
    size_t test_op;    /* the config test, run with the inspection */
    char *test_output; /* its output when it failed, else NULL */
    int inspected;     /* inspect_done has read the results */
};

/* The host's preparation is over: ready when ok.  Frees p, lets the
 * host's certificates go on, and releases the session for later jobs. */
static void prep_finish(struct prep *p, int ok)
{
    struct rhost *h = p->h;
    struct run *r = h->run;
    struct cf_hostq *q = h->q;
    if (p->b)
        cf_rbatch_free(p->b);
    free(p->first_op);
    free(p->installed);
    cf_journal_tokens_free(p->stale, p->n_stale);
    cf_role_undo_free(p->undo);
    free(p->fail_msg);
    free(p->test_output);
    free(p);
    if (h->state != PL_HOST_UNREACHABLE)
        pl_host_to(h, ok ? PL_HOST_READY : PL_HOST_FAILED);
    r->hosts_left--;
    pl_progress(r);
    for (size_t k = 0; k < h->n_hc; k++)
        pl_cert_host_prepared(h->hc[k].cert);
    pl_run_maybe_finish(r);
    cf_hostq_done(q);
}

/* A failed step: the host's message names the step and the cause (the
 * role's own text, else the session's). */
static void prep_fail(struct prep *p, const char *step, int status, const char *detail,
                      const struct cf_rbatch *b)
{
    struct rhost *h = p->h;
    char *m = !detail || !*detail ? pl_host_error(h, step, status, b)
              : strstr(detail, h->cfg->name)
                  ? cf_asprintf("%s failed: %s", step, detail)
                  : cf_asprintf("%s on host '%s' failed: %s", step, h->cfg->name, detail);
    cf_report_host_failed(pl_hrep(h), m);
    free(m);
    prep_finish(p, 0);
}

static void on_role_undone(cf_ssh *s, int status, struct cf_role_result *res, void *arg)
{
    struct prep *p = arg;
    struct rhost *h = p->h;
    for (size_t i = 0; res && i < res->n_tasks; i++)
        cf_report_task(pl_hrep(h), "rollback", res->tasks[i].name, res->tasks[i].status,
                       res->tasks[i].msg, NULL, res->tasks[i].ms);
    char *msg = res ? cf_role_undo_message(p->fail_msg, res)
                    : pl_host_error(h, "rolling back the role change", status, NULL);
    cf_report_host_failed(pl_hrep(h), msg);
    free(msg);
    cf_role_result_free(res);
    prep_finish(p, 0);
}

/* The config test failed after the role changed files: put them back as
 * they were and test again (role.h, cf_role_undo).  Returns 1 when the
 * rollback runs (on_role_undone finishes the host), 0 when there is
 * nothing to roll back. */
static int prep_rollback(struct prep *p, const struct cf_role_result *res)
{
    const struct cf_host_config *cfg = p->h->cfg;
    char err[CF_ERRLEN] = "";
    if (!p->undo || !res->failed_command || strcmp(res->failed_command, cfg->test_command))
        return 0;
    for (size_t i = 0; i < res->n_tasks && !p->fail_msg; i++)
        if (res->tasks[i].status == CF_TASK_FAILED)
            p->fail_msg = cf_strdup(res->tasks[i].msg ? res->tasks[i].msg : "config test failed");
    if (cf_role_undo(p->s, p->undo, cfg->test_command, cfg->become, on_role_undone, p, err) != 0) {
        if (*err)
            cf_report_host_failed(pl_hrep(p->h), err);
        return 0;
    }
    return 1;
}

static void on_handlers(cf_ssh *s, int status, struct cf_role_result *res, void *arg)
{
    struct prep *p = arg;
    struct rhost *h = p->h;
    int ok = status == 0 && res && res->failed == 0;
    if (res) {
        for (size_t i = 0; i < res->n_tasks; i++) {
            struct cf_task_result *t = &res->tasks[i];
            cf_report_task(pl_hrep(h), "handler", t->name, t->status, t->msg, NULL, t->ms);
        }
        if (status == 0 && !ok && prep_rollback(p, res)) {
            cf_role_result_free(res);
            return;
        }
    }
    if (status != 0) {
        prep_fail(p, "running the handlers", status, res && res->error[0] ? res->error : NULL,
                  NULL);
        cf_role_result_free(res);
        return;
    }
    cf_role_result_free(res);
    prep_finish(p, ok);
}

static void prep_handlers(struct prep *p)
{
    struct rhost *h = p->h;
    struct run *r = h->run;
    if (!h->need_handlers || r->mode == CF_MODE_RENEW) {
        prep_finish(p, 1);
        return;
    }
    pl_host_to(h, PL_HOST_HANDLERS);
    struct cf_role_opts ro = {.check = r->check, .diff = r->o->diff, .become = h->cfg->become};
    char err[CF_ERRLEN] = "";
    int rc = cf_role_run_handlers(p->s, r->role, h->vars, (const char *const *)h->notified,
                                  h->n_notified, &ro, on_handlers, p, err);
    if (rc == 1) {
        /* nothing due, or --check: no callback comes */
        if (r->check)
            cf_report_task(pl_hrep(h), "handler", "test, then reload nginx", CF_TASK_SKIPPED,
                           "check mode: not run", NULL, 0);
        prep_finish(p, 1);
        return;
    }
    if (rc != 0)
        prep_fail(p, "starting the handlers", rc, err, NULL);
}

static void on_installed(struct cf_rbatch *b, int status, void *arg)
{
    struct prep *p = arg;
    struct rhost *h = p->h;
    const char *e = status ? NULL : pl_batch_error(b, 0, cf_rbatch_count(b));
    if (status || e) {
        char *m =
            status ? pl_host_error(h, "installing the first certificate", status, b) : cf_strdup(e);
        cf_report_task(pl_hrep(h), "prepare", "install first certificate", CF_TASK_FAILED, m, NULL,
                       0);
        free(m);
        prep_finish(p, 0);
        return;
    }
    /* What this run installed is what a later failed push returns to. */
    for (size_t k = 0; k < h->n_hc; k++) {
        if (p->installed[k] < 0)
            continue;
        const char *name = h->hc[k].cert->fc->cert_name;
        for (int i = 0; i < CF_PLAN_LIVE_FILES; i++) {
            free(h->hc[k].prev_target[i]);
            h->hc[k].prev_target[i] =
                cf_asprintf("../../archive/%s/%s%d.pem", name, pl_live_names[i], p->installed[k]);
        }
    }
    prep_handlers(p);
}

/* A host whose live/<cert> does not exist yet gets the store's current
 * version, or a self-signed placeholder when the store has none, so that
 * nginx -t passes and nginx can start serving the challenge (design.md:
 * a new host's config refers to the certificate links from day one). */
static void prep_install(struct prep *p)
{
    struct rhost *h = p->h;
    struct run *r = h->run;
    struct cf_rbatch *b = cf_rbatch_new();
    int n = 0;
    char err[CF_ERRLEN] = "";
    pl_host_to(h, PL_HOST_INSTALLING);
    p->installed = cf_xcalloc(h->n_hc ? h->n_hc : 1, sizeof *p->installed);
    for (size_t k = 0; k < h->n_hc; k++) {
        struct hostcert *hc = &h->hc[k];
        p->installed[k] = -1;
        if (hc->live_serial || hc->prev_target[2])
            continue;
        const char *name = hc->cert->fc->cert_name;
        struct cf_store_pems pems = {0};
        char *cert = NULL, *key = NULL;
        size_t keylen = 0;
        int version = 0, rc;
        const char *what;
        if (r->have_store && cf_store_read(&r->store, name, 0, &pems, err) == 0 &&
            pems.version > 0) {
            version = pems.version;
            what = "current version from the central store";
            rc = pl_add_version_writes(b, h, name, version, pems.cert, pems.chain, pems.fullchain,
                                       pems.privkey, pems.privkey_len, err);
        } else {
            what = "self-signed placeholder until the first certificate";
            rc = cf_x509_make_placeholder((const char *const *)hc->cert->fc->domains,
                                          hc->cert->fc->n_domains, cf_now_ms() / 1000, &cert, &key,
                                          &keylen, err);
            if (rc == 0)
                /* self-signed: its own chain, so ssl_trusted_certificate loads */
                rc = pl_add_version_writes(b, h, name, 0, cert, cert, cert, key, keylen, err);
        }
        free(cert);
        cf_secure_free(key, keylen);
        cf_store_pems_release(&pems);
        char *task = cf_asprintf("install certificate '%s'", name);
        if (rc != 0) {
            cf_report_task(pl_hrep(h), "prepare", task, CF_TASK_FAILED, err, NULL, 0);
            free(task);
            cf_rbatch_free(b);
            prep_finish(p, 0);
            return;
        }
        char *msg = cf_asprintf("version %d: %s", version, what);
        cf_report_task(pl_hrep(h), "prepare", task, CF_TASK_CHANGED, msg, NULL, 0);
        free(msg);
        free(task);
        p->installed[k] = version;
        n++;
    }
    if (n)
        h->need_handlers = 1;
    if (n == 0 || r->check) {
        cf_rbatch_free(b);
        prep_handlers(p);
        return;
    }
    cf_rbatch_free(p->b);
    p->b = b;
    int rc = cf_hostq_remote(h->q, b, on_installed, p);
    if (rc != 0)
        on_installed(b, rc, p);
}

/* The inspection's operations: per certificate the live links (for
 * rollback) and live/<cert>/cert.pem (its serial), the config test, and
 * the removal of tokens a killed run left.  They ride in the role's first
 * batch, so a converged host costs one round trip. */
static int inspect_add(struct cf_rbatch *b, void *arg, char *err)
{
    struct prep *p = arg;
    struct rhost *h = p->h;
    size_t base = cf_rbatch_count(b); /* indices below are relative to it */
    p->first_op = cf_xcalloc(h->n_hc ? h->n_hc : 1, sizeof *p->first_op);
    for (size_t k = 0; k < h->n_hc; k++) {
        const char *name = h->hc[k].cert->fc->cert_name;
        p->first_op[k] = cf_rbatch_count(b) - base;
        for (int i = 0; i < CF_PLAN_LIVE_FILES; i++) {
            char *lp = pl_live_path(h, name, pl_live_names[i]);
            int rc = cf_rbatch_stat(b, lp, err);
            free(lp);
            if (rc < 0)
                return rc;
        }
        char *cp = pl_live_path(h, name, "cert");
        int rc = cf_rbatch_read(b, cp, 256 * 1024, err);
        free(cp);
        if (rc < 0)
            return rc;
    }
    /* The config test, every run and before any change of this run: a
     * config broken by hand is found now, not on renewal day. */
    p->test_op = cf_rbatch_count(b) - base;
    if (cf_rbatch_run(b, h->cfg->test_command, 0, err) < 0)
        return CF_EINVAL;
    /* tokens are journaled before they are written: what is still listed
     * was left by a run that never got to remove it */
    if (!h->run->check &&
        cf_journal_tokens(h->run->o->state_dir, h->cfg->name, &p->stale, &p->n_stale, err) == 0) {
        p->stale_op = cf_rbatch_count(b) - base;
        for (size_t i = 0; i < p->n_stale; i++)
            if (cf_rbatch_remove(b, p->stale[i], err) < 0)
                return CF_EINVAL;
    }
    p->inspected = 0;
    return 0;
}

/* Read what inspect_add asked for (first: the index of its first op). */
static void inspect_done(const struct cf_rbatch *b, size_t first, void *arg)
{
    struct prep *p = arg;
    struct rhost *h = p->h;
    size_t removed = 0;
    for (size_t i = 0; i < p->n_stale; i++) {
        const struct cf_rop_result *res = cf_rbatch_result(b, first + p->stale_op + i);
        char err[CF_ERRLEN];
        if (res && res->status == 0 &&
            cf_journal_token_del(h->run->o->state_dir, h->cfg->name, p->stale[i], err) == 0)
            removed++;
    }
    if (removed) {
        char *msg = cf_asprintf("%zu token(s) an interrupted run left in the webroot", removed);
        cf_report_task(pl_hrep(h), "prepare", "remove stale ACME tokens", CF_TASK_CHANGED, msg,
                       NULL, 0);
        free(msg);
    }
    for (size_t k = 0; k < h->n_hc; k++) {
        struct hostcert *hc = &h->hc[k];
        size_t at = first + p->first_op[k];
        for (int i = 0; i < CF_PLAN_LIVE_FILES; i++) {
            const struct cf_rop_result *res = cf_rbatch_result(b, at + (size_t)i);
            if (res && res->status == 0 && res->st.exists && res->st.link_target)
                hc->prev_target[i] = cf_strdup(res->st.link_target);
        }
        const struct cf_rop_result *rd = cf_rbatch_result(b, at + CF_PLAN_LIVE_FILES);
        struct cf_cert_info ci = {0};
        char err[CF_ERRLEN];
        if (rd && rd->status == 0 && rd->st.exists && rd->data && rd->len &&
            cf_x509_parse(rd->data, rd->len, &ci, err) == 0) {
            hc->live_serial = cf_strdup(ci.serial_hex);
            hc->live_not_before = ci.not_before;
            hc->live_placeholder = cf_x509_is_placeholder(&ci);
            cf_cert_info_release(&ci);
        }
    }
    const struct cf_rop_result *t = cf_rbatch_result(b, first + p->test_op);
    if (t && (t->status != 0 || t->exit_status != 0))
        p->test_output = pl_run_output(t);
    p->inspected = 1;
}

/* After the inspection (and the converge): a config test that failed
 * before any change, when nothing of this run can repair it, fails the
 * host without touching it further; else first versions, then handlers. */
static void prep_after_inspect(struct prep *p)
{
    struct rhost *h = p->h;
    int installs = 0, mixed = 0;
    for (size_t k = 0; k < h->n_hc; k++) {
        installs |= !h->hc[k].live_serial && !h->hc[k].prev_target[2];
        mixed |= h->hc[k].prev_target[2] &&
                 cf_plan_links_version((const char *const *)h->hc[k].prev_target) < 0;
    }
    /* mixed links (a run killed between two swaps) can break the test by
     * themselves (key and certificate from two versions): the push of the
     * store's version repairs them, so the host is not written off */
    if (p->test_output && !installs && !mixed && !h->need_handlers) {
        char *m = cf_asprintf("the config test '%s' already fails before any change of this run "
                              "(certfleet changed nothing on this host): %s; fix the nginx "
                              "configuration, then apply again",
                              h->cfg->test_command, p->test_output);
        cf_report_task(pl_hrep(h), "prepare", "config test", CF_TASK_FAILED, m, NULL, 0);
        cf_report_host_failed(pl_hrep(h), m);
        free(m);
        prep_finish(p, 0);
        return;
    }
    if (h->run->mode == CF_MODE_RENEW) {
        prep_handlers(p);
        return;
    }
    prep_install(p);
}

static void on_inspected(struct cf_rbatch *b, int status, void *arg)
{
    struct prep *p = arg;
    if (status != 0) {
        prep_fail(p, "inspecting the live certificates", status, NULL, b);
        return;
    }
    inspect_done(b, 0, p);
    prep_after_inspect(p);
}

/* renew: no role, the inspection is a batch of its own */
static void prep_inspect(struct prep *p)
{
    struct rhost *h = p->h;
    char err[CF_ERRLEN] = "";
    struct cf_rbatch *b = cf_rbatch_new();
    pl_host_to(h, PL_HOST_INSPECTING);
    int rc = inspect_add(b, p, err);
    if (rc != 0) {
        cf_rbatch_free(b);
        prep_fail(p, "inspecting the live certificates", rc, err, NULL);
        return;
    }
    p->b = b;
    if ((rc = cf_hostq_remote(h->q, b, on_inspected, p)) != 0)
        on_inspected(b, rc, p);
}

static void on_converged(cf_ssh *s, int status, struct cf_role_result *res, void *arg)
{
    struct prep *p = arg;
    struct rhost *h = p->h;
    if (res) {
        for (size_t i = 0; i < res->n_tasks; i++) {
            struct cf_task_result *t = &res->tasks[i];
            cf_report_task(pl_hrep(h), "prepare", t->name, t->status, t->msg, t->diff, t->ms);
        }
        p->undo = res->undo; /* for prep_rollback */
        res->undo = NULL;
        if (res->changed) {
            h->need_handlers = 1;
            h->notified = cf_xcalloc(res->n_notified + 1, sizeof *h->notified);
            for (size_t i = 0; i < res->n_notified; i++)
                h->notified[i] = cf_strdup(res->notified[i]);
            h->n_notified = res->n_notified;
        }
    }
    if (status != 0) {
        prep_fail(p, "converging the role", status, res && res->error[0] ? res->error : NULL, NULL);
        cf_role_result_free(res);
        return;
    }
    int failed = !res || res->failed;
    cf_role_result_free(res);
    if (failed || !p->inspected) {
        if (!failed)
            prep_fail(p, "inspecting the live certificates", CF_EPROTO, "no inspection result",
                      NULL);
        else
            prep_finish(p, 0);
        return;
    }
    pl_host_to(h, PL_HOST_INSPECTING);
    prep_after_inspect(p);
}

void pl_job_prepare(struct cf_hostq *q, cf_ssh *s, int status, void *arg)
{
    struct rhost *h = arg;
    struct run *r = h->run;
    struct prep *p = cf_xcalloc(1, sizeof *p);
    p->h = h;
    p->s = s;
    if (status != 0 || !s) {
        cf_report_unreachable(pl_hrep(h), cf_hostq_error(q));
        pl_host_to(h, PL_HOST_UNREACHABLE);
        prep_finish(p, 0);
        return;
    }
    if (r->stopping) {
        cf_report_host_failed(pl_hrep(h), "not prepared: the run was interrupted");
        prep_finish(p, 0);
        return;
    }
    if (r->mode == CF_MODE_RENEW) {
        prep_inspect(p);
        return;
    }
    pl_host_to(h, PL_HOST_CONVERGING);
    struct cf_role_opts ro = {r->check, r->o->diff, h->cfg->become, inspect_add, inspect_done, p};
    char err[CF_ERRLEN] = "";
    int rc = cf_role_converge(s, r->role, h->vars, &ro, on_converged, p, err);
    if (rc != 0)
        prep_fail(p, "starting the role", rc, err, NULL);
}

/*
 * apply.c - the apply / renew / plan pipeline (see apply.h).
 *
 * Ownership: one struct run owns everything of a run.  Hosts (struct
 * rhost) and certificates (struct rcert) point at each other through the
 * run's arrays, which never move after setup.  Every asynchronous step
 * takes a small context that it frees in its own completion.
 */
#include "cf.h"
#include "apply.h"
#include "acme.h"
#include "config.h"
#include "db.h"
#include "hostq.h"
#include "http.h"
#include "inventory.h"
#include "loader.h"
#include "notify.h"
#include "probe.h"
#include "remote.h"
#include "renew.h"
#include "report.h"
#include "role.h"
#include "store.h"
#include "util.h"
#include "vars.h"
#include "x509.h"

#include <errno.h>
#include <limits.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define LE_STAGING "https://acme-staging-v02.api.letsencrypt.org/directory"
#define LIVE_FILES 4
static const char *const live_names[LIVE_FILES] = {"cert", "chain", "fullchain", "privkey"};

struct run;
struct rcert;

/* One certificate on one host. */
struct hostcert {
    struct rcert *cert;
    const struct cf_cert_entry *entry;
    char *live_serial;             /* serial of live/<cert>/cert.pem; NULL = none */
    int live_placeholder;          /* the live certificate is a placeholder */
    char *prev_target[LIVE_FILES]; /* live link targets before this run's push */
    int failed;
};

struct rhost {
    struct run *run;
    size_t idx;
    struct cf_host_config *cfg;
    json_t *vars;
    struct cf_hostq *q;
    size_t rep; /* index into run->report.hosts */
    struct hostcert *hc;
    size_t n_hc;
    int ready;         /* reachable and prepared */
    int prepared;      /* the prepare phase has finished, whatever the outcome */
    int need_handlers; /* the role changed something or a certificate was installed */
    char **notified;
    size_t n_notified;
};

struct acme_ent {
    char *url;
    struct cf_acme *acme;
};

struct rcert {
    struct run *run;
    const struct cf_fleet_cert *fc;
    size_t rep; /* index into run->report.certs */
    struct rhost **hosts;
    struct hostcert **hcs;
    size_t n_hosts;
    size_t pending; /* hosts still preparing */
    struct cf_store_lock_req lockreq;
    int locked;
    struct cf_store_cert cur;
    int have_cur;
    char key_type[CF_KEYTYPE_LEN];
    struct cf_acme *acme;
    const char *acme_url; /* borrowed from the run's acme list */
    EVP_PKEY *key;
    enum cf_renew_decision decision;
    int forced;
    /* push */
    struct cf_store_pems pems;
    int have_pems;
    size_t *targets; /* indices into hosts needing the new version */
    size_t n_targets, next_target, inflight, failed_hosts;
    int renewed;            /* a new version was issued in this run */
    int order_started;      /* cf_acme_order accepted the order */
    int64_t prev_not_after; /* the replaced version's expiry, for alerts */
    int done;
};

struct run {
    uv_loop_t loop;
    const struct cf_opts *o;
    enum cf_apply_mode mode;
    int check;
    struct cf_loaded ld;    /* inventory, variables, configuration */
    struct cf_fleet *fleet; /* = ld.fleet */
    struct cf_role *role;
    struct cf_fleetq *fq;
    struct rhost *hosts;
    size_t n_hosts;
    struct rcert *certs;
    size_t n_certs;
    cf_http *http;
    struct acme_ent *acmes;
    size_t n_acmes;
    struct cf_store store;
    int have_store;
    struct cf_db db;
    int have_db;
    int64_t run_id;
    struct cf_report report;
    size_t hosts_left, certs_left;
    int finishing;
    int progress;               /* draw a progress line on stderr */
    size_t orders_inflight;     /* ACME orders under way (--acme-concurrency) */
    struct rcert **order_queue; /* certificates waiting for an order slot */
    size_t n_order_queue, order_queue_head;
    cf_notify *events;
};

static void cert_host_prepared(struct rcert *c);
static void cert_finish(struct rcert *c);
static void run_maybe_finish(struct run *r);
static void push_start_batch(struct rcert *c);

static struct cf_host_report *hrep(struct rhost *h)
{
    return &h->run->report.hosts[h->rep];
}

static struct cf_cert_report *crep(struct rcert *c)
{
    return &c->run->report.certs[c->rep];
}

static void progress(struct run *r)
{
    if (!r->progress)
        return;
    size_t hd = r->n_hosts - r->hosts_left, cd = r->n_certs - r->certs_left;
    fprintf(stderr, "\r\033[K[%zu/%zu hosts prepared, %zu/%zu certificates done]", hd, r->n_hosts,
            cd, r->n_certs);
    fflush(stderr);
}

const char *cf_apply_roles_dir(void)
{
    static char buf[PATH_MAX + 64];
    const char *env = getenv("CERTFLEET_ROLES_DIR");
    if (env && *env)
        return env;
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        return "roles";
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash)
        *slash = '\0';
    /* a source tree keeps roles/ beside the binary; an installed one has
     * it under share/ */
    static const char *const rel[] = {"roles", "../share/certfleet/roles"};
    for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++) {
        struct stat st;
        char *probe = cf_asprintf("%s/%s/certbot/tasks/main.yml", exe, rel[i]);
        int found = stat(probe, &st) == 0;
        free(probe);
        if (found) {
            char *dir = cf_asprintf("%s/%s", exe, rel[i]);
            snprintf(buf, sizeof buf, "%s", dir);
            free(dir);
            return buf;
        }
    }
    return "roles";
}

/* ------------------------------------------------------------------ */
/* 1. loading and validation: nothing is touched when this fails       */

static int load_config(struct run *r, char *err)
{
    int rc;
    if ((rc = cf_loader_load(r->o, &r->ld, err)) != 0)
        return rc;
    r->n_hosts = r->ld.n;
    r->hosts = cf_xcalloc(r->n_hosts ? r->n_hosts : 1, sizeof *r->hosts);
    for (size_t i = 0; i < r->n_hosts; i++) {
        r->hosts[i].run = r;
        r->hosts[i].idx = i;
        r->hosts[i].cfg = r->ld.cfg[i];
        r->hosts[i].vars = r->ld.vars[i];
    }
    r->fleet = r->ld.fleet;
    if (r->mode != CF_MODE_RENEW) {
        char rerr[CF_ERRLEN] = "";
        if ((rc = cf_role_load(cf_apply_roles_dir(), "certbot", &r->role, rerr)) != 0) {
            snprintf(err, CF_ERRLEN, "role 'certbot' in '%s': %s", cf_apply_roles_dir(), rerr);
            return rc;
        }
    }
    return 0;
}

/* A certificate is issued with the hosts of the run.  When hosts outside
 * the limit serve it too, they get no token (the CA may validate a name on
 * one of them) and no new version: say so, naming them. */
static void note_outside_limit(struct run *r)
{
    if (!r->o->limit || !r->fleet)
        return;
    size_t nh = cf_inventory_host_count(r->ld.inv);
    struct cf_buf *outside = cf_xcalloc(r->n_certs ? r->n_certs : 1, sizeof *outside);
    for (size_t i = 0; i < nh; i++) {
        int selected = 0;
        for (size_t k = 0; k < r->ld.n && !selected; k++)
            selected = r->ld.sel[k] == i;
        if (selected)
            continue;
        json_t *vars = NULL;
        struct cf_host_config *hc = NULL;
        char err[CF_ERRLEN];
        if (cf_inventory_hostvars(r->ld.inv, i, cf_config_defaults(), NULL, &vars, err) == 0 &&
            cf_config_host(cf_inventory_host_name(r->ld.inv, i), vars, &hc, err) == 0 &&
            hc->enabled) {
            for (size_t e = 0; e < hc->n_certs; e++)
                for (size_t c = 0; c < r->n_certs; c++)
                    if (!strcmp(hc->certs[e].cert_name, r->certs[c].fc->cert_name))
                        cf_buf_printf(&outside[c], "%s%s", outside[c].len ? ", " : "", hc->name);
        }
        if (hc)
            cf_config_host_free(hc);
        json_decref(vars);
    }
    for (size_t c = 0; c < r->n_certs; c++) {
        if (outside[c].len)
            cf_report_note(&r->report,
                           "certificate '%s' is also served by %s, outside the limit '%s': no "
                           "token is placed and no new version is pushed there; include them "
                           "in the limit",
                           r->certs[c].fc->cert_name, outside[c].data, r->o->limit);
        cf_buf_release(&outside[c]);
    }
    free(outside);
}

/* Build the run's host and certificate records from the fleet. */
static void setup_records(struct run *r)
{
    for (size_t i = 0; i < r->n_hosts; i++)
        r->hosts[i].rep =
            cf_report_add_host(&r->report, r->hosts[i].cfg->name, cf_loader_group(&r->ld, i));
    size_t nc = r->fleet ? r->fleet->n_certs : 0;
    r->certs = cf_xcalloc(nc ? nc : 1, sizeof *r->certs);
    r->n_certs = nc;
    for (size_t i = 0; i < nc; i++) {
        struct rcert *c = &r->certs[i];
        const struct cf_fleet_cert *fc = &r->fleet->certs[i];
        struct cf_buf d = CF_BUF_INIT;
        for (size_t k = 0; k < fc->n_domains; k++)
            cf_buf_printf(&d, "%s%s", k ? "," : "", fc->domains[k]);
        c->run = r;
        c->fc = fc;
        cf_report_cert(&r->report, fc->cert_name, d.data ? d.data : "");
        c->rep = r->report.n_certs - 1;
        cf_buf_release(&d);
        c->hosts = cf_xcalloc(fc->n_hosts, sizeof *c->hosts);
        c->hcs = cf_xcalloc(fc->n_hosts, sizeof *c->hcs);
        c->n_hosts = fc->n_hosts;
        c->pending = fc->n_hosts;
        crep(c)->hosts_total = (int)fc->n_hosts;
        for (size_t k = 0; k < fc->n_hosts; k++) {
            for (size_t j = 0; j < r->n_hosts; j++) {
                if (r->hosts[j].cfg != fc->hosts[k])
                    continue;
                struct rhost *h = &r->hosts[j];
                h->hc = cf_xrealloc(h->hc, (h->n_hc + 1) * sizeof *h->hc);
                memset(&h->hc[h->n_hc], 0, sizeof *h->hc);
                h->hc[h->n_hc].cert = c;
                h->hc[h->n_hc].entry = fc->entries[k];
                h->n_hc++;
                c->hosts[k] = h;
            }
        }
    }
    /* host->hc moved while growing: link the certificates to the final slots */
    for (size_t j = 0; j < r->n_hosts; j++) {
        struct rhost *h = &r->hosts[j];
        for (size_t k = 0; k < h->n_hc; k++) {
            struct rcert *c = h->hc[k].cert;
            for (size_t m = 0; m < c->n_hosts; m++)
                if (c->hosts[m] == h)
                    c->hcs[m] = &h->hc[k];
        }
    }
    r->hosts_left = r->n_hosts;
    r->certs_left = r->n_certs;
    note_outside_limit(r);
}

/* ------------------------------------------------------------------ */
/* helpers for host paths                                              */

static char *live_path(const struct rhost *h, const char *cert, const char *file)
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
static int add_version_writes(struct cf_rbatch *b, const struct rhost *h, const char *cert,
                              int version, const char *certpem, const char *chainpem,
                              const char *fullchain, const char *key, size_t keylen, char *err)
{
    char *adir = cf_asprintf("%s/archive/%s", h->cfg->config_dir.path, cert);
    char *ldir = cf_asprintf("%s/live/%s", h->cfg->config_dir.path, cert);
    int rc = 0;
    if (cf_rbatch_mkdir(b, adir, 0700, NULL, NULL, err) < 0 ||
        cf_rbatch_mkdir(b, ldir, 0755, NULL, NULL, err) < 0)
        rc = CF_EINVAL;
    const char *data[LIVE_FILES] = {certpem, chainpem, fullchain, key};
    for (int i = 0; rc == 0 && i < LIVE_FILES; i++) {
        char *p = archive_path(h, cert, live_names[i], version);
        int secret = i == 3;
        size_t len = secret ? keylen : strlen(data[i]);
        if (cf_rbatch_write(b, p, data[i], len, secret ? 0600 : 0644,
                            secret ? h->cfg->key_owner : NULL, secret ? h->cfg->key_group : NULL,
                            err) < 0)
            rc = CF_EINVAL;
        free(p);
    }
    for (int i = 0; rc == 0 && i < LIVE_FILES; i++) {
        char *p = live_path(h, cert, live_names[i]);
        /* relative, as certbot makes them: the layout stays valid wherever
         * the tree is mounted or copied */
        char *t = cf_asprintf("../../archive/%s/%s%d.pem", cert, live_names[i], version);
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
static const char *batch_error(const struct cf_rbatch *b, size_t from, size_t to)
{
    for (size_t i = from; i < to && i < cf_rbatch_count(b); i++) {
        const struct cf_rop_result *res = cf_rbatch_result(b, i);
        if (res->status != 0 && !res->skipped)
            return res->err_text ? res->err_text : cf_strerror(res->status);
    }
    return NULL;
}

/* stdout + stderr of a RUN op, trimmed, for reports. */
static char *run_output(const struct cf_rop_result *res)
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

/* ------------------------------------------------------------------ */
/* 2. prepare each host                                                */

struct prep {
    struct rhost *h;
    cf_ssh *s;
    struct cf_rbatch *b;
    size_t *first_op;          /* per hostcert: index of its first inspect op */
    struct cf_role_undo *undo; /* what the role's converge replaced, or NULL */
    char *fail_msg;            /* the failed config test, while rolling back */
};

static void host_prepared(struct rhost *h, int ok)
{
    struct run *r = h->run;
    h->ready = ok;
    h->prepared = 1;
    r->hosts_left--;
    progress(r);
    for (size_t k = 0; k < h->n_hc; k++)
        cert_host_prepared(h->hc[k].cert);
    run_maybe_finish(r);
}

static void prep_free(struct prep *p)
{
    if (p->b)
        cf_rbatch_free(p->b);
    free(p->first_op);
    cf_role_undo_free(p->undo);
    free(p->fail_msg);
    free(p);
}

static void on_role_undone(cf_ssh *s, int status, struct cf_role_result *res, void *arg)
{
    struct prep *p = arg;
    struct rhost *h = p->h;
    (void)s;
    (void)status;
    for (size_t i = 0; i < res->n_tasks; i++)
        cf_report_task(hrep(h), "rollback", res->tasks[i].name, res->tasks[i].status,
                       res->tasks[i].msg, NULL, res->tasks[i].ms);
    char *msg = cf_role_undo_message(p->fail_msg, res);
    cf_report_host_failed(hrep(h), msg);
    free(msg);
    cf_role_result_free(res);
    struct cf_hostq *q = h->q;
    prep_free(p);
    host_prepared(h, 0);
    cf_hostq_done(q);
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
            cf_report_host_failed(hrep(p->h), err);
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
            cf_report_task(hrep(h), "handler", t->name, t->status, t->msg, NULL, t->ms);
        }
        if (status != 0)
            cf_report_host_failed(hrep(h), res->error[0] ? res->error : cf_strerror(status));
        int rolling = status == 0 && !ok && prep_rollback(p, res);
        cf_role_result_free(res);
        if (rolling)
            return;
    }
    struct cf_hostq *q = h->q;
    prep_free(p);
    host_prepared(h, ok);
    cf_hostq_done(q);
}

static void prep_handlers(struct prep *p, cf_ssh *s)
{
    struct rhost *h = p->h;
    struct run *r = h->run;
    if (!h->need_handlers || r->mode == CF_MODE_RENEW) {
        struct cf_hostq *q = h->q;
        prep_free(p);
        host_prepared(h, 1);
        cf_hostq_done(q);
        return;
    }
    struct cf_role_opts ro = {r->check, r->o->diff, h->cfg->become};
    char err[CF_ERRLEN] = "";
    int rc = cf_role_run_handlers(p->s, r->role, h->vars, (const char *const *)h->notified,
                                  h->n_notified, &ro, on_handlers, p, err);
    if (rc == 1) {
        /* nothing due, or --check: no callback comes */
        if (r->check)
            cf_report_task(hrep(h), "handler", "test, then reload nginx", CF_TASK_SKIPPED,
                           "check mode: not run", NULL, 0);
        struct cf_hostq *q = h->q;
        prep_free(p);
        host_prepared(h, 1);
        cf_hostq_done(q);
        return;
    }
    if (rc != 0) {
        cf_report_host_failed(hrep(h), err);
        struct cf_hostq *q = h->q;
        prep_free(p);
        host_prepared(h, 0);
        cf_hostq_done(q);
    }
}

static void on_installed(struct cf_rbatch *b, int status, void *arg)
{
    struct prep *p = arg;
    struct rhost *h = p->h;
    const char *e = status ? cf_strerror(status) : batch_error(b, 0, cf_rbatch_count(b));
    if (e) {
        cf_report_task(hrep(h), "prepare", "install first certificate", CF_TASK_FAILED, e, NULL, 0);
        struct cf_hostq *q = h->q;
        prep_free(p);
        host_prepared(h, 0);
        cf_hostq_done(q);
        return;
    }
    prep_handlers(p, NULL);
}

/* A host whose live/<cert> does not exist yet gets the store's current
 * version, or a self-signed placeholder when the store has none, so that
 * nginx -t passes and nginx can start serving the challenge (design.md:
 * a new host's config refers to the certificate links from day one). */
static void prep_install(struct prep *p, cf_ssh *s)
{
    struct rhost *h = p->h;
    struct run *r = h->run;
    struct cf_rbatch *b = cf_rbatch_new();
    int n = 0;
    char err[CF_ERRLEN] = "";
    for (size_t k = 0; k < h->n_hc; k++) {
        struct hostcert *hc = &h->hc[k];
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
            rc = add_version_writes(b, h, name, version, pems.cert, pems.chain, pems.fullchain,
                                    pems.privkey, pems.privkey_len, err);
        } else {
            what = "self-signed placeholder until the first certificate";
            rc = cf_x509_make_placeholder((const char *const *)hc->cert->fc->domains,
                                          hc->cert->fc->n_domains, cf_now_ms() / 1000, &cert, &key,
                                          &keylen, err);
            if (rc == 0)
                /* self-signed: its own chain, so ssl_trusted_certificate loads */
                rc = add_version_writes(b, h, name, 0, cert, cert, cert, key, keylen, err);
        }
        free(cert);
        cf_secure_free(key, keylen);
        cf_store_pems_release(&pems);
        char *task = cf_asprintf("install certificate '%s'", name);
        if (rc != 0) {
            cf_report_task(hrep(h), "prepare", task, CF_TASK_FAILED, err, NULL, 0);
            free(task);
            cf_rbatch_free(b);
            struct cf_hostq *q = h->q;
            prep_free(p);
            host_prepared(h, 0);
            cf_hostq_done(q);
            return;
        }
        char *msg = cf_asprintf("version %d: %s", version, what);
        cf_report_task(hrep(h), "prepare", task, CF_TASK_CHANGED, msg, NULL, 0);
        free(msg);
        free(task);
        n++;
    }
    if (n == 0 || r->check) {
        cf_rbatch_free(b);
        if (n)
            h->need_handlers = 1;
        prep_handlers(p, s);
        return;
    }
    h->need_handlers = 1;
    cf_rbatch_free(p->b);
    p->b = b;
    if (cf_hostq_remote(h->q, b, on_installed, p) != 0)
        on_installed(b, CF_EIO, p);
}

static int parse_serial_of(const char *pem, size_t len, char **serial, int *placeholder)
{
    struct cf_cert_info ci = {0};
    char err[CF_ERRLEN];
    if (cf_x509_parse(pem, len, &ci, err) != 0)
        return CF_EINVAL;
    *serial = cf_strdup(ci.serial_hex);
    *placeholder = cf_x509_is_placeholder(&ci);
    cf_cert_info_release(&ci);
    return 0;
}

static void on_inspected(struct cf_rbatch *b, int status, void *arg)
{
    struct prep *p = arg;
    struct rhost *h = p->h;
    if (status != 0) {
        cf_report_host_failed(hrep(h), cf_strerror(status));
        struct cf_hostq *q = h->q;
        prep_free(p);
        host_prepared(h, 0);
        cf_hostq_done(q);
        return;
    }
    for (size_t k = 0; k < h->n_hc; k++) {
        struct hostcert *hc = &h->hc[k];
        size_t at = p->first_op[k];
        for (int i = 0; i < LIVE_FILES; i++) {
            const struct cf_rop_result *res = cf_rbatch_result(b, at + (size_t)i);
            if (res && res->status == 0 && res->st.exists && res->st.link_target)
                hc->prev_target[i] = cf_strdup(res->st.link_target);
        }
        const struct cf_rop_result *rd = cf_rbatch_result(b, at + LIVE_FILES);
        if (rd && rd->status == 0 && rd->st.exists && rd->data && rd->len)
            parse_serial_of(rd->data, rd->len, &hc->live_serial, &hc->live_placeholder);
    }
    if (h->run->mode == CF_MODE_RENEW) {
        prep_handlers(p, NULL);
        return;
    }
    prep_install(p, NULL);
}

/* Read what each certificate of the host has live: the link targets (for
 * rollback) and the serial of live/<cert>/cert.pem, in one round trip. */
static void prep_inspect(struct prep *p)
{
    struct rhost *h = p->h;
    char err[CF_ERRLEN] = "";
    struct cf_rbatch *b = cf_rbatch_new();
    p->first_op = cf_xcalloc(h->n_hc ? h->n_hc : 1, sizeof *p->first_op);
    for (size_t k = 0; k < h->n_hc; k++) {
        const char *name = h->hc[k].cert->fc->cert_name;
        p->first_op[k] = cf_rbatch_count(b);
        for (int i = 0; i < LIVE_FILES; i++) {
            char *lp = live_path(h, name, live_names[i]);
            cf_rbatch_stat(b, lp, err);
            free(lp);
        }
        char *cp = live_path(h, name, "cert");
        cf_rbatch_read(b, cp, 256 * 1024, err);
        free(cp);
    }
    p->b = b;
    if (cf_hostq_remote(h->q, b, on_inspected, p) != 0)
        on_inspected(b, CF_EIO, p);
}

static void on_converged(cf_ssh *s, int status, struct cf_role_result *res, void *arg)
{
    struct prep *p = arg;
    struct rhost *h = p->h;
    if (res) {
        for (size_t i = 0; i < res->n_tasks; i++) {
            struct cf_task_result *t = &res->tasks[i];
            cf_report_task(hrep(h), "prepare", t->name, t->status, t->msg, t->diff, t->ms);
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
    int failed = status != 0 || !res || res->failed;
    if (status != 0)
        cf_report_host_failed(hrep(h), res && res->error[0] ? res->error : cf_strerror(status));
    if (res)
        cf_role_result_free(res);
    if (failed) {
        struct cf_hostq *q = h->q;
        prep_free(p);
        host_prepared(h, 0);
        cf_hostq_done(q);
        return;
    }
    prep_inspect(p);
}

static void job_prepare(struct cf_hostq *q, cf_ssh *s, int status, void *arg)
{
    struct rhost *h = arg;
    struct run *r = h->run;
    if (status != 0 || !s) {
        cf_report_unreachable(hrep(h), cf_hostq_error(q));
        host_prepared(h, 0);
        cf_hostq_done(q);
        return;
    }
    struct prep *p = cf_xcalloc(1, sizeof *p);
    p->h = h;
    p->s = s;
    if (r->mode == CF_MODE_RENEW) {
        prep_inspect(p);
        return;
    }
    struct cf_role_opts ro = {r->check, r->o->diff, h->cfg->become};
    char err[CF_ERRLEN] = "";
    if (cf_role_converge(s, r->role, h->vars, &ro, on_converged, p, err) != 0) {
        cf_report_host_failed(hrep(h), err);
        prep_free(p);
        host_prepared(h, 0);
        cf_hostq_done(q);
    }
}

/* ------------------------------------------------------------------ */
/* 3. certificates: lock, decide, order                                */

static struct cf_acme *acme_for(struct run *r, struct rcert *c, char *err)
{
    const struct cf_host_config *hc = c->fc->hosts[0];
    const char *url = r->o->server ? r->o->server : r->o->staging ? LE_STAGING : hc->acme_server;
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
static void cert_load_current(struct rcert *c)
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

static void cert_fail(struct rcert *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void cert_fail(struct rcert *c, const char *fmt, ...)
{
    struct cf_cert_report *cr = crep(c);
    va_list ap;
    char buf[CF_ERRLEN];
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    cr->failed = 1;
    if (!cr->error)
        cr->error = cf_strdup(buf);
    for (size_t k = 0; k < c->n_hosts; k++) {
        if (!c->hosts[k])
            continue;
        cf_notify_add_error(c->run->events, c->hosts[k]->cfg->name, c->fc->domains[0],
                            c->fc->cert_name, c->have_cur ? c->cur.info.not_after : 0, buf,
                            cf_notify_classify_failure(buf), c->hcs[k]->entry->webroot.raw,
                            cf_now_ms() / 1000);
    }
    cert_finish(c);
}

/* --- HTTP-01 / DNS-01 solver: tokens on every host of the certificate */

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
    int attempts;     /* HTTP fetches of the token so far */
    uv_timer_t retry; /* between fetches; closed before th is freed */
};

/* A reload (HUP) lets old and new nginx workers accept side by side for a
 * moment, so one fetch may meet the old configuration: try a few times. */
#define TOKEN_FETCH_ATTEMPTS 10
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
    if (!good && th->attempts < TOKEN_FETCH_ATTEMPTS) {
        uv_timer_start(&th->retry, on_retry, TOKEN_FETCH_RETRY_MS, 0);
        return;
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

/* Fetch the token back the way the CA will, so a host that cannot serve
 * it fails here with its name and URL instead of as an opaque CA error. */
static int token_fetch(struct tokhost *th)
{
    struct run *r = th->t->c->run;
    char *url = token_url(th);
    char host_hdr[300];
    snprintf(host_hdr, sizeof host_hdr, "Host: %s", th->t->identifier);
    const char *hdrs[] = {host_hdr, NULL};
    struct cf_http_request req = {
        .method = "GET", .url = url, .headers = hdrs, .timeout_ms = 10000, .max_body = 64 * 1024};
    th->attempts++;
    int rc = cf_http_request(r->http, &req, on_token_fetched, th);
    free(url);
    return rc;
}

static void on_token_written(struct cf_rbatch *b, int status, void *arg)
{
    struct tokhost *th = arg;
    struct tok *t = th->t;
    struct run *r = t->c->run;
    const char *e = status ? cf_strerror(status) : batch_error(b, 0, cf_rbatch_count(b));
    cf_rbatch_free(b);
    struct cf_hostq *q = th->q;
    if (t->cleanup) {
        free(th);
        cf_hostq_done(q);
        tok_settle(t);
        return;
    }
    if (e) {
        tok_fail(t, "host '%s': could not write the token for '%s': %s", th->h->cfg->name,
                 t->identifier, e);
        free(th);
        cf_hostq_done(q);
        tok_settle(t);
        return;
    }
    cf_hostq_done(q);
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
        if (!t->cleanup)
            tok_fail(t, "host '%s' is unreachable: %s", th->h->cfg->name, cf_hostq_error(q));
        free(th);
        cf_hostq_done(q);
        tok_settle(t);
        return;
    }
    struct cf_rbatch *b = cf_rbatch_new();
    char *path = token_path(th);
    int rc = t->cleanup
                 ? cf_rbatch_remove(b, path, err)
                 : cf_rbatch_write(b, path, t->keyauth, strlen(t->keyauth), 0644, NULL, NULL, err);
    free(path);
    if (rc < 0 || cf_hostq_remote(q, b, on_token_written, th) != 0) {
        cf_rbatch_free(b);
        if (!t->cleanup)
            tok_fail(t, "host '%s': %s", th->h->cfg->name, err[0] ? err : "cannot write token");
        free(th);
        cf_hostq_done(q);
        tok_settle(t);
    }
}

static void tok_fanout(struct tok *t)
{
    struct rcert *c = t->c;
    t->pending = 1; /* held until every host is queued */
    for (size_t k = 0; k < c->n_hosts; k++) {
        struct rhost *h = c->hosts[k];
        if (!h || !h->ready)
            continue;
        struct tokhost *th = cf_xcalloc(1, sizeof *th);
        th->t = t;
        th->h = h;
        th->idx = k;
        t->pending++;
        cf_hostq_push(h->q, job_token, th);
    }
    tok_settle(t);
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
        uv_close((uv_handle_t *)&t->proc, NULL);
        tok_settle(t);
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

static void solver_present(void *arg, const struct cf_acme_challenge *ch, cf_acme_solver_done done,
                           void *ctx)
{
    tok_begin(arg, ch, done, ctx, 0);
}

static void solver_cleanup(void *arg, const struct cf_acme_challenge *ch, cf_acme_solver_done done,
                           void *ctx)
{
    tok_begin(arg, ch, done, ctx, 1);
}

/* --- the order */

struct ordctx {
    struct rcert *c;
    struct cf_acme_solver solver;
    char *replaces;
};

static void push_plan(struct rcert *c);

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
        if (!next->order_started)
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
        if (!c->order_started)
            order_slot_free(r);
        return;
    }
    r->order_queue = cf_xrealloc(r->order_queue, (r->n_order_queue + 1) * sizeof *r->order_queue);
    r->order_queue[r->n_order_queue++] = c;
}

static void on_ordered(int status, struct cf_acme_order_result *res, void *arg)
{
    struct ordctx *oc = arg;
    struct rcert *c = oc->c;
    struct run *r = c->run;
    free(oc->replaces);
    free(oc);
    order_slot_free(r);
    if (status != 0) {
        cert_fail(c, "%s", res && res->error ? res->error : cf_strerror(status));
        return;
    }
    char err[CF_ERRLEN] = "";
    char *keypem = NULL;
    size_t keylen = 0;
    if (cf_x509_key_pem(c->key, &keypem, &keylen, err) != 0) {
        cert_fail(c, "%s", err);
        return;
    }
    /* The design's first trap: check the bundle before anything uses it. */
    if (cf_x509_check_bundle(res->fullchain_pem, keypem, (const char *const *)c->fc->domains,
                             c->fc->n_domains, cf_now_ms() / 1000, err) != 0) {
        cf_secure_free(keypem, keylen);
        cert_fail(c, "the issued certificate failed its checks: %s", err);
        return;
    }
    struct cf_store_params sp = {(const char *const *)c->fc->domains, c->fc->n_domains, c->key_type,
                                 c->acme_url, cf_acme_account_url(c->acme)};
    int version = 0;
    int rc =
        cf_store_add(&r->store, c->fc->cert_name, res->fullchain_pem, keypem, &sp, &version, err);
    cf_secure_free(keypem, keylen);
    if (rc != 0) {
        cert_fail(c, "central store: %s", err);
        return;
    }
    struct cf_cert_info ci = {0};
    cf_x509_parse(res->fullchain_pem, 0, &ci, err);
    struct cf_cert_report *cr = crep(c);
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
    cert_load_current(c);
    push_plan(c);
}

static void order_start(struct rcert *c)
{
    struct run *r = c->run;
    char err[CF_ERRLEN] = "";
    const struct cf_host_config *hc0 = c->fc->hosts[0];
    size_t ready = 0;
    for (size_t k = 0; k < c->n_hosts; k++)
        ready += c->hosts[k] && c->hosts[k]->ready;
    if (c->fc->challenge == CF_CHALLENGE_HTTP01 && ready == 0) {
        cert_fail(c,
                  "no host of certificate '%s' is reachable and prepared: cannot answer "
                  "http-01",
                  c->fc->cert_name);
        return;
    }
    if (c->fc->challenge == CF_CHALLENGE_DNS01 && (!hc0->dns_hook || !*hc0->dns_hook)) {
        cert_fail(c, "certificate '%s' uses dns-01 but certbot_dns_hook is not set",
                  c->fc->cert_name);
        return;
    }
    /* certbot_reuse_key keeps the current key across renewals. */
    if (hc0->reuse_key && c->have_cur) {
        struct cf_store_pems pems = {0};
        if (cf_store_read(&r->store, c->fc->cert_name, 0, &pems, err) == 0) {
            BIO *bio = BIO_new_mem_buf(pems.privkey, (int)pems.privkey_len);
            c->key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
            BIO_free(bio);
        }
        cf_store_pems_release(&pems);
    }
    if (!c->key && cf_x509_keygen(c->key_type, &c->key, err) != 0) {
        cert_fail(c, "%s", err);
        return;
    }
    struct ordctx *oc = cf_xcalloc(1, sizeof *oc);
    oc->c = c;
    oc->solver.present = solver_present;
    oc->solver.cleanup = solver_cleanup;
    oc->solver.arg = c;
    if (c->have_cur && c->cur.info.aki_len)
        cf_x509_ari_certid(&c->cur.info, &oc->replaces, err);
    struct cf_acme_order_req req = {
        .domains = (const char *const *)c->fc->domains,
        .n_domains = c->fc->n_domains,
        .challenge_type = cf_challenge_name(c->fc->challenge),
        .cert_key = c->key,
        .replaces = oc->replaces,
        .preferred_chain =
            hc0->preferred_chain && *hc0->preferred_chain ? hc0->preferred_chain : NULL,
        .solver = &oc->solver,
    };
    c->order_started = 1;
    if (cf_acme_order(c->acme, &req, on_ordered, oc, err) != 0) {
        c->order_started = 0;
        free(oc->replaces);
        free(oc);
        cert_fail(c, "%s", err);
    }
}

static void cert_decide(struct rcert *c, int has_ari, int64_t ari_start, int64_t ari_end)
{
    struct run *r = c->run;
    const struct cf_host_config *hc0 = c->fc->hosts[0];
    char err[CF_ERRLEN] = "";
    int dup_count = 0;
    int64_t dup_next = 0;
    if (r->have_db)
        cf_db_duplicate_check(&r->db, (const char *const *)c->fc->domains, c->fc->n_domains,
                              cf_now_ms() / 1000, &dup_count, &dup_next, err);
    struct cf_renew_input in = {
        .cur = c->have_cur && c->cur.have_info ? &c->cur.info : NULL,
        .domains = (const char *const *)c->fc->domains,
        .n_domains = c->fc->n_domains,
        .key_type = c->key_type,
        .renewal_days = hc0->renewal_days,
        .has_ari = has_ari,
        .ari_start = ari_start,
        .ari_end = ari_end,
        .ari_fraction = (double)(random() % 1000) / 1000.0,
        .force = r->o->force_renewal,
        .now = cf_now_ms() / 1000,
        .dup_count = dup_count,
        .dup_next_allowed = dup_next,
    };
    struct cf_renew_result out;
    cf_renew_decide(&in, &out);
    c->decision = out.decision;
    c->forced = out.decision == CF_RENEW_RENEW_FORCED;
    struct cf_cert_report *cr = crep(c);
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
        cert_fail(c, "%s", out.reason);
        return;
    }
    if (!cf_renew_issues(out.decision) || r->check) {
        push_plan(c);
        return;
    }
    cert_order(c);
}

static void on_ari(int status, int64_t start, int64_t end, const char *err, void *arg)
{
    struct rcert *c = arg;
    cert_decide(c, status == 0, start, end);
}

static void on_locked(struct cf_store_lock_req *req, int status, const char *err)
{
    struct rcert *c = req->data;
    struct run *r = c->run;
    char e[CF_ERRLEN] = "";
    if (status != 0) {
        cert_fail(c, "%s", err && *err ? err : cf_strerror(status));
        return;
    }
    c->locked = !r->check;
    cert_load_current(c);
    /* Ask the CA's renewal window (ARI) first when it offers one; plan
     * never talks to the CA. */
    if (c->have_cur && !r->check && !r->o->force_renewal && c->acme && c->cur.cert_path) {
        char *pem = NULL;
        int started = 0;
        if (cf_read_file(c->cur.cert_path, CF_PEM_MAX, &pem, NULL) == 0)
            started = cf_acme_renewal_info(c->acme, pem, on_ari, c, e) == 0;
        free(pem);
        if (started)
            return;
    }
    cert_decide(c, 0, 0, 0);
}

static int cert_key_type(struct rcert *c, char *err)
{
    return cf_x509_key_type_norm(cf_key_type_name(c->fc->key_type), c->fc->key_size, NULL,
                                 c->key_type, err);
}

/* All hosts of the certificate have finished preparing: go. */
static void cert_host_prepared(struct rcert *c)
{
    struct run *r = c->run;
    char err[CF_ERRLEN] = "";
    if (--c->pending)
        return;
    if (cert_key_type(c, err) != 0) {
        cert_fail(c, "%s", err);
        return;
    }
    if (!r->have_store) {
        /* plan without a state dir: everything would be issued */
        struct cf_cert_report *cr = crep(c);
        free(cr->decision);
        cr->decision = cf_strdup(cf_renew_decision_name(CF_RENEW_ISSUE_MISSING));
        free(cr->reason);
        cr->reason = cf_strdup("no central store yet");
        cert_finish(c);
        return;
    }
    if (!r->check && !c->acme) {
        c->acme = acme_for(r, c, err);
        if (!c->acme) {
            cert_fail(c, "%s", err);
            return;
        }
    }
    if (r->check) {
        on_locked(&(struct cf_store_lock_req){.data = c}, 0, NULL);
        return;
    }
    if (cf_store_lock_start(&r->loop, &r->store, c->fc->cert_name, r->o->lock_timeout_s,
                            &c->lockreq, on_locked, c, err) != 0)
        cert_fail(c, "%s", err);
}

/* ------------------------------------------------------------------ */
/* 4. push: write, swap, test, reload or roll back, prove              */

struct push {
    struct rcert *c;
    size_t k; /* host index in the certificate */
    struct rhost *h;
    struct cf_hostq *q;
    cf_ssh *s;
    struct cf_rbatch *b;
    size_t test_op;
    char *fail_msg;
    size_t probes_left;
    char probe_err[CF_ERRLEN];
    uint64_t t0;
    struct cf_probe_req *preqs;
    char **snis;
    uint64_t deadline; /* monotonic ms: --verify-timeout from the reload */
    int confirm_left;  /* consecutive matching rounds still wanted */
    int confirm_bad;   /* mismatches in the current confirmation round */
    uv_timer_t timer;  /* between confirmation rounds */
    int timer_init;
};

/* After a reload nginx can still answer a handshake or two from a worker
 * with the previous configuration, so one matching handshake is weak
 * proof: the new serial must also be served in this many further rounds. */
#define PROVE_CONFIRM_ROUNDS 3
#define PROVE_CONFIRM_MS     200

static void push_host_done(struct push *p, int ok, const char *msg);
static void push_prove_round(struct push *p);

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
    const char *e = status ? cf_strerror(status) : batch_error(b, 0, cf_rbatch_count(b));
    char *msg = cf_asprintf("%s; rolled back to the previous certificate%s%s%s", p->fail_msg,
                            e ? " (rollback problem: " : "", e ? e : "", e ? ")" : "");
    push_host_done(p, 0, msg);
    free(msg);
}

/* Swap the links back to what they were, test, and reload when the new
 * version had been loaded already. */
static void push_rollback(struct push *p, const char *why, int reload)
{
    struct hostcert *hc = p->c->hcs[p->k];
    const struct cf_host_config *cfg = p->h->cfg;
    char err[CF_ERRLEN] = "";
    free(p->fail_msg);
    p->fail_msg = cf_strdup(why);
    if (p->b)
        cf_rbatch_free(p->b);
    p->b = cf_rbatch_new();
    int any = 0;
    for (int i = 0; i < LIVE_FILES; i++) {
        if (!hc->prev_target[i])
            continue;
        char *lp = live_path(p->h, p->c->fc->cert_name, live_names[i]);
        cf_rbatch_symlink(p->b, lp, hc->prev_target[i], err);
        free(lp);
        any = 1;
    }
    if (!any) {
        push_host_done(p, 0, why);
        return;
    }
    cf_rbatch_run(p->b, cfg->test_command, 1, err);
    if (reload)
        cf_rbatch_run(p->b, cfg->reload_command, 1, err);
    if (cf_hostq_remote(p->q, p->b, on_rolled_back, p) != 0)
        on_rolled_back(p->b, CF_EIO, p);
}

static void prove_failed(struct push *p, const char *detail)
{
    char *why = cf_asprintf("reloaded, but the new certificate is not served: %s", detail);
    push_rollback(p, why, 1);
    free(why);
}

static void prove_next_confirm(struct push *p);

static void on_confirmed(const struct cf_probe_result *res, void *arg)
{
    struct push *p = arg;
    if (res->status != 0 || !cf_probe_serial_eq(res->serial, crep(p->c)->serial)) {
        if (!p->confirm_bad++)
            snprintf(p->probe_err, sizeof p->probe_err,
                     "host '%s' served serial %s again after serving %s", p->h->cfg->name,
                     res->status ? "none" : res->serial, crep(p->c)->serial);
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
                            crep(p->c)->serial ? crep(p->c)->serial : "?", p->h->cfg->address,
                            p->h->cfg->https_port);
    push_host_done(p, 1, msg);
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
        if (cf_probe_expect_serial(&r->loop, &p->preqs[i], crep(p->c)->serial, left, 250, on_probed,
                                   p, err) != 0) {
            if (!p->probe_err[0])
                snprintf(p->probe_err, sizeof p->probe_err, "%s", err);
            struct cf_probe_result fake = {.status = CF_EINVAL};
            snprintf(fake.error, sizeof fake.error, "%s", err);
            on_probed(&fake, p);
        }
    }
}

static void push_prove(struct push *p)
{
    struct run *r = p->c->run;
    const struct cf_fleet_cert *fc = p->c->fc;
    p->preqs = cf_xcalloc(fc->n_domains, sizeof *p->preqs);
    p->snis = cf_xcalloc(fc->n_domains, sizeof *p->snis);
    for (size_t i = 0; i < fc->n_domains; i++) {
        const char *d = fc->domains[i];
        /* a wildcard is proved with a name it covers */
        p->snis[i] = !strncmp(d, "*.", 2) ? cf_asprintf("certfleet-probe.%s", d + 2) : cf_strdup(d);
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

/* Is the certificate used by a service (an nginx server block) on the
 * host?  Only then can a TLS handshake prove it is served. */
static int host_serves(const struct rhost *h, const char *cert)
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
        char *out = res ? run_output(res) : cf_strdup(cf_strerror(status));
        char *why = cf_asprintf("reload command failed: %s", out);
        free(out);
        push_rollback(p, why, 1);
        free(why);
        return;
    }
    if (!host_serves(p->h, p->c->fc->cert_name)) {
        char *msg = cf_asprintf("version %d serial %s installed; no service of this host uses "
                                "it (certbot_services), so it was not probed over TLS",
                                p->c->pems.version, crep(p->c)->serial ? crep(p->c)->serial : "?");
        push_host_done(p, 1, msg);
        free(msg);
        return;
    }
    push_prove(p);
}

static void on_pushed(struct cf_rbatch *b, int status, void *arg)
{
    struct push *p = arg;
    char err[CF_ERRLEN] = "";
    if (status != 0) {
        push_host_done(p, 0, cf_ssh_error(p->s)[0] ? cf_ssh_error(p->s) : cf_strerror(status));
        return;
    }
    const char *e = batch_error(b, 0, p->test_op);
    if (e) {
        char *why = cf_asprintf("could not write the new version: %s", e);
        push_rollback(p, why, 0);
        free(why);
        return;
    }
    const struct cf_rop_result *t = cf_rbatch_result(b, p->test_op);
    if (!t || t->exit_status != 0) {
        char *out = t ? run_output(t) : cf_strdup("no result");
        char *why = cf_asprintf("test command '%s' failed after the swap: %s",
                                p->h->cfg->test_command, out);
        free(out);
        push_rollback(p, why, 0);
        free(why);
        return;
    }
    cf_rbatch_free(p->b);
    p->b = cf_rbatch_new();
    cf_rbatch_run(p->b, p->h->cfg->reload_command, 1, err);
    if (cf_hostq_remote(p->q, p->b, on_reloaded, p) != 0)
        on_reloaded(p->b, CF_EIO, p);
}

static void job_push(struct cf_hostq *q, cf_ssh *s, int status, void *arg)
{
    struct push *p = arg;
    struct rcert *c = p->c;
    char err[CF_ERRLEN] = "";
    p->q = q;
    p->s = s;
    if (status != 0 || !s) {
        push_host_done(p, 0, cf_hostq_error(q));
        return;
    }
    p->b = cf_rbatch_new();
    if (add_version_writes(p->b, p->h, c->fc->cert_name, c->pems.version, c->pems.cert,
                           c->pems.chain, c->pems.fullchain, c->pems.privkey, c->pems.privkey_len,
                           err) != 0) {
        push_host_done(p, 0, err);
        return;
    }
    p->test_op = cf_rbatch_count(p->b);
    cf_rbatch_run(p->b, p->h->cfg->test_command, 0, err);
    if (cf_hostq_remote(q, p->b, on_pushed, p) != 0)
        on_pushed(p->b, CF_EIO, p);
}

static void on_push_timer_closed(uv_handle_t *h)
{
    push_free(h->data);
}

static void push_host_done(struct push *p, int ok, const char *msg)
{
    struct rcert *c = p->c;
    struct run *r = c->run;
    struct rhost *h = p->h;
    char *task = cf_asprintf("push certificate '%s'", c->fc->cert_name);
    uint64_t ms = cf_mono_ms() - p->t0;
    cf_report_task(hrep(h), "push", task, ok ? CF_TASK_CHANGED : CF_TASK_FAILED, msg, NULL, ms);
    free(task);
    struct cf_cert_report *cr = crep(c);
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

/* Ansible's serial + max_fail_percentage: hosts go in batches; once more
 * than P% of the certificate's hosts have failed, no further batch starts. */
static void push_start_batch(struct rcert *c)
{
    struct run *r = c->run;
    if (c->next_target >= c->n_targets) {
        cert_finish(c);
        return;
    }
    if (r->o->max_fail_pct >= 0 && c->failed_hosts > 0 &&
        c->failed_hosts * 100 > (size_t)r->o->max_fail_pct * c->n_hosts) {
        size_t left = c->n_targets - c->next_target;
        cf_report_note(&r->report,
                       "certificate '%s': stopped after %zu of %zu hosts failed "
                       "(max_fail_percentage %d); %zu host(s) not pushed",
                       c->fc->cert_name, c->failed_hosts, c->n_hosts, r->o->max_fail_pct, left);
        for (; c->next_target < c->n_targets; c->next_target++) {
            struct rhost *h = c->hosts[c->targets[c->next_target]];
            char *task = cf_asprintf("push certificate '%s'", c->fc->cert_name);
            cf_report_task(hrep(h), "push", task, CF_TASK_SKIPPED,
                           "not pushed: max_fail_percentage reached", NULL, 0);
            free(task);
        }
        crep(c)->failed = 1;
        if (!crep(c)->error)
            crep(c)->error = cf_asprintf("rolling deploy stopped: %zu of %zu hosts failed "
                                         "(max_fail_percentage %d)",
                                         c->failed_hosts, c->n_hosts, r->o->max_fail_pct);
        cert_finish(c);
        return;
    }
    size_t batch = r->o->serial > 0 ? (size_t)r->o->serial : c->n_targets;
    size_t end = c->next_target + batch;
    if (end > c->n_targets)
        end = c->n_targets;
    size_t start = c->next_target;
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
static void push_plan(struct rcert *c)
{
    struct run *r = c->run;
    char err[CF_ERRLEN] = "";
    if (!c->have_cur) {
        cert_finish(c);
        return;
    }
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
    free(crep(c)->serial);
    crep(c)->serial = cf_strdup(serial);
    crep(c)->not_after = c->cur.info.not_after;
    c->targets = cf_xcalloc(c->n_hosts ? c->n_hosts : 1, sizeof *c->targets);
    for (size_t k = 0; k < c->n_hosts; k++) {
        struct rhost *h = c->hosts[k];
        struct hostcert *hc = c->hcs[k];
        if (!h || !h->ready)
            continue;
        if (hc->live_serial && cf_probe_serial_eq(hc->live_serial, serial)) {
            crep(c)->hosts_ok++;
            continue;
        }
        if (r->check) {
            char *task = cf_asprintf("push certificate '%s'", c->fc->cert_name);
            char *msg =
                cf_asprintf("would push version %d (serial %s), host has %s", c->cur.version,
                            serial, hc->live_serial ? hc->live_serial : "none");
            cf_report_task(hrep(h), "push", task, CF_TASK_CHANGED, msg, NULL, 0);
            free(task);
            free(msg);
            continue;
        }
        c->targets[c->n_targets++] = k;
    }
    if (c->n_targets == 0) {
        cert_finish(c);
        return;
    }
    if (cf_store_read(&r->store, c->fc->cert_name, 0, &c->pems, err) != 0) {
        cert_fail(c, "central store: %s", err);
        return;
    }
    c->have_pems = 1;
    if (cf_x509_check_bundle(c->pems.fullchain, c->pems.privkey,
                             (const char *const *)c->fc->domains, c->fc->n_domains,
                             cf_now_ms() / 1000, err) != 0) {
        cert_fail(c, "refusing to push certificate '%s' version %d: %s", c->fc->cert_name,
                  c->pems.version, err);
        return;
    }
    push_start_batch(c);
}

static void cert_finish(struct rcert *c)
{
    struct run *r = c->run;
    if (c->done)
        return;
    c->done = 1;
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
    progress(r);
    run_maybe_finish(r);
}

/* ------------------------------------------------------------------ */
/* 5. finish                                                           */

static void on_fleet_closed(void *arg)
{
    struct run *r = arg;
    for (size_t i = 0; i < r->n_acmes; i++) {
        cf_acme_free(r->acmes[i].acme);
        free(r->acmes[i].url);
    }
    free(r->acmes);
    r->acmes = NULL;
    r->n_acmes = 0;
    if (r->http) {
        cf_http_free(r->http);
        r->http = NULL;
    }
}

static void run_maybe_finish(struct run *r)
{
    if (r->finishing || r->hosts_left || r->certs_left)
        return;
    r->finishing = 1;
    cf_fleetq_close(r->fq, on_fleet_closed, r);
}

static void run_release(struct run *r)
{
    for (size_t i = 0; i < r->n_hosts; i++) {
        struct rhost *h = &r->hosts[i];
        for (size_t k = 0; k < h->n_hc; k++) {
            free(h->hc[k].live_serial);
            for (int j = 0; j < LIVE_FILES; j++)
                free(h->hc[k].prev_target[j]);
        }
        free(h->hc);
        for (size_t k = 0; k < h->n_notified; k++)
            free(h->notified[k]);
        free(h->notified);
    }
    for (size_t i = 0; i < r->n_certs; i++) {
        struct rcert *c = &r->certs[i];
        free(c->hosts);
        free(c->hcs);
        free(c->targets);
        if (c->have_cur)
            cf_store_cert_release(&c->cur);
    }
    free(r->certs);
    free(r->hosts);
    free(r->order_queue);
    cf_loader_release(&r->ld);
    if (r->role)
        cf_role_free(r->role);
    if (r->fq)
        cf_fleetq_free(r->fq);
    if (r->have_db)
        cf_db_close(&r->db);
    if (r->have_store)
        cf_store_release(&r->store);
    cf_notify_free(r->events);
    cf_report_release(&r->report);
}

/* The run's alerts, grouped in one message; a failure to notify is
 * reported, never fatal. */
static void send_alerts(struct run *r)
{
    char report[CF_ERRLEN];
    int rc = cf_notify_deliver(r->events, (const json_t *const *)r->ld.vars, r->ld.n, report,
                               sizeof report);
    if (rc != 0)
        cf_report_note(&r->report, "notification failed: %s", report);
    else if (*report)
        cf_report_note(&r->report, "%s", report);
}

int cf_apply_run(const struct cf_opts *o, enum cf_apply_mode mode, const char *command)
{
    struct run r;
    char err[CF_ERRLEN] = "";
    int rc;
    memset(&r, 0, sizeof r);
    r.o = o;
    r.mode = mode;
    r.check = o->check || mode == CF_MODE_PLAN;
    cf_report_init(&r.report, command, r.check, o->diff);
    r.events = cf_notify_new();
    if (o->n_inventories == 0) {
        fprintf(stderr,
                "certfleet %s: no inventory given: use -i FILE|DIR (see 'certfleet %s "
                "--help')\n",
                command, command);
        run_release(&r);
        return CF_EXIT_USAGE;
    }
    if ((rc = load_config(&r, err)) != 0) {
        fprintf(stderr, "certfleet %s: %s\n", command, err);
        run_release(&r);
        return CF_EXIT_USAGE;
    }
    /* The store: plan only reads it (and does without it when absent). */
    if (cf_store_open(&r.store, o->state_dir, r.check ? CF_STORE_READONLY : 0, err) == 0) {
        r.have_store = 1;
        if ((r.check ? cf_db_open_readonly(&r.db, o->state_dir, err)
                     : cf_db_open(&r.db, o->state_dir, err)) == 0)
            r.have_db = 1;
    } else if (!r.check) {
        fprintf(stderr,
                "certfleet %s: state directory '%s': %s (use --state-dir or "
                "CERTFLEET_STATE_DIR)\n",
                command, o->state_dir, err);
        run_release(&r);
        return CF_EXIT_USAGE;
    }
    if (r.have_db && !r.check)
        cf_db_run_begin(&r.db, command, o->limit, cf_now_ms() / 1000, &r.run_id, err);

    setup_records(&r);
    r.progress = o->output == CF_OUT_TEXT && isatty(2) && !getenv("CI");
    uv_loop_init(&r.loop);
    r.fq = cf_fleetq_new(&r.loop, o->forks);
    srandom((unsigned)cf_now_ms());
    for (size_t i = 0; i < r.n_hosts; i++) {
        struct rhost *h = &r.hosts[i];
        struct cf_ssh_config sc = {
            .name = h->cfg->name,
            .address = h->cfg->address,
            .port = h->cfg->port,
            .user = h->cfg->user,
            .key_file = h->cfg->private_key_file,
            .known_hosts = o->known_hosts,
            .hostkey_mode = o->hostkey_mode,
            .timeout_ms = (unsigned)o->timeout_s * 1000,
        };
        h->q = cf_hostq_new(r.fq, &sc, h->cfg->become);
    }
    progress(&r);
    for (size_t i = 0; i < r.n_hosts; i++)
        cf_hostq_push(r.hosts[i].q, job_prepare, &r.hosts[i]);
    if (r.n_hosts == 0)
        run_maybe_finish(&r);
    uv_run(&r.loop, UV_RUN_DEFAULT);
    if (r.progress)
        fputs("\r\033[K", stderr);
    r.report.finished_ms = cf_now_ms();

    /* alerts: grouped, one mail per run; a failure never fails the run */
    if (!r.check && !o->no_notify && r.n_hosts && cf_notify_count(r.events))
        send_alerts(&r);
    if (uv_loop_close(&r.loop) != 0)
        cf_debug("loop closed with handles still open");
    int exit_code = cf_report_exit_code(&r.report);
    if (r.have_db && !r.check) {
        int ok, changed, failed, unreach;
        cf_report_totals(&r.report, &ok, &changed, &failed, &unreach);
        cf_db_run_finish(&r.db, r.run_id, cf_now_ms() / 1000, ok, changed, failed + unreach,
                         exit_code, err);
    }
    if (o->output == CF_OUT_JSON) {
        json_t *j = cf_report_json(&r.report);
        char *s = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
        puts(s);
        free(s);
        json_decref(j);
    } else {
        int color = cf_use_color(1);
        for (size_t i = 0; i < r.report.n_hosts; i++)
            cf_report_print_host(stdout, &r.report, &r.report.hosts[i], color);
        cf_report_print_recap(stdout, &r.report, color);
    }
    fflush(stdout);
    run_release(&r);
    return exit_code;
}

/*
 * run.c - one run of apply / renew / plan: load, set up the records, run
 * the loop, finish (see pipeline_int.h for the map of the pipeline).
 */
#include "pipeline_int.h"
#include "inventory.h"
#include "util.h"

#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char *const pl_live_names[CF_PLAN_LIVE_FILES] = {"cert", "chain", "fullchain", "privkey"};

static const char *const host_state_names[] = {
    [PL_HOST_QUEUED] = "queued",         [PL_HOST_CONVERGING] = "converging",
    [PL_HOST_INSPECTING] = "inspecting", [PL_HOST_INSTALLING] = "installing",
    [PL_HOST_HANDLERS] = "handlers",     [PL_HOST_READY] = "ready",
    [PL_HOST_FAILED] = "failed",         [PL_HOST_UNREACHABLE] = "unreachable",
};

static const char *const cert_state_names[] = {
    [PL_CERT_WAITING] = "waiting-for-hosts",
    [PL_CERT_LOCKING] = "locking",
    [PL_CERT_DECIDING] = "deciding",
    [PL_CERT_QUEUED] = "queued-for-order",
    [PL_CERT_ORDERING] = "ordering",
    [PL_CERT_PUSHING] = "pushing",
    [PL_CERT_DONE] = "done",
    [PL_CERT_FAILED] = "failed",
};

/* The only place a host's state changes. */
void pl_host_to(struct rhost *h, enum pl_host_state st)
{
    if (h->state == st)
        return;
    cf_debug("host %s: %s -> %s", h->cfg->name, host_state_names[h->state], host_state_names[st]);
    h->state = st;
}

/* The only place a certificate's state changes. */
void pl_cert_to(struct rcert *c, enum pl_cert_state st)
{
    if (c->state == st)
        return;
    cf_debug("certificate %s: %s -> %s", c->fc->cert_name, cert_state_names[c->state],
             cert_state_names[st]);
    c->state = st;
}

int pl_host_ready(const struct rhost *h)
{
    return h && h->state == PL_HOST_READY;
}

struct cf_host_report *pl_hrep(struct rhost *h)
{
    return &h->run->report->hosts[h->rep];
}

struct cf_cert_report *pl_crep(struct rcert *c)
{
    return &c->run->report->certs[c->rep];
}

void pl_progress(struct run *r)
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
            cf_report_note(r->report,
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
            cf_report_add_host(r->report, r->hosts[i].cfg->name, cf_loader_group(&r->ld, i));
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
        cf_report_cert(r->report, fc->cert_name, d.data ? d.data : "");
        c->rep = r->report->n_certs - 1;
        cf_buf_release(&d);
        c->hosts = cf_xcalloc(fc->n_hosts, sizeof *c->hosts);
        c->hcs = cf_xcalloc(fc->n_hosts, sizeof *c->hcs);
        c->n_hosts = fc->n_hosts;
        c->pending = fc->n_hosts;
        pl_crep(c)->hosts_total = (int)fc->n_hosts;
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
/* finish                                                              */

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

void pl_run_maybe_finish(struct run *r)
{
    if (r->finishing || r->hosts_left || r->certs_left)
        return;
    r->finishing = 1;
    if (r->signals_init) {
        uv_close((uv_handle_t *)&r->sigint, NULL);
        uv_close((uv_handle_t *)&r->sigterm, NULL);
        r->signals_init = 0;
    }
    cf_fleetq_close(r->fq, on_fleet_closed, r);
}

/* SIGINT/SIGTERM: start nothing new, let the hosts in flight finish their
 * step (a push completes or rolls back), then print the recap.  A second
 * signal ends the process at once: the journal of in-flight orders and
 * the atomic swaps keep that safe, and the next run converges. */
static void on_signal(uv_signal_t *sig, int signum)
{
    struct run *r = sig->data;
    if (r->stopping) {
        signal(signum, SIG_DFL);
        raise(signum);
        return;
    }
    r->stopping = 1;
    r->signal_received = signum;
    if (r->progress)
        fputs("\r\033[K", stderr);
    fprintf(stderr,
            "certfleet: %s received: finishing the hosts in flight, starting nothing new "
            "(send it again to stop at once)\n",
            signum == SIGINT ? "SIGINT" : "SIGTERM");
}

static void run_release(struct run *r)
{
    for (size_t i = 0; i < r->n_hosts; i++) {
        struct rhost *h = &r->hosts[i];
        for (size_t k = 0; k < h->n_hc; k++) {
            free(h->hc[k].live_serial);
            free(h->hc[k].served_error);
            for (int j = 0; j < CF_PLAN_LIVE_FILES; j++)
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
}

/* The run's alerts, grouped in one message; a failure to notify is
 * reported, never fatal. */
static void send_alerts(struct run *r)
{
    char report[CF_ERRLEN];
    int rc = cf_notify_deliver(r->events, (const json_t *const *)r->ld.vars, r->ld.n, report,
                               sizeof report);
    if (rc != 0)
        cf_report_note(r->report, "notification failed: %s", report);
    else if (*report)
        cf_report_note(r->report, "%s", report);
}

static void start_hosts(struct run *r)
{
    const struct cf_opts *o = r->o;
    for (size_t i = 0; i < r->n_hosts; i++) {
        struct rhost *h = &r->hosts[i];
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
        h->q = cf_hostq_new(r->fq, &sc, h->cfg->become);
    }
    pl_progress(r);
    for (size_t i = 0; i < r->n_hosts; i++)
        cf_hostq_push(r->hosts[i].q, pl_job_prepare, &r->hosts[i]);
    if (r->n_hosts == 0)
        pl_run_maybe_finish(r);
}

static int open_state(struct run *r, const char *command, char *err)
{
    const struct cf_opts *o = r->o;
    char e[CF_ERRLEN] = "";
    /* The store: plan only reads it (and does without it when absent). */
    if (cf_store_open(&r->store, o->state_dir, r->check ? CF_STORE_READONLY : 0, e) == 0) {
        r->have_store = 1;
        if ((r->check ? cf_db_open_readonly(&r->db, o->state_dir, e)
                      : cf_db_open(&r->db, o->state_dir, e)) == 0)
            r->have_db = 1;
    } else if (!r->check) {
        snprintf(err, CF_ERRLEN,
                 "state directory '%s': %s (use --state-dir or CERTFLEET_STATE_DIR)", o->state_dir,
                 e);
        return CF_EINVAL;
    }
    if (r->have_db && !r->check)
        cf_db_run_begin(&r->db, command, o->limit, cf_now_ms() / 1000, &r->run_id, e);
    return 0;
}

int cf_apply_run(const struct cf_opts *o, enum cf_apply_mode mode, const char *command,
                 struct cf_report *report, char *err)
{
    struct run r;
    int rc;
    memset(&r, 0, sizeof r);
    r.o = o;
    r.mode = mode;
    r.check = o->check || mode == CF_MODE_PLAN;
    r.report = report;
    cf_report_init(report, command, r.check, o->diff);
    r.events = cf_notify_new();
    if (o->n_inventories == 0) {
        snprintf(err, CF_ERRLEN, "no inventory given: use -i FILE|DIR (see 'certfleet %s --help')",
                 command);
        run_release(&r);
        return CF_EXIT_USAGE;
    }
    if ((rc = load_config(&r, err)) != 0 || (rc = open_state(&r, command, err)) != 0) {
        run_release(&r);
        return CF_EXIT_USAGE;
    }
    setup_records(&r);
    r.progress = o->output == CF_OUT_TEXT && isatty(2) && !getenv("CI");
    uv_loop_init(&r.loop);
    r.fq = cf_fleetq_new(&r.loop, o->forks);
    uv_signal_init(&r.loop, &r.sigint);
    uv_signal_init(&r.loop, &r.sigterm);
    r.sigint.data = r.sigterm.data = &r;
    uv_signal_start(&r.sigint, on_signal, SIGINT);
    uv_signal_start(&r.sigterm, on_signal, SIGTERM);
    r.signals_init = 1;
    srandom((unsigned)cf_now_ms());
    start_hosts(&r);
    uv_run(&r.loop, UV_RUN_DEFAULT);
    if (r.progress)
        fputs("\r\033[K", stderr);
    report->finished_ms = cf_now_ms();

    /* alerts: grouped, one mail per run; a failure never fails the run */
    if (!r.check && !o->no_notify && r.n_hosts && cf_notify_count(r.events))
        send_alerts(&r);
    if (uv_loop_close(&r.loop) != 0)
        cf_report_note(report, "internal error: the event loop closed with handles still open");
    int exit_code = cf_report_exit_code(report);
    if (r.signal_received)
        exit_code = 128 + r.signal_received;
    if (r.have_db && !r.check) {
        int ok, changed, failed, unreach;
        cf_report_totals(report, &ok, &changed, &failed, &unreach);
        cf_db_run_finish(&r.db, r.run_id, cf_now_ms() / 1000, ok, changed, failed + unreach,
                         exit_code, err);
    }
    run_release(&r);
    return exit_code;
}

/*
 * cmd_status.c - 'certfleet status': a TLS handshake with SNI to every
 * host x domain of the limit, concurrently on one loop under --forks, and
 * a table (or JSON, Prometheus textfile, HTML) of what each serves compared
 * with the central store.  Read-only: nothing is written to hosts or store.
 */
#include "cf.h"
#include "commands.h"
#include "db.h"
#include "http.h"
#include "loader.h"
#include "notify.h"
#include "opts.h"
#include "probe.h"
#include "status.h"
#include "store.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "usage: certfleet status -i INVENTORY [-l LIMIT] [--output text|json|prometheus|html]\n"
    "                        [--output-file FILE] [--warn-days N] [--forks N] [--timeout SEC]\n"
    "\n"
    "Makes a TLS handshake with SNI to every host x domain of the limit (at most --forks\n"
    "at once) and reports, most urgent first: group, host, domain, issuer, serial,\n"
    "not-after, days left, whether the host serves the central store's current version,\n"
    "and a state: OK, RENEW-SOON, EXPIRED, MISMATCH, MISSING or UNREACHABLE.\n"
    "Changes nothing on the hosts or in the store; the scan is recorded in the\n"
    "state database (state.db) when it is writable. Sends a [WARNING] alert for\n"
    "certificates under certbot_warning_days (unless --no-notify).\n\n"
    "options:\n"
    "  -i, --inventory FILE|DIR   inventory; repeatable\n"
    "  -l, --limit PATTERN        Ansible host pattern\n"
    "  -e, --extra-vars VARS      key=value, YAML/JSON or @file\n"
    "      --output FORMAT        text (default; colours on a terminal unless NO_COLOR),\n"
    "                             json, prometheus (node_exporter textfile) or html\n"
    "      --output-file FILE     write the output to FILE atomically (e.g. for the\n"
    "                             node_exporter textfile collector)\n"
    "      --warn-days N          RENEW-SOON within N days also fails the exit code\n"
    "      --forks N              handshakes in flight at once (default 50)\n"
    "      --timeout SEC          per handshake (default 30)\n"
    "      --state-dir DIR        central store to compare with (default /var/lib/certfleet)\n"
    "      --no-notify            do not send [WARNING] alerts\n"
    "\nExit codes: 0 all OK (or only RENEW-SOON without --warn-days); 1 something is\n"
    "EXPIRED, MISMATCH, MISSING or UNREACHABLE; 2 usage or configuration error.\n"
    "\nexamples:\n"
    "  certfleet status -i inventory -l production\n"
    "  certfleet status -i inventory --output prometheus \\\n"
    "      --output-file /var/lib/node_exporter/textfile/certfleet.prom\n";

struct target {
    size_t host;
    const struct cf_fleet_cert *fc;
    char *sni;
};

/* A [WARNING] alert for what is close to expiry; a failure to notify is
 * reported, never fatal. */
static void send_warnings(const struct cf_loaded *l, struct cf_status_row *rows, size_t n)
{
    cf_notify *nt = cf_notify_new();
    int64_t now = cf_now_ms() / 1000;
    char report[CF_ERRLEN];
    if (cf_status_add_warnings(rows, n, l->cfg[0]->warning_days, (struct cf_notify *)nt, now) &&
        cf_notify_deliver(nt, (const json_t *const *)l->vars, l->n, report, sizeof report) != 0)
        fprintf(stderr, "certfleet status: notification failed: %s\n", report);
    cf_notify_free(nt);
}

/* Keep the scan in the state database (design.md: issuances, deployments,
 * scans) when the store exists and is writable; a read-only controller
 * account still gets its report. */
static void record_scan(const struct cf_opts *o, const struct cf_status_row *rows, size_t n,
                        int64_t now)
{
    struct cf_db db;
    char err[CF_ERRLEN] = "";
    int64_t run = 0;
    if (cf_db_open_readonly(&db, o->state_dir, err) != 0)
        return; /* no store yet: nothing to record against */
    cf_db_close(&db);
    if (cf_db_open(&db, o->state_dir, err) != 0) {
        cf_debug("status: scan not recorded: %s", err);
        return;
    }
    size_t bad = 0;
    if (cf_db_run_begin(&db, "status", o->limit, now, &run, err) == 0) {
        for (size_t i = 0; i < n; i++) {
            bad += rows[i].state != CF_STATE_OK && rows[i].state != CF_STATE_RENEW_SOON;
            cf_db_add_scan(&db, run, rows[i].host, rows[i].domain, rows[i].serial,
                           rows[i].not_after, cf_status_state_name(rows[i].state), now, err);
        }
        cf_db_run_finish(&db, run, cf_now_ms() / 1000, (int)(n - bad), 0, (int)bad,
                         cf_status_exit_code(rows, n, o->warn_days), err);
    }
    cf_db_close(&db);
}

int cmd_status(int argc, char **argv)
{
    struct cf_opts o;
    char err[CF_ERRLEN] = "";
    int rc =
        cf_opts_parse(argc, argv, CF_OPT_INVENTORY | CF_OPT_OUTPUT | CF_OPT_STATUS | CF_OPT_STATE,
                      usage, &o, err);
    if (rc == 1)
        return CF_EXIT_OK;
    if (rc != 0)
        return cf_usage_error("status", err);
    if (o.n_args > 0) {
        snprintf(err, sizeof err, "unexpected argument '%s'", o.args[0]);
        return cf_usage_error("status", err);
    }
    if (o.n_inventories == 0)
        return cf_usage_error("status", "no inventory given: use -i FILE|DIR");

    struct cf_loaded l;
    if (cf_loader_load(&o, &l, err) != 0) {
        fprintf(stderr, "certfleet status: %s\n", err);
        return CF_EXIT_USAGE;
    }
    struct cf_store store;
    int have_store = cf_store_open(&store, o.state_dir, CF_STORE_READONLY, err) == 0;

    /* every host x domain of every certificate the host serves */
    struct target *t = NULL;
    size_t nt = 0;
    for (size_t f = 0; l.fleet && f < l.fleet->n_certs; f++) {
        const struct cf_fleet_cert *fc = &l.fleet->certs[f];
        for (size_t k = 0; k < fc->n_hosts; k++) {
            size_t host = 0;
            while (host < l.n && l.cfg[host] != fc->hosts[k])
                host++;
            for (size_t d = 0; d < fc->n_domains; d++) {
                t = cf_xrealloc(t, (nt + 1) * sizeof *t);
                t[nt].host = host;
                t[nt].fc = fc;
                /* a wildcard is checked with a name it covers */
                t[nt].sni = cf_x509_probe_name(fc->domains[d]);
                nt++;
            }
        }
    }
    struct cf_probe_req *reqs = cf_xcalloc(nt ? nt : 1, sizeof *reqs);
    struct cf_probe_result *res = cf_xcalloc(nt ? nt : 1, sizeof *res);
    struct cf_status_row *rows = cf_xcalloc(nt ? nt : 1, sizeof *rows);
    for (size_t i = 0; i < nt; i++) {
        const struct cf_host_config *hc = l.cfg[t[i].host];
        reqs[i] = (struct cf_probe_req){.host = hc->name,
                                        .address = hc->address,
                                        .port = hc->https_port,
                                        .sni = t[i].sni,
                                        .timeout_ms = (unsigned)o.timeout_s * 1000};
    }
    if (nt && cf_probe_run(reqs, nt, o.forks, res, err) != 0) {
        fprintf(stderr, "certfleet status: %s\n", err);
        rc = CF_EXIT_FAILED;
        goto out;
    }
    int64_t now = cf_now_ms() / 1000;
    for (size_t i = 0; i < nt; i++) {
        struct cf_status_row *row = &rows[i];
        const struct cf_host_config *hc = l.cfg[t[i].host];
        snprintf(row->group, sizeof row->group, "%s", cf_loader_group(&l, t[i].host));
        snprintf(row->host, sizeof row->host, "%s", hc->name);
        snprintf(row->address, sizeof row->address, "%s:%d", hc->address, hc->https_port);
        snprintf(row->domain, sizeof row->domain, "%s", t[i].sni);
        snprintf(row->cert, sizeof row->cert, "%s", t[i].fc->cert_name);
        cf_status_row_from_probe(row, &res[i]);
        struct cf_store_cert sc;
        char serr[CF_ERRLEN];
        if (have_store && cf_store_get(&store, t[i].fc->cert_name, &sc, serr) == 0) {
            if (sc.version > 0 && sc.have_info)
                snprintf(row->store_serial, sizeof row->store_serial, "%s", sc.info.serial_hex);
            else
                row->store_missing = 1;
            cf_store_cert_release(&sc);
        } else {
            row->store_missing = 1;
        }
        cf_status_classify(row, now, hc->renewal_days, o.warn_days >= 0 ? o.warn_days : 0);
    }
    cf_status_sort(rows, nt);

    struct cf_status_meta meta = {
        .now = now, .color = o.output_file ? 0 : cf_use_color(1), .last_run_success = -1};
    struct cf_db db;
    if (cf_db_open_readonly(&db, o.state_dir, err) == 0) {
        /* "the last run" is the last apply or renew, not a scan */
        static const char *const cmds[] = {"apply", "renew"};
        for (size_t i = 0; i < 2; i++) {
            struct cf_db_run run;
            if (cf_db_last_run(&db, cmds[i], &run, err) == 0 && run.finished &&
                run.finished >= meta.last_run_time) {
                meta.last_run_success = run.exit_code == 0;
                meta.last_run_time = run.finished;
            }
        }
        cf_db_close(&db);
    }
    record_scan(&o, rows, nt, now);
    struct cf_buf out = CF_BUF_INIT;
    switch (o.output) {
    case CF_OUT_JSON:
        cf_status_render_json(&out, rows, nt, &meta);
        break;
    case CF_OUT_PROMETHEUS:
        cf_status_render_prometheus(&out, rows, nt, &meta);
        break;
    case CF_OUT_HTML:
        cf_status_render_html(&out, rows, nt, &meta);
        break;
    default:
        cf_status_render_text(&out, rows, nt, &meta);
        break;
    }
    if (o.output_file) {
        if (cf_write_file_atomic(o.output_file, out.data ? out.data : "", out.len, 0644) != 0) {
            fprintf(stderr, "certfleet status: cannot write '%s'\n", o.output_file);
            cf_buf_release(&out);
            rc = CF_EXIT_FAILED;
            goto out;
        }
    } else if (out.len) {
        fwrite(out.data, 1, out.len, stdout);
    }
    cf_buf_release(&out);
    if (!o.no_notify && l.n)
        send_warnings(&l, rows, nt);
    rc = cf_status_exit_code(rows, nt, o.warn_days);
out:
    for (size_t i = 0; i < nt; i++)
        free(t[i].sni);
    free(t);
    free(reqs);
    free(res);
    free(rows);
    if (have_store)
        cf_store_release(&store);
    cf_loader_release(&l);
    cf_probe_global_cleanup();
    return rc;
}

/*
 * cmd_apply.c - 'certfleet apply', 'renew' and 'plan': option parsing and
 * help, and the report the pipeline (orchestrator/pipeline/) returns.
 */
#include "cf.h"
#include "apply.h"
#include "commands.h"
#include "opts.h"
#include "report.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

#define COMMON_OPTS                                                                                \
    "  -i, --inventory FILE|DIR   inventory (INI or YAML, file or directory); repeatable\n"        \
    "  -l, --limit PATTERN        Ansible host pattern: web, app*, web:&prod, web:!app4, a,b\n"    \
    "  -e, --extra-vars VARS      key=value, YAML/JSON text or @file; wins over all vars\n"        \
    "      --forks N              hosts connected at once (default 50)\n"                          \
    "      --timeout SEC          per-host connect/command timeout (default 30)\n"                 \
    "      --known-hosts FILE     known_hosts to check host keys against\n"                        \
    "                             (default ~/.ssh/known_hosts)\n"                                  \
    "      --host-key-checking M  strict (default), accept-new or off\n"                           \
    "      --state-dir DIR        central store (default /var/lib/certfleet,\n"                    \
    "                             or $CERTFLEET_STATE_DIR)\n"                                      \
    "      --force-renewal        issue again even when nothing is due\n"                          \
    "      --server URL           ACME directory (default certbot_acme_server)\n"                  \
    "      --staging              Let's Encrypt's staging directory\n"                             \
    "      --ca-bundle FILE       trust this CA for the ACME server (e.g. a test CA)\n"            \
    "      --acme-concurrency N   orders in flight at once (default 10)\n"                         \
    "      --lock-timeout SEC     wait this long for a certificate locked by another run\n"        \
    "      --serial N             push to N hosts of a certificate at a time\n"                    \
    "      --max-fail-percentage P  stop pushing once more than P% of its hosts failed\n"          \
    "      --verify-timeout SEC   how long to wait for the new serial to be served (20)\n"         \
    "      --force-push           replace a certificate on a host even when it is newer\n"         \
    "      --diff                 show unified diffs of changed files\n"                           \
    "      --no-notify            do not send e-mail/webhook alerts\n"                             \
    "      --output text|json     text lines and a recap (default), or one JSON document\n"        \
    "  -v, --verbose              more detail on stderr (repeat for debug)\n"

#define CHECK_OPT                                                                                  \
    "      --check                report what would change; write nothing, order nothing\n"

#define EXIT_CODES                                                                                 \
    "\nExit codes: 0 all good; 1 some host or certificate failed (the others were done);\n"        \
    "2 usage or configuration error (nothing touched); 3 --check/plan found changes.\n"

static const char apply_usage[] =
    "usage: certfleet apply -i INVENTORY [-l LIMIT] [-e VARS] [--check] [--diff] [options]\n"
    "\n"
    "Prepares every host of the limit over SSH (webroot, challenge snippet, certificate\n"
    "links, deploy hooks), issues or renews each certificate once with ACME, pushes it to\n"
    "every host that serves it, tests nginx, reloads or rolls back, and proves over TLS\n"
    "that the new certificate is served.\n\n"
    "options:\n" COMMON_OPTS CHECK_OPT EXIT_CODES "\nexamples:\n"
    "  certfleet apply -i inventory -l production\n"
    "  certfleet apply -i inventory -l 'web:!app4' --check --diff\n"
    "  certfleet apply -i inventory --output json > run.json\n";

static const char renew_usage[] =
    "usage: certfleet renew -i INVENTORY [-l LIMIT] [options]\n"
    "\n"
    "Only the certificate phases of apply: decide per certificate (missing, domains\n"
    "changed, key type changed, within certbot_renewal_days, ARI window, --force-renewal),\n"
    "issue what is due, and push versions that hosts do not serve yet. No host\n"
    "preparation.\n\n"
    "options:\n" COMMON_OPTS CHECK_OPT EXIT_CODES "\nexample:\n"
    "  certfleet renew -i inventory --force-renewal -l app3,app4\n";

static const char plan_usage[] =
    "usage: certfleet plan -i INVENTORY [-l LIMIT] [options]\n"
    "\n"
    "The same as 'apply --check': connects to the hosts and shows, per task and per\n"
    "certificate, what apply would change and why. Writes nothing on the hosts or in the\n"
    "central store, places no ACME order. Exits 3 when something would change.\n\n"
    "options:\n" COMMON_OPTS EXIT_CODES "\nexample:\n"
    "  certfleet plan -i inventory -l sandbox --diff\n";

#define RUN_FAMILIES                                                                               \
    (CF_OPT_INVENTORY | CF_OPT_RUN | CF_OPT_ACME | CF_OPT_PUSH | CF_OPT_OUTPUT | CF_OPT_STATE)

static int run(int argc, char **argv, const char *usage, enum cf_apply_mode mode)
{
    struct cf_opts o;
    char err[CF_ERRLEN] = "";
    int rc = cf_opts_parse(argc, argv, RUN_FAMILIES, usage, &o, err);
    if (rc == 1)
        return CF_EXIT_OK;
    if (rc != 0)
        return cf_usage_error(argv[0], err);
    if (o.n_args > 0) {
        snprintf(err, sizeof err, "unexpected argument '%s'", o.args[0]);
        return cf_usage_error(argv[0], err);
    }
    if (mode == CF_MODE_PLAN)
        o.check = 1;
    struct cf_report report;
    int exit_code = cf_apply_run(&o, mode, argv[0], &report, err);
    if (exit_code == CF_EXIT_USAGE) {
        fprintf(stderr, "certfleet %s: %s\n", argv[0], err);
    } else if (o.output == CF_OUT_JSON) {
        json_t *j = cf_report_json(&report);
        char *s = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
        puts(s);
        free(s);
        json_decref(j);
    } else {
        int color = cf_use_color(1);
        for (size_t i = 0; i < report.n_hosts; i++)
            cf_report_print_host(stdout, &report, &report.hosts[i], color);
        cf_report_print_recap(stdout, &report, color);
    }
    fflush(stdout);
    cf_report_release(&report);
    return exit_code;
}

int cmd_apply(int argc, char **argv)
{
    return run(argc, argv, apply_usage, CF_MODE_APPLY);
}

int cmd_renew(int argc, char **argv)
{
    return run(argc, argv, renew_usage, CF_MODE_RENEW);
}

int cmd_plan(int argc, char **argv)
{
    return run(argc, argv, plan_usage, CF_MODE_PLAN);
}

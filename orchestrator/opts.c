/*
 * opts.c - shared option parsing (see opts.h).
 */
#include "cf.h"
#include "opts.h"
#include "commands.h"

#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    O_CHECK = 256,
    O_DIFF,
    O_FORKS,
    O_FORCE,
    O_OUTPUT,
    O_TIMEOUT,
    O_KNOWN,
    O_HKC,
    O_STATE,
    O_LOCKTO,
    O_SERVER,
    O_STAGING,
    O_CABUNDLE,
    O_ACMECONC,
    O_SERIAL,
    O_MAXFAIL,
    O_VERIFYTO,
    O_FORCEPUSH,
    O_WARN,
    O_OUTFILE,
    O_LIST,
    O_GRAPH,
    O_HOST,
    O_INSTALL,
    O_PRINT,
    O_NONOTIFY,
};

struct optdef {
    struct option opt;
    unsigned family;
};

static const struct optdef defs[] = {
    {{"inventory", required_argument, NULL, 'i'}, CF_OPT_INVENTORY},
    {{"limit", required_argument, NULL, 'l'}, CF_OPT_INVENTORY},
    {{"extra-vars", required_argument, NULL, 'e'}, CF_OPT_INVENTORY},
    {{"check", no_argument, NULL, O_CHECK}, CF_OPT_RUN},
    {{"diff", no_argument, NULL, O_DIFF}, CF_OPT_RUN},
    {{"forks", required_argument, NULL, O_FORKS}, CF_OPT_RUN | CF_OPT_STATUS},
    {{"timeout", required_argument, NULL, O_TIMEOUT}, CF_OPT_RUN | CF_OPT_STATUS},
    {{"known-hosts", required_argument, NULL, O_KNOWN}, CF_OPT_RUN},
    {{"host-key-checking", required_argument, NULL, O_HKC}, CF_OPT_RUN},
    {{"no-notify", no_argument, NULL, O_NONOTIFY}, CF_OPT_RUN | CF_OPT_STATUS},
    {{"state-dir", required_argument, NULL, O_STATE}, CF_OPT_STATE},
    {{"force-renewal", no_argument, NULL, O_FORCE}, CF_OPT_ACME},
    {{"lock-timeout", required_argument, NULL, O_LOCKTO}, CF_OPT_ACME},
    {{"server", required_argument, NULL, O_SERVER}, CF_OPT_ACME},
    {{"staging", no_argument, NULL, O_STAGING}, CF_OPT_ACME},
    {{"ca-bundle", required_argument, NULL, O_CABUNDLE}, CF_OPT_ACME},
    {{"acme-concurrency", required_argument, NULL, O_ACMECONC}, CF_OPT_ACME},
    {{"serial", required_argument, NULL, O_SERIAL}, CF_OPT_PUSH},
    {{"max-fail-percentage", required_argument, NULL, O_MAXFAIL}, CF_OPT_PUSH},
    {{"verify-timeout", required_argument, NULL, O_VERIFYTO}, CF_OPT_PUSH},
    {{"force-push", no_argument, NULL, O_FORCEPUSH}, CF_OPT_PUSH},
    {{"output", required_argument, NULL, O_OUTPUT}, CF_OPT_OUTPUT},
    {{"warn-days", required_argument, NULL, O_WARN}, CF_OPT_STATUS},
    {{"output-file", required_argument, NULL, O_OUTFILE}, CF_OPT_STATUS},
    {{"list", no_argument, NULL, O_LIST}, CF_OPT_INVCMD},
    {{"graph", no_argument, NULL, O_GRAPH}, CF_OPT_INVCMD},
    {{"host", required_argument, NULL, O_HOST}, CF_OPT_INVCMD},
    {{"install", no_argument, NULL, O_INSTALL}, CF_OPT_SCHEDULE},
    {{"print", no_argument, NULL, O_PRINT}, CF_OPT_SCHEDULE},
};
#define NDEFS (sizeof defs / sizeof defs[0])

static int parse_int(const char *name, const char *v, int lo, int hi, int *out, char *err)
{
    char *end;
    long n = strtol(v, &end, 10);
    if (!*v || *end || n < lo || n > hi)
        return cf_errf(err, "invalid value '%s' for --%s: expected an integer from %d to %d", v,
                       name, lo, hi);
    *out = (int)n;
    return 0;
}

int cf_opts_parse(int argc, char **argv, unsigned families, const char *usage, struct cf_opts *o,
                  char *err)
{
    struct option longopts[NDEFS + 4];
    int n = 0;
    char shortopts[32] = "+hv";

    memset(o, 0, sizeof *o);
    o->forks = 50;
    o->timeout_s = 30;
    o->lock_timeout_s = 0;
    o->acme_concurrency = 10;
    o->max_fail_pct = -1;
    o->verify_timeout_s = 20;
    o->warn_days = -1;
    o->state_dir = getenv("CERTFLEET_STATE_DIR");
    if (!o->state_dir || !*o->state_dir)
        o->state_dir = "/var/lib/certfleet";
    if (families & CF_OPT_INVENTORY)
        strcat(shortopts, "i:l:e:");
    for (size_t i = 0; i < NDEFS; i++)
        if (defs[i].family & families)
            longopts[n++] = defs[i].opt;
    longopts[n++] = (struct option){"help", no_argument, NULL, 'h'};
    longopts[n++] = (struct option){"verbose", no_argument, NULL, 'v'};
    longopts[n] = (struct option){NULL, 0, NULL, 0};

    optind = 0; /* reset getopt for each command (also for unit tests) */
    opterr = 0;
    for (;;) {
        int idx = -1;
        int c = getopt_long(argc, argv, shortopts, longopts, &idx);
        if (c == -1)
            break;
        const char *name = idx >= 0 ? longopts[idx].name : "";
        int rc = 0;
        switch (c) {
        case 'h':
            fputs(usage, stdout);
            return 1;
        case 'v':
            cf_verbosity++;
            break;
        case 'i':
            if (o->n_inventories == CF_MAX_MULTI)
                return cf_errf(err, "too many -i options");
            o->inventories[o->n_inventories++] = optarg;
            break;
        case 'l':
            o->limit = optarg;
            break;
        case 'e':
            if (o->n_extra_vars == CF_MAX_MULTI)
                return cf_errf(err, "too many -e options");
            o->extra_vars[o->n_extra_vars++] = optarg;
            break;
        case O_CHECK:
            o->check = 1;
            break;
        case O_DIFF:
            o->diff = 1;
            break;
        case O_FORKS:
            rc = parse_int(name, optarg, 1, 10000, &o->forks, err);
            break;
        case O_FORCE:
            o->force_renewal = 1;
            break;
        case O_TIMEOUT:
            rc = parse_int(name, optarg, 1, 86400, &o->timeout_s, err);
            break;
        case O_KNOWN:
            o->known_hosts = optarg;
            break;
        case O_HKC:
            if (!strcmp(optarg, "strict") || !strcmp(optarg, "yes"))
                o->hostkey_mode = CF_HOSTKEY_STRICT;
            else if (!strcmp(optarg, "accept-new"))
                o->hostkey_mode = CF_HOSTKEY_ACCEPT_NEW;
            else if (!strcmp(optarg, "off") || !strcmp(optarg, "no"))
                o->hostkey_mode = CF_HOSTKEY_OFF;
            else
                rc = cf_errf(err,
                             "invalid value '%s' for --host-key-checking: expected strict, "
                             "accept-new or off",
                             optarg);
            break;
        case O_NONOTIFY:
            o->no_notify = 1;
            break;
        case O_STATE:
            o->state_dir = optarg;
            break;
        case O_LOCKTO:
            rc = parse_int(name, optarg, 0, 86400, &o->lock_timeout_s, err);
            break;
        case O_SERVER:
            o->server = optarg;
            break;
        case O_STAGING:
            o->staging = 1;
            break;
        case O_CABUNDLE:
            o->ca_bundle = optarg;
            break;
        case O_ACMECONC:
            rc = parse_int(name, optarg, 1, 1000, &o->acme_concurrency, err);
            break;
        case O_SERIAL:
            rc = parse_int(name, optarg, 0, 100000, &o->serial, err);
            break;
        case O_MAXFAIL:
            rc = parse_int(name, optarg, 0, 100, &o->max_fail_pct, err);
            break;
        case O_FORCEPUSH:
            o->force_push = 1;
            break;
        case O_VERIFYTO:
            rc = parse_int(name, optarg, 1, 3600, &o->verify_timeout_s, err);
            break;
        case O_WARN:
            rc = parse_int(name, optarg, 0, 3650, &o->warn_days, err);
            break;
        case O_OUTFILE:
            o->output_file = optarg;
            break;
        case O_OUTPUT: {
            unsigned ok = families & (CF_OPT_STATUS | CF_OPT_RUN | CF_OPT_STATE);
            if (!strcmp(optarg, "text"))
                o->output = CF_OUT_TEXT;
            else if (!strcmp(optarg, "json"))
                o->output = CF_OUT_JSON;
            else if ((families & CF_OPT_STATUS) && !strcmp(optarg, "prometheus"))
                o->output = CF_OUT_PROMETHEUS;
            else if ((families & CF_OPT_STATUS) && !strcmp(optarg, "html"))
                o->output = CF_OUT_HTML;
            else
                rc = cf_errf(err, "invalid value '%s' for --output: expected %s", optarg,
                             (families & CF_OPT_STATUS) ? "text, json, prometheus or html"
                                                        : "text or json");
            (void)ok;
            break;
        }
        case O_LIST:
            o->list = 1;
            break;
        case O_GRAPH:
            o->graph = 1;
            break;
        case O_HOST:
            o->host = optarg;
            break;
        case O_INSTALL:
            o->install = 1;
            break;
        case O_PRINT:
            o->print = 1;
            break;
        case ':':
            return cf_errf(err, "option '%s' needs a value", argv[optind - 1]);
        case '?':
        default:
            if (optopt && optopt < 256)
                return cf_errf(err, "unknown option '-%c'", optopt);
            return cf_errf(err, "unknown option '%s'", argv[optind - 1]);
        }
        if (rc)
            return rc;
    }
    o->args = argv + optind;
    o->n_args = argc - optind;
    /* `--graph GROUP` takes an optional positional group, as ansible-inventory does. */
    if (o->graph && o->n_args == 1) {
        o->graph_group = o->args[0];
        o->n_args = 0;
    }
    return 0;
}

int cf_usage_error(const char *cmd, const char *msg)
{
    fprintf(stderr, "certfleet %s: %s (see 'certfleet %s --help')\n", cmd, msg, cmd);
    return CF_EXIT_USAGE;
}

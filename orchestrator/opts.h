/*
 * opts.h - the command-line options shared by apply, renew, plan, status,
 * certificates and inventory, parsed in one place so every command spells
 * them the same way.
 */
#ifndef CF_OPTS_H
#define CF_OPTS_H

enum cf_output { CF_OUT_TEXT, CF_OUT_JSON, CF_OUT_PROMETHEUS, CF_OUT_HTML };
enum cf_hostkey_mode { CF_HOSTKEY_STRICT, CF_HOSTKEY_ACCEPT_NEW, CF_HOSTKEY_OFF };

#define CF_MAX_MULTI 64

struct cf_opts {
    const char *inventories[CF_MAX_MULTI]; /* -i, repeatable */
    int n_inventories;
    const char *limit;                    /* -l */
    const char *extra_vars[CF_MAX_MULTI]; /* -e, repeatable, in order */
    int n_extra_vars;
    int check;         /* --check (plan sets it) */
    int diff;          /* --diff */
    int forks;         /* --forks, default 50 */
    int force_renewal; /* --force-renewal */
    enum cf_output output;
    int timeout_s; /* --timeout, default 30 */
    const char *known_hosts;
    enum cf_hostkey_mode hostkey_mode;
    const char *state_dir; /* --state-dir or $CERTFLEET_STATE_DIR */
    int lock_timeout_s;
    const char *server;      /* --server URL */
    int staging;             /* --staging */
    const char *ca_bundle;   /* --ca-bundle FILE */
    int acme_concurrency;    /* default 10 */
    int serial;              /* --serial N, 0 = all at once */
    int max_fail_pct;        /* --max-fail-percentage, -1 = unset */
    int verify_timeout_s;    /* default 20 */
    int force_push;          /* --force-push: replace a newer certificate on a host */
    int warn_days;           /* --warn-days, -1 = unset */
    const char *output_file; /* --output-file (html/prometheus) */
    /* inventory command */
    int list;
    int graph;
    const char *graph_group;
    const char *host;
    /* schedule command */
    int install;
    int print;
    int no_notify;
    /* positional arguments left over */
    char **args;
    int n_args;
};

/* Option families a command accepts; an option outside them is a usage
 * error naming the option. */
enum {
    CF_OPT_INVENTORY = 1 << 0, /* -i -l -e */
    CF_OPT_RUN = 1 << 1,       /* --check --diff --forks --timeout --known-hosts ... */
    CF_OPT_ACME = 1 << 2,      /* --force-renewal --server --staging --ca-bundle ... */
    CF_OPT_PUSH = 1 << 3,      /* --serial --max-fail-percentage --verify-timeout --force-push */
    CF_OPT_OUTPUT = 1 << 4,    /* --output */
    CF_OPT_INVCMD = 1 << 5,    /* --list --graph --host */
    CF_OPT_STATUS = 1 << 6,    /* --warn-days --output-file */
    CF_OPT_STATE = 1 << 7,     /* --state-dir */
    CF_OPT_SCHEDULE = 1 << 8,  /* --install --print */
};

/* Parse argv (argv[0] is the command name) into o. Returns 0, 1 when
 * --help was asked for (usage already printed to stdout), or CF_EINVAL
 * with one line in err naming the bad argument. */
int cf_opts_parse(int argc, char **argv, unsigned families, const char *usage, struct cf_opts *o,
                  char *err);

#endif

/*
 * cmd_account.c - 'certfleet account': show the ACME account, or roll its
 * key over (RFC 8555 §7.3.5) without losing the account.
 */
#include "cf.h"
#include "acme.h"
#include "commands.h"
#include "http.h"
#include "opts.h"
#include "x509.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LE_PRODUCTION "https://acme-v02.api.letsencrypt.org/directory"
#define LE_STAGING    "https://acme-staging-v02.api.letsencrypt.org/directory"

static const char usage[] =
    "usage: certfleet account show|rollover [--server URL | --staging] [--ca-bundle FILE]\n"
    "                        [--state-dir DIR] [--key-type ecdsa|rsa] [--key-size N]\n"
    "\n"
    "  show        create or look up the account of the ACME server and print its URL\n"
    "  rollover    generate a new account key, have the server switch to it, then\n"
    "              replace <state-dir>/accounts/<host>/<hash>/private_key.pem\n"
    "\n"
    "options:\n"
    "  --server URL        ACME directory (default Let's Encrypt)\n"
    "  --staging           Let's Encrypt's staging directory\n"
    "  --ca-bundle FILE    trust this CA for the ACME server\n"
    "  --state-dir DIR     the store (default $CERTFLEET_STATE_DIR or /var/lib/certfleet)\n"
    "  --key-type TYPE     new key type for rollover: ecdsa (default) or rsa\n"
    "  --key-size N        256/384 for ecdsa, 2048/3072/4096 for rsa\n"
    "\n"
    "example:\n"
    "  $ certfleet account rollover --server https://127.0.0.1:14030/dir \\\n"
    "        --ca-bundle pebble-ca.pem --state-dir /tmp/state\n"
    "  account https://127.0.0.1:14030/my-account/1: key rolled over (ecdsa 256)\n";

struct account_run {
    struct cf_acme *acme;
    cf_http *http;
    const char *verb;
    const char *key_type;
    int key_bits;
    int status;
};

static void finish(struct account_run *r)
{
    cf_acme_free(r->acme);
    cf_http_free(r->http);
}

static void on_rolled(int status, const char *err, void *arg)
{
    struct account_run *r = arg;
    r->status = status;
    if (status)
        fprintf(stderr, "certfleet account: rollover failed: %s\n", err ? err : "");
    else
        printf("account %s: key rolled over (%s %d)\n", cf_acme_account_url(r->acme), r->key_type,
               r->key_bits                   ? r->key_bits
               : !strcmp(r->key_type, "rsa") ? 2048
                                             : 256);
    finish(r);
}

static void on_account(int status, const char *err, void *arg)
{
    struct account_run *r = arg;
    r->status = status;
    if (status) {
        fprintf(stderr, "certfleet account: %s\n", err ? err : cf_strerror(status));
        finish(r);
        return;
    }
    if (!strcmp(r->verb, "show")) {
        printf("account %s\n", cf_acme_account_url(r->acme));
        finish(r);
        return;
    }
    int rc = cf_acme_rollover(r->acme, r->key_type, r->key_bits, on_rolled, r);
    if (rc) {
        r->status = rc;
        fprintf(stderr, "certfleet account: cannot start rollover: %s\n", cf_strerror(rc));
        finish(r);
    }
}

int cmd_account(int argc, char **argv)
{
    struct account_run r = {.key_type = "ecdsa"};
    char err[CF_ERRLEN] = "";
    /* --key-type / --key-size belong to this command only: take them out
     * before the shared parser sees argv */
    char **rest = calloc((size_t)argc + 1, sizeof *rest);
    int n = 0;
    for (int i = 0; i < argc; i++) {
        if ((!strcmp(argv[i], "--key-type") || !strcmp(argv[i], "--key-size")) && i + 1 < argc) {
            if (!strcmp(argv[i], "--key-type")) {
                r.key_type = argv[i + 1];
            } else {
                char *end;
                r.key_bits = (int)strtol(argv[i + 1], &end, 10);
                if (*end || r.key_bits <= 0) {
                    free(rest);
                    return cf_usage_error("account", "invalid value for --key-size");
                }
            }
            i++;
            continue;
        }
        rest[n++] = argv[i];
    }
    /* the verb may come first ('account rollover --server ...'): the
     * shared parser stops at the first non-option, so lift it out */
    const char *verb = NULL;
    if (n > 1 && rest[1][0] != '-') {
        verb = rest[1];
        memmove(rest + 1, rest + 2, (size_t)(n - 2) * sizeof *rest);
        n--;
        rest[n] = NULL;
    }
    struct cf_opts o;
    int rc = cf_opts_parse(n, rest, CF_OPT_ACME | CF_OPT_STATE, usage, &o, err);
    if (rc == 1) {
        free(rest);
        return CF_EXIT_OK;
    }
    if (rc) {
        free(rest);
        return cf_usage_error("account", err);
    }
    if (!verb && o.n_args == 1)
        verb = o.args[0];
    else if (o.n_args != 0)
        verb = NULL;
    if (!verb || (strcmp(verb, "rollover") != 0 && strcmp(verb, "show") != 0)) {
        free(rest);
        return cf_usage_error("account", "expected 'show' or 'rollover'");
    }
    r.verb = verb;
    uv_loop_t loop;
    uv_loop_init(&loop);
    if (cf_http_new(&loop, &r.http) != 0) {
        free(rest);
        fprintf(stderr, "certfleet account: cannot set up http\n");
        return CF_EXIT_FAILED;
    }
    struct cf_acme_config c = {
        .directory_url = o.server    ? o.server
                         : o.staging ? LE_STAGING
                                     : LE_PRODUCTION,
        .ca_bundle = o.ca_bundle,
        .state_dir = o.state_dir,
        .account_key_type = "ecdsa",
        .timeout_ms = (long)o.timeout_s * 1000,
    };
    /* validate the new key type up front: a usage error touches nothing */
    char norm[CF_KEYTYPE_LEN];
    if (cf_x509_key_type_norm(r.key_type, r.key_bits, NULL, norm, err) != 0) {
        cf_http_free(r.http);
        uv_run(&loop, UV_RUN_DEFAULT);
        uv_loop_close(&loop);
        free(rest);
        return cf_usage_error("account", err);
    }
    if (cf_acme_new(&loop, r.http, &c, &r.acme, err) != 0) {
        cf_http_free(r.http);
        uv_run(&loop, UV_RUN_DEFAULT);
        uv_loop_close(&loop);
        free(rest);
        return cf_usage_error("account", err);
    }
    r.status = cf_acme_account(r.acme, on_account, &r);
    if (r.status)
        finish(&r);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    free(rest);
    return r.status ? CF_EXIT_FAILED : CF_EXIT_OK;
}

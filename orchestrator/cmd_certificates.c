/*
 * cmd_certificates.c - 'certfleet certificates': the central store, listed
 * as `certbot certificates` lists /etc/letsencrypt, or as JSON for CI.
 * Read-only: it opens the store without creating or repairing anything
 * and never takes a certificate's lock.
 */
#include "cf.h"
#include "commands.h"
#include "opts.h"
#include "store.h"
#include "util.h"
#include "x509.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <jansson.h>

static const char usage[] =
    "usage: certfleet certificates [--state-dir DIR] [--output text|json] [NAME...]\n"
    "\n"
    "Lists the certificates in the central store (the state directory), as\n"
    "'certbot certificates' does: name, domains, key type, serial, expiry with the\n"
    "days left, the live paths and the stored version.  NAMEs limit the list.\n"
    "Nothing is changed, no host is contacted.\n"
    "\n"
    "options:\n"
    "  --state-dir DIR     the store (default $CERTFLEET_STATE_DIR or /var/lib/certfleet)\n"
    "  --output text|json  text for people (default), json for scripts and CI\n"
    "  -v, --verbose       more detail on stderr\n"
    "  -h, --help          this help\n"
    "\n"
    "example:\n"
    "  $ certfleet certificates --state-dir /var/lib/certfleet\n"
    "  Found the following certificates in /var/lib/certfleet:\n"
    "    Certificate Name: foxycart-sandbox\n"
    "      Domains: foxycart-sandbox.example.com foxycart-sandbox3.example.com\n"
    "      Key Type: ecdsa-256\n"
    "      Serial Number: 03A1F4...\n"
    "      Expiry Date: 2026-12-01 10:00:00+00:00 (VALID: 84 days)\n"
    "      Version: 2\n"
    "      Certificate Path: /var/lib/certfleet/live/foxycart-sandbox/fullchain.pem\n"
    "      Private Key Path: /var/lib/certfleet/live/foxycart-sandbox/privkey.pem\n"
    "\n"
    "  $ certfleet certificates --output json | jq -r '.certificates[] | "
    "select(.days_left < 30) | .name'\n"
    "\n"
    "Exit codes: 0 listed, 1 a certificate could not be read or a NAME is not in\n"
    "the store, 2 usage error.\n";

static int64_t days_left(int64_t not_after, int64_t now)
{
    int64_t d = not_after - now;
    return d >= 0 ? d / 86400 : -((-d + 86399) / 86400);
}

static void fmt_expiry(int64_t t, char out[32])
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(out, 32, "%Y-%m-%d %H:%M:%S+00:00", &tm);
}

/* The configured domain set differs from the certificate's names. */
static int conf_differs(const struct cf_store_cert *c)
{
    if (!c->n_domains || !c->have_info)
        return 0;
    if (c->n_domains != c->info.n_dns)
        return 1;
    for (size_t i = 0; i < c->n_domains; i++) {
        int hit = 0;
        for (size_t j = 0; j < c->info.n_dns && !hit; j++)
            hit = !strcasecmp(c->domains[i], c->info.dns_names[j]);
        if (!hit)
            return 1;
    }
    return 0;
}

static void print_text(const struct cf_store_cert *c, const char *holder, int64_t now, int color)
{
    printf("  Certificate Name: %s\n", c->name);
    if (!c->have_info) {
        printf("    Domains:");
        for (size_t i = 0; i < c->n_domains; i++)
            printf(" %s", c->domains[i]);
        printf("\n    (no certificate issued yet; run 'certfleet apply')\n");
    } else {
        const struct cf_cert_info *ci = &c->info;
        printf("    Domains:");
        for (size_t i = 0; i < ci->n_dns; i++)
            printf(" %s", ci->dns_names[i]);
        printf("\n");
        if (conf_differs(c)) {
            printf("    Configured Domains:");
            for (size_t i = 0; i < c->n_domains; i++)
                printf(" %s", c->domains[i]);
            printf(" (the next run reissues)\n");
        }
        printf("    Key Type: %s\n", ci->key_type);
        printf("    Serial Number: %s\n", ci->serial_hex);
        char exp[32];
        fmt_expiry(ci->not_after, exp);
        int64_t left = days_left(ci->not_after, now);
        if (now >= ci->not_after)
            printf("    Expiry Date: %s (%sEXPIRED%s)\n", exp, color ? "\033[31m" : "",
                   color ? "\033[0m" : "");
        else
            printf("    Expiry Date: %s (%sVALID: %lld days%s)\n", exp,
                   color ? (left < 30 ? "\033[33m" : "\033[32m") : "", (long long)left,
                   color ? "\033[0m" : "");
        if (cf_x509_is_placeholder(ci))
            printf("    Issuer: %s (not a real certificate)\n", CF_PLACEHOLDER_CN);
        printf("    Version: %d\n", c->version);
        printf("    Certificate Path: %s\n", c->fullchain_path);
        printf("    Private Key Path: %s\n", c->privkey_path);
    }
    if (holder && *holder)
        printf("    Locked: by %s (a run is ordering it)\n", holder);
}

static json_t *str_array(char *const *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_string(v[i]));
    return a;
}

static json_t *to_json(const struct cf_store_cert *c, const char *holder, int64_t now)
{
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(c->name));
    json_object_set_new(o, "version", json_integer(c->version));
    json_object_set_new(o, "configured_domains", str_array(c->domains, c->n_domains));
    json_object_set_new(o, "configured_key_type",
                        *c->key_type ? json_string(c->key_type) : json_null());
    json_object_set_new(o, "server", c->server ? json_string(c->server) : json_null());
    if (c->have_info) {
        const struct cf_cert_info *ci = &c->info;
        char nb[21], na[21];
        cf_x509_iso8601(ci->not_before, nb);
        cf_x509_iso8601(ci->not_after, na);
        json_object_set_new(o, "domains", str_array(ci->dns_names, ci->n_dns));
        json_object_set_new(o, "key_type", json_string(ci->key_type));
        json_object_set_new(o, "serial", json_string(ci->serial_hex));
        json_object_set_new(o, "fingerprint_sha256", json_string(ci->fingerprint_sha256));
        json_object_set_new(o, "issuer_cn", json_string(ci->issuer_cn));
        json_object_set_new(o, "issuer_o", json_string(ci->issuer_o));
        json_object_set_new(o, "not_before", json_string(nb));
        json_object_set_new(o, "not_after", json_string(na));
        json_object_set_new(o, "not_after_epoch", json_integer(ci->not_after));
        json_object_set_new(o, "days_left", json_integer(days_left(ci->not_after, now)));
        json_object_set_new(o, "valid", json_boolean(now >= ci->not_before && now < ci->not_after));
        json_object_set_new(o, "placeholder", json_boolean(cf_x509_is_placeholder(ci)));
        json_object_set_new(o, "certificate_path", json_string(c->fullchain_path));
        json_object_set_new(o, "cert_path", json_string(c->cert_path));
        json_object_set_new(o, "chain_path", json_string(c->chain_path));
        json_object_set_new(o, "private_key_path", json_string(c->privkey_path));
    } else {
        json_object_set_new(o, "domains", json_array());
        json_object_set_new(o, "key_type", json_null());
        json_object_set_new(o, "serial", json_null());
        json_object_set_new(o, "not_after", json_null());
        json_object_set_new(o, "days_left", json_null());
        json_object_set_new(o, "valid", json_false());
    }
    json_object_set_new(o, "renewal_path", json_string(c->renewal_path));
    json_object_set_new(o, "locked_by", holder && *holder ? json_string(holder) : json_null());
    return o;
}

int cmd_certificates(int argc, char **argv)
{
    struct cf_opts o;
    char err[CF_ERRLEN];
    int rc = cf_opts_parse(argc, argv, CF_OPT_STATE | CF_OPT_OUTPUT, usage, &o, err);
    if (rc == 1)
        return CF_EXIT_OK;
    if (rc)
        return cf_usage_error("certificates", err);
    for (int i = 0; i < o.n_args; i++)
        if (!cf_store_name_ok(o.args[i])) {
            snprintf(err, sizeof err, "invalid certificate name '%s'", o.args[i]);
            return cf_usage_error("certificates", err);
        }

    int exit_code = CF_EXIT_OK;
    int json = o.output == CF_OUT_JSON;
    int64_t now = cf_now_ms() / 1000;
    struct cf_store s;
    char **names = NULL;
    size_t n = 0;
    json_t *root = json_object(), *list = json_array(), *errors = json_array();

    rc = cf_store_open(&s, o.state_dir, CF_STORE_READONLY, err);
    if (rc == CF_ENOENT) {
        cf_debug("%s", err); /* an empty store: nothing to list */
    } else if (rc) {
        fprintf(stderr, "certfleet certificates: %s\n", err);
        exit_code = CF_EXIT_FAILED;
        goto out;
    } else if ((rc = cf_store_list(&s, &names, &n, err)) != 0) {
        fprintf(stderr, "certfleet certificates: %s\n", err);
        exit_code = CF_EXIT_FAILED;
        goto out;
    }

    /* positional names: only those, and each must exist */
    char **want = o.n_args ? o.args : names;
    size_t nwant = o.n_args ? (size_t)o.n_args : n;
    int printed = 0;
    for (size_t i = 0; i < nwant; i++) {
        int known = 0;
        for (size_t j = 0; j < n && !known; j++)
            known = !strcmp(names[j], want[i]);
        if (!known) {
            snprintf(err, sizeof err, "certificate '%s' is not in the store '%s'", want[i],
                     s.dir ? s.dir : o.state_dir);
            json_array_append_new(errors, json_string(err));
            if (!json)
                fprintf(stderr, "certfleet certificates: %s\n", err);
            exit_code = CF_EXIT_FAILED;
            continue;
        }
        struct cf_store_cert c;
        rc = cf_store_get(&s, want[i], &c, err);
        char holder[256];
        cf_store_lock_holder(&s, want[i], holder);
        if (rc) {
            json_array_append_new(errors, json_string(err));
            if (!json)
                fprintf(stderr, "certfleet certificates: '%s': %s\n", want[i], err);
            exit_code = CF_EXIT_FAILED;
            cf_store_cert_release(&c);
            continue;
        }
        if (json) {
            json_array_append_new(list, to_json(&c, holder, now));
        } else {
            if (!printed++)
                printf("Found the following certificates in %s:\n", s.dir);
            print_text(&c, holder, now, cf_use_color(1));
        }
        cf_store_cert_release(&c);
    }
    if (!json && !printed && !o.n_args)
        printf("No certificates found in %s%s.\n", s.dir ? s.dir : o.state_dir,
               s.dir ? "" : " (the state directory does not exist yet)");

out:
    if (json) {
        json_object_set_new(root, "state_dir", json_string(s.dir ? s.dir : o.state_dir));
        json_object_set(root, "certificates", list);
        json_object_set(root, "errors", errors);
        char *text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        if (text)
            printf("%s\n", text);
        free(text);
    }
    json_decref(list);
    json_decref(errors);
    json_decref(root);
    cf_store_names_free(names);
    cf_store_release(&s);
    return exit_code;
}

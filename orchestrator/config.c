/*
 * config.c - typed, validated certbot configuration per host and per fleet.
 *
 * One table (vars_spec) lists every variable certfleet reads, its type and
 * where its typed value goes; the same names, in the same order, are the
 * keys of roles/certbot/defaults/main.yml (the unit test checks that the
 * compiled-in copy below equals the file).  Validation is pure: no I/O, so
 * the unit tests drive every rule directly.
 */
#include "config.h"

#include "template.h"
#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

/* The text of roles/certbot/defaults/main.yml, compiled in so the binary
 * needs no data files.  Regenerate the block between the BEGIN/END lines
 * when the file changes (tests/unit/test_config.c fails until they agree):
 *   sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/    "/' -e 's/$/\\n"/'
 *       roles/certbot/defaults/main.yml */
/* BEGIN defaults: generated from roles/certbot/defaults/main.yml */
const char cf_config_defaults_yaml[] =
    "---\n"
    "# roles/certbot/defaults/main.yml - every variable certfleet reads, with its\n"
    "# default.  Override them in group_vars/, host_vars/, the inventory or -e,\n"
    "# with Ansible's precedence (these defaults are the lowest).  certfleet\n"
    "# compiles this file in and checks every value before any host is touched;\n"
    "# an unknown certbot_* variable is an error (typos would silently fall back\n"
    "# to a default otherwise).\n"
    "\n"
    "# Manage certificates on this host at all.  false: the host is checked but\n"
    "# gets nothing.\n"
    "certbot_enabled: true\n"
    "\n"
    "# ACME account contact (mailto:).  Let's Encrypt sends expiry warnings here.\n"
    "# Empty: register without a contact.\n"
    "certbot_email: \"\"\n"
    "\n"
    "# Accepted for compatibility with certbot roles; certfleet needs no certbot\n"
    "# on the hosts, so it is not used.\n"
    "certbot_install_method: apt\n"
    "\n"
    "# Renew a certificate when fewer than this many days remain (1..89; the\n"
    "# ACME server's ARI window, when offered, wins).\n"
    "certbot_renewal_days: 30\n"
    "\n"
    "# status / alerts: warn when a certificate served by a host has fewer than\n"
    "# this many days left (renewal should have happened long before).\n"
    "certbot_warning_days: 14\n"
    "\n"
    "# Certificates of this host.  Each entry:\n"
    "#   domains:   [a.example.com, b.example.com]   (required; the first is the\n"
    "#              subject; \"*.example.com\" only with challenge dns-01)\n"
    "#   cert_name: name of the lineage under certbot_config_dir/live/ (default:\n"
    "#              the first domain, as certbot does)\n"
    "#   webroot:   where HTTP-01 tokens go (default: certbot_webroot)\n"
    "#   challenge, key_type, key_size: per-certificate overrides\n"
    "# The same cert_name on several hosts is ONE certificate, issued once and\n"
    "# pushed to all of them; its domain set must then be the same everywhere.\n"
    "certbot_domains: []\n"
    "\n"
    "# nginx services on this host and the certificate each one uses:\n"
    "#   - name: shop          (files /etc/nginx/certs/shop.{fullchain.crt,ca-bundle.crt,key}\n"
    "#     cert_source: shop    and the deploy hook <name>.sh)\n"
    "# cert_source must be a cert_name of this host's certbot_domains.\n"
    "certbot_services: []\n"
    "\n"
    "# Private key algorithm: ecdsa or rsa.\n"
    "certbot_key_type: ecdsa\n"
    "\n"
    "# Key size: 256 or 384 for ecdsa (P-256, P-384); 2048, 3072 or 4096 for rsa.\n"
    "# Empty (~): 256 for ecdsa, 2048 for rsa.\n"
    "certbot_key_size: ~\n"
    "\n"
    "# Keep the private key across renewals (certbot --reuse-key).\n"
    "certbot_reuse_key: false\n"
    "\n"
    "# Owner and group of the private keys and archive files on the hosts.\n"
    "certbot_key_owner: root\n"
    "certbot_key_group: root\n"
    "\n"
    "# How the CA validates control of the domains: http-01 (a token under the\n"
    "# webroot on every host of the certificate) or dns-01 (certbot_dns_hook).\n"
    "certbot_challenge: http-01\n"
    "\n"
    "# dns-01 only: a command on the controller, called as\n"
    "#   HOOK add|remove <domain> <txt-record-name> <txt-value>\n"
    "# It should return once the record is published.\n"
    "certbot_dns_hook: \"\"\n"
    "\n"
    "# dns-01 only: seconds to wait after the hook before telling the CA.\n"
    "certbot_dns_propagation_seconds: 0\n"
    "\n"
    "# ACME directory URL.  Staging:\n"
    "# https://acme-staging-v02.api.letsencrypt.org/directory\n"
    "certbot_acme_server: https://acme-v02.api.letsencrypt.org/directory\n"
    "\n"
    "# PEM file (on the controller) to trust for the ACME server's TLS; empty:\n"
    "# the system's trust store.  The local test fleet points it at pebble's CA.\n"
    "certbot_acme_ca_bundle: \"\"\n"
    "\n"
    "# External account binding, for CAs that require it (both or neither).\n"
    "certbot_eab_kid: \"\"\n"
    "certbot_eab_hmac_key: \"\"\n"
    "\n"
    "# Prefer an alternate chain whose topmost issuer has this common name\n"
    "# (certbot --preferred-chain); empty: the CA's default chain.\n"
    "certbot_preferred_chain: \"\"\n"
    "\n"
    "# Webroot for certbot_domains entries without their own.\n"
    "certbot_webroot: /var/www/letsencrypt\n"
    "\n"
    "# certbot's layout: archive/, live/, renewal-hooks/ live under this.\n"
    "certbot_config_dir: /etc/letsencrypt\n"
    "\n"
    "# Deploy hooks (one <service>.sh each: test the config, then reload).\n"
    "certbot_deploy_hook_dir: /etc/letsencrypt/renewal-hooks/deploy\n"
    "\n"
    "# nginx locations.  certs_dir holds the per-service symlinks, snippets_dir\n"
    "# the acme-challenge location block, http_conf the port-80 server.\n"
    "nginx_conf_dir: /etc/nginx\n"
    "nginx_certs_dir: /etc/nginx/certs\n"
    "nginx_snippets_dir: /etc/nginx/snippets\n"
    "nginx_http_conf: /etc/nginx/conf.d/certfleet-http.conf\n"
    "\n"
    "# The port-80 server: redirect everything but ACME tokens to https.\n"
    "certbot_http_redirect: true\n"
    "\n"
    "# Argument of nginx's `listen` in that server (\"80\", \"127.0.0.5:80\").\n"
    "certbot_http_listen: \"80\"\n"
    "\n"
    "# Where the controller fetches tokens (HTTP) and probes certificates (TLS)\n"
    "# on this host's address before telling the CA / after a reload.\n"
    "certbot_http_port: 80\n"
    "certbot_https_port: 443\n"
    "\n"
    "# Send Strict-Transport-Security from the port-80 redirect and the snippet.\n"
    "certbot_hsts: false\n"
    "certbot_hsts_max_age: 31536000\n"
    "\n"
    "# Run on the host after new certificate files are in place; a failure\n"
    "# swaps the previous certificate back.  Then reload.\n"
    "certbot_test_command: \"nginx -t\"\n"
    "certbot_reload_command: \"systemctl reload nginx\"\n"
    "\n"
    "# Prefix joined in front of EVERY absolute path certfleet touches on this\n"
    "# host (including symlink targets and the webroots of certbot_domains).\n"
    "# The local test fleet gives each simulated host its own root with it, so\n"
    "# group_vars stay exactly as written for real hosts.  Empty: none.\n"
    "certfleet_host_root: \"\"\n"
    "\n"
    "# Alerts (failed runs, certificates close to expiry).  Empty: none.\n"
    "certbot_notify_email: \"\"\n"
    "certbot_notify_from: \"\"\n"
    "certbot_smtp_server: \"\"\n"
    "certbot_smtp_port: 25\n"
    "certbot_smtp_starttls: true\n"
    "certbot_smtp_user: \"\"\n"
    "# Name of an environment variable on the controller holding the SMTP\n"
    "# password; the password itself never goes into the inventory.\n"
    "certbot_smtp_password_env: \"\"\n"
    "# CA file (on the controller) to trust for the SMTP server's STARTTLS/TLS\n"
    "# certificate; \"\" = the system store.\n"
    "certbot_smtp_ca_bundle: \"\"\n"
    "# POST a JSON summary here (http:// or https://).\n"
    "certbot_notify_webhook: \"\"\n";
/* END defaults */

#define DEFAULTS_NAME "roles/certbot/defaults/main.yml"
#define MAX_PATH      4096
#define MAX_NAME      200

/* ---- value kinds ---------------------------------------------------- */

enum vkind {
    V_BOOL,
    V_INT,       /* min..max */
    V_STR,       /* any string ("" when null) */
    V_CMD,       /* non-empty string */
    V_ACCOUNT,   /* user or group name */
    V_EMAIL,     /* "" or an address */
    V_HTTPS_URL, /* https:// URL */
    V_URL,       /* "" or http(s):// URL */
    V_HOSTNAME,  /* "" or a host name / address */
    V_ENVNAME,   /* "" or an environment variable name */
    V_LISTEN,    /* nginx listen argument */
    V_PATH,      /* absolute remote path, joined with the host root */
    V_ROOT,      /* certfleet_host_root */
    V_KEYTYPE,
    V_KEYSIZE, /* null = the key type's default */
    V_CHALLENGE,
    V_LIST, /* certbot_domains / certbot_services: handled after the table */
};

struct var_spec {
    const char *name;
    enum vkind kind;
    long long min, max;
    size_t off; /* into struct cf_host_config */
};

#define F(field) offsetof(struct cf_host_config, field)

static const struct var_spec vars_spec[] = {
    {"certbot_enabled", V_BOOL, 0, 0, F(enabled)},
    {"certbot_email", V_EMAIL, 0, 0, F(email)},
    {"certbot_install_method", V_STR, 0, 0, F(install_method)},
    {"certbot_renewal_days", V_INT, 1, 89, F(renewal_days)},
    {"certbot_warning_days", V_INT, 0, 365, F(warning_days)},
    {"certbot_domains", V_LIST, 0, 0, 0},
    {"certbot_services", V_LIST, 0, 0, 0},
    {"certbot_key_type", V_KEYTYPE, 0, 0, F(key_type)},
    {"certbot_key_size", V_KEYSIZE, 0, 0, F(key_size)},
    {"certbot_reuse_key", V_BOOL, 0, 0, F(reuse_key)},
    {"certbot_key_owner", V_ACCOUNT, 0, 0, F(key_owner)},
    {"certbot_key_group", V_ACCOUNT, 0, 0, F(key_group)},
    {"certbot_challenge", V_CHALLENGE, 0, 0, F(challenge)},
    {"certbot_dns_hook", V_STR, 0, 0, F(dns_hook)},
    {"certbot_dns_propagation_seconds", V_INT, 0, 3600, F(dns_propagation_seconds)},
    {"certbot_acme_server", V_HTTPS_URL, 0, 0, F(acme_server)},
    {"certbot_acme_ca_bundle", V_STR, 0, 0, F(acme_ca_bundle)},
    {"certbot_eab_kid", V_STR, 0, 0, F(eab_kid)},
    {"certbot_eab_hmac_key", V_STR, 0, 0, F(eab_hmac_key)},
    {"certbot_preferred_chain", V_STR, 0, 0, F(preferred_chain)},
    {"certfleet_host_root", V_ROOT, 0, 0, F(host_root)},
    {"certbot_webroot", V_PATH, 0, 0, F(webroot)},
    {"certbot_config_dir", V_PATH, 0, 0, F(config_dir)},
    {"certbot_deploy_hook_dir", V_PATH, 0, 0, F(deploy_hook_dir)},
    {"nginx_conf_dir", V_PATH, 0, 0, F(nginx_conf_dir)},
    {"nginx_certs_dir", V_PATH, 0, 0, F(nginx_certs_dir)},
    {"nginx_snippets_dir", V_PATH, 0, 0, F(nginx_snippets_dir)},
    {"nginx_http_conf", V_PATH, 0, 0, F(nginx_http_conf)},
    {"certbot_http_redirect", V_BOOL, 0, 0, F(http_redirect)},
    {"certbot_http_listen", V_LISTEN, 0, 0, F(http_listen)},
    {"certbot_http_port", V_INT, 1, 65535, F(http_port)},
    {"certbot_https_port", V_INT, 1, 65535, F(https_port)},
    {"certbot_hsts", V_BOOL, 0, 0, F(hsts)},
    {"certbot_hsts_max_age", V_INT, 0, 1000000000LL, F(hsts_max_age)},
    {"certbot_test_command", V_CMD, 0, 0, F(test_command)},
    {"certbot_reload_command", V_CMD, 0, 0, F(reload_command)},
    {"certbot_notify_email", V_EMAIL, 0, 0, F(notify_email)},
    {"certbot_notify_from", V_EMAIL, 0, 0, F(notify_from)},
    {"certbot_smtp_server", V_HOSTNAME, 0, 0, F(smtp_server)},
    {"certbot_smtp_port", V_INT, 1, 65535, F(smtp_port)},
    {"certbot_smtp_starttls", V_BOOL, 0, 0, F(smtp_starttls)},
    {"certbot_smtp_user", V_STR, 0, 0, F(smtp_user)},
    {"certbot_smtp_password_env", V_ENVNAME, 0, 0, F(smtp_password_env)},
    {"certbot_smtp_ca_bundle", V_STR, 0, 0, F(smtp_ca_bundle)},
    {"certbot_notify_webhook", V_URL, 0, 0, F(notify_webhook)},
};
#define N_SPEC (sizeof(vars_spec) / sizeof(vars_spec[0]))

static const char *const domain_keys[] = {"domains",   "cert_name", "webroot",
                                          "challenge", "key_type",  "key_size"};
static const char *const service_keys[] = {"name", "cert_source"};

const char *cf_key_type_name(enum cf_key_type t)
{
    return t == CF_KEY_RSA ? "rsa" : "ecdsa";
}

const char *cf_challenge_name(enum cf_challenge c)
{
    return c == CF_CHALLENGE_DNS01 ? "dns-01" : "http-01";
}

/* ---- defaults ------------------------------------------------------- */

static json_t *defaults_obj;

const json_t *cf_config_defaults(void)
{
    if (!defaults_obj) {
        char err[CF_ERRLEN];
        json_t *v = NULL;
        if (cf_yaml_load_string(DEFAULTS_NAME, cf_config_defaults_yaml, &v, err) != 0 ||
            !json_is_object(v)) {
            cf_log(0, "certfleet: compiled-in role defaults do not parse: %s", err);
            json_decref(v);
            return NULL;
        }
        defaults_obj = v;
    }
    return defaults_obj;
}

const json_t *cf_config_var(const struct cf_host_config *c, const char *name)
{
    const json_t *v = c && json_is_object(c->hostvars) ? json_object_get(c->hostvars, name) : NULL;
    if (!v) {
        const json_t *d = cf_config_defaults();
        v = d ? json_object_get(d, name) : NULL;
    }
    return v;
}

/* ---- messages ------------------------------------------------------- */

/* A user value as it may appear in a message: printable ASCII kept, the
 * rest escaped C-style, long values cut, so a hostile value can neither
 * break the line nor hide in it. */
static const char *show(const char *s, char *buf, size_t cap)
{
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p && o + 8 < cap; p++) {
        if (o > 120) {
            o += (size_t)snprintf(buf + o, cap - o, "...");
            break;
        }
        switch (*p) {
        case '\n':
            buf[o++] = '\\', buf[o++] = 'n';
            break;
        case '\r':
            buf[o++] = '\\', buf[o++] = 'r';
            break;
        case '\t':
            buf[o++] = '\\', buf[o++] = 't';
            break;
        case '\\':
            buf[o++] = '\\', buf[o++] = '\\';
            break;
        case '\'':
            buf[o++] = '\\', buf[o++] = '\'';
            break;
        default:
            if (*p < 0x20 || *p >= 0x7f)
                o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", *p);
            else
                buf[o++] = (char)*p;
        }
    }
    buf[o] = 0;
    return buf;
}

/* One character for "'X' is not allowed". */
static const char *show_char(unsigned char c, char buf[16])
{
    char s[2] = {(char)c, 0};
    return show(s, buf, 16);
}

struct ctx {
    const char *host;
    const json_t *hv;
    char *err;
    json_t *tvars;         /* defaults + hostvars for templates, built on first use */
    json_t *rendered;      /* values produced by templates, alive until the end */
    struct cf_pos dns_pos; /* the first entry choosing dns-01 itself */
};

/* "file:line:col: subject: msg" when pos has a file, else
 * "host 'h': variable 'subject': msg" (or "host 'h': msg"). */
static int verr(struct ctx *x, const struct cf_pos *pos, const char *subject, const char *fmt,
                va_list ap)
{
    char msg[CF_ERRLEN];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    if (pos && pos->file) {
        if (subject)
            return cf_pos_errf(x->err, pos, "%s: %s", subject, msg);
        return cf_pos_errf(x->err, pos, "%s", msg);
    }
    if (subject)
        return cf_errf(x->err, "host '%s': variable '%s': %s", x->host, subject, msg);
    return cf_errf(x->err, "host '%s': %s", x->host, msg);
}

static int cerr(struct ctx *x, const struct cf_pos *pos, const char *subject, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int cerr(struct ctx *x, const struct cf_pos *pos, const char *subject, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = verr(x, pos, subject, fmt, ap);
    va_end(ap);
    return rc;
}

/* Did the user set name, rather than the role default?  Callers may merge
 * the defaults into the hostvars (cf_inventory_hostvars' role_defaults);
 * those values are the very objects of cf_config_defaults(). */
static int user_set(const struct ctx *x, const char *name)
{
    const json_t *v = json_object_get(x->hv, name);
    const json_t *d = cf_config_defaults();
    if (!v)
        return 0;
    if (d && json_object_get(d, name) == v) {
        struct cf_pos p;
        /* true/false/null are shared singletons: ask where it was written */
        if (cf_vars_member_pos(x->hv, name, &p) != 0 || !p.file)
            return 0;
        return strcmp(p.file, DEFAULTS_NAME) != 0;
    }
    return 1;
}

/* The position of variable name: the host's value, else the default's. */
static struct cf_pos var_pos(struct ctx *x, const char *name)
{
    struct cf_pos p = {0};
    if (json_object_get(x->hv, name))
        cf_vars_member_pos(x->hv, name, &p);
    else if (cf_config_defaults())
        cf_vars_member_pos(cf_config_defaults(), name, &p);
    return p;
}

/* A value as Ansible would use it: a string holding "{{ ... }}" is
 * rendered with the host's variables (over the role defaults); anything
 * else is returned as is, so its source position stays known.  The
 * position of the original is used for errors either way.  NULL with err
 * set when rendering fails. */
static const json_t *resolve(struct ctx *x, const json_t *v, const struct cf_pos *pos,
                             const char *subject)
{
    char e[CF_ERRLEN];
    json_t *r = NULL;
    if (!json_is_string(v) || !cf_template_is_template(json_string_value(v)))
        return v;
    if (!x->tvars) {
        x->tvars = json_object();
        if (cf_config_defaults())
            json_object_update(x->tvars, (json_t *)cf_config_defaults());
        json_object_update(x->tvars, (json_t *)x->hv);
        json_object_set_new(x->tvars, "inventory_hostname", json_string(x->host));
    }
    if (cf_template_value(pos && pos->file ? pos->file : x->host, pos && pos->file ? pos->line : 1,
                          v, x->tvars, &r, e) != 0) {
        cerr(x, pos, subject, "%s", e);
        return NULL;
    }
    if (!x->rendered)
        x->rendered = json_array();
    json_array_append_new(x->rendered, r);
    return r;
}

/* "got str 'soon'" / "got list" for type errors. */
static const char *got(const json_t *v, char *buf, size_t cap)
{
    char tmp[200];
    if (json_is_string(v))
        snprintf(buf, cap, "got str '%s'", show(json_string_value(v), tmp, sizeof(tmp)));
    else if (json_is_integer(v))
        snprintf(buf, cap, "got int %lld", (long long)json_integer_value(v));
    else if (json_is_real(v))
        snprintf(buf, cap, "got float %g", json_real_value(v));
    else if (json_is_boolean(v))
        snprintf(buf, cap, "got bool %s", json_is_true(v) ? "true" : "false");
    else
        snprintf(buf, cap, "got %s", cf_vars_type_name(v));
    return buf;
}

/* ---- edit distance for did-you-mean --------------------------------- */

/* Optimal string alignment distance: a swapped pair of letters counts as
 * one edit, which is the commonest typo ('cert_nmae'). */
static size_t osa_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64)
        return (size_t)-1;
    size_t d[65][65];
    for (size_t i = 0; i <= la; i++)
        d[i][0] = i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = j;
    for (size_t i = 1; i <= la; i++) {
        for (size_t j = 1; j <= lb; j++) {
            size_t cost = tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]);
            size_t m = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < m)
                m = d[i][j - 1] + 1;
            if (d[i - 1][j - 1] + cost < m)
                m = d[i - 1][j - 1] + cost;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                d[i - 2][j - 2] + 1 < m)
                m = d[i - 2][j - 2] + 1;
            d[i][j] = m;
        }
    }
    return d[la][lb];
}

const char *cf_config_suggest(const char *word, const char *const *candidates, size_t n)
{
    const char *best = NULL;
    size_t best_d = (size_t)-1;
    size_t len = strlen(word);
    /* short words need a closer match, or every 3-letter word suggests */
    size_t limit = len <= 4 ? 1 : len <= 8 ? 2 : 3;
    for (size_t i = 0; i < n; i++) {
        size_t d = osa_distance(word, candidates[i]);
        if (d < best_d) {
            best_d = d;
            best = candidates[i];
        }
    }
    return best_d <= limit ? best : NULL;
}

static void did_you_mean(const char *word, const char *const *cands, size_t n, char *buf,
                         size_t cap)
{
    const char *s = cf_config_suggest(word, cands, n);
    if (s)
        snprintf(buf, cap, "; did you mean '%s'?", s);
    else
        buf[0] = 0;
}

/* ---- pure checks ---------------------------------------------------- */

int cf_config_check_path(const char *path, const char *what, char *err)
{
    char sb[300], cb[16];
    if (!path || !*path)
        return cf_errf(err, "%s is empty; give an absolute path", what);
    size_t n = strlen(path);
    if (n > MAX_PATH)
        return cf_errf(err, "%s is longer than %d bytes", what, MAX_PATH);
    if (path[0] != '/')
        return cf_errf(err, "%s '%s' is not absolute; give a path starting with '/'", what,
                       show(path, sb, sizeof(sb)));
    for (const char *p = path; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (!isalnum(c) && !strchr("._/+@=,:~-", c))
            return cf_errf(err,
                           "%s '%s' contains '%s', which is not allowed in a path "
                           "(use letters, digits and ._/+@=,:~-)",
                           what, show(path, sb, sizeof(sb)), show_char(c, cb));
    }
    for (const char *p = path; (p = strstr(p, "..")) != NULL; p++) {
        if ((p == path || p[-1] == '/') && (p[2] == '/' || p[2] == 0))
            return cf_errf(err, "%s '%s' contains a '..' component; give the path without it", what,
                           show(path, sb, sizeof(sb)));
    }
    return 0;
}

int cf_config_check_domain(const char *name, int allow_wildcard, char *err)
{
    char sb[300], cb[16];
    const char *shown = show(name, sb, sizeof(sb));
    size_t n = strlen(name);
    if (n == 0)
        return cf_errf(err, "invalid domain name '': it is empty");
    for (const char *p = name; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c >= 0x80)
            return cf_errf(err,
                           "invalid domain name '%s': non-ASCII characters are not allowed; "
                           "write the name in its punycode form (xn--...)",
                           shown);
        if (!isalnum(c) && c != '-' && c != '.' && c != '*')
            return cf_errf(err,
                           "invalid domain name '%s': '%s' is not allowed "
                           "(use letters, digits, '-' and '.')",
                           shown, show_char(c, cb));
    }
    if (n > 253)
        return cf_errf(err, "invalid domain name '%s': longer than 253 characters", shown);
    if (name[n - 1] == '.')
        return cf_errf(err, "invalid domain name '%s': remove the trailing '.'", shown);
    size_t labels = 0;
    int wildcard = 0;
    int numeric_last = 0;
    for (const char *p = name;; labels++) {
        const char *dot = strchr(p, '.');
        size_t len = dot ? (size_t)(dot - p) : strlen(p);
        char lb[80];
        snprintf(lb, sizeof(lb), "%.*s", (int)(len > 70 ? 70 : len), p);
        if (len == 0)
            return cf_errf(err,
                           "invalid domain name '%s': empty label (two dots in a row, or "
                           "a leading dot)",
                           shown);
        if (memchr(p, '*', len)) {
            if (len != 1 || p != name)
                return cf_errf(err,
                               "invalid domain name '%s': '*' is allowed only as the whole "
                               "leftmost label ('*.example.com')",
                               shown);
            if (!allow_wildcard)
                return cf_errf(err,
                               "invalid domain name '%s': a wildcard needs the dns-01 "
                               "challenge; set challenge: dns-01 (and certbot_dns_hook)",
                               shown);
            wildcard = 1;
        }
        if (len > 63)
            return cf_errf(err,
                           "invalid domain name '%s': label '%s...' is longer than 63 "
                           "characters",
                           shown, lb);
        if (p[0] == '-' || p[len - 1] == '-')
            return cf_errf(err, "invalid domain name '%s': label '%s' starts or ends with '-'",
                           shown, lb);
        numeric_last = 1;
        for (size_t i = 0; i < len; i++)
            if (!isdigit((unsigned char)p[i]))
                numeric_last = 0;
        if (!dot)
            break;
        p = dot + 1;
    }
    labels++;
    if (labels - (size_t)wildcard < 2)
        return cf_errf(err,
                       "invalid domain name '%s': not a fully qualified name "
                       "(a CA issues only for names like 'www.example.com')",
                       shown);
    if (numeric_last)
        return cf_errf(err, "invalid domain name '%s': looks like an IP address; give a DNS name",
                       shown);
    return 0;
}

static int check_email(const char *s, char *err)
{
    char sb[300], cb[16], derr[CF_ERRLEN];
    const char *at = strrchr(s, '@');
    const char *shown = show(s, sb, sizeof(sb));
    if (!at || at == s || !at[1])
        return cf_errf(err, "invalid e-mail address '%s': expected local-part@domain", shown);
    if (at - s > 64)
        return cf_errf(err,
                       "invalid e-mail address '%s': the part before '@' is longer than "
                       "64 characters",
                       shown);
    for (const char *p = s; p < at; p++) {
        unsigned char c = (unsigned char)*p;
        if (!isalnum(c) && !strchr("._%+-=", c))
            return cf_errf(err,
                           "invalid e-mail address '%s': '%s' is not allowed before '@' "
                           "(use letters, digits and ._%%+-=)",
                           shown, show_char(c, cb));
    }
    if (s[0] == '.' || at[-1] == '.' || strstr(s, ".."))
        return cf_errf(err, "invalid e-mail address '%s': misplaced '.' before '@'", shown);
    if (cf_config_check_domain(at + 1, 0, derr) != 0)
        return cf_errf(err, "invalid e-mail address '%s': %s", shown, derr);
    return 0;
}

static int check_url(const char *s, int https_only, char *err)
{
    char sb[300], cb[16];
    const char *shown = show(s, sb, sizeof(sb));
    const char *rest = NULL;
    if (!strncmp(s, "https://", 8))
        rest = s + 8;
    else if (!https_only && !strncmp(s, "http://", 7))
        rest = s + 7;
    if (!rest)
        return cf_errf(err, "invalid URL '%s': expected %s", shown,
                       https_only ? "https://HOST/..." : "http:// or https://");
    if (!*rest || *rest == '/')
        return cf_errf(err, "invalid URL '%s': no host name", shown);
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c <= 0x20 || c >= 0x7f || c == '"' || c == '\'' || c == '`' || c == '\\')
            return cf_errf(err, "invalid URL '%s': '%s' is not allowed (percent-encode it)", shown,
                           show_char(c, cb));
    }
    return 0;
}

/* Names that become part of a file name (cert_name, service name) or an
 * account: no '/', no leading '.' or '-', a small safe set. */
static int check_name(const char *s, const char *what, size_t max, char *err)
{
    char sb[300], cb[16];
    const char *shown = show(s, sb, sizeof(sb));
    if (!*s)
        return cf_errf(err, "%s is empty", what);
    if (strlen(s) > max)
        return cf_errf(err, "%s '%s' is longer than %zu characters", what, shown, max);
    if (s[0] == '.' || s[0] == '-')
        return cf_errf(err, "%s '%s' must not start with '%c'", what, shown, s[0]);
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (!isalnum(c) && !strchr("._-", c))
            return cf_errf(err,
                           "%s '%s': '%s' is not allowed (use letters, digits, '.', '_' and "
                           "'-')",
                           what, shown, show_char(c, cb));
    }
    return 0;
}

static int check_charset(const char *s, const char *allowed, const char *what, char *err)
{
    char sb[300], cb[16];
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (!isalnum(c) && !strchr(allowed, c))
            return cf_errf(err, "%s '%s': '%s' is not allowed (use letters, digits and %s)", what,
                           show(s, sb, sizeof(sb)), show_char(c, cb), allowed);
    }
    return 0;
}

/* ---- scalar conversion ---------------------------------------------- */

/* Ansible's boolean(): bools, 0/1 and the usual words. */
static int to_bool(const json_t *v, int *out)
{
    static const char *const yes[] = {"true", "yes", "on", "y", "t", "1"};
    static const char *const no[] = {"false", "no", "off", "n", "f", "0"};
    if (json_is_boolean(v)) {
        *out = json_is_true(v);
        return 0;
    }
    if (json_is_integer(v) && (json_integer_value(v) == 0 || json_integer_value(v) == 1)) {
        *out = (int)json_integer_value(v);
        return 0;
    }
    if (json_is_string(v)) {
        for (size_t i = 0; i < 6; i++) {
            if (!strcasecmp(json_string_value(v), yes[i])) {
                *out = 1;
                return 0;
            }
            if (!strcasecmp(json_string_value(v), no[i])) {
                *out = 0;
                return 0;
            }
        }
    }
    return CF_EINVAL;
}

/* Integers, and strings of digits (INI inventories and -e k=v give those). */
static int to_int(const json_t *v, long long *out)
{
    if (json_is_integer(v)) {
        *out = json_integer_value(v);
        return 0;
    }
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        char *end;
        if (!*s || isspace((unsigned char)*s))
            return CF_EINVAL;
        errno = 0;
        long long n = strtoll(s, &end, 10);
        if (errno || *end)
            return CF_EINVAL;
        *out = n;
        return 0;
    }
    return CF_EINVAL;
}

/* Strings; numbers become their decimal text (Ansible's str type), null
 * is "" (unset).  Returns a new string or NULL for other types. */
static char *to_str(const json_t *v)
{
    if (json_is_string(v))
        return cf_strdup(json_string_value(v));
    if (json_is_integer(v))
        return cf_asprintf("%lld", (long long)json_integer_value(v));
    if (json_is_real(v))
        return cf_asprintf("%g", json_real_value(v));
    if (json_is_null(v))
        return cf_strdup("");
    return NULL;
}

static char *join_root(const char *root, const char *raw)
{
    return cf_asprintf("%s%s", root ? root : "", raw);
}

/* Fill a cf_cfg_path from raw: checked, then joined with the host root. */
static int make_path(struct ctx *x, const struct cf_pos *pos, const char *subject, const char *root,
                     const char *raw, struct cf_cfg_path *out)
{
    char e[CF_ERRLEN];
    if (cf_config_check_path(raw, "path", e) != 0)
        return cerr(x, pos, subject, "%s", e);
    out->raw = cf_strdup(raw);
    out->path = join_root(root, raw);
    if (strlen(out->path) > MAX_PATH)
        return cerr(x, pos, subject, "path is longer than %d bytes with certfleet_host_root",
                    MAX_PATH);
    return 0;
}

static int parse_key_type(const char *s, enum cf_key_type *out)
{
    if (!strcmp(s, "ecdsa"))
        *out = CF_KEY_ECDSA;
    else if (!strcmp(s, "rsa"))
        *out = CF_KEY_RSA;
    else
        return CF_EINVAL;
    return 0;
}

static int parse_challenge(const char *s, enum cf_challenge *out)
{
    if (!strcmp(s, "http-01"))
        *out = CF_CHALLENGE_HTTP01;
    else if (!strcmp(s, "dns-01"))
        *out = CF_CHALLENGE_DNS01;
    else
        return CF_EINVAL;
    return 0;
}

/* key_size 0 = the type's default. */
static int check_key(enum cf_key_type t, int *size, char *err)
{
    if (*size == 0)
        *size = t == CF_KEY_RSA ? 2048 : 256;
    if (t == CF_KEY_ECDSA && *size != 256 && *size != 384)
        return cf_errf(err,
                       "key size %d does not fit key type 'ecdsa'; use 256 or 384 "
                       "(or key type 'rsa')",
                       *size);
    if (t == CF_KEY_RSA && *size != 2048 && *size != 3072 && *size != 4096)
        return cf_errf(err, "key size %d does not fit key type 'rsa'; use 2048, 3072 or 4096",
                       *size);
    return 0;
}

/* Parse a key size value: null/"" = 0 (type default), else an integer. */
static int to_key_size(const json_t *v, int *out)
{
    long long n;
    if (json_is_null(v) || (json_is_string(v) && !*json_string_value(v))) {
        *out = 0;
        return 0;
    }
    if (to_int(v, &n) != 0 || n <= 0 || n > 16384)
        return CF_EINVAL;
    *out = (int)n;
    return 0;
}

/* ---- one variable of the table -------------------------------------- */

static int set_var(struct ctx *x, struct cf_host_config *c, const struct var_spec *s,
                   const json_t *v)
{
    char gb[300], e[CF_ERRLEN];
    void *field = (char *)c + s->off;
    struct cf_pos pos = var_pos(x, s->name);
    long long n;
    char *str = NULL;
    int rc;

    switch (s->kind) {
    case V_BOOL:
        if (to_bool(v, (int *)field) != 0)
            return cerr(x, &pos, s->name, "expected true or false, %s", got(v, gb, sizeof(gb)));
        return 0;
    case V_INT:
        if (to_int(v, &n) != 0)
            return cerr(x, &pos, s->name, "expected an integer, %s", got(v, gb, sizeof(gb)));
        if (n < s->min || n > s->max) {
            if (!strcmp(s->name, "certbot_renewal_days"))
                return cerr(x, &pos, s->name,
                            "%lld is out of range; use 1 to 89 (certificates last 90 days)", n);
            return cerr(x, &pos, s->name, "%lld is out of range; use %lld to %lld", n, s->min,
                        s->max);
        }
        if (s->off == F(hsts_max_age))
            *(long long *)field = n;
        else
            *(int *)field = (int)n;
        return 0;
    case V_KEYSIZE:
        if (to_key_size(v, (int *)field) != 0)
            return cerr(x, &pos, s->name,
                        "expected a key size in bits (256, 384, 2048, 3072 "
                        "or 4096), %s",
                        got(v, gb, sizeof(gb)));
        return 0;
    case V_LIST:
        return 0;
    default:
        break;
    }

    /* string kinds */
    if (!(str = to_str(v)))
        return cerr(x, &pos, s->name, "expected a string, %s", got(v, gb, sizeof(gb)));
    e[0] = 0;
    switch (s->kind) {
    case V_KEYTYPE:
        rc = parse_key_type(str, &c->key_type);
        if (rc)
            cerr(x, &pos, s->name, "unknown key type '%s'; use 'ecdsa' or 'rsa'",
                 show(str, gb, sizeof(gb)));
        free(str);
        return rc;
    case V_CHALLENGE:
        rc = parse_challenge(str, &c->challenge);
        if (rc)
            cerr(x, &pos, s->name, "unknown challenge '%s'; use 'http-01' or 'dns-01'",
                 show(str, gb, sizeof(gb)));
        free(str);
        return rc;
    case V_PATH:
        rc = make_path(x, &pos, s->name, c->host_root, str, (struct cf_cfg_path *)field);
        free(str);
        return rc;
    default:
        break;
    }
    *(char **)field = str; /* owned by c from here on, also on error */
    switch (s->kind) {
    case V_CMD:
        if (!*str)
            return cerr(x, &pos, s->name, "is empty; give a command");
        break;
    case V_ACCOUNT:
        if (check_name(str, "name", 32, e) != 0)
            return cerr(x, &pos, s->name, "%s", e);
        break;
    case V_EMAIL:
        if (*str && check_email(str, e) != 0)
            return cerr(x, &pos, s->name, "%s", e);
        break;
    case V_HTTPS_URL:
        if (check_url(str, 1, e) != 0)
            return cerr(x, &pos, s->name, "%s", e);
        break;
    case V_URL:
        if (*str && check_url(str, 0, e) != 0)
            return cerr(x, &pos, s->name, "%s", e);
        break;
    case V_HOSTNAME:
        if (*str && check_charset(str, ".-:[]_", "host name", e) != 0)
            return cerr(x, &pos, s->name, "%s", e);
        break;
    case V_ENVNAME:
        if (*str && isdigit((unsigned char)*str))
            return cerr(x, &pos, s->name, "environment variable name '%s' starts with a digit",
                        show(str, gb, sizeof(gb)));
        if (*str && check_charset(str, "_", "environment variable name", e) != 0)
            return cerr(x, &pos, s->name, "%s", e);
        break;
    case V_LISTEN:
        if (!*str)
            return cerr(x, &pos, s->name, "is empty; give a port or address:port");
        if (check_charset(str, ".:[]_ -", "listen address", e) != 0)
            return cerr(x, &pos, s->name, "%s", e);
        break;
    case V_ROOT: {
        size_t len = strlen(str);
        if (*str && cf_config_check_path(str, "certfleet_host_root", e) != 0)
            return cerr(x, &pos, s->name, "%s", e);
        while (len > 0 && str[len - 1] == '/')
            str[--len] = 0;
        break;
    }
    default:
        break;
    }
    return 0;
}

/* ---- certbot_domains / certbot_services ----------------------------- */

static int check_entry_keys(struct ctx *x, const json_t *entry, const char *subject,
                            const char *const *known, size_t n_known)
{
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)entry, k, v)
    {
        size_t i;
        for (i = 0; i < n_known; i++)
            if (!strcmp(k, known[i]))
                break;
        if (i < n_known)
            continue;
        char dym[128], kb[200], list[256] = "";
        struct cf_pos pos;
        cf_vars_member_pos(entry, k, &pos);
        did_you_mean(k, known, n_known, dym, sizeof(dym));
        for (i = 0; i < n_known; i++)
            snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", i ? ", " : "",
                     known[i]);
        return cerr(x, &pos, subject, "unknown key '%s'%s (known keys: %s)",
                    show(k, kb, sizeof(kb)), dym, list);
    }
    return 0;
}

static void entry_pos(struct ctx *x, const char *var, const json_t *list, size_t i,
                      struct cf_pos *out)
{
    if (cf_vars_item_pos(list, i, out) != 0)
        *out = var_pos(x, var);
}

/* A member of an entry as a string, or an error naming it. */
static int entry_str(struct ctx *x, const json_t *entry, const char *key, const char *subject,
                     int required, char **out)
{
    char gb[300], sub[160];
    const json_t *v = json_object_get(entry, key);
    struct cf_pos pos;
    *out = NULL;
    snprintf(sub, sizeof(sub), "%s.%s", subject, key);
    if (!v || json_is_null(v)) {
        if (required) {
            cf_vars_pos(entry, &pos);
            return cerr(x, &pos, subject, "missing '%s'", key);
        }
        return 0;
    }
    cf_vars_member_pos(entry, key, &pos);
    if (!(v = resolve(x, v, &pos, sub)))
        return CF_EINVAL;
    if (!(*out = to_str(v)))
        return cerr(x, &pos, sub, "expected a string, %s", got(v, gb, sizeof(gb)));
    return 0;
}

static int parse_cert_entry(struct ctx *x, struct cf_host_config *c, const json_t *list, size_t idx,
                            struct cf_cert_entry *ce)
{
    char sub[96], sub2[160], gb[300], e[CF_ERRLEN];
    const json_t *entry = json_array_get(list, idx);
    struct cf_pos pos;
    char *s = NULL;
    int rc;

    snprintf(sub, sizeof(sub), "certbot_domains[%zu]", idx);
    entry_pos(x, "certbot_domains", list, idx, &ce->pos);
    if (!json_is_object(entry))
        return cerr(x, &ce->pos, sub,
                    "expected a mapping with 'domains' (and optionally cert_name, webroot), %s",
                    got(entry, gb, sizeof(gb)));
    if ((rc = check_entry_keys(x, entry, sub, domain_keys,
                               sizeof(domain_keys) / sizeof(domain_keys[0]))) != 0)
        return rc;

    /* per-entry overrides first: the domain rules depend on the challenge */
    ce->challenge = c->challenge;
    ce->key_type = c->key_type;
    ce->key_size = c->key_size;
    if ((rc = entry_str(x, entry, "challenge", sub, 0, &s)) != 0)
        return rc;
    if (s) {
        cf_vars_member_pos(entry, "challenge", &pos);
        snprintf(sub2, sizeof(sub2), "%s.challenge", sub);
        rc = parse_challenge(s, &ce->challenge);
        if (!rc && ce->challenge == CF_CHALLENGE_DNS01 && !x->dns_pos.file)
            x->dns_pos = pos;
        if (rc)
            cerr(x, &pos, sub2, "unknown challenge '%s'; use 'http-01' or 'dns-01'",
                 show(s, gb, sizeof(gb)));
        free(s);
        if (rc)
            return CF_EINVAL;
    }
    if ((rc = entry_str(x, entry, "key_type", sub, 0, &s)) != 0)
        return rc;
    if (s) {
        cf_vars_member_pos(entry, "key_type", &pos);
        snprintf(sub2, sizeof(sub2), "%s.key_type", sub);
        rc = parse_key_type(s, &ce->key_type);
        if (rc)
            cerr(x, &pos, sub2, "unknown key type '%s'; use 'ecdsa' or 'rsa'",
                 show(s, gb, sizeof(gb)));
        free(s);
        if (rc)
            return CF_EINVAL;
        /* a new type without a size takes that type's default size */
        if (!json_object_get(entry, "key_size") && ce->key_type != c->key_type)
            ce->key_size = 0;
    }
    if (json_object_get(entry, "key_size")) {
        const json_t *v = json_object_get(entry, "key_size");
        cf_vars_member_pos(entry, "key_size", &pos);
        snprintf(sub2, sizeof(sub2), "%s.key_size", sub);
        if (to_key_size(v, &ce->key_size) != 0)
            return cerr(x, &pos, sub2, "expected a key size in bits, %s", got(v, gb, sizeof(gb)));
        if (check_key(ce->key_type, &ce->key_size, e) != 0)
            return cerr(x, &pos, sub2, "%s", e);
    } else if (check_key(ce->key_type, &ce->key_size, e) != 0) {
        struct cf_pos kp = json_object_get(entry, "key_type") ? (struct cf_pos){0} : ce->pos;
        if (json_object_get(entry, "key_type"))
            cf_vars_member_pos(entry, "key_type", &kp);
        return cerr(x, &kp, sub, "%s", e);
    }

    /* domains */
    const json_t *doms = json_object_get(entry, "domains");
    snprintf(sub2, sizeof(sub2), "%s.domains", sub);
    if (!doms) {
        return cerr(x, &ce->pos, sub, "missing 'domains' (a list of names to certify)");
    }
    cf_vars_member_pos(entry, "domains", &pos);
    if (!(doms = resolve(x, doms, &pos, sub2)))
        return CF_EINVAL;
    if (!json_is_array(doms))
        return cerr(x, &pos, sub2, "expected a list of domain names, %s",
                    got(doms, gb, sizeof(gb)));
    if (json_array_size(doms) == 0)
        return cerr(x, &pos, sub2, "is empty; list at least one domain name");
    if (json_array_size(doms) > 100)
        return cerr(x, &pos, sub2, "has %zu names; a certificate holds at most 100",
                    json_array_size(doms));
    ce->domains = cf_xcalloc(json_array_size(doms), sizeof(char *));
    for (size_t i = 0; i < json_array_size(doms); i++) {
        const json_t *d = json_array_get(doms, i);
        struct cf_pos dp;
        char sub3[200];
        if (cf_vars_item_pos(doms, i, &dp) != 0)
            dp = pos;
        snprintf(sub3, sizeof(sub3), "%s[%zu]", sub2, i);
        if (!(d = resolve(x, d, &dp, sub3)))
            return CF_EINVAL;
        if (!json_is_string(d))
            return cerr(x, &dp, sub3, "expected a domain name (a string), %s",
                        got(d, gb, sizeof(gb)));
        if (cf_config_check_domain(json_string_value(d), ce->challenge == CF_CHALLENGE_DNS01, e) !=
            0)
            return cerr(x, &dp, sub3, "%s", e);
        char *low = cf_strdup(json_string_value(d));
        for (char *p = low; *p; p++)
            *p = (char)tolower((unsigned char)*p);
        size_t j;
        for (j = 0; j < ce->n_domains; j++)
            if (!strcmp(ce->domains[j], low))
                break;
        if (j < ce->n_domains)
            free(low); /* listed twice: certbot keeps one, so do we */
        else
            ce->domains[ce->n_domains++] = low;
    }

    /* cert_name */
    if ((rc = entry_str(x, entry, "cert_name", sub, 0, &ce->cert_name)) != 0)
        return rc;
    if (ce->cert_name) {
        cf_vars_member_pos(entry, "cert_name", &pos);
        snprintf(sub2, sizeof(sub2), "%s.cert_name", sub);
        if (check_name(ce->cert_name, "cert_name", MAX_NAME, e) != 0)
            return cerr(x, &pos, sub2, "%s", e);
    } else {
        const char *first = ce->domains[0];
        ce->cert_name = cf_strdup(!strncmp(first, "*.", 2) ? first + 2 : first);
    }

    /* webroot */
    if ((rc = entry_str(x, entry, "webroot", sub, 0, &s)) != 0)
        return rc;
    if (s) {
        cf_vars_member_pos(entry, "webroot", &pos);
        snprintf(sub2, sizeof(sub2), "%s.webroot", sub);
        if (cf_config_check_path(s, "webroot", e) != 0) {
            free(s);
            return cerr(x, &pos, sub2, "%s", e);
        }
        rc = make_path(x, &pos, sub2, c->host_root, s, &ce->webroot);
        free(s);
        if (rc)
            return rc;
    } else {
        ce->webroot.raw = cf_strdup(c->webroot.raw);
        ce->webroot.path = cf_strdup(c->webroot.path);
    }
    return 0;
}

static int parse_service(struct ctx *x, const json_t *list, size_t idx, struct cf_service *sv)
{
    char sub[96], sub2[160], gb[300], e[CF_ERRLEN];
    const json_t *entry = json_array_get(list, idx);
    struct cf_pos pos;
    int rc;

    snprintf(sub, sizeof(sub), "certbot_services[%zu]", idx);
    entry_pos(x, "certbot_services", list, idx, &sv->pos);
    if (!json_is_object(entry))
        return cerr(x, &sv->pos, sub, "expected a mapping with 'name' and 'cert_source', %s",
                    got(entry, gb, sizeof(gb)));
    if ((rc = check_entry_keys(x, entry, sub, service_keys,
                               sizeof(service_keys) / sizeof(service_keys[0]))) != 0)
        return rc;
    if ((rc = entry_str(x, entry, "name", sub, 1, &sv->name)) != 0)
        return rc;
    cf_vars_member_pos(entry, "name", &pos);
    snprintf(sub2, sizeof(sub2), "%s.name", sub);
    if (check_name(sv->name, "service name", MAX_NAME, e) != 0)
        return cerr(x, &pos, sub2, "%s", e);
    if ((rc = entry_str(x, entry, "cert_source", sub, 1, &sv->cert_source)) != 0)
        return rc;
    return 0;
}

static int parse_lists(struct ctx *x, struct cf_host_config *c)
{
    char gb[300], e[CF_ERRLEN];
    const json_t *doms = cf_config_var(c, "certbot_domains");
    const json_t *svcs = cf_config_var(c, "certbot_services");
    struct cf_pos pos;
    int rc;

    pos = var_pos(x, "certbot_domains");
    if (doms && !(doms = resolve(x, doms, &pos, "certbot_domains")))
        return CF_EINVAL;
    pos = var_pos(x, "certbot_services");
    if (svcs && !(svcs = resolve(x, svcs, &pos, "certbot_services")))
        return CF_EINVAL;
    if (json_is_null(doms))
        doms = NULL;
    if (json_is_null(svcs))
        svcs = NULL;
    if (doms && !json_is_array(doms)) {
        pos = var_pos(x, "certbot_domains");
        return cerr(x, &pos, "certbot_domains",
                    "expected a list of entries ('- domains: [...]'), %s",
                    got(doms, gb, sizeof(gb)));
    }
    if (svcs && !json_is_array(svcs)) {
        pos = var_pos(x, "certbot_services");
        return cerr(x, &pos, "certbot_services", "expected a list of entries ('- name: ...'), %s",
                    got(svcs, gb, sizeof(gb)));
    }
    size_t nd = doms ? json_array_size(doms) : 0, ns = svcs ? json_array_size(svcs) : 0;
    c->certs = cf_xcalloc(nd ? nd : 1, sizeof(*c->certs));
    c->services = cf_xcalloc(ns ? ns : 1, sizeof(*c->services));
    for (size_t i = 0; i < nd; i++) {
        struct cf_cert_entry *ce = &c->certs[c->n_certs++];
        if ((rc = parse_cert_entry(x, c, doms, i, ce)) != 0)
            return rc;
        for (size_t j = 0; j + 1 < c->n_certs; j++) {
            if (strcmp(c->certs[j].cert_name, ce->cert_name))
                continue;
            char pb[300] = "";
            if (c->certs[j].pos.file)
                snprintf(pb, sizeof(pb), " (%s:%d:%d)", c->certs[j].pos.file, c->certs[j].pos.line,
                         c->certs[j].pos.col);
            snprintf(e, sizeof(e), "certbot_domains[%zu]", i);
            return cerr(x, &ce->pos, e,
                        "cert_name '%s' is already used by certbot_domains[%zu]%s; merge the "
                        "two entries or give one another cert_name",
                        ce->cert_name, j, pb);
        }
    }
    for (size_t i = 0; i < ns; i++) {
        struct cf_service *sv = &c->services[c->n_services++];
        if ((rc = parse_service(x, svcs, i, sv)) != 0)
            return rc;
        char sub[96];
        snprintf(sub, sizeof(sub), "certbot_services[%zu]", i);
        for (size_t j = 0; j + 1 < c->n_services; j++) {
            if (strcmp(c->services[j].name, sv->name))
                continue;
            char pb[300] = "";
            if (c->services[j].pos.file)
                snprintf(pb, sizeof(pb), " (%s:%d:%d)", c->services[j].pos.file,
                         c->services[j].pos.line, c->services[j].pos.col);
            return cerr(x, &sv->pos, sub,
                        "duplicate service name '%s' on host '%s', first at "
                        "certbot_services[%zu]%s; service names must be unique per host",
                        sv->name, c->name, j, pb);
        }
        size_t j;
        for (j = 0; j < c->n_certs; j++)
            if (!strcmp(c->certs[j].cert_name, sv->cert_source))
                break;
        if (j == c->n_certs) {
            const char **names = cf_xcalloc(c->n_certs + 1, sizeof(char *));
            char known[512] = "", dym[128], sb[300];
            for (j = 0; j < c->n_certs; j++) {
                names[j] = c->certs[j].cert_name;
                snprintf(known + strlen(known), sizeof(known) - strlen(known), "%s'%s'",
                         j ? ", " : "", names[j]);
            }
            did_you_mean(sv->cert_source, names, c->n_certs, dym, sizeof(dym));
            free(names);
            const json_t *entry = json_array_get(svcs, i);
            cf_vars_member_pos(entry, "cert_source", &pos);
            char sub2[160];
            snprintf(sub2, sizeof(sub2), "%s.cert_source", sub);
            return cerr(x, &pos, sub2,
                        "service '%s' on host '%s': unknown cert_source '%s'%s (cert_names of "
                        "this host's certbot_domains: %s)",
                        sv->name, c->name, show(sv->cert_source, sb, sizeof(sb)), dym,
                        c->n_certs ? known : "none");
        }
    }
    return 0;
}

/* ---- connection ----------------------------------------------------- */

/* A connection variable (or its older ansible_ssh_* alias), rendered;
 * NULL when unset or when rendering failed (then *failed is set). */
static const json_t *conn_var(struct ctx *x, const char *name, const char *alias,
                              const char **which, int *failed)
{
    const json_t *v = json_object_get(x->hv, name);
    struct cf_pos pos;
    *which = name;
    if (!v && alias && (v = json_object_get(x->hv, alias)))
        *which = alias;
    if (!v)
        return NULL;
    cf_vars_member_pos(x->hv, *which, &pos);
    if (!(v = resolve(x, v, &pos, *which)))
        *failed = 1;
    return json_is_null(v) ? NULL : v;
}

static int parse_connection(struct ctx *x, struct cf_host_config *c)
{
    char gb[300], e[CF_ERRLEN];
    const char *which;
    const json_t *v;
    struct cf_pos pos;
    long long n;
    int failed = 0;

    if ((v = conn_var(x, "ansible_host", "ansible_ssh_host", &which, &failed))) {
        cf_vars_member_pos(x->hv, which, &pos);
        if (!(c->address = to_str(v)) || !*c->address)
            return cerr(x, &pos, which, "expected a host name or address, %s",
                        got(v, gb, sizeof(gb)));
        if (check_charset(c->address, ".-:[]_%", "address", e) != 0)
            return cerr(x, &pos, which, "%s", e);
    } else {
        c->address = cf_strdup(c->name);
    }
    c->port = 22;
    if (failed)
        return CF_EINVAL;
    if ((v = conn_var(x, "ansible_port", "ansible_ssh_port", &which, &failed))) {
        cf_vars_member_pos(x->hv, which, &pos);
        if (to_int(v, &n) != 0)
            return cerr(x, &pos, which, "expected a port number, %s", got(v, gb, sizeof(gb)));
        if (n < 1 || n > 65535)
            return cerr(x, &pos, which, "%lld is out of range; use 1 to 65535", n);
        c->port = (int)n;
    }
    if (failed)
        return CF_EINVAL;
    if ((v = conn_var(x, "ansible_user", "ansible_ssh_user", &which, &failed))) {
        cf_vars_member_pos(x->hv, which, &pos);
        if (!(c->user = to_str(v)))
            return cerr(x, &pos, which, "expected a user name, %s", got(v, gb, sizeof(gb)));
        if (*c->user && check_name(c->user, "user name", 32, e) != 0)
            return cerr(x, &pos, which, "%s", e);
        if (!*c->user) {
            free(c->user);
            c->user = NULL;
        }
    }
    if (failed)
        return CF_EINVAL;
    if ((v = conn_var(x, "ansible_ssh_private_key_file", "ansible_private_key_file", &which,
                      &failed))) {
        cf_vars_member_pos(x->hv, which, &pos);
        if (!json_is_string(v))
            return cerr(x, &pos, which, "expected a file name, %s", got(v, gb, sizeof(gb)));
        if (*json_string_value(v))
            c->private_key_file = cf_strdup(json_string_value(v));
    }
    if (failed)
        return CF_EINVAL;
    if ((v = conn_var(x, "ansible_become", NULL, &which, &failed))) {
        cf_vars_member_pos(x->hv, which, &pos);
        if (to_bool(v, &c->become) != 0)
            return cerr(x, &pos, which, "expected true or false, %s", got(v, gb, sizeof(gb)));
    }
    return failed ? CF_EINVAL : 0;
}

/* ---- the host ------------------------------------------------------- */

static int check_unknown_vars(struct ctx *x)
{
    const char *k;
    const json_t *v;
    const char *names[N_SPEC];
    for (size_t i = 0; i < N_SPEC; i++)
        names[i] = vars_spec[i].name;
    json_object_foreach((json_t *)x->hv, k, v)
    {
        if (strncmp(k, "certbot_", 8) && strncmp(k, "certfleet_", 10))
            continue;
        size_t i;
        for (i = 0; i < N_SPEC; i++)
            if (!strcmp(k, vars_spec[i].name))
                break;
        if (i < N_SPEC)
            continue;
        char dym[128], kb[200];
        struct cf_pos pos;
        cf_vars_member_pos(x->hv, k, &pos);
        did_you_mean(k, names, N_SPEC, dym, sizeof(dym));
        return cerr(x, &pos, NULL,
                    "unknown variable '%s'%s (see roles/certbot/defaults/main.yml for the "
                    "variables certfleet reads)",
                    show(k, kb, sizeof(kb)), dym);
    }
    return 0;
}

int cf_config_host(const char *host, const json_t *hostvars, struct cf_host_config **out, char *err)
{
    struct ctx x = {host, hostvars, err, NULL, NULL, {0}};
    struct cf_host_config *c = NULL;
    char e[CF_ERRLEN];
    int rc;

    *out = NULL;
    if (!host || !json_is_object(hostvars))
        return cf_errf(err, "host '%s': variables are not a mapping", host ? host : "?");
    if (!cf_config_defaults())
        return cf_errf(err, "compiled-in role defaults do not parse; rebuild certfleet");

    c = cf_xcalloc(1, sizeof(*c));
    c->name = cf_strdup(host);
    c->hostvars = hostvars;

    if ((rc = check_unknown_vars(&x)) != 0)
        goto out;
    if ((rc = parse_connection(&x, c)) != 0)
        goto out;
    /* the root first: every path is joined with it */
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < N_SPEC; i++) {
            const struct var_spec *s = &vars_spec[i];
            if ((s->kind == V_ROOT) != (pass == 0))
                continue;
            const json_t *v = cf_config_var(c, s->name);
            struct cf_pos vp = var_pos(&x, s->name);
            if (!v) /* a default missing from the table is a build bug */
                v = json_null();
            if (!(v = resolve(&x, v, &vp, s->name))) {
                rc = CF_EINVAL;
                goto out;
            }
            if ((rc = set_var(&x, c, s, v)) != 0)
                goto out;
        }
    }
    {
        struct cf_pos pos = var_pos(&x, "certbot_key_size");
        if (check_key(c->key_type, &c->key_size, e) != 0) {
            rc = cerr(&x, &pos, "certbot_key_size", "%s", e);
            goto out;
        }
    }
    if ((rc = parse_lists(&x, c)) != 0)
        goto out;
    {
        int dns = c->challenge == CF_CHALLENGE_DNS01;
        for (size_t i = 0; i < c->n_certs; i++)
            dns |= c->certs[i].challenge == CF_CHALLENGE_DNS01;
        if (dns && c->enabled && !*c->dns_hook) {
            /* point at what the user wrote: the empty hook, else the
             * dns-01 that needs it */
            struct cf_pos pos = var_pos(&x, "certbot_dns_hook");
            if (!user_set(&x, "certbot_dns_hook"))
                pos = c->challenge == CF_CHALLENGE_DNS01 || !x.dns_pos.file
                          ? var_pos(&x, "certbot_challenge")
                          : x.dns_pos;
            rc = cerr(&x, &pos, "certbot_dns_hook",
                      "the dns-01 challenge needs a hook command; set certbot_dns_hook");
            goto out;
        }
    }
    if (!*c->eab_kid != !*c->eab_hmac_key) {
        const char *set = *c->eab_kid ? "certbot_eab_kid" : "certbot_eab_hmac_key";
        struct cf_pos pos = var_pos(&x, set);
        rc = cerr(&x, &pos, set,
                  "external account binding needs both certbot_eab_kid and "
                  "certbot_eab_hmac_key");
        goto out;
    }
    if (*c->notify_email && !*c->smtp_server) {
        struct cf_pos pos = var_pos(&x, "certbot_notify_email");
        rc = cerr(&x, &pos, "certbot_notify_email",
                  "e-mail alerts need an SMTP server; set certbot_smtp_server");
        goto out;
    }
    rc = 0;
out:
    json_decref(x.tvars);
    json_decref(x.rendered);
    if (rc) {
        cf_config_host_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

static void free_path(struct cf_cfg_path *p)
{
    free(p->path);
    free(p->raw);
}

void cf_config_host_free(struct cf_host_config *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < N_SPEC; i++) {
        const struct var_spec *s = &vars_spec[i];
        void *field = (char *)c + s->off;
        switch (s->kind) {
        case V_BOOL:
        case V_INT:
        case V_KEYSIZE:
        case V_LIST:
        case V_KEYTYPE:
        case V_CHALLENGE:
            break;
        case V_PATH:
            free_path(field);
            break;
        default:
            if (s->off == F(eab_hmac_key) && c->eab_hmac_key)
                OPENSSL_cleanse(c->eab_hmac_key, strlen(c->eab_hmac_key));
            free(*(char **)field);
        }
    }
    /* key type and challenge strings are parsed in place, not kept */
    for (size_t i = 0; i < c->n_certs; i++) {
        struct cf_cert_entry *ce = &c->certs[i];
        free(ce->cert_name);
        for (size_t j = 0; j < ce->n_domains; j++)
            free(ce->domains[j]);
        free(ce->domains);
        free_path(&ce->webroot);
    }
    free(c->certs);
    for (size_t i = 0; i < c->n_services; i++) {
        free(c->services[i].name);
        free(c->services[i].cert_source);
    }
    free(c->services);
    free(c->name);
    free(c->address);
    free(c->user);
    free(c->private_key_file);
    free(c);
}

/* ---- the fleet ------------------------------------------------------ */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int cmp_cert(const void *a, const void *b)
{
    return strcmp(((const struct cf_fleet_cert *)a)->cert_name,
                  ((const struct cf_fleet_cert *)b)->cert_name);
}

/* "a.example.com, b.example.com" sorted, for comparing and for messages. */
static char *domain_set(const struct cf_cert_entry *ce)
{
    char **tmp = cf_xcalloc(ce->n_domains ? ce->n_domains : 1, sizeof(char *));
    struct cf_buf b = CF_BUF_INIT;
    memcpy(tmp, ce->domains, ce->n_domains * sizeof(char *));
    qsort(tmp, ce->n_domains, sizeof(char *), cmp_str);
    for (size_t i = 0; i < ce->n_domains; i++)
        cf_buf_printf(&b, "%s%s", i ? ", " : "", tmp[i]);
    free(tmp);
    return cf_buf_detach(&b, NULL);
}

static void pos_text(const struct cf_pos *p, char *buf, size_t cap)
{
    if (p->file)
        snprintf(buf, cap, " (%s:%d:%d)", p->file, p->line, p->col);
    else
        buf[0] = 0;
}

/* Two hosts disagree about one certificate: name both, with positions. */
static int conflict(char *err, const struct cf_fleet_cert *fc, const struct cf_cert_entry *ce,
                    const struct cf_host_config *h, const char *what, const char *mine,
                    const char *theirs)
{
    char pb[300];
    pos_text(&fc->entries[0]->pos, pb, sizeof(pb));
    return cf_pos_errf(err, &ce->pos,
                       "certificate '%s' has %s [%s] on host '%s' but [%s] on host '%s'%s; "
                       "one cert_name is one certificate: make them equal or use another "
                       "cert_name",
                       ce->cert_name, what, mine, h->name, theirs, fc->hosts[0]->name, pb);
}

int cf_config_fleet(struct cf_host_config **hosts, size_t n, struct cf_fleet **out, char *err)
{
    struct cf_fleet *f = NULL;
    json_t *index = NULL;
    size_t cap = 0;
    int rc = 0;

    *out = NULL;
    if (n == 0) {
        cf_errf(err, "no hosts selected; check the inventory and the limit (-l)");
        return CF_ENOENT;
    }
    f = cf_xcalloc(1, sizeof(*f));
    f->hosts = cf_xcalloc(n, sizeof(*f->hosts));
    memcpy(f->hosts, hosts, n * sizeof(*hosts));
    f->n_hosts = n;
    index = json_object();

    for (size_t h = 0; h < n; h++) {
        struct cf_host_config *hc = hosts[h];
        if (!hc->enabled)
            continue;
        for (size_t i = 0; i < hc->n_certs; i++) {
            const struct cf_cert_entry *ce = &hc->certs[i];
            json_t *ix = json_object_get(index, ce->cert_name);
            struct cf_fleet_cert *fc;
            if (!ix) {
                if (f->n_certs == cap) {
                    cap = cap ? cap * 2 : 16;
                    f->certs = cf_xrealloc(f->certs, cap * sizeof(*f->certs));
                }
                fc = &f->certs[f->n_certs];
                memset(fc, 0, sizeof(*fc));
                fc->cert_name = ce->cert_name;
                fc->domains = cf_xcalloc(ce->n_domains, sizeof(char *));
                memcpy(fc->domains, ce->domains, ce->n_domains * sizeof(char *));
                fc->n_domains = ce->n_domains;
                fc->key_type = ce->key_type;
                fc->key_size = ce->key_size;
                fc->challenge = ce->challenge;
                fc->acme_server = hc->acme_server;
                fc->hosts = cf_xcalloc(n, sizeof(*fc->hosts));
                fc->entries = cf_xcalloc(n, sizeof(*fc->entries));
                json_object_set_new(index, ce->cert_name, json_integer((json_int_t)f->n_certs));
                f->n_certs++;
            } else {
                fc = &f->certs[json_integer_value(ix)];
                const struct cf_cert_entry *first = fc->entries[0];
                char *a = domain_set(ce), *b = domain_set(first);
                int differ = strcmp(a, b) != 0;
                if (differ)
                    rc = conflict(err, fc, ce, hc, "domains", a, b);
                free(a);
                free(b);
                if (differ)
                    goto out;
                char m[64], t[64];
                if (ce->key_type != fc->key_type || ce->key_size != fc->key_size) {
                    snprintf(m, sizeof(m), "%s %d", cf_key_type_name(ce->key_type), ce->key_size);
                    snprintf(t, sizeof(t), "%s %d", cf_key_type_name(fc->key_type), fc->key_size);
                    rc = conflict(err, fc, ce, hc, "key", m, t);
                    goto out;
                }
                if (ce->challenge != fc->challenge) {
                    rc = conflict(err, fc, ce, hc, "challenge", cf_challenge_name(ce->challenge),
                                  cf_challenge_name(fc->challenge));
                    goto out;
                }
                if (strcmp(hc->acme_server, fc->acme_server)) {
                    rc = conflict(err, fc, ce, hc, "ACME server", hc->acme_server, fc->acme_server);
                    goto out;
                }
            }
            fc->hosts[fc->n_hosts] = hc;
            fc->entries[fc->n_hosts] = ce;
            fc->n_hosts++;
        }
    }
    if (f->n_certs)
        qsort(f->certs, f->n_certs, sizeof(*f->certs), cmp_cert);
out:
    json_decref(index);
    if (rc) {
        cf_fleet_free(f);
        return rc;
    }
    *out = f;
    return 0;
}

void cf_fleet_free(struct cf_fleet *f)
{
    if (!f)
        return;
    for (size_t i = 0; i < f->n_certs; i++) {
        free(f->certs[i].domains);
        free(f->certs[i].hosts);
        free(f->certs[i].entries);
    }
    free(f->certs);
    free(f->hosts);
    free(f);
}

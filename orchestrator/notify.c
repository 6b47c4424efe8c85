/*
 * notify.c - per-run alerts: collect, format as the seed guide does, send
 * by SMTP (libcurl easy handle on the shared multi) and webhook (see
 * notify.h).
 */
#include "notify.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#define MAX_ERROR_OUTPUT (16 * 1024)
#define EN_DASH          "\xe2\x80\x93"

struct cf_notify {
    struct cf_notify_event *ev;
    size_t n, cap;
    /* one send at a time */
    struct send *sending;
};

cf_notify *cf_notify_new(void)
{
    return cf_xcalloc(1, sizeof(struct cf_notify));
}

void cf_notify_free(cf_notify *n)
{
    if (!n)
        return;
    for (size_t i = 0; i < n->n; i++)
        free(n->ev[i].error_output);
    free(n->ev);
    free(n);
}

static struct cf_notify_event *add(cf_notify *n, enum cf_event_kind kind, const char *host,
                                   const char *domain, const char *cert, int64_t t)
{
    if (n->n == n->cap) {
        n->cap = n->cap ? 2 * n->cap : 8;
        n->ev = cf_xrealloc(n->ev, n->cap * sizeof *n->ev);
    }
    struct cf_notify_event *e = &n->ev[n->n++];
    memset(e, 0, sizeof *e);
    e->kind = kind;
    snprintf(e->host, sizeof e->host, "%s", host ? host : "");
    snprintf(e->domain, sizeof e->domain, "%s", domain ? domain : "");
    snprintf(e->cert_name, sizeof e->cert_name, "%s", cert ? cert : "");
    e->time = t ? t : (int64_t)time(NULL);
    return e;
}

void cf_notify_add_success(cf_notify *n, const char *host, const char *domain,
                           const char *cert_name, int64_t prev_expiry, int64_t new_expiry,
                           int reloaded, int64_t t)
{
    struct cf_notify_event *e = add(n, CF_EVENT_SUCCESS, host, domain, cert_name, t);
    e->prev_expiry = prev_expiry;
    e->new_expiry = new_expiry;
    e->reloaded = reloaded;
}

void cf_notify_add_error(cf_notify *n, const char *host, const char *domain, const char *cert_name,
                         int64_t current_expiry, const char *error_output, int failure,
                         const char *webroot, int64_t t)
{
    struct cf_notify_event *e = add(n, CF_EVENT_ERROR, host, domain, cert_name, t);
    const char *out = error_output ? error_output : "";
    size_t len = strlen(out);
    e->expiry = current_expiry;
    if (len > MAX_ERROR_OUTPUT) {
        /* Keep the end: that is where the reason usually is. */
        e->error_output = cf_asprintf("[... %zu bytes cut ...]\n%s", len - MAX_ERROR_OUTPUT,
                                      out + len - MAX_ERROR_OUTPUT);
    } else {
        e->error_output = cf_strdup(out);
    }
    e->failure = failure < 0 ? cf_notify_classify_failure(out) : (enum cf_failure_kind)failure;
    snprintf(e->webroot, sizeof e->webroot, "%s", webroot ? webroot : "");
}

void cf_notify_add_warning(cf_notify *n, const char *host, const char *domain,
                           const char *cert_name, int days, int64_t not_after, int64_t t)
{
    struct cf_notify_event *e = add(n, CF_EVENT_WARNING, host, domain, cert_name, t);
    e->days = days;
    e->expiry = not_after;
}

size_t cf_notify_count(const cf_notify *n)
{
    return n ? n->n : 0;
}

const struct cf_notify_event *cf_notify_event_at(const cf_notify *n, size_t i)
{
    return n && i < n->n ? &n->ev[i] : NULL;
}

static int has(const char *hay, const char *needle)
{
    return strcasestr(hay, needle) != NULL;
}

enum cf_failure_kind cf_notify_classify_failure(const char *s)
{
    if (!s)
        return CF_FAIL_OTHER;
    /* Order matters: an nginx failure message may mention a domain, a
     * rate-limit problem may mention DNS names. */
    if (has(s, "rateLimited") || has(s, "rate limit") || has(s, "too many certificates") ||
        has(s, "too many failed authorizations"))
        return CF_FAIL_RATE_LIMIT;
    if (has(s, "nginx -t") || has(s, "nginx: configuration file") || has(s, "test failed") ||
        has(s, "nginx: [emerg]"))
        return CF_FAIL_NGINX_TEST;
    if (has(s, "ssh") || has(s, "host key") || has(s, "authentication failed") ||
        has(s, "publickey"))
        return CF_FAIL_SSH;
    if (has(s, "NXDOMAIN") || has(s, "dns problem") || has(s, ":dns") ||
        has(s, "no valid A records") || has(s, "SERVFAIL") || has(s, "dns-01"))
        return CF_FAIL_DNS;
    if (has(s, "unauthorized") || has(s, "acme-challenge") || has(s, "incorrectResponse") ||
        has(s, "connection refused") || has(s, ":connection") || has(s, "http-01") ||
        has(s, "challenge"))
        return CF_FAIL_CHALLENGE;
    return CF_FAIL_OTHER;
}

/* ---- formatting ---------------------------------------------------- */

static void fmt_date(char *buf, size_t len, int64_t t)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (!t || !gmtime_r(&tt, &tm))
        snprintf(buf, len, "unknown");
    else
        strftime(buf, len, "%Y-%m-%d %H:%M:%S UTC", &tm);
}

static void fmt_iso(char *buf, size_t len, int64_t t)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (!gmtime_r(&tt, &tm))
        snprintf(buf, len, "unknown");
    else
        strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Whole days as certbot counts them (floor). */
static long days_until(int64_t now, int64_t then)
{
    int64_t d = then - now;
    return (long)(d >= 0 ? d / 86400 : -((-d + 86399) / 86400));
}

int cf_notify_event_subject(const struct cf_notify_event *e, struct cf_buf *out)
{
    switch (e->kind) {
    case CF_EVENT_SUCCESS:
        return cf_buf_printf(out, "[SUCCESS] %s " EN_DASH " Cert renewed for %s", e->host,
                             e->domain);
    case CF_EVENT_ERROR:
        return cf_buf_printf(out, "[ERROR] %s " EN_DASH " Cert renewal FAILED for %s", e->host,
                             e->domain);
    case CF_EVENT_WARNING:
        if (e->days < 0)
            return cf_buf_printf(out, "[WARNING] %s " EN_DASH " Certificate expired %d day%s ago",
                                 e->host, -e->days, e->days == -1 ? "" : "s");
        return cf_buf_printf(out, "[WARNING] %s " EN_DASH " Certificate expires in %d day%s",
                             e->host, e->days, e->days == 1 ? "" : "s");
    }
    return CF_EINVAL;
}

static int checklist(const struct cf_notify_event *e, struct cf_buf *o)
{
    const char *d = e->domain, *h = e->host;
    const char *webroot = e->webroot[0] ? e->webroot : "/var/www/letsencrypt";
    int rc = cf_buf_puts(o, "Manual intervention required. Check:\n");
    switch (e->failure) {
    case CF_FAIL_CHALLENGE:
        rc |= cf_buf_printf(o,
                            "1. Nginx is serving /.well-known/acme-challenge/ from %s on every "
                            "host of '%s' (snippet /etc/nginx/snippets/acme-challenge.conf "
                            "included in the port 80 server)\n"
                            "2. DNS for %s points to the hosts that serve it\n"
                            "3. Port 80 is reachable from the CA (firewall, security groups)\n"
                            "4. The CA's problem detail in the error output above\n\n"
                            "Troubleshooting commands:\n"
                            "curl -I http://%s/.well-known/acme-challenge/\n"
                            "ssh %s sudo nginx -t\n"
                            "certfleet status -i INVENTORY -l %s\n",
                            webroot, e->cert_name[0] ? e->cert_name : d, d, d, h, h);
        break;
    case CF_FAIL_DNS:
        rc |= cf_buf_printf(o,
                            "1. The DNS records for %s exist and point to the hosts that serve "
                            "it\n"
                            "2. Recent DNS changes have propagated (wait, then retry)\n"
                            "3. For DNS-01: the DNS hook's output above, and the "
                            "_acme-challenge TXT record\n\n"
                            "Troubleshooting commands:\n"
                            "dig +short A %s\n"
                            "dig +short AAAA %s\n"
                            "dig +short TXT _acme-challenge.%s\n",
                            d, d, d, d);
        break;
    case CF_FAIL_RATE_LIMIT:
        rc |= cf_buf_printf(o,
                            "1. Do not force renewals now: every attempt counts against the limit\n"
                            "2. Let's Encrypt allows 5 duplicate certificates per week and 50 "
                            "per registered domain per week; retry after the time the error "
                            "names\n"
                            "3. Duplicate certificates for the same names in the store\n\n"
                            "Troubleshooting commands:\n"
                            "certfleet certificates\n"
                            "certfleet plan -i INVENTORY -l %s\n",
                            h);
        break;
    case CF_FAIL_NGINX_TEST:
        rc |= cf_buf_printf(o,
                            "1. The nginx -t output above: the live links were swapped back, "
                            "the previous certificate is still served\n"
                            "2. Missing semicolons, wrong paths in ssl_certificate / "
                            "ssl_certificate_key, syntax errors in recent changes\n"
                            "3. The key matches the certificate (same type: EC or RSA)\n\n"
                            "Troubleshooting commands:\n"
                            "ssh %s sudo nginx -t\n"
                            "ssh %s ls -l /etc/nginx/certs/\n"
                            "ssh %s sudo journalctl -u nginx -n 50\n",
                            h, h, h);
        break;
    case CF_FAIL_SSH:
        rc |= cf_buf_printf(o,
                            "1. The host is up and sshd listens on ansible_port\n"
                            "2. Its host key is in known_hosts (and has not changed)\n"
                            "3. The key in ansible_ssh_private_key_file is accepted (Ed25519 or "
                            "ECDSA: RSA keys fail with libssh2 1.10 against OpenSSH >= 8.8)\n\n"
                            "Troubleshooting commands:\n"
                            "ssh -v %s true\n"
                            "ssh-keygen -F %s\n",
                            h, h);
        break;
    default:
        rc |= cf_buf_printf(o,
                            "1. Nginx is serving /.well-known/acme-challenge/ from %s\n"
                            "2. DNS correctly points to this server\n"
                            "3. Port 80 is accessible externally\n"
                            "4. certfleet's output: certfleet apply -i INVENTORY -l %s -v\n\n"
                            "Troubleshooting commands:\n"
                            "curl -I http://%s/.well-known/acme-challenge/\n"
                            "ssh %s sudo nginx -t\n"
                            "certfleet certificates\n",
                            webroot, h, d, h);
        break;
    }
    return rc;
}

int cf_notify_event_body(const struct cf_notify_event *e, int64_t now, struct cf_buf *o)
{
    char a[64], b[64], t[64];
    int rc = 0;
    fmt_iso(t, sizeof t, e->time);
    switch (e->kind) {
    case CF_EVENT_SUCCESS:
        fmt_date(b, sizeof b, e->new_expiry);
        rc |= cf_buf_printf(o, "Certificate for %s renewed successfully.\n\n", e->domain);
        if (e->prev_expiry) {
            fmt_date(a, sizeof a, e->prev_expiry);
            rc |= cf_buf_printf(o, "Previous expiry: %s (%ld days remaining)\n", a,
                                days_until(e->time, e->prev_expiry));
        } else {
            rc |= cf_buf_puts(o, "Previous expiry: none (first certificate)\n");
        }
        rc |= cf_buf_printf(o,
                            "New expiry: %s (~%ld days)\n"
                            "Cert name: %s\n"
                            "Host: %s\n"
                            "Renewed at: %s\n\n",
                            b, days_until(e->time, e->new_expiry), e->cert_name, e->host, t);
        rc |= cf_buf_puts(o, e->reloaded
                                 ? "Nginx has been reloaded with the new certificate.\n\n"
                                 : "Nginx was NOT reloaded: the new certificate is served after "
                                   "the next reload.\n\n");
        rc |= cf_buf_puts(o, "Action Required: None. This is a success confirmation.\n");
        break;
    case CF_EVENT_ERROR:
        rc |= cf_buf_printf(o, "Certificate renewal for %s FAILED.\n\n", e->domain);
        if (e->expiry) {
            fmt_date(a, sizeof a, e->expiry);
            rc |= cf_buf_printf(o, "Current expiry: %s (%ld days remaining)\n", a,
                                days_until(e->time ? e->time : now, e->expiry));
        } else {
            rc |= cf_buf_puts(o, "Current expiry: none (no certificate yet)\n");
        }
        rc |= cf_buf_printf(o,
                            "Cert name: %s\n"
                            "Host: %s\n"
                            "Renewal attempted at: %s\n\n"
                            "Error output:\n%s%s\n",
                            e->cert_name, e->host, t,
                            e->error_output && *e->error_output ? e->error_output : "(none)",
                            e->error_output && *e->error_output &&
                                    e->error_output[strlen(e->error_output) - 1] == '\n'
                                ? ""
                                : "\n");
        rc |= checklist(e, o);
        rc |= cf_buf_puts(o, "\nAction Required: Immediate investigation (see What To Do When "
                             "Things Go Wrong)\n");
        break;
    case CF_EVENT_WARNING:
        fmt_date(a, sizeof a, e->expiry);
        if (e->days < 0)
            rc |= cf_buf_printf(o, "The certificate for %s served by %s EXPIRED %d day%s ago.\n\n",
                                e->domain, e->host, -e->days, e->days == -1 ? "" : "s");
        else
            rc |= cf_buf_printf(o, "The certificate for %s served by %s expires in %d day%s.\n\n",
                                e->domain, e->host, e->days, e->days == 1 ? "" : "s");
        rc |= cf_buf_printf(o,
                            "Expiry: %s (%d days remaining)\n"
                            "Cert name: %s\n"
                            "Checked at: %s\n\n"
                            "Action Required: Renewal needed. Run 'certfleet apply -l %s' (or "
                            "renew by hand if certfleet does not manage this certificate).\n",
                            a, e->days, e->cert_name[0] ? e->cert_name : "-", t, e->host);
        break;
    }
    return rc ? CF_ENOMEM : 0;
}

static void count_kinds(const cf_notify *n, size_t c[3])
{
    c[0] = c[1] = c[2] = 0;
    for (size_t i = 0; i < n->n; i++)
        c[n->ev[i].kind]++;
}

int cf_notify_subject(const cf_notify *n, struct cf_buf *out)
{
    if (!n || n->n == 0)
        return cf_buf_puts(out, "[INFO] certfleet " EN_DASH " nothing to report");
    if (n->n == 1)
        return cf_notify_event_subject(&n->ev[0], out);
    size_t c[3];
    count_kinds(n, c);
    const char *tag = c[CF_EVENT_ERROR] ? "ERROR" : c[CF_EVENT_WARNING] ? "WARNING" : "SUCCESS";
    int rc = cf_buf_printf(out, "[%s] certfleet " EN_DASH " ", tag);
    const char *sep = "";
    if (c[CF_EVENT_ERROR]) {
        rc |= cf_buf_printf(out, "%zu renewal%s FAILED", c[0], c[0] == 1 ? "" : "s");
        sep = ", ";
    }
    if (c[CF_EVENT_SUCCESS]) {
        rc |= cf_buf_printf(out, "%s%zu cert%s renewed", sep, c[2], c[2] == 1 ? "" : "s");
        sep = ", ";
    }
    if (c[CF_EVENT_WARNING])
        rc |= cf_buf_printf(out, "%s%zu certificate%s expiring", sep, c[1], c[1] == 1 ? "" : "s");
    return rc ? CF_ENOMEM : 0;
}

/* Events most severe first, in the order they came within a kind. */
static size_t *ordered(const cf_notify *n)
{
    size_t *idx = cf_xcalloc(n->n ? n->n : 1, sizeof *idx), k = 0;
    for (int kind = CF_EVENT_ERROR; kind <= CF_EVENT_SUCCESS; kind++)
        for (size_t i = 0; i < n->n; i++)
            if ((int)n->ev[i].kind == kind)
                idx[k++] = i;
    return idx;
}

int cf_notify_body(const cf_notify *n, int64_t now, struct cf_buf *out)
{
    int rc = 0;
    if (!n || n->n == 0)
        return cf_buf_puts(out, "certfleet has nothing to report.\n");
    size_t *idx = ordered(n);
    if (n->n > 1) {
        struct cf_buf s = CF_BUF_INIT;
        rc |= cf_notify_subject(n, &s);
        rc |= cf_buf_printf(out, "certfleet run: %s\n\n", s.data ? s.data : "");
        cf_buf_release(&s);
        for (size_t k = 0; k < n->n; k++) {
            rc |= cf_buf_puts(out, "  * ");
            rc |= cf_notify_event_subject(&n->ev[idx[k]], out);
            rc |= cf_buf_puts(out, "\n");
        }
        rc |= cf_buf_puts(out, "\n");
    }
    for (size_t k = 0; k < n->n; k++) {
        if (n->n > 1) {
            rc |= cf_buf_puts(out, "======================================================"
                                   "==================\n");
            rc |= cf_notify_event_subject(&n->ev[idx[k]], out);
            rc |= cf_buf_puts(out, "\n\n");
        }
        rc |= cf_notify_event_body(&n->ev[idx[k]], now, out);
        if (n->n > 1)
            rc |= cf_buf_puts(out, "\n");
    }
    free(idx);
    return rc ? CF_ENOMEM : 0;
}

static const char *kind_name(enum cf_event_kind k)
{
    return k == CF_EVENT_ERROR ? "ERROR" : k == CF_EVENT_WARNING ? "WARNING" : "SUCCESS";
}

static const char *failure_name(enum cf_failure_kind f)
{
    switch (f) {
    case CF_FAIL_CHALLENGE:
        return "challenge";
    case CF_FAIL_DNS:
        return "dns";
    case CF_FAIL_RATE_LIMIT:
        return "rate_limit";
    case CF_FAIL_NGINX_TEST:
        return "nginx_test";
    case CF_FAIL_SSH:
        return "ssh";
    default:
        return "other";
    }
}

static json_t *jtime(int64_t t)
{
    char b[40];
    if (!t)
        return json_null();
    fmt_iso(b, sizeof b, t);
    return json_string(b);
}

char *cf_notify_json(const cf_notify *n, int64_t now)
{
    struct cf_buf s = CF_BUF_INIT, body = CF_BUF_INIT;
    json_t *root = json_object(), *evs = json_array();
    char *txt = NULL;
    cf_notify_subject(n, &s);
    cf_notify_body(n, now, &body);
    json_object_set_new(root, "source", json_string("certfleet"));
    json_object_set_new(root, "subject", json_string(s.data ? s.data : ""));
    json_object_set_new(root, "text", json_string(body.data ? body.data : ""));
    json_object_set_new(root, "generated_at", jtime(now));
    size_t *idx = ordered(n);
    for (size_t k = 0; n && k < n->n; k++) {
        const struct cf_notify_event *e = &n->ev[idx[k]];
        struct cf_buf es = CF_BUF_INIT;
        cf_notify_event_subject(e, &es);
        json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:o}", "type", kind_name(e->kind),
                              "subject", es.data ? es.data : "", "host", e->host, "domain",
                              e->domain, "cert_name", e->cert_name, "time", jtime(e->time));
        cf_buf_release(&es);
        if (!o)
            continue;
        if (e->kind == CF_EVENT_SUCCESS) {
            json_object_set_new(o, "previous_expiry", jtime(e->prev_expiry));
            json_object_set_new(o, "new_expiry", jtime(e->new_expiry));
            json_object_set_new(o, "nginx_reloaded", json_boolean(e->reloaded));
        } else if (e->kind == CF_EVENT_ERROR) {
            json_object_set_new(o, "current_expiry", jtime(e->expiry));
            json_object_set_new(o, "failure", json_string(failure_name(e->failure)));
            json_object_set_new(o, "error", json_string(e->error_output ? e->error_output : ""));
        } else {
            json_object_set_new(o, "expiry", jtime(e->expiry));
            json_object_set_new(o, "days_left", json_integer(e->days));
        }
        json_array_append_new(evs, o);
    }
    free(idx);
    json_object_set_new(root, "events", evs);
    txt = json_dumps(root, JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII);
    json_decref(root);
    cf_buf_release(&s);
    cf_buf_release(&body);
    return txt ? txt : cf_strdup("{}");
}

/* ---- configuration -------------------------------------------------- */

static int get_str(const json_t *vars, const char *key, const char **out, char *err)
{
    const json_t *v = json_object_get(vars, key);
    *out = NULL;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v))
        return cf_errf(err, "variable '%s' must be a string", key);
    *out = *json_string_value(v) ? json_string_value(v) : NULL;
    return 0;
}

int cf_notify_config_from_vars(const json_t *vars, struct cf_notify_config *cfg, char *err)
{
    int rc;
    memset(cfg, 0, sizeof *cfg);
    if (!vars || !json_is_object(vars))
        return 0;
    if (json_object_get(vars, "certbot_smtp_password"))
        return cf_errf(err, "variable 'certbot_smtp_password' is refused: never keep the SMTP "
                            "password in the inventory; put it in an environment variable and "
                            "name that variable in 'certbot_smtp_password_env'");
    if ((rc = get_str(vars, "certbot_notify_email", &cfg->to, err)) ||
        (rc = get_str(vars, "certbot_notify_from", &cfg->from, err)) ||
        (rc = get_str(vars, "certbot_smtp_server", &cfg->smtp_server, err)) ||
        (rc = get_str(vars, "certbot_smtp_user", &cfg->smtp_user, err)) ||
        (rc = get_str(vars, "certbot_smtp_password_env", &cfg->smtp_password_env, err)) ||
        (rc = get_str(vars, "certbot_smtp_ca_bundle", &cfg->smtp_ca_bundle, err)) ||
        (rc = get_str(vars, "certbot_notify_webhook", &cfg->webhook_url, err)))
        return rc;
    const json_t *v = json_object_get(vars, "certbot_smtp_port");
    if (v && !json_is_null(v)) {
        long port = -1;
        if (json_is_integer(v))
            port = (long)json_integer_value(v);
        else if (json_is_string(v) && *json_string_value(v))
            port = strtol(json_string_value(v), NULL, 10);
        if (port <= 0 || port > 65535)
            return cf_errf(err, "variable 'certbot_smtp_port' must be a port number (1-65535)");
        cfg->smtp_port = (int)port;
    }
    v = json_object_get(vars, "certbot_smtp_starttls");
    if (v && !json_is_null(v)) {
        if (json_is_boolean(v))
            cfg->smtp_starttls = json_is_true(v) ? 1 : 0;
        else if (json_is_string(v) && !strcasecmp(json_string_value(v), "tls"))
            cfg->smtp_starttls = 2;
        else
            return cf_errf(err, "variable 'certbot_smtp_starttls' must be true, false or "
                                "\"tls\" (implicit TLS, port 465)");
    }
    v = json_object_get(vars, "certbot_notify_timeout");
    if (v && json_is_integer(v) && json_integer_value(v) > 0)
        cfg->timeout_ms = (long)json_integer_value(v) * 1000;
    return 0;
}

/* ---- the mail -------------------------------------------------------- */

/* RFC 2047 encoded words of at most 45 input bytes each (75 chars with
 * the wrapper), split on UTF-8 character boundaries, folded. */
static int encode_subject(const char *s, struct cf_buf *out)
{
    int ascii = 1;
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p >= 0x80 || (unsigned char)*p < 0x20)
            ascii = 0;
    if (ascii && strlen(s) < 900)
        return cf_buf_puts(out, s);
    int rc = 0;
    size_t len = strlen(s), pos = 0;
    while (pos < len && !rc) {
        size_t take = len - pos > 45 ? 45 : len - pos;
        while (pos + take < len && take > 0 && ((unsigned char)s[pos + take] & 0xC0) == 0x80)
            take--;
        char *b64 = cf_b64(s + pos, take);
        rc |= cf_buf_printf(out, "%s=?UTF-8?B?%s?=", pos ? "\r\n " : "", b64);
        free(b64);
        pos += take;
    }
    return rc;
}

/* Body text with CRLF line ends and no line longer than 990 bytes (RFC
 * 5322's limit is 998). */
static int crlf_body(const char *s, struct cf_buf *out)
{
    int rc = 0;
    size_t col = 0;
    for (; *s && !rc; s++) {
        if (*s == '\r')
            continue;
        if (*s == '\n') {
            rc |= cf_buf_puts(out, "\r\n");
            col = 0;
            continue;
        }
        if (col >= 990) {
            rc |= cf_buf_puts(out, "\r\n");
            col = 0;
        }
        rc |= cf_buf_append(out, s, 1);
        col++;
    }
    if (col)
        rc |= cf_buf_puts(out, "\r\n");
    return rc;
}

static void default_from(char *buf, size_t len)
{
    char host[256] = "localhost";
    if (gethostname(host, sizeof host - 1) != 0 || !*host)
        snprintf(host, sizeof host, "localhost");
    host[sizeof host - 1] = 0;
    snprintf(buf, len, "certfleet@%s", host);
}

int cf_notify_mail(const cf_notify *n, const struct cf_notify_config *cfg, int64_t now,
                   struct cf_buf *out)
{
    char from[300], date[64], rnd[8];
    struct cf_buf subj = CF_BUF_INIT, body = CF_BUF_INIT;
    int rc = 0;
    if (cfg->from)
        snprintf(from, sizeof from, "%s", cfg->from);
    else
        default_from(from, sizeof from);
    time_t tt = (time_t)now;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S +0000", &tm);
    if (RAND_bytes((unsigned char *)rnd, sizeof rnd) != 1)
        memset(rnd, 0, sizeof rnd);
    rc |= cf_notify_subject(n, &subj);
    rc |= cf_notify_body(n, now, &body);
    rc |= cf_buf_printf(out, "Date: %s\r\nFrom: %s\r\nTo: %s\r\nSubject: ", date, from,
                        cfg->to ? cfg->to : "");
    rc |= encode_subject(subj.data ? subj.data : "", out);
    rc |= cf_buf_printf(out,
                        "\r\nMessage-ID: <certfleet.%lld.%02x%02x%02x%02x%02x%02x@%s>\r\n"
                        "MIME-Version: 1.0\r\n"
                        "Content-Type: text/plain; charset=UTF-8\r\n"
                        "Content-Transfer-Encoding: 8bit\r\n"
                        "Auto-Submitted: auto-generated\r\n"
                        "X-Mailer: certfleet\r\n\r\n",
                        (long long)now, (unsigned char)rnd[0], (unsigned char)rnd[1],
                        (unsigned char)rnd[2], (unsigned char)rnd[3], (unsigned char)rnd[4],
                        (unsigned char)rnd[5],
                        strchr(from, '@') ? strchr(from, '@') + 1 : "certfleet");
    rc |= crlf_body(body.data ? body.data : "", out);
    cf_buf_release(&subj);
    cf_buf_release(&body);
    return rc ? CF_ENOMEM : 0;
}

/* ---- sending --------------------------------------------------------- */

struct send {
    cf_notify *n;
    uv_loop_t *loop;
    uv_timer_t idle; /* delivers the result from the loop when nothing was sent */
    int pending;
    int status;
    struct cf_buf report;
    cf_notify_cb cb;
    void *arg;
    /* smtp */
    CURL *easy;
    struct curl_slist *rcpt;
    struct cf_buf msg;
    size_t msg_off;
    char smtp_desc[600];
    char *webhook_body;
    char webhook_desc[600];
};

static void send_release(struct send *s)
{
    if (s->easy)
        curl_easy_cleanup(s->easy);
    curl_slist_free_all(s->rcpt);
    cf_buf_release(&s->msg);
    cf_buf_release(&s->report);
    free(s->webhook_body);
    free(s);
}

static void send_closed(uv_handle_t *h)
{
    struct send *s = h->data;
    s->n->sending = NULL;
    s->cb(s->status, s->report.data ? s->report.data : "", s->arg);
    send_release(s);
}

static void one_done(struct send *s, int status)
{
    if (status && !s->status)
        s->status = status;
    if (--s->pending == 0)
        uv_close((uv_handle_t *)&s->idle, send_closed);
}

static size_t smtp_read(char *buf, size_t size, size_t nitems, void *arg)
{
    struct send *s = arg;
    size_t room = size * nitems, left = s->msg.len - s->msg_off;
    size_t k = left < room ? left : room;
    memcpy(buf, s->msg.data + s->msg_off, k);
    s->msg_off += k;
    return k;
}

static void smtp_done(CURL *easy, int status, const char *msg, void *arg)
{
    struct send *s = arg;
    if (status == 0)
        cf_buf_printf(&s->report, "%s: sent\n", s->smtp_desc);
    else
        cf_buf_printf(&s->report,
                      "%s: failed: %s; check certbot_smtp_server/port and that the "
                      "server accepts mail from this host\n",
                      s->smtp_desc, msg && *msg ? msg : cf_strerror(status));
    one_done(s, status);
}

/* Recipients from "a@b, c@d" into a curl list of "<a@b>". */
static struct curl_slist *recipients(const char *to, size_t *count)
{
    struct curl_slist *l = NULL;
    char *copy = cf_strdup(to), *save = NULL;
    *count = 0;
    for (char *t = strtok_r(copy, ", ;", &save); t; t = strtok_r(NULL, ", ;", &save)) {
        char one[320];
        snprintf(one, sizeof one, "<%s>", t);
        l = curl_slist_append(l, one);
        (*count)++;
    }
    free(copy);
    return l;
}

static int start_smtp(struct send *s, cf_http *h, const struct cf_notify_config *cfg, int64_t now)
{
    char url[512], from[300], mailfrom[320];
    const char *server = cfg->smtp_server ? cfg->smtp_server : "localhost";
    int tls = cfg->smtp_starttls;
    int port = cfg->smtp_port ? cfg->smtp_port : tls == 2 ? 465 : 25;
    size_t nrcpt = 0;
    snprintf(url, sizeof url, "%s://%s%s%s:%d", tls == 2 ? "smtps" : "smtp",
             strchr(server, ':') ? "[" : "", server, strchr(server, ':') ? "]" : "", port);
    snprintf(s->smtp_desc, sizeof s->smtp_desc, "e-mail to %s via %s", cfg->to, url);
    if (cfg->from)
        snprintf(from, sizeof from, "%s", cfg->from);
    else
        default_from(from, sizeof from);
    /* "Name <addr>" -> "<addr>" for the envelope */
    const char *lt = strchr(from, '<');
    if (lt)
        snprintf(mailfrom, sizeof mailfrom, "%s", lt);
    else
        snprintf(mailfrom, sizeof mailfrom, "<%s>", from);

    s->rcpt = recipients(cfg->to, &nrcpt);
    if (!nrcpt) {
        cf_buf_printf(&s->report, "%s: failed: no recipient in certbot_notify_email\n",
                      s->smtp_desc);
        return CF_EINVAL;
    }
    const char *password = NULL;
    if (cfg->smtp_user) {
        if (!cfg->smtp_password_env) {
            cf_buf_printf(&s->report,
                          "%s: failed: certbot_smtp_user is set but "
                          "certbot_smtp_password_env names no environment "
                          "variable\n",
                          s->smtp_desc);
            return CF_EINVAL;
        }
        password = getenv(cfg->smtp_password_env);
        if (!password) {
            cf_buf_printf(&s->report,
                          "%s: failed: environment variable '%s' "
                          "(certbot_smtp_password_env) is not set\n",
                          s->smtp_desc, cfg->smtp_password_env);
            return CF_EINVAL;
        }
    }
    if (cf_notify_mail(s->n, cfg, now, &s->msg))
        return CF_ENOMEM;
    CURL *e = curl_easy_init();
    if (!e)
        return CF_ENOMEM;
    s->easy = e;
    long timeout = cfg->timeout_ms ? cfg->timeout_ms : 30000;
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "smtp,smtps");
    curl_easy_setopt(e, CURLOPT_MAIL_FROM, mailfrom);
    curl_easy_setopt(e, CURLOPT_MAIL_RCPT, s->rcpt);
    curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(e, CURLOPT_READFUNCTION, smtp_read);
    curl_easy_setopt(e, CURLOPT_READDATA, s);
    curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t)s->msg.len);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, timeout < 10000 ? timeout : 10000L);
    if (tls == 1)
        curl_easy_setopt(e, CURLOPT_USE_SSL, (long)CURLUSESSL_ALL);
    if (cfg->smtp_ca_bundle)
        curl_easy_setopt(e, CURLOPT_CAINFO, cfg->smtp_ca_bundle);
    if (cfg->smtp_user) {
        curl_easy_setopt(e, CURLOPT_USERNAME, cfg->smtp_user);
        /* libcurl keeps its own copy; ours is the environment's. */
        curl_easy_setopt(e, CURLOPT_PASSWORD, password);
    }
    int rc = cf_http_add_easy(h, e, smtp_done, s);
    if (rc)
        cf_buf_printf(&s->report, "%s: failed: %s\n", s->smtp_desc, cf_strerror(rc));
    return rc;
}

static void webhook_done(int status, struct cf_http_response *resp, void *arg)
{
    struct send *s = arg;
    if (status == 0 && (resp->status < 200 || resp->status > 299)) {
        cf_buf_printf(&s->report, "%s: failed: the server answered HTTP %ld\n", s->webhook_desc,
                      resp->status);
        status = CF_EPROTO;
    } else if (status) {
        cf_buf_printf(&s->report, "%s: failed: %s\n", s->webhook_desc,
                      resp->error[0] ? resp->error : cf_strerror(status));
    } else {
        cf_buf_printf(&s->report, "%s: sent (HTTP %ld)\n", s->webhook_desc, resp->status);
    }
    one_done(s, status);
}

static int start_webhook(struct send *s, cf_http *h, const struct cf_notify_config *cfg,
                         int64_t now)
{
    static const char *const headers[] = {"Content-Type: application/json", NULL};
    snprintf(s->webhook_desc, sizeof s->webhook_desc, "webhook %s", cfg->webhook_url);
    s->webhook_body = cf_notify_json(s->n, now);
    struct cf_http_request req = {
        .method = "POST",
        .url = cfg->webhook_url,
        .body = s->webhook_body,
        .body_len = strlen(s->webhook_body),
        .headers = headers,
        .ca_bundle = cfg->webhook_ca_bundle,
        .timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : 30000,
        .max_body = 64 * 1024,
    };
    int rc = cf_http_request(h, &req, webhook_done, s);
    if (rc)
        cf_buf_printf(&s->report, "%s: failed: %s\n", s->webhook_desc, cf_strerror(rc));
    return rc;
}

static void idle_cb(uv_timer_t *t)
{
    struct send *s = t->data;
    one_done(s, 0);
}

int cf_notify_send(cf_notify *n, uv_loop_t *loop, cf_http *h, const struct cf_notify_config *cfg,
                   cf_notify_cb cb, void *arg)
{
    if (!n || !loop || !cfg || !cb || n->sending)
        return CF_EINVAL;
    struct send *s = cf_xcalloc(1, sizeof *s);
    int64_t now = (int64_t)time(NULL);
    s->n = n;
    s->loop = loop;
    s->cb = cb;
    s->arg = arg;
    n->sending = s;
    uv_timer_init(loop, &s->idle);
    s->idle.data = s;
    /* One extra count held until the starts are done, released from the
     * loop, so cb never runs inside this call. */
    s->pending = 1;
    if (n->n > 0 && cfg->to && *cfg->to) {
        int rc = h ? start_smtp(s, h, cfg, now) : CF_EINVAL;
        if (rc == 0)
            s->pending++;
        else if (!s->status)
            s->status = rc;
        if (!h)
            cf_buf_puts(&s->report, "e-mail: failed: no HTTP engine to send with\n");
    }
    if (n->n > 0 && cfg->webhook_url && *cfg->webhook_url) {
        int rc = h ? start_webhook(s, h, cfg, now) : CF_EINVAL;
        if (rc == 0)
            s->pending++;
        else if (!s->status)
            s->status = rc;
    }
    uv_timer_start(&s->idle, idle_cb, 0, 0);
    return 0;
}

/* ---- delivery for commands ----------------------------------------- */

struct delivery {
    int status;
    struct cf_buf report;
};

static void on_delivered(int status, const char *report, void *arg)
{
    struct delivery *d = arg;
    d->status = status;
    if (report)
        cf_buf_puts(&d->report, report);
}

int cf_notify_deliver(cf_notify *n, const json_t *const *vars, size_t nvars, char *report,
                      size_t len)
{
    struct cf_notify_config cfg;
    char err[CF_ERRLEN] = "";
    const json_t *chosen = NULL;
    report[0] = '\0';
    if (cf_notify_count(n) == 0)
        return 0;
    for (size_t i = 0; i < nvars && !chosen; i++) {
        if (cf_notify_config_from_vars(vars[i], &cfg, err) != 0) {
            snprintf(report, len, "not sent: %s", err);
            return CF_EINVAL;
        }
        if (cfg.to || cfg.webhook_url)
            chosen = vars[i];
    }
    if (!chosen)
        return 0;
    uv_loop_t loop;
    cf_http *http = NULL;
    struct delivery d = {0, CF_BUF_INIT};
    uv_loop_init(&loop);
    if (cf_http_new(&loop, &http) != 0) {
        uv_loop_close(&loop);
        snprintf(report, len, "not sent: cannot start the http client");
        return CF_ENOMEM;
    }
    if (cf_notify_send(n, &loop, http, &cfg, on_delivered, &d) == 0)
        uv_run(&loop, UV_RUN_DEFAULT);
    cf_http_free(http);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    snprintf(report, len, "%s", d.report.data ? d.report.data : "");
    cf_buf_release(&d.report);
    return d.status;
}

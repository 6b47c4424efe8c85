/*
 * status.c - classification, urgency order and renderers for the fleet
 * status report (see status.h).  No I/O and no clock in here.
 */
#include "status.h"
#include "notify.h"
#include "probe.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const state_names[CF_STATE_COUNT] = {
    "EXPIRED", "UNREACHABLE", "MISSING", "MISMATCH", "RENEW-SOON", "OK",
};

const char *cf_status_state_name(enum cf_state s)
{
    return (unsigned)s < CF_STATE_COUNT ? state_names[s] : "UNKNOWN";
}

static int row_has_cert(const struct cf_status_row *r)
{
    return r->probe_status == 0 && r->serial[0];
}

void cf_status_row_from_probe(struct cf_status_row *row, const struct cf_probe_result *res)
{
    row->probe_status = res->status;
    snprintf(row->serial, sizeof row->serial, "%s", res->status == 0 ? res->serial : "");
    snprintf(row->issuer, sizeof row->issuer, "%s", res->status == 0 ? res->issuer_cn : "");
    row->not_after = res->status == 0 ? res->not_after : 0;
    row->covers_domain = res->status == 0 ? res->covers_sni : 0;
    snprintf(row->error, sizeof row->error, "%s", res->error);
}

/* Whole days left, rounded towards the past as certbot's timedelta.days. */
static int days_between(int64_t now, int64_t then)
{
    int64_t d = then - now;
    int64_t days = d >= 0 ? d / 86400 : -((-d + 86399) / 86400);
    if (days > 100000)
        days = 100000;
    if (days < -100000)
        days = -100000;
    return (int)days;
}

void cf_status_classify(struct cf_status_row *row, int64_t now, int renew_days, int warn_days)
{
    int threshold = renew_days < 0 ? 30 : renew_days;
    if (warn_days > threshold)
        threshold = warn_days;
    row->matches_store = CF_MATCH_UNKNOWN;
    row->days_left = 0;
    if (row->probe_status != 0) {
        row->state = CF_STATE_UNREACHABLE;
        if (!row->error[0])
            snprintf(row->error, sizeof row->error, "host '%s': no TLS handshake for '%s' (%s)",
                     row->host, row->domain, cf_strerror(row->probe_status));
        return;
    }
    row->days_left = days_between(now, row->not_after);
    if (row->store_serial[0])
        row->matches_store = !strcmp(row->serial, row->store_serial) ? CF_MATCH_YES : CF_MATCH_NO;
    else if (row->store_missing)
        row->matches_store = CF_MATCH_NO;

    if (row->store_missing) {
        row->state = CF_STATE_MISSING;
        if (!row->error[0])
            snprintf(row->error, sizeof row->error,
                     "certificate '%s' for '%s' is not in the central store; run 'certfleet "
                     "apply' to issue it",
                     row->cert[0] ? row->cert : row->domain, row->domain);
    } else if (!row->covers_domain) {
        row->state = CF_STATE_MISSING;
        if (!row->error[0])
            snprintf(row->error, sizeof row->error,
                     "host '%s' serves a certificate (serial %s) that does not cover '%s'; "
                     "check that its nginx has a server block for this name",
                     row->host, row->serial, row->domain);
    } else if (row->not_after <= now) {
        row->state = CF_STATE_EXPIRED;
        if (!row->error[0])
            snprintf(row->error, sizeof row->error,
                     "host '%s' serves an expired certificate for '%s' (%d days ago)", row->host,
                     row->domain, -row->days_left);
    } else if (row->matches_store == CF_MATCH_NO) {
        row->state = CF_STATE_MISMATCH;
        if (!row->error[0])
            snprintf(row->error, sizeof row->error,
                     "host '%s' serves serial %s for '%s' but the store's current version is "
                     "%s; run 'certfleet apply' to push it",
                     row->host, row->serial, row->domain, row->store_serial);
    } else if (row->days_left < threshold) {
        row->state = CF_STATE_RENEW_SOON;
    } else {
        row->state = CF_STATE_OK;
    }
}

static int cmp_rows(const void *a, const void *b)
{
    const struct cf_status_row *x = a, *y = b;
    if (x->state != y->state)
        return (int)x->state - (int)y->state;
    if (x->days_left != y->days_left)
        return x->days_left < y->days_left ? -1 : 1;
    int c = strcmp(x->host, y->host);
    return c ? c : strcmp(x->domain, y->domain);
}

void cf_status_sort(struct cf_status_row *rows, size_t n)
{
    if (n > 1)
        qsort(rows, n, sizeof *rows, cmp_rows);
}

void cf_status_count(const struct cf_status_row *rows, size_t n, size_t counts[CF_STATE_COUNT])
{
    memset(counts, 0, CF_STATE_COUNT * sizeof counts[0]);
    for (size_t i = 0; i < n; i++)
        if ((unsigned)rows[i].state < CF_STATE_COUNT)
            counts[rows[i].state]++;
}

int cf_status_exit_code(const struct cf_status_row *rows, size_t n, int warn_days)
{
    for (size_t i = 0; i < n; i++) {
        switch (rows[i].state) {
        case CF_STATE_OK:
            break;
        case CF_STATE_RENEW_SOON:
            if (warn_days >= 0)
                return CF_EXIT_FAILED;
            break;
        default:
            return CF_EXIT_FAILED;
        }
    }
    return CF_EXIT_OK;
}

size_t cf_status_add_warnings(const struct cf_status_row *rows, size_t n, int warn_days,
                              struct cf_notify *notify, int64_t now)
{
    size_t added = 0;
    if (warn_days < 0 || !notify)
        return 0;
    for (size_t i = 0; i < n; i++) {
        const struct cf_status_row *r = &rows[i];
        if (!row_has_cert(r) || !r->covers_domain || r->days_left >= warn_days)
            continue;
        cf_notify_add_warning(notify, r->host, r->domain, r->cert, r->days_left, r->not_after, now);
        added++;
    }
    return added;
}

/* ---- helpers ---------------------------------------------------------- */

enum tfmt { T_ISO, T_TABLE, T_LONG };

static void fmt_time(char *buf, size_t len, int64_t t, enum tfmt f)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (!gmtime_r(&tt, &tm)) {
        snprintf(buf, len, "?");
        return;
    }
    if (f == T_ISO)
        strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
    else if (f == T_TABLE)
        strftime(buf, len, "%Y-%m-%d %H:%M", &tm);
    else
        strftime(buf, len, "%Y-%m-%d %H:%M:%S UTC", &tm);
}

static const char *match_name(enum cf_match m)
{
    return m == CF_MATCH_YES ? "yes" : m == CF_MATCH_NO ? "no" : "unknown";
}

/* Display width of UTF-8 text (code points; good enough for names). */
static size_t width(const char *s)
{
    size_t w = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80)
            w++;
    return w;
}

static int last_success(const struct cf_status_row *rows, size_t n, const struct cf_status_meta *m)
{
    if (m->last_run_success >= 0)
        return m->last_run_success ? 1 : 0;
    return cf_status_exit_code(rows, n, -1) == CF_EXIT_OK;
}

/* ---- text ------------------------------------------------------------- */

enum { C_GROUP, C_HOST, C_DOMAIN, C_ISSUER, C_SERIAL, C_NOTAFTER, C_DAYS, C_STORE, C_STATE, NCOLS };

static const char *const col_titles[NCOLS] = {
    "GROUP", "HOST", "DOMAIN", "ISSUER", "SERIAL", "NOT AFTER (UTC)", "DAYS", "STORE", "STATE",
};

static void cell(const struct cf_status_row *r, int c, char *buf, size_t len)
{
    switch (c) {
    case C_GROUP:
        snprintf(buf, len, "%s", r->group[0] ? r->group : "-");
        break;
    case C_HOST:
        snprintf(buf, len, "%s", r->host);
        break;
    case C_DOMAIN:
        snprintf(buf, len, "%s", r->domain);
        break;
    case C_ISSUER:
        snprintf(buf, len, "%s", row_has_cert(r) && r->issuer[0] ? r->issuer : "-");
        break;
    case C_SERIAL:
        /* The table stays readable; JSON carries the whole serial. */
        if (!row_has_cert(r))
            snprintf(buf, len, "-");
        else if (strlen(r->serial) > 20)
            snprintf(buf, len, "%.16s...", r->serial);
        else
            snprintf(buf, len, "%s", r->serial);
        break;
    case C_NOTAFTER:
        if (row_has_cert(r))
            fmt_time(buf, len, r->not_after, T_TABLE);
        else
            snprintf(buf, len, "-");
        break;
    case C_DAYS:
        if (row_has_cert(r))
            snprintf(buf, len, "%d", r->days_left);
        else
            snprintf(buf, len, "-");
        break;
    case C_STORE:
        snprintf(buf, len, "%s", match_name(r->matches_store));
        break;
    case C_STATE:
        snprintf(buf, len, "%s", cf_status_state_name(r->state));
        break;
    default:
        buf[0] = 0;
    }
}

static const char *state_color(enum cf_state s)
{
    switch (s) {
    case CF_STATE_OK:
        return "\033[32m";
    case CF_STATE_RENEW_SOON:
        return "\033[33m";
    case CF_STATE_EXPIRED:
        return "\033[1;31m";
    default:
        return "\033[31m";
    }
}

int cf_status_render_text(struct cf_buf *out, const struct cf_status_row *rows, size_t n,
                          const struct cf_status_meta *meta)
{
    size_t w[NCOLS];
    char buf[512];
    int rc = 0;
    for (int c = 0; c < NCOLS; c++)
        w[c] = strlen(col_titles[c]);
    for (size_t i = 0; i < n; i++)
        for (int c = 0; c < NCOLS; c++) {
            cell(&rows[i], c, buf, sizeof buf);
            if (width(buf) > w[c])
                w[c] = width(buf);
        }
    for (int c = 0; c < NCOLS && !rc; c++)
        rc = c == NCOLS - 1 ? cf_buf_printf(out, "%s\n", col_titles[c])
                            : cf_buf_printf(out, "%-*s  ", (int)w[c], col_titles[c]);
    for (size_t i = 0; i < n && !rc; i++) {
        for (int c = 0; c < NCOLS && !rc; c++) {
            cell(&rows[i], c, buf, sizeof buf);
            if (c == NCOLS - 1) {
                if (meta && meta->color)
                    rc = cf_buf_printf(out, "%s%s\033[0m\n", state_color(rows[i].state), buf);
                else
                    rc = cf_buf_printf(out, "%s\n", buf);
            } else {
                int pad = (int)(w[c] - width(buf));
                int right = c == C_DAYS;
                rc =
                    cf_buf_printf(out, "%*s%s%*s  ", right ? pad : 0, "", buf, right ? 0 : pad, "");
            }
        }
    }
    size_t counts[CF_STATE_COUNT];
    cf_status_count(rows, n, counts);
    if (!rc)
        rc = cf_buf_printf(out, "\n%zu endpoint%s:", n, n == 1 ? "" : "s");
    int first = 1;
    for (int s = CF_STATE_COUNT - 1; s >= 0 && !rc; s--) {
        if (!counts[s])
            continue;
        rc = cf_buf_printf(out, "%s %zu %s", first ? "" : ",", counts[s], state_names[s]);
        first = 0;
    }
    if (!rc)
        rc = cf_buf_puts(out, first ? " none\n" : "\n");
    for (size_t i = 0; i < n && !rc; i++) {
        const struct cf_status_row *r = &rows[i];
        if (r->state == CF_STATE_OK || !r->error[0])
            continue;
        rc = cf_buf_printf(out, "  %s %s: %s\n", cf_status_state_name(r->state), r->domain,
                           r->error);
    }
    return rc ? CF_ENOMEM : 0;
}

/* ---- json ------------------------------------------------------------- */

static json_t *json_time(int64_t t)
{
    char buf[32];
    fmt_time(buf, sizeof buf, t, T_ISO);
    return json_string(buf);
}

int cf_status_render_json(struct cf_buf *out, const struct cf_status_row *rows, size_t n,
                          const struct cf_status_meta *meta)
{
    json_t *root = json_object(), *eps = json_array(), *sum = json_object();
    size_t counts[CF_STATE_COUNT];
    int rc = CF_ENOMEM;
    if (!root || !eps || !sum)
        goto out;
    cf_status_count(rows, n, counts);
    for (int s = CF_STATE_COUNT - 1; s >= 0; s--)
        json_object_set_new(sum, state_names[s], json_integer((json_int_t)counts[s]));
    json_object_set_new(root, "generated_at", json_time(meta ? meta->now : 0));
    json_object_set_new(root, "endpoints_total", json_integer((json_int_t)n));
    json_object_set(root, "summary", sum);
    json_object_set_new(root, "exit_code", json_integer(cf_status_exit_code(rows, n, -1)));
    for (size_t i = 0; i < n; i++) {
        const struct cf_status_row *r = &rows[i];
        int has = row_has_cert(r);
        json_t *e = json_pack(
            "{s:s, s:s, s:s, s:s, s:s, s:o, s:o, s:o, s:o, s:o, s:o, s:s, s:o}", "group", r->group,
            "host", r->host, "address", r->address, "domain", r->domain, "cert", r->cert, "issuer",
            has ? json_string(r->issuer) : json_null(), "serial",
            has ? json_string(r->serial) : json_null(), "not_after",
            has ? json_time(r->not_after) : json_null(), "days_left",
            has ? json_integer(r->days_left) : json_null(), "store_serial",
            r->store_serial[0] ? json_string(r->store_serial) : json_null(), "matches_store",
            r->matches_store == CF_MATCH_UNKNOWN ? json_null()
                                                 : json_boolean(r->matches_store == CF_MATCH_YES),
            "state", cf_status_state_name(r->state), "error",
            r->error[0] ? json_string(r->error) : json_null());
        if (!e || json_array_append_new(eps, e))
            goto out;
    }
    json_object_set(root, "endpoints", eps);
    char *s = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (!s)
        goto out;
    rc = cf_buf_puts(out, s) || cf_buf_puts(out, "\n") ? CF_ENOMEM : 0;
    free(s);
out:
    json_decref(eps);
    json_decref(sum);
    json_decref(root);
    return rc;
}

/* ---- prometheus ------------------------------------------------------- */

static int prom_label(struct cf_buf *out, const char *name, const char *v, int comma)
{
    if (cf_buf_printf(out, "%s%s=\"", comma ? "," : "", name))
        return -1;
    for (; *v; v++) {
        const char *esc = *v == '\\' ? "\\\\" : *v == '"' ? "\\\"" : *v == '\n' ? "\\n" : NULL;
        if (esc ? cf_buf_puts(out, esc) : cf_buf_append(out, v, 1))
            return -1;
    }
    return cf_buf_puts(out, "\"");
}

static int prom_labels(struct cf_buf *out, const struct cf_status_row *r, const char *state)
{
    if (cf_buf_puts(out, "{") || prom_label(out, "host", r->host, 0) ||
        prom_label(out, "domain", r->domain, 1) || prom_label(out, "group", r->group, 1) ||
        prom_label(out, "cert", r->cert, 1))
        return -1;
    if (state && prom_label(out, "state", state, 1))
        return -1;
    return cf_buf_puts(out, "}");
}

static int prom_head(struct cf_buf *out, const char *name, const char *help)
{
    return cf_buf_printf(out, "# HELP %s %s\n# TYPE %s gauge\n", name, help, name);
}

int cf_status_render_prometheus(struct cf_buf *out, const struct cf_status_row *rows, size_t n,
                                const struct cf_status_meta *meta)
{
    int64_t now = meta ? meta->now : 0;
    static const struct cf_status_meta none = {.last_run_success = -1};
    const struct cf_status_meta *m = meta ? meta : &none;
    int rc = 0;

    rc |= prom_head(out, "certfleet_certificate_expiry_timestamp_seconds",
                    "notAfter of the certificate each endpoint serves, as a Unix time.");
    for (size_t i = 0; i < n && !rc; i++)
        if (row_has_cert(&rows[i]))
            rc |= cf_buf_puts(out, "certfleet_certificate_expiry_timestamp_seconds") ||
                  prom_labels(out, &rows[i], NULL) ||
                  cf_buf_printf(out, " %lld\n", (long long)rows[i].not_after);

    /* promtool's lint wants base units, so "days left" is exposed in
     * seconds (days = value / 86400); negative once expired. */
    rc |= prom_head(out, "certfleet_certificate_remaining_seconds",
                    "Seconds from the scan until the served certificate expires (negative when "
                    "expired).");
    for (size_t i = 0; i < n && !rc; i++)
        if (row_has_cert(&rows[i]))
            rc |= cf_buf_puts(out, "certfleet_certificate_remaining_seconds") ||
                  prom_labels(out, &rows[i], NULL) ||
                  cf_buf_printf(out, " %lld\n", (long long)(rows[i].not_after - now));

    rc |= prom_head(out, "certfleet_certificate_matches_store",
                    "1 when the served certificate is the central store's current version.");
    for (size_t i = 0; i < n && !rc; i++)
        if (rows[i].matches_store != CF_MATCH_UNKNOWN)
            rc |= cf_buf_puts(out, "certfleet_certificate_matches_store") ||
                  prom_labels(out, &rows[i], NULL) ||
                  cf_buf_printf(out, " %d\n", rows[i].matches_store == CF_MATCH_YES);

    rc |= prom_head(out, "certfleet_endpoint_up",
                    "1 when the TLS handshake with SNI to the endpoint succeeded.");
    for (size_t i = 0; i < n && !rc; i++)
        rc |= cf_buf_puts(out, "certfleet_endpoint_up") || prom_labels(out, &rows[i], NULL) ||
              cf_buf_printf(out, " %d\n", rows[i].probe_status == 0);

    rc |= prom_head(out, "certfleet_endpoint_state",
                    "1 for the endpoint's state (OK, RENEW-SOON, EXPIRED, MISMATCH, MISSING, "
                    "UNREACHABLE).");
    for (size_t i = 0; i < n && !rc; i++)
        rc |= cf_buf_puts(out, "certfleet_endpoint_state") ||
              prom_labels(out, &rows[i], cf_status_state_name(rows[i].state)) ||
              cf_buf_puts(out, " 1\n");

    rc |= prom_head(out, "certfleet_last_run_success",
                    "1 when the last certfleet run found nothing failing.");
    rc |= cf_buf_printf(out, "certfleet_last_run_success %d\n", last_success(rows, n, m));
    rc |= prom_head(out, "certfleet_last_run_timestamp_seconds",
                    "When the last certfleet run finished, as a Unix time.");
    rc |= cf_buf_printf(out, "certfleet_last_run_timestamp_seconds %lld\n",
                        (long long)(m->last_run_time ? m->last_run_time : now));
    return rc ? CF_ENOMEM : 0;
}

/* ---- html ------------------------------------------------------------- */

static int html_esc(struct cf_buf *out, const char *s)
{
    for (; *s; s++) {
        const char *e = NULL;
        switch (*s) {
        case '&':
            e = "&amp;";
            break;
        case '<':
            e = "&lt;";
            break;
        case '>':
            e = "&gt;";
            break;
        case '"':
            e = "&quot;";
            break;
        case '\'':
            e = "&#39;";
            break;
        }
        if (e ? cf_buf_puts(out, e) : cf_buf_append(out, s, 1))
            return -1;
    }
    return 0;
}

static const char *state_class(enum cf_state s)
{
    static const char *const cls[CF_STATE_COUNT] = {"expired",  "unreachable", "missing",
                                                    "mismatch", "renew-soon",  "ok"};
    return (unsigned)s < CF_STATE_COUNT ? cls[s] : "unknown";
}

static const char *const state_rgb[CF_STATE_COUNT] = {
    "#b71c1c", "#6a1b9a", "#e65100", "#c62828", "#f9a825", "#2e7d32",
};

static const char html_css[] =
    "body{font:14px/1.4 system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px;color:#222;"
    "background:#fafafa}"
    "h1{font-size:22px;margin:0 0 4px}"
    ".generated{color:#666;margin:0 0 16px}"
    ".summary{display:flex;flex-wrap:wrap;gap:10px;margin-bottom:18px}"
    ".card{border-radius:6px;padding:8px 14px;color:#fff;min-width:90px}"
    ".card .n{display:block;font-size:24px;font-weight:700}"
    ".card.zero{opacity:.35}"
    ".st-ok{background:#2e7d32}.st-renew-soon{background:#f9a825;color:#222}"
    ".st-expired{background:#b71c1c}.st-unreachable{background:#6a1b9a}"
    ".st-missing{background:#e65100}.st-mismatch{background:#c62828}"
    "table{border-collapse:collapse;width:100%;background:#fff}"
    "th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #ddd;vertical-align:top}"
    "th{background:#eee}"
    "td.days{text-align:right}td:nth-child(6){white-space:nowrap}"
    "td.serial{font-family:monospace;font-size:12px;word-break:break-all}"
    "td.state span{border-radius:4px;padding:1px 6px;color:#fff;white-space:nowrap}"
    "td.err{color:#8a1c1c;font-size:12px}"
    "svg{background:#fff;border:1px solid #ddd;margin-bottom:18px}"
    "svg text{font:11px system-ui,sans-serif;fill:#333}";

#define TL_W        960
#define TL_LEFT     220
#define TL_RIGHT    20
#define TL_LANE     18
#define TL_MAXLANES 40

/* The timeline: one lane per domain (most urgent first), a dot per
 * endpoint at its days left, a line for today. */
static int html_timeline(struct cf_buf *out, const struct cf_status_row *rows, size_t n)
{
    int rc = 0;
    int lo = -30, hi = 90;
    const char **lanes = cf_xcalloc(n ? n : 1, sizeof *lanes);
    size_t nlanes = 0, dropped = 0;
    for (size_t i = 0; i < n; i++) {
        if (!row_has_cert(&rows[i]))
            continue;
        if (rows[i].days_left < lo)
            lo = rows[i].days_left;
        if (rows[i].days_left > hi)
            hi = rows[i].days_left;
        size_t k;
        for (k = 0; k < nlanes && strcmp(lanes[k], rows[i].domain); k++)
            ;
        if (k == nlanes) {
            if (nlanes < TL_MAXLANES)
                lanes[nlanes++] = rows[i].domain;
            else
                dropped++;
        }
    }
    if (lo < -365)
        lo = -365;
    if (hi > 800)
        hi = 800;
    lo = (lo - 29) / 30 * 30;
    hi = (hi + 29) / 30 * 30;
    int height = 40 + (int)(nlanes ? nlanes : 1) * TL_LANE + 30;
    double span = (double)(hi - lo);
    double plot = TL_W - TL_LEFT - TL_RIGHT;
#define X(d) (TL_LEFT + ((double)((d) < lo ? lo : (d) > hi ? hi : (d)) - lo) * plot / span)
    rc |= cf_buf_printf(out,
                        "<h2>Expiry timeline</h2>\n<svg id=\"timeline\" "
                        "xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
                        "viewBox=\"0 0 %d %d\" role=\"img\" aria-label=\"expiry timeline\">\n",
                        TL_W, height, TL_W, height);
    for (int d = lo; d <= hi && !rc; d += 30) {
        double x = X(d);
        rc |= cf_buf_printf(out,
                            "<line x1=\"%.1f\" y1=\"24\" x2=\"%.1f\" y2=\"%d\" stroke=\"#eee\"/>"
                            "<text x=\"%.1f\" y=\"16\" text-anchor=\"middle\">%+dd</text>\n",
                            x, x, height - 20, x, d);
    }
    rc |= cf_buf_printf(out,
                        "<line x1=\"%.1f\" y1=\"20\" x2=\"%.1f\" y2=\"%d\" stroke=\"#222\" "
                        "stroke-dasharray=\"4 3\"/><text x=\"%.1f\" y=\"%d\" "
                        "text-anchor=\"middle\">today</text>\n",
                        X(0), X(0), height - 16, X(0), height - 4);
    for (size_t k = 0; k < nlanes && !rc; k++) {
        int y = 40 + (int)k * TL_LANE;
        rc |=
            cf_buf_printf(out, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">", TL_LEFT - 8, y + 4);
        rc |= html_esc(out, lanes[k]);
        rc |= cf_buf_puts(out, "</text>\n");
    }
    for (size_t i = 0; i < n && !rc; i++) {
        const struct cf_status_row *r = &rows[i];
        if (!row_has_cert(r))
            continue;
        size_t k;
        for (k = 0; k < nlanes && strcmp(lanes[k], r->domain); k++)
            ;
        if (k == nlanes)
            continue;
        rc |= cf_buf_printf(out,
                            "<circle cx=\"%.1f\" cy=\"%d\" r=\"5\" fill=\"%s\" "
                            "class=\"st-%s\"><title>",
                            X(r->days_left), 40 + (int)k * TL_LANE,
                            state_rgb[(unsigned)r->state < CF_STATE_COUNT ? r->state : 0],
                            state_class(r->state));
        rc |= html_esc(out, r->host);
        rc |= cf_buf_puts(out, " ");
        rc |= html_esc(out, r->domain);
        rc |= cf_buf_printf(out, ": %d days, %s</title></circle>\n", r->days_left,
                            cf_status_state_name(r->state));
    }
    if (dropped && !rc)
        rc |= cf_buf_printf(out, "<text x=\"%d\" y=\"%d\">and %zu more domains</text>\n", 8,
                            height - 4, dropped);
#undef X
    rc |= cf_buf_puts(out, "</svg>\n");
    free(lanes);
    return rc;
}

int cf_status_render_html(struct cf_buf *out, const struct cf_status_row *rows, size_t n,
                          const struct cf_status_meta *meta)
{
    const char *title = meta && meta->title ? meta->title : "certfleet status";
    char when[40], buf[512];
    size_t counts[CF_STATE_COUNT];
    int rc = 0;
    fmt_time(when, sizeof when, meta ? meta->now : 0, T_LONG);
    cf_status_count(rows, n, counts);

    rc |= cf_buf_puts(out, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                           "<meta name=\"viewport\" content=\"width=device-width, "
                           "initial-scale=1\">\n<title>");
    rc |= html_esc(out, title);
    rc |= cf_buf_printf(out, "</title>\n<style>%s</style>\n</head>\n<body>\n<h1>", html_css);
    rc |= html_esc(out, title);
    rc |= cf_buf_printf(out, "</h1>\n<p class=\"generated\">%zu endpoints scanned at %s</p>\n", n,
                        when);
    rc |= cf_buf_puts(out, "<div class=\"summary\" id=\"summary\">\n");
    for (int s = 0; s < CF_STATE_COUNT && !rc; s++)
        rc |= cf_buf_printf(out,
                            "<div class=\"card st-%s%s\" data-state=\"%s\"><span "
                            "class=\"n\">%zu</span>%s</div>\n",
                            state_class((enum cf_state)s), counts[s] ? "" : " zero", state_names[s],
                            counts[s], state_names[s]);
    rc |= cf_buf_puts(out, "</div>\n");
    rc |= html_timeline(out, rows, n);
    rc |= cf_buf_puts(out, "<h2>Endpoints</h2>\n<table id=\"endpoints\">\n<thead><tr>");
    for (int c = 0; c < NCOLS && !rc; c++)
        rc |= cf_buf_printf(out, "<th>%s</th>", col_titles[c]);
    rc |= cf_buf_puts(out, "<th>DETAIL</th></tr></thead>\n<tbody>\n");
    for (size_t i = 0; i < n && !rc; i++) {
        const struct cf_status_row *r = &rows[i];
        rc |= cf_buf_printf(out, "<tr class=\"row-%s\">", state_class(r->state));
        for (int c = 0; c < NCOLS && !rc; c++) {
            if (c == C_SERIAL)
                snprintf(buf, sizeof buf, "%s", row_has_cert(r) ? r->serial : "-");
            else
                cell(r, c, buf, sizeof buf);
            if (c == C_STATE) {
                rc |= cf_buf_printf(out, "<td class=\"state\"><span class=\"st-%s\">%s</span></td>",
                                    state_class(r->state), buf);
                continue;
            }
            rc |= cf_buf_printf(out, "<td%s>",
                                c == C_DAYS     ? " class=\"days\""
                                : c == C_SERIAL ? " class=\"serial\""
                                                : "");
            rc |= html_esc(out, buf);
            rc |= cf_buf_puts(out, "</td>");
        }
        rc |= cf_buf_puts(out, "<td class=\"err\">");
        rc |= html_esc(out, r->state == CF_STATE_OK ? "" : r->error);
        rc |= cf_buf_puts(out, "</td></tr>\n");
    }
    rc |= cf_buf_puts(out, "</tbody>\n</table>\n</body>\n</html>\n");
    return rc ? CF_ENOMEM : 0;
}

/*
 * renew.c - the renewal decision (see renew.h).  Pure: everything it
 * looks at arrives in struct cf_renew_input.
 */
#include "cf.h"
#include "renew.h"
#include "util.h"
#include "x509.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DAY                  86400
#define DEFAULT_RENEWAL_DAYS 30
#define DEFAULT_DUP_LIMIT    5

const char *cf_renew_decision_name(enum cf_renew_decision d)
{
    switch (d) {
    case CF_RENEW_NONE:
        return "none";
    case CF_RENEW_ISSUE_MISSING:
        return "issue-missing";
    case CF_RENEW_REISSUE_DOMAINS:
        return "reissue-domains";
    case CF_RENEW_REISSUE_KEYTYPE:
        return "reissue-keytype";
    case CF_RENEW_RENEW_EXPIRY:
        return "renew-expiry";
    case CF_RENEW_RENEW_ARI:
        return "renew-ari";
    case CF_RENEW_RENEW_FORCED:
        return "renew-forced";
    case CF_RENEW_REFUSED_RATELIMIT:
        return "refused-ratelimit";
    case CF_RENEW_RESUME_ORDER:
        return "resume-order";
    case CF_RENEW_WAIT_CA_LIMIT:
        return "wait-ca-ratelimit";
    }
    return "unknown";
}

int cf_renew_issues(enum cf_renew_decision d)
{
    return d != CF_RENEW_NONE && d != CF_RENEW_REFUSED_RATELIMIT && d != CF_RENEW_WAIT_CA_LIMIT;
}

static void ymd(int64_t t, char out[11])
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(out, 11, "%Y-%m-%d", &tm);
}

/* Whole days from now to t, rounded towards minus infinity. */
static int64_t days_until(int64_t t, int64_t now)
{
    int64_t d = t - now;
    return d >= 0 ? d / DAY : -((-d + DAY - 1) / DAY);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Canonical set: lower case, no trailing dot, sorted, unique.  The
 * strings are new; free with free_set. */
static char **canon_set(const char *const *v, size_t n, size_t *m)
{
    char **r = cf_xcalloc(n + 1, sizeof(char *));
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (!v[i] || !*v[i])
            continue;
        char *d = cf_strdup(v[i]);
        size_t l = strlen(d);
        if (l && d[l - 1] == '.')
            d[--l] = '\0';
        for (char *p = d; *p; p++)
            *p = (char)tolower((unsigned char)*p);
        r[k++] = d;
    }
    qsort(r, k, sizeof(char *), cmp_str);
    size_t w = 0;
    for (size_t i = 0; i < k; i++) {
        if (w && !strcmp(r[w - 1], r[i])) {
            free(r[i]);
            continue;
        }
        r[w++] = r[i];
    }
    *m = w;
    return r;
}

static void free_set(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* "+added -removed" between two sorted sets into out; 0 when equal. */
static int set_diff(char **want, size_t nw, char **have, size_t nh, char *out, size_t outlen)
{
    struct cf_buf b = CF_BUF_INIT;
    size_t i = 0, j = 0;
    while (i < nw || j < nh) {
        int c = i == nw ? 1 : j == nh ? -1 : strcmp(want[i], have[j]);
        if (c == 0) {
            i++;
            j++;
        } else if (c < 0) {
            cf_buf_printf(&b, "%s+%s", b.len ? " " : "", want[i++]);
        } else {
            cf_buf_printf(&b, "%s-%s", b.len ? " " : "", have[j++]);
        }
    }
    int changed = b.len > 0;
    snprintf(out, outlen, "%s", b.data ? b.data : "");
    cf_buf_release(&b);
    return changed;
}

static enum cf_renew_decision set(struct cf_renew_result *out, enum cf_renew_decision d,
                                  const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static enum cf_renew_decision set(struct cf_renew_result *out, enum cf_renew_decision d,
                                  const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out->reason, sizeof out->reason, fmt, ap);
    va_end(ap);
    out->decision = d;
    out->wanted = d;
    return d;
}

/* What would be done without the rate limit. */
static enum cf_renew_decision decide(const struct cf_renew_input *in, struct cf_renew_result *out)
{
    const struct cf_cert_info *cur = in->cur;
    if (in->n_domains == 0)
        return set(out, CF_RENEW_NONE, "no domains configured for this certificate");
    if (!cur)
        return set(out, CF_RENEW_ISSUE_MISSING, "no certificate in the store yet");
    if (cf_x509_is_placeholder(cur))
        return set(out, CF_RENEW_ISSUE_MISSING, "only a placeholder certificate so far");

    size_t nw, nh;
    char **want = canon_set(in->domains, in->n_domains, &nw);
    char **have = canon_set((const char *const *)cur->dns_names, cur->n_dns, &nh);
    char diff[400];
    int changed = set_diff(want, nw, have, nh, diff, sizeof diff);
    free_set(want, nw);
    free_set(have, nh);
    if (changed)
        return set(out, CF_RENEW_REISSUE_DOMAINS, "domain set changed: %s", diff);

    if (in->key_type && *in->key_type && strcmp(in->key_type, cur->key_type) != 0)
        return set(out, CF_RENEW_REISSUE_KEYTYPE, "key type changed: %s -> %s", cur->key_type,
                   in->key_type);

    char exp[11];
    ymd(cur->not_after, exp);
    int64_t left = days_until(cur->not_after, in->now);
    if (in->force)
        return set(out, CF_RENEW_RENEW_FORCED, "forced (--force-renewal); expires %s (%lld days)",
                   exp, (long long)left);
    if (in->now >= cur->not_after)
        return set(out, CF_RENEW_RENEW_EXPIRY, "expired %s (%lld days ago)", exp, (long long)-left);

    /* a window that starts after expiry is nonsense: ignore it */
    if (in->has_ari && in->ari_start < cur->not_after) {
        int64_t end = in->ari_end > in->ari_start ? in->ari_end : in->ari_start;
        double f = in->ari_fraction;
        if (!(f >= 0.0))
            f = 0.0;
        if (f >= 1.0)
            f = 0.999999;
        int64_t at = in->ari_start + (int64_t)(f * (double)(end - in->ari_start));
        char ws[11], we[11], when[21];
        ymd(in->ari_start, ws);
        ymd(end, we);
        cf_x509_iso8601(at, when);
        const char *ex = in->ari_explanation && *in->ari_explanation ? in->ari_explanation : NULL;
        if (in->now >= at)
            return set(
                out, CF_RENEW_RENEW_ARI,
                "ARI window opened %s (window %s to %s, renewal time %s); expires %s%s%.200s", ws,
                ws, we, when, exp, ex ? "; the CA explains: " : "", ex ? ex : "");
        out->renew_at = at;
        return set(out, CF_RENEW_NONE,
                   "valid until %s (%lld days); ARI window %s to %s, renewal at %s%s%.200s", exp,
                   (long long)left, ws, we, when, ex ? "; the CA explains: " : "", ex ? ex : "");
    }

    int rd = in->renewal_days > 0 ? in->renewal_days : DEFAULT_RENEWAL_DAYS;
    int64_t due = cur->not_after - (int64_t)rd * DAY;
    int64_t life = cur->not_after - cur->not_before;
    if (life <= 0 || (int64_t)rd * DAY * 2 <= life) {
        if (in->now >= due)
            return set(out, CF_RENEW_RENEW_EXPIRY, "expires %s (%lld days), within renewal_days %d",
                       exp, (long long)left, rd);
        char dd[11];
        ymd(due, dd);
        out->renew_at = due;
        return set(out, CF_RENEW_NONE,
                   "valid until %s (%lld days); renewal due %s (renewal_days %d)", exp,
                   (long long)left, dd, rd);
    }
    /* renewal_days would renew before half the lifetime has passed (or
     * before issuance, reordering on every run): use a fraction of the
     * lifetime instead, as certbot's default does */
    int shortlived = life < 10 * DAY;
    due = cur->not_before + (shortlived ? life / 2 : life * 2 / 3);
    out->lifetime_rule = 1;
    char lt[32], dd[21];
    int64_t whole = (life + DAY / 2) / DAY; /* CAs add or drop a few seconds */
    if (llabs(life - whole * DAY) < 3600)
        snprintf(lt, sizeof lt, "%lld-day", (long long)whole);
    else
        snprintf(lt, sizeof lt, "%lld-hour", (long long)(life / 3600));
    cf_x509_iso8601(due, dd);
    if (in->now >= due)
        return set(out, CF_RENEW_RENEW_EXPIRY,
                   "expires %s (%lld days), past %s of its %s lifetime (renewal_days %d exceeds "
                   "half of it)",
                   exp, (long long)left, shortlived ? "1/2" : "2/3", lt, rd);
    out->renew_at = due;
    return set(out, CF_RENEW_NONE,
               "valid until %s (%lld days); renewal due %s, at %s of its %s lifetime "
               "(renewal_days %d exceeds half of it)",
               exp, (long long)left, dd, shortlived ? "1/2" : "2/3", lt, rd);
}

static enum cf_renew_decision decide_limits(const struct cf_renew_input *in,
                                            struct cf_renew_result *out);

enum cf_renew_decision cf_renew_decide(const struct cf_renew_input *in, struct cf_renew_result *out)
{
    memset(out, 0, sizeof *out);
    enum cf_renew_decision d = decide_limits(in, out);
    if (cf_renew_issues(d) && in->ca_retry_at > in->now) {
        char when[21], was[sizeof out->reason];
        cf_x509_iso8601(in->ca_retry_at, when);
        snprintf(was, sizeof was, "%s", out->reason);
        snprintf(out->reason, sizeof out->reason,
                 "waiting: the CA answered rateLimited and asked to retry after %s; no order "
                 "before then, --force-renewal included (wanted: %.300s)",
                 when, was);
        out->wanted = d;
        out->decision = CF_RENEW_WAIT_CA_LIMIT;
        out->renew_at = in->ca_retry_at;
    }
    return out->decision;
}

/* The decision with the interruption and the local duplicate limit. */
static enum cf_renew_decision decide_limits(const struct cf_renew_input *in,
                                            struct cf_renew_result *out)
{
    enum cf_renew_decision d = decide(in, out);
    if (d == CF_RENEW_NONE && in->interrupted_order) {
        char was[sizeof out->reason];
        snprintf(was, sizeof was, "%s", out->reason);
        snprintf(out->reason, sizeof out->reason,
                 "an interrupted run left its order at the CA: finishing it (%.400s)", was);
        out->decision = out->wanted = CF_RENEW_RESUME_ORDER;
        out->renew_at = 0;
        return out->decision;
    }
    /* Let's Encrypt exempts an in-window ARI replacement from its new-order
     * limits (Boulder's isARIRenewal path), so the local guard does too */
    if (!cf_renew_issues(d) || d == CF_RENEW_RENEW_FORCED || d == CF_RENEW_RENEW_ARI)
        return d;
    int limit = in->dup_limit > 0 ? in->dup_limit : DEFAULT_DUP_LIMIT;
    if (in->dup_count < limit)
        return d;
    char when[21];
    if (in->dup_next_allowed > 0)
        cf_x509_iso8601(in->dup_next_allowed, when);
    else
        snprintf(when, sizeof when, "7 days");
    char was[sizeof out->reason];
    snprintf(was, sizeof was, "%s", out->reason);
    snprintf(out->reason, sizeof out->reason,
             "refused: %d certificates for this exact domain set in the last 7 days; possible "
             "again after %s; use --force-renewal to override (wanted: %.200s)",
             in->dup_count, when, was);
    out->decision = CF_RENEW_REFUSED_RATELIMIT;
    out->wanted = d;
    out->renew_at = in->dup_next_allowed;
    return out->decision;
}

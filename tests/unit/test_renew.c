/* Unit tests: the renewal decision (renew.c), a pure function, driven
 * with hand-made certificate info and a fixed clock. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cf.h"
#include "renew.h"
#include "x509.h"

#define DAY 86400

static int64_t at(int y, int mo, int d, int h)
{
    struct tm tm = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h};
    return (int64_t)timegm(&tm);
}

static char *names_ab[] = {"a.example.com", "c.example.com"};

/* a current certificate for a.example.com + c.example.com, ecdsa-256 */
static struct cf_cert_info cur_cert(int64_t not_after)
{
    struct cf_cert_info ci;
    memset(&ci, 0, sizeof ci);
    ci.dns_names = names_ab;
    ci.n_dns = 2;
    ci.not_before = not_after - 90 * DAY;
    ci.not_after = not_after;
    strcpy(ci.key_type, "ecdsa-256");
    ci.subject_cn = "a.example.com";
    ci.issuer_cn = "R10";
    return ci;
}

static const char *const want_ac[] = {"c.example.com", "A.example.com."}; /* same set */

static struct cf_renew_input base(const struct cf_cert_info *cur, int64_t now)
{
    struct cf_renew_input in;
    memset(&in, 0, sizeof in);
    in.cur = cur;
    in.domains = want_ac;
    in.n_domains = 2;
    in.key_type = "ecdsa-256";
    in.renewal_days = 30;
    in.now = now;
    return in;
}

static void test_missing(void **state)
{
    struct cf_renew_result r;
    struct cf_renew_input in = base(NULL, at(2026, 11, 23, 0));
    assert_int_equal(cf_renew_decide(&in, &r), CF_RENEW_ISSUE_MISSING);
    assert_string_equal(r.reason, "no certificate in the store yet");
    assert_true(cf_renew_issues(r.decision));
    /* a placeholder is not a certificate */
    struct cf_cert_info ph = cur_cert(at(2026, 11, 30, 0));
    ph.subject_cn = ph.issuer_cn = CF_PLACEHOLDER_CN;
    in.cur = &ph;
    assert_int_equal(cf_renew_decide(&in, &r), CF_RENEW_ISSUE_MISSING);
    /* nothing configured: nothing to issue */
    in.n_domains = 0;
    assert_int_equal(cf_renew_decide(&in, &r), CF_RENEW_NONE);
}

static void test_nothing_to_do(void **state)
{
    struct cf_cert_info ci = cur_cert(at(2026, 12, 31, 10));
    struct cf_renew_input in = base(&ci, at(2026, 11, 1, 10));
    struct cf_renew_result r;
    assert_int_equal(cf_renew_decide(&in, &r), CF_RENEW_NONE);
    assert_string_equal(
        r.reason, "valid until 2026-12-31 (60 days); renewal due 2026-12-01 (renewal_days 30)");
    assert_int_equal(r.renew_at, at(2026, 12, 1, 10));
    assert_false(cf_renew_issues(r.decision));
}

static void test_domains_changed(void **state)
{
    struct cf_cert_info ci = cur_cert(at(2026, 12, 31, 0));
    const char *const want[] = {"a.example.com", "b.example.com"};
    struct cf_renew_input in = base(&ci, at(2026, 11, 1, 0));
    in.domains = want;
    struct cf_renew_result r;
    assert_int_equal(cf_renew_decide(&in, &r), CF_RENEW_REISSUE_DOMAINS);
    assert_string_equal(r.reason, "domain set changed: +b.example.com -c.example.com");
    /* a pure addition, and a duplicate in the configuration is not a change */
    const char *const more[] = {"a.example.com", "c.example.com", "d.example.com", "a.example.com"};
    in.domains = more;
    in.n_domains = 4;
    assert_int_equal(cf_renew_decide(&in, &r), CF_RENEW_REISSUE_DOMAINS);
    assert_string_equal(r.reason, "domain set changed: +d.example.com");
    in.n_domains = 2; /* a, c: the same set, other order and case handled in base */
    assert_int_equal(cf_renew_decide(&in, &r), CF_RENEW_NONE);
}

static void test_key_type_changed(void **state)
{
    struct cf_cert_info ci = cur_cert(at(2026, 12, 31, 0));
    struct cf_renew_input in = base(&ci, at(2026, 11, 1, 0));
    in.key_type = "rsa-2048";
    struct cf_renew_result r;
    assert_int_equal(cf_renew_decide(&in, &r), CF_RENEW_REISSUE_KEYTYPE);
    assert_string_equal(r.reason, "key type changed: ecdsa-256 -> rsa-2048");
    in.key_type = NULL; /* not configured: keep whatever it is */
    assert_int_equal(cf_renew_decide(&in, &r), CF_RENEW_NONE);
}

static void test_expiry_window(void **state)
{
    int64_t exp = at(2026, 12, 1, 10);
    struct cf_cert_info ci = cur_cert(exp);
    struct cf_renew_input in = base(&ci, exp - 8 * DAY);
    struct cf_renew_result r;
    assert_int_equal(cf_renew_decide(&in, &r), CF_RENEW_RENEW_EXPIRY);
    assert_string_equal(r.reason, "expires 2026-12-01 (8 days), within renewal_days 30");
    /* the boundary: exactly renewal_days before expiry renews, a second earlier does not */
    in.now = exp - 30 * DAY;
    assert_int_equal(cf_renew_decide(&in, &r), CF_RENEW_RENEW_EXPIRY);
    in.now = exp - 30 * DAY - 1;
    assert_int_equal(cf_renew_decide(&in, &r), CF_RENEW_NONE);
    assert_int_equal(r.renew_at, exp - 30 * DAY);
    /* certbot_renewal_days: 31 from the seed's group_vars */
    in.renewal_days = 31;
    assert_int_equal(cf_renew_decide(&in, &r), CF_RENEW_RENEW_EXPIRY);
    assert_string_equal(r.reason, "expires 2026-12-01 (30 days), within renewal_days 31");
    /* unset means certbot's default of 30 */
    in.renewal_days = 0;
    assert_int_equal(cf_renew_decide(&in, &r), CF_RENEW_NONE);
    /* expired */
    in.now = exp + 3 * DAY;
    assert_int_equal(cf_renew_decide(&in, &r), CF_RENEW_RENEW_EXPIRY);
    assert_string_equal(r.reason, "expired 2026-12-01 (3 days ago)");
}

static void test_forced(void **state)
{
    struct cf_cert_info ci = cur_cert(at(2026, 12, 31, 0));
    struct cf_renew_input in = base(&ci, at(2026, 11, 1, 0));
    in.force = 1;
    struct cf_renew_result r;
    assert_int_equal(cf_renew_decide(&in, &r), CF_RENEW_RENEW_FORCED);
    assert_string_equal(r.reason, "forced (--force-renewal); expires 2026-12-31 (60 days)");
    /* missing wins over forced: the reason is more useful */
    in.cur = NULL;
    assert_int_equal(cf_renew_decide(&in, &r), CF_RENEW_ISSUE_MISSING);
}

static void test_ari(void **state)
{
    int64_t exp = at(2026, 12, 31, 0);
    struct cf_cert_info ci = cur_cert(exp);
    struct cf_renew_input in = base(&ci, at(2026, 11, 1, 0));
    in.has_ari = 1;
    in.ari_start = at(2026, 11, 20, 0);
    in.ari_end = at(2026, 11, 22, 0);
    in.ari_fraction = 0.25; /* 12 hours into the window */
    struct cf_renew_result r;
    assert_int_equal(cf_renew_decide(&in, &r), CF_RENEW_NONE);
    assert_int_equal(r.renew_at, at(2026, 11, 20, 12));
    assert_string_equal(r.reason, "valid until 2026-12-31 (60 days); ARI window 2026-11-20 to "
                                  "2026-11-22, renewal at 2026-11-20T12:00:00Z");
    in.now = at(2026, 11, 20, 11);
    assert_int_equal(cf_renew_decide(&in, &r), CF_RENEW_NONE);
    in.now = at(2026, 11, 20, 12);
    assert_int_equal(cf_renew_decide(&in, &r), CF_RENEW_RENEW_ARI);
    assert_non_null(strstr(r.reason, "ARI window opened 2026-11-20"));
    /* the window replaces renewal_days: inside renewal_days but before the window */
    in.ari_start = at(2026, 12, 20, 0);
    in.ari_end = at(2026, 12, 22, 0);
    in.ari_fraction = 0.0;
    in.now = at(2026, 12, 15, 0); /* 16 days left, renewal_days 30 */
    assert_int_equal(cf_renew_decide(&in, &r), CF_RENEW_NONE);
    assert_int_equal(r.renew_at, at(2026, 12, 20, 0));
    /* a window starting after expiry is ignored: renewal_days applies */
    in.ari_start = exp + DAY;
    in.ari_end = exp + 2 * DAY;
    assert_int_equal(cf_renew_decide(&in, &r), CF_RENEW_RENEW_EXPIRY);
    /* expired beats a later window */
    in.ari_start = at(2026, 12, 20, 0);
    in.ari_end = at(2026, 12, 22, 0);
    in.now = exp;
    assert_int_equal(cf_renew_decide(&in, &r), CF_RENEW_RENEW_EXPIRY);
    /* fraction just under 1 stays inside the window */
    in.now = at(2026, 12, 1, 0);
    in.ari_fraction = 0.9999999;
    assert_int_equal(cf_renew_decide(&in, &r), CF_RENEW_NONE);
    assert_true(r.renew_at < in.ari_end && r.renew_at > in.ari_start);
}

static void test_rate_limit(void **state)
{
    struct cf_cert_info ci = cur_cert(at(2026, 12, 1, 10));
    struct cf_renew_input in = base(&ci, at(2026, 11, 23, 10));
    in.dup_count = 5;
    in.dup_next_allowed = at(2026, 11, 25, 10);
    struct cf_renew_result r;
    assert_int_equal(cf_renew_decide(&in, &r), CF_RENEW_REFUSED_RATELIMIT);
    assert_int_equal(r.wanted, CF_RENEW_RENEW_EXPIRY);
    assert_false(cf_renew_issues(r.decision));
    assert_non_null(strstr(r.reason, "refused: 5 certificates for this exact domain set in the "
                                     "last 7 days; possible again after 2026-11-25T10:00:00Z; "
                                     "use --force-renewal to override"));
    assert_non_null(strstr(r.reason, "expires 2026-12-01 (8 days)"));
    /* four is still allowed */
    in.dup_count = 4;
    assert_int_equal(cf_renew_decide(&in, &r), CF_RENEW_RENEW_EXPIRY);
    /* --force-renewal overrides */
    in.dup_count = 6;
    in.force = 1;
    assert_int_equal(cf_renew_decide(&in, &r), CF_RENEW_RENEW_FORCED);
    /* a limit never turns "nothing to do" into a refusal */
    in.force = 0;
    in.now = at(2026, 10, 1, 0);
    assert_int_equal(cf_renew_decide(&in, &r), CF_RENEW_NONE);
    /* missing certificates are refused too (the CA would refuse them) */
    in.cur = NULL;
    assert_int_equal(cf_renew_decide(&in, &r), CF_RENEW_REFUSED_RATELIMIT);
    assert_int_equal(r.wanted, CF_RENEW_ISSUE_MISSING);
    /* a custom limit */
    in.dup_limit = 10;
    assert_int_equal(cf_renew_decide(&in, &r), CF_RENEW_ISSUE_MISSING);
}

static void test_names(void **state)
{
    assert_string_equal(cf_renew_decision_name(CF_RENEW_NONE), "none");
    assert_string_equal(cf_renew_decision_name(CF_RENEW_ISSUE_MISSING), "issue-missing");
    assert_string_equal(cf_renew_decision_name(CF_RENEW_REISSUE_DOMAINS), "reissue-domains");
    assert_string_equal(cf_renew_decision_name(CF_RENEW_REISSUE_KEYTYPE), "reissue-keytype");
    assert_string_equal(cf_renew_decision_name(CF_RENEW_RENEW_EXPIRY), "renew-expiry");
    assert_string_equal(cf_renew_decision_name(CF_RENEW_RENEW_ARI), "renew-ari");
    assert_string_equal(cf_renew_decision_name(CF_RENEW_RENEW_FORCED), "renew-forced");
    assert_string_equal(cf_renew_decision_name(CF_RENEW_REFUSED_RATELIMIT), "refused-ratelimit");
}

/* A journaled order of a killed run is finished when nothing else is due,
 * and never refused by the duplicate limit (it places no new order). */
static void test_interrupted_order(void **state)
{
    int64_t now = at(2026, 12, 1, 12);
    struct cf_cert_info ci = cur_cert(now + 60 * DAY);
    struct cf_renew_input in = {.cur = &ci,
                                .domains = (const char *const *)names_ab,
                                .n_domains = 2,
                                .key_type = "ecdsa-256",
                                .renewal_days = 30,
                                .now = now,
                                .interrupted_order = 1,
                                .dup_count = 9};
    struct cf_renew_result out;
    assert_int_equal(cf_renew_decide(&in, &out), CF_RENEW_RESUME_ORDER);
    assert_string_equal(cf_renew_decision_name(out.decision), "resume-order");
    assert_true(cf_renew_issues(out.decision));
    assert_non_null(strstr(out.reason, "interrupted run"));
    /* due anyway: the ordinary decision stands (the order is resumed all the same) */
    ci.not_after = now + 10 * DAY;
    in.dup_count = 0;
    assert_int_equal(cf_renew_decide(&in, &out), CF_RENEW_RENEW_EXPIRY);
    /* without a journaled order nothing is due */
    ci.not_after = now + 60 * DAY;
    in.interrupted_order = 0;
    assert_int_equal(cf_renew_decide(&in, &out), CF_RENEW_NONE);
}

/* Without ARI: renewal_days, unless it exceeds half the lifetime; then
 * 2/3 of the lifetime, 1/2 under 10 days.  Times are hours after
 * notBefore; each row: lifetime, renewal_days, now, decision, rule. */
static void test_lifetime_rule(void **state)
{
    static const struct {
        int64_t life_h;
        int renewal_days;
        int64_t now_h;
        enum cf_renew_decision want;
        int64_t due_h; /* renew_at - notBefore, when NONE */
        int rule;
    } rows[] = {
        /* 90 days, 30: renewal_days decides (due at day 60) */
        {90 * 24, 30, 59 * 24, CF_RENEW_NONE, 60 * 24, 0},
        {90 * 24, 30, 60 * 24, CF_RENEW_RENEW_EXPIRY, 0, 0},
        /* 45 days, 30: 30 > 22.5, so 2/3 = day 30, not day 15 */
        {45 * 24, 30, 16 * 24, CF_RENEW_NONE, 30 * 24, 1},
        {45 * 24, 30, 29 * 24, CF_RENEW_NONE, 30 * 24, 1},
        {45 * 24, 30, 30 * 24, CF_RENEW_RENEW_EXPIRY, 0, 1},
        /* 45 days, 20: 20 <= 22.5, renewal_days decides (day 25) */
        {45 * 24, 20, 24 * 24, CF_RENEW_NONE, 25 * 24, 0},
        /* 6 days (shortlived), 30: 1/2 = 72 h; not on every run */
        {6 * 24, 30, 1, CF_RENEW_NONE, 72, 1},
        {6 * 24, 30, 71, CF_RENEW_NONE, 72, 1},
        {6 * 24, 30, 72, CF_RENEW_RENEW_EXPIRY, 0, 1},
        /* 160 hours: still under 10 days */
        {160, 30, 79, CF_RENEW_NONE, 80, 1},
        /* 10 days exactly, 7: 2/3 = 160 h */
        {10 * 24, 7, 159, CF_RENEW_NONE, 160, 1},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        int64_t nb = at(2026, 11, 1, 0);
        struct cf_cert_info ci = cur_cert(nb + rows[i].life_h * 3600);
        ci.not_before = nb;
        struct cf_renew_input in = base(&ci, nb + rows[i].now_h * 3600);
        in.renewal_days = rows[i].renewal_days;
        struct cf_renew_result r;
        cf_renew_decide(&in, &r);
        if (r.decision != rows[i].want || r.lifetime_rule != rows[i].rule)
            fail_msg("row %zu: %s (rule %d): %s", i, cf_renew_decision_name(r.decision),
                     r.lifetime_rule, r.reason);
        if (rows[i].want == CF_RENEW_NONE)
            assert_int_equal(r.renew_at, nb + rows[i].due_h * 3600);
        if (rows[i].rule)
            assert_non_null(strstr(r.reason, "exceeds half of it"));
    }
    /* the text names the fraction and the lifetime */
    int64_t nb = at(2026, 11, 1, 0);
    struct cf_cert_info ci = cur_cert(nb + 6 * DAY);
    ci.not_before = nb;
    struct cf_renew_input in = base(&ci, nb + 3600);
    struct cf_renew_result r;
    cf_renew_decide(&in, &r);
    assert_string_equal(r.reason, "valid until 2026-11-07 (5 days); renewal due "
                                  "2026-11-04T00:00:00Z, at 1/2 of its 6-day lifetime "
                                  "(renewal_days 30 exceeds half of it)");
}

/* A 429 rateLimited's Retry-After holds every ordering decision, forced
 * ones too; nothing-to-do stays nothing-to-do. */
static void test_ca_rate_limit(void **state)
{
    int64_t now = at(2026, 12, 1, 12);
    static const struct {
        int have_cur;
        int64_t days_left;
        int force;
        int64_t retry_in; /* seconds from now; 0 = none */
        enum cf_renew_decision want, wanted;
    } rows[] = {
        {1, 10, 0, 3600, CF_RENEW_WAIT_CA_LIMIT, CF_RENEW_RENEW_EXPIRY},
        {1, 10, 1, 3600, CF_RENEW_WAIT_CA_LIMIT, CF_RENEW_RENEW_FORCED},
        {0, 0, 0, 3600, CF_RENEW_WAIT_CA_LIMIT, CF_RENEW_ISSUE_MISSING},
        {1, 60, 0, 3600, CF_RENEW_NONE, CF_RENEW_NONE},
        {1, 10, 0, -1, CF_RENEW_RENEW_EXPIRY, CF_RENEW_RENEW_EXPIRY}, /* passed */
        {1, 10, 0, 0, CF_RENEW_RENEW_EXPIRY, CF_RENEW_RENEW_EXPIRY},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        struct cf_cert_info ci = cur_cert(now + rows[i].days_left * DAY);
        struct cf_renew_input in = base(rows[i].have_cur ? &ci : NULL, now);
        in.force = rows[i].force;
        in.ca_retry_at = rows[i].retry_in ? now + rows[i].retry_in : 0;
        struct cf_renew_result r;
        cf_renew_decide(&in, &r);
        if (r.decision != rows[i].want || r.wanted != rows[i].wanted)
            fail_msg("row %zu: %s/%s: %s", i, cf_renew_decision_name(r.decision),
                     cf_renew_decision_name(r.wanted), r.reason);
        if (r.decision == CF_RENEW_WAIT_CA_LIMIT) {
            assert_false(cf_renew_issues(r.decision));
            assert_int_equal(r.renew_at, now + 3600);
            assert_non_null(strstr(r.reason, "retry after 2026-12-01T13:00:00Z"));
        }
    }
    assert_string_equal(cf_renew_decision_name(CF_RENEW_WAIT_CA_LIMIT), "wait-ca-ratelimit");
}

/* An ARI-window renewal is not held by the local duplicate guard (Let's
 * Encrypt exempts it); explanationURL shows in the reason. */
static void test_ari_exempt_and_explained(void **state)
{
    int64_t exp = at(2026, 12, 31, 0);
    struct cf_cert_info ci = cur_cert(exp);
    struct cf_renew_input in = base(&ci, at(2026, 11, 21, 0));
    in.has_ari = 1;
    in.ari_start = at(2026, 11, 20, 0);
    in.ari_end = at(2026, 11, 22, 0);
    in.ari_explanation = "https://ca.example/incident/42";
    in.dup_count = 9;
    struct cf_renew_result r;
    assert_int_equal(cf_renew_decide(&in, &r), CF_RENEW_RENEW_ARI);
    assert_non_null(strstr(r.reason, "the CA explains: https://ca.example/incident/42"));
    in.now = at(2026, 11, 1, 0);
    assert_int_equal(cf_renew_decide(&in, &r), CF_RENEW_NONE);
    assert_non_null(strstr(r.reason, "https://ca.example/incident/42"));
    /* the expiry fallback is still guarded */
    in.has_ari = 0;
    in.now = at(2026, 12, 25, 0);
    assert_int_equal(cf_renew_decide(&in, &r), CF_RENEW_REFUSED_RATELIMIT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_missing),
        cmocka_unit_test(test_nothing_to_do),
        cmocka_unit_test(test_domains_changed),
        cmocka_unit_test(test_key_type_changed),
        cmocka_unit_test(test_expiry_window),
        cmocka_unit_test(test_forced),
        cmocka_unit_test(test_ari),
        cmocka_unit_test(test_rate_limit),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_interrupted_order),
        cmocka_unit_test(test_lifetime_rule),
        cmocka_unit_test(test_ca_rate_limit),
        cmocka_unit_test(test_ari_exempt_and_explained),
    };
    return cmocka_run_group_tests_name("renew", tests, NULL, NULL);
}

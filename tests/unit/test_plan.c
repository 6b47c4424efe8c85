/* Unit tests: the pipeline's decisions (plan.c), pure functions driven
 * through tables: push targets, rollout batches, the key of an order,
 * and what a rollback restores. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "cf.h"
#include "plan.h"

#define DAY 86400

static void test_push_targets(void **state)
{
    const int64_t nb = 1700000000; /* the store's version's notBefore */
    static const struct {
        const char *what;
        struct cf_plan_host h;
        int force;
        enum cf_plan_push want;
    } cases[] = {
        {"unprepared host", {0, NULL, 0, 0, 0, 0}, 0, CF_PLAN_PUSH_SKIP},
        {"unprepared host with an old version", {0, "01", nb - DAY, 0, 0, 0}, 0, CF_PLAN_PUSH_SKIP},
        {"nothing live", {1, NULL, 0, 0, 0, 0}, 0, CF_PLAN_PUSH_NEEDED},
        {"current version", {1, "0ABC", nb, 0, 0, 0}, 0, CF_PLAN_PUSH_CURRENT},
        {"current files, other served", {1, "0ABC", nb, 0, 1, 0}, 0, CF_PLAN_PUSH_NEEDED},
        {"older version", {1, "01", nb - 30 * DAY, 0, 0, 0}, 0, CF_PLAN_PUSH_NEEDED},
        {"placeholder", {1, "77", nb + DAY, 1, 0, 0}, 0, CF_PLAN_PUSH_NEEDED},
        {"newer certificate: downgrade", {1, "02", nb + DAY, 0, 0, 0}, 0, CF_PLAN_PUSH_DOWNGRADE},
        {"newer certificate, --force-push", {1, "02", nb + DAY, 0, 0, 0}, 1, CF_PLAN_PUSH_NEEDED},
        {"current serial, mixed links", {1, "0ABC", nb, 0, 0, 1}, 0, CF_PLAN_PUSH_NEEDED},
        {"same notBefore, other serial", {1, "02", nb, 0, 0, 0}, 0, CF_PLAN_PUSH_NEEDED},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        enum cf_plan_push got = cf_plan_push_target(&cases[i].h, "0ABC", nb, cases[i].force);
        if (got != cases[i].want)
            fail_msg("%s: got %d, want %d", cases[i].what, got, cases[i].want);
    }
}

static void test_rollout(void **state)
{
    static const struct {
        const char *what;
        size_t next, n_targets, n_hosts, failed;
        int serial, max_fail;
        enum cf_plan_rollout want;
        size_t start, end;
    } cases[] = {
        {"all at once", 0, 5, 5, 0, 0, -1, CF_PLAN_ROLLOUT_BATCH, 0, 5},
        {"done", 5, 5, 5, 0, 0, -1, CF_PLAN_ROLLOUT_DONE, 5, 5},
        {"nothing to push", 0, 0, 3, 0, 2, 0, CF_PLAN_ROLLOUT_DONE, 0, 0},
        {"serial 2, first", 0, 5, 5, 0, 2, -1, CF_PLAN_ROLLOUT_BATCH, 0, 2},
        {"serial 2, last is short", 4, 5, 5, 0, 2, -1, CF_PLAN_ROLLOUT_BATCH, 4, 5},
        {"failures without a limit go on", 2, 5, 5, 2, 2, -1, CF_PLAN_ROLLOUT_BATCH, 2, 4},
        {"0%: one failure stops", 1, 5, 5, 1, 1, 0, CF_PLAN_ROLLOUT_STOPPED, 1, 1},
        {"20% of 5: one failure is at the limit", 1, 5, 5, 1, 1, 20, CF_PLAN_ROLLOUT_BATCH, 1, 2},
        {"20% of 5: two failures stop", 2, 5, 5, 2, 1, 20, CF_PLAN_ROLLOUT_STOPPED, 2, 2},
        {"limit counts all hosts, not targets", 1, 2, 10, 1, 1, 10, CF_PLAN_ROLLOUT_BATCH, 1, 2},
        {"stopped is only checked before a batch", 5, 5, 5, 5, 1, 0, CF_PLAN_ROLLOUT_DONE, 5, 5},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t s = 99, e = 99;
        enum cf_plan_rollout got =
            cf_plan_rollout_next(cases[i].next, cases[i].n_targets, cases[i].n_hosts,
                                 cases[i].failed, cases[i].serial, cases[i].max_fail, &s, &e);
        if (got != cases[i].want)
            fail_msg("%s: got %d, want %d", cases[i].what, got, cases[i].want);
        if (got == CF_PLAN_ROLLOUT_BATCH && (s != cases[i].start || e != cases[i].end))
            fail_msg("%s: batch [%zu,%zu), want [%zu,%zu)", cases[i].what, s, e, cases[i].start,
                     cases[i].end);
    }
}

static void test_key_choice(void **state)
{
    static const struct {
        const char *what;
        int reuse;
        enum cf_renew_decision d;
        const char *stored, *wanted;
        enum cf_plan_key want;
    } cases[] = {
        {"no reuse", 0, CF_RENEW_RENEW_EXPIRY, "ecdsa-256", "ecdsa-256", CF_PLAN_KEY_NEW},
        {"reuse on expiry", 1, CF_RENEW_RENEW_EXPIRY, "ecdsa-256", "ecdsa-256", CF_PLAN_KEY_REUSE},
        {"reuse on ARI", 1, CF_RENEW_RENEW_ARI, "rsa-2048", "rsa-2048", CF_PLAN_KEY_REUSE},
        {"reuse when forced", 1, CF_RENEW_RENEW_FORCED, "rsa-2048", "rsa-2048", CF_PLAN_KEY_REUSE},
        {"reuse on a domain change", 1, CF_RENEW_REISSUE_DOMAINS, "ecdsa-256", "ecdsa-256",
         CF_PLAN_KEY_REUSE},
        {"key type changed: new key", 1, CF_RENEW_REISSUE_KEYTYPE, "ecdsa-256", "rsa-2048",
         CF_PLAN_KEY_NEW},
        {"decision keytype, same stored type", 1, CF_RENEW_REISSUE_KEYTYPE, "rsa-2048", "rsa-2048",
         CF_PLAN_KEY_NEW},
        {"stored type differs (stale conf)", 1, CF_RENEW_RENEW_EXPIRY, "ecdsa-256", "ecdsa-384",
         CF_PLAN_KEY_NEW},
        {"rsa size differs", 1, CF_RENEW_RENEW_FORCED, "rsa-2048", "rsa-4096", CF_PLAN_KEY_NEW},
        {"nothing stored", 1, CF_RENEW_ISSUE_MISSING, NULL, "ecdsa-256", CF_PLAN_KEY_NEW},
        {"stored key unreadable", 1, CF_RENEW_RENEW_EXPIRY, "", "ecdsa-256", CF_PLAN_KEY_NEW},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        enum cf_plan_key got =
            cf_plan_key_choice(cases[i].reuse, cases[i].d, cases[i].stored, cases[i].wanted);
        if (got != cases[i].want)
            fail_msg("%s: got %d, want %d", cases[i].what, got, cases[i].want);
    }
}

static void test_rollback(void **state)
{
    static const char *const v3[CF_PLAN_LIVE_FILES] = {
        "../../archive/a/cert3.pem", "../../archive/a/chain3.pem", "../../archive/a/fullchain3.pem",
        "../../archive/a/privkey3.pem"};
    /* a new host given its placeholder (version 0) earlier in the run */
    static const char *const v0[CF_PLAN_LIVE_FILES] = {
        "../../archive/a/cert0.pem", "../../archive/a/chain0.pem", "../../archive/a/fullchain0.pem",
        "../../archive/a/privkey0.pem"};
    static const char *const partial[CF_PLAN_LIVE_FILES] = {"../../archive/a/cert1.pem", NULL,
                                                            "../../archive/a/fullchain1.pem", NULL};
    static const char *const none[CF_PLAN_LIVE_FILES] = {NULL, NULL, NULL, NULL};
    static const struct {
        const char *what;
        const char *const *prev;
        size_t want_n;
    } cases[] = {
        {"previous version", v3, 4},
        {"placeholder of this run", v0, 4},
        {"partly linked before: missing links removed", partial, 4},
        {"nothing before: nothing restored", none, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct cf_plan_link out[CF_PLAN_LIVE_FILES];
        memset(out, 0, sizeof out);
        size_t n = cf_plan_rollback(cases[i].prev, out);
        if (n != cases[i].want_n)
            fail_msg("%s: %zu ops, want %zu", cases[i].what, n, cases[i].want_n);
        for (size_t k = 0; k < n; k++) {
            const char *want = cases[i].prev[out[k].file];
            if ((want == NULL) != (out[k].target == NULL) || (want && strcmp(want, out[k].target)))
                fail_msg("%s: op %zu restores %s, want %s", cases[i].what, k,
                         out[k].target ? out[k].target : "(remove)", want ? want : "(remove)");
        }
        /* every file is covered exactly once */
        int seen = 0;
        for (size_t k = 0; k < n; k++)
            seen |= 1 << out[k].file;
        if (n && seen != 0xf)
            fail_msg("%s: files covered 0x%x", cases[i].what, seen);
    }
}

static void test_links_version(void **state)
{
    static const struct {
        const char *what;
        const char *t[CF_PLAN_LIVE_FILES];
        int want;
    } cases[] = {
        {"one version",
         {"../../archive/a/cert3.pem", "../../archive/a/chain3.pem",
          "../../archive/a/fullchain3.pem", "../../archive/a/privkey3.pem"},
         3},
        {"placeholder",
         {"../../archive/a/cert0.pem", "../../archive/a/chain0.pem",
          "../../archive/a/fullchain0.pem", "../../archive/a/privkey0.pem"},
         0},
        {"absolute targets",
         {"/etc/letsencrypt/archive/a/cert12.pem", "/etc/letsencrypt/archive/a/chain12.pem",
          "/etc/letsencrypt/archive/a/fullchain12.pem", "/etc/letsencrypt/archive/a/privkey12.pem"},
         12},
        {"killed between two swaps",
         {"../../archive/a/cert6.pem", "../../archive/a/chain6.pem",
          "../../archive/a/fullchain5.pem", "../../archive/a/privkey5.pem"},
         -1},
        {"a link missing",
         {"../../archive/a/cert6.pem", NULL, "../../archive/a/fullchain6.pem",
          "../../archive/a/privkey6.pem"},
         -1},
        {"kinds in the wrong place",
         {"../../archive/a/chain6.pem", "../../archive/a/cert6.pem",
          "../../archive/a/fullchain6.pem", "../../archive/a/privkey6.pem"},
         -1},
        {"not a version",
         {"../../archive/a/cert.pem", "../../archive/a/chain.pem", "../../archive/a/fullchain.pem",
          "../../archive/a/privkey.pem"},
         -1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int got = cf_plan_links_version(cases[i].t);
        if (got != cases[i].want)
            fail_msg("%s: got %d, want %d", cases[i].what, got, cases[i].want);
    }
}

/* `replaces` only with renewalInfo, the same directory and the same
 * account (RFC 9773 §5; Boulder refuses the others on every run). */
static void test_replaces(void **state)
{
    static const char *le = "https://acme-v02.api.letsencrypt.org/directory";
    static const char *stg = "https://acme-staging-v02.api.letsencrypt.org/directory";
    static const char *acct = "https://ca/acct/1";
    static const struct {
        int ari;
        const char *stored_server, *server, *stored_account, *account;
        int want;
    } rows[] = {
        {1, "https://acme-v02.api.letsencrypt.org/directory",
         "https://acme-v02.api.letsencrypt.org/directory", "https://ca/acct/1", "https://ca/acct/1",
         1},
        {0, "https://acme-v02.api.letsencrypt.org/directory",
         "https://acme-v02.api.letsencrypt.org/directory", "https://ca/acct/1", "https://ca/acct/1",
         0}, /* no renewalInfo */
        {1, "https://acme-staging-v02.api.letsencrypt.org/directory",
         "https://acme-v02.api.letsencrypt.org/directory", "https://ca/acct/1", "https://ca/acct/1",
         0}, /* staging -> production */
        {1, "https://acme-v02.api.letsencrypt.org/directory",
         "https://acme-v02.api.letsencrypt.org/directory", "https://ca/acct/1", "https://ca/acct/2",
         0}, /* another account */
        {1, NULL, "https://acme-v02.api.letsencrypt.org/directory", "https://ca/acct/1",
         "https://ca/acct/1", 0}, /* no server recorded */
        {1, "https://acme-v02.api.letsencrypt.org/directory",
         "https://acme-v02.api.letsencrypt.org/directory", NULL, "https://ca/acct/1",
         0}, /* no account recorded (older conf) */
        {1, "https://acme-v02.api.letsencrypt.org/directory",
         "https://acme-v02.api.letsencrypt.org/directory", "https://ca/acct/1", NULL,
         0}, /* account not known */
        {1, "", "", "", "", 0},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        if (cf_plan_replaces(rows[i].ari, rows[i].stored_server, rows[i].server,
                             rows[i].stored_account, rows[i].account) != rows[i].want)
            fail_msg("row %zu: want %d", i, rows[i].want);
    assert_int_equal(cf_plan_replaces(1, le, le, acct, acct), 1);
    assert_int_equal(cf_plan_replaces(1, stg, le, acct, acct), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_push_targets),  cmocka_unit_test(test_rollout),
        cmocka_unit_test(test_key_choice),    cmocka_unit_test(test_rollback),
        cmocka_unit_test(test_links_version), cmocka_unit_test(test_replaces),
    };
    return cmocka_run_group_tests_name("plan", tests, NULL, NULL);
}

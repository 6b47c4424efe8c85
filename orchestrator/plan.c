/*
 * plan.c - the pipeline's pure decisions (see plan.h).
 */
#include "cf.h"
#include "plan.h"

#include <stdlib.h>
#include <string.h>

enum cf_plan_push cf_plan_push_target(const struct cf_plan_host *h, const char *serial,
                                      int64_t not_before, int force_push)
{
    if (!h->ready)
        return CF_PLAN_PUSH_SKIP;
    if (h->live_serial && serial && !strcmp(h->live_serial, serial))
        return h->serves_other || h->links_mixed ? CF_PLAN_PUSH_NEEDED : CF_PLAN_PUSH_CURRENT;
    if (h->live_serial && !h->live_placeholder && !force_push && h->live_not_before > not_before)
        return CF_PLAN_PUSH_DOWNGRADE;
    return CF_PLAN_PUSH_NEEDED;
}

enum cf_plan_rollout cf_plan_rollout_next(size_t next, size_t n_targets, size_t n_hosts,
                                          size_t failed, int serial, int max_fail_pct,
                                          size_t *start, size_t *end)
{
    *start = *end = next;
    if (next >= n_targets)
        return CF_PLAN_ROLLOUT_DONE;
    if (max_fail_pct >= 0 && failed > 0 && failed * 100 > (size_t)max_fail_pct * n_hosts)
        return CF_PLAN_ROLLOUT_STOPPED;
    size_t batch = serial > 0 ? (size_t)serial : n_targets;
    *end = next + batch < n_targets ? next + batch : n_targets;
    return CF_PLAN_ROLLOUT_BATCH;
}

enum cf_plan_key cf_plan_key_choice(int reuse_key, enum cf_renew_decision d,
                                    const char *stored_key_type, const char *wanted_key_type)
{
    if (!reuse_key || !stored_key_type || !*stored_key_type || !wanted_key_type)
        return CF_PLAN_KEY_NEW;
    if (d == CF_RENEW_ISSUE_MISSING || d == CF_RENEW_REISSUE_KEYTYPE)
        return CF_PLAN_KEY_NEW;
    return strcmp(stored_key_type, wanted_key_type) ? CF_PLAN_KEY_NEW : CF_PLAN_KEY_REUSE;
}

int cf_plan_replaces(int directory_has_renewal_info, const char *stored_server, const char *server,
                     const char *stored_account, const char *account)
{
    if (!directory_has_renewal_info)
        return 0;
    if (!stored_server || !*stored_server || !server || strcmp(stored_server, server) != 0)
        return 0;
    return stored_account && *stored_account && account && !strcmp(stored_account, account);
}

size_t cf_plan_rollback(const char *const prev[CF_PLAN_LIVE_FILES],
                        struct cf_plan_link out[CF_PLAN_LIVE_FILES])
{
    int any = 0;
    for (int i = 0; i < CF_PLAN_LIVE_FILES; i++)
        any |= prev[i] != NULL;
    if (!any)
        return 0;
    for (int i = 0; i < CF_PLAN_LIVE_FILES; i++)
        out[i] = (struct cf_plan_link){i, prev[i]};
    return CF_PLAN_LIVE_FILES;
}

int cf_plan_links_version(const char *const targets[CF_PLAN_LIVE_FILES])
{
    static const char *const kinds[CF_PLAN_LIVE_FILES] = {"cert", "chain", "fullchain", "privkey"};
    int version = -1;
    for (int i = 0; i < CF_PLAN_LIVE_FILES; i++) {
        if (!targets[i])
            return -1;
        const char *base = strrchr(targets[i], '/');
        base = base ? base + 1 : targets[i];
        size_t kl = strlen(kinds[i]);
        if (strncmp(base, kinds[i], kl) != 0)
            return -1;
        char *end = NULL;
        long n = strtol(base + kl, &end, 10);
        if (end == base + kl || strcmp(end, ".pem") != 0 || n < 0 || n > 1000000)
            return -1;
        if (version >= 0 && n != version)
            return -1;
        version = (int)n;
    }
    return version;
}

/*
 * plan.h - the pipeline's decisions as pure functions (no I/O), so unit
 * tests drive them directly: which hosts get a version, in which batches,
 * with which key, and what a rollback restores.  The renewal decision
 * itself is renew.h.
 */
#ifndef CF_PLAN_H
#define CF_PLAN_H

#include <stddef.h>
#include <stdint.h>

#include "renew.h"

/* live/<cert>/{cert,chain,fullchain,privkey}.pem */
#define CF_PLAN_LIVE_FILES 4

/* --- which hosts need the store's current version */

enum cf_plan_push {
    CF_PLAN_PUSH_SKIP,      /* host not prepared: nothing can be pushed */
    CF_PLAN_PUSH_CURRENT,   /* it already has the current version */
    CF_PLAN_PUSH_NEEDED,    /* push the current version */
    CF_PLAN_PUSH_DOWNGRADE, /* refused: the host has a newer certificate */
};

struct cf_plan_host {
    int ready;               /* reachable and prepared */
    const char *live_serial; /* serial of its live certificate, NULL = none */
    int64_t live_not_before; /* notBefore of that certificate */
    int live_placeholder;    /* the live certificate is our placeholder */
    int serves_other;        /* a TLS probe saw a serial other than the live one */
    int links_mixed;         /* the live links do not all name one version */
};

/* What to do for one host, given the store's current version (serial and
 * notBefore).  A push never replaces a certificate with an older one for
 * the same names (two stores pushing over each other) unless force_push;
 * a placeholder is always replaced.  A host whose files are current but
 * that serves something else (never reloaded, nginx stopped), or whose
 * live links name different versions (a run killed between two link
 * swaps), is pushed again, which re-runs the test and the reload. */
enum cf_plan_push cf_plan_push_target(const struct cf_plan_host *h, const char *serial,
                                      int64_t not_before, int force_push);

/* --- the rollout: Ansible's serial + max_fail_percentage */

enum cf_plan_rollout {
    CF_PLAN_ROLLOUT_BATCH,   /* push targets [*start, *end) now */
    CF_PLAN_ROLLOUT_DONE,    /* every target was started */
    CF_PLAN_ROLLOUT_STOPPED, /* more than max_fail_pct of the hosts failed */
};

/* The next batch after `next` of `n_targets` targets, for a certificate
 * of `n_hosts` hosts of which `failed` have failed so far.  serial <= 0
 * means one batch of everything; max_fail_pct < 0 means no limit; a
 * batch is never started once failed * 100 > max_fail_pct * n_hosts. */
enum cf_plan_rollout cf_plan_rollout_next(size_t next, size_t n_targets, size_t n_hosts,
                                          size_t failed, int serial, int max_fail_pct,
                                          size_t *start, size_t *end);

/* --- the key of a new order */

enum cf_plan_key {
    CF_PLAN_KEY_NEW,   /* generate a key of the configured type */
    CF_PLAN_KEY_REUSE, /* keep the stored key (certbot_reuse_key) */
};

/* certbot_reuse_key keeps the stored key only when there is one, of the
 * configured type (normalised, as cf_x509_key_type_norm gives), and the
 * decision is not about the key itself: reissuing for a key-type change
 * with the old key would decide "reissue-keytype" again on every run. */
enum cf_plan_key cf_plan_key_choice(int reuse_key, enum cf_renew_decision d,
                                    const char *stored_key_type, const char *wanted_key_type);

/* --- the ARI `replaces` field of a new order (RFC 9773 §5) */

/* 1 when an order may name the stored certificate in `replaces`: the
 * directory advertises renewalInfo (§5: clients SHOULD NOT send it
 * otherwise), and the stored version was issued by this same directory
 * URL and to this same account URL, as its renewal conf records them.
 * A certificate of another CA, of staging, of another account, or with
 * no record of either, would make Boulder refuse every order (404, 403
 * or 400), so it is never named.  Any NULL or "" input gives 0. */
int cf_plan_replaces(int directory_has_renewal_info, const char *stored_server, const char *server,
                     const char *stored_account, const char *account);

/* --- what a rollback restores */

struct cf_plan_link {
    int file;           /* index into cert, chain, fullchain, privkey */
    const char *target; /* restore this link target; NULL = remove the link */
};

/* The link operations that put a host back where it was before this
 * run's push: prev[i] is the link target before the push (the version
 * installed earlier in the same run counts: a placeholder or the store's
 * version given to a new host), NULL when the link did not exist.  Links
 * that did not exist are removed.  Fills out[] (CF_PLAN_LIVE_FILES
 * entries) and returns how many; 0 when the host had no link at all
 * before, in which case nothing is restored (a rollback would leave a
 * config that refers to missing files). */
size_t cf_plan_rollback(const char *const prev[CF_PLAN_LIVE_FILES],
                        struct cf_plan_link out[CF_PLAN_LIVE_FILES]);

/* The version the live links name ("../../archive/<cert>/<kind>N.pem",
 * relative or absolute): N when all CF_PLAN_LIVE_FILES links exist and
 * name the same N, -1 when they are missing or mixed. */
int cf_plan_links_version(const char *const targets[CF_PLAN_LIVE_FILES]);

#endif

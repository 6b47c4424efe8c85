/*
 * renew.h - the renewal decision: a pure function (no I/O, no clock, no
 * randomness of its own) from what the store holds and what the
 * configuration wants to what to do and why.  `plan` prints the reason,
 * `apply`/`renew` act on the decision.
 */
#ifndef CF_RENEW_H
#define CF_RENEW_H

#include <stddef.h>
#include <stdint.h>

#include "cf.h"
#include "x509.h"

enum cf_renew_decision {
    CF_RENEW_NONE = 0,          /* nothing to do */
    CF_RENEW_ISSUE_MISSING,     /* no certificate in the store */
    CF_RENEW_REISSUE_DOMAINS,   /* the configured domain set differs */
    CF_RENEW_REISSUE_KEYTYPE,   /* the configured key type differs */
    CF_RENEW_RENEW_EXPIRY,      /* within renewal_days of expiry (or expired) */
    CF_RENEW_RENEW_ARI,         /* the ACME server's renewal window says so */
    CF_RENEW_RENEW_FORCED,      /* --force-renewal */
    CF_RENEW_REFUSED_RATELIMIT, /* would exceed the duplicate certificate limit */
    CF_RENEW_RESUME_ORDER,      /* an interrupted run's order is still at the CA */
    CF_RENEW_WAIT_CA_LIMIT,     /* the CA said rateLimited; its Retry-After has not passed */
};

struct cf_renew_input {
    const struct cf_cert_info *cur; /* the store's current version; NULL = none */
    const char *const *domains;     /* wanted domain set */
    size_t n_domains;
    const char *key_type;        /* wanted, normalised ("ecdsa-256"); NULL = keep */
    int renewal_days;            /* certbot_renewal_days (<= 0 means 30) */
    int has_ari;                 /* the server offered a renewal window */
    int64_t ari_start, ari_end;  /* suggestedWindow, epoch seconds */
    double ari_fraction;         /* in [0,1): where in the window to renew */
    const char *ari_explanation; /* the window's explanationURL (RFC 9773 §4.2), or NULL */
    int force;                   /* --force-renewal */
    int64_t now;                 /* epoch seconds */
    int dup_count;               /* cf_db_duplicate_check for the wanted set */
    int64_t dup_next_allowed;
    int dup_limit; /* 0 = CF_DUP_LIMIT (5) */
    /* an order of an interrupted run is in the journal: when nothing else
     * is due, finish it (the CA may have issued already) rather than
     * waste it; it places no new order, so no duplicate limit applies */
    int interrupted_order;
    /* the time a 429 rateLimited answer of this CA said to come back
     * (Retry-After, recorded in the state database); 0 = none.  Until
     * then no decision orders, --force-renewal included: the CA would
     * only refuse again, and each refusal counts against the account. */
    int64_t ca_retry_at;
};

struct cf_renew_result {
    enum cf_renew_decision decision;
    /* the decision that was refused, for REFUSED_RATELIMIT; else = decision */
    enum cf_renew_decision wanted;
    int64_t renew_at; /* when renewal becomes due (NONE); 0 when issuing now */
    /* renewal_days was at least half the certificate's lifetime, so the
     * lifetime rule decided (2/3 of it, 1/2 under 10 days): plan warns */
    int lifetime_rule;
    char reason[512]; /* one line for plan/recap, e.g. "expires 2026-12-01 (8 days), ..." */
};

/* Decide.  Precedence: missing, domain set, key type, forced, expired,
 * ARI window (which replaces renewal_days when present), renewal_days.
 * Without ARI, renewal is due renewal_days before expiry, unless that is
 * more than half the certificate's lifetime: then at 2/3 of the lifetime
 * (1/2 for lifetimes under 10 days), so short-lived certificates are not
 * reordered on every run (out->lifetime_rule is set).
 * Any decision that issues, except a forced one or an ARI-window renewal
 * (which Let's Encrypt exempts from its limits), is refused when the
 * wanted domain set already has dup_limit issuances in the last 7 days;
 * the reason says when it becomes possible and how to override.
 * Any decision that issues becomes CF_RENEW_WAIT_CA_LIMIT while
 * ca_retry_at is in the future; the reason names that time.
 * Returns out->decision. */
enum cf_renew_decision cf_renew_decide(const struct cf_renew_input *in,
                                       struct cf_renew_result *out);

/* A stable lowercase name for JSON and logs: "none", "issue-missing",
 * "reissue-domains", "reissue-keytype", "renew-expiry", "renew-ari",
 * "renew-forced", "refused-ratelimit", "resume-order", "wait-ca-ratelimit". */
const char *cf_renew_decision_name(enum cf_renew_decision d);

/* 1 when the decision means an ACME order should be placed. */
int cf_renew_issues(enum cf_renew_decision d);

#endif

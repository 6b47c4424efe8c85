/*
 * status.h - the fleet status report: classification of one host x domain
 * endpoint, urgency order, and renderers (text table, JSON, Prometheus
 * node_exporter textfile, one self-contained HTML file).
 *
 * Everything here is pure: no I/O, no clock (callers pass `now`), so unit
 * tests drive it directly.  A row owns all of its text (fixed arrays), so
 * an array of rows can be sorted and copied freely.
 *
 * Typical use (cmd_status): probe each endpoint (probe.h), then per row
 * cf_status_row_from_probe(), cf_status_classify(), then cf_status_sort(),
 * a renderer into a cf_buf, and cf_status_exit_code() for the exit code.
 */
#ifndef CF_STATUS_H
#define CF_STATUS_H

#include <stddef.h>
#include <stdint.h>

#include "cf.h"
#include "util.h"

struct cf_probe_result;

/* In urgency order: a smaller value is more urgent. */
enum cf_state {
    CF_STATE_EXPIRED = 0,
    CF_STATE_UNREACHABLE,
    CF_STATE_MISSING,
    CF_STATE_MISMATCH,
    CF_STATE_RENEW_SOON,
    CF_STATE_OK,
};
#define CF_STATE_COUNT 6

enum cf_match { CF_MATCH_UNKNOWN = -1, CF_MATCH_NO = 0, CF_MATCH_YES = 1 };

struct cf_status_row {
    /* Inputs: who and what was probed. */
    char group[128];   /* the host's group(s) as the caller wants them shown */
    char host[128];    /* inventory name */
    char address[128]; /* what was connected to, e.g. "127.0.40.1:8443" */
    char domain[256];  /* the SNI name */
    char cert[128];    /* cert_name (the store's name for the certificate) */
    /* Inputs: what the probe saw (probe_status != 0: nothing below). */
    int probe_status;  /* 0 or CF_E* */
    char serial[132];  /* served leaf, uppercase hex */
    char issuer[256];  /* issuer CN */
    int64_t not_after; /* unix seconds */
    int covers_domain; /* the served leaf's names match domain */
    /* Inputs: what the central store says. */
    char store_serial[132]; /* current version's serial; "" = see store_missing */
    int store_missing;      /* 1: the store was read and has no certificate */
    char error[CF_ERRLEN];  /* probe error, or the classifier's explanation */
    /* Outputs of cf_status_classify(): */
    int days_left; /* floor((not_after - now) / 86400), as certbot counts */
    enum cf_match matches_store;
    enum cf_state state;
};

/* Fill a row's probe inputs from a probe result (serial, issuer, expiry,
 * whether the leaf covers the domain, the error text).  Identity and store
 * fields are left as they are. */
void cf_status_row_from_probe(struct cf_status_row *row, const struct cf_probe_result *res);

/*
 * Decide a row's state from its inputs, as a pure function of them:
 *   probe failed                            UNREACHABLE
 *   store has no certificate, or the served leaf does not cover the
 *   domain (nginx fell back to another server's certificate)  MISSING
 *   served leaf past notAfter               EXPIRED
 *   store's serial known and different      MISMATCH
 *   days_left < max(renew_days, warn_days)  RENEW-SOON
 *   otherwise                               OK
 * renew_days is certbot_renewal_days (when certfleet will renew; <0 = 30);
 * warn_days is --warn-days / certbot_warning_days (-1 = unset).  Sets
 * days_left, matches_store, state, and an explanation in error when empty.
 */
void cf_status_classify(struct cf_status_row *row, int64_t now, int renew_days, int warn_days);

/* "OK", "RENEW-SOON", "EXPIRED", "MISMATCH", "MISSING", "UNREACHABLE". */
const char *cf_status_state_name(enum cf_state s);

/* Sort by urgency: state order above, then days left (fewest first), then
 * host and domain so the order is stable across runs. */
void cf_status_sort(struct cf_status_row *rows, size_t n);

/* counts[state] for the summary line; counts has CF_STATE_COUNT slots. */
void cf_status_count(const struct cf_status_row *rows, size_t n, size_t counts[CF_STATE_COUNT]);

/*
 * The exit code rule: CF_EXIT_FAILED (1) when any row is EXPIRED, MISMATCH,
 * MISSING or UNREACHABLE, or - when warn_days >= 0 - RENEW-SOON; else 0.
 */
int cf_status_exit_code(const struct cf_status_row *rows, size_t n, int warn_days);

struct cf_notify;

/* Add a WARNING alert (notify.h) for every row whose served certificate has
 * fewer than warn_days days left (certbot_warning_days), expired ones
 * included; warn_days < 0 adds none.  Returns how many were added. */
size_t cf_status_add_warnings(const struct cf_status_row *rows, size_t n, int warn_days,
                              struct cf_notify *notify, int64_t now);

/* What the renderers need besides the rows. */
struct cf_status_meta {
    int64_t now;           /* the scan time, unix seconds */
    int color;             /* text: ANSI colours (cf_use_color(1)) */
    int last_run_success;  /* prometheus: 1/0, -1 = take it from the rows */
    int64_t last_run_time; /* prometheus: unix seconds; 0 = now */
    const char *title;     /* html: page title; NULL = "certfleet status" */
};

/* Renderers append to out and return 0 or CF_ENOMEM.  Rows are rendered in
 * the order given (sort first). */

/* Aligned table with a header, colours by state when meta->color, then a
 * summary line "N endpoints: a OK, b RENEW-SOON, ..." and, for failing
 * rows, their error lines. */
int cf_status_render_text(struct cf_buf *out, const struct cf_status_row *rows, size_t n,
                          const struct cf_status_meta *meta);

/* {"generated_at": ISO, "summary": {"OK": n, ...}, "exit_code": n,
 *  "endpoints": [{group, host, address, domain, cert, issuer, serial,
 *  not_after (ISO or null), days_left (or null), matches_store (true,
 *  false, null), state, error (or null)}]} */
int cf_status_render_json(struct cf_buf *out, const struct cf_status_row *rows, size_t n,
                          const struct cf_status_meta *meta);

/* node_exporter textfile format (HELP/TYPE, escaped labels):
 *   certfleet_certificate_expiry_timestamp_seconds{host,domain,group,cert}
 *   certfleet_certificate_remaining_seconds{...}  ("days left" in promtool's base
 *                                                 unit: seconds, negative once expired)
 *   certfleet_certificate_matches_store{...}     (rows where it is known)
 *   certfleet_endpoint_up{...}                   (1 when the handshake worked)
 *   certfleet_endpoint_state{...,state}          (1 for the row's state)
 *   certfleet_last_run_success, certfleet_last_run_timestamp_seconds */
int cf_status_render_prometheus(struct cf_buf *out, const struct cf_status_row *rows, size_t n,
                                const struct cf_status_meta *meta);

/* One HTML5 document with no external resources: inline CSS, a summary,
 * an inline SVG timeline of expiries, and the table. */
int cf_status_render_html(struct cf_buf *out, const struct cf_status_row *rows, size_t n,
                          const struct cf_status_meta *meta);

#endif

/*
 * db.h - the state database <state>/state.db (SQLite, WAL, busy_timeout):
 * what every run did, for rate-limit bookkeeping, `status` and reports.
 *
 *   runs        (id, started, finished, command, limit, ok, changed, failed, exit_code)
 *   issuances   (run, cert_name, domains, serial, not_before, not_after, key_type,
 *                version, forced, at)
 *   deployments (run, host, cert_name, version, serial, result, message, at)
 *   scans       (run, host, domain, serial, not_after, state, at)
 *
 * Times are epoch seconds.  `domains` is the canonical domain set (lower
 * case, sorted, unique, comma-joined: cf_db_domain_key) so "the same exact
 * set" is a string comparison.  Key material is never stored here.
 *
 * Calls are short synchronous SQLite statements on a local file; the
 * busy_timeout (5 s) only matters when two runs write at the same moment.
 */
#ifndef CF_DB_H
#define CF_DB_H

#include <stddef.h>
#include <stdint.h>

#include "cf.h"

struct sqlite3;

struct cf_db {
    struct sqlite3 *h;
    char *path;
};

/* Let's Encrypt's duplicate certificate limit: 5 per exact set, 7 days. */
#define CF_DUP_LIMIT    5
#define CF_DUP_WINDOW_S (7 * 86400)

/* Open (creating when needed) <state_dir>/state.db and its tables.  The
 * state directory must exist (cf_store_open creates it).  Close with
 * cf_db_close (safe on a zeroed struct). */
int cf_db_open(struct cf_db *db, const char *state_dir, char *err);
/* Open read-only for reporting commands; CF_ENOENT when there is no
 * database yet. */
int cf_db_open_readonly(struct cf_db *db, const char *state_dir, char *err);
void cf_db_close(struct cf_db *db);

/* The canonical domain set key: lower case, trailing dots dropped, sorted,
 * duplicates removed, joined with ','.  Caller frees. */
char *cf_db_domain_key(const char *const *domains, size_t n);

/* A run starts: *run_id receives its id for the rows that follow. */
int cf_db_run_begin(struct cf_db *db, const char *command, const char *limit, int64_t started,
                    int64_t *run_id, char *err);
/* A run ends; ok/changed/failed are host or certificate counts. */
int cf_db_run_finish(struct cf_db *db, int64_t run_id, int64_t finished, int ok, int changed,
                     int failed, int exit_code, char *err);

struct cf_db_issuance {
    const char *cert_name;
    const char *const *domains;
    size_t n_domains;
    const char *serial; /* uppercase hex */
    int64_t not_before;
    int64_t not_after;
    const char *key_type;
    int version;
    int forced;
    int64_t at;
};
int cf_db_add_issuance(struct cf_db *db, int64_t run_id, const struct cf_db_issuance *is,
                       char *err);

/* result is "ok", "changed" or "failed"; message may be NULL. */
int cf_db_add_deployment(struct cf_db *db, int64_t run_id, const char *host, const char *cert_name,
                         int version, const char *serial, const char *result, const char *message,
                         int64_t at, char *err);

int cf_db_add_scan(struct cf_db *db, int64_t run_id, const char *host, const char *domain,
                   const char *serial, int64_t not_after, const char *state, int64_t at, char *err);

/* Duplicate-certificate bookkeeping: *count = issuances for exactly this
 * domain set in (now - 7 days, now]; when *count >= CF_DUP_LIMIT,
 * *next_allowed = the moment enough of them age out for one more, else 0.
 * Forced issuances count too (the CA counts them). */
int cf_db_duplicate_check(struct cf_db *db, const char *const *domains, size_t n, int64_t now,
                          int *count, int64_t *next_allowed, char *err);

struct cf_db_run {
    int64_t id;
    int64_t started;
    int64_t finished; /* 0 while running or when it crashed */
    char command[32];
    int ok, changed, failed;
    int exit_code; /* -1 when it never finished */
};
/* The most recent run that finished (optionally of one command; NULL =
 * any).  CF_ENOENT when there is none. */
int cf_db_last_run(struct cf_db *db, const char *command, struct cf_db_run *out, char *err);

struct cf_db_deployment {
    int64_t run;
    int version;
    char serial[130];
    char result[16];
    char message[512];
    int64_t at;
};
/* The latest deployment of cert_name to host.  CF_ENOENT when none. */
int cf_db_last_deployment(struct cf_db *db, const char *host, const char *cert_name,
                          struct cf_db_deployment *out, char *err);

/* --- what the CA asked us to wait for, per certificate (ca_waits) */

enum cf_db_wait_kind {
    CF_DB_WAIT_RATELIMIT, /* a 429 rateLimited: no order before `until` */
    CF_DB_WAIT_ARI,       /* an ARI answer: ask again only after `until` */
};

struct cf_db_wait {
    int64_t until;              /* epoch seconds */
    char serial[160];           /* ARI: the certificate asked about; "" = any */
    int64_t win_start, win_end; /* ARI: the suggested window */
    char detail[512];           /* ratelimit: the CA's message; ARI: explanationURL; "" = none */
};

/* Record (replace) the wait of one kind for cert_name. */
int cf_db_wait_put(struct cf_db *db, const char *cert_name, enum cf_db_wait_kind kind,
                   const struct cf_db_wait *w, int64_t now, char *err);

/* The wait of one kind for cert_name that lasts beyond now into *out;
 * CF_ENOENT when there is none (or it has passed, or the file predates
 * the table). */
int cf_db_wait_get(struct cf_db *db, const char *cert_name, enum cf_db_wait_kind kind, int64_t now,
                   struct cf_db_wait *out, char *err);

/* Forget the wait of one kind for cert_name. */
int cf_db_wait_del(struct cf_db *db, const char *cert_name, enum cf_db_wait_kind kind, char *err);

#endif

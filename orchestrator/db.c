/*
 * db.c - the SQLite state database (see db.h).
 */
#include "cf.h"
#include "db.h"
#include "util.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sqlite3.h>

#define SCHEMA_VERSION 2 /* 2: ca_waits */

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS runs ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT, started INTEGER NOT NULL, finished INTEGER,"
    " command TEXT NOT NULL, \"limit\" TEXT, ok INTEGER, changed INTEGER, failed INTEGER,"
    " exit_code INTEGER);"
    "CREATE TABLE IF NOT EXISTS issuances ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT, run INTEGER REFERENCES runs(id),"
    " cert_name TEXT NOT NULL, domains TEXT NOT NULL, serial TEXT NOT NULL,"
    " not_before INTEGER, not_after INTEGER, key_type TEXT, version INTEGER,"
    " forced INTEGER NOT NULL DEFAULT 0, at INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS issuances_domains_at ON issuances(domains, at);"
    "CREATE TABLE IF NOT EXISTS deployments ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT, run INTEGER REFERENCES runs(id),"
    " host TEXT NOT NULL, cert_name TEXT NOT NULL, version INTEGER, serial TEXT,"
    " result TEXT NOT NULL CHECK (result IN ('ok','changed','failed')), message TEXT,"
    " at INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS deployments_host_cert ON deployments(host, cert_name, at);"
    "CREATE TABLE IF NOT EXISTS scans ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT, run INTEGER REFERENCES runs(id),"
    " host TEXT NOT NULL, domain TEXT NOT NULL, serial TEXT, not_after INTEGER,"
    " state TEXT NOT NULL, at INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS scans_host_domain ON scans(host, domain, at);"
    /* version 2; CREATE ... IF NOT EXISTS adds it to a version 1 file */
    "CREATE TABLE IF NOT EXISTS ca_waits ("
    " cert_name TEXT NOT NULL, kind TEXT NOT NULL CHECK (kind IN ('ratelimit','ari')),"
    " until INTEGER NOT NULL, serial TEXT, win_start INTEGER, win_end INTEGER, detail TEXT,"
    " at INTEGER NOT NULL, PRIMARY KEY (cert_name, kind));";

static int db_err(struct cf_db *db, const char *what, char *err)
{
    cf_errf(err, "state database '%s': %s: %s", db->path ? db->path : "?", what,
            db->h ? sqlite3_errmsg(db->h) : "not open");
    return CF_EIO;
}

static int open_common(struct cf_db *db, const char *state_dir, int flags, char *err)
{
    memset(db, 0, sizeof *db);
    if (!state_dir || !*state_dir)
        return cf_errf(err, "no state directory given (--state-dir)");
    db->path = cf_asprintf("%s/state.db", state_dir);
    if (!(flags & SQLITE_OPEN_CREATE)) {
        struct stat st;
        if (stat(db->path, &st) != 0) {
            cf_errf(err, "state database '%s' does not exist yet (no run recorded)", db->path);
            free(db->path);
            db->path = NULL;
            return CF_ENOENT;
        }
    }
    /* A read-only opener (plan, status, certificates) must leave the state
     * directory as it found it: when no run is writing (no -wal file), open
     * the file immutable so SQLite creates no -shm/-wal beside it (an empty
     * -wal is what an earlier reader left: nothing to read in it). */
    char *uri = NULL;
    if (flags & SQLITE_OPEN_READONLY) {
        char *wal = cf_asprintf("%s-wal", db->path);
        struct stat wst;
        if (stat(wal, &wst) != 0 || wst.st_size == 0) {
            struct cf_buf u = CF_BUF_INIT;
            cf_buf_puts(&u, "file:");
            for (const char *c = db->path; *c; c++) {
                if (*c == '%' || *c == '?' || *c == '#')
                    cf_buf_printf(&u, "%%%02X", (unsigned char)*c);
                else
                    cf_buf_append(&u, c, 1);
            }
            cf_buf_puts(&u, "?mode=ro&immutable=1");
            uri = cf_buf_detach(&u, NULL);
            flags |= SQLITE_OPEN_URI;
        }
        free(wal);
    }
    /* NOFOLLOW: a state.db link planted in the state directory must not make
     * certfleet create or write a file where the link points */
    int orc = sqlite3_open_v2(uri ? uri : db->path, &db->h,
                              flags | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_NOFOLLOW, NULL);
    free(uri);
    if (orc != SQLITE_OK) {
        int rc = db_err(db, "cannot open", err);
        cf_db_close(db);
        return rc;
    }
    sqlite3_busy_timeout(db->h, 5000);
    sqlite3_extended_result_codes(db->h, 1);
    return 0;
}

int cf_db_open(struct cf_db *db, const char *state_dir, char *err)
{
    int rc = open_common(db, state_dir, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, err);
    if (rc)
        return rc;
    char *msg = NULL;
    /* WAL: a reporting command reads while a run writes */
    if (sqlite3_exec(db->h, "PRAGMA journal_mode=WAL; PRAGMA foreign_keys=ON;", NULL, NULL, &msg) !=
            SQLITE_OK ||
        sqlite3_exec(db->h, schema, NULL, NULL, &msg) != SQLITE_OK) {
        cf_errf(err, "state database '%s': cannot create tables: %s", db->path, msg ? msg : "?");
        sqlite3_free(msg);
        cf_db_close(db);
        return CF_EIO;
    }
    char *pragma = cf_asprintf("PRAGMA user_version=%d;", SCHEMA_VERSION);
    sqlite3_exec(db->h, pragma, NULL, NULL, NULL);
    free(pragma);
    return 0;
}

int cf_db_open_readonly(struct cf_db *db, const char *state_dir, char *err)
{
    return open_common(db, state_dir, SQLITE_OPEN_READONLY, err);
}

void cf_db_close(struct cf_db *db)
{
    if (!db)
        return;
    if (db->h)
        sqlite3_close(db->h);
    free(db->path);
    db->h = NULL;
    db->path = NULL;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

char *cf_db_domain_key(const char *const *domains, size_t n)
{
    char **v = cf_xcalloc(n + 1, sizeof(char *));
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (!domains[i])
            continue;
        char *d = cf_strdup(domains[i]);
        size_t l = strlen(d);
        if (l && d[l - 1] == '.')
            d[--l] = '\0';
        for (char *p = d; *p; p++)
            *p = (char)tolower((unsigned char)*p);
        if (!*d) {
            free(d);
            continue;
        }
        v[m++] = d;
    }
    qsort(v, m, sizeof(char *), cmp_str);
    struct cf_buf b = CF_BUF_INIT;
    for (size_t i = 0; i < m; i++) {
        if (i && !strcmp(v[i], v[i - 1]))
            continue;
        cf_buf_printf(&b, "%s%s", b.len ? "," : "", v[i]);
    }
    for (size_t i = 0; i < m; i++)
        free(v[i]);
    free(v);
    return cf_buf_detach(&b, NULL);
}

/* Prepare, bind by a tiny format ("t" text, "i" int64, "d" int), step once. */
static int exec_bind(struct cf_db *db, const char *sql, const char *fmt, int64_t *rowid, char *err,
                     ...)
{
    sqlite3_stmt *st = NULL;
    if (!db->h)
        return cf_errf(err, "state database is not open");
    if (sqlite3_prepare_v2(db->h, sql, -1, &st, NULL) != SQLITE_OK)
        return db_err(db, "cannot prepare a statement", err);
    va_list ap;
    va_start(ap, err);
    for (int i = 0; fmt[i]; i++) {
        int rc = SQLITE_OK;
        if (fmt[i] == 't') {
            const char *s = va_arg(ap, const char *);
            rc = s ? sqlite3_bind_text(st, i + 1, s, -1, SQLITE_TRANSIENT)
                   : sqlite3_bind_null(st, i + 1);
        } else if (fmt[i] == 'i') {
            rc = sqlite3_bind_int64(st, i + 1, va_arg(ap, int64_t));
        } else {
            rc = sqlite3_bind_int(st, i + 1, va_arg(ap, int));
        }
        if (rc != SQLITE_OK) {
            va_end(ap);
            sqlite3_finalize(st);
            return db_err(db, "cannot bind a value", err);
        }
    }
    va_end(ap);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return db_err(db, "cannot write", err);
    if (rowid)
        *rowid = sqlite3_last_insert_rowid(db->h);
    return 0;
}

int cf_db_run_begin(struct cf_db *db, const char *command, const char *limit, int64_t started,
                    int64_t *run_id, char *err)
{
    *run_id = 0;
    return exec_bind(db, "INSERT INTO runs(started, command, \"limit\") VALUES (?,?,?)", "itt",
                     run_id, err, started, command ? command : "?", limit);
}

int cf_db_run_finish(struct cf_db *db, int64_t run_id, int64_t finished, int ok, int changed,
                     int failed, int exit_code, char *err)
{
    return exec_bind(db,
                     "UPDATE runs SET finished=?, ok=?, changed=?, failed=?, exit_code=? "
                     "WHERE id=?",
                     "iddddi", NULL, err, finished, ok, changed, failed, exit_code, run_id);
}

/* A run id of 0 (no run recorded) is stored as NULL. */
static const char *run_ref(int64_t run_id, char buf[24])
{
    if (run_id <= 0)
        return NULL;
    snprintf(buf, 24, "%lld", (long long)run_id);
    return buf;
}

int cf_db_add_issuance(struct cf_db *db, int64_t run_id, const struct cf_db_issuance *is, char *err)
{
    if (!is->cert_name || !is->serial || !is->n_domains)
        return cf_errf(err, "an issuance needs a certificate name, serial and domains");
    char *key = cf_db_domain_key(is->domains, is->n_domains);
    char rb[24];
    int rc = exec_bind(db,
                       "INSERT INTO issuances(run, cert_name, domains, serial, not_before, "
                       "not_after, key_type, version, forced, at) VALUES "
                       "(CAST(? AS INTEGER),?,?,?,?,?,?,?,?,?)",
                       "ttttiitddi", NULL, err, run_ref(run_id, rb), is->cert_name, key, is->serial,
                       is->not_before, is->not_after, is->key_type, is->version, is->forced ? 1 : 0,
                       is->at);
    free(key);
    return rc;
}

int cf_db_add_deployment(struct cf_db *db, int64_t run_id, const char *host, const char *cert_name,
                         int version, const char *serial, const char *result, const char *message,
                         int64_t at, char *err)
{
    if (!result || (strcmp(result, "ok") && strcmp(result, "changed") && strcmp(result, "failed")))
        return cf_errf(err, "invalid deployment result '%s': use ok, changed or failed",
                       result ? result : "");
    char rb[24];
    return exec_bind(db,
                     "INSERT INTO deployments(run, host, cert_name, version, serial, result, "
                     "message, at) VALUES (CAST(? AS INTEGER),?,?,?,?,?,?,?)",
                     "tttdttti", NULL, err, run_ref(run_id, rb), host, cert_name, version, serial,
                     result, message, at);
}

int cf_db_add_scan(struct cf_db *db, int64_t run_id, const char *host, const char *domain,
                   const char *serial, int64_t not_after, const char *state, int64_t at, char *err)
{
    char rb[24];
    return exec_bind(db,
                     "INSERT INTO scans(run, host, domain, serial, not_after, state, at) "
                     "VALUES (CAST(? AS INTEGER),?,?,?,?,?,?)",
                     "ttttiti", NULL, err, run_ref(run_id, rb), host, domain, serial, not_after,
                     state, at);
}

int cf_db_duplicate_check(struct cf_db *db, const char *const *domains, size_t n, int64_t now,
                          int *count, int64_t *next_allowed, char *err)
{
    *count = 0;
    *next_allowed = 0;
    if (!db->h)
        return cf_errf(err, "state database is not open");
    char *key = cf_db_domain_key(domains, n);
    sqlite3_stmt *st = NULL;
    int rc = 0;
    /* newest first: the CF_DUP_LIMIT-th newest decides when one more fits */
    if (sqlite3_prepare_v2(db->h,
                           "SELECT at FROM issuances WHERE domains=? AND at>? AND at<=? "
                           "ORDER BY at DESC",
                           -1, &st, NULL) != SQLITE_OK) {
        rc = db_err(db, "cannot query issuances", err);
        goto out;
    }
    sqlite3_bind_text(st, 1, key, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, now - CF_DUP_WINDOW_S);
    sqlite3_bind_int64(st, 3, now);
    int s;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        (*count)++;
        if (*count == CF_DUP_LIMIT)
            *next_allowed = sqlite3_column_int64(st, 0) + CF_DUP_WINDOW_S;
    }
    if (s != SQLITE_DONE)
        rc = db_err(db, "cannot query issuances", err);
    if (*count < CF_DUP_LIMIT)
        *next_allowed = 0;
out:
    sqlite3_finalize(st);
    free(key);
    return rc;
}

static void copy_col(sqlite3_stmt *st, int col, char *dst, size_t n)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    snprintf(dst, n, "%s", t ? (const char *)t : "");
}

int cf_db_last_run(struct cf_db *db, const char *command, struct cf_db_run *out, char *err)
{
    memset(out, 0, sizeof *out);
    out->exit_code = -1;
    if (!db->h)
        return cf_errf(err, "state database is not open");
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db->h,
                           "SELECT id, started, finished, command, ok, changed, failed, "
                           "exit_code FROM runs WHERE finished IS NOT NULL AND "
                           "(?1 IS NULL OR command=?1) ORDER BY finished DESC, id DESC LIMIT 1",
                           -1, &st, NULL) != SQLITE_OK)
        return db_err(db, "cannot query runs", err);
    if (command)
        sqlite3_bind_text(st, 1, command, -1, SQLITE_TRANSIENT);
    int s = sqlite3_step(st), rc = 0;
    if (s == SQLITE_ROW) {
        out->id = sqlite3_column_int64(st, 0);
        out->started = sqlite3_column_int64(st, 1);
        out->finished = sqlite3_column_int64(st, 2);
        copy_col(st, 3, out->command, sizeof out->command);
        out->ok = sqlite3_column_int(st, 4);
        out->changed = sqlite3_column_int(st, 5);
        out->failed = sqlite3_column_int(st, 6);
        out->exit_code = sqlite3_column_type(st, 7) == SQLITE_NULL ? -1 : sqlite3_column_int(st, 7);
    } else if (s == SQLITE_DONE) {
        cf_errf(err, "no finished run recorded in '%s'", db->path);
        rc = CF_ENOENT;
    } else {
        rc = db_err(db, "cannot query runs", err);
    }
    sqlite3_finalize(st);
    return rc;
}

int cf_db_last_deployment(struct cf_db *db, const char *host, const char *cert_name,
                          struct cf_db_deployment *out, char *err)
{
    memset(out, 0, sizeof *out);
    if (!db->h)
        return cf_errf(err, "state database is not open");
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db->h,
                           "SELECT run, version, serial, result, message, at FROM deployments "
                           "WHERE host=? AND cert_name=? ORDER BY at DESC, id DESC LIMIT 1",
                           -1, &st, NULL) != SQLITE_OK)
        return db_err(db, "cannot query deployments", err);
    sqlite3_bind_text(st, 1, host, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, cert_name, -1, SQLITE_TRANSIENT);
    int s = sqlite3_step(st), rc = 0;
    if (s == SQLITE_ROW) {
        out->run = sqlite3_column_int64(st, 0);
        out->version = sqlite3_column_int(st, 1);
        copy_col(st, 2, out->serial, sizeof out->serial);
        copy_col(st, 3, out->result, sizeof out->result);
        copy_col(st, 4, out->message, sizeof out->message);
        out->at = sqlite3_column_int64(st, 5);
    } else if (s == SQLITE_DONE) {
        cf_errf(err, "no deployment of '%s' to '%s' recorded", cert_name, host);
        rc = CF_ENOENT;
    } else {
        rc = db_err(db, "cannot query deployments", err);
    }
    sqlite3_finalize(st);
    return rc;
}

static const char *wait_kind(enum cf_db_wait_kind k)
{
    return k == CF_DB_WAIT_ARI ? "ari" : "ratelimit";
}

int cf_db_wait_put(struct cf_db *db, const char *cert_name, enum cf_db_wait_kind kind,
                   const struct cf_db_wait *w, int64_t now, char *err)
{
    if (!cert_name || !w)
        return cf_errf(err, "a wait needs a certificate name");
    return exec_bind(db,
                     "INSERT OR REPLACE INTO ca_waits(cert_name, kind, until, serial, win_start, "
                     "win_end, detail, at) VALUES (?,?,?,?,?,?,?,?)",
                     "ttitiiti", NULL, err, cert_name, wait_kind(kind), w->until,
                     *w->serial ? w->serial : NULL, w->win_start, w->win_end,
                     *w->detail ? w->detail : NULL, now);
}

int cf_db_wait_get(struct cf_db *db, const char *cert_name, enum cf_db_wait_kind kind, int64_t now,
                   struct cf_db_wait *out, char *err)
{
    memset(out, 0, sizeof *out);
    if (!db->h)
        return cf_errf(err, "state database is not open");
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db->h,
                           "SELECT until, serial, win_start, win_end, detail FROM ca_waits "
                           "WHERE cert_name=? AND kind=? AND until>?",
                           -1, &st, NULL) != SQLITE_OK) {
        /* a version 1 file opened read-only has no such table: no wait */
        if (!strstr(sqlite3_errmsg(db->h), "no such table"))
            return db_err(db, "cannot query ca_waits", err);
        return CF_ENOENT;
    }
    sqlite3_bind_text(st, 1, cert_name, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, wait_kind(kind), -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, now);
    int s = sqlite3_step(st);
    int rc = CF_ENOENT;
    if (s == SQLITE_ROW) {
        out->until = sqlite3_column_int64(st, 0);
        copy_col(st, 1, out->serial, sizeof out->serial);
        out->win_start = sqlite3_column_int64(st, 2);
        out->win_end = sqlite3_column_int64(st, 3);
        copy_col(st, 4, out->detail, sizeof out->detail);
        rc = 0;
    } else if (s != SQLITE_DONE) {
        rc = db_err(db, "cannot query ca_waits", err);
    }
    sqlite3_finalize(st);
    return rc;
}

int cf_db_wait_del(struct cf_db *db, const char *cert_name, enum cf_db_wait_kind kind, char *err)
{
    return exec_bind(db, "DELETE FROM ca_waits WHERE cert_name=? AND kind=?", "tt", NULL, err,
                     cert_name, wait_kind(kind));
}

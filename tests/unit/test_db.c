/* Unit tests: the SQLite state database (db.c): schema, WAL, runs,
 * issuances and the duplicate-certificate bookkeeping, deployments. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "cf.h"
#include "db.h"
#include "util.h"
#include "testcert.h"

#define DAY 86400
static const int64_t T0 = 1800000000; /* 2027-01-15 */

struct fx {
    char *dir;
    struct cf_db db;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    f->dir = tc_tmpdir();
    char err[CF_ERRLEN];
    if (!f->dir || cf_db_open(&f->db, f->dir, err) != 0) {
        fprintf(stderr, "setup: %s\n", err);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    cf_db_close(&f->db);
    tc_rmrf(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

static void issue(struct fx *f, const char *const *doms, size_t n, int64_t when, int forced)
{
    struct cf_db_issuance is = {
        .cert_name = "app",
        .domains = doms,
        .n_domains = n,
        .serial = "0A1B",
        .not_before = when,
        .not_after = when + 90 * DAY,
        .key_type = "ecdsa-256",
        .version = 1,
        .forced = forced,
        .at = when,
    };
    char err[CF_ERRLEN];
    assert_int_equal(cf_db_add_issuance(&f->db, 0, &is, err), 0);
}

static void test_open_schema_wal(void **state)
{
    struct fx *f = *state;
    char *path = cf_asprintf("%s/state.db", f->dir);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    sqlite3 *h;
    assert_int_equal(sqlite3_open(path, &h), SQLITE_OK);
    sqlite3_stmt *s;
    assert_int_equal(sqlite3_prepare_v2(h, "PRAGMA journal_mode", -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(s, 0), "wal");
    sqlite3_finalize(s);
    /* the tables the others rely on, and no column for key material */
    assert_int_equal(sqlite3_prepare_v2(h,
                                        "SELECT group_concat(name) FROM (SELECT name FROM "
                                        "sqlite_master WHERE type='table' AND name NOT LIKE "
                                        "'sqlite_%' ORDER BY name)",
                                        -1, &s, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(s, 0),
                        "ca_waits,deployments,issuances,runs,scans");
    sqlite3_finalize(s);
    assert_int_equal(sqlite3_prepare_v2(h,
                                        "SELECT count(*) FROM pragma_table_info('issuances') "
                                        "WHERE name LIKE '%key%' AND name <> 'key_type'",
                                        -1, &s, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(s, 0), 0);
    sqlite3_finalize(s);
    sqlite3_close(h);
    /* opening again keeps the data (CREATE IF NOT EXISTS) */
    char err[CF_ERRLEN];
    const char *d[] = {"x.example.com"};
    issue(f, d, 1, T0, 0);
    cf_db_close(&f->db);
    assert_int_equal(cf_db_open(&f->db, f->dir, err), 0);
    int count;
    int64_t next;
    assert_int_equal(cf_db_duplicate_check(&f->db, d, 1, T0 + 1, &count, &next, err), 0);
    assert_int_equal(count, 1);
    free(path);
}

static void test_domain_key(void **state)
{
    const char *d[] = {"www.Example.com", "example.com.", "api.example.com", "EXAMPLE.com"};
    char *k = cf_db_domain_key(d, 4);
    assert_string_equal(k, "api.example.com,example.com,www.example.com");
    free(k);
    k = cf_db_domain_key(d, 0);
    assert_string_equal(k, "");
    free(k);
}

static void test_duplicate_limit(void **state)
{
    struct fx *f = *state;
    const char *set[] = {"b.example.com", "a.example.com"};
    const char *same[] = {"A.example.com", "b.example.com."}; /* same set, other spelling */
    const char *other[] = {"a.example.com"};
    char err[CF_ERRLEN];
    int count = -1;
    int64_t next = -1;
    int64_t now = T0 + 10 * DAY;

    assert_int_equal(cf_db_duplicate_check(&f->db, set, 2, now, &count, &next, err), 0);
    assert_int_equal(count, 0);
    assert_int_equal(next, 0);

    issue(f, set, 2, now - 8 * DAY, 0);  /* outside the 7-day window */
    issue(f, set, 2, now - 6 * DAY, 0);  /* the oldest inside */
    issue(f, same, 2, now - 5 * DAY, 1); /* forced ones count too */
    issue(f, set, 2, now - 3 * DAY, 0);
    issue(f, other, 1, now - 1 * DAY, 0); /* another set */
    issue(f, set, 2, now - 2 * DAY, 0);
    assert_int_equal(cf_db_duplicate_check(&f->db, set, 2, now, &count, &next, err), 0);
    assert_int_equal(count, 4);
    assert_int_equal(next, 0);

    issue(f, set, 2, now - 1 * DAY, 0);
    assert_int_equal(cf_db_duplicate_check(&f->db, same, 2, now, &count, &next, err), 0);
    assert_int_equal(count, 5);
    assert_int_equal(next, now - 6 * DAY + 7 * DAY); /* when the oldest ages out */

    issue(f, set, 2, now - 1, 0); /* six: two must age out */
    assert_int_equal(cf_db_duplicate_check(&f->db, set, 2, now, &count, &next, err), 0);
    assert_int_equal(count, 6);
    assert_int_equal(next, now - 5 * DAY + 7 * DAY);

    /* a day after the oldest aged out, one is still too many */
    assert_int_equal(cf_db_duplicate_check(&f->db, set, 2, now + DAY + 1, &count, &next, err), 0);
    assert_int_equal(count, 5);
    assert_int_equal(cf_db_duplicate_check(&f->db, other, 1, now, &count, &next, err), 0);
    assert_int_equal(count, 1);
}

static void test_runs(void **state)
{
    struct fx *f = *state;
    char err[CF_ERRLEN];
    struct cf_db_run r;
    assert_int_equal(cf_db_last_run(&f->db, NULL, &r, err), CF_ENOENT);
    int64_t a, b, c;
    assert_int_equal(cf_db_run_begin(&f->db, "apply", "web:!app4", T0, &a, err), 0);
    assert_int_equal(cf_db_run_finish(&f->db, a, T0 + 60, 10, 3, 0, 0, err), 0);
    assert_int_equal(cf_db_run_begin(&f->db, "status", NULL, T0 + 100, &b, err), 0);
    assert_int_equal(cf_db_run_finish(&f->db, b, T0 + 110, 4, 0, 1, 1, err), 0);
    assert_int_equal(cf_db_run_begin(&f->db, "apply", NULL, T0 + 200, &c, err), 0); /* running */
    assert_true(a > 0 && b > a && c > b);

    assert_int_equal(cf_db_last_run(&f->db, NULL, &r, err), 0);
    assert_int_equal(r.id, b);
    assert_string_equal(r.command, "status");
    assert_int_equal(r.failed, 1);
    assert_int_equal(r.exit_code, 1);
    assert_int_equal(cf_db_last_run(&f->db, "apply", &r, err), 0);
    assert_int_equal(r.id, a);
    assert_int_equal(r.started, T0);
    assert_int_equal(r.finished, T0 + 60);
    assert_int_equal(r.changed, 3);
    assert_int_equal(r.exit_code, 0);
    assert_int_equal(cf_db_last_run(&f->db, "renew", &r, err), CF_ENOENT);
}

static void test_deployments_and_scans(void **state)
{
    struct fx *f = *state;
    char err[CF_ERRLEN];
    int64_t run;
    assert_int_equal(cf_db_run_begin(&f->db, "apply", NULL, T0, &run, err), 0);
    assert_int_equal(
        cf_db_add_deployment(&f->db, run, "app3", "app", 1, "0A", "changed", NULL, T0 + 1, err), 0);
    assert_int_equal(cf_db_add_deployment(&f->db, run, "app3", "app", 2, "0B", "failed",
                                          "nginx -t failed", T0 + 5, err),
                     0);
    assert_int_equal(
        cf_db_add_deployment(&f->db, run, "app4", "app", 2, "0B", "ok", NULL, T0 + 9, err), 0);
    assert_int_equal(
        cf_db_add_deployment(&f->db, run, "app4", "app", 2, "0B", "broken", NULL, T0 + 9, err),
        CF_EINVAL);
    assert_non_null(strstr(err, "invalid deployment result 'broken'"));
    struct cf_db_deployment d;
    assert_int_equal(cf_db_last_deployment(&f->db, "app3", "app", &d, err), 0);
    assert_int_equal(d.version, 2);
    assert_string_equal(d.serial, "0B");
    assert_string_equal(d.result, "failed");
    assert_string_equal(d.message, "nginx -t failed");
    assert_int_equal(d.run, run);
    assert_int_equal(cf_db_last_deployment(&f->db, "app5", "app", &d, err), CF_ENOENT);

    assert_int_equal(cf_db_add_scan(&f->db, run, "app3", "a.example.com", "0B", T0 + 90 * DAY, "OK",
                                    T0 + 20, err),
                     0);
    sqlite3_stmt *s;
    assert_int_equal(
        sqlite3_prepare_v2(f->db.h, "SELECT host, domain, state, run FROM scans", -1, &s, NULL),
        SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(s, 0), "app3");
    assert_string_equal((const char *)sqlite3_column_text(s, 2), "OK");
    assert_int_equal(sqlite3_column_int64(s, 3), run);
    sqlite3_finalize(s);
}

static void test_readonly_missing(void **state)
{
    char *dir = tc_tmpdir();
    struct cf_db db;
    char err[CF_ERRLEN] = "";
    assert_int_equal(cf_db_open_readonly(&db, dir, err), CF_ENOENT);
    assert_non_null(strstr(err, "does not exist yet"));
    char *path = cf_asprintf("%s/state.db", dir);
    struct stat st;
    assert_int_not_equal(stat(path, &st), 0); /* nothing created */
    cf_db_close(&db);
    free(path);
    tc_rmrf(dir);
    free(dir);
}

/* A state.db link planted in the state directory is refused: SQLite must
 * not create or write the file it points to. */
static void test_refuses_db_symlink(void **state)
{
    char *dir = tc_tmpdir();
    char *db = cf_asprintf("%s/state.db", dir);
    char *target = cf_asprintf("%s/created-through-link", dir);
    assert_int_equal(symlink(target, db), 0);
    struct cf_db h;
    char err[CF_ERRLEN] = "";
    assert_int_not_equal(cf_db_open(&h, dir, err), 0);
    assert_non_null(strstr(err, "state.db"));
    struct stat st;
    assert_int_not_equal(lstat(target, &st), 0);
    /* an existing target is not read through the link either */
    FILE *fp = fopen(target, "w");
    assert_non_null(fp);
    fclose(fp);
    assert_int_not_equal(cf_db_open_readonly(&h, dir, err), 0);
    tc_rmrf(dir);
    free(target);
    free(db);
    free(dir);
}

/* What the CA asked to wait for: kept per certificate and kind, gone
 * once its time has passed. */
static void test_ca_waits(void **state)
{
    struct fx *f = *state;
    char err[CF_ERRLEN];
    struct cf_db_wait w = {.until = 5000}, got;
    snprintf(w.detail, sizeof w.detail, "acme: rateLimited");
    assert_int_equal(cf_db_wait_put(&f->db, "web", CF_DB_WAIT_RATELIMIT, &w, 1000, err), 0);
    assert_int_equal(cf_db_wait_get(&f->db, "web", CF_DB_WAIT_RATELIMIT, 4999, &got, err), 0);
    assert_int_equal(got.until, 5000);
    assert_string_equal(got.detail, "acme: rateLimited");
    assert_int_equal(cf_db_wait_get(&f->db, "web", CF_DB_WAIT_RATELIMIT, 5000, &got, err),
                     CF_ENOENT);
    assert_int_equal(cf_db_wait_get(&f->db, "web", CF_DB_WAIT_ARI, 1000, &got, err), CF_ENOENT);
    assert_int_equal(cf_db_wait_get(&f->db, "other", CF_DB_WAIT_RATELIMIT, 1000, &got, err),
                     CF_ENOENT);
    w.until = 9000;
    assert_int_equal(cf_db_wait_put(&f->db, "web", CF_DB_WAIT_RATELIMIT, &w, 1000, err), 0);
    assert_int_equal(cf_db_wait_get(&f->db, "web", CF_DB_WAIT_RATELIMIT, 6000, &got, err), 0);
    assert_int_equal(cf_db_wait_del(&f->db, "web", CF_DB_WAIT_RATELIMIT, err), 0);
    assert_int_equal(cf_db_wait_get(&f->db, "web", CF_DB_WAIT_RATELIMIT, 6000, &got, err),
                     CF_ENOENT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_schema_wal, setup, teardown),
        cmocka_unit_test(test_domain_key),
        cmocka_unit_test_setup_teardown(test_duplicate_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_runs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deployments_and_scans, setup, teardown),
        cmocka_unit_test(test_readonly_missing),
        cmocka_unit_test(test_refuses_db_symlink),
        cmocka_unit_test_setup_teardown(test_ca_waits, setup, teardown),
    };
    return cmocka_run_group_tests_name("db", tests, NULL, NULL);
}

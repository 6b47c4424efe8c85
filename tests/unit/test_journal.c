/* Unit tests: the journal of in-flight orders and tokens (journal.c), on
 * a temporary state directory: what a killed run leaves for the next. */
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

#include "cf.h"
#include "journal.h"

static char dir[64];

static int setup(void **state)
{
    snprintf(dir, sizeof dir, "/tmp/cf-journal.XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    char *cmd = NULL;
    if (asprintf(&cmd, "rm -rf '%s'", dir) < 0)
        return -1;
    int rc = system(cmd);
    free(cmd);
    return rc;
}

static void test_order_roundtrip(void **state)
{
    char err[CF_ERRLEN] = "";
    struct cf_journal_order o;
    assert_int_equal(cf_journal_order_get(dir, "web", &o, err), CF_ENOENT);
    const char *key = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
    assert_int_equal(
        cf_journal_order_put(dir, "web", "https://ca/dir", NULL, key, strlen(key), err), 0);
    /* the key is a secret: the file is the owner's only */
    char path[256];
    snprintf(path, sizeof path, "%s/journal/orders/web.json", dir);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    snprintf(path, sizeof path, "%s/journal", dir);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);

    assert_int_equal(cf_journal_order_get(dir, "web", &o, err), 0);
    assert_string_equal(o.directory_url, "https://ca/dir");
    assert_null(o.order_url);
    assert_int_equal(o.key_len, strlen(key));
    assert_memory_equal(o.key_pem, key, o.key_len);
    cf_journal_order_release(&o);

    /* the CA gave the order a URL */
    assert_int_equal(cf_journal_order_put(dir, "web", "https://ca/dir", "https://ca/order/7", key,
                                          strlen(key), err),
                     0);
    assert_int_equal(cf_journal_order_get(dir, "web", &o, err), 0);
    assert_string_equal(o.order_url, "https://ca/order/7");
    cf_journal_order_release(&o);

    assert_int_equal(cf_journal_order_del(dir, "web", err), 0);
    assert_int_equal(cf_journal_order_get(dir, "web", &o, err), CF_ENOENT);
    assert_int_equal(cf_journal_order_del(dir, "web", err), 0);
}

static void test_order_refuses_bad_names_and_files(void **state)
{
    char err[CF_ERRLEN] = "";
    struct cf_journal_order o;
    assert_int_not_equal(cf_journal_order_put(dir, "../x", "u", NULL, "k", 1, err), 0);
    assert_non_null(strstr(err, "../x"));
    char path[256];
    snprintf(path, sizeof path, "%s/journal/orders/bad.json", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("{not json", f);
    fclose(f);
    assert_int_equal(cf_journal_order_get(dir, "bad", &o, err), CF_EPROTO);
    assert_non_null(strstr(err, "bad.json"));
}

static void test_tokens(void **state)
{
    char err[CF_ERRLEN] = "";
    char **v;
    size_t n;
    assert_int_equal(cf_journal_tokens(dir, "h1", &v, &n, err), 0);
    assert_int_equal(n, 0);
    cf_journal_tokens_free(v, n);
    assert_int_equal(cf_journal_token_add(dir, "h1", "/w/.well-known/acme-challenge/a", err), 0);
    assert_int_equal(cf_journal_token_add(dir, "h1", "/w/.well-known/acme-challenge/b", err), 0);
    assert_int_equal(cf_journal_token_add(dir, "h1", "/w/.well-known/acme-challenge/a", err), 0);
    assert_int_equal(cf_journal_token_add(dir, "h2", "/v/.well-known/acme-challenge/c", err), 0);
    assert_int_not_equal(cf_journal_token_add(dir, "h1", "/w/x\ny", err), 0);
    assert_int_equal(cf_journal_tokens(dir, "h1", &v, &n, err), 0);
    assert_int_equal(n, 2); /* a path is listed once */
    assert_string_equal(v[0], "/w/.well-known/acme-challenge/b");
    assert_string_equal(v[1], "/w/.well-known/acme-challenge/a");
    cf_journal_tokens_free(v, n);
    assert_int_equal(cf_journal_token_del(dir, "h1", "/w/.well-known/acme-challenge/a", err), 0);
    assert_int_equal(cf_journal_token_del(dir, "h1", "/w/.well-known/acme-challenge/b", err), 0);
    assert_int_equal(cf_journal_tokens(dir, "h1", &v, &n, err), 0);
    assert_int_equal(n, 0);
    cf_journal_tokens_free(v, n);
    /* other hosts keep theirs */
    assert_int_equal(cf_journal_tokens(dir, "h2", &v, &n, err), 0);
    assert_int_equal(n, 1);
    cf_journal_tokens_free(v, n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_order_roundtrip),
        cmocka_unit_test(test_order_refuses_bad_names_and_files),
        cmocka_unit_test(test_tokens),
    };
    return cmocka_run_group_tests_name("journal", tests, setup, teardown);
}

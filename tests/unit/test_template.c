/* test_template.c - the Jinja2 subset used by the role's templates and tasks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cf.h"
#include "template.h"

static json_t *vars_of(const char *json)
{
    json_error_t je;
    json_t *v = json_loads(json, 0, &je);
    if (!v)
        fail_msg("bad test json: %s", je.text);
    return v;
}

/* Render and compare; fails the test with the engine's message. */
static void expect_render(const char *vars_json, const char *tpl, const char *want)
{
    json_t *v = vars_of(vars_json);
    char err[CF_ERRLEN] = "", *out = NULL;
    int r = cf_template_render("t.j2", 1, tpl, v, &out, err);
    if (r != 0)
        fail_msg("render of [%s] failed: %s", tpl, err);
    assert_string_equal(out, want);
    free(out);
    json_decref(v);
}

/* Render must fail, and the message must contain every needle. */
static void expect_error(const char *vars_json, const char *tpl, const char *needle1,
                         const char *needle2)
{
    json_t *v = vars_of(vars_json);
    char err[CF_ERRLEN] = "", *out = NULL;
    int r = cf_template_render("roles/x/templates/t.j2", 1, tpl, v, &out, err);
    if (r == 0)
        fail_msg("render of [%s] should fail but gave [%s]", tpl, out);
    assert_int_equal(r, CF_EINVAL);
    assert_null(out);
    if (!strstr(err, needle1))
        fail_msg("error [%s] lacks [%s]", err, needle1);
    if (needle2 && !strstr(err, needle2))
        fail_msg("error [%s] lacks [%s]", err, needle2);
    json_decref(v);
}

static void test_variables_and_access(void **st)
{
    (void)st;
    expect_render("{\"a\": \"x\"}", "root {{ a }}/b", "root x/b");
    expect_render("{\"item\": {\"name\": \"svc\", \"l\": [1, 2, 3]}}",
                  "{{ item.name }} {{ item['name'] }} {{ item.l[1] }} {{ item.l[-1] }}",
                  "svc svc 2 3");
    expect_render("{\"d\": {\"k\": {\"deep\": [\"z\"]}}}", "{{ d.k.deep[0] }}", "z");
    expect_render("{\"n\": 3, \"f\": 1.5, \"t\": true, \"z\": null}",
                  "{{ n }} {{ f }} {{ t }} {{ z }}", "3 1.5 True None");
    expect_render("{\"l\": [\"a\", \"b\"]}", "{{ l }}", "['a', 'b']");
    expect_render("{}", "{{ 'lit' ~ \"eral\" }} {{ 1 + 2 }}", "literal 3");
    expect_render("{}", "no tags at all\n", "no tags at all\n");
}

static void test_filters(void **st)
{
    (void)st;
    expect_render("{\"l\": [\"a.example\", \"b.example\"]}", "{{ l | join(', ') }}",
                  "a.example, b.example");
    expect_render("{}", "{{ missing | default('dflt') }}", "dflt");
    expect_render("{}", "{{ missing | d('x') | upper }}", "X");
    expect_render("{\"e\": \"\"}", "[{{ e | default('x') }}][{{ e | default('x', true) }}]",
                  "[][x]");
    expect_render("{\"s\": \"MiXeD\"}", "{{ s | lower }}", "mixed");
    expect_render("{\"a\": \"yes\", \"b\": \"false\", \"c\": true, \"d\": 0}",
                  "{{ a | bool }} {{ b | bool }} {{ c | bool }} {{ d | bool }}",
                  "True False True False");
    expect_render("{\"l\": [1, 2, 2]}", "{{ l | length }} {{ l | unique | length }}", "3 2");
    expect_render("{\"p\": \"/etc/nginx/sites-enabled/x.conf\"}",
                  "{{ p | dirname }} {{ p | basename }}", "/etc/nginx/sites-enabled x.conf");
    expect_render("{\"s\": \"it's\"}", "{{ s | quote }} {{ 'plain' | quote }}",
                  "'it'\"'\"'s' plain");
    expect_error("{}", "{{ 'x' | frobnicate }}", "unknown filter 'frobnicate'", NULL);
}

static void test_if_and_for(void **st)
{
    (void)st;
    const char *vars = "{\"on\": true, \"off\": false, \"ds\": [{\"n\": \"a\"}, {\"n\": \"b\"}]}";
    expect_render(vars, "{% if on %}yes{% else %}no{% endif %}", "yes");
    expect_render(vars, "{% if off %}yes{% elif on %}elif{% else %}no{% endif %}", "elif");
    expect_render(vars, "{% if missing is defined %}d{% else %}u{% endif %}", "u");
    expect_render(vars, "{% if missing is defined and missing | bool %}d{% else %}u{% endif %}",
                  "u");
    expect_render(vars, "{% if not off and 'b' in ['a', 'b'] %}ok{% endif %}", "ok");
    expect_render(
        vars,
        "{% for d in ds %}{{ loop.index }}={{ d.n }}{% if not loop.last %},{% endif %}{% endfor %}",
        "1=a,2=b");
    /* trim_blocks: the newline after a block tag is dropped, as in Ansible */
    expect_render(vars, "{% for d in ds %}\nline {{ d.n }}\n{% endfor %}\nend\n",
                  "line a\nline b\nend\n");
    /* whitespace control */
    expect_render(vars, "a   {%- if on -%}   b   {%- endif %}", "ab");
    expect_render(vars, "{# a comment #}x", "x");
    expect_render("{\"ds\": []}", "{% for d in ds %}x{% else %}empty{% endfor %}", "empty");
}

static void test_lazy_recursive_vars(void **st)
{
    (void)st;
    /* values that are templates are rendered when used, natively for lone expressions */
    expect_render(
        "{\"root\": \"/srv\", \"conf\": \"{{ root }}/etc\", \"snip\": \"{{ conf }}/snippets\"}",
        "{{ snip }}", "/srv/etc/snippets");
    expect_render("{\"base\": [\"a\", \"b\"], \"l\": \"{{ base }}\"}",
                  "{{ l | join('+') }} {{ l[1] }}", "a+b b");
    expect_render("{\"w\": \"/var/www\", \"ds\": [{\"webroot\": \"{{ w }}/x\"}]}",
                  "{% for d in ds %}{{ d.webroot }}{% endfor %}", "/var/www/x");
    /* a loop of references must stop with a message naming the variable */
    expect_error("{\"a\": \"{{ b }}\", \"b\": \"{{ a }}\"}", "{{ a }}", "levels deep", "t.j2:1");
}

static void test_errors_name_variable_and_line(void **st)
{
    (void)st;
    expect_error("{}", "line one\nline two {{ nope }}\n", "roles/x/templates/t.j2:2:", "'nope'");
    expect_error("{\"item\": {}}", "a\nb\n\n{{ item.cert_name }}", "t.j2:4:", "'item.cert_name'");
    expect_error("{\"x\": \"{{ inner_missing }}\"}", "\n{{ x }}", "t.j2:2:", "'inner_missing'");
    expect_error("{\"x\": \"{{ inner_missing }}\"}", "{{ x }}", "'inner_missing'",
                 "in the value of 'x'");
    expect_error("{\"x\": \"a {{ inner_missing }}\"}", "{{ x }}", "'inner_missing'",
                 "in the value of 'x'");
    expect_error("{}", "{% if x %}", "t.j2:1", "endif");
    expect_error("{}", "{{ a ", "never closed", NULL);
    expect_error("{}", "{% set x = 1 %}", "unsupported tag", NULL);
    expect_error("{}", "{{ a b }}", "cannot parse expression", NULL);
    expect_error("{\"s\": \"x\"}", "{% for c in s %}{% endfor %}", "not a list", NULL);
    expect_error("{}", "{% if undefined_flag %}x{% endif %}", "'undefined_flag'", NULL);
}

static void test_value_and_condition(void **st)
{
    (void)st;
    json_t *v =
        vars_of("{\"ds\": [{\"cert_name\": \"c1\"}], \"w\": \"/var/www\", \"flag\": \"no\"}");
    json_t *in =
        json_pack("{s:s, s:s, s:i}", "loop", "{{ ds }}", "path", "{{ w }}/.well-known", "n", 5);
    json_t *out = NULL;
    char err[CF_ERRLEN] = "";
    assert_int_equal(cf_template_value("tasks/main.yml", 7, in, v, &out, err), 0);
    assert_true(json_is_array(json_object_get(out, "loop"))); /* native, not a string */
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(json_object_get(out, "loop"), 0), "cert_name")),
                        "c1");
    assert_string_equal(json_string_value(json_object_get(out, "path")), "/var/www/.well-known");
    assert_int_equal(json_integer_value(json_object_get(out, "n")), 5);
    json_decref(out);
    json_decref(in);

    int t = -1;
    assert_int_equal(cf_template_condition("tasks/main.yml", 3, "flag | bool", v, &t, err), 0);
    assert_int_equal(t, 0);
    assert_int_equal(cf_template_condition("tasks/main.yml", 3, "ds | length > 0", v, &t, err), 0);
    assert_int_equal(t, 1);
    assert_int_equal(cf_template_condition("tasks/main.yml", 3, "nope is not defined", v, &t, err),
                     0);
    assert_int_equal(t, 1);
    assert_int_equal(cf_template_condition("tasks/main.yml", 9, "nope", v, &t, err), CF_EINVAL);
    assert_non_null(strstr(err, "tasks/main.yml:9"));
    assert_non_null(strstr(err, "'nope'"));
    json_decref(v);
}

/* text repeated n times around a middle part: deep-nesting reproducers */
static char *nest(const char *open, size_t n, const char *middle, const char *close)
{
    size_t lo = strlen(open), lc = strlen(close), lm = strlen(middle);
    char *s = malloc(n * (lo + lc) + lm + 1), *p = s;
    for (size_t i = 0; i < n; i++, p += lo)
        memcpy(p, open, lo);
    memcpy(p, middle, lm);
    p += lm;
    for (size_t i = 0; i < n; i++, p += lc)
        memcpy(p, close, lc);
    *p = '\0';
    return s;
}

/* Inputs that crashed the engine or ran it out of memory or time: each
 * must now fail with file:line and a message saying what is wrong. */
static void test_hostile_input_fails_cleanly(void **st)
{
    (void)st;
    static const struct {
        const char *tpl, *needle;
    } small[] = {
        {"{{ -$ }}", "unexpected character '$'"},   /* recursed without end */
        {"{{ not$ }}", "unexpected character '$'"}, /* read a freed name */
        {"{{ - not - $ }}", "unexpected character '$'"},
        {"{{ [1, $] }}", "unexpected character '$'"},
        {"{{ x | d($) }}", "unexpected character '$'"},
        {"{{ 1 if $ else 2 }}", "unexpected character '$'"},
        {"{{ \"\x96\" }}", "not valid UTF-8"}, /* gave json_string() NULL */
        {"{{ 'ok' ~ '\xff\xfe' }}", "not valid UTF-8"},
        /* signed overflow (UBSan, found by tests/fuzz/fuzz_template) */
        {"{{ 3 + 9223372036854775807 }}", "does not fit in 64 bits"},
        {"{{ -9223372036854775807 - 2 }}", "does not fit in 64 bits"},
        {"{{ -(-9223372036854775807 - 1) }}", "does not fit in 64 bits"},
        {"{{ 1.0e+300 | int }}", "out of range"},
    };
    for (size_t i = 0; i < sizeof small / sizeof small[0]; i++)
        expect_error("{}", small[i].tpl, "t.j2:1:", small[i].needle);

    /* 50k levels of every recursive construct overflowed the stack */
    static const struct {
        const char *open, *middle, *close, *needle;
    } deep[] = {
        {"(", "1", ")", "nested too deeply"},
        {"[", "1", "]", "nested too deeply"},
        {"not ", "1", "", "nested too deeply"},
        {"-", "1", "", "nested too deeply"},
        {"1 if 1 else ", "1", "", "nested too deeply"},
        {"", "'X'", " | lower", "expression too long"},
        {"", "1", " + 1", "expression too long"},
    };
    for (size_t i = 0; i < sizeof deep / sizeof deep[0]; i++) {
        char *e = nest(deep[i].open, 50000, deep[i].middle, deep[i].close);
        char *tpl = malloc(strlen(e) + 16);
        sprintf(tpl, "\n{{ %s }}", e);
        expect_error("{}", tpl, "t.j2:2:", deep[i].needle);
        free(tpl);
        free(e);
    }
    /* below the token cap, a long chain is still bounded by evaluation depth */
    char *chain = nest("", 5000, "'X'", " | lower");
    char *tpl = malloc(strlen(chain) + 16);
    sprintf(tpl, "{{ %s }}", chain);
    expect_error("{}", tpl, "t.j2:1:", "nested more than");
    free(tpl);
    free(chain);
    char *blocks = nest("{% if true %}", 50000, "x", "{% endif %}");
    expect_error("{}", blocks, "t.j2:1:", "blocks nested more than");
    free(blocks);
}

/* A small input that expands exponentially ends with an error. */
static void test_expansion_is_bounded(void **st)
{
    (void)st;
    /* 8 levels, each using the one below 10 times: 1 GB of text */
    json_t *v = json_object();
    json_object_set_new(v, "a0", json_string("0123456789"));
    for (int i = 1; i <= 8; i++) {
        char name[8], val[256] = "", ref[16];
        snprintf(name, sizeof name, "a%d", i);
        snprintf(ref, sizeof ref, "{{ a%d }}", i - 1);
        for (int k = 0; k < 10; k++)
            strcat(val, ref);
        json_object_set_new(v, name, json_string(val));
    }
    char err[CF_ERRLEN] = "", *out = NULL;
    assert_int_equal(cf_template_render("t.j2", 3, "{{ a8 }}", v, &out, err), CF_EINVAL);
    assert_null(out);
    assert_non_null(strstr(err, "t.j2:3:"));
    if (!strstr(err, "MiB"))
        fail_msg("%s", err);
    /* the same through a lone expression (native values) and `~` */
    char big[4097];
    memset(big, 'b', 4096);
    big[4096] = '\0';
    json_object_set_new(v, "b0", json_string(big));
    for (int i = 1; i <= 15; i++) {
        char name[8], val[64];
        snprintf(name, sizeof name, "b%d", i);
        snprintf(val, sizeof val, "{{ b%d ~ b%d }}", i - 1, i - 1);
        json_object_set_new(v, name, json_string(val));
    }
    assert_int_equal(cf_template_render("t.j2", 1, "{{ b15 }}", v, &out, err), CF_EINVAL);
    if (!strstr(err, "MiB"))
        fail_msg("%s", err);
    /* lists growing eightfold with `+` */
    json_object_set_new(v, "l0", json_pack("[i]", 1));
    for (int i = 1; i <= 12; i++) {
        char name[8], val[128], ref[8];
        snprintf(name, sizeof name, "l%d", i);
        snprintf(ref, sizeof ref, "l%d", i - 1);
        snprintf(val, sizeof val, "{{ %s + %s + %s + %s + %s + %s + %s + %s }}", ref, ref, ref, ref,
                 ref, ref, ref, ref);
        json_object_set_new(v, name, json_string(val));
    }
    assert_int_equal(cf_template_render("t.j2", 1, "{{ l12 | length }}", v, &out, err), CF_EINVAL);
    assert_non_null(strstr(err, "t.j2:1:"));
    /* 40 nested loops over two items: 2^40 iterations of nothing */
    json_object_set_new(v, "two", json_pack("[i,i]", 1, 2));
    char *loops = nest("{% for x in two %}", 40, "", "{% endfor %}");
    assert_int_equal(cf_template_render("t.j2", 1, loops, v, &out, err), CF_EINVAL);
    assert_non_null(strstr(err, "steps"));
    free(loops);
    /* what real templates do stays well inside the bounds */
    char *ok = nest("{% for x in two %}", 5, "{{ a3 }}", "{% endfor %}");
    assert_int_equal(cf_template_render("t.j2", 1, ok, v, &out, err), 0);
    assert_int_equal(strlen(out), 32 * 10000);
    free(out);
    free(ok);
    json_decref(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_variables_and_access),
        cmocka_unit_test(test_filters),
        cmocka_unit_test(test_if_and_for),
        cmocka_unit_test(test_lazy_recursive_vars),
        cmocka_unit_test(test_errors_name_variable_and_line),
        cmocka_unit_test(test_value_and_condition),
        cmocka_unit_test(test_hostile_input_fails_cleanly),
        cmocka_unit_test(test_expansion_is_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

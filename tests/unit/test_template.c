/* test_template.c - the Jinja2 subset used by the role's templates and tasks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_variables_and_access),
        cmocka_unit_test(test_filters),
        cmocka_unit_test(test_if_and_for),
        cmocka_unit_test(test_lazy_recursive_vars),
        cmocka_unit_test(test_errors_name_variable_and_line),
        cmocka_unit_test(test_value_and_condition),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_inventory.c - the inventory model: INI value typing, host ranges,
 * limit patterns (each operator), variable precedence, group_vars files,
 * and errors with file:line:column.  Each test writes its inventory into
 * a fresh temporary directory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "cf.h"
#include "inventory.h"
#include "util.h"
#include "vars.h"

static char tmpdir[64];

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/cf-test-inv-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    /* test scaffolding only: remove the scratch directory */
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static void put(const char *rel, const char *text)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", tmpdir, rel);
    char *slash = strrchr(path, '/');
    *slash = 0;
    assert_int_equal(cf_mkdir_p(path, 0755), 0);
    *slash = '/';
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static struct cf_inventory *load1(const char *rel)
{
    char path[512], err[CF_ERRLEN] = "";
    snprintf(path, sizeof(path), "%s/%s", tmpdir, rel);
    const char *src[] = {path};
    struct cf_inventory *inv = NULL;
    int rc = cf_inventory_load(src, 1, tmpdir, &inv, err);
    if (rc)
        fail_msg("load failed: %s", err);
    return inv;
}

static int load_err(const char *rel, char *err)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", tmpdir, rel);
    const char *src[] = {path};
    struct cf_inventory *inv = NULL;
    int rc = cf_inventory_load(src, 1, tmpdir, &inv, err);
    assert_null(inv);
    return rc;
}

static json_t *hostvars(struct cf_inventory *inv, const char *host, const json_t *defaults,
                        const json_t *extra)
{
    size_t h;
    char err[CF_ERRLEN];
    json_t *v = NULL;
    assert_int_equal(cf_inventory_host_find(inv, host, &h), 0);
    assert_int_equal(cf_inventory_hostvars(inv, h, defaults, extra, &v, err), 0);
    return v;
}

/* "a b c" of the hosts a limit selects. */
static char *sel(struct cf_inventory *inv, const char *limit)
{
    size_t *idx = NULL, n = 0;
    char err[CF_ERRLEN] = "";
    int rc = cf_inventory_select(inv, limit, &idx, &n, err);
    if (rc)
        return cf_asprintf("ERROR %s", err);
    struct cf_buf b = CF_BUF_INIT;
    cf_buf_puts(&b, "");
    for (size_t i = 0; i < n; i++)
        cf_buf_printf(&b, "%s%s", i ? " " : "", cf_inventory_host_name(inv, idx[i]));
    free(idx);
    return cf_buf_detach(&b, NULL);
}

#define assert_sel(inv, limit, want)                                                               \
    do {                                                                                           \
        char *got_ = sel(inv, limit);                                                              \
        if (strcmp(got_, want) != 0)                                                               \
            fail_msg("limit '%s': got '%s', want '%s'", limit, got_, want);                        \
        free(got_);                                                                                \
    } while (0)

static void test_ini_value_typing(void **state)
{
    (void)state;
    put("hosts", "[g]\n"
                 "h1 t=True f=False n=None i=42 neg=-7 fl=1.5 e=1e3 x=0x10 u=1_000 "
                 "oct=010 word=yes path=/etc/x q=\"two words\" l='[1, \"a\"]' d='{\"k\": None}' "
                 "tup=1,2 s='\"str\"' hash=a#b\n"
                 "[g:vars]\n"
                 "gv = plain words # kept\n"
                 "gq = 'quoted'  # dropped comment\n"
                 "gt = True\n");
    struct cf_inventory *inv = load1("hosts");
    json_t *v = hostvars(inv, "h1", NULL, NULL);
    assert_true(json_is_true(json_object_get(v, "t")));
    assert_true(json_is_false(json_object_get(v, "f")));
    assert_true(json_is_null(json_object_get(v, "n")));
    assert_int_equal(json_integer_value(json_object_get(v, "i")), 42);
    assert_int_equal(json_integer_value(json_object_get(v, "neg")), -7);
    assert_float_equal(json_real_value(json_object_get(v, "fl")), 1.5, 1e-9);
    assert_float_equal(json_real_value(json_object_get(v, "e")), 1000.0, 1e-9);
    assert_int_equal(json_integer_value(json_object_get(v, "x")), 16);
    assert_int_equal(json_integer_value(json_object_get(v, "u")), 1000);
    assert_string_equal(json_string_value(json_object_get(v, "oct")), "010");
    assert_string_equal(json_string_value(json_object_get(v, "word")), "yes");
    assert_string_equal(json_string_value(json_object_get(v, "path")), "/etc/x");
    assert_string_equal(json_string_value(json_object_get(v, "q")), "two words");
    assert_int_equal(json_array_size(json_object_get(v, "l")), 2);
    assert_true(json_is_null(json_object_get(json_object_get(v, "d"), "k")));
    assert_int_equal(json_array_size(json_object_get(v, "tup")), 2);
    assert_string_equal(json_string_value(json_object_get(v, "s")), "str");
    assert_string_equal(json_string_value(json_object_get(v, "hash")), "a");
    assert_string_equal(json_string_value(json_object_get(v, "gv")), "plain words # kept");
    assert_string_equal(json_string_value(json_object_get(v, "gq")), "quoted");
    assert_true(json_is_true(json_object_get(v, "gt")));
    /* positions of INI values: line and the column of the value */
    struct cf_pos p;
    assert_int_equal(cf_vars_member_pos(v, "i", &p), 0);
    assert_int_equal(p.line, 2);
    assert_int_equal(p.col, 28); /* "h1 t=True f=False n=None i=" */
    assert_int_equal(cf_vars_member_pos(v, "gq", &p), 0);
    assert_int_equal(p.line, 5);
    assert_int_equal(p.col, 6);
    json_decref(v);
    cf_inventory_free(inv);
}

static void test_ranges(void **state)
{
    (void)state;
    put("hosts", "[w]\nweb[01:03].example.com\n"
                 "[a]\napp[3:4]\nx[8:12:2]-n\n"
                 "[l]\ndb-[a:c]\n"
                 "[p]\np[1:2]:2222\n");
    struct cf_inventory *inv = load1("hosts");
    assert_sel(inv, "w", "web01.example.com web02.example.com web03.example.com");
    assert_sel(inv, "a", "app3 app4 x8-n x10-n x12-n");
    assert_sel(inv, "l", "db-a db-b db-c");
    json_t *v = hostvars(inv, "p2", NULL, NULL);
    assert_int_equal(json_integer_value(json_object_get(v, "ansible_port")), 2222);
    json_decref(v);
    cf_inventory_free(inv);

    char err[CF_ERRLEN] = "";
    put("bad", "[w]\nweb[01:3]\n");
    assert_int_equal(load_err("bad", err), CF_EINVAL);
    assert_non_null(strstr(err, "bad:2:1: host range must specify equal-length"));
    put("bad2", "[w]\nweb[c:a]\n");
    assert_int_equal(load_err("bad2", err), CF_EINVAL);
    assert_non_null(strstr(err, "begin <= end"));
}

static struct cf_inventory *limit_inv(void)
{
    put("hosts", "[web]\napp1\napp2\napp3\napp4\n"
                 "[db]\ndb1\ndb2\n"
                 "[prod:children]\nweb\ndb\n"
                 "[prod]\nlb1\n"
                 "[stage]\napp3\ns1\n");
    return load1("hosts");
}

static void test_limit_patterns(void **state)
{
    (void)state;
    struct cf_inventory *inv = limit_inv();
    assert_sel(inv, NULL, "app1 app2 app3 app4 db1 db2 lb1 s1");
    assert_sel(inv, "all", "app1 app2 app3 app4 db1 db2 lb1 s1");
    assert_sel(inv, "app2", "app2");                            /* a host */
    assert_sel(inv, "db", "db1 db2");                           /* a group */
    assert_sel(inv, "prod", "app1 app2 app3 app4 db1 db2 lb1"); /* children included */
    assert_sel(inv, "app*", "app1 app2 app3 app4");             /* glob */
    assert_sel(inv, "?b1", "db1 lb1");
    assert_sel(inv, "db2,app1", "app1 db2");        /* union, inventory order */
    assert_sel(inv, "db:stage", "app3 db1 db2 s1"); /* ':' union */
    assert_sel(inv, "web:&stage", "app3");          /* intersection */
    assert_sel(inv, "web:!app4", "app1 app2 app3"); /* exclusion */
    assert_sel(inv, "prod:!web:!db", "lb1");
    assert_sel(inv, "!web", "db1 db2 lb1 s1"); /* only '!' starts from all */
    assert_sel(inv, "&stage", "app3 s1");
    assert_sel(inv, "~app[12]", "app1 app2"); /* regex */
    assert_sel(inv, "~(db|lb)", "db1 db2 lb1");
    assert_sel(inv, "~pp", "ERROR limit '~pp' matches no host in the inventory"); /* anchored */
    assert_sel(inv, "web[0]", "app1");                                            /* subscripts */
    assert_sel(inv, "web[-1]", "app4");
    assert_sel(inv, "web[1:2]", "app2 app3");
    assert_sel(inv, "web[2:]", "app3 app4");
    /* an end past LONG_MAX saturates: no signed overflow (found by fuzz_limit) */
    assert_sel(inv, "web[1:99999999999999999999999]", "app2 app3 app4");
    assert_sel(inv, " web , db1 ", "app1 app2 app3 app4 db1");
    assert_sel(inv, "nomatch", "ERROR limit 'nomatch' matches no host in the inventory");
    assert_sel(inv, "web:&db", "ERROR limit 'web:&db' matches no host in the inventory");
    assert_sel(inv, "web[9]", "ERROR no hosts matched the subscripted pattern 'web[9]'");
    /* regcomp takes memory exponential in stacked repetitions (found by
     * fuzz_limit: 1 GB for "a" and 26 '+'); refused like Python's re */
    static const char *const costly[] = {"~a++++++++++++++++++++++++++", "~(a+)++++++++",
                                         "~((a{1,100}){1,100}){1,100}", "~a{1000}"};
    for (size_t i = 0; i < sizeof costly / sizeof costly[0]; i++) {
        char *got = sel(inv, costly[i]);
        if (!strstr(got, "ERROR invalid host pattern"))
            fail_msg("limit '%s' gave '%s'", costly[i], got);
        free(got);
    }
    assert_sel(inv, "~app[1-2]{1}", "app1 app2");
    assert_sel(inv, "~a(p)+[*+]?", "app1 app2 app3 app4");
    char *r = sel(inv, "~(");
    assert_non_null(strstr(r, "ERROR invalid host pattern '~('"));
    free(r);
    put("limitfile", "db1\n\nlb1\n");
    char arg[128];
    snprintf(arg, sizeof(arg), "@%s/limitfile", tmpdir);
    assert_sel(inv, arg, "db1 lb1");
    cf_inventory_free(inv);
}

static void test_groups_and_ungrouped(void **state)
{
    (void)state;
    put("inv.yml", "all:\n  hosts:\n    lone:\n  children:\n    g:\n      hosts:\n"
                   "        member:\n      children:\n        sub:\n          hosts:\n"
                   "            deep:\n");
    struct cf_inventory *inv = load1("inv.yml");
    const char *const *names;
    size_t h;
    assert_int_equal(cf_inventory_host_find(inv, "deep", &h), 0);
    assert_int_equal(cf_inventory_host_groups(inv, h, &names), 2);
    assert_string_equal(names[0], "g");
    assert_string_equal(names[1], "sub");
    assert_int_equal(cf_inventory_host_find(inv, "lone", &h), 0);
    assert_int_equal(cf_inventory_host_groups(inv, h, &names), 1);
    assert_string_equal(names[0], "ungrouped");
    char *graph, err[CF_ERRLEN];
    assert_int_equal(cf_inventory_graph(inv, NULL, &graph, err), 0);
    assert_string_equal(graph, "@all:\n"
                               "  |--@ungrouped:\n"
                               "  |  |--lone\n"
                               "  |--@g:\n"
                               "  |  |--@sub:\n"
                               "  |  |  |--deep\n"
                               "  |  |--member");
    free(graph);
    assert_int_equal(cf_inventory_graph(inv, "nope", &graph, err), CF_ENOENT);
    assert_non_null(strstr(err, "'nope' is not a group"));
    cf_inventory_free(inv);
}

static void test_precedence(void **state)
{
    (void)state;
    /* v is set at every level; each level must beat the one below it */
    put("inv/hosts", "[all:vars]\nv=inv_all\na=inv_all\n"
                     "[parent:children]\nchild\n"
                     "[parent:vars]\nv=inv_parent\np=inv_parent\n"
                     "[child]\nh1\nh2 v=inv_host\n"
                     "[child:vars]\nv=inv_child\nc=inv_child\n");
    put("inv/group_vars/all.yml", "v: file_all\nfa: 1\n");
    put("inv/group_vars/parent.yml", "v: file_parent\nfp: 1\n");
    put("inv/group_vars/child/main.yml", "v: file_child\nfc: 1\n");
    put("inv/host_vars/h2.yml", "hv: file_host\n");
    put("group_vars/child.yml", "pb: playbook_child\n"); /* the playbook dir */
    struct cf_inventory *inv = load1("inv");
    json_t *defaults = json_pack("{s:s, s:s}", "v", "default", "d", "default");
    json_t *v = hostvars(inv, "h1", defaults, NULL);
    assert_string_equal(json_string_value(json_object_get(v, "d")), "default");
    assert_string_equal(json_string_value(json_object_get(v, "a")), "inv_all");
    assert_string_equal(json_string_value(json_object_get(v, "p")), "inv_parent");
    assert_string_equal(json_string_value(json_object_get(v, "c")), "inv_child");
    /* group_vars files beat inventory group vars; children beat parents */
    assert_string_equal(json_string_value(json_object_get(v, "v")), "file_child");
    assert_string_equal(json_string_value(json_object_get(v, "pb")), "playbook_child");
    json_decref(v);
    v = hostvars(inv, "h2", defaults, NULL);
    assert_string_equal(json_string_value(json_object_get(v, "v")), "inv_host");
    assert_string_equal(json_string_value(json_object_get(v, "hv")), "file_host");
    struct cf_pos p;
    assert_int_equal(cf_vars_member_pos(v, "hv", &p), 0);
    assert_non_null(strstr(p.file, "inv/host_vars/h2.yml"));
    assert_int_equal(p.line, 1);
    assert_int_equal(p.col, 5);
    json_decref(v);
    json_t *extra = json_pack("{s:s}", "v", "extra");
    v = hostvars(inv, "h2", defaults, extra);
    assert_string_equal(json_string_value(json_object_get(v, "v")), "extra");
    json_decref(v);
    json_decref(extra);
    json_decref(defaults);
    cf_inventory_free(inv);
}

static void test_priority(void **state)
{
    (void)state;
    put("hosts", "[a]\nh\n[b]\nh\n[a:vars]\nc=a\nansible_group_priority=10\n[b:vars]\nc=b\n");
    struct cf_inventory *inv = load1("hosts");
    json_t *v = hostvars(inv, "h", NULL, NULL);
    /* same depth: the higher priority is applied last and wins */
    assert_string_equal(json_string_value(json_object_get(v, "c")), "a");
    assert_null(json_object_get(v, "ansible_group_priority"));
    json_decref(v);
    cf_inventory_free(inv);
}

static void test_directory_source(void **state)
{
    (void)state;
    put("d/hosts", "[web]\nw1\n");
    put("d/more.yml", "web:\n  hosts:\n    w2:\n");
    put("d/skip.retry", "[web]\nghost1\n");
    put("d/skip.ini", "[web]\nghost2\n");
    put("d/skip~", "[web]\nghost3\n");
    put("d/.hidden", "[web]\nghost4\n");
    struct cf_inventory *inv = load1("d");
    assert_sel(inv, "all", "w1 w2");
    cf_inventory_free(inv);
}

static void test_errors(void **state)
{
    (void)state;
    char err[CF_ERRLEN] = "";
    put("e1", "[web]\nw1 role\n");
    assert_int_equal(load_err("e1", err), CF_EINVAL);
    assert_string_equal(strstr(err, "e1:"),
                        "e1:2:4: expected key=value host variable assignment, got 'role'");
    put("e2", "[web:vars]\nx=1\n");
    assert_int_equal(load_err("e2", err), CF_EINVAL);
    assert_non_null(strstr(err, "e2:1:1: section [web:vars] is not valid for undefined group"));
    put("e3", "[web:kids]\nx\n");
    assert_int_equal(load_err("e3", err), CF_EINVAL);
    assert_non_null(strstr(err, "e3:1:1: section [web:kids] has unknown type"));
    put("e4", "[a:children]\nb\n[b:children]\na\n");
    assert_int_equal(load_err("e4", err), CF_EINVAL);
    assert_non_null(strstr(err, "recursive dependency loop"));
    put("e5.yml", "web:\n  hosts: [a, b]\n");
    assert_int_equal(load_err("e5.yml", err), CF_EINVAL);
    assert_non_null(strstr(err, "e5.yml:2:10: invalid 'hosts' entry for group 'web'"));
    put("e6.yml", "web:\n  hosts:\n    a:\n   b: 1\n");
    assert_int_equal(load_err("e6.yml", err), CF_EINVAL);
    assert_non_null(strstr(err, "e6.yml:4:"));
    put("e7", "[web]\nw1 x='unclosed\n");
    assert_int_equal(load_err("e7", err), CF_EINVAL);
    assert_non_null(strstr(err, "e7:2:1: error parsing host definition"));
    put("v/hosts", "[web]\nw1\n");
    put("v/group_vars/web.yml", "- just\n- a list\n");
    assert_int_equal(load_err("v/hosts", err), CF_EINVAL);
    assert_non_null(strstr(err, "group_vars/web.yml:1:1: a vars file must hold a mapping"));
    assert_int_equal(load_err("missing", err), CF_ENOENT);
    assert_non_null(strstr(err, "missing: inventory source not found"));
}

static void test_list_and_dumps(void **state)
{
    (void)state;
    put("hosts", "solo f=0.1 big=1e16 s='a\"b'\n[g]\nm1\n[empty]\n");
    struct cf_inventory *inv = load1("hosts");
    json_t *doc;
    char err[CF_ERRLEN];
    assert_int_equal(cf_inventory_list_json(inv, NULL, &doc, err), 0);
    char *text = cf_inventory_dumps(doc);
    /* Python's json.dumps(indent=4, sort_keys=True): floats in repr form,
     * empty groups left out, all lists its children */
    assert_string_equal(text, "{\n"
                              "    \"_meta\": {\n"
                              "        \"hostvars\": {\n"
                              "            \"solo\": {\n"
                              "                \"big\": 1e+16,\n"
                              "                \"f\": 0.1,\n"
                              "                \"s\": \"a\\\"b\"\n"
                              "            }\n"
                              "        }\n"
                              "    },\n"
                              "    \"all\": {\n"
                              "        \"children\": [\n"
                              "            \"ungrouped\",\n"
                              "            \"g\",\n"
                              "            \"empty\"\n"
                              "        ]\n"
                              "    },\n"
                              "    \"g\": {\n"
                              "        \"hosts\": [\n"
                              "            \"m1\"\n"
                              "        ]\n"
                              "    },\n"
                              "    \"ungrouped\": {\n"
                              "        \"hosts\": [\n"
                              "            \"solo\"\n"
                              "        ]\n"
                              "    }\n"
                              "}");
    free(text);
    json_decref(doc);
    cf_inventory_free(inv);
}

/* Empty values read nothing past their end (ASan, found by fuzz_ini). */
static void test_ini_empty_values(void **state)
{
    (void)state;
    put("hosts", "h1 x=1\n[all:vars]\nu=\nr=r\nb=\n");
    struct cf_inventory *inv = load1("hosts");
    json_t *v = hostvars(inv, "h1", NULL, NULL);
    assert_string_equal(json_string_value(json_object_get(v, "u")), "");
    assert_string_equal(json_string_value(json_object_get(v, "r")), "r");
    assert_string_equal(json_string_value(json_object_get(v, "b")), "");
    json_decref(v);
    cf_inventory_free(inv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_ini_value_typing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ranges, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ini_empty_values, setup, teardown),
        cmocka_unit_test_setup_teardown(test_limit_patterns, setup, teardown),
        cmocka_unit_test_setup_teardown(test_groups_and_ungrouped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_precedence, setup, teardown),
        cmocka_unit_test_setup_teardown(test_priority, setup, teardown),
        cmocka_unit_test_setup_teardown(test_directory_source, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_and_dumps, setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    cf_vars_reset();
    return rc;
}

/*
 * test_role.c - the role engine and the shipped certbot role.
 *
 * Pure tests: render roles/certbot for the design.md foxycart-sandbox
 * group_vars (exact paths and link targets, with and without
 * certfleet_host_root), the diff of desired against actual state, unified
 * diffs, hostile values.
 *
 * With CF_TEST_SSH_ADDR set (tests/integration/30_role.sh does that against
 * a real sshd+nginx host of the test fleet) it also converges a real host:
 * first run changes, handlers test+reload, second run changes nothing, and
 * a drifted host (deleted symlink, edited snippet) shows exactly those two
 * in --check, which writes nothing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "cf.h"
#include "remote.h"
#include "role.h"
#include "ssh.h"
#include "util.h"
#include "vars.h"

static const char *roles_dir(void)
{
    const char *d = getenv("CF_ROLES_DIR");
    return d ? d : "roles";
}

static const char GROUP_VARS[] =
    "certbot_enabled: true\n"
    "certbot_email: operations+letsencrypt@example.com\n"
    "certbot_install_method: apt\n"
    "certbot_renewal_days: 31\n"
    "certbot_domains:\n"
    "  - domains: [foxycart-sandbox.example.com, foxycart-sandbox3.example.com]\n"
    "    webroot: /var/www/letsencrypt\n"
    "    cert_name: foxycart-sandbox\n"
    "certbot_services:\n"
    "  - name: foxycart-sandbox\n"
    "    cert_source: foxycart-sandbox\n";

/* role defaults < group_vars < extra (YAML text, may be NULL) */
static json_t *hostvars(const char *extra)
{
    char err[CF_ERRLEN];
    json_t *d = NULL, *g = NULL, *x = NULL;
    char *path = cf_asprintf("%s/certbot/defaults/main.yml", roles_dir());
    if (cf_yaml_load_file(path, &d, err) != 0)
        fail_msg("defaults: %s", err);
    free(path);
    if (cf_yaml_load_string("group_vars/foxycart-sandbox.yaml", GROUP_VARS, &g, err) != 0)
        fail_msg("group vars: %s", err);
    cf_vars_merge(d, g);
    json_decref(g);
    if (extra) {
        if (cf_yaml_load_string("<extra>", extra, &x, err) != 0)
            fail_msg("extra: %s", err);
        cf_vars_merge(d, x);
        json_decref(x);
    }
    return d;
}

static struct cf_role *load_role(void)
{
    char err[CF_ERRLEN] = "";
    struct cf_role *r = NULL;
    if (cf_role_load(roles_dir(), "certbot", &r, err) != 0)
        fail_msg("load: %s", err);
    return r;
}

static struct cf_role_plan *render(const struct cf_role *r, json_t *vars)
{
    char err[CF_ERRLEN] = "";
    struct cf_role_plan *p = NULL;
    if (cf_role_render(r, 0, vars, &p, err) != 0)
        fail_msg("render: %s", err);
    return p;
}

/* The resource at path (first match) and the name of its task. */
static const struct cf_resource *find(const struct cf_role_plan *p, const char *path,
                                      const char **task)
{
    for (size_t i = 0; i < p->n_tasks; i++)
        for (size_t k = 0; k < p->tasks[i].n_res; k++)
            if (p->tasks[i].res[k].path && !strcmp(p->tasks[i].res[k].path, path)) {
                if (task)
                    *task = p->tasks[i].name;
                return &p->tasks[i].res[k];
            }
    fail_msg("no resource for '%s'", path);
    return NULL;
}

static void expect_link(const struct cf_role_plan *p, const char *path, const char *target)
{
    const struct cf_resource *x = find(p, path, NULL);
    assert_int_equal(x->kind, CF_RES_LINK);
    assert_string_equal(x->target, target);
}

static void expect_dir(const struct cf_role_plan *p, const char *path, int mode)
{
    const struct cf_resource *x = find(p, path, NULL);
    assert_int_equal(x->kind, CF_RES_DIR);
    assert_int_equal(x->mode, mode);
}

static const struct cf_resource *expect_file(const struct cf_role_plan *p, const char *path,
                                             int mode, const char *needle)
{
    const struct cf_resource *x = find(p, path, NULL);
    assert_int_equal(x->kind, CF_RES_FILE);
    assert_int_equal(x->mode, mode);
    if (needle && !strstr(x->content, needle))
        fail_msg("'%s' lacks [%s]:\n%s", path, needle, x->content);
    return x;
}

/* The whole host layout of design.md, under a root prefix R. */
static void check_layout(const struct cf_role_plan *p, const char *R)
{
    char a[512], b[512], c[512];
#define P(buf, s) (snprintf(buf, sizeof buf, "%s%s", R, s), buf)
    expect_dir(p, P(a, "/var/www/letsencrypt/.well-known/acme-challenge"), 0755);
    expect_dir(p, P(a, "/etc/letsencrypt/live/foxycart-sandbox"), 0755);
    expect_dir(p, P(a, "/etc/letsencrypt/archive/foxycart-sandbox"), 0700);
    expect_dir(p, P(a, "/etc/letsencrypt/renewal-hooks/deploy"), 0755);
    expect_link(p, P(a, "/etc/nginx/certs/foxycart-sandbox.fullchain.crt"),
                P(b, "/etc/letsencrypt/live/foxycart-sandbox/fullchain.pem"));
    expect_link(p, P(a, "/etc/nginx/certs/foxycart-sandbox.ca-bundle.crt"),
                P(b, "/etc/letsencrypt/live/foxycart-sandbox/chain.pem"));
    expect_link(p, P(a, "/etc/nginx/certs/foxycart-sandbox.key"),
                P(b, "/etc/letsencrypt/live/foxycart-sandbox/privkey.pem"));
    snprintf(c, sizeof c, "root %s/var/www/letsencrypt;", R);
    expect_file(p, P(a, "/etc/nginx/snippets/acme-challenge.conf"), 0644, c);
    expect_file(p, P(a, "/etc/nginx/snippets/acme-challenge.conf"), 0644,
                "location ^~ /.well-known/acme-challenge/ {");
    snprintf(c, sizeof c, "include %s/etc/nginx/snippets/acme-challenge.conf;", R);
    expect_file(p, P(a, "/etc/nginx/conf.d/certfleet-http.conf"), 0644, c);
    expect_file(p, P(a, "/etc/nginx/conf.d/certfleet-http.conf"), 0644,
                "listen 80 default_server;");
    expect_file(p, P(a, "/etc/nginx/conf.d/certfleet-http.conf"), 0644,
                "return 301 https://$host$request_uri;");
    snprintf(c, sizeof c, "ssl_certificate_key %s/etc/nginx/certs/foxycart-sandbox.key;", R);
    const struct cf_resource *ssl =
        expect_file(p, P(a, "/etc/nginx/snippets/ssl-foxycart-sandbox.conf"), 0644, c);
    (void)ssl;
    snprintf(c, sizeof c,
             "ssl_trusted_certificate %s/etc/nginx/certs/foxycart-sandbox.ca-bundle.crt;", R);
    expect_file(p, P(a, "/etc/nginx/snippets/ssl-foxycart-sandbox.conf"), 0644, c);
    const struct cf_resource *hook =
        expect_file(p, P(a, "/etc/letsencrypt/renewal-hooks/deploy/foxycart-sandbox.sh"), 0755,
                    "if ! out=$(nginx -t 2>&1); then");
    assert_non_null(strstr(hook->content, "if ! out=$(systemctl reload nginx 2>&1); then"));
    assert_non_null(strstr(hook->content, "logger -t certbot-deploy"));
    assert_non_null(strstr(hook->content, "service=foxycart-sandbox\n"));
#undef P
}

static void test_render_foxycart_sandbox(void **st)
{
    (void)st;
    struct cf_role *r = load_role();
    json_t *v = hostvars(NULL);
    struct cf_role_plan *p = render(r, v);
    check_layout(p, "");
    const struct cf_resource *ssl = find(p, "/etc/nginx/snippets/ssl-foxycart-sandbox.conf", NULL);
    assert_null(strstr(ssl->content, "Strict-Transport-Security")); /* certbot_hsts: false */
    /* nothing outside the layout: 15 tasks, none skipped, every path absolute */
    assert_int_equal(p->n_tasks, cf_role_task_count(r));
    for (size_t i = 0; i < p->n_tasks; i++) {
        assert_false(p->tasks[i].skipped);
        for (size_t k = 0; k < p->tasks[i].n_res; k++)
            assert_int_equal(p->tasks[i].res[k].path[0], '/');
    }
    cf_role_plan_free(p);
    json_decref(v);
    cf_role_free(r);
}

static void test_render_with_host_root(void **st)
{
    (void)st;
    struct cf_role *r = load_role();
    json_t *v = hostvars("certfleet_host_root: /srv/fleet/hosts/h1/root/\n"
                         "certbot_hsts: 'yes'\n");
    struct cf_role_plan *p = render(r, v);
    check_layout(p, "/srv/fleet/hosts/h1/root");
    const struct cf_resource *ssl =
        find(p, "/srv/fleet/hosts/h1/root/etc/nginx/snippets/ssl-foxycart-sandbox.conf", NULL);
    assert_non_null(strstr(ssl->content, "add_header Strict-Transport-Security \"max-age=31536000; "
                                         "includeSubDomains\" always;"));
    cf_role_plan_free(p);
    json_decref(v);
    cf_role_free(r);
}

static void test_render_switches(void **st)
{
    (void)st;
    struct cf_role *r = load_role();
    /* no redirect: the port-80 server's task owns its file, so the file
     * must be absent; nothing else of the role mentions it */
    json_t *v = hostvars("certbot_http_redirect: false\n");
    struct cf_role_plan *p = render(r, v);
    const char *task = NULL;
    const struct cf_resource *x = find(p, "/etc/nginx/conf.d/certfleet-http.conf", &task);
    assert_int_equal(x->kind, CF_RES_ABSENT);
    assert_true(x->unwanted);
    assert_string_equal(task, "install the port-80 server (HTTPS redirect, ACME challenges)");
    size_t mentions = 0;
    for (size_t i = 0; i < p->n_tasks; i++)
        for (size_t k = 0; k < p->tasks[i].n_res; k++) {
            const struct cf_resource *y = &p->tasks[i].res[k];
            if (y->path && strstr(y->path, "certfleet-http.conf")) {
                mentions++;
                assert_true(p->tasks[i].skipped);
            }
        }
    assert_int_equal(mentions, 1);
    cf_role_plan_free(p);
    json_decref(v);
    /* disabled: every task skipped; only the owned file is still removed */
    v = hostvars("certbot_enabled: false\n");
    p = render(r, v);
    assert_int_equal(cf_role_plan_size(p), 1);
    assert_int_equal(find(p, "/etc/nginx/conf.d/certfleet-http.conf", NULL)->kind, CF_RES_ABSENT);
    for (size_t i = 0; i < p->n_tasks; i++)
        assert_true(p->tasks[i].skipped);
    cf_role_plan_free(p);
    json_decref(v);
    /* with redirect (the default) the same task writes the file */
    v = hostvars(NULL);
    p = render(r, v);
    expect_file(p, "/etc/nginx/conf.d/certfleet-http.conf", 0644, "default_server");
    cf_role_plan_free(p);
    json_decref(v);
    /* a cert without cert_name is named after its first domain, as certbot does;
     * a webroot of its own gets its own challenge directory */
    v = hostvars("certbot_domains:\n  - domains: [a.example.org, b.example.org]\n"
                 "    webroot: /srv/acme\n"
                 "certbot_services: [{name: shop, cert_source: a.example.org}]\n");
    p = render(r, v);
    expect_dir(p, "/etc/letsencrypt/live/a.example.org", 0755);
    expect_dir(p, "/srv/acme/.well-known/acme-challenge", 0755);
    expect_link(p, "/etc/nginx/certs/shop.key", "/etc/letsencrypt/live/a.example.org/privkey.pem");
    cf_role_plan_free(p);
    json_decref(v);
    cf_role_free(r);
}

static void expect_hostile(const struct cf_role *r, const char *extra, const char *needle)
{
    char err[CF_ERRLEN] = "";
    struct cf_role_plan *p = NULL;
    json_t *v = hostvars(extra);
    int rc = cf_role_render(r, 0, v, &p, err);
    if (rc == 0)
        fail_msg("hostile vars accepted: %s", extra);
    assert_int_equal(rc, CF_EINVAL);
    assert_null(p);
    if (!strstr(err, needle))
        fail_msg("message [%s] does not name [%s]", err, needle);
    json_decref(v);
}

static void test_hostile_values(void **st)
{
    (void)st;
    struct cf_role *r = load_role();
    expect_hostile(r, "certbot_services: [{name: '$(touch /tmp/pwned)', cert_source: x}]\n",
                   "$(touch /tmp/pwned)");
    expect_hostile(r, "certbot_services: [{name: \"a'b\", cert_source: x}]\n", "a'b");
    expect_hostile(r, "certbot_services: [{name: \"a\\nb\", cert_source: x}]\n", "tasks/main.yml:");
    expect_hostile(r, "certbot_webroot: /var/www/../../etc\n", "/var/www/../../etc");
    expect_hostile(r, "certbot_domains: [{domains: [x.example], cert_name: '../../etc'}]\n",
                   "../../etc");
    expect_hostile(r, "nginx_certs_dir: relative/dir\n", "not an absolute path");
    expect_hostile(r, "certfleet_host_root: '/tmp/`id`'\n", "certfleet_host_root");
    /* an undefined variable names itself and the task file:line */
    expect_hostile(r, "certbot_services: [{name: svc}]\n", "item.cert_source");
    expect_hostile(r, "certbot_services: [{name: svc}]\n", "roles/certbot/tasks/main.yml:");
    assert_int_equal(access("/tmp/pwned", F_OK), -1);
    cf_role_free(r);
}

/* actual[] for a plan: every resource present exactly as desired, or (absent=1)
 * nothing there. */
static struct cf_rop_result *actual_state(const struct cf_role_plan *p, int absent)
{
    size_t n = cf_role_plan_size(p), k = 0;
    struct cf_rop_result *a = cf_xcalloc(n + 1, sizeof *a);
    for (size_t i = 0; i < p->n_tasks; i++)
        for (size_t j = 0; j < p->tasks[i].n_res; j++, k++) {
            const struct cf_resource *x = &p->tasks[i].res[j];
            struct cf_rstat *s = &a[k].st;
            if (absent || x->kind == CF_RES_COMMAND || x->kind == CF_RES_ABSENT)
                continue;
            s->exists = 1;
            s->mode = x->mode >= 0 ? (unsigned)x->mode : 0644;
            strcpy(s->owner, "root");
            strcpy(s->group, "root");
            if (x->kind == CF_RES_DIR)
                s->type = 'd';
            if (x->kind == CF_RES_LINK) {
                s->type = 'l';
                s->link_target = x->target; /* borrowed */
            }
            if (x->kind == CF_RES_FILE) {
                s->type = 'f';
                cf_sha256_hex(x->content, x->len, s->sha256);
                a[k].data = x->content; /* borrowed */
                a[k].len = x->len;
            }
        }
    return a;
}

static size_t index_of(const struct cf_role_plan *p, const char *path)
{
    size_t k = 0;
    for (size_t i = 0; i < p->n_tasks; i++)
        for (size_t j = 0; j < p->tasks[i].n_res; j++, k++)
            if (p->tasks[i].res[j].path && !strcmp(p->tasks[i].res[j].path, path))
                return k;
    fail_msg("no resource '%s'", path);
    return 0;
}

static void test_diff(void **st)
{
    (void)st;
    struct cf_role *r = load_role();
    json_t *v = hostvars(NULL);
    struct cf_role_plan *p = render(r, v);
    struct cf_role_result *res = NULL;

    /* a new host: every task changes, handlers notified once */
    struct cf_rop_result *a = actual_state(p, 1);
    cf_role_diff(p, a, 0, &res);
    assert_int_equal(res->n_tasks, p->n_tasks);
    assert_int_equal(res->changed, (int)p->n_tasks);
    assert_int_equal(res->ok + res->failed + res->skipped, 0);
    assert_int_equal(res->n_notified, 1);
    assert_string_equal(res->notified[0], "reload nginx");
    cf_role_result_free(res);
    free(a);

    /* converged: nothing changes, nothing notified */
    a = actual_state(p, 0);
    cf_role_diff(p, a, 1, &res);
    assert_int_equal(res->changed, 0);
    assert_int_equal(res->ok, (int)p->n_tasks);
    assert_int_equal(res->n_notified, 0);
    for (size_t i = 0; i < res->n_tasks; i++)
        assert_null(res->tasks[i].diff);
    cf_role_result_free(res);

    /* drift: a deleted key link and an edited snippet -> exactly those two */
    size_t kl = index_of(p, "/etc/nginx/certs/foxycart-sandbox.key");
    size_t ks = index_of(p, "/etc/nginx/snippets/acme-challenge.conf");
    a[kl].st.exists = 0;
    char *edited = cf_asprintf("%s# local edit\n", p->tasks[3].res[0].content);
    a[ks].data = edited;
    a[ks].len = strlen(edited);
    cf_sha256_hex(edited, strlen(edited), a[ks].st.sha256);
    cf_role_diff(p, a, 1, &res);
    assert_int_equal(res->changed, 2);
    int seen = 0;
    for (size_t i = 0; i < res->n_tasks; i++) {
        if (res->tasks[i].status != CF_TASK_CHANGED)
            continue;
        if (!strcmp(res->tasks[i].name, "link each service's private key")) {
            seen |= 1;
            assert_non_null(strstr(res->tasks[i].msg, "foxycart-sandbox.key: created"));
            assert_non_null(
                strstr(res->tasks[i].diff,
                       "+state: link -> /etc/letsencrypt/live/foxycart-sandbox/privkey.pem"));
        } else if (!strcmp(res->tasks[i].name, "install the ACME challenge snippet")) {
            seen |= 2;
            assert_non_null(strstr(res->tasks[i].msg, "content differs"));
            assert_non_null(
                strstr(res->tasks[i].diff, "--- a/etc/nginx/snippets/acme-challenge.conf\n"));
            assert_non_null(strstr(res->tasks[i].diff, "\n-# local edit\n"));
        }
    }
    assert_int_equal(seen, 3);
    /* a mode change alone is a change too */
    a[kl].st.exists = 1;
    a[ks].data = p->tasks[3].res[0].content;
    a[ks].len = p->tasks[3].res[0].len;
    cf_sha256_hex(a[ks].data, a[ks].len, a[ks].st.sha256);
    size_t kd = index_of(p, "/etc/letsencrypt/archive/foxycart-sandbox");
    a[kd].st.mode = 0755;
    cf_role_result_free(res);
    cf_role_diff(p, a, 0, &res);
    assert_int_equal(res->changed, 1);
    for (size_t i = 0; i < res->n_tasks; i++)
        if (res->tasks[i].changed)
            assert_non_null(strstr(res->tasks[i].msg, "mode 0755 -> 0700"));
    /* an inspect failure fails that task only */
    a[kd].status = CF_EREMOTE;
    a[kd].err_text = "find: Permission denied";
    cf_role_result_free(res);
    cf_role_diff(p, a, 0, &res);
    assert_int_equal(res->failed, 1);
    assert_int_equal(res->changed, 0);
    cf_role_result_free(res);
    free(edited);
    free(a);
    cf_role_plan_free(p);
    json_decref(v);
    cf_role_free(r);
}

/* An owned file the role no longer wants: removed (changed, notifies) when
 * present, a plain skip when already gone. */
static void test_diff_unwanted(void **st)
{
    (void)st;
    struct cf_role *r = load_role();
    json_t *v = hostvars("certbot_http_redirect: false\n");
    struct cf_role_plan *p = render(r, v);
    struct cf_role_result *res = NULL;
    struct cf_rop_result *a = actual_state(p, 0);
    size_t k = index_of(p, "/etc/nginx/conf.d/certfleet-http.conf");
    const char *name = "install the port-80 server (HTTPS redirect, ACME challenges)";
    /* a stale file from a run with the redirect on */
    a[k].st.exists = 1;
    a[k].st.type = 'f';
    cf_role_diff(p, a, 0, &res);
    assert_int_equal(res->changed, 1);
    for (size_t i = 0; i < res->n_tasks; i++)
        if (!strcmp(res->tasks[i].name, name)) {
            assert_int_equal(res->tasks[i].status, CF_TASK_CHANGED);
            assert_string_equal(res->tasks[i].msg, "/etc/nginx/conf.d/certfleet-http.conf: "
                                                   "removed (the task's condition is false)");
        }
    assert_int_equal(res->n_notified, 1);
    assert_string_equal(res->notified[0], "reload nginx");
    assert_int_equal(p->tasks[0].res[0].action, CF_ACT_NONE);
    cf_role_result_free(res);
    /* already gone: skipped, nothing to do, nothing notified */
    a[k].st.exists = 0;
    cf_role_diff(p, a, 0, &res);
    assert_int_equal(res->changed, 0);
    assert_int_equal(res->n_notified, 0);
    for (size_t i = 0; i < res->n_tasks; i++)
        if (!strcmp(res->tasks[i].name, name))
            assert_int_equal(res->tasks[i].status, CF_TASK_SKIPPED);
    cf_role_result_free(res);
    free(a);
    cf_role_plan_free(p);
    json_decref(v);
    cf_role_free(r);
}

/* cf_role_undo_ops: each previous state gives exactly its restore
 * operation, the last change first. */
static void test_undo_ops(void **st)
{
    (void)st;
    /* one case per entry reads better than one field per line */
    /* clang-format off */
    static const struct {
        const char *what;
        struct cf_role_undo_entry e; /* the previous state */
        int none;                    /* no operation */
        enum cf_rop_kind kind;
        const char *target, *content, *owner, *problem;
        unsigned mode;
    } cases[] = {
        {.what = "created file is removed",
         .e = {.path = "/c/new.conf", .kind = CF_RES_FILE},
         .kind = CF_ROP_REMOVE},
        {.what = "created link is removed",
         .e = {.path = "/c/k.key", .kind = CF_RES_LINK},
         .kind = CF_ROP_REMOVE},
        {.what = "created directory stays", .e = {.path = "/c/dir", .kind = CF_RES_DIR}, .none = 1},
        {.what = "replaced file: content, mode and owner back",
         .e = {.path = "/c/old.conf", .kind = CF_RES_FILE, .existed = 1, .type = 'f',
               .content = "listen 80;\n", .len = 11, .mode = 0640, .owner = "www",
               .group = "adm"},
         .kind = CF_ROP_WRITE, .content = "listen 80;\n", .owner = "www", .mode = 0640},
        {.what = "empty file comes back empty",
         .e = {.path = "/c/empty", .kind = CF_RES_FILE, .existed = 1, .type = 'f', .mode = 0600},
         .kind = CF_ROP_WRITE, .content = "", .mode = 0600},
        {.what = "removed file (owned dest) is written back",
         .e = {.path = "/c/http.conf", .kind = CF_RES_ABSENT, .existed = 1, .type = 'f',
               .content = "server {}\n", .len = 10, .mode = 0644, .owner = "root",
               .group = "root"},
         .kind = CF_ROP_WRITE, .content = "server {}\n", .owner = "root", .mode = 0644},
        {.what = "repointed link: previous target",
         .e = {.path = "/c/a.crt", .kind = CF_RES_LINK, .existed = 1, .type = 'l',
               .link_target = "../archive/a/cert1.pem"},
         .kind = CF_ROP_SYMLINK, .target = "../archive/a/cert1.pem"},
        {.what = "file replaced by a link: the file again",
         .e = {.path = "/c/b.crt", .kind = CF_RES_LINK, .existed = 1, .type = 'f',
               .content = "x", .len = 1, .mode = 0644},
         .kind = CF_ROP_WRITE, .content = "x", .mode = 0644},
        {.what = "directory mode change: previous mode and owner",
         .e = {.path = "/c/archive", .kind = CF_RES_DIR, .existed = 1, .type = 'd',
               .mode = 0755, .owner = "root", .group = "root"},
         .kind = CF_ROP_MKDIR, .owner = "root", .mode = 0755},
        {.what = "content not kept: a problem, no operation",
         .e = {.path = "/c/huge", .kind = CF_RES_FILE, .existed = 1, .type = 'f',
               .problem = "its previous content was not kept"},
         .none = 1, .problem = "/c/huge: its previous content was not kept"},
        {.what = "a fifo cannot be recreated",
         .e = {.path = "/c/fifo", .kind = CF_RES_FILE, .existed = 1, .type = 'o'},
         .none = 1, .problem = "/c/fifo: it was a special file"},
    };
    /* clang-format on */
    size_t n = sizeof cases / sizeof cases[0];
    /* one entry at a time */
    for (size_t i = 0; i < n; i++) {
        struct cf_role_undo u = {(struct cf_role_undo_entry *)&cases[i].e, 1};
        struct cf_role_restore *ops = NULL;
        size_t nops = 9;
        char *problems = NULL;
        cf_role_undo_ops(&u, &ops, &nops, &problems);
        print_message("# undo: %s\n", cases[i].what);
        if (cases[i].none) {
            assert_int_equal(nops, 0);
        } else {
            assert_int_equal(nops, 1);
            assert_int_equal(ops[0].kind, cases[i].kind);
            assert_string_equal(ops[0].path, cases[i].e.path);
            if (cases[i].target)
                assert_string_equal(ops[0].target, cases[i].target);
            if (cases[i].content) {
                assert_int_equal(ops[0].len, strlen(cases[i].content));
                assert_memory_equal(ops[0].content, cases[i].content, ops[0].len);
            }
            if (cases[i].kind == CF_ROP_WRITE || cases[i].kind == CF_ROP_MKDIR)
                assert_int_equal(ops[0].mode, cases[i].mode);
            if (cases[i].owner)
                assert_string_equal(ops[0].owner, cases[i].owner);
            else
                assert_null(ops[0].owner);
        }
        if (cases[i].problem) {
            assert_non_null(problems);
            if (strncmp(problems, cases[i].problem, strlen(cases[i].problem)))
                fail_msg("%s: problems [%s]", cases[i].what, problems);
        } else {
            assert_null(problems);
        }
        free(ops);
        free(problems);
    }
    /* all at once: reverse order, one op per restorable entry, problems joined */
    struct cf_role_undo_entry all[sizeof cases / sizeof cases[0]];
    for (size_t i = 0; i < n; i++)
        all[i] = cases[i].e;
    struct cf_role_undo u = {all, n};
    struct cf_role_restore *ops = NULL;
    size_t nops = 0;
    char *problems = NULL;
    cf_role_undo_ops(&u, &ops, &nops, &problems);
    size_t j = 0;
    for (size_t i = n; i-- > 0;)
        if (!cases[i].none) {
            assert_true(j < nops);
            assert_string_equal(ops[j++].path, cases[i].e.path);
        }
    assert_int_equal(j, nops);
    assert_non_null(strstr(problems, "/c/fifo: it was a special file"));
    assert_non_null(strstr(problems, "; /c/huge: "));
    free(ops);
    free(problems);
}

/* What the host's message says after a rollback. */
static void test_undo_message(void **st)
{
    (void)st;
    static const struct {
        enum cf_task_status back, test;
        const char *back_msg, *test_msg, *error, *want;
    } cases[] = {
        {CF_TASK_CHANGED, CF_TASK_CHANGED, "1 path restored", "'t' passes", "",
         "WHY; the role change was rolled back (1 path restored); the test passes again"},
        {CF_TASK_FAILED, CF_TASK_CHANGED, "0 paths restored; not restored: /x: denied", "", "",
         "WHY; the role change was rolled back in part (0 paths restored; not restored: /x: "
         "denied); the test passes again"},
        {CF_TASK_CHANGED, CF_TASK_FAILED, "2 paths restored", "'t' exited with 1: bad", "",
         "WHY; the role change was rolled back (2 paths restored); the test still fails after "
         "the rollback: 't' exited with 1: bad"},
        {CF_TASK_FAILED, CF_TASK_FAILED, "x", "y", "rolling back failed: timeout",
         "WHY; rolling back failed: timeout"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct cf_task_result t[2] = {
            {.status = cases[i].back, .msg = (char *)cases[i].back_msg},
            {.status = cases[i].test, .msg = (char *)cases[i].test_msg},
        };
        struct cf_role_result res = {.tasks = t, .n_tasks = 2};
        snprintf(res.error, sizeof res.error, "%s", cases[i].error);
        char *m = cf_role_undo_message("WHY", &res);
        assert_string_equal(m, cases[i].want);
        free(m);
    }
}

static void test_unified_diff(void **st)
{
    (void)st;
    const char *a = "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12\n";
    const char *b = "1\n2\n3\n4\nfive\n6\n7\n8\n9\n10\n11\n12\n13\n";
    char *d = cf_role_unified_diff("/x.conf", a, strlen(a), b, strlen(b));
    assert_string_equal(d, "--- a/x.conf\n+++ b/x.conf\n"
                           "@@ -2,7 +2,7 @@\n 2\n 3\n 4\n-5\n+five\n 6\n 7\n 8\n"
                           "@@ -10,3 +10,4 @@\n 10\n 11\n 12\n+13\n");
    free(d);
    assert_null(cf_role_unified_diff("/x", a, strlen(a), a, strlen(a)));
    d = cf_role_unified_diff("/new", "", 0, "x\ny", 3);
    assert_string_equal(
        d, "--- /dev/null\n+++ b/new\n@@ -0,0 +1,2 @@\n+x\n+y\n\\ No newline at end of file\n");
    free(d);
}

/* A throwaway role for the key-hiding and module checks. */
static char *make_role(const char *tasks)
{
    char tmpl[] = "/tmp/cf-role-XXXXXX";
    char *dir = cf_strdup(mkdtemp(tmpl));
    char *p = cf_asprintf("%s/t/tasks", dir);
    assert_int_equal(cf_mkdir_p(p, 0755), 0);
    free(p);
    p = cf_asprintf("%s/t/tasks/main.yml", dir);
    assert_int_equal(cf_write_file_atomic(p, tasks, strlen(tasks), 0644), 0);
    free(p);
    return dir;
}

static void rm_role(char *dir)
{
    char *p = cf_asprintf("%s/t/tasks/main.yml", dir);
    unlink(p);
    free(p);
    p = cf_asprintf("%s/t/tasks", dir);
    rmdir(p);
    free(p);
    p = cf_asprintf("%s/t", dir);
    rmdir(p);
    free(p);
    rmdir(dir);
    free(dir);
}

/* The owning tag: only copy and template tasks may carry it, and an owned
 * dest must render even when `when` is false. */
static void test_owns_dest_tag(void **st)
{
    (void)st;
    char err[CF_ERRLEN] = "";
    struct cf_role *r = NULL;
    char *dir = make_role("- name: run\n  command: 'true'\n  tags: [certfleet_owns_dest]\n");
    assert_int_equal(cf_role_load(dir, "t", &r, err), CF_EINVAL);
    assert_non_null(strstr(err, "tag 'certfleet_owns_dest' is for copy and template tasks only"));
    assert_non_null(strstr(err, "tasks/main.yml:1:"));
    rm_role(dir);
    dir = make_role("- name: owned\n  copy: {dest: '/etc/{{ f }}', content: x}\n"
                    "  when: false\n  tags: [other, certfleet_owns_dest]\n"
                    "- name: not owned\n  copy: {dest: /etc/b, content: x}\n  when: false\n");
    assert_int_equal(cf_role_load(dir, "t", &r, err), 0);
    json_t *v = json_pack("{s:s}", "f", "a.conf");
    struct cf_role_plan *p = render(r, v);
    assert_int_equal(cf_role_plan_size(p), 1);
    assert_int_equal(p->tasks[0].res[0].kind, CF_RES_ABSENT);
    assert_string_equal(p->tasks[0].res[0].path, "/etc/a.conf");
    assert_true(p->tasks[0].skipped && p->tasks[1].skipped);
    cf_role_plan_free(p);
    json_decref(v);
    /* its dest must render even though the condition is false */
    v = json_object();
    assert_int_equal(cf_role_render(r, 0, v, &p, err), CF_EINVAL);
    if (!strstr(err, "task 'owned'") && !strstr(err, "'f'"))
        fail_msg("undefined dest variable: [%s]", err);
    print_message("# %s\n", err);
    json_decref(v);
    cf_role_free(r);
    rm_role(dir);
}

static void test_keys_never_in_diffs(void **st)
{
    (void)st;
    char *dir = make_role("- name: place a key\n"
                          "  copy:\n"
                          "    dest: /etc/k.pem\n"
                          "    content: \"{{ key }}\"\n"
                          "    mode: '0600'\n"
                          "- name: run a tool\n"
                          "  command:\n"
                          "    argv: [echo, \"it's\", \"{{ key | length }}\"]\n"
                          "    creates: /etc/done\n");
    char err[CF_ERRLEN] = "";
    struct cf_role *r = NULL;
    if (cf_role_load(dir, "t", &r, err) != 0)
        fail_msg("%s", err);
    json_t *v = json_pack("{s:s}", "key",
                          "-----BEGIN PRIVATE KEY-----\nSECRETSECRET\n-----END PRIVATE KEY-----\n");
    struct cf_role_plan *p = NULL;
    if (cf_role_render(r, 0, v, &p, err) != 0)
        fail_msg("%s", err);
    assert_int_equal(p->tasks[0].res[0].mode, 0600);
    assert_string_equal(p->tasks[1].res[0].command, "echo 'it'\"'\"'s' 67");
    assert_string_equal(p->tasks[1].res[0].creates, "/etc/done");
    struct cf_rop_result *a = cf_xcalloc(2, sizeof *a);
    a[0].st.exists = 1;
    a[0].st.type = 'f';
    a[0].data = "-----BEGIN PRIVATE KEY-----\nOLDSECRET\n-----END PRIVATE KEY-----\n";
    a[0].len = strlen(a[0].data);
    struct cf_role_result *res = NULL;
    cf_role_diff(p, a, 1, &res);
    assert_int_equal(res->tasks[0].status, CF_TASK_CHANGED);
    assert_null(strstr(res->tasks[0].diff, "SECRET"));
    assert_null(strstr(res->tasks[0].msg, "SECRET"));
    assert_non_null(strstr(res->tasks[0].diff, "hidden"));
    assert_int_equal(res->tasks[1].status, CF_TASK_CHANGED); /* creates absent: runs */
    cf_role_result_free(res);
    a[1].st.exists = 1;
    cf_role_diff(p, a, 1, &res);
    assert_int_equal(res->tasks[1].status, CF_TASK_OK); /* creates present: nothing to do */
    cf_role_result_free(res);
    free(a);
    cf_role_plan_free(p);
    json_decref(v);
    cf_role_free(r);
    rm_role(dir);

    /* unsupported things are load errors with file:line */
    dir = make_role("- name: ok\n  file: {path: /a, state: directory}\n"
                    "- name: nope\n  become: true\n  file: {path: /b, state: directory}\n");
    assert_int_equal(cf_role_load(dir, "t", &r, err), CF_EINVAL);
    assert_non_null(strstr(err, "tasks/main.yml:4:"));
    assert_non_null(strstr(err, "'become'"));
    rm_role(dir);
    dir = make_role("- name: n\n  file: {path: /a, state: directory}\n  notify: missing handler\n");
    assert_int_equal(cf_role_load(dir, "t", &r, err), CF_EINVAL);
    assert_non_null(strstr(err, "'missing handler'"));
    rm_role(dir);
}

/* --------------------------------------------- a real host (integration) */

struct live {
    uv_loop_t loop;
    cf_ssh *s;
    int connected;
    int status;
    struct cf_role_result *res;
    struct cf_rbatch *batch;
    int done;
};

static void on_connect(cf_ssh *s, int status, void *arg)
{
    struct live *L = arg;
    L->connected = status == 0;
    L->status = status;
    L->done = 1;
}

static void on_role(cf_ssh *s, int status, struct cf_role_result *res, void *arg)
{
    struct live *L = arg;
    L->status = status;
    L->res = res;
    L->done = 1;
}

static void on_batch(struct cf_rbatch *b, int status, void *arg)
{
    struct live *L = arg;
    L->status = status;
    L->done = 1;
}

static void run_until_done(struct live *L)
{
    while (!L->done)
        if (uv_run(&L->loop, UV_RUN_ONCE) == 0 && !L->done)
            fail_msg("loop ran dry before the callback");
    L->done = 0;
}

static json_t *live_vars(void)
{
    const char *name = getenv("CF_TEST_HOST_NAME");
    char *extra = cf_asprintf("certfleet_host_root: '%s'\n"
                              "certbot_test_command: '%s'\n"
                              "certbot_reload_command: '%s'\n"
                              "certbot_http_listen: '%s'\n"
                              "certbot_domains: [{domains: ['%s.fleet.test'], webroot: "
                              "/var/www/letsencrypt, cert_name: '%s'}]\n"
                              "certbot_services: [{name: '%s', cert_source: '%s'}]\n",
                              getenv("CF_TEST_HOST_ROOT"), getenv("CF_TEST_TEST_CMD"),
                              getenv("CF_TEST_RELOAD_CMD"), getenv("CF_TEST_HTTP_LISTEN"), name,
                              name, name, name);
    json_t *v = hostvars(extra);
    free(extra);
    return v;
}

static struct cf_role_result *converge(struct live *L, const struct cf_role *r, json_t *v,
                                       int check, int diff)
{
    char err[CF_ERRLEN] = "";
    struct cf_role_opts o = {.check = check, .diff = diff};
    if (cf_role_converge(L->s, r, v, &o, on_role, L, err) != 0)
        fail_msg("converge: %s", err);
    run_until_done(L);
    if (L->status != 0)
        fail_msg("converge transport: %s", L->res ? L->res->error : "?");
    for (size_t i = 0; i < L->res->n_tasks; i++)
        if (L->res->tasks[i].status == CF_TASK_FAILED)
            fail_msg("task '%s' failed: %s", L->res->tasks[i].name, L->res->tasks[i].msg);
    return L->res;
}

static void remote_batch(struct live *L, struct cf_rbatch *b)
{
    assert_int_equal(cf_remote_run(L->s, b, 0, on_batch, L), 0);
    run_until_done(L);
    assert_int_equal(L->status, 0);
}

static void test_converge_real_host(void **st)
{
    (void)st;
    struct live L = {0};
    char err[CF_ERRLEN] = "";
    const char *root = getenv("CF_TEST_HOST_ROOT"), *name = getenv("CF_TEST_HOST_NAME");
    assert_int_equal(uv_loop_init(&L.loop), 0);
    struct cf_ssh_config cfg = {
        .name = name,
        .address = getenv("CF_TEST_SSH_ADDR"),
        .port = atoi(getenv("CF_TEST_SSH_PORT")),
        .user = getenv("CF_TEST_SSH_USER"),
        .key_file = getenv("CF_TEST_SSH_KEY"),
        .known_hosts = getenv("CF_TEST_KNOWN_HOSTS"),
        .hostkey_mode = CF_HOSTKEY_STRICT,
        .timeout_ms = 20000,
    };
    assert_int_equal(cf_ssh_connect(&L.loop, &cfg, &L.s, on_connect, &L), 0);
    run_until_done(&L);
    if (!L.connected)
        fail_msg("connect: %s", cf_ssh_error(L.s));
    struct cf_role *r = load_role();
    json_t *v = live_vars();

    /* hostile value: rejected before anything runs on the host */
    json_t *bad = json_deep_copy(v);
    json_object_set_new(bad, "nginx_snippets_dir", json_string("/tmp/$(touch /tmp/pwned-role)"));
    struct cf_role_opts o = {0};
    assert_int_equal(cf_role_converge(L.s, r, bad, &o, on_role, &L, err), CF_EINVAL);
    assert_non_null(strstr(err, "$(touch /tmp/pwned-role)"));
    json_decref(bad);

    /* 1. first converge changes things */
    struct cf_role_result *res = converge(&L, r, v, 0, 0);
    print_message("# first converge: ok=%d changed=%d failed=%d skipped=%d\n", res->ok,
                  res->changed, res->failed, res->skipped);
    assert_true(res->changed >= 10);
    assert_int_equal(res->failed, 0);
    assert_int_equal(res->n_notified, 1);

    /* placeholder certificate (the lead's pipeline installs the store's
     * version or a self-signed one here) so nginx -t passes */
    struct cf_rbatch *b = cf_rbatch_new();
    char *cmd = cf_asprintf(
        "cd '%s/etc/letsencrypt/live/%s' && openssl req -x509 -newkey ec "
        "-pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=placeholder "
        "-keyout privkey.pem -out fullchain.pem 2>/dev/null && cp fullchain.pem chain.pem",
        root, name);
    assert_true(cf_rbatch_run(b, cmd, 1, err) >= 0);
    free(cmd);
    remote_batch(&L, b);
    assert_int_equal(cf_rbatch_result(b, 0)->exit_status, 0);
    cf_rbatch_free(b);

    /* handlers: test passes, then reload (which starts a stopped nginx) */
    struct cf_role_opts ho = {0};
    int hr = cf_role_run_handlers(L.s, r, v, (const char *const *)res->notified, res->n_notified,
                                  &ho, on_role, &L, err);
    assert_int_equal(hr, 0);
    cf_role_result_free(res);
    run_until_done(&L);
    res = L.res;
    assert_int_equal(res->n_tasks, 2);
    for (size_t i = 0; i < res->n_tasks; i++)
        if (res->tasks[i].status != CF_TASK_CHANGED)
            fail_msg("handler '%s': %s", res->tasks[i].name, res->tasks[i].msg);
    assert_string_equal(res->tasks[0].name, "test nginx configuration");
    cf_role_result_free(res);

    /* 2. second converge: changed=0 */
    res = converge(&L, r, v, 0, 1);
    print_message("# second converge: ok=%d changed=%d\n", res->ok, res->changed);
    assert_int_equal(res->changed, 0);
    assert_int_equal(res->n_notified, 0);
    assert_int_equal(res->ok + res->skipped, (int)res->n_tasks);
    cf_role_result_free(res);

    /* 3. drift: delete a symlink, edit a snippet */
    char *link = cf_asprintf("%s/etc/nginx/certs/%s.key", root, name);
    char *snip = cf_asprintf("%s/etc/nginx/snippets/acme-challenge.conf", root);
    b = cf_rbatch_new();
    assert_true(cf_rbatch_remove(b, link, err) >= 0);
    assert_true(cf_rbatch_write(b, snip, "# edited by hand\n", 17, 0644, NULL, NULL, err) >= 0);
    remote_batch(&L, b);
    cf_rbatch_free(b);

    res = converge(&L, r, v, 1, 1);
    print_message("# check on a drifted host: changed=%d\n", res->changed);
    assert_int_equal(res->changed, 2);
    for (size_t i = 0; i < res->n_tasks; i++) {
        if (res->tasks[i].status != CF_TASK_CHANGED)
            continue;
        if (strcmp(res->tasks[i].name, "link each service's private key") &&
            strcmp(res->tasks[i].name, "install the ACME challenge snippet"))
            fail_msg("unexpected change: %s", res->tasks[i].name);
        if (!strcmp(res->tasks[i].name, "install the ACME challenge snippet")) {
            assert_non_null(res->tasks[i].diff);
            assert_non_null(strstr(res->tasks[i].diff, "-# edited by hand\n"));
            assert_non_null(
                strstr(res->tasks[i].diff, "+location ^~ /.well-known/acme-challenge/ {\n"));
        }
    }
    cf_role_result_free(res);

    /* --check wrote nothing: the link is still gone, the edit still there */
    b = cf_rbatch_new();
    assert_true(cf_rbatch_stat(b, link, err) >= 0);
    assert_true(cf_rbatch_read(b, snip, 4096, err) >= 0);
    remote_batch(&L, b);
    assert_int_equal(cf_rbatch_result(b, 0)->st.exists, 0);
    assert_string_equal(cf_rbatch_result(b, 1)->data, "# edited by hand\n");
    cf_rbatch_free(b);

    /* 4. converge repairs exactly those two, then the host is clean again */
    res = converge(&L, r, v, 0, 0);
    assert_int_equal(res->changed, 2);
    cf_role_result_free(res);
    res = converge(&L, r, v, 0, 0);
    assert_int_equal(res->changed, 0);
    cf_role_result_free(res);

    free(link);
    free(snip);
    json_decref(v);
    cf_role_free(r);
    cf_ssh_close(L.s, NULL, NULL);
    uv_run(&L.loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&L.loop), 0);
    assert_int_equal(access("/tmp/pwned-role", F_OK), -1);
}

/* Print the plan for the vars file in CF_TEST_PLAN_VARS (merged over the
 * role defaults) as "plan <kind> <path> <mode> <sha256 or link target>"
 * lines, so 30_role.sh can compare it with what ansible-playbook makes of
 * the same role and variables. */
static void test_print_plan(void **st)
{
    (void)st;
    char err[CF_ERRLEN] = "";
    struct cf_role *r = load_role();
    json_t *d = NULL, *x = NULL;
    char *path = cf_asprintf("%s/certbot/defaults/main.yml", roles_dir());
    assert_int_equal(cf_yaml_load_file(path, &d, err), 0);
    free(path);
    if (cf_yaml_load_file(getenv("CF_TEST_PLAN_VARS"), &x, err) != 0)
        fail_msg("%s", err);
    cf_vars_merge(d, x);
    struct cf_role_plan *p = render(r, d);
    for (size_t t = 0; t < p->n_tasks; t++)
        for (size_t k = 0; k < p->tasks[t].n_res; k++) {
            const struct cf_resource *z = &p->tasks[t].res[k];
            char h[65] = "";
            if (z->kind == CF_RES_ABSENT)
                continue; /* Ansible has no owned destinations */
            if (z->content)
                cf_sha256_hex(z->content, z->len, h);
            printf("plan %c %s %o %s\n",
                   z->kind == CF_RES_DIR    ? 'd'
                   : z->kind == CF_RES_LINK ? 'l'
                                            : 'f',
                   z->path, z->mode < 0 ? 0 : (unsigned)z->mode,
                   z->kind == CF_RES_LINK ? z->target : h);
        }
    cf_role_plan_free(p);
    json_decref(x);
    json_decref(d);
    cf_role_free(r);
}

int main(void)
{
    const struct CMUnitTest pure[] = {
        cmocka_unit_test(test_render_foxycart_sandbox),
        cmocka_unit_test(test_render_with_host_root),
        cmocka_unit_test(test_render_switches),
        cmocka_unit_test(test_hostile_values),
        cmocka_unit_test(test_diff),
        cmocka_unit_test(test_diff_unwanted),
        cmocka_unit_test(test_owns_dest_tag),
        cmocka_unit_test(test_undo_ops),
        cmocka_unit_test(test_undo_message),
        cmocka_unit_test(test_unified_diff),
        cmocka_unit_test(test_keys_never_in_diffs),
    };
    const struct CMUnitTest live[] = {
        cmocka_unit_test(test_converge_real_host),
    };
    int rc = cmocka_run_group_tests_name("role", pure, NULL, NULL);
    /* the real-host test needs a fleet host: tests/integration/30_role.sh */
    const struct CMUnitTest plan[] = {
        cmocka_unit_test(test_print_plan),
    };
    if (getenv("CF_TEST_PLAN_VARS"))
        rc |= cmocka_run_group_tests_name("role plan", plan, NULL, NULL);
    if (getenv("CF_TEST_SSH_ADDR"))
        rc |= cmocka_run_group_tests_name("role on a real host", live, NULL, NULL);
    return rc;
}

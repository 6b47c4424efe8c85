/*
 * role.c - load a role, render it per host into desired resources, diff
 * them against what the host has, and converge in two batched round trips
 * (see role.h).
 *
 * The flow of one host: cf_role_render (pure) -> inspect batch (STAT/READ
 * of every resource) -> cf_role_diff (pure) -> apply batch (only the
 * changes, in task order) -> results.  Keeping the decisions pure lets the
 * unit tests check exact paths, link targets and change detection without
 * a host.
 */
#include "role.h"
#include "cf.h"
#include "template.h"
#include "util.h"
#include "vars.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/crypto.h>

#define CF_ROLE_READ_MAX     (1024 * 1024) /* largest file content read for --diff */
#define CF_ROLE_TEMPLATE_MAX (1024 * 1024)

enum mod { M_FILE, M_COPY, M_TEMPLATE, M_LINK, M_COMMAND };

struct task {
    char *name;
    int line;
    enum mod mod;
    json_t *args;  /* module arguments (free-form command -> {"cmd": ...}) */
    json_t *lines; /* argument name -> line, for messages */
    json_t *loop;  /* NULL when the task has no loop */
    char *loop_var;
    json_t *when; /* array of conditions (strings or bools), or NULL */
    char **notify;
    size_t n_notify;
    char **listen;
    size_t n_listen;
    int no_log;
    int owns_dest; /* tagged certfleet_owns_dest (see role.h) */
};

#define OWNS_DEST_TAG "certfleet_owns_dest"

struct tmpl {
    char *name; /* relative to templates/ */
    char *path; /* for messages */
    char *text;
};

struct cf_role {
    char *name;
    char *tasks_file;
    char *handlers_file;
    struct task *tasks;
    size_t n_tasks;
    struct task *handlers;
    size_t n_handlers;
    struct tmpl *tmpls;
    size_t n_tmpls;
};

/* ------------------------------------------------------------- helpers */

static void strv_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static void strv_push(char ***v, size_t *n, const char *s)
{
    *v = cf_xrealloc(*v, (*n + 1) * sizeof **v);
    (*v)[(*n)++] = cf_strdup(s);
}

static int strv_has(char *const *v, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(v[i], s))
            return 1;
    return 0;
}

static int line_of(const json_t *v)
{
    struct cf_pos pos;
    return cf_vars_pos(v, &pos) == 0 ? pos.line : 0;
}

static int member_line(const json_t *obj, const char *key, int dflt)
{
    struct cf_pos pos;
    return cf_vars_member_pos(obj, key, &pos) == 0 && pos.line ? pos.line : dflt;
}

/* ---------------------------------------------------------------- load */

static void task_release(struct task *t)
{
    free(t->name);
    json_decref(t->args);
    json_decref(t->lines);
    json_decref(t->loop);
    free(t->loop_var);
    json_decref(t->when);
    strv_free(t->notify, t->n_notify);
    strv_free(t->listen, t->n_listen);
}

/* A string or a list of strings (notify, listen). */
static int load_names(const char *file, int line, const char *what, const json_t *v, char ***out,
                      size_t *n, char *err)
{
    if (json_is_string(v)) {
        strv_push(out, n, json_string_value(v));
        return 0;
    }
    if (!json_is_array(v))
        return cf_errf(err, "%s:%d: '%s' must be a name or a list of names", file, line, what);
    for (size_t i = 0; i < json_array_size(v); i++) {
        json_t *x = json_array_get(v, i);
        if (!json_is_string(x))
            return cf_errf(err, "%s:%d: '%s' must be a name or a list of names", file, line, what);
        strv_push(out, n, json_string_value(x));
    }
    return 0;
}

static int module_of(const char *key, enum mod *m)
{
    static const struct {
        const char *name;
        enum mod m;
    } mods[] = {{"file", M_FILE}, {"copy", M_COPY},       {"template", M_TEMPLATE},
                {"link", M_LINK}, {"command", M_COMMAND}, {"shell", M_COMMAND}};
    const char *k = key;
    if (!strncmp(k, "ansible.builtin.", 16))
        k += 16;
    for (size_t i = 0; i < sizeof mods / sizeof mods[0]; i++)
        if (!strcmp(k, mods[i].name)) {
            *m = mods[i].m;
            return 1;
        }
    return 0;
}

static int load_task(const char *file, const json_t *j, int handler, struct task *t, char *err)
{
    memset(t, 0, sizeof *t);
    t->line = line_of(j);
    if (!json_is_object(j))
        return cf_errf(err, "%s:%d: a task must be a mapping", file, t->line);
    const char *key;
    json_t *v;
    int have_mod = 0;
    json_object_foreach((json_t *)j, key, v)
    {
        int kl = member_line(j, key, t->line);
        enum mod m;
        if (!strcmp(key, "name")) {
            if (!json_is_string(v))
                return cf_errf(err, "%s:%d: 'name' must be a string", file, kl);
            t->name = cf_strdup(json_string_value(v));
        } else if (module_of(key, &m)) {
            if (have_mod)
                return cf_errf(err, "%s:%d: a task has exactly one module; '%s' is a second one",
                               file, kl, key);
            have_mod = 1;
            t->mod = m;
            if (m == M_COMMAND && json_is_string(v)) {
                t->args = json_pack("{s:O}", "cmd", v);
                t->lines = json_pack("{s:i}", "cmd", kl);
            } else if (!json_is_object(v)) {
                return cf_errf(err, "%s:%d: the arguments of '%s' must be a mapping", file, kl,
                               key);
            } else {
                t->args = json_incref(v);
                t->lines = json_object();
                const char *ak;
                json_t *av;
                json_object_foreach(v, ak, av)
                    json_object_set_new(t->lines, ak, json_integer(member_line(v, ak, kl)));
            }
        } else if (!strcmp(key, "loop") || !strcmp(key, "with_items") ||
                   !strcmp(key, "with_list")) {
            t->loop = json_incref(v);
        } else if (!strcmp(key, "loop_control")) {
            json_t *lv = json_object_get(v, "loop_var");
            if (!json_is_object(v) || !json_is_string(lv))
                return cf_errf(err, "%s:%d: loop_control supports only 'loop_var: NAME'", file, kl);
            t->loop_var = cf_strdup(json_string_value(lv));
        } else if (!strcmp(key, "when")) {
            if (json_is_array(v))
                t->when = json_incref(v);
            else if (json_is_string(v) || json_is_boolean(v))
                t->when = json_pack("[O]", v);
            else
                return cf_errf(err, "%s:%d: 'when' must be a condition or a list of them", file,
                               kl);
        } else if (!strcmp(key, "notify")) {
            if (load_names(file, kl, key, v, &t->notify, &t->n_notify, err))
                return CF_EINVAL;
        } else if (!strcmp(key, "listen") && handler) {
            if (load_names(file, kl, key, v, &t->listen, &t->n_listen, err))
                return CF_EINVAL;
        } else if (!strcmp(key, "no_log")) {
            t->no_log =
                json_is_true(v) || (json_is_string(v) && !strcasecmp(json_string_value(v), "true"));
        } else if (!strcmp(key, "tags")) {
            /* tags select nothing here (accepted so Ansible task files
             * load), except the one that marks an owned destination */
            char **tags = NULL;
            size_t n_tags = 0;
            if (load_names(file, kl, key, v, &tags, &n_tags, err))
                return CF_EINVAL;
            t->owns_dest = strv_has(tags, n_tags, OWNS_DEST_TAG);
            strv_free(tags, n_tags);
        } else {
            return cf_errf(err,
                           "%s:%d: task '%s': unsupported key '%s' (certfleet supports name, "
                           "file, copy, template, link, command, loop, loop_control, when, "
                           "notify, no_log%s)",
                           file, kl, t->name ? t->name : "?", key, handler ? ", listen" : "");
        }
    }
    if (!have_mod)
        return cf_errf(err,
                       "%s:%d: task '%s' has no module (file, copy, template, link or command)",
                       file, t->line, t->name ? t->name : "?");
    if (handler && t->mod != M_COMMAND)
        return cf_errf(err, "%s:%d: handler '%s' must use the command module", file, t->line,
                       t->name ? t->name : "?");
    if (t->owns_dest && t->mod != M_COPY && t->mod != M_TEMPLATE)
        return cf_errf(err,
                       "%s:%d: task '%s': tag '" OWNS_DEST_TAG "' is for copy and template "
                       "tasks only",
                       file, t->line, t->name ? t->name : "?");
    if (!t->name) {
        char *n =
            cf_asprintf("%s task at line %d", t->mod == M_COMMAND ? "command" : "file", t->line);
        t->name = n;
    }
    if (!t->loop_var)
        t->loop_var = cf_strdup("item");
    return 0;
}

static int load_tasks(const char *file, int handler, int optional, struct task **out, size_t *n,
                      char *err)
{
    json_t *doc = NULL;
    int r = cf_yaml_load_file(file, &doc, err);
    *out = NULL;
    *n = 0;
    if (r == CF_ENOENT && optional)
        return 0;
    if (r == CF_ENOENT || r == CF_EIO)
        return cf_errf(err, "cannot read '%s': %s", file, cf_strerror(r));
    if (r)
        return r;
    if (json_is_null(doc)) {
        json_decref(doc);
        return 0;
    }
    if (!json_is_array(doc)) {
        json_decref(doc);
        return cf_errf(err, "%s:1: expected a list of tasks", file);
    }
    *out = cf_xcalloc(json_array_size(doc) + 1, sizeof **out);
    for (size_t i = 0; i < json_array_size(doc); i++) {
        if ((r = load_task(file, json_array_get(doc, i), handler, &(*out)[i], err)) != 0) {
            for (size_t k = 0; k <= i; k++)
                task_release(&(*out)[k]);
            free(*out);
            *out = NULL;
            *n = 0;
            json_decref(doc);
            return r;
        }
        (*n)++;
    }
    json_decref(doc);
    return 0;
}

static int load_templates(struct cf_role *r, const char *dir, const char *rel, char *err)
{
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT ? 0 : cf_errf(err, "cannot read '%s': %s", dir, strerror(errno));
    struct dirent *e;
    int rc = 0;
    while (!rc && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char *path = cf_asprintf("%s/%s", dir, e->d_name);
        char *name = *rel ? cf_asprintf("%s/%s", rel, e->d_name) : cf_strdup(e->d_name);
        struct stat st;
        if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
            rc = load_templates(r, path, name, err);
        } else {
            char *text = NULL;
            size_t len = 0;
            int x = cf_read_file(path, CF_ROLE_TEMPLATE_MAX, &text, &len);
            if (x) {
                rc = cf_errf(err, "cannot read template '%s': %s", path, cf_strerror(x));
            } else {
                r->tmpls = cf_xrealloc(r->tmpls, (r->n_tmpls + 1) * sizeof *r->tmpls);
                r->tmpls[r->n_tmpls++] = (struct tmpl){cf_strdup(name), cf_strdup(path), text};
            }
        }
        free(path);
        free(name);
    }
    closedir(d);
    return rc;
}

int cf_role_load(const char *roles_dir, const char *name, struct cf_role **out, char *err)
{
    struct cf_role *r = cf_xcalloc(1, sizeof *r);
    int rc;
    *out = NULL;
    r->name = cf_strdup(name);
    r->tasks_file = cf_asprintf("%s/%s/tasks/main.yml", roles_dir, name);
    r->handlers_file = cf_asprintf("%s/%s/handlers/main.yml", roles_dir, name);
    char *tdir = cf_asprintf("%s/%s/templates", roles_dir, name);
    if ((rc = load_tasks(r->tasks_file, 0, 0, &r->tasks, &r->n_tasks, err)) != 0 ||
        (rc = load_tasks(r->handlers_file, 1, 1, &r->handlers, &r->n_handlers, err)) != 0 ||
        (rc = load_templates(r, tdir, "", err)) != 0)
        goto out;
    /* a template task must name a template that exists, and a notify a handler */
    for (size_t i = 0; i < r->n_tasks; i++) {
        struct task *t = &r->tasks[i];
        for (size_t k = 0; k < t->n_notify; k++) {
            int found = 0;
            for (size_t h = 0; h < r->n_handlers && !found; h++)
                found = !strcmp(r->handlers[h].name, t->notify[k]) ||
                        strv_has(r->handlers[h].listen, r->handlers[h].n_listen, t->notify[k]);
            if (!found) {
                rc = cf_errf(err,
                             "%s:%d: task '%s' notifies '%s', which no handler in '%s' has as "
                             "name or listen",
                             r->tasks_file, t->line, t->name, t->notify[k], r->handlers_file);
                goto out;
            }
        }
    }
    *out = r;
    r = NULL;
out:
    free(tdir);
    cf_role_free(r);
    return rc;
}

void cf_role_free(struct cf_role *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n_tasks; i++)
        task_release(&r->tasks[i]);
    for (size_t i = 0; i < r->n_handlers; i++)
        task_release(&r->handlers[i]);
    for (size_t i = 0; i < r->n_tmpls; i++) {
        free(r->tmpls[i].name);
        free(r->tmpls[i].path);
        free(r->tmpls[i].text);
    }
    free(r->tasks);
    free(r->handlers);
    free(r->tmpls);
    free(r->name);
    free(r->tasks_file);
    free(r->handlers_file);
    free(r);
}

size_t cf_role_task_count(const struct cf_role *r)
{
    return r->n_tasks;
}

const char *cf_role_task_name(const struct cf_role *r, size_t i)
{
    return i < r->n_tasks ? r->tasks[i].name : NULL;
}

/* ------------------------------------------------------------- render */

static void resource_release(struct cf_resource *x)
{
    free(x->path);
    free(x->target);
    if (x->content)
        cf_secure_free(x->content, x->len);
    free(x->owner);
    free(x->group);
    free(x->command);
    free(x->creates);
    free(x->why);
}

void cf_role_plan_free(struct cf_role_plan *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n_tasks; i++) {
        struct cf_task_plan *t = &p->tasks[i];
        for (size_t k = 0; k < t->n_res; k++)
            resource_release(&t->res[k]);
        free(t->res);
        free(t->name);
        strv_free(t->notify, t->n_notify);
    }
    free(p->tasks);
    free(p);
}

size_t cf_role_plan_size(const struct cf_role_plan *p)
{
    size_t n = 0;
    for (size_t i = 0; i < p->n_tasks; i++)
        n += p->tasks[i].n_res;
    return n;
}

/* What one task render needs to say where it is. */
struct where {
    const char *file;
    const struct task *t;
    const char *root; /* certfleet_host_root without trailing '/' */
};

static int arg_line(const struct where *w, const char *key)
{
    json_t *l = json_object_get(w->t->lines, key);
    return json_is_integer(l) ? (int)json_integer_value(l) : w->t->line;
}

static const char *raw_arg(const struct where *w, const char *key)
{
    json_t *v = json_object_get(w->t->args, key);
    return json_is_string(v) ? json_string_value(v) : "";
}

/* A host path: absolute, joined behind the host root, and safe. */
static int host_path(const struct where *w, const char *key, const json_t *v, char **out, char *err)
{
    char cerr[CF_ERRLEN];
    *out = NULL;
    if (!json_is_string(v) || !json_string_length(v))
        return cf_errf(err, "%s:%d: task '%s': '%s' must be a non-empty path string", w->file,
                       arg_line(w, key), w->t->name, key);
    const char *p = json_string_value(v);
    if (p[0] != '/')
        return cf_errf(err,
                       "%s:%d: task '%s': '%s' is '%s' (from '%s'), which is not an absolute path",
                       w->file, arg_line(w, key), w->t->name, key, p, raw_arg(w, key));
    char *joined = cf_asprintf("%s%s", w->root, p);
    if (cf_remote_check_path(joined, key, cerr) != 0) {
        int r = cf_errf(err, "%s:%d: task '%s': unsafe %s '%s' (from '%s'): %s", w->file,
                        arg_line(w, key), w->t->name, key, p, raw_arg(w, key), cerr);
        free(joined);
        return r;
    }
    *out = joined;
    return 0;
}

static int parse_mode(const struct where *w, const json_t *v, int *mode, char *err)
{
    *mode = -1;
    if (!v || json_is_null(v))
        return 0;
    if (json_is_integer(v)) {
        json_int_t m = json_integer_value(v);
        if (m < 0 || m > 07777)
            goto bad;
        *mode = (int)m;
        return 0;
    }
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        if (!strncmp(s, "0o", 2))
            s += 2;
        if (!*s || strlen(s) > 5 || strspn(s, "01234567") != strlen(s))
            goto bad;
        *mode = (int)strtol(s, NULL, 8);
        if (*mode > 07777)
            goto bad;
        return 0;
    }
bad:
    return cf_errf(err, "%s:%d: task '%s': mode must be octal like \"0644\"", w->file,
                   arg_line(w, "mode"), w->t->name);
}

static int parse_account(const struct where *w, const char *key, const json_t *v, char **out,
                         char *err)
{
    *out = NULL;
    if (!v || json_is_null(v) || (json_is_string(v) && !json_string_length(v)))
        return 0;
    const char *s = json_is_string(v) ? json_string_value(v) : NULL;
    if (!s || strlen(s) > 32 ||
        strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") !=
            strlen(s) ||
        s[0] == '-')
        return cf_errf(err, "%s:%d: task '%s': '%s' must be a user or group name", w->file,
                       arg_line(w, key), w->t->name, key);
    *out = cf_strdup(s);
    return 0;
}

/* shlex.quote of one argv word. */
static void shell_word(struct cf_buf *b, const char *s)
{
    int plain = *s != 0;
    for (const char *p = s; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("@%+=:,./-_", *p))
            plain = 0;
    if (plain) {
        cf_buf_puts(b, s);
        return;
    }
    cf_buf_puts(b, "'");
    for (const char *p = s; *p; p++)
        cf_buf_puts(b, *p == '\'' ? "'\"'\"'" : (char[2]){*p, 0});
    cf_buf_puts(b, "'");
}

static const struct tmpl *find_template(const struct cf_role *r, const char *name)
{
    for (size_t i = 0; i < r->n_tmpls; i++)
        if (!strcmp(r->tmpls[i].name, name))
            return &r->tmpls[i];
    return NULL;
}

static int known_args(const struct where *w, const char *const *allowed, char *err)
{
    const char *k;
    json_t *v;
    json_object_foreach(w->t->args, k, v)
    {
        int ok = 0;
        for (int i = 0; allowed[i] && !ok; i++)
            ok = !strcmp(allowed[i], k);
        if (!ok)
            return cf_errf(err, "%s:%d: task '%s': unsupported argument '%s'", w->file,
                           arg_line(w, k), w->t->name, k);
    }
    return 0;
}

/* Turn one item's rendered arguments into a resource. */
static int build_resource(const struct cf_role *role, const struct where *w, const json_t *a,
                          const json_t *vars, struct cf_resource *x, char *err)
{
    const struct task *t = w->t;
    int r;
    memset(x, 0, sizeof *x);
    x->mode = -1;
    const json_t *path = json_object_get(a, "path");
    const char *pkey = "path";
    if (!path) {
        path = json_object_get(a, "dest");
        pkey = "dest";
    }
    if (!path && t->mod == M_FILE) {
        path = json_object_get(a, "name");
        pkey = "name";
    }
    switch (t->mod) {
    case M_FILE:
    case M_LINK: {
        static const char *const ok[] = {"path",  "dest",  "name", "state", "mode",
                                         "owner", "group", "src",  "force", NULL};
        if ((r = known_args(w, ok, err)) != 0)
            return r;
        const char *state = json_string_value(json_object_get(a, "state"));
        if (t->mod == M_LINK)
            state = state ? state : "link";
        if (!state)
            return cf_errf(err, "%s:%d: task '%s': 'state' is required (directory, absent or link)",
                           w->file, t->line, t->name);
        if (!strcmp(state, "directory"))
            x->kind = CF_RES_DIR;
        else if (!strcmp(state, "absent"))
            x->kind = CF_RES_ABSENT;
        else if (!strcmp(state, "link"))
            x->kind = CF_RES_LINK;
        else
            return cf_errf(err,
                           "%s:%d: task '%s': state '%s' is not supported (directory, absent "
                           "or link)",
                           w->file, arg_line(w, "state"), t->name, state);
        if ((r = host_path(w, pkey, path, &x->path, err)) != 0)
            return r;
        if (x->kind == CF_RES_LINK &&
            (r = host_path(w, "src", json_object_get(a, "src"), &x->target, err)) != 0)
            return r;
        break;
    }
    case M_COPY:
    case M_TEMPLATE: {
        static const char *const okc[] = {"dest", "content", "mode", "owner", "group", NULL};
        static const char *const okt[] = {"src", "dest", "mode", "owner", "group", NULL};
        if ((r = known_args(w, t->mod == M_COPY ? okc : okt, err)) != 0)
            return r;
        x->kind = CF_RES_FILE;
        if ((r = host_path(w, "dest", json_object_get(a, "dest"), &x->path, err)) != 0)
            return r;
        if (t->mod == M_COPY) {
            const json_t *c = json_object_get(a, "content");
            if (json_is_string(c)) {
                x->content = cf_strdup(json_string_value(c));
            } else if (c) {
                /* Ansible writes non-string content as JSON */
                x->content = json_dumps(c, JSON_COMPACT | JSON_ENCODE_ANY);
            } else {
                return cf_errf(err, "%s:%d: task '%s': 'content' is required", w->file, t->line,
                               t->name);
            }
        } else {
            const char *src = json_string_value(json_object_get(a, "src"));
            if (!src)
                return cf_errf(err, "%s:%d: task '%s': 'src' (a file under templates/) is required",
                               w->file, t->line, t->name);
            const struct tmpl *tp = find_template(role, src);
            if (!tp)
                return cf_errf(err, "%s:%d: task '%s': no template '%s' in the role's templates/",
                               w->file, arg_line(w, "src"), t->name, src);
            if ((r = cf_template_render(tp->path, 1, tp->text, vars, &x->content, err)) != 0)
                return r;
        }
        x->len = strlen(x->content);
        break;
    }
    case M_COMMAND: {
        static const char *const ok[] = {"cmd", "argv", "creates", "_raw_params", NULL};
        if ((r = known_args(w, ok, err)) != 0)
            return r;
        x->kind = CF_RES_COMMAND;
        const json_t *cmd = json_object_get(a, "cmd"), *argv = json_object_get(a, "argv");
        if (json_is_string(cmd) && json_string_length(cmd)) {
            x->command = cf_strdup(json_string_value(cmd));
        } else if (json_is_array(argv) && json_array_size(argv)) {
            struct cf_buf b = CF_BUF_INIT;
            for (size_t i = 0; i < json_array_size(argv); i++) {
                const json_t *w1 = json_array_get(argv, i);
                char num[32];
                if (json_is_integer(w1)) {
                    /* "{{ n }}" renders natively; a word is its text */
                    snprintf(num, sizeof num, "%lld", (long long)json_integer_value(w1));
                    if (i)
                        cf_buf_puts(&b, " ");
                    shell_word(&b, num);
                    continue;
                }
                if (!json_is_string(w1)) {
                    cf_buf_release(&b);
                    return cf_errf(err, "%s:%d: task '%s': every argv word must be a string",
                                   w->file, arg_line(w, "argv"), t->name);
                }
                if (i)
                    cf_buf_puts(&b, " ");
                shell_word(&b, json_string_value(w1));
            }
            x->command = cf_buf_detach(&b, NULL);
        } else {
            return cf_errf(err,
                           "%s:%d: task '%s': command needs 'cmd' (a string) or 'argv' (a list)",
                           w->file, t->line, t->name);
        }
        if (json_object_get(a, "creates") &&
            (r = host_path(w, "creates", json_object_get(a, "creates"), &x->creates, err)) != 0)
            return r;
        return 0;
    }
    }
    if ((r = parse_mode(w, json_object_get(a, "mode"), &x->mode, err)) != 0 ||
        (r = parse_account(w, "owner", json_object_get(a, "owner"), &x->owner, err)) != 0 ||
        (r = parse_account(w, "group", json_object_get(a, "group"), &x->group, err)) != 0)
        return r;
    return 0;
}

static int eval_when(const struct where *w, const json_t *vars, int *ok, char *err)
{
    *ok = 1;
    if (!w->t->when)
        return 0;
    for (size_t i = 0; i < json_array_size(w->t->when) && *ok; i++) {
        const json_t *c = json_array_get(w->t->when, i);
        if (json_is_boolean(c)) {
            *ok = json_is_true(c);
        } else if (json_is_string(c)) {
            int r = cf_template_condition(w->file, w->t->line, json_string_value(c), vars, ok, err);
            if (r)
                return r;
        } else {
            return cf_errf(err, "%s:%d: task '%s': a 'when' condition must be a string", w->file,
                           w->t->line, w->t->name);
        }
    }
    return 0;
}

/* An owning task's item whose `when` is false: its dest must not exist. */
static int unwanted_dest(const struct where *w, const json_t *vars, struct cf_task_plan *tp,
                         char *err)
{
    const json_t *dest = json_object_get(w->t->args, "dest");
    json_t *rv = NULL;
    int r;
    if (dest && (r = cf_template_value(w->file, arg_line(w, "dest"), dest, vars, &rv, err)) != 0)
        return r;
    tp->res = cf_xrealloc(tp->res, (tp->n_res + 1) * sizeof *tp->res);
    struct cf_resource *x = &tp->res[tp->n_res++];
    memset(x, 0, sizeof *x);
    x->kind = CF_RES_ABSENT;
    x->mode = -1;
    x->unwanted = 1;
    r = host_path(w, "dest", rv, &x->path, err);
    json_decref(rv);
    return r;
}

static int render_task(const struct cf_role *role, const char *file, const struct task *t,
                       const json_t *hostvars, const char *root, struct cf_task_plan *tp, char *err)
{
    struct where w = {file, t, root};
    json_t *items = NULL, *vars = NULL, *args = NULL;
    int r = 0;
    size_t wanted = 0; /* items whose `when` held */
    tp->name = cf_strdup(t->name);
    tp->no_log = t->no_log;
    for (size_t i = 0; i < t->n_notify; i++)
        strv_push(&tp->notify, &tp->n_notify, t->notify[i]);
    if (t->loop) {
        if ((r = cf_template_value(file, t->line, t->loop, hostvars, &items, err)) != 0)
            goto out;
        if (!json_is_array(items)) {
            r = cf_errf(err, "%s:%d: task '%s': 'loop' must give a list, got %s", file, t->line,
                        t->name, cf_vars_type_name(items));
            goto out;
        }
    } else {
        items = json_pack("[n]");
    }
    for (size_t i = 0; i < json_array_size(items); i++) {
        if (t->loop) {
            vars = json_copy((json_t *)hostvars); /* shallow: shares the values */
            json_object_set(vars, t->loop_var, json_array_get(items, i));
        } else {
            vars = json_incref((json_t *)hostvars);
        }
        int ok;
        if ((r = eval_when(&w, vars, &ok, err)) != 0)
            goto out;
        if (ok) {
            /* argument by argument, so an error names the argument's line */
            args = json_object();
            const char *ak;
            json_t *av, *rv;
            json_object_foreach(t->args, ak, av)
            {
                if ((r = cf_template_value(file, arg_line(&w, ak), av, vars, &rv, err)) != 0)
                    goto out;
                json_object_set_new(args, ak, rv);
            }
            tp->res = cf_xrealloc(tp->res, (tp->n_res + 1) * sizeof *tp->res);
            r = build_resource(role, &w, args, vars, &tp->res[tp->n_res], err);
            tp->n_res++; /* released by the plan even when half-built */
            json_decref(args);
            args = NULL;
            if (r)
                goto out;
            wanted++;
        } else if (t->owns_dest && (r = unwanted_dest(&w, vars, tp, err)) != 0) {
            goto out;
        }
        json_decref(vars);
        vars = NULL;
    }
    tp->skipped = wanted == 0;
out:
    json_decref(items);
    json_decref(vars);
    json_decref(args);
    return r;
}

int cf_role_render(const struct cf_role *r, int handlers, const json_t *hostvars,
                   struct cf_role_plan **out, char *err)
{
    char cerr[CF_ERRLEN];
    int rc = 0;
    json_t *rootv = NULL;
    *out = NULL;
    if (!json_is_object(hostvars))
        return cf_errf(err, "host variables must be a dict");
    char root[4097] = "";
    json_t *rv = json_object_get(hostvars, "certfleet_host_root");
    if (rv && !json_is_null(rv)) {
        if ((rc = cf_template_value("certfleet_host_root", 1, rv, hostvars, &rootv, err)) != 0)
            return rc;
        if (!json_is_string(rootv)) {
            json_decref(rootv);
            return cf_errf(err, "certfleet_host_root must be a string path");
        }
        const char *s = json_string_value(rootv);
        if (*s) {
            if (cf_remote_check_path(s, "certfleet_host_root", cerr) != 0) {
                rc = cf_errf(err, "unsafe certfleet_host_root '%s': %s", s, cerr);
                json_decref(rootv);
                return rc;
            }
            snprintf(root, sizeof root, "%s", s);
            size_t n = strlen(root);
            while (n && root[n - 1] == '/')
                root[--n] = 0;
        }
        json_decref(rootv);
    }
    const struct task *tasks = handlers ? r->handlers : r->tasks;
    size_t n = handlers ? r->n_handlers : r->n_tasks;
    const char *file = handlers ? r->handlers_file : r->tasks_file;
    /* templates see the same normalized root the paths get ("" or no
     * trailing slash), so "{{ certfleet_host_root }}{{ dir }}" is exact */
    json_t *vars = json_copy((json_t *)hostvars);
    json_object_set_new(vars, "certfleet_host_root", json_string(root));
    struct cf_role_plan *p = cf_xcalloc(1, sizeof *p);
    p->tasks = cf_xcalloc(n + 1, sizeof *p->tasks);
    for (size_t i = 0; i < n; i++) {
        p->n_tasks++;
        if ((rc = render_task(r, file, &tasks[i], vars, root, &p->tasks[i], err)) != 0) {
            cf_role_plan_free(p);
            json_decref(vars);
            return rc;
        }
    }
    json_decref(vars);
    *out = p;
    return 0;
}

/* --------------------------------------------------------------- diff */

static void result_add(struct cf_role_result *res, const char *name)
{
    res->tasks = cf_xrealloc(res->tasks, (res->n_tasks + 1) * sizeof *res->tasks);
    struct cf_task_result *t = &res->tasks[res->n_tasks++];
    memset(t, 0, sizeof *t);
    t->name = cf_strdup(name);
}

void cf_role_result_free(struct cf_role_result *res)
{
    if (!res)
        return;
    for (size_t i = 0; i < res->n_tasks; i++) {
        free(res->tasks[i].name);
        free(res->tasks[i].msg);
        free(res->tasks[i].diff);
    }
    free(res->tasks);
    strv_free(res->notified, res->n_notified);
    cf_role_undo_free(res->undo);
    free(res->failed_command);
    free(res);
}

static void recount(struct cf_role_result *res)
{
    res->ok = res->changed = res->failed = res->skipped = 0;
    for (size_t i = 0; i < res->n_tasks; i++) {
        switch (res->tasks[i].status) {
        case CF_TASK_OK:
            res->ok++;
            break;
        case CF_TASK_CHANGED:
            res->changed++;
            break;
        case CF_TASK_FAILED:
            res->failed++;
            break;
        case CF_TASK_SKIPPED:
            res->skipped++;
            break;
        }
    }
}

static int looks_secret(const char *s, size_t n)
{
    return s && memmem(s, n, "PRIVATE KEY", 11) != NULL;
}

/* Split text into lines (pointers into it; the last line may lack "\n"). */
struct lines {
    const char **p;
    size_t *len;
    size_t n;
};

static void split_lines(const char *s, size_t n, struct lines *L)
{
    L->p = NULL;
    L->len = NULL;
    L->n = 0;
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        while (j < n && s[j] != '\n')
            j++;
        if (j < n)
            j++;
        L->p = cf_xrealloc(L->p, (L->n + 1) * sizeof *L->p);
        L->len = cf_xrealloc(L->len, (L->n + 1) * sizeof *L->len);
        L->p[L->n] = s + i;
        L->len[L->n] = j - i;
        L->n++;
        i = j;
    }
}

static int line_eq(const struct lines *A, size_t i, const struct lines *B, size_t j)
{
    return A->len[i] == B->len[j] && !memcmp(A->p[i], B->p[j], A->len[i]);
}

static void put_line(struct cf_buf *b, char sign, const char *p, size_t len)
{
    cf_buf_append(b, &sign, 1);
    cf_buf_append(b, p, len);
    if (!len || p[len - 1] != '\n')
        cf_buf_puts(b, "\n\\ No newline at end of file\n");
}

char *cf_role_unified_diff(const char *path, const char *a, size_t alen, const char *b, size_t blen)
{
    if (alen == blen && (!alen || !memcmp(a, b, alen)))
        return NULL;
    struct lines A, B;
    split_lines(a, alen, &A);
    split_lines(b, blen, &B);
    size_t n = A.n, m = B.n;
    /* edit script from an LCS table; files here are small config files,
     * and a huge pair degrades to "replace everything" */
    unsigned char *op = NULL; /* 0 = same, 1 = delete from A, 2 = insert from B */
    size_t nops = 0;
    if (n * m <= 4u * 1024 * 1024) {
        unsigned *T = cf_xcalloc((n + 1) * (m + 1), sizeof *T);
#define TT(i, j) T[(i) * (m + 1) + (j)]
        for (size_t i = n; i-- > 0;)
            for (size_t j = m; j-- > 0;)
                TT(i, j) = line_eq(&A, i, &B, j)
                               ? TT(i + 1, j + 1) + 1
                               : (TT(i + 1, j) >= TT(i, j + 1) ? TT(i + 1, j) : TT(i, j + 1));
        op = cf_xmalloc(n + m + 1);
        size_t i = 0, j = 0;
        while (i < n || j < m) {
            if (i < n && j < m && line_eq(&A, i, &B, j)) {
                op[nops++] = 0;
                i++, j++;
            } else if (i < n && (j == m || TT(i + 1, j) >= TT(i, j + 1))) {
                op[nops++] = 1; /* deletions first, as diff(1) prints them */
                i++;
            } else {
                op[nops++] = 2;
                j++;
            }
        }
#undef TT
        free(T);
    } else {
        op = cf_xmalloc(n + m + 1);
        for (size_t i = 0; i < n; i++)
            op[nops++] = 1;
        for (size_t j = 0; j < m; j++)
            op[nops++] = 2;
    }
    struct cf_buf out = CF_BUF_INIT;
    cf_buf_printf(&out, "--- %s%s\n+++ b%s\n", alen ? "a" : "", alen ? path : "/dev/null", path);
    /* walk ops, emitting hunks with 3 lines of context */
    const size_t C = 3;
    size_t k = 0, ai = 0, bj = 0;
    while (k < nops) {
        /* find next change */
        size_t k0 = k, a0 = ai, b0 = bj;
        while (k0 < nops && op[k0] == 0)
            k0++, a0++, b0++;
        if (k0 == nops)
            break;
        /* hunk start: up to C lines of context before */
        size_t ctx_before = k0 - k < C ? k0 - k : C;
        size_t hs = k0 - ctx_before, ha = a0 - ctx_before, hb = b0 - ctx_before;
        /* extend the hunk while changes are within 2*C of each other */
        size_t he = k0, ea = a0, eb = b0, same = 0;
        while (he < nops) {
            if (op[he] == 0) {
                same++;
                if (same > 2 * C)
                    break;
            } else {
                same = 0;
            }
            if (op[he] != 2)
                ea++;
            if (op[he] != 1)
                eb++;
            he++;
        }
        /* trim trailing context to C */
        size_t trailing = 0;
        for (size_t q = he; q > k0 && op[q - 1] == 0; q--)
            trailing++;
        size_t drop = trailing > C ? trailing - C : 0;
        he -= drop;
        ea -= drop;
        eb -= drop;
        size_t na = ea - ha, nb = eb - hb;
        cf_buf_printf(&out, "@@ -%zu,%zu +%zu,%zu @@\n", na ? ha + 1 : ha, na, nb ? hb + 1 : hb,
                      nb);
        size_t x = ha, y = hb;
        for (size_t q = hs; q < he; q++) {
            if (op[q] == 0) {
                put_line(&out, ' ', A.p[x], A.len[x]);
                x++, y++;
            } else if (op[q] == 1) {
                put_line(&out, '-', A.p[x], A.len[x]);
                x++;
            } else {
                put_line(&out, '+', B.p[y], B.len[y]);
                y++;
            }
        }
        k = he;
        ai = ea;
        bj = eb;
    }
    free(op);
    free(A.p);
    free(A.len);
    free(B.p);
    free(B.len);
    return cf_buf_detach(&out, NULL);
}

static const char *type_name(const struct cf_rstat *st)
{
    if (!st->exists)
        return "absent";
    switch (st->type) {
    case 'f':
        return "file";
    case 'd':
        return "directory";
    case 'l':
        return "link";
    default:
        return "other";
    }
}

/* Describe the state of a resource for a before/after diff. */
static void state_text(struct cf_buf *b, char sign, const struct cf_rstat *st, int want_dir,
                       const char *target, int mode)
{
    if (st) {
        cf_buf_printf(b, "%cstate: %s", sign, type_name(st));
        if (st->exists && st->type == 'l' && st->link_target)
            cf_buf_printf(b, " -> %s", st->link_target);
        if (st->exists && st->type != 'l')
            cf_buf_printf(b, " (mode %04o)", st->mode);
    } else {
        cf_buf_printf(b, "%cstate: %s", sign,
                      want_dir == 1   ? "directory"
                      : want_dir == 2 ? "link"
                                      : "absent");
        if (target)
            cf_buf_printf(b, " -> %s", target);
        if (mode >= 0)
            cf_buf_printf(b, " (mode %04o)", (unsigned)mode);
    }
    cf_buf_puts(b, "\n");
}

static void why_append(struct cf_resource *x, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void why_append(struct cf_resource *x, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    char *n = x->why ? cf_asprintf("%s, %s", x->why, tmp) : cf_strdup(tmp);
    free(x->why);
    x->why = n;
}

static void compare_attrs(struct cf_resource *x, const struct cf_rstat *st)
{
    if (x->mode >= 0 && (st->mode & 07777) != (unsigned)x->mode)
        why_append(x, "mode %04o -> %04o", st->mode & 07777, (unsigned)x->mode);
    if (x->owner && strcmp(st->owner, x->owner))
        why_append(x, "owner %s -> %s", st->owner, x->owner);
    if (x->group && strcmp(st->group, x->group))
        why_append(x, "group %s -> %s", st->group, x->group);
}

int cf_role_diff(const struct cf_role_plan *p, const struct cf_rop_result *actual, int want_diff,
                 struct cf_role_result **out)
{
    struct cf_role_result *res = cf_xcalloc(1, sizeof *res);
    size_t k = 0;
    for (size_t ti = 0; ti < p->n_tasks; ti++) {
        struct cf_task_plan *tp = &p->tasks[ti];
        result_add(res, tp->name);
        struct cf_task_result *tr = &res->tasks[res->n_tasks - 1];
        struct cf_buf msg = CF_BUF_INIT, diff = CF_BUF_INIT;
        int changed = 0, failed = 0;
        for (size_t ri = 0; ri < tp->n_res; ri++, k++) {
            struct cf_resource *x = &tp->res[ri];
            const struct cf_rop_result *a = &actual[k];
            struct cf_rstat none = {0};
            const struct cf_rstat *st = &a->st;
            free(x->why);
            x->why = NULL;
            x->action = CF_ACT_NONE;
            if (a->status == CF_ENOENT) {
                st = &none;
            } else if (a->status != 0) {
                failed = 1;
                cf_buf_printf(&msg, "%scannot inspect '%s': %s", msg.len ? "; " : "",
                              x->path ? x->path : x->creates,
                              a->err_text ? a->err_text : cf_strerror(a->status));
                continue;
            }
            switch (x->kind) {
            case CF_RES_DIR:
                if (!st->exists)
                    why_append(x, "created");
                else if (st->type != 'd')
                    why_append(x, "replaces a %s", type_name(st));
                else
                    compare_attrs(x, st);
                break;
            case CF_RES_FILE: {
                char want[65];
                cf_sha256_hex(x->content, x->len, want);
                if (!st->exists)
                    why_append(x, "created");
                else if (st->type != 'f')
                    why_append(x, "replaces a %s", type_name(st));
                else {
                    if (strcmp(st->sha256, want))
                        why_append(x, "content differs");
                    compare_attrs(x, st);
                }
                break;
            }
            case CF_RES_LINK:
                if (!st->exists)
                    why_append(x, "created");
                else if (st->type != 'l')
                    why_append(x, "replaces a %s", type_name(st));
                else if (!st->link_target || strcmp(st->link_target, x->target))
                    why_append(x, "pointed to '%s'", st->link_target ? st->link_target : "");
                break;
            case CF_RES_ABSENT:
                if (st->exists)
                    why_append(x,
                               x->unwanted ? "removed (the task's condition is false)" : "removed");
                break;
            case CF_RES_COMMAND:
                if (!x->creates || !st->exists)
                    why_append(x, "run");
                break;
            }
            if (!x->why)
                continue;
            x->action = CF_ACT_APPLY;
            changed = 1;
            if (x->kind == CF_RES_COMMAND)
                cf_buf_printf(&msg, "%scommand: %s", msg.len ? "; " : "",
                              tp->no_log ? "(hidden)" : x->command);
            else
                cf_buf_printf(&msg, "%s%s: %s", msg.len ? "; " : "", x->path, x->why);
            if (!want_diff || x->kind == CF_RES_COMMAND)
                continue;
            if (x->kind == CF_RES_FILE) {
                const char *old = st->exists && st->type == 'f' ? a->data : NULL;
                size_t oldlen = old ? a->len : 0;
                if (tp->no_log || looks_secret(x->content, x->len) || looks_secret(old, oldlen)) {
                    cf_buf_printf(&diff,
                                  "--- a%s\n+++ b%s\n(content hidden: key material or no_log)\n",
                                  x->path, x->path);
                } else if (st->exists && st->type == 'f' && !a->data && strcmp(x->why, "created")) {
                    cf_buf_printf(&diff, "--- a%s\n+++ b%s\n(old content not read)\n", x->path,
                                  x->path);
                } else {
                    char *d =
                        cf_role_unified_diff(x->path, old ? old : "", oldlen, x->content, x->len);
                    if (d)
                        cf_buf_puts(&diff, d);
                    else
                        cf_buf_printf(&diff, "--- a%s\n+++ b%s\n(%s)\n", x->path, x->path, x->why);
                    free(d);
                }
            } else {
                cf_buf_printf(&diff, "--- before: %s\n+++ after: %s\n", x->path, x->path);
                state_text(&diff, '-', st, 0, NULL, -1);
                state_text(&diff, '+', NULL,
                           x->kind == CF_RES_DIR    ? 1
                           : x->kind == CF_RES_LINK ? 2
                                                    : 0,
                           x->target, x->mode);
            }
        }
        tr->status = failed        ? CF_TASK_FAILED
                     : changed     ? CF_TASK_CHANGED
                     : tp->skipped ? CF_TASK_SKIPPED
                                   : CF_TASK_OK;
        tr->changed = changed && !failed;
        tr->msg = msg.len ? cf_buf_detach(&msg, NULL)
                          : cf_strdup(tp->skipped ? "skipped: condition false or empty loop" : "");
        tr->diff = diff.len ? cf_buf_detach(&diff, NULL) : NULL;
        cf_buf_release(&msg);
        cf_buf_release(&diff);
        if (tr->changed)
            for (size_t i = 0; i < tp->n_notify; i++)
                if (!strv_has(res->notified, res->n_notified, tp->notify[i]))
                    strv_push(&res->notified, &res->n_notified, tp->notify[i]);
    }
    recount(res);
    *out = res;
    return 0;
}

/* ----------------------------------------------------------- converge */

struct conv {
    cf_ssh *s;
    const struct cf_role *role;
    struct cf_role_opts o;
    cf_role_cb cb;
    void *arg;
    struct cf_role_plan *plan;
    size_t nres;
    long *op;  /* resource index -> op index in the current batch, -1 = none */
    long *pre; /* resource index -> the apply batch's read of it first, -1 = none */
    struct cf_role_result *res;
    size_t extra_first; /* index of the caller's first extra op (extra_add) */
    uint64_t t0, t_inspect;
    /* handlers */
    size_t *due; /* plan task index of each due handler */
    size_t n_due;
};

static void conv_free(struct conv *c)
{
    cf_role_plan_free(c->plan);
    free(c->op);
    free(c->pre);
    free(c->due);
    free(c);
}

static void conv_finish(struct conv *c, int status)
{
    struct cf_role_result *res = c->res;
    cf_ssh *s = c->s;
    cf_role_cb cb = c->cb;
    void *arg = c->arg;
    c->res = NULL;
    recount(res);
    conv_free(c);
    cb(s, status, res, arg);
}

static void fail_transport(struct conv *c, int status, const char *phase)
{
    if (!c->res)
        c->res = cf_xcalloc(1, sizeof *c->res);
    const char *e = cf_ssh_error(c->s);
    snprintf(c->res->error, sizeof c->res->error, "%s failed: %.900s", phase,
             e && *e ? e : cf_strerror(status));
    for (size_t i = 0; i < c->res->n_tasks; i++)
        if (c->res->tasks[i].status == CF_TASK_CHANGED) {
            c->res->tasks[i].status = CF_TASK_FAILED;
            c->res->tasks[i].changed = 0;
        }
    conv_finish(c, status);
}

/* The undo list from the reads at the head of the apply batch. */
static struct cf_role_undo *undo_capture(const struct conv *c, const struct cf_rbatch *b)
{
    struct cf_role_undo *u = cf_xcalloc(1, sizeof *u);
    size_t k = 0;
    for (size_t ti = 0; ti < c->plan->n_tasks; ti++) {
        const struct cf_task_plan *tp = &c->plan->tasks[ti];
        for (size_t ri = 0; ri < tp->n_res; ri++, k++) {
            if (c->pre[k] < 0)
                continue;
            const struct cf_resource *x = &tp->res[ri];
            const struct cf_rop_result *r = cf_rbatch_result(b, (size_t)c->pre[k]);
            u->e = cf_xrealloc(u->e, (u->n + 1) * sizeof *u->e);
            struct cf_role_undo_entry *e = &u->e[u->n++];
            memset(e, 0, sizeof *e);
            e->path = cf_strdup(x->path);
            e->kind = x->kind;
            if (r->status == CF_ENOENT || (r->status == 0 && !r->st.exists))
                continue;
            e->existed = 1;
            if (r->status != 0) {
                e->problem = cf_asprintf("its previous state was not read (%s)",
                                         r->err_text ? r->err_text : cf_strerror(r->status));
                continue;
            }
            e->type = r->st.type;
            e->mode = r->st.mode & 07777;
            snprintf(e->owner, sizeof e->owner, "%s", r->st.owner);
            snprintf(e->group, sizeof e->group, "%s", r->st.group);
            if (e->type == 'l') {
                if (r->st.link_target)
                    e->link_target = cf_strdup(r->st.link_target);
                else
                    e->problem = cf_strdup("its previous link target was not read");
            } else if (e->type == 'f') {
                if (r->st.size < 0 || (size_t)r->st.size != r->len || (r->len && !r->data)) {
                    e->problem = cf_asprintf("its previous content (%lld bytes) was not kept; "
                                             "at most %d bytes are",
                                             r->st.size, CF_ROLE_READ_MAX);
                } else {
                    e->content = cf_xmalloc(r->len + 1);
                    if (r->len)
                        memcpy(e->content, r->data, r->len);
                    e->content[r->len] = 0;
                    e->len = r->len;
                }
            }
        }
    }
    if (u->n == 0) {
        cf_role_undo_free(u);
        return NULL;
    }
    return u;
}

static void apply_done(struct cf_rbatch *b, int status, void *arg)
{
    struct conv *c = arg;
    uint64_t dt = cf_mono_ms() - c->t_inspect;
    if (status != 0) {
        cf_rbatch_free(b);
        fail_transport(c, status, "applying changes");
        return;
    }
    size_t k = 0;
    for (size_t ti = 0; ti < c->plan->n_tasks; ti++) {
        struct cf_task_plan *tp = &c->plan->tasks[ti];
        struct cf_task_result *tr = &c->res->tasks[ti];
        struct cf_buf msg = CF_BUF_INIT;
        int touched = 0, failed = 0;
        for (size_t ri = 0; ri < tp->n_res; ri++, k++) {
            if (c->op[k] < 0)
                continue;
            touched = 1;
            const struct cf_rop_result *r = cf_rbatch_result(b, (size_t)c->op[k]);
            const struct cf_resource *x = &tp->res[ri];
            if (r->status != 0 || r->skipped ||
                (x->kind == CF_RES_COMMAND && r->exit_status != 0)) {
                failed = 1;
                const char *why = r->err_text && *r->err_text ? r->err_text
                                  : r->skipped                ? "not run"
                                  : r->status                 ? cf_strerror(r->status)
                                                              : "command failed";
                if (tp->no_log)
                    why = "(output hidden: no_log)";
                if (x->kind == CF_RES_COMMAND)
                    cf_buf_printf(&msg, "%scommand exited with %d: %s", msg.len ? "; " : "",
                                  r->exit_status, why);
                else
                    cf_buf_printf(&msg, "%s%s: %s", msg.len ? "; " : "", x->path, why);
            }
        }
        if (touched)
            tr->ms += dt;
        if (failed) {
            tr->status = CF_TASK_FAILED;
            tr->changed = 0;
            free(tr->msg);
            tr->msg = cf_buf_detach(&msg, NULL);
        }
        cf_buf_release(&msg);
    }
    c->res->undo = undo_capture(c, b);
    cf_rbatch_free(b);
    conv_finish(c, 0);
}

static void inspect_done(struct cf_rbatch *b, int status, void *arg)
{
    struct conv *c = arg;
    char err[CF_ERRLEN];
    if (status != 0) {
        cf_rbatch_free(b);
        fail_transport(c, status, "inspecting the host");
        return;
    }
    uint64_t now = cf_mono_ms();
    struct cf_rop_result *actual = cf_xcalloc(c->nres + 1, sizeof *actual);
    for (size_t k = 0; k < c->nres; k++)
        if (c->op[k] >= 0)
            actual[k] = *cf_rbatch_result(b, (size_t)c->op[k]); /* shallow: b owns the strings */
    cf_role_diff(c->plan, actual, c->o.diff, &c->res);
    free(actual);
    if (c->o.extra_done)
        c->o.extra_done(b, c->extra_first, c->o.extra_arg);
    cf_rbatch_free(b);
    for (size_t i = 0; i < c->res->n_tasks; i++)
        c->res->tasks[i].ms = now - c->t0;
    c->t_inspect = now;

    int any = 0;
    for (size_t i = 0; i < c->res->n_tasks; i++)
        any |= c->res->tasks[i].status == CF_TASK_CHANGED;
    if (c->o.check || !any) {
        conv_finish(c, 0);
        return;
    }
    struct cf_rbatch *ab = cf_rbatch_new();
    size_t k = 0;
    int rc = 0;
    /* what every path held, read before the first write (the undo list) */
    for (size_t ti = 0; ti < c->plan->n_tasks && rc >= 0; ti++) {
        struct cf_task_plan *tp = &c->plan->tasks[ti];
        int task_ok = c->res->tasks[ti].status == CF_TASK_CHANGED;
        for (size_t ri = 0; ri < tp->n_res && rc >= 0; ri++, k++) {
            struct cf_resource *x = &tp->res[ri];
            c->pre[k] = -1;
            if (!task_ok || x->action != CF_ACT_APPLY || x->kind == CF_RES_COMMAND)
                continue;
            rc = x->kind == CF_RES_FILE || x->kind == CF_RES_ABSENT
                     ? cf_rbatch_read(ab, x->path, CF_ROLE_READ_MAX, err)
                     : cf_rbatch_stat(ab, x->path, err);
            c->pre[k] = rc;
        }
    }
    rc = rc < 0 ? rc : 0;
    k = 0;
    for (size_t ti = 0; ti < c->plan->n_tasks && !rc; ti++) {
        struct cf_task_plan *tp = &c->plan->tasks[ti];
        int task_ok = c->res->tasks[ti].status == CF_TASK_CHANGED;
        for (size_t ri = 0; ri < tp->n_res && !rc; ri++, k++) {
            struct cf_resource *x = &tp->res[ri];
            c->op[k] = -1;
            if (!task_ok || x->action != CF_ACT_APPLY)
                continue;
            switch (x->kind) {
            case CF_RES_DIR:
                rc = cf_rbatch_mkdir(ab, x->path, x->mode >= 0 ? (unsigned)x->mode : 0755, x->owner,
                                     x->group, err);
                break;
            case CF_RES_FILE:
                rc = cf_rbatch_write(ab, x->path, x->content, x->len,
                                     x->mode >= 0 ? (unsigned)x->mode : 0644, x->owner, x->group,
                                     err);
                break;
            case CF_RES_LINK:
                rc = cf_rbatch_symlink(ab, x->path, x->target, err);
                break;
            case CF_RES_ABSENT:
                rc = cf_rbatch_remove(ab, x->path, err);
                break;
            case CF_RES_COMMAND:
                rc = cf_rbatch_run(ab, x->command, 0, err);
                break;
            }
            if (rc >= 0) {
                c->op[k] = rc;
                rc = 0;
            }
        }
    }
    if (rc == 0)
        rc = cf_remote_run(c->s, ab, c->o.become, apply_done, c);
    if (rc != 0) {
        /* the paths were checked when rendering, so this is unexpected */
        cf_rbatch_free(ab);
        snprintf(c->res->error, sizeof c->res->error, "cannot apply changes: %.900s", err);
        for (size_t i = 0; i < c->res->n_tasks; i++)
            if (c->res->tasks[i].status == CF_TASK_CHANGED)
                c->res->tasks[i].status = CF_TASK_FAILED, c->res->tasks[i].changed = 0;
        conv_finish(c, rc);
    }
}

/* The state of one converge or handler run on one host. */
static struct conv *conv_new(cf_ssh *s, const struct cf_role *role, const struct cf_role_opts *o,
                             cf_role_cb cb, void *arg)
{
    struct conv *c = cf_xcalloc(1, sizeof *c);
    c->s = s;
    c->role = role;
    c->o = *o;
    c->cb = cb;
    c->arg = arg;
    c->t0 = cf_mono_ms();
    return c;
}

int cf_role_converge(cf_ssh *s, const struct cf_role *role, const json_t *hostvars,
                     const struct cf_role_opts *o, cf_role_cb cb, void *arg, char *err)
{
    struct conv *c = conv_new(s, role, o, cb, arg);
    int rc;
    if ((rc = cf_role_render(role, 0, hostvars, &c->plan, err)) != 0)
        goto fail;
    c->nres = cf_role_plan_size(c->plan);
    c->op = cf_xcalloc(c->nres + 1, sizeof *c->op);
    c->pre = cf_xcalloc(c->nres + 1, sizeof *c->pre);
    struct cf_rbatch *b = cf_rbatch_new();
    size_t k = 0;
    for (size_t ti = 0; ti < c->plan->n_tasks; ti++) {
        struct cf_task_plan *tp = &c->plan->tasks[ti];
        for (size_t ri = 0; ri < tp->n_res; ri++, k++) {
            struct cf_resource *x = &tp->res[ri];
            if (x->kind == CF_RES_COMMAND)
                rc = x->creates ? cf_rbatch_stat(b, x->creates, err) : -1;
            else if (x->kind == CF_RES_FILE && o->diff)
                rc = cf_rbatch_read(b, x->path, CF_ROLE_READ_MAX, err);
            else
                rc = cf_rbatch_stat(b, x->path, err);
            if (rc == CF_EINVAL) {
                cf_rbatch_free(b);
                goto fail;
            }
            c->op[k] = rc;
        }
    }
    c->extra_first = cf_rbatch_count(b);
    if (o->extra_add && (rc = o->extra_add(b, o->extra_arg, err)) != 0) {
        cf_rbatch_free(b);
        goto fail;
    }
    if (cf_rbatch_count(b) == 0 && (rc = cf_rbatch_stat(b, "/", err)) < 0) {
        /* nothing to inspect: one cheap op still proves the host answers */
        cf_rbatch_free(b);
        goto fail;
    }
    if ((rc = cf_remote_run(s, b, o->become, inspect_done, c)) != 0) {
        cf_rbatch_free(b);
        if (!*err)
            cf_errf(err, "cannot start the inspect batch: %s", cf_strerror(rc));
        goto fail;
    }
    return 0;
fail:
    conv_free(c);
    return rc < 0 ? rc : CF_EINVAL;
}

/* ----------------------------------------------------------- handlers */

static void handlers_done(struct cf_rbatch *b, int status, void *arg)
{
    struct conv *c = arg;
    uint64_t dt = cf_mono_ms() - c->t0;
    if (status != 0) {
        cf_rbatch_free(b);
        fail_transport(c, status, "running handlers");
        return;
    }
    for (size_t i = 0; i < c->n_due; i++) {
        struct cf_task_result *tr = &c->res->tasks[i];
        const struct cf_rop_result *r = cf_rbatch_result(b, (size_t)c->op[i]);
        struct cf_task_plan *tp = &c->plan->tasks[c->due[i]];
        tr->ms = dt;
        free(tr->msg);
        if (r->skipped) {
            tr->status = CF_TASK_SKIPPED;
            tr->msg = cf_strdup("not run: an earlier handler failed");
        } else if (r->status != 0 || r->exit_status != 0) {
            tr->status = CF_TASK_FAILED;
            if (!c->res->failed_command)
                c->res->failed_command = cf_strdup(tp->res[0].command);
            const char *out = r->err_text && *r->err_text ? r->err_text : r->data ? r->data : "";
            if (tp->no_log)
                out = "(output hidden: no_log)";
            /* keep the tail: nginx puts the useful line last */
            size_t ol = strlen(out);
            tr->msg = cf_asprintf("'%s' exited with %d: %s", tp->res[0].command, r->exit_status,
                                  ol > 2000 ? out + ol - 2000 : out);
        } else {
            tr->status = CF_TASK_CHANGED;
            tr->changed = 1;
            tr->msg = cf_asprintf("ran '%s'", tp->res[0].command);
        }
    }
    cf_rbatch_free(b);
    conv_finish(c, 0);
}

int cf_role_run_handlers(cf_ssh *s, const struct cf_role *role, const json_t *hostvars,
                         const char *const *notified, size_t n_notified,
                         const struct cf_role_opts *o, cf_role_cb cb, void *arg, char *err)
{
    struct conv *c = conv_new(s, role, o, cb, arg);
    struct cf_rbatch *b = NULL;
    int rc;
    if ((rc = cf_role_render(role, 1, hostvars, &c->plan, err)) != 0)
        goto fail;
    c->due = cf_xcalloc(c->plan->n_tasks + 1, sizeof *c->due);
    c->op = cf_xcalloc(c->plan->n_tasks + 1, sizeof *c->op);
    for (size_t i = 0; i < role->n_handlers; i++) {
        const struct task *h = &role->handlers[i];
        int want = notified == NULL;
        for (size_t k = 0; k < n_notified && !want; k++)
            want = !strcmp(notified[k], h->name) || strv_has(h->listen, h->n_listen, notified[k]);
        if (want && c->plan->tasks[i].n_res == 1)
            c->due[c->n_due++] = i;
    }
    c->res = cf_xcalloc(1, sizeof *c->res);
    for (size_t i = 0; i < c->n_due; i++) {
        result_add(c->res, c->plan->tasks[c->due[i]].name);
        c->res->tasks[i].status = CF_TASK_SKIPPED;
        c->res->tasks[i].msg = cf_strdup("check mode: not run");
    }
    if (c->n_due == 0 || o->check) {
        /* nothing to wait for: the caller reads no callback (see role.h) */
        cf_role_result_free(c->res);
        c->res = NULL;
        conv_free(c);
        return 1;
    }
    b = cf_rbatch_new();
    for (size_t i = 0; i < c->n_due; i++) {
        if ((rc = cf_rbatch_run(b, c->plan->tasks[c->due[i]].res[0].command, 1, err)) < 0)
            goto fail;
        c->op[i] = rc;
    }
    if ((rc = cf_remote_run(s, b, o->become, handlers_done, c)) != 0) {
        if (!*err)
            cf_errf(err, "cannot start the handler batch: %s", cf_strerror(rc));
        goto fail;
    }
    return 0;
fail:
    cf_rbatch_free(b);
    cf_role_result_free(c->res);
    c->res = NULL;
    conv_free(c);
    return rc < 0 ? rc : CF_EINVAL;
}

/* ------------------------------------------------------------- undo */

void cf_role_undo_free(struct cf_role_undo *u)
{
    if (!u)
        return;
    for (size_t i = 0; i < u->n; i++) {
        struct cf_role_undo_entry *e = &u->e[i];
        free(e->path);
        if (e->content)
            cf_secure_free(e->content, e->len);
        free(e->link_target);
        free(e->problem);
    }
    free(u->e);
    free(u);
}

void cf_role_undo_ops(const struct cf_role_undo *u, struct cf_role_restore **ops, size_t *n_ops,
                      char **problems)
{
    struct cf_buf pb = CF_BUF_INIT;
    *ops = cf_xcalloc(u->n + 1, sizeof **ops);
    *n_ops = 0;
    for (size_t i = u->n; i-- > 0;) {
        const struct cf_role_undo_entry *e = &u->e[i];
        struct cf_role_restore *o = &(*ops)[*n_ops];
        const char *why = e->problem;
        memset(o, 0, sizeof *o);
        o->path = e->path;
        o->owner = e->owner[0] ? e->owner : NULL;
        o->group = e->group[0] ? e->group : NULL;
        o->mode = e->mode;
        if (!why && !e->existed) {
            if (e->kind == CF_RES_DIR)
                continue; /* a created directory stays (role.h) */
            o->kind = CF_ROP_REMOVE;
            o->owner = o->group = NULL;
        } else if (!why && e->type == 'f') {
            o->kind = CF_ROP_WRITE;
            o->content = e->content ? e->content : "";
            o->len = e->len;
        } else if (!why && e->type == 'l') {
            o->kind = CF_ROP_SYMLINK;
            o->target = e->link_target;
            o->owner = o->group = NULL;
        } else if (!why && e->type == 'd') {
            o->kind = CF_ROP_MKDIR;
        } else if (!why) {
            why = "it was a special file, which cannot be recreated";
        }
        if (why) {
            cf_buf_printf(&pb, "%s%s: %s", pb.len ? "; " : "", e->path, why);
            continue;
        }
        (*n_ops)++;
    }
    *problems = pb.len ? cf_buf_detach(&pb, NULL) : NULL;
    cf_buf_release(&pb);
}

struct undo_run {
    cf_ssh *s;
    cf_role_cb cb;
    void *arg;
    char **paths; /* path of each restore op, by op index */
    size_t n_ops;
    long test_op;
    char *check;
    struct cf_buf problems; /* entries not restorable, ops that could not be added */
    uint64_t t0;
};

static void undo_run_free(struct undo_run *ur)
{
    strv_free(ur->paths, ur->n_ops);
    free(ur->check);
    cf_buf_release(&ur->problems);
    free(ur);
}

static void undo_done(struct cf_rbatch *b, int status, void *arg)
{
    struct undo_run *ur = arg;
    struct cf_role_result *res = cf_xcalloc(1, sizeof *res);
    uint64_t dt = cf_mono_ms() - ur->t0;
    result_add(res, "roll back the role change");
    result_add(res, "test after the rollback");
    if (status != 0) {
        const char *e = cf_ssh_error(ur->s);
        snprintf(res->error, sizeof res->error, "rolling back failed: %.900s",
                 e && *e ? e : cf_strerror(status));
        for (size_t i = 0; i < res->n_tasks; i++) {
            res->tasks[i].status = CF_TASK_FAILED;
            res->tasks[i].msg = cf_strdup(res->error);
            res->tasks[i].ms = dt;
        }
    } else {
        struct cf_buf pb = CF_BUF_INIT;
        size_t restored = 0;
        for (size_t i = 0; i < ur->n_ops; i++) {
            const struct cf_rop_result *r = cf_rbatch_result(b, i);
            if (r->status == 0) {
                restored++;
                continue;
            }
            cf_buf_printf(&pb, "%s%s: %s", pb.len ? "; " : "", ur->paths[i],
                          r->err_text && *r->err_text ? r->err_text : cf_strerror(r->status));
        }
        if (ur->problems.len)
            cf_buf_printf(&pb, "%s%s", pb.len ? "; " : "", ur->problems.data);
        struct cf_task_result *t = &res->tasks[0];
        t->ms = dt;
        if (pb.len) {
            t->status = CF_TASK_FAILED;
            t->msg = cf_asprintf("%zu path%s restored; not restored: %s", restored,
                                 restored == 1 ? "" : "s", pb.data);
        } else {
            t->status = CF_TASK_CHANGED;
            t->changed = 1;
            t->msg = cf_asprintf("%zu path%s restored", restored, restored == 1 ? "" : "s");
        }
        cf_buf_release(&pb);
        t = &res->tasks[1];
        t->ms = dt;
        const struct cf_rop_result *r = cf_rbatch_result(b, (size_t)ur->test_op);
        if (r->status == 0 && r->exit_status == 0) {
            t->status = CF_TASK_CHANGED;
            t->changed = 1;
            t->msg = cf_asprintf("'%s' passes", ur->check);
        } else {
            const char *out = r->err_text && *r->err_text ? r->err_text : r->data ? r->data : "";
            size_t ol = strlen(out);
            t->status = CF_TASK_FAILED;
            t->msg = cf_asprintf("'%s' exited with %d: %s", ur->check, r->exit_status,
                                 ol > 2000 ? out + ol - 2000 : out);
        }
    }
    recount(res);
    cf_rbatch_free(b);
    cf_ssh *s = ur->s;
    cf_role_cb cb = ur->cb;
    void *cbarg = ur->arg;
    undo_run_free(ur);
    cb(s, status, res, cbarg);
}

int cf_role_undo(cf_ssh *s, const struct cf_role_undo *u, const char *check_command, int become,
                 cf_role_cb cb, void *arg, char *err)
{
    if (!u || u->n == 0)
        return 1;
    struct cf_role_restore *ops = NULL;
    size_t n = 0;
    char *problems = NULL;
    char aerr[CF_ERRLEN];
    struct cf_rbatch *b = cf_rbatch_new();
    struct undo_run *ur = cf_xcalloc(1, sizeof *ur);
    int rc = 0;
    ur->s = s;
    ur->cb = cb;
    ur->arg = arg;
    ur->check = cf_strdup(check_command);
    ur->t0 = cf_mono_ms();
    cf_role_undo_ops(u, &ops, &n, &problems);
    if (problems)
        cf_buf_puts(&ur->problems, problems);
    ur->paths = cf_xcalloc(n + 1, sizeof *ur->paths);
    for (size_t i = 0; i < n; i++) {
        const struct cf_role_restore *o = &ops[i];
        switch (o->kind) {
        case CF_ROP_WRITE:
            rc = cf_rbatch_write(b, o->path, o->content, o->len, o->mode, o->owner, o->group, aerr);
            break;
        case CF_ROP_SYMLINK:
            rc = cf_rbatch_symlink(b, o->path, o->target, aerr);
            break;
        case CF_ROP_MKDIR:
            rc = cf_rbatch_mkdir(b, o->path, o->mode, o->owner, o->group, aerr);
            break;
        default:
            rc = cf_rbatch_remove(b, o->path, aerr);
            break;
        }
        if (rc < 0) {
            /* a value the host reported that the batch refuses (a long
             * owner name, an odd link target): keep going with the rest */
            cf_buf_printf(&ur->problems, "%s%s: %s", ur->problems.len ? "; " : "", o->path, aerr);
            continue;
        }
        ur->paths[ur->n_ops++] = cf_strdup(o->path);
    }
    free(ops);
    free(problems);
    if ((rc = cf_rbatch_run(b, check_command, 0, err)) < 0)
        goto fail;
    ur->test_op = rc;
    if ((rc = cf_remote_run(s, b, become, undo_done, ur)) != 0) {
        if (!*err)
            cf_errf(err, "cannot start the rollback batch: %s", cf_strerror(rc));
        goto fail;
    }
    return 0;
fail:
    cf_rbatch_free(b);
    undo_run_free(ur);
    return rc < 0 ? rc : CF_EINVAL;
}

char *cf_role_undo_message(const char *why, const struct cf_role_result *res)
{
    if (res->error[0])
        return cf_asprintf("%s; %s", why, res->error);
    const struct cf_task_result *back = res->n_tasks > 0 ? &res->tasks[0] : NULL;
    const struct cf_task_result *test = res->n_tasks > 1 ? &res->tasks[1] : NULL;
    int full = back && back->status != CF_TASK_FAILED;
    int passes = test && test->status != CF_TASK_FAILED;
    return cf_asprintf("%s; the role change was rolled back%s (%s); %s%s", why,
                       full ? "" : " in part", back && back->msg ? back->msg : "",
                       passes ? "the test passes again"
                              : "the test still fails after the rollback: ",
                       passes              ? ""
                       : test && test->msg ? test->msg
                                           : "not run");
}

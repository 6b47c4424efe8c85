/*
 * inventory.c - Ansible-compatible inventory (see inventory.h).
 *
 * The model follows ansible/inventory/{data,group,host}.py and the ini and
 * yaml inventory plugins of ansible-core 2.14 closely, including their
 * quirks (INI section names sanitised, values typed as Python literals,
 * `host:port` setting ansible_port only on a host's first definition),
 * because users compare certfleet's view with ansible-inventory's.
 */
#include "cf.h"
#include "inventory.h"
#include "util.h"
#include "vars.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fnmatch.h>
#include <limits.h>
#include <math.h>
#include <regex.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_RANGE_HOSTS 100000
#define MAX_DIR_DEPTH   16

/* ------------------------------------------------------------------ */
/* model                                                               */

struct idxvec {
    size_t *v;
    size_t n, cap;
};

struct group {
    char *name;
    json_t *vars; /* inventory vars (INI [g:vars], YAML vars:) */
    int priority; /* ansible_group_priority, default 1 */
    int depth;    /* longest path from "all" */
    struct idxvec kids, parents, hosts;
    json_t **files; /* group_vars data per vars dir (NULL = none) */
};

struct host {
    char *name;
    json_t *vars;         /* inventory host vars */
    struct idxvec groups; /* direct groups */
    json_t **files;       /* host_vars data per vars dir */
    const char **names;   /* group_names (sorted, without "all") */
    size_t nnames;
    size_t *sorted_groups; /* every group but all, by (depth, priority, name) */
    size_t nsorted;
};

struct cf_inventory {
    struct group *groups;
    size_t ngroups, capgroups;
    struct host *hosts;
    size_t nhosts, caphosts;
    json_t *gidx, *hidx; /* name -> index */
    char **vardirs;      /* sources' dirs, then the playbook dir */
    size_t nvardirs;
    const char **group_names_sorted;
};

#define G_ALL       0
#define G_UNGROUPED 1

static void vec_push(struct idxvec *v, size_t x)
{
    if (v->n == v->cap) {
        v->cap = v->cap ? v->cap * 2 : 4;
        v->v = cf_xrealloc(v->v, v->cap * sizeof(*v->v));
    }
    v->v[v->n++] = x;
}

static int vec_has(const struct idxvec *v, size_t x)
{
    for (size_t i = 0; i < v->n; i++)
        if (v->v[i] == x)
            return 1;
    return 0;
}

static void vec_remove(struct idxvec *v, size_t x)
{
    for (size_t i = 0; i < v->n; i++) {
        if (v->v[i] == x) {
            memmove(&v->v[i], &v->v[i + 1], (v->n - i - 1) * sizeof(*v->v));
            v->n--;
            return;
        }
    }
}

static int find_idx(json_t *map, const char *name, size_t *out)
{
    json_t *v = json_object_get(map, name);
    if (!v)
        return 0;
    *out = (size_t)json_integer_value(v);
    return 1;
}

static size_t add_group(struct cf_inventory *inv, const char *name)
{
    size_t i;
    if (find_idx(inv->gidx, name, &i))
        return i;
    if (inv->ngroups == inv->capgroups) {
        inv->capgroups = inv->capgroups ? inv->capgroups * 2 : 16;
        inv->groups = cf_xrealloc(inv->groups, inv->capgroups * sizeof(*inv->groups));
    }
    i = inv->ngroups++;
    struct group *g = &inv->groups[i];
    memset(g, 0, sizeof(*g));
    g->name = cf_strdup(name);
    g->vars = json_object();
    g->priority = 1;
    json_object_set_new(inv->gidx, name, json_integer((json_int_t)i));
    return i;
}

static size_t add_host_entry(struct cf_inventory *inv, const char *name, int *created)
{
    size_t i;
    *created = 0;
    if (find_idx(inv->hidx, name, &i))
        return i;
    if (inv->nhosts == inv->caphosts) {
        inv->caphosts = inv->caphosts ? inv->caphosts * 2 : 16;
        inv->hosts = cf_xrealloc(inv->hosts, inv->caphosts * sizeof(*inv->hosts));
    }
    i = inv->nhosts++;
    struct host *h = &inv->hosts[i];
    memset(h, 0, sizeof(*h));
    h->name = cf_strdup(name);
    h->vars = json_object();
    json_object_set_new(inv->hidx, name, json_integer((json_int_t)i));
    *created = 1;
    return i;
}

static void group_add_host(struct cf_inventory *inv, size_t g, size_t h)
{
    if (vec_has(&inv->hosts[h].groups, g))
        return;
    vec_push(&inv->groups[g].hosts, h);
    vec_push(&inv->hosts[h].groups, g);
}

/* Is `anc` reachable from g by parent links (or g itself)? */
static int is_ancestor(const struct cf_inventory *inv, size_t g, size_t anc, int depth)
{
    if (g == anc)
        return 1;
    if (depth > (int)inv->ngroups)
        return 0;
    const struct group *gr = &inv->groups[g];
    for (size_t i = 0; i < gr->parents.n; i++)
        if (is_ancestor(inv, gr->parents.v[i], anc, depth + 1))
            return 1;
    return 0;
}

/* Ansible's Group.add_child_group. */
static int add_child_group(struct cf_inventory *inv, size_t parent, size_t child, char *err,
                           const struct cf_pos *pos)
{
    if (parent == child)
        return cf_pos_errf(err, pos, "group '%s' cannot be a child of itself",
                           inv->groups[parent].name);
    if (vec_has(&inv->groups[parent].kids, child))
        return 0;
    if (is_ancestor(inv, parent, child, 0))
        return cf_pos_errf(err, pos,
                           "adding group '%s' as child to '%s' creates a recursive dependency "
                           "loop",
                           inv->groups[child].name, inv->groups[parent].name);
    vec_push(&inv->groups[parent].kids, child);
    if (!vec_has(&inv->groups[child].parents, parent))
        vec_push(&inv->groups[child].parents, parent);
    return 0;
}

/* Group.set_variable: ansible_group_priority is a property, not a var. */
static int group_set_var(struct cf_inventory *inv, size_t g, const char *key, json_t *val,
                         const struct cf_pos *pos, char *err)
{
    if (strcmp(key, "ansible_group_priority") == 0) {
        if (json_is_integer(val)) {
            inv->groups[g].priority = (int)json_integer_value(val);
        } else if (json_is_real(val)) {
            inv->groups[g].priority = (int)json_real_value(val);
        } else if (json_is_boolean(val)) {
            inv->groups[g].priority = json_is_true(val);
        } else if (json_is_string(val)) {
            char *end;
            const char *s = json_string_value(val);
            while (isspace((unsigned char)*s))
                s++;
            long n = strtol(s, &end, 10);
            while (isspace((unsigned char)*end))
                end++;
            if (end == s || *end)
                return cf_pos_errf(err, pos,
                                   "invalid ansible_group_priority '%s': expected an integer",
                                   json_string_value(val));
            inv->groups[g].priority = (int)n;
        } else if (!json_is_null(val)) {
            return cf_pos_errf(err, pos, "invalid ansible_group_priority: expected an integer");
        }
        return 0;
    }
    json_object_set(inv->groups[g].vars, key, val);
    if (pos && pos->file)
        cf_vars_set_member_pos(inv->groups[g].vars, key, pos);
    return 0;
}

static void host_set_var(struct cf_inventory *inv, size_t h, const char *key, json_t *val,
                         const struct cf_pos *pos)
{
    json_object_set(inv->hosts[h].vars, key, val);
    if (pos && pos->file)
        cf_vars_set_member_pos(inv->hosts[h].vars, key, pos);
}

/* InventoryData.add_host: the port only applies when the host is new. */
static size_t add_host(struct cf_inventory *inv, const char *name, size_t g, long port,
                       const struct cf_pos *pos)
{
    int created;
    size_t h = add_host_entry(inv, name, &created);
    if (created && port >= 0) {
        json_t *p = json_integer(port);
        if (pos && pos->file)
            cf_vars_set_pos(p, pos->file, pos->line, pos->col);
        host_set_var(inv, h, "ansible_port", p, pos);
        json_decref(p);
    }
    group_add_host(inv, g, h);
    return h;
}

/* ------------------------------------------------------------------ */
/* host patterns: host:port and [x:y] ranges (parse_address)           */

static int is_word(unsigned char c)
{
    return isalnum(c) || c == '_' || c >= 0x80;
}

/* Length of an alphanumeric range "[a:z]" / "[01:10]" / "[1:9:2]" at p, or 0. */
static size_t range_len(const char *p, int hex)
{
    if (*p != '[')
        return 0;
    const char *q = p + 1;
    if (!hex && isalpha((unsigned char)q[0]) && q[1] == ':' && isalpha((unsigned char)q[2])) {
        q += 3;
    } else {
        size_t n = 0;
        while (hex ? isxdigit((unsigned char)*q) : isdigit((unsigned char)*q))
            q++, n++;
        if (!n || *q != ':')
            return 0;
        q++;
        n = 0;
        while (hex ? isxdigit((unsigned char)*q) : isdigit((unsigned char)*q))
            q++, n++;
        if (!n)
            return 0;
    }
    if (*q == ':') {
        q++;
        if (!isdigit((unsigned char)*q))
            return 0;
        while (isdigit((unsigned char)*q))
            q++;
    }
    return *q == ']' ? (size_t)(q - p + 1) : 0;
}

/* Ansible's 'hostname' pattern (labels of word chars, '-' and ranges, not
 * ending in '-' or '_'), which also covers IPv4 addresses. */
static int valid_hostname(const char *s)
{
    const char *p = s;
    for (;;) {
        size_t r;
        if ((r = range_len(p, 0)) != 0)
            p += r;
        else if (is_word((unsigned char)*p))
            p++;
        else
            return 0;
        char last = p[-1];
        for (;;) {
            if ((r = range_len(p, 0)) != 0) {
                p += r;
                last = ']';
            } else if (is_word((unsigned char)*p) || *p == '-') {
                last = *p++;
            } else {
                break;
            }
        }
        if (last == '-' || last == '_')
            return 0;
        if (*p == 0)
            return 1;
        if (*p != '.')
            return 0;
        p++;
    }
}

/* A loose IPv6 check (hex groups, ':' and '::', hex ranges, dotted tail). */
static int valid_ipv6(const char *s)
{
    int colons = 0, dbl = strstr(s, "::") != NULL;
    for (const char *p = s; *p;) {
        size_t r = range_len(p, 1);
        if (r) {
            p += r;
            continue;
        }
        if (*p == ':')
            colons++;
        else if (!isxdigit((unsigned char)*p) && *p != '.')
            return 0;
        p++;
    }
    return colons == 7 || (dbl && colons >= 2 && colons <= 7);
}

/* parse_address(allow_ranges=True): split "host:port" / "[v6]:port".
 * Returns 1 with *host (malloc) and *port (-1 = none) when the address is
 * understood, 0 otherwise. */
static int parse_address(const char *addr, char **host, long *port)
{
    char *a = cf_strdup(addr);
    *port = -1;
    size_t n = strlen(a);
    /* bracketed_hostport: ^\[(.+)\]:([0-9]+)$ */
    if (a[0] == '[') {
        char *close = strrchr(a, ']');
        if (close && close > a + 1 && close[1] == ':' && close[2]) {
            const char *d = close + 2;
            while (isdigit((unsigned char)*d))
                d++;
            if (!*d) {
                *port = strtol(close + 2, NULL, 10);
                char *inner = strndup(a + 1, (size_t)(close - a - 1));
                free(a);
                a = inner;
                n = strlen(a);
            }
        }
    }
    if (*port < 0 && n) {
        /* hostport: ((?:[^:\[\]]|\[[^\]]*\])*):([0-9]+)$ */
        size_t i = 0;
        int ok = 1;
        size_t last_colon = (size_t)-1;
        while (i < n) {
            if (a[i] == '[') {
                char *c = strchr(a + i, ']');
                if (!c) {
                    ok = 0;
                    break;
                }
                i = (size_t)(c - a) + 1;
            } else if (a[i] == ']') {
                ok = 0;
                break;
            } else if (a[i] == ':') {
                last_colon = i;
                break;
            } else {
                i++;
            }
        }
        if (ok && last_colon != (size_t)-1 && a[last_colon + 1]) {
            const char *d = a + last_colon + 1;
            while (isdigit((unsigned char)*d))
                d++;
            if (!*d) {
                *port = strtol(a + last_colon + 1, NULL, 10);
                a[last_colon] = 0;
            }
        }
    }
    if (!valid_hostname(a) && !valid_ipv6(a)) {
        free(a);
        *port = -1;
        return 0;
    }
    *host = a;
    return 1;
}

static const char ascii_letters[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

/* expand_hostname_range: every [beg:end(:step)] in turn, left to right. */
static int expand_range(const char *line, json_t *out, char *err, const struct cf_pos *pos)
{
    const char *lb = strchr(line, '[');
    if (!lb) {
        json_array_append_new(out, json_string(line));
        return 0;
    }
    const char *rb = strchr(lb, ']');
    if (!rb || strchr(rb + 1, '|') || strchr(line, '|'))
        return cf_pos_errf(err, pos, "invalid host range in '%s'", line);
    /* Python splits on the first '[' and the first ']' (which may come
     * before the '['); require the sane order. */
    const char *first_rb = strchr(line, ']');
    if (first_rb < lb)
        return cf_pos_errf(err, pos, "invalid host range in '%s'", line);
    char *head = strndup(line, (size_t)(lb - line));
    char *inner = strndup(lb + 1, (size_t)(rb - lb - 1));
    const char *tail = rb + 1;
    char *parts[3] = {NULL, NULL, NULL};
    int nparts = 0, rc = 0;
    char *tmp = cf_strdup(inner);
    /* split(':') keeping empty fields */
    char *p = tmp;
    for (;;) {
        char *c = strchr(p, ':');
        if (nparts == 3) {
            nparts = 4;
            break;
        }
        parts[nparts++] = p;
        if (!c)
            break;
        *c = 0;
        p = c + 1;
    }
    if (nparts != 2 && nparts != 3) {
        rc = cf_pos_errf(err, pos, "host range must be begin:end or begin:end:step in '%s'", line);
        goto out;
    }
    const char *beg = *parts[0] ? parts[0] : "0";
    const char *end = parts[1];
    long step = 1;
    if (nparts == 3) {
        char *e;
        step = strtol(parts[2], &e, 10);
        if (!*parts[2] || *e || step <= 0) {
            rc = cf_pos_errf(err, pos, "invalid step '%s' in host range '%s'", parts[2], line);
            goto out;
        }
    }
    if (!*end) {
        rc = cf_pos_errf(err, pos, "host range must specify end value in '%s'", line);
        goto out;
    }
    int width = 0;
    if (beg[0] == '0' && strlen(beg) > 1) {
        width = (int)strlen(beg);
        if (strlen(end) != strlen(beg)) {
            rc = cf_pos_errf(err, pos,
                             "host range must specify equal-length begin and end formats in '%s'",
                             line);
            goto out;
        }
    }
    const char *ib = strstr(ascii_letters, beg), *ie = strstr(ascii_letters, end);
    json_t *names = json_array();
    if (ib && ie) {
        if (ib > ie) {
            json_decref(names);
            rc = cf_pos_errf(err, pos, "host range must have begin <= end in '%s'", line);
            goto out;
        }
        for (const char *c = ib; c <= ie; c += step)
            json_array_append_new(names, json_stringn(c, 1));
    } else {
        char *e1, *e2;
        long b = strtol(beg, &e1, 10), e = strtol(end, &e2, 10);
        if (*e1 || *e2 || !isdigit((unsigned char)beg[strlen(beg) - 1])) {
            json_decref(names);
            rc = cf_pos_errf(err, pos, "invalid host range '[%s]' in '%s'", inner, line);
            goto out;
        }
        if (e - b > MAX_RANGE_HOSTS * step) {
            json_decref(names);
            rc = cf_pos_errf(err, pos, "host range '%s' is too large", line);
            goto out;
        }
        for (long x = b; x <= e; x += step) {
            char buf[64];
            snprintf(buf, sizeof(buf), "%0*ld", width, x);
            json_array_append_new(names, json_string(buf));
        }
    }
    size_t i;
    json_t *nm;
    json_array_foreach(names, i, nm)
    {
        char *hn = cf_asprintf("%s%s%s", head, json_string_value(nm), tail);
        rc = expand_range(hn, out, err, pos);
        free(hn);
        if (rc)
            break;
        if (json_array_size(out) > MAX_RANGE_HOSTS) {
            rc = cf_pos_errf(err, pos, "host range '%s' is too large", line);
            break;
        }
    }
    json_decref(names);
out:
    free(tmp);
    free(head);
    free(inner);
    return rc;
}

/* _expand_hostpattern: names (json array of strings) and port (-1). */
static int expand_hostpattern(const char *pattern, json_t **names, long *port, char *err,
                              const struct cf_pos *pos)
{
    char *host = NULL;
    *names = json_array();
    if (!parse_address(pattern, &host, port)) {
        host = cf_strdup(pattern);
        *port = -1;
    }
    int rc = expand_range(host, *names, err, pos);
    free(host);
    if (rc) {
        json_decref(*names);
        *names = NULL;
    }
    return rc;
}

/* ------------------------------------------------------------------ */
/* Python literals (ast.literal_eval), for INI values                  */

struct pyp {
    const char *p;
    int depth;
};

static void py_ws(struct pyp *s)
{
    for (;;) {
        while (*s->p == ' ' || *s->p == '\t' || *s->p == '\f' ||
               (s->depth && (*s->p == '\n' || *s->p == '\r')))
            s->p++;
        if (*s->p == '#') {
            while (*s->p && *s->p != '\n')
                s->p++;
            continue;
        }
        if (*s->p == '\\' && s->p[1] == '\n') {
            s->p += 2;
            continue;
        }
        return;
    }
}

static int is_ident(unsigned char c)
{
    return isalnum(c) || c == '_' || c >= 0x80;
}

static void utf8_put(struct cf_buf *b, unsigned long cp)
{
    char o[4];
    size_t n;
    if (cp < 0x80) {
        o[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        o[0] = (char)(0xF0 | (cp >> 18));
        o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    cf_buf_append(b, o, n);
}

static int hexval(const char *p, int n, unsigned long *out)
{
    unsigned long v = 0;
    for (int i = 0; i < n; i++) {
        if (!isxdigit((unsigned char)p[i]))
            return 0;
        v = v * 16 + (unsigned long)(isdigit((unsigned char)p[i])
                                         ? p[i] - '0'
                                         : (tolower((unsigned char)p[i]) - 'a' + 10));
    }
    *out = v;
    return 1;
}

/* One string literal (with optional r/u/b prefix) appended to b. */
static int py_string(struct pyp *s, struct cf_buf *b)
{
    int raw = 0;
    const char *p = s->p;
    while (*p && strchr("rRuUbB", *p) && p - s->p < 2) {
        if (*p == 'r' || *p == 'R')
            raw = 1;
        p++;
    }
    if (*p != '\'' && *p != '"')
        return -1;
    char q = *p;
    int triple = p[1] == q && p[2] == q;
    p += triple ? 3 : 1;
    for (;;) {
        if (!*p)
            return -1;
        if (triple ? (p[0] == q && p[1] == q && p[2] == q) : *p == q) {
            p += triple ? 3 : 1;
            break;
        }
        if (!triple && *p == '\n')
            return -1;
        if (*p == '\\' && p[1]) {
            if (raw) {
                cf_buf_append(b, p, 2);
                p += 2;
                continue;
            }
            char c = p[1];
            unsigned long cp;
            p += 2;
            switch (c) {
            case '\n':
                break;
            case '\\':
                cf_buf_puts(b, "\\");
                break;
            case '\'':
                cf_buf_puts(b, "'");
                break;
            case '"':
                cf_buf_puts(b, "\"");
                break;
            case 'a':
                cf_buf_puts(b, "\a");
                break;
            case 'b':
                cf_buf_puts(b, "\b");
                break;
            case 'f':
                cf_buf_puts(b, "\f");
                break;
            case 'n':
                cf_buf_puts(b, "\n");
                break;
            case 'r':
                cf_buf_puts(b, "\r");
                break;
            case 't':
                cf_buf_puts(b, "\t");
                break;
            case 'v':
                cf_buf_puts(b, "\v");
                break;
            case 'x':
                if (!hexval(p, 2, &cp))
                    return -1;
                utf8_put(b, cp);
                p += 2;
                break;
            case 'u':
                if (!hexval(p, 4, &cp))
                    return -1;
                utf8_put(b, cp);
                p += 4;
                break;
            case 'U':
                if (!hexval(p, 8, &cp) || cp > 0x10FFFF)
                    return -1;
                utf8_put(b, cp);
                p += 8;
                break;
            default:
                if (c >= '0' && c <= '7') {
                    cp = (unsigned long)(c - '0');
                    for (int k = 0; k < 2 && *p >= '0' && *p <= '7'; k++)
                        cp = cp * 8 + (unsigned long)(*p++ - '0');
                    utf8_put(b, cp);
                } else {
                    cf_buf_append(b, p - 2, 2); /* unknown escapes stay */
                }
            }
            continue;
        }
        cf_buf_append(b, p, 1);
        p++;
    }
    s->p = p;
    return 0;
}

/* Python number token; *out json (int or real). Returns -1 when not a
 * literal Python accepts (e.g. "010", "1abc", complex). */
static int py_number(struct pyp *s, json_t **out)
{
    const char *p = s->p, *start = p;
    char buf[128];
    size_t n = 0;
    int is_float = 0, base = 10;
    if (p[0] == '0' && strchr("xXoObB", p[1]) && p[1]) {
        base = strchr("xX", p[1]) ? 16 : strchr("oO", p[1]) ? 8 : 2;
        p += 2;
        while (isxdigit((unsigned char)*p) || *p == '_') {
            if (*p != '_') {
                int d =
                    isdigit((unsigned char)*p) ? *p - '0' : tolower((unsigned char)*p) - 'a' + 10;
                if (d >= base)
                    return -1;
                if (n + 1 >= sizeof(buf))
                    return -1;
                buf[n++] = *p;
            } else if (!isxdigit((unsigned char)p[1])) {
                return -1;
            }
            p++;
        }
        if (!n)
            return -1;
    } else {
        while (isdigit((unsigned char)*p) ||
               (*p == '_' && isdigit((unsigned char)p[1]) && p > start)) {
            if (*p != '_' && n + 1 < sizeof(buf))
                buf[n++] = *p;
            p++;
        }
        if (*p == '.') {
            is_float = 1;
            buf[n++] = *p++;
            while (isdigit((unsigned char)*p) || (*p == '_' && isdigit((unsigned char)p[1]))) {
                if (*p != '_' && n + 1 < sizeof(buf))
                    buf[n++] = *p;
                p++;
            }
        }
        if (*p == 'e' || *p == 'E') {
            const char *q = p + 1;
            if (*q == '+' || *q == '-')
                q++;
            if (isdigit((unsigned char)*q)) {
                is_float = 1;
                buf[n++] = 'e';
                if (p[1] == '-' || p[1] == '+')
                    buf[n++] = p[1];
                p = q;
                while (isdigit((unsigned char)*p) || (*p == '_' && isdigit((unsigned char)p[1]))) {
                    if (*p != '_' && n + 1 < sizeof(buf))
                        buf[n++] = *p;
                    p++;
                }
            }
        }
        if (n == 0 || (n == 1 && buf[0] == '.'))
            return -1;
        /* "010" is a SyntaxError in Python 3; "0", "00" are fine */
        if (!is_float && buf[0] == '0') {
            for (size_t i = 0; i < n; i++)
                if (buf[i] != '0')
                    return -1;
        }
    }
    if (is_ident((unsigned char)*p) || *p == '.')
        return -1; /* 1abc, 1j (complex), 1.2.3 */
    buf[n] = 0;
    errno = 0;
    if (is_float) {
        double d = strtod(buf, NULL);
        if (isinf(d) || isnan(d))
            return -1;
        *out = json_real(d);
    } else {
        long long v = strtoll(buf, NULL, base);
        if (errno == ERANGE)
            return -1;
        *out = json_integer(v);
    }
    s->p = p;
    return 0;
}

static int py_expr(struct pyp *s, json_t **out);

/* A comma-separated sequence until `close`; *trailing says whether it
 * ended with a comma, *count how many items. */
static int py_items(struct pyp *s, char close, json_t *arr, int *trailing)
{
    *trailing = 0;
    py_ws(s);
    while (*s->p != close) {
        json_t *item;
        if (py_expr(s, &item))
            return -1;
        json_array_append_new(arr, item);
        py_ws(s);
        *trailing = 0;
        if (*s->p == ',') {
            s->p++;
            *trailing = 1;
            py_ws(s);
        } else if (*s->p != close) {
            return -1;
        }
    }
    s->p++;
    return 0;
}

static char *py_key_text(const json_t *k)
{
    switch (json_typeof(k)) {
    case JSON_STRING:
        return cf_strdup(json_string_value(k));
    case JSON_INTEGER:
        return cf_asprintf("%" JSON_INTEGER_FORMAT, json_integer_value(k));
    case JSON_TRUE:
        return cf_strdup("true");
    case JSON_FALSE:
        return cf_strdup("false");
    case JSON_NULL:
        return cf_strdup("null");
    default:
        return NULL; /* floats and tuples as keys: not supported */
    }
}

static int py_expr(struct pyp *s, json_t **out)
{
    *out = NULL;
    if (++s->depth > 64)
        return -1;
    py_ws(s);
    int rc = -1;
    const char *p = s->p;
    if (*p == '-' || *p == '+') {
        int neg = *p == '-';
        s->p++;
        py_ws(s);
        if (isdigit((unsigned char)*s->p) || *s->p == '.') {
            json_t *n;
            if (py_number(s, &n) == 0) {
                if (neg && json_is_integer(n))
                    *out = json_integer(-json_integer_value(n));
                else if (neg)
                    *out = json_real(-json_real_value(n));
                else
                    *out = json_incref(n);
                json_decref(n);
                rc = 0;
            }
        }
    } else if (isdigit((unsigned char)*p) || (*p == '.' && isdigit((unsigned char)p[1]))) {
        rc = py_number(s, out);
    } else if (*p == '\'' || *p == '"' ||
               (*p && strchr("rRuUbB", *p) && (p[1] == '\'' || p[1] == '"')) ||
               (*p && strchr("rRbB", *p) && p[1] && strchr("rRbB", p[1]) &&
                (p[2] == '\'' || p[2] == '"'))) {
        /* (strchr finds the terminator too: an empty value must not read
         * past its end) */
        struct cf_buf b = CF_BUF_INIT;
        cf_buf_puts(&b, "");
        rc = py_string(s, &b);
        while (rc == 0) {
            const char *save = s->p;
            py_ws(s);
            const char *q = s->p;
            if (*q == '\'' || *q == '"' ||
                (strchr("rRuUbB", *q) && *q && (q[1] == '\'' || q[1] == '"'))) {
                rc = py_string(s, &b);
            } else {
                s->p = save;
                break;
            }
        }
        if (rc == 0)
            *out = json_string(b.data);
        cf_buf_release(&b);
        if (rc == 0 && !*out)
            rc = -1; /* invalid UTF-8 */
    } else if (*p == '[') {
        int trailing;
        s->p++;
        *out = json_array();
        rc = py_items(s, ']', *out, &trailing);
    } else if (*p == '(') {
        int trailing;
        s->p++;
        json_t *arr = json_array();
        rc = py_items(s, ')', arr, &trailing);
        if (rc == 0 && json_array_size(arr) == 1 && !trailing) {
            *out = json_incref(json_array_get(arr, 0));
            json_decref(arr);
        } else {
            *out = arr;
        }
    } else if (*p == '{') {
        s->p++;
        *out = json_object();
        py_ws(s);
        rc = 0;
        while (*s->p != '}') {
            json_t *k, *v;
            if (py_expr(s, &k)) {
                rc = -1;
                break;
            }
            py_ws(s);
            if (*s->p != ':') { /* a set literal: JSON cannot hold it */
                json_decref(k);
                rc = -1;
                break;
            }
            s->p++;
            if (py_expr(s, &v)) {
                json_decref(k);
                rc = -1;
                break;
            }
            char *kt = py_key_text(k);
            json_decref(k);
            if (!kt) {
                json_decref(v);
                rc = -1;
                break;
            }
            json_object_set_new(*out, kt, v);
            free(kt);
            py_ws(s);
            if (*s->p == ',') {
                s->p++;
                py_ws(s);
            } else if (*s->p != '}') {
                rc = -1;
                break;
            }
        }
        if (rc == 0)
            s->p++;
    } else if (is_ident((unsigned char)*p)) {
        const char *q = p;
        while (is_ident((unsigned char)*q))
            q++;
        size_t n = (size_t)(q - p);
        if (n == 4 && !strncmp(p, "True", 4))
            *out = json_true();
        else if (n == 5 && !strncmp(p, "False", 5))
            *out = json_false();
        else if (n == 4 && !strncmp(p, "None", 4))
            *out = json_null();
        if (*out) {
            s->p = q;
            rc = 0;
        }
    }
    s->depth--;
    if (rc) {
        json_decref(*out);
        *out = NULL;
    }
    return rc;
}

/* ast.literal_eval(v) with fallback to the string itself, as the INI
 * plugin's _parse_value does.  A bare "1, 2" is a tuple (a list). */
static json_t *py_value(const char *v)
{
    struct pyp s = {v, 0};
    json_t *arr = json_array(), *out = NULL;
    int trailing = 0;
    while (*s.p == ' ' || *s.p == '\t')
        s.p++;
    for (;;) {
        json_t *item;
        if (py_expr(&s, &item))
            goto fallback;
        json_array_append_new(arr, item);
        py_ws(&s);
        trailing = 0;
        if (*s.p == ',') {
            s.p++;
            trailing = 1;
            py_ws(&s);
            if (!*s.p)
                break;
            continue;
        }
        break;
    }
    while (*s.p == '\n' || *s.p == '\r' || *s.p == ' ' || *s.p == '\t')
        s.p++;
    if (*s.p)
        goto fallback;
    if (json_array_size(arr) == 1 && !trailing)
        out = json_incref(json_array_get(arr, 0));
    else
        out = json_incref(arr);
    json_decref(arr);
    return out;
fallback:
    json_decref(arr);
    return json_string(v);
}

/* ------------------------------------------------------------------ */
/* shlex.split(line, comments=True), POSIX mode                        */

struct token {
    char *text;
    int col; /* 1-based column where the token starts */
};

static int shlex_split(const char *line, struct token **out, size_t *n, const char **why)
{
    struct token *toks = NULL;
    size_t nt = 0;
    const char *p = line;
    *why = NULL;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
            p++;
        if (!*p || *p == '#')
            break;
        struct cf_buf b = CF_BUF_INIT;
        cf_buf_puts(&b, "");
        int col = (int)(p - line) + 1;
        while (*p && !(*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) {
            if (*p == '#') {
                p += strlen(p);
                break;
            }
            if (*p == '\\') {
                if (!p[1]) {
                    *why = "no escaped character";
                    break;
                }
                cf_buf_append(&b, p + 1, 1);
                p += 2;
            } else if (*p == '\'') {
                const char *c = strchr(p + 1, '\'');
                if (!c) {
                    *why = "no closing quotation";
                    break;
                }
                cf_buf_append(&b, p + 1, (size_t)(c - p - 1));
                p = c + 1;
            } else if (*p == '"') {
                p++;
                while (*p && *p != '"') {
                    if (*p == '\\' && (p[1] == '"' || p[1] == '\\')) {
                        cf_buf_append(&b, p + 1, 1);
                        p += 2;
                    } else {
                        cf_buf_append(&b, p, 1);
                        p++;
                    }
                }
                if (!*p) {
                    *why = "no closing quotation";
                    break;
                }
                p++;
            } else {
                cf_buf_append(&b, p, 1);
                p++;
            }
        }
        if (*why) {
            cf_buf_release(&b);
            break;
        }
        toks = cf_xrealloc(toks, (nt + 1) * sizeof(*toks));
        toks[nt].text = cf_buf_detach(&b, NULL);
        toks[nt].col = col;
        nt++;
    }
    if (*why) {
        for (size_t i = 0; i < nt; i++)
            free(toks[i].text);
        free(toks);
        return CF_EINVAL;
    }
    *out = toks;
    *n = nt;
    return 0;
}

static void tokens_free(struct token *t, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(t[i].text);
    free(t);
}

/* ------------------------------------------------------------------ */
/* INI inventory (plugins/inventory/ini.py)                             */

struct pending {
    char *name;
    int line;
    int is_children; /* else vars */
    char *parent_last;
    json_t *parents; /* array of group names */
};

struct ini {
    struct cf_inventory *inv;
    const char *file;
    int line;
    struct pending *pend;
    size_t npend;
    char *err;
};

static struct pending *pend_find(struct ini *s, const char *name)
{
    for (size_t i = 0; i < s->npend; i++)
        if (s->pend[i].name && !strcmp(s->pend[i].name, name))
            return &s->pend[i];
    return NULL;
}

static void pend_del(struct pending *p)
{
    free(p->name);
    p->name = NULL;
    json_decref(p->parents);
    p->parents = NULL;
}

static int add_pending_children(struct ini *s, const char *group)
{
    struct pending *pd = pend_find(s, group);
    if (!pd)
        return 0;
    json_t *parents = json_incref(pd->parents);
    pend_del(pd);
    size_t i;
    json_t *pn;
    int rc = 0;
    struct cf_pos pos = {s->file, s->line, 1};
    json_array_foreach(parents, i, pn)
    {
        size_t pg = 0, cg = 0;
        find_idx(s->inv->gidx, json_string_value(pn), &pg);
        find_idx(s->inv->gidx, group, &cg);
        if ((rc = add_child_group(s->inv, pg, cg, s->err, &pos)) != 0)
            break;
        struct pending *pp = pend_find(s, json_string_value(pn));
        if (pp && pp->is_children && (rc = add_pending_children(s, json_string_value(pn))) != 0)
            break;
    }
    json_decref(parents);
    return rc;
}

/* ^\[([^:\]\s]+)(?::(\w+))?\]\s*(?:#.*)?$ */
static int ini_section(const char *line, char **group, char **state)
{
    if (line[0] != '[')
        return 0;
    const char *p = line + 1, *g = p;
    while (*p && *p != ':' && *p != ']' && !isspace((unsigned char)*p))
        p++;
    if (p == g)
        return 0;
    const char *ge = p, *st = NULL, *se = NULL;
    if (*p == ':') {
        st = ++p;
        while (is_word((unsigned char)*p))
            p++;
        se = p;
        if (se == st)
            return 0;
    }
    if (*p != ']')
        return 0;
    p++;
    while (isspace((unsigned char)*p))
        p++;
    if (*p && *p != '#')
        return 0;
    *group = strndup(g, (size_t)(ge - g));
    *state = st ? strndup(st, (size_t)(se - st)) : cf_strdup("hosts");
    return 1;
}

static int ini_host_line(struct ini *s, size_t g, const char *line, int indent)
{
    struct token *t = NULL;
    size_t nt = 0;
    const char *why;
    struct cf_pos pos = {s->file, s->line, indent + 1};
    int rc = 0;
    json_t *names = NULL;
    if (shlex_split(line, &t, &nt, &why) != 0)
        return cf_pos_errf(s->err, &pos, "error parsing host definition '%s': %s", line, why);
    if (nt == 0)
        goto out;
    size_t tl = strlen(t[0].text);
    long port;
    if ((rc = expand_hostpattern(t[0].text, &names, &port, s->err, &pos)) != 0)
        goto out;
    if (tl && t[0].text[tl - 1] == ':' && port < 0) {
        rc = cf_pos_errf(s->err, &pos,
                         "invalid host pattern '%s': a trailing ':' must be followed by a port",
                         t[0].text);
        goto out;
    }
    json_t *vars = json_object();
    for (size_t i = 1; i < nt && rc == 0; i++) {
        struct cf_pos vp = {s->file, s->line, indent + t[i].col};
        char *eq = strchr(t[i].text, '=');
        if (!eq) {
            rc = cf_pos_errf(s->err, &vp, "expected key=value host variable assignment, got '%s'",
                             t[i].text);
            break;
        }
        *eq = 0;
        json_t *v = py_value(eq + 1);
        vp.col += (int)(eq - t[i].text) + 1;
        cf_vars_set_pos(v, vp.file, vp.line, vp.col);
        json_object_set_new(vars, t[i].text, v);
        cf_vars_set_member_pos(vars, t[i].text, &vp);
    }
    if (rc == 0) {
        size_t i;
        json_t *nm;
        json_array_foreach(names, i, nm)
        {
            const char *hn = json_string_value(nm);
            if (!*hn) {
                rc = cf_pos_errf(s->err, &pos, "invalid empty host name");
                break;
            }
            if (!strcmp(hn, "---")) {
                rc = cf_pos_errf(s->err, &pos,
                                 "invalid host pattern '---': this looks like a yaml "
                                 "file, name it .yml");
                break;
            }
            size_t h = add_host(s->inv, hn, g, port, &pos);
            const char *k;
            json_t *v;
            json_object_foreach(vars, k, v)
            {
                struct cf_pos vp;
                cf_vars_member_pos(vars, k, &vp);
                host_set_var(s->inv, h, k, v, &vp);
            }
        }
    }
    json_decref(vars);
out:
    json_decref(names);
    tokens_free(t, nt);
    return rc;
}

static int ini_parse(struct cf_inventory *inv, const char *file, const char *text, char *err)
{
    struct ini s = {.inv = inv, .file = file, .err = err};
    size_t g = G_UNGROUPED;
    char *state = cf_strdup("hosts");
    int rc = 0;
    char *copy = cf_strdup(text);
    char *line = copy;
    while (line && rc == 0) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = 0;
        s.line++;
        /* strip */
        char *a = line;
        while (isspace((unsigned char)*a))
            a++;
        char *z = a + strlen(a);
        while (z > a && isspace((unsigned char)z[-1]))
            *--z = 0;
        int indent = (int)(a - line);
        struct cf_pos pos = {file, s.line, indent + 1};
        char *gname, *st;
        if (!*a || *a == '#' || *a == ';') {
            /* comment or empty */
        } else if (ini_section(a, &gname, &st)) {
            /* The ini plugin keeps invalid characters in group names
             * (TRANSFORM_INVALID_GROUP_CHARS=never), and so do we. */
            char *safe = cf_strdup(gname);
            free(state);
            state = st;
            if (strcmp(state, "hosts") && strcmp(state, "children") && strcmp(state, "vars")) {
                rc = cf_pos_errf(err, &pos, "section [%s:%s] has unknown type '%s'", gname, state,
                                 state);
                free(gname);
                free(safe);
                break;
            }
            free(gname);
            size_t existing;
            if (!find_idx(inv->gidx, safe, &existing)) {
                if (!strcmp(state, "vars") && !pend_find(&s, safe)) {
                    s.pend = cf_xrealloc(s.pend, (s.npend + 1) * sizeof(*s.pend));
                    s.pend[s.npend++] =
                        (struct pending){cf_strdup(safe), s.line, 0, NULL, json_array()};
                }
                add_group(inv, safe);
            }
            find_idx(inv->gidx, safe, &g);
            struct pending *pd = pend_find(&s, safe);
            if (pd && strcmp(state, "vars") != 0) {
                if (pd->is_children)
                    rc = add_pending_children(&s, safe);
                else
                    pend_del(pd);
            }
            free(safe);
        } else if (a[0] == '[' && z > a && z[-1] == ']') {
            rc = cf_pos_errf(err, &pos,
                             "invalid section entry '%s': make sure there are no spaces or other "
                             "invalid characters in the section name",
                             a);
        } else if (!strcmp(state, "hosts")) {
            rc = ini_host_line(&s, g, a, indent);
        } else if (!strcmp(state, "vars")) {
            char *eq = strchr(a, '=');
            if (!eq) {
                rc = cf_pos_errf(err, &pos, "expected key=value, got '%s'", a);
                break;
            }
            char *k = a, *ke = eq;
            while (ke > k && isspace((unsigned char)ke[-1]))
                ke--;
            *ke = 0;
            char *v = eq + 1;
            while (isspace((unsigned char)*v))
                v++;
            struct cf_pos vp = {file, s.line, (int)(v - line) + 1};
            json_t *val = py_value(v);
            cf_vars_set_pos(val, vp.file, vp.line, vp.col);
            rc = group_set_var(inv, g, k, val, &vp, err);
            json_decref(val);
        } else { /* children */
            const char *p = a;
            while (*p && *p != ':' && *p != ']' && !isspace((unsigned char)*p))
                p++;
            const char *q = p;
            while (isspace((unsigned char)*q))
                q++;
            if (p == a || (*q && *q != '#')) {
                rc = cf_pos_errf(err, &pos, "expected a group name, got '%s'", a);
                break;
            }
            char *child = strndup(a, (size_t)(p - a));
            size_t cg;
            if (!find_idx(inv->gidx, child, &cg)) {
                struct pending *pd = pend_find(&s, child);
                if (!pd) {
                    s.pend = cf_xrealloc(s.pend, (s.npend + 1) * sizeof(*s.pend));
                    s.pend[s.npend++] =
                        (struct pending){cf_strdup(child), s.line, 1, NULL, json_array()};
                    pd = &s.pend[s.npend - 1];
                }
                json_array_append_new(pd->parents, json_string(inv->groups[g].name));
            } else {
                rc = add_child_group(inv, g, cg, err, &pos);
            }
            free(child);
        }
        line = nl ? nl + 1 : NULL;
    }
    for (size_t i = 0; rc == 0 && i < s.npend; i++) {
        struct pending *pd = &s.pend[i];
        if (!pd->name)
            continue;
        struct cf_pos pos = {file, pd->line, 1};
        if (!pd->is_children)
            rc = cf_pos_errf(err, &pos, "section [%s:vars] is not valid for undefined group '%s'",
                             pd->name, pd->name);
        else
            rc = cf_pos_errf(
                err, &pos, "section [%s:children] includes undefined group '%s'",
                json_string_value(json_array_get(pd->parents, json_array_size(pd->parents) - 1)),
                pd->name);
    }
    for (size_t i = 0; i < s.npend; i++)
        pend_del(&s.pend[i]);
    free(s.pend);
    free(state);
    free(copy);
    return rc;
}

/* ------------------------------------------------------------------ */
/* YAML inventory (plugins/inventory/yaml.py)                           */

static int yaml_group(struct cf_inventory *inv, const char *name, json_t *data,
                      const struct cf_pos *gpos, size_t *out, char *err, int depth);

static int yaml_section(json_t *gdata, const char *section, json_t **out, const char *group,
                        char *err)
{
    json_t *s = json_object_get(gdata, section);
    struct cf_pos pos;
    *out = NULL;
    if (!s || json_is_null(s))
        return 0;
    if (json_is_string(s)) {
        /* "hosts: web1" means {web1: null} */
        json_t *o = json_object();
        json_object_set_new(o, json_string_value(s), json_null());
        cf_vars_member_pos(gdata, section, &pos);
        if (pos.file)
            cf_vars_set_member_pos(o, json_string_value(s), &pos);
        *out = o;
        return 0;
    }
    if (!json_is_object(s)) {
        cf_vars_member_pos(gdata, section, &pos);
        return cf_pos_errf(err, &pos,
                           "invalid '%s' entry for group '%s': expected a mapping, found a %s",
                           section, group, cf_vars_type_name(s));
    }
    *out = json_incref(s);
    return 0;
}

static int yaml_group(struct cf_inventory *inv, const char *name, json_t *data,
                      const struct cf_pos *gpos, size_t *out, char *err, int depth)
{
    int rc = 0;
    *out = (size_t)-1;
    if (depth > 64)
        return cf_pos_errf(err, gpos, "groups nested too deeply");
    if (data && !json_is_object(data) && !json_is_null(data)) {
        cf_log(0, "warning: %s:%d:%d: skipping '%s': not a valid group definition (a %s)",
               gpos->file, gpos->line, gpos->col, name, cf_vars_type_name(data));
        return 0;
    }
    if (!*name)
        return cf_pos_errf(err, gpos, "invalid empty group name");
    size_t g = add_group(inv, name);
    *out = g;
    if (!data || json_is_null(data))
        return 0;
    json_t *sec[3] = {NULL, NULL, NULL};
    static const char *const names[3] = {"vars", "children", "hosts"};
    for (int i = 0; i < 3 && rc == 0; i++)
        rc = yaml_section(data, names[i], &sec[i], name, err);
    const char *key;
    json_t *val;
    json_object_foreach(data, key, val)
    {
        if (rc)
            break;
        struct cf_pos kpos;
        cf_vars_member_pos(data, key, &kpos);
        int which = !strcmp(key, "vars")       ? 0
                    : !strcmp(key, "children") ? 1
                    : !strcmp(key, "hosts")    ? 2
                                               : -1;
        json_t *m = which >= 0 ? sec[which] : val;
        if (m && !json_is_object(m) && !json_is_null(m)) {
            cf_log(0, "warning: %s:%d:%d: skipping key '%s' in group '%s': not a mapping",
                   kpos.file, kpos.line, kpos.col, key, name);
            continue;
        }
        if (!m || json_is_null(m))
            continue;
        if (which < 0) {
            cf_log(0,
                   "warning: %s:%d:%d: skipping unexpected key '%s' in group '%s', only vars, "
                   "children and hosts are valid",
                   kpos.file, kpos.line, kpos.col, key, name);
            continue;
        }
        const char *k;
        json_t *v;
        json_object_foreach(m, k, v)
        {
            struct cf_pos vpos;
            cf_vars_member_pos(m, k, &vpos);
            if (!vpos.file)
                vpos = kpos;
            if (which == 0) {
                if ((rc = group_set_var(inv, g, k, v, &vpos, err)) != 0)
                    break;
            } else if (which == 1) {
                size_t cg;
                if ((rc = yaml_group(inv, k, v, &vpos, &cg, err, depth + 1)) != 0)
                    break;
                if (cg == (size_t)-1)
                    continue;
                if ((rc = add_child_group(inv, g, cg, err, &vpos)) != 0)
                    break;
            } else {
                json_t *hnames;
                long port;
                if (v && !json_is_object(v) && !json_is_null(v)) {
                    rc = cf_pos_errf(err, &vpos,
                                     "invalid vars for host '%s': expected a mapping, found a %s",
                                     k, cf_vars_type_name(v));
                    break;
                }
                if ((rc = expand_hostpattern(k, &hnames, &port, err, &vpos)) != 0)
                    break;
                size_t i;
                json_t *hn;
                json_array_foreach(hnames, i, hn)
                {
                    if (!*json_string_value(hn)) {
                        rc = cf_pos_errf(err, &vpos, "invalid empty host name");
                        break;
                    }
                    size_t h = add_host(inv, json_string_value(hn), g, port, &vpos);
                    if (json_is_object(v)) {
                        const char *hk;
                        json_t *hv;
                        json_object_foreach(v, hk, hv)
                        {
                            struct cf_pos hp;
                            cf_vars_member_pos(v, hk, &hp);
                            host_set_var(inv, h, hk, hv, &hp);
                        }
                    }
                }
                json_decref(hnames);
                if (rc)
                    break;
            }
        }
    }
    for (int i = 0; i < 3; i++)
        json_decref(sec[i]);
    return rc;
}

static int yaml_inventory(struct cf_inventory *inv, const char *file, json_t *data, char *err)
{
    struct cf_pos pos = {file, 1, 1};
    if (!data || json_is_null(data) || (json_is_object(data) && json_object_size(data) == 0))
        return cf_pos_errf(err, &pos, "parsed an empty yaml file, expected an inventory");
    if (!json_is_object(data)) {
        cf_vars_pos(data, &pos);
        return cf_pos_errf(err, &pos,
                           "yaml inventory has invalid structure: expected a mapping "
                           "of groups, got a %s",
                           cf_vars_type_name(data));
    }
    if (json_object_get(data, "plugin")) {
        cf_vars_member_pos(data, "plugin", &pos);
        return cf_pos_errf(err, &pos,
                           "inventory plugin configuration files are not supported, "
                           "only static inventories");
    }
    const char *k;
    json_t *v;
    json_object_foreach(data, k, v)
    {
        struct cf_pos gp;
        size_t g;
        cf_vars_member_pos(data, k, &gp);
        if (!gp.file)
            gp = pos;
        int rc = yaml_group(inv, k, v, &gp, &g, err, 0);
        if (rc)
            return rc;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* sources                                                             */

static const char *file_ext(const char *name)
{
    const char *base = strrchr(name, '/');
    base = base ? base + 1 : name;
    const char *dot = strrchr(base, '.');
    return dot && dot != base ? dot : "";
}

static int ignored_entry(const char *name)
{
    static const char *const ext[] = {".pyc", ".pyo", ".swp",  ".bak", "~",    ".rpm",  ".md",
                                      ".txt", ".rst", ".orig", ".ini", ".cfg", ".retry"};
    if (name[0] == '.' || !strcmp(name, "host_vars") || !strcmp(name, "group_vars") ||
        !strcmp(name, "vars_plugins"))
        return 1;
    size_t n = strlen(name);
    for (size_t i = 0; i < sizeof(ext) / sizeof(ext[0]); i++) {
        size_t e = strlen(ext[i]);
        if (n >= e && !strcmp(name + n - e, ext[i]))
            return 1;
    }
    return 0;
}

static int parse_file(struct cf_inventory *inv, const char *path, char *err)
{
    char *text = NULL;
    size_t len;
    int rc = cf_read_text_file(path, "inventory file", &text, &len, err);
    if (rc)
        return rc;
    const char *ext = file_ext(path);
    if (!strcmp(ext, ".toml")) {
        free(text);
        return cf_errf(err, "%s: toml inventories are not supported, use ini or yaml", path);
    }
    int yaml_ext = !strcmp(ext, ".yml") || !strcmp(ext, ".yaml") || !strcmp(ext, ".json");
    if (yaml_ext || !*ext) {
        json_t *data = NULL;
        char yerr[CF_ERRLEN];
        rc = cf_yaml_load_string(path, text, &data, yerr);
        int is_inv = rc == 0 && json_is_object(data) && json_object_size(data) > 0;
        if (yaml_ext || is_inv) {
            if (rc == 0)
                rc = yaml_inventory(inv, path, data, err);
            else
                snprintf(err, CF_ERRLEN, "%s", yerr);
            json_decref(data);
            free(text);
            return rc;
        }
        json_decref(data);
    }
    rc = ini_parse(inv, path, text, err);
    free(text);
    return rc;
}

static int names_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The sorted entries of a directory (caller frees each and the array). */
static int list_dir(const char *path, char ***out, size_t *n)
{
    DIR *d = opendir(path);
    *out = NULL;
    *n = 0;
    if (!d)
        return errno == ENOENT ? CF_ENOENT : CF_EIO;
    struct dirent *e;
    char **v = NULL;
    size_t k = 0;
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        v = cf_xrealloc(v, (k + 1) * sizeof(*v));
        v[k++] = cf_strdup(e->d_name);
    }
    closedir(d);
    if (k)
        qsort(v, k, sizeof(*v), names_cmp);
    *out = v;
    *n = k;
    return 0;
}

static void free_names(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static int parse_source(struct cf_inventory *inv, const char *path, char *err, int depth)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        cf_errf(err, "%s: inventory source not found", path);
        return CF_ENOENT;
    }
    if (!S_ISDIR(st.st_mode))
        return parse_file(inv, path, err);
    if (depth > MAX_DIR_DEPTH)
        return cf_errf(err, "%s: inventory directories nested too deeply", path);
    char **names;
    size_t n;
    int rc = list_dir(path, &names, &n);
    if (rc) {
        cf_errf(err, "%s: cannot read the inventory directory", path);
        return rc;
    }
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (ignored_entry(names[i]))
            continue;
        char *full = cf_asprintf("%s/%s", path, names[i]);
        rc = parse_source(inv, full, err, depth + 1);
        free(full);
    }
    free_names(names, n);
    return rc;
}

/* ------------------------------------------------------------------ */
/* group_vars / host_vars (DataLoader.find_vars_files)                  */

static int load_vars_file(const char *path, json_t **acc, char *err)
{
    json_t *data = NULL;
    int rc = cf_yaml_load_file(path, &data, err);
    if (rc)
        return rc;
    if (json_is_null(data) || (json_is_object(data) && !json_object_size(data))) {
        json_decref(data);
        return 0;
    }
    if (!json_is_object(data)) {
        struct cf_pos pos = {path, 1, 1};
        cf_vars_pos(data, &pos);
        if (!pos.file)
            pos = (struct cf_pos){path, 1, 1};
        rc = cf_pos_errf(err, &pos, "a vars file must hold a mapping of variables, found a %s",
                         cf_vars_type_name(data));
        json_decref(data);
        return rc;
    }
    if (!*acc)
        *acc = json_object();
    cf_vars_merge(*acc, data);
    json_decref(data);
    return 0;
}

static int is_yaml_ext(const char *ext)
{
    return !strcmp(ext, ".yml") || !strcmp(ext, ".yaml") || !strcmp(ext, ".json");
}

static int load_vars_dir(const char *path, json_t **acc, char *err, int depth)
{
    char **names;
    size_t n;
    int rc = list_dir(path, &names, &n);
    if (rc)
        return cf_errf(err, "%s: cannot read the directory", path);
    for (size_t i = 0; i < n && rc == 0; i++) {
        const char *nm = names[i];
        size_t l = strlen(nm);
        if (nm[0] == '.' || nm[l - 1] == '~')
            continue;
        char *full = cf_asprintf("%s/%s", path, nm);
        struct stat st;
        const char *ext = file_ext(nm);
        if (stat(full, &st) == 0) {
            if (S_ISDIR(st.st_mode) && !*ext && depth < MAX_DIR_DEPTH)
                rc = load_vars_dir(full, acc, err, depth + 1);
            else if (S_ISREG(st.st_mode) && (!*ext || is_yaml_ext(ext)))
                rc = load_vars_file(full, acc, err);
        }
        free(full);
    }
    free_names(names, n);
    return rc;
}

/* The merged data of <dir>/<sub>/<name>{,.yml,.yaml,.json} or the
 * directory of that name; *out NULL when nothing is there. */
static int find_vars(const char *dir, const char *sub, const char *name, json_t **out, char *err)
{
    static const char *const exts[] = {"", ".yml", ".yaml", ".json"};
    *out = NULL;
    if (name[0] == '/')
        return 0;
    for (size_t i = 0; i < 4; i++) {
        char *p = cf_asprintf("%s/%s/%s%s", dir, sub, name, exts[i]);
        struct stat st;
        int rc = 0, found = stat(p, &st) == 0;
        if (found) {
            if (S_ISDIR(st.st_mode))
                rc = load_vars_dir(p, out, err, 0);
            else
                rc = load_vars_file(p, out, err);
        }
        free(p);
        if (rc) {
            json_decref(*out);
            *out = NULL;
            return rc;
        }
        if (found)
            break;
    }
    return 0;
}

static int load_vars_files(struct cf_inventory *inv, char *err)
{
    int rc = 0;
    for (size_t g = 0; g < inv->ngroups; g++) {
        inv->groups[g].files = cf_xcalloc(inv->nvardirs ? inv->nvardirs : 1, sizeof(json_t *));
        for (size_t d = 0; d < inv->nvardirs && rc == 0; d++)
            rc = find_vars(inv->vardirs[d], "group_vars", inv->groups[g].name,
                           &inv->groups[g].files[d], err);
    }
    for (size_t h = 0; h < inv->nhosts; h++) {
        inv->hosts[h].files = cf_xcalloc(inv->nvardirs ? inv->nvardirs : 1, sizeof(json_t *));
        for (size_t d = 0; d < inv->nvardirs && rc == 0; d++)
            rc = find_vars(inv->vardirs[d], "host_vars", inv->hosts[h].name,
                           &inv->hosts[h].files[d], err);
    }
    return rc;
}

/* ------------------------------------------------------------------ */
/* reconcile (InventoryData.reconcile_inventory) and derived data      */

static const struct cf_inventory *sort_inv; /* qsort has no context argument */

static int group_order_cmp(const void *a, const void *b)
{
    const struct group *x = &sort_inv->groups[*(const size_t *)a];
    const struct group *y = &sort_inv->groups[*(const size_t *)b];
    if (x->depth != y->depth)
        return x->depth < y->depth ? -1 : 1;
    if (x->priority != y->priority)
        return x->priority < y->priority ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int cstr_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int compute_depth(struct cf_inventory *inv, size_t g, int *state)
{
    if (state[g] == 2)
        return inv->groups[g].depth;
    state[g] = 1;
    int d = 0;
    for (size_t i = 0; i < inv->groups[g].parents.n; i++) {
        size_t p = inv->groups[g].parents.v[i];
        if (state[p] == 1)
            continue; /* loops are refused when edges are added */
        int pd = compute_depth(inv, p, state) + 1;
        if (pd > d)
            d = pd;
    }
    inv->groups[g].depth = d;
    state[g] = 2;
    return d;
}

/* All groups of host h (direct and ancestors) marked in mark[]. */
static void mark_ancestors(const struct cf_inventory *inv, size_t g, unsigned char *mark)
{
    if (mark[g])
        return;
    mark[g] = 1;
    for (size_t i = 0; i < inv->groups[g].parents.n; i++)
        mark_ancestors(inv, inv->groups[g].parents.v[i], mark);
}

static void reconcile(struct cf_inventory *inv)
{
    for (size_t g = 0; g < inv->ngroups; g++)
        if (g != G_ALL && inv->groups[g].parents.n == 0)
            add_child_group(inv, G_ALL, g, NULL, NULL);
    unsigned char *mark = cf_xcalloc(inv->ngroups, 1);
    for (size_t h = 0; h < inv->nhosts; h++) {
        struct host *ho = &inv->hosts[h];
        memset(mark, 0, inv->ngroups);
        for (size_t i = 0; i < ho->groups.n; i++)
            mark_ancestors(inv, ho->groups.v[i], mark);
        size_t others = 0;
        for (size_t g = 0; g < inv->ngroups; g++)
            if (mark[g] && g != G_ALL && g != G_UNGROUPED)
                others++;
        if (mark[G_UNGROUPED]) {
            if (others && vec_has(&ho->groups, G_UNGROUPED)) {
                vec_remove(&ho->groups, G_UNGROUPED);
                vec_remove(&inv->groups[G_UNGROUPED].hosts, h);
            }
        } else if (!others) {
            group_add_host(inv, G_UNGROUPED, h);
        }
    }
    int *state = cf_xcalloc(inv->ngroups, sizeof(int));
    for (size_t g = 0; g < inv->ngroups; g++)
        compute_depth(inv, g, state);
    free(state);
    for (size_t h = 0; h < inv->nhosts; h++) {
        struct host *ho = &inv->hosts[h];
        memset(mark, 0, inv->ngroups);
        for (size_t i = 0; i < ho->groups.n; i++)
            mark_ancestors(inv, ho->groups.v[i], mark);
        ho->names = cf_xcalloc(inv->ngroups, sizeof(char *));
        ho->sorted_groups = cf_xcalloc(inv->ngroups, sizeof(size_t));
        for (size_t g = 0; g < inv->ngroups; g++) {
            if (!mark[g] || g == G_ALL)
                continue;
            ho->names[ho->nnames++] = inv->groups[g].name;
            ho->sorted_groups[ho->nsorted++] = g;
        }
        qsort(ho->names, ho->nnames, sizeof(char *), cstr_cmp);
        sort_inv = inv;
        qsort(ho->sorted_groups, ho->nsorted, sizeof(size_t), group_order_cmp);
        sort_inv = NULL;
    }
    free(mark);
    inv->group_names_sorted = cf_xcalloc(inv->ngroups, sizeof(char *));
    for (size_t g = 0; g < inv->ngroups; g++)
        inv->group_names_sorted[g] = inv->groups[g].name;
    qsort(inv->group_names_sorted, inv->ngroups, sizeof(char *), cstr_cmp);
}

static char *dir_of(const char *path)
{
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return cf_strdup(path);
    const char *slash = strrchr(path, '/');
    if (!slash)
        return cf_strdup(".");
    if (slash == path)
        return cf_strdup("/");
    return strndup(path, (size_t)(slash - path));
}

int cf_inventory_load(const char *const *sources, int n, const char *playbook_dir,
                      struct cf_inventory **out, char *err)
{
    int rc = 0;
    *out = NULL;
    if (n <= 0 || !sources)
        return cf_errf(err, "no inventory given: pass -i FILE or -i DIRECTORY");
    struct cf_inventory *inv = cf_xcalloc(1, sizeof(*inv));
    inv->gidx = json_object();
    inv->hidx = json_object();
    add_group(inv, "all");
    add_group(inv, "ungrouped");
    add_child_group(inv, G_ALL, G_UNGROUPED, NULL, NULL);
    for (int i = 0; i < n && rc == 0; i++)
        rc = parse_source(inv, sources[i], err, 0);
    if (rc)
        goto fail;
    reconcile(inv);
    inv->vardirs = cf_xcalloc((size_t)n + 1, sizeof(char *));
    for (int i = 0; i < n; i++)
        inv->vardirs[inv->nvardirs++] = dir_of(sources[i]);
    inv->vardirs[inv->nvardirs++] = cf_strdup(playbook_dir && *playbook_dir ? playbook_dir : ".");
    if ((rc = load_vars_files(inv, err)) != 0)
        goto fail;
    *out = inv;
    return 0;
fail:
    cf_inventory_free(inv);
    return rc;
}

void cf_inventory_free(struct cf_inventory *inv)
{
    if (!inv)
        return;
    for (size_t g = 0; g < inv->ngroups; g++) {
        struct group *gr = &inv->groups[g];
        free(gr->name);
        json_decref(gr->vars);
        free(gr->kids.v);
        free(gr->parents.v);
        free(gr->hosts.v);
        if (gr->files)
            for (size_t d = 0; d < inv->nvardirs; d++)
                json_decref(gr->files[d]);
        free(gr->files);
    }
    for (size_t h = 0; h < inv->nhosts; h++) {
        struct host *ho = &inv->hosts[h];
        free(ho->name);
        json_decref(ho->vars);
        free(ho->groups.v);
        if (ho->files)
            for (size_t d = 0; d < inv->nvardirs; d++)
                json_decref(ho->files[d]);
        free(ho->files);
        free(ho->names);
        free(ho->sorted_groups);
    }
    for (size_t d = 0; d < inv->nvardirs; d++)
        free(inv->vardirs[d]);
    free(inv->vardirs);
    free(inv->groups);
    free(inv->hosts);
    free(inv->group_names_sorted);
    json_decref(inv->gidx);
    json_decref(inv->hidx);
    free(inv);
}

size_t cf_inventory_host_count(const struct cf_inventory *inv)
{
    return inv ? inv->nhosts : 0;
}

const char *cf_inventory_host_name(const struct cf_inventory *inv, size_t i)
{
    return inv && i < inv->nhosts ? inv->hosts[i].name : NULL;
}

int cf_inventory_host_find(const struct cf_inventory *inv, const char *name, size_t *idx)
{
    return inv && name && find_idx(inv->hidx, name, idx) ? 0 : CF_ENOENT;
}

size_t cf_inventory_host_groups(const struct cf_inventory *inv, size_t host,
                                const char *const **names)
{
    if (!inv || host >= inv->nhosts) {
        *names = NULL;
        return 0;
    }
    *names = inv->hosts[host].names;
    return inv->hosts[host].nnames;
}

size_t cf_inventory_group_names(const struct cf_inventory *inv, const char *const **names)
{
    *names = inv->group_names_sorted;
    return inv->ngroups;
}

/* ------------------------------------------------------------------ */
/* variables                                                           */

int cf_inventory_hostvars(const struct cf_inventory *inv, size_t host, const json_t *role_defaults,
                          const json_t *extra_vars, json_t **out, char *err)
{
    *out = NULL;
    if (!inv || host >= inv->nhosts)
        return cf_errf(err, "no host with index %zu in the inventory", host);
    const struct host *h = &inv->hosts[host];
    json_t *v = json_object();
    if (json_is_object(role_defaults))
        cf_vars_merge(v, role_defaults);
    cf_vars_merge(v, inv->groups[G_ALL].vars);
    for (size_t i = 0; i < h->nsorted; i++)
        cf_vars_merge(v, inv->groups[h->sorted_groups[i]].vars);
    for (size_t d = 0; d < inv->nvardirs; d++)
        if (inv->groups[G_ALL].files[d])
            cf_vars_merge(v, inv->groups[G_ALL].files[d]);
    for (size_t d = 0; d < inv->nvardirs; d++)
        for (size_t i = 0; i < h->nsorted; i++)
            if (inv->groups[h->sorted_groups[i]].files[d])
                cf_vars_merge(v, inv->groups[h->sorted_groups[i]].files[d]);
    cf_vars_merge(v, h->vars);
    for (size_t d = 0; d < inv->nvardirs; d++)
        if (h->files[d])
            cf_vars_merge(v, h->files[d]);
    if (json_is_object(extra_vars))
        cf_vars_merge(v, extra_vars);
    *out = v;
    return 0;
}

/* ------------------------------------------------------------------ */
/* limit patterns (InventoryManager.get_hosts)                         */

/* Hosts of a group and its descendants, breadth first, each once. */
static void group_hosts(const struct cf_inventory *inv, size_t g, struct idxvec *out)
{
    unsigned char *gseen = cf_xcalloc(inv->ngroups, 1);
    unsigned char *hseen = cf_xcalloc(inv->nhosts ? inv->nhosts : 1, 1);
    struct idxvec queue = {0};
    vec_push(&queue, g);
    gseen[g] = 1;
    for (size_t qi = 0; qi < queue.n; qi++) {
        const struct group *gr = &inv->groups[queue.v[qi]];
        for (size_t i = 0; i < gr->kids.n; i++) {
            if (!gseen[gr->kids.v[i]]) {
                gseen[gr->kids.v[i]] = 1;
                vec_push(&queue, gr->kids.v[i]);
            }
        }
    }
    for (size_t qi = 0; qi < queue.n; qi++) {
        const struct group *gr = &inv->groups[queue.v[qi]];
        for (size_t i = 0; i < gr->hosts.n; i++) {
            if (!hseen[gr->hosts.v[i]]) {
                hseen[gr->hosts.v[i]] = 1;
                vec_push(out, gr->hosts.v[i]);
            }
        }
    }
    free(queue.v);
    free(gseen);
    free(hseen);
}

struct matcher {
    int is_regex;
    regex_t re;
    const char *glob;
};

/* glibc's regcomp copies the tree for every repetition, so stacked ones
 * ("a++++", "(a{1,99}){1,99}") take memory exponential in their number: a
 * limit of a few dozen bytes used gigabytes.  Python's re refuses stacked
 * quantifiers ("multiple repeat"); bounded repeats are limited to a
 * product of 1000 copies.  NULL when re is fine, else why not. */
static const char *regex_cost_problem(const char *re)
{
    int prev_quant = 0;
    double copies = 1;
    for (const char *p = re; *p; p++) {
        int quant = 0;
        if (*p == '\\' && p[1]) {
            p++;
        } else if (*p == '[') {
            /* a bracket expression: ']' first is literal */
            const char *q = p + 1;
            if (*q == '^')
                q++;
            if (*q == ']')
                q++;
            while (*q && *q != ']')
                q++;
            if (!*q)
                return NULL; /* regcomp reports it */
            p = q;
        } else if (*p == '*' || *p == '+' || *p == '?') {
            quant = 1;
        } else if (*p == '{') {
            char *end;
            long lo = strtol(p + 1, &end, 10), hi = lo;
            if (*end == ',')
                hi = isdigit((unsigned char)end[1]) ? strtol(end + 1, &end, 10) : 100;
            else if (*end != '}')
                return NULL;
            if (lo > 100 || hi > 100)
                return "a repetition count above 100";
            copies *= hi > 1 ? (double)hi : 1;
            if (copies > 1000)
                return "repetitions too costly to compile";
            quant = 1;
        }
        if (quant && prev_quant)
            return "multiple repeat";
        prev_quant = quant;
    }
    return NULL;
}

static int matcher_init(struct matcher *m, const char *pattern, char *err)
{
    memset(m, 0, sizeof(*m));
    if (pattern[0] == '~') {
        const char *why = regex_cost_problem(pattern + 1);
        if (why)
            return cf_errf(err, "invalid host pattern '%s': %s", pattern, why);
        int r = regcomp(&m->re, pattern + 1, REG_EXTENDED);
        if (r) {
            char buf[256];
            regerror(r, &m->re, buf, sizeof(buf));
            return cf_errf(err, "invalid host pattern '%s': %s", pattern, buf);
        }
        m->is_regex = 1;
    } else {
        m->glob = pattern;
    }
    return 0;
}

static int matcher_match(struct matcher *m, const char *s)
{
    if (m->is_regex) {
        regmatch_t pm;
        return regexec(&m->re, s, 1, &pm, 0) == 0 && pm.rm_so == 0;
    }
    return fnmatch(m->glob, s, FNM_NOESCAPE) == 0;
}

static void matcher_free(struct matcher *m)
{
    if (m->is_regex)
        regfree(&m->re);
}

/* _enumerate_matches */
static int enumerate(const struct cf_inventory *inv, const char *pattern, struct idxvec *out,
                     char *err)
{
    struct matcher m;
    int rc = matcher_init(&m, pattern, err);
    if (rc)
        return rc;
    int groups = 0;
    for (size_t g = 0; g < inv->ngroups; g++) {
        if (matcher_match(&m, inv->groups[g].name)) {
            groups++;
            group_hosts(inv, g, out);
        }
    }
    if (!groups || pattern[0] == '~' || strpbrk(pattern, ".?*[")) {
        for (size_t h = 0; h < inv->nhosts; h++)
            if (matcher_match(&m, inv->hosts[h].name))
                vec_push(out, h);
    }
    matcher_free(&m);
    return 0;
}

/* PATTERN_WITH_SUBSCRIPT: ^(.+)\[(?:(-?[0-9]+)|([0-9]+)([:-])([0-9]*))\]$ */
static int split_subscript(const char *pattern, char **expr, long *start, long *end, int *has)
{
    size_t n = strlen(pattern);
    *has = 0;
    *expr = cf_strdup(pattern);
    if (pattern[0] == '~' || n < 4 || pattern[n - 1] != ']')
        return 0;
    const char *lb = strrchr(pattern, '[');
    if (!lb || lb == pattern)
        return 0;
    const char *p = lb + 1;
    char *e;
    if (*p == '-' || isdigit((unsigned char)*p)) {
        long a = strtol(p, &e, 10);
        if (e != p && *e == ']' && e[1] == 0 && (isdigit((unsigned char)e[-1]))) {
            *start = a;
            *end = LONG_MIN; /* single index */
            *has = 1;
        } else if (isdigit((unsigned char)*p) && e != p && (*e == ':' || *e == '-')) {
            const char *q = e + 1;
            const char *d = q;
            while (isdigit((unsigned char)*d))
                d++;
            if (*d == ']' && d[1] == 0) {
                *start = a;
                *end = d == q ? -1 : strtol(q, NULL, 10);
                *has = 1;
            }
        }
    }
    if (*has)
        (*expr)[lb - pattern] = 0;
    return 0;
}

static int match_one(const struct cf_inventory *inv, const char *pattern, struct idxvec *out,
                     char *err)
{
    if (pattern[0] == '&' || pattern[0] == '!')
        pattern++;
    if (!*pattern)
        return cf_errf(err, "empty host pattern after '&' or '!'");
    char *expr;
    long start = 0, end = 0;
    int has;
    split_subscript(pattern, &expr, &start, &end, &has);
    struct idxvec all = {0};
    int rc = enumerate(inv, expr, &all, err);
    free(expr);
    if (rc) {
        free(all.v);
        return rc;
    }
    if (!has || all.n == 0) {
        for (size_t i = 0; i < all.n; i++)
            vec_push(out, all.v[i]);
        free(all.v);
        return 0;
    }
    long n = (long)all.n;
    if (end != LONG_MIN && end != 0) {
        /* hosts[start:end + 1], Python slice semantics */
        long e = end == -1 ? n - 1 : end;
        long s = start;
        if (s < 0)
            s += n;
        if (s < 0)
            s = 0;
        long stop = e >= n ? n : e + 1; /* e may be LONG_MAX */
        for (long i = s; i < stop; i++)
            vec_push(out, all.v[i]);
    } else {
        long i = start < 0 ? start + n : start;
        if (i < 0 || i >= n) {
            free(all.v);
            return cf_errf(err, "no hosts matched the subscripted pattern '%s'", pattern);
        }
        vec_push(out, all.v[i]);
    }
    free(all.v);
    return 0;
}

static void push_pattern(json_t *arr, const char *s, size_t n)
{
    while (n && isspace((unsigned char)*s))
        s++, n--;
    while (n && isspace((unsigned char)s[n - 1]))
        n--;
    if (n)
        json_array_append_new(arr, json_stringn(s, n));
}

/* split_host_pattern */
static void split_pattern(const char *pattern, json_t *out)
{
    if (strchr(pattern, ',')) {
        const char *p = pattern;
        for (;;) {
            const char *c = strchr(p, ',');
            push_pattern(out, p, c ? (size_t)(c - p) : strlen(p));
            if (!c)
                break;
            p = c + 1;
        }
        return;
    }
    char *host;
    long port;
    if (parse_address(pattern, &host, &port)) {
        free(host);
        push_pattern(out, pattern, strlen(pattern));
        return;
    }
    /* (?:[^\s:\[\]]|\[[^\]]*\])+ */
    const char *p = pattern;
    while (*p) {
        const char *s = p;
        while (*p) {
            if (*p == '[') {
                const char *c = strchr(p, ']');
                if (!c)
                    break;
                p = c + 1;
            } else if (*p == ':' || *p == ']' || isspace((unsigned char)*p)) {
                break;
            } else {
                p++;
            }
        }
        if (p > s)
            push_pattern(out, s, (size_t)(p - s));
        else
            p++;
    }
}

static int read_limit_file(const char *path, json_t *out, char *err)
{
    char *text;
    size_t len;
    int rc = cf_read_file(path, 16u << 20, &text, &len);
    if (rc)
        return cf_errf(err, "cannot read the limit file '%s'", path);
    char *line = text;
    while (line && *line) {
        char *nl = strchr(line, '\n');
        push_pattern(out, line, nl ? (size_t)(nl - line) : strlen(line));
        line = nl ? nl + 1 : NULL;
    }
    free(text);
    return 0;
}

static int idx_cmp(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return x < y ? -1 : x > y;
}

int cf_inventory_select(const struct cf_inventory *inv, const char *limit, size_t **idx, size_t *n,
                        char *err)
{
    *idx = NULL;
    *n = 0;
    json_t *pats = json_array(), *raw = json_array();
    int rc = 0;
    if (!limit || !*limit)
        limit = "all";
    split_pattern(limit, raw);
    size_t i;
    json_t *pv;
    json_array_foreach(raw, i, pv)
    {
        const char *p = json_string_value(pv);
        if (p[0] == '@') {
            if ((rc = read_limit_file(p + 1, pats, err)) != 0)
                goto out;
        } else {
            json_array_append(pats, pv);
        }
    }
    /* order_patterns: regular, then &, then ! */
    json_t *ordered = json_array();
    for (int pass = 0; pass < 3; pass++) {
        json_array_foreach(pats, i, pv)
        {
            const char *p = json_string_value(pv);
            int kind = p[0] == '&' ? 1 : p[0] == '!' ? 2 : 0;
            if (kind == pass)
                json_array_append(ordered, pv);
        }
        if (pass == 0 && json_array_size(ordered) == 0)
            json_array_append_new(ordered, json_string("all"));
    }
    unsigned char *in = cf_xcalloc(inv->nhosts ? inv->nhosts : 1, 1);
    json_array_foreach(ordered, i, pv)
    {
        const char *p = json_string_value(pv);
        size_t h;
        struct idxvec that = {0};
        if (find_idx(inv->hidx, p, &h)) {
            in[h] = 1;
            continue;
        }
        if ((rc = match_one(inv, p, &that, err)) != 0) {
            free(that.v);
            break;
        }
        if (p[0] == '!' || p[0] == '&') {
            unsigned char *m = cf_xcalloc(inv->nhosts ? inv->nhosts : 1, 1);
            for (size_t k = 0; k < that.n; k++)
                m[that.v[k]] = 1;
            for (size_t k = 0; k < inv->nhosts; k++)
                in[k] = p[0] == '!' ? (in[k] && !m[k]) : (in[k] && m[k]);
            free(m);
        } else {
            for (size_t k = 0; k < that.n; k++)
                in[that.v[k]] = 1;
        }
        free(that.v);
    }
    json_decref(ordered);
    if (rc == 0) {
        size_t *v = cf_xmalloc((inv->nhosts ? inv->nhosts : 1) * sizeof(size_t));
        size_t k = 0;
        for (size_t h = 0; h < inv->nhosts; h++)
            if (in[h])
                v[k++] = h;
        qsort(v, k, sizeof(size_t), idx_cmp);
        if (k == 0) {
            free(v);
            rc = CF_ENOENT;
            cf_errf(err, "limit '%s' matches no host in the inventory", limit);
        } else {
            *idx = v;
            *n = k;
        }
    }
    free(in);
out:
    json_decref(pats);
    json_decref(raw);
    return rc;
}

/* ------------------------------------------------------------------ */
/* ansible-inventory output                                            */

int cf_inventory_list_json(const struct cf_inventory *inv, const json_t *extra_vars, json_t **out,
                           char *err)
{
    json_t *doc = json_object(), *hv = json_object(), *meta = json_object();
    for (size_t g = 0; g < inv->ngroups; g++) {
        const struct group *gr = &inv->groups[g];
        json_t *o = json_object();
        if (g != G_ALL && gr->hosts.n) {
            json_t *a = json_array();
            for (size_t i = 0; i < gr->hosts.n; i++)
                json_array_append_new(a, json_string(inv->hosts[gr->hosts.v[i]].name));
            json_object_set_new(o, "hosts", a);
        }
        if (gr->kids.n) {
            json_t *a = json_array();
            for (size_t i = 0; i < gr->kids.n; i++)
                json_array_append_new(a, json_string(inv->groups[gr->kids.v[i]].name));
            json_object_set_new(o, "children", a);
        }
        if (json_object_size(o))
            json_object_set_new(doc, gr->name, o);
        else
            json_decref(o);
    }
    for (size_t h = 0; h < inv->nhosts; h++) {
        json_t *v;
        int rc = cf_inventory_hostvars(inv, h, NULL, extra_vars, &v, err);
        if (rc) {
            json_decref(doc);
            json_decref(hv);
            json_decref(meta);
            return rc;
        }
        if (json_object_size(v))
            json_object_set_new(hv, inv->hosts[h].name, v);
        else
            json_decref(v);
    }
    json_object_set_new(meta, "hostvars", hv);
    json_object_set_new(doc, "_meta", meta);
    *out = doc;
    return 0;
}

static void graph_group(const struct cf_inventory *inv, size_t g, int depth, struct cf_buf *b)
{
    const struct group *gr = &inv->groups[g];
    if (b->len)
        cf_buf_puts(b, "\n");
    for (int i = 0; i < depth; i++)
        cf_buf_puts(b, "  |");
    cf_buf_printf(b, "%s@%s:", depth ? "--" : "", gr->name);
    for (size_t i = 0; i < gr->kids.n; i++)
        graph_group(inv, gr->kids.v[i], depth + 1, b);
    if (g == G_ALL)
        return;
    for (size_t i = 0; i < gr->hosts.n; i++) {
        cf_buf_puts(b, "\n");
        for (int k = 0; k < depth + 1; k++)
            cf_buf_puts(b, "  |");
        cf_buf_printf(b, "--%s", inv->hosts[gr->hosts.v[i]].name);
    }
}

int cf_inventory_graph(const struct cf_inventory *inv, const char *group, char **out, char *err)
{
    size_t g = G_ALL;
    *out = NULL;
    if (group && !find_idx(inv->gidx, group, &g)) {
        cf_errf(err, "'%s' is not a group of the inventory: --graph takes a group name", group);
        return CF_ENOENT;
    }
    struct cf_buf b = CF_BUF_INIT;
    graph_group(inv, g, 0, &b);
    *out = cf_buf_detach(&b, NULL);
    return 0;
}

/* ------------------------------------------------------------------ */
/* Python-compatible JSON text                                         */

static void py_float(struct cf_buf *b, double d)
{
    char buf[64];
    if (d == 0) {
        cf_buf_puts(b, signbit(d) ? "-0.0" : "0.0");
        return;
    }
    int prec;
    for (prec = 1; prec <= 17; prec++) {
        snprintf(buf, sizeof(buf), "%.*e", prec - 1, d);
        if (strtod(buf, NULL) == d)
            break;
    }
    /* buf: [-]D[.DDD]e[+-]XX */
    char digits[32];
    size_t nd = 0;
    const char *p = buf;
    int neg = 0;
    if (*p == '-') {
        neg = 1;
        p++;
    }
    for (; *p && *p != 'e'; p++)
        if (isdigit((unsigned char)*p))
            digits[nd++] = *p;
    while (nd > 1 && digits[nd - 1] == '0')
        nd--;
    digits[nd] = 0;
    int exp = atoi(p + 1);
    if (neg)
        cf_buf_puts(b, "-");
    if (exp >= -4 && exp < 16) {
        if (exp >= 0) {
            for (int i = 0; i <= exp; i++)
                cf_buf_append(b, i < (int)nd ? &digits[i] : "0", 1);
            cf_buf_puts(b, ".");
            if ((int)nd > exp + 1)
                cf_buf_append(b, digits + exp + 1, nd - (size_t)exp - 1);
            else
                cf_buf_puts(b, "0");
        } else {
            cf_buf_puts(b, "0.");
            for (int i = 0; i < -exp - 1; i++)
                cf_buf_puts(b, "0");
            cf_buf_append(b, digits, nd);
        }
    } else {
        cf_buf_append(b, digits, 1);
        if (nd > 1) {
            cf_buf_puts(b, ".");
            cf_buf_append(b, digits + 1, nd - 1);
        }
        cf_buf_printf(b, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
    }
}

static void py_str(struct cf_buf *b, const char *s, size_t n)
{
    cf_buf_puts(b, "\"");
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"':
            cf_buf_puts(b, "\\\"");
            break;
        case '\\':
            cf_buf_puts(b, "\\\\");
            break;
        case '\n':
            cf_buf_puts(b, "\\n");
            break;
        case '\r':
            cf_buf_puts(b, "\\r");
            break;
        case '\t':
            cf_buf_puts(b, "\\t");
            break;
        case '\b':
            cf_buf_puts(b, "\\b");
            break;
        case '\f':
            cf_buf_puts(b, "\\f");
            break;
        default:
            if (c < 0x20)
                cf_buf_printf(b, "\\u%04x", c);
            else
                cf_buf_append(b, &s[i], 1);
        }
    }
    cf_buf_puts(b, "\"");
}

static void py_indent(struct cf_buf *b, int level)
{
    cf_buf_puts(b, "\n");
    for (int i = 0; i < level * 4; i++)
        cf_buf_puts(b, " ");
}

static void py_dump(struct cf_buf *b, const json_t *v, int level)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        size_t n = json_object_size(v), k = 0;
        if (!n) {
            cf_buf_puts(b, "{}");
            return;
        }
        const char **keys = cf_xmalloc(n * sizeof(char *));
        const char *key;
        json_t *val;
        json_object_foreach((json_t *)v, key, val) keys[k++] = key;
        qsort(keys, n, sizeof(char *), cstr_cmp);
        cf_buf_puts(b, "{");
        for (size_t i = 0; i < n; i++) {
            py_indent(b, level + 1);
            py_str(b, keys[i], strlen(keys[i]));
            cf_buf_puts(b, ": ");
            py_dump(b, json_object_get(v, keys[i]), level + 1);
            if (i + 1 < n)
                cf_buf_puts(b, ",");
        }
        py_indent(b, level);
        cf_buf_puts(b, "}");
        free(keys);
        return;
    }
    case JSON_ARRAY: {
        size_t n = json_array_size(v);
        if (!n) {
            cf_buf_puts(b, "[]");
            return;
        }
        cf_buf_puts(b, "[");
        for (size_t i = 0; i < n; i++) {
            py_indent(b, level + 1);
            py_dump(b, json_array_get(v, i), level + 1);
            if (i + 1 < n)
                cf_buf_puts(b, ",");
        }
        py_indent(b, level);
        cf_buf_puts(b, "]");
        return;
    }
    case JSON_STRING:
        py_str(b, json_string_value(v), json_string_length(v));
        return;
    case JSON_INTEGER:
        cf_buf_printf(b, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return;
    case JSON_REAL:
        py_float(b, json_real_value(v));
        return;
    case JSON_TRUE:
        cf_buf_puts(b, "true");
        return;
    case JSON_FALSE:
        cf_buf_puts(b, "false");
        return;
    default:
        cf_buf_puts(b, "null");
        return;
    }
}

char *cf_inventory_dumps(const json_t *v)
{
    struct cf_buf b = CF_BUF_INIT;
    py_dump(&b, v, 0);
    return cf_buf_detach(&b, NULL);
}

/*
 * vars.c - YAML 1.1 loading with PyYAML's typing, extra vars, merging and
 * the position side table (see vars.h).
 */
#include "cf.h"
#include "util.h"
#include "vars.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

/* ------------------------------------------------------------------ */
/* position side table                                                 */

enum pos_kind { POS_VALUE, POS_MEMBER, POS_ITEM };

struct pos_entry {
    const json_t *ptr; /* NULL = empty slot */
    enum pos_kind kind;
    char *key;  /* POS_MEMBER */
    size_t idx; /* POS_ITEM */
    struct cf_pos pos;
};

struct interned {
    struct interned *next;
    char name[];
};

static struct pos_entry *pos_tab;
static size_t pos_cap, pos_used;
static struct interned *interned_files;

static int is_singleton(const json_t *v)
{
    return json_is_true(v) || json_is_false(v) || json_is_null(v);
}

static size_t pos_hash(const json_t *ptr, enum pos_kind kind, const char *key, size_t idx)
{
    uint64_t h = (uint64_t)(uintptr_t)ptr * 0x9E3779B97F4A7C15ULL;
    h ^= (uint64_t)kind * 0xC2B2AE3D27D4EB4FULL;
    if (kind == POS_MEMBER) {
        for (const unsigned char *p = (const unsigned char *)key; *p; p++)
            h = (h ^ *p) * 0x100000001B3ULL;
    } else if (kind == POS_ITEM) {
        h ^= (uint64_t)idx * 0x165667B19E3779F9ULL;
    }
    h ^= h >> 29;
    return (size_t)h;
}

static int pos_match(const struct pos_entry *e, const json_t *ptr, enum pos_kind kind,
                     const char *key, size_t idx)
{
    if (e->ptr != ptr || e->kind != kind)
        return 0;
    if (kind == POS_MEMBER)
        return strcmp(e->key, key) == 0;
    if (kind == POS_ITEM)
        return e->idx == idx;
    return 1;
}

static struct pos_entry *pos_find(const json_t *ptr, enum pos_kind kind, const char *key,
                                  size_t idx)
{
    if (!pos_cap)
        return NULL;
    size_t i = pos_hash(ptr, kind, key, idx) & (pos_cap - 1);
    while (pos_tab[i].ptr) {
        if (pos_match(&pos_tab[i], ptr, kind, key, idx))
            return &pos_tab[i];
        i = (i + 1) & (pos_cap - 1);
    }
    return NULL;
}

static void pos_grow(void)
{
    size_t ncap = pos_cap ? pos_cap * 2 : 1024;
    struct pos_entry *nt = cf_xcalloc(ncap, sizeof(*nt));
    for (size_t j = 0; j < pos_cap; j++) {
        struct pos_entry *e = &pos_tab[j];
        if (!e->ptr)
            continue;
        size_t i = pos_hash(e->ptr, e->kind, e->key, e->idx) & (ncap - 1);
        while (nt[i].ptr)
            i = (i + 1) & (ncap - 1);
        nt[i] = *e;
    }
    free(pos_tab);
    pos_tab = nt;
    pos_cap = ncap;
}

static const char *intern_file(const char *file)
{
    for (struct interned *f = interned_files; f; f = f->next)
        if (strcmp(f->name, file) == 0)
            return f->name;
    size_t n = strlen(file);
    struct interned *f = cf_xmalloc(sizeof(*f) + n + 1);
    memcpy(f->name, file, n + 1);
    f->next = interned_files;
    interned_files = f;
    return f->name;
}

static int pos_set(const json_t *ptr, enum pos_kind kind, const char *key, size_t idx,
                   const char *file, int line, int col)
{
    if (!ptr || !file)
        return CF_EINVAL;
    if (kind == POS_VALUE && is_singleton(ptr))
        return 0; /* shared singletons carry no position of their own */
    struct pos_entry *e = pos_find(ptr, kind, key, idx);
    if (!e) {
        if ((pos_used + 1) * 2 > pos_cap)
            pos_grow();
        size_t i = pos_hash(ptr, kind, key, idx) & (pos_cap - 1);
        while (pos_tab[i].ptr)
            i = (i + 1) & (pos_cap - 1);
        e = &pos_tab[i];
        e->ptr = ptr;
        e->kind = kind;
        e->key = kind == POS_MEMBER ? cf_strdup(key) : NULL;
        e->idx = idx;
        /* Hold a reference so the address cannot be reused by another
         * value while the table still describes it. */
        json_incref((json_t *)ptr);
        pos_used++;
    }
    e->pos.file = intern_file(file);
    e->pos.line = line;
    e->pos.col = col;
    return 0;
}

int cf_vars_set_pos(const json_t *v, const char *file, int line, int col)
{
    return pos_set(v, POS_VALUE, NULL, 0, file, line, col);
}

int cf_vars_set_member_pos(const json_t *obj, const char *key, const struct cf_pos *pos)
{
    if (!pos || !key)
        return CF_EINVAL;
    return pos_set(obj, POS_MEMBER, key, 0, pos->file, pos->line, pos->col);
}

int cf_vars_set_item_pos(const json_t *arr, size_t i, const struct cf_pos *pos)
{
    if (!pos)
        return CF_EINVAL;
    return pos_set(arr, POS_ITEM, NULL, i, pos->file, pos->line, pos->col);
}

int cf_vars_pos(const json_t *v, struct cf_pos *out)
{
    struct pos_entry *e = v ? pos_find(v, POS_VALUE, NULL, 0) : NULL;
    if (!e) {
        if (out)
            memset(out, 0, sizeof(*out));
        return CF_ENOENT;
    }
    if (out)
        *out = e->pos;
    return 0;
}

int cf_vars_member_pos(const json_t *obj, const char *key, struct cf_pos *out)
{
    struct pos_entry *e = obj && key ? pos_find(obj, POS_MEMBER, key, 0) : NULL;
    if (e) {
        if (out)
            *out = e->pos;
        return 0;
    }
    return cf_vars_pos(json_is_object(obj) ? json_object_get(obj, key) : NULL, out);
}

int cf_vars_item_pos(const json_t *arr, size_t i, struct cf_pos *out)
{
    struct pos_entry *e = arr ? pos_find(arr, POS_ITEM, NULL, i) : NULL;
    if (e) {
        if (out)
            *out = e->pos;
        return 0;
    }
    return cf_vars_pos(json_is_array(arr) ? json_array_get(arr, i) : NULL, out);
}

void cf_vars_reset(void)
{
    for (size_t i = 0; i < pos_cap; i++) {
        if (!pos_tab[i].ptr)
            continue;
        free(pos_tab[i].key);
        json_decref((json_t *)pos_tab[i].ptr);
    }
    free(pos_tab);
    pos_tab = NULL;
    pos_cap = pos_used = 0;
    while (interned_files) {
        struct interned *n = interned_files->next;
        free(interned_files);
        interned_files = n;
    }
}

int cf_pos_errf(char *err, const struct cf_pos *pos, const char *fmt, ...)
{
    if (!err)
        return CF_EINVAL;
    size_t off = 0;
    if (pos && pos->file) {
        int n = snprintf(err, CF_ERRLEN, "%s:%d:%d: ", pos->file, pos->line, pos->col);
        off = n > 0 && n < CF_ERRLEN ? (size_t)n : 0;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err + off, CF_ERRLEN - off, fmt, ap);
    va_end(ap);
    return CF_EINVAL;
}

const char *cf_vars_type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "dict";
    case JSON_ARRAY:
        return "list";
    case JSON_STRING:
        return "str";
    case JSON_INTEGER:
        return "int";
    case JSON_REAL:
        return "float";
    case JSON_TRUE:
    case JSON_FALSE:
        return "bool";
    default:
        return "NoneType";
    }
}

/* ------------------------------------------------------------------ */
/* PyYAML (YAML 1.1) implicit scalar resolution                        */

static int all_in(const char *s, size_t n, const char *set)
{
    for (size_t i = 0; i < n; i++)
        if (!strchr(set, s[i]))
            return 0;
    return 1;
}

static int match_bool(const char *s, int *val)
{
    static const char *const t[] = {"yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"};
    static const char *const f[] = {"no",    "No",  "NO",  "false", "False",
                                    "FALSE", "off", "Off", "OFF"};
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        if (strcmp(s, t[i]) == 0) {
            *val = 1;
            return 1;
        }
        if (strcmp(s, f[i]) == 0) {
            *val = 0;
            return 1;
        }
    }
    return 0;
}

static int match_null(const char *s)
{
    return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL");
}

/* ":[0-5]?[0-9]" repeated at least once, starting at p; returns the end. */
static const char *sexa_tail(const char *p)
{
    int n = 0;
    while (*p == ':') {
        const char *q = p + 1;
        if (q[0] >= '0' && q[0] <= '5' && isdigit((unsigned char)q[1]))
            q += 2;
        else if (isdigit((unsigned char)q[0]))
            q += 1;
        else
            return NULL;
        p = q;
        n++;
    }
    return n ? p : NULL;
}

/* PyYAML's int regex. */
static int match_int(const char *s)
{
    const char *p = s;
    if (*p == '-' || *p == '+')
        p++;
    size_t n = strlen(p);
    if (n == 0)
        return 0;
    if (p[0] == '0' && p[1] == 'b')
        return n > 2 && all_in(p + 2, n - 2, "01_");
    if (p[0] == '0' && p[1] == 'x')
        return n > 2 && all_in(p + 2, n - 2, "0123456789abcdefABCDEF_");
    if (p[0] == '0')
        return n == 1 || all_in(p + 1, n - 1, "01234567_");
    if (p[0] >= '1' && p[0] <= '9') {
        const char *q = p + 1;
        while (isdigit((unsigned char)*q) || *q == '_')
            q++;
        if (!*q)
            return 1;
        const char *e = sexa_tail(q);
        return e && !*e;
    }
    return 0;
}

/* PyYAML's float regex (note: an exponent needs a sign, "1e3" is a str). */
static int match_float(const char *s)
{
    const char *p = s;
    int signed_ = (*p == '-' || *p == '+');
    if (signed_)
        p++;
    if (!strcmp(p, ".inf") || !strcmp(p, ".Inf") || !strcmp(p, ".INF"))
        return 1;
    if (!signed_ && (!strcmp(p, ".nan") || !strcmp(p, ".NaN") || !strcmp(p, ".NAN")))
        return 1;
    const char *q = p;
    if (isdigit((unsigned char)*q)) {
        q++;
        while (isdigit((unsigned char)*q) || *q == '_')
            q++;
        if (*q == ':') {
            q = sexa_tail(q);
            if (!q || *q != '.')
                return 0;
            q++;
            while (isdigit((unsigned char)*q) || *q == '_')
                q++;
            return !*q;
        }
        if (*q != '.')
            return 0;
        q++;
        while (isdigit((unsigned char)*q) || *q == '_')
            q++;
    } else if (*q == '.' && !signed_ && isdigit((unsigned char)q[1])) {
        q += 2;
        while (isdigit((unsigned char)*q) || *q == '_')
            q++;
    } else {
        return 0;
    }
    if (*q == 'e' || *q == 'E') {
        q++;
        if (*q != '-' && *q != '+')
            return 0;
        q++;
        if (!isdigit((unsigned char)*q))
            return 0;
        while (isdigit((unsigned char)*q))
            q++;
    }
    return !*q;
}

/* YYYY-MM-DD (PyYAML's date form); out gets the zero-padded ISO text. */
static int match_date(const char *s, char out[11])
{
    const char *p = s;
    for (int i = 0; i < 4; i++)
        if (!isdigit((unsigned char)p[i]))
            return 0;
    if (p[4] != '-')
        return 0;
    p += 5;
    int m = 0, d = 0, k = 0;
    while (isdigit((unsigned char)*p) && k < 2)
        m = m * 10 + (*p++ - '0'), k++;
    if (k != 2 || *p != '-')
        return 0;
    p++;
    k = 0;
    while (isdigit((unsigned char)*p) && k < 2)
        d = d * 10 + (*p++ - '0'), k++;
    if (k != 2 || *p)
        return 0;
    if (m < 1 || m > 12 || d < 1 || d > 31)
        return 0;
    snprintf(out, 11, "%.4s-%02d-%02d", s, m, d);
    return 1;
}

static char *strip_underscores(const char *s)
{
    char *o = cf_xmalloc(strlen(s) + 1), *w = o;
    for (; *s; s++)
        if (*s != '_')
            *w++ = *s;
    *w = 0;
    return o;
}

/* PyYAML construct_yaml_int. Returns NULL when the value does not fit in
 * a json_int_t (the caller keeps the text). */
static json_t *construct_int(const char *text)
{
    char *v = strip_underscores(text);
    const char *p = v;
    int neg = 0;
    json_t *r = NULL;
    if (*p == '-' || *p == '+')
        neg = *p++ == '-';
    errno = 0;
    long long n = 0;
    char *end = NULL;
    if (!strcmp(p, "0")) {
        n = 0;
        end = (char *)p + 1;
    } else if (p[0] == '0' && p[1] == 'b') {
        n = strtoll(p + 2, &end, 2);
    } else if (p[0] == '0' && p[1] == 'x') {
        n = strtoll(p + 2, &end, 16);
    } else if (p[0] == '0') {
        n = strtoll(p + 1, &end, 8);
    } else if (strchr(p, ':')) {
        n = 0;
        const char *q = p;
        while (*q) {
            long long part = strtoll(q, &end, 10);
            if (n > (LLONG_MAX - part) / 60) {
                errno = ERANGE;
                break;
            }
            n = n * 60 + part;
            q = *end == ':' ? end + 1 : end;
        }
        end = (char *)q;
    } else {
        n = strtoll(p, &end, 10);
    }
    if (errno == 0 && end && !*end)
        r = json_integer(neg ? -n : n);
    free(v);
    return r;
}

static json_t *construct_float(const char *text)
{
    char *v = strip_underscores(text);
    for (char *p = v; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    const char *p = v;
    double sign = 1;
    if (*p == '-' || *p == '+')
        sign = *p++ == '-' ? -1 : 1;
    double d;
    if (!strcmp(p, ".inf") || !strcmp(p, ".nan")) {
        free(v);
        return NULL; /* JSON has no inf/nan: keep the text */
    } else if (strchr(p, ':')) {
        d = 0;
        const char *q = p;
        char *end;
        for (;;) {
            double part = strtod(q, &end);
            d = d * 60 + part;
            if (*end != ':')
                break;
            q = end + 1;
        }
    } else {
        d = strtod(p, NULL);
    }
    free(v);
    return json_real(sign * d);
}

/* The typed value of a plain (unquoted, untagged) scalar. */
static json_t *resolve_plain(const char *s)
{
    int b;
    char date[11];
    json_t *r = NULL;
    if (match_null(s))
        return json_null();
    if (match_bool(s, &b))
        return json_boolean(b);
    if (strchr("-+0123456789.", *s)) {
        if (match_float(s))
            r = construct_float(s);
        else if (match_int(s))
            r = construct_int(s);
        else if (match_date(s, date))
            r = json_string(date);
    }
    return r ? r : json_string(s);
}

/* ------------------------------------------------------------------ */
/* YAML loader (libyaml events -> jansson)                             */

#define YAML_MAX_DEPTH 256

/* What a document may weigh with every alias expanded: each node counts
 * 16 and a scalar its length besides.  Aliases are shared here, but
 * `inventory --list` prints them expanded, and a 600-byte alias bomb
 * expands to gigabytes; real inventories stay far below. */
#define YAML_MAX_WEIGHT  ((size_t)64 << 20)
#define YAML_NODE_WEIGHT 16

struct anchor {
    struct anchor *next;
    char *name;
    json_t *value;
    size_t weight; /* of the value expanded */
    struct cf_pos pos;
};

struct loader {
    yaml_parser_t parser;
    const char *file;
    struct anchor *anchors;
    size_t weight; /* of the document so far, aliases expanded */
    char *err;
};

static int yaml_err(struct loader *ld, const yaml_mark_t *m, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int yaml_err(struct loader *ld, const yaml_mark_t *m, const char *fmt, ...)
{
    char msg[CF_ERRLEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return cf_errf(ld->err, "%s:%zu:%zu: %s", ld->file, m->line + 1, m->column + 1, msg);
}

static int next_event(struct loader *ld, yaml_event_t *ev)
{
    if (yaml_parser_parse(&ld->parser, ev))
        return 0;
    yaml_parser_t *p = &ld->parser;
    const char *problem = p->problem ? p->problem : "invalid yaml";
    if (p->error == YAML_READER_ERROR)
        return cf_errf(ld->err, "%s: byte %zu: %s", ld->file, p->problem_offset, problem);
    if (p->context)
        return cf_errf(ld->err, "%s:%zu:%zu: %s %s (line %zu, column %zu)", ld->file,
                       p->problem_mark.line + 1, p->problem_mark.column + 1, problem, p->context,
                       p->context_mark.line + 1, p->context_mark.column + 1);
    return cf_errf(ld->err, "%s:%zu:%zu: %s", ld->file, p->problem_mark.line + 1,
                   p->problem_mark.column + 1, problem);
}

static struct cf_pos mark_pos(struct loader *ld, const yaml_mark_t *m)
{
    struct cf_pos p = {ld->file, (int)m->line + 1, (int)m->column + 1};
    return p;
}

static void set_anchor(struct loader *ld, const char *name, json_t *v, size_t weight,
                       struct cf_pos pos)
{
    struct anchor *a = cf_xcalloc(1, sizeof(*a));
    a->weight = weight;
    a->name = cf_strdup(name);
    a->value = json_incref(v);
    a->pos = pos;
    a->next = ld->anchors; /* newest first: a redefined anchor wins */
    ld->anchors = a;
}

static int scalar_value(struct loader *ld, yaml_event_t *ev, json_t **out)
{
    const char *text = (const char *)ev->data.scalar.value;
    const char *tag = (const char *)ev->data.scalar.tag;
    *out = NULL;
    if (tag && strcmp(tag, "!") != 0) {
        if (!strcmp(tag, "tag:yaml.org,2002:str") || !strcmp(tag, "!unsafe") ||
            !strcmp(tag, "!vault") || !strcmp(tag, "!vault-encrypted")) {
            *out = json_string(text);
        } else if (!strcmp(tag, "tag:yaml.org,2002:int")) {
            *out = match_int(text) ? construct_int(text) : NULL;
        } else if (!strcmp(tag, "tag:yaml.org,2002:float")) {
            *out = match_float(text) || match_int(text) ? construct_float(text) : NULL;
        } else if (!strcmp(tag, "tag:yaml.org,2002:bool")) {
            int b;
            *out = match_bool(text, &b) ? json_boolean(b) : NULL;
        } else if (!strcmp(tag, "tag:yaml.org,2002:null")) {
            *out = json_null();
        } else {
            return yaml_err(ld, &ev->start_mark,
                            "could not determine a constructor for the tag '%s'", tag);
        }
        if (!*out)
            return yaml_err(ld, &ev->start_mark, "invalid value '%s' for the tag '%s'", text, tag);
        return 0;
    }
    if (ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && !tag)
        *out = resolve_plain(text);
    else
        *out = json_string(text);
    return *out ? 0 : CF_ENOMEM;
}

/* A mapping key as the string json.dumps would write for the Python key. */
static char *key_text(const json_t *k)
{
    switch (json_typeof(k)) {
    case JSON_STRING:
        return cf_strdup(json_string_value(k));
    case JSON_INTEGER:
        return cf_asprintf("%" JSON_INTEGER_FORMAT, json_integer_value(k));
    case JSON_REAL:
        return cf_asprintf("%.17g", json_real_value(k));
    case JSON_TRUE:
        return cf_strdup("true");
    case JSON_FALSE:
        return cf_strdup("false");
    case JSON_NULL:
        return cf_strdup("null");
    default:
        return NULL;
    }
}

static int parse_node(struct loader *ld, yaml_event_t *ev, json_t **out, struct cf_pos *where,
                      int depth);

/* Copy the members of a merged mapping into dst, keeping dst's existing
 * keys only when keep is set (own keys beat merged ones). */
static void merge_into(json_t *dst, json_t *src, int keep)
{
    const char *k;
    json_t *v;
    json_object_foreach(src, k, v)
    {
        if (keep && json_object_get(dst, k))
            continue;
        json_object_set(dst, k, v);
        struct cf_pos p;
        if (cf_vars_member_pos(src, k, &p) == 0)
            cf_vars_set_member_pos(dst, k, &p);
    }
}

static int parse_mapping(struct loader *ld, json_t *obj, int depth)
{
    json_t *merges = json_array(); /* PyYAML order: applied first, own keys win */
    int rc = 0;
    for (;;) {
        yaml_event_t kev;
        if ((rc = next_event(ld, &kev)) != 0)
            break;
        if (kev.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete(&kev);
            break;
        }
        int is_merge = kev.type == YAML_SCALAR_EVENT &&
                       kev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
                       (!kev.data.scalar.tag ||
                        !strcmp((char *)kev.data.scalar.tag, "tag:yaml.org,2002:merge")) &&
                       !strcmp((char *)kev.data.scalar.value, "<<");
        yaml_mark_t kmark = kev.start_mark;
        json_t *kval = NULL;
        struct cf_pos kpos;
        if (!is_merge) {
            if (kev.type == YAML_MAPPING_START_EVENT || kev.type == YAML_SEQUENCE_START_EVENT) {
                rc = yaml_err(ld, &kmark, "found unhashable key (a mapping or a list)");
                yaml_event_delete(&kev);
                break;
            }
            rc = parse_node(ld, &kev, &kval, &kpos, depth + 1);
            yaml_event_delete(&kev);
            if (rc)
                break;
        } else {
            yaml_event_delete(&kev);
        }
        yaml_event_t vev;
        if ((rc = next_event(ld, &vev)) != 0) {
            json_decref(kval);
            break;
        }
        json_t *val = NULL;
        struct cf_pos vpos;
        rc = parse_node(ld, &vev, &val, &vpos, depth + 1);
        yaml_mark_t vmark = vev.start_mark;
        yaml_event_delete(&vev);
        if (rc) {
            json_decref(kval);
            break;
        }
        if (is_merge) {
            if (json_is_object(val)) {
                json_array_append(merges, val);
            } else if (json_is_array(val)) {
                size_t i;
                json_t *m;
                json_array_foreach(val, i, m)
                {
                    if (!json_is_object(m)) {
                        rc = yaml_err(ld, &vmark, "expected a mapping for merging, but found %s",
                                      cf_vars_type_name(m));
                        break;
                    }
                }
                /* PyYAML: earlier entries in the list win over later ones */
                for (i = json_array_size(val); rc == 0 && i > 0; i--)
                    json_array_append(merges, json_array_get(val, i - 1));
            } else {
                rc = yaml_err(ld, &vmark,
                              "expected a mapping or list of mappings for merging, "
                              "but found %s",
                              cf_vars_type_name(val));
            }
            json_decref(val);
            if (rc)
                break;
            continue;
        }
        char *k = key_text(kval);
        json_decref(kval);
        if (!k) {
            json_decref(val);
            rc = yaml_err(ld, &kmark, "found unhashable key");
            break;
        }
        struct cf_pos first;
        if (json_object_get(obj, k) && cf_vars_member_pos(obj, k, &first) == 0)
            cf_log(0,
                   "warning: %s:%zu:%zu: duplicate key '%s' (first at line %d): the last "
                   "value is used",
                   ld->file, kmark.line + 1, kmark.column + 1, k, first.line);
        json_object_set_new(obj, k, val);
        cf_vars_set_member_pos(obj, k, &vpos);
        free(k);
    }
    if (rc == 0 && json_array_size(merges)) {
        /* Merged keys come before own keys (dict order), own keys win. */
        const char *k;
        json_t *v;
        json_t *tmp = json_object();
        json_object_foreach(obj, k, v)
        {
            struct cf_pos p;
            if (cf_vars_member_pos(obj, k, &p) == 0)
                cf_vars_set_member_pos(tmp, k, &p);
            json_object_set(tmp, k, v);
        }
        json_object_clear(obj);
        size_t i;
        json_t *m;
        json_array_foreach(merges, i, m) merge_into(obj, m, 0);
        merge_into(obj, tmp, 0);
        json_decref(tmp);
    }
    json_decref(merges);
    return rc;
}

static int parse_node(struct loader *ld, yaml_event_t *ev, json_t **out, struct cf_pos *where,
                      int depth)
{
    int rc = 0;
    json_t *v = NULL;
    const char *anchor = NULL;
    size_t weight_before = ld->weight;
    *out = NULL;
    *where = mark_pos(ld, &ev->start_mark);
    if (depth > YAML_MAX_DEPTH)
        return yaml_err(ld, &ev->start_mark, "nesting deeper than %d levels", YAML_MAX_DEPTH);
    ld->weight += YAML_NODE_WEIGHT;
    if (ev->type == YAML_SCALAR_EVENT)
        ld->weight += ev->data.scalar.length;
    switch (ev->type) {
    case YAML_ALIAS_EVENT: {
        const char *name = (const char *)ev->data.alias.anchor;
        for (struct anchor *a = ld->anchors; a; a = a->next) {
            if (strcmp(a->name, name) == 0) {
                ld->weight += a->weight;
                if (ld->weight > YAML_MAX_WEIGHT)
                    return yaml_err(ld, &ev->start_mark,
                                    "aliases expand the document beyond %zu MiB (alias '%s'; "
                                    "an alias bomb?)",
                                    YAML_MAX_WEIGHT >> 20, name);
                *out = json_incref(a->value);
                return 0;
            }
        }
        return yaml_err(ld, &ev->start_mark, "found undefined alias '%s'", name);
    }
    case YAML_SCALAR_EVENT:
        anchor = (const char *)ev->data.scalar.anchor;
        rc = scalar_value(ld, ev, &v);
        break;
    case YAML_SEQUENCE_START_EVENT:
        anchor = (const char *)ev->data.sequence_start.anchor;
        v = json_array();
        for (;;) {
            yaml_event_t iev;
            if ((rc = next_event(ld, &iev)) != 0)
                break;
            if (iev.type == YAML_SEQUENCE_END_EVENT) {
                yaml_event_delete(&iev);
                break;
            }
            json_t *item;
            struct cf_pos ipos;
            rc = parse_node(ld, &iev, &item, &ipos, depth + 1);
            yaml_event_delete(&iev);
            if (rc)
                break;
            json_array_append_new(v, item);
            cf_vars_set_item_pos(v, json_array_size(v) - 1, &ipos);
        }
        break;
    case YAML_MAPPING_START_EVENT:
        anchor = (const char *)ev->data.mapping_start.anchor;
        v = json_object();
        rc = parse_mapping(ld, v, depth);
        break;
    default:
        return yaml_err(ld, &ev->start_mark, "unexpected yaml event");
    }
    if (rc) {
        json_decref(v);
        return rc;
    }
    if (!v)
        return CF_ENOMEM;
    cf_vars_set_pos(v, where->file, where->line, where->col);
    if (anchor)
        set_anchor(ld, anchor, v, ld->weight - weight_before, *where);
    *out = v;
    return 0;
}

static int load_stream(struct loader *ld, json_t **out)
{
    yaml_event_t ev;
    json_t *doc = NULL;
    int rc;
    int ndocs = 0;
    *out = NULL;
    for (;;) {
        if ((rc = next_event(ld, &ev)) != 0)
            goto out;
        yaml_event_type_t t = ev.type;
        if (t == YAML_STREAM_END_EVENT) {
            yaml_event_delete(&ev);
            break;
        }
        if (t == YAML_DOCUMENT_START_EVENT) {
            if (++ndocs > 1) {
                rc = yaml_err(ld, &ev.start_mark,
                              "expected a single document in the stream but found another "
                              "document");
                yaml_event_delete(&ev);
                goto out;
            }
        } else if (t != YAML_STREAM_START_EVENT && t != YAML_DOCUMENT_END_EVENT) {
            struct cf_pos p;
            rc = parse_node(ld, &ev, &doc, &p, 0);
            yaml_event_delete(&ev);
            if (rc)
                goto out;
            continue;
        }
        yaml_event_delete(&ev);
    }
    *out = doc ? doc : json_null();
    doc = NULL;
out:
    json_decref(doc);
    while (ld->anchors) {
        struct anchor *a = ld->anchors;
        ld->anchors = a->next;
        free(a->name);
        json_decref(a->value);
        free(a);
    }
    return rc;
}

int cf_yaml_load_string(const char *name, const char *text, json_t **out, char *err)
{
    struct loader ld = {.file = intern_file(name ? name : "<string>"), .err = err};
    *out = NULL;
    if (!yaml_parser_initialize(&ld.parser))
        return CF_ENOMEM;
    yaml_parser_set_input_string(&ld.parser, (const unsigned char *)text, strlen(text));
    int rc = load_stream(&ld, out);
    yaml_parser_delete(&ld.parser);
    return rc;
}

int cf_yaml_load_file(const char *path, json_t **out, char *err)
{
    char *text = NULL;
    size_t len;
    *out = NULL;
    int rc = cf_read_text_file(path, "YAML file", &text, &len, err);
    if (rc)
        return rc;
    rc = cf_yaml_load_string(path, text, out, err);
    free(text);
    return rc;
}

/* ------------------------------------------------------------------ */
/* extra vars                                                          */

/* Ansible's _decode_escapes: python unicode_escape for the common forms. */
static char *decode_escapes(const char *s)
{
    struct cf_buf b = CF_BUF_INIT;
    cf_buf_puts(&b, "");
    for (const char *p = s; *p; p++) {
        if (*p != '\\' || !p[1]) {
            cf_buf_append(&b, p, 1);
            continue;
        }
        char c = p[1], o = 0;
        switch (c) {
        case '\\':
            o = '\\';
            break;
        case '\'':
            o = '\'';
            break;
        case '"':
            o = '"';
            break;
        case 'a':
            o = '\a';
            break;
        case 'b':
            o = '\b';
            break;
        case 'f':
            o = '\f';
            break;
        case 'n':
            o = '\n';
            break;
        case 'r':
            o = '\r';
            break;
        case 't':
            o = '\t';
            break;
        case 'v':
            o = '\v';
            break;
        default:
            break;
        }
        if (o) {
            cf_buf_append(&b, &o, 1);
            p++;
        } else {
            cf_buf_append(&b, p, 1); /* unknown escapes stay as they are */
        }
    }
    return cf_buf_detach(&b, NULL);
}

/* Split on whitespace outside quotes; quotes are kept in the tokens (as
 * Ansible's split_args does). Returns CF_EINVAL on an unclosed quote. */
static int split_args(const char *s, json_t *tokens)
{
    const char *p = s;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
            p++;
        if (!*p)
            break;
        const char *start = p;
        char q = 0;
        while (*p && (q || !(*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))) {
            if (*p == '\\' && p[1]) {
                p += 2;
                continue;
            }
            if (q && *p == q)
                q = 0;
            else if (!q && (*p == '"' || *p == '\''))
                q = *p;
            p++;
        }
        if (q)
            return CF_EINVAL;
        json_array_append_new(tokens, json_stringn(start, (size_t)(p - start)));
    }
    return 0;
}

static char *strip_ws(const char *s, size_t n)
{
    while (n && isspace((unsigned char)*s))
        s++, n--;
    while (n && isspace((unsigned char)s[n - 1]))
        n--;
    char *o = cf_xmalloc(n + 1);
    memcpy(o, s, n);
    o[n] = 0;
    return o;
}

static int parse_kv(const char *arg, json_t *obj, char *err)
{
    json_t *tokens = json_array();
    struct cf_buf raw = CF_BUF_INIT;
    size_t i;
    json_t *t;
    int rc = split_args(arg, tokens);
    if (rc) {
        cf_errf(err, "extra vars '%s': no closing quotation, quote the whole value", arg);
        goto out;
    }
    json_array_foreach(tokens, i, t)
    {
        const char *orig = json_string_value(t);
        char *x = decode_escapes(orig);
        size_t pos = 0;
        int found = 0, escaped = 0;
        for (size_t j = 1; x[0] && x[j]; j++) {
            if (x[j] == '=') {
                if (x[j - 1] != '\\') {
                    pos = j;
                    found = 1;
                    break;
                }
                escaped = 1;
            }
        }
        if (!found) {
            if (raw.len)
                cf_buf_puts(&raw, " ");
            if (escaped) {
                for (const char *c = x; *c; c++)
                    if (!(c[0] == '\\' && c[1] == '='))
                        cf_buf_append(&raw, c, 1);
            } else {
                cf_buf_puts(&raw, orig);
            }
            free(x);
            continue;
        }
        char *k = strip_ws(x, pos);
        char *v = strip_ws(x + pos + 1, strlen(x + pos + 1));
        size_t vl = strlen(v);
        if (vl >= 2 && (v[0] == '"' || v[0] == '\'') && v[vl - 1] == v[0]) {
            memmove(v, v + 1, vl - 2);
            v[vl - 2] = 0;
        }
        json_object_set_new(obj, k, json_string(v));
        free(k);
        free(v);
        free(x);
    }
    if (raw.len)
        json_object_set_new(obj, "_raw_params", json_string(raw.data));
out:
    cf_buf_release(&raw);
    json_decref(tokens);
    return rc;
}

int cf_extra_vars_parse(const char *arg, json_t **out, char *err)
{
    json_t *data = NULL;
    int rc;
    *out = NULL;
    if (!arg || !*arg) {
        *out = json_object();
        return 0;
    }
    if (arg[0] == '@') {
        if ((rc = cf_yaml_load_file(arg + 1, &data, err)) != 0) {
            if (rc == CF_ENOENT)
                cf_errf(err, "extra vars file '%s' does not exist", arg + 1);
            return rc;
        }
    } else if (arg[0] == '/' || arg[0] == '.') {
        return cf_errf(err, "extra vars '%s': prepend a file name with '@'", arg);
    } else if (arg[0] == '[' || arg[0] == '{') {
        if ((rc = cf_yaml_load_string("<extra vars>", arg, &data, err)) != 0)
            return rc;
    } else if (!strchr(arg, '=')) {
        if ((rc = cf_yaml_load_string("<extra vars>", arg, &data, err)) != 0)
            return rc;
    } else {
        data = json_object();
        if ((rc = parse_kv(arg, data, err)) != 0) {
            json_decref(data);
            return rc;
        }
    }
    if (!json_is_object(data)) {
        json_decref(data);
        return cf_errf(err, "extra vars '%s' could not be made into a mapping", arg);
    }
    *out = data;
    return 0;
}

int cf_vars_merge(json_t *dst, const json_t *src)
{
    if (!json_is_object(dst) || !json_is_object(src))
        return CF_EINVAL;
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)src, k, v)
    {
        if (json_object_set(dst, k, v))
            return CF_ENOMEM;
        struct cf_pos p;
        if (cf_vars_member_pos(src, k, &p) == 0)
            cf_vars_set_member_pos(dst, k, &p);
    }
    return 0;
}

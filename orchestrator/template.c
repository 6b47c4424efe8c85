/*
 * template.c - a small Jinja2 subset for the role's templates and task
 * arguments (see template.h).
 *
 * Text is scanned into pieces (text, {{ }}, {% %}), the pieces are built
 * into a tree, and the tree is rendered against the variables.  Expressions
 * are parsed into a tiny AST so `and`/`or`/`default` can short-circuit:
 * `x is defined and x | bool` must not fail when x is undefined.
 */
#include "template.h"
#include "cf.h"
#include "util.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- values */

/* An evaluated value: j (owned reference) or, when undefined, undef names
 * what was undefined ("item.cert_name"). */
struct val {
    json_t *j;
    char *undef;
    char *via; /* undefined inside the value of this variable */
};

static void val_release(struct val *v)
{
    json_decref(v->j);
    free(v->undef);
    free(v->via);
    v->j = NULL;
    v->undef = NULL;
    v->via = NULL;
}

struct scope {
    const char *name;
    json_t *val; /* borrowed */
    struct scope *up;
};

/* What one top-level render may spend, shared by its nested renders: a
 * value that refers to itself many times, or loops inside loops, must end
 * with an error instead of exhausting memory or time. */
struct budget {
    size_t bytes;        /* text produced, intermediate strings included */
    unsigned long steps; /* evaluations, loop iterations, values printed */
};

struct ctx {
    const char *file;
    int line;
    int fixed_line; /* nested render: keep the outer position */
    const json_t *vars;
    struct scope *locals;
    int depth;
    int nest;  /* eval() recursion, nested renders included */
    int block; /* {% if %}/{% for %} nesting while building */
    struct budget *budget;
    const char *via; /* the variable whose value is being rendered */
    char *err;
};

static int ctx_err(struct ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int ctx_err(struct ctx *c, const char *fmt, ...)
{
    char msg[CF_ERRLEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (c->via)
        return cf_errf(c->err, "%s:%d: %s (in the value of '%s')", c->file, c->line, msg, c->via);
    return cf_errf(c->err, "%s:%d: %s", c->file, c->line, msg);
}

/* Say which variable is undefined, and whose value referred to it. */
/* Count a step against the budget; an error once it is spent. */
static int spend(struct ctx *c, size_t bytes)
{
    struct budget *bu = c->budget;
    bu->bytes += bytes;
    if (++bu->steps > CF_TEMPLATE_MAX_STEPS)
        return ctx_err(c,
                       "the template takes more than %lu steps (loops inside loops, or a "
                       "variable used many times inside itself?)",
                       (unsigned long)CF_TEMPLATE_MAX_STEPS);
    if (bu->bytes > CF_TEMPLATE_MAX_OUTPUT)
        return ctx_err(c, "the template expands to more than %u MiB",
                       (unsigned)(CF_TEMPLATE_MAX_OUTPUT >> 20));
    return 0;
}

static int undef_err(struct ctx *c, const struct val *v)
{
    if (v->via)
        return ctx_err(c, "undefined variable '%s' (in the value of '%s')", v->undef, v->via);
    return ctx_err(c, "undefined variable '%s'", v->undef);
}

/* ----------------------------------------------------------- expressions */

enum ek {
    E_LIT,
    E_VAR,
    E_ATTR,
    E_INDEX,
    E_FILTER,
    E_TEST,
    E_NOT,
    E_NEG,
    E_AND,
    E_OR,
    E_CMP,
    E_IN,
    E_CONCAT,
    E_ADD,
    E_SUB,
    E_COND,
    E_LIST,
};

struct expr {
    enum ek k;
    json_t *lit;
    char *name; /* VAR, ATTR, FILTER, TEST name; CMP operator */
    struct expr *a, *b, *c;
    struct expr **args;
    size_t nargs;
    int neg; /* `is not`, `not in` */
};

static void expr_free(struct expr *e)
{
    if (!e)
        return;
    json_decref(e->lit);
    free(e->name);
    expr_free(e->a);
    expr_free(e->b);
    expr_free(e->c);
    for (size_t i = 0; i < e->nargs; i++)
        expr_free(e->args[i]);
    free(e->args);
    free(e);
}

static struct expr *expr_new(enum ek k)
{
    struct expr *e = cf_xcalloc(1, sizeof *e);
    e->k = k;
    return e;
}

static void expr_push_arg(struct expr *e, struct expr *a)
{
    e->args = cf_xrealloc(e->args, (e->nargs + 1) * sizeof *e->args);
    e->args[e->nargs++] = a;
}

/* A readable name for an expression, for messages ("item.webroot"). */
static void expr_name_buf(const struct expr *e, struct cf_buf *b)
{
    switch (e->k) {
    case E_VAR:
        cf_buf_puts(b, e->name);
        break;
    case E_ATTR:
        expr_name_buf(e->a, b);
        cf_buf_printf(b, ".%s", e->name);
        break;
    case E_INDEX:
        expr_name_buf(e->a, b);
        if (e->b->k == E_LIT && json_is_string(e->b->lit))
            cf_buf_printf(b, "['%s']", json_string_value(e->b->lit));
        else if (e->b->k == E_LIT && json_is_integer(e->b->lit))
            cf_buf_printf(b, "[%lld]", (long long)json_integer_value(e->b->lit));
        else
            cf_buf_puts(b, "[...]");
        break;
    case E_FILTER:
        expr_name_buf(e->a, b);
        cf_buf_printf(b, " | %s", e->name);
        break;
    default:
        cf_buf_puts(b, "expression");
        break;
    }
}

static char *expr_name(const struct expr *e)
{
    struct cf_buf b = CF_BUF_INIT;
    expr_name_buf(e, &b);
    return cf_buf_detach(&b, NULL);
}

/* ---- lexer */

enum tk { TK_END, TK_NAME, TK_STR, TK_INT, TK_FLOAT, TK_OP };

struct lexer {
    const char *p;
    enum tk k;
    char *s; /* NAME, STR */
    long long i;
    double f;
    char op[3];
    struct ctx *c;
    const char *src; /* whole expression, for messages */
    int failed;
    int nest;    /* parser recursion */
    size_t ntok; /* tokens read */
};

static int lex_fail(struct lexer *L, const char *what)
{
    if (!L->failed) {
        /* the message quotes the expression; a long one is cut */
        int n = (int)strlen(L->src);
        ctx_err(L->c, "cannot parse expression '%.*s%s': %s", n > 200 ? 200 : n, L->src,
                n > 200 ? "..." : "", what);
    }
    L->failed = 1;
    /* no token stays current: a parser that looks at it once more sees
     * the end, never a stale operator or a freed name */
    free(L->s);
    L->s = NULL;
    L->k = TK_END;
    L->p = "";
    return CF_EINVAL;
}

static int lex_next(struct lexer *L)
{
    free(L->s);
    L->s = NULL;
    if (L->failed) {
        L->k = TK_END;
        return CF_EINVAL;
    }
    if (++L->ntok > CF_TEMPLATE_MAX_TOKENS)
        return lex_fail(L, "expression too long");
    while (*L->p && isspace((unsigned char)*L->p))
        L->p++;
    const char *p = L->p;
    if (!*p) {
        L->k = TK_END;
        return 0;
    }
    if (isalpha((unsigned char)*p) || *p == '_') {
        const char *q = p;
        while (isalnum((unsigned char)*q) || *q == '_')
            q++;
        L->s = cf_xmalloc((size_t)(q - p) + 1);
        memcpy(L->s, p, (size_t)(q - p));
        L->s[q - p] = 0;
        L->k = TK_NAME;
        L->p = q;
        return 0;
    }
    if (isdigit((unsigned char)*p)) {
        char *end;
        const char *q = p;
        while (isdigit((unsigned char)*q))
            q++;
        if (*q == '.' && isdigit((unsigned char)q[1])) {
            L->f = strtod(p, &end);
            L->k = TK_FLOAT;
        } else {
            L->i = strtoll(p, &end, 10);
            L->k = TK_INT;
        }
        L->p = end;
        return 0;
    }
    if (*p == '\'' || *p == '"') {
        char quote = *p++;
        struct cf_buf b = CF_BUF_INIT;
        while (*p && *p != quote) {
            if (*p == '\\' && p[1]) {
                p++;
                char ch = *p == 'n' ? '\n' : *p == 't' ? '\t' : *p;
                cf_buf_append(&b, &ch, 1);
            } else {
                cf_buf_append(&b, p, 1);
            }
            p++;
        }
        if (*p != quote) {
            cf_buf_release(&b);
            return lex_fail(L, "unterminated string");
        }
        L->s = cf_buf_detach(&b, NULL);
        json_t *probe = json_string(L->s);
        if (!probe)
            return lex_fail(L, "a string that is not valid UTF-8");
        json_decref(probe);
        L->p = p + 1;
        L->k = TK_STR;
        return 0;
    }
    static const char *two[] = {"==", "!=", "<=", ">=", NULL};
    for (int i = 0; two[i]; i++)
        if (p[0] == two[i][0] && p[1] == two[i][1]) {
            memcpy(L->op, two[i], 3);
            L->k = TK_OP;
            L->p = p + 2;
            return 0;
        }
    if (strchr(".[](),|~+-<>:", *p)) {
        L->op[0] = *p;
        L->op[1] = 0;
        L->k = TK_OP;
        L->p = p + 1;
        return 0;
    }
    char what[64];
    snprintf(what, sizeof what, "unexpected character '%c'", *p);
    return lex_fail(L, what);
}

static int is_op(const struct lexer *L, const char *op)
{
    return L->k == TK_OP && !strcmp(L->op, op);
}

static int is_kw(const struct lexer *L, const char *kw)
{
    return L->k == TK_NAME && !strcmp(L->s, kw);
}

static int expect_op(struct lexer *L, const char *op)
{
    if (!is_op(L, op)) {
        char what[64];
        snprintf(what, sizeof what, "expected '%s'", op);
        return lex_fail(L, what);
    }
    return lex_next(L);
}

static struct expr *parse_cond(struct lexer *L);

/* Every recursion of the parser passes here: deep nesting is an error,
 * not a stack overflow. */
static int parse_enter(struct lexer *L)
{
    if (L->nest >= CF_TEMPLATE_MAX_NEST) {
        lex_fail(L, "nested too deeply");
        return -1;
    }
    L->nest++;
    return 0;
}

static struct expr *parse_primary(struct lexer *L)
{
    struct expr *e = NULL;
    if (L->failed)
        return NULL;
    switch (L->k) {
    case TK_STR:
        e = expr_new(E_LIT);
        e->lit = json_string(L->s);
        break;
    case TK_INT:
        e = expr_new(E_LIT);
        e->lit = json_integer(L->i);
        break;
    case TK_FLOAT:
        e = expr_new(E_LIT);
        e->lit = json_real(L->f);
        break;
    case TK_NAME:
        e = expr_new(E_LIT);
        if (!strcmp(L->s, "true") || !strcmp(L->s, "True"))
            e->lit = json_true();
        else if (!strcmp(L->s, "false") || !strcmp(L->s, "False"))
            e->lit = json_false();
        else if (!strcmp(L->s, "none") || !strcmp(L->s, "None"))
            e->lit = json_null();
        else {
            e->k = E_VAR;
            e->name = cf_strdup(L->s);
        }
        break;
    case TK_OP:
        if (is_op(L, "(")) {
            lex_next(L);
            e = parse_cond(L);
            if (!e || expect_op(L, ")")) {
                expr_free(e);
                return NULL;
            }
            return e;
        }
        if (is_op(L, "[")) {
            e = expr_new(E_LIST);
            lex_next(L);
            while (!L->failed && !is_op(L, "]")) {
                struct expr *it = parse_cond(L);
                if (!it)
                    break;
                expr_push_arg(e, it);
                if (is_op(L, ","))
                    lex_next(L);
                else if (!is_op(L, "]"))
                    lex_fail(L, "expected ',' or ']' in a list");
            }
            if (L->failed) {
                expr_free(e);
                return NULL;
            }
            lex_next(L);
            return e;
        }
        /* fallthrough */
    default:
        lex_fail(L, "expected a value");
        return NULL;
    }
    lex_next(L);
    return e;
}

static struct expr *parse_postfix(struct lexer *L)
{
    struct expr *e = parse_primary(L);
    while (e && !L->failed) {
        if (is_op(L, ".")) {
            lex_next(L);
            if (L->k != TK_NAME && L->k != TK_INT) {
                lex_fail(L, "expected a name after '.'");
                break;
            }
            struct expr *n = expr_new(E_ATTR);
            n->a = e;
            n->name = L->k == TK_NAME ? cf_strdup(L->s) : cf_asprintf("%lld", L->i);
            e = n;
            lex_next(L);
        } else if (is_op(L, "[")) {
            lex_next(L);
            struct expr *n = expr_new(E_INDEX);
            n->a = e;
            e = n;
            n->b = parse_cond(L);
            if (!n->b || expect_op(L, "]"))
                break;
        } else if (is_op(L, "|")) {
            lex_next(L);
            if (L->k != TK_NAME) {
                lex_fail(L, "expected a filter name after '|'");
                break;
            }
            struct expr *n = expr_new(E_FILTER);
            n->a = e;
            n->name = cf_strdup(L->s);
            e = n;
            lex_next(L);
            if (is_op(L, "(")) {
                lex_next(L);
                while (!L->failed && !is_op(L, ")")) {
                    struct expr *arg = parse_cond(L);
                    if (!arg)
                        break;
                    expr_push_arg(n, arg);
                    if (is_op(L, ","))
                        lex_next(L);
                    else if (!is_op(L, ")"))
                        lex_fail(L, "expected ',' or ')' after a filter argument");
                }
                if (!L->failed)
                    lex_next(L);
            }
        } else if (is_kw(L, "is")) {
            lex_next(L);
            struct expr *n = expr_new(E_TEST);
            n->a = e;
            e = n;
            if (is_kw(L, "not")) {
                n->neg = 1;
                lex_next(L);
            }
            if (L->k != TK_NAME) {
                lex_fail(L, "expected a test name after 'is'");
                break;
            }
            n->name = cf_strdup(L->s);
            lex_next(L);
        } else {
            break;
        }
    }
    if (L->failed) {
        expr_free(e);
        return NULL;
    }
    return e;
}

static struct expr *parse_unary(struct lexer *L)
{
    if (is_op(L, "-")) {
        if (lex_next(L) != 0 || parse_enter(L) != 0)
            return NULL;
        struct expr *n = expr_new(E_NEG);
        n->a = parse_unary(L);
        L->nest--;
        if (!n->a) {
            expr_free(n);
            return NULL;
        }
        return n;
    }
    return parse_postfix(L);
}

static struct expr *parse_add(struct lexer *L)
{
    struct expr *e = parse_unary(L);
    while (e && (is_op(L, "+") || is_op(L, "-") || is_op(L, "~"))) {
        struct expr *n = expr_new(is_op(L, "+") ? E_ADD : is_op(L, "-") ? E_SUB : E_CONCAT);
        lex_next(L);
        n->a = e;
        n->b = parse_unary(L);
        e = n;
        if (!n->b) {
            expr_free(e);
            return NULL;
        }
    }
    return e;
}

static struct expr *parse_cmp(struct lexer *L)
{
    struct expr *e = parse_add(L);
    while (e && !L->failed) {
        int neg = 0;
        if (is_op(L, "==") || is_op(L, "!=") || is_op(L, "<") || is_op(L, ">") || is_op(L, "<=") ||
            is_op(L, ">=")) {
            struct expr *n = expr_new(E_CMP);
            n->name = cf_strdup(L->op);
            lex_next(L);
            n->a = e;
            n->b = parse_add(L);
            e = n;
            if (!n->b)
                goto fail;
            continue;
        }
        if (is_kw(L, "not")) {
            /* after an operand, `not` can only start `not in` */
            lex_next(L);
            if (!is_kw(L, "in")) {
                lex_fail(L, "expected 'in' after 'not'");
                goto fail;
            }
            neg = 1;
        }
        if (is_kw(L, "in")) {
            struct expr *n = expr_new(E_IN);
            n->neg = neg;
            lex_next(L);
            n->a = e;
            n->b = parse_add(L);
            e = n;
            if (!n->b)
                goto fail;
            continue;
        }
        break;
    }
    if (L->failed)
        goto fail;
    return e;
fail:
    expr_free(e);
    return NULL;
}

static struct expr *parse_not(struct lexer *L)
{
    if (is_kw(L, "not")) {
        if (lex_next(L) != 0 || parse_enter(L) != 0)
            return NULL;
        struct expr *n = expr_new(E_NOT);
        n->a = parse_not(L);
        L->nest--;
        if (!n->a) {
            expr_free(n);
            return NULL;
        }
        return n;
    }
    return parse_cmp(L);
}

static struct expr *parse_and(struct lexer *L)
{
    struct expr *e = parse_not(L);
    while (e && is_kw(L, "and")) {
        lex_next(L);
        struct expr *n = expr_new(E_AND);
        n->a = e;
        n->b = parse_not(L);
        e = n;
        if (!n->b) {
            expr_free(e);
            return NULL;
        }
    }
    return e;
}

static struct expr *parse_or(struct lexer *L)
{
    struct expr *e = parse_and(L);
    while (e && is_kw(L, "or")) {
        lex_next(L);
        struct expr *n = expr_new(E_OR);
        n->a = e;
        n->b = parse_and(L);
        e = n;
        if (!n->b) {
            expr_free(e);
            return NULL;
        }
    }
    return e;
}

static struct expr *parse_cond_in(struct lexer *L);

static struct expr *parse_cond(struct lexer *L)
{
    if (parse_enter(L) != 0)
        return NULL;
    struct expr *e = parse_cond_in(L);
    L->nest--;
    return e;
}

static struct expr *parse_cond_in(struct lexer *L)
{
    struct expr *e = parse_or(L);
    if (e && is_kw(L, "if")) {
        lex_next(L);
        struct expr *n = expr_new(E_COND);
        n->a = e; /* value when true */
        e = n;
        n->b = parse_or(L); /* condition */
        if (!n->b)
            goto fail;
        if (is_kw(L, "else")) {
            lex_next(L);
            n->c = parse_cond(L);
            if (!n->c)
                goto fail;
        }
    }
    return e;
fail:
    expr_free(e);
    return NULL;
}

/* Parse a whole expression; trailing tokens are an error. */
static struct expr *parse_expr(struct ctx *c, const char *src)
{
    struct lexer L = {.p = src, .c = c, .src = src};
    struct expr *e = NULL;
    if (lex_next(&L) == 0) {
        if (L.k == TK_END)
            lex_fail(&L, "empty expression");
        else
            e = parse_cond(&L);
    }
    if (e && L.k != TK_END) {
        lex_fail(&L, "unexpected text after the expression");
        expr_free(e);
        e = NULL;
    }
    free(L.s);
    return e;
}

/* ---------------------------------------------------------- evaluation */

static int render_string(struct ctx *c, const char *text, char **out);
static int eval(struct ctx *c, const struct expr *e, struct val *out);

/* Python's repr-like text of a value, so `{{ list }}` prints as Ansible
 * would. */
static void py_repr(const json_t *j, struct cf_buf *b, int top)
{
    switch (json_typeof(j)) {
    case JSON_STRING:
        if (top) {
            cf_buf_append(b, json_string_value(j), json_string_length(j));
        } else {
            cf_buf_puts(b, "'");
            for (const char *p = json_string_value(j); *p; p++) {
                if (*p == '\'' || *p == '\\')
                    cf_buf_puts(b, "\\");
                cf_buf_append(b, p, 1);
            }
            cf_buf_puts(b, "'");
        }
        break;
    case JSON_INTEGER:
        cf_buf_printf(b, "%lld", (long long)json_integer_value(j));
        break;
    case JSON_REAL: {
        char tmp[64];
        snprintf(tmp, sizeof tmp, "%.15g", json_real_value(j));
        if (!strpbrk(tmp, ".eEn"))
            strcat(tmp, ".0");
        cf_buf_puts(b, tmp);
        break;
    }
    case JSON_TRUE:
        cf_buf_puts(b, "True");
        break;
    case JSON_FALSE:
        cf_buf_puts(b, "False");
        break;
    case JSON_NULL:
        cf_buf_puts(b, "None");
        break;
    case JSON_ARRAY: {
        cf_buf_puts(b, "[");
        /* a list that shares one big value many times: stop early, the
         * caller's size check reports it */
        for (size_t i = 0; i < json_array_size(j) && b->len <= CF_TEMPLATE_MAX_OUTPUT; i++) {
            if (i)
                cf_buf_puts(b, ", ");
            py_repr(json_array_get(j, i), b, 0);
        }
        cf_buf_puts(b, "]");
        break;
    }
    case JSON_OBJECT: {
        const char *k;
        json_t *v;
        int first = 1;
        cf_buf_puts(b, "{");
        json_object_foreach((json_t *)j, k, v)
        {
            if (b->len > CF_TEMPLATE_MAX_OUTPUT)
                break;
            if (!first)
                cf_buf_puts(b, ", ");
            first = 0;
            json_t *ks = json_string(k);
            py_repr(ks, b, 0);
            json_decref(ks);
            cf_buf_puts(b, ": ");
            py_repr(v, b, 0);
        }
        cf_buf_puts(b, "}");
        break;
    }
    }
}

static char *to_text(const json_t *j)
{
    struct cf_buf b = CF_BUF_INIT;
    py_repr(j, &b, 1);
    return cf_buf_detach(&b, NULL);
}

/* A string result as a JSON value; text that is not UTF-8 (bytes from a
 * template file) is an error, never a NULL value. */
static int text_val(struct ctx *c, const char *s, json_t **out)
{
    *out = json_string(s);
    if (!*out)
        return ctx_err(c, "the result is not valid UTF-8 text");
    return 0;
}

int cf_template_is_template(const char *s)
{
    return s && (strstr(s, "{{") || strstr(s, "{%") || strstr(s, "{#"));
}

/* "{{ expr }}" and nothing else: the expression text (caller frees), or
 * NULL. */
static char *single_expr(const char *s)
{
    size_t n = strlen(s);
    if (n < 4 || strncmp(s, "{{", 2) || strcmp(s + n - 2, "}}"))
        return NULL;
    const char *inner = s + 2;
    size_t len = n - 4;
    /* another tag inside means text between two expressions */
    for (size_t i = 0; i + 1 < len; i++)
        if ((inner[i] == '{' && (inner[i + 1] == '{' || inner[i + 1] == '%')) ||
            (inner[i] == '}' && inner[i + 1] == '}'))
            return NULL;
    char *e = cf_xmalloc(len + 1);
    memcpy(e, inner, len);
    e[len] = 0;
    if (*e == '-')
        *e = ' ';
    if (len && e[len - 1] == '-')
        e[len - 1] = ' ';
    return e;
}

/* Evaluate a string value from the variables: templates are rendered in
 * a nested context (depth+1), a lone "{{ expr }}" keeps its native type. */
static int expand_string(struct ctx *c, const char *varname, const char *s, struct val *out)
{
    out->j = NULL;
    out->undef = NULL;
    if (!cf_template_is_template(s)) {
        out->j = json_string(s);
        return 0;
    }
    if (c->depth + 1 > CF_TEMPLATE_MAX_DEPTH)
        return ctx_err(c,
                       "variable '%s' nests templates more than %d levels deep (does it refer "
                       "to itself?)",
                       varname, CF_TEMPLATE_MAX_DEPTH);
    struct ctx n = *c;
    n.depth = c->depth + 1;
    n.fixed_line = 1;
    n.via = varname;
    char *ex = single_expr(s);
    int r;
    if (ex) {
        struct expr *e = parse_expr(&n, ex);
        free(ex);
        if (!e)
            return CF_EINVAL;
        r = eval(&n, e, out);
        expr_free(e);
        if (r == 0 && out->undef && !out->via)
            out->via = cf_strdup(varname);
        return r;
    }
    char *txt = NULL;
    if ((r = render_string(&n, s, &txt)) != 0)
        return r;
    r = text_val(c, txt, &out->j);
    free(txt);
    return r;
}

/* A value fetched from a variable: strings holding templates are expanded. */
static int fetched(struct ctx *c, const struct expr *e, json_t *j, struct val *out)
{
    if (json_is_string(j) && cf_template_is_template(json_string_value(j))) {
        char *name = expr_name(e);
        int r = expand_string(c, name, json_string_value(j), out);
        /* the nested context may keep a pointer to name only while running */
        free(name);
        return r;
    }
    out->j = json_incref(j);
    out->undef = NULL;
    return 0;
}

/* Render every template string inside a list or dict (for join, output,
 * loops over a list given literally). */
static int deep_expand_in(struct ctx *c, const char *name, json_t *in, json_t **out);

static int deep_expand(struct ctx *c, const char *name, json_t *in, json_t **out)
{
    *out = NULL;
    if (c->nest >= CF_TEMPLATE_MAX_NEST)
        return ctx_err(c, "the value of '%s' is nested more than %d levels deep", name,
                       CF_TEMPLATE_MAX_NEST);
    int r = spend(c, 0);
    if (r)
        return r;
    c->nest++;
    r = deep_expand_in(c, name, in, out);
    c->nest--;
    return r;
}

static int deep_expand_in(struct ctx *c, const char *name, json_t *in, json_t **out)
{
    if (json_is_string(in) && cf_template_is_template(json_string_value(in))) {
        struct val v = {0};
        int r = expand_string(c, name, json_string_value(in), &v);
        if (r)
            return r;
        if (v.undef) {
            r = undef_err(c, &v);
            val_release(&v);
            return r;
        }
        *out = v.j;
        return 0;
    }
    if (json_is_array(in)) {
        json_t *a = json_array();
        for (size_t i = 0; i < json_array_size(in); i++) {
            json_t *x;
            int r = deep_expand(c, name, json_array_get(in, i), &x);
            if (r) {
                json_decref(a);
                return r;
            }
            json_array_append_new(a, x);
        }
        *out = a;
        return 0;
    }
    if (json_is_object(in)) {
        json_t *o = json_object();
        const char *k;
        json_t *v;
        json_object_foreach(in, k, v)
        {
            json_t *x;
            int r = deep_expand(c, name, v, &x);
            if (r) {
                json_decref(o);
                return r;
            }
            json_object_set_new(o, k, x);
        }
        *out = o;
        return 0;
    }
    *out = json_incref(in);
    return 0;
}

static int require_defined(struct ctx *c, const struct val *v)
{
    if (v->undef)
        return undef_err(c, v);
    return 0;
}

static int truthy(struct ctx *c, const struct val *v, int *t)
{
    int r = require_defined(c, v);
    if (r)
        return r;
    const json_t *j = v->j;
    switch (json_typeof(j)) {
    case JSON_TRUE:
        *t = 1;
        break;
    case JSON_FALSE:
    case JSON_NULL:
        *t = 0;
        break;
    case JSON_INTEGER:
        *t = json_integer_value(j) != 0;
        break;
    case JSON_REAL:
        *t = json_real_value(j) != 0.0;
        break;
    case JSON_STRING:
        *t = json_string_length(j) > 0;
        break;
    case JSON_ARRAY:
        *t = json_array_size(j) > 0;
        break;
    case JSON_OBJECT:
        *t = json_object_size(j) > 0;
        break;
    }
    return 0;
}

/* Ansible's `bool` filter. */
static int ansible_bool(const json_t *j)
{
    if (json_is_true(j))
        return 1;
    if (json_is_integer(j))
        return json_integer_value(j) == 1;
    if (json_is_real(j))
        return json_real_value(j) == 1.0;
    if (json_is_string(j)) {
        const char *s = json_string_value(j);
        static const char *yes[] = {"yes", "on", "1", "true", "y", "t", NULL};
        for (int i = 0; yes[i]; i++)
            if (!strcasecmp(s, yes[i]))
                return 1;
    }
    return 0;
}

static int cmp_values(struct ctx *c, const char *op, const json_t *a, const json_t *b, int *res)
{
    int eq;
    if (json_is_number(a) && json_is_number(b)) {
        double x = json_number_value(a), y = json_number_value(b);
        int d = x < y ? -1 : x > y ? 1 : 0;
        eq = d == 0;
        if (!strcmp(op, "<"))
            *res = d < 0;
        else if (!strcmp(op, ">"))
            *res = d > 0;
        else if (!strcmp(op, "<="))
            *res = d <= 0;
        else if (!strcmp(op, ">="))
            *res = d >= 0;
        else
            *res = !strcmp(op, "==") ? eq : !eq;
        return 0;
    }
    if (!strcmp(op, "==") || !strcmp(op, "!=")) {
        eq = json_equal((json_t *)a, (json_t *)b);
        *res = !strcmp(op, "==") ? eq : !eq;
        return 0;
    }
    if (json_is_string(a) && json_is_string(b)) {
        int d = strcmp(json_string_value(a), json_string_value(b));
        *res = !strcmp(op, "<")    ? d < 0
               : !strcmp(op, ">")  ? d > 0
               : !strcmp(op, "<=") ? d <= 0
                                   : d >= 0;
        return 0;
    }
    return ctx_err(c, "cannot compare %s with %s using '%s'",
                   json_is_string(a) ? "a string" : "a value",
                   json_is_string(b) ? "a string" : "a value", op);
}

static int apply_filter(struct ctx *c, const struct expr *e, struct val *in, struct val *out)
{
    const char *f = e->name;
    struct val args[4] = {{0}};
    size_t na = e->nargs > 4 ? 4 : e->nargs;
    int r = 0;
    out->j = NULL;
    out->undef = NULL;

    if (!strcmp(f, "default") || !strcmp(f, "d")) {
        int use_default = in->undef != NULL;
        if (!use_default && e->nargs > 1) {
            /* default(x, true): also replace falsy values */
            struct val flag = {0};
            int t = 0, ft = 0;
            if ((r = eval(c, e->args[1], &flag)) == 0 && (r = truthy(c, &flag, &ft)) == 0 && ft)
                r = truthy(c, in, &t), use_default = !t;
            val_release(&flag);
            if (r)
                return r;
        }
        if (!use_default) {
            *out = *in;
            in->j = NULL;
            in->undef = NULL;
            return 0;
        }
        if (e->nargs == 0) {
            out->j = json_string("");
            return 0;
        }
        return eval(c, e->args[0], out);
    }
    if ((r = require_defined(c, in)) != 0)
        return r;
    for (size_t i = 0; i < na; i++) {
        if ((r = eval(c, e->args[i], &args[i])) != 0 || (r = require_defined(c, &args[i])) != 0)
            goto out;
    }
    const json_t *j = in->j;
    if (!strcmp(f, "join")) {
        const char *sep = na > 0 && json_is_string(args[0].j) ? json_string_value(args[0].j) : "";
        if (!json_is_array(j)) {
            r = ctx_err(c, "filter 'join' needs a list, got %s",
                        json_is_string(j) ? "a string" : "another value");
            goto out;
        }
        json_t *x = NULL;
        char *name = expr_name(e->a);
        r = deep_expand(c, name, (json_t *)j, &x);
        free(name);
        if (r)
            goto out;
        struct cf_buf b = CF_BUF_INIT;
        cf_buf_puts(&b, "");
        for (size_t i = 0; i < json_array_size(x); i++) {
            if (i)
                cf_buf_puts(&b, sep);
            char *t = to_text(json_array_get(x, i));
            cf_buf_puts(&b, t);
            free(t);
        }
        json_decref(x);
        char *s = cf_buf_detach(&b, NULL);
        r = text_val(c, s, &out->j);
        free(s);
    } else if (!strcmp(f, "lower") || !strcmp(f, "upper") || !strcmp(f, "trim") ||
               !strcmp(f, "string") || !strcmp(f, "dirname") || !strcmp(f, "basename") ||
               !strcmp(f, "quote")) {
        char *s = to_text(j);
        if (!strcmp(f, "lower") || !strcmp(f, "upper")) {
            for (char *p = s; *p; p++)
                *p = (char)(f[0] == 'l' ? tolower((unsigned char)*p) : toupper((unsigned char)*p));
        } else if (!strcmp(f, "trim")) {
            char *p = s;
            while (isspace((unsigned char)*p))
                p++;
            memmove(s, p, strlen(p) + 1);
            size_t n = strlen(s);
            while (n && isspace((unsigned char)s[n - 1]))
                s[--n] = 0;
        } else if (!strcmp(f, "dirname") || !strcmp(f, "basename")) {
            /* Python's os.path semantics: split at the last slash */
            char *slash = strrchr(s, '/');
            if (f[0] == 'd') {
                if (!slash)
                    s[0] = 0;
                else if (slash == s)
                    s[1] = 0;
                else
                    *slash = 0;
            } else if (slash) {
                memmove(s, slash + 1, strlen(slash + 1) + 1);
            }
        } else if (!strcmp(f, "quote")) {
            /* shlex.quote: safe in a POSIX shell word */
            struct cf_buf b = CF_BUF_INIT;
            int plain = *s != 0;
            for (const char *p = s; *p; p++)
                if (!isalnum((unsigned char)*p) && !strchr("@%+=:,./-_", *p))
                    plain = 0;
            if (plain) {
                cf_buf_puts(&b, s);
            } else {
                cf_buf_puts(&b, "'");
                for (const char *p = s; *p; p++)
                    cf_buf_puts(&b, *p == '\'' ? "'\"'\"'" : (char[2]){*p, 0});
                cf_buf_puts(&b, "'");
            }
            free(s);
            s = cf_buf_detach(&b, NULL);
        }
        r = text_val(c, s, &out->j);
        free(s);
    } else if (!strcmp(f, "bool")) {
        out->j = json_boolean(ansible_bool(j));
    } else if (!strcmp(f, "int")) {
        if (json_is_integer(j))
            out->j = json_incref((json_t *)j);
        else if (json_is_real(j)) {
            /* out of range (or NaN) has no integer: Python would give a
             * bignum, which nothing here could use */
            double d = json_real_value(j);
            if (!(d > -9.2e18 && d < 9.2e18))
                r = ctx_err(c, "%g is out of range for 'int'", d);
            else
                out->j = json_integer((json_int_t)d);
        } else if (json_is_string(j))
            out->j = json_integer(strtoll(json_string_value(j), NULL, 10));
        else if (json_is_boolean(j))
            out->j = json_integer(json_is_true(j));
        else
            out->j = json_integer(0);
    } else if (!strcmp(f, "length") || !strcmp(f, "count")) {
        if (json_is_array(j))
            out->j = json_integer((json_int_t)json_array_size(j));
        else if (json_is_object(j))
            out->j = json_integer((json_int_t)json_object_size(j));
        else if (json_is_string(j))
            out->j = json_integer((json_int_t)json_string_length(j));
        else
            r = ctx_err(c, "filter 'length' needs a list, dict or string");
    } else if (!strcmp(f, "first") || !strcmp(f, "last")) {
        if (!json_is_array(j) || json_array_size(j) == 0) {
            out->undef = cf_asprintf("%s of an empty or non-list value", f);
        } else {
            json_t *x = json_array_get(j, f[0] == 'f' ? 0 : json_array_size(j) - 1);
            r = fetched(c, e->a, x, out);
        }
    } else if (!strcmp(f, "unique")) {
        if (!json_is_array(j)) {
            r = ctx_err(c, "filter 'unique' needs a list");
            goto out;
        }
        json_t *x = NULL;
        char *name = expr_name(e->a);
        r = deep_expand(c, name, (json_t *)j, &x);
        free(name);
        if (r)
            goto out;
        json_t *u = json_array();
        for (size_t i = 0; i < json_array_size(x); i++) {
            int seen = 0;
            for (size_t k = 0; k < json_array_size(u) && !seen; k++)
                seen = json_equal(json_array_get(u, k), json_array_get(x, i));
            if (!seen)
                json_array_append(u, json_array_get(x, i));
        }
        json_decref(x);
        out->j = u;
    } else {
        r = ctx_err(c, "unknown filter '%s'", f);
    }
out:
    for (size_t i = 0; i < na; i++)
        val_release(&args[i]);
    return r;
}

static int apply_test(struct ctx *c, const struct expr *e, struct val *in, int *res)
{
    const char *t = e->name;
    int r;
    if (!strcmp(t, "defined"))
        *res = in->undef == NULL;
    else if (!strcmp(t, "undefined"))
        *res = in->undef != NULL;
    else {
        if ((r = require_defined(c, in)) != 0)
            return r;
        const json_t *j = in->j;
        if (!strcmp(t, "none"))
            *res = json_is_null(j);
        else if (!strcmp(t, "string"))
            *res = json_is_string(j);
        else if (!strcmp(t, "number"))
            *res = json_is_number(j);
        else if (!strcmp(t, "mapping"))
            *res = json_is_object(j);
        else if (!strcmp(t, "sequence") || !strcmp(t, "iterable"))
            *res = json_is_array(j) || json_is_string(j) || json_is_object(j);
        else if (!strcmp(t, "true"))
            *res = json_is_true(j);
        else if (!strcmp(t, "false"))
            *res = json_is_false(j);
        else
            return ctx_err(c, "unknown test '%s'", t);
    }
    if (e->neg)
        *res = !*res;
    return 0;
}

static struct scope *scope_find(struct scope *s, const char *name)
{
    for (; s; s = s->up)
        if (!strcmp(s->name, name))
            return s;
    return NULL;
}

static int eval_node(struct ctx *c, const struct expr *e, struct val *out);

/* Every evaluation passes here: nesting and total work are bounded. */
static int eval(struct ctx *c, const struct expr *e, struct val *out)
{
    out->j = NULL;
    out->undef = NULL;
    if (c->nest >= CF_TEMPLATE_MAX_NEST)
        return ctx_err(c, "the expression is nested more than %d levels deep",
                       CF_TEMPLATE_MAX_NEST);
    int r = spend(c, 0);
    if (r)
        return r;
    c->nest++;
    r = eval_node(c, e, out);
    c->nest--;
    /* a list costs what its slots take: `l + l` doubles with every level */
    size_t cost = json_is_string(out->j)  ? json_string_length(out->j)
                  : json_is_array(out->j) ? 8 * json_array_size(out->j)
                                          : 0;
    if (r == 0 && cost && (r = spend(c, cost)) != 0)
        val_release(out);
    return r;
}

static int eval_node(struct ctx *c, const struct expr *e, struct val *out)
{
    struct val a = {0}, b = {0};
    int r = 0, t = 0;
    out->j = NULL;
    out->undef = NULL;
    switch (e->k) {
    case E_LIT:
        out->j = json_incref(e->lit);
        return 0;
    case E_VAR: {
        struct scope *s = scope_find(c->locals, e->name);
        json_t *j = s ? s->val : json_object_get(c->vars, e->name);
        if (!j) {
            out->undef = cf_strdup(e->name);
            return 0;
        }
        return fetched(c, e, j, out);
    }
    case E_ATTR:
    case E_INDEX: {
        if ((r = eval(c, e->a, &a)) != 0)
            return r;
        json_t *j = NULL;
        if (!a.undef) {
            if (e->k == E_ATTR) {
                if (json_is_object(a.j))
                    j = json_object_get(a.j, e->name);
                else if (json_is_array(a.j) && isdigit((unsigned char)e->name[0]))
                    j = json_array_get(a.j, (size_t)atoll(e->name));
            } else {
                if ((r = eval(c, e->b, &b)) != 0 || (r = require_defined(c, &b)) != 0)
                    goto done;
                if (json_is_object(a.j) && json_is_string(b.j))
                    j = json_object_get(a.j, json_string_value(b.j));
                else if (json_is_array(a.j) && json_is_integer(b.j)) {
                    json_int_t i = json_integer_value(b.j);
                    if (i < 0)
                        i += (json_int_t)json_array_size(a.j);
                    j = i >= 0 ? json_array_get(a.j, (size_t)i) : NULL;
                }
            }
        }
        if (!j) {
            out->undef = expr_name(e);
            goto done;
        }
        r = fetched(c, e, j, out);
        goto done;
    }
    case E_FILTER:
        if ((r = eval(c, e->a, &a)) != 0)
            return r;
        r = apply_filter(c, e, &a, out);
        goto done;
    case E_TEST:
        if ((r = eval(c, e->a, &a)) != 0 || (r = apply_test(c, e, &a, &t)) != 0)
            goto done;
        out->j = json_boolean(t);
        goto done;
    case E_NOT:
        if ((r = eval(c, e->a, &a)) != 0 || (r = truthy(c, &a, &t)) != 0)
            goto done;
        out->j = json_boolean(!t);
        goto done;
    case E_NEG:
        if ((r = eval(c, e->a, &a)) != 0 || (r = require_defined(c, &a)) != 0)
            goto done;
        if (json_is_integer(a.j) && json_integer_value(a.j) == INT64_MIN)
            r = ctx_err(c, "the result of -(%lld) does not fit in 64 bits",
                        (long long)json_integer_value(a.j));
        else if (json_is_integer(a.j))
            out->j = json_integer(-json_integer_value(a.j));
        else if (json_is_real(a.j))
            out->j = json_real(-json_real_value(a.j));
        else
            r = ctx_err(c, "cannot negate a non-number");
        goto done;
    case E_AND:
    case E_OR:
        /* Jinja returns the deciding operand itself */
        if ((r = eval(c, e->a, &a)) != 0 || (r = truthy(c, &a, &t)) != 0)
            goto done;
        if ((e->k == E_AND && !t) || (e->k == E_OR && t)) {
            *out = a;
            return 0;
        }
        val_release(&a);
        return eval(c, e->b, out);
    case E_COND:
        if ((r = eval(c, e->b, &b)) != 0 || (r = truthy(c, &b, &t)) != 0)
            goto done;
        if (t)
            r = eval(c, e->a, out);
        else if (e->c)
            r = eval(c, e->c, out);
        else
            out->j = json_string("");
        goto done;
    case E_CMP:
    case E_IN:
    case E_ADD:
    case E_SUB:
    case E_CONCAT:
        if ((r = eval(c, e->a, &a)) != 0 || (r = require_defined(c, &a)) != 0 ||
            (r = eval(c, e->b, &b)) != 0 || (r = require_defined(c, &b)) != 0)
            goto done;
        if (e->k == E_CMP) {
            if ((r = cmp_values(c, e->name, a.j, b.j, &t)) == 0)
                out->j = json_boolean(t);
        } else if (e->k == E_IN) {
            if (json_is_string(b.j) && json_is_string(a.j))
                t = strstr(json_string_value(b.j), json_string_value(a.j)) != NULL;
            else if (json_is_array(b.j)) {
                for (size_t i = 0; i < json_array_size(b.j) && !t; i++)
                    t = json_equal(json_array_get(b.j, i), a.j);
            } else if (json_is_object(b.j) && json_is_string(a.j))
                t = json_object_get(b.j, json_string_value(a.j)) != NULL;
            else {
                r = ctx_err(c, "'in' needs a list, dict or string on its right");
                goto done;
            }
            out->j = json_boolean(e->neg ? !t : t);
        } else if (e->k == E_CONCAT ||
                   (e->k == E_ADD && json_is_string(a.j) && json_is_string(b.j))) {
            char *x = to_text(a.j), *y = to_text(b.j);
            char *s = cf_asprintf("%s%s", x, y);
            r = text_val(c, s, &out->j);
            free(x);
            free(y);
            free(s);
        } else if (e->k == E_ADD && json_is_array(a.j) && json_is_array(b.j)) {
            out->j = json_copy(a.j);
            json_array_extend(out->j, b.j);
        } else if (json_is_integer(a.j) && json_is_integer(b.j)) {
            json_int_t x = json_integer_value(a.j), y = json_integer_value(b.j), z;
            if (e->k == E_ADD ? __builtin_add_overflow(x, y, &z) : __builtin_sub_overflow(x, y, &z))
                r = ctx_err(c, "the result of %lld %c %lld does not fit in 64 bits", (long long)x,
                            e->k == E_ADD ? '+' : '-', (long long)y);
            else
                out->j = json_integer(z);
        } else if (json_is_number(a.j) && json_is_number(b.j)) {
            double x = json_number_value(a.j), y = json_number_value(b.j);
            out->j = json_real(e->k == E_ADD ? x + y : x - y);
        } else {
            r = ctx_err(c, "cannot %s these values", e->k == E_ADD ? "add" : "subtract");
        }
        goto done;
    case E_LIST: {
        json_t *l = json_array();
        for (size_t i = 0; i < e->nargs; i++) {
            struct val x = {0};
            if ((r = eval(c, e->args[i], &x)) != 0 || (r = require_defined(c, &x)) != 0) {
                val_release(&x);
                json_decref(l);
                return r;
            }
            json_array_append_new(l, x.j);
        }
        out->j = l;
        return 0;
    }
    }
done:
    val_release(&a);
    val_release(&b);
    if (r)
        val_release(out);
    return r;
}

/* ------------------------------------------------------------ templates */

enum pk { P_TEXT, P_EXPR, P_TAG };

struct piece {
    enum pk k;
    char *s;
    int line;
};

enum nk { N_TEXT, N_EXPR, N_IF, N_FOR };

struct tnode {
    enum nk k;
    int line;
    char *text;
    struct expr *e; /* EXPR; FOR: the list */
    /* IF */
    size_t nb;
    struct expr **conds;
    struct tnode **bodies;
    struct tnode *els; /* IF else / FOR else */
    /* FOR */
    char *var;
    struct tnode *body;
    struct tnode *next;
};

static void tnode_free(struct tnode *n)
{
    while (n) {
        struct tnode *next = n->next;
        free(n->text);
        expr_free(n->e);
        for (size_t i = 0; i < n->nb; i++) {
            expr_free(n->conds[i]);
            tnode_free(n->bodies[i]);
        }
        free(n->conds);
        free(n->bodies);
        tnode_free(n->els);
        free(n->var);
        tnode_free(n->body);
        free(n);
        n = next;
    }
}

static void pieces_free(struct piece *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(p[i].s);
    free(p);
}

static int count_lines(const char *s, size_t n)
{
    int l = 0;
    for (size_t i = 0; i < n; i++)
        l += s[i] == '\n';
    return l;
}

/* Scan text into pieces, applying `-` whitespace control and trim_blocks. */
static int scan(struct ctx *c, const char *text, struct piece **out, size_t *nout)
{
    struct piece *v = NULL;
    size_t n = 0;
    const char *p = text;
    int line = c->line;
    int lstrip_next = 0, trim_nl = 0;
    for (;;) {
        const char *o = p;
        while ((o = strchr(o, '{')) && o[1] != '{' && o[1] != '%' && o[1] != '#')
            o++;
        const char *tend = o ? o : p + strlen(p);
        const char *ts = p;
        if (lstrip_next) {
            while (ts < tend && isspace((unsigned char)*ts))
                ts++;
        } else if (trim_nl) {
            if (ts < tend && *ts == '\n')
                ts++;
            else if (ts + 1 < tend && ts[0] == '\r' && ts[1] == '\n')
                ts += 2;
        }
        const char *te = tend;
        if (o && o[2] == '-')
            while (te > ts && isspace((unsigned char)te[-1]))
                te--;
        if (te > ts) {
            v = cf_xrealloc(v, (n + 1) * sizeof *v);
            v[n].k = P_TEXT;
            v[n].s = cf_xmalloc((size_t)(te - ts) + 1);
            memcpy(v[n].s, ts, (size_t)(te - ts));
            v[n].s[te - ts] = 0;
            v[n].line = line + count_lines(p, (size_t)(ts - p));
            n++;
        }
        line += count_lines(p, (size_t)(tend - p));
        if (!o)
            break;
        char kind = o[1];
        const char *closer = kind == '{' ? "}}" : kind == '%' ? "%}" : "#}";
        const char *q = o + 2;
        char quote = 0;
        while (*q) {
            if (kind != '#' && quote) {
                if (*q == quote)
                    quote = 0;
            } else if (kind != '#' && (*q == '\'' || *q == '"')) {
                quote = *q;
            } else if (q[0] == closer[0] && q[1] == closer[1]) {
                break;
            }
            q++;
        }
        if (!*q) {
            c->line = line;
            pieces_free(v, n);
            return ctx_err(c, "'%.2s' is never closed with '%s'", o, closer);
        }
        const char *cs = o + 2, *ce = q;
        if (cs < ce && *cs == '-')
            cs++;
        lstrip_next = ce > cs && ce[-1] == '-';
        if (lstrip_next)
            ce--;
        trim_nl = kind != '{';
        if (kind != '#') {
            v = cf_xrealloc(v, (n + 1) * sizeof *v);
            v[n].k = kind == '{' ? P_EXPR : P_TAG;
            while (cs < ce && isspace((unsigned char)*cs))
                cs++;
            while (ce > cs && isspace((unsigned char)ce[-1]))
                ce--;
            v[n].s = cf_xmalloc((size_t)(ce - cs) + 1);
            memcpy(v[n].s, cs, (size_t)(ce - cs));
            v[n].s[ce - cs] = 0;
            v[n].line = line;
            n++;
        }
        line += count_lines(o, (size_t)(q - o));
        p = q + 2;
    }
    *out = v;
    *nout = n;
    return 0;
}

/* The first word of a tag and the rest after it. */
static const char *tag_word(const char *s, char word[16])
{
    size_t i = 0;
    while (s[i] && !isspace((unsigned char)s[i]) && i < 15) {
        word[i] = s[i];
        i++;
    }
    word[i] = 0;
    s += i;
    while (isspace((unsigned char)*s))
        s++;
    return s;
}

/* Build nodes from pieces[*i] until one of the stop words; *stop gets the
 * word that ended the block ("" at the end of the text). */
static int build_level(struct ctx *c, struct piece *pc, size_t n, size_t *i,
                       const char *const *stops, struct tnode **out, char stop[16]);

/* Every level of {% if %}/{% for %} passes here: deep nesting is an error,
 * not a stack overflow. */
static int build(struct ctx *c, struct piece *pc, size_t n, size_t *i, const char *const *stops,
                 struct tnode **out, char stop[16])
{
    if (c->block >= CF_TEMPLATE_MAX_NEST) {
        *out = NULL;
        stop[0] = 0;
        return ctx_err(c, "blocks nested more than %d levels deep", CF_TEMPLATE_MAX_NEST);
    }
    c->block++;
    int r = build_level(c, pc, n, i, stops, out, stop);
    c->block--;
    return r;
}

static int build_level(struct ctx *c, struct piece *pc, size_t n, size_t *i,
                       const char *const *stops, struct tnode **out, char stop[16])
{
    struct tnode *head = NULL, **tail = &head;
    int r = 0;
    stop[0] = 0;
    while (*i < n) {
        struct piece *p = &pc[(*i)++];
        c->line = p->line;
        struct tnode *nd = NULL;
        if (p->k == P_TEXT) {
            nd = cf_xcalloc(1, sizeof *nd);
            nd->k = N_TEXT;
            nd->text = cf_strdup(p->s);
        } else if (p->k == P_EXPR) {
            struct expr *e = parse_expr(c, p->s);
            if (!e) {
                r = CF_EINVAL;
                goto fail;
            }
            nd = cf_xcalloc(1, sizeof *nd);
            nd->k = N_EXPR;
            nd->e = e;
        } else {
            char w[16];
            const char *rest = tag_word(p->s, w);
            for (int s = 0; stops && stops[s]; s++)
                if (!strcmp(w, stops[s])) {
                    strcpy(stop, w);
                    (*i)--; /* the caller reads the tag's argument */
                    *out = head;
                    return 0;
                }
            if (!strcmp(w, "if")) {
                static const char *const st[] = {"elif", "else", "endif", NULL};
                nd = cf_xcalloc(1, sizeof *nd);
                nd->k = N_IF;
                nd->line = p->line;
                *tail = nd;
                tail = &nd->next;
                const char *cond = rest;
                for (;;) {
                    struct expr *e = parse_expr(c, cond);
                    if (!e) {
                        r = CF_EINVAL;
                        goto fail;
                    }
                    nd->conds = cf_xrealloc(nd->conds, (nd->nb + 1) * sizeof *nd->conds);
                    nd->bodies = cf_xrealloc(nd->bodies, (nd->nb + 1) * sizeof *nd->bodies);
                    nd->conds[nd->nb] = e;
                    nd->bodies[nd->nb] = NULL;
                    nd->nb++;
                    char got[16];
                    if ((r = build(c, pc, n, i, st, &nd->bodies[nd->nb - 1], got)) != 0)
                        goto fail;
                    if (!got[0]) {
                        c->line = nd->line;
                        r = ctx_err(c, "'{%% if %%}' is never closed with '{%% endif %%}'");
                        goto fail;
                    }
                    struct piece *tp = &pc[(*i)++];
                    char w2[16];
                    cond = tag_word(tp->s, w2);
                    if (!strcmp(got, "elif"))
                        continue;
                    if (!strcmp(got, "else")) {
                        static const char *const st2[] = {"endif", NULL};
                        if ((r = build(c, pc, n, i, st2, &nd->els, got)) != 0)
                            goto fail;
                        if (!got[0]) {
                            c->line = nd->line;
                            r = ctx_err(c, "'{%% if %%}' is never closed with '{%% endif %%}'");
                            goto fail;
                        }
                        (*i)++;
                    }
                    break;
                }
                continue;
            } else if (!strcmp(w, "for")) {
                static const char *const st[] = {"else", "endfor", NULL};
                char var[64];
                const char *q = rest;
                size_t k = 0;
                while ((isalnum((unsigned char)*q) || *q == '_') && k < sizeof var - 1)
                    var[k++] = *q++;
                var[k] = 0;
                while (isspace((unsigned char)*q))
                    q++;
                if (!k || strncmp(q, "in", 2) || !isspace((unsigned char)q[2])) {
                    r = ctx_err(c, "expected '{%% for NAME in LIST %%}', got '{%% %s %%}'", p->s);
                    goto fail;
                }
                nd = cf_xcalloc(1, sizeof *nd);
                nd->k = N_FOR;
                nd->line = p->line;
                nd->var = cf_strdup(var);
                *tail = nd;
                tail = &nd->next;
                if (!(nd->e = parse_expr(c, q + 3))) {
                    r = CF_EINVAL;
                    goto fail;
                }
                char got[16];
                if ((r = build(c, pc, n, i, st, &nd->body, got)) != 0)
                    goto fail;
                if (!got[0]) {
                    c->line = nd->line;
                    r = ctx_err(c, "'{%% for %%}' is never closed with '{%% endfor %%}'");
                    goto fail;
                }
                (*i)++;
                if (!strcmp(got, "else")) {
                    static const char *const st2[] = {"endfor", NULL};
                    if ((r = build(c, pc, n, i, st2, &nd->els, got)) != 0)
                        goto fail;
                    if (!got[0]) {
                        c->line = nd->line;
                        r = ctx_err(c, "'{%% for %%}' is never closed with '{%% endfor %%}'");
                        goto fail;
                    }
                    (*i)++;
                }
                continue;
            } else if (!strcmp(w, "endif") || !strcmp(w, "endfor") || !strcmp(w, "else") ||
                       !strcmp(w, "elif")) {
                r = ctx_err(c, "unexpected '{%% %s %%}'", w);
                goto fail;
            } else {
                r = ctx_err(c, "unsupported tag '{%% %s %%}' (supported: if, for)", w);
                goto fail;
            }
        }
        nd->line = p->line;
        *tail = nd;
        tail = &nd->next;
    }
    *out = head;
    return 0;
fail:
    tnode_free(head);
    *out = NULL;
    return r;
}

static int render_nodes(struct ctx *c, const struct tnode *nd, struct cf_buf *b)
{
    int r = 0;
    for (; nd; nd = nd->next) {
        if (!c->fixed_line)
            c->line = nd->line;
        switch (nd->k) {
        case N_TEXT:
            cf_buf_puts(b, nd->text);
            if ((r = spend(c, strlen(nd->text))) != 0)
                return r;
            break;
        case N_EXPR: {
            struct val v = {0};
            if ((r = eval(c, nd->e, &v)) != 0)
                return r;
            if (v.undef) {
                r = undef_err(c, &v);
                val_release(&v);
                return r;
            }
            json_t *x = v.j;
            if (json_is_array(x) || json_is_object(x)) {
                char *name = expr_name(nd->e);
                r = deep_expand(c, name, v.j, &x);
                free(name);
                if (r) {
                    val_release(&v);
                    return r;
                }
            } else {
                json_incref(x);
            }
            char *t = to_text(x);
            cf_buf_puts(b, t);
            r = spend(c, strlen(t));
            free(t);
            json_decref(x);
            val_release(&v);
            if (r)
                return r;
            break;
        }
        case N_IF: {
            const struct tnode *body = nd->els;
            for (size_t k = 0; k < nd->nb; k++) {
                struct val v = {0};
                int t = 0;
                if (!c->fixed_line)
                    c->line = nd->line;
                r = eval(c, nd->conds[k], &v);
                if (!r)
                    r = truthy(c, &v, &t);
                val_release(&v);
                if (r)
                    return r;
                if (t) {
                    body = nd->bodies[k];
                    break;
                }
            }
            if ((r = render_nodes(c, body, b)) != 0)
                return r;
            break;
        }
        case N_FOR: {
            struct val v = {0};
            if ((r = eval(c, nd->e, &v)) != 0)
                return r;
            if ((r = require_defined(c, &v)) != 0) {
                val_release(&v);
                return r;
            }
            json_t *list = NULL;
            if (json_is_object(v.j)) {
                list = json_array();
                const char *k;
                json_t *x;
                json_object_foreach(v.j, k, x) json_array_append_new(list, json_string(k));
            } else if (json_is_array(v.j)) {
                list = json_incref(v.j);
            } else {
                char *name = expr_name(nd->e);
                r = ctx_err(c, "'%s' is not a list, cannot loop over it", name);
                free(name);
                val_release(&v);
                return r;
            }
            val_release(&v);
            size_t len = json_array_size(list);
            json_t *loop = json_object();
            struct scope s_loop = {"loop", loop, c->locals};
            struct scope s_var = {nd->var, NULL, &s_loop};
            struct scope *saved = c->locals;
            c->locals = &s_var;
            for (size_t k = 0; k < len && !r; k++) {
                json_object_set_new(loop, "index", json_integer((json_int_t)k + 1));
                json_object_set_new(loop, "index0", json_integer((json_int_t)k));
                json_object_set_new(loop, "first", json_boolean(k == 0));
                json_object_set_new(loop, "last", json_boolean(k + 1 == len));
                json_object_set_new(loop, "length", json_integer((json_int_t)len));
                s_var.val = json_array_get(list, k);
                r = spend(c, 0);
                if (!r)
                    r = render_nodes(c, nd->body, b);
            }
            c->locals = saved;
            json_decref(loop);
            json_decref(list);
            if (r)
                return r;
            if (len == 0 && (r = render_nodes(c, nd->els, b)) != 0)
                return r;
            break;
        }
        }
    }
    return 0;
}

static int render_string(struct ctx *c, const char *text, char **out)
{
    struct piece *pc = NULL;
    size_t n = 0, i = 0;
    struct tnode *tree = NULL;
    struct cf_buf b = CF_BUF_INIT;
    char stop[16];
    int start_line = c->line;
    int r = scan(c, text, &pc, &n);
    if (r)
        return r;
    if ((r = build(c, pc, n, &i, NULL, &tree, stop)) != 0)
        goto out;
    c->line = start_line;
    cf_buf_puts(&b, "");
    if ((r = render_nodes(c, tree, &b)) != 0)
        goto out;
    *out = cf_buf_detach(&b, NULL);
out:
    cf_buf_release(&b);
    tnode_free(tree);
    pieces_free(pc, n);
    return r;
}

static void ctx_init(struct ctx *c, const char *name, int line, const json_t *vars,
                     struct budget *budget, char *err)
{
    memset(c, 0, sizeof *c);
    memset(budget, 0, sizeof *budget);
    c->budget = budget;
    c->file = name ? name : "<template>";
    c->line = line > 0 ? line : 1;
    c->vars = vars;
    c->err = err;
}

int cf_template_render(const char *name, int line, const char *text, const json_t *vars, char **out,
                       char *err)
{
    struct ctx c;
    struct budget bu;
    *out = NULL;
    if (!json_is_object(vars))
        return cf_errf(err, "%s: template variables must be a dict", name ? name : "<template>");
    ctx_init(&c, name, line, vars, &bu, err);
    return render_string(&c, text, out);
}

static int value_walk(struct ctx *c, const json_t *in, json_t **out)
{
    int r;
    if (json_is_string(in)) {
        const char *s = json_string_value(in);
        if (!cf_template_is_template(s)) {
            *out = json_incref((json_t *)in);
            return 0;
        }
        char *ex = single_expr(s);
        if (ex) {
            struct expr *e = parse_expr(c, ex);
            free(ex);
            if (!e)
                return CF_EINVAL;
            struct val v = {0};
            r = eval(c, e, &v);
            if (!r)
                r = require_defined(c, &v);
            if (!r && (json_is_array(v.j) || json_is_object(v.j))) {
                char *name = expr_name(e);
                r = deep_expand(c, name, v.j, out);
                free(name);
            } else if (!r) {
                *out = json_incref(v.j);
            }
            expr_free(e);
            val_release(&v);
            return r;
        }
        char *txt = NULL;
        int line = c->line;
        r = render_string(c, s, &txt);
        c->line = line;
        if (r)
            return r;
        r = text_val(c, txt, out);
        free(txt);
        return r;
    }
    if (json_is_array(in)) {
        json_t *a = json_array();
        for (size_t i = 0; i < json_array_size(in); i++) {
            json_t *x;
            if ((r = value_walk(c, json_array_get(in, i), &x)) != 0) {
                json_decref(a);
                return r;
            }
            json_array_append_new(a, x);
        }
        *out = a;
        return 0;
    }
    if (json_is_object(in)) {
        json_t *o = json_object();
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)in, k, v)
        {
            json_t *x;
            if ((r = value_walk(c, v, &x)) != 0) {
                json_decref(o);
                return r;
            }
            json_object_set_new(o, k, x);
        }
        *out = o;
        return 0;
    }
    *out = json_incref((json_t *)in);
    return 0;
}

int cf_template_value(const char *name, int line, const json_t *in, const json_t *vars,
                      json_t **out, char *err)
{
    struct ctx c;
    struct budget bu;
    *out = NULL;
    if (!json_is_object(vars))
        return cf_errf(err, "%s: template variables must be a dict", name ? name : "<template>");
    ctx_init(&c, name, line, vars, &bu, err);
    c.fixed_line = 1;
    return value_walk(&c, in, out);
}

int cf_template_condition(const char *name, int line, const char *expr, const json_t *vars,
                          int *truth, char *err)
{
    struct ctx c;
    struct budget bu;
    *truth = 0;
    if (!json_is_object(vars))
        return cf_errf(err, "%s: template variables must be a dict", name ? name : "<template>");
    ctx_init(&c, name, line, vars, &bu, err);
    c.fixed_line = 1;
    char *inner = single_expr(expr); /* `when: "{{ x }}"` is accepted too */
    struct expr *e = parse_expr(&c, inner ? inner : expr);
    free(inner);
    if (!e)
        return CF_EINVAL;
    struct val v = {0};
    int t = 0;
    int r = eval(&c, e, &v);
    if (!r)
        r = truthy(&c, &v, &t);
    val_release(&v);
    expr_free(e);
    if (!r)
        *truth = t;
    return r;
}

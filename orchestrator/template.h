/*
 * template.h - the subset of Jinja2 that Ansible roles use, over jansson
 * values.
 *
 * Supported: `{{ expr }}`, `{% if %}/{% elif %}/{% else %}/{% endif %}`,
 * `{% for x in expr %}...{% else %}...{% endfor %}` (with loop.index,
 * loop.index0, loop.first, loop.last, loop.length), `{# comments #}`,
 * whitespace control with `-` and Ansible's trim_blocks (the newline after
 * a block tag is dropped).  Expressions: names, `a.b`, `a['b']`, `a[0]`,
 * string/number/bool/none/list literals, `not and or`, `== != < > <= >=`,
 * `in`, `~` and `+`, `x if c else y`, tests `is [not] defined|undefined|
 * none|string|number|mapping|sequence`, filters default/d, join, lower,
 * upper, trim, bool, int, string, length/count, first, last, dirname,
 * basename, quote, unique.
 *
 * Variables whose values are themselves templates ("{{ other }}") are
 * rendered when they are used, recursively, up to CF_TEMPLATE_MAX_DEPTH
 * levels (deeper is an error naming the variable: usually a loop).  An
 * undefined variable is an error naming it and the template's file:line
 * (Ansible's StrictUndefined), except under `default` and `is defined`.
 *
 * Everything here is pure (no I/O) and allocates its results: the caller
 * owns *out.
 */
#ifndef CF_TEMPLATE_H
#define CF_TEMPLATE_H

#include <jansson.h>

#include "cf.h"

#define CF_TEMPLATE_MAX_DEPTH 16

/* Bounds of one render, so that a hostile or mistaken value ends in an
 * error naming file:line instead of a crash or an exhausted machine:
 * nesting of expressions and of blocks, tokens in one expression, text
 * produced (intermediate strings included) and evaluation steps (loop
 * iterations included). */
#define CF_TEMPLATE_MAX_NEST   200
#define CF_TEMPLATE_MAX_TOKENS 20000
#define CF_TEMPLATE_MAX_OUTPUT (64u << 20)
#define CF_TEMPLATE_MAX_STEPS  5000000ul

/* Render text with vars (a JSON object).  name is the file name used in
 * errors and line the line number of text's first line in it (1 for a
 * template file; a task's line for a string inside a task).  *out is a new
 * NUL-terminated string owned by the caller.  Returns 0 or CF_EINVAL with
 * "name:line: what is wrong" in err. */
int cf_template_render(const char *name, int line, const char *text, const json_t *vars, char **out,
                       char *err);

/* Evaluate a task argument the way Ansible does: a string that is exactly
 * one "{{ expr }}" yields the expression's native value (a list stays a
 * list); another string is rendered to a string; lists and objects are
 * walked, other values copied.  *out is a new reference. */
int cf_template_value(const char *name, int line, const json_t *in, const json_t *vars,
                      json_t **out, char *err);

/* Evaluate a bare expression (Ansible's `when:`, without braces) and give
 * its Jinja truthiness in *truth (0 or 1). */
int cf_template_condition(const char *name, int line, const char *expr, const json_t *vars,
                          int *truth, char *err);

/* Does s contain template syntax ("{{", "{%" or "{#")? */
int cf_template_is_template(const char *s);

#endif

/*
 * vars.h - variables as Ansible sees them: YAML loaded with YAML 1.1
 * (PyYAML) typing into jansson values, extra vars (-e), merging, and the
 * source position of every value so configuration errors can say
 * `file:line:column: what is wrong`.
 *
 * Positions live in a process-wide side table keyed by the json_t pointer
 * (and, for members, by container pointer + key / index).  The table holds
 * a reference on every value it knows, so an address is never reused for
 * another value while its position is recorded; cf_vars_reset() drops the
 * table (and those references).  Merging (cf_vars_merge, the inventory's
 * hostvars) sets the SAME json_t objects into the destination, never deep
 * copies, so positions survive into merged variables.
 *
 * jansson's true/false/null are shared singletons: a bare pointer cannot
 * say where one came from.  Ask for the position of such a value through
 * its container instead (cf_vars_member_pos / cf_vars_item_pos), which
 * works for every value type and is what error reporting should prefer.
 *
 * Not thread-safe (certfleet loads configuration on one thread, before the
 * loop runs).
 */
#ifndef CF_VARS_H
#define CF_VARS_H

#include <jansson.h>
#include <stddef.h>

/* Where a value came from.  file is owned by the registry and stays valid
 * until cf_vars_reset() or process exit; line and col are 1-based. */
struct cf_pos {
    const char *file;
    int line;
    int col;
};

/* The position of v itself (object, array, string, integer, real made by
 * a loader).  Returns 0 or CF_ENOENT (unknown, or a true/false/null
 * singleton); out is zeroed on CF_ENOENT. */
int cf_vars_pos(const json_t *v, struct cf_pos *out);

/* The position of the value stored under key in obj (any value type,
 * including true/false/null).  Falls back to cf_vars_pos() of the member
 * value.  Returns 0 or CF_ENOENT. */
int cf_vars_member_pos(const json_t *obj, const char *key, struct cf_pos *out);

/* The position of arr[i]; like cf_vars_member_pos for arrays. */
int cf_vars_item_pos(const json_t *arr, size_t i, struct cf_pos *out);

/* Record a position (the loaders do this; INI inventories and callers
 * building values by hand may too).  file is copied (interned).  A later
 * call for the same value replaces the earlier position.  Returns 0 or
 * CF_ENOMEM. */
int cf_vars_set_pos(const json_t *v, const char *file, int line, int col);
int cf_vars_set_member_pos(const json_t *obj, const char *key, const struct cf_pos *pos);
int cf_vars_set_item_pos(const json_t *arr, size_t i, const struct cf_pos *pos);

/* Forget every position, drop the references the table holds and free the
 * interned file names.  Pointers from earlier cf_pos results dangle after
 * this. */
void cf_vars_reset(void);

/* Write "file:line:col: <message>" into err (CF_ERRLEN bytes), or just the
 * message when pos is NULL or has no file.  Returns CF_EINVAL so callers
 * can `return cf_pos_errf(err, &pos, ...)`. */
int cf_pos_errf(char *err, const struct cf_pos *pos, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Load one YAML document as Ansible does (PyYAML SafeLoader, YAML 1.1):
 * plain scalars typed as bool (true/false/yes/no/on/off in PyYAML's case
 * variants: true, True, TRUE; y/n stay strings), int (decimal, 0x, 0b,
 * YAML 1.1 leading-0 octal, underscores, sexagesimal; "0o17" stays a
 * string, as in PyYAML), float (PyYAML's regex: "1.5", "1.0e+3", ".5";
 * "1e3" stays a string), null (null, ~, empty), dates (YYYY-MM-DD, kept
 * as the ISO string Ansible prints); quoted or !!str / !unsafe scalars
 * stay strings.  Anchors, aliases
 * and merge keys (<<) are supported; on duplicate keys the last wins
 * (PyYAML).  Mapping keys become strings as Python's json.dumps would
 * print them (a key `1` becomes "1", `yes` becomes "true").  An
 * empty document yields JSON null.  Only the first document of a stream
 * is used.
 *
 * *out is a new reference owned by the caller (NULL on error).  Errors:
 * CF_ENOENT / CF_EIO (file), CF_EINVAL with "file:line:column: problem"
 * in err for YAML syntax errors. */
int cf_yaml_load_file(const char *path, json_t **out, char *err);
/* The same for text in memory; name is the file name used in positions
 * and errors (e.g. "<extra vars>"). */
int cf_yaml_load_string(const char *name, const char *text, json_t **out, char *err);

/* Parse one -e argument as ansible-playbook does:
 *   "@file"              a YAML/JSON file that must hold a mapping;
 *   "{...}" or "[...]"   YAML/JSON text (must be a mapping);
 *   "k=v k2='v 2'"       space-separated key=value pairs, values strings
 *                        (Ansible's quoting: a value in matching quotes is
 *                        unquoted, backslash escapes decoded);
 *   "a: 1"               (no '=' anywhere) YAML text holding a mapping.
 * *out is a new object owned by the caller.  Returns 0 or CF_EINVAL /
 * CF_ENOENT with the reason in err. */
int cf_extra_vars_parse(const char *arg, json_t **out, char *err);

/* Merge src into dst with Ansible's default hash_behaviour=replace: every
 * top-level key of src replaces dst's.  Values are shared (json_object_set),
 * and member positions of src are carried over to dst.  Both must be
 * objects.  Returns 0, CF_EINVAL (not objects) or CF_ENOMEM. */
int cf_vars_merge(json_t *dst, const json_t *src);

/* A short type name as Python would say it for error messages:
 * "dict", "list", "str", "int", "float", "bool", "NoneType". */
const char *cf_vars_type_name(const json_t *v);

#endif

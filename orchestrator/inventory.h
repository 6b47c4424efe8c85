/*
 * inventory.h - Ansible-compatible inventory: INI and YAML files and
 * directories of them, group_vars/ and host_vars/, Ansible's variable
 * precedence and limit patterns.  What `ansible-inventory` shows for the
 * same files is what this module computes (the integration test
 * tests/integration/10_inventory.sh compares both in one run).
 *
 * Ownership: a struct cf_inventory owns its hosts, groups and variables;
 * every const char * and json_t * it hands out stays valid until
 * cf_inventory_free().  Values loaded from files carry positions (vars.h),
 * so validation can report `file:line:column: message`.
 */
#ifndef CF_INVENTORY_H
#define CF_INVENTORY_H

#include <jansson.h>
#include <stddef.h>

struct cf_inventory;

/* Load the inventory sources in order, as `ansible-inventory -i S1 -i S2
 * --playbook-dir DIR` would:
 *   - a file: YAML when it ends in .yml/.yaml/.json; INI when it has
 *     another extension; without extension YAML if it parses as a YAML
 *     inventory mapping, INI otherwise;
 *   - a directory: every entry in byte order, recursively, skipping hidden
 *     names, group_vars, host_vars, vars_plugins and the extensions Ansible
 *     ignores (.orig .ini .cfg .retry .pyc .pyo .swp .bak ~ .rpm .md .txt
 *     .rst);
 *   - group_vars/ and host_vars/ are read from each source (inside a
 *     directory source, beside a file source) and then from playbook_dir
 *     (NULL = the current directory, as ansible-inventory does), as NAME,
 *     NAME.yml, NAME.yaml, NAME.json (the first that exists) or a directory
 *     NAME/ of such files (sorted, recursive, hidden and *~ skipped).
 * Returns 0, or CF_EINVAL / CF_ENOENT / CF_EIO with "file:line:column:
 * message" (or "file: message" when no position applies) in err; *out is
 * NULL on error. */
int cf_inventory_load(const char *const *sources, int n, const char *playbook_dir,
                      struct cf_inventory **out, char *err);

/* NULL-safe. */
void cf_inventory_free(struct cf_inventory *inv);

/* Hosts in inventory order: the order in which they were first defined
 * across the sources. Index i is stable for the life of inv. */
size_t cf_inventory_host_count(const struct cf_inventory *inv);
const char *cf_inventory_host_name(const struct cf_inventory *inv, size_t i);
/* Index of a host by name: 0 and *idx set, or CF_ENOENT. */
int cf_inventory_host_find(const struct cf_inventory *inv, const char *name, size_t *idx);

/* The host's groups as Ansible's group_names: every group it belongs to
 * directly or through children, without "all", sorted by name (includes
 * "ungrouped" when the host is in it).  *names is an array owned by inv
 * (valid until cf_inventory_free). Returns the count. */
size_t cf_inventory_host_groups(const struct cf_inventory *inv, size_t host,
                                const char *const **names);

/* Groups: every group name, sorted by name (with "all" and "ungrouped"),
 * owned by inv. Returns the count. */
size_t cf_inventory_group_names(const struct cf_inventory *inv, const char *const **names);

/* Resolve an Ansible limit pattern (-l). NULL or "" selects all hosts.
 * Syntax as ansible: patterns separated by ',' (or ':' when the whole
 * string is not one host[:port]); each a host or group name, a glob
 * (fnmatch: app*, web?, [ab]*), or a regex after '~' (POSIX ERE matched at
 * the start, like Python's re.match); '&' prefix intersects, '!' prefix
 * excludes (applied after all plain patterns, as Ansible orders them; only
 * '&'/'!' patterns start from "all"); a group pattern may carry a
 * subscript [i], [-i], [i:j], [i:]; "@file" reads patterns one per line.
 * *idx (caller frees) lists host indices in inventory order, *n their
 * count.  A limit matching no host is an error (CF_ENOENT, "limit 'x'
 * matches no host in the inventory"); a bad regex or subscript CF_EINVAL. */
int cf_inventory_select(const struct cf_inventory *inv, const char *limit, size_t **idx, size_t *n,
                        char *err);

/* The variables of one host with Ansible's precedence, lowest first:
 *   role_defaults (may be NULL)
 *   < inventory vars of group "all"
 *   < inventory vars of the host's other groups, sorted by (depth,
 *     ansible_group_priority, name)
 *   < group_vars/all files (each source in order, then playbook_dir)
 *   < group_vars/<group> files (each source: the groups in that order;
 *     then playbook_dir likewise)
 *   < inventory host vars (incl. ansible_port from host:port)
 *   < host_vars/<host> files (sources, then playbook_dir)
 *   < extra_vars (may be NULL; merge several -e with cf_vars_merge first).
 * Top-level keys replace (hash_behaviour=replace).  *out is a new object
 * owned by the caller whose values are shared by reference with the
 * inventory (do not modify them); member positions are kept, so
 * cf_vars_member_pos(*out, "key", &pos) says where the winning value was
 * written.  Magic variables (inventory_hostname, group_names...) are not
 * included. Returns 0, CF_EINVAL (bad host index) or CF_ENOMEM. */
int cf_inventory_hostvars(const struct cf_inventory *inv, size_t host, const json_t *role_defaults,
                          const json_t *extra_vars, json_t **out, char *err);

/* `ansible-inventory --list` as a JSON document (new reference): one key
 * per non-empty group with "hosts" and "children" lists, "all", and
 * "_meta": {"hostvars": {host: vars}} (hosts with no vars left out). */
int cf_inventory_list_json(const struct cf_inventory *inv, const json_t *extra_vars, json_t **out,
                           char *err);

/* `ansible-inventory --graph [group]` text (caller frees), lines joined by
 * '\n' without a final newline, "@group:" / "  |--@child:" / "  |  |--host".
 * CF_ENOENT with a message when group is not a group. */
int cf_inventory_graph(const struct cf_inventory *inv, const char *group, char **out, char *err);

/* Serialize a JSON value exactly as Python's json.dumps(v, indent=4,
 * sort_keys=True, ensure_ascii=False) does (what ansible-inventory
 * prints). Caller frees. */
char *cf_inventory_dumps(const json_t *v);

#endif

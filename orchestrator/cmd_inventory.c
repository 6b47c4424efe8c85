/*
 * cmd_inventory.c - 'certfleet inventory': show the inventory as
 * certfleet (and Ansible) sees it, in ansible-inventory's formats, so a
 * user can check groups, limits and the variables each host gets before
 * anything touches a host.
 */
#include "cf.h"
#include "commands.h"
#include "inventory.h"
#include "opts.h"
#include "util.h"
#include "vars.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "usage: certfleet inventory -i INVENTORY [-i ...] [-e VARS] [-l LIMIT]\n"
    "                           [--playbook-dir DIR] (--list | --graph [GROUP] | --host NAME)\n"
    "\n"
    "Show the inventory as certfleet (and ansible-inventory) sees it: groups,\n"
    "hosts and the variables every host gets after Ansible's precedence rules\n"
    "(role defaults < inventory group vars < group_vars/ < inventory host vars\n"
    "< host_vars/ < -e).\n"
    "\n"
    "  -i, --inventory PATH    an INI or YAML inventory file, or a directory of\n"
    "                          them; repeatable. group_vars/ and host_vars/ are\n"
    "                          read beside each source and in the playbook dir.\n"
    "  -e, --extra-vars VARS   key=value pairs, a YAML/JSON mapping ('{\"a\": 1}')\n"
    "                          or @FILE; repeatable, later ones win\n"
    "  -l, --limit PATTERN     only these hosts (web, app*, web:&prod, web:!app4,\n"
    "                          a,b, ~regex)\n"
    "      --playbook-dir DIR  where the top-level group_vars/ and host_vars/ are\n"
    "                          (default: the current directory, as Ansible)\n"
    "      --list              all groups and host variables as JSON, the shape of\n"
    "                          'ansible-inventory --list'\n"
    "      --graph [GROUP]     the group tree, as 'ansible-inventory --graph'\n"
    "      --host NAME         one host's variables as JSON\n"
    "\n"
    "Examples:\n"
    "  certfleet inventory -i inventory --graph\n"
    "  certfleet inventory -i inventory --host app3\n"
    "  certfleet inventory -i inventory/production -e certbot_renewal_days=20 --list\n"
    "  certfleet inventory -i inventory -l 'web:!app4' --graph\n"
    "\n"
    "Exit codes: 0 ok, 2 usage error or broken inventory (file:line:column: message).";

/* Keep only the selected hosts in a --list document. */
static void list_restrict(json_t *doc, const struct cf_inventory *inv, const unsigned char *sel)
{
    json_t *hv = json_object_get(json_object_get(doc, "_meta"), "hostvars");
    for (size_t h = 0; h < cf_inventory_host_count(inv); h++)
        if (!sel[h])
            json_object_del(hv, cf_inventory_host_name(inv, h));
    const char *gname;
    json_t *g, *tmp;
    json_object_foreach_safe(doc, tmp, gname, g)
    {
        json_t *hosts = json_object_get(g, "hosts");
        if (!hosts)
            continue;
        json_t *keep = json_array();
        size_t i;
        json_t *hn;
        json_array_foreach(hosts, i, hn)
        {
            size_t idx;
            if (cf_inventory_host_find(inv, json_string_value(hn), &idx) == 0 && sel[idx])
                json_array_append(keep, hn);
        }
        if (json_array_size(keep))
            json_object_set_new(g, "hosts", keep);
        else {
            json_decref(keep);
            json_object_del(g, "hosts");
        }
        if (!json_object_size(g))
            json_object_del(doc, gname);
    }
}

/* Drop lines of hosts outside the limit from --graph text. */
static char *graph_restrict(char *text, const struct cf_inventory *inv, const unsigned char *sel)
{
    struct cf_buf b = CF_BUF_INIT;
    cf_buf_puts(&b, "");
    char *line = text;
    while (line) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = 0;
        const char *name = strrchr(line, '-');
        size_t idx;
        int drop = name && !strchr(line, '@') && cf_inventory_host_find(inv, name + 1, &idx) == 0 &&
                   !sel[idx];
        if (!drop) {
            if (b.len)
                cf_buf_puts(&b, "\n");
            cf_buf_puts(&b, line);
        }
        line = nl ? nl + 1 : NULL;
    }
    free(text);
    return cf_buf_detach(&b, NULL);
}

int cmd_inventory(int argc, char **argv)
{
    char err[CF_ERRLEN] = "";
    struct cf_opts o;
    struct cf_inventory *inv = NULL;
    json_t *extra = NULL, *doc = NULL;
    unsigned char *sel = NULL;
    char *text = NULL;
    const char *playbook_dir = NULL;
    int rc, ret = CF_EXIT_USAGE;

    /* --playbook-dir is this command's own option (ansible-inventory has it
     * too); take it out before the shared parser sees argv. */
    char **av = cf_xcalloc((size_t)argc + 1, sizeof(char *));
    int ac = 0;
    for (int i = 0; i < argc; i++) {
        if (i > 0 && !strcmp(argv[i], "--playbook-dir")) {
            if (i + 1 >= argc) {
                free(av);
                return cf_usage_error("inventory", "option '--playbook-dir' needs a value");
            }
            playbook_dir = argv[++i];
        } else if (i > 0 && !strncmp(argv[i], "--playbook-dir=", 15)) {
            playbook_dir = argv[i] + 15;
        } else if (i > 0 && !strcmp(argv[i], "--")) {
            while (i < argc)
                av[ac++] = argv[i++];
        } else {
            av[ac++] = argv[i];
        }
    }
    memset(&o, 0, sizeof(o));
    rc = cf_opts_parse(ac, av, CF_OPT_INVENTORY | CF_OPT_INVCMD, usage, &o, err);
    if (rc == 1) {
        ret = CF_EXIT_OK;
        goto out;
    }
    if (rc < 0) {
        ret = cf_usage_error("inventory", err);
        goto out;
    }
    if (o.n_args > 0) {
        snprintf(err, sizeof(err), "unexpected argument '%s'", o.args[0]);
        ret = cf_usage_error("inventory", err);
        goto out;
    }
    int actions = (o.list != 0) + (o.graph != 0) + (o.host != NULL);
    if (actions != 1) {
        ret =
            cf_usage_error("inventory", actions ? "use only one of --list, --graph and --host"
                                                : "missing action: use --list, --graph or --host");
        goto out;
    }
    if (o.n_inventories == 0) {
        ret = cf_usage_error("inventory", "missing '-i INVENTORY' (a file or a directory)");
        goto out;
    }
    extra = json_object();
    for (int i = 0; i < o.n_extra_vars; i++) {
        json_t *e;
        if ((rc = cf_extra_vars_parse(o.extra_vars[i], &e, err)) != 0) {
            fprintf(stderr, "certfleet inventory: %s\n", err);
            goto out;
        }
        cf_vars_merge(extra, e);
        json_decref(e);
    }
    if ((rc = cf_inventory_load(o.inventories, o.n_inventories, playbook_dir, &inv, err)) != 0) {
        fprintf(stderr, "certfleet inventory: %s\n", err);
        goto out;
    }
    size_t nh = cf_inventory_host_count(inv);
    if (o.limit) {
        size_t *idx, n;
        if ((rc = cf_inventory_select(inv, o.limit, &idx, &n, err)) != 0) {
            fprintf(stderr, "certfleet inventory: %s\n", err);
            goto out;
        }
        sel = cf_xcalloc(nh ? nh : 1, 1);
        for (size_t i = 0; i < n; i++)
            sel[idx[i]] = 1;
        free(idx);
    }
    if (o.list) {
        if ((rc = cf_inventory_list_json(inv, extra, &doc, err)) != 0) {
            fprintf(stderr, "certfleet inventory: %s\n", err);
            goto out;
        }
        if (sel)
            list_restrict(doc, inv, sel);
        text = cf_inventory_dumps(doc);
    } else if (o.graph) {
        if ((rc = cf_inventory_graph(inv, o.graph_group, &text, err)) != 0) {
            fprintf(stderr, "certfleet inventory: %s\n", err);
            goto out;
        }
        if (sel)
            text = graph_restrict(text, inv, sel);
    } else {
        size_t h;
        if (cf_inventory_host_find(inv, o.host, &h) != 0 || (sel && !sel[h])) {
            fprintf(stderr,
                    "certfleet inventory: host '%s' is not in the inventory%s: see "
                    "'certfleet inventory -i ... --graph'\n",
                    o.host, sel ? " (or outside the limit)" : "");
            goto out;
        }
        if ((rc = cf_inventory_hostvars(inv, h, NULL, extra, &doc, err)) != 0) {
            fprintf(stderr, "certfleet inventory: %s\n", err);
            goto out;
        }
        text = cf_inventory_dumps(doc);
    }
    puts(text);
    ret = CF_EXIT_OK;
out:
    free(text);
    free(sel);
    json_decref(doc);
    json_decref(extra);
    cf_inventory_free(inv);
    cf_vars_reset();
    free(av);
    return ret;
}

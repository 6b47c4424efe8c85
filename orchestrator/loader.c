/*
 * loader.c - inventory + variables + configuration (see loader.h).
 */
#include "cf.h"
#include "loader.h"
#include "util.h"
#include "vars.h"

#include <stdlib.h>
#include <string.h>

int cf_loader_load(const struct cf_opts *o, struct cf_loaded *l, char *err)
{
    json_t *extra = json_object();
    int rc;
    memset(l, 0, sizeof *l);
    for (int i = 0; i < o->n_extra_vars; i++) {
        json_t *e = NULL;
        if ((rc = cf_extra_vars_parse(o->extra_vars[i], &e, err)) != 0)
            goto out;
        cf_vars_merge(extra, e);
        json_decref(e);
    }
    if ((rc = cf_inventory_load((const char *const *)o->inventories, o->n_inventories, NULL,
                                &l->inv, err)) != 0)
        goto out;
    if ((rc = cf_inventory_select(l->inv, o->limit, &l->sel, &l->n, err)) != 0)
        goto out;
    l->vars = cf_xcalloc(l->n ? l->n : 1, sizeof *l->vars);
    l->cfg = cf_xcalloc(l->n ? l->n : 1, sizeof *l->cfg);
    for (size_t i = 0; i < l->n; i++) {
        const char *name = cf_inventory_host_name(l->inv, l->sel[i]);
        if ((rc = cf_inventory_hostvars(l->inv, l->sel[i], cf_config_defaults(), extra, &l->vars[i],
                                        err)) != 0)
            goto out;
        if ((rc = cf_config_host(name, l->vars[i], &l->cfg[i], err)) != 0)
            goto out;
    }
    rc = cf_config_fleet(l->cfg, l->n, &l->fleet, err);
    if (rc == CF_ENOENT)
        rc = 0;
out:
    json_decref(extra);
    if (rc != 0)
        cf_loader_release(l);
    return rc;
}

void cf_loader_release(struct cf_loaded *l)
{
    if (l->fleet)
        cf_fleet_free(l->fleet);
    for (size_t i = 0; l->cfg && i < l->n; i++)
        if (l->cfg[i])
            cf_config_host_free(l->cfg[i]);
    for (size_t i = 0; l->vars && i < l->n; i++)
        json_decref(l->vars[i]);
    free(l->cfg);
    free(l->vars);
    free(l->sel);
    if (l->inv)
        cf_inventory_free(l->inv);
    memset(l, 0, sizeof *l);
}

const char *cf_loader_group(const struct cf_loaded *l, size_t i)
{
    const char *const *groups = NULL;
    size_t ng = cf_inventory_host_groups(l->inv, l->sel[i], &groups);
    return ng ? groups[0] : "ungrouped";
}

/*
 * loader.h - step 1 of every command that reads the fleet: inventory,
 * extra vars, limit, merged variables, typed and validated configuration.
 * Nothing is touched on any host; a failure means exit 2.
 */
#ifndef CF_LOADER_H
#define CF_LOADER_H

#include <jansson.h>
#include <stddef.h>

#include "config.h"
#include "inventory.h"
#include "opts.h"

struct cf_loaded {
    struct cf_inventory *inv;
    size_t *sel;                 /* selected inventory host indices, inventory order */
    size_t n;                    /* number of selected hosts */
    json_t **vars;               /* merged variables per selected host */
    struct cf_host_config **cfg; /* typed configuration per selected host */
    struct cf_fleet *fleet;      /* certificates; NULL when no host has any */
};

/* Load and validate; on error err holds "file:line:column: message" (or
 * the reason) and *l is released.  Returns 0 or a CF_E* code. */
int cf_loader_load(const struct cf_opts *o, struct cf_loaded *l, char *err);
void cf_loader_release(struct cf_loaded *l);

/* The host's first group (inventory order of groups is sorted), for reports. */
const char *cf_loader_group(const struct cf_loaded *l, size_t i);

#endif

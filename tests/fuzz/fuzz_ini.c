/* The INI inventory: the input is written to a file "hosts" in a private
 * directory and loaded as `-i hosts` would be; a loaded inventory is then
 * printed as `inventory --list` and `--graph` do. */
#include "fuzz.h"

#include <stdio.h>
#include <unistd.h>

#include "cf.h"
#include "inventory.h"
#include "vars.h"

static char dir[] = "/tmp/cf-fuzz-ini-XXXXXX";
static char path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (!mkdtemp(dir))
        abort();
    snprintf(path, sizeof path, "%s/hosts", dir);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    FILE *f = fopen(path, "w");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0)
        abort();
    const char *src[] = {path};
    struct cf_inventory *inv = NULL;
    char err[CF_ERRLEN];
    if (cf_inventory_load(src, 1, dir, &inv, err) == 0) {
        json_t *list = NULL;
        if (cf_inventory_list_json(inv, NULL, &list, err) == 0) {
            free(cf_inventory_dumps(list));
            json_decref(list);
        }
        char *g = NULL;
        if (cf_inventory_graph(inv, "all", &g, err) == 0)
            free(g);
        cf_inventory_free(inv);
    }
    cf_vars_reset();
    return 0;
}

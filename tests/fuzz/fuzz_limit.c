/* Limit patterns (-l): globs, regexes, subscripts, '&' and '!' against a
 * fixed inventory.  "@file" patterns read files, so inputs with '@' are
 * skipped to keep runs deterministic. */
#include "fuzz.h"

#include <stdio.h>
#include <unistd.h>

#include "cf.h"
#include "inventory.h"

static struct cf_inventory *inv;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    char dir[] = "/tmp/cf-fuzz-limit-XXXXXX";
    if (!mkdtemp(dir))
        abort();
    char path[64];
    snprintf(path, sizeof path, "%s/hosts", dir);
    FILE *f = fopen(path, "w");
    if (!f)
        abort();
    fputs("solo\n[web]\napp[1:6].example.com\nweb-a\n[db]\ndb1 ansible_port=2222\ndb2\n"
          "[prod:children]\nweb\ndb\n[stage]\nstage[01:03]\n",
          f);
    fclose(f);
    const char *src[] = {path};
    char err[CF_ERRLEN];
    if (cf_inventory_load(src, 1, dir, &inv, err) != 0) {
        fprintf(stderr, "fuzz_limit: %s\n", err);
        abort();
    }
    unlink(path);
    rmdir(dir);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 512 || memchr(data, '@', size))
        return 0;
    char *limit = fuzz_str(data, size);
    size_t *idx = NULL, n = 0;
    char err[CF_ERRLEN];
    if (cf_inventory_select(inv, limit, &idx, &n, err) == 0) {
        for (size_t i = 0; i < n; i++)
            if (idx[i] >= cf_inventory_host_count(inv))
                abort();
        free(idx);
    }
    free(limit);
    return 0;
}

/* The YAML loader (group_vars, host_vars, YAML inventories, -e @file) and
 * the -e key=value parser: any text must give a value or a file:line
 * error, within bounded memory. */
#include "fuzz.h"

#include "cf.h"
#include "vars.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fuzz_str(data, size);
    char err[CF_ERRLEN];
    json_t *v = NULL;
    if (cf_yaml_load_string("fuzz.yml", text, &v, err) == 0) {
        json_t *copy = json_object();
        if (json_is_object(v))
            cf_vars_merge(copy, v);
        json_decref(copy);
    }
    json_decref(v);
    v = NULL;
    if (cf_extra_vars_parse(text, &v, err) == 0)
        json_decref(v);
    cf_vars_reset();
    free(text);
    return 0;
}

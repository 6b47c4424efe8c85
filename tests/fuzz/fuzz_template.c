/* The template engine: the input is template text rendered against
 * variables that are themselves templates (as hostvars are), then the
 * same text as a `when:` condition. */
#include "fuzz.h"

#include "cf.h"
#include "template.h"

static json_t *vars;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    json_error_t je;
    vars = json_loads("{\"s\": \"text\", \"n\": 3, \"f\": 1.5, \"t\": true, \"z\": null,"
                      " \"l\": [\"a\", \"b\", {\"k\": \"{{ s }}\"}],"
                      " \"d\": {\"k\": \"v\", \"root\": \"{{ s }}/x\"},"
                      " \"r1\": \"{{ r2 }}\", \"r2\": \"{{ s ~ s }}\","
                      " \"self\": \"{{ self }}\", \"lst\": \"{{ l }}\","
                      " \"item\": {\"cert_name\": \"c\", \"domains\": [\"a.example\"]}}",
                      0, &je);
    if (!vars)
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fuzz_str(data, size);
    char err[CF_ERRLEN], *out = NULL;
    if (cf_template_render("fuzz.j2", 1, text, vars, &out, err) == 0)
        free(out);
    int truth;
    cf_template_condition("fuzz.yml", 1, text, vars, &truth, err);
    json_t *in = json_string(text), *res = NULL;
    if (in && cf_template_value("fuzz.yml", 1, in, vars, &res, err) == 0)
        json_decref(res);
    json_decref(in);
    free(text);
    return 0;
}

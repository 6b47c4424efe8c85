/* What an ACME server sends back, through the pure functions that read
 * it: problem documents, order and authorization status, resumable
 * orders, timestamps, Retry-After, tokens, alternate chains. */
#include "fuzz.h"

#include "acme.h"
#include "cf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fuzz_str(data, size);
    int64_t t;
    cf_acme_parse_time(text, &t);
    cf_acme_parse_retry_after(text, 1700000000000, &t);
    cf_acme_token_valid(text);
    const char *chains[2] = {text, "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"};
    cf_acme_pick_chain(chains, 2, "ISRG Root X1");

    json_error_t je;
    json_t *j = json_loadb((const char *)data, size, JSON_DECODE_ANY, &je);
    if (j) {
        char *msg = cf_acme_problem_message(j, "a.example");
        free(msg);
        msg = cf_acme_problem_message(j, NULL);
        free(msg);
        const char *status = json_string_value(json_object_get(j, "status"));
        for (int a = 0; a < 2; a++)
            for (int f = 0; f < 2; f++)
                cf_acme_next_step(status, a, f);
        cf_acme_authz_next(status, 0);
        cf_acme_authz_next(status, 1);
        static const char *const doms[] = {"a.example", "*.b.example"};
        char why[CF_ERRLEN];
        cf_acme_resume_usable(j, doms, 2, 1700000000, why);
        const char *exp = json_string_value(json_object_get(j, "expires"));
        if (exp)
            cf_acme_parse_time(exp, &t);
        json_t *ch;
        size_t i;
        json_array_foreach(json_object_get(j, "challenges"), i, ch)
        {
            const char *tok = json_string_value(json_object_get(ch, "token"));
            if (tok)
                cf_acme_token_valid(tok);
        }
        json_decref(j);
    }
    free(text);
    return 0;
}

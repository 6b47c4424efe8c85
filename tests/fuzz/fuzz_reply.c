/* What a host answers to a batch (NUL-separated records from the remote
 * script): the host is untrusted, so any bytes must give results or
 * CF_EPROTO, never a crash.  The first byte picks the exit status. */
#include "fuzz.h"

#include "cf.h"
#include "remote.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[CF_ERRLEN];
    struct cf_rbatch *b = cf_rbatch_new();
    cf_rbatch_stat(b, "/etc/a", err);
    cf_rbatch_stat(b, "/etc/missing", err);
    cf_rbatch_read(b, "/etc/a", 64, err);
    cf_rbatch_mkdir(b, "/etc/d", 0755, "root", "root", err);
    cf_rbatch_write(b, "/etc/w", "hello", 5, 0600, NULL, NULL, err);
    cf_rbatch_symlink(b, "/etc/l", "/etc/w", err);
    cf_rbatch_run(b, "nginx -t", 1, err);
    cf_rbatch_remove(b, "/etc/r", err);
    int exit_status = size ? data[0] % 4 : 0;
    if (size) {
        data++;
        size--;
    }
    cf_rbatch_parse(b, (const char *)data, size, exit_status, "stderr text", 11);
    for (size_t i = 0; i < cf_rbatch_count(b); i++) {
        const struct cf_rop_result *r = cf_rbatch_result(b, i);
        if (r->data && r->len)
            (void)(volatile char)r->data[r->len - 1];
    }
    cf_rbatch_free(b);
    return 0;
}

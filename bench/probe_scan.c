/* bench/probe_scan.c - scan endpoints read from stdin ("addr port sni" per
 * line) with certfleet's probe engine (orchestrator/probe.c) and print one
 * "sni serial notAfter" line each; the timing summary goes to stderr.
 * Used by bench/status while 'certfleet status' cannot run on its own. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "probe.h"
#include "util.h"

int main(int argc, char **argv)
{
    int forks = argc > 1 ? atoi(argv[1]) : 50;
    size_t n = 0, cap = 1024;
    struct cf_probe_req *reqs = calloc(cap, sizeof *reqs);
    char addr[64], sni[256];
    int port;
    while (scanf("%63s %d %255s", addr, &port, sni) == 3) {
        if (n == cap)
            reqs = realloc(reqs, (cap *= 2) * sizeof *reqs);
        reqs[n++] = (struct cf_probe_req){.host = strdup(addr),
                                          .address = strdup(addr),
                                          .port = port,
                                          .sni = strdup(sni),
                                          .timeout_ms = 10000};
    }
    struct cf_probe_result *res = calloc(n ? n : 1, sizeof *res);
    char err[CF_ERRLEN];
    uint64_t t0 = cf_mono_ms();
    if (cf_probe_run(reqs, n, forks, res, err) != 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    uint64_t ms = cf_mono_ms() - t0;
    size_t good = 0;
    for (size_t i = 0; i < n; i++) {
        if (res[i].status == 0)
            good++;
        printf("%s %s %lld\n", reqs[i].sni, res[i].status ? "-" : res[i].serial,
               (long long)res[i].not_after);
    }
    fprintf(stderr, "probe_scan: %zu endpoints, %zu ok, %llu ms\n", n, good,
            (unsigned long long)ms);
    return good == n ? 0 : 1;
}

/*
 * apply.h - the pipeline behind `certfleet apply`, `renew` and `plan`
 * (design.md "Pipeline of apply"):
 *
 *   1. load and validate inventory and variables, resolve the limit;
 *   2. connect to every host (at most --forks at once) and converge the
 *      certbot role; a host without any certificate yet gets the store's
 *      current version or a self-signed placeholder so `nginx -t` passes;
 *      then the handlers (test, reload) when something changed;
 *   3. per certificate, once all its hosts are prepared: lock, decide,
 *      and issue through ACME with the tokens on every host of it;
 *   4. push each new version to its hosts: write, swap, test, reload or
 *      roll back, and prove over TLS that the new serial is served;
 *   5. record the run, alert, and print the recap (or JSON).
 *
 * Everything after step 1 runs on one libuv loop.
 */
#ifndef CF_APPLY_H
#define CF_APPLY_H

#include "opts.h"

enum cf_apply_mode {
    CF_MODE_APPLY, /* prepare hosts + certificates */
    CF_MODE_RENEW, /* certificates only */
    CF_MODE_PLAN,  /* apply --check */
};

/* Run the pipeline; returns the process exit code (enum cf_exit). */
int cf_apply_run(const struct cf_opts *o, enum cf_apply_mode mode, const char *command);

/* Where the certbot role lives: $CERTFLEET_ROLES_DIR, else roles/ beside
 * the executable (a source tree), else ../share/certfleet/roles relative
 * to it (an installed tree).  Returns a static string. */
const char *cf_apply_roles_dir(void);

#endif

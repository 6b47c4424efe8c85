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
#include "report.h"

enum cf_apply_mode {
    CF_MODE_APPLY, /* prepare hosts + certificates */
    CF_MODE_RENEW, /* certificates only */
    CF_MODE_PLAN,  /* apply --check */
};

/* Run the pipeline and fill *report (initialised here; the caller
 * prints it and releases it with cf_report_release, whatever the exit
 * code).  Returns the process exit code (enum cf_exit): CF_EXIT_USAGE
 * with err set when nothing was touched (no inventory, a config error, an
 * unusable state directory), 128 + the signal after SIGINT/SIGTERM. */
int cf_apply_run(const struct cf_opts *o, enum cf_apply_mode mode, const char *command,
                 struct cf_report *report, char *err);

/* Where the certbot role lives: $CERTFLEET_ROLES_DIR, else roles/ beside
 * the executable (a source tree), else ../share/certfleet/roles relative
 * to it (an installed tree).  Returns a static string. */
const char *cf_apply_roles_dir(void);

#endif

/*
 * pipeline_int.h - private to orchestrator/pipeline/: the data of one run
 * of apply / renew / plan and the transitions between its phases.
 *
 * One struct run owns everything of a run.  Hosts (struct rhost) and
 * certificates (struct rcert) point at each other through the run's
 * arrays, which never move after setup.  Each host and each certificate
 * has an explicit state that changes only through pl_host_to() and
 * pl_cert_to(), which log every transition at -vv; every asynchronous
 * step takes a small context that ends through one *_finish() of its
 * phase, so no path forgets to release the host queue or the context.
 *
 *   run.c      load, records, the loop, finish (cf_apply_run)
 *   prepare.c  per host: converge the role, inspect the live links,
 *              install a first version, handlers
 *   issue.c    per certificate: lock, decide, order (and the journal)
 *   solve.c    the ACME solver: tokens on every host, or the DNS hook
 *   push.c     write, swap, test, reload or roll back, in batches
 *   prove.c    TLS probes until the new serial is served
 *
 * The decisions (which hosts, which batch, which key, what to restore)
 * are pure functions in plan.h, unit-tested on their own.
 */
#ifndef CF_PIPELINE_INT_H
#define CF_PIPELINE_INT_H

#include "cf.h"
#include "acme.h"
#include "apply.h"
#include "config.h"
#include "db.h"
#include "hostq.h"
#include "http.h"
#include "loader.h"
#include "notify.h"
#include "plan.h"
#include "probe.h"
#include "renew.h"
#include "report.h"
#include "role.h"
#include "store.h"
#include "x509.h"

#include <openssl/evp.h>
#include <uv.h>

#define LE_STAGING "https://acme-staging-v02.api.letsencrypt.org/directory"

/* cert, chain, fullchain, privkey: the order of CF_PLAN_LIVE_FILES */
extern const char *const pl_live_names[CF_PLAN_LIVE_FILES];

struct run;
struct rcert;

enum pl_host_state {
    PL_HOST_QUEUED,      /* waiting for its session (under --forks) */
    PL_HOST_CONVERGING,  /* role tasks */
    PL_HOST_INSPECTING,  /* live links and the served serial */
    PL_HOST_INSTALLING,  /* a first version or a placeholder */
    PL_HOST_HANDLERS,    /* test, then reload */
    PL_HOST_READY,       /* prepared: certificates may use it */
    PL_HOST_FAILED,      /* prepared, but a step failed */
    PL_HOST_UNREACHABLE, /* no session */
};

enum pl_cert_state {
    PL_CERT_WAITING,  /* for its hosts to be prepared */
    PL_CERT_LOCKING,  /* the store's per-certificate lock */
    PL_CERT_DECIDING, /* ARI, then the renewal decision */
    PL_CERT_QUEUED,   /* waiting for an order slot (--acme-concurrency) */
    PL_CERT_ORDERING, /* the ACME order is under way */
    PL_CERT_PUSHING,  /* batches of hosts get the store's current version */
    PL_CERT_DONE,
    PL_CERT_FAILED,
};

/* One certificate on one host. */
struct hostcert {
    struct rcert *cert;
    const struct cf_cert_entry *entry;
    char *live_serial;       /* serial of live/<cert>/cert.pem; NULL = none */
    int64_t live_not_before; /* of that certificate, for the downgrade rule */
    int live_placeholder;    /* the live certificate is a placeholder */
    /* live link targets before this run's push: what a rollback restores
     * (set by the inspection, or by the first install of this run) */
    char *prev_target[CF_PLAN_LIVE_FILES];
    int failed;
    /* what the host served before this run's push (prove.c) */
    int probed;
    char served_serial[132]; /* "" when the probe failed */
    char *served_error;      /* the probe's error, NULL when it answered */
};

struct rhost {
    struct run *run;
    size_t idx;
    enum pl_host_state state;
    struct cf_host_config *cfg;
    json_t *vars;
    struct cf_hostq *q;
    size_t rep; /* index into run->report.hosts */
    struct hostcert *hc;
    size_t n_hc;
    int need_handlers; /* the role changed something or a certificate was installed */
    char **notified;
    size_t n_notified;
};

struct acme_ent {
    char *url;
    struct cf_acme *acme;
};

struct rcert {
    struct run *run;
    enum pl_cert_state state;
    const struct cf_fleet_cert *fc;
    size_t rep; /* index into run->report.certs */
    struct rhost **hosts;
    struct hostcert **hcs;
    size_t n_hosts;
    size_t pending; /* hosts still preparing */
    struct cf_store_lock_req lockreq;
    int locked;
    struct cf_store_cert cur;
    int have_cur;
    char key_type[CF_KEYTYPE_LEN];
    struct cf_acme *acme;
    const char *acme_url; /* borrowed from the run's acme list */
    EVP_PKEY *key;
    enum cf_renew_decision decision;
    int forced;
    /* push */
    struct cf_store_pems pems;
    int have_pems;
    size_t *targets; /* indices into hosts needing the new version */
    size_t n_targets, next_target, inflight, failed_hosts;
    int renewed;            /* a new version was issued in this run */
    int64_t prev_not_after; /* the replaced version's expiry, for alerts */
};

struct run {
    uv_loop_t loop;
    const struct cf_opts *o;
    enum cf_apply_mode mode;
    int check;
    struct cf_loaded ld;    /* inventory, variables, configuration */
    struct cf_fleet *fleet; /* = ld.fleet */
    struct cf_role *role;
    struct cf_fleetq *fq;
    struct rhost *hosts;
    size_t n_hosts;
    struct rcert *certs;
    size_t n_certs;
    cf_http *http;
    struct acme_ent *acmes;
    size_t n_acmes;
    struct cf_store store;
    int have_store;
    struct cf_db db;
    int have_db;
    int64_t run_id;
    struct cf_report *report; /* the caller's */
    size_t hosts_left, certs_left;
    int finishing;
    int stopping;               /* SIGINT/SIGTERM: start nothing new */
    int progress;               /* draw a progress line on stderr */
    size_t orders_inflight;     /* ACME orders under way (--acme-concurrency) */
    struct rcert **order_queue; /* certificates waiting for an order slot */
    size_t n_order_queue, order_queue_head;
    cf_notify *events;
    uv_signal_t sigint, sigterm;
    int signals_init;
    int signal_received; /* SIGINT or SIGTERM, 0 if none */
};

/* --- run.c */
void pl_host_to(struct rhost *h, enum pl_host_state st);
void pl_cert_to(struct rcert *c, enum pl_cert_state st);
int pl_host_ready(const struct rhost *h);
struct cf_host_report *pl_hrep(struct rhost *h);
struct cf_cert_report *pl_crep(struct rcert *c);
void pl_progress(struct run *r);
void pl_run_maybe_finish(struct run *r);

/* --- prepare.c */
void pl_job_prepare(struct cf_hostq *q, cf_ssh *s, int status, void *arg);

/* --- issue.c: all hosts of the certificate are prepared */
void pl_cert_host_prepared(struct rcert *c);
/* The certificate's work is over: failed when detail != NULL (recorded
 * on the report and alerted for each of its hosts).  Releases the lock,
 * the PEMs and the key; runs once. */
void pl_cert_finish(struct rcert *c, const char *detail);
void pl_cert_fail(struct rcert *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void pl_cert_load_current(struct rcert *c);

/* --- solve.c */
void pl_solver_present(void *arg, const struct cf_acme_challenge *ch, cf_acme_solver_done done,
                       void *ctx);
void pl_solver_cleanup(void *arg, const struct cf_acme_challenge *ch, cf_acme_solver_done done,
                       void *ctx);

/* --- push.c */
void pl_push_plan(struct rcert *c);
char *pl_live_path(const struct rhost *h, const char *cert, const char *file);
int pl_add_version_writes(struct cf_rbatch *b, const struct rhost *h, const char *cert, int version,
                          const char *certpem, const char *chainpem, const char *fullchain,
                          const char *key, size_t keylen, char *err);
const char *pl_batch_error(const struct cf_rbatch *b, size_t from, size_t to);
char *pl_run_output(const struct cf_rop_result *res);
/* "STEP on host 'NAME' (ADDR:PORT) failed: DETAIL" where DETAIL is the
 * session's own message (from a failed op of b, which may be NULL, or the
 * host's connection error), else the status text; just "STEP failed:
 * DETAIL" when DETAIL names the host already.  Caller frees. */
char *pl_host_error(const struct rhost *h, const char *step, int status, const struct cf_rbatch *b);

/* --- prove.c: one host's push after its reload */
struct push {
    struct rcert *c;
    size_t k; /* host index in the certificate */
    struct rhost *h;
    struct cf_hostq *q;
    cf_ssh *s;
    struct cf_rbatch *b;
    size_t test_op;
    char *fail_msg;
    size_t probes_left;
    char probe_err[CF_ERRLEN];
    uint64_t t0;
    struct cf_probe_req *preqs;
    char **snis;
    uint64_t deadline; /* monotonic ms: --verify-timeout from the reload */
    int confirm_left;  /* consecutive matching rounds still wanted */
    int confirm_bad;   /* mismatches in the current confirmation round */
    uv_timer_t timer;  /* between confirmation rounds */
    int timer_init;
};
void pl_push_prove(struct push *p);
/* Probe, once, what every prepared host of c that serves it (a service
 * uses it) presents over TLS, into its hostcert; then call next(c). */
void pl_cert_probe_served(struct rcert *c, void (*next)(struct rcert *c));
/* Does a service of the host (an nginx server block) use the certificate? */
int pl_host_serves(const struct rhost *h, const char *cert);
void pl_push_rollback(struct push *p, const char *why, int reload);
/* One host's push is over; the context is freed (after its timer closed). */
void pl_push_finish(struct push *p, int ok, const char *msg);

#endif

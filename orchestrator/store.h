/*
 * store.h - the central certificate store under the state directory
 * (default /var/lib/certfleet, --state-dir, $CERTFLEET_STATE_DIR), in
 * certbot's layout so existing tooling can read it:
 *
 *   accounts/                       the ACME module's account files
 *   archive/<cert>/{cert,chain,fullchain,privkey}N.pem
 *   live/<cert>/<kind>.pem -> ../../archive/<cert>/<kind>N.pem
 *   renewal/<cert>.conf             certbot-like ini (domains, key type, server)
 *   locks/<cert>.lock               flock per certificate, "pid N on HOST"
 *   state.db                        see db.h
 *
 * Directories are 0700, private keys 0600, other files 0644; every file
 * write is atomic (temporary file + rename) and every live link is swapped
 * by rename.  Versions only grow: a new version is max(archive N) + 1, so a
 * version number never names two different certificates.
 *
 * Certificate names are checked before they become part of a path:
 * [A-Za-z0-9][A-Za-z0-9._-]*, at most 200 bytes, no "..".
 */
#ifndef CF_STORE_H
#define CF_STORE_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "cf.h"
#include "x509.h"

struct cf_store {
    char *dir;    /* absolute state directory (owned) */
    int readonly; /* opened with CF_STORE_READONLY: never creates or chmods */
};

enum {
    CF_STORE_READONLY = 1 << 0, /* for listing commands: create nothing */
};

/* Open the store at dir.  Read-write (flags 0): creates the directory
 * tree with mode 0700 and repairs modes that drifted (directories 0700,
 * archived private keys 0600), so a store copied with a lax umask is made
 * safe again.  CF_STORE_READONLY: the directory must exist (CF_ENOENT
 * otherwise) and nothing is changed.  Release with cf_store_release(). */
int cf_store_open(struct cf_store *s, const char *dir, unsigned flags, char *err);
void cf_store_release(struct cf_store *s);

/* 1 when name is acceptable as a certificate name (see above). */
int cf_store_name_ok(const char *name);

/* One certificate as the store sees it.  Strings owned by the struct;
 * release with cf_store_cert_release().  Paths are the live/ links. */
struct cf_store_cert {
    char *name;
    int version;   /* current version (live link target), 0 = none */
    int have_info; /* info parsed from live cert.pem (version > 0) */
    struct cf_cert_info info;
    char **domains; /* [renewalparams] domains; NULL when no conf */
    size_t n_domains;
    char key_type[CF_KEYTYPE_LEN]; /* from the renewal conf; "" when unknown */
    char *server;                  /* ACME directory URL from the conf, or NULL */
    char *account;                 /* ACME account URL from the conf, or NULL */
    char *cert_path;
    char *chain_path;
    char *fullchain_path;
    char *privkey_path;
    char *renewal_path;
};
void cf_store_cert_release(struct cf_store_cert *c);

/* The current state of one certificate.  A certificate the store does not
 * know yields 0 with c->version == 0 (and no info).  CF_EINVAL for a bad
 * name; CF_EIO when the live certificate exists but cannot be read or
 * parsed (err names the file).  *c is always safe to release. */
int cf_store_get(struct cf_store *s, const char *name, struct cf_store_cert *c, char *err);

/* PEM texts of one version; release with cf_store_pems_release(), which
 * wipes the private key. */
struct cf_store_pems {
    int version;
    char *cert;
    char *chain;
    char *fullchain;
    char *privkey; /* secret */
    size_t privkey_len;
};
void cf_store_pems_release(struct cf_store_pems *p);

/* Read version `version` of a certificate from archive/ (0 = the current
 * live version).  CF_ENOENT when it does not exist. */
int cf_store_read(struct cf_store *s, const char *name, int version, struct cf_store_pems *p,
                  char *err);

/* What the renewal conf records about a certificate. */
struct cf_store_params {
    const char *const *domains; /* the wanted domain set, in configured order */
    size_t n_domains;
    const char *key_type; /* normalised, "ecdsa-256"; NULL = from the key */
    const char *server;   /* ACME directory URL; may be NULL */
    const char *account;  /* account id; may be NULL */
};

/* Store a new version: checks the key matches the leaf (cf_x509_check_bundle
 * without domain or expiry checks), writes archive/<name>/<kind>N.pem (N = the
 * highest archived version + 1), then swaps the four live links, then
 * writes the renewal conf.  *version (may be NULL) receives N.  The caller
 * should hold the certificate's lock.  Not available on a read-only store. */
int cf_store_add(struct cf_store *s, const char *name, const char *fullchain_pem,
                 const char *key_pem, const struct cf_store_params *params, int *version,
                 char *err);

/* Point the live links at an existing archived version (rollback of the
 * central store; the renewal conf is left alone). */
int cf_store_set_live(struct cf_store *s, const char *name, int version, char *err);

/* Names of all certificates (those with a live/ or renewal/ entry),
 * sorted.  *names is a NULL-terminated array owned by the caller; free
 * with cf_store_names_free(). */
int cf_store_list(struct cf_store *s, char ***names, size_t *n, char *err);
void cf_store_names_free(char **names);

/* ---- per-certificate lock ------------------------------------------------
 * flock(2) on locks/<cert>.lock, so it dies with the process that held it.
 * The holder writes "pid N on HOST" into the file for the message others
 * see. */
struct cf_store_lock {
    int fd; /* -1 when not held */
    char *path;
    char *name;
};
#define CF_STORE_LOCK_INIT                                                                         \
    {                                                                                              \
        -1, NULL, NULL                                                                             \
    }

/* Try once, never blocks.  0 = held (release with cf_store_unlock);
 * CF_ELOCKED with "certificate 'x' is locked by pid N on HOST" in err;
 * CF_EIO / CF_EINVAL otherwise.  Not available on a read-only store. */
int cf_store_trylock(struct cf_store *s, const char *name, struct cf_store_lock *lk, char *err);

/* Release the lock (idempotent; a zeroed or never-held struct is a
 * no-op); the file stays, emptied. */
void cf_store_unlock(struct cf_store_lock *lk);

/* Without taking it: 1 when another open file holds the lock, with the
 * holder's text ("pid N on HOST") in holder; 0 when free or absent. */
int cf_store_lock_holder(struct cf_store *s, const char *name, char holder[256]);

/* Waiting for a lock on the loop: cf_store_lock_start() tries at once and
 * then every CF_STORE_LOCK_RETRY_MS from a uv_timer_t until timeout_s
 * (0 = try once).  cb runs exactly once, after the timer handle is closed,
 * so the request may be freed from cb:  status 0 (req->lock is held),
 * CF_ELOCKED / CF_ETIMEDOUT (err holds "certificate 'x' is locked by pid N
 * on HOST; waited Ns (--lock-timeout)"), or another CF_E*.  A start that
 * returns an error never calls cb.  req must stay valid until cb. */
#define CF_STORE_LOCK_RETRY_MS 250
struct cf_store_lock_req;
typedef void (*cf_store_lock_cb)(struct cf_store_lock_req *req, int status, const char *err);
struct cf_store_lock_req {
    uv_timer_t timer; /* embedded; closed before cb */
    struct cf_store *store;
    char *name;
    uint64_t deadline_ms; /* monotonic */
    int timeout_s;
    int status;
    int closing;               /* the timer is being closed; cb follows */
    struct cf_store_lock lock; /* held on status 0; caller unlocks */
    cf_store_lock_cb cb;
    void *data; /* for the caller */
    char err[CF_ERRLEN];
};
int cf_store_lock_start(uv_loop_t *loop, struct cf_store *s, const char *name, int timeout_s,
                        struct cf_store_lock_req *req, cf_store_lock_cb cb, void *data, char *err);

/* Stop waiting: cb runs (after the close) with CF_ECANCELED.  No-op when
 * the request already finished. */
void cf_store_lock_cancel(struct cf_store_lock_req *req);

#endif

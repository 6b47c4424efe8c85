/*
 * journal.h - what a run has in flight, kept in the state directory so a
 * run killed at any moment (SIGKILL, a power cut) leaves the next run
 * enough to finish the work instead of repeating it:
 *
 *   journal/orders/<cert>.json   the ACME order of a certificate: the
 *                                directory, the order URL once the CA
 *                                gave one, and the order's private key
 *                                (PEM), written before the order is
 *                                placed, so an order the CA finalized
 *                                can be downloaded and used (0600)
 *   journal/tokens/<sha256(host)>  one line per ACME token file written
 *                                on that host and not yet removed
 *
 * Every write is atomic (temporary file + rename, then the directory is
 * synced).  Certificate names are checked with cf_store_name_ok before
 * they become part of a path; host names are hashed.
 */
#ifndef CF_JOURNAL_H
#define CF_JOURNAL_H

#include <stddef.h>
#include <stdint.h>

#include "cf.h"

struct cf_journal_order {
    char *directory_url;
    char *order_url; /* NULL until the CA created the order */
    char *key_pem;   /* wiped on release */
    size_t key_len;
    int64_t started; /* Unix seconds */
};

/* Record (or update) the order of certificate cert.  order_url may be
 * NULL (not created yet).  Returns 0 or CF_E* with err set. */
int cf_journal_order_put(const char *state_dir, const char *cert, const char *directory_url,
                         const char *order_url, const char *key_pem, size_t key_len, char *err);

/* The journaled order of cert into *out (fields owned by *out, release
 * with cf_journal_order_release).  CF_ENOENT when there is none;
 * CF_EPROTO when the file is unreadable (it is then best removed). */
int cf_journal_order_get(const char *state_dir, const char *cert, struct cf_journal_order *out,
                         char *err);
void cf_journal_order_release(struct cf_journal_order *o);

/* Forget the order of cert (it was stored, or it failed for good).
 * A missing entry is not an error. */
int cf_journal_order_del(const char *state_dir, const char *cert, char *err);

/* Tokens: add or remove one path of host; cf_journal_tokens gives every
 * journaled path of host (*paths a NULL-terminated array the caller
 * frees with cf_journal_tokens_free; *n may be 0). */
int cf_journal_token_add(const char *state_dir, const char *host, const char *path, char *err);
int cf_journal_token_del(const char *state_dir, const char *host, const char *path, char *err);
int cf_journal_tokens(const char *state_dir, const char *host, char ***paths, size_t *n, char *err);
void cf_journal_tokens_free(char **paths, size_t n);

#endif

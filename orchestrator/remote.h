/*
 * remote.h - the small set of remote primitives, batched.
 *
 * A batch collects operations and runs them all in ONE cf_ssh_exec round
 * trip: a fixed POSIX sh script (constant text on the command line, wrapped
 * in `sudo -n` when become is set) reads the operations as data on stdin and
 * prints one result record per operation.  No configuration or server value
 * ever becomes part of a command line or is evaluated by the shell.
 *
 * Every path and symlink target is checked with cf_remote_check_path()
 * when it is added (a symlink target may also be relative: leading "../"
 * components, then what an absolute path may hold, as certbot's live/
 * links are); a hostile value makes the add fail (CF_EINVAL, message
 * in err) so nothing of the batch ever runs.
 */
#ifndef CF_REMOTE_H
#define CF_REMOTE_H

#include <stddef.h>
#include <sys/types.h>

#include "cf.h"
#include "ssh.h"

enum cf_rop_kind {
    CF_ROP_STAT,    /* lstat: type, mode, owner, group, size, sha256, link target */
    CF_ROP_READ,    /* stat + content (capped) */
    CF_ROP_MKDIR,   /* mkdir -p, then chmod/chown */
    CF_ROP_WRITE,   /* temp file in the same dir + fsync + chmod/chown + rename */
    CF_ROP_SYMLINK, /* create or atomically replace (temp link + rename) */
    CF_ROP_REMOVE,  /* remove a file or symlink; absent is fine */
    CF_ROP_RUN,     /* sh -c COMMAND (operator-supplied, passed as data) */
};

struct cf_rstat {
    int exists;
    char type;      /* 'f' file, 'd' directory, 'l' symlink, 'o' other */
    unsigned mode;  /* permission bits, e.g. 0644 */
    char owner[64]; /* user name */
    char group[64]; /* group name */
    long long size;
    char sha256[65];   /* for files; "" otherwise */
    char *link_target; /* for symlinks; NULL otherwise */
};

struct cf_rop_result {
    int status;         /* 0, or CF_E* when the operation failed */
    struct cf_rstat st; /* STAT/READ; and the state after MKDIR/WRITE/SYMLINK */
    char *data;         /* READ: content; RUN: stdout */
    size_t len;
    char *err_text;  /* the failing command's stderr / a message; NULL if none */
    int exit_status; /* RUN: the command's exit status */
    int skipped;     /* not run because an earlier stop_on_fail op failed */
};

struct cf_rbatch;

struct cf_rbatch *cf_rbatch_new(void);
void cf_rbatch_free(struct cf_rbatch *b);

/* Each add returns the operation's index (>= 0) or CF_EINVAL with err set.
 * owner/group may be NULL (leave as is).  Data is copied; for secrets use
 * cf_rbatch_write, which wipes its copy when the batch is freed. */
int cf_rbatch_stat(struct cf_rbatch *b, const char *path, char *err);
int cf_rbatch_read(struct cf_rbatch *b, const char *path, size_t max, char *err);
int cf_rbatch_mkdir(struct cf_rbatch *b, const char *path, unsigned mode, const char *owner,
                    const char *group, char *err);
int cf_rbatch_write(struct cf_rbatch *b, const char *path, const void *data, size_t len,
                    unsigned mode, const char *owner, const char *group, char *err);
int cf_rbatch_symlink(struct cf_rbatch *b, const char *path, const char *target, char *err);
int cf_rbatch_remove(struct cf_rbatch *b, const char *path, char *err);
/* stop_on_fail: when the command exits non-zero, the remaining operations
 * of the batch are skipped (result.skipped = 1). */
int cf_rbatch_run(struct cf_rbatch *b, const char *command, int stop_on_fail, char *err);

size_t cf_rbatch_count(const struct cf_rbatch *b);
const struct cf_rop_result *cf_rbatch_result(const struct cf_rbatch *b, size_t idx);

typedef void (*cf_remote_cb)(struct cf_rbatch *b, int status, void *arg);

/* Run the batch on an open session. cb runs once; status is 0 when the
 * script ran and reported (each op has its own status), or the CF_E* of the
 * transport failure (see cf_ssh_error). */
int cf_remote_run(cf_ssh *s, struct cf_rbatch *b, int become, cf_remote_cb cb, void *arg);

/* The exact bytes cf_remote_run sends on stdin (*out is the caller's to
 * free; it may hold key material, so wipe it).  Exposed for tests. */
int cf_rbatch_encode(const struct cf_rbatch *b, char **out, size_t *len);

/* The constant command line of every batch: `sh -c '<script>'`, behind
 * `sudo -n ` when become is set.  Caller frees.  Exposed for tests. */
char *cf_remote_command(int become);

/* Fill every operation's result from the batch script's stdout (out/len)
 * and its exit status and stderr (used in messages when the script stopped
 * early).  The host is untrusted: a malformed record fails every operation
 * with CF_EPROTO and returns CF_EPROTO; otherwise returns 0.  Exposed for
 * tests; cf_remote_run calls it. */
int cf_rbatch_parse(struct cf_rbatch *b, const char *out, size_t len, int exit_status,
                    const char *err_text, size_t err_len);

/* Accept only absolute paths made of [A-Za-z0-9._/+@=,:~-] with no ".."
 * component, no control characters, no quotes, no "$" or backtick, at most
 * 4096 bytes.  what names the value in the message ("path", "webroot"...). */
int cf_remote_check_path(const char *path, const char *what, char *err);

#endif

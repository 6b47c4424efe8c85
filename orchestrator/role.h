/*
 * role.h - an Ansible-style role (roles/<name>/{tasks,handlers,templates})
 * over a deliberately small set of modules, rendered per host into desired
 * resources and converged over one SSH session in two batched round trips.
 *
 * Modules (task keys, also under their ansible.builtin. names):
 *   file:     path (dest, name), state: directory|absent|link|file, mode,
 *             owner, group, src (state: link)
 *   copy:     dest, content, mode, owner, group
 *   template: src (under templates/), dest, mode, owner, group
 *   link:     path (dest) + src (the target)
 *   command:  free-form string, or {cmd: STRING | argv: [..], creates: PATH}
 * Task keys: name, loop (with_items), loop_control.loop_var, when (string,
 * bool or list: all must hold), notify (string or list), no_log, tags;
 * handlers also listen.
 *
 * Owned destinations.  A copy or template task tagged certfleet_owns_dest
 * (`tags: [certfleet_owns_dest]`; plain Ansible ignores the tag) owns its
 * dest: for every item whose `when` is false its dest is still rendered,
 * and the file there is removed (a CF_RES_ABSENT resource with unwanted
 * set, reported changed and notifying like a write).  So a file the role
 * stops wanting (certbot_http_redirect: false after true) does not linger.
 * The dest of such a task must render whether or not `when` holds.  Only
 * tagged tasks own their dest: an untagged task that is skipped leaves the
 * host alone, because the operator's configuration may include its file.
 *
 * Every absolute path and symlink target is joined behind the host's
 * certfleet_host_root and checked with cf_remote_check_path(); a hostile
 * value fails the whole host before anything runs, naming the task, the
 * variable value and the file:line.
 *
 * Ownership: a struct cf_role is immutable after cf_role_load() and may be
 * shared by every host's converge; plans and results belong to the caller
 * and are freed with their _free functions.
 */
#ifndef CF_ROLE_H
#define CF_ROLE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "cf.h"
#include "remote.h"
#include "report.h" /* enum cf_task_status */
#include "ssh.h"

struct cf_role;
struct cf_role_undo;

/* Load roles_dir/name/{tasks,handlers}/main.yml and every file under
 * templates/ (read once, so rendering does no I/O).  A missing handlers
 * file is fine.  Errors are "file:line: what is wrong".  *out is owned by
 * the caller (cf_role_free). */
int cf_role_load(const char *roles_dir, const char *name, struct cf_role **out, char *err);
void cf_role_free(struct cf_role *r);

/* Number of tasks and a task's name (for plans and reports). */
size_t cf_role_task_count(const struct cf_role *r);
const char *cf_role_task_name(const struct cf_role *r, size_t i);

/* ---- rendering: hostvars in, desired resources out (pure) */

enum cf_res_kind {
    CF_RES_DIR,     /* directory with mode/owner/group */
    CF_RES_FILE,    /* regular file with content */
    CF_RES_LINK,    /* symlink path -> target */
    CF_RES_ABSENT,  /* nothing at path */
    CF_RES_COMMAND, /* run command unless `creates` exists */
};

enum cf_res_action {
    CF_ACT_NONE,  /* already as desired */
    CF_ACT_APPLY, /* create or replace (mkdir/write/symlink/remove/run) */
};

struct cf_resource {
    enum cf_res_kind kind;
    char *path;    /* host path, joined with certfleet_host_root; COMMAND: NULL */
    char *target;  /* LINK: target, joined likewise */
    char *content; /* FILE */
    size_t len;
    int mode;    /* permission bits, or -1 = leave as is */
    char *owner; /* NULL = leave as is */
    char *group;
    char *command; /* COMMAND: text for sh -c (argv lists are quoted) */
    char *creates; /* COMMAND: joined path, or NULL */
    int unwanted;  /* ABSENT: the dest of an owning task whose `when` is false */
    /* filled by cf_role_diff */
    enum cf_res_action action;
    char *why; /* "content differs", "mode 0644 -> 0755", ... */
};

struct cf_task_plan {
    char *name;
    int skipped; /* `when` false for every item, or an empty loop (an owning
                    task then still has its unwanted dests as resources) */
    int no_log;  /* never show content (diffs, messages) */
    struct cf_resource *res;
    size_t n_res;
    char **notify;
    size_t n_notify;
};

struct cf_role_plan {
    struct cf_task_plan *tasks;
    size_t n_tasks;
};

/* Render every task of the role (handlers = 0) or every handler (1) for
 * one host.  Pure: hostvars (a JSON object: role defaults already merged
 * under the inventory's variables) in, resources out.  Returns 0 or
 * CF_EINVAL with "file:line: task 'name': what is wrong" in err (undefined
 * variable, unsafe path, wrong type). */
int cf_role_render(const struct cf_role *r, int handlers, const json_t *hostvars,
                   struct cf_role_plan **out, char *err);
void cf_role_plan_free(struct cf_role_plan *p);

/* Total resources of a plan, in task order (the index space of actual[]). */
size_t cf_role_plan_size(const struct cf_role_plan *p);

/* ---- results */

struct cf_task_result {
    char *name;
    enum cf_task_status status;
    int changed;
    char *msg;   /* what changed or why it failed; never key material */
    char *diff;  /* unified diff when diff was asked and a file changed; else NULL */
    uint64_t ms; /* wall time of the round trips this task took part in */
};

struct cf_role_result {
    struct cf_task_result *tasks;
    size_t n_tasks;
    int ok, changed, failed, skipped;
    char **notified; /* handler names/topics notified by changed tasks, in order, unique */
    size_t n_notified;
    char error[CF_ERRLEN]; /* host-level failure (transport, render), "" otherwise */
    /* cf_role_converge: what the changes replaced, for cf_role_undo(); NULL
     * when nothing was written.  The caller may take it (and set NULL). */
    struct cf_role_undo *undo;
    /* cf_role_run_handlers: the command of the handler that failed, or NULL */
    char *failed_command;
};

void cf_role_result_free(struct cf_role_result *res);

/* Pure diff: compare the plan's desired resources with what the inspect
 * batch found.  actual[k] is the STAT/READ result for resource k in plan
 * order (cf_role_plan_size entries; for COMMAND resources the STAT of
 * `creates`, or an entry with st.exists = 0 when there is none).  Sets each
 * resource's action/why and returns per-task results (status ok, changed
 * or skipped; ms = 0) in *out.  With want_diff, changed files get a
 * unified diff from actual[k].data (a READ result) to the desired content,
 * except for no_log tasks and private keys. */
int cf_role_diff(const struct cf_role_plan *p, const struct cf_rop_result *actual, int want_diff,
                 struct cf_role_result **out);

/* A unified diff (3 lines of context) between two texts, labelled
 * "a/<path>" and "b/<path>"; NULL when they are equal.  Caller frees. */
char *cf_role_unified_diff(const char *path, const char *a, size_t alen, const char *b,
                           size_t blen);

/* ---- converging a host */

struct cf_role_opts {
    int check;  /* --check: inspect and report, write nothing */
    int diff;   /* --diff: unified diffs of file content */
    int become; /* sudo -n on the host */
    /* Optional (cf_role_converge only): more operations for the converge's
     * first batch, the inspection every run makes, so a host with nothing
     * to change costs one round trip in all.  extra_add adds them to b
     * (returns 0 or CF_E* with err); extra_done reads their results (the
     * first one at index first) before b is freed, only when the batch
     * ran.  Both get extra_arg.  Their ops must not change what the
     * role's tasks inspect. */
    int (*extra_add)(struct cf_rbatch *b, void *arg, char *err);
    void (*extra_done)(const struct cf_rbatch *b, size_t first, void *arg);
    void *extra_arg;
};

/* res is the caller's: free it with cf_role_result_free().  status is 0
 * when the tasks ran (res->failed counts task failures) or the CF_E* of a
 * transport failure (res->error says why; tasks not reached are absent). */
typedef void (*cf_role_cb)(cf_ssh *s, int status, struct cf_role_result *res, void *arg);

/* Converge the role's tasks on one host: render (pure), one batch
 * inspecting every resource (STAT; READ for files when diff is on), the
 * pure diff, then, unless check, one batch applying every change in task
 * order.  Handlers are not run here (see cf_role_run_handlers).
 * The apply batch first reads every path it is about to change (all reads
 * before the first write, so a path two tasks touch records its state
 * before either), and res->undo holds that state for cf_role_undo().
 * Returns 0 (cb will run once, later) or CF_EINVAL with the reason in err
 * when the host's variables do not render (nothing ran on the host; cb is
 * not called).  role and hostvars must stay valid until cb runs. */
int cf_role_converge(cf_ssh *s, const struct cf_role *role, const json_t *hostvars,
                     const struct cf_role_opts *o, cf_role_cb cb, void *arg, char *err);

/* Run the handlers whose name or `listen` is in notified (all handlers when
 * notified is NULL) in the order of handlers/main.yml, in one batch; the
 * first failing one stops the rest (a failed config test means no reload).
 * One result per handler that was due: changed when it ran, failed with
 * its output, skipped when an earlier one failed.  Returns 0 (cb runs
 * later), 1 when nothing is due or check is set (nothing runs, cb is not
 * called), or CF_EINVAL with err (render error, cb not called). */
int cf_role_run_handlers(cf_ssh *s, const struct cf_role *role, const json_t *hostvars,
                         const char *const *notified, size_t n_notified,
                         const struct cf_role_opts *o, cf_role_cb cb, void *arg, char *err);

/* ---- undoing a converge: the role change as data */

/* What one path held before the converge changed it. */
struct cf_role_undo_entry {
    char *path;
    enum cf_res_kind kind; /* what the converge made of it */
    int existed;           /* 0: the converge created it */
    char type;             /* as found: 'f', 'l', 'd' or 'o' */
    char *content;         /* 'f': the previous bytes (wiped when freed) */
    size_t len;
    unsigned mode; /* 'f', 'd': permission bits */
    char owner[64];
    char group[64];
    char *link_target; /* 'l' */
    char *problem;     /* why it cannot be put back (not read, too large), or NULL */
};

/* Entries in the order the converge applied them. */
struct cf_role_undo {
    struct cf_role_undo_entry *e;
    size_t n;
};

void cf_role_undo_free(struct cf_role_undo *u);

/* One operation of the restore batch; strings are borrowed from the undo
 * list. */
struct cf_role_restore {
    enum cf_rop_kind kind; /* CF_ROP_WRITE, SYMLINK, REMOVE or MKDIR */
    const char *path;
    const char *target;  /* SYMLINK */
    const char *content; /* WRITE */
    size_t len;
    unsigned mode; /* WRITE, MKDIR */
    const char *owner, *group;
};

/* Pure: the operations that put every entry back, the last change first.
 * A path that did not exist is removed, except a directory the converge
 * created: it stays (certificates may have been installed into it since,
 * and an empty directory changes no configuration).  A file gets its
 * previous content, mode, owner and group back; a link its previous
 * target; a directory its mode, owner and group.  An entry with a problem,
 * or of a type that cannot be recreated ('o'), gives no operation and a
 * "path: why" part in *problems ("; "-separated, caller frees; NULL when
 * every entry is restorable).  *ops (caller frees the array) has *n_ops
 * operations. */
void cf_role_undo_ops(const struct cf_role_undo *u, struct cf_role_restore **ops, size_t *n_ops,
                      char **problems);

/* Put the host back as the undo list says, then run check_command (the
 * host's config test), all in one batch.  res (the caller's) has two
 * tasks: "roll back the role change" (changed, or failed naming each path
 * that could not be restored) and "test after the rollback" (changed when
 * it passed, failed with its output).  Returns 0 (cb runs later), 1 when
 * the list is empty (nothing runs, cb is not called), or CF_EINVAL with
 * err (cb not called). */
int cf_role_undo(cf_ssh *s, const struct cf_role_undo *u, const char *check_command, int become,
                 cf_role_cb cb, void *arg, char *err);

/* The host's message after a rolled-back change: why (the failed test's
 * message) and what the rollback result res says, e.g. "'nginx -t' exited
 * with 1: ...; the role change was rolled back (2 paths restored) and the
 * test passes again".  Caller frees. */
char *cf_role_undo_message(const char *why, const struct cf_role_result *res);

#endif

/*
 * ssh.h - one non-blocking libssh2 session per host, driven by a uv_poll_t
 * on the caller's libuv loop.
 *
 * A session connects (TCP, handshake, host key check against known_hosts,
 * auth by ssh-agent then key files) and then runs commands one at a time.
 * Every callback runs exactly once.  A function that returns an error never
 * calls its callback.  A failed status is the matching CF_E* code; the human
 * detail (host, endpoint, step, cause) is kept on the session (cf_ssh_error)
 * for the report.
 */
#ifndef CF_SSH_H
#define CF_SSH_H

#include <stddef.h>
#include <uv.h>

#include "opts.h"

struct cf_ssh_config {
    const char *name;        /* inventory name, used in messages */
    const char *address;     /* ansible_host, or the name */
    int port;                /* ansible_port; 0 = 22 */
    const char *user;        /* ansible_user; NULL = current user */
    const char *key_file;    /* ansible_ssh_private_key_file; NULL = agent, ~/.ssh/id_* */
    const char *known_hosts; /* NULL = ~/.ssh/known_hosts */
    enum cf_hostkey_mode hostkey_mode;
    unsigned timeout_ms; /* limit for connect+auth, and for each command */
};

typedef struct cf_ssh cf_ssh;

struct cf_ssh_result {
    int exit_status; /* the remote command's status; -1 when killed by a signal */
    const char *out; /* stdout, NUL-terminated; valid only during the callback */
    size_t out_len;
    const char *err; /* stderr, likewise */
    size_t err_len;
};

typedef void (*cf_ssh_cb)(cf_ssh *s, int status, void *arg);
typedef void (*cf_ssh_exec_cb)(cf_ssh *s, int status, const struct cf_ssh_result *res, void *arg);

/* Start connecting. cb runs once with 0 or a CF_E* code (CF_ECONNECT for
 * resolution, refused or lost connections; CF_ETIMEDOUT; CF_EHOSTKEY;
 * CF_EAUTH; CF_EPROTO; CF_ECANCELED when closed first).  *out is set before
 * return; the caller owns the session and must cf_ssh_close() it even after
 * a failed connect.  cfg strings are copied. */
int cf_ssh_connect(uv_loop_t *loop, const struct cf_ssh_config *cfg, cf_ssh **out, cf_ssh_cb cb,
                   void *arg);

/* Run command (fixed text: never put configuration or server data in it),
 * feeding in/in_len on stdin then EOF, capturing stdout and stderr (each
 * capped at 16 MiB).  status is 0 when the command ran (whatever its exit
 * status), CF_ETIMEDOUT, CF_ECONNECT when the connection was lost,
 * CF_EPROTO (also for output cut at the cap), CF_ECANCELED when closed
 * first. */
int cf_ssh_exec(cf_ssh *s, const char *command, const void *in, size_t in_len, cf_ssh_exec_cb cb,
                void *arg);

/* The human message of the last failure, naming the host, its endpoint
 * and the step, e.g. "connect to h3 (127.0.1.3:2222): connection refused;
 * is sshd listening there?" or "command on h3 (127.0.1.3:2222) timed out
 * after 30 s while running the command".  Use it as the whole message for a
 * failed status: it needs no prefix.  cf_ssh_exec() clears it, so after a
 * command it is about that command; "" when nothing failed.  The text
 * belongs to the session: it stays valid until the next cf_ssh_exec() or
 * cf_ssh_close() on s (copy it to keep it longer).  "" for NULL. */
const char *cf_ssh_error(const cf_ssh *s);

/* 0 while the session can run commands; once a transport failure (connect
 * failure, timeout, broken connection) has ended it, the CF_E* code of that
 * failure, with cf_ssh_error() saying why.  A command's own exit status or
 * cut output never counts as a failure of the session. */
int cf_ssh_failed(const cf_ssh *s);

/* The configuration name of this session.  Owned by the session, valid
 * until cf_ssh_close(); "" for NULL. */
const char *cf_ssh_name(const cf_ssh *s);

/* Where the session connects, as messages show it: "127.0.1.3:2222" or
 * "[2001:db8::1]:22".  Owned by the session, valid until cf_ssh_close();
 * "" for NULL.  For a caller's own message about a step after a successful
 * command, e.g. "push to h3 (127.0.1.3:2222): ...". */
const char *cf_ssh_endpoint(const cf_ssh *s);

/* Disconnect and free. close_cb (may be NULL) runs after every libuv handle
 * of the session has closed; the session must not be used after this call. */
void cf_ssh_close(cf_ssh *s, void (*close_cb)(void *arg), void *arg);

#endif

/*
 * ssh.h - one non-blocking libssh2 session per host, driven by a uv_poll_t
 * on the caller's libuv loop.
 *
 * A session connects (TCP, handshake, host key check against known_hosts,
 * auth by ssh-agent then key files) and then runs commands one at a time.
 * Every callback runs exactly once.  A function that returns an error never
 * calls its callback.  The human detail of a failure is kept on the session
 * (cf_ssh_error) for the report.
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

/* Start connecting. cb runs once with 0 or a CF_E* code (CF_ECONNECT,
 * CF_ETIMEDOUT, CF_EHOSTKEY, CF_EAUTH, CF_EPROTO).  *out is set before
 * return; the caller owns the session and must cf_ssh_close() it even after
 * a failed connect.  cfg strings are copied. */
int cf_ssh_connect(uv_loop_t *loop, const struct cf_ssh_config *cfg, cf_ssh **out, cf_ssh_cb cb,
                   void *arg);

/* Run command (fixed text: never put configuration or server data in it),
 * feeding in/in_len on stdin then EOF, capturing stdout and stderr (each
 * capped at 16 MiB).  status is 0 when the command ran (whatever its exit
 * status), CF_ETIMEDOUT, or another CF_E* when the session broke. */
int cf_ssh_exec(cf_ssh *s, const char *command, const void *in, size_t in_len, cf_ssh_exec_cb cb,
                void *arg);

/* The last failure's human message, e.g. "host key for h1 (127.0.1.1:2222)
 * changed: SHA256:... ; remove the old entry from ~/.ssh/known_hosts". "" when none. */
const char *cf_ssh_error(const cf_ssh *s);

/* 0 while the session can run commands; once a transport failure (connect
 * failure, timeout, broken connection) has ended it, the CF_E* code of that
 * failure, with cf_ssh_error() saying why.  A command's own exit status or
 * cut output never counts as a failure of the session. */
int cf_ssh_failed(const cf_ssh *s);

/* The configuration name of this session. */
const char *cf_ssh_name(const cf_ssh *s);

/* Disconnect and free. close_cb (may be NULL) runs after every libuv handle
 * of the session has closed; the session must not be used after this call. */
void cf_ssh_close(cf_ssh *s, void (*close_cb)(void *arg), void *arg);

#endif

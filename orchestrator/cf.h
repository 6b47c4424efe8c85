/*
 * cf.h - conventions shared by every certfleet module.
 *
 * Functions return 0 on success or a negative CF_E* code.  Library codes
 * (libssh2, CURLcode, OpenSSL, libuv) are translated at the module boundary;
 * the human detail goes into a caller-supplied buffer (char err[CF_ERRLEN])
 * or onto the host/order it belongs to, never into a global.
 */
#ifndef CF_H
#define CF_H

#include <stddef.h>
#include <stdarg.h>

#define CF_ERRLEN 1024

enum cf_err {
    CF_OK = 0,
    CF_EINVAL = -1,    /* bad input or configuration */
    CF_ENOMEM = -2,    /* allocation failed */
    CF_EIO = -3,       /* local file or socket I/O */
    CF_ETIMEDOUT = -4, /* a per-host or per-request timeout */
    CF_EAUTH = -5,     /* ssh authentication refused */
    CF_EHOSTKEY = -6,  /* host key unknown or changed */
    CF_ECONNECT = -7,  /* could not connect */
    CF_EPROTO = -8,    /* peer spoke nonsense (ssh, http, acme) */
    CF_ENOENT = -9,    /* no such file, host, certificate */
    CF_ELOCKED = -10,  /* held by another run */
    CF_ECANCELED = -11,
    CF_EACME = -12,   /* the ACME server returned a problem document */
    CF_EREMOTE = -13, /* a remote command failed */
    CF_ELIMIT = -14,  /* a rate limit would be exceeded */
};

/* Process exit codes (design.md): only main.c exits. */
enum cf_exit {
    CF_EXIT_OK = 0,      /* all good */
    CF_EXIT_FAILED = 1,  /* some host or certificate failed, others done */
    CF_EXIT_USAGE = 2,   /* usage or config error, nothing touched */
    CF_EXIT_PENDING = 3, /* plan / --check found pending changes */
};

/* A short lowercase description of a CF_E* code. */
const char *cf_strerror(int code);

/* snprintf into an error buffer of CF_ERRLEN bytes; returns CF_EINVAL so
 * callers can write `return cf_errf(err, "...")`. */
int cf_errf(char *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Logging to stderr. Level 0 = errors only, 1 = -v, 2 = -vv. */
extern int cf_verbosity;
void cf_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define cf_debug(...) cf_log(2, __VA_ARGS__)
#define cf_info(...)  cf_log(1, __VA_ARGS__)

/* Colours on a terminal unless NO_COLOR is set (https://no-color.org). */
int cf_use_color(int fd);

/* Wipe a secret before freeing it; NULL-safe. */
void cf_secure_free(void *p, size_t len);

#endif

/*
 * util.h - small helpers: growable buffers, files, paths, strings.
 */
#ifndef CF_UTIL_H
#define CF_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* A growable, always NUL-terminated byte buffer (git's strbuf). */
struct cf_buf {
    char *data; /* NULL until the first append */
    size_t len;
    size_t cap;
};
#define CF_BUF_INIT                                                                                \
    {                                                                                              \
        NULL, 0, 0                                                                                 \
    }

int cf_buf_append(struct cf_buf *b, const void *p, size_t n);
int cf_buf_puts(struct cf_buf *b, const char *s);
int cf_buf_printf(struct cf_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Take ownership of the contents; the buffer is reset. Never NULL on
 * success (an empty buffer yields ""). */
char *cf_buf_detach(struct cf_buf *b, size_t *len);
void cf_buf_release(struct cf_buf *b);
/* Release after wiping the bytes (key material). */
void cf_buf_release_secure(struct cf_buf *b);

/* Read a whole file, at most max bytes; *out is NUL-terminated, caller
 * frees. Returns 0, CF_ENOENT, CF_EIO or CF_EINVAL (too large). */
int cf_read_file(const char *path, size_t max, char **out, size_t *len);

/* Read a configuration file as text (at most 64 MiB, no NUL bytes), with
 * the error in err: "PATH: WHAT not found", "PATH: cannot read the WHAT
 * (reason)", "PATH: WHAT is binary, not text".  what is a noun
 * such as "inventory file".  *out is the caller's. */
int cf_read_text_file(const char *path, const char *what, char **out, size_t *len, char *err);

/* Write a file atomically: temporary file in the same directory, fsync,
 * chmod to mode, rename over path. */
int cf_write_file_atomic(const char *path, const void *data, size_t len, mode_t mode);

/* mkdir -p with the given mode for created directories. */
int cf_mkdir_p(const char *path, mode_t mode);

/* Replace (or create) the symlink path -> target atomically; the
 * temporary link has a random name created exclusively. */
int cf_symlink_atomic(const char *target, const char *path);

/* Create path (mkdir -p, 0700) if needed, then refuse it unless it is a
 * directory owned by the effective user and neither group- nor
 * world-writable: a directory someone else controls could have files or
 * links planted in it.  follow=0 also refuses a symbolic link at path.
 * Returns 0, or CF_EINVAL/CF_EIO with err naming the directory and saying
 * how to fix it (chown/chmod). */
int cf_dir_ensure_private(const char *path, int follow, char *err);

/* The check of cf_dir_ensure_private alone, for a directory that exists:
 * 0, CF_ENOENT when it does not exist, CF_EINVAL when it is not trusted. */
int cf_dir_check_private(const char *path, int follow, char *err);

/* Duplicate a string; aborts on out-of-memory (the only sane reaction for
 * a CLI tool), so callers need not check. */
char *cf_strdup(const char *s);
void *cf_xmalloc(size_t n);
void *cf_xcalloc(size_t n, size_t m);
void *cf_xrealloc(void *p, size_t n);
char *cf_asprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Wall clock in milliseconds (CLOCK_REALTIME) and monotonic milliseconds. */
int64_t cf_now_ms(void);
uint64_t cf_mono_ms(void);

/* hex of a SHA-256 over data into out[65]. */
void cf_sha256_hex(const void *data, size_t len, char out[65]);

/* base64url without padding (RFC 4648 §5); caller frees. */
char *cf_b64url(const void *data, size_t len);
/* plain base64 with padding; caller frees. */
char *cf_b64(const void *data, size_t len);

#endif

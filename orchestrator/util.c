/*
 * util.c - small helpers shared by every module (see util.h).
 */
#include "cf.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

int cf_verbosity = 0;

const char *cf_strerror(int code)
{
    switch (code) {
    case CF_OK:
        return "success";
    case CF_EINVAL:
        return "invalid input";
    case CF_ENOMEM:
        return "out of memory";
    case CF_EIO:
        return "i/o error";
    case CF_ETIMEDOUT:
        return "timed out";
    case CF_EAUTH:
        return "authentication failed";
    case CF_EHOSTKEY:
        return "host key verification failed";
    case CF_ECONNECT:
        return "connection failed";
    case CF_EPROTO:
        return "protocol error";
    case CF_ENOENT:
        return "not found";
    case CF_ELOCKED:
        return "locked by another run";
    case CF_ECANCELED:
        return "canceled";
    case CF_EACME:
        return "acme server error";
    case CF_EREMOTE:
        return "remote command failed";
    case CF_ELIMIT:
        return "rate limit";
    default:
        return "unknown error";
    }
}

int cf_errf(char *err, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, CF_ERRLEN, fmt, ap);
        va_end(ap);
    }
    return CF_EINVAL;
}

void cf_log(int level, const char *fmt, ...)
{
    if (level > cf_verbosity)
        return;
    va_list ap;
    va_start(ap, fmt);
    fputs("certfleet: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

int cf_use_color(int fd)
{
    const char *nc = getenv("NO_COLOR");
    if (nc && *nc)
        return 0;
    const char *term = getenv("TERM");
    if (term && strcmp(term, "dumb") == 0)
        return 0;
    return isatty(fd);
}

void cf_secure_free(void *p, size_t len)
{
    if (!p)
        return;
    OPENSSL_cleanse(p, len);
    free(p);
}

static void *oom(void)
{
    fputs("certfleet: out of memory\n", stderr);
    abort();
}

void *cf_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    return p ? p : oom();
}

void *cf_xcalloc(size_t n, size_t m)
{
    void *p = calloc(n ? n : 1, m ? m : 1);
    return p ? p : oom();
}

void *cf_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    return q ? q : oom();
}

char *cf_strdup(const char *s)
{
    if (!s)
        return NULL;
    char *d = strdup(s);
    return d ? d : oom();
}

char *cf_asprintf(const char *fmt, ...)
{
    va_list ap;
    char *s = NULL;
    va_start(ap, fmt);
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    return n < 0 ? oom() : s;
}

static int buf_grow(struct cf_buf *b, size_t extra)
{
    if (b->len + extra + 1 <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + extra + 1)
        cap *= 2;
    b->data = cf_xrealloc(b->data, cap);
    b->cap = cap;
    return 0;
}

int cf_buf_append(struct cf_buf *b, const void *p, size_t n)
{
    buf_grow(b, n);
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int cf_buf_puts(struct cf_buf *b, const char *s)
{
    return cf_buf_append(b, s, strlen(s));
}

int cf_buf_printf(struct cf_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return CF_EINVAL;
    buf_grow(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

char *cf_buf_detach(struct cf_buf *b, size_t *len)
{
    char *d = b->data ? b->data : cf_strdup("");
    if (len)
        *len = b->len;
    b->data = NULL;
    b->len = b->cap = 0;
    return d;
}

void cf_buf_release(struct cf_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

void cf_buf_release_secure(struct cf_buf *b)
{
    if (b->data)
        OPENSSL_cleanse(b->data, b->cap);
    cf_buf_release(b);
}

int cf_read_file(const char *path, size_t max, char **out, size_t *len)
{
    *out = NULL;
    if (len)
        *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? CF_ENOENT : CF_EIO;
    struct cf_buf b = CF_BUF_INIT;
    char chunk[8192];
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            close(fd);
            cf_buf_release(&b);
            return CF_EIO;
        }
        if (n == 0)
            break;
        if (b.len + (size_t)n > max) {
            close(fd);
            cf_buf_release(&b);
            return CF_EINVAL;
        }
        cf_buf_append(&b, chunk, (size_t)n);
    }
    close(fd);
    *out = cf_buf_detach(&b, len);
    return 0;
}

int cf_read_text_file(const char *path, const char *what, char **out, size_t *len, char *err)
{
    int rc = cf_read_file(path, 64u << 20, out, len);
    if (rc == CF_ENOENT) {
        cf_errf(err, "%s: %s not found", path, what);
        return rc;
    }
    if (rc) {
        cf_errf(err, "%s: cannot read the %s (%s)", path, what, cf_strerror(rc));
        return rc;
    }
    if (memchr(*out, 0, *len)) {
        free(*out);
        *out = NULL;
        return cf_errf(err, "%s: %s is binary, not text", path, what);
    }
    return 0;
}

int cf_write_file_atomic(const char *path, const void *data, size_t len, mode_t mode)
{
    /* mkostemp: O_EXCL with a random name, so a file or link someone
     * placed at a predictable name is never opened or followed */
    char *tmp = cf_asprintf("%s.cf-tmp.XXXXXX", path);
    int fd = mkostemp(tmp, O_CLOEXEC);
    int rc = CF_EIO;
    if (fd < 0)
        goto out;
    const char *p = data;
    size_t left = len;
    while (left) {
        ssize_t n = write(fd, p, left);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            close(fd);
            unlink(tmp);
            goto out;
        }
        p += n;
        left -= (size_t)n;
    }
    if (fchmod(fd, mode) != 0 || fsync(fd) != 0) {
        close(fd);
        unlink(tmp);
        goto out;
    }
    close(fd);
    if (rename(tmp, path) != 0) {
        unlink(tmp);
        goto out;
    }
    rc = 0;
out:
    free(tmp);
    return rc;
}

int cf_mkdir_p(const char *path, mode_t mode)
{
    char *p = cf_strdup(path);
    int rc = 0;
    for (char *s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(p, mode) != 0 && errno != EEXIST) {
            rc = CF_EIO;
            goto out;
        }
        *s = '/';
    }
    if (mkdir(p, mode) != 0 && errno != EEXIST)
        rc = CF_EIO;
out:
    free(p);
    return rc;
}

int cf_symlink_atomic(const char *target, const char *path)
{
    /* symlink() never replaces or follows what is there, so a random name
     * retried on EEXIST cannot be hijacked or made to fail by a planted file */
    for (int tries = 0; tries < 16; tries++) {
        unsigned char rnd[8];
        if (RAND_bytes(rnd, sizeof rnd) != 1)
            return CF_EIO;
        char hex[17];
        for (size_t i = 0; i < sizeof rnd; i++)
            sprintf(hex + 2 * i, "%02x", rnd[i]);
        char *tmp = cf_asprintf("%s.cf-tmp.%s", path, hex);
        int rc = 0;
        if (symlink(target, tmp) != 0) {
            rc = errno == EEXIST ? 1 : CF_EIO;
        } else if (rename(tmp, path) != 0) {
            unlink(tmp);
            rc = CF_EIO;
        }
        free(tmp);
        if (rc <= 0)
            return rc;
    }
    return CF_EIO;
}

int cf_dir_check_private(const char *path, int follow, char *err)
{
    struct stat st;
    if ((follow ? stat(path, &st) : lstat(path, &st)) != 0) {
        if (errno == ENOENT)
            return CF_ENOENT;
        cf_errf(err, "cannot inspect directory '%s': %s", path, strerror(errno));
        return CF_EIO;
    }
    if (S_ISLNK(st.st_mode))
        return cf_errf(err,
                       "'%s' is a symbolic link, not a directory: remove it (the state "
                       "directory keeps private keys, so certfleet follows no link inside it)",
                       path);
    if (!S_ISDIR(st.st_mode))
        return cf_errf(err, "'%s' is not a directory", path);
    uid_t me = geteuid();
    if (st.st_uid != me)
        return cf_errf(err,
                       "directory '%s' is owned by uid %ld, not by uid %ld that runs certfleet: "
                       "another user could read or replace private keys in it; "
                       "'chown -R %ld %s' if it is yours, or use another --state-dir",
                       path, (long)st.st_uid, (long)me, (long)me, path);
    if (st.st_mode & 022)
        return cf_errf(err,
                       "directory '%s' is group- or world-writable (mode %04o): another user "
                       "could plant files in it; 'chmod 0700 %s'",
                       path, (unsigned)(st.st_mode & 07777), path);
    return 0;
}

int cf_dir_ensure_private(const char *path, int follow, char *err)
{
    if (cf_mkdir_p(path, 0700) != 0) {
        cf_errf(err, "cannot create directory '%s': %s", path, strerror(errno));
        return CF_EIO;
    }
    int rc = cf_dir_check_private(path, follow, err);
    if (rc == CF_ENOENT)
        cf_errf(err, "directory '%s' disappeared while being created", path);
    if (rc)
        return rc;
    struct stat st;
    if (stat(path, &st) == 0 && (st.st_mode & 07777) != 0700 && chmod(path, 0700) != 0) {
        cf_errf(err, "cannot set mode 0700 on '%s': %s", path, strerror(errno));
        return CF_EIO;
    }
    return 0;
}

int64_t cf_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t cf_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void cf_sha256_hex(const void *data, size_t len, char out[65])
{
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256(data, len, md);
    for (int i = 0; i < SHA256_DIGEST_LENGTH; i++)
        sprintf(out + 2 * i, "%02x", md[i]);
    out[64] = '\0';
}

char *cf_b64(const void *data, size_t len)
{
    size_t cap = 4 * ((len + 2) / 3) + 1;
    char *out = cf_xmalloc(cap);
    EVP_EncodeBlock((unsigned char *)out, data, (int)len);
    return out;
}

char *cf_b64url(const void *data, size_t len)
{
    char *s = cf_b64(data, len);
    char *w = s;
    for (char *r = s; *r; r++) {
        if (*r == '=')
            break;
        *w++ = *r == '+' ? '-' : *r == '/' ? '_' : *r;
    }
    *w = '\0';
    return s;
}

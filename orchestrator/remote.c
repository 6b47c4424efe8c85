/*
 * remote.c - batched remote primitives over one cf_ssh_exec (see remote.h).
 *
 * Wire format.  The command line is constant: `sh -c '<remote.sh>'`, with
 * `sudo -n ` in front for become.  Stdin is
 *
 *     "CF1 <number of ops> <data length>\n"  <ops>  <data>
 *
 * where <ops> is one line per operation, fields separated by tabs, and
 * <data> holds the bytes of every WRITE and RUN back to back, addressed by
 * offset and length so they are never parsed by the shell.  The script reads
 * the op lines with `read`, saves <data> (if any) into a private temporary
 * directory, and only ever uses values inside "$quoted" expansions; paths
 * were checked with cf_remote_check_path() when added, owners, groups and
 * modes are checked too.
 *
 *     S i path                     stat
 *     R i path max                 stat + content
 *     M i path mode owner group    mkdir -p, chmod, chown ("-" = leave)
 *     W i path mode owner group off len
 *     L i path target              symlink
 *     D i path                     remove
 *     X i stop off len             run sh -c "$cmd"
 *
 * The answer on stdout is a sequence of NUL-terminated records (NUL cannot
 * occur in a path, a user name or base64): consecutive STAT/READ ops form
 * one group that costs one `find` and one `sha256sum` however many paths it
 * has, so a batch of 30 STATs runs two processes besides the shell, and a
 * batch without WRITE or RUN touches no temporary file.
 * A RUN command gets neither the channel (stdin is /dev/null, output goes
 * to files) nor fd 3: a daemon it starts, such as nginx on its first
 * reload, would otherwise hold the channel open and the batch never ends.
 *
 *     S\ti\tpath           op i belongs to the open group
 *     F\tpath\ttype\tmode\tuser\tgroup\tsize\tlinktarget   (find -printf)
 *     <64 hex>  path       sha256sum -z
 *     W\ttext              find's stderr for the group (missing paths...)
 *     C\ti\tb64            READ content
 *     E                    group ends
 *     O\ti\trc\ttext       MKDIR/WRITE/SYMLINK/REMOVE result and its stderr
 *     X\ti\trc\tb64out\tb64err   RUN result
 *     K\ti                 skipped after a failed stop_on_fail RUN
 *     Z                    the script finished
 */
#include "cf.h"
#include "remote.h"
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#define RB_MAX_DATA (16u << 20) /* one WRITE or RUN */
#define RB_MAX_READ (8u << 20)  /* base64 of it must fit the 16 MiB stdout cap */
#define RB_MAX_TEXT (1u << 20)  /* decoded stderr kept per op */
#define RB_MAX_LINK 8192

/* The fixed script, orchestrator/remote.sh, as the NUL-terminated array
 * remote_script (generated into build/gen by the Makefile).  It contains
 * no single quote: it travels inside '...' on the command line (the build
 * and test_remote check). */
#include "remote_sh.h"

struct rop {
    enum cf_rop_kind kind;
    char *path;
    char *target;
    unsigned mode;
    char owner[33], group[33]; /* "" = leave */
    char *data;                /* WRITE content or RUN command */
    size_t len;
    size_t max;
    int stop_on_fail;
    char sha[65]; /* WRITE: of data */
    struct cf_rop_result res;
    int done;       /* a result record arrived */
    int in_group;   /* listed in the open S...E group */
    int seen_stat;  /* an F record arrived for it in this group */
    int got_result; /* MKDIR/WRITE/SYMLINK: O record seen, state may follow */
};

struct cf_rbatch {
    struct rop *ops;
    size_t n, cap;
    cf_ssh *ssh;
    cf_remote_cb cb;
    void *arg;
};

/* ---- validation ------------------------------------------------------- */

/* For messages: the value with control characters shown as \xNN, cut at
 * 120 bytes, so a hostile value cannot forge lines in a report. */
static void printable(const char *v, char *out, size_t n)
{
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)v; *p && o + 5 < n; p++) {
        if (p - (const unsigned char *)v >= 120) {
            o += (size_t)snprintf(out + o, n - o, "...");
            break;
        }
        if (*p < 0x20 || *p == 0x7f)
            o += (size_t)snprintf(out + o, n - o, "\\x%02x", *p);
        else
            out[o++] = (char)*p;
    }
    out[o < n ? o : n - 1] = '\0';
}

static int path_char_ok(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           strchr("._/+@=,:~-", c) != NULL;
}

/* The whitelist makes shell metacharacters, quotes, whitespace and control
 * characters impossible; ".." is refused so a value cannot climb out of the
 * directory the role meant. */
int cf_remote_check_path(const char *path, const char *what, char *err)
{
    char shown[200];
    if (!what)
        what = "path";
    if (!path || !*path)
        return cf_errf(err, "%s is empty; give an absolute path", what);
    printable(path, shown, sizeof shown);
    size_t len = strlen(path);
    if (len > 4096)
        return cf_errf(err, "%s \"%s\" is longer than 4096 bytes", what, shown);
    if (path[0] != '/')
        return cf_errf(err, "%s \"%s\" is not absolute; give a path starting with /", what, shown);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)path[i];
        if (!path_char_ok(c)) {
            char bad[8];
            if (c < 0x20 || c >= 0x7f)
                snprintf(bad, sizeof bad, "\\x%02x", c);
            else
                snprintf(bad, sizeof bad, "%c", c);
            return cf_errf(err,
                           "%s \"%s\" contains \"%s\", which is not allowed in a remote path; use "
                           "only letters, digits and ._/+@=,:~-",
                           what, shown, bad);
        }
    }
    for (const char *p = path; (p = strstr(p, "..")) != NULL; p++) {
        int starts = p == path || p[-1] == '/';
        int ends = p[2] == '\0' || p[2] == '/';
        if (starts && ends)
            return cf_errf(err, "%s \"%s\" contains a \"..\" component; give the real path", what,
                           shown);
    }
    return 0;
}

static int check_name(const char *v, const char *what, char *dst, char *err)
{
    char shown[200];
    dst[0] = '\0';
    if (!v)
        return 0;
    printable(v, shown, sizeof shown);
    size_t n = strlen(v);
    if (n == 0 || n > 32 || v[0] == '-')
        return cf_errf(err, "%s \"%s\" is not a valid user or group name", what, shown);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '.'))
            return cf_errf(err, "%s \"%s\" is not a valid user or group name", what, shown);
    }
    memcpy(dst, v, n + 1);
    return 0;
}

/* ---- building --------------------------------------------------------- */

struct cf_rbatch *cf_rbatch_new(void)
{
    return cf_xcalloc(1, sizeof(struct cf_rbatch));
}

static void result_release(struct rop *op)
{
    struct cf_rop_result *r = &op->res;
    free(r->st.link_target);
    if (r->data)
        cf_secure_free(r->data, r->len); /* READ may have fetched a key */
    free(r->err_text);
    memset(r, 0, sizeof *r);
    op->done = op->in_group = op->seen_stat = op->got_result = 0;
}

void cf_rbatch_free(struct cf_rbatch *b)
{
    if (!b)
        return;
    for (size_t i = 0; i < b->n; i++) {
        struct rop *op = &b->ops[i];
        result_release(op);
        free(op->path);
        free(op->target);
        if (op->data)
            cf_secure_free(op->data, op->len);
    }
    free(b->ops);
    free(b);
}

static struct rop *add_op(struct cf_rbatch *b, enum cf_rop_kind kind)
{
    if (b->n == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 16;
        b->ops = cf_xrealloc(b->ops, b->cap * sizeof *b->ops);
    }
    struct rop *op = &b->ops[b->n++];
    memset(op, 0, sizeof *op);
    op->kind = kind;
    return op;
}

static int check_mode(unsigned mode, char *err)
{
    if (mode > 07777)
        return cf_errf(err, "mode %o is not a valid file mode (at most 07777)", mode);
    return 0;
}

int cf_rbatch_stat(struct cf_rbatch *b, const char *path, char *err)
{
    if (cf_remote_check_path(path, "path", err) != 0)
        return CF_EINVAL;
    add_op(b, CF_ROP_STAT)->path = cf_strdup(path);
    return (int)b->n - 1;
}

int cf_rbatch_read(struct cf_rbatch *b, const char *path, size_t max, char *err)
{
    if (cf_remote_check_path(path, "path", err) != 0)
        return CF_EINVAL;
    if (max == 0 || max > RB_MAX_READ)
        return cf_errf(err, "read limit %zu for \"%s\" is out of range (1..%u)", max, path,
                       RB_MAX_READ);
    struct rop *op = add_op(b, CF_ROP_READ);
    op->path = cf_strdup(path);
    op->max = max;
    return (int)b->n - 1;
}

int cf_rbatch_mkdir(struct cf_rbatch *b, const char *path, unsigned mode, const char *owner,
                    const char *group, char *err)
{
    char o[33], g[33];
    if (cf_remote_check_path(path, "directory", err) != 0 || check_mode(mode, err) != 0 ||
        check_name(owner, "owner", o, err) != 0 || check_name(group, "group", g, err) != 0)
        return CF_EINVAL;
    struct rop *op = add_op(b, CF_ROP_MKDIR);
    op->path = cf_strdup(path);
    op->mode = mode;
    memcpy(op->owner, o, sizeof o);
    memcpy(op->group, g, sizeof g);
    return (int)b->n - 1;
}

int cf_rbatch_write(struct cf_rbatch *b, const char *path, const void *data, size_t len,
                    unsigned mode, const char *owner, const char *group, char *err)
{
    char o[33], g[33];
    if (cf_remote_check_path(path, "path", err) != 0 || check_mode(mode, err) != 0 ||
        check_name(owner, "owner", o, err) != 0 || check_name(group, "group", g, err) != 0)
        return CF_EINVAL;
    if (len > RB_MAX_DATA)
        return cf_errf(err, "content for \"%s\" is larger than %u MiB", path, RB_MAX_DATA >> 20);
    struct rop *op = add_op(b, CF_ROP_WRITE);
    op->path = cf_strdup(path);
    op->mode = mode;
    memcpy(op->owner, o, sizeof o);
    memcpy(op->group, g, sizeof g);
    op->data = cf_xmalloc(len ? len : 1);
    if (len)
        memcpy(op->data, data, len);
    op->len = len;
    cf_sha256_hex(op->data, len, op->sha);
    return (int)b->n - 1;
}

int cf_rbatch_symlink(struct cf_rbatch *b, const char *path, const char *target, char *err)
{
    if (cf_remote_check_path(path, "symlink", err) != 0)
        return CF_EINVAL;
    /* certbot's live/ links are relative ("../../archive/<cert>/certN.pem"):
     * leading "../" components, then what an absolute path may hold */
    const char *rest = target;
    if (target && target[0] != '/') {
        if (strncmp(target, "../", 3) != 0) {
            char shown[200];
            printable(target, shown, sizeof shown);
            return cf_errf(err,
                           "symlink target \"%s\" is neither absolute nor relative to a "
                           "parent directory (../)",
                           shown);
        }
        while (strncmp(rest, "../", 3) == 0)
            rest += 3;
        char *abs = cf_asprintf("/%s", rest);
        int rc = cf_remote_check_path(abs, "symlink target", err);
        free(abs);
        if (rc != 0)
            return CF_EINVAL;
    } else if (cf_remote_check_path(target, "symlink target", err) != 0) {
        return CF_EINVAL;
    }
    struct rop *op = add_op(b, CF_ROP_SYMLINK);
    op->path = cf_strdup(path);
    op->target = cf_strdup(target);
    return (int)b->n - 1;
}

int cf_rbatch_remove(struct cf_rbatch *b, const char *path, char *err)
{
    if (cf_remote_check_path(path, "path", err) != 0)
        return CF_EINVAL;
    add_op(b, CF_ROP_REMOVE)->path = cf_strdup(path);
    return (int)b->n - 1;
}

int cf_rbatch_run(struct cf_rbatch *b, const char *command, int stop_on_fail, char *err)
{
    if (!command || !*command)
        return cf_errf(err, "command is empty");
    size_t len = strlen(command);
    if (len > RB_MAX_DATA)
        return cf_errf(err, "command is longer than %u MiB", RB_MAX_DATA >> 20);
    struct rop *op = add_op(b, CF_ROP_RUN);
    op->data = cf_strdup(command);
    op->len = len;
    op->stop_on_fail = stop_on_fail != 0;
    return (int)b->n - 1;
}

size_t cf_rbatch_count(const struct cf_rbatch *b)
{
    return b ? b->n : 0;
}

const struct cf_rop_result *cf_rbatch_result(const struct cf_rbatch *b, size_t idx)
{
    return b && idx < b->n ? &b->ops[idx].res : NULL;
}

/* ---- encoding --------------------------------------------------------- */

static const char *or_dash(const char *s)
{
    return s && *s ? s : "-";
}

int cf_rbatch_encode(const struct cf_rbatch *b, char **out, size_t *len)
{
    struct cf_buf ops = CF_BUF_INIT, all = CF_BUF_INIT;
    size_t off = 0;
    int rc = 0;

    *out = NULL;
    *len = 0;
    for (size_t i = 0; i < b->n && rc == 0; i++) {
        const struct rop *op = &b->ops[i];
        switch (op->kind) {
        case CF_ROP_STAT:
            rc = cf_buf_printf(&ops, "S\t%zu\t%s\n", i, op->path);
            break;
        case CF_ROP_READ:
            rc = cf_buf_printf(&ops, "R\t%zu\t%s\t%zu\n", i, op->path, op->max);
            break;
        case CF_ROP_MKDIR:
            rc = cf_buf_printf(&ops, "M\t%zu\t%s\t%04o\t%s\t%s\n", i, op->path, op->mode,
                               or_dash(op->owner), or_dash(op->group));
            break;
        case CF_ROP_WRITE:
            rc = cf_buf_printf(&ops, "W\t%zu\t%s\t%04o\t%s\t%s\t%zu\t%zu\n", i, op->path, op->mode,
                               or_dash(op->owner), or_dash(op->group), off, op->len);
            off += op->len;
            break;
        case CF_ROP_SYMLINK:
            rc = cf_buf_printf(&ops, "L\t%zu\t%s\t%s\n", i, op->path, op->target);
            break;
        case CF_ROP_REMOVE:
            rc = cf_buf_printf(&ops, "D\t%zu\t%s\n", i, op->path);
            break;
        case CF_ROP_RUN:
            rc = cf_buf_printf(&ops, "X\t%zu\t%d\t%zu\t%zu\n", i, op->stop_on_fail, off, op->len);
            off += op->len;
            break;
        }
    }
    if (rc == 0)
        rc = cf_buf_printf(&all, "CF1 %zu %zu\n", b->n, off);
    if (rc == 0 && ops.len)
        rc = cf_buf_append(&all, ops.data, ops.len);
    for (size_t i = 0; i < b->n && rc == 0; i++) {
        const struct rop *op = &b->ops[i];
        if ((op->kind == CF_ROP_WRITE || op->kind == CF_ROP_RUN) && op->len)
            rc = cf_buf_append(&all, op->data, op->len);
    }
    cf_buf_release(&ops);
    if (rc != 0) {
        cf_buf_release_secure(&all);
        return CF_ENOMEM;
    }
    *out = cf_buf_detach(&all, len);
    return 0;
}

/* ---- parsing ---------------------------------------------------------- */

static int b64val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* Strict base64 (padding required, nothing else allowed), decoded size at
 * most max.  *out is NUL-terminated, caller frees. */
static int b64_decode(const char *in, size_t n, size_t max, char **out, size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    if (n % 4 != 0)
        return CF_EPROTO;
    size_t cap = n / 4 * 3;
    if (cap > max + 2)
        return CF_EPROTO;
    unsigned char *o = cf_xmalloc(cap + 1);
    size_t w = 0;
    for (size_t i = 0; i < n; i += 4) {
        int v[4], pad = 0;
        for (int j = 0; j < 4; j++) {
            unsigned char c = (unsigned char)in[i + j];
            if (c == '=' && i + 4 == n && j >= 2) {
                v[j] = 0;
                pad++;
                continue;
            }
            if (pad || (v[j] = b64val(c)) < 0) {
                free(o);
                return CF_EPROTO;
            }
        }
        unsigned t =
            (unsigned)v[0] << 18 | (unsigned)v[1] << 12 | (unsigned)v[2] << 6 | (unsigned)v[3];
        o[w++] = (unsigned char)(t >> 16);
        if (pad < 2)
            o[w++] = (unsigned char)(t >> 8);
        if (pad < 1)
            o[w++] = (unsigned char)t;
    }
    if (w > max) {
        OPENSSL_cleanse(o, cap + 1);
        free(o);
        return CF_EPROTO;
    }
    o[w] = '\0';
    *out = (char *)o;
    *out_len = w;
    return 0;
}

/* Split rec (len bytes, no NUL inside) at tabs into at most max fields; the
 * last field takes the rest.  Returns the number of fields. */
static int split(char *rec, char **f, int max)
{
    int n = 0;
    f[n++] = rec;
    while (n < max) {
        char *t = strchr(f[n - 1], '\t');
        if (!t)
            break;
        *t = '\0';
        f[n++] = t + 1;
    }
    return n;
}

static int parse_uint(const char *s, int base, unsigned long long limit, unsigned long long *v)
{
    if (!*s || strlen(s) > 20)
        return -1;
    for (const char *p = s; *p; p++)
        if (*p < '0' || *p > (base == 8 ? '7' : '9'))
            return -1;
    errno = 0;
    char *end;
    unsigned long long x = strtoull(s, &end, base);
    if (errno || *end || x > limit)
        return -1;
    *v = x;
    return 0;
}

static int name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n >= 64)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return 0;
    return 1;
}

struct parser {
    struct cf_rbatch *b;
    size_t *group; /* op indices of the open group */
    size_t ngroup;
    char *warn; /* decoded W text of the open group */
    int ended;
    char why[200];
};

static int bad(struct parser *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int bad(struct parser *p, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->why, sizeof p->why, fmt, ap);
    va_end(ap);
    return CF_EPROTO;
}

static int parse_index(struct parser *p, const char *s, struct rop **op)
{
    unsigned long long v;
    if (parse_uint(s, 10, p->b->n ? p->b->n - 1 : 0, &v) != 0 || p->b->n == 0)
        return bad(p, "operation index \"%.20s\" out of range", s);
    *op = &p->b->ops[v];
    return 0;
}

static int rec_F(struct parser *p, char *rec)
{
    char *f[8];
    unsigned long long mode, size;
    if (split(rec, f, 8) != 8)
        return bad(p, "short stat record");
    const char *path = f[1], *type = f[2];
    if (strlen(type) != 1 || !strchr("fdlpscbD", type[0]))
        return bad(p, "unknown file type in stat record");
    if (parse_uint(f[3], 8, 07777, &mode) != 0 || parse_uint(f[6], 10, 1ULL << 62, &size) != 0)
        return bad(p, "bad mode or size in stat record");
    if (!name_ok(f[4]) || !name_ok(f[5]))
        return bad(p, "bad owner or group in stat record");
    size_t link_len = strlen(f[7]);
    if (type[0] == 'l' ? link_len == 0 || link_len > RB_MAX_LINK : link_len != 0)
        return bad(p, "bad link target in stat record");
    int matched = 0;
    for (size_t g = 0; g < p->ngroup; g++) {
        struct rop *op = &p->b->ops[p->group[g]];
        if (op->seen_stat || strcmp(op->path, path) != 0)
            continue;
        struct cf_rstat *st = &op->res.st;
        st->exists = 1;
        st->type = type[0] == 'f' || type[0] == 'd' || type[0] == 'l' ? type[0] : 'o';
        st->mode = (unsigned)mode;
        snprintf(st->owner, sizeof st->owner, "%s", f[4]);
        snprintf(st->group, sizeof st->group, "%s", f[5]);
        st->size = (long long)size;
        free(st->link_target);
        st->link_target = st->type == 'l' ? cf_strdup(f[7]) : NULL;
        op->seen_stat = 1;
        matched = 1;
        break; /* find prints one record per argument, duplicates included */
    }
    if (!matched)
        return bad(p, "stat record for a path nobody asked about");
    return 0;
}

static int rec_sha(struct parser *p, char *rec)
{
    const char *path = rec + 66;
    int matched = 0;
    for (size_t g = 0; g < p->ngroup; g++) {
        struct rop *op = &p->b->ops[p->group[g]];
        if (strcmp(op->path, path) != 0)
            continue;
        memcpy(op->res.st.sha256, rec, 64);
        op->res.st.sha256[64] = '\0';
        matched = 1;
    }
    return matched ? 0 : bad(p, "checksum for a path nobody asked about");
}

/* Text from the host for a report: trailing newlines cut, control
 * characters (terminal escapes from a hostile host) shown as '?', and
 * NULL when nothing is left.  Takes ownership of s. */
static char *trimmed_text(char *s, size_t *n)
{
    while (*n && (s[*n - 1] == '\n' || s[*n - 1] == '\r'))
        s[--*n] = '\0';
    if (*n == 0) {
        free(s);
        return NULL;
    }
    for (size_t i = 0; i < *n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7f || c == 0)
            s[i] = '?';
    }
    return s;
}

static char *copy_text(const char *t)
{
    size_t n = strlen(t);
    if (n > RB_MAX_TEXT)
        n = RB_MAX_TEXT;
    char *c = cf_xmalloc(n + 1);
    memcpy(c, t, n);
    c[n] = '\0';
    return trimmed_text(c, &n);
}

/* A path without a stat record is absent, unless find complained about it
 * for another reason (permission denied...), which fails that op. */
static void group_end(struct parser *p)
{
    for (size_t g = 0; g < p->ngroup; g++) {
        struct rop *op = &p->b->ops[p->group[g]];
        op->in_group = 0;
        op->done = 1;
        if (op->seen_stat) {
            if (op->res.st.type != 'f')
                op->res.st.sha256[0] = '\0';
            continue;
        }
        op->res.st.exists = 0;
        if (op->kind != CF_ROP_STAT && op->kind != CF_ROP_READ)
            continue;
        char *needle = cf_asprintf("'%s': ", op->path);
        const char *line = p->warn ? strstr(p->warn, needle) : NULL;
        if (line) {
            while (line > p->warn && line[-1] != '\n')
                line--;
            const char *eol = strchr(line, '\n');
            size_t n = eol ? (size_t)(eol - line) : strlen(line);
            if (!memmem(line, n, "No such file or directory", 25) &&
                !memmem(line, n, "Not a directory", 15)) {
                op->res.status = CF_EREMOTE;
                free(op->res.err_text);
                char *t = cf_xmalloc(n + 1);
                memcpy(t, line, n);
                t[n] = '\0';
                op->res.err_text = trimmed_text(t, &n);
            }
        }
        free(needle);
    }
    p->ngroup = 0;
    free(p->warn);
    p->warn = NULL;
}

static int parse_record(struct parser *p, char *rec, size_t len)
{
    char *f[6];
    struct rop *op;
    int rc;

    if (p->ended)
        return bad(p, "output after the end marker");
    /* sha256sum -z: "<64 hex>  <path>" */
    if (len > 66 && rec[64] == ' ' && rec[65] == ' ' && strspn(rec, "0123456789abcdef") == 64)
        return rec_sha(p, rec);
    if (len < 1 || (len > 1 && rec[1] != '\t'))
        return bad(p, "unknown record");
    switch (rec[0]) {
    case 'S':
        if (split(rec, f, 3) != 3 || (rc = parse_index(p, f[1], &op)) != 0)
            return bad(p, "bad group record");
        if (op->kind == CF_ROP_RUN || op->kind == CF_ROP_REMOVE || op->in_group || op->done ||
            strcmp(op->path, f[2]) != 0)
            return bad(p, "group record does not match operation %s", f[1]);
        if ((op->kind != CF_ROP_STAT && op->kind != CF_ROP_READ) && !op->got_result)
            return bad(p, "state record before the result of operation %s", f[1]);
        if (p->ngroup >= p->b->n)
            return bad(p, "group too large");
        op->in_group = 1;
        op->seen_stat = 0;
        p->group[p->ngroup++] = (size_t)(op - p->b->ops);
        return 0;
    case 'F':
        return rec_F(p, rec);
    case 'W':
        if (split(rec, f, 2) != 2 || p->warn || !p->ngroup || strlen(f[1]) > RB_MAX_TEXT)
            return bad(p, "bad warning record");
        p->warn = cf_strdup(f[1]);
        return 0;
    case 'C':
        if (split(rec, f, 3) != 3 || parse_index(p, f[1], &op) != 0 || op->kind != CF_ROP_READ ||
            !op->in_group || op->res.data)
            return bad(p, "bad content record");
        if (b64_decode(f[2], strlen(f[2]), op->max, &op->res.data, &op->res.len) != 0)
            return bad(p, "bad content encoding for operation %s", f[1]);
        return 0;
    case 'E':
        if (len != 1)
            return bad(p, "bad group end");
        group_end(p);
        return 0;
    case 'O': {
        unsigned long long code;
        if (split(rec, f, 4) != 4 || parse_index(p, f[1], &op) != 0 ||
            parse_uint(f[2], 10, 255, &code) != 0)
            return bad(p, "bad result record");
        if (op->kind == CF_ROP_STAT || op->kind == CF_ROP_READ || op->kind == CF_ROP_RUN ||
            op->done || op->got_result)
            return bad(p, "result record does not match operation %s", f[1]);
        op->res.status = code == 0 ? 0 : CF_EREMOTE;
        op->res.err_text = copy_text(f[3]);
        op->res.exit_status = (int)code;
        op->got_result = 1;
        op->done = op->kind == CF_ROP_REMOVE; /* the others wait for their state */
        return 0;
    }
    case 'X': {
        unsigned long long code;
        char *out = NULL, *err = NULL;
        size_t on, en;
        if (split(rec, f, 5) != 5 || parse_index(p, f[1], &op) != 0 ||
            parse_uint(f[2], 10, 255, &code) != 0 || op->kind != CF_ROP_RUN || op->done)
            return bad(p, "bad run record");
        if (b64_decode(f[3], strlen(f[3]), RB_MAX_DATA, &out, &on) != 0 ||
            b64_decode(f[4], strlen(f[4]), RB_MAX_DATA, &err, &en) != 0) {
            free(out);
            free(err);
            return bad(p, "bad output encoding for operation %s", f[1]);
        }
        op->res.exit_status = (int)code;
        op->res.status = code == 0 ? 0 : CF_EREMOTE;
        op->res.data = out;
        op->res.len = on;
        op->res.err_text = trimmed_text(err, &en);
        op->done = 1;
        return 0;
    }
    case 'K':
        if (split(rec, f, 2) != 2 || parse_index(p, f[1], &op) != 0 || op->done)
            return bad(p, "bad skip record");
        op->res.skipped = 1;
        op->res.status = CF_ECANCELED;
        op->done = 1;
        return 0;
    case 'Z':
        if (len != 1)
            return bad(p, "bad end marker");
        p->ended = 1;
        return 0;
    default:
        return bad(p, "unknown record type");
    }
}

/* A change whose state record was lost still has its result; a WRITE's
 * checksum is the one of the data sent when size and type agree. */
static void settle(struct cf_rbatch *b)
{
    for (size_t i = 0; i < b->n; i++) {
        struct rop *op = &b->ops[i];
        if (op->got_result)
            op->done = 1;
        if (op->kind == CF_ROP_WRITE && op->res.status == 0 && op->res.st.type == 'f' &&
            op->res.st.size == (long long)op->len)
            memcpy(op->res.st.sha256, op->sha, sizeof op->sha);
    }
}

static void fail_all(struct cf_rbatch *b, int status, const char *text)
{
    for (size_t i = 0; i < b->n; i++) {
        struct rop *op = &b->ops[i];
        result_release(op);
        op->res.status = status;
        op->res.exit_status = -1;
        op->res.err_text = cf_strdup(text);
    }
}

/* Parses the script's answer into the results; everything the host sends
 * is untrusted: records are checked field by field, sizes are capped, and
 * one malformed record fails every operation (CF_EPROTO) rather than
 * leaving a half-believed state. */
int cf_rbatch_parse(struct cf_rbatch *b, const char *out, size_t len, int exit_status,
                    const char *err_text, size_t err_len)
{
    struct parser p = {.b = b};
    char *copy = cf_xmalloc(len + 1);
    int rc = 0;

    for (size_t i = 0; i < b->n; i++) {
        result_release(&b->ops[i]);
        b->ops[i].res.exit_status = b->ops[i].kind == CF_ROP_RUN ? -1 : 0;
    }
    p.group = cf_xcalloc(b->n ? b->n : 1, sizeof *p.group);
    memcpy(copy, out, len);
    copy[len] = '\0';
    size_t pos = 0;
    while (pos < len && rc == 0) {
        char *nul = memchr(copy + pos, '\0', len - pos);
        if (!nul)
            break; /* a cut-off last record: treated as a stop below */
        rc = parse_record(&p, copy + pos, (size_t)(nul - (copy + pos)));
        pos = (size_t)(nul - copy) + 1;
    }
    if (rc == 0 && p.ngroup)
        group_end(&p); /* cut off inside a group: those ops get no result */
    if (rc == 0)
        settle(b);
    if (rc != 0) {
        char *msg = cf_asprintf("malformed answer from the host (%s); nothing of it was "
                                "trusted",
                                p.why);
        fail_all(b, CF_EPROTO, msg);
        free(msg);
    } else {
        char shown[600];
        struct cf_buf e = CF_BUF_INIT;
        if (err_text && err_len)
            cf_buf_append(&e, err_text, err_len > 500 ? 500 : err_len);
        printable(e.data ? e.data : "", shown, sizeof shown);
        cf_buf_release(&e);
        for (size_t i = 0; i < b->n; i++) {
            struct rop *op = &b->ops[i];
            if (op->done)
                continue;
            result_release(op);
            op->res.status = p.ended ? CF_EPROTO : CF_EREMOTE;
            op->res.exit_status = -1;
            op->res.err_text = p.ended
                                   ? cf_strdup("the host reported no result for this operation")
                                   : cf_asprintf("the batch script stopped before this operation "
                                                 "(exit status %d)%s%s",
                                                 exit_status, *shown ? ": " : "", shown);
        }
        if (!p.ended && b->n == 0 && exit_status != 0)
            rc = CF_EREMOTE;
    }
    free(p.warn);
    free(p.group);
    OPENSSL_cleanse(copy, len + 1);
    free(copy);
    return rc;
}

/* ---- running ---------------------------------------------------------- */

static void on_exec(cf_ssh *s, int status, const struct cf_ssh_result *res, void *arg)
{
    struct cf_rbatch *b = arg;
    cf_remote_cb cb = b->cb;
    void *cb_arg = b->arg;
    b->cb = NULL;
    b->ssh = NULL;
    if (status != 0) {
        fail_all(b, status, cf_ssh_error(s));
    } else {
        cf_rbatch_parse(b, res->out, res->out_len, res->exit_status, res->err, res->err_len);
    }
    if (cb)
        cb(b, status, cb_arg);
}

char *cf_remote_command(int become)
{
    return cf_asprintf("%ssh -c '%s'", become ? "sudo -n " : "", remote_script);
}

/* One round trip for the whole batch. */
int cf_remote_run(cf_ssh *s, struct cf_rbatch *b, int become, cf_remote_cb cb, void *arg)
{
    char *in = NULL, *cmd;
    size_t in_len = 0;
    int rc;

    if (b->cb)
        return CF_EINVAL; /* already running */
    if ((rc = cf_rbatch_encode(b, &in, &in_len)) != 0)
        return rc;
    cmd = cf_remote_command(become);
    b->cb = cb;
    b->arg = arg;
    b->ssh = s;
    rc = cf_ssh_exec(s, cmd, in, in_len, on_exec, b);
    if (rc != 0) {
        b->cb = NULL;
        b->ssh = NULL;
    }
    cf_secure_free(in, in_len);
    free(cmd);
    return rc;
}

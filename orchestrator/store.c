/*
 * store.c - the central certificate store (see store.h).
 */
#include "cf.h"
#include "store.h"
#include "util.h"
#include "x509.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

static const char *const kinds[] = {"privkey", "cert", "chain", "fullchain"};
#define NKINDS 4

/* Renewal confs are small; anything bigger is not ours. */
#define CONF_MAX (64 * 1024)

int cf_store_name_ok(const char *name)
{
    if (!name || !*name || strlen(name) > 200 || !isalnum((unsigned char)name[0]))
        return 0;
    for (const char *p = name; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '.' && *p != '_' && *p != '-')
            return 0;
    return strstr(name, "..") == NULL;
}

static int check_name(const char *name, char *err)
{
    if (cf_store_name_ok(name))
        return 0;
    return cf_errf(err,
                   "invalid certificate name '%s': use letters, digits, '.', '_' and '-', "
                   "starting with a letter or digit",
                   name ? name : "");
}

/* Every directory of the store: created 0700, and refused when another
 * user owns it or can write to it (it would hand them the private keys). */
static int ensure_dir(const char *path, int follow, char *err)
{
    return cf_dir_ensure_private(path, follow, err);
}

/* Directories under archive/ and live/ 0700, archived keys 0600. */
static int repair_modes(const char *top, int keys, char *err)
{
    DIR *d = opendir(top);
    if (!d)
        return 0;
    struct dirent *e;
    int rc = 0;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char *sub = cf_asprintf("%s/%s", top, e->d_name);
        struct stat st;
        if (lstat(sub, &st) == 0 && S_ISDIR(st.st_mode)) {
            if ((st.st_mode & 07777) != 0700 && chmod(sub, 0700) != 0)
                rc = CF_EIO;
            DIR *k = keys && rc == 0 ? opendir(sub) : NULL;
            struct dirent *f;
            while (k && (f = readdir(k)) != NULL) {
                if (strncmp(f->d_name, "privkey", 7) != 0)
                    continue;
                char *kp = cf_asprintf("%s/%s", sub, f->d_name);
                if (lstat(kp, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 07777) != 0600 &&
                    chmod(kp, 0600) != 0)
                    rc = CF_EIO;
                free(kp);
            }
            if (k)
                closedir(k);
        }
        if (rc)
            cf_errf(err, "cannot repair modes under '%s': %s", sub, strerror(errno));
        free(sub);
    }
    closedir(d);
    return rc;
}

int cf_store_open(struct cf_store *s, const char *dir, unsigned flags, char *err)
{
    memset(s, 0, sizeof *s);
    s->readonly = (flags & CF_STORE_READONLY) != 0;
    if (!dir || !*dir)
        return cf_errf(err, "no state directory given (--state-dir)");
    int rc;
    if (!s->readonly) {
        static const char *const subs[] = {"accounts", "archive", "live",
                                           "renewal",  "locks",   "journal"};
        /* the state dir itself may be reached through a link its owner
         * chose; nothing inside it may be one */
        if ((rc = ensure_dir(dir, 1, err)) != 0)
            return rc;
        for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++) {
            char *p = cf_asprintf("%s/%s", dir, subs[i]);
            rc = ensure_dir(p, 0, err);
            free(p);
            if (rc)
                return rc;
        }
    }
    char real[PATH_MAX];
    if (!realpath(dir, real)) {
        if (errno == ENOENT) {
            cf_errf(err, "state directory '%s' does not exist", dir);
            return CF_ENOENT;
        }
        cf_errf(err, "cannot open state directory '%s': %s", dir, strerror(errno));
        return CF_EIO;
    }
    s->dir = cf_strdup(real);
    if (!s->readonly) {
        char *a = cf_asprintf("%s/archive", s->dir);
        char *l = cf_asprintf("%s/live", s->dir);
        rc = repair_modes(a, 1, err);
        if (rc == 0)
            rc = repair_modes(l, 0, err);
        free(a);
        free(l);
        if (rc) {
            cf_store_release(s);
            return rc;
        }
    }
    return 0;
}

void cf_store_release(struct cf_store *s)
{
    if (!s)
        return;
    free(s->dir);
    s->dir = NULL;
}

void cf_store_cert_release(struct cf_store_cert *c)
{
    if (!c)
        return;
    free(c->name);
    cf_cert_info_release(&c->info);
    for (size_t i = 0; i < c->n_domains; i++)
        free(c->domains[i]);
    free(c->domains);
    free(c->server);
    free(c->account);
    free(c->cert_path);
    free(c->chain_path);
    free(c->fullchain_path);
    free(c->privkey_path);
    free(c->renewal_path);
    memset(c, 0, sizeof *c);
}

void cf_store_pems_release(struct cf_store_pems *p)
{
    if (!p)
        return;
    free(p->cert);
    free(p->chain);
    free(p->fullchain);
    cf_secure_free(p->privkey, p->privkey_len);
    memset(p, 0, sizeof *p);
}

/* The version a live link points at: "../../archive/<name>/<kind>N.pem".
 * 0 when the link is absent; CF_EIO when it points elsewhere. */
static int live_version(const struct cf_store *s, const char *name, const char *kind, int *version,
                        char *err)
{
    *version = 0;
    char *link = cf_asprintf("%s/live/%s/%s.pem", s->dir, name, kind);
    char target[PATH_MAX];
    ssize_t n = readlink(link, target, sizeof target - 1);
    int rc = 0;
    if (n < 0) {
        if (errno != ENOENT) {
            cf_errf(err, "cannot read link '%s': %s", link, strerror(errno));
            rc = CF_EIO;
        }
        goto out;
    }
    target[n] = '\0';
    char *prefix = cf_asprintf("../../archive/%s/%s", name, kind);
    size_t pl = strlen(prefix);
    int v = 0;
    const char *p = target + pl;
    if (strncmp(target, prefix, pl) == 0 && isdigit((unsigned char)*p)) {
        while (isdigit((unsigned char)*p) && v < 1000000)
            v = v * 10 + (*p++ - '0');
        if (strcmp(p, ".pem") != 0)
            v = 0;
    }
    free(prefix);
    if (v <= 0) {
        cf_errf(err,
                "link '%s' points at '%s', not into the archive; repair it or remove the "
                "live directory",
                link, target);
        rc = CF_EIO;
        goto out;
    }
    *version = v;
out:
    free(link);
    return rc;
}

/* The highest N of archive/<name>/<kind>N.pem, 0 when none. */
static int max_archived(const struct cf_store *s, const char *name)
{
    char *dir = cf_asprintf("%s/archive/%s", s->dir, name);
    DIR *d = opendir(dir);
    free(dir);
    if (!d)
        return 0;
    int max = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        for (int k = 0; k < NKINDS; k++) {
            size_t kl = strlen(kinds[k]);
            const char *p = e->d_name + kl;
            if (strncmp(e->d_name, kinds[k], kl) != 0 || !isdigit((unsigned char)*p))
                continue;
            char *end;
            long v = strtol(p, &end, 10);
            if (strcmp(end, ".pem") == 0 && v > max && v < 1000000)
                max = (int)v;
        }
    }
    closedir(d);
    return max;
}

/* Trim spaces in place. */
static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

static void push_domain(struct cf_store_cert *c, const char *d)
{
    c->domains = cf_xrealloc(c->domains, (c->n_domains + 2) * sizeof(char *));
    c->domains[c->n_domains++] = cf_strdup(d);
    c->domains[c->n_domains] = NULL;
}

/* Read renewal/<name>.conf into c (domains, key type, server, account); a missing
 * conf is not an error. */
static int read_conf(const char *path, struct cf_store_cert *c, char *err)
{
    char *text = NULL;
    int rc = cf_read_file(path, CONF_MAX, &text, NULL);
    if (rc == CF_ENOENT)
        return 0;
    if (rc) {
        cf_errf(err, "cannot read renewal configuration '%s': %s", path, cf_strerror(rc));
        return CF_EIO;
    }
    char kt[32] = "", curve[32] = "";
    int bits = 0;
    int in_params = 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *l = trim(line);
        if (*l == '#' || *l == ';' || !*l)
            continue;
        if (*l == '[') {
            in_params = strcmp(l, "[renewalparams]") == 0;
            continue;
        }
        char *eq = strchr(l, '=');
        if (!eq || !in_params)
            continue;
        *eq = '\0';
        char *k = trim(l), *v = trim(eq + 1);
        if (!strcmp(k, "domains")) {
            char *s2 = NULL;
            for (char *d = strtok_r(v, ",", &s2); d; d = strtok_r(NULL, ",", &s2))
                if (*trim(d))
                    push_domain(c, trim(d));
        } else if (!strcmp(k, "key_type")) {
            snprintf(kt, sizeof kt, "%s", v);
        } else if (!strcmp(k, "elliptic_curve")) {
            snprintf(curve, sizeof curve, "%s", v);
        } else if (!strcmp(k, "rsa_key_size")) {
            bits = atoi(v);
        } else if (!strcmp(k, "server")) {
            free(c->server);
            c->server = cf_strdup(v);
        } else if (!strcmp(k, "account")) {
            free(c->account);
            c->account = cf_strdup(v);
        }
    }
    free(text);
    if (*kt || *curve || bits) {
        char why[CF_ERRLEN];
        int is_rsa = !strcasecmp(kt, "rsa") || (!*kt && bits);
        if (cf_x509_key_type_norm(*kt ? kt : (is_rsa ? "rsa" : "ecdsa"), is_rsa ? bits : 0,
                                  is_rsa ? NULL : curve, c->key_type, why) != 0) {
            cf_errf(err, "%s: %s", path, why);
            return CF_EINVAL;
        }
    }
    return 0;
}

int cf_store_get(struct cf_store *s, const char *name, struct cf_store_cert *c, char *err)
{
    memset(c, 0, sizeof *c);
    int rc = check_name(name, err);
    if (rc)
        return rc;
    c->name = cf_strdup(name);
    c->cert_path = cf_asprintf("%s/live/%s/cert.pem", s->dir, name);
    c->chain_path = cf_asprintf("%s/live/%s/chain.pem", s->dir, name);
    c->fullchain_path = cf_asprintf("%s/live/%s/fullchain.pem", s->dir, name);
    c->privkey_path = cf_asprintf("%s/live/%s/privkey.pem", s->dir, name);
    c->renewal_path = cf_asprintf("%s/renewal/%s.conf", s->dir, name);
    if ((rc = read_conf(c->renewal_path, c, err)) != 0)
        return rc;
    if ((rc = live_version(s, name, "cert", &c->version, err)) != 0 || c->version == 0)
        return rc;
    char *pem = NULL;
    rc = cf_read_file(c->cert_path, CF_PEM_MAX, &pem, NULL);
    if (rc) {
        cf_errf(err, "cannot read '%s': %s", c->cert_path, cf_strerror(rc));
        return CF_EIO;
    }
    char why[CF_ERRLEN];
    rc = cf_x509_parse(pem, 0, &c->info, why);
    free(pem);
    if (rc) {
        cf_errf(err, "'%s': %s", c->cert_path, why);
        return CF_EIO;
    }
    c->have_info = 1;
    return 0;
}

/* Read a secret file in one allocation, so no stray copies remain. */
static int read_secret(const char *path, char **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? CF_ENOENT : CF_EIO;
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size < 0 || st.st_size > CF_PEM_MAX) {
        close(fd);
        return CF_EIO;
    }
    size_t n = (size_t)st.st_size, got = 0;
    char *buf = cf_xmalloc(n + 1);
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            close(fd);
            cf_secure_free(buf, n + 1);
            return CF_EIO;
        }
        got += (size_t)r;
    }
    close(fd);
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return 0;
}

int cf_store_read(struct cf_store *s, const char *name, int version, struct cf_store_pems *p,
                  char *err)
{
    memset(p, 0, sizeof *p);
    int rc = check_name(name, err);
    if (rc)
        return rc;
    if (version == 0) {
        if ((rc = live_version(s, name, "cert", &version, err)) != 0)
            return rc;
        if (version == 0) {
            cf_errf(err, "certificate '%s' is not in the store '%s'", name, s->dir);
            return CF_ENOENT;
        }
    }
    p->version = version;
    char **dst[NKINDS] = {&p->privkey, &p->cert, &p->chain, &p->fullchain};
    for (int k = 0; k < NKINDS; k++) {
        char *path = cf_asprintf("%s/archive/%s/%s%d.pem", s->dir, name, kinds[k], version);
        if (k == 0)
            rc = read_secret(path, dst[k], &p->privkey_len);
        else
            rc = cf_read_file(path, CF_PEM_MAX, dst[k], NULL);
        if (rc) {
            cf_errf(err, "cannot read '%s': %s", path,
                    rc == CF_ENOENT ? "no such file" : cf_strerror(rc));
            free(path);
            cf_store_pems_release(p);
            return rc == CF_ENOENT ? CF_ENOENT : CF_EIO;
        }
        free(path);
    }
    return 0;
}

static int swap_links(struct cf_store *s, const char *name, int version, char *err)
{
    for (int k = 0; k < NKINDS; k++) {
        char *target = cf_asprintf("../../archive/%s/%s%d.pem", name, kinds[k], version);
        char *link = cf_asprintf("%s/live/%s/%s.pem", s->dir, name, kinds[k]);
        int rc = cf_symlink_atomic(target, link);
        if (rc)
            cf_errf(err, "cannot point '%s' at '%s': %s", link, target, strerror(errno));
        free(target);
        free(link);
        if (rc)
            return CF_EIO;
    }
    return 0;
}

/* A value that would break the ini format is refused, not escaped. */
static int conf_value_ok(const char *v)
{
    return v && !strpbrk(v, "\r\n,") && !isspace((unsigned char)*v) &&
           (!*v || !isspace((unsigned char)v[strlen(v) - 1]));
}

static int write_conf(struct cf_store *s, const char *name, const struct cf_store_params *pp,
                      const char *key_type, char *err)
{
    for (size_t i = 0; i < pp->n_domains; i++)
        if (!conf_value_ok(pp->domains[i]) || !*pp->domains[i])
            return cf_errf(err, "invalid domain '%s' for certificate '%s'", pp->domains[i], name);
    if ((pp->server && !conf_value_ok(pp->server)) || (pp->account && !conf_value_ok(pp->account)))
        return cf_errf(err, "invalid server or account value for certificate '%s'", name);
    struct cf_buf b = CF_BUF_INIT;
    const char *live = s->dir;
    cf_buf_printf(&b,
                  "# renewal configuration of '%s', written by certfleet in certbot's format\n"
                  "version = 2.1.0\n"
                  "archive_dir = %s/archive/%s\n"
                  "cert = %s/live/%s/cert.pem\n"
                  "privkey = %s/live/%s/privkey.pem\n"
                  "chain = %s/live/%s/chain.pem\n"
                  "fullchain = %s/live/%s/fullchain.pem\n"
                  "\n# Options used in the renewal process\n[renewalparams]\n",
                  name, live, name, live, name, live, name, live, name, live, name);
    cf_buf_puts(&b, "domains = ");
    for (size_t i = 0; i < pp->n_domains; i++)
        cf_buf_printf(&b, "%s%s", i ? ", " : "", pp->domains[i]);
    cf_buf_puts(&b, "\n");
    if (!strncmp(key_type, "rsa-", 4))
        cf_buf_printf(&b, "key_type = rsa\nrsa_key_size = %s\n", key_type + 4);
    else if (!strcmp(key_type, "ecdsa-384"))
        cf_buf_puts(&b, "key_type = ecdsa\nelliptic_curve = secp384r1\n");
    else
        cf_buf_puts(&b, "key_type = ecdsa\nelliptic_curve = secp256r1\n");
    if (pp->server)
        cf_buf_printf(&b, "server = %s\n", pp->server);
    if (pp->account)
        cf_buf_printf(&b, "account = %s\n", pp->account);
    char *path = cf_asprintf("%s/renewal/%s.conf", s->dir, name);
    int rc = cf_write_file_atomic(path, b.data, b.len, 0644);
    if (rc)
        cf_errf(err, "cannot write '%s': %s", path, strerror(errno));
    free(path);
    cf_buf_release(&b);
    return rc;
}

int cf_store_add(struct cf_store *s, const char *name, const char *fullchain_pem,
                 const char *key_pem, const struct cf_store_params *params, int *version, char *err)
{
    if (version)
        *version = 0;
    int rc = check_name(name, err);
    if (rc)
        return rc;
    if (s->readonly)
        return cf_errf(err, "the store '%s' was opened read-only", s->dir);
    char *leaf = NULL, *chain = NULL, *full = NULL, *adir = NULL, *ldir = NULL;
    struct cf_cert_info ci;
    memset(&ci, 0, sizeof ci);
    char why[CF_ERRLEN];
    char kt[CF_KEYTYPE_LEN];

    /* the key must match before anything lands on disk */
    if ((rc = cf_x509_parse(fullchain_pem, 0, &ci, why)) != 0 ||
        (rc = cf_x509_check_bundle(fullchain_pem, key_pem, NULL, 0, ci.not_before, why)) != 0 ||
        (rc = cf_x509_split_chain(fullchain_pem, &leaf, &chain, why)) != 0 ||
        (rc = cf_x509_key_type(key_pem, kt, why)) != 0) {
        cf_errf(err, "refusing to store certificate '%s': %s", name, why);
        goto out;
    }
    full = cf_asprintf("%s%s", leaf, chain);
    adir = cf_asprintf("%s/archive/%s", s->dir, name);
    ldir = cf_asprintf("%s/live/%s", s->dir, name);
    if ((rc = ensure_dir(adir, 0, err)) != 0 || (rc = ensure_dir(ldir, 0, err)) != 0)
        goto out;
    int n = max_archived(s, name) + 1;
    const char *data[NKINDS] = {key_pem, leaf, chain, full};
    for (int k = 0; k < NKINDS; k++) {
        char *path = cf_asprintf("%s/%s%d.pem", adir, kinds[k], n);
        rc = cf_write_file_atomic(path, data[k], strlen(data[k]), k == 0 ? 0600 : 0644);
        if (rc)
            cf_errf(err, "cannot write '%s': %s", path, strerror(errno));
        free(path);
        if (rc)
            goto out;
    }
    if ((rc = swap_links(s, name, n, err)) != 0)
        goto out;
    struct cf_store_params pp = {0};
    if (params)
        pp = *params;
    const char *const *san = (const char *const *)ci.dns_names;
    if (pp.n_domains == 0) { /* default: the certificate's own names */
        pp.domains = san;
        pp.n_domains = ci.n_dns;
    }
    if ((rc = write_conf(s, name, &pp, pp.key_type ? pp.key_type : kt, err)) != 0)
        goto out;
    if (version)
        *version = n;
    cf_info("stored certificate '%s' version %d (serial %s)", name, n, ci.serial_hex);
out:
    cf_cert_info_release(&ci);
    free(leaf);
    free(chain);
    free(full);
    free(adir);
    free(ldir);
    return rc;
}

int cf_store_set_live(struct cf_store *s, const char *name, int version, char *err)
{
    int rc = check_name(name, err);
    if (rc)
        return rc;
    if (s->readonly)
        return cf_errf(err, "the store '%s' was opened read-only", s->dir);
    for (int k = 0; k < NKINDS; k++) {
        char *path = cf_asprintf("%s/archive/%s/%s%d.pem", s->dir, name, kinds[k], version);
        int missing = access(path, F_OK) != 0;
        if (missing)
            cf_errf(err, "cannot roll '%s' back to version %d: '%s' does not exist", name, version,
                    path);
        free(path);
        if (missing)
            return CF_ENOENT;
    }
    return swap_links(s, name, version, err);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void add_name(char ***names, size_t *n, size_t *cap, const char *name)
{
    for (size_t i = 0; i < *n; i++)
        if (!strcmp((*names)[i], name))
            return;
    if (*n + 2 > *cap) {
        *cap = *cap ? *cap * 2 : 16;
        *names = cf_xrealloc(*names, *cap * sizeof(char *));
    }
    (*names)[(*n)++] = cf_strdup(name);
    (*names)[*n] = NULL;
}

int cf_store_list(struct cf_store *s, char ***names, size_t *n, char *err)
{
    *names = NULL;
    *n = 0;
    size_t cap = 0;
    static const char *const subs[] = {"live", "renewal"};
    for (int i = 0; i < 2; i++) {
        char *dir = cf_asprintf("%s/%s", s->dir, subs[i]);
        DIR *d = opendir(dir);
        if (!d && errno != ENOENT) {
            cf_errf(err, "cannot list '%s': %s", dir, strerror(errno));
            free(dir);
            cf_store_names_free(*names);
            *names = NULL;
            *n = 0;
            return CF_EIO;
        }
        free(dir);
        struct dirent *e;
        while (d && (e = readdir(d)) != NULL) {
            char nm[256];
            snprintf(nm, sizeof nm, "%s", e->d_name);
            if (i == 1) {
                size_t l = strlen(nm);
                if (l < 6 || strcmp(nm + l - 5, ".conf") != 0)
                    continue;
                nm[l - 5] = '\0';
            }
            if (cf_store_name_ok(nm))
                add_name(names, n, &cap, nm);
        }
        if (d)
            closedir(d);
    }
    if (!*names)
        *names = cf_xcalloc(1, sizeof(char *));
    qsort(*names, *n, sizeof(char *), cmp_str);
    return 0;
}

void cf_store_names_free(char **names)
{
    if (!names)
        return;
    for (char **p = names; *p; p++)
        free(*p);
    free(names);
}

/* ---- locks ---------------------------------------------------------------- */

static void read_holder(int fd, char holder[256])
{
    ssize_t n = pread(fd, holder, 255, 0);
    if (n < 0)
        n = 0;
    holder[n] = '\0';
    char *nl = strchr(holder, '\n');
    if (nl)
        *nl = '\0';
}

static void locked_msg(const char *name, const char *holder, const char *path, char *err)
{
    if (*holder)
        cf_errf(err, "certificate '%s' is locked by %s", name, holder);
    else
        cf_errf(err, "certificate '%s' is locked by another certfleet run (lock file '%s')", name,
                path);
}

int cf_store_trylock(struct cf_store *s, const char *name, struct cf_store_lock *lk, char *err)
{
    lk->fd = -1;
    lk->path = NULL;
    lk->name = NULL;
    int rc = check_name(name, err);
    if (rc)
        return rc;
    if (s->readonly)
        return cf_errf(err, "the store '%s' was opened read-only", s->dir);
    char *path = cf_asprintf("%s/locks/%s.lock", s->dir, name);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0) {
        cf_errf(err, "cannot open lock file '%s': %s", path, strerror(errno));
        free(path);
        return CF_EIO;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        if (e == EWOULDBLOCK) {
            char holder[256];
            read_holder(fd, holder);
            locked_msg(name, holder, path, err);
            rc = CF_ELOCKED;
        } else {
            cf_errf(err, "cannot lock '%s': %s", path, strerror(e));
            rc = CF_EIO;
        }
        close(fd);
        free(path);
        return rc;
    }
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    char text[320];
    int tl = snprintf(text, sizeof text, "pid %ld on %s\n", (long)getpid(), *host ? host : "?");
    if (ftruncate(fd, 0) != 0 || pwrite(fd, text, (size_t)tl, 0) != tl)
        cf_debug("cannot record the holder in '%s': %s", path, strerror(errno));
    lk->fd = fd;
    lk->path = path;
    lk->name = cf_strdup(name);
    return 0;
}

void cf_store_unlock(struct cf_store_lock *lk)
{
    /* path is set only while held, so a zeroed struct (fd 0) is never
     * mistaken for a held lock and stdin is never closed */
    if (!lk || !lk->path)
        return;
    if (lk->fd >= 0) {
        /* empty first: a reader that sees text then finds it locked */
        if (ftruncate(lk->fd, 0) != 0)
            cf_debug("cannot empty lock file '%s'", lk->path);
        flock(lk->fd, LOCK_UN);
        close(lk->fd);
    }
    free(lk->path);
    free(lk->name);
    lk->fd = -1;
    lk->path = NULL;
    lk->name = NULL;
}

/* Read-only view: does not take the lock itself (that could make a real run
 * fail its try), but trusts the holder text, which unlock empties, and
 * drops it when it names a dead pid on this host (a crash). */
int cf_store_lock_holder(struct cf_store *s, const char *name, char holder[256])
{
    holder[0] = '\0';
    if (!cf_store_name_ok(name))
        return 0;
    char *path = cf_asprintf("%s/locks/%s.lock", s->dir, name);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    free(path);
    if (fd < 0)
        return 0;
    read_holder(fd, holder);
    close(fd);
    long pid = 0;
    char host[256] = "", me[256] = "";
    if (!*holder || sscanf(holder, "pid %ld on %255s", &pid, host) != 2) {
        holder[0] = '\0';
        return 0;
    }
    gethostname(me, sizeof me - 1);
    if (!strcmp(host, me) && pid > 0 && kill((pid_t)pid, 0) != 0 && errno == ESRCH) {
        holder[0] = '\0';
        return 0;
    }
    return 1;
}

static void lock_closed(uv_handle_t *h)
{
    struct cf_store_lock_req *req = h->data;
    char *name = req->name; /* cb may free req */
    req->cb(req, req->status, req->err);
    free(name);
}

static void lock_finish(struct cf_store_lock_req *req, int status)
{
    req->status = status;
    req->closing = 1;
    uv_timer_stop(&req->timer);
    uv_close((uv_handle_t *)&req->timer, lock_closed);
}

static void lock_tick(uv_timer_t *t)
{
    struct cf_store_lock_req *req = t->data;
    char why[CF_ERRLEN];
    int rc = cf_store_trylock(req->store, req->name, &req->lock, why);
    if (rc == 0) {
        req->err[0] = '\0';
        lock_finish(req, 0);
        return;
    }
    if (rc != CF_ELOCKED) {
        snprintf(req->err, sizeof req->err, "%s", why);
        lock_finish(req, rc);
        return;
    }
    if (req->timeout_s == 0) {
        cf_errf(req->err,
                "%s; another run is ordering it (retry later, or wait with --lock-timeout)", why);
        lock_finish(req, CF_ELOCKED);
    } else if (cf_mono_ms() >= req->deadline_ms) {
        cf_errf(req->err, "%s; waited %ds (--lock-timeout)", why, req->timeout_s);
        lock_finish(req, CF_ETIMEDOUT);
    }
}

int cf_store_lock_start(uv_loop_t *loop, struct cf_store *s, const char *name, int timeout_s,
                        struct cf_store_lock_req *req, cf_store_lock_cb cb, void *data, char *err)
{
    int rc = check_name(name, err);
    if (rc)
        return rc;
    if (!cb)
        return cf_errf(err, "no callback for the lock request");
    memset(req, 0, sizeof *req);
    req->lock.fd = -1;
    req->store = s;
    req->timeout_s = timeout_s < 0 ? 0 : timeout_s;
    req->deadline_ms = cf_mono_ms() + (uint64_t)req->timeout_s * 1000;
    req->cb = cb;
    req->data = data;
    if (uv_timer_init(loop, &req->timer) != 0)
        return cf_errf(err, "cannot start a timer for the lock of '%s'", name);
    req->name = cf_strdup(name);
    req->timer.data = req;
    uv_timer_start(&req->timer, lock_tick, 0, CF_STORE_LOCK_RETRY_MS);
    return 0;
}

void cf_store_lock_cancel(struct cf_store_lock_req *req)
{
    if (!req || req->closing)
        return;
    cf_errf(req->err, "waiting for the lock of '%s' was canceled", req->name);
    lock_finish(req, CF_ECANCELED);
}

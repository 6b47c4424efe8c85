/*
 * journal.c - in-flight orders and tokens in the state directory (see
 * journal.h).
 */
#include "cf.h"
#include "journal.h"
#include "store.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define JOURNAL_MAX (1u << 20)

static char *order_path(const char *state_dir, const char *cert)
{
    return cf_asprintf("%s/journal/orders/%s.json", state_dir, cert);
}

static char *tokens_path(const char *state_dir, const char *host)
{
    char h[65];
    cf_sha256_hex(host, strlen(host), h);
    return cf_asprintf("%s/journal/tokens/%s", state_dir, h);
}

/* Make journal/<sub> (0700) and write path atomically; the directory is
 * synced so the rename survives a power cut. */
static int journal_write(const char *state_dir, const char *sub, const char *path, const void *data,
                         size_t len, char *err)
{
    char *top = cf_asprintf("%s/journal", state_dir);
    char *dir = cf_asprintf("%s/%s", top, sub);
    int rc = cf_dir_ensure_private(top, 0, err);
    if (rc == 0)
        rc = cf_dir_ensure_private(dir, 0, err);
    free(top);
    if (rc != 0) {
        free(dir);
        return rc;
    }
    if ((rc = cf_write_file_atomic(path, data, len, 0600)) == 0) {
        int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd >= 0) {
            fsync(fd);
            close(fd);
        }
    }
    if (rc != 0)
        cf_errf(err, "journal '%s': cannot write: %s", path, strerror(errno));
    free(dir);
    return rc;
}

int cf_journal_order_put(const char *state_dir, const char *cert, const char *directory_url,
                         const char *order_url, const char *key_pem, size_t key_len, char *err)
{
    if (!cf_store_name_ok(cert))
        return cf_errf(err, "journal: invalid certificate name '%s'", cert);
    json_t *j = json_pack("{s:s, s:s%, s:I}", "directory", directory_url, "key", key_pem, key_len,
                          "started", (json_int_t)(cf_now_ms() / 1000));
    if (j && order_url)
        json_object_set_new(j, "order", json_string(order_url));
    if (!j)
        return cf_errf(err, "journal: cannot encode the order of '%s'", cert);
    char *text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    char *path = order_path(state_dir, cert);
    int rc = journal_write(state_dir, "orders", path, text, strlen(text), err);
    cf_secure_free(text, strlen(text));
    free(path);
    return rc;
}

int cf_journal_order_get(const char *state_dir, const char *cert, struct cf_journal_order *out,
                         char *err)
{
    memset(out, 0, sizeof *out);
    if (!cf_store_name_ok(cert))
        return cf_errf(err, "journal: invalid certificate name '%s'", cert);
    char *path = order_path(state_dir, cert);
    char *text = NULL;
    size_t len = 0;
    int rc = cf_read_file(path, JOURNAL_MAX, &text, &len);
    if (rc != 0) {
        free(path);
        return rc == CF_ENOENT ? CF_ENOENT : cf_errf(err, "journal: cannot read '%s'", cert);
    }
    json_error_t je;
    json_t *j = json_loadb(text, len, 0, &je);
    cf_secure_free(text, len);
    const char *dir = NULL, *order = NULL, *key = NULL;
    json_int_t started = 0;
    size_t klen = 0;
    rc = 0;
    if (!j || json_unpack(j, "{s:s, s?s, s:s%, s?I}", "directory", &dir, "order", &order, "key",
                          &key, &klen, "started", &started) != 0) {
        cf_errf(err, "journal '%s': unreadable, ignored", path);
        rc = CF_EPROTO;
    } else {
        out->directory_url = cf_strdup(dir);
        out->order_url = order ? cf_strdup(order) : NULL;
        out->key_pem = cf_xmalloc(klen + 1);
        memcpy(out->key_pem, key, klen);
        out->key_pem[klen] = '\0';
        out->key_len = klen;
        out->started = started;
    }
    json_decref(j);
    free(path);
    return rc;
}

void cf_journal_order_release(struct cf_journal_order *o)
{
    free(o->directory_url);
    free(o->order_url);
    if (o->key_pem)
        cf_secure_free(o->key_pem, o->key_len);
    memset(o, 0, sizeof *o);
}

int cf_journal_order_del(const char *state_dir, const char *cert, char *err)
{
    if (!cf_store_name_ok(cert))
        return cf_errf(err, "journal: invalid certificate name '%s'", cert);
    char *path = order_path(state_dir, cert);
    int rc = 0;
    if (unlink(path) != 0 && errno != ENOENT)
        rc = cf_errf(err, "journal '%s': cannot remove: %s", path, strerror(errno));
    free(path);
    return rc;
}

/* The host's token list as lines; *text NULL when there is none. */
static int tokens_read(const char *path, char **text, size_t *len)
{
    *text = NULL;
    *len = 0;
    int rc = cf_read_file(path, JOURNAL_MAX, text, len);
    return rc == CF_ENOENT ? 0 : rc;
}

static int tokens_rewrite(const char *state_dir, const char *host, const char *add, const char *del,
                          char *err)
{
    char *path = tokens_path(state_dir, host);
    char *text = NULL;
    size_t len = 0;
    int rc = tokens_read(path, &text, &len);
    if (rc != 0) {
        free(path);
        return cf_errf(err, "journal: cannot read the tokens of host '%s'", host);
    }
    struct cf_buf b = CF_BUF_INIT;
    char *save = NULL;
    for (char *line = text ? strtok_r(text, "\n", &save) : NULL; line;
         line = strtok_r(NULL, "\n", &save))
        if (!(del && !strcmp(line, del)) && !(add && !strcmp(line, add)))
            cf_buf_printf(&b, "%s\n", line);
    if (add)
        cf_buf_printf(&b, "%s\n", add);
    free(text);
    if (b.len == 0) {
        if (unlink(path) != 0 && errno != ENOENT)
            rc = cf_errf(err, "journal '%s': cannot remove: %s", path, strerror(errno));
    } else {
        rc = journal_write(state_dir, "tokens", path, b.data, b.len, err);
    }
    cf_buf_release(&b);
    free(path);
    return rc;
}

int cf_journal_token_add(const char *state_dir, const char *host, const char *path, char *err)
{
    if (strchr(path, '\n'))
        return cf_errf(err, "journal: a token path cannot contain a newline");
    return tokens_rewrite(state_dir, host, path, NULL, err);
}

int cf_journal_token_del(const char *state_dir, const char *host, const char *path, char *err)
{
    return tokens_rewrite(state_dir, host, NULL, path, err);
}

int cf_journal_tokens(const char *state_dir, const char *host, char ***paths, size_t *n, char *err)
{
    *paths = NULL;
    *n = 0;
    char *path = tokens_path(state_dir, host);
    char *text = NULL;
    size_t len = 0;
    int rc = tokens_read(path, &text, &len);
    free(path);
    if (rc != 0)
        return cf_errf(err, "journal: cannot read the tokens of host '%s'", host);
    char **v = cf_xcalloc(1, sizeof *v);
    char *save = NULL;
    for (char *line = text ? strtok_r(text, "\n", &save) : NULL; line;
         line = strtok_r(NULL, "\n", &save)) {
        v = cf_xrealloc(v, (*n + 2) * sizeof *v);
        v[(*n)++] = cf_strdup(line);
        v[*n] = NULL;
    }
    free(text);
    *paths = v;
    return 0;
}

void cf_journal_tokens_free(char **paths, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(paths[i]);
    free(paths);
}

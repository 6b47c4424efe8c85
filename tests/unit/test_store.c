/* Unit tests: the central store (store.c): layout, modes, versions, live
 * links, renewal conf, rollback, locks (in-process, across processes and
 * waiting on the loop).
 *
 * The binary is also the integration test's driver (tests/integration/
 * 50_store.sh), so that test goes through the real store API:
 *   test_store --import DIR NAME FULLCHAIN KEY [DOMAIN...]   add a version
 *   test_store --hold DIR NAME SECONDS     take the lock, print "held", wait
 *   test_store --trylock DIR NAME          try once; print the message, exit 3 if locked
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "cf.h"
#include "store.h"
#include "util.h"
#include "x509.h"
#include "testcert.h"

static struct tc_ca ca;
static int64_t now;
static const char *const doms[] = {"app.example.com", "www.app.example.com"};

struct fx {
    char *dir;
    struct cf_store s;
};

static int group_setup(void **state)
{
    now = (int64_t)time(NULL);
    tc_ca_init(&ca, now);
    return 0;
}

static int group_teardown(void **state)
{
    tc_ca_free(&ca);
    return 0;
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    f->dir = tc_tmpdir();
    char *sd = cf_asprintf("%s/state", f->dir);
    char err[CF_ERRLEN];
    int rc = cf_store_open(&f->s, sd, 0, err);
    free(sd);
    if (rc) {
        fprintf(stderr, "setup: %s\n", err);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    cf_store_release(&f->s);
    tc_rmrf(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

static unsigned mode_of(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static unsigned mode_of(const char *fmt, ...)
{
    char path[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(path, sizeof path, fmt, ap);
    va_end(ap);
    struct stat st;
    if (lstat(path, &st) != 0)
        return 01000000; /* "missing": never a valid mode */
    return st.st_mode & 07777;
}

static char *link_of(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *link_of(const char *fmt, ...)
{
    char path[4096];
    static char target[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(path, sizeof path, fmt, ap);
    va_end(ap);
    ssize_t n = readlink(path, target, sizeof target - 1);
    target[n < 0 ? 0 : n] = '\0';
    return target;
}

static int add(struct fx *f, const char *name, const char *key_type, long serial, int *version,
               char *err)
{
    char *full, *key;
    tc_leaf(&ca, key_type, serial, doms, 2, now - 3600, now + 90 * 86400, &full, &key);
    struct cf_store_params p = {
        .domains = doms, .n_domains = 2, .key_type = NULL, .server = "https://acme.test/dir"};
    int rc = cf_store_add(&f->s, name, full, key, &p, version, err);
    free(full);
    free(key);
    return rc;
}

static void test_open_layout_and_modes(void **state)
{
    struct fx *f = *state;
    static const char *const subs[] = {"",         "/accounts", "/archive", "/live",
                                       "/renewal", "/locks",    "/journal"};
    for (size_t i = 0; i < 7; i++)
        assert_int_equal(mode_of("%s%s", f->s.dir, subs[i]), 0700);
    assert_true(f->s.dir[0] == '/');

    /* drifted modes are repaired on the next open */
    char err[CF_ERRLEN];
    int v;
    assert_int_equal(add(f, "app", "ecdsa-256", 1, &v, err), 0);
    char *p = cf_asprintf("%s/archive/app/privkey1.pem", f->s.dir);
    char *a = cf_asprintf("%s/archive/app", f->s.dir);
    assert_int_equal(chmod(p, 0644), 0);
    assert_int_equal(chmod(a, 0755), 0);
    assert_int_equal(chmod(f->s.dir, 0755), 0);
    char *dir = cf_strdup(f->s.dir);
    cf_store_release(&f->s);
    assert_int_equal(cf_store_open(&f->s, dir, 0, err), 0);
    assert_int_equal(mode_of("%s", p), 0600);
    assert_int_equal(mode_of("%s", a), 0700);
    assert_int_equal(mode_of("%s", dir), 0700);
    free(p);
    free(a);
    free(dir);
}

/* A state directory (or one of its subdirectories) that another user owns
 * or can write to is refused, naming it and the fix; nothing is repaired
 * into trust by a chmod. */
static void test_refuses_untrusted_dirs(void **state)
{
    struct fx *f = *state;
    char *dir = cf_strdup(f->s.dir);
    cf_store_release(&f->s);
    char err[CF_ERRLEN];
    static const char *const subs[] = {"",         "/accounts", "/archive", "/live",
                                       "/renewal", "/locks",    "/journal"};
    for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++) {
        char *p = cf_asprintf("%s%s", dir, subs[i]);
        /* world-writable (as a pre-created shared directory would be) */
        assert_int_equal(chmod(p, 0777), 0);
        err[0] = '\0';
        assert_int_not_equal(cf_store_open(&f->s, dir, 0, err), 0);
        assert_non_null(strstr(err, p));
        assert_non_null(strstr(err, "chmod 0700"));
        assert_int_equal(mode_of("%s", p), 0777);
        assert_int_equal(chmod(p, 0700), 0);
        /* owned by someone else: only root can set that up */
        if (geteuid() == 0) {
            assert_int_equal(chown(p, 65534, 65534), 0);
            err[0] = '\0';
            assert_int_not_equal(cf_store_open(&f->s, dir, 0, err), 0);
            assert_non_null(strstr(err, p));
            assert_non_null(strstr(err, "owned by uid 65534"));
            assert_non_null(strstr(err, "chown"));
            assert_int_equal(chown(p, 0, 0), 0);
        }
        free(p);
    }
    /* a subdirectory replaced by a link to a directory elsewhere */
    char *live = cf_asprintf("%s/live", dir);
    char *elsewhere = cf_asprintf("%s/elsewhere", f->dir);
    assert_int_equal(mkdir(elsewhere, 0700), 0);
    assert_int_equal(rmdir(live), 0);
    assert_int_equal(symlink(elsewhere, live), 0);
    assert_int_not_equal(cf_store_open(&f->s, dir, 0, err), 0);
    assert_non_null(strstr(err, "symbolic link"));
    assert_int_equal(unlink(live), 0);
    assert_int_equal(cf_store_open(&f->s, dir, 0, err), 0);
    free(live);
    free(elsewhere);
    free(dir);
}

/* The live link's temporary name is random: what sits at the old
 * predictable PATH.cf-tmp.PID is neither removed, followed nor in the way. */
static void test_symlink_tmp_name_random(void **state)
{
    struct fx *f = *state;
    char *link = cf_asprintf("%s/live/x.pem", f->s.dir);
    char *planted = cf_asprintf("%s.cf-tmp.%ld", link, (long)getpid());
    FILE *fp = fopen(planted, "w");
    assert_non_null(fp);
    fclose(fp);
    assert_int_equal(cf_symlink_atomic("../../archive/x/cert1.pem", link), 0);
    assert_string_equal(link_of("%s", link), "../../archive/x/cert1.pem");
    assert_int_not_equal(mode_of("%s", planted), 01000000); /* still there */
    assert_int_equal(unlink(planted), 0);
    free(planted);
    free(link);
}

static void test_readonly_open(void **state)
{
    char *d = tc_tmpdir();
    char *sd = cf_asprintf("%s/nothing", d);
    struct cf_store s;
    char err[CF_ERRLEN] = "";
    assert_int_equal(cf_store_open(&s, sd, CF_STORE_READONLY, err), CF_ENOENT);
    assert_non_null(strstr(err, "does not exist"));
    assert_int_equal(mode_of("%s", sd), 01000000); /* not created */
    /* a read-only store refuses writes and locks */
    assert_int_equal(cf_store_open(&s, d, CF_STORE_READONLY, err), 0);
    struct cf_store_lock lk;
    assert_int_equal(cf_store_trylock(&s, "app", &lk, err), CF_EINVAL);
    assert_int_equal(cf_store_add(&s, "app", "x", "y", NULL, NULL, err), CF_EINVAL);
    assert_non_null(strstr(err, "read-only"));
    cf_store_release(&s);
    tc_rmrf(d);
    free(d);
    free(sd);
}

static void test_add_versions_and_links(void **state)
{
    struct fx *f = *state;
    char err[CF_ERRLEN] = "";
    struct cf_store_cert c;
    assert_int_equal(cf_store_get(&f->s, "app", &c, err), 0);
    assert_int_equal(c.version, 0);
    assert_false(c.have_info);
    cf_store_cert_release(&c);

    int v = 0;
    assert_int_equal(add(f, "app", "ecdsa-256", 0x11, &v, err), 0);
    assert_int_equal(v, 1);
    static const char *const kinds[] = {"cert", "chain", "fullchain", "privkey"};
    for (int k = 0; k < 4; k++) {
        assert_int_equal(mode_of("%s/archive/app/%s1.pem", f->s.dir, kinds[k]),
                         k == 3 ? 0600 : 0644);
        char want[64];
        snprintf(want, sizeof want, "../../archive/app/%s1.pem", kinds[k]);
        assert_string_equal(link_of("%s/live/app/%s.pem", f->s.dir, kinds[k]), want);
    }
    assert_int_equal(mode_of("%s/renewal/app.conf", f->s.dir), 0644);
    assert_int_equal(mode_of("%s/live/app", f->s.dir), 0700);

    assert_int_equal(add(f, "app", "ecdsa-256", 0x22, &v, err), 0);
    assert_int_equal(v, 2);
    assert_string_equal(link_of("%s/live/app/fullchain.pem", f->s.dir),
                        "../../archive/app/fullchain2.pem");
    assert_int_equal(mode_of("%s/archive/app/cert1.pem", f->s.dir), 0644); /* kept */

    assert_int_equal(cf_store_get(&f->s, "app", &c, err), 0);
    assert_int_equal(c.version, 2);
    assert_true(c.have_info);
    assert_string_equal(c.info.serial_hex, "22");
    assert_int_equal(c.n_domains, 2);
    assert_string_equal(c.domains[1], "www.app.example.com");
    assert_string_equal(c.key_type, "ecdsa-256");
    assert_string_equal(c.server, "https://acme.test/dir");
    char *want = cf_asprintf("%s/live/app/privkey.pem", f->s.dir);
    assert_string_equal(c.privkey_path, want);
    free(want);
    cf_store_cert_release(&c);

    /* reading: current (2) and an older version (1); fullchain = cert + chain */
    struct cf_store_pems p;
    assert_int_equal(cf_store_read(&f->s, "app", 0, &p, err), 0);
    assert_int_equal(p.version, 2);
    char *cat = tc_cat(p.cert, p.chain);
    assert_string_equal(p.fullchain, cat);
    free(cat);
    assert_int_equal(cf_x509_check_bundle(p.fullchain, p.privkey, doms, 2, now, err), 0);
    assert_int_equal(p.privkey_len, strlen(p.privkey));
    cf_store_pems_release(&p);
    assert_null(p.privkey);
    assert_int_equal(cf_store_read(&f->s, "app", 1, &p, err), 0);
    struct cf_cert_info ci;
    assert_int_equal(cf_x509_parse(p.cert, 0, &ci, err), 0);
    assert_string_equal(ci.serial_hex, "11");
    cf_cert_info_release(&ci);
    cf_store_pems_release(&p);
    assert_int_equal(cf_store_read(&f->s, "app", 7, &p, err), CF_ENOENT);
    assert_non_null(strstr(err, "privkey7.pem"));
    assert_int_equal(cf_store_read(&f->s, "nope", 0, &p, err), CF_ENOENT);

    /* rollback of the central store */
    assert_int_equal(cf_store_set_live(&f->s, "app", 1, err), 0);
    assert_string_equal(link_of("%s/live/app/cert.pem", f->s.dir), "../../archive/app/cert1.pem");
    assert_int_equal(cf_store_set_live(&f->s, "app", 9, err), CF_ENOENT);
    /* after a rollback a new version still gets a fresh number */
    assert_int_equal(add(f, "app", "ecdsa-256", 0x33, &v, err), 0);
    assert_int_equal(v, 3);
}

static void test_renewal_conf(void **state)
{
    struct fx *f = *state;
    char err[CF_ERRLEN];
    int v;
    assert_int_equal(add(f, "rsa", "rsa-2048", 5, &v, err), 0);
    char *path = cf_asprintf("%s/renewal/rsa.conf", f->s.dir);
    char *text;
    assert_int_equal(cf_read_file(path, 65536, &text, NULL), 0);
    /* certbot's keys */
    char *line = cf_asprintf("archive_dir = %s/archive/rsa\n", f->s.dir);
    assert_non_null(strstr(text, line));
    free(line);
    line = cf_asprintf("fullchain = %s/live/rsa/fullchain.pem\n", f->s.dir);
    assert_non_null(strstr(text, line));
    free(line);
    assert_non_null(strstr(text, "\n[renewalparams]\n"));
    assert_non_null(strstr(text, "domains = app.example.com, www.app.example.com\n"));
    assert_non_null(strstr(text, "key_type = rsa\nrsa_key_size = 2048\n"));
    assert_non_null(strstr(text, "server = https://acme.test/dir\n"));
    struct cf_store_cert c;
    assert_int_equal(cf_store_get(&f->s, "rsa", &c, err), 0);
    assert_string_equal(c.key_type, "rsa-2048");
    assert_string_equal(c.info.key_type, "rsa-2048");
    cf_store_cert_release(&c);
    free(text);
    free(path);

    /* a domain that would break the file is refused */
    const char *evil[] = {"a.example.com\nserver = https://evil"};
    char *full, *key;
    tc_leaf(&ca, "ecdsa-256", 6, doms, 2, now - 60, now + 86400, &full, &key);
    struct cf_store_params p = {.domains = evil, .n_domains = 1};
    assert_int_equal(cf_store_add(&f->s, "evil", full, key, &p, NULL, err), CF_EINVAL);
    assert_non_null(strstr(err, "invalid domain"));
    free(full);
    free(key);
}

static void test_refuses_bad_input(void **state)
{
    struct fx *f = *state;
    char err[CF_ERRLEN] = "";
    char *full, *key, *full2, *key2;
    tc_leaf(&ca, "ecdsa-256", 1, doms, 2, now - 60, now + 86400, &full, &key);
    tc_leaf(&ca, "rsa-2048", 2, doms, 2, now - 60, now + 86400, &full2, &key2);
    int v = -1;
    /* the key does not match: nothing is written */
    assert_int_equal(cf_store_add(&f->s, "app", full, key2, NULL, &v, err), CF_EINVAL);
    assert_string_equal(err, "refusing to store certificate 'app': private key does not match "
                             "certificate (key is rsa-2048, certificate is ecdsa-256)");
    assert_int_equal(v, 0);
    assert_int_equal(mode_of("%s/archive/app", f->s.dir), 01000000);
    /* names that would escape the store */
    static const char *const bad[] = {"../x", "a/b", ".hidden", "", "a..b", "-x", "a b"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(cf_store_add(&f->s, bad[i], full, key, NULL, NULL, err), CF_EINVAL);
        assert_non_null(strstr(err, "invalid certificate name"));
        struct cf_store_cert c;
        assert_int_equal(cf_store_get(&f->s, bad[i], &c, err), CF_EINVAL);
        cf_store_cert_release(&c);
    }
    /* without params the certificate's own names are recorded */
    assert_int_equal(cf_store_add(&f->s, "plain", full, key, NULL, &v, err), 0);
    struct cf_store_cert c;
    assert_int_equal(cf_store_get(&f->s, "plain", &c, err), 0);
    assert_int_equal(c.n_domains, 2);
    assert_string_equal(c.key_type, "ecdsa-256");
    cf_store_cert_release(&c);
    /* a live link pointing outside the archive is reported, not followed */
    char *l = cf_asprintf("%s/live/plain/cert.pem", f->s.dir);
    assert_int_equal(cf_symlink_atomic("/etc/passwd", l), 0);
    assert_int_equal(cf_store_get(&f->s, "plain", &c, err), CF_EIO);
    assert_non_null(strstr(err, "not into the archive"));
    cf_store_cert_release(&c);
    free(l);
    free(full);
    free(key);
    free(full2);
    free(key2);
}

static void test_list(void **state)
{
    struct fx *f = *state;
    char err[CF_ERRLEN];
    char **names;
    size_t n;
    assert_int_equal(cf_store_list(&f->s, &names, &n, err), 0);
    assert_int_equal(n, 0);
    assert_null(names[0]);
    cf_store_names_free(names);
    int v;
    assert_int_equal(add(f, "zeta", "ecdsa-256", 1, &v, err), 0);
    assert_int_equal(add(f, "alpha", "ecdsa-256", 2, &v, err), 0);
    /* a renewal conf without a certificate yet is listed too */
    char *conf = cf_asprintf("%s/renewal/mid.conf", f->s.dir);
    assert_int_equal(
        cf_write_file_atomic(conf, "[renewalparams]\ndomains = m.example.com\n", 39, 0644), 0);
    free(conf);
    assert_int_equal(cf_store_list(&f->s, &names, &n, err), 0);
    assert_int_equal(n, 3);
    assert_string_equal(names[0], "alpha");
    assert_string_equal(names[1], "mid");
    assert_string_equal(names[2], "zeta");
    cf_store_names_free(names);
    struct cf_store_cert c;
    assert_int_equal(cf_store_get(&f->s, "mid", &c, err), 0);
    assert_int_equal(c.version, 0);
    assert_int_equal(c.n_domains, 1);
    assert_string_equal(c.domains[0], "m.example.com");
    cf_store_cert_release(&c);
}

static void test_trylock(void **state)
{
    struct fx *f = *state;
    char err[CF_ERRLEN] = "";
    struct cf_store_lock a = CF_STORE_LOCK_INIT, b = CF_STORE_LOCK_INIT;
    char holder[256];
    assert_int_equal(cf_store_lock_holder(&f->s, "app", holder), 0);
    assert_int_equal(cf_store_trylock(&f->s, "app", &a, err), 0);
    assert_int_equal(cf_store_trylock(&f->s, "app", &b, err), CF_ELOCKED);
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    char *want = cf_asprintf("certificate 'app' is locked by pid %ld on %s", (long)getpid(), host);
    assert_string_equal(err, want);
    free(want);
    assert_int_equal(b.fd, -1);
    assert_int_equal(cf_store_lock_holder(&f->s, "app", holder), 1);
    /* another certificate is independent */
    assert_int_equal(cf_store_trylock(&f->s, "other", &b, err), 0);
    cf_store_unlock(&b);
    cf_store_unlock(&a);
    cf_store_unlock(&a); /* idempotent */
    assert_int_equal(cf_store_lock_holder(&f->s, "app", holder), 0);
    assert_int_equal(cf_store_trylock(&f->s, "app", &b, err), 0);
    cf_store_unlock(&b);
    assert_int_equal(mode_of("%s/locks/app.lock", f->s.dir), 0644);
}

static void test_lock_across_processes(void **state)
{
    struct fx *f = *state;
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct cf_store_lock lk;
        char e[CF_ERRLEN];
        close(pfd[0]);
        int rc = cf_store_trylock(&f->s, "app", &lk, e);
        (void)!write(pfd[1], rc == 0 ? "y" : "n", 1);
        pause(); /* until killed; the kernel drops the lock */
        _exit(0);
    }
    close(pfd[1]);
    char c = 0;
    assert_int_equal(read(pfd[0], &c, 1), 1);
    close(pfd[0]);
    assert_int_equal(c, 'y');
    char err[CF_ERRLEN];
    struct cf_store_lock lk;
    assert_int_equal(cf_store_trylock(&f->s, "app", &lk, err), CF_ELOCKED);
    char *want = cf_asprintf("locked by pid %ld on ", (long)pid);
    assert_non_null(strstr(err, want));
    free(want);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    /* the holder died: the lock is free, and a stale text is not trusted */
    char holder[256];
    assert_int_equal(cf_store_lock_holder(&f->s, "app", holder), 0);
    assert_int_equal(cf_store_trylock(&f->s, "app", &lk, err), 0);
    cf_store_unlock(&lk);
}

/* ---- waiting on the loop ---- */
struct wait_fx {
    int calls;
    int status;
    char err[CF_ERRLEN];
    uint64_t at_ms;
    struct cf_store_lock *release; /* unlock this from a timer */
    uv_timer_t timer;
};

static void on_lock(struct cf_store_lock_req *req, int status, const char *err)
{
    struct wait_fx *w = req->data;
    w->calls++;
    w->status = status;
    w->at_ms = cf_mono_ms();
    snprintf(w->err, sizeof w->err, "%s", err);
    if (status == 0)
        cf_store_unlock(&req->lock);
}

static void release_cb(uv_timer_t *t)
{
    struct wait_fx *w = t->data;
    cf_store_unlock(w->release);
    uv_close((uv_handle_t *)t, NULL);
}

static void test_lock_wait_on_loop(void **state)
{
    struct fx *f = *state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    char err[CF_ERRLEN];
    struct cf_store_lock held;
    assert_int_equal(cf_store_trylock(&f->s, "app", &held, err), 0);

    /* timeout 0: one try, CF_ELOCKED, and the callback still comes from the loop */
    struct cf_store_lock_req req;
    struct wait_fx w = {0};
    assert_int_equal(cf_store_lock_start(&loop, &f->s, "app", 0, &req, on_lock, &w, err), 0);
    assert_int_equal(w.calls, 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(w.calls, 1);
    assert_int_equal(w.status, CF_ELOCKED);
    assert_non_null(strstr(w.err, "is locked by pid "));
    assert_non_null(strstr(w.err, "--lock-timeout"));

    /* timeout 1 s, never released: CF_ETIMEDOUT after about a second */
    memset(&w, 0, sizeof w);
    uint64_t t0 = cf_mono_ms();
    assert_int_equal(cf_store_lock_start(&loop, &f->s, "app", 1, &req, on_lock, &w, err), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(w.calls, 1);
    assert_int_equal(w.status, CF_ETIMEDOUT);
    assert_true(w.at_ms - t0 >= 1000 && w.at_ms - t0 < 3000);
    assert_non_null(strstr(w.err, "waited 1s (--lock-timeout)"));

    /* released after 300 ms while waiting up to 5 s: acquired */
    memset(&w, 0, sizeof w);
    w.release = &held;
    uv_timer_init(&loop, &w.timer);
    w.timer.data = &w;
    uv_timer_start(&w.timer, release_cb, 300, 0);
    t0 = cf_mono_ms();
    assert_int_equal(cf_store_lock_start(&loop, &f->s, "app", 5, &req, on_lock, &w, err), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(w.status, 0);
    assert_true(w.at_ms - t0 >= 300 && w.at_ms - t0 < 2000);

    /* cancel */
    assert_int_equal(cf_store_trylock(&f->s, "app", &held, err), 0);
    memset(&w, 0, sizeof w);
    assert_int_equal(cf_store_lock_start(&loop, &f->s, "app", 60, &req, on_lock, &w, err), 0);
    cf_store_lock_cancel(&req);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(w.calls, 1);
    assert_int_equal(w.status, CF_ECANCELED);
    cf_store_unlock(&held);

    /* a bad name fails at start and never calls back */
    memset(&w, 0, sizeof w);
    assert_int_equal(cf_store_lock_start(&loop, &f->s, "../x", 1, &req, on_lock, &w, err),
                     CF_EINVAL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(w.calls, 0);
    assert_int_equal(uv_loop_close(&loop), 0); /* no handle left behind */
}

/* ---- driver for tests/integration/50_store.sh ---- */
static int driver(int argc, char **argv)
{
    struct cf_store s;
    char err[CF_ERRLEN];
    if (argc < 4)
        return 2;
    if (cf_store_open(&s, argv[2], 0, err) != 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    int rc = 1;
    if (!strcmp(argv[1], "--import") && argc >= 6) {
        char *full = NULL, *key = NULL;
        size_t klen = 0;
        if (cf_read_file(argv[4], CF_PEM_MAX, &full, NULL) != 0 ||
            cf_read_file(argv[5], CF_PEM_MAX, &key, &klen) != 0) {
            fprintf(stderr, "cannot read %s or %s\n", argv[4], argv[5]);
        } else {
            struct cf_store_params p = {.domains = (const char *const *)argv + 6,
                                        .n_domains = (size_t)(argc - 6)};
            int v;
            if (cf_store_add(&s, argv[3], full, key, &p, &v, err) == 0) {
                printf("stored %s version %d\n", argv[3], v);
                rc = 0;
            } else {
                fprintf(stderr, "%s\n", err);
            }
        }
        free(full);
        cf_secure_free(key, klen);
    } else if (!strcmp(argv[1], "--hold") && argc >= 5) {
        struct cf_store_lock lk;
        if (cf_store_trylock(&s, argv[3], &lk, err) == 0) {
            printf("held\n");
            fflush(stdout);
            sleep((unsigned)atoi(argv[4]));
            cf_store_unlock(&lk);
            rc = 0;
        } else {
            fprintf(stderr, "%s\n", err);
        }
    } else if (!strcmp(argv[1], "--trylock")) {
        struct cf_store_lock lk;
        int r = cf_store_trylock(&s, argv[3], &lk, err);
        if (r == 0) {
            printf("acquired\n");
            cf_store_unlock(&lk);
            rc = 0;
        } else {
            printf("%s\n", err);
            rc = r == CF_ELOCKED ? 3 : 1;
        }
    }
    cf_store_release(&s);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strncmp(argv[1], "--", 2)) {
        return driver(argc, argv);
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_layout_and_modes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refuses_untrusted_dirs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_symlink_tmp_name_random, setup, teardown),
        cmocka_unit_test(test_readonly_open),
        cmocka_unit_test_setup_teardown(test_add_versions_and_links, setup, teardown),
        cmocka_unit_test_setup_teardown(test_renewal_conf, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refuses_bad_input, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trylock, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lock_across_processes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lock_wait_on_loop, setup, teardown),
    };
    return cmocka_run_group_tests_name("store", tests, group_setup, group_teardown);
}

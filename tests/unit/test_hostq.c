/*
 * test_hostq.c - the per-host job queue against real OpenSSH servers.
 *
 * The group setup starts sshd A on 127.0.22.1:2222 and sshd B (other host
 * keys) on 127.0.22.2:2222.  The queue reaches them through a counting relay
 * that each test runs on its own loop: 127.0.22.1:2300 and 127.0.22.2:2300
 * pass bytes on to A and B, 127.0.22.3:2300 accepts and never speaks (a
 * host that hangs in the handshake) and nothing listens on 127.0.22.4:2300
 * (a host that refuses).  The relay counts the connections it accepted and
 * how many were open at once, which is what the --forks cap promises.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cf.h"
#include "hostq.h"
#include "remote.h"
#include "ssh.h"
#include "util.h"

#define SSHD_PORT  2222
#define RELAY_PORT 2300

enum target { T_A, T_B, T_SILENT, T_REFUSED, N_TARGETS };

static const char *const target_addr[N_TARGETS] = {"127.0.22.1", "127.0.22.2", "127.0.22.3",
                                                   "127.0.22.4"};
static const char *const target_name[N_TARGETS] = {"host-a", "host-b", "host-silent",
                                                   "host-refused"};

static char tmp[64];
static char key_file[128];
static pid_t sshd_pid[2] = {-1, -1};

/* ---- sshd fixture ------------------------------------------------------ */

/* Run argv[0] from PATH and wait: 0 when it exited 0. */
static int spawn_wait(char *const argv[])
{
    pid_t pid = fork();
    if (pid == 0) {
        execvp(argv[0], argv);
        _exit(127);
    }
    int st;
    return pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

static int keygen(const char *name)
{
    char *path = cf_asprintf("%s/%s", tmp, name);
    char *argv[] = {"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", path, NULL};
    int rc = spawn_wait(argv);
    free(path);
    return rc;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static int accepts(const char *addr, int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, addr, &sa.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int ok = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

/* sshd -D in the foreground of a child, logging to tmp/<tag>.log */
static pid_t sshd_start(const char *tag, const char *addr)
{
    if (accepts(addr, SSHD_PORT)) {
        fprintf(stderr, "# %s:%d is taken; is an earlier test_hostq still running?\n", addr,
                SSHD_PORT);
        return -1;
    }
    char *conf = cf_asprintf("%s/%s.conf", tmp, tag);
    char *text = cf_asprintf("ListenAddress %s:%d\nHostKey %s/hk_%s\nPidFile %s/%s.pid\n"
                             "AuthorizedKeysFile %s/id.pub\nPermitRootLogin prohibit-password\n"
                             "UsePAM no\nStrictModes no\nPasswordAuthentication no\n"
                             "KbdInteractiveAuthentication no\nLogLevel ERROR\n",
                             addr, SSHD_PORT, tmp, tag, tmp, tag, tmp);
    int rc = cf_write_file_atomic(conf, text, strlen(text), 0600);
    free(text);
    pid_t pid = rc == 0 ? fork() : -1;
    if (pid == 0) {
        char *log = cf_asprintf("%s/%s.log", tmp, tag);
        if (!freopen("/dev/null", "w", stdout) || !freopen(log, "w", stderr))
            _exit(127);
        execl("/usr/sbin/sshd", "/usr/sbin/sshd", "-D", "-e", "-f", conf, (char *)NULL);
        _exit(127);
    }
    free(conf);
    for (int i = 0; pid > 0 && i < 100 && !accepts(addr, SSHD_PORT); i++)
        usleep(50000);
    if (pid > 0 && (!accepts(addr, SSHD_PORT) || waitpid(pid, NULL, WNOHANG) != 0)) {
        fprintf(stderr, "# sshd on %s did not start (see %s/%s.log)\n", addr, tmp, tag);
        kill(pid, SIGTERM);
        waitpid(pid, NULL, 0);
        return -1;
    }
    return pid;
}

static int group_teardown(void **state)
{
    for (int i = 0; i < 2; i++)
        if (sshd_pid[i] > 0) {
            kill(sshd_pid[i], SIGTERM);
            waitpid(sshd_pid[i], NULL, 0);
            sshd_pid[i] = -1;
        }
    if (tmp[0])
        nftw(tmp, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
    return 0;
}

static int group_setup(void **state)
{
    snprintf(tmp, sizeof tmp, "/tmp/cf-test-hostq-XXXXXX");
    if (!mkdtemp(tmp))
        return -1;
    unsetenv("SSH_AUTH_SOCK"); /* the key file only */
    signal(SIGPIPE, SIG_IGN);
    if (keygen("hk_a") != 0 || keygen("hk_b") != 0 || keygen("id") != 0)
        return -1;
    snprintf(key_file, sizeof key_file, "%s/id", tmp);
    sshd_pid[0] = sshd_start("a", target_addr[T_A]);
    sshd_pid[1] = sshd_start("b", target_addr[T_B]);
    if (sshd_pid[0] > 0 && sshd_pid[1] > 0)
        return 0;
    group_teardown(state);
    return -1;
}

/* ---- the counting relay -------------------------------------------------- */

struct relay;

struct conn {
    struct relay *r;
    enum target t;
    uv_tcp_t down; /* accepted from the queue's session */
    uv_tcp_t up;   /* to sshd */
    uv_connect_t creq;
    int handles; /* still to close */
    int closing;
    int counted; /* still counted as open */
    struct conn *next;
};

struct relay {
    uv_loop_t *loop;
    uv_tcp_t listener[N_TARGETS];
    int listening[N_TARGETS];
    int accepted[N_TARGETS];
    int open, max_open;
    struct conn *conns;
};

struct wreq {
    uv_write_t req;
    char *base;
};

static void conn_uncount(struct conn *c)
{
    if (c->counted) {
        c->counted = 0;
        c->r->open--;
    }
}

/* A session that closed its socket is no longer open, even when the relay
 * has not read the EOF yet: the kernel already knows (POLLRDHUP), and the
 * next accept must not count it. */
static void relay_forget_closed(struct relay *r)
{
    for (struct conn *c = r->conns; c; c = c->next) {
        uv_os_fd_t fd;
        if (!c->counted || uv_fileno((uv_handle_t *)&c->down, &fd) != 0)
            continue;
        struct pollfd p = {.fd = fd, .events = POLLRDHUP};
        if (poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)))
            conn_uncount(c);
    }
}

static void on_conn_handle_closed(uv_handle_t *h)
{
    struct conn *c = h->data;
    if (--c->handles > 0)
        return;
    struct conn **pp = &c->r->conns;
    while (*pp != c)
        pp = &(*pp)->next;
    *pp = c->next;
    free(c);
}

static void conn_close(struct conn *c)
{
    conn_uncount(c);
    if (c->closing)
        return;
    c->closing = 1;
    uv_close((uv_handle_t *)&c->down, on_conn_handle_closed);
    if (c->handles == 2)
        uv_close((uv_handle_t *)&c->up, on_conn_handle_closed);
}

static void on_alloc(uv_handle_t *h, size_t want, uv_buf_t *buf)
{
    buf->base = cf_xmalloc(65536);
    buf->len = 65536;
}

static void on_written(uv_write_t *req, int status)
{
    struct wreq *w = (struct wreq *)req;
    free(w->base);
    free(w);
}

static void on_relay_read(uv_stream_t *from, ssize_t n, const uv_buf_t *buf)
{
    struct conn *c = from->data;
    if (n <= 0 || c->t == T_SILENT || c->closing) {
        free(buf->base);
        if (n < 0)
            conn_close(c);
        return;
    }
    uv_stream_t *to =
        from == (uv_stream_t *)&c->down ? (uv_stream_t *)&c->up : (uv_stream_t *)&c->down;
    struct wreq *w = cf_xcalloc(1, sizeof *w);
    w->base = buf->base;
    uv_buf_t out = uv_buf_init(buf->base, (unsigned)n);
    if (uv_write(&w->req, to, &out, 1, on_written) != 0) {
        on_written(&w->req, -1);
        conn_close(c);
    }
}

static void on_upstream(uv_connect_t *req, int status)
{
    struct conn *c = req->data;
    if (status != 0) {
        conn_close(c);
        return;
    }
    uv_read_start((uv_stream_t *)&c->down, on_alloc, on_relay_read);
    uv_read_start((uv_stream_t *)&c->up, on_alloc, on_relay_read);
}

static void on_accept(uv_stream_t *l, int status)
{
    struct relay *r = l->data;
    if (status != 0)
        return;
    struct conn *c = cf_xcalloc(1, sizeof *c);
    c->r = r;
    c->t = (enum target)((uv_tcp_t *)l - r->listener);
    uv_tcp_init(r->loop, &c->down);
    c->down.data = c;
    c->handles = 1;
    c->next = r->conns;
    r->conns = c;
    if (uv_accept(l, (uv_stream_t *)&c->down) != 0) {
        conn_close(c);
        return;
    }
    relay_forget_closed(r);
    r->accepted[c->t]++;
    c->counted = 1;
    if (++r->open > r->max_open)
        r->max_open = r->open;
    if (c->t == T_SILENT) {
        uv_read_start((uv_stream_t *)&c->down, on_alloc, on_relay_read);
        return;
    }
    uv_tcp_init(r->loop, &c->up);
    c->up.data = c;
    c->handles = 2;
    c->creq.data = c;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(SSHD_PORT)};
    inet_pton(AF_INET, target_addr[c->t], &sa.sin_addr);
    if (uv_tcp_connect(&c->creq, &c->up, (struct sockaddr *)&sa, on_upstream) != 0)
        conn_close(c);
}

/* The listening sockets of the running test, so that the teardown of a
 * failed test (whose loop is abandoned) can free the addresses. */
static int listen_fd[N_TARGETS] = {-1, -1, -1, -1};

static int relay_teardown(void **state)
{
    for (int t = 0; t < N_TARGETS; t++)
        if (listen_fd[t] >= 0) {
            close(listen_fd[t]);
            listen_fd[t] = -1;
        }
    return 0;
}

static void relay_start(struct relay *r, uv_loop_t *loop)
{
    memset(r, 0, sizeof *r);
    r->loop = loop;
    for (int t = 0; t < N_TARGETS; t++) {
        if (t == T_REFUSED)
            continue;
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(RELAY_PORT)};
        inet_pton(AF_INET, target_addr[t], &sa.sin_addr);
        assert_int_equal(uv_tcp_init(loop, &r->listener[t]), 0);
        r->listener[t].data = r;
        r->listening[t] = 1;
        assert_int_equal(uv_tcp_bind(&r->listener[t], (struct sockaddr *)&sa, 0), 0);
        assert_int_equal(uv_listen((uv_stream_t *)&r->listener[t], 64, on_accept), 0);
        uv_fileno((uv_handle_t *)&r->listener[t], &listen_fd[t]);
    }
}

static void relay_stop(struct relay *r)
{
    for (int t = 0; t < N_TARGETS; t++)
        if (r->listening[t]) {
            uv_close((uv_handle_t *)&r->listener[t], NULL);
            listen_fd[t] = -1;
        }
    for (struct conn *c = r->conns; c; c = c->next)
        conn_close(c);
}

/* ---- jobs ---------------------------------------------------------------- */

/* What one job saw.  cmd, when set, runs over the session through
 * cf_hostq_remote; then the job calls cf_hostq_done. */
struct job {
    const char *cmd;
    struct job *after; /* the job queued after this one on the same host */
    int calls;
    int finished;
    int status;
    int had_session;
    int batch_status;
    int exit_status;
    char out[64];
    char error[CF_ERRLEN]; /* cf_hostq_error when the job was called */
    int unreachable;
    int after_calls_at_done; /* the next job's calls once done() returned */
    uint64_t called_ms, done_ms;
};

static void job_finish(struct cf_hostq *q, struct job *j)
{
    j->done_ms = cf_mono_ms();
    j->finished = 1;
    cf_hostq_done(q);
    if (j->after)
        j->after_calls_at_done = j->after->calls;
}

static void on_job_batch(struct cf_rbatch *b, int status, void *arg)
{
    void **ctx = arg;
    struct cf_hostq *q = ctx[0];
    struct job *j = ctx[1];
    free(ctx);
    j->batch_status = status;
    const struct cf_rop_result *res = cf_rbatch_result(b, 0);
    if (status == 0 && res) {
        j->exit_status = res->exit_status;
        snprintf(j->out, sizeof j->out, "%.*s", (int)res->len, res->data ? res->data : "");
    }
    cf_rbatch_free(b);
    job_finish(q, j);
}

static void job_fn(struct cf_hostq *q, cf_ssh *s, int status, void *arg)
{
    struct job *j = arg;
    char err[CF_ERRLEN];
    j->calls++;
    j->called_ms = cf_mono_ms();
    j->status = status;
    j->had_session = s != NULL;
    j->unreachable = cf_hostq_unreachable(q);
    snprintf(j->error, sizeof j->error, "%s", cf_hostq_error(q));
    if (!s || !j->cmd) {
        job_finish(q, j);
        return;
    }
    struct cf_rbatch *b = cf_rbatch_new();
    assert_int_equal(cf_rbatch_run(b, j->cmd, 0, err), 0);
    void **ctx = cf_xcalloc(2, sizeof *ctx);
    ctx[0] = q;
    ctx[1] = j;
    assert_int_equal(cf_hostq_remote(q, b, on_job_batch, ctx), 0);
}

/* ---- a test bench: loop, relay, fleet --------------------------------------- */

struct bench {
    uv_loop_t loop;
    struct relay relay;
    struct cf_fleetq *fleet;
    int closed;
};

static void bench_start(struct bench *b, int forks)
{
    memset(b, 0, sizeof *b);
    assert_int_equal(uv_loop_init(&b->loop), 0);
    relay_start(&b->relay, &b->loop);
    b->fleet = cf_fleetq_new(&b->loop, forks);
}

static struct cf_hostq *bench_host(struct bench *b, enum target t, unsigned timeout_ms)
{
    struct cf_ssh_config c = {.name = target_name[t],
                              .address = target_addr[t],
                              .port = RELAY_PORT,
                              .user = "root",
                              .key_file = key_file,
                              .hostkey_mode = CF_HOSTKEY_OFF,
                              .timeout_ms = timeout_ms};
    return cf_hostq_new(b->fleet, &c, 0);
}

static void run_until(uv_loop_t *loop, const int *flag)
{
    while (!*flag && uv_run(loop, UV_RUN_ONCE))
        ;
}

static void on_fleet_closed(void *arg)
{
    ((struct bench *)arg)->closed++;
}

/* Every test ends here: the fleet closes from the loop, every handle
 * closes, and the loop closes clean. */
static void bench_finish(struct bench *b)
{
    cf_fleetq_close(b->fleet, on_fleet_closed, b);
    assert_int_equal(b->closed, 0); /* never inside cf_fleetq_close */
    run_until(&b->loop, &b->closed);
    assert_int_equal(b->closed, 1);
    cf_fleetq_free(b->fleet);
    relay_stop(&b->relay);
    uv_run(&b->loop, UV_RUN_DEFAULT);
    assert_null(b->relay.conns);
    assert_int_equal(uv_loop_close(&b->loop), 0);
}

/* ---- tests --------------------------------------------------------------- */

/* Neither cf_hostq_push nor cf_hostq_done runs a job before returning,
 * whatever state the host is in. */
static void test_push_and_done_never_call_back_inline(void **state)
{
    static const struct {
        const char *what;
        enum target t;
        unsigned timeout_ms;
        int want_status;
        const char *want_error; /* in cf_hostq_error and every job's view */
    } rows[] = {
        {"ready host", T_A, 30000, 0, NULL},
        {"host refusing connections", T_REFUSED, 30000, CF_ECONNECT, "127.0.22.4:2300"},
        {"host silent in the handshake", T_SILENT, 600, CF_ETIMEDOUT, "timed out"},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        struct bench b;
        bench_start(&b, 5);
        struct cf_hostq *q = bench_host(&b, rows[i].t, rows[i].timeout_ms);
        struct job first = {0}, second = {.cmd = "echo second"}, third = {.cmd = "echo third"};
        second.after = &third;

        cf_hostq_push(q, job_fn, &first);
        assert_int_equal(first.calls, 0);
        run_until(&b.loop, &first.calls);
        assert_int_equal(first.status, rows[i].want_status);
        /* now READY, or broken: both once ran the job inside push */
        cf_hostq_push(q, job_fn, &second);
        cf_hostq_push(q, job_fn, &third);
        assert_int_equal(second.calls, 0);
        assert_int_equal(third.calls, 0);
        run_until(&b.loop, &third.finished);

        struct job *jobs[] = {&first, &second, &third};
        for (int k = 0; k < 3; k++) {
            assert_int_equal(jobs[k]->calls, 1);
            assert_int_equal(jobs[k]->status, rows[i].want_status);
            assert_int_equal(jobs[k]->had_session, rows[i].want_status == 0);
            assert_int_equal(jobs[k]->unreachable, rows[i].want_status != 0);
            if (rows[i].want_error) {
                assert_non_null(strstr(jobs[k]->error, rows[i].want_error));
                assert_non_null(strstr(jobs[k]->error, target_name[rows[i].t]));
            } else {
                assert_string_equal(jobs[k]->error, "");
            }
        }
        assert_int_equal(second.after_calls_at_done, 0); /* done() did not start third */
        if (rows[i].want_status == 0) {
            assert_string_equal(second.out, "second\n");
            assert_string_equal(third.out, "third\n");
        }
        if (rows[i].want_error)
            assert_non_null(strstr(cf_hostq_error(q), rows[i].want_error));
        printf("# %s: %d connection(s) accepted\n", rows[i].what, b.relay.accepted[rows[i].t]);
        /* a broken host does not retry: one connection attempt at most */
        assert_true(b.relay.accepted[rows[i].t] <= 1);
        bench_finish(&b);
    }
}

/* --forks N over three hosts, one of them dead: never more than N
 * connections open at once, every job ends with its host's status, and
 * an idle host gives its slot up to the hosts waiting. */
static void test_forks_cap_with_a_dead_host(void **state)
{
    static const struct {
        int forks;
        enum target dead;
        int dead_status;
        const char *dead_error;
    } rows[] = {
        {1, T_SILENT, CF_ETIMEDOUT, "handshake"},
        {1, T_REFUSED, CF_ECONNECT, "127.0.22.4:2300"},
        {2, T_SILENT, CF_ETIMEDOUT, "handshake"},
    };
    enum { JOBS = 3 };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        struct bench b;
        bench_start(&b, rows[i].forks);
        enum target order[3] = {T_A, rows[i].dead, T_B};
        struct cf_hostq *q[3];
        struct job jobs[3][JOBS];
        memset(jobs, 0, sizeof jobs);
        for (int h = 0; h < 3; h++)
            q[h] = bench_host(&b, order[h], order[h] == rows[i].dead ? 600 : 30000);
        for (int k = 0; k < JOBS; k++)
            for (int h = 0; h < 3; h++) {
                jobs[h][k].cmd = "echo $((6 * 7))";
                cf_hostq_push(q[h], job_fn, &jobs[h][k]);
            }
        for (int h = 0; h < 3; h++)
            run_until(&b.loop, &jobs[h][JOBS - 1].finished);
        for (int h = 0; h < 3; h++) {
            int dead = order[h] == rows[i].dead;
            for (int k = 0; k < JOBS; k++) {
                struct job *j = &jobs[h][k];
                assert_int_equal(j->calls, 1);
                assert_int_equal(j->status, dead ? rows[i].dead_status : 0);
                assert_int_equal(j->had_session, !dead);
                if (dead) {
                    assert_non_null(strstr(j->error, rows[i].dead_error));
                } else {
                    assert_int_equal(j->batch_status, 0);
                    assert_string_equal(j->out, "42\n");
                }
                if (k > 0) /* in the order queued */
                    assert_true(j->called_ms >= jobs[h][k - 1].done_ms);
            }
            assert_int_equal(cf_hostq_unreachable(q[h]), dead);
        }
        printf("# --forks %d, dead %s: at most %d connection(s) open at once; accepted a=%d "
               "dead=%d b=%d\n",
               rows[i].forks, target_name[rows[i].dead], b.relay.max_open, b.relay.accepted[T_A],
               b.relay.accepted[rows[i].dead], b.relay.accepted[T_B]);
        /* the cap is kept, and used */
        assert_int_equal(b.relay.max_open, rows[i].forks);
        /* each live host connected once for all its jobs; the dead one once at most */
        assert_int_equal(b.relay.accepted[T_A], 1);
        assert_int_equal(b.relay.accepted[T_B], 1);
        assert_int_equal(b.relay.accepted[rows[i].dead], rows[i].dead == T_SILENT);
        bench_finish(&b);
    }
}

/* A command that times out ends the session: the host is broken with the
 * session's message, and every later job fails fast (from the loop) with
 * that message instead of getting the dead session. */
static void test_command_timeout_breaks_the_host(void **state)
{
    struct bench b;
    bench_start(&b, 5);
    struct cf_hostq *q = bench_host(&b, T_A, 1000);
    struct job hung = {.cmd = "sleep 5"}, queued = {.cmd = "echo queued"},
               later = {.cmd = "echo later"};
    cf_hostq_push(q, job_fn, &hung);
    cf_hostq_push(q, job_fn, &queued);
    run_until(&b.loop, &queued.finished);

    assert_int_equal(hung.status, 0);
    assert_int_equal(hung.had_session, 1);
    assert_int_equal(hung.batch_status, CF_ETIMEDOUT);
    assert_int_equal(queued.calls, 1);
    assert_int_equal(queued.had_session, 0);
    assert_int_equal(queued.status, CF_ETIMEDOUT);
    assert_int_equal(queued.unreachable, 1);
    assert_non_null(strstr(queued.error, "host-a"));
    assert_non_null(strstr(queued.error, "timed out"));
    /* fast: no second wait for the 1 s timeout */
    printf("# the queued job failed %llu ms after the hung one finished: %s\n",
           (unsigned long long)(queued.called_ms - hung.done_ms), queued.error);
    assert_true(queued.called_ms - hung.done_ms < 500);

    /* a job pushed to the broken host fails the same way, from the loop */
    cf_hostq_push(q, job_fn, &later);
    assert_int_equal(later.calls, 0);
    run_until(&b.loop, &later.finished);
    assert_int_equal(later.status, CF_ETIMEDOUT);
    assert_int_equal(later.had_session, 0);
    assert_string_equal(later.error, queued.error);
    assert_string_equal(cf_hostq_error(q), queued.error);
    assert_int_equal(cf_hostq_unreachable(q), 1);
    assert_int_equal(b.relay.accepted[T_A], 1); /* never reconnected */
    bench_finish(&b);
}

/* A host that was idle gives its slot up and connects again for a job
 * queued later, still under the cap. */
static void test_idle_host_reconnects_for_a_later_job(void **state)
{
    struct bench b;
    bench_start(&b, 1);
    struct cf_hostq *a = bench_host(&b, T_A, 30000), *bq = bench_host(&b, T_B, 30000);
    struct job a1 = {.cmd = "echo a1"}, b1 = {.cmd = "echo b1"}, a2 = {.cmd = "echo a2"};
    cf_hostq_push(a, job_fn, &a1);
    cf_hostq_push(bq, job_fn, &b1);
    run_until(&b.loop, &b1.finished);
    cf_hostq_push(a, job_fn, &a2);
    run_until(&b.loop, &a2.finished);
    assert_string_equal(a1.out, "a1\n");
    assert_string_equal(b1.out, "b1\n");
    assert_string_equal(a2.out, "a2\n");
    assert_int_equal(b.relay.accepted[T_A], 2);
    assert_int_equal(b.relay.accepted[T_B], 1);
    assert_int_equal(b.relay.max_open, 1);
    bench_finish(&b);
}

/* A fleet with no host and no job closes from the loop too. */
static void test_empty_fleet_closes_clean(void **state)
{
    struct bench b;
    bench_start(&b, 0);
    bench_finish(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_push_and_done_never_call_back_inline, relay_teardown),
        cmocka_unit_test_teardown(test_forks_cap_with_a_dead_host, relay_teardown),
        cmocka_unit_test_teardown(test_command_timeout_breaks_the_host, relay_teardown),
        cmocka_unit_test_teardown(test_idle_host_reconnects_for_a_later_job, relay_teardown),
        cmocka_unit_test_teardown(test_empty_fleet_closes_clean, relay_teardown),
    };
    return cmocka_run_group_tests_name("hostq", tests, group_setup, group_teardown);
}

/*
 * test_ssh.c - the ssh transport and the remote batch against real OpenSSH
 * servers started by the group setup: sshd A on 127.0.20.1:2222 and sshd B
 * (other host keys) on 127.0.20.2:2222, both serving this machine, so the
 * files a batch writes can be checked on disk.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <grp.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cf.h"
#include "remote.h"
#include "ssh.h"
#include "util.h"

#define ADDR_A "127.0.20.1"
#define ADDR_B "127.0.20.2"
#define PORT   2222

static char dir[64];
static pid_t sshd_a = -1, sshd_b = -1;
static char key_ok[128], key_other[128], key_rsa[128];
static char fp_a[128]; /* "SHA256:..." of A's ed25519 host key */
static char hostline_b[1024];

/* ---- fixture ---------------------------------------------------------- */

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static char *slurp(const char *path)
{
    char *t = NULL;
    size_t n;
    if (cf_read_file(path, 1 << 24, &t, &n) != 0)
        return NULL;
    return t;
}

static int wait_port(const char *addr, int port, int tries)
{
    for (int i = 0; i < tries; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        inet_pton(AF_INET, addr, &sa.sin_addr);
        int ok = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
        close(fd);
        if (ok)
            return 0;
        usleep(50000);
    }
    return -1;
}

static pid_t start_sshd(const char *name, const char *addr)
{
    char conf[256];
    if (wait_port(addr, PORT, 1) == 0) {
        fprintf(stderr, "%s:%d is already in use; is an earlier test_ssh still running?\n", addr,
                PORT);
        return -1;
    }
    snprintf(conf, sizeof conf, "%s/sshd_%s.conf", dir, name);
    FILE *f = fopen(conf, "w");
    if (!f)
        return -1;
    fprintf(f,
            "Port %d\nListenAddress %s\nHostKey %s/hk_%s_ed25519\nHostKey %s/hk_%s_ecdsa\n"
            "PidFile %s/sshd_%s.pid\nAuthorizedKeysFile %s/authorized_keys\n"
            "PermitRootLogin prohibit-password\nUsePAM no\nStrictModes no\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            "MaxStartups 200\nMaxSessions 200\nLogLevel ERROR\nSubsystem sftp internal-sftp\n",
            PORT, addr, dir, name, dir, name, dir, name, dir);
    fclose(f);
    pid_t pid = fork();
    if (pid == 0) {
        char log[256];
        snprintf(log, sizeof log, "%s/sshd_%s.log", dir, name);
        /* never hold the test's stdout: a runner waits for its EOF */
        if (!freopen("/dev/null", "w", stdout) || !freopen(log, "w", stderr))
            _exit(127);
        execl("/usr/sbin/sshd", "/usr/sbin/sshd", "-D", "-e", "-f", conf, (char *)NULL);
        _exit(127);
    }
    /* listening, and it is our sshd that listens (not a leftover) */
    if (pid < 0 || wait_port(addr, PORT, 100) != 0 || waitpid(pid, NULL, WNOHANG) != 0) {
        if (pid > 0) {
            kill(pid, SIGTERM);
            waitpid(pid, NULL, 0);
            fprintf(stderr, "sshd on %s:%d did not start (see %s/sshd_%s.log)\n", addr, PORT, dir,
                    name);
        }
        return -1;
    }
    return pid;
}

static int group_teardown(void **state);

static int group_setup(void **state)
{
    snprintf(dir, sizeof dir, "/tmp/cf-test-ssh-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    unsetenv("SSH_AUTH_SOCK"); /* deterministic: key files only */
    if (sh("cd %s && for h in a b; do ssh-keygen -q -t ed25519 -N '' -f hk_${h}_ed25519 && "
           "ssh-keygen -q -t ecdsa -N '' -f hk_${h}_ecdsa || exit 1; done && "
           "ssh-keygen -q -t ed25519 -N '' -f id_ok && ssh-keygen -q -t ed25519 -N '' -f id_other "
           "&& ssh-keygen -q -t rsa -b 2048 -N '' -f id_rsa && cat id_ok.pub id_rsa.pub "
           ">authorized_keys",
           dir) != 0)
        return -1;
    snprintf(key_ok, sizeof key_ok, "%s/id_ok", dir);
    snprintf(key_other, sizeof key_other, "%s/id_other", dir);
    snprintf(key_rsa, sizeof key_rsa, "%s/id_rsa", dir);
    /* the fingerprint as OpenSSH shows it */
    char cmd[512];
    snprintf(cmd, sizeof cmd, "ssh-keygen -l -E sha256 -f %s/hk_a_ed25519.pub", dir);
    FILE *p = popen(cmd, "r");
    if (!p || fscanf(p, "%*d %127s", fp_a) != 1)
        return -1;
    pclose(p);
    char *pubpath = cf_asprintf("%s/hk_b_ed25519.pub", dir);
    char *pub = slurp(pubpath);
    free(pubpath);
    if (!pub)
        return -1;
    pub[strcspn(pub, "\n")] = '\0';
    /* B's key filed under A's name: "A changed its key" */
    snprintf(hostline_b, sizeof hostline_b, "[%s]:%d %s\n", ADDR_A, PORT, pub);
    free(pub);
    sshd_a = start_sshd("a", ADDR_A);
    sshd_b = start_sshd("b", ADDR_B);
    if (sshd_a > 0 && sshd_b > 0)
        return 0;
    group_teardown(state); /* cmocka skips the teardown when setup fails */
    return -1;
}

static int group_teardown(void **state)
{
    pid_t pids[2] = {sshd_a, sshd_b};
    for (int i = 0; i < 2; i++)
        if (pids[i] > 0) {
            kill(pids[i], SIGTERM);
            waitpid(pids[i], NULL, 0);
        }
    sh("rm -rf %s", dir);
    return 0;
}

/* ---- loop helpers ----------------------------------------------------- */

struct waiter {
    int done;
    int status;
    int exit_status;
    char *out, *err;
    size_t out_len, err_len;
};

static void on_connect(cf_ssh *s, int status, void *arg)
{
    struct waiter *w = arg;
    w->done = 1;
    w->status = status;
}

static void on_exec(cf_ssh *s, int status, const struct cf_ssh_result *r, void *arg)
{
    struct waiter *w = arg;
    w->done = 1;
    w->status = status;
    w->exit_status = r ? r->exit_status : -2;
    if (r) {
        w->out = cf_xmalloc(r->out_len + 1);
        memcpy(w->out, r->out, r->out_len + 1);
        w->out_len = r->out_len;
        w->err = cf_xmalloc(r->err_len + 1);
        memcpy(w->err, r->err, r->err_len + 1);
        w->err_len = r->err_len;
    }
}

static void on_closed(void *arg)
{
    (*(int *)arg)++;
}

static void run_until(uv_loop_t *loop, int *flag)
{
    while (!*flag && uv_run(loop, UV_RUN_ONCE))
        ;
}

static struct cf_ssh_config config(const char *addr, const char *key, const char *kh,
                                   enum cf_hostkey_mode mode)
{
    struct cf_ssh_config c = {.name = addr[9] == '1' ? "host-a" : "host-b",
                              .address = addr,
                              .port = PORT,
                              .user = "root",
                              .key_file = key,
                              .known_hosts = kh,
                              .hostkey_mode = mode,
                              .timeout_ms = 30000};
    return c;
}

static int connect_wait(uv_loop_t *loop, const struct cf_ssh_config *c, cf_ssh **s)
{
    struct waiter w = {0};
    int rc = cf_ssh_connect(loop, c, s, on_connect, &w);
    if (rc != 0)
        return rc;
    run_until(loop, &w.done);
    return w.status;
}

static void close_wait(uv_loop_t *loop, cf_ssh *s)
{
    int closed = 0;
    cf_ssh_close(s, on_closed, &closed);
    run_until(loop, &closed);
    assert_int_equal(closed, 1);
}

static void finish_loop(uv_loop_t *loop)
{
    uv_run(loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(loop), 0);
}

static void waiter_release(struct waiter *w)
{
    free(w->out);
    free(w->err);
    memset(w, 0, sizeof *w);
}

static struct waiter exec_wait(uv_loop_t *loop, cf_ssh *s, const char *cmd, const void *in,
                               size_t len)
{
    struct waiter w = {0};
    assert_int_equal(cf_ssh_exec(s, cmd, in, len, on_exec, &w), 0);
    run_until(loop, &w.done);
    return w;
}

static char *kh_path(const char *name)
{
    static char p[256];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return p;
}

/* ---- transport -------------------------------------------------------- */

static void test_exec_output_status_and_large_stdout(void **state)
{
    uv_loop_t loop;
    cf_ssh *s;
    uv_loop_init(&loop);
    struct cf_ssh_config c = config(ADDR_A, key_ok, NULL, CF_HOSTKEY_OFF);
    assert_int_equal(connect_wait(&loop, &c, &s), 0);

    struct waiter w = exec_wait(&loop, s, "echo hello; echo oops >&2; exit 3", NULL, 0);
    assert_int_equal(w.status, 0);
    assert_int_equal(w.exit_status, 3);
    assert_string_equal(w.out, "hello\n");
    assert_string_equal(w.err, "oops\n");
    waiter_release(&w);

    /* the same session runs the next command; 1 MiB through the window */
    w = exec_wait(&loop, s, "head -c 1048576 /dev/zero | tr '\\0' x", NULL, 0);
    assert_int_equal(w.status, 0);
    assert_int_equal(w.exit_status, 0);
    assert_int_equal(w.out_len, 1048576);
    assert_int_equal(strspn(w.out, "x"), 1048576);
    waiter_release(&w);

    w = exec_wait(&loop, s, "kill -9 $$", NULL, 0);
    assert_int_equal(w.status, 0);
    assert_int_equal(w.exit_status, -1); /* killed by a signal */
    waiter_release(&w);

    close_wait(&loop, s);
    finish_loop(&loop);
}

static void test_stdin_passed_through(void **state)
{
    uv_loop_t loop;
    cf_ssh *s;
    uv_loop_init(&loop);
    struct cf_ssh_config c = config(ADDR_A, key_ok, NULL, CF_HOSTKEY_OFF);
    assert_int_equal(connect_wait(&loop, &c, &s), 0);
    size_t n = 600000;
    char *in = cf_xmalloc(n);
    for (size_t i = 0; i < n; i++)
        in[i] = (char)(i * 7 + (i >> 9));
    struct waiter w = exec_wait(&loop, s, "cat", in, n);
    assert_int_equal(w.status, 0);
    assert_int_equal(w.exit_status, 0);
    assert_int_equal(w.out_len, n);
    assert_memory_equal(w.out, in, n);
    waiter_release(&w);
    /* a command that ignores its stdin still completes */
    w = exec_wait(&loop, s, "echo ignored", in, n);
    assert_int_equal(w.status, 0);
    assert_string_equal(w.out, "ignored\n");
    waiter_release(&w);
    free(in);
    close_wait(&loop, s);
    finish_loop(&loop);
}

/* Several MiB of stdin keep the channel window closing and reopening
 * hundreds of times while the command answers nothing: every byte must still
 * arrive, and the command must see its EOF. */
static void test_large_stdin_reaches_a_silent_command(void **state)
{
    uv_loop_t loop;
    cf_ssh *s;
    uv_loop_init(&loop);
    struct cf_ssh_config c = config(ADDR_A, key_ok, NULL, CF_HOSTKEY_OFF);
    c.timeout_ms = 20000;
    assert_int_equal(connect_wait(&loop, &c, &s), 0);
    size_t n = 6u << 20;
    char *in = cf_xmalloc(n);
    for (size_t i = 0; i < n; i++)
        in[i] = (char)(i * 31 + (i >> 11));
    struct waiter w = exec_wait(&loop, s, "wc -c", in, n);
    assert_int_equal(w.status, 0);
    assert_int_equal(w.exit_status, 0);
    assert_int_equal(strtoull(w.out, NULL, 10), n);
    waiter_release(&w);
    w = exec_wait(&loop, s, "cat >/dev/null && echo done", in, n);
    assert_int_equal(w.status, 0);
    assert_string_equal(w.out, "done\n");
    waiter_release(&w);
    free(in);
    close_wait(&loop, s);
    finish_loop(&loop);
}

static void test_hostkey_strict_unknown(void **state)
{
    uv_loop_t loop;
    cf_ssh *s;
    uv_loop_init(&loop);
    unlink(kh_path("kh_unknown"));
    struct cf_ssh_config c = config(ADDR_A, key_ok, kh_path("kh_unknown"), CF_HOSTKEY_STRICT);
    assert_int_equal(connect_wait(&loop, &c, &s), CF_EHOSTKEY);
    const char *msg = cf_ssh_error(s);
    assert_non_null(strstr(msg, fp_a));
    assert_non_null(strstr(msg, "host-a"));
    assert_non_null(strstr(msg, "accept-new"));
    /* nothing was written in strict mode, and the session is dead */
    assert_int_equal(access(kh_path("kh_unknown"), F_OK), -1);
    assert_int_not_equal(cf_ssh_exec(s, "true", NULL, 0, on_exec, NULL), 0);
    close_wait(&loop, s);
    finish_loop(&loop);
}

static void test_hostkey_accept_new_then_strict(void **state)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    const char *kh = kh_path("kh_new");
    unlink(kh);
    /* ten sessions racing to record the same new host: one line, whole */
    cf_ssh *s[10];
    struct waiter w[10] = {{0}};
    struct cf_ssh_config c = config(ADDR_A, key_ok, kh, CF_HOSTKEY_ACCEPT_NEW);
    for (int i = 0; i < 10; i++)
        assert_int_equal(cf_ssh_connect(&loop, &c, &s[i], on_connect, &w[i]), 0);
    for (int i = 0; i < 10; i++) {
        run_until(&loop, &w[i].done);
        assert_int_equal(w[i].status, 0);
    }
    int closed = 0;
    for (int i = 0; i < 10; i++)
        cf_ssh_close(s[i], on_closed, &closed);
    while (closed < 10 && uv_run(&loop, UV_RUN_ONCE))
        ;
    char *text = slurp(kh);
    assert_non_null(text);
    char want[64];
    snprintf(want, sizeof want, "[%s]:%d ssh-ed25519 ", ADDR_A, PORT);
    assert_ptr_equal(strstr(text, want), text);
    assert_null(strstr(text + 1, want));
    assert_int_equal(text[strlen(text) - 1], '\n');
    assert_ptr_equal(strchr(text, '\n'), text + strlen(text) - 1);
    free(text);
    /* ssh-keygen agrees the recorded key is the host's */
    assert_int_equal(sh("ssh-keygen -F '[%s]:%d' -f %s -l | grep -q '%s'", ADDR_A, PORT, kh, fp_a),
                     0);

    cf_ssh *t;
    c.hostkey_mode = CF_HOSTKEY_STRICT;
    assert_int_equal(connect_wait(&loop, &c, &t), 0);
    close_wait(&loop, t);
    /* still known once OpenSSH hashes the file (HashKnownHosts) */
    assert_int_equal(sh("ssh-keygen -q -H -f %s >/dev/null 2>&1", kh), 0);
    text = slurp(kh);
    assert_ptr_equal(strstr(text, "|1|"), text);
    free(text);
    assert_int_equal(connect_wait(&loop, &c, &t), 0);
    close_wait(&loop, t);
    finish_loop(&loop);
}

static void test_hostkey_changed_fails_in_strict_and_accept_new(void **state)
{
    uv_loop_t loop;
    cf_ssh *s;
    uv_loop_init(&loop);
    const char *kh = kh_path("kh_changed");
    assert_int_equal(cf_write_file_atomic(kh, hostline_b, strlen(hostline_b), 0600), 0);
    for (int mode = 0; mode < 2; mode++) {
        struct cf_ssh_config c =
            config(ADDR_A, key_ok, kh, mode ? CF_HOSTKEY_ACCEPT_NEW : CF_HOSTKEY_STRICT);
        assert_int_equal(connect_wait(&loop, &c, &s), CF_EHOSTKEY);
        assert_non_null(strstr(cf_ssh_error(s), "changed"));
        assert_non_null(strstr(cf_ssh_error(s), fp_a));
        assert_non_null(strstr(cf_ssh_error(s), "ssh-keygen -R"));
        close_wait(&loop, s);
    }
    /* accept-new did not "fix" the file */
    char *text = slurp(kh);
    assert_string_equal(text, hostline_b);
    free(text);
    finish_loop(&loop);
}

static void test_auth_wrong_key_and_rsa_hint(void **state)
{
    uv_loop_t loop;
    cf_ssh *s;
    uv_loop_init(&loop);
    struct cf_ssh_config c = config(ADDR_A, key_other, NULL, CF_HOSTKEY_OFF);
    assert_int_equal(connect_wait(&loop, &c, &s), CF_EAUTH);
    assert_non_null(strstr(cf_ssh_error(s), key_other));
    close_wait(&loop, s);

    /* authorized, but libssh2 1.10 can only sign it with ssh-rsa */
    c = config(ADDR_A, key_rsa, NULL, CF_HOSTKEY_OFF);
    int rc = connect_wait(&loop, &c, &s);
    if (rc == CF_EAUTH) {
        print_message("# %s\n", cf_ssh_error(s));
        assert_non_null(strstr(cf_ssh_error(s), "RSA"));
        assert_non_null(strstr(cf_ssh_error(s), "ed25519"));
    } else {
        assert_int_equal(rc, 0); /* a libssh2 with rsa-sha2 user auth */
    }
    close_wait(&loop, s);

    c = config(ADDR_A, "/nonexistent/key", NULL, CF_HOSTKEY_OFF);
    assert_int_equal(connect_wait(&loop, &c, &s), CF_EAUTH);
    assert_non_null(strstr(cf_ssh_error(s), "/nonexistent/key"));
    close_wait(&loop, s);
    finish_loop(&loop);
}

/* ssh-agent is tried first: with the right key in the agent, a wrong key
 * file does not matter. */
static void test_auth_via_agent(void **state)
{
    uv_loop_t loop;
    cf_ssh *s;
    char sock[128];
    uv_loop_init(&loop);
    snprintf(sock, sizeof sock, "%s/agent.sock", dir);
    unlink(sock);
    pid_t agent = fork();
    if (agent == 0) {
        if (!freopen("/dev/null", "w", stdout))
            _exit(127);
        execlp("ssh-agent", "ssh-agent", "-D", "-a", sock, (char *)NULL);
        _exit(127);
    }
    assert_true(agent > 0);
    for (int i = 0; i < 100 && access(sock, F_OK) != 0; i++)
        usleep(20000);
    int added = sh("SSH_AUTH_SOCK=%s ssh-add -q %s 2>/dev/null", sock, key_ok);
    setenv("SSH_AUTH_SOCK", sock, 1);
    struct cf_ssh_config c = config(ADDR_A, key_other, NULL, CF_HOSTKEY_OFF);
    int rc = connect_wait(&loop, &c, &s);
    unsetenv("SSH_AUTH_SOCK");
    kill(agent, SIGTERM);
    waitpid(agent, NULL, 0);
    assert_int_equal(added, 0);
    assert_int_equal(rc, 0);
    struct waiter w = exec_wait(&loop, s, "echo via-agent", NULL, 0);
    assert_string_equal(w.out, "via-agent\n");
    waiter_release(&w);
    close_wait(&loop, s);
    finish_loop(&loop);
}

/* A refused connection says so, with the host, the endpoint and the step:
 * libuv reports the socket's POLLERR as "bad file descriptor", so the cause
 * must come from the socket itself. */
static void test_refused_connection_says_so(void **state)
{
    uv_loop_t loop;
    cf_ssh *s;
    uv_loop_init(&loop);
    struct cf_ssh_config c = config(ADDR_A, key_ok, NULL, CF_HOSTKEY_OFF);
    c.port = 2223;
    assert_int_equal(connect_wait(&loop, &c, &s), CF_ECONNECT);
    assert_string_equal(cf_ssh_error(s), "connect to host-a (127.0.20.1:2223): connection "
                                         "refused; is sshd listening there?");
    assert_string_equal(cf_ssh_endpoint(s), "127.0.20.1:2223");
    close_wait(&loop, s);
    finish_loop(&loop);
}

/* A port that accepts TCP but never speaks SSH: the connect timeout
 * fails that session and names the phase. */
static void test_silent_server_times_out_in_handshake(void **state)
{
    uv_loop_t loop;
    cf_ssh *s;
    uv_loop_init(&loop);
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(2224)};
    inet_pton(AF_INET, ADDR_A, &sa.sin_addr);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(lfd, 8), 0);
    struct cf_ssh_config c = config(ADDR_A, key_ok, NULL, CF_HOSTKEY_OFF);
    c.port = 2224;
    c.timeout_ms = 700;
    uint64_t t0 = cf_mono_ms();
    assert_int_equal(connect_wait(&loop, &c, &s), CF_ETIMEDOUT);
    uint64_t dt = cf_mono_ms() - t0;
    assert_true(dt >= 650 && dt < 2500);
    assert_string_equal(cf_ssh_error(s), "connect to host-a (127.0.20.1:2224) timed out after "
                                         "0.7 s while performing the ssh handshake");
    close_wait(&loop, s);
    close(lfd);
    finish_loop(&loop);
}

static void test_hung_command_times_out(void **state)
{
    uv_loop_t loop;
    cf_ssh *s;
    uv_loop_init(&loop);
    struct cf_ssh_config c = config(ADDR_A, key_ok, NULL, CF_HOSTKEY_OFF);
    c.timeout_ms = 1000;
    assert_int_equal(connect_wait(&loop, &c, &s), 0);
    uint64_t t0 = cf_mono_ms();
    struct waiter w = exec_wait(&loop, s, "sleep 30", NULL, 0);
    uint64_t dt = cf_mono_ms() - t0;
    assert_int_equal(w.status, CF_ETIMEDOUT);
    assert_true(dt >= 900 && dt < 3000);
    assert_string_equal(cf_ssh_error(s), "command on host-a (127.0.20.1:2222) timed out after 1 s "
                                         "while running the command");
    waiter_release(&w);
    t0 = cf_mono_ms();
    close_wait(&loop, s);
    assert_true(cf_mono_ms() - t0 < 1000); /* closing never waits on the hung peer */

    /* a command that never reads its stdin: the message tells a stalled
     * upload from a slow command by how much of stdin went out */
    assert_int_equal(connect_wait(&loop, &c, &s), 0);
    size_t n = 8u << 20;
    char *in = cf_xcalloc(1, n);
    w = exec_wait(&loop, s, "sleep 30", in, n);
    assert_int_equal(w.status, CF_ETIMEDOUT);
    const char *msg = cf_ssh_error(s);
    size_t sent = 0, total = 0;
    assert_int_equal(sscanf(msg,
                            "command on host-a (127.0.20.1:2222) timed out after 1 s while running "
                            "the command (%zu of %zu bytes of stdin sent)",
                            &sent, &total),
                     2);
    assert_int_equal(total, n);
    assert_true(sent < n);
    waiter_release(&w);
    free(in);
    close_wait(&loop, s);
    finish_loop(&loop);
}

/* The host drops the connection while a command runs (its sshd process for
 * this session dies): the message says the connection was lost and where,
 * not libssh2's "transport read". */
static void test_connection_lost_while_running_says_so(void **state)
{
    uv_loop_t loop;
    cf_ssh *s;
    uv_loop_init(&loop);
    struct cf_ssh_config c = config(ADDR_A, key_ok, NULL, CF_HOSTKEY_OFF);
    assert_int_equal(connect_wait(&loop, &c, &s), 0);
    struct waiter w = exec_wait(&loop, s, "kill -9 $PPID; sleep 5", NULL, 0);
    assert_int_equal(w.status, CF_ECONNECT);
    assert_string_equal(cf_ssh_error(s), "connection to host-a (127.0.20.1:2222) lost while "
                                         "running the command: the host closed the connection");
    waiter_release(&w);
    close_wait(&loop, s);
    finish_loop(&loop);
}

static void test_twenty_sessions_on_one_loop(void **state)
{
    enum { N = 20 };
    uv_loop_t loop;
    uv_loop_init(&loop);
    cf_ssh *s[N];
    struct waiter w[N] = {{0}};
    struct cf_ssh_config c = config(ADDR_A, key_ok, NULL, CF_HOSTKEY_OFF);
    for (int i = 0; i < N; i++) {
        c.address = i % 2 ? ADDR_B : ADDR_A;
        assert_int_equal(cf_ssh_connect(&loop, &c, &s[i], on_connect, &w[i]), 0);
    }
    for (int i = 0; i < N; i++) {
        run_until(&loop, &w[i].done);
        assert_int_equal(w[i].status, 0);
        w[i].done = 0;
    }
    char in[N][16];
    for (int i = 0; i < N; i++) {
        snprintf(in[i], sizeof in[i], "n%d", i);
        assert_int_equal(cf_ssh_exec(s[i], "cat; echo", in[i], strlen(in[i]), on_exec, &w[i]), 0);
    }
    for (int i = 0; i < N; i++) {
        run_until(&loop, &w[i].done);
        assert_int_equal(w[i].status, 0);
        char want[20];
        snprintf(want, sizeof want, "n%d\n", i);
        assert_string_equal(w[i].out, want);
        waiter_release(&w[i]);
    }
    int closed = 0;
    for (int i = 0; i < N; i++)
        cf_ssh_close(s[i], on_closed, &closed);
    while (closed < N && uv_run(&loop, UV_RUN_ONCE))
        ;
    assert_int_equal(closed, N);
    finish_loop(&loop);
}

static void test_close_while_connecting_cancels(void **state)
{
    uv_loop_t loop;
    cf_ssh *s;
    uv_loop_init(&loop);
    struct waiter w = {0};
    struct cf_ssh_config c = config(ADDR_A, key_ok, NULL, CF_HOSTKEY_OFF);
    assert_int_equal(cf_ssh_connect(&loop, &c, &s, on_connect, &w), 0);
    uv_run(&loop, UV_RUN_NOWAIT);
    int closed = 0;
    cf_ssh_close(s, on_closed, &closed);
    assert_int_equal(w.done, 1);
    assert_int_equal(w.status, CF_ECANCELED);
    run_until(&loop, &closed);
    finish_loop(&loop);
}

/* ---- remote batches --------------------------------------------------- */

struct bwait {
    int done, status;
};

static void on_batch(struct cf_rbatch *b, int status, void *arg)
{
    struct bwait *w = arg;
    w->done = 1;
    w->status = status;
}

static int run_batch(uv_loop_t *loop, cf_ssh *s, struct cf_rbatch *b, int become)
{
    struct bwait w = {0};
    assert_int_equal(cf_remote_run(s, b, become, on_batch, &w), 0);
    run_until(loop, &w.done);
    return w.status;
}

static void test_batch_every_op_kind(void **state)
{
    uv_loop_t loop;
    cf_ssh *s;
    char err[CF_ERRLEN], p[2048], d[256], f[512], l[256], gone[256], emptyd[256];
    uv_loop_init(&loop);
    struct cf_ssh_config c = config(ADDR_A, key_ok, NULL, CF_HOSTKEY_OFF);
    assert_int_equal(connect_wait(&loop, &c, &s), 0);
    struct passwd *nobody = getpwnam("nobody");
    struct group *nogroup = getgrnam("nogroup");
    assert_non_null(nobody);
    assert_non_null(nogroup);

    snprintf(d, sizeof d, "%s/tree/a/b", dir);
    snprintf(f, sizeof f, "%s/key.pem", d);
    snprintf(l, sizeof l, "%s/tree/live.pem", dir);
    snprintf(gone, sizeof gone, "%s/tree/gone", dir);
    snprintf(emptyd, sizeof emptyd, "%s/tree/emptydir", dir);
    sh("mkdir -p %s && touch %s", emptyd, gone);
    const char content[] = "-----BEGIN KEY-----\n'quote' $(touch /tmp/x) `x` \"\n\001\377\n";
    size_t clen = sizeof content - 1;

    struct cf_rbatch *b = cf_rbatch_new();
    int i_mkdir = cf_rbatch_mkdir(b, d, 0750, "nobody", "nogroup", err);
    int i_write = cf_rbatch_write(b, f, content, clen, 0600, "nobody", NULL, err);
    int i_link = cf_rbatch_symlink(b, l, f, err);
    int i_stat_f = cf_rbatch_stat(b, f, err);
    int i_stat_l = cf_rbatch_stat(b, l, err);
    int i_stat_d = cf_rbatch_stat(b, d, err);
    int i_stat_none = cf_rbatch_stat(b, "/nonexistent/x", err);
    int i_read = cf_rbatch_read(b, f, 1 << 20, err);
    int i_read_cap = cf_rbatch_read(b, f, 5, err);
    int i_rm = cf_rbatch_remove(b, gone, err);
    int i_rm_dir = cf_rbatch_remove(b, emptyd, err);
    int i_rm_absent = cf_rbatch_remove(b, gone, err);
    snprintf(p, sizeof p, "test -L '%s' && stat -c %%U \"$(readlink '%s')\"; echo e >&2", l, l);
    int i_run = cf_rbatch_run(b, p, 0, err);
    int i_run_fail = cf_rbatch_run(b, "exit 7", 0, err);
    int i_after = cf_rbatch_stat(b, gone, err);
    assert_int_equal(i_after, 14);

    assert_int_equal(run_batch(&loop, s, b, 0), 0);
    const struct cf_rop_result *r;

    r = cf_rbatch_result(b, (size_t)i_mkdir);
    if (r->err_text)
        print_message("# mkdir: %s\n", r->err_text);
    assert_int_equal(r->status, 0);
    assert_int_equal(r->st.type, 'd');
    assert_int_equal(r->st.mode, 0750);
    assert_string_equal(r->st.owner, "nobody");
    assert_string_equal(r->st.group, "nogroup");

    r = cf_rbatch_result(b, (size_t)i_write);
    assert_int_equal(r->status, 0);
    assert_int_equal(r->st.type, 'f');
    assert_int_equal(r->st.mode, 0600);
    assert_int_equal(r->st.size, (long long)clen);
    char want_sha[65];
    cf_sha256_hex(content, clen, want_sha);
    assert_string_equal(r->st.sha256, want_sha);

    r = cf_rbatch_result(b, (size_t)i_link);
    assert_int_equal(r->status, 0);
    assert_int_equal(r->st.type, 'l');
    assert_string_equal(r->st.link_target, f);

    r = cf_rbatch_result(b, (size_t)i_stat_f);
    assert_int_equal(r->status, 0);
    assert_true(r->st.exists);
    assert_string_equal(r->st.sha256, want_sha); /* computed remotely by sha256sum */
    assert_string_equal(r->st.owner, "nobody");
    assert_string_equal(r->st.group, "root");
    r = cf_rbatch_result(b, (size_t)i_stat_l);
    assert_int_equal(r->st.type, 'l');
    assert_string_equal(r->st.link_target, f);
    assert_string_equal(r->st.sha256, "");
    r = cf_rbatch_result(b, (size_t)i_stat_d);
    assert_int_equal(r->st.type, 'd');
    r = cf_rbatch_result(b, (size_t)i_stat_none);
    assert_int_equal(r->status, 0);
    assert_false(r->st.exists);

    r = cf_rbatch_result(b, (size_t)i_read);
    assert_int_equal(r->status, 0);
    assert_int_equal(r->len, clen);
    assert_memory_equal(r->data, content, clen);
    r = cf_rbatch_result(b, (size_t)i_read_cap);
    assert_int_equal(r->len, 5);
    assert_int_equal(r->st.size, (long long)clen);

    assert_int_equal(cf_rbatch_result(b, (size_t)i_rm)->status, 0);
    assert_int_equal(cf_rbatch_result(b, (size_t)i_rm_dir)->status, 0);
    assert_int_equal(cf_rbatch_result(b, (size_t)i_rm_absent)->status, 0);

    r = cf_rbatch_result(b, (size_t)i_run);
    assert_int_equal(r->status, 0);
    assert_int_equal(r->exit_status, 0);
    assert_string_equal(r->data, "nobody\n");
    assert_string_equal(r->err_text, "e");
    r = cf_rbatch_result(b, (size_t)i_run_fail);
    assert_int_equal(r->status, CF_EREMOTE);
    assert_int_equal(r->exit_status, 7);
    assert_false(cf_rbatch_result(b, (size_t)i_after)->st.exists);

    /* and on disk (same machine) */
    struct stat st;
    assert_int_equal(lstat(d, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0750);
    assert_int_equal(st.st_uid, nobody->pw_uid);
    assert_int_equal(st.st_gid, nogroup->gr_gid);
    assert_int_equal(lstat(f, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(st.st_uid, nobody->pw_uid);
    char *text = slurp(f);
    assert_memory_equal(text, content, clen);
    free(text);
    char target[256] = "";
    assert_true(readlink(l, target, sizeof target - 1) > 0);
    assert_string_equal(target, f);
    assert_int_equal(access(gone, F_OK), -1);
    assert_int_equal(access(emptyd, F_OK), -1);
    assert_int_equal(access("/tmp/x", F_OK), -1);
    assert_int_equal(sh("ls -a %s | grep -q '^\\.cf-'", d), 1); /* no temp files left */
    cf_rbatch_free(b);

    /* replacing: a symlink swapped to a new target, a file rewritten; a
     * non-empty directory is refused; a directory is never written over */
    b = cf_rbatch_new();
    snprintf(p, sizeof p, "%s/tree", dir);
    int i_relink = cf_rbatch_symlink(b, l, d, err);
    int i_rm_full = cf_rbatch_remove(b, p, err);
    int i_write_dir = cf_rbatch_write(b, d, "x", 1, 0644, NULL, NULL, err);
    int i_rewrite = cf_rbatch_write(b, f, "new\n", 4, 0644, NULL, NULL, err);
    assert_int_equal(run_batch(&loop, s, b, 1), 0); /* through sudo -n */
    assert_int_equal(cf_rbatch_result(b, (size_t)i_relink)->status, 0);
    assert_string_equal(cf_rbatch_result(b, (size_t)i_relink)->st.link_target, d);
    assert_int_equal(cf_rbatch_result(b, (size_t)i_rm_full)->status, CF_EREMOTE);
    assert_non_null(cf_rbatch_result(b, (size_t)i_rm_full)->err_text);
    assert_int_equal(cf_rbatch_result(b, (size_t)i_write_dir)->status, CF_EREMOTE);
    assert_int_equal(cf_rbatch_result(b, (size_t)i_rewrite)->status, 0);
    assert_int_equal(cf_rbatch_result(b, (size_t)i_rewrite)->st.mode, 0644);
    /* the owner given before is kept when none is given now?  No: the
     * rename replaces the inode, so the new file belongs to the writer */
    assert_string_equal(cf_rbatch_result(b, (size_t)i_rewrite)->st.owner, "root");
    assert_int_equal(lstat(d, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    text = slurp(f);
    assert_string_equal(text, "new\n");
    free(text);
    cf_rbatch_free(b);

    close_wait(&loop, s);
    finish_loop(&loop);
}

static void test_batch_stop_on_fail_skips_the_rest(void **state)
{
    uv_loop_t loop;
    cf_ssh *s;
    char err[CF_ERRLEN], f[256];
    uv_loop_init(&loop);
    struct cf_ssh_config c = config(ADDR_A, key_ok, NULL, CF_HOSTKEY_OFF);
    assert_int_equal(connect_wait(&loop, &c, &s), 0);
    snprintf(f, sizeof f, "%s/after-failed-test", dir);
    struct cf_rbatch *b = cf_rbatch_new();
    int ok = cf_rbatch_run(b, "echo fine", 1, err);
    int bad = cf_rbatch_run(b, "echo 'nginx: configuration test failed' >&2; exit 1", 1, err);
    int w = cf_rbatch_write(b, f, "x", 1, 0644, NULL, NULL, err);
    int r = cf_rbatch_run(b, "echo reload", 0, err);
    assert_int_equal(run_batch(&loop, s, b, 0), 0);
    assert_int_equal(cf_rbatch_result(b, (size_t)ok)->status, 0);
    assert_int_equal(cf_rbatch_result(b, (size_t)bad)->status, CF_EREMOTE);
    assert_int_equal(cf_rbatch_result(b, (size_t)bad)->exit_status, 1);
    assert_string_equal(cf_rbatch_result(b, (size_t)bad)->err_text,
                        "nginx: configuration test failed");
    assert_true(cf_rbatch_result(b, (size_t)w)->skipped);
    assert_true(cf_rbatch_result(b, (size_t)r)->skipped);
    assert_int_equal(access(f, F_OK), -1);
    cf_rbatch_free(b);
    close_wait(&loop, s);
    finish_loop(&loop);
}

static void test_batch_hostile_values_never_run(void **state)
{
    uv_loop_t loop;
    cf_ssh *s;
    char err[CF_ERRLEN], marker[128], v[512];
    uv_loop_init(&loop);
    struct cf_ssh_config c = config(ADDR_A, key_ok, NULL, CF_HOSTKEY_OFF);
    assert_int_equal(connect_wait(&loop, &c, &s), 0);
    snprintf(marker, sizeof marker, "/tmp/cf-ssh-pwned-%d", (int)getpid());
    unlink(marker);
    /* each value is pre + marker + post */
    const char *pre[] = {"/var/www/$(touch ",   "/var/www/`touch ",   "/var/www/a'; touch ",
                         "/var/www/a\ntouch ",  "/var/www/../..",     "var/www",
                         "/var/www/a b;touch ", "/var/www/\"$(touch "};
    const char *post[] = {")", "`", "; '", "", "", "", "", ")\""};
    struct cf_rbatch *b = cf_rbatch_new();
    int good = cf_rbatch_stat(b, "/etc/hostname", err);
    for (size_t i = 0; i < sizeof pre / sizeof *pre; i++) {
        snprintf(v, sizeof v, "%s%s%s", pre[i], marker, post[i]);
        err[0] = '\0';
        assert_int_equal(cf_rbatch_stat(b, v, err), CF_EINVAL);
        assert_true(err[0] != '\0');
        assert_null(strchr(err, '\n'));
        assert_int_equal(cf_rbatch_write(b, v, "x", 1, 0644, NULL, NULL, err), CF_EINVAL);
        assert_int_equal(cf_rbatch_symlink(b, "/tmp/l", v, err), CF_EINVAL);
        assert_int_equal(cf_rbatch_mkdir(b, "/tmp/d", 0755, v, NULL, err), CF_EINVAL);
        assert_int_equal(cf_rbatch_remove(b, v, err), CF_EINVAL);
    }
    assert_int_equal(cf_rbatch_count(b), 1);
    /* the batch holds only the good op; running it runs nothing hostile */
    assert_int_equal(run_batch(&loop, s, b, 0), 0);
    assert_int_equal(cf_rbatch_result(b, (size_t)good)->status, 0);
    assert_true(cf_rbatch_result(b, (size_t)good)->st.exists);
    assert_int_equal(access(marker, F_OK), -1);
    cf_rbatch_free(b);
    close_wait(&loop, s);
    finish_loop(&loop);
}

/* Not a timing assertion on a shared machine, just a guard against a batch
 * that forks per stat: 30 STATs in one round trip. */
static void test_batch_of_thirty_stats_is_one_round_trip(void **state)
{
    uv_loop_t loop;
    cf_ssh *s;
    char err[CF_ERRLEN], p[256];
    uv_loop_init(&loop);
    struct cf_ssh_config c = config(ADDR_A, key_ok, NULL, CF_HOSTKEY_OFF);
    assert_int_equal(connect_wait(&loop, &c, &s), 0);
    sh("mkdir -p %s/many && for i in $(seq 0 29); do echo $i > %s/many/f$i; done", dir, dir);
    struct cf_rbatch *b = cf_rbatch_new();
    for (int i = 0; i < 30; i++) {
        snprintf(p, sizeof p, "%s/many/f%d", dir, i);
        assert_int_equal(cf_rbatch_stat(b, p, err), i);
    }
    uint64_t best = UINT64_MAX, best_true = UINT64_MAX;
    for (int round = 0; round < 5; round++) {
        uint64_t t0 = cf_mono_ms();
        struct waiter w = exec_wait(&loop, s, "true", NULL, 0);
        uint64_t dt = cf_mono_ms() - t0;
        best_true = dt < best_true ? dt : best_true;
        waiter_release(&w);
    }
    for (int round = 0; round < 5; round++) {
        uint64_t t0 = cf_mono_ms();
        assert_int_equal(run_batch(&loop, s, b, 0), 0);
        uint64_t dt = cf_mono_ms() - t0;
        best = dt < best ? dt : best;
    }
    for (int i = 0; i < 30; i++) {
        char want[65], data[8];
        int n = snprintf(data, sizeof data, "%d\n", i);
        cf_sha256_hex(data, (size_t)n, want);
        assert_string_equal(cf_rbatch_result(b, (size_t)i)->st.sha256, want);
    }
    print_message("# 30 STATs in one batch: best of 5 %llu ms; a bare `true` exec: %llu ms\n",
                  (unsigned long long)best, (unsigned long long)best_true);
    /* one round trip plus a few processes, not thirty round trips */
    assert_true(best < 3 * best_true + 500);
    cf_rbatch_free(b);
    close_wait(&loop, s);
    finish_loop(&loop);
}

int main(void)
{
    if (getenv("CF_TEST_VERBOSE"))
        cf_verbosity = 2; /* every state transition on stderr */
    if (getenv("CF_TEST_FILTER"))
        cmocka_set_test_filter(getenv("CF_TEST_FILTER")); /* e.g. "test_hung*" */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exec_output_status_and_large_stdout),
        cmocka_unit_test(test_stdin_passed_through),
        cmocka_unit_test(test_large_stdin_reaches_a_silent_command),
        cmocka_unit_test(test_hostkey_strict_unknown),
        cmocka_unit_test(test_hostkey_accept_new_then_strict),
        cmocka_unit_test(test_hostkey_changed_fails_in_strict_and_accept_new),
        cmocka_unit_test(test_auth_wrong_key_and_rsa_hint),
        cmocka_unit_test(test_auth_via_agent),
        cmocka_unit_test(test_refused_connection_says_so),
        cmocka_unit_test(test_silent_server_times_out_in_handshake),
        cmocka_unit_test(test_hung_command_times_out),
        cmocka_unit_test(test_connection_lost_while_running_says_so),
        cmocka_unit_test(test_twenty_sessions_on_one_loop),
        cmocka_unit_test(test_close_while_connecting_cancels),
        cmocka_unit_test(test_batch_every_op_kind),
        cmocka_unit_test(test_batch_stop_on_fail_skips_the_rest),
        cmocka_unit_test(test_batch_hostile_values_never_run),
        cmocka_unit_test(test_batch_of_thirty_stats_is_one_round_trip),
    };
    return cmocka_run_group_tests_name("ssh", tests, group_setup, group_teardown);
}

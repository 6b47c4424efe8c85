/* Unit tests: TLS probes against a real nginx on 127.0.40.1:8443 serving
 * certificates from a local CA (90-day, 5-day, expired, self-signed) by
 * SNI, a closed port, and a listener that accepts but never speaks. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cf.h"
#include "probe.h"
#include "util.h"

#define ADDR        "127.0.40.1"
#define TLS_PORT    8443
#define SILENT_PORT 8444
#define CLOSED_PORT 8445

static char g_dir[256];
static pid_t g_silent_pid = -1;

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

/* The serial as `openssl x509 -serial` prints it: an independent oracle. */
static void openssl_serial(const char *name, char *out, size_t len)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "openssl x509 -noout -serial -in %s/%s.pem", g_dir, name);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    char line[256] = "";
    assert_non_null(fgets(line, sizeof line, f));
    pclose(f);
    line[strcspn(line, "\n")] = 0;
    assert_memory_equal(line, "serial=", 7);
    size_t k = strlen(line + 7);
    assert_true(k < len);
    memcpy(out, line + 7, k + 1);
}

static int port_open(int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, ADDR, &sa.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int ok = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    close(fd);
    return ok;
}

static int setup(void **state)
{
    const char *fx = getenv("CF_TLS_FIXTURE");
    if (!fx)
        fx = "tests/tls_fixture.sh";
    snprintf(g_dir, sizeof g_dir, "/tmp/cf-test-probe.XXXXXX");
    if (!mkdtemp(g_dir))
        return -1;
    if (sh("set -e; F=%s; D=%s; bash $F cert $D a.test 90 www.a.test; bash $F cert $D soon.test 5;"
           "bash $F cert $D expired.test -2; bash $F selfsigned $D self.test 30;"
           "bash $F nginx $D %s:%d a.test soon.test expired.test self.test; bash $F start $D",
           fx, g_dir, ADDR, TLS_PORT) != 0)
        return -1;
    g_silent_pid = fork();
    if (g_silent_pid == 0) {
        /* Accepts connections (the kernel completes them) and never speaks. */
        execlp("python3", "python3", "-c",
               "import socket,time\n"
               "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
               "s.bind(('" ADDR "', 8444)); s.listen(512)\n"
               "while True: time.sleep(60)\n",
               (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 100 && !port_open(SILENT_PORT); i++)
        usleep(50000);
    return port_open(SILENT_PORT) && port_open(TLS_PORT) ? 0 : -1;
}

static int teardown(void **state)
{
    if (g_silent_pid > 0) {
        kill(g_silent_pid, SIGTERM);
        waitpid(g_silent_pid, NULL, 0);
    }
    sh("bash ${CF_TLS_FIXTURE:-tests/tls_fixture.sh} stop %s; rm -rf %s", g_dir, g_dir);
    cf_probe_global_cleanup();
    return 0;
}

struct one {
    int calls;
    struct cf_probe_result res;
};

static void one_cb(const struct cf_probe_result *res, void *arg)
{
    struct one *o = arg;
    o->calls++;
    o->res = *res;
}

/* Run one probe on a fresh loop and check that the loop closes clean. */
static void probe_one(const char *sni, int port, unsigned timeout_ms, const char *ca, struct one *o)
{
    uv_loop_t loop;
    char err[CF_ERRLEN];
    assert_int_equal(uv_loop_init(&loop), 0);
    struct cf_probe_req r = {.host = "web1",
                             .address = ADDR,
                             .port = port,
                             .sni = sni,
                             .timeout_ms = timeout_ms,
                             .ca_file = ca};
    memset(o, 0, sizeof *o);
    assert_int_equal(cf_probe_start(&loop, &r, one_cb, o, err), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(o->calls, 1);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_sni_picks_the_right_certificate(void **state)
{
    struct one o;
    char want[128], ca[300];
    snprintf(ca, sizeof ca, "%s/ca.pem", g_dir);

    probe_one("soon.test", TLS_PORT, 3000, ca, &o);
    assert_int_equal(o.res.status, 0);
    assert_string_equal(o.res.error, "");
    openssl_serial("soon.test", want, sizeof want);
    assert_string_equal(o.res.serial, want);
    assert_int_equal(o.res.covers_sni, 1);
    assert_int_equal(o.res.verified, 1);
    assert_string_equal(o.res.issuer_cn, "certfleet test CA");
    assert_string_equal(o.res.subject, "CN=soon.test");
    int64_t left = o.res.not_after - (int64_t)time(NULL);
    assert_in_range(left, 4 * 86400 + 86000, 5 * 86400 + 10);
    assert_true(o.res.not_before < (int64_t)time(NULL));
    assert_int_equal(strlen(o.res.sha256), 64);

    probe_one("a.test", TLS_PORT, 3000, NULL, &o);
    assert_int_equal(o.res.status, 0);
    openssl_serial("a.test", want, sizeof want);
    assert_string_equal(o.res.serial, want);
    assert_string_equal(o.res.sans, "a.test, www.a.test");
    assert_int_equal(o.res.verified, -1); /* no CA file asked for */
}

static void test_expired_and_self_signed_are_reported_not_refused(void **state)
{
    struct one o;
    char want[128], ca[300];
    snprintf(ca, sizeof ca, "%s/ca.pem", g_dir);

    probe_one("expired.test", TLS_PORT, 3000, ca, &o);
    assert_int_equal(o.res.status, 0);
    openssl_serial("expired.test", want, sizeof want);
    assert_string_equal(o.res.serial, want);
    assert_true(o.res.not_after < (int64_t)time(NULL) - 86400);
    assert_int_equal(o.res.verified, 0);
    assert_non_null(strstr(o.res.verify_error, "expired"));

    probe_one("self.test", TLS_PORT, 3000, ca, &o);
    assert_int_equal(o.res.status, 0);
    assert_string_equal(o.res.issuer_cn, "self.test");
    assert_int_equal(o.res.verified, 0);
    assert_string_not_equal(o.res.verify_error, "");
}

static void test_unknown_name_gets_default_certificate(void **state)
{
    struct one o;
    char want[128];
    probe_one("nobody.test", TLS_PORT, 3000, NULL, &o);
    assert_int_equal(o.res.status, 0);
    openssl_serial("a.test", want, sizeof want);
    assert_string_equal(o.res.serial, want);
    assert_int_equal(o.res.covers_sni, 0);
}

static void test_closed_port_is_econnect_naming_host_address_domain(void **state)
{
    struct one o;
    probe_one("a.test", CLOSED_PORT, 3000, NULL, &o);
    assert_int_equal(o.res.status, CF_ECONNECT);
    assert_non_null(strstr(o.res.error, "host 'web1'"));
    assert_non_null(strstr(o.res.error, "127.0.40.1:8445"));
    assert_non_null(strstr(o.res.error, "domain 'a.test'"));
    assert_non_null(strstr(o.res.error, "connection refused"));
    assert_string_equal(o.res.serial, "");
}

static void test_silent_listener_times_out(void **state)
{
    struct one o;
    probe_one("a.test", SILENT_PORT, 300, NULL, &o);
    assert_int_equal(o.res.status, CF_ETIMEDOUT);
    assert_non_null(strstr(o.res.error, "127.0.40.1:8444"));
    assert_non_null(strstr(o.res.error, "300 ms"));
    assert_non_null(strstr(o.res.error, "TLS handshake"));
    assert_in_range(o.res.elapsed_ms, 290, 2000);
}

static void test_non_tls_port_is_eproto(void **state)
{
    /* nginx's plain HTTP is not available here, so speak TLS to the silent
     * listener's neighbour: a python server that answers garbage. */
    pid_t pid = fork();
    if (pid == 0) {
        execlp("python3", "python3", "-c",
               "import socket\n"
               "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
               "s.bind(('" ADDR "', 8446)); s.listen(8)\n"
               "while True:\n"
               "  c,_=s.accept(); c.recv(4096); c.sendall(b'HTTP/1.1 400 Bad Request\\r\\n\\r\\n');"
               " c.close()\n",
               (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 100 && !port_open(8446); i++)
        usleep(50000);
    struct one o;
    probe_one("a.test", 8446, 3000, NULL, &o);
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    assert_int_equal(o.res.status, CF_EPROTO);
    assert_non_null(strstr(o.res.error, "TLS"));
    assert_non_null(strstr(o.res.error, "127.0.40.1:8446"));
}

static void test_start_error_never_calls_back(void **state)
{
    uv_loop_t loop;
    char err[CF_ERRLEN] = "";
    struct one o = {0};
    struct cf_probe_req r = {.host = "web1", .address = NULL, .port = 443};
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(cf_probe_start(&loop, &r, one_cb, &o, err), CF_EINVAL);
    assert_string_not_equal(err, "");
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(o.calls, 0);
    assert_int_equal(uv_loop_close(&loop), 0);
}

struct batchstate {
    int each_calls;
    int done_calls;
};

static void batch_each(size_t idx, const struct cf_probe_result *res, void *arg)
{
    ((struct batchstate *)arg)->each_calls++;
}

static void batch_done(void *arg)
{
    ((struct batchstate *)arg)->done_calls++;
}

/* The sockets this process has open, as the kernel lists them: during a
 * batch, the probes in flight, whatever the probe module itself counts. */
static int open_sockets(void)
{
    DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char path[300], target[64];
        snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
        ssize_t k = readlink(path, target, sizeof target - 1);
        if (k > 7 && !memcmp(target, "socket:", 7))
            n++;
    }
    closedir(d);
    return n;
}

/* Samples the open sockets once per loop iteration, after the poll phase
 * in which probes connect and finish. */
struct sampler {
    uv_check_t check;
    int base, max;
};

static void on_sample(uv_check_t *h)
{
    struct sampler *s = h->data;
    int n = open_sockets() - s->base;
    if (n > s->max)
        s->max = n;
}

static void run_batch(size_t n, int cap, const char *label)
{
    static const char *names[] = {"a.test", "soon.test", "expired.test", "self.test"};
    char want[4][128];
    for (int k = 0; k < 4; k++)
        openssl_serial(names[k], want[k], sizeof want[k]);
    struct cf_probe_req *reqs = calloc(n, sizeof *reqs);
    struct cf_probe_result *res = calloc(n, sizeof *res);
    char hosts[4][16];
    for (int k = 0; k < 4; k++)
        snprintf(hosts[k], sizeof hosts[k], "h%d", k);
    for (size_t i = 0; i < n; i++)
        reqs[i] = (struct cf_probe_req){.host = hosts[i % 4],
                                        .address = ADDR,
                                        .port = TLS_PORT,
                                        .sni = names[i % 4],
                                        .timeout_ms = 10000};
    uv_loop_t loop;
    char err[CF_ERRLEN];
    struct batchstate bs = {0};
    struct rusage ru0, ru1;
    assert_int_equal(uv_loop_init(&loop), 0);
    getrusage(RUSAGE_SELF, &ru0);
    uint64_t t0 = cf_mono_ms();
    struct sampler smp = {.base = open_sockets()};
    assert_int_equal(uv_check_init(&loop, &smp.check), 0);
    smp.check.data = &smp;
    assert_int_equal(uv_check_start(&smp.check, on_sample), 0);
    uv_unref((uv_handle_t *)&smp.check); /* the batch alone keeps the loop running */
    assert_int_equal(cf_probe_batch(&loop, reqs, n, cap, res, batch_each, batch_done, &bs, err), 0);
    assert_int_equal(bs.done_calls, 0); /* never inline */
    uv_run(&loop, UV_RUN_DEFAULT);
    uint64_t ms = cf_mono_ms() - t0;
    getrusage(RUSAGE_SELF, &ru1);
    uv_close((uv_handle_t *)&smp.check, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    assert_int_equal(bs.done_calls, 1);
    assert_int_equal(bs.each_calls, (int)n);
    size_t good = 0;
    for (size_t i = 0; i < n; i++)
        if (res[i].status == 0 && !strcmp(res[i].serial, want[i % 4]))
            good++;
        else if (good + 5 > i)
            fprintf(stderr, "# probe %zu: status %d %s\n", i, res[i].status, res[i].error);
    double cpu = (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec + ru1.ru_stime.tv_sec -
                          ru0.ru_stime.tv_sec) *
                     1000.0 +
                 (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec + ru1.ru_stime.tv_usec -
                          ru0.ru_stime.tv_usec) /
                     1000.0;
    printf("# %s: %zu probes (cap %d) in %llu ms, %.0f handshakes/s, %.2f ms client CPU each, "
           "at most %d sockets open at once\n",
           label, n, cap, (unsigned long long)ms, ms ? n * 1000.0 / (double)ms : 0.0,
           cpu / (double)n, smp.max);
    assert_int_equal(good, n);
    /* the cap holds, and the sampler did see probes run side by side */
    assert_true(smp.max <= cap);
    assert_true(smp.max > 1);
    free(reqs);
    free(res);
}

static void test_200_concurrent_probes(void **state)
{
    run_batch(200, 200, "concurrent");
}

static void test_1000_probes_under_a_cap(void **state)
{
    run_batch(1000, 50, "capped");
}

static void test_empty_batch_finishes(void **state)
{
    uv_loop_t loop;
    char err[CF_ERRLEN];
    struct batchstate bs = {0};
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(cf_probe_batch(&loop, NULL, 0, 5, NULL, batch_each, batch_done, &bs, err), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(bs.done_calls, 1);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_run_without_a_loop(void **state)
{
    char err[CF_ERRLEN];
    struct cf_probe_req reqs[2] = {
        {.host = "a", .address = ADDR, .port = TLS_PORT, .sni = "a.test"},
        {.host = "b", .address = ADDR, .port = CLOSED_PORT, .sni = "a.test"},
    };
    struct cf_probe_result res[2];
    assert_int_equal(cf_probe_run(reqs, 2, 10, res, err), 0);
    assert_int_equal(res[0].status, 0);
    assert_int_equal(res[1].status, CF_ECONNECT);
}

static void test_expect_serial(void **state)
{
    char want[128], err[CF_ERRLEN];
    openssl_serial("soon.test", want, sizeof want);
    struct cf_probe_req r = {.host = "web1", .address = ADDR, .port = TLS_PORT, .sni = "soon.test"};
    uv_loop_t loop;
    struct one o = {0};
    assert_int_equal(uv_loop_init(&loop), 0);

    /* the serial in the canonical form (openssl's), compared exactly */
    assert_int_equal(cf_probe_expect_serial(&loop, &r, want, 2000, 100, one_cb, &o, err), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(o.calls, 1);
    assert_int_equal(o.res.status, 0);
    assert_string_equal(o.res.serial, want);

    memset(&o, 0, sizeof o);
    uint64_t t0 = cf_mono_ms();
    assert_int_equal(cf_probe_expect_serial(&loop, &r, "0123ABCD", 600, 100, one_cb, &o, err), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    uint64_t ms = cf_mono_ms() - t0;
    assert_int_equal(o.calls, 1);
    assert_int_equal(o.res.status, CF_EPROTO);
    assert_non_null(strstr(o.res.error, "still serves serial"));
    assert_non_null(strstr(o.res.error, "expected 0123ABCD"));
    assert_in_range(ms, 450, 3000);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sni_picks_the_right_certificate),
        cmocka_unit_test(test_expired_and_self_signed_are_reported_not_refused),
        cmocka_unit_test(test_unknown_name_gets_default_certificate),
        cmocka_unit_test(test_closed_port_is_econnect_naming_host_address_domain),
        cmocka_unit_test(test_silent_listener_times_out),
        cmocka_unit_test(test_non_tls_port_is_eproto),
        cmocka_unit_test(test_start_error_never_calls_back),
        cmocka_unit_test(test_200_concurrent_probes),
        cmocka_unit_test(test_1000_probes_under_a_cap),
        cmocka_unit_test(test_empty_batch_finishes),
        cmocka_unit_test(test_run_without_a_loop),
        cmocka_unit_test(test_expect_serial),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

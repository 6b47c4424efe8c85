/* Unit tests: alert formats (the seed guide's subjects and bodies), the
 * grouped mail, configuration, and real delivery: an aiosmtpd SMTP server
 * (plain, and STARTTLS + AUTH with the password from an environment
 * variable) and a python webhook listener on 127.0.40.2; an unreachable
 * SMTP server and a failing webhook are reported, not fatal. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <jansson.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cf.h"
#include "http.h"
#include "notify.h"
#include "util.h"

#define ADDR    "127.0.40.2"
#define EN_DASH "\xe2\x80\x93"
#define T0      ((int64_t)1762721909) /* 2025-11-09T20:58:29Z, the seed's example */
#define DAY     86400

static char g_dir[256];
static pid_t g_pids[8];
static int g_npids;

static int port_open(int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, ADDR, &sa.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int ok = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    close(fd);
    return ok;
}

static pid_t spawn(int port, char *const argv[])
{
    pid_t pid = fork();
    if (pid == 0) {
        execv(argv[0], argv);
        _exit(127);
    }
    g_pids[g_npids++] = pid;
    for (int i = 0; i < 200 && !port_open(port); i++)
        usleep(50000);
    return port_open(port) ? pid : -1;
}

static char *path(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *path(const char *fmt, ...)
{
    static char bufs[8][512];
    static int k;
    char *b = bufs[k++ % 8];
    int n = snprintf(b, 512, "%s/", g_dir);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b + n, 512 - (size_t)n, fmt, ap);
    va_end(ap);
    return b;
}

static int setup(void **state)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/cf-test-notify.XXXXXX");
    if (!mkdtemp(g_dir))
        return -1;
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "bash ${CF_TLS_FIXTURE:-tests/tls_fixture.sh} cert %s/tls mail.test 30 IP:" ADDR,
             g_dir);
    if (system(cmd) != 0)
        return -1;
    const char *sink = "tests/smtp_sink.py", *hook = "tests/http_sink.py";
    char *plain[] = {"/usr/bin/python3", (char *)sink, ADDR, "2525", path("mail"), NULL};
    char *tls[] = {"/usr/bin/python3",
                   (char *)sink,
                   ADDR,
                   "2526",
                   path("tlsmail"),
                   "--starttls",
                   path("tls/mail.test.pem"),
                   path("tls/mail.test.key"),
                   "--auth",
                   "alerts",
                   "s3cret-pw",
                   NULL};
    char *ok[] = {"/usr/bin/python3", (char *)hook, ADDR, "8088", path("hook"), NULL};
    char *bad[] = {"/usr/bin/python3", (char *)hook, ADDR, "8089", path("hook500"), "500", NULL};
    if (spawn(2525, plain) < 0 || spawn(2526, tls) < 0 || spawn(8088, ok) < 0 ||
        spawn(8089, bad) < 0)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    for (int i = 0; i < g_npids; i++) {
        kill(g_pids[i], SIGTERM);
        waitpid(g_pids[i], NULL, 0);
    }
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static char *str(void (*fill)(struct cf_buf *, const void *), const void *arg)
{
    struct cf_buf b = CF_BUF_INIT;
    fill(&b, arg);
    return cf_buf_detach(&b, NULL);
}

static void fill_subject(struct cf_buf *b, const void *n)
{
    assert_int_equal(cf_notify_subject(n, b), 0);
}

static void fill_body(struct cf_buf *b, const void *n)
{
    assert_int_equal(cf_notify_body(n, T0, b), 0);
}

static cf_notify *three_events(void)
{
    cf_notify *n = cf_notify_new();
    cf_notify_add_success(n, "app3", "app.example.com", "app", T0 + 20 * DAY, T0 + 90 * DAY, 1, T0);
    cf_notify_add_error(n, "shop4", "shop.example.com", "shop", T0 + 12 * DAY,
                        "urn:ietf:params:acme:error:unauthorized: Invalid response from "
                        "http://shop.example.com/.well-known/acme-challenge/abc: 404",
                        -1, "/srv/acme", T0);
    cf_notify_add_warning(n, "legacy1", "legacy.example.com", "legacy", 5, T0 + 5 * DAY, T0);
    return n;
}

static void test_single_event_subjects(void **state)
{
    cf_notify *n = cf_notify_new();
    cf_notify_add_success(n, "app3", "app.example.com", "app", 0, T0 + 90 * DAY, 1, T0);
    char *s = str(fill_subject, n);
    assert_string_equal(s, "[SUCCESS] app3 " EN_DASH " Cert renewed for app.example.com");
    free(s);
    cf_notify_free(n);

    n = cf_notify_new();
    cf_notify_add_error(n, "app4", "app.example.com", "app", 0, "boom", -1, NULL, T0);
    s = str(fill_subject, n);
    assert_string_equal(s, "[ERROR] app4 " EN_DASH " Cert renewal FAILED for app.example.com");
    free(s);
    cf_notify_free(n);

    n = cf_notify_new();
    cf_notify_add_warning(n, "bot", "bot.example.com", "bot", 5, T0 + 5 * DAY, T0);
    s = str(fill_subject, n);
    assert_string_equal(s, "[WARNING] bot " EN_DASH " Certificate expires in 5 days");
    free(s);
    cf_notify_free(n);
}

static void test_bodies_follow_the_seed_guide(void **state)
{
    cf_notify *n = three_events();
    char *b = str(fill_body, n);
    /* success */
    assert_non_null(strstr(b, "Certificate for app.example.com renewed successfully.\n"));
    assert_non_null(strstr(b, "Previous expiry: 2025-11-29 20:58:29 UTC (20 days remaining)\n"));
    assert_non_null(strstr(b, "New expiry: 2026-02-07 20:58:29 UTC (~90 days)\n"));
    assert_non_null(strstr(b, "Cert name: app\n"));
    assert_non_null(strstr(b, "Renewed at: 2025-11-09T20:58:29Z\n"));
    assert_non_null(strstr(b, "Nginx has been reloaded with the new certificate.\n"));
    assert_non_null(strstr(b, "Action Required: None. This is a success confirmation.\n"));
    /* error: its output and the challenge checklist with the webroot */
    assert_non_null(strstr(b, "Certificate renewal for shop.example.com FAILED.\n"));
    assert_non_null(strstr(b, "Current expiry: 2025-11-21 20:58:29 UTC (12 days remaining)\n"));
    assert_non_null(strstr(b, "Renewal attempted at: 2025-11-09T20:58:29Z\n"));
    assert_non_null(strstr(b, "Error output:\nurn:ietf:params:acme:error:unauthorized: Invalid "
                              "response"));
    assert_non_null(strstr(b, "1. Nginx is serving /.well-known/acme-challenge/ from /srv/acme"));
    assert_non_null(strstr(b, "curl -I http://shop.example.com/.well-known/acme-challenge/\n"));
    assert_non_null(strstr(b, "Action Required: Immediate investigation"));
    /* warning */
    assert_non_null(strstr(b, "expires in 5 days.\n"));
    assert_non_null(strstr(b, "Expiry: 2025-11-14 20:58:29 UTC (5 days remaining)\n"));
    /* grouped: a summary listing each subject, most severe first */
    char *err = strstr(b, "  * [ERROR] shop4 " EN_DASH " Cert renewal FAILED for shop.example.com");
    char *warn = strstr(b, "  * [WARNING] legacy1 " EN_DASH " Certificate expires in 5 days");
    char *ok = strstr(b, "  * [SUCCESS] app3 " EN_DASH " Cert renewed for app.example.com");
    assert_non_null(err);
    assert_non_null(warn);
    assert_non_null(ok);
    assert_true(err < warn && warn < ok);
    free(b);

    char *s = str(fill_subject, n);
    assert_string_equal(s, "[ERROR] certfleet " EN_DASH
                           " 1 renewal FAILED, 1 cert renewed, 1 certificate expiring");
    free(s);
    cf_notify_free(n);

    /* only successes: a SUCCESS summary */
    n = cf_notify_new();
    for (int i = 0; i < 40; i++)
        cf_notify_add_success(n, "h", "d.example.com", "d", 0, T0 + 90 * DAY, 1, T0);
    s = str(fill_subject, n);
    assert_string_equal(s, "[SUCCESS] certfleet " EN_DASH " 40 certs renewed");
    free(s);
    b = str(fill_body, n);
    assert_non_null(strstr(b, "Previous expiry: none (first certificate)"));
    free(b);
    cf_notify_free(n);
}

static void test_failure_kinds_and_checklists(void **state)
{
    static const struct {
        const char *text;
        enum cf_failure_kind kind;
        const char *checklist;
    } cases[] = {
        {"urn:ietf:params:acme:error:rateLimited: too many certificates already issued",
         CF_FAIL_RATE_LIMIT, "5 duplicate certificates per week"},
        {"urn:ietf:params:acme:error:dns: DNS problem: NXDOMAIN looking up A for x.example.com",
         CF_FAIL_DNS, "dig +short A shop.example.com"},
        {"nginx: [emerg] unknown directive \"ssl_certificat\"\nnginx: configuration file "
         "/etc/nginx/nginx.conf test failed",
         CF_FAIL_NGINX_TEST, "the previous certificate is still served"},
        {"host 'shop4' (127.0.3.4:22): ssh connect failed: connection timed out", CF_FAIL_SSH,
         "sshd listens on ansible_port"},
        {"urn:ietf:params:acme:error:connection: 127.0.3.4: Connection refused", CF_FAIL_CHALLENGE,
         "Port 80 is reachable from the CA"},
        {"something odd", CF_FAIL_OTHER, "DNS correctly points to this server"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(cf_notify_classify_failure(cases[i].text), cases[i].kind);
        cf_notify *n = cf_notify_new();
        cf_notify_add_error(n, "shop4", "shop.example.com", "shop", 0, cases[i].text, -1, NULL, T0);
        assert_int_equal(cf_notify_event_at(n, 0)->failure, cases[i].kind);
        char *b = str(fill_body, n);
        if (!strstr(b, cases[i].checklist))
            fprintf(stderr, "# case %zu body:\n%s\n", i, b);
        assert_non_null(strstr(b, cases[i].checklist));
        assert_non_null(strstr(b, cases[i].text));
        assert_non_null(strstr(b, "Current expiry: none"));
        free(b);
        cf_notify_free(n);
    }
    /* an explicit kind wins over the guess */
    cf_notify *n = cf_notify_new();
    cf_notify_add_error(n, "h", "d", "c", 0, "something odd", CF_FAIL_SSH, NULL, T0);
    assert_int_equal(cf_notify_event_at(n, 0)->failure, CF_FAIL_SSH);
    cf_notify_free(n);
}

static void test_mail_message(void **state)
{
    cf_notify *n = three_events();
    struct cf_notify_config cfg = {.to = "ops@example.com", .from = "certfleet@example.com"};
    struct cf_buf m = CF_BUF_INIT;
    assert_int_equal(cf_notify_mail(n, &cfg, T0, &m), 0);
    assert_non_null(strstr(m.data, "From: certfleet@example.com\r\n"));
    assert_non_null(strstr(m.data, "To: ops@example.com\r\n"));
    assert_non_null(strstr(m.data, "Date: Sun, 09 Nov 2025 20:58:29 +0000\r\n"));
    assert_non_null(strstr(m.data, "Subject: =?UTF-8?B?"));
    assert_non_null(strstr(m.data, "Content-Type: text/plain; charset=UTF-8\r\n"));
    /* every line ends in CRLF and none is longer than RFC 5322 allows */
    size_t col = 0;
    for (size_t i = 0; i < m.len; i++) {
        if (m.data[i] == '\n') {
            assert_true(i > 0 && m.data[i - 1] == '\r');
            col = 0;
        } else {
            assert_true(++col <= 998);
        }
    }
    cf_buf_release(&m);

    /* a very long error line gets wrapped, not sent as one 20 kB line */
    cf_notify *big = cf_notify_new();
    char *longline = cf_xmalloc(20001);
    memset(longline, 'x', 20000);
    longline[20000] = 0;
    cf_notify_add_error(big, "h", "d", "c", 0, longline, -1, NULL, T0);
    assert_int_equal(cf_notify_mail(big, &cfg, T0, &m), 0);
    col = 0;
    for (size_t i = 0; i < m.len; i++)
        col = m.data[i] == '\n' ? 0 : col + 1, assert_true(col <= 998);
    cf_buf_release(&m);
    free(longline);
    cf_notify_free(big);
    cf_notify_free(n);
}

static void test_webhook_json(void **state)
{
    cf_notify *n = three_events();
    char *j = cf_notify_json(n, T0);
    json_error_t je;
    json_t *o = json_loads(j, 0, &je);
    assert_non_null(o);
    assert_string_equal(json_string_value(json_object_get(o, "source")), "certfleet");
    json_t *ev = json_object_get(o, "events");
    assert_int_equal(json_array_size(ev), 3);
    json_t *e0 = json_array_get(ev, 0);
    assert_string_equal(json_string_value(json_object_get(e0, "type")), "ERROR");
    assert_string_equal(json_string_value(json_object_get(e0, "failure")), "challenge");
    assert_string_equal(json_string_value(json_object_get(e0, "host")), "shop4");
    json_t *e2 = json_array_get(ev, 2);
    assert_string_equal(json_string_value(json_object_get(e2, "subject")),
                        "[SUCCESS] app3 " EN_DASH " Cert renewed for app.example.com");
    assert_true(json_is_true(json_object_get(e2, "nginx_reloaded")));
    assert_string_equal(json_string_value(json_object_get(e2, "new_expiry")),
                        "2026-02-07T20:58:29Z");
    json_decref(o);
    free(j);
    cf_notify_free(n);
}

static void test_config_from_vars(void **state)
{
    char err[CF_ERRLEN] = "";
    struct cf_notify_config cfg;
    json_error_t je;
    json_t *v = json_loads("{\"certbot_notify_email\": \"ops@example.com\", "
                           "\"certbot_smtp_server\": \"mail.example.com\", "
                           "\"certbot_smtp_port\": 587, \"certbot_smtp_starttls\": true, "
                           "\"certbot_smtp_user\": \"alerts\", "
                           "\"certbot_smtp_password_env\": \"CF_SMTP_PW\", "
                           "\"certbot_notify_webhook\": \"https://hooks.example.com/x\"}",
                           0, &je);
    assert_int_equal(cf_notify_config_from_vars(v, &cfg, err), 0);
    assert_string_equal(cfg.to, "ops@example.com");
    assert_string_equal(cfg.smtp_server, "mail.example.com");
    assert_int_equal(cfg.smtp_port, 587);
    assert_int_equal(cfg.smtp_starttls, 1);
    assert_string_equal(cfg.smtp_password_env, "CF_SMTP_PW");
    assert_string_equal(cfg.webhook_url, "https://hooks.example.com/x");
    json_object_set_new(v, "certbot_smtp_password", json_string("hunter2"));
    assert_int_equal(cf_notify_config_from_vars(v, &cfg, err), CF_EINVAL);
    assert_non_null(strstr(err, "certbot_smtp_password_env"));
    assert_null(strstr(err, "hunter2"));
    json_object_del(v, "certbot_smtp_password");
    json_object_set_new(v, "certbot_smtp_port", json_string("nope"));
    assert_int_equal(cf_notify_config_from_vars(v, &cfg, err), CF_EINVAL);
    assert_non_null(strstr(err, "certbot_smtp_port"));
    json_decref(v);
}

struct sent {
    int calls;
    int status;
    char report[4096];
};

static void sent_cb(int status, const char *report, void *arg)
{
    struct sent *s = arg;
    s->calls++;
    s->status = status;
    snprintf(s->report, sizeof s->report, "%s", report);
}

/* Send n with cfg on a fresh loop and http engine; the loop closes clean. */
static void send_and_wait(cf_notify *n, const struct cf_notify_config *cfg, struct sent *s)
{
    uv_loop_t loop;
    cf_http *h = NULL;
    memset(s, 0, sizeof *s);
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(cf_http_new(&loop, &h), 0);
    assert_int_equal(cf_notify_send(n, &loop, h, cfg, sent_cb, s), 0);
    assert_int_equal(s->calls, 0); /* never inline */
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(s->calls, 1);
    cf_http_free(h);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static int count_files(const char *dir, const char *suffix)
{
    DIR *d = opendir(dir);
    int k = 0;
    if (!d)
        return 0;
    for (struct dirent *e; (e = readdir(d));) {
        size_t l = strlen(e->d_name), sl = strlen(suffix);
        if (l > sl && !strcmp(e->d_name + l - sl, suffix))
            k++;
    }
    closedir(d);
    return k;
}

/* Decode a received mail with Python's email package: the subject as a
 * reader sees it, then the body. */
static char *decode_mail(const char *file)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c 'import email,sys; from email import policy; "
             "m=email.message_from_binary_file(open(sys.argv[1],\"rb\"), policy=policy.default); "
             "sys.stdout.write(\"SUBJECT: \"+str(m[\"subject\"])+\"\\n\"+m.get_content())' %s",
             file);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    struct cf_buf b = CF_BUF_INIT;
    char chunk[4096];
    size_t k;
    while ((k = fread(chunk, 1, sizeof chunk, f)) > 0)
        cf_buf_append(&b, chunk, k);
    assert_int_equal(pclose(f), 0);
    return cf_buf_detach(&b, NULL);
}

static char *slurp(const char *file)
{
    char *data = NULL;
    size_t len;
    assert_int_equal(cf_read_file(file, 1 << 20, &data, &len), 0);
    return data;
}

static void test_one_grouped_mail_and_webhook(void **state)
{
    cf_notify *n = three_events();
    char webhook[128];
    snprintf(webhook, sizeof webhook, "http://%s:8088/certfleet", ADDR);
    struct cf_notify_config cfg = {.to = "ops@example.com, trello@example.com",
                                   .from = "certfleet <operations@example.com>",
                                   .smtp_server = ADDR,
                                   .smtp_port = 2525,
                                   .webhook_url = webhook,
                                   .timeout_ms = 5000};
    struct sent s;
    send_and_wait(n, &cfg, &s);
    if (s.status)
        fprintf(stderr, "# report: %s\n", s.report);
    assert_int_equal(s.status, 0);
    assert_non_null(strstr(s.report, "e-mail to ops@example.com, trello@example.com via "
                                     "smtp://127.0.40.2:2525: sent"));
    assert_non_null(strstr(s.report, "webhook http://127.0.40.2:8088/certfleet: sent (HTTP 200)"));

    /* exactly one mail for the run, to both recipients */
    assert_int_equal(count_files(path("mail"), ".eml"), 1);
    char *env = slurp(path("mail/1.env"));
    assert_non_null(strstr(env, "MAIL FROM: operations@example.com\n"));
    assert_non_null(strstr(env, "RCPT TO: ops@example.com\n"));
    assert_non_null(strstr(env, "RCPT TO: trello@example.com\n"));
    free(env);
    char *mail = decode_mail(path("mail/1.eml"));
    assert_non_null(strstr(mail, "SUBJECT: [ERROR] certfleet " EN_DASH
                                 " 1 renewal FAILED, 1 cert renewed, 1 certificate expiring\n"));
    assert_non_null(strstr(mail, "[SUCCESS] app3 " EN_DASH " Cert renewed for app.example.com"));
    assert_non_null(
        strstr(mail, "[ERROR] shop4 " EN_DASH " Cert renewal FAILED for shop.example.com"));
    assert_non_null(strstr(mail, "[WARNING] legacy1 " EN_DASH " Certificate expires in 5 days"));
    assert_non_null(strstr(mail, "Invalid response from http://shop.example.com/.well-known"));
    assert_non_null(strstr(mail, "Nginx has been reloaded with the new certificate."));
    free(mail);

    /* the webhook got the JSON document */
    assert_int_equal(count_files(path("hook"), ".json"), 1);
    char *hdr = slurp(path("hook/1.hdr"));
    assert_non_null(strstr(hdr, "POST /certfleet"));
    assert_non_null(strstr(hdr, "Content-Type: application/json"));
    free(hdr);
    char *body = slurp(path("hook/1.json"));
    json_error_t je;
    json_t *o = json_loads(body, 0, &je);
    assert_non_null(o);
    assert_int_equal(json_array_size(json_object_get(o, "events")), 3);
    assert_non_null(strstr(json_string_value(json_object_get(o, "subject")), "1 renewal FAILED"));
    json_decref(o);
    free(body);
    cf_notify_free(n);
}

static void test_starttls_and_password_from_environment(void **state)
{
    cf_notify *n = cf_notify_new();
    cf_notify_add_warning(n, "legacy1", "legacy.example.com", "legacy", 5, T0 + 5 * DAY, T0);
    struct cf_notify_config cfg = {.to = "ops@example.com",
                                   .from = "certfleet@example.com",
                                   .smtp_server = ADDR,
                                   .smtp_port = 2526,
                                   .smtp_starttls = 1,
                                   .smtp_user = "alerts",
                                   .smtp_password_env = "CF_TEST_SMTP_PASSWORD",
                                   .smtp_ca_bundle = path("tls/ca.pem"),
                                   .timeout_ms = 5000};
    struct sent s;

    /* the variable is not set: reported, nothing sent */
    unsetenv("CF_TEST_SMTP_PASSWORD");
    send_and_wait(n, &cfg, &s);
    assert_int_equal(s.status, CF_EINVAL);
    assert_non_null(strstr(s.report, "environment variable 'CF_TEST_SMTP_PASSWORD'"));
    assert_int_equal(count_files(path("tlsmail"), ".eml"), 0);

    /* a wrong password is refused by the server */
    setenv("CF_TEST_SMTP_PASSWORD", "wrong", 1);
    send_and_wait(n, &cfg, &s);
    assert_int_not_equal(s.status, 0);
    assert_non_null(strstr(s.report, "failed"));
    assert_int_equal(count_files(path("tlsmail"), ".eml"), 0);

    setenv("CF_TEST_SMTP_PASSWORD", "s3cret-pw", 1);
    send_and_wait(n, &cfg, &s);
    if (s.status)
        fprintf(stderr, "# report: %s\n", s.report);
    assert_int_equal(s.status, 0);
    assert_int_equal(count_files(path("tlsmail"), ".eml"), 1);
    char *env = slurp(path("tlsmail/1.env"));
    assert_non_null(strstr(env, "TLS: yes\n"));
    assert_non_null(strstr(env, "AUTH: alerts\n"));
    free(env);
    char *mail = decode_mail(path("tlsmail/1.eml"));
    assert_non_null(
        strstr(mail, "SUBJECT: [WARNING] legacy1 " EN_DASH " Certificate expires in 5 days\n"));
    free(mail);
    unsetenv("CF_TEST_SMTP_PASSWORD");
    cf_notify_free(n);
}

static void test_unreachable_destinations_are_reported(void **state)
{
    cf_notify *n = three_events();
    char webhook[128];
    snprintf(webhook, sizeof webhook, "http://%s:8089/broken", ADDR);
    struct cf_notify_config cfg = {.to = "ops@example.com",
                                   .smtp_server = ADDR,
                                   .smtp_port = 2599, /* nobody listens */
                                   .webhook_url = webhook,
                                   .timeout_ms = 3000};
    struct sent s;
    send_and_wait(n, &cfg, &s);
    assert_int_equal(s.status, CF_ECONNECT);
    assert_non_null(strstr(s.report, "e-mail to ops@example.com via smtp://127.0.40.2:2599: "
                                     "failed:"));
    assert_non_null(strstr(s.report, "webhook http://127.0.40.2:8089/broken: failed: the server "
                                     "answered HTTP 500"));
    /* the failing webhook did receive the request */
    assert_int_equal(count_files(path("hook500"), ".json"), 1);
    cf_notify_free(n);
}

static void test_nothing_to_send(void **state)
{
    cf_notify *n = cf_notify_new();
    struct cf_notify_config cfg = {.to = "ops@example.com", .smtp_server = ADDR, .smtp_port = 2525};
    struct sent s;
    int before = count_files(path("mail"), ".eml");
    send_and_wait(n, &cfg, &s);
    assert_int_equal(s.status, 0);
    assert_string_equal(s.report, "");
    assert_int_equal(count_files(path("mail"), ".eml"), before);
    cf_notify_free(n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_single_event_subjects),
        cmocka_unit_test(test_bodies_follow_the_seed_guide),
        cmocka_unit_test(test_failure_kinds_and_checklists),
        cmocka_unit_test(test_mail_message),
        cmocka_unit_test(test_webhook_json),
        cmocka_unit_test(test_config_from_vars),
        cmocka_unit_test(test_one_grouped_mail_and_webhook),
        cmocka_unit_test(test_starttls_and_password_from_environment),
        cmocka_unit_test(test_unreachable_destinations_are_reported),
        cmocka_unit_test(test_nothing_to_send),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

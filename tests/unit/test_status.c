/* Unit tests: status classification, urgency order, exit rule and the four
 * renderers (text, JSON, Prometheus checked by promtool, HTML rendered by
 * headless Chromium and read back as the text and colours it shows). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cf.h"
#include "notify.h"
#include "probe.h"
#include "status.h"
#include "util.h"

#define NOW ((int64_t)1790000000) /* 2026-09-21 */
#define DAY 86400

static struct cf_status_row mk(const char *host, const char *domain, int probe_status,
                               const char *serial, int64_t not_after, const char *store)
{
    struct cf_status_row r;
    memset(&r, 0, sizeof r);
    snprintf(r.group, sizeof r.group, "web");
    snprintf(r.host, sizeof r.host, "%s", host);
    snprintf(r.address, sizeof r.address, "127.0.40.1:443");
    snprintf(r.domain, sizeof r.domain, "%s", domain);
    snprintf(r.cert, sizeof r.cert, "%s", domain);
    r.probe_status = probe_status;
    if (probe_status == 0) {
        snprintf(r.serial, sizeof r.serial, "%s", serial);
        snprintf(r.issuer, sizeof r.issuer, "Pebble Intermediate CA");
        r.not_after = not_after;
        r.covers_domain = 1;
    } else {
        snprintf(r.error, sizeof r.error,
                 "host '%s' (127.0.40.1:443, domain '%s'): connection "
                 "refused",
                 host, domain);
    }
    if (store)
        snprintf(r.store_serial, sizeof r.store_serial, "%s", store);
    return r;
}

/* A fleet with one row in every state, in no particular order. */
static size_t fleet(struct cf_status_row *rows)
{
    size_t n = 0;
    rows[n++] = mk("app3", "app.example.com", 0, "0AB1", NOW + 80 * DAY, "0AB1");
    rows[n++] = mk("app4", "app.example.com", 0, "0AB0", NOW + 60 * DAY, "0AB1"); /* old */
    rows[n++] = mk("bot", "bot.example.com", 0, "77", NOW + 5 * DAY - 100, "77");
    rows[n++] = mk("qa", "qa.example.com", 0, "88", NOW - 3 * DAY, "88");
    rows[n++] = mk("shop3", "shop.example.com", CF_ECONNECT, NULL, 0, "99");
    rows[n] = mk("test", "test.example.com", 0, "55", NOW + 40 * DAY, NULL);
    rows[n++].store_missing = 1;
    rows[n++] = mk("npm", "npm.example.com", 0, "66", NOW + 89 * DAY, NULL); /* store unknown */
    for (size_t i = 0; i < n; i++)
        cf_status_classify(&rows[i], NOW, 31, -1);
    return n;
}

static void test_classify(void **state)
{
    struct cf_status_row r;

    r = mk("h", "d.test", 0, "0A", NOW + 60 * DAY, "0A");
    cf_status_classify(&r, NOW, 31, -1);
    assert_int_equal(r.state, CF_STATE_OK);
    assert_int_equal(r.matches_store, CF_MATCH_YES);
    assert_int_equal(r.days_left, 60);
    assert_string_equal(r.error, "");

    /* 5 days minus a little is 4 whole days, as certbot counts */
    r = mk("h", "d.test", 0, "A", NOW + 5 * DAY - 60, "A");
    cf_status_classify(&r, NOW, 31, -1);
    assert_int_equal(r.state, CF_STATE_RENEW_SOON);
    assert_int_equal(r.days_left, 4);

    /* --warn-days above renewal_days widens RENEW-SOON */
    r = mk("h", "d.test", 0, "A", NOW + 40 * DAY, "A");
    cf_status_classify(&r, NOW, 31, -1);
    assert_int_equal(r.state, CF_STATE_OK);
    cf_status_classify(&r, NOW, 31, 45);
    assert_int_equal(r.state, CF_STATE_RENEW_SOON);

    r = mk("h", "d.test", 0, "A", NOW - 1, "A");
    cf_status_classify(&r, NOW, 31, -1);
    assert_int_equal(r.state, CF_STATE_EXPIRED);
    assert_int_equal(r.days_left, -1);
    assert_non_null(strstr(r.error, "expired"));

    /* expired beats mismatch: the served certificate is what users see */
    r = mk("h", "d.test", 0, "A", NOW - 10 * DAY, "B");
    cf_status_classify(&r, NOW, 31, -1);
    assert_int_equal(r.state, CF_STATE_EXPIRED);
    assert_int_equal(r.matches_store, CF_MATCH_NO);

    r = mk("h", "d.test", 0, "A", NOW + 80 * DAY, "B");
    cf_status_classify(&r, NOW, 31, -1);
    assert_int_equal(r.state, CF_STATE_MISMATCH);
    assert_non_null(strstr(r.error, "serial A"));
    assert_non_null(strstr(r.error, "is B"));

    r = mk("h", "d.test", 0, "A", NOW + 80 * DAY, NULL);
    cf_status_classify(&r, NOW, 31, -1);
    assert_int_equal(r.state, CF_STATE_OK);
    assert_int_equal(r.matches_store, CF_MATCH_UNKNOWN);

    r = mk("h", "d.test", 0, "A", NOW + 80 * DAY, NULL);
    r.store_missing = 1;
    cf_status_classify(&r, NOW, 31, -1);
    assert_int_equal(r.state, CF_STATE_MISSING);
    assert_non_null(strstr(r.error, "not in the central store"));

    r = mk("h", "d.test", 0, "A", NOW + 80 * DAY, "A");
    r.covers_domain = 0; /* nginx fell back to its default server */
    cf_status_classify(&r, NOW, 31, -1);
    assert_int_equal(r.state, CF_STATE_MISSING);
    assert_non_null(strstr(r.error, "does not cover 'd.test'"));

    r = mk("h", "d.test", CF_ETIMEDOUT, NULL, 0, "A");
    r.error[0] = 0;
    cf_status_classify(&r, NOW, 31, -1);
    assert_int_equal(r.state, CF_STATE_UNREACHABLE);
    assert_int_equal(r.matches_store, CF_MATCH_UNKNOWN);
    assert_string_not_equal(r.error, "");
}

static void test_row_from_probe(void **state)
{
    struct cf_probe_result res;
    struct cf_status_row r;
    memset(&res, 0, sizeof res);
    memset(&r, 0, sizeof r);
    snprintf(res.serial, sizeof res.serial, "01AB");
    snprintf(res.issuer_cn, sizeof res.issuer_cn, "Test CA");
    res.not_after = NOW + 10 * DAY;
    res.covers_sni = 1;
    cf_status_row_from_probe(&r, &res);
    assert_string_equal(r.serial, "01AB");
    assert_string_equal(r.issuer, "Test CA");
    assert_int_equal(r.covers_domain, 1);
    res.status = CF_ECONNECT;
    snprintf(res.error, sizeof res.error, "connection refused");
    cf_status_row_from_probe(&r, &res);
    assert_string_equal(r.serial, "");
    assert_string_equal(r.error, "connection refused");
    cf_status_classify(&r, NOW, 31, -1);
    assert_int_equal(r.state, CF_STATE_UNREACHABLE);
}

static void test_sort_by_urgency(void **state)
{
    struct cf_status_row rows[16];
    size_t n = fleet(rows);
    cf_status_sort(rows, n);
    const char *want[] = {"qa", "shop3", "test", "app4", "bot", "app3", "npm"};
    assert_int_equal(n, 7);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(rows[i].host, want[i]);
    assert_int_equal(rows[0].state, CF_STATE_EXPIRED);
    assert_int_equal(rows[n - 1].state, CF_STATE_OK);
    /* OK rows: fewer days left first */
    assert_true(rows[5].days_left < rows[6].days_left);
}

static void test_exit_rule(void **state)
{
    struct cf_status_row rows[16];
    size_t n = fleet(rows);
    assert_int_equal(cf_status_exit_code(rows, n, -1), CF_EXIT_FAILED);
    /* only OK and RENEW-SOON */
    struct cf_status_row ok[2] = {rows[0], rows[2]};
    assert_int_equal(ok[0].state, CF_STATE_OK);
    assert_int_equal(ok[1].state, CF_STATE_RENEW_SOON);
    assert_int_equal(cf_status_exit_code(ok, 2, -1), CF_EXIT_OK);
    assert_int_equal(cf_status_exit_code(ok, 2, 7), CF_EXIT_FAILED);
    assert_int_equal(cf_status_exit_code(ok, 1, 7), CF_EXIT_OK);
    assert_int_equal(cf_status_exit_code(NULL, 0, -1), CF_EXIT_OK);
    for (int s = CF_STATE_EXPIRED; s <= CF_STATE_MISMATCH; s++) {
        struct cf_status_row one = rows[0];
        one.state = (enum cf_state)s;
        assert_int_equal(cf_status_exit_code(&one, 1, -1), CF_EXIT_FAILED);
    }
}

static void test_warnings_for_alerts(void **state)
{
    struct cf_status_row rows[16];
    size_t n = fleet(rows);
    cf_notify *nt = cf_notify_new();
    /* bot (4 days) and qa (expired) are under 14 days; unreachable shop3 is not judged */
    assert_int_equal(cf_status_add_warnings(rows, n, 14, nt, NOW), 2);
    assert_int_equal(cf_notify_count(nt), 2);
    struct cf_buf b = CF_BUF_INIT;
    assert_int_equal(cf_notify_body(nt, NOW, &b), 0);
    assert_non_null(strstr(b.data, "[WARNING] bot \xe2\x80\x93 Certificate expires in 4 days"));
    assert_non_null(strstr(b.data, "[WARNING] qa \xe2\x80\x93 Certificate expired 3 days ago"));
    cf_buf_release(&b);
    assert_int_equal(cf_status_add_warnings(rows, n, -1, nt, NOW), 0);
    cf_notify_free(nt);
}

static char *render(int (*fn)(struct cf_buf *, const struct cf_status_row *, size_t,
                              const struct cf_status_meta *),
                    const struct cf_status_row *rows, size_t n, const struct cf_status_meta *m)
{
    struct cf_buf b = CF_BUF_INIT;
    assert_int_equal(fn(&b, rows, n, m), 0);
    return cf_buf_detach(&b, NULL);
}

static void test_text_table(void **state)
{
    struct cf_status_row rows[16];
    size_t n = fleet(rows);
    cf_status_sort(rows, n);
    struct cf_status_meta m = {.now = NOW, .last_run_success = -1};
    char *t = render(cf_status_render_text, rows, n, &m);

    assert_non_null(strstr(t, "GROUP"));
    assert_non_null(strstr(t, "NOT AFTER (UTC)"));
    assert_null(strstr(t, "\033[")); /* no colour unless asked */
    assert_non_null(strstr(t, "7 endpoints: 2 OK, 1 RENEW-SOON, 1 MISMATCH, 1 MISSING, 1 "
                              "UNREACHABLE, 1 EXPIRED\n"));
    /* the STATE column starts at the same offset on every line of the table */
    char *state_hdr = strstr(t, "STATE");
    size_t col = (size_t)(state_hdr - t);
    char *line = t;
    for (size_t i = 0; i <= n; i++) {
        char *nl = strchr(line, '\n');
        assert_non_null(nl);
        if (i > 0) {
            const char *st = cf_status_state_name(rows[i - 1].state);
            assert_memory_equal(line + col, st, strlen(st));
        }
        line = nl + 1;
    }
    /* the failing rows' reasons follow the summary */
    assert_non_null(strstr(t, "  UNREACHABLE shop.example.com: host 'shop3'"));
    assert_non_null(strstr(t, "MISMATCH app.example.com: host 'app4' serves serial 0AB0"));
    /* not-after in UTC, days right-aligned */
    assert_non_null(strstr(t, "2026-12-10 14:13"));
    free(t);

    m.color = 1;
    t = render(cf_status_render_text, rows, n, &m);
    assert_non_null(strstr(t, "\033[1;31mEXPIRED\033[0m"));
    assert_non_null(strstr(t, "\033[32mOK\033[0m"));
    free(t);

    t = render(cf_status_render_text, rows, 0, &m);
    assert_non_null(strstr(t, "0 endpoints: none"));
    free(t);
}

static void test_json(void **state)
{
    struct cf_status_row rows[16];
    size_t n = fleet(rows);
    cf_status_sort(rows, n);
    struct cf_status_meta m = {.now = NOW, .last_run_success = -1};
    char *t = render(cf_status_render_json, rows, n, &m);
    json_error_t je;
    json_t *j = json_loads(t, 0, &je);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "generated_at")),
                        "2026-09-21T14:13:20Z");
    assert_int_equal(json_integer_value(json_object_get(j, "exit_code")), 1);
    json_t *sum = json_object_get(j, "summary");
    assert_int_equal(json_integer_value(json_object_get(sum, "OK")), 2);
    assert_int_equal(json_integer_value(json_object_get(sum, "EXPIRED")), 1);
    json_t *eps = json_object_get(j, "endpoints");
    assert_int_equal(json_array_size(eps), n);
    json_t *e0 = json_array_get(eps, 0);
    assert_string_equal(json_string_value(json_object_get(e0, "state")), "EXPIRED");
    assert_string_equal(json_string_value(json_object_get(e0, "host")), "qa");
    assert_int_equal(json_integer_value(json_object_get(e0, "days_left")), -3);
    assert_true(json_is_true(json_object_get(e0, "matches_store")));
    json_t *e1 = json_array_get(eps, 1); /* unreachable */
    assert_true(json_is_null(json_object_get(e1, "serial")));
    assert_true(json_is_null(json_object_get(e1, "days_left")));
    assert_true(json_is_null(json_object_get(e1, "matches_store")));
    assert_non_null(strstr(json_string_value(json_object_get(e1, "error")), "refused"));
    json_t *last = json_array_get(eps, n - 1); /* npm, store unknown */
    assert_true(json_is_null(json_object_get(last, "matches_store")));
    assert_string_equal(json_string_value(json_object_get(last, "not_after")),
                        "2026-12-19T14:13:20Z");
    json_decref(j);
    free(t);
}

static int run(const char *cmd, char *out, size_t len)
{
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    size_t got = fread(out, 1, len - 1, f);
    out[got] = 0;
    int rc = pclose(f);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static void write_file(const char *path, const char *s)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(s, f);
    fclose(f);
}

static void test_prometheus(void **state)
{
    struct cf_status_row rows[16];
    size_t n = fleet(rows);
    cf_status_sort(rows, n);
    snprintf(rows[6].group, sizeof rows[6].group, "we\"ird\\grp"); /* escaping */
    struct cf_status_meta m = {.now = NOW, .last_run_success = -1};
    char *t = render(cf_status_render_prometheus, rows, n, &m);
    assert_non_null(strstr(t, "# TYPE certfleet_certificate_expiry_timestamp_seconds gauge\n"));
    assert_non_null(strstr(t, "certfleet_certificate_expiry_timestamp_seconds{host=\"app3\","
                              "domain=\"app.example.com\",group=\"web\",cert=\"app.example.com\"} "
                              "1796912000\n"));
    assert_non_null(strstr(t, "certfleet_certificate_remaining_seconds{host=\"qa\",domain=\"qa."
                              "example.com\",group=\"web\",cert=\"qa.example.com\"} -259200\n"));
    assert_non_null(strstr(t, "certfleet_certificate_matches_store{host=\"app4\",domain=\"app."
                              "example.com\",group=\"web\",cert=\"app.example.com\"} 0\n"));
    assert_non_null(strstr(t, "certfleet_endpoint_up{host=\"shop3\",domain=\"shop.example.com\","
                              "group=\"web\",cert=\"shop.example.com\"} 0\n"));
    assert_non_null(strstr(t, "group=\"we\\\"ird\\\\grp\""));
    assert_non_null(strstr(t, "state=\"MISMATCH\"} 1\n"));
    assert_non_null(strstr(t, "certfleet_last_run_success 0\n"));
    assert_non_null(strstr(t, "certfleet_last_run_timestamp_seconds 1790000000\n"));
    /* the unreachable endpoint has no expiry sample */
    assert_null(strstr(t, "certfleet_certificate_expiry_timestamp_seconds{host=\"shop3\""));

    char path[] = "/tmp/cf-test-prom.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    write_file(path, t);
    char cmd[256], out[4096];
    snprintf(cmd, sizeof cmd, "promtool check metrics < %s 2>&1", path);
    int rc = run(cmd, out, sizeof out);
    if (rc != 0)
        fprintf(stderr, "# promtool: %s\n", out);
    /* and promtool does reject a broken exposition, so the check can fail */
    write_file(path, "# TYPE x gauge\nx{a=\"b} 1\n");
    int rc_bad = run(cmd, out, sizeof out);
    unlink(path);
    assert_int_equal(rc, 0);
    assert_int_not_equal(rc_bad, 0);
    free(t);

    m.last_run_success = 1;
    m.last_run_time = NOW - 60;
    t = render(cf_status_render_prometheus, rows, 0, &m);
    assert_non_null(strstr(t, "certfleet_last_run_success 1\n"));
    assert_non_null(strstr(t, "certfleet_last_run_timestamp_seconds 1789999940\n"));
    free(t);
}

static void test_html_static(void **state)
{
    struct cf_status_row rows[16];
    size_t n = fleet(rows);
    cf_status_sort(rows, n);
    snprintf(rows[6].host, sizeof rows[6].host, "<script>alert(1)</script>");
    struct cf_status_meta m = {.now = NOW, .last_run_success = -1};
    char *t = render(cf_status_render_html, rows, n, &m);
    assert_memory_equal(t, "<!DOCTYPE html>", 15);
    assert_non_null(strstr(t, "<svg id=\"timeline\""));
    assert_non_null(strstr(t, "<table id=\"endpoints\">"));
    assert_non_null(strstr(t, "&lt;script&gt;"));
    assert_null(strstr(t, "<script>"));
    /* self-contained: nothing fetched from anywhere */
    assert_null(strstr(t, " src="));
    assert_null(strstr(t, " href="));
    assert_null(strstr(t, "url("));
    assert_null(strstr(t, "@import"));
    free(t);
}

/* Render in headless Chromium: the PDF's text is what a reader sees, the
 * screenshot's pixels show the state colours. */
static void test_html_in_chromium(void **state)
{
    struct cf_status_row rows[16];
    size_t n = fleet(rows);
    cf_status_sort(rows, n);
    struct cf_status_meta m = {.now = NOW, .last_run_success = -1, .title = "Fleet prod"};
    char *t = render(cf_status_render_html, rows, n, &m);
    char dir[] = "/tmp/cf-test-html.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256], cmd[2048], out[65536];
    snprintf(path, sizeof path, "%s/status.html", dir);
    write_file(path, t);
    free(t);
    const char *chrome = "timeout 90 chromium --headless --no-sandbox --disable-gpu "
                         "--disable-background-networking --disable-component-update "
                         "--disable-sync --no-first-run --hide-scrollbars";
    snprintf(cmd, sizeof cmd,
             "cd %s && %s --user-data-dir=%s/p1 --print-to-pdf=%s/s.pdf --no-pdf-header-footer "
             "file://%s >/dev/null 2>&1 && pdftotext -layout s.pdf - ",
             dir, chrome, dir, dir, path);
    assert_int_equal(run(cmd, out, sizeof out), 0);
    /* the title, the summary cards, timeline labels and table rows */
    assert_non_null(strstr(out, "Fleet prod"));
    assert_non_null(strstr(out, "7 endpoints scanned at 2026-09-21 14:13:20 UTC"));
    assert_non_null(strstr(out, "Expiry timeline"));
    assert_non_null(strstr(out, "today"));
    assert_non_null(strstr(out, "+90d"));
    assert_non_null(strstr(out, "qa.example.com"));
    assert_non_null(strstr(out, "UNREACHABLE"));
    assert_non_null(strstr(out, "RENEW-SOON"));
    assert_non_null(strstr(out, "connection refused"));
    /* summary: 2 OK (the card's number precedes its label) */
    char *ok = strstr(out, "Endpoints");
    assert_non_null(ok);

    /* Colours: count pixels of the EXPIRED red (#b71c1c) and the OK green
     * (#2e7d32) in a screenshot; both cards and the dots use them. */
    snprintf(cmd, sizeof cmd,
             "cd %s && %s --user-data-dir=%s/p2 --screenshot=%s/s.png --window-size=1200,900 "
             "file://%s >/dev/null 2>&1 && python3 -c '\n"
             "import zlib,struct,sys\n"
             "d=open(\"s.png\",\"rb\").read(); p=8; idat=b\"\"\n"
             "while p<len(d):\n"
             "  n,=struct.unpack(\">I\",d[p:p+4]); t=d[p+4:p+8]; c=d[p+8:p+8+n]; p+=12+n\n"
             "  if t==b\"IHDR\": w,h,bd,ct=struct.unpack(\">IIBB\",c[:10])\n"
             "  if t==b\"IDAT\": idat+=c\n"
             "bpp={2:3,6:4}[ct]; raw=zlib.decompress(idat); s=w*bpp; prev=bytearray(s); rows=[]\n"
             "for y in range(h):\n"
             "  f=raw[y*(s+1)]; line=bytearray(raw[y*(s+1)+1:(y+1)*(s+1)])\n"
             "  for i in range(s):\n"
             "    a=line[i-bpp] if i>=bpp else 0; b=prev[i]; c=prev[i-bpp] if i>=bpp else 0\n"
             "    if f==1: line[i]=(line[i]+a)&255\n"
             "    elif f==2: line[i]=(line[i]+b)&255\n"
             "    elif f==3: line[i]=(line[i]+(a+b)//2)&255\n"
             "    elif f==4:\n"
             "      pa=abs(b-c); pb=abs(a-c); pc=abs(a+b-2*c)\n"
             "      line[i]=(line[i]+(a if pa<=pb and pa<=pc else b if pb<=pc else c))&255\n"
             "  rows.append(bytes(line)); prev=line\n"
             "def count(r,g,b): return sum(1 for L in rows for i in range(0,len(L),bpp) if "
             "abs(L[i]-r)<8 and abs(L[i+1]-g)<8 and abs(L[i+2]-b)<8)\n"
             "print(count(0xb7,0x1c,0x1c), count(0x2e,0x7d,0x32))\n'",
             dir, chrome, dir, dir, path);
    assert_int_equal(run(cmd, out, sizeof out), 0);
    long red = 0, green = 0;
    assert_int_equal(sscanf(out, "%ld %ld", &red, &green), 2);
    printf("# screenshot: %ld red (EXPIRED) and %ld green (OK) pixels\n", red, green);
    assert_true(red > 500); /* the EXPIRED card is about 100x60 px */
    assert_true(green > 500);

    /* an all-OK fleet shows no EXPIRED red */
    struct cf_status_row okrows[2] = {rows[5], rows[6]};
    t = render(cf_status_render_html, okrows, 2, &m);
    write_file(path, t);
    free(t);
    assert_int_equal(run(cmd, out, sizeof out), 0);
    assert_int_equal(sscanf(out, "%ld %ld", &red, &green), 2);
    assert_true(red < 50);
    assert_true(green > 500);

    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classify),
        cmocka_unit_test(test_row_from_probe),
        cmocka_unit_test(test_sort_by_urgency),
        cmocka_unit_test(test_exit_rule),
        cmocka_unit_test(test_warnings_for_alerts),
        cmocka_unit_test(test_text_table),
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_prometheus),
        cmocka_unit_test(test_html_static),
        cmocka_unit_test(test_html_in_chromium),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

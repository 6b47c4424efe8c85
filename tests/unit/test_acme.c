/*
 * test_acme.c - the ACME client's pure decisions (next step, problem
 * messages, token checks, Retry-After, RFC 3339, ARI certID, chain choice)
 * as cmocka tests; and, when CF_ACME_DIRECTORY is set, a driver that runs
 * real orders against a server for tests/integration/40_acme.sh:
 *
 *   CF_ACME_DIRECTORY  directory URL            CF_ACME_CA     CA bundle
 *   CF_ACME_STATE      state dir                CF_ACME_MODE   order|ari|rollover|account
 *   CF_ACME_DOMAINS    "a,b;c,d" (orders ; domains ,)  CF_ACME_COUNT  repeat the list N times
 *   CF_ACME_CHALLENGE  http-01|dns-01           CF_ACME_WEBROOTS  "dir1:dir2" (http-01)
 *   CF_ACME_SKIP       domain whose token is not published
 *   CF_ACME_DNSAPI     challtestsrv URL (dns-01)   CF_ACME_OUT  where PEMs go
 *   CF_ACME_CERT       certificate for ari     CF_ACME_PREFERRED  preferred chain
 *   CF_ACME_RESUME     order URL to resume (resume_url of every order)
 *   CF_ACME_KEYFILE    certificate key: read when it exists, else generated and written
 *   CF_ACME_CRASH      present|cleanup: SIGKILL itself in that solver call, as a
 *                      crashed run would stop (before finalize either way)
 * It prints one line per order ("order N ok" / "order N failed: ..."),
 * "created N URL" when created() reports the order URL, "order-url N URL"
 * with the result's order URL, "presented=P cleaned=C", and exits 0 when
 * the loop closed clean.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/bn.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "acme.h"
#include "cf.h"
#include "http.h"
#include "x509.h"
#include "util.h"

/* ---------------- unit tests ---------------- */

static void test_next_step(void **state)
{
    assert_int_equal(cf_acme_next_step("pending", 0, 0), CF_ACME_STEP_AUTHORIZE);
    assert_int_equal(cf_acme_next_step("pending", 1, 0), CF_ACME_STEP_POLL);
    assert_int_equal(cf_acme_next_step("ready", 1, 0), CF_ACME_STEP_FINALIZE);
    assert_int_equal(cf_acme_next_step("ready", 1, 1), CF_ACME_STEP_POLL);
    assert_int_equal(cf_acme_next_step("processing", 1, 1), CF_ACME_STEP_POLL);
    assert_int_equal(cf_acme_next_step("valid", 1, 1), CF_ACME_STEP_DOWNLOAD);
    /* an order reused by the server can be valid or ready at once */
    assert_int_equal(cf_acme_next_step("ready", 0, 0), CF_ACME_STEP_FINALIZE);
    assert_int_equal(cf_acme_next_step("valid", 0, 0), CF_ACME_STEP_DOWNLOAD);
    assert_int_equal(cf_acme_next_step("invalid", 1, 1), CF_ACME_STEP_FAIL);
    assert_int_equal(cf_acme_next_step("weird", 0, 0), CF_ACME_STEP_FAIL);
    assert_int_equal(cf_acme_next_step(NULL, 0, 0), CF_ACME_STEP_FAIL);

    assert_int_equal(cf_acme_authz_next("valid", 0), CF_ACME_AUTHZ_DONE);
    assert_int_equal(cf_acme_authz_next("pending", 0), CF_ACME_AUTHZ_SOLVE);
    assert_int_equal(cf_acme_authz_next("pending", 1), CF_ACME_AUTHZ_POLL);
    assert_int_equal(cf_acme_authz_next("invalid", 1), CF_ACME_AUTHZ_FAIL);
    assert_int_equal(cf_acme_authz_next("expired", 0), CF_ACME_AUTHZ_FAIL);
    assert_int_equal(cf_acme_authz_next("deactivated", 0), CF_ACME_AUTHZ_FAIL);
    assert_int_equal(cf_acme_authz_next("revoked", 0), CF_ACME_AUTHZ_FAIL);
    assert_int_equal(cf_acme_authz_next("bogus", 0), CF_ACME_AUTHZ_FAIL);
}

static void test_problem_message(void **state)
{
    json_t *p = json_loads(
        "{\"type\":\"urn:ietf:params:acme:error:unauthorized\",\"detail\":\"bad token\\nFAKE\"}", 0,
        NULL);
    char *m = cf_acme_problem_message(p, "h2.fleet.test");
    assert_string_equal(m, "acme: urn:ietf:params:acme:error:unauthorized for 'h2.fleet.test': "
                           "bad token FAKE");
    free(m);
    json_decref(p);
    p = json_loads("{\"type\":\"urn:ietf:params:acme:error:rejectedIdentifier\","
                   "\"detail\":\"some rejected\",\"subproblems\":["
                   "{\"type\":\"urn:ietf:params:acme:error:caa\",\"detail\":\"caa forbids\","
                   "\"identifier\":{\"type\":\"dns\",\"value\":\"a.test\"}},"
                   "{\"type\":\"urn:ietf:params:acme:error:dns\",\"detail\":\"nxdomain\","
                   "\"identifier\":{\"type\":\"dns\",\"value\":\"b.test\"}}]}",
                   0, NULL);
    m = cf_acme_problem_message(p, NULL);
    assert_string_equal(m, "acme: urn:ietf:params:acme:error:rejectedIdentifier: some rejected; "
                           "urn:ietf:params:acme:error:caa for 'a.test': caa forbids; "
                           "urn:ietf:params:acme:error:dns for 'b.test': nxdomain");
    free(m);
    json_decref(p);
    p = json_loads("{\"detail\":42}", 0, NULL);
    m = cf_acme_problem_message(p, "x.test");
    assert_string_equal(m, "acme: problem without type for 'x.test'");
    free(m);
    json_decref(p);
}

static void test_token_valid(void **state)
{
    assert_true(cf_acme_token_valid("LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0"));
    assert_true(cf_acme_token_valid("abcdefghijklmnopqrstu_-"));
    assert_false(cf_acme_token_valid("abcdefghijklmnopqrstu")); /* 21 chars: < 128 bits */
    assert_false(cf_acme_token_valid("../../../../etc/passwd_aaaaaaaaaa"));
    assert_false(cf_acme_token_valid("abcdefghijklmnopqrstuvwxyz/abc"));
    assert_false(cf_acme_token_valid("abcdefghijklmnopqrstuvwxyz..abc"));
    assert_false(cf_acme_token_valid("abcdefghijklmnopqrstuvwxyz abc"));
    assert_false(cf_acme_token_valid("abcdefghijklmnopqrstuvwxyz=="));
    assert_false(cf_acme_token_valid("abcdefghijklmnopqrstuvwxyz\xc3\xa9"));
    assert_false(cf_acme_token_valid(""));
    assert_false(cf_acme_token_valid(NULL));
    char longt[300];
    memset(longt, 'a', sizeof longt - 1);
    longt[299] = '\0';
    assert_false(cf_acme_token_valid(longt));
}

static void test_retry_after(void **state)
{
    int64_t d;
    assert_int_equal(cf_acme_parse_retry_after("120", 0, &d), 0);
    assert_int_equal(d, 120000);
    assert_int_equal(cf_acme_parse_retry_after(" 3 ", 0, &d), 0);
    assert_int_equal(d, 3000);
    /* Wed, 21 Oct 2015 07:28:00 GMT = 1445412480 */
    assert_int_equal(
        cf_acme_parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1445412480000LL - 90000, &d), 0);
    assert_int_equal(d, 90000);
    assert_int_equal(
        cf_acme_parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1445412480000LL + 5000, &d), 0);
    assert_int_equal(d, 0); /* in the past: now */
    assert_int_equal(cf_acme_parse_retry_after("soon", 0, &d), CF_EINVAL);
    assert_int_equal(cf_acme_parse_retry_after("-5", 0, &d), CF_EINVAL);
    assert_int_equal(cf_acme_parse_retry_after("12abc", 0, &d), CF_EINVAL);
    assert_int_equal(cf_acme_parse_retry_after(NULL, 0, &d), CF_EINVAL);

    assert_int_equal(cf_acme_poll_delay_ms(0, 0), 250);
    assert_int_equal(cf_acme_poll_delay_ms(1, 0), 500);
    assert_int_equal(cf_acme_poll_delay_ms(10, 0), 5000);
    assert_int_equal(cf_acme_poll_delay_ms(0, 3000), 3000);
    assert_int_equal(cf_acme_poll_delay_ms(0, 3600000), 60000);
}

static void test_transient(void **state)
{
    /* RFC 8555 §6.7 + HTTP: 5xx from the CA or its load balancer, and
     * transport failures, are worth another attempt; 4xx never */
    assert_true(cf_acme_transient(0, 500));
    assert_true(cf_acme_transient(0, 502));
    assert_true(cf_acme_transient(0, 503));
    assert_true(cf_acme_transient(0, 504));
    assert_true(cf_acme_transient(CF_ETIMEDOUT, 0));
    assert_true(cf_acme_transient(CF_ECONNECT, 0));
    assert_false(cf_acme_transient(0, 200));
    assert_false(cf_acme_transient(0, 400));
    assert_false(cf_acme_transient(0, 403));
    assert_false(cf_acme_transient(0, 404));
    assert_false(cf_acme_transient(0, 429));
    assert_false(cf_acme_transient(0, 501));       /* not implemented: will not change */
    assert_false(cf_acme_transient(CF_EPROTO, 0)); /* oversized body: the same next time */
    assert_false(cf_acme_transient(CF_ECANCELED, 0));

    assert_int_equal(cf_acme_retry_delay_ms(1, 0), 1000);
    assert_int_equal(cf_acme_retry_delay_ms(2, 0), 2000);
    assert_int_equal(cf_acme_retry_delay_ms(4, 0), 8000);
    assert_int_equal(cf_acme_retry_delay_ms(20, 0), 60000);
    assert_int_equal(cf_acme_retry_delay_ms(1, 7000), 7000);      /* Retry-After honoured */
    assert_int_equal(cf_acme_retry_delay_ms(3, 1000), 4000);      /* but no faster than backoff */
    assert_int_equal(cf_acme_retry_delay_ms(1, 86400000), 60000); /* capped */
}

static void test_resume_usable(void **state)
{
    const char *doms[] = {"h1.fleet.test", "h2.fleet.test"};
    char why[CF_ERRLEN];
    int64_t now = 1445412480; /* 2015-10-21T07:28:00Z */
    static const char *ok_states[] = {"pending", "ready", "processing", "valid"};
    for (size_t i = 0; i < 4; i++) {
        json_t *o = json_pack("{s:s, s:s, s:[{s:s,s:s},{s:s,s:s}]}", "status", ok_states[i],
                              "expires", "2015-10-28T07:28:00Z", "identifiers", "type", "dns",
                              "value", "h2.fleet.test", "type", "dns", "value", "H1.fleet.test");
        assert_int_equal(cf_acme_resume_usable(o, doms, 2, now, why), 1);
        json_decref(o);
    }
    struct {
        const char *json, *why;
    } bad[] = {
        {"{\"status\":\"invalid\",\"identifiers\":[{\"type\":\"dns\",\"value\":\"h1.fleet.test\"},"
         "{\"type\":\"dns\",\"value\":\"h2.fleet.test\"}]}",
         "invalid"},
        {"{\"status\":\"pending\",\"expires\":\"2015-10-21T07:27:59Z\",\"identifiers\":["
         "{\"type\":\"dns\",\"value\":\"h1.fleet.test\"},{\"type\":\"dns\",\"value\":\"h2.fleet."
         "test\"}]}",
         "expired"},
        {"{\"status\":\"valid\",\"identifiers\":[{\"type\":\"dns\",\"value\":\"h1.fleet.test\"}]}",
         "other identifiers"},
        {"{\"status\":\"valid\",\"identifiers\":[{\"type\":\"dns\",\"value\":\"h1.fleet.test\"},"
         "{\"type\":\"dns\",\"value\":\"h1.fleet.test\"}]}",
         "other identifiers"},
        {"{\"status\":\"valid\",\"identifiers\":[{\"type\":\"dns\",\"value\":\"h1.fleet.test\"},"
         "{\"type\":\"ip\",\"value\":\"h2.fleet.test\"}]}",
         "other identifiers"},
        {"{\"status\":\"valid\",\"identifiers\":[{\"type\":\"dns\",\"value\":\"h1.fleet.test\"},"
         "{\"type\":\"dns\",\"value\":\"h3.fleet.test\"}]}",
         "other identifiers"},
        {"{\"status\":\"valid\"}", "other identifiers"},
        {"{\"status\":\"deactivated\\n\"}", "unknown status 'deactivated '"},
        {"{\"identifiers\":[]}", "no status"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_t *o = json_loads(bad[i].json, 0, NULL);
        assert_non_null(o);
        why[0] = '\0';
        assert_int_equal(cf_acme_resume_usable(o, doms, 2, now, why), 0);
        if (!strstr(why, bad[i].why))
            fail_msg("case %zu: '%s' lacks '%s'", i, why, bad[i].why);
        json_decref(o);
    }
}

static void test_parse_time(void **state)
{
    int64_t t;
    assert_int_equal(cf_acme_parse_time("2015-10-21T07:28:00Z", &t), 0);
    assert_int_equal(t, 1445412480);
    assert_int_equal(cf_acme_parse_time("2015-10-21T07:28:00.123456Z", &t), 0);
    assert_int_equal(t, 1445412480);
    assert_int_equal(cf_acme_parse_time("2015-10-21T09:28:00+02:00", &t), 0);
    assert_int_equal(t, 1445412480);
    assert_int_equal(cf_acme_parse_time("2015-10-21 07:28:00", &t), CF_EINVAL);
    assert_int_equal(cf_acme_parse_time("2015-10-21T07:28:00Zjunk", &t), CF_EINVAL);
    /* short or malformed offsets (found by fuzzing: "+7:30" read past the
     * end of the string) */
    static const char *const bad_offsets[] = {
        "2015-10-21T07:28:00+7:30", "2015-10-21T07:28:00+07:3", "2015-10-21T07:28:00+",
        "2015-10-21T07:28:00-07",   "2015-10-21T07:28:00+0730", "2015-10-21T07:28:00+24:00",
        "2015-10-21T07:28:00+07:60"};
    for (size_t i = 0; i < sizeof bad_offsets / sizeof bad_offsets[0]; i++)
        if (cf_acme_parse_time(bad_offsets[i], &t) != CF_EINVAL)
            fail_msg("'%s' was accepted", bad_offsets[i]);
    assert_int_equal(cf_acme_parse_time("2015-10-21T02:58:00-04:30", &t), 0);
    assert_int_equal(t, 1445412480);
    assert_int_equal(cf_acme_parse_time(NULL, &t), CF_EINVAL);
}

/* A certificate with the AKI and serial of RFC 9773 §4.1's example. */
static char *make_cert(const unsigned char *aki, size_t aki_len, const char *serial_hex,
                       const char *issuer_cn, EVP_PKEY *key)
{
    X509 *x = X509_new();
    X509_set_version(x, 2);
    BIGNUM *bn = NULL;
    BN_hex2bn(&bn, serial_hex);
    BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x));
    BN_free(bn);
    X509_NAME *n = X509_NAME_new();
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)issuer_cn, -1, -1, 0);
    X509_set_issuer_name(x, n);
    X509_set_subject_name(x, n);
    X509_NAME_free(n);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, key);
    if (aki) {
        AUTHORITY_KEYID *ak = AUTHORITY_KEYID_new();
        ak->keyid = ASN1_OCTET_STRING_new();
        ASN1_OCTET_STRING_set(ak->keyid, aki, (int)aki_len);
        X509_add1_ext_i2d(x, NID_authority_key_identifier, ak, 0, 0);
        AUTHORITY_KEYID_free(ak);
    }
    X509_sign(x, key, EVP_sha256());
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(b, x);
    char *data;
    long len = BIO_get_mem_data(b, &data);
    char *s = strndup(data, (size_t)len);
    BIO_free(b);
    X509_free(x);
    return s;
}

static void test_cert_id(void **state)
{
    static const unsigned char aki[] = {0x69, 0x88, 0x5B, 0x6B, 0x87, 0x46, 0x40, 0x41, 0xE1, 0xB3,
                                        0x7B, 0x84, 0x7B, 0xA0, 0xAE, 0x2C, 0xDE, 0x01, 0xC8, 0xD4};
    EVP_PKEY *k;
    char err[CF_ERRLEN], *id;
    assert_int_equal(cf_x509_keygen("ecdsa", 256, &k, err), 0);
    char *pem = make_cert(aki, sizeof aki, "87654321", "ca", k);
    assert_int_equal(cf_x509_ari_certid_pem(pem, &id, err), 0);
    assert_string_equal(id, "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE");
    free(id);
    free(pem);
    pem = make_cert(NULL, 0, "01", "ca", k);
    assert_int_equal(cf_x509_ari_certid_pem(pem, &id, err), CF_EINVAL);
    assert_non_null(strstr(err, "authority key identifier"));
    free(pem);
    assert_int_equal(cf_x509_ari_certid_pem("junk", &id, err), CF_EINVAL);
    EVP_PKEY_free(k);
}

static void test_pick_chain(void **state)
{
    EVP_PKEY *k;
    char err[CF_ERRLEN];
    assert_int_equal(cf_x509_keygen("ecdsa", 256, &k, err), 0);
    char *leaf1 = make_cert(NULL, 0, "01", "Intermediate A", k);
    char *top1 = make_cert(NULL, 0, "02", "Root X1", k);
    char *top2 = make_cert(NULL, 0, "03", "Root X2", k);
    char *c1 = cf_asprintf("%s%s", leaf1, top1), *c2 = cf_asprintf("%s%s", leaf1, top2);
    const char *chains[] = {c1, c2};
    assert_int_equal(cf_acme_pick_chain(chains, 2, "Root X2"), 1);
    assert_int_equal(cf_acme_pick_chain(chains, 2, "Root X1"), 0);
    assert_int_equal(cf_acme_pick_chain(chains, 2, "Nobody"), 0);
    assert_int_equal(cf_acme_pick_chain(chains, 2, NULL), 0);
    free(c1);
    free(c2);
    free(leaf1);
    free(top1);
    free(top2);
    EVP_PKEY_free(k);
}

static void test_new_validates(void **state)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    cf_http *h;
    assert_int_equal(cf_http_new(&loop, &h), 0);
    struct cf_acme *a;
    char err[CF_ERRLEN];
    struct cf_acme_config c = {.directory_url = "ftp://x/dir", .state_dir = "/tmp"};
    assert_int_equal(cf_acme_new(&loop, h, &c, &a, err), CF_EINVAL);
    assert_non_null(strstr(err, "'ftp://x/dir'"));
    c.directory_url = "https://x/dir";
    c.eab_kid = "kid";
    assert_int_equal(cf_acme_new(&loop, h, &c, &a, err), CF_EINVAL);
    assert_non_null(strstr(err, "certbot_eab_hmac_key"));
    c.eab_kid = NULL;
    c.email = "ops@example.com\nBcc: x";
    assert_int_equal(cf_acme_new(&loop, h, &c, &a, err), CF_EINVAL);
    c.email = "ops@example.com";
    c.account_key_type = "rsa";
    c.account_key_bits = 1024;
    assert_int_equal(cf_acme_new(&loop, h, &c, &a, err), CF_EINVAL);
    c.account_key_bits = 0;
    assert_int_equal(cf_acme_new(&loop, h, &c, &a, err), 0);
    /* request validation: nothing starts, no callback */
    EVP_PKEY *k;
    assert_int_equal(cf_x509_keygen("ecdsa", 256, &k, err), 0);
    const char *wild[] = {"*.fleet.test"};
    struct cf_acme_solver s = {(void *)1, (void *)1, NULL};
    struct cf_acme_order_req r = {.domains = wild, .n_domains = 1, .cert_key = k, .solver = &s};
    assert_int_equal(cf_acme_order(a, &r, (cf_acme_order_cb)1, NULL, err), CF_EINVAL);
    assert_non_null(strstr(err, "dns-01"));
    const char *bad[] = {"h1.fleet.test; rm -rf /"};
    r.domains = bad;
    assert_int_equal(cf_acme_order(a, &r, (cf_acme_order_cb)1, NULL, err), CF_EINVAL);
    assert_non_null(strstr(err, "invalid domain name"));
    EVP_PKEY_free(k);
    cf_acme_free(a);
    cf_http_free(h);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* ---------------- integration driver ---------------- */

struct drv {
    uv_loop_t loop;
    cf_http *http;
    struct cf_acme *acme;
    char **webroots;
    size_t n_webroots;
    const char *skip, *dnsapi, *out, *crash;
    int presented, cleaned, orders_left, failures;
};

/* The run dies the way SIGKILL (OOM killer, power loss) stops it: no
 * cleanup, nothing flushed but what is already out. */
static void crash_here(const struct drv *d, const char *where)
{
    if (d->crash && !strcmp(d->crash, where)) {
        printf("crashing in %s\n", where);
        fflush(stdout);
        raise(SIGKILL);
    }
}

struct solver_call {
    struct drv *d;
    cf_acme_solver_done done;
    void *ctx;
};

static void on_dnsapi(int status, struct cf_http_response *r, void *arg)
{
    struct solver_call *c = arg;
    if (status == 0 && r->status != 200)
        status = CF_EPROTO;
    c->done(c->ctx, status, status ? "challtestsrv request failed" : NULL);
    free(c);
}

static void dns_call(struct drv *d, const char *path, const struct cf_acme_challenge *ch,
                     cf_acme_solver_done done, void *ctx)
{
    char *host = cf_asprintf("_acme-challenge.%s.", ch->identifier);
    json_t *j = json_pack("{s:s, s:s}", "host", host, "value", ch->dns_txt_value);
    free(host);
    char *body = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    char *url = cf_asprintf("%s%s", d->dnsapi, path);
    struct solver_call *c = cf_xcalloc(1, sizeof *c);
    c->d = d;
    c->done = done;
    c->ctx = ctx;
    struct cf_http_request req = {
        .method = "POST", .url = url, .body = body, .body_len = strlen(body)};
    if (cf_http_request(d->http, &req, on_dnsapi, c) != 0) {
        free(c);
        done(ctx, CF_EIO, "cannot reach challtestsrv");
    }
    free(url);
    free(body);
}

static void present(void *arg, const struct cf_acme_challenge *ch, cf_acme_solver_done done,
                    void *ctx)
{
    struct drv *d = arg;
    d->presented++;
    crash_here(d, "present");
    if (!strcmp(ch->type, "dns-01")) {
        dns_call(d, "/set-txt", ch, done, ctx);
        return;
    }
    if (d->skip && !strcmp(d->skip, ch->identifier)) {
        done(ctx, 0, NULL); /* pretend: the host "cannot serve" this token */
        return;
    }
    for (size_t i = 0; i < d->n_webroots; i++) {
        char *dir = cf_asprintf("%s/.well-known/acme-challenge", d->webroots[i]);
        char *path = cf_asprintf("%s/%s", dir, ch->token);
        cf_mkdir_p(dir, 0755);
        int rc =
            cf_write_file_atomic(path, ch->key_authorization, strlen(ch->key_authorization), 0644);
        free(path);
        free(dir);
        if (rc) {
            done(ctx, rc, "cannot write token");
            return;
        }
    }
    done(ctx, 0, NULL);
}

static void cleanup(void *arg, const struct cf_acme_challenge *ch, cf_acme_solver_done done,
                    void *ctx)
{
    struct drv *d = arg;
    d->cleaned++;
    crash_here(d, "cleanup");
    if (!strcmp(ch->type, "dns-01")) {
        dns_call(d, "/clear-txt", ch, done, ctx);
        return;
    }
    for (size_t i = 0; i < d->n_webroots; i++) {
        char *path = cf_asprintf("%s/.well-known/acme-challenge/%s", d->webroots[i], ch->token);
        unlink(path);
        free(path);
    }
    done(ctx, 0, NULL);
}

struct order_ctx {
    struct drv *d;
    int n;
};

static void maybe_shutdown(struct drv *d)
{
    if (--d->orders_left == 0) {
        cf_acme_free(d->acme);
        cf_http_free(d->http);
    }
}

static void save(const char *dir, int n, const char *name, const char *data)
{
    char *p = cf_asprintf("%s/%d.%s", dir, n, name);
    cf_write_file_atomic(p, data, strlen(data), 0644);
    free(p);
}

static void on_order(int status, struct cf_acme_order_result *res, void *arg)
{
    struct order_ctx *oc = arg;
    struct drv *d = oc->d;
    if (status) {
        printf("order %d failed (%s): %s\n", oc->n, cf_strerror(status), res->error);
        d->failures++;
    } else {
        printf("order %d ok %s\n", oc->n, res->cert_url);
        if (d->out) {
            save(d->out, oc->n, "fullchain.pem", res->fullchain_pem);
            save(d->out, oc->n, "cert.pem", res->cert_pem);
            save(d->out, oc->n, "chain.pem", res->chain_pem);
        }
    }
    printf("order-url %d %s\n", oc->n, res->order_url ? res->order_url : "(none)");
    fflush(stdout);
    free(oc);
    maybe_shutdown(d);
}

static void on_created(void *arg, const char *order_url)
{
    struct order_ctx *oc = arg;
    printf("created %d %s\n", oc->n, order_url);
    fflush(stdout);
}

/* The certificate key of CF_ACME_KEYFILE (a journaled key), or a new one. */
static int order_key(EVP_PKEY **key, char *err)
{
    const char *path = getenv("CF_ACME_KEYFILE");
    char *pem = NULL;
    size_t len = 0;
    int rc;
    if (path && cf_read_file(path, 64 * 1024, &pem, &len) == 0) {
        rc = cf_x509_key_read(pem, len, key, err);
        cf_secure_free(pem, len);
        return rc;
    }
    if ((rc = cf_x509_keygen(getenv("CF_ACME_KEYTYPE"), 0, key, err)) != 0 || !path)
        return rc;
    if ((rc = cf_x509_key_pem(*key, &pem, &len, err)) == 0)
        rc = cf_write_file_atomic(path, pem, len, 0600);
    cf_secure_free(pem, len);
    return rc;
}

static void on_ari(int status, const struct cf_acme_ari *ari, const char *err, void *arg)
{
    struct drv *d = arg;
    if (status)
        printf("ari failed (%s): %s\n", cf_strerror(status), err);
    else
        printf("ari window %lld %lld\n", (long long)ari->start, (long long)ari->end);
    if (ari->retry_at)
        printf("ari retry-after %lld\n", (long long)ari->retry_at);
    if (ari->explanation_url)
        printf("ari explanation %s\n", ari->explanation_url);
    maybe_shutdown(d);
}

static void on_simple(int status, const char *err, void *arg)
{
    struct drv *d = arg;
    if (status)
        printf("failed (%s): %s\n", cf_strerror(status), err);
    else
        printf("ok account %s\n", cf_acme_account_url(d->acme));
    maybe_shutdown(d);
}

static char **split(const char *s, const char *sep, size_t *n)
{
    char *copy = cf_strdup(s ? s : ""), *save = NULL;
    char **v = NULL;
    *n = 0;
    for (char *t = strtok_r(copy, sep, &save); t; t = strtok_r(NULL, sep, &save)) {
        v = cf_xrealloc(v, (*n + 1) * sizeof *v);
        v[(*n)++] = cf_strdup(t);
    }
    free(copy);
    return v;
}

static int driver(void)
{
    struct drv d;
    memset(&d, 0, sizeof d);
    const char *mode = getenv("CF_ACME_MODE") ? getenv("CF_ACME_MODE") : "order";
    if (getenv("CF_ACME_VERBOSE"))
        cf_verbosity = atoi(getenv("CF_ACME_VERBOSE"));
    char err[CF_ERRLEN] = "";
    uv_loop_init(&d.loop);
    cf_http_new(&d.loop, &d.http);
    struct cf_acme_config c = {.directory_url = getenv("CF_ACME_DIRECTORY"),
                               .ca_bundle = getenv("CF_ACME_CA"),
                               .state_dir = getenv("CF_ACME_STATE"),
                               .email = "ops@fleet.test",
                               .eab_kid = getenv("CF_ACME_EAB_KID"),
                               .eab_hmac_key = getenv("CF_ACME_EAB_HMAC"),
                               .timeout_ms = 20000};
    if (cf_acme_new(&d.loop, d.http, &c, &d.acme, err) != 0) {
        printf("setup failed: %s\n", err);
        return 2;
    }
    d.webroots = split(getenv("CF_ACME_WEBROOTS"), ":", &d.n_webroots);
    d.skip = getenv("CF_ACME_SKIP");
    d.dnsapi = getenv("CF_ACME_DNSAPI");
    d.out = getenv("CF_ACME_OUT");
    d.crash = getenv("CF_ACME_CRASH");
    struct cf_acme_solver solver = {present, cleanup, &d};
    int rc = 0;
    if (!strcmp(mode, "ari")) {
        char *pem = NULL;
        cf_read_file(getenv("CF_ACME_CERT"), 1 << 20, &pem, NULL);
        d.orders_left = 1;
        rc = cf_acme_renewal_info(d.acme, pem, on_ari, &d, err);
        free(pem);
    } else if (!strcmp(mode, "account")) {
        d.orders_left = 1;
        rc = cf_acme_account(d.acme, on_simple, &d);
    } else if (!strcmp(mode, "rollover")) {
        d.orders_left = 1;
        rc = cf_acme_rollover(d.acme, getenv("CF_ACME_KEYTYPE"), 0, on_simple, &d);
    } else {
        size_t n_orders;
        char **orders = split(getenv("CF_ACME_DOMAINS"), ";", &n_orders);
        int count = getenv("CF_ACME_COUNT") ? atoi(getenv("CF_ACME_COUNT")) : 1;
        EVP_PKEY *key = NULL;
        if (order_key(&key, err) != 0) {
            printf("setup failed: certificate key: %s\n", err);
            return 2;
        }
        d.orders_left = (int)n_orders * count;
        int num = 0;
        for (int rep = 0; rep < count && rc == 0; rep++)
            for (size_t i = 0; i < n_orders && rc == 0; i++) {
                size_t nd;
                char **doms = split(orders[i], ",", &nd);
                /* with COUNT > 1 each copy gets its own names: c<rep>-<name> */
                if (count > 1)
                    for (size_t j = 0; j < nd; j++) {
                        char *x = cf_asprintf("c%d-%s", rep, doms[j]);
                        free(doms[j]);
                        doms[j] = x;
                    }
                struct cf_acme_order_req r = {.domains = (const char *const *)doms,
                                              .n_domains = nd,
                                              .challenge_type = getenv("CF_ACME_CHALLENGE"),
                                              .cert_key = key,
                                              .preferred_chain = getenv("CF_ACME_PREFERRED"),
                                              .replaces = getenv("CF_ACME_REPLACES"),
                                              .solver = &solver,
                                              .resume_url = getenv("CF_ACME_RESUME"),
                                              .created = on_created};
                struct order_ctx *oc = cf_xcalloc(1, sizeof *oc);
                oc->d = &d;
                oc->n = num++;
                rc = cf_acme_order(d.acme, &r, on_order, oc, err);
                if (rc)
                    free(oc);
                for (size_t j = 0; j < nd; j++)
                    free(doms[j]);
                free(doms);
            }
        EVP_PKEY_free(key);
        for (size_t i = 0; i < n_orders; i++)
            free(orders[i]);
        free(orders);
    }
    if (rc) {
        printf("start failed: %s\n", err);
        return 2;
    }
    uv_run(&d.loop, UV_RUN_DEFAULT);
    printf("presented=%d cleaned=%d\n", d.presented, d.cleaned);
    int closed = uv_loop_close(&d.loop);
    printf("loop %s\n", closed == 0 ? "closed clean" : "has open handles");
    for (size_t i = 0; i < d.n_webroots; i++)
        free(d.webroots[i]);
    free(d.webroots);
    return closed == 0 ? (d.failures ? 1 : 0) : 3;
}

int main(void)
{
    if (getenv("CF_ACME_DIRECTORY"))
        return driver();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_next_step),   cmocka_unit_test(test_problem_message),
        cmocka_unit_test(test_token_valid), cmocka_unit_test(test_retry_after),
        cmocka_unit_test(test_parse_time),  cmocka_unit_test(test_cert_id),
        cmocka_unit_test(test_pick_chain),  cmocka_unit_test(test_new_validates),
        cmocka_unit_test(test_transient),   cmocka_unit_test(test_resume_usable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_config.c - typed certbot configuration and its validation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cf.h"
#include "config.h"
#include "inventory.h"
#include "util.h"
#include "vars.h"

#define GV "group_vars/all.yml"

static char err[CF_ERRLEN];

/* Load YAML text as the variables of host h1 (as if from group_vars/all.yml)
 * and type them. */
static int host_from(const char *yaml, struct cf_host_config **out, json_t **hv)
{
    char lerr[CF_ERRLEN];
    *hv = NULL;
    err[0] = 0;
    int rc = cf_yaml_load_string(GV, yaml, hv, lerr);
    if (rc != 0) {
        fprintf(stderr, "yaml: %s\n", lerr);
        return rc;
    }
    if (json_is_null(*hv)) {
        json_decref(*hv);
        *hv = json_object();
    }
    return cf_config_host("h1", *hv, out, err);
}

/* Expect cf_config_host to fail on yaml with exactly msg. */
static void expect_error(const char *yaml, const char *msg)
{
    struct cf_host_config *c = (void *)1;
    json_t *hv;
    int rc = host_from(yaml, &c, &hv);
    if (rc == 0)
        fail_msg("accepted:\n%s", yaml);
    assert_int_equal(rc, CF_EINVAL);
    assert_null(c);
    assert_string_equal(err, msg);
    json_decref(hv);
}

static struct cf_host_config *expect_ok(const char *yaml, json_t **hv)
{
    struct cf_host_config *c = NULL;
    int rc = host_from(yaml, &c, hv);
    if (rc != 0)
        fail_msg("rejected (%d): %s", rc, err);
    assert_non_null(c);
    return c;
}

/* ---- defaults ---------------------------------------------------------- */

static void test_defaults_file_is_compiled_in(void **state)
{
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(cf_read_file("roles/certbot/defaults/main.yml", 1 << 20, &text, &len), 0);
    /* byte for byte: regenerate the block in config.c when the file changes */
    assert_string_equal(cf_config_defaults_yaml, text);
    free(text);
    const json_t *d = cf_config_defaults();
    assert_non_null(d);
    assert_true(json_is_object(d));
    assert_int_equal(json_integer_value(json_object_get(d, "certbot_renewal_days")), 30);
}

static void test_defaults_typed(void **state)
{
    json_t *hv;
    struct cf_host_config *c = expect_ok("{}", &hv);
    assert_string_equal(c->name, "h1");
    assert_string_equal(c->address, "h1");
    assert_int_equal(c->port, 22);
    assert_null(c->user);
    assert_int_equal(c->become, 0);
    assert_int_equal(c->enabled, 1);
    assert_string_equal(c->email, "");
    assert_int_equal(c->renewal_days, 30);
    assert_int_equal(c->warning_days, 14);
    assert_int_equal(c->key_type, CF_KEY_ECDSA);
    assert_int_equal(c->key_size, 256);
    assert_int_equal(c->challenge, CF_CHALLENGE_HTTP01);
    assert_string_equal(c->acme_server, "https://acme-v02.api.letsencrypt.org/directory");
    assert_string_equal(c->webroot.path, "/var/www/letsencrypt");
    assert_string_equal(c->config_dir.path, "/etc/letsencrypt");
    assert_string_equal(c->deploy_hook_dir.path, "/etc/letsencrypt/renewal-hooks/deploy");
    assert_string_equal(c->nginx_certs_dir.path, "/etc/nginx/certs");
    assert_string_equal(c->nginx_snippets_dir.path, "/etc/nginx/snippets");
    assert_string_equal(c->nginx_http_conf.path, "/etc/nginx/conf.d/certfleet-http.conf");
    assert_string_equal(c->http_listen, "80");
    assert_int_equal(c->http_port, 80);
    assert_int_equal(c->https_port, 443);
    assert_int_equal(c->hsts, 0);
    assert_string_equal(c->test_command, "nginx -t");
    assert_string_equal(c->reload_command, "systemctl reload nginx");
    assert_string_equal(c->host_root, "");
    assert_int_equal(c->smtp_port, 25);
    assert_int_equal(c->n_certs, 0);
    assert_int_equal(c->n_services, 0);
    assert_ptr_equal(c->hostvars, hv);
    assert_string_equal(json_string_value(cf_config_var(c, "nginx_conf_dir")), "/etc/nginx");
    cf_config_host_free(c);
    json_decref(hv);
}

/* design.md's group_vars example, as written there. */
static const char *design_example =
    "# group_vars/foxycart-sandbox.yaml\n"
    "certbot_enabled: true\n"
    "certbot_email: operations+letsencrypt@example.com\n"
    "certbot_install_method: apt        # accepted; certfleet needs no certbot on hosts\n"
    "certbot_renewal_days: 31\n"
    "certbot_domains:\n"
    "  - domains: [foxycart-sandbox.example.com, foxycart-sandbox3.example.com]\n"
    "    webroot: /var/www/letsencrypt\n"
    "    cert_name: foxycart-sandbox\n"
    "certbot_services:\n"
    "  - name: foxycart-sandbox\n"
    "    cert_source: foxycart-sandbox\n";

static void test_design_example(void **state)
{
    json_t *hv;
    struct cf_host_config *c = expect_ok(design_example, &hv);
    assert_string_equal(c->email, "operations+letsencrypt@example.com");
    assert_int_equal(c->renewal_days, 31);
    assert_int_equal(c->n_certs, 1);
    assert_string_equal(c->certs[0].cert_name, "foxycart-sandbox");
    assert_int_equal(c->certs[0].n_domains, 2);
    assert_string_equal(c->certs[0].domains[0], "foxycart-sandbox.example.com");
    assert_string_equal(c->certs[0].domains[1], "foxycart-sandbox3.example.com");
    assert_string_equal(c->certs[0].webroot.path, "/var/www/letsencrypt");
    assert_string_equal(c->certs[0].pos.file, GV);
    assert_int_equal(c->certs[0].pos.line, 7);
    assert_int_equal(c->n_services, 1);
    assert_string_equal(c->services[0].name, "foxycart-sandbox");
    assert_string_equal(c->services[0].cert_source, "foxycart-sandbox");
    cf_config_host_free(c);
    json_decref(hv);
}

static void test_host_root_joins_every_path(void **state)
{
    json_t *hv;
    struct cf_host_config *c = expect_ok("certfleet_host_root: /tmp/fleet/h1/\n"
                                         "certbot_domains:\n"
                                         "  - domains: [A.Example.COM, a.example.com]\n"
                                         "  - domains: [b.example.com]\n"
                                         "    webroot: /srv/b\n",
                                         &hv);
    assert_string_equal(c->host_root, "/tmp/fleet/h1");
    assert_string_equal(c->nginx_certs_dir.path, "/tmp/fleet/h1/etc/nginx/certs");
    assert_string_equal(c->nginx_certs_dir.raw, "/etc/nginx/certs");
    assert_string_equal(c->config_dir.path, "/tmp/fleet/h1/etc/letsencrypt");
    assert_string_equal(c->nginx_http_conf.path,
                        "/tmp/fleet/h1/etc/nginx/conf.d/certfleet-http.conf");
    assert_string_equal(c->webroot.path, "/tmp/fleet/h1/var/www/letsencrypt");
    /* entry without webroot: certbot_webroot; names folded and de-duplicated;
     * cert_name defaults to the first domain */
    assert_string_equal(c->certs[0].webroot.path, "/tmp/fleet/h1/var/www/letsencrypt");
    assert_int_equal(c->certs[0].n_domains, 1);
    assert_string_equal(c->certs[0].domains[0], "a.example.com");
    assert_string_equal(c->certs[0].cert_name, "a.example.com");
    assert_string_equal(c->certs[1].webroot.path, "/tmp/fleet/h1/srv/b");
    assert_string_equal(c->certs[1].webroot.raw, "/srv/b");
    cf_config_host_free(c);
    json_decref(hv);
}

static void test_connection_and_coercion(void **state)
{
    json_t *hv;
    /* INI inventories and -e k=v hand over strings: "2222", "yes" */
    struct cf_host_config *c = expect_ok("ansible_host: 127.0.0.7\n"
                                         "ansible_port: \"2222\"\n"
                                         "ansible_user: deploy\n"
                                         "ansible_ssh_private_key_file: /home/me/.ssh/id_ed25519\n"
                                         "ansible_become: \"yes\"\n"
                                         "certbot_http_listen: 8080\n"
                                         "certbot_hsts: on\n"
                                         "certbot_renewal_days: \"20\"\n",
                                         &hv);
    assert_string_equal(c->address, "127.0.0.7");
    assert_int_equal(c->port, 2222);
    assert_string_equal(c->user, "deploy");
    assert_string_equal(c->private_key_file, "/home/me/.ssh/id_ed25519");
    assert_int_equal(c->become, 1);
    assert_string_equal(c->http_listen, "8080");
    assert_int_equal(c->hsts, 1);
    assert_int_equal(c->renewal_days, 20);
    cf_config_host_free(c);
    json_decref(hv);
}

static void test_templates_rendered(void **state)
{
    json_t *hv;
    struct cf_host_config *c = expect_ok("admin: ops@example.com\n"
                                         "base: shop.example.com\n"
                                         "certbot_email: \"{{ admin }}\"\n"
                                         "certbot_webroot: \"{{ nginx_conf_dir }}/acme\"\n"
                                         "certbot_domains:\n"
                                         "  - domains: [\"{{ base }}\", \"www.{{ base }}\"]\n",
                                         &hv);
    assert_string_equal(c->email, "ops@example.com");
    assert_string_equal(c->webroot.raw, "/etc/nginx/acme");
    assert_string_equal(c->certs[0].domains[1], "www.shop.example.com");
    cf_config_host_free(c);
    json_decref(hv);
    /* a rendered value is validated like a literal one, at the template's place */
    expect_error("bad: \"x y\"\ncertbot_domains:\n  - domains: [\"{{ bad }}.example.com\"]\n",
                 GV ":3:15: certbot_domains[0].domains[0]: invalid domain name "
                    "'x y.example.com': ' ' is not allowed (use letters, digits, '-' and '.')");
}

/* ---- types and ranges -------------------------------------------------- */

static void test_wrong_types(void **state)
{
    expect_error("certbot_renewal_days: soon\n",
                 GV ":1:23: certbot_renewal_days: expected an integer, got str 'soon'");
    expect_error("certbot_enabled: maybe\n",
                 GV ":1:18: certbot_enabled: expected true or false, got str 'maybe'");
    expect_error("certbot_email: [a@example.com]\n",
                 GV ":1:16: certbot_email: expected a string, got list");
    expect_error("certbot_domains: shop.example.com\n",
                 GV ":1:18: certbot_domains: expected a list of entries ('- domains: [...]'), "
                    "got str 'shop.example.com'");
    expect_error("certbot_domains:\n  - shop.example.com\n",
                 GV ":2:5: certbot_domains[0]: expected a mapping with 'domains' (and optionally "
                    "cert_name, webroot), got str 'shop.example.com'");
    expect_error("certbot_domains:\n  - domains: shop.example.com\n",
                 GV ":2:14: certbot_domains[0].domains: expected a list of domain names, got str "
                    "'shop.example.com'");
    expect_error("certbot_domains:\n  - domains: [a.example.com, 42]\n",
                 GV ":2:30: certbot_domains[0].domains[1]: expected a domain name (a string), "
                    "got int 42");
    expect_error("certbot_domains:\n  - domains: []\n",
                 GV ":2:14: certbot_domains[0].domains: is empty; list at least one domain name");
    expect_error("certbot_domains:\n  - cert_name: x\n",
                 GV ":2:5: certbot_domains[0]: missing 'domains' (a list of names to certify)");
    expect_error("certbot_services: {name: a}\n",
                 GV ":1:19: certbot_services: expected a list of entries ('- name: ...'), got "
                    "dict");
    expect_error("ansible_port: ssh\n", GV ":1:15: ansible_port: expected a port number, got "
                                           "str 'ssh'");
}

static void test_ranges(void **state)
{
    expect_error("certbot_renewal_days: 90\n",
                 GV ":1:23: certbot_renewal_days: 90 is out of range; use 1 to 89 (certificates "
                    "last 90 days)");
    expect_error("certbot_renewal_days: 0\n",
                 GV ":1:23: certbot_renewal_days: 0 is out of range; use 1 to 89 (certificates "
                    "last 90 days)");
    expect_error("certbot_https_port: 70000\n",
                 GV ":1:21: certbot_https_port: 70000 is out of range; use 1 to 65535");
    expect_error("ansible_port: 0\n", GV ":1:15: ansible_port: 0 is out of range; use 1 to 65535");
}

static void test_position_fallback(void **state)
{
    /* values built without a file (e.g. a caller's own object) */
    json_t *hv = json_pack("{s:s}", "certbot_renewal_days", "soon");
    struct cf_host_config *c = NULL;
    assert_int_equal(cf_config_host("web1", hv, &c, err), CF_EINVAL);
    assert_string_equal(err, "host 'web1': variable 'certbot_renewal_days': expected an "
                             "integer, got str 'soon'");
    json_decref(hv);
}

/* ---- unknown names ----------------------------------------------------- */

static void test_unknown_keys(void **state)
{
    expect_error("certbot_domains:\n  - domains: [shop.example.com]\n    cert_nmae: shop\n",
                 GV ":3:16: certbot_domains[0]: unknown key 'cert_nmae'; did you mean "
                    "'cert_name'? (known keys: domains, cert_name, webroot, challenge, key_type, "
                    "key_size)");
    expect_error("certbot_domains:\n  - domains: [shop.example.com]\n    color: blue\n",
                 GV ":3:12: certbot_domains[0]: unknown key 'color' (known keys: domains, "
                    "cert_name, webroot, challenge, key_type, key_size)");
    expect_error("certbot_domains:\n  - domains: [shop.example.com]\n"
                 "certbot_services:\n  - name: shop\n    cert_sorce: shop.example.com\n",
                 GV ":5:17: certbot_services[0]: unknown key 'cert_sorce'; did you mean "
                    "'cert_source'? (known keys: name, cert_source)");
    expect_error("certbot_renewal_dyas: 20\n",
                 GV ":1:23: unknown variable 'certbot_renewal_dyas'; did you mean "
                    "'certbot_renewal_days'? (see roles/certbot/defaults/main.yml for the "
                    "variables certfleet reads)");
    expect_error("certbot_colour: blue\n",
                 GV ":1:17: unknown variable 'certbot_colour' (see "
                    "roles/certbot/defaults/main.yml for the variables certfleet reads)");
}

static void test_suggest(void **state)
{
    static const char *const c[] = {"domains", "cert_name", "webroot"};
    assert_string_equal(cf_config_suggest("cert_nmae", c, 3), "cert_name");
    assert_string_equal(cf_config_suggest("domain", c, 3), "domains");
    assert_string_equal(cf_config_suggest("web_root", c, 3), "webroot");
    assert_null(cf_config_suggest("color", c, 3));
    assert_null(cf_config_suggest("x", c, 3));
}

/* ---- domain names ------------------------------------------------------ */

static void domain_ok(const char *name, int wildcard)
{
    if (cf_config_check_domain(name, wildcard, err) != 0)
        fail_msg("'%s' rejected: %s", name, err);
}

static void domain_bad(const char *name, int wildcard, const char *msg)
{
    if (cf_config_check_domain(name, wildcard, err) == 0)
        fail_msg("'%s' accepted", name);
    assert_string_equal(err, msg);
}

static void test_domain_names(void **state)
{
    char long_label[80], long_name[400];
    domain_ok("example.com", 0);
    domain_ok("foxycart-sandbox3.example.com", 0);
    domain_ok("WWW.Example.COM", 0);
    domain_ok("xn--bcher-kva.example", 0);
    domain_ok("h1.fleet.test", 0);
    domain_ok("*.example.com", 1);
    domain_bad("$(touch /tmp/pwned)", 0,
               "invalid domain name '$(touch /tmp/pwned)': '$' is not allowed (use letters, "
               "digits, '-' and '.')");
    domain_bad("shop\".example.com", 0,
               "invalid domain name 'shop\".example.com': '\"' is not allowed (use letters, "
               "digits, '-' and '.')");
    domain_bad("shop'.example.com", 0,
               "invalid domain name 'shop\\'.example.com': '\\'' is not allowed (use letters, "
               "digits, '-' and '.')");
    domain_bad("a.example.com\nserver_name x", 0,
               "invalid domain name 'a.example.com\\nserver_name x': '\\n' is not allowed (use "
               "letters, digits, '-' and '.')");
    domain_bad("b\xc3\xbc"
               "cher.example",
               0,
               "invalid domain name 'b\\xc3\\xbccher.example': non-ASCII characters are not "
               "allowed; write the name in its punycode form (xn--...)");
    domain_bad("", 0, "invalid domain name '': it is empty");
    domain_bad("example.com.", 0, "invalid domain name 'example.com.': remove the trailing '.'");
    domain_bad("a..example.com", 0,
               "invalid domain name 'a..example.com': empty label (two dots in a row, or a "
               "leading dot)");
    domain_bad("-a.example.com", 0,
               "invalid domain name '-a.example.com': label '-a' starts or ends with '-'");
    domain_bad("localhost", 0,
               "invalid domain name 'localhost': not a fully qualified name (a CA issues only "
               "for names like 'www.example.com')");
    domain_bad("192.168.1.10", 0,
               "invalid domain name '192.168.1.10': looks like an IP address; give a DNS name");
    domain_bad("*.example.com", 0,
               "invalid domain name '*.example.com': a wildcard needs the dns-01 challenge; set "
               "challenge: dns-01 (and certbot_dns_hook)");
    domain_bad("www.*.example.com", 1,
               "invalid domain name 'www.*.example.com': '*' is allowed only as the whole "
               "leftmost label ('*.example.com')");
    domain_bad("*www.example.com", 1,
               "invalid domain name '*www.example.com': '*' is allowed only as the whole "
               "leftmost label ('*.example.com')");
    domain_bad("*.com", 1,
               "invalid domain name '*.com': not a fully qualified name (a CA issues only for "
               "names like 'www.example.com')");
    memset(long_label, 'a', 64);
    long_label[64] = 0;
    snprintf(long_name, sizeof(long_name), "%s.example.com", long_label);
    if (cf_config_check_domain(long_name, 0, err) == 0)
        fail_msg("64-byte label accepted");
    assert_non_null(strstr(err, "is longer than 63 characters"));
    long_label[63] = 0;
    snprintf(long_name, sizeof(long_name), "%s.example.com", long_label);
    domain_ok(long_name, 0);
    /* 4 labels of 63 + 3 dots = 255 > 253 */
    snprintf(long_name, sizeof(long_name), "%s.%s.%s.%s", long_label, long_label, long_label,
             long_label);
    if (cf_config_check_domain(long_name, 0, err) == 0)
        fail_msg("255-byte name accepted");
    assert_non_null(strstr(err, "longer than 253 characters"));
}

static void test_domains_in_config(void **state)
{
    expect_error("certbot_domains:\n  - domains: [\"$(touch /tmp/pwned)\"]\n",
                 GV ":2:15: certbot_domains[0].domains[0]: invalid domain name '$(touch "
                    "/tmp/pwned)': '$' is not allowed (use letters, digits, '-' and '.')");
    expect_error("certbot_domains:\n  - domains: [\"*.example.com\"]\n",
                 GV ":2:15: certbot_domains[0].domains[0]: invalid domain name '*.example.com': "
                    "a wildcard needs the dns-01 challenge; set challenge: dns-01 (and "
                    "certbot_dns_hook)");
    expect_error("certbot_domains:\n  - domains: [\"*.example.com\"]\n    challenge: dns-01\n",
                 GV ":3:16: certbot_dns_hook: the dns-01 challenge needs a hook command; set "
                    "certbot_dns_hook");
    expect_error("certbot_domains:\n  - domains: [a.example.com]\n    challenge: tls-alpn-01\n",
                 GV ":3:16: certbot_domains[0].challenge: unknown challenge 'tls-alpn-01'; use "
                    "'http-01' or 'dns-01'");
    json_t *hv;
    struct cf_host_config *c = expect_ok("certbot_dns_hook: /usr/local/bin/dns-hook\n"
                                         "certbot_domains:\n"
                                         "  - domains: [\"*.example.com\", example.com]\n"
                                         "    challenge: dns-01\n",
                                         &hv);
    assert_string_equal(c->certs[0].cert_name, "example.com");
    assert_int_equal(c->certs[0].challenge, CF_CHALLENGE_DNS01);
    cf_config_host_free(c);
    json_decref(hv);
}

/* ---- keys, e-mail, paths, names --------------------------------------- */

static void test_keys(void **state)
{
    expect_error("certbot_key_size: 2048\n",
                 GV ":1:19: certbot_key_size: key size 2048 does not fit key type 'ecdsa'; use "
                    "256 or 384 (or key type 'rsa')");
    expect_error("certbot_key_type: rsa\ncertbot_key_size: 1024\n",
                 GV ":2:19: certbot_key_size: key size 1024 does not fit key type 'rsa'; use "
                    "2048, 3072 or 4096");
    expect_error("certbot_key_type: ed25519\n",
                 GV ":1:19: certbot_key_type: unknown key type 'ed25519'; use 'ecdsa' or 'rsa'");
    expect_error("certbot_domains:\n  - domains: [a.example.com]\n    key_size: 4096\n",
                 GV ":3:15: certbot_domains[0].key_size: key size 4096 does not fit key type "
                    "'ecdsa'; use 256 or 384 (or key type 'rsa')");
    json_t *hv;
    struct cf_host_config *c = expect_ok("certbot_key_type: rsa\n"
                                         "certbot_domains:\n"
                                         "  - domains: [a.example.com]\n"
                                         "  - domains: [b.example.com]\n"
                                         "    key_type: ecdsa\n"
                                         "  - domains: [c.example.com]\n"
                                         "    key_size: 4096\n",
                                         &hv);
    assert_int_equal(c->key_type, CF_KEY_RSA);
    assert_int_equal(c->key_size, 2048);
    assert_int_equal(c->certs[0].key_type, CF_KEY_RSA);
    assert_int_equal(c->certs[0].key_size, 2048);
    assert_int_equal(c->certs[1].key_type, CF_KEY_ECDSA);
    assert_int_equal(c->certs[1].key_size, 256);
    assert_int_equal(c->certs[2].key_size, 4096);
    cf_config_host_free(c);
    json_decref(hv);
}

static void test_email(void **state)
{
    expect_error("certbot_email: operations at example.com\n",
                 GV ":1:16: certbot_email: invalid e-mail address 'operations at example.com': "
                    "expected local-part@domain");
    expect_error("certbot_email: \"ops;rm@example.com\"\n",
                 GV ":1:16: certbot_email: invalid e-mail address 'ops;rm@example.com': ';' is "
                    "not allowed before '@' (use letters, digits and ._%+-=)");
    expect_error("certbot_email: ops@localhost\n",
                 GV ":1:16: certbot_email: invalid e-mail address 'ops@localhost': invalid "
                    "domain name 'localhost': not a fully qualified name (a CA issues only for "
                    "names like 'www.example.com')");
    expect_error("certbot_notify_email: ops@example.com\n",
                 GV ":1:23: certbot_notify_email: e-mail alerts need an SMTP server; set "
                    "certbot_smtp_server");
}

static void test_paths(void **state)
{
    expect_error("nginx_certs_dir: etc/nginx/certs\n",
                 GV ":1:18: nginx_certs_dir: path 'etc/nginx/certs' is not absolute; give a path "
                    "starting with '/'");
    expect_error("certbot_config_dir: /etc/letsencrypt/../../root\n",
                 GV ":1:21: certbot_config_dir: path '/etc/letsencrypt/../../root' contains a "
                    "'..' component; give the path without it");
    expect_error("certbot_webroot: \"/var/www/le tsencrypt\"\n",
                 GV ":1:18: certbot_webroot: path '/var/www/le tsencrypt' contains ' ', which is "
                    "not allowed in a path (use letters, digits and ._/+@=,:~-)");
    expect_error("certbot_domains:\n  - domains: [a.example.com]\n"
                 "    webroot: \"/var/www/$(id)\"\n",
                 GV ":3:14: certbot_domains[0].webroot: webroot '/var/www/$(id)' contains '$', "
                    "which is not allowed in a path (use letters, digits and ._/+@=,:~-)");
    expect_error("certfleet_host_root: tmp/h1\n",
                 GV ":1:22: certfleet_host_root: certfleet_host_root 'tmp/h1' is not absolute; "
                    "give a path starting with '/'");
    /* "..." and "a..b" are names, not parent references */
    assert_int_equal(cf_config_check_path("/srv/a..b/.../c", "path", err), 0);
    assert_int_equal(cf_config_check_path("/srv/..", "path", err), CF_EINVAL);
    assert_int_equal(cf_config_check_path("/srv/`id`", "path", err), CF_EINVAL);
    assert_int_equal(cf_config_check_path("/srv/a\nb", "path", err), CF_EINVAL);
}

static void test_names_and_commands(void **state)
{
    expect_error("certbot_domains:\n  - domains: [a.example.com]\n    cert_name: ../../etc\n",
                 GV ":3:16: certbot_domains[0].cert_name: cert_name '../../etc' must not start "
                    "with '.'");
    expect_error("certbot_domains:\n  - domains: [a.example.com]\n"
                 "certbot_services:\n  - name: \"shop/x\"\n    cert_source: a.example.com\n",
                 GV ":4:11: certbot_services[0].name: service name 'shop/x': '/' is not allowed "
                    "(use letters, digits, '.', '_' and '-')");
    expect_error("certbot_reload_command: \"\"\n",
                 GV ":1:25: certbot_reload_command: is empty; give a command");
    expect_error("certbot_http_listen: \"80; include /etc/passwd\"\n",
                 GV ":1:22: certbot_http_listen: listen address '80; include /etc/passwd': ';' "
                    "is not allowed (use letters, digits and .:[]_ -)");
    expect_error("certbot_acme_server: http://acme.example.com/dir\n",
                 GV ":1:22: certbot_acme_server: invalid URL 'http://acme.example.com/dir': "
                    "expected https://HOST/...");
    expect_error("certbot_eab_kid: kid-1\n",
                 GV ":1:18: certbot_eab_kid: external account binding needs both "
                    "certbot_eab_kid and certbot_eab_hmac_key");
    expect_error("certbot_smtp_password_env: \"SMTP PASS\"\n",
                 GV ":1:28: certbot_smtp_password_env: environment variable name 'SMTP PASS': "
                    "' ' is not allowed (use letters, digits and _)");
}

/* ---- services and certificates on one host ---------------------------- */

static void test_services(void **state)
{
    expect_error("certbot_domains:\n"
                 "  - domains: [shop.example.com]\n"
                 "    cert_name: shop\n"
                 "certbot_services:\n"
                 "  - name: blog\n"
                 "    cert_source: shpo\n",
                 GV ":6:18: certbot_services[0].cert_source: service 'blog' on host 'h1': "
                    "unknown cert_source 'shpo'; did you mean 'shop'? (cert_names of this host's "
                    "certbot_domains: 'shop')");
    expect_error("certbot_services:\n"
                 "  - name: blog\n"
                 "    cert_source: blog\n",
                 GV ":3:18: certbot_services[0].cert_source: service 'blog' on host 'h1': "
                    "unknown cert_source 'blog' (cert_names of this host's certbot_domains: "
                    "none)");
    expect_error("certbot_domains:\n"
                 "  - domains: [shop.example.com]\n"
                 "    cert_name: shop\n"
                 "certbot_services:\n"
                 "  - name: shop\n"
                 "    cert_source: shop\n"
                 "  - name: shop\n"
                 "    cert_source: shop\n",
                 GV ":7:5: certbot_services[1]: duplicate service name 'shop' on host 'h1', "
                    "first at certbot_services[0] (" GV ":5:5); service names must be unique "
                    "per host");
    expect_error("certbot_services:\n  - cert_source: x\n",
                 GV ":2:5: certbot_services[0]: missing 'name'");
    expect_error("certbot_domains:\n"
                 "  - domains: [a.example.com]\n"
                 "    cert_name: a\n"
                 "  - domains: [b.example.com]\n"
                 "    cert_name: a\n",
                 GV ":4:5: certbot_domains[1]: cert_name 'a' is already used by "
                    "certbot_domains[0] (" GV ":2:5); merge the two entries or give one another "
                    "cert_name");
}

/* ---- fleet ------------------------------------------------------------- */

static struct cf_host_config *load_host(const char *name, const char *file, const char *yaml,
                                        json_t **hv)
{
    char lerr[CF_ERRLEN];
    struct cf_host_config *c = NULL;
    assert_int_equal(cf_yaml_load_string(file, yaml, hv, lerr), 0);
    if (cf_config_host(name, *hv, &c, err) != 0)
        fail_msg("%s: %s", name, err);
    return c;
}

static void test_fleet_shared_certificate(void **state)
{
    json_t *hv[3];
    struct cf_host_config *h[3];
    struct cf_fleet *f = NULL;
    const char *app = "certbot_domains:\n"
                      "  - domains: [app.example.com, www.example.com]\n"
                      "    cert_name: app\n"
                      "certbot_services:\n"
                      "  - name: app\n"
                      "    cert_source: app\n";
    h[0] = load_host("app3", "group_vars/app.yml", app, &hv[0]);
    h[1] = load_host("app4", "group_vars/app.yml", app, &hv[1]);
    h[2] = load_host("web1", "group_vars/web.yml",
                     "certbot_domains:\n"
                     "  - domains: [www.example.com, app.example.com]\n" /* same set */
                     "    cert_name: app\n"
                     "  - domains: [blog.example.com]\n",
                     &hv[2]);
    assert_int_equal(cf_config_fleet(h, 3, &f, err), 0);
    assert_int_equal(f->n_hosts, 3);
    assert_int_equal(f->n_certs, 2);
    /* sorted by name: "app" < "blog.example.com" */
    assert_string_equal(f->certs[0].cert_name, "app");
    assert_int_equal(f->certs[0].n_domains, 2);
    assert_string_equal(f->certs[0].domains[0], "app.example.com");
    assert_int_equal(f->certs[0].n_hosts, 3);
    assert_ptr_equal(f->certs[0].hosts[0], h[0]);
    assert_ptr_equal(f->certs[0].hosts[2], h[2]);
    assert_ptr_equal(f->certs[0].entries[2], &h[2]->certs[0]);
    assert_string_equal(f->certs[1].cert_name, "blog.example.com");
    assert_int_equal(f->certs[1].n_hosts, 1);
    assert_ptr_equal(f->certs[1].hosts[0], h[2]);
    cf_fleet_free(f);

    /* a disabled host is checked but serves nothing */
    h[2]->enabled = 0;
    assert_int_equal(cf_config_fleet(h, 3, &f, err), 0);
    assert_int_equal(f->n_certs, 1);
    assert_int_equal(f->certs[0].n_hosts, 2);
    cf_fleet_free(f);

    for (int i = 0; i < 3; i++) {
        cf_config_host_free(h[i]);
        json_decref(hv[i]);
    }
    assert_int_equal(cf_config_fleet(h, 0, &f, err), CF_ENOENT);
    assert_null(f);
}

static void test_fleet_conflicts(void **state)
{
    json_t *hv[2];
    struct cf_host_config *h[2];
    struct cf_fleet *f = (void *)1;
    h[0] = load_host("h1", "group_vars/web.yml",
                     "certbot_domains:\n"
                     "  - domains: [app.example.com, www.example.com]\n"
                     "    cert_name: app\n",
                     &hv[0]);
    h[1] = load_host("h2", "group_vars/api.yml",
                     "# api\n"
                     "certbot_domains:\n"
                     "  - domains: [app.example.com, api.example.com]\n"
                     "    cert_name: app\n",
                     &hv[1]);
    assert_int_equal(cf_config_fleet(h, 2, &f, err), CF_EINVAL);
    assert_null(f);
    assert_string_equal(err, "group_vars/api.yml:3:5: certificate 'app' has domains "
                             "[api.example.com, app.example.com] on host 'h2' but "
                             "[app.example.com, www.example.com] on host 'h1' "
                             "(group_vars/web.yml:2:5); one cert_name is one certificate: make "
                             "them equal or use another cert_name");
    cf_config_host_free(h[1]);
    json_decref(hv[1]);
    h[1] = load_host("h2", "group_vars/api.yml",
                     "certbot_key_type: rsa\n"
                     "certbot_domains:\n"
                     "  - domains: [www.example.com, app.example.com]\n"
                     "    cert_name: app\n",
                     &hv[1]);
    assert_int_equal(cf_config_fleet(h, 2, &f, err), CF_EINVAL);
    assert_string_equal(err, "group_vars/api.yml:3:5: certificate 'app' has key [rsa 2048] on "
                             "host 'h2' but [ecdsa 256] on host 'h1' (group_vars/web.yml:2:5); "
                             "one cert_name is one certificate: make them equal or use another "
                             "cert_name");
    for (int i = 0; i < 2; i++) {
        cf_config_host_free(h[i]);
        json_decref(hv[i]);
    }
}

/* ---- the bad-input corpus, as plan loads it ----------------------------- */

/* tests/validation/NN_name/: an inventory and an `expect` file (exit:,
 * message: ERE, optional limit:).  Load it the way `plan` does before
 * touching any host: inventory, limit, each host's typed config (role
 * defaults under the hostvars), the fleet.  Returns the exit code plan
 * would give, with the message in err. */
static int plan_validate(const char *dir, const char *limit, char *msg)
{
    char *src = cf_asprintf("%s/hosts.ini", dir);
    const char *srcs[1] = {src};
    struct cf_inventory *inv = NULL;
    struct cf_host_config **hosts = NULL;
    struct cf_fleet *fleet = NULL;
    json_t **hv = NULL;
    size_t *idx = NULL, n = 0, done = 0;
    int code = CF_EXIT_USAGE;

    msg[0] = 0;
    if (cf_inventory_load(srcs, 1, dir, &inv, msg) != 0)
        goto out;
    if (cf_inventory_select(inv, limit, &idx, &n, msg) != 0)
        goto out;
    hosts = cf_xcalloc(n + 1, sizeof(*hosts));
    hv = cf_xcalloc(n + 1, sizeof(*hv));
    for (done = 0; done < n; done++) {
        if (cf_inventory_hostvars(inv, idx[done], cf_config_defaults(), NULL, &hv[done], msg) != 0)
            goto out;
        if (cf_config_host(cf_inventory_host_name(inv, idx[done]), hv[done], &hosts[done], msg) !=
            0) {
            done++;
            goto out;
        }
    }
    if (cf_config_fleet(hosts, n, &fleet, msg) != 0)
        goto out;
    /* the good case: design.md's example, one certificate on both hosts */
    if (strstr(dir, "00_design_example")) {
        if (fleet->n_certs != 1)
            fail_msg("%s: %zu certificates, want 1: group_vars/foxycart-sandbox.yaml was not "
                     "applied to group [foxycart-sandbox]",
                     dir, fleet->n_certs);
        assert_string_equal(fleet->certs[0].cert_name, "foxycart-sandbox");
        assert_int_equal(fleet->certs[0].n_domains, 2);
        assert_int_equal(fleet->certs[0].n_hosts, 2);
        assert_string_equal(hosts[1]->services[0].cert_source, "foxycart-sandbox");
        assert_string_equal(hosts[1]->address, "127.0.0.2");
    }
    code = CF_EXIT_OK;
out:
    cf_fleet_free(fleet);
    for (size_t i = 0; i < done; i++) {
        cf_config_host_free(hosts[i]);
        json_decref(hv[i]);
    }
    free(hosts);
    free(hv);
    free(idx);
    cf_inventory_free(inv);
    free(src);
    return code;
}

/* The value of "key: value" in an expect file, or NULL. */
static char *expect_field(const char *text, const char *key)
{
    size_t kl = strlen(key);
    for (const char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        if (!strncmp(l, key, kl) && l[kl] == ':' && l[kl + 1] == ' ') {
            const char *v = l + kl + 2, *e = strchr(v, '\n');
            size_t len = e ? (size_t)(e - v) : strlen(v);
            char *r = cf_xmalloc(len + 1);
            memcpy(r, v, len);
            r[len] = 0;
            return r;
        }
    }
    return NULL;
}

static void test_validation_case(void **state)
{
    const char *dir = *state;
    char *path = cf_asprintf("%s/expect", dir), *text = NULL, msg[CF_ERRLEN];
    assert_int_equal(cf_read_file(path, 1 << 16, &text, NULL), 0);
    char *want_exit = expect_field(text, "exit");
    char *want_msg = expect_field(text, "message");
    char *limit = expect_field(text, "limit");
    assert_non_null(want_exit);
    int code = plan_validate(dir, limit, msg);
    if (code != atoi(want_exit))
        fail_msg("%s: exit %d, want %s; message: %s", dir, code, want_exit, msg);
    if (want_msg) {
        regex_t re;
        assert_int_equal(regcomp(&re, want_msg, REG_EXTENDED | REG_NOSUB), 0);
        int m = regexec(&re, msg, 0, NULL, 0);
        regfree(&re);
        if (m != 0)
            fail_msg("%s: message\n  %s\ndoes not match\n  %s", dir, msg, want_msg);
        /* where a file is involved, the message says file:line:column */
        if (strstr(want_msg, "yml") && !strstr(msg, ".yml:"))
            fail_msg("%s: no file:line:column in: %s", dir, msg);
    }
    free(want_exit);
    free(want_msg);
    free(limit);
    free(text);
    free(path);
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Each directory of tests/validation/ as one named test. */
static int run_corpus(void)
{
    const char *base = "tests/validation";
    DIR *d = opendir(base);
    struct dirent *e;
    char **dirs = NULL;
    size_t n = 0;
    if (!d) {
        fprintf(stderr, "cannot open %s (run from the repository root)\n", base);
        return 1;
    }
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        dirs = cf_xrealloc(dirs, (n + 1) * sizeof(*dirs));
        dirs[n++] = cf_asprintf("%s/%s", base, e->d_name);
    }
    closedir(d);
    qsort(dirs, n, sizeof(*dirs), cmp_names);
    struct CMUnitTest *t = cf_xcalloc(n + 1, sizeof(*t));
    for (size_t i = 0; i < n; i++) {
        t[i].name = dirs[i];
        t[i].test_func = test_validation_case;
        t[i].initial_state = dirs[i];
    }
    int rc = _cmocka_run_group_tests("validation corpus", t, n, NULL, NULL);
    if (n < 13) {
        fprintf(stderr, "only %zu validation cases\n", n);
        rc++;
    }
    for (size_t i = 0; i < n; i++)
        free(dirs[i]);
    free(dirs);
    free(t);
    return rc;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_file_is_compiled_in),
        cmocka_unit_test(test_defaults_typed),
        cmocka_unit_test(test_design_example),
        cmocka_unit_test(test_host_root_joins_every_path),
        cmocka_unit_test(test_connection_and_coercion),
        cmocka_unit_test(test_templates_rendered),
        cmocka_unit_test(test_wrong_types),
        cmocka_unit_test(test_ranges),
        cmocka_unit_test(test_position_fallback),
        cmocka_unit_test(test_unknown_keys),
        cmocka_unit_test(test_suggest),
        cmocka_unit_test(test_domain_names),
        cmocka_unit_test(test_domains_in_config),
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_email),
        cmocka_unit_test(test_paths),
        cmocka_unit_test(test_names_and_commands),
        cmocka_unit_test(test_services),
        cmocka_unit_test(test_fleet_shared_certificate),
        cmocka_unit_test(test_fleet_conflicts),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    rc += run_corpus();
    cf_vars_reset();
    return rc;
}

/*
 * config.h - the typed certbot configuration of each host and of the fleet.
 *
 * cf_config_host() turns one host's merged variables (the inventory's
 * hostvars: group_vars, host_vars, -e) plus the role defaults
 * (roles/certbot/defaults/main.yml, compiled in) into a struct with every
 * value checked and typed; cf_config_fleet() checks what only the whole
 * fleet can say (one cert_name, one domain set) and builds the set of
 * certificates to issue, each once, with the hosts that serve it.
 *
 * Both run before any host is touched.  A bad value yields CF_EINVAL and
 * one line in err: "file:line:column: what is wrong" when the value came
 * from a file (positions from vars.h), else "host 'h1': variable 'x': ...".
 * Callers print err and exit 2 (CF_EXIT_USAGE).
 *
 * Paths: every absolute path certfleet touches on a host is returned twice:
 * `path` already joined with certfleet_host_root (what to open, stat, link)
 * and `raw` as the user wrote it (for messages and for content that must
 * look the same on every host).  Both pass the remote path check (absolute,
 * [A-Za-z0-9._/+@=,:~-], no "..").
 *
 * Ownership: a cf_host_config owns every string and array in it, except
 * `hostvars`, which is borrowed and must outlive it.  A cf_fleet owns its
 * certificate array but only borrows the host configs it points at; free
 * the fleet before the hosts.  Not thread-safe (the compiled-in defaults
 * are parsed once into a process-wide cache).
 */
#ifndef CF_CONFIG_H
#define CF_CONFIG_H

#include <jansson.h>
#include <stddef.h>

#include "cf.h"
#include "vars.h"

enum cf_key_type { CF_KEY_ECDSA, CF_KEY_RSA };
enum cf_challenge { CF_CHALLENGE_HTTP01, CF_CHALLENGE_DNS01 };

/* "ecdsa"/"rsa", "http-01"/"dns-01". */
const char *cf_key_type_name(enum cf_key_type t);
const char *cf_challenge_name(enum cf_challenge c);

/* An absolute path on a host. */
struct cf_cfg_path {
    char *path; /* joined with certfleet_host_root: the one to use */
    char *raw;  /* as configured, without the host root */
};

/* One entry of certbot_domains. */
struct cf_cert_entry {
    char *cert_name; /* defaults to the first domain ("*." stripped) */
    char **domains;  /* lowercase, duplicates removed, order kept */
    size_t n_domains;
    struct cf_cfg_path webroot;  /* entry's webroot, else certbot_webroot */
    enum cf_challenge challenge; /* entry's, else certbot_challenge */
    enum cf_key_type key_type;   /* entry's, else certbot_key_type */
    int key_size;                /* bits (rsa) or curve size (ecdsa: 256, 384) */
    struct cf_pos pos;           /* where the entry is written; file NULL if unknown */
};

/* One entry of certbot_services. */
struct cf_service {
    char *name;        /* [A-Za-z0-9_][A-Za-z0-9._-]*: part of file names */
    char *cert_source; /* a cert_name of the same host's certbot_domains */
    struct cf_pos pos;
};

struct cf_host_config {
    char *name;             /* inventory name */
    const json_t *hostvars; /* borrowed: templates look values up here */

    /* connection */
    char *address;          /* ansible_host, else the inventory name */
    int port;               /* ansible_port, default 22 */
    char *user;             /* ansible_user; NULL = the local user */
    char *private_key_file; /* ansible_ssh_private_key_file; NULL if unset */
    int become;             /* ansible_become: run remote ops under sudo -n */

    /* certbot_* and friends, in the order of defaults/main.yml */
    int enabled;
    char *email;          /* "" when unset */
    char *install_method; /* accepted, unused */
    int renewal_days;     /* 1..89 */
    int warning_days;     /* 0..365 */
    enum cf_key_type key_type;
    int key_size;
    int reuse_key;
    char *key_owner;
    char *key_group;
    enum cf_challenge challenge;
    char *dns_hook; /* "" when unset; required for dns-01 */
    int dns_propagation_seconds;
    char *acme_server;    /* directory URL */
    char *acme_ca_bundle; /* controller-side file; "" = system trust */
    char *eab_kid;        /* "" when unset */
    char *eab_hmac_key;   /* secret: wiped on free */
    char *preferred_chain;

    char *host_root; /* certfleet_host_root as given ("" or absolute, no trailing /) */
    struct cf_cfg_path webroot;
    struct cf_cfg_path config_dir;
    struct cf_cfg_path deploy_hook_dir;
    struct cf_cfg_path nginx_conf_dir;
    struct cf_cfg_path nginx_certs_dir;
    struct cf_cfg_path nginx_snippets_dir;
    struct cf_cfg_path nginx_http_conf;

    int http_redirect;
    char *http_listen; /* nginx listen argument, e.g. "80" or "127.0.0.5:80" */
    int http_port;     /* where the controller checks tokens over HTTP */
    int https_port;    /* where the controller probes TLS */
    int hsts;
    long long hsts_max_age;
    char *test_command;
    char *reload_command;

    char *notify_email; /* "" when unset */
    char *notify_from;
    char *smtp_server;
    int smtp_port;
    int smtp_starttls;
    char *smtp_user;
    char *smtp_password_env; /* name of an environment variable, or "" */
    char *smtp_ca_bundle;    /* controller-side CA file for SMTP TLS, or "" */
    char *notify_webhook;    /* http(s) URL or "" */

    struct cf_cert_entry *certs;
    size_t n_certs;
    struct cf_service *services;
    size_t n_services;
};

/* One certificate of the fleet: issued once, pushed to every host in hosts. */
struct cf_fleet_cert {
    const char *cert_name; /* borrowed from the first host's entry */
    char **domains;        /* owned array of borrowed strings, in the first entry's order */
    size_t n_domains;
    enum cf_key_type key_type;
    int key_size;
    enum cf_challenge challenge;
    const char *acme_server;              /* borrowed */
    struct cf_host_config **hosts;        /* owned array of borrowed hosts */
    const struct cf_cert_entry **entries; /* entries[i] is hosts[i]'s entry */
    size_t n_hosts;
};

struct cf_fleet {
    struct cf_fleet_cert *certs; /* sorted by cert_name */
    size_t n_certs;
    struct cf_host_config **hosts; /* owned array of borrowed hosts, as given */
    size_t n_hosts;
};

/* Build the typed, validated configuration of one host from its merged
 * variables.  Every rule is checked before anything is returned, so a
 * caller never acts on a half-valid host; the first problem found is
 * reported.  Rules: types, ranges, unknown certbot_* variables and unknown
 * keys in certbot_domains/certbot_services entries (with a did-you-mean),
 * domain names (RFC 1035; "*." only as the whole leftmost label and only
 * with dns-01), key type and size, e-mail addresses, paths (safe charset,
 * absolute, no ".."), cert_source naming a cert_name of this host, unique
 * service and cert names on the host.
 * *out is owned by the caller (cf_config_host_free); NULL on error.
 * Returns 0, CF_EINVAL (message in err) or CF_ENOMEM. */
int cf_config_host(const char *host, const json_t *hostvars, struct cf_host_config **out,
                   char *err);

void cf_config_host_free(struct cf_host_config *c);

/* Fleet-wide checks and the certificate set: every distinct cert_name of
 * the enabled hosts once, with its domain set and the hosts serving it.
 * Errors: the same cert_name with a different domain set, key type, key
 * size, challenge or ACME server on two hosts (both hosts and positions
 * named); no hosts at all.  hosts are borrowed and must outlive *out.
 * Returns 0, CF_EINVAL (message in err), CF_ENOENT (n == 0). */
int cf_config_fleet(struct cf_host_config **hosts, size_t n, struct cf_fleet **out, char *err);

void cf_fleet_free(struct cf_fleet *f);

/* The value of a variable as a template sees it: the host's own value,
 * else the role default, else NULL.  Borrowed. */
const json_t *cf_config_var(const struct cf_host_config *c, const char *name);

/* The role defaults (roles/certbot/defaults/main.yml as compiled in), a
 * borrowed object valid for the life of the process.  NULL only if the
 * compiled-in text fails to parse (a build bug; the unit test checks it). */
const json_t *cf_config_defaults(void);

/* The compiled-in text of roles/certbot/defaults/main.yml. */
extern const char cf_config_defaults_yaml[];

/* Check a DNS name as certfleet accepts it in certbot_domains: lowercase
 * letters after folding, RFC 1035 labels of 1..63 bytes, at most 253 bytes,
 * at least two labels, no IP address; "*." only as the whole leftmost label
 * and only when allow_wildcard.  Returns 0 or CF_EINVAL with the reason
 * (no position) in err. */
int cf_config_check_domain(const char *name, int allow_wildcard, char *err);

/* The remote path rule of remote.h (cf_remote_check_path) applied to a
 * configured path: absolute, [A-Za-z0-9._/+@=,:~-], no ".." component,
 * at most 4096 bytes.  what names the value in the message. */
int cf_config_check_path(const char *path, const char *what, char *err);

/* Closest of candidates[0..n) to word by edit distance (transpositions
 * count once), or NULL when none is close enough to suggest. */
const char *cf_config_suggest(const char *word, const char *const *candidates, size_t n);

#endif

/*
 * notify.h - alerts grouped per run, in the seed guide's formats, sent by
 * e-mail (SMTP through libcurl) and to a webhook (JSON POST), both on the
 * caller's loop through http.h.
 *
 * A run collects events (SUCCESS renewals, ERROR failures, WARNING expiry)
 * into one cf_notify and sends them once at the end, so a run that renews
 * 40 certificates sends one mail listing them.  A failure to notify never
 * fails the run: cf_notify_send() reports it as text for the run report.
 *
 * The SMTP password comes from an environment variable whose NAME is
 * configured (certbot_smtp_password_env); a password in the inventory is a
 * configuration error.
 */
#ifndef CF_NOTIFY_H
#define CF_NOTIFY_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "cf.h"
#include "http.h"
#include "util.h"

/* In severity order: a smaller value is more severe. */
enum cf_event_kind { CF_EVENT_ERROR = 0, CF_EVENT_WARNING, CF_EVENT_SUCCESS };

/* What went wrong, to fit the troubleshooting checklist of an ERROR. */
enum cf_failure_kind {
    CF_FAIL_OTHER = 0,
    CF_FAIL_CHALLENGE,  /* the CA could not fetch the HTTP-01 token */
    CF_FAIL_DNS,        /* NXDOMAIN / DNS problem / DNS-01 hook */
    CF_FAIL_RATE_LIMIT, /* the CA's rate limit */
    CF_FAIL_NGINX_TEST, /* nginx -t failed (rolled back) */
    CF_FAIL_SSH,        /* the host was unreachable over SSH */
};

struct cf_notify_event {
    enum cf_event_kind kind;
    char host[256];
    char domain[256];
    char cert_name[256];
    int64_t time;                 /* when it happened, unix seconds */
    int64_t prev_expiry;          /* SUCCESS: the replaced certificate's notAfter (0 = none) */
    int64_t new_expiry;           /* SUCCESS: the new notAfter */
    int reloaded;                 /* SUCCESS: nginx was reloaded */
    int64_t expiry;               /* ERROR: current notAfter (0 = none); WARNING: notAfter */
    int days;                     /* WARNING: days left */
    enum cf_failure_kind failure; /* ERROR */
    char webroot[256];            /* ERROR checklist: the webroot ("" = /var/www/letsencrypt) */
    char *error_output;           /* ERROR: owned, capped at 16 KiB */
};

typedef struct cf_notify cf_notify;

/* A new, empty collector; never NULL (aborts on out-of-memory). */
cf_notify *cf_notify_new(void);
/* Free the collector and its events (not while a send is in flight). */
void cf_notify_free(cf_notify *n);

/* Add events.  Strings are copied; NULL is "".  time 0 = now. */
void cf_notify_add_success(cf_notify *n, const char *host, const char *domain,
                           const char *cert_name, int64_t prev_expiry, int64_t new_expiry,
                           int reloaded, int64_t time);
/* failure < 0: guess it from the error text (cf_notify_classify_failure). */
void cf_notify_add_error(cf_notify *n, const char *host, const char *domain, const char *cert_name,
                         int64_t current_expiry, const char *error_output, int failure,
                         const char *webroot, int64_t time);
void cf_notify_add_warning(cf_notify *n, const char *host, const char *domain,
                           const char *cert_name, int days, int64_t not_after, int64_t time);

size_t cf_notify_count(const cf_notify *n);
const struct cf_notify_event *cf_notify_event_at(const cf_notify *n, size_t i);

/* Pure: guess the failure kind from error text (ACME problem types,
 * "NXDOMAIN", "rateLimited", "nginx: ... test failed", ssh errors). */
enum cf_failure_kind cf_notify_classify_failure(const char *error_output);

/* Pure formatting (append to out; 0 or CF_ENOMEM).  `now` is used for
 * "(N days remaining)" and when the run has no event time. */
/* One event's subject: "[SUCCESS] <host> – Cert renewed for <domain>",
 * "[ERROR] <host> – Cert renewal FAILED for <domain>", "[WARNING] <host> –
 * Certificate expires in N days" (U+2013 en dash, UTF-8). */
int cf_notify_event_subject(const struct cf_notify_event *e, struct cf_buf *out);
/* One event's body, as the seed guide's alert texts. */
int cf_notify_event_body(const struct cf_notify_event *e, int64_t now, struct cf_buf *out);
/* The run's subject: the single event's subject, or "[<most severe>]
 * certfleet – 1 renewal FAILED, 3 certs renewed, 2 certificates expiring". */
int cf_notify_subject(const cf_notify *n, struct cf_buf *out);
/* The run's body: a summary, then every event (most severe first) with
 * its own subject line and body, separated by rules. */
int cf_notify_body(const cf_notify *n, int64_t now, struct cf_buf *out);
/* The webhook document: {"source":"certfleet","subject","text","events":[
 * {"type","subject","host","domain","cert_name","time",...}]}; caller frees. */
char *cf_notify_json(const cf_notify *n, int64_t now);

struct cf_notify_config {
    /* e-mail (certbot_notify_email etc.); to == NULL: no mail */
    const char *to;                /* comma-separated recipients */
    const char *from;              /* default "certfleet@<hostname>" */
    const char *smtp_server;       /* host name; default "localhost" */
    int smtp_port;                 /* default 25 (465 with smtp_starttls == 2) */
    int smtp_starttls;             /* 0 off, 1 required (CURLUSESSL_ALL), 2 implicit TLS (smtps) */
    const char *smtp_user;         /* NULL: no AUTH */
    const char *smtp_password_env; /* NAME of the environment variable holding the password */
    const char *smtp_ca_bundle;    /* CA file for STARTTLS/TLS; NULL = system store */
    /* webhook (certbot_notify_webhook); NULL: none */
    const char *webhook_url;
    const char *webhook_ca_bundle;
    long timeout_ms; /* per destination; 0 = 30 s */
};

/*
 * Read the settings from variables (strings borrowed from vars; keep it
 * alive while cfg is used):
 *   certbot_notify_email, certbot_notify_from, certbot_smtp_server,
 *   certbot_smtp_port, certbot_smtp_starttls (bool, or "tls" for implicit
 *   TLS), certbot_smtp_user, certbot_smtp_password_env,
 *   certbot_smtp_ca_bundle, certbot_notify_webhook, certbot_notify_timeout.
 * Returns 0, or CF_EINVAL with err naming the variable (wrong type, or a
 * clear-text certbot_smtp_password, which is refused).
 */
int cf_notify_config_from_vars(const json_t *vars, struct cf_notify_config *cfg, char *err);

/* The complete RFC 5322 message (CRLF line ends, encoded subject) as it is
 * handed to the SMTP server. */
int cf_notify_mail(const cf_notify *n, const struct cf_notify_config *cfg, int64_t now,
                   struct cf_buf *out);

/*
 * Send the run's alerts to every configured destination concurrently.  cb
 * runs once when all are done: status 0 when every destination accepted,
 * else the first failure's CF_E*; report holds one line per destination
 * ("e-mail to a@b via smtp://h:25: sent" / "...: failed: <why>").  Nothing
 * is sent (cb still runs, from the loop) when there are no events or no
 * destinations.  n, h and cfg must stay alive until cb; h must run on
 * loop.  Returns 0 or CF_EINVAL (cb will not run).
 */
typedef void (*cf_notify_cb)(int status, const char *report, void *arg);
int cf_notify_send(cf_notify *n, uv_loop_t *loop, cf_http *h, const struct cf_notify_config *cfg,
                   cf_notify_cb cb, void *arg);

/* Send the events (if any) to the destinations of the first of vars
 * (merged host variables) that names one (certbot_notify_email or
 * certbot_notify_webhook), on a private loop run to the end: for commands
 * whose own loop has finished.  report gets one line per destination, or
 * why nothing was sent.  Returns 0 when sent or there was nothing to send,
 * else a CF_E* code; a caller reports it and never fails its run on it. */
int cf_notify_deliver(cf_notify *n, const json_t *const *vars, size_t nvars, char *report,
                      size_t len);

#endif

/*
 * report.h - what a run did, per host and per certificate, and how it is
 * shown: a line per task and Ansible's recap on a terminal or in a log, or
 * one JSON document for CI (--output json).
 *
 * The report owns every string added to it (they are copied).
 */
#ifndef CF_REPORT_H
#define CF_REPORT_H

#include <stdint.h>
#include <stdio.h>
#include <jansson.h>

enum cf_task_status { CF_TASK_OK, CF_TASK_CHANGED, CF_TASK_FAILED, CF_TASK_SKIPPED };

struct cf_task_report {
    char *phase; /* "prepare", "issue", "push", "verify" */
    char *name;
    enum cf_task_status status;
    char *msg;
    char *diff; /* unified diff, or NULL */
    uint64_t ms;
};

struct cf_host_report {
    char *name;
    char *group; /* first group, for status-like views */
    int unreachable;
    char *error; /* why unreachable or failed, or NULL */
    struct cf_task_report *tasks;
    size_t n_tasks;
    int ok, changed, failed, skipped;
    int done;
};

struct cf_cert_report {
    char *name;
    char *domains;  /* comma-joined */
    char *decision; /* "none", "issue", "renew", "reissue", "refused" */
    char *reason;
    int failed;
    int issued;
    char *serial;
    int64_t not_after;
    char *error;
    int hosts_total, hosts_ok, hosts_failed;
};

struct cf_report {
    const char *command;
    int check;
    int diff;
    int64_t started_ms, finished_ms;
    struct cf_host_report *hosts;
    size_t n_hosts;
    struct cf_cert_report *certs;
    size_t n_certs;
    char **notes; /* run-level messages (notification failures, limits) */
    size_t n_notes;
};

void cf_report_init(struct cf_report *r, const char *command, int check, int diff);
void cf_report_release(struct cf_report *r);

/* Add a host (in inventory order) and return its index. */
size_t cf_report_add_host(struct cf_report *r, const char *name, const char *group);
struct cf_host_report *cf_report_host(struct cf_report *r, const char *name);

/* Record one task result on a host; counts follow the status. */
void cf_report_task(struct cf_host_report *h, const char *phase, const char *name,
                    enum cf_task_status st, const char *msg, const char *diff, uint64_t ms);
void cf_report_unreachable(struct cf_host_report *h, const char *error);
void cf_report_host_failed(struct cf_host_report *h, const char *error);

struct cf_cert_report *cf_report_cert(struct cf_report *r, const char *name, const char *domains);
void cf_report_note(struct cf_report *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Print one host's task lines ("changed: [h1] prepare | webroot ...") as it
 * finishes; with colours when color is set. */
void cf_report_print_host(FILE *f, const struct cf_report *r, const struct cf_host_report *h,
                          int color);
/* Certificates section and Ansible's PLAY RECAP. */
void cf_report_print_recap(FILE *f, const struct cf_report *r, int color);
/* The whole run as one JSON object (new reference). */
json_t *cf_report_json(const struct cf_report *r);

/* Exit code for the run (design.md): 1 when any host or certificate failed
 * or was unreachable; with check, 3 when something would change; else 0. */
int cf_report_exit_code(const struct cf_report *r);

/* Totals over hosts. */
void cf_report_totals(const struct cf_report *r, int *ok, int *changed, int *failed,
                      int *unreachable);

#endif

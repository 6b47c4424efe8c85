/*
 * report.c - run results and their text / JSON forms (see report.h).
 */
#include "cf.h"
#include "report.h"
#include "util.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define C_RESET  "\033[0m"
#define C_GREEN  "\033[32m"
#define C_YELLOW "\033[33m"
#define C_RED    "\033[31m"
#define C_CYAN   "\033[36m"

void cf_report_init(struct cf_report *r, const char *command, int check, int diff)
{
    memset(r, 0, sizeof *r);
    r->command = command;
    r->check = check;
    r->diff = diff;
    r->started_ms = cf_now_ms();
}

static void task_release(struct cf_task_report *t)
{
    free(t->phase);
    free(t->name);
    free(t->msg);
    free(t->diff);
}

void cf_report_release(struct cf_report *r)
{
    for (size_t i = 0; i < r->n_hosts; i++) {
        struct cf_host_report *h = &r->hosts[i];
        for (size_t j = 0; j < h->n_tasks; j++)
            task_release(&h->tasks[j]);
        free(h->tasks);
        free(h->name);
        free(h->group);
        free(h->error);
    }
    free(r->hosts);
    for (size_t i = 0; i < r->n_certs; i++) {
        struct cf_cert_report *c = &r->certs[i];
        free(c->name);
        free(c->domains);
        free(c->decision);
        free(c->reason);
        free(c->serial);
        free(c->error);
    }
    free(r->certs);
    for (size_t i = 0; i < r->n_notes; i++)
        free(r->notes[i]);
    free(r->notes);
    memset(r, 0, sizeof *r);
}

size_t cf_report_add_host(struct cf_report *r, const char *name, const char *group)
{
    r->hosts = cf_xrealloc(r->hosts, (r->n_hosts + 1) * sizeof *r->hosts);
    struct cf_host_report *h = &r->hosts[r->n_hosts];
    memset(h, 0, sizeof *h);
    h->name = cf_strdup(name);
    h->group = cf_strdup(group ? group : "ungrouped");
    return r->n_hosts++;
}

struct cf_host_report *cf_report_host(struct cf_report *r, const char *name)
{
    for (size_t i = 0; i < r->n_hosts; i++)
        if (strcmp(r->hosts[i].name, name) == 0)
            return &r->hosts[i];
    return NULL;
}

void cf_report_task(struct cf_host_report *h, const char *phase, const char *name,
                    enum cf_task_status st, const char *msg, const char *diff, uint64_t ms)
{
    h->tasks = cf_xrealloc(h->tasks, (h->n_tasks + 1) * sizeof *h->tasks);
    struct cf_task_report *t = &h->tasks[h->n_tasks++];
    t->phase = cf_strdup(phase);
    t->name = cf_strdup(name);
    t->status = st;
    t->msg = msg && *msg ? cf_strdup(msg) : NULL;
    t->diff = diff && *diff ? cf_strdup(diff) : NULL;
    t->ms = ms;
    switch (st) {
    case CF_TASK_OK:
        h->ok++;
        break;
    case CF_TASK_CHANGED:
        h->changed++;
        break;
    case CF_TASK_FAILED:
        h->failed++;
        break;
    case CF_TASK_SKIPPED:
        h->skipped++;
        break;
    }
}

void cf_report_unreachable(struct cf_host_report *h, const char *error)
{
    h->unreachable = 1;
    if (!h->error)
        h->error = cf_strdup(error);
}

void cf_report_host_failed(struct cf_host_report *h, const char *error)
{
    if (!h->error)
        h->error = cf_strdup(error);
}

struct cf_cert_report *cf_report_cert(struct cf_report *r, const char *name, const char *domains)
{
    for (size_t i = 0; i < r->n_certs; i++)
        if (strcmp(r->certs[i].name, name) == 0)
            return &r->certs[i];
    r->certs = cf_xrealloc(r->certs, (r->n_certs + 1) * sizeof *r->certs);
    struct cf_cert_report *c = &r->certs[r->n_certs++];
    memset(c, 0, sizeof *c);
    c->name = cf_strdup(name);
    c->domains = cf_strdup(domains ? domains : "");
    c->decision = cf_strdup("none");
    return c;
}

void cf_report_note(struct cf_report *r, const char *fmt, ...)
{
    va_list ap;
    char *s = NULL;
    va_start(ap, fmt);
    if (vasprintf(&s, fmt, ap) < 0)
        s = NULL;
    va_end(ap);
    if (!s)
        return;
    r->notes = cf_xrealloc(r->notes, (r->n_notes + 1) * sizeof *r->notes);
    r->notes[r->n_notes++] = s;
}

static const char *status_word(enum cf_task_status st, int check)
{
    switch (st) {
    case CF_TASK_OK:
        return "ok";
    case CF_TASK_CHANGED:
        return check ? "would change" : "changed";
    case CF_TASK_FAILED:
        return "failed";
    case CF_TASK_SKIPPED:
        return "skipped";
    }
    return "?";
}

static const char *status_color(enum cf_task_status st)
{
    switch (st) {
    case CF_TASK_OK:
        return C_GREEN;
    case CF_TASK_CHANGED:
        return C_YELLOW;
    case CF_TASK_FAILED:
        return C_RED;
    case CF_TASK_SKIPPED:
        return C_CYAN;
    }
    return "";
}

void cf_report_print_host(FILE *f, const struct cf_report *r, const struct cf_host_report *h,
                          int color)
{
    for (size_t i = 0; i < h->n_tasks; i++) {
        const struct cf_task_report *t = &h->tasks[i];
        fprintf(f, "%s%s: [%s]%s %s | %s", color ? status_color(t->status) : "",
                status_word(t->status, r->check), h->name, color ? C_RESET : "", t->phase, t->name);
        if (t->msg)
            fprintf(f, " => %s", t->msg);
        fputc('\n', f);
        if (t->diff && r->diff)
            fputs(t->diff, f);
    }
    if (h->unreachable)
        fprintf(f, "%sunreachable: [%s]%s => %s\n", color ? C_RED : "", h->name,
                color ? C_RESET : "", h->error ? h->error : "");
    else if (h->error && !h->failed)
        fprintf(f, "%sfailed: [%s]%s => %s\n", color ? C_RED : "", h->name, color ? C_RESET : "",
                h->error);
}

static void fmt_date(int64_t t, char *out, size_t n)
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(out, n, "%Y-%m-%d %H:%M UTC", &tm);
}

void cf_report_print_recap(FILE *f, const struct cf_report *r, int color)
{
    if (r->n_certs) {
        fprintf(f, "\nCERTIFICATES %s\n", "*************************************************");
        for (size_t i = 0; i < r->n_certs; i++) {
            const struct cf_cert_report *c = &r->certs[i];
            const char *col = c->failed ? C_RED : (c->issued ? C_YELLOW : C_GREEN);
            fprintf(f, "%s%-24s%s %-8s %s", color ? col : "", c->name, color ? C_RESET : "",
                    c->failed ? "failed" : c->decision, c->domains);
            if (c->serial) {
                char d[40];
                fmt_date(c->not_after, d, sizeof d);
                fprintf(f, " serial=%s not_after=%s", c->serial, d);
            }
            if (c->hosts_total)
                fprintf(f, " hosts=%d/%d", c->hosts_ok, c->hosts_total);
            fputc('\n', f);
            if (c->reason && *c->reason)
                fprintf(f, "    %s\n", c->reason);
            if (c->error)
                fprintf(f, "    %serror:%s %s\n", color ? C_RED : "", color ? C_RESET : "",
                        c->error);
        }
    }
    for (size_t i = 0; i < r->n_notes; i++)
        fprintf(f, "note: %s\n", r->notes[i]);
    fprintf(f, "\nPLAY RECAP %s\n", "***************************************************");
    size_t w = 0;
    for (size_t i = 0; i < r->n_hosts; i++)
        if (strlen(r->hosts[i].name) > w)
            w = strlen(r->hosts[i].name);
    for (size_t i = 0; i < r->n_hosts; i++) {
        const struct cf_host_report *h = &r->hosts[i];
        int bad = h->unreachable || h->failed || h->error;
        const char *col = bad ? C_RED : (h->changed ? C_YELLOW : C_GREEN);
        fprintf(f, "%s%-*s%s : ok=%-4d changed=%-4d unreachable=%-4d failed=%-4d skipped=%d\n",
                color ? col : "", (int)w, h->name, color ? C_RESET : "", h->ok, h->changed,
                h->unreachable, h->failed + (h->error && !h->failed && !h->unreachable),
                h->skipped);
    }
}

static json_t *task_json(const struct cf_task_report *t)
{
    json_t *o = json_object();
    json_object_set_new(o, "phase", json_string(t->phase));
    json_object_set_new(o, "task", json_string(t->name));
    json_object_set_new(o, "status", json_string(status_word(t->status, 0)));
    json_object_set_new(o, "changed", json_boolean(t->status == CF_TASK_CHANGED));
    json_object_set_new(o, "msg", t->msg ? json_string(t->msg) : json_null());
    if (t->diff)
        json_object_set_new(o, "diff", json_string(t->diff));
    json_object_set_new(o, "duration_ms", json_integer((json_int_t)t->ms));
    return o;
}

json_t *cf_report_json(const struct cf_report *r)
{
    json_t *root = json_object();
    json_object_set_new(root, "command", json_string(r->command));
    json_object_set_new(root, "check", json_boolean(r->check));
    json_object_set_new(root, "started_ms", json_integer(r->started_ms));
    json_object_set_new(root, "finished_ms", json_integer(r->finished_ms));
    json_t *hosts = json_object();
    for (size_t i = 0; i < r->n_hosts; i++) {
        const struct cf_host_report *h = &r->hosts[i];
        json_t *ho = json_object();
        json_t *tasks = json_array();
        for (size_t j = 0; j < h->n_tasks; j++)
            json_array_append_new(tasks, task_json(&h->tasks[j]));
        json_object_set_new(ho, "tasks", tasks);
        json_object_set_new(ho, "ok", json_integer(h->ok));
        json_object_set_new(ho, "changed", json_integer(h->changed));
        json_object_set_new(ho, "unreachable", json_boolean(h->unreachable));
        json_object_set_new(ho, "failed",
                            json_integer(h->failed + (h->error && !h->failed && !h->unreachable)));
        json_object_set_new(ho, "skipped", json_integer(h->skipped));
        json_object_set_new(ho, "error", h->error ? json_string(h->error) : json_null());
        json_object_set_new(hosts, h->name, ho);
    }
    json_object_set_new(root, "hosts", hosts);
    json_t *certs = json_object();
    for (size_t i = 0; i < r->n_certs; i++) {
        const struct cf_cert_report *c = &r->certs[i];
        json_t *co = json_object();
        json_object_set_new(co, "domains", json_string(c->domains));
        json_object_set_new(co, "decision", json_string(c->decision));
        json_object_set_new(co, "reason", c->reason ? json_string(c->reason) : json_null());
        json_object_set_new(co, "issued", json_boolean(c->issued));
        json_object_set_new(co, "failed", json_boolean(c->failed));
        json_object_set_new(co, "serial", c->serial ? json_string(c->serial) : json_null());
        json_object_set_new(co, "not_after",
                            c->not_after ? json_integer(c->not_after) : json_null());
        json_object_set_new(co, "error", c->error ? json_string(c->error) : json_null());
        json_object_set_new(co, "hosts_total", json_integer(c->hosts_total));
        json_object_set_new(co, "hosts_ok", json_integer(c->hosts_ok));
        json_object_set_new(co, "hosts_failed", json_integer(c->hosts_failed));
        json_object_set_new(certs, c->name, co);
    }
    json_object_set_new(root, "certificates", certs);
    json_t *notes = json_array();
    for (size_t i = 0; i < r->n_notes; i++)
        json_array_append_new(notes, json_string(r->notes[i]));
    json_object_set_new(root, "notes", notes);
    int ok, changed, failed, unreach;
    cf_report_totals(r, &ok, &changed, &failed, &unreach);
    json_t *stats = json_object();
    json_object_set_new(stats, "ok", json_integer(ok));
    json_object_set_new(stats, "changed", json_integer(changed));
    json_object_set_new(stats, "failed", json_integer(failed));
    json_object_set_new(stats, "unreachable", json_integer(unreach));
    json_object_set_new(root, "stats", stats);
    json_object_set_new(root, "exit_code", json_integer(cf_report_exit_code(r)));
    return root;
}

void cf_report_totals(const struct cf_report *r, int *ok, int *changed, int *failed,
                      int *unreachable)
{
    *ok = *changed = *failed = *unreachable = 0;
    for (size_t i = 0; i < r->n_hosts; i++) {
        const struct cf_host_report *h = &r->hosts[i];
        *ok += h->ok;
        *changed += h->changed;
        *failed += h->failed + (h->error && !h->failed && !h->unreachable);
        *unreachable += h->unreachable;
    }
}

int cf_report_exit_code(const struct cf_report *r)
{
    int ok, changed, failed, unreach;
    cf_report_totals(r, &ok, &changed, &failed, &unreach);
    for (size_t i = 0; i < r->n_certs; i++)
        if (r->certs[i].failed)
            failed++;
    if (failed || unreach)
        return CF_EXIT_FAILED;
    if (r->check) {
        if (changed)
            return CF_EXIT_PENDING;
        for (size_t i = 0; i < r->n_certs; i++)
            if (strcmp(r->certs[i].decision, "none") != 0)
                return CF_EXIT_PENDING;
    }
    return CF_EXIT_OK;
}

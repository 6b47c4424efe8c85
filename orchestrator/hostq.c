/*
 * hostq.c - per-host job queues over one SSH session each, under the
 * fleet-wide --forks cap (see hostq.h).
 */
#include "cf.h"
#include "hostq.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

struct job {
    cf_hostq_job_fn fn;
    void *arg;
    struct job *next;
};

enum hstate { H_IDLE, H_WAITING, H_CONNECTING, H_READY, H_BUSY, H_DEAD, H_CLOSING, H_CLOSED };

struct cf_hostq {
    struct cf_fleetq *fleet;
    struct cf_ssh_config cfg;
    char *name, *address, *user, *key_file, *known_hosts;
    int become;
    enum hstate state;
    cf_ssh *ssh;
    int conn_status;
    char error[CF_ERRLEN];
    struct job *head, *tail;
    struct cf_hostq *next_all;  /* every host of the fleet */
    struct cf_hostq *next_wait; /* waiting for a connection slot */
    int holds_slot;
};

struct cf_fleetq {
    uv_loop_t *loop;
    int forks;
    int active; /* sessions holding a slot */
    struct cf_hostq *all;
    struct cf_hostq *wait_head, *wait_tail;
    int closing;
    int open_sessions;
    void (*close_done)(void *);
    void *close_arg;
};

static void host_next(struct cf_hostq *q);
static void maybe_close_host(struct cf_hostq *q);

struct cf_fleetq *cf_fleetq_new(uv_loop_t *loop, int forks)
{
    struct cf_fleetq *f = cf_xcalloc(1, sizeof *f);
    f->loop = loop;
    f->forks = forks > 0 ? forks : 50;
    return f;
}

void cf_fleetq_free(struct cf_fleetq *f)
{
    if (!f)
        return;
    struct cf_hostq *q = f->all;
    while (q) {
        struct cf_hostq *n = q->next_all;
        for (struct job *j = q->head; j;) {
            struct job *jn = j->next;
            free(j);
            j = jn;
        }
        free(q->name);
        free(q->address);
        free(q->user);
        free(q->key_file);
        free(q->known_hosts);
        free(q);
        q = n;
    }
    free(f);
}

struct cf_hostq *cf_hostq_new(struct cf_fleetq *f, const struct cf_ssh_config *cfg, int become)
{
    struct cf_hostq *q = cf_xcalloc(1, sizeof *q);
    q->fleet = f;
    q->cfg = *cfg;
    q->name = cf_strdup(cfg->name);
    q->address = cf_strdup(cfg->address);
    q->user = cf_strdup(cfg->user);
    q->key_file = cf_strdup(cfg->key_file);
    q->known_hosts = cf_strdup(cfg->known_hosts);
    q->cfg.name = q->name;
    q->cfg.address = q->address;
    q->cfg.user = q->user;
    q->cfg.key_file = q->key_file;
    q->cfg.known_hosts = q->known_hosts;
    q->become = become;
    q->next_all = f->all;
    f->all = q;
    return q;
}

const char *cf_hostq_error(const struct cf_hostq *q)
{
    return q->error;
}

int cf_hostq_unreachable(const struct cf_hostq *q)
{
    return q->state == H_DEAD;
}

const char *cf_hostq_name(const struct cf_hostq *q)
{
    return q->name;
}

/* Give a freed slot to the next waiting host. */
static void fleet_release_slot(struct cf_fleetq *f)
{
    f->active--;
    while (f->wait_head && f->active < f->forks) {
        struct cf_hostq *q = f->wait_head;
        f->wait_head = q->next_wait;
        if (!f->wait_head)
            f->wait_tail = NULL;
        q->next_wait = NULL;
        q->state = H_IDLE;
        host_next(q);
    }
}

static void on_session_closed(void *arg)
{
    struct cf_hostq *q = arg;
    struct cf_fleetq *f = q->fleet;
    /* A dead host stays dead; a host parked to free its slot may connect
     * again when new jobs arrive. */
    if (q->state != H_DEAD)
        q->state = f->closing ? H_CLOSED : H_IDLE;
    q->ssh = NULL;
    f->open_sessions--;
    if (q->holds_slot) {
        q->holds_slot = 0;
        fleet_release_slot(f);
    }
    if (q->state == H_IDLE && q->head)
        host_next(q);
    if (f->closing && f->open_sessions == 0 && f->close_done) {
        void (*done)(void *) = f->close_done;
        f->close_done = NULL;
        done(f->close_arg);
    }
}

static void fail_all_jobs(struct cf_hostq *q)
{
    while (q->head) {
        struct job *j = q->head;
        q->head = j->next;
        if (!q->head)
            q->tail = NULL;
        q->state = H_BUSY;
        j->fn(q, NULL, q->conn_status ? q->conn_status : CF_ECONNECT, j->arg);
        free(j);
    }
    q->state = H_DEAD;
}

static void on_connected(cf_ssh *s, int status, void *arg)
{
    struct cf_hostq *q = arg;
    if (status != 0) {
        q->conn_status = status;
        snprintf(q->error, sizeof q->error, "%s", cf_ssh_error(s));
        if (!q->error[0])
            snprintf(q->error, sizeof q->error, "%s: %s", q->name, cf_strerror(status));
        q->state = H_DEAD;
        fail_all_jobs(q);
        q->state = H_CLOSING;
        cf_ssh_close(q->ssh, on_session_closed, q);
        /* on_session_closed releases the slot; mark dead for reports now */
        q->state = H_DEAD;
        return;
    }
    q->state = H_READY;
    host_next(q);
}

static void host_next(struct cf_hostq *q)
{
    struct cf_fleetq *f = q->fleet;
    switch (q->state) {
    case H_IDLE:
        if (!q->head)
            return;
        if (f->active >= f->forks) {
            q->state = H_WAITING;
            if (f->wait_tail)
                f->wait_tail->next_wait = q;
            else
                f->wait_head = q;
            f->wait_tail = q;
            return;
        }
        f->active++;
        q->holds_slot = 1;
        q->state = H_CONNECTING;
        f->open_sessions++;
        if (cf_ssh_connect(f->loop, &q->cfg, &q->ssh, on_connected, q) != 0) {
            q->conn_status = CF_ECONNECT;
            snprintf(q->error, sizeof q->error, "%s: could not start connecting to %s", q->name,
                     q->address);
            fail_all_jobs(q);
            if (q->ssh) {
                cf_ssh_close(q->ssh, on_session_closed, q);
            } else {
                f->open_sessions--;
                q->holds_slot = 0;
                fleet_release_slot(f);
            }
            q->state = H_DEAD;
        }
        return;
    case H_READY: {
        struct job *j = q->head;
        if (!j) {
            maybe_close_host(q);
            return;
        }
        q->head = j->next;
        if (!q->head)
            q->tail = NULL;
        q->state = H_BUSY;
        cf_hostq_job_fn fn = j->fn;
        void *a = j->arg;
        free(j);
        fn(q, q->ssh, 0, a);
        return;
    }
    case H_DEAD:
        fail_all_jobs(q);
        return;
    default:
        return;
    }
}

void cf_hostq_push(struct cf_hostq *q, cf_hostq_job_fn fn, void *arg)
{
    struct job *j = cf_xcalloc(1, sizeof *j);
    j->fn = fn;
    j->arg = arg;
    if (q->tail)
        q->tail->next = j;
    else
        q->head = j;
    q->tail = j;
    if (q->state == H_IDLE || q->state == H_READY || q->state == H_DEAD)
        host_next(q);
}

void cf_hostq_done(struct cf_hostq *q)
{
    if (q->state == H_BUSY)
        q->state = q->ssh && q->conn_status == 0 ? H_READY : H_DEAD;
    host_next(q);
}

int cf_hostq_remote(struct cf_hostq *q, struct cf_rbatch *b, cf_remote_cb cb, void *arg)
{
    if (!q->ssh || q->state != H_BUSY)
        return CF_EINVAL;
    return cf_remote_run(q->ssh, b, q->become, cb, arg);
}

/* A host with nothing left to do disconnects when the fleet is closing, or
 * when other hosts wait for a connection slot (otherwise the first --forks
 * hosts would hold every slot until the end of the run). */
static void maybe_close_host(struct cf_hostq *q)
{
    if (q->state != H_READY || q->head)
        return;
    if (!q->fleet->closing && !q->fleet->wait_head)
        return;
    q->state = H_CLOSING;
    cf_ssh_close(q->ssh, on_session_closed, q);
}

void cf_fleetq_close(struct cf_fleetq *f, void (*done)(void *arg), void *arg)
{
    f->closing = 1;
    f->close_done = done;
    f->close_arg = arg;
    for (struct cf_hostq *q = f->all; q; q = q->next_all)
        maybe_close_host(q);
    if (f->open_sessions == 0 && f->close_done) {
        f->close_done = NULL;
        done(arg);
    }
}

/*
 * hostq.c - per-host job queues over one SSH session each, under the
 * fleet-wide --forks cap (see hostq.h).
 *
 * Each host is a small state machine and hostq_to() is the only place its
 * state changes, so -vv shows every transition.  cf_hostq_push() and
 * cf_hostq_done() never run a job themselves: they put the host on the
 * fleet's due list and start the fleet's "kick" timer, and the loop takes
 * the next step.  A caller therefore never sees a job start (or fail)
 * before its own call returned, and a job that finishes and queues the
 * next one cannot recurse through the queue.
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

enum hstate {
    H_IDLE,          /* no session; connects when a job is queued */
    H_WAITING,       /* jobs queued, waiting for a connection slot */
    H_CONNECTING,    /* session connecting (holds a slot) */
    H_READY,         /* session open, no job running */
    H_BUSY,          /* a job holds the session */
    H_DISCONNECTING, /* an idle session closing to free its slot */
    H_BROKEN,        /* transport failure: every job fails with q->error */
    H_FAILING,       /* a job is being told that the host is broken */
};

static const char *const hstate_names[] = {
    [H_IDLE] = "idle",
    [H_WAITING] = "waiting for a connection slot",
    [H_CONNECTING] = "connecting",
    [H_READY] = "ready",
    [H_BUSY] = "running a job",
    [H_DISCONNECTING] = "disconnecting",
    [H_BROKEN] = "broken",
    [H_FAILING] = "failing a job",
};

struct cf_hostq {
    struct cf_fleetq *fleet;
    struct cf_ssh_config cfg;
    char *name, *address, *user, *key_file, *known_hosts;
    int become;
    enum hstate state;
    cf_ssh *ssh;     /* connecting, open or closing; NULL when none */
    int ssh_closing; /* cf_ssh_close called, close callback pending */
    int granted;     /* a waiting host was given a slot */
    int fail_code;   /* the CF_E* code that broke the host */
    char error[CF_ERRLEN];
    struct job *head, *tail;
    struct cf_hostq *next_all;  /* every host of the fleet */
    struct cf_hostq *next_wait; /* waiting for a connection slot */
    struct cf_hostq *next_due;  /* due for a step on the next kick */
    int due;
};

enum kick_state { KICK_OPEN, KICK_CLOSING, KICK_CLOSED };

struct cf_fleetq {
    uv_loop_t *loop;
    uv_timer_t kick; /* runs due hosts from the loop */
    enum kick_state kick_state;
    int freed; /* cf_fleetq_free ran before the kick closed */
    int forks;
    int sessions; /* sessions holding a slot: connecting, open or closing */
    struct cf_hostq *all;
    struct cf_hostq *wait_head, *wait_tail;
    struct cf_hostq *due_head, *due_tail;
    int closing;
    void (*close_done)(void *);
    void *close_arg;
};

/* The only way a host's state changes. */
static void hostq_to(struct cf_hostq *q, enum hstate st)
{
    if (q->state == st)
        return;
    cf_debug("hostq %s: %s -> %s", q->name, hstate_names[q->state], hstate_names[st]);
    q->state = st;
}

static void on_kick(uv_timer_t *t);

static void fleet_kick(struct cf_fleetq *f)
{
    if (f->kick_state == KICK_OPEN)
        uv_timer_start(&f->kick, on_kick, 0, 0);
}

/* Schedule a step of q from the loop; a host is on the due list once. */
static void host_kick(struct cf_hostq *q)
{
    struct cf_fleetq *f = q->fleet;
    if (!q->due) {
        q->due = 1;
        q->next_due = NULL;
        if (f->due_tail)
            f->due_tail->next_due = q;
        else
            f->due_head = q;
        f->due_tail = q;
    }
    fleet_kick(f);
}

struct cf_fleetq *cf_fleetq_new(uv_loop_t *loop, int forks)
{
    struct cf_fleetq *f = cf_xcalloc(1, sizeof *f);
    f->loop = loop;
    f->forks = forks > 0 ? forks : 50;
    uv_timer_init(loop, &f->kick);
    f->kick.data = f;
    return f;
}

static void on_kick_closed(uv_handle_t *h)
{
    struct cf_fleetq *f = h->data;
    f->kick_state = KICK_CLOSED;
    if (f->freed) {
        free(f);
        return;
    }
    void (*done)(void *) = f->close_done;
    f->close_done = NULL;
    if (done)
        done(f->close_arg);
}

static void host_free(struct cf_hostq *q)
{
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
}

void cf_fleetq_free(struct cf_fleetq *f)
{
    if (!f)
        return;
    for (struct cf_hostq *q = f->all, *n; q; q = n) {
        n = q->next_all;
        host_free(q);
    }
    f->all = NULL;
    if (f->kick_state == KICK_CLOSED) {
        free(f);
        return;
    }
    /* freed before cf_fleetq_close finished: the timer is a loop handle,
     * so the memory goes in its close callback */
    f->freed = 1;
    f->close_done = NULL;
    if (f->kick_state == KICK_OPEN) {
        f->kick_state = KICK_CLOSING;
        uv_close((uv_handle_t *)&f->kick, on_kick_closed);
    }
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
    q->state = H_IDLE;
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
    return q->state == H_BROKEN || q->state == H_FAILING;
}

const char *cf_hostq_name(const struct cf_hostq *q)
{
    return q->name;
}

/* Mark q broken for good: keep the session's own message (or say which
 * step failed when the session has none) and let the next step close the
 * session and fail the queued jobs, from the loop. */
static void host_broken(struct cf_hostq *q, int code, const char *what)
{
    const char *msg = q->ssh ? cf_ssh_error(q->ssh) : "";
    q->fail_code = code < 0 ? code : CF_ECONNECT;
    if (msg[0])
        snprintf(q->error, sizeof q->error, "%s", msg);
    else
        snprintf(q->error, sizeof q->error, "%s (%s): %s: %s", q->name, q->address, what,
                 cf_strerror(q->fail_code));
    cf_debug("hostq %s: %s", q->name, q->error);
    hostq_to(q, H_BROKEN);
    host_kick(q);
}

/* Give freed slots to the hosts waiting longest; each starts connecting
 * on its next step. */
static void fleet_grant_slots(struct cf_fleetq *f)
{
    while (f->wait_head && f->sessions < f->forks) {
        struct cf_hostq *q = f->wait_head;
        f->wait_head = q->next_wait;
        if (!f->wait_head)
            f->wait_tail = NULL;
        q->next_wait = NULL;
        f->sessions++;
        q->granted = 1;
        host_kick(q);
    }
}

static void on_session_closed(void *arg)
{
    struct cf_hostq *q = arg;
    struct cf_fleetq *f = q->fleet;
    q->ssh = NULL;
    q->ssh_closing = 0;
    f->sessions--;
    /* a broken host stays broken; one that only freed its slot may
     * connect again for jobs queued since */
    if (q->state == H_DISCONNECTING)
        hostq_to(q, H_IDLE);
    host_kick(q);
    fleet_grant_slots(f);
}

static void session_close(struct cf_hostq *q)
{
    if (!q->ssh || q->ssh_closing)
        return;
    q->ssh_closing = 1;
    cf_ssh_close(q->ssh, on_session_closed, q);
}

static void on_connected(cf_ssh *s, int status, void *arg)
{
    struct cf_hostq *q = arg;
    if (status != 0) {
        host_broken(q, status, "connecting failed");
        return;
    }
    hostq_to(q, H_READY);
    host_kick(q);
}

/* Hosts sitting on an idle session give their slot up when another host
 * waits, or the first --forks hosts would hold every slot to the end. */
static void fleet_wake_idle(struct cf_fleetq *f)
{
    for (struct cf_hostq *q = f->all; q; q = q->next_all)
        if (q->state == H_READY && !q->head)
            host_kick(q);
}

/* Connect under a slot this host already counts in f->sessions. */
static void host_connect(struct cf_hostq *q)
{
    struct cf_fleetq *f = q->fleet;
    hostq_to(q, H_CONNECTING);
    int rc = cf_ssh_connect(f->loop, &q->cfg, &q->ssh, on_connected, q);
    if (rc == 0)
        return;
    if (!q->ssh) {
        f->sessions--;
        fleet_grant_slots(f);
    }
    host_broken(q, rc, "could not start connecting");
}

static void host_wait_or_connect(struct cf_hostq *q)
{
    struct cf_fleetq *f = q->fleet;
    if (f->sessions >= f->forks) {
        hostq_to(q, H_WAITING);
        q->next_wait = NULL;
        if (f->wait_tail)
            f->wait_tail->next_wait = q;
        else
            f->wait_head = q;
        f->wait_tail = q;
        fleet_wake_idle(f);
        return;
    }
    f->sessions++;
    host_connect(q);
}

static void run_next_job(struct cf_hostq *q, enum hstate st, cf_ssh *s, int status)
{
    struct job *j = q->head;
    q->head = j->next;
    if (!q->head)
        q->tail = NULL;
    cf_hostq_job_fn fn = j->fn;
    void *arg = j->arg;
    free(j);
    hostq_to(q, st);
    fn(q, s, status, arg);
}

/* One step of q, always from the kick timer. */
static void host_step(struct cf_hostq *q)
{
    struct cf_fleetq *f = q->fleet;
    switch (q->state) {
    case H_IDLE:
        if (q->head)
            host_wait_or_connect(q);
        return;
    case H_WAITING:
        if (q->granted) {
            q->granted = 0;
            host_connect(q);
        }
        return;
    case H_READY:
        if (q->head) {
            run_next_job(q, H_BUSY, q->ssh, 0);
        } else if (f->closing || f->wait_head) {
            hostq_to(q, H_DISCONNECTING);
            session_close(q);
        }
        return;
    case H_BROKEN:
        /* closed here rather than in the session's own callback */
        session_close(q);
        if (q->head)
            run_next_job(q, H_FAILING, NULL, q->fail_code);
        return;
    case H_CONNECTING:
    case H_BUSY:
    case H_DISCONNECTING:
    case H_FAILING:
        return;
    }
}

/* The fleet is closed when no session is left and no job is queued or
 * running; then the kick timer closes and its callback reports done. */
static void fleet_maybe_closed(struct cf_fleetq *f)
{
    if (!f->closing || f->kick_state != KICK_OPEN || f->sessions || f->due_head)
        return;
    for (struct cf_hostq *q = f->all; q; q = q->next_all)
        if (q->head || q->state == H_FAILING)
            return;
    f->kick_state = KICK_CLOSING;
    uv_close((uv_handle_t *)&f->kick, on_kick_closed);
}

static void on_kick(uv_timer_t *t)
{
    struct cf_fleetq *f = t->data;
    struct cf_hostq *q = f->due_head;
    /* hosts kicked while these run go on a fresh list */
    f->due_head = f->due_tail = NULL;
    while (q) {
        struct cf_hostq *next = q->next_due;
        q->next_due = NULL;
        q->due = 0;
        host_step(q);
        q = next;
    }
    fleet_maybe_closed(f);
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
    host_kick(q);
}

void cf_hostq_done(struct cf_hostq *q)
{
    int code;
    switch (q->state) {
    case H_BUSY:
        /* a command timeout or a dropped connection ends the session: the
         * host is broken, not ready, so later jobs do not get a dead one */
        if ((code = cf_ssh_failed(q->ssh)) != 0) {
            host_broken(q, code, "the session failed");
            return;
        }
        hostq_to(q, H_READY);
        host_kick(q);
        return;
    case H_FAILING:
        hostq_to(q, H_BROKEN);
        host_kick(q);
        return;
    default:
        cf_debug("hostq %s: job done while %s (no job was running)", q->name,
                 hstate_names[q->state]);
        return;
    }
}

int cf_hostq_remote(struct cf_hostq *q, struct cf_rbatch *b, cf_remote_cb cb, void *arg)
{
    if (!q->ssh || q->state != H_BUSY)
        return CF_EINVAL;
    return cf_remote_run(q->ssh, b, q->become, cb, arg);
}

void cf_fleetq_close(struct cf_fleetq *f, void (*done)(void *arg), void *arg)
{
    f->closing = 1;
    f->close_done = done;
    f->close_arg = arg;
    for (struct cf_hostq *q = f->all; q; q = q->next_all)
        host_kick(q);
    fleet_kick(f);
}

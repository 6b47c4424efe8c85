/*
 * hostq.h - one SSH session per host, used by every phase of a run.
 *
 * A session runs one command at a time, but several phases (role, tokens
 * of several certificates, pushes) want the same host.  hostq serialises
 * them: jobs queue on the host and run in order over the one session.
 * The fleet-wide --forks cap bounds how many sessions connect at once.
 */
#ifndef CF_HOSTQ_H
#define CF_HOSTQ_H

#include <stddef.h>
#include <uv.h>

#include "remote.h"
#include "ssh.h"

struct cf_hostq;
struct cf_fleetq;

/* A job gets the open session; it must call cf_hostq_done(q) exactly once
 * when finished (from any later callback).  When the host is broken (see
 * cf_hostq_error) the job is called with s == NULL and status < 0 (the
 * CF_E* code of the transport failure) so it can report.  Jobs always
 * start from the loop, never from inside cf_hostq_push or cf_hostq_done,
 * and one host runs one job at a time, in the order they were queued. */
typedef void (*cf_hostq_job_fn)(struct cf_hostq *q, cf_ssh *s, int status, void *arg);

/* The fleet: a loop and a cap on concurrent connections (forks <= 0 means
 * 50).  The fleet owns a timer on loop, closed by cf_fleetq_close. */
struct cf_fleetq *cf_fleetq_new(uv_loop_t *loop, int forks);

/* Free the fleet and its hosts, after cf_fleetq_close's done has run.
 * Freed earlier, the fleet's timer is closed and its memory goes on the
 * loop's next run; hosts must then have no session left. */
void cf_fleetq_free(struct cf_fleetq *f);

/* A host of the fleet; cfg is copied by cf_ssh_connect on first use. */
struct cf_hostq *cf_hostq_new(struct cf_fleetq *f, const struct cf_ssh_config *cfg, int become);

/* Queue a job.  Never calls fn before returning: the host connects on its
 * first job (under the --forks cap) and runs or fails the job from the
 * loop. */
void cf_hostq_push(struct cf_hostq *q, cf_hostq_job_fn fn, void *arg);

/* The running job has finished.  Never starts the next job before
 * returning.  When the job's session has failed meanwhile (a command
 * timeout, a dropped connection), the host becomes broken: its session is
 * closed and every later job fails fast with the session's message. */
void cf_hostq_done(struct cf_hostq *q);

/* Run a remote batch as (part of) the current job; CF_EINVAL when no job
 * holds the session.  Otherwise as cf_remote_run. */
int cf_hostq_remote(struct cf_hostq *q, struct cf_rbatch *b, cf_remote_cb cb, void *arg);

/* Why the host is broken: the session's own message for a connect
 * failure, a command timeout or a dropped connection (e.g. "command on h1
 * (127.0.1.1:2222) timed out after 30.0 s while running the command"), or
 * which step failed when the session had none; "" while the host is
 * healthy.  Valid until cf_fleetq_free. */
const char *cf_hostq_error(const struct cf_hostq *q);

/* 1 once the host is broken (cf_hostq_error says why): it stays so for
 * the rest of the run. */
int cf_hostq_unreachable(const struct cf_hostq *q);
const char *cf_hostq_name(const struct cf_hostq *q);

/* Disconnect every host once its queue is empty; done runs from the loop
 * (never inside this call) when every session has closed and no job is
 * left, and the fleet's timer is closed, so the loop can then end. */
void cf_fleetq_close(struct cf_fleetq *f, void (*done)(void *arg), void *arg);

#endif

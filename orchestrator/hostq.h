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
 * when finished (from any later callback).  When the host is unreachable
 * the job is called with s == NULL and status < 0 so it can report. */
typedef void (*cf_hostq_job_fn)(struct cf_hostq *q, cf_ssh *s, int status, void *arg);

/* The fleet: a loop and a cap on concurrent connections. */
struct cf_fleetq *cf_fleetq_new(uv_loop_t *loop, int forks);
void cf_fleetq_free(struct cf_fleetq *f);

/* A host of the fleet; cfg is copied by cf_ssh_connect on first use. */
struct cf_hostq *cf_hostq_new(struct cf_fleetq *f, const struct cf_ssh_config *cfg, int become);

/* Queue a job; the host connects on its first job (under the cap). */
void cf_hostq_push(struct cf_hostq *q, cf_hostq_job_fn fn, void *arg);
void cf_hostq_done(struct cf_hostq *q);

/* Run a remote batch as (part of) the current job. */
int cf_hostq_remote(struct cf_hostq *q, struct cf_rbatch *b, cf_remote_cb cb, void *arg);

/* The connection error of an unreachable host ("" otherwise), and whether
 * the host is known to be unreachable. */
const char *cf_hostq_error(const struct cf_hostq *q);
int cf_hostq_unreachable(const struct cf_hostq *q);
const char *cf_hostq_name(const struct cf_hostq *q);

/* Disconnect every host once its queue is empty; done runs when every
 * session has closed (the loop can then end). */
void cf_fleetq_close(struct cf_fleetq *f, void (*done)(void *arg), void *arg);

#endif

/* spawner.h - the only process that calls clone() for a threaded daemon.
 *
 * sbx_spawner_start() forks a small single-threaded process before the daemon
 * starts any thread. The daemon sends it spawn requests over a SOCK_SEQPACKET
 * socketpair; the spawner creates the sandbox with CLONE_PARENT, so the
 * sandbox is the daemon's child (the daemon reaps it with its pidfd), and
 * answers with the sandbox's descriptors (pidfd, init's report pipe, the slot
 * lock, stdio pipes) passed with SCM_RIGHTS. Forking a large threaded process
 * is slow and unsafe; this keeps spawning cheap and privilege in one place.
 *
 * The spawner must be started from the daemon's main thread (the sandboxes'
 * parent-death signal follows the thread that forked the spawner). */
#pragma once

#include <pthread.h>
#include <sys/types.h>

#include "sbx.h"

struct sbx_spawner {
	pid_t pid;
	int fd;
	pthread_mutex_t lock; /* one request and its answer at a time */
};

/* Fork the spawner. ctx must have been initialised (sbx_ctx_init) in this
 * process; the spawner inherits a copy. */
int sbx_spawner_start(struct sbx_ctx *ctx, struct sbx_spawner *ret, struct zerr *err);

/* Spawn through the spawner. Same contract as sbx_spawn(): on success *ret
 * is a sandbox of this process (sbx_reap, sbx_destroy work as usual).
 * Thread-safe. */
int sbx_spawner_spawn(struct sbx_spawner *sp, const struct sbx_ctx *ctx, const struct sbx_spec *spec, struct sbx *ret,
                      struct zerr *err);

/* Close the channel and wait for the spawner to exit. */
void sbx_spawner_stop(struct sbx_spawner *sp);

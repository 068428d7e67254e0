/* privsep.h - the daemon's privilege separation: the unprivileged user the
 * HTTP and job workers run as, and the one-way drop into it.
 *
 * After privsep_drop() the process has the user's ids, no supplementary
 * groups, no capability in any set (effective, permitted, inheritable,
 * bounding, ambient), no_new_privs, and a seccomp filter that refuses to
 * create or join namespaces: it cannot start a sandbox, write a cgroup,
 * signal a sandbox or start PostgreSQL, which stay with the small
 * single-threaded privileged processes (the spawner, the supervising
 * parent). */
#pragma once

#include <stdbool.h>
#include <sys/types.h>

#include "util.h"

/* Look the system user up; create it (useradd --system, no home, no shell)
 * when it does not exist, so that a fresh machine works. Needs root. */
int privsep_user_ensure(const char *name, uid_t *ret_uid, gid_t *ret_gid, struct zerr *err);

/* Become uid/gid for good, as described above; keep a parent-death signal
 * (pdeath_sig, 0: none) tied to the parent expected_ppid, which the change
 * of credentials would otherwise clear. Call it single-threaded: every
 * thread created afterwards inherits the filter. */
int privsep_drop(uid_t uid, gid_t gid, int pdeath_sig, pid_t expected_ppid, struct zerr *err);

/* The seccomp filter privsep_drop() installs, alone: unshare, setns and
 * clone with a CLONE_NEW* flag fail with EPERM, clone3 with ENOSYS (glibc's
 * pthread_create then falls back to clone, which passes). */
int privsep_seccomp(struct zerr *err);

/* sysproc.h - what zmeshd's supervisor needs to run a daemon of its own
 * (the embedded PostgreSQL, pgbouncer) as an unprivileged system user: the
 * user, its directories, waiting for the child, and the end of its log for
 * an error message. Used by pgembed.c and pgbouncer.c. */
#pragma once

#include <stdint.h>
#include <sys/types.h>

#include "error.h"

#define SYSPROC_MAX_GROUPS 64

struct sys_user {
	uid_t uid;
	gid_t gid;
	gid_t groups[SYSPROC_MAX_GROUPS];
	int n_groups;
};

/* Look up system user name (never uid 0). missing: the hint given when
 * there is no such user; what: what would run as it ("PostgreSQL"). */
int sys_user_lookup(const char *name, const char *what, const char *missing, struct sys_user *ret, struct zerr *err);
/* Make directory path (one level) if missing, refuse a link, and give it
 * to uid:gid with mode. */
int sys_ensure_dir(const char *path, mode_t mode, uid_t uid, gid_t gid, struct zerr *err);
/* The last lines log path got from offset from on, as one line (newlines
 * shown as " | ", control characters dropped), keeping the end when it does
 * not fit in buf: that is where the reason is. */
void sys_log_tail(const char *path, off_t from, char *buf, size_t size);
/* Reap child pid within timeout_ms: 0 with *ret_status, -ETIMEDOUT, or
 * -errno. */
int sys_wait_child(pid_t pid, long timeout_ms, int *ret_status);
/* "exit status N", "signal N" */
void sys_describe_status(int st, char *buf, size_t size);
/* Supervision of a child daemon named what (its pid in *pid, its log at
 * log_path): 0 while it runs; -ESRCH once it has exited (reaped here,
 * *pid set to 0), with how it ended and the end of its log in err. */
int sys_check_child(pid_t *pid, const char *what, const char *log_path, struct zerr *err);
void sys_sleep_ms(long ms);
uint64_t sys_now_ms(void);

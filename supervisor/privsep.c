/* privsep.c - see privsep.h */
#define _GNU_SOURCE
#include "privsep.h"

#include <grp.h>
#include <pwd.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#define USERADD "/usr/sbin/useradd"

static int lookup(const char *name, uid_t *ret_uid, gid_t *ret_gid)
{
	char buf[16384];
	struct passwd pw, *res = NULL;
	int r = getpwnam_r(name, &pw, buf, sizeof(buf), &res);
	if (r != 0)
		return -r;
	if (!res)
		return -ENOENT;
	*ret_uid = pw.pw_uid;
	*ret_gid = pw.pw_gid;
	return 0;
}

int privsep_user_ensure(const char *name, uid_t *ret_uid, gid_t *ret_gid, struct zerr *err)
{
	int r = lookup(name, ret_uid, ret_gid);
	if (r == -ENOENT) {
		/* Exec'd directly with a clean environment, never a shell. */
		char *const argv[] = {USERADD,
		                      "--system",
		                      "--no-create-home",
		                      "--home-dir",
		                      "/nonexistent",
		                      "--shell",
		                      "/usr/sbin/nologin",
		                      "--user-group",
		                      "--comment",
		                      "zmesh functions API",
		                      (char *)name,
		                      NULL};
		char *const envp[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", NULL};
		pid_t pid = fork();
		if (pid < 0)
			return zerr_set(err, -errno, "fork: %s", strerror(errno));
		if (pid == 0) {
			execve(USERADD, argv, envp);
			_exit(127);
		}
		int st = 0;
		while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
			;
		/* Exit status 9: created meanwhile by someone else. */
		if (!WIFEXITED(st) || (WEXITSTATUS(st) != 0 && WEXITSTATUS(st) != 9))
			return zerr_set(err, -EIO, "%s %s failed (status 0x%x): create the system user %s", USERADD,
			                name, (unsigned)st, name);
		r = lookup(name, ret_uid, ret_gid);
	}
	if (r < 0)
		return zerr_set(err, r, "look up user %s: %s", name, strerror(-r));
	if (*ret_uid == 0 || *ret_gid == 0)
		return zerr_set(err, -EINVAL, "user %s is uid or gid 0: not an unprivileged user", name);
	return 0;
}

int privsep_seccomp(struct zerr *err)
{
	scmp_filter_ctx f = seccomp_init(SCMP_ACT_ALLOW);
	if (!f)
		return zerr_set(err, -ENOMEM, "seccomp_init: out of memory");
	/* CLONE_NEWTIME (0x80) shares its bit with the exit signal in clone();
	 * unshare takes it. */
	static const unsigned long ns_flags[] = {CLONE_NEWNS,   CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC,
	                                         CLONE_NEWUSER, CLONE_NEWPID,    CLONE_NEWNET};
	int r = 0;
	for (size_t i = 0; i < ELEMENTSOF(ns_flags) && r == 0; i++)
		r = seccomp_rule_add(f, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
		                     SCMP_A0(SCMP_CMP_MASKED_EQ, ns_flags[i], ns_flags[i]));
	/* clone3 passes its flags in memory, out of a filter's sight: refuse
	 * it whole. ENOSYS, not EPERM: glibc then falls back to clone. */
	if (r == 0)
		r = seccomp_rule_add(f, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
	if (r == 0)
		r = seccomp_rule_add(f, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(unshare), 0);
	if (r == 0)
		r = seccomp_rule_add(f, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(setns), 0);
	if (r == 0)
		r = seccomp_load(f);
	seccomp_release(f);
	if (r < 0)
		return zerr_set(err, r, "seccomp filter: %s", strerror(-r));
	return 0;
}

int privsep_drop(uid_t uid, gid_t gid, int pdeath_sig, pid_t expected_ppid, struct zerr *err)
{
	if (uid == 0 || gid == 0)
		return zerr_set(err, -EINVAL, "refusing to drop to uid or gid 0");
	/* Bounding set first: dropping from it needs CAP_SETPCAP, which the
	 * change of uid takes away. */
	for (int c = 0; c <= CAP_LAST_CAP; c++)
		if (cap_drop_bound((cap_value_t)c) < 0 && errno != EINVAL)
			return zerr_set(err, -errno, "drop capability %d from the bounding set: %s", c,
			                strerror(errno));
	if (cap_reset_ambient() < 0)
		return zerr_set(err, -errno, "clear ambient capabilities: %s", strerror(errno));
	if (setgroups(0, NULL) < 0 || setresgid(gid, gid, gid) < 0 || setresuid(uid, uid, uid) < 0)
		return zerr_set(err, -errno, "switch to uid %u: %s", (unsigned)uid, strerror(errno));
	/* Leaving uid 0 cleared permitted and effective (no KEEPCAPS); the
	 * inheritable set, explicitly, with the rest. */
	cap_t none = cap_init();
	if (!none)
		return zerr_set(err, -ENOMEM, "cap_init: out of memory");
	int r = cap_set_proc(none);
	cap_free(none);
	if (r < 0)
		return zerr_set(err, -errno, "clear capabilities: %s", strerror(errno));
	/* And check: a kernel or a libc that left one behind is a failure. */
	uid_t ru, eu, su;
	if (getresuid(&ru, &eu, &su) < 0 || ru != uid || eu != uid || su != uid || setuid(0) == 0)
		return zerr_set(err, -EPERM, "the switch to uid %u did not hold", (unsigned)uid);
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return zerr_set(err, -errno, "no_new_privs: %s", strerror(errno));
	/* The change of credentials cleared the parent-death signal: arm it
	 * again, then make sure the parent did not die in between. */
	if (pdeath_sig && (prctl(PR_SET_PDEATHSIG, pdeath_sig, 0, 0, 0) < 0 || getppid() != expected_ppid))
		return zerr_set(err, -ESRCH, "the supervising parent is gone");
	return privsep_seccomp(err);
}

/* sysproc.c - see sysproc.h */
#define _GNU_SOURCE
#include "sysproc.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "util.h"

void sys_sleep_ms(long ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

uint64_t sys_now_ms(void)
{
	return util_now_ns() / 1000000u;
}

void sys_log_tail(const char *path, off_t from, char *buf, size_t size)
{
	buf[0] = '\0';
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return;
	char raw[1024];
	off_t end = lseek(fd, 0, SEEK_END);
	off_t start = end > (off_t)sizeof(raw) - 1 ? end - (off_t)sizeof(raw) + 1 : 0;
	if (start < from)
		start = from;
	if (start >= end)
		return;
	ssize_t n = pread(fd, raw, sizeof(raw) - 1, start);
	if (n <= 0)
		return;
	raw[n] = '\0';
	char *s = raw;
	if (start > from && strchr(s, '\n'))
		s = strchr(s, '\n') + 1; /* drop the partial first line */
	char line[2048];
	size_t o = 0;
	for (; *s && o + 4 < sizeof(line); s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '\n') {
			if (s[1] && o) {
				memcpy(line + o, " | ", 3);
				o += 3;
			}
		} else if (c >= 0x20 && c != 0x7f) {
			line[o++] = (char)c;
		}
	}
	line[o] = '\0';
	size_t skip = o + 1 > size ? o + 1 - size : 0;
	snprintf(buf, size, "%s", line + skip);
}

int sys_ensure_dir(const char *path, mode_t mode, uid_t uid, gid_t gid, struct zerr *err)
{
	if (mkdir(path, mode) < 0 && errno != EEXIST)
		return zerr_set(err, -errno, "mkdir %s: %s", path, strerror(errno));
	_cleanup_close_ int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return zerr_set(err, -errno, "%s: %s (must be a directory, not a link)", path, strerror(errno));
	if (fchown(fd, uid, gid) < 0)
		return zerr_set(err, -errno, "chown %s: %s", path, strerror(errno));
	if (fchmod(fd, mode) < 0)
		return zerr_set(err, -errno, "chmod %s: %s", path, strerror(errno));
	return 0;
}

int sys_wait_child(pid_t pid, long timeout_ms, int *ret_status)
{
	uint64_t deadline = sys_now_ms() + (uint64_t)timeout_ms;
	for (;;) {
		int st;
		pid_t r = waitpid(pid, &st, WNOHANG);
		if (r == pid) {
			*ret_status = st;
			return 0;
		}
		if (r < 0 && errno != EINTR)
			return -errno;
		if (sys_now_ms() >= deadline)
			return -ETIMEDOUT;
		sys_sleep_ms(10);
	}
}

void sys_describe_status(int st, char *buf, size_t size)
{
	if (WIFEXITED(st))
		snprintf(buf, size, "exit status %d", WEXITSTATUS(st));
	else if (WIFSIGNALED(st))
		snprintf(buf, size, "signal %d", WTERMSIG(st));
	else
		snprintf(buf, size, "status 0x%x", (unsigned)st);
}

int sys_user_lookup(const char *name, const char *what, const char *missing, struct sys_user *ret, struct zerr *err)
{
	char buf[16384];
	struct passwd pw, *res = NULL;
	int r = getpwnam_r(name, &pw, buf, sizeof(buf), &res);
	if (r != 0)
		return zerr_set(err, -r, "look up user %s: %s", name, strerror(r));
	if (!res)
		return zerr_set(err, -ENOENT, "no \"%s\" system user to run %s as: %s", name, what, missing);
	if (pw.pw_uid == 0)
		return zerr_set(err, -EINVAL, "the %s user is uid 0; %s must not run as root", name, what);
	ret->uid = pw.pw_uid;
	ret->gid = pw.pw_gid;
	int n = SYSPROC_MAX_GROUPS;
	if (getgrouplist(name, pw.pw_gid, ret->groups, &n) < 0)
		return zerr_set(err, -E2BIG, "user %s is in more than %d groups", name, SYSPROC_MAX_GROUPS);
	ret->n_groups = n;
	return 0;
}

int sys_check_child(pid_t *pid, const char *what, const char *log_path, struct zerr *err)
{
	if (*pid <= 0)
		return zerr_set(err, -ESRCH, "%s is not running", what);
	int st;
	pid_t r = waitpid(*pid, &st, WNOHANG);
	if (r == 0)
		return 0;
	pid_t was = *pid;
	*pid = 0;
	if (r < 0)
		return zerr_set(err, -ESRCH, "%s (pid %d) was reaped elsewhere: %s", what, (int)was, strerror(errno));
	char how[64], tail[320];
	sys_describe_status(st, how, sizeof(how));
	sys_log_tail(log_path, 0, tail, sizeof(tail));
	return zerr_set(err, -ESRCH, "%s (pid %d) exited (%s): %s", what, (int)was, how, tail);
}

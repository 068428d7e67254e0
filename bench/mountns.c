/* mountns.c - what a sandbox's mount namespace costs with the host's mount
 * table and with a skeleton one (a mount namespace holding a few mounts, as
 * a spawner of its own could keep).
 *
 *   cc -O2 -Wall -o /tmp/mountns bench/mountns.c && sudo /tmp/mountns [ROUNDS]
 *
 * Per round: clone(CLONE_NEWNS) a child that does what a sandbox's child does
 * with mounts (everything private, a tmpfs root with /usr bound in,
 * pivot_root, detach of the old root) and exits; the parent times clone to
 * reap. The detach is also timed inside the child, and a bare
 * clone(CLONE_NEWNS) + exit apart. Then the same from inside a skeleton
 * namespace (tmpfs root, /usr and /proc bound, nothing else). Prints
 * medians and p90s in milliseconds; the two sides take turns in 20 chunks; the recorded run is
 * results/mountns-YYYY-MM-DD.md. Root only; it touches nothing outside its
 * own temporary directory and namespaces. */
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double *detach_ms; /* shared with the children */
static char root[64], skel[64];

#define CHUNKS 20

static double now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static int child(void)
{
	char usr[96];
	snprintf(usr, sizeof(usr), "%s/usr", root);
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		return 1;
	if (mount("tmpfs", root, "tmpfs", 0, "size=1m") < 0)
		return 2;
	if (mkdir(usr, 0755) < 0 || mount("/usr", usr, NULL, MS_BIND | MS_REC, NULL) < 0)
		return 3;
	if (chdir(root) < 0 || syscall(SYS_pivot_root, ".", ".") < 0)
		return 4;
	double a = now_ms();
	if (umount2(".", MNT_DETACH) < 0)
		return 5;
	*detach_ms = now_ms() - a;
	return 0;
}

static int mounts(void)
{
	FILE *f = fopen("/proc/self/mountinfo", "r");
	int n = 0, c;
	while (f && (c = fgetc(f)) != EOF)
		n += c == '\n';
	if (f)
		fclose(f);
	return n;
}

/* Rounds from..to into whole, detach and bare (shared memory). */
static int run(double *whole, double *detach, double *bare, int from, int to)
{
	for (int i = from; i < to; i++) {
		int st;
		double a = now_ms();
		pid_t p = (pid_t)syscall(SYS_clone, CLONE_NEWNS | SIGCHLD, 0, 0, 0, 0);
		if (p == 0)
			_exit(child());
		if (p < 0 || waitpid(p, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			fprintf(stderr, "mountns: the child failed (%d)\n", p < 0 ? -1 : WEXITSTATUS(st));
			return -1;
		}
		whole[i] = now_ms() - a;
		detach[i] = *detach_ms;
		a = now_ms();
		p = (pid_t)syscall(SYS_clone, CLONE_NEWNS | SIGCHLD, 0, 0, 0, 0);
		if (p == 0)
			_exit(0);
		if (p < 0 || waitpid(p, &st, 0) < 0)
			return -1;
		bare[i] = now_ms() - a;
	}
	return 0;
}

static void print_row(const char *label, int n_mounts, double *whole, double *detach, double *bare, int n)
{
	qsort(whole, (size_t)n, sizeof(double), cmp);
	qsort(detach, (size_t)n, sizeof(double), cmp);
	qsort(bare, (size_t)n, sizeof(double), cmp);
	printf("| %s | %d | %.3f / %.3f | %.3f / %.3f | %.3f / %.3f |\n", label, n_mounts, whole[n / 2],
	       whole[n * 9 / 10], detach[n / 2], detach[n * 9 / 10], bare[n / 2], bare[n * 9 / 10]);
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 300;
	if (n < 10 || n > 100000) {
		fprintf(stderr, "usage: mountns [ROUNDS: 10..100000]\n");
		return 2;
	}
	char dir[] = "/tmp/zmesh-mountns-XXXXXX";
	if (!mkdtemp(dir))
		return 2;
	snprintf(root, sizeof(root), "%s/root", dir);
	snprintf(skel, sizeof(skel), "%s/skel", dir);
	detach_ms = mmap(NULL, sizeof(double), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (detach_ms == MAP_FAILED || mkdir(root, 0755) < 0 || mkdir(skel, 0755) < 0)
		return 2;
	/* Both sides' samples and mount counts, in memory shared with the
	 * skeleton's process. */
	double *m =
	    mmap(NULL, (6 * (size_t)n + 2) * sizeof(double), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		return 2;
	double *host = m, *sk = m + 3 * n, *counts = m + 6 * n;
	int go[2], done[2];
	if (pipe(go) < 0 || pipe(done) < 0)
		return 2;
	/* The skeleton lives in a namespace of its own process only: the
	 * host's table is untouched. The two sides take turns, CHUNKS times,
	 * so that other work on the machine lands on both alike. */
	pid_t p = fork();
	if (p == 0) {
		char b[128];
		if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
		    mount("tmpfs", skel, "tmpfs", 0, "size=1m") < 0)
			_exit(3);
		const char *d[] = {"usr", "proc", "tmp", NULL};
		for (int i = 0; d[i]; i++) {
			snprintf(b, sizeof(b), "%s/%s", skel, d[i]);
			if (mkdir(b, 01777) < 0)
				_exit(3);
		}
		snprintf(b, sizeof(b), "%s/usr", skel);
		if (mount("/usr", b, NULL, MS_BIND | MS_REC, NULL) < 0)
			_exit(3);
		snprintf(b, sizeof(b), "%s/proc", skel);
		if (mount("/proc", b, NULL, MS_BIND, NULL) < 0)
			_exit(3);
		if (chdir(skel) < 0 || syscall(SYS_pivot_root, ".", ".") < 0 || umount2(".", MNT_DETACH) < 0 ||
		    chdir("/") < 0)
			_exit(3);
		if (symlink("usr/lib", "/lib") < 0 || symlink("usr/lib64", "/lib64") < 0 ||
		    symlink("usr/bin", "/bin") < 0)
			_exit(3);
		snprintf(root, sizeof(root), "/tmp/root");
		if (mkdir(root, 0755) < 0)
			_exit(3);
		counts[1] = mounts();
		for (int c = 0; c < CHUNKS; c++) {
			char t;
			if (read(go[0], &t, 1) != 1)
				_exit(4);
			t = run(sk, sk + n, sk + 2 * n, c * n / CHUNKS, (c + 1) * n / CHUNKS) < 0 ? 'F' : 'D';
			if (write(done[1], &t, 1) != 1 || t == 'F')
				_exit(4);
		}
		_exit(0);
	}
	int rc = p < 0;
	counts[0] = mounts();
	for (int c = 0; !rc && c < CHUNKS; c++) {
		char t = 'G';
		rc = run(host, host + n, host + 2 * n, c * n / CHUNKS, (c + 1) * n / CHUNKS) < 0 ||
		     write(go[1], &t, 1) != 1 || read(done[0], &t, 1) != 1 || t != 'D';
	}
	int st;
	if (p > 0 && (waitpid(p, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0))
		rc = 1;
	if (!rc) {
		printf("| namespace | mounts | clone, mounts, pivot, detach, exit: p50 / p90 ms | the detach alone | "
		       "clone + exit alone |\n|---|---:|---:|---:|---:|\n");
		print_row("the host's", (int)counts[0], host, host + n, host + 2 * n, n);
		print_row("a skeleton", (int)counts[1], sk, sk + n, sk + 2 * n, n);
	}
	rmdir(root);
	rmdir(skel);
	rmdir(dir);
	return rc;
}

/* clonecost.c - what the size of the spawner's address space costs each
 * sandbox: clone (no CLONE_VM), exit and reap, from a small process and from
 * one shaped like zmeshd's spawner (the libraries zmeshd links, and as much
 * anonymous memory touched as the spawner holds).
 *
 *   cc -O2 -Wall -o /tmp/clonecost bench/clonecost.c -ldl && /tmp/clonecost [ROUNDS] [ANON_KB]
 *
 * ANON_KB defaults to 2300 (a spawner's Anonymous total in
 * /proc/PID/smaps, measured). The two shapes take turns in 20 chunks (two
 * processes, one loads the libraries), so that other work on the machine
 * lands on both alike. Prints the number of mappings and the median and p90
 * in milliseconds; the recorded run is results/clonecost-YYYY-MM-DD.md. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

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

static int mappings(void)
{
	FILE *f = fopen("/proc/self/maps", "r");
	int n = 0, c;
	while (f && (c = fgetc(f)) != EOF)
		n += c == '\n';
	if (f)
		fclose(f);
	return n;
}

static int run(double *t, int from, int to)
{
	for (int i = from; i < to; i++) {
		double a = now_ms();
		pid_t p = (pid_t)syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
		if (p == 0)
			_exit(0);
		if (p < 0 || waitpid(p, NULL, 0) < 0)
			return -1;
		t[i] = now_ms() - a;
	}
	return 0;
}

/* One side: wait for its turn on go, run a chunk, say so on done. */
static int side(double *t, int n, int go, int done)
{
	for (int c = 0; c < CHUNKS; c++) {
		char x;
		if (read(go, &x, 1) != 1)
			return -1;
		x = run(t, c * n / CHUNKS, (c + 1) * n / CHUNKS) < 0 ? 'F' : 'D';
		if (write(done, &x, 1) != 1 || x == 'F')
			return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 400;
	long anon_kb = argc > 2 ? atol(argv[2]) : 2300;
	if (n < CHUNKS || n > 100000 || anon_kb < 0 || anon_kb > 1 << 20) {
		fprintf(stderr, "usage: clonecost [ROUNDS: 20..100000] [ANON_KB: 0..1048576]\n");
		return 2;
	}
	double *m =
	    mmap(NULL, (2 * (size_t)n + 2) * sizeof(double), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		return 2;
	double *small = m, *big = m + n, *maps = m + 2 * n;
	int go[2][2], done[2][2];
	pid_t kid[2];
	for (int k = 0; k < 2; k++) {
		if (pipe(go[k]) < 0 || pipe(done[k]) < 0)
			return 2;
		kid[k] = fork();
		if (kid[k] < 0)
			return 2;
		if (kid[k] > 0)
			continue;
		if (k == 1) {
			static const char *const libs[] = {"libpq.so.5",
			                                   "libssl.so.3",
			                                   "libcrypto.so.3",
			                                   "libmicrohttpd.so.12",
			                                   "libjansson.so.4",
			                                   "libseccomp.so.2",
			                                   NULL};
			for (int i = 0; libs[i]; i++)
				if (!dlopen(libs[i], RTLD_NOW | RTLD_GLOBAL)) {
					fprintf(stderr, "clonecost: %s\n", dlerror());
					_exit(3);
				}
			char *heap = malloc((size_t)anon_kb << 10);
			if (anon_kb && !heap)
				_exit(3);
			for (long i = 0; i < anon_kb << 10; i += 4096)
				heap[i] = 1;
		}
		maps[k] = mappings();
		_exit(side(k ? big : small, n, go[k][0], done[k][1]) < 0 ? 4 : 0);
	}
	int rc = 0;
	for (int c = 0; !rc && c < CHUNKS; c++)
		for (int k = 0; !rc && k < 2; k++) {
			char x = 'G';
			rc = write(go[k][1], &x, 1) != 1 || read(done[k][0], &x, 1) != 1 || x != 'D';
		}
	for (int k = 0; k < 2; k++) {
		int st;
		close(go[k][1]);
		if (waitpid(kid[k], &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
			rc = 1;
	}
	if (rc)
		return 1;
	qsort(small, (size_t)n, sizeof(double), cmp);
	qsort(big, (size_t)n, sizeof(double), cmp);
	printf("| process | mappings | clone + exit + reap: p50 / p90 ms |\n|---|---:|---:|\n");
	printf("| small (libc only) | %.0f | %.3f / %.3f |\n", maps[0], small[n / 2], small[n * 9 / 10]);
	printf("| zmeshd's libraries, %ld KiB touched | %.0f | %.3f / %.3f |\n", anon_kb, maps[1], big[n / 2],
	       big[n * 9 / 10]);
	return 0;
}

/* tty.c - see tty.h */
#define _GNU_SOURCE
#include "tty.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <termios.h>
#include <unistd.h>

#include "cleanup.h"

int tty_read_line(int fd, char *buf, size_t size)
{
	size_t n = 0;
	for (;;) {
		char ch;
		ssize_t k = read(fd, &ch, 1);
		if (k < 0)
			return -errno;
		if (k == 0) {
			if (n == 0)
				return -ENODATA;
			break;
		}
		if (ch == '\n')
			break;
		if (n + 1 >= size)
			return -E2BIG;
		buf[n++] = ch;
	}
	if (n > 0 && buf[n - 1] == '\r')
		n--;
	buf[n] = '\0';
	return 0;
}

static void ignore_signal(int sig)
{
	(void)sig;
}

int tty_prompt_hidden(const char *question, char *buf, size_t size)
{
	struct termios old, quiet;
	if (tcgetattr(STDIN_FILENO, &old) < 0)
		return -errno;
	quiet = old;
	quiet.c_lflag &= ~(tcflag_t)ECHO;
	quiet.c_lflag |= ECHONL;
	/* No SA_RESTART: a signal ends the read, and the mode is restored. */
	struct sigaction sa = {.sa_handler = ignore_signal}, saved[3];
	static const int sigs[] = {SIGINT, SIGTERM, SIGHUP};
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < ELEMENTSOF(sigs); i++)
		sigaction(sigs[i], &sa, &saved[i]);
	fputs(question, stderr);
	fflush(stderr);
	int r = tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet) < 0 ? -errno : 0;
	if (r == 0)
		r = tty_read_line(STDIN_FILENO, buf, size);
	tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
	for (size_t i = 0; i < ELEMENTSOF(sigs); i++)
		sigaction(sigs[i], &saved[i], NULL);
	return r;
}

/* common.h - what every module of the zmesh client shares: cleanup
 * attributes, the error object and the exit codes. */
#pragma once

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <unistd.h>

#include <jansson.h>

#define _cleanup_(f)    __attribute__((cleanup(f)))
#define _cleanup_free_  _cleanup_(cli_freep)
#define _cleanup_close_ _cleanup_(cli_closep)
#define _cleanup_json_  _cleanup_(cli_json_decrefp)
#define _printf_(a, b)  __attribute__((format(printf, a, b)))
#define ELEMENTSOF(x)   (sizeof(x) / sizeof((x)[0]))

/* Hand ownership on: the variable is reset so its cleanup does nothing. */
#define TAKE_PTR(p)                     \
	({                              \
		__typeof__(p) _p = (p); \
		(p) = NULL;             \
		_p;                     \
	})

/* Exit statuses: scripts tell a refused command (usage) from a failed one. */
enum {
	CLI_EXIT_OK = 0,
	CLI_EXIT_FAIL = 1,
	CLI_EXIT_USAGE = 2,
};

static inline void cli_freep(void *p)
{
	free(*(void **)p);
}
static inline void cli_closep(int *fd)
{
	if (*fd >= 0)
		close(*fd);
}
static inline void cli_json_decrefp(json_t **j)
{
	json_decref(*j);
}

/* One line saying what failed. Modules fill it and return a negative errno;
 * main prints it once. */
struct cli_error {
	char msg[768];
};

/* Fill *err (may be NULL) and return code, which must be negative. */
int cli_err(struct cli_error *err, int code, const char *fmt, ...) _printf_(3, 4);

/* A copy of s fit for a terminal: control characters (escape sequences from a
 * hostile server or function) become '?'; newlines and tabs are kept when
 * keep_lines. At most max bytes of s are used, "..." marks a cut. */
char *cli_sanitize(const char *s, size_t max, bool keep_lines);

/* Read everything from fd (at most max bytes) into a NUL-terminated buffer.
 * -EFBIG when there is more. */
int cli_read_fd(int fd, size_t max, char **ret, size_t *ret_len);

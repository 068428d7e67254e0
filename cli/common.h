/* common.h - what every module of the zmesh client shares: the exit
 * codes and terminal-safe text; the error object and cleanup attributes come
 * from common/. */
#pragma once

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <unistd.h>

#include <jansson.h>

#include "cleanup.h"
#include "error.h"

#define _cleanup_json_ _cleanup_(cli_json_decrefp)

/* Exit statuses: scripts tell a refused command (usage) from a failed one. */
enum {
	CLI_EXIT_OK = 0,
	CLI_EXIT_FAIL = 1,
	CLI_EXIT_USAGE = 2,
};

static inline void cli_json_decrefp(json_t **j)
{
	json_decref(*j);
}

/* A copy of s fit for a terminal: control characters (escape sequences from a
 * hostile server or function) become '?'; newlines and tabs are kept when
 * keep_lines. At most max bytes of s are used, "..." marks a cut. */
char *cli_sanitize(const char *s, size_t max, bool keep_lines);

/* Read everything from fd (at most max bytes) into a NUL-terminated buffer.
 * -EFBIG when there is more. */
int cli_read_fd(int fd, size_t max, char **ret, size_t *ret_len);

/* error.h - the error object every C part of zmesh shares (the sandbox
 * library, zmeshd, the client): a negative errno and one line saying what
 * failed. Library code fills it and returns the code; the layer that talks to
 * a person (a log line, an HTTP answer, a terminal) reports it once. */
#pragma once

#include <errno.h>
#include <stdarg.h>

#include "cleanup.h"

struct zerr {
	int code;
	char msg[768];
};

/* Fill *err (may be NULL) and return code, which must be negative. */
int zerr_set(struct zerr *err, int code, const char *fmt, ...) _printf_(3, 4);

/* buf.h - a growable byte buffer for text built piece by piece (Prometheus
 * text, JSON lines, reads of a descriptor): it grows up to a hard limit and
 * remembers a failure instead of truncating silently.
 *
 * Usage: struct buf b = BUF_INIT(limit); buf_printf(&b, ...); ...;
 * if (b.failed) ... else use b.data, b.len; buf_free(&b).
 * data is always NUL-terminated once anything was appended. */
#pragma once

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#include "cleanup.h"

struct buf {
	char *data;
	size_t len;
	size_t cap;
	size_t limit; /* the most data may hold, NUL included; 0: no limit */
	int failed;   /* 0, or the negative errno of the first failure (-ENOMEM, -E2BIG) */
};

#define BUF_INIT(lim) ((struct buf){.limit = (lim)})

/* Append n bytes. Returns 0 or the failure, which sticks: later appends do
 * nothing, so a sequence of appends is checked once at its end. */
int buf_append(struct buf *b, const void *p, size_t n);
int buf_puts(struct buf *b, const char *s);
int buf_printf(struct buf *b, const char *fmt, ...) _printf_(2, 3);
int buf_vprintf(struct buf *b, const char *fmt, va_list ap) _printf_(2, 0);
/* Make room for n more bytes at data + len (for a read(2) into it). */
int buf_reserve(struct buf *b, size_t n);
/* Hand the data on: the caller frees it; b is empty afterwards. */
char *buf_steal(struct buf *b);
void buf_free(struct buf *b);

#define _cleanup_buf_ _cleanup_(buf_free)

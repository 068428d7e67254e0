/* util.h - small helpers shared by the sandbox library and its tools:
 * bounded parsing and sysfs I/O. */
#pragma once

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "cleanup.h"
#include "error.h"

/* Parse "512", "64K", "256M", "2G" (powers of 1024) into bytes. Rejects empty,
 * negative, trailing garbage, overflow and values above max. */
int util_parse_size(const char *s, uint64_t max, uint64_t *ret);
/* Parse a decimal unsigned integer in [min, max]. */
int util_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *ret);

/* Write a whole string to an existing file (sysfs, procfs): one write(2). */
int util_write_file(const char *path, const char *s);
/* Read up to size-1 bytes of a small file into buf, NUL-terminated. */
int util_read_file(const char *path, char *buf, size_t size);

/* Monotonic clock in nanoseconds. */
uint64_t util_now_ns(void);

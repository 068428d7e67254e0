/* log.h - structured logs: one JSON object per line on stderr
 * ({"ts":...,"level":"info","event":"invoke","request_id":...}), the same
 * shape as the HTTP layer's request lines, so one tool reads them all.
 * Thread-safe: each line is one write(2). */
#pragma once

#include <stddef.h>

enum zlog_level { ZLOG_DEBUG, ZLOG_INFO, ZLOG_WARN, ZLOG_ERROR };

/* The one mutable global of the daemon: the threshold. */
extern enum zlog_level zlog_threshold;

/* Emit event with key/value string pairs, ended by NULL. A NULL value is
 * skipped. The line is cut at 16 KiB of JSON, never split. */
void zlog(enum zlog_level level, const char *event, ...) __attribute__((sentinel));

/* Format a line (with its newline) into buf; returns its length, or -1
 * when it does not fit. */
int zlog_format(char *buf, size_t size, enum zlog_level level, const char *event, const char *const *kv, size_t n_kv);

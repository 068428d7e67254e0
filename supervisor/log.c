/* log.c - see log.h */
#define _GNU_SOURCE
#include "log.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum zlog_level zlog_threshold = ZLOG_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

int zlog_format(char *buf, size_t size, enum zlog_level level, const char *event, const char *const *kv, size_t n_kv)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct tm tm;
	gmtime_r(&ts.tv_sec, &tm);
	char when[64];
	snprintf(when, sizeof(when), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
	         tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
	json_t *o = json_pack("{s:s, s:s, s:s}", "ts", when, "level", level_names[level], "event", event);
	for (size_t i = 0; o && i + 1 < n_kv; i += 2)
		if (kv[i + 1])
			/* Invalid UTF-8 from outside becomes a marker, not a lost line. */
			json_object_set_new(o, kv[i], json_string(kv[i + 1]) ?: json_string("(not UTF-8)"));
	size_t n = o ? json_dumpb(o, buf, size > 0 ? size - 1 : 0, JSON_COMPACT) : 0;
	json_decref(o);
	if (n == 0 || n >= size - 1)
		return -1;
	buf[n++] = '\n';
	buf[n] = '\0';
	return (int)n;
}

void zlog(enum zlog_level level, const char *event, ...)
{
	if (level < zlog_threshold)
		return;
	const char *kv[64];
	size_t n = 0;
	va_list ap;
	va_start(ap, event);
	const char *k;
	while ((k = va_arg(ap, const char *)) && n + 2 <= sizeof(kv) / sizeof(kv[0])) {
		kv[n++] = k;
		kv[n++] = va_arg(ap, const char *);
	}
	va_end(ap);
	char line[16384];
	int len = zlog_format(line, sizeof(line), level, event, kv, n);
	if (len < 0)
		len = snprintf(line, sizeof(line), "{\"level\":\"%s\",\"event\":\"log_line_too_long\"}\n",
		               level_names[level]);
	ssize_t w = write(STDERR_FILENO, line, (size_t)len);
	(void)w;
}

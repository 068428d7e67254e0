/* jsontext.c - see jsontext.h */
#define _GNU_SOURCE
#include "jsontext.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "buf.h"
#include "cleanup.h"

#define DEPTH_MAX 4096

static bool fits_15(double d)
{
	char t[32];
	snprintf(t, sizeof(t), "%.15g", d);
	return strtod(t, NULL) == d;
}

static bool long_real(json_t *v)
{
	return json_is_real(v) && !fits_15(json_real_value(v));
}

/* Whether j holds a real that needs more than 15 significant digits. */
static bool has_long_real(json_t *j, unsigned depth)
{
	const char *k;
	json_t *v;
	size_t i;
	if (json_is_real(j))
		return long_real(j);
	if (depth > DEPTH_MAX)
		return false;
	if (json_is_object(j)) {
		json_object_foreach (j, k, v)
			if (has_long_real(v, depth + 1))
				return true;
	} else if (json_is_array(j)) {
		json_array_foreach (j, i, v)
			if (has_long_real(v, depth + 1))
				return true;
	}
	return false;
}

/* The string that stands for a long real in the copy: "\1TAG:N\1", N its
 * index in longs. */
static json_t *tag_real(json_t *longs, json_t *v, const char *tag)
{
	size_t n = json_array_size(longs);
	return json_array_append(longs, v) < 0 ? NULL : json_sprintf("\1%s:%zu\1", tag, n);
}

/* Replace each long real of j (a copy of our own) by its tagged string. */
static int mark_long_reals(json_t *j, json_t *longs, const char *tag, unsigned depth)
{
	const char *k;
	json_t *v, *t;
	size_t i;
	if (depth > DEPTH_MAX)
		return 0;
	if (json_is_object(j)) {
		json_object_foreach (j, k, v) {
			if (!long_real(v)) {
				if (mark_long_reals(v, longs, tag, depth + 1) < 0)
					return -ENOMEM;
			} else if (!(t = tag_real(longs, v, tag)) || json_object_set_new(j, k, t) < 0)
				return -ENOMEM;
		}
	} else if (json_is_array(j)) {
		json_array_foreach (j, i, v) {
			if (!long_real(v)) {
				if (mark_long_reals(v, longs, tag, depth + 1) < 0)
					return -ENOMEM;
			} else if (!(t = tag_real(longs, v, tag)) || json_array_set_new(j, i, t) < 0)
				return -ENOMEM;
		}
	}
	return 0;
}

static void decref(json_t **j)
{
	json_decref(*j);
}

char *json_dumps_exact(json_t *j, size_t flags)
{
	flags |= JSON_REAL_PRECISION(15);
	if (!has_long_real(j, 0))
		return json_dumps(j, flags);
	if (json_is_real(j))
		return json_dumps(j, flags & ~(size_t)JSON_REAL_PRECISION(31));
	uint8_t rnd[8];
	char tag[2 * sizeof(rnd) + 1];
	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
		return NULL;
	for (size_t i = 0; i < sizeof(rnd); i++)
		snprintf(tag + 2 * i, 3, "%02x", rnd[i]);
	_cleanup_(decref) json_t *copy = json_deep_copy(j);
	_cleanup_(decref) json_t *longs = json_array();
	if (!copy || !longs || mark_long_reals(copy, longs, tag, 0) < 0)
		return NULL;
	_cleanup_free_ char *s = json_dumps(copy, flags);
	if (!s)
		return NULL;
	char mark[48];
	size_t mn = (size_t)snprintf(mark, sizeof(mark), "\"\\u0001%s:", tag);
	static const char tail[] = "\\u0001\"";
	_cleanup_buf_ struct buf out = BUF_INIT(0);
	for (const char *at = s;;) {
		const char *hit = strstr(at, mark);
		const char *end = hit ? strstr(hit + mn, tail) : NULL;
		if (!end) {
			buf_puts(&out, at);
			break;
		}
		buf_append(&out, at, (size_t)(hit - at));
		buf_printf(&out, "%.17g", json_real_value(json_array_get(longs, strtoul(hit + mn, NULL, 10))));
		at = end + strlen(tail);
	}
	return out.failed || !out.data ? NULL : buf_steal(&out);
}

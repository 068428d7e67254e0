/* buf.c - see buf.h */
#include "buf.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int buf_reserve(struct buf *b, size_t n)
{
	if (b->failed)
		return b->failed;
	if (n > SIZE_MAX - b->len - 1)
		return b->failed = -E2BIG;
	size_t need = b->len + n + 1;
	if (b->limit && need > b->limit)
		return b->failed = -E2BIG;
	if (need <= b->cap)
		return 0;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	if (b->limit && cap > b->limit)
		cap = b->limit;
	char *d = realloc(b->data, cap);
	if (!d)
		return b->failed = -ENOMEM;
	b->data = d;
	b->cap = cap;
	return 0;
}

int buf_append(struct buf *b, const void *p, size_t n)
{
	int r = buf_reserve(b, n);
	if (r < 0)
		return r;
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
	return 0;
}

int buf_puts(struct buf *b, const char *s)
{
	return buf_append(b, s, strlen(s));
}

int buf_vprintf(struct buf *b, const char *fmt, va_list ap)
{
	if (b->failed)
		return b->failed;
	va_list again;
	va_copy(again, ap);
	char small[256];
	int n = vsnprintf(small, sizeof(small), fmt, ap);
	if (n < 0) {
		va_end(again);
		return b->failed = -EINVAL;
	}
	int r;
	if ((size_t)n < sizeof(small))
		r = buf_append(b, small, (size_t)n);
	else if ((r = buf_reserve(b, (size_t)n)) == 0) {
		vsnprintf(b->data + b->len, (size_t)n + 1, fmt, again);
		b->len += (size_t)n;
	}
	va_end(again);
	return r;
}

int buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int r = buf_vprintf(b, fmt, ap);
	va_end(ap);
	return r;
}

char *buf_steal(struct buf *b)
{
	char *d = b->data;
	*b = BUF_INIT(b->limit);
	return d;
}

void buf_free(struct buf *b)
{
	free(b->data);
	*b = BUF_INIT(b->limit);
}

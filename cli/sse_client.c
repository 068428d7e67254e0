/* sse_client.c - see sse_client.h */
#include "sse_client.h"

#include <stdlib.h>
#include <string.h>

int sse_client_init(struct sse_client *p)
{
	memset(p, 0, sizeof(*p));
	p->retry_ms = -1;
	p->line = malloc(SSE_CLIENT_LINE_MAX + 1);
	p->data = malloc(SSE_CLIENT_DATA_MAX + 1);
	if (!p->line || !p->data) {
		sse_client_done(p);
		return -1;
	}
	return 0;
}

void sse_client_done(struct sse_client *p)
{
	free(p->line);
	free(p->data);
	p->line = p->data = NULL;
}

static void set_field(char *dst, const char *v, size_t n)
{
	if (n > SSE_CLIENT_FIELD_MAX || memchr(v, '\0', n))
		return;
	memcpy(dst, v, n);
	dst[n] = '\0';
}

static void dispatch(struct sse_client *p, sse_client_fn fn, void *ctx)
{
	if (p->has_data && !p->data_over) {
		size_t n = p->data_len;
		if (n && p->data[n - 1] == '\n')
			n--;
		p->data[n] = '\0';
		fn(ctx, p->event[0] ? p->event : "message", p->id, p->data, n);
	}
	p->data_len = 0;
	p->data_over = p->has_data = false;
	p->event[0] = '\0';
}

static void field(struct sse_client *p, const char *line, size_t len, sse_client_fn fn, void *ctx)
{
	if (len == 0) {
		dispatch(p, fn, ctx);
		return;
	}
	if (line[0] == ':')
		return; /* a comment */
	const char *colon = memchr(line, ':', len);
	size_t nlen = colon ? (size_t)(colon - line) : len;
	const char *v = colon ? colon + 1 : line + len;
	size_t vlen = colon ? len - nlen - 1 : 0;
	if (vlen && v[0] == ' ') {
		v++;
		vlen--;
	}
	if (nlen == 5 && memcmp(line, "event", 5) == 0) {
		set_field(p->event, v, vlen);
	} else if (nlen == 4 && memcmp(line, "data", 4) == 0) {
		p->has_data = true;
		if (p->data_over || vlen + 1 > SSE_CLIENT_DATA_MAX - p->data_len) {
			p->data_over = true;
			return;
		}
		memcpy(p->data + p->data_len, v, vlen);
		p->data_len += vlen;
		p->data[p->data_len++] = '\n';
	} else if (nlen == 2 && memcmp(line, "id", 2) == 0) {
		set_field(p->id, v, vlen);
	} else if (nlen == 5 && memcmp(line, "retry", 5) == 0) {
		long ms = 0;
		size_t i = 0;
		for (; i < vlen && i < 9 && v[i] >= '0' && v[i] <= '9'; i++)
			ms = ms * 10 + (v[i] - '0');
		if (i == vlen && vlen > 0)
			p->retry_ms = ms;
	}
}

void sse_client_feed(struct sse_client *p, const char *buf, size_t len, sse_client_fn fn, void *ctx)
{
	for (size_t i = 0; i < len; i++) {
		char ch = buf[i];
		if (ch == '\n' && p->after_cr) {
			p->after_cr = false;
			continue;
		}
		p->after_cr = ch == '\r';
		if (ch == '\n' || ch == '\r') {
			if (!p->line_over)
				field(p, p->line, p->line_len, fn, ctx);
			p->line_len = 0;
			p->line_over = false;
			continue;
		}
		if (p->line_len == SSE_CLIENT_LINE_MAX) {
			p->line_over = true;
			continue;
		}
		p->line[p->line_len++] = ch;
	}
}

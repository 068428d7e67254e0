/* fuzz_sse_client.c - libFuzzer harness for the client's Server-Sent Events
 * parser (cli/sse_client.c, `zmesh logs --follow`), on a stream as a server
 * (or anything in between) sends it. The first byte picks how the input is
 * cut into chunks. Checks: the events are the same whatever the chunking;
 * every event's type and id are bounded and hold no line end; data is
 * NUL-terminated at its length and within its bound. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sse_client.h"

struct seen {
	uint64_t hash;
	size_t n;
};

static uint64_t mix(uint64_t h, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
	return (h ^ 0xff) * 1099511628211ull;
}

static void on_event(void *ctx, const char *event, const char *id, const char *data, size_t len)
{
	struct seen *s = ctx;
	size_t el = strlen(event), il = strlen(id);
	if (el == 0 || el > SSE_CLIENT_FIELD_MAX || il > SSE_CLIENT_FIELD_MAX || len > SSE_CLIENT_DATA_MAX ||
	    data[len] != '\0' || strpbrk(event, "\r\n") || strpbrk(id, "\r\n") || memchr(data, '\r', len))
		abort();
	s->hash = mix(mix(mix(s->hash, event, el), id, il), data, len);
	s->n++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	size_t step = (size_t)data[0] % 17 + 1;
	const char *in = (const char *)data + 1;
	size_t n = size - 1;

	struct sse_client a, b;
	if (sse_client_init(&a) < 0)
		return 0;
	if (sse_client_init(&b) < 0) {
		sse_client_done(&a);
		return 0;
	}
	struct seen whole = {14695981039346656037ull, 0}, cut = {14695981039346656037ull, 0};
	sse_client_feed(&a, in, n, on_event, &whole);
	for (size_t i = 0; i < n; i += step)
		sse_client_feed(&b, in + i, n - i < step ? n - i : step, on_event, &cut);
	if (whole.n != cut.n || whole.hash != cut.hash || a.retry_ms != b.retry_ms)
		abort();
	sse_client_done(&a);
	sse_client_done(&b);
	return 0;
}

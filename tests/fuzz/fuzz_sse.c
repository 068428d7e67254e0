/* fuzz_sse.c - libFuzzer harness for the live logs' Server-Sent Events
 * (supervisor/logstream.c): sse_parse_event_id on a Last-Event-ID as a client
 * sends it (header or ?last_event_id=), and sse_append_event on a fuzzed
 * event name and data. Checks the id against a plain reference (digits,
 * blanks around, at most INT64_MAX) and that an appended event is exactly
 * the four lines it promises, so no data can add a field or an event. */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "logstream.h"

static int ref_parse(const char *s, int64_t *ret)
{
	size_t n = strlen(s), a = 0, b = n;
	while (a < n && (s[a] == ' ' || s[a] == '\t'))
		a++;
	while (b > a && (s[b - 1] == ' ' || s[b - 1] == '\t'))
		b--;
	if (a == b || b - a > 19)
		return -EINVAL;
	unsigned __int128 v = 0;
	for (size_t i = a; i < b; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	if (v > INT64_MAX)
		return -EINVAL;
	*ret = (int64_t)v;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';

	int64_t got = -7, want = -7;
	int r = sse_parse_event_id(s, &got), rr = ref_parse(s, &want);
	if (r != rr || (r == 0 && got != want) || (r < 0 && got != -7))
		abort();
	if (r == 0) {
		char back[32];
		snprintf(back, sizeof(back), "%" PRId64, got);
		int64_t again = -1;
		if (sse_parse_event_id(back, &again) != 0 || again != got)
			abort();
	}

	/* name: up to the first NUL (or 17 bytes); data: the rest */
	size_t nl = strnlen(s, size < 17 ? size : 17);
	char name[18];
	memcpy(name, s, nl);
	name[nl] = '\0';
	const char *d = nl < size ? s + nl + 1 : s + size;
	size_t dlen = nl < size ? size - nl - 1 : 0;
	struct buf b = BUF_INIT(1 << 20);
	int64_t id = size % 3 == 0 ? -1 : (int64_t)size;
	r = sse_append_event(&b, name, id, d, dlen);
	bool name_ok = nl >= 1 && nl <= 16;
	for (size_t i = 0; i < nl; i++)
		name_ok = name_ok && name[i] >= 'a' && name[i] <= 'z';
	bool data_ok = !memchr(d, '\n', dlen) && !memchr(d, '\r', dlen);
	if ((r == 0) != (name_ok && data_ok))
		abort();
	if (r == 0) {
		struct buf w = BUF_INIT(1 << 20);
		buf_printf(&w, "event: %s\n", name);
		if (id >= 0)
			buf_printf(&w, "id: %" PRId64 "\n", id);
		buf_puts(&w, "data: ");
		buf_append(&w, d, dlen);
		buf_puts(&w, "\n\n");
		if (w.failed || w.len != b.len || memcmp(w.data, b.data, b.len) != 0)
			abort();
		/* exactly one blank line, at the end: one event */
		for (size_t i = 0; i + 1 < b.len - 1; i++)
			if (b.data[i] == '\n' && b.data[i + 1] == '\n')
				abort();
		buf_free(&w);
	} else if (b.len != 0)
		abort();
	buf_free(&b);
	free(s);
	return 0;
}

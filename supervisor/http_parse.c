/* http_parse.c - see http_parse.h */
#include "http_parse.h"

#include <errno.h>
#include <string.h>

#include "codec.h"
#include "utf8.h"

int http_pct_decode(const char *in, size_t n, char *out, size_t out_size, size_t *ret_len)
{
	size_t o = 0;
	if (out_size == 0)
		return -E2BIG;
	for (size_t i = 0; i < n; i++) {
		char c = in[i];
		if (c == '%') {
			if (i + 2 >= n)
				return -EINVAL;
			int h = codec_hex_digit(in[i + 1]), l = codec_hex_digit(in[i + 2]);
			if (h < 0 || l < 0)
				return -EINVAL;
			c = (char)(h << 4 | l);
			i += 2;
		}
		if (o + 1 >= out_size)
			return -E2BIG;
		out[o++] = c;
	}
	out[o] = '\0';
	*ret_len = o;
	return 0;
}

bool http_text_clean(const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	for (size_t i = 0; i < n;) {
		if (p[i] < 0x20 || p[i] == 0x7f)
			return false;
		size_t l = utf8_seq_len(p + i, n - i);
		if (!l)
			return false;
		i += l;
	}
	return true;
}

int http_query_decode(const char *raw, size_t n, char *out, size_t out_size, size_t *ret_len)
{
	size_t dl;
	int r = http_pct_decode(raw, n, out, out_size, &dl);
	if (r < 0)
		return r;
	if (!http_text_clean(out, dl))
		return -EINVAL;
	*ret_len = dl;
	return 0;
}

enum http_target_verdict http_target_check(const char *target, size_t len)
{
	if (len > HTTP_TARGET_MAX)
		return HTTP_TARGET_TOO_LONG;
	/* Controls have no place in a request target (RFC 9112); a NUL would
	 * silently end it for every C string that holds it afterwards. */
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)target[i];
		if (c <= 0x20 || c == 0x7f)
			return HTTP_TARGET_BAD_CHARACTER;
	}
	const char *q = memchr(target, '?', len);
	if (!q)
		return HTTP_TARGET_OK;
	size_t args = 1;
	for (const char *p = q + 1; p < target + len; p++)
		if (*p == '&' && ++args > HTTP_QUERY_ARGS_MAX)
			return HTTP_TARGET_TOO_MANY_ARGS;
	return HTTP_TARGET_OK;
}

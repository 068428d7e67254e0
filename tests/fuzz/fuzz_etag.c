/* fuzz_etag.c - the dashboard's If-None-Match matching (api_ui.c) against
 * a reference written apart from it: the header is split at commas, each
 * member trimmed of spaces and tabs; it names the asset when it is "*", the
 * tag, or the tag with W/ before it. The header is any bytes up to the first
 * NUL (what the HTTP layer hands over); the tag is a real one of the
 * embedded assets, or, when the input starts with 0x01, one taken from the
 * input. */
#include <assert.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api_ui.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool is_space(char c)
{
	return c == ' ' || c == '\t';
}

static bool reference(const char *h, const char *tag)
{
	size_t n = strlen(tag), hl = strlen(h);
	for (size_t i = 0; i <= hl;) {
		size_t j = i;
		while (j < hl && h[j] != ',')
			j++;
		size_t a = i, b = j;
		while (a < b && is_space(h[a]))
			a++;
		while (b > a && is_space(h[b - 1]))
			b--;
		size_t len = b - a;
		if (len == 1 && h[a] == '*')
			return true;
		if (len == n && n && memcmp(h + a, tag, n) == 0)
			return true;
		if (len == n + 2 && h[a] == 'W' && h[a + 1] == '/' && memcmp(h + a + 2, tag, n) == 0)
			return true;
		i = j + 1;
	}
	return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *tag = web_n_assets ? web_assets[0].etag : "\"x\"";
	char *own = NULL;
	if (size && data[0] == 1) {
		/* 0x01, a tag of up to 16 bytes (no NUL, no comma), then the header. */
		size_t k = 1;
		while (k < size && k < 17 && data[k] && data[k] != ',' && data[k] != ' ' && data[k] != '\t')
			k++;
		own = strndup((const char *)data + 1, k - 1);
		assert(own);
		tag = own;
		data += k;
		size -= k;
	}
	char *h = strndup((const char *)data, size);
	assert(h);
	bool got = ui_etag_matches(h, tag);
	/* An empty tag is never the asset's; only "*" can name it then. */
	assert(got == reference(h, tag));
	assert(!ui_etag_matches(NULL, tag));
	free(h);
	free(own);
	return 0;
}

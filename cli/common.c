/* common.c - terminal-safe strings and reading a descriptor whole. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common.h"
#include "utf8.h"

char *cli_sanitize(const char *s, size_t max, bool keep_lines)
{
	size_t n = strlen(s);
	bool cut = n > max;
	if (cut)
		n = utf8_cut_len(s, n, max); /* never in the middle of a character */
	char *out = malloc(n + 4);
	if (!out)
		return NULL;
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (keep_lines && (ch == '\n' || ch == '\t'))
			out[k++] = (char)ch;
		else if (ch < 0x20 || ch == 0x7f)
			out[k++] = '?';
		else if (ch == 0xc2 && i + 1 < n && (unsigned char)s[i + 1] >= 0x80 &&
		         (unsigned char)s[i + 1] <= 0x9f) {
			/* U+0080..U+009F: C1 controls, CSI among them. */
			out[k++] = '?';
			i++;
		} else
			out[k++] = (char)ch;
	}
	if (cut) {
		memcpy(out + k, "...", 3);
		k += 3;
	}
	out[k] = '\0';
	return out;
}

int cli_read_fd(int fd, size_t max, char **ret, size_t *ret_len)
{
	/* Grown as data comes: max may be far above the usual file. */
	size_t cap = 4096, n = 0;
	_cleanup_free_ char *buf = malloc(cap);
	if (!buf)
		return -ENOMEM;
	for (;;) {
		if (n + 1 == cap) {
			cap *= 2;
			char *p = realloc(buf, cap);
			if (!p)
				return -ENOMEM;
			buf = p;
		}
		ssize_t k = read(fd, buf + n, cap - 1 - n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -errno;
		if (k == 0)
			break;
		n += (size_t)k;
		if (n > max)
			return -EFBIG;
	}
	buf[n] = '\0';
	*ret = TAKE_PTR(buf);
	*ret_len = n;
	return 0;
}

/* table.c - aligned columns for people. */
#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "table.h"

/* A cell longer than this is cut: a table is for reading, --json has it all. */
#define CELL_MAX 200

struct table {
	size_t ncols, nrows, cap;
	char **cells; /* nrows * ncols, row-major; row 0 is the header */
	size_t *width;
};

/* Columns are measured in characters, not bytes: UTF-8 continuation bytes
 * take no room. */
static size_t display_width(const char *s)
{
	size_t w = 0;
	for (; *s; s++)
		if (((unsigned char)*s & 0xc0) != 0x80)
			w++;
	return w;
}

void table_free(struct table *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->nrows * t->ncols; i++)
		free(t->cells[i]);
	free(t->cells);
	free(t->width);
	free(t);
}

struct table *table_new(const char *const *header)
{
	size_t n = 0;
	while (header[n])
		n++;
	struct table *t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->ncols = n;
	t->width = calloc(n ? n : 1, sizeof(*t->width));
	if (!t->width || table_add(t, header) < 0) {
		table_free(t);
		return NULL;
	}
	return t;
}

int table_add(struct table *t, const char *const *cells)
{
	if (t->nrows == t->cap) {
		size_t cap = t->cap ? 2 * t->cap : 16;
		char **p = reallocarray(t->cells, cap * (t->ncols ? t->ncols : 1), sizeof(*p));
		if (!p)
			return -ENOMEM;
		t->cells = p;
		t->cap = cap;
	}
	char **row = t->cells + t->nrows * t->ncols;
	for (size_t i = 0; i < t->ncols; i++) {
		row[i] = cli_sanitize(cells[i] ? cells[i] : "-", CELL_MAX, false);
		if (!row[i]) {
			while (i-- > 0)
				free(row[i]);
			return -ENOMEM;
		}
	}
	for (size_t i = 0; i < t->ncols; i++) {
		size_t w = display_width(row[i]);
		if (w > t->width[i])
			t->width[i] = w;
	}
	t->nrows++;
	return 0;
}

int table_print(const struct table *t, FILE *f)
{
	for (size_t r = 0; r < t->nrows; r++) {
		char **row = t->cells + r * t->ncols;
		for (size_t i = 0; i < t->ncols; i++) {
			bool last = i + 1 == t->ncols;
			fputs(row[i], f);
			if (!last)
				for (size_t pad = display_width(row[i]); pad < t->width[i] + 2; pad++)
					fputc(' ', f);
		}
		fputc('\n', f);
	}
	return ferror(f) ? -EIO : 0;
}

const char *cell_json(json_t *v, char *buf, size_t size)
{
	if (json_is_string(v))
		snprintf(buf, size, "%s", json_string_value(v));
	else if (json_is_integer(v))
		snprintf(buf, size, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
	else if (json_is_real(v))
		snprintf(buf, size, "%.0f", json_real_value(v));
	else if (json_is_true(v))
		snprintf(buf, size, "yes");
	else if (json_is_false(v))
		snprintf(buf, size, "no");
	else
		snprintf(buf, size, "-");
	return buf;
}

const char *cell_time(json_t *v, char *buf, size_t size)
{
	const char *s = json_string_value(v);
	/* "2026-01-02T03:04:05.678+00:00": keep date and seconds; the server
	 * speaks UTC. Anything else is shown as it came. */
	if (s && strlen(s) >= 19 && s[10] == 'T') {
		snprintf(buf, size, "%.10s %.8s", s, s + 11);
		return buf;
	}
	return cell_json(v, buf, size);
}

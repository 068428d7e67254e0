/* table.h - aligned columns for people. Cells are copied and sanitised, so
 * whatever the server sends cannot drive the terminal. */
#pragma once

#include <stdio.h>

#include "common.h"

struct table;

/* A table with ncols columns named by the NULL-terminated header list. */
struct table *table_new(const char *const *header);
void table_free(struct table *t);
static inline void table_freep(struct table **t)
{
	table_free(*t);
}

/* Append a row of ncols cells; a NULL cell prints as "-". */
int table_add(struct table *t, const char *const *cells);

/* Print the header and rows to f, columns two spaces apart. */
int table_print(const struct table *t, FILE *f);

/* Display helpers for cells: the JSON value as text ("-" for null or
 * missing), and an ISO timestamp shortened to "YYYY-MM-DD HH:MM:SS". Both
 * write into buf and return it. */
const char *cell_json(json_t *v, char *buf, size_t size);
const char *cell_time(json_t *v, char *buf, size_t size);

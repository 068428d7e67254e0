/* sqlscan.c - see sqlscan.h */
#include "sqlscan.h"

#include <string.h>

static bool ident_start(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c >= 0x80;
}

static bool ident_char(unsigned char c)
{
	return ident_start(c) || (c >= '0' && c <= '9') || c == '$';
}

static bool word_is(const char *w, const char *upper)
{
	return strcmp(w, upper) == 0;
}

static size_t line_of(const char *s, size_t off)
{
	size_t line = 1;
	for (size_t i = 0; i < off; i++)
		line += s[i] == '\n';
	return line;
}

static enum sqlscan_status finish(struct sqlscan_result *ret, enum sqlscan_status st, const char *s, size_t off)
{
	ret->status = st;
	ret->offset = off;
	ret->line = line_of(s, off);
	return st;
}

/* The end of a quoted token opened at s[i] by q ('\'' or '"'), doubled q
 * standing for itself and, with backslashes, "\x" for x: the index after
 * the closing quote, or len when it never closes. */
static size_t skip_quoted(const char *s, size_t len, size_t i, char q, bool backslashes)
{
	for (i++; i < len; i++) {
		if (backslashes && s[i] == '\\') {
			i++;
			continue;
		}
		if (s[i] == q) {
			if (i + 1 < len && s[i + 1] == q) {
				i++;
				continue;
			}
			return i + 1;
		}
	}
	return len + 1;
}

enum sqlscan_status sqlscan_check(const char *s, size_t len, struct sqlscan_result *ret)
{
	memset(ret, 0, sizeof(*ret));
	bool in_statement = false, want_first = true, prepare = false;
	unsigned atomic = 0, cases = 0;
	size_t atomic_at = 0;
	char prev[sizeof(ret->word)] = "";
	size_t i = 0;
	while (i < len) {
		unsigned char c = (unsigned char)s[i];
		if (c == '\0')
			return finish(ret, SQLSCAN_NUL, s, i);
		if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v') {
			i++;
			continue;
		}
		if (c == '-' && i + 1 < len && s[i + 1] == '-') {
			while (i < len && s[i] != '\n')
				i++;
			continue;
		}
		if (c == '/' && i + 1 < len && s[i + 1] == '*') {
			size_t start = i;
			unsigned depth = 1;
			for (i += 2; i < len && depth > 0; i++) {
				if (s[i] == '/' && i + 1 < len && s[i + 1] == '*') {
					depth++;
					i++;
				} else if (s[i] == '*' && i + 1 < len && s[i + 1] == '/') {
					depth--;
					i++;
				}
			}
			if (depth > 0)
				return finish(ret, SQLSCAN_UNTERMINATED, s, start);
			continue;
		}
		if (c == ';') {
			if (atomic == 0) {
				ret->statements += in_statement;
				in_statement = false;
				want_first = true;
				prepare = false;
				cases = 0;
				prev[0] = '\0';
			}
			i++;
			continue;
		}
		in_statement = true;
		if (c == '\'' || c == '"') {
			size_t end = skip_quoted(s, len, i, (char)c, false);
			if (end > len)
				return finish(ret, SQLSCAN_UNTERMINATED, s, i);
			i = end;
			want_first = false;
			continue;
		}
		if (c == '$' && i + 1 < len && (s[i + 1] == '$' || ident_start((unsigned char)s[i + 1]))) {
			/* $tag$ ... $tag$; "$1" (a parameter) is not one. */
			size_t t = i + 1;
			while (t < len && s[t] != '$' && ident_char((unsigned char)s[t]) && s[t] != '$')
				t++;
			if (t < len && s[t] == '$') {
				size_t tag_len = t - i + 1;
				const char *close = NULL;
				for (size_t k = t + 1; k + tag_len <= len; k++)
					if (s[k] == '$' && memcmp(s + k, s + i, tag_len) == 0) {
						close = s + k;
						break;
					}
				if (!close)
					return finish(ret, SQLSCAN_UNTERMINATED, s, i);
				i = (size_t)(close - s) + tag_len;
				want_first = false;
				continue;
			}
		}
		if (ident_start(c)) {
			size_t start = i, n = 0;
			char w[sizeof(ret->word)];
			while (i < len && ident_char((unsigned char)s[i])) {
				if (n + 1 < sizeof(w)) {
					char ch = s[i];
					w[n++] = ch >= 'a' && ch <= 'z' ? (char)(ch - 'a' + 'A') : ch;
				}
				i++;
			}
			w[n] = '\0';
			/* E'...': backslash escapes. */
			if (i - start == 1 && w[0] == 'E' && i < len && s[i] == '\'') {
				size_t end = skip_quoted(s, len, i, '\'', true);
				if (end > len)
					return finish(ret, SQLSCAN_UNTERMINATED, s, i);
				i = end;
				want_first = false;
				continue;
			}
			if (want_first) {
				want_first = false;
				if (word_is(w, "BEGIN") || word_is(w, "START") || word_is(w, "COMMIT") ||
				    word_is(w, "END") || word_is(w, "ROLLBACK") || word_is(w, "ABORT")) {
					memcpy(ret->word, w, sizeof(w));
					return finish(ret, SQLSCAN_TX_CONTROL, s, start);
				}
				prepare = word_is(w, "PREPARE");
				if (prepare)
					ret->offset = start;
			} else if (prepare) {
				prepare = false;
				if (word_is(w, "TRANSACTION")) {
					memcpy(ret->word, "PREPARE TRANSACTION", sizeof("PREPARE TRANSACTION"));
					return finish(ret, SQLSCAN_TX_CONTROL, s, ret->offset);
				}
			} else if (word_is(w, "ATOMIC") && word_is(prev, "BEGIN")) {
				if (atomic++ == 0)
					atomic_at = start;
			} else if (atomic > 0 && word_is(w, "CASE"))
				cases++;
			else if (atomic > 0 && word_is(w, "END")) {
				if (cases > 0)
					cases--;
				else
					atomic--;
			}
			memcpy(prev, w, sizeof(w));
			continue;
		}
		want_first = false;
		i++;
	}
	/* A function body still open: its END, and a ';' after the script,
	 * would be read as part of it. */
	if (atomic > 0)
		return finish(ret, SQLSCAN_UNTERMINATED, s, atomic_at);
	ret->statements += in_statement;
	ret->offset = 0;
	ret->status = SQLSCAN_OK;
	return SQLSCAN_OK;
}

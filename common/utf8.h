/* utf8.h - UTF-8 checks and cuts shared by zmeshd and the client: one
 * definition of what a valid sequence is (RFC 3629: no overlong forms, no
 * surrogates, nothing above U+10FFFF) and of where a string may be cut. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/* Length (1..4) of the valid UTF-8 sequence at s, which holds n bytes
 * (n >= 1); 0 if the bytes there are not one valid sequence, including one
 * cut short by n. */
size_t utf8_seq_len(const unsigned char *s, size_t n);
/* True if s[0..n) is valid UTF-8 throughout (NUL bytes included: they are
 * valid UTF-8, callers that refuse them check for them). */
bool utf8_valid(const char *s, size_t n);
/* The largest prefix length of s[0..len) that is at most max and does not
 * end inside a multi-byte sequence: cutting s there leaves no partial
 * character. Only continuation bytes (10xxxxxx) are stepped back over, so for
 * invalid input the cut is still within max and never splits a sequence that
 * was valid. */
size_t utf8_cut_len(const char *s, size_t len, size_t max);
/* A new string of at most max bytes of s (up to its NUL), each byte that is
 * not part of a valid sequence replaced by '?', and with no_ctl control
 * characters (below 0x20 and 0x7f) too: whatever a client sent, the result
 * is text jansson accepts and, with no_ctl, escapes within twice its length.
 * The cut at max may end a sequence early: its bytes become '?'. NULL when
 * out of memory. */
char *utf8_sanitize(const char *s, size_t max, bool no_ctl);

/* codec.h - the value of one digit of the text encodings zmesh reads (hex,
 * base64 and base64url), one definition for every parser of them. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* 0..15 for a hex digit of either case, else -1. */
int codec_hex_digit(char c);
/* 0..63 for a base64 digit (url: the URL-safe alphabet, '-' and '_'; else
 * '+' and '/'), else -1. Padding '=' is not a digit. */
int codec_b64_digit(char c, bool url);

/* Decode len base64 digits of s (no padding) into out, which has room for
 * len * 3 / 4 bytes. The decoded length, or -1 at the first byte that is
 * not a digit. *ret_leftover (may be NULL): the bits of the last digit that
 * fill no byte; an encoder sets them to zero, so nonzero means the text is
 * not the canonical encoding of what it decodes to. */
ssize_t codec_b64_decode(const char *s, size_t len, bool url, uint8_t *out, uint32_t *ret_leftover);

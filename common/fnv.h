/* fnv.h - FNV-1a, 64 bits: a fast hash of a string for tables of our own
 * keys (not for keys an outsider chooses). */
#pragma once

#include <stdint.h>

static inline uint64_t fnv1a64(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
	return h;
}

/* fuzz_size.c - the number, size and address parsers that read settings from
 * flags and the environment: util_parse_size, util_parse_u64,
 * http_split_listen (the listen address), and zconfig_load's command line on top of them.
 * (zmeshd has no duration syntax: its times are plain integers of ms or s,
 * read by util_parse_u64.)
 *
 * Each parser is checked against a reference written here from its contract
 * alone, so a wrong answer is a finding, not only a crash:
 *   - size: digits with one optional K/M/G (powers of 1024), no sign, no
 *     space; never above max; the output untouched on failure; a value
 *     printed back with its largest exact suffix parses to itself.
 *   - u64: digits only, in [min, max], untouched on failure.
 *   - listen: the host fits its buffer; "host:port" or "[host]:port" made
 *     from the result splits to the same host and port.
 *
 * Input: 8 bytes of max (or min/max), 1 byte choosing the parser and the host
 * buffer size, then the text (cut at its first NUL, as a C string is). */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "http.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                  \
	do {                                                                                         \
		if (!(cond)) {                                                                       \
			fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond); \
			abort();                                                                     \
		}                                                                                    \
	} while (0)

#define SENTINEL 0x5a5a5a5a5a5a5a5aull

/* Digits, value and overflow of the leading decimal number of s. */
static size_t ref_digits(const char *s, uint64_t *ret, int *overflow)
{
	size_t i = 0;
	uint64_t v = 0;
	*overflow = 0;
	for (; s[i] >= '0' && s[i] <= '9'; i++) {
		if (v > (UINT64_MAX - (uint64_t)(s[i] - '0')) / 10)
			*overflow = 1;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	*ret = v;
	return i;
}

static int ref_parse_size(const char *s, uint64_t max, uint64_t *ret)
{
	uint64_t v;
	int overflow;
	size_t n = ref_digits(s, &v, &overflow);
	if (n == 0)
		return -EINVAL;
	unsigned shift;
	switch (s[n]) {
	case '\0':
		shift = 0;
		break;
	case 'k':
	case 'K':
		shift = 10;
		break;
	case 'm':
	case 'M':
		shift = 20;
		break;
	case 'g':
	case 'G':
		shift = 30;
		break;
	default:
		return -EINVAL;
	}
	if (shift && s[n + 1] != '\0')
		return -EINVAL;
	if (overflow || v > (UINT64_MAX >> shift) || (v << shift) > max)
		return -ERANGE;
	*ret = v << shift;
	return 0;
}

static int ref_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *ret)
{
	uint64_t v;
	int overflow;
	size_t n = ref_digits(s, &v, &overflow);
	if (n == 0 || s[n] != '\0')
		return -EINVAL;
	if (overflow || v < min || v > max)
		return -ERANGE;
	*ret = v;
	return 0;
}

static void check_size(const char *s, uint64_t max)
{
	uint64_t got = SENTINEL, want = SENTINEL;
	int r = util_parse_size(s, max, &got);
	CHECK(r == ref_parse_size(s, max, &want));
	CHECK(got == want);
	if (r < 0)
		return;
	CHECK(got <= max);

	/* Printed back with the largest suffix that divides it exactly. */
	char buf[32];
	if (got && got % (1ull << 30) == 0)
		snprintf(buf, sizeof(buf), "%lluG", (unsigned long long)(got >> 30));
	else if (got && got % (1ull << 20) == 0)
		snprintf(buf, sizeof(buf), "%lluM", (unsigned long long)(got >> 20));
	else if (got && got % (1ull << 10) == 0)
		snprintf(buf, sizeof(buf), "%lluk", (unsigned long long)(got >> 10));
	else
		snprintf(buf, sizeof(buf), "%llu", (unsigned long long)got);
	uint64_t again = SENTINEL;
	CHECK(util_parse_size(buf, max, &again) == 0);
	CHECK(again == got);
}

static void check_u64(const char *s, uint64_t min, uint64_t max)
{
	uint64_t got = SENTINEL, want = SENTINEL;
	int r = util_parse_u64(s, min, max, &got);
	CHECK(r == ref_parse_u64(s, min, max, &want));
	CHECK(got == want);
	if (r == 0)
		CHECK(got >= min && got <= max);
}

static void check_listen(const char *s, size_t host_size)
{
	char host[256];
	uint16_t port = 0x5a5a;
	memset(host, 0x5a, sizeof(host));
	int r = http_split_listen(s, host, host_size, &port, NULL);
	if (r < 0) {
		CHECK(r == -EINVAL);
		CHECK(port == 0x5a5a);
		return;
	}
	size_t hlen = strnlen(host, sizeof(host));
	CHECK(hlen < host_size);
	CHECK(hlen > 0);
	CHECK(strstr(s, host) != NULL);

	/* Bracket what would otherwise be read differently. */
	char again[600], host2[256];
	uint16_t port2 = 0;
	snprintf(again, sizeof(again), strchr(host, ':') || host[0] == '[' ? "[%s]:%u" : "%s:%u", host, port);
	CHECK(http_split_listen(again, host2, sizeof(host2), &port2, NULL) == 0);
	CHECK(strcmp(host, host2) == 0);
	CHECK(port == port2);
}

/* The command line: arguments separated by NUL bytes. Every setting that
 * loads must be within its bounds and the listen address must split. */
static void check_load(const char *text, size_t len)
{
	char *argv[18] = {"zmeshd"};
	int argc = 1;
	for (size_t off = 0; off < len && argc < (int)ELEMENTSOF(argv) - 1; off += strlen(text + off) + 1)
		argv[argc++] = (char *)text + off;
	argv[argc] = NULL;

	struct zconfig cfg;
	struct zerr err = {0};
	int r = zconfig_load(&cfg, argc, argv, &err);
	if (r < 0) {
		CHECK(r == -EINVAL);
		CHECK(err.msg[0] != '\0');
		return;
	}
	if (r == 1)
		return; /* --help */
	CHECK(r == 0);
	CHECK(cfg.max_body_bytes >= 1024 && cfg.max_body_bytes <= 64ull << 20);
	CHECK(cfg.concurrency >= 1 && cfg.concurrency <= 4096);
	CHECK(cfg.token_ttl_s >= 60 && cfg.token_ttl_s <= 31536000);
	CHECK(cfg.pool_size <= 256);
	char host[256];
	uint16_t port;
	CHECK(http_split_listen(cfg.listen, host, sizeof(host), &port, NULL) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 9)
		return 0;
	uint64_t a;
	memcpy(&a, data, sizeof(a));
	uint8_t sel = data[8];
	data += 9;
	size -= 9;

	/* A NUL-terminated copy: the parsers take C strings, and ASan then
	 * catches any read past the terminator. */
	char *s = malloc(size + 1);
	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';

	switch (sel & 3) {
	case 0:
		check_size(s, a);
		/* The bounds the daemon's own settings use. */
		check_size(s, 64ull << 20);
		check_size(s, UINT64_MAX);
		break;
	case 1:
		/* min and max from the two halves, in either order. */
		check_u64(s, a & 0xffffffff, a >> 32);
		check_u64(s, 0, a);
		check_u64(s, 0, UINT64_MAX);
		check_u64(s, 0, 65535);
		break;
	case 2:
		check_listen(s, (size_t)(sel >> 2) * 4 + 1); /* 1..253 */
		check_listen(s, 128);
		break;
	case 3:
		check_load(s, size);
		break;
	}
	free(s);
	return 0;
}

/* fuzz_egress_request.c - the egress gateway's request head parser
 * (egress_parse_request) and the origin-form head it forwards
 * (egress_request_origin_head).
 *
 * Invariants, beyond "no crash":
 *   - incomplete (-EAGAIN) only while no head end has arrived and the
 *     input is under EGRESS_HEAD_MAX; never a head over that size;
 *   - a parsed head ends with its blank line, every span lies inside it,
 *     the host is non-empty without NUL, the port is 1..65535, the kind
 *     follows the method;
 *   - the head alone parses to the same request (the bytes after it never
 *     change the reading);
 *   - the forwarded head starts with the method and an origin-form path,
 *     has exactly one Host line, no Proxy-*, Connection (but the one
 *     added), Keep-Alive, TE, Trailer or Upgrade line, no bare CR or LF,
 *     and ends with "Connection: close" and the blank line. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "egress_request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                  \
	do {                                                                                         \
		if (!(cond)) {                                                                       \
			fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond); \
			abort();                                                                     \
		}                                                                                    \
	} while (0)

static bool line_named(const char *line, size_t len, const char *name)
{
	size_t n = strlen(name);
	return len > n && strncasecmp(line, name, n) == 0 && line[n] == ':';
}

static void check_origin_head(const struct egress_request *r, const char *buf)
{
	static char out[EGRESS_HEAD_MAX + 1024];
	size_t len = 0;
	if (egress_request_origin_head(r, buf, out, sizeof(out), &len) < 0)
		return;
	CHECK(len < sizeof(out));
	CHECK(strncmp(out, r->method, strlen(r->method)) == 0 && out[strlen(r->method)] == ' ');
	CHECK(out[strlen(r->method) + 1] == '/');
	CHECK(len >= 21 && memcmp(out + len - 21, "Connection: close\r\n\r\n", 21) == 0);
	int hosts = 0, connections = 0;
	for (size_t p = 0; p < len;) {
		const char *eol = memmem(out + p, len - p, "\r\n", 2);
		CHECK(eol);
		size_t l = (size_t)(eol - (out + p));
		const char *line = out + p;
		CHECK(!memchr(line, '\n', l) && !memchr(line, '\r', l));
		if (p > 0 && l > 0) {
			hosts += line_named(line, l, "host");
			connections += line_named(line, l, "connection");
			CHECK(!(l > 6 && strncasecmp(line, "proxy-", 6) == 0));
			CHECK(!line_named(line, l, "keep-alive") && !line_named(line, l, "te") &&
			      !line_named(line, l, "trailer") && !line_named(line, l, "upgrade"));
		}
		p += l + 2;
	}
	CHECK(hosts == 1);
	CHECK(connections == 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > EGRESS_HEAD_MAX + 4096)
		return 0;
	/* An exact-size copy: ASan catches any read past the input. */
	char *buf = malloc(size ? size : 1);
	if (!buf)
		return 0;
	memcpy(buf, data, size);
	static struct egress_request r, again;
	struct zerr err = {0};
	int rc = egress_parse_request(buf, size, &r, &err);
	const char *end = memmem(buf, size < EGRESS_HEAD_MAX ? size : EGRESS_HEAD_MAX, "\r\n\r\n", 4);
	if (rc == -EAGAIN) {
		CHECK(size < EGRESS_HEAD_MAX);
		CHECK(!end);
	} else if (rc < 0) {
		CHECK(rc == -EINVAL || rc == -EMSGSIZE);
		CHECK(err.msg[0]);
	} else {
		CHECK(rc == 0);
		CHECK(end && r.head_len == (size_t)(end - buf) + 4);
		CHECK(r.head_len <= EGRESS_HEAD_MAX);
		CHECK(r.host[0] && strlen(r.host) < sizeof(r.host));
		CHECK(r.port >= 1);
		CHECK((r.kind == EGRESS_REQ_CONNECT) == (strcmp(r.method, "CONNECT") == 0));
		CHECK(r.n_headers <= EGRESS_HEADERS_MAX);
		for (size_t i = 0; i < r.n_headers; i++) {
			CHECK(r.name[i].len > 0 && (size_t)r.name[i].off + r.name[i].len <= r.head_len);
			CHECK((size_t)r.value[i].off + r.value[i].len <= r.head_len);
		}
		CHECK((size_t)r.path.off + r.path.len <= r.head_len);
		CHECK(egress_parse_request(buf, r.head_len, &again, NULL) == 0);
		CHECK(again.head_len == r.head_len && again.port == r.port && strcmp(again.host, r.host) == 0 &&
		      again.n_headers == r.n_headers && again.kind == r.kind);
		if (r.kind == EGRESS_REQ_HTTP)
			check_origin_head(&r, buf);
	}
	free(buf);
	return 0;
}

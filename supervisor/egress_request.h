/* egress_request.h - the one HTTP/1.1 request head a client sends the egress
 * gateway: "CONNECT host:port" (a tunnel, for HTTPS) or an absolute-form
 * "GET http://host[:port]/path" (plain HTTP, proxied). Pure and strict: no
 * obs-fold, no bare LF, no userinfo, no fragment, no Content-Length with
 * Transfer-Encoding; what is not understood is refused, never guessed. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define EGRESS_HEAD_MAX    16384 /* bytes of a request head, with its blank line */
#define EGRESS_HEADERS_MAX 100

enum egress_req_kind { EGRESS_REQ_CONNECT, EGRESS_REQ_HTTP };

/* Offsets into the head the request was parsed from. */
struct egress_span {
	uint16_t off, len;
};

struct egress_request {
	enum egress_req_kind kind;
	char method[17];
	char host[256]; /* a name or an address literal, IPv6 without brackets */
	uint16_t port;
	int minor;               /* HTTP/1.minor */
	struct egress_span path; /* EGRESS_REQ_HTTP: origin-form path and query ("/" when empty) */
	struct egress_span name[EGRESS_HEADERS_MAX], value[EGRESS_HEADERS_MAX];
	size_t n_headers;
	size_t head_len; /* bytes up to and with the blank line */
};

/* Parse the request head at the start of buf (len bytes, not necessarily
 * NUL-terminated; bytes past the head are the body or tunnel data).
 * -EAGAIN: no complete head yet (and len < EGRESS_HEAD_MAX); -EMSGSIZE:
 * no head within EGRESS_HEAD_MAX bytes; -EINVAL: malformed or not a proxy
 * request, with the reason in err. On failure *ret is undefined. */
int egress_parse_request(const char *buf, size_t len, struct egress_request *ret, struct zerr *err);

/* The head to send the origin for an EGRESS_REQ_HTTP request: the request
 * line in origin-form, Host set to the URI's authority, every hop-by-hop
 * header (Connection and what it names, Keep-Alive, TE, Trailer, Upgrade,
 * Proxy-*) dropped, "Connection: close" added. Transfer-Encoding and
 * Content-Length stay: the body is relayed as sent. -ENOSPC when it does
 * not fit size; else its length. */
int egress_request_origin_head(const struct egress_request *r, const char *buf, char *out, size_t size,
                               size_t *ret_len);

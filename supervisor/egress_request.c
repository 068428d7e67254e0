/* egress_request.c - see egress_request.h */
#define _GNU_SOURCE
#include "egress_request.h"

#include <stdio.h>
#include <sys/socket.h>
#include <string.h>
#include <strings.h>

#include "egress_policy.h"

static bool tchar(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* "host:port" or "[v6]:port" (port required when need_port) into r. */
static int parse_authority(const char *s, size_t n, bool need_port, uint16_t def_port, struct egress_request *r,
                           struct zerr *err)
{
	const char *host = s, *colon = NULL;
	size_t hlen;
	if (n > 0 && s[0] == '[') {
		const char *close = memchr(s, ']', n);
		if (!close)
			return zerr_set(err, -EINVAL, "unclosed [ in the host");
		host = s + 1;
		hlen = (size_t)(close - host);
		if ((size_t)(close - s) + 1 < n) {
			if (close[1] != ':')
				return zerr_set(err, -EINVAL, "junk after the ] of the host");
			colon = close + 1;
		}
	} else {
		colon = memrchr(s, ':', n);
		hlen = colon ? (size_t)(colon - s) : n;
		if (memchr(s, ':', hlen))
			return zerr_set(err, -EINVAL, "an IPv6 host goes in brackets");
	}
	if (hlen == 0 || hlen >= sizeof(r->host))
		return zerr_set(err, -EINVAL, "a host of 1 to %zu bytes is required", sizeof(r->host) - 1);
	memcpy(r->host, host, hlen);
	r->host[hlen] = '\0';
	if (strlen(r->host) != hlen)
		return zerr_set(err, -EINVAL, "a NUL byte in the host");
	struct egress_addr a;
	if (s[0] == '[' && (egress_addr_parse(r->host, &a) < 0 || a.family != AF_INET6))
		return zerr_set(err, -EINVAL, "brackets hold an IPv6 address");
	if (!colon) {
		if (need_port)
			return zerr_set(err, -EINVAL, "CONNECT needs host:port");
		r->port = def_port;
		return 0;
	}
	const char *p = colon + 1;
	size_t plen = (size_t)(s + n - p);
	unsigned long v = 0;
	if (plen == 0 || plen > 5 || (p[0] == '0'))
		return zerr_set(err, -EINVAL, "the port must be 1..65535");
	for (size_t i = 0; i < plen; i++) {
		if (p[i] < '0' || p[i] > '9')
			return zerr_set(err, -EINVAL, "the port must be 1..65535");
		v = v * 10 + (unsigned long)(p[i] - '0');
	}
	if (v == 0 || v > 65535)
		return zerr_set(err, -EINVAL, "the port must be 1..65535");
	r->port = (uint16_t)v;
	return 0;
}

/* The end of the line starting at p: the offset of its CR, which must be
 * followed by LF; no bare CR or LF inside. */
static int line_end(const char *buf, size_t len, size_t p, size_t *ret, struct zerr *err)
{
	for (size_t i = p; i < len; i++) {
		if (buf[i] == '\n')
			return zerr_set(err, -EINVAL, "a line ends in a bare LF");
		if (buf[i] == '\r') {
			if (i + 1 >= len)
				return -EAGAIN;
			if (buf[i + 1] != '\n')
				return zerr_set(err, -EINVAL, "a bare CR");
			*ret = i;
			return 0;
		}
	}
	return -EAGAIN;
}

static bool span_is(const char *buf, struct egress_span s, const char *what)
{
	return s.len == strlen(what) && strncasecmp(buf + s.off, what, s.len) == 0;
}

int egress_parse_request(const char *buf, size_t len, struct egress_request *r, struct zerr *err)
{
	size_t limit = len < EGRESS_HEAD_MAX ? len : EGRESS_HEAD_MAX;
	/* A bare LF or CR would leave the head unended forever: refused as
	 * soon as it arrives. */
	for (size_t i = 0; i < limit; i++)
		if ((buf[i] == '\n' && (i == 0 || buf[i - 1] != '\r')) ||
		    (buf[i] == '\r' && i + 1 < limit && buf[i + 1] != '\n'))
			return zerr_set(err, -EINVAL, "a line ends in a bare LF or CR");
	/* The whole head first, so "incomplete" and "malformed" never mix. */
	const char *end = memmem(buf, limit, "\r\n\r\n", 4);
	if (!end)
		return len >= EGRESS_HEAD_MAX
		           ? zerr_set(err, -EMSGSIZE, "the request head is over %d bytes", EGRESS_HEAD_MAX)
		           : -EAGAIN;
	size_t head = (size_t)(end - buf) + 4;
	memset(r, 0, offsetof(struct egress_request, name));
	r->n_headers = 0;
	r->head_len = head;

	size_t eol;
	int rc = line_end(buf, head, 0, &eol, err);
	if (rc < 0)
		return rc == -EAGAIN ? zerr_set(err, -EINVAL, "no request line") : rc;
	/* METHOD SP target SP HTTP/1.x */
	const char *sp1 = memchr(buf, ' ', eol),
	           *sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(buf + eol - sp1 - 1)) : NULL;
	if (!sp1 || !sp2)
		return zerr_set(err, -EINVAL, "want \"METHOD target HTTP/1.1\"");
	size_t mlen = (size_t)(sp1 - buf);
	if (mlen == 0 || mlen >= sizeof(r->method))
		return zerr_set(err, -EINVAL, "a method of 1 to %zu letters", sizeof(r->method) - 1);
	for (size_t i = 0; i < mlen; i++)
		if (buf[i] < 'A' || buf[i] > 'Z')
			return zerr_set(err, -EINVAL, "a method of capital letters");
	memcpy(r->method, buf, mlen);
	r->method[mlen] = '\0';
	const char *v = sp2 + 1;
	size_t vlen = (size_t)(buf + eol - v);
	if (vlen != 8 || strncmp(v, "HTTP/1.", 7) != 0 || (v[7] != '0' && v[7] != '1'))
		return zerr_set(err, -EINVAL, "HTTP/1.1 or HTTP/1.0 only");
	r->minor = v[7] - '0';
	const char *t = sp1 + 1;
	size_t tlen = (size_t)(sp2 - t);
	if (tlen == 0)
		return zerr_set(err, -EINVAL, "an empty target");
	for (size_t i = 0; i < tlen; i++)
		if ((unsigned char)t[i] <= 0x20 || (unsigned char)t[i] >= 0x7f)
			return zerr_set(err, -EINVAL, "the target holds a space or a control byte");
	if (strcmp(r->method, "CONNECT") == 0) {
		r->kind = EGRESS_REQ_CONNECT;
		if ((rc = parse_authority(t, tlen, true, 0, r, err)) < 0)
			return rc;
	} else {
		r->kind = EGRESS_REQ_HTTP;
		if (tlen >= 8 && strncasecmp(t, "https://", 8) == 0)
			return zerr_set(err, -EINVAL, "https:// goes through CONNECT");
		if (tlen < 7 || strncasecmp(t, "http://", 7) != 0)
			return zerr_set(err, -EINVAL, "a proxy request needs an absolute http:// target or CONNECT");
		const char *auth = t + 7, *tend = t + tlen;
		const char *slash = memchr(auth, '/', (size_t)(tend - auth));
		const char *q = memchr(auth, '?', (size_t)(tend - auth));
		const char *aend = slash && (!q || slash < q) ? slash : q ? q : tend;
		if (memchr(auth, '@', (size_t)(aend - auth)))
			return zerr_set(err, -EINVAL, "no user:password@ in the target");
		if (memchr(t, '#', tlen))
			return zerr_set(err, -EINVAL, "no #fragment in the target");
		if ((rc = parse_authority(auth, (size_t)(aend - auth), false, 80, r, err)) < 0)
			return rc;
		r->path.off = (uint16_t)(aend - buf);
		r->path.len = (uint16_t)(tend - aend);
	}

	/* Header lines up to the blank one. */
	for (size_t p = eol + 2; p < head - 2;) {
		if ((rc = line_end(buf, head, p, &eol, err)) < 0)
			return rc == -EAGAIN ? zerr_set(err, -EINVAL, "a header line is cut") : rc;
		if (buf[p] == ' ' || buf[p] == '\t')
			return zerr_set(err, -EINVAL, "folded header lines are not accepted");
		const char *colon = memchr(buf + p, ':', eol - p);
		if (!colon || colon == buf + p)
			return zerr_set(err, -EINVAL, "a header line without a name");
		for (const char *c = buf + p; c < colon; c++)
			if (!tchar(*c))
				return zerr_set(err, -EINVAL, "a header name with a byte outside the token set");
		size_t vs = (size_t)(colon - buf) + 1, ve = eol;
		while (vs < ve && (buf[vs] == ' ' || buf[vs] == '\t'))
			vs++;
		while (ve > vs && (buf[ve - 1] == ' ' || buf[ve - 1] == '\t'))
			ve--;
		for (size_t i = vs; i < ve; i++)
			if (((unsigned char)buf[i] < 0x20 && buf[i] != '\t') || buf[i] == 0x7f)
				return zerr_set(err, -EINVAL, "a header value with a control byte");
		if (r->n_headers >= EGRESS_HEADERS_MAX)
			return zerr_set(err, -EINVAL, "more than %d headers", EGRESS_HEADERS_MAX);
		r->name[r->n_headers] = (struct egress_span){(uint16_t)p, (uint16_t)(colon - buf - (ptrdiff_t)p)};
		r->value[r->n_headers] = (struct egress_span){(uint16_t)vs, (uint16_t)(ve - vs)};
		r->n_headers++;
		p = eol + 2;
	}

	/* Body framing the origin and the gateway must read alike. */
	bool te = false;
	int cl = -1;
	struct egress_span clv = {0};
	for (size_t i = 0; i < r->n_headers; i++) {
		if (span_is(buf, r->name[i], "transfer-encoding")) {
			if (te || !span_is(buf, r->value[i], "chunked"))
				return zerr_set(err, -EINVAL, "Transfer-Encoding: chunked is the only coding relayed");
			te = true;
		} else if (span_is(buf, r->name[i], "content-length")) {
			struct egress_span s = r->value[i];
			if (s.len == 0 || s.len > 18 || strspn(buf + s.off, "0123456789") < s.len)
				return zerr_set(err, -EINVAL, "a malformed Content-Length");
			if (cl >= 0 && (s.len != clv.len || memcmp(buf + s.off, buf + clv.off, s.len) != 0))
				return zerr_set(err, -EINVAL, "conflicting Content-Length headers");
			cl = 1;
			clv = s;
		}
	}
	if (te && cl >= 0)
		return zerr_set(err, -EINVAL, "both Content-Length and Transfer-Encoding");
	if (r->kind == EGRESS_REQ_CONNECT && (te || cl >= 0))
		return zerr_set(err, -EINVAL, "CONNECT carries no body");
	return 0;
}

/* Whether header i is hop-by-hop: by name, or named in a Connection
 * header. */
static bool hop_by_hop(const struct egress_request *r, const char *buf, size_t i)
{
	static const char *const names[] = {"connection", "keep-alive", "te", "trailer", "upgrade", "host"};
	struct egress_span n = r->name[i];
	for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++)
		if (span_is(buf, n, names[k]))
			return true;
	if (n.len >= 6 && strncasecmp(buf + n.off, "proxy-", 6) == 0)
		return true;
	for (size_t c = 0; c < r->n_headers; c++) {
		if (!span_is(buf, r->name[c], "connection"))
			continue;
		const char *s = buf + r->value[c].off, *e = s + r->value[c].len;
		while (s < e) {
			while (s < e && (*s == ',' || *s == ' ' || *s == '\t'))
				s++;
			const char *t = s;
			while (t < e && *t != ',' && *t != ' ' && *t != '\t')
				t++;
			if (t > s && (size_t)(t - s) == n.len && strncasecmp(s, buf + n.off, n.len) == 0)
				return true;
			s = t;
		}
	}
	return false;
}

int egress_request_origin_head(const struct egress_request *r, const char *buf, char *out, size_t size, size_t *ret_len)
{
	size_t n = 0;
#define PUT(...)                                                                  \
	do {                                                                      \
		int _k = snprintf(out + n, n < size ? size - n : 0, __VA_ARGS__); \
		if (_k < 0 || (size_t)_k >= (n < size ? size - n : 0))            \
			return -ENOSPC;                                           \
		n += (size_t)_k;                                                  \
	} while (0)
	/* "http://host?q" has a query but no path: the origin gets "/?q". */
	bool slash = r->path.len > 0 && buf[r->path.off] == '/';
	PUT("%s %s%.*s HTTP/1.%d\r\n", r->method, slash ? "" : "/", (int)r->path.len, buf + r->path.off, r->minor);
	bool v6 = strchr(r->host, ':') != NULL;
	if (r->port == 80)
		PUT(v6 ? "Host: [%s]\r\n" : "Host: %s\r\n", r->host);
	else
		PUT(v6 ? "Host: [%s]:%u\r\n" : "Host: %s:%u\r\n", r->host, r->port);
	for (size_t i = 0; i < r->n_headers; i++)
		if (!hop_by_hop(r, buf, i))
			PUT("%.*s: %.*s\r\n", (int)r->name[i].len, buf + r->name[i].off, (int)r->value[i].len,
			    buf + r->value[i].off);
	PUT("Connection: close\r\n\r\n");
#undef PUT
	*ret_len = n;
	return 0;
}

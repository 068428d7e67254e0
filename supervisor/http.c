/* http.c - see http.h */
#define _GNU_SOURCE
#include "http.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>

#include "buf.h"
#include "http_parse.h"
#include "jsontext.h"
#include "utf8.h"

#define DEF_MAX_CONNECTIONS 256u
#define DEF_IDLE_TIMEOUT_S  15u
#define DEF_REQUEST_TIMEOUT 30000u
#define DEF_HEADER_BYTES    (32u * 1024)
#define DEF_MAX_BODY        (1024u * 1024)
#define DEF_GRACE_MS        30000u
#define DEF_HEADER_TIMEOUT  10000u

/* Admission (see http.h). A connection must have waited this long for its
 * request line and headers before a newcomer may take its slot: a client
 * that has just connected is not slow yet. */
#define SHED_MIN_NS (1000ull * 1000 * 1000)
/* Connections over capacity are only told so: they get this long for their
 * request line and headers, however patient the normal header deadline. */
#define OVER_HEADER_MS 2000u
#define RETRY_AFTER_S  "2"

/* An over-limit body without Content-Length (chunked) can only be answered
 * once it has been read: libmicrohttpd refuses a response in the middle of an
 * upload. Read and drop up to this much so the client sees 413; past it, drop
 * the connection. */
#define DISCARD_MAX (16u * 1024 * 1024)

#define WATCHDOG_TICK_MS 100
#define ERR_MSG_MAX      1024
#define LOG_PATH_MAX     256
#define LOG_VALUE_MAX    256
#define LOG_FIELDS_MAX   8
#define METHOD_MAX       16
#define PARAM_NAME_MAX   32
#define HDR_NAME_MAX     64
#define HDR_VALUE_MAX    1024

/* ---- small helpers ------------------------------------------------------ */

/* ---- router ------------------------------------------------------------- */

struct route_c {
	struct http_route r; /* method and pattern point into owned copies */
	char *method;
	char *pattern;
	char *split; /* pattern copy cut into segments */
	size_t n_segs;
	const char *seg[HTTP_MAX_SEGMENTS];
	bool is_param[HTTP_MAX_SEGMENTS];
};

struct http_router {
	size_t n;
	struct route_c *routes;
};

static bool unreserved(char c)
{
	return isalnum((unsigned char)c) || c == '-' || c == '.' || c == '_' || c == '~';
}

static int compile_route(const struct http_route *in, size_t idx, struct route_c *rc, struct zerr *err)
{
	if (!in->method || !in->pattern || !in->handler)
		return zerr_set(err, -EINVAL, "route %zu: method, pattern and handler are required", idx);
	size_t ml = strlen(in->method);
	if (ml == 0 || ml > METHOD_MAX)
		return zerr_set(err, -EINVAL, "route %zu: bad method", idx);
	for (size_t i = 0; i < ml; i++)
		if (in->method[i] < 'A' || in->method[i] > 'Z')
			return zerr_set(err, -EINVAL, "route %zu: method '%s' is not upper-case letters", idx,
			                in->method);
	const char *p = in->pattern;
	size_t pl = strlen(p);
	if (pl == 0 || pl > HTTP_PATH_MAX || p[0] != '/')
		return zerr_set(err, -EINVAL, "route %zu: pattern must start with '/'", idx);
	if (pl > 1 && p[pl - 1] == '/')
		return zerr_set(err, -EINVAL, "route %zu: pattern '%s' ends with '/'", idx, p);

	rc->method = strdup(in->method);
	rc->pattern = strdup(p);
	rc->split = strdup(p);
	if (!rc->method || !rc->pattern || !rc->split)
		return zerr_set(err, -ENOMEM, "route %zu: out of memory", idx);
	rc->r.method = rc->method;
	rc->r.pattern = rc->pattern;
	rc->r.handler = in->handler;
	rc->n_segs = 0;
	if (pl == 1)
		return 0; /* "/" */

	size_t n_params = 0;
	char *s = rc->split + 1;
	for (;;) {
		char *slash = strchr(s, '/');
		if (slash)
			*slash = '\0';
		size_t sl = strlen(s);
		if (sl == 0)
			return zerr_set(err, -EINVAL, "route %zu: empty segment in '%s'", idx, p);
		if (rc->n_segs == HTTP_MAX_SEGMENTS)
			return zerr_set(err, -EINVAL, "route %zu: more than %d segments", idx, HTTP_MAX_SEGMENTS);
		if (s[0] == '{') {
			if (sl < 3 || s[sl - 1] != '}' || sl - 2 > PARAM_NAME_MAX)
				return zerr_set(err, -EINVAL, "route %zu: bad parameter '%s'", idx, s);
			s[sl - 1] = '\0';
			s++;
			if (!(islower((unsigned char)s[0]) || s[0] == '_'))
				return zerr_set(err, -EINVAL, "route %zu: bad parameter name '%s'", idx, s);
			for (const char *q = s; *q; q++)
				if (!(islower((unsigned char)*q) || isdigit((unsigned char)*q) || *q == '_'))
					return zerr_set(err, -EINVAL, "route %zu: bad parameter name '%s'", idx, s);
			for (size_t i = 0; i < rc->n_segs; i++)
				if (rc->is_param[i] && strcmp(rc->seg[i], s) == 0)
					return zerr_set(err, -EINVAL, "route %zu: parameter '%s' repeated", idx, s);
			if (++n_params > HTTP_MAX_PARAMS)
				return zerr_set(err, -EINVAL, "route %zu: more than %d parameters", idx,
				                HTTP_MAX_PARAMS);
			rc->is_param[rc->n_segs] = true;
		} else {
			if (sl > HTTP_PARAM_MAX)
				return zerr_set(err, -EINVAL, "route %zu: segment too long", idx);
			for (size_t i = 0; i < sl; i++)
				if (!unreserved(s[i]))
					return zerr_set(err, -EINVAL, "route %zu: bad character in '%s'", idx, s);
			rc->is_param[rc->n_segs] = false;
		}
		rc->seg[rc->n_segs++] = s;
		if (!slash)
			break;
		s = slash + 1;
	}
	return 0;
}

/* Same method and the same shape (parameter names aside): the second could
 * never be reached. */
static bool routes_clash(const struct route_c *a, const struct route_c *b)
{
	if (strcmp(a->method, b->method) != 0 || a->n_segs != b->n_segs)
		return false;
	for (size_t i = 0; i < a->n_segs; i++) {
		if (a->is_param[i] != b->is_param[i])
			return false;
		if (!a->is_param[i] && strcmp(a->seg[i], b->seg[i]) != 0)
			return false;
	}
	return true;
}

void http_router_free(struct http_router *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->n; i++) {
		free(r->routes[i].method);
		free(r->routes[i].pattern);
		free(r->routes[i].split);
	}
	free(r->routes);
	free(r);
}

int http_router_new(const struct http_route *routes, size_t n_routes, struct http_router **ret, struct zerr *err)
{
	if (!routes && n_routes)
		return zerr_set(err, -EINVAL, "no route table");
	if (n_routes > 4096)
		return zerr_set(err, -EINVAL, "too many routes");
	struct http_router *r = calloc(1, sizeof(*r));
	if (!r)
		return zerr_set(err, -ENOMEM, "out of memory");
	r->routes = calloc(n_routes ? n_routes : 1, sizeof(*r->routes));
	if (!r->routes) {
		free(r);
		return zerr_set(err, -ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < n_routes; i++) {
		r->n = i + 1; /* so that free releases a half-built entry */
		int rc = compile_route(&routes[i], i, &r->routes[i], err);
		if (rc < 0) {
			http_router_free(r);
			return rc;
		}
		for (size_t j = 0; j < i; j++)
			if (routes_clash(&r->routes[j], &r->routes[i])) {
				zerr_set(err, -EEXIST, "route %zu: %s %s repeats route %zu", i, routes[i].method,
				         routes[i].pattern, j);
				http_router_free(r);
				return -EEXIST;
			}
	}
	*ret = r;
	return 0;
}

static void allow_add(char *allow, const char *method)
{
	size_t ml = strlen(method);
	/* dedupe: methods are separated by ", " */
	for (const char *p = allow; *p;) {
		const char *e = strstr(p, ", ");
		size_t l = e ? (size_t)(e - p) : strlen(p);
		if (l == ml && memcmp(p, method, ml) == 0)
			return;
		if (!e)
			break;
		p = e + 2;
	}
	size_t cur = strlen(allow);
	size_t need = cur + (cur ? 2 : 0) + ml + 1;
	if (need > HTTP_ALLOW_MAX)
		return; /* cannot happen with a sane table; an incomplete Allow beats overflow */
	if (cur) {
		memcpy(allow + cur, ", ", 2);
		cur += 2;
	}
	memcpy(allow + cur, method, ml + 1);
}

static void match_fail(struct http_match *m, unsigned status, const char *msg)
{
	m->status = status;
	m->route = NULL;
	m->n_params = 0;
	snprintf(m->message, sizeof(m->message), "%s", msg);
}

void http_router_match(const struct http_router *r, const char *method, const char *raw_path, struct http_match *ret)
{
	char segs[HTTP_MAX_SEGMENTS][HTTP_PARAM_MAX + 1];
	size_t n = 0;

	memset(ret, 0, sizeof(*ret));
	size_t len = strlen(raw_path);
	if (len == 0 || raw_path[0] != '/')
		return match_fail(ret, 400, "the path must start with '/'");
	if (len > HTTP_PATH_MAX)
		return match_fail(ret, 400, "the path is too long");
	/* one trailing slash after a non-empty segment is ignored */
	if (len > 2 && raw_path[len - 1] == '/' && raw_path[len - 2] != '/')
		len--;

	bool unmatchable = false;
	if (len > 1) {
		const char *p = raw_path + 1, *end = raw_path + len;
		for (;;) {
			const char *slash = memchr(p, '/', (size_t)(end - p));
			const char *se = slash ? slash : end;
			/* longer than any pattern: still validated, then 404 */
			if (n == HTTP_MAX_SEGMENTS)
				unmatchable = true;
			char tmp[HTTP_PARAM_MAX + 1];
			char *dst = unmatchable ? tmp : segs[n];
			size_t dl;
			int rc = http_pct_decode(p, (size_t)(se - p), dst, HTTP_PARAM_MAX + 1, &dl);
			if (rc == -E2BIG)
				return match_fail(ret, 400, "a path segment is longer than 128 bytes");
			if (rc < 0)
				return match_fail(ret, 400, "malformed percent-encoding in the path");
			if (memchr(dst, '/', dl) || memchr(dst, '\0', dl))
				return match_fail(ret, 400, "a path segment decodes to '/' or NUL");
			if (!http_text_clean(dst, dl))
				return match_fail(ret, 400,
				                  "a path segment holds a control character or invalid UTF-8");
			if (dl == 0)
				unmatchable = true; /* no pattern has an empty segment */
			if (!unmatchable)
				n++;
			if (!slash)
				break;
			p = slash + 1;
		}
	}
	if (unmatchable)
		return match_fail(ret, 404, "no such route");

	const struct route_c *found = NULL;
	for (size_t i = 0; i < r->n; i++) {
		const struct route_c *rc = &r->routes[i];
		if (rc->n_segs != n)
			continue;
		bool ok = true;
		for (size_t s = 0; s < n && ok; s++)
			if (!rc->is_param[s] && strcmp(rc->seg[s], segs[s]) != 0)
				ok = false;
		if (!ok)
			continue;
		if (!found && strcmp(rc->method, method) == 0)
			found = rc;
		allow_add(ret->allow, rc->method);
	}
	if (!found) {
		if (ret->allow[0]) {
			ret->status = 405;
			snprintf(ret->message, sizeof(ret->message), "method not allowed here; allowed: %s",
			         ret->allow);
			return;
		}
		return match_fail(ret, 404, "no such route");
	}
	ret->status = 0;
	ret->route = &found->r;
	for (size_t s = 0; s < n; s++) {
		if (!found->is_param[s])
			continue;
		ret->names[ret->n_params] = found->seg[s];
		memcpy(ret->values[ret->n_params], segs[s], sizeof(segs[s]));
		ret->n_params++;
	}
}

/* ---- server state -------------------------------------------------------- */

/* One TCP connection, tracked for the request deadline. */
enum conn_class {
	CONN_ADMITTED, /* holds one of max_connections */
	CONN_RESERVE,  /* holds one of the reserve, for health checks and credentials */
	CONN_OVER,     /* holds nothing: its requests are answered 503 */
};

struct tracked_conn {
	struct tracked_conn *prev, *next;
	int fd;
	uint64_t since_ns; /* start of the request being received */
	bool receiving;    /* false while a handler runs or a response is sent */
	bool in_body;      /* headers are in, the body is being received */
	bool killed;       /* a deadline passed or it was shed: socket shut down */
	bool logged;       /* a request line told about the kill */
	enum conn_class cls;
	char client[INET6_ADDRSTRLEN];
};

struct http_server {
	struct MHD_Daemon *mhd;
	struct http_router *router;
	void *app;
	http_log_fn log;
	size_t max_body;
	uint64_t request_timeout_ns;
	uint64_t header_timeout_ns;
	uint64_t over_header_ns;
	unsigned grace_ms;
	unsigned max_admitted; /* max_connections */
	unsigned max_reserve;
	unsigned max_per_ip;            /* 0: none */
	unsigned reserve_per_ip;        /* reserve slots one address may hold */
	unsigned n_admitted, n_reserve; /* under lock */
	int listen_fd;                  /* ours */
	int mhd_fd;                     /* libmicrohttpd's duplicate of it */
	int port;

	pthread_mutex_t lock;
	pthread_cond_t cond;    /* inflight dropped */
	pthread_cond_t wd_cond; /* the watchdog must exit */
	unsigned inflight;
	bool stopping;
	bool quiesced;
	bool closing; /* grace period over: connections are being closed */
	bool watchdog_exit;
	bool watchdog_running;
	pthread_t watchdog;
	struct tracked_conn *conns;
	atomic_uint_fast64_t id_counter;
};

struct alloc {
	struct alloc *next;
	char data[];
};

struct http_request {
	struct http_server *srv;
	struct MHD_Connection *mhd_conn;
	struct tracked_conn *conn; /* NULL if tracking could not be allocated */
	struct http_match match;
	char id[HTTP_REQUEST_ID_LEN + 1];
	char client[INET6_ADDRSTRLEN];
	char *method;
	char *path;
	uint64_t start_ns;
	bool started; /* headers are in and the fields above are set */

	/* From the request line, seen before libmicrohttpd parses the query
	 * (on_uri): the target's verdict and its length up to any NUL. */
	enum http_target_verdict target;
	size_t target_len;

	struct buf body; /* up to max_body, NUL-terminated */
	size_t discarded;
	bool too_large;
	bool queued; /* a response went to libmicrohttpd */

	json_t *json;
	bool json_tried;
	int json_rc;
	char json_msg[200];

	bool replied;
	bool close; /* answer with Connection: close */
	bool last;  /* the client asked for Connection: close */
	unsigned status;
	char *resp;
	size_t resp_len;
	const char *ctype; /* static string or ctype_owned */
	char *ctype_owned;
	size_t n_hdrs;
	char *hdr_name[HTTP_MAX_HEADERS];
	char *hdr_value[HTTP_MAX_HEADERS];

	json_t *log_fields;
	struct alloc *allocs;       /* decoded query values */
	struct http_stream *stream; /* a streamed reply not yet handed over */
};

struct http_stream {
	struct http_server *srv;
	int fd; /* the connection's socket (libmicrohttpd's), -1: unknown */
	http_stream_fn fn;
	void (*done)(void *ctx);
	void *ctx;
};

static void emit_log(struct http_server *s, json_t *o)
{
	if (!s->log || !o)
		return;
	char *line = json_dumps(o, JSON_COMPACT);
	if (line)
		s->log(s->app, line);
	free(line);
}

static void make_request_id(struct http_server *s, char out[HTTP_REQUEST_ID_LEN + 1])
{
	uint8_t b[HTTP_REQUEST_ID_LEN / 2];
	if (getrandom(b, sizeof(b), GRND_NONBLOCK) != (ssize_t)sizeof(b)) {
		/* Entropy pool not ready (early boot): ids only need to be unique. */
		uint64_t v = util_now_ns() ^ ((uint64_t)atomic_fetch_add(&s->id_counter, 1) << 40);
		memcpy(b, &v, sizeof(b));
	}
	static const char hex[] = "0123456789abcdef";
	for (size_t i = 0; i < sizeof(b); i++) {
		out[2 * i] = hex[b[i] >> 4];
		out[2 * i + 1] = hex[b[i] & 15];
	}
	out[HTTP_REQUEST_ID_LEN] = '\0';
}

static void request_free(struct http_request *r)
{
	if (!r)
		return;
	free(r->method);
	free(r->path);
	buf_free(&r->body);
	json_decref(r->json);
	free(r->resp);
	free(r->ctype_owned);
	for (size_t i = 0; i < r->n_hdrs; i++) {
		free(r->hdr_name[i]);
		free(r->hdr_value[i]);
	}
	json_decref(r->log_fields);
	if (r->stream) {
		r->stream->done(r->stream->ctx);
		free(r->stream);
	}
	while (r->allocs) {
		struct alloc *a = r->allocs;
		r->allocs = a->next;
		free(a);
	}
	free(r);
}

/* ---- request accessors --------------------------------------------------- */

const char *http_method(const struct http_request *req)
{
	return req->method;
}

const char *http_path(const struct http_request *req)
{
	return req->path;
}

const char *http_param(const struct http_request *req, const char *name)
{
	for (size_t i = 0; i < req->match.n_params; i++)
		if (strcmp(req->match.names[i], name) == 0)
			return req->match.values[i];
	return NULL;
}

int http_query(struct http_request *req, const char *name, const char **ret_value)
{
	const char *raw = NULL;
	size_t raw_len = 0;
	if (MHD_lookup_connection_value_n(req->mhd_conn, MHD_GET_ARGUMENT_KIND, name, strlen(name), &raw, &raw_len) !=
	    MHD_YES)
		return -ENOENT;
	if (!raw) {
		raw = "";
		raw_len = 0;
	}
	if (raw_len > 3 * HTTP_QUERY_MAX)
		return -E2BIG;
	/* '+' was turned into ' ' by libmicrohttpd before our (identity)
	 * unescape callback saw the value; only %XX remains to be decoded. */
	struct alloc *a = malloc(sizeof(*a) + HTTP_QUERY_MAX + 1);
	if (!a)
		return -ENOMEM;
	size_t dl;
	int rc = http_query_decode(raw, raw_len, a->data, HTTP_QUERY_MAX + 1, &dl);
	if (rc < 0) {
		free(a);
		return rc;
	}
	a->next = req->allocs;
	req->allocs = a;
	*ret_value = a->data;
	return 0;
}

const char *http_header(const struct http_request *req, const char *name)
{
	return MHD_lookup_connection_value(req->mhd_conn, MHD_HEADER_KIND, name);
}

struct each {
	struct http_request *req; /* for decoded copies (http_each_query) */
	int (*fn)(void *ctx, const char *name, const char *value);
	void *ctx;
	int rc;
};

static enum MHD_Result each_header(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
	struct each *e = cls;
	e->rc = e->fn(e->ctx, key, value ? value : "");
	return e->rc == 0 ? MHD_YES : MHD_NO;
}

int http_each_header(const struct http_request *req, int (*fn)(void *ctx, const char *name, const char *value),
                     void *ctx)
{
	struct each e = {.fn = fn, .ctx = ctx};
	MHD_get_connection_values(req->mhd_conn, MHD_HEADER_KIND, each_header, &e);
	return e.rc;
}

/* A decoded copy of raw query text, owned by the request. */
static int query_copy(struct http_request *req, const char *raw, const char **ret)
{
	size_t n = raw ? strlen(raw) : 0, dl;
	if (n > 3 * HTTP_QUERY_MAX)
		return -E2BIG;
	struct alloc *a = malloc(sizeof(*a) + HTTP_QUERY_MAX + 1);
	if (!a)
		return -ENOMEM;
	int rc = http_query_decode(raw ? raw : "", n, a->data, HTTP_QUERY_MAX + 1, &dl);
	if (rc < 0) {
		free(a);
		return rc;
	}
	a->next = req->allocs;
	req->allocs = a;
	*ret = a->data;
	return 0;
}

static enum MHD_Result each_query(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
	struct each *e = cls;
	const char *k = NULL, *v = NULL;
	e->rc = query_copy(e->req, key, &k);
	if (e->rc == 0)
		e->rc = query_copy(e->req, value, &v);
	if (e->rc == 0)
		e->rc = e->fn(e->ctx, k, v);
	return e->rc == 0 ? MHD_YES : MHD_NO;
}

int http_each_query(struct http_request *req, int (*fn)(void *ctx, const char *name, const char *value), void *ctx)
{
	struct each e = {.req = req, .fn = fn, .ctx = ctx};
	MHD_get_connection_values(req->mhd_conn, MHD_GET_ARGUMENT_KIND, each_query, &e);
	return e.rc;
}

const char *http_body(const struct http_request *req, size_t *ret_len)
{
	*ret_len = req->body.len;
	return req->body.data ? req->body.data : "";
}

json_t *http_json_body(struct http_request *req, struct zerr *err)
{
	if (!req->json_tried) {
		req->json_tried = true;
		if (req->body.len == 0) {
			req->json_rc = -ENODATA;
			snprintf(req->json_msg, sizeof(req->json_msg), "the request body is empty");
		} else {
			json_error_t je;
			req->json =
			    json_loadb(req->body.data, req->body.len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &je);
			if (!req->json) {
				req->json_rc = -EINVAL;
				snprintf(req->json_msg, sizeof(req->json_msg),
				         "malformed JSON at line %d, column %d: %.120s", je.line, je.column, je.text);
			}
		}
	}
	if (!req->json) {
		zerr_set(err, req->json_rc, "%s", req->json_msg);
		return NULL;
	}
	return json_incref(req->json);
}

const char *http_client_addr(const struct http_request *req)
{
	return req->client;
}

const char *http_request_id(const struct http_request *req)
{
	return req->id;
}

bool http_stopping(const struct http_request *req)
{
	struct http_server *s = req->srv;
	pthread_mutex_lock(&s->lock);
	bool v = s->stopping;
	pthread_mutex_unlock(&s->lock);
	return v;
}

/* ---- replies --------------------------------------------------------------- */

static unsigned sane_status(unsigned status)
{
	return status >= 200 && status <= 599 ? status : 500;
}

/* Take ownership of buf (malloc'd, len bytes) as the response. */
static void set_reply(struct http_request *req, unsigned status, const char *ctype, char *buf, size_t len)
{
	if (req->replied) {
		free(buf);
		return;
	}
	req->replied = true;
	req->status = sane_status(status);
	req->ctype = ctype;
	req->resp = buf;
	req->resp_len = len;
}

/* The fallback when even building an error body fails (out of memory). */
static const char oom_body[] = "{\"error\":{\"code\":\"INTERNAL\",\"message\":\"out of memory\"}}\n";

/* body as compact JSON ending with a newline (curl's output then ends a
 * line), numbers as exact as their values allow (jsontext.h). */
static char *json_text(json_t *body)
{
	_cleanup_free_ char *s = json_dumps_exact(body, JSON_COMPACT | JSON_ENCODE_ANY);
	char *out = NULL;
	if (s && asprintf(&out, "%s\n", s) < 0)
		out = NULL;
	return out;
}

static void reply_oom(struct http_request *req)
{
	char *b = strdup(oom_body);
	set_reply(req, 500, "application/json", b, b ? strlen(b) : 0);
}

void http_reply_json(struct http_request *req, unsigned status, json_t *body)
{
	if (req->replied) {
		json_decref(body);
		return;
	}
	char *s = body ? json_text(body) : NULL;
	json_decref(body);
	if (!s) {
		http_reply_error(req, 500, "INTERNAL", "the response could not be encoded");
		return;
	}
	set_reply(req, status, "application/json", s, strlen(s));
}

static void reply_errorv(struct http_request *req, unsigned status, const char *code, const char *fmt, va_list ap)
    _printf_(4, 0);
static void reply_errorv(struct http_request *req, unsigned status, const char *code, const char *fmt, va_list ap)
{
	if (req->replied)
		return;
	char msg[ERR_MSG_MAX + 1];
	vsnprintf(msg, sizeof(msg), fmt, ap);
	_cleanup_free_ char *clean_msg = utf8_sanitize(msg, ERR_MSG_MAX, false);
	_cleanup_free_ char *clean_code = utf8_sanitize(code ? code : "INTERNAL", 64, true);
	if (!clean_msg || !clean_code)
		return reply_oom(req);
	json_t *o = json_pack("{s:{s:s,s:s}}", "error", "code", clean_code, "message", clean_msg);
	char *s = o ? json_text(o) : NULL;
	json_decref(o);
	if (!s)
		return reply_oom(req);
	set_reply(req, status, "application/json", s, strlen(s));
}

void http_reply_error(struct http_request *req, unsigned status, const char *code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	reply_errorv(req, status, code, fmt, ap);
	va_end(ap);
}

void http_reply_text(struct http_request *req, unsigned status, const char *content_type, const char *text, size_t len)
{
	if (req->replied)
		return;
	char *b = malloc(len + 1);
	char *ct = content_type ? strdup(content_type) : NULL;
	if (!b || (content_type && !ct)) {
		free(b);
		free(ct);
		return reply_oom(req);
	}
	if (len)
		memcpy(b, text, len);
	b[len] = '\0';
	if (ct && strpbrk(ct, "\r\n")) {
		free(b);
		free(ct);
		http_reply_error(req, 500, "INTERNAL", "bad content type");
		return;
	}
	set_reply(req, status, ct ? ct : "text/plain; version=0.0.4; charset=utf-8", b, len);
	req->ctype_owned = ct;
}

void http_reply_stream(struct http_request *req, const char *content_type, http_stream_fn fn, void (*done)(void *ctx),
                       void *ctx)
{
	struct http_stream *st = req->replied ? NULL : calloc(1, sizeof(*st));
	char *ct = st ? strdup(content_type) : NULL;
	if (!st || !ct || strpbrk(ct, "\r\n")) {
		bool replied = req->replied;
		free(st);
		free(ct);
		done(ctx);
		if (!replied)
			reply_oom(req);
		return;
	}
	*st = (struct http_stream){.srv = req->srv, .fd = -1, .fn = fn, .done = done, .ctx = ctx};
	set_reply(req, 200, ct, NULL, 0);
	req->ctype_owned = ct;
	req->stream = st;
}

bool http_stream_stopping(const struct http_stream *st)
{
	pthread_mutex_lock(&st->srv->lock);
	bool stopping = st->srv->stopping;
	pthread_mutex_unlock(&st->srv->lock);
	if (stopping || st->fd < 0)
		return stopping;
	/* The client hung up (its FIN, or a reset): a stream would otherwise
	 * learn it only at its next write. Called on the connection's own
	 * thread, so the descriptor is still the connection's. */
	struct pollfd pfd = {.fd = st->fd, .events = POLLRDHUP};
	return poll(&pfd, 1, 0) > 0 && (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL));
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	(void)pos;
	struct http_stream *st = cls;
	long n = st->fn(st->ctx, st, buf, max);
	return n > 0 ? (ssize_t)n : MHD_CONTENT_READER_END_OF_STREAM;
}

static void stream_free(void *cls)
{
	struct http_stream *st = cls;
	st->done(st->ctx);
	free(st);
}

static bool token_char(char c)
{
	return isalnum((unsigned char)c) || (c && strchr("!#$%&'*+-.^_`|~", c));
}

int http_add_header(struct http_request *req, const char *name, const char *value)
{
	static const char *const owned[] = {"content-type", "content-length", "transfer-encoding",
	                                    "connection",   "x-request-id",   "date"};
	size_t nl = strlen(name), vl = strlen(value);
	if (nl == 0)
		return -EINVAL;
	if (nl > HDR_NAME_MAX || vl > HDR_VALUE_MAX)
		return -E2BIG;
	for (size_t i = 0; i < nl; i++)
		if (!token_char(name[i]))
			return -EINVAL;
	for (size_t i = 0; i < vl; i++) {
		unsigned char c = (unsigned char)value[i];
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return -EINVAL;
	}
	for (size_t i = 0; i < ELEMENTSOF(owned); i++)
		if (strcasecmp(name, owned[i]) == 0)
			return -EPERM;
	if (req->n_hdrs == HTTP_MAX_HEADERS)
		return -E2BIG;
	char *n = strdup(name), *v = strdup(value);
	if (!n || !v) {
		free(n);
		free(v);
		return -ENOMEM;
	}
	req->hdr_name[req->n_hdrs] = n;
	req->hdr_value[req->n_hdrs] = v;
	req->n_hdrs++;
	return 0;
}

int http_log_field(struct http_request *req, const char *key, const char *value)
{
	size_t kl = strlen(key);
	if (kl == 0 || kl > 32)
		return -EINVAL;
	for (size_t i = 0; i < kl; i++)
		if (!(islower((unsigned char)key[i]) || isdigit((unsigned char)key[i]) || key[i] == '_'))
			return -EINVAL;
	static const char *const layer_keys[] = {"event",       "request_id", "method",     "path",   "status",
	                                         "duration_ms", "client",     "body_bytes", "outcome"};
	for (size_t i = 0; i < ELEMENTSOF(layer_keys); i++)
		if (strcmp(key, layer_keys[i]) == 0)
			return -EEXIST;
	if (!req->log_fields)
		return -ENOMEM;
	if (json_object_get(req->log_fields, key))
		return -EEXIST;
	if (json_object_size(req->log_fields) >= LOG_FIELDS_MAX)
		return -E2BIG;
	_cleanup_free_ char *v = utf8_sanitize(value, LOG_VALUE_MAX, true);
	if (!v)
		return -ENOMEM;
	if (json_object_set_new(req->log_fields, key, json_string(v)) < 0)
		return -ENOMEM;
	return 0;
}

/* ---- admission ------------------------------------------------------------- */

/* Connections of client holding a slot; of class cls only when cls is not
 * CONN_OVER. Under s->lock. */
static unsigned count_addr(const struct http_server *s, const char *client, enum conn_class cls)
{
	unsigned n = 0;
	for (const struct tracked_conn *k = s->conns; k; k = k->next)
		if (k->cls != CONN_OVER && (cls == CONN_OVER || k->cls == cls) && strcmp(k->client, client) == 0)
			n++;
	return n;
}

/* Give the connection's slot back. Under s->lock. */
static void conn_release(struct http_server *s, struct tracked_conn *k)
{
	if (k->cls == CONN_ADMITTED)
		s->n_admitted--;
	else if (k->cls == CONN_RESERVE)
		s->n_reserve--;
	k->cls = CONN_OVER;
}

/* shutdown() wakes the connection's thread, which then closes; the slot is
 * free at once. Under s->lock. */
static void conn_kill(struct http_server *s, struct tracked_conn *k)
{
	k->killed = true;
	conn_release(s, k);
	shutdown(k->fd, SHUT_RDWR);
}

/* The admitted connection (of client, unless NULL) that has waited longest,
 * and at least SHED_MIN_NS, for a request line and headers: an idle kept-alive
 * connection or a slow sender. Never one whose request is in: its handler
 * runs, its body arrives or its response goes out. Under s->lock. */
static struct tracked_conn *shed_candidate(struct http_server *s, const char *client, uint64_t now)
{
	struct tracked_conn *best = NULL;
	for (struct tracked_conn *k = s->conns; k; k = k->next) {
		if (k->cls != CONN_ADMITTED || k->killed || !k->receiving || k->in_body ||
		    now - k->since_ns < SHED_MIN_NS)
			continue;
		if (client && strcmp(k->client, client) != 0)
			continue;
		if (!best || k->since_ns < best->since_ns)
			best = k;
	}
	return best;
}

/* A new connection (not yet linked): an admitted slot if one is free or can
 * be freed by shedding, else over capacity. Under s->lock. */
static void admit_new(struct http_server *s, struct tracked_conn *k, uint64_t now)
{
	k->cls = CONN_OVER;
	if (s->max_per_ip && count_addr(s, k->client, CONN_OVER) >= s->max_per_ip) {
		/* the address's own slowest goes first, not someone else's */
		struct tracked_conn *v = shed_candidate(s, k->client, now);
		if (!v)
			return;
		conn_kill(s, v);
	}
	if (s->n_admitted >= s->max_admitted) {
		struct tracked_conn *v = shed_candidate(s, NULL, now);
		if (!v)
			return;
		conn_kill(s, v);
	}
	k->cls = CONN_ADMITTED;
	s->n_admitted++;
}

/* Health checks and requests carrying credentials are what an operator needs
 * most while the server is flooded; a flood of them is still bounded by the
 * reserve and by reserve_per_ip. */
static bool request_privileged(struct MHD_Connection *c, const char *url)
{
	if (strcmp(url, HTTP_HEALTH_PATH) == 0 || strcmp(url, HTTP_HEALTH_PATH "/") == 0)
		return true;
	const char *a = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
	const char *k = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "x-api-key");
	return (a && *a) || (k && *k);
}

/* Whether the request, its headers in, may be served: a connection admitted
 * when it opened is; one over capacity then takes an admitted slot freed
 * since, or a reserve slot if the request is privileged. */
static bool request_admitted(struct http_request *req, const char *url)
{
	struct http_server *s = req->srv;
	struct tracked_conn *k = req->conn;
	if (!k)
		return true; /* untracked (out of memory): as before admission */
	bool privileged = request_privileged(req->mhd_conn, url);
	pthread_mutex_lock(&s->lock);
	if (k->cls == CONN_OVER && !k->killed) {
		if (s->n_admitted < s->max_admitted &&
		    (!s->max_per_ip || count_addr(s, k->client, CONN_OVER) < s->max_per_ip)) {
			k->cls = CONN_ADMITTED;
			s->n_admitted++;
		} else if (privileged && s->n_reserve < s->max_reserve &&
		           count_addr(s, k->client, CONN_RESERVE) < s->reserve_per_ip) {
			k->cls = CONN_RESERVE;
			s->n_reserve++;
		}
	}
	bool ok = k->cls != CONN_OVER;
	pthread_mutex_unlock(&s->lock);
	return ok;
}

/* ---- libmicrohttpd glue ----------------------------------------------------- */

/* The request is in: the deadline no longer applies to this connection until
 * its next request begins. */
static void conn_stop_clock(struct http_request *req)
{
	if (!req->conn)
		return;
	pthread_mutex_lock(&req->srv->lock);
	req->conn->receiving = false;
	pthread_mutex_unlock(&req->srv->lock);
}

/* Hand the reply (or a 500 if there is none) to libmicrohttpd. */
static enum MHD_Result queue_reply(struct http_request *req)
{
	struct http_server *s = req->srv;
	if (!req->replied)
		http_reply_error(req, 500, "INTERNAL", "the handler did not reply");
	conn_stop_clock(req);

	struct MHD_Response *resp;
	bool streamed = req->stream != NULL;
	if (streamed) {
		resp =
		    MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_read, req->stream, stream_free);
		if (!resp)
			return MHD_NO;
		const union MHD_ConnectionInfo *ci =
		    MHD_get_connection_info(req->mhd_conn, MHD_CONNECTION_INFO_CONNECTION_FD);
		req->stream->fd = ci ? ci->connect_fd : -1;
		req->stream = NULL; /* the response owns it now */
		MHD_set_connection_option(req->mhd_conn, MHD_CONNECTION_OPTION_TIMEOUT, (unsigned)HTTP_STREAM_IDLE_S);
	} else {
		resp = MHD_create_response_from_buffer_with_free_callback(
		    req->resp_len, req->resp_len ? req->resp : (void *)"", req->resp_len ? free : NULL);
		if (!resp)
			return MHD_NO;
		if (req->resp_len)
			req->resp = NULL; /* the response owns it now */
	}
	bool ok = (!streamed || (MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache") == MHD_YES &&
	                         MHD_add_response_header(resp, "X-Accel-Buffering", "no") == MHD_YES)) &&
	          MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, req->ctype) == MHD_YES &&
	          MHD_add_response_header(resp, "x-request-id", req->id) == MHD_YES &&
	          MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff") == MHD_YES;
	for (size_t i = 0; ok && i < req->n_hdrs; i++)
		ok = MHD_add_response_header(resp, req->hdr_name[i], req->hdr_value[i]) == MHD_YES;
	pthread_mutex_lock(&s->lock);
	bool stopping = s->stopping;
	pthread_mutex_unlock(&s->lock);
	if (ok && (stopping || req->close))
		ok = MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close") == MHD_YES;
	enum MHD_Result r = ok ? MHD_queue_response(req->mhd_conn, req->status, resp) : MHD_NO;
	MHD_destroy_response(resp);
	if (r == MHD_YES)
		req->queued = true;
	return r;
}

static enum MHD_Result reply_now(struct http_request *req, unsigned status, const char *code, const char *fmt, ...)
    _printf_(4, 5);
static enum MHD_Result reply_now(struct http_request *req, unsigned status, const char *code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	reply_errorv(req, status, code, fmt, ap);
	va_end(ap);
	return queue_reply(req);
}

static void format_addr(const struct sockaddr *sa, char *out, size_t size)
{
	snprintf(out, size, "unknown");
	if (!sa)
		return;
	if (sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, out, (socklen_t)size);
	else if (sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, out, (socklen_t)size);
}

struct framing {
	unsigned content_length;
	unsigned transfer_encoding;
};

static enum MHD_Result count_framing(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
	struct framing *f = cls;
	if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0)
		f->content_length++;
	else if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0)
		f->transfer_encoding++;
	return MHD_YES;
}

/* Fill the request once its headers are in; req may come from on_uri. */
static int request_start(struct http_server *s, struct http_request *req, struct MHD_Connection *c, const char *url,
                         const char *method)
{
	req->srv = s;
	req->mhd_conn = c;
	req->start_ns = util_now_ns();
	make_request_id(s, req->id);
	req->method = strndup(method, METHOD_MAX + 1);
	req->path = strndup(url, HTTP_PATH_MAX + 1);
	req->log_fields = json_object();
	if (!req->method || !req->path || !req->log_fields)
		return -ENOMEM;
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	format_addr(ci ? ci->client_addr : NULL, req->client, sizeof(req->client));
	ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	req->conn = ci ? ci->socket_context : NULL;
	req->started = true;
	return 0;
}

/* The request line is in and libmicrohttpd is about to split the query into
 * parameters, each taking room in the connection's memory: a few hundred
 * exhaust it and the connection closes with no answer at all. So the target
 * is checked here, before that. libmicrohttpd has already noted where the
 * '?' is; an over-long query is cut to nothing right after it, so there is
 * nothing to split and on_access answers 414 with the rest of the request
 * read normally. This is the one place the layer writes into libmicrohttpd's
 * buffer, which it hands over as const char * but owns as char * (0.9.75,
 * parse_initial_message_line). The returned request becomes con_cls. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *c)
{
	struct http_request *req = calloc(1, sizeof(*req));
	if (!req)
		return NULL; /* on_access allocates it then, unchecked */
	req->srv = cls;
	req->target_len = strlen(uri);
	req->target = http_target_check(uri, req->target_len);
	if (req->target == HTTP_TARGET_TOO_LONG || req->target == HTTP_TARGET_TOO_MANY_ARGS) {
		char *q = strchr((char *)uri, '?');
		if (q)
			q[1] = '\0'; /* q[1] is at worst the target's own end */
	}
	return req;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                 const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls)
{
	struct http_server *s = cls;
	struct http_request *req = *con_cls;

	if (!req || !req->started) {
		/* Headers are in: decide everything that needs no body now, so
		 * that a 404, 405 or 413 costs no upload. */
		if (!req) {
			req = calloc(1, sizeof(*req));
			if (!req)
				return MHD_NO;
			req->target = HTTP_TARGET_OK;
			req->target_len = strlen(url);
			*con_cls = req;
		}
		if (request_start(s, req, c, url, method) < 0)
			return MHD_NO;
		/* libmicrohttpd cut the request line in place: the target ends
		 * with the NUL written over the space before the version. Any
		 * other end means the target held a NUL of its own, after which
		 * every C string would drop the rest ("/a\0/b" served as "/a"). */
		if (req->target == HTTP_TARGET_OK && (uintptr_t)version != (uintptr_t)url + req->target_len + 1)
			req->target = HTTP_TARGET_BAD_CHARACTER;
		pthread_mutex_lock(&s->lock);
		s->inflight++;
		bool stopping = s->stopping;
		if (req->conn)
			req->conn->in_body = true; /* the header deadline is met */
		pthread_mutex_unlock(&s->lock);
		bool admitted = stopping || request_admitted(req, url);
		const char *ch = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONNECTION);
		req->last = ch && strcasestr(ch, "close");

		/* Two lengths, or a length and chunking, are read one way here
		 * and maybe another by a proxy in front: request smuggling. */
		struct framing f = {0};
		MHD_get_connection_values(c, MHD_HEADER_KIND, count_framing, &f);
		if (f.content_length > 1 || f.transfer_encoding > 1 || (f.content_length && f.transfer_encoding))
			return reply_now(req, 400, "BAD_REQUEST", "ambiguous message framing");
		const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
		uint64_t declared = 0;
		if (cl && util_parse_u64(cl, 0, UINT64_MAX, &declared) < 0)
			return reply_now(req, 400, "BAD_REQUEST", "bad Content-Length");
		if (declared > s->max_body)
			return reply_now(req, 413, "PAYLOAD_TOO_LARGE", "the request body is larger than %zu bytes",
			                 s->max_body);
		/* An answer given before the body is read makes libmicrohttpd
		 * close the connection; without a body to skip, answer at the
		 * final call instead and keep the connection alive. */
		bool body_follows =
		    declared > 0 || MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING);

		if (stopping) {
			http_reply_error(req, 503, "SHUTTING_DOWN", "the server is shutting down");
		} else if (!admitted) {
			req->close = true;
			if (http_add_header(req, "Retry-After", RETRY_AFTER_S) < 0)
				return MHD_NO;
			http_reply_error(req, 503, "OVER_CAPACITY", "the server is at capacity; retry in %s s",
			                 RETRY_AFTER_S);
		} else if (req->target == HTTP_TARGET_TOO_LONG) {
			http_reply_error(req, 414, "URI_TOO_LONG", "the request target is longer than %d bytes",
			                 HTTP_TARGET_MAX);
		} else if (req->target == HTTP_TARGET_TOO_MANY_ARGS) {
			http_reply_error(req, 414, "URI_TOO_LONG", "the query has more than %d parameters",
			                 HTTP_QUERY_ARGS_MAX);
		} else if (req->target == HTTP_TARGET_BAD_CHARACTER) {
			http_reply_error(req, 400, "BAD_REQUEST",
			                 "the request target holds a NUL, a space or another control character");
		} else {
			http_router_match(s->router, method, url, &req->match);
			if (req->match.status == 405 && http_add_header(req, "Allow", req->match.allow) < 0)
				return MHD_NO;
			switch (req->match.status) {
			case 0:
				break;
			case 400:
				http_reply_error(req, 400, "BAD_REQUEST", "%s", req->match.message);
				break;
			case 405:
				http_reply_error(req, 405, "METHOD_NOT_ALLOWED", "%s", req->match.message);
				break;
			default:
				http_reply_error(req, 404, "NOT_FOUND", "%s", req->match.message);
				break;
			}
		}
		if (req->replied && body_follows)
			return queue_reply(req);
		return MHD_YES;
	}

	if (req->queued) {
		/* answered early; whatever body follows is not ours to read */
		*upload_data_size = 0;
		return MHD_YES;
	}

	if (*upload_data_size) {
		size_t n = *upload_data_size;
		*upload_data_size = 0;
		if (!req->too_large && n > s->max_body - req->body.len) {
			req->too_large = true;
			req->discarded = req->body.len;
			buf_free(&req->body);
		}
		if (req->too_large || req->replied) {
			req->discarded += n;
			return req->discarded > DISCARD_MAX ? MHD_NO : MHD_YES;
		}
		return buf_append(&req->body, upload_data, n) == 0 ? MHD_YES : MHD_NO;
	}

	/* The whole request is in. */
	if (req->replied)
		return queue_reply(req); /* decided at the first call */
	if (req->too_large)
		return reply_now(req, 413, "PAYLOAD_TOO_LARGE", "the request body is larger than %zu bytes",
		                 s->max_body);
	conn_stop_clock(req);
	req->match.route->handler(req, s->app);
	return queue_reply(req);
}

static const char *termination_name(enum MHD_RequestTerminationCode toe)
{
	switch (toe) {
	case MHD_REQUEST_TERMINATED_COMPLETED_OK:
		return "ok";
	case MHD_REQUEST_TERMINATED_TIMEOUT_REACHED:
		return "idle_timeout";
	case MHD_REQUEST_TERMINATED_DAEMON_SHUTDOWN:
		return "shutdown";
	case MHD_REQUEST_TERMINATED_CLIENT_ABORT:
		return "client_abort";
	case MHD_REQUEST_TERMINATED_READ_ERROR:
		return "read_error";
	default:
		return "error";
	}
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe)
{
	struct http_server *s = cls;
	struct http_request *req = *con_cls;
	*con_cls = NULL;
	if (!req)
		return;
	if (!req->started) {
		/* refused by libmicrohttpd after the request line: its own
		 * answer and "http_error" line, no inflight count */
		request_free(req);
		return;
	}

	bool killed = false;
	pthread_mutex_lock(&s->lock);
	bool closing = s->closing;
	if (req->conn) {
		killed = req->conn->killed;
		req->conn->logged = killed;
		/* the next request on this connection starts its clock now */
		req->conn->receiving = true;
		req->conn->in_body = false;
		/* a connection that is about to close gives its slot back now,
		 * not once its thread gets round to closing it */
		if (req->close || req->last || s->stopping)
			conn_release(s, req->conn);
		req->conn->since_ns = util_now_ns();
	}
	pthread_mutex_unlock(&s->lock);

	if (s->log) {
		const char *outcome = termination_name(toe);
		if (killed)
			outcome = "request_timeout";
		else if (closing && toe != MHD_REQUEST_TERMINATED_COMPLETED_OK)
			outcome = "shutdown";
		_cleanup_free_ char *path = utf8_sanitize(req->path, LOG_PATH_MAX, true);
		_cleanup_free_ char *method = utf8_sanitize(req->method, METHOD_MAX, true);
		json_t *o = json_pack("{s:s,s:s,s:s?,s:s?,s:i,s:I,s:s,s:I,s:s}", "event", "http_request", "request_id",
		                      req->id, "method", method, "path", path, "status",
		                      req->queued ? (int)req->status : 0, "duration_ms",
		                      (json_int_t)((util_now_ns() - req->start_ns) / 1000000), "client", req->client,
		                      "body_bytes", (json_int_t)(req->body.len + req->discarded), "outcome", outcome);
		if (o && req->log_fields)
			json_object_update_missing(o, req->log_fields);
		emit_log(s, o);
		json_decref(o);
	}
	request_free(req);

	pthread_mutex_lock(&s->lock);
	s->inflight--;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
	struct http_server *s = cls;
	if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
		const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
		struct tracked_conn *k = calloc(1, sizeof(*k));
		if (!k || !ci) {
			/* Untracked, the connection still has the idle timeout. */
			free(k);
			*socket_context = NULL;
			return;
		}
		k->fd = ci->connect_fd;
		ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
		format_addr(ci ? ci->client_addr : NULL, k->client, sizeof(k->client));
		k->receiving = true;
		k->since_ns = util_now_ns();
		pthread_mutex_lock(&s->lock);
		admit_new(s, k, k->since_ns);
		k->next = s->conns;
		if (s->conns)
			s->conns->prev = k;
		s->conns = k;
		pthread_mutex_unlock(&s->lock);
		*socket_context = k;
		return;
	}
	/* CLOSED comes before libmicrohttpd closes the socket, so once the
	 * entry is unlinked here the watchdog can no longer touch a reused fd. */
	struct tracked_conn *k = *socket_context;
	*socket_context = NULL;
	if (!k)
		return;
	pthread_mutex_lock(&s->lock);
	conn_release(s, k);
	if (k->prev)
		k->prev->next = k->next;
	else
		s->conns = k->next;
	if (k->next)
		k->next->prev = k->prev;
	pthread_mutex_unlock(&s->lock);
	if (k->killed && !k->logged) {
		/* cut off before its headers were complete: no request line
		 * was logged for it */
		json_t *o = json_pack("{s:s,s:s}", "event", "http_request_timeout", "client", k->client);
		emit_log(s, o);
		json_decref(o);
	}
	free(k);
}

/* Cut off connections that take longer than the deadline to deliver a
 * request; shutdown() wakes the connection's thread, which then closes. */
static void *watchdog_main(void *arg)
{
	struct http_server *s = arg;
	pthread_mutex_lock(&s->lock);
	while (!s->watchdog_exit) {
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_nsec += WATCHDOG_TICK_MS * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&s->wd_cond, &s->lock, &ts);
		uint64_t now = util_now_ns();
		for (struct tracked_conn *k = s->conns; k; k = k->next) {
			uint64_t limit = k->in_body            ? s->request_timeout_ns
			                 : k->cls == CONN_OVER ? s->over_header_ns
			                                       : s->header_timeout_ns;
			if (k->receiving && !k->killed && now - k->since_ns > limit)
				conn_kill(s, k);
		}
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

static void mhd_logger(void *cls, const char *fmt, va_list ap) _printf_(2, 0);
static void mhd_logger(void *cls, const char *fmt, va_list ap)
{
	struct http_server *s = cls;
	if (!s->log)
		return;
	char buf[512];
	vsnprintf(buf, sizeof(buf), fmt, ap);
	size_t n = strlen(buf);
	while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		buf[--n] = '\0';
	_cleanup_free_ char *clean = utf8_sanitize(buf, sizeof(buf), true);
	if (!clean)
		return;
	json_t *o = json_pack("{s:s,s:s}", "event", "http_error", "message", clean);
	emit_log(s, o);
	json_decref(o);
}

/* The router decodes each path segment itself: libmicrohttpd's default would
 * turn "%2F" into a separator before we could tell them apart. Query values
 * are decoded by http_query for the same reason. */
static size_t unescape_none(void *cls, struct MHD_Connection *c, char *s)
{
	return strlen(s);
}

/* ---- start / stop ----------------------------------------------------------- */

int http_split_listen(const char *addr, char *host, size_t host_size, uint16_t *ret_port, struct zerr *err)
{
	if (!addr || !*addr)
		return zerr_set(err, -EINVAL, "empty listen address");
	const char *colon, *h = addr;
	size_t hl;
	if (addr[0] == '[') {
		const char *close = strchr(addr, ']');
		if (!close || close[1] != ':')
			return zerr_set(err, -EINVAL, "listen address '%s': expected [ADDR]:PORT", addr);
		h = addr + 1;
		hl = (size_t)(close - h);
		colon = close + 1;
	} else {
		colon = strrchr(addr, ':');
		if (!colon || memchr(addr, ':', (size_t)(colon - addr)))
			return zerr_set(err, -EINVAL, "listen address '%s': expected HOST:PORT or [V6]:PORT", addr);
		hl = (size_t)(colon - addr);
	}
	if (hl == 0 || hl >= host_size)
		return zerr_set(err, -EINVAL, "listen address '%s': bad host", addr);
	uint64_t p;
	if (util_parse_u64(colon + 1, 0, 65535, &p) < 0)
		return zerr_set(err, -EINVAL, "listen address '%s': bad port", addr);
	memcpy(host, h, hl);
	host[hl] = '\0';
	*ret_port = (uint16_t)p;
	return 0;
}

static int open_listener(const char *addr, int *ret_fd, int *ret_port, struct zerr *err)
{
	char host[256], port[8];
	uint16_t portn;
	int r = http_split_listen(addr, host, sizeof(host), &portn, err);
	if (r == 0)
		snprintf(port, sizeof(port), "%u", portn);
	if (r < 0)
		return r;
	struct addrinfo hints = {
	    .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
	struct addrinfo *ai = NULL;
	int g = getaddrinfo(host, port, &hints, &ai);
	if (g != 0)
		return zerr_set(err, -EADDRNOTAVAIL, "listen address '%s': %s", addr, gai_strerror(g));
	_cleanup_close_ int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		r = -errno;
		freeaddrinfo(ai);
		return zerr_set(err, r, "socket: %s", strerror(-r));
	}
	int one = 1;
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
		r = -errno;
		freeaddrinfo(ai);
		return zerr_set(err, r, "bind %s: %s", addr, strerror(-r));
	}
	freeaddrinfo(ai);
	if (listen(fd, SOMAXCONN) < 0) {
		r = -errno;
		return zerr_set(err, r, "listen %s: %s", addr, strerror(-r));
	}
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) {
		r = -errno;
		return zerr_set(err, r, "getsockname: %s", strerror(-r));
	}
	if (ss.ss_family == AF_INET)
		*ret_port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
	else
		*ret_port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	*ret_fd = TAKE_FD(fd);
	return 0;
}

static void server_free(struct http_server *s)
{
	if (!s)
		return;
	if (s->watchdog_running) {
		pthread_mutex_lock(&s->lock);
		s->watchdog_exit = true;
		pthread_cond_signal(&s->wd_cond);
		pthread_mutex_unlock(&s->lock);
		pthread_join(s->watchdog, NULL);
	}
	if (s->mhd_fd >= 0)
		close(s->mhd_fd);
	if (s->listen_fd >= 0) {
		/* should a failed start have left libmicrohttpd's duplicate
		 * open, the socket still stops listening */
		shutdown(s->listen_fd, SHUT_RDWR);
		close(s->listen_fd);
	}
	http_router_free(s->router);
	pthread_cond_destroy(&s->wd_cond);
	pthread_cond_destroy(&s->cond);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

int http_server_start(const struct http_config *cfg, const struct http_route *routes, size_t n_routes, void *app,
                      struct http_server **ret, struct zerr *err)
{
	if (!cfg || !ret)
		return zerr_set(err, -EINVAL, "no configuration");
	const char *addr = cfg->listen ? cfg->listen : "127.0.0.1:8080";
	unsigned max_conn = cfg->max_connections ? cfg->max_connections : DEF_MAX_CONNECTIONS;
	unsigned idle = cfg->idle_timeout_s ? cfg->idle_timeout_s : DEF_IDLE_TIMEOUT_S;
	unsigned req_to = cfg->request_timeout_ms ? cfg->request_timeout_ms : DEF_REQUEST_TIMEOUT;
	size_t hdr = cfg->max_header_bytes ? cfg->max_header_bytes : DEF_HEADER_BYTES;
	size_t body = cfg->max_body ? cfg->max_body : DEF_MAX_BODY;
	unsigned hdr_to = cfg->header_timeout_ms ? cfg->header_timeout_ms : DEF_HEADER_TIMEOUT;
	if (max_conn > 8192)
		return zerr_set(err, -EINVAL, "max_connections %u is above 8192", max_conn);
	if (cfg->max_per_ip > max_conn)
		return zerr_set(err, -EINVAL, "max_per_ip is above max_connections");
	if (idle > 3600)
		return zerr_set(err, -EINVAL, "idle_timeout_s %u is above 3600", idle);
	if (req_to > 3600000)
		return zerr_set(err, -EINVAL, "request_timeout_ms %u is above 3600000", req_to);
	if (hdr_to > req_to)
		hdr_to = req_to; /* the headers are part of the request */
	if (hdr < 8192 || hdr > 1024 * 1024)
		return zerr_set(err, -EINVAL, "max_header_bytes %zu is outside 8 KiB..1 MiB", hdr);
	if (body > 1024u * 1024 * 1024)
		return zerr_set(err, -EINVAL, "max_body %zu is above 1 GiB", body);

	struct http_server *s = calloc(1, sizeof(*s));
	if (!s)
		return zerr_set(err, -ENOMEM, "out of memory");
	s->listen_fd = s->mhd_fd = -1;
	s->app = app;
	s->log = cfg->log;
	s->max_body = body;
	s->request_timeout_ns = (uint64_t)req_to * 1000000;
	s->header_timeout_ns = (uint64_t)hdr_to * 1000000;
	s->over_header_ns = (uint64_t)(hdr_to < OVER_HEADER_MS ? hdr_to : OVER_HEADER_MS) * 1000000;
	s->max_admitted = max_conn;
	s->max_reserve = max_conn / 8 > 4 ? max_conn / 8 : 4;
	/* two at least: a monitor's next check may come before the connection of
	 * its last one has closed on this side */
	s->reserve_per_ip = s->max_reserve / 4 > 2 ? s->max_reserve / 4 : 2;
	s->max_per_ip = cfg->max_per_ip;
	/* libmicrohttpd's own limits, past which it closes new connections
	 * without a word: above the admission cap by the reserve and by room to
	 * answer 503 to half as many more (at least 64), or per address to half
	 * its share more (at least 8). Over-capacity connections live at most
	 * the short over-capacity header deadline, so the room is turned over
	 * quickly; without it a flood that fills the library's table turns the
	 * 503s into resets. */
	unsigned over = max_conn / 2 > 64 ? max_conn / 2 : 64;
	unsigned mhd_limit = max_conn + s->max_reserve + over;
	unsigned mhd_per_ip =
	    cfg->max_per_ip ? cfg->max_per_ip + s->reserve_per_ip + (cfg->max_per_ip / 2 > 8 ? cfg->max_per_ip / 2 : 8)
	                    : 0;
	s->grace_ms = cfg->grace_ms ? cfg->grace_ms : DEF_GRACE_MS;
	pthread_mutex_init(&s->lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->cond, &ca);
	pthread_cond_init(&s->wd_cond, &ca);
	pthread_condattr_destroy(&ca);

	int r = http_router_new(routes, n_routes, &s->router, err);
	if (r < 0)
		goto fail;
	r = open_listener(addr, &s->listen_fd, &s->port, err);
	if (r < 0)
		goto fail;
	/* libmicrohttpd gets its own descriptor of the listening socket: it
	 * hands it back on quiesce, and whether it closes it on a failed start
	 * is not documented. Ours stays for shutdown() and the final close. */
	s->mhd_fd = fcntl(s->listen_fd, F_DUPFD_CLOEXEC, 3);
	if (s->mhd_fd < 0) {
		r = zerr_set(err, -errno, "dup: %m");
		goto fail;
	}
	r = pthread_create(&s->watchdog, NULL, watchdog_main, s);
	if (r != 0) {
		r = zerr_set(err, -r, "cannot start the request watchdog");
		goto fail;
	}
	s->watchdog_running = true;

	errno = 0;
	/* The logger option comes first, or messages about the options
	 * before it would go to stderr. */
	s->mhd = MHD_start_daemon(
	    MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL | MHD_USE_ITC |
	        MHD_USE_ERROR_LOG,
	    0, NULL, NULL, on_access, s, MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, s, MHD_OPTION_LISTEN_SOCKET, s->mhd_fd,
	    MHD_OPTION_CONNECTION_LIMIT, mhd_limit, MHD_OPTION_PER_IP_CONNECTION_LIMIT, mhd_per_ip,
	    MHD_OPTION_CONNECTION_TIMEOUT, idle, MHD_OPTION_CONNECTION_MEMORY_LIMIT, hdr, MHD_OPTION_NOTIFY_COMPLETED,
	    on_completed, s, MHD_OPTION_NOTIFY_CONNECTION, on_connection, s, MHD_OPTION_UNESCAPE_CALLBACK,
	    unescape_none, s, MHD_OPTION_URI_LOG_CALLBACK, on_uri, s, MHD_OPTION_STRICT_FOR_CLIENT, 1, MHD_OPTION_END);
	if (!s->mhd) {
		r = zerr_set(err, errno > 0 ? -errno : -EIO, "cannot start the HTTP daemon on %s", addr);
		s->mhd_fd = -1; /* see above: possibly closed already */
		goto fail;
	}
	*ret = s;
	return 0;
fail:
	server_free(s);
	return r;
}

int http_server_port(const struct http_server *s)
{
	return s->port;
}

void http_server_quiesce(struct http_server *s)
{
	if (!s)
		return;
	pthread_mutex_lock(&s->lock);
	bool first = !s->quiesced;
	s->quiesced = s->stopping = true;
	pthread_mutex_unlock(&s->lock);
	if (!first)
		return;
	(void)MHD_quiesce_daemon(s->mhd); /* returns s->mhd_fd, which we keep */
	/* The socket must stay open until MHD_stop_daemon; shutdown() makes the
	 * kernel refuse new and queued connections right away. */
	shutdown(s->listen_fd, SHUT_RDWR);
}

void http_server_stop(struct http_server *s)
{
	if (!s)
		return;
	http_server_quiesce(s);

	struct timespec deadline;
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += s->grace_ms / 1000;
	deadline.tv_nsec += (long)(s->grace_ms % 1000) * 1000000L;
	if (deadline.tv_nsec >= 1000000000L) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&s->lock);
	while (s->inflight > 0)
		if (pthread_cond_timedwait(&s->cond, &s->lock, &deadline) == ETIMEDOUT)
			break;
	s->closing = true;
	pthread_mutex_unlock(&s->lock);

	MHD_stop_daemon(s->mhd);
	s->mhd = NULL;
	server_free(s);
}

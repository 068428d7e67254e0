/* Integration tests: the egress gateway (egress.c) over real sockets, without
 * sandboxes. The test is the client, on one end of a socketpair (or of a
 * Unix listening socket) handed to egress_serve; the origins are servers of
 * this test on 127.0.0.1, which the gateway may reach only where the test
 * lifts 127.0.0.0/8 as an operator would. No packet leaves the machine: the
 * refusals of other addresses (10.253.0.2, 169.254.169.254) come from the
 * decision, before any connect. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "egress.h"

/* ---- origins on 127.0.0.1 -------------------------------------------------- */

enum origin_kind { ECHO, HTTP, BLAST };
#define BLAST_BYTES (4 << 20)

struct origin {
	enum origin_kind kind;
	int fd;
	uint16_t port;
	_Atomic int accepted;
	pthread_t thread;
	pthread_mutex_t mu;
	char last_head[8192];
};

static void *origin_conn(void *arg);

struct origin_call {
	struct origin *o;
	int fd;
};

static void *origin_main(void *arg)
{
	struct origin *o = arg;
	for (;;) {
		int fd = accept(o->fd, NULL, NULL);
		if (fd < 0)
			return NULL;
		atomic_fetch_add(&o->accepted, 1);
		struct origin_call *c = malloc(sizeof(*c));
		c->o = o;
		c->fd = fd;
		pthread_t t;
		pthread_create(&t, NULL, origin_conn, c);
		pthread_detach(t);
	}
}

static void *origin_conn(void *arg)
{
	struct origin_call *c = arg;
	char buf[65536];
	ssize_t n;
	if (c->o->kind == BLAST) {
		/* 4 MiB of a known pattern, then a full close. */
		for (size_t sent = 0; sent < BLAST_BYTES;) {
			for (size_t i = 0; i < sizeof(buf); i++)
				buf[i] = (char)((sent + i) % 251);
			ssize_t w = write(c->fd, buf, sizeof(buf));
			if (w <= 0)
				break;
			sent += (size_t)w;
			if ((size_t)w < sizeof(buf))
				break; /* a short write breaks the pattern: the test then fails */
		}
	} else if (c->o->kind == ECHO) {
		while ((n = read(c->fd, buf, sizeof(buf))) > 0)
			for (ssize_t off = 0; off < n;) {
				ssize_t w = write(c->fd, buf + off, (size_t)(n - off));
				if (w <= 0)
					goto out;
				off += w;
			}
	} else {
		size_t len = 0;
		while (len < sizeof(buf) - 1 && (n = read(c->fd, buf + len, sizeof(buf) - 1 - len)) > 0) {
			len += (size_t)n;
			buf[len] = '\0';
			if (strstr(buf, "\r\n\r\n"))
				break;
		}
		pthread_mutex_lock(&c->o->mu);
		snprintf(c->o->last_head, sizeof(c->o->last_head), "%.8000s", buf);
		pthread_mutex_unlock(&c->o->mu);
		static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";
		(void)!write(c->fd, resp, sizeof(resp) - 1);
	}
out:
	close(c->fd);
	free(c);
	return NULL;
}

static void origin_start(struct origin *o, enum origin_kind kind)
{
	memset(o, 0, sizeof(*o));
	o->kind = kind;
	pthread_mutex_init(&o->mu, NULL);
	o->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sin);
	assert_int_equal(bind(o->fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(o->fd, 128), 0);
	assert_int_equal(getsockname(o->fd, (struct sockaddr *)&sin, &sl), 0);
	o->port = ntohs(sin.sin_port);
	pthread_create(&o->thread, NULL, origin_main, o);
}

static void origin_stop(struct origin *o)
{
	shutdown(o->fd, SHUT_RDWR);
	pthread_join(o->thread, NULL);
	close(o->fd);
}

/* A port nothing listens on: bound, never listening. */
static int closed_port(uint16_t *ret)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sin);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &sl), 0);
	*ret = ntohs(sin.sin_port);
	return fd;
}

/* ---- the gateway and its clients --------------------------------------- */

static struct origin echo, web, trap, blast; /* trap: must never be reached */
static struct egress_rules lifted, defaults;
static int self_fd;
static uint16_t self_port;

static struct egress_gw *gw_start(const struct egress_rules *rules, unsigned per_session, unsigned per_project,
                                  unsigned buffer, unsigned idle_ms)
{
	struct egress_cfg cfg = {.rules = rules,
	                         .max_per_session = per_session,
	                         .max_per_project = per_project,
	                         .buffer_bytes = buffer,
	                         .idle_timeout_ms = idle_ms};
	struct egress_gw *gw = NULL;
	struct zerr err = {0};
	if (egress_start(&cfg, &gw, &err) < 0)
		fail_msg("egress_start: %s", err.msg);
	return gw;
}

static struct egress_ctx ctx_for(const char *project, const struct egress_policy *p, struct egress_counters *counters)
{
	struct egress_ctx ctx = {.policy = p,
	                         .max_requests = 100,
	                         .max_bytes = 1ull << 30,
	                         .connect_timeout_ms = 2000,
	                         .counters = counters};
	snprintf(ctx.project_id, sizeof(ctx.project_id), "%s", project);
	return ctx;
}

static struct egress_session *session(struct egress_gw *gw, const char *project, const struct egress_policy *p,
                                      struct egress_counters *counters, uint64_t max_requests, uint64_t max_bytes)
{
	struct egress_ctx ctx = ctx_for(project, p, counters);
	if (max_requests)
		ctx.max_requests = max_requests;
	if (max_bytes)
		ctx.max_bytes = max_bytes;
	struct egress_session *s = NULL;
	assert_int_equal(egress_session_open(gw, &ctx, &s), 0);
	return s;
}

static void timeouts(int fd, int ms)
{
	struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

/* A client connection served under s: the test's end. */
static int client(struct egress_session *s)
{
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	assert_int_equal(egress_serve(s, sv[1]), 0);
	timeouts(sv[0], 5000);
	return sv[0];
}

static void send_all(int fd, const void *data, size_t len)
{
	for (size_t off = 0; off < len;) {
		ssize_t n = write(fd, (const char *)data + off, len - off);
		assert_true(n > 0);
		off += (size_t)n;
	}
}

/* Everything until EOF (or the receive timeout, which fails). */
static size_t read_all(int fd, char *buf, size_t cap)
{
	size_t len = 0;
	for (;;) {
		ssize_t n = read(fd, buf + len, cap - 1 - len);
		if (n == 0)
			break;
		if (n < 0 && errno == ECONNRESET)
			break;
		if (n < 0)
			fail_msg("read: %s (after %zu bytes: %.*s)", strerror(errno), len, (int)len, buf);
		len += (size_t)n;
		if (len == cap - 1)
			break;
	}
	buf[len] = '\0';
	return len;
}

/* One request on a new connection; the whole answer. */
static char *ask(struct egress_session *s, const char *request)
{
	static char answer[65536];
	int fd = client(s);
	send_all(fd, request, strlen(request));
	read_all(fd, answer, sizeof(answer));
	close(fd);
	return answer;
}

static void expect_refused(struct egress_session *s, const char *request, const char *status, const char *reason)
{
	char *a = ask(s, request);
	if (strncmp(a, status, strlen(status)) != 0 || !strstr(a, reason) || !strstr(a, "X-Zmesh-Egress: refused\r\n"))
		fail_msg("%s: want %s ... %s, got:\n%s", request, status, reason, a);
}

static int setup(void **state)
{
	signal(SIGPIPE, SIG_IGN);
	origin_start(&echo, ECHO);
	origin_start(&web, HTTP);
	origin_start(&trap, ECHO);
	origin_start(&blast, BLAST);
	self_fd = closed_port(&self_port);
	egress_rules_init(&defaults);
	egress_rules_init(&lifted);
	assert_int_equal(egress_rules_add_list(&lifted, false, "127.0.0.0/8", NULL), 0);
	struct egress_addr lo = {.family = AF_INET, .b = {127, 0, 0, 1}};
	/* The platform's own API, as zmeshd would register it. */
	assert_int_equal(egress_rules_add_self(&lifted, &lo, self_port), 0);
	assert_int_equal(egress_rules_add_self(&defaults, &lo, self_port), 0);
	return 0;
}

static int teardown(void **state)
{
	origin_stop(&echo);
	origin_stop(&web);
	origin_stop(&trap);
	origin_stop(&blast);
	close(self_fd);
	return 0;
}

/* ---- tests ----------------------------------------------------------------- */

struct pump {
	int fd;
	const char *data;
	size_t len;
};

/* Writes until done or the gateway hangs up (no cmocka assert off the
 * test's thread). */
static void *pump_main(void *arg)
{
	struct pump *p = arg;
	for (size_t off = 0; off < p->len;) {
		ssize_t n = write(p->fd, p->data + off, p->len - off);
		if (n <= 0)
			return NULL;
		off += (size_t)n;
	}
	shutdown(p->fd, SHUT_WR);
	return NULL;
}

/* Bytes through a tunnel, both ways at once, byte for byte. */
static void tunnel_roundtrip(struct egress_session *s, const char *connect, size_t size)
{
	char *data = malloc(size), *back = malloc(size + 1);
	for (size_t i = 0; i < size; i++)
		data[i] = (char)(rand() & 0xff);
	int fd = client(s);
	send_all(fd, connect, strlen(connect));
	static const char ok[] = "HTTP/1.1 200 Connection established\r\n\r\n";
	char head[sizeof(ok)] = {0};
	size_t got = 0;
	while (got < sizeof(ok) - 1) {
		ssize_t n = read(fd, head + got, sizeof(ok) - 1 - got);
		if (n <= 0)
			fail_msg("no 200 (%s): %s", strerror(errno), head);
		got += (size_t)n;
	}
	assert_string_equal(head, ok);
	struct pump p = {fd, data, size};
	pthread_t t;
	pthread_create(&t, NULL, pump_main, &p);
	size_t n = read_all(fd, back, size + 1);
	pthread_join(t, NULL);
	close(fd);
	assert_int_equal(n, size);
	assert_memory_equal(back, data, size);
	free(data);
	free(back);
}

static void test_connect_tunnel(void **state)
{
	struct egress_gw *gw = gw_start(&lifted, 0, 0, 0, 0);
	struct egress_policy open = {.mode = EGRESS_OPEN};
	struct egress_counters counters = {0};
	struct egress_session *s = session(gw, "p1", &open, &counters, 0, 0);
	char req[128];
	snprintf(req, sizeof(req), "CONNECT 127.0.0.1:%u HTTP/1.1\r\nHost: 127.0.0.1:%u\r\n\r\n", echo.port, echo.port);
	tunnel_roundtrip(s, req, 3 << 20);
	/* By name: the gateway resolves "localhost" itself; ::1 (not
	 * lifted) is passed over for 127.0.0.1. */
	snprintf(req, sizeof(req), "CONNECT localhost:%u HTTP/1.1\r\n\r\n", echo.port);
	tunnel_roundtrip(s, req, 100000);
	egress_session_close(s);
	assert_int_equal(atomic_load(&counters.requests), 2);
	assert_int_equal(atomic_load(&counters.refused), 0);
	assert_int_equal(atomic_load(&counters.bytes), 2 * ((3 << 20) + 100000));
	struct egress_totals t;
	egress_totals(gw, &t);
	assert_int_equal(t.requests, 2);
	egress_stop(gw);
}

static void test_http_proxied(void **state)
{
	struct egress_gw *gw = gw_start(&lifted, 0, 0, 0, 0);
	struct egress_policy open = {.mode = EGRESS_OPEN};
	struct egress_counters counters = {0};
	struct egress_session *s = session(gw, "p1", &open, &counters, 0, 0);
	char req[512];
	snprintf(req, sizeof(req),
	         "GET http://127.0.0.1:%u/path?q=1 HTTP/1.1\r\nHost: elsewhere.example\r\n"
	         "Proxy-Authorization: Basic eDp5\r\nProxy-Connection: keep-alive\r\nConnection: keep-alive, X-Hop\r\n"
	         "X-Hop: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nUpgrade: h2c\r\nX-Keep: yes\r\n\r\n",
	         web.port);
	char *a = ask(s, req);
	assert_string_equal(a, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello");
	pthread_mutex_lock(&web.mu);
	char want[128];
	snprintf(want, sizeof(want),
	         "GET /path?q=1 HTTP/1.1\r\nHost: 127.0.0.1:%u\r\nX-Keep: yes\r\nConnection: close\r\n\r\n", web.port);
	assert_string_equal(web.last_head, want);
	pthread_mutex_unlock(&web.mu);
	/* Not a proxy request: 400, not refused. */
	a = ask(s, "GET /local HTTP/1.1\r\nHost: x\r\n\r\n");
	assert_non_null(strstr(a, "HTTP/1.1 400 "));
	assert_null(strstr(a, "X-Zmesh-Egress"));
	a = ask(s, "GET https://example.com/ HTTP/1.1\r\n\r\n");
	assert_non_null(strstr(a, "CONNECT"));
	egress_session_close(s);
	assert_int_equal(atomic_load(&counters.requests), 1);
	assert_int_equal(atomic_load(&counters.bytes),
	                 strlen("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"));
	egress_stop(gw);
}

static void test_refusals(void **state)
{
	struct egress_gw *gw = gw_start(&defaults, 0, 0, 0, 0), *gw2 = gw_start(&lifted, 0, 0, 0, 0);
	struct egress_policy open = {.mode = EGRESS_OPEN}, none = {.mode = EGRESS_NONE},
	                     list = {.mode = EGRESS_ALLOWLIST};
	assert_int_equal(egress_entry_parse("*.example.com", &list.e[list.n++], NULL), 0);
	struct egress_counters counters = {0};
	struct egress_session *s = session(gw, "p1", &open, &counters, 0, 0);
	char req[256];
	snprintf(req, sizeof(req), "CONNECT 127.0.0.1:%u HTTP/1.1\r\n\r\n", trap.port);
	expect_refused(s, req, "HTTP/1.1 403 ", "egress refused: 127.0.0.1 is a loopback address\n");
	snprintf(req, sizeof(req), "GET http://127.0.0.1:%u/ HTTP/1.1\r\n\r\n", trap.port);
	expect_refused(s, req, "HTTP/1.1 403 ", "egress refused: 127.0.0.1 is a loopback address");
	snprintf(req, sizeof(req), "CONNECT localhost:%u HTTP/1.1\r\n\r\n", trap.port);
	expect_refused(s, req, "HTTP/1.1 403 ", "is a loopback address");
	expect_refused(s, "CONNECT 10.253.0.2:443 HTTP/1.1\r\n\r\n", "HTTP/1.1 403 ",
	               "egress refused: 10.253.0.2 is a private address");
	expect_refused(s, "GET http://169.254.169.254/latest/meta-data/ HTTP/1.1\r\n\r\n", "HTTP/1.1 403 ",
	               "cloud metadata");
	expect_refused(s, "CONNECT [::1]:443 HTTP/1.1\r\n\r\n", "HTTP/1.1 403 ", "::1 is a loopback address");
	expect_refused(s, "CONNECT [::ffff:10.0.0.1]:443 HTTP/1.1\r\n\r\n", "HTTP/1.1 403 ", "IPv4-mapped");
	expect_refused(s, "CONNECT 192.168.7.1:443 HTTP/1.1\r\n\r\n", "HTTP/1.1 403 ",
	               "egress refused: 192.168.7.1 is a private address");
	expect_refused(s, "CONNECT bad_name.example:443 HTTP/1.1\r\n\r\n", "HTTP/1.1 403 ", "not a valid host name");
	egress_session_close(s);
	assert_int_equal(atomic_load(&counters.refused), 9);
	assert_int_equal(atomic_load(&counters.requests), 9);
	assert_int_equal(atomic_load(&counters.bytes), 0);

	/* Lifted loopback, but the platform's own port stays refused, and so
	 * does mail (a loopback target: were the rule broken, nothing would
	 * leave the machine). */
	s = session(gw2, "p1", &open, NULL, 0, 0);
	expect_refused(s, "CONNECT 127.0.0.1:25 HTTP/1.1\r\n\r\n", "HTTP/1.1 403 ", "port 25 is closed");
	snprintf(req, sizeof(req), "CONNECT 127.0.0.1:%u HTTP/1.1\r\n\r\n", self_port);
	expect_refused(s, req, "HTTP/1.1 403 ", "127.0.0.1 is an address of the platform itself");
	egress_session_close(s);
	/* Project policies. */
	s = session(gw2, "p1", &none, NULL, 0, 0);
	snprintf(req, sizeof(req), "CONNECT 127.0.0.1:%u HTTP/1.1\r\n\r\n", trap.port);
	expect_refused(s, req, "HTTP/1.1 403 ", "egress refused: the project allows no outbound requests");
	egress_session_close(s);
	s = session(gw2, "p1", &list, NULL, 0, 0);
	expect_refused(s, req, "HTTP/1.1 403 ", "egress refused: 127.0.0.1 is not in the project's allowlist");
	snprintf(req, sizeof(req), "CONNECT localhost:%u HTTP/1.1\r\n\r\n", trap.port);
	expect_refused(s, req, "HTTP/1.1 403 ", "egress refused: localhost is not in the project's allowlist");
	egress_session_close(s);
	/* Nothing above reached a listener. */
	assert_int_equal(atomic_load(&trap.accepted), 0);

	/* A connect that fails is a 502 with the reason, never a hang. */
	uint16_t port;
	int hold = closed_port(&port);
	s = session(gw2, "p1", &open, NULL, 0, 0);
	snprintf(req, sizeof(req), "CONNECT 127.0.0.1:%u HTTP/1.1\r\n\r\n", port);
	char *a = ask(s, req);
	assert_non_null(strstr(a, "HTTP/1.1 502 "));
	assert_non_null(strstr(a, "could not connect to 127.0.0.1 port"));
	assert_non_null(strstr(a, "Connection refused"));
	/* Malformed heads: 400. */
	a = ask(s, "CONNECT 127.0.0.1 HTTP/1.1\r\n\r\n");
	assert_non_null(strstr(a, "HTTP/1.1 400 "));
	a = ask(s, "CONNECT a:1 HTTP/1.1\nHost: x\n\n");
	assert_non_null(strstr(a, "HTTP/1.1 400 "));
	egress_session_close(s);
	close(hold);
	egress_stop(gw);
	egress_stop(gw2);
}

static void test_request_limit(void **state)
{
	struct egress_gw *gw = gw_start(&lifted, 0, 0, 0, 0);
	struct egress_policy open = {.mode = EGRESS_OPEN};
	struct egress_counters counters = {0};
	struct egress_session *s = session(gw, "p1", &open, &counters, 2, 0);
	char req[256];
	snprintf(req, sizeof(req), "GET http://127.0.0.1:%u/ HTTP/1.1\r\n\r\n", web.port);
	assert_non_null(strstr(ask(s, req), "200 OK"));
	assert_non_null(strstr(ask(s, req), "200 OK"));
	expect_refused(s, req, "HTTP/1.1 429 ", "egress refused: more than 2 requests in this invocation");
	egress_session_close(s);
	assert_int_equal(atomic_load(&counters.requests), 3);
	assert_int_equal(atomic_load(&counters.refused), 1);
	egress_stop(gw);
}

/* A sandbox's listening socket: the gateway accepts from it; connections
 * beyond the bound are refused at once, and a freed slot is usable. */
static int unix_listener(char *path, size_t size)
{
	snprintf(path, size, "/tmp/zmesh-egress-test-%d.sock", getpid());
	unlink(path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	assert_int_equal(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	assert_int_equal(listen(fd, 64), 0);
	return fd;
}

static int dial(const char *path)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	assert_int_equal(connect(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	timeouts(fd, 5000);
	return fd;
}

static void test_connection_bounds(void **state)
{
	struct egress_gw *gw = gw_start(&lifted, 4, 6, 0, 0);
	struct egress_policy open = {.mode = EGRESS_OPEN};
	struct egress_counters counters = {0};
	struct egress_session *s = session(gw, "p1", &open, &counters, 0, 0);
	char path[108], a[4096];
	assert_int_equal(egress_serve(s, unix_listener(path, sizeof(path))), 0);
	int held[4];
	for (int i = 0; i < 4; i++) {
		held[i] = dial(path);
		send_all(held[i], "CONNECT", 7); /* a head not finished: held open */
	}
	usleep(200 * 1000);
	int extra = dial(path);
	read_all(extra, a, sizeof(a));
	close(extra);
	if (!strstr(a, "429") || !strstr(a, "more than 4 connections at once from this sandbox"))
		fail_msg("got: %s", a);
	/* Another sandbox of the same project: bounded by the project. */
	struct egress_session *s2 = session(gw, "p1", &open, NULL, 0, 0);
	int h2[2] = {client(s2), client(s2)};
	usleep(200 * 1000);
	char req[128];
	snprintf(req, sizeof(req), "CONNECT 127.0.0.1:%u HTTP/1.1\r\n\r\n", echo.port);
	char *b = ask(s2, req);
	if (!strstr(b, "429") || !strstr(b, "more than 6 connections at once from this project"))
		fail_msg("got: %s", b);
	/* Another project is not held back by this one. */
	struct egress_session *s3 = session(gw, "p2", &open, NULL, 0, 0);
	tunnel_roundtrip(s3, req, 1000);
	/* A slot freed is a slot again. */
	close(held[0]);
	usleep(200 * 1000);
	int again = dial(path);
	send_all(again, req, strlen(req));
	ssize_t n = read(again, a, 39);
	assert_int_equal(n, 39);
	assert_memory_equal(a, "HTTP/1.1 200 Connection established\r\n\r\n", 39);
	close(again);
	for (int i = 1; i < 4; i++)
		close(held[i]);
	close(h2[0]);
	close(h2[1]);
	egress_session_close(s);
	egress_session_close(s2);
	egress_session_close(s3);
	assert_true(atomic_load(&counters.refused) >= 1);
	unlink(path);
	egress_stop(gw);
}

/* A large stream with small buffers: it flows, and a client that stops
 * reading stops the flow instead of filling the gateway's memory. */
static void test_large_stream_bounded(void **state)
{
	struct egress_gw *gw = gw_start(&lifted, 0, 0, 16384, 0);
	struct egress_policy open = {.mode = EGRESS_OPEN};
	struct egress_session *s = session(gw, "p1", &open, NULL, 0, 0);
	char req[128];
	snprintf(req, sizeof(req), "CONNECT 127.0.0.1:%u HTTP/1.1\r\n\r\n", echo.port);
	tunnel_roundtrip(s, req, 16 << 20);

	int fd = client(s);
	send_all(fd, req, strlen(req));
	char head[39];
	assert_int_equal(read(fd, head, sizeof(head)), 39);
	/* Write without reading: the writes must stall. */
	static char chunk[65536];
	size_t pushed = 0;
	struct timeval tv = {.tv_usec = 200 * 1000};
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	for (;;) {
		ssize_t n = write(fd, chunk, sizeof(chunk));
		if (n <= 0)
			break;
		pushed += (size_t)n;
		assert_true(pushed < (256u << 20));
	}
	/* Socket buffers (a few MiB at most here) plus two 16 KiB buffers. */
	assert_true(pushed < (64u << 20));
	close(fd);
	egress_session_close(s);
	egress_stop(gw);
}

static void test_byte_limit_and_timeouts(void **state)
{
	struct egress_gw *gw = gw_start(&lifted, 0, 0, 0, 300);
	struct egress_policy open = {.mode = EGRESS_OPEN};
	struct egress_counters counters = {0};
	struct egress_session *s = session(gw, "p1", &open, &counters, 0, 100000);
	char req[128], *buf = malloc(1 << 21);
	snprintf(req, sizeof(req), "CONNECT 127.0.0.1:%u HTTP/1.1\r\n\r\n", echo.port);
	int fd = client(s);
	send_all(fd, req, strlen(req));
	static char big[1 << 20];
	struct pump p = {fd, big, sizeof(big)};
	pthread_t t;
	pthread_create(&t, NULL, pump_main, &p);
	size_t n = read_all(fd, buf, 1 << 21);
	shutdown(fd, SHUT_RDWR); /* frees a pump stuck on a full socket */
	pthread_join(t, NULL);
	close(fd);
	assert_true(n < sizeof(big));
	assert_int_equal(atomic_load(&counters.refused), 1);
	/* The next request of the invocation is refused outright. */
	expect_refused(s, req, "HTTP/1.1 429 ", "egress refused: more than 100000 bytes in this invocation");
	assert_int_equal(atomic_load(&counters.refused), 2);
	egress_session_close(s);

	/* A head that never ends is answered 408; one too large 431. */
	struct egress_cfg cfg = {.rules = &lifted, .head_timeout_ms = 300};
	struct egress_gw *gw2 = NULL;
	assert_int_equal(egress_start(&cfg, &gw2, NULL), 0);
	s = session(gw2, "p1", &open, NULL, 0, 0);
	fd = client(s);
	send_all(fd, "CONNECT 127.0.0.1:1 HTTP/1.1\r\nX: ", 33);
	n = read_all(fd, buf, 1024);
	assert_non_null(strstr(buf, "HTTP/1.1 408 "));
	close(fd);
	fd = client(s);
	memset(buf, 'a', 20000);
	memcpy(buf, "GET http://127.0.0.1/ HTTP/1.1\r\nX: ", 35);
	send_all(fd, buf, 20000);
	n = read_all(fd, buf, 1024);
	assert_non_null(strstr(buf, "HTTP/1.1 431 "));
	close(fd);
	egress_session_close(s);
	egress_stop(gw2);

	/* Idle: a client that says nothing is let go. */
	s = session(gw, "p1", &open, NULL, 0, 0);
	fd = client(s);
	uint64_t t0 = (uint64_t)time(NULL);
	assert_int_equal(read_all(fd, buf, 1024), 0);
	assert_true((uint64_t)time(NULL) - t0 <= 2);
	close(fd);
	egress_session_close(s);

	/* The invocation's deadline ends an open tunnel. */
	struct egress_ctx ctx = ctx_for("p1", &open, NULL);
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ctx.deadline_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec + 250000000ull;
	assert_int_equal(egress_session_open(gw, &ctx, &s), 0);
	fd = client(s);
	send_all(fd, req, strlen(req));
	n = read_all(fd, buf, 1024);
	assert_int_equal(n, 39); /* the 200, then the end */
	close(fd);
	egress_session_close(s);
	free(buf);
	egress_stop(gw);
}

static double cpu_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* An origin that sends everything and hangs up while the client is not
 * reading: the gateway waits for the client without spinning, and the
 * client still gets every byte, then the end. */
static void test_origin_hangs_up_first(void **state)
{
	struct egress_gw *gw = gw_start(&lifted, 0, 0, 16384, 0);
	struct egress_policy open = {.mode = EGRESS_OPEN};
	struct egress_session *s = session(gw, "p1", &open, NULL, 0, 0);
	char req[128];
	snprintf(req, sizeof(req), "CONNECT 127.0.0.1:%u HTTP/1.1\r\n\r\n", blast.port);
	int fd = client(s);
	int small = 16384;
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	send_all(fd, req, strlen(req));
	shutdown(fd, SHUT_WR);
	char head[39];
	assert_int_equal(read(fd, head, sizeof(head)), 39);
	double cpu0 = cpu_seconds();
	usleep(600 * 1000);
	double used = cpu_seconds() - cpu0;
	if (used > 0.3)
		fail_msg("%.3f s of CPU while waiting for the client", used);
	char *buf = malloc(BLAST_BYTES + 1);
	size_t n = read_all(fd, buf, BLAST_BYTES + 1);
	assert_int_equal(n, BLAST_BYTES);
	for (size_t i = 0; i < n; i++)
		if (buf[i] != (char)(i % 251))
			fail_msg("byte %zu differs", i);
	free(buf);
	close(fd);
	egress_session_close(s);
	egress_stop(gw);
}

/* The platform's own listen addresses, a wildcard expanded to the host's. */
static void test_listen_addresses(void **state)
{
	static struct egress_rules r;
	struct egress_policy open = {.mode = EGRESS_OPEN};
	struct egress_decision d;
	struct zerr err = {0};
	struct egress_addr lo = {.family = AF_INET, .b = {127, 0, 0, 1}};
	egress_rules_init(&r);
	assert_int_equal(egress_rules_add_list(&r, false, "0.0.0.0/0,::/0", NULL), 0);
	assert_int_equal(egress_rules_add_listen(&r, "0.0.0.0", 8080, &err), 0);
	assert_true(r.n_self >= 1);
	assert_false(egress_decide(&r, &open, "127.0.0.1", &lo, 8080, &d));
	assert_int_equal(d.refusal, EGRESS_R_SELF);
	assert_true(egress_decide(&r, &open, "127.0.0.1", &lo, 8081, &d));
	egress_rules_init(&r);
	assert_int_equal(egress_rules_add_list(&r, false, "127.0.0.0/8", NULL), 0);
	assert_int_equal(egress_rules_add_listen(&r, "localhost", 0, &err), 0);
	assert_false(egress_decide(&r, &open, "127.0.0.1", &lo, 1, &d));
	assert_int_equal(d.refusal, EGRESS_R_SELF);
	assert_int_equal(egress_rules_add_listen(&r, "127.0.0.2", 5432, &err), 0);
	struct egress_addr lo2 = {.family = AF_INET, .b = {127, 0, 0, 2}};
	assert_false(egress_decide(&r, &open, "127.0.0.2", &lo2, 5432, &d));
	assert_true(egress_decide(&r, &open, "127.0.0.2", &lo2, 5433, &d));
}

/* Closing a session ends its connections at once. */
static void test_session_close(void **state)
{
	struct egress_gw *gw = gw_start(&lifted, 0, 0, 0, 0);
	struct egress_policy open = {.mode = EGRESS_OPEN};
	struct egress_counters counters = {0};
	struct egress_session *s = session(gw, "p1", &open, &counters, 0, 0);
	char req[128], buf[128];
	snprintf(req, sizeof(req), "CONNECT 127.0.0.1:%u HTTP/1.1\r\n\r\n", echo.port);
	int fd = client(s), idle = client(s);
	send_all(fd, req, strlen(req));
	assert_int_equal(read(fd, buf, 39), 39);
	egress_session_close(s);
	assert_int_equal(read(fd, buf, sizeof(buf)), 0);
	assert_int_equal(read(idle, buf, sizeof(buf)), 0);
	close(fd);
	close(idle);
	egress_stop(gw);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_connect_tunnel),
	    cmocka_unit_test(test_http_proxied),
	    cmocka_unit_test(test_refusals),
	    cmocka_unit_test(test_request_limit),
	    cmocka_unit_test(test_connection_bounds),
	    cmocka_unit_test(test_large_stream_bounded),
	    cmocka_unit_test(test_byte_limit_and_timeouts),
	    cmocka_unit_test(test_session_close),
	    cmocka_unit_test(test_origin_hangs_up_first),
	    cmocka_unit_test(test_listen_addresses),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}

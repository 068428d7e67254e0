/* egress.c - see egress.h */
#define _GNU_SOURCE
#include "egress.h"

#include <fcntl.h>
#include <ifaddrs.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "egress_request.h"
#include "log.h"

#define RESOLVE_ADDRS_MAX  16   /* addresses of one name looked at */
#define RESOLVE_QUEUE_MAX  256  /* names waiting for a resolver thread */
#define ACCEPT_BATCH       64   /* connections accepted per wake-up of a listener */
#define TICK_MS            100  /* timers are checked at least this often */
#define LINGER_MS          1000 /* reading what a refused client still sends */
#define HEAD_OUT_MAX       (EGRESS_HEAD_MAX + 512)
#define ERROR_RESPONSE_MAX 512
#define TEXT_MAX           1024 /* an answer's body text */

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

#define MS(x) ((uint64_t)(x)*1000000ull)

/* What epoll's data points at: the first member of each registered
 * object. */
enum item_kind { IT_WAKE, IT_LISTENER, IT_CLIENT, IT_UPSTREAM };
struct item {
	enum item_kind kind;
};

struct buf {
	char *d;
	size_t r, w, cap; /* data in [r, w) */
};

struct proj {
	char id[64];
	unsigned n;
	struct proj *next;
};

struct egress_session {
	struct egress_gw *gw;
	struct egress_ctx ctx;
	struct egress_policy policy;
	_Atomic uint64_t requests, bytes;
	unsigned n_conns; /* the loop's */
	bool bytes_over;  /* the loop's: the byte limit was reported */
};

struct listener {
	struct item it;
	bool dead;
	int fd;
	struct egress_session *s;
	struct listener *next;
};

enum state { S_HEAD, S_RESOLVING, S_CONNECTING, S_RELAY, S_CLOSING };

struct job;

struct conn {
	struct item ci, ui; /* client and upstream ends */
	int cfd, ufd;
	uint32_t cev, uev; /* registered epoll masks */
	struct egress_session *s;
	struct proj *proj;
	enum state st;
	struct buf in, out; /* client to upstream, upstream to client */
	char *uhead;        /* the origin-form head, sent before in */
	size_t uhead_off, uhead_len;
	struct egress_request req;
	struct egress_addr addr;
	bool c_eof, u_eof, c_shut, u_shut;
	bool u_hup; /* the origin hung up: its socket is out of the epoll set, read as the client drains */
	uint64_t phase_deadline, last_active;
	struct job *job;
	size_t out_uncounted; /* the gateway's own "200 Connection established" */
	bool dead;            /* closed; freed after the current batch of events */
	struct conn *prev, *next;
};

struct job {
	_Atomic int refs;
	struct conn *conn; /* the loop's: NULL once the connection is gone */
	char host[256];
	int gai; /* getaddrinfo's result */
	struct egress_addr addrs[RESOLVE_ADDRS_MAX];
	size_t n;
	struct job *next;
};

enum cmd_kind { C_SERVE, C_CLOSE };
struct cmd {
	enum cmd_kind kind;
	struct egress_session *s;
	int fd;
	bool done;
	struct cmd *next;
};

struct egress_gw {
	struct egress_cfg cfg;
	struct egress_rules rules;
	int epfd;
	struct item wake_it;
	int wakefd;
	pthread_t loop;
	pthread_t *resolvers;
	unsigned n_resolvers;
	pthread_mutex_t mu;
	pthread_cond_t cmd_done, job_ready;
	struct cmd *cmds;                    /* under mu */
	struct job *jobs, *jobs_tail, *done; /* under mu */
	unsigned n_jobs;                     /* under mu */
	bool stopping;                       /* under mu */
	/* The loop's own. */
	struct conn *conns, *grave;
	struct listener *listeners, *lgrave;
	struct proj *projs;
	unsigned n_conns;
	_Atomic uint64_t t_requests, t_bytes, t_refused, t_connections;
};

/* ---- small helpers ------------------------------------------------------- */

static int fcntl_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	return fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 ? -errno : 0;
}

static void wake(struct egress_gw *gw)
{
	uint64_t one = 1;
	(void)!write(gw->wakefd, &one, sizeof(one));
}

static void job_unref(struct job *j)
{
	if (j && atomic_fetch_sub(&j->refs, 1) == 1)
		free(j);
}

static void count_refused(struct egress_session *s)
{
	if (s->ctx.counters)
		atomic_fetch_add(&s->ctx.counters->refused, 1);
	atomic_fetch_add(&s->gw->t_refused, 1);
}

static void count_bytes(struct conn *c, size_t n)
{
	atomic_fetch_add(&c->s->bytes, n);
	if (c->s->ctx.counters)
		atomic_fetch_add(&c->s->ctx.counters->bytes, n);
	atomic_fetch_add(&c->s->gw->t_bytes, n);
}

static void set_events(struct egress_gw *gw, int fd, struct item *it, uint32_t *cur, uint32_t want)
{
	if (fd < 0 || *cur == want)
		return;
	struct epoll_event ev = {.events = want, .data.ptr = it};
	epoll_ctl(gw->epfd, EPOLL_CTL_MOD, fd, &ev);
	*cur = want;
}

static struct proj *proj_get(struct egress_gw *gw, const char *id, bool create)
{
	for (struct proj *p = gw->projs; p; p = p->next)
		if (strcmp(p->id, id) == 0)
			return p;
	if (!create)
		return NULL;
	struct proj *p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	snprintf(p->id, sizeof(p->id), "%s", id);
	p->next = gw->projs;
	gw->projs = p;
	return p;
}

static void proj_put(struct egress_gw *gw, struct proj *p)
{
	if (!p || --p->n > 0)
		return;
	for (struct proj **pp = &gw->projs; *pp; pp = &(*pp)->next)
		if (*pp == p) {
			*pp = p->next;
			free(p);
			return;
		}
}

static void conn_free(struct egress_gw *gw, struct conn *c)
{
	if (c->job) {
		c->job->conn = NULL;
		job_unref(c->job);
	}
	if (c->cfd >= 0)
		close(c->cfd); /* closing removes it from the epoll set */
	if (c->ufd >= 0)
		close(c->ufd);
	if (c->prev)
		c->prev->next = c->next;
	else
		gw->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	gw->n_conns--;
	c->s->n_conns--;
	proj_put(gw, c->proj);
	c->cfd = c->ufd = -1;
	c->dead = true;
	c->next = gw->grave;
	gw->grave = c;
}

/* Free what was closed during a batch of events: a later event of the
 * same batch may still point at it. */
static void bury(struct egress_gw *gw)
{
	while (gw->grave) {
		struct conn *c = gw->grave;
		gw->grave = c->next;
		free(c->in.d);
		free(c->out.d);
		free(c->uhead);
		free(c);
	}
	while (gw->lgrave) {
		struct listener *l = gw->lgrave;
		gw->lgrave = l->next;
		free(l);
	}
}

static void log_refusal(struct conn *c, int status, const char *reason)
{
	char port[8];
	snprintf(port, sizeof(port), "%u", c->req.port);
	zlog(ZLOG_INFO, "egress_refused", "project", c->s->ctx.project_id, "host", c->req.host[0] ? c->req.host : NULL,
	     "port", c->req.port ? port : NULL, "status",
	     status == 403   ? "403"
	     : status == 429 ? "429"
	                     : "other",
	     "reason", reason, NULL);
}

/* Answer status with body text and close once it is written (reading,
 * then dropping, what the client still sends for a while, so the answer
 * is not lost to a reset). */
static void conn_fail(struct egress_gw *gw, struct conn *c, int status, const char *text, bool refused)
{
	static const struct {
		int status;
		const char *phrase;
	} phrases[] = {{400, "Bad Request"},
	               {408, "Request Timeout"},
	               {403, "Forbidden"},
	               {429, "Too Many Requests"},
	               {431, "Request Header Fields Too Large"},
	               {502, "Bad Gateway"},
	               {503, "Service Unavailable"},
	               {504, "Gateway Timeout"}};
	const char *phrase = "Error";
	for (size_t i = 0; i < ELEMENTSOF(phrases); i++)
		if (phrases[i].status == status)
			phrase = phrases[i].phrase;
	/* The gateway's own reason is the reason phrase too: clients that show
	 * only the status line (Python's CONNECT: "Tunnel connection failed:
	 * 403 ...", its HTTPError) then still say why. Printable ASCII only. */
	char reason[TEXT_MAX];
	if (strncmp(text, "egress ", 7) == 0) {
		size_t k = 0;
		for (; text[k] && k < sizeof(reason) - 1; k++)
			reason[k] = text[k] >= 0x20 && text[k] < 0x7f ? text[k] : '?';
		reason[k] = '\0';
		phrase = reason;
	}
	if (refused) {
		count_refused(c->s);
		log_refusal(c, status, text);
	}
	if (c->ufd >= 0) {
		close(c->ufd);
		c->ufd = -1;
	}
	char body[TEXT_MAX + 2];
	int blen = snprintf(body, sizeof(body), "%s\n", text);
	if (blen < 0 || (size_t)blen >= sizeof(body))
		blen = (int)sizeof(body) - 1;
	c->out.r = c->out.w = 0;
	int n = snprintf(c->out.d, c->out.cap,
	                 "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n%s"
	                 "Connection: close\r\n\r\n%.*s",
	                 status, phrase, blen, refused ? "X-Zmesh-Egress: refused\r\n" : "", blen, body);
	c->out.w = n > 0 && (size_t)n < c->out.cap ? (size_t)n : 0;
	c->in.r = c->in.w = 0;
	c->st = S_CLOSING;
	c->phase_deadline = now_ns() + MS(LINGER_MS);
	(void)gw;
}

/* ---- the request ----------------------------------------------------------- */

static void start_connect(struct egress_gw *gw, struct conn *c);

static void on_resolved(struct egress_gw *gw, struct conn *c, struct job *j)
{
	char text[TEXT_MAX];
	if (j->gai != 0 || j->n == 0) {
		snprintf(text, sizeof(text), "egress failed: could not resolve %s (%s)", c->req.host,
		         j->gai ? gai_strerror(j->gai) : "no address");
		conn_fail(gw, c, 502, text, false);
		return;
	}
	struct egress_decision first = {0}, d;
	for (size_t i = 0; i < j->n; i++) {
		if (egress_decide(&gw->rules, &c->s->policy, c->req.host, &j->addrs[i], c->req.port, &d)) {
			c->addr = j->addrs[i];
			start_connect(gw, c);
			return;
		}
		if (i == 0)
			first = d;
	}
	snprintf(text, sizeof(text), "egress refused: %s", first.reason);
	conn_fail(gw, c, 403, text, true);
}

static void on_head(struct egress_gw *gw, struct conn *c)
{
	struct egress_session *s = c->s;
	char text[TEXT_MAX];
	uint64_t n = atomic_fetch_add(&s->requests, 1) + 1;
	if (s->ctx.counters)
		atomic_fetch_add(&s->ctx.counters->requests, 1);
	atomic_fetch_add(&gw->t_requests, 1);
	if (n > s->ctx.max_requests) {
		snprintf(text, sizeof(text), "egress refused: more than %llu requests in this invocation",
		         (unsigned long long)s->ctx.max_requests);
		conn_fail(gw, c, 429, text, true);
		return;
	}
	if (atomic_load(&s->bytes) > s->ctx.max_bytes) {
		snprintf(text, sizeof(text), "egress refused: more than %llu bytes in this invocation",
		         (unsigned long long)s->ctx.max_bytes);
		conn_fail(gw, c, 429, text, true);
		return;
	}
	struct egress_decision d;
	if (!egress_decide(&gw->rules, &s->policy, c->req.host, NULL, c->req.port, &d)) {
		snprintf(text, sizeof(text), "egress refused: %s", d.reason);
		conn_fail(gw, c, 403, text, true);
		return;
	}
	/* An address literal is decided already: connect to it. */
	if (egress_addr_parse(c->req.host, &c->addr) == 0) {
		start_connect(gw, c);
		return;
	}
	struct job *j = calloc(1, sizeof(*j));
	if (!j) {
		conn_fail(gw, c, 503, "egress failed: out of memory", false);
		return;
	}
	atomic_init(&j->refs, 2); /* the connection's, the resolver's */
	j->conn = c;
	snprintf(j->host, sizeof(j->host), "%s", c->req.host);
	pthread_mutex_lock(&gw->mu);
	bool full = gw->n_jobs >= RESOLVE_QUEUE_MAX;
	if (!full) {
		if (gw->jobs_tail)
			gw->jobs_tail->next = j;
		else
			gw->jobs = j;
		gw->jobs_tail = j;
		gw->n_jobs++;
		pthread_cond_signal(&gw->job_ready);
	}
	pthread_mutex_unlock(&gw->mu);
	if (full) {
		free(j);
		conn_fail(gw, c, 503, "egress failed: too many names being resolved; try again", false);
		return;
	}
	c->job = j;
	c->st = S_RESOLVING;
	c->phase_deadline = now_ns() + MS(gw->cfg.resolve_timeout_ms);
}

static void start_connect(struct egress_gw *gw, struct conn *c)
{
	char text[TEXT_MAX], a[INET6_ADDRSTRLEN];
	struct sockaddr_storage ss = {0};
	socklen_t sl;
	if (c->addr.family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
		sin->sin_family = AF_INET;
		sin->sin_port = htons(c->req.port);
		memcpy(&sin->sin_addr, c->addr.b, 4);
		sl = sizeof(*sin);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(c->req.port);
		memcpy(&sin6->sin6_addr, c->addr.b, 16);
		sl = sizeof(*sin6);
	}
	c->ufd = socket(c->addr.family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->ufd >= 0 && connect(c->ufd, (struct sockaddr *)&ss, sl) < 0 && errno != EINPROGRESS) {
		snprintf(text, sizeof(text), "egress failed: could not connect to %s port %u (%s)",
		         egress_addr_str(&c->addr, a, sizeof(a)), c->req.port, strerror(errno));
		conn_fail(gw, c, 502, text, false);
		return;
	}
	struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = &c->ui};
	if (c->ufd < 0 || epoll_ctl(gw->epfd, EPOLL_CTL_ADD, c->ufd, &ev) < 0) {
		conn_fail(gw, c, 503, "egress failed: out of sockets", false);
		return;
	}
	c->uev = EPOLLOUT;
	c->st = S_CONNECTING;
	uint64_t t = now_ns() + MS(c->s->ctx.connect_timeout_ms);
	c->phase_deadline = c->s->ctx.deadline_ns && c->s->ctx.deadline_ns < t ? c->s->ctx.deadline_ns : t;
}

static void on_connected(struct egress_gw *gw, struct conn *c)
{
	char text[TEXT_MAX], a[INET6_ADDRSTRLEN];
	int e = 0;
	socklen_t el = sizeof(e);
	if (getsockopt(c->ufd, SOL_SOCKET, SO_ERROR, &e, &el) < 0)
		e = errno;
	if (e == EINPROGRESS || e == EALREADY)
		return;
	if (e != 0) {
		snprintf(text, sizeof(text), "egress failed: could not connect to %s port %u (%s)",
		         egress_addr_str(&c->addr, a, sizeof(a)), c->req.port, strerror(e));
		conn_fail(gw, c, 502, text, false);
		return;
	}
	int one = 1;
	setsockopt(c->ufd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	/* What follows the head in the buffer is the body, or tunnel data the
	 * client sent early. */
	c->in.r += c->req.head_len;
	if (c->req.kind == EGRESS_REQ_CONNECT) {
		static const char ok[] = "HTTP/1.1 200 Connection established\r\n\r\n";
		memcpy(c->out.d, ok, sizeof(ok) - 1);
		c->out.r = 0;
		c->out.w = sizeof(ok) - 1;
		c->out_uncounted = sizeof(ok) - 1;
		c->uhead_len = 0;
	} else {
		c->uhead = malloc(HEAD_OUT_MAX);
		/* The head was parsed from in.d, which still holds it. */
		if (!c->uhead ||
		    egress_request_origin_head(&c->req, c->in.d, c->uhead, HEAD_OUT_MAX, &c->uhead_len) < 0) {
			conn_fail(gw, c, 400, "egress: the request head is too large to forward", false);
			return;
		}
	}
	c->st = S_RELAY;
	c->phase_deadline = 0;
	c->last_active = now_ns();
}

/* ---- relaying -------------------------------------------------------------- */

/* Read from fd into b; 0 on progress or would-block, 1 on EOF, -1 on
 * error. */
static int fill(int fd, struct buf *b, size_t *ret_n)
{
	*ret_n = 0;
	if (b->r == b->w)
		b->r = b->w = 0;
	if (b->w == b->cap && b->r > 0) {
		memmove(b->d, b->d + b->r, b->w - b->r);
		b->w -= b->r;
		b->r = 0;
	}
	if (b->w == b->cap)
		return 0;
	ssize_t n = recv(fd, b->d + b->w, b->cap - b->w, 0);
	if (n > 0) {
		b->w += (size_t)n;
		*ret_n = (size_t)n;
		return 0;
	}
	if (n == 0)
		return 1;
	return errno == EAGAIN || errno == EINTR ? 0 : -1;
}

/* Write from data to fd; bytes written, or -1 on error. */
static ssize_t drain(int fd, const char *data, size_t len)
{
	if (len == 0)
		return 0;
	ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
	if (n >= 0)
		return n;
	return errno == EAGAIN || errno == EINTR ? 0 : -1;
}

/* One step of the relay after an event; false when the connection is
 * done (and freed). */
static bool relay(struct egress_gw *gw, struct conn *c, uint32_t cevents, uint32_t uevents)
{
	size_t got;
	int r;
	if ((cevents & (EPOLLIN | EPOLLHUP | EPOLLERR)) && !c->c_eof) {
		if ((r = fill(c->cfd, &c->in, &got)) < 0)
			return false;
		c->c_eof = r == 1;
	}
	/* The client hung up both ways: nothing more can reach it. */
	if (cevents & (EPOLLHUP | EPOLLERR))
		return false;
	/* A hung-up socket reports at every wait, whatever its mask: out of
	 * the set with it, and what it still holds is read as the client
	 * makes room. */
	if ((uevents & (EPOLLHUP | EPOLLERR)) && !c->u_hup && c->ufd >= 0) {
		epoll_ctl(gw->epfd, EPOLL_CTL_DEL, c->ufd, NULL);
		c->u_hup = true;
		c->uev = 0;
	}
	if (((uevents & EPOLLIN) || c->u_hup) && !c->u_eof && c->ufd >= 0) {
		if ((r = fill(c->ufd, &c->out, &got)) < 0)
			return false;
		c->u_eof = r == 1;
	}
	/* The origin hung up both ways and all it sent is read: the rest is
	 * delivered to the client. */
	if (c->u_hup && c->u_eof && c->ufd >= 0) {
		close(c->ufd);
		c->ufd = -1;
		c->u_shut = true;
		c->in.r = c->in.w;
		c->uhead_off = c->uhead_len;
	}
	/* Upstream: the head, then the client's bytes. */
	if (c->ufd >= 0 && c->uhead_off < c->uhead_len) {
		ssize_t n = drain(c->ufd, c->uhead + c->uhead_off, c->uhead_len - c->uhead_off);
		if (n < 0)
			return false;
		c->uhead_off += (size_t)n;
	}
	if (c->ufd >= 0 && c->uhead_off == c->uhead_len && c->in.w > c->in.r) {
		ssize_t n = drain(c->ufd, c->in.d + c->in.r, c->in.w - c->in.r);
		if (n < 0)
			return false;
		c->in.r += (size_t)n;
		count_bytes(c, (size_t)n);
		if (n > 0)
			c->last_active = now_ns();
	}
	if (c->out.w > c->out.r) {
		ssize_t n = drain(c->cfd, c->out.d + c->out.r, c->out.w - c->out.r);
		if (n < 0)
			return false;
		c->out.r += (size_t)n;
		size_t own = (size_t)n < c->out_uncounted ? (size_t)n : c->out_uncounted;
		c->out_uncounted -= own;
		count_bytes(c, (size_t)n - own);
		if (n > 0)
			c->last_active = now_ns();
	}
	if (c->c_eof && c->in.r == c->in.w && c->uhead_off == c->uhead_len && !c->u_shut) {
		shutdown(c->ufd, SHUT_WR);
		c->u_shut = true;
	}
	if (c->u_eof && c->out.r == c->out.w && !c->c_shut) {
		shutdown(c->cfd, SHUT_WR);
		c->c_shut = true;
	}
	/* A proxied request ends with its response. */
	if (c->c_shut && (c->u_shut || c->req.kind == EGRESS_REQ_HTTP))
		return false;
	if (atomic_load(&c->s->bytes) > c->s->ctx.max_bytes) {
		if (!c->s->bytes_over) {
			char text[128];
			snprintf(text, sizeof(text), "more than %llu bytes in this invocation",
			         (unsigned long long)c->s->ctx.max_bytes);
			c->s->bytes_over = true;
			count_refused(c->s);
			log_refusal(c, 429, text);
		}
		return false;
	}
	uint32_t cw = 0, uw = 0;
	if (!c->c_eof && c->in.w - c->in.r < c->in.cap)
		cw |= EPOLLIN;
	if (c->out.w > c->out.r || (c->u_hup && !c->u_eof))
		cw |= EPOLLOUT;
	if (!c->u_eof && c->out.w - c->out.r < c->out.cap)
		uw |= EPOLLIN;
	if (c->uhead_off < c->uhead_len || c->in.w > c->in.r)
		uw |= EPOLLOUT;
	set_events(gw, c->cfd, &c->ci, &c->cev, cw);
	if (!c->u_hup)
		set_events(gw, c->ufd, &c->ui, &c->uev, uw);
	return true;
}

/* ---- events ------------------------------------------------------------------ */

/* After any event on c: advance its state; frees it when done. */
static void conn_step(struct egress_gw *gw, struct conn *c, uint32_t cevents, uint32_t uevents)
{
	size_t got;
	switch (c->st) {
	case S_HEAD: {
		int r = fill(c->cfd, &c->in, &got);
		if (r != 0) {
			conn_free(gw, c);
			return;
		}
		if (got)
			c->last_active = now_ns();
		struct zerr err = {0};
		r = egress_parse_request(c->in.d + c->in.r, c->in.w - c->in.r, &c->req, &err);
		if (r == -EAGAIN && c->in.w < c->in.cap)
			break;
		if (r == -EAGAIN || r == -EMSGSIZE) {
			conn_fail(gw, c, 431, "egress: the request head is too large", false);
		} else if (r < 0) {
			char text[TEXT_MAX];
			snprintf(text, sizeof(text), "egress: not a proxy request: %s", err.msg);
			conn_fail(gw, c, 400, text, false);
		} else
			on_head(gw, c);
		break;
	}
	case S_RESOLVING:
		if (cevents & (EPOLLHUP | EPOLLERR)) {
			conn_free(gw, c);
			return;
		}
		break;
	case S_CONNECTING:
		if (cevents & (EPOLLHUP | EPOLLERR)) {
			conn_free(gw, c);
			return;
		}
		if (uevents)
			on_connected(gw, c);
		if (c->st == S_RELAY) {
			if (!relay(gw, c, 0, EPOLLOUT))
				conn_free(gw, c);
			return;
		}
		break;
	case S_RELAY:
		if (!relay(gw, c, cevents, uevents)) {
			conn_free(gw, c);
			return;
		}
		return;
	case S_CLOSING:
		break;
	}
	if (c->st == S_CLOSING) {
		if (c->out.w > c->out.r) {
			ssize_t n = drain(c->cfd, c->out.d + c->out.r, c->out.w - c->out.r);
			if (n < 0) {
				conn_free(gw, c);
				return;
			}
			c->out.r += (size_t)n;
		}
		if (c->out.r == c->out.w && !c->c_shut) {
			shutdown(c->cfd, SHUT_WR);
			c->c_shut = true;
		}
		if (c->c_shut && (cevents & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
			char sink[4096];
			ssize_t n;
			while ((n = recv(c->cfd, sink, sizeof(sink), 0)) > 0)
				;
			if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
				conn_free(gw, c);
				return;
			}
		}
		set_events(gw, c->cfd, &c->ci, &c->cev, c->c_shut ? EPOLLIN : EPOLLOUT);
		return;
	}
	uint32_t want = c->st == S_HEAD ? EPOLLIN : 0;
	set_events(gw, c->cfd, &c->ci, &c->cev, want);
}

/* A new client connection under s; refused at once past a bound. */
static void conn_add(struct egress_gw *gw, struct egress_session *s, int fd)
{
	const char *bound = NULL;
	char text[160];
	struct proj *p = NULL;
	if (gw->n_conns >= gw->cfg.max_connections)
		bound = "the gateway is at its connection limit";
	else if (s->n_conns >= gw->cfg.max_per_session)
		snprintf(text, sizeof(text), "more than %u connections at once from this sandbox",
		         gw->cfg.max_per_session),
		    bound = text;
	else if (!(p = proj_get(gw, s->ctx.project_id, true)))
		bound = "out of memory";
	else if (p->n >= gw->cfg.max_per_project)
		snprintf(text, sizeof(text), "more than %u connections at once from this project",
		         gw->cfg.max_per_project),
		    bound = text;
	struct conn *c = bound ? NULL : calloc(1, sizeof(*c));
	if (c) {
		c->in.d = malloc(gw->cfg.buffer_bytes);
		c->out.d = malloc(gw->cfg.buffer_bytes);
		if (!c->in.d || !c->out.d) {
			free(c->in.d);
			free(c->out.d);
			free(c);
			c = NULL;
		}
	}
	if (!c) {
		/* Small enough for an empty socket buffer; what the client
		 * already sent is read first so the answer is not lost to a
		 * reset. */
		char sink[4096], resp[ERROR_RESPONSE_MAX];
		const char *why = bound ? bound : "out of memory";
		for (int i = 0; i < 4 && recv(fd, sink, sizeof(sink), MSG_DONTWAIT) > 0; i++)
			;
		int n = snprintf(resp, sizeof(resp),
		                 "HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain; charset=utf-8\r\n"
		                 "Content-Length: %zu\r\nX-Zmesh-Egress: refused\r\nConnection: close\r\n\r\n"
		                 "egress refused: %s\n",
		                 strlen("egress refused: \n") + strlen(why), why);
		if (n > 0 && (size_t)n < sizeof(resp))
			(void)!send(fd, resp, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
		shutdown(fd, SHUT_WR);
		close(fd);
		count_refused(s);
		zlog(ZLOG_INFO, "egress_refused", "project", s->ctx.project_id, "reason", why, NULL);
		if (p && p->n == 0) {
			p->n = 1;
			proj_put(gw, p);
		}
		return;
	}
	c->ci.kind = IT_CLIENT;
	c->ui.kind = IT_UPSTREAM;
	c->cfd = fd;
	c->ufd = -1;
	c->s = s;
	c->proj = p;
	c->in.cap = c->out.cap = gw->cfg.buffer_bytes;
	c->st = S_HEAD;
	c->last_active = now_ns();
	c->phase_deadline = c->last_active + MS(gw->cfg.head_timeout_ms);
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &c->ci};
	if (epoll_ctl(gw->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		close(fd);
		free(c->in.d);
		free(c->out.d);
		free(c);
		if (p->n == 0) {
			p->n = 1;
			proj_put(gw, p);
		}
		return;
	}
	c->cev = EPOLLIN;
	p->n++;
	s->n_conns++;
	gw->n_conns++;
	atomic_fetch_add(&gw->t_connections, 1);
	c->next = gw->conns;
	if (gw->conns)
		gw->conns->prev = c;
	gw->conns = c;
}

static void on_listener(struct egress_gw *gw, struct listener *l)
{
	for (int i = 0; i < ACCEPT_BATCH; i++) {
		int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return;
		/* A relay: bytes go on as they come, both ways (the origin's
		 * side is set so at its connect). */
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		conn_add(gw, l->s, fd);
	}
}

static void on_serve(struct egress_gw *gw, struct egress_session *s, int fd)
{
	int listening = 0;
	socklen_t len = sizeof(listening);
	if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) == 0 && listening) {
		struct listener *l = calloc(1, sizeof(*l));
		struct epoll_event ev = {.events = EPOLLIN, .data.ptr = l};
		if (!l || fcntl_nonblock(fd) < 0 || epoll_ctl(gw->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
			free(l);
			close(fd);
			return;
		}
		l->it.kind = IT_LISTENER;
		l->fd = fd;
		l->s = s;
		l->next = gw->listeners;
		gw->listeners = l;
		return;
	}
	if (fcntl_nonblock(fd) < 0) {
		close(fd);
		return;
	}
	conn_add(gw, s, fd);
}

/* End every connection and listener of s (the loop's side of
 * egress_session_close). */
static void on_close(struct egress_gw *gw, struct egress_session *s)
{
	for (struct conn *c = gw->conns, *next; c; c = next) {
		next = c->next;
		if (c->s == s)
			conn_free(gw, c);
	}
	for (struct listener **pp = &gw->listeners; *pp;) {
		struct listener *l = *pp;
		if (l->s == s) {
			*pp = l->next;
			close(l->fd);
			l->dead = true;
			l->next = gw->lgrave;
			gw->lgrave = l;
		} else
			pp = &l->next;
	}
}

/* Timers: phases (resolve, connect, linger), idleness, deadlines. */
static void sweep(struct egress_gw *gw, uint64_t now)
{
	for (struct conn *c = gw->conns, *next; c; c = next) {
		next = c->next;
		char text[TEXT_MAX], a[INET6_ADDRSTRLEN];
		uint64_t deadline = c->s->ctx.deadline_ns;
		if (c->st == S_CLOSING) {
			if (now >= c->phase_deadline)
				conn_free(gw, c);
			continue;
		}
		if (deadline && now >= deadline) {
			if (c->st == S_RELAY)
				conn_free(gw, c);
			else {
				conn_fail(gw, c, 504, "egress failed: the invocation's deadline passed", false);
				conn_step(gw, c, 0, 0);
			}
			continue;
		}
		if (c->phase_deadline && now >= c->phase_deadline) {
			if (c->st == S_HEAD) {
				conn_fail(gw, c, 408, "egress: the request head took too long", false);
				conn_step(gw, c, 0, 0);
				continue;
			}
			if (c->st == S_RESOLVING)
				snprintf(text, sizeof(text), "egress failed: resolving %s took over %u ms", c->req.host,
				         gw->cfg.resolve_timeout_ms);
			else
				snprintf(text, sizeof(text), "egress failed: connecting to %s port %u took too long",
				         egress_addr_str(&c->addr, a, sizeof(a)), c->req.port);
			conn_fail(gw, c, 504, text, false);
			conn_step(gw, c, 0, 0);
			continue;
		}
		if ((c->st == S_HEAD || c->st == S_RELAY) && now - c->last_active >= MS(gw->cfg.idle_timeout_ms))
			conn_free(gw, c);
	}
}

/* Commands from other threads and resolved names. */
static bool on_wake(struct egress_gw *gw)
{
	uint64_t v;
	(void)!read(gw->wakefd, &v, sizeof(v));
	pthread_mutex_lock(&gw->mu);
	struct cmd *cmds = gw->cmds;
	struct job *done = gw->done;
	gw->cmds = NULL;
	gw->done = NULL;
	bool stopping = gw->stopping;
	pthread_mutex_unlock(&gw->mu);
	/* Oldest first. */
	struct cmd *rev = NULL;
	while (cmds) {
		struct cmd *n = cmds->next;
		cmds->next = rev;
		rev = cmds;
		cmds = n;
	}
	for (struct cmd *c = rev, *next; c; c = next) {
		next = c->next;
		if (c->kind == C_SERVE) {
			on_serve(gw, c->s, c->fd);
			free(c);
		} else {
			on_close(gw, c->s);
			pthread_mutex_lock(&gw->mu);
			c->done = true;
			pthread_cond_broadcast(&gw->cmd_done);
			pthread_mutex_unlock(&gw->mu);
		}
	}
	for (struct job *j = done, *next; j; j = next) {
		next = j->next;
		struct conn *c = j->conn;
		if (c && c->st == S_RESOLVING) {
			c->job = NULL;
			job_unref(j); /* the connection's */
			on_resolved(gw, c, j);
			conn_step(gw, c, 0, 0);
		}
		job_unref(j); /* the resolver's */
	}
	return !stopping;
}

static void *loop_main(void *arg)
{
	struct egress_gw *gw = arg;
	struct epoll_event evs[64];
	uint64_t last_sweep = now_ns();
	for (bool run = true; run;) {
		int n = epoll_wait(gw->epfd, evs, (int)ELEMENTSOF(evs), TICK_MS);
		for (int i = 0; i < n; i++) {
			struct item *it = evs[i].data.ptr;
			uint32_t e = evs[i].events;
			struct conn *c = NULL;
			switch (it->kind) {
			case IT_WAKE:
				run = on_wake(gw);
				break;
			case IT_LISTENER:
				if (!((struct listener *)it)->dead)
					on_listener(gw, (struct listener *)it);
				break;
			case IT_CLIENT:
				c = (struct conn *)((char *)it - offsetof(struct conn, ci));
				if (!c->dead)
					conn_step(gw, c, e, 0);
				break;
			case IT_UPSTREAM:
				c = (struct conn *)((char *)it - offsetof(struct conn, ui));
				if (!c->dead)
					conn_step(gw, c, 0, e);
				break;
			}
		}
		uint64_t now = now_ns();
		if (now - last_sweep >= MS(TICK_MS)) {
			sweep(gw, now);
			last_sweep = now;
		}
		bury(gw);
	}
	while (gw->conns)
		conn_free(gw, gw->conns);
	while (gw->listeners) {
		struct listener *l = gw->listeners;
		gw->listeners = l->next;
		close(l->fd);
		free(l);
	}
	bury(gw);
	return NULL;
}

/* ---- resolvers ------------------------------------------------------------- */

static void resolve(struct job *j)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
	j->gai = getaddrinfo(j->host, NULL, &hints, &res);
	for (struct addrinfo *a = j->gai == 0 ? res : NULL; a && j->n < RESOLVE_ADDRS_MAX; a = a->ai_next) {
		struct egress_addr *x = &j->addrs[j->n];
		if (a->ai_family == AF_INET) {
			x->family = AF_INET;
			memcpy(x->b, &((struct sockaddr_in *)a->ai_addr)->sin_addr, 4);
		} else if (a->ai_family == AF_INET6) {
			x->family = AF_INET6;
			memcpy(x->b, &((struct sockaddr_in6 *)a->ai_addr)->sin6_addr, 16);
		} else
			continue;
		j->n++;
	}
	if (res)
		freeaddrinfo(res);
}

static void *resolver_main(void *arg)
{
	struct egress_gw *gw = arg;
	pthread_mutex_lock(&gw->mu);
	for (;;) {
		while (!gw->jobs && !gw->stopping)
			pthread_cond_wait(&gw->job_ready, &gw->mu);
		if (gw->stopping)
			break;
		struct job *j = gw->jobs;
		gw->jobs = j->next;
		if (!gw->jobs)
			gw->jobs_tail = NULL;
		gw->n_jobs--;
		pthread_mutex_unlock(&gw->mu);
		resolve(j);
		pthread_mutex_lock(&gw->mu);
		j->next = gw->done;
		gw->done = j;
		wake(gw);
	}
	pthread_mutex_unlock(&gw->mu);
	return NULL;
}

/* ---- the public side ------------------------------------------------------- */

int egress_start(const struct egress_cfg *cfg, struct egress_gw **ret, struct zerr *err)
{
	struct egress_gw *gw = calloc(1, sizeof(*gw));
	if (!gw)
		return zerr_set(err, -ENOMEM, "egress: out of memory");
	gw->cfg = *cfg;
#define DEF(f, v)       \
	if (!gw->cfg.f) \
		gw->cfg.f = v;
	DEF(max_connections, 1024);
	DEF(max_per_project, 256);
	DEF(max_per_session, 64);
	DEF(buffer_bytes, 64 * 1024);
	DEF(idle_timeout_ms, 60000);
	DEF(resolve_timeout_ms, 5000);
	DEF(head_timeout_ms, 10000);
	DEF(resolvers, 4);
#undef DEF
	/* The request head is read into the client's buffer. */
	if (gw->cfg.buffer_bytes < EGRESS_HEAD_MAX)
		gw->cfg.buffer_bytes = EGRESS_HEAD_MAX;
	if (cfg->rules)
		gw->rules = *cfg->rules;
	else
		egress_rules_init(&gw->rules);
	gw->cfg.rules = &gw->rules;
	pthread_mutex_init(&gw->mu, NULL);
	pthread_cond_init(&gw->cmd_done, NULL);
	pthread_cond_init(&gw->job_ready, NULL);
	gw->wake_it.kind = IT_WAKE;
	gw->epfd = epoll_create1(EPOLL_CLOEXEC);
	gw->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &gw->wake_it};
	int r = 0;
	if (gw->epfd < 0 || gw->wakefd < 0 || epoll_ctl(gw->epfd, EPOLL_CTL_ADD, gw->wakefd, &ev) < 0)
		r = zerr_set(err, -errno, "egress: epoll: %s", strerror(errno));
	gw->resolvers = r == 0 ? calloc(gw->cfg.resolvers, sizeof(pthread_t)) : NULL;
	if (r == 0 && !gw->resolvers)
		r = zerr_set(err, -ENOMEM, "egress: out of memory");
	for (unsigned i = 0; r == 0 && i < gw->cfg.resolvers; i++) {
		int e = pthread_create(&gw->resolvers[i], NULL, resolver_main, gw);
		if (e)
			r = zerr_set(err, -e, "egress: resolver thread: %s", strerror(e));
		else
			gw->n_resolvers++;
	}
	if (r == 0) {
		int e = pthread_create(&gw->loop, NULL, loop_main, gw);
		if (e)
			r = zerr_set(err, -e, "egress: loop thread: %s", strerror(e));
	}
	if (r < 0) {
		pthread_mutex_lock(&gw->mu);
		gw->stopping = true;
		pthread_cond_broadcast(&gw->job_ready);
		pthread_mutex_unlock(&gw->mu);
		for (unsigned i = 0; i < gw->n_resolvers; i++)
			pthread_join(gw->resolvers[i], NULL);
		free(gw->resolvers);
		if (gw->epfd >= 0)
			close(gw->epfd);
		if (gw->wakefd >= 0)
			close(gw->wakefd);
		free(gw);
		return r;
	}
	*ret = gw;
	return 0;
}

void egress_stop(struct egress_gw *gw)
{
	if (!gw)
		return;
	pthread_mutex_lock(&gw->mu);
	gw->stopping = true;
	pthread_cond_broadcast(&gw->job_ready);
	pthread_mutex_unlock(&gw->mu);
	wake(gw);
	pthread_join(gw->loop, NULL);
	/* A resolver stuck in getaddrinfo is waited for: its job owns no
	 * socket, and the thread ends when the lookup does. */
	for (unsigned i = 0; i < gw->n_resolvers; i++)
		pthread_join(gw->resolvers[i], NULL);
	for (struct cmd *c = gw->cmds, *n; c; c = n) {
		n = c->next;
		if (c->kind == C_SERVE) {
			close(c->fd);
			free(c);
		}
	}
	for (struct job *j = gw->done, *n; j; j = n) {
		n = j->next;
		free(j);
	}
	for (struct job *j = gw->jobs, *n; j; j = n) {
		n = j->next;
		free(j);
	}
	while (gw->projs) {
		struct proj *p = gw->projs;
		gw->projs = p->next;
		free(p);
	}
	free(gw->resolvers);
	close(gw->epfd);
	close(gw->wakefd);
	pthread_cond_destroy(&gw->cmd_done);
	pthread_cond_destroy(&gw->job_ready);
	pthread_mutex_destroy(&gw->mu);
	free(gw);
}

int egress_session_open(struct egress_gw *gw, const struct egress_ctx *ctx, struct egress_session **ret)
{
	struct egress_session *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->gw = gw;
	s->ctx = *ctx;
	if (ctx->policy)
		s->policy = *ctx->policy;
	else
		egress_policy_default(&s->policy);
	s->ctx.policy = &s->policy;
	*ret = s;
	return 0;
}

static int send_cmd(struct egress_gw *gw, struct cmd *c, bool wait)
{
	pthread_mutex_lock(&gw->mu);
	if (gw->stopping) {
		pthread_mutex_unlock(&gw->mu);
		return -ESHUTDOWN;
	}
	c->next = gw->cmds;
	gw->cmds = c;
	wake(gw);
	while (wait && !c->done)
		pthread_cond_wait(&gw->cmd_done, &gw->mu);
	pthread_mutex_unlock(&gw->mu);
	return 0;
}

int egress_serve(struct egress_session *s, int fd)
{
	struct cmd *c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return -ENOMEM;
	}
	c->kind = C_SERVE;
	c->s = s;
	c->fd = fd;
	int r = send_cmd(s->gw, c, false);
	if (r < 0) {
		close(fd);
		free(c);
	}
	return r;
}

void egress_session_close(struct egress_session *s)
{
	if (!s)
		return;
	struct cmd c = {.kind = C_CLOSE, .s = s};
	send_cmd(s->gw, &c, true);
	free(s);
}

void egress_totals(struct egress_gw *gw, struct egress_totals *ret)
{
	ret->requests = atomic_load(&gw->t_requests);
	ret->bytes = atomic_load(&gw->t_bytes);
	ret->refused = atomic_load(&gw->t_refused);
	ret->connections = atomic_load(&gw->t_connections);
}

static int add_sockaddr(struct egress_rules *r, const struct sockaddr *sa, uint16_t port, const char *host,
                        struct zerr *err)
{
	struct egress_addr a = {.family = sa->sa_family};
	if (sa->sa_family == AF_INET)
		memcpy(a.b, &((const struct sockaddr_in *)sa)->sin_addr, 4);
	else if (sa->sa_family == AF_INET6)
		memcpy(a.b, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
	else
		return 0;
	int rc = egress_rules_add_self(r, &a, port);
	if (rc == -E2BIG)
		return zerr_set(err, rc, "egress: %s has more than %d addresses to keep functions from", host,
		                EGRESS_SELF_MAX);
	return 0; /* an unspecified address is nothing to refuse */
}

int egress_rules_add_listen(struct egress_rules *r, const char *host, uint16_t port, struct zerr *err)
{
	struct egress_addr a;
	if (!host[0] || strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0 || strcmp(host, "*") == 0) {
		struct ifaddrs *ifs = NULL;
		if (getifaddrs(&ifs) < 0)
			return zerr_set(err, -errno, "egress: the host's addresses: %s", strerror(errno));
		int rc = 0;
		for (struct ifaddrs *i = ifs; i && rc == 0; i = i->ifa_next)
			if (i->ifa_addr)
				rc = add_sockaddr(r, i->ifa_addr, port, "this host", err);
		freeifaddrs(ifs);
		return rc;
	}
	if (egress_addr_parse(host, &a) == 0) {
		int rc = egress_rules_add_self(r, &a, port);
		return rc < 0 ? zerr_set(err, rc, "egress: cannot keep functions from %s", host) : 0;
	}
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
	int g = getaddrinfo(host, NULL, &hints, &res);
	if (g != 0)
		return zerr_set(err, -EINVAL, "egress: cannot resolve the platform's own %s: %s", host,
		                gai_strerror(g));
	int rc = 0;
	for (struct addrinfo *i = res; i && rc == 0; i = i->ai_next)
		rc = add_sockaddr(r, i->ai_addr, port, host, err);
	freeaddrinfo(res);
	return rc;
}

/* egress.h - the egress gateway: the only way out of a sandbox. One event
 * loop thread (epoll) serves client connections it is given as descriptors
 * (a listening socket made inside a sandbox's network namespace, or one
 * connected socket); a small pool of resolver threads runs getaddrinfo off
 * the loop. Each connection carries one request:
 *   CONNECT host:port            -> a tunnel (TLS is never terminated)
 *   GET http://host[:port]/path  -> proxied once, "Connection: close"
 * The gateway resolves the name itself, asks egress_decide() about every
 * address, and connects to exactly the first allowed one: no second lookup,
 * so no DNS rebinding window. Answers: 403 "egress refused: <reason>" (and
 * X-Zmesh-Egress: refused), 429 over the request limit or a connection
 * bound, 502 when the name does not resolve or the connect fails, 504 when
 * either takes too long, 400 for what is not a proxy request.
 *
 * Bounds: connections per session (a sandbox), per project and in all;
 * two buffers of buffer_bytes per connection; a request head of
 * EGRESS_HEAD_MAX; an idle timeout; the invocation's deadline; the tier's
 * requests and bytes per invocation. The loop never blocks: every socket is
 * non-blocking, timers are checked at least every 100 ms. Decisions are
 * never cached: every request asks again, with its own project's policy. */
#pragma once

#include <stdatomic.h>
#include <stdint.h>

#include "egress_policy.h"
#include "error.h"

struct egress_cfg {
	const struct egress_rules *rules; /* the operator's, with the platform's own addresses; copied */
	unsigned max_connections;         /* in all [1024] */
	unsigned max_per_project;         /* [256] */
	unsigned max_per_session;         /* one sandbox [64] */
	unsigned buffer_bytes;            /* each way, per connection [64 KiB] */
	unsigned idle_timeout_ms;         /* no byte either way [60000] */
	unsigned resolve_timeout_ms;      /* [5000] */
	unsigned head_timeout_ms;         /* for a whole request head [10000] */
	unsigned resolvers;               /* resolver threads [4] */
};

/* What an invocation's outbound requests add up to; the session adds to it
 * (atomically) while it is open. */
struct egress_counters {
	_Atomic uint64_t requests; /* every request read, refused or not */
	_Atomic uint64_t bytes;    /* relayed, both ways, without the request heads */
	_Atomic uint64_t refused;  /* refused by a policy, a limit or a bound */
};

/* One sandbox's (one invocation's) right to go out. */
struct egress_ctx {
	char project_id[64];
	const struct egress_policy *policy; /* copied at open */
	uint64_t max_requests;              /* the tier's egress_requests */
	uint64_t max_bytes;                 /* the tier's egress_bytes */
	uint64_t connect_timeout_ms;        /* the tier's egress_connect_timeout_ms */
	uint64_t deadline_ns;               /* CLOCK_MONOTONIC; 0: none. Every connection ends then */
	struct egress_counters *counters;   /* may be NULL; valid until egress_session_close returns */
};

struct egress_gw;
struct egress_session;

/* Start the loop and the resolvers. cfg zeros take the defaults. */
int egress_start(const struct egress_cfg *cfg, struct egress_gw **ret, struct zerr *err);
/* End every connection and join the threads; every session must have
 * been closed. NULL is fine. */
void egress_stop(struct egress_gw *gw);

/* A session for one sandbox: ctx (and the policy it points to) is copied. */
int egress_session_open(struct egress_gw *gw, const struct egress_ctx *ctx, struct egress_session **ret);
/* Serve fd under session s: a listening socket (the gateway accepts from
 * it until the session closes) or one connected client. fd is taken in
 * every case (closed on failure). */
int egress_serve(struct egress_session *s, int fd);
/* End the session's connections and listeners, then free it. On return
 * the gateway no longer touches the session's counters. NULL is fine. */
void egress_session_close(struct egress_session *s);

/* Register one of the platform's listen addresses (host as given to
 * --listen: an address, a name resolved here from local sources, or a
 * wildcard "0.0.0.0", "::" or "": then every address of every interface)
 * as its own on that port (0: every port), refused to functions whatever
 * the lists say. -E2BIG past EGRESS_SELF_MAX addresses; err says which. */
int egress_rules_add_listen(struct egress_rules *r, const char *host, uint16_t port, struct zerr *err);

/* Totals of every session since start (for /metrics). */
struct egress_totals {
	uint64_t requests, bytes, refused, connections;
};
void egress_totals(struct egress_gw *gw, struct egress_totals *ret);

/* logstream.c - see logstream.h */
#define _GNU_SOURCE
#include "logstream.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cleanup.h"
#include "errors.h"
#include "log.h"
#include "store.h"
#include "utf8.h"
#include "util.h"
#include "workq.h"

#define ID_LEN         36
#define WRITER_BATCH   256
#define WRITER_LINGER  50
#define PAGE_ROWS      50    /* rows per read: a page is at most 50 lines of at most 64 KiB */
#define POLL_MS        250   /* how often a stream looks for rows */
#define HEARTBEAT_MS   15000 /* a comment line: keeps proxies open, finds gone clients */
#define SETTLE_MS      5000  /* ids sent this recently are re-read around (see ARCHITECTURE.md) */
#define SENT_MAX       256   /* ids remembered in that window, per stream */
#define WRITER_STMT_MS "2000"
#define LINE_MAX_BYTES 65536

enum item_kind { ITEM_LOG, ITEM_SYSTEM, ITEM_DROPPED, ITEM_END };

struct item {
	char project_id[ID_LEN + 1], function_id[ID_LEN + 1], invocation_id[ID_LEN + 1];
	double ts_ms;
	enum item_kind kind;
	char status[16];
	double duration_ms;
	size_t len;
	char line[]; /* NUL-terminated, valid UTF-8 */
};

struct proj_count {
	char id[ID_LEN + 1];
	unsigned n;
};

static struct {
	bool running;
	struct logstream_config cfg;
	struct db_pool *pool;
	struct workq *q;
	PGconn *conn; /* the writer's own */
	pthread_mutex_t mu;
	pthread_cond_t wake; /* a batch was written, or the node stops */
	uint64_t generation; /* batches written */
	bool quiesced;
	struct proj_count *projects; /* cfg.max_streams entries */
	unsigned streams;
	uint64_t written, dropped, failed;
	pthread_t sweeper;
	bool sweeper_running, sweeper_stop;
	pthread_cond_t sweeper_cond;
} L = {.mu = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER, .sweeper_cond = PTHREAD_COND_INITIALIZER};

/* ---- Server-Sent Events ---- */

int sse_parse_event_id(const char *s, int64_t *ret)
{
	if (!s)
		return -EINVAL;
	while (*s == ' ' || *s == '\t')
		s++;
	int64_t v = 0;
	size_t n = 0;
	for (; *s >= '0' && *s <= '9'; s++, n++) {
		if (n >= 19 || v > (INT64_MAX - (*s - '0')) / 10)
			return -EINVAL;
		v = v * 10 + (*s - '0');
	}
	while (*s == ' ' || *s == '\t')
		s++;
	if (n == 0 || *s)
		return -EINVAL;
	*ret = v;
	return 0;
}

int sse_append_event(struct buf *b, const char *name, int64_t id, const char *data, size_t len)
{
	size_t nl = strlen(name);
	if (nl == 0 || nl > 16 || memchr(data, '\n', len) || memchr(data, '\r', len))
		return -EINVAL;
	for (size_t i = 0; i < nl; i++)
		if (name[i] < 'a' || name[i] > 'z')
			return -EINVAL;
	int r = buf_printf(b, "event: %s\n", name);
	if (r == 0 && id >= 0)
		r = buf_printf(b, "id: %" PRId64 "\n", id);
	if (r == 0)
		r = buf_puts(b, "data: ");
	if (r == 0)
		r = buf_append(b, data, len);
	if (r == 0)
		r = buf_puts(b, "\n\n");
	return r;
}

/* ---- configuration ---- */

static void env_u(const char *name, unsigned min, unsigned max, unsigned *v)
{
	const char *s = getenv(name);
	uint64_t x;
	if (s && util_parse_u64(s, min, max, &x) == 0)
		*v = (unsigned)x;
}

void logstream_config_from_env(struct logstream_config *cfg)
{
	*cfg = (struct logstream_config){.max_streams = 64,
	                                 .max_streams_per_project = 8,
	                                 .retention_s = 3600,
	                                 .retention_rows = 10000,
	                                 .sweep_ms = 60000,
	                                 .queue = 8192};
	env_u("ZMESH_LOG_STREAMS_MAX", 1, 4096, &cfg->max_streams);
	env_u("ZMESH_LOG_STREAMS_PER_PROJECT", 1, 4096, &cfg->max_streams_per_project);
	env_u("ZMESH_LOG_RETENTION_S", 1, 30 * 86400, &cfg->retention_s);
	env_u("ZMESH_LOG_RETENTION_ROWS", 1, 10000000, &cfg->retention_rows);
	env_u("ZMESH_LOG_SWEEP_MS", 100, 3600000, &cfg->sweep_ms);
	env_u("ZMESH_LOG_QUEUE", 1, 1u << 20, &cfg->queue);
}

/* ---- the writer ---- */

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec * 1000.0 + (double)(ts.tv_nsec / 1000000);
}

static const char *kind_name(enum item_kind k)
{
	return k == ITEM_DROPPED ? "dropped" : k == ITEM_END ? "end" : "log";
}

static json_t *item_json(const struct item *it)
{
	json_t *o = json_pack("{s:s, s:s, s:s, s:f, s:s, s:s, s:s%}", "project_id", it->project_id, "function_id",
	                      it->function_id, "invocation_id", it->invocation_id, "ts_ms", it->ts_ms, "kind",
	                      kind_name(it->kind), "stream", it->kind == ITEM_LOG ? "stderr" : "system", "line",
	                      it->line, it->len);
	if (o && it->kind == ITEM_END &&
	    (json_object_set_new(o, "status", json_string(it->status)) < 0 ||
	     json_object_set_new(o, "duration_ms", json_real(it->duration_ms)) < 0)) {
		json_decref(o);
		o = NULL;
	}
	return o;
}

static int writer_connect(struct zerr *err)
{
	if (L.conn && PQstatus(L.conn) == CONNECTION_OK)
		return 0;
	if (L.conn)
		PQfinish(L.conn);
	L.conn = NULL;
	int r = db_pool_connect(L.pool, &L.conn, err);
	if (r < 0)
		return r;
	/* A batch commits within this of taking its ids: the streams' settle
	 * window counts on it. */
	r = db_exec_params(L.conn, "SET statement_timeout = " WRITER_STMT_MS, 0, NULL, NULL, err);
	if (r < 0) {
		PQfinish(L.conn);
		L.conn = NULL;
	}
	return r;
}

static int write_rows(const char *text, struct zerr *err)
{
	int r = writer_connect(err);
	if (r == 0)
		r = store_log_lines_insert(L.conn, text, err);
	if (r == -ECONNRESET) {
		/* the database restarted: once more on a new connection */
		r = writer_connect(err);
		if (r == 0)
			r = store_log_lines_insert(L.conn, text, err);
	}
	return r;
}

/* The items as one JSON array (freed); NULL when out of memory. */
static char *encode_items(void **items, size_t n, size_t *ret_rows)
{
	json_t *arr = json_array();
	for (size_t i = 0; i < n; i++) {
		json_t *o = arr ? item_json(items[i]) : NULL;
		if (o)
			json_array_append_new(arr, o);
		free(items[i]);
	}
	char *text = arr ? json_dumps(arr, JSON_COMPACT) : NULL;
	*ret_rows = json_array_size(arr);
	json_decref(arr);
	return text;
}

static void count_written(int r, size_t rows, size_t n, const struct zerr *err)
{
	pthread_mutex_lock(&L.mu);
	if (r == 0)
		L.written += rows;
	else
		L.failed += n;
	L.generation++;
	pthread_cond_broadcast(&L.wake);
	pthread_mutex_unlock(&L.mu);
	if (r < 0)
		zlog(ZLOG_WARN, "log_lines_lost", "error", err->msg, NULL);
}

static void write_batch(void *ctx, void **items, size_t n)
{
	(void)ctx;
	size_t rows = 0;
	_cleanup_free_ char *text = encode_items(items, n, &rows);
	struct zerr err = {0};
	int r = text ? write_rows(text, &err) : zerr_set(&err, -ENOMEM, "cannot encode log lines");
	count_written(r, rows, n, &err);
}

/* The writer's queue is full: the caller writes these itself, on a
 * connection of the pool (the writer's is the writer thread's). */
static void write_direct(void **items, size_t n)
{
	size_t rows = 0;
	_cleanup_free_ char *text = encode_items(items, n, &rows);
	struct zerr err = {0};
	int r = zerr_set(&err, -ENOMEM, "cannot encode log lines");
	PGconn *c = text ? db_acquire(L.pool) : NULL;
	if (c) {
		r = store_log_lines_insert(c, text, &err);
		db_release(L.pool, c);
	} else if (text)
		r = zerr_set(&err, -ETIMEDOUT, "no database connection");
	count_written(r, rows, n, &err);
}

/* ---- the sweeper ---- */

static void *sweeper_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&L.mu);
	while (!L.sweeper_stop) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		uint64_t ns = (uint64_t)ts.tv_nsec + (uint64_t)L.cfg.sweep_ms * 1000000ull;
		ts.tv_sec += (time_t)(ns / 1000000000ull);
		ts.tv_nsec = (long)(ns % 1000000000ull);
		pthread_cond_timedwait(&L.sweeper_cond, &L.mu, &ts);
		if (L.sweeper_stop)
			break;
		pthread_mutex_unlock(&L.mu);
		PGconn *c = db_acquire(L.pool);
		if (c) {
			struct zerr err = {0};
			uint64_t deleted = 0;
			if (store_log_lines_sweep(c, L.cfg.retention_s, L.cfg.retention_rows, &deleted, &err) < 0)
				zlog(ZLOG_WARN, "log_lines_sweep_failed", "error", err.msg, NULL);
			db_release(L.pool, c);
		}
		pthread_mutex_lock(&L.mu);
	}
	pthread_mutex_unlock(&L.mu);
	return NULL;
}

int logstream_start(struct db_pool *pool, const struct logstream_config *cfg, struct zerr *err)
{
	if (L.running)
		return zerr_set(err, -EALREADY, "live logs already started");
	L.cfg = *cfg;
	L.pool = pool;
	L.projects = calloc(cfg->max_streams, sizeof(*L.projects));
	if (!L.projects)
		return zerr_set(err, -ENOMEM, "out of memory");
	struct workq_options o = {.capacity = cfg->queue, .batch = WRITER_BATCH, .linger_ms = WRITER_LINGER};
	int r = workq_start(&o, write_batch, NULL, &L.q, err);
	if (r < 0) {
		free(L.projects);
		L.projects = NULL;
		return r;
	}
	L.sweeper_stop = false;
	r = -pthread_create(&L.sweeper, NULL, sweeper_main, NULL);
	if (r < 0) {
		workq_stop(L.q);
		L.q = NULL;
		free(L.projects);
		L.projects = NULL;
		return zerr_set(err, r, "cannot start the log sweeper");
	}
	L.sweeper_running = true;
	L.quiesced = false;
	L.running = true;
	return 0;
}

void logstream_quiesce(void)
{
	pthread_mutex_lock(&L.mu);
	L.quiesced = true;
	pthread_cond_broadcast(&L.wake);
	pthread_mutex_unlock(&L.mu);
}

void logstream_stop(void)
{
	if (!L.running)
		return;
	logstream_quiesce();
	pthread_mutex_lock(&L.mu);
	L.sweeper_stop = true;
	pthread_cond_broadcast(&L.sweeper_cond);
	pthread_mutex_unlock(&L.mu);
	if (L.sweeper_running)
		pthread_join(L.sweeper, NULL);
	L.sweeper_running = false;
	L.running = false; /* no new sinks; queued rows are written below */
	workq_stop(L.q);
	L.q = NULL;
	if (L.conn)
		PQfinish(L.conn);
	L.conn = NULL;
	free(L.projects);
	L.projects = NULL;
}

void logstream_stats(uint64_t *ret_queued, uint64_t *ret_written, uint64_t *ret_dropped, uint64_t *ret_streams)
{
	pthread_mutex_lock(&L.mu);
	*ret_queued = L.q ? workq_queued(L.q) : 0;
	*ret_written = L.written;
	*ret_dropped = L.dropped;
	*ret_streams = L.streams;
	pthread_mutex_unlock(&L.mu);
}

/* ---- sinks ---- */

struct logsink {
	char project_id[ID_LEN + 1], function_id[ID_LEN + 1], invocation_id[ID_LEN + 1];
	struct buf partial; /* the line being cut (bounded by the log cap) */
	uint64_t dropped;   /* lines not queued since the last marker */
};

struct logsink *logsink_open(const char *project_id, const char *function_id, const char *invocation_id)
{
	if (!L.running || !project_id || !function_id || !invocation_id)
		return NULL;
	struct logsink *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	snprintf(s->project_id, sizeof(s->project_id), "%s", project_id);
	snprintf(s->function_id, sizeof(s->function_id), "%s", function_id);
	snprintf(s->invocation_id, sizeof(s->invocation_id), "%s", invocation_id);
	s->partial = BUF_INIT(LINE_MAX_BYTES + 1);
	return s;
}

static struct item *item_new(const struct logsink *s, enum item_kind kind, const char *line, size_t len)
{
	if (len > LINE_MAX_BYTES)
		len = utf8_cut_len(line, len, LINE_MAX_BYTES);
	struct item *it = malloc(sizeof(*it) + len + 1);
	if (!it)
		return NULL;
	memcpy(it->project_id, s->project_id, sizeof(it->project_id));
	memcpy(it->function_id, s->function_id, sizeof(it->function_id));
	memcpy(it->invocation_id, s->invocation_id, sizeof(it->invocation_id));
	it->ts_ms = now_ms();
	it->kind = kind;
	it->status[0] = '\0';
	it->duration_ms = 0;
	/* The function's raw bytes: valid UTF-8 without NULs, each bad byte
	 * a '?' (as the invocation record's logs). */
	size_t i = 0;
	while (i < len) {
		const unsigned char *p = (const unsigned char *)line + i;
		size_t n = p[0] ? utf8_seq_len(p, len - i) : 0;
		if (n) {
			memcpy(it->line + i, line + i, n);
			i += n;
		} else
			it->line[i++] = '?';
	}
	it->line[len] = '\0';
	it->len = len;
	return it;
}

static bool push(struct item *it)
{
	if (it && L.q && workq_push(L.q, it))
		return true;
	free(it);
	return false;
}

/* Queue one item, the dropped marker first if lines were lost. */
static void sink_push(struct logsink *s, enum item_kind kind, const char *line, size_t len)
{
	if (s->dropped) {
		char n[24];
		int k = snprintf(n, sizeof(n), "%" PRIu64, s->dropped);
		if (!push(item_new(s, ITEM_DROPPED, n, (size_t)k))) {
			s->dropped++;
			pthread_mutex_lock(&L.mu);
			L.dropped++;
			pthread_mutex_unlock(&L.mu);
			return;
		}
		s->dropped = 0;
	}
	if (!push(item_new(s, kind, line, len))) {
		s->dropped++;
		pthread_mutex_lock(&L.mu);
		L.dropped++;
		pthread_mutex_unlock(&L.mu);
	}
}

static void emit_line(struct logsink *s, const char *p, size_t n)
{
	if (n && p[n - 1] == '\r')
		n--;
	sink_push(s, ITEM_LOG, p, n);
}

void logsink_feed(void *sink, const char *data, size_t len)
{
	struct logsink *s = sink;
	while (len) {
		const char *nl = memchr(data, '\n', len);
		size_t n = nl ? (size_t)(nl - data) : len;
		size_t room = LINE_MAX_BYTES - s->partial.len;
		size_t piece = n < room ? n : room;
		if (buf_append(&s->partial, data, piece) < 0) {
			/* out of memory: this piece of the line is lost */
			buf_free(&s->partial);
			s->partial = BUF_INIT(LINE_MAX_BYTES + 1);
		}
		data += piece;
		len -= piece;
		bool eol = nl && piece == n;
		if (eol || s->partial.len == LINE_MAX_BYTES) {
			/* a line, or a piece as long as a line may be */
			emit_line(s, s->partial.data ? s->partial.data : "", s->partial.len);
			s->partial.len = 0;
		}
		if (eol) {
			data++;
			len--;
		}
	}
}

void logsink_close(struct logsink *s, bool truncated, const char *status, double duration_ms)
{
	if (!s)
		return;
	if (s->partial.len)
		emit_line(s, s->partial.data, s->partial.len);
	if (truncated) {
		static const char msg[] = "[logs truncated: the invocation's log limit was reached]";
		sink_push(s, ITEM_SYSTEM, msg, sizeof(msg) - 1);
	}
	struct item *fin[2] = {0};
	size_t nfin = 0;
	if (s->dropped) {
		char n[24];
		int k = snprintf(n, sizeof(n), "%" PRIu64, s->dropped);
		fin[nfin++] = item_new(s, ITEM_DROPPED, n, (size_t)k);
	}
	struct item *end = item_new(s, ITEM_END, "", 0);
	if (end) {
		snprintf(end->status, sizeof(end->status), "%s", status ? status : "error");
		end->duration_ms = duration_ms;
		fin[nfin++] = end;
	}
	/* These must not be lost: when the queue is full, they are written
	 * here (the invocation is over; this is its caller's thread). */
	bool queued = true;
	for (size_t i = 0; i < nfin; i++) {
		if (queued && L.q && workq_push(L.q, fin[i])) {
			fin[i] = NULL;
			continue;
		}
		queued = false; /* keep the order: the rest is written here */
	}
	if (!queued) {
		struct item *rest[2];
		size_t k = 0;
		for (size_t i = 0; i < nfin; i++)
			if (fin[i])
				rest[k++] = fin[i];
		/* behind what is queued, so after the invocation's lines */
		if (L.q)
			workq_flush(L.q, 2000);
		write_direct((void **)rest, k);
	}
	buf_free(&s->partial);
	free(s);
}

/* ---- streams ---- */

struct sent_id {
	int64_t id;
	uint64_t at_ns;
};

struct logstream_reader {
	char project_id[ID_LEN + 1], function_id[ID_LEN + 1];
	int64_t floor;  /* every row up to here was sent or settled */
	int64_t cursor; /* the largest id sent: every event's id */
	bool from_now;  /* no Last-Event-ID: start at the function's end */
	struct sent_id sent[SENT_MAX];
	size_t n_sent, sent_head;
	struct buf out;
	size_t out_off;
	uint64_t next_poll_ns, next_heartbeat_ns, seen_generation;
	bool started, over;
};

int logstream_open(const char *project_id, const char *function_id, int64_t last_id, struct logstream_reader **ret,
                   struct zerr *err)
{
	pthread_mutex_lock(&L.mu);
	if (!L.running || L.quiesced) {
		pthread_mutex_unlock(&L.mu);
		return ze(err, ZE_UNAVAILABLE, "live logs are not available on this node");
	}
	if (L.streams >= L.cfg.max_streams) {
		pthread_mutex_unlock(&L.mu);
		return ze(err, ZE_UNAVAILABLE, "this node serves %u log streams already; retry later",
		          L.cfg.max_streams);
	}
	struct proj_count *slot = NULL, *free_slot = NULL;
	for (unsigned i = 0; i < L.cfg.max_streams; i++) {
		if (L.projects[i].n && strcmp(L.projects[i].id, project_id) == 0)
			slot = &L.projects[i];
		else if (!L.projects[i].n && !free_slot)
			free_slot = &L.projects[i];
	}
	if (slot && slot->n >= L.cfg.max_streams_per_project) {
		pthread_mutex_unlock(&L.mu);
		return ze(err, ZE_RATE_LIMITED, "the project has %u log streams open on this node already",
		          L.cfg.max_streams_per_project);
	}
	struct logstream_reader *r = calloc(1, sizeof(*r));
	if (!r) {
		pthread_mutex_unlock(&L.mu);
		return zerr_set(err, -ENOMEM, "out of memory");
	}
	if (!slot) {
		slot = free_slot; /* there is one: fewer than max_streams are open */
		snprintf(slot->id, sizeof(slot->id), "%s", project_id);
	}
	slot->n++;
	L.streams++;
	pthread_mutex_unlock(&L.mu);
	snprintf(r->project_id, sizeof(r->project_id), "%s", project_id);
	snprintf(r->function_id, sizeof(r->function_id), "%s", function_id);
	r->from_now = last_id < 0;
	r->floor = r->cursor = last_id < 0 ? 0 : last_id;
	r->out = BUF_INIT(PAGE_ROWS * (LINE_MAX_BYTES * 6 + 1024) + 4096);
	*ret = r;
	return 0;
}

void logstream_close(void *reader)
{
	struct logstream_reader *r = reader;
	if (!r)
		return;
	pthread_mutex_lock(&L.mu);
	for (unsigned i = 0; L.projects && i < L.cfg.max_streams; i++)
		if (L.projects[i].n && strcmp(L.projects[i].id, r->project_id) == 0) {
			L.projects[i].n--;
			break;
		}
	L.streams--;
	pthread_mutex_unlock(&L.mu);
	buf_free(&r->out);
	free(r);
}

static void sent_forget_oldest(struct logstream_reader *r)
{
	struct sent_id *s = &r->sent[r->sent_head];
	if (s->id > r->floor)
		r->floor = s->id;
	r->sent_head = (r->sent_head + 1) % SENT_MAX;
	r->n_sent--;
}

static void sent_add(struct logstream_reader *r, int64_t id, uint64_t now)
{
	if (r->n_sent == SENT_MAX)
		sent_forget_oldest(r);
	r->sent[(r->sent_head + r->n_sent) % SENT_MAX] = (struct sent_id){.id = id, .at_ns = now};
	r->n_sent++;
	if (id > r->cursor)
		r->cursor = id;
}

static void add_event(struct logstream_reader *r, const char *name, json_t *data)
{
	_cleanup_free_ char *text = data ? json_dumps(data, JSON_COMPACT) : NULL;
	json_decref(data);
	if (text)
		sse_append_event(&r->out, name, r->cursor, text, strlen(text));
}

static void row_event(struct logstream_reader *r, json_t *row)
{
	const char *kind = json_string_value(json_object_get(row, "kind"));
	json_t *inv = json_object_get(row, "invocation_id"), *ts = json_object_get(row, "ts");
	if (!kind)
		return;
	if (strcmp(kind, "end") == 0)
		add_event(r, "end",
		          json_pack("{s:O, s:O, s:O, s:O}", "invocation_id", inv, "ts", ts, "status",
		                    json_object_get(row, "status"), "duration_ms",
		                    json_object_get(row, "duration_ms")));
	else if (strcmp(kind, "dropped") == 0) {
		const char *n = json_string_value(json_object_get(row, "line"));
		add_event(r, "dropped",
		          json_pack("{s:s, s:O, s:O, s:I}", "reason", "queue_full", "invocation_id", inv, "ts", ts,
		                    "lines", (json_int_t)(n ? strtoll(n, NULL, 10) : 0)));
	} else
		add_event(r, "log",
		          json_pack("{s:O, s:O, s:O, s:O}", "invocation_id", inv, "ts", ts, "stream",
		                    json_object_get(row, "stream"), "line", json_object_get(row, "line")));
}

/* One read of the function's rows: events into r->out. */
static void poll_rows(struct logstream_reader *r)
{
	uint64_t now = util_now_ns();
	while (r->n_sent && now - r->sent[r->sent_head].at_ns > (uint64_t)SETTLE_MS * 1000000ull)
		sent_forget_oldest(r);
	_cleanup_buf_ struct buf skip = BUF_INIT(SENT_MAX * 24 + 8);
	buf_puts(&skip, "[");
	for (size_t i = 0; i < r->n_sent; i++)
		buf_printf(&skip, "%s%" PRId64, i ? "," : "", r->sent[(r->sent_head + i) % SENT_MAX].id);
	buf_puts(&skip, "]");
	if (skip.failed)
		return;
	PGconn *c = db_acquire(L.pool);
	if (!c)
		return; /* the next turn */
	json_t *page = NULL;
	struct zerr err = {0};
	int64_t after = r->from_now ? INT64_MAX : r->floor;
	int rc = store_log_lines_page(c, r->project_id, r->function_id, after, skip.data, PAGE_ROWS, &page, &err);
	db_release(L.pool, c);
	if (rc < 0 || !json_is_object(page)) {
		json_decref(page);
		return;
	}
	if (!json_is_true(json_object_get(page, "exists"))) {
		add_event(r, "closed", json_pack("{s:s}", "reason", "function_deleted"));
		r->over = true;
		json_decref(page);
		return;
	}
	int64_t horizon = json_integer_value(json_object_get(page, "horizon"));
	if (r->from_now) {
		/* a new stream starts after what is stored now */
		r->from_now = false;
		r->floor = r->cursor = json_integer_value(json_object_get(page, "max"));
		json_decref(page);
		return;
	}
	if (horizon > r->floor) {
		/* the sweep deleted rows this stream had not read */
		int64_t from = r->floor;
		r->floor = horizon;
		if (horizon > r->cursor)
			r->cursor = horizon;
		add_event(r, "dropped",
		          json_pack("{s:s, s:I, s:I}", "reason", "retention", "after", (json_int_t)from, "through",
		                    (json_int_t)horizon));
		r->n_sent = 0;
		r->sent_head = 0;
		json_decref(page);
		r->next_poll_ns = 0; /* read on at once */
		return;
	}
	json_t *rows = json_object_get(page, "rows");
	size_t i;
	json_t *row;
	json_array_foreach (rows, i, row) {
		int64_t id = json_integer_value(json_object_get(row, "id"));
		sent_add(r, id, now);
		row_event(r, row);
	}
	if (json_array_size(rows) == PAGE_ROWS)
		r->next_poll_ns = 0; /* more to read */
	json_decref(page);
}

static bool quiesced(void)
{
	pthread_mutex_lock(&L.mu);
	bool q = L.quiesced;
	pthread_mutex_unlock(&L.mu);
	return q;
}

long logstream_read(struct logstream_reader *r, char *buf, size_t max, bool (*stopping)(const void *arg),
                    const void *arg)
{
	for (;;) {
		if (r->out_off < r->out.len) {
			size_t n = r->out.len - r->out_off;
			if (n > max)
				n = max;
			memcpy(buf, r->out.data + r->out_off, n);
			r->out_off += n;
			if (r->out_off == r->out.len)
				r->out.len = r->out_off = 0;
			return (long)n;
		}
		if (r->over || stopping(arg) || quiesced())
			return -1;
		uint64_t now = util_now_ns();
		if (!r->started) {
			/* where a new stream starts is settled before the
			 * client hears from it */
			r->started = true;
			r->next_poll_ns = now + POLL_MS * 1000000ull;
			poll_rows(r);
			buf_printf(&r->out, "retry: %d\n: live logs of function %s\n\n", SSE_RETRY_MS, r->function_id);
			r->next_heartbeat_ns = now + HEARTBEAT_MS * 1000000ull;
			continue;
		}
		if (now >= r->next_poll_ns) {
			r->next_poll_ns = now + POLL_MS * 1000000ull;
			poll_rows(r);
			if (r->out.len || r->over)
				continue;
		}
		if (now >= r->next_heartbeat_ns) {
			r->next_heartbeat_ns = now + HEARTBEAT_MS * 1000000ull;
			buf_puts(&r->out, ": heartbeat\n\n");
			continue;
		}
		if (r->out.failed) {
			/* an event that could not be built: end rather than skip it */
			return -1;
		}
		/* Wait for the next poll, or for this node's writer. */
		uint64_t until = r->next_poll_ns < r->next_heartbeat_ns ? r->next_poll_ns : r->next_heartbeat_ns;
		uint64_t wait_ns = until > now ? until - now : 0;
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		uint64_t ns = (uint64_t)ts.tv_nsec + wait_ns;
		ts.tv_sec += (time_t)(ns / 1000000000ull);
		ts.tv_nsec = (long)(ns % 1000000000ull);
		pthread_mutex_lock(&L.mu);
		if (L.generation == r->seen_generation && !L.quiesced)
			pthread_cond_timedwait(&L.wake, &L.mu, &ts);
		if (L.generation != r->seen_generation) {
			r->seen_generation = L.generation;
			r->next_poll_ns = 0;
		}
		pthread_mutex_unlock(&L.mu);
	}
}

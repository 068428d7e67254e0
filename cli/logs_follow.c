/* logs_follow.c - zmesh logs NAME --follow: the function's live logs
 * (GET .../logs/stream, Server-Sent Events) printed as they come, one line
 * per log line and per finished invocation; reconnects with the last event
 * id when the connection drops; stops on Ctrl-C. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "logs_follow.h"
#include "sse_client.h"

#define FOLLOW_ERROR_MAX   (64 * 1024) /* an error answer's body */
#define FOLLOW_SILENCE_S   45L         /* the server sends a comment every 15 s */
#define FOLLOW_RETRY_MIN   100L
#define FOLLOW_RETRY_MAX   60000L
#define FOLLOW_RETRY_FIRST 2000L

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
	(void)sig;
	interrupted = 1;
}

struct follow {
	struct cli *c;
	CURL *curl;
	struct sse_client parser;
	char last_id[SSE_CLIENT_FIELD_MAX + 1];
	bool closed; /* the server ended the stream for good */
	long status;
	char *error; /* a non-200 answer's body */
	size_t error_len;
};

/* "2026-12-05T03:10:00.123Z" -> "03:10:00.123"; anything else as is, cut. */
static void short_time(const char *ts, char *out, size_t size)
{
	const char *t = ts ? strchr(ts, 'T') : NULL;
	snprintf(out, size, "%.12s", t ? t + 1 : ts ? ts : "-");
}

static void short_id(const char *id, char *out, size_t size)
{
	snprintf(out, size, "%.8s", id && cli_is_uuid(id) ? id : "--------");
}

static void on_event(void *ctx, const char *event, const char *id, const char *data, size_t len)
{
	struct follow *f = ctx;
	(void)len;
	if (id[0])
		snprintf(f->last_id, sizeof(f->last_id), "%s", id);
	_cleanup_json_ json_t *j = json_loads(data, JSON_REJECT_DUPLICATES, NULL);
	if (!json_is_object(j))
		return; /* not ours to understand: skipped */
	char tm[16], iid[16];
	short_time(json_string_value(json_object_get(j, "ts")), tm, sizeof(tm));
	short_id(json_string_value(json_object_get(j, "invocation_id")), iid, sizeof(iid));
	if (strcmp(event, "log") == 0) {
		const char *line = json_string_value(json_object_get(j, "line"));
		_cleanup_free_ char *safe = cli_sanitize(line ? line : "", 1024 * 1024, false);
		printf("%s %s %s\n", tm, iid, safe ? safe : "");
	} else if (strcmp(event, "end") == 0) {
		const char *status = json_string_value(json_object_get(j, "status"));
		_cleanup_free_ char *safe = cli_sanitize(status ? status : "?", 32, false);
		json_t *d = json_object_get(j, "duration_ms");
		printf("%s %s end: %s in %.0f ms\n", tm, iid, safe ? safe : "?",
		       json_is_number(d) ? json_number_value(d) : 0.0);
	} else if (strcmp(event, "dropped") == 0) {
		const char *reason = json_string_value(json_object_get(j, "reason"));
		if (reason && strcmp(reason, "queue_full") == 0)
			printf("%s %s [%lld log lines dropped: the server could not keep up]\n", tm, iid,
			       (long long)json_integer_value(json_object_get(j, "lines")));
		else
			fprintf(stderr,
			        "zmesh: some log lines are gone: this client fell behind what the server keeps\n");
	} else if (strcmp(event, "closed") == 0) {
		fprintf(stderr, "zmesh: the stream ended: the function was deleted\n");
		f->closed = true;
	}
	fflush(stdout);
}

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *ud)
{
	struct follow *f = ud;
	size_t n = size * nmemb;
	if (!f->status)
		curl_easy_getinfo(f->curl, CURLINFO_RESPONSE_CODE, &f->status);
	if (f->status != 200) {
		size_t room = FOLLOW_ERROR_MAX - f->error_len;
		size_t k = n < room ? n : room;
		char *e = realloc(f->error, f->error_len + k + 1);
		if (!e)
			return 0;
		f->error = e;
		memcpy(f->error + f->error_len, ptr, k);
		f->error_len += k;
		f->error[f->error_len] = '\0';
		return n;
	}
	sse_client_feed(&f->parser, ptr, n, on_event, f);
	return n;
}

static int on_progress(void *ud, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
	struct follow *f = ud;
	(void)a, (void)b, (void)c, (void)d;
	return interrupted || f->closed; /* non-zero aborts the transfer */
}

/* One connection: returns the curl code; f->status is the answer's. */
static CURLcode connect_once(struct follow *f, const char *url)
{
	struct curl_slist *h = NULL, *t;
	_cleanup_free_ char *auth = NULL, *last = NULL;
	if (asprintf(&auth, "Authorization: Bearer %s", f->c->cfg.token) < 0)
		return CURLE_OUT_OF_MEMORY;
	if (f->last_id[0] && asprintf(&last, "Last-Event-ID: %s", f->last_id) < 0)
		return CURLE_OUT_OF_MEMORY;
	const char *hdrs[] = {auth, "Accept: text/event-stream", last};
	for (size_t i = 0; i < 3; i++) {
		if (!hdrs[i])
			continue;
		t = curl_slist_append(h, hdrs[i]);
		if (!t) {
			curl_slist_free_all(h);
			return CURLE_OUT_OF_MEMORY;
		}
		h = t;
	}
	f->status = 0;
	free(f->error);
	f->error = NULL;
	f->error_len = 0;
	sse_client_done(&f->parser);
	if (sse_client_init(&f->parser) < 0) {
		curl_slist_free_all(h);
		return CURLE_OUT_OF_MEMORY;
	}
	CURL *k = f->curl;
	client_easy_setup(k, url);
	/* No deadline for the whole stream; silence past the heartbeats is
	 * a connection gone. */
	curl_easy_setopt(k, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(k, CURLOPT_LOW_SPEED_TIME, FOLLOW_SILENCE_S);
	curl_easy_setopt(k, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(k, CURLOPT_USERAGENT, "zmesh-cli/" ZMESH_CLI_VERSION);
	curl_easy_setopt(k, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(k, CURLOPT_WRITEDATA, f);
	curl_easy_setopt(k, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(k, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(k, CURLOPT_XFERINFODATA, f);
	CURLcode rc = curl_easy_perform(k);
	if (!f->status)
		curl_easy_getinfo(k, CURLINFO_RESPONSE_CODE, &f->status);
	curl_easy_setopt(k, CURLOPT_HTTPHEADER, NULL);
	curl_slist_free_all(h);
	return rc;
}

static void pause_ms(long ms)
{
	for (long left = ms; left > 0 && !interrupted; left -= 100) {
		struct timespec ts = {0, 100L * 1000000L};
		nanosleep(&ts, NULL);
	}
}

int logs_follow(struct cli *c, const char *path)
{
	if (!c->cfg.url || !c->cfg.token)
		return cli_fail(c, "not logged in: run zmesh login first");
	_cleanup_free_ char *base = NULL, *url = NULL;
	if (client_check_url(c->cfg.url, &base, &c->err) < 0)
		return cli_fail(c, NULL);
	if (asprintf(&url, "%s%s", base, path) < 0)
		return cli_fail(c, "out of memory");
	struct follow f = {.c = c, .curl = curl_easy_init()};
	if (!f.curl || sse_client_init(&f.parser) < 0) {
		if (f.curl)
			curl_easy_cleanup(f.curl);
		return cli_fail(c, "out of memory");
	}
	struct sigaction sa = {.sa_handler = on_sigint}, old_int, old_term;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, &old_int);
	sigaction(SIGTERM, &sa, &old_term);
	int rc = CLI_EXIT_OK;
	long retry = FOLLOW_RETRY_FIRST;
	while (!interrupted && !f.closed) {
		CURLcode cc = connect_once(&f, url);
		if (interrupted || f.closed)
			break;
		if (f.status && f.status != 200) {
			struct reply r = {.status = f.status, .raw = f.error, .len = f.error_len};
			r.json = f.error ? json_loads(f.error, 0, NULL) : NULL;
			_cleanup_free_ char *msg = reply_error_line(&r);
			json_decref(r.json);
			rc = cli_fail(c, "%s", msg ? msg : "the server refused the stream");
			break;
		}
		if (f.parser.retry_ms >= 0)
			retry = f.parser.retry_ms < FOLLOW_RETRY_MIN   ? FOLLOW_RETRY_MIN
			        : f.parser.retry_ms > FOLLOW_RETRY_MAX ? FOLLOW_RETRY_MAX
			                                               : f.parser.retry_ms;
		fprintf(stderr, "zmesh: the stream was interrupted (%s); reconnecting\n",
		        cc == CURLE_OK ? "closed by the server" : curl_easy_strerror(cc));
		pause_ms(retry);
	}
	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGTERM, &old_term, NULL);
	free(f.error);
	sse_client_done(&f.parser);
	curl_easy_cleanup(f.curl);
	return rc;
}

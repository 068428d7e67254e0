/* client.c - JSON over HTTP to zmeshd, with libcurl.
 *
 * The session token rides in a header on every call, so the client never
 * follows redirects (a redirect could hand it to another host), speaks only
 * http and https, and never puts a URL with credentials in a message. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "buf.h"
#include "client.h"

/* libcurl's write callback: the response, bounded (CLIENT_MAX_RESPONSE). */
static size_t sink_write(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct buf *s = userdata;
	size_t n = size * nmemb;
	/* A failed append makes libcurl stop with CURLE_WRITE_ERROR. */
	return buf_append(s, ptr, n) == 0 ? n : 0;
}

static bool printable_ascii(const char *s, bool allow_space)
{
	for (; *s; s++)
		if ((unsigned char)*s > 0x7e || (unsigned char)*s < (allow_space ? 0x20 : 0x21))
			return false;
	return true;
}

static void curl_urlp(CURLU **u)
{
	curl_url_cleanup(*u);
}

static void curl_freep(char **p)
{
	curl_free(*p);
}

int client_check_url(const char *url, char **ret, struct zerr *err)
{
	if (strlen(url) > CLIENT_MAX_URL)
		return zerr_set(err, -EINVAL, "the URL is longer than %d characters", CLIENT_MAX_URL);
	if (!printable_ascii(url, false))
		return zerr_set(err, -EINVAL, "the URL must be printable ASCII without spaces");
	_cleanup_(curl_urlp) CURLU *u = curl_url();
	if (!u)
		return zerr_set(err, -ENOMEM, "out of memory");
	if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK)
		return zerr_set(err, -EINVAL, "not a URL: give one like http://127.0.0.1:8080");
	_cleanup_(curl_freep) char *scheme = NULL, *host = NULL, *user = NULL, *query = NULL, *frag = NULL,
	                           *full = NULL;
	if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0))
		return zerr_set(err, -EINVAL, "the URL must start with http:// or https://");
	if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !*host)
		return zerr_set(err, -EINVAL, "the URL has no host");
	/* Credentials in a URL end up in messages and shell history. */
	if (curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK)
		return zerr_set(err, -EINVAL, "the URL must not contain a user name or password");
	if (curl_url_get(u, CURLUPART_QUERY, &query, 0) == CURLUE_OK ||
	    curl_url_get(u, CURLUPART_FRAGMENT, &frag, 0) == CURLUE_OK)
		return zerr_set(err, -EINVAL, "the URL must not have a query or fragment");
	if (curl_url_get(u, CURLUPART_URL, &full, 0) != CURLUE_OK)
		return zerr_set(err, -EINVAL, "not a URL: give one like http://127.0.0.1:8080");
	char *out = strdup(full);
	if (!out)
		return zerr_set(err, -ENOMEM, "out of memory");
	size_t n = strlen(out);
	while (n > 0 && out[n - 1] == '/')
		out[--n] = '\0';
	*ret = out;
	return 0;
}

int client_init(struct client *c, const char *base, struct zerr *err)
{
	*c = (struct client){.timeout_ms = CLIENT_TIMEOUT_MS};
	c->curl = curl_easy_init();
	c->base = strdup(base);
	if (!c->curl || !c->base) {
		client_done(c);
		return zerr_set(err, -ENOMEM, "cannot set up the HTTP client");
	}
	return 0;
}

void client_done(struct client *c)
{
	if (!c)
		return;
	if (c->curl)
		curl_easy_cleanup(c->curl);
	free(c->base);
	*c = (struct client){0};
}

void reply_done(struct reply *r)
{
	if (!r)
		return;
	free(r->raw);
	json_decref(r->json);
	*r = (struct reply){0};
}

char *client_escape(const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = strlen(s);
	if (n > (SIZE_MAX - 1) / 3)
		return NULL;
	char *out = malloc(3 * n + 1), *o = out;
	if (!out)
		return NULL;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' ||
		    *p == '_' || *p == '~') {
			*o++ = (char)*p;
		} else {
			*o++ = '%';
			*o++ = hex[*p >> 4];
			*o++ = hex[*p & 15];
		}
	}
	*o = '\0';
	return out;
}

static void slist_freep(struct curl_slist **l)
{
	curl_slist_free_all(*l);
}

/* The request body may carry a password: wipe it before it is freed. */
static void wipe_freep(char **p)
{
	if (*p) {
		explicit_bzero(*p, strlen(*p));
		free(*p);
	}
}

static int add_header(struct curl_slist **list, const char *name, const char *value)
{
	_cleanup_(wipe_freep) char *h = NULL;
	/* "Name:" with nothing after it is how libcurl is told to leave a
	 * header of its own out. */
	if (asprintf(&h, *value ? "%s: %s" : "%s:%s", name, value) < 0)
		return -ENOMEM;
	struct curl_slist *l = curl_slist_append(*list, h);
	if (!l)
		return -ENOMEM;
	*list = l;
	return 0;
}

void client_easy_setup(CURL *k, const char *url)
{
	curl_easy_reset(k);
	curl_easy_setopt(k, CURLOPT_URL, url);
	curl_easy_setopt(k, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(k, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(k, CURLOPT_PATH_AS_IS, 1L);
	curl_easy_setopt(k, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(k, CURLOPT_CONNECTTIMEOUT_MS, CLIENT_CONNECT_TIMEOUT_MS);
}

int client_request(struct client *c, const char *method, const char *path, const json_t *body,
                   const char *const *headers, struct reply *ret, struct zerr *err)
{
	/* Values from the config file or the command line go into headers:
	 * a CR or LF there would forge other headers. */
	if (c->token && !printable_ascii(c->token, false))
		return zerr_set(err, -EINVAL, "the saved session token is malformed: run zmesh login again");
	for (const char *const *h = headers; h && h[0]; h += 2)
		if (!h[1] || !*h[1] || !printable_ascii(h[0], false) || !printable_ascii(h[1], true))
			return zerr_set(err, -EINVAL, "the %s header must be non-empty printable ASCII", h[0]);

	_cleanup_free_ char *url = NULL;
	if (asprintf(&url, "%s%s", c->base, path) < 0)
		return zerr_set(err, -ENOMEM, "out of memory");
	_cleanup_(wipe_freep) char *payload = NULL;
	if (body && !(payload = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY)))
		return zerr_set(err, -EINVAL, "cannot encode the request as JSON");

	_cleanup_(slist_freep) struct curl_slist *list = NULL;
	int r = add_header(&list, "Accept", "application/json");
	if (r >= 0 && payload)
		r = add_header(&list, "Content-Type", "application/json");
	/* No "Expect: 100-continue" round trip before big bodies. */
	if (r >= 0)
		r = add_header(&list, "Expect", "");
	if (r >= 0 && c->token) {
		_cleanup_(wipe_freep) char *auth = NULL;
		if (asprintf(&auth, "Bearer %s", c->token) < 0)
			r = -ENOMEM;
		else
			r = add_header(&list, "Authorization", auth);
	}
	for (const char *const *h = headers; r >= 0 && h && h[0]; h += 2)
		r = add_header(&list, h[0], h[1]);
	if (r < 0)
		return zerr_set(err, r, "out of memory");

	CURL *h = c->curl;
	char errbuf[CURL_ERROR_SIZE] = "";
	struct buf sink = BUF_INIT(CLIENT_MAX_RESPONSE + 1);
	client_easy_setup(h, url);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, c->timeout_ms);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, list);
	curl_easy_setopt(h, CURLOPT_USERAGENT, "zmesh-cli/" ZMESH_CLI_VERSION);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sink_write);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &sink);
	if (strcmp(method, "GET") == 0) {
		curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
	} else {
		if (strcmp(method, "POST") == 0 || payload) {
			curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(payload ? strlen(payload) : 0));
			curl_easy_setopt(h, CURLOPT_POSTFIELDS, payload ? payload : "");
		}
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
	}

	CURLcode cr = curl_easy_perform(h);
	/* The handle keeps pointers to our stack and headers: drop them now. */
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
	size_t len = sink.len;
	int failed = sink.failed;
	_cleanup_free_ char *data = buf_steal(&sink);
	if (failed == -E2BIG)
		return zerr_set(err, -EFBIG, "the response from %s is larger than %u MB", c->base,
		                CLIENT_MAX_RESPONSE >> 20);
	if (cr == CURLE_OPERATION_TIMEDOUT)
		return zerr_set(err, -ETIMEDOUT, "no answer from %s within %ld s", c->base, c->timeout_ms / 1000);
	if (failed == -ENOMEM)
		return zerr_set(err, -ENOMEM, "out of memory reading the response of %s", c->base);
	if (cr != CURLE_OK)
		return zerr_set(err, -EIO, "cannot reach %s: %s", c->base, *errbuf ? errbuf : curl_easy_strerror(cr));

	long status = 0;
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	json_error_t jerr;
	json_t *json = data ? json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr) : NULL;
	if (!json)
		return zerr_set(err, -EBADMSG, "unexpected answer from %s (HTTP %ld, not JSON): is it a zmesh server?",
		                c->base, status);
	*ret = (struct reply){.status = status, .raw = TAKE_PTR(data), .len = len, .json = json};
	return 0;
}

char *reply_error_line(const struct reply *r)
{
	json_t *e = json_object_get(r->json, "error");
	const char *code = json_string_value(json_object_get(e, "code"));
	const char *msg = json_string_value(json_object_get(e, "message"));
	_cleanup_free_ char *c = code ? cli_sanitize(code, 64, false) : NULL;
	_cleanup_free_ char *m = msg ? cli_sanitize(msg, 400, true) : NULL;
	char *out = NULL;
	int k;
	if (c && m)
		k = asprintf(&out, "%s: %s", c, m);
	else if (c || m)
		k = asprintf(&out, "%s (HTTP %ld)", c ? c : m, r->status);
	else
		k = asprintf(&out, "the server answered HTTP %ld", r->status);
	return k < 0 ? NULL : out;
}

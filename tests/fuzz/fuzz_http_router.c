/* fuzz_http_router.c - libFuzzer harness for the router (supervisor/http.c):
 * the API's own route shapes, matched against a fuzzed method and path.
 * Input: "METHOD PATH" (first space splits; no space: GET and the whole input
 * as the path). Checks the router's promises: a match names a route of that
 * method, parameters are non-empty, clean and bounded, and errors are only
 * 400, 404 or 405 (405 with an Allow list). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "http_parse.h"

static void h(struct http_request *req, void *app)
{
}

static const struct http_route routes[] = {
    {"GET", "/healthz", h},
    {"GET", "/metrics", h},
    {"POST", "/auth/login", h},
    {"GET", "/projects", h},
    {"POST", "/projects", h},
    {"GET", "/projects/{pid}", h},
    {"DELETE", "/projects/{pid}", h},
    {"GET", "/projects/{pid}/functions", h},
    {"POST", "/projects/{pid}/functions", h},
    {"GET", "/projects/{pid}/functions/{fid}", h},
    {"PUT", "/projects/{pid}/functions/{fid}", h},
    {"DELETE", "/projects/{pid}/functions/{fid}", h},
    {"POST", "/projects/{pid}/functions/{fid}/invoke", h},
    {"GET", "/projects/{pid}/functions/{fid}/invocations", h},
    {"GET", "/projects/{pid}/functions/{fid}/invocations/{iid}", h},
    {"GET", "/projects/{pid}/keys", h},
    {"POST", "/projects/{pid}/keys", h},
    {"DELETE", "/projects/{pid}/keys/{kid}", h},
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct http_router *r;
	if (!r) {
		struct zerr err = {0};
		if (http_router_new(routes, ELEMENTSOF(routes), &r, &err) < 0)
			abort();
	}
	if (size > 2 * HTTP_TARGET_MAX)
		return 0;
	char *in = malloc(size + 1);
	if (!in)
		return 0;
	memcpy(in, data, size);
	in[size] = '\0';
	/* the router sees C strings, as libmicrohttpd hands them over */
	char *sp = memchr(in, ' ', size);
	const char *method = "GET", *path = in;
	if (sp) {
		*sp = '\0';
		method = in;
		path = sp + 1;
	}
	/* a path with a query is cut where the layer cuts it */
	char *q = strchr(path, '?');
	if (q) {
		if (http_target_check(path, strlen(path)) != HTTP_TARGET_OK) {
			free(in);
			return 0;
		}
		*q = '\0';
	}

	struct http_match m;
	http_router_match(r, method, path, &m);
	switch (m.status) {
	case 0:
		if (!m.route || strcmp(m.route->method, method) != 0 || m.n_params > HTTP_MAX_PARAMS)
			abort();
		for (size_t i = 0; i < m.n_params; i++) {
			size_t n = strnlen(m.values[i], HTTP_PARAM_MAX + 1);
			if (n == 0 || n > HTTP_PARAM_MAX || !http_text_clean(m.values[i], n) ||
			    strchr(m.values[i], '/'))
				abort();
		}
		break;
	case 405:
		if (m.route || !m.allow[0])
			abort();
		break;
	case 400:
	case 404:
		if (m.route)
			abort();
		break;
	default:
		abort();
	}
	if (m.status && strnlen(m.message, sizeof(m.message)) == sizeof(m.message))
		abort();
	free(in);
	return 0;
}

/* client.h - JSON over HTTP to zmeshd, with libcurl. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include <curl/curl.h>

#include "common.h"

/* The biggest response accepted: a version list holds every previous code
 * (each up to the server's code limit), an invocation a result of up to 6 MB. */
#define CLIENT_MAX_RESPONSE       (128u * 1024 * 1024)
#define CLIENT_CONNECT_TIMEOUT_MS 10000L
/* Ordinary calls answer quickly; an invocation may run as long as the
 * biggest tier allows (900 s) after waiting for a slot. */
#define CLIENT_TIMEOUT_MS        60000L
#define CLIENT_INVOKE_TIMEOUT_MS (960L * 1000)
#define CLIENT_MAX_URL           2048

struct client {
	CURL *curl;
	char *base;        /* validated base URL, no trailing slash */
	const char *token; /* borrowed; NULL sends no Authorization */
	long timeout_ms;
};

/* One response: the status, the raw body and, when it parses, its JSON. */
struct reply {
	long status;
	char *raw;
	size_t len;
	json_t *json;
};

/* Check a base URL given by a person: http or https, a host, no user
 * credentials, no query or fragment, bounded. *ret is the normalised form
 * (trailing slashes removed). */
int client_check_url(const char *url, char **ret, struct zerr *err);

/* Reset handle k for one request to url, with what every request of the
 * client has: http(s) only, no redirects, the path as given, no signals,
 * the connect timeout. */
void client_easy_setup(CURL *k, const char *url);

/* Set up a client for base (already checked). Free with client_done. */
int client_init(struct client *c, const char *base, struct zerr *err);
void client_done(struct client *c);

/* Send one request. path starts with '/' and has every segment escaped
 * (client_escape). body may be NULL (no body). headers, when given, are more
 * request headers: name, value, name, value, ..., NULL; a value must be
 * non-empty printable ASCII (spaces allowed), else the request is not sent. Returns 0
 * once a response arrived, whatever its status; the body must then be JSON.
 * Transport failures, oversized or non-JSON bodies are errors. Free *ret
 * with reply_done. */
int client_request(struct client *c, const char *method, const char *path, const json_t *body,
                   const char *const *headers, struct reply *ret, struct zerr *err);

void reply_done(struct reply *r);

/* A path segment with everything but [A-Za-z0-9_~-] percent-encoded, so a
 * name can never add segments or dot-segments to a path. NULL on ENOMEM. */
char *client_escape(const char *s);

/* The one-line message of an error reply: "CODE: message" from the server's
 * {"error":{"code","message"}}, else "HTTP <status>". Sanitised. */
char *reply_error_line(const struct reply *r);

/* api_ui.h - the dashboard: the files of web/, embedded at build time
 * (cmake/embed_web.cmake writes web_assets.c), served from memory.
 *
 * GET /         index.html
 * GET /ui/NAME  any other asset, by its file name
 * Each answer carries its Content-Type, a strong ETag (If-None-Match answers
 * 304), Cache-Control: no-cache (a browser revalidates, so a new daemon's
 * dashboard is seen at once) and the security headers of docs/DASHBOARD.md:
 * a Content-Security-Policy that allows only the daemon's own scripts,
 * styles and API (no inline script, no framing), Referrer-Policy
 * no-referrer, X-Frame-Options DENY, and Cross-Origin-Opener- and
 * -Resource-Policy same-origin (X-Content-Type-Options: nosniff is on every
 * answer of the HTTP layer). */
#pragma once

#include <stdbool.h>
#include <stddef.h>

struct http_request;

struct web_asset {
	const char *name;         /* "app.js" */
	const char *content_type; /* "text/javascript; charset=utf-8" */
	const char *etag;         /* "\"<32 hex>\"" */
	const unsigned char *data;
	size_t len;
};

/* web_assets.c, generated. */
extern const struct web_asset web_assets[];
extern const size_t web_n_assets;

/* The CSP of every dashboard answer. */
#define UI_CSP                                                                                                \
	"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " \
	"font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

/* Whether an If-None-Match header (a comma-separated list of entity tags,
 * each possibly weak, W/"...", or "*") names etag; a NULL header names
 * nothing. */
bool ui_etag_matches(const char *header, const char *etag);

/* The asset called name, or NULL. */
const struct web_asset *ui_asset(const char *name);

void h_ui_index(struct http_request *req, void *app);
void h_ui_asset(struct http_request *req, void *app);

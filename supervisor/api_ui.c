/* api_ui.c - serves the embedded dashboard (api_ui.h). */
#include <string.h>

#include "api_ui.h"
#include "http.h"

const struct web_asset *ui_asset(const char *name)
{
	if (!name)
		return NULL;
	for (size_t i = 0; i < web_n_assets; i++)
		if (strcmp(web_assets[i].name, name) == 0)
			return &web_assets[i];
	return NULL;
}

bool ui_etag_matches(const char *header, const char *etag)
{
	if (!header)
		return false;
	size_t n = strlen(etag);
	for (const char *p = header; *p;) {
		p += strspn(p, " \t,");
		if (!*p)
			break;
		size_t len = strcspn(p, ",");
		while (len && (p[len - 1] == ' ' || p[len - 1] == '\t'))
			len--;
		if ((len == 1 && *p == '*') || (len == n && memcmp(p, etag, n) == 0) ||
		    (len == n + 2 && strncmp(p, "W/", 2) == 0 && memcmp(p + 2, etag, n) == 0))
			return true;
		p += strcspn(p, ",");
	}
	return false;
}

static void serve(struct http_request *req, const struct web_asset *a)
{
	static const char *const headers[][2] = {
	    {"Content-Security-Policy", UI_CSP},
	    {"Referrer-Policy", "no-referrer"},
	    {"X-Frame-Options", "DENY"},
	    {"Cross-Origin-Opener-Policy", "same-origin"},
	    {"Cross-Origin-Resource-Policy", "same-origin"},
	    {"Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=(), usb=()"},
	    {"Cache-Control", "no-cache"},
	};
	if (!a) {
		http_reply_error(req, 404, "NOT_FOUND", "no such file");
		return;
	}
	for (size_t i = 0; i < ELEMENTSOF(headers); i++)
		http_add_header(req, headers[i][0], headers[i][1]);
	http_add_header(req, "ETag", a->etag);
	if (ui_etag_matches(http_header(req, "If-None-Match"), a->etag)) {
		http_reply_text(req, 304, a->content_type, "", 0);
		return;
	}
	http_reply_text(req, 200, a->content_type, (const char *)a->data, a->len);
}

void h_ui_index(struct http_request *req, void *app)
{
	(void)app;
	serve(req, ui_asset("index.html"));
}

void h_ui_asset(struct http_request *req, void *app)
{
	(void)app;
	const char *name = http_param(req, "file");
	/* index.html is "/" only: one address per page. */
	if (name && strcmp(name, "index.html") == 0)
		name = NULL;
	serve(req, ui_asset(name));
}

/* cli.c - what the command modules share: options, API calls, output. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "cli.h"
#include "tty.h"

int cli_usage_error(const char *usage, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("zmesh: ", stderr);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	/* The synopsis only: the explanation after a blank line is for --help. */
	const char *end = strstr(usage, "\n\n");
	fprintf(stderr, "\nusage: %.*s\n", end ? (int)(end - usage) : (int)strlen(usage), usage);
	return CLI_EXIT_USAGE;
}

int cli_fail(struct cli *c, const char *fmt, ...)
{
	if (fmt) {
		va_list ap;
		va_start(ap, fmt);
		fputs("zmesh: ", stderr);
		vfprintf(stderr, fmt, ap);
		fputc('\n', stderr);
		va_end(ap);
	} else {
		fprintf(stderr, "zmesh: %s\n", *c->err.msg ? c->err.msg : "failed");
	}
	return CLI_EXIT_FAIL;
}

int cli_next_opt(struct cli *c, int argc, char **argv, const struct option *opts, const char *usage, int *ret_exit)
{
	/* Short options: only -h; the leading ':' lets us tell a missing
	 * argument from an unknown option. */
	int o = getopt_long(argc, argv, ":h", opts, NULL);
	switch (o) {
	case -1:
		return OPT_END;
	case OPT_JSON:
		c->json = true;
		return cli_next_opt(c, argc, argv, opts, usage, ret_exit);
	case OPT_YES:
		c->yes = true;
		return cli_next_opt(c, argc, argv, opts, usage, ret_exit);
	case OPT_PROJECT:
		if (!*optarg) {
			*ret_exit = cli_usage_error(usage, "--project needs a project id or slug");
			return OPT_EXIT;
		}
		c->project = optarg;
		return cli_next_opt(c, argc, argv, opts, usage, ret_exit);
	case OPT_HELP:
		printf("usage: %s\n", usage);
		*ret_exit = CLI_EXIT_OK;
		return OPT_EXIT;
	case ':':
		*ret_exit = cli_usage_error(usage, "option '%s' needs a value", argv[optind - 1]);
		return OPT_EXIT;
	case '?':
		if (optopt)
			*ret_exit = cli_usage_error(usage, "unknown option '-%c'", optopt);
		else
			*ret_exit = cli_usage_error(usage, "unknown option '%s'", argv[optind - 1]);
		return OPT_EXIT;
	default:
		return o;
	}
}

int cli_plain_opts(struct cli *c, int argc, char **argv, const char *usage, int *ret_exit)
{
	static const struct option opts[] = {CLI_COMMON_OPTIONS, {0}};
	int o;
	while ((o = cli_next_opt(c, argc, argv, opts, usage, ret_exit)) != OPT_END)
		if (o == OPT_EXIT)
			return OPT_EXIT;
	return 0;
}

int cli_confirm(struct cli *c, const char *what)
{
	if (c->yes)
		return 0;
	_cleanup_free_ char *safe = cli_sanitize(what, 200, false);
	if (!isatty(STDIN_FILENO)) {
		fprintf(stderr, "zmesh: not deleting %s without a confirmation: pass --yes\n", safe ? safe : "it");
		return CLI_EXIT_USAGE;
	}
	fprintf(stderr, "Delete %s? This cannot be undone. [y/N] ", safe ? safe : "it");
	char line[16];
	if (tty_read_line(STDIN_FILENO, line, sizeof(line)) == 0 &&
	    (strcasecmp(line, "y") == 0 || strcasecmp(line, "yes") == 0))
		return 0;
	fprintf(stderr, "Not deleted.\n");
	return CLI_EXIT_FAIL;
}

void cli_print_json(json_t *j)
{
	_cleanup_free_ char *s = json_dumps_exact(j, JSON_ENCODE_ANY | JSON_INDENT(2));
	if (s)
		puts(s);
}

void cli_print_raw(const struct reply *r)
{
	fwrite(r->raw, 1, r->len, stdout);
	if (r->len == 0 || r->raw[r->len - 1] != '\n')
		putchar('\n');
}

int cli_save_config(struct cli *c)
{
	return config_save(c->config_path, c->config_default, &c->cfg, &c->err);
}

int cli_connect(struct cli *c, const char *base)
{
	if (c->http_ready) {
		client_done(&c->http);
		c->http_ready = false;
	}
	int r = client_init(&c->http, base, &c->err);
	if (r < 0)
		return r;
	c->http_ready = true;
	return 0;
}

int cli_call(struct cli *c, const char *method, const char *path, const json_t *body, long timeout_ms,
             bool accept_errors, struct reply *ret)
{
	return cli_call_with_headers(c, method, path, body, NULL, timeout_ms, accept_errors, ret);
}

int cli_call_with_headers(struct cli *c, const char *method, const char *path, const json_t *body,
                          const char *const *headers, long timeout_ms, bool accept_errors, struct reply *ret)
{
	int r;
	if (!c->cfg.url || !c->cfg.token)
		return zerr_set(&c->err, -ENOTCONN, "not logged in: run zmesh login --url URL --email EMAIL");
	if (!c->http_ready) {
		/* The saved URL is checked again: the file may have been edited. */
		_cleanup_free_ char *base = NULL;
		if ((r = client_check_url(c->cfg.url, &base, &c->err)) < 0 || (r = cli_connect(c, base)) < 0)
			return r;
	}
	c->http.token = c->cfg.token;
	c->http.timeout_ms = timeout_ms > 0 ? timeout_ms : CLIENT_TIMEOUT_MS;
	struct reply rep = {0};
	r = client_request(&c->http, method, path, body, headers, &rep, &c->err);
	if (r < 0)
		return r;
	if (!accept_errors && (rep.status < 200 || rep.status > 299)) {
		_cleanup_free_ char *line = reply_error_line(&rep);
		const char *hint = rep.status == 401 ? " (run zmesh login)" : "";
		r = zerr_set(&c->err, -EPROTO, "%s%s", line ? line : "request failed", hint);
		reply_done(&rep);
		return r;
	}
	*ret = rep;
	return 0;
}

char *cli_path(const char *const *segments)
{
	size_t len = 0, cap = 256;
	_cleanup_free_ char *out = malloc(cap);
	if (!out)
		return NULL;
	out[0] = '\0';
	for (const char *const *seg = segments; *seg; seg++) {
		_cleanup_free_ char *e = client_escape(*seg);
		if (!e)
			return NULL;
		size_t n = strlen(e);
		if (len + n + 2 > cap) {
			cap = 2 * (len + n + 2);
			char *p = realloc(out, cap);
			if (!p)
				return NULL;
			out = p;
		}
		out[len++] = '/';
		memcpy(out + len, e, n + 1);
		len += n;
	}
	return TAKE_PTR(out);
}

const char *cli_project(struct cli *c)
{
	/* Say the first thing to fix first. */
	if (!c->cfg.url || !c->cfg.token) {
		zerr_set(&c->err, -ENOTCONN, "not logged in: run zmesh login --url URL --email EMAIL");
		return NULL;
	}
	if (c->project)
		return c->project;
	if (c->cfg.project)
		return c->cfg.project;
	zerr_set(&c->err, -ENOENT, "no project chosen: run zmesh use PROJECT (or pass --project)");
	return NULL;
}

bool cli_is_uuid(const char *s)
{
	if (strlen(s) != 36)
		return false;
	for (int i = 0; i < 36; i++) {
		bool dash = i == 8 || i == 13 || i == 18 || i == 23;
		if (dash ? s[i] != '-' : !isxdigit((unsigned char)s[i]))
			return false;
	}
	return true;
}

void cli_slugify(const char *name, char *out, size_t size)
{
	size_t max = size - 1 < 63 ? size - 1 : 63, k = 0;
	bool gap = false;
	for (const char *p = name; *p && k < max; p++) {
		char ch = (char)tolower((unsigned char)*p);
		if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9'))) {
			gap = true;
			continue;
		}
		/* A dash only between two kept characters, and only if both fit. */
		if (gap && k > 0) {
			if (k + 2 > max)
				break;
			out[k++] = '-';
		}
		out[k++] = ch;
		gap = false;
	}
	out[k] = '\0';
}

char *cli_function_ref(const char *name)
{
	if (cli_is_uuid(name))
		return strdup(name);
	char slug[64];
	cli_slugify(name, slug, sizeof(slug));
	return *slug ? strdup(slug) : NULL;
}

bool cli_parse_int(const char *s, long long min, long long max, long long *ret)
{
	if (!*s || isspace((unsigned char)*s))
		return false;
	errno = 0;
	char *end;
	long long v = strtoll(s, &end, 10);
	if (errno || *end || v < min || v > max)
		return false;
	*ret = v;
	return true;
}

char *cli_error_line(json_t *e)
{
	const char *code = json_string_value(json_object_get(e, "code"));
	const char *name = json_string_value(json_object_get(e, "name"));
	const char *msg = json_string_value(json_object_get(e, "message"));
	char *line = NULL;
	if (asprintf(&line, "%s%s%s%s%s", code ? code : "", code && (name || msg) ? ": " : "", name ? name : "",
	             name && msg ? ": " : "", msg ? msg : "") < 0)
		return NULL;
	char *safe = cli_sanitize(line, 600, true);
	free(line);
	return safe;
}

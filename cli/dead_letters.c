/* dead_letters.c - zmesh dead-letters list|retry: queued runs that failed
 * every attempt, and running them again. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "table.h"

/* The most the server lists at once. */
#define LIST_MAX 100

static const char dead_letters_usage[] =
    "zmesh dead-letters list [--limit N] | zmesh dead-letters retry ID\n"
    "\n"
    "  A queued run (zmesh invoke --async, a trigger) that failed its first attempt and every retry\n"
    "  (the function's --retries, within --max-event-age) becomes a dead letter, newest first in\n"
    "  the list. retry queues its event again as a new invocation (zmesh logs FUNCTION shows it).";
static const char list_usage[] = "zmesh dead-letters list [--limit N]    (the newest N, 1 to 100; default 100)";
static const char retry_usage[] = "zmesh dead-letters retry ID    (ID from zmesh dead-letters list)";

static int dead_letters_list(struct cli *c, int argc, char **argv)
{
	enum { OPT_LIMIT = 1 };
	static const struct option opts[] = {
	    {"limit", required_argument, NULL, OPT_LIMIT},
	    CLI_COMMON_OPTIONS,
	    {0},
	};
	long long limit = 0;
	int o, rc;
	while ((o = cli_next_opt(c, argc, argv, opts, list_usage, &rc)) != OPT_END) {
		if (o == OPT_EXIT)
			return rc;
		if (!cli_parse_int(optarg, 1, LIST_MAX, &limit))
			return cli_usage_error(list_usage, "--limit must be a whole number from 1 to %d", LIST_MAX);
	}
	if (optind < argc)
		return cli_usage_error(list_usage, "unexpected argument '%s'", argv[optind]);
	const char *project = cli_project(c);
	if (!project)
		return cli_fail(c, NULL);
	_cleanup_free_ char *path = CLI_PATH("projects", project, "dead-letters");
	if (!path)
		return cli_fail(c, "out of memory");
	if (limit) {
		char *query;
		if (asprintf(&query, "%s?limit=%lld", path, limit) < 0)
			return cli_fail(c, "out of memory");
		free(path);
		path = query;
	}
	_cleanup_(reply_done) struct reply rep = {0};
	if (cli_call(c, "GET", path, NULL, 0, false, &rep) < 0)
		return cli_fail(c, NULL);
	json_t *list = json_object_get(rep.json, "dead_letters");
	if (!json_is_array(list))
		return cli_fail(c, "the server's answer has no dead letter list");
	if (c->json) {
		cli_print_raw(&rep);
		return CLI_EXIT_OK;
	}
	if (json_array_size(list) == 0) {
		printf("No dead letters: every queued run succeeded or is still being retried.\n");
		return CLI_EXIT_OK;
	}
	static const char *const header[] = {"ID",         "FUNCTION", "TRIGGER", "ATTEMPTS",
	                                     "LAST ERROR", "FAILED",   "RETRIED", NULL};
	_cleanup_(table_freep) struct table *t = table_new(header);
	int r = t ? 0 : -ENOMEM;
	size_t i;
	json_t *d;
	json_array_foreach (list, i, d) {
		char id[64], fn[128], trig[32], attempts[32], failed[64], retried[64];
		json_t *e = json_object_get(d, "last_error");
		_cleanup_free_ char *err = json_is_object(e) ? cli_error_line(e) : NULL;
		_cleanup_free_ char *short_err = err ? cli_sanitize(err, 80, false) : NULL;
		const char *cells[] = {
		    cell_json(json_object_get(d, "id"), id, sizeof(id)),
		    cell_json(json_object_get(d, "function"), fn, sizeof(fn)),
		    cell_json(json_object_get(d, "trigger"), trig, sizeof(trig)),
		    cell_json(json_object_get(d, "attempts"), attempts, sizeof(attempts)),
		    short_err,
		    cell_time(json_object_get(d, "failed_at"), failed, sizeof(failed)),
		    cell_time(json_object_get(d, "retried_at"), retried, sizeof(retried)),
		};
		if (r >= 0)
			r = table_add(t, cells);
	}
	if (r < 0)
		return cli_fail(c, "out of memory");
	table_print(t, stdout);
	return CLI_EXIT_OK;
}

static int dead_letters_retry(struct cli *c, int argc, char **argv)
{
	int rc;
	if (cli_plain_opts(c, argc, argv, retry_usage, &rc) == OPT_EXIT)
		return rc;
	if (argc - optind != 1)
		return cli_usage_error(retry_usage, "retry takes one dead letter ID");
	const char *id = argv[optind];
	if (!cli_is_uuid(id)) {
		_cleanup_free_ char *safe = cli_sanitize(id, 64, false);
		return cli_usage_error(retry_usage, "'%s' is not a dead letter ID (see zmesh dead-letters list)",
		                       safe ? safe : "");
	}
	const char *project = cli_project(c);
	if (!project)
		return cli_fail(c, NULL);
	_cleanup_free_ char *path = CLI_PATH("projects", project, "dead-letters", id, "retry");
	if (!path)
		return cli_fail(c, "out of memory");
	_cleanup_(reply_done) struct reply rep = {0};
	if (cli_call(c, "POST", path, NULL, 0, false, &rep) < 0)
		return cli_fail(c, NULL);
	const char *iid = json_string_value(json_object_get(rep.json, "invocation_id"));
	if (!iid)
		return cli_fail(c, "the server's answer has no invocation id");
	if (c->json) {
		cli_print_raw(&rep);
	} else {
		char st[32];
		_cleanup_free_ char *i = cli_sanitize(iid, 64, false);
		_cleanup_free_ char *s =
		    cli_sanitize(cell_json(json_object_get(rep.json, "status"), st, sizeof(st)), 32, false);
		printf("Dead letter %s is queued again as invocation %s (%s).\n", id, i ? i : "?", s ? s : "queued");
	}
	return CLI_EXIT_OK;
}

int cmd_dead_letters(struct cli *c, int argc, char **argv)
{
	if (argc < 2)
		return cli_usage_error(dead_letters_usage, "which dead-letters command?");
	const char *sub = argv[1];
	if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0) {
		printf("usage: %s\n", dead_letters_usage);
		return CLI_EXIT_OK;
	}
	optind = 0;
	if (strcmp(sub, "list") == 0)
		return dead_letters_list(c, argc - 1, argv + 1);
	if (strcmp(sub, "retry") == 0)
		return dead_letters_retry(c, argc - 1, argv + 1);
	return cli_usage_error(dead_letters_usage, "unknown dead-letters command '%s'", sub);
}

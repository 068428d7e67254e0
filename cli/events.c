/* events.c - zmesh events emit: a custom event for the current project,
 * which runs every enabled trigger "custom.TYPE" whose conditions hold. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "events.h"

static const char events_usage[] =
    "zmesh events emit TYPE [--data JSON]\n"
    "\n"
    "  A custom event of the current project: every enabled trigger whose event type is\n"
    "  custom.TYPE (zmesh triggers create --event custom.TYPE) and whose conditions hold runs its\n"
    "  function through the queue, with {trigger: \"event\", trigger_id, type, data, event_id,\n"
    "  timestamp, source}. Prints the event's id and how many triggers it matched.";
static const char emit_usage[] =
    "zmesh events emit TYPE [--data JSON]\n"
    "\n"
    "  TYPE     1 to 100 of a-z 0-9 . _ -, e.g. order.paid (runs triggers custom.order.paid)\n"
    "  --data   the event's data, any JSON (default null)";

/* What the server takes for a type, checked here too so that a typo is told
 * before anything is sent. */
static bool type_ok(const char *s)
{
	size_t n = strlen(s);
	return n >= 1 && n <= ZEV_EVENT_TYPE_MAX && strspn(s, ZEV_EVENT_TYPE_CHARS) == n &&
	       strncmp(s, ZEV_CUSTOM_PREFIX, strlen(ZEV_CUSTOM_PREFIX)) != 0;
}

static int events_emit(struct cli *c, int argc, char **argv)
{
	enum { OPT_DATA = 1 };
	static const struct option opts[] = {
	    {"data", required_argument, NULL, OPT_DATA},
	    CLI_COMMON_OPTIONS,
	    {0},
	};
	const char *data = NULL;
	int o, rc;
	while ((o = cli_next_opt(c, argc, argv, opts, emit_usage, &rc)) != OPT_END) {
		if (o == OPT_EXIT)
			return rc;
		data = optarg;
	}
	if (argc - optind != 1)
		return cli_usage_error(emit_usage, "emit takes one TYPE");
	const char *type = argv[optind];
	if (!type_ok(type)) {
		_cleanup_free_ char *safe = cli_sanitize(type, 120, false);
		return cli_usage_error(
		    emit_usage, "'%s' is not an event type: 1 to %d of a-z 0-9 . _ -%s", safe ? safe : "",
		    ZEV_EVENT_TYPE_MAX,
		    strncmp(type, ZEV_CUSTOM_PREFIX, strlen(ZEV_CUSTOM_PREFIX)) == 0 ? ", without \"custom.\"" : "");
	}
	json_error_t jerr;
	_cleanup_json_ json_t *payload =
	    data ? json_loads(data, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr) : json_null();
	if (!payload)
		return cli_usage_error(emit_usage, "--data is not JSON: %s (column %d)", jerr.text, jerr.column);
	const char *project = cli_project(c);
	if (!project)
		return cli_fail(c, NULL);
	_cleanup_free_ char *path = CLI_PATH("projects", project, "events");
	_cleanup_json_ json_t *body = json_pack("{s:s, s:O}", "type", type, "data", payload);
	if (!path || !body)
		return cli_fail(c, "out of memory");
	_cleanup_(reply_done) struct reply rep = {0};
	if (cli_call(c, "POST", path, body, 0, false, &rep) < 0)
		return cli_fail(c, NULL);
	const char *id = json_string_value(json_object_get(rep.json, "event_id"));
	json_t *matched = json_object_get(rep.json, "matched");
	if (!id || !json_is_integer(matched))
		return cli_fail(c, "the server's answer has no event id or match count");
	if (c->json) {
		cli_print_raw(&rep);
		return CLI_EXIT_OK;
	}
	_cleanup_free_ char *safe_id = cli_sanitize(id, 64, false);
	json_int_t n = json_integer_value(matched);
	printf("Event %s: matched %" JSON_INTEGER_FORMAT " trigger%s.\n", safe_id ? safe_id : "?", n,
	       n == 1 ? "" : "s");
	if (n == 0)
		fprintf(stderr, "No enabled trigger custom.%s had its conditions hold: nothing runs.\n", type);
	return CLI_EXIT_OK;
}

int cmd_events(struct cli *c, int argc, char **argv)
{
	if (argc < 2)
		return cli_usage_error(events_usage, "which events command?");
	const char *sub = argv[1];
	if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0) {
		printf("usage: %s\n", events_usage);
		return CLI_EXIT_OK;
	}
	optind = 0;
	if (strcmp(sub, "emit") == 0)
		return events_emit(c, argc - 1, argv + 1);
	return cli_usage_error(events_usage, "unknown events command '%s'", sub);
}

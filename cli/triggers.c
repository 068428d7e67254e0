/* triggers.c - zmesh triggers list|get|create|delete|enable|disable|rotate-secret:
 * what runs a function besides a call, cron schedules, signed webhooks and
 * custom events. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "table.h"

static const char triggers_usage[] =
    "zmesh triggers list | create --function NAME (--cron SCHEDULE | --webhook VERIFY | --event TYPE) [OPTIONS]\n"
    "       | get ID | delete ID | enable ID | disable ID | rotate-secret ID\n"
    "\n"
    "  A trigger runs a function of the current project on a schedule (--cron), when a signed\n"
    "  HTTP request arrives at its URL (--webhook) or when a custom event of its type is emitted\n"
    "  (--event; zmesh events emit), through the queue: failed runs are retried as\n"
    "  the function's --retries say (zmesh functions deploy --help), then become dead letters.\n"
    "  zmesh triggers create --help lists the options; ID is a trigger's id (zmesh triggers list).";
static const char create_usage[] =
    "zmesh triggers create --function NAME --cron SCHEDULE [--timezone TZ] [--payload JSON]\n"
    "                      [--catch-up skip|latest|all] [--overlap allow|skip] [COMMON]\n"
    "       zmesh triggers create --function NAME --webhook standard|stripe|github|hmac|none\n"
    "                      [--secret SECRET] [--header NAME] [--prefix PREFIX] [--encoding hex|base64]\n"
    "                      [--id-header NAME] [--respond async|sync] [COMMON]\n"
    "       zmesh triggers create --function NAME --event custom.TYPE | cdc.OP.TABLE [COMMON]\n"
    "  COMMON: [--where 'FIELD OP VALUE']... [--conditions JSON] [--disabled]\n"
    "\n"
    "  --cron SCHEDULE    5 fields (minute hour day-of-month month day-of-week), or 6 with seconds\n"
    "                     first, or @hourly @daily @weekly @monthly @yearly, e.g. \"*/5 * * * *\"\n"
    "  --timezone TZ      an IANA time zone (default UTC), e.g. Europe/Paris\n"
    "  --payload JSON     the event's payload (default null)\n"
    "  --catch-up         ticks missed while no node ran: skip them (default), run the latest once,\n"
    "                     or run all of the last 24 h\n"
    "  --overlap          allow (default) a tick while the previous one still runs, or skip it\n"
    "  --webhook VERIFY   how a request is authenticated: standard (Standard Webhooks), stripe,\n"
    "                     github (X-Hub-Signature-256), hmac (HMAC-SHA256 of the body in --header,\n"
    "                     after --prefix, in --encoding hex or base64) or none (anyone may call it)\n"
    "  --secret SECRET    the signing secret; without it the server makes one. It is shown once.\n"
    "  --id-header NAME   stripe, hmac: the header carrying a delivery id (replays run nothing)\n"
    "  --respond          async (default): answer 202 once queued; sync: the function's result\n"
    "                     is the HTTP answer ({statusCode, headers, body} sets them)\n"
    "  --event EVENT_TYPE custom.TYPE, e.g. custom.order.paid: runs on every custom event of that\n"
    "                     TYPE (zmesh events emit order.paid); TYPE is 1 to 100 of a-z 0-9 . _ -;\n"
    "                     or cdc.OP.TABLE, e.g. cdc.INSERT.orders: runs on every committed change of\n"
    "                     that table of the project's database (OP INSERT, UPDATE, DELETE or *;\n"
    "                     TABLE or SCHEMA.TABLE)\n"
    "  --where, --condition\n"
    "                     run only when FIELD (a dotted path into the event, e.g. new.amount)\n"
    "                     compares to VALUE by OP: eq neq gt gte lt lte contains in (or = != > >= < <=).\n"
    "                     VALUE is JSON when it parses (100, true, [\"eur\",\"usd\"], \"\\\"100\\\"\"), else a\n"
    "                     string. Repeat it: all must hold.\n"
    "  --conditions JSON  the same as an array: [{\"field\": \"body.amount\", \"op\": \"gt\", \"value\": 100}]\n"
    "  --disabled         create it switched off (zmesh triggers enable ID)";
static const char list_usage[] = "zmesh triggers list";
static const char get_usage[] = "zmesh triggers get ID";
static const char delete_usage[] = "zmesh triggers delete ID [--yes]";
static const char enable_usage[] = "zmesh triggers enable ID";
static const char disable_usage[] = "zmesh triggers disable ID";
static const char rotate_usage[] = "zmesh triggers rotate-secret ID\n"
                                   "\n"
                                   "  A new signing secret for a webhook trigger, shown once; the previous one\n"
                                   "  stays valid for 24 h, time to update the sender.";

static bool one_of(const char *s, const char *const *allowed)
{
	for (; *allowed; allowed++)
		if (strcmp(s, *allowed) == 0)
			return true;
	return false;
}

/* An HTTP header name: RFC 9110 token characters. */
static bool header_name_ok(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
		      strchr("!#$%&'*+-.^_`|~", *s)))
			return false;
	return true;
}

/* The shape of a schedule: the server parses it, but a missing field or a
 * quoting slip (one word where five were meant) is told here, early. */
static bool schedule_shape_ok(const char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	if (*s == '@')
		return true;
	int fields = 0;
	bool in_field = false;
	for (; *s; s++) {
		bool space = *s == ' ' || *s == '\t';
		if (!space && !in_field)
			fields++;
		in_field = !space;
	}
	return fields == 5 || fields == 6;
}

/* The ops of a condition, and the symbols people type for them. */
static const char *condition_op(const char *op)
{
	static const char *const ops[] = {"eq", "neq", "gt", "gte", "lt", "lte", "contains", "in", NULL};
	static const struct {
		const char *sym, *op;
	} syms[] = {{"=", "eq"}, {"==", "eq"}, {"!=", "neq"}, {">", "gt"}, {">=", "gte"}, {"<", "lt"}, {"<=", "lte"}};
	if (one_of(op, ops))
		return op;
	for (size_t i = 0; i < ELEMENTSOF(syms); i++)
		if (strcmp(op, syms[i].sym) == 0)
			return syms[i].op;
	return NULL;
}

/* "FIELD OP VALUE" as a condition object, appended to conds. Returns 0, or
 * a usage error's exit status. */
static int add_condition(json_t *conds, const char *text)
{
	const char *p = text;
	while (*p == ' ' || *p == '\t')
		p++;
	const char *field = p;
	while (*p && *p != ' ' && *p != '\t')
		p++;
	_cleanup_free_ char *f = strndup(field, (size_t)(p - field));
	while (*p == ' ' || *p == '\t')
		p++;
	const char *opstart = p;
	while (*p && *p != ' ' && *p != '\t')
		p++;
	_cleanup_free_ char *o = strndup(opstart, (size_t)(p - opstart));
	while (*p == ' ' || *p == '\t')
		p++;
	_cleanup_free_ char *value = strdup(p);
	if (!f || !o || !value)
		return cli_usage_error(create_usage, "out of memory");
	size_t n = strlen(value);
	while (n > 0 && (value[n - 1] == ' ' || value[n - 1] == '\t'))
		value[--n] = '\0';
	if (!*f || !*o || !*value)
		return cli_usage_error(create_usage, "--condition '%s': give FIELD OP VALUE, e.g. 'body.amount gt 100'",
		                       text);
	const char *op = condition_op(o);
	if (!op)
		return cli_usage_error(create_usage,
		                       "--condition '%s': unknown op '%s' (eq neq gt gte lt lte contains in, "
		                       "or = != > >= < <=)",
		                       text, o);
	json_t *v = json_loads(value, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, NULL);
	if (!v)
		v = json_string(value);
	if (!v)
		return cli_usage_error(create_usage, "--condition '%s': not valid UTF-8", text);
	if (strcmp(op, "in") == 0 && !json_is_array(v)) {
		json_decref(v);
		return cli_usage_error(create_usage,
		                       "--condition '%s': in takes a JSON array, e.g. 'body.currency in "
		                       "[\"eur\",\"usd\"]'",
		                       text);
	}
	json_t *cond = json_pack("{s:s, s:s, s:o}", "field", f, "op", op, "value", v);
	if (!cond)
		return cli_usage_error(create_usage, "--condition '%s': the field must be valid UTF-8", text);
	json_array_append_new(conds, cond);
	return 0;
}

/* "/projects/{pid}/triggers[/{tid}[/suffix]]" for the trigger ID given as
 * the command's one operand (tid NULL: the collection). NULL with the exit
 * status in *ret_exit. */
static char *trigger_path(struct cli *c, const char *tid, const char *suffix, int *ret_exit)
{
	const char *project = cli_project(c);
	if (!project) {
		*ret_exit = cli_fail(c, NULL);
		return NULL;
	}
	char *path = CLI_PATH("projects", project, "triggers", tid, suffix);
	if (!path)
		*ret_exit = cli_fail(c, "out of memory");
	return path;
}

/* The one ID operand of get, delete, enable, disable and rotate-secret. */
static const char *id_operand(int argc, char **argv, const char *usage, const char *verb, int *ret_exit)
{
	if (argc - optind != 1) {
		*ret_exit = cli_usage_error(usage, "%s takes one trigger ID (see zmesh triggers list)", verb);
		return NULL;
	}
	const char *id = argv[optind];
	if (!cli_is_uuid(id)) {
		_cleanup_free_ char *safe = cli_sanitize(id, 64, false);
		*ret_exit =
		    cli_usage_error(usage, "'%s' is not a trigger ID (see zmesh triggers list)", safe ? safe : "");
		return NULL;
	}
	return id;
}

/* A compact line for a JSON value (a payload, a condition's value). */
static char *compact(json_t *v, size_t max)
{
	_cleanup_free_ char *s = json_dumps_exact(v, JSON_ENCODE_ANY | JSON_COMPACT);
	return s ? cli_sanitize(s, max, false) : NULL;
}

/* Conditions for people: "body.amount gt 100 and body.currency eq "eur"". */
static char *conditions_text(json_t *conds)
{
	if (!json_is_array(conds) || json_array_size(conds) == 0)
		return strdup("-");
	_cleanup_free_ char *out = strdup("");
	size_t i;
	json_t *cond;
	json_array_foreach (conds, i, cond) {
		const char *field = json_string_value(json_object_get(cond, "field"));
		const char *op = json_string_value(json_object_get(cond, "op"));
		_cleanup_free_ char *v = compact(json_object_get(cond, "value"), 200);
		char *next = NULL;
		if (!out || asprintf(&next, "%s%s%s %s %s", out, i ? " and " : "", field ? field : "?", op ? op : "?",
		                     v ? v : "?") < 0)
			return NULL;
		free(out);
		out = next;
	}
	return TAKE_PTR(out);
}

/* What a trigger listens to, in one cell: the schedule and its time zone, or
 * the webhook's verification scheme. */
static void trigger_when(json_t *t, char *buf, size_t size)
{
	const char *type = json_string_value(json_object_get(t, "event_type"));
	json_t *config = json_object_get(t, "config");
	const char *schedule = json_string_value(json_object_get(config, "schedule"));
	const char *tz = json_string_value(json_object_get(config, "timezone"));
	const char *verify = json_string_value(json_object_get(config, "verify"));
	if (type && strcmp(type, "cron") == 0 && schedule)
		snprintf(buf, size, "%s (%s)", schedule, tz ? tz : "UTC");
	else if (type && strcmp(type, "webhook") == 0 && verify)
		snprintf(buf, size, "verify %s", verify);
	else if (type && strncmp(type, "custom.", 7) == 0)
		snprintf(buf, size, "emit %s", type + 7);
	else if (type && strncmp(type, "cdc.", 4) == 0)
		snprintf(buf, size, "change %s", type + 4);
	else
		snprintf(buf, size, "-");
}

/* The webhook's full URL: the server gives a path on itself. */
static char *webhook_url(struct cli *c, json_t *t)
{
	const char *url = json_string_value(json_object_get(t, "url"));
	if (!url)
		return NULL;
	_cleanup_free_ char *full = NULL;
	if (url[0] == '/' && c->cfg.url) {
		if (asprintf(&full, "%s%s", c->cfg.url, url) < 0)
			return NULL;
	} else if (!(full = strdup(url))) {
		return NULL;
	}
	return cli_sanitize(full, 1024, false);
}

static void print_field(const char *label, const char *value)
{
	_cleanup_free_ char *safe = cli_sanitize(value ? value : "-", 2048, false);
	printf("  %-12s %s\n", label, safe ? safe : "?");
}

/* A trigger in full, one field a line. */
static void print_trigger(struct cli *c, json_t *t)
{
	char buf[256];
	json_t *config = json_object_get(t, "config");
	const char *type = json_string_value(json_object_get(t, "event_type"));
	print_field("id", cell_json(json_object_get(t, "id"), buf, sizeof(buf)));
	print_field("function", cell_json(json_object_get(t, "function"), buf, sizeof(buf)));
	print_field("type", type);
	if (type && strcmp(type, "cron") == 0) {
		print_field("schedule", cell_json(json_object_get(config, "schedule"), buf, sizeof(buf)));
		print_field("timezone", cell_json(json_object_get(config, "timezone"), buf, sizeof(buf)));
		print_field("catch-up", cell_json(json_object_get(config, "catch_up"), buf, sizeof(buf)));
		print_field("overlap", cell_json(json_object_get(config, "overlap"), buf, sizeof(buf)));
		_cleanup_free_ char *payload = compact(json_object_get(config, "payload"), 1024);
		print_field("payload", payload ? payload : "null");
	} else if (type && strcmp(type, "webhook") == 0) {
		_cleanup_free_ char *url = webhook_url(c, t);
		print_field("url", url);
		print_field("verify", cell_json(json_object_get(config, "verify"), buf, sizeof(buf)));
		static const char *const keys[] = {"header", "prefix", "encoding", "id_header", NULL};
		for (const char *const *k = keys; *k; k++)
			if (json_object_get(config, *k))
				print_field(*k, cell_json(json_object_get(config, *k), buf, sizeof(buf)));
		print_field("respond", cell_json(json_object_get(config, "respond"), buf, sizeof(buf)));
	} else {
		_cleanup_free_ char *cfg = compact(config, 1024);
		print_field("config", cfg);
	}
	_cleanup_free_ char *conds = conditions_text(json_object_get(t, "conditions"));
	print_field("conditions", conds);
	print_field("enabled", cell_json(json_object_get(t, "enabled"), buf, sizeof(buf)));
	print_field("created", cell_time(json_object_get(t, "created_at"), buf, sizeof(buf)));
	print_field("updated", cell_time(json_object_get(t, "updated_at"), buf, sizeof(buf)));
}

static int triggers_list(struct cli *c, int argc, char **argv)
{
	int rc;
	if (cli_plain_opts(c, argc, argv, list_usage, &rc) == OPT_EXIT)
		return rc;
	if (optind < argc)
		return cli_usage_error(list_usage, "unexpected argument '%s'", argv[optind]);
	_cleanup_free_ char *path = trigger_path(c, NULL, NULL, &rc);
	if (!path)
		return rc;
	_cleanup_(reply_done) struct reply rep = {0};
	if (cli_call(c, "GET", path, NULL, 0, false, &rep) < 0)
		return cli_fail(c, NULL);
	json_t *list = json_object_get(rep.json, "triggers");
	if (!json_is_array(list))
		return cli_fail(c, "the server's answer has no trigger list");
	if (c->json) {
		cli_print_raw(&rep);
		return CLI_EXIT_OK;
	}
	if (json_array_size(list) == 0) {
		printf("No triggers yet: zmesh triggers create --function NAME --cron SCHEDULE | --webhook VERIFY | "
		       "--event custom.TYPE | cdc.OP.TABLE\n");
		return CLI_EXIT_OK;
	}
	static const char *const header[] = {"ID",         "FUNCTION", "TYPE",    "WHEN",
	                                     "CONDITIONS", "ENABLED",  "CREATED", NULL};
	_cleanup_(table_freep) struct table *t = table_new(header);
	int r = t ? 0 : -ENOMEM;
	size_t i;
	json_t *tr;
	json_array_foreach (list, i, tr) {
		char id[64], fn[128], type[160], when[256], enabled[8], created[64];
		trigger_when(tr, when, sizeof(when));
		_cleanup_free_ char *conds = conditions_text(json_object_get(tr, "conditions"));
		const char *cells[] = {
		    cell_json(json_object_get(tr, "id"), id, sizeof(id)),
		    cell_json(json_object_get(tr, "function"), fn, sizeof(fn)),
		    cell_json(json_object_get(tr, "event_type"), type, sizeof(type)),
		    when,
		    conds,
		    cell_json(json_object_get(tr, "enabled"), enabled, sizeof(enabled)),
		    cell_time(json_object_get(tr, "created_at"), created, sizeof(created)),
		};
		if (r >= 0)
			r = conds ? table_add(t, cells) : -ENOMEM;
	}
	if (r < 0)
		return cli_fail(c, "out of memory");
	table_print(t, stdout);
	return CLI_EXIT_OK;
}

/* The options of create, as given. */
struct create_args {
	const char *function, *cron, *webhook, *event;
	const char *timezone, *catch_up, *overlap;
	json_t *payload; /* owned */
	const char *secret, *header, *prefix, *encoding, *id_header, *respond;
	json_t *conditions; /* owned; NULL when none was given */
	bool disabled;
	const char *cron_only, *webhook_only; /* the first such option given */
};

static void create_args_done(struct create_args *a)
{
	json_decref(a->payload);
	json_decref(a->conditions);
}

/* Everything create can check without the server: the exit status of a
 * usage error, or 0. */
static int create_check(const struct create_args *a)
{
	static const char *const verifies[] = {"standard", "stripe", "github", "hmac", "none", NULL};
	if (!a->function)
		return cli_usage_error(create_usage, "a trigger needs --function NAME");
	if (!!a->cron + !!a->webhook + !!a->event > 1)
		return cli_usage_error(create_usage, "--cron, --webhook, --event: a trigger is one of them");
	if (!a->cron && !a->webhook && !a->event)
		return cli_usage_error(create_usage,
		                       "a trigger needs --cron SCHEDULE, --webhook VERIFY or --event TYPE");
	if (a->event) {
		if (a->cron_only || a->webhook_only)
			return cli_usage_error(create_usage, "--%s does not go with --event",
			                       a->cron_only ? a->cron_only : a->webhook_only);
		if ((strncmp(a->event, "custom.", 7) != 0 || !a->event[7]) &&
		    (strncmp(a->event, "cdc.", 4) != 0 || !a->event[4]))
			return cli_usage_error(
			    create_usage,
			    "--event '%s': want custom.TYPE (e.g. custom.order.paid) or cdc.OP.TABLE "
			    "(e.g. cdc.INSERT.orders)",
			    a->event);
		return 0;
	}
	if (a->cron) {
		if (a->webhook_only)
			return cli_usage_error(create_usage, "--%s goes with --webhook, not --cron", a->webhook_only);
		if (!schedule_shape_ok(a->cron))
			return cli_usage_error(create_usage,
			                       "--cron '%s': a schedule has 5 fields (minute hour day-of-month "
			                       "month day-of-week), 6 with seconds first, or is @hourly, @daily, ...",
			                       a->cron);
		if (a->timezone && !*a->timezone)
			return cli_usage_error(create_usage, "--timezone needs an IANA time zone, e.g. Europe/Paris");
		return 0;
	}
	if (a->cron_only)
		return cli_usage_error(create_usage, "--%s goes with --cron, not --webhook", a->cron_only);
	if (!one_of(a->webhook, verifies))
		return cli_usage_error(create_usage, "--webhook is standard, stripe, github, hmac or none");
	bool hmac = strcmp(a->webhook, "hmac") == 0;
	if (strcmp(a->webhook, "none") == 0 && a->secret)
		return cli_usage_error(create_usage, "--webhook none checks no signature: it takes no --secret");
	if (a->secret && !*a->secret)
		return cli_usage_error(create_usage, "--secret must not be empty (leave it out to get one made)");
	if (!hmac && (a->header || a->prefix || a->encoding))
		return cli_usage_error(create_usage, "--%s goes with --webhook hmac",
		                       a->header   ? "header"
		                       : a->prefix ? "prefix"
		                                   : "encoding");
	if (hmac && !a->header)
		return cli_usage_error(create_usage, "--webhook hmac needs --header NAME (where the signature comes)");
	if (a->header && !header_name_ok(a->header))
		return cli_usage_error(create_usage, "--header '%s' is not an HTTP header name", a->header);
	if (a->id_header && strcmp(a->webhook, "stripe") != 0 && !hmac)
		return cli_usage_error(create_usage, "--id-header goes with --webhook stripe or hmac");
	if (a->id_header && !header_name_ok(a->id_header))
		return cli_usage_error(create_usage, "--id-header '%s' is not an HTTP header name", a->id_header);
	return 0;
}

/* The body of POST /projects/{pid}/triggers. NULL when a value is not
 * UTF-8 (the options were checked) or on ENOMEM. */
static json_t *create_body(const struct create_args *a, const char *function_id)
{
	_cleanup_json_ json_t *config = json_object();
	if (!config)
		return NULL;
	int r = 0;
#define PUT_STR(key, v)                                                       \
	do {                                                                  \
		if ((v) && r == 0)                                            \
			r = json_object_set_new(config, key, json_string(v)); \
	} while (0)
	if (a->event) {
		/* A custom trigger has no settings: config stays {}. */
	} else if (a->cron) {
		PUT_STR("schedule", a->cron);
		PUT_STR("timezone", a->timezone);
		if (a->payload && r == 0)
			r = json_object_set(config, "payload", a->payload);
		PUT_STR("catch_up", a->catch_up);
		PUT_STR("overlap", a->overlap);
	} else {
		PUT_STR("verify", a->webhook);
		PUT_STR("secret", a->secret);
		PUT_STR("header", a->header);
		PUT_STR("prefix", a->prefix);
		PUT_STR("encoding", a->encoding);
		PUT_STR("id_header", a->id_header);
		PUT_STR("respond", a->respond);
	}
#undef PUT_STR
	if (r < 0)
		return NULL;
	_cleanup_json_ json_t *body = json_pack("{s:s, s:s, s:O}", "event_type",
	                                        a->event  ? a->event
	                                        : a->cron ? "cron"
	                                                  : "webhook",
	                                        "function_id", function_id, "config", config);
	if (!body)
		return NULL;
	if (a->conditions && json_object_set(body, "conditions", a->conditions) < 0)
		return NULL;
	if (a->disabled && json_object_set_new(body, "enabled", json_false()) < 0)
		return NULL;
	return TAKE_PTR(body);
}

static int triggers_create(struct cli *c, int argc, char **argv)
{
	enum {
		OPT_FUNCTION = 1,
		OPT_CRON,
		OPT_TIMEZONE,
		OPT_PAYLOAD,
		OPT_CATCH_UP,
		OPT_OVERLAP,
		OPT_WEBHOOK,
		OPT_SECRET,
		OPT_HEADER,
		OPT_PREFIX,
		OPT_ENCODING,
		OPT_ID_HEADER,
		OPT_RESPOND,
		OPT_CONDITION,
		OPT_CONDITIONS,
		OPT_DISABLED,
		OPT_EVENT,
	};
	static const struct option opts[] = {
	    {"function", required_argument, NULL, OPT_FUNCTION},
	    {"cron", required_argument, NULL, OPT_CRON},
	    {"timezone", required_argument, NULL, OPT_TIMEZONE},
	    {"payload", required_argument, NULL, OPT_PAYLOAD},
	    {"catch-up", required_argument, NULL, OPT_CATCH_UP},
	    {"overlap", required_argument, NULL, OPT_OVERLAP},
	    {"webhook", required_argument, NULL, OPT_WEBHOOK},
	    {"secret", required_argument, NULL, OPT_SECRET},
	    {"header", required_argument, NULL, OPT_HEADER},
	    {"prefix", required_argument, NULL, OPT_PREFIX},
	    {"encoding", required_argument, NULL, OPT_ENCODING},
	    {"id-header", required_argument, NULL, OPT_ID_HEADER},
	    {"respond", required_argument, NULL, OPT_RESPOND},
	    {"condition", required_argument, NULL, OPT_CONDITION},
	    {"where", required_argument, NULL, OPT_CONDITION},
	    {"conditions", required_argument, NULL, OPT_CONDITIONS},
	    {"disabled", no_argument, NULL, OPT_DISABLED},
	    {"event", required_argument, NULL, OPT_EVENT},
	    CLI_COMMON_OPTIONS,
	    {0},
	};
	static const char *const catch_ups[] = {"skip", "latest", "all", NULL};
	static const char *const overlaps[] = {"allow", "skip", NULL};
	static const char *const encodings[] = {"hex", "base64", NULL};
	static const char *const responds[] = {"async", "sync", NULL};
	_cleanup_(create_args_done) struct create_args a = {0};
	json_error_t jerr;
	int o, rc;
	while ((o = cli_next_opt(c, argc, argv, opts, create_usage, &rc)) != OPT_END) {
		switch (o) {
		case OPT_EXIT:
			return rc;
		case OPT_FUNCTION:
			a.function = optarg;
			break;
		case OPT_CRON:
			a.cron = optarg;
			break;
		case OPT_WEBHOOK:
			a.webhook = optarg;
			break;
		case OPT_EVENT:
			a.event = optarg;
			break;
		case OPT_TIMEZONE:
			a.timezone = optarg;
			a.cron_only = a.cron_only ? a.cron_only : "timezone";
			break;
		case OPT_PAYLOAD:
			json_decref(a.payload);
			if (!(a.payload = json_loads(optarg, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr)))
				return cli_usage_error(create_usage, "--payload is not JSON: %s (column %d)", jerr.text,
				                       jerr.column);
			a.cron_only = a.cron_only ? a.cron_only : "payload";
			break;
		case OPT_CATCH_UP:
			if (!one_of(optarg, catch_ups))
				return cli_usage_error(create_usage, "--catch-up is skip, latest or all");
			a.catch_up = optarg;
			a.cron_only = a.cron_only ? a.cron_only : "catch-up";
			break;
		case OPT_OVERLAP:
			if (!one_of(optarg, overlaps))
				return cli_usage_error(create_usage, "--overlap is allow or skip");
			a.overlap = optarg;
			a.cron_only = a.cron_only ? a.cron_only : "overlap";
			break;
		case OPT_SECRET:
			a.secret = optarg;
			a.webhook_only = a.webhook_only ? a.webhook_only : "secret";
			break;
		case OPT_HEADER:
			a.header = optarg;
			a.webhook_only = a.webhook_only ? a.webhook_only : "header";
			break;
		case OPT_PREFIX:
			a.prefix = optarg;
			a.webhook_only = a.webhook_only ? a.webhook_only : "prefix";
			break;
		case OPT_ENCODING:
			if (!one_of(optarg, encodings))
				return cli_usage_error(create_usage, "--encoding is hex or base64");
			a.encoding = optarg;
			a.webhook_only = a.webhook_only ? a.webhook_only : "encoding";
			break;
		case OPT_ID_HEADER:
			a.id_header = optarg;
			a.webhook_only = a.webhook_only ? a.webhook_only : "id-header";
			break;
		case OPT_RESPOND:
			if (!one_of(optarg, responds))
				return cli_usage_error(create_usage, "--respond is async or sync");
			a.respond = optarg;
			a.webhook_only = a.webhook_only ? a.webhook_only : "respond";
			break;
		case OPT_CONDITION:
			if (!a.conditions && !(a.conditions = json_array()))
				return cli_fail(c, "out of memory");
			if ((rc = add_condition(a.conditions, optarg)))
				return rc;
			break;
		case OPT_CONDITIONS: {
			_cleanup_json_ json_t *list = json_loads(optarg, JSON_REJECT_DUPLICATES, &jerr);
			if (!list)
				return cli_usage_error(create_usage, "--conditions is not JSON: %s (column %d)",
				                       jerr.text, jerr.column);
			if (!json_is_array(list))
				return cli_usage_error(
				    create_usage, "--conditions takes a JSON array of {\"field\", \"op\", \"value\"}");
			if (!a.conditions && !(a.conditions = json_array()))
				return cli_fail(c, "out of memory");
			json_array_extend(a.conditions, list);
			break;
		}
		case OPT_DISABLED:
			a.disabled = true;
			break;
		}
	}
	if (optind < argc)
		return cli_usage_error(create_usage, "unexpected argument '%s' (options only)", argv[optind]);
	if ((rc = create_check(&a)))
		return rc;
	_cleanup_free_ char *fid = cli_function_ref(a.function);
	if (!fid)
		return cli_usage_error(create_usage, "'%s' cannot name a function: use its slug or id", a.function);
	_cleanup_json_ json_t *body = create_body(&a, fid);
	if (!body)
		return cli_usage_error(create_usage, "every option's value must be valid UTF-8");
	_cleanup_free_ char *path = trigger_path(c, NULL, NULL, &rc);
	if (!path)
		return rc;

	_cleanup_(reply_done) struct reply rep = {0};
	if (cli_call(c, "POST", path, body, 0, false, &rep) < 0)
		return cli_fail(c, NULL);
	if (c->json) {
		cli_print_raw(&rep);
	} else {
		printf("Created a %s trigger:\n", !a.event                           ? (a.cron ? "cron" : "webhook")
		                                  : strncmp(a.event, "cdc.", 4) == 0 ? "database change"
		                                                                     : "custom event");
		print_trigger(c, rep.json);
	}
	const char *secret = json_string_value(json_object_get(rep.json, "secret"));
	if (secret) {
		if (!c->json)
			print_field("secret", secret);
		fprintf(stderr, "The secret is shown once: keep it now (zmesh triggers rotate-secret ID makes a new "
		                "one).\n");
	}
	if (!c->json && a.webhook)
		fprintf(stderr, "Senders POST to the url%s.\n",
		        strcmp(a.webhook, "none") == 0 ? "; anyone who knows it can run the function"
		                                       : ", signed with the secret");
	return CLI_EXIT_OK;
}

static int triggers_get(struct cli *c, int argc, char **argv)
{
	int rc;
	if (cli_plain_opts(c, argc, argv, get_usage, &rc) == OPT_EXIT)
		return rc;
	const char *id = id_operand(argc, argv, get_usage, "get", &rc);
	if (!id)
		return rc;
	_cleanup_free_ char *path = trigger_path(c, id, NULL, &rc);
	if (!path)
		return rc;
	_cleanup_(reply_done) struct reply rep = {0};
	if (cli_call(c, "GET", path, NULL, 0, false, &rep) < 0)
		return cli_fail(c, NULL);
	if (c->json)
		cli_print_raw(&rep);
	else
		print_trigger(c, rep.json);
	return CLI_EXIT_OK;
}

static int triggers_delete(struct cli *c, int argc, char **argv)
{
	int rc;
	if (cli_plain_opts(c, argc, argv, delete_usage, &rc) == OPT_EXIT)
		return rc;
	const char *id = id_operand(argc, argv, delete_usage, "delete", &rc);
	if (!id)
		return rc;
	_cleanup_free_ char *path = trigger_path(c, id, NULL, &rc);
	if (!path)
		return rc;
	char what[64];
	snprintf(what, sizeof(what), "trigger %s", id);
	if ((rc = cli_confirm(c, what)) != 0)
		return rc;
	_cleanup_(reply_done) struct reply rep = {0};
	if (cli_call(c, "DELETE", path, NULL, 0, false, &rep) < 0)
		return cli_fail(c, NULL);
	if (c->json)
		cli_print_raw(&rep);
	else
		printf("Deleted trigger %s.\n", id);
	return CLI_EXIT_OK;
}

static int set_enabled(struct cli *c, int argc, char **argv, bool enabled)
{
	const char *usage = enabled ? enable_usage : disable_usage;
	int rc;
	if (cli_plain_opts(c, argc, argv, usage, &rc) == OPT_EXIT)
		return rc;
	const char *id = id_operand(argc, argv, usage, enabled ? "enable" : "disable", &rc);
	if (!id)
		return rc;
	_cleanup_free_ char *path = trigger_path(c, id, NULL, &rc);
	if (!path)
		return rc;
	_cleanup_json_ json_t *body = json_pack("{s:b}", "enabled", enabled);
	if (!body)
		return cli_fail(c, "out of memory");
	_cleanup_(reply_done) struct reply rep = {0};
	if (cli_call(c, "PATCH", path, body, 0, false, &rep) < 0)
		return cli_fail(c, NULL);
	if (c->json)
		cli_print_raw(&rep);
	else
		printf("Trigger %s is %s.\n", id, enabled ? "enabled" : "disabled: it runs nothing until enabled");
	return CLI_EXIT_OK;
}

static int triggers_enable(struct cli *c, int argc, char **argv)
{
	return set_enabled(c, argc, argv, true);
}

static int triggers_disable(struct cli *c, int argc, char **argv)
{
	return set_enabled(c, argc, argv, false);
}

static int triggers_rotate(struct cli *c, int argc, char **argv)
{
	int rc;
	if (cli_plain_opts(c, argc, argv, rotate_usage, &rc) == OPT_EXIT)
		return rc;
	const char *id = id_operand(argc, argv, rotate_usage, "rotate-secret", &rc);
	if (!id)
		return rc;
	_cleanup_free_ char *path = trigger_path(c, id, "rotate-secret", &rc);
	if (!path)
		return rc;
	_cleanup_(reply_done) struct reply rep = {0};
	if (cli_call(c, "POST", path, NULL, 0, false, &rep) < 0)
		return cli_fail(c, NULL);
	const char *secret = json_string_value(json_object_get(rep.json, "secret"));
	if (!secret)
		return cli_fail(c, "the server's answer has no secret");
	if (c->json) {
		cli_print_raw(&rep);
	} else {
		_cleanup_free_ char *s = cli_sanitize(secret, 512, false);
		printf("%s\n", s ? s : "?");
	}
	char until[64];
	cell_time(json_object_get(rep.json, "previous_secret_expires_at"), until, sizeof(until));
	_cleanup_free_ char *u = cli_sanitize(until, 64, false);
	fprintf(stderr,
	        "This secret is shown once: keep it now. The previous one stays valid until %s UTC; "
	        "update the sender before then.\n",
	        u ? u : "-");
	return CLI_EXIT_OK;
}

int cmd_triggers(struct cli *c, int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*fn)(struct cli *, int, char **);
	} subs[] = {
	    {"list", triggers_list},
	    {"create", triggers_create},
	    {"get", triggers_get},
	    {"delete", triggers_delete},
	    {"enable", triggers_enable},
	    {"disable", triggers_disable},
	    {"rotate-secret", triggers_rotate},
	};
	if (argc < 2)
		return cli_usage_error(triggers_usage, "which triggers command?");
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		printf("usage: %s\n", triggers_usage);
		return CLI_EXIT_OK;
	}
	for (size_t i = 0; i < ELEMENTSOF(subs); i++)
		if (strcmp(argv[1], subs[i].name) == 0) {
			optind = 0;
			return subs[i].fn(c, argc - 1, argv + 1);
		}
	return cli_usage_error(triggers_usage, "unknown triggers command '%s'", argv[1]);
}

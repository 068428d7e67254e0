/* functions.c - zmesh functions deploy|list|invoke|logs|versions|rollback|delete. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "events.h"
#include "logs_follow.h"
#include "table.h"

/* The server has its own (smaller, configurable) code limit and says so;
 * this one only keeps a mistaken path from being read into memory whole. */
#define DEPLOY_MAX_FILE (16u * 1024 * 1024)
#define STACK_MAX       8192
#define LOGS_MAX        (1024 * 1024)
/* The events API's limits (common/events.h, which zmeshd enforces). */
#define IDEMPOTENCY_KEY_MAX ZEV_IDEMPOTENCY_KEY_MAX
#define RETRIES_MIN         0
#define RETRIES_MAX         ZEV_RETRIES_MAX
#define MAX_EVENT_AGE_MIN   ZEV_EVENT_AGE_MIN_S
#define MAX_EVENT_AGE_MAX   ZEV_EVENT_AGE_MAX_S

static const char deploy_usage[] =
    "zmesh functions deploy FILE [--name NAME] [--slug SLUG] [--language javascript|python]\n"
    "                             [--entry ENTRY] [--timeout MS] [--memory MB] [--env KEY=VALUE]...\n"
    "                             [--retries N] [--max-event-age SECONDS] [--on-failure FUNCTION]\n"
    "                             [--change-language]\n"
    "\n"
    "  The language follows the extension (.js .mjs .cjs: javascript, .py: python), the name the file's\n"
    "  base name, the slug the name. A function with that slug is updated (a new version), else created.\n"
    "  Updating a function of another language replaces it, and is refused without --change-language.\n"
    "  --env replaces every environment variable of the function; without it they are kept.\n"
    "  Queued runs (zmesh invoke --async, triggers): a failed one is retried up to --retries times\n"
    "  (0 to 10, default 2), never once it is older than --max-event-age (60 to 21600 s, the default);\n"
    "  then it becomes a dead letter (zmesh dead-letters list), sent to the --on-failure function of\n"
    "  this project if one is named (--on-failure '' names none). Options not given are kept on update.";
static const char list_usage[] = "zmesh functions list";
static const char invoke_usage[] =
    "zmesh invoke NAME [--data JSON] [--async [--idempotency-key KEY]]\n"
    "\n"
    "  Runs the function with JSON as its payload (null without --data) and prints the result;\n"
    "  exit 1 unless it succeeded. With --async the server queues the invocation and answers at\n"
    "  once: the invocation's id is printed (zmesh logs NAME shows how it went), and a failed run\n"
    "  is retried as the function's --retries say. --idempotency-key KEY (1 to 255 printable\n"
    "  ASCII characters): the same KEY within 24 h queues nothing new and gives the first id.";
static const char logs_usage[] =
    "zmesh logs NAME [--limit N] [--invocation ID] [--follow]\n"
    "\n"
    "  Recent invocations, and the newest one's logs; --invocation ID shows that invocation and its logs.\n"
    "  --follow prints the function's logs live, as they are written (\"TIME INVOCATION LINE\", and one\n"
    "  line as each invocation ends), reconnecting when the connection drops, until Ctrl-C.";
static const char versions_usage[] = "zmesh versions NAME";
static const char rollback_usage[] =
    "zmesh rollback NAME VERSION\n"
    "\n"
    "  Restores the version's code and config: language, entry point, timeout, memory and env vars\n"
    "  (env vars are part of a version). The rollback is itself a new version, so it can be undone.";
static const char env_usage[] = "zmesh env NAME\n"
                                "\n"
                                "  The names of the function's env vars. Their values are write-only: set them with\n"
                                "  zmesh functions deploy FILE --env KEY=VALUE (which replaces them all).";
static const char delete_usage[] = "zmesh delete NAME [--yes]\n"
                                   "\n"
                                   "  Asks first on a terminal; --yes deletes without asking (needed in scripts).";
static const char functions_usage[] = "zmesh functions deploy|list|show|invoke|logs|versions|rollback|env|delete ...\n"
                                      "\n"
                                      "  zmesh functions COMMAND --help for one of them; zmesh invoke NAME --async\n"
                                      "  queues an invocation (zmesh triggers, zmesh dead-letters: zmesh --help).";

static bool idempotency_key_ok(const char *key)
{
	size_t n = strlen(key);
	if (n == 0 || n > IDEMPOTENCY_KEY_MAX)
		return false;
	for (const char *p = key; *p; p++)
		if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
			return false;
	return true;
}

/* "/projects/{pid}/functions/{fid}[/suffix...]" for NAME, or NULL with the
 * exit status in *ret_exit. */
static char *function_path(struct cli *c, const char *name, const char *usage, const char *suffix1, const char *suffix2,
                           const char *suffix3, int *ret_exit)
{
	const char *project = cli_project(c);
	if (!project) {
		*ret_exit = cli_fail(c, NULL);
		return NULL;
	}
	_cleanup_free_ char *fid = cli_function_ref(name);
	if (!fid) {
		*ret_exit = cli_usage_error(usage, "'%s' cannot name a function: use its slug or id", name);
		return NULL;
	}
	char *path = CLI_PATH("projects", project, "functions", fid, suffix1, suffix2, suffix3);
	if (!path)
		*ret_exit = cli_fail(c, "out of memory");
	return path;
}

static const char *language_of(const char *file)
{
	const char *base = strrchr(file, '/');
	const char *dot = strrchr(base ? base + 1 : file, '.');
	if (!dot)
		return NULL;
	if (strcmp(dot, ".js") == 0 || strcmp(dot, ".mjs") == 0 || strcmp(dot, ".cjs") == 0)
		return "javascript";
	if (strcmp(dot, ".py") == 0)
		return "python";
	return NULL;
}

/* The file's base name without its extension. */
static char *name_of(const char *file)
{
	const char *base = strrchr(file, '/');
	base = base ? base + 1 : file;
	const char *dot = strrchr(base, '.');
	return strndup(base, dot && dot != base ? (size_t)(dot - base) : strlen(base));
}

static int read_code(const char *file, char **ret, size_t *ret_len, struct zerr *err)
{
	_cleanup_close_ int fd = open(file, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		return zerr_set(err, -errno, "cannot open %s: %s", file, strerror(errno));
	struct stat st;
	if (fstat(fd, &st) < 0)
		return zerr_set(err, -errno, "cannot stat %s: %s", file, strerror(errno));
	if (!S_ISREG(st.st_mode))
		return zerr_set(err, -EINVAL, "%s is not a regular file", file);
	if ((uint64_t)st.st_size > DEPLOY_MAX_FILE)
		return zerr_set(err, -EFBIG, "%s is larger than %u MB", file, DEPLOY_MAX_FILE >> 20);
	int r = cli_read_fd(fd, DEPLOY_MAX_FILE, ret, ret_len);
	if (r == -EFBIG)
		return zerr_set(err, r, "%s is larger than %u MB", file, DEPLOY_MAX_FILE >> 20);
	if (r < 0)
		return zerr_set(err, r, "cannot read %s: %s", file, strerror(-r));
	return 0;
}

static int add_int(json_t *body, const char *key, const char *opt, const char *value, long long min, long long max,
                   const char *usage)
{
	long long v;
	if (!cli_parse_int(value, min, max, &v))
		return cli_usage_error(usage, "--%s must be a whole number from %lld to %lld", opt, min, max);
	json_object_set_new(body, key, json_integer(v));
	return 0;
}

/* Deploying code of another language over an existing function replaces
 * it: refused without --change-language, and said when it is done. */
static int check_replace(struct cli *c, const char *file, const char *language, json_t *existing, bool allowed,
                         json_t *body)
{
	const char *was = json_string_value(json_object_get(existing, "language"));
	if (!was || strcmp(was, language) == 0)
		return 0;
	char s[128], v[32];
	_cleanup_free_ char *slug =
	    cli_sanitize(cell_json(json_object_get(existing, "slug"), s, sizeof(s)), 128, false);
	_cleanup_free_ char *w = cli_sanitize(was, 32, false);
	_cleanup_free_ char *f = cli_sanitize(file, 256, false);
	const char *ver = cell_json(json_object_get(existing, "version"), v, sizeof(v));
	if (!allowed) {
		cli_fail(c,
		         "function %s is %s (version %s); deploying %s would replace it with %s.\n"
		         "Pass --change-language to replace it, or --name/--slug to deploy a new function.",
		         slug ? slug : "?", w ? w : "?", ver, f ? f : "the file", language);
		return -EEXIST;
	}
	fprintf(stderr, "Replacing %s function %s (version %s) with %s code from %s.\n", w ? w : "?", slug ? slug : "?",
	        ver, language, f ? f : "the file");
	json_object_set_new(body, "change_language", json_true());
	return 0;
}

/* A deploy refused for its code (SYNTAX_ERROR, HANDLER_NOT_FOUND), as a
 * compiler says it: "FILE:LINE:COLUMN: message" with the local file's name;
 * -1 for any other answer. The server's message starts with the place in
 * its own file name, which is left out. */
static int print_code_error(const char *file, const struct reply *rep)
{
	json_t *e = json_object_get(rep->json, "error");
	const char *code = json_string_value(json_object_get(e, "code"));
	const char *msg = json_string_value(json_object_get(e, "message"));
	if (!code || !msg || (strcmp(code, "SYNTAX_ERROR") != 0 && strcmp(code, "HANDLER_NOT_FOUND") != 0))
		return -1;
	json_t *line = json_object_get(e, "line"), *column = json_object_get(e, "column");
	const char *where = json_string_value(json_object_get(e, "file"));
	size_t skip = 0;
	if (where && strncmp(msg, where, strlen(where)) == 0 && msg[strlen(where)] == ':') {
		/* "function.cjs:2:13: " */
		const char *p = msg + strlen(where);
		while (*p == ':' || (*p >= '0' && *p <= '9'))
			p++;
		if (*p == ' ')
			p++;
		skip = (size_t)(p - msg);
	}
	_cleanup_free_ char *f = cli_sanitize(file, 256, false);
	_cleanup_free_ char *m = cli_sanitize(msg + skip, 2048, false);
	if (json_is_integer(line) && json_is_integer(column))
		fprintf(stderr, "%s:%" JSON_INTEGER_FORMAT ":%" JSON_INTEGER_FORMAT ": %s\n", f ? f : "?",
		        json_integer_value(line), json_integer_value(column), m ? m : "?");
	else if (json_is_integer(line))
		fprintf(stderr, "%s:%" JSON_INTEGER_FORMAT ": %s\n", f ? f : "?", json_integer_value(line),
		        m ? m : "?");
	else
		fprintf(stderr, "%s: %s\n", f ? f : "?", m ? m : "?");
	fprintf(stderr, "Not deployed: the code was checked and refused (%s).\n", code);
	return 0;
}

int cmd_deploy(struct cli *c, int argc, char **argv)
{
	enum {
		OPT_NAME = 1,
		OPT_SLUG,
		OPT_LANGUAGE,
		OPT_ENTRY,
		OPT_TIMEOUT,
		OPT_MEMORY,
		OPT_ENV,
		OPT_RETRIES,
		OPT_MAX_EVENT_AGE,
		OPT_ON_FAILURE,
		OPT_CHANGE_LANGUAGE,
	};
	static const struct option opts[] = {
	    {"name", required_argument, NULL, OPT_NAME},
	    {"slug", required_argument, NULL, OPT_SLUG},
	    {"language", required_argument, NULL, OPT_LANGUAGE},
	    {"entry", required_argument, NULL, OPT_ENTRY},
	    {"timeout", required_argument, NULL, OPT_TIMEOUT},
	    {"memory", required_argument, NULL, OPT_MEMORY},
	    {"env", required_argument, NULL, OPT_ENV},
	    {"retries", required_argument, NULL, OPT_RETRIES},
	    {"max-event-age", required_argument, NULL, OPT_MAX_EVENT_AGE},
	    {"on-failure", required_argument, NULL, OPT_ON_FAILURE},
	    {"change-language", no_argument, NULL, OPT_CHANGE_LANGUAGE},
	    CLI_COMMON_OPTIONS,
	    {0},
	};
	const char *name_in = NULL, *slug_in = NULL, *language = NULL, *entry = NULL;
	bool change_language = false;
	/* Options that are sent as given, on create and on update alike. */
	_cleanup_json_ json_t *common = json_object();
	_cleanup_json_ json_t *env = NULL;
	if (!common)
		return cli_fail(c, "out of memory");
	int o, rc;
	while ((o = cli_next_opt(c, argc, argv, opts, deploy_usage, &rc)) != OPT_END) {
		switch (o) {
		case OPT_EXIT:
			return rc;
		case OPT_NAME:
			name_in = optarg;
			break;
		case OPT_SLUG:
			slug_in = optarg;
			break;
		case OPT_LANGUAGE:
			if (strcmp(optarg, "javascript") != 0 && strcmp(optarg, "python") != 0)
				return cli_usage_error(deploy_usage, "--language is javascript or python");
			language = optarg;
			break;
		case OPT_ENTRY:
			entry = optarg;
			break;
		case OPT_CHANGE_LANGUAGE:
			change_language = true;
			break;
		case OPT_TIMEOUT:
			rc = add_int(common, "timeout_ms", "timeout", optarg, 1, 24LL * 3600 * 1000, deploy_usage);
			if (rc)
				return rc;
			break;
		case OPT_MEMORY:
			rc = add_int(common, "memory_mb", "memory", optarg, 1, 1024 * 1024, deploy_usage);
			if (rc)
				return rc;
			break;
		case OPT_RETRIES:
			rc = add_int(common, "retries", "retries", optarg, RETRIES_MIN, RETRIES_MAX, deploy_usage);
			if (rc)
				return rc;
			break;
		case OPT_MAX_EVENT_AGE:
			rc = add_int(common, "max_event_age_s", "max-event-age", optarg, MAX_EVENT_AGE_MIN,
			             MAX_EVENT_AGE_MAX, deploy_usage);
			if (rc)
				return rc;
			break;
		case OPT_ON_FAILURE: {
			/* '' clears it; a name is reduced to its slug, as NAME is. */
			char target[64];
			cli_slugify(optarg, target, sizeof(target));
			if (*optarg && !*target)
				return cli_usage_error(deploy_usage,
				                       "--on-failure takes the slug of a function of the project "
				                       "('' for none)");
			json_object_set_new(common, "on_failure", *target ? json_string(target) : json_null());
			break;
		}
		case OPT_ENV: {
			const char *eq = strchr(optarg, '=');
			if (!eq || eq == optarg)
				return cli_usage_error(deploy_usage, "--env takes KEY=VALUE");
			_cleanup_free_ char *key = strndup(optarg, (size_t)(eq - optarg));
			if (!key || (!env && !(env = json_object())))
				return cli_fail(c, "out of memory");
			json_t *v = json_string(eq + 1);
			if (!v || json_object_set_new(env, key, v) < 0)
				return cli_usage_error(deploy_usage, "--env %s: not valid UTF-8", key);
			break;
		}
		}
	}
	if (argc - optind != 1)
		return cli_usage_error(deploy_usage, "deploy takes one FILE");
	const char *file = argv[optind];
	if (!language && !(language = language_of(file)))
		return cli_usage_error(deploy_usage,
		                       "cannot tell the language of %s: name it .js, .mjs, .cjs or .py, "
		                       "or pass --language",
		                       file);
	_cleanup_free_ char *name = name_in ? strdup(name_in) : name_of(file);
	if (!name)
		return cli_fail(c, "out of memory");
	if (!*name)
		return cli_usage_error(deploy_usage, "the function needs a name: pass --name");
	char slug[64];
	if (slug_in)
		snprintf(slug, sizeof(slug), "%s", slug_in);
	else
		cli_slugify(name, slug, sizeof(slug));
	if (!*slug || (slug_in && strlen(slug_in) >= sizeof(slug)))
		return cli_usage_error(deploy_usage, "cannot make a slug of '%s': pass --slug (1 to 63 of a-z, 0-9, -)",
		                       slug_in ? slug_in : name);
	if (entry)
		json_object_set_new(common, "entry_point", json_string(entry));
	if (env)
		json_object_set(common, "env_vars", env);
	if (json_object_set_new(common, "language", json_string(language)) < 0 ||
	    (entry && !json_object_get(common, "entry_point")))
		return cli_usage_error(deploy_usage, "--entry must be valid UTF-8");

	const char *project = cli_project(c);
	if (!project)
		return cli_fail(c, NULL);

	_cleanup_free_ char *code = NULL;
	size_t code_len = 0;
	if (read_code(file, &code, &code_len, &c->err) < 0)
		return cli_fail(c, NULL);
	json_t *code_json = json_stringn(code, code_len);
	if (!code_json)
		return cli_fail(c, "%s is not UTF-8 text", file);
	json_object_set_new(common, "code", code_json);

	_cleanup_free_ char *existing = CLI_PATH("projects", project, "functions", slug);
	_cleanup_free_ char *collection = CLI_PATH("projects", project, "functions");
	if (!existing || !collection)
		return cli_fail(c, "out of memory");
	_cleanup_(reply_done) struct reply rep = {0};
	if (cli_call(c, "GET", existing, NULL, 0, true, &rep) < 0)
		return cli_fail(c, NULL);
	bool update = rep.status == 200;
	if (!update && rep.status != 404) {
		_cleanup_free_ char *line = reply_error_line(&rep);
		return cli_fail(c, "%s", line ? line : "cannot look the function up");
	}
	if (update && check_replace(c, file, language, rep.json, change_language, common) < 0)
		return CLI_EXIT_FAIL;
	reply_done(&rep);

	if (!update && (json_object_set_new(common, "name", json_string(name)) < 0 ||
	                json_object_set_new(common, "slug", json_string(slug)) < 0))
		return cli_usage_error(deploy_usage, "--name must be valid UTF-8");
	if (cli_call(c, update ? "PATCH" : "POST", update ? existing : collection, common, 0, true, &rep) < 0)
		return cli_fail(c, NULL);
	if (rep.status == 400 && !c->json && print_code_error(file, &rep) == 0)
		return CLI_EXIT_FAIL;
	if (rep.status < 200 || rep.status > 299) {
		_cleanup_free_ char *line = reply_error_line(&rep);
		return cli_fail(c, "%s", line ? line : "the deploy failed");
	}
	if (c->json) {
		cli_print_raw(&rep);
	} else {
		char s[128], v[32];
		_cleanup_free_ char *safe =
		    cli_sanitize(cell_json(json_object_get(rep.json, "slug"), s, sizeof(s)), 128, false);
		const char *ver = cell_json(json_object_get(rep.json, "version"), v, sizeof(v));
		if (update && json_is_false(json_object_get(rep.json, "changed")))
			printf("Function %s (%s) unchanged: still version %s (same code and config).\n",
			       safe ? safe : slug, language, ver);
		else if (update)
			printf("Updated function %s (%s): now version %s.\n", safe ? safe : slug, language, ver);
		else
			printf("Created function %s (%s), version %s.\n", safe ? safe : slug, language, ver);
	}
	return CLI_EXIT_OK;
}

static char *join_names(json_t *arr)
{
	size_t len = 0, i;
	json_t *v;
	json_array_foreach (arr, i, v)
		len += json_string_length(v) + 1;
	char *out = malloc(len + 2);
	if (!out)
		return NULL;
	size_t k = 0;
	json_array_foreach (arr, i, v) {
		if (!json_is_string(v))
			continue;
		if (k)
			out[k++] = ',';
		memcpy(out + k, json_string_value(v), json_string_length(v));
		k += json_string_length(v);
	}
	out[k] = '\0';
	if (k == 0)
		strcpy(out, "-");
	return out;
}

int cmd_functions_list(struct cli *c, int argc, char **argv)
{
	int rc;
	if (cli_plain_opts(c, argc, argv, list_usage, &rc) == OPT_EXIT)
		return rc;
	if (optind < argc)
		return cli_usage_error(list_usage, "unexpected argument '%s'", argv[optind]);
	const char *project = cli_project(c);
	if (!project)
		return cli_fail(c, NULL);
	_cleanup_free_ char *path = CLI_PATH("projects", project, "functions");
	if (!path)
		return cli_fail(c, "out of memory");
	_cleanup_(reply_done) struct reply rep = {0};
	if (cli_call(c, "GET", path, NULL, 0, false, &rep) < 0)
		return cli_fail(c, NULL);
	json_t *list = json_object_get(rep.json, "functions");
	if (!json_is_array(list))
		return cli_fail(c, "the server's answer has no function list");
	if (c->json) {
		cli_print_raw(&rep);
		return CLI_EXIT_OK;
	}
	static const char *const header[] = {"SLUG",    "NAME",   "LANGUAGE", "VERSION", "ENTRY",
	                                     "TIMEOUT", "MEMORY", "ENV",      "UPDATED", NULL};
	_cleanup_(table_freep) struct table *t = table_new(header);
	int r = t ? 0 : -ENOMEM;
	size_t i;
	json_t *f;
	json_array_foreach (list, i, f) {
		char slug[128], name[256], lang[32], ver[32], entry[128], tmo[32], mem[32], upd[64];
		char tbuf[40], mbuf[40];
		_cleanup_free_ char *envs = join_names(json_object_get(f, "env_vars"));
		snprintf(tbuf, sizeof(tbuf), "%s ms", cell_json(json_object_get(f, "timeout_ms"), tmo, sizeof(tmo)));
		snprintf(mbuf, sizeof(mbuf), "%s MB", cell_json(json_object_get(f, "memory_mb"), mem, sizeof(mem)));
		const char *cells[] = {
		    cell_json(json_object_get(f, "slug"), slug, sizeof(slug)),
		    cell_json(json_object_get(f, "name"), name, sizeof(name)),
		    cell_json(json_object_get(f, "language"), lang, sizeof(lang)),
		    cell_json(json_object_get(f, "version"), ver, sizeof(ver)),
		    cell_json(json_object_get(f, "entry_point"), entry, sizeof(entry)),
		    tbuf,
		    mbuf,
		    envs,
		    cell_time(json_object_get(f, "updated_at"), upd, sizeof(upd)),
		};
		if (r >= 0)
			r = envs ? table_add(t, cells) : -ENOMEM;
	}
	if (r < 0)
		return cli_fail(c, "out of memory");
	if (json_array_size(list) == 0)
		printf("No functions yet: zmesh functions deploy FILE\n");
	else
		table_print(t, stdout);
	return CLI_EXIT_OK;
}

/* The result for people: JSON escapes C0 controls but not C1 ones (U+009B
 * is a CSI to some terminals), so the text is sanitised too. --json gives
 * the exact bytes. */
static void print_result(json_t *result)
{
	_cleanup_free_ char *s = json_dumps_exact(result, JSON_ENCODE_ANY | JSON_INDENT(2));
	_cleanup_free_ char *safe = s ? cli_sanitize(s, strlen(s), true) : NULL;
	if (safe)
		puts(safe);
}

/* The answer to an async invoke: 202 with the first attempt's id. */
static int print_queued(struct cli *c, const char *name, struct reply *rep)
{
	const char *iid = json_string_value(json_object_get(rep->json, "invocation_id"));
	if (rep->status >= 200 && rep->status <= 299 && rep->status != 202)
		return cli_fail(c,
		                "the server ran the invocation at once instead of queueing it "
		                "(HTTP %ld): it does not support --async",
		                rep->status);
	if (rep->status != 202 || !iid) {
		_cleanup_free_ char *line = reply_error_line(rep);
		return cli_fail(c, "%s", line ? line : "the invocation was not queued");
	}
	if (c->json) {
		cli_print_raw(rep);
		return CLI_EXIT_OK;
	}
	char st[32];
	_cleanup_free_ char *i = cli_sanitize(iid, 64, false);
	_cleanup_free_ char *s =
	    cli_sanitize(cell_json(json_object_get(rep->json, "status"), st, sizeof(st)), 32, false);
	_cleanup_free_ char *who = cli_sanitize(name, 128, false);
	printf("Invocation %s of %s: %s.\n", i ? i : "?", who ? who : "the function", s ? s : "queued");
	fprintf(stderr, "It runs in the background; see zmesh logs %s\n", who ? who : "NAME");
	return CLI_EXIT_OK;
}

int cmd_invoke(struct cli *c, int argc, char **argv)
{
	enum { OPT_DATA = 1, OPT_ASYNC, OPT_IDEMPOTENCY_KEY };
	static const struct option opts[] = {
	    {"data", required_argument, NULL, OPT_DATA},
	    {"async", no_argument, NULL, OPT_ASYNC},
	    {"idempotency-key", required_argument, NULL, OPT_IDEMPOTENCY_KEY},
	    CLI_COMMON_OPTIONS,
	    {0},
	};
	const char *data = NULL, *key = NULL;
	bool async = false;
	int o, rc;
	while ((o = cli_next_opt(c, argc, argv, opts, invoke_usage, &rc)) != OPT_END) {
		switch (o) {
		case OPT_EXIT:
			return rc;
		case OPT_DATA:
			data = optarg;
			break;
		case OPT_ASYNC:
			async = true;
			break;
		case OPT_IDEMPOTENCY_KEY:
			key = optarg;
			break;
		}
	}
	if (argc - optind != 1)
		return cli_usage_error(invoke_usage, "invoke takes one NAME");
	if (key && !async)
		return cli_usage_error(invoke_usage, "--idempotency-key needs --async");
	if (key && !idempotency_key_ok(key))
		return cli_usage_error(invoke_usage, "--idempotency-key must be 1 to %d printable ASCII characters",
		                       IDEMPOTENCY_KEY_MAX);
	const char *name = argv[optind];
	json_error_t jerr;
	_cleanup_json_ json_t *payload = data ? json_loads(data, JSON_DECODE_ANY, &jerr) : json_null();
	if (!payload)
		return cli_usage_error(invoke_usage, "--data is not JSON: %s (column %d)", jerr.text, jerr.column);
	_cleanup_free_ char *path = function_path(c, name, invoke_usage, "invoke", NULL, NULL, &rc);
	if (!path)
		return rc;
	_cleanup_json_ json_t *body = json_pack("{s:O}", "payload", payload);
	if (!body)
		return cli_fail(c, "out of memory");

	if (async) {
		/* RFC 7240: the server answers once the job is durable. */
		const char *const headers[] = {"Prefer", "respond-async", key ? "Idempotency-Key" : NULL, key, NULL};
		_cleanup_(reply_done) struct reply rep = {0};
		if (cli_call_with_headers(c, "POST", path, body, headers, 0, true, &rep) < 0)
			return cli_fail(c, NULL);
		return print_queued(c, name, &rep);
	}

	_cleanup_(reply_done) struct reply rep = {0};
	if (cli_call(c, "POST", path, body, CLIENT_INVOKE_TIMEOUT_MS, true, &rep) < 0)
		return cli_fail(c, NULL);
	const char *status = json_string_value(json_object_get(rep.json, "status"));
	bool ok = rep.status == 200 && status && strcmp(status, "success") == 0;
	if (c->json)
		cli_print_raw(&rep);
	else if (ok)
		print_result(json_object_get(rep.json, "result"));
	if (ok)
		return CLI_EXIT_OK;

	_cleanup_free_ char *who = cli_sanitize(name, 128, false);
	if (!status) {
		/* Refused before it ran (limits, unknown function, auth). */
		_cleanup_free_ char *line = reply_error_line(&rep);
		return cli_fail(c, "%s", line ? line : "the invocation was refused");
	}
	json_t *e = json_object_get(rep.json, "error");
	_cleanup_free_ char *line = cli_error_line(e);
	_cleanup_free_ char *st = cli_sanitize(status, 32, false);
	fprintf(stderr, "zmesh: %s: %s: %s\n", who ? who : "function", st ? st : "error", line ? line : "failed");
	const char *stack = json_string_value(json_object_get(e, "stack"));
	if (stack && *stack && !c->json) {
		_cleanup_free_ char *s = cli_sanitize(stack, STACK_MAX, true);
		size_t n = s ? strlen(s) : 0;
		while (n > 0 && s[n - 1] == '\n')
			s[--n] = '\0';
		if (n > 0)
			fprintf(stderr, "%s\n", s);
	}
	const char *iid = json_string_value(json_object_get(rep.json, "invocation_id"));
	if (iid && !c->json) {
		_cleanup_free_ char *i = cli_sanitize(iid, 64, false);
		fprintf(stderr, "invocation %s; see zmesh logs %s\n", i ? i : "?", who ? who : "NAME");
	}
	return CLI_EXIT_FAIL;
}

static void print_logs(json_t *inv)
{
	char id[64], st[32], started[64], ver[32];
	printf("Logs of invocation %s (%s, version %s, %s):\n", cell_json(json_object_get(inv, "id"), id, sizeof(id)),
	       cell_json(json_object_get(inv, "status"), st, sizeof(st)),
	       cell_json(json_object_get(inv, "version"), ver, sizeof(ver)),
	       cell_time(json_object_get(inv, "started_at"), started, sizeof(started)));
	const char *logs = json_string_value(json_object_get(inv, "logs"));
	_cleanup_free_ char *safe = logs && *logs ? cli_sanitize(logs, LOGS_MAX, true) : NULL;
	if (safe) {
		fputs(safe, stdout);
		if (safe[strlen(safe) - 1] != '\n')
			putchar('\n');
	} else {
		printf("(no logs)\n");
	}
	if (json_is_true(json_object_get(inv, "logs_truncated")))
		printf("[logs truncated: the rest was over the server's limit]\n");
	_cleanup_free_ char *err =
	    json_is_object(json_object_get(inv, "error")) ? cli_error_line(json_object_get(inv, "error")) : NULL;
	if (err)
		printf("error: %s\n", err);
}

int cmd_logs(struct cli *c, int argc, char **argv)
{
	enum { OPT_LIMIT = 1, OPT_INVOCATION, OPT_FOLLOW };
	static const struct option opts[] = {
	    {"limit", required_argument, NULL, OPT_LIMIT},
	    {"invocation", required_argument, NULL, OPT_INVOCATION},
	    {"follow", no_argument, NULL, OPT_FOLLOW},
	    CLI_COMMON_OPTIONS,
	    {0},
	};
	long long limit = 10;
	const char *one = NULL;
	bool follow = false;
	int o, rc;
	while ((o = cli_next_opt(c, argc, argv, opts, logs_usage, &rc)) != OPT_END) {
		if (o == OPT_EXIT)
			return rc;
		if (o == OPT_FOLLOW) {
			follow = true;
		} else if (o == OPT_INVOCATION) {
			if (!cli_is_uuid(optarg))
				return cli_usage_error(logs_usage,
				                       "--invocation takes an invocation ID (see zmesh logs NAME)");
			one = optarg;
		} else if (!cli_parse_int(optarg, 1, 100, &limit)) {
			return cli_usage_error(logs_usage, "--limit must be a whole number from 1 to 100");
		}
	}
	if (argc - optind != 1)
		return cli_usage_error(logs_usage, "logs takes one NAME");
	if (follow) {
		if (one)
			return cli_usage_error(logs_usage, "--follow and --invocation do not go together");
		_cleanup_free_ char *spath = function_path(c, argv[optind], logs_usage, "logs", "stream", NULL, &rc);
		return spath ? logs_follow(c, spath) : rc;
	}
	if (one) {
		_cleanup_free_ char *ipath = function_path(c, argv[optind], logs_usage, "invocations", one, NULL, &rc);
		if (!ipath)
			return rc;
		_cleanup_(reply_done) struct reply irep = {0};
		if (cli_call(c, "GET", ipath, NULL, 0, false, &irep) < 0)
			return cli_fail(c, NULL);
		if (c->json)
			cli_print_json(irep.json);
		else
			print_logs(irep.json);
		return CLI_EXIT_OK;
	}
	_cleanup_free_ char *path = function_path(c, argv[optind], logs_usage, "invocations", NULL, NULL, &rc);
	if (!path)
		return rc;
	_cleanup_free_ char *query = NULL;
	if (asprintf(&query, "%s?limit=%lld", path, limit) < 0)
		return cli_fail(c, "out of memory");
	_cleanup_(reply_done) struct reply rep = {0};
	if (cli_call(c, "GET", query, NULL, 0, false, &rep) < 0)
		return cli_fail(c, NULL);
	json_t *list = json_object_get(rep.json, "invocations");
	if (!json_is_array(list))
		return cli_fail(c, "the server's answer has no invocation list");

	/* The newest invocation's logs: only the detail carries them. */
	_cleanup_(reply_done) struct reply detail = {0};
	const char *iid = json_string_value(json_object_get(json_array_get(list, 0), "id"));
	if (iid) {
		_cleanup_free_ char *dpath = function_path(c, argv[optind], logs_usage, "invocations", iid, NULL, &rc);
		if (!dpath)
			return rc;
		if (cli_call(c, "GET", dpath, NULL, 0, false, &detail) < 0)
			return cli_fail(c, NULL);
	}

	if (c->json) {
		/* One document for scripts: the list as the server sent it, plus
		 * the newest invocation in full. */
		json_object_set(rep.json, "latest", detail.json ? detail.json : json_null());
		cli_print_json(rep.json);
	} else if (json_array_size(list) == 0) {
		printf("No invocations yet.\n");
	} else {
		static const char *const header[] = {"STARTED",  "ID",     "STATUS", "VERSION", "TRIGGER",
		                                     "DURATION", "MEMORY", "ERROR",  NULL};
		_cleanup_(table_freep) struct table *t = table_new(header);
		int r = t ? 0 : -ENOMEM;
		size_t i;
		json_t *inv;
		json_array_foreach (list, i, inv) {
			char started[64], id[64], st[32], ver[32], trig[32], dur[48], mem[48];
			json_t *d = json_object_get(inv, "duration_ms"), *m = json_object_get(inv, "memory_bytes");
			if (json_is_number(d))
				snprintf(dur, sizeof(dur), "%.0f ms", json_number_value(d));
			else
				snprintf(dur, sizeof(dur), "-");
			if (json_is_number(m))
				snprintf(mem, sizeof(mem), "%.1f MB", json_number_value(m) / (1024.0 * 1024.0));
			else
				snprintf(mem, sizeof(mem), "-");
			_cleanup_free_ char *err = json_is_object(json_object_get(inv, "error"))
			                               ? cli_error_line(json_object_get(inv, "error"))
			                               : NULL;
			_cleanup_free_ char *short_err = err ? cli_sanitize(err, 60, false) : NULL;
			const char *cells[] = {
			    cell_time(json_object_get(inv, "started_at"), started, sizeof(started)),
			    cell_json(json_object_get(inv, "id"), id, sizeof(id)),
			    cell_json(json_object_get(inv, "status"), st, sizeof(st)),
			    cell_json(json_object_get(inv, "version"), ver, sizeof(ver)),
			    cell_json(json_object_get(inv, "trigger"), trig, sizeof(trig)),
			    dur,
			    mem,
			    short_err,
			};
			if (r >= 0)
				r = table_add(t, cells);
		}
		if (r < 0)
			return cli_fail(c, "out of memory");
		table_print(t, stdout);
		if (detail.json) {
			putchar('\n');
			print_logs(detail.json);
		}
	}
	return CLI_EXIT_OK;
}

int cmd_versions(struct cli *c, int argc, char **argv)
{
	int rc;
	if (cli_plain_opts(c, argc, argv, versions_usage, &rc) == OPT_EXIT)
		return rc;
	if (argc - optind != 1)
		return cli_usage_error(versions_usage, "versions takes one NAME");
	_cleanup_free_ char *path = function_path(c, argv[optind], versions_usage, "versions", NULL, NULL, &rc);
	if (!path)
		return rc;
	_cleanup_(reply_done) struct reply rep = {0};
	if (cli_call(c, "GET", path, NULL, 0, false, &rep) < 0)
		return cli_fail(c, NULL);
	json_t *list = json_object_get(rep.json, "versions");
	if (!json_is_array(list))
		return cli_fail(c, "the server's answer has no version list");
	if (c->json) {
		cli_print_raw(&rep);
		return CLI_EXIT_OK;
	}
	char cur[32];
	_cleanup_free_ char *who = cli_sanitize(argv[optind], 128, false);
	printf("%s is at version %s.\n", who ? who : "The function",
	       cell_json(json_object_get(rep.json, "current"), cur, sizeof(cur)));
	if (json_array_size(list) == 0) {
		printf("No earlier versions: each update keeps the previous one.\n");
		return CLI_EXIT_OK;
	}
	static const char *const header[] = {"VERSION", "LANGUAGE", "ENTRY", "TIMEOUT", "MEMORY", "REPLACED", NULL};
	_cleanup_(table_freep) struct table *t = table_new(header);
	int r = t ? 0 : -ENOMEM;
	size_t i;
	json_t *v;
	json_array_foreach (list, i, v) {
		char ver[32], lang[32], entry[128], tmo[32], mem[32], when[64], tbuf[40], mbuf[40];
		snprintf(tbuf, sizeof(tbuf), "%s ms", cell_json(json_object_get(v, "timeout_ms"), tmo, sizeof(tmo)));
		snprintf(mbuf, sizeof(mbuf), "%s MB", cell_json(json_object_get(v, "memory_mb"), mem, sizeof(mem)));
		const char *cells[] = {
		    cell_json(json_object_get(v, "version"), ver, sizeof(ver)),
		    cell_json(json_object_get(v, "language"), lang, sizeof(lang)),
		    cell_json(json_object_get(v, "entry_point"), entry, sizeof(entry)),
		    tbuf,
		    mbuf,
		    cell_time(json_object_get(v, "created_at"), when, sizeof(when)),
		};
		if (r >= 0)
			r = table_add(t, cells);
	}
	if (r < 0)
		return cli_fail(c, "out of memory");
	table_print(t, stdout);
	return CLI_EXIT_OK;
}

int cmd_rollback(struct cli *c, int argc, char **argv)
{
	int rc;
	if (cli_plain_opts(c, argc, argv, rollback_usage, &rc) == OPT_EXIT)
		return rc;
	if (argc - optind != 2)
		return cli_usage_error(rollback_usage, "rollback takes NAME and VERSION");
	long long v;
	if (!cli_parse_int(argv[optind + 1], 1, INT32_MAX, &v))
		return cli_usage_error(rollback_usage, "VERSION must be a version number (see zmesh versions NAME)");
	char vs[24];
	snprintf(vs, sizeof(vs), "%lld", v);
	_cleanup_free_ char *path = function_path(c, argv[optind], rollback_usage, "versions", vs, "rollback", &rc);
	if (!path)
		return rc;
	_cleanup_(reply_done) struct reply rep = {0};
	if (cli_call(c, "POST", path, NULL, 0, false, &rep) < 0)
		return cli_fail(c, NULL);
	if (c->json) {
		cli_print_raw(&rep);
	} else {
		char now[32], slug[128];
		_cleanup_free_ char *s =
		    cli_sanitize(cell_json(json_object_get(rep.json, "slug"), slug, sizeof(slug)), 128, false);
		printf("Rolled %s back to version %lld: it is now version %s (code, config and env vars restored).\n",
		       s ? s : "the function", v, cell_json(json_object_get(rep.json, "version"), now, sizeof(now)));
	}
	return CLI_EXIT_OK;
}

int cmd_env(struct cli *c, int argc, char **argv)
{
	int rc;
	if (cli_plain_opts(c, argc, argv, env_usage, &rc) == OPT_EXIT)
		return rc;
	if (argc - optind != 1)
		return cli_usage_error(env_usage, "env takes one NAME");
	_cleanup_free_ char *path = function_path(c, argv[optind], env_usage, NULL, NULL, NULL, &rc);
	if (!path)
		return rc;
	_cleanup_(reply_done) struct reply rep = {0};
	if (cli_call(c, "GET", path, NULL, 0, false, &rep) < 0)
		return cli_fail(c, NULL);
	json_t *names = json_object_get(rep.json, "env_vars");
	if (!json_is_array(names))
		return cli_fail(c, "the server's answer has no env var names");
	if (c->json) {
		_cleanup_json_ json_t *out = json_pack("{s:O}", "env_vars", names);
		if (!out)
			return cli_fail(c, "out of memory");
		cli_print_json(out);
		return CLI_EXIT_OK;
	}
	_cleanup_free_ char *who = cli_sanitize(argv[optind], 128, false);
	if (json_array_size(names) == 0) {
		printf("%s has no env vars.\n", who ? who : "The function");
		return CLI_EXIT_OK;
	}
	printf("Env vars of %s (values are write-only):\n", who ? who : "the function");
	size_t i;
	json_t *n;
	json_array_foreach (names, i, n) {
		_cleanup_free_ char *safe = json_is_string(n) ? cli_sanitize(json_string_value(n), 256, false) : NULL;
		if (safe)
			printf("%s\n", safe);
	}
	return CLI_EXIT_OK;
}

static const char show_usage[] = "zmesh functions show NAME    (its config, then its code)";

int cmd_show(struct cli *c, int argc, char **argv)
{
	int rc;
	if (cli_plain_opts(c, argc, argv, show_usage, &rc) == OPT_EXIT)
		return rc;
	if (argc - optind != 1)
		return cli_usage_error(show_usage, "show takes one NAME");
	_cleanup_free_ char *path = function_path(c, argv[optind], show_usage, NULL, NULL, NULL, &rc);
	if (!path)
		return rc;
	_cleanup_(reply_done) struct reply rep = {0};
	if (cli_call(c, "GET", path, NULL, 0, false, &rep) < 0)
		return cli_fail(c, NULL);
	if (c->json) {
		cli_print_raw(&rep);
		return CLI_EXIT_OK;
	}
	static const char *const fields[][2] = {
	    {"slug", "Slug"},
	    {"name", "Name"},
	    {"id", "Id"},
	    {"language", "Language"},
	    {"entry_point", "Entry point"},
	    {"version", "Version"},
	    {"timeout_ms", "Timeout (ms)"},
	    {"memory_mb", "Memory (MB)"},
	    {"retries", "Retries"},
	    {"max_event_age_s", "Max event age (s)"},
	    {"on_failure", "On failure"},
	    {"status", "Status"},
	    {"updated_at", "Updated"},
	};
	for (size_t i = 0; i < ELEMENTSOF(fields); i++) {
		char v[256];
		_cleanup_free_ char *safe =
		    cli_sanitize(cell_json(json_object_get(rep.json, fields[i][0]), v, sizeof(v)), 200, false);
		printf("%-18s %s\n", fields[i][1], safe ? safe : "-");
	}
	_cleanup_free_ char *envs = join_names(json_object_get(rep.json, "env_vars"));
	_cleanup_free_ char *safe_envs = envs ? cli_sanitize(envs, 4096, false) : NULL;
	printf("%-18s %s (values are write-only)\n", "Env vars", safe_envs ? safe_envs : "-");
	const char *code = json_string_value(json_object_get(rep.json, "code"));
	_cleanup_free_ char *safe_code = code ? cli_sanitize(code, strlen(code), true) : NULL;
	printf("\n");
	if (safe_code) {
		fputs(safe_code, stdout);
		if (!*safe_code || safe_code[strlen(safe_code) - 1] != '\n')
			putchar('\n');
	}
	return CLI_EXIT_OK;
}

int cmd_delete(struct cli *c, int argc, char **argv)
{
	int rc;
	if (cli_plain_opts(c, argc, argv, delete_usage, &rc) == OPT_EXIT)
		return rc;
	if (argc - optind != 1)
		return cli_usage_error(delete_usage, "delete takes one NAME");
	_cleanup_free_ char *path = function_path(c, argv[optind], delete_usage, NULL, NULL, NULL, &rc);
	if (!path)
		return rc;
	_cleanup_free_ char *what = NULL;
	if (asprintf(&what, "function %s", argv[optind]) < 0)
		return cli_fail(c, "out of memory");
	if ((rc = cli_confirm(c, what)) != 0)
		return rc;
	_cleanup_(reply_done) struct reply rep = {0};
	if (cli_call(c, "DELETE", path, NULL, 0, false, &rep) < 0)
		return cli_fail(c, NULL);
	if (c->json) {
		cli_print_raw(&rep);
	} else {
		_cleanup_free_ char *who = cli_sanitize(argv[optind], 128, false);
		printf("Deleted function %s.\n", who ? who : "");
	}
	return CLI_EXIT_OK;
}

int cmd_functions(struct cli *c, int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*fn)(struct cli *, int, char **);
	} subs[] = {
	    {"deploy", cmd_deploy},     {"list", cmd_functions_list}, {"invoke", cmd_invoke}, {"logs", cmd_logs},
	    {"versions", cmd_versions}, {"rollback", cmd_rollback},   {"delete", cmd_delete}, {"env", cmd_env},
	    {"show", cmd_show},
	};
	if (argc < 2)
		return cli_usage_error(functions_usage, "which functions command?");
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		printf("usage: %s\n", functions_usage);
		return CLI_EXIT_OK;
	}
	for (size_t i = 0; i < ELEMENTSOF(subs); i++)
		if (strcmp(argv[1], subs[i].name) == 0) {
			optind = 0;
			return subs[i].fn(c, argc - 1, argv + 1);
		}
	return cli_usage_error(functions_usage, "unknown functions command '%s'", argv[1]);
}

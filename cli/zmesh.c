/* zmesh.c - the command-line client of zmesh functions: reads the config,
 * dispatches one command, reports its outcome as the exit status
 * (0 done, 1 failed, 2 usage). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const char usage_text[] =
    "usage: zmesh [--json] [--project PROJECT] COMMAND [ARGS]\n"
    "\n"
    "Session\n"
    "  login --url URL --email EMAIL [--password PASSWORD]   log in; the token is kept in the config\n"
    "  logout                                               forget the token\n"
    "  passwd                                               change your password (ends other sessions)\n"
    "Projects\n"
    "  projects create NAME [--slug SLUG] [--tier TIER]    create a project\n"
    "  projects list                                        your projects (* marks the current one)\n"
    "  projects members add EMAIL                           share the current project (its owner)\n"
    "  use PROJECT                                          make PROJECT (id or slug) the current one\n"
    "  egress show                                          the project's outbound network policy\n"
    "  egress set open|allowlist|none [--allow ENTRY]...    change it (owner; ENTRY: host, *.suffix, IP, CIDR)\n"
    "Users (admins)\n"
    "  users create EMAIL [--admin] [--password P]          a new user (password asked, or one stdin line)\n"
    "  users list                                           every user\n"
    "Functions (in the current project; NAME is a slug or an id)\n"
    "  functions deploy FILE [--name N] [--slug S] [--entry E] [--timeout MS] [--memory MB]\n"
    "                        [--env KEY=VALUE]...           create, or update as a new version\n"
    "                        [--retries N] [--max-event-age S] [--on-failure FUNCTION]   for queued runs\n"
    "  functions list                                       the project's functions\n"
    "  functions show NAME                                  its config and code\n"
    "  invoke NAME [--data JSON]                            run it, print the result\n"
    "  invoke NAME --async [--idempotency-key KEY]          queue it, print the invocation's id\n"
    "  logs NAME [--limit N]                                recent invocations, the newest one's logs\n"
    "  logs NAME --invocation ID                            one invocation and its logs\n"
    "  versions NAME                                        earlier versions\n"
    "  rollback NAME VERSION                                restore a version: code, config, env vars\n"
    "  env NAME                                             its env vars' names (values are write-only)\n"
    "  delete NAME [--yes]                                  delete the function (asks first; --yes in scripts)\n"
    "Triggers, events and dead letters (in the current project; ID from their list)\n"
    "  triggers list                                        the project's triggers\n"
    "  triggers create --function NAME --cron SCHEDULE [--timezone TZ] [--payload JSON]\n"
    "                  [--catch-up skip|latest|all] [--overlap allow|skip]     run on a schedule\n"
    "  triggers create --function NAME --webhook standard|stripe|github|hmac|none [--secret S]\n"
    "                  [--header H] [--prefix P] [--encoding hex|base64] [--respond async|sync]\n"
    "                                                       run on signed requests to its URL\n"
    "  triggers create --function NAME --event custom.TYPE  run on custom events of TYPE\n"
    "                  and any kind: [--condition 'FIELD OP VALUE']... [--disabled]\n"
    "  triggers get|delete|enable|disable ID                show, remove, switch on or off\n"
    "  triggers rotate-secret ID                            a new webhook secret (the old one: 24 h)\n"
    "  events emit TYPE [--data JSON]                       a custom event: runs its triggers\n"
    "  dead-letters list                                    queued runs that failed every retry\n"
    "  dead-letters retry ID                                queue one again\n"
    "The project's database (as the project's role; what zmesh.db reaches)\n"
    "  db sql SQL|-                                         run SQL, print each statement's rows\n"
    "  db migrate DIR                                       apply DIR's NNN_name.sql files not applied yet\n"
    "  db status [DIR]                                      migrations applied (and pending in DIR)\n"
    "API keys (for POST /api/functions/SLUG with an x-api-key header)\n"
    "  keys create NAME | keys list | keys delete KEY_ID\n"
    "\n"
    "Options\n"
    "  --json              print the server's JSON instead of tables\n"
    "  --project PROJECT   act on PROJECT instead of the current one\n"
    "  --yes               delete without asking (every delete asks on a terminal, and needs it elsewhere)\n"
    "  --help              this text; COMMAND --help for one command\n"
    "\n"
    "The config is $ZMESH_CONFIG, else ~/.config/zmesh/config.json (mode 0600).\n"
    "Exit status: 0 done, 1 failed (the server's error is printed), 2 bad usage.\n";

static const struct {
	const char *name;
	int (*fn)(struct cli *, int, char **);
} commands[] = {
    {"login", cmd_login},       {"logout", cmd_logout},
    {"projects", cmd_projects}, {"use", cmd_use},
    {"keys", cmd_keys},         {"functions", cmd_functions},
    {"deploy", cmd_deploy},     {"invoke", cmd_invoke},
    {"logs", cmd_logs},         {"versions", cmd_versions},
    {"rollback", cmd_rollback}, {"delete", cmd_delete},
    {"triggers", cmd_triggers}, {"dead-letters", cmd_dead_letters},
    {"events", cmd_events},     {"db", cmd_db},
    {"passwd", cmd_passwd},     {"egress", cmd_egress},
    {"env", cmd_env},           {"users", cmd_users},
};

static int run(struct cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
	    CLI_COMMON_OPTIONS,
	    {"version", no_argument, NULL, 'V'},
	    {0},
	};
	/* Options before the command; '+' stops at the command's name. */
	int o;
	opterr = 0;
	while ((o = getopt_long(argc, argv, "+:h", opts, NULL)) != -1) {
		switch (o) {
		case OPT_JSON:
			c->json = true;
			break;
		case OPT_YES:
			c->yes = true;
			break;
		case OPT_PROJECT:
			if (!*optarg)
				return cli_usage_error("zmesh --project PROJECT COMMAND", "--project needs a project");
			c->project = optarg;
			break;
		case OPT_HELP:
			fputs(usage_text, stdout);
			return CLI_EXIT_OK;
		case 'V':
			printf("zmesh %s\n", ZMESH_CLI_VERSION);
			return CLI_EXIT_OK;
		case ':':
			return cli_usage_error("zmesh [--json] [--project PROJECT] COMMAND [ARGS]",
			                       "option '%s' needs a value", argv[optind - 1]);
		default:
			return cli_usage_error("zmesh [--json] [--project PROJECT] COMMAND [ARGS]",
			                       "unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind >= argc) {
		fputs(usage_text, stderr);
		return CLI_EXIT_USAGE;
	}
	const char *name = argv[optind];
	if (strcmp(name, "help") == 0) {
		fputs(usage_text, stdout);
		return CLI_EXIT_OK;
	}
	for (size_t i = 0; i < ELEMENTSOF(commands); i++) {
		if (strcmp(name, commands[i].name) != 0)
			continue;
		if (config_path(&c->config_path, &c->config_default, &c->err) < 0 ||
		    config_load(c->config_path, &c->cfg, &c->err) < 0)
			return cli_fail(c, NULL);
		if (c->cfg.loose_mode)
			fprintf(stderr,
			        "zmesh: warning: %s is readable by others (it holds a session token): "
			        "chmod 600 it\n",
			        c->config_path);
		int sub_argc = argc - optind;
		char **sub_argv = argv + optind;
		optind = 0; /* a fresh scan for the command's own options */
		return commands[i].fn(c, sub_argc, sub_argv);
	}
	return cli_usage_error("zmesh [--json] [--project PROJECT] COMMAND [ARGS]    (zmesh --help lists them)",
	                       "unknown command '%s'", name);
}

int main(int argc, char **argv)
{
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		fputs("zmesh: cannot initialise libcurl\n", stderr);
		return CLI_EXIT_FAIL;
	}
	struct cli c = {0};
	int rc = run(&c, argc, argv);
	if (c.http_ready)
		client_done(&c.http);
	config_done(&c.cfg);
	free(c.config_path);
	curl_global_cleanup();
	/* A full disk or a closed pipe must not pass for success. */
	if (fflush(stdout) != 0 || ferror(stdout)) {
		if (errno != EPIPE)
			fprintf(stderr, "zmesh: cannot write the output: %s\n", strerror(errno));
		return rc ? rc : CLI_EXIT_FAIL;
	}
	return rc;
}

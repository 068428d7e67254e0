/* cli.h - the state of one zmesh command and what the command modules share:
 * option parsing, API calls, output. */
#pragma once

#include <getopt.h>
#include <stdbool.h>

#include "client.h"
#include "common.h"
#include "config.h"
#include "jsontext.h"

struct cli {
	char *config_path;
	bool config_default; /* the default location: its directory is ours */
	struct cli_config cfg;
	struct client http;
	bool http_ready;
	bool json;           /* --json: the server's JSON as is, for scripts */
	const char *project; /* --project: overrides the current project */
	bool yes;            /* --yes: delete without asking */
	struct zerr err;
};

/* Options every command takes. A command numbers its own options from 1,
 * clear of these and of getopt's ':' and '?'. */
enum {
	OPT_JSON = 1000,
	OPT_PROJECT,
	OPT_YES,
	OPT_HELP = 'h',
	OPT_END = -1,  /* no more options */
	OPT_EXIT = -2, /* the command is over: return *ret_exit */
};
/* clang-format off */
#define CLI_COMMON_OPTIONS                                 \
	{"json", no_argument, NULL, OPT_JSON},             \
	{"project", required_argument, NULL, OPT_PROJECT}, \
	{"yes", no_argument, NULL, OPT_YES},               \
	{"help", no_argument, NULL, OPT_HELP}
/* clang-format on */

/* The next option of a command (getopt_long over argv, options and operands
 * in any order). --json, --project and --help are handled here, as are
 * unknown options and missing arguments (a usage error). Returns the
 * option's value, OPT_END once operands are all that is left (they start at
 * optind), or OPT_EXIT with *ret_exit set. usage is the command's synopsis. */
int cli_next_opt(struct cli *c, int argc, char **argv, const struct option *opts, const char *usage, int *ret_exit);

/* The options of a command that takes only the common ones; operands start
 * at optind. Returns OPT_EXIT with *ret_exit set, else 0. */
int cli_plain_opts(struct cli *c, int argc, char **argv, const char *usage, int *ret_exit);

/* Report a usage error ("zmesh: <msg>" and the synopsis: usage up to its
 * first blank line); returns
 * CLI_EXIT_USAGE. */
int cli_usage_error(const char *usage, const char *fmt, ...) _printf_(2, 3);

/* Report c->err (or the formatted message when fmt is given) on stderr;
 * returns CLI_EXIT_FAIL. */
int cli_fail(struct cli *c, const char *fmt, ...) _printf_(2, 3);

/* Before a delete of what ("function hello"): 0 to go on (--yes, or a
 * person answered y on the terminal), else the exit status: 2 when stdin is
 * not a terminal and --yes was not given, 1 when the answer was not y. */
int cli_confirm(struct cli *c, const char *what);
/* Print a JSON document (pretty) or a raw server body on stdout. */
void cli_print_json(json_t *j);
void cli_print_raw(const struct reply *r);

/* Persist c->cfg. */
int cli_save_config(struct cli *c);

/* Connect to base (a checked URL) without a session: for login. */
int cli_connect(struct cli *c, const char *base);

/* Call the API with the saved session: fails (c->err set) when not logged
 * in, on transport errors and, unless accept_errors, on any status outside
 * 2xx, with the server's code and message. timeout_ms 0 means the default.
 * *ret is valid on success (and, with accept_errors, for any response). */
int cli_call(struct cli *c, const char *method, const char *path, const json_t *body, long timeout_ms,
             bool accept_errors, struct reply *ret);
/* cli_call with more request headers (client_request's headers: name, value,
 * ..., NULL). */
int cli_call_with_headers(struct cli *c, const char *method, const char *path, const json_t *body,
                          const char *const *headers, long timeout_ms, bool accept_errors, struct reply *ret);

/* Make project (the server's JSON of one) the current one and save the
 * config. */
int cli_use_project(struct cli *c, json_t *project);
/* With no current project: when the user has exactly one, make it the
 * current one. Returns how many projects the user has (0, 1, more), or -1
 * when they could not be listed; best effort, c->err is left alone. */
int cli_use_only_project(struct cli *c);

/* "/seg1/seg2/..." from a NULL-terminated array of segments, each escaped.
 * NULL when out of memory. CLI_PATH("projects", id) spells the array. */
char *cli_path(const char *const *segments);
#define CLI_PATH(...) cli_path((const char *const[]){__VA_ARGS__, NULL})

/* The current project (--project, else the one chosen with zmesh use);
 * NULL with c->err set when there is none. */
const char *cli_project(struct cli *c);

/* The {fid} for a function named by a person: an id as it is, anything else
 * reduced to a slug the way deploy derives one. NULL for a name that has no
 * slug (nothing alphanumeric). Caller frees. */
char *cli_function_ref(const char *name);

/* Derive a slug from a name: lower-case, runs of anything but [a-z0-9]
 * become one '-', no '-' at either end, at most 63 characters. */
void cli_slugify(const char *name, char *out, size_t size);
bool cli_is_uuid(const char *s);

/* Parse a decimal integer in [min, max]; false on anything else. */
bool cli_parse_int(const char *s, long long min, long long max, long long *ret);

/* "CODE: Name: message" of an invocation's error object (an invocation's
 * or a dead letter's last error), sanitised. NULL on ENOMEM. */
char *cli_error_line(json_t *e);

/* The commands: each returns an exit status. */
int cmd_login(struct cli *c, int argc, char **argv);
int cmd_logout(struct cli *c, int argc, char **argv);
int cmd_passwd(struct cli *c, int argc, char **argv);
int cmd_projects(struct cli *c, int argc, char **argv);
int cmd_use(struct cli *c, int argc, char **argv);
int cmd_keys(struct cli *c, int argc, char **argv);
int cmd_functions(struct cli *c, int argc, char **argv);
int cmd_deploy(struct cli *c, int argc, char **argv);
int cmd_functions_list(struct cli *c, int argc, char **argv);
int cmd_invoke(struct cli *c, int argc, char **argv);
int cmd_logs(struct cli *c, int argc, char **argv);
int cmd_versions(struct cli *c, int argc, char **argv);
int cmd_rollback(struct cli *c, int argc, char **argv);
int cmd_delete(struct cli *c, int argc, char **argv);
int cmd_env(struct cli *c, int argc, char **argv);
int cmd_show(struct cli *c, int argc, char **argv);
int cmd_users(struct cli *c, int argc, char **argv);
/* zmesh projects members add EMAIL (argv[0] is "members"). */
int cli_members(struct cli *c, int argc, char **argv);
int cmd_triggers(struct cli *c, int argc, char **argv);
int cmd_dead_letters(struct cli *c, int argc, char **argv);
int cmd_events(struct cli *c, int argc, char **argv);
int cmd_db(struct cli *c, int argc, char **argv);
int cmd_egress(struct cli *c, int argc, char **argv);

/* users.c - zmesh users create|list (admins) and zmesh projects members add
 * (a project's owner). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "table.h"
#include "tty.h"

static const char users_usage[] =
    "zmesh users create EMAIL [--admin] [--password PASSWORD] | zmesh users list\n"
    "\n"
    "  Admins only. Without --password it is asked twice without echo on a terminal, else read as one\n"
    "  line from stdin. The server's rule: at least 12 characters of two kinds, not the email.";
static const char members_usage[] = "zmesh projects members add EMAIL    (the project's owner or an admin)";

#define PASSWORD_MAX 1100

static int new_password(char *buf, size_t size, struct zerr *err)
{
	if (!isatty(STDIN_FILENO)) {
		int r = tty_read_line(STDIN_FILENO, buf, size);
		return r < 0 ? zerr_set(err, r, "no password on stdin (one line, or --password)") : 0;
	}
	char again[PASSWORD_MAX];
	int r = tty_prompt_hidden("Password for the new user: ", buf, size);
	if (r == 0)
		r = tty_prompt_hidden("Again: ", again, sizeof(again));
	if (r < 0)
		return zerr_set(err, r, "cannot read the password: %s", strerror(-r));
	r = strcmp(buf, again) == 0 ? 0 : zerr_set(err, -EINVAL, "the two passwords differ");
	explicit_bzero(again, sizeof(again));
	return r;
}

static int users_create(struct cli *c, int argc, char **argv)
{
	enum { OPT_ADMIN = 1, OPT_PASSWORD };
	static const struct option opts[] = {
	    {"admin", no_argument, NULL, OPT_ADMIN},
	    {"password", required_argument, NULL, OPT_PASSWORD},
	    CLI_COMMON_OPTIONS,
	    {0},
	};
	bool admin = false;
	const char *given = NULL;
	int o, rc;
	while ((o = cli_next_opt(c, argc, argv, opts, users_usage, &rc)) != OPT_END) {
		if (o == OPT_EXIT)
			return rc;
		if (o == OPT_ADMIN)
			admin = true;
		else
			given = optarg;
	}
	if (argc - optind != 1 || !*argv[optind])
		return cli_usage_error(users_usage, "users create takes one EMAIL");
	char password[PASSWORD_MAX] = "";
	if (given)
		snprintf(password, sizeof(password), "%s", given);
	else if (new_password(password, sizeof(password), &c->err) < 0)
		return cli_fail(c, NULL);
	_cleanup_json_ json_t *body =
	    json_pack("{s:s, s:s, s:b}", "email", argv[optind], "password", password, "is_admin", admin);
	explicit_bzero(password, sizeof(password));
	if (!body)
		return cli_usage_error(users_usage, "EMAIL and the password must be UTF-8");
	_cleanup_(reply_done) struct reply rep = {0};
	int r = cli_call(c, "POST", "/users", body, 0, false, &rep);
	json_object_clear(body);
	if (r < 0)
		return cli_fail(c, NULL);
	if (c->json) {
		cli_print_raw(&rep);
		return CLI_EXIT_OK;
	}
	char e[300], id[64];
	_cleanup_free_ char *safe =
	    cli_sanitize(cell_json(json_object_get(rep.json, "email"), e, sizeof(e)), 256, false);
	printf("Created %s %s (id %s).\n", admin ? "admin" : "user", safe ? safe : "?",
	       cell_json(json_object_get(rep.json, "id"), id, sizeof(id)));
	return CLI_EXIT_OK;
}

static int users_list(struct cli *c, int argc, char **argv)
{
	int rc;
	if (cli_plain_opts(c, argc, argv, users_usage, &rc) == OPT_EXIT)
		return rc;
	if (optind < argc)
		return cli_usage_error(users_usage, "unexpected argument '%s'", argv[optind]);
	_cleanup_(reply_done) struct reply rep = {0};
	if (cli_call(c, "GET", "/users", NULL, 0, false, &rep) < 0)
		return cli_fail(c, NULL);
	json_t *list = json_object_get(rep.json, "users");
	if (!json_is_array(list))
		return cli_fail(c, "the server's answer has no user list");
	if (c->json) {
		cli_print_raw(&rep);
		return CLI_EXIT_OK;
	}
	static const char *const header[] = {"EMAIL", "ADMIN", "PROJECTS", "CREATED", "ID", NULL};
	_cleanup_(table_freep) struct table *t = table_new(header);
	int r = t ? 0 : -ENOMEM;
	size_t i;
	json_t *u;
	json_array_foreach (list, i, u) {
		char email[300], n[32], created[64], id[64];
		const char *cells[] = {
		    cell_json(json_object_get(u, "email"), email, sizeof(email)),
		    json_is_true(json_object_get(u, "is_admin")) ? "yes" : "no",
		    cell_json(json_object_get(u, "projects"), n, sizeof(n)),
		    cell_time(json_object_get(u, "created_at"), created, sizeof(created)),
		    cell_json(json_object_get(u, "id"), id, sizeof(id)),
		};
		if (r >= 0)
			r = table_add(t, cells);
	}
	if (r < 0)
		return cli_fail(c, "out of memory");
	table_print(t, stdout);
	return CLI_EXIT_OK;
}

int cmd_users(struct cli *c, int argc, char **argv)
{
	if (argc < 2)
		return cli_usage_error(users_usage, "which users command?");
	const char *sub = argv[1];
	if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0) {
		printf("usage: %s\n", users_usage);
		return CLI_EXIT_OK;
	}
	optind = 0;
	if (strcmp(sub, "create") == 0)
		return users_create(c, argc - 1, argv + 1);
	if (strcmp(sub, "list") == 0)
		return users_list(c, argc - 1, argv + 1);
	return cli_usage_error(users_usage, "unknown users command '%s'", sub);
}

int cli_members(struct cli *c, int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "add") != 0) {
		if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
			printf("usage: %s\n", members_usage);
			return CLI_EXIT_OK;
		}
		return cli_usage_error(members_usage, "members takes add EMAIL");
	}
	argc--;
	argv++;
	optind = 0;
	int rc;
	if (cli_plain_opts(c, argc, argv, members_usage, &rc) == OPT_EXIT)
		return rc;
	if (argc - optind != 1 || !*argv[optind])
		return cli_usage_error(members_usage, "members add takes one EMAIL");
	const char *project = cli_project(c);
	if (!project)
		return cli_fail(c, NULL);
	_cleanup_free_ char *path = CLI_PATH("projects", project, "members");
	_cleanup_json_ json_t *body = json_pack("{s:s}", "email", argv[optind]);
	if (!path || !body)
		return cli_fail(c, "out of memory");
	_cleanup_(reply_done) struct reply rep = {0};
	if (cli_call(c, "POST", path, body, 0, false, &rep) < 0)
		return cli_fail(c, NULL);
	if (c->json) {
		cli_print_raw(&rep);
		return CLI_EXIT_OK;
	}
	char e[300];
	_cleanup_free_ char *who =
	    cli_sanitize(cell_json(json_object_get(rep.json, "email"), e, sizeof(e)), 256, false);
	_cleanup_free_ char *p = cli_sanitize(c->project            ? c->project
	                                      : c->cfg.project_slug ? c->cfg.project_slug
	                                                            : project,
	                                      128, false);
	printf("%s is now a member of %s.\n", who ? who : "The user", p ? p : "the project");
	return CLI_EXIT_OK;
}

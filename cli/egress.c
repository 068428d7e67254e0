/* egress.c - zmesh egress: the current project's outbound network policy. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const char egress_usage[] =
    "zmesh egress show | zmesh egress set open|allowlist|none [--allow HOST|*.SUFFIX|IP|CIDR]...";

/* "open", or "allowlist: a, b", as one line. */
static void print_policy(json_t *egress)
{
	const char *mode = json_string_value(json_object_get(egress, "mode"));
	_cleanup_free_ char *m = cli_sanitize(mode ? mode : "open", 64, false);
	printf("%s", m ? m : "?");
	json_t *allow = json_object_get(egress, "allow");
	size_t i;
	json_t *v;
	json_array_foreach (allow, i, v) {
		_cleanup_free_ char *e = cli_sanitize(json_string_value(v) ?: "?", 300, false);
		printf("%s%s", i == 0 ? ": " : ", ", e ? e : "?");
	}
	putchar('\n');
}

static int egress_show(struct cli *c, const char *project)
{
	_cleanup_free_ char *path = CLI_PATH("projects", project);
	if (!path)
		return cli_fail(c, "out of memory");
	_cleanup_(reply_done) struct reply rep = {0};
	if (cli_call(c, "GET", path, NULL, 0, false, &rep) < 0)
		return cli_fail(c, NULL);
	if (c->json)
		cli_print_json(json_object_get(rep.json, "egress"));
	else
		print_policy(json_object_get(rep.json, "egress"));
	return CLI_EXIT_OK;
}

static int egress_set(struct cli *c, int argc, char **argv)
{
	enum { OPT_ALLOW = 1 };
	static const struct option opts[] = {
	    {"allow", required_argument, NULL, OPT_ALLOW},
	    CLI_COMMON_OPTIONS,
	    {0},
	};
	_cleanup_json_ json_t *allow = json_array();
	if (!allow)
		return cli_fail(c, "out of memory");
	int o, rc;
	while ((o = cli_next_opt(c, argc, argv, opts, egress_usage, &rc)) != OPT_END) {
		if (o == OPT_EXIT)
			return rc;
		if (json_array_append_new(allow, json_string(optarg)) < 0)
			return cli_usage_error(egress_usage, "--allow must be valid UTF-8");
	}
	if (argc - optind != 1)
		return cli_usage_error(egress_usage, "egress set takes one MODE: open, allowlist or none");
	const char *mode = argv[optind];
	if (strcmp(mode, "open") != 0 && strcmp(mode, "allowlist") != 0 && strcmp(mode, "none") != 0)
		return cli_usage_error(egress_usage, "MODE is open, allowlist or none");
	if (strcmp(mode, "allowlist") != 0 && json_array_size(allow) > 0)
		return cli_usage_error(egress_usage, "--allow goes with allowlist only");
	const char *project = cli_project(c);
	if (!project)
		return cli_fail(c, NULL);
	_cleanup_json_ json_t *body = json_pack("{s:{s:s, s:O}}", "egress", "mode", mode, "allow", allow);
	_cleanup_free_ char *path = CLI_PATH("projects", project);
	if (!body || !path)
		return cli_fail(c, "out of memory");
	_cleanup_(reply_done) struct reply rep = {0};
	if (cli_call(c, "PATCH", path, body, 0, false, &rep) < 0)
		return cli_fail(c, NULL);
	if (c->json) {
		cli_print_json(json_object_get(rep.json, "egress"));
	} else {
		printf("Outbound network of this project: ");
		print_policy(json_object_get(rep.json, "egress"));
	}
	return CLI_EXIT_OK;
}

int cmd_egress(struct cli *c, int argc, char **argv)
{
	if (argc < 2)
		return cli_usage_error(egress_usage, "which egress command?");
	const char *sub = argv[1];
	if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0) {
		printf("usage: %s\n", egress_usage);
		return CLI_EXIT_OK;
	}
	argc--;
	argv++;
	optind = 0;
	if (strcmp(sub, "set") == 0)
		return egress_set(c, argc, argv);
	if (strcmp(sub, "show") != 0)
		return cli_usage_error(egress_usage, "unknown egress command '%s'", sub);
	int rc;
	if (cli_plain_opts(c, argc, argv, egress_usage, &rc) == OPT_EXIT)
		return rc;
	if (optind < argc)
		return cli_usage_error(egress_usage, "unexpected argument '%s'", argv[optind]);
	const char *project = cli_project(c);
	if (!project)
		return cli_fail(c, NULL);
	return egress_show(c, project);
}

/* projects.c - zmesh projects, use and keys. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "cli.h"
#include "table.h"

static const char projects_usage[] =
    "zmesh projects create NAME [--slug SLUG] [--tier TIER] | zmesh projects list | zmesh projects members "
    "add EMAIL | zmesh projects members list | zmesh projects members remove EMAIL [--yes]";
static const char members_usage[] =
    "zmesh projects members list | zmesh projects members remove EMAIL [--yes]    (remove: the project's owner "
    "or an admin) | zmesh projects members add EMAIL";
static const char use_usage[] = "zmesh use PROJECT    (a project id or slug)";
static const char keys_usage[] = "zmesh keys create NAME | zmesh keys list | zmesh keys delete KEY_ID [--yes]";

int cli_use_project(struct cli *c, json_t *project)
{
	const char *id = json_string_value(json_object_get(project, "id"));
	const char *slug = json_string_value(json_object_get(project, "slug"));
	if (!id)
		return zerr_set(&c->err, -EBADMSG, "the server's answer has no project id");
	int r;
	if ((r = config_set(&c->cfg.project, id, &c->err)) < 0 ||
	    (r = config_set(&c->cfg.project_slug, slug, &c->err)) < 0)
		return r;
	return cli_save_config(c);
}

/* A create that met a taken slug: the project may be the user's own (made
 * by an earlier run of the same steps), which only needs choosing. */
static int project_exists(struct cli *c, const char *slug_in, const char *name)
{
	char slug[64];
	if (slug_in)
		snprintf(slug, sizeof(slug), "%s", slug_in);
	else
		cli_slugify(name, slug, sizeof(slug));
	_cleanup_free_ char *safe = cli_sanitize(slug, 128, false);
	_cleanup_free_ char *path = CLI_PATH("projects", slug);
	if (!path || !safe)
		return cli_fail(c, "out of memory");
	_cleanup_(reply_done) struct reply rep = {0};
	if (cli_call(c, "GET", path, NULL, 0, true, &rep) == 0 && rep.status == 200) {
		bool current = c->cfg.project &&
		               strcmp(c->cfg.project, json_string_value(json_object_get(rep.json, "id")) ?: "") == 0;
		if (current)
			return cli_fail(c, "CONFLICT: project %s exists already, and it is the current one", safe);
		return cli_fail(c, "CONFLICT: project %s exists already: choose it with zmesh use %s", safe, safe);
	}
	return cli_fail(
	    c, "CONFLICT: the slug %s is taken by a project of another user: choose another NAME, or --slug", safe);
}

static int projects_create(struct cli *c, int argc, char **argv)
{
	enum { OPT_SLUG = 1, OPT_TIER };
	static const struct option opts[] = {
	    {"slug", required_argument, NULL, OPT_SLUG},
	    {"tier", required_argument, NULL, OPT_TIER},
	    CLI_COMMON_OPTIONS,
	    {0},
	};
	const char *slug = NULL, *tier = NULL;
	int o, rc;
	while ((o = cli_next_opt(c, argc, argv, opts, projects_usage, &rc)) != OPT_END) {
		if (o == OPT_EXIT)
			return rc;
		if (o == OPT_SLUG)
			slug = optarg;
		else
			tier = optarg;
	}
	if (argc - optind != 1)
		return cli_usage_error(projects_usage, "projects create takes one NAME");
	_cleanup_json_ json_t *body = json_pack("{s:s}", "name", argv[optind]);
	if (!body || (slug && json_object_set_new(body, "slug", json_string(slug)) < 0) ||
	    (tier && json_object_set_new(body, "tier", json_string(tier)) < 0))
		return cli_usage_error(projects_usage, "names, slugs and tiers must be valid UTF-8");

	_cleanup_(reply_done) struct reply rep = {0};
	if (cli_call(c, "POST", "/projects", body, 0, true, &rep) < 0)
		return cli_fail(c, NULL);
	if (rep.status == 409)
		return project_exists(c, slug, argv[optind]);
	if (rep.status < 200 || rep.status > 299) {
		_cleanup_free_ char *line = reply_error_line(&rep);
		return cli_fail(c, "%s%s", line ? line : "request failed",
		                rep.status == 401 ? " (run zmesh login)" : "");
	}
	/* A first project becomes the current one: nothing else could be. */
	bool chosen = !c->cfg.project;
	if (chosen && cli_use_project(c, rep.json) < 0)
		return cli_fail(c, NULL);
	if (c->json) {
		cli_print_raw(&rep);
	} else {
		char s[128], t[64], id[64];
		_cleanup_free_ char *line = NULL;
		json_t *p = rep.json;
		if (asprintf(&line, "Created project %s (tier %s, id %s)%s",
		             cell_json(json_object_get(p, "slug"), s, sizeof(s)),
		             cell_json(json_object_get(p, "tier"), t, sizeof(t)),
		             cell_json(json_object_get(p, "id"), id, sizeof(id)),
		             chosen ? "; it is now the current one." : ".") > 0) {
			_cleanup_free_ char *safe = cli_sanitize(line, 512, false);
			puts(safe ? safe : "Created.");
		}
	}
	return CLI_EXIT_OK;
}

static int projects_list(struct cli *c, int argc, char **argv)
{
	int rc;
	if (cli_plain_opts(c, argc, argv, projects_usage, &rc) == OPT_EXIT)
		return rc;
	if (optind < argc)
		return cli_usage_error(projects_usage, "unexpected argument '%s'", argv[optind]);
	_cleanup_(reply_done) struct reply rep = {0};
	if (cli_call(c, "GET", "/projects", NULL, 0, false, &rep) < 0)
		return cli_fail(c, NULL);
	json_t *list = json_object_get(rep.json, "projects");
	if (!json_is_array(list))
		return cli_fail(c, "the server's answer has no project list");
	if (c->json) {
		cli_print_raw(&rep);
		return CLI_EXIT_OK;
	}
	static const char *const header[] = {"", "SLUG", "NAME", "TIER", "ID", "CREATED", NULL};
	_cleanup_(table_freep) struct table *t = table_new(header);
	size_t i;
	json_t *p;
	int r = t ? 0 : -ENOMEM;
	json_array_foreach (list, i, p) {
		char slug[128], name[256], tier[64], id[64], created[64];
		const char *pid = json_string_value(json_object_get(p, "id"));
		const char *cells[] = {
		    pid && c->cfg.project && strcmp(pid, c->cfg.project) == 0 ? "*" : "",
		    cell_json(json_object_get(p, "slug"), slug, sizeof(slug)),
		    cell_json(json_object_get(p, "name"), name, sizeof(name)),
		    cell_json(json_object_get(p, "tier"), tier, sizeof(tier)),
		    cell_json(json_object_get(p, "id"), id, sizeof(id)),
		    cell_time(json_object_get(p, "created_at"), created, sizeof(created)),
		};
		if (r >= 0)
			r = table_add(t, cells);
	}
	if (r < 0)
		return cli_fail(c, "out of memory");
	if (json_array_size(list) == 0)
		printf("No projects yet: zmesh projects create NAME\n");
	else
		table_print(t, stdout);
	return CLI_EXIT_OK;
}

/* The current project's members ([{user_id, email, role, added_at}]). */
static int members_get(struct cli *c, const char *project, struct reply *rep)
{
	_cleanup_free_ char *path = CLI_PATH("projects", project, "members");
	if (!path)
		return cli_fail(c, "out of memory");
	if (cli_call(c, "GET", path, NULL, 0, false, rep) < 0)
		return cli_fail(c, NULL);
	if (!json_is_array(json_object_get(rep->json, "members")))
		return cli_fail(c, "the server's answer has no member list");
	return 0;
}

static int members_list(struct cli *c, int argc, char **argv, const char *project)
{
	if (optind < argc)
		return cli_usage_error(members_usage, "unexpected argument '%s'", argv[optind]);
	_cleanup_(reply_done) struct reply rep = {0};
	int r = members_get(c, project, &rep);
	if (r != 0)
		return r;
	if (c->json) {
		cli_print_raw(&rep);
		return CLI_EXIT_OK;
	}
	static const char *const header[] = {"EMAIL", "ROLE", "USER ID", "ADDED", NULL};
	_cleanup_(table_freep) struct table *t = table_new(header);
	r = t ? 0 : -ENOMEM;
	size_t i;
	json_t *m;
	json_array_foreach (json_object_get(rep.json, "members"), i, m) {
		char email[300], role[32], id[64], added[64];
		const char *cells[] = {
		    cell_json(json_object_get(m, "email"), email, sizeof(email)),
		    cell_json(json_object_get(m, "role"), role, sizeof(role)),
		    cell_json(json_object_get(m, "user_id"), id, sizeof(id)),
		    cell_time(json_object_get(m, "added_at"), added, sizeof(added)),
		};
		if (r >= 0)
			r = table_add(t, cells);
	}
	if (r < 0)
		return cli_fail(c, "out of memory");
	table_print(t, stdout);
	return CLI_EXIT_OK;
}

/* Members are removed by email: the id is looked up in the member list. */
static int members_remove(struct cli *c, int argc, char **argv, const char *project)
{
	if (argc - optind != 1 || !*argv[optind])
		return cli_usage_error(members_usage, "members remove takes one EMAIL");
	const char *email = argv[optind];
	_cleanup_(reply_done) struct reply list = {0};
	int r = members_get(c, project, &list);
	if (r != 0)
		return r;
	const char *uid = NULL;
	size_t i;
	json_t *m;
	json_array_foreach (json_object_get(list.json, "members"), i, m) {
		const char *e = json_string_value(json_object_get(m, "email"));
		if (e && strcasecmp(e, email) == 0)
			uid = json_string_value(json_object_get(m, "user_id"));
	}
	_cleanup_free_ char *safe = cli_sanitize(email, 256, false);
	if (!uid)
		return cli_fail(c, "NOT_FOUND: %s is not a member of the project (see zmesh projects members list)",
		                safe ? safe : "that user");
	_cleanup_free_ char *path = CLI_PATH("projects", project, "members", uid);
	_cleanup_free_ char *what = NULL;
	if (!path || asprintf(&what, "the membership of %s", email) < 0)
		return cli_fail(c, "out of memory");
	int rc = cli_confirm(c, what);
	if (rc != 0)
		return rc;
	_cleanup_(reply_done) struct reply rep = {0};
	if (cli_call(c, "DELETE", path, NULL, 0, false, &rep) < 0)
		return cli_fail(c, NULL);
	if (c->json)
		cli_print_raw(&rep);
	else
		printf("%s is no longer a member of the project.\n", safe ? safe : "The user");
	return CLI_EXIT_OK;
}

/* zmesh projects members list|remove (add is cli_members, users.c). */
static int projects_members(struct cli *c, int argc, char **argv)
{
	const char *sub = argc >= 2 ? argv[1] : "";
	int (*fn)(struct cli *, int, char **, const char *) = strcmp(sub, "list") == 0     ? members_list
	                                                      : strcmp(sub, "remove") == 0 ? members_remove
	                                                                                   : NULL;
	if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0) {
		printf("usage: %s\n", members_usage);
		return CLI_EXIT_OK;
	}
	if (strcmp(sub, "add") == 0)
		return cli_members(c, argc, argv);
	if (!fn)
		return cli_usage_error(members_usage, "members takes list, add EMAIL or remove EMAIL");
	argc--;
	argv++;
	optind = 0;
	int rc;
	if (cli_plain_opts(c, argc, argv, members_usage, &rc) == OPT_EXIT)
		return rc;
	const char *project = cli_project(c);
	if (!project)
		return cli_fail(c, NULL);
	return fn(c, argc, argv, project);
}

int cmd_projects(struct cli *c, int argc, char **argv)
{
	if (argc < 2)
		return cli_usage_error(projects_usage, "which projects command?");
	const char *sub = argv[1];
	if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0) {
		printf("usage: %s\n", projects_usage);
		return CLI_EXIT_OK;
	}
	optind = 0;
	if (strcmp(sub, "create") == 0)
		return projects_create(c, argc - 1, argv + 1);
	if (strcmp(sub, "list") == 0)
		return projects_list(c, argc - 1, argv + 1);
	if (strcmp(sub, "members") == 0)
		return projects_members(c, argc - 1, argv + 1);
	return cli_usage_error(projects_usage, "unknown projects command '%s'", sub);
}

int cli_use_only_project(struct cli *c)
{
	_cleanup_(reply_done) struct reply rep = {0};
	struct zerr saved = c->err;
	int r = cli_call(c, "GET", "/projects", NULL, 0, false, &rep);
	c->err = saved;
	json_t *list = r == 0 ? json_object_get(rep.json, "projects") : NULL;
	if (!json_is_array(list))
		return -1;
	size_t n = json_array_size(list);
	if (n == 1 && cli_use_project(c, json_array_get(list, 0)) < 0) {
		c->err = saved;
		return -1;
	}
	return n > 1 ? 2 : (int)n;
}

int cmd_use(struct cli *c, int argc, char **argv)
{
	int rc;
	if (cli_plain_opts(c, argc, argv, use_usage, &rc) == OPT_EXIT)
		return rc;
	if (argc - optind != 1 || !*argv[optind])
		return cli_usage_error(use_usage, "use takes one PROJECT");
	_cleanup_free_ char *path = CLI_PATH("projects", argv[optind]);
	if (!path)
		return cli_fail(c, "out of memory");
	_cleanup_(reply_done) struct reply rep = {0};
	if (cli_call(c, "GET", path, NULL, 0, false, &rep) < 0)
		return cli_fail(c, NULL);
	int r = cli_use_project(c, rep.json);
	if (r < 0)
		return cli_fail(c, NULL);
	if (c->json) {
		cli_print_raw(&rep);
	} else {
		_cleanup_free_ char *slug = cli_sanitize(c->cfg.project_slug ? c->cfg.project_slug : "-", 128, false);
		_cleanup_free_ char *id = cli_sanitize(c->cfg.project, 64, false);
		printf("Using project %s (%s).\n", slug ? slug : "?", id ? id : "?");
	}
	return CLI_EXIT_OK;
}

static int keys_create(struct cli *c, int argc, char **argv, const char *project)
{
	if (argc - optind != 1)
		return cli_usage_error(keys_usage, "keys create takes one NAME");
	_cleanup_json_ json_t *body = json_pack("{s:s}", "name", argv[optind]);
	_cleanup_free_ char *path = CLI_PATH("projects", project, "api-keys");
	if (!body)
		return cli_usage_error(keys_usage, "the key's name must be valid UTF-8");
	if (!path)
		return cli_fail(c, "out of memory");
	_cleanup_(reply_done) struct reply rep = {0};
	if (cli_call(c, "POST", path, body, 0, false, &rep) < 0)
		return cli_fail(c, NULL);
	const char *key = json_string_value(json_object_get(rep.json, "key"));
	if (c->json) {
		cli_print_raw(&rep);
	} else if (key) {
		_cleanup_free_ char *k = cli_sanitize(key, 512, false);
		printf("%s\n", k ? k : "?");
		fprintf(stderr,
		        "This key is shown once: keep it now. Invoke with: curl -X POST -H 'x-api-key: KEY' "
		        "%s/api/functions/SLUG -d '{...}'\n",
		        c->cfg.url);
	} else {
		return cli_fail(c, "the server's answer has no key");
	}
	return CLI_EXIT_OK;
}

static int keys_list(struct cli *c, int argc, char **argv, const char *project)
{
	if (optind < argc)
		return cli_usage_error(keys_usage, "unexpected argument '%s'", argv[optind]);
	_cleanup_free_ char *path = CLI_PATH("projects", project, "api-keys");
	if (!path)
		return cli_fail(c, "out of memory");
	_cleanup_(reply_done) struct reply rep = {0};
	if (cli_call(c, "GET", path, NULL, 0, false, &rep) < 0)
		return cli_fail(c, NULL);
	json_t *list = json_object_get(rep.json, "api_keys");
	if (!json_is_array(list))
		return cli_fail(c, "the server's answer has no key list");
	if (c->json) {
		cli_print_raw(&rep);
		return CLI_EXIT_OK;
	}
	static const char *const header[] = {"ID", "NAME", "PREFIX", "CREATED", "LAST USED", NULL};
	_cleanup_(table_freep) struct table *t = table_new(header);
	int r = t ? 0 : -ENOMEM;
	size_t i;
	json_t *k;
	json_array_foreach (list, i, k) {
		char id[64], name[256], prefix[64], created[64], used[64];
		const char *cells[] = {
		    cell_json(json_object_get(k, "id"), id, sizeof(id)),
		    cell_json(json_object_get(k, "name"), name, sizeof(name)),
		    cell_json(json_object_get(k, "prefix"), prefix, sizeof(prefix)),
		    cell_time(json_object_get(k, "created_at"), created, sizeof(created)),
		    cell_time(json_object_get(k, "last_used_at"), used, sizeof(used)),
		};
		if (r >= 0)
			r = table_add(t, cells);
	}
	if (r < 0)
		return cli_fail(c, "out of memory");
	if (json_array_size(list) == 0)
		printf("No API keys: zmesh keys create NAME\n");
	else
		table_print(t, stdout);
	return CLI_EXIT_OK;
}

static int keys_delete(struct cli *c, int argc, char **argv, const char *project)
{
	if (argc - optind != 1 || !*argv[optind])
		return cli_usage_error(keys_usage, "keys delete takes one KEY_ID (see zmesh keys list)");
	_cleanup_free_ char *path = CLI_PATH("projects", project, "api-keys", argv[optind]);
	_cleanup_free_ char *what = NULL;
	if (!path || asprintf(&what, "API key %s", argv[optind]) < 0)
		return cli_fail(c, "out of memory");
	int rc = cli_confirm(c, what);
	if (rc != 0)
		return rc;
	_cleanup_(reply_done) struct reply rep = {0};
	if (cli_call(c, "DELETE", path, NULL, 0, false, &rep) < 0)
		return cli_fail(c, NULL);
	if (c->json)
		cli_print_raw(&rep);
	else
		printf("Deleted the key.\n");
	return CLI_EXIT_OK;
}

int cmd_keys(struct cli *c, int argc, char **argv)
{
	if (argc < 2)
		return cli_usage_error(keys_usage, "which keys command?");
	const char *sub = argv[1];
	if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0) {
		printf("usage: %s\n", keys_usage);
		return CLI_EXIT_OK;
	}
	int (*fn)(struct cli *, int, char **, const char *) = strcmp(sub, "create") == 0   ? keys_create
	                                                      : strcmp(sub, "list") == 0   ? keys_list
	                                                      : strcmp(sub, "delete") == 0 ? keys_delete
	                                                                                   : NULL;
	if (!fn)
		return cli_usage_error(keys_usage, "unknown keys command '%s'", sub);
	argc--;
	argv++;
	optind = 0;
	int rc;
	if (cli_plain_opts(c, argc, argv, keys_usage, &rc) == OPT_EXIT)
		return rc;
	const char *project = cli_project(c);
	if (!project)
		return cli_fail(c, NULL);
	return fn(c, argc, argv, project);
}

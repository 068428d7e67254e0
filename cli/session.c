/* session.c - zmesh login and logout. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "tty.h"

/* Longer than any password a person types; bounds what stdin can feed us. */
#define PASSWORD_MAX 1024

static const char login_usage[] = "zmesh login --url URL --email EMAIL [--password PASSWORD]\n\n"
                                  "  Without --password, the password is asked for (no echo) on a terminal,\n"
                                  "  else read as one line from stdin. --password is visible to other local users.";

static void wipe(char *buf, size_t size)
{
	explicit_bzero(buf, size);
}

/* Ask on the terminal with echo off (tty.h: Ctrl-C interrupts the read
 * and the terminal gets its echo back). */
static int prompt_password(const char *question, char *buf, size_t size, struct zerr *err)
{
	int r = tty_prompt_hidden(question, buf, size);
	if (r == -EINTR) {
		fputc('\n', stderr);
		return zerr_set(err, r, "interrupted");
	}
	if (r == -E2BIG)
		return zerr_set(err, r, "the password is longer than %d bytes", PASSWORD_MAX - 1);
	if (r == -ENODATA)
		return zerr_set(err, r, "no password given");
	if (r < 0)
		return zerr_set(err, r, "cannot read the password: %s", strerror(-r));
	return 0;
}

static int get_password(const char *given, char *buf, size_t size, struct zerr *err)
{
	if (given) {
		if (strlen(given) >= size)
			return zerr_set(err, -E2BIG, "the password is longer than %zu bytes", size - 1);
		snprintf(buf, size, "%s", given);
		return 0;
	}
	if (isatty(STDIN_FILENO))
		return prompt_password("Password: ", buf, size, err);
	int r = tty_read_line(STDIN_FILENO, buf, size);
	if (r == -ENODATA)
		return zerr_set(err, r, "no password given: pass --password or write it to stdin");
	if (r == -E2BIG)
		return zerr_set(err, r, "the password is longer than %zu bytes", size - 1);
	if (r < 0)
		return zerr_set(err, r, "cannot read the password from stdin: %s", strerror(-r));
	return 0;
}

static bool same(const char *a, const char *b)
{
	return a && b && strcmp(a, b) == 0;
}

int cmd_login(struct cli *c, int argc, char **argv)
{
	enum { OPT_URL = 1, OPT_EMAIL, OPT_PASSWORD };
	static const struct option opts[] = {
	    {"url", required_argument, NULL, OPT_URL},
	    {"email", required_argument, NULL, OPT_EMAIL},
	    {"password", required_argument, NULL, OPT_PASSWORD},
	    CLI_COMMON_OPTIONS,
	    {0},
	};
	const char *url_in = NULL, *email = NULL, *given = NULL;
	int o, rc;
	while ((o = cli_next_opt(c, argc, argv, opts, login_usage, &rc)) != OPT_END) {
		if (o == OPT_EXIT)
			return rc;
		if (o == OPT_URL)
			url_in = optarg;
		else if (o == OPT_EMAIL)
			email = optarg;
		else
			given = optarg;
	}
	if (optind < argc)
		return cli_usage_error(login_usage, "unexpected argument '%s'", argv[optind]);
	/* Logging in again to the same place needs neither URL nor email. */
	if (!url_in)
		url_in = c->cfg.url;
	if (!email)
		email = c->cfg.email;
	if (!url_in || !email)
		return cli_usage_error(login_usage, "give --url and --email");
	if (!*email || strlen(email) > 320)
		return cli_usage_error(login_usage, "--email must be 1 to 320 characters");

	_cleanup_free_ char *url = NULL;
	if (client_check_url(url_in, &url, &c->err) < 0)
		return cli_usage_error(login_usage, "%s", c->err.msg);

	char password[PASSWORD_MAX];
	int r = get_password(given, password, sizeof(password), &c->err);
	_cleanup_json_ json_t *body = r < 0 ? NULL : json_pack("{s:s, s:s}", "email", email, "password", password);
	wipe(password, sizeof(password));
	if (r < 0)
		return cli_fail(c, NULL);
	if (!body)
		return cli_fail(c, "the email and password must be valid UTF-8");

	if (cli_connect(c, url) < 0)
		return cli_fail(c, NULL);
	_cleanup_(reply_done) struct reply rep = {0};
	r = client_request(&c->http, "POST", "/auth/login", body, NULL, &rep, &c->err);
	/* Our copy of the password inside the request object goes now. */
	json_t *pw = json_object_get(body, "password");
	wipe((char *)json_string_value(pw), json_string_length(pw));
	if (r < 0)
		return cli_fail(c, NULL);
	if (rep.status != 200) {
		_cleanup_free_ char *line = reply_error_line(&rep);
		return cli_fail(c, "login failed: %s", line ? line : "refused");
	}
	const char *token = json_string_value(json_object_get(rep.json, "token"));
	const char *expires = json_string_value(json_object_get(rep.json, "expires_at"));
	json_t *user = json_object_get(rep.json, "user");
	const char *who = json_string_value(json_object_get(user, "email"));
	if (!token || !*token)
		return cli_fail(c, "login failed: the server's answer has no token");

	/* Another server or another user: the chosen project was theirs. */
	if (!same(c->cfg.url, url) || !same(c->cfg.email, who ? who : email)) {
		config_set(&c->cfg.project, NULL, NULL);
		config_set(&c->cfg.project_slug, NULL, NULL);
	}
	if (config_set(&c->cfg.url, url, &c->err) < 0 || config_set(&c->cfg.token, token, &c->err) < 0 ||
	    config_set(&c->cfg.expires_at, expires, &c->err) < 0 ||
	    config_set(&c->cfg.email, who ? who : email, &c->err) < 0 || cli_save_config(c) < 0)
		return cli_fail(c, NULL);

	/* A user with one project has nothing to choose. */
	int projects = c->cfg.project ? -1 : cli_use_only_project(c);
	if (c->json) {
		/* The token stays in the config file: never on stdout. */
		json_object_del(rep.json, "token");
		json_object_set_new(rep.json, "url", json_string(url));
		if (projects == 1)
			json_object_set_new(rep.json, "project", json_string(c->cfg.project_slug));
		cli_print_json(rep.json);
	} else {
		_cleanup_free_ char *w = cli_sanitize(who ? who : email, 320, false);
		_cleanup_free_ char *e = expires ? cli_sanitize(expires, 64, false) : NULL;
		printf("Logged in to %s as %s%s%s%s.\n", url, w ? w : "?", e ? " (session until " : "", e ? e : "",
		       e ? ")" : "");
		_cleanup_free_ char *slug = cli_sanitize(c->cfg.project_slug ? c->cfg.project_slug : "?", 128, false);
		if (projects == 0)
			printf("No project yet: zmesh projects create NAME\n");
		else if (projects == 1)
			printf("Using project %s, your only one.\n", slug ? slug : "?");
		else if (projects > 1)
			printf("Choose a project: zmesh use PROJECT (zmesh projects list shows them).\n");
	}
	return CLI_EXIT_OK;
}

static const char passwd_usage[] =
    "zmesh passwd    (change your password)\n\n"
    "  On a terminal, asks for the current password and twice for the new one, without echo;\n"
    "  else reads two lines from stdin: the current password, then the new one. Sessions signed\n"
    "  before the change end; this one goes on with a new token.";

/* The current and the new password: asked for on a terminal (the new one
 * twice), else two lines of stdin. */
static int read_passwords(char *current, char *new_pw, size_t size, struct zerr *err)
{
	if (!isatty(STDIN_FILENO)) {
		int r = tty_read_line(STDIN_FILENO, current, size);
		if (r == 0)
			r = tty_read_line(STDIN_FILENO, new_pw, size);
		if (r == -ENODATA)
			return zerr_set(err, r, "give two lines on stdin: the current password, then the new one");
		if (r == -E2BIG)
			return zerr_set(err, r, "a password is longer than %zu bytes", size - 1);
		if (r < 0)
			return zerr_set(err, r, "cannot read the passwords from stdin: %s", strerror(-r));
		return 0;
	}
	char again[PASSWORD_MAX];
	int r = prompt_password("Current password: ", current, size, err);
	if (r == 0)
		r = prompt_password("New password: ", new_pw, size, err);
	if (r == 0)
		r = prompt_password("New password again: ", again, sizeof(again), err);
	if (r == 0 && strcmp(new_pw, again) != 0)
		r = zerr_set(err, -EINVAL, "the two new passwords differ; nothing changed");
	wipe(again, sizeof(again));
	return r;
}

int cmd_passwd(struct cli *c, int argc, char **argv)
{
	int rc;
	if (cli_plain_opts(c, argc, argv, passwd_usage, &rc) == OPT_EXIT)
		return rc;
	if (optind < argc)
		return cli_usage_error(passwd_usage, "unexpected argument '%s'", argv[optind]);
	if (!c->cfg.url || !c->cfg.token)
		return cli_fail(c, "not logged in: run zmesh login --url URL --email EMAIL");
	char current[PASSWORD_MAX], new_pw[PASSWORD_MAX];
	int r = read_passwords(current, new_pw, sizeof(current), &c->err);
	_cleanup_json_ json_t *body =
	    r < 0 ? NULL : json_pack("{s:s, s:s}", "current_password", current, "new_password", new_pw);
	wipe(current, sizeof(current));
	wipe(new_pw, sizeof(new_pw));
	if (r < 0)
		return cli_fail(c, NULL);
	if (!body)
		return cli_fail(c, "the passwords must be valid UTF-8");
	_cleanup_(reply_done) struct reply rep = {0};
	r = cli_call(c, "POST", "/auth/password", body, 0, true, &rep);
	/* Our copies inside the request object go now. */
	const char *keys[] = {"current_password", "new_password"};
	for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
		json_t *pw = json_object_get(body, keys[i]);
		wipe((char *)json_string_value(pw), json_string_length(pw));
	}
	if (r < 0)
		return cli_fail(c, NULL);
	if (rep.status != 200) {
		_cleanup_free_ char *line = reply_error_line(&rep);
		return cli_fail(c, "the password was not changed: %s", line ? line : "refused");
	}
	const char *token = json_string_value(json_object_get(rep.json, "token"));
	const char *expires = json_string_value(json_object_get(rep.json, "expires_at"));
	if (!token || !*token)
		return cli_fail(c, "the password was changed, but the answer has no new token: run zmesh login");
	if (config_set(&c->cfg.token, token, &c->err) < 0 || config_set(&c->cfg.expires_at, expires, &c->err) < 0 ||
	    cli_save_config(c) < 0)
		return cli_fail(c, NULL);
	if (c->json) {
		json_object_del(rep.json, "token");
		cli_print_json(rep.json);
	} else {
		printf("Password changed. Sessions signed with the old one have ended; this one goes on.\n");
	}
	return CLI_EXIT_OK;
}

int cmd_logout(struct cli *c, int argc, char **argv)
{
	static const char usage[] = "zmesh logout    (forget the saved session token)";
	static const struct option opts[] = {CLI_COMMON_OPTIONS, {0}};
	int o, rc;
	while ((o = cli_next_opt(c, argc, argv, opts, usage, &rc)) != OPT_END)
		if (o == OPT_EXIT)
			return rc;
	if (optind < argc)
		return cli_usage_error(usage, "unexpected argument '%s'", argv[optind]);
	if (!c->cfg.token) {
		printf("Not logged in.\n");
		return CLI_EXIT_OK;
	}
	config_set(&c->cfg.token, NULL, NULL);
	config_set(&c->cfg.expires_at, NULL, NULL);
	if (cli_save_config(c) < 0)
		return cli_fail(c, NULL);
	printf("Logged out.\n");
	return CLI_EXIT_OK;
}

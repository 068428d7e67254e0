/* admin.c - see admin.h */
#define _GNU_SOURCE
#include "admin.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "auth.h"
#include "config.h"
#include "errors.h"
#include "pgembed.h"
#include "store.h"
#include "tty.h"
#include "validate.h"

static const char usage[] = "usage: zmeshd admin set-password EMAIL [--state-dir DIR]\n"
                            "\n"
                            "Sets EMAIL's password, read as one line from stdin (asked for twice, without\n"
                            "echo, on a terminal), and ends the sessions signed with the old one. Run it as\n"
                            "root on the host of a running zmeshd, with the same --state-dir or\n"
                            "ZMESH_STATE_DIR, or the same DATABASE_URL.\n"
                            "The rule: " VAL_PASSWORD_RULE ".\n";

/* The new password: from a terminal twice, else one line of stdin. */
static int read_new_password(const char *email, char *buf, size_t size, struct zerr *err)
{
	int r;
	if (isatty(STDIN_FILENO)) {
		char q[400], again[VAL_PASSWORD_MAX + 2];
		snprintf(q, sizeof(q), "New password for %s: ", email);
		r = tty_prompt_hidden(q, buf, size);
		if (r == 0)
			r = tty_prompt_hidden("Again: ", again, sizeof(again));
		if (r == 0 && strcmp(buf, again) != 0)
			r = zerr_set(err, -EINVAL, "the two passwords differ");
		explicit_bzero(again, sizeof(again));
		if (r == -EINVAL)
			return r;
	} else {
		r = tty_read_line(STDIN_FILENO, buf, size);
	}
	if (r == -ENODATA)
		return zerr_set(err, r, "no password given: write it as one line to stdin");
	if (r == -E2BIG)
		return zerr_set(err, r, "the password is longer than %d bytes", VAL_PASSWORD_MAX);
	if (r < 0)
		return zerr_set(err, r, "cannot read the password: %s", strerror(-r));
	return 0;
}

/* The control plane, as zmeshd reaches it; never a cluster of our own. */
static int connect_control_plane(const struct zconfig *cfg, PGconn **ret, struct zerr *err)
{
	char conninfo[1200];
	if (cfg->database_url[0]) {
		snprintf(conninfo, sizeof(conninfo), "%s", cfg->database_url);
	} else {
		int r = pge_conninfo_running(cfg->state_dir, "zmesh", conninfo, sizeof(conninfo));
		if (r == -ENOENT)
			return zerr_set(err, r,
			                "no zmeshd database runs under %s/pg: start zmeshd with this state directory "
			                "(--state-dir or ZMESH_STATE_DIR) first; this command does not start it",
			                cfg->state_dir);
		if (r < 0)
			return zerr_set(err, r, "state directory %s: path too long", cfg->state_dir);
	}
	struct zerr why = {0};
	int r = db_connect(conninfo, ret, &why);
	if (r < 0)
		return zerr_set(err, r, "cannot reach the control plane (is zmeshd running?): %s", why.msg);
	return 0;
}

static int set_password(const struct zconfig *cfg, const char *email)
{
	struct zerr err = {0};
	_cleanup_pgconn_ PGconn *c = NULL;
	char uid[STORE_ID_LEN + 1];
	_cleanup_free_ char *old_hash = NULL, *hash = NULL;
	json_auto_t *user = NULL;
	int64_t not_before = 0;
	/* The user first: nobody types a password for an account that is not
	 * there. */
	int r = connect_control_plane(cfg, &c, &err);
	if (r == 0)
		r = store_user_for_login(c, email, uid, &old_hash, &not_before, &user, &err);
	if (r == -ZE_NOT_FOUND) {
		fprintf(stderr, "zmeshd admin: no user %s\n", email);
		return 1;
	}
	if (r < 0) {
		fprintf(stderr, "zmeshd admin: %s\n", err.msg);
		return 1;
	}
	char password[VAL_PASSWORD_MAX + 2];
	r = read_new_password(email, password, sizeof(password), &err);
	if (r == 0)
		r = val_password(password, email, &err);
	if (r == 0)
		r = auth_password_hash(password, &hash, &err);
	explicit_bzero(password, sizeof(password));
	if (r == 0)
		r = store_user_set_password(c, uid, hash, NULL, &err);
	if (r < 0) {
		fprintf(stderr, "zmeshd admin: %s\n", err.msg);
		return 1;
	}
	printf("zmeshd admin: set the password of %s; sessions signed before now no longer work.\n", email);
	return 0;
}

int admin_main(int argc, char **argv)
{
	if (argc < 3 || strcmp(argv[2], "--help") == 0 || strcmp(argv[2], "-h") == 0) {
		fputs(usage, argc < 3 ? stderr : stdout);
		return argc < 3 ? 2 : 0;
	}
	if (strcmp(argv[2], "set-password") != 0) {
		fprintf(stderr, "zmeshd admin: unknown command \"%s\"\n%s", argv[2], usage);
		return 2;
	}
	if (argc < 4 || strncmp(argv[3], "--", 2) == 0) {
		fprintf(stderr, "zmeshd admin: set-password needs an EMAIL\n%s", usage);
		return 2;
	}
	const char *email = argv[3];
	/* The daemon's settings, from its flags and environment: the same
	 * state directory or DATABASE_URL. */
	char *opts[argc];
	int nopts = 0;
	opts[nopts++] = argv[0];
	for (int i = 4; i < argc; i++)
		opts[nopts++] = argv[i];
	static struct zconfig cfg;
	struct zerr err = {0};
	int r = zconfig_load(&cfg, nopts, opts, &err);
	if (r == 1) {
		fputs(usage, stdout);
		return 0;
	}
	if (r < 0) {
		fprintf(stderr, "zmeshd admin: %s\n", err.msg);
		return 2;
	}
	if (geteuid() != 0) {
		fprintf(stderr, "zmeshd admin: must run as root, like zmeshd (it reaches the database as the "
		                "cluster's superuser)\n");
		return 2;
	}
	return set_password(&cfg, email);
}

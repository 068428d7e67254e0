/* config.c - load and save the client's config file. */
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"

/* A config holds a few short strings; anything bigger is not ours. */
#define CONFIG_MAX_SIZE  (64 * 1024)
#define CONFIG_MAX_FIELD (16 * 1024)

int config_path(char **ret, bool *ret_default, struct zerr *err)
{
	const char *env = getenv("ZMESH_CONFIG");
	if (env && *env) {
		char *p = strdup(env);
		if (!p)
			return zerr_set(err, -ENOMEM, "out of memory");
		*ret = p;
		*ret_default = false;
		return 0;
	}
	const char *home = getenv("HOME");
	if (!home || !*home) {
		struct passwd *pw = getpwuid(getuid());
		home = pw ? pw->pw_dir : NULL;
	}
	if (!home || *home != '/')
		return zerr_set(err, -ENOENT, "cannot find the home directory: set HOME or ZMESH_CONFIG");
	char *p;
	if (asprintf(&p, "%s/.config/zmesh/config.json", home) < 0)
		return zerr_set(err, -ENOMEM, "out of memory");
	*ret = p;
	*ret_default = true;
	return 0;
}

void config_done(struct cli_config *cfg)
{
	if (!cfg)
		return;
	free(cfg->url);
	free(cfg->token);
	free(cfg->expires_at);
	free(cfg->email);
	free(cfg->project);
	free(cfg->project_slug);
	*cfg = (struct cli_config){0};
}

int config_set(char **field, const char *value, struct zerr *err)
{
	char *copy = NULL;
	if (value && !(copy = strdup(value)))
		return zerr_set(err, -ENOMEM, "out of memory");
	free(*field);
	*field = copy;
	return 0;
}

static int take_field(json_t *root, const char *key, char **out, const char *path, struct zerr *err)
{
	json_t *v = json_object_get(root, key);
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > CONFIG_MAX_FIELD ||
	    strlen(json_string_value(v)) != json_string_length(v))
		return zerr_set(err, -EINVAL, "%s: \"%s\" must be a non-empty string; fix or remove the file", path,
		                key);
	return config_set(out, json_string_value(v), err);
}

int config_load(const char *path, struct cli_config *ret, struct zerr *err)
{
	struct cli_config cfg = {0};
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0 && errno == ENOENT) {
		*ret = cfg;
		return 0;
	}
	if (fd < 0)
		return zerr_set(err, -errno, "cannot open %s: %s", path, strerror(errno));
	struct stat st;
	if (fstat(fd, &st) < 0)
		return zerr_set(err, -errno, "cannot stat %s: %s", path, strerror(errno));
	if (!S_ISREG(st.st_mode))
		return zerr_set(err, -EINVAL, "%s is not a regular file", path);
	if (st.st_size > CONFIG_MAX_SIZE)
		return zerr_set(err, -EFBIG, "%s is too big to be a zmesh config", path);

	_cleanup_free_ char *text = NULL;
	size_t len;
	int r = cli_read_fd(fd, CONFIG_MAX_SIZE, &text, &len);
	if (r < 0)
		return zerr_set(err, r, "cannot read %s: %s", path, strerror(-r));
	json_error_t jerr;
	_cleanup_json_ json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root || !json_is_object(root))
		return zerr_set(err, -EINVAL, "%s is not a zmesh config (line %d: %s); fix or remove it", path,
		                root ? 1 : jerr.line, root ? "not an object" : jerr.text);

	struct {
		const char *key;
		char **field;
	} fields[] = {
	    {"url", &cfg.url},     {"token", &cfg.token},     {"expires_at", &cfg.expires_at},
	    {"email", &cfg.email}, {"project", &cfg.project}, {"project_slug", &cfg.project_slug},
	};
	for (size_t i = 0; i < ELEMENTSOF(fields); i++) {
		r = take_field(root, fields[i].key, fields[i].field, path, err);
		if (r < 0) {
			config_done(&cfg);
			return r;
		}
	}
	cfg.loose_mode = (st.st_mode & 077) != 0;
	*ret = cfg;
	return 0;
}

/* The directory path is in, in *ret (the caller frees it); NULL for a
 * file in the current directory or in /. */
static int parent_dir(const char *path, char **ret, struct zerr *err)
{
	*ret = NULL;
	char *dir = strdup(path);
	if (!dir)
		return zerr_set(err, -ENOMEM, "out of memory");
	char *slash = strrchr(dir, '/');
	if (!slash || slash == dir) {
		free(dir);
		return 0;
	}
	*slash = '\0';
	*ret = dir;
	return 0;
}

/* mkdir -p of path's parent directories, each new one mode 0700. */
static int make_parents(const char *path, struct zerr *err)
{
	_cleanup_free_ char *dir = NULL;
	int r = parent_dir(path, &dir, err);
	if (r < 0 || !dir)
		return r;
	for (char *p = dir + 1;; p++) {
		bool last = *p == '\0';
		if (*p != '/' && !last)
			continue;
		*p = '\0';
		if (mkdir(dir, 0700) < 0 && errno != EEXIST)
			return zerr_set(err, -errno, "cannot create %s: %s", dir, strerror(errno));
		if (last)
			break;
		*p = '/';
	}
	return 0;
}

static int tighten_parent(const char *path, struct zerr *err)
{
	_cleanup_free_ char *dir = NULL;
	int r = parent_dir(path, &dir, err);
	if (r < 0 || !dir)
		return r;
	struct stat st;
	if (stat(dir, &st) < 0)
		return zerr_set(err, -errno, "cannot stat %s: %s", dir, strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return zerr_set(err, -ENOTDIR, "%s is not a directory", dir);
	/* Only a directory of our own is ours to tighten. */
	if (st.st_uid == geteuid() && (st.st_mode & 07777) != 0700 && chmod(dir, 0700) < 0)
		return zerr_set(err, -errno, "cannot set the mode of %s: %s", dir, strerror(errno));
	return 0;
}

static int write_all(int fd, const char *s, size_t n)
{
	while (n > 0) {
		ssize_t k = write(fd, s, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -errno;
		s += k;
		n -= (size_t)k;
	}
	return 0;
}

int config_save(const char *path, bool own_dir, const struct cli_config *cfg, struct zerr *err)
{
	_cleanup_json_ json_t *root = json_object();
	if (!root)
		return zerr_set(err, -ENOMEM, "out of memory");
	struct {
		const char *key;
		const char *value;
	} fields[] = {
	    {"url", cfg->url},     {"token", cfg->token},     {"expires_at", cfg->expires_at},
	    {"email", cfg->email}, {"project", cfg->project}, {"project_slug", cfg->project_slug},
	};
	for (size_t i = 0; i < ELEMENTSOF(fields); i++)
		if (fields[i].value && json_object_set_new(root, fields[i].key, json_string(fields[i].value)) < 0)
			return zerr_set(err, -EINVAL, "cannot store \"%s\": not valid UTF-8", fields[i].key);
	_cleanup_free_ char *text = json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS);
	if (!text)
		return zerr_set(err, -ENOMEM, "out of memory");

	int r = make_parents(path, err);
	if (r < 0)
		return r;
	if (own_dir && (r = tighten_parent(path, err)) < 0)
		return r;

	_cleanup_free_ char *tmp = NULL;
	if (asprintf(&tmp, "%s.XXXXXX", path) < 0)
		return zerr_set(err, -ENOMEM, "out of memory");
	/* mkstemp creates the file 0600 and O_EXCL: the token is never readable
	 * by anyone else, not even for a moment. */
	_cleanup_close_ int fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return zerr_set(err, -errno, "cannot create a file next to %s: %s", path, strerror(errno));
	size_t n = strlen(text);
	text[n] = '\n';
	if ((r = write_all(fd, text, n + 1)) < 0 || (fchmod(fd, 0600) < 0 && (r = -errno)) ||
	    (fsync(fd) < 0 && (r = -errno))) {
		unlink(tmp);
		return zerr_set(err, r, "cannot write %s: %s", tmp, strerror(-r));
	}
	if (rename(tmp, path) < 0) {
		r = -errno;
		unlink(tmp);
		return zerr_set(err, r, "cannot replace %s: %s", path, strerror(-r));
	}
	return 0;
}

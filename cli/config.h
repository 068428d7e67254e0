/* config.h - the client's saved state: server URL, session token and the
 * current project, kept in one JSON file readable by its owner only. */
#pragma once

#include <stdbool.h>

#include "common.h"

/* Every field may be NULL (not logged in, no project chosen). */
struct cli_config {
	char *url;          /* "http://host:port", no trailing slash */
	char *token;        /* bearer token of the session */
	char *expires_at;   /* as the server gave it */
	char *email;        /* who logged in */
	char *project;      /* current project: its id */
	char *project_slug; /* and its slug, for people */
	bool loose_mode;    /* the file was readable by group or others */
};

/* Where the config lives: $ZMESH_CONFIG, else $HOME/.config/zmesh/config.json
 * (the home directory from the password database when HOME is unset).
 * *ret_default says whether the default location was chosen; its directory
 * is then the client's own and kept at mode 0700. */
int config_path(char **ret, bool *ret_default, struct zerr *err);

/* Read the config at path. A missing file is an empty config, not an error;
 * a file that is not a regular file, too big or not the expected JSON is. */
int config_load(const char *path, struct cli_config *ret, struct zerr *err);

/* Replace the file at path atomically (temporary file in the same directory,
 * fsync, rename), mode 0600. Missing parent directories are created with
 * mode 0700; with own_dir the immediate parent is also tightened to 0700. */
int config_save(const char *path, bool own_dir, const struct cli_config *cfg, struct zerr *err);

/* Free every field; the struct can be reused (all NULL). Accepts NULL. */
void config_done(struct cli_config *cfg);

/* Replace one field with a copy of value (NULL clears it). */
int config_set(char **field, const char *value, struct zerr *err);

/* validate.h - the shapes of what the API accepts, checked before anything
 * is stored or run. Pure functions (no I/O, no globals): unit-tested and
 * fuzzed. Every failure is a domain code (errors.h) with a message for the
 * client that names the field. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "events.h"
#include "protocol.h"
#include "tiers.h"

#define VAL_UUID_LEN     36
#define VAL_NAME_MAX     ZPROTO_MAX_NAME_BYTES /* bytes of a project, function or key name */
#define VAL_SLUG_MAX     63
#define VAL_EMAIL_MAX    254
#define VAL_PASSWORD_MIN 12 /* characters (code points) */
#define VAL_PASSWORD_MAX 1024

bool val_is_uuid(const char *s);
/* 1 to 63 of a-z 0-9 and inner dashes, never shaped like an id. */
bool val_slug(const char *s);
/* "My First Function!" -> "my-first-function"; may be empty (then invalid). */
void val_slugify(const char *name, char *out, size_t size);
/* A body that must be a JSON object whose keys are all in known (NULL
 * terminated). */
int val_object(json_t *body, const char *const *known, struct zerr *err);

/* Env vars of a function: an object of at most VAL_ENV_MAX_VARS strings,
 * names [A-Za-z_][A-Za-z0-9_]* not reserved for the runtime or the
 * platform. */
int val_env(json_t *env, struct zerr *err);

/* A function's fields on create (every required one present) or on change
 * (absent fields stay NULL / -1), validated against the project's tier.
 * Strings are borrowed from body. */
struct val_function {
	const char *name, *slug, *language, *entry_point, *code;
	json_t *env;
	int64_t timeout_ms, memory_mb;
	/* How queued events are retried: -1 when absent. on_failure: a slug,
	 * or NULL; on_failure_set when the body names it (null clears it). */
	int64_t retries, max_event_age_s;
	const char *on_failure;
	bool on_failure_set;
};
#define VAL_RETRIES_MAX     10
#define VAL_EVENT_AGE_MIN_S 60
#define VAL_EVENT_AGE_MAX_S 21600
int val_function(json_t *body, const struct tier *tier, uint64_t max_code_bytes, bool create, struct val_function *ret,
                 struct zerr *err);

/* POST /projects {name, slug?, tier?}; PATCH /projects/{pid} {name?,
 * tier?, egress?}. tier is checked against tiers; who may set it is the
 * handler's business. egress (egress_policy.h) is replaced in body by its
 * normalized form (names lower-cased, addresses in their canonical text),
 * which ret->egress borrows; NULL when absent. */
struct val_project {
	const char *name, *slug_in, *tier;
	char slug[VAL_SLUG_MAX + 1]; /* slug_in, or derived from name on create */
	json_t *egress;
};
int val_project(json_t *body, const struct tiers *tiers, bool create, struct val_project *ret, struct zerr *err);

/* The one rule for a password a person chooses (POST /users, POST
 * /auth/password, zmeshd admin set-password, ZMESH_ADMIN_PASSWORD at the first
 * start): VAL_PASSWORD_MIN..VAL_PASSWORD_MAX characters of valid UTF-8, of at
 * least two kinds (lower-case letters, upper-case letters, digits, anything
 * else), and not the account's email (ignoring case). email may be NULL.
 * -ZE_INVALID_PASSWORD with VAL_PASSWORD_RULE as the message. */
#define VAL_PASSWORD_RULE                                                                                         \
	"a password needs at least 12 characters of at least two kinds (lower-case, upper-case, digits, others) " \
	"and must not be the email"
int val_password(const char *password, const char *email, struct zerr *err);

/* POST /users {email, password, is_admin?} and POST /auth/login. */
int val_new_user(json_t *body, const char **ret_email, const char **ret_password, bool *ret_admin, struct zerr *err);
int val_login(json_t *body, const char **ret_email, const char **ret_password, struct zerr *err);
/* POST /auth/password {current_password, new_password}: both present and
 * bounded; the new one's strength is val_password's, checked by the caller
 * who knows the email. */
int val_password_change(json_t *body, const char **ret_current, const char **ret_new, struct zerr *err);

/* A name field of 1..VAL_NAME_MAX bytes ({name} of API keys). */
int val_name(json_t *body, const char **ret, struct zerr *err);
/* POST /projects/{pid}/members {email}. */
int val_member(json_t *body, const char **ret_email, struct zerr *err);

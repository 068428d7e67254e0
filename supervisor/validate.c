/* validate.c - see validate.h */
#define _GNU_SOURCE
#include "validate.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "egress_policy.h"
#include "errors.h"
#include "utf8.h"

#define SLUG_RULE "slug must be 1 to 63 of a-z, 0-9 and inner dashes, and not look like an id"

bool val_is_uuid(const char *s)
{
	if (!s || strlen(s) != VAL_UUID_LEN)
		return false;
	for (int i = 0; i < VAL_UUID_LEN; i++) {
		bool dash = i == 8 || i == 13 || i == 18 || i == 23;
		if (dash ? s[i] != '-' : !isxdigit((unsigned char)s[i]))
			return false;
	}
	return true;
}

bool val_slug(const char *s)
{
	size_t n = s ? strlen(s) : 0;
	if (n == 0 || n > VAL_SLUG_MAX || s[0] == '-' || s[n - 1] == '-' || val_is_uuid(s))
		return false;
	for (const char *c = s; *c; c++)
		if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '-'))
			return false;
	return true;
}

void val_slugify(const char *name, char *out, size_t size)
{
	size_t k = 0;
	bool dash = false;
	if (size == 0)
		return;
	for (const char *c = name; *c && k + 1 < size && k < VAL_SLUG_MAX; c++) {
		char ch = (char)tolower((unsigned char)*c);
		if ((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9')) {
			if (dash && k > 0)
				out[k++] = '-';
			if (k + 1 < size)
				out[k++] = ch;
			dash = false;
		} else
			dash = true;
	}
	/* Cut at 63: no dash may end it. */
	while (k > 0 && out[k - 1] == '-')
		k--;
	out[k] = '\0';
}

int val_object(json_t *body, const char *const *known, struct zerr *err)
{
	if (!json_is_object(body))
		return ze(err, ZE_BAD_REQUEST, "want a JSON object");
	const char *k;
	json_t *v;
	json_object_foreach (body, k, v) {
		bool ok = false;
		for (const char *const *n = known; *n && !ok; n++)
			ok = strcmp(k, *n) == 0;
		if (!ok)
			return ze(err, ZE_UNKNOWN_FIELD, "unknown field \"%.64s\"", k);
	}
	return 0;
}

/* A string field: absent is NULL; present and not a string is code. */
static int str_field_as(json_t *body, const char *name, enum ze_code code, const char **ret, struct zerr *err)
{
	json_t *v = json_object_get(body, name);
	if (v && !json_is_string(v))
		return ze(err, code, "%s must be a string", name);
	*ret = json_string_value(v);
	return 0;
}

static int str_field(json_t *body, const char *name, const char **ret, struct zerr *err)
{
	return str_field_as(body, name, ZE_BAD_REQUEST, ret, err);
}

static bool name_ok(const char *s)
{
	return s && s[0] && strlen(s) <= VAL_NAME_MAX;
}

static const char *const reserved_env_prefixes[] = {"NODE_", "LD_", "PYTHON", "ZMESH_", "PG", "NPM_", "UV_"};
static const char *const reserved_env_names[] = {
    "PATH",  "HOME", "TMPDIR", "LANG",         "LC_ALL",        "JWT_SECRET_KEY", "DATABASE_URL", "HOSTNAME",
    "SHELL", "USER", "IFS",    "OPENSSL_CONF", "SSL_CERT_FILE", "SSL_CERT_DIR",   "TZ",           "MALLOC_ARENA_MAX"};

/* Names that would subvert the runtime or the platform are refused even
 * though the wrappers hand env to the function only through zmesh.env: a
 * name valid today must stay harmless if that ever changes. */
int val_env(json_t *env, struct zerr *err)
{
	if (!json_is_object(env))
		return ze(err, ZE_INVALID_ENV_VARS, "env_vars must be an object of strings");
	if (json_object_size(env) > ZPROTO_MAX_ENV_VARS)
		return ze(err, ZE_INVALID_ENV_VARS, "at most %d env_vars", ZPROTO_MAX_ENV_VARS);
	size_t total = 0;
	const char *k;
	json_t *v;
	json_object_foreach (env, k, v) {
		size_t n = strlen(k);
		bool ok = n > 0 && n <= ZPROTO_MAX_ENV_NAME_BYTES && !isdigit((unsigned char)k[0]);
		for (const char *c = k; ok && *c; c++)
			ok = isalnum((unsigned char)*c) || *c == '_';
		if (!ok)
			return ze(err, ZE_INVALID_ENV_VARS, "env var name \"%.64s\" is not [A-Za-z_][A-Za-z0-9_]*", k);
		for (size_t i = 0; i < ELEMENTSOF(reserved_env_prefixes); i++)
			if (strncasecmp(k, reserved_env_prefixes[i], strlen(reserved_env_prefixes[i])) == 0)
				return ze(err, ZE_RESERVED_ENV_VAR, "env var name \"%s\" is reserved (%s*)", k,
				          reserved_env_prefixes[i]);
		for (size_t i = 0; i < ELEMENTSOF(reserved_env_names); i++)
			if (strcasecmp(k, reserved_env_names[i]) == 0)
				return ze(err, ZE_RESERVED_ENV_VAR, "env var name \"%s\" is reserved", k);
		if (!json_is_string(v))
			return ze(err, ZE_INVALID_ENV_VARS, "env var %s: values are strings", k);
		total += n + json_string_length(v);
		if (json_string_length(v) > ZPROTO_MAX_ENV_VALUE_BYTES || total > ZPROTO_MAX_ENV_BYTES)
			return ze(err, ZE_INVALID_ENV_VARS, "env_vars too large (%d KiB a value, %d KiB in all)",
			          ZPROTO_MAX_ENV_VALUE_BYTES / 1024, ZPROTO_MAX_ENV_BYTES / 1024);
	}
	return 0;
}

/* An entry point, as the wrappers accept it (protocol.h). */
static bool identifier(const char *s)
{
	size_t n = strlen(s);
	return n > 0 && n <= ZPROTO_MAX_ENTRY_POINT_BYTES && strchr(ZPROTO_ENTRY_POINT_FIRST_CHARS, s[0]) &&
	       strspn(s, ZPROTO_ENTRY_POINT_CHARS) == n;
}

/* An integer field within [min, max]; absent leaves *ret alone. */
static int int_field(json_t *body, const char *name, int64_t min, uint64_t max, int64_t *ret)
{
	json_t *v = json_object_get(body, name);
	if (!v)
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < min || (uint64_t)json_integer_value(v) > max)
		return -ERANGE;
	*ret = json_integer_value(v);
	return 0;
}

int val_function(json_t *body, const struct tier *tier, uint64_t max_code_bytes, bool create, struct val_function *ret,
                 struct zerr *err)
{
	static const char *const known[] = {"name",       "slug",       "language",  "entry_point", "code",
	                                    "env_vars",   "timeout_ms", "memory_mb", "retries",     "max_event_age_s",
	                                    "on_failure", NULL};
	struct val_function in = {.timeout_ms = -1, .memory_mb = -1, .retries = -1, .max_event_age_s = -1};
	int r = val_object(body, known, err);
	if (r == 0)
		r = str_field(body, "name", &in.name, err);
	if (r == 0)
		r = str_field(body, "slug", &in.slug, err);
	if (r == 0)
		r = str_field(body, "language", &in.language, err);
	if (r == 0)
		r = str_field(body, "entry_point", &in.entry_point, err);
	if (r == 0)
		r = str_field(body, "code", &in.code, err);
	if (r < 0)
		return r;
	if (create && (!in.name || !in.code || !in.language))
		return ze(err, ZE_BAD_REQUEST, "name, language and code are required");
	if (in.name && !name_ok(in.name))
		return ze(err, ZE_INVALID_NAME, "name must be 1 to %d characters", VAL_NAME_MAX);
	if (in.slug && !val_slug(in.slug))
		return ze(err, ZE_INVALID_SLUG, SLUG_RULE);
	if (in.language && strcmp(in.language, "javascript") != 0 && strcmp(in.language, "python") != 0)
		return ze(err, ZE_INVALID_LANGUAGE, "language is \"javascript\" or \"python\"");
	if (in.entry_point && !identifier(in.entry_point))
		return ze(err, ZE_INVALID_ENTRY_POINT, "entry_point must be an identifier of at most %d characters",
		          ZPROTO_MAX_ENTRY_POINT_BYTES);
	if (in.code && (!in.code[0] || strlen(in.code) > max_code_bytes))
		return ze(err, ZE_INVALID_CODE, "code must be 1 to %" PRIu64 " bytes", max_code_bytes);
	if (int_field(body, "timeout_ms", 1, tier->max_timeout_ms, &in.timeout_ms) < 0)
		return ze(err, ZE_INVALID_TIMEOUT, "timeout_ms must be within 1..%" PRIu64 " on the %s tier",
		          tier->max_timeout_ms, tier->name);
	if (int_field(body, "memory_mb", TIERS_MIN_MEMORY_MB, tier->max_memory_mb, &in.memory_mb) < 0)
		return ze(err, ZE_INVALID_MEMORY, "memory_mb must be within %d..%" PRIu64 " on the %s tier",
		          TIERS_MIN_MEMORY_MB, tier->max_memory_mb, tier->name);
	in.env = json_object_get(body, "env_vars");
	if (in.env && (r = val_env(in.env, err)) < 0)
		return r;
	if (int_field(body, "retries", 0, VAL_RETRIES_MAX, &in.retries) < 0)
		return ze(err, ZE_INVALID_EVENT_SETTINGS, "retries must be an integer within 0..%d", VAL_RETRIES_MAX);
	if (int_field(body, "max_event_age_s", VAL_EVENT_AGE_MIN_S, VAL_EVENT_AGE_MAX_S, &in.max_event_age_s) < 0)
		return ze(err, ZE_INVALID_EVENT_SETTINGS, "max_event_age_s must be an integer within %d..%d",
		          VAL_EVENT_AGE_MIN_S, VAL_EVENT_AGE_MAX_S);
	json_t *of = json_object_get(body, "on_failure");
	in.on_failure_set = of != NULL;
	if (of && !json_is_null(of)) {
		in.on_failure = json_string_value(of);
		if (!in.on_failure || !val_slug(in.on_failure))
			return ze(err, ZE_INVALID_EVENT_SETTINGS,
			          "on_failure must be the slug of a function of the same project, or null");
	}
	*ret = in;
	return 0;
}

/* body's egress member, checked and replaced by its normalized form. */
static int val_egress(json_t *body, json_t **ret, struct zerr *err)
{
	_cleanup_free_ struct egress_policy *p = malloc(sizeof(*p));
	struct zerr why = {0};
	if (!p)
		return zerr_set(err, -ENOMEM, "out of memory");
	int r = egress_policy_from_json(json_object_get(body, "egress"), p, &why);
	if (r == -ENOMEM)
		return zerr_set(err, r, "%s", why.msg);
	if (r < 0)
		return ze(err, ZE_INVALID_EGRESS, "%s", why.msg);
	json_t *norm = egress_policy_to_json(p);
	if (!norm || json_object_set_new(body, "egress", norm) < 0)
		return zerr_set(err, -ENOMEM, "out of memory");
	*ret = json_object_get(body, "egress");
	return 0;
}

int val_project(json_t *body, const struct tiers *tiers, bool create, struct val_project *ret, struct zerr *err)
{
	static const char *const known_create[] = {"name", "slug", "tier", NULL};
	static const char *const known_patch[] = {"name", "tier", "egress", NULL};
	struct val_project in = {0};
	int r = val_object(body, create ? known_create : known_patch, err);
	if (r == 0)
		r = str_field_as(body, "name", ZE_INVALID_NAME, &in.name, err);
	if (r == 0)
		r = str_field_as(body, "slug", ZE_INVALID_SLUG, &in.slug_in, err);
	if (r == 0)
		r = str_field_as(body, "tier", ZE_INVALID_TIER, &in.tier, err);
	if (r < 0)
		return r;
	if ((create || json_object_get(body, "name")) && !name_ok(in.name))
		return ze(err, ZE_INVALID_NAME, "name is required, 1 to %d characters", VAL_NAME_MAX);
	if (json_object_get(body, "tier") && !tiers_find(tiers, in.tier))
		return ze(err, ZE_INVALID_TIER, "unknown tier \"%.32s\"", in.tier);
	if (!create && json_object_get(body, "egress") && (r = val_egress(body, &in.egress, err)) < 0)
		return r;
	if (create) {
		if (in.slug_in && strlen(in.slug_in) > VAL_SLUG_MAX)
			return ze(err, ZE_INVALID_SLUG, SLUG_RULE);
		if (in.slug_in)
			snprintf(in.slug, sizeof(in.slug), "%s", in.slug_in);
		else
			val_slugify(in.name, in.slug, sizeof(in.slug));
		if (!val_slug(in.slug))
			return ze(err, ZE_INVALID_SLUG, SLUG_RULE);
	}
	*ret = in;
	return 0;
}

static bool email_ok(const char *e)
{
	return e && strlen(e) >= 3 && strlen(e) <= VAL_EMAIL_MAX && strchr(e + 1, '@');
}

int val_password(const char *password, const char *email, struct zerr *err)
{
	if (!password || strlen(password) > VAL_PASSWORD_MAX || !utf8_valid(password, strlen(password)))
		return ze(err, ZE_INVALID_PASSWORD, VAL_PASSWORD_RULE);
	size_t chars = 0;
	bool lower = false, upper = false, digit = false, other = false;
	for (const unsigned char *s = (const unsigned char *)password; *s; s++) {
		if ((*s & 0xc0) != 0x80)
			chars++;
		lower |= *s >= 'a' && *s <= 'z';
		upper |= *s >= 'A' && *s <= 'Z';
		digit |= *s >= '0' && *s <= '9';
		other |= !isalnum(*s);
	}
	if (chars < VAL_PASSWORD_MIN || lower + upper + digit + other < 2 ||
	    (email && strcasecmp(password, email) == 0))
		return ze(err, ZE_INVALID_PASSWORD, VAL_PASSWORD_RULE);
	return 0;
}

int val_new_user(json_t *body, const char **ret_email, const char **ret_password, bool *ret_admin, struct zerr *err)
{
	static const char *const known[] = {"email", "password", "is_admin", NULL};
	const char *email = NULL, *password = NULL;
	int r = val_object(body, known, err);
	if (r == 0)
		r = str_field(body, "email", &email, err);
	if (r == 0)
		r = str_field(body, "password", &password, err);
	if (r < 0)
		return r;
	json_t *admin = json_object_get(body, "is_admin");
	if (admin && !json_is_boolean(admin))
		return ze(err, ZE_BAD_REQUEST, "is_admin must be true or false");
	if (!email_ok(email))
		return ze(err, ZE_INVALID_EMAIL, "a valid email is required");
	if ((r = val_password(password, email, err)) < 0)
		return r;
	*ret_email = email;
	*ret_password = password;
	*ret_admin = json_is_true(admin);
	return 0;
}

int val_login(json_t *body, const char **ret_email, const char **ret_password, struct zerr *err)
{
	const char *email = json_string_value(json_object_get(body, "email"));
	const char *password = json_string_value(json_object_get(body, "password"));
	if (!email || !password || strlen(email) > VAL_EMAIL_MAX || !password[0] || strlen(password) > VAL_PASSWORD_MAX)
		return ze(err, ZE_BAD_REQUEST, "email and a password of 1 to %d bytes are required", VAL_PASSWORD_MAX);
	*ret_email = email;
	*ret_password = password;
	return 0;
}

int val_password_change(json_t *body, const char **ret_current, const char **ret_new, struct zerr *err)
{
	static const char *const known[] = {"current_password", "new_password", NULL};
	const char *current = NULL, *new_pw = NULL;
	int r = val_object(body, known, err);
	if (r == 0)
		r = str_field_as(body, "current_password", ZE_BAD_REQUEST, &current, err);
	if (r == 0)
		r = str_field_as(body, "new_password", ZE_INVALID_PASSWORD, &new_pw, err);
	if (r < 0)
		return r;
	if (!current || !current[0] || strlen(current) > VAL_PASSWORD_MAX)
		return ze(err, ZE_BAD_REQUEST, "current_password of 1 to %d bytes is required", VAL_PASSWORD_MAX);
	if (!new_pw)
		return ze(err, ZE_INVALID_PASSWORD, "new_password is required: " VAL_PASSWORD_RULE);
	*ret_current = current;
	*ret_new = new_pw;
	return 0;
}

int val_name(json_t *body, const char **ret, struct zerr *err)
{
	static const char *const known[] = {"name", NULL};
	const char *name = NULL;
	int r = val_object(body, known, err);
	if (r == 0)
		r = str_field(body, "name", &name, err);
	if (r < 0)
		return r;
	if (!name_ok(name))
		return ze(err, ZE_INVALID_NAME, "name is required, 1 to %d characters", VAL_NAME_MAX);
	*ret = name;
	return 0;
}

int val_member(json_t *body, const char **ret_email, struct zerr *err)
{
	static const char *const known[] = {"email", NULL};
	const char *email = NULL;
	int r = val_object(body, known, err);
	if (r == 0)
		r = str_field(body, "email", &email, err);
	if (r < 0)
		return r;
	if (!email || !email[0] || strlen(email) > VAL_EMAIL_MAX)
		return ze(err, ZE_INVALID_EMAIL, "email is required");
	*ret_email = email;
	return 0;
}

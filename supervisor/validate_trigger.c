/* validate_trigger.c - see validate_trigger.h */
#define _GNU_SOURCE
#include "validate_trigger.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cdc.h"
#include "conditions.h"
#include "cron.h"
#include "errors.h"
#include "tz.h"
#include "validate.h"
#include "validate_event.h"

static const char *const type_names[] = {
    [VT_CRON] = "cron", [VT_WEBHOOK] = "webhook", [VT_CUSTOM] = "custom", [VT_CDC] = "cdc"};

const char *val_trigger_type_name(enum vt_type t)
{
	return (unsigned)t < ELEMENTSOF(type_names) ? type_names[t] : NULL;
}

int val_trigger_type_parse(const char *s, enum vt_type *ret)
{
	for (size_t i = 0; s && i < ELEMENTSOF(type_names); i++)
		if (i != VT_CUSTOM && i != VT_CDC && strcmp(s, type_names[i]) == 0) {
			*ret = (enum vt_type)i;
			return 0;
		}
	struct cdc_name n;
	const char *why;
	if (s && strncmp(s, "cdc.", 4) == 0) {
		if (cdc_parse_event_type(s, &n, &why) < 0)
			return -EINVAL;
		*ret = VT_CDC;
		return 0;
	}
	if (!val_event_trigger_type(s))
		return -EINVAL;
	*ret = VT_CUSTOM;
	return 0;
}

void val_trigger_done(struct val_trigger *t)
{
	json_decref(t->config);
	json_decref(t->conditions);
	t->config = t->conditions = NULL;
}

static int bad(struct zerr *err, const char *fmt, ...) _printf_(2, 3);
static int bad(struct zerr *err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char msg[sizeof(err->msg)];
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return ze(err, ZE_INVALID_TRIGGER, "%s", msg);
}

/* The size of v as compact JSON, stopping early past max. */
static bool json_fits(json_t *v, size_t max)
{
	char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
	bool ok = s && strlen(s) <= max;
	free(s);
	return ok;
}

/* An optional string of config: NULL when absent. */
static int opt_str(json_t *cfg, const char *key, const char **ret, struct zerr *err)
{
	json_t *v = json_object_get(cfg, key);
	*ret = NULL;
	if (!v)
		return 0;
	if (!json_is_string(v))
		return bad(err, "config.%s: want a string", key);
	*ret = json_string_value(v);
	return 0;
}

/* An optional string of config that must be one of choices (NULL
 * terminated); *ret is def when absent. */
static int choice(json_t *cfg, const char *key, const char *const *choices, const char *def, const char **ret,
                  struct zerr *err)
{
	const char *s;
	int r = opt_str(cfg, key, &s, err);
	if (r < 0)
		return r;
	if (!s) {
		*ret = def;
		return 0;
	}
	for (const char *const *c = choices; *c; c++)
		if (strcmp(s, *c) == 0) {
			*ret = *c;
			return 0;
		}
	char list[160] = "";
	for (const char *const *c = choices; *c; c++) {
		size_t n = strlen(list);
		snprintf(list + n, sizeof(list) - n, "%s\"%s\"", c == choices ? "" : ", ", *c);
	}
	return bad(err, "config.%s: \"%.64s\" is not one of %s", key, s, list);
}

static int known_keys(json_t *cfg, const char *const *known, struct zerr *err)
{
	const char *k;
	json_t *v;
	json_object_foreach (cfg, k, v) {
		bool ok = false;
		for (const char *const *n = known; *n && !ok; n++)
			ok = strcmp(k, *n) == 0;
		if (!ok)
			return bad(err, "config.%.64s: unknown key", k);
	}
	return 0;
}

/* ---- cron ------------------------------------------------------------------ */

static int cron_schedule(json_t *cfg, const char **ret, struct zerr *err)
{
	const char *s;
	int r = opt_str(cfg, "schedule", &s, err);
	if (r < 0)
		return r;
	if (!s)
		return bad(err, "config.schedule: required (a cron expression such as \"*/5 * * * *\")");
	if (strlen(s) > CRON_EXPR_MAX)
		return bad(err, "config.schedule: longer than %d bytes", CRON_EXPR_MAX);
	struct cron c;
	struct zerr e = {0};
	if (cron_parse(s, &c, &e) < 0)
		return bad(err, "config.schedule: %s", e.msg);
	/* "0 0 30 2 *" parses but never fires: a schedule that stays silent
	 * forever is a mistake to report now, not a trigger to keep. */
	int64_t next;
	if (cron_next(&c, NULL, 0, &next) == -ENOENT)
		return bad(err, "config.schedule: never fires");
	*ret = s;
	return 0;
}

static int cron_timezone(json_t *cfg, const char **ret, struct zerr *err)
{
	const char *s;
	int r = opt_str(cfg, "timezone", &s, err);
	if (r < 0 || !s) {
		*ret = "UTC";
		return r;
	}
	if (!tz_name_valid(s))
		return bad(err, "config.timezone: \"%.64s\" is not a time zone name (such as \"Europe/Paris\")", s);
	_cleanup_tz_ struct tz *z = NULL;
	struct zerr e = {0};
	r = tz_load(s, &z, &e);
	if (r == -ENOENT || r == -EINVAL)
		return bad(err, "config.timezone: no such time zone \"%s\"", s);
	if (r < 0)
		return bad(err, "config.timezone: \"%s\" cannot be used (%s)", s, e.msg);
	*ret = s;
	return 0;
}

static int cron_config(json_t *cfg, json_t **ret, struct zerr *err)
{
	static const char *const known[] = {"schedule", "timezone", "payload", "catch_up", "overlap", NULL};
	static const char *const catch_up[] = {"skip", "latest", "all", NULL};
	static const char *const overlap[] = {"allow", "skip", NULL};
	const char *sched = NULL, *zone = NULL, *cu = NULL, *ov = NULL;
	int r = known_keys(cfg, known, err);
	if (r == 0)
		r = cron_schedule(cfg, &sched, err);
	if (r == 0)
		r = cron_timezone(cfg, &zone, err);
	if (r == 0)
		r = choice(cfg, "catch_up", catch_up, "skip", &cu, err);
	if (r == 0)
		r = choice(cfg, "overlap", overlap, "allow", &ov, err);
	if (r < 0)
		return r;
	json_t *payload = json_object_get(cfg, "payload");
	*ret = json_pack("{s:s, s:s, s:O, s:s, s:s}", "schedule", sched, "timezone", zone, "payload",
	                 payload ? payload : json_null(), "catch_up", cu, "overlap", ov);
	return *ret ? 0 : zerr_set(err, -ENOMEM, "out of memory");
}

/* ---- webhook --------------------------------------------------------------- */

/* An HTTP header name: a token (RFC 9110) of 1..VT_HEADER_NAME_MAX bytes. */
static bool header_name_ok(const char *s)
{
	size_t n = strlen(s);
	return n > 0 && n <= VT_HEADER_NAME_MAX &&
	       strspn(s, "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") == n;
}

static int header_field(json_t *cfg, const char *key, const char **ret, struct zerr *err)
{
	int r = opt_str(cfg, key, ret, err);
	if (r == 0 && *ret && !header_name_ok(*ret))
		return bad(err, "config.%s: want a header name (1 to %d of A-Z a-z 0-9 and !#$%%&'*+-.^_`|~)", key,
		           VT_HEADER_NAME_MAX);
	return r;
}

/* Keys that belong to some schemes only: present elsewhere, they would be
 * silently ignored, so they are refused. */
static int scheme_keys(json_t *cfg, const char *verify, struct zerr *err)
{
	bool hmac = strcmp(verify, "hmac") == 0, stripe = strcmp(verify, "stripe") == 0;
	static const char *const hmac_only[] = {"header", "prefix", "encoding"};
	for (size_t i = 0; i < ELEMENTSOF(hmac_only); i++)
		if (!hmac && json_object_get(cfg, hmac_only[i]))
			return bad(err, "config.%s: only with verify \"hmac\"", hmac_only[i]);
	if (!hmac && !stripe && json_object_get(cfg, "id_header"))
		return bad(err, "config.id_header: only with verify \"stripe\" or \"hmac\" (\"%s\" has its own)",
		           verify);
	if (strcmp(verify, "none") == 0 && json_object_get(cfg, "secret"))
		return bad(err, "config.secret: verify \"none\" checks no signature");
	return 0;
}

static int webhook_secret(json_t *cfg, struct val_trigger *t, struct zerr *err)
{
	int r = opt_str(cfg, "secret", &t->secret, err);
	if (r < 0 || !t->secret)
		return r;
	struct zerr e = {0};
	if (whsig_secret_check(t->scheme, t->secret, &e) < 0)
		return bad(err, "config.secret: %s",
		           t->scheme == WHSIG_STANDARD ? "want whsec_ and the base64 of 24 to 64 bytes"
		                                       : "want 16 to 256 bytes");
	return 0;
}

static int hmac_fields(json_t *cfg, json_t *out, struct zerr *err)
{
	static const char *const encodings[] = {"hex", "base64", NULL};
	const char *header = NULL, *prefix = NULL, *enc = NULL;
	int r = header_field(cfg, "header", &header, err);
	if (r == 0 && !header)
		return bad(err, "config.header: required with verify \"hmac\" (the header carrying the signature)");
	if (r == 0)
		r = opt_str(cfg, "prefix", &prefix, err);
	if (r == 0 && prefix) {
		size_t n = strlen(prefix);
		bool printable = n <= VT_PREFIX_MAX;
		for (size_t i = 0; printable && i < n; i++)
			printable = prefix[i] >= 0x20 && prefix[i] < 0x7f;
		if (!printable)
			return bad(err, "config.prefix: want at most %d printable ASCII characters", VT_PREFIX_MAX);
	}
	if (r == 0)
		r = choice(cfg, "encoding", encodings, "hex", &enc, err);
	if (r < 0)
		return r;
	json_object_set_new(out, "header", json_string(header));
	if (prefix && prefix[0])
		json_object_set_new(out, "prefix", json_string(prefix));
	json_object_set_new(out, "encoding", json_string(enc));
	return 0;
}

static int webhook_config(json_t *cfg, struct val_trigger *t, json_t **ret, struct zerr *err)
{
	static const char *const known[] = {"verify",   "secret",    "header",  "prefix",
	                                    "encoding", "id_header", "respond", NULL};
	static const char *const verifies[] = {"standard", "stripe", "github", "hmac", "none", NULL};
	static const char *const responds[] = {"async", "sync", NULL};
	const char *verify = NULL, *respond = NULL, *id_header = NULL;
	int r = known_keys(cfg, known, err);
	if (r == 0)
		r = choice(cfg, "verify", verifies, NULL, &verify, err);
	if (r == 0 && !verify)
		return bad(err, "config.verify: required, one of \"standard\", \"stripe\", \"github\", \"hmac\", "
		                "\"none\" (\"none\" accepts unsigned deliveries)");
	if (r == 0)
		r = scheme_keys(cfg, verify, err);
	if (r == 0)
		r = choice(cfg, "respond", responds, "async", &respond, err);
	if (r == 0)
		r = header_field(cfg, "id_header", &id_header, err);
	if (r < 0)
		return r;
	t->signed_ = whsig_scheme_parse(verify, &t->scheme) == 0;
	if (t->signed_ && (r = webhook_secret(cfg, t, err)) < 0)
		return r;
	_cleanup_(json_decrefp) json_t *out = json_pack("{s:s, s:s}", "verify", verify, "respond", respond);
	if (!out)
		return zerr_set(err, -ENOMEM, "out of memory");
	if (strcmp(verify, "hmac") == 0 && (r = hmac_fields(cfg, out, err)) < 0)
		return r;
	if (id_header)
		json_object_set_new(out, "id_header", json_string(id_header));
	*ret = TAKE_PTR(out);
	return 0;
}

/* ---- custom ---------------------------------------------------------------- */

/* A custom event has no settings yet: {} keeps room for some. */
static int custom_config(json_t *cfg, json_t **ret, struct zerr *err)
{
	static const char *const known[] = {NULL};
	int r = known_keys(cfg, known, err);
	if (r < 0)
		return r;
	*ret = json_object();
	return *ret ? 0 : zerr_set(err, -ENOMEM, "out of memory");
}

static int config_field(json_t *body, struct val_trigger *t, struct zerr *err)
{
	_cleanup_(json_decrefp) json_t *cfg = json_incref(json_object_get(body, "config"));
	if (!cfg) {
		if (t->type == VT_WEBHOOK)
			return bad(err, "config: required for a webhook ({\"verify\": ...})");
		cfg = json_object();
	}
	if (!json_is_object(cfg))
		return bad(err, "config: want an object");
	if (!json_fits(cfg, VT_CONFIG_MAX_BYTES))
		return bad(err, "config: larger than %d KiB", VT_CONFIG_MAX_BYTES / 1024);
	switch (t->type) {
	case VT_CRON:
		return cron_config(cfg, &t->config, err);
	case VT_WEBHOOK:
		return webhook_config(cfg, t, &t->config, err);
	case VT_CUSTOM:
	case VT_CDC:
		break;
	}
	return custom_config(cfg, &t->config, err);
}

static int conditions_field(json_t *body, struct val_trigger *t, struct zerr *err)
{
	json_t *c = json_object_get(body, "conditions");
	if (!c)
		return 0;
	if (!json_fits(c, VT_CONDITIONS_MAX_BYTES))
		return bad(err, "conditions: larger than %d KiB", VT_CONDITIONS_MAX_BYTES / 1024);
	struct zerr e = {0};
	if (cond_validate(c, &e) < 0)
		return bad(err, "%s", e.msg);
	t->conditions = json_incref(c);
	return 0;
}

static int function_field(json_t *body, bool required, struct val_trigger *t, struct zerr *err)
{
	json_t *v = json_object_get(body, "function_id");
	if (!v && required)
		return bad(err, "function_id: required (the id or slug of a function of this project)");
	if (!v)
		return 0;
	if (!json_is_string(v))
		return bad(err, "function_id: want a string (the id or slug of a function of this project)");
	const char *s = json_string_value(v);
	/* Neither an id nor a slug cannot name a function: the same answer as
	 * one that does not exist. */
	if (strlen(s) > VT_FUNCTION_REF_MAX || (!val_is_uuid(s) && !val_slug(s)))
		return bad(err, "function_id: no such function in this project");
	t->function_ref = s;
	return 0;
}

static int enabled_field(json_t *body, struct val_trigger *t, struct zerr *err)
{
	json_t *v = json_object_get(body, "enabled");
	t->enabled = -1;
	if (!v)
		return 0;
	if (!json_is_boolean(v))
		return bad(err, "enabled: want true or false");
	t->enabled = json_is_true(v);
	return 0;
}

#define TYPES_HINT "\"cron\", \"webhook\", \"custom.<type>\" or \"cdc.<OP>.<table>\""

static int event_type_field(json_t *body, struct val_trigger *t, struct zerr *err)
{
	json_t *v = json_object_get(body, "event_type");
	if (!v)
		return bad(err, "event_type: required, " TYPES_HINT);
	const char *s = json_string_value(v);
	if (!s)
		return bad(err, "event_type: want a string, " TYPES_HINT);
	if (strlen(s) != json_string_length(v))
		return bad(err, "event_type: contains a NUL byte");
	if (val_trigger_type_parse(s, &t->type) == 0) {
		t->has_type = true;
		t->event_type = s;
		return 0;
	}
	const char *why = NULL;
	if (strncmp(s, VE_CUSTOM_PREFIX, strlen(VE_CUSTOM_PREFIX)) == 0 &&
	    !val_event_type(s + strlen(VE_CUSTOM_PREFIX), &why))
		return bad(err, "event_type: the type of \"%.120s\" %s (want \"custom.\" and 1 to %d of a-z 0-9 . _ -)",
		           s, why, VE_TYPE_MAX);
	struct cdc_name n;
	if (strncmp(s, "cdc.", 4) == 0 && cdc_parse_event_type(s, &n, &why) < 0)
		return bad(err, "event_type: \"%.160s\" %s (want cdc.<INSERT|UPDATE|DELETE|*>.<table or schema.table>)",
		           s, why);
	return bad(err, "event_type: \"%.64s\" is not one of " TYPES_HINT, s);
}

static int fields(json_t *body, bool create, struct val_trigger *t, struct zerr *err)
{
	int r = function_field(body, create, t, err);
	if (r == 0)
		r = config_field(body, t, err);
	if (r == 0)
		r = conditions_field(body, t, err);
	if (r == 0)
		r = enabled_field(body, t, err);
	return r;
}

int val_trigger_create(json_t *body, struct val_trigger *ret, struct zerr *err)
{
	static const char *const known[] = {"event_type", "function_id", "config", "conditions", "enabled", NULL};
	struct val_trigger t = {.enabled = -1};
	int r = val_object(body, known, err);
	if (r == 0)
		r = event_type_field(body, &t, err);
	if (r == 0)
		r = fields(body, true, &t, err);
	if (r == 0 && !t.conditions && !(t.conditions = json_array()))
		r = zerr_set(err, -ENOMEM, "out of memory");
	if (r < 0) {
		val_trigger_done(&t);
		return r;
	}
	*ret = t;
	return 0;
}

int val_trigger_patch(json_t *body, const char *cur, struct val_trigger *ret, struct zerr *err)
{
	static const char *const known[] = {"event_type", "function_id", "config", "conditions", "enabled", NULL};
	struct val_trigger t = {.enabled = -1, .event_type = cur};
	if (val_trigger_type_parse(cur, &t.type) < 0)
		return bad(err, "event_type: \"%.160s\" triggers cannot be changed yet", cur ? cur : "");
	int r = val_object(body, known, err);
	if (r < 0)
		return r;
	json_t *et = json_object_get(body, "event_type");
	if (et && (!json_is_string(et) || strcmp(json_string_value(et), cur) != 0))
		return bad(err, "event_type: cannot change (this trigger is \"%s\"; create another)", cur);
	/* Only a config given is validated: PATCH without one keeps the
	 * stored config. */
	json_t *cfg = json_object_get(body, "config");
	if (cfg)
		r = config_field(body, &t, err);
	if (r == 0)
		r = function_field(body, false, &t, err);
	if (r == 0)
		r = conditions_field(body, &t, err);
	if (r == 0)
		r = enabled_field(body, &t, err);
	if (r < 0) {
		val_trigger_done(&t);
		return r;
	}
	*ret = t;
	return 0;
}

int val_trigger_whsig(json_t *config, bool *ret_signed, enum whsig_scheme *ret_scheme, struct whsig_config *ret,
                      bool *ret_sync)
{
	const char *verify = json_string_value(json_object_get(config, "verify"));
	const char *respond = json_string_value(json_object_get(config, "respond"));
	const char *enc = json_string_value(json_object_get(config, "encoding"));
	if (!verify)
		return -EINVAL;
	memset(ret, 0, sizeof(*ret));
	*ret_signed = whsig_scheme_parse(verify, ret_scheme) == 0;
	if (!*ret_signed && strcmp(verify, "none") != 0)
		return -EINVAL;
	ret->header = json_string_value(json_object_get(config, "header"));
	ret->prefix = json_string_value(json_object_get(config, "prefix"));
	ret->encoding = enc && strcmp(enc, "base64") == 0 ? WHSIG_BASE64 : WHSIG_HEX;
	ret->id_header = json_string_value(json_object_get(config, "id_header"));
	*ret_sync = respond && strcmp(respond, "sync") == 0;
	if (*ret_signed && *ret_scheme == WHSIG_HMAC && !ret->header)
		return -EINVAL;
	return 0;
}

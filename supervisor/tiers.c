/* tiers.c - see tiers.h */
#define _GNU_SOURCE
#include "tiers.h"

#include <jansson.h>
#include <string.h>

#include "protocol.h"

static int get_u64(json_t *o, const char *key, uint64_t min, uint64_t max, uint64_t *ret)
{
	json_t *v = json_object_get(o, key);
	if (!json_is_integer(v) || json_integer_value(v) < (json_int_t)min || (uint64_t)json_integer_value(v) > max)
		return -EINVAL;
	*ret = (uint64_t)json_integer_value(v);
	return 0;
}

int tiers_load(const char *path, struct tiers *ret, struct zerr *err)
{
	json_error_t jerr;
	json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
	if (!root)
		return zerr_set(err, -EINVAL, "tiers %s:%d: %s", path, jerr.line, jerr.text);
	struct tiers t = {0};
	json_t *tiers = json_object_get(root, "tiers");
	const char *name;
	json_t *v;
	int r = json_is_object(tiers) && json_object_size(tiers) > 0 ? 0 : -EINVAL;
	json_object_foreach (tiers, name, v) {
		if (r < 0)
			break;
		if (t.n >= TIERS_MAX || strlen(name) >= sizeof(t.t[0].name)) {
			r = -E2BIG;
			break;
		}
		struct tier *x = &t.t[t.n];
		snprintf(x->name, sizeof(x->name), "%s", name);
		if (get_u64(v, "max_timeout_ms", 1, 3600000, &x->max_timeout_ms) < 0 ||
		    get_u64(v, "max_memory_mb", TIERS_MIN_MEMORY_MB, 1 << 20, &x->max_memory_mb) < 0 ||
		    get_u64(v, "monthly_invocations", 0, UINT32_MAX * 1000ull, &x->monthly_invocations) < 0 ||
		    get_u64(v, "concurrency", 1, 100000, &x->concurrency) < 0) {
			r = zerr_set(err, -EINVAL,
			             "tiers %s: tier \"%s\" needs max_timeout_ms, max_memory_mb, "
			             "monthly_invocations and concurrency within bounds",
			             path, name);
			break;
		}
		x->db_connections = TIERS_DEFAULT_DB_CONNECTIONS;
		if (json_object_get(v, "db_connections") &&
		    get_u64(v, "db_connections", 1, TIERS_MAX_DB_CONNECTIONS, &x->db_connections) < 0) {
			r = zerr_set(err, -EINVAL, "tiers %s: tier \"%s\": db_connections must be within 1..%d", path,
			             name, TIERS_MAX_DB_CONNECTIONS);
			break;
		}
		x->egress_requests = TIERS_DEFAULT_EGRESS_REQUESTS;
		x->egress_bytes = TIERS_DEFAULT_EGRESS_BYTES;
		x->egress_connect_timeout_ms = TIERS_DEFAULT_EGRESS_CONNECT_TIMEOUT_MS;
		if ((json_object_get(v, "egress_requests") &&
		     get_u64(v, "egress_requests", 0, 100000, &x->egress_requests) < 0) ||
		    (json_object_get(v, "egress_bytes") &&
		     get_u64(v, "egress_bytes", 0, 1ull << 40, &x->egress_bytes) < 0) ||
		    (json_object_get(v, "egress_connect_timeout_ms") &&
		     get_u64(v, "egress_connect_timeout_ms", 100, 60000, &x->egress_connect_timeout_ms) < 0)) {
			r = zerr_set(err, -EINVAL,
			             "tiers %s: tier \"%s\": egress_requests must be within 0..100000, egress_bytes "
			             "0..1099511627776, egress_connect_timeout_ms 100..60000",
			             path, name);
			break;
		}
		x->emits_per_invocation = TIERS_DEFAULT_EMITS;
		if (json_object_get(v, "emits_per_invocation") &&
		    get_u64(v, "emits_per_invocation", 0, ZPROTO_MAX_EMITS, &x->emits_per_invocation) < 0) {
			r = zerr_set(err, -EINVAL, "tiers %s: tier \"%s\": emits_per_invocation must be within 0..%d",
			             path, name, ZPROTO_MAX_EMITS);
			break;
		}
		t.n++;
	}
	json_decref(root);
	if (r < 0)
		return err && err->code ? r : zerr_set(err, r, "tiers %s: want {\"tiers\": {NAME: {...}}}", path);
	if (!tiers_find(&t, TIERS_DEFAULT))
		return zerr_set(err, -EINVAL, "tiers %s: a \"free\" tier is required (the default)", path);
	*ret = t;
	return 0;
}

const struct tier *tiers_find(const struct tiers *t, const char *name)
{
	for (int i = 0; i < t->n; i++)
		if (strcmp(t->t[i].name, name) == 0)
			return &t->t[i];
	return NULL;
}

const struct tier *tiers_for(const struct tiers *t, const char *name)
{
	const struct tier *x = tiers_find(t, name);
	return x ? x : tiers_find(t, TIERS_DEFAULT);
}

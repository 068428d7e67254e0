/* Fuzz target: every JSON body the API accepts, through the parser the HTTP
 * layer uses (duplicate keys refused, any JSON value) and each validator of
 * validate.c. The first byte picks the validator; the rest is the body.
 * Invariants: a validator either refuses with a domain code whose message
 * is set, or accepts values within the bounds it promises. */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "errors.h"
#include "validate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const struct tier tier = {.name = "free",
                                 .max_timeout_ms = 30000,
                                 .max_memory_mb = 512,
                                 .monthly_invocations = 100000,
                                 .concurrency = 4,
                                 .db_connections = 5,
                                 .egress_requests = 5,
                                 .egress_bytes = 10 << 20,
                                 .egress_connect_timeout_ms = 5000,
                                 .emits_per_invocation = 10};

static void check_refusal(int r, const struct zerr *err)
{
	if (r == 0)
		return;
	assert(-r >= ZE_BASE && -r < ZE_END);
	assert(err->msg[0]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > 65536)
		return 0;
	json_error_t jerr;
	json_t *body = json_loadb((const char *)data + 1, size - 1, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
	if (!body)
		return 0;
	struct zerr err = {0};
	int r = 0;
	switch (data[0] % 7) {
	case 0:
	case 1: {
		struct val_function in;
		r = val_function(body, &tier, 4096, data[0] % 7 == 0, &in, &err);
		if (r == 0) {
			assert(in.timeout_ms == -1 || (in.timeout_ms >= 1 && in.timeout_ms <= 30000));
			assert(in.memory_mb == -1 || (in.memory_mb >= TIERS_MIN_MEMORY_MB && in.memory_mb <= 512));
			assert(!in.code || (in.code[0] && strlen(in.code) <= 4096));
			assert(!in.slug || val_slug(in.slug));
			assert(!in.name || (in.name[0] && strlen(in.name) <= VAL_NAME_MAX));
		}
		break;
	}
	case 2:
	case 3: {
		struct tiers tiers = {.n = 1};
		tiers.t[0] = tier;
		struct val_project in;
		r = val_project(body, &tiers, data[0] % 7 == 2, &in, &err);
		if (r == 0 && data[0] % 7 == 2)
			assert(val_slug(in.slug));
		break;
	}
	case 4: {
		const char *email, *password;
		bool admin;
		r = val_new_user(body, &email, &password, &admin, &err);
		if (r == 0)
			assert(strlen(password) >= VAL_PASSWORD_MIN && strlen(email) <= VAL_EMAIL_MAX &&
			       val_password(password, email, NULL) == 0);
		break;
	}
	case 5: {
		/* The two bodies of /auth: a login, and a change of password whose
		 * new one then meets the rule of every password. */
		const char *email, *password, *current, *new_pw;
		r = val_login(body, &email, &password, &err);
		check_refusal(r, &err);
		r = val_password_change(body, &current, &new_pw, &err);
		if (r == 0) {
			assert(current[0] && strlen(current) <= VAL_PASSWORD_MAX);
			check_refusal(r = val_password(new_pw, "a@b.test", &err), &err);
			if (r == 0)
				assert(strlen(new_pw) >= VAL_PASSWORD_MIN && strlen(new_pw) <= VAL_PASSWORD_MAX);
		}
		break;
	}
	default: {
		const char *name;
		r = val_name(body, &name, &err);
		if (r == 0)
			assert(name[0] && strlen(name) <= VAL_NAME_MAX);
		break;
	}
	}
	check_refusal(r, &err);
	json_decref(body);
	return 0;
}

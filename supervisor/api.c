/* api.c - the HTTP API's handlers (DESIGN.md section 4).
 *
 * Every handler answers exactly once. Errors go through reply_err(), the one
 * place that maps a failure to a status and an {"error":{"code","message"}}
 * body. SQL takes bound parameters only; PostgreSQL builds the JSON of
 * listings (json_build_object), so the shapes live next to their queries. */
#define _GNU_SOURCE
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "app.h"
#include "auth.h"
#include "log.h"

#define UUID_LEN 36

static void pgresult_clear(PGresult **r)
{
	if (*r)
		PQclear(*r);
}
#define _cleanup_res_ __attribute__((cleanup(pgresult_clear)))

/* jansson's own cleanup helper (json_auto_t) */
#define _cleanup_json_ __attribute__((cleanup(json_decrefp)))

struct conn {
	struct app *app;
	PGconn *c;
};

static void conn_release(struct conn *c)
{
	if (c->c)
		db_release(c->app->pool, c->c);
}
#define _cleanup_conn_ __attribute__((cleanup(conn_release)))

/* ---- replies ------------------------------------------------------------- */

static void reply_db(struct http_request *req, int code, const struct zerr *err)
{
	if (code == -EEXIST) {
		http_reply_error(req, 409, "CONFLICT", "%s", "that name or slug is already taken");
		return;
	}
	zlog(ZLOG_ERROR, "db_error", "request_id", http_request_id(req), "error", err ? err->msg : "", NULL);
	http_reply_error(req, code == -ETIMEDOUT ? 503 : 500, "INTERNAL",
	                 "the database failed; see the server log (request %s)", http_request_id(req));
}

static bool get_conn(struct app *app, struct http_request *req, struct conn *ret)
{
	ret->app = app;
	ret->c = db_acquire(app->pool);
	if (!ret->c) {
		http_add_header(req, "Retry-After", "1");
		http_reply_error(req, 503, "UNAVAILABLE", "no database connection available");
		return false;
	}
	return true;
}

/* One row, one column of JSON built by the query. *ret is NULL without a row. */
static int q_json(PGconn *c, const char *sql, int n, const char *const *p, json_t **ret, struct zerr *err)
{
	_cleanup_res_ PGresult *res = NULL;
	int r = db_exec_params(c, sql, n, p, &res, err);
	if (r < 0)
		return r;
	*ret = NULL;
	if (PQntuples(res) == 0 || PQgetisnull(res, 0, 0))
		return 0;
	json_error_t jerr;
	*ret = json_loads(PQgetvalue(res, 0, 0), JSON_DECODE_ANY, &jerr);
	return *ret ? 0 : zerr_set(err, -EIO, "bad JSON from the database: %s", jerr.text);
}

/* ---- validation ---------------------------------------------------------- */

static bool is_uuid(const char *s)
{
	if (strlen(s) != UUID_LEN)
		return false;
	for (int i = 0; i < UUID_LEN; i++) {
		bool dash = i == 8 || i == 13 || i == 18 || i == 23;
		if (dash ? s[i] != '-' : !isxdigit((unsigned char)s[i]))
			return false;
	}
	return true;
}

static bool valid_slug(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 63 || s[0] == '-' || s[n - 1] == '-' || is_uuid(s))
		return false;
	for (const char *c = s; *c; c++)
		if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '-'))
			return false;
	return true;
}

/* "My First Function!" -> "my-first-function" */
static void slugify(const char *name, char *out, size_t size)
{
	size_t k = 0;
	bool dash = false;
	for (const char *c = name; *c && k + 1 < size && k < 63; c++) {
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

static const char *const reserved_env_prefixes[] = {"NODE_", "LD_", "PYTHON", "ZMESH_", "PG", "NPM_", "UV_"};
static const char *const reserved_env_names[] = {
    "PATH",  "HOME", "TMPDIR", "LANG",         "LC_ALL",        "JWT_SECRET_KEY", "DATABASE_URL", "HOSTNAME",
    "SHELL", "USER", "IFS",    "OPENSSL_CONF", "SSL_CERT_FILE", "SSL_CERT_DIR",   "TZ",           "MALLOC_ARENA_MAX"};

/* Env var names that would subvert the runtime or the platform are refused
 * even though the wrappers hand env to the function only through zmesh.env:
 * a name valid today must stay harmless if that ever changes. */
static int check_env(json_t *env, char *why, size_t why_size)
{
	if (!json_is_object(env)) {
		snprintf(why, why_size, "env_vars must be an object of strings");
		return -EINVAL;
	}
	if (json_object_size(env) > 64) {
		snprintf(why, why_size, "at most 64 env_vars");
		return -EINVAL;
	}
	size_t total = 0;
	const char *k;
	json_t *v;
	json_object_foreach (env, k, v) {
		size_t n = strlen(k);
		bool ok = n > 0 && n <= 128 && !isdigit((unsigned char)k[0]);
		for (const char *c = k; ok && *c; c++)
			ok = isalnum((unsigned char)*c) || *c == '_';
		if (!ok) {
			snprintf(why, why_size, "env var name \"%.64s\" is not [A-Za-z_][A-Za-z0-9_]*", k);
			return -EINVAL;
		}
		for (size_t i = 0; i < ELEMENTSOF(reserved_env_prefixes); i++)
			if (strncasecmp(k, reserved_env_prefixes[i], strlen(reserved_env_prefixes[i])) == 0) {
				snprintf(why, why_size, "env var name \"%s\" is reserved (%s*)", k,
				         reserved_env_prefixes[i]);
				return -EPERM;
			}
		for (size_t i = 0; i < ELEMENTSOF(reserved_env_names); i++)
			if (strcasecmp(k, reserved_env_names[i]) == 0) {
				snprintf(why, why_size, "env var name \"%s\" is reserved", k);
				return -EPERM;
			}
		if (!json_is_string(v)) {
			snprintf(why, why_size, "env var %s: values are strings", k);
			return -EINVAL;
		}
		total += n + json_string_length(v);
		if (json_string_length(v) > 4096 || total > 32768) {
			snprintf(why, why_size, "env_vars too large (4 KiB a value, 32 KiB in all)");
			return -EINVAL;
		}
	}
	return 0;
}

/* ---- authentication ------------------------------------------------------ */

struct user {
	char id[UUID_LEN + 1];
	bool admin;
};

/* The bearer token's signature and expiry; whether its user still exists is
 * asked in call_begin()'s query. */
static bool verify_token(struct app *app, struct http_request *req, struct user *ret)
{
	const char *h = http_header(req, "authorization");
	if (!h || strncasecmp(h, "Bearer ", 7) != 0 || !h[7]) {
		http_add_header(req, "WWW-Authenticate", "Bearer");
		http_reply_error(req, 401, "UNAUTHORIZED", "missing bearer token (POST /auth/login gives one)");
		return false;
	}
	struct zerr err = {0};
	_cleanup_free_ char *sub = NULL;
	int r = auth_jwt_verify(app->jwt_key, app->jwt_key_len, h + 7, (int64_t)time(NULL), &sub, NULL, &err);
	if (r < 0) {
		http_add_header(req, "WWW-Authenticate", "Bearer");
		if (r == -EKEYEXPIRED)
			http_reply_error(req, 401, "TOKEN_EXPIRED", "the token has expired; log in again");
		else
			http_reply_error(req, 401, "INVALID_TOKEN", "the token is not valid");
		return false;
	}
	if (!is_uuid(sub)) {
		http_reply_error(req, 401, "INVALID_TOKEN", "the token is not valid");
		return false;
	}
	snprintf(ret->id, sizeof(ret->id), "%s", sub);
	return true;
}

/* ---- projects ------------------------------------------------------------ */

struct project {
	char id[UUID_LEN + 1];
	char slug[64];
	char tier[33];
	char db_name[64];
	char db_role[64];
	char db_password[257];
	int64_t monthly_cap; /* -1: the tier's */
	int64_t concurrency; /* -1: the tier's */
	bool owner;          /* the caller owns it (else a member) */
};

static const char project_cols[] = "p.id, p.slug, p.tier, coalesce(p.monthly_cap, -1), coalesce(p.concurrency, -1), "
                                   "p.db_name, p.db_role, p.db_password";

#define PROJECT_NCOLS 8

/* project_cols at column col; the member's role, if selected, right after. */
static void project_from_row(PGresult *res, int row, int col, struct project *p)
{
	snprintf(p->id, sizeof(p->id), "%s", PQgetvalue(res, row, col));
	snprintf(p->slug, sizeof(p->slug), "%s", PQgetvalue(res, row, col + 1));
	snprintf(p->tier, sizeof(p->tier), "%s", PQgetvalue(res, row, col + 2));
	p->monthly_cap = strtoll(PQgetvalue(res, row, col + 3), NULL, 10);
	p->concurrency = strtoll(PQgetvalue(res, row, col + 4), NULL, 10);
	snprintf(p->db_name, sizeof(p->db_name), "%s", PQgetvalue(res, row, col + 5));
	snprintf(p->db_role, sizeof(p->db_role), "%s", PQgetvalue(res, row, col + 6));
	snprintf(p->db_password, sizeof(p->db_password), "%s", PQgetvalue(res, row, col + 7));
	p->owner =
	    PQnfields(res) > col + PROJECT_NCOLS && strcmp(PQgetvalue(res, row, col + PROJECT_NCOLS), "owner") == 0;
}

static const struct tier *project_tier(struct app *app, const struct project *p)
{
	const struct tier *t = tiers_find(&app->tiers, p->tier);
	return t ? t : tiers_find(&app->tiers, "free");
}

static const char project_json[] =
    "json_build_object('id', p.id, 'name', p.name, 'slug', p.slug, 'tier', p.tier, 'monthly_cap', p.monthly_cap, "
    "'concurrency', p.concurrency, 'database', p.db_name, 'created_at', p.created_at)";

/* ---- functions ----------------------------------------------------------- */

/* Env values are write-only: listings show the names only. */
static const char function_json[] =
    "json_build_object('id', f.id, 'project_id', f.project_id, 'name', f.name, 'slug', f.slug, "
    "'language', f.language, 'entry_point', f.entry_point, 'timeout_ms', f.timeout_ms, 'memory_mb', "
    "f.memory_mb, 'status', f.status, 'version', f.version, 'env_vars', "
    "(SELECT coalesce(json_agg(k ORDER BY k), '[]') FROM jsonb_object_keys(f.env) k), "
    "'created_at', f.created_at, 'updated_at', f.updated_at)";

struct function {
	char id[UUID_LEN + 1];
	char name[129];
	char slug[64];
	char language[16];
	char entry_point[129];
	int64_t timeout_ms, memory_mb, version;
	bool active;
	char *code;
	json_t *env;
};

static void function_done(struct function *f)
{
	free(f->code);
	json_decref(f->env);
	f->code = NULL;
	f->env = NULL;
}

static const char function_cols[] = "f.id, f.name, f.slug, f.language, f.entry_point, f.timeout_ms, f.memory_mb, "
                                    "f.version, f.status = 'active', f.code, f.env";

/* function_cols at column col. */
static int function_from_row(PGresult *res, int row, int col, struct function *ret, struct zerr *err)
{
	memset(ret, 0, sizeof(*ret));
	snprintf(ret->id, sizeof(ret->id), "%s", PQgetvalue(res, row, col));
	snprintf(ret->name, sizeof(ret->name), "%s", PQgetvalue(res, row, col + 1));
	snprintf(ret->slug, sizeof(ret->slug), "%s", PQgetvalue(res, row, col + 2));
	snprintf(ret->language, sizeof(ret->language), "%s", PQgetvalue(res, row, col + 3));
	snprintf(ret->entry_point, sizeof(ret->entry_point), "%s", PQgetvalue(res, row, col + 4));
	ret->timeout_ms = strtoll(PQgetvalue(res, row, col + 5), NULL, 10);
	ret->memory_mb = strtoll(PQgetvalue(res, row, col + 6), NULL, 10);
	ret->version = strtoll(PQgetvalue(res, row, col + 7), NULL, 10);
	ret->active = strcmp(PQgetvalue(res, row, col + 8), "t") == 0;
	ret->code = strdup(PQgetvalue(res, row, col + 9));
	ret->env = json_loads(PQgetvalue(res, row, col + 10), 0, NULL);
	if (!ret->code || !ret->env) {
		function_done(ret);
		return zerr_set(err, -ENOMEM, "out of memory");
	}
	return 0;
}

/* What a handler works with: a database connection, and as it asks, the
 * authenticated user, the project of {pid} and the function of {fid}. */
/* NEED_JSON: also the API's JSON of the function (else of the project). */
enum { NEED_USER = 1, NEED_PROJECT = 2 | NEED_USER, NEED_FUNCTION = 4 | NEED_PROJECT, NEED_JSON = 8 };

struct call {
	struct conn c;
	struct user u;
	struct project p;
	struct function f;
	json_t *json; /* NEED_JSON */
};

static void call_end(struct call *k)
{
	function_done(&k->f);
	json_decref(k->json);
	conn_release(&k->c);
}
#define _cleanup_call_ __attribute__((cleanup(call_end)))

/* The JSON a query built in column col; on false the request is answered. */
static bool json_from_column(struct http_request *req, PGresult *res, int col, json_t **ret)
{
	json_error_t jerr;
	*ret = json_loads(PQgetvalue(res, 0, col), JSON_DECODE_ANY, &jerr);
	if (!*ret) {
		struct zerr err = {0};
		reply_db(req, zerr_set(&err, -EIO, "bad JSON from the database: %s", jerr.text), &err);
	}
	return *ret != NULL;
}

/* Gather what need asks for, in one round trip: the token's user, the
 * project of {pid} if the user belongs to it (else a 404, the same answer as
 * for a project that does not exist), the function of {fid} in it. {pid} and
 * {fid} are ids or slugs. On false the request has been answered. */
static bool call_begin(struct http_request *req, struct app *app, unsigned need, struct call *k)
{
	memset(k, 0, sizeof(*k));
	if (!get_conn(app, req, &k->c))
		return false;
	if (!(need & NEED_USER))
		return true;
	if (!verify_token(app, req, &k->u))
		return false;
	bool want_p = need & (NEED_PROJECT & ~NEED_USER), want_f = need & (NEED_FUNCTION & ~NEED_PROJECT);
	const char *pid = http_param(req, "pid"), *fid = http_param(req, "fid");
	const char *prm[] = {k->u.id, pid ? pid : "", fid ? fid : ""};
	char sql[2048];
	/* The fixed parts below and the longest choice of columns fit. */
	_Static_assert(sizeof(project_cols) + sizeof(function_cols) + sizeof(function_json) + 400 < sizeof(sql),
	               "call_begin's query may not fit");
	size_t n = (size_t)snprintf(sql, sizeof(sql), "SELECT u.is_admin");
	if (want_p)
		n += (size_t)snprintf(sql + n, sizeof(sql) - n, ", %s, m.role", project_cols);
	if (want_f)
		n += (size_t)snprintf(sql + n, sizeof(sql) - n, ", %s", function_cols);
	if ((need & NEED_JSON) && want_p)
		n += (size_t)snprintf(sql + n, sizeof(sql) - n, ", %s", want_f ? function_json : project_json);
	n += (size_t)snprintf(sql + n, sizeof(sql) - n, " FROM users u");
	if (want_p)
		n += (size_t)snprintf(sql + n, sizeof(sql) - n,
		                      " LEFT JOIN (projects p JOIN project_members m ON m.project_id = p.id)"
		                      " ON m.user_id = u.id AND %s",
		                      is_uuid(prm[1]) ? "p.id = $2::uuid" : "p.slug = $2");
	if (want_f)
		n += (size_t)snprintf(sql + n, sizeof(sql) - n, " LEFT JOIN functions f ON f.project_id = p.id AND %s",
		                      is_uuid(prm[2]) ? "f.id = $3::uuid" : "f.slug = $3");
	snprintf(sql + n, sizeof(sql) - n, " WHERE u.id = $1::uuid");

	_cleanup_res_ PGresult *res = NULL;
	struct zerr err = {0};
	int r = db_exec_params(k->c.c, sql, want_f ? 3 : want_p ? 2 : 1, prm, &res, &err);
	if (r < 0) {
		reply_db(req, r, &err);
		return false;
	}
	if (PQntuples(res) != 1) {
		http_reply_error(req, 401, "INVALID_TOKEN", "the token's user no longer exists");
		return false;
	}
	k->u.admin = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	http_log_field(req, "user", k->u.id);
	if (!want_p)
		return true;
	if (PQgetisnull(res, 0, 1)) {
		http_reply_error(req, 404, "NOT_FOUND", "no such project");
		return false;
	}
	project_from_row(res, 0, 1, &k->p);
	http_log_field(req, "project", k->p.id);
	if ((need & NEED_JSON) && !json_from_column(req, res, PQnfields(res) - 1, &k->json))
		return false;
	if (!want_f)
		return true;
	int fcol = 1 + PROJECT_NCOLS + 1;
	if (PQgetisnull(res, 0, fcol)) {
		http_reply_error(req, 404, "NOT_FOUND", "no such function");
		return false;
	}
	r = function_from_row(res, 0, fcol, &k->f, &err);
	if (r < 0) {
		reply_db(req, r, &err);
		return false;
	}
	http_log_field(req, "function", k->f.id);
	return true;
}

/* ---- projects and API keys ---------------------------------------------- */

static void h_projects_list(struct http_request *req, void *app_)
{
	struct app *app = app_;
	_cleanup_call_ struct call k;
	if (!call_begin(req, app, NEED_USER, &k))
		return;
	char sql[1024];
	snprintf(sql, sizeof(sql),
	         "SELECT coalesce(json_agg(%s ORDER BY p.created_at), '[]') FROM projects p "
	         "JOIN project_members m ON m.project_id = p.id WHERE m.user_id = $1",
	         project_json);
	const char *p[] = {k.u.id};
	json_t *j = NULL;
	struct zerr err = {0};
	int r = q_json(k.c.c, sql, 1, p, &j, &err);
	if (r < 0)
		return reply_db(req, r, &err);
	http_reply_json(req, 200, json_pack("{s:o}", "projects", j));
}

/* CREATE/DROP ROLE and DATABASE take no bound parameters. The names and the
 * password are generated here (hex) and still quoted by libpq; this is the
 * only SQL of the daemon not made of bound parameters. */
static int quote(PGconn *c, const char *s, bool literal, char *buf, size_t size, struct zerr *err)
{
	char *q = literal ? PQescapeLiteral(c, s, strlen(s)) : PQescapeIdentifier(c, s, strlen(s));
	if (!q)
		return zerr_set(err, -EINVAL, "cannot quote %s", literal ? "a literal" : "an identifier");
	int n = snprintf(buf, size, "%s", q);
	PQfreemem(q);
	return n < (int)size ? 0 : zerr_set(err, -ENAMETOOLONG, "name too long");
}

static int run_sql(PGconn *c, const char *sql, struct zerr *err)
{
	_cleanup_res_ PGresult *res = NULL;
	return db_exec_params(c, sql, 0, NULL, &res, err);
}

/* The stored verifier of a project role's password: one PBKDF2 iteration
 * where PostgreSQL would use 4096. Iterations slow down guessing a
 * person's password from a stolen verifier; these passwords are 192
 * random bits made by the platform, beyond guessing at any count, while
 * 4096 rounds on each side cost every invocation's connection some 3 ms. */
#define PROJECT_SCRAM_ITERATIONS 1

static int provision_database(PGconn *c, const char *name, const char *password, struct zerr *err)
{
	char qn[160], qp[300], sql[600], verifier[AUTH_SCRAM_VERIFIER_MAX];
	int r = quote(c, name, false, qn, sizeof(qn), err);
	if (r == 0)
		r = auth_scram_verifier(password, PROJECT_SCRAM_ITERATIONS, verifier, err);
	if (r == 0)
		r = quote(c, verifier, true, qp, sizeof(qp), err);
	if (r < 0)
		return r;
	snprintf(sql, sizeof(sql),
	         "CREATE ROLE %s LOGIN PASSWORD %s NOSUPERUSER NOCREATEDB NOCREATEROLE CONNECTION LIMIT 100", qn, qp);
	r = run_sql(c, sql, err);
	if (r < 0)
		return r;
	snprintf(sql, sizeof(sql), "CREATE DATABASE %s OWNER %s", qn, qn);
	if (r == 0)
		r = run_sql(c, sql, err);
	/* Only its owner may connect: not other projects' roles. The role's
	 * connection limit keeps one tenant from exhausting the cluster. */
	snprintf(sql, sizeof(sql), "REVOKE ALL ON DATABASE %s FROM PUBLIC", qn);
	if (r == 0)
		r = run_sql(c, sql, err);
	return r;
}

static void drop_database(PGconn *c, const char *name)
{
	struct zerr err = {0};
	char qn[160], sql[400];
	if (quote(c, name, false, qn, sizeof(qn), &err) < 0)
		return;
	snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", qn);
	if (run_sql(c, sql, &err) < 0)
		zlog(ZLOG_WARN, "drop_database_failed", "database", name, "error", err.msg, NULL);
	snprintf(sql, sizeof(sql), "DROP ROLE IF EXISTS %s", qn);
	if (run_sql(c, sql, &err) < 0)
		zlog(ZLOG_WARN, "drop_role_failed", "role", name, "error", err.msg, NULL);
}

static void h_projects_create(struct http_request *req, void *app_)
{
	struct app *app = app_;
	_cleanup_call_ struct call k;
	if (!call_begin(req, app, NEED_USER, &k))
		return;
	struct zerr err = {0};
	_cleanup_json_ json_t *body = http_json_body(req, &err);
	if (!body)
		return http_reply_error(req, 400, "BAD_REQUEST", "%s", err.msg);
	const char *name = json_string_value(json_object_get(body, "name"));
	const char *slug_in = json_string_value(json_object_get(body, "slug"));
	const char *tier = json_string_value(json_object_get(body, "tier"));
	if (!name || !name[0] || strlen(name) > 128)
		return http_reply_error(req, 400, "INVALID_NAME", "name is required, 1 to 128 characters");
	char slug[64];
	if (slug_in)
		snprintf(slug, sizeof(slug), "%s", slug_in);
	else
		slugify(name, slug, sizeof(slug));
	if (!valid_slug(slug) || (slug_in && strlen(slug_in) >= sizeof(slug)))
		return http_reply_error(req, 400, "INVALID_SLUG",
		                        "slug must be 1 to 63 of a-z, 0-9 and inner dashes, and not look like an id");
	if (!tier)
		tier = "free";
	if (!tiers_find(&app->tiers, tier))
		return http_reply_error(req, 400, "INVALID_TIER", "unknown tier \"%.32s\"", tier);

	/* Every project is a database: a user who is not an admin owns a
	 * bounded number of them. */
	if (!k.u.admin) {
		const char *cp[] = {k.u.id};
		_cleanup_res_ PGresult *cr = NULL;
		int rc =
		    db_exec_params(k.c.c, "SELECT count(*) FROM project_members WHERE user_id = $1 AND role = 'owner'",
		                   1, cp, &cr, &err);
		if (rc < 0)
			return reply_db(req, rc, &err);
		if (strtoll(PQgetvalue(cr, 0, 0), NULL, 10) >= APP_MAX_PROJECTS_PER_USER)
			return http_reply_error(req, 403, "PROJECT_LIMIT", "a user owns at most %d projects",
			                        APP_MAX_PROJECTS_PER_USER);
	}

	/* The project's own database and role, reachable with the DSN handed
	 * to its functions and nothing else. */
	_cleanup_free_ char *rnd = NULL, *password = NULL;
	if (auth_random_hex(8, &rnd, &err) < 0 || auth_random_hex(24, &password, &err) < 0)
		return reply_db(req, -EIO, &err);
	char dbname[64];
	snprintf(dbname, sizeof(dbname), "zp_%s", rnd);
	int r = provision_database(k.c.c, dbname, password, &err);
	if (r < 0) {
		drop_database(k.c.c, dbname);
		return reply_db(req, r, &err);
	}

	char sql[1024];
	snprintf(sql, sizeof(sql),
	         "WITH p AS (INSERT INTO projects (name, slug, tier, db_name, db_role, db_password) "
	         "VALUES ($1, $2, $3, $4, $4, $5) RETURNING *), "
	         "m AS (INSERT INTO project_members (project_id, user_id, role) SELECT id, $6, 'owner' FROM p) "
	         "SELECT %s FROM p",
	         project_json);
	const char *p[] = {name, slug, tier, dbname, password, k.u.id};
	json_t *j = NULL;
	r = q_json(k.c.c, sql, 6, p, &j, &err);
	if (r < 0) {
		drop_database(k.c.c, dbname);
		return reply_db(req, r, &err);
	}
	zlog(ZLOG_INFO, "project_created", "request_id", http_request_id(req), "project", slug, "database", dbname,
	     NULL);
	http_reply_json(req, 201, j);
}

static void h_project_get(struct http_request *req, void *app_)
{
	struct app *app = app_;
	_cleanup_call_ struct call k;
	if (!call_begin(req, app, NEED_PROJECT | NEED_JSON, &k))
		return;
	http_reply_json(req, 200, json_incref(k.json));
}

static void h_project_patch(struct http_request *req, void *app_)
{
	struct app *app = app_;
	_cleanup_call_ struct call k;
	if (!call_begin(req, app, NEED_PROJECT, &k))
		return;
	if (!k.p.owner)
		return http_reply_error(req, 403, "FORBIDDEN", "only the project's owner may change the project");
	struct zerr err = {0};
	_cleanup_json_ json_t *body = http_json_body(req, &err);
	if (!json_is_object(body))
		return http_reply_error(req, 400, "BAD_REQUEST", "%s", body ? "want a JSON object" : err.msg);
	const char *name = json_string_value(json_object_get(body, "name"));
	const char *tier = json_string_value(json_object_get(body, "tier"));
	if (json_object_get(body, "name") && (!name || !name[0] || strlen(name) > 128))
		return http_reply_error(req, 400, "INVALID_NAME", "name must be 1 to 128 characters");
	if (json_object_get(body, "tier") && (!tier || !tiers_find(&app->tiers, tier)))
		return http_reply_error(req, 400, "INVALID_TIER", "unknown tier");
	char sql[1024];
	snprintf(sql, sizeof(sql),
	         "WITH p AS (UPDATE projects SET name = coalesce($2, name), tier = coalesce($3, tier) "
	         "WHERE id = $1 RETURNING *) SELECT %s FROM p",
	         project_json);
	const char *prm[] = {k.p.id, name, tier};
	json_t *j = NULL;
	int r = q_json(k.c.c, sql, 3, prm, &j, &err);
	if (r < 0)
		return reply_db(req, r, &err);
	if (!j)
		return http_reply_error(req, 404, "NOT_FOUND", "no such project"); /* deleted meanwhile */
	http_reply_json(req, 200, j);
}

static void h_project_delete(struct http_request *req, void *app_)
{
	struct app *app = app_;
	_cleanup_call_ struct call k;
	if (!call_begin(req, app, NEED_PROJECT, &k))
		return;
	if (!k.p.owner)
		return http_reply_error(req, 403, "FORBIDDEN", "only the project's owner may delete the project");
	_cleanup_res_ PGresult *res = NULL;
	struct zerr err = {0};
	const char *prm[] = {k.p.id};
	int r = db_exec_params(k.c.c, "DELETE FROM projects WHERE id = $1", 1, prm, &res, &err);
	if (r < 0)
		return reply_db(req, r, &err);
	drop_database(k.c.c, k.p.db_name);
	zlog(ZLOG_INFO, "project_deleted", "request_id", http_request_id(req), "project", k.p.id, NULL);
	http_reply_json(req, 200, json_pack("{s:b}", "deleted", 1));
}

static void h_members_add(struct http_request *req, void *app_)
{
	struct app *app = app_;
	_cleanup_call_ struct call k;
	if (!call_begin(req, app, NEED_PROJECT, &k))
		return;
	if (!k.p.owner)
		return http_reply_error(req, 403, "FORBIDDEN", "only the project's owner may share the project");
	struct zerr err = {0};
	_cleanup_json_ json_t *body = http_json_body(req, &err);
	if (!body)
		return http_reply_error(req, 400, "BAD_REQUEST", "%s", err.msg);
	const char *email = json_string_value(json_object_get(body, "email"));
	if (!email || strlen(email) > 254)
		return http_reply_error(req, 400, "INVALID_EMAIL", "email is required");
	const char *prm[] = {k.p.id, email};
	json_t *j = NULL;
	int r = q_json(k.c.c,
	               "WITH m AS (INSERT INTO project_members (project_id, user_id, role) "
	               "SELECT $1, id, 'member' FROM users WHERE email = lower($2) "
	               "ON CONFLICT DO NOTHING RETURNING user_id) "
	               "SELECT json_build_object('user_id', u.id, 'email', u.email) FROM users u "
	               "WHERE u.email = lower($2)",
	               2, prm, &j, &err);
	if (r < 0)
		return reply_db(req, r, &err);
	if (!j)
		return http_reply_error(req, 404, "NOT_FOUND", "no user with that email");
	http_reply_json(req, 201, j);
}

/* ---- API keys ------------------------------------------------------------ */

static void h_keys_list(struct http_request *req, void *app_)
{
	struct app *app = app_;
	_cleanup_call_ struct call k;
	if (!call_begin(req, app, NEED_PROJECT, &k))
		return;
	const char *prm[] = {k.p.id};
	json_t *j = NULL;
	struct zerr err = {0};
	int r = q_json(k.c.c,
	               "SELECT coalesce(json_agg(json_build_object('id', id, 'name', name, 'prefix', prefix, "
	               "'created_at', created_at, 'last_used_at', last_used_at) ORDER BY created_at), '[]') "
	               "FROM api_keys WHERE project_id = $1",
	               1, prm, &j, &err);
	if (r < 0)
		return reply_db(req, r, &err);
	http_reply_json(req, 200, json_pack("{s:o}", "api_keys", j));
}

static void h_keys_create(struct http_request *req, void *app_)
{
	struct app *app = app_;
	_cleanup_call_ struct call k;
	if (!call_begin(req, app, NEED_PROJECT, &k))
		return;
	struct zerr err = {0};
	_cleanup_json_ json_t *body = http_json_body(req, &err);
	if (!body)
		return http_reply_error(req, 400, "BAD_REQUEST", "%s", err.msg);
	const char *name = json_string_value(json_object_get(body, "name"));
	if (!name || !name[0] || strlen(name) > 128)
		return http_reply_error(req, 400, "INVALID_NAME", "name is required, 1 to 128 characters");
	_cleanup_free_ char *key = NULL;
	char prefix[16], hash[65];
	int r = auth_apikey_new(&key, prefix, hash, &err);
	if (r < 0)
		return reply_db(req, r, &err);
	const char *prm[] = {k.p.id, name, prefix, hash};
	json_t *j = NULL;
	r = q_json(k.c.c,
	           "INSERT INTO api_keys (project_id, name, prefix, key_hash) VALUES ($1, $2, $3, $4) "
	           "RETURNING json_build_object('id', id, 'name', name, 'prefix', prefix, 'created_at', created_at)",
	           4, prm, &j, &err);
	if (r < 0)
		return reply_db(req, r, &err);
	/* The only time the key itself is shown. */
	json_object_set_new(j, "key", json_string(key));
	http_reply_json(req, 201, j);
}

static void h_key_delete(struct http_request *req, void *app_)
{
	struct app *app = app_;
	_cleanup_call_ struct call k;
	if (!call_begin(req, app, NEED_PROJECT, &k))
		return;
	const char *kid = http_param(req, "kid");
	if (!is_uuid(kid))
		return http_reply_error(req, 404, "NOT_FOUND", "no such API key");
	const char *prm[] = {k.p.id, kid};
	_cleanup_res_ PGresult *res = NULL;
	struct zerr err = {0};
	int r = db_exec_params(k.c.c, "DELETE FROM api_keys WHERE project_id = $1 AND id = $2::uuid RETURNING id", 2,
	                       prm, &res, &err);
	if (r < 0)
		return reply_db(req, r, &err);
	if (PQntuples(res) != 1)
		return http_reply_error(req, 404, "NOT_FOUND", "no such API key");
	http_reply_json(req, 200, json_pack("{s:b}", "deleted", 1));
}

/* The fields of a create or a change, validated against the project's tier.
 * On a change, absent fields keep their value (NULL / -1 here). */
struct function_input {
	const char *name, *slug, *language, *entry_point, *code;
	json_t *env;
	int64_t timeout_ms, memory_mb;
};

static bool parse_function_input(struct app *app, struct http_request *req, json_t *body, const struct tier *tier,
                                 bool create, struct function_input *in)
{
	memset(in, 0, sizeof(*in));
	in->timeout_ms = in->memory_mb = -1;
	if (!json_is_object(body)) {
		http_reply_error(req, 400, "BAD_REQUEST", "want a JSON object");
		return false;
	}
	static const char *const known[] = {"name", "slug",     "language",   "entry_point",
	                                    "code", "env_vars", "timeout_ms", "memory_mb"};
	const char *k;
	json_t *v;
	json_object_foreach (body, k, v) {
		bool ok = false;
		for (size_t i = 0; i < ELEMENTSOF(known); i++)
			ok |= strcmp(k, known[i]) == 0;
		if (!ok) {
			http_reply_error(req, 400, "UNKNOWN_FIELD", "unknown field \"%.64s\"", k);
			return false;
		}
	}
#define STRFIELD(f)                                                                           \
	do {                                                                                  \
		json_t *_v = json_object_get(body, #f);                                       \
		if (_v && !json_is_string(_v)) {                                              \
			http_reply_error(req, 400, "BAD_REQUEST", "%s must be a string", #f); \
			return false;                                                         \
		}                                                                             \
		in->f = json_string_value(_v);                                                \
	} while (0)
	STRFIELD(name);
	STRFIELD(slug);
	STRFIELD(language);
	STRFIELD(entry_point);
	STRFIELD(code);
#undef STRFIELD
	if (create && (!in->name || !in->code || !in->language)) {
		http_reply_error(req, 400, "BAD_REQUEST", "name, language and code are required");
		return false;
	}
	if (in->name && (!in->name[0] || strlen(in->name) > 128)) {
		http_reply_error(req, 400, "INVALID_NAME", "name must be 1 to 128 characters");
		return false;
	}
	if (in->slug && !valid_slug(in->slug)) {
		http_reply_error(req, 400, "INVALID_SLUG",
		                 "slug must be 1 to 63 of a-z, 0-9 and inner dashes, and not look like an id");
		return false;
	}
	if (in->language && strcmp(in->language, "javascript") != 0 && strcmp(in->language, "python") != 0) {
		http_reply_error(req, 400, "INVALID_LANGUAGE", "language is \"javascript\" or \"python\"");
		return false;
	}
	if (in->entry_point) {
		bool ok =
		    in->entry_point[0] && strlen(in->entry_point) <= 128 && !isdigit((unsigned char)in->entry_point[0]);
		for (const char *c = in->entry_point; ok && *c; c++)
			ok = isalnum((unsigned char)*c) || *c == '_' || *c == '$';
		if (!ok) {
			http_reply_error(req, 400, "INVALID_ENTRY_POINT", "entry_point must be an identifier");
			return false;
		}
	}
	if (in->code && (!in->code[0] || strlen(in->code) > app->cfg.max_code_bytes)) {
		http_reply_error(req, 400, "INVALID_CODE", "code must be 1 to %" PRIu64 " bytes",
		                 app->cfg.max_code_bytes);
		return false;
	}
	json_t *t = json_object_get(body, "timeout_ms");
	if (t) {
		if (!json_is_integer(t) || json_integer_value(t) < 1 ||
		    (uint64_t)json_integer_value(t) > tier->max_timeout_ms) {
			http_reply_error(req, 400, "INVALID_TIMEOUT",
			                 "timeout_ms must be within 1..%" PRIu64 " on the %s tier",
			                 tier->max_timeout_ms, tier->name);
			return false;
		}
		in->timeout_ms = json_integer_value(t);
	}
	json_t *m = json_object_get(body, "memory_mb");
	if (m) {
		if (!json_is_integer(m) || json_integer_value(m) < 64 ||
		    (uint64_t)json_integer_value(m) > tier->max_memory_mb) {
			http_reply_error(req, 400, "INVALID_MEMORY",
			                 "memory_mb must be within 64..%" PRIu64 " on the %s tier", tier->max_memory_mb,
			                 tier->name);
			return false;
		}
		in->memory_mb = json_integer_value(m);
	}
	in->env = json_object_get(body, "env_vars");
	if (in->env) {
		char why[200];
		int r = check_env(in->env, why, sizeof(why));
		if (r < 0) {
			http_reply_error(req, 400, r == -EPERM ? "RESERVED_ENV_VAR" : "INVALID_ENV_VARS", "%s", why);
			return false;
		}
	}
	return true;
}

static void h_functions_list(struct http_request *req, void *app_)
{
	struct app *app = app_;
	_cleanup_call_ struct call k;
	if (!call_begin(req, app, NEED_PROJECT, &k))
		return;
	char sql[1536];
	snprintf(sql, sizeof(sql),
	         "SELECT coalesce(json_agg(%s ORDER BY f.created_at), '[]') FROM functions f WHERE f.project_id = $1",
	         function_json);
	const char *prm[] = {k.p.id};
	json_t *j = NULL;
	struct zerr err = {0};
	int r = q_json(k.c.c, sql, 1, prm, &j, &err);
	if (r < 0)
		return reply_db(req, r, &err);
	http_reply_json(req, 200, json_pack("{s:o}", "functions", j));
}

static void h_functions_create(struct http_request *req, void *app_)
{
	struct app *app = app_;
	_cleanup_call_ struct call k;
	if (!call_begin(req, app, NEED_PROJECT, &k))
		return;
	struct zerr err = {0};
	_cleanup_json_ json_t *body = http_json_body(req, &err);
	if (!body)
		return http_reply_error(req, 400, "BAD_REQUEST", "%s", err.msg);
	struct function_input in;
	if (!parse_function_input(app, req, body, project_tier(app, &k.p), true, &in))
		return;
	char slug[64];
	if (in.slug)
		snprintf(slug, sizeof(slug), "%s", in.slug);
	else
		slugify(in.name, slug, sizeof(slug));
	if (!valid_slug(slug))
		return http_reply_error(req, 400, "INVALID_SLUG", "cannot derive a slug from the name; give one");
	char timeout[24], memory[24];
	snprintf(timeout, sizeof(timeout), "%" PRId64, in.timeout_ms > 0 ? in.timeout_ms : 10000);
	snprintf(memory, sizeof(memory), "%" PRId64, in.memory_mb > 0 ? in.memory_mb : 256);
	if ((uint64_t)strtoull(timeout, NULL, 10) > project_tier(app, &k.p)->max_timeout_ms ||
	    (uint64_t)strtoull(memory, NULL, 10) > project_tier(app, &k.p)->max_memory_mb)
		return http_reply_error(req, 400, "INVALID_LIMITS",
		                        "the defaults exceed the tier; give timeout_ms and memory_mb");
	_cleanup_free_ char *env = in.env ? json_dumps(in.env, JSON_COMPACT) : strdup("{}");
	char sql[2048];
	snprintf(sql, sizeof(sql),
	         "WITH f AS (INSERT INTO functions (project_id, name, slug, language, entry_point, code, env, "
	         "timeout_ms, memory_mb) VALUES ($1, $2, $3, $4, coalesce($5, 'handler'), $6, $7::jsonb, $8, $9) "
	         "RETURNING *) SELECT %s FROM f",
	         function_json);
	const char *prm[] = {k.p.id, in.name, slug, in.language, in.entry_point, in.code, env, timeout, memory};
	json_t *j = NULL;
	int r = q_json(k.c.c, sql, 9, prm, &j, &err);
	if (r < 0)
		return reply_db(req, r, &err);
	zlog(ZLOG_INFO, "function_created", "request_id", http_request_id(req), "project", k.p.id, "function", slug,
	     NULL);
	http_reply_json(req, 201, j);
}

static void h_function_get(struct http_request *req, void *app_)
{
	struct app *app = app_;
	_cleanup_call_ struct call k;
	if (!call_begin(req, app, NEED_FUNCTION | NEED_JSON, &k))
		return;
	json_object_set_new(k.json, "code", json_string(k.f.code));
	http_reply_json(req, 200, json_incref(k.json));
}

/* Snapshot the current state of f as its version, then apply the change
 * and number the result version + 1: every state stays reachable. */
static const char snapshot_sql[] =
    "INSERT INTO function_versions (function_id, version, code, entry_point, env, timeout_ms, memory_mb, language) "
    "SELECT id, version, code, entry_point, env, timeout_ms, memory_mb, language FROM functions WHERE id = $1 "
    "ON CONFLICT (function_id, version) DO NOTHING";

/* One change of a function as a new version, in one transaction: lock the
 * row (concurrent changes then snapshot each other's committed state, so no
 * version is skipped), snapshot the current state, run update (which
 * returns the function's JSON). -ENOENT when update changed nothing. */
static int versioned_update(PGconn *c, const char *id, const char *update, int n, const char *const *prm, json_t **ret,
                            struct zerr *err)
{
	const char *pid[] = {id};
	json_t *j = NULL;
	_cleanup_res_ PGresult *r1 = NULL, *r2 = NULL, *r3 = NULL, *r4 = NULL;
	int r = db_exec_params(c, "BEGIN", 0, NULL, &r1, err);
	if (r == 0)
		r = db_exec_params(c, "SELECT 1 FROM functions WHERE id = $1 FOR UPDATE", 1, pid, &r2, err);
	if (r == 0)
		r = db_exec_params(c, snapshot_sql, 1, pid, &r3, err);
	if (r == 0)
		r = q_json(c, update, n, prm, &j, err);
	if (r == 0 && !j)
		r = -ENOENT; /* deleted meanwhile, or no such version */
	if (r == 0)
		r = db_exec_params(c, "COMMIT", 0, NULL, &r4, err);
	if (r < 0) {
		json_decref(j);
		struct zerr e2 = {0};
		_cleanup_res_ PGresult *rb = NULL;
		db_exec_params(c, "ROLLBACK", 0, NULL, &rb, &e2);
		return r;
	}
	*ret = j;
	return 0;
}

static void h_function_patch(struct http_request *req, void *app_)
{
	struct app *app = app_;
	_cleanup_call_ struct call k;
	if (!call_begin(req, app, NEED_FUNCTION, &k))
		return;
	char id[UUID_LEN + 1];
	snprintf(id, sizeof(id), "%s", k.f.id);
	struct zerr err = {0};
	_cleanup_json_ json_t *body = http_json_body(req, &err);
	if (!body)
		return http_reply_error(req, 400, "BAD_REQUEST", "%s", err.msg);
	struct function_input in;
	if (!parse_function_input(app, req, body, project_tier(app, &k.p), false, &in))
		return;
	char timeout[24], memory[24];
	snprintf(timeout, sizeof(timeout), "%" PRId64, in.timeout_ms);
	snprintf(memory, sizeof(memory), "%" PRId64, in.memory_mb);
	_cleanup_free_ char *env = in.env ? json_dumps(in.env, JSON_COMPACT) : NULL;
	char sql[2048];
	snprintf(
	    sql, sizeof(sql),
	    "WITH f AS (UPDATE functions SET name = coalesce($2, name), slug = coalesce($3, slug), "
	    "language = coalesce($4, language), entry_point = coalesce($5, entry_point), code = coalesce($6, code), "
	    "env = coalesce($7::jsonb, env), timeout_ms = CASE WHEN $8::int > 0 THEN $8::int ELSE timeout_ms END, "
	    "memory_mb = CASE WHEN $9::int > 0 THEN $9::int ELSE memory_mb END, version = version + 1, "
	    "updated_at = now() WHERE id = $1 RETURNING *) SELECT %s FROM f",
	    function_json);
	const char *prm[] = {id, in.name, in.slug, in.language, in.entry_point, in.code, env, timeout, memory};
	json_t *j = NULL;
	int r = versioned_update(k.c.c, id, sql, 9, prm, &j, &err);
	if (r == -ENOENT)
		return http_reply_error(req, 404, "NOT_FOUND", "no such function");
	if (r < 0)
		return reply_db(req, r, &err);
	http_reply_json(req, 200, j);
}

static void h_function_delete(struct http_request *req, void *app_)
{
	struct app *app = app_;
	_cleanup_call_ struct call k;
	if (!call_begin(req, app, NEED_FUNCTION, &k))
		return;
	const char *prm[] = {k.f.id};
	_cleanup_res_ PGresult *res = NULL;
	struct zerr err = {0};
	int r = db_exec_params(k.c.c, "DELETE FROM functions WHERE id = $1", 1, prm, &res, &err);
	if (r < 0)
		return reply_db(req, r, &err);
	http_reply_json(req, 200, json_pack("{s:b}", "deleted", 1));
}

static void h_versions_list(struct http_request *req, void *app_)
{
	struct app *app = app_;
	_cleanup_call_ struct call k;
	if (!call_begin(req, app, NEED_FUNCTION, &k))
		return;
	const char *prm[] = {k.f.id};
	json_t *j = NULL;
	struct zerr err = {0};
	int r =
	    q_json(k.c.c,
	           "SELECT json_build_object('current', (SELECT version FROM functions WHERE id = $1), 'versions', "
	           "coalesce((SELECT json_agg(json_build_object('version', v.version, 'entry_point', v.entry_point, "
	           "'language', v.language, 'timeout_ms', v.timeout_ms, 'memory_mb', v.memory_mb, 'code', v.code, "
	           "'created_at', v.created_at) ORDER BY v.version DESC) FROM function_versions v "
	           "WHERE v.function_id = $1), '[]'))",
	           1, prm, &j, &err);
	if (r < 0)
		return reply_db(req, r, &err);
	http_reply_json(req, 200, j);
}

static void h_rollback(struct http_request *req, void *app_)
{
	struct app *app = app_;
	_cleanup_call_ struct call k;
	if (!call_begin(req, app, NEED_FUNCTION, &k))
		return;
	char id[UUID_LEN + 1];
	snprintf(id, sizeof(id), "%s", k.f.id);
	int64_t current = k.f.version;
	uint64_t v;
	if (util_parse_u64(http_param(req, "v"), 1, INT32_MAX, &v) < 0)
		return http_reply_error(req, 404, "NOT_FOUND", "no such version");
	if ((int64_t)v == current)
		return http_reply_error(req, 409, "ALREADY_CURRENT", "version %" PRIu64 " is the current one", v);
	char vs[24];
	snprintf(vs, sizeof(vs), "%" PRIu64, v);
	struct zerr err = {0};
	/* versioned_update snapshots the current state first, so that this
	 * rollback can itself be rolled back. */
	char sql[2048];
	snprintf(
	    sql, sizeof(sql),
	    "WITH f AS (UPDATE functions f SET code = v.code, entry_point = v.entry_point, env = v.env, "
	    "timeout_ms = v.timeout_ms, memory_mb = v.memory_mb, language = v.language, version = f.version + 1, "
	    "updated_at = now() FROM function_versions v WHERE f.id = $1 AND v.function_id = $1 AND v.version = $2 "
	    "RETURNING f.*) SELECT %s FROM f",
	    function_json);
	const char *prm[] = {id, vs};
	json_t *j = NULL;
	int r = versioned_update(k.c.c, id, sql, 2, prm, &j, &err);
	if (r == -ENOENT)
		return http_reply_error(req, 404, "NOT_FOUND", "no version %" PRIu64 " of this function", v);
	if (r < 0)
		return reply_db(req, r, &err);
	json_object_set_new(j, "rolled_back_to", json_integer((json_int_t)v));
	http_reply_json(req, 200, j);
}

/* ---- invocations --------------------------------------------------------- */

static const uint64_t duration_bounds_ms[APP_DURATION_BUCKETS] = {5,   10,   25,   50,    100,   250,
                                                                  500, 1000, 2500, 10000, 30000, 120000};

static void uuid_v4(char out[UUID_LEN + 1])
{
	uint8_t b[16];
	if (auth_random_bytes(b, sizeof(b), NULL) < 0)
		memset(b, 0, sizeof(b));
	b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
	b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
	snprintf(out, UUID_LEN + 1, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
	         b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

static double now_epoch_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

struct record {
	const char *id, *function_id, *project_id, *trigger, *start, *status;
	int64_t version;
	double started_ms, duration_ms, cpu_ms;
	uint64_t memory_bytes;
	json_t *result; /* borrowed */
	json_t *error;  /* borrowed */
	const char *logs;
	bool logs_truncated;
};

/* Exactly one record per invocation, whatever became of it. */
/* Cut s to at most max bytes on a character boundary (s is valid UTF-8). */
static void cut_utf8(char *s, size_t max)
{
	size_t n = strlen(s);
	if (n <= max)
		return;
	n = max - 3;
	while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
		n--;
	memcpy(s + n, "...", 4);
}

/* Exactly one record per invocation, whatever became of it; written by
 * the record writer, off the request's path. */
static void record_invocation(struct app *app, const struct record *rec)
{
	_cleanup_free_ char *result = rec->result ? json_dumps(rec->result, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
	if (result)
		cut_utf8(result, 1024);
	json_t *o = json_pack("{s:s, s:s, s:s, s:I, s:s, s:s?, s:s, s:f, s:f, s:f, s:I, s:s?, s:s?, s:b, s:O?}", "id",
	                      rec->id, "function_id", rec->function_id, "project_id", rec->project_id, "version",
	                      (json_int_t)rec->version, "trigger", rec->trigger, "start", rec->start, "status",
	                      rec->status, "started_at_ms", rec->started_ms, "duration_ms", rec->duration_ms, "cpu_ms",
	                      rec->cpu_ms, "memory_bytes", (json_int_t)rec->memory_bytes, "result_excerpt", result,
	                      "logs", rec->logs, "logs_truncated", rec->logs_truncated, "error", rec->error);
	if (!o) {
		zlog(ZLOG_ERROR, "record_lost", "invocation_id", rec->id, "error", "cannot encode the record", NULL);
		return;
	}
	records_push(app->records, o);
}

static void reply_rejected(struct app *app, struct http_request *req, const struct project *p, const struct function *f,
                           const char *trigger, const char *code, const char *message)
{
	char id[UUID_LEN + 1];
	uuid_v4(id);
	json_t *error = json_pack("{s:s, s:s}", "code", code, "message", message);
	struct record rec = {.id = id,
	                     .function_id = f->id,
	                     .project_id = p->id,
	                     .trigger = trigger,
	                     .status = "rejected",
	                     .version = f->version,
	                     .started_ms = now_epoch_ms(),
	                     .error = error,
	                     .logs = ""};
	record_invocation(app, &rec);
	json_decref(error);
	http_add_header(req, "Retry-After", strcmp(code, "QUOTA_EXCEEDED") == 0 ? "3600" : "1");
	http_reply_error(req, 429, code, "%s", message);
}

static void invoke(struct app *app, struct http_request *req, struct conn *c, const struct project *p,
                   const struct function *f, json_t *payload, const char *trigger)
{
	if (!f->active)
		return http_reply_error(req, 409, "FUNCTION_DISABLED", "the function is disabled");
	const struct tier *tier = project_tier(app, p);

	/* A slot first, then the monthly cap: an invocation refused for
	 * concurrency must not use up quota. The cap is counted atomically in
	 * the database: right with any number of zmeshd nodes. */
	uint64_t conc = p->concurrency > 0 ? (uint64_t)p->concurrency : tier->concurrency;
	db_release(app->pool, c->c); /* none is held while waiting or running */
	c->c = NULL;
	if (limiter_acquire(&app->limiter, p->id, conc, app->cfg.queue_wait_ms) < 0) {
		atomic_fetch_add(&app->metrics.rejected_rate, 1);
		return reply_rejected(app, req, p, f, trigger, "RATE_LIMITED",
		                      "too many invocations at once; retry shortly");
	}
	char cap[24];
	snprintf(cap, sizeof(cap), "%" PRIu64,
	         p->monthly_cap >= 0 ? (uint64_t)p->monthly_cap : tier->monthly_invocations);
	const char *prm[] = {p->id, cap};
	_cleanup_res_ PGresult *res = NULL;
	struct zerr err = {0};
	PGconn *qc = db_acquire(app->pool);
	/* The count commits without waiting for its WAL flush (set_config is
	 * local to this statement's transaction): a crash may forget the last
	 * few hundred milliseconds of counting, in the users' favour, while a
	 * flush on every invocation would cost more than everything else the
	 * daemon does for it. */
	int r = qc ? db_exec_params(qc,
	                            "SELECT zmesh_take_invocation($1, $2), "
	                            "set_config('synchronous_commit', 'off', true)",
	                            2, prm, &res, &err)
	           : zerr_set(&err, -ETIMEDOUT, "no database connection");
	if (qc)
		db_release(app->pool, qc);
	if (r < 0) {
		limiter_release(&app->limiter, p->id);
		return reply_db(req, r, &err);
	}
	if (PQgetisnull(res, 0, 0)) {
		limiter_release(&app->limiter, p->id);
		atomic_fetch_add(&app->metrics.rejected_quota, 1);
		return reply_rejected(app, req, p, f, trigger, "QUOTA_EXCEEDED",
		                      "the project's monthly invocation cap is reached");
	}

	char id[UUID_LEN + 1], dsn[512];
	uuid_v4(id);
	/* Role, password and database are generated hex: nothing to encode. */
	snprintf(dsn, sizeof(dsn), "postgresql://%s:%s@/%s?host=" EXEC_PG_MOUNT, p->db_role, p->db_password,
	         p->db_name);
	struct exec_request er = {
	    .lang = strcmp(f->language, "python") == 0 ? EXEC_PY : EXEC_JS,
	    .invocation_id = id,
	    .project_id = p->id,
	    .function_name = f->name,
	    .version = f->version,
	    .entry_point = f->entry_point,
	    .code = f->code,
	    .env = f->env,
	    .dsn = app->pg_socket_dir[0] ? dsn : NULL,
	    .payload = payload,
	    .timeout_ms = (uint64_t)f->timeout_ms,
	    .memory_mb = (uint64_t)f->memory_mb,
	};
	double started = now_epoch_ms();
	struct exec_result res_ex;
	atomic_fetch_add(&app->metrics.active, 1);
	r = exec_run(&app->exec, &er, &res_ex, &err);
	atomic_fetch_sub(&app->metrics.active, 1);
	limiter_release(&app->limiter, p->id);
	if (r < 0) {
		/* Refused before any sandbox ran; still one record. */
		return reply_rejected(app, req, p, f, trigger, "SANDBOX_ERROR", err.msg);
	}
	double wall_ms = (double)res_ex.report.wall_us / 1000.0, cpu_ms = (double)res_ex.report.cpu_us / 1000.0;
	enum exec_outcome o = res_ex.outcome;
	const char *status = o == EXEC_SUCCESS ? "success" : o == EXEC_TIMEOUT ? "timeout" : "error";

	if (o == EXEC_SANDBOX_ERROR) {
		/* The platform failed, not the function: the details (host
		 * paths, slots, cgroups) are for the operator's log only. */
		zlog(ZLOG_ERROR, "sandbox_error", "request_id", http_request_id(req), "invocation_id", id, "error",
		     json_string_value(json_object_get(res_ex.error, "message")), NULL);
		json_object_set_new(res_ex.error, "message",
		                    json_string("the platform could not run the function; try again"));
	}
	json_t *error = NULL;
	if (o != EXEC_SUCCESS) {
		error = json_pack("{s:s, s:O?, s:O?, s:O?}", "code", exec_outcome_code(o), "name",
		                  json_object_get(res_ex.error, "name"), "message",
		                  json_object_get(res_ex.error, "message"), "stack",
		                  json_object_get(res_ex.error, "stack"));
	}
	const char *start = res_ex.warm ? "warm" : "cold";
	struct record rec = {.id = id,
	                     .function_id = f->id,
	                     .project_id = p->id,
	                     .trigger = trigger,
	                     .start = start,
	                     .status = status,
	                     .version = f->version,
	                     .started_ms = started,
	                     .duration_ms = wall_ms,
	                     .cpu_ms = cpu_ms,
	                     .memory_bytes = res_ex.report.memory_peak_bytes,
	                     .result = res_ex.result,
	                     .error = error,
	                     .logs = res_ex.logs,
	                     .logs_truncated = res_ex.logs_truncated};
	record_invocation(app, &rec);

	if ((size_t)o < ELEMENTSOF(app->metrics.by_outcome))
		atomic_fetch_add(&app->metrics.by_outcome[o], 1);
	size_t b = 0;
	while (b < APP_DURATION_BUCKETS && wall_ms > (double)duration_bounds_ms[b])
		b++;
	atomic_fetch_add(&app->metrics.duration_bucket[b], 1);
	atomic_fetch_add(&app->metrics.duration_ms_sum, (uint64_t)wall_ms);

	zlog(ZLOG_INFO, "invoke", "request_id", http_request_id(req), "invocation_id", id, "function", f->id, "outcome",
	     exec_outcome_code(o), NULL);
	http_log_field(req, "invocation_id", id);
	json_t *body = json_pack("{s:s, s:O?, s:o?, s:s, s:f, s:s, s:{s:f, s:f, s:I}}", "status", status, "result",
	                         res_ex.result, "error", error ? json_incref(error) : NULL, "invocation_id", id,
	                         "duration_ms", wall_ms, "start", start, "metrics", "wall_ms", wall_ms, "cpu_ms",
	                         cpu_ms, "memory_bytes", (json_int_t)res_ex.report.memory_peak_bytes);
	json_decref(error);
	exec_result_done(&res_ex);
	if (!json_object_get(body, "result"))
		json_object_set_new(body, "result", json_null());
	if (!json_object_get(body, "error"))
		json_object_set_new(body, "error", json_null());
	http_reply_json(req, exec_outcome_http_status(o), body);
}

static void h_invoke(struct http_request *req, void *app_)
{
	struct app *app = app_;
	_cleanup_call_ struct call k;
	if (!call_begin(req, app, NEED_FUNCTION, &k))
		return;
	struct zerr err = {0};
	size_t len = 0;
	http_body(req, &len);
	_cleanup_json_ json_t *body = len ? http_json_body(req, &err) : json_object();
	if (!json_is_object(body)) {
		return http_reply_error(req, 400, "BAD_REQUEST", "%s", body ? "want {\"payload\": ...}" : err.msg);
	}
	invoke(app, req, &k.c, &k.p, &k.f, json_object_get(body, "payload"), "api");
}

/* Public invocation by API key: the key names the project, and slugs are
 * unique within a project, so /api/functions/{slug} is never ambiguous. */
static void h_api_invoke(struct http_request *req, void *app_)
{
	struct app *app = app_;
	const char *key = http_header(req, "x-api-key");
	char hash[65];
	struct zerr err = {0};
	if (!key)
		return http_reply_error(req, 401, "UNAUTHORIZED", "missing x-api-key header");
	if (auth_apikey_hash(key, hash, &err) < 0)
		return http_reply_error(req, 401, "INVALID_API_KEY", "the API key is not valid");
	_cleanup_conn_ struct conn c = {0};
	if (!get_conn(app, req, &c))
		return;
	const char *slug = http_param(req, "slug");
	if (!slug)
		slug = "";
	/* The key's project and the function of {slug} in it, in one round
	 * trip. The key's last use is written at most once a minute: a write
	 * (and its commit) on every invocation would cost more than the rest. */
	char sql[1536];
	snprintf(sql, sizeof(sql),
	         "WITH k AS (SELECT id, project_id, last_used_at FROM api_keys WHERE key_hash = $1), "
	         "touch AS (UPDATE api_keys a SET last_used_at = now() FROM k WHERE a.id = k.id AND "
	         "(k.last_used_at IS NULL OR k.last_used_at < now() - interval '1 minute')) "
	         "SELECT %s, %s FROM k JOIN projects p ON p.id = k.project_id "
	         "LEFT JOIN functions f ON f.project_id = p.id AND %s",
	         project_cols, function_cols, is_uuid(slug) ? "f.id = $2::uuid" : "f.slug = $2");
	const char *prm[] = {hash, slug};
	_cleanup_res_ PGresult *res = NULL;
	int r = db_exec_params(c.c, sql, 2, prm, &res, &err);
	if (r < 0)
		return reply_db(req, r, &err);
	if (PQntuples(res) != 1)
		return http_reply_error(req, 401, "INVALID_API_KEY", "the API key is not valid");
	struct project p;
	project_from_row(res, 0, 0, &p);
	if (PQgetisnull(res, 0, PROJECT_NCOLS))
		return http_reply_error(req, 404, "NOT_FOUND", "no such function in the key's project");
	struct function f;
	r = function_from_row(res, 0, PROJECT_NCOLS, &f, &err);
	if (r < 0)
		return reply_db(req, r, &err);
	size_t len = 0;
	http_body(req, &len);
	_cleanup_json_ json_t *payload = len ? http_json_body(req, &err) : json_null();
	if (!payload) {
		function_done(&f);
		return http_reply_error(req, 400, "BAD_REQUEST", "%s", err.msg);
	}
	invoke(app, req, &c, &p, &f, payload, "api_key");
	function_done(&f);
}

static void h_invocations_list(struct http_request *req, void *app_)
{
	struct app *app = app_;
	_cleanup_call_ struct call k;
	if (!call_begin(req, app, NEED_FUNCTION, &k))
		return;
	/* Records are written in batches: what this node ran is in. */
	records_flush(app->records, 2000);
	const char *id = k.f.id;
	const char *ls = NULL, *os = NULL;
	uint64_t limit = 20, offset = 0;
	int ql = http_query(req, "limit", &ls), qo = http_query(req, "offset", &os);
	if ((ql != 0 && ql != -ENOENT) || (qo != 0 && qo != -ENOENT) ||
	    (ql == 0 && ls && util_parse_u64(ls, 1, 100, &limit) < 0) ||
	    (qo == 0 && os && util_parse_u64(os, 0, 1000000, &offset) < 0))
		return http_reply_error(req, 400, "BAD_REQUEST", "limit is 1..100, offset 0..1000000");
	char l[24], o[24];
	snprintf(l, sizeof(l), "%" PRIu64, limit);
	snprintf(o, sizeof(o), "%" PRIu64, offset);
	const char *prm[] = {id, l, o};
	json_t *j = NULL;
	struct zerr err = {0};
	int r =
	    q_json(k.c.c,
	           "SELECT coalesce(json_agg(x), '[]') FROM (SELECT json_build_object('id', id, 'version', version, "
	           "'trigger', trigger, 'start', start, 'status', status, 'started_at', started_at, 'duration_ms', "
	           "duration_ms, 'cpu_ms', cpu_ms, 'memory_bytes', memory_bytes, 'result_excerpt', result_excerpt, "
	           "'error', error, 'logs_truncated', logs_truncated) x FROM invocations WHERE function_id = $1 "
	           "ORDER BY started_at DESC, id DESC LIMIT $2 OFFSET $3) s",
	           3, prm, &j, &err);
	if (r < 0)
		return reply_db(req, r, &err);
	json_t *body =
	    json_pack("{s:o, s:I, s:I}", "invocations", j, "limit", (json_int_t)limit, "offset", (json_int_t)offset);
	if (json_array_size(j) == limit)
		json_object_set_new(body, "next_offset", json_integer((json_int_t)(offset + limit)));
	http_reply_json(req, 200, body);
}

static void h_invocation_get(struct http_request *req, void *app_)
{
	struct app *app = app_;
	_cleanup_call_ struct call k;
	if (!call_begin(req, app, NEED_FUNCTION, &k))
		return;
	/* Records are written in batches: what this node ran is in. */
	records_flush(app->records, 2000);
	const char *id = k.f.id;
	const char *iid = http_param(req, "iid");
	if (!is_uuid(iid))
		return http_reply_error(req, 404, "NOT_FOUND", "no such invocation");
	const char *prm[] = {id, iid};
	json_t *j = NULL;
	struct zerr err = {0};
	int r = q_json(
	    k.c.c,
	    "SELECT json_build_object('id', id, 'function_id', function_id, 'version', version, 'trigger', "
	    "trigger, 'start', start, 'status', status, 'started_at', started_at, 'duration_ms', duration_ms, "
	    "'cpu_ms', cpu_ms, 'memory_bytes', memory_bytes, 'result_excerpt', result_excerpt, 'error', error, "
	    "'logs', logs, 'logs_truncated', logs_truncated) FROM invocations WHERE function_id = $1 AND id = $2::uuid",
	    2, prm, &j, &err);
	if (r < 0)
		return reply_db(req, r, &err);
	if (!j)
		return http_reply_error(req, 404, "NOT_FOUND", "no such invocation");
	http_reply_json(req, 200, j);
}

/* ---- users and login ----------------------------------------------------- */

static void h_login(struct http_request *req, void *app_)
{
	struct app *app = app_;
	struct zerr err = {0};
	_cleanup_json_ json_t *body = http_json_body(req, &err);
	if (!body)
		return http_reply_error(req, 400, "BAD_REQUEST", "%s", err.msg);
	const char *email = json_string_value(json_object_get(body, "email"));
	const char *password = json_string_value(json_object_get(body, "password"));
	/* Bounds checked before the user is looked up, so that the answer's
	 * timing says nothing of which emails exist. */
	if (!email || !password || strlen(email) > 254 || !password[0] || strlen(password) > 1024)
		return http_reply_error(req, 400, "BAD_REQUEST",
		                        "email and a password of 1 to 1024 bytes are required");
	_cleanup_conn_ struct conn c = {0};
	if (!get_conn(app, req, &c))
		return;
	const char *prm[] = {email};
	_cleanup_res_ PGresult *res = NULL;
	int r = db_exec_params(c.c, "SELECT id, password_hash, is_admin, email FROM users WHERE email = lower($1)", 1,
	                       prm, &res, &err);
	if (r < 0)
		return reply_db(req, r, &err);
	bool found = PQntuples(res) == 1, ok = false;
	db_release(app->pool, c.c);
	c.c = NULL;
	if (limiter_acquire(&app->login_limiter, "login", 0, 5000) < 0) {
		http_add_header(req, "Retry-After", "1");
		return http_reply_error(req, 429, "RATE_LIMITED", "too many logins at once; retry shortly");
	}
	/* The same work whether the user exists or not. */
	r = auth_password_verify(password, found ? PQgetvalue(res, 0, 1) : NULL, &ok, &err);
	limiter_release(&app->login_limiter, "login");
	if (r < 0 || !found || !ok) {
		zlog(ZLOG_INFO, "login_failed", "request_id", http_request_id(req), "client", http_client_addr(req),
		     NULL);
		return http_reply_error(req, 401, "INVALID_CREDENTIALS", "wrong email or password");
	}
	int64_t now = (int64_t)time(NULL), exp = now + (int64_t)app->cfg.token_ttl_s;
	_cleanup_free_ char *token = NULL;
	r = auth_jwt_sign(app->jwt_key, app->jwt_key_len, PQgetvalue(res, 0, 0), now, exp, &token, &err);
	if (r < 0)
		return reply_db(req, r, &err);
	char expires[40];
	time_t e = (time_t)exp;
	struct tm tm;
	gmtime_r(&e, &tm);
	strftime(expires, sizeof(expires), "%Y-%m-%dT%H:%M:%SZ", &tm);
	http_reply_json(req, 200,
	                json_pack("{s:s, s:s, s:{s:s, s:s, s:b}}", "token", token, "expires_at", expires, "user", "id",
	                          PQgetvalue(res, 0, 0), "email", PQgetvalue(res, 0, 3), "is_admin",
	                          strcmp(PQgetvalue(res, 0, 2), "t") == 0));
}

static void h_users_create(struct http_request *req, void *app_)
{
	struct app *app = app_;
	_cleanup_call_ struct call k;
	if (!call_begin(req, app, NEED_USER, &k))
		return;
	if (!k.u.admin)
		return http_reply_error(req, 403, "FORBIDDEN", "only an admin creates users");
	struct zerr err = {0};
	_cleanup_json_ json_t *body = http_json_body(req, &err);
	if (!body)
		return http_reply_error(req, 400, "BAD_REQUEST", "%s", err.msg);
	const char *email = json_string_value(json_object_get(body, "email"));
	const char *password = json_string_value(json_object_get(body, "password"));
	bool admin = json_is_true(json_object_get(body, "is_admin"));
	if (!email || strlen(email) < 3 || strlen(email) > 254 || !strchr(email + 1, '@'))
		return http_reply_error(req, 400, "INVALID_EMAIL", "a valid email is required");
	if (!password || strlen(password) < 8 || strlen(password) > 1024)
		return http_reply_error(req, 400, "INVALID_PASSWORD", "password must be 8 to 1024 characters");
	_cleanup_free_ char *hash = NULL;
	int r = auth_password_hash(password, &hash, &err);
	if (r < 0)
		return reply_db(req, r, &err);
	const char *prm[] = {email, hash, admin ? "t" : "f"};
	json_t *j = NULL;
	r = q_json(
	    k.c.c,
	    "INSERT INTO users (email, password_hash, is_admin) VALUES (lower($1), $2, $3) "
	    "RETURNING json_build_object('id', id, 'email', email, 'is_admin', is_admin, 'created_at', created_at)",
	    3, prm, &j, &err);
	if (r < 0)
		return reply_db(req, r, &err);
	http_reply_json(req, 201, j);
}

/* ---- health and metrics -------------------------------------------------- */

static void h_healthz(struct http_request *req, void *app_)
{
	struct app *app = app_;
	_cleanup_conn_ struct conn c = {0};
	if (!get_conn(app, req, &c))
		return;
	_cleanup_res_ PGresult *res = NULL;
	struct zerr err = {0};
	if (db_exec_params(c.c, "SELECT 1", 0, NULL, &res, &err) < 0)
		return http_reply_error(req, 503, "UNAVAILABLE", "the database does not answer");
	http_reply_json(req, 200, json_pack("{s:s}", "status", "ok"));
}

static void h_metrics(struct http_request *req, void *app_)
{
	struct app *app = app_;
	struct app_metrics *m = &app->metrics;
	char buf[12288];
	size_t off = 0;
#define OUT(...) (off += (size_t)snprintf(buf + off, off < sizeof(buf) ? sizeof(buf) - off : 0, __VA_ARGS__))
	OUT("# HELP zmesh_invocations_total Invocations that ran, by outcome.\n"
	    "# TYPE zmesh_invocations_total counter\n");
	for (int o = EXEC_SUCCESS; o <= EXEC_SANDBOX_ERROR; o++)
		OUT("zmesh_invocations_total{outcome=\"%s\"} %" PRIuFAST64 "\n",
		    exec_outcome_code((enum exec_outcome)o), atomic_load(&m->by_outcome[o]));
	OUT("# HELP zmesh_rejections_total Invocations refused before running.\n"
	    "# TYPE zmesh_rejections_total counter\n"
	    "zmesh_rejections_total{reason=\"rate_limited\"} %" PRIuFAST64 "\n"
	    "zmesh_rejections_total{reason=\"quota_exceeded\"} %" PRIuFAST64 "\n",
	    atomic_load(&m->rejected_rate), atomic_load(&m->rejected_quota));
	OUT("# HELP zmesh_invocation_duration_ms Wall time of invocations.\n"
	    "# TYPE zmesh_invocation_duration_ms histogram\n");
	uint64_t cum = 0;
	for (int b = 0; b < APP_DURATION_BUCKETS; b++) {
		cum += atomic_load(&m->duration_bucket[b]);
		OUT("zmesh_invocation_duration_ms_bucket{le=\"%" PRIu64 "\"} %" PRIu64 "\n", duration_bounds_ms[b],
		    cum);
	}
	cum += atomic_load(&m->duration_bucket[APP_DURATION_BUCKETS]);
	OUT("zmesh_invocation_duration_ms_bucket{le=\"+Inf\"} %" PRIu64 "\n"
	    "zmesh_invocation_duration_ms_sum %" PRIuFAST64 "\nzmesh_invocation_duration_ms_count %" PRIu64 "\n",
	    cum, atomic_load(&m->duration_ms_sum), cum);
	uint64_t used, waiting, rejected;
	limiter_stats(&app->limiter, &used, &waiting, &rejected);
	OUT("# HELP zmesh_active_sandboxes Sandboxes running an invocation now.\n"
	    "# TYPE zmesh_active_sandboxes gauge\nzmesh_active_sandboxes %" PRIuFAST64 "\n"
	    "# HELP zmesh_queue_waiting Invocations waiting for a free slot.\n"
	    "# TYPE zmesh_queue_waiting gauge\nzmesh_queue_waiting %" PRIu64 "\n",
	    atomic_load(&m->active), waiting);
	struct exec_pool_stats ps;
	exec_pool_get_stats(&app->exec, &ps);
	OUT("# HELP zmesh_starts_total Invocations by start: from the warm pool or a fresh spawn.\n"
	    "# TYPE zmesh_starts_total counter\nzmesh_starts_total{start=\"warm\"} %" PRIu64 "\n"
	    "zmesh_starts_total{start=\"cold\"} %" PRIu64 "\n"
	    "# HELP zmesh_pool_ready Sandboxes in the warm pool whose wrapper is loaded and waiting.\n"
	    "# TYPE zmesh_pool_ready gauge\n"
	    "zmesh_pool_ready{runtime=\"javascript\"} %" PRIu64 "\nzmesh_pool_ready{runtime=\"python\"} %" PRIu64 "\n"
	    "# HELP zmesh_pool_ready_with_db Of the ready, those with the database driver loaded (kept while functions "
	    "that use zmesh.db are invoked).\n"
	    "# TYPE zmesh_pool_ready_with_db gauge\n"
	    "zmesh_pool_ready_with_db{runtime=\"javascript\"} %" PRIu64
	    "\nzmesh_pool_ready_with_db{runtime=\"python\"} %" PRIu64 "\n"
	    "# HELP zmesh_pool_starting Sandboxes in the warm pool whose runtime is still starting.\n"
	    "# TYPE zmesh_pool_starting gauge\n"
	    "zmesh_pool_starting{runtime=\"javascript\"} %" PRIu64 "\nzmesh_pool_starting{runtime=\"python\"} %" PRIu64
	    "\n"
	    "# HELP zmesh_pool_target Sandboxes the pool aims at, from recent demand within --pool-size.\n"
	    "# TYPE zmesh_pool_target gauge\nzmesh_pool_target{runtime=\"javascript\"} %" PRIu64 "\n"
	    "zmesh_pool_target{runtime=\"python\"} %" PRIu64 "\n"
	    "# HELP zmesh_pool_memory_bytes Memory held by the sandboxes waiting in the pool.\n"
	    "# TYPE zmesh_pool_memory_bytes gauge\nzmesh_pool_memory_bytes %" PRIu64 "\n"
	    "# HELP zmesh_pool_discarded_total Pooled sandboxes that died or aged out before use.\n"
	    "# TYPE zmesh_pool_discarded_total counter\nzmesh_pool_discarded_total %" PRIu64 "\n",
	    ps.warm, ps.cold, ps.ready_js, ps.ready_py, ps.ready_db_js, ps.ready_db_py, ps.starting_js, ps.starting_py,
	    ps.target_js, ps.target_py, ps.memory_bytes, ps.discarded);
	uint64_t queued, written, failed;
	records_stats(app->records, &queued, &written, &failed);
	OUT("# HELP zmesh_records_queued Invocation records waiting to be written.\n"
	    "# TYPE zmesh_records_queued gauge\nzmesh_records_queued %" PRIu64 "\n"
	    "# HELP zmesh_records_written_total Invocation records written.\n"
	    "# TYPE zmesh_records_written_total counter\nzmesh_records_written_total %" PRIu64 "\n"
	    "# HELP zmesh_records_failed_total Invocation records the database refused.\n"
	    "# TYPE zmesh_records_failed_total counter\nzmesh_records_failed_total %" PRIu64 "\n",
	    queued, written, failed);
#undef OUT
	if (off >= sizeof(buf))
		off = sizeof(buf) - 1;
	http_reply_text(req, 200, "text/plain; version=0.0.4", buf, off);
}

const struct http_route app_routes[] = {
    {"GET", "/healthz", h_healthz},
    {"GET", "/metrics", h_metrics},
    {"POST", "/auth/login", h_login},
    {"POST", "/users", h_users_create},
    {"GET", "/projects", h_projects_list},
    {"POST", "/projects", h_projects_create},
    {"GET", "/projects/{pid}", h_project_get},
    {"PATCH", "/projects/{pid}", h_project_patch},
    {"DELETE", "/projects/{pid}", h_project_delete},
    {"POST", "/projects/{pid}/members", h_members_add},
    {"GET", "/projects/{pid}/api-keys", h_keys_list},
    {"POST", "/projects/{pid}/api-keys", h_keys_create},
    {"DELETE", "/projects/{pid}/api-keys/{kid}", h_key_delete},
    {"GET", "/projects/{pid}/functions", h_functions_list},
    {"POST", "/projects/{pid}/functions", h_functions_create},
    {"GET", "/projects/{pid}/functions/{fid}", h_function_get},
    {"PATCH", "/projects/{pid}/functions/{fid}", h_function_patch},
    {"DELETE", "/projects/{pid}/functions/{fid}", h_function_delete},
    {"POST", "/projects/{pid}/functions/{fid}/invoke", h_invoke},
    {"GET", "/projects/{pid}/functions/{fid}/invocations", h_invocations_list},
    {"GET", "/projects/{pid}/functions/{fid}/invocations/{iid}", h_invocation_get},
    {"GET", "/projects/{pid}/functions/{fid}/versions", h_versions_list},
    {"POST", "/projects/{pid}/functions/{fid}/versions/{v}/rollback", h_rollback},
    {"POST", "/api/functions/{slug}", h_api_invoke},
};
const size_t app_n_routes = ELEMENTSOF(app_routes);

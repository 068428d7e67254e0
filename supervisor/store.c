/* store.c - see store.h */
#define _GNU_SOURCE
#include "store.h"
#include "store_impl.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "errors.h"
#include "log.h"

/* ---- helpers ------------------------------------------------------------- */

/* One row, one column of JSON built by the query. *ret is NULL without a
 * row. */
static int q_json_with(bool prepared, PGconn *c, const char *sql, int n, const char *const *p, json_t **ret,
                       struct zerr *err)
{
	_cleanup_pgresult_ PGresult *res = NULL;
	int r = prepared ? db_exec_prepared(c, sql, n, p, &res, err) : db_exec_params(c, sql, n, p, &res, err);
	if (r < 0)
		return r;
	*ret = NULL;
	if (PQntuples(res) == 0 || PQgetisnull(res, 0, 0))
		return 0;
	json_error_t jerr;
	*ret = json_loads(PQgetvalue(res, 0, 0), JSON_DECODE_ANY, &jerr);
	return *ret ? 0 : zerr_set(err, -EIO, "bad JSON from the database: %s", jerr.text);
}

static int q_json(PGconn *c, const char *sql, int n, const char *const *p, json_t **ret, struct zerr *err)
{
	return q_json_with(false, c, sql, n, p, ret, err);
}

/* q_json that wants a row: -ZE_NOT_FOUND with what for a message without
 * one. */
static int q_json_one(PGconn *c, const char *sql, int n, const char *const *p, json_t **ret, const char *what,
                      struct zerr *err)
{
	int r = q_json(c, sql, n, p, ret, err);
	if (r == 0 && !*ret)
		return ze(err, ZE_NOT_FOUND, "%s", what);
	return r;
}

static int exec(PGconn *c, const char *sql, int n, const char *const *p, struct zerr *err)
{
	return db_exec_params(c, sql, n, p, NULL, err);
}

/* Statements that take a generated identifier (CREATE ROLE, DATABASE), which
 * cannot be a parameter: name quoted by libpq into buf. */
static int quote(PGconn *c, const char *s, bool literal, char *buf, size_t size, struct zerr *err)
{
	char *q = literal ? PQescapeLiteral(c, s, strlen(s)) : PQescapeIdentifier(c, s, strlen(s));
	if (!q)
		return zerr_set(err, -EINVAL, "cannot quote %s", literal ? "a literal" : "an identifier");
	int n = snprintf(buf, size, "%s", q);
	PQfreemem(q);
	return n < (int)size ? 0 : zerr_set(err, -ENAMETOOLONG, "name too long");
}

/* ---- bootstrap ----------------------------------------------------------- */

int store_ensure_database(const char *conninfo_admin, const char *name, struct zerr *err)
{
	_cleanup_pgconn_ PGconn *c = NULL;
	int r = db_connect(conninfo_admin, &c, err);
	if (r < 0)
		return r;
	const char *p[] = {name};
	_cleanup_pgresult_ PGresult *res = NULL;
	r = db_exec_params(c, "SELECT 1 FROM pg_database WHERE datname = $1", 1, p, &res, err);
	if (r < 0 || PQntuples(res) == 1)
		return r;
	char qn[160], sql[256];
	r = quote(c, name, false, qn, sizeof(qn), err);
	if (r < 0)
		return r;
	snprintf(sql, sizeof(sql), "CREATE DATABASE %s", qn);
	return exec(c, sql, 0, NULL, err);
}

int store_ensure_superuser(const char *conninfo_admin, const char *role, struct zerr *err)
{
	_cleanup_pgconn_ PGconn *c = NULL;
	int r = db_connect(conninfo_admin, &c, err);
	if (r < 0)
		return r;
	const char *p[] = {role};
	_cleanup_pgresult_ PGresult *res = NULL;
	r = db_exec_params(c, "SELECT 1 FROM pg_roles WHERE rolname = $1", 1, p, &res, err);
	if (r < 0)
		return r;
	char qn[160], sql[300];
	r = quote(c, role, false, qn, sizeof(qn), err);
	if (r < 0)
		return r;
	snprintf(sql, sizeof(sql),
	         PQntuples(res) ? "ALTER ROLE %s SUPERUSER LOGIN PASSWORD NULL" : "CREATE ROLE %s SUPERUSER LOGIN", qn);
	return exec(c, sql, 0, NULL, err);
}

int store_lock_down(PGconn *c, struct zerr *err)
{
	return exec(c,
	            "DO $$ DECLARE d text; BEGIN FOR d IN SELECT datname FROM pg_database "
	            "WHERE datname IN (current_database(), 'postgres', 'template1') LOOP "
	            "EXECUTE format('REVOKE CONNECT, TEMPORARY ON DATABASE %I FROM PUBLIC', d); END LOOP; END $$",
	            0, NULL, err);
}

int store_count_users(PGconn *c, uint64_t *ret, struct zerr *err)
{
	_cleanup_pgresult_ PGresult *res = NULL;
	int r = db_exec_params(c, "SELECT count(*) FROM users", 0, NULL, &res, err);
	if (r < 0)
		return r;
	*ret = strtoull(PQgetvalue(res, 0, 0), NULL, 10);
	return 0;
}

int store_user_create(PGconn *c, const char *email, const char *password_hash, bool is_admin, json_t **ret,
                      struct zerr *err)
{
	const char *p[] = {email, password_hash, is_admin ? "t" : "f"};
	json_t *j = NULL;
	int r = q_json(
	    c,
	    "INSERT INTO users (email, password_hash, is_admin) VALUES (lower($1), $2, $3) "
	    "RETURNING json_build_object('id', id, 'email', email, 'is_admin', is_admin, 'created_at', created_at)",
	    3, p, &j, err);
	if (r == 0 && ret)
		*ret = j;
	else
		json_decref(j);
	return r;
}

int store_users_list(PGconn *c, json_t **ret, struct zerr *err)
{
	return q_json(
	    c,
	    "SELECT coalesce(json_agg(json_build_object('id', u.id, 'email', u.email, 'is_admin', u.is_admin, "
	    "'created_at', u.created_at, 'projects', (SELECT count(*) FROM project_members m "
	    "WHERE m.user_id = u.id)) ORDER BY u.created_at, u.email), '[]') FROM users u",
	    0, NULL, ret, err);
}

/* ---- rows ---------------------------------------------------------------- */

const char store_project_cols[] = "p.id, p.slug, p.tier, coalesce(p.monthly_cap, -1), coalesce(p.concurrency, -1), "
                                  "p.db_name, p.db_role, p.db_password, coalesce(p.egress->>'mode', 'open')";

static const char project_json[] =
    "json_build_object('id', p.id, 'name', p.name, 'slug', p.slug, 'tier', p.tier, 'monthly_cap', p.monthly_cap, "
    "'concurrency', p.concurrency, 'database', p.db_name, 'egress', p.egress, 'created_at', p.created_at)";

/* store_project_cols at column col. */
void store_project_from_row(PGresult *res, int row, int col, struct project *p)
{
	memset(p, 0, sizeof(*p));
	snprintf(p->id, sizeof(p->id), "%s", PQgetvalue(res, row, col));
	snprintf(p->slug, sizeof(p->slug), "%s", PQgetvalue(res, row, col + 1));
	snprintf(p->tier, sizeof(p->tier), "%s", PQgetvalue(res, row, col + 2));
	p->monthly_cap = strtoll(PQgetvalue(res, row, col + 3), NULL, 10);
	p->concurrency = strtoll(PQgetvalue(res, row, col + 4), NULL, 10);
	snprintf(p->db_name, sizeof(p->db_name), "%s", PQgetvalue(res, row, col + 5));
	snprintf(p->db_role, sizeof(p->db_role), "%s", PQgetvalue(res, row, col + 6));
	snprintf(p->db_password, sizeof(p->db_password), "%s", PQgetvalue(res, row, col + 7));
	snprintf(p->egress_mode, sizeof(p->egress_mode), "%s", PQgetvalue(res, row, col + 8));
}

int store_project_egress(PGconn *c, const char *id, json_t **ret, struct zerr *err)
{
	const char *prm[] = {id};
	_cleanup_pgresult_ PGresult *res = NULL;
	int r = db_exec_prepared(c, "SELECT egress FROM projects WHERE id = $1::uuid", 1, prm, &res, err);
	if (r < 0)
		return r;
	if (PQntuples(res) != 1)
		return ze(err, ZE_NOT_FOUND, "no such project");
	json_error_t jerr;
	*ret = PQgetisnull(res, 0, 0) ? json_object() : json_loads(PQgetvalue(res, 0, 0), 0, &jerr);
	if (!*ret)
		return zerr_set(err, -EIO, "bad egress JSON from the database");
	return 0;
}

/* Env values are write-only: listings show the names only. */
static const char function_json[] =
    "json_build_object('id', f.id, 'project_id', f.project_id, 'name', f.name, 'slug', f.slug, "
    "'language', f.language, 'entry_point', f.entry_point, 'timeout_ms', f.timeout_ms, 'memory_mb', "
    "f.memory_mb, 'status', f.status, 'version', f.version, 'retries', f.retries, 'max_event_age_s', "
    "f.max_event_age_s, 'on_failure', f.on_failure, 'env_vars', "
    "(SELECT coalesce(json_agg(k ORDER BY k), '[]') FROM jsonb_object_keys(f.env) k), "
    "'created_at', f.created_at, 'updated_at', f.updated_at)";

const char store_function_cols[] = "f.id, f.name, f.slug, f.language, f.entry_point, f.timeout_ms, f.memory_mb, "
                                   "f.version, f.status = 'active', f.uses_db, f.code, f.env";

void store_function_done(struct function *f)
{
	free(f->code);
	json_decref(f->env);
	f->code = NULL;
	f->env = NULL;
}

/* store_function_cols at column col. */
int store_function_from_row(PGresult *res, int row, int col, struct function *ret, struct zerr *err)
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
	ret->uses_db = strcmp(PQgetvalue(res, row, col + 9), "t") == 0;
	ret->code = strdup(PQgetvalue(res, row, col + 10));
	ret->env = json_loads(PQgetvalue(res, row, col + 11), 0, NULL);
	if (!ret->code || !ret->env) {
		store_function_done(ret);
		return zerr_set(err, -ENOMEM, "out of memory");
	}
	return 0;
}

/* ---- the caller ---------------------------------------------------------- */

/* A user's tokens_not_before (struct user): iat is in whole seconds, so a
 * token signed in the second of the change could be either side of it; the
 * next second is the first whose tokens are surely newer (a login signs no
 * earlier than it). */
#define TOKENS_NOT_BEFORE "coalesce(floor(extract(epoch FROM u.password_changed_at))::bigint + 1, 0)"

int store_lookup(PGconn *c, unsigned need, const char *user_id, const char *pid, const char *fid, struct user *ret_u,
                 struct project *ret_p, struct function *ret_f, json_t **ret_json, struct zerr *err)
{
	bool want_p = need & (STORE_PROJECT & ~STORE_USER), want_f = need & (STORE_FUNCTION & ~STORE_PROJECT);
	const char *prm[] = {user_id, pid ? pid : "", fid ? fid : ""};
	char sql[2048];
	/* The fixed parts below and the longest choice of columns fit. */
	_Static_assert(sizeof(store_project_cols) + sizeof(store_function_cols) + sizeof(function_json) + 600 <
	                   sizeof(sql),
	               "store_lookup's query may not fit");
	size_t n = (size_t)snprintf(sql, sizeof(sql), "SELECT u.is_admin, %s", TOKENS_NOT_BEFORE);
	if (want_p)
		n += (size_t)snprintf(sql + n, sizeof(sql) - n, ", %s, m.role", store_project_cols);
	if (want_f)
		n += (size_t)snprintf(sql + n, sizeof(sql) - n, ", %s", store_function_cols);
	if ((need & STORE_JSON) && want_p)
		n += (size_t)snprintf(sql + n, sizeof(sql) - n, ", %s", want_f ? function_json : project_json);
	n += (size_t)snprintf(sql + n, sizeof(sql) - n, " FROM users u");
	/* Members see their projects; admins, who grant tiers, see every
	 * project. */
	if (want_p)
		n += (size_t)snprintf(sql + n, sizeof(sql) - n,
		                      " LEFT JOIN projects p ON %s LEFT JOIN project_members m"
		                      " ON m.project_id = p.id AND m.user_id = u.id",
		                      val_is_uuid(prm[1]) ? "p.id = $2::uuid" : "p.slug = $2");
	if (want_f)
		n += (size_t)snprintf(sql + n, sizeof(sql) - n, " LEFT JOIN functions f ON f.project_id = p.id AND %s",
		                      val_is_uuid(prm[2]) ? "f.id = $3::uuid" : "f.slug = $3");
	snprintf(sql + n, sizeof(sql) - n, " WHERE u.id = $1::uuid");

	_cleanup_pgresult_ PGresult *res = NULL;
	int r = db_exec_prepared(c, sql, want_f ? 3 : want_p ? 2 : 1, prm, &res, err);
	if (r < 0)
		return r;
	if (PQntuples(res) != 1)
		return ze(err, ZE_INVALID_TOKEN, "the token's user no longer exists");
	memset(ret_u, 0, sizeof(*ret_u));
	snprintf(ret_u->id, sizeof(ret_u->id), "%s", user_id);
	ret_u->admin = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	ret_u->tokens_not_before = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
	if (!want_p)
		return 0;
	int role = 2 + STORE_PROJECT_NCOLS;
	bool member = !PQgetisnull(res, 0, role);
	if (PQgetisnull(res, 0, 2) || (!member && !ret_u->admin))
		return ze(err, ZE_NOT_FOUND, "no such project");
	store_project_from_row(res, 0, 2, ret_p);
	ret_p->member = member;
	ret_p->owner = member && strcmp(PQgetvalue(res, 0, role), "owner") == 0;
	if (want_f) {
		int fcol = role + 1;
		if (PQgetisnull(res, 0, fcol))
			return ze(err, ZE_NOT_FOUND, "no such function");
		r = store_function_from_row(res, 0, fcol, ret_f, err);
		if (r < 0)
			return r;
	}
	if (need & STORE_JSON) {
		json_error_t jerr;
		*ret_json = json_loads(PQgetvalue(res, 0, PQnfields(res) - 1), JSON_DECODE_ANY, &jerr);
		if (!*ret_json) {
			if (want_f)
				store_function_done(ret_f);
			return zerr_set(err, -EIO, "bad JSON from the database: %s", jerr.text);
		}
	}
	return 0;
}

int store_lookup_key(PGconn *c, const char *key_hash, const char *slug, struct project *ret_p, struct function *ret_f,
                     struct zerr *err)
{
	/* The key's last use is written at most once a minute: a write (and
	 * its commit) on every invocation would cost more than the rest. */
	char sql[1536];
	if (slug)
		snprintf(sql, sizeof(sql),
		         "WITH k AS (SELECT id, project_id, last_used_at FROM api_keys WHERE key_hash = $1), "
		         "touch AS (UPDATE api_keys a SET last_used_at = now() FROM k WHERE a.id = k.id AND "
		         "(k.last_used_at IS NULL OR k.last_used_at < now() - interval '1 minute')) "
		         "SELECT %s, %s FROM k JOIN projects p ON p.id = k.project_id "
		         "LEFT JOIN functions f ON f.project_id = p.id AND %s",
		         store_project_cols, store_function_cols,
		         val_is_uuid(slug) ? "f.id = $2::uuid" : "f.slug = $2");
	else
		snprintf(sql, sizeof(sql),
		         "WITH k AS (SELECT id, project_id, last_used_at FROM api_keys WHERE key_hash = $1), "
		         "touch AS (UPDATE api_keys a SET last_used_at = now() FROM k WHERE a.id = k.id AND "
		         "(k.last_used_at IS NULL OR k.last_used_at < now() - interval '1 minute')) "
		         "SELECT %s FROM k JOIN projects p ON p.id = k.project_id",
		         store_project_cols);
	const char *prm[] = {key_hash, slug};
	_cleanup_pgresult_ PGresult *res = NULL;
	int r = db_exec_prepared(c, sql, slug ? 2 : 1, prm, &res, err);
	if (r < 0)
		return r;
	if (PQntuples(res) != 1)
		return ze(err, ZE_INVALID_API_KEY, "the API key is not valid");
	store_project_from_row(res, 0, 0, ret_p);
	if (!slug)
		return 0;
	if (PQgetisnull(res, 0, STORE_PROJECT_NCOLS))
		return ze(err, ZE_NOT_FOUND, "no such function in the key's project");
	return store_function_from_row(res, 0, STORE_PROJECT_NCOLS, ret_f, err);
}

int store_user_for_login(PGconn *c, const char *email, char ret_id[STORE_ID_LEN + 1], char **ret_hash,
                         int64_t *ret_not_before, json_t **ret_json, struct zerr *err)
{
	const char *prm[] = {email};
	_cleanup_pgresult_ PGresult *res = NULL;
	int r = db_exec_params(c,
	                       "SELECT u.id, u.password_hash, json_build_object('id', u.id, 'email', u.email, "
	                       "'is_admin', u.is_admin), " TOKENS_NOT_BEFORE " FROM users u WHERE u.email = lower($1)",
	                       1, prm, &res, err);
	if (r < 0)
		return r;
	if (PQntuples(res) != 1)
		return ze(err, ZE_NOT_FOUND, "no such user");
	_cleanup_free_ char *hash = strdup(PQgetvalue(res, 0, 1));
	json_t *j = json_loads(PQgetvalue(res, 0, 2), 0, NULL);
	if (!hash || !j) {
		json_decref(j);
		return zerr_set(err, -ENOMEM, "out of memory");
	}
	snprintf(ret_id, STORE_ID_LEN + 1, "%s", PQgetvalue(res, 0, 0));
	*ret_hash = TAKE_PTR(hash);
	*ret_not_before = strtoll(PQgetvalue(res, 0, 3), NULL, 10);
	*ret_json = j;
	return 0;
}

int store_user_password(PGconn *c, const char *user_id, char **ret_email, char **ret_hash, struct zerr *err)
{
	const char *prm[] = {user_id};
	_cleanup_pgresult_ PGresult *res = NULL;
	int r = db_exec_params(c, "SELECT email, password_hash FROM users WHERE id = $1::uuid", 1, prm, &res, err);
	if (r < 0)
		return r;
	if (PQntuples(res) != 1)
		return ze(err, ZE_NOT_FOUND, "no such user");
	_cleanup_free_ char *email = strdup(PQgetvalue(res, 0, 0));
	_cleanup_free_ char *hash = strdup(PQgetvalue(res, 0, 1));
	if (!email || !hash)
		return zerr_set(err, -ENOMEM, "out of memory");
	*ret_email = TAKE_PTR(email);
	*ret_hash = TAKE_PTR(hash);
	return 0;
}

int store_user_set_password(PGconn *c, const char *who, const char *password_hash, int64_t *ret_not_before,
                            struct zerr *err)
{
	const char *prm[] = {who, password_hash};
	_cleanup_pgresult_ PGresult *res = NULL;
	int r = db_exec_params(c,
	                       val_is_uuid(who) ? "UPDATE users u SET password_hash = $2, password_changed_at = now() "
	                                          "WHERE u.id = $1::uuid RETURNING " TOKENS_NOT_BEFORE
	                                        : "UPDATE users u SET password_hash = $2, password_changed_at = now() "
	                                          "WHERE u.email = lower($1) RETURNING " TOKENS_NOT_BEFORE,
	                       2, prm, &res, err);
	if (r < 0)
		return r;
	if (PQntuples(res) != 1)
		return ze(err, ZE_NOT_FOUND, "no such user");
	if (ret_not_before)
		*ret_not_before = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	return 0;
}

/* ---- projects, members, keys --------------------------------------------- */

int store_projects_list(PGconn *c, const char *user_id, json_t **ret, struct zerr *err)
{
	char sql[1024];
	snprintf(sql, sizeof(sql),
	         "SELECT coalesce(json_agg(%s ORDER BY p.created_at), '[]') FROM projects p "
	         "JOIN project_members m ON m.project_id = p.id WHERE m.user_id = $1",
	         project_json);
	const char *p[] = {user_id};
	return q_json(c, sql, 1, p, ret, err);
}

int store_projects_owned(PGconn *c, const char *user_id, uint64_t *ret, struct zerr *err)
{
	const char *p[] = {user_id};
	_cleanup_pgresult_ PGresult *res = NULL;
	int r = db_exec_params(c, "SELECT count(*) FROM project_members WHERE user_id = $1 AND role = 'owner'", 1, p,
	                       &res, err);
	if (r == 0)
		*ret = strtoull(PQgetvalue(res, 0, 0), NULL, 10);
	return r;
}

/* The stored verifier of a project role's password: one PBKDF2 iteration
 * where PostgreSQL would use 4096. Iterations slow down guessing a
 * person's password from a stolen verifier; these passwords are 192
 * random bits made by the platform, beyond guessing at any count, while
 * 4096 rounds on each side cost every invocation's connection some 3 ms. */
#define PROJECT_SCRAM_ITERATIONS 1

int store_provision_database(PGconn *c, const char *name, const char *password, struct zerr *err)
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
	r = exec(c, sql, 0, NULL, err);
	if (r < 0)
		return r;
	snprintf(sql, sizeof(sql), "CREATE DATABASE %s OWNER %s", qn, qn);
	r = exec(c, sql, 0, NULL, err);
	/* Only its owner may connect: not other projects' roles. The role's
	 * connection limit keeps one tenant from exhausting the cluster. */
	snprintf(sql, sizeof(sql), "REVOKE ALL ON DATABASE %s FROM PUBLIC", qn);
	if (r == 0)
		r = exec(c, sql, 0, NULL, err);
	return r;
}

void store_drop_database(PGconn *c, const char *name)
{
	struct zerr err = {0};
	char qn[160], sql[400];
	if (quote(c, name, false, qn, sizeof(qn), &err) < 0)
		return;
	snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", qn);
	if (exec(c, sql, 0, NULL, &err) < 0)
		zlog(ZLOG_WARN, "drop_database_failed", "database", name, "error", err.msg, NULL);
	snprintf(sql, sizeof(sql), "DROP ROLE IF EXISTS %s", qn);
	if (exec(c, sql, 0, NULL, &err) < 0)
		zlog(ZLOG_WARN, "drop_role_failed", "role", name, "error", err.msg, NULL);
}

int store_project_create(PGconn *c, const struct val_project *in, const char *tier, const char *db_name,
                         const char *db_password, const char *owner_id, json_t **ret, struct zerr *err)
{
	char sql[1024];
	snprintf(sql, sizeof(sql),
	         "WITH p AS (INSERT INTO projects (name, slug, tier, db_name, db_role, db_password) "
	         "VALUES ($1, $2, $3, $4, $4, $5) RETURNING *), "
	         "m AS (INSERT INTO project_members (project_id, user_id, role) SELECT id, $6, 'owner' FROM p) "
	         "SELECT %s FROM p",
	         project_json);
	const char *p[] = {in->name, in->slug, tier, db_name, db_password, owner_id};
	return q_json_one(c, sql, 6, p, ret, "project not created", err);
}

int store_project_update(PGconn *c, const char *id, const char *name, const char *tier, json_t *egress, json_t **ret,
                         struct zerr *err)
{
	char sql[1024];
	snprintf(sql, sizeof(sql),
	         "WITH p AS (UPDATE projects SET name = coalesce($2, name), tier = coalesce($3, tier), "
	         "egress = coalesce($4::jsonb, egress) WHERE id = $1 RETURNING *) SELECT %s FROM p",
	         project_json);
	_cleanup_free_ char *egress_text = egress ? json_dumps(egress, JSON_COMPACT) : NULL;
	if (egress && !egress_text)
		return zerr_set(err, -ENOMEM, "out of memory");
	const char *prm[] = {id, name, tier, egress_text};
	return q_json_one(c, sql, 4, prm, ret, "no such project", err);
}

int store_project_delete(PGconn *c, const char *id, struct zerr *err)
{
	const char *prm[] = {id};
	return exec(c, "DELETE FROM projects WHERE id = $1", 1, prm, err);
}

int store_member_add(PGconn *c, const char *project_id, const char *email, json_t **ret, struct zerr *err)
{
	const char *prm[] = {project_id, email};
	return q_json_one(c,
	                  "WITH m AS (INSERT INTO project_members (project_id, user_id, role) "
	                  "SELECT $1, id, 'member' FROM users WHERE email = lower($2) "
	                  "ON CONFLICT DO NOTHING RETURNING user_id) "
	                  "SELECT json_build_object('user_id', u.id, 'email', u.email) FROM users u "
	                  "WHERE u.email = lower($2)",
	                  2, prm, ret, "no user with that email", err);
}

int store_keys_list(PGconn *c, const char *project_id, json_t **ret, struct zerr *err)
{
	const char *prm[] = {project_id};
	return q_json(c,
	              "SELECT coalesce(json_agg(json_build_object('id', id, 'name', name, 'prefix', prefix, "
	              "'created_at', created_at, 'last_used_at', last_used_at) ORDER BY created_at), '[]') "
	              "FROM api_keys WHERE project_id = $1",
	              1, prm, ret, err);
}

int store_key_create(PGconn *c, const char *project_id, const char *name, const char *prefix, const char *hash,
                     json_t **ret, struct zerr *err)
{
	const char *prm[] = {project_id, name, prefix, hash};
	return q_json_one(
	    c,
	    "INSERT INTO api_keys (project_id, name, prefix, key_hash) VALUES ($1, $2, $3, $4) "
	    "RETURNING json_build_object('id', id, 'name', name, 'prefix', prefix, 'created_at', created_at)",
	    4, prm, ret, "key not created", err);
}

int store_key_delete(PGconn *c, const char *project_id, const char *key_id, struct zerr *err)
{
	if (!val_is_uuid(key_id))
		return ze(err, ZE_NOT_FOUND, "no such API key");
	const char *prm[] = {project_id, key_id};
	_cleanup_pgresult_ PGresult *res = NULL;
	int r = db_exec_params(c, "DELETE FROM api_keys WHERE project_id = $1 AND id = $2::uuid RETURNING id", 2, prm,
	                       &res, err);
	if (r == 0 && PQntuples(res) != 1)
		return ze(err, ZE_NOT_FOUND, "no such API key");
	return r;
}

/* ---- functions and versions ---------------------------------------------- */

int store_functions_list(PGconn *c, const char *project_id, json_t **ret, struct zerr *err)
{
	char sql[1536];
	snprintf(sql, sizeof(sql),
	         "SELECT coalesce(json_agg(%s ORDER BY f.created_at), '[]') FROM functions f WHERE f.project_id = $1",
	         function_json);
	const char *prm[] = {project_id};
	return q_json(c, sql, 1, prm, ret, err);
}

int store_function_create(PGconn *c, const char *project_id, const struct val_function *in, const char *slug,
                          int64_t timeout_ms, int64_t memory_mb, bool uses_db, json_t **ret, struct zerr *err)
{
	char timeout[24], memory[24];
	snprintf(timeout, sizeof(timeout), "%" PRId64, timeout_ms);
	snprintf(memory, sizeof(memory), "%" PRId64, memory_mb);
	_cleanup_free_ char *env = in->env ? json_dumps(in->env, JSON_COMPACT) : strdup("{}");
	if (!env)
		return zerr_set(err, -ENOMEM, "out of memory");
	char sql[2048];
	snprintf(sql, sizeof(sql),
	         "WITH f AS (INSERT INTO functions (project_id, name, slug, language, entry_point, code, env, "
	         "timeout_ms, memory_mb, uses_db, retries, max_event_age_s, on_failure) VALUES ($1, $2, $3, $4, "
	         "coalesce($5, 'handler'), $6, $7::jsonb, $8, $9, $10, coalesce($11::int, 2), "
	         "coalesce($12::int, 21600), $13) RETURNING *) SELECT %s FROM f",
	         function_json);
	char retries[24], age[24];
	snprintf(retries, sizeof(retries), "%" PRId64, in->retries);
	snprintf(age, sizeof(age), "%" PRId64, in->max_event_age_s);
	const char *prm[] = {project_id,
	                     in->name,
	                     slug,
	                     in->language,
	                     in->entry_point,
	                     in->code,
	                     env,
	                     timeout,
	                     memory,
	                     uses_db ? "t" : "f",
	                     in->retries >= 0 ? retries : NULL,
	                     in->max_event_age_s > 0 ? age : NULL,
	                     in->on_failure};
	return q_json_one(c, sql, 13, prm, ret, "function not created", err);
}

/* Snapshot the current state of a function as its version, then apply the
 * change and number the result version + 1: every state stays reachable. */
static const char snapshot_sql[] =
    "INSERT INTO function_versions (function_id, version, code, entry_point, env, timeout_ms, memory_mb, language, "
    "uses_db) SELECT id, version, code, entry_point, env, timeout_ms, memory_mb, language, uses_db FROM functions "
    "WHERE id = $1 ON CONFLICT (function_id, version) DO NOTHING";

/* One change of a function as a new version, in one transaction: lock the
 * row (concurrent changes then snapshot each other's committed state, so no
 * version is skipped), snapshot the current state, run update (which
 * returns the function's JSON). -ZE_NOT_FOUND with what when update changed
 * nothing. With same (a query of the same parameters answering whether the
 * update would leave every field as it is), an update that changes nothing
 * makes no version: *ret is then the function as it is. *ret carries
 * "changed". */
static int versioned_update(PGconn *c, const char *id, const char *same, const char *update, int n,
                            const char *const *prm, const char *what, json_t **ret, struct zerr *err)
{
	const char *pid[] = {id};
	json_t *j = NULL;
	bool unchanged = false;
	int r = exec(c, "BEGIN", 0, NULL, err);
	if (r == 0)
		r = exec(c, "SELECT 1 FROM functions WHERE id = $1 FOR UPDATE", 1, pid, err);
	if (r == 0 && same) {
		_cleanup_pgresult_ PGresult *res = NULL;
		r = db_exec_params(c, same, n, prm, &res, err);
		unchanged = r == 0 && PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	}
	if (r == 0 && unchanged) {
		char sql[1536];
		snprintf(sql, sizeof(sql), "SELECT %s FROM functions f WHERE f.id = $1", function_json);
		r = q_json_one(c, sql, 1, pid, &j, what, err);
	} else {
		if (r == 0)
			r = exec(c, snapshot_sql, 1, pid, err);
		if (r == 0)
			r = q_json_one(c, update, n, prm, &j, what, err);
	}
	if (r == 0)
		r = exec(c, "COMMIT", 0, NULL, err);
	if (r < 0) {
		json_decref(j);
		struct zerr e2 = {0};
		exec(c, "ROLLBACK", 0, NULL, &e2);
		return r;
	}
	json_object_set_new(j, "changed", json_boolean(!unchanged));
	*ret = j;
	return 0;
}

int store_function_update(PGconn *c, const char *id, const struct val_function *in, bool uses_db, json_t **ret,
                          struct zerr *err)
{
	char timeout[24], memory[24];
	snprintf(timeout, sizeof(timeout), "%" PRId64, in->timeout_ms);
	snprintf(memory, sizeof(memory), "%" PRId64, in->memory_mb);
	_cleanup_free_ char *env = in->env ? json_dumps(in->env, JSON_COMPACT) : NULL;
	if (in->env && !env)
		return zerr_set(err, -ENOMEM, "out of memory");
	char sql[2048];
	snprintf(sql, sizeof(sql),
	         "WITH f AS (UPDATE functions SET name = coalesce($2, name), slug = coalesce($3, slug), "
	         "language = coalesce($4, language), entry_point = coalesce($5, entry_point), "
	         "code = coalesce($6, code), uses_db = CASE WHEN $6 IS NULL THEN uses_db ELSE $10::boolean END, "
	         "env = coalesce($7::jsonb, env), timeout_ms = CASE WHEN $8::int > 0 THEN $8::int ELSE timeout_ms END, "
	         "memory_mb = CASE WHEN $9::int > 0 THEN $9::int ELSE memory_mb END, "
	         "retries = coalesce($11::int, retries), max_event_age_s = coalesce($12::int, max_event_age_s), "
	         "on_failure = CASE WHEN $14::boolean THEN $13 ELSE on_failure END, version = version + 1, "
	         "updated_at = now() WHERE id = $1 RETURNING *) SELECT %s FROM f",
	         function_json);
	/* The same expressions as the update's: true when it would change no
	 * field (a redeploy of the same code and config). */
	static const char same[] =
	    "SELECT (coalesce($2, name), coalesce($3, slug), coalesce($4, language), coalesce($5, entry_point), "
	    "coalesce($6, code), CASE WHEN $6 IS NULL THEN uses_db ELSE $10::boolean END, coalesce($7::jsonb, env), "
	    "CASE WHEN $8::int > 0 THEN $8::int ELSE timeout_ms END, "
	    "CASE WHEN $9::int > 0 THEN $9::int ELSE memory_mb END, coalesce($11::int, retries), "
	    "coalesce($12::int, max_event_age_s), CASE WHEN $14::boolean THEN $13 ELSE on_failure END) IS NOT DISTINCT "
	    "FROM (name, slug, language, entry_point, code, uses_db, env, timeout_ms, memory_mb, retries, "
	    "max_event_age_s, on_failure) FROM functions WHERE id = $1";
	char retries[24], age[24];
	snprintf(retries, sizeof(retries), "%" PRId64, in->retries);
	snprintf(age, sizeof(age), "%" PRId64, in->max_event_age_s);
	const char *prm[] = {id,
	                     in->name,
	                     in->slug,
	                     in->language,
	                     in->entry_point,
	                     in->code,
	                     env,
	                     timeout,
	                     memory,
	                     uses_db ? "t" : "f",
	                     in->retries >= 0 ? retries : NULL,
	                     in->max_event_age_s > 0 ? age : NULL,
	                     in->on_failure,
	                     in->on_failure_set ? "t" : "f"};
	return versioned_update(c, id, same, sql, 14, prm, "no such function", ret, err);
}

int store_function_slug_exists(PGconn *c, const char *project_id, const char *slug, bool *ret, struct zerr *err)
{
	const char *prm[] = {project_id, slug};
	_cleanup_pgresult_ PGresult *res = NULL;
	int r = db_exec_params(c, "SELECT 1 FROM functions WHERE project_id = $1 AND slug = $2", 2, prm, &res, err);
	if (r == 0)
		*ret = PQntuples(res) == 1;
	return r;
}

int store_function_delete(PGconn *c, const char *id, struct zerr *err)
{
	const char *prm[] = {id};
	return exec(c, "DELETE FROM functions WHERE id = $1", 1, prm, err);
}

int store_versions_list(PGconn *c, const char *id, json_t **ret, struct zerr *err)
{
	const char *prm[] = {id};
	return q_json_one(
	    c,
	    "SELECT json_build_object('current', (SELECT version FROM functions WHERE id = $1), 'versions', "
	    "coalesce((SELECT json_agg(json_build_object('version', v.version, 'entry_point', v.entry_point, "
	    "'language', v.language, 'timeout_ms', v.timeout_ms, 'memory_mb', v.memory_mb, 'code', v.code, "
	    "'env_vars', (SELECT coalesce(json_agg(k ORDER BY k), '[]') FROM jsonb_object_keys(v.env) k), "
	    "'created_at', v.created_at) ORDER BY v.version DESC) FROM function_versions v "
	    "WHERE v.function_id = $1), '[]'))",
	    1, prm, ret, "no such function", err);
}

int store_function_rollback(PGconn *c, const char *id, int64_t version, json_t **ret, struct zerr *err)
{
	char vs[24], what[64];
	snprintf(vs, sizeof(vs), "%" PRId64, version);
	snprintf(what, sizeof(what), "no version %" PRId64 " of this function", version);
	char sql[2048];
	snprintf(sql, sizeof(sql),
	         "WITH f AS (UPDATE functions f SET code = v.code, entry_point = v.entry_point, env = v.env, "
	         "timeout_ms = v.timeout_ms, memory_mb = v.memory_mb, language = v.language, uses_db = v.uses_db, "
	         "version = f.version + 1, updated_at = now() FROM function_versions v WHERE f.id = $1 "
	         "AND v.function_id = $1 AND v.version = $2 RETURNING f.*) SELECT %s FROM f",
	         function_json);
	const char *prm[] = {id, vs};
	return versioned_update(c, id, NULL, sql, 2, prm, what, ret, err);
}

/* ---- invocations --------------------------------------------------------- */

int store_take_invocation(PGconn *c, const char *project_id, uint64_t cap, bool *ret_ok, uint64_t *ret_count,
                          struct zerr *err)
{
	char caps[24];
	snprintf(caps, sizeof(caps), "%" PRIu64, cap);
	const char *prm[] = {project_id, caps};
	_cleanup_pgresult_ PGresult *res = NULL;
	/* The count commits without waiting for its WAL flush (set_config is
	 * local to this statement's transaction): a crash may forget the last
	 * few hundred milliseconds of counting, in the users' favour, while a
	 * flush on every invocation would cost more than everything else the
	 * daemon does for it. */
	int r =
	    db_exec_prepared(c, "SELECT zmesh_take_invocation($1, $2), set_config('synchronous_commit', 'off', true)",
	                     2, prm, &res, err);
	if (r == 0) {
		*ret_ok = !PQgetisnull(res, 0, 0);
		if (ret_count)
			*ret_count = *ret_ok ? strtoull(PQgetvalue(res, 0, 0), NULL, 10) : 0;
	}
	return r;
}

int store_add_invocations(PGconn *c, const char *counts_json, json_t **ret, struct zerr *err)
{
	const char *prm[] = {counts_json};
	/* Without waiting for the WAL flush, as store_take_invocation. */
	return q_json_with(true, c,
	                   "SELECT coalesce(json_agg(json_build_array(a.project_id, a.invocations)), '[]') "
	                   "FROM zmesh_add_invocations($1::json) a "
	                   "WHERE set_config('synchronous_commit', 'off', true) IS NOT NULL",
	                   1, prm, ret, err);
}

int store_records_insert(PGconn *c, const char *records_json, struct zerr *err)
{
	/* One statement for a whole batch: the records travel as one JSON
	 * array parameter and PostgreSQL unpacks them. */
	const char *p[] = {records_json};
	return db_exec_prepared(
	    c,
	    "INSERT INTO invocations (id, function_id, project_id, version, trigger, trigger_id, attempt, start, "
	    "status, started_at, duration_ms, cpu_ms, memory_bytes, result_excerpt, logs, logs_truncated, error, "
	    "egress_requests, egress_bytes, egress_refused, payload, payload_truncated) "
	    "SELECT id, function_id, project_id, version, trigger, trigger_id, coalesce(attempt, 1), start, status, "
	    "to_timestamp(started_at_ms / 1000.0), duration_ms, cpu_ms, memory_bytes, result_excerpt, logs, "
	    "coalesce(logs_truncated, false), error, coalesce(egress_requests, 0), coalesce(egress_bytes, 0), "
	    "coalesce(egress_refused, 0), payload::json, coalesce(payload_truncated, false) "
	    "FROM json_to_recordset($1::json) AS x(id uuid, function_id uuid, project_id uuid, version int, "
	    "trigger text, trigger_id uuid, attempt int, start text, status text, started_at_ms double precision, "
	    "duration_ms double "
	    "precision, cpu_ms double precision, memory_bytes bigint, result_excerpt text, logs text, "
	    "logs_truncated boolean, error jsonb, egress_requests int, egress_bytes bigint, egress_refused int, "
	    "payload text, payload_truncated boolean)",
	    1, p, NULL, err);
}

/* An invocation's measurements, as the invoke answer shows them. */
#define INVOCATION_METRICS                                                                           \
	"json_build_object('wall_ms', duration_ms, 'cpu_ms', cpu_ms, 'memory_bytes', memory_bytes, " \
	"'egress_requests', "                                                                        \
	"egress_requests, 'egress_bytes', egress_bytes, 'egress_refused', egress_refused)"

int store_invocations_list(PGconn *c, const char *function_id, uint64_t limit, uint64_t offset, json_t **ret,
                           struct zerr *err)
{
	char l[24], o[24];
	snprintf(l, sizeof(l), "%" PRIu64, limit);
	snprintf(o, sizeof(o), "%" PRIu64, offset);
	const char *prm[] = {function_id, l, o};
	return q_json(c,
	              "SELECT coalesce(json_agg(x), '[]') FROM (SELECT json_build_object('id', id, 'version', version, "
	              "'trigger', trigger, 'trigger_id', trigger_id, 'attempt', attempt, 'queue_ms', queue_ms, "
	              "'start', start, 'status', "
	              "status, 'started_at', started_at, 'duration_ms', "
	              "duration_ms, 'cpu_ms', cpu_ms, 'memory_bytes', memory_bytes, 'result_excerpt', result_excerpt, "
	              "'error', error, 'logs_truncated', logs_truncated, 'metrics', " INVOCATION_METRICS
	              ") x FROM invocations WHERE function_id = $1 "
	              "ORDER BY started_at DESC, id DESC LIMIT $2 OFFSET $3) s",
	              3, prm, ret, err);
}

int store_invocation_get(PGconn *c, const char *function_id, const char *invocation_id, json_t **ret, struct zerr *err)
{
	if (!val_is_uuid(invocation_id))
		return ze(err, ZE_NOT_FOUND, "no such invocation");
	const char *prm[] = {function_id, invocation_id};
	return q_json_one(c,
	                  "SELECT json_build_object('id', id, 'function_id', function_id, 'version', version, "
	                  "'trigger', trigger, 'trigger_id', trigger_id, 'attempt', attempt, 'queue_ms', queue_ms, "
	                  "'start', start, 'status', "
	                  "status, 'started_at', started_at, "
	                  "'duration_ms', duration_ms, 'cpu_ms', cpu_ms, 'memory_bytes', memory_bytes, "
	                  "'result_excerpt', result_excerpt, 'error', error, 'logs', logs, 'logs_truncated', "
	                  "logs_truncated, 'payload', payload, 'payload_kept', payload IS NOT NULL, "
	                  "'payload_truncated', payload_truncated, 'metrics', " INVOCATION_METRICS
	                  ") FROM invocations WHERE function_id = $1 AND id = $2::uuid",
	                  2, prm, ret, "no such invocation", err);
}

int store_ping(PGconn *c, struct zerr *err)
{
	return exec(c, "SELECT 1", 0, NULL, err);
}

/* ---- for the store's other files (store_impl.h) ---- */

int store_q_json(PGconn *c, const char *sql, int n, const char *const *p, json_t **ret, struct zerr *err)
{
	return q_json(c, sql, n, p, ret, err);
}

int store_q_json_one(PGconn *c, const char *sql, int n, const char *const *p, json_t **ret, const char *what,
                     struct zerr *err)
{
	return q_json_one(c, sql, n, p, ret, what, err);
}

int store_q_json_prepared(PGconn *c, const char *sql, int n, const char *const *p, json_t **ret, struct zerr *err)
{
	return q_json_with(true, c, sql, n, p, ret, err);
}

/* ---- members ---- */

int store_members_list(PGconn *c, const char *project_id, json_t **ret, struct zerr *err)
{
	const char *prm[] = {project_id};
	return q_json(c,
	              "SELECT coalesce(json_agg(json_build_object('user_id', u.id, 'email', u.email, 'role', m.role, "
	              "'added_at', m.created_at) ORDER BY m.role <> 'owner', m.created_at, u.email), '[]') "
	              "FROM project_members m JOIN users u ON u.id = m.user_id WHERE m.project_id = $1",
	              1, prm, ret, err);
}

int store_member_remove(PGconn *c, const char *project_id, const char *user_id, struct zerr *err)
{
	const char *prm[] = {project_id, user_id};
	_cleanup_pgresult_ PGresult *res = NULL;
	int r =
	    db_exec_params(c,
	                   "WITH o AS (SELECT user_id FROM project_members WHERE project_id = $1 AND role = 'owner' "
	                   "FOR UPDATE), "
	                   "t AS (SELECT role FROM project_members WHERE project_id = $1 AND user_id = $2::uuid), "
	                   "d AS (DELETE FROM project_members m WHERE m.project_id = $1 AND m.user_id = $2::uuid "
	                   "AND (m.role <> 'owner' OR (SELECT count(*) FROM o) > 1) RETURNING 1) "
	                   "SELECT (SELECT role FROM t), (SELECT count(*) FROM d)",
	                   2, prm, &res, err);
	if (r < 0)
		return r;
	if (PQntuples(res) != 1 || PQgetisnull(res, 0, 0))
		return ze(err, ZE_NOT_FOUND, "no such member");
	if (strcmp(PQgetvalue(res, 0, 1), "0") == 0)
		return ze(err, ZE_CONFLICT, "the project's only owner cannot be removed");
	return 0;
}

/* ---- live logs (sql/008_log_lines.sql, logstream.c) ---- */

int store_log_lines_insert(PGconn *c, const char *rows_json, struct zerr *err)
{
	const char *p[] = {rows_json};
	return db_exec_prepared(
	    c,
	    "INSERT INTO log_lines (project_id, function_id, invocation_id, ts, kind, stream, line, status, "
	    "duration_ms) "
	    "SELECT project_id, function_id, invocation_id, coalesce(to_timestamp(ts_ms / 1000.0), now()), kind, "
	    "coalesce(stream, 'stderr'), coalesce(line, ''), status, duration_ms "
	    "FROM json_to_recordset($1::json) AS x(project_id uuid, function_id uuid, invocation_id uuid, "
	    "ts_ms double precision, kind text, stream text, line text, status text, duration_ms double precision)",
	    1, p, NULL, err);
}

int store_log_lines_page(PGconn *c, const char *project_id, const char *function_id, int64_t after,
                         const char *skip_json, unsigned limit, json_t **ret, struct zerr *err)
{
	char a[24], l[16];
	snprintf(a, sizeof(a), "%" PRId64, after);
	snprintf(l, sizeof(l), "%u", limit);
	const char *p[] = {project_id, function_id, a, skip_json, l};
	return q_json_with(
	    true, c,
	    "SELECT json_build_object('exists', EXISTS (SELECT 1 FROM functions WHERE id = $2::uuid AND project_id = "
	    "$1::uuid), 'horizon', coalesce((SELECT deleted_through FROM log_line_horizon WHERE function_id = "
	    "$2::uuid), 0), 'max', greatest(coalesce((SELECT max(id) FROM log_lines WHERE function_id = $2::uuid), "
	    "0), coalesce((SELECT deleted_through FROM log_line_horizon WHERE function_id = $2::uuid), 0)), "
	    "'rows', coalesce((SELECT json_agg(r ORDER BY r.id) FROM (SELECT id, invocation_id, "
	    "to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS ts, kind, stream, line, status, "
	    "duration_ms FROM log_lines WHERE function_id = $2::uuid AND id > $3::bigint "
	    "AND id <> ALL (SELECT json_array_elements_text($4::json)::bigint) ORDER BY id LIMIT $5::int) r), "
	    "'[]'::json))",
	    5, p, ret, err);
}

int store_log_lines_sweep(PGconn *c, unsigned max_age_s, unsigned max_rows, uint64_t *ret_deleted, struct zerr *err)
{
	char a[16], m[16];
	snprintf(a, sizeof(a), "%u", max_age_s);
	snprintf(m, sizeof(m), "%u", max_rows);
	const char *p[] = {a, m};
	_cleanup_pgresult_ PGresult *res = NULL;
	int r = db_exec_params(
	    c,
	    "WITH d AS (DELETE FROM log_lines WHERE ts < now() - make_interval(secs => $1::int) OR id IN (SELECT id "
	    "FROM (SELECT id, row_number() OVER (PARTITION BY function_id ORDER BY id DESC) AS n FROM log_lines) x "
	    "WHERE n > $2::int) RETURNING function_id, id), "
	    "h AS (INSERT INTO log_line_horizon AS h (function_id, deleted_through) SELECT function_id, max(id) FROM d "
	    "GROUP BY function_id ON CONFLICT (function_id) DO UPDATE SET deleted_through = "
	    "greatest(h.deleted_through, excluded.deleted_through) RETURNING 1) "
	    "SELECT (SELECT count(*) FROM d), (SELECT count(*) FROM h)",
	    2, p, &res, err);
	if (r < 0)
		return r;
	*ret_deleted = strtoull(PQgetvalue(res, 0, 0), NULL, 10);
	return exec(c,
	            "DELETE FROM log_line_horizon h WHERE NOT EXISTS (SELECT 1 FROM functions f WHERE f.id = "
	            "h.function_id)",
	            0, NULL, err);
}

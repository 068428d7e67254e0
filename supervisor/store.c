/* store.c - see store.h */
#include "store.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
	_cleanup_pgresult_ PGresult *q = NULL;
	r = db_exec_params(c, "SELECT quote_ident($1)", 1, p, &q, err);
	if (r < 0)
		return r;
	/* CREATE DATABASE takes no parameters and cannot run in a function:
	 * the name is quoted by the server. */
	char sql[256];
	if ((size_t)snprintf(sql, sizeof(sql), "CREATE DATABASE %s", PQgetvalue(q, 0, 0)) >= sizeof(sql))
		return zerr_set(err, -ENAMETOOLONG, "database name too long: %s", name);
	return db_exec_params(c, sql, 0, NULL, NULL, err);
}

int store_lock_down(PGconn *c, struct zerr *err)
{
	return db_exec_params(
	    c,
	    "DO $$ DECLARE d text; BEGIN FOR d IN SELECT datname FROM pg_database "
	    "WHERE datname IN (current_database(), 'postgres', 'template1') LOOP "
	    "EXECUTE format('REVOKE CONNECT, TEMPORARY ON DATABASE %I FROM PUBLIC', d); END LOOP; END $$",
	    0, NULL, NULL, err);
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

int store_user_create(PGconn *c, const char *email, const char *password_hash, bool is_admin, struct zerr *err)
{
	const char *p[] = {email, password_hash, is_admin ? "t" : "f"};
	return db_exec_params(c, "INSERT INTO users (email, password_hash, is_admin) VALUES (lower($1), $2, $3)", 3, p,
	                      NULL, err);
}

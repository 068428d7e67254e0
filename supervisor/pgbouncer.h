/* pgbouncer.h - the connection pooler between sandboxes and the data
 * cluster: one pgbouncer per node, started and supervised by zmeshd's root
 * process like the embedded PostgreSQL.
 *
 * Layout under the state directory:
 *   <state>/pgbouncer/                 root's (0755)
 *   <state>/pgbouncer/pgbouncer.ini    the configuration   (0600, postgres)
 *   <state>/pgbouncer/hba.conf         who may log in      (0600, postgres)
 *   <state>/pgbouncer/users.txt        the auth user's password, if any,
 *                                      and the stats user's (0600, postgres)
 *   <state>/pgbouncer/databases.ini    each project database's pool bound,
 *                                      made from limits/roles
 *                                      (0600, postgres; included by the ini)
 *   <state>/pgbouncer/limits/roles     "ROLE N" lines written by the API
 *                                      process (its directory, 0700, is the
 *                                      API user's): data, never configuration
 *   <state>/pgbouncer/run/             its socket, .s.PGSQL.5432 (0755,
 *                                      postgres): what sandboxes see at
 *                                      /run/zmesh/pg
 *   <state>/pgbouncer/pgbouncer.log    its stderr (opened by root, kept
 *                                      below a size by moving it aside)
 * The files are rewritten at every start: this module owns them.
 *
 * pgbouncer listens on the unix socket only, in session mode (a function's
 * session keeps full PostgreSQL semantics; the server connection is reset
 * with DISCARD ALL before the next client gets it). A client logs in as a
 * project role to the database of the same name (hba: sameuser) with that
 * role's SCRAM password; pgbouncer reads the role's verifier from
 * pg_authid through the auth user (auth_query), and logs in to the cluster
 * with the client's own SCRAM proof, so the cluster still authenticates
 * every session as its project role. Superusers, roles that bypass RLS or
 * replicate, the auth user itself and pgbouncer's admin console are refused.
 *
 * Pool bounds: a project role holds at most its tier's server connections
 * (its database's pool_size and max_db_connections, from limits/roles; a
 * database not listed there gets the default). [users] entries cannot be
 * used for it: pgbouncer then takes the role for one of its auth_file and
 * no longer asks auth_query for its verifier. A client beyond that waits in pgbouncer for one to be
 * returned, for as long as its sandbox lives. Client connections are
 * bounded above what every sandbox of the node could open at once, so no
 * tenant can use up the slots of another. The API process reads pool
 * statistics as PGB_STATS_USER (SHOW only; the admin console's commands are
 * refused) and never writes pgbouncer's configuration: it writes the role
 * limits as data, which the root process checks (pgb_parse_limits) and
 * turns into databases.ini, then reloads pgbouncer.
 *
 * Needs root: pgbouncer runs as the postgres system user, started by fork
 * and exec (never a shell) with a clean environment. Call from the
 * daemon's main thread; nothing else may reap it. */
#pragma once

#include <stdbool.h>
#include <sys/types.h>

#include "buf.h"
#include "util.h"

#ifndef PGB_BINARY
#define PGB_BINARY "/usr/sbin/pgbouncer"
#endif
/* Only names the socket file: sandboxes' DSNs name no port. */
#define PGB_PORT            5432
#define PGB_READY_TIMEOUT_S 10
#define PGB_STOP_TIMEOUT_S  5
/* pgbouncer's statistics user (SHOW commands only); never a cluster role. */
#define PGB_STATS_USER "zmesh_pool_stats"
/* Where the API process writes its role limits, under the state directory. */
#define PGB_LIMITS_FILE   "pgbouncer/limits/roles"
#define PGB_LIMITS_MAX    (4u << 20) /* bytes */
#define PGB_ROLE_POOL_MAX 1000u      /* server connections of one role at most */
#define PGB_MAX_CLIENTS   (1u << 20) /* client connections at most */

struct pgb_config {
	const char *state_dir;         /* absolute */
	const char *server_socket_dir; /* the cluster's socket directory */
	unsigned server_port;
	const char *auth_user;      /* reads pg_authid: a superuser of the cluster */
	const char *auth_password;  /* NULL or "": the cluster trusts the postgres OS user (peer) */
	unsigned pool_size;         /* server connections per database at most */
	unsigned role_pool_size;    /* a project role's, unless limits/roles says */
	unsigned max_clients;       /* client connections at most, all databases */
	unsigned idle_timeout_s;    /* an unused server connection is closed after it */
	const char *stats_password; /* PGB_STATS_USER's: random, held by the API process */
	uid_t limits_uid;           /* the owner of limits/ (the API user) */
	gid_t limits_gid;
};

struct pgb;

/* Write the configuration and start pgbouncer; returns once its socket
 * accepts connections (at most PGB_READY_TIMEOUT_S). cfg is copied. On
 * failure nothing is left running and the error carries the tail of its
 * log. */
int pgb_start(const struct pgb_config *cfg, struct pgb **ret, struct zerr *err);

/* The directory holding pgbouncer's socket (absolute). */
const char *pgb_socket_dir(const struct pgb *p);

/* Its pid, 0 while it is not running. */
pid_t pgb_pid(const struct pgb *p);

/* Supervision: 0 while pgbouncer runs; -ESRCH once it has exited (it is
 * reaped here), with how it ended in err. */
int pgb_check(struct pgb *p, struct zerr *err);

/* Start it again with the same configuration after pgb_check said it
 * exited. */
int pgb_restart(struct pgb *p, struct zerr *err);

/* Supervision, every tick: when limits/roles changed since the last call,
 * check it, rewrite databases.ini and have pgbouncer reload (SIGHUP). A file
 * that fails the check changes nothing and is logged once per change. */
int pgb_apply_limits(struct pgb *p, struct zerr *err);

/* Parse the API process's role limits, "ROLE N\n" lines (ROLE a plain
 * role name, 1 <= N <= max), into a [databases] section appended to out:
 * the database of the role's name, served by the cluster at server:port,
 * pooled up to N. Pure; anything else is -EINVAL with the line named in
 * err. */
int pgb_parse_limits(const char *text, size_t len, unsigned max, const char *server, unsigned port, struct buf *out,
                     struct zerr *err);

/* In a child forked after pgb_start(): let go of this process's copy.
 * After the call p is no longer valid here. */
void pgb_forget(struct pgb *p);

/* Stop pgbouncer and free p (NULL is accepted): SIGINT (safe shutdown:
 * it waits for its clients), at most PGB_STOP_TIMEOUT_S, then SIGTERM
 * (immediate), then SIGKILL. Returns 0 after a clean stop, -ETIMEDOUT if
 * it had to escalate, -ESRCH if it was not running. After the call p is no
 * longer valid. */
int pgb_stop(struct pgb *p);

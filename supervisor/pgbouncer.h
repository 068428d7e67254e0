/* pgbouncer.h - the connection pooler between sandboxes and the data
 * cluster: one pgbouncer per node, started and supervised by zmeshd's root
 * process like the embedded PostgreSQL.
 *
 * Layout under the state directory:
 *   <state>/pgbouncer/                 root's (0755)
 *   <state>/pgbouncer/pgbouncer.ini    the configuration   (0600, postgres)
 *   <state>/pgbouncer/hba.conf         who may log in      (0600, postgres)
 *   <state>/pgbouncer/users.txt        the auth user's password, if any
 *                                      (0600, postgres)
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
 * Needs root: pgbouncer runs as the postgres system user, started by fork
 * and exec (never a shell) with a clean environment. Call from the
 * daemon's main thread; nothing else may reap it. */
#pragma once

#include <stdbool.h>
#include <sys/types.h>

#include "util.h"

#ifndef PGB_BINARY
#define PGB_BINARY "/usr/sbin/pgbouncer"
#endif
/* Only names the socket file: sandboxes' DSNs name no port. */
#define PGB_PORT            5432
#define PGB_READY_TIMEOUT_S 10
#define PGB_STOP_TIMEOUT_S  5

struct pgb_config {
	const char *state_dir;         /* absolute */
	const char *server_socket_dir; /* the cluster's socket directory */
	unsigned server_port;
	const char *auth_user;     /* reads pg_authid: a superuser of the cluster */
	const char *auth_password; /* NULL or "": the cluster trusts the postgres OS user (peer) */
	unsigned pool_size;        /* server connections per database at most */
	unsigned max_clients;      /* client connections at most, all databases */
	unsigned idle_timeout_s;   /* an unused server connection is closed after it */
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

/* In a child forked after pgb_start(): let go of this process's copy.
 * After the call p is no longer valid here. */
void pgb_forget(struct pgb *p);

/* Stop pgbouncer and free p (NULL is accepted): SIGINT (safe shutdown:
 * it waits for its clients), at most PGB_STOP_TIMEOUT_S, then SIGTERM
 * (immediate), then SIGKILL. Returns 0 after a clean stop, -ETIMEDOUT if
 * it had to escalate, -ESRCH if it was not running. After the call p is no
 * longer valid. */
int pgb_stop(struct pgb *p);

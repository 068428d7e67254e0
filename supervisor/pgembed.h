/* pgembed.h - the embedded PostgreSQL cluster zmeshd runs when no
 * DATABASE_URL is given.
 *
 * Layout under the state directory:
 *   <state>/pg/data                 the cluster (0700, owned by postgres)
 *   <state>/pg/run                  its unix socket (0755: sandboxes reach it)
 *   <state>/pg/server.log           postgres' stderr (kept below a size by
 *                                   moving it to server.log.1 at start)
 *   <state>/pg/initdb.log           the output of the first start's initdb
 *   <state>/pg/superuser.password   generated at initdb (0600, root)
 *   <state>/pg/owner.lock           held by the zmeshd that runs the cluster
 *
 * The cluster listens on the unix socket only. The superuser "postgres"
 * logs in by peer authentication from the root and postgres OS users (a
 * pg_ident map); the daemon's unprivileged API process, running as the OS
 * user PGE_API_ROLE, logs in as the superuser role of that name, by peer
 * authentication too (store_ensure_superuser creates it); every other role needs
 * its password (scram-sha-256).
 * pg_hba.conf and pg_ident.conf are rewritten at every start: this module
 * owns them.
 *
 * A cluster left running by a crashed zmeshd (postmaster.pid names a live
 * postmaster of this data directory, and no other zmeshd holds owner.lock)
 * is stopped (fast shutdown, then immediate, then killed, each bounded) and
 * started again under supervision. While another live zmeshd holds
 * owner.lock, pge_start() refuses with -EBUSY.
 *
 * Needs root: initdb and postgres run as the postgres system user, started
 * by fork and exec (never a shell) with a clean environment. Call
 * pge_start() and pge_stop() from the daemon's main thread: postgres gets a
 * parent-death signal (fast shutdown) tied to the thread that started it,
 * so that a killed zmeshd does not leave it running. Nothing else in the
 * process may reap it (no waitpid(-1, ...)). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "util.h"

#ifndef PGE_BINDIR
#define PGE_BINDIR "/usr/lib/postgresql/15/bin"
#endif
/* Only names the socket file (.s.PGSQL.5432): nothing listens on TCP. */
#define PGE_PORT      5432
#define PGE_SUPERUSER "postgres"
/* The OS user the daemon's API process runs as, and its role. */
#define PGE_API_ROLE         "zmesh"
#define PGE_READY_TIMEOUT_S  30
#define PGE_INITDB_TIMEOUT_S 300
#define PGE_STOP_TIMEOUT_S   30

struct pge;

/* Start the cluster under state_dir (created if missing, made traversable
 * for the postgres user and sandboxes), running initdb on first start, and
 * return once it accepts connections (at most PGE_READY_TIMEOUT_S). On
 * failure the error carries the tail of the relevant log. */
int pge_start(const char *state_dir, struct pge **ret, struct zerr *err);

/* The directory holding the cluster's socket (absolute). */
const char *pge_socket_dir(const struct pge *p);

/* A superuser conninfo for dbname (NULL: "postgres") over the socket, peer
 * authenticated: root is mapped to postgres. Returns 0, or -EINVAL for a
 * bad dbname, or -ENOSPC when buf (of size n) is too small, leaving buf
 * empty. */
int pge_conninfo(const struct pge *p, const char *dbname, char *buf, size_t n);

/* The same for another role (peer authenticated: see above). */
int pge_conninfo_as(const struct pge *p, const char *user, const char *dbname, char *buf, size_t n);

/* For a process other than the one that runs the cluster (zmeshd admin):
 * the superuser conninfo of the running cluster under state_dir, as
 * pge_conninfo gives it. -ENOENT when no cluster runs there (no socket):
 * such a caller must never start one beside a zmeshd that may. */
int pge_conninfo_running(const char *state_dir, const char *dbname, char *buf, size_t n);

/* In a child forked after pge_start(): let go of this process's copy (the
 * lock descriptor, the memory) without touching the cluster, which stays
 * the parent's. After the call p is no longer valid here. */
void pge_forget(struct pge *p);

/* The postmaster's pid, 0 once it has exited. */
pid_t pge_pid(const struct pge *p);

/* Whether this start created the cluster (initdb ran). */
bool pge_created(const struct pge *p);

/* Supervision: 0 while postgres runs; -ESRCH once it has exited, with its
 * exit status in err (it is reaped here). */
int pge_check(struct pge *p, struct zerr *err);

/* Stop the cluster and free p (NULL is accepted): SIGINT (fast shutdown:
 * sessions end, a checkpoint is written), waiting at most
 * PGE_STOP_TIMEOUT_S, then SIGQUIT, then SIGKILL. Returns 0 after a clean
 * fast shutdown, -EIO if it exited with a failure status, -ETIMEDOUT if it
 * had to escalate, -ESRCH if postgres had already died. After the call p is
 * no longer valid. */
int pge_stop(struct pge *p);

/* spawner_main.c - zmesh-spawner: the privileged process that starts and
 * ends sandboxes for zmeshd (sandbox/spawner.h), as a program of its own.
 *
 *   zmesh-spawner POLICY_DIR SDK_DIR PG_SOCKET_DIR CACHE_DIR MAX_MEMORY_MB MAX_TIMEOUT_MS
 *
 * zmeshd starts it (sbx_spawner_exec) while root and single-threaded, with
 * its end of the spawner's socket as descriptor SBX_SPAWNER_FD. It links the
 * sandbox library only: every sandbox's init is a copy of this process, and
 * a copy of the daemon, with its database and TLS libraries, cost each
 * launch 0.4-0.8 ms more (bench/results/clonecost-2026-12-05.md). Its
 * configuration is what the daemon would have given a forked spawner:
 * exec_spawner_config, from the same arguments. PG_SOCKET_DIR may be "" (no
 * database socket for sandboxes). */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "runtimes.h"
#include "spawner.h"
#include "util.h"

static int usage(const char *why)
{
	fprintf(stderr,
	        "zmesh-spawner: %s\nusage: zmesh-spawner POLICY_DIR SDK_DIR PG_SOCKET_DIR CACHE_DIR MAX_MEMORY_MB "
	        "MAX_TIMEOUT_MS\n(started by zmeshd, with its socket as descriptor %d)\n",
	        why, SBX_SPAWNER_FD);
	return 2;
}

int main(int argc, char **argv)
{
	if (argc != 7)
		return usage("wrong number of arguments");
	int type = 0;
	socklen_t len = sizeof(type);
	if (getsockopt(SBX_SPAWNER_FD, SOL_SOCKET, SO_TYPE, &type, &len) < 0 || type != SOCK_SEQPACKET)
		return usage("no spawner socket");
	uint64_t mem = 0, timeout = 0;
	if (util_parse_u64(argv[5], 1, EXEC_MAX_MEMORY_MB, &mem) < 0 ||
	    util_parse_u64(argv[6], 1, EXEC_MAX_TIMEOUT_MS, &timeout) < 0)
		return usage("bad largest memory or timeout");
	for (int i = 1; i <= 4; i++)
		if (strlen(argv[i]) >= 500 || (argv[i][0] != '/' && !(i == 3 && !argv[i][0])))
			return usage("a directory is not an absolute path of at most 499 bytes");
	struct zerr err = {0};
	static struct sbx_ctx ctx;
	static struct sbx_spawner_config cfg;
	if (sbx_ctx_init(&ctx, NULL, &err) < 0 ||
	    exec_spawner_config(argv[1], argv[2], argv[3], argv[4], mem, timeout, &cfg, &err) < 0) {
		fprintf(stderr, "zmesh-spawner: %s\n", err.msg);
		return 1;
	}
	sbx_spawner_serve(&ctx, &cfg, SBX_SPAWNER_FD);
}

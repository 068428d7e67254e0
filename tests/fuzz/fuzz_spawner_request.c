/* Fuzz the spawner's request decoder and its check against a configuration:
 * whatever a daemon taken over sends, the privileged side decodes it or
 * refuses it, never reads outside the message, and what it accepts holds
 * the invariants the spawner relies on. */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "spawner.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct sbx_spawner_config cfg = {.runtimes = {{.name = "node"}, {.name = "python"}},
	                                        .n_runtimes = 2,
	                                        .max = {.memory_bytes = 1ull << 30,
	                                                .pids = 64,
	                                                .cpu_percent = 200,
	                                                .tmpfs_bytes = 64 << 20,
	                                                .fsize_bytes = 64 << 20,
	                                                .nofile = 256,
	                                                .cpu_seconds = 902}};
	/* A copy of exactly size bytes: ASan sees any read past the end. */
	uint8_t *buf = malloc(size ? size : 1);
	if (!buf)
		return 0;
	memcpy(buf, data, size);
	struct spawner_req *req = calloc(1, sizeof(*req));
	struct zerr err = {0};
	if (req && spawner_decode_request(buf, size, req, &err) == 0) {
		assert(req->op >= SPAWNER_SPAWN && req->op <= SPAWNER_DESTROY);
		if (req->op == SPAWNER_SPAWN) {
			assert(req->n_fds <= 3 && req->argv[0] && req->argv[0][0]);
			size_t n = 0;
			for (; req->argv[n]; n++)
				assert((const uint8_t *)req->argv[n] >= buf &&
				       (const uint8_t *)req->argv[n] + strlen(req->argv[n]) < buf + size);
			assert(n >= 1 && n <= SBX_MAX_ARGS);
			for (n = 0; req->env[n]; n++)
				assert((const uint8_t *)req->env[n] + strlen(req->env[n]) < buf + size);
			assert(n <= SBX_MAX_ENV);
		} else
			assert(req->n_fds == 0);
		if (spawner_check_request(&cfg, req, &err) == 0 &&
		    (req->op == SPAWNER_SPAWN || req->op == SPAWNER_ASSIGN))
			assert(req->limits.memory_bytes && req->limits.memory_bytes <= cfg.max.memory_bytes &&
			       req->limits.pids && req->limits.pids <= cfg.max.pids && req->limits.cpu_percent &&
			       req->limits.cpu_percent <= cfg.max.cpu_percent);
		/* What was accepted encodes back to the same bytes. */
		uint8_t *again = malloc(size);
		if (again) {
			ssize_t len = spawner_encode_request(req, again, size);
			assert(len == (ssize_t)size && memcmp(again, buf, size) == 0);
			free(again);
		}
	}
	free(req);
	free(buf);
	return 0;
}

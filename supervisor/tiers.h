/* tiers.h - limits per plan, read from policies/tiers.json at start. */
#pragma once

#include <stdint.h>

#include "util.h"

#define TIERS_MAX 16

struct tier {
	char name[32];
	uint64_t max_timeout_ms;
	uint64_t max_memory_mb;
	uint64_t monthly_invocations;
	uint64_t concurrency;
};

struct tiers {
	struct tier t[TIERS_MAX];
	int n;
};

int tiers_load(const char *path, struct tiers *ret, struct zerr *err);
const struct tier *tiers_find(const struct tiers *t, const char *name);

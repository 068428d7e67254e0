/* policy.h - seccomp policies: JSON data in policies/, compiled once with
 * libseccomp into a BPF program that a child loads with one syscall.
 *
 * A policy file:
 *   { "include": ["base"],              other policies of the same directory
 *     "default_action": "errno:EPERM",  for every syscall not listed
 *     "allow": ["read", "write", ...],  allowed whatever their arguments
 *     "rules": [ { "syscalls": ["clone"], "action": "allow",
 *                  "args": [ { "index": 0, "op": "masked_eq",
 *                              "mask": "0x7e020000", "value": 0 } ] } ] }
 * Actions: "allow", "errno:NAME" (EPERM, ENOSYS, EACCES, EAFNOSUPPORT,
 * EINVAL), "kill". Ops: eq, ne, lt, le, gt, ge, masked_eq. Conditions of one
 * rule must all hold; several rules for one syscall are alternatives. */
#pragma once

#include <linux/filter.h>
#include <stddef.h>

#include "util.h"

struct pol_program {
	struct sock_fprog fprog; /* fprog.filter is owned */
};

/* Find a policy: a name ("node") is looked up as DIR/name.json, anything
 * with a '/' or ending in ".json" is a path. */
int pol_resolve(const char *name_or_path, const char *dir, char *ret, size_t size, struct zerr *err);

/* Parse and compile a policy file (with its includes) for the native arch. */
int pol_compile(const char *path, struct pol_program *ret, struct zerr *err);

/* The same, through a cache of compiled programs in cache_dir (a directory
 * of root's, not writable by others). Falls back to compiling when the cache
 * is missing, stale or unusable; a failure to write it is not an error. */
int pol_compile_cached(const char *path, const char *cache_dir, struct pol_program *ret, struct zerr *err);

/* Install the program on the calling thread. Async-signal-safe: one syscall,
 * no allocation; meant for a freshly cloned child, after no_new_privs. */
int pol_install(const struct pol_program *prog);

void pol_program_free(struct pol_program *prog);

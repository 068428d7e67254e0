/* runtimes.h - the runtimes a spawner may start and the limits of every
 * sandbox: what zmeshd and its spawner (zmesh-spawner, spawner_main.c)
 * both know, with nothing else of the daemon, so that the spawner program
 * links the sandbox library only. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "executor.h"

/* The limits of every sandbox, whatever its tier (README, "Limits"): /tmp
 * of 64 MiB, of which one file may take 10 MiB (RLIMIT_FSIZE), 50
 * processes (threads included: the pids cgroup and RLIMIT_NPROC), and CPU
 * time the timeout plus EXEC_CPU_SLACK_S (RLIMIT_CPU). */
#define EXEC_TMPFS_BYTES    (64u << 20)
#define EXEC_FSIZE_BYTES    (10u << 20)
#define EXEC_PIDS           50
#define EXEC_CPU_SLACK_S    2
#define EXEC_MAX_TIMEOUT_MS (15u * 60 * 1000)
#define EXEC_MAX_MEMORY_MB  (16u * 1024)

/* The spawner's name of lang's runtime ("node", "python"). */
const char *exec_runtime_name(enum exec_lang lang);
/* The binds of lang's sandboxes: its SDK, and the database socket directory
 * when there is one. */
size_t exec_runtime_binds(const char *sdk_js, const char *sdk_py, const char *pg_socket_dir, enum exec_lang lang,
                          struct sbx_bind ret[2]);
/* RLIMIT_CPU for a timeout: whole seconds, rounded up, and the slack. */
uint64_t exec_cpu_seconds(uint64_t timeout_ms);

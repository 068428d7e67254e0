/* result.h - what a sandbox's result channel means: the wrappers' one
 * answer (docs/ARCHITECTURE.md, the wrapper protocol), parsed once, by a pure function that the
 * fuzzer drives (tests/fuzz/fuzz_exec_result.c). Everything in it comes from
 * the sandbox and is hostile: shapes are checked and strings bounded before
 * anything is believed. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "executor.h"
#include "protocol.h"

/* Bounds on the error strings kept from a function's answer: the
 * protocol's (the wrappers cut to them already; a hostile sandbox may not). */
#define EXEC_ERROR_NAME_MAX    ZPROTO_MAX_ERROR_NAME_BYTES
#define EXEC_ERROR_MESSAGE_MAX ZPROTO_MAX_ERROR_MESSAGE_BYTES
#define EXEC_ERROR_STACK_MAX   ZPROTO_MAX_ERROR_STACK_BYTES

/* Parse the len bytes at buf (not NUL-terminated; NULs allowed), all the
 * sandbox wrote on its result channel; truncated: more came than the
 * platform accepts. Sets ret->outcome to EXEC_SUCCESS with ret->result (the
 * value, JSON null when absent), EXEC_FUNCTION_ERROR or EXEC_BAD_RESULT with
 * ret->error ({"name","message","stack"}, each string bounded as above);
 * both owned by ret, which must hold neither yet. Returns 0, or -ENOMEM with
 * ret untouched. */
int exec_parse_result(const char *buf, size_t len, bool truncated, struct exec_result *ret);

/* {"name", "message", "stack"}; NULL only without memory. */
json_t *exec_error_object(const char *name, const char *message, const char *stack);

/* protocol.h - the limits of the invocation protocol between zmeshd and the
 * runtime wrappers (one JSON message on stdin, one JSON result back; see
 * docs/ARCHITECTURE.md).
 *
 * This header is the one definition. The wrappers cannot include it, and
 * reading a data file at every start would cost every invocation, so each
 * carries a copy of these values:
 *   sdk-js/lib/protocol.js        (ZPROTO_X is X there)
 *   sdk-python/zmesh/_protocol.py (ZPROTO_X is X there)
 * tests/integration/test_protocol_limits.py (ctest protocol_limits) fails when
 * a value differs between the three or a name exists on one side only: change
 * all three together. Only plain integer expressions and string literals
 * belong here; the test evaluates them.
 *
 * Sizes are UTF-8 bytes on every side (a JavaScript string's length counts
 * UTF-16 units, a Python str's code points; the wrappers measure bytes).
 *
 * Where the C side must use which constant (the places that still carry
 * their own numbers today):
 *   supervisor/executor.c
 *     EXEC_MAX_MESSAGE (48 MiB)              -> ZPROTO_MAX_MESSAGE_BYTES
 *     valid_identifier(): 128, charset       -> ZPROTO_MAX_ENTRY_POINT_BYTES,
 *                                               ZPROTO_ENTRY_POINT_FIRST_CHARS,
 *                                               ZPROTO_ENTRY_POINT_CHARS
 *     exec_run(): "handler"                  -> ZPROTO_DEFAULT_ENTRY_POINT
 *     classify_output(): bounded() 128, 8192, 16384 and the buffers b1..b3
 *                                            -> ZPROTO_MAX_ERROR_NAME_BYTES,
 *                                               ZPROTO_MAX_ERROR_MESSAGE_BYTES,
 *                                               ZPROTO_MAX_ERROR_STACK_BYTES
 *       (bounded() appends "..." after max bytes; it should cut to max - 3 so
 *       that what it keeps stays within the limit, as the wrappers do)
 *     exec_run(): env is only checked to be an object; ids, name and DSN are
 *       not checked -> refuse above ZPROTO_MAX_ID_BYTES, ZPROTO_MAX_NAME_BYTES,
 *       ZPROTO_MAX_DSN_BYTES and the ZPROTO_MAX_ENV_* bounds, so a message the
 *       wrapper would refuse is never written
 *   supervisor/api.c
 *     check_env(): 64, 128, 4096, 32768      -> ZPROTO_MAX_ENV_VARS,
 *                                               ZPROTO_MAX_ENV_NAME_BYTES,
 *                                               ZPROTO_MAX_ENV_VALUE_BYTES,
 *                                               ZPROTO_MAX_ENV_BYTES
 *     parse_function_input(): name 128       -> ZPROTO_MAX_NAME_BYTES
 *     parse_function_input(): entry_point 128 and charset
 *                                            -> ZPROTO_MAX_ENTRY_POINT_BYTES,
 *                                               ZPROTO_ENTRY_POINT_FIRST_CHARS,
 *                                               ZPROTO_ENTRY_POINT_CHARS
 *     invoke(): dsn[512]                     -> at most ZPROTO_MAX_DSN_BYTES,
 *                                               refused rather than truncated
 *   supervisor/config.c
 *     max-body (ceiling 64 MiB) and max-code (ceiling 16 MiB) let an operator
 *     accept requests whose message exceeds ZPROTO_MAX_MESSAGE_BYTES (see its
 *     comment); their ceilings should follow from it.
 *
 * Not here, because they never cross the pipe or the wrappers never see
 * them: the largest result and the logs kept (operator settings in config.c,
 * enforced by the executor alone), and a function's memory and timeout
 * (the API refuses memory_mb below 64, the executor below 16, tiers.c
 * accepts tiers from 16; they belong with the tiers, in tiers.h).
 */
#pragma once

/* The whole stdin message, in bytes. It carries the payload (at most the
 * request body, max-body: 6 MiB by default), the code (max-code: 1 MiB by
 * default) and env (ZPROTO_MAX_ENV_BYTES), each JSON-encoded: escaping can
 * grow a string up to six times (a control character becomes \u00XX), so
 * the default settings need at most about 6 + 6 * 1 + 0.2 = 12.2 MiB. 32 MiB
 * leaves room for an operator to raise max-body to about 20 MiB with the
 * default max-code. The bound exists so that a wrapper never buffers an
 * unbounded stream: parsing holds the message two to three times over, so
 * a larger bound would only move the failure into the function's memory
 * limit (64 MB at the least). */
#define ZPROTO_MAX_MESSAGE_BYTES (32 << 20)

/* invocation_id and project_id: UUIDs (36 bytes) from the platform. */
#define ZPROTO_MAX_ID_BYTES 64

/* function.name: what the API accepts for a function's name. */
#define ZPROTO_MAX_NAME_BYTES 128

/* function.entry_point: the export (JS) or module attribute (Python) that is
 * the handler. An ASCII identifier common to both languages' spellings ('$'
 * can only name a JavaScript export; in Python it finds no handler), so that
 * it is never code and the API can check it without knowing the runtime. */
#define ZPROTO_MAX_ENTRY_POINT_BYTES   128
#define ZPROTO_ENTRY_POINT_FIRST_CHARS "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_$"
#define ZPROTO_ENTRY_POINT_CHARS       "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_$"
/* Used when entry_point is absent or empty. */
#define ZPROTO_DEFAULT_ENTRY_POINT "handler"

/* dsn: a postgresql:// URL the platform builds from a generated role,
 * password and database name and the socket path; well under 1 KiB. */
#define ZPROTO_MAX_DSN_BYTES 4096

/* env: the function's env vars as the API accepts them. Enough for
 * configuration and secrets; files belong in the database. The total counts
 * names and values. */
#define ZPROTO_MAX_ENV_VARS        64
#define ZPROTO_MAX_ENV_NAME_BYTES  128
#define ZPROTO_MAX_ENV_VALUE_BYTES 4096
#define ZPROTO_MAX_ENV_BYTES       (32 << 10)

/* The result's error object {name, message, stack}. The wrappers cut each
 * field, marker included, to these; the executor cuts whatever still
 * exceeds them. They are stored with every failed invocation and shown in
 * the dashboard: the name is a class name; 8 KiB holds any real message;
 * 16 KiB is some 150 frames, and the wrappers cut so as to keep the failing
 * line (a JavaScript stack's start, a Python traceback's start and end). */
#define ZPROTO_MAX_ERROR_NAME_BYTES    128
#define ZPROTO_MAX_ERROR_MESSAGE_BYTES (8 << 10)
#define ZPROTO_MAX_ERROR_STACK_BYTES   (16 << 10)

/* Custom events a function emits (zmesh.emit), carried in a successful
 * result as "emits": [{event_id, type, data}]. The most one result may
 * carry; a tier allows fewer (tiers.json emits_per_invocation). A type is
 * 1 to ZPROTO_MAX_EVENT_TYPE_BYTES of ZPROTO_EVENT_TYPE_CHARS. */
#define ZPROTO_MAX_EMITS            1000
#define ZPROTO_MAX_EVENT_TYPE_BYTES 100
#define ZPROTO_EVENT_TYPE_CHARS     "abcdefghijklmnopqrstuvwxyz0123456789._-"

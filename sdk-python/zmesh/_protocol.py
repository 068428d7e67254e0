"""The limits of the invocation protocol, copied from common/protocol.h.

ZPROTO_X there is X here; the header says what each bounds and why. A copy,
not a file read at start, because start-up is paid by every invocation;
tests/integration/test_protocol_limits.py fails when the copies differ.
Constants only: the test compares every upper-case name of this module.
"""

MAX_MESSAGE_BYTES = 32 << 20
MAX_ID_BYTES = 64
MAX_NAME_BYTES = 128
MAX_ENTRY_POINT_BYTES = 128
ENTRY_POINT_FIRST_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_$"
ENTRY_POINT_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_$"
DEFAULT_ENTRY_POINT = "handler"
MAX_DSN_BYTES = 4096
MAX_ENV_VARS = 64
MAX_ENV_NAME_BYTES = 128
MAX_ENV_VALUE_BYTES = 4096
MAX_ENV_BYTES = 32 << 10
MAX_ERROR_NAME_BYTES = 128
MAX_ERROR_MESSAGE_BYTES = 8 << 10
MAX_ERROR_STACK_BYTES = 16 << 10
MAX_EMITS = 1000
MAX_EVENT_TYPE_BYTES = 100
EVENT_TYPE_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789._-"

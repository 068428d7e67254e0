/* Fuzz the parser of a sandbox's result channel: whatever a function
 * writes, the daemon gets one of three outcomes, with the strings it keeps
 * bounded, and nothing read outside the output. */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "result.h"
#include "validate.h"
#include "validate_event.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* A copy of exactly size bytes: ASan sees any read past the end. The
	 * first byte, when there is one, says whether the output was cut. */
	bool truncated = size > 0 && data[0] == 0xff;
	char *buf = malloc(size ? size : 1);
	if (!buf)
		return 0;
	memcpy(buf, data, size);
	struct exec_result r;
	memset(&r, 0, sizeof(r));
	if (exec_parse_result(buf, size, truncated, &r) == 0) {
		switch (r.outcome) {
		case EXEC_SUCCESS:
			assert(r.result && !r.error && !truncated);
			/* Emitted events: each with a UUID and a custom event's type. */
			if (r.emits) {
				assert(json_is_array(r.emits) && json_array_size(r.emits) <= ZPROTO_MAX_EMITS);
				size_t i;
				json_t *e;
				json_array_foreach (r.emits, i, e) {
					assert(val_is_uuid(json_string_value(json_object_get(e, "event_id"))));
					assert(val_event_type(json_string_value(json_object_get(e, "type")), NULL));
				}
			}
			break;
		case EXEC_FUNCTION_ERROR:
		case EXEC_BAD_RESULT:
			assert(!r.result && !r.emits && json_is_object(r.error));
			assert(strlen(json_string_value(json_object_get(r.error, "name"))) <= EXEC_ERROR_NAME_MAX + 3);
			assert(strlen(json_string_value(json_object_get(r.error, "message"))) <=
			       EXEC_ERROR_MESSAGE_MAX + 3);
			assert(strlen(json_string_value(json_object_get(r.error, "stack"))) <=
			       EXEC_ERROR_STACK_MAX + 3);
			break;
		default:
			assert(!"an outcome the parser never gives");
		}
	}
	exec_result_done(&r);
	free(buf);
	return 0;
}

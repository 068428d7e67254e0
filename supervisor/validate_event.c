/* validate_event.c - see validate_event.h */
#include "validate_event.h"

#include <string.h>

#include "errors.h"
#include "validate.h"

#define STR_(x) #x
#define STR(x)  STR_(x)

bool val_event_type(const char *s, const char **why)
{
	const char *w = NULL;
	size_t n = s ? strlen(s) : 0;
	if (n == 0)
		w = "is empty";
	else if (n > VE_TYPE_MAX)
		w = "is longer than " STR(VE_TYPE_MAX) " bytes";
	else if (strspn(s, ZEV_EVENT_TYPE_CHARS) != n)
		w = "has a character outside a-z 0-9 . _ -";
	else if (strncmp(s, VE_CUSTOM_PREFIX, strlen(VE_CUSTOM_PREFIX)) == 0)
		w = "starts with \"custom.\" (a trigger's event_type \"custom.order.paid\" listens to the type "
		    "\"order.paid\")";
	if (why)
		*why = w;
	return !w;
}

bool val_event_trigger_type(const char *s)
{
	size_t p = strlen(VE_CUSTOM_PREFIX);
	return s && strncmp(s, VE_CUSTOM_PREFIX, p) == 0 && val_event_type(s + p, NULL);
}

int val_event_body(json_t *body, const char **ret_type, json_t **ret_data, struct zerr *err)
{
	static const char *const known[] = {"type", "data", NULL};
	int r = val_object(body, known, err);
	if (r < 0)
		return r;
	json_t *t = json_object_get(body, "type");
	if (!t)
		return ze(err, ZE_INVALID_EVENT, "type: required (such as \"order.paid\")");
	const char *s = json_string_value(t), *why = NULL;
	if (!s)
		return ze(err, ZE_INVALID_EVENT, "type: want a string (such as \"order.paid\")");
	/* A NUL inside the string would hide the rest from the check. */
	if (strlen(s) != json_string_length(t))
		return ze(err, ZE_INVALID_EVENT, "type: contains a NUL byte");
	if (!val_event_type(s, &why))
		return ze(err, ZE_INVALID_EVENT, "type: \"%.120s\" %s (want 1 to %d of a-z 0-9 . _ -)", s, why,
		          VE_TYPE_MAX);
	json_t *d = json_object_get(body, "data");
	*ret_type = s;
	*ret_data = d ? d : json_null();
	return 0;
}

/* conditions.h - a trigger's conditions: which events it fires on.
 *
 * Conditions are a JSON array of objects, all of which must hold (AND):
 *   [{"field": "body.amount", "op": "gt", "value": 100}, ...]
 * field is a dotted path into the event object: "new.amount",
 * "data.currency", "items.0.id". A segment is 1..COND_SEGMENT_MAX bytes of
 * [A-Za-z0-9_-], at most COND_SEGMENTS_MAX segments. A segment made only of
 * digits indexes an array when the value there is an array, and is an object
 * key otherwise.
 *
 * Semantics of cond_match (the contract triggers document to users):
 *  - A field that is missing (no key, index out of range, a path through a
 *    scalar) never matches, whatever the op: not even neq.
 *  - Numbers compare as numbers, integer and real alike (1 == 1.0, 2 > 1.5).
 *  - eq / neq: JSON equality (json_equal) but numbers numerically, at any
 *    depth inside arrays and objects. neq is the negation of eq on a present
 *    field, so {"op":"neq","value":"x"} matches 5.
 *  - gt gte lt lte: both numbers (compared numerically) or both strings
 *    (compared by bytes, memcmp order, shorter first on a common prefix);
 *    any other pair of types never matches.
 *  - contains: a string field contains value as a substring (value a
 *    string); an array field contains an element equal to value (eq rule);
 *    anything else never matches.
 *  - in: the field's value equals (eq rule) a member of value, an array.
 * Pure functions: no I/O, no globals. */
#pragma once

#include <jansson.h>
#include <stdbool.h>

#include "error.h"

#define COND_MAX          20 /* conditions in one array */
#define COND_SEGMENTS_MAX 8  /* segments of a field path */
#define COND_SEGMENT_MAX  64 /* bytes of one segment */

/* Check conditions at create time: an array of at most COND_MAX objects,
 * each with exactly field, op and value, the field a valid path, op one of
 * eq neq gt gte lt lte contains in; in wants an array value, gt..lte a
 * number or a string. Returns 0, or -ZE_BAD_REQUEST with a message naming
 * the condition ("conditions[2].op: ..."). */
int cond_validate(json_t *conds, struct zerr *err);

/* Whether event satisfies every condition of conds (true for an empty
 * array). Never fails and never allocates: conds should have passed
 * cond_validate; a condition without a string field and op, a value, or a
 * known op does not match, and other departures from the rules get an
 * answer that is deterministic but unspecified. */
bool cond_match(json_t *conds, json_t *event);

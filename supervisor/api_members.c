/* api_members.c - a project's members: list, add, remove.
 *
 * Who may reach a project is decided per request by a membership lookup
 * (store_lookup), never by anything a token carries: a member removed here
 * loses the project on their next request, tokens already issued included. */
#define _GNU_SOURCE
#include <string.h>

#include "api.h"
#include "log.h"
#include "store.h"
#include "validate.h"

/* GET /projects/{pid}/members: any member lists them. */
HANDLER(h_members_list)
{
	_cleanup_call_ struct call k;
	json_t *j = NULL;
	int r = api_begin(req, app, STORE_PROJECT, &k, err);
	if (r == 0)
		r = store_members_list(k.c, k.p.id, &j, err);
	return r < 0 ? r : api_ok(req, json_pack("{s:o}", "members", j));
}

/* POST /projects/{pid}/members {"email"}: the owner (or an admin) shares
 * the project with an existing user. */
HANDLER(h_members_add)
{
	_cleanup_call_ struct call k;
	_cleanup_json_ json_t *body = NULL;
	int r = api_begin_body(req, app, STORE_PROJECT, &k, &body, err);
	if (r == 0)
		r = need_owner(&k, "share the project", err);
	if (r < 0)
		return r;
	const char *email = NULL;
	json_t *j = NULL;
	r = val_member(body, &email, err);
	if (r == 0)
		r = store_member_add(k.c, k.p.id, email, &j, err);
	return r < 0 ? r : api_created(req, j);
}

/* DELETE /projects/{pid}/members/{uid}: the owner (or an admin) removes a
 * member. The project's only owner is never removed, by anyone: a project
 * without an owner could be neither shared nor deleted but by an admin. */
HANDLER(h_member_remove)
{
	_cleanup_call_ struct call k;
	int r = api_begin(req, app, STORE_PROJECT, &k, err);
	if (r == 0)
		r = need_owner(&k, "remove a member", err);
	if (r < 0)
		return r;
	const char *uid = http_param(req, "uid");
	if (!uid || !val_is_uuid(uid))
		return ze(err, ZE_NOT_FOUND, "no such member");
	if (strcmp(uid, k.u.id) == 0 && k.p.owner)
		return ze(err, ZE_CONFLICT, "the owner cannot remove themself from the project");
	r = store_member_remove(k.c, k.p.id, uid, err);
	if (r < 0)
		return r;
	zlog(ZLOG_INFO, "project_member_removed", "request_id", http_request_id(req), "project", k.p.id, "user", uid,
	     "by", k.u.id, NULL);
	return api_ok(req, json_pack("{s:b}", "deleted", 1));
}

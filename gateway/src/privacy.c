/*-------------------------------------------------------------------------
 *
 * privacy.c
 *	  Privacy mode, grants, tokens and "who am I": thin JSON wrappers over
 *	  custos' administration functions, which decide who may do what.
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "handler.h"
#include "main.h"
#include "privacy.h"

/* A grant id in a path: 1 to 18 digits. */
static bool
valid_id(const char *s)
{
	size_t		n = strspn(s, "0123456789");

	return n > 0 && n <= 18 && s[n] == '\0';
}

/* Runs a call with a JSON object body in values[nparams - 1]. */
static bool
call_with_body(Request *r, DbCall *call, enum MHD_Result *res)
{
	if (!handler_check_body(r, JSON_OBJECT, NULL, res))
		return false;
	call->values[call->nparams - 1] = r->body;
	return handler_run(r, call, res);
}

/* PUT /v1/tenants/{tenant}/privacy-mode  {"enabled": true|false} */
enum MHD_Result
privacy_mode_put(Request *r)
{
	enum MHD_Result res;
	DbCall		call;

	handler_call_init(r, &call, STMT_PRIVACY_MODE, false);
	call.nparams = 2;
	call.values[0] = r->params[0];
	if (!call_with_body(r, &call, &res))
		return res;
	return handler_pass_json(r, &call, 200, NULL, NULL);
}

/* POST /v1/grants  {"tenant", "principal", "right", "expires_at"} */
enum MHD_Result
grants_create(Request *r)
{
	enum MHD_Result res;
	DbCall		call;
	char		location[64];
	const char *headers[] = {"Location", location, NULL};

	handler_call_init(r, &call, STMT_GRANT_CREATE, false);
	call.nparams = 1;
	if (!call_with_body(r, &call, &res))
		return res;
	snprintf(location, sizeof(location), "/v1/grants/%s", PQgetvalue(call.res, 0, 1));
	return handler_pass_json(r, &call, 201, NULL, headers);
}

/* DELETE /v1/grants/{id} */
enum MHD_Result
grants_delete(Request *r)
{
	enum MHD_Result res;
	DbCall		call;

	if (!valid_id(r->params[0]))
		return http_problem(r, 404, "not-found", "no such grant", NULL, "Grant ids are integers.");
	handler_call_init(r, &call, STMT_GRANT_DELETE, false);
	call.nparams = 1;
	call.values[0] = r->params[0];
	if (!handler_run(r, &call, &res))
		return res;
	PQclear(call.res);
	return http_respond(r, 204, NULL, "", 0);
}

/* POST /v1/tokens  {"principal", "kind", "valid_for", "label"} */
enum MHD_Result
tokens_create(Request *r)
{
	enum MHD_Result res;
	DbCall		call;
	char		location[96];
	const char *headers[] = {"Location", location, NULL};

	handler_call_init(r, &call, STMT_TOKEN_CREATE, false);
	call.nparams = 1;
	if (!call_with_body(r, &call, &res))
		return res;
	snprintf(location, sizeof(location), "/v1/tokens/%s", PQgetvalue(call.res, 0, 1));
	/* the secret is in this answer only; Cache-Control: no-store is on every answer */
	return handler_pass_json(r, &call, 201, NULL, headers);
}

/* DELETE /v1/tokens/{id} */
enum MHD_Result
tokens_delete(Request *r)
{
	enum MHD_Result res;
	DbCall		call;

	handler_call_init(r, &call, STMT_TOKEN_DELETE, false);
	call.nparams = 1;
	call.values[0] = r->params[0];
	if (!handler_run(r, &call, &res))
		return res;
	PQclear(call.res);
	return http_respond(r, 204, NULL, "", 0);
}

/* GET /v1/access-info */
enum MHD_Result
access_info(Request *r)
{
	enum MHD_Result res;
	DbCall		call;

	handler_call_init(r, &call, STMT_ACCESS_INFO, true);
	if (!handler_run(r, &call, &res))
		return res;
	return handler_pass_json(r, &call, 200, NULL, NULL);
}

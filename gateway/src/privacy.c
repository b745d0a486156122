/*-------------------------------------------------------------------------
 *
 * privacy.c
 *	  Privacy mode, grants, tokens and "who am I": thin JSON wrappers over
 *	  custos' administration functions, which decide who may do what.
 *
 *-------------------------------------------------------------------------
 */
#include <jansson.h>

#include "handler.h"
#include "main.h"
#include "privacy.h"

/*
 * Runs a call whose last parameter is the JSON object body and answers with
 * status (and a Location of location_prefix and the new id, if not NULL).
 */
static enum MHD_Result
answer_with_body(Request *r, DbCall *call, int status, const char *location_prefix)
{
	enum MHD_Result res;

	if (!handler_check_body(r, JSON_OBJECT, NULL, &res))
		return res;
	call->values[call->nparams - 1] = r->body;
	return handler_answer(r, call, status, location_prefix, NULL);
}

/* PUT /v1/tenants/{tenant}/privacy-mode  {"enabled": true|false} */
enum MHD_Result
privacy_mode_put(Request *r)
{
	DbCall		call;

	handler_call_init(r, &call, STMT_PRIVACY_MODE, false);
	call.nparams = 2;
	call.values[0] = r->params[0];
	return answer_with_body(r, &call, 200, NULL);
}

/* POST /v1/grants  {"tenant", "principal", "right", "expires_at"} */
enum MHD_Result
grants_create(Request *r)
{
	DbCall		call;

	handler_call_init(r, &call, STMT_GRANT_CREATE, false);
	call.nparams = 1;
	return answer_with_body(r, &call, 201, "/v1/grants/");
}

/* DELETE /v1/grants/{id} */
enum MHD_Result
grants_delete(Request *r)
{
	DbCall		call;

	if (!handler_valid_id(r->params[0]))
		return http_problem(r, 404, "not-found", "no such grant", NULL, "Grant ids are integers.");
	handler_call_init(r, &call, STMT_GRANT_DELETE, false);
	call.nparams = 1;
	call.values[0] = r->params[0];
	return handler_answer(r, &call, 204, NULL, NULL);
}

/* POST /v1/tokens  {"principal", "kind", "valid_for", "label"} */
enum MHD_Result
tokens_create(Request *r)
{
	DbCall		call;

	handler_call_init(r, &call, STMT_TOKEN_CREATE, false);
	call.nparams = 1;
	/* the secret is in this answer only; Cache-Control: no-store is on every answer */
	return answer_with_body(r, &call, 201, "/v1/tokens/");
}

/* DELETE /v1/tokens/{id} */
enum MHD_Result
tokens_delete(Request *r)
{
	DbCall		call;

	handler_call_init(r, &call, STMT_TOKEN_DELETE, false);
	call.nparams = 1;
	call.values[0] = r->params[0];
	return handler_answer(r, &call, 204, NULL, NULL);
}

/* GET /v1/access-info */
enum MHD_Result
access_info(Request *r)
{
	DbCall		call;

	handler_call_init(r, &call, STMT_ACCESS_INFO, true);
	return handler_answer(r, &call, 200, NULL, NULL);
}

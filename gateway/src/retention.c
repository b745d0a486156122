/*-------------------------------------------------------------------------
 *
 * retention.c
 *	  /v1/tenants/{tenant}/retention, /v1/tenants/{tenant}/legal-holds,
 *	  /v1/legal-holds/{id} and /v1/tenants/{tenant}/erasures: a tenant's
 *	  retention policy, its legal holds, and GDPR Art. 17 erasure.
 *
 * Thin JSON wrappers, like privacy.c: custos' 0.5 functions decide who may
 * (owners and admins of the tenant or above; readers of its audit log for
 * the GET endpoints) and record every change as an audit event of the
 * tenant; the 0.6 jsonb functions behind each statement check the body.
 * The gateway checks only the shape of the request.
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "handler.h"
#include "retention.h"

/* A hold id in a path: 1 to 18 digits (anything else cannot exist: 404). */
static bool
valid_id(const char *s)
{
	size_t		n = strspn(s, "0123456789");

	return n > 0 && n <= 18 && s[n] == '\0';
}

/*
 * Only the named query parameters (allowed, NULL-terminated) are taken:
 * anything else is a 400, never silently ignored.
 */
static bool
only_params(Request *r, const char *const *allowed, enum MHD_Result *res)
{
	char	   *rest = handler_query_json(r, allowed, res);
	bool		ok;

	if (rest == NULL)
		return false;
	ok = strcmp(rest, "{}") == 0;
	free(rest);
	if (!ok)
		*res = http_problem(r, 400, "bad-request", "unknown query parameter", NULL,
							"This endpoint takes only the parameters its documentation lists.");
	return ok;
}

/* Runs a call of a tenant (values[0]) with a JSON object body (values[1]). */
static bool
call_tenant_body(Request *r, DbCall *call, enum MHD_Result *res)
{
	static const char *const none[] = {NULL};

	if (!only_params(r, none, res) || !handler_check_body(r, JSON_OBJECT, NULL, res))
		return false;
	call->nparams = 2;
	call->values[0] = r->params[0];
	call->values[1] = r->body;
	return handler_run(r, call, res);
}

/* Runs a call of a tenant (values[0]) without a body or query parameters. */
static bool
call_tenant(Request *r, DbCall *call, enum MHD_Result *res)
{
	static const char *const none[] = {NULL};

	if (!only_params(r, none, res))
		return false;
	call->nparams = 1;
	call->values[0] = r->params[0];
	return handler_run(r, call, res);
}

/* GET /v1/tenants/{tenant}/retention */
enum MHD_Result
retention_get(Request *r)
{
	enum MHD_Result res;
	DbCall		call;

	handler_call_init(r, &call, STMT_RETENTION_GET, true);
	if (!call_tenant(r, &call, &res))
		return res;
	return handler_pass_json(r, &call, 200, "no such tenant", NULL);
}

/* PUT /v1/tenants/{tenant}/retention  {"retention_days": n, "anonymize_days": n|null} */
enum MHD_Result
retention_put(Request *r)
{
	enum MHD_Result res;
	DbCall		call;

	handler_call_init(r, &call, STMT_RETENTION_PUT, false);
	if (!call_tenant_body(r, &call, &res))
		return res;
	return handler_pass_json(r, &call, 200, NULL, NULL);
}

/* GET /v1/tenants/{tenant}/legal-holds */
enum MHD_Result
legal_holds_list(Request *r)
{
	enum MHD_Result res;
	DbCall		call;

	handler_call_init(r, &call, STMT_HOLDS_LIST, true);
	if (!call_tenant(r, &call, &res))
		return res;
	return handler_pass_json(r, &call, 200, NULL, NULL);
}

/* POST /v1/tenants/{tenant}/legal-holds  {"subject"?, "reason"} */
enum MHD_Result
legal_holds_create(Request *r)
{
	enum MHD_Result res;
	DbCall		call;
	char		location[64];
	const char *headers[] = {"Location", location, NULL};

	handler_call_init(r, &call, STMT_HOLD_CREATE, false);
	if (!call_tenant_body(r, &call, &res))
		return res;
	snprintf(location, sizeof(location), "/v1/legal-holds/%s", PQgetvalue(call.res, 0, 1));
	return handler_pass_json(r, &call, 201, NULL, headers);
}

/*
 * DELETE /v1/legal-holds/{id}, with an optional reason: a JSON body
 * {"reason": "..."}, or ?reason=... for clients that send no body with a
 * DELETE; not both.
 */
enum MHD_Result
legal_holds_delete(Request *r)
{
	static const char *const allowed[] = {"reason", NULL};
	enum MHD_Result res;
	DbCall		call;
	char	   *query = NULL;

	if (!valid_id(r->params[0]))
		return http_problem(r, 404, "not-found", "no such legal hold", NULL, "Legal hold ids are integers.");
	if (!only_params(r, allowed, &res))
		return res;
	if (r->body_len > 0)
	{
		if (handler_arg(r, "reason") != NULL)
			return http_problem(r, 400, "bad-request", "the reason is given twice, in the body and the query", NULL,
								"Send it in one place.");
		if (!handler_check_body(r, JSON_OBJECT, NULL, &res))
			return res;
	}
	else if ((query = handler_query_json(r, NULL, &res)) == NULL)
		return res;

	handler_call_init(r, &call, STMT_HOLD_DELETE, false);
	call.nparams = 2;
	call.values[0] = r->params[0];
	call.values[1] = query ? query : r->body;
	if (!handler_run(r, &call, &res))
	{
		free(query);
		return res;
	}
	free(query);
	return handler_pass_json(r, &call, 200, NULL, NULL);
}

/* POST /v1/tenants/{tenant}/erasures  {"subject", "reason"} */
enum MHD_Result
erasures_create(Request *r)
{
	enum MHD_Result res;
	DbCall		call;

	handler_call_init(r, &call, STMT_ERASURE_CREATE, false);
	if (!call_tenant_body(r, &call, &res))
		return res;
	/* done when answered: the keys are destroyed, nothing is left to poll */
	return handler_pass_json(r, &call, 200, NULL, NULL);
}

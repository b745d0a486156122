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
#include <stdlib.h>

#include <jansson.h>

#include "handler.h"
#include "retention.h"

static const char *const no_params[] = {NULL};

/*
 * Runs a call of the tenant in the path (values[0]), with the JSON object
 * body as values[1] if with_body, and answers with status (and a Location of
 * location_prefix and the new id, if not NULL).  No query parameter is taken.
 */
static enum MHD_Result
answer_tenant(Request *r, Statement stmt, bool with_body, int status, const char *location_prefix,
			  const char *not_found_detail)
{
	enum MHD_Result res;
	DbCall		call;

	if (!handler_only_params(r, no_params, &res) ||
		(with_body && !handler_check_body(r, JSON_OBJECT, NULL, &res)))
		return res;
	/* the GETs are read-only: safe to run again on a fresh connection */
	handler_call_init(r, &call, stmt, !with_body);
	call.nparams = with_body ? 2 : 1;
	call.values[0] = r->params[0];
	call.values[1] = r->body;
	return handler_answer(r, &call, status, location_prefix, not_found_detail);
}

/* GET /v1/tenants/{tenant}/retention */
enum MHD_Result
retention_get(Request *r)
{
	return answer_tenant(r, STMT_RETENTION_GET, false, 200, NULL, "no such tenant");
}

/* PUT /v1/tenants/{tenant}/retention  {"retention_days": n, "anonymize_days": n|null} */
enum MHD_Result
retention_put(Request *r)
{
	return answer_tenant(r, STMT_RETENTION_PUT, true, 200, NULL, NULL);
}

/* GET /v1/tenants/{tenant}/legal-holds */
enum MHD_Result
legal_holds_list(Request *r)
{
	return answer_tenant(r, STMT_HOLDS_LIST, false, 200, NULL, NULL);
}

/* POST /v1/tenants/{tenant}/legal-holds  {"subject"?, "reason"} */
enum MHD_Result
legal_holds_create(Request *r)
{
	return answer_tenant(r, STMT_HOLD_CREATE, true, 201, "/v1/legal-holds/", NULL);
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

	if (!handler_valid_id(r->params[0]))
		return http_problem(r, 404, "not-found", "no such legal hold", NULL, "Legal hold ids are integers.");
	if (!handler_only_params(r, allowed, &res))
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
	res = handler_answer(r, &call, 200, NULL, NULL);
	free(query);
	return res;
}

/* POST /v1/tenants/{tenant}/erasures  {"subject", "reason"} */
enum MHD_Result
erasures_create(Request *r)
{
	/* done when answered: the keys are destroyed, nothing is left to poll */
	return answer_tenant(r, STMT_ERASURE_CREATE, true, 200, NULL, NULL);
}

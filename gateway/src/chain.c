/*-------------------------------------------------------------------------
 *
 * chain.c
 *	  /v1/verify and /v1/digest: the hash chain of a tenant the caller may
 *	  audit (custos.chain_verify(), custos.chain_digest()).
 *
 * Both take the tenant from ?tenant= (default: the caller's own) and verify
 * an optional kept digest from ?digest=<JSON object>.  Whether the caller may
 * audit the tenant is decided in the database.
 *
 *-------------------------------------------------------------------------
 */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "chain.h"
#include "handler.h"
#include "main.h"

/* GET /v1/verify[?tenant=T][&digest={...}] */
enum MHD_Result
chain_verify(Request *r)
{
	static const char *const allowed[] = {"tenant", "digest", NULL};
	enum MHD_Result res;
	DbCall		call;
	const char *digest = handler_arg(r, "digest");

	if (!handler_only_params(r, allowed, &res))
		return res;
	if (digest)
	{
		json_error_t err;
		json_t	   *v;

		if (!http_json_depth_ok(digest, strlen(digest), config.max_depth) ||
			(v = json_loads(digest, JSON_REJECT_DUPLICATES, &err)) == NULL)
			return http_problem(r, 400, "bad-request", "digest must be a JSON object (a custos digest)", NULL,
								"Pass a digest from /v1/digest unchanged, URL-encoded.");
		if (!json_is_object(v))
		{
			json_decref(v);
			return http_problem(r, 400, "bad-request", "digest must be a JSON object (a custos digest)", NULL, NULL);
		}
		json_decref(v);
	}
	handler_call_init(r, &call, STMT_CHAIN_VERIFY, true);
	call.nparams = 2;
	call.values[0] = handler_arg(r, "tenant");
	call.values[1] = digest;
	return handler_answer(r, &call, 200, NULL, "no such tenant");
}

/* GET /v1/digest[?tenant=T] */
enum MHD_Result
chain_digest(Request *r)
{
	static const char *const allowed[] = {"tenant", NULL};
	enum MHD_Result res;
	DbCall		call;

	if (!handler_only_params(r, allowed, &res))
		return res;
	handler_call_init(r, &call, STMT_CHAIN_DIGEST, true);
	call.nparams = 1;
	call.values[0] = handler_arg(r, "tenant");
	return handler_answer(r, &call, 200, NULL, "no such tenant");
}

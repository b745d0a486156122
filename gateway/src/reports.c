/*-------------------------------------------------------------------------
 *
 * reports.c
 *	  /v1/subjects/{subject}/report (GDPR Art. 15 subject access report) and
 *	  /v1/support/report (a support report without secrets).
 *
 * Both are thin: custos.subject_report() and custos.support_report() decide
 * who may produce which report and record each as an audit event; the
 * gateway checks the shape of the query string and relays PostgreSQL's
 * JSON.
 *
 * The subject report as CSV streams like /v1/events/export, in two
 * transactions: the first starts the report (custos.subject_report_start():
 * the caller is checked and the audit event committed), the second copies
 * its rows.  So no row leaves before the report is on record, and a client
 * that goes away mid-stream leaves the record behind, as it should: the
 * rows were produced.  The second transaction authenticates again, and
 * custos accepts the report id only from the token that started it.
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "handler.h"
#include "main.h"
#include "reports.h"

/*
 * A boolean query parameter: absent is "false"; "true" or "false" as given;
 * anything else is a 400 (returns NULL with *res set).
 */
static const char *
bool_param(Request *r, const char *name, enum MHD_Result *res)
{
	const char *v = handler_arg(r, name);
	char		msg[128];

	if (v == NULL)
		return "false";
	if (strcmp(v, "true") == 0 || strcmp(v, "false") == 0)
		return v;
	snprintf(msg, sizeof(msg), "%s must be true or false", name);
	*res = http_problem(r, 400, "bad-request", msg, NULL, NULL);
	return NULL;
}

/*
 * The subject report's format: ?format=json|csv, else from Accept (text/csv
 * gives CSV, anything else JSON).  False for another ?format.
 */
static bool
report_csv(Request *r, bool *csv)
{
	const char *f = handler_arg(r, "format");
	const char *accept;

	if (f)
	{
		if (strcmp(f, "csv") != 0 && strcmp(f, "json") != 0)
			return false;
		*csv = strcmp(f, "csv") == 0;
		return true;
	}
	accept = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT);
	*csv = accept != NULL && strstr(accept, "text/csv") != NULL &&
		strstr(accept, "application/json") == NULL;
	return true;
}

/*
 * GET /v1/subjects/{subject}/report?tenant=T[&format=json|csv]
 *		[&include_accessors=true&reason=...]
 */
enum MHD_Result
subject_report(Request *r)
{
	static const char *const allowed[] = {"tenant", "format", "include_accessors", "reason", NULL};
	static const char *const csv_headers[] = {
		"Content-Disposition", "attachment; filename=\"custos-subject-report.csv\"", NULL
	};
	enum MHD_Result res;
	DbCall		call;
	bool		csv;
	const char *accessors;
	char		report_id[24];
	ExportStream *s;

	if (!handler_only_params(r, allowed, &res))
		return res;
	if (!report_csv(r, &csv))
		return http_problem(r, 400, "bad-request", "format must be json or csv", NULL, NULL);
	if ((accessors = bool_param(r, "include_accessors", &res)) == NULL)
		return res;

	handler_call_init(r, &call, csv ? STMT_SUBJECT_REPORT_START : STMT_SUBJECT_REPORT, false);
	call.nparams = 4;
	call.values[0] = handler_arg(r, "tenant");
	call.values[1] = r->params[0];
	call.values[2] = accessors;
	call.values[3] = handler_arg(r, "reason");
	if (!handler_run(r, &call, &res))
		return res;
	if (!csv)
		return handler_pass_json(r, &call, 200, NULL, NULL);

	/* CSV: the report is on record; now its rows */
	if (PQntuples(call.res) != 1 || PQgetisnull(call.res, 0, 0) ||
		(size_t) PQgetlength(call.res, 0, 0) >= sizeof(report_id))
	{
		PQclear(call.res);
		gw_log(LOG_ERROR, r->request_id, "msg=\"unexpected result shape\"");
		return http_problem(r, 500, "internal", "internal error; the gateway's log has the details", NULL, NULL);
	}
	snprintf(report_id, sizeof(report_id), "%s", PQgetvalue(call.res, 0, 0));
	PQclear(call.res);
	call.res = NULL;
	handler_call_init(r, &call, STMT_SUBJECT_REPORT_PREPARE, true);
	s = db_subject_report_begin(&call, report_id);
	return handler_stream(r, &call, s, "text/csv; charset=utf-8; header=present", csv_headers);
}

/* GET /v1/support/report[?tenant=T][&personal_data=true&reason=...] */
enum MHD_Result
support_report(Request *r)
{
	static const char *const allowed[] = {"tenant", "personal_data", "reason", NULL};
	enum MHD_Result res;
	DbCall		call;
	const char *personal;

	if (!handler_only_params(r, allowed, &res))
		return res;
	if ((personal = bool_param(r, "personal_data", &res)) == NULL)
		return res;
	handler_call_init(r, &call, STMT_SUPPORT_REPORT, false);
	call.nparams = 3;
	call.values[0] = personal;
	call.values[1] = handler_arg(r, "tenant");
	call.values[2] = handler_arg(r, "reason");
	return handler_answer(r, &call, 200, NULL, NULL);
}

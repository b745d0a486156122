/*-------------------------------------------------------------------------
 *
 * events.c
 *	  /v1/events: append (one event or an atomic batch), list a page, get
 *	  one, and export every match as CSV or NDJSON.
 *
 * Each handler checks the shape of the request and makes one database call
 * (db.c); custos decides what the caller may append or see.  The list's
 * paging is keyset paging done by custos.query_events(): the gateway only
 * copies its opaque next_cursor into a Link header.
 *
 * Export streams: the COPY's rows go from libpq to the client through
 * libmicrohttpd's content reader in pieces of at most 64 KiB, so the
 * gateway's memory does not grow with the export.  When the client goes
 * away, libmicrohttpd frees the response and db_export_end() cancels the
 * query.
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "db.h"
#include "events.h"
#include "handler.h"
#include "main.h"

/* POST /v1/events */
enum MHD_Result
events_append(Request *r)
{
	enum MHD_Result res;
	json_t	   *v;
	DbCall		call;
	const char *key;
	char		location[64];
	const char *headers[5];
	int			nh = 0;

	if (!handler_check_body(r, -1, &v, &res))
		return res;
	if (json_is_array(v) && json_array_size(v) > (size_t) config.max_batch)
	{
		char		msg[128];

		snprintf(msg, sizeof(msg), "a batch of %zu events is more than the gateway accepts (%d)",
				 json_array_size(v), config.max_batch);
		json_decref(v);
		return http_problem(r, 413, "too-large", msg, NULL, "Split the batch.");
	}
	json_decref(v);
	key = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Idempotency-Key");

	handler_call_init(r, &call, STMT_EVENTS_APPEND, false);
	call.nparams = 2;
	call.values[0] = r->body;
	call.values[1] = key;
	if (!handler_run(r, &call, &res))
		return res;
	snprintf(location, sizeof(location), "/v1/events/%s", PQgetvalue(call.res, 0, 1));
	headers[nh++] = "Location";
	headers[nh++] = location;
	if (strcmp(PQgetvalue(call.res, 0, 2), "true") == 0)
	{
		headers[nh++] = "Idempotent-Replayed";
		headers[nh++] = "true";
	}
	headers[nh] = NULL;
	return handler_pass_json(r, &call, 201, NULL, headers);
}

/*
 * The next_cursor of a page: custos.query_events() puts it first,
 * {"next_cursor" : "<base64url>", ...} or {"next_cursor" : null, ...}.
 * Copies it into out (size > 1); false if there is none.
 */
static bool
page_cursor(const char *page, char *out, size_t size)
{
	static const char prefix[] = "{\"next_cursor\" : \"";
	size_t		n;

	if (strncmp(page, prefix, sizeof(prefix) - 1) != 0)
		return false;
	page += sizeof(prefix) - 1;
	n = strspn(page, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_");
	if (n == 0 || n >= size || page[n] != '"')
		return false;
	memcpy(out, page, n);
	out[n] = '\0';
	return true;
}

/*
 * Link: <this request with cursor=next>; rel="next".  The query string is
 * the client's, as sent, with any cursor parameter replaced.
 */
static char *
next_link(Request *r, const char *cursor)
{
	const char *q = r->uri ? strchr(r->uri, '?') : NULL;
	size_t		cap = (r->uri ? strlen(r->uri) : 0) + strlen(cursor) + 64;
	char	   *link = malloc(cap);
	size_t		n;

	if (link == NULL)
		return NULL;
	n = snprintf(link, cap, "</v1/events?");
	if (q)
	{
		const char *p = q + 1;

		while (*p)
		{
			const char *e = strchrnul(p, '&');

			if (e > p && strncmp(p, "cursor=", 7) != 0)
			{
				memcpy(link + n, p, e - p);
				n += e - p;
				link[n++] = '&';
			}
			p = *e ? e + 1 : e;
		}
	}
	snprintf(link + n, cap - n, "cursor=%s>; rel=\"next\"", cursor);
	return link;
}

/* GET /v1/events */
enum MHD_Result
events_list(Request *r)
{
	static const char *const skip[] = {"limit", "order", "cursor", NULL};
	enum MHD_Result res;
	DbCall		call;
	char	   *filters;
	char		cursor[64];
	char	   *link = NULL;

	filters = handler_query_json(r, skip, &res);
	if (filters == NULL)
		return res;
	handler_call_init(r, &call, STMT_EVENTS_LIST, true);
	call.nparams = 4;
	call.values[0] = filters;
	call.values[1] = handler_arg(r, "cursor");
	call.values[2] = handler_arg(r, "limit");
	call.values[3] = handler_arg(r, "order");
	if (!handler_run(r, &call, &res))
	{
		free(filters);
		return res;
	}
	free(filters);
	if (PQntuples(call.res) == 1 && page_cursor(PQgetvalue(call.res, 0, 0), cursor, sizeof(cursor)))
		link = next_link(r, cursor);
	{
		const char *headers[] = {"Link", link, NULL};

		res = handler_pass_json(r, &call, 200, NULL, link ? headers : NULL);
	}
	free(link);
	return res;
}

/* GET /v1/events/{id} */
enum MHD_Result
events_get(Request *r)
{
	DbCall		call;

	if (!handler_valid_id(r->params[0]))
		return http_problem(r, 404, "not-found", "no such event", NULL, "Event ids are integers.");
	handler_call_init(r, &call, STMT_EVENTS_GET, true);
	call.nparams = 1;
	call.values[0] = r->params[0];
	return handler_answer(r, &call, 200, NULL, "no such event, or not visible to this token");
}

/*
 * The export format: ?format=csv|ndjson, else from Accept.  Returns false if
 * the client accepts neither.
 */
static bool
export_format(Request *r, ExportFormat *format)
{
	const char *f = handler_arg(r, "format");
	const char *accept;
	const char *csv;
	const char *ndjson;

	if (f)
	{
		if (strcmp(f, "csv") == 0)
			*format = EXPORT_CSV;
		else if (strcmp(f, "ndjson") == 0)
			*format = EXPORT_NDJSON;
		else
			return false;
		return true;
	}
	accept = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT);
	if (accept == NULL)
	{
		*format = EXPORT_NDJSON;
		return true;
	}
	/* the first of the two named wins; q-values are not weighed */
	csv = strstr(accept, "text/csv");
	ndjson = strstr(accept, "ndjson");
	if (csv && (ndjson == NULL || csv < ndjson))
		*format = EXPORT_CSV;
	else if (ndjson || strstr(accept, "*/*") || strstr(accept, "application/*"))
		*format = EXPORT_NDJSON;
	else if (strstr(accept, "text/*"))
		*format = EXPORT_CSV;
	else
		return false;
	return true;
}

/*
 * Streams the export of filters (a JSON object of filters, already checked
 * for shape) as the caller of token.  GET /v1/events/export and the export
 * tickets' downloads (ticket.c) both end here.
 */
enum MHD_Result
events_export_run(Request *r, const char *token, const char *filters, ExportFormat format)
{
	static const char *const csv_headers[] = {
		"Content-Disposition", "attachment; filename=\"custos-events.csv\"", NULL
	};
	static const char *const ndjson_headers[] = {
		"Content-Disposition", "attachment; filename=\"custos-events.ndjson\"", NULL
	};
	DbCall		call;
	ExportStream *s;

	handler_call_init(r, &call, STMT_EXPORT_PREPARE, true);
	call.token = token;
	s = db_export_begin(&call, filters, format);
	return handler_stream(r, &call, s,
						  format == EXPORT_CSV ? "text/csv; charset=utf-8; header=present" :
						  "application/x-ndjson",
						  format == EXPORT_CSV ? csv_headers : ndjson_headers);
}

/* GET /v1/events/export */
enum MHD_Result
events_export(Request *r)
{
	static const char *const skip[] = {"format", NULL};
	enum MHD_Result res;
	ExportFormat format;
	char	   *filters;

	if (!export_format(r, &format))
		return http_problem(r, 406, "not-acceptable", "exports are text/csv or application/x-ndjson",
							NULL, "Send Accept: text/csv or Accept: application/x-ndjson, or ?format=csv|ndjson.");
	filters = handler_query_json(r, skip, &res);
	if (filters == NULL)
		return res;
	res = events_export_run(r, r->token, filters, format);
	free(filters);
	return res;
}

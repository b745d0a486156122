/*-------------------------------------------------------------------------
 *
 * handler.c
 *	  What every resource handler does the same way: check a JSON body or a
 *	  query string, run the endpoint's one database call, and answer with
 *	  PostgreSQL's JSON or with the problem its error maps to.
 *
 * Bodies are checked here only for shape (UTF-8 JSON, no duplicate keys,
 * bounded depth, object or array) and then passed to PostgreSQL as the
 * client sent them; the SQL functions check the content.  Query strings
 * become a JSON object of strings, which the SQL functions validate too
 * (an unknown filter is their 400, not a silently ignored parameter).
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>

#include <jansson.h>

#include "db.h"
#include "handler.h"
#include "main.h"

void
handler_call_init(Request *r, DbCall *call, Statement stmt, bool read_only)
{
	memset(call, 0, sizeof(*call));
	call->token = r->token;
	call->stmt = stmt;
	call->read_only = read_only;
	call->request_id = r->request_id;
}

enum MHD_Result
handler_fail(Request *r, DbCall *call)
{
	static const char *const retry[] = {"Retry-After", "1", NULL};
	const char *slug;
	int			status;

	if (call->access[0])
		snprintf(r->access, sizeof(r->access), "%s", call->access);
	switch (call->status)
	{
		case DB_OK:
			break;
		case DB_BUSY:
			return http_problem_headers(r, 503, "overloaded", "every database connection is busy",
										NULL, "Retry later.", retry);
		case DB_UNAVAILABLE:
			return http_problem_headers(r, 503, "unavailable", "the database is unavailable",
										NULL, "Retry later.", retry);
		case DB_SQL_ERROR:
			break;
	}
	status = http_status_for_sqlstate(call->sqlstate, &slug);
	if (status == 500)
	{
		/* our bug, or a database not updated to this gateway's API: log, do not expose */
		gw_log(LOG_ERROR, r->request_id, "msg=\"unexpected database error\" sqlstate=%s error=\"%s\"",
			   call->sqlstate, call->message);
		return http_problem(r, 500, slug, "internal error; the gateway's log has the details",
							call->sqlstate, NULL);
	}
	if (status == 503)
		return http_problem_headers(r, status, slug, call->message, call->sqlstate, call->hint, retry);
	return http_problem(r, status, slug, call->message, call->sqlstate, call->hint);
}

bool
handler_run(Request *r, DbCall *call, enum MHD_Result *result)
{
	db_call(call);
	if (call->status == DB_OK)
	{
		if (call->access[0])
			snprintf(r->access, sizeof(r->access), "%s", call->access);
		return true;
	}
	*result = handler_fail(r, call);
	return false;
}

enum MHD_Result
handler_answer(Request *r, DbCall *call, int status, const char *location_prefix,
			   const char *not_found_detail)
{
	enum MHD_Result res;
	char		location[128];
	const char *headers[] = {"Location", location, NULL};

	if (!handler_run(r, call, &res))
		return res;
	if (status == 204)
	{
		PQclear(call->res);
		call->res = NULL;
		return http_respond_const(r, 204, NULL, "", 0, NULL);
	}
	if (location_prefix == NULL)
		return handler_pass_json(r, call, status, not_found_detail, NULL);
	snprintf(location, sizeof(location), "%s%s", location_prefix,
			 PQnfields(call->res) > 1 && PQntuples(call->res) == 1 ? PQgetvalue(call->res, 0, 1) : "");
	return handler_pass_json(r, call, status, not_found_detail, headers);
}

/* libmicrohttpd pulls a streamed COPY through this */
static ssize_t
stream_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
	long		n = db_export_read((ExportStream *) cls, buf, max);

	(void) pos;
	if (n > 0)
		return n;
	if (n == 0)
		return MHD_CONTENT_READER_END_OF_STREAM;
	/* the client sees the chunked stream end without its last chunk */
	return MHD_CONTENT_READER_END_WITH_ERROR;
}

/* and frees it (ending the COPY) when the response is done or abandoned */
static void
stream_free(void *cls)
{
	db_export_end((ExportStream *) cls);
}

enum MHD_Result
handler_stream(Request *r, DbCall *call, ExportStream *s, const char *content_type,
			   const char *const *headers)
{
	if (call->access[0])
		snprintf(r->access, sizeof(r->access), "%s", call->access);
	if (s == NULL)
		return handler_fail(r, call);
	return http_respond_stream(r, 200, content_type, stream_reader, s, stream_free, headers);
}

bool
handler_valid_id(const char *s)
{
	size_t		n = strspn(s, "0123456789");

	return n > 0 && n <= 18 && s[n] == '\0';
}

static void
clear_result(void *res)
{
	PQclear((PGresult *) res);
}

enum MHD_Result
handler_pass_json(Request *r, DbCall *call, int status, const char *not_found_detail,
				  const char *const *headers)
{
	PGresult   *res = call->res;

	call->res = NULL;
	if (PQntuples(res) != 1 || PQnfields(res) < 1)
	{
		PQclear(res);
		gw_log(LOG_ERROR, r->request_id, "msg=\"unexpected result shape\"");
		return http_problem(r, 500, "internal", "internal error; the gateway's log has the details", NULL, NULL);
	}
	if (PQgetisnull(res, 0, 0))
	{
		PQclear(res);
		return http_problem(r, 404, "not-found", not_found_detail ? not_found_detail : "not found", NULL, NULL);
	}
	/* PostgreSQL's bytes, sent as they are; the result is freed after sending */
	return http_respond_owned(r, status, "application/json", PQgetvalue(res, 0, 0),
							  PQgetlength(res, 0, 0), clear_result, res, headers);
}

bool
handler_check_body(Request *r, int type, json_t **out, enum MHD_Result *result)
{
	const char *ct = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
	json_error_t err;
	json_t	   *v;
	char		msg[256];

	if (out)
		*out = NULL;
	if (ct == NULL || !(strncasecmp(ct, "application/json", 16) == 0 && (ct[16] == '\0' || ct[16] == ';')))
	{
		*result = http_problem(r, 415, "unsupported-media-type", "the body must be application/json", NULL,
							   "Send Content-Type: application/json.");
		return false;
	}
	if (r->body_len == 0)
	{
		*result = http_problem(r, 400, "bad-request", "a JSON body is required", NULL, NULL);
		return false;
	}
	if (!http_json_depth_ok(r->body, r->body_len, config.max_depth))
	{
		snprintf(msg, sizeof(msg), "the JSON body is nested deeper than %d levels", config.max_depth);
		*result = http_problem(r, 400, "bad-request", msg, NULL, NULL);
		return false;
	}
	v = json_loadb(r->body, r->body_len, JSON_REJECT_DUPLICATES, &err);
	if (v == NULL)
	{
		snprintf(msg, sizeof(msg), "malformed JSON body at byte %d: %s", err.position, err.text);
		*result = http_problem(r, 400, "bad-request", msg, NULL, NULL);
		return false;
	}
	if ((type == JSON_OBJECT && !json_is_object(v)) ||
		(type == -1 && !json_is_object(v) && !json_is_array(v)))
	{
		json_decref(v);
		*result = http_problem(r, 400, "bad-request",
							   type == JSON_OBJECT ? "the body must be a JSON object" :
							   "the body must be a JSON object or array", NULL, NULL);
		return false;
	}
	if (out)
		*out = v;
	else
		json_decref(v);
	return true;
}

/*
 * The index of key in names (NULL-terminated), or -1.  A name past the 64th
 * is not looked for: no endpoint takes that many.
 */
static int
name_index(const char *const *names, const char *key, size_t key_size)
{
	int			i;

	for (i = 0; names && names[i] && i < 64; i++)
		if (strlen(names[i]) == key_size && memcmp(names[i], key, key_size) == 0)
			return i;
	return -1;
}

/*
 * Notes that names[i] was given; false if it had been already (a repeated
 * parameter, which handler_arg() would silently take the first of).
 */
static bool
first_time(unsigned long long *seen, int i)
{
	if (*seen & (1ULL << i))
		return false;
	*seen |= 1ULL << i;
	return true;
}

const char *
handler_query_add(json_t *obj, const char *const *skip, const char *key, size_t key_size,
				  const char *value, size_t value_size)
{
	json_t	   *v;

	if (!http_valid_utf8(key, key_size) || (value && !http_valid_utf8(value, value_size)))
		return "a query parameter is not valid UTF-8 or holds a NUL byte";
	if (value == NULL)
		return "query parameter needs a value";
	if (name_index(skip, key, key_size) >= 0)
		return NULL;
	if (json_object_getn(obj, key, key_size) != NULL)
		return "query parameter is repeated";
	v = json_stringn(value, value_size);
	if (v == NULL || json_object_setn_new(obj, key, key_size, v) != 0)
		return "query parameter cannot be used";
	return NULL;
}

typedef struct QueryCollect
{
	const char *const *skip;
	unsigned long long seen;	/* bit i: skip[i] was given */
	json_t	   *obj;
	const char *error;			/* static text */
	char		bad_key[64];
} QueryCollect;

static enum MHD_Result
collect_arg(void *cls, enum MHD_ValueKind kind, const char *key, size_t key_size,
			const char *value, size_t value_size)
{
	QueryCollect *q = cls;
	int			i;

	(void) kind;
	q->error = handler_query_add(q->obj, q->skip, key, key_size, value, value_size);
	if (q->error == NULL && (i = name_index(q->skip, key, key_size)) >= 0 && !first_time(&q->seen, i))
		q->error = "query parameter is repeated";
	if (q->error == NULL)
		return MHD_YES;
	if (http_valid_utf8(key, key_size))
		snprintf(q->bad_key, sizeof(q->bad_key), "%s", key);
	return MHD_NO;
}

char *
handler_query_json(Request *r, const char *const *skip, enum MHD_Result *result)
{
	QueryCollect q = {0};
	char	   *text;

	q.skip = skip;
	q.obj = json_object();
	MHD_get_connection_values_n(r->conn, MHD_GET_ARGUMENT_KIND, collect_arg, &q);
	if (q.error)
	{
		char		msg[160];

		json_decref(q.obj);
		if (strncmp(q.error, "query parameter", 15) == 0 && q.bad_key[0])
			snprintf(msg, sizeof(msg), "%s: \"%s\"", q.error, q.bad_key);
		else
			snprintf(msg, sizeof(msg), "%s", q.error);
		*result = http_problem(r, 400, "bad-request", msg, NULL, NULL);
		return NULL;
	}
	text = json_dumps(q.obj, JSON_COMPACT);
	json_decref(q.obj);
	if (text == NULL)
		*result = http_problem(r, 500, "internal", "cannot encode the query", NULL, NULL);
	return text;
}

typedef struct ParamCheck
{
	const char *const *allowed;
	const char *error;			/* static text: the first malformed parameter */
	bool		unknown;		/* a parameter not in allowed */
	unsigned long long seen;	/* bit i: allowed[i] was given */
	char		bad_key[64];
} ParamCheck;

static enum MHD_Result
check_arg(void *cls, enum MHD_ValueKind kind, const char *key, size_t key_size,
		  const char *value, size_t value_size)
{
	ParamCheck *q = cls;
	int			i;

	(void) kind;
	if (!http_valid_utf8(key, key_size) || (value && !http_valid_utf8(value, value_size)))
	{
		q->error = "a query parameter is not valid UTF-8 or holds a NUL byte";
		return MHD_NO;
	}
	if (value == NULL)
	{
		q->error = "query parameter needs a value";
		snprintf(q->bad_key, sizeof(q->bad_key), "%s", key);
		return MHD_NO;
	}
	i = name_index(q->allowed, key, key_size);
	if (i < 0)
		q->unknown = true;
	else if (!first_time(&q->seen, i))
	{
		q->error = "query parameter is repeated";
		snprintf(q->bad_key, sizeof(q->bad_key), "%s", key);
		return MHD_NO;
	}
	return MHD_YES;
}

bool
handler_only_params(Request *r, const char *const *allowed, enum MHD_Result *result)
{
	ParamCheck	q = {0};

	q.allowed = allowed;
	MHD_get_connection_values_n(r->conn, MHD_GET_ARGUMENT_KIND, check_arg, &q);
	if (q.error)
	{
		char		msg[160];

		if (q.bad_key[0])
			snprintf(msg, sizeof(msg), "%s: \"%s\"", q.error, q.bad_key);
		else
			snprintf(msg, sizeof(msg), "%s", q.error);
		*result = http_problem(r, 400, "bad-request", msg, NULL, NULL);
		return false;
	}
	if (q.unknown)
	{
		*result = http_problem(r, 400, "bad-request", "unknown query parameter", NULL,
							   "This endpoint takes only the parameters its documentation lists.");
		return false;
	}
	return true;
}

const char *
handler_arg(Request *r, const char *name)
{
	return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
}

/*-------------------------------------------------------------------------
 *
 * handler.h
 *	  What the resource handlers (events.c, chain.c, privacy.c, reports.c,
 *	  retention.c, ticket.c) share: check the request's shape, run its one
 *	  database call, and turn the outcome into a response.
 *
 *-------------------------------------------------------------------------
 */
#ifndef GATEWAY_HANDLER_H
#define GATEWAY_HANDLER_H

#include "db.h"
#include "http.h"

/* a DbCall for the request: its token and request id filled in */
extern void handler_call_init(Request *r, DbCall *call, Statement stmt, bool read_only);

/*
 * Runs the call.  Returns true with call->res holding rows on success;
 * otherwise queues the problem response itself and returns false (the
 * handler then returns *result).
 */
extern bool handler_run(Request *r, DbCall *call, enum MHD_Result *result);

/* The problem response for a call that did not succeed. */
extern enum MHD_Result handler_fail(Request *r, DbCall *call);

/*
 * Responds with the text of column 0 of row 0 of call->res (PostgreSQL's
 * JSON, passed through without a copy), and clears the result when done.
 * A NULL value answers 404 with not_found_detail.
 */
extern enum MHD_Result handler_pass_json(Request *r, DbCall *call, int status,
										 const char *not_found_detail,
										 const char *const *headers);

/*
 * The usual end of a handler: runs the call and answers with PostgreSQL's
 * JSON (handler_pass_json) with status, or with the problem the call's
 * failure maps to.  status 204 answers with no body.  location_prefix, if
 * not NULL, makes a Location header of it and column 1 of the result (the
 * new resource's id).
 */
extern enum MHD_Result handler_answer(Request *r, DbCall *call, int status,
									  const char *location_prefix,
									  const char *not_found_detail);

/*
 * Streams an export-like COPY (s from db_export_begin() or
 * db_subject_report_begin() for call) as the response; s NULL answers the
 * problem of call.
 */
extern enum MHD_Result handler_stream(Request *r, DbCall *call, ExportStream *s,
									  const char *content_type, const char *const *headers);

/* An id in a path: 1 to 18 digits (anything else cannot exist: 404). */
extern bool handler_valid_id(const char *s);

/*
 * Only the named query parameters (allowed, NULL-terminated) are taken:
 * anything else is a 400, never silently ignored; so is a parameter that is
 * not UTF-8, holds a NUL byte or has no value.  On failure queues the
 * problem and returns false.
 */
extern bool handler_only_params(Request *r, const char *const *allowed, enum MHD_Result *result);

/*
 * Checks a JSON request body: present, of Content-Type application/json,
 * well-formed UTF-8 JSON without duplicate keys, nested at most
 * config.max_depth, of the given type (JSON_OBJECT, or -1 for object or
 * array).  On failure queues a problem and returns false.  On success the
 * parsed value is returned in *out if out is not NULL (caller json_decref()s).
 */
struct json_t;
extern bool handler_check_body(Request *r, int type, struct json_t **out, enum MHD_Result *result);

/*
 * Collects the query string into a compact JSON object of strings, leaving
 * out the names in skip (NULL-terminated).  Duplicates, invalid UTF-8 or NUL
 * bytes are a problem response (returns NULL).  Caller free()s.
 */
extern char *handler_query_json(Request *r, const char *const *skip, enum MHD_Result *result);

/*
 * Adds one query parameter to obj (unless its name is in skip); returns NULL
 * or what is wrong with it.  The check behind handler_query_json(), pure so
 * that the fuzz target can call it.
 */
extern const char *handler_query_add(struct json_t *obj, const char *const *skip,
									 const char *key, size_t key_size,
									 const char *value, size_t value_size);

/* a query parameter, or NULL */
extern const char *handler_arg(Request *r, const char *name);

#endif							/* GATEWAY_HANDLER_H */

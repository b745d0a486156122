/*-------------------------------------------------------------------------
 *
 * http.h
 *	  One HTTP request of the gateway, its limits, and the responses it can
 *	  get: JSON passed through from PostgreSQL, or an RFC 9457 problem.
 *
 * A Request is allocated when libmicrohttpd has read the request line
 * (http_uri_logger) and freed in the request-completed callback
 * (http_request_completed); nothing allocated for a request outlives it.
 * It is only ever touched by the worker thread that owns its connection.
 *
 *-------------------------------------------------------------------------
 */
#ifndef GATEWAY_HTTP_H
#define GATEWAY_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <microhttpd.h>

struct Route;
struct ExportStream;

#define REQUEST_ID_MAX 64
#define ROUTE_PARAM_MAX 2

typedef struct Request
{
	struct MHD_Connection *conn;
	const struct Route *route;
	const char *method;
	long long	start_us;
	size_t		uri_len;		/* request target, query string included */
	char	   *uri;			/* a copy of it, if at most config.max_url */
	char		request_id[REQUEST_ID_MAX + 1];
	const char *token;			/* the bearer token, looked up once: set before
								 * the handler of a ROUTE_AUTH route runs */
	char		access[64];		/* token id once authenticated, for the log */
	char		ip[48];
	const char *params[ROUTE_PARAM_MAX];	/* {x} segments of the path */
	char	   *path_copy;		/* storage of params */

	/* the body, collected up to config.max_body */
	char	   *body;
	size_t		body_len;
	size_t		body_cap;
	bool		body_too_large;

	/* the response */
	bool		responded;
	int			status;
	size_t		resp_bytes;
	bool		counted;		/* counted in active requests */
} Request;

/* Stable problem types (docs/http-api.md lists them). */
#define PROBLEM_BASE "urn:custos:problem:"

/* libmicrohttpd callbacks (main.c registers them) */
extern void *http_uri_logger(void *cls, const char *uri, struct MHD_Connection *conn);
extern enum MHD_Result http_access_handler(void *cls, struct MHD_Connection *conn,
										   const char *url, const char *method,
										   const char *version, const char *upload_data,
										   size_t *upload_data_size, void **req_cls);
extern void http_request_completed(void *cls, struct MHD_Connection *conn,
								   void **req_cls, enum MHD_RequestTerminationCode toe);
extern void http_connection_notify(void *cls, struct MHD_Connection *conn,
								   void **socket_context, enum MHD_ConnectionNotificationCode code);

/* in-flight requests and open connections (graceful shutdown, limits) */
extern int	http_active_requests(void);
extern int	http_open_connections(void);

/*
 * Responses.  Each queues exactly one response on the request's connection
 * and returns what the access handler must return.
 */

/*
 * body is copied; content_type NULL means application/json; headers are
 * NULL-terminated name, value pairs (or NULL)
 */
extern enum MHD_Result http_respond(Request *r, int status, const char *content_type,
									const char *body, size_t len, const char *const *headers);

/* the same for a body that lives as long as the process: not copied */
extern enum MHD_Result http_respond_const(Request *r, int status, const char *content_type,
										  const char *body, size_t len,
										  const char *const *headers);

/* body is not copied: free_fn(free_cls) is called once libmicrohttpd is done */
extern enum MHD_Result http_respond_owned(Request *r, int status, const char *content_type,
										  const char *body, size_t len,
										  void (*free_fn) (void *), void *free_cls,
										  const char *const *headers);

/* an RFC 9457 problem; sqlstate and hint may be NULL */
extern enum MHD_Result http_problem(Request *r, int status, const char *slug,
									const char *detail, const char *sqlstate,
									const char *hint);

/* the same, with extra headers: NULL-terminated name, value pairs */
extern enum MHD_Result http_problem_headers(Request *r, int status, const char *slug,
											const char *detail, const char *sqlstate,
											const char *hint, const char *const *headers);

/* a streamed response (export): chunked, of unknown size */
extern enum MHD_Result http_respond_stream(Request *r, int status, const char *content_type,
										   MHD_ContentReaderCallback reader, void *cls,
										   MHD_ContentReaderFreeCallback free_fn,
										   const char *const *headers);

/* SQLSTATE to HTTP status and problem type (the table in http.c) */
extern int	http_status_for_sqlstate(const char *sqlstate, const char **slug);

/* the longest bearer token http_bearer_token() accepts (tokens are 68 bytes) */
#define HTTP_TOKEN_MAX 256

/* the Bearer token of the request, or NULL */
extern const char *http_bearer_token(Request *r);

/*
 * Request input checks, also used by the fuzz target: all return true if the
 * input is acceptable.
 */
extern bool http_valid_utf8(const char *s, size_t len);
extern bool http_json_depth_ok(const char *s, size_t len, int max_depth);
extern bool http_valid_request_id(const char *s);

#endif							/* GATEWAY_HTTP_H */

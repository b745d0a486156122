/*-------------------------------------------------------------------------
 *
 * http.c
 *	  Requests of the gateway from first byte to access log line: limits,
 *	  routing, authentication and rate limits before a handler runs, and the
 *	  two kinds of response (JSON passed through, RFC 9457 problems).
 *
 * Limits, each checked before anything is done with the input:
 *	- open connections: config.max_connections; requests on connections
 *	  beyond it get 503 (libmicrohttpd refuses connections beyond 1.25x);
 *	- the request target: config.max_url bytes (414), because a query
 *	  string is copied into the database call;
 *	- a body: config.max_body bytes (413), collected in memory, refused as
 *	  soon as its Content-Length or its bytes exceed it;
 *	- slow clients: libmicrohttpd's connection timeout (config.timeout);
 *	- headers: libmicrohttpd's per-connection memory (64 KiB), 431 beyond.
 *
 * Request lifetime: http_uri_logger allocates the Request when the request
 * line is read; http_access_handler is called once with the headers, once
 * per piece of body, and once at the end, when the handler runs;
 * http_request_completed writes the access log line, counts the metrics and
 * frees everything.  One worker thread owns a connection, so a Request needs
 * no lock.
 *
 *-------------------------------------------------------------------------
 */
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include <jansson.h>

#include "db.h"
#include "http.h"
#include "main.h"
#include "metrics.h"
#include "ratelimit.h"
#include "router.h"

static atomic_int active_requests;
static atomic_int open_connections;

int
http_active_requests(void)
{
	return atomic_load(&active_requests);
}

int
http_open_connections(void)
{
	return atomic_load(&open_connections);
}

/* ------------------------------------------------------------------------
 * SQLSTATE to HTTP status: specific codes first, then classes.
 * ------------------------------------------------------------------------
 */
typedef struct StateMap
{
	const char *state;			/* 5 characters: a code; 2: a class */
	int			status;
	const char *slug;
} StateMap;

static const StateMap state_map[] = {
	{"28000", 401, "unauthorized"}, /* invalid token */
	{"28P01", 401, "unauthorized"},
	{"42501", 403, "forbidden"},	/* insufficient privilege */
	{"P0002", 404, "not-found"},	/* no_data_found: no such tenant, grant... */
	{"02000", 404, "not-found"},
	{"40001", 409, "conflict"},		/* serialization failure, after retries */
	{"40P01", 503, "unavailable"},	/* deadlock, after retries */
	{"42710", 409, "conflict"},		/* duplicate object */
	{"55000", 409, "conflict"},		/* erasure under a legal hold, a hold lifted twice */
	{"42804", 400, "invalid-input"},	/* wrong JSON type of an event field */
	{"57014", 503, "timeout"},		/* statement timeout or cancelled */
	{"22", 400, "invalid-input"},	/* data exceptions: bad value, time, cursor */
	{"23", 422, "unprocessable"},	/* integrity: missing field, key reused */
	{"54", 413, "too-large"},		/* program limit: event or batch too large */
	{"53", 503, "unavailable"},		/* insufficient resources */
	{"57", 503, "unavailable"},		/* operator intervention: shutdown */
	{"08", 503, "unavailable"},		/* connection exception */
	{"40", 409, "conflict"},
};

int
http_status_for_sqlstate(const char *sqlstate, const char **slug)
{
	size_t		i;

	for (i = 0; i < sizeof(state_map) / sizeof(state_map[0]); i++)
	{
		size_t		n = strlen(state_map[i].state);

		if (strncmp(state_map[i].state, sqlstate, n) == 0)
		{
			*slug = state_map[i].slug;
			return state_map[i].status;
		}
	}
	/* anything else (undefined function, internal error ...) is our bug */
	*slug = "internal";
	return 500;
}

static const char *
status_title(int status)
{
	switch (status)
	{
		case 400:
			return "Bad Request";
		case 401:
			return "Unauthorized";
		case 403:
			return "Forbidden";
		case 404:
			return "Not Found";
		case 405:
			return "Method Not Allowed";
		case 406:
			return "Not Acceptable";
		case 409:
			return "Conflict";
		case 413:
			return "Content Too Large";
		case 414:
			return "URI Too Long";
		case 415:
			return "Unsupported Media Type";
		case 422:
			return "Unprocessable Content";
		case 429:
			return "Too Many Requests";
		case 500:
			return "Internal Server Error";
		case 503:
			return "Service Unavailable";
		default:
			return "Error";
	}
}

/* ------------------------------------------------------------------------
 * Input checks
 * ------------------------------------------------------------------------
 */

/* Well-formed UTF-8 (RFC 3629: no overlongs, surrogates or > U+10FFFF), no NUL. */
bool
http_valid_utf8(const char *str, size_t len)
{
	const unsigned char *s = (const unsigned char *) str;
	size_t		i = 0;

	while (i < len)
	{
		unsigned char c = s[i];
		int			n;
		unsigned int cp;

		if (c == 0)
			return false;
		if (c < 0x80)
		{
			i++;
			continue;
		}
		if (c >= 0xC2 && c <= 0xDF)
		{
			n = 1;
			cp = c & 0x1F;
		}
		else if (c >= 0xE0 && c <= 0xEF)
		{
			n = 2;
			cp = c & 0x0F;
		}
		else if (c >= 0xF0 && c <= 0xF4)
		{
			n = 3;
			cp = c & 0x07;
		}
		else
			return false;
		for (int k = 1; k <= n; k++)
		{
			if (i + k >= len || (s[i + k] & 0xC0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + k] & 0x3F);
		}
		if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10FFFF ||
			(cp >= 0xD800 && cp <= 0xDFFF))
			return false;
		i += n + 1;
	}
	return true;
}

/*
 * Is JSON text nested at most max_depth deep?  A linear scan that skips
 * strings, run before the parser so that deep nesting costs nothing.
 */
bool
http_json_depth_ok(const char *s, size_t len, int max_depth)
{
	int			depth = 0;
	bool		in_string = false;
	size_t		i;

	for (i = 0; i < len; i++)
	{
		char		c = s[i];

		if (in_string)
		{
			if (c == '\\')
				i++;
			else if (c == '"')
				in_string = false;
		}
		else if (c == '"')
			in_string = true;
		else if (c == '[' || c == '{')
		{
			if (++depth > max_depth)
				return false;
		}
		else if (c == ']' || c == '}')
			depth--;
	}
	return true;
}

/* An X-Request-Id we echo: 1 to 64 of [A-Za-z0-9._:/+=-]; else we make one. */
bool
http_valid_request_id(const char *s)
{
	size_t		n = 0;

	if (s == NULL)
		return false;
	for (; s[n]; n++)
	{
		char		c = s[n];

		if (n >= REQUEST_ID_MAX)
			return false;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
			  strchr("._:/+=-", c) != NULL))
			return false;
	}
	return n > 0;
}

/*
 * A fresh request id: 96 bits from a per-thread generator (splitmix64) seeded
 * once from getrandom(), so that ids are unique without a system call per
 * request.  Ids need not be secret.
 */
static void
new_request_id(char *out)
{
	static const char hex[] = "0123456789abcdef";
	static __thread uint64_t state;
	static __thread bool seeded;
	uint64_t	words[2];
	int			i;

	if (!seeded)
	{
		if (getrandom(&state, sizeof(state), 0) != (ssize_t) sizeof(state))
			state = (uint64_t) now_us() ^ (uint64_t) (uintptr_t) &state;
		seeded = true;
	}
	for (i = 0; i < 2; i++)
	{
		uint64_t	z = (state += 0x9e3779b97f4a7c15ULL);

		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
		z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
		words[i] = z ^ (z >> 31);
	}
	for (i = 0; i < 12; i++)
	{
		unsigned	b = (unsigned) (words[i / 8] >> (8 * (i % 8))) & 0xff;

		out[2 * i] = hex[b >> 4];
		out[2 * i + 1] = hex[b & 15];
	}
	out[24] = '\0';
}

const char *
http_bearer_token(Request *r)
{
	const char *h = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);

	if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0)
		return NULL;
	h += 7;
	while (*h == ' ')
		h++;
	/* tokens are "cst_" and 64 hex digits; anything longer is not one */
	if (*h == '\0' || strlen(h) > HTTP_TOKEN_MAX)
		return NULL;
	return h;
}

/* ------------------------------------------------------------------------
 * Responses
 * ------------------------------------------------------------------------
 */

static void
add_common_headers(Request *r, struct MHD_Response *resp, const char *content_type)
{
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
							content_type ? content_type : "application/json");
	MHD_add_response_header(resp, "X-Request-Id", r->request_id);
	/* audit data and tokens: never cached by anything in between */
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
}

static enum MHD_Result
queue(Request *r, int status, struct MHD_Response *resp, size_t len, const char *const *headers)
{
	enum MHD_Result ret;

	if (resp == NULL)
	{
		gw_log(LOG_ERROR, r->request_id, "msg=\"cannot create a response\"");
		return MHD_NO;
	}
	if (headers)
		for (; headers[0]; headers += 2)
			MHD_add_response_header(resp, headers[0], headers[1]);
	r->responded = true;
	r->status = status;
	r->resp_bytes = len;
	ret = MHD_queue_response(r->conn, status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static enum MHD_Result
respond_buffer(Request *r, int status, const char *content_type, const char *body, size_t len,
			   enum MHD_ResponseMemoryMode mode, const char *const *headers)
{
	struct MHD_Response *resp;

	resp = MHD_create_response_from_buffer(len, (void *) body, mode);
	if (resp)
		add_common_headers(r, resp, content_type);
	return queue(r, status, resp, len, headers);
}

enum MHD_Result
http_respond(Request *r, int status, const char *content_type, const char *body, size_t len,
			 const char *const *headers)
{
	return respond_buffer(r, status, content_type, body, len, MHD_RESPMEM_MUST_COPY, headers);
}

enum MHD_Result
http_respond_const(Request *r, int status, const char *content_type, const char *body, size_t len,
				   const char *const *headers)
{
	return respond_buffer(r, status, content_type, body, len, MHD_RESPMEM_PERSISTENT, headers);
}

enum MHD_Result
http_respond_owned(Request *r, int status, const char *content_type, const char *body,
				   size_t len, void (*free_fn) (void *), void *free_cls,
				   const char *const *headers)
{
	struct MHD_Response *resp;

	resp = MHD_create_response_from_buffer_with_free_callback_cls(len, (void *) body, free_fn, free_cls);
	if (resp == NULL)
	{
		free_fn(free_cls);
		return queue(r, 500, NULL, 0, NULL);
	}
	add_common_headers(r, resp, content_type);
	return queue(r, status, resp, len, headers);
}

enum MHD_Result
http_respond_stream(Request *r, int status, const char *content_type,
					MHD_ContentReaderCallback reader, void *cls,
					MHD_ContentReaderFreeCallback free_fn, const char *const *headers)
{
	struct MHD_Response *resp;

	/* 64 KiB at a time: the reader fills it with whole rows where it can */
	resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 64 * 1024, reader, cls, free_fn);
	if (resp == NULL)
	{
		free_fn(cls);
		return queue(r, 500, NULL, 0, NULL);
	}
	add_common_headers(r, resp, content_type);
	return queue(r, status, resp, 0, headers);
}

enum MHD_Result
http_problem_headers(Request *r, int status, const char *slug, const char *detail,
					 const char *sqlstate, const char *hint, const char *const *headers)
{
	char		type[64];
	json_t	   *p;
	char	   *text;
	size_t		len;
	struct MHD_Response *resp;

	snprintf(type, sizeof(type), PROBLEM_BASE "%s", slug);
	p = json_object();
	json_object_set_new(p, "type", json_string(type));
	json_object_set_new(p, "title", json_string(status_title(status)));
	json_object_set_new(p, "status", json_integer(status));
	/* PostgreSQL's messages are UTF-8; json_string() refuses anything else */
	if (detail)
	{
		json_t	   *d = json_string(detail);

		json_object_set_new(p, "detail", d ? d : json_string("(message not in UTF-8)"));
	}
	if (sqlstate && sqlstate[0])
		json_object_set_new(p, "sqlstate", json_string(sqlstate));
	if (hint && hint[0])
	{
		json_t	   *h = json_string(hint);

		if (h)
			json_object_set_new(p, "hint", h);
	}
	json_object_set_new(p, "request_id", json_string(r->request_id));
	text = json_dumps(p, JSON_COMPACT);
	json_decref(p);
	if (text == NULL)
		return MHD_NO;
	len = strlen(text);
	resp = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
	if (resp == NULL)
		free(text);
	else
		add_common_headers(r, resp, "application/problem+json");
	if (status == 401 && resp)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
								sqlstate ? "Bearer error=\"invalid_token\"" : "Bearer");
	if (status >= 500)
		gw_log(status == 500 ? LOG_ERROR : LOG_WARN, r->request_id,
			   "msg=\"%s\" status=%d sqlstate=%s", status == 500 ? "internal error" : "unavailable",
			   status, sqlstate ? sqlstate : "-");
	return queue(r, status, resp, resp ? len : 0, headers);
}

enum MHD_Result
http_problem(Request *r, int status, const char *slug, const char *detail,
			 const char *sqlstate, const char *hint)
{
	return http_problem_headers(r, status, slug, detail, sqlstate, hint, NULL);
}

/* ------------------------------------------------------------------------
 * libmicrohttpd callbacks
 * ------------------------------------------------------------------------
 */

void
http_connection_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
					   enum MHD_ConnectionNotificationCode code)
{
	(void) cls;
	(void) conn;
	(void) socket_context;
	if (code == MHD_CONNECTION_NOTIFY_STARTED)
		atomic_fetch_add(&open_connections, 1);
	else if (code == MHD_CONNECTION_NOTIFY_CLOSED)
		atomic_fetch_sub(&open_connections, 1);
}

void *
http_uri_logger(void *cls, const char *uri, struct MHD_Connection *conn)
{
	Request    *r = calloc(1, sizeof(Request));
	const union MHD_ConnectionInfo *ci;

	(void) cls;
	if (r == NULL)
		return NULL;
	r->conn = conn;
	r->start_us = now_us();
	r->uri_len = strlen(uri);
	if (r->uri_len <= (size_t) config.max_url)
		r->uri = strdup(uri);
	ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	if (ci && ci->client_addr)
	{
		if (ci->client_addr->sa_family == AF_INET)
			inet_ntop(AF_INET, &((struct sockaddr_in *) ci->client_addr)->sin_addr, r->ip, sizeof(r->ip));
		else if (ci->client_addr->sa_family == AF_INET6)
			inet_ntop(AF_INET6, &((struct sockaddr_in6 *) ci->client_addr)->sin6_addr, r->ip, sizeof(r->ip));
	}
	if (r->ip[0] == '\0')
		strcpy(r->ip, "-");
	atomic_fetch_add(&active_requests, 1);
	r->counted = true;
	return r;
}

/* Appends a piece of body, or marks the request too large. */
static void
collect_body(Request *r, const char *data, size_t len)
{
	if (r->body_too_large)
		return;
	if (r->body_len + len > (size_t) config.max_body)
	{
		r->body_too_large = true;
		free(r->body);
		r->body = NULL;
		r->body_len = r->body_cap = 0;
		return;
	}
	if (r->body_len + len + 1 > r->body_cap)
	{
		size_t		cap = r->body_cap ? r->body_cap : 4096;
		char	   *nb;

		while (cap < r->body_len + len + 1)
			cap *= 2;
		if (cap > (size_t) config.max_body + 1)
			cap = config.max_body + 1;
		nb = realloc(r->body, cap);
		if (nb == NULL)
		{
			r->body_too_large = true;
			return;
		}
		r->body = nb;
		r->body_cap = cap;
	}
	memcpy(r->body + r->body_len, data, len);
	r->body_len += len;
	r->body[r->body_len] = '\0';
}

/* First call: the headers are in.  May answer at once (limits, routing). */
static enum MHD_Result
on_headers(Request *r, const char *url, const char *method)
{
	const char *rid = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "X-Request-Id");
	const char *cl;
	const char *match_method = method;
	char		allow[64];
	RouteResult rr;

	if (http_valid_request_id(rid))
		strcpy(r->request_id, rid);
	else
		new_request_id(r->request_id);
	r->method = method;

	if (atomic_load(&open_connections) > config.max_connections)
	{
		static const char *const h[] = {"Retry-After", "1", "Connection", "close", NULL};

		return http_problem_headers(r, 503, "overloaded", "too many open connections", NULL,
									"Retry later, or reuse fewer connections.", h);
	}
	if (r->uri_len > (size_t) config.max_url)
		return http_problem(r, 414, "uri-too-long", "the request target is longer than the gateway accepts",
							NULL, "Narrow the query; filters are short strings.");

	/* HEAD is GET without the body (libmicrohttpd leaves the body out) */
	if (strcmp(method, "HEAD") == 0)
		match_method = "GET";
	rr = router_match(match_method, url, &r->route, r->params, &r->path_copy, allow, sizeof(allow));
	if (rr == ROUTE_NO_PATH)
		return http_problem(r, 404, "not-found", "no such resource", NULL,
							"See /v1/openapi.yaml for the API.");
	if (rr == ROUTE_NO_METHOD)
	{
		const char *const h[] = {"Allow", allow, NULL};

		return http_problem_headers(r, 405, "method-not-allowed", "method not allowed on this resource",
									NULL, NULL, h);
	}
	/*
	 * The API's GETs record what they do (reads of the log are audited,
	 * reports are audit events, a ticket is used up): a HEAD would do all
	 * that and deliver nothing.  Only routes without side effects take it.
	 */
	if (strcmp(method, "HEAD") == 0 && !(r->route->flags & ROUTE_HEAD))
	{
		static const char *const h[] = {"Allow", "GET", NULL};

		return http_problem_headers(r, 405, "method-not-allowed", "HEAD is not answered on this resource",
									NULL, "Use GET: this request records an audit event or uses something up.", h);
	}

	cl = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
	if (cl && strtoll(cl, NULL, 10) > config.max_body)
	{
		static const char *const h[] = {"Connection", "close", NULL};

		return http_problem_headers(r, 413, "too-large", "the request body is larger than the gateway accepts",
									NULL, "Split a batch of events into several requests.", h);
	}
	return MHD_YES;
}

/* Last call: the whole request is in.  Authentication, rate limit, handler. */
static enum MHD_Result
dispatch(Request *r)
{
	const Route *route = r->route;

	if (r->body_too_large)
	{
		static const char *const h[] = {"Connection", "close", NULL};

		return http_problem_headers(r, 413, "too-large", "the request body is larger than the gateway accepts",
									NULL, "Split a batch of events into several requests.", h);
	}
	if (r->body_len > 0 && !(route->flags & ROUTE_BODY))
		return http_problem(r, 400, "bad-request", "this request takes no body", NULL, NULL);
	if (route->flags & ROUTE_AUTH)
	{
		const char *token = r->token = http_bearer_token(r);
		int			retry_after;

		if (token == NULL)
			return http_problem(r, 401, "unauthorized", "a bearer token is required", NULL,
								"Send Authorization: Bearer <token>.");
		if (!ratelimit_take(token, (route->flags & ROUTE_EXPENSIVE) != 0, &retry_after))
		{
			char		ra[16];
			const char *const h[] = {"Retry-After", ra, NULL};

			snprintf(ra, sizeof(ra), "%d", retry_after);
			metrics_rate_limited();
			return http_problem_headers(r, 429, "rate-limited", "too many requests for this token", NULL,
										"Wait for the time Retry-After gives.", h);
		}
	}
	return route->handler(r);
}

enum MHD_Result
http_access_handler(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
					const char *version, const char *upload_data, size_t *upload_data_size,
					void **req_cls)
{
	Request    *r = *req_cls;

	(void) cls;
	(void) version;
	if (r == NULL)
		return MHD_NO;			/* out of memory in http_uri_logger */
	if (r->method == NULL)
	{
		r->conn = conn;
		return on_headers(r, url, method);
	}
	if (*upload_data_size > 0)
	{
		if (!r->responded)
			collect_body(r, upload_data, *upload_data_size);
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (r->responded)
		return MHD_YES;
	return dispatch(r);
}

void
http_request_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
					   enum MHD_RequestTerminationCode toe)
{
	Request    *r = *req_cls;
	long long	dur;

	(void) cls;
	(void) conn;
	if (r == NULL)
		return;
	*req_cls = NULL;
	dur = now_us() - r->start_us;
	if (r->method)
	{
		/* a response that never went out whole is logged as such */
		int			status = r->status ? r->status : 499;

		if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && r->status)
			status = r->status;
		metrics_request(router_index(r->route), status, dur);
		if (config.access_log)
			gw_log(status >= 500 ? LOG_WARN : LOG_INFO, r->request_id,
				   "msg=request method=%s path=%s route=%s status=%d bytes=%zu ms=%.3f ip=%s access=%s%s",
				   r->method, r->route ? r->route->pattern : "-",
				   r->route ? r->route->name : "-", status, r->resp_bytes, dur / 1000.0, r->ip,
				   r->access[0] ? r->access : "-",
				   toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" :
				   toe == MHD_REQUEST_TERMINATED_TIMEOUT_REACHED ? " end=timeout" :
				   toe == MHD_REQUEST_TERMINATED_CLIENT_ABORT ? " end=client_abort" :
				   toe == MHD_REQUEST_TERMINATED_DAEMON_SHUTDOWN ? " end=shutdown" : " end=error");
	}
	if (r->counted)
		atomic_fetch_sub(&active_requests, 1);
	free(r->body);
	free(r->path_copy);
	free(r->uri);
	free(r);
}

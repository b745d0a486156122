/*-------------------------------------------------------------------------
 *
 * fuzz_request.c
 *	  libFuzzer target over the gateway's request parsing: the checks a
 *	  request's path, query string, headers and JSON body go through before
 *	  anything reaches the database.
 *
 * The first input byte picks what is fuzzed with the rest:
 *	0  a JSON body: depth check, UTF-8 check, jansson with duplicates refused
 *	1  a path, matched against the route table for each method
 *	2  query parameters "k=v&k=v...", collected into the filter object
 *	3  an X-Request-Id and a SQLSTATE
 * Built by `make fuzz` (clang -fsanitize=fuzzer,address,undefined) and run
 * for a bounded time by tools/gateway_test.sh.
 *
 *-------------------------------------------------------------------------
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "handler.h"
#include "http.h"
#include "main.h"
#include "router.h"

/* main.c is not linked: its globals, with the defaults */
GatewayConfig config = {.max_body = 1048576, .max_url = 8192, .max_batch = 1000, .max_depth = 32};

void
gw_log(LogLevel level, const char *request_id, const char *fmt,...)
{
	(void) level;
	(void) request_id;
	(void) fmt;
}

long long
now_us(void)
{
	return 0;
}

static void
fuzz_body(const char *d, size_t n)
{
	json_error_t err;
	json_t	   *v;

	if (!http_json_depth_ok(d, n, config.max_depth))
		return;
	(void) http_valid_utf8(d, n);
	v = json_loadb(d, n, JSON_REJECT_DUPLICATES, &err);
	if (v)
	{
		char	   *text = json_dumps(v, JSON_COMPACT);

		/* what jansson accepted is UTF-8 and re-parses to the same value */
		if (text)
		{
			json_t	   *again = json_loads(text, JSON_REJECT_DUPLICATES, &err);

			if (again == NULL || !json_equal(v, again))
				abort();
			json_decref(again);
			free(text);
		}
		json_decref(v);
	}
}

static void
fuzz_path(const char *d, size_t n)
{
	static const char *const methods[] = {"GET", "POST", "PUT", "DELETE", "PATCH"};
	char	   *path = strndup(d, n);
	int			i;

	for (i = 0; i < 5; i++)
	{
		const Route *route;
		const char *params[ROUTE_PARAM_MAX] = {0};
		char	   *copy;
		char		allow[64];
		RouteResult rr = router_match(methods[i], path, &route, params, &copy, allow, sizeof(allow));

		if (rr == ROUTE_FOUND)
		{
			if (route == NULL || strcmp(route->method, methods[i]) != 0)
				abort();
			for (int k = 0; k < ROUTE_PARAM_MAX; k++)
				if (params[k] && (params[k] < copy || params[k] > copy + strlen(path)))
					abort();
		}
		else if (rr == ROUTE_NO_METHOD && allow[0] == '\0')
			abort();
		free(copy);
	}
	free(path);
}

static void
fuzz_query(const char *d, size_t n)
{
	static const char *const skip[] = {"limit", "order", "cursor", NULL};
	json_t	   *obj = json_object();
	const char *p = d;
	const char *end = d + n;

	while (p < end)
	{
		const char *amp = memchr(p, '&', end - p);
		const char *e = amp ? amp : end;
		const char *eq = memchr(p, '=', e - p);

		if (handler_query_add(obj, skip, p, (eq ? eq : e) - p, eq ? eq + 1 : NULL,
							  eq ? (size_t) (e - eq - 1) : 0) != NULL)
			break;
		p = e + 1;
	}
	{
		char	   *text = json_dumps(obj, JSON_COMPACT);

		free(text);
	}
	json_decref(obj);
}

static void
fuzz_ids(const char *d, size_t n)
{
	char	   *s = strndup(d, n);
	const char *slug;
	int			status;

	if (http_valid_request_id(s) && (strlen(s) == 0 || strlen(s) > REQUEST_ID_MAX))
		abort();
	status = http_status_for_sqlstate(s, &slug);
	if (status < 400 || status > 599 || slug == NULL)
		abort();
	free(s);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	switch (data[0] % 4)
	{
		case 0:
			fuzz_body((const char *) data + 1, size - 1);
			break;
		case 1:
			fuzz_path((const char *) data + 1, size - 1);
			break;
		case 2:
			fuzz_query((const char *) data + 1, size - 1);
			break;
		case 3:
			fuzz_ids((const char *) data + 1, size - 1);
			break;
	}
	return 0;
}

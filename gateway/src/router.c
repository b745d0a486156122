/*-------------------------------------------------------------------------
 *
 * router.c
 *	  The static route table of the gateway and path matching.
 *
 * A path matches a pattern when both have the same number of segments and
 * every segment is equal, or the pattern's is "{name}" (any non-empty
 * segment, handed to the handler, which validates it).  The first route in
 * table order whose pattern matches and whose method is the request's wins,
 * so fixed segments are listed before parameters ("/v1/events/export" before
 * "/v1/events/{id}").  A path that matches patterns of other methods only is
 * a 405 with Allow; a path that matches none is a 404.
 *
 * docs/openapi.yaml documents exactly these routes; `custos-gateway
 * --routes` prints them and the tests compare both.
 *
 *-------------------------------------------------------------------------
 */
#include <stdlib.h>
#include <string.h>

#include "chain.h"
#include "events.h"
#include "metrics.h"
#include "privacy.h"
#include "reports.h"
#include "retention.h"
#include "router.h"
#include "static.h"
#include "system.h"
#include "ticket.h"

const Route routes[] = {
	{"POST", "/v1/events", "events.append", events_append, ROUTE_AUTH | ROUTE_BODY},
	{"GET", "/v1/events", "events.list", events_list, ROUTE_AUTH},
	{"GET", "/v1/events/export", "events.export", events_export, ROUTE_AUTH | ROUTE_EXPENSIVE},
	{"GET", "/v1/events/{id}", "events.get", events_get, ROUTE_AUTH},
	{"POST", "/v1/exports", "exports.create", ticket_create, ROUTE_AUTH | ROUTE_BODY | ROUTE_EXPENSIVE},
	{"GET", "/v1/exports/{ticket}", "exports.download", ticket_download, 0},
	{"GET", "/v1/verify", "chain.verify", chain_verify, ROUTE_AUTH | ROUTE_EXPENSIVE},
	{"GET", "/v1/digest", "chain.digest", chain_digest, ROUTE_AUTH | ROUTE_EXPENSIVE},
	{"PUT", "/v1/tenants/{tenant}/privacy-mode", "privacy.mode", privacy_mode_put, ROUTE_AUTH | ROUTE_BODY},
	{"POST", "/v1/grants", "grants.create", grants_create, ROUTE_AUTH | ROUTE_BODY},
	{"DELETE", "/v1/grants/{id}", "grants.delete", grants_delete, ROUTE_AUTH},
	{"POST", "/v1/tokens", "tokens.create", tokens_create, ROUTE_AUTH | ROUTE_BODY},
	{"DELETE", "/v1/tokens/{id}", "tokens.delete", tokens_delete, ROUTE_AUTH},
	{"GET", "/v1/access-info", "access_info", access_info, ROUTE_AUTH},
	{"GET", "/v1/subjects/{subject}/report", "reports.subject", subject_report, ROUTE_AUTH | ROUTE_EXPENSIVE},
	{"GET", "/v1/support/report", "reports.support", support_report, ROUTE_AUTH | ROUTE_EXPENSIVE},
	{"GET", "/v1/tenants/{tenant}/retention", "retention.get", retention_get, ROUTE_AUTH},
	{"PUT", "/v1/tenants/{tenant}/retention", "retention.put", retention_put, ROUTE_AUTH | ROUTE_BODY},
	{"GET", "/v1/tenants/{tenant}/legal-holds", "holds.list", legal_holds_list, ROUTE_AUTH},
	{"POST", "/v1/tenants/{tenant}/legal-holds", "holds.create", legal_holds_create, ROUTE_AUTH | ROUTE_BODY},
	{"DELETE", "/v1/legal-holds/{id}", "holds.delete", legal_holds_delete, ROUTE_AUTH | ROUTE_BODY},
	{"POST", "/v1/tenants/{tenant}/erasures", "erasures.create", erasures_create, ROUTE_AUTH | ROUTE_BODY},
	{"GET", "/v1/openapi.yaml", "openapi", system_openapi, ROUTE_HEAD},
	{"GET", "/healthz", "healthz", system_healthz, ROUTE_HEAD},
	{"GET", "/readyz", "readyz", system_readyz, ROUTE_HEAD},
	{"GET", "/metrics", "metrics", metrics_handler, ROUTE_HEAD},
	{"GET", "/", "page", static_page, ROUTE_HEAD},
	{"GET", "/app.js", "page.js", static_page, ROUTE_HEAD},
	{"GET", "/app.css", "page.css", static_page, ROUTE_HEAD},
	{"GET", "/favicon.svg", "page.icon", static_page, ROUTE_HEAD},
};
const int	n_routes = sizeof(routes) / sizeof(routes[0]);

int
router_index(const Route *route)
{
	return route ? (int) (route - routes) : -1;
}

/*
 * Does path match pattern?  If params is not NULL, the {x} segments of the
 * NUL-separated copy are stored there.
 */
static bool
path_matches(const char *pattern, const char *path, char *copy, const char **params)
{
	const char *p = pattern;
	const char *s = path;
	int			nparams = 0;

	for (;;)
	{
		const char *pe;
		const char *se;

		if (*p != '/' || *s != '/')
			return *p == '\0' && *s == '\0';
		p++;
		s++;
		pe = strchrnul(p, '/');
		se = strchrnul(s, '/');
		if (p[0] == '{')
		{
			if (se == s || nparams >= ROUTE_PARAM_MAX)
				return false;
			if (params)
			{
				params[nparams] = copy + (s - path);
				copy[se - path] = '\0';
			}
			nparams++;
		}
		else if (pe - p != se - s || memcmp(p, s, pe - p) != 0)
			return false;
		p = pe;
		s = se;
	}
}

RouteResult
router_match(const char *method, const char *path, const Route **route,
			 const char **params, char **path_copy, char *allow, size_t allow_size)
{
	bool		path_known = false;
	int			i;

	*route = NULL;
	*path_copy = NULL;
	allow[0] = '\0';
	for (i = 0; i < n_routes; i++)
	{
		if (!path_matches(routes[i].pattern, path, NULL, NULL))
			continue;
		path_known = true;
		if (strcmp(routes[i].method, method) == 0)
		{
			*path_copy = strdup(path);
			if (*path_copy == NULL)
				return ROUTE_NO_PATH;
			path_matches(routes[i].pattern, path, *path_copy, params);
			*route = &routes[i];
			return ROUTE_FOUND;
		}
		/* collect the methods of this path for Allow, each once */
		if (strstr(allow, routes[i].method) == NULL &&
			strlen(allow) + strlen(routes[i].method) + 3 < allow_size)
		{
			if (allow[0])
				strcat(allow, ", ");
			strcat(allow, routes[i].method);
		}
	}
	return path_known ? ROUTE_NO_METHOD : ROUTE_NO_PATH;
}

/*-------------------------------------------------------------------------
 *
 * router.h
 *	  The static route table: method, path pattern, handler.
 *
 *-------------------------------------------------------------------------
 */
#ifndef GATEWAY_ROUTER_H
#define GATEWAY_ROUTER_H

#include "http.h"

typedef enum MHD_Result (*Handler) (Request *r);

/* route flags */
#define ROUTE_AUTH		0x01	/* needs a bearer token */
#define ROUTE_BODY		0x02	/* takes a JSON body */
#define ROUTE_EXPENSIVE 0x04	/* the stricter rate limit (export, verify) */
#define ROUTE_HEAD		0x08	/* HEAD is answered: the GET has no side effect */

typedef struct Route
{
	const char *method;
	const char *pattern;		/* segments; "{name}" matches one segment */
	const char *name;			/* for metrics and the access log */
	Handler		handler;
	unsigned	flags;
} Route;

typedef enum RouteResult
{
	ROUTE_FOUND,
	ROUTE_NO_PATH,				/* 404 */
	ROUTE_NO_METHOD				/* 405: allow holds the methods */
} RouteResult;

/*
 * Finds the route of method and path.  On ROUTE_FOUND, *route is set and
 * params[] point into path_copy (a copy of path the caller frees).  On
 * ROUTE_NO_METHOD, allow (of allow_size bytes) lists the path's methods.
 */
extern RouteResult router_match(const char *method, const char *path, const Route **route,
								const char **params, char **path_copy,
								char *allow, size_t allow_size);

/* the table, for metrics and --routes */
extern const Route routes[];
extern const int n_routes;

/* the index of a route in routes[], for per-route metrics */
extern int	router_index(const Route *route);

#endif							/* GATEWAY_ROUTER_H */

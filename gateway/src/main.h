/*-------------------------------------------------------------------------
 *
 * main.h
 *	  The gateway's configuration and its log, shared by every file.
 *
 * The configuration is filled once by main() before any thread starts and is
 * read-only afterwards, so it needs no lock.  Log lines are written with one
 * write(2) each, so lines of concurrent threads never interleave.
 *
 *-------------------------------------------------------------------------
 */
#ifndef GATEWAY_MAIN_H
#define GATEWAY_MAIN_H

#include <stdbool.h>
#include <stddef.h>

typedef struct GatewayConfig
{
	char	   *listen;			/* host:port */
	char	   *db;				/* libpq conninfo */
	int			pool;			/* database connections */
	int			pool_wait_ms;	/* wait for a free connection, then 503 */
	int			threads;		/* libmicrohttpd worker threads */
	int			max_connections;	/* beyond: 503 */
	int			max_connections_per_ip;
	int			timeout;		/* seconds of client inactivity */
	long		max_body;		/* bytes of a request body */
	int			max_url;		/* bytes of the request target */
	int			max_batch;		/* events in one POST */
	int			max_depth;		/* nesting of request JSON */
	double		rate;			/* requests/s per token; 0: no limit */
	int			burst;
	double		expensive_rate; /* export, verify, digest */
	int			expensive_burst;
	int			retries;		/* of 40001/40P01 */
	int			statement_timeout_ms;
	int			export_timeout_ms;	/* 0: none */
	int			shutdown_timeout;	/* seconds to finish in-flight requests */
	bool		access_log;
	char	   *openapi_file;	/* NULL: the copy built in */
} GatewayConfig;

extern GatewayConfig config;

typedef enum LogLevel
{
	LOG_DEBUG,
	LOG_INFO,
	LOG_WARN,
	LOG_ERROR
} LogLevel;

/*
 * One logfmt line: ts=... level=... req=<request id or -> msg="..." and the
 * caller's key=value pairs (fmt).  Never pass secrets (tokens) or personal
 * data (query strings, bodies).
 */
extern void gw_log(LogLevel level, const char *request_id, const char *fmt,...)
			__attribute__((format(printf, 3, 4)));

/* Monotonic time in microseconds. */
extern long long now_us(void);

#endif							/* GATEWAY_MAIN_H */

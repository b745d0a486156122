/*-------------------------------------------------------------------------
 *
 * main.c
 *	  custos-gateway: configuration, the log, signals, and the
 *	  libmicrohttpd daemon's lifetime.
 *
 * Configuration comes from one table (name, flag, environment variable,
 * default, meaning) that --help prints; flags override the environment,
 * which overrides the defaults.  It is complete before any thread starts.
 *
 * Signals: every thread blocks SIGTERM, SIGINT, SIGHUP and SIGPIPE (the mask
 * is set before libmicrohttpd creates its threads, which inherit it); the
 * main thread takes them with sigwait(), so nothing runs in a signal
 * handler.  SIGTERM or SIGINT: stop accepting connections, let the requests
 * in flight finish (at most --shutdown-timeout seconds), then stop.
 *
 *-------------------------------------------------------------------------
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <microhttpd.h>

#include "db.h"
#include "http.h"
#include "main.h"
#include "metrics.h"
#include "router.h"
#include "system.h"

GatewayConfig config;

typedef enum OptType
{
	OPT_STRING,
	OPT_INT,
	OPT_LONG,
	OPT_DOUBLE,
	OPT_BOOL
} OptType;

typedef struct Option
{
	const char *name;			/* --name */
	const char *env;
	const char *def;			/* as text; NULL: unset */
	OptType		type;
	void	   *var;
	long		min;			/* bounds of numbers */
	long		max;
	const char *meaning;
} Option;

/* The configuration table: --help prints it. */
static const Option options[] = {
	{"listen", "CUSTOS_GATEWAY_LISTEN", "127.0.0.1:8080", OPT_STRING, &config.listen, 0, 0,
	"address:port to listen on (loopback by default; [::1]:8080 for IPv6)"},
	{"db", "CUSTOS_GATEWAY_DB", "", OPT_STRING, &config.db, 0, 0,
	"libpq conninfo of the database (empty: libpq's PG* environment)"},
	{"pool", "CUSTOS_GATEWAY_POOL", "20", OPT_INT, &config.pool, 1, 1000,
	"database connections in the pool (at least --threads; an export holds one while it streams)"},
	{"pool-wait-ms", "CUSTOS_GATEWAY_POOL_WAIT_MS", "500", OPT_INT, &config.pool_wait_ms, 0, 60000,
	"how long a request waits for a free connection before 503"},
	{"threads", "CUSTOS_GATEWAY_THREADS", "16", OPT_INT, &config.threads, 1, 1024,
	"HTTP worker threads (libmicrohttpd thread pool, epoll); each waits on the database, so this is the database concurrency"},
	{"max-connections", "CUSTOS_GATEWAY_MAX_CONNECTIONS", "256", OPT_INT, &config.max_connections, 1, 100000,
	"open client connections; requests beyond get 503 (and connections beyond 1.25x are refused)"},
	{"max-connections-per-ip", "CUSTOS_GATEWAY_MAX_CONNECTIONS_PER_IP", "0", OPT_INT, &config.max_connections_per_ip, 0, 100000,
	"open connections from one IP address (0: as --max-connections)"},
	{"timeout", "CUSTOS_GATEWAY_TIMEOUT", "30", OPT_INT, &config.timeout, 1, 3600,
	"seconds a client connection may stay inactive (slow or idle clients)"},
	{"max-body", "CUSTOS_GATEWAY_MAX_BODY", "1048576", OPT_LONG, &config.max_body, 1024, 1L << 30,
	"bytes of a request body (413 beyond)"},
	{"max-url", "CUSTOS_GATEWAY_MAX_URL", "8192", OPT_INT, &config.max_url, 256, 30000,
	"bytes of the request target, query string included (414 beyond)"},
	{"max-batch", "CUSTOS_GATEWAY_MAX_BATCH", "1000", OPT_INT, &config.max_batch, 1, 100000,
	"events in one POST /v1/events (the extension's custos.max_batch_events applies too)"},
	{"max-depth", "CUSTOS_GATEWAY_MAX_DEPTH", "32", OPT_INT, &config.max_depth, 2, 1000,
	"nesting depth of request JSON"},
	{"rate", "CUSTOS_GATEWAY_RATE", "100", OPT_DOUBLE, &config.rate, 0, 1000000,
	"requests per second per token (0: no limit)"},
	{"burst", "CUSTOS_GATEWAY_BURST", "200", OPT_INT, &config.burst, 1, 1000000,
	"requests a token may make at once"},
	{"expensive-rate", "CUSTOS_GATEWAY_EXPENSIVE_RATE", "0.5", OPT_DOUBLE, &config.expensive_rate, 0, 1000000,
	"export, verify and digest requests per second per token (0: no limit)"},
	{"expensive-burst", "CUSTOS_GATEWAY_EXPENSIVE_BURST", "5", OPT_INT, &config.expensive_burst, 1, 1000000,
	"export, verify and digest requests a token may make at once"},
	{"retries", "CUSTOS_GATEWAY_RETRIES", "3", OPT_INT, &config.retries, 0, 100,
	"retries of a transaction that failed with 40001 or 40P01"},
	{"statement-timeout-ms", "CUSTOS_GATEWAY_STATEMENT_TIMEOUT_MS", "30000", OPT_INT, &config.statement_timeout_ms, 0, INT_MAX,
	"statement_timeout of the gateway's sessions (0: none)"},
	{"export-timeout-ms", "CUSTOS_GATEWAY_EXPORT_TIMEOUT_MS", "0", OPT_INT, &config.export_timeout_ms, 0, INT_MAX,
	"statement_timeout of an export (0: none; a client that goes away cancels it)"},
	{"shutdown-timeout", "CUSTOS_GATEWAY_SHUTDOWN_TIMEOUT", "10", OPT_INT, &config.shutdown_timeout, 0, 3600,
	"seconds to let requests in flight finish on SIGTERM"},
	{"access-log", "CUSTOS_GATEWAY_ACCESS_LOG", "on", OPT_BOOL, &config.access_log, 0, 0,
	"one log line per request (on|off)"},
	{"openapi", "CUSTOS_GATEWAY_OPENAPI", NULL, OPT_STRING, &config.openapi_file, 0, 0,
	"serve this file at /v1/openapi.yaml instead of the copy built in"},
};
#define N_OPTIONS ((int) (sizeof(options) / sizeof(options[0])))

long long
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void
gw_log(LogLevel level, const char *request_id, const char *fmt,...)
{
	static const char *const names[] = {"debug", "info", "warn", "error"};
	char		line[2048];
	struct timespec ts;
	struct tm	tm;
	int			n;
	va_list		ap;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = snprintf(line, sizeof(line), "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s req=%s ",
				 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
				 ts.tv_nsec / 1000000, names[level], request_id ? request_id : "-");
	va_start(ap, fmt);
	n += vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
	va_end(ap);
	if (n > (int) sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	/* one write: lines of concurrent threads do not interleave */
	if (write(STDERR_FILENO, line, n) < 0)
	{
		/* nowhere left to report it */
	}
}

static bool
set_option(const Option *o, const char *value, const char *source)
{
	char	   *end;

	errno = 0;
	switch (o->type)
	{
		case OPT_STRING:
			free(*(char **) o->var);
			*(char **) o->var = value ? strdup(value) : NULL;
			return true;
		case OPT_INT:
		case OPT_LONG:
			{
				long		v = strtol(value, &end, 10);

				if (errno || end == value || *end || v < o->min || v > o->max)
				{
					fprintf(stderr, "custos-gateway: %s \"%s\" (from %s) must be an integer from %ld to %ld\n",
							o->name, value, source, o->min, o->max);
					return false;
				}
				if (o->type == OPT_INT)
					*(int *) o->var = (int) v;
				else
					*(long *) o->var = v;
				return true;
			}
		case OPT_DOUBLE:
			{
				double		v = strtod(value, &end);

				if (errno || end == value || *end || v < o->min || v > o->max)
				{
					fprintf(stderr, "custos-gateway: %s \"%s\" (from %s) must be a number from %ld to %ld\n",
							o->name, value, source, o->min, o->max);
					return false;
				}
				*(double *) o->var = v;
				return true;
			}
		case OPT_BOOL:
			if (strcmp(value, "on") == 0 || strcmp(value, "true") == 0 || strcmp(value, "1") == 0)
				*(bool *) o->var = true;
			else if (strcmp(value, "off") == 0 || strcmp(value, "false") == 0 || strcmp(value, "0") == 0)
				*(bool *) o->var = false;
			else
			{
				fprintf(stderr, "custos-gateway: %s \"%s\" (from %s) must be on or off\n",
						o->name, value, source);
				return false;
			}
			return true;
	}
	return false;
}

static void
usage(FILE *out)
{
	int			i;

	fprintf(out,
			"custos-gateway: the HTTP API of custos, a tamper-evident audit log in PostgreSQL.\n\n"
			"Usage: custos-gateway [--name value ...]\n"
			"       custos-gateway --help | --routes\n\n"
			"Flags override environment variables, which override defaults.\n\n");
	fprintf(out, "%-24s %-40s %-16s %s\n", "flag", "environment", "default", "meaning");
	for (i = 0; i < N_OPTIONS; i++)
	{
		char		flag[64];

		snprintf(flag, sizeof(flag), "--%s", options[i].name);
		fprintf(out, "%-24s %-40s %-16s %s\n", flag, options[i].env,
				options[i].def ? (options[i].def[0] ? options[i].def : "''") : "(none)",
				options[i].meaning);
	}
}

/* --routes: the route table, "METHOD PATH" per line (tests compare it with docs/openapi.yaml) */
static void
print_routes(void)
{
	int			i;

	for (i = 0; i < n_routes; i++)
		printf("%s %s\n", routes[i].method, routes[i].pattern);
}

static bool
parse_config(int argc, char **argv)
{
	struct option longopts[N_OPTIONS + 3];
	int			i;
	int			c;

	for (i = 0; i < N_OPTIONS; i++)
	{
		const char *env = getenv(options[i].env);

		if (options[i].def && !set_option(&options[i], options[i].def, "default"))
			return false;
		if (env && !set_option(&options[i], env, options[i].env))
			return false;
		longopts[i].name = options[i].name;
		longopts[i].has_arg = required_argument;
		longopts[i].flag = NULL;
		longopts[i].val = 1000 + i;
	}
	longopts[N_OPTIONS] = (struct option) {"help", no_argument, NULL, 'h'};
	longopts[N_OPTIONS + 1] = (struct option) {"routes", no_argument, NULL, 'r'};
	longopts[N_OPTIONS + 2] = (struct option) {NULL, 0, NULL, 0};

	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1)
	{
		if (c == 'h')
		{
			usage(stdout);
			exit(0);
		}
		if (c == 'r')
		{
			print_routes();
			exit(0);
		}
		if (c < 1000 || c >= 1000 + N_OPTIONS)
		{
			usage(stderr);
			return false;
		}
		if (!set_option(&options[c - 1000], optarg, "command line"))
			return false;
	}
	if (optind < argc)
	{
		fprintf(stderr, "custos-gateway: unexpected argument \"%s\"\n", argv[optind]);
		return false;
	}
	if (config.max_connections_per_ip == 0)
		config.max_connections_per_ip = config.max_connections + config.max_connections / 4 + 8;
	return true;
}

/* "host:port" or "[v6]:port" into a socket address */
static bool
parse_listen(const char *listen, struct sockaddr_storage *addr)
{
	char		host[256];
	const char *colon = strrchr(listen, ':');
	struct addrinfo hints = {0};
	struct addrinfo *res;
	size_t		hlen;
	int			rc;

	if (colon == NULL || colon == listen || colon[1] == '\0')
		return false;
	hlen = colon - listen;
	if (listen[0] == '[' && colon[-1] == ']')
	{
		listen++;
		hlen -= 2;
	}
	if (hlen >= sizeof(host))
		return false;
	memcpy(host, listen, hlen);
	host[hlen] = '\0';
	hints.ai_flags = AI_NUMERICSERV | AI_PASSIVE;
	hints.ai_socktype = SOCK_STREAM;
	rc = getaddrinfo(host, colon + 1, &hints, &res);
	if (rc != 0)
	{
		fprintf(stderr, "custos-gateway: cannot listen on \"%s\": %s\n", listen, gai_strerror(rc));
		return false;
	}
	memcpy(addr, res->ai_addr, res->ai_addrlen);
	freeaddrinfo(res);
	return true;
}

static void
mhd_logger(void *cls, const char *fmt, va_list ap)
{
	char		msg[512];
	size_t		n;

	(void) cls;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	n = strlen(msg);
	while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
		msg[--n] = '\0';
	for (size_t i = 0; i < n; i++)
		if (msg[i] == '"')
			msg[i] = '\'';
	gw_log(LOG_WARN, NULL, "msg=\"libmicrohttpd: %s\"", msg);
}

int
main(int argc, char **argv)
{
	struct MHD_Daemon *daemon;
	struct sockaddr_storage addr = {0};
	sigset_t	sigs;
	int			sig;
	unsigned int flags;
	unsigned int hard_limit;

	if (!parse_config(argc, argv))
		return 2;
	if (!parse_listen(config.listen, &addr))
	{
		fprintf(stderr, "custos-gateway: --listen must be host:port, not \"%s\"\n", config.listen);
		return 2;
	}
	if (!system_load_openapi())
		return 2;
	if (!metrics_init())
	{
		fprintf(stderr, "custos-gateway: out of memory\n");
		return 1;
	}

	/* before any thread: signals are taken by sigwait() below, in this thread */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	sigaddset(&sigs, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);

	/* jansson's hash seed, once, before threads use it */
	json_object_seed(0);

	if (config.pool < config.threads)
		gw_log(LOG_WARN, NULL, "msg=\"--pool is smaller than --threads: requests will wait for connections\" pool=%d threads=%d",
			   config.pool, config.threads);
	if (!db_init())
		return 1;

	/*
	 * Thread pool with epoll.  Connections beyond max_connections get a 503
	 * from http_access_handler; libmicrohttpd itself refuses connections
	 * beyond the hard limit, so that even a flood cannot queue without bound.
	 */
	hard_limit = config.max_connections + config.max_connections / 4 + 8;
	flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ITC | MHD_USE_ERROR_LOG;
	if (addr.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	daemon = MHD_start_daemon(flags, 0, NULL, NULL,
							  http_access_handler, NULL,
							  MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, NULL,
							  MHD_OPTION_SOCK_ADDR, (struct sockaddr *) &addr,
							  MHD_OPTION_THREAD_POOL_SIZE, (unsigned int) config.threads,
							  MHD_OPTION_CONNECTION_LIMIT, hard_limit,
							  MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned int) config.max_connections_per_ip,
							  MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int) config.timeout,
							  /* headers and buffers of one connection */
							  MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t) (64 * 1024),
							  MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned int) 1024,
							  MHD_OPTION_URI_LOG_CALLBACK, http_uri_logger, NULL,
							  MHD_OPTION_NOTIFY_COMPLETED, http_request_completed, NULL,
							  MHD_OPTION_NOTIFY_CONNECTION, http_connection_notify, NULL,
							  MHD_OPTION_END);
	if (daemon == NULL)
	{
		gw_log(LOG_ERROR, NULL, "msg=\"cannot start the HTTP server\" listen=%s", config.listen);
		db_shutdown();
		return 1;
	}
	gw_log(LOG_INFO, NULL, "msg=\"listening\" listen=%s threads=%d pool=%d max_connections=%d",
		   config.listen, config.threads, config.pool, config.max_connections);

	for (;;)
	{
		if (sigwait(&sigs, &sig) != 0)
			continue;
		if (sig == SIGTERM || sig == SIGINT)
			break;
		/* SIGHUP, SIGPIPE: nothing to do */
	}

	/* graceful shutdown: no new connections, let requests in flight finish */
	gw_log(LOG_INFO, NULL, "msg=\"shutting down\" signal=%d in_flight=%d", sig, http_active_requests());
	{
		MHD_socket	lsock = MHD_quiesce_daemon(daemon);
		long long	deadline = now_us() + (long long) config.shutdown_timeout * 1000000;

		if (lsock != MHD_INVALID_SOCKET)
			close(lsock);
		while (http_active_requests() > 0 && now_us() < deadline)
			usleep(10000);
		if (http_active_requests() > 0)
			gw_log(LOG_WARN, NULL, "msg=\"requests still in flight at the shutdown timeout\" in_flight=%d",
				   http_active_requests());
	}
	MHD_stop_daemon(daemon);
	db_shutdown();
	gw_log(LOG_INFO, NULL, "msg=\"stopped\"");
	return 0;
}

/*-------------------------------------------------------------------------
 *
 * metrics.c
 *	  Counters of the gateway in Prometheus' text format (GET /metrics).
 *
 * Every counter is a C11 atomic, updated without a lock by the thread that
 * finishes a request; /metrics reads them one by one, so a scrape may see a
 * request in one counter and not yet in another, as Prometheus allows.
 *
 *	custos_gateway_requests_total{route,status}
 *	custos_gateway_request_duration_seconds{route} (histogram)
 *	custos_gateway_db_errors_total{class}        SQLSTATE class of database errors
 *	custos_gateway_rate_limited_total
 *	custos_gateway_pool_{size,in_use,connected}, _pool_exhausted_total
 *	custos_gateway_db_connects_total{result}
 *	custos_gateway_open_connections, _requests_in_flight
 *	custos_gateway_resident_memory_bytes
 *
 *-------------------------------------------------------------------------
 */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "db.h"
#include "main.h"
#include "metrics.h"
#include "router.h"

static const int statuses[] = {200, 201, 204, 400, 401, 403, 404, 405, 406, 409, 413, 414, 415,
422, 429, 499, 500, 503, 0};
#define N_STATUSES ((int) (sizeof(statuses) / sizeof(statuses[0])))	/* 0: other */

static const double buckets[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
#define N_BUCKETS ((int) (sizeof(buckets) / sizeof(buckets[0])))

static const char *const classes[] = {"08", "22", "23", "25", "28", "40", "42", "53", "54", "55", "57",
"P0", "XX", NULL};
#define N_CLASSES ((int) (sizeof(classes) / sizeof(classes[0])))	/* NULL: other */

/*
 * Per route, indexed by route index + 1 (0 is "no route": 404 and other
 * early answers).  Sized from the route table by metrics_init(), so that a
 * new route can never fall outside them.
 */
static atomic_ullong (*requests)[N_STATUSES];
static atomic_ullong (*hist)[N_BUCKETS + 1];
static atomic_ullong *hist_sum_us;
static atomic_ullong db_errors[N_CLASSES];
static atomic_ullong rate_limited;
static atomic_ullong pool_exhausted;
static atomic_ullong connects_ok;
static atomic_ullong connects_failed;

bool
metrics_init(void)
{
	requests = calloc(n_routes + 1, sizeof(*requests));
	hist = calloc(n_routes + 1, sizeof(*hist));
	hist_sum_us = calloc(n_routes + 1, sizeof(*hist_sum_us));
	return requests != NULL && hist != NULL && hist_sum_us != NULL;
}

void
metrics_request(int route, int status, long long duration_us)
{
	int			ri = route + 1;
	int			si;
	int			b;
	double		s = duration_us / 1e6;

	if (ri < 0 || ri > n_routes)
		ri = 0;
	for (si = 0; si < N_STATUSES - 1 && statuses[si] != status; si++)
		;
	atomic_fetch_add(&requests[ri][si], 1);
	for (b = 0; b < N_BUCKETS && s > buckets[b]; b++)
		;
	atomic_fetch_add(&hist[ri][b], 1);
	atomic_fetch_add(&hist_sum_us[ri], duration_us > 0 ? duration_us : 0);
}

void
metrics_db_error(const char *sqlstate)
{
	int			i;

	for (i = 0; i < N_CLASSES - 1; i++)
		if (sqlstate && strncmp(sqlstate, classes[i], 2) == 0)
			break;
	atomic_fetch_add(&db_errors[i], 1);
}

void
metrics_rate_limited(void)
{
	atomic_fetch_add(&rate_limited, 1);
}

void
metrics_pool_exhausted(void)
{
	atomic_fetch_add(&pool_exhausted, 1);
}

void
metrics_db_connect(bool ok)
{
	atomic_fetch_add(ok ? &connects_ok : &connects_failed, 1);
}

typedef struct Buf
{
	char	   *data;
	size_t		len;
	size_t		cap;
} Buf;

static void
put(Buf *b, const char *fmt,...) __attribute__((format(printf, 2, 3)));

static void
put(Buf *b, const char *fmt,...)
{
	va_list		ap;
	int			n;

	for (;;)
	{
		va_start(ap, fmt);
		n = vsnprintf(b->data ? b->data + b->len : NULL, b->data ? b->cap - b->len : 0, fmt, ap);
		va_end(ap);
		if (n < 0)
			return;
		if (b->data && b->len + n < b->cap)
		{
			b->len += n;
			return;
		}
		{
			size_t		cap = (b->cap ? b->cap * 2 : 16384) + n;
			char	   *d = realloc(b->data, cap);

			if (d == NULL)
				return;
			b->data = d;
			b->cap = cap;
		}
	}
}

static long
resident_bytes(void)
{
	FILE	   *f = fopen("/proc/self/statm", "r");
	long		size,
				rss = 0;

	if (f)
	{
		if (fscanf(f, "%ld %ld", &size, &rss) != 2)
			rss = 0;
		fclose(f);
	}
	return rss * sysconf(_SC_PAGESIZE);
}

/* GET /metrics */
enum MHD_Result
metrics_handler(Request *r)
{
	Buf			b = {0};
	DbStats		st;
	int			ri,
				si,
				i;
	enum MHD_Result res;

	put(&b, "# HELP custos_gateway_requests_total HTTP requests by route and status.\n"
		"# TYPE custos_gateway_requests_total counter\n");
	for (ri = 0; ri <= n_routes; ri++)
		for (si = 0; si < N_STATUSES; si++)
		{
			unsigned long long v = atomic_load(&requests[ri][si]);
			char		status[8];

			if (v == 0)
				continue;
			if (statuses[si])
				snprintf(status, sizeof(status), "%d", statuses[si]);
			else
				strcpy(status, "other");
			put(&b, "custos_gateway_requests_total{route=\"%s\",status=\"%s\"} %llu\n",
				ri ? routes[ri - 1].name : "none", status, v);
		}
	put(&b, "# HELP custos_gateway_request_duration_seconds Time from request line to response end.\n"
		"# TYPE custos_gateway_request_duration_seconds histogram\n");
	for (ri = 0; ri <= n_routes; ri++)
	{
		unsigned long long cum = 0;
		const char *name = ri ? routes[ri - 1].name : "none";

		for (i = 0; i <= N_BUCKETS; i++)
			cum += atomic_load(&hist[ri][i]);
		if (cum == 0)
			continue;
		cum = 0;
		for (i = 0; i < N_BUCKETS; i++)
		{
			cum += atomic_load(&hist[ri][i]);
			put(&b, "custos_gateway_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} %llu\n",
				name, buckets[i], cum);
		}
		cum += atomic_load(&hist[ri][N_BUCKETS]);
		put(&b, "custos_gateway_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %llu\n", name, cum);
		put(&b, "custos_gateway_request_duration_seconds_sum{route=\"%s\"} %.6f\n", name,
			atomic_load(&hist_sum_us[ri]) / 1e6);
		put(&b, "custos_gateway_request_duration_seconds_count{route=\"%s\"} %llu\n", name, cum);
	}
	put(&b, "# HELP custos_gateway_db_errors_total Database errors by SQLSTATE class (08: connection lost).\n"
		"# TYPE custos_gateway_db_errors_total counter\n");
	for (i = 0; i < N_CLASSES; i++)
		put(&b, "custos_gateway_db_errors_total{class=\"%s\"} %llu\n", classes[i] ? classes[i] : "other",
			atomic_load(&db_errors[i]));
	db_stats(&st);
	put(&b, "# HELP custos_gateway_rate_limited_total Requests answered 429.\n"
		"# TYPE custos_gateway_rate_limited_total counter\n"
		"custos_gateway_rate_limited_total %llu\n"
		"# HELP custos_gateway_pool_size Database connections the pool may hold.\n"
		"# TYPE custos_gateway_pool_size gauge\n"
		"custos_gateway_pool_size %d\n"
		"# HELP custos_gateway_pool_in_use Database connections serving a request.\n"
		"# TYPE custos_gateway_pool_in_use gauge\n"
		"custos_gateway_pool_in_use %d\n"
		"# HELP custos_gateway_pool_connected Database connections open.\n"
		"# TYPE custos_gateway_pool_connected gauge\n"
		"custos_gateway_pool_connected %d\n"
		"# HELP custos_gateway_pool_exhausted_total Requests answered 503 because every connection was busy.\n"
		"# TYPE custos_gateway_pool_exhausted_total counter\n"
		"custos_gateway_pool_exhausted_total %llu\n"
		"# HELP custos_gateway_db_connects_total Connection attempts to the database.\n"
		"# TYPE custos_gateway_db_connects_total counter\n"
		"custos_gateway_db_connects_total{result=\"ok\"} %llu\n"
		"custos_gateway_db_connects_total{result=\"failed\"} %llu\n"
		"# HELP custos_gateway_open_connections Open client connections.\n"
		"# TYPE custos_gateway_open_connections gauge\n"
		"custos_gateway_open_connections %d\n"
		"# HELP custos_gateway_requests_in_flight Requests being served.\n"
		"# TYPE custos_gateway_requests_in_flight gauge\n"
		"custos_gateway_requests_in_flight %d\n"
		"# HELP custos_gateway_resident_memory_bytes Resident memory of the gateway.\n"
		"# TYPE custos_gateway_resident_memory_bytes gauge\n"
		"custos_gateway_resident_memory_bytes %ld\n",
		atomic_load(&rate_limited), st.size, st.in_use, st.connected, atomic_load(&pool_exhausted),
		atomic_load(&connects_ok), atomic_load(&connects_failed), http_open_connections(),
		http_active_requests(), resident_bytes());
	if (b.data == NULL)
		return http_problem(r, 500, "internal", "out of memory", NULL, NULL);
	res = http_respond_owned(r, 200, "text/plain; version=0.0.4; charset=utf-8", b.data, b.len,
							 free, b.data, NULL);
	return res;
}

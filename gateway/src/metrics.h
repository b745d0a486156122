/*-------------------------------------------------------------------------
 *
 * metrics.h
 *	  Prometheus counters of the gateway: requests by route and status, a
 *	  latency histogram per route, pool usage, database errors.
 *
 *-------------------------------------------------------------------------
 */
#ifndef GATEWAY_METRICS_H
#define GATEWAY_METRICS_H

#include "http.h"

/* route: index in routes[], or -1 for requests that matched none */
extern bool metrics_init(void);
extern void metrics_request(int route, int status, long long duration_us);
extern void metrics_db_error(const char *sqlstate);
extern void metrics_rate_limited(void);
extern void metrics_pool_exhausted(void);
extern void metrics_db_connect(bool ok);

/* GET /metrics */
extern enum MHD_Result metrics_handler(Request *r);

#endif							/* GATEWAY_METRICS_H */

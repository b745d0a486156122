/*-------------------------------------------------------------------------
 *
 * ratelimit.h
 *	  Per-token token buckets: a general one and a stricter one for the
 *	  expensive endpoints (export, verify, digest).
 *
 *-------------------------------------------------------------------------
 */
#ifndef GATEWAY_RATELIMIT_H
#define GATEWAY_RATELIMIT_H

#include <stdbool.h>

/*
 * Takes one request from the token's bucket of the class.  Returns true if
 * allowed; otherwise false and *retry_after (whole seconds, at least 1).
 */
extern bool ratelimit_take(const char *token, bool expensive, int *retry_after);

#endif							/* GATEWAY_RATELIMIT_H */

/*-------------------------------------------------------------------------
 *
 * ratelimit.c
 *	  Token buckets per bearer token, before any database work: a token that
 *	  hammers the API gets 429 with Retry-After and costs the database
 *	  nothing.  Two classes: every request, and the expensive ones (export,
 *	  verify, digest) with their own, stricter bucket.
 *
 * Buckets live in a fixed table (memory does not grow with the number of
 * tokens seen), keyed by a 64-bit hash of the token and the class; when the
 * probed slots are all taken, the one used longest ago is given to the new
 * key, so an unseen token starts with a full bucket.  A hash collision makes
 * two tokens share a bucket: harmless.  One mutex per stripe of slots.
 *
 * Invalid tokens are limited the same way; a client inventing a new token
 * per request is not (the database rejects those cheaply: see
 * docs/http-api.md).
 *
 *-------------------------------------------------------------------------
 */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "main.h"
#include "ratelimit.h"

#define SLOTS 4096				/* power of two */
#define PROBES 8
#define STRIPES 64

typedef struct Bucket
{
	uint64_t	key;			/* 0: free */
	double		tokens;
	long long	last_us;
} Bucket;

static Bucket table[SLOTS];
static pthread_mutex_t stripes[STRIPES] = {[0 ... STRIPES - 1] = PTHREAD_MUTEX_INITIALIZER};

/* FNV-1a, 64 bit */
static uint64_t
hash_token(const char *token, bool expensive)
{
	uint64_t	h = 1469598103934665603ULL;

	for (const unsigned char *p = (const unsigned char *) token; *p; p++)
	{
		h ^= *p;
		h *= 1099511628211ULL;
	}
	h ^= expensive ? 0x9e3779b97f4a7c15ULL : 0;
	return h ? h : 1;
}

bool
ratelimit_take(const char *token, bool expensive, int *retry_after)
{
	double		rate = expensive ? config.expensive_rate : config.rate;
	double		burst = expensive ? config.expensive_burst : config.burst;
	uint64_t	key;
	unsigned	start;
	pthread_mutex_t *lock;
	Bucket	   *b = NULL;
	Bucket	   *oldest = NULL;
	long long	now = now_us();
	bool		ok;
	int			i;

	if (rate <= 0)
		return true;
	key = hash_token(token, expensive);
	/* the probed slots lie in one stripe: start at a multiple of PROBES */
	start = (unsigned) (key % SLOTS) & ~(unsigned) (PROBES - 1);
	lock = &stripes[(start / PROBES) % STRIPES];
	pthread_mutex_lock(lock);
	for (i = 0; i < PROBES; i++)
	{
		Bucket	   *s = &table[start + i];

		if (s->key == key)
		{
			b = s;
			break;
		}
		/* a free slot, else the one used longest ago */
		if (oldest == NULL || (oldest->key != 0 && (s->key == 0 || s->last_us < oldest->last_us)))
			oldest = s;
	}
	if (b == NULL)
	{
		b = oldest;
		b->key = key;
		b->tokens = burst;
		b->last_us = now;
	}
	b->tokens += (now - b->last_us) / 1e6 * rate;
	if (b->tokens > burst)
		b->tokens = burst;
	b->last_us = now;
	ok = b->tokens >= 1.0;
	if (ok)
		b->tokens -= 1.0;
	else
		*retry_after = (int) ceil((1.0 - b->tokens) / rate);
	pthread_mutex_unlock(lock);
	if (!ok && *retry_after < 1)
		*retry_after = 1;
	return ok;
}

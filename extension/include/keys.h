/*-------------------------------------------------------------------------
 *
 * keys.h
 *	  Data keys for personal fields: lookup, creation, caching (keys.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef CUSTOS_KEYS_H
#define CUSTOS_KEYS_H

#include "custos.h"

typedef struct DataKey
{
	int64		key_id;
	uint8		key[CUSTOS_HASH_LEN];
} DataKey;

/* Caller is connected to SPI and runs with GuardBeginInternal() in effect. */
extern void KeysGetDataKey(const char *tenant, const char *scope,
						   const char *value, int32 period, DataKey *out);
extern void KeysDeriveDek(const uint8 *actor_key, const uint8 *subject_key,
						  uint8 *dek);
extern void KeysInvalidateAll(void);
extern int32 KeysPeriodOf(TimestampTz ts);
extern void KeysScopeRef(const char *tenant, const char *scope,
						 const char *value, uint8 *ref);
extern void KeysNoteDestroyed(void);

#endif							/* CUSTOS_KEYS_H */

/*-------------------------------------------------------------------------
 *
 * custos.h
 *	  GUCs and shared state of the custos extension, used across its files.
 *
 * Shared memory exists only when custos is in shared_preload_libraries;
 * every user of CustosShared must cope with it being NULL.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CUSTOS_H
#define CUSTOS_H

#include "port/atomics.h"
#include "storage/latch.h"

/* GUC variables (custos.c) */
extern bool custos_sealer_enabled;
extern int	custos_seal_interval_ms;
extern char *custos_database;
extern int	custos_max_event_bytes;
extern int	custos_max_batch_events;
extern int	custos_block_max_events;
extern int	custos_seal_batch_events;
extern int	custos_read_queue_size;
extern int	custos_read_queue_timeout_ms;

typedef struct CustosShared
{
	/* bumped whenever a data key is destroyed; backends drop cached keys */
	pg_atomic_uint64 key_generation;
	/* bumped whenever a token is revoked; backends drop cached validations */
	pg_atomic_uint64 auth_generation;
	/* pid of the background sealer, 0 when it is not running */
	pg_atomic_uint32 sealer_pid;
} CustosShared;

/* NULL unless custos was preloaded */
extern CustosShared *custos_shared;

/* the SQL schema every custos object lives in */
#define CUSTOS_SCHEMA "custos"

/* 256-bit hashes and keys throughout */
#define CUSTOS_HASH_LEN 32

extern Oid	CustosSchemaOwner(void);
extern bool CustosPushLookupSnapshot(void);
extern Oid	CustosSchemaOid(bool missing_ok);

#endif							/* CUSTOS_H */

/*-------------------------------------------------------------------------
 *
 * chain.h
 *	  The hashed encoding of events and blocks (chain.c); docs/format.md is
 *	  its specification.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CUSTOS_CHAIN_H
#define CUSTOS_CHAIN_H

#include "crypto.h"
#include "custos.h"

#define CUSTOS_FORMAT_VERSION 1

/*
 * The columns of custos.event_log in the order they are hashed.  SQL that
 * feeds ChainLeafHash() selects exactly this list.
 */
#define CHAIN_EVENT_COLUMNS \
	"id, tenant, occurred_at, recorded_at, actor_type, category, action, " \
	"resource_type, resource_id, resource_name, target_level, target_name, " \
	"outcome, request_id, access, actor_key_id, subject_key_id, personal"
#define CHAIN_EVENT_NCOLUMNS 18

typedef struct ChainBlockHeader
{
	const char *tenant;
	int64		block_no;
	int64		first_seq;
	int64		count;
	int64		id_lo;
	int64		id_hi;
	TimestampTz sealed_at;
	uint8		prev_hash[CUSTOS_HASH_LEN];
	uint8		merkle_root[CUSTOS_HASH_LEN];
} ChainBlockHeader;

extern void ChainLeafHash(CryptoHasher *h, const Datum *values,
						  const bool *isnull, uint8 *out);
extern void ChainMerkleRoot(CryptoHasher *h, const uint8 *leaves, int64 n,
							uint8 *out);
extern void ChainBlockHash(CryptoHasher *h, const ChainBlockHeader *hdr,
						   uint8 *out);
extern char *ChainHex(const uint8 *bytes, size_t len);

#endif							/* CUSTOS_CHAIN_H */

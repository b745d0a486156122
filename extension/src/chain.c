/*-------------------------------------------------------------------------
 *
 * chain.c
 *	  The hashed encoding: event leaves, RFC 9162 Merkle trees and block
 *	  headers.  docs/format.md specifies the same bytes for independent
 *	  verifiers; a change here is a new format version.
 *
 * Every value is encoded as a field: a 4-byte big-endian length and the
 * bytes, or the length 0xFFFFFFFF alone for NULL.  Integers are 8-byte
 * big-endian two's complement; timestamps are microseconds since
 * 1970-01-01 00:00:00 UTC as such an integer; text is its UTF-8 bytes.
 *
 *	  leaf hash   = SHA-256(0x00 || 0x01 || field(column) for each column)
 *	  node hash   = SHA-256(0x01 || left || right)
 *	  block hash  = SHA-256(0x02 || 0x01 || field(header value) ...)
 *
 * The leaf covers the event id and the chain covers the position (the leaf's
 * index in its block plus the block's first_seq), so neither can be changed
 * without changing a hash.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "datatype/timestamp.h"
#include "port/pg_bswap.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "chain.h"

#define LEAF_PREFIX 0x00
#define NODE_PREFIX 0x01
#define BLOCK_PREFIX 0x02
#define NULL_LENGTH 0xFFFFFFFFu

/* which columns of CHAIN_EVENT_COLUMNS are what */
typedef enum ChainType
{
	CT_INT8,
	CT_TEXT,
	CT_TIMESTAMPTZ,
	CT_BYTEA
} ChainType;

static const ChainType event_types[CHAIN_EVENT_NCOLUMNS] = {
	CT_INT8,					/* id */
	CT_TEXT,					/* tenant */
	CT_TIMESTAMPTZ,				/* occurred_at */
	CT_TIMESTAMPTZ,				/* recorded_at */
	CT_TEXT,					/* actor_type */
	CT_TEXT,					/* category */
	CT_TEXT,					/* action */
	CT_TEXT,					/* resource_type */
	CT_TEXT,					/* resource_id */
	CT_TEXT,					/* resource_name */
	CT_TEXT,					/* target_level */
	CT_TEXT,					/* target_name */
	CT_TEXT,					/* outcome */
	CT_TEXT,					/* request_id */
	CT_TEXT,					/* access */
	CT_INT8,					/* actor_key_id */
	CT_INT8,					/* subject_key_id */
	CT_BYTEA,					/* personal */
};

/*
 * Fields are encoded into a buffer and hashed with one update call: an
 * update per field (37 per leaf) cost as much as the hashing itself.
 */
static void
put_field(StringInfo buf, const void *data, uint32 len)
{
	uint32		be = pg_hton32(len);

	appendBinaryStringInfo(buf, (const char *) &be, 4);
	if (len > 0)
		appendBinaryStringInfo(buf, data, len);
}

static void
put_null(StringInfo buf)
{
	uint32		be = pg_hton32(NULL_LENGTH);

	appendBinaryStringInfo(buf, (const char *) &be, 4);
}

static void
put_int8(StringInfo buf, int64 v)
{
	uint64		be = pg_hton64((uint64) v);

	put_field(buf, &be, 8);
}

static void
put_timestamptz(StringInfo buf, TimestampTz ts)
{
	put_int8(buf, ts + (int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY);
}

static void
put_varlena(StringInfo buf, Datum d)
{
	struct varlena *v = PG_DETOAST_DATUM_PACKED(d);

	put_field(buf, VARDATA_ANY(v), VARSIZE_ANY_EXHDR(v));
	if ((Pointer) v != DatumGetPointer(d))
		pfree(v);
}

/* A buffer reused for every leaf; kept for the life of the backend. */
static StringInfo
encode_buffer(void)
{
	static StringInfo buf = NULL;

	if (buf == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		buf = makeStringInfo();
		MemoryContextSwitchTo(old);
	}
	resetStringInfo(buf);
	return buf;
}

/*
 * Leaf hash of one event.  values/isnull hold the columns of
 * CHAIN_EVENT_COLUMNS in order.
 */
void
ChainLeafHash(CryptoHasher *h, const Datum *values, const bool *isnull,
			  uint8 *out)
{
	StringInfo	buf = encode_buffer();
	int			i;

	appendStringInfoChar(buf, LEAF_PREFIX);
	appendStringInfoChar(buf, CUSTOS_FORMAT_VERSION);
	for (i = 0; i < CHAIN_EVENT_NCOLUMNS; i++)
	{
		if (isnull[i])
		{
			put_null(buf);
			continue;
		}
		switch (event_types[i])
		{
			case CT_INT8:
				put_int8(buf, DatumGetInt64(values[i]));
				break;
			case CT_TIMESTAMPTZ:
				put_timestamptz(buf, DatumGetTimestampTz(values[i]));
				break;
			case CT_TEXT:
			case CT_BYTEA:
				put_varlena(buf, values[i]);
				break;
		}
	}
	CryptoHasherInit(h);
	CryptoHasherUpdate(h, buf->data, buf->len);
	CryptoHasherFinal(h, out);
}

/* RFC 9162 section 2.1.1: MTH over leaf hashes leaves[0..n), n >= 1. */
void
ChainMerkleRoot(CryptoHasher *h, const uint8 *leaves, int64 n, uint8 *out)
{
	static const uint8 prefix = NODE_PREFIX;
	uint8		left[CUSTOS_HASH_LEN];
	uint8		right[CUSTOS_HASH_LEN];
	int64		k = 1;

	Assert(n >= 1);
	if (n == 1)
	{
		memcpy(out, leaves, CUSTOS_HASH_LEN);
		return;
	}
	/* k: the largest power of two smaller than n */
	while (k * 2 < n)
		k *= 2;
	ChainMerkleRoot(h, leaves, k, left);
	ChainMerkleRoot(h, leaves + k * CUSTOS_HASH_LEN, n - k, right);
	CryptoHasherInit(h);
	CryptoHasherUpdate(h, &prefix, 1);
	CryptoHasherUpdate(h, left, CUSTOS_HASH_LEN);
	CryptoHasherUpdate(h, right, CUSTOS_HASH_LEN);
	CryptoHasherFinal(h, out);
}

void
ChainBlockHash(CryptoHasher *h, const ChainBlockHeader *hdr, uint8 *out)
{
	StringInfo	buf = encode_buffer();

	appendStringInfoChar(buf, BLOCK_PREFIX);
	appendStringInfoChar(buf, CUSTOS_FORMAT_VERSION);
	put_field(buf, hdr->tenant, strlen(hdr->tenant));
	put_int8(buf, hdr->block_no);
	put_int8(buf, hdr->first_seq);
	put_int8(buf, hdr->count);
	put_int8(buf, hdr->id_lo);
	put_int8(buf, hdr->id_hi);
	put_timestamptz(buf, hdr->sealed_at);
	put_field(buf, hdr->prev_hash, CUSTOS_HASH_LEN);
	put_field(buf, hdr->merkle_root, CUSTOS_HASH_LEN);
	CryptoHasherInit(h);
	CryptoHasherUpdate(h, buf->data, buf->len);
	CryptoHasherFinal(h, out);
}

/* Lower-case hex, palloc'd in the current context. */
char *
ChainHex(const uint8 *bytes, size_t len)
{
	char	   *s = palloc(len * 2 + 1);

	hex_encode((const char *) bytes, len, s);
	s[len * 2] = '\0';
	return s;
}

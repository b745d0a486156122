/*-------------------------------------------------------------------------
 *
 * verify.c
 *	  custos.verify() and custos.digest(): recompute a tenant's chain from
 *	  its stored events and say where, if anywhere, it was altered.
 *
 * For each tenant, one ordered scan of its sealed events (id below the
 * watermark) is merged with one ordered scan of its blocks:
 *
 *	- each block's header must hash to its block_hash, link to the previous
 *	  block's hash, continue the block numbers and positions without a gap,
 *	  and its stored leaves must give its Merkle root;
 *	- the events in the block's id window must be exactly the block's events,
 *	  each hashing to its stored leaf;
 *	- no sealed event may lie outside every block's window.
 *
 * The first failure (lowest position) is reported with its kind: modified
 * (an event or block no longer hashes to what was sealed), missing (a sealed
 * event or block is gone), inserted (an event that was never sealed sits
 * among sealed ones), reordered (sealed events moved to other positions).
 * A kept digest (custos.digest()) additionally catches what an attacker who
 * rewrote every hash consistently leaves behind: a chain shorter than the
 * digest (truncated) or with another hash at the digest's block (rewritten).
 *
 * Everything here only reads; it runs as the schema owner so that auditors
 * need EXECUTE on these functions and nothing else.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "chain.h"
#include "custos.h"
#include "guard.h"
#include "retention.h"

PG_FUNCTION_INFO_V1(custos_verify);
PG_FUNCTION_INFO_V1(custos_digest);

/* Most mismatching events examined to tell "reordered" from "modified". */
#define MAX_MISMATCHES 64

typedef struct Digest
{
	bool		given;
	int64		block_no;
	int64		size;
	uint8		head[CUSTOS_HASH_LEN];
	bool		matched;		/* the digest's block was found and checked */
} Digest;

typedef struct VerifyResult
{
	bool		ok;
	int64		events_checked;
	int64		events_cut;		/* sealed, then removed by retention */
	int64		blocks_checked;
	int64		pending;
	int64		size;
	const char *failure;
	int64		failed_seq;
	bool		has_event_id;
	int64		failed_event_id;
	int64		failed_block;
	char	   *detail;
} VerifyResult;

/* A streaming cursor over the tenant's sealed events, one row ahead. */
typedef struct EventStream
{
	Portal		portal;
	SPITupleTable *tt;
	uint64		n;
	uint64		pos;
	bool		done;
	Datum		values[CHAIN_EVENT_NCOLUMNS];
	bool		nulls[CHAIN_EVENT_NCOLUMNS];
	int64		id;				/* id of the current row */
} EventStream;

static void
stream_advance(EventStream *s)
{
	if (s->done)
		return;
	if (s->tt == NULL || s->pos >= s->n)
	{
		if (s->tt)
			SPI_freetuptable(s->tt);
		SPI_cursor_fetch(s->portal, true, 2000);
		s->tt = SPI_tuptable;
		s->n = SPI_processed;
		s->pos = 0;
		if (s->n == 0)
		{
			s->done = true;
			return;
		}
	}
	heap_deform_tuple(s->tt->vals[s->pos], s->tt->tupdesc, s->values, s->nulls);
	s->id = DatumGetInt64(s->values[0]);
	s->pos++;
}

/*
 * Record a failure.  Of several, the one at the lowest position wins, so that
 * a classification made after reading further (see MismatchSet) still
 * reports the first bad position.  event_id is NULL when no event applies.
 */
static void
fail(VerifyResult *r, const char *kind, int64 seq, const int64 *event_id,
	 int64 block, char *detail)
{
	if (!r->ok && seq >= r->failed_seq)
		return;
	r->ok = false;
	r->failure = kind;
	r->failed_seq = seq;
	r->has_event_id = (event_id != NULL);
	r->failed_event_id = event_id ? *event_id : 0;
	r->failed_block = block;
	r->detail = detail;
}

static bytea *
col_bytea(HeapTuple tup, TupleDesc td, int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tup, td, col, &isnull);

	return isnull ? NULL : DatumGetByteaPP(d);
}

static int64
col_int8(HeapTuple tup, TupleDesc td, int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tup, td, col, &isnull);

	return isnull ? -1 : DatumGetInt64(d);
}

static bool
hash_eq(bytea *b, const uint8 *h)
{
	return b != NULL && VARSIZE_ANY_EXHDR(b) == CUSTOS_HASH_LEN &&
		memcmp(VARDATA_ANY(b), h, CUSTOS_HASH_LEN) == 0;
}

/* A sealed event whose leaf no longer matches, kept to classify it. */
typedef struct Mismatch
{
	int64		seq;
	int64		block_no;
	int64		expected_id;
	uint8		expected_leaf[CUSTOS_HASH_LEN];
	Datum		values[CHAIN_EVENT_NCOLUMNS];
	bool		nulls[CHAIN_EVENT_NCOLUMNS];
} Mismatch;

/*
 * Mismatches of a tenant, gathered over the block where they start and the
 * next one, so that events swapped across a block boundary are told apart
 * from modified ones.
 */
typedef struct MismatchSet
{
	int			n;
	int64		first_block;
	Mismatch	items[MAX_MISMATCHES];
	MemoryContext cxt;			/* holds the copied rows */
} MismatchSet;

/* Keep a copy of the current row as a mismatch at position seq. */
static void
add_mismatch(MismatchSet *ms, EventStream *s, int64 seq, int64 block_no,
			 int64 expected_id, const uint8 *expected_leaf)
{
	Mismatch   *m;
	MemoryContext old;
	int			c;

	if (ms->n == 0)
		ms->first_block = block_no;
	if (ms->n >= MAX_MISMATCHES)
		return;
	m = &ms->items[ms->n++];
	m->seq = seq;
	m->block_no = block_no;
	m->expected_id = expected_id;
	memcpy(m->expected_leaf, expected_leaf, CUSTOS_HASH_LEN);
	old = MemoryContextSwitchTo(ms->cxt);
	for (c = 0; c < CHAIN_EVENT_NCOLUMNS; c++)
	{
		m->nulls[c] = s->nulls[c];
		if (s->nulls[c])
			m->values[c] = (Datum) 0;
		else if (TupleDescAttr(s->tt->tupdesc, c)->attbyval)
			m->values[c] = s->values[c];
		else
			m->values[c] = PointerGetDatum(PG_DETOAST_DATUM_COPY(s->values[c]));
	}
	MemoryContextSwitchTo(old);
}

/*
 * Report the gathered mismatches: "reordered" when some event's content
 * hashes, under the id expected at another mismatching position, to the
 * leaf sealed there (sealed content moved); otherwise "modified".
 */
static void
report_mismatches(CryptoHasher *h, MismatchSet *ms, VerifyResult *r)
{
	Mismatch   *first = &ms->items[0];
	bool		reordered = false;
	int			a,
				b;

	for (a = 0; a < ms->n && !reordered; a++)
		for (b = 0; b < ms->n && !reordered; b++)
		{
			uint8		leaf[CUSTOS_HASH_LEN];
			Datum		saved = ms->items[a].values[0];

			if (a == b)
				continue;
			ms->items[a].values[0] = Int64GetDatum(ms->items[b].expected_id);
			ChainLeafHash(h, ms->items[a].values, ms->items[a].nulls, leaf);
			ms->items[a].values[0] = saved;
			reordered = memcmp(leaf, ms->items[b].expected_leaf, CUSTOS_HASH_LEN) == 0;
		}

	fail(r, reordered ? "reordered" : "modified", first->seq, &first->expected_id,
		 first->block_no,
		 reordered ?
		 psprintf("sealed events no longer sit at the positions they were sealed at, from position %lld",
				  (long long) first->seq) :
		 psprintf("event %lld no longer hashes to the leaf sealed at position %lld",
				  (long long) first->expected_id, (long long) first->seq));
	ms->n = 0;
	MemoryContextReset(ms->cxt);
}

/*
 * Check the events of one block against its stored ids and leaves,
 * consuming them from the stream.  Leaf mismatches go to "ms"; missing and
 * inserted events fail at once.
 */
static void
check_block_events(CryptoHasher *h, EventStream *s, VerifyResult *r,
				   MismatchSet *ms, const CutSet *cut, int64 block_no, int64 first_seq,
				   int64 count, int64 id_hi, const int64 *ids,
				   const uint8 *leaves)
{
	int64		i = 0;

	while (i < count || (!s->done && s->id < id_hi))
	{
		if (!s->done && s->id < id_hi && i < count && s->id == ids[i])
		{
			uint8		leaf[CUSTOS_HASH_LEN];

			ChainLeafHash(h, s->values, s->nulls, leaf);
			if (memcmp(leaf, leaves + i * CUSTOS_HASH_LEN, CUSTOS_HASH_LEN) != 0)
				add_mismatch(ms, s, first_seq + i, block_no, ids[i],
							 leaves + i * CUSTOS_HASH_LEN);
			r->events_checked++;
			i++;
			stream_advance(s);
		}
		else if (s->done || s->id >= id_hi || (i < count && ids[i] < s->id))
		{
			/* the block lists ids[i], the table no longer has it */
			if (RetentionCutContains(cut, ids[i]))
			{
				/* removed by retention, which recorded the cut */
				r->events_cut++;
				i++;
				continue;
			}
			fail(r, "missing", first_seq + i, &ids[i], block_no,
				 psprintf("sealed event %lld is gone from custos.event_log",
						  (long long) ids[i]));
			i++;
		}
		else
		{
			/* a row in the window that the block does not list */
			fail(r, "inserted", first_seq + i, &s->id, block_no,
				 psprintf("event %lld lies in block %lld's id window but was never sealed into it",
						  (long long) s->id, (long long) block_no));
			stream_advance(s);
		}
	}
}

static void
verify_tenant(const char *tenant, int64 watermark, Digest *dg, VerifyResult *r)
{
	Oid			types[2] = {TEXTOID, INT8OID};
	Datum		arg[2];
	Portal		blocks;
	EventStream s = {0};
	CryptoHasher h = {0};
	int64		expect_block = 0;
	int64		expect_seq = 0;
	uint8		prev[CUSTOS_HASH_LEN] = {0};
	MemoryContext blockcxt;
	MismatchSet ms;
	CutSet		cut = {0};
	bool		isnull;

	memset(r, 0, sizeof(*r));
	r->ok = true;
	r->failed_seq = r->failed_block = -1;
	ms.n = 0;
	ms.cxt = AllocSetContextCreate(CurrentMemoryContext, "custos verify mismatches",
								   ALLOCSET_DEFAULT_SIZES);

	arg[0] = CStringGetTextDatum(tenant);
	arg[1] = Int64GetDatum(watermark);

	RetentionLoadCuts(arg[0], true, &cut);

	/* where the chain starts: genesis, or the checkpoint retention left */
	if (SPI_execute_with_args("SELECT block_no, next_seq, block_hash FROM custos.checkpoint "
							  "WHERE tenant OPERATOR(pg_catalog.=) $1",
							  1, types, arg, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read checkpoint");
	if (SPI_processed == 1)
	{
		bytea	   *cph = col_bytea(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3);

		expect_block = col_int8(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1) + 1;
		expect_seq = col_int8(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
		if (cph && VARSIZE_ANY_EXHDR(cph) == CUSTOS_HASH_LEN)
			memcpy(prev, VARDATA_ANY(cph), CUSTOS_HASH_LEN);
		if (dg->given && dg->block_no == expect_block - 1)
		{
			dg->matched = true;
			if (memcmp(prev, dg->head, CUSTOS_HASH_LEN) != 0 || dg->size != expect_seq)
				fail(r, "rewritten", expect_seq, NULL, expect_block - 1,
					 pstrdup("the checkpoint does not match the kept digest"));
		}
		else if (dg->given && dg->block_no < expect_block - 1)
			dg->matched = true; /* cut by retention; the checkpoint vouches */
	}

	if (SPI_execute_with_args("SELECT pg_catalog.count(*) FROM custos.event_log "
							  "WHERE tenant OPERATOR(pg_catalog.=) $1 AND id OPERATOR(pg_catalog.>=) $2",
							  2, types, arg, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not count pending events");
	r->pending = col_int8(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);

	s.portal = SPI_cursor_open_with_args(NULL,
										 "SELECT " CHAIN_EVENT_COLUMNS " FROM custos.event_log "
										 "WHERE tenant OPERATOR(pg_catalog.=) $1 AND id OPERATOR(pg_catalog.<) $2 "
										 "ORDER BY id",
										 2, types, arg, NULL, true, CURSOR_OPT_NO_SCROLL);
	blocks = SPI_cursor_open_with_args(NULL,
									   "SELECT block_no, first_seq, event_count, id_lo, id_hi, event_ids, "
									   "leaves, merkle_root, prev_hash, block_hash, sealed_at, format "
									   "FROM custos.block WHERE tenant OPERATOR(pg_catalog.=) $1 ORDER BY block_no",
									   1, types, arg, NULL, true, CURSOR_OPT_NO_SCROLL);
	stream_advance(&s);

	blockcxt = AllocSetContextCreate(CurrentMemoryContext, "custos verify block",
									 ALLOCSET_DEFAULT_SIZES);

	for (;;)
	{
		SPITupleTable *bt;
		uint64		nb;
		uint64		b;

		SPI_cursor_fetch(blocks, true, 64);
		bt = SPI_tuptable;
		nb = SPI_processed;
		if (nb == 0)
			break;
		for (b = 0; b < nb; b++)
		{
			HeapTuple	tup = bt->vals[b];
			TupleDesc	td = bt->tupdesc;
			MemoryContext old = MemoryContextSwitchTo(blockcxt);
			ChainBlockHeader hdr;
			uint8		hash[CUSTOS_HASH_LEN];
			uint8		root[CUSTOS_HASH_LEN];
			bytea	   *leaves_b = col_bytea(tup, td, 7);
			bytea	   *stored_hash = col_bytea(tup, td, 10);
			ArrayType  *ids_a;
			Datum	   *id_datums;
			int			nids;
			int64	   *ids;
			int			k;

			hdr.tenant = tenant;
			hdr.block_no = col_int8(tup, td, 1);
			hdr.first_seq = col_int8(tup, td, 2);
			hdr.count = DatumGetInt32(SPI_getbinval(tup, td, 3, &isnull));
			hdr.id_lo = col_int8(tup, td, 4);
			hdr.id_hi = col_int8(tup, td, 5);
			hdr.sealed_at = DatumGetTimestampTz(SPI_getbinval(tup, td, 11, &isnull));
			ids_a = DatumGetArrayTypeP(SPI_getbinval(tup, td, 6, &isnull));
			deconstruct_array(ids_a, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE,
							  &id_datums, NULL, &nids);
			ids = palloc(sizeof(int64) * Max(nids, 1));
			for (k = 0; k < nids; k++)
				ids[k] = DatumGetInt64(id_datums[k]);
			{
				bytea	   *pv = col_bytea(tup, td, 9);
				bytea	   *mr = col_bytea(tup, td, 8);

				memset(hdr.prev_hash, 0, CUSTOS_HASH_LEN);
				memset(hdr.merkle_root, 0, CUSTOS_HASH_LEN);
				if (pv && VARSIZE_ANY_EXHDR(pv) == CUSTOS_HASH_LEN)
					memcpy(hdr.prev_hash, VARDATA_ANY(pv), CUSTOS_HASH_LEN);
				if (mr && VARSIZE_ANY_EXHDR(mr) == CUSTOS_HASH_LEN)
					memcpy(hdr.merkle_root, VARDATA_ANY(mr), CUSTOS_HASH_LEN);
			}

			/* the block itself */
			if (hdr.block_no != expect_block)
				fail(r, "missing", expect_seq, NULL, expect_block,
					 psprintf("block %lld is missing from the chain", (long long) expect_block));
			else if (hdr.first_seq != expect_seq)
				fail(r, hdr.first_seq > expect_seq ? "missing" : "inserted", expect_seq, NULL, hdr.block_no,
					 psprintf("block %lld starts at position %lld, expected %lld",
							  (long long) hdr.block_no, (long long) hdr.first_seq, (long long) expect_seq));
			else if (memcmp(hdr.prev_hash, prev, CUSTOS_HASH_LEN) != 0)
				fail(r, "modified", hdr.first_seq, NULL, hdr.block_no,
					 psprintf("block %lld does not link to the hash of block %lld",
							  (long long) hdr.block_no, (long long) hdr.block_no - 1));
			else if (leaves_b == NULL || hdr.count < 1 || nids != hdr.count ||
					 VARSIZE_ANY_EXHDR(leaves_b) != (Size) hdr.count * CUSTOS_HASH_LEN)
				fail(r, "modified", hdr.first_seq, NULL, hdr.block_no,
					 psprintf("block %lld is malformed", (long long) hdr.block_no));
			else
			{
				ChainBlockHash(&h, &hdr, hash);
				ChainMerkleRoot(&h, (uint8 *) VARDATA_ANY(leaves_b), hdr.count, root);
				if (!hash_eq(stored_hash, hash))
					fail(r, "modified", hdr.first_seq, NULL, hdr.block_no,
						 psprintf("block %lld's header no longer hashes to its block hash",
								  (long long) hdr.block_no));
				else if (memcmp(root, hdr.merkle_root, CUSTOS_HASH_LEN) != 0)
					fail(r, "modified", hdr.first_seq, NULL, hdr.block_no,
						 psprintf("block %lld's leaves no longer give its Merkle root",
								  (long long) hdr.block_no));
			}

			/* sealed events before this block's window belong to no block */
			while (r->ok && !s.done && s.id < hdr.id_lo)
			{
				fail(r, "inserted", hdr.first_seq, &s.id, hdr.block_no,
					 psprintf("event %lld lies outside every sealed block", (long long) s.id));
				stream_advance(&s);
			}
			if (r->ok)
				check_block_events(&h, &s, r, &ms, &cut, hdr.block_no, hdr.first_seq, hdr.count,
								   hdr.id_hi, ids, (uint8 *) VARDATA_ANY(leaves_b));
			/* mismatches are classified once the block after theirs is read */
			if (ms.n > 0 && (hdr.block_no > ms.first_block || !r->ok))
				report_mismatches(&h, &ms, r);

			if (dg->given && hdr.block_no == dg->block_no)
			{
				dg->matched = true;
				if (!hash_eq(stored_hash, dg->head) || hdr.first_seq + hdr.count != dg->size)
					fail(r, "rewritten", hdr.first_seq, NULL, hdr.block_no,
						 psprintf("block %lld differs from the kept digest", (long long) hdr.block_no));
			}

			r->blocks_checked++;
			expect_block = hdr.block_no + 1;
			expect_seq = hdr.first_seq + hdr.count;
			if (stored_hash && VARSIZE_ANY_EXHDR(stored_hash) == CUSTOS_HASH_LEN)
				memcpy(prev, VARDATA_ANY(stored_hash), CUSTOS_HASH_LEN);
			MemoryContextSwitchTo(old);
			MemoryContextReset(blockcxt);
			if (!r->ok)
				break;
		}
		SPI_freetuptable(bt);
		if (!r->ok)
			break;
	}

	if (ms.n > 0)
		report_mismatches(&h, &ms, r);

	/* sealed events after the last block */
	if (r->ok && !s.done)
		fail(r, "inserted", expect_seq, &s.id, expect_block,
			 psprintf("event %lld lies outside every sealed block", (long long) s.id));

	r->size = expect_seq;
	/* a digest of an empty chain vouches for nothing */
	if (r->ok && dg->given && !dg->matched && dg->block_no >= 0)
		fail(r, "truncated", expect_seq, NULL, expect_block,
			 psprintf("the chain has %lld events; the kept digest vouches for %lld",
					  (long long) expect_seq, (long long) dg->size));

	if (s.tt)
		SPI_freetuptable(s.tt);
	SPI_cursor_close(s.portal);
	SPI_cursor_close(blocks);
	CryptoHasherFree(&h);
	MemoryContextDelete(blockcxt);
	MemoryContextDelete(ms.cxt);
}

static void
parse_digest(Jsonb *jb, Digest *dg, char **tenant)
{
	JsonbValue	k;
	JsonbValue *v;
	const char *need[] = {"tenant", "block_no", "size", "head"};
	int			i;

	memset(dg, 0, sizeof(*dg));
	if (!JB_ROOT_IS_OBJECT(jb))
		goto bad;
	for (i = 0; i < 4; i++)
	{
		k.type = jbvString;
		k.val.string.val = (char *) need[i];
		k.val.string.len = strlen(need[i]);
		v = findJsonbValueFromContainer(&jb->root, JB_FOBJECT, &k);
		if (v == NULL)
			goto bad;
		switch (i)
		{
			case 0:
				if (v->type != jbvString)
					goto bad;
				*tenant = pnstrdup(v->val.string.val, v->val.string.len);
				break;
			case 1:
			case 2:
				if (v->type != jbvNumeric)
					goto bad;
				{
					/* only plain integers: 1.5 or 1e30 are not a position */
					char	   *num = DatumGetCString(DirectFunctionCall1(numeric_out,
																		  NumericGetDatum(v->val.numeric)));
					char	   *digits = num + (num[0] == '-');
					int64		n;

					if (digits[0] == '\0' || strspn(digits, "0123456789") != strlen(digits) ||
						strlen(digits) > 18)
						goto bad;
					n = strtoi64(num, NULL, 10);
					if (i == 1)
						dg->block_no = n;
					else
						dg->size = n;
				}
				break;
			case 3:
				if (v->type != jbvString || v->val.string.len != CUSTOS_HASH_LEN * 2 ||
					strspn(pnstrdup(v->val.string.val, v->val.string.len), "0123456789abcdef") != CUSTOS_HASH_LEN * 2)
					goto bad;
				hex_decode(v->val.string.val, v->val.string.len, (char *) dg->head);
				break;
		}
	}
	dg->given = true;
	return;

bad:
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("malformed custos digest"),
			 errdetail("A digest is a JSON object with \"tenant\", \"block_no\", \"size\" and a 64-digit lower-case hex \"head\"."),
			 errhint("Pass a document returned by custos.digest() unchanged.")));
}

/* custos.verify(tenant text default null, digest jsonb default null) */
Datum
custos_verify(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *tenant = PG_ARGISNULL(0) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(0));
	Digest		dg = {0};
	GuardState	gs;

	InitMaterializedSRF(fcinfo, 0);

	if (!PG_ARGISNULL(1))
	{
		char	   *dtenant = NULL;

		parse_digest(PG_GETARG_JSONB_P(1), &dg, &dtenant);
		if (tenant != NULL && strcmp(tenant, dtenant) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("digest is for tenant \"%s\", not \"%s\"", dtenant, tenant)));
		tenant = dtenant;
	}

	GuardBeginInternal(&gs);
	PG_TRY();
	{
		List	   *tenants = NIL;
		ListCell   *lc;
		int64		watermark;
		bool		isnull;
		int			nestlevel = NewGUCNestLevel();

		/*
		 * With the default random_page_cost the planner reads a tenant's
		 * events through the primary key and filters out every other
		 * tenant's (its heap order looks cheaper than event_log_tenant_id's),
		 * so verifying one tenant read the whole log.  The log is read
		 * once, start to end: price random access as the cached, mostly
		 * sequential read it is.  Restored when verify returns.
		 */
		(void) set_config_option("random_page_cost", "1.1", PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);

		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		if (SPI_execute("SELECT coalesce((SELECT watermark FROM custos.sealer_state), 1)", true, 1) != SPI_OK_SELECT ||
			SPI_processed != 1)
			elog(ERROR, "could not read sealer state");
		watermark = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));

		if (tenant != NULL)
			tenants = list_make1(tenant);
		else
		{
			uint64		i;

			/* distinct tenants by skipping through the indexes, not a full scan */
			if (SPI_execute("WITH RECURSIVE t(tenant) AS ("
							"  (SELECT tenant FROM custos.event_log ORDER BY tenant LIMIT 1)"
							"  UNION ALL"
							"  SELECT (SELECT e.tenant FROM custos.event_log e"
							"          WHERE e.tenant OPERATOR(pg_catalog.>) t.tenant ORDER BY e.tenant LIMIT 1)"
							"  FROM t WHERE t.tenant IS NOT NULL)"
							"SELECT tenant FROM t WHERE tenant IS NOT NULL "
							"UNION SELECT tenant FROM custos.block "
							"UNION SELECT tenant FROM custos.checkpoint ORDER BY 1",
							true, 0) != SPI_OK_SELECT)
				elog(ERROR, "could not list tenants");
			for (i = 0; i < SPI_processed; i++)
				tenants = lappend(tenants, SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1));
		}

		foreach(lc, tenants)
		{
			const char *t = lfirst(lc);
			VerifyResult r;
			Datum		values[11];
			bool		nulls[11] = {0};

			CHECK_FOR_INTERRUPTS();
			dg.matched = false;
			verify_tenant(t, watermark, &dg, &r);
			values[0] = CStringGetTextDatum(t);
			values[1] = BoolGetDatum(r.ok);
			values[2] = Int64GetDatum(r.events_checked);
			values[3] = Int64GetDatum(r.blocks_checked);
			values[4] = Int64GetDatum(r.pending);
			values[5] = Int64GetDatum(r.size);
			values[6] = r.failure ? CStringGetTextDatum(r.failure) : (Datum) 0;
			nulls[6] = r.failure == NULL;
			values[7] = Int64GetDatum(r.failed_seq);
			nulls[7] = r.failed_seq < 0;
			values[8] = Int64GetDatum(r.failed_event_id);
			nulls[8] = !r.has_event_id;
			values[9] = Int64GetDatum(r.failed_block);
			nulls[9] = r.failed_block < 0;
			values[10] = r.detail ? CStringGetTextDatum(r.detail) : (Datum) 0;
			nulls[10] = r.detail == NULL;
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		}
		SPI_finish();
		AtEOXact_GUC(true, nestlevel);
	}
	PG_FINALLY();
	{
		GuardEndInternal(&gs);
	}
	PG_END_TRY();

	return (Datum) 0;
}

/* custos.digest(tenant text) returns jsonb */
Datum
custos_digest(PG_FUNCTION_ARGS)
{
	text	   *tenant = PG_GETARG_TEXT_PP(0);
	GuardState	gs;
	Datum		result = (Datum) 0;

	GuardBeginInternal(&gs);
	PG_TRY();
	{
		Oid			types[1] = {TEXTOID};
		Datum		arg[1] = {PointerGetDatum(tenant)};
		bool		isnull;

		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");

		/*
		 * The head is the last block, or the checkpoint when retention cut
		 * every block; a tenant with neither has an empty chain.
		 */
		if (SPI_execute_with_args(
								  "SELECT pg_catalog.jsonb_build_object("
								  " 'format', 1, 'tenant', $1::text, 'block_no', h.block_no, 'size', h.size,"
								  " 'head', pg_catalog.encode(h.hash, 'hex'), 'sealed_at', h.at,"
								  " 'issued_at', pg_catalog.clock_timestamp())"
								  " FROM (SELECT block_no, first_seq + event_count AS size, block_hash AS hash, sealed_at AS at"
								  "       FROM custos.block WHERE tenant OPERATOR(pg_catalog.=) $1"
								  "       UNION ALL"
								  "       SELECT block_no, next_seq, block_hash, cut_at FROM custos.checkpoint"
								  "       WHERE tenant OPERATOR(pg_catalog.=) $1"
								  "       UNION ALL"
								  "       SELECT -1, 0, pg_catalog.decode(pg_catalog.repeat('00', 32), 'hex'), NULL"
								  "       ORDER BY 1 DESC LIMIT 1) h",
								  1, types, arg, NULL, true, 1) != SPI_OK_SELECT || SPI_processed != 1)
			elog(ERROR, "could not build digest");
		result = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		result = SPI_datumTransfer(result, false, -1);
		SPI_finish();
	}
	PG_FINALLY();
	{
		GuardEndInternal(&gs);
	}
	PG_END_TRY();

	PG_RETURN_DATUM(result);
}

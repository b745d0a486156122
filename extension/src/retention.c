/*-------------------------------------------------------------------------
 *
 * retention.c
 *	  The storage primitives of retention, anonymisation and erasure: the
 *	  only places where custos removes anything.
 *
 * Policies, legal holds, batching and job records live in SQL
 * (custos--0.4--0.5.sql); what has to bypass the storage guard is here, and
 * nothing here decides *what* to remove -- the callers pass it in:
 *
 *	- custos.destroy_keys() crypto-shreds data keys.  The key bytes are first
 *	  overwritten with zeros in place (heap_inplace_update), then the row is
 *	  updated to key = NULL.  Without the first step the old row version would
 *	  keep the key on disk until VACUUM, and anyone reading the table files
 *	  could still decrypt "anonymised" events.  An interrupted destruction
 *	  leaves zeroed bytes behind; keys.c never uses such a key and the next
 *	  run records it as destroyed.
 *
 *	- custos.retention_batch() deletes one batch of a tenant's expired sealed
 *	  events, in chain (id) order, skipping held ones, and records each run
 *	  of removed events as an id range in custos.retention_cut.  A range
 *	  never contains an event that was kept, so verify.c accepts an event as
 *	  cut only if its id lies in a range: deleting a kept (e.g. held) event
 *	  later is still reported as "missing".
 *
 *	- custos.retention_compact() drops the tenant's leading blocks all of
 *	  whose events are cut, and moves the tenant's checkpoint to the last of
 *	  them: the chain then starts from the checkpoint's hash.
 *
 * Deletion uses simple_heap_delete() on the tuples the scan returned rather
 * than a DELETE statement: the scan already has them, and the statement
 * would find them again through the index.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "storage/bufmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "custos.h"
#include "guard.h"
#include "keys.h"
#include "retention.h"

PG_FUNCTION_INFO_V1(custos_scope_ref);
PG_FUNCTION_INFO_V1(custos_destroy_keys);
PG_FUNCTION_INFO_V1(custos_retention_batch);
PG_FUNCTION_INFO_V1(custos_retention_compact);

static Oid
storage_relid(const char *name)
{
	Oid			relid = get_relname_relid(name, CustosSchemaOid(false));

	if (!OidIsValid(relid))
		elog(ERROR, "custos storage table \"%s\" is missing", name);
	return relid;
}

static void
connect_spi(void)
{
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
}

static int
cmp_int64(const void *a, const void *b)
{
	int64		x = *(const int64 *) a;
	int64		y = *(const int64 *) b;

	return (x > y) - (x < y);
}

/*
 * custos.scope_ref(tenant, scope, value): where the keys of an actor or a
 * subject are found (keys.c).  Legal holds and erasure find keys by it
 * without the value ever being stored.
 */
Datum
custos_scope_ref(PG_FUNCTION_ARGS)
{
	char	   *tenant = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *scope = text_to_cstring(PG_GETARG_TEXT_PP(1));
	char	   *value = text_to_cstring(PG_GETARG_TEXT_PP(2));
	uint8		ref[CUSTOS_HASH_LEN];
	GuardState	gs;
	bytea	   *out;

	if (strcmp(scope, "actor") != 0 && strcmp(scope, "subject") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("scope must be \"actor\" or \"subject\", not \"%s\"", scope)));

	GuardBeginInternal(&gs);
	PG_TRY();
	{
		connect_spi();
		KeysScopeRef(tenant, scope, value, ref);
		SPI_finish();
	}
	PG_FINALLY();
	{
		GuardEndInternal(&gs);
	}
	PG_END_TRY();

	out = palloc(VARHDRSZ + CUSTOS_HASH_LEN);
	SET_VARSIZE(out, VARHDRSZ + CUSTOS_HASH_LEN);
	memcpy(VARDATA(out), ref, CUSTOS_HASH_LEN);
	PG_RETURN_BYTEA_P(out);
}

/* Overwrite the key bytes of the data_key tuple at tid with zeros, in place. */
static void
zero_key_in_place(Relation rel, AttrNumber keyatt, ItemPointer tid)
{
	TupleDesc	desc = RelationGetDescr(rel);
	HeapTupleData tup;
	Buffer		buf;
	Datum	   *values;
	bool	   *nulls;
	HeapTuple	zeroed;
	bytea	   *zero;

	tup.t_self = *tid;
	if (!heap_fetch(rel, SnapshotAny, &tup, &buf, false))
		return;
	values = palloc(sizeof(Datum) * desc->natts);
	nulls = palloc(sizeof(bool) * desc->natts);
	heap_deform_tuple(&tup, desc, values, nulls);
	if (nulls[keyatt - 1])
	{
		ReleaseBuffer(buf);
		return;
	}
	zero = palloc0(VARHDRSZ + CUSTOS_HASH_LEN);
	SET_VARSIZE(zero, VARHDRSZ + CUSTOS_HASH_LEN);
	values[keyatt - 1] = PointerGetDatum(zero);
	zeroed = heap_form_tuple(desc, values, nulls);
	zeroed->t_self = *tid;
	ReleaseBuffer(buf);

	/* same length, same null bitmap: heap_inplace_update checks both */
	heap_inplace_update(rel, zeroed);
}

/*
 * custos.destroy_keys(key_ids, reason, forget_pseudonym): crypto-shred the
 * given live keys.  Returns how many were destroyed.
 */
Datum
custos_destroy_keys(PG_FUNCTION_ARGS)
{
	ArrayType  *ids = PG_GETARG_ARRAYTYPE_P(0);
	text	   *reason = PG_GETARG_TEXT_PP(1);
	bool		forget = PG_GETARG_BOOL(2);
	GuardState	gs;
	int64		destroyed = 0;

	if (ARR_NDIM(ids) == 0)
		PG_RETURN_INT64(0);

	GuardBeginInternal(&gs);
	PG_TRY();
	{
		Oid			types[3] = {INT8ARRAYOID, TEXTOID, BOOLOID};
		Datum		args[3];
		Relation	rel;
		AttrNumber	keyatt;
		uint64		i;

		connect_spi();
		args[0] = PointerGetDatum(ids);
		args[1] = PointerGetDatum(reason);
		args[2] = BoolGetDatum(forget);

		if (SPI_execute_with_args("SELECT ctid FROM custos.data_key "
								  "WHERE key_id OPERATOR(pg_catalog.=) ANY ($1) AND key IS NOT NULL",
								  1, types, args, NULL, false, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not read data keys");

		rel = table_open(storage_relid("data_key"), RowExclusiveLock);
		keyatt = get_attnum(RelationGetRelid(rel), "key");
		if (keyatt == InvalidAttrNumber)
			elog(ERROR, "custos.data_key has no column \"key\"");
		for (i = 0; i < SPI_processed; i++)
		{
			bool		isnull;
			ItemPointer tid = (ItemPointer) DatumGetPointer(
											  SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));

			zero_key_in_place(rel, keyatt, tid);
		}
		table_close(rel, NoLock);
		if (SPI_processed > 0)
			KeysNoteDestroyed();

		if (SPI_execute_with_args("UPDATE custos.data_key SET key = NULL, "
								  "shredded_at = pg_catalog.clock_timestamp(), shred_reason = $2, "
								  "pseudonym = CASE WHEN $3 THEN NULL ELSE pseudonym END "
								  "WHERE key_id OPERATOR(pg_catalog.=) ANY ($1) AND key IS NOT NULL",
								  3, types, args, NULL, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "could not destroy data keys");
		destroyed = SPI_processed;

		/*
		 * Erasure also reaches keys that anonymisation or retention destroyed
		 * before: their pseudonym still linked the person's events.
		 */
		if (forget &&
			SPI_execute_with_args("UPDATE custos.data_key SET shred_reason = $2, pseudonym = NULL "
								  "WHERE key_id OPERATOR(pg_catalog.=) ANY ($1) AND key IS NULL "
								  "AND shred_reason OPERATOR(pg_catalog.<>) $2",
								  2, types, args, NULL, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "could not forget pseudonyms");
		SPI_finish();
	}
	PG_FINALLY();
	{
		GuardEndInternal(&gs);
	}
	PG_END_TRY();

	PG_RETURN_INT64(destroyed);
}

/* Removed events of one batch that are adjacent in the tenant's id order. */
typedef struct CutRange
{
	int64		lo;				/* first removed id */
	int64		hi;				/* last removed id + 1 */
} CutRange;

/*
 * custos.retention_batch(tenant, cutoff, batch_size, after_id, held_keys,
 * run_id): delete up to batch_size sealed events of the tenant with id >
 * after_id and recorded before cutoff, in id order, stopping at the first
 * event recorded at or after cutoff.  Events whose actor or subject key is
 * in held_keys are kept.  Returns (deleted, held, oldest, newest, last_id,
 * done): last_id is where the next batch continues, done says nothing
 * expired is left after it.
 */
Datum
custos_retention_batch(PG_FUNCTION_ARGS)
{
	text	   *tenant;
	TimestampTz cutoff;
	int32		batch_size;
	int64		after_id;
	ArrayType  *held_a;
	int64		run_id;
	TupleDesc	rdesc;
	Datum		result[6];
	bool		rnulls[6] = {false, false, true, true, false, false};
	int64		deleted = 0;
	int64		held = 0;
	TimestampTz oldest = 0;
	TimestampTz newest = 0;
	int64		last_id;
	bool		done = false;
	int64	   *held_keys = NULL;
	int			nheld = 0;
	GuardState	gs;

	/* CALLED ON NULL INPUT for held_keys alone: the others are required */
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2) || PG_ARGISNULL(3) || PG_ARGISNULL(5))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("only held_keys of custos.retention_batch() may be NULL")));
	tenant = PG_GETARG_TEXT_PP(0);
	cutoff = PG_GETARG_TIMESTAMPTZ(1);
	batch_size = PG_GETARG_INT32(2);
	after_id = PG_GETARG_INT64(3);
	held_a = PG_ARGISNULL(4) ? NULL : PG_GETARG_ARRAYTYPE_P(4);
	run_id = PG_GETARG_INT64(5);
	last_id = after_id;

	if (batch_size < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("batch size must be at least 1")));
	if (get_call_result_type(fcinfo, NULL, &rdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	if (held_a != NULL && ARR_NDIM(held_a) > 0)
	{
		Datum	   *d;
		bool	   *n;
		int			i;

		deconstruct_array(held_a, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE,
						  &d, &n, &nheld);
		held_keys = palloc(sizeof(int64) * nheld);
		for (i = 0; i < nheld; i++)
			held_keys[i] = n[i] ? -1 : DatumGetInt64(d[i]);
		qsort(held_keys, nheld, sizeof(int64), cmp_int64);
	}

	GuardBeginInternal(&gs);
	PG_TRY();
	{
		Oid			types[4] = {TEXTOID, INT8OID, INT4OID, INT8OID};
		Datum		args[4];
		Relation	rel;
		CutRange   *ranges;
		int			nranges = 0;
		bool		open = false;
		int64		watermark = 0;
		uint64		i,
					n;
		SPITupleTable *tt;

		connect_spi();
		if (SPI_execute("SELECT watermark FROM custos.sealer_state", false, 1) != SPI_OK_SELECT)
			elog(ERROR, "could not read the sealer's watermark");
		if (SPI_processed == 1)
		{
			bool		isnull;

			watermark = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
													SPI_tuptable->tupdesc, 1, &isnull));
		}

		/* one row more than the batch tells whether the batch ended the work */
		args[0] = PointerGetDatum(tenant);
		args[1] = Int64GetDatum(after_id);
		args[2] = Int32GetDatum(batch_size + 1);
		args[3] = Int64GetDatum(watermark);
		if (SPI_execute_with_args("SELECT id, recorded_at, actor_key_id, subject_key_id, ctid "
								  "FROM custos.event_log "
								  "WHERE tenant OPERATOR(pg_catalog.=) $1 AND id OPERATOR(pg_catalog.>) $2 "
								  "AND id OPERATOR(pg_catalog.<) $4 ORDER BY tenant, id LIMIT $3",
								  4, types, args, NULL, false, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not read expired events");
		tt = SPI_tuptable;
		n = SPI_processed;
		done = (n <= (uint64) batch_size);

		ranges = palloc(sizeof(CutRange) * (Min(n, (uint64) batch_size) + 1));
		rel = table_open(storage_relid("event_log"), RowExclusiveLock);
		for (i = 0; i < n && i < (uint64) batch_size; i++)
		{
			bool		isnull;
			int64		id = DatumGetInt64(SPI_getbinval(tt->vals[i], tt->tupdesc, 1, &isnull));
			TimestampTz rec = DatumGetTimestampTz(SPI_getbinval(tt->vals[i], tt->tupdesc, 2, &isnull));
			int64		ak = DatumGetInt64(SPI_getbinval(tt->vals[i], tt->tupdesc, 3, &isnull));
			Datum		skd = SPI_getbinval(tt->vals[i], tt->tupdesc, 4, &isnull);
			int64		sk = isnull ? -1 : DatumGetInt64(skd);
			ItemPointer tid;

			if (rec >= cutoff)
			{
				/* the first event still within retention ends the work */
				done = true;
				break;
			}
			last_id = id;
			if (nheld > 0 &&
				(bsearch(&ak, held_keys, nheld, sizeof(int64), cmp_int64) != NULL ||
				 (sk >= 0 && bsearch(&sk, held_keys, nheld, sizeof(int64), cmp_int64) != NULL)))
			{
				held++;
				open = false;
				continue;
			}
			tid = (ItemPointer) DatumGetPointer(SPI_getbinval(tt->vals[i], tt->tupdesc, 5, &isnull));
			simple_heap_delete(rel, tid);
			if (!open)
			{
				ranges[nranges].lo = id;
				nranges++;
				open = true;
			}
			ranges[nranges - 1].hi = id + 1;
			if (deleted == 0 || rec < oldest)
				oldest = rec;
			if (deleted == 0 || rec > newest)
				newest = rec;
			deleted++;
		}
		table_close(rel, NoLock);

		for (i = 0; i < (uint64) nranges; i++)
		{
			Oid			rtypes[4] = {TEXTOID, INT8OID, INT8OID, INT8OID};
			Datum		rargs[4];

			rargs[0] = PointerGetDatum(tenant);
			rargs[1] = Int64GetDatum(ranges[i].lo);
			rargs[2] = Int64GetDatum(ranges[i].hi);
			rargs[3] = Int64GetDatum(run_id);
			if (SPI_execute_with_args("INSERT INTO custos.retention_cut (tenant, id_lo, id_hi, run_id) "
									  "VALUES ($1, $2, $3, $4)",
									  4, rtypes, rargs, NULL, false, 0) != SPI_OK_INSERT)
				elog(ERROR, "could not record the cut");
		}
		SPI_finish();
	}
	PG_FINALLY();
	{
		GuardEndInternal(&gs);
	}
	PG_END_TRY();

	result[0] = Int64GetDatum(deleted);
	result[1] = Int64GetDatum(held);
	if (deleted > 0)
	{
		result[2] = TimestampTzGetDatum(oldest);
		result[3] = TimestampTzGetDatum(newest);
		rnulls[2] = rnulls[3] = false;
	}
	result[4] = Int64GetDatum(last_id);
	result[5] = BoolGetDatum(done);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(rdesc), result, rnulls)));
}

/*
 * Load a tenant's cuts, sorted by id_lo.  A later run's range may span
 * earlier ones (after a hold is lifted, the events between them go too):
 * overlapping ranges are merged, so that RetentionCutContains() can search
 * disjoint ones.  Caller is connected to SPI; read_only keeps the caller's
 * snapshot (verify.c reads cuts and blocks in one).
 */
void
RetentionLoadCuts(Datum tenant, bool read_only, CutSet *cuts)
{
	Oid			types[1] = {TEXTOID};
	uint64		i;

	cuts->n = 0;
	cuts->lo = cuts->hi = NULL;
	/* before version 0.5 nothing was ever cut */
	if (!OidIsValid(get_relname_relid("retention_cut", CustosSchemaOid(false))))
		return;
	if (SPI_execute_with_args("SELECT id_lo, id_hi FROM custos.retention_cut "
							  "WHERE tenant OPERATOR(pg_catalog.=) $1 ORDER BY id_lo",
							  1, types, &tenant, NULL, read_only, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read retention cuts");
	cuts->lo = palloc(sizeof(int64) * Max(SPI_processed, 1));
	cuts->hi = palloc(sizeof(int64) * Max(SPI_processed, 1));
	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		int64		lo = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
		int64		hi = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull));

		if (cuts->n > 0 && lo <= cuts->hi[cuts->n - 1])
		{
			cuts->hi[cuts->n - 1] = Max(cuts->hi[cuts->n - 1], hi);
			continue;
		}
		cuts->lo[cuts->n] = lo;
		cuts->hi[cuts->n] = hi;
		cuts->n++;
	}
}

bool
RetentionCutContains(const CutSet *cuts, int64 id)
{
	int			lo = 0,
				hi = cuts->n - 1;

	while (lo <= hi)
	{
		int			mid = lo + (hi - lo) / 2;

		if (id < cuts->lo[mid])
			hi = mid - 1;
		else if (id >= cuts->hi[mid])
			lo = mid + 1;
		else
			return true;
	}
	return false;
}

/*
 * custos.retention_compact(tenant): drop the tenant's leading blocks whose
 * events are all cut; the checkpoint takes the last one's place.  Returns
 * the number of blocks dropped.
 */
Datum
custos_retention_compact(PG_FUNCTION_ARGS)
{
	text	   *tenant = PG_GETARG_TEXT_PP(0);
	int64		dropped = 0;
	GuardState	gs;

	GuardBeginInternal(&gs);
	PG_TRY();
	{
		Oid			types[5] = {TEXTOID, INT8OID, INT8OID, BYTEAOID, INT8OID};
		Datum		args[5];
		CutSet		cuts;
		Portal		blocks;
		bool		stop = false;
		int64		last_block = -1;
		int64		next_seq = 0;
		bytea	   *last_hash = NULL;
		int64		next_first_id = -1;

		connect_spi();
		args[0] = PointerGetDatum(tenant);
		RetentionLoadCuts(args[0], false, &cuts);

		blocks = SPI_cursor_open_with_args(NULL,
										   "SELECT block_no, first_seq, event_count, block_hash, event_ids "
										   "FROM custos.block WHERE tenant OPERATOR(pg_catalog.=) $1 ORDER BY block_no",
										   1, types, args, NULL, false, CURSOR_OPT_NO_SCROLL);
		while (!stop && cuts.n > 0)
		{
			uint64		b;

			SPI_cursor_fetch(blocks, true, 64);
			if (SPI_processed == 0)
				break;
			for (b = 0; b < SPI_processed; b++)
			{
				HeapTuple	tup = SPI_tuptable->vals[b];
				TupleDesc	td = SPI_tuptable->tupdesc;
				bool		isnull;
				ArrayType  *ids_a = DatumGetArrayTypeP(SPI_getbinval(tup, td, 5, &isnull));
				Datum	   *ids;
				int			nids;
				int			k;
				bool		all_cut = true;

				deconstruct_array(ids_a, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE,
								  &ids, NULL, &nids);
				for (k = 0; k < nids && all_cut; k++)
					all_cut = RetentionCutContains(&cuts, DatumGetInt64(ids[k]));
				if (!all_cut)
				{
					next_first_id = nids > 0 ? DatumGetInt64(ids[0]) : -1;
					stop = true;
					break;
				}
				last_block = DatumGetInt64(SPI_getbinval(tup, td, 1, &isnull));
				next_seq = DatumGetInt64(SPI_getbinval(tup, td, 2, &isnull)) +
					DatumGetInt32(SPI_getbinval(tup, td, 3, &isnull));
				last_hash = DatumGetByteaPCopy(SPI_getbinval(tup, td, 4, &isnull));
				dropped++;
			}
		}
		SPI_cursor_close(blocks);

		if (dropped > 0)
		{
			args[1] = Int64GetDatum(last_block);
			args[2] = Int64GetDatum(next_seq);
			args[3] = PointerGetDatum(last_hash);
			args[4] = Int64GetDatum(next_first_id);
			if (SPI_execute_with_args("DELETE FROM custos.block WHERE tenant OPERATOR(pg_catalog.=) $1 "
									  "AND block_no OPERATOR(pg_catalog.<=) $2",
									  2, types, args, NULL, false, 0) != SPI_OK_DELETE)
				elog(ERROR, "could not drop cut blocks");
			if (SPI_execute_with_args("INSERT INTO custos.checkpoint (tenant, block_no, next_seq, block_hash, cut_at) "
									  "VALUES ($1, $2, $3, $4, pg_catalog.clock_timestamp()) "
									  "ON CONFLICT (tenant) DO UPDATE SET block_no = EXCLUDED.block_no, "
									  "next_seq = EXCLUDED.next_seq, block_hash = EXCLUDED.block_hash, "
									  "cut_at = EXCLUDED.cut_at",
									  4, types, args, NULL, false, 0) != SPI_OK_INSERT)
				elog(ERROR, "could not move the checkpoint");

			/*
			 * Cuts below the first remaining block vouch for nothing any more:
			 * verification starts at the checkpoint.
			 */
			if (SPI_execute_with_args("DELETE FROM custos.retention_cut WHERE tenant OPERATOR(pg_catalog.=) $1 "
									  "AND ($5 OPERATOR(pg_catalog.<) 0 OR id_hi OPERATOR(pg_catalog.<=) $5)",
									  5, types, args, NULL, false, 0) != SPI_OK_DELETE)
				elog(ERROR, "could not drop spent cuts");
		}
		SPI_finish();
	}
	PG_FINALLY();
	{
		GuardEndInternal(&gs);
	}
	PG_END_TRY();

	PG_RETURN_INT64(dropped);
}


/*-------------------------------------------------------------------------
 *
 * seal.c
 *	  The sealer: orders committed events into per-tenant, hash-linked
 *	  blocks, as custos.seal() and as a background worker.
 *
 * Writers never coordinate with each other.  The sealer keeps a watermark W
 * (custos.sealer_state): every event with id < W is sealed, none above.  A
 * round:
 *
 *	1. reads N = last id handed out + 1.  Every id below N has been drawn;
 *	2. waits for every transaction that holds RowExclusiveLock on
 *	   custos.append_fence right now, as CREATE INDEX CONCURRENTLY waits for
 *	   writers (WaitForLockers).  Appends lock the fence before drawing an id
 *	   (append.c), so every transaction holding an id below N is among them.
 *	   The fence is a table of its own so that the wait does not include
 *	   (auto)vacuum of custos.event_log;
 *	   once they are gone, the set of events with ids in [W, N) is final,
 *	   whatever order they committed in;
 *	3. locks the sealer_state row (one sealer at a time) and reads W; a
 *	   sealer that ran meanwhile may already have passed N;
 *	4. reads those events with a fresh snapshot, grouped by tenant in id
 *	   order, hashes each into a leaf, and appends blocks of at most
 *	   custos.block_max_events leaves to each tenant's chain, assigning the
 *	   next gapless positions;
 *	5. moves W to N (or to the first unsealed id when the round was capped
 *	   at custos.seal_batch_events).
 *
 * This needs the id sequence to hand out ids in time order across sessions
 * (CACHE 1), and READ COMMITTED (a fresh snapshot after the wait): an older
 * snapshot would miss events that committed during the wait and the
 * watermark would pass over them for good.
 *
 * A transaction that appends and then stays open holds back sealing of every
 * later event until it ends: that is the price of never sealing an event
 * before all events with smaller ids are known.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "chain.h"
#include "custos.h"
#include "guard.h"
#include "readaudit.h"
#include "seal.h"

PG_FUNCTION_INFO_V1(custos_seal);
PG_FUNCTION_INFO_V1(custos_status);

/* one tenant's leaves awaiting a block */
typedef struct PendingBlock
{
	char	   *tenant;
	int64		n;
	int64		cap;
	int64	   *ids;
	uint8	   *leaves;
} PendingBlock;

/* the tip of a tenant's chain */
typedef struct ChainTip
{
	int64		next_block_no;
	int64		next_seq;
	uint8		hash[CUSTOS_HASH_LEN];
} ChainTip;

static void
spi_check(int rc, int expected, const char *what)
{
	if (rc != expected)
		elog(ERROR, "%s failed: %s", what, SPI_result_code_string(rc));
}

static int64
spi_int8(int row, int col, bool *isnull)
{
	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[row],
									   SPI_tuptable->tupdesc, col, isnull));
}

static void
copy_hash(int row, int col, uint8 *out)
{
	bool		isnull;
	bytea	   *b = DatumGetByteaPP(SPI_getbinval(SPI_tuptable->vals[row],
												  SPI_tuptable->tupdesc, col, &isnull));

	if (isnull || VARSIZE_ANY_EXHDR(b) != CUSTOS_HASH_LEN)
		elog(ERROR, "stored hash is malformed");
	memcpy(out, VARDATA_ANY(b), CUSTOS_HASH_LEN);
}

/* Where the tenant's chain continues: its last block, else its checkpoint. */
static void
chain_tip(const char *tenant, ChainTip *tip)
{
	Datum		arg[1];
	Oid			types[1] = {TEXTOID};
	bool		isnull;

	arg[0] = CStringGetTextDatum(tenant);
	spi_check(SPI_execute_with_args("SELECT block_no, first_seq + event_count, block_hash "
									"FROM custos.block WHERE tenant OPERATOR(pg_catalog.=) $1 "
									"ORDER BY block_no DESC LIMIT 1",
									1, types, arg, NULL, false, 1),
			  SPI_OK_SELECT, "reading chain tip");
	if (SPI_processed == 0)
		spi_check(SPI_execute_with_args("SELECT block_no, next_seq, block_hash "
										"FROM custos.checkpoint WHERE tenant OPERATOR(pg_catalog.=) $1",
										1, types, arg, NULL, false, 1),
				  SPI_OK_SELECT, "reading checkpoint");
	if (SPI_processed == 0)
	{
		tip->next_block_no = 0;
		tip->next_seq = 0;
		memset(tip->hash, 0, CUSTOS_HASH_LEN);
		return;
	}
	tip->next_block_no = spi_int8(0, 1, &isnull) + 1;
	tip->next_seq = spi_int8(0, 2, &isnull);
	copy_hash(0, 3, tip->hash);
}

static bytea *
make_bytea(const void *data, size_t len)
{
	bytea	   *b = palloc(VARHDRSZ + len);

	SET_VARSIZE(b, VARHDRSZ + len);
	memcpy(VARDATA(b), data, len);
	return b;
}

/*
 * Write pb as the next block of its tenant, covering ids [id_lo, id_hi).
 */
static void
write_block(CryptoHasher *h, PendingBlock *pb, ChainTip *tip,
			int64 id_lo, int64 id_hi, TimestampTz sealed_at)
{
	ChainBlockHeader hdr;
	uint8		block_hash[CUSTOS_HASH_LEN];
	Datum		ids_array;
	Datum		arg[12];
	Oid			types[12] = {TEXTOID, INT8OID, INT8OID, INT4OID, INT8OID, INT8OID,
	INT8ARRAYOID, BYTEAOID, BYTEAOID, BYTEAOID, BYTEAOID, TIMESTAMPTZOID};
	Datum	   *idd;
	int64		i;

	hdr.tenant = pb->tenant;
	hdr.block_no = tip->next_block_no;
	hdr.first_seq = tip->next_seq;
	hdr.count = pb->n;
	hdr.id_lo = id_lo;
	hdr.id_hi = id_hi;
	hdr.sealed_at = sealed_at;
	memcpy(hdr.prev_hash, tip->hash, CUSTOS_HASH_LEN);
	ChainMerkleRoot(h, pb->leaves, pb->n, hdr.merkle_root);
	ChainBlockHash(h, &hdr, block_hash);

	idd = palloc(sizeof(Datum) * pb->n);
	for (i = 0; i < pb->n; i++)
		idd[i] = Int64GetDatum(pb->ids[i]);
	ids_array = PointerGetDatum(construct_array(idd, pb->n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));

	arg[0] = CStringGetTextDatum(pb->tenant);
	arg[1] = Int64GetDatum(hdr.block_no);
	arg[2] = Int64GetDatum(hdr.first_seq);
	arg[3] = Int32GetDatum((int32) pb->n);
	arg[4] = Int64GetDatum(id_lo);
	arg[5] = Int64GetDatum(id_hi);
	arg[6] = ids_array;
	arg[7] = PointerGetDatum(make_bytea(pb->leaves, pb->n * CUSTOS_HASH_LEN));
	arg[8] = PointerGetDatum(make_bytea(hdr.merkle_root, CUSTOS_HASH_LEN));
	arg[9] = PointerGetDatum(make_bytea(hdr.prev_hash, CUSTOS_HASH_LEN));
	arg[10] = PointerGetDatum(make_bytea(block_hash, CUSTOS_HASH_LEN));
	arg[11] = TimestampTzGetDatum(sealed_at);
	spi_check(SPI_execute_with_args("INSERT INTO custos.block (tenant, block_no, first_seq, event_count, "
									"id_lo, id_hi, event_ids, leaves, merkle_root, prev_hash, block_hash, "
									"sealed_at, format) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 1)",
									12, types, arg, NULL, false, 0),
			  SPI_OK_INSERT, "inserting block");

	tip->next_block_no++;
	tip->next_seq += pb->n;
	memcpy(tip->hash, block_hash, CUSTOS_HASH_LEN);
	pb->n = 0;
}

/*
 * Lock the sealer state row and return the watermark.  The row is created
 * on first use rather than by the install script, so that pg_dump's copy of
 * it restores into an empty table.
 */
static int64
lock_sealer_state(void)
{
	bool		isnull;

	spi_check(SPI_execute("INSERT INTO custos.sealer_state (watermark, sealed_total) VALUES (1, 0) "
						  "ON CONFLICT (singleton) DO NOTHING", false, 0),
			  SPI_OK_INSERT, "creating sealer state");
	spi_check(SPI_execute("SELECT watermark FROM custos.sealer_state FOR UPDATE", false, 1),
			  SPI_OK_SELECT, "locking sealer state");
	if (SPI_processed != 1)
		elog(ERROR, "custos.sealer_state must hold exactly one row");
	return spi_int8(0, 1, &isnull);
}

/*
 * Seal one round.  Returns the number of events sealed; *more is set when
 * the round was capped and events below the drawn id remain.  Caller runs
 * a READ COMMITTED transaction.
 */
static int64
seal_round(bool *more)
{
	Oid			nsp = CustosSchemaOid(false);
	Oid			fence = get_relname_relid("append_fence", nsp);
	Oid			event_seq = get_relname_relid("event_id_seq", nsp);
	int64		watermark;
	int64		upto;
	int64		sealed = 0;
	bool		isnull;
	Datum		lastval;
	LOCKTAG		tag;
	Datum		arg[3];
	Oid			types[3] = {INT8OID, INT8OID, INT4OID};
	Portal		portal;
	PendingBlock pb = {0};
	ChainTip	tip;
	int64		block_lo = 0;
	CryptoHasher h = {0};
	TimestampTz now;
	MemoryContext batchcxt;
	MemoryContext old;

	*more = false;

	/* pg_sequence_last_value() is NULL until the first id is drawn */
	{
		LOCAL_FCINFO(fcinfo, 1);

		InitFunctionCallInfoData(*fcinfo, NULL, 1, InvalidOid, NULL, NULL);
		fcinfo->args[0].value = ObjectIdGetDatum(event_seq);
		fcinfo->args[0].isnull = false;
		lastval = pg_sequence_last_value(fcinfo);
		if (fcinfo->isnull)
			return 0;
	}
	upto = DatumGetInt64(lastval) + 1;

	/* nothing new since the last round: skip the wait */
	spi_check(SPI_execute("SELECT watermark FROM custos.sealer_state", false, 1),
			  SPI_OK_SELECT, "reading sealer state");
	if (SPI_processed == 1 && upto <= spi_int8(0, 1, &isnull))
		return 0;
	if (SPI_processed == 0 && upto <= 1)
		return 0;

	/*
	 * Wait for in-flight writers before taking the sealer_state row lock, so
	 * that a transaction which appended and then calls custos.seal() (and so
	 * waits for that row lock) is never waited for by a sealer holding it.
	 */
	SET_LOCKTAG_RELATION(tag, MyDatabaseId, fence);
	WaitForLockers(tag, ShareLock, false);

	watermark = lock_sealer_state();
	if (upto <= watermark)
		return 0;			/* another sealer got there first */
	/* after the wait and the lock, so that blocks are stamped in order */
	now = GetCurrentTimestamp();

	/* cap the round: find the first id beyond custos.seal_batch_events */
	arg[0] = Int64GetDatum(watermark);
	arg[1] = Int64GetDatum(upto);
	arg[2] = Int32GetDatum(custos_seal_batch_events);
	spi_check(SPI_execute_with_args("SELECT id FROM custos.event_log "
									"WHERE id OPERATOR(pg_catalog.>=) $1 AND id OPERATOR(pg_catalog.<) $2 "
									"ORDER BY id OFFSET $3 LIMIT 1",
									3, types, arg, NULL, false, 1),
			  SPI_OK_SELECT, "capping seal round");
	if (SPI_processed == 1)
	{
		upto = spi_int8(0, 1, &isnull);
		*more = true;
	}
	arg[1] = Int64GetDatum(upto);

	batchcxt = AllocSetContextCreate(CurrentMemoryContext, "custos seal round",
									 ALLOCSET_DEFAULT_SIZES);
	portal = SPI_cursor_open_with_args(NULL,
									   "SELECT " CHAIN_EVENT_COLUMNS " FROM custos.event_log "
									   "WHERE id OPERATOR(pg_catalog.>=) $1 AND id OPERATOR(pg_catalog.<) $2 "
									   "ORDER BY tenant, id",
									   2, types, arg, NULL, false, CURSOR_OPT_NO_SCROLL);
	for (;;)
	{
		SPITupleTable *tt;
		uint64		nrows;
		uint64		r;

		SPI_cursor_fetch(portal, true, 1000);
		/* write_block() and chain_tip() run SPI too: keep our own pointers */
		tt = SPI_tuptable;
		nrows = SPI_processed;
		if (nrows == 0)
			break;
		for (r = 0; r < nrows; r++)
		{
			Datum		values[CHAIN_EVENT_NCOLUMNS];
			bool		nulls[CHAIN_EVENT_NCOLUMNS];
			char	   *tenant;
			int64		id;

			heap_deform_tuple(tt->vals[r], tt->tupdesc, values, nulls);
			id = DatumGetInt64(values[0]);
			tenant = TextDatumGetCString(values[1]);

			if (pb.tenant == NULL || strcmp(pb.tenant, tenant) != 0)
			{
				/* a new tenant: finish the last one's block up to the window's end */
				if (pb.tenant != NULL)
					write_block(&h, &pb, &tip, block_lo, upto, now);
				MemoryContextReset(batchcxt);
				old = MemoryContextSwitchTo(batchcxt);
				pb.tenant = pstrdup(tenant);
				pb.cap = Min(custos_block_max_events, 1024);
				pb.ids = palloc(sizeof(int64) * pb.cap);
				pb.leaves = palloc(CUSTOS_HASH_LEN * pb.cap);
				pb.n = 0;
				MemoryContextSwitchTo(old);
				chain_tip(pb.tenant, &tip);
				block_lo = watermark;
			}
			else if (pb.n >= custos_block_max_events)
			{
				/* a full block ends where the next event's id begins */
				write_block(&h, &pb, &tip, block_lo, id, now);
				block_lo = id;
			}

			if (pb.n == pb.cap)
			{
				old = MemoryContextSwitchTo(batchcxt);
				pb.cap *= 2;
				pb.ids = repalloc(pb.ids, sizeof(int64) * pb.cap);
				pb.leaves = repalloc(pb.leaves, CUSTOS_HASH_LEN * pb.cap);
				MemoryContextSwitchTo(old);
			}
			pb.ids[pb.n] = id;
			ChainLeafHash(&h, values, nulls, pb.leaves + pb.n * CUSTOS_HASH_LEN);
			pb.n++;
			sealed++;
			pfree(tenant);
		}
		SPI_freetuptable(tt);
	}
	SPI_cursor_close(portal);
	if (pb.tenant != NULL && pb.n > 0)
		write_block(&h, &pb, &tip, block_lo, upto, now);
	CryptoHasherFree(&h);
	MemoryContextDelete(batchcxt);

	arg[0] = Int64GetDatum(upto);
	arg[1] = Int64GetDatum(sealed);
	spi_check(SPI_execute_with_args("UPDATE custos.sealer_state SET watermark = $1, "
									"sealed_total = sealed_total OPERATOR(pg_catalog.+) $2, "
									"last_seal_at = pg_catalog.clock_timestamp()",
									2, types, arg, NULL, false, 0),
			  SPI_OK_UPDATE, "advancing watermark");
	return sealed;
}

/*
 * Seal one capped round inside the caller's transaction.  *more reports
 * whether a further round has work.
 */
static int64
seal_once(bool *more)
{
	GuardState	gs;
	int64		n = 0;

	GuardBeginInternal(&gs);
	PG_TRY();
	{
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		/* queued READ records become events first, and are sealed with the rest */
		(void) ReadAuditDrain();
		n = seal_round(more);
		SPI_finish();
	}
	PG_FINALLY();
	{
		GuardEndInternal(&gs);
	}
	PG_END_TRY();
	return n;
}

/* Seal everything pending in the current transaction. */
int64
SealPending(void)
{
	int64		total = 0;
	bool		more;

	if (IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TRANSACTION_STATE),
				 errmsg("custos.seal() cannot run in a REPEATABLE READ or SERIALIZABLE transaction"),
				 errdetail("Sealing must see events that commit while it waits for their writers."),
				 errhint("Call it in a READ COMMITTED transaction, for example on its own.")));
	do
	{
		total += seal_once(&more);
		CHECK_FOR_INTERRUPTS();
	} while (more);
	return total;
}

/* custos.seal() returns bigint */
Datum
custos_seal(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64(SealPending());
}

/* custos.status() */
Datum
custos_status(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[6];
	bool		nulls[6] = {0};
	GuardState	gs;
	uint32		pid = custos_shared ? pg_atomic_read_u32(&custos_shared->sealer_pid) : 0;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	tupdesc = BlessTupleDesc(tupdesc);

	values[0] = BoolGetDatum(custos_shared != NULL);
	values[1] = Int32GetDatum((int32) pid);
	nulls[1] = (pid == 0);

	GuardBeginInternal(&gs);
	PG_TRY();
	{
		bool		isnull;

		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		spi_check(SPI_execute("SELECT coalesce(s.watermark, 1), coalesce(s.sealed_total, 0), s.last_seal_at, "
							  "(SELECT pg_catalog.count(*) FROM custos.event_log e "
							  " WHERE e.id OPERATOR(pg_catalog.>=) coalesce(s.watermark, 1)) "
							  "FROM (SELECT 1) one LEFT JOIN custos.sealer_state s ON true", true, 1),
				  SPI_OK_SELECT, "reading sealer state");
		values[2] = Int64GetDatum(spi_int8(0, 1, &isnull));
		values[3] = Int64GetDatum(spi_int8(0, 2, &isnull));
		values[4] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &nulls[4]);
		values[5] = Int64GetDatum(spi_int8(0, 4, &isnull));
		SPI_finish();
	}
	PG_FINALLY();
	{
		GuardEndInternal(&gs);
	}
	PG_END_TRY();

	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/* ------------------------------------------------------------------------
 * Background worker
 * ------------------------------------------------------------------------
 */

void
SealRegisterWorker(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	/* after a crash or an error, come back soon: sealing delay is a promise */
	worker.bgw_restart_time = 1;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "custos");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "custos_sealer_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "custos sealer");
	snprintf(worker.bgw_type, BGW_MAXLEN, "custos sealer");
	RegisterBackgroundWorker(&worker);
}

static void
sealer_clear_pid(int code, Datum arg)
{
	if (custos_shared)
		pg_atomic_write_u32(&custos_shared->sealer_pid, 0);
	ReadAuditSetSealerLatch(NULL);
}

/*
 * One transaction of sealing.  Returns true when more work is waiting.
 * Errors are reported and the transaction rolled back; the next round
 * retries, so a deadlock with a custos.seal() call or a dropped extension
 * costs one round, not the worker.
 */
static bool
sealer_step(MemoryContext loopcxt)
{
	bool		more = false;

	PG_TRY();
	{
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		/* sealing needs a fresh snapshot after its wait: see the file header */
		XactIsoLevel = XACT_READ_COMMITTED;
		PushActiveSnapshot(GetTransactionSnapshot());
		pgstat_report_activity(STATE_RUNNING, "sealing");
		if (OidIsValid(get_extension_oid("custos", true)))
			(void) seal_once(&more);
		PopActiveSnapshot();
		CommitTransactionCommand();
		pgstat_report_activity(STATE_IDLE, NULL);
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(loopcxt);
		EmitErrorReport();
		FlushErrorState();
		AbortCurrentTransaction();
		pgstat_report_activity(STATE_IDLE, NULL);
		more = false;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(loopcxt);
	return more;
}

void
custos_sealer_main(Datum arg)
{
	MemoryContext loopcxt;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	BackgroundWorkerInitializeConnection(custos_database, NULL, 0);

	if (custos_shared)
		pg_atomic_write_u32(&custos_shared->sealer_pid, (uint32) MyProcPid);
	ReadAuditSetSealerLatch(MyLatch);
	before_shmem_exit(sealer_clear_pid, (Datum) 0);

	loopcxt = AllocSetContextCreate(TopMemoryContext, "custos sealer loop",
									ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(loopcxt);

	for (;;)
	{
		bool		more;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		more = custos_sealer_enabled ? sealer_step(loopcxt) : false;
		MemoryContextReset(loopcxt);

		if (!more)
		{
			(void) WaitLatch(MyLatch,
							 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 custos_seal_interval_ms,
							 PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
		}
	}
}

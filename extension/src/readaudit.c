/*-------------------------------------------------------------------------
 *
 * readaudit.c
 *	  Every read of protected data by a principal becomes an audit event:
 *	  reads of tables put under custos.protect() and of the audit log itself.
 *
 * The SELECT policies of those tables end in custos.note_read(tenant,
 * relation), a marker that records which tenants' rows passed the policy
 * for this caller (it is costed high, so the planner evaluates it after the
 * policy's own test).  When the top-level query ends, an ExecutorEnd hook
 * puts one record per relation and tenant read (rows examined and returned,
 * the caller, its stated purpose from custos.set_purpose()) into a queue in
 * shared memory.  The sealer (background worker or custos.seal()) drains the
 * queue into READ events in its own transaction, one event per caller,
 * relation, tenant and purpose per drain, with the number of queries.
 *
 * Why a queue and not an append in the reading transaction: a reader could
 * otherwise read and roll back, and its READ event would vanish with the
 * rollback.  Queued records survive the reader's rollback; they are lost only
 * if the server crashes before the sealer appends them (within about
 * custos.seal_interval).  Slots are taken by a draining transaction and
 * freed at its commit, or handed back at its abort, so a failed drain loses
 * nothing.
 *
 * Fail closed: a read whose record cannot be queued (the queue stays full
 * for custos.read_queue_timeout, or the server is a standby, where nothing
 * could drain it) fails.  Reads by custos' own code and by superusers
 * without a principal are not recorded (RLS does not apply to them; pgaudit
 * covers DBAs).  Needs custos in shared_preload_libraries; without it,
 * custos.note_read() refuses protected reads rather than let them go
 * unrecorded.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/parallel.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "commands/dbcommands.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/snapmgr.h"

#include "append.h"
#include "custos.h"
#include "guard.h"
#include "privacy.h"
#include "readaudit.h"

PG_FUNCTION_INFO_V1(custos_note_read);
PG_FUNCTION_INFO_V1(custos_set_purpose);

ExecutorEnd_hook_type prev_ExecutorEnd = NULL;

typedef struct ReadKey
{
	Oid			relid;
	char		tenant[132];	/* tenant ids are at most 128 bytes */
} ReadKey;

typedef struct ReadEntry
{
	ReadKey		key;
	int64		rows;
	/*
	 * Who read and what, captured when the first row is noted: at abort the
	 * caller may already be cleared and catalog lookups are best avoided.
	 */
	bool		audit_log;
	char		relname[2 * NAMEDATALEN + 2];
	char		access[80];
	char		actor[80];
	char		actor_type[16];
} ReadEntry;

typedef enum SlotState
{
	SLOT_FREE = 0,
	SLOT_READY,
	SLOT_TAKEN
} SlotState;

typedef struct ReadSlot
{
	SlotState	state;
	int			taken_by;		/* pid of the draining backend */
	SubTransactionId taken_subxact;
	Oid			dbid;
	TimestampTz at;
	int64		rows_examined;
	int64		rows_returned;
	bool		audit_log;
	char		tenant[132];
	char		relname[2 * NAMEDATALEN + 2];
	char		access[80];
	char		actor[80];
	char		actor_type[16];
	char		purpose[256];
} ReadSlot;

typedef struct ReadQueue
{
	LWLock	   *lock;
	int			nslots;
	int			used;			/* slots not SLOT_FREE; under lock */
	int			hint;			/* where to look for a free slot first */
	Latch	   *sealer_latch;	/* woken when a record is queued */
	ReadSlot	slots[FLEXIBLE_ARRAY_MEMBER];
} ReadQueue;

static ReadQueue *queue = NULL;
static bool drain_callbacks = false;

static void
copy_str(char *dst, size_t size, const char *src)
{
	strlcpy(dst, src ? src : "", size);
}

static HTAB *reads = NULL;		/* in TopTransactionContext */
static char *purpose = NULL;	/* in TopTransactionContext */
static bool hook_installed = false;
static bool xact_callback_registered = false;

static void enqueue_reads(uint64 returned, bool aborting);

static void
readaudit_xact_callback(XactEvent event, void *arg)
{
	/*
	 * Rows already delivered by a query that then failed (a cursor, single-row
	 * mode) were read all the same: queue them at abort, while
	 * TopTransactionContext still exists.
	 */
	if ((event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT) && reads != NULL)
		enqueue_reads(0, true);
	/* TopTransactionContext goes away at every transaction end */
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_PREPARE)
	{
		reads = NULL;
		purpose = NULL;
	}
}

static void
readaudit_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						   SubTransactionId parentSubid, void *arg)
{
	/* a caught error (savepoint, plpgsql EXCEPTION) does not unread rows */
	if (event == SUBXACT_EVENT_ABORT_SUB && reads != NULL)
		enqueue_reads(0, true);
}

static void
ensure_callback(void)
{
	if (!xact_callback_registered)
	{
		RegisterXactCallback(readaudit_xact_callback, NULL);
		RegisterSubXactCallback(readaudit_subxact_callback, NULL);
		xact_callback_registered = true;
	}
}

/*
 * custos.note_read(tenant text, relation regclass) returns boolean, always
 * true: the row passed the policy and is read by a principal.
 */
Datum
custos_note_read(PG_FUNCTION_ARGS)
{
	ReadKey		key;
	ReadEntry  *e;
	bool		found;
	text	   *tenant;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || GuardInternalActive() ||
		!PrivacyHasCaller())
		PG_RETURN_BOOL(true);
	if (!hook_installed || queue == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("reading protected data needs custos in shared_preload_libraries"),
				 errdetail("Every read of protected data is recorded by an executor hook that is not loaded."),
				 errhint("Add custos to shared_preload_libraries and restart.")));
	/*
	 * Records are appended by the sealer, which serves one database; records
	 * of another would wait in the shared queue for good and fill it.
	 */
	if (strcmp(get_database_name(MyDatabaseId), custos_database) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("reads of protected data can be recorded only in database \"%s\"", custos_database),
				 errdetail("The custos sealer, which appends read records, serves that database (custos.database)."),
				 errhint("Use custos in the database named by custos.database.")));

	ensure_callback();
	tenant = PG_GETARG_TEXT_PP(0);
	memset(&key, 0, sizeof(key));
	key.relid = PG_GETARG_OID(1);
	memcpy(key.tenant, VARDATA_ANY(tenant), Min(VARSIZE_ANY_EXHDR(tenant), sizeof(key.tenant) - 1));

	if (reads == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(ReadKey);
		ctl.entrysize = sizeof(ReadEntry);
		ctl.hcxt = TopTransactionContext;
		reads = hash_create("custos reads", 16, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	e = hash_search(reads, &key, HASH_FIND, NULL);
	if (e == NULL)
	{
		/*
		 * The marker is callable directly: record only tenants the caller may
		 * read, so nobody can write READ events into another tenant's log.
		 */
		if (!PrivacyMayRead(key.tenant))
			PG_RETURN_BOOL(true);
		e = hash_search(reads, &key, HASH_ENTER, &found);
		e->rows = 0;
		{
			Oid			nsp = CustosSchemaOid(true);
			char	   *relname = get_rel_name(key.relid);

			e->audit_log = OidIsValid(nsp) && get_rel_namespace(key.relid) == nsp;
			copy_str(e->relname, sizeof(e->relname),
					 psprintf("%s.%s", get_namespace_name(get_rel_namespace(key.relid)),
							  relname ? relname : "?"));
			copy_str(e->access, sizeof(e->access), PrivacyAccess());
			copy_str(e->actor, sizeof(e->actor), PrivacyCallerPrincipal());
			copy_str(e->actor_type, sizeof(e->actor_type), PrivacyCallerKind());
		}
	}
	e->rows++;
	PG_RETURN_BOOL(true);
}

/* custos.set_purpose(purpose text): why the caller reads, for this transaction */
Datum
custos_set_purpose(PG_FUNCTION_ARGS)
{
	ensure_callback();
	purpose = PG_ARGISNULL(0) ? NULL :
		MemoryContextStrdup(TopTransactionContext, text_to_cstring(PG_GETARG_TEXT_PP(0)));
	PG_RETURN_VOID();
}

static void
push_pair(JsonbParseState **st, const char *key, const char *value)
{
	JsonbValue	k,
				v;

	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	v.type = jbvString;
	v.val.string.val = (char *) value;
	v.val.string.len = strlen(value);
	pushJsonbValue(st, WJB_KEY, &k);
	pushJsonbValue(st, WJB_VALUE, &v);
}

Size
ReadAuditShmemSize(void)
{
	return add_size(offsetof(ReadQueue, slots),
					mul_size(custos_read_queue_size, sizeof(ReadSlot)));
}

/* Caller holds AddinShmemInitLock. */
void
ReadAuditShmemInit(void)
{
	bool		found;

	queue = ShmemInitStruct("custos read queue", ReadAuditShmemSize(), &found);
	if (!found)
	{
		memset(queue, 0, ReadAuditShmemSize());
		queue->lock = &(GetNamedLWLockTranche("custos read queue"))->lock;
		queue->nslots = custos_read_queue_size;
	}
}

void
ReadAuditSetSealerLatch(Latch *latch)
{
	if (queue)
		queue->sealer_latch = latch;
}

/*
 * Queue the records of the query that just ended; fail closed.  While the
 * transaction is aborting nothing can fail any more: a record that does not
 * fit is reported as a WARNING.
 */
static void
enqueue_reads(uint64 returned, bool aborting)
{
	HASH_SEQ_STATUS it;
	ReadEntry  *e;
	HTAB	   *todo = reads;
	TimestampTz now = GetCurrentTimestamp();
	int			used = 0;

	reads = NULL;
	if (RecoveryInProgress())
		ereport(aborting ? WARNING : ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("reads of protected data cannot be recorded on a standby"),
				 errdetail("custos records every read of protected data; a standby cannot append audit events."),
				 errhint("Read protected data on the primary.")));

	hash_seq_init(&it, todo);
	while ((e = hash_seq_search(&it)) != NULL)
	{
		ReadSlot	rec;
		TimestampTz deadline = TimestampTzPlusMilliseconds(now, custos_read_queue_timeout_ms);

		memset(&rec, 0, sizeof(rec));
		rec.state = SLOT_READY;
		rec.dbid = MyDatabaseId;
		rec.at = now;
		rec.rows_examined = e->rows;
		rec.rows_returned = (int64) returned;
		rec.audit_log = e->audit_log;
		copy_str(rec.tenant, sizeof(rec.tenant), e->key.tenant);
		copy_str(rec.relname, sizeof(rec.relname), e->relname);
		copy_str(rec.access, sizeof(rec.access), e->access);
		copy_str(rec.actor, sizeof(rec.actor), e->actor);
		copy_str(rec.actor_type, sizeof(rec.actor_type), e->actor_type);
		copy_str(rec.purpose, sizeof(rec.purpose), purpose);

		for (;;)
		{
			int			i;
			int			n;
			bool		queued = false;

			/*
			 * The count says at once whether there is room; the drain frees
			 * slots roughly in the order they were filled, so the search
			 * from after the last one filled is short.
			 */
			LWLockAcquire(queue->lock, LW_EXCLUSIVE);
			if (queue->used < queue->nslots)
				for (n = 0, i = queue->hint; n < queue->nslots; n++, i = (i + 1) % queue->nslots)
					if (queue->slots[i].state == SLOT_FREE)
					{
						queue->slots[i] = rec;
						queue->used++;
						queue->hint = (i + 1) % queue->nslots;
						queued = true;
						break;
					}
			used = queue->used;
			LWLockRelease(queue->lock);
			if (queued)
				break;
			if (queue->sealer_latch)
				SetLatch(queue->sealer_latch);
			if (aborting)
			{
				ereport(WARNING,
						(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
						 errmsg("the read audit queue is full: a read of \"%s\" by \"%s\" in an aborted transaction was not recorded",
								rec.relname, rec.access)));
				break;
			}
			if (GetCurrentTimestamp() >= deadline)
				ereport(ERROR,
						(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
						 errmsg("the read audit queue is full"),
						 errdetail("This read cannot be recorded, so it is refused."),
						 errhint("Check that the custos sealer is running, or raise custos.read_queue_size.")));
			CHECK_FOR_INTERRUPTS();
			pg_usleep(1000L);
		}
	}
	hash_destroy(todo);

	/*
	 * The sealer drains the queue every custos.seal_interval anyway; waking
	 * it for every read made it run hundreds of rounds a second.  Wake it
	 * only when the queue is half full.
	 */
	if (queue->sealer_latch && used * 2 >= queue->nslots)
		SetLatch(queue->sealer_latch);
}

/* Hand slots this backend took back (abort) or free them (commit). */
static void
settle_taken(bool committed, SubTransactionId from_subxact)
{
	int			i;

	if (queue == NULL)
		return;
	LWLockAcquire(queue->lock, LW_EXCLUSIVE);
	for (i = 0; i < queue->nslots; i++)
	{
		ReadSlot   *slot = &queue->slots[i];

		if (slot->state == SLOT_TAKEN && slot->taken_by == MyProcPid &&
			slot->taken_subxact >= from_subxact)
		{
			slot->state = committed ? SLOT_FREE : SLOT_READY;
			if (committed)
				queue->used--;
		}
	}
	LWLockRelease(queue->lock);
}

static void
drain_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT)
		settle_taken(true, InvalidSubTransactionId);
	else if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT ||
			 event == XACT_EVENT_PREPARE)
		settle_taken(false, InvalidSubTransactionId);
}

static void
drain_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					   SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB)
		settle_taken(false, mySubid);
}

static void
drain_exit_callback(int code, Datum arg)
{
	settle_taken(false, InvalidSubTransactionId);
}

static void
push_count(JsonbParseState **st, const char *key, int64 n)
{
	JsonbValue	k,
				v;

	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	v.type = jbvNumeric;
	v.val.numeric = int64_to_numeric(n);
	pushJsonbValue(st, WJB_KEY, &k);
	pushJsonbValue(st, WJB_VALUE, &v);
}

/* Records that differ only in time and counts are merged into one event. */
typedef struct ReadGroupKey
{
	bool		audit_log;
	char		tenant[132];
	char		relname[2 * NAMEDATALEN + 2];
	char		access[80];
	char		actor[80];
	char		actor_type[16];
	char		purpose[256];
} ReadGroupKey;

typedef struct ReadGroup
{
	ReadGroupKey key;
	int64		queries;
	int64		rows_examined;
	int64		rows_returned;
	TimestampTz first_at;
	TimestampTz last_at;
} ReadGroup;

static void
push_time(JsonbParseState **st, const char *key, TimestampTz t)
{
	push_pair(st, key, JsonEncodeDateTime(NULL, TimestampTzGetDatum(t), TIMESTAMPTZOID, NULL));
}

/*
 * Append queued READ records of this database as events, in the caller's
 * transaction.  Records of one caller reading one relation of one tenant for
 * one purpose are merged into one event per drain (metadata.queries counts
 * them; first_at and last_at bound them), so that the sealer's cost follows
 * the number of distinct readers, not the read rate.  Returns the number of
 * events appended.  Called by the sealer before it seals.
 */
int64
ReadAuditDrain(void)
{
	ReadSlot   *batch;
	int			n = 0;
	int			i;
	int64		appended = 0;
	SubTransactionId subxact = GetCurrentSubTransactionId();
	HTAB	   *groups;
	HASHCTL		ctl;
	HASH_SEQ_STATUS it;
	ReadGroup  *g;

	if (queue == NULL)
		return 0;
	if (!drain_callbacks)
	{
		RegisterXactCallback(drain_xact_callback, NULL);
		RegisterSubXactCallback(drain_subxact_callback, NULL);
		before_shmem_exit(drain_exit_callback, (Datum) 0);
		drain_callbacks = true;
	}

	batch = palloc(sizeof(ReadSlot) * queue->nslots);
	LWLockAcquire(queue->lock, LW_EXCLUSIVE);
	for (i = 0; i < queue->nslots; i++)
	{
		ReadSlot   *slot = &queue->slots[i];

		if (slot->state == SLOT_READY && slot->dbid == MyDatabaseId)
		{
			slot->state = SLOT_TAKEN;
			slot->taken_by = MyProcPid;
			slot->taken_subxact = subxact;
			batch[n++] = *slot;
		}
	}
	LWLockRelease(queue->lock);
	if (n == 0)
	{
		pfree(batch);
		return 0;
	}

	ctl.keysize = sizeof(ReadGroupKey);
	ctl.entrysize = sizeof(ReadGroup);
	ctl.hcxt = CurrentMemoryContext;
	groups = hash_create("custos read groups", 64, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	for (i = 0; i < n; i++)
	{
		ReadSlot   *r = &batch[i];
		ReadGroupKey key;
		bool		found;

		/* memset: the key is hashed and compared as bytes, padding included */
		memset(&key, 0, sizeof(key));
		key.audit_log = r->audit_log;
		memcpy(key.tenant, r->tenant, sizeof(key.tenant));
		memcpy(key.relname, r->relname, sizeof(key.relname));
		memcpy(key.access, r->access, sizeof(key.access));
		memcpy(key.actor, r->actor, sizeof(key.actor));
		memcpy(key.actor_type, r->actor_type, sizeof(key.actor_type));
		memcpy(key.purpose, r->purpose, sizeof(key.purpose));
		g = hash_search(groups, &key, HASH_ENTER, &found);
		if (!found)
		{
			g->queries = 0;
			g->rows_examined = g->rows_returned = 0;
			g->first_at = g->last_at = r->at;
		}
		g->queries++;
		g->rows_examined += r->rows_examined;
		g->rows_returned += r->rows_returned;
		g->first_at = Min(g->first_at, r->at);
		g->last_at = Max(g->last_at, r->at);
	}
	pfree(batch);

	hash_seq_init(&it, groups);
	while ((g = hash_seq_search(&it)) != NULL)
	{
		JsonbParseState *st = NULL;
		JsonbValue *res;
		JsonbValue	k;

		pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
		push_pair(&st, "tenant", g->key.tenant);
		push_time(&st, "occurred_at", g->first_at);
		push_pair(&st, "category", "access");
		push_pair(&st, "action", "READ");
		push_pair(&st, "resource_type", g->key.audit_log ? "AUDIT_LOG" : "TABLE");
		push_pair(&st, "resource_id", g->key.relname);
		if (g->key.actor[0])
		{
			push_pair(&st, "actor", g->key.actor);
			push_pair(&st, "actor_type", g->key.actor_type);
		}
		k.type = jbvString;
		k.val.string.val = "metadata";
		k.val.string.len = strlen("metadata");
		pushJsonbValue(&st, WJB_KEY, &k);
		pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
		push_count(&st, "queries", g->queries);
		push_count(&st, "rows_examined", g->rows_examined);
		push_count(&st, "rows_returned", g->rows_returned);
		push_time(&st, "first_at", g->first_at);
		push_time(&st, "last_at", g->last_at);
		if (g->key.purpose[0])
			push_pair(&st, "purpose", g->key.purpose);
		pushJsonbValue(&st, WJB_END_OBJECT, NULL);
		res = pushJsonbValue(&st, WJB_END_OBJECT, NULL);
		(void) AppendOne(JsonbValueToJsonb(res), g->key.access);
		appended++;
	}
	hash_destroy(groups);
	return appended;
}

static void
custos_ExecutorEnd(QueryDesc *queryDesc)
{
	uint64		returned = queryDesc->estate ? queryDesc->estate->es_processed : 0;

	if (prev_ExecutorEnd)
		prev_ExecutorEnd(queryDesc);
	else
		standard_ExecutorEnd(queryDesc);

	/*
	 * Queue at the end of every query, nested ones included: a record split
	 * across nested queries is merged again when the sealer drains it.
	 */
	if (reads != NULL && !GuardInternalActive() && !IsParallelWorker())
		enqueue_reads(returned, false);
}

void
ReadAuditInstallHooks(void)
{
	prev_ExecutorEnd = ExecutorEnd_hook;
	ExecutorEnd_hook = custos_ExecutorEnd;
	hook_installed = true;
	ensure_callback();
}

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
 * appends one READ event per relation and tenant read, in the same
 * transaction, with the number of rows examined and returned and the
 * caller's stated purpose (custos.set_purpose()).
 *
 * Fail closed: the event is written by the reading transaction itself, so a
 * read that cannot be recorded (a read-only transaction, a hot standby)
 * fails.  Reads by custos' own code and by superusers without a principal
 * are not recorded (RLS does not apply to them; pgaudit covers DBAs).
 *
 * Needs custos in shared_preload_libraries for the hook; without it,
 * custos.note_read() refuses protected reads rather than let them go
 * unrecorded.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/parallel.h"
#include "access/xact.h"
#include "executor/executor.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/snapmgr.h"

#include "custos.h"
#include "guard.h"
#include "privacy.h"
#include "readaudit.h"

PG_FUNCTION_INFO_V1(custos_note_read);
PG_FUNCTION_INFO_V1(custos_set_purpose);

ExecutorStart_hook_type prev_ExecutorStart = NULL;
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
} ReadEntry;

static HTAB *reads = NULL;		/* in TopTransactionContext */
static int	exec_depth = 0;
static char *purpose = NULL;	/* in TopTransactionContext */
static bool hook_installed = false;
static bool xact_callback_registered = false;

static void
readaudit_xact_callback(XactEvent event, void *arg)
{
	/* TopTransactionContext goes away at every transaction end */
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_PREPARE)
	{
		reads = NULL;
		purpose = NULL;
		exec_depth = 0;
	}
}

static void
ensure_callback(void)
{
	if (!xact_callback_registered)
	{
		RegisterXactCallback(readaudit_xact_callback, NULL);
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
	if (!hook_installed)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("reading protected data needs custos in shared_preload_libraries"),
				 errdetail("Every read of protected data is recorded by an executor hook that is not loaded."),
				 errhint("Add custos to shared_preload_libraries and restart.")));

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
	e = hash_search(reads, &key, HASH_ENTER, &found);
	if (!found)
		e->rows = 0;
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

static void
record_reads(uint64 returned)
{
	HASH_SEQ_STATUS it;
	ReadEntry  *e;
	HTAB	   *todo = reads;
	Oid			nsp = CustosSchemaOid(true);

	reads = NULL;				/* appending reads nothing protected */
	hash_seq_init(&it, todo);
	while ((e = hash_seq_search(&it)) != NULL)
	{
		bool		audit_log = OidIsValid(nsp) && get_rel_namespace(e->key.relid) == nsp;
		char	   *relname = get_rel_name(e->key.relid);
		JsonbParseState *st = NULL;
		JsonbValue *res;
		JsonbValue	k;

		pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
		push_pair(&st, "tenant", e->key.tenant);
		push_pair(&st, "category", "access");
		push_pair(&st, "action", "READ");
		push_pair(&st, "resource_type", audit_log ? "AUDIT_LOG" : "TABLE");
		push_pair(&st, "resource_id", relname ? relname : "?");
		k.type = jbvString;
		k.val.string.val = "metadata";
		k.val.string.len = strlen("metadata");
		pushJsonbValue(&st, WJB_KEY, &k);
		pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
		push_count(&st, "rows_examined", e->rows);
		push_count(&st, "rows_returned", (int64) returned);
		if (purpose)
			push_pair(&st, "purpose", purpose);
		pushJsonbValue(&st, WJB_END_OBJECT, NULL);
		res = pushJsonbValue(&st, WJB_END_OBJECT, NULL);

		DirectFunctionCall1(custos_log, JsonbPGetDatum(JsonbValueToJsonb(res)));
	}
	hash_destroy(todo);
}

static void
custos_ExecutorStart(QueryDesc *queryDesc, int eflags)
{
	if (prev_ExecutorStart)
		prev_ExecutorStart(queryDesc, eflags);
	else
		standard_ExecutorStart(queryDesc, eflags);
	exec_depth++;
}

static void
custos_ExecutorEnd(QueryDesc *queryDesc)
{
	uint64		returned = queryDesc->estate ? queryDesc->estate->es_processed : 0;

	if (prev_ExecutorEnd)
		prev_ExecutorEnd(queryDesc);
	else
		standard_ExecutorEnd(queryDesc);

	if (exec_depth > 0)
		exec_depth--;
	/* record at the end of the outermost query, never inside our own code */
	if (exec_depth == 0 && reads != NULL && !GuardInternalActive() && !IsParallelWorker())
	{
		/* the query's snapshot is gone; the append needs one of its own */
		PushActiveSnapshot(GetTransactionSnapshot());
		record_reads(returned);
		PopActiveSnapshot();
	}
}

void
ReadAuditInstallHooks(void)
{
	prev_ExecutorStart = ExecutorStart_hook;
	ExecutorStart_hook = custos_ExecutorStart;
	prev_ExecutorEnd = ExecutorEnd_hook;
	ExecutorEnd_hook = custos_ExecutorEnd;
	hook_installed = true;
}

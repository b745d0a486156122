/*-------------------------------------------------------------------------
 *
 * custos.c
 *	  Module entry: GUCs, shared memory, the sealer's registration and hook
 *	  wiring.  No audit logic lives here.
 *
 * custos works without shared_preload_libraries (CREATE EXTENSION succeeds),
 * but then there is no background sealer (events are sealed only by
 * custos.seal()), no shared key-cache invalidation (keys are cached per
 * transaction only) and no utility guard in backends that have not loaded
 * the library yet.  custos.status() reports which mode is active.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_namespace.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/shmem.h"
#include "utils/guc.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "custos.h"
#include "capture.h"
#include "guard.h"
#include "readaudit.h"
#include "seal.h"

PG_MODULE_MAGIC;

bool		custos_sealer_enabled = true;
int			custos_seal_interval_ms = 200;
char	   *custos_database = NULL;
int			custos_max_event_bytes = 65536;
int			custos_max_batch_events = 1000;
int			custos_block_max_events = 4096;
int			custos_seal_batch_events = 100000;
int			custos_read_queue_size = 4096;
int			custos_read_queue_timeout_ms = 1000;
/* read by the jobs' SQL (current_setting), not by C */
static int	custos_retention_default_days = 180;
static int	custos_retention_min_days = 1;
static int	custos_retention_max_days = 3650;
static int	custos_job_batch_pause_ms = 0;

CustosShared *custos_shared = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

void		_PG_init(void);

static void
custos_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(CustosShared)));
	RequestAddinShmemSpace(MAXALIGN(ReadAuditShmemSize()));
	RequestNamedLWLockTranche("custos read queue", 1);
}

static void
custos_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	custos_shared = ShmemInitStruct("custos", sizeof(CustosShared), &found);
	if (!found)
	{
		pg_atomic_init_u64(&custos_shared->key_generation, 0);
		pg_atomic_init_u64(&custos_shared->auth_generation, 0);
		pg_atomic_init_u32(&custos_shared->sealer_pid, 0);
	}
	ReadAuditShmemInit();
	LWLockRelease(AddinShmemInitLock);
}

static void
define_gucs(void)
{
	DefineCustomBoolVariable("custos.sealer",
							 gettext_noop("Whether the background sealer seals events."),
							 gettext_noop("When off, events are sealed only by custos.seal()."),
							 &custos_sealer_enabled,
							 true,
							 PGC_SIGHUP, 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("custos.seal_interval",
							gettext_noop("Time between two rounds of the background sealer."),
							gettext_noop("An event is sealed within about this interval plus the time its "
										 "writers take to commit."),
							&custos_seal_interval_ms,
							200, 10, 60000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("custos.max_event_bytes",
							gettext_noop("Largest audit event payload accepted by custos.log()."),
							NULL,
							&custos_max_event_bytes,
							65536, 1024, 16 * 1024 * 1024,
							PGC_SUSET, GUC_UNIT_BYTE,
							NULL, NULL, NULL);

	DefineCustomIntVariable("custos.max_batch_events",
							gettext_noop("Most events one custos.log_batch() call accepts."),
							NULL,
							&custos_max_batch_events,
							1000, 1, 100000,
							PGC_SUSET, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("custos.block_max_events",
							gettext_noop("Most events in one sealed block."),
							NULL,
							&custos_block_max_events,
							4096, 1, 65536,
							PGC_SUSET, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("custos.seal_batch_events",
							gettext_noop("Most events sealed in one round."),
							gettext_noop("A larger backlog is sealed in several rounds; the background sealer commits after each."),
							&custos_seal_batch_events,
							100000, 100, 10000000,
							PGC_SUSET, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("custos.read_queue_timeout",
							gettext_noop("How long a read of protected data waits for room in the read audit queue."),
							gettext_noop("After that the read fails: it could not be recorded."),
							&custos_read_queue_timeout_ms,
							1000, 0, 60000,
							PGC_SUSET, GUC_UNIT_MS,
							NULL, NULL, NULL);

	/* PGC_POSTMASTER settings can only be defined while preloading */
	if (process_shared_preload_libraries_in_progress)
		DefineCustomIntVariable("custos.read_queue_size",
								gettext_noop("Slots of the shared queue of read records awaiting the sealer."),
								NULL,
								&custos_read_queue_size,
								4096, 64, 1048576,
								PGC_POSTMASTER, 0,
								NULL, NULL, NULL);
	if (process_shared_preload_libraries_in_progress)
		DefineCustomStringVariable("custos.database",
								   gettext_noop("Database in which the background sealer runs."),
								   gettext_noop("The custos extension must be created in this database."),
								   &custos_database,
								   "postgres",
								   PGC_POSTMASTER, 0,
								   NULL, NULL, NULL);

	DefineCustomStringVariable("custos.capture_deny_columns",
							   gettext_noop("Column names whose values tracked tables never record."),
							   gettext_noop("A comma-separated list; a column whose name contains one of "
											"them (ignoring case) is recorded as changed with its value "
											"replaced by \"[redacted]\"."),
							   &custos_capture_deny_columns,
							   "password,passwd,pwd,secret,token,api_key,apikey,private_key,"
							   "client_secret,credential,pin_hash,session_key",
							   PGC_SUSET, GUC_LIST_INPUT,
							   CaptureDenyColumnsCheck, CaptureDenyColumnsAssign, NULL);

	/* the DBA's bounds on tenants' retention periods (read by the 0.5 SQL) */
	DefineCustomIntVariable("custos.retention_default_days",
							gettext_noop("Retention period of tenants that set none, in days."),
							gettext_noop("Clamped into custos.retention_min_days .. custos.retention_max_days."),
							&custos_retention_default_days,
							180, 1, 36500,
							PGC_SUSET, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("custos.retention_min_days",
							gettext_noop("Shortest retention period a tenant may choose, in days."),
							NULL,
							&custos_retention_min_days,
							1, 1, 36500,
							PGC_SUSET, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("custos.retention_max_days",
							gettext_noop("Longest retention period a tenant may choose, in days."),
							NULL,
							&custos_retention_max_days,
							3650, 1, 36500,
							PGC_SUSET, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("custos.job_batch_pause",
							gettext_noop("Pause of the retention and anonymisation jobs after each batch."),
							gettext_noop("Like vacuum_cost_delay: a longer run leaves more of the machine to "
										 "the application's appends."),
							&custos_job_batch_pause_ms,
							0, 0, 10000,
							PGC_SUSET, GUC_UNIT_MS,
							NULL, NULL, NULL);

	MarkGUCPrefixReserved("custos");
}

void
_PG_init(void)
{
	define_gucs();

	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = custos_ProcessUtility;

	if (!process_shared_preload_libraries_in_progress)
		return;

	/* reads of protected data are recorded by executor hooks */
	ReadAuditInstallHooks();

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = custos_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = custos_shmem_startup;

	SealRegisterWorker();
}

/*
 * A snapshot for a lookup whose result the backend caches until an
 * invalidation (the taxonomy, tracked tables, principals and tokens): the
 * result must reflect every commit whose invalidation has been processed,
 * which the calling statement's snapshot, or a REPEATABLE READ
 * transaction's, may predate; cached from such a snapshot it would stay
 * stale after the transaction.  Returns false in parallel mode, where no
 * snapshot may be taken: the caller must then not keep the result.
 * The caller pops the snapshot after the lookup (on error, transaction
 * abort does).
 */
bool
CustosPushLookupSnapshot(void)
{
	if (IsInParallelMode())
		return false;
	PushActiveSnapshot(GetLatestSnapshot());
	return true;
}

/*
 * The custos schema's OID, or InvalidOid when the extension is not installed
 * in this database and missing_ok.
 */
Oid
CustosSchemaOid(bool missing_ok)
{
	Oid			nsp = get_namespace_oid(CUSTOS_SCHEMA, true);

	if (!OidIsValid(nsp) && !missing_ok)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"custos\" is not installed in this database"),
				 errhint("Run CREATE EXTENSION custos CASCADE.")));
	return nsp;
}

/*
 * The role that owns custos storage.  CREATE EXTENSION makes the creating
 * (super)user the owner of the schema and of every table in it, so the
 * schema owner is the identity custos' own code runs its storage access as.
 */
Oid
CustosSchemaOwner(void)
{
	Oid			nsp = CustosSchemaOid(false);
	HeapTuple	tup;
	Oid			owner;

	tup = SearchSysCache1(NAMESPACEOID, ObjectIdGetDatum(nsp));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for namespace %u", nsp);
	owner = ((Form_pg_namespace) GETSTRUCT(tup))->nspowner;
	ReleaseSysCache(tup);
	return owner;
}

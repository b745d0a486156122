/*-------------------------------------------------------------------------
 *
 * privacy.c
 *	  Who is calling, and what that caller may see: token authentication,
 *	  role mapping, and the functions the row-level policies ask.
 *
 * The caller is established in this backend's memory only:
 *	- custos.authenticate(token) validates a token and binds its principal
 *	  to the current transaction (cleared at commit or abort);
 *	- otherwise the role the session is acting as (GetOuterUserId(): SET ROLE
 *	  counts, SECURITY DEFINER functions do not) is looked up in
 *	  custos.principal.db_role.
 * No GUC, session variable or function argument other than the token itself
 * can change it.
 *
 * Policy helpers return arrays of tenant ids computed by one tree walk per
 * statement (cached by transaction, statement start and caller), so a policy
 * that wraps them in a sub-select costs one walk per query, not per row.
 *
 * Token validations are cached per backend, keyed by the SHA-256 of the
 * secret; revocation bumps a shared generation counter that empties every
 * backend's cache (custos.invalidate_auth()).  Expiry is checked on every use.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/proc.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "chain.h"
#include "crypto.h"
#include "custos.h"
#include "guard.h"
#include "privacy.h"

PG_FUNCTION_INFO_V1(custos_authenticate);
PG_FUNCTION_INFO_V1(custos_current_principal);
PG_FUNCTION_INFO_V1(custos_current_access);
PG_FUNCTION_INFO_V1(custos_access_info);
PG_FUNCTION_INFO_V1(custos_visible_tenants);
PG_FUNCTION_INFO_V1(custos_personal_tenants);
PG_FUNCTION_INFO_V1(custos_data_tenants);
PG_FUNCTION_INFO_V1(custos_sees_all_actions);
PG_FUNCTION_INFO_V1(custos_invalidate_auth);
PG_FUNCTION_INFO_V1(custos_caller_role);
PG_FUNCTION_INFO_V1(custos_new_token_secret);

/* Everything about the caller; strings live in CallerContext. */
typedef struct Caller
{
	bool		valid;			/* a principal was found */
	char	   *principal;
	char	   *tenant;
	char	   *role;			/* owner, admin, member */
	char	   *kind;			/* principal kind: user, api_key, app, system */
	char	   *token_id;		/* NULL for a mapped role */
	char	   *token_kind;		/* personal, app, shared; NULL for a mapped role */
} Caller;

/* The token-authenticated caller of the current transaction. */
static Caller token_caller;
static LocalTransactionId token_lxid = InvalidLocalTransactionId;
static SubTransactionId token_subxact = InvalidSubTransactionId;

/*
 * The role-mapped caller, cached per outer role.  With shared memory the
 * entry lives until the auth generation moves (every change to principals
 * bumps it); without, for one transaction.
 */
static Caller role_caller;
static LocalTransactionId role_lxid = InvalidLocalTransactionId;
static uint64 role_generation = 0;
static Oid	role_oid = InvalidOid;
static MemoryContext RoleContext = NULL;

/*
 * Is the privacy catalog there?  New binaries can run against a database
 * still at version 0.1 until ALTER EXTENSION custos UPDATE; then there are
 * no principals and only superusers act.
 */
static bool
privacy_catalog_present(void)
{
	Oid			nsp = CustosSchemaOid(true);

	return OidIsValid(nsp) && OidIsValid(get_relname_relid("principal", nsp));
}

/*
 * Token validations, role mappings and tenant sets are cached under the auth
 * generation read before they are looked up.  A changing transaction bumps
 * the generation after its commit is visible, so a lookup on the statement's
 * snapshot, which may predate that commit, could cache a revoked token or a
 * removed mapping under the new generation for good.  Lookups to be cached
 * therefore run on a snapshot taken after the generation was read
 * (CustosPushLookupSnapshot()).  Returns false without shared memory (no
 * generation: nothing outlives the transaction) and in parallel mode; the
 * caller must then not keep the result beyond the statement.
 */
static bool
push_lookup_snapshot(void)
{
	return custos_shared != NULL && CustosPushLookupSnapshot();
}

/*
 * What a snapshot sees, as far as the tenant sets go: two snapshots of one
 * transaction with the same xmin, xmax, in-progress counts and command id
 * see the same committed data (transactions below xmax can only leave the
 * in-progress list, never join it).
 */
typedef struct SnapView
{
	LocalTransactionId lxid;
	TransactionId xmin;
	TransactionId xmax;
	uint32		xcnt;
	int32		subxcnt;
	bool		suboverflowed;
	CommandId	curcid;
} SnapView;

/*
 * Tenant sets of the caller.  They answer every call made under the same
 * snapshot view (one statement sees one set of tenants, whatever commits
 * meanwhile) and, under READ COMMITTED with shared memory, later
 * statements and transactions too until the auth generation moves.
 */
typedef struct TenantSets
{
	uint64		generation;		/* auth_generation the sets were computed at */
	bool		shared;			/* computed after reading the generation */
	SnapView	view;			/* the snapshot view they answer */
	TimestampTz valid_until;	/* earliest expiry of a grant they rely on */
	char	   *principal;
	bool		reads_all;		/* owner/admin role or a non-personal token */
	Datum		visible;		/* text[]: audit log readable */
	Datum		personal;		/* text[]: ... with personal fields */
	Datum		data;			/* text[]: protected data accessible */
	Datum		writable;		/* text[]: may append events for */
} TenantSets;

static TenantSets sets;
static bool sets_valid = false;

static MemoryContext CallerContext = NULL;
static MemoryContext SetsContext = NULL;

/* token validations */
typedef struct TokenEntry
{
	uint8		hash[CUSTOS_HASH_LEN];
	TimestampTz expires_at;
	Caller		caller;
	Jsonb	   *result;			/* what custos.authenticate() returns */
} TokenEntry;

static HTAB *token_cache = NULL;
static MemoryContext TokenCacheContext = NULL;
static uint64 token_cache_generation = 0;

static bool xact_callback_registered = false;

/* bump the generation once more when the changing transaction commits */
static bool bump_at_commit = false;

static void
bump_generation(void)
{
	if (custos_shared)
		pg_atomic_fetch_add_u64(&custos_shared->auth_generation, 1);
}


static void
privacy_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			if (bump_at_commit)
			{
				/* after an abort too: the early bump may have been seen */
				bump_generation();
				bump_at_commit = false;
			}
			/*
			 * The token binds the caller for one transaction only.  The
			 * tenant sets outlive it only if they were computed under READ
			 * COMMITTED after reading the generation (tenant_sets()); a
			 * changing transaction bumps the generation again above, after
			 * its commit is visible and before its client hears of it.
			 */
			token_lxid = InvalidLocalTransactionId;
			token_caller.valid = false;
			role_lxid = InvalidLocalTransactionId;
			if (event != XACT_EVENT_COMMIT && event != XACT_EVENT_PARALLEL_COMMIT)
				sets_valid = false;
			if (CallerContext)
				MemoryContextReset(CallerContext);
			break;
		default:
			break;
	}
}

/* ROLLBACK TO SAVEPOINT undoes an authentication made after the savepoint */
static void
privacy_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						 SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB && token_caller.valid &&
		token_subxact >= mySubid)
	{
		token_lxid = InvalidLocalTransactionId;
		token_caller.valid = false;
		sets_valid = false;
	}
}

static void
ensure_contexts(void)
{
	if (CallerContext != NULL)
		return;
	CallerContext = AllocSetContextCreate(TopMemoryContext, "custos caller",
										  ALLOCSET_SMALL_SIZES);
	SetsContext = AllocSetContextCreate(TopMemoryContext, "custos tenant sets",
										ALLOCSET_SMALL_SIZES);
	TokenCacheContext = AllocSetContextCreate(TopMemoryContext, "custos token cache",
											  ALLOCSET_SMALL_SIZES);
	RoleContext = AllocSetContextCreate(TopMemoryContext, "custos role mapping",
										ALLOCSET_SMALL_SIZES);
	if (!xact_callback_registered)
	{
		RegisterXactCallback(privacy_xact_callback, NULL);
		RegisterSubXactCallback(privacy_subxact_callback, NULL);
		xact_callback_registered = true;
	}
}

static char *
spi_text(int row, int col, MemoryContext cxt)
{
	bool		isnull;
	Datum		d = SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col, &isnull);
	MemoryContext old;
	char	   *s;

	if (isnull)
		return NULL;
	old = MemoryContextSwitchTo(cxt);
	s = TextDatumGetCString(d);
	MemoryContextSwitchTo(old);
	return s;
}

static SPIPlanPtr
keep_plan(SPIPlanPtr *slot, const char *sql, int nargs, Oid *types)
{
	if (*slot == NULL)
	{
		SPIPlanPtr	p = SPI_prepare(sql, nargs, types);

		if (p == NULL || SPI_keepplan(p) != 0)
			elog(ERROR, "could not prepare \"%s\": %s", sql, SPI_result_code_string(SPI_result));
		*slot = p;
	}
	return *slot;
}

static SPIPlanPtr plan_token = NULL;
static SPIPlanPtr plan_role = NULL;
static SPIPlanPtr plan_sets = NULL;

/* Fill *c from the current SPI row: principal, tenant, role, kind. */
static void
read_principal(Caller *c, int first_col, MemoryContext cxt)
{
	c->principal = spi_text(0, first_col, cxt);
	c->tenant = spi_text(0, first_col + 1, cxt);
	c->role = spi_text(0, first_col + 2, cxt);
	c->kind = spi_text(0, first_col + 3, cxt);
	c->valid = true;
}

/*
 * Every change to custos.tenant, principal, right_grant or token bumps the
 * shared auth generation when it is made and again once its commit is
 * visible; what is cached under a generation stays valid until it moves.
 * Without shared memory there is none: caches last one transaction.
 */
static uint64
auth_generation(void)
{
	return custos_shared ? pg_atomic_read_u64(&custos_shared->auth_generation) : 0;
}

/* The role-mapped principal of the outer role, or !valid. */
static Caller *
mapped_caller(void)
{
	Oid			outer = GetOuterUserId();
	uint64		generation = auth_generation();
	GuardState	gs;
	bool		pushed = false;

	ensure_contexts();
	if (role_oid == outer &&
		(custos_shared != NULL ? generation == role_generation : role_lxid == MyProc->lxid))
		return &role_caller;

	/* no entry until a lookup has succeeded (an error may be caught) */
	role_oid = InvalidOid;
	memset(&role_caller, 0, sizeof(role_caller));
	MemoryContextReset(RoleContext);
	if (!privacy_catalog_present())
	{
		role_lxid = MyProc->lxid;
		role_generation = generation;
		role_oid = outer;
		return &role_caller;
	}
	GuardBeginInternal(&gs);
	PG_TRY();
	{
		Oid			types[1] = {OIDOID};
		Datum		arg[1];

		/* by OID: a role dropped and re-created under the same name is another */
		arg[0] = ObjectIdGetDatum(outer);
		pushed = push_lookup_snapshot();
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		if (SPI_execute_plan(keep_plan(&plan_role,
									   "SELECT id, tenant, role, kind FROM custos.principal "
									   "WHERE db_role_oid OPERATOR(pg_catalog.=) $1 "
									   "AND disabled_at IS NULL",
									   1, types),
							 arg, NULL, true, 1) != SPI_OK_SELECT)
			elog(ERROR, "could not look up role mapping");
		if (SPI_processed == 1)
			read_principal(&role_caller, 1, RoleContext);
		SPI_finish();
		if (pushed)
			PopActiveSnapshot();
	}
	PG_FINALLY();
	{
		GuardEndInternal(&gs);
	}
	PG_END_TRY();
	/*
	 * Kept for later calls only if looked up after the generation was read
	 * (with shared memory), or for this transaction (without).
	 */
	role_lxid = MyProc->lxid;
	role_generation = generation;
	if (pushed || custos_shared == NULL)
		role_oid = outer;
	return &role_caller;
}

/* The caller: the token's principal in this transaction, else the mapping. */
static Caller *
current_caller(void)
{
	if (token_lxid == MyProc->lxid && token_caller.valid)
		return &token_caller;
	return mapped_caller();
}

bool
PrivacyHasCaller(void)
{
	return current_caller()->valid;
}

const char *
PrivacyCallerPrincipal(void)
{
	Caller	   *c = current_caller();

	return c->valid ? c->principal : NULL;
}

const char *
PrivacyCallerKind(void)
{
	Caller	   *c = current_caller();

	return c->valid ? c->kind : NULL;
}

/*
 * What an appended event records as "access": the token id, the principal id
 * of a mapped role, or "role:<name>" for a caller without a principal (a
 * superuser: the DBA or custos' own jobs).
 */
char *
PrivacyAccess(void)
{
	Caller	   *c = current_caller();

	if (c->valid)
		return pstrdup(c->token_id ? c->token_id : c->principal);
	return psprintf("role:%s", GetUserNameFromId(GetOuterUserId(), false));
}

/* ------------------------------------------------------------------------
 * Tenant sets
 * ------------------------------------------------------------------------
 */

static Datum
empty_text_array(void)
{
	return PointerGetDatum(construct_empty_array(TEXTOID));
}

/* The active snapshot's view, or one that matches nothing. */
static void
snap_view(SnapView *v)
{
	memset(v, 0, sizeof(*v));
	v->lxid = MyProc->lxid;
	if (ActiveSnapshotSet())
	{
		Snapshot	snap = GetActiveSnapshot();

		v->xmin = snap->xmin;
		v->xmax = snap->xmax;
		v->xcnt = snap->xcnt;
		v->subxcnt = snap->subxcnt;
		v->suboverflowed = snap->suboverflowed;
		v->curcid = snap->curcid;
	}
	else
		v->lxid = InvalidLocalTransactionId;	/* matches nothing */
}

/*
 * One walk down the caller's own tenant subtree yields every set.  A tenant
 * is readable through the caller's owner/admin role, an audit.read grant on
 * it or an ancestor below the caller's tenant, or (app and shared tokens)
 * always, restricted by the policy to the token's own events.  It is hidden
 * once the walk has entered a tenant in privacy mode for which the caller
 * holds no live data.read grant; the caller's own tenant is never hidden.
 */
static TenantSets *
tenant_sets(void)
{
	Caller	   *c = current_caller();
	uint64		generation = auth_generation();
	bool		reads_all = c->valid &&
		(strcmp(c->role, "owner") == 0 || strcmp(c->role, "admin") == 0 ||
		 (c->token_kind != NULL && strcmp(c->token_kind, "personal") != 0));

	/*
	 * Under REPEATABLE READ the sets come from the transaction's snapshot;
	 * under READ COMMITTED from a snapshot taken after the generation was
	 * read, so that sets cached under a generation never predate a change
	 * whose commit-time bump that generation already counts.  (In parallel
	 * mode no new snapshot may be taken: those sets answer one statement.)
	 */
	bool		fresh = false;
	SnapView	view;
	GuardState	gs;
	MemoryContext old;

	ensure_contexts();
	snap_view(&view);
	if (sets_valid && sets.reads_all == reads_all &&
		((sets.principal == NULL && !c->valid) ||
		 (sets.principal != NULL && c->valid && strcmp(sets.principal, c->principal) == 0)))
	{
		if (view.lxid != InvalidLocalTransactionId &&
			memcmp(&view, &sets.view, sizeof(view)) == 0)
			return &sets;
		if (custos_shared != NULL && !IsolationUsesXactSnapshot() &&
			sets.shared && sets.generation == generation &&
			GetCurrentTransactionStartTimestamp() < sets.valid_until)
		{
			/* from now on they answer this statement, whatever commits */
			sets.view = view;
			return &sets;
		}
	}

	MemoryContextReset(SetsContext);
	sets_valid = false;
	old = MemoryContextSwitchTo(SetsContext);
	sets.generation = generation;
	/* without a principal the sets are empty, whatever the catalog says */
	sets.shared = !c->valid && custos_shared != NULL && !IsolationUsesXactSnapshot();
	sets.view = view;
	sets.valid_until = DT_NOEND;
	sets.principal = c->valid ? pstrdup(c->principal) : NULL;
	sets.reads_all = reads_all;
	sets.visible = sets.personal = sets.data = sets.writable = empty_text_array();
	MemoryContextSwitchTo(old);

	if (c->valid)
	{
		GuardBeginInternal(&gs);
		PG_TRY();
		{
			Oid			types[3] = {TEXTOID, TEXTOID, BOOLOID};
			Datum		arg[3];
			int			i;

			if (!IsolationUsesXactSnapshot())
				fresh = push_lookup_snapshot();
			arg[0] = CStringGetTextDatum(c->principal);
			arg[1] = CStringGetTextDatum(c->tenant);
			arg[2] = BoolGetDatum(reads_all);
			if (SPI_connect() != SPI_OK_CONNECT)
				elog(ERROR, "SPI_connect failed");
			if (SPI_execute_plan(keep_plan(&plan_sets,
										   "WITH RECURSIVE g AS ("
										   "  SELECT tenant, right_name, expires_at FROM custos.right_grant"
										   "  WHERE principal OPERATOR(pg_catalog.=) $1 AND revoked_at IS NULL"
										   "  AND (expires_at IS NULL OR expires_at OPERATOR(pg_catalog.>) pg_catalog.now())),"
										   " sub(id, readable, hidden) AS ("
										   "  SELECT t.id, $3 OR EXISTS (SELECT 1 FROM g WHERE g.tenant OPERATOR(pg_catalog.=) t.id"
										   "                             AND g.right_name OPERATOR(pg_catalog.=) 'audit.read'), false"
										   "  FROM custos.tenant t WHERE t.id OPERATOR(pg_catalog.=) $2"
										   "  UNION ALL"
										   "  SELECT c.id,"
										   "         s.readable OR EXISTS (SELECT 1 FROM g WHERE g.tenant OPERATOR(pg_catalog.=) c.id"
										   "                               AND g.right_name OPERATOR(pg_catalog.=) 'audit.read'),"
										   "         s.hidden OR (c.privacy_mode AND NOT EXISTS (SELECT 1 FROM g"
										   "              WHERE g.tenant OPERATOR(pg_catalog.=) c.id"
										   "              AND g.right_name OPERATOR(pg_catalog.=) 'data.read'))"
										   "  FROM custos.tenant c JOIN sub s ON c.parent OPERATOR(pg_catalog.=) s.id)"
										   " SELECT coalesce(pg_catalog.array_agg(id) FILTER (WHERE readable), '{}'),"
										   "        coalesce(pg_catalog.array_agg(id) FILTER (WHERE readable AND NOT hidden), '{}'),"
										   "        coalesce(pg_catalog.array_agg(id) FILTER (WHERE NOT hidden), '{}'),"
										   "        coalesce(pg_catalog.array_agg(id), '{}'),"
										   "        (SELECT pg_catalog.min(expires_at) FROM g)"
										   " FROM sub",
										   3, types),
								 arg, NULL, true, 1) != SPI_OK_SELECT || SPI_processed != 1)
				elog(ERROR, "could not compute the caller's tenants");
			old = MemoryContextSwitchTo(SetsContext);
			for (i = 0; i < 4; i++)
			{
				bool		isnull;
				Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, i + 1, &isnull);
				Datum		copy = PointerGetDatum(DatumGetArrayTypePCopy(d));

				if (i == 0)
					sets.visible = copy;
				else if (i == 1)
					sets.personal = copy;
				else if (i == 2)
					sets.data = copy;
				else
					sets.writable = copy;
			}
			MemoryContextSwitchTo(old);
			{
				bool		isnull;
				Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 5, &isnull);

				if (!isnull)
					sets.valid_until = DatumGetTimestampTz(d);
			}
			SPI_finish();
			/* on error, transaction abort pops it */
			if (fresh)
				PopActiveSnapshot();
			sets.shared = fresh;
		}
		PG_FINALLY();
		{
			GuardEndInternal(&gs);
		}
		PG_END_TRY();
	}
	sets_valid = true;
	return &sets;
}

static bool
array_has(Datum arr, const char *tenant)
{
	ArrayType  *a = DatumGetArrayTypeP(arr);
	Datum	   *elems;
	int			n;
	int			i;

	deconstruct_array(a, TEXTOID, -1, false, TYPALIGN_INT, &elems, NULL, &n);
	for (i = 0; i < n; i++)
	{
		text	   *t = DatumGetTextPP(elems[i]);

		if (VARSIZE_ANY_EXHDR(t) == strlen(tenant) &&
			memcmp(VARDATA_ANY(t), tenant, VARSIZE_ANY_EXHDR(t)) == 0)
			return true;
	}
	return false;
}

/*
 * May the caller append an event for "tenant" with payload actor "actor"
 * (NULL: none given)?  "trusted" callers (a superuser, or custos' own
 * SECURITY DEFINER functions, judged by the current user when custos.log()
 * was entered) may; everyone else needs a principal whose tenant subtree
 * holds the event's tenant, and audit.write_as to log as another actor.
 * Raises the error itself.
 */
void
PrivacyCheckAppend(bool trusted, const char *tenant, const char *actor)
{
	Caller	   *c;

	/* before ALTER EXTENSION UPDATE to 0.2, EXECUTE on custos.log is the gate */
	if (trusted || !privacy_catalog_present())
		return;
	c = current_caller();
	if (!c->valid)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("appending an audit event needs an authenticated principal"),
				 errhint("Call custos.authenticate(token) first in this transaction, or map this database role to a principal.")));
	if (!array_has(tenant_sets()->writable, tenant))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("principal \"%s\" may not append events for tenant \"%s\"", c->principal, tenant),
				 errdetail("A principal appends events for its own tenant and the tenants below it.")));
	if (actor != NULL && strcmp(actor, c->principal) != 0 &&
		!PrivacyHasRight(c->principal, tenant, "audit.write_as"))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("principal \"%s\" may not log events as actor \"%s\"", c->principal, actor),
				 errhint("Grant the right \"audit.write_as\" on the tenant to log on behalf of others.")));
}

/* May the caller read this tenant's audit log or protected data? */
bool
PrivacyMayRead(const char *tenant)
{
	TenantSets *s = tenant_sets();

	return array_has(s->visible, tenant) || array_has(s->data, tenant);
}

/* Does principal hold a live grant of "right" on tenant or an ancestor? */
bool
PrivacyHasRight(const char *principal, const char *tenant, const char *right)
{
	static SPIPlanPtr plan = NULL;
	GuardState	gs;
	bool		found = false;

	GuardBeginInternal(&gs);
	PG_TRY();
	{
		Oid			types[3] = {TEXTOID, TEXTOID, TEXTOID};
		Datum		arg[3];

		arg[0] = CStringGetTextDatum(principal);
		arg[1] = CStringGetTextDatum(tenant);
		arg[2] = CStringGetTextDatum(right);
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		if (SPI_execute_plan(keep_plan(&plan,
									   "WITH RECURSIVE up(id, parent) AS ("
									   "  SELECT id, parent FROM custos.tenant WHERE id OPERATOR(pg_catalog.=) $2"
									   "  UNION ALL SELECT t.id, t.parent FROM custos.tenant t JOIN up ON t.id OPERATOR(pg_catalog.=) up.parent)"
									   " SELECT 1 FROM custos.right_grant g JOIN up ON g.tenant OPERATOR(pg_catalog.=) up.id"
									   " WHERE g.principal OPERATOR(pg_catalog.=) $1 AND g.right_name OPERATOR(pg_catalog.=) $3"
									   " AND g.revoked_at IS NULL"
									   " AND (g.expires_at IS NULL OR g.expires_at OPERATOR(pg_catalog.>) pg_catalog.now()) LIMIT 1",
									   3, types),
							 arg, NULL, true, 1) != SPI_OK_SELECT)
			elog(ERROR, "could not look up rights");
		found = SPI_processed > 0;
		SPI_finish();
	}
	PG_FINALLY();
	{
		GuardEndInternal(&gs);
	}
	PG_END_TRY();
	return found;
}

/* ------------------------------------------------------------------------
 * Tokens
 * ------------------------------------------------------------------------
 */

static HTAB *
get_token_cache(void)
{
	HASHCTL		ctl;

	ensure_contexts();
	if (custos_shared == NULL)
		return NULL;			/* no invalidation without shared memory */
	if (pg_atomic_read_u64(&custos_shared->auth_generation) != token_cache_generation)
	{
		MemoryContextReset(TokenCacheContext);
		token_cache = NULL;
		token_cache_generation = pg_atomic_read_u64(&custos_shared->auth_generation);
	}
	if (token_cache == NULL)
	{
		ctl.keysize = CUSTOS_HASH_LEN;
		ctl.entrysize = sizeof(TokenEntry);
		ctl.hcxt = TokenCacheContext;
		token_cache = hash_create("custos tokens", 64, &ctl,
								  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	return token_cache;
}

static void
copy_caller(Caller *dst, const Caller *src, MemoryContext cxt)
{
	MemoryContext old = MemoryContextSwitchTo(cxt);

	dst->valid = src->valid;
	dst->principal = pstrdup(src->principal);
	dst->tenant = pstrdup(src->tenant);
	dst->role = pstrdup(src->role);
	dst->kind = pstrdup(src->kind);
	dst->token_id = src->token_id ? pstrdup(src->token_id) : NULL;
	dst->token_kind = src->token_kind ? pstrdup(src->token_kind) : NULL;
	MemoryContextSwitchTo(old);
}

static void
invalid_token(void)
{
	/* one message for forged, expired, revoked or disabled: no oracle */
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
			 errmsg("invalid token"),
			 errhint("Tokens expire and can be revoked; ask the tenant's owner or admin for a new one.")));
}

/* custos.authenticate(token text) returns jsonb */
Datum
custos_authenticate(PG_FUNCTION_ARGS)
{
	text	   *token = PG_GETARG_TEXT_PP(0);
	uint8		hash[CUSTOS_HASH_LEN];
	HTAB	   *cache;
	TokenEntry *entry = NULL;
	Caller		found = {0};
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	JsonbParseState *st = NULL;
	JsonbValue *res;

	ensure_contexts();
	CryptoSha256(VARDATA_ANY(token), VARSIZE_ANY_EXHDR(token), hash);

	cache = get_token_cache();
	if (cache)
		entry = hash_search(cache, hash, HASH_FIND, NULL);
	if (entry != NULL && entry->expires_at > now)
	{
		found = entry->caller;
		if (entry->result != NULL &&
			!(token_lxid == MyProc->lxid && token_caller.valid &&
			  strcmp(token_caller.token_id, found.token_id) != 0))
		{
			/* the usual case, cheap: bind and return the prepared result */
			if (!(token_lxid == MyProc->lxid && token_caller.valid))
			{
				copy_caller(&token_caller, &found, CallerContext);
				token_lxid = MyProc->lxid;
				token_subxact = GetCurrentSubTransactionId();
				sets_valid = false;
			}
			PG_RETURN_JSONB_P((Jsonb *) PG_DETOAST_DATUM_COPY(PointerGetDatum(entry->result)));
		}
	}
	else
	{
		GuardState	gs;
		TimestampTz expires = 0;
		volatile bool pushed = false;

		entry = NULL;			/* an expired entry is replaced, or dropped below */

		GuardBeginInternal(&gs);
		PG_TRY();
		{
			Oid			types[1] = {BYTEAOID};
			Datum		arg[1];
			bytea	   *hb = palloc(VARHDRSZ + CUSTOS_HASH_LEN);
			bool		isnull;

			SET_VARSIZE(hb, VARHDRSZ + CUSTOS_HASH_LEN);
			memcpy(VARDATA(hb), hash, CUSTOS_HASH_LEN);
			arg[0] = PointerGetDatum(hb);
			pushed = push_lookup_snapshot();
			if (SPI_connect() != SPI_OK_CONNECT)
				elog(ERROR, "SPI_connect failed");
			if (SPI_execute_plan(keep_plan(&plan_token,
										   "SELECT p.id, p.tenant, p.role, p.kind, t.id, t.kind, t.expires_at "
										   "FROM custos.token t JOIN custos.principal p ON p.id OPERATOR(pg_catalog.=) t.principal "
										   "WHERE t.secret_hash OPERATOR(pg_catalog.=) $1 AND t.revoked_at IS NULL "
										   "AND p.disabled_at IS NULL",
										   1, types),
								 arg, NULL, true, 1) != SPI_OK_SELECT)
				elog(ERROR, "could not look up token");
			if (SPI_processed == 1)
			{
				read_principal(&found, 1, CurrentMemoryContext);
				found.token_id = spi_text(0, 5, CurrentMemoryContext);
				found.token_kind = spi_text(0, 6, CurrentMemoryContext);
				expires = DatumGetTimestampTz(SPI_getbinval(SPI_tuptable->vals[0],
															SPI_tuptable->tupdesc, 7, &isnull));
			}
			SPI_finish();
			if (pushed)
				PopActiveSnapshot();
		}
		PG_FINALLY();
		{
			GuardEndInternal(&gs);
		}
		PG_END_TRY();

		if (!found.valid || expires <= now)
			invalid_token();
		/* cached only if looked up after the generation was read */
		if (cache && !pushed)
			hash_search(cache, hash, HASH_REMOVE, NULL);
		else if (cache)
		{
			bool		f;

			entry = hash_search(cache, hash, HASH_ENTER, &f);
			entry->expires_at = expires;
			entry->result = NULL;
			copy_caller(&entry->caller, &found, TokenCacheContext);
		}
	}

	if (token_lxid == MyProc->lxid && token_caller.valid &&
		strcmp(token_caller.token_id, found.token_id) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TRANSACTION_STATE),
				 errmsg("another token is already authenticated in this transaction"),
				 errhint("Use one transaction per caller.")));

	/* already bound to this token: keep the level it was bound at */
	if (!(token_lxid == MyProc->lxid && token_caller.valid))
	{
		copy_caller(&token_caller, &found, CallerContext);
		token_lxid = MyProc->lxid;
		token_subxact = GetCurrentSubTransactionId();
	}
	sets_valid = false;

	pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	{
		const char *keys[4] = {"principal", "tenant", "token", "kind"};
		const char *vals[4] = {found.principal, found.tenant, found.token_id, found.token_kind};
		int			i;

		for (i = 0; i < 4; i++)
		{
			JsonbValue	k,
						v;

			k.type = jbvString;
			k.val.string.val = (char *) keys[i];
			k.val.string.len = strlen(keys[i]);
			v.type = jbvString;
			v.val.string.val = (char *) vals[i];
			v.val.string.len = strlen(vals[i]);
			pushJsonbValue(&st, WJB_KEY, &k);
			pushJsonbValue(&st, WJB_VALUE, &v);
		}
	}
	res = pushJsonbValue(&st, WJB_END_OBJECT, NULL);
	{
		Jsonb	   *result = JsonbValueToJsonb(res);

		/* kept with the cached validation: later calls return a copy */
		if (entry != NULL && entry->result == NULL)
		{
			MemoryContext old = MemoryContextSwitchTo(TokenCacheContext);

			entry->result = (Jsonb *) PG_DETOAST_DATUM_COPY(PointerGetDatum(result));
			MemoryContextSwitchTo(old);
		}
		PG_RETURN_JSONB_P(result);
	}
}

/*
 * custos.invalidate_auth(): drop cached token validations, role mappings and
 * tenant sets everywhere.  Bumped now, for this session, and again at
 * commit, so that no session keeps what it computed from the old state in
 * between.
 */
Datum
custos_invalidate_auth(PG_FUNCTION_ARGS)
{
	ensure_contexts();			/* the commit-time bump needs the callback */
	bump_generation();
	bump_at_commit = true;
	sets_valid = false;
	ensure_contexts();
	MemoryContextReset(TokenCacheContext);
	token_cache = NULL;
	role_oid = InvalidOid;
	PG_RETURN_VOID();
}

/* custos.new_token_secret(): "cst_" and 64 hex digits of strong randomness */
Datum
custos_new_token_secret(PG_FUNCTION_ARGS)
{
	uint8		raw[32];
	char	   *hex;

	CryptoRandom(raw, sizeof(raw));
	hex = ChainHex(raw, sizeof(raw));
	explicit_bzero(raw, sizeof(raw));
	PG_RETURN_TEXT_P(cstring_to_text(psprintf("cst_%s", hex)));
}

/* custos.caller_role(): the role the session acts as, outside SECURITY DEFINER */
Datum
custos_caller_role(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(GetUserNameFromId(GetOuterUserId(), false)));
}

/* ------------------------------------------------------------------------
 * SQL-visible caller and policy helpers
 * ------------------------------------------------------------------------
 */

Datum
custos_current_principal(PG_FUNCTION_ARGS)
{
	Caller	   *c = current_caller();

	if (!c->valid)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(c->principal));
}

Datum
custos_current_access(PG_FUNCTION_ARGS)
{
	Caller	   *c = current_caller();

	if (!c->valid)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(c->token_id ? c->token_id : c->principal));
}

Datum
custos_sees_all_actions(PG_FUNCTION_ARGS)
{
	Caller	   *c = current_caller();

	PG_RETURN_BOOL(c->valid && (c->token_kind == NULL || strcmp(c->token_kind, "personal") == 0));
}

Datum
custos_visible_tenants(PG_FUNCTION_ARGS)
{
	PG_RETURN_DATUM(tenant_sets()->visible);
}

Datum
custos_personal_tenants(PG_FUNCTION_ARGS)
{
	PG_RETURN_DATUM(tenant_sets()->personal);
}

Datum
custos_data_tenants(PG_FUNCTION_ARGS)
{
	PG_RETURN_DATUM(tenant_sets()->data);
}

/* custos.access_info(): who am I, as jsonb */
Datum
custos_access_info(PG_FUNCTION_ARGS)
{
	Caller	   *c = current_caller();
	TenantSets *s = tenant_sets();
	JsonbParseState *st = NULL;
	JsonbValue *res;
	const char *keys[] = {"principal", "tenant", "role", "kind", "token", "token_kind", "db_role"};
	const char *vals[7];
	int			i;

	vals[0] = c->valid ? c->principal : NULL;
	vals[1] = c->valid ? c->tenant : NULL;
	vals[2] = c->valid ? c->role : NULL;
	vals[3] = c->valid ? c->kind : NULL;
	vals[4] = c->valid ? c->token_id : NULL;
	vals[5] = c->valid ? c->token_kind : NULL;
	vals[6] = GetUserNameFromId(GetOuterUserId(), false);

	pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	for (i = 0; i < 7; i++)
	{
		JsonbValue	k,
					v;

		k.type = jbvString;
		k.val.string.val = (char *) keys[i];
		k.val.string.len = strlen(keys[i]);
		pushJsonbValue(&st, WJB_KEY, &k);
		if (vals[i] == NULL)
			v.type = jbvNull;
		else
		{
			v.type = jbvString;
			v.val.string.val = (char *) vals[i];
			v.val.string.len = strlen(vals[i]);
		}
		pushJsonbValue(&st, WJB_VALUE, &v);
	}
	{
		const char *akeys[3] = {"audit_tenants", "personal_tenants", "data_tenants"};
		Datum		arrs[3] = {s->visible, s->personal, s->data};

		for (i = 0; i < 3; i++)
		{
			JsonbValue	k;
			ArrayType  *a = DatumGetArrayTypeP(arrs[i]);
			Datum	   *elems;
			int			n,
						j;

			k.type = jbvString;
			k.val.string.val = (char *) akeys[i];
			k.val.string.len = strlen(akeys[i]);
			pushJsonbValue(&st, WJB_KEY, &k);
			pushJsonbValue(&st, WJB_BEGIN_ARRAY, NULL);
			deconstruct_array(a, TEXTOID, -1, false, TYPALIGN_INT, &elems, NULL, &n);
			for (j = 0; j < n; j++)
			{
				JsonbValue	v;
				text	   *t = DatumGetTextPP(elems[j]);

				v.type = jbvString;
				v.val.string.val = VARDATA_ANY(t);
				v.val.string.len = VARSIZE_ANY_EXHDR(t);
				pushJsonbValue(&st, WJB_ELEM, &v);
			}
			pushJsonbValue(&st, WJB_END_ARRAY, NULL);
		}
	}
	res = pushJsonbValue(&st, WJB_END_OBJECT, NULL);
	PG_RETURN_JSONB_P(JsonbValueToJsonb(res));
}

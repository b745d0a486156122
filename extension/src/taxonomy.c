/*-------------------------------------------------------------------------
 *
 * taxonomy.c
 *	  The registry of categories, resource types and actions, and the check
 *	  custos.log() makes against it in strict mode.
 *
 * The registry lives in custos.taxonomy and the mode in
 * custos.taxonomy_setting (no row: strict).  Both are custos storage: the
 * guard triggers refuse every write except custos.taxonomy_write(), which
 * the SQL register/mode functions call.
 *
 * Cache: each backend keeps the registry in a hash table, loaded on first
 * use.  Every write through custos.taxonomy_write() queues a relcache
 * invalidation of custos.taxonomy; PostgreSQL delivers it to every backend
 * when the writing transaction commits (and to the writer itself at its next
 * command), and the callback below drops the cache.  So a registration is
 * seen by every session's next event, and a rolled-back one by none.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "custos.h"
#include "guard.h"
#include "taxonomy.h"

PG_FUNCTION_INFO_V1(custos_taxonomy_write);
PG_FUNCTION_INFO_V1(custos_taxonomy_check);

#define TAXONOMY_KEY_LEN 160	/* kind (13) + ':' + name (<= 128) + NUL */

typedef struct TaxonomyEntry
{
	char		key[TAXONOMY_KEY_LEN];	/* "kind:name" */
} TaxonomyEntry;

static bool cache_valid = false;
static bool cache_strict = true;
static bool callback_registered = false;
static Oid	taxonomy_relid = InvalidOid;
static Oid	setting_relid = InvalidOid;
static HTAB *cache_names = NULL;
static MemoryContext cache_cxt = NULL;

/* invalidations seen so far: a load that overlaps one is not kept */
static uint64 inval_count = 0;

static void
taxonomy_relcache_callback(Datum arg, Oid relid)
{
	if (!OidIsValid(relid) || relid == taxonomy_relid || relid == setting_relid)
	{
		cache_valid = false;
		inval_count++;
	}
}

static void
spi_check(int rc, int expected, const char *what)
{
	if (rc != expected)
		elog(ERROR, "SPI %s failed: %s", what, SPI_result_code_string(rc));
}

/*
 * Load the registry and the mode.  Returns false when custos.taxonomy does
 * not exist (the extension is older than 0.4): then nothing is checked.
 */
static bool
load_cache(void)
{
	Oid			nsp = CustosSchemaOid(false);
	GuardState	gs;
	HASHCTL		ctl;
	uint64		i;

	if (!callback_registered)
	{
		CacheRegisterRelcacheCallback(taxonomy_relcache_callback, (Datum) 0);
		callback_registered = true;
	}
	taxonomy_relid = get_relname_relid("taxonomy", nsp);
	setting_relid = get_relname_relid("taxonomy_setting", nsp);
	if (!OidIsValid(taxonomy_relid) || !OidIsValid(setting_relid))
		return false;

	if (cache_cxt == NULL)
		cache_cxt = AllocSetContextCreate(CacheMemoryContext, "custos taxonomy",
										  ALLOCSET_SMALL_SIZES);
	else
		MemoryContextReset(cache_cxt);
	cache_names = NULL;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = TAXONOMY_KEY_LEN;
	ctl.entrysize = sizeof(TaxonomyEntry);
	ctl.hcxt = cache_cxt;

	GuardBeginInternal(&gs);
	PG_TRY();
	{
		HTAB	   *names;
		bool		strict = true;
		uint64		start = inval_count;
		bool		pushed = CustosPushLookupSnapshot();

		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		names = hash_create("custos taxonomy", 256, &ctl, HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
		spi_check(SPI_execute("SELECT kind || ':' || name FROM custos.taxonomy", true, 0),
				  SPI_OK_SELECT, "taxonomy read");
		for (i = 0; i < SPI_processed; i++)
		{
			char	   *key = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);

			if (key != NULL && strlen(key) < TAXONOMY_KEY_LEN)
				(void) hash_search(names, key, HASH_ENTER, NULL);
		}
		spi_check(SPI_execute("SELECT mode FROM custos.taxonomy_setting", true, 0),
				  SPI_OK_SELECT, "taxonomy mode read");
		if (SPI_processed > 0)
		{
			char	   *mode = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);

			strict = (mode == NULL || strcmp(mode, "open") != 0);
		}
		SPI_finish();
		if (pushed)
			PopActiveSnapshot();
		cache_names = names;
		cache_strict = strict;
		cache_valid = pushed && inval_count == start;
	}
	PG_FINALLY();
	{
		GuardEndInternal(&gs);
	}
	PG_END_TRY();
	return true;
}

/* The registered names of one kind, sorted, for an error's detail. */
static char *
allowed_names(const char *kind)
{
	StringInfoData buf;
	GuardState	gs;
	Datum		arg = CStringGetTextDatum(kind);
	Oid			argtype = TEXTOID;

	initStringInfo(&buf);
	GuardBeginInternal(&gs);
	PG_TRY();
	{
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		/* at most 200 names: an installation may register many */
		spi_check(SPI_execute_with_args("SELECT string_agg(name, ', ' ORDER BY name COLLATE \"C\") "
										"FILTER (WHERE n <= 200) || CASE WHEN count(*) > 200 "
										"THEN ' and ' || (count(*) - 200) || ' more (see custos.taxonomy)' "
										"ELSE '' END "
										"FROM (SELECT name, row_number() OVER (ORDER BY name COLLATE \"C\") AS n "
										"FROM custos.taxonomy WHERE kind = $1) t",
										1, &argtype, &arg, NULL, true, 1),
				  SPI_OK_SELECT, "taxonomy list");
		if (SPI_processed > 0)
		{
			char	   *s = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);

			if (s)
				appendStringInfoString(&buf, s);
		}
		SPI_finish();
	}
	PG_FINALLY();
	{
		GuardEndInternal(&gs);
	}
	PG_END_TRY();
	return buf.data;
}

static void
check_one(const char *kind, const char *label, const char *fn, const char *name)
{
	char		key[TAXONOMY_KEY_LEN];

	if (name == NULL)
		return;
	if (strlen(kind) + 1 + strlen(name) < TAXONOMY_KEY_LEN)
	{
		snprintf(key, sizeof(key), "%s:%s", kind, name);
		if (hash_search(cache_names, key, HASH_FIND, NULL) != NULL)
			return;
	}
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("%s \"%s\" is not in the custos taxonomy", label, name),
			 errdetail("Allowed values: %s.", allowed_names(kind)),
			 errhint("Register it with custos.%s('%s'), or switch the installation to open mode with custos.set_taxonomy_mode('open').",
					 fn, name)));
}

/*
 * In strict mode, refuse an event whose action, category or resource type
 * (the latter two when given) is not registered.  The caller has validated
 * the payload's shape already and has written nothing yet.
 */
void
TaxonomyCheck(const char *category, const char *action, const char *resource_type)
{
	if (!cache_valid && !load_cache())
		return;
	if (!cache_strict)
		return;
	check_one("action", "action", "register_action", action);
	check_one("category", "category", "register_category", category);
	check_one("resource_type", "resource type", "register_resource_type", resource_type);
}

/*
 * custos.taxonomy_check(kind, name): TaxonomyCheck() of one name, for SQL
 * callers (custos.track() validates its category, resource type and
 * actions with it), so that the check and its error exist once.
 */
Datum
custos_taxonomy_check(PG_FUNCTION_ARGS)
{
	char	   *kind;
	char	   *name;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		PG_RETURN_VOID();
	kind = text_to_cstring(PG_GETARG_TEXT_PP(0));
	name = text_to_cstring(PG_GETARG_TEXT_PP(1));
	if (strcmp(kind, "action") == 0)
		TaxonomyCheck(NULL, name, NULL);
	else if (strcmp(kind, "category") == 0)
		TaxonomyCheck(name, NULL, NULL);
	else if (strcmp(kind, "resource_type") == 0)
		TaxonomyCheck(NULL, NULL, name);
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid taxonomy kind \"%s\"", kind),
				 errhint("The kinds are \"action\", \"category\" and \"resource_type\".")));
	PG_RETURN_VOID();
}

/*
 * custos.taxonomy_write(target text, key jsonb, new_row jsonb): the one way
 * to change the registry.  target is "taxonomy" or "taxonomy_setting"; key,
 * when not NULL, deletes the matching row first ({"kind", "name"}, or any
 * object for the single settings row); new_row, when not NULL, is inserted.
 * Revoked from PUBLIC: the SQL functions that call it check their caller.
 * The statements are fixed; values travel as parameters only.
 */
Datum
custos_taxonomy_write(PG_FUNCTION_ARGS)
{
	text	   *target_t = PG_ARGISNULL(0) ? NULL : PG_GETARG_TEXT_PP(0);
	char	   *target;
	const char *del_sql;
	const char *ins_sql;
	Oid			argtype = JSONBOID;
	GuardState	gs;
	Oid			nsp = CustosSchemaOid(false);

	if (target_t == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("target must not be NULL")));
	target = text_to_cstring(target_t);
	if (strcmp(target, "taxonomy") == 0)
	{
		del_sql = "DELETE FROM custos.taxonomy WHERE kind = $1->>'kind' AND name = $1->>'name' AND NOT builtin";
		ins_sql = "INSERT INTO custos.taxonomy (kind, name, description) "
			"VALUES ($1->>'kind', $1->>'name', $1->>'description')";
	}
	else if (strcmp(target, "taxonomy_setting") == 0)
	{
		del_sql = "DELETE FROM custos.taxonomy_setting";
		ins_sql = "INSERT INTO custos.taxonomy_setting (mode) VALUES ($1->>'mode')";
	}
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid taxonomy target \"%s\"", target),
				 errhint("The target is \"taxonomy\" or \"taxonomy_setting\".")));

	GuardBeginInternal(&gs);
	PG_TRY();
	{
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		if (!PG_ARGISNULL(1))
		{
			Datum		arg = PG_GETARG_DATUM(1);

			spi_check(SPI_execute_with_args(del_sql, 1, &argtype, &arg, NULL, false, 0),
					  SPI_OK_DELETE, "taxonomy delete");
		}
		if (!PG_ARGISNULL(2))
		{
			Datum		arg = PG_GETARG_DATUM(2);

			spi_check(SPI_execute_with_args(ins_sql, 1, &argtype, &arg, NULL, false, 0),
					  SPI_OK_INSERT, "taxonomy insert");
		}
		SPI_finish();
	}
	PG_FINALLY();
	{
		GuardEndInternal(&gs);
	}
	PG_END_TRY();

	/* every backend reloads its cache once this commits (see file header) */
	CacheInvalidateRelcacheByRelid(get_relname_relid("taxonomy", nsp));
	CacheInvalidateRelcacheByRelid(get_relname_relid("taxonomy_setting", nsp));
	PG_RETURN_VOID();
}

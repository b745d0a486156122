/*-------------------------------------------------------------------------
 *
 * capture.c
 *	  Records the writes of tracked application tables as audit events:
 *	  the trigger custos.capture_row() and its per-table configuration cache.
 *
 * custos.track() (SQL) stores a table's configuration in custos.tracked_table
 * and attaches custos.capture_row() as an AFTER ROW trigger for INSERT,
 * UPDATE and DELETE and an AFTER STATEMENT trigger for TRUNCATE.  The trigger
 * runs in the writing transaction, so the event commits or rolls back with
 * the change, and appends through AppendRecordEvent() (append.c): no SPI and
 * no JSON payload round trip per row.
 *
 * What a row event holds:
 *	 INSERT: new_state = every recorded column;  DELETE: previous_state = the
 *	 same of the old row;  UPDATE: previous_state/new_state = the changed
 *	 columns only (plus the key unless key_in_state is off); an UPDATE that
 *	 changes no recorded column records nothing unless record_noop is on.
 *	 Excluded columns are never looked at; redacted columns (per table, or by
 *	 name through custos.capture_deny_columns) are compared but their values
 *	 are replaced by "[redacted]": the log says that a password changed, never
 *	 what it was or became.  The values never reach an error message either.
 *	 A subject column makes the row's data subject the event's subject, so
 *	 that erasing the subject (crypto-shredding) covers its captured changes.
 *
 * Changed means a different binary image (after detoasting), not "unequal by
 * the type's = operator": for citext 'A' = 'a' and for numeric 1.0 = 1.00,
 * yet both are changes an audit log must show.
 *
 * Column names, not numbers, identify columns, so columns may be added,
 * dropped and renamed after tracking; the attribute numbers stored by
 * track() let a renamed configured column (a redacted one above all) still
 * be found.  A configured column that is gone is ignored if it was excluded
 * or redacted, and is an error otherwise (the event could not be built:
 * fail closed, the write is refused).
 *
 * Cache: per backend, one entry per tracked relation, built from
 * custos.tracked_table (one SPI query) and the relation's tuple descriptor.
 * It is dropped by a relcache invalidation of the relation, which both
 * ALTER TABLE and custos.capture_configure() (track/untrack) send, and when
 * custos.capture_deny_columns changes.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/formatting.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/varlena.h"

#include "append.h"
#include "capture.h"
#include "custos.h"
#include "guard.h"

PG_FUNCTION_INFO_V1(custos_capture_row);
PG_FUNCTION_INFO_V1(custos_capture_configure);

char	   *custos_capture_deny_columns = NULL;

/* bumped when custos.capture_deny_columns changes: cached configs rebuild */
static uint64 deny_generation = 0;

#define REDACTED "[redacted]"

typedef enum ColumnMode
{
	COL_SKIP,					/* dropped, or excluded: never read */
	COL_RECORD,
	COL_REDACT
} ColumnMode;

/* how a column's value becomes JSON */
typedef enum ColumnJson
{
	CJ_BOOL,
	CJ_INT,
	CJ_NUMERIC,
	CJ_STRING,					/* text, varchar, bpchar */
	CJ_JSONB,
	CJ_GENERIC					/* to_jsonb() */
} ColumnJson;

typedef struct CaptureColumn
{
	char	   *name;
	ColumnMode	mode;
	ColumnJson	json;
	Oid			typid;
	int16		typlen;
	bool		typbyval;
	bool		is_key;			/* one of the key columns */
	FmgrInfo   *to_jsonb;		/* CJ_GENERIC, set up on first use */
	FmgrInfo   *output;			/* the type's output function, set up on first use */
} CaptureColumn;

typedef enum MetaKind
{
	META_COLUMN,
	META_CONST,
	META_TENANT_NAME
} MetaKind;

typedef struct MetaEntry
{
	char	   *key;
	MetaKind	kind;
	AttrNumber	att;			/* META_COLUMN */
	Jsonb	   *value;			/* META_CONST: a one-element array holding it */
} MetaEntry;

enum
{
	OP_INSERT, OP_UPDATE, OP_DELETE, OP_TRUNCATE, NUM_OPS
};

typedef struct CaptureConfig
{
	Oid			relid;			/* hash key */
	bool		valid;
	uint64		deny_generation;
	MemoryContext cxt;			/* everything below */
	char	   *table_name;		/* schema.table, for TRUNCATE and errors */
	char	   *resource_type;
	char	   *category;
	char	   *actions[NUM_OPS];
	int			natts;
	CaptureColumn *cols;		/* [natts], by attnum - 1 */
	int			nkeys;
	AttrNumber *keys;
	AttrNumber	tenant_att;
	AttrNumber	resource_name_att;	/* 0: none */
	AttrNumber	target_level_att;
	AttrNumber	target_name_att;
	AttrNumber	subject_att;	/* 0: events have no subject */
	char	   *target_level;
	int			nmeta;
	MetaEntry  *meta;
	bool		record_noop;
	bool		key_in_state;
	bool		record_state;
} CaptureConfig;

static HTAB *config_cache = NULL;
/* relcache invalidations seen so far: a build that overlaps one is not kept */
static uint64 capture_inval_count = 0;

/* the tenant name of {"tenant": "name"} metadata, for one tenant per transaction */
static LocalTransactionId tenant_name_lxid = InvalidLocalTransactionId;
static char *tenant_name_id = NULL;
static char *tenant_name_value = NULL;

/* ------------------------------------------------------------------------
 * custos.capture_deny_columns
 * ------------------------------------------------------------------------
 */

bool
CaptureDenyColumnsCheck(char **newval, void **extra, GucSource source)
{
	char	   *copy = pstrdup(*newval);
	List	   *names;
	bool		ok = SplitIdentifierString(copy, ',', &names);

	if (!ok)
		GUC_check_errdetail("List syntax is invalid.");
	list_free(names);
	pfree(copy);
	return ok;
}

void
CaptureDenyColumnsAssign(const char *newval, void *extra)
{
	deny_generation++;
}

/* Does a column's name contain an entry of the deny-list (ignoring case)? */
static bool
denied_name(const char *colname, List *deny)
{
	char	   *lower = asc_tolower(colname, strlen(colname));
	ListCell   *lc;

	foreach(lc, deny)
	{
		char	   *d = asc_tolower((char *) lfirst(lc), strlen((char *) lfirst(lc)));

		if (d[0] != '\0' && strstr(lower, d) != NULL)
			return true;
	}
	return false;
}

/* ------------------------------------------------------------------------
 * Configuration cache
 * ------------------------------------------------------------------------
 */

static void
capture_relcache_callback(Datum arg, Oid relid)
{
	HASH_SEQ_STATUS status;
	CaptureConfig *cfg;

	capture_inval_count++;
	if (config_cache == NULL)
		return;
	if (OidIsValid(relid))
	{
		cfg = hash_search(config_cache, &relid, HASH_FIND, NULL);
		if (cfg)
			cfg->valid = false;
		return;
	}
	hash_seq_init(&status, config_cache);
	while ((cfg = hash_seq_search(&status)) != NULL)
		cfg->valid = false;
}

/* the live attribute named name, else 0 */
static AttrNumber
attnum_by_name(TupleDesc desc, const char *name)
{
	int			i;

	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute a = TupleDescAttr(desc, i);

		if (!a->attisdropped && strcmp(NameStr(a->attname), name) == 0)
			return a->attnum;
	}
	return 0;
}

/*
 * Find a configured column: by name, else (renamed since tracking) by the
 * attribute number track() stored for that name.  0 if it is gone.
 */
static AttrNumber
resolve_column(TupleDesc desc, Jsonb *attnums, const char *name)
{
	AttrNumber	att = attnum_by_name(desc, name);
	JsonbValue	k;
	JsonbValue *v;

	if (att != 0 || attnums == NULL)
		return att;
	k.type = jbvString;
	k.val.string.val = (char *) name;
	k.val.string.len = strlen(name);
	v = findJsonbValueFromContainer(&attnums->root, JB_FOBJECT, &k);
	if (v != NULL && v->type == jbvNumeric)
	{
		int32		n = DatumGetInt32(DirectFunctionCall1(numeric_int4,
														  NumericGetDatum(v->val.numeric)));

		if (n > 0 && n <= desc->natts && !TupleDescAttr(desc, n - 1)->attisdropped)
			return (AttrNumber) n;
	}
	return 0;
}

static AttrNumber
require_column(CaptureConfig *cfg, TupleDesc desc, Jsonb *attnums, const char *name,
			   const char *role)
{
	AttrNumber	att = resolve_column(desc, attnums, name);

	if (att == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("%s column \"%s\" of tracked table \"%s\" no longer exists",
						role, name, cfg->table_name),
				 errdetail("custos cannot record this table's changes without it, so the write is refused."),
				 errhint("Run custos.track() for the table again with its current columns.")));
	return att;
}

static ColumnJson
json_kind(Oid typid)
{
	switch (typid)
	{
		case BOOLOID:
			return CJ_BOOL;
		case INT2OID:
		case INT4OID:
		case INT8OID:
			return CJ_INT;
		case NUMERICOID:
			return CJ_NUMERIC;
		case TEXTOID:
		case VARCHAROID:
		case BPCHAROID:
			return CJ_STRING;
		case JSONBOID:
			return CJ_JSONB;
		default:
			return CJ_GENERIC;
	}
}

/* a text[] datum's elements as a List of C strings */
static List *
text_array_list(Datum arr)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int			i;
	List	   *out = NIL;

	deconstruct_array(DatumGetArrayTypeP(arr), TEXTOID, -1, false, TYPALIGN_INT,
					  &elems, &nulls, &n);
	for (i = 0; i < n; i++)
		if (!nulls[i])
			out = lappend(out, TextDatumGetCString(elems[i]));
	return out;
}

static char *
spi_text(HeapTuple tup, TupleDesc desc, int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tup, desc, col, &isnull);

	return isnull ? NULL : TextDatumGetCString(d);
}

static const char *const op_names[NUM_OPS] = {"INSERT", "UPDATE", "DELETE", "TRUNCATE"};

/*
 * Build the configuration of rel into cfg (whose cxt is empty).  Reads
 * custos.tracked_table as custos' owner, on a lookup snapshot; the caller is
 * in a transaction.  Returns whether the result may be kept (false in
 * parallel mode).
 */
static bool
build_config(CaptureConfig *cfg, Relation rel)
{
	volatile bool pushed = false;
	TupleDesc	desc = RelationGetDescr(rel);
	Oid			argtype = OIDOID;
	Datum		arg = ObjectIdGetDatum(RelationGetRelid(rel));
	GuardState	gs;
	MemoryContext old;
	List	   *deny;
	char	   *deny_copy;
	int			i;

	old = MemoryContextSwitchTo(cfg->cxt);
	cfg->table_name = quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
												 RelationGetRelationName(rel));
	deny_copy = pstrdup(custos_capture_deny_columns ? custos_capture_deny_columns : "");
	if (!SplitIdentifierString(deny_copy, ',', &deny))
		deny = NIL;
	cfg->deny_generation = deny_generation;

	GuardBeginInternal(&gs);
	PG_TRY();
	{
		HeapTuple	tup;
		TupleDesc	td;
		bool		isnull;
		Jsonb	   *actions;
		Jsonb	   *attnums;
		Datum		d;
		List	   *keys;
		List	   *excluded;
		List	   *redacted;
		ListCell   *lc;
		char	   *s;

		pushed = CustosPushLookupSnapshot();
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		if (SPI_execute_with_args("SELECT resource_type, tenant_column::text, key_columns::text[], "
								  "resource_name_column::text, category, actions, excluded::text[], "
								  "redacted::text[], metadata, target_level, target_level_column::text, "
								  "target_name_column::text, record_noop, key_in_state, record_state, attnums, "
								  "subject_column::text "
								  "FROM custos.tracked_table WHERE relid = $1",
								  1, &argtype, &arg, NULL, true, 1) != SPI_OK_SELECT)
			elog(ERROR, "SPI query of custos.tracked_table failed");
		if (SPI_processed == 0)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("table \"%s\" has custos' capture trigger but is not tracked", cfg->table_name),
					 errhint("Run custos.track() for the table, or drop its triggers custos_capture and custos_capture_truncate.")));

		/* copy what we keep out of SPI's memory into cfg->cxt */
		MemoryContextSwitchTo(cfg->cxt);
		tup = SPI_tuptable->vals[0];
		td = SPI_tuptable->tupdesc;

		cfg->resource_type = spi_text(tup, td, 1);
		cfg->category = spi_text(tup, td, 5);
		cfg->target_level = spi_text(tup, td, 10);
		cfg->record_noop = DatumGetBool(SPI_getbinval(tup, td, 13, &isnull));
		cfg->key_in_state = DatumGetBool(SPI_getbinval(tup, td, 14, &isnull));
		cfg->record_state = DatumGetBool(SPI_getbinval(tup, td, 15, &isnull));
		attnums = DatumGetJsonbPCopy(SPI_getbinval(tup, td, 16, &isnull));
		actions = DatumGetJsonbPCopy(SPI_getbinval(tup, td, 6, &isnull));
		for (i = 0; i < NUM_OPS; i++)
		{
			JsonbValue	k;
			JsonbValue *v;

			k.type = jbvString;
			k.val.string.val = (char *) op_names[i];
			k.val.string.len = strlen(op_names[i]);
			v = findJsonbValueFromContainer(&actions->root, JB_FOBJECT, &k);
			if (v == NULL || v->type != jbvString)
				elog(ERROR, "custos.tracked_table.actions of \"%s\" lacks %s", cfg->table_name, op_names[i]);
			cfg->actions[i] = pnstrdup(v->val.string.val, v->val.string.len);
		}

		/* columns: record everything live, then apply exclusions and redactions */
		cfg->natts = desc->natts;
		cfg->cols = palloc0(sizeof(CaptureColumn) * Max(desc->natts, 1));
		for (i = 0; i < desc->natts; i++)
		{
			Form_pg_attribute a = TupleDescAttr(desc, i);
			CaptureColumn *c = &cfg->cols[i];

			c->name = pstrdup(NameStr(a->attname));
			if (a->attisdropped)
			{
				c->mode = COL_SKIP;
				continue;
			}
			c->typid = a->atttypid;
			c->typlen = a->attlen;
			c->typbyval = a->attbyval;
			c->json = json_kind(getBaseType(a->atttypid) == a->atttypid ? a->atttypid : InvalidOid);
			c->mode = denied_name(c->name, deny) ? COL_REDACT : COL_RECORD;
		}

		d = SPI_getbinval(tup, td, 8, &isnull);
		redacted = isnull ? NIL : text_array_list(d);
		foreach(lc, redacted)
		{
			AttrNumber	att = resolve_column(desc, attnums, lfirst(lc));

			if (att > 0)
				cfg->cols[att - 1].mode = COL_REDACT;
		}
		d = SPI_getbinval(tup, td, 7, &isnull);
		excluded = isnull ? NIL : text_array_list(d);
		foreach(lc, excluded)
		{
			AttrNumber	att = resolve_column(desc, attnums, lfirst(lc));

			if (att > 0)
				cfg->cols[att - 1].mode = COL_SKIP;
		}

		keys = text_array_list(SPI_getbinval(tup, td, 3, &isnull));
		cfg->nkeys = list_length(keys);
		cfg->keys = palloc(sizeof(AttrNumber) * Max(cfg->nkeys, 1));
		i = 0;
		foreach(lc, keys)
		{
			AttrNumber	att = require_column(cfg, desc, attnums, lfirst(lc), "key");

			cfg->keys[i++] = att;
			cfg->cols[att - 1].is_key = true;
			/* the key identifies the row: it is always read */
			if (cfg->cols[att - 1].mode == COL_SKIP)
				cfg->cols[att - 1].mode = COL_RECORD;
		}

		cfg->tenant_att = require_column(cfg, desc, attnums, spi_text(tup, td, 2), "tenant");
		if ((s = spi_text(tup, td, 4)) != NULL)
			cfg->resource_name_att = require_column(cfg, desc, attnums, s, "resource name");
		if ((s = spi_text(tup, td, 11)) != NULL)
			cfg->target_level_att = require_column(cfg, desc, attnums, s, "target level");
		if ((s = spi_text(tup, td, 12)) != NULL)
			cfg->target_name_att = require_column(cfg, desc, attnums, s, "target name");
		if ((s = spi_text(tup, td, 17)) != NULL)
			cfg->subject_att = require_column(cfg, desc, attnums, s, "subject");

		d = SPI_getbinval(tup, td, 9, &isnull);
		if (!isnull)
		{
			Jsonb	   *meta = DatumGetJsonbPCopy(d);
			JsonbIterator *it = JsonbIteratorInit(&meta->root);
			JsonbIteratorToken tok;
			JsonbValue	v;
			int			n = 0;

			cfg->meta = palloc0(sizeof(MetaEntry) * Max(JB_ROOT_COUNT(meta), 1));
			while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
			{
				MetaEntry  *m = &cfg->meta[n];

				if (tok == WJB_KEY)
				{
					m->key = pnstrdup(v.val.string.val, v.val.string.len);
					continue;
				}
				if (tok != WJB_VALUE)
					continue;
				if (v.type == jbvString)
				{
					char	   *col = pnstrdup(v.val.string.val, v.val.string.len);

					m->kind = META_COLUMN;
					m->att = require_column(cfg, desc, attnums, col, "metadata");
				}
				else if (v.type == jbvBinary)
				{
					Jsonb	   *obj = JsonbValueToJsonb(&v);
					JsonbValue	kk;
					JsonbValue *cv;

					kk.type = jbvString;
					kk.val.string.val = "value";
					kk.val.string.len = 5;
					cv = findJsonbValueFromContainer(&obj->root, JB_FOBJECT, &kk);
					if (cv != NULL)
					{
						JsonbParseState *st = NULL;

						m->kind = META_CONST;
						pushJsonbValue(&st, WJB_BEGIN_ARRAY, NULL);
						pushJsonbValue(&st, WJB_ELEM, cv);
						m->value = JsonbValueToJsonb(pushJsonbValue(&st, WJB_END_ARRAY, NULL));
					}
					else
						m->kind = META_TENANT_NAME;
				}
				else
					elog(ERROR, "invalid metadata entry in custos.tracked_table");
				n++;
			}
			cfg->nmeta = n;
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
	MemoryContextSwitchTo(old);
	return pushed;
}

/* The valid configuration of rel, built if need be. */
static CaptureConfig *
get_config(Relation rel)
{
	Oid			relid = RelationGetRelid(rel);
	CaptureConfig *cfg;
	bool		found;

	if (config_cache == NULL)
	{
		HASHCTL		ctl;

		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(CaptureConfig);
		ctl.hcxt = CacheMemoryContext;
		config_cache = hash_create("custos capture configs", 16, &ctl,
								   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
		CacheRegisterRelcacheCallback(capture_relcache_callback, (Datum) 0);
	}
	cfg = hash_search(config_cache, &relid, HASH_ENTER, &found);
	if (!found)
	{
		cfg->valid = false;
		cfg->cxt = AllocSetContextCreate(CacheMemoryContext, "custos capture config",
										 ALLOCSET_SMALL_SIZES);
	}
	if (cfg->valid && cfg->deny_generation == deny_generation &&
		cfg->natts == RelationGetDescr(rel)->natts)
		return cfg;

	/* a fresh hash entry is not zeroed, and a rebuild starts from nothing */
	{
		MemoryContext cxt = cfg->cxt;

		MemoryContextReset(cxt);
		memset(cfg, 0, sizeof(CaptureConfig));
		cfg->relid = relid;
		cfg->cxt = cxt;
	}
	{
		uint64		start = capture_inval_count;
		bool		keep = build_config(cfg, rel);

		/* an invalidation during the build may concern what it read */
		cfg->valid = keep && capture_inval_count == start;
	}
	return cfg;
}

/* ------------------------------------------------------------------------
 * Values as JSON
 * ------------------------------------------------------------------------
 */

static void
push_key(JsonbParseState **st, const char *key)
{
	JsonbValue	k;

	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	pushJsonbValue(st, WJB_KEY, &k);
}

/* push a Jsonb datum as a value: scalars unwrapped, containers as binary */
static void
push_jsonb(JsonbParseState **st, Jsonb *jb, JsonbIteratorToken as)
{
	JsonbValue	v;

	if (JB_ROOT_IS_SCALAR(jb))
		JsonbExtractScalar(&jb->root, &v);
	else
	{
		v.type = jbvBinary;
		v.val.binary.data = &jb->root;
		v.val.binary.len = VARSIZE(jb) - VARHDRSZ;
	}
	pushJsonbValue(st, as, &v);
}

/* to_jsonb() of one column's type, with the argument type it needs to know */
static FmgrInfo *
generic_converter(CaptureConfig *cfg, CaptureColumn *c)
{
	if (c->to_jsonb == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(cfg->cxt);
		FmgrInfo   *f = palloc0(sizeof(FmgrInfo));

		fmgr_info_cxt(F_TO_JSONB, f, cfg->cxt);
		f->fn_expr = (Node *) makeFuncExpr(F_TO_JSONB, JSONBOID,
										   list_make1(makeNullConst(c->typid, -1, InvalidOid)),
										   InvalidOid, InvalidOid, COERCE_EXPLICIT_CALL);
		c->to_jsonb = f;
		MemoryContextSwitchTo(old);
	}
	return c->to_jsonb;
}

/*
 * Push one column's value.  PostgreSQL's own to_jsonb() decides the JSON
 * shape of every type; the common scalar types take a direct path that
 * produces the same JSON without a function call.
 */
static void
push_value(JsonbParseState **st, CaptureConfig *cfg, CaptureColumn *c,
		   Datum d, bool isnull, JsonbIteratorToken as)
{
	JsonbValue	v;

	if (isnull)
	{
		v.type = jbvNull;
		pushJsonbValue(st, as, &v);
		return;
	}
	if (c->mode == COL_REDACT)
	{
		v.type = jbvString;
		v.val.string.val = REDACTED;
		v.val.string.len = strlen(REDACTED);
		pushJsonbValue(st, as, &v);
		return;
	}
	switch (c->json)
	{
		case CJ_BOOL:
			v.type = jbvBool;
			v.val.boolean = DatumGetBool(d);
			break;
		case CJ_INT:
			v.type = jbvNumeric;
			v.val.numeric = int64_to_numeric(c->typid == INT8OID ? DatumGetInt64(d) :
											 c->typid == INT4OID ? (int64) DatumGetInt32(d) :
											 (int64) DatumGetInt16(d));
			break;
		case CJ_NUMERIC:
			if (numeric_is_nan(DatumGetNumeric(d)) || numeric_is_inf(DatumGetNumeric(d)))
			{
				push_jsonb(st, DatumGetJsonbP(FunctionCall1(generic_converter(cfg, c), d)), as);
				return;
			}
			v.type = jbvNumeric;
			v.val.numeric = DatumGetNumeric(d);
			break;
		case CJ_STRING:
			{
				text	   *t = DatumGetTextPP(d);

				v.type = jbvString;
				v.val.string.val = VARDATA_ANY(t);
				v.val.string.len = VARSIZE_ANY_EXHDR(t);
				break;
			}
		case CJ_JSONB:
			push_jsonb(st, DatumGetJsonbP(d), as);
			return;
		case CJ_GENERIC:
			push_jsonb(st, DatumGetJsonbP(FunctionCall1(generic_converter(cfg, c), d)), as);
			return;
	}
	pushJsonbValue(st, as, &v);
}

/* Same binary image?  Detoasts only when the stored forms differ. */
static bool
same_value(CaptureColumn *c, Datum a, bool anull, Datum b, bool bnull)
{
	if (anull || bnull)
		return anull && bnull;
	if (datumIsEqual(a, b, c->typbyval, c->typlen))
		return true;
	if (c->typlen == -1)
	{
		struct varlena *va = PG_DETOAST_DATUM_PACKED(a);
		struct varlena *vb = PG_DETOAST_DATUM_PACKED(b);

		return VARSIZE_ANY_EXHDR(va) == VARSIZE_ANY_EXHDR(vb) &&
			memcmp(VARDATA_ANY(va), VARDATA_ANY(vb), VARSIZE_ANY_EXHDR(va)) == 0;
	}
	return false;
}

/*
 * A column's value as text (output function), NULL for SQL NULL.  The
 * output function is looked up once per cached configuration, not per row.
 */
static char *
value_text(CaptureConfig *cfg, CaptureColumn *c, Datum d, bool isnull)
{
	if (isnull)
		return NULL;
	if (c->json == CJ_STRING)
		return TextDatumGetCString(d);
	if (c->output == NULL)
	{
		Oid			out;
		bool		varlena;
		FmgrInfo   *f = MemoryContextAllocZero(cfg->cxt, sizeof(FmgrInfo));

		getTypeOutputInfo(c->typid, &out, &varlena);
		fmgr_info_cxt(out, f, cfg->cxt);
		c->output = f;
	}
	return OutputFunctionCall(c->output, d);
}

/* resource_id: the key's value, or a JSON object of a composite key's */
static char *
key_text(CaptureConfig *cfg, Datum *values, bool *nulls)
{
	JsonbParseState *st = NULL;
	JsonbValue *res;
	int			i;

	if (cfg->nkeys == 1)
	{
		AttrNumber	a = cfg->keys[0];

		return value_text(cfg, &cfg->cols[a - 1], values[a - 1], nulls[a - 1]);
	}
	pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	for (i = 0; i < cfg->nkeys; i++)
	{
		AttrNumber	a = cfg->keys[i];
		CaptureColumn c = cfg->cols[a - 1];

		c.mode = COL_RECORD;	/* the key is never redacted: it identifies the row */
		push_key(&st, c.name);
		push_value(&st, cfg, &c, values[a - 1], nulls[a - 1], WJB_VALUE);
	}
	res = pushJsonbValue(&st, WJB_END_OBJECT, NULL);
	return JsonbToCString(NULL, &JsonbValueToJsonb(res)->root, 0);
}

/* The recorded columns of one row (INSERT, DELETE). */
static Jsonb *
row_state(CaptureConfig *cfg, Datum *values, bool *nulls)
{
	JsonbParseState *st = NULL;
	int			i;

	pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	for (i = 0; i < cfg->natts; i++)
	{
		CaptureColumn *c = &cfg->cols[i];

		if (c->mode == COL_SKIP)
			continue;
		if (!cfg->key_in_state && c->is_key)
			continue;
		push_key(&st, c->name);
		push_value(&st, cfg, c, values[i], nulls[i], WJB_VALUE);
	}
	return JsonbValueToJsonb(pushJsonbValue(&st, WJB_END_OBJECT, NULL));
}

static char *
tenant_display_name(const char *tenant)
{
	GuardState	gs;
	Oid			argtype = TEXTOID;
	Datum		arg;
	char	   *name = NULL;

	if (tenant_name_lxid == MyProc->lxid && tenant_name_id != NULL &&
		strcmp(tenant_name_id, tenant) == 0)
		return tenant_name_value;

	arg = CStringGetTextDatum(tenant);
	GuardBeginInternal(&gs);
	PG_TRY();
	{
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		if (SPI_execute_with_args("SELECT name FROM custos.tenant WHERE id = $1",
								  1, &argtype, &arg, NULL, true, 1) != SPI_OK_SELECT)
			elog(ERROR, "SPI query of custos.tenant failed");
		if (SPI_processed > 0)
		{
			char	   *s = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);

			if (s)
				name = MemoryContextStrdup(TopTransactionContext, s);
		}
		SPI_finish();
	}
	PG_FINALLY();
	{
		GuardEndInternal(&gs);
	}
	PG_END_TRY();

	tenant_name_lxid = MyProc->lxid;
	tenant_name_id = MemoryContextStrdup(TopTransactionContext, tenant);
	tenant_name_value = name;
	return name;
}

static Jsonb *
build_metadata(CaptureConfig *cfg, const char *tenant, Datum *values, bool *nulls)
{
	JsonbParseState *st = NULL;
	int			i;

	if (cfg->nmeta == 0)
		return NULL;
	pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	for (i = 0; i < cfg->nmeta; i++)
	{
		MetaEntry  *m = &cfg->meta[i];

		push_key(&st, m->key);
		switch (m->kind)
		{
			case META_COLUMN:
				push_value(&st, cfg, &cfg->cols[m->att - 1], values[m->att - 1],
						   nulls[m->att - 1], WJB_VALUE);
				break;
			case META_CONST:
				{
					JsonbValue *v = getIthJsonbValueFromContainer(&m->value->root, 0);

					pushJsonbValue(&st, WJB_VALUE, v);
					break;
				}
			case META_TENANT_NAME:
				{
					char	   *name = tenant_display_name(tenant);
					JsonbValue	v;

					if (name == NULL)
						v.type = jbvNull;
					else
					{
						v.type = jbvString;
						v.val.string.val = name;
						v.val.string.len = strlen(name);
					}
					pushJsonbValue(&st, WJB_VALUE, &v);
					break;
				}
		}
	}
	return JsonbValueToJsonb(pushJsonbValue(&st, WJB_END_OBJECT, NULL));
}

static char *
column_text(CaptureConfig *cfg, AttrNumber att, Datum *values, bool *nulls)
{
	if (att == 0)
		return NULL;
	return value_text(cfg, &cfg->cols[att - 1], values[att - 1], nulls[att - 1]);
}

/* ------------------------------------------------------------------------
 * The trigger
 * ------------------------------------------------------------------------
 */

static void
capture_error_callback(void *arg)
{
	errcontext("recording a change of tracked table \"%s\"", (const char *) arg);
}

/* Append the event, naming the tracked table in any error it raises. */
static void
append_change(CaptureConfig *cfg, const AppendRecord *rec)
{
	ErrorContextCallback errcb;

	errcb.callback = capture_error_callback;
	errcb.arg = cfg->table_name;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;
	AppendRecordEvent(rec);
	error_context_stack = errcb.previous;
}

static void
record_truncate(CaptureConfig *cfg)
{
	AppendRecord rec;
	JsonbParseState *st = NULL;

	memset(&rec, 0, sizeof(rec));
	rec.tenant = "custos-system";
	rec.category = cfg->category;
	rec.action = cfg->actions[OP_TRUNCATE];
	rec.resource_type = cfg->resource_type;
	rec.resource_id = cfg->table_name;
	rec.description = "TRUNCATE removed every row of the tracked table";
	pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	push_key(&st, "table");
	{
		JsonbValue	v;

		v.type = jbvString;
		v.val.string.val = cfg->table_name;
		v.val.string.len = strlen(cfg->table_name);
		pushJsonbValue(&st, WJB_VALUE, &v);
	}
	rec.metadata = JsonbValueToJsonb(pushJsonbValue(&st, WJB_END_OBJECT, NULL));
	append_change(cfg, &rec);
}

/*
 * custos.capture_row(): AFTER ROW (INSERT, UPDATE, DELETE) and AFTER
 * STATEMENT (TRUNCATE) trigger of tracked tables.  Runs in the per-event
 * memory context the trigger manager resets after each row.
 */
Datum
custos_capture_row(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	CaptureConfig *cfg;
	AppendRecord rec;
	TupleTableSlot *oldslot = NULL;
	TupleTableSlot *newslot = NULL;
	TupleTableSlot *rowslot;
	Datum	   *rv;
	bool	   *rn;
	int			op;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_AFTER(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("custos.capture_row() must be called as an AFTER trigger"),
				 errhint("custos.track() attaches it.")));

	cfg = get_config(td->tg_relation);

	if (TRIGGER_FIRED_BY_TRUNCATE(td->tg_event))
	{
		record_truncate(cfg);
		return PointerGetDatum(NULL);
	}
	if (!TRIGGER_FIRED_FOR_ROW(td->tg_event))
		return PointerGetDatum(NULL);

	memset(&rec, 0, sizeof(rec));
	if (TRIGGER_FIRED_BY_INSERT(td->tg_event))
	{
		op = OP_INSERT;
		newslot = td->tg_trigslot;
	}
	else if (TRIGGER_FIRED_BY_DELETE(td->tg_event))
	{
		op = OP_DELETE;
		oldslot = td->tg_trigslot;
	}
	else
	{
		op = OP_UPDATE;
		oldslot = td->tg_trigslot;
		newslot = td->tg_newslot;
	}
	if (oldslot)
		slot_getallattrs(oldslot);
	if (newslot)
		slot_getallattrs(newslot);

	/* the row the event is about: the new one, or the deleted one */
	rowslot = newslot ? newslot : oldslot;
	rv = rowslot->tts_values;
	rn = rowslot->tts_isnull;

	if (op == OP_UPDATE)
	{
		JsonbParseState *ps = NULL;
		JsonbParseState *ns = NULL;
		int			changed = 0;
		int			i;

		pushJsonbValue(&ps, WJB_BEGIN_OBJECT, NULL);
		pushJsonbValue(&ns, WJB_BEGIN_OBJECT, NULL);
		for (i = 0; i < cfg->natts; i++)
		{
			CaptureColumn *c = &cfg->cols[i];
			bool		same;
			bool		key;

			if (c->mode == COL_SKIP)
				continue;
			same = same_value(c, oldslot->tts_values[i], oldslot->tts_isnull[i],
							  newslot->tts_values[i], newslot->tts_isnull[i]);
			key = c->is_key;
			if (!same)
				changed++;
			/* without record_state only "changed" is needed */
			if (cfg->record_state && (!same || (key && cfg->key_in_state)))
			{
				push_key(&ps, c->name);
				push_value(&ps, cfg, c, oldslot->tts_values[i], oldslot->tts_isnull[i], WJB_VALUE);
				push_key(&ns, c->name);
				push_value(&ns, cfg, c, newslot->tts_values[i], newslot->tts_isnull[i], WJB_VALUE);
			}
		}
		if (changed == 0 && !cfg->record_noop)
			return PointerGetDatum(NULL);
		if (cfg->record_state)
		{
			rec.previous_state = JsonbValueToJsonb(pushJsonbValue(&ps, WJB_END_OBJECT, NULL));
			rec.new_state = JsonbValueToJsonb(pushJsonbValue(&ns, WJB_END_OBJECT, NULL));
		}
	}
	else if (cfg->record_state)
	{
		if (op == OP_INSERT)
			rec.new_state = row_state(cfg, rv, rn);
		else
			rec.previous_state = row_state(cfg, rv, rn);
	}

	rec.tenant = column_text(cfg, cfg->tenant_att, rv, rn);
	if (rec.tenant == NULL || rec.tenant[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_NOT_NULL_VIOLATION),
				 errmsg("row of tracked table \"%s\" has no tenant", cfg->table_name),
				 errdetail("Column \"%s\" is empty; custos records every change in the log of the row's tenant.",
						   cfg->cols[cfg->tenant_att - 1].name)));
	rec.category = cfg->category;
	rec.action = cfg->actions[op];
	rec.resource_type = cfg->resource_type;
	rec.resource_id = key_text(cfg, rv, rn);
	rec.resource_name = column_text(cfg, cfg->resource_name_att, rv, rn);
	/* AppendRecordEvent() checks it against the allowed values */
	rec.target_level = cfg->target_level_att ?
		column_text(cfg, cfg->target_level_att, rv, rn) : cfg->target_level;
	rec.target_name = column_text(cfg, cfg->target_name_att, rv, rn);
	rec.subject = column_text(cfg, cfg->subject_att, rv, rn);
	rec.metadata = build_metadata(cfg, rec.tenant, rv, rn);

	append_change(cfg, &rec);
	return PointerGetDatum(NULL);
}

/*
 * custos.capture_configure(tbl regclass, config jsonb): replace tbl's row of
 * custos.tracked_table by config (a JSON object of its columns), or remove
 * it when config is NULL, past the storage guard; then invalidate tbl's
 * relcache entry so that every session rebuilds its cached configuration
 * when this commits.  Revoked from PUBLIC: track() and untrack() check
 * their caller.
 */
Datum
custos_capture_configure(PG_FUNCTION_ARGS)
{
	Oid			relid;
	GuardState	gs;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("table must not be NULL")));
	relid = PG_GETARG_OID(0);

	GuardBeginInternal(&gs);
	PG_TRY();
	{
		Oid			oidtype = OIDOID;
		Datum		oidarg = ObjectIdGetDatum(relid);

		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		if (SPI_execute_with_args("DELETE FROM custos.tracked_table WHERE relid = $1",
								  1, &oidtype, &oidarg, NULL, false, 0) != SPI_OK_DELETE)
			elog(ERROR, "SPI delete from custos.tracked_table failed");
		if (!PG_ARGISNULL(1))
		{
			Oid			jtype = JSONBOID;
			Datum		jarg = PG_GETARG_DATUM(1);

			if (SPI_execute_with_args("INSERT INTO custos.tracked_table "
									  "(relid, resource_type, tenant_column, key_columns, resource_name_column, "
									  "category, actions, excluded, redacted, metadata, target_level, "
									  "target_level_column, target_name_column, record_noop, key_in_state, "
									  "record_state, subject_column, attnums) "
									  "SELECT r.relid, r.resource_type, r.tenant_column, r.key_columns, "
									  "r.resource_name_column, r.category, r.actions, coalesce(r.excluded, '{}'), "
									  "coalesce(r.redacted, '{}'), r.metadata, r.target_level, r.target_level_column, "
									  "r.target_name_column, coalesce(r.record_noop, false), "
									  "coalesce(r.key_in_state, true), coalesce(r.record_state, true), "
									  "r.subject_column, coalesce(r.attnums, '{}') "
									  "FROM jsonb_populate_record(NULL::custos.tracked_table, $1) r",
									  1, &jtype, &jarg, NULL, false, 0) != SPI_OK_INSERT)
				elog(ERROR, "SPI insert into custos.tracked_table failed");
		}
		SPI_finish();
	}
	PG_FINALLY();
	{
		GuardEndInternal(&gs);
	}
	PG_END_TRY();

	/* a dropped table (untracked by the sql_drop event trigger) has no entry */
	if (get_rel_name(relid) != NULL)
		CacheInvalidateRelcacheByRelid(relid);
	PG_RETURN_VOID();
}
